//! One entry point for exact ln Z: the model kinds, the methods, their cost estimates, and the
//! `auto` choice of the cheapest method that fits a time and memory budget.
//!
//! Cost model (seconds on one core of the 2-core development machine; rough, used only to rank
//! methods and to refuse hopeless runs): enumeration ~ (2 + 1.5 d) ns per state for a pairwise
//! model of mean degree d (0.3 ns for a uniform lattice of width <= 8, 2.5 ns for wider ones, (3 + 4 t) ns for factor tables
//! with t table updates per flip), RBM enumeration ~ 0.35 ns per state per unit of the larger
//! layer, elimination ~ 6 ns per table-entry operation for lattices (no plan is made for the estimate) and
//! 1.5 ns per operation of a factor graph's [`eliminate::Plan`] plus its planning time, transfer ~ 25 ns per
//! log-add-exp, Kaufman ~ 200 ns per column. Every figure is single-core seconds, whatever the
//! rayon pool size: the choice of `auto` (and so the last bits of ln Z) must not depend on
//! `--threads`, and the time budget is compared against the same single-core figure.

use super::eliminate::{self, EliminateOptions, Heuristic};
use super::exact::{self, EnumerateOptions, Shard};
use super::kaufman::kaufman_log_partition;
use super::rbm::{rbm_enumerate, rbm_enumerated_bits};
use super::transfer::{StripLattice, transfer_log_partition};
use crate::error::{Error, Result};
use crate::model::{Boundary, FactorGraph, IsingLattice, Rbm};
use crate::progress::Observer;

/// An exact method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The cheapest applicable method by estimated cost.
    Auto,
    /// Gray-code enumeration of all states.
    Enumerate,
    /// Variable elimination.
    Eliminate,
    /// Transfer matrices (lattices).
    Transfer,
    /// Kaufman's closed form (uniform zero-field torus).
    Kaufman,
    /// RBM: enumerate the smaller layer, sum the larger analytically.
    Rbm,
}

impl Method {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Enumerate => "enumerate",
            Method::Eliminate => "eliminate",
            Method::Transfer => "transfer",
            Method::Kaufman => "kaufman",
            Method::Rbm => "rbm",
        }
    }
}

/// A model whose ln Z is wanted.
#[derive(Debug, Clone, Copy)]
pub enum Model<'a> {
    /// An Ising lattice at inverse temperature beta.
    Lattice {
        /// The lattice.
        lattice: &'a IsingLattice,
        /// Inverse temperature.
        beta: f64,
    },
    /// A factor graph (beta = 1: the tables as given).
    Factors(&'a FactorGraph),
    /// An RBM.
    Rbm(&'a Rbm),
}

impl Model<'_> {
    /// Number of variables (for an RBM, visible + hidden).
    pub fn num_vars(&self) -> usize {
        match self {
            Model::Lattice { lattice, .. } => lattice.num_sites(),
            Model::Factors(g) => g.num_vars(),
            Model::Rbm(r) => r.n_visible() + r.n_hidden(),
        }
    }

    /// An upper bound on |ln w(x)| + n ln 2 over all states x, where w(x) is a state's weight
    /// (so |ln Z| is below it too): for a lattice |beta J| 2n + sum_i |beta h_i| (a square
    /// lattice has at most 2n bonds), for a factor graph the sum over factors of the largest
    /// |ln phi| of a nonzero entry, for an RBM sum |W| + sum |b| + sum |c|. +inf (or NaN) when
    /// that overflows.
    pub fn log_weight_bound(&self) -> f64 {
        let n = self.num_vars() as f64;
        let states = n * std::f64::consts::LN_2;
        match self {
            Model::Lattice { lattice, beta } => {
                let fields = match lattice.site_field() {
                    Some(h) => h.iter().map(|h| (beta * h).abs()).sum::<f64>(),
                    None => (beta * lattice.uniform_field()).abs() * n,
                };
                (beta * lattice.coupling()).abs() * 2.0 * n + fields + states
            }
            Model::Factors(g) => {
                g.factors()
                    .iter()
                    .map(|f| {
                        f.log_table()
                            .iter()
                            .filter(|l| l.is_finite())
                            .fold(0.0f64, |m, l| m.max(l.abs()))
                    })
                    .sum::<f64>()
                    + states
            }
            Model::Rbm(r) => {
                let abs_sum = |v: &[f64]| v.iter().map(|x| x.abs()).sum::<f64>();
                abs_sum(r.weights()) + abs_sum(r.visible_bias()) + abs_sum(r.hidden_bias()) + states
            }
        }
    }

    /// Refuses a model whose log-weights could overflow ([`Model::log_weight_bound`] above
    /// [`MAX_LOG_WEIGHT`]): every method would print NaN or infinity.
    pub fn check_log_weights(&self) -> Result<()> {
        let bound = self.log_weight_bound();
        if bound <= MAX_LOG_WEIGHT {
            return Ok(());
        }
        let why = format!(
            "a state's log-weight can reach {bound:e}, beyond {MAX_LOG_WEIGHT:e}, so ln Z would \
             overflow"
        );
        Err(match self {
            Model::Lattice { lattice, beta } => Error::param(
                "beta, coupling or field",
                format!(
                    "beta = {beta}, J = {}, h = {}: {why}",
                    lattice.coupling(),
                    match lattice.site_field() {
                        Some(_) => "per site".to_string(),
                        None => lattice.uniform_field().to_string(),
                    }
                ),
            ),
            Model::Factors(_) => Error::InvalidModel(why),
            Model::Rbm(_) => Error::InvalidModel(format!("RBM parameters: {why}")),
        })
    }
}

