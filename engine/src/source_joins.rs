//! Joins between tables of one database, regrouped so that the database runs them.
//!
//! Federation sends a database every sub-plan made only of its own tables.
//! A query that joins files with database tables is written as one chain of
//! inner joins, in the order of its `FROM` list, and DataFusion keeps that
//! order: TPC-H Q9 lists `part, supplier, lineitem, partsupp, orders, nation`
//! — four PostgreSQL tables with a Parquet file between them — so each of the
//! four went to PostgreSQL as its own scan, all 800,000 `partsupp` rows came
//! back, and DataFusion joined them with the 11,000 parts whose name matched.
//! Joined in PostgreSQL, the same four tables return 43,000 rows.
//!
//! [`GroupSourceJoins`] flattens each chain of inner joins into its inputs and
//! its join keys (as equivalence classes: `a = l` and `b = l` make `a = b`),
//! then, for each database with two or more inputs in the chain, gathers
//! groups that the database can join **without multiplying rows**: a root
//! input, then any input whose unique key (a primary key or unique
//! constraint the connector reported) is entirely equated with columns
//! already in the group — each row of the group finds at most one row of the
//! new input. A group is therefore never larger than its root, so grouping
//! never sends more rows back than before; a join that could multiply rows
//! (customers and suppliers of the same nation) stays where it was.
//!
//! The chain is rebuilt with each group as one join subtree (which
//! federation then sends to the database as a single query), every join key
//! and join condition kept, and a projection restoring the original column
//! order. Chains made entirely of one database's tables are left alone: the
//! whole chain already goes to the database. Anything the rule does not
//! understand (outer joins, join keys spanning inputs, mismatched key types)
//! leaves the chain as it was.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Dependency, NullEquality};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Expr, ExprSchemable, Filter, Join, JoinConstraint, JoinType, LogicalPlan, Projection,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion_federation::{FederationProviderRef, get_table_source};

/// Logical optimizer rule: see the module docs. Runs after filter push-down
/// (so join keys sit in the joins and single-table filters in the scans) and
/// before federation.
#[derive(Debug, Default)]
pub struct GroupSourceJoins;

impl OptimizerRule for GroupSourceJoins {
    fn name(&self) -> &str {
        "bluelamp_group_source_joins"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        rewrite_plan(plan)
    }
}

fn rewrite_plan(plan: LogicalPlan) -> DFResult<Transformed<LogicalPlan>> {
    if !is_chain_join(&plan) {
        return plan.map_children(rewrite_plan);
    }
    // Chains inside the inputs first (an input may hold a subquery's joins);
    // the chain keeps its shape and columns, so its schema stands.
    let inputs_done = rewrite_chain_inputs(plan)?;
    let mut chain = Chain::default();
    chain.flatten(inputs_done.data.clone());
    match chain.regroup(inputs_done.data.schema())? {
        Some(regrouped) => Ok(Transformed::yes(regrouped)),
        None => Ok(inputs_done),
    }
}

/// Rewrites the inputs of a chain, leaving its joins as they are.
fn rewrite_chain_inputs(plan: LogicalPlan) -> DFResult<Transformed<LogicalPlan>> {
    plan.map_children(|child| {
        if is_chain_join(&child) {
            rewrite_chain_inputs(child)
        } else {
            rewrite_plan(child)
        }
    })
}

/// An inner equi-join the rule may reorder.
fn is_chain_join(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(join) if reorderable(join))
}

fn reorderable(join: &Join) -> bool {
    join.join_type == JoinType::Inner
        && join.null_equality == NullEquality::NullEqualsNothing
        && !join.null_aware
}

/// A chain of inner joins taken apart: its inputs, the equated expression
/// pairs, and the other join conditions.
#[derive(Default)]
struct Chain {
    inputs: Vec<LogicalPlan>,
    /// Every `on` pair, as written.
    pairs: Vec<(Expr, Expr)>,
    /// Non-equi join conditions, one conjunct each.
    conditions: Vec<Expr>,
}

impl Chain {
    fn flatten(&mut self, plan: LogicalPlan) {
        match plan {
            LogicalPlan::Join(join) if reorderable(&join) => {
                self.flatten(Arc::unwrap_or_clone(join.left));
                self.flatten(Arc::unwrap_or_clone(join.right));
                self.pairs.extend(join.on);
                if let Some(filter) = join.filter {
                    self.conditions.extend(split_conjunction_owned(filter));
                }
            }
            other => self.inputs.push(other),
        }
    }

