//! Iterated conditional modes (Besag, "On the statistical analysis of dirty pictures", JRSS B
//! 1986) in checkerboard order.
//!
//! A sweep sets every pixel with `(row + col)` even, then every pixel with `(row + col)` odd, to
//! the sign of its local field `f_i = beta * sum_{j~i} s_j + eta * x_i - h` (a pixel whose field
//! is exactly 0 keeps its value). Pixels of one colour are not neighbours, so each half-sweep
//! minimises the energy over all of them at once and the energy never increases; every change
//! lowers it by `2 |f_i| > 0`, so the iteration stops after finitely many sweeps.

use super::GridEnergy;
use super::checkerboard::{IcmRule, Padded, icm_half_sweep};
use crate::model::{EnergyModel, Spin};

/// ICM as a stepping machine (for callers that watch each sweep).
#[derive(Debug, Clone)]
pub struct Icm<'a> {
    energy: GridEnergy<'a>,
    rule: IcmRule,
    state: Padded,
}

impl<'a> Icm<'a> {
    /// Starts from labelling `init` (row-major, +-1, the size of the grid).
    pub fn new(energy: &GridEnergy<'a>, init: &[Spin]) -> Self {
        assert_eq!(
            init.len(),
            energy.len(),
            "initial labelling has the wrong length"
        );
        Icm {
            energy: *energy,
            rule: IcmRule::new(energy),
            state: Padded::new(energy.width(), energy.height(), init),
        }
    }

    /// Updates the pixels of colour `colour` (0: `row + col` even, 1: odd); returns how many
    /// changed.
    pub fn half_sweep(&mut self, colour: usize) -> u64 {
        icm_half_sweep(
            &mut self.state,
            self.energy.evidence(),
            &self.rule,
            colour & 1,
        )
    }

    /// One sweep (colour 0 then colour 1); returns how many pixels changed.
    pub fn sweep(&mut self) -> u64 {
        self.half_sweep(0) + self.half_sweep(1)
    }

    /// The current labelling, row-major.
    pub fn labels(&self) -> Vec<Spin> {
        self.state.labels()
    }
}

/// What [`icm`] returns.
#[derive(Debug, Clone)]
pub struct IcmOutcome {
    /// The final labelling, row-major.
    pub labels: Vec<Spin>,
    /// Sweeps run, including the last one (which changed nothing unless `max_sweeps` stopped it).
    pub sweeps: u64,
    /// True when the last sweep changed nothing (a local minimum under single flips).
    pub converged: bool,
}

/// Runs ICM from `init` until a sweep changes nothing, or for at most `max_sweeps` sweeps.
pub fn icm(energy: &GridEnergy<'_>, init: &[Spin], max_sweeps: u64) -> IcmOutcome {
    let mut machine = Icm::new(energy, init);
    let mut sweeps = 0;
    let mut converged = false;
    while sweeps < max_sweeps {
        sweeps += 1;
        if machine.sweep() == 0 {
            converged = true;
            break;
        }
    }
    IcmOutcome {
        labels: machine.labels(),
        sweeps,
        converged,
    }
}

/// ICM for any model with single-flip energy differences: sweeps visit the sites in `order`
/// (each index once) and flip site `i` when that lowers the energy
/// (`flip_delta(s, i) < 0`; a tie keeps the spin), until a sweep changes nothing or
/// `max_sweeps` sweeps have run. Each flip lowers E, so the result is a local minimum under
/// single flips when `converged`.
///
/// On a [`GridEnergy`] with the checkerboard order (every pixel with `row + col` even, then
/// every odd one) this gives exactly the labelling of the fast [`icm`].
pub fn icm_model_in_order<M: EnergyModel + ?Sized>(
    model: &M,
    init: &[Spin],
    order: &[usize],
    max_sweeps: u64,
) -> IcmOutcome {
    assert_eq!(
        init.len(),
        model.num_vars(),
        "initial labelling has the wrong length"
    );
    let mut labels = init.to_vec();
    let mut sweeps = 0;
    let mut converged = false;
    while sweeps < max_sweeps {
        sweeps += 1;
        let mut changed = 0u64;
        for &i in order {
            if model.flip_delta(&labels, i) < 0.0 {
                labels[i] = -labels[i];
                changed += 1;
            }
        }
        if changed == 0 {
            converged = true;
            break;
        }
    }
    IcmOutcome {
        labels,
        sweeps,
        converged,
    }
}

