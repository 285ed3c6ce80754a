// pgjdbc (the PostgreSQL JDBC driver that DBeaver, Metabase and Tableau
// bundle) against Bluelamp's PostgreSQL endpoint.
//
// Run by tests/tests/postgres_clients.rs as a single-file program
// (`java -cp postgresql.jar PgJdbcTest.java`) over a folder of 300 incidents
// (grades A, B, C in turn; every fourth closed). Where to connect comes from
// the environment:
//
//   BLUELAMP_PG_PORT      a server without TLS
//   BLUELAMP_PG_TLS_PORT  a server that accepts only TLS
//   BLUELAMP_PG_USER      user name (password "demo")
//
// Each check prints "ok NAME" or "FAILED NAME: why"; the exit code is the
// number of failed checks.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

public class PgJdbcTest {
    interface Check {
        void run() throws Exception;
    }

    static int failed = 0;

    static void check(String name, Check body) {
        try {
            body.run();
            System.out.println("ok " + name);
        } catch (Throwable e) {
            failed++;
            System.out.println("FAILED " + name + ": " + e);
            e.printStackTrace(System.out);
        }
    }

    static void expect(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    static void equal(Object actual, Object expected, String what) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected <" + expected + "> but was <" + actual + ">");
        }
    }

    static String port = System.getenv("BLUELAMP_PG_PORT");
    static String tlsPort = System.getenv("BLUELAMP_PG_TLS_PORT");
    static String user = System.getenv("BLUELAMP_PG_USER");

    static Connection connect(String port, String password, String extra) throws SQLException {
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        props.setProperty("connectTimeout", "10");
        props.setProperty("ApplicationName", "pgjdbc-test");
        String url = "jdbc:postgresql://127.0.0.1:" + port + "/bluelamp" + extra;
        return DriverManager.getConnection(url, props);
    }

    static Connection connect() throws SQLException {
        return connect(port, "demo", "");
    }

    static String sqlstate(Check body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            return e.getSQLState();
        }
        throw new AssertionError("expected an error");
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> values = new ArrayList<>();
        while (rs.next()) {
            values.add(rs.getString(name));
        }
        rs.close();
        return values;
    }

    static void everyType(Connection c) throws SQLException {
        try (Statement s = c.createStatement();
                ResultSet rs = s.executeQuery(
                        "SELECT true AS b, CAST(-7 AS SMALLINT) AS i2, CAST(123456 AS INT) AS i4, "
                                + "CAST(1.5 AS REAL) AS f4, CAST(-0.1 AS DOUBLE) AS f8, "
                                + "CAST(-12345.678 AS DECIMAL(12,3)) AS num, 'café' AS t, X'00ff10' AS by, "
                                + "arrow_cast(TIMESTAMP '2024-06-01 12:00:00', 'Timestamp(Microsecond, Some(\"UTC\"))') AS tstz, "
                                + "TIMESTAMP '2024-06-01 12:34:56.789' AS ts, DATE '2024-02-29' AS d, "
                                + "make_array(1, 2) AS l, CAST(NULL AS INT) AS n")) {
            expect(rs.next(), "one row");
            equal(rs.getBoolean("b"), true, "boolean");
            equal(rs.getShort("i2"), (short) -7, "smallint");
            equal(rs.getInt("i4"), 123456, "integer");
            equal(rs.getFloat("f4"), 1.5f, "real");
            equal(rs.getDouble("f8"), -0.1, "double");
            equal(rs.getBigDecimal("num"), new BigDecimal("-12345.678"), "numeric");
            equal(rs.getString("t"), "café", "text");
            expect(Arrays.equals(rs.getBytes("by"), new byte[] {0x00, (byte) 0xff, 0x10}), "bytea");
            equal(rs.getObject("tstz", OffsetDateTime.class).withOffsetSameInstant(ZoneOffset.UTC),
                    OffsetDateTime.of(2024, 6, 1, 12, 0, 0, 0, ZoneOffset.UTC), "timestamptz");
            equal(rs.getObject("ts", java.time.LocalDateTime.class).toString(), "2024-06-01T12:34:56.789",
                    "timestamp");
            equal(rs.getObject("d", java.time.LocalDate.class).toString(), "2024-02-29", "date");
            equal(rs.getString("l"), "[1,2]", "list as JSON text");
            equal(rs.getObject("n"), null, "null");
            expect(rs.wasNull(), "wasNull after a NULL");
            equal(rs.getMetaData().getColumnType(1), Types.BIT, "boolean's JDBC type");
            equal(rs.getMetaData().getColumnTypeName(6), "numeric", "numeric's type name");
            equal(rs.getMetaData().getColumnTypeName(9), "timestamptz", "timestamptz's type name");
        }
    }

    public static void main(String[] args) throws Exception {
        check("parameters", () -> {
            try (Connection c = connect();
                    PreparedStatement ps = c.prepareStatement(
                            "SELECT count(*) AS n FROM cad.incidents WHERE grade = ? AND closed = ?")) {
                ps.setString(1, "C");
                ps.setBoolean(2, true);
                try (ResultSet rs = ps.executeQuery()) {
                    expect(rs.next(), "one row");
                    equal(rs.getLong("n"), 25L, "closed grade C incidents");
                }
                // The sixth execution of a prepared statement runs as a
                // named server-side statement, with binary results.
                for (int i = 0; i < 6; i++) {
                    ps.setString(1, "A");
                    ps.setBoolean(2, false);
                    try (ResultSet rs = ps.executeQuery()) {
                        expect(rs.next(), "one row");
                        equal(rs.getLong("n"), 75L, "open grade A incidents, run " + i);
                    }
                }
            }
        });

        check("every type, text results", () -> {
            try (Connection c = connect()) {
                everyType(c);
            }
        });

        check("every type, binary results", () -> {
            try (Connection c = connect(port, "demo", "?prepareThreshold=-1&binaryTransfer=true")) {
                everyType(c);
            }
        });

        check("fetch size streams through a portal", () -> {
            try (Connection c = connect()) {
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.setFetchSize(40);
                    try (ResultSet rs = s.executeQuery("SELECT urn FROM cad.incidents ORDER BY urn")) {
                        long rows = 0;
                        String previous = "";
                        while (rs.next()) {
                            String urn = rs.getString(1);
                            expect(urn.compareTo(previous) > 0, "urns in order");
                            previous = urn;
                            rows++;
                        }
                        equal(rows, 300L, "rows through 8 fetches");
                    }
                }
                c.commit();
            }
        });

        check("database metadata", () -> {
            try (Connection c = connect()) {
                DatabaseMetaData md = c.getMetaData();
                equal(md.getDatabaseProductName(), "PostgreSQL", "product name");
                expect(md.getDatabaseMajorVersion() >= 12, "a modern server version");
                equal(column(md.getCatalogs(), "TABLE_CAT"), List.of("bluelamp"), "catalogs");
                List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
                expect(schemas.contains("cad"), "schema cad in " + schemas);
                expect(schemas.contains("pg_catalog"), "schema pg_catalog in " + schemas);
                List<String> types = column(md.getTableTypes(), "TABLE_TYPE");
                expect(types.contains("TABLE") && types.contains("VIEW"), "table types " + types);

                // Metabase and Tableau list tables by schema and type.
                String[] kinds = {"TABLE", "PARTITIONED TABLE", "VIEW", "FOREIGN TABLE", "MATERIALIZED VIEW"};
                equal(column(md.getTables(null, "cad", "%", kinds), "TABLE_NAME"), List.of("incidents"),
                        "tables in cad");
                List<String> all = column(md.getTables(null, null, "%", new String[] {"TABLE"}), "TABLE_NAME");
                expect(all.contains("incidents"), "incidents among all tables " + all);
                expect(!all.contains("pg_class"), "system tables are not TABLEs: " + all);

                try (ResultSet rs = md.getColumns(null, "cad", "incidents", "%")) {
                    List<String> names = new ArrayList<>();
                    while (rs.next()) {
                        names.add(rs.getString("COLUMN_NAME"));
                        String name = rs.getString("COLUMN_NAME");
                        if (name.equals("urn")) {
                            equal(rs.getInt("DATA_TYPE"), Types.VARCHAR, "urn's JDBC type");
                            equal(rs.getString("TYPE_NAME"), "text", "urn's type name");
                            equal(rs.getInt("ORDINAL_POSITION"), 1, "urn's position");
                        }
                        if (name.equals("grade")) {
                            equal(rs.getInt("ORDINAL_POSITION"), 2, "grade's position");
                        }
                        if (name.equals("closed")) {
                            equal(rs.getInt("DATA_TYPE"), Types.BIT, "closed's JDBC type");
                        }
                    }
                    expect(names.equals(List.of("urn", "grade", "station", "closed")), "columns " + names);
                }
                // No keys or indexes: Bluelamp's tables declare none.
                equal(column(md.getPrimaryKeys(null, "cad", "incidents"), "COLUMN_NAME"), List.of(),
                        "primary keys");
                equal(column(md.getImportedKeys(null, "cad", "incidents"), "FKCOLUMN_NAME"), List.of(),
                        "foreign keys");
                equal(column(md.getExportedKeys(null, "cad", "incidents"), "FKCOLUMN_NAME"), List.of(),
                        "referencing keys");
                equal(column(md.getIndexInfo(null, "cad", "incidents", false, true), "INDEX_NAME"), List.of(),
                        "indexes");
                List<String> typeNames = column(md.getTypeInfo(), "TYPE_NAME");
                expect(typeNames.containsAll(List.of("int8", "text", "timestamptz", "bool")),
                        "type info " + typeNames);
            }
        });

        check("every other metadata call pgjdbc implements answers", () -> {
            try (Connection c = connect()) {
                DatabaseMetaData md = c.getMetaData();
                List<Check> calls = List.of(
                        () -> md.getProcedures(null, null, "%").close(),
                        () -> md.getProcedureColumns(null, null, "%", "%").close(),
                        () -> md.getFunctionColumns(null, null, "%", "%").close(),
                        () -> md.getBestRowIdentifier(null, "cad", "incidents",
                                DatabaseMetaData.bestRowSession, true).close(),
                        () -> md.getVersionColumns(null, "cad", "incidents").close(),
                        () -> md.getCrossReference(null, "cad", "incidents", null, "cad", "incidents").close(),
                        () -> md.getUDTs(null, null, "%", null).close(),
                        () -> md.getClientInfoProperties().close());
                for (Check call : calls) {
                    call.run();
                }
                // Functions include PostgreSQL's I/O functions clients look up.
                List<String> functions = column(md.getFunctions(null, "pg_catalog", "int4%"), "FUNCTION_NAME");
                expect(functions.contains("int4in"), "functions " + functions);
                // Privileges: the table's own, for the session's user.
                List<String> privileges = column(md.getTablePrivileges(null, "cad", "incidents"), "PRIVILEGE");
                expect(privileges.contains("SELECT"), "privileges " + privileges);
            }
        });

        check("errors carry SQLSTATEs", () -> {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                equal(sqlstate(() -> s.executeQuery("SELEC 1")), "42601", "syntax error");
                equal(sqlstate(() -> s.executeQuery("SELECT * FROM cad.nope")), "42P01", "unknown table");
                try (ResultSet rs = s.executeQuery("SELECT 1 AS one")) {
                    expect(rs.next(), "the connection still works");
                    equal(rs.getInt(1), 1, "one");
                }
            }
            equal(sqlstate(() -> connect(port, "wrong", "").close()), "28P01", "wrong password");
        });

        check("a long query is cancelled", () -> {
            try (Connection c = connect(); Statement s = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(700);
                        s.cancel();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                long started = System.nanoTime();
                canceller.start();
                equal(sqlstate(() -> s.executeQuery("SELECT max(value % 7) FROM range(100000000000)")), "57014",
                        "cancelled");
                canceller.join();
                expect(System.nanoTime() - started < 30_000_000_000L, "cancelled within 30 s");
                try (ResultSet rs = s.executeQuery("SELECT 2 AS two")) {
                    expect(rs.next(), "the connection still works");
                    equal(rs.getInt(1), 2, "two");
                }
            }
        });

        check("TLS is required where configured", () -> {
            String tls = "?sslmode=require&sslfactory=org.postgresql.ssl.NonValidatingFactory";
            try (Connection c = connect(tlsPort, "demo", tls);
                    Statement s = c.createStatement();
                    ResultSet rs = s.executeQuery("SELECT 3 AS three")) {
                expect(rs.next(), "one row");
                equal(rs.getInt(1), 3, "three");
            }
            try {
                connect(tlsPort, "demo", "?sslmode=disable").close();
                throw new AssertionError("a plaintext connection was accepted");
            } catch (SQLException e) {
                equal(e.getSQLState(), "28000", "plaintext refused");
                expect(e.getMessage().contains("accepts only TLS connections"), e.getMessage());
            }
        });

        System.out.println(failed == 0 ? "all checks passed" : failed + " check(s) failed");
        System.exit(failed);
    }
}
