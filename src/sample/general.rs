//! Sequential single-site Gibbs (heat bath) and Metropolis sampling of any [`EnergyModel`].
//!
//! One sweep visits the variables in order 0, 1, ..., n - 1 and updates each with the rule
//! below; the Boltzmann distribution p(s) ∝ exp(-beta E(s)) is stationary for every single-site
//! update, hence for the sweep. With spins s in {-1, +1} and Delta = E(s with s_i flipped) - E(s):
//!
//! * Gibbs (heat bath): flip with probability 1 / (1 + exp(beta Delta)), i.e. draw s_i from its
//!   conditional distribution given the others (Geman & Geman 1984).
//! * Metropolis: flip with probability min(1, exp(-beta Delta)) (Metropolis et al. 1953).
//!
//! For a [`crate::model::FactorGraph`] the energy is -sum_f ln phi_f, so beta = 1 samples the
//! distribution of the file; a zero table entry gives Delta = +inf, which is never accepted.
//!
//! # Hard constraints (zero table entries)
//! [`sample_factor_graph`] first repairs a start of zero probability (see [`repair_start`]).
//! Single-site moves cannot cross a constraint such as x_0 = x_1 (factor (1, 0, 0, 1)): no
//! single flip leaves (1, 1) or (0, 0). So variables tied by pairwise hard equalities or
//! inequalities are grouped into blocks ([`TiedBlocks`]) and each block is updated as a whole,
//! which is exact Gibbs (or Metropolis) on the block. Other hard constraints (for example a
//! ternary parity factor) can still pin a chain: [`ModelRun::frozen`] lists the variables that
//! never changed over the recorded sweeps, and a run in which no move at all was accepted is
//! refused ([`Error::InvalidModel`]) rather than reporting its start as marginals.

use rand::Rng;

use super::{LatticeUpdate, LocalRule, Start, stats};
use crate::error::{Error, Result};
use crate::model::{EnergyModel, FactorGraph, IsingLattice, Spin};
use crate::progress::{Control, Observer, Step};
use crate::rng::{self, EbmRng, uniform_f64};

/// The probability that a single-site update flips a spin whose flip changes the energy by
/// `delta`, at inverse temperature `beta` (see the module docs for the two rules).
///
/// Both rules satisfy detailed balance: p(flip | s) / p(flip back | s') = exp(-beta Delta).
#[inline]
pub fn flip_probability(rule: LocalRule, beta: f64, delta: f64) -> f64 {
    let x = beta * delta;
    match rule {
        LocalRule::Gibbs => {
            if x.is_nan() {
                0.0
            } else if x > 0.0 {
                let e = (-x).exp();
                e / (1.0 + e)
            } else {
                1.0 / (1.0 + x.exp())
            }
        }
        LocalRule::Metropolis => {
            if x <= 0.0 {
                1.0
            } else if x.is_nan() {
                0.0
            } else {
                (-x).exp()
            }
        }
    }
}

/// One sequential sweep (sites 0..n in order); returns the number of spins flipped.
pub fn sweep<M, R>(model: &M, beta: f64, rule: LocalRule, s: &mut [Spin], rng: &mut R) -> u64
where
    M: EnergyModel + ?Sized,
    R: Rng + ?Sized,
{
    debug_assert_eq!(s.len(), model.num_vars());
    let mut flips = 0;
    for i in 0..s.len() {
        let p = flip_probability(rule, beta, model.flip_delta(s, i));
        if uniform_f64(rng) < p {
            s[i] = -s[i];
            flips += 1;
        }
    }
    flips
}

/// How a sweep of a factor graph with [`TiedBlocks`] treats a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not tied to any other variable: a single-site move.
    Single,
    /// The smallest member of block `b`: the sweep moves the whole block when it reaches it.
    Lead(u32),
    /// A later member of a block: moved with its block's lead, skipped on its own.
    Member,
}

