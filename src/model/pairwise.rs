//! General pairwise binary Markov random field over +-1 spins.

use super::{EnergyModel, Spin};
use crate::error::{Error, Result};

/// A pairwise MRF: E(s) = constant - sum_{i<j} J_ij s_i s_j - sum_i h_i s_i, s_i in {-1, +1}.
///
/// Couplings are stored twice: as an edge list (each unordered pair once, duplicates merged by
/// summing) and as a symmetric CSR adjacency for O(degree) local fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PairwiseMrf {
    fields: Vec<f64>,
    edges: Vec<(usize, usize, f64)>,
    row_start: Vec<usize>,
    neighbours: Vec<usize>,
    couplings: Vec<f64>,
    constant: f64,
}

/// The neighbour lists of an undirected graph in compressed-row form: the neighbours of
/// variable `i` are `neighbour[row_start[i]..row_start[i + 1]]`, and `edge_of[k]` is the index
/// (in the order given) of the edge that slot `k` stands for. Each edge appears twice, once in
/// each endpoint's row, in edge order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjacency {
    /// Row offsets, `n + 1` entries.
    pub row_start: Vec<usize>,
    /// The neighbour in each slot.
    pub neighbour: Vec<usize>,
    /// The edge index of each slot.
    pub edge_of: Vec<usize>,
}

impl Adjacency {
    /// Builds the rows of `n` variables from `edges` (pairs of distinct indices below `n`,
    /// each pair once; callers check this).
    pub fn new(n: usize, edges: impl Iterator<Item = (usize, usize)> + Clone) -> Self {
        let mut degree = vec![0usize; n];
        for (i, j) in edges.clone() {
            degree[i] += 1;
            degree[j] += 1;
        }
        let mut row_start = vec![0usize; n + 1];
        for i in 0..n {
            row_start[i + 1] = row_start[i] + degree[i];
        }
        let mut fill = row_start[..n].to_vec();
        let mut neighbour = vec![0usize; row_start[n]];
        let mut edge_of = vec![0usize; row_start[n]];
        for (e, (i, j)) in edges.enumerate() {
            neighbour[fill[i]] = j;
            edge_of[fill[i]] = e;
            fill[i] += 1;
            neighbour[fill[j]] = i;
            edge_of[fill[j]] = e;
            fill[j] += 1;
        }
        Adjacency {
            row_start,
            neighbour,
            edge_of,
        }
    }
}

impl PairwiseMrf {
    /// Builds a model from fields h and a list of couplings (i, j, J_ij).
    ///
    /// Pairs may appear in either order and more than once (their couplings add up). Errors on
    /// non-finite numbers, self couplings (i == j) and indices out of range.
    pub fn new(fields: Vec<f64>, couplings: &[(usize, usize, f64)]) -> Result<Self> {
        Self::with_constant(fields, couplings, 0.0)
    }

    /// As [`PairwiseMrf::new`], with an energy constant c added to every state's energy.
    pub fn with_constant(
        fields: Vec<f64>,
        couplings: &[(usize, usize, f64)],
        constant: f64,
    ) -> Result<Self> {
        let n = fields.len();
        if let Some(i) = fields.iter().position(|h| !h.is_finite()) {
            return Err(Error::InvalidModel(format!(
                "field h[{i}] = {} is not finite",
                fields[i]
            )));
        }
        if !constant.is_finite() {
            return Err(Error::InvalidModel(format!(
                "energy constant {constant} is not finite"
            )));
        }
        let mut edges: Vec<(usize, usize, f64)> = Vec::with_capacity(couplings.len());
        for &(i, j, w) in couplings {
            if i >= n || j >= n {
                return Err(Error::InvalidModel(format!(
                    "coupling ({i}, {j}) names a variable out of range (the model has {n})"
                )));
            }
            if i == j {
                return Err(Error::InvalidModel(format!(
                    "self coupling on variable {i} (J_ii is not allowed)"
                )));
            }
            if !w.is_finite() {
                return Err(Error::InvalidModel(format!(
                    "coupling J[{i}][{j}] = {w} is not finite"
                )));
            }
            edges.push((i.min(j), i.max(j), w));
        }
        edges.sort_by_key(|&(i, j, _)| (i, j));
        let mut merged: Vec<(usize, usize, f64)> = Vec::with_capacity(edges.len());
        for (i, j, w) in edges {
            match merged.last_mut() {
                Some(last) if last.0 == i && last.1 == j => last.2 += w,
                _ => merged.push((i, j, w)),
            }
        }
        let adjacency = Adjacency::new(n, merged.iter().map(|&(i, j, _)| (i, j)));
        let values = adjacency.edge_of.iter().map(|&e| merged[e].2).collect();
        let Adjacency {
            row_start,
            neighbour: neighbours,
            ..
        } = adjacency;
        Ok(PairwiseMrf {
            fields,
            edges: merged,
            row_start,
            neighbours,
            couplings: values,
            constant,
        })
    }

