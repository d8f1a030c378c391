//! Exact variable elimination (sum-product in log space) with a greedy min-fill or min-degree
//! ordering.
//!
//! ln Z = ln sum_x prod_f phi_f(x_f) is computed by summing the variables out one at a time: the
//! factors that mention variable v are multiplied (log-tables added) and v is summed out
//! (log-add-exp of the two halves), leaving one new factor over the other variables they mention.
//! The cost of the elimination of v is 2^(|U_v| + 1) table entries times the number of factors
//! combined, where U_v is the set of v's neighbours at that moment; the induced width of the
//! ordering is max_v |U_v|, and the largest table has 2^width entries. Orderings are chosen
//! greedily: min-fill eliminates the variable whose elimination adds the fewest new edges to the
//! interaction graph (ties: fewer neighbours, then lower index), min-degree the one with the fewest
//! neighbours (Dechter, "Bucket elimination: a unifying framework for reasoning", Artificial
//! Intelligence 113 (1999); Kjaerulff, "Triangulation of graphs", 1990, for the heuristics).
//!
//! Zero table entries are -inf log-entries; log-add-exp of two -inf is -inf, so hard constraints
//! pass through without NaN.
//!
//! Exact marginals P(x_i = 1) take two passes over the elimination tree (v's message goes to the
//! bucket of the first-eliminated variable of U_v): the elimination keeps its messages, and a
//! downward pass in reverse order gives each clique C_v = {v} + U_v its belief, from which
//! P(x_v = 1) is read (the Hugin form of the junction-tree algorithm: Lauritzen and
//! Spiegelhalter, JRSS B 50 (1988); Jensen, Lauritzen and Olesen, Comp. Stat. Quarterly 4
//! (1990)). About three eliminations' work in all, against n + 1 for clamping each variable in
//! turn, which remains the fallback when the stored messages ([`Plan::marginal_entries`]) do
//! not fit in the memory limit.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::logspace::log_add_exp;
use crate::model::{FactorGraph, PairwiseMrf};

/// Greedy elimination-ordering heuristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Heuristic {
    /// Fewest fill-in edges first (usually the smaller width).
    #[default]
    MinFill,
    /// Fewest neighbours first.
    MinDegree,
}

/// Default limit on the entries of the largest intermediate table (2^27 entries = 1 GiB).
pub const DEFAULT_MAX_TABLE_ENTRIES: u64 = 1 << 27;

/// Options of an elimination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EliminateOptions {
    /// How to choose the order.
    pub heuristic: Heuristic,
    /// Refuse (`TooLarge`) when the largest table would exceed this many entries.
    pub max_table_entries: u64,
}

impl Default for EliminateOptions {
    fn default() -> Self {
        EliminateOptions {
            heuristic: Heuristic::MinFill,
            max_table_entries: DEFAULT_MAX_TABLE_ENTRIES,
        }
    }
}

/// An elimination order and its cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The variables in elimination order.
    pub order: Vec<usize>,
    /// Induced width: the largest number of neighbours a variable has when eliminated.
    pub induced_width: usize,
    /// Entries of the largest table built, 2^induced_width.
    pub max_table_entries: u64,
    /// Estimated work: sum over variables of 2^(|U_v| + 1) * (|U_v| + 1) table-entry operations.
    pub cost: f64,
    /// Entries of all the messages together, sum over variables of 2^|U_v|: what the two-pass
    /// marginals keep from the upward pass for the downward one.
    pub message_entries: f64,
    /// What found the order: "min-fill", "min-degree", "breadth-first sweep" or "given order".
    pub found_by: &'static str,
    /// Work units the planning took (see [`PLAN_WORK_PER_SECOND`]), all trials included.
    pub planning_work: u64,
}

impl Plan {
    /// Bytes of the largest table (f64 entries).
    pub fn max_table_bytes(&self) -> f64 {
        self.max_table_entries as f64 * 8.0
    }

    /// Table entries the two-pass marginals hold at their peak (an upper bound): every upward
    /// message (sum 2^|U_v|), as many downward messages (each the size of the upward message it
    /// answers), and one clique belief of 2^(width + 1) entries.
    pub fn marginal_entries(&self) -> f64 {
        2.0 * self.message_entries + 2f64.powi(self.induced_width.min(1000) as i32 + 1)
    }

    /// Bytes of [`Plan::marginal_entries`] (f64 entries).
    pub fn marginal_bytes(&self) -> f64 {
        self.marginal_entries() * 8.0
    }
}

/// The result of an elimination.
#[derive(Debug, Clone, PartialEq)]
pub struct Elimination {
    /// ln Z.
    pub log_z: f64,
    /// The plan used.
    pub plan: Plan,
}

/// A factor in log space over sorted variables; bit p of a table index is variable `vars[p]`.
#[derive(Debug, Clone)]
struct LogFactor {
    vars: Vec<usize>,
    table: Vec<f64>,
}

/// Log-factors of a factor graph (tables reordered to the sorted-variable layout).
fn log_factors_of_graph(graph: &FactorGraph) -> Vec<LogFactor> {
    graph
        .factors()
        .iter()
        .map(|f| {
            let k = f.arity();
            let mut vars: Vec<usize> = f.scope().to_vec();
            vars.sort_unstable();
            // scope position of each sorted variable; scope position q is bit k-1-q of the file index.
            let shift: Vec<usize> = vars
                .iter()
                .map(|v| k - 1 - f.scope().iter().position(|s| s == v).expect("in scope"))
                .collect();
            let table = (0..1usize << k)
                .map(|idx| {
                    let file_idx = shift
                        .iter()
                        .enumerate()
                        .fold(0usize, |acc, (p, &s)| acc | ((idx >> p & 1) << s));
                    f.log_table()[file_idx]
                })
                .collect();
            LogFactor { vars, table }
        })
        .collect()
}

/// Log-factors of a pairwise model at inverse temperature beta, built in log space (so that
/// beta * J of any size is fine): ln phi = beta (J s_i s_j) per edge, beta h s per field, and the
/// constant -beta c.
fn log_factors_of_pairwise(model: &PairwiseMrf, beta: f64) -> Vec<LogFactor> {
    let mut out = Vec::new();
    for (i, &h) in model.fields().iter().enumerate() {
        if h != 0.0 {
            out.push(LogFactor {
                vars: vec![i],
                table: vec![-beta * h, beta * h],
            });
        }
    }
    for &(i, j, w) in model.edges() {
        let (same, diff) = (beta * w, -beta * w);
        out.push(LogFactor {
            vars: vec![i.min(j), i.max(j)],
            table: vec![same, diff, diff, same],
        });
    }
    if model.constant() != 0.0 {
        out.push(LogFactor {
            vars: vec![],
            table: vec![-beta * model.constant()],
        });
    }
    out
}

/// Number of greedy orderings tried (the first with plain index tie-breaking, the others with
/// seeded pseudo-random tie-breaking); the one of least (cost, width) wins.
pub const ORDERING_TRIALS: u64 = 16;

