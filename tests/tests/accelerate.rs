//! Acceleration: local copies of a source's tables (`[source.tables.NAME.
//! accelerate]`), read instead of the source, refreshed in the background,
//! swapped whole, kept when a refresh fails, refused or bypassed when stale,
//! and governed exactly as the source's own tables. The source here is a
//! folder of CSV files whose contents each test changes under the engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bluelamp_engine::{Engine, Identity, QueryError};
use bluelamp_tests::fixtures::engine_from_text;
use futures::TryStreamExt;

/// Writes `calls.csv` with ids 1..=n (grade `A` for odd ids, `B` for even),
/// whole or not at all (a rename), so a refresh never reads half a file.
fn write_calls(dir: &Path, n: u64) {
    write_file(
        dir,
        "id,grade",
        (1..=n).map(|id| format!("{id},{}", if id % 2 == 1 { "A" } else { "B" })),
    );
}

/// Writes `calls.csv` with `header` and `lines`, whole or not at all.
fn write_file(dir: &Path, header: &str, lines: impl Iterator<Item = String>) {
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let data = dir.join("calls");
    std::fs::create_dir_all(&data).unwrap();
    let partial = dir.join("calls.csv.partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, data.join("calls.csv")).unwrap();
}

fn config(accelerate: &str) -> String {
    format!(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"calls\"\n\n\
         [source.tables.calls]\nschema = {{ id = \"Int64\", grade = \"Utf8\" }}\n\n\
         [source.tables.calls.accelerate]\n{accelerate}\n"
    )
}

async fn rows(engine: &Engine, user: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let session = engine.session(Identity::new(user, "test"));
    let output = session.sql(sql).await?;
    output.stream.try_collect().await.map_err(QueryError::from)
}

/// The first column of the first row, as text.
async fn one(engine: &Engine, sql: &str) -> String {
    let batches = rows(engine, "test", sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    first(&batches)
}

fn first(batches: &[RecordBatch]) -> String {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
}

/// The first value `sql` gives from the source itself (`bluelamp.live`).
async fn live(engine: &Engine, sql: &str) -> String {
    let session = engine.session(Identity::new("test", "test"));
    session.sql("SET bluelamp.live = true").await.unwrap();
    let batches: Vec<RecordBatch> = session
        .sql(sql)
        .await
        .unwrap()
        .stream
        .try_collect()
        .await
        .unwrap();
    first(&batches)
}

/// The whole table, as one text, from the copy and from the source.
const WHOLE: &str = "SELECT concat_ws('|', count(*), sum(id), \
                     string_agg(concat(id, grade), ',' ORDER BY id, grade)) FROM f.calls";

/// Waits (up to 20 s) until the first copy of `f.calls` exists (the
/// refresh at start, in the background, has ended).
async fn first_copy(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine
        .accelerations()
        .iter()
        .any(|a| a.table == "calls" && a.rows.is_some())
    {
        assert!(Instant::now() < deadline, "no copy of f.calls after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn queries_read_the_copy_until_it_is_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 3);
    let engine = engine_from_text(&config("refresh = \"1h\""), dir.path())
        .await
        .unwrap();
    first_copy(&engine).await;
    assert_eq!(one(&engine, "SELECT count(*) FROM f.calls").await, "3");
    // The source changes; the copy does not, until it is refreshed.
    write_calls(dir.path(), 5);
    assert_eq!(one(&engine, "SELECT count(*) FROM f.calls").await, "3");
    assert_eq!(
        one(&engine, "SELECT count(*) FROM f.calls WHERE grade = 'A'").await,
        "2"
    );
    // A session that asks for the source itself gets it.
    let session = engine.session(Identity::new("test", "test"));
    session.sql("SET bluelamp.live = true").await.unwrap();
    let live: Vec<RecordBatch> = session
        .sql("SELECT count(*) FROM f.calls")
        .await
        .unwrap()
        .stream
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        arrow::util::display::array_value_to_string(live[0].column(0), 0).unwrap(),
        "5"
    );
    assert_eq!(engine.refresh("f", "calls").await.unwrap().rows, 5);
    assert_eq!(one(&engine, "SELECT count(*) FROM f.calls").await, "5");
    assert_eq!(
        one(&engine, "SELECT sum(id) FROM f.calls WHERE grade = 'A'").await,
        "9"
    );
    let status = one(
        &engine,
        "SELECT concat_ws(' ', source, \"table\", mode, storage, rows, fetched, \
         coalesce(last_error, 'ok')) FROM bluelamp.accelerations",
    )
    .await;
    assert_eq!(status, "f calls full memory 5 5 ok");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_copy_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 4);
    let engine = engine_from_text(&config("refresh = \"1h\""), dir.path())
        .await
        .unwrap();
    first_copy(&engine).await;
    std::fs::remove_file(dir.path().join("calls/calls.csv")).unwrap();
    let error = engine.refresh("f", "calls").await.unwrap_err();
    assert!(
        error.message.contains("refreshing f.calls failed"),
        "{error}"
    );
    assert_eq!(one(&engine, "SELECT count(*) FROM f.calls").await, "4");
    let why = one(
        &engine,
        "SELECT last_error FROM bluelamp.accelerations WHERE \"table\" = 'calls'",
    )
    .await;
    assert!(why.contains("the previous copy is kept"), "{why}");
    // Reading the source itself fails, naming it.
    let session = engine.session(Identity::new("test", "test"));
    session.sql("SET bluelamp.live = true").await.unwrap();
    let live = match session.sql("SELECT count(*) FROM f.calls").await {
        Ok(output) => output
            .stream
            .try_collect::<Vec<_>>()
            .await
            .map_err(QueryError::from)
            .err(),
        Err(e) => Some(e),
    };
    let live = live.expect("the source itself has no file to read");
    assert!(live.message.contains("'f'"), "{live}");
}

#[tokio::test]
async fn a_stale_copy_fails_or_reads_the_source_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 2);
    let strict = engine_from_text(
        &config("refresh = \"1h\"\nmax_staleness = \"2s\"\non_stale = \"error\""),
        dir.path(),
    )
    .await
    .unwrap();
    first_copy(&strict).await;
    assert_eq!(one(&strict, "SELECT count(*) FROM f.calls").await, "2");
    let lenient = engine_from_text(
        &config("refresh = \"1h\"\nmax_staleness = \"2s\"\non_stale = \"live\""),
        dir.path(),
    )
    .await
    .unwrap();
    first_copy(&lenient).await;
    write_calls(dir.path(), 6);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let error = rows(&strict, "test", "SELECT count(*) FROM f.calls")
        .await
        .unwrap_err();
    assert!(
        error.message.contains("more than max_staleness (2s)")
            && error.message.contains("SET bluelamp.live = true"),
        "{error}"
    );
    // `live`: the source itself answers.
    assert_eq!(one(&lenient, "SELECT count(*) FROM f.calls").await, "6");
}

