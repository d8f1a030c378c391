//! Simulated annealing (Kirkpatrick, Gelatt & Vecchi 1983; Geman & Geman 1984) with checkerboard
//! heat-bath sweeps and a geometric temperature schedule, followed by an ICM quench.
//!
//! Sweep `k` of `n` (0-based) runs at `T_k = t_start * (t_end / t_start)^(k / (n - 1))` (a single
//! sweep runs at `t_start`): each half-sweep sets every pixel of one colour to +1 with probability
//! `sigmoid(2 f_i / T_k)`, `f_i = beta * sum_{j~i} s_j + eta * x_i - h`. Row `r` draws from its
//! own stream `rng::stream_for(seed, Purpose::DenoiseAnneal, r)`, so the result does not depend on the thread count. The
//! final ICM quench ends at a local minimum under single flips.

use super::GridEnergy;
use super::checkerboard::{HeatBathTable, Padded, heat_bath_half_sweep};
use super::icm::icm;
use crate::error::{Error, Result, check_finite};
use crate::model::Spin;
use crate::progress::{Control, Observer, Step};
use crate::rng::{EbmRng, Purpose, stream_for};

/// Settings of [`anneal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnealParams {
    /// Number of heat-bath sweeps (at least 1).
    pub sweeps: u64,
    /// Temperature of the first sweep (> 0).
    pub t_start: f64,
    /// Temperature of the last sweep (> 0).
    pub t_end: f64,
    /// Seed of the per-row streams.
    pub seed: u64,
}

impl Default for AnnealParams {
    fn default() -> Self {
        AnnealParams {
            sweeps: 200,
            t_start: 4.0,
            t_end: 0.05,
            seed: crate::rng::DEFAULT_SEED,
        }
    }
}

impl AnnealParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.sweeps == 0 {
            return Err(Error::param("sweeps", "must be at least 1"));
        }
        for (name, t) in [("t-start", self.t_start), ("t-end", self.t_end)] {
            check_finite(name, t)?;
            if t <= 0.0 {
                return Err(Error::param(name, format!("must be > 0, got {t}")));
            }
        }
        Ok(())
    }

    /// The temperature of sweep `k` (0-based).
    pub fn temperature(&self, k: u64) -> f64 {
        if self.sweeps <= 1 {
            return self.t_start;
        }
        let frac = k as f64 / (self.sweeps - 1) as f64;
        self.t_start * (self.t_end / self.t_start).powf(frac)
    }
}

/// What [`anneal`] returns.
#[derive(Debug, Clone)]
pub struct AnnealOutcome {
    /// The final labelling, row-major.
    pub labels: Vec<Spin>,
    /// Heat-bath sweeps run.
    pub sweeps: u64,
    /// ICM sweeps of the quench.
    pub quench_sweeps: u64,
}

/// Independent generators, one per row.
pub(crate) fn row_streams(seed: u64, purpose: Purpose, rows: usize) -> Vec<EbmRng> {
    (0..rows as u64)
        .map(|r| stream_for(seed, purpose, r))
        .collect()
}

/// Anneals from `init`; reports each sweep to `observer` (metric: the temperature). Returns
/// `Error::Interrupted` if the observer asks to stop.
pub fn anneal(
    energy: &GridEnergy<'_>,
    init: &[Spin],
    params: &AnnealParams,
    observer: &mut dyn Observer,
) -> Result<AnnealOutcome> {
    params.validate()?;
    assert_eq!(
        init.len(),
        energy.len(),
        "initial labelling has the wrong length"
    );
    let mut state = Padded::new(energy.width(), energy.height(), init);
    let mut rngs = row_streams(params.seed, Purpose::DenoiseAnneal, energy.height());
    for k in 0..params.sweeps {
        let t = params.temperature(k);
        let table = HeatBathTable::new(energy, t);
        for colour in 0..2 {
            heat_bath_half_sweep(&mut state, energy.evidence(), &table, &mut rngs, colour);
        }
        let step = Step {
            done: k + 1,
            total: params.sweeps,
            metric: Some(t),
        };
        if observer.on_step(&step) == Control::Break {
            return Err(Error::Interrupted);
        }
    }
    let quench = icm(energy, &state.labels(), u64::MAX);
    Ok(AnnealOutcome {
        labels: quench.labels,
        sweeps: params.sweeps,
        quench_sweeps: quench.sweeps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_geometric_from_start_to_end() {
        let p = AnnealParams {
            sweeps: 5,
            t_start: 8.0,
            t_end: 0.5,
            seed: 1,
        };
        let t: Vec<f64> = (0..5).map(|k| p.temperature(k)).collect();
        for k in 0..4 {
            assert!((t[k + 1] / t[k] - 0.5).abs() < 1e-12, "{t:?}");
        }
        assert!((t[0] - 8.0).abs() < 1e-12 && (t[4] - 0.5).abs() < 1e-12);
        assert!(AnnealParams { sweeps: 0, ..p }.validate().is_err());
        assert!(AnnealParams { t_end: 0.0, ..p }.validate().is_err());
        assert!(
            AnnealParams {
                t_start: f64::NAN,
                ..p
            }
            .validate()
            .is_err()
        );
    }
}