/// Largest accepted [`Model::log_weight_bound`]: 1e300 leaves every method (sums of a few
/// log-weights, doubled couplings, ln Z / ln 10) a factor of 10^8 below f64::MAX.
pub const MAX_LOG_WEIGHT: f64 = 1e300;

/// Working bytes per site of the elimination of a lattice (pairwise form, log-factors, the
/// interaction graph and the ordering trials), measured at about 1.2 kB per site on open
/// 100000 x 4 and 200000 x 4 lattices (490 MB and 956 MB peak).
const ELIMINATE_BYTES_PER_SITE: f64 = 1200.0;
/// Seconds per table-entry operation of a factor graph's elimination plan ([`eliminate::Plan`]
/// cost), one core: calibrated on the UAI models of data/uai (see docs/partition.md, "Cost
/// estimates", for the measured ratios estimate / actual). The planning already done is added
/// at [`eliminate::PLAN_WORK_PER_SECOND`].
const ELIMINATION_SECONDS_PER_OP: f64 = 1.5e-9;

/// Work of the two-pass marginals of an elimination ([`eliminate::two_pass_fits`]) in
/// eliminations of ln Z (measured 2-3 on the UAI models of data/uai; see docs/partition.md).
const TWO_PASS_RUNS: f64 = 3.0;

/// Working bytes per site of the transfer method (the per-site fields, and a transposed copy).
const TRANSFER_BYTES_PER_SITE: f64 = 16.0;

/// Budget that `auto` must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Largest estimated run time accepted, in seconds.
    pub max_seconds: f64,
    /// Largest memory for tables, in bytes.
    pub max_bytes: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_seconds: 3600.0,
            max_bytes: 2.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }
}

/// The estimated cost of one method on one model.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEstimate {
    /// The method.
    pub method: Method,
    /// Estimated seconds on one core (independent of the thread count; parallel methods finish
    /// sooner on more cores).
    pub seconds: f64,
    /// Estimated memory for tables, in bytes.
    pub bytes: f64,
    /// The cost in words, e.g. "2^36 states" or "induced width 17, 2^17-entry tables".
    pub detail: String,
    /// The elimination plan made for the estimate (elimination of a non-lattice model), reused
    /// by the run so that planning is not repeated.
    pub plan: Option<eliminate::Plan>,
}