#[tokio::test]
async fn readers_see_the_old_copy_or_the_new_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 1000);
    let engine = engine_from_text(&config("refresh = \"1h\""), dir.path())
        .await
        .unwrap();
    first_copy(&engine).await;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..25 {
                    let batches = rows(&engine, "test", "SELECT count(*), sum(id) FROM f.calls")
                        .await
                        .unwrap();
                    let count =
                        arrow::util::display::array_value_to_string(batches[0].column(0), 0)
                            .unwrap();
                    let sum = arrow::util::display::array_value_to_string(batches[0].column(1), 0)
                        .unwrap();
                    seen.push((count, sum));
                }
                seen
            })
        })
        .collect();
    for n in [2000, 1000, 2000, 1000, 2000] {
        write_calls(dir.path(), n);
        engine.refresh("f", "calls").await.unwrap();
    }
    for reader in readers {
        for (count, sum) in reader.await.unwrap() {
            // Every answer is one whole copy: 1..=1000 or 1..=2000.
            assert!(
                (count == "1000" && sum == "500500") || (count == "2000" && sum == "2001000"),
                "a mixed copy: count {count}, sum {sum}"
            );
        }
    }
}

#[tokio::test]
async fn policies_apply_to_the_copy_as_to_the_source() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 10);
    let policy = "\n[audit]\npath = \"audit.jsonl\"\n\n[[user]]\nname = \"analyst\"\nroles = [\"analyst\"]\n\n\
                  [[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"f.calls\"]\n\n\
                  [[policy.row_filter]]\nroles = [\"analyst\"]\ntable = \"f.calls\"\nfilter = \"grade = 'A'\"\n";
    let engine = engine_from_text(
        &format!("{}{policy}", config("refresh = \"1h\"")),
        dir.path(),
    )
    .await
    .unwrap();
    first_copy(&engine).await;
    write_calls(dir.path(), 20);
    let batches = rows(&engine, "analyst", "SELECT count(*), max(id) FROM f.calls")
        .await
        .unwrap();
    let count = arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap();
    let max = arrow::util::display::array_value_to_string(batches[0].column(1), 0).unwrap();
    // The copy (ids 1..=10), filtered to grade A.
    assert_eq!((count.as_str(), max.as_str()), ("5", "9"));
    let seen = rows(
        &engine,
        "analyst",
        "SELECT \"table\" FROM bluelamp.accelerations",
    )
    .await
    .unwrap();
    assert_eq!(seen.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    // The read of the copy is in the audit trail, as the analyst's.
    drop(engine);
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail
            .lines()
            .any(|l| l.contains("\"analyst\"") && l.contains("max(id) FROM f.calls")),
        "{trail}"
    );
    // So is every refresh: the engine's own reads of the source, as it
    // starts and as it ends with its rows.
    let refreshes: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("refresh the local copy of f.calls"))
        .collect();
    assert!(
        refreshes
            .iter()
            .any(|l| l.contains("\"event\":\"statement\"") && l.contains("\"user\":\"bluelamp\"")),
        "{trail}"
    );
    assert!(
        refreshes
            .iter()
            .any(|l| l.contains("\"event\":\"completed\"") && l.contains("\"rows\":10")),
        "{trail}"
    );
}