    /// Builds a model from fields and a dense symmetric coupling matrix with zero diagonal.
    pub fn from_dense(fields: Vec<f64>, j: &[Vec<f64>]) -> Result<Self> {
        let n = fields.len();
        if j.len() != n || j.iter().any(|row| row.len() != n) {
            return Err(Error::SizeMismatch(format!(
                "coupling matrix must be {n} x {n} to match {n} fields"
            )));
        }
        let mut list = Vec::new();
        for (a, row) in j.iter().enumerate() {
            if row[a] != 0.0 {
                return Err(Error::InvalidModel(format!(
                    "self coupling J[{a}][{a}] = {} (the diagonal must be zero)",
                    row[a]
                )));
            }
            for (b, &jab) in row.iter().enumerate().skip(a + 1) {
                if jab != j[b][a] {
                    return Err(Error::InvalidModel(format!(
                        "couplings are not symmetric: J[{a}][{b}] = {jab} but J[{b}][{a}] = {}",
                        j[b][a]
                    )));
                }
                if jab != 0.0 {
                    list.push((a, b, jab));
                }
            }
        }
        Self::new(fields, &list)
    }

    /// The fields h_i.
    pub fn fields(&self) -> &[f64] {
        &self.fields
    }

    /// Each coupled pair once, as (i, j, J_ij) with i < j, sorted.
    pub fn edges(&self) -> &[(usize, usize, f64)] {
        &self.edges
    }

    /// The energy constant c.
    pub fn constant(&self) -> f64 {
        self.constant
    }

    /// Neighbours of variable i and the couplings to them.
    #[inline]
    pub fn neighbours(&self, i: usize) -> (&[usize], &[f64]) {
        let range = self.row_start[i]..self.row_start[i + 1];
        (&self.neighbours[range.clone()], &self.couplings[range])
    }

    /// The local field of spin i: h_i + sum_j J_ij s_j, so that E = ... - s_i * local_field.
    #[inline]
    pub fn local_field(&self, s: &[Spin], i: usize) -> f64 {
        let (nbrs, js) = self.neighbours(i);
        let mut field = self.fields[i];
        for (&k, &w) in nbrs.iter().zip(js) {
            field += w * s[k] as f64;
        }
        field
    }
}

impl EnergyModel for PairwiseMrf {
    fn num_vars(&self) -> usize {
        self.fields.len()
    }

    fn energy(&self, s: &[Spin]) -> f64 {
        debug_assert_eq!(s.len(), self.fields.len());
        let mut e = self.constant;
        for &(i, j, w) in &self.edges {
            e -= w * (s[i] * s[j]) as f64;
        }
        for (h, &si) in self.fields.iter().zip(s) {
            e -= h * si as f64;
        }
        e
    }

    #[inline]
    fn flip_delta(&self, s: &[Spin], i: usize) -> f64 {
        2.0 * s[i] as f64 * self.local_field(s, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_of_a_hand_computed_triangle() {
        // E = -(1*s0 s1) - (-2 * s1 s2) - 0.5 s0 + 0.25 s2
        let m = PairwiseMrf::new(vec![0.5, 0.0, -0.25], &[(0, 1, 1.0), (2, 1, -2.0)]).unwrap();
        let s = [1, -1, 1];
        // -(1*-1) - (-2 * -1) - 0.5 + 0.25 = 1 - 2 - 0.5 + 0.25 = -1.25
        assert_eq!(m.energy(&s), -1.25);
        for i in 0..3 {
            let mut t = s;
            t[i] = -t[i];
            assert!((m.flip_delta(&s, i) - (m.energy(&t) - m.energy(&s))).abs() < 1e-12);
        }
    }

    #[test]
    fn duplicate_pairs_add_and_bad_input_is_refused() {
        let m = PairwiseMrf::new(vec![0.0; 2], &[(0, 1, 1.0), (1, 0, 0.5)]).unwrap();
        assert_eq!(m.edges(), &[(0, 1, 1.5)]);
        assert!(PairwiseMrf::new(vec![0.0; 2], &[(0, 0, 1.0)]).is_err());
        assert!(PairwiseMrf::new(vec![0.0; 2], &[(0, 2, 1.0)]).is_err());
        assert!(PairwiseMrf::new(vec![f64::NAN, 0.0], &[]).is_err());
        assert!(PairwiseMrf::new(vec![0.0; 2], &[(0, 1, f64::INFINITY)]).is_err());
        let asym = vec![vec![0.0, 1.0], vec![2.0, 0.0]];
        assert!(PairwiseMrf::from_dense(vec![0.0; 2], &asym).is_err());
        let diag = vec![vec![1.0, 0.0], vec![0.0, 0.0]];
        assert!(PairwiseMrf::from_dense(vec![0.0; 2], &diag).is_err());
    }
}
