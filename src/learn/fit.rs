//! Fitting a fully visible pairwise binary MRF (an Ising model with per-edge couplings) to
//! binary data by maximum pseudo-likelihood (Besag 1975), solved with L-BFGS (OWL-QN with l1).
//!
//! Spins are s = 2x - 1 (bit 1 is spin +1); the model is
//! E(s) = -sum_{(i,j) in edges} J_ij s_i s_j - sum_i h_i s_i, with one J per edge (the
//! symmetric, joint form of pseudo-likelihood: the conditionals of i and of j share J_ij).
//!
//! The objective, over N examples s^n, is
//!
//! L(J, h) = -(1/N) sum_n sum_i ln p(s_i^n | s_-i^n) + (l2 / 2) sum_edges J_ij^2,
//!
//! with p(s_i | s_-i) = 1 / (1 + exp(-2 s_i f_i)) and the local field
//! f_i = h_i + sum_{j ~ i} J_ij s_j, so -ln p(s_i | s_-i) = softplus(-2 s_i f_i). Fields are not
//! penalised. The objective is convex in (J, h) (a sum of softplus of linear functions plus a
//! convex penalty), so a quasi-Newton method reaches its minimum; see [`fit_pseudo_likelihood`].
//! An optional l1 sum_edges |J_ij| term is handled by OWL-QN ([`minimise_owlqn`]).
//! [`fit_asymmetric_pl`] is the per-spin-regression estimator of Aurell & Ekeberg (2012), and
//! [`fit_mean_field`] the naive mean-field inversion.

use rayon::prelude::*;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::model::pairwise::Adjacency;
use crate::model::{Boundary, PairwiseMrf};

/// Examples per parallel chunk: partial sums are formed per chunk and added in chunk order,
/// so the result does not depend on the number of threads.
pub const CHUNK_EXAMPLES: usize = 256;

/// Pairs kept by L-BFGS (Nocedal & Wright 2006, section 7.2, suggest 3 to 20).
pub const LBFGS_MEMORY: usize = 10;

/// Armijo sufficient-decrease constant c1 (Nocedal & Wright 2006, section 3.1).
const ARMIJO_C1: f64 = 1e-4;

/// Step halvings tried by the backtracking line search before giving up.
const MAX_BACKTRACKS: usize = 60;

/// Every pair (i, j), i < j, of `n` variables, in lexicographic order.
pub fn complete_edges(n: usize) -> Vec<(usize, usize)> {
    let mut edges = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            edges.push((i, j));
        }
    }
    edges
}

/// The nearest-neighbour bonds of a `width` x `height` lattice (row-major sites), each pair
/// once as (i, j) with i < j, sorted; a periodic side of length 2 gives its pair once.
pub fn lattice_edges(
    width: usize,
    height: usize,
    boundary: Boundary,
) -> Result<Vec<(usize, usize)>> {
    let lattice = crate::model::IsingLattice::new(width, height, boundary, 0.0, 0.0)?;
    Ok(normalise_edges(lattice.bonds()))
}

/// The edges sorted as (min, max) without repeats, after checking that `data` has examples
/// and that every edge joins two distinct columns of it.
fn checked_edges(data: &Dataset, edges: &[(usize, usize)]) -> Result<Vec<(usize, usize)>> {
    let n = data.cols();
    if data.rows() == 0 {
        return Err(Error::param("--data", "the dataset has no examples"));
    }
    for &(i, j) in edges {
        if i >= n || j >= n {
            return Err(Error::SizeMismatch(format!(
                "edge ({i}, {j}) names a variable out of range (the data has {n} columns)"
            )));
        }
        if i == j {
            return Err(Error::InvalidModel(format!("self edge on variable {i}")));
        }
    }
    Ok(normalise_edges(edges.to_vec()))
}

/// Sorts pairs as (min, max) and removes repeats.
fn normalise_edges(pairs: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = pairs
        .into_iter()
        .map(|(i, j)| (i.min(j), i.max(j)))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// Settings of [`fit_pseudo_likelihood`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitParams {
    /// Weight of the (l2 / 2) sum J^2 penalty on couplings (>= 0).
    pub l2: f64,
    /// Weight of the l1 sum |J| penalty on couplings (>= 0); solved by OWL-QN when > 0.
    pub l1: f64,
    /// Stop when the largest absolute gradient component is at most this (> 0).
    pub tolerance: f64,
    /// Stop after this many L-BFGS iterations even if the tolerance is not reached.
    pub max_iterations: usize,
}

impl Default for FitParams {
    fn default() -> Self {
        FitParams {
            l2: 0.0,
            l1: 0.0,
            tolerance: 1e-6,
            max_iterations: 10_000,
        }
    }
}

impl FitParams {
    /// Checks the ranges: l2 and l1 finite and >= 0, tolerance finite and > 0.
    pub fn validate(&self) -> Result<()> {
        if !(self.l1.is_finite() && self.l1 >= 0.0) {
            return Err(Error::param(
                "--l1",
                format!("must be a finite number >= 0, got {}", self.l1),
            ));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(Error::param(
                "--l2",
                format!("must be a finite number >= 0, got {}", self.l2),
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
            return Err(Error::param(
                "--tolerance",
                format!("must be a finite number > 0, got {}", self.tolerance),
            ));
        }
        Ok(())
    }
}

/// The pseudo-likelihood objective of a dataset on a fixed edge set.
///
/// Parameters are one vector theta = (h_0, ..., h_{n-1}, J_e0, J_e1, ...), fields first, then
/// one coupling per edge in the order of [`edges`](PseudoLikelihoodObjective::edges).
#[derive(Debug, Clone)]
pub struct PseudoLikelihoodObjective<'a> {
    data: &'a Dataset,
    edges: Vec<(usize, usize)>,
    l2: f64,
    /// CSR adjacency: for variable i, entries row_start[i]..row_start[i+1] of `neighbour` and
    /// `edge_of` give its neighbours j and the index of edge (i, j).
    row_start: Vec<usize>,
    neighbour: Vec<usize>,
    edge_of: Vec<usize>,
    /// The dense (table) layout, chosen for dense edge sets; `None` sums over the CSR rows.
    dense: Option<DenseLayout>,
}

/// The examples packed 8 bits to a byte for the table evaluation of the pseudo-likelihood
/// (see [`PseudoLikelihoodObjective::value_and_gradient`]).
#[derive(Debug, Clone)]
struct DenseLayout {
    /// Bytes per example: ceil(n / 8).
    groups: usize,
    /// Row-major `rows x groups`: bit k of byte b of example r is x_{8b+k} of example r.
    packed: Vec<u8>,
}

impl DenseLayout {
    fn new(data: &Dataset) -> Self {
        let n = data.cols();
        let groups = n.div_ceil(GROUP_BITS);
        let mut packed = vec![0u8; data.rows() * groups];
        for (row, bytes) in data.iter_rows().zip(packed.chunks_exact_mut(groups.max(1))) {
            for (j, &x) in row.iter().enumerate() {
                bytes[j / GROUP_BITS] |= x << (j % GROUP_BITS);
            }
        }
        DenseLayout { groups, packed }
    }
}

/// Variables per group of the table evaluation: one byte of the packed example.
const GROUP_BITS: usize = 8;

/// Table entries per group: every value of a byte.
const GROUP_VALUES: usize = 1 << GROUP_BITS;

/// Examples per parallel chunk of the table evaluation. Each chunk ends with a reduction of
/// its tables costing about 64 n^2 additions (n/8 groups x 8 bits x 128 byte values x n), so
/// chunks are large enough for that to stay small next to the 2 n^2 / 8 additions per example.
pub const DENSE_CHUNK_EXAMPLES: usize = 4096;

/// The table evaluation is used when edges >= n^2 / `DENSE_MIN_FILL` (it costs about n^2 / 4
/// additions per example, the CSR sum about 4 per edge) and n <= [`DENSE_MAX_VARIABLES`].
const DENSE_MIN_FILL: usize = 16;

/// Largest n of the table evaluation: its two tables hold n/8 x 256 x n doubles each (4 MiB
/// at n = 256), and past that they no longer fit a core's cache.
pub const DENSE_MAX_VARIABLES: usize = 256;

impl<'a> PseudoLikelihoodObjective<'a> {
    /// The objective of `data` on `edges` (pairs of column indices; order and repeats do not
    /// matter, they are sorted and merged) with penalty weight `l2`. Errors when there are no
    /// examples, an edge names a column out of range or joins a column to itself.
    pub fn new(data: &'a Dataset, edges: &[(usize, usize)], l2: f64) -> Result<Self> {
        let n = data.cols();
        let edges = checked_edges(data, edges)?;
        let Adjacency {
            row_start,
            neighbour,
            edge_of,
        } = Adjacency::new(n, edges.iter().copied());
        let dense = (n <= DENSE_MAX_VARIABLES && edges.len() * DENSE_MIN_FILL >= n * n)
            .then(|| DenseLayout::new(data));
        Ok(PseudoLikelihoodObjective {
            data,
            edges,
            l2,
            row_start,
            neighbour,
            edge_of,
            dense,
        })
    }