#[tokio::test]
async fn acceleration_settings_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 1);
    for (accelerate, expected) in [
        ("refrsh = \"5m\"", "source[f].tables.calls.accelerate"),
        (
            "refresh = \"5m\"\nmode = \"append\"",
            "mode = \"append\" needs `key = \"COLUMN\"`",
        ),
        (
            "refresh = \"5m\"\nmode = \"window\"\nkey = \"id\"",
            "mode = \"window\" needs `window = \"90d\"`",
        ),
        (
            "refresh = \"5m\"\nmode = \"append\"\nkey = \"id\"\nwindow = \"1d\"",
            "`window` applies to mode = \"window\" only",
        ),
        (
            "refresh = \"5m\"\nmode = \"incremental\"",
            "unknown variant `incremental`",
        ),
        (
            "refresh = \"5m\"\nstorage = \"parquet\"",
            "add `data_dir = \"...\"` to [engine]",
        ),
        ("refresh = \"soon\"", "'soon' is not a duration"),
        ("refresh = \"0s\"", "must be longer than 0s"),
        ("max_staleness = \"1h\"", "missing `refresh = \"5m\"`"),
        (
            "refresh = \"5m\"\non_stale = \"ignore\"",
            "unknown variant `ignore`",
        ),
    ] {
        let error = engine_from_text(&config(accelerate), dir.path())
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted: {accelerate}"));
        assert!(error.contains(expected), "{accelerate}: {error}");
        assert!(error.contains("test.toml:"), "{accelerate}: {error}");
    }
    // A source that forwards each query's end user must say whose view its
    // one copy is.
    let forwarding = "[[source]]\nname = \"rms\"\nkind = \"openapi\"\nspec = \"rms.yaml\"\n\
                      on_behalf_of = \"x-user: {user}\"\n\n[source.accelerate]\nrefresh = \"5m\"\n";
    let error = engine_from_text(forwarding, dir.path())
        .await
        .err()
        .unwrap();
    assert!(error.contains("add `as_user"), "{error}");
    assert!(error.contains("source[rms].accelerate"), "{error}");
    let unknown = forwarding.replace("refresh = \"5m\"", "refresh = \"5m\"\nas_user = \"nobody\"");
    let error = engine_from_text(&unknown, dir.path()).await.err().unwrap();
    assert!(
        error.contains("there is no [[user]] named 'nobody'"),
        "{error}"
    );
    // The connector never sees the engine's keys: a source-wide default
    // and a table's own settings together start.
    let both = format!(
        "{}\n[source.accelerate]\nrefresh = \"1h\"\n",
        config("max_staleness = \"1h\"")
    );
    let engine = engine_from_text(&both, dir.path()).await.unwrap();
    first_copy(&engine).await;
}

