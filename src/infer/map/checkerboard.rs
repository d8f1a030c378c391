//! Checkerboard half-sweeps over a zero-padded copy of the grid, shared by ICM, annealing and
//! Gibbs sampling.
//!
//! Pixel `(r, c)` has colour `(r + c) mod 2`; pixels of one colour have no neighbours of the same
//! colour, so all of them can be updated at once from the other colour. The state is stored with
//! a border of zeros (`(w + 2) x (h + 2)` cells), which makes the open boundary free of branches:
//! a missing neighbour contributes 0 to the neighbour sum. A half-sweep reads `cur` and writes
//! the complete next state into `next` row by row (rayon over rows), so no row is read while
//! another thread writes it.

use rand::Rng;
use rayon::prelude::*;

use super::GridEnergy;
use crate::model::Spin;
use crate::rng::EbmRng;

/// Rows are handed to rayon in tasks of at least this many cells, so that small images are not
/// split into pieces cheaper than a thread hand-over.
const MIN_TASK_CELLS: usize = 1 << 14;

/// A zero-padded grid state and its double buffer.
#[derive(Debug, Clone)]
pub(crate) struct Padded {
    pub width: usize,
    pub height: usize,
    cur: Vec<i8>,
    next: Vec<i8>,
}

impl Padded {
    /// The padded copy of `s` (row-major, `width x height`).
    pub fn new(width: usize, height: usize, s: &[Spin]) -> Self {
        let pw = width + 2;
        let mut cur = vec![0i8; pw * (height + 2)];
        for (r, row) in s.chunks_exact(width).enumerate() {
            cur[(r + 1) * pw + 1..(r + 1) * pw + 1 + width].copy_from_slice(row);
        }
        let next = cur.clone();
        Padded {
            width,
            height,
            cur,
            next,
        }
    }

    /// The current state, unpadded, row-major.
    pub fn labels(&self) -> Vec<Spin> {
        let pw = self.width + 2;
        let mut out = Vec::with_capacity(self.width * self.height);
        for r in 0..self.height {
            out.extend_from_slice(&self.cur[(r + 1) * pw + 1..(r + 1) * pw + 1 + self.width]);
        }
        out
    }

    /// Interior row `r` (0-based) of the current state.
    pub fn row(&self, r: usize) -> &[Spin] {
        let pw = self.width + 2;
        &self.cur[(r + 1) * pw + 1..(r + 1) * pw + 1 + self.width]
    }

    /// Runs `update(r, up, mid, down, out)` for every interior row `r` in parallel, where `up`,
    /// `mid`, `down` are padded rows `r - 1, r, r + 1` of the current state and `out` is padded
    /// row `r` of the next state; then swaps the buffers. Returns the sum of the results.
    fn half_sweep<F>(&mut self, update: F) -> u64
    where
        F: Fn(usize, &[i8], &[i8], &[i8], &mut [i8]) -> u64 + Sync,
    {
        let pw = self.width + 2;
        let h = self.height;
        let cur = &self.cur;
        let total = self.next[pw..pw * (h + 1)]
            .par_chunks_mut(pw)
            .with_min_len(MIN_TASK_CELLS / pw + 1)
            .enumerate()
            .map(|(r, out)| {
                let up = &cur[r * pw..(r + 1) * pw];
                let mid = &cur[(r + 1) * pw..(r + 2) * pw];
                let down = &cur[(r + 2) * pw..(r + 3) * pw];
                update(r, up, mid, down, out)
            })
            .sum();
        std::mem::swap(&mut self.cur, &mut self.next);
        total
    }

    /// Like [`Padded::half_sweep`], with one generator per row handed to `update`.
    fn half_sweep_rng<F>(&mut self, rngs: &mut [EbmRng], update: F)
    where
        F: Fn(usize, &[i8], &[i8], &[i8], &mut [i8], &mut EbmRng) + Sync,
    {
        let pw = self.width + 2;
        let h = self.height;
        let cur = &self.cur;
        self.next[pw..pw * (h + 1)]
            .par_chunks_mut(pw)
            .zip(rngs.par_iter_mut())
            .with_min_len(MIN_TASK_CELLS / pw + 1)
            .enumerate()
            .for_each(|(r, (out, rng))| {
                let up = &cur[r * pw..(r + 1) * pw];
                let mid = &cur[(r + 1) * pw..(r + 2) * pw];
                let down = &cur[(r + 2) * pw..(r + 3) * pw];
                update(r, up, mid, down, out, rng)
            });
        std::mem::swap(&mut self.cur, &mut self.next);
    }
}

/// The ICM decision for a pixel, as integer thresholds.
///
/// The local field is `f = beta * n + eta * x - h` with `n` the neighbour sum (-4..=4). With
/// `m = sign(beta) * n`, `f` does not decrease in `m`, so for each evidence value `x` the new
/// spin is +1 when `m >= lo[x]`, -1 when `m <= hi[x]`, and unchanged when `f = 0` (between).
/// The thresholds are found by evaluating `f` in f64 at the 9 possible values of `n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IcmRule {
    sign: i8,
    lo: [i8; 2],
    hi: [i8; 2],
}

impl IcmRule {
    pub fn new(energy: &GridEnergy<'_>) -> Self {
        let (beta, eta, h) = (energy.beta(), energy.eta(), energy.field());
        let sign: i8 = if beta < 0.0 { -1 } else { 1 };
        let mut lo = [5i8; 2];
        let mut hi = [-5i8; 2];
        for (k, x) in [-1.0f64, 1.0].into_iter().enumerate() {
            for m in -4i8..=4 {
                let n = (m * sign) as f64;
                let f = beta * n + eta * x - h;
                if f > 0.0 && lo[k] == 5 {
                    lo[k] = m;
                }
                if f < 0.0 {
                    hi[k] = m;
                }
            }
        }
        IcmRule { sign, lo, hi }
    }

