//! Tier 2 against the live system: `bluelamp certify published --config C
//! --source NAME` checks a configured `openapi` source's document as
//! [`crate::published`] does, and then the system itself, through the same
//! connector every query uses:
//!
//! - the document is served without credentials at its URL;
//! - every list reads to its end with each record matching its documented
//!   schema (a record that does not is named by page and field);
//! - two walks of every list give the same records, none twice (a repeated
//!   page shows as duplicates, a missing record as a difference);
//! - each documented equality filter returns exactly the records of the
//!   unfiltered walk that satisfy it.
//!
//! - [`crate::probes`] adds its own requests: documented error answers and
//!   429, a deposit round trip (only with `--allow-writes`), and transport
//!   security.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bluelamp_connectors::openapi::OpenApiConfig;
use bluelamp_connectors::openapi::discovery::{FilterOp, TableSpec, discover};
use bluelamp_connectors::openapi::spec::{Document, Location};
use bluelamp_engine::{Config, Engine, Session};
use futures::TryStreamExt;

use crate::probes::Probes;
use crate::published::document_criteria;
use crate::report::{Criterion, Outcome, Report, Subject};

/// Most tables one run walks, so a very large interface stays bounded.
const MOST_TABLES: usize = 50;

/// Records per page in the second walk.
const SMALL_PAGE: i64 = 25;

/// Checks source `name` of `config` and its live system, reading as
/// `as_user` (default: the configuration's local user), whose policies apply.
///
/// # Errors
/// A source that is not configured or not `openapi`, or an engine that
/// cannot start; what the system does wrong is in the report instead.
pub async fn check_source(
    config: Config,
    name: &str,
    as_user: Option<&str>,
    allow_writes: bool,
) -> Result<Report, String> {
    let source = config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no source '{name}' in the config (its sources: {})",
                names.join(", ")
            )
        })?
        .clone();
    if source.kind != "openapi" {
        return Err(format!(
            "source '{name}' is {}, not openapi: tier 2 certifies a documented HTTP interface",
            source.kind
        ));
    }
    let options: OpenApiConfig = source.options().map_err(|e| e.to_string())?;
    let (bytes, location, served) = fetch_document(&source, &options).await?;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let mut subject = Subject::of(&location, &bytes);
    let doc = Document::parse(&text).map_err(|e| format!("{location}: {e}"))?;
    let root = if location.contains("://") {
        Location::Url(url::Url::parse(&location).map_err(|e| e.to_string())?)
    } else {
        Location::File(source.resolve_path(&options.spec))
    };
    let (doc, warnings, files) = crate::published::bundle_hashed(doc, root, true).await;
    subject.describe(&doc.root);
    let mut criteria = document_criteria(&doc, &warnings, served);
    // The second walk asks for small pages, so page boundaries fall elsewhere
    // and a page repeated or skipped shows as a difference.
    let mut small = config.clone();
    for s in &mut small.sources {
        if s.name == name {
            *s = s.with_option("page_size", toml::Value::Integer(SMALL_PAGE));
        }
    }
    let start = |config: Config| async move {
        Engine::start(config, &bluelamp_connectors::registry())
            .await
            .map_err(|e| e.to_string())
    };
    let first = start(config).await?;
    let second = start(small).await?;
    let identity = first.local_identity(as_user).map_err(|e| e.message)?;
    let reader = identity.user.clone();
    let sessions = (first.session(identity.clone()), second.session(identity));
    // Every statement and probe of the run is recorded with why it was made.
    let purpose = format!(
        "SET bluelamp.purpose = 'bluelamp certify published: tier 2 certification of source {}'",
        name.replace('\'', "''")
    );
    for session in [&sessions.0, &sessions.1] {
        crate::live::rows(session, &purpose).await?;
    }
    // The probes read raw answers beneath the policy: refused, before any
    // request, unless the certifying user may see the source in full.
    let grant = sessions
        .0
        .authorise_probes(name, allow_writes)
        .await
        .map_err(|e| {
            format!(
                "cannot certify source '{name}' as user '{reader}': {}",
                e.message
            )
        })?;
    let (mut live, untrusted) = live_criteria(&sessions, name, &doc, &options).await;
    if let Some(schemas) = live.first_mut() {
        schemas.evidence.insert(
            0,
            format!(
                "read and probed as user '{reader}', who may see every table of the source in full"
            ),
        );
    }
    criteria.extend(live);
    // Requests of the checks' own, through the source's client.
    let opened = bluelamp_connectors::openapi::open(&source)
        .await
        .map_err(|e| e.to_string())?;
    let (tables, _) = discover(&doc, &options.tables);
    let lists: Vec<&TableSpec> = tables
        .iter()
        .filter(|t| t.readable && t.path_params.is_empty())
        .collect();
    let mut probes = Probes::new(opened, grant, untrusted);
    // Each list's first page, raw, against its documented item schema.
    let mut sampled = 0u64;
    let (bad, undocumented) = counted(&mut sampled, probes.sample_schemas(&lists)).await;
    if let Some(schemas) = criteria.iter_mut().find(|c| c.id == "live.schemas") {
        if !bad.is_empty() {
            schemas.outcome = Outcome::Fail;
            schemas.evidence.extend(bad);
        } else if schemas.outcome == Outcome::Pass {
            schemas.evidence.push(format!(
                "the first page of each of {} lists, read raw, matched its item schema field by field (type, format, enum, required, nullability)",
                lists.len()
            ));
        }
        schemas.evidence.extend(undocumented);
        schemas
            .evidence
            .push(format!("reading first pages raw: {sampled} requests"));
    }
    let with_requests = |mut c: Criterion, n: u64| {
        if c.outcome != Outcome::NotApplicable {
            c.evidence.push(format!("{n} requests"));
        }
        c
    };
    let mut n = 0;
    let errors = counted(&mut n, probes.errors(&lists)).await;
    criteria.push(with_requests(errors, n));
    criteria.push(if allow_writes {
        let mut n = 0;
        let trip = counted(&mut n, probes.round_trip(&sessions.0, name, &tables)).await;
        with_requests(trip, n)
    } else {
        Criterion::new(
            "deposit.round_trip",
            "A deposited record is stored once and retrievable with the same values",
            Outcome::NotApplicable,
            vec!["not run: it deposits records for real, so it runs only with --allow-writes, against a test or sandbox system".into()],
        )
    });
    let mut n = 0;
    let transport = counted(&mut n, probes.transport(&lists)).await;
    criteria.push(with_requests(transport, n));
    if let Some(why) = probes.unrecorded() {
        return Err(format!(
            "certifying source '{name}' stopped: a probe could not be recorded in the audit trail, so it was not sent: {why}"
        ));
    }
    let mut report = crate::published::finish(subject, criteria);
    report.documents = files;
    Ok(report)
}

