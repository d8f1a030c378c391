//! Square-lattice Ising model with nearest-neighbour bonds.

use super::{EnergyModel, PairwiseMrf, Spin};
use crate::error::{Error, Result, check_finite};

/// Boundary condition of a lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// A torus: every site bonds to its right and lower neighbour with wrap-around, so a
    /// `width x height` torus has exactly `2 * width * height` bonds. A side of length 2 therefore
    /// bonds the two sites of a line twice (Kaufman's finite-lattice convention). A side of
    /// length 1 has no bonds along it (a `width x 1` torus is a ring).
    Periodic,
    /// Free edges: a side of length L has L - 1 bonds per line.
    Open,
}

/// Ising model on a `width x height` square lattice, sites row-major (`row * width + col`):
///
/// E(s) = - J sum_{<i,j>} s_i s_j - sum_i h_i s_i,  s_i in {-1, +1},
///
/// with uniform coupling J, and a uniform field h or a per-site field h_i.
#[derive(Debug, Clone, PartialEq)]
pub struct IsingLattice {
    width: usize,
    height: usize,
    boundary: Boundary,
    coupling: f64,
    field: f64,
    site_field: Option<Vec<f64>>,
}

impl IsingLattice {
    /// A lattice with uniform coupling `coupling` and uniform field `field`.
    pub fn new(
        width: usize,
        height: usize,
        boundary: Boundary,
        coupling: f64,
        field: f64,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::param(
                "lattice size",
                format!("width and height must be at least 1, got {width} x {height}"),
            ));
        }
        if width.checked_mul(height).is_none_or(|n| n > (1usize << 40)) {
            return Err(Error::param(
                "lattice size",
                format!("{width} x {height} is too large"),
            ));
        }
        check_finite("coupling", coupling)?;
        check_finite("field", field)?;
        Ok(IsingLattice {
            width,
            height,
            boundary,
            coupling,
            field,
            site_field: None,
        })
    }

    /// Replaces the uniform field by a per-site field (row-major, `width * height` values).
    pub fn with_site_field(mut self, site_field: Vec<f64>) -> Result<Self> {
        if site_field.len() != self.num_sites() {
            return Err(Error::SizeMismatch(format!(
                "per-site field has {} values but the lattice has {} sites",
                site_field.len(),
                self.num_sites()
            )));
        }
        if let Some(i) = site_field.iter().position(|h| !h.is_finite()) {
            return Err(Error::InvalidModel(format!(
                "site field h[{i}] = {} is not finite",
                site_field[i]
            )));
        }
        self.site_field = Some(site_field);
        Ok(self)
    }

    /// Width (number of columns).
    pub fn width(&self) -> usize {
        self.width
    }
    /// Height (number of rows).
    pub fn height(&self) -> usize {
        self.height
    }
    /// Number of sites, `width * height`.
    pub fn num_sites(&self) -> usize {
        self.width * self.height
    }
    /// The boundary condition.
    pub fn boundary(&self) -> Boundary {
        self.boundary
    }
    /// The uniform coupling J.
    pub fn coupling(&self) -> f64 {
        self.coupling
    }
    /// The uniform field h (ignored when a per-site field is set).
    pub fn uniform_field(&self) -> f64 {
        self.field
    }
    /// The per-site field, if one was set.
    pub fn site_field(&self) -> Option<&[f64]> {
        self.site_field.as_deref()
    }
    /// The field at site i.
    #[inline]
    pub fn field_at(&self, i: usize) -> f64 {
        match &self.site_field {
            Some(f) => f[i],
            None => self.field,
        }
    }

    /// Every bond (i, j) once per bond, following the boundary convention (so a periodic side of
    /// length 2 lists its pair twice).
    pub fn bonds(&self) -> Vec<(usize, usize)> {
        let (w, h) = (self.width, self.height);
        let periodic = self.boundary == Boundary::Periodic;
        let mut bonds = Vec::with_capacity(2 * w * h);
        for r in 0..h {
            for c in 0..w {
                let i = r * w + c;
                if c + 1 < w {
                    bonds.push((i, i + 1));
                } else if periodic && w > 1 {
                    bonds.push((i, r * w));
                }
                if r + 1 < h {
                    bonds.push((i, i + w));
                } else if periodic && h > 1 {
                    bonds.push((i, c));
                }
            }
        }
        bonds
    }

    /// Sum over bonds of s_i s_j.
    pub fn bond_sum(&self, s: &[Spin]) -> i64 {
        let (w, h) = (self.width, self.height);
        let periodic = self.boundary == Boundary::Periodic;
        let mut sum = 0i64;
        for r in 0..h {
            let row = &s[r * w..(r + 1) * w];
            for c in 0..w - 1 {
                sum += (row[c] * row[c + 1]) as i64;
            }
            if periodic && w > 1 {
                sum += (row[w - 1] * row[0]) as i64;
            }
            if r + 1 < h || (periodic && h > 1) {
                let below = &s[((r + 1) % h) * w..((r + 1) % h + 1) * w];
                for c in 0..w {
                    sum += (row[c] * below[c]) as i64;
                }
            }
        }
        sum
    }

    /// Sum over sites of J-weighted neighbour spins of site i: sum_{j ~ i} s_j, counting a double
    /// bond twice.
    #[inline]
    pub fn neighbour_sum(&self, s: &[Spin], i: usize) -> i32 {
        let (w, h) = (self.width, self.height);
        let (r, c) = (i / w, i % w);
        let periodic = self.boundary == Boundary::Periodic;
        let mut sum = 0i32;
        if c + 1 < w {
            sum += s[i + 1] as i32;
        } else if periodic && w > 1 {
            sum += s[r * w] as i32;
        }
        if c > 0 {
            sum += s[i - 1] as i32;
        } else if periodic && w > 1 {
            sum += s[r * w + w - 1] as i32;
        }
        if r + 1 < h {
            sum += s[i + w] as i32;
        } else if periodic && h > 1 {
            sum += s[c] as i32;
        }
        if r > 0 {
            sum += s[i - w] as i32;
        } else if periodic && h > 1 {
            sum += s[(h - 1) * w + c] as i32;
        }
        sum
    }

    /// The same model as a general [`PairwiseMrf`] (double bonds merged into one of 2J).
    pub fn to_pairwise(&self) -> Result<PairwiseMrf> {
        let fields = (0..self.num_sites()).map(|i| self.field_at(i)).collect();
        let list: Vec<(usize, usize, f64)> = self
            .bonds()
            .into_iter()
            .map(|(i, j)| (i, j, self.coupling))
            .collect();
        PairwiseMrf::new(fields, &list)
    }
}

