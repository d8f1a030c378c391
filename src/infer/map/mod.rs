//! MAP estimation for binary grid energies: the denoising energy of Bishop, PRML section 8.3.3.
//!
//! Spins are +-1, row-major on a `width x height` grid with 4-neighbours and an open boundary
//! (each horizontally or vertically adjacent pair counted once). Given evidence `x` (the noisy
//! image, +-1), the energy of a labelling `s` is
//!
//! ```text
//! E(s; x) = h * sum_i s_i - beta * sum_{<ij>} s_i s_j - eta * sum_i x_i s_i
//! ```
//!
//! [`GridEnergy`] holds `(beta, eta, h, x)` and evaluates `E` from three integer sums, so every
//! method, and every thread count, reports the same number for the same labelling.
//!
//! Methods:
//! - [`mincut`]: the exact minimum by a minimum s-t cut (Greig, Porteous & Seheult 1989), with a
//!   grid max-flow after Boykov & Kolmogorov (2004); needs `beta >= 0`.
//! - [`icm`]: iterated conditional modes in checkerboard order (Besag 1986); and
//!   [`icm::icm_model`] for any [`EnergyModel`](crate::model::EnergyModel).
//! - [`anneal`]: simulated annealing with checkerboard heat-bath sweeps, then an ICM quench; and
//!   [`anneal::anneal_model`] for any `EnergyModel`.
//!
//! The grid functions are the fast path (parallel checkerboard kernels over a padded grid); the
//! `*_model` ones are the general versions, sequential over the sites, tested against them
//! ([`GridEnergy`] is itself an `EnergyModel`) and against brute force.
//! - [`gibbs`]: posterior sampling at temperature 1 and the marginal posterior mode.

pub mod anneal;
mod checkerboard;
pub mod gibbs;
pub mod icm;
pub mod mincut;

use rayon::prelude::*;

use crate::error::{Error, Result, check_finite};
use crate::model::{Spin, first_non_spin};

/// The three integer sums that determine the grid energy of a labelling `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnergySums {
    /// `sum_i s_i`.
    pub spin_sum: i64,
    /// `sum_{<ij>} s_i s_j` over 4-neighbour pairs, open boundary, each pair once.
    pub bond_sum: i64,
    /// `sum_i x_i s_i` (agreement with the evidence).
    pub evidence_sum: i64,
}

/// Grids of at most this many pixels are summed on the calling thread by [`GridEnergy::sums`],
/// and solved by graph cut in one piece ([`mincut::runs_on_one_thread`]): no rayon at all.
pub const ONE_THREAD_PIXELS: usize = 1 << 17;

/// Spins summed per block in [`spin_dot`].
const SPIN_BLOCK: usize = 64;

/// `sum_k a_k b_k` for two equally long slices of spins (-1 or +1). Blocks of [`SPIN_BLOCK`]
/// products are summed in i8 (a block's sum is at most 64 in magnitude, so exact), which
/// vectorises 16 lanes wide with SSE2, four times as wide as summing in i32.
#[inline]
fn spin_dot(a: &[Spin], b: &[Spin]) -> i64 {
    debug_assert_eq!(a.len(), b.len());
    a.chunks(SPIN_BLOCK)
        .zip(b.chunks(SPIN_BLOCK))
        .map(|(a, b)| {
            let block = a.iter().zip(b);
            block.fold(0i8, |acc, (&u, &v)| acc.wrapping_add(u.wrapping_mul(v))) as i64
        })
        .sum()
}

/// `sum_k a_k` for spins (-1 or +1), in blocks as [`spin_dot`].
#[inline]
fn spin_sum(a: &[Spin]) -> i64 {
    a.chunks(SPIN_BLOCK)
        .map(|a| a.iter().fold(0i8, |acc, &u| acc.wrapping_add(u)) as i64)
        .sum()
}

/// The denoising energy `E(s; x) = h sum s_i - beta sum_<ij> s_i s_j - eta sum x_i s_i` on a grid.
#[derive(Debug, Clone, Copy)]
pub struct GridEnergy<'a> {
    width: usize,
    height: usize,
    beta: f64,
    eta: f64,
    field: f64,
    evidence: &'a [Spin],
}

