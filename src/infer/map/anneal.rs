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
use super::icm::{icm, icm_model};
use crate::error::{Error, Result, check_finite};
use crate::logspace::sigmoid;
use crate::model::{EnergyModel, Spin};
use crate::progress::{Control, Observer, Step};
use crate::rng::{EbmRng, Purpose, stream_for, uniform_f64};

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

/// Simulated annealing for any model with single-flip energy differences, then an ICM quench
/// ([`icm_model`]).
///
/// Sweep `k` runs at the temperature `T_k` of [`AnnealParams::temperature`] and visits the sites
/// in index order; site `i` flips with the heat-bath probability
/// `1 / (1 + exp(d_i / T_k)) = sigmoid(-d_i / T_k)`, `d_i = flip_delta(s, i)` (so a flip to a
/// zero-probability state, `d_i = +inf`, never happens; a NaN delta never flips). One generator,
/// `rng::stream_for(seed, Purpose::ModelAnneal, 0)`, drives the whole run, so the result depends on the seed only. The
/// grid fast path is [`anneal`] (parallel checkerboard, one stream per row: another sequence of
/// draws, hence another but equally distributed result).
pub fn anneal_model<M: EnergyModel + ?Sized>(
    model: &M,
    init: &[Spin],
    params: &AnnealParams,
    observer: &mut dyn Observer,
) -> Result<AnnealOutcome> {
    params.validate()?;
    assert_eq!(
        init.len(),
        model.num_vars(),
        "initial labelling has the wrong length"
    );
    let mut labels = init.to_vec();
    let mut rng = stream_for(params.seed, Purpose::ModelAnneal, 0);
    for k in 0..params.sweeps {
        let t = params.temperature(k);
        for i in 0..labels.len() {
            let p_flip = sigmoid(-model.flip_delta(&labels, i) / t);
            if uniform_f64(&mut rng) < p_flip {
                labels[i] = -labels[i];
            }
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
    let quench = icm_model(model, &labels, u64::MAX);
    Ok(AnnealOutcome {
        labels: quench.labels,
        sweeps: params.sweeps,
        quench_sweeps: quench.sweeps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::exact::brute_force_map;
    use crate::model::{FactorGraph, PairwiseMrf};
    use crate::progress::Silent;

    /// Annealing is a heuristic: each run ends at a single-flip local minimum (the ICM quench),
    /// and the best of 8 runs (seeds 0..8, 500 sweeps from T = 4 to 0.02) of small frustrated
    /// models is the brute-force minimum. On the grid energy the general version and the fast
    /// path both reach the exact minimum found by graph cut. Deterministic (fixed seeds).
    #[test]
    fn general_annealing_finds_the_brute_force_minimum() {
        let n = 12;
        let params = AnnealParams {
            sweeps: 500,
            t_start: 4.0,
            t_end: 0.02,
            seed: 5,
        };
        for seed in 0..3u64 {
            let fields: Vec<f64> = (0..n)
                .map(|i| (((i as u64 * 7 + seed * 3) % 5) as f64 - 2.0) * 0.3)
                .collect();
            let mut couplings = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    if (i * 3 + j + seed as usize).is_multiple_of(3) {
                        let c = ((i * j + seed as usize) % 7) as f64 - 3.0;
                        couplings.push((i, j, c * 0.4));
                    }
                }
            }
            let model = PairwiseMrf::new(fields, &couplings).unwrap();
            let init = vec![1; n];
            let mut found = f64::INFINITY;
            for run in 0..8 {
                let p = AnnealParams {
                    seed: run,
                    ..params
                };
                let out = anneal_model(&model, &init, &p, &mut Silent).unwrap();
                for i in 0..n {
                    assert!(
                        model.flip_delta(&out.labels, i) >= 0.0,
                        "not a local minimum"
                    );
                }
                found = found.min(model.energy(&out.labels));
            }
            let best = brute_force_map(&model).unwrap();
            assert!(
                (found - best.energy).abs() < 1e-9,
                "model {seed}: {found} vs {}",
                best.energy
            );
        }
        let (w, h) = (6, 5);
        let x: Vec<Spin> = (0..w * h)
            .map(|k| if (k * 13 + k / 4) % 3 == 0 { -1 } else { 1 })
            .collect();
        let e = GridEnergy::new(w, h, 1.0, 0.8, 0.1, &x).unwrap();
        let exact = e.energy(&super::super::mincut::graph_cut(&e).unwrap());
        let general = anneal_model(&e, &x, &params, &mut Silent).unwrap();
        let fast = anneal(&e, &x, &params, &mut Silent).unwrap();
        assert_eq!(e.energy(&general.labels), exact);
        assert_eq!(e.energy(&fast.labels), exact);
    }

    /// Zero-probability states (a zero table entry: flip delta +inf) are never entered.
    #[test]
    fn general_annealing_respects_hard_constraints() {
        // x0 = x1 by the table (1 0 0 2); a unary (1 3) on x1.
        let g = FactorGraph::new(
            2,
            vec![
                crate::model::Factor::new(vec![0, 1], vec![1.0, 0.0, 0.0, 2.0]).unwrap(),
                crate::model::Factor::new(vec![1], vec![1.0, 3.0]).unwrap(),
            ],
        )
        .unwrap();
        let params = AnnealParams {
            sweeps: 50,
            ..AnnealParams::default()
        };
        let out = anneal_model(&g, &[-1, -1], &params, &mut Silent).unwrap();
        assert_eq!(out.labels[0], out.labels[1]);
        assert!(g.energy(&out.labels).is_finite());
    }

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