impl EnergyModel for IsingLattice {
    fn num_vars(&self) -> usize {
        self.num_sites()
    }

    fn energy(&self, s: &[Spin]) -> f64 {
        debug_assert_eq!(s.len(), self.num_sites());
        let field_term: f64 = match &self.site_field {
            Some(f) => f.iter().zip(s).map(|(h, &x)| h * x as f64).sum(),
            None => self.field * s.iter().map(|&x| x as i64).sum::<i64>() as f64,
        };
        -self.coupling * self.bond_sum(s) as f64 - field_term
    }

    #[inline]
    fn flip_delta(&self, s: &[Spin], i: usize) -> f64 {
        let local = self.coupling * self.neighbour_sum(s, i) as f64 + self.field_at(i);
        2.0 * s[i] as f64 * local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bond_counts_follow_the_convention() {
        let torus = IsingLattice::new(3, 4, Boundary::Periodic, 1.0, 0.0).unwrap();
        assert_eq!(torus.bonds().len(), 24);
        let two = IsingLattice::new(2, 2, Boundary::Periodic, 1.0, 0.0).unwrap();
        assert_eq!(two.bonds().len(), 8);
        let open = IsingLattice::new(3, 4, Boundary::Open, 1.0, 0.0).unwrap();
        assert_eq!(open.bonds().len(), 2 * 4 + 3 * 3);
        let ring = IsingLattice::new(5, 1, Boundary::Periodic, 1.0, 0.0).unwrap();
        assert_eq!(ring.bonds().len(), 5);
    }

    #[test]
    fn all_up_energy_is_minus_bonds_times_j_minus_field() {
        let m = IsingLattice::new(4, 3, Boundary::Periodic, 0.7, 0.2).unwrap();
        let s = vec![1i8; 12];
        assert!((m.energy(&s) - (-0.7 * 24.0 - 0.2 * 12.0)).abs() < 1e-12);
        let open = IsingLattice::new(4, 3, Boundary::Open, 1.0, 0.0).unwrap();
        assert_eq!(open.energy(&s), -17.0);
    }

    #[test]
    fn flip_delta_and_pairwise_form_agree_with_energy() {
        for (w, h) in [(2, 2), (3, 2), (1, 4), (4, 3)] {
            for boundary in [Boundary::Periodic, Boundary::Open] {
                let m = IsingLattice::new(w, h, boundary, -0.8, 0.3)
                    .unwrap()
                    .with_site_field((0..w * h).map(|i| i as f64 * 0.1 - 0.2).collect())
                    .unwrap();
                let p = m.to_pairwise().unwrap();
                let n = w * h;
                for state in 0..(1u32 << n) {
                    let s: Vec<Spin> = (0..n)
                        .map(|k| if state >> k & 1 == 1 { 1 } else { -1 })
                        .collect();
                    assert!((m.energy(&s) - p.energy(&s)).abs() < 1e-12);
                    for i in 0..n {
                        let mut t = s.clone();
                        t[i] = -t[i];
                        let direct = m.energy(&t) - m.energy(&s);
                        assert!((m.flip_delta(&s, i) - direct).abs() < 1e-12);
                    }
                }
            }
        }
    }

    #[test]
    fn invalid_sizes_and_numbers_are_refused() {
        assert!(IsingLattice::new(0, 3, Boundary::Open, 1.0, 0.0).is_err());
        assert!(IsingLattice::new(3, 3, Boundary::Open, f64::NAN, 0.0).is_err());
        let m = IsingLattice::new(2, 2, Boundary::Open, 1.0, 0.0).unwrap();
        assert!(m.clone().with_site_field(vec![0.0; 3]).is_err());
        assert!(
            m.with_site_field(vec![0.0, 0.0, f64::INFINITY, 0.0])
                .is_err()
        );
    }
}
