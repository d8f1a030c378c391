//! Transfer-matrix ln Z for square lattices of small width, any height, any fields.
//!
//! The lattice is swept site by site, row-major. The state is a vector over the 2^W
//! configurations of the frontier (the last processed site of each column), kept in log space:
//! adding site (r, c) with spin s replaces the frontier spin u of column c (the site above) by s,
//! v'(.., s, ..) = beta h s + K s s_left [+ K s s_wrap] + ln sum_u exp(v(.., u, ..) + K s u),
//! with K = beta J. The cost is H * W * 2^W log-add-exps for open boundaries or a cylinder
//! (periodic across the width); for the torus, the first row is fixed to each of its 2^W states
//! in turn and the vertical wrap bonds are added at the end (a trace), so the cost is
//! 2^W * H * W * 2^W. The lattice is transposed when that is cheaper and within the width limit
//! ([`StripLattice::best_sweep`]; the boundary counts, so a cylinder is not turned into a torus).
//! Conventions are those of [`IsingLattice`]: a periodic side of length 2 has double bonds, a
//! side of length 1 has no bonds along it.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::logspace::{log_add_exp, log_sum_exp};
use crate::model::{Boundary, IsingLattice};

/// Largest swept width for open lattices and cylinders (2^22 doubles = 32 MiB per vector).
pub const MAX_STRIP_WIDTH: usize = 22;
/// Largest swept width for the torus (2^W traces of 2^W-state sweeps).
pub const MAX_TORUS_WIDTH: usize = 14;

/// A `width x height` lattice with uniform coupling, per-site fields and a boundary condition
/// per direction: `periodic_width` wraps each row (a cylinder), `periodic_height` each column.
#[derive(Debug, Clone, PartialEq)]
pub struct StripLattice {
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
    /// Rows wrap around (site (r, W-1) bonds to (r, 0)).
    pub periodic_width: bool,
    /// Columns wrap around (site (H-1, c) bonds to (0, c)).
    pub periodic_height: bool,
    /// Uniform coupling J.
    pub coupling: f64,
    /// Field of each site, row-major (`width * height` values).
    pub fields: Vec<f64>,
}

impl StripLattice {
    /// The strip form of an [`IsingLattice`].
    pub fn of_lattice(lattice: &IsingLattice) -> StripLattice {
        let periodic = lattice.boundary() == Boundary::Periodic;
        StripLattice {
            width: lattice.width(),
            height: lattice.height(),
            periodic_width: periodic,
            periodic_height: periodic,
            coupling: lattice.coupling(),
            fields: (0..lattice.num_sites())
                .map(|i| lattice.field_at(i))
                .collect(),
        }
    }

    /// The same lattice with rows and columns exchanged.
    pub fn transposed(&self) -> StripLattice {
        let (w, h) = (self.width, self.height);
        let mut fields = vec![0.0; w * h];
        for r in 0..h {
            for c in 0..w {
                fields[c * h + r] = self.fields[r * w + c];
            }
        }
        StripLattice {
            width: h,
            height: w,
            periodic_width: self.periodic_height,
            periodic_height: self.periodic_width,
            coupling: self.coupling,
            fields,
        }
    }

    /// The sweep along the rows as given (`transpose = false`) or along the columns.
    pub fn sweep_of(&self, transpose: bool) -> Sweep {
        let (w, h, periodic_h) = if transpose {
            (self.height, self.width, self.periodic_width)
        } else {
            (self.width, self.height, self.periodic_height)
        };
        let torus = periodic_h && h > 1;
        let base = (w * h) as f64 * 2f64.powi(w as i32);
        Sweep {
            transpose,
            width: w,
            torus,
            limit: if torus {
                MAX_TORUS_WIDTH
            } else {
                MAX_STRIP_WIDTH
            },
            cost: if torus {
                base * 2f64.powi(w as i32)
            } else {
                base
            },
        }
    }

    /// The orientation [`transfer_log_partition_strip`] uses: of the two sweeps whose width is
    /// within its limit, the cheaper (as given on a tie); when neither fits, the narrower (for
    /// the refusal). The boundary counts: a cylinder periodic across its long side is swept
    /// along that side (H W 2^W) rather than transposed into a torus (2^H W H 2^H).
    pub fn best_sweep(&self) -> Sweep {
        let (a, b) = (self.sweep_of(false), self.sweep_of(true));
        match (a.fits(), b.fits()) {
            (true, true) if b.cost < a.cost => b,
            (true, _) => a,
            (false, true) => b,
            (false, false) if b.width < a.width => b,
            (false, false) => a,
        }
    }

    /// Swept width after the orientation choice of [`transfer_log_partition_strip`].
    pub fn swept_width(&self) -> usize {
        self.best_sweep().width
    }

    /// Estimated log-add-exp operations of the chosen sweep: H W 2^W, times 2^W for the torus.
    pub fn cost(&self) -> f64 {
        self.best_sweep().cost
    }
}

/// One orientation of a transfer-matrix sweep and its cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// Columns are swept as rows (the lattice is transposed).
    pub transpose: bool,
    /// Swept width W (the frontier has 2^W states).
    pub width: usize,
    /// Periodic along the sweep: closed by a trace over the first row's 2^W states.
    pub torus: bool,
    /// Largest width accepted for this kind of sweep.
    pub limit: usize,
    /// Estimated log-add-exps: H W 2^W, times 2^W for a torus.
    pub cost: f64,
}