#[tokio::test]
async fn refresh_table_refreshes_now_for_those_who_may_read_it() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 3);
    let policy = "\n[audit]\npath = \"audit.jsonl\"\n\n\
                  [[user]]\nname = \"analyst\"\nroles = [\"analyst\"]\n\n\
                  [[user]]\nname = \"visitor\"\nroles = [\"visitor\"]\n\n\
                  [[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"f.calls\"]\n";
    let engine = engine_from_text(
        &format!("{}{policy}", config("on_demand = true")),
        dir.path(),
    )
    .await
    .unwrap();
    // On demand only: no copy until REFRESH TABLE, so the source answers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = engine.accelerations();
    assert!(status[0].rows.is_none() && status[0].next_refresh.is_none());
    write_calls(dir.path(), 8);
    let session = engine.session(Identity::new("analyst", "test"));
    let statements = session
        .parse("SELECT 1; refresh  table\n f.calls ; SELECT 'refresh table'")
        .unwrap();
    assert_eq!(statements.len(), 3);
    assert_eq!(statements[1].to_string(), "REFRESH TABLE f.calls");
    let planned = session.plan(&statements[1]).await.unwrap();
    let output: Vec<RecordBatch> = session
        .execute(planned)
        .await
        .unwrap()
        .stream
        .try_collect()
        .await
        .unwrap();
    let row: Vec<String> = (0..4)
        .map(|i| arrow::util::display::array_value_to_string(output[0].column(i), 0).unwrap())
        .collect();
    assert_eq!(row, ["f.calls", "full", "8", "8"]);
    let batches = rows(&engine, "analyst", "SELECT count(*) FROM f.calls")
        .await
        .unwrap();
    assert_eq!(first(&batches), "8");
    // A user who may not read the table is told it does not exist, as in
    // a query.
    let refused = rows(&engine, "visitor", "REFRESH TABLE f.calls")
        .await
        .unwrap_err();
    assert!(refused.message.contains("f"), "{refused}");
    let queried = rows(&engine, "visitor", "SELECT * FROM f.calls")
        .await
        .unwrap_err();
    assert_eq!(refused.kind, queried.kind, "{refused} / {queried}");
    for (sql, expected) in [
        ("REFRESH TABLE", "REFRESH TABLE needs a table"),
        ("REFRESH TABLE f.calls now", "'now' follows it"),
        ("REFRESH TABLE calls", "name the source as well"),
        ("REFRESH TABLE bluelamp.sources", "is not accelerated"),
    ] {
        let error = rows(&engine, "analyst", sql).await.unwrap_err();
        assert!(error.message.contains(expected), "{sql}: {error}");
    }
    drop(session);
    drop(engine);
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        trail.lines().any(|l| l.contains("\"analyst\"")
            && l.contains("REFRESH TABLE f.calls")
            && l.contains("\"event\":\"statement\"")
            && l.contains("\"f.calls\"")),
        "{trail}"
    );
    assert!(
        trail
            .lines()
            .any(|l| l.contains("\"visitor\"") && l.contains("REFRESH TABLE f.calls")),
        "a refused refresh is audited too: {trail}"
    );
}