/// [`icm_model_in_order`] visiting the sites in index order 0, 1, ..., n-1.
pub fn icm_model<M: EnergyModel + ?Sized>(model: &M, init: &[Spin], max_sweeps: u64) -> IcmOutcome {
    let order: Vec<usize> = (0..model.num_vars()).collect();
    icm_model_in_order(model, init, &order, max_sweeps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PairwiseMrf;

    /// The checkerboard order of a `w x h` grid: colour 0 (`row + col` even), then colour 1.
    fn checkerboard_order(w: usize, h: usize) -> Vec<usize> {
        (0..2)
            .flat_map(|colour| (0..w * h).filter(move |k| (k / w + k % w) % 2 == colour))
            .collect()
    }

    #[test]
    fn generic_icm_in_checkerboard_order_matches_the_grid_fast_path() {
        let (w, h) = (13, 7);
        let x: Vec<Spin> = (0..w * h)
            .map(|k| if (k * 37 + k / 5) % 3 == 0 { -1 } else { 1 })
            .collect();
        let order = checkerboard_order(w, h);
        for &(beta, eta, field) in &[(1.0, 2.1, 0.0), (0.8, 0.5, 0.3), (-0.6, 0.4, 0.1)] {
            let e = GridEnergy::new(w, h, beta, eta, field, &x).unwrap();
            let fast = icm(&e, &x, 50);
            let general = icm_model_in_order(&e, &x, &order, 50);
            assert_eq!(general.labels, fast.labels, "{beta} {eta} {field}");
            assert_eq!(
                (general.sweeps, general.converged),
                (fast.sweeps, fast.converged)
            );
        }
    }

    #[test]
    fn generic_icm_ends_at_a_single_flip_minimum_no_worse_than_its_start() {
        // A frustrated random pairwise model of 10 spins.
        let n = 10;
        let fields: Vec<f64> = (0..n).map(|i| ((i * 7 % 5) as f64 - 2.0) * 0.3).collect();
        let mut couplings = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if (i * 3 + j) % 4 == 0 {
                    couplings.push((i, j, (((i * j) % 7) as f64 - 3.0) * 0.4));
                }
            }
        }
        let model = PairwiseMrf::new(fields, &couplings).unwrap();
        let init: Vec<Spin> = (0..n).map(|i| if i % 3 == 0 { 1 } else { -1 }).collect();
        let out = icm_model(&model, &init, 100);
        assert!(out.converged);
        assert!(model.energy(&out.labels) <= model.energy(&init));
        for i in 0..n {
            assert!(
                model.flip_delta(&out.labels, i) >= 0.0,
                "site {i} can still improve"
            );
        }
        let best = crate::infer::exact::brute_force_map(&model).unwrap();
        assert!(model.energy(&out.labels) >= best.energy - 1e-12);
    }

    /// Sequential ICM over the same checkerboard order, through the generic local field.
    fn reference_sweep(e: &GridEnergy<'_>, s: &mut [Spin]) {
        let (w, h) = (e.width(), e.height());
        for colour in 0..2 {
            let old = s.to_vec();
            for r in 0..h {
                for c in 0..w {
                    if (r + c) % 2 == colour {
                        let f = e.local_field(&old, r * w + c);
                        if f > 0.0 {
                            s[r * w + c] = 1;
                        } else if f < 0.0 {
                            s[r * w + c] = -1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn checkerboard_kernel_matches_the_generic_local_field() {
        let (w, h) = (13, 7);
        let x: Vec<Spin> = (0..w * h)
            .map(|k| if (k * 37 + k / 5) % 3 == 0 { -1 } else { 1 })
            .collect();
        for &(beta, eta, field) in &[(1.0, 2.1, 0.0), (0.8, 0.5, 0.3), (-0.6, 0.4, 0.1)] {
            let e = GridEnergy::new(w, h, beta, eta, field, &x).unwrap();
            let mut reference = x.clone();
            let mut machine = Icm::new(&e, &x);
            for _ in 0..5 {
                reference_sweep(&e, &mut reference);
                machine.sweep();
                assert_eq!(machine.labels(), reference, "{beta} {eta} {field}");
            }
        }
    }
}
