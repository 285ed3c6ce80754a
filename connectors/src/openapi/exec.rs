//! `OpenApiExec`: walks an endpoint's pages and streams them as Arrow batches.
//!
//! A scan is split into one partition per request series it issues (a path
//! per key, a query per value), up to 16, so a cluster's executors fetch
//! them side by side; on a cluster, one series whose filters give a column
//! a range is split into windows of it ([`OpenApiExec::windowed`]), and one
//! offset-paged series whose first page gives a total into stripes of its
//! pages ([`OpenApiExec::striped`]). One task per partition fetches pages into a bounded
//! channel (so memory stays bounded and a slow consumer slows the
//! fetching), decodes each page with `arrow-json` against the documented
//! schema, and stops early at a `LIMIT`.
//! Dropping the stream aborts the task. A page that is not JSON, or a record
//! that contradicts the documented schema, fails the query with an error naming
//! the source, the endpoint and the page — rows are never dropped silently.
//!
//! This file is the plan node (what was pushed, `EXPLAIN`, statistics, join
//! keys); the walking of pages is in `walk.rs`.

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
    ExecutionPlanMetricsSet, Label, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::FutureExt;
use reqwest::Url;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::client::{ApiClient, Identity};
use super::discovery::{FilterOp, Pagination, TableSpec};
use super::pushdown::Target;
use super::requests::build as build_requests;
use super::walk::{Counters, Scan, ScanStream};

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
    /// `Some((i, n))`: this scan is the `i`-th of `n` slices of one scan,
    /// with one partition walking every `n`-th request series from the
    /// `i`-th (see [`OpenApiExec::slices`]).
    slice: Option<(usize, usize)>,
    /// `Some`: this scan reads one stripe of its one request series' pages
    /// (see [`OpenApiExec::striped`]).
    stripe: Option<PageStripe>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// One of `count` scans that read the pages of one offset-paged request
/// series side by side: the pages at offsets `j * step` below `total`
/// with `j % count == index`. `step` and `total` are what the series' first
/// page said when the scan was split, so every stripe reads the same pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageStripe {
    /// Which stripe this is, from 0.
    pub index: usize,
    /// How many stripes read the series.
    pub count: usize,
    /// Records a page (the first page's count).
    pub step: u64,
    /// Records in all (the first page's total).
    pub total: u64,
}