/// Options of [`exact_log_partition`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionOptions {
    /// Compute P(x_i = 1) too (enumeration and elimination only).
    pub marginals: bool,
    /// Part of the enumeration (enumeration and RBM only).
    pub shard: Shard,
    /// Budget for `auto`.
    pub budget: Budget,
    /// Ordering heuristic for elimination.
    pub heuristic: Heuristic,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        PartitionOptions {
            marginals: false,
            shard: Shard::WHOLE,
            budget: Budget::default(),
            heuristic: Heuristic::MinFill,
        }
    }
}

/// The answer of [`exact_log_partition`].
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// ln Z (for a shard: ln of the sum over its states).
    pub log_z: f64,
    /// The method that ran (never `Auto`).
    pub method: Method,
    /// P(x_i = 1) when asked for.
    pub marginals: Option<Vec<f64>>,
    /// Induced width, for elimination.
    pub induced_width: Option<usize>,
    /// States summed, for enumeration and RBM.
    pub states: Option<u64>,
    /// The estimate that was made for the method.
    pub estimate: CostEstimate,
}

fn pow2(bits: usize) -> f64 {
    2f64.powi(bits as i32)
}

/// The cost of `method` on `model`, or why it does not apply.
pub fn estimate(model: &Model, method: Method, opts: &PartitionOptions) -> Result<CostEstimate> {
    let not_for = |what: &str| {
        Err(Error::param(
            "method",
            format!("{} does not apply to {what}", method.name()),
        ))
    };
    if opts.marginals && !matches!(method, Method::Enumerate | Method::Eliminate) {
        return not_for("marginals (use enumerate or eliminate)");
    }
    if opts.shard != Shard::WHOLE && !matches!(method, Method::Enumerate | Method::Rbm) {
        return not_for("shards (use enumerate, or rbm for an RBM)");
    }
    let n = model.num_vars();
    let est = |seconds: f64, bytes: f64, detail: String| CostEstimate {
        method,
        seconds,
        bytes,
        detail,
        plan: None,
    };
    match (method, model) {
        (Method::Auto, _) => Err(Error::param("method", "auto is not a method to estimate")),
        (Method::Enumerate, Model::Rbm(_)) => estimate(model, Method::Rbm, opts),
        (Method::Enumerate, _) => {
            exact::check_enumeration_size(n, opts.shard)?;
            let ns = match model {
                Model::Lattice { lattice, .. }
                    if lattice.site_field().is_none() && !opts.marginals =>
                {
                    // Row-0 tables for widths <= 8, else the per-state histogram walk.
                    if lattice.width() <= 8 { 0.3 } else { 2.5 }
                }
                Model::Lattice { lattice, .. } => {
                    2.0 + 1.5 * 2.0 * lattice.bonds().len() as f64 / n.max(1) as f64
                }
                Model::Factors(g) => {
                    let touches: usize = g.factors().iter().map(|f| f.arity()).sum();
                    3.0 + 4.0 * touches as f64 / n.max(1) as f64
                }
                Model::Rbm(_) => unreachable!(),
            } + if opts.marginals { 6.0 } else { 0.0 };
            let states = pow2(n) / opts.shard.count as f64;
            Ok(est(states * ns * 1e-9, 0.0, format!("2^{n} states")))
        }
        (Method::Rbm, Model::Rbm(r)) => {
            let k = rbm_enumerated_bits(r);
            let m = r.n_visible().max(r.n_hidden());
            if k > super::rbm::MAX_ENUMERATED_UNITS {
                return Err(Error::TooLarge {
                    method: "exact RBM enumeration".into(),
                    detail: format!("2^{k} states of the smaller layer"),
                });
            }
            let states = pow2(k) / opts.shard.count as f64;
            Ok(est(
                states * (m as f64 * 0.35 + 5.0) * 1e-9,
                0.0,
                format!("2^{k} states x {m} softplus terms"),
            ))
        }
        (Method::Rbm, _) => not_for("a model that is not an RBM"),
        (Method::Eliminate, Model::Rbm(_)) => not_for("an RBM (use rbm)"),
        (Method::Eliminate, Model::Lattice { lattice, .. }) => {
            // No planning here (min-fill trials over a 10^5-site lattice take longer than many
            // answers): a grid sweep eliminates row by row with a frontier of the shorter side w,
            // twice that on a torus (the first row stays in the frontier), so about n variables
            // are each summed out of a table of 2^(w+1) entries touched by w+1 factors.
            let (short, long) = (
                lattice.width().min(lattice.height()),
                lattice.width().max(lattice.height()),
            );
            let torus = lattice.boundary() == Boundary::Periodic && long > 1;
            let w = if torus { 2 * short } else { short };
            let why = if torus {
                "twice the shorter side on a torus"
            } else {
                "the shorter side"
            };
            if w > eliminate::PLAN_WIDTH_CAP {
                return Err(Error::TooLarge {
                    method: "variable elimination".into(),
                    detail: format!("induced width about {w} ({why}): tables of 2^{w} entries"),
                });
            }
            // Marginals: two passes when their stored messages (at most 2^w entries per site,
            // twice, and a clique of 2^(w+1)) fit, else one clamped elimination per variable.
            let two_pass_bytes = (2.0 * n as f64 * pow2(w) + pow2(w + 1)) * 8.0;
            let two_pass = opts.marginals && two_pass_bytes <= opts.budget.max_bytes;
            let runs = match (opts.marginals, two_pass) {
                (false, _) => 1.0,
                (true, true) => TWO_PASS_RUNS,
                (true, false) => n as f64 + 1.0,
            };
            let cost = n as f64 * (w as f64 + 1.0) * pow2(w + 1);
            Ok(est(
                runs * cost * 6e-9,
                if two_pass {
                    two_pass_bytes
                } else {
                    pow2(w) * 8.0
                } + ELIMINATE_BYTES_PER_SITE * n as f64,
                format!(
                    "induced width about {w} ({why}), largest table 2^{w} entries ({:.3e} bytes)",
                    pow2(w) * 8.0
                ),
            ))
        }
        (Method::Eliminate, Model::Factors(g)) => {
            // Planning gets the time budget as deterministic work (so the plan, and ln Z, do
            // not depend on the machine's speed or load).
            let max_work = (opts.budget.max_seconds * eliminate::PLAN_WORK_PER_SECOND)
                .min(u64::MAX as f64) as u64;
            let plan = eliminate::plan_factor_graph_within(g, opts.heuristic, max_work);
            if plan.induced_width > eliminate::PLAN_WIDTH_CAP {
                return Err(Error::TooLarge {
                    method: "variable elimination".into(),
                    detail: format!(
                        "induced width > {} ({} gave up): tables of more than 2^{} entries",
                        eliminate::PLAN_WIDTH_CAP,
                        plan.found_by,
                        eliminate::PLAN_WIDTH_CAP
                    ),
                });
            }
            // Marginals: two passes when their stored messages fit, else clamping.
            let two_pass = opts.marginals && plan.marginal_bytes() <= opts.budget.max_bytes;
            let runs = match (opts.marginals, two_pass) {
                (false, _) => 1.0,
                (true, true) => TWO_PASS_RUNS,
                (true, false) => n as f64 + 1.0,
            };
            let mut e = est(
                runs * plan.cost * ELIMINATION_SECONDS_PER_OP
                    + plan.planning_work as f64 / eliminate::PLAN_WORK_PER_SECOND,
                if two_pass {
                    plan.marginal_bytes()
                } else {
                    plan.max_table_bytes()
                },
                format!(
                    "induced width {}, largest table 2^{} entries ({:.3e} bytes){}",
                    plan.induced_width,
                    plan.induced_width,
                    plan.max_table_bytes(),
                    match (opts.marginals, two_pass) {
                        (false, _) => String::new(),
                        (true, true) => format!(
                            "; two-pass marginals keep {:.3e} bytes of messages",
                            plan.marginal_bytes()
                        ),
                        (true, false) => format!(
                            "; marginals by clamping (the two passes' {:.3e} bytes of messages \
                             exceed the memory limit)",
                            plan.marginal_bytes()
                        ),
                    }
                ),
            );
            e.plan = Some(plan);
            Ok(e)
        }
        (Method::Transfer, Model::Lattice { lattice, .. }) => {
            // The orientation of the run: the cheaper sweep within its width limit (checked
            // before building any per-site data).
            let periodic = lattice.boundary() == Boundary::Periodic;
            let shape = StripLattice {
                width: lattice.width(),
                height: lattice.height(),
                periodic_width: periodic,
                periodic_height: periodic,
                coupling: lattice.coupling(),
                fields: Vec::new(),
            };
            let sweep = shape.best_sweep();
            let (w, torus) = (sweep.width, sweep.torus);
            if !sweep.fits() {
                return Err(Error::TooLarge {
                    method: "transfer matrix".into(),
                    detail: format!("swept width {w} (at most {})", sweep.limit),
                });
            }
            // Bytes: one frontier vector (the torus keeps one per worker thread; 2^14 doubles).
            Ok(est(
                sweep.cost * 25e-9,
                pow2(w) * 8.0 + TRANSFER_BYTES_PER_SITE * n as f64,
                format!(
                    "2^{w} frontier states{}, {:.3e} operations",
                    if torus { " per first-row state" } else { "" },
                    sweep.cost
                ),
            ))
        }
        (Method::Transfer, _) => not_for("a model that is not a lattice"),
        (Method::Kaufman, Model::Lattice { lattice, beta }) => {
            if lattice.boundary() != Boundary::Periodic
                || lattice.site_field().is_some()
                || lattice.uniform_field() != 0.0
                || lattice.width() < 2
                || lattice.height() < 2
            {
                return not_for(
                    "this lattice (Kaufman needs a zero-field torus with both sides >= 2)",
                );
            }
            // Kaufman's formula needs beta J >= 0 on an odd torus (the sign of beta counts too).
            if beta * lattice.coupling() < 0.0
                && (lattice.width() % 2 == 1 || lattice.height() % 2 == 1)
            {
                return not_for("a frustrated antiferromagnet (beta J < 0 with an odd side)");
            }
            Ok(est(
                lattice.width() as f64 * 2e-7,
                0.0,
                format!("{} columns", lattice.width()),
            ))
        }
        (Method::Kaufman, _) => not_for("a model that is not a lattice"),
    }
}