/// Planning work units per second of one core, measured on the development machine (a unit is
/// one neighbour-list step: a comparison of a fill count or an insertion); converts a time budget
/// into the deterministic work budget of [`plan_factor_graph_within`].
pub const PLAN_WORK_PER_SECOND: f64 = 5e7;

/// The best greedy ordering within a work budget (deterministic for a given budget).
///
/// A min-degree trial is cheap and always runs first, to the end (O(width^2) per variable, and
/// it stops at [`PLAN_WIDTH_CAP`]). Then the other trials of the heuristic ([`ORDERING_TRIALS`]
/// in all, min-degree's first being the one made) and two breadth-first sweeps run, each with an
/// equal share of what is left of `max_work`; a trial that runs out is dropped, the best
/// finished plan wins, and the first min-degree plan is the answer when none finished.
/// Min-fill's cost is unbounded otherwise: rescoring the neighbours of a hub of degree d costs
/// d^2 each (minutes for 200 hubs of degree 200).
fn plan_of(n: usize, scopes: &[&[usize]], heuristic: Heuristic, max_work: u64) -> Plan {
    let mut fallback = plan_trial(n, scopes, Heuristic::MinDegree, 0, None, u64::MAX)
        .expect("an unbounded trial finishes");
    let used = fallback.planning_work;
    let share = max_work.saturating_sub(used) / (ORDERING_TRIALS + 2);
    let sweeps = breadth_first_orders(n, scopes);
    let mut plans: Vec<Option<Plan>> = (0..ORDERING_TRIALS)
        .into_par_iter()
        .map(|salt| match (heuristic, salt) {
            // Min-degree's first trial is the one already made.
            (Heuristic::MinDegree, 0) => Some(fallback.clone()),
            _ => plan_trial(n, scopes, heuristic, salt, None, share),
        })
        .collect();
    // Frontier sweeps (breadth-first from a pseudo-peripheral variable) beat greedy orderings on
    // grids, where min-fill is known to do poorly.
    plans.extend(
        sweeps
            .iter()
            .map(|o| plan_trial(n, scopes, heuristic, 0, Some(o), share)),
    );
    let work: u64 = used
        + plans
            .iter()
            .enumerate()
            .filter(|&(k, _)| !(heuristic == Heuristic::MinDegree && k == 0))
            .map(|(_, p)| p.as_ref().map_or(share, |p| p.planning_work))
            .sum::<u64>();
    let mut best: Option<Plan> = None;
    for p in plans.into_iter().flatten() {
        if best
            .as_ref()
            .is_none_or(|b| (p.cost, p.induced_width) < (b.cost, b.induced_width))
        {
            best = Some(p);
        }
    }
    let mut best = match best {
        Some(b) => b,
        None => {
            fallback.found_by = "min-degree (the min-fill trials ran out of their work budget)";
            fallback
        } // (Under min-degree, plans[0] is the fallback, so some plan always finished.)
    };
    best.planning_work = work;
    best
}

/// A tie-breaking number for variable v in trial `salt` (0: none).
fn tie(v: usize, salt: u64) -> u64 {
    if salt == 0 {
        return 0;
    }
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v as u64;
    crate::rng::splitmix64(&mut state)
}

/// The interaction graph: for each variable, the sorted distinct variables it shares a scope with.
fn interaction_graph(n: usize, scopes: &[&[usize]]) -> Vec<Vec<usize>> {
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for scope in scopes {
        for &a in scope.iter() {
            for &b in scope.iter() {
                if a != b {
                    adj[a].push(b);
                }
            }
        }
    }
    for a in adj.iter_mut() {
        a.sort_unstable();
        a.dedup();
    }
    adj
}

/// Breadth-first orders of the interaction graph from a pseudo-peripheral variable of each
/// component (found by two sweeps), and from the far end of that sweep.
fn breadth_first_orders(n: usize, scopes: &[&[usize]]) -> Vec<Vec<usize>> {
    let adj = interaction_graph(n, scopes);
    let bfs = |starts: &[usize]| -> Vec<usize> {
        let mut seen = vec![false; n];
        let mut order = Vec::with_capacity(n);
        for s0 in starts.iter().copied().chain(0..n) {
            if seen[s0] {
                continue;
            }
            seen[s0] = true;
            let mut head = order.len();
            order.push(s0);
            while head < order.len() {
                let v = order[head];
                head += 1;
                for &u in &adj[v] {
                    if !seen[u] {
                        seen[u] = true;
                        order.push(u);
                    }
                }
            }
        }
        order
    };
    // One start per component: the last variable reached from its lowest index.
    let first = bfs(&[]);
    let mut component_ends = Vec::new();
    let mut seen = vec![false; n];
    for &v in first.iter().rev() {
        if !seen[v] {
            // v is the last-reached variable of a component not yet covered.
            component_ends.push(v);
            // Mark its component.
            let mut stack = vec![v];
            seen[v] = true;
            while let Some(x) = stack.pop() {
                for &u in &adj[x] {
                    if !seen[u] {
                        seen[u] = true;
                        stack.push(u);
                    }
                }
            }
        }
    }
    let a = bfs(&component_ends);
    let far: Vec<usize> = {
        // The last-reached variable of each component in sweep a.
        let mut seen = vec![false; n];
        let mut ends = Vec::new();
        for &v in a.iter().rev() {
            if !seen[v] {
                ends.push(v);
                let mut stack = vec![v];
                seen[v] = true;
                while let Some(x) = stack.pop() {
                    for &u in &adj[x] {
                        if !seen[u] {
                            seen[u] = true;
                            stack.push(u);
                        }
                    }
                }
            }
        }
        ends
    };
    let b = bfs(&far);
    vec![a, b]
}