impl Sweep {
    /// Whether the width is within the limit.
    pub fn fits(&self) -> bool {
        self.width <= self.limit
    }
}

/// Log-weight of one row: fields and horizontal bonds.
fn row_weight(x: usize, w: usize, k: f64, fields: &[f64], periodic: bool, beta: f64) -> f64 {
    let spin = |c: usize| if x >> c & 1 == 1 { 1.0 } else { -1.0 };
    let mut lw = 0.0;
    for (c, &h) in fields.iter().enumerate().take(w) {
        lw += beta * h * spin(c);
        if c > 0 {
            lw += k * spin(c) * spin(c - 1);
        }
    }
    if periodic && w > 1 {
        lw += k * spin(w - 1) * spin(0);
    }
    lw
}

/// Sweeps rows 1..H of `s` onto the frontier vector `v` (in place).
fn sweep(v: &mut [f64], s: &StripLattice, beta: f64) {
    let w = s.width;
    let k = beta * s.coupling;
    for r in 1..s.height {
        for c in 0..w {
            let hb = beta * s.fields[r * w + c];
            let bit = 1usize << c;
            for x0 in 0..v.len() {
                if x0 & bit != 0 {
                    continue;
                }
                let x1 = x0 | bit;
                let (a, b) = (v[x0], v[x1]); // u = -1, u = +1
                // Horizontal neighbours already in row r: left (c-1), and for the last column of a
                // periodic row, column 0.
                let mut horiz = 0.0;
                if c > 0 {
                    horiz += if x0 >> (c - 1) & 1 == 1 { 1.0 } else { -1.0 };
                }
                if s.periodic_width && w > 1 && c == w - 1 {
                    horiz += if x0 & 1 == 1 { 1.0 } else { -1.0 };
                }
                let up = log_add_exp(a - k, b + k) + hb + k * horiz;
                let down = log_add_exp(a + k, b - k) - hb - k * horiz;
                v[x1] = up;
                v[x0] = down;
            }
        }
    }
}

/// Exact ln Z(beta) of a strip lattice by transfer matrices (in the orientation of
/// [`StripLattice::best_sweep`]).
pub fn transfer_log_partition_strip(lattice: &StripLattice, beta: f64) -> Result<f64> {
    if !beta.is_finite() {
        return Err(Error::param("beta", format!("must be finite, got {beta}")));
    }
    if lattice.fields.len() != lattice.width * lattice.height || lattice.width == 0 {
        return Err(Error::SizeMismatch(format!(
            "a {} x {} lattice needs {} fields, got {}",
            lattice.width,
            lattice.height,
            lattice.width * lattice.height,
            lattice.fields.len()
        )));
    }
    let orient = lattice.best_sweep();
    if !orient.fits() {
        return Err(Error::TooLarge {
            method: "transfer matrix".into(),
            detail: format!(
                "swept width {} (at most {}{}): about {:.3e} operations",
                orient.width,
                orient.limit,
                if orient.torus { " for a torus" } else { "" },
                orient.cost
            ),
        });
    }
    let s = if orient.transpose {
        lattice.transposed()
    } else {
        lattice.clone()
    };
    let w = s.width;
    let torus = orient.torus;
    let k = beta * s.coupling;
    let states = 1usize << w;
    let first: Vec<f64> = (0..states)
        .map(|x| row_weight(x, w, k, &s.fields[..w], s.periodic_width, beta))
        .collect();
    if !torus {
        let mut v = first;
        sweep(&mut v, &s, beta);
        return Ok(log_sum_exp(&v));
    }
    let per_first_row: Vec<f64> = (0..states)
        .into_par_iter()
        .map(|sigma| {
            let mut v = vec![f64::NEG_INFINITY; states];
            v[sigma] = first[sigma];
            sweep(&mut v, &s, beta);
            let closed: Vec<f64> = v
                .iter()
                .enumerate()
                .map(|(x, &lw)| {
                    // Vertical wrap bonds: +K per agreeing column, -K per disagreeing one.
                    let agree = (!(x ^ sigma) & (states - 1)).count_ones() as f64;
                    lw + k * (2.0 * agree - w as f64)
                })
                .collect();
            log_sum_exp(&closed)
        })
        .collect();
    Ok(log_sum_exp(&per_first_row))
}

/// Exact ln Z(beta) of an [`IsingLattice`] (open or torus, any fields) by transfer matrices.
pub fn transfer_log_partition(lattice: &IsingLattice, beta: f64) -> Result<f64> {
    transfer_log_partition_strip(&StripLattice::of_lattice(lattice), beta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::exact;

    #[test]
    fn matches_enumeration_on_small_lattices() {
        for (w, h) in [(1, 1), (1, 5), (2, 2), (2, 3), (3, 2), (3, 4), (4, 3)] {
            for boundary in [Boundary::Open, Boundary::Periodic] {
                let fields: Vec<f64> = (0..w * h).map(|i| (i as f64 * 0.37).sin()).collect();
                let l = IsingLattice::new(w, h, boundary, -0.8, 0.0)
                    .unwrap()
                    .with_site_field(fields)
                    .unwrap();
                let a = transfer_log_partition(&l, 0.7).unwrap();
                let b = exact::enumerate_log_partition(&l, 0.7).unwrap();
                assert!(
                    (a - b).abs() < 1e-12 * b.abs(),
                    "{w}x{h} {boundary:?}: {a} vs {b}"
                );
            }
        }
    }
}