/// The most pages a striped scan reads: more is a plan no source serves.
const MAX_STRIPED_PAGES: u64 = 10_000_000;

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
        let partitions = scan_partitions(&source, &table, &values, limit);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
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
            slice: None,
            stripe: None,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// This scan as one single-partition scan per partition, side by side:
    /// the same rows, for an engine that cannot split a leaf's partitions
    /// between tasks itself (Ballista runs every partition of a leaf it does
    /// not know in each task). A scan of one partition is itself.
    pub fn slices(&self) -> Vec<Self> {
        let n = self.properties.partitioning.partition_count();
        if n <= 1 || self.slice.is_some() || self.stripe.is_some() {
            return vec![self.clone_node()];
        }
        (0..n).map(|i| self.slice_of(Some((i, n)))).collect()
    }

    /// A copy of this scan as slice `slice` (see [`OpenApiExec::slices`]).
    pub(super) fn slice_of(&self, slice: Option<(usize, usize)>) -> Self {
        let mut node = self.clone_node();
        if let Some((i, n)) = slice
            && i < n
        {
            node.slice = Some((i, n));
            node.properties = Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&self.schema)),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            ));
        }
        node
    }

    /// This scan as up to `count` scans of one partition that read stripes
    /// of its pages side by side ([`PageStripe`]), for a cluster's executors
    /// to fetch in parallel; or itself, alone, where its pages cannot be
    /// split: it issues more than one request series (those are split by
    /// [`OpenApiExec::slices`]), has a `LIMIT` or a join's lookup, is not
    /// offset-paged, or its first page gives no total or holds every
    /// record. Asks the source for the first page (its rows are not
    /// kept) to learn the page size and the total.
    ///
    /// # Errors
    /// The first page cannot be fetched or read, naming the source.
    pub async fn striped(&self, count: usize) -> DFResult<Vec<Self>> {
        let alone = || vec![self.clone_node()];
        if !self.splits_into(count) || !matches!(self.table.pagination, Pagination::Offset { .. }) {
            return Ok(alone());
        }
        let Ok(requests) = build_requests(&self.source, &self.table, &self.values) else {
            return Ok(alone());
        };
        let [set] = requests.as_slice() else {
            return Ok(alone());
        };
        let Some((step, total)) = self.scan(self.counters()).probe(set).await? else {
            return Ok(alone());
        };
        let pages = total.div_ceil(step);
        if pages > MAX_STRIPED_PAGES {
            return Ok(alone());
        }
        let count = count.min(usize::try_from(pages).unwrap_or(usize::MAX));
        if count < 2 {
            return Ok(alone());
        }
        Ok((0..count)
            .map(|index| {
                let mut node = self.clone_node();
                node.stripe = Some(PageStripe {
                    index,
                    count,
                    step,
                    total,
                });
                node
            })
            .collect())
    }

    /// This scan as up to `count` scans of one partition, each asking for
    /// one window of the range its query's filters give a column (`t >= a
    /// AND t < b`, pushed as two parameters such as `opened_from` and
    /// `opened_to`): the windows `[a, w1)`, `[w1, w2)`, ... `[wn, b)`, which
    /// hold every row of the range once, cut at whole seconds (times),
    /// whole days (dates) or whole numbers. Only where one bound includes its
    /// value and the other excludes it (`>=` with `<`, or `>` with `<=`): two
    /// inclusive bounds would need a boundary just short of the next window,
    /// which depends on how precisely the source stores its values. Otherwise,
    /// and for a scan with a `LIMIT`, a join's lookup or more than one request
    /// series, itself alone.
    pub fn windowed(&self, count: usize) -> Vec<Self> {
        let alone = || vec![self.clone_node()];
        if !self.splits_into(count) || self.properties.partitioning.partition_count() != 1 {
            return alone();
        }
        let one = |index: usize| match self.values.get(&Target::Query(index)).map(Vec::as_slice) {
            Some([value]) => Some(value.clone()),
            _ => None,
        };
        let filters = &self.table.filters;
        for (low, lower) in filters.iter().enumerate() {
            for (high, upper) in filters.iter().enumerate() {
                let half_open = matches!(
                    (lower.op, upper.op),
                    (FilterOp::Ge, FilterOp::Lt) | (FilterOp::Gt, FilterOp::Le)
                );
                if !half_open || lower.column != upper.column {
                    continue;
                }
                let (Some(from), Some(to)) = (one(low), one(high)) else {
                    continue;
                };
                let Ok(field) = self.full_schema.field_with_name(&lower.column) else {
                    continue;
                };
                let Some(bounds) =
                    super::pushdown::split_range(&from, &to, field.data_type(), count)
                else {
                    continue;
                };
                return bounds
                    .windows(2)
                    .map(|window| {
                        let mut node = self.clone_node();
                        node.values
                            .insert(Target::Query(low), vec![window[0].clone()]);
                        node.values
                            .insert(Target::Query(high), vec![window[1].clone()]);
                        node
                    })
                    .collect();
            }
        }
        alone()
    }

    /// Whether this scan may be split into `count` parts at all: not one
    /// already split, nor one with a `LIMIT` (its first rows would come from
    /// any part) or a join's lookup (its keys are known only as it runs).
    fn splits_into(&self, count: usize) -> bool {
        count >= 2
            && self.limit.is_none()
            && self.dynamic.is_empty()
            && self.slice.is_none()
            && self.stripe.is_none()
    }

    /// This scan reading `stripe` of its pages, as another process planned
    /// it ([`OpenApiTableProvider::rescan`](super::OpenApiTableProvider::rescan)).
    ///
    /// # Errors
    /// The stripe does not fit this scan here (another configuration or
    /// document), naming the source.
    pub(super) fn with_stripe(mut self, stripe: Option<PageStripe>) -> DFResult<Self> {
        let Some(stripe) = stripe else {
            return Ok(self);
        };
        let one_series = build_requests(&self.source, &self.table, &self.values)
            .is_ok_and(|sets| sets.len() == 1);
        let fits = one_series
            && matches!(self.table.pagination, Pagination::Offset { .. })
            && self.limit.is_none()
            && self.slice.is_none()
            && stripe.count >= 2
            && stripe.index < stripe.count
            && stripe.step > 0
            && stripe.total.div_ceil(stripe.step) <= MAX_STRIPED_PAGES;
        if !fits {
            return Err(super::source_error(
                &self.source,
                format!(
                    "a plan reads table '{}' in stripes of pages that do not fit it here: are \
                     the configurations and the source's document the same everywhere?",
                    self.table.name
                ),
                false,
            ));
        }
        self.stripe = Some(stripe);
        Ok(self)
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

    /// Whether this scan can only run with a join's keys fed to it while
    /// it runs: its path needs a value the query's own filters do not give,
    /// so one process must run the join and the scan together (a cluster's
    /// stages cannot pass keys between them).
    pub fn needs_lookup(&self) -> bool {
        self.table.path_params.iter().any(|param| {
            !self
                .values
                .contains_key(&Target::Path(param.column.clone()))
        })
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

/// An [`OpenApiExec`] as another process needs it to scan the same
/// requests: everything but the source's client, whose credentials never
/// leave a process. The process rebuilds the scan from the table of the same
/// name in its own configuration ([`OpenApiTableProvider::rescan`]). A
/// join's dynamic lookup is not carried: the join still checks every row,
/// so the scan only fetches more.
///
/// [`OpenApiTableProvider::rescan`]: super::provider::OpenApiTableProvider::rescan
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteScan {
    /// The source's name.
    pub source: String,
    /// The table's name.
    pub table: String,
    /// Query parameters (by filter position, with the parameter's name,
    /// which the process that rescans checks) and their values.
    pub query: Vec<(usize, String, Vec<String>)>,
    /// Path parameters (by column) and their values.
    pub path: Vec<(String, Vec<String>)>,
    /// Columns read, by position.
    pub projection: Option<Vec<usize>>,
    /// Rows wanted at most.
    pub limit: Option<usize>,
    /// Which slice of the scan this is, of how many (see
    /// [`OpenApiExec::slices`]).
    #[serde(default)]
    pub slice: Option<(usize, usize)>,
    /// Which stripe of the scan's pages this is (see
    /// [`OpenApiExec::striped`]).
    #[serde(default)]
    pub stripe: Option<PageStripe>,
    /// The end user's header (name, value bytes) where the source is sent
    /// one: who is asking, not a credential.
    pub identity: Option<(String, Vec<u8>)>,
}

impl OpenApiExec {
    /// The scan as [`RemoteScan`] describes it.
    pub fn remote(&self) -> RemoteScan {
        let mut query = Vec::new();
        let mut path = Vec::new();
        for (target, values) in &self.values {
            match target {
                Target::Query(i) => query.push((
                    *i,
                    self.table
                        .filters
                        .get(*i)
                        .map(|f| f.param.clone())
                        .unwrap_or_default(),
                    values.clone(),
                )),
                Target::Path(column) => path.push((column.clone(), values.clone())),
            }
        }
        RemoteScan {
            source: self.source.clone(),
            table: self.table.name.clone(),
            query,
            path,
            projection: self.projection.clone(),
            limit: self.limit,
            slice: self.slice,
            stripe: self.stripe,
            identity: self
                .identity
                .as_ref()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec())),
        }
    }

    /// The pushed parameter values of a [`RemoteScan`].
    pub(super) fn remote_values(scan: &RemoteScan) -> BTreeMap<Target, Vec<String>> {
        let mut values = BTreeMap::new();
        for (i, _, v) in &scan.query {
            values.insert(Target::Query(*i), v.clone());
        }
        for (column, v) in &scan.path {
            values.insert(Target::Path(column.clone()), v.clone());
        }
        values
    }
}