    /// The new spin for neighbour sum `n`, evidence `x` and current spin `s`.
    #[inline(always)]
    fn decide(&self, n: i8, x: i8, s: i8) -> i8 {
        let m = n * self.sign;
        let k = (x > 0) as usize;
        if m >= self.lo[k] {
            1
        } else if m <= self.hi[k] {
            -1
        } else {
            s
        }
    }
}

/// One ICM half-sweep over colour `colour`; returns the number of pixels changed.
pub(crate) fn icm_half_sweep(
    state: &mut Padded,
    evidence: &[Spin],
    rule: &IcmRule,
    colour: usize,
) -> u64 {
    let w = state.width;
    state.half_sweep(|r, up, mid, down, out| {
        let x = &evidence[r * w..(r + 1) * w];
        let parity = (r + colour) & 1;
        let mut changed = 0u64;
        let up = &up[1..=w];
        let down = &down[1..=w];
        let left = &mid[..w];
        let right = &mid[2..w + 2];
        let centre = &mid[1..=w];
        let out = &mut out[1..=w];
        for c in 0..w {
            let n = up[c] + down[c] + left[c] + right[c];
            let s = centre[c];
            let new = if (c & 1) == parity {
                rule.decide(n, x[c], s)
            } else {
                s
            };
            changed += (new != s) as u64;
            out[c] = new;
        }
        changed
    })
}

/// Heat-bath probabilities of +1 at one temperature, as 32-bit thresholds indexed by
/// `(n + 4) * 2 + [x > 0]`: `P(s_i = +1 | rest) = sigmoid(2 f / T)` with
/// `f = beta * n + eta * x - h` (Geman & Geman 1984; the conditional of the Boltzmann
/// distribution `exp(-E / T)` for +-1 spins).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeatBathTable {
    threshold: [u64; 18],
}

impl HeatBathTable {
    pub fn new(energy: &GridEnergy<'_>, temperature: f64) -> Self {
        let mut threshold = [0u64; 18];
        for n in -4i32..=4 {
            for (k, x) in [-1.0f64, 1.0].into_iter().enumerate() {
                let f = energy.beta() * n as f64 + energy.eta() * x - energy.field();
                let p = crate::logspace::sigmoid(2.0 * f / temperature);
                // u < p * 2^32 with u uniform on 0..2^32; p = 1 gives 2^32 (always +1).
                threshold[((n + 4) * 2) as usize + k] = (p * 4_294_967_296.0).round() as u64;
            }
        }
        HeatBathTable { threshold }
    }

    /// The probability of +1 for neighbour sum `n` and evidence `x` (as used, to 2^-32).
    #[cfg(test)]
    pub fn probability(&self, n: i8, x: i8) -> f64 {
        self.threshold[((n + 4) * 2) as usize + (x > 0) as usize] as f64 / 4_294_967_296.0
    }
}

/// One heat-bath half-sweep over colour `colour`, one generator per row.
pub(crate) fn heat_bath_half_sweep(
    state: &mut Padded,
    evidence: &[Spin],
    table: &HeatBathTable,
    rngs: &mut [EbmRng],
    colour: usize,
) {
    let w = state.width;
    state.half_sweep_rng(rngs, |r, up, mid, down, out, rng| {
        let x = &evidence[r * w..(r + 1) * w];
        out.copy_from_slice(mid);
        let start = (r + colour) & 1;
        for c in (start..w).step_by(2) {
            let n = up[c + 1] + down[c + 1] + mid[c] + mid[c + 2];
            let idx = ((n + 4) * 2) as usize + (x[c] > 0) as usize;
            let u = rng.next_u64() >> 32;
            out[c + 1] = if u < table.threshold[idx] { 1 } else { -1 };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icm_rule_matches_the_sign_of_the_local_field() {
        let x = vec![1i8; 4];
        for &(beta, eta, h) in &[
            (1.0, 2.1, 0.0),
            (-0.7, 0.3, 0.2),
            (0.0, 1.0, 1.0),
            (1.0, 2.0, 0.0),
            (0.5, 0.0, -1.0),
        ] {
            let e = GridEnergy::new(2, 2, beta, eta, h, &x).unwrap();
            let rule = IcmRule::new(&e);
            for n in -4i8..=4 {
                for xv in [-1i8, 1] {
                    for s in [-1i8, 1] {
                        let f = beta * n as f64 + eta * xv as f64 - h;
                        let want = if f > 0.0 {
                            1
                        } else if f < 0.0 {
                            -1
                        } else {
                            s
                        };
                        assert_eq!(rule.decide(n, xv, s), want, "{beta} {eta} {h} {n} {xv}");
                    }
                }
            }
        }
    }

    #[test]
    fn heat_bath_table_is_the_logistic_conditional() {
        let x = vec![1i8; 4];
        let e = GridEnergy::new(2, 2, 1.0, 2.1, 0.3, &x).unwrap();
        let t = HeatBathTable::new(&e, 1.7);
        let p = t.probability(2, -1);
        let f: f64 = 2.0 - 2.1 - 0.3;
        let want = 1.0 / (1.0 + (-2.0 * f / 1.7).exp());
        assert!((p - want).abs() < 1e-9, "{p} {want}");
    }
}