/// Variables of a factor graph tied together by pairwise hard constraints, moved as blocks.
///
/// A factor over two variables whose table is (a, 0, 0, d) with a, d > 0 forces x_i = x_j; one
/// whose table is (0, b, c, 0) with b, c > 0 forces x_i != x_j. Variables connected through
/// such factors form a block. While the ties hold, a block of k variables has exactly two
/// allowed states out of 2^k: its current one and the one with every member flipped; every
/// other state violates a tie and has probability 0. The block move proposes flipping the whole
/// block, with Delta = E(flipped) - E(current) summed over the factors that touch the block
/// (`E = -sum_f ln phi_f`), and accepts it with [`flip_probability`]: with the heat-bath rule
/// this draws the block from its exact conditional distribution given the other variables
/// (Gibbs on the block), with Metropolis it is a symmetric proposal accepted with
/// min(1, exp(-beta Delta)). Both leave p(x) ∝ exp(-beta E(x)) stationary.
#[derive(Debug, Clone)]
pub struct TiedBlocks {
    role: Vec<Role>,
    /// Members of block b, ascending: `members[member_start[b]..member_start[b + 1]]`.
    members: Vec<usize>,
    member_start: Vec<usize>,
    /// Factors touching block b, each with the mask of table-index bits that belong to the
    /// block's variables: `touching[touching_start[b]..touching_start[b + 1]]`.
    touching: Vec<(usize, usize)>,
    touching_start: Vec<usize>,
}

/// True when `factor` is a pairwise hard equality (a, 0, 0, d) or inequality (0, b, c, 0).
fn is_hard_tie(factor: &crate::model::Factor) -> bool {
    if factor.arity() != 2 {
        return false;
    }
    let t = factor.table();
    matches!(
        (t[0] > 0.0, t[1] > 0.0, t[2] > 0.0, t[3] > 0.0),
        (true, false, false, true) | (false, true, true, false)
    )
}

impl TiedBlocks {
    /// The blocks of `graph` (union-find over its hard-tie factors); variables outside every
    /// tie are single units.
    pub fn new(graph: &FactorGraph) -> Self {
        let n = graph.num_vars();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut v: usize) -> usize {
            while parent[v] != v {
                parent[v] = parent[parent[v]];
                v = parent[v];
            }
            v
        }
        for factor in graph.factors().iter().filter(|f| is_hard_tie(f)) {
            let (a, b) = (
                root(&mut parent, factor.scope()[0]),
                root(&mut parent, factor.scope()[1]),
            );
            // The smaller index becomes the root, so a block's root is its smallest member.
            parent[a.max(b)] = a.min(b);
        }
        let roots: Vec<usize> = (0..n).map(|v| root(&mut parent, v)).collect();
        let mut size = vec![0usize; n];
        for &r in &roots {
            size[r] += 1;
        }
        let mut role = vec![Role::Single; n];
        let mut block_of_root = vec![u32::MAX; n];
        let mut lead_of_block = Vec::new();
        for v in 0..n {
            let r = roots[v];
            if size[r] < 2 {
                continue;
            }
            if r == v {
                block_of_root[v] = lead_of_block.len() as u32;
                role[v] = Role::Lead(block_of_root[v]);
                lead_of_block.push(v);
            } else {
                role[v] = Role::Member;
            }
        }
        let blocks = lead_of_block.len();
        let mut members_of: Vec<Vec<usize>> = vec![Vec::new(); blocks];
        for v in 0..n {
            if size[roots[v]] >= 2 {
                members_of[block_of_root[roots[v]] as usize].push(v);
            }
        }
        let (mut members, mut member_start) = (Vec::new(), vec![0]);
        let (mut touching, mut touching_start) = (Vec::new(), vec![0]);
        for (b, vars) in members_of.iter().enumerate() {
            members.extend_from_slice(vars);
            member_start.push(members.len());
            let mut factors: Vec<usize> = vars
                .iter()
                .flat_map(|&v| graph.factors_of(v).iter().copied())
                .collect();
            factors.sort_unstable();
            factors.dedup();
            for f in factors {
                let factor = &graph.factors()[f];
                let arity = factor.arity();
                let mask = factor
                    .scope()
                    .iter()
                    .enumerate()
                    .filter(|&(_, &v)| block_of_root[roots[v]] == b as u32)
                    .map(|(pos, _)| 1usize << (arity - 1 - pos))
                    .fold(0, |m, bit| m | bit);
                touching.push((f, mask));
            }
            touching_start.push(touching.len());
        }
        TiedBlocks {
            role,
            members,
            member_start,
            touching,
            touching_start,
        }
    }

    /// Number of blocks of two or more variables.
    pub fn block_count(&self) -> usize {
        self.member_start.len() - 1
    }

    /// The variables of block `b`, ascending.
    pub fn block(&self, b: usize) -> &[usize] {
        &self.members[self.member_start[b]..self.member_start[b + 1]]
    }

    /// Moves per sweep: variables outside every block, plus one per block.
    pub fn moves_per_sweep(&self) -> u64 {
        self.role.iter().filter(|r| **r != Role::Member).count() as u64
    }

    /// E(s with block b flipped) - E(s).
    fn block_delta(&self, graph: &FactorGraph, b: usize, s: &[Spin]) -> f64 {
        let factors = graph.factors();
        let mut delta = 0.0;
        for &(f, mask) in &self.touching[self.touching_start[b]..self.touching_start[b + 1]] {
            let factor = &factors[f];
            let before = factor.index_of_spins(s);
            let log_table = factor.log_table();
            delta -= log_table[before ^ mask] - log_table[before];
        }
        delta
    }
}