#[tokio::test]
async fn append_refreshes_fetch_from_the_newest_row_and_match_the_source() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 100);
    let engine = engine_from_text(
        &config("refresh = \"1h\"\nmode = \"append\"\nkey = \"id\""),
        dir.path(),
    )
    .await
    .unwrap();
    first_copy(&engine).await;
    write_calls(dir.path(), 250);
    let done = engine.refresh("f", "calls").await.unwrap();
    // The newest row held (id 100) again, and the 150 new ones.
    assert_eq!((done.fetched, done.rows), (151, 250));
    assert_eq!(one(&engine, WHOLE).await, live(&engine, WHOLE).await);
    // A second record with the newest key, added after the refresh that
    // took the first: kept, and the first not doubled.
    write_file(
        dir.path(),
        "id,grade",
        (1..=250)
            .map(|id| format!("{id},{}", if id % 2 == 1 { "A" } else { "B" }))
            .chain(["250,C".to_string()]),
    );
    let done = engine.refresh("f", "calls").await.unwrap();
    assert_eq!((done.fetched, done.rows), (2, 251));
    assert_eq!(one(&engine, WHOLE).await, live(&engine, WHOLE).await);
    assert_eq!(
        one(&engine, "SELECT count(*) FROM f.calls WHERE id = 250").await,
        "2"
    );
    // Nothing new: only the newest rows are read again, nothing added.
    let done = engine.refresh("f", "calls").await.unwrap();
    assert_eq!((done.fetched, done.rows), (2, 251));
    let status = one(
        &engine,
        "SELECT concat_ws(' ', mode, rows, fetched) FROM bluelamp.accelerations",
    )
    .await;
    assert_eq!(status, "append 251 2");
}

#[tokio::test]
async fn window_refreshes_keep_only_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let at = |offset: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(offset))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    write_file(
        dir.path(),
        "id,at",
        [format!("1,{}", at(-600)), format!("2,{}", at(-1))].into_iter(),
    );
    let text = "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"calls\"\n\n\
                [source.tables.calls]\n\
                schema = { id = \"Int64\", at = \"Timestamp(Millisecond, Some(\\\"UTC\\\"))\" }\n\n\
                [source.tables.calls.accelerate]\nrefresh = \"1h\"\nmode = \"window\"\n\
                key = \"at\"\nwindow = \"3s\"\n";
    let engine = engine_from_text(text, dir.path()).await.unwrap();
    first_copy(&engine).await;
    let ids = "SELECT string_agg(CAST(id AS VARCHAR), ',' ORDER BY id) FROM f.calls";
    assert_eq!(one(&engine, ids).await, "2");
    // A record from the future is in any window; the one a second old
    // leaves it.
    write_file(
        dir.path(),
        "id,at",
        [
            format!("1,{}", at(-600)),
            format!("2,{}", at(-1)),
            format!("3,{}", at(600)),
        ]
        .into_iter(),
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let done = engine.refresh("f", "calls").await.unwrap();
    assert_eq!((done.fetched, done.rows), (1, 1));
    assert_eq!(one(&engine, ids).await, "3");
    assert_eq!(
        live(
            &engine,
            "SELECT string_agg(CAST(id AS VARCHAR), ',' ORDER BY id) FROM f.calls \
             WHERE at >= now() - INTERVAL '3 seconds'"
        )
        .await,
        "3"
    );
}