    /// The same objective evaluated by the CSR sum whatever the density (for tests and
    /// benchmarks comparing the two evaluations).
    pub fn with_sparse_evaluation(mut self) -> Self {
        self.dense = None;
        self
    }

    /// True when [`value_and_gradient`](Self::value_and_gradient) uses the table evaluation.
    pub fn uses_dense_evaluation(&self) -> bool {
        self.dense.is_some()
    }

    /// The edges (i < j, sorted), in the order of the couplings in theta.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Length of theta: variables plus edges.
    pub fn num_params(&self) -> usize {
        self.data.cols() + self.edges.len()
    }

    /// The objective L(theta) and its gradient, written into `grad`.
    ///
    /// With f_i = h_i + sum_j J_ij s_j and the per-term loss l_i = softplus(-2 s_i f_i), the
    /// derivative dl_i/df_i = -2 s_i sigma(-2 s_i f_i) =: g_i (sigma the logistic function), so
    /// dL/dh_i = (1/N) sum_n g_i^n and, since J_ij enters f_i (times s_j) and f_j (times s_i),
    /// dL/dJ_ij = (1/N) sum_n (g_i^n s_j^n + g_j^n s_i^n) + l2 J_ij.
    ///
    /// Examples are summed in chunks of [`CHUNK_EXAMPLES`] (table evaluation:
    /// [`DENSE_CHUNK_EXAMPLES`]) in parallel and the chunk sums added in chunk order: the same
    /// result for any number of threads.
    ///
    /// Dense edge sets (a complete graph) use a table evaluation that is exact in f64 and about
    /// 8 times cheaper than the sum over neighbours: with x_j = (s_j + 1) / 2,
    /// f_i = (h_i - sum_j J_ij) + sum_b T_b\[byte_b\]_i, where byte b of an example packs
    /// x_{8b}..x_{8b+7} and T_b\[v\]_i = 2 sum_{k: bit k of v} J_{i, 8b+k} is tabulated for all
    /// 256 values v once per evaluation; so an example costs n/8 vector additions instead of
    /// one n x n product. The coupling gradient is transposed the same way: per chunk,
    /// U_b\[v\] = sum of g^n over the examples whose byte b is v, and then
    /// sum_n g_i^n s_j^n = 2 sum_{v: bit k of v} U_b\[v\]_i - sum_n g_i^n for j = 8b + k.
    /// The value uses sum_i ln(1 + t_i) = ln prod_i (1 + t_i) per example (each factor in
    /// (1, 2], so the product of n <= 256 factors stays finite), one logarithm per example.
    pub fn value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.data.cols();
        let p = self.num_params();
        assert_eq!(theta.len(), p, "theta has the wrong length");
        assert_eq!(grad.len(), p, "gradient has the wrong length");
        grad.fill(0.0);
        let mut value = 0.0;
        if let Some(dense) = &self.dense {
            value = self.dense_sums(dense, theta, grad);
        } else {
            let chunks: Vec<(f64, Vec<f64>)> = self
                .data
                .data()
                .par_chunks(CHUNK_EXAMPLES * n)
                .map(|rows| self.chunk_sums(theta, rows))
                .collect();
            for (v, g) in &chunks {
                value += v;
                for (a, b) in grad.iter_mut().zip(g) {
                    *a += b;
                }
            }
        }
        let inv_n = 1.0 / self.data.rows() as f64;
        value *= inv_n;
        for g in grad.iter_mut() {
            *g *= inv_n;
        }
        for e in 0..self.edges.len() {
            let j = theta[n + e];
            value += 0.5 * self.l2 * j * j;
            grad[n + e] += self.l2 * j;
        }
        value
    }

    /// The objective without the gradient.
    pub fn value(&self, theta: &[f64]) -> f64 {
        let mut grad = vec![0.0; self.num_params()];
        self.value_and_gradient(theta, &mut grad)
    }

    /// The table evaluation (see [`value_and_gradient`](Self::value_and_gradient)): writes the
    /// unnormalised gradient sums (without 1/N and the penalty) into `grad` (zeroed) and
    /// returns the unnormalised sum of losses.
    fn dense_sums(&self, dense: &DenseLayout, theta: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.data.cols();
        let groups = dense.groups;
        let (fields, couplings) = theta.split_at(n);
        // Dense symmetric couplings, row i = J_i.
        let mut coupling_matrix = vec![0.0; n * n];
        for (&(i, j), &w) in self.edges.iter().zip(couplings) {
            coupling_matrix[i * n + j] = w;
            coupling_matrix[j * n + i] = w;
        }
        // base_i = h_i - sum_j J_ij: the field of the all-minus state.
        let base: Vec<f64> = (0..n)
            .map(|i| fields[i] - coupling_matrix[i * n..(i + 1) * n].iter().sum::<f64>())
            .collect();
        // table[(b * 256 + v) * n + i] = 2 sum_{k in v} J_{i, 8b+k} (J symmetric: row 8b+k).
        let mut table = vec![0.0; groups * GROUP_VALUES * n];
        for b in 0..groups {
            let group = &mut table[b * GROUP_VALUES * n..(b + 1) * GROUP_VALUES * n];
            for v in 1..GROUP_VALUES {
                let low = v.trailing_zeros() as usize;
                let j = b * GROUP_BITS + low;
                let (done, rest) = group.split_at_mut(v * n);
                let entry = &mut rest[..n];
                if j < n {
                    let previous = &done[(v & (v - 1)) * n..][..n];
                    let row = &coupling_matrix[j * n..(j + 1) * n];
                    for ((e, p), w) in entry.iter_mut().zip(previous).zip(row) {
                        *e = p + 2.0 * w;
                    }
                }
            }
        }
        let chunk_rows = DENSE_CHUNK_EXAMPLES;
        let chunks: Vec<(f64, Vec<f64>, Vec<f64>)> = self
            .data
            .data()
            .par_chunks(chunk_rows * n)
            .zip(dense.packed.par_chunks(chunk_rows * groups))
            .map_init(
                || DenseScratch::new(n, groups),
                |scratch, (rows, packed)| {
                    self.dense_chunk(groups, &base, &table, rows, packed, scratch)
                },
            )
            .collect();
        let mut value = 0.0;
        // marginal[j * n + i] = sum over examples with x_j = 1 of g_i.
        let mut marginal = vec![0.0; n * n];
        for (v, field_sums, chunk_marginal) in &chunks {
            value += v;
            for (a, b) in grad[..n].iter_mut().zip(field_sums) {
                *a += b;
            }
            for (a, b) in marginal.iter_mut().zip(chunk_marginal) {
                *a += b;
            }
        }
        let (field_grad, coupling_grad) = grad.split_at_mut(n);
        for (e, &(i, j)) in self.edges.iter().enumerate() {
            // sum_n g_i s_j = 2 sum_{x_j = 1} g_i - sum_n g_i, and the same with i, j swapped.
            coupling_grad[e] = 2.0 * marginal[j * n + i] - field_grad[i]
                + 2.0 * marginal[i * n + j]
                - field_grad[j];
        }
        value
    }