/// The document's bytes, where they came from, and the `document.served`
/// criterion: fetched without credentials where the source names a URL.
pub(crate) async fn fetch_document(
    source: &bluelamp_engine::SourceConfig,
    options: &OpenApiConfig,
) -> Result<(Vec<u8>, String, Criterion), String> {
    let title = "The document is served without credentials at a stable URL";
    if !options.spec.contains("://") {
        let path = source.resolve_path(&options.spec);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let served = Criterion::new(
            "document.served",
            title,
            Outcome::NotApplicable,
            vec![format!(
                "the source reads the document from a file ({}); name its URL in `spec` to check it is served",
                path.display()
            )],
        );
        return Ok((bytes, path.display().to_string(), served));
    }
    let url = options.spec.clone();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let (outcome, evidence, bytes) = match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            let bytes = r.bytes().await.map_err(|e| format!("{url}: {e}"))?.to_vec();
            (
                Outcome::Pass,
                format!("GET {url} without credentials: 200, {} bytes", bytes.len()),
                bytes,
            )
        }
        Ok(r) => {
            return Err(format!(
                "GET {url} without credentials answered {}: a published document must be freely available",
                r.status().as_u16()
            ));
        }
        Err(e) => return Err(format!("GET {url}: {e}")),
    };
    Ok((
        bytes,
        url,
        Criterion::new("document.served", title, outcome, vec![evidence]),
    ))
}

/// A statement's rows as text, or its error.
pub(crate) async fn rows(session: &Session, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let output = session.sql(sql).await.map_err(|e| e.message)?;
    let batches: Vec<RecordBatch> = output
        .stream
        .try_collect()
        .await
        .map_err(|e| bluelamp_engine::QueryError::from(e).message)?;
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(out)
}

pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn live_criteria(
    sessions: &(Session, Session),
    source: &str,
    doc: &Document,
    options: &OpenApiConfig,
) -> (Vec<Criterion>, Vec<(String, String)>) {
    let (tables, _) = discover(doc, &options.tables);
    // (table, column) of each filter that did not return what it should.
    let mut untrusted: Vec<(String, String)> = Vec::new();
    let walkable: Vec<_> = tables
        .iter()
        .filter(|t| t.readable && t.path_params.is_empty())
        .take(MOST_TABLES)
        .collect();
    let mut schema_ok = Vec::new();
    let mut schema_bad = Vec::new();
    let mut paging_ok = Vec::new();
    let mut paging_bad = Vec::new();
    let mut filter_ok = Vec::new();
    let mut filter_bad = Vec::new();
    let mut records = 0usize;
    let mut empty: Vec<String> = Vec::new();
    let mut filter_skipped: Vec<String> = Vec::new();
    // Requests each criterion cost: schemas (the first walk), pagination
    // (the second), filters.
    let mut spent = (0u64, 0u64, 0u64);
    let session = &sessions.0;
    for table in &walkable {
        let sql = format!("SELECT * FROM {}.{}", quoted(source), quoted(&table.name));
        let first = match counted(&mut spent.0, rows(session, &sql)).await {
            Ok(rows) => rows,
            Err(e) => {
                schema_bad.push(format!("{}: {e}", table.endpoint()));
                continue;
            }
        };
        records += first.len();
        if first.is_empty() {
            // Nothing to check the schema, the pages or the filters against.
            empty.push(table.endpoint());
            continue;
        }
        schema_ok.push(format!("{}: {} records", table.endpoint(), first.len()));
        let mut sorted = first.clone();
        sorted.sort();
        let twice = |rows: &[Vec<String>]| {
            rows.windows(2)
                .find(|w| w[0] == w[1])
                .map(|w| w[0].join(", "))
        };
        match counted(&mut spent.1, rows(&sessions.1, &sql)).await {
            Ok(mut second) => {
                second.sort();
                if let Some(record) = twice(&sorted) {
                    paging_bad.push(format!(
                        "{}: a walk returned the same record twice: {record}",
                        table.endpoint()
                    ));
                } else if let Some(record) = twice(&second) {
                    paging_bad.push(format!(
                        "{}: a walk in pages of {SMALL_PAGE} returned the same record twice: {record}",
                        table.endpoint()
                    ));
                } else if second == sorted {
                    paging_ok.push(format!(
                        "{}: two walks (default pages, pages of {SMALL_PAGE}), {} records each, none twice",
                        table.endpoint(),
                        sorted.len()
                    ));
                } else {
                    let missing = sorted.iter().find(|r| !second.contains(r));
                    paging_bad.push(format!(
                        "{}: two walks differ ({} and {} records){}",
                        table.endpoint(),
                        sorted.len(),
                        second.len(),
                        missing
                            .map(|r| format!("; only the first has {}", r.join(", ")))
                            .unwrap_or_default()
                    ));
                }
            }
            Err(e) => paging_bad.push(format!("{}: the second walk failed: {e}", table.endpoint())),
        }
        // The unfiltered walk is the filters' oracle: where two walks
        // disagree it is not one, so the filters are not judged on it.
        if paging_bad
            .last()
            .is_some_and(|b| b.starts_with(&format!("{}:", table.endpoint())))
        {
            filter_skipped.push(table.endpoint());
            continue;
        }
        let columns: Vec<&str> = table
            .columns
            .iter()
            .map(|(f, _)| f.name().as_str())
            .collect();
        // A query can only reach the first parameter of each kind on a
        // column: the others are not tested (and not claimed).
        let mut tested: Vec<(&str, FilterOp)> = Vec::new();
        for filter in &table.filters {
            if tested.contains(&(filter.column.as_str(), filter.op)) {
                continue;
            }
            tested.push((&filter.column, filter.op));
            let Some(index) = columns.iter().position(|c| *c == filter.column) else {
                continue;
            };
            let Some(kind) = Kind::of(table.columns[index].0.data_type()) else {
                continue;
            };
            let values: Vec<&str> = first
                .iter()
                .map(|row| row[index].as_str())
                .filter(|v| *v != "NULL")
                .collect();
            // Equality: the most common value, so the filter has something
            // to find. A range: the median, so it splits the records.
            let value = if filter.op == FilterOp::Eq {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in &values {
                    *counts.entry(v).or_default() += 1;
                }
                counts.into_iter().max_by_key(|(_, n)| *n).map(|(v, _)| v)
            } else {
                let mut sorted = values.clone();
                sorted.sort_by(|a, b| kind.compare(a, b));
                sorted.get(sorted.len() / 2).copied()
            };
            let Some(value) = value else {
                continue;
            };
            let (sql_op, keeps): (&str, fn(std::cmp::Ordering) -> bool) = match filter.op {
                FilterOp::Eq => ("=", std::cmp::Ordering::is_eq),
                FilterOp::Ge => (">=", std::cmp::Ordering::is_ge),
                FilterOp::Gt => (">", std::cmp::Ordering::is_gt),
                FilterOp::Le => ("<=", std::cmp::Ordering::is_le),
                FilterOp::Lt => ("<", std::cmp::Ordering::is_lt),
            };
            let expected = values
                .iter()
                .filter(|v| keeps(kind.compare(v, value)))
                .count();
            let filtered = format!(
                "SELECT count(*) FROM {}.{} WHERE {} {sql_op} {}",
                quoted(source),
                quoted(&table.name),
                quoted(&filter.column),
                kind.literal(value)
            );
            let asked = format!("{}?{}={value}", table.endpoint(), filter.param);
            match counted(&mut spent.2, rows(session, &filtered)).await {
                Ok(got)
                    if got.first().and_then(|r| r.first()).map(String::as_str)
                        == Some(&expected.to_string()) =>
                {
                    filter_ok.push(format!(
                        "{asked}: {expected} records, as the unfiltered walk has"
                    ));
                }
                Ok(got) => {
                    untrusted.push((table.name.clone(), filter.column.clone()));
                    filter_bad.push(format!(
                        "{asked} returned {} records; the unfiltered walk has {expected} with {} {sql_op} {value}",
                        got.first().and_then(|r| r.first()).cloned().unwrap_or_default(),
                        filter.column
                    ));
                }
                Err(e) => filter_bad.push(format!("{asked}: {e}")),
            }
        }
    }
    let verdict = |bad: &Vec<String>, ok: &Vec<String>, none: &str| -> (Outcome, Vec<String>) {
        if !bad.is_empty() {
            (Outcome::Fail, bad.clone())
        } else if ok.is_empty() {
            (Outcome::NotApplicable, vec![none.to_string()])
        } else {
            (Outcome::Pass, ok.clone())
        }
    };
    let (o, mut e) = verdict(
        &schema_bad,
        &schema_ok,
        "no list could be read without a key",
    );
    if o == Outcome::Pass {
        e.insert(
            0,
            format!(
                "{records} records in {} lists matched their documented schemas",
                schema_ok.len()
            ),
        );
    }
    if !empty.is_empty() {
        e.push(format!("empty, so not checked: {}", empty.join(", ")));
    }
    let mut out = vec![Criterion::new(
        "live.schemas",
        "Live answers match their documented schemas",
        o,
        e,
    )];
    let (o, e) = verdict(&paging_bad, &paging_ok, "no list could be walked");
    out.push(Criterion::new(
        "live.pagination",
        "Pagination reaches every record exactly once, stable under a second walk",
        o,
        e,
    ));
    let (o, mut e) = verdict(
        &filter_bad,
        &filter_ok,
        "no documented filter on a list without a key",
    );
    if !filter_skipped.is_empty() {
        e.push(format!(
            "not checked, since two walks of the list disagree (see live.pagination): {}",
            filter_skipped.join(", ")
        ));
    }
    out.push(Criterion::new(
        "live.filters",
        "Each documented filter returns exactly the records that satisfy it",
        o,
        e,
    ));
    for (criterion, n) in out.iter_mut().zip([spent.0, spent.1, spent.2]) {
        criterion.evidence.push(format!("{n} requests"));
    }
    (out, untrusted)
}

