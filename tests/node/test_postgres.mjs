// node-postgres (`pg` from npm) against Bluelamp's PostgreSQL endpoint.
//
// Run by tests/tests/postgres_clients.rs with `node --test`, which starts
// Bluelamp over a folder of 300 incidents (grades A, B, C in turn; every
// fourth closed) and passes where to connect in the environment:
//
//   BLUELAMP_PG_PORT      a server without TLS
//   BLUELAMP_PG_TLS_PORT  a server that accepts only TLS
//   BLUELAMP_PG_USER      user name (password "demo")

import assert from "node:assert/strict";
import { test } from "node:test";

import pg from "pg";

const base = {
  host: "127.0.0.1",
  port: Number(process.env.BLUELAMP_PG_PORT),
  user: process.env.BLUELAMP_PG_USER,
  password: "demo",
  database: "bluelamp",
  connectionTimeoutMillis: 10000,
};

async function connect(overrides = {}) {
  const client = new pg.Client({ ...base, ...overrides });
  await client.connect();
  return client;
}

async function sqlstate(promise) {
  try {
    await promise;
  } catch (e) {
    return e.code;
  }
  assert.fail("expected an error");
}

test("parameters and every type", async () => {
  const client = await connect();
  try {
    const count = await client.query(
      "SELECT count(*) AS n FROM cad.incidents WHERE grade = $1 AND closed = $2",
      ["C", true],
    );
    assert.equal(count.rows[0].n, "25"); // int8 arrives as text
    const { rows } = await client.query(`
      SELECT true AS b, CAST(-7 AS SMALLINT) AS i2, CAST(123456 AS INT) AS i4,
             CAST(1.5 AS REAL) AS f4, CAST(-0.1 AS DOUBLE) AS f8,
             CAST(-12345.678 AS DECIMAL(12,3)) AS num, 'café' AS t, X'00ff10' AS by,
             arrow_cast(TIMESTAMP '2024-06-01 12:00:00', 'Timestamp(Microsecond, Some("UTC"))') AS tstz,
             make_array(1, 2) AS l, CAST(NULL AS INT) AS n`);
    const row = rows[0];
    assert.equal(row.b, true);
    assert.equal(row.i2, -7);
    assert.equal(row.i4, 123456);
    assert.equal(row.f4, 1.5);
    assert.equal(row.f8, -0.1);
    assert.equal(row.num, "-12345.678");
    assert.equal(row.t, "café");
    assert.deepEqual(row.by, Buffer.from([0x00, 0xff, 0x10]));
    assert.equal(row.tstz.toISOString(), "2024-06-01T12:00:00.000Z");
    assert.deepEqual(row.l, [1, 2]); // json arrives parsed
    assert.equal(row.n, null);
  } finally {
    await client.end();
  }
});

test("errors carry SQLSTATEs", async () => {
  const client = await connect();
  try {
    assert.equal(await sqlstate(client.query("SELEC 1")), "42601");
    assert.equal(await sqlstate(client.query("SELECT * FROM cad.nope")), "42P01");
    const { rows } = await client.query("SELECT 1 AS one");
    assert.equal(rows[0].one, "1"); // integer literals are bigint, which node-postgres reads as text
  } finally {
    await client.end();
  }
  assert.equal(await sqlstate(connect({ password: "wrong" })), "28P01");
});

test("a long query is cancelled", async () => {
  const client = await connect();
  try {
    const query = client.query("SELECT max(value % 7) FROM range(100000000000)");
    const started = Date.now();
    setTimeout(() => new pg.Client(base).cancel(client, client.activeQuery), 700);
    assert.equal(await sqlstate(query), "57014");
    assert.ok(Date.now() - started < 30000);
    const { rows } = await client.query("SELECT 2 AS two");
    assert.equal(rows[0].two, "2");
  } finally {
    await client.end();
  }
});

test("TLS is required where configured", async () => {
  const port = Number(process.env.BLUELAMP_PG_TLS_PORT);
  const client = await connect({ port, ssl: { rejectUnauthorized: false } });
  try {
    const { rows } = await client.query("SELECT 3 AS three");
    assert.equal(rows[0].three, "3");
  } finally {
    await client.end();
  }
  try {
    await connect({ port, ssl: false });
    assert.fail("a plaintext connection was accepted");
  } catch (e) {
    assert.equal(e.code, "28000");
    assert.match(e.message, /accepts only TLS connections/);
  }
});