impl<'a> GridEnergy<'a> {
    /// The energy with coupling `beta`, evidence weight `eta` and field `h` (all finite) for the
    /// `width x height` evidence `x` (row-major, each -1 or +1).
    pub fn new(
        width: usize,
        height: usize,
        beta: f64,
        eta: f64,
        field: f64,
        evidence: &'a [Spin],
    ) -> Result<Self> {
        check_finite("beta", beta)?;
        check_finite("eta", eta)?;
        check_finite("field h", field)?;
        if width == 0 || height == 0 {
            return Err(Error::param(
                "image size",
                format!("{width} x {height} has no pixels"),
            ));
        }
        if width.checked_mul(height) != Some(evidence.len()) {
            return Err(Error::SizeMismatch(format!(
                "a {width} x {height} grid needs {} evidence pixels, got {}",
                width.saturating_mul(height),
                evidence.len()
            )));
        }
        if width * height > u32::MAX as usize - 1 || width > (1 << 29) {
            return Err(Error::TooLarge {
                method: "grid energy".into(),
                detail: format!("{width} x {height}: at most 2^32 - 2 pixels and 2^29 columns"),
            });
        }
        if let Some(k) = first_non_spin(evidence) {
            return Err(Error::Format(format!(
                "evidence pixel {k} is {} (must be -1 or +1)",
                evidence[k]
            )));
        }
        // Every energy, and every capacity of the graph-cut construction (2|beta| per bond,
        // 2|h - eta x_i| per pixel), is bounded by (|h| + |eta| + 4|beta|) * 2 * pixels; if that
        // bound overflows, inf - inf = NaN could appear in the max-flow or in the reported energy.
        let bound = (field.abs() + eta.abs() + 4.0 * beta.abs()) * 2.0 * evidence.len() as f64;
        if !bound.is_finite() {
            return Err(Error::param(
                "beta, eta and field h",
                format!(
                    "too large for a {width} x {height} image (beta = {beta:e}, eta = {eta:e}, \
                     h = {field:e}): energies would overflow f64"
                ),
            ));
        }
        Ok(GridEnergy {
            width,
            height,
            beta,
            eta,
            field,
            evidence,
        })
    }

    /// Grid width.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Grid height.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width * self.height
    }
    /// Always false (a grid has at least one pixel).
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The coupling `beta`.
    pub fn beta(&self) -> f64 {
        self.beta
    }
    /// The evidence weight `eta`.
    pub fn eta(&self) -> f64 {
        self.eta
    }
    /// The field `h`.
    pub fn field(&self) -> f64 {
        self.field
    }
    /// The evidence `x`, row-major.
    pub fn evidence(&self) -> &'a [Spin] {
        self.evidence
    }

    /// Number of 4-neighbour pairs with an open boundary: `(w-1) h + w (h-1)`.
    pub fn num_bonds(&self) -> usize {
        (self.width - 1) * self.height + self.width * (self.height - 1)
    }

    /// The integer sums of `s`, which must hold spins (-1 or +1). Grids of at most
    /// [`ONE_THREAD_PIXELS`] pixels are summed on the calling thread, larger ones with rayon over
    /// rows (integer addition makes the result independent of the thread count). Panics if `s` has
    /// the wrong length.
    pub fn sums(&self, s: &[Spin]) -> EnergySums {
        assert_eq!(s.len(), self.len(), "labelling has the wrong length");
        let (w, h) = (self.width, self.height);
        let row_sums = |r: usize| {
            let row = &s[r * w..(r + 1) * w];
            let mut bond_sum = spin_dot(&row[..w - 1], &row[1..]);
            if r + 1 < h {
                bond_sum += spin_dot(row, &s[(r + 1) * w..(r + 2) * w]);
            }
            EnergySums {
                spin_sum: spin_sum(row),
                bond_sum,
                evidence_sum: spin_dot(row, &self.evidence[r * w..(r + 1) * w]),
            }
        };
        let add = |a: EnergySums, b: EnergySums| EnergySums {
            spin_sum: a.spin_sum + b.spin_sum,
            bond_sum: a.bond_sum + b.bond_sum,
            evidence_sum: a.evidence_sum + b.evidence_sum,
        };
        if self.len() <= ONE_THREAD_PIXELS {
            return (0..h).map(row_sums).fold(EnergySums::default(), add);
        }
        // Tasks of at least 2^16 pixels.
        (0..h)
            .into_par_iter()
            .with_min_len((1 << 16) / w + 1)
            .map(row_sums)
            .reduce(EnergySums::default, add)
    }

    /// `E = h * spin_sum - beta * bond_sum - eta * evidence_sum`, evaluated in this order.
    pub fn energy_of_sums(&self, sums: &EnergySums) -> f64 {
        self.field * sums.spin_sum as f64
            - self.beta * sums.bond_sum as f64
            - self.eta * sums.evidence_sum as f64
    }

    /// The energy of labelling `s`.
    pub fn energy(&self, s: &[Spin]) -> f64 {
        self.energy_of_sums(&self.sums(s))
    }

    /// The local field `f_i = beta * sum_{j ~ i} s_j + eta * x_i - h`: the energy falls by
    /// `2 |f_i|` when `s_i` takes the sign of `f_i`.
    pub fn local_field(&self, s: &[Spin], i: usize) -> f64 {
        self.beta * self.neighbour_sum(s, i) as f64 + self.eta * self.evidence[i] as f64
            - self.field
    }

    /// `sum_{j ~ i} s_j` over the (2 to 4) grid neighbours of pixel `i`.
    pub fn neighbour_sum(&self, s: &[Spin], i: usize) -> i32 {
        let (w, h) = (self.width, self.height);
        let (r, c) = (i / w, i % w);
        let mut n = 0i32;
        if c > 0 {
            n += s[i - 1] as i32;
        }
        if c + 1 < w {
            n += s[i + 1] as i32;
        }
        if r > 0 {
            n += s[i - w] as i32;
        }
        if r + 1 < h {
            n += s[i + w] as i32;
        }
        n
    }
}