    /// One chunk of the table evaluation: (sum of losses, sum of g per variable,
    /// `marginal[j * n + i]` = sum of g_i over the examples with x_j = 1).
    fn dense_chunk(
        &self,
        groups: usize,
        base: &[f64],
        table: &[f64],
        rows: &[u8],
        packed: &[u8],
        scratch: &mut DenseScratch,
    ) -> (f64, Vec<f64>, Vec<f64>) {
        let n = self.data.cols();
        let DenseScratch {
            buckets,
            field,
            dloss,
        } = scratch;
        buckets.fill(0.0);
        let mut value = 0.0;
        let mut field_sums = vec![0.0; n];
        for (row, bytes) in rows.chunks_exact(n).zip(packed.chunks_exact(groups)) {
            field.copy_from_slice(base);
            for (b, &byte) in bytes.iter().enumerate() {
                let entry = &table[(b * GROUP_VALUES + byte as usize) * n..][..n];
                for (f, t) in field.iter_mut().zip(entry) {
                    *f += t;
                }
            }
            // u = -2 s_i f_i; loss softplus(u) = max(u, 0) + ln(1 + t) with t = e^-|u|,
            // derivative in f: g_i = -2 s_i sigma(u). The exponentials first (a call each),
            // then a loop without calls that the compiler vectorises; the product runs in four
            // interleaved accumulators so that its multiplications do not wait on each other.
            for ((t, &f), &x) in dloss.iter_mut().zip(field.iter()).zip(row) {
                let u = (2.0 - 4.0 * x as f64) * f;
                *t = (-u.abs()).exp();
            }
            let mut positive_parts = 0.0;
            let mut products = [1.0f64; 4];
            for (k, ((g, &f), &x)) in dloss.iter_mut().zip(field.iter()).zip(row).enumerate() {
                let two_s = 4.0 * x as f64 - 2.0;
                let u = -two_s * f;
                let t = *g;
                let one_plus_t = 1.0 + t;
                positive_parts += u.max(0.0);
                products[k % 4] *= one_plus_t;
                let sigma = if u >= 0.0 { 1.0 } else { t } / one_plus_t;
                *g = -two_s * sigma;
            }
            let product = (products[0] * products[1]) * (products[2] * products[3]);
            value += positive_parts + product.ln();
            for (a, g) in field_sums.iter_mut().zip(dloss.iter()) {
                *a += g;
            }
            for (b, &byte) in bytes.iter().enumerate() {
                let bucket = &mut buckets[(b * GROUP_VALUES + byte as usize) * n..][..n];
                for (a, g) in bucket.iter_mut().zip(dloss.iter()) {
                    *a += g;
                }
            }
        }
        let mut marginal = vec![0.0; n * n];
        for b in 0..groups {
            for k in 0..GROUP_BITS.min(n - b * GROUP_BITS) {
                let j = b * GROUP_BITS + k;
                let out = &mut marginal[j * n..(j + 1) * n];
                for v in (0..GROUP_VALUES).filter(|v| v >> k & 1 == 1) {
                    let bucket = &buckets[(b * GROUP_VALUES + v) * n..][..n];
                    for (o, a) in out.iter_mut().zip(bucket) {
                        *o += a;
                    }
                }
            }
        }
        (value, field_sums, marginal)
    }

    /// Unnormalised sums over the examples in `rows` (row-major bits): sum of losses, and the
    /// gradient sums (without 1/N and without the penalty).
    fn chunk_sums(&self, theta: &[f64], rows: &[u8]) -> (f64, Vec<f64>) {
        let n = self.data.cols();
        let (fields, couplings) = theta.split_at(n);
        let mut grad = vec![0.0; theta.len()];
        let mut spins = vec![0.0f64; n];
        let mut dloss = vec![0.0f64; n];
        let mut value = 0.0;
        for row in rows.chunks_exact(n) {
            for (s, &x) in spins.iter_mut().zip(row) {
                *s = if x != 0 { 1.0 } else { -1.0 };
            }
            for i in 0..n {
                let range = self.row_start[i]..self.row_start[i + 1];
                let mut f = fields[i];
                for (&j, &e) in self.neighbour[range.clone()]
                    .iter()
                    .zip(&self.edge_of[range])
                {
                    f += couplings[e] * spins[j];
                }
                // u = -2 s_i f_i; loss softplus(u), derivative in f: -2 s_i sigma(u).
                let u = -2.0 * spins[i] * f;
                let (softplus, sigma) = softplus_and_sigmoid(u);
                value += softplus;
                dloss[i] = -2.0 * spins[i] * sigma;
                grad[i] += dloss[i];
            }
            let grad_j = &mut grad[n..];
            for (e, &(i, j)) in self.edges.iter().enumerate() {
                grad_j[e] += dloss[i] * spins[j] + dloss[j] * spins[i];
            }
        }
        (value, grad)
    }
}

/// Per-thread buffers of the table evaluation.
struct DenseScratch {
    /// `groups x 256 x n`: per byte value, the sum of g over the chunk's examples.
    buckets: Vec<f64>,
    field: Vec<f64>,
    dloss: Vec<f64>,
}

impl DenseScratch {
    fn new(n: usize, groups: usize) -> Self {
        DenseScratch {
            buckets: vec![0.0; groups * GROUP_VALUES * n],
            field: vec![0.0; n],
            dloss: vec![0.0; n],
        }
    }
}

/// softplus(u) = ln(1 + e^u) and sigma(u) = 1 / (1 + e^-u), both from one exp(-|u|) without
/// overflow.
fn softplus_and_sigmoid(u: f64) -> (f64, f64) {
    let t = (-u.abs()).exp();
    let softplus = u.max(0.0) + t.ln_1p();
    let sigma = if u >= 0.0 {
        1.0 / (1.0 + t)
    } else {
        t / (1.0 + t)
    };
    (softplus, sigma)
}

/// What [`fit_pseudo_likelihood`] returns.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// The fitted model (energy constant 0).
    pub model: PairwiseMrf,
    /// The objective at the returned parameters.
    pub objective: f64,
    /// Largest absolute gradient component there.
    pub gradient_norm: f64,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// True when the gradient norm reached the tolerance.
    pub converged: bool,
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises a smooth function by L-BFGS from `theta` (updated in place) until the largest
/// absolute gradient component is at most `tolerance` or `max_iterations` iterations ran.
///
/// The search direction is -H g by the two-loop recursion over the last [`LBFGS_MEMORY`] pairs
/// (s_k, y_k), initial matrix gamma I with gamma = s'y / y'y of the newest pair (Nocedal &
/// Wright 2006, algorithms 7.4 and 7.5); the step is found by backtracking from 1 (halving)
/// until the Armijo condition f(x + a d) <= f(x) + c1 a g'd holds. Pairs with s'y <= 0 (never
/// for a strictly convex function) are not stored. Returns (value, gradient norm, iterations,
/// converged). A line search that cannot decrease f (round-off at the optimum) ends the run.
/// This is [`minimise_owlqn`] with no l1 term.
pub fn minimise_lbfgs(
    eval: impl FnMut(&[f64], &mut [f64]) -> f64,
    theta: &mut [f64],
    tolerance: f64,
    max_iterations: usize,
) -> (f64, f64, usize, bool) {
    minimise_owlqn(eval, theta, 0.0, 0, tolerance, max_iterations)
}