/// One sequential sweep of a factor graph with its [`TiedBlocks`]: variables in order 0..n, a
/// single-site move for a variable outside every block, a move of the whole block at a block's
/// smallest member (later members are skipped). Returns the number of moves accepted. Without
/// blocks this is exactly [`sweep`] (same uniforms, same decisions).
pub fn block_sweep<R>(
    graph: &FactorGraph,
    blocks: &TiedBlocks,
    beta: f64,
    rule: LocalRule,
    s: &mut [Spin],
    rng: &mut R,
) -> u64
where
    R: Rng + ?Sized,
{
    debug_assert_eq!(s.len(), graph.num_vars());
    let mut accepted = 0;
    for i in 0..s.len() {
        let delta = match blocks.role[i] {
            Role::Single => graph.flip_delta(s, i),
            Role::Lead(b) => blocks.block_delta(graph, b as usize, s),
            Role::Member => continue,
        };
        if uniform_f64(rng) < flip_probability(rule, beta, delta) {
            match blocks.role[i] {
                Role::Lead(b) => {
                    for &v in blocks.block(b as usize) {
                        s[v] = -s[v];
                    }
                }
                _ => s[i] = -s[i],
            }
            accepted += 1;
        }
    }
    accepted
}

/// A sequential single-site chain on a lattice that the checkerboard does not cover (odd
/// periodic sides, per-site fields): [`sweep`] over the lattice's `flip_delta`, one generator.
#[derive(Debug, Clone)]
pub struct SequentialLattice {
    model: IsingLattice,
    rule: LocalRule,
    beta: f64,
    s: Vec<Spin>,
    rng: EbmRng,
}

impl SequentialLattice {
    /// A chain of `rule` on `model` at `beta`, started from `state`, with the stream of `seed`.
    pub fn new(
        model: &IsingLattice,
        rule: LocalRule,
        beta: f64,
        seed: u64,
        state: Vec<Spin>,
    ) -> Self {
        debug_assert_eq!(state.len(), model.num_sites());
        SequentialLattice {
            model: model.clone(),
            rule,
            beta,
            s: state,
            rng: rng::stream_for(seed, rng::Purpose::Chain, 0),
        }
    }
}