/// One greedy (or, with `fixed`, given) ordering; `None` when it needs more than `max_work`
/// work units.
fn plan_trial(
    n: usize,
    scopes: &[&[usize]],
    heuristic: Heuristic,
    salt: u64,
    fixed: Option<&[usize]>,
    max_work: u64,
) -> Option<Plan> {
    let found_by = match (fixed, heuristic) {
        (Some(_), _) => "breadth-first sweep",
        (None, Heuristic::MinFill) => "min-fill",
        (None, Heuristic::MinDegree) => "min-degree",
    };
    let work = std::cell::Cell::new(0u64);
    let mut adj = interaction_graph(n, scopes);
    let mut alive = vec![true; n];
    let mut order = Vec::with_capacity(n);
    let mut width = 0usize;
    let mut cost = 0.0;
    let mut message_entries = 0.0;
    let fill_of = |adj: &Vec<Vec<usize>>, v: usize| -> usize {
        let nb = &adj[v];
        work.set(work.get() + (nb.len() * nb.len()) as u64 / 2 + 1);
        let mut fill = 0;
        for (x, &a) in nb.iter().enumerate() {
            for &b in &nb[x + 1..] {
                if adj[a].binary_search(&b).is_err() {
                    fill += 1;
                }
            }
        }
        fill
    };
    let score = |adj: &Vec<Vec<usize>>, v: usize| match heuristic {
        Heuristic::MinFill => fill_of(adj, v),
        Heuristic::MinDegree => adj[v].len(),
    };
    // A fixed order needs no scores (nor a queue).
    let mut keys: Vec<(usize, usize, u64, usize)> = match fixed {
        Some(_) => Vec::new(),
        None => (0..n)
            .map(|v| (score(&adj, v), adj[v].len(), tie(v, salt), v))
            .collect(),
    };
    let mut queue: std::collections::BTreeSet<(usize, usize, u64, usize)> =
        keys.iter().copied().collect();
    let mut touched = vec![false; n];
    for step in 0..n {
        let v = match fixed {
            Some(order) => order[step],
            None => queue.pop_first().expect("a live variable").3,
        };
        if work.get() > max_work {
            return None;
        }
        let nb = std::mem::take(&mut adj[v]);
        work.set(work.get() + (nb.len() * nb.len()) as u64 + 1);
        width = width.max(nb.len());
        cost += (nb.len() as f64 + 1.0) * 2f64.powi(nb.len() as i32 + 1);
        message_entries += 2f64.powi(nb.len() as i32);
        alive[v] = false;
        order.push(v);
        if width > PLAN_WIDTH_CAP {
            // Hopeless: stop planning (the remaining order is irrelevant for the refusal).
            order.extend((0..n).filter(|&u| alive[u]));
            return Some(Plan {
                order,
                induced_width: width,
                max_table_entries: u64::MAX,
                cost: f64::INFINITY,
                message_entries: f64::INFINITY,
                found_by,
                planning_work: work.get(),
            });
        }
        for &a in &nb {
            let list = &mut adj[a];
            if let Ok(p) = list.binary_search(&v) {
                list.remove(p);
            }
            for &b in &nb {
                if b != a
                    && let Err(p) = list.binary_search(&b)
                {
                    list.insert(p, b);
                }
            }
        }
        // Scores change for the neighbours of v and, for min-fill, their neighbours.
        let mut changed: Vec<usize> = Vec::new();
        for &a in &nb {
            if !touched[a] {
                touched[a] = true;
                changed.push(a);
            }
            if heuristic == Heuristic::MinFill {
                for &b in &adj[a] {
                    if !touched[b] {
                        touched[b] = true;
                        changed.push(b);
                    }
                }
            }
        }
        for &u in &changed {
            touched[u] = false;
            if alive[u] && fixed.is_none() {
                queue.remove(&keys[u]);
                keys[u] = (score(&adj, u), adj[u].len(), tie(u, salt), u);
                queue.insert(keys[u]);
            }
        }
    }
    Some(Plan {
        order,
        induced_width: width,
        max_table_entries: 1u64 << width.min(63),
        cost,
        message_entries,
        found_by,
        planning_work: work.get(),
    })
}

/// Planning stops once the induced width exceeds this (such a plan is refused anyway).
pub const PLAN_WIDTH_CAP: usize = 48;

/// The elimination plan of a factor graph, with no bound on the planning work.
pub fn plan_factor_graph(graph: &FactorGraph, heuristic: Heuristic) -> Plan {
    plan_factor_graph_within(graph, heuristic, u64::MAX)
}

/// The elimination plan of a factor graph found within `max_work` planning work units:
/// a min-degree trial first, to the end; the other trials and the sweeps with equal shares of the
/// rest, dropped when they run out ([`PLAN_WORK_PER_SECOND`] converts seconds).
pub fn plan_factor_graph_within(graph: &FactorGraph, heuristic: Heuristic, max_work: u64) -> Plan {
    plan_of(graph.num_vars(), &graph_scopes(graph), heuristic, max_work)
}

/// The elimination plan of a pairwise model, with no bound on the planning work.
pub fn plan_pairwise(model: &PairwiseMrf, heuristic: Heuristic) -> Plan {
    let pairs = pairwise_pairs(model);
    let scopes: Vec<&[usize]> = pairs.iter().map(|p| &p[..]).collect();
    plan_of(model.fields().len(), &scopes, heuristic, u64::MAX)
}

/// Byte tables so that a factor's index is a sum of lookups over the bytes of an output index.
struct IndexMap {
    bytes: Vec<[u32; 256]>,
    /// Index bit of the eliminated variable in this factor (0 if absent).
    v_bit: u32,
}

impl IndexMap {
    /// The map from an index over `out_vars` (bit p is `out_vars[p]`) to an index of a table
    /// over the sorted `vars`, with the bit of `v` in that table apart.
    fn new(vars: &[usize], out_vars: &[usize], v: usize) -> IndexMap {
        let positions: Vec<Option<u32>> = out_vars
            .iter()
            .map(|u| vars.binary_search(u).ok().map(|q| q as u32))
            .collect();
        let v_bit = vars.binary_search(&v).map(|q| 1u32 << q).unwrap_or(0);
        IndexMap::from_positions(&positions, v_bit)
    }

    /// The map that sends bit p of an index to bit `positions[p]` (dropped when `None`).
    fn from_positions(positions: &[Option<u32>], v_bit: u32) -> IndexMap {
        let nbytes = positions.len().div_ceil(8).max(1);
        let mut bytes = vec![[0u32; 256]; nbytes];
        for (byte, table) in bytes.iter_mut().enumerate() {
            for (val, slot) in table.iter_mut().enumerate() {
                let mut idx = 0u32;
                for bit in 0..8 {
                    let p = byte * 8 + bit;
                    if p < positions.len()
                        && val >> bit & 1 == 1
                        && let Some(q) = positions[p]
                    {
                        idx |= 1 << q;
                    }
                }
                *slot = idx;
            }
        }
        IndexMap { bytes, v_bit }
    }

    #[inline]
    fn index(&self, o: usize) -> usize {
        let mut idx = 0u32;
        for (b, t) in self.bytes.iter().enumerate() {
            idx |= t[(o >> (8 * b)) & 255];
        }
        idx as usize
    }
}

/// The bucket of a variable v in an upward pass: the factors multiplied when v was summed out,
/// and the message sent on.
struct Bucket {
    /// The variable summed out.
    v: usize,
    /// U_v, v's neighbours when it was eliminated, sorted: the variables of its message.
    out_vars: Vec<usize>,
    /// Pool indices of the factors combined: model factors and messages of earlier buckets.
    members: Vec<usize>,
    /// Pool index of the message sent, m_v(U_v) = ln sum_{x_v} sum_{f in bucket} ln f; `None`
    /// when U_v is empty (the message is a number, added to ln Z).
    message: Option<usize>,
}

/// What an upward pass leaves.
struct Upward {
    log_z: f64,
    /// The model's factors, then the messages in the order sent; `None` once dropped (all of
    /// them are kept when the buckets are).
    pool: Vec<Option<LogFactor>>,
    /// The buckets in elimination order (empty unless asked for).
    buckets: Vec<Bucket>,
}

/// Runs the elimination of `factors` over n variables in `plan.order`: ln Z.
fn run(n: usize, factors: Vec<LogFactor>, plan: &Plan) -> f64 {
    upward(n, factors, plan, false).log_z
}