/// Chooses the cheapest applicable method within the budget, or refuses naming the costs.
pub fn choose(model: &Model, opts: &PartitionOptions) -> Result<CostEstimate> {
    let candidates = [
        Method::Kaufman,
        Method::Rbm,
        Method::Transfer,
        Method::Eliminate,
        Method::Enumerate,
    ];
    let mut best: Option<CostEstimate> = None;
    let mut refusals = Vec::new();
    for m in candidates {
        match estimate(model, m, opts) {
            Ok(e) if e.seconds <= opts.budget.max_seconds && e.bytes <= opts.budget.max_bytes => {
                if best.as_ref().is_none_or(|b| e.seconds < b.seconds) {
                    best = Some(e);
                }
            }
            Ok(e) => refusals.push(format!(
                "{}: {} (about {:.3e} s, {:.3e} bytes)",
                m.name(),
                e.detail,
                e.seconds,
                e.bytes
            )),
            Err(Error::TooLarge { detail, .. }) => refusals.push(format!("{}: {detail}", m.name())),
            Err(_) => {}
        }
    }
    best.ok_or_else(|| Error::TooLarge {
        method: "every exact method".into(),
        detail: format!(
            "budget {} s and {:.3e} bytes; {}",
            opts.budget.max_seconds,
            opts.budget.max_bytes,
            if refusals.is_empty() {
                "no method applies".to_string()
            } else {
                refusals.join("; ")
            }
        ),
    })
}

