//! `OpenApiExec`: walks an endpoint's pages and streams them as Arrow batches.
//!
//! One task per scan fetches pages into a bounded channel (so memory stays
//! bounded and a slow consumer slows the fetching), decodes each page with
//! `arrow-json` against the documented schema, and stops early at a `LIMIT`.
//! Dropping the stream aborts the task. A page that is not JSON, or a record
//! that contradicts the documented schema, fails the query with an error naming
//! the source, the endpoint and the page — rows are never dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::StatisticsArgs;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{FutureExt, Stream, StreamExt};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::{ApiClient, FetchError, Identity};
use super::discovery::{
    CURSOR_FIELDS, CURSOR_HEADERS, CursorAt, FilterOp, NEXT_LINK_FIELDS, Pagination, RecordsAt,
    TableSpec,
};
use super::pushdown::Target;
use super::requests::{RequestSet, build as build_requests};

/// The scan of one OpenAPI table.
pub struct OpenApiExec {
    source: String,
    table: Arc<TableSpec>,
    client: Arc<ApiClient>,
    /// The header naming the end user, where the source sends one.
    identity: Option<Identity>,
    base: Url,
    /// Parameter values from the query's own filters.
    values: BTreeMap<Target, Vec<String>>,
    /// Dynamic filters from joins, on columns that can be looked up.
    dynamic: Vec<(String, Arc<dyn PhysicalExpr>)>,
    projection: Option<Vec<usize>>,
    full_schema: SchemaRef,
    schema: SchemaRef,
    limit: Option<usize>,
    page_size: Option<u64>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for OpenApiExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApiExec")
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

impl OpenApiExec {
    /// A scan of `table` issuing `requests`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a plain constructor of a plan node"
    )]
    pub fn new(
        source: String,
        table: Arc<TableSpec>,
        client: Arc<ApiClient>,
        base: Url,
        values: BTreeMap<Target, Vec<String>>,
        full_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
        page_size: Option<u64>,
    ) -> DFResult<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(full_schema.project(p)?),
            None => Arc::clone(&full_schema),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            source,
            table,
            client,
            identity: None,
            base,
            values,
            dynamic: Vec::new(),
            projection,
            full_schema,
            schema,
            limit,
            page_size,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// Sends `identity` (the end user's header) with every request.
    pub fn with_identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }

    fn params_text(&self) -> String {
        self.values
            .iter()
            .map(|(target, values)| {
                let joined = abbreviate(&values.join(","));
                match target {
                    Target::Query(i) => format!("{}={joined}", self.table.filters[*i].param),
                    Target::Path(name) => format!("{{{name}}}={joined}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Columns a join's dynamic filter can turn into requests: path parameters,
    /// and columns with an equality parameter that takes a list.
    fn lookup_column(&self, column: &str) -> Option<Target> {
        if self.table.path_param(column).is_some() {
            return Some(Target::Path(column.to_string()));
        }
        self.table
            .filters
            .iter()
            .position(|f| f.column == column && f.op == FilterOp::Eq && f.list)
            .map(Target::Query)
    }
}

fn abbreviate(v: &str) -> String {
    if v.chars().count() > 60 {
        let cut: String = v.chars().take(57).collect();
        format!("{cut}...")
    } else {
        v.to_string()
    }
}

impl DisplayAs for OpenApiExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenApiExec: source={} endpoint={} pagination={} params=[{}]",
            self.source,
            self.table.endpoint(),
            self.table.pagination.describe(),
            self.params_text(),
        )?;
        if !self.dynamic.is_empty() {
            let columns: Vec<&str> = self.dynamic.iter().map(|(c, _)| c.as_str()).collect();
            write!(f, " join_lookup=[{}]", columns.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for OpenApiExec {
    fn name(&self) -> &str {
        "OpenApiExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        // A join only computes its dynamic filter for consumers it can see here.
        for (_, expr) in &self.dynamic {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "OpenApiExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "OpenApiExec has one partition, not {partition}"
            )));
        }
        let counters = Counters {
            requests: MetricBuilder::new(&self.metrics).global_counter("requests"),
            pages: MetricBuilder::new(&self.metrics).global_counter("pages"),
            bytes: MetricBuilder::new(&self.metrics).global_counter("bytes"),
            records: MetricBuilder::new(&self.metrics).global_counter("records"),
            lookups: MetricBuilder::new(&self.metrics).global_counter("lookup_keys"),
        };
        let scan = Scan {
            source: self.source.clone(),
            table: Arc::clone(&self.table),
            client: Arc::clone(&self.client),
            identity: self.identity.clone(),
            base: self.base.clone(),
            full_schema: Arc::clone(&self.full_schema),
            projection: self.projection.clone(),
            limit: self.limit,
            page_size: self.page_size,
            counters,
        };
        let mut values = self.values.clone();
        let dynamic = self.dynamic.clone();
        let lookups: Vec<Option<Target>> =
            dynamic.iter().map(|(c, _)| self.lookup_column(c)).collect();
        // The scan starts on the stream's first poll. A hash join polls its probe
        // side only once every build partition is done, so by then a join's
        // filter is complete; a filter still open then (a TopK's, which needs
        // this scan's rows) is ignored rather than waited for.
        let start = move || {
            let (tx, rx) = mpsc::channel::<DFResult<RecordBatch>>(2);
            for ((column, filter), target) in dynamic.iter().zip(lookups) {
                let (Some(target), Some(dynamic)) =
                    (target, filter.downcast_ref::<DynamicFilterPhysicalExpr>())
                else {
                    continue;
                };
                if dynamic.wait_complete().now_or_never().is_none() {
                    continue;
                }
                let Ok(current) = dynamic.current() else {
                    continue;
                };
                if let Some(keys) = in_list_values(&current, column)
                    && !values.contains_key(&target)
                {
                    scan.counters.lookups.add(keys.len());
                    values.insert(target, keys);
                }
            }
            let mut task = JoinSet::new();
            task.spawn(async move {
                if values.values().any(Vec::is_empty) {
                    return; // the join's build side was empty: nothing can match
                }
                let requests = match build_requests(&scan.source, &scan.table, &values) {
                    Ok(r) => r,
                    Err(message) => {
                        let _ = tx.send(Err(scan.error(message, false))).await;
                        return;
                    }
                };
                let mut remaining = scan.limit;
                for set in requests {
                    if remaining == Some(0) {
                        break;
                    }
                    if let Err(e) = scan.walk(&set, &tx, &mut remaining).await {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            });
            (rx, task)
        };
        let stream = ScanStream {
            start: Some(Box::new(start)),
            rx: None,
            task: None,
            source: self.source.clone(),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// Keeps a join's dynamic filter on a column that can be looked up, so that
    /// only the matching keys are requested. DataFusion still applies the filter
    /// itself (it is reported as not pushed), so this never changes results.
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DFResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let mut kept = Vec::new();
        for result in &child_pushdown_result.parent_filters {
            if result
                .filter
                .downcast_ref::<DynamicFilterPhysicalExpr>()
                .is_none()
            {
                continue;
            }
            let columns = collect_columns(&result.filter);
            if let [column] = columns.iter().collect::<Vec<_>>().as_slice()
                && self.lookup_column(column.name()).is_some()
            {
                kept.push((column.name().to_string(), Arc::clone(&result.filter)));
            }
        }
        let filters = vec![PushedDown::No; child_pushdown_result.parent_filters.len()];
        if kept.is_empty() {
            return Ok(FilterPushdownPropagation {
                filters,
                updated_node: None,
            });
        }
        let mut node = self.clone_node();
        node.dynamic.extend(kept);
        Ok(FilterPushdownPropagation {
            filters,
            updated_node: Some(Arc::new(node)),
        })
    }

    /// A rough size, so the join planner builds its hash table from the side the
    /// query narrowed and probes the unfiltered API with the result.
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DFResult<Arc<Statistics>> {
        let narrowed: u64 = self
            .values
            .iter()
            .map(|(target, values)| match target {
                Target::Query(i) if self.table.filters[*i].op == FilterOp::Eq => {
                    10 * values.len() as u64
                }
                Target::Path(_) => 10 * values.len() as u64,
                Target::Query(_) => 5_000,
            })
            .min()
            .unwrap_or(1_000_000);
        let rows = self.limit.map_or(narrowed, |l| narrowed.min(l as u64));
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Inexact(rows as usize);
        // About 100 bytes a row: enough for the planner to collect a narrowed
        // side once (CollectLeft), whose complete filter then drives lookups.
        stats.total_byte_size = Precision::Inexact(rows as usize * 100);
        Ok(Arc::new(stats))
    }
}

impl OpenApiExec {
    fn clone_node(&self) -> Self {
        Self {
            source: self.source.clone(),
            table: Arc::clone(&self.table),
            client: Arc::clone(&self.client),
            identity: self.identity.clone(),
            base: self.base.clone(),
            values: self.values.clone(),
            dynamic: self.dynamic.clone(),
            projection: self.projection.clone(),
            full_schema: Arc::clone(&self.full_schema),
            schema: Arc::clone(&self.schema),
            limit: self.limit,
            page_size: self.page_size,
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

/// The keys a (dynamic) filter admits for `column`, as the API expects them,
/// or `None` when the filter does not limit the column to a known list. The
/// answer is always a superset of the keys that can pass: `AND` may take either
/// side, `OR` and a partitioned join's `CASE` need every branch, and any branch
/// that is not an `IN` list (bounds, hash lookups) gives up — a scan then reads
/// everything rather than risk missing rows.
fn in_list_values(expr: &Arc<dyn PhysicalExpr>, column: &str) -> Option<Vec<String>> {
    let mut values: Vec<String> = keys(expr, column)?
        .iter()
        .map(super::pushdown::format_scalar)
        .collect::<Option<_>>()?;
    values.sort();
    values.dedup();
    Some(values)
}

fn keys(expr: &Arc<dyn PhysicalExpr>, column: &str) -> Option<Vec<ScalarValue>> {
    if let Some(dynamic) = expr.downcast_ref::<DynamicFilterPhysicalExpr>() {
        return keys(&dynamic.current().ok()?, column);
    }
    if let Some(list) = expr.downcast_ref::<InListExpr>() {
        let on_column = list
            .expr()
            .downcast_ref::<Column>()
            .is_some_and(|c| c.name() == column);
        if list.negated() || !on_column {
            return None;
        }
        return list
            .list()
            .iter()
            .map(|item| item.downcast_ref::<Literal>().map(|l| l.value().clone()))
            .collect();
    }
    if let Some(literal) = expr.downcast_ref::<Literal>() {
        return match literal.value() {
            ScalarValue::Boolean(Some(false)) | ScalarValue::Boolean(None) => Some(Vec::new()),
            _ => None,
        };
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        return match binary.op() {
            Operator::And => keys(binary.left(), column).or_else(|| keys(binary.right(), column)),
            Operator::Or => {
                let mut left = keys(binary.left(), column)?;
                left.extend(keys(binary.right(), column)?);
                Some(left)
            }
            _ => None,
        };
    }
    if let Some(case) = expr.downcast_ref::<CaseExpr>() {
        let mut all = Vec::new();
        for (_, then) in case.when_then_expr() {
            all.extend(keys(then, column)?);
        }
        if let Some(otherwise) = case.else_expr() {
            all.extend(keys(otherwise, column)?);
        }
        return Some(all);
    }
    None
}

type Start = Box<dyn FnOnce() -> (mpsc::Receiver<DFResult<RecordBatch>>, JoinSet<()>) + Send>;

/// The receiving end of a scan: starts the fetching task on first poll, and
/// dropping it stops the task (a `JoinSet` aborts its tasks when dropped). A
/// task that dies ends the scan with an error naming the source, never a
/// short answer that looks complete.
struct ScanStream {
    start: Option<Start>,
    rx: Option<mpsc::Receiver<DFResult<RecordBatch>>>,
    task: Option<JoinSet<()>>,
    source: String,
}

impl Stream for ScanStream {
    type Item = DFResult<RecordBatch>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(start) = self.start.take() {
            let (rx, task) = start();
            self.rx = Some(rx);
            self.task = Some(task);
        }
        let Some(rx) = self.rx.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        if let Some(item) = std::task::ready!(rx.poll_recv(cx)) {
            return std::task::Poll::Ready(Some(item));
        }
        // The channel closed: the task has ended; did it finish?
        let Some(task) = self.task.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let outcome = std::task::ready!(task.poll_join_next(cx));
        self.rx = None;
        self.task = None;
        std::task::Poll::Ready(outcome.and_then(Result::err).map(|e| {
            tracing::error!("the scan of source {} failed: {e}", self.source);
            Err(super::source_error(
                &self.source,
                "the scan stopped unexpectedly".into(),
                false,
            ))
        }))
    }
}

struct Counters {
    requests: Count,
    pages: Count,
    bytes: Count,
    records: Count,
    lookups: Count,
}

struct Scan {
    source: String,
    table: Arc<TableSpec>,
    client: Arc<ApiClient>,
    identity: Option<Identity>,
    base: Url,
    full_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    page_size: Option<u64>,
    counters: Counters,
}

/// What one page said about the next.
struct PageInfo {
    records: usize,
    next_cursor: Option<String>,
    next_url: Option<String>,
    total: Option<u64>,
    /// The last record's key, for [`Pagination::AfterLast`].
    last_key: Option<String>,
    /// What on the page says more records follow (`has_more is true`), if anything.
    more: Option<String>,
    /// A fingerprint of the page's records, to tell a repeated page.
    fingerprint: Option<u64>,
}

const DEFAULT_PAGE: u64 = 100;

impl Scan {
    fn error(&self, message: String, unavailable: bool) -> DataFusionError {
        super::source_error(&self.source, message, unavailable)
    }

    fn fetch_error(&self, e: FetchError) -> DataFusionError {
        self.error(e.message, e.unavailable)
    }

    fn url(&self, set: &RequestSet, extra: &[(String, String)]) -> DFResult<Url> {
        let base = self.base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{}", set.path))
            .map_err(|e| self.error(format!("{}: bad URL: {e}", self.table.endpoint()), false))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in set.query.iter().chain(extra) {
                pairs.append_pair(k, v);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    fn page_size(&self, remaining: Option<usize>, max: Option<u64>) -> u64 {
        let wanted = self.page_size.or(max).unwrap_or(DEFAULT_PAGE);
        let capped = max.map_or(wanted, |m| wanted.min(m));
        match remaining {
            Some(r) => capped.min(r.max(1) as u64),
            None => capped,
        }
    }

    /// The parameters of a page after a token (a cursor, a last key): the
    /// page size where the interface takes one, and the token after the first.
    fn token_params(
        &self,
        size: &Option<String>,
        max: Option<u64>,
        remaining: Option<usize>,
        param: &str,
        token: &Option<String>,
    ) -> Vec<(String, String)> {
        let mut extra = Vec::new();
        if let Some(size) = size {
            extra.push((size.clone(), self.page_size(remaining, max).to_string()));
        }
        if let Some(token) = token {
            extra.push((param.to_string(), token.clone()));
        }
        extra
    }

    async fn walk(
        &self,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<()> {
        let endpoint = self.table.endpoint();
        match &self.table.pagination {
            Pagination::None => {
                let url = self.url(set, &[])?;
                let info = self.page(&url, 1, set, tx, remaining).await?;
                return self.ended(&info, 1, remaining);
            }
            Pagination::Offset { offset, limit, max } => {
                let size = self.page_size(*remaining, *max);
                let first = self.url(
                    set,
                    &[
                        (offset.clone(), "0".into()),
                        (limit.clone(), size.to_string()),
                    ],
                )?;
                let info = self.page(&first, 1, set, tx, remaining).await?;
                match info.total {
                    // The total says which pages exist: fetch them concurrently, in order.
                    Some(total) if info.records > 0 => {
                        let step = info.records as u64;
                        let offsets: Vec<u64> =
                            (1..).map(|n| n * step).take_while(|o| *o < total).collect();
                        let mut pages =
                            futures::stream::iter(offsets.into_iter().enumerate().map(|(i, o)| {
                                let url = self.url(
                                    set,
                                    &[
                                        (offset.clone(), o.to_string()),
                                        (limit.clone(), step.to_string()),
                                    ],
                                );
                                let endpoint = endpoint.clone();
                                async move {
                                    let url = url?;
                                    let fetched = self
                                        .client
                                        .get_json(&url, &endpoint, self.identity.as_ref())
                                        .await
                                        .map_err(|e| self.fetch_error(e))?;
                                    Ok::<_, DataFusionError>((i + 2, fetched))
                                }
                            }))
                            .buffered(4);
                        let mut received = step;
                        while let Some(result) = pages.next().await {
                            if *remaining == Some(0) {
                                return Ok(());
                            }
                            let (number, fetched) = result?;
                            received += self
                                .emit(fetched, number, set, tx, remaining)
                                .await?
                                .records as u64;
                        }
                        // The offsets assumed full pages: one that held fewer
                        // leaves records between it and the next unread.
                        if received < total && *remaining != Some(0) {
                            return Err(self.error(
                                format!(
                                    "{endpoint}: the answer says there are {total} records but its pages held {received}: a page held fewer than the {step} the first did, so records after it were never asked for; the query was stopped rather than return part of the answer"
                                ),
                                true,
                            ));
                        }
                    }
                    _ => {
                        let mut position = info.records as u64;
                        let mut number = 1;
                        let mut last = info.records;
                        let mut seen = std::collections::HashSet::new();
                        self.not_repeated(&mut seen, &info, number)?;
                        // Without a total, only an empty page proves the end: a
                        // server may return fewer than asked for and still have more.
                        while last > 0 && *remaining != Some(0) {
                            number += 1;
                            let url = self.url(
                                set,
                                &[
                                    (offset.clone(), position.to_string()),
                                    (limit.clone(), size.to_string()),
                                ],
                            )?;
                            let next = self.page(&url, number, set, tx, remaining).await?;
                            if next.records > 0 {
                                self.not_repeated(&mut seen, &next, number)?;
                            }
                            last = next.records;
                            position += last as u64;
                        }
                    }
                }
            }
            Pagination::Page { page, size } => {
                let per_page = self.page_size(*remaining, None);
                let mut number = 1u64;
                let mut firsts = std::collections::HashSet::new();
                loop {
                    let mut extra = vec![(page.clone(), number.to_string())];
                    if let Some(size) = size {
                        extra.push((size.clone(), per_page.to_string()));
                    }
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number as usize, set, tx, remaining).await?;
                    // Servers often cap the page size silently, so only an
                    // empty page proves the end.
                    if info.records == 0 || *remaining == Some(0) {
                        break;
                    }
                    self.not_repeated(&mut firsts, &info, number as usize)?;
                    number += 1;
                }
            }
            Pagination::Cursor {
                param, size, max, ..
            } => {
                let mut cursor: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &cursor);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    match info.next_cursor.clone() {
                        Some(next) if !next.is_empty() && *remaining != Some(0) => {
                            if !seen.insert(next.clone()) {
                                return Err(self.error(format!("{endpoint}: page {number} gives a next cursor already used; the query was stopped rather than loop"), true));
                            }
                            cursor = Some(next)
                        }
                        _ => return self.ended(&info, number, remaining),
                    }
                    number += 1;
                }
            }
            Pagination::AfterLast {
                param,
                more,
                size,
                max,
                ..
            } => {
                let mut after: Option<String> = None;
                let mut number = 1;
                let mut seen = std::collections::HashSet::new();
                loop {
                    let extra = self.token_params(size, *max, *remaining, param, &after);
                    let url = self.url(set, &extra)?;
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    if *remaining == Some(0) || info.more.is_none() {
                        return Ok(());
                    }
                    match info.last_key.clone() {
                        Some(key) if info.records > 0 && seen.insert(key.clone()) => {
                            after = Some(key);
                        }
                        _ => {
                            return Err(self.error(format!("{endpoint}: page {number} says '{more}' is true but gives no new last record to continue after; the query was stopped rather than return part of the answer"), true));
                        }
                    }
                    number += 1;
                }
            }
            Pagination::NextLink { .. } | Pagination::LinkHeader => {
                let mut url = self.url(set, &[])?;
                let mut number = 1;
                let mut seen = std::collections::HashSet::from([url.to_string()]);
                loop {
                    let info = self.page(&url, number, set, tx, remaining).await?;
                    let Some(next) = info.next_url.clone().filter(|n| !n.is_empty()) else {
                        return self.ended(&info, number, remaining);
                    };
                    if *remaining == Some(0) {
                        break;
                    }
                    if !looks_like_url(&next) {
                        return Err(self.error(format!(
                            "{endpoint}: page {number}'s next page ('{}') is not a URL; if it is a token to pass back, set [source.tables.{}] pagination = {{ style = \"cursor\", param = \"...\", field = \"...\" }}",
                            abbreviate(&next),
                            self.table.name
                        ), false));
                    }
                    let joined = url.join(&next).map_err(|e| {
                        self.error(
                            format!("{endpoint}: page {number} links to a bad next URL: {e}"),
                            false,
                        )
                    })?;
                    // The source's credentials go only where the table lives.
                    if joined.origin() != self.base.origin() {
                        return Err(self.error(
                            format!(
                                "{endpoint}: page {number}'s next page is on another host ({}); it is not followed with this source's credentials",
                                joined.origin().ascii_serialization()
                            ),
                            false,
                        ));
                    }
                    if !seen.insert(joined.to_string()) {
                        return Err(self.error(format!("{endpoint}: page {number} links back to a page already read; the query was stopped rather than loop"), true));
                    }
                    url = joined;
                    number += 1;
                }
            }
        }
        Ok(())
    }

    /// Fails when a page holds exactly the records of an earlier one: the
    /// server ignores the page parameter, and the walk would never end.
    fn not_repeated(
        &self,
        seen: &mut std::collections::HashSet<u64>,
        info: &PageInfo,
        number: usize,
    ) -> DFResult<()> {
        match info.fingerprint {
            Some(f) if !seen.insert(f) => Err(self.error(
                format!(
                    "{}: page {number} repeats an earlier page (the server ignores the page parameter?); the query was stopped rather than loop",
                    self.table.endpoint()
                ),
                true,
            )),
            _ => Ok(()),
        }
    }

    /// A walk that ran out of pages: fine unless the last page says more
    /// records follow that the table's pagination cannot reach.
    fn ended(&self, last: &PageInfo, number: usize, remaining: &Option<usize>) -> DFResult<()> {
        if *remaining == Some(0) {
            return Ok(());
        }
        match &last.more {
            Some(sign) => Err(self.error(
                format!(
                    "{}: page {number} shows there is more ({sign}) but table {} cannot ask for it; the query was stopped rather than return part of the answer. Set [source.tables.{}] pagination (style = \"offset\", \"page\", \"cursor\", \"next_link\" or \"link_header\") to read every page",
                    self.table.endpoint(),
                    self.table.name,
                    self.table.name
                ),
                false,
            )),
            None => Ok(()),
        }
    }

    async fn page(
        &self,
        url: &Url,
        number: usize,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<PageInfo> {
        let fetched = match self
            .client
            .get_json(url, &self.table.endpoint(), self.identity.as_ref())
            .await
        {
            Ok(fetched) => fetched,
            // A lookup by a key that does not exist, where the document says
            // such a key is answered with 404: no row.
            Err(e) if e.status == Some(404) && self.table.missing_is_empty => {
                return Ok(PageInfo {
                    records: 0,
                    next_cursor: None,
                    next_url: None,
                    total: None,
                    last_key: None,
                    more: None,
                    fingerprint: None,
                });
            }
            Err(e) => return Err(self.fetch_error(e)),
        };
        self.emit(fetched, number, set, tx, remaining).await
    }

    /// Decodes one fetched page and sends its rows.
    async fn emit(
        &self,
        fetched: super::client::Fetched,
        number: usize,
        set: &RequestSet,
        tx: &mpsc::Sender<DFResult<RecordBatch>>,
        remaining: &mut Option<usize>,
    ) -> DFResult<PageInfo> {
        let endpoint = self.table.endpoint();
        self.counters.requests.add(fetched.attempts as usize);
        self.counters.pages.add(1);
        self.counters.bytes.add(fetched.body.len());
        let (mut records, info) = self.split(fetched.json, &fetched.headers, number)?;
        let count = records.len();
        if let Some(r) = remaining.as_mut() {
            records.truncate(*r);
            *r -= records.len();
        }
        if records.is_empty() {
            return Ok(PageInfo {
                records: count,
                ..info
            });
        }
        for record in &mut records {
            let Some(object) = record.as_object_mut() else {
                return Err(self.error(
                    format!("{endpoint}: page {number} has a record that is not an object"),
                    false,
                ));
            };
            // A path column is never a field of the records (discovery
            // names it apart), so the value the path was read with is its value.
            for (column, value) in &set.path_values {
                object.insert(column.clone(), Value::String(value.clone()));
            }
            for (field, shape) in &self.table.columns {
                if let Some(v) = object.get_mut(field.name()) {
                    shape.prepare(v);
                }
            }
        }
        let batch = self.decode(&records, number)?;
        self.counters.records.add(batch.num_rows());
        let batch = match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        };
        // A closed channel means the consumer has gone: stop quietly.
        let _ = tx.send(Ok(batch)).await;
        Ok(PageInfo {
            records: count,
            ..info
        })
    }

    fn split(
        &self,
        body: Value,
        headers: &reqwest::header::HeaderMap,
        number: usize,
    ) -> DFResult<(Vec<Value>, PageInfo)> {
        let endpoint = self.table.endpoint();
        let mut info = PageInfo {
            records: 0,
            next_cursor: None,
            next_url: None,
            total: None,
            last_key: None,
            more: None,
            fingerprint: None,
        };
        let pagination = &self.table.pagination;
        let next_in_link_header = headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        match pagination {
            Pagination::LinkHeader => info.next_url = next_in_link_header,
            _ if next_in_link_header.is_some() => {
                info.more = Some("its Link header has rel=\"next\"".into());
            }
            _ => {}
        }
        for name in CURSOR_HEADERS {
            let value = headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty());
            let Some(value) = value else { continue };
            match pagination {
                Pagination::Cursor {
                    field: CursorAt::Header(h),
                    ..
                } if h.eq_ignore_ascii_case(name) => info.next_cursor = Some(value.to_string()),
                Pagination::Cursor { .. } | Pagination::NextLink { .. } => {}
                _ => info.more = Some(format!("its {name} header is set")),
            }
        }
        let records = match (&self.table.records, body) {
            (RecordsAt::Root, Value::Array(items)) => items,
            (RecordsAt::Object, Value::Object(object)) => vec![Value::Object(object)],
            (RecordsAt::Field(name), Value::Object(mut object)) => {
                match pagination {
                    Pagination::Cursor {
                        field: CursorAt::Body(field),
                        ..
                    } => info.next_cursor = text(object.get(field)),
                    Pagination::NextLink { field } => info.next_url = text(object.get(field)),
                    _ => {}
                }
                // `count` is often the size of this page, not a total.
                info.total = ["total", "total_count", "totalCount", "totalResults"]
                    .iter()
                    .find_map(|k| object.get(*k).and_then(Value::as_u64));
                if let Some(sign) = more_in_body(&object, pagination) {
                    info.more = Some(sign);
                }
                let items = match object.remove(name) {
                    Some(Value::Array(items)) => items,
                    Some(Value::Null) | None => {
                        return Err(self.error(format!("{endpoint}: page {number} has no '{name}' array, as the document promises"), false));
                    }
                    Some(_) => {
                        return Err(self.error(
                            format!("{endpoint}: page {number}: '{name}' is not an array"),
                            false,
                        ));
                    }
                };
                if *pagination == Pagination::None
                    && let Some(total) = info.total
                    && total > items.len() as u64
                    && info.more.is_none()
                {
                    info.more = Some(format!(
                        "it says there are {total} records and holds {}",
                        items.len()
                    ));
                }
                items
            }
            (RecordsAt::Root, _) => {
                return Err(self.error(
                    format!(
                        "{endpoint}: page {number} is not a JSON array, as the document promises"
                    ),
                    false,
                ));
            }
            (RecordsAt::Object, _) => {
                return Err(self.error(
                    format!(
                        "{endpoint}: the answer is not a JSON object, as the document promises"
                    ),
                    false,
                ));
            }
            (RecordsAt::Field(name), _) => {
                return Err(self.error(format!("{endpoint}: page {number} is not a JSON object with '{name}', as the document promises"), false));
            }
        };
        if let Pagination::AfterLast { key, .. } = pagination {
            info.last_key = records.last().and_then(|r| text(r.get(key)));
        }
        if !records.is_empty() {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            for record in &records {
                record.to_string().hash(&mut hasher);
            }
            info.fingerprint = Some(hasher.finish());
        }
        Ok((records, info))
    }

    fn decode(&self, records: &[Value], number: usize) -> DFResult<RecordBatch> {
        let endpoint = self.table.endpoint();
        let wrong = |e: &dyn fmt::Display| {
            self.error(
                format!("{endpoint}: page {number} has a record that does not match the documented schema: {e}"),
                false,
            )
        };
        super::schema::decode(&self.full_schema, records).map_err(|e| wrong(&e))
    }
}

/// A string, number or other scalar as text; `None` for null or missing.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

/// What in a page's body says more records follow that `pagination` does
/// not itself follow: `has_more: true`, a next link or cursor it does not read.
fn more_in_body(
    object: &serde_json::Map<String, Value>,
    pagination: &Pagination,
) -> Option<String> {
    for flag in ["has_more", "hasMore", "more", "has_next", "hasNext"] {
        if object.get(flag) == Some(&Value::Bool(true)) {
            return Some(format!("{flag} is true"));
        }
    }
    if matches!(
        pagination,
        Pagination::Cursor { .. } | Pagination::NextLink { .. }
    ) {
        return None;
    }
    // Set, any next link or cursor says another page exists.
    let next_signs = NEXT_LINK_FIELDS
        .iter()
        .chain(CURSOR_FIELDS)
        .chain(&["@odata.nextLink"]);
    for field in next_signs {
        if let Some(v) = text(object.get(*field)).filter(|v| !v.is_empty()) {
            return Some(format!("'{field}' is {}", abbreviate(&v)));
        }
    }
    // `links: {next: ...}`, `_links: {next: {href: ...}}`, `paging: {next: ...}`.
    for holder in ["links", "_links", "paging", "pagination", "meta"] {
        let next = object.get(holder).and_then(|h| h.get("next"));
        let next = next
            .and_then(|n| n.get("href"))
            .or(next)
            .and_then(|n| text(Some(n)));
        if let Some(v) = next.filter(|v| !v.is_empty()) {
            return Some(format!("'{holder}.next' is {}", abbreviate(&v)));
        }
    }
    None
}

/// Whether a next-page value can be a URL (absolute, or relative to the page).
fn looks_like_url(value: &str) -> bool {
    value.contains("://") || value.starts_with('/') || value.starts_with('?')
}

/// The `rel="next"` target of an RFC 8288 `Link` header value.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::{col, in_list, lit};

    #[test]
    fn join_keys_are_a_superset_or_nothing() {
        let schema = Schema::new(vec![
            Field::new("urn", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]);
        let urn = col("urn", &schema).unwrap();
        let list = |values: &[&str]| {
            in_list(
                Arc::clone(&urn),
                values.iter().map(|v| lit(*v)).collect(),
                &false,
                &schema,
            )
            .unwrap()
        };
        let partition = col("n", &schema).unwrap();
        let case = |else_branch: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            Arc::new(
                CaseExpr::try_new(
                    Some(Arc::clone(&partition)),
                    vec![(lit(0i64), list(&["b", "a"])), (lit(1i64), list(&["c"]))],
                    Some(else_branch),
                )
                .unwrap(),
            )
        };
        assert_eq!(
            in_list_values(&case(lit(false)), "urn"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        // One partition filtered by bounds rather than a list: give up.
        let bounds: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(Arc::clone(&urn), Operator::GtEq, lit("a")));
        assert_eq!(in_list_values(&case(bounds), "urn"), None);
        assert_eq!(in_list_values(&list(&["x"]), "other"), None);
        let both: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(list(&["x"]), Operator::And, lit(true)));
        assert_eq!(in_list_values(&both, "urn"), Some(vec!["x".into()]));
    }

    #[test]
    fn parses_link_headers() {
        let h = r#"<http://x/a?page=1>; rel="first", <http://x/a?page=3>; rel="next", <http://x/a?page=9>; rel="last""#;
        assert_eq!(next_link(h).as_deref(), Some("http://x/a?page=3"));
        assert_eq!(next_link(r#"<http://x/a?page=1>; rel="first""#), None);
    }

    /// A scan whose task sends `rows` one-row batches, then panics if told to.
    fn scan_stream(rows: i64, panics: bool) -> ScanStream {
        let start = move || {
            let (tx, rx) = mpsc::channel::<DFResult<RecordBatch>>(2);
            let mut task = JoinSet::new();
            task.spawn(async move {
                for i in 0..rows {
                    let batch = RecordBatch::try_from_iter([(
                        "n",
                        Arc::new(arrow::array::Int64Array::from(vec![i])) as _,
                    )])
                    .unwrap();
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
                assert!(!panics, "the fetching task broke");
            });
            (rx, task)
        };
        ScanStream {
            start: Some(Box::new(start)),
            rx: None,
            task: None,
            source: "rms".into(),
        }
    }

    #[tokio::test]
    async fn a_scan_whose_task_dies_ends_with_an_error_naming_the_source() {
        let items: Vec<DFResult<RecordBatch>> = scan_stream(3, true).collect().await;
        assert_eq!(items.len(), 4, "three batches, then the error");
        assert!(items[..3].iter().all(Result::is_ok));
        let err = items[3].as_ref().unwrap_err().to_string();
        assert!(err.contains("rms"), "{err}");
        assert!(err.contains("stopped unexpectedly"), "{err}");
        assert!(!err.contains("broke"), "{err}");
    }

    #[tokio::test]
    async fn dropping_a_scan_stops_its_task() {
        let (alive, stopped) = tokio::sync::oneshot::channel::<()>();
        let start = move || {
            let (tx, rx) = mpsc::channel::<DFResult<RecordBatch>>(1);
            let mut task = JoinSet::new();
            task.spawn(async move {
                let _alive = alive; // dropped only when the task ends
                let batch = RecordBatch::try_from_iter([(
                    "n",
                    Arc::new(arrow::array::Int64Array::from(vec![1])) as _,
                )])
                .unwrap();
                let _ = tx.send(Ok(batch)).await;
                // A task that never finishes by itself.
                std::future::pending::<()>().await;
            });
            (rx, task)
        };
        let mut stream = ScanStream {
            start: Some(Box::new(start)),
            rx: None,
            task: None,
            source: "rms".into(),
        };
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), stopped).await;
        assert!(
            ended.is_ok(),
            "the task still runs after its stream was dropped"
        );
    }

    #[tokio::test]
    async fn a_scan_whose_task_finishes_ends_cleanly() {
        let items: Vec<DFResult<RecordBatch>> = scan_stream(3, false).collect().await;
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(Result::is_ok));
    }
}