/// The minimum-norm subgradient of F(theta) = f(theta) + l1 sum_{k >= penalised_from} |theta_k|
/// given the gradient `grad` of the smooth part f, written into `out`: for a penalised k,
/// g_k + l1 sign(theta_k) when theta_k != 0, and at theta_k = 0 the element of
/// [g_k - l1, g_k + l1] nearest 0 (0 when |g_k| <= l1); g_k for the others. F is minimal
/// exactly where it is 0 (for convex f).
pub fn min_norm_subgradient(
    theta: &[f64],
    grad: &[f64],
    l1: f64,
    penalised_from: usize,
    out: &mut [f64],
) {
    for (k, ((o, &x), &g)) in out.iter_mut().zip(theta).zip(grad).enumerate() {
        *o = if k < penalised_from || l1 == 0.0 {
            g
        } else if x > 0.0 {
            g + l1
        } else if x < 0.0 {
            g - l1
        } else if g + l1 < 0.0 {
            g + l1
        } else if g - l1 > 0.0 {
            g - l1
        } else {
            0.0
        };
    }
}

/// Minimises F(theta) = f(theta) + l1 sum_{k >= penalised_from} |theta_k| (f smooth, given by
/// `eval` as value and gradient) from `theta` (updated in place) by the orthant-wise
/// limited-memory quasi-Newton method OWL-QN (Andrew & Gao 2007), until the largest absolute
/// component of the minimum-norm subgradient ([`min_norm_subgradient`]) is at most `tolerance`
/// or `max_iterations` iterations ran.
///
/// Each iteration: the pseudo-gradient v (the minimum-norm subgradient) replaces the gradient
/// in the L-BFGS two-loop recursion (pairs s, y of the smooth gradient, as in
/// [`minimise_lbfgs`]); components of the direction d whose sign disagrees with -v are set to
/// 0; the orthant xi_k = sign(theta_k), or sign(-v_k) at 0, is fixed; trial points
/// theta + a d are projected onto it (a penalised component that would change sign becomes 0)
/// and the step halves from 1 until F(trial) <= F(theta) + c1 v'(trial - theta). With
/// l1 = 0 this is exactly L-BFGS. Returns (F, subgradient norm, iterations, converged). The
/// run also ends when no step decreases F or an accepted step leaves it unchanged (the
/// tolerance is below what the round-off of F resolves); converged then says whether the
/// tolerance was met.
pub fn minimise_owlqn(
    mut eval: impl FnMut(&[f64], &mut [f64]) -> f64,
    theta: &mut [f64],
    l1: f64,
    penalised_from: usize,
    tolerance: f64,
    max_iterations: usize,
) -> (f64, f64, usize, bool) {
    let p = theta.len();
    let penalty = |t: &[f64]| -> f64 {
        if l1 == 0.0 {
            0.0
        } else {
            l1 * t[penalised_from.min(p)..]
                .iter()
                .map(|x| x.abs())
                .sum::<f64>()
        }
    };
    let mut grad = vec![0.0; p];
    let mut value = eval(theta, &mut grad) + penalty(theta);
    let mut pseudo = vec![0.0; p];
    min_norm_subgradient(theta, &grad, l1, penalised_from, &mut pseudo);
    let mut s_hist: Vec<Vec<f64>> = Vec::with_capacity(LBFGS_MEMORY);
    let mut y_hist: Vec<Vec<f64>> = Vec::with_capacity(LBFGS_MEMORY);
    let mut rho_hist: Vec<f64> = Vec::with_capacity(LBFGS_MEMORY);
    let mut alpha = [0.0; LBFGS_MEMORY];
    let mut direction = vec![0.0; p];
    let mut orthant = vec![0.0; p];
    let mut trial = vec![0.0; p];
    let mut trial_grad = vec![0.0; p];
    let mut iterations = 0;
    while max_abs(&pseudo) > tolerance && iterations < max_iterations {
        // Two-loop recursion: direction = -H pseudo.
        for (d, g) in direction.iter_mut().zip(&pseudo) {
            *d = -g;
        }
        let m = s_hist.len();
        for k in (0..m).rev() {
            alpha[k] = rho_hist[k] * dot(&s_hist[k], &direction);
            for (d, y) in direction.iter_mut().zip(&y_hist[k]) {
                *d -= alpha[k] * y;
            }
        }
        let gamma = if m > 0 {
            dot(&s_hist[m - 1], &y_hist[m - 1]) / dot(&y_hist[m - 1], &y_hist[m - 1])
        } else {
            // First step: a unit step of at most length 1 in the largest coordinate.
            1.0 / max_abs(&pseudo).max(1.0)
        };
        for d in direction.iter_mut() {
            *d *= gamma;
        }
        for k in 0..m {
            let beta = rho_hist[k] * dot(&y_hist[k], &direction);
            for (d, s) in direction.iter_mut().zip(&s_hist[k]) {
                *d += (alpha[k] - beta) * s;
            }
        }
        if l1 != 0.0 {
            // Keep only the components that descend along -pseudo.
            for (d, v) in direction.iter_mut().zip(&pseudo) {
                if *d * v >= 0.0 {
                    *d = 0.0;
                }
            }
        }
        let mut slope = dot(&pseudo, &direction);
        if slope >= 0.0 {
            // Not a descent direction (round-off): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            let scale = 1.0 / max_abs(&pseudo).max(1.0);
            for (d, g) in direction.iter_mut().zip(&pseudo) {
                *d = -g * scale;
            }
            slope = dot(&pseudo, &direction);
        }
        if l1 != 0.0 {
            for (k, (o, (&x, &v))) in orthant
                .iter_mut()
                .zip(theta.iter().zip(&pseudo))
                .enumerate()
            {
                *o = if k < penalised_from {
                    0.0
                } else if x != 0.0 {
                    x.signum()
                } else {
                    -v.signum()
                };
            }
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..MAX_BACKTRACKS {
            for ((t, x), d) in trial.iter_mut().zip(theta.iter()).zip(&direction) {
                *t = x + step * d;
            }
            let decrease = if l1 == 0.0 {
                step * slope
            } else {
                for (k, (t, &o)) in trial.iter_mut().zip(&orthant).enumerate() {
                    if k >= penalised_from && *t * o <= 0.0 {
                        *t = 0.0;
                    }
                }
                let moved: f64 = pseudo
                    .iter()
                    .zip(trial.iter().zip(theta.iter()))
                    .map(|(v, (t, x))| v * (t - x))
                    .sum();
                moved
            };
            let v = eval(&trial, &mut trial_grad) + penalty(&trial);
            if v.is_finite() && v <= value + ARMIJO_C1 * decrease {
                accepted = Some(v);
                break;
            }
            step *= 0.5;
        }
        let Some(new_value) = accepted else { break };
        iterations += 1;
        // A step accepted without any decrease (the Armijo margin below round-off of F) means
        // the tolerance is finer than F can resolve: take it, then stop.
        let stalled = new_value >= value;
        // New pair s = trial - theta, y = g_new - g_old (smooth gradients), reusing the oldest
        // buffers when full.
        let (mut s_new, mut y_new) = if s_hist.len() == LBFGS_MEMORY {
            rho_hist.remove(0);
            (s_hist.remove(0), y_hist.remove(0))
        } else {
            (vec![0.0; p], vec![0.0; p])
        };
        for k in 0..p {
            s_new[k] = trial[k] - theta[k];
            y_new[k] = trial_grad[k] - grad[k];
        }
        let sy = dot(&s_new, &y_new);
        theta.copy_from_slice(&trial);
        grad.copy_from_slice(&trial_grad);
        min_norm_subgradient(theta, &grad, l1, penalised_from, &mut pseudo);
        value = new_value;
        if sy > 0.0 {
            s_hist.push(s_new);
            y_hist.push(y_new);
            rho_hist.push(1.0 / sy);
        }
        if stalled {
            break;
        }
    }
    let norm = max_abs(&pseudo);
    (value, norm, iterations, norm <= tolerance)
}

/// Fits fields and couplings on `edges` to `data` by minimising the pseudo-likelihood
/// objective (module docs) plus `params.l1` sum_edges |J_ij| with [`minimise_owlqn`]
/// (L-BFGS when l1 = 0), starting from zero couplings and the fields of the independent-spin
/// model. The outcome's objective includes both penalties and its gradient norm is that of
/// the minimum-norm subgradient.
pub fn fit_pseudo_likelihood(
    data: &Dataset,
    edges: &[(usize, usize)],
    params: &FitParams,
) -> Result<FitOutcome> {
    params.validate()?;
    let objective = PseudoLikelihoodObjective::new(data, edges, params.l2)?;
    let mut theta = vec![0.0; objective.num_params()];
    // Start from the independent-spin model: h_i = atanh(m_i), the optimum without couplings;
    // m_i is clamped to |m_i| <= 1 - 1e-6 so that a constant column starts at a finite field
    // (|h| = 7.25) where its gradient is already about 2e-6.
    for (h, m) in theta.iter_mut().zip(data.column_means()) {
        *h = (2.0 * m - 1.0).clamp(-1.0 + 1e-6, 1.0 - 1e-6).atanh();
    }
    let n = data.cols();
    let (value, gradient_norm, iterations, converged) = minimise_owlqn(
        |t, g| objective.value_and_gradient(t, g),
        &mut theta,
        params.l1,
        n,
        params.tolerance,
        params.max_iterations,
    );
    let couplings: Vec<(usize, usize, f64)> = objective
        .edges()
        .iter()
        .zip(&theta[n..])
        .map(|(&(i, j), &w)| (i, j, w))
        .collect();
    let model = PairwiseMrf::new(theta[..n].to_vec(), &couplings)?;
    Ok(FitOutcome {
        model,
        objective: value,
        gradient_norm,
        iterations,
        converged,
    })
}

/// One term of asymmetric pseudo-likelihood (Aurell & Ekeberg 2012): the logistic
/// regression of spin `i` on its neighbours, with its own field and couplings.
///
/// Parameters are (h_i, w_1, ..., w_d) for the neighbours j_1 < ... < j_d of i; the objective
/// is L_i = -(1/N) sum_n ln p(s_i^n | s_-i^n) + (l2 / 2) sum_k w_k^2, with
/// p(s_i | s_-i) = sigma(2 s_i f_i) and f_i = h_i + sum_k w_k s_{j_k}.
#[derive(Debug, Clone)]
pub struct SpinRegression<'a> {
    data: &'a Dataset,
    spin: usize,
    neighbours: Vec<usize>,
    l2: f64,
}