/// Exact ln Z of `model` by `method` (`Auto` chooses by [`choose`]).
pub fn exact_log_partition(
    model: &Model,
    method: Method,
    opts: &PartitionOptions,
    observer: &mut dyn Observer,
) -> Result<Partition> {
    model.check_log_weights()?;
    let estimate = if method == Method::Auto {
        choose(model, opts)?
    } else {
        estimate(model, method, opts)?
    };
    // A method asked for by name is not held to the time budget, but it is to the memory one
    // (checked before anything proportional to the model is allocated).
    if estimate.bytes > opts.budget.max_bytes {
        return Err(Error::TooLarge {
            method: estimate.method.name().into(),
            detail: format!(
                "{} needs about {:.3e} bytes (limit {:.3e} bytes)",
                estimate.detail, estimate.bytes, opts.budget.max_bytes
            ),
        });
    }
    let enum_opts = EnumerateOptions {
        marginals: opts.marginals,
        shard: opts.shard,
    };
    let elim_opts = EliminateOptions {
        heuristic: opts.heuristic,
        max_table_entries: (opts.budget.max_bytes / 8.0).max(1.0) as u64,
    };
    let mut out = Partition {
        log_z: f64::NAN,
        method: estimate.method,
        marginals: None,
        induced_width: None,
        states: None,
        estimate: estimate.clone(),
    };
    match (estimate.method, model) {
        (Method::Enumerate, Model::Lattice { lattice, beta }) => {
            let e = exact::enumerate_lattice(lattice, *beta, &enum_opts, observer)?;
            out.log_z = e.log_sum;
            out.marginals = e.marginals;
            out.states = Some(e.states);
        }
        (Method::Enumerate, Model::Factors(g)) => {
            let e = exact::enumerate_factor_graph(g, &enum_opts, observer)?;
            out.log_z = e.log_sum;
            out.marginals = e.marginals;
            out.states = Some(e.states);
        }
        (Method::Rbm, Model::Rbm(r)) => {
            let e = rbm_enumerate(r, opts.shard, observer)?;
            out.log_z = e.log_sum;
            out.states = Some(e.states);
        }
        (Method::Eliminate, Model::Lattice { lattice, beta }) => {
            // Planned once, here (the estimate was analytic), and used for Z and the marginals.
            let pw = lattice.to_pairwise()?;
            let plan = eliminate::plan_pairwise(&pw, opts.heuristic);
            let e = if opts.marginals {
                let (e, m) = eliminate::eliminate_pairwise_marginals_with_plan(
                    &pw, *beta, plan, &elim_opts,
                )?;
                out.marginals = Some(m);
                e
            } else {
                eliminate::eliminate_pairwise_with_plan(&pw, *beta, plan, &elim_opts)?
            };
            out.log_z = e.log_z;
            out.induced_width = Some(e.plan.induced_width);
        }
        (Method::Eliminate, Model::Factors(g)) => {
            let plan = match &estimate.plan {
                Some(p) => p.clone(),
                None => eliminate::plan_factor_graph(g, opts.heuristic),
            };
            let e = if opts.marginals {
                let (e, m) =
                    eliminate::eliminate_factor_graph_marginals_with_plan(g, plan, &elim_opts)?;
                out.marginals = Some(m);
                e
            } else {
                eliminate::eliminate_factor_graph_with_plan(g, plan, &elim_opts)?
            };
            out.log_z = e.log_z;
            out.induced_width = Some(e.plan.induced_width);
        }
        (Method::Transfer, Model::Lattice { lattice, beta }) => {
            out.log_z = transfer_log_partition(lattice, *beta)?;
        }
        (Method::Kaufman, Model::Lattice { lattice, beta }) => {
            out.log_z = kaufman_log_partition(
                lattice.width(),
                lattice.height(),
                lattice.coupling(),
                *beta,
            )?;
        }
        (m, _) => {
            return Err(Error::param(
                "method",
                format!("{} does not apply to this model", m.name()),
            ));
        }
    }
    // A safety net behind `check_log_weights`: no NaN or +inf leaves this function.
    let bad_marginal = out
        .marginals
        .as_ref()
        .is_some_and(|m| m.iter().any(|p| !p.is_finite()));
    if out.log_z.is_nan() || out.log_z == f64::INFINITY || bad_marginal {
        return Err(Error::InvalidModel(format!(
            "{} gave ln Z = {}{}: the log-weights overflowed",
            out.method.name(),
            out.log_z,
            if bad_marginal {
                " and a non-finite marginal"
            } else {
                ""
            }
        )));
    }
    Ok(out)
}