/// The grid energy as a general model: what the generic [`icm::icm_model`] and
/// [`anneal::anneal_model`] (and the enumeration oracles) take. The flip delta is
/// `E(s with s_i flipped) - E(s) = 2 s_i f_i` with the local field `f_i` of
/// [`GridEnergy::local_field`].
impl crate::model::EnergyModel for GridEnergy<'_> {
    fn num_vars(&self) -> usize {
        self.len()
    }
    fn energy(&self, s: &[Spin]) -> f64 {
        GridEnergy::energy(self, s)
    }
    fn flip_delta(&self, s: &[Spin], i: usize) -> f64 {
        2.0 * s[i] as f64 * self.local_field(s, i)
    }
}

/// The MAP methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMethod {
    /// Exact minimum by minimum s-t cut (needs `beta >= 0`).
    GraphCut,
    /// Iterated conditional modes, checkerboard order, until a sweep changes nothing.
    Icm,
    /// Simulated annealing (checkerboard heat bath, geometric schedule) and an ICM quench.
    Anneal,
    /// Posterior sampling at temperature 1; the marginal posterior mode.
    Gibbs,
}

impl MapMethod {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            MapMethod::GraphCut => "graphcut",
            MapMethod::Icm => "icm",
            MapMethod::Anneal => "anneal",
            MapMethod::Gibbs => "gibbs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_sums_match_a_plain_count_on_every_grid_shape() {
        // Widths around the 64-spin blocks of the i8 sums, all-equal rows (the largest block
        // sums, +-64) and random ones, grids below and above ONE_THREAD_PIXELS.
        use rand::RngExt;
        let mut rng = crate::rng::from_seed(3);
        let shapes = [
            (1, 1),
            (1, 9),
            (63, 3),
            (64, 2),
            (65, 5),
            (130, 7),
            (200, 700),
        ];
        for &(w, h) in &shapes {
            for fill in [Some(1i8), Some(-1), None] {
                let mut spin = || fill.unwrap_or(if rng.random_bool(0.5) { 1 } else { -1 });
                let x: Vec<Spin> = (0..w * h).map(|_| spin()).collect();
                let s: Vec<Spin> = (0..w * h).map(|_| spin()).collect();
                let e = GridEnergy::new(w, h, 1.0, 2.1, 0.5, &x).unwrap();
                let mut want = EnergySums::default();
                for i in 0..w * h {
                    want.spin_sum += s[i] as i64;
                    want.evidence_sum += (s[i] * x[i]) as i64;
                    if i % w + 1 < w {
                        want.bond_sum += (s[i] * s[i + 1]) as i64;
                    }
                    if i + w < w * h {
                        want.bond_sum += (s[i] * s[i + w]) as i64;
                    }
                }
                assert_eq!(e.sums(&s), want, "{w} x {h}, fill {fill:?}");
            }
        }
    }

    #[test]
    fn evidence_other_than_plus_minus_one_is_refused_with_its_position() {
        for bad in [0i8, 2, -2, 3, -3, 127, -128] {
            // Far into the second block of the vectorised check, and at the very start.
            for k in [0usize, 5000] {
                let mut x = vec![1i8; 64 * 128];
                x.iter_mut().step_by(3).for_each(|v| *v = -1);
                x[k] = bad;
                let err = GridEnergy::new(64, 128, 1.0, 2.1, 0.0, &x).unwrap_err();
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("evidence pixel {k} is {bad}")),
                    "{msg}"
                );
            }
        }
        let x: Vec<Spin> = (0..64 * 128)
            .map(|i| if i % 7 < 3 { 1 } else { -1 })
            .collect();
        assert!(GridEnergy::new(64, 128, 1.0, 2.1, 0.0, &x).is_ok());
    }
}