impl LatticeUpdate for SequentialLattice {
    fn sweep(&mut self) -> u64 {
        sweep(
            &self.model,
            self.beta,
            self.rule,
            &mut self.s,
            &mut self.rng,
        )
    }
    fn energy(&self) -> f64 {
        self.model.energy(&self.s)
    }
    fn magnetization(&self) -> i64 {
        self.s.iter().map(|&x| x as i64).sum()
    }
    fn state(&self) -> Vec<Spin> {
        self.s.clone()
    }
    fn updates_per_sweep(&self) -> u64 {
        self.s.len() as u64
    }
    fn boxed_clone(&self) -> Box<dyn LatticeUpdate> {
        Box::new(self.clone())
    }
}

/// Settings of a sequential run on a general model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelParams {
    /// Inverse temperature (1 reproduces a factor graph's own distribution).
    pub beta: f64,
    /// Gibbs or Metropolis.
    pub rule: LocalRule,
    /// Sweeps recorded after the burn-in.
    pub sweeps: u64,
    /// Sweeps discarded first.
    pub burn_in: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Initial configuration.
    pub start: Start,
}

/// Number of batches used for the batch-means error bars of the marginals.
pub const MARGINAL_BATCHES: usize = 32;

/// The outcome of [`sample_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRun {
    /// E(s) after every recorded sweep.
    pub energies: Vec<f64>,
    /// Estimated P(x_i = 1) (spin +1), averaged over the recorded sweeps.
    pub marginals: Vec<f64>,
    /// Batch-means standard errors of the marginals ([`MARGINAL_BATCHES`] contiguous batches;
    /// `None` with fewer recorded sweeps than batches).
    pub marginal_stderr: Option<Vec<f64>>,
    /// Moves attempted, burn-in included: single-site updates, and for a factor graph with
    /// [`TiedBlocks`] one move per block (see [`TiedBlocks::moves_per_sweep`]).
    pub updates: u64,
    /// Moves accepted (burn-in included): spins flipped, a block flip counting once.
    pub flips: u64,
    /// Variables whose value never changed over the recorded sweeps, ascending. Their
    /// marginals are 0 or 1 from the run alone; unless the model forces those values, the
    /// chain did not mix in them (hard constraints it cannot cross, or too few sweeps).
    pub frozen: Vec<usize>,
    /// Blocks of variables tied by pairwise hard constraints and moved together (0 for
    /// [`sample_model`]).
    pub tied_blocks: usize,
    /// The last configuration.
    pub state: Vec<Spin>,
}

/// Runs a sequential chain: `burn_in` discarded sweeps, then `sweeps` recorded ones.
///
/// The observer is told about progress now and then; if it answers `Break`, the run stops with
/// [`Error::Interrupted`]. The start must have positive probability (finite energy); for a
/// factor graph with zeros use [`sample_factor_graph`], which repairs the start first.
pub fn sample_model<M>(model: &M, params: &ModelParams, obs: &mut dyn Observer) -> Result<ModelRun>
where
    M: EnergyModel + ?Sized,
{
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    let s = super::initial_state(model.num_vars(), params.start, params.seed);
    if !model.energy(&s).is_finite() {
        return Err(Error::InvalidModel(
            "the initial configuration has zero probability; the samplers need a start of \
             positive probability (for a factor graph, sample_factor_graph repairs the start)"
                .into(),
        ));
    }
    let (beta, rule, n) = (params.beta, params.rule, model.num_vars() as u64);
    run_chain(
        model,
        params,
        s,
        |s, rng| sweep(model, beta, rule, s, rng),
        (n, 0),
        obs,
    )
}