/// How a filtered column's values (as the walk shows them) compare and are
/// written in SQL.
#[derive(Clone, Copy)]
enum Kind {
    /// Text, and dates and times (fixed-width ISO 8601, so text order is
    /// time order): compared as text, quoted in SQL.
    Text,
    /// Numbers: compared as numbers, bare in SQL.
    Number,
    /// `true` / `false`: equality only.
    Boolean,
}

impl Kind {
    fn of(data_type: &arrow::datatypes::DataType) -> Option<Self> {
        use arrow::datatypes::DataType as T;
        match data_type {
            T::Utf8 | T::LargeUtf8 | T::Utf8View | T::Date32 | T::Date64 | T::Timestamp(_, _) => {
                Some(Self::Text)
            }
            t if t.is_numeric() => Some(Self::Number),
            T::Boolean => Some(Self::Boolean),
            _ => None,
        }
    }

    fn compare(self, a: &str, b: &str) -> std::cmp::Ordering {
        match self {
            Self::Number => match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            },
            Self::Text | Self::Boolean => a.cmp(b),
        }
    }

    fn literal(self, value: &str) -> String {
        match self {
            Self::Text => format!("'{}'", value.replace('\'', "''")),
            Self::Number | Self::Boolean => value.to_string(),
        }
    }
}

/// Runs `work`, adding the HTTP requests it sent to `counter`.
pub(crate) async fn counted<T>(counter: &mut u64, work: impl std::future::Future<Output = T>) -> T {
    let before = bluelamp_connectors::openapi::client::requests_sent();
    let out = work.await;
    *counter += bluelamp_connectors::openapi::client::requests_sent().saturating_sub(before);
    out
}
