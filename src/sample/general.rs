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

use rand::Rng;

use super::{LocalRule, Start, stats};
use crate::error::{Error, Result};
use crate::model::{EnergyModel, Spin};
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
/// [`Error::Interrupted`].
pub fn sample_model<M>(model: &M, params: &ModelParams, obs: &mut dyn Observer) -> Result<ModelRun>
where
    M: EnergyModel + ?Sized,
{
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    let n = model.num_vars();
    let mut rng = rng::from_seed(params.seed);
    let mut s = super::initial_state(n, params.start, params.seed);
    if !model.energy(&s).is_finite() {
        return Err(Error::InvalidModel(
            "the initial configuration has zero probability (a table entry is 0); \
             the samplers need a start of positive probability"
                .into(),
        ));
    }
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