#[tokio::test]
async fn a_parquet_copy_is_served_after_a_restart_and_a_changed_source_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_calls(dir.path(), 7);
    let engine_section = "[engine]\ndata_dir = \"data\"\n\n";
    let stored = format!(
        "{engine_section}{}",
        config("refresh = \"1h\"\nstorage = \"parquet\"")
    );
    let engine = engine_from_text(&stored, dir.path()).await.unwrap();
    first_copy(&engine).await;
    let file = dir.path().join("data/accelerations/f/calls.parquet");
    assert!(file.exists(), "no {}", file.display());
    drop(engine);
    // The source changes while Bluelamp is down; the restart serves the
    // stored copy, fetching nothing until the copy is due.
    write_calls(dir.path(), 9);
    let engine = engine_from_text(&stored, dir.path()).await.unwrap();
    let status = &engine.accelerations()[0];
    assert_eq!(status.rows, Some(7));
    assert!(status.refresh_started.is_none(), "{status:?}");
    assert!(status.next_refresh.is_some(), "{status:?}");
    assert_eq!(one(&engine, WHOLE).await, "7|28|1A,2B,3A,4B,5A,6B,7A");
    assert_eq!(one(&engine, "REFRESH TABLE f.calls").await, "f.calls");
    assert_eq!(one(&engine, "SELECT count(*) FROM f.calls").await, "9");
    drop(engine);
    // The source gains a column: the stored copy cannot answer for it, and
    // says so rather than being read by position.
    write_file(
        dir.path(),
        "id,grade,note",
        (1..=9).map(|id| format!("{id},{},n{id}", if id % 2 == 1 { "A" } else { "B" })),
    );
    let changed = format!(
        "{engine_section}[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"calls\"\n\n\
         [source.tables.calls]\nschema = {{ id = \"Int64\", grade = \"Utf8\", note = \"Utf8\" }}\n\n\
         [source.tables.calls.accelerate]\non_demand = true\nstorage = \"parquet\"\n"
    );
    let engine = engine_from_text(&changed, dir.path()).await.unwrap();
    let error = rows(&engine, "test", "SELECT count(*) FROM f.calls")
        .await
        .unwrap_err();
    assert!(
        error.message.contains("column 'note' (Utf8) was added")
            && error.message.contains("REFRESH TABLE f.calls"),
        "{error}"
    );
    let change = one(&engine, "SELECT schema_change FROM bluelamp.accelerations").await;
    assert!(
        change.contains("column 'note' (Utf8) was added"),
        "{change}"
    );
    let done = engine.refresh("f", "calls").await.unwrap();
    assert_eq!(done.rows, 9);
    assert_eq!(
        one(
            &engine,
            "SELECT string_agg(note, ',' ORDER BY id) FROM f.calls"
        )
        .await,
        "n1,n2,n3,n4,n5,n6,n7,n8,n9"
    );
}