impl<'a> SpinRegression<'a> {
    /// The regression of column `spin` of `data` on the columns `neighbours` (distinct, in
    /// range, not `spin`; callers check this).
    pub fn new(data: &'a Dataset, spin: usize, neighbours: Vec<usize>, l2: f64) -> Self {
        SpinRegression {
            data,
            spin,
            neighbours,
            l2,
        }
    }

    /// The neighbours, in the order of the couplings in theta.
    pub fn neighbours(&self) -> &[usize] {
        &self.neighbours
    }

    /// Length of theta: the field and one weight per neighbour.
    pub fn num_params(&self) -> usize {
        1 + self.neighbours.len()
    }

    /// L_i(theta) and its gradient, written into `grad`: with g = -2 s_i sigma(-2 s_i f_i),
    /// dL_i/dh_i = (1/N) sum_n g^n and dL_i/dw_k = (1/N) sum_n g^n s_{j_k}^n + l2 w_k.
    /// The examples are summed in order on the calling thread.
    pub fn value_and_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        assert_eq!(theta.len(), self.num_params(), "theta has the wrong length");
        assert_eq!(
            grad.len(),
            self.num_params(),
            "gradient has the wrong length"
        );
        grad.fill(0.0);
        let (field, weights) = theta.split_at(1);
        let mut value = 0.0;
        for row in self.data.iter_rows() {
            let spin_of = |j: usize| 2.0 * row[j] as f64 - 1.0;
            let mut f = field[0];
            for (&j, w) in self.neighbours.iter().zip(weights) {
                f += w * spin_of(j);
            }
            let s = spin_of(self.spin);
            let (softplus, sigma) = softplus_and_sigmoid(-2.0 * s * f);
            value += softplus;
            let g = -2.0 * s * sigma;
            grad[0] += g;
            for (a, &j) in grad[1..].iter_mut().zip(&self.neighbours) {
                *a += g * spin_of(j);
            }
        }
        let inv_n = 1.0 / self.data.rows() as f64;
        value *= inv_n;
        for a in grad.iter_mut() {
            *a *= inv_n;
        }
        for (a, w) in grad[1..].iter_mut().zip(weights) {
            value += 0.5 * self.l2 * w * w;
            *a += self.l2 * w;
        }
        value
    }
}

/// Asymmetric pseudo-likelihood (Aurell & Ekeberg 2012): n independent regressions
/// [`SpinRegression`], each minimising L_i + l1 sum_k |w_k| by [`minimise_owlqn`] from
/// h_i = atanh(m_i) and w = 0, in parallel over spins (each regression runs on one thread, so
/// the result does not depend on the number of threads); then J_ij = (w_{i->j} + w_{j->i}) / 2
/// and h_i is the field of regression i.
///
/// A different estimator from [`fit_pseudo_likelihood`] (which shares one J_ij between the two
/// conditionals during the fit): they agree when the regressions are saturated (a single edge
/// without penalty, or no edges) and differ in general. The outcome's objective is
/// sum_i (L_i + l1 sum_k |w_k|) at the regression optima (not the symmetric objective at the
/// averaged model), its gradient norm the largest subgradient component over all regressions,
/// its iterations the most taken by any regression; converged when all converged.
pub fn fit_asymmetric_pl(
    data: &Dataset,
    edges: &[(usize, usize)],
    params: &FitParams,
) -> Result<FitOutcome> {
    params.validate()?;
    let edges = checked_edges(data, edges)?;
    let n = data.cols();
    let mut neighbours = vec![Vec::new(); n];
    for &(i, j) in &edges {
        neighbours[i].push(j);
        neighbours[j].push(i);
    }
    let means = data.column_means();
    let fits: Vec<RegressionFit> = neighbours
        .into_par_iter()
        .enumerate()
        .map(|(i, mut nbrs)| {
            nbrs.sort_unstable();
            let regression = SpinRegression::new(data, i, nbrs, params.l2);
            let mut theta = vec![0.0; regression.num_params()];
            theta[0] = (2.0 * means[i] - 1.0)
                .clamp(-1.0 + 1e-6, 1.0 - 1e-6)
                .atanh();
            let (value, norm, iterations, converged) = minimise_owlqn(
                |t, g| regression.value_and_gradient(t, g),
                &mut theta,
                params.l1,
                1,
                params.tolerance,
                params.max_iterations,
            );
            RegressionFit {
                neighbours: regression.neighbours,
                theta,
                value,
                norm,
                iterations,
                converged,
            }
        })
        .collect();
    // w_{i->j}: the weight of j in regression i (its neighbours are sorted).
    let weight = |i: usize, j: usize| -> f64 {
        let fit = &fits[i];
        let k = fit
            .neighbours
            .binary_search(&j)
            .expect("j is a neighbour of i");
        fit.theta[1 + k]
    };
    let couplings: Vec<(usize, usize, f64)> = edges
        .iter()
        .map(|&(i, j)| (i, j, 0.5 * (weight(i, j) + weight(j, i))))
        .collect();
    let fields: Vec<f64> = fits.iter().map(|f| f.theta[0]).collect();
    let model = PairwiseMrf::new(fields, &couplings)?;
    Ok(FitOutcome {
        model,
        objective: fits.iter().map(|f| f.value).sum(),
        gradient_norm: fits.iter().fold(0.0, |m, f| m.max(f.norm)),
        iterations: fits.iter().map(|f| f.iterations).max().unwrap_or(0),
        converged: fits.iter().all(|f| f.converged),
    })
}

