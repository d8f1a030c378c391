//! Posterior sampling at temperature 1 and the marginal posterior mode (Geman & Geman 1984).
//!
//! The posterior is `p(s | x) proportional to exp(-E(s; x))`. Checkerboard heat-bath sweeps
//! (each pixel of one colour set to +1 with probability `sigmoid(2 f_i)`,
//! `f_i = beta * sum_{j~i} s_j + eta * x_i - h`) run from `init`; after `burn_in` sweeps, the
//! state after each of the next `sweeps` sweeps is recorded. The estimate sets each pixel to its
//! majority value over the recorded states (the marginal posterior mode; a tie keeps the
//! evidence `x_i`), and the marginals are the recorded fractions of +1. Row `r` draws from its own
//! stream `rng::stream_for(seed, Purpose::DenoiseGibbs, r)`, so the result does not depend on the thread count.

use rayon::prelude::*;

use super::GridEnergy;
use super::anneal::row_streams;
use super::checkerboard::{HeatBathTable, Padded, heat_bath_half_sweep};
use crate::error::{Error, Result};
use crate::model::Spin;
use crate::progress::{Observer, report_or_interrupt};

/// Settings of [`gibbs_marginal_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GibbsParams {
    /// Sweeps discarded before recording.
    pub burn_in: u64,
    /// Recorded sweeps (at least 1).
    pub sweeps: u64,
    /// Seed of the per-row streams.
    pub seed: u64,
}

impl Default for GibbsParams {
    fn default() -> Self {
        GibbsParams {
            burn_in: 20,
            sweeps: 200,
            seed: crate::rng::DEFAULT_SEED,
        }
    }
}

/// What [`gibbs_marginal_mode`] returns.
#[derive(Debug, Clone)]
pub struct GibbsOutcome {
    /// The marginal posterior mode, row-major.
    pub labels: Vec<Spin>,
    /// Estimated `P(s_i = +1 | x)` per pixel: the fraction of recorded sweeps with +1.
    pub marginals: Vec<f64>,
    /// Sweeps run in total (burn-in plus recorded).
    pub sweeps: u64,
}

/// Samples the posterior from `init` and returns the marginal mode and marginals; reports each
/// sweep to `observer`. Returns `Error::Interrupted` if the observer asks to stop.
pub fn gibbs_marginal_mode(
    energy: &GridEnergy<'_>,
    init: &[Spin],
    params: &GibbsParams,
    observer: &mut dyn Observer,
) -> Result<GibbsOutcome> {
    if params.sweeps == 0 {
        return Err(Error::param("sweeps", "must be at least 1"));
    }
    if params.sweeps > u32::MAX as u64 {
        return Err(Error::param("sweeps", "must be below 2^32"));
    }
    if params.burn_in > u32::MAX as u64 {
        return Err(Error::param("burn-in", "must be below 2^32"));
    }
    assert_eq!(
        init.len(),
        energy.len(),
        "initial labelling has the wrong length"
    );
    let (w, h) = (energy.width(), energy.height());
    let mut state = Padded::new(w, h, init);
    let mut rngs = row_streams(params.seed, crate::rng::Purpose::DenoiseGibbs, h);
    let table = HeatBathTable::new(energy, 1.0);
    let mut counts = vec![0u32; w * h];
    let total = params.burn_in + params.sweeps;
    for k in 0..total {
        for colour in 0..2 {
            heat_bath_half_sweep(&mut state, energy.evidence(), &table, &mut rngs, colour);
        }
        if k >= params.burn_in {
            counts.par_chunks_mut(w).enumerate().for_each(|(r, row)| {
                for (n, &s) in row.iter_mut().zip(state.row(r)) {
                    *n += (s > 0) as u32;
                }
            });
        }
        report_or_interrupt(observer, k + 1, total)?;
    }
    let n = params.sweeps;
    let labels = counts
        .iter()
        .zip(energy.evidence())
        .map(|(&c, &x)| match (2 * c as u64).cmp(&n) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => x,
        })
        .collect();
    let marginals = counts.iter().map(|&c| c as f64 / n as f64).collect();
    Ok(GibbsOutcome {
        labels,
        marginals,
        sweeps: total,
    })
}