/// `calls` in a database source, accelerated by `append` on `id`: the
/// copy matches the database after rows are added, and a column dropped at
/// the database fails the refresh, naming it, rather than being misread.
async fn database_copies_append_and_notice_new_columns(
    engine: &Engine,
    execute: impl AsyncFn(&str),
    source: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine.accelerations().iter().any(|a| a.rows.is_some()) {
        assert!(Instant::now() < deadline, "{source}: no copy after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let whole = WHOLE.replace("f.calls", &format!("{source}.calls"));
    assert_eq!(one(engine, &whole).await, live(engine, &whole).await);
    assert!(one(engine, &whole).await.starts_with("100|5050|"));
    execute("INSERT INTO calls (id, grade) SELECT id, 'C' FROM calls WHERE id <= 50").await;
    execute("UPDATE calls SET id = id + 100 WHERE grade = 'C'").await;
    let done = engine.refresh(source, "calls").await.unwrap();
    assert_eq!((done.fetched, done.rows), (51, 150), "{source}");
    assert_eq!(one(engine, &whole).await, live(engine, &whole).await);
    // A database source reads a table's columns once per connection: a
    // column added since is not seen by the source's table or its copy
    // alike, so the two still agree.
    execute("ALTER TABLE calls ADD COLUMN note varchar(20)").await;
    let star = format!("SELECT * FROM {source}.calls ORDER BY id, grade");
    let copy = rows(engine, "test", &star).await.unwrap();
    assert_eq!(copy[0].num_columns(), 2, "{source}");
    assert_eq!(one(engine, &whole).await, live(engine, &whole).await);
    // A column gone: the refresh fails, naming it, and the copy stays.
    execute("ALTER TABLE calls DROP COLUMN grade").await;
    let error = engine.refresh(source, "calls").await.unwrap_err();
    assert!(
        error.message.contains("the previous copy is kept") && error.message.contains("grade"),
        "{source}: {error}"
    );
    assert!(one(engine, &whole).await.starts_with("150|"), "{source}");
    let last_error = one(engine, "SELECT last_error FROM bluelamp.accelerations").await;
    assert!(last_error.contains("grade"), "{source}: {last_error}");
}

const DATABASE_ACCELERATION: &str =
    "\n[source.tables.calls.accelerate]\nrefresh = \"1h\"\nmode = \"append\"\nkey = \"id\"\n";

#[tokio::test]
async fn postgres_tables_are_accelerated() {
    let db = match bluelamp_tests::services::PgDatabase::create().await {
        Ok(db) => db,
        Err(e) => {
            bluelamp_tests::services::service_missing("PostgreSQL", &e);
            return;
        }
    };
    db.client
        .batch_execute(
            "CREATE TABLE calls (id bigint NOT NULL, grade text NOT NULL); \
             INSERT INTO calls SELECT g, CASE WHEN g % 2 = 1 THEN 'A' ELSE 'B' END \
             FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    let text = format!(
        "[[source]]\nname = \"pg\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\n\
         database = \"{}\"\nsslmode = \"disable\"\n{DATABASE_ACCELERATION}",
        bluelamp_tests::services::pg_host(),
        bluelamp_tests::services::pg_port(),
        db.name
    );
    let engine = engine_from_text(&text, Path::new(".")).await.unwrap();
    database_copies_append_and_notice_new_columns(
        &engine,
        async |sql: &str| db.client.batch_execute(sql).await.unwrap(),
        "pg",
    )
    .await;
}

#[tokio::test]
async fn sqlite_tables_are_accelerated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.sqlite");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE calls (id INTEGER NOT NULL, grade TEXT NOT NULL); \
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100) \
             INSERT INTO calls SELECT n, CASE WHEN n % 2 = 1 THEN 'A' ELSE 'B' END FROM g;",
        )
        .unwrap();
    let text = format!(
        "[[source]]\nname = \"lite\"\nkind = \"sqlite\"\npath = \"calls.sqlite\"\n{DATABASE_ACCELERATION}"
    );
    let engine = engine_from_text(&text, dir.path()).await.unwrap();
    let connection = std::sync::Mutex::new(connection);
    database_copies_append_and_notice_new_columns(
        &engine,
        async |sql: &str| connection.lock().unwrap().execute_batch(sql).unwrap(),
        "lite",
    )
    .await;
}

#[tokio::test]
async fn mariadb_tables_are_accelerated() {
    let db = match bluelamp_tests::services::MariaDatabase::create().await {
        Ok(db) => db,
        Err(e) => {
            bluelamp_tests::services::service_missing("MariaDB", &e);
            return;
        }
    };
    db.execute("CREATE TABLE calls (id bigint NOT NULL, grade varchar(10) NOT NULL)")
        .await
        .unwrap();
    db.execute(
        "INSERT INTO calls (id, grade) SELECT seq, IF(seq % 2 = 1, 'A', 'B') FROM seq_1_to_100",
    )
    .await
    .unwrap();
    let text = format!(
        "[[source]]\nname = \"maria\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"root\"\n\
         database = \"{}\"\nsslmode = \"disabled\"\n{DATABASE_ACCELERATION}",
        bluelamp_tests::services::mariadb_host(),
        bluelamp_tests::services::mariadb_port(),
        db.name
    );
    let engine = engine_from_text(&text, Path::new(".")).await.unwrap();
    database_copies_append_and_notice_new_columns(
        &engine,
        async |sql: &str| db.execute(sql).await.unwrap(),
        "maria",
    )
    .await;
}