/// The upward pass (bucket elimination): v's bucket holds the factors and messages that mention
/// v and no variable eliminated before it; their log-tables are added and v is summed out
/// (log-add-exp of the two halves), and the message goes on to the bucket of the first
/// eliminated variable of U_v. With `keep`, the factors, messages and buckets are kept for a
/// downward pass; without, each factor is dropped once used. ln Z is bit-for-bit the same.
fn upward(n: usize, factors: Vec<LogFactor>, plan: &Plan, keep: bool) -> Upward {
    let mut constant = 0.0;
    let mut pool: Vec<Option<LogFactor>> = factors.into_iter().map(Some).collect();
    let mut used = vec![false; pool.len()];
    let mut by_var: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (idx, f) in pool.iter().enumerate() {
        let f = f.as_ref().expect("fresh");
        if f.vars.is_empty() {
            constant += f.table[0];
        }
        for &v in &f.vars {
            by_var[v].push(idx);
        }
    }
    let mut buckets = Vec::with_capacity(if keep { n } else { 0 });
    for &v in &plan.order {
        let members: Vec<usize> = std::mem::take(&mut by_var[v])
            .into_iter()
            .filter(|&idx| !std::mem::replace(&mut used[idx], true))
            .collect();
        let bucket: Vec<&LogFactor> = members
            .iter()
            .map(|&idx| pool[idx].as_ref().expect("kept until used"))
            .collect();
        let mut out_vars: Vec<usize> = bucket
            .iter()
            .flat_map(|f| f.vars.iter().copied())
            .filter(|&u| u != v)
            .collect();
        out_vars.sort_unstable();
        out_vars.dedup();
        let maps: Vec<IndexMap> = bucket
            .iter()
            .map(|f| IndexMap::new(&f.vars, &out_vars, v))
            .collect();
        let size = 1usize << out_vars.len();
        let table: Vec<f64> = (0..size)
            .into_par_iter()
            .with_min_len(1 << 12)
            .map(|o| {
                let (mut l0, mut l1) = (0.0, 0.0);
                for (f, m) in bucket.iter().zip(&maps) {
                    let idx = m.index(o);
                    l0 += f.table[idx];
                    l1 += f.table[idx | m.v_bit as usize];
                }
                log_add_exp(l0, l1)
            })
            .collect();
        drop(bucket);
        if !keep {
            for &idx in &members {
                pool[idx] = None;
            }
        }
        let message = if out_vars.is_empty() {
            constant += table[0];
            None
        } else {
            let idx = pool.len();
            for &u in &out_vars {
                by_var[u].push(idx);
            }
            pool.push(Some(LogFactor {
                vars: out_vars.clone(),
                table,
            }));
            used.push(false);
            Some(idx)
        };
        if keep {
            buckets.push(Bucket {
                v,
                out_vars,
                members,
                message,
            });
        }
    }
    Upward {
        log_z: constant,
        pool,
        buckets,
    }
}

/// Entries per parallel work item of the downward pass (fixed, so that every sum is added in
/// the same order for any number of threads).
const DOWNWARD_CHUNK: usize = 1 << 13;

/// ln Z and the exact marginals P(x_i = 1) in two passes over the elimination tree (the
/// buckets of `plan.order`; the Hugin form of the junction-tree algorithm on the cliques
/// C_v = {v} + U_v).
///
/// Upward: the elimination, keeping every message m_v(U_v). Downward, in reverse elimination
/// order, with the message delta_v(U_v) from v's parent (0 at a root): the clique belief
/// b_v(x_C) = delta_v(x_U) + sum_{f in bucket v} ln f(x_C) is ln of the (unnormalised)
/// marginal of C_v; P(x_v = 1) = sum_{x_U} e^{b_v(1, x_U)} / sum_{x_C} e^{b_v(x_C)}; and each
/// child c whose message m_c is in v's bucket gets
/// delta_c(u) = ln sum_{x_C agreeing with u} e^{b_v(x_C)} - m_c(u)
/// (m_c was added into b_v, so it is taken out again). Where m_c(u) = -inf, so is every entry of
/// c's clique that agrees with u, and delta_c(u) = -inf is as good as any value.
///
/// The sums over a clique are in linear space after one shift by the clique's largest belief:
/// an entry below e^-708 of it is lost, i.e. a clique state of probability below about
/// 2^(width + 1) e^-708, far below the 1e-300 that f64 marginals can show. Each sum runs in a
/// fixed order, whatever the thread count. When Z = 0 every marginal is 0 (as with clamping).
fn two_pass_marginals(n: usize, factors: Vec<LogFactor>, plan: &Plan) -> (f64, Vec<f64>) {
    let Upward {
        log_z,
        mut pool,
        buckets,
    } = upward(n, factors, plan, true);
    let mut marginals = vec![0.0; n];
    if log_z == f64::NEG_INFINITY {
        return (log_z, marginals);
    }
    // The variable whose bucket sent each message (usize::MAX: a model factor).
    let mut sender = vec![usize::MAX; pool.len()];
    for b in &buckets {
        if let Some(m) = b.message {
            sender[m] = b.v;
        }
    }
    let mut down: Vec<Option<Vec<f64>>> = vec![None; n];
    let mut belief: Vec<f64> = Vec::new();
    for b in buckets.iter().rev() {
        let delta = down[b.v].take();
        let bucket: Vec<&LogFactor> = b
            .members
            .iter()
            .map(|&idx| pool[idx].as_ref().expect("kept for the downward pass"))
            .collect();
        let maps: Vec<IndexMap> = bucket
            .iter()
            .map(|f| IndexMap::new(&f.vars, &b.out_vars, b.v))
            .collect();
        // Clique layout: bit 0 is x_v, bits 1.. are U_v (entry 2 o + x_v).
        let size = 2usize << b.out_vars.len();
        // Every entry is written below: the buffer is only resized, not cleared.
        belief.resize(size, 0.0);
        // Beliefs, and the largest of each chunk.
        let chunk_tops: Vec<f64> = belief
            .par_chunks_mut(DOWNWARD_CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let o0 = c * DOWNWARD_CHUNK / 2;
                let mut top = f64::NEG_INFINITY;
                for (k, pair) in chunk.chunks_exact_mut(2).enumerate() {
                    let o = o0 + k;
                    let d = delta.as_ref().map_or(0.0, |d| d[o]);
                    let (mut l0, mut l1) = (d, d);
                    for (f, m) in bucket.iter().zip(&maps) {
                        let idx = m.index(o);
                        l0 += f.table[idx];
                        l1 += f.table[idx | m.v_bit as usize];
                    }
                    pair[0] = l0;
                    pair[1] = l1;
                    top = top.max(l0).max(l1);
                }
                top
            })
            .collect();
        let top = chunk_tops.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top == f64::NEG_INFINITY {
            // Not reached when Z > 0 (every clique's beliefs sum to Z); -inf messages below.
            belief.fill(0.0);
        } else {
            // e^(b - top) in place, and the sums of the x_v = 0 and x_v = 1 halves per chunk.
            let halves: Vec<(f64, f64)> = belief
                .par_chunks_mut(DOWNWARD_CHUNK)
                .map(|c| {
                    let (mut s0, mut s1) = (0.0, 0.0);
                    for p in c.chunks_exact_mut(2) {
                        p[0] = (p[0] - top).exp();
                        p[1] = (p[1] - top).exp();
                        s0 += p[0];
                        s1 += p[1];
                    }
                    (s0, s1)
                })
                .collect();
            let (s0, s1) = halves
                .iter()
                .fold((0.0, 0.0), |(a, b), &(c, d)| (a + c, b + d));
            marginals[b.v] = (s1 / (s0 + s1)).min(1.0);
        }
        // Downward messages to the children whose messages are in this bucket.
        let position = |u: &usize| -> u32 {
            if *u == b.v {
                0
            } else {
                1 + b
                    .out_vars
                    .binary_search(u)
                    .expect("a separator is in the clique") as u32
            }
        };
        for &idx in &b.members {
            let child = sender[idx];
            if child == usize::MAX {
                continue;
            }
            let m = pool[idx].as_ref().expect("kept for the downward pass");
            let positions: Vec<Option<u32>> = m.vars.iter().map(|u| Some(position(u))).collect();
            let deposit = IndexMap::from_positions(&positions, 0);
            let separator_bits = positions.iter().fold(0usize, |a, q| a | 1 << q.unwrap());
            let rest = (size - 1) & !separator_bits;
            let clique = &belief;
            let dead = top == f64::NEG_INFINITY;
            let to_child: Vec<f64> = (0..m.table.len())
                .into_par_iter()
                .with_min_len(DOWNWARD_CHUNK)
                .map(|u| {
                    let mu = m.table[u];
                    if dead || mu == f64::NEG_INFINITY {
                        return f64::NEG_INFINITY;
                    }
                    let base = deposit.index(u);
                    let (mut sum, mut sub) = (0.0, 0usize);
                    loop {
                        sum += clique[base | sub];
                        sub = sub.wrapping_sub(rest) & rest;
                        if sub == 0 {
                            break;
                        }
                    }
                    sum.ln() + top - mu
                })
                .collect();
            down[child] = Some(to_child);
        }
        drop(bucket);
        for &idx in &b.members {
            pool[idx] = None;
        }
    }
    (log_z, marginals)
}