    /// The chain with each database's non-multiplying groups joined first;
    /// `None` when there is nothing to group.
    fn regroup(&self, schema: &DFSchema) -> DFResult<Option<LogicalPlan>> {
        let sources: Vec<Option<FederationProviderRef>> =
            self.inputs.iter().map(source_of).collect();
        // A chain of one database's tables goes there whole already.
        let first = sources.first().cloned().flatten();
        if first.is_some() && sources.iter().all(|s| *s == first) {
            return Ok(None);
        }
        let Some(classes) = Classes::new(&self.pairs, &self.inputs) else {
            return Ok(None);
        };
        let groups = self.groups(&sources, &classes);
        if groups.iter().all(|g| g.len() < 2) {
            return Ok(None);
        }
        let mut conditions = self.conditions.clone();
        let mut items = Vec::with_capacity(groups.len());
        for group in &groups {
            let members: Vec<LogicalPlan> = group.iter().map(|&i| self.inputs[i].clone()).collect();
            match connect(members, &classes, &self.pairs, &mut conditions)? {
                Some(plan) => items.push(plan),
                None => return Ok(None),
            }
        }
        let Some(mut plan) = connect(items, &classes, &self.pairs, &mut conditions)? else {
            return Ok(None);
        };
        if let Some(rest) = conjunction(conditions) {
            plan = LogicalPlan::Filter(Filter::try_new(rest, Arc::new(plan))?);
        }
        restore_columns(plan, schema).map(Some)
    }

    /// Inputs partitioned into groups (in the order of their first input);
    /// inputs not in a database group stand alone.
    fn groups(
        &self,
        sources: &[Option<FederationProviderRef>],
        classes: &Classes,
    ) -> Vec<Vec<usize>> {
        let mut taken = vec![false; self.inputs.len()];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        loop {
            // The largest group any remaining input can root; the earliest
            // root wins a tie.
            let mut best: Option<Vec<usize>> = None;
            for root in 0..self.inputs.len() {
                if taken[root] || sources[root].is_none() {
                    continue;
                }
                let group = self.grow(root, sources, classes, &taken);
                if group.len() > 1 && best.as_ref().is_none_or(|b| group.len() > b.len()) {
                    best = Some(group);
                }
            }
            let Some(group) = best else { break };
            for &i in &group {
                taken[i] = true;
            }
            groups.push(group);
        }
        for (i, done) in taken.iter().enumerate() {
            if !done {
                groups.push(vec![i]);
            }
        }
        groups.sort_by_key(|g| g.iter().min().copied());
        for group in &mut groups {
            group.sort_unstable();
        }
        groups
    }

    /// `root` and every input of its database that joins it on a unique key.
    fn grow(
        &self,
        root: usize,
        sources: &[Option<FederationProviderRef>],
        classes: &Classes,
        taken: &[bool],
    ) -> Vec<usize> {
        let mut group = vec![root];
        loop {
            let next = (0..self.inputs.len()).find(|&candidate| {
                !taken[candidate]
                    && !group.contains(&candidate)
                    && sources[candidate] == sources[root]
                    && unique_keys(&self.inputs[candidate])
                        .iter()
                        .any(|key| key.iter().all(|column| classes.bound_by(column, &group)))
            });
            match next {
                Some(candidate) => group.push(candidate),
                None => return group,
            }
        }
    }
}