/// [`sample_model`] for a factor graph whose tables may contain zeros (hard constraints): a
/// start of zero probability is first repaired with [`repair_start`], and variables tied by
/// pairwise hard equalities or inequalities are moved as blocks ([`TiedBlocks`],
/// [`block_sweep`]). Without such ties the run is the same as [`sample_model`]'s.
pub fn sample_factor_graph(
    graph: &FactorGraph,
    params: &ModelParams,
    obs: &mut dyn Observer,
) -> Result<ModelRun> {
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    let mut s = super::initial_state(graph.num_vars(), params.start, params.seed);
    repair_start(graph, &mut s)?;
    let blocks = TiedBlocks::new(graph);
    let (beta, rule) = (params.beta, params.rule);
    let units = (blocks.moves_per_sweep(), blocks.block_count());
    run_chain(
        graph,
        params,
        s,
        |s, rng| block_sweep(graph, &blocks, beta, rule, s, rng),
        units,
        obs,
    )
}

/// Number of factors of `graph` whose table entry at `s` is 0.
pub fn zero_factor_count(graph: &FactorGraph, s: &[Spin]) -> usize {
    graph
        .factors()
        .iter()
        .filter(|f| f.table()[f.index_of_spins(s)] == 0.0)
        .count()
}

/// Turns `s` into a configuration of positive probability, or explains why it could not.
///
/// Candidates, in order: `s` itself, all spins +1, all spins -1. Each is improved greedily:
/// sweep the variables in order and flip one whenever that strictly lowers the number of
/// zero-weight factors ([`zero_factor_count`]); stop when none is left or a sweep changes
/// nothing (at most as many flips as zero factors at the start, so this terminates). The first
/// candidate that reaches zero violated factors is written to `s` (`s` is left unchanged when
/// it already has positive probability). Deterministic: it uses no randomness.
///
/// Errors: [`Error::InvalidModel`] naming a factor (its index in the file and its variables)
/// still at weight 0 in the best candidate. That does not prove the model has no configuration
/// of positive probability: the greedy search is a heuristic.
pub fn repair_start(graph: &FactorGraph, s: &mut [Spin]) -> Result<()> {
    debug_assert_eq!(s.len(), graph.num_vars());
    let n = s.len();
    let zeros_of_var = |x: &[Spin], i: usize| {
        graph
            .factors_of(i)
            .iter()
            .filter(|&&f| {
                let factor = &graph.factors()[f];
                factor.table()[factor.index_of_spins(x)] == 0.0
            })
            .count()
    };
    let mut best: Option<(usize, Vec<Spin>)> = None;
    for candidate in [s.to_vec(), vec![1; n], vec![-1; n]] {
        let mut x = candidate;
        let mut zeros = zero_factor_count(graph, &x);
        while zeros > 0 {
            let mut improved = false;
            for i in 0..n {
                let before = zeros_of_var(&x, i);
                if before == 0 {
                    continue;
                }
                x[i] = -x[i];
                let after = zeros_of_var(&x, i);
                if after < before {
                    zeros -= before - after;
                    improved = true;
                } else {
                    x[i] = -x[i];
                }
            }
            if !improved {
                break;
            }
        }
        if zeros == 0 {
            s.copy_from_slice(&x);
            return Ok(());
        }
        if best.as_ref().is_none_or(|(z, _)| zeros < *z) {
            best = Some((zeros, x));
        }
    }
    let (zeros, x) = best.expect("three candidates");
    let (k, factor) = graph
        .factors()
        .iter()
        .enumerate()
        .find(|(_, f)| f.table()[f.index_of_spins(&x)] == 0.0)
        .expect("a violated factor");
    let bits: Vec<u8> = factor.scope().iter().map(|&v| (x[v] > 0) as u8).collect();
    Err(Error::InvalidModel(format!(
        "no start of positive probability found: after greedy repair from the random start, \
         all ones and all zeros, {zeros} factor(s) still have weight 0, e.g. factor {k} over \
         variables {:?} at values {bits:?}; the model may have no configuration of positive \
         probability",
        factor.scope()
    )))
}