fn check_plan(plan: &Plan, opts: &EliminateOptions) -> Result<()> {
    if plan.max_table_entries > opts.max_table_entries {
        return Err(Error::TooLarge {
            method: "variable elimination".into(),
            detail: format!(
                "induced width {} needs a table of 2^{} entries ({:.3e} bytes; limit {:.3e} bytes)",
                plan.induced_width,
                plan.induced_width,
                plan.max_table_bytes(),
                opts.max_table_entries as f64 * 8.0
            ),
        });
    }
    Ok(())
}

/// A caller's plan made trustworthy: its order must be a permutation of the model's n variables
/// (else `SizeMismatch`), and its width, largest table and cost are recomputed from the order on
/// this model's interaction graph (the numbers in `plan` are not used), so that a plan made for
/// another model can neither pass the memory limit nor report a wrong width.
fn replan(n: usize, scopes: &[&[usize]], plan: &Plan) -> Result<Plan> {
    check_order(plan, n)?;
    let mut checked = plan_trial(
        n,
        scopes,
        Heuristic::MinDegree,
        0,
        Some(&plan.order),
        u64::MAX,
    )
    .expect("an unbounded trial finishes");
    checked.found_by = "given order";
    Ok(checked)
}

fn graph_scopes(graph: &FactorGraph) -> Vec<&[usize]> {
    graph.factors().iter().map(|f| f.scope()).collect()
}

fn pairwise_pairs(model: &PairwiseMrf) -> Vec<[usize; 2]> {
    model.edges().iter().map(|&(i, j, _)| [i, j]).collect()
}

/// Checks that `plan` orders exactly the variables 0..n, each once.
fn check_order(plan: &Plan, n: usize) -> Result<()> {
    let mut seen = vec![false; n];
    let ok = plan.order.len() == n
        && plan
            .order
            .iter()
            .all(|&v| v < n && !std::mem::replace(&mut seen[v], true));
    if !ok {
        return Err(Error::SizeMismatch(format!(
            "an elimination plan of {} variables is not an order of the model's {n} variables",
            plan.order.len()
        )));
    }
    Ok(())
}

/// Exact ln Z of a factor graph by variable elimination.
pub fn eliminate_factor_graph(graph: &FactorGraph, opts: &EliminateOptions) -> Result<Elimination> {
    let plan = plan_factor_graph(graph, opts.heuristic);
    eliminate_factor_graph_with_plan(graph, plan, opts)
}

/// [`eliminate_factor_graph`] with a plan already made by [`plan_factor_graph`] (the greedy
/// search is not repeated; `opts.heuristic` is not used). Only the plan's order is trusted, and
/// only once checked to be a permutation of this graph's variables: its width and cost are
/// recomputed on this graph (one pass over the order) before the memory check.
pub fn eliminate_factor_graph_with_plan(
    graph: &FactorGraph,
    plan: Plan,
    opts: &EliminateOptions,
) -> Result<Elimination> {
    let plan = replan(graph.num_vars(), &graph_scopes(graph), &plan)?;
    check_plan(&plan, opts)?;
    let log_z = run(graph.num_vars(), log_factors_of_graph(graph), &plan);
    Ok(Elimination { log_z, plan })
}

/// Exact ln Z(beta) = ln sum_s exp(-beta E(s)) of a pairwise model by variable elimination.
pub fn eliminate_pairwise(
    model: &PairwiseMrf,
    beta: f64,
    opts: &EliminateOptions,
) -> Result<Elimination> {
    let plan = plan_pairwise(model, opts.heuristic);
    eliminate_pairwise_with_plan(model, beta, plan, opts)
}

/// [`eliminate_pairwise`] with a plan already made by [`plan_pairwise`] (the greedy search is
/// not repeated; `opts.heuristic` is not used). The plan is checked and its width recomputed as
/// in [`eliminate_factor_graph_with_plan`].
pub fn eliminate_pairwise_with_plan(
    model: &PairwiseMrf,
    beta: f64,
    plan: Plan,
    opts: &EliminateOptions,
) -> Result<Elimination> {
    if !beta.is_finite() {
        return Err(Error::param("beta", format!("must be finite, got {beta}")));
    }
    let pairs = pairwise_pairs(model);
    let scopes: Vec<&[usize]> = pairs.iter().map(|p| &p[..]).collect();
    let plan = replan(model.fields().len(), &scopes, &plan)?;
    check_plan(&plan, opts)?;
    let log_z = run(
        model.fields().len(),
        log_factors_of_pairwise(model, beta),
        &plan,
    );
    Ok(Elimination { log_z, plan })
}

/// ln Z of a factor graph by variable elimination with the default options.
pub fn log_partition_eliminate(graph: &FactorGraph) -> Result<f64> {
    Ok(eliminate_factor_graph(graph, &EliminateOptions::default())?.log_z)
}