/// Most partitions one scan is split into.
const MAX_SCAN_PARTITIONS: usize = 16;

/// How many partitions a scan with these parameter values is split into:
/// one per request series (a path per key, a query per value or chunk of a
/// list) up to [`MAX_SCAN_PARTITIONS`], so that a cluster's executors fetch
/// them side by side; one where a row limit must be counted across them
/// all, or where the series are not known yet.
fn scan_partitions(
    source: &str,
    table: &TableSpec,
    values: &BTreeMap<Target, Vec<String>>,
    limit: Option<usize>,
) -> usize {
    if limit.is_some() {
        return 1;
    }
    build_requests(source, table, values).map_or(1, |sets| sets.len().clamp(1, MAX_SCAN_PARTITIONS))
}

pub(super) fn abbreviate(v: &str) -> String {
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
        let partitions = self.properties.partitioning.partition_count();
        if partitions > 1 {
            write!(f, " partitions={partitions}")?;
        }
        if let Some((i, n)) = self.slice {
            write!(f, " slice={}/{n}", i + 1)?;
        }
        if let Some(stripe) = self.stripe {
            write!(
                f,
                " pages={}/{} of {} records",
                stripe.index + 1,
                stripe.count,
                stripe.total
            )?;
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
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let partitions = self.properties.partitioning.partition_count();
        if partition >= partitions {
            return Err(DataFusionError::Internal(format!(
                "OpenApiExec has {partitions} partitions, not {}",
                partition + 1
            )));
        }
        // With a join's keys to look up, the request series are known only
        // when the scan starts: the first partition walks them all.
        // Otherwise each partition walks every n-th series of the same list.
        let looks_up = !self.dynamic.is_empty();
        let (part, parts) = self.slice.unwrap_or((partition, partitions));
        let mine = move |index: usize| {
            if looks_up {
                part == 0
            } else {
                index % parts == part
            }
        };
        let scan = self.scan(self.counters());
        let stripe = self.stripe;
        let mut values = self.values.clone();
        let dynamic = self.dynamic.clone();
        let lookups: Vec<Option<Target>> =
            dynamic.iter().map(|(c, _)| self.lookup_column(c)).collect();
        // The scan starts on the stream's first poll. A hash join polls its probe
        // side only once every build partition is done, so by then a join's
        // filter is complete; a filter still open then (a TopK's, which needs
        // this scan's rows) is ignored rather than waited for.
        let (source, table) = (self.source.clone(), self.table.name.clone());
        let start = move || {
            // The scan's span, under its statement's, from its first poll.
            let span = bluelamp_engine::ops::trace::source_span(&context, &source, &table);
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
            task.spawn(
                async move {
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
                    if let Some(stripe) = stripe {
                        let walked = match requests.as_slice() {
                            [set] => scan.walk_stripe(set, &tx, stripe).await,
                            _ => Err(scan.error(
                                "a stripe of pages needs exactly one request series".into(),
                                false,
                            )),
                        };
                        if let Err(e) = walked {
                            let _ = tx.send(Err(e)).await;
                        }
                        return;
                    }
                    let mut remaining = scan.limit;
                    for (index, set) in requests.into_iter().enumerate() {
                        if remaining == Some(0) {
                            break;
                        }
                        if !mine(index) {
                            continue;
                        }
                        if let Err(e) = scan.walk(&set, &tx, &mut remaining).await {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                .instrument(span),
            );
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
        args: &StatisticsArgs,
    ) -> DFResult<Arc<Statistics>> {
        if args.partition().is_some() && self.properties.partitioning.partition_count() > 1 {
            return Ok(Arc::new(Statistics::new_unknown(&self.schema)));
        }
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
    /// This node's counters, as `EXPLAIN ANALYZE` shows them.
    fn counters(&self) -> Counters {
        Counters {
            // Labelled with the source, so `bluelamp.queries` can total what
            // each statement fetched from each source.
            requests: MetricBuilder::new(&self.metrics)
                .with_label(Label::new("source", self.source.clone()))
                .global_counter("requests"),
            pages: MetricBuilder::new(&self.metrics).global_counter("pages"),
            bytes: MetricBuilder::new(&self.metrics)
                .with_label(Label::new("source", self.source.clone()))
                .global_counter("bytes"),
            records: MetricBuilder::new(&self.metrics)
                .with_label(Label::new("source", self.source.clone()))
                .global_counter("records"),
            lookups: MetricBuilder::new(&self.metrics).global_counter("lookup_keys"),
        }
    }

    /// The walk this node's requests take, counting into `counters`.
    fn scan(&self, counters: Counters) -> Scan {
        Scan {
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
        }
    }

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
            slice: self.slice,
            stripe: self.stripe,
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

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
