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
use crate::model::Spin;

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

#[cfg(test)]
mod tests {
    use super::*;

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