/// ln Z and the marginals P(x_i = 1) by clamping: one more elimination per variable with x_i = 1
/// (in parallel), P(x_i = 1) = exp(ln Z(x_i = 1) - ln Z). About n + 1 times the work of ln Z
/// but only one elimination's memory per thread: the fallback of [`marginals_run`], and the
/// reference the two-pass marginals are tested against.
fn clamped_marginals(n: usize, factors: Vec<LogFactor>, plan: &Plan) -> (f64, Vec<f64>) {
    let log_z = run(n, factors.clone(), plan);
    let marginals = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut f = factors.clone();
            f.push(LogFactor {
                vars: vec![i],
                table: vec![f64::NEG_INFINITY, 0.0],
            });
            let l1 = run(n, f, plan);
            if log_z == f64::NEG_INFINITY {
                0.0
            } else {
                (l1 - log_z).exp().min(1.0)
            }
        })
        .collect();
    (log_z, marginals)
}

/// Whether the two-pass marginals of `plan` fit in `opts.max_table_entries` (their peak,
/// [`Plan::marginal_entries`], stored messages included).
pub fn two_pass_fits(plan: &Plan, opts: &EliminateOptions) -> bool {
    plan.marginal_entries() <= opts.max_table_entries as f64
}

/// ln Z and the marginals: in two passes ([`two_pass_marginals`], about three eliminations'
/// work) when they fit ([`two_pass_fits`]), else by clamping ([`clamped_marginals`], n + 1
/// eliminations in the memory of one).
fn marginals_run(
    n: usize,
    factors: Vec<LogFactor>,
    plan: &Plan,
    opts: &EliminateOptions,
) -> (f64, Vec<f64>) {
    if two_pass_fits(plan, opts) {
        two_pass_marginals(n, factors, plan)
    } else {
        clamped_marginals(n, factors, plan)
    }
}

/// Exact marginals P(x_i = 1) of a factor graph (see [`eliminate_factor_graph_marginals_with_plan`]).
pub fn marginals_factor_graph(graph: &FactorGraph, opts: &EliminateOptions) -> Result<Vec<f64>> {
    marginals_factor_graph_with_plan(graph, &plan_factor_graph(graph, opts.heuristic), opts)
}

/// [`marginals_factor_graph`] with a plan already made by [`plan_factor_graph`] (checked and
/// its width recomputed as in [`eliminate_factor_graph_with_plan`]).
pub fn marginals_factor_graph_with_plan(
    graph: &FactorGraph,
    plan: &Plan,
    opts: &EliminateOptions,
) -> Result<Vec<f64>> {
    Ok(eliminate_factor_graph_marginals_with_plan(graph, plan.clone(), opts)?.1)
}

/// ln Z and the exact marginals P(x_i = 1) of a factor graph from one plan: an upward pass
/// (the elimination, ln Z bit-for-bit as [`eliminate_factor_graph_with_plan`]) that keeps its
/// messages, and a downward pass that gives every marginal, about three eliminations' work in
/// all. When the stored messages do not fit in `opts.max_table_entries`
/// ([`Plan::marginal_entries`]), each variable is clamped in turn instead (n + 1 eliminations).
/// The plan is checked and its width recomputed as in [`eliminate_factor_graph_with_plan`].
pub fn eliminate_factor_graph_marginals_with_plan(
    graph: &FactorGraph,
    plan: Plan,
    opts: &EliminateOptions,
) -> Result<(Elimination, Vec<f64>)> {
    let plan = replan(graph.num_vars(), &graph_scopes(graph), &plan)?;
    check_plan(&plan, opts)?;
    let (log_z, marginals) =
        marginals_run(graph.num_vars(), log_factors_of_graph(graph), &plan, opts);
    Ok((Elimination { log_z, plan }, marginals))
}

/// Exact marginals P(s_i = +1) of a pairwise model at inverse temperature beta.
pub fn marginals_pairwise(
    model: &PairwiseMrf,
    beta: f64,
    opts: &EliminateOptions,
) -> Result<Vec<f64>> {
    marginals_pairwise_with_plan(model, beta, &plan_pairwise(model, opts.heuristic), opts)
}

/// [`marginals_pairwise`] with a plan already made by [`plan_pairwise`] (checked and its width
/// recomputed as in [`eliminate_factor_graph_with_plan`]).
pub fn marginals_pairwise_with_plan(
    model: &PairwiseMrf,
    beta: f64,
    plan: &Plan,
    opts: &EliminateOptions,
) -> Result<Vec<f64>> {
    Ok(eliminate_pairwise_marginals_with_plan(model, beta, plan.clone(), opts)?.1)
}