/// The database an input reads from: the federation provider shared by all
/// its table scans, `None` for local inputs or a mix.
fn source_of(plan: &LogicalPlan) -> Option<FederationProviderRef> {
    let mut provider: Option<FederationProviderRef> = None;
    let mut local = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            match get_table_source(&scan.source) {
                Ok(Some(source)) => {
                    let this = source.federation_provider();
                    match &provider {
                        None => provider = Some(this),
                        Some(seen) if *seen == this => {}
                        Some(_) => local = true,
                    }
                }
                _ => local = true,
            }
        }
        Ok(if local {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if local { None } else { provider }
}

/// The input's unique keys (from its sources' primary key and unique
/// constraints), as columns of its output.
fn unique_keys(plan: &LogicalPlan) -> Vec<Vec<Expr>> {
    let schema = plan.schema();
    schema
        .functional_dependencies()
        .iter()
        .filter(|dependency| {
            dependency.mode == Dependency::Single && !dependency.source_indices.is_empty()
        })
        .map(|dependency| {
            dependency
                .source_indices
                .iter()
                .map(|&i| Expr::Column(Column::from(schema.qualified_field(i))))
                .collect()
        })
        .collect()
}

/// The join keys as equivalence classes, each member tagged with the input
/// it reads.
struct Classes {
    /// (class, input, expression) for every equated expression.
    members: Vec<(usize, usize, Expr)>,
}

impl Classes {
    /// `None` when a key reads more than one input (or none).
    fn new(pairs: &[(Expr, Expr)], inputs: &[LogicalPlan]) -> Option<Self> {
        let mut index: HashMap<Expr, usize> = HashMap::new();
        // (input, expression) per member, and the union-find parents.
        let mut seen: Vec<(usize, Expr)> = Vec::new();
        let mut parent: Vec<usize> = Vec::new();
        for (left, right) in pairs {
            let mut ids = [0; 2];
            for (id, expr) in ids.iter_mut().zip([left, right]) {
                *id = match index.get(expr) {
                    Some(&i) => i,
                    None => {
                        let i = parent.len();
                        parent.push(i);
                        seen.push((input_of(expr, inputs)?, expr.clone()));
                        index.insert(expr.clone(), i);
                        i
                    }
                };
            }
            let (ra, rb) = (find(&mut parent, ids[0]), find(&mut parent, ids[1]));
            parent[ra] = rb;
        }
        let members = seen
            .into_iter()
            .enumerate()
            .map(|(i, (input, expr))| (find(&mut parent, i), input, expr))
            .collect();
        Some(Self { members })
    }

    /// Whether `column` is equated with an expression of one of `group`'s inputs.
    fn bound_by(&self, column: &Expr, group: &[usize]) -> bool {
        self.members
            .iter()
            .filter(|(_, _, expr)| expr == column)
            .any(|(class, _, _)| {
                self.members
                    .iter()
                    .any(|(c, input, _)| c == class && group.contains(input))
            })
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The one input all of `expr`'s columns belong to.
fn input_of(expr: &Expr, inputs: &[LogicalPlan]) -> Option<usize> {
    let columns = expr.column_refs();
    if columns.is_empty() {
        return None;
    }
    let mut found = None;
    for column in columns {
        let i = inputs
            .iter()
            .position(|input| input.schema().has_column(column))?;
        if found.is_some_and(|f| f != i) {
            return None;
        }
        found = Some(i);
    }
    found
}

/// Joins `items` left-deep, each next item being the first that shares a
/// join key with what is joined so far. Every class gets one equality per
/// join it spans — an original pair where there is one, otherwise two of
/// its expressions of the same type — and every condition whose columns are
/// all present is attached to the first join that has them. `None` when a
/// class cannot be connected with matching types.
fn connect(
    items: Vec<LogicalPlan>,
    classes: &Classes,
    pairs: &[(Expr, Expr)],
    conditions: &mut Vec<Expr>,
) -> DFResult<Option<LogicalPlan>> {
    let mut rest = items.into_iter();
    let Some(mut plan) = rest.next() else {
        return Ok(None);
    };
    let mut rest: Vec<LogicalPlan> = rest.collect();
    while !rest.is_empty() {
        // The first item sharing a key; failing that, the next in order.
        let (position, on) = rest
            .iter()
            .map(|item| class_pairs(&plan, item, classes, pairs))
            .enumerate()
            .find(|(_, on)| !on.is_empty())
            .unwrap_or_else(|| (0, Vec::new()));
        let item = rest.remove(position);
        let Some(on) = on.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let present =
            |column: &Column| plan.schema().has_column(column) || item.schema().has_column(column);
        let (here, later): (Vec<Expr>, Vec<Expr>) = std::mem::take(conditions)
            .into_iter()
            .partition(|c| c.column_refs().into_iter().all(present));
        *conditions = later;
        plan = LogicalPlan::Join(Join::try_new(
            Arc::new(plan),
            Arc::new(item),
            on,
            conjunction(here),
            JoinType::Inner,
            JoinConstraint::On,
            NullEquality::NullEqualsNothing,
            false,
        )?);
    }
    Ok(Some(plan))
}

/// One equality per class spanning `left` and `right`; `None` in place of a
/// class whose expressions on the two sides have no same-typed pair.
fn class_pairs(
    left: &LogicalPlan,
    right: &LogicalPlan,
    classes: &Classes,
    pairs: &[(Expr, Expr)],
) -> Vec<Option<(Expr, Expr)>> {
    let in_plan = |plan: &LogicalPlan, expr: &Expr| {
        expr.column_refs()
            .iter()
            .all(|column| plan.schema().has_column(column))
    };
    let mut class_ids: Vec<usize> = classes.members.iter().map(|(c, _, _)| *c).collect();
    class_ids.sort_unstable();
    class_ids.dedup();
    let mut out = Vec::new();
    for class in class_ids {
        let of = |plan: &LogicalPlan| -> Vec<&Expr> {
            classes
                .members
                .iter()
                .filter(|(c, _, e)| *c == class && in_plan(plan, e))
                .map(|(_, _, e)| e)
                .collect()
        };
        let (lefts, rights) = (of(left), of(right));
        if lefts.is_empty() || rights.is_empty() {
            continue;
        }
        // An original pair first.
        let original = pairs.iter().find_map(|(a, b)| {
            if lefts.contains(&a) && rights.contains(&b) {
                Some((a.clone(), b.clone()))
            } else if lefts.contains(&b) && rights.contains(&a) {
                Some((b.clone(), a.clone()))
            } else {
                None
            }
        });
        let pair = original.or_else(|| {
            lefts.iter().find_map(|a| {
                let ta = a.get_type(left.schema()).ok()?;
                rights.iter().find_map(|b| {
                    let tb = b.get_type(right.schema()).ok()?;
                    (ta == tb).then(|| ((*a).clone(), (*b).clone()))
                })
            })
        });
        out.push(pair);
    }
    out
}

/// A projection giving `plan` the columns of `schema`, in its order.
fn restore_columns(plan: LogicalPlan, schema: &DFSchema) -> DFResult<LogicalPlan> {
    let exprs: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}