/// The result of one regression of [`fit_asymmetric_pl`].
struct RegressionFit {
    neighbours: Vec<usize>,
    theta: Vec<f64>,
    value: f64,
    norm: f64,
    iterations: usize,
    converged: bool,
}

/// Inverts a dense symmetric positive-definite `n` x `n` matrix (row-major) by Gauss-Jordan
/// elimination with partial pivoting. Errors when a pivot is at most 1e-12 times the largest
/// diagonal entry (a singular or numerically singular matrix), naming `what`.
fn invert(matrix: &[f64], n: usize, what: &str) -> Result<Vec<f64>> {
    let mut a = matrix.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    let scale = (0..n).fold(0.0f64, |m, i| m.max(a[i * n + i].abs()));
    for col in 0..n {
        let pivot_row = (col..n)
            .max_by(|&r, &q| a[r * n + col].abs().total_cmp(&a[q * n + col].abs()))
            .unwrap_or(col);
        let pivot = a[pivot_row * n + col];
        if pivot.is_nan() || pivot.abs() <= 1e-12 * scale {
            return Err(Error::InvalidModel(format!(
                "{what} is singular (pivot {pivot:e} in column {col}): a column is constant or \
                 a linear combination of others"
            )));
        }
        if pivot_row != col {
            for k in 0..n {
                a.swap(pivot_row * n + k, col * n + k);
                inv.swap(pivot_row * n + k, col * n + k);
            }
        }
        for k in 0..n {
            a[col * n + k] /= pivot;
            inv[col * n + k] /= pivot;
        }
        for r in 0..n {
            let factor = a[r * n + col];
            if r != col && factor != 0.0 {
                for k in 0..n {
                    a[r * n + k] -= factor * a[col * n + k];
                    inv[r * n + k] -= factor * inv[col * n + k];
                }
            }
        }
    }
    Ok(inv)
}