/// The chain of [`sample_model`] from the start `s` (of positive probability): `move_sweep`
/// does one sweep and returns the moves it accepted; `(moves_per_sweep, tied_blocks)` describe
/// it. Fails when no move at all was accepted (the start would be reported as marginals).
fn run_chain<M, F>(
    model: &M,
    params: &ModelParams,
    mut s: Vec<Spin>,
    mut move_sweep: F,
    (moves_per_sweep, tied_blocks): (u64, usize),
    obs: &mut dyn Observer,
) -> Result<ModelRun>
where
    M: EnergyModel + ?Sized,
    F: FnMut(&mut [Spin], &mut EbmRng) -> u64,
{
    let n = model.num_vars();
    let mut rng = rng::stream_for(params.seed, rng::Purpose::Chain, 0);
    let total = params.burn_in + params.sweeps;
    let report_every = (total / 200).max(1);
    let batches = MARGINAL_BATCHES as u64;
    let batch_len = params.sweeps / batches;
    let mut ones = vec![0u64; n];
    let mut batch_ones = vec![0u64; n * MARGINAL_BATCHES];
    let mut energies = super::series_buffers(params.sweeps, 1)?
        .pop()
        .expect("one buffer");
    let mut flips = 0;
    for t in 0..total {
        flips += move_sweep(&mut s, &mut rng);
        if t >= params.burn_in {
            let k = t - params.burn_in;
            energies.push(model.energy(&s));
            for (c, &x) in ones.iter_mut().zip(&s) {
                *c += (x > 0) as u64;
            }
            if batch_len > 0 && k < batch_len * batches {
                let b = (k / batch_len) as usize;
                for (c, &x) in batch_ones[b * n..(b + 1) * n].iter_mut().zip(&s) {
                    *c += (x > 0) as u64;
                }
            }
        }
        if (t + 1) % report_every == 0 || t + 1 == total {
            let step = Step {
                done: t + 1,
                total,
                metric: energies.last().copied(),
            };
            if obs.on_step(&step) == Control::Break {
                return Err(Error::Interrupted);
            }
        }
    }
    if flips == 0 && n > 0 {
        return Err(Error::InvalidModel(format!(
            "the chain did not move: no move was accepted in {total} sweeps of {n} variables, \
             so every variable kept its starting value and no marginal can be estimated. Hard \
             constraints (zero table entries) that neither single-variable moves nor moves of \
             variables tied by pairwise equalities can cross pin it, or beta = {} is too large \
             for any move to be accepted",
            params.beta
        )));
    }
    let frozen = ones
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == 0 || c == params.sweeps)
        .map(|(i, _)| i)
        .collect();
    let recorded = params.sweeps as f64;
    let marginals = ones.iter().map(|&c| c as f64 / recorded).collect();
    let marginal_stderr = (batch_len > 0).then(|| {
        (0..n)
            .map(|i| {
                let means: Vec<f64> = (0..MARGINAL_BATCHES)
                    .map(|b| batch_ones[b * n + i] as f64 / batch_len as f64)
                    .collect();
                let m = stats::mean(&means);
                let var = means.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
                    / (MARGINAL_BATCHES - 1) as f64;
                (var / MARGINAL_BATCHES as f64).sqrt()
            })
            .collect()
    });
    Ok(ModelRun {
        energies,
        marginals,
        marginal_stderr,
        updates: total.saturating_mul(moves_per_sweep),
        flips,
        frozen,
        tied_blocks,
        state: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_probabilities_satisfy_detailed_balance() {
        for rule in [LocalRule::Gibbs, LocalRule::Metropolis] {
            for &d in &[-3.0, -0.5, 0.0, 0.25, 2.0, 800.0] {
                let beta = 0.7;
                let forward = flip_probability(rule, beta, d);
                let backward = flip_probability(rule, beta, -d);
                assert!((0.0..=1.0).contains(&forward));
                // p(s) P(s -> s') = p(s') P(s' -> s) with p(s') / p(s) = exp(-beta d).
                let lhs = forward;
                let rhs = (-beta * d).exp() * backward;
                assert!((lhs - rhs).abs() <= 1e-12 * lhs.max(rhs), "{rule:?} {d}");
            }
            assert_eq!(flip_probability(rule, 1.0, f64::INFINITY), 0.0);
        }
    }
}