/// ln Z(beta) and the exact marginals P(s_i = +1) of a pairwise model from one plan, as
/// [`eliminate_factor_graph_marginals_with_plan`].
pub fn eliminate_pairwise_marginals_with_plan(
    model: &PairwiseMrf,
    beta: f64,
    plan: Plan,
    opts: &EliminateOptions,
) -> Result<(Elimination, Vec<f64>)> {
    if !beta.is_finite() {
        return Err(Error::param("beta", format!("must be finite, got {beta}")));
    }
    let pairs = pairwise_pairs(model);
    let scopes: Vec<&[usize]> = pairs.iter().map(|p| &p[..]).collect();
    let plan = replan(model.fields().len(), &scopes, &plan)?;
    check_plan(&plan, opts)?;
    let (log_z, marginals) = marginals_run(
        model.fields().len(),
        log_factors_of_pairwise(model, beta),
        &plan,
        opts,
    );
    Ok((Elimination { log_z, plan }, marginals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::exact;
    use crate::model::Factor;

    /// Marginals `m` equal `reference` to 1e-12 each (the tolerance: both are exact up
    /// to rounding), with the same length.
    fn assert_all_close(m: &[f64], reference: &[f64], what: &str) {
        assert_eq!(m.len(), reference.len(), "{what}: lengths");
        for (i, (a, b)) in m.iter().zip(reference).enumerate() {
            assert!((a - b).abs() < 1e-12, "{what}, variable {i}: {a} vs {b}");
        }
    }

    #[test]
    fn matches_enumeration_with_higher_arity_and_zeros() {
        let g = FactorGraph::new(
            5,
            vec![
                Factor::new(
                    vec![3, 0, 1],
                    (0..8).map(|k| (k % 3) as f64 + 0.5).collect(),
                )
                .unwrap(),
                Factor::new(vec![1, 2], vec![1.0, 0.0, 2.0, 0.7]).unwrap(),
                Factor::new(vec![4], vec![0.2, 1.3]).unwrap(),
                Factor::new(vec![2, 4, 3], (0..8).map(|k| (k * k % 5) as f64).collect()).unwrap(),
            ],
        )
        .unwrap();
        let reference = exact::log_partition_factor_graph(&g).unwrap();
        for h in [Heuristic::MinFill, Heuristic::MinDegree] {
            let opts = EliminateOptions {
                heuristic: h,
                ..Default::default()
            };
            let e = eliminate_factor_graph(&g, &opts).unwrap();
            assert!((e.log_z - reference).abs() < 1e-12 * reference.abs().max(1.0));
            let m = marginals_factor_graph(&g, &opts).unwrap();
            let mref = exact::marginals_factor_graph(&g).unwrap();
            assert_all_close(&m, &mref, &format!("{h:?}"));
        }
    }

    /// A random factor graph over n variables: `factors` factors of arity 1-4 on random
    /// scopes (scope order as drawn, so tables are reordered), entries in [0.05, 3) and, with
    /// probability `zeros`, exactly 0 (never all of a table); a constant factor; variables n - 2 and n - 1 in no factor
    /// when `loose` (isolated: marginal 1/2).
    fn random_graph(n: usize, factors: usize, zeros: f64, loose: bool, seed: u64) -> FactorGraph {
        use rand::RngExt;
        let mut rng = crate::rng::from_seed(seed);
        let reach = if loose { n - 2 } else { n };
        let mut list = vec![Factor::new(vec![], vec![1.7]).unwrap()];
        for _ in 0..factors {
            let k = rng.random_range(1..=4usize).min(reach);
            let mut scope: Vec<usize> = Vec::new();
            while scope.len() < k {
                let v = rng.random_range(0..reach);
                if !scope.contains(&v) {
                    scope.push(v);
                }
            }
            let mut table: Vec<f64> = (0..1usize << k)
                .map(|_| {
                    if rng.random_bool(zeros) {
                        0.0
                    } else {
                        rng.random_range(0.05..3.0)
                    }
                })
                .collect();
            if table.iter().all(|&t| t == 0.0) {
                table[0] = 0.5; // (FactorGraph::new refuses an all-zero factor.)
            }
            list.push(Factor::new(scope, table).unwrap());
        }
        FactorGraph::new(n, list).unwrap()
    }

    #[test]
    fn two_pass_marginals_match_enumeration_and_clamping() {
        // Sparse and dense random graphs, with and without zero entries and isolated
        // variables, under both heuristics. Tolerance 1e-12 absolute on probabilities: the
        // three computations differ only in rounding (about 1e-15 per operation, over at most
        // a few hundred operations per value).
        let cases = [
            (12, 10, 0.0, false, 1),
            (14, 18, 0.15, true, 2),
            (16, 30, 0.05, false, 3),
            (10, 16, 0.1, true, 4),
            (18, 14, 0.0, true, 5),
        ];
        for (n, f, zeros, loose, seed) in cases {
            let g = random_graph(n, f, zeros, loose, seed);
            let reference = exact::marginals_factor_graph(&g).unwrap();
            let log_z_ref = exact::log_partition_factor_graph(&g).unwrap();
            assert!(log_z_ref.is_finite(), "seed {seed}: Z = 0, a useless case");
            for h in [Heuristic::MinFill, Heuristic::MinDegree] {
                let plan = plan_factor_graph(&g, h);
                let (e, m) = eliminate_factor_graph_marginals_with_plan(
                    &g,
                    plan.clone(),
                    &Default::default(),
                )
                .unwrap();
                // ln Z of the upward pass is the plain elimination's, to the bit.
                let plain = eliminate_factor_graph_with_plan(&g, plan.clone(), &Default::default())
                    .unwrap();
                assert_eq!(e.log_z.to_bits(), plain.log_z.to_bits());
                assert!(
                    (e.log_z - log_z_ref).abs() < 1e-12 * log_z_ref.abs().max(1.0),
                    "seed {seed}: {} vs {log_z_ref}",
                    e.log_z
                );
                let (_, clamped) = clamped_marginals(n, log_factors_of_graph(&g), &e.plan);
                assert_all_close(&m, &reference, &format!("seed {seed}, enumeration"));
                assert_all_close(&m, &clamped, &format!("seed {seed}, clamping"));
                if loose {
                    assert!((m[n - 1] - 0.5).abs() < 1e-15 && (m[n - 2] - 0.5).abs() < 1e-15);
                }
            }
        }
    }

    #[test]
    fn two_pass_marginals_of_pairwise_models_match_enumeration() {
        use rand::RngExt;
        // Random +-1 spin models (P(s_i = +1)) at a beta large enough for near-0/1 marginals;
        // tolerance as above.
        let mut rng = crate::rng::from_seed(11);
        for (n, density, beta) in [(12, 0.3, 1.0), (15, 0.6, 2.5), (9, 1.0, 0.3)] {
            let fields: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut edges = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    if rng.random_bool(density) {
                        edges.push((i, j, rng.random_range(-1.5..1.5)));
                    }
                }
            }
            let model = PairwiseMrf::new(fields, &edges).unwrap();
            let reference = exact::enumerate_marginals(&model, beta).unwrap();
            let m = marginals_pairwise(&model, beta, &Default::default()).unwrap();
            let plan = plan_pairwise(&model, Heuristic::MinFill);
            let (_, clamped) = clamped_marginals(n, log_factors_of_pairwise(&model, beta), &plan);
            assert_all_close(&m, &reference, &format!("n {n}, enumeration"));
            assert_all_close(&m, &clamped, &format!("n {n}, clamping"));
        }
    }

    #[test]
    fn two_pass_marginals_of_an_impossible_model_are_zero() {
        // Z = 0 (x0 = x1 forced, and x0 != x1 forced): ln Z = -inf and every marginal 0, no NaN,
        // as by clamping.
        let g = FactorGraph::new(
            3,
            vec![
                Factor::new(vec![0, 1], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
                Factor::new(vec![1, 0], vec![0.0, 2.0, 3.0, 0.0]).unwrap(),
                Factor::new(vec![2], vec![1.0, 2.0]).unwrap(),
            ],
        )
        .unwrap();
        let (e, m) = eliminate_factor_graph_marginals_with_plan(
            &g,
            plan_factor_graph(&g, Heuristic::MinFill),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(e.log_z, f64::NEG_INFINITY);
        assert_eq!(m, vec![0.0; 3]);
    }

    #[test]
    fn two_pass_marginals_do_not_depend_on_the_thread_count() {
        // A complete 16-variable model: width 15, cliques of 2^16 entries, several parallel
        // chunks per clique. The sums run in a fixed order, so the bits agree.
        let n = 16;
        let mut edges = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                edges.push((i, j, ((i * 7 + j * 3) % 11) as f64 / 10.0 - 0.5));
            }
        }
        let fields: Vec<f64> = (0..n).map(|i| (i % 5) as f64 / 5.0 - 0.4).collect();
        let model = PairwiseMrf::new(fields, &edges).unwrap();
        let run_with = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| marginals_pairwise(&model, 0.7, &Default::default()).unwrap())
        };
        let (one, three) = (run_with(1), run_with(3));
        assert_eq!(
            one.iter().map(|p| p.to_bits()).collect::<Vec<_>>(),
            three.iter().map(|p| p.to_bits()).collect::<Vec<_>>()
        );
        let plan = plan_pairwise(&model, Heuristic::MinFill);
        assert!(plan.induced_width >= 13, "{}", plan.induced_width);
    }

    #[test]
    fn stored_messages_count_against_the_memory_limit() {
        // A 6x6 open grid: the two passes keep about 36 messages of up to 2^6 entries, far more
        // than the largest table. A limit between the two makes the marginals fall back to
        // clamping (same values), and the plan's peak counts every message twice plus a clique.
        let l =
            crate::model::IsingLattice::new(6, 6, crate::model::Boundary::Open, 0.8, 0.1).unwrap();
        let pw = l.to_pairwise().unwrap();
        let plan = plan_pairwise(&pw, Heuristic::MinFill);
        let w = plan.induced_width as i32;
        assert!(plan.message_entries > 2f64.powi(w) && plan.message_entries <= 36.0 * 2f64.powi(w));
        assert_eq!(
            plan.marginal_entries(),
            2.0 * plan.message_entries + 2f64.powi(w + 1)
        );
        let tight = EliminateOptions {
            max_table_entries: plan.max_table_entries,
            ..Default::default()
        };
        assert!(!two_pass_fits(&plan, &tight));
        assert!(two_pass_fits(&plan, &EliminateOptions::default()));
        let (e1, fallback) =
            eliminate_pairwise_marginals_with_plan(&pw, 0.9, plan.clone(), &tight).unwrap();
        let (e2, two_pass) =
            eliminate_pairwise_marginals_with_plan(&pw, 0.9, plan, &Default::default()).unwrap();
        assert_eq!(e1.log_z.to_bits(), e2.log_z.to_bits());
        assert_all_close(&fallback, &two_pass, "fallback vs two-pass");
    }

    #[test]
    fn a_plan_of_another_model_is_checked_not_trusted() {
        // A chain of 12 variables (width 1) and a complete graph on 12 (width 11).
        let n = 12;
        let chain_edges: Vec<(usize, usize, f64)> = (1..n).map(|i| (i - 1, i, 0.3)).collect();
        let chain = PairwiseMrf::new(vec![0.1; n], &chain_edges).unwrap();
        let mut all = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                all.push((i, j, 0.2));
            }
        }
        let complete = PairwiseMrf::new(vec![0.1; n], &all).unwrap();
        let chain_plan = plan_pairwise(&chain, Heuristic::MinFill);
        assert_eq!(chain_plan.induced_width, 1);
        // The chain's plan on the complete graph: the width is the complete graph's.
        let e =
            eliminate_pairwise_with_plan(&complete, 0.5, chain_plan.clone(), &Default::default())
                .unwrap();
        assert_eq!(e.plan.induced_width, n - 1);
        let reference = exact::enumerate_log_partition(&complete, 0.5).unwrap();
        assert!((e.log_z - reference).abs() < 1e-12 * reference.abs());
        // ... and the memory limit applies to that width, not to the plan's claim.
        let small = EliminateOptions {
            max_table_entries: 1 << 4,
            ..Default::default()
        };
        let graph = FactorGraph::from_pairwise(&complete, 0.5).unwrap();
        for err in [
            eliminate_pairwise_with_plan(&complete, 0.5, chain_plan.clone(), &small).unwrap_err(),
            marginals_pairwise_with_plan(&complete, 0.5, &chain_plan, &small).unwrap_err(),
            eliminate_factor_graph_with_plan(&graph, chain_plan.clone(), &small).unwrap_err(),
            marginals_factor_graph_with_plan(&graph, &chain_plan, &small).unwrap_err(),
        ] {
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        }
        // Orders that are not a permutation of this model's variables.
        let mut short = chain_plan.clone();
        short.order.pop();
        let mut repeated = chain_plan.clone();
        repeated.order[0] = repeated.order[1];
        for bad in [short, repeated] {
            let err = eliminate_pairwise_with_plan(&complete, 0.5, bad, &Default::default());
            assert!(matches!(err, Err(Error::SizeMismatch(_))), "{err:?}");
        }
    }

    /// A relational-like model: `hubs` hub variables and `leaves` leaves, each leaf in one
    /// ternary factor with two hubs (hub degree about 2 leaves / hubs * 2).
    fn min_degree_first(g: &FactorGraph) -> Plan {
        let scopes = graph_scopes(g);
        plan_trial(
            g.num_vars(),
            &scopes,
            Heuristic::MinDegree,
            0,
            None,
            u64::MAX,
        )
        .unwrap()
    }

    pub(crate) fn hub_model(hubs: usize, leaves: usize) -> FactorGraph {
        let factors = (0..leaves)
            .map(|k| {
                let a = k % hubs;
                let b = (a + 1 + (k / hubs) % (hubs - 1)) % hubs;
                Factor::new(
                    vec![a, b, hubs + k],
                    (0..8).map(|t| 1.0 + t as f64).collect(),
                )
                .unwrap()
            })
            .collect();
        FactorGraph::new(hubs + leaves, factors).unwrap()
    }

    #[test]
    fn planning_stays_within_its_work_budget() {
        let g = hub_model(16, 320);
        let unbounded = plan_factor_graph(&g, Heuristic::MinFill);
        assert_eq!(unbounded.found_by, "min-fill");
        let min_degree = plan_factor_graph(&g, Heuristic::MinDegree);
        // A budget below the min-fill trials' needs: they stop (a trial stops within one
        // elimination step of its share), and a cheaper plan (a sweep or the first min-degree
        // trial) is the answer, found with a fraction of the unbounded work.
        let budget = unbounded.planning_work / 100;
        let bounded = plan_factor_graph_within(&g, Heuristic::MinFill, budget);
        assert_ne!(bounded.found_by, "min-fill");
        assert!(
            bounded.planning_work < unbounded.planning_work / 4,
            "{} vs {}",
            bounded.planning_work,
            unbounded.planning_work
        );
        // No budget at all: the min-degree plan, whatever the sweeps would have cost.
        let nothing = plan_factor_graph_within(&g, Heuristic::MinFill, 0);
        assert!(
            nothing.found_by.starts_with("min-degree"),
            "{}",
            nothing.found_by
        );
        assert_eq!(nothing.order, min_degree_first(&g).order);
        // Deterministic: the same budget gives the same plan.
        assert_eq!(
            plan_factor_graph_within(&g, Heuristic::MinFill, budget),
            bounded
        );
        // With room enough, the bounded search is the unbounded one.
        let roomy = plan_factor_graph_within(&g, Heuristic::MinFill, 2 * unbounded.planning_work);
        assert_eq!(roomy.order, unbounded.order);
        assert_eq!(min_degree.found_by, "min-degree");
    }

    #[test]
    fn grid_width_is_the_side() {
        // An open 6x6 grid has treewidth 6; min-fill finds width 6 or 7.
        let l =
            crate::model::IsingLattice::new(6, 6, crate::model::Boundary::Open, 1.0, 0.0).unwrap();
        let plan = plan_pairwise(&l.to_pairwise().unwrap(), Heuristic::MinFill);
        assert!(
            (6..=7).contains(&plan.induced_width),
            "{}",
            plan.induced_width
        );
        assert_eq!(plan.order.len(), 36);
    }
}
