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
//! Beyond that, single-site samplers are **not ergodic** when zeros disconnect the states of
//! positive probability under single flips: with x_0 = x_1 enforced by a factor (1, 0, 0, 1), no
//! single flip leaves (1, 1) or (0, 0), so the chain stays in the component it started in and
//! its marginals are those of that component, not of the model. A run that never flips a spin
//! (`flips == 0`) is the visible symptom; such models need moves of several variables at once.

use rand::Rng;

use super::{LocalRule, Start, stats};
use crate::error::{Error, Result};
use crate::model::{EnergyModel, FactorGraph, Spin};
use crate::progress::{Control, Observer, Step};
use crate::rng::{self, uniform_f64};

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
    /// Single-site updates attempted (burn-in included).
    pub updates: u64,
    /// Spins flipped (burn-in included).
    pub flips: u64,
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
    run_chain(model, params, s, obs)
}

/// [`sample_model`] for a factor graph whose tables may contain zeros (hard constraints): a
/// start of zero probability is first repaired with [`repair_start`]. Note the ergodicity limit
/// of single-site samplers with hard constraints (module docs).
pub fn sample_factor_graph(
    graph: &FactorGraph,
    params: &ModelParams,
    obs: &mut dyn Observer,
) -> Result<ModelRun> {
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    let mut s = super::initial_state(graph.num_vars(), params.start, params.seed);
    repair_start(graph, &mut s)?;
    run_chain(graph, params, s, obs)
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

/// The chain of [`sample_model`] from the start `s` (of positive probability).
fn run_chain<M>(
    model: &M,
    params: &ModelParams,
    mut s: Vec<Spin>,
    obs: &mut dyn Observer,
) -> Result<ModelRun>
where
    M: EnergyModel + ?Sized,
{
    let n = model.num_vars();
    let mut rng = rng::from_seed(params.seed);
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
        flips += sweep(model, params.beta, params.rule, &mut s, &mut rng);
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
        updates: total.saturating_mul(n as u64),
        flips,
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