/// Naive mean-field inversion: with spin means m_i and the covariance
/// C_ij = <s_i s_j> - m_i m_j of the data, J_ij = -(C^-1)_ij on the given edges (other pairs get
/// no coupling) and h_i = atanh(m_i) - sum_{j ~ i} J_ij m_j (Kappen & Rodriguez 1998). Fast and
/// biased; a baseline. Errors on a singular covariance (a constant column, duplicated
/// columns). The outcome's objective and gradient norm are those of the pseudo-likelihood
/// objective (with `params.l2`) at the estimate; iterations is 0.
pub fn fit_mean_field(
    data: &Dataset,
    edges: &[(usize, usize)],
    params: &FitParams,
) -> Result<FitOutcome> {
    params.validate()?;
    if params.l1 != 0.0 {
        return Err(Error::param(
            "--l1",
            "applies to --method pseudo-likelihood and asymmetric-pl, not to mean-field",
        ));
    }
    let objective = PseudoLikelihoodObjective::new(data, edges, params.l2)?;
    let n = data.cols();
    let rows = data.rows() as f64;
    let mut mean = vec![0.0; n];
    let mut second = vec![0.0; n * n];
    let mut spins = vec![0.0; n];
    for row in data.iter_rows() {
        for (s, &x) in spins.iter_mut().zip(row) {
            *s = if x != 0 { 1.0 } else { -1.0 };
        }
        for i in 0..n {
            mean[i] += spins[i];
            for j in 0..n {
                second[i * n + j] += spins[i] * spins[j];
            }
        }
    }
    for m in mean.iter_mut() {
        *m /= rows;
    }
    let covariance: Vec<f64> = (0..n * n)
        .map(|k| second[k] / rows - mean[k / n] * mean[k % n])
        .collect();
    let precision = invert(&covariance, n, "the covariance of --data")?;
    let couplings: Vec<f64> = objective
        .edges()
        .iter()
        .map(|&(i, j)| -0.5 * (precision[i * n + j] + precision[j * n + i]))
        .collect();
    let mut theta = vec![0.0; objective.num_params()];
    for i in 0..n {
        theta[i] = mean[i].atanh();
    }
    for (e, (&(i, j), &w)) in objective.edges().iter().zip(&couplings).enumerate() {
        theta[i] -= w * mean[j];
        theta[j] -= w * mean[i];
        theta[n + e] = w;
    }
    let mut grad = vec![0.0; theta.len()];
    let value = objective.value_and_gradient(&theta, &mut grad);
    let edge_list: Vec<(usize, usize, f64)> = objective
        .edges()
        .iter()
        .zip(&couplings)
        .map(|(&(i, j), &w)| (i, j, w))
        .collect();
    let model = PairwiseMrf::new(theta[..n].to_vec(), &edge_list)?;
    Ok(FitOutcome {
        model,
        objective: value,
        gradient_norm: max_abs(&grad),
        iterations: 0,
        converged: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_data() -> Dataset {
        // 4 variables, 7 examples, chosen by hand to be neither constant nor separable.
        let rows: [[u8; 4]; 7] = [
            [1, 0, 1, 1],
            [0, 0, 1, 0],
            [1, 1, 1, 0],
            [0, 1, 0, 1],
            [1, 1, 0, 0],
            [0, 0, 0, 1],
            [1, 0, 1, 0],
        ];
        Dataset::new(7, 4, rows.concat()).unwrap()
    }

    fn tiny_theta(p: usize) -> Vec<f64> {
        (0..p).map(|k| 0.3 * ((k as f64) * 1.7).sin()).collect()
    }

    #[test]
    fn objective_equals_definition_by_brute_force() {
        let data = tiny_data();
        let edges = [(0, 1), (1, 2), (0, 3), (2, 3)];
        let l2 = 0.7;
        let obj = PseudoLikelihoodObjective::new(&data, &edges, l2).unwrap();
        let theta = tiny_theta(obj.num_params());
        let n = 4;
        // Energy of a spin vector; the conditional of s_i is e^{-E(s)} normalised over s_i = +-1.
        let energy = |s: &[f64]| {
            let mut e = 0.0;
            for i in 0..n {
                e -= theta[i] * s[i];
            }
            for (k, &(i, j)) in obj.edges().iter().enumerate() {
                e -= theta[n + k] * s[i] * s[j];
            }
            e
        };
        let mut total = 0.0;
        for row in data.iter_rows() {
            let s: Vec<f64> = row.iter().map(|&x| 2.0 * x as f64 - 1.0).collect();
            for i in 0..n {
                let mut flipped = s.clone();
                flipped[i] = -s[i];
                let (a, b) = ((-energy(&s)).exp(), (-energy(&flipped)).exp());
                total -= (a / (a + b)).ln();
            }
        }
        let penalty: f64 = theta[n..].iter().map(|j| 0.5 * l2 * j * j).sum();
        let expected = total / data.rows() as f64 + penalty;
        // Two summation orders of ~30 terms of size ~1: agreement to 1e-12 relative.
        assert!(obj.uses_dense_evaluation());
        for evaluation in [obj.clone(), obj.clone().with_sparse_evaluation()] {
            let got = evaluation.value(&theta);
            assert!(
                (got - expected).abs() <= 1e-12 * expected.abs(),
                "{got} vs {expected}"
            );
        }
    }

    #[test]
    fn gradient_equals_central_differences() {
        let data = tiny_data();
        let obj = PseudoLikelihoodObjective::new(&data, &complete_edges(4), 0.3).unwrap();
        let theta = tiny_theta(obj.num_params());
        let mut grad = vec![0.0; obj.num_params()];
        obj.value_and_gradient(&theta, &mut grad);
        // Central differences have truncation error (h^2 / 6) |f'''| and round-off
        // ~ eps |f| / h; with h = 1e-5, |f| ~ 3 and third derivatives of order 10 (each term's is
        // at most 8 * 0.1 per unit of s, summed over 4 terms), both are below 1e-9: tolerance 1e-8.
        let h = 1e-5;
        for k in 0..theta.len() {
            let mut plus = theta.clone();
            let mut minus = theta.clone();
            plus[k] += h;
            minus[k] -= h;
            let numeric = (obj.value(&plus) - obj.value(&minus)) / (2.0 * h);
            assert!(
                (numeric - grad[k]).abs() <= 1e-8,
                "component {k}: analytic {} numeric {numeric}",
                grad[k]
            );
        }
    }

    /// `rows` x `cols` bits from a fixed xorshift stream, correlated between neighbours so
    /// that the fields and couplings matter.
    fn pseudo_random_data(rows: usize, cols: usize) -> Dataset {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut bits = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            let mut previous = 0u8;
            for _ in 0..cols {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bit = if state.is_multiple_of(4) {
                    1 - previous
                } else {
                    previous
                };
                let bit = if state.is_multiple_of(7) {
                    1 - bit
                } else {
                    bit
                };
                bits.push(bit);
                previous = bit;
            }
        }
        Dataset::new(rows, cols, bits).unwrap()
    }

    #[test]
    fn table_and_neighbour_sum_evaluations_agree() {
        // 20 variables: three byte groups, the last one partial; more examples than one chunk
        // of the table evaluation, so the chunk reduction is exercised.
        let data = pseudo_random_data(DENSE_CHUNK_EXAMPLES + 333, 20);
        for edges in [complete_edges(20), complete_edges(20)[..60].to_vec()] {
            let dense = PseudoLikelihoodObjective::new(&data, &edges, 0.2).unwrap();
            assert!(dense.uses_dense_evaluation());
            let sparse = dense.clone().with_sparse_evaluation();
            assert!(!sparse.uses_dense_evaluation());
            let theta = tiny_theta(dense.num_params());
            let mut grad_dense = vec![0.0; theta.len()];
            let mut grad_sparse = vec![0.0; theta.len()];
            let value_dense = dense.value_and_gradient(&theta, &mut grad_dense);
            let value_sparse = sparse.value_and_gradient(&theta, &mut grad_sparse);
            // Both sum the same ~1e5 terms of size ~1 in different orders (and the table
            // evaluation adds the couplings in another order): round-off is a few 1e-16 per
            // term relative to the mean, so 1e-12 is generous and still catches any wrong term.
            assert!(
                (value_dense - value_sparse).abs() <= 1e-12 * value_sparse.abs(),
                "{value_dense} vs {value_sparse}"
            );
            for (k, (a, b)) in grad_dense.iter().zip(&grad_sparse).enumerate() {
                assert!((a - b).abs() <= 1e-12, "component {k}: {a} vs {b}");
            }
        }
        // A chain of 20 (19 edges, fewer than 20^2 / 16) is evaluated by the neighbour sum.
        let lattice = lattice_edges(20, 1, Boundary::Open).unwrap();
        assert!(
            !PseudoLikelihoodObjective::new(&data, &lattice, 0.0)
                .unwrap()
                .uses_dense_evaluation()
        );
    }

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        // f(x) = sum_k (k + 1) (x_k - 1)^2 / 2: minimum at x = 1.
        let mut x = vec![0.0; 5];
        let (value, norm, _, converged) = minimise_lbfgs(
            |x, g| {
                let mut v = 0.0;
                for k in 0..x.len() {
                    let c = (k + 1) as f64;
                    v += 0.5 * c * (x[k] - 1.0).powi(2);
                    g[k] = c * (x[k] - 1.0);
                }
                v
            },
            &mut x,
            1e-10,
            100,
        );
        assert!(converged && norm <= 1e-10 && value < 1e-19);
        assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-10));
    }

    /// theta = (fields, couplings in edge order) of a fitted model.
    fn theta_of(model: &PairwiseMrf) -> Vec<f64> {
        let mut theta = model.fields().to_vec();
        theta.extend(model.edges().iter().map(|&(_, _, w)| w));
        theta
    }

    /// -(1/N) sum_n sum_i ln p(s_i | s_-i) by enumeration of s_i = +-1 in the Ising energy
    /// with `theta` = (fields, couplings on `edges`).
    fn brute_force_pl(data: &Dataset, edges: &[(usize, usize)], theta: &[f64]) -> f64 {
        let n = data.cols();
        let energy = |s: &[f64]| {
            let mut e = 0.0;
            for i in 0..n {
                e -= theta[i] * s[i];
            }
            for (k, &(i, j)) in edges.iter().enumerate() {
                e -= theta[n + k] * s[i] * s[j];
            }
            e
        };
        let mut total = 0.0;
        for row in data.iter_rows() {
            let s: Vec<f64> = row.iter().map(|&x| 2.0 * x as f64 - 1.0).collect();
            for i in 0..n {
                let mut flipped = s.clone();
                flipped[i] = -s[i];
                let (a, b) = ((-energy(&s)).exp(), (-energy(&flipped)).exp());
                total -= (a / (a + b)).ln();
            }
        }
        total / data.rows() as f64
    }

    #[test]
    fn owlqn_solves_a_one_dimensional_lasso() {
        // min (x - 3)^2 / 2 + l1 |x|: x = 3 - l1 for l1 < 3, else exactly 0.
        for (l1, expected) in [(1.0, 2.0), (5.0, 0.0)] {
            let mut x = vec![0.5];
            let (_, norm, _, converged) = minimise_owlqn(
                |x, g| {
                    g[0] = x[0] - 3.0;
                    0.5 * (x[0] - 3.0).powi(2)
                },
                &mut x,
                l1,
                0,
                1e-10,
                100,
            );
            assert!(converged && norm <= 1e-10, "l1 {l1}: norm {norm}");
            assert!((x[0] - expected).abs() <= 1e-10, "l1 {l1}: x = {}", x[0]);
        }
    }

    #[test]
    fn l1_fit_satisfies_the_optimality_conditions() {
        let data = pseudo_random_data(600, 6);
        let edges = complete_edges(6);
        let tolerance = 1e-7;
        for (l1, l2) in [(0.03, 0.0), (0.03, 0.1), (10.0, 0.0)] {
            let params = FitParams {
                l1,
                l2,
                tolerance,
                ..FitParams::default()
            };
            let out = fit_pseudo_likelihood(&data, &edges, &params).unwrap();
            assert!(
                out.converged,
                "l1 {l1}: not converged ({})",
                out.gradient_norm
            );
            let theta = theta_of(&out.model);
            let objective = PseudoLikelihoodObjective::new(&data, &edges, l2).unwrap();
            let mut grad = vec![0.0; theta.len()];
            let smooth = objective.value_and_gradient(&theta, &mut grad);
            // KKT conditions of min f + l1 sum |J| (f the smooth part): grad f = 0 in the
            // fields; g + l1 sign(J) = 0 where J != 0; |g| <= l1 where J = 0. The solver stops
            // when the minimum-norm subgradient is below the tolerance, so each holds to it.
            for (k, (&t, &g)) in theta.iter().zip(&grad).enumerate() {
                let residual = if k < 6 {
                    g.abs()
                } else if t != 0.0 {
                    (g + l1 * t.signum()).abs()
                } else {
                    (g.abs() - l1).max(0.0)
                };
                assert!(
                    residual <= tolerance,
                    "l1 {l1}, component {k}: residual {residual}"
                );
            }
            let zeros = theta[6..].iter().filter(|&&w| w == 0.0).count();
            if l1 >= 10.0 {
                // |dPL/dJ| <= 4 everywhere (each of the two terms is at most 2 in size), so
                // any l1 above 4 makes every coupling exactly zero.
                assert_eq!(zeros, edges.len(), "l1 {l1}: couplings not all zero");
            } else {
                // The data couple neighbours (see pseudo_random_data), so at this l1 some
                // couplings stay and some vanish: the test exercises both conditions.
                assert!(
                    zeros > 0 && zeros < edges.len(),
                    "l1 {l1}: {zeros} zero couplings"
                );
            }
            // The reported objective is the definition: PL + l2/2 sum J^2 + l1 sum |J|.
            let penalties: f64 = theta[6..]
                .iter()
                .map(|w| 0.5 * l2 * w * w + l1 * w.abs())
                .sum();
            let expected = brute_force_pl(&data, &edges, &theta) + penalties;
            assert!(
                (out.objective - expected).abs() <= 1e-12 * expected,
                "{} vs {expected}",
                out.objective
            );
            assert!(
                (smooth + theta[6..].iter().map(|w| l1 * w.abs()).sum::<f64>() - expected).abs()
                    <= 1e-12 * expected
            );
        }
    }

    #[test]
    fn spin_regression_equals_its_definition_and_central_differences() {
        let data = tiny_data();
        let l2 = 0.4;
        let regression = SpinRegression::new(&data, 2, vec![0, 1, 3], l2);
        let theta = tiny_theta(regression.num_params());
        let mut grad = vec![0.0; theta.len()];
        let value = regression.value_and_gradient(&theta, &mut grad);
        // Definition: p(s_2 | s_-2) = e^{s_2 f} / (e^{f} + e^{-f}), f = h + sum_k w_k s_{j_k}.
        let mut expected = 0.0;
        for row in data.iter_rows() {
            let s: Vec<f64> = row.iter().map(|&x| 2.0 * x as f64 - 1.0).collect();
            let f = theta[0] + theta[1] * s[0] + theta[2] * s[1] + theta[3] * s[3];
            expected -= (s[2] * f).exp().ln() - (f.exp() + (-f).exp()).ln();
        }
        expected /= data.rows() as f64;
        expected += theta[1..].iter().map(|w| 0.5 * l2 * w * w).sum::<f64>();
        assert!(
            (value - expected).abs() <= 1e-12 * expected,
            "{value} vs {expected}"
        );
        // Central differences: as in gradient_equals_central_differences (h = 1e-5, |f| ~ 1,
        // third derivatives below 10): error below 1e-9; tolerance 1e-8.
        let h = 1e-5;
        let mut scratch = vec![0.0; theta.len()];
        for k in 0..theta.len() {
            let mut plus = theta.clone();
            let mut minus = theta.clone();
            plus[k] += h;
            minus[k] -= h;
            let numeric = (regression.value_and_gradient(&plus, &mut scratch)
                - regression.value_and_gradient(&minus, &mut scratch))
                / (2.0 * h);
            assert!((numeric - grad[k]).abs() <= 1e-8, "component {k}");
        }
    }

    #[test]
    fn asymmetric_pl_agrees_with_symmetric_pl_only_where_it_must() {
        let params = FitParams {
            tolerance: 1e-10,
            ..FitParams::default()
        };
        let data = pseudo_random_data(500, 4);
        // A single edge: each regression is saturated (it fits the conditional of a 2 x 2
        // table exactly), and both give J = (1/4) ln(p++ p-- / (p+- p-+)) of the pair, so
        // averaging changes nothing and the joint fit has the same optimum. Without edges
        // both are the independent-spin fields atanh(m_i).
        for edges in [vec![(1, 2)], vec![]] {
            let sym = fit_pseudo_likelihood(&data, &edges, &params).unwrap();
            let asym = fit_asymmetric_pl(&data, &edges, &params).unwrap();
            // Both optima are within tolerance 1e-10 in gradient of curvature ~0.5: 1e-8.
            for (a, b) in theta_of(&sym.model).iter().zip(&theta_of(&asym.model)) {
                assert!((a - b).abs() <= 1e-8, "{edges:?}: {a} vs {b}");
            }
        }
        // In general (here the complete graph on 4 spins) the two estimators differ.
        let edges = complete_edges(4);
        let sym = theta_of(&fit_pseudo_likelihood(&data, &edges, &params).unwrap().model);
        let asym = theta_of(&fit_asymmetric_pl(&data, &edges, &params).unwrap().model);
        let largest = sym
            .iter()
            .zip(&asym)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        // 100 times the agreement bound above: a real difference, not round-off.
        assert!(
            largest > 1e-6,
            "asymmetric and symmetric PL agree to {largest}"
        );
    }

    #[test]
    fn lattice_edges_are_unique() {
        let periodic = lattice_edges(2, 3, Boundary::Periodic).unwrap();
        let mut sorted = periodic.clone();
        sorted.dedup();
        assert_eq!(sorted, periodic);
        // 2 x 3 torus: the horizontal pair of each row once (3), vertical ring of 3 per column (6).
        assert_eq!(periodic.len(), 9);
        assert_eq!(lattice_edges(3, 3, Boundary::Open).unwrap().len(), 12);
    }

    #[test]
    fn refuses_bad_params_and_empty_data() {
        let data = tiny_data();
        let bad = FitParams {
            l2: -1.0,
            ..FitParams::default()
        };
        assert!(matches!(
            fit_pseudo_likelihood(&data, &[(0, 1)], &bad),
            Err(Error::InvalidParam { ref name, .. }) if name == "--l2"
        ));
        let empty = Dataset::new(0, 4, vec![]).unwrap();
        assert!(PseudoLikelihoodObjective::new(&empty, &[(0, 1)], 0.0).is_err());
    }

    #[test]
    fn mean_field_matches_the_two_spin_inversion_by_hand() {
        // (+,+) x3, (-,-) x3, (+,-), (-,+): m = 0, <s1 s2> = (6 - 2) / 8 = 1/2, so
        // C = [[1, 1/2], [1/2, 1]], C^-1 = (4/3) [[1, -1/2], [-1/2, 1]], J = 2/3, h = 0.
        let rows: [[u8; 2]; 8] = [
            [1, 1],
            [1, 1],
            [1, 1],
            [0, 0],
            [0, 0],
            [0, 0],
            [1, 0],
            [0, 1],
        ];
        let data = Dataset::new(8, 2, rows.concat()).unwrap();
        let out = fit_mean_field(&data, &[(0, 1)], &FitParams::default()).unwrap();
        let (_, _, j) = out.model.edges()[0];
        assert!((j - 2.0 / 3.0).abs() < 1e-12, "J = {j}");
        assert!(out.model.fields().iter().all(|h| h.abs() < 1e-12));
    }

    #[test]
    fn mean_field_refuses_a_singular_covariance() {
        // Column 2 repeats column 0: C is singular.
        let rows: [[u8; 3]; 4] = [[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]];
        let data = Dataset::new(4, 3, rows.concat()).unwrap();
        let err = fit_mean_field(&data, &complete_edges(3), &FitParams::default()).unwrap_err();
        assert!(err.to_string().contains("singular"), "{err}");
    }
}
