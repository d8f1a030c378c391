//! Objectives that need no Markov chain: pseudo-likelihood ([`PseudoLikelihood`]) and ratio
//! matching ([`RatioMatching`]), as [`GradientEstimator`]s for the shared epoch loop.
//!
//! Both compare an example v with its n_v neighbours v^(i) (v with bit i flipped) through the
//! free energy F(v) = -b^T v - sum_j softplus(a_j), a = c + v^T W. With
//! d_i = F(v^(i)) - F(v):
//! - pseudo-likelihood (Besag, "Statistical analysis of non-lattice data", The Statistician
//!   1975) maximises, per example, PL(v) = sum_i ln P(v_i | v_-i) = sum_i ln sigmoid(d_i);
//! - ratio matching (Hyvarinen, "Some extensions of score matching", CSDA 2007, in the form used
//!   by Marlin, Swersky, Chen & de Freitas, "Inductive principles for restricted Boltzmann
//!   machine learning", AISTATS 2010) minimises, per example,
//!   RM(v) = sum_i sigmoid(F(v) - F(v^(i)))^2 = sum_i sigmoid(-d_i)^2.
//!
//! Both are averaged over the mini-batch, and the estimators write the exact gradient of
//! PL and of -RM (the direction to ascend).
//!
//! Cost, per example O(n_v n_h): flipping bit i shifts the hidden pre-activations by
//! s_i W_i. (s_i = 1 - 2 v_i), so a^(i) = a + s_i W_i. and
//! d_i = -s_i b_i - sum_j [softplus(a_j + s_i W_ij) - softplus(a_j)].
//!
//! Gradient. With dF(u)/dW_kj = -u_k sigmoid(a_j(u)), dF/db_k = -u_k, dF/dc_j = -sigmoid(a_j(u)),
//! both objectives' gradients have the form sum_i g_i grad(d_i) with a weight per bit:
//! g_i = sigmoid(-d_i) for PL (d/dd ln sigmoid(d)), and g_i = 2 sigmoid(-d_i)^2 sigmoid(d_i) for
//! -RM (d/dd of -sigmoid(-d)^2). Writing p = sigmoid(a), p^(i) = sigmoid(a^(i)), G = sum_i g_i and
//! Q_j = sum_i g_i p^(i)_j, the sums over i collapse to
//! - dW_kj = v_k (G p_j - Q_j) - s_k g_k p^(k)_j,
//! - db_k = -s_k g_k,
//! - dc_j = G p_j - Q_j,
//!
//! again O(n_v n_h) per example; how the d_i are computed without a transcendental function per
//! (bit, hidden unit) pair, and how rows are spread over threads deterministically: see
//! `FlipObjective::gradient`. Arithmetic is f32 like the rest of training; the objective's
//! value of the last batch is kept (f64 sum of f32 terms) for monitoring and tests.

use super::estimator::{Gradient, GradientEstimator};
use crate::linalg::{View, matmul};
use crate::model::rbm_f32::RbmF32;
use crate::rng::EbmRng;
use rayon::prelude::*;

/// ln(1 + e^x) in f32 without overflow.
#[inline]
fn softplus_f32(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// 1 / (1 + e^-x) in f32 without overflow.
#[inline]
fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// (softplus(x), sigmoid(x)) in f32 from one exponential, e = exp(-|x|):
/// softplus = max(x, 0) + ln(1 + e), sigmoid = 1 / (1 + e) for x >= 0 and e / (1 + e) below.
#[inline]
fn softplus_and_sigmoid_f32(x: f32) -> (f32, f32) {
    let e = (-x.abs()).exp();
    let sig = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (x.max(0.0) + e.ln_1p(), sig)
}

/// Which objective a [`FlipObjective`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PseudoLikelihood,
    RatioMatching,
}

/// The batch is cut into at most this many chunks of consecutive rows (the chunk size depends
/// on the batch size only, never on the number of threads); rayon processes the chunks in
/// parallel, each into its own gradient buffer, and the buffers are added in chunk order, so
/// the result is bit-identical for any pool size.
const MAX_CHUNKS: usize = 16;

/// Above this bound on |b_i| + sum_j |W_ij| the product e^{s_i b_i} prod_j r_ij (see
/// [`FlipObjective::gradient`]) could leave f32's normal range (e^±87), so bit i falls back to
/// summing softplus differences.
const PRODUCT_LOG_BOUND: f32 = 80.0;

/// Per-chunk buffers (allocated once, when the first batch needs the chunk).
#[derive(Debug, Clone)]
struct ChunkWork {
    /// p = sigmoid(a) of the current example (n_h).
    prob: Vec<f32>,
    /// sigmoid(-|a|) of the current example: min(p, 1 - p) without cancellation (n_h).
    small: Vec<f32>,
    /// The ratios r_ij of the current bit i (n_h).
    ratio: Vec<f32>,
    /// p^(i) = sigmoid(a + s_i W_i.), row i (n_v x n_h).
    flipped_prob: Vec<f32>,
    /// The per-bit weights g_i of the current example (n_v).
    bit_weight: Vec<f32>,
    /// Q_j = sum_i g_i p^(i)_j (n_h).
    q: Vec<f32>,
    /// The chunk's gradient sum (not yet divided by the batch size).
    grad: Gradient,
    /// The chunk's sum of per-example objectives.
    value: f64,
}

impl ChunkWork {
    fn new(nv: usize, nh: usize) -> Self {
        ChunkWork {
            prob: vec![0.0; nh],
            small: vec![0.0; nh],
            ratio: vec![0.0; nh],
            flipped_prob: vec![0.0; nv * nh],
            bit_weight: vec![0.0; nv],
            q: vec![0.0; nh],
            grad: Gradient::zeros(nv, nh),
            value: 0.0,
        }
    }
}

/// The computation both objectives share (see the module documentation), with its buffers
/// allocated once for the model's shape (and the largest batch seen).
#[derive(Debug, Clone)]
struct FlipObjective {
    kind: Kind,
    /// a = v W + c for every row of the batch (rows x n_h), one GEMM per batch.
    act: Vec<f32>,
    /// expm1(W_ij) (n_v x n_h), recomputed per batch.
    expm1_w: Vec<f32>,
    /// expm1(-W_ij) (n_v x n_h), recomputed per batch.
    expm1_neg_w: Vec<f32>,
    /// e^{b_i} and e^{-b_i} (n_v each), recomputed per batch.
    exp_b: Vec<f32>,
    exp_neg_b: Vec<f32>,
    /// Per visible unit i: whether |b_i| + sum_j |W_ij| <= [`PRODUCT_LOG_BOUND`] (the product
    /// form).
    product_ok: Vec<bool>,
    chunks: Vec<ChunkWork>,
    /// The objective (PL, or RM) averaged over the last batch.
    value: f64,
}

impl FlipObjective {
    fn new(kind: Kind, model: &RbmF32) -> Self {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        FlipObjective {
            kind,
            act: Vec::new(),
            expm1_w: vec![0.0; nv * nh],
            expm1_neg_w: vec![0.0; nv * nh],
            exp_b: vec![0.0; nv],
            exp_neg_b: vec![0.0; nv],
            product_ok: vec![false; nv],
            chunks: Vec::new(),
            value: 0.0,
        }
    }

    /// The gradient of the batch average (see the module documentation), computed as follows.
    ///
    /// Flipping bit i multiplies 1 + e^{a_j} by r_ij = (1 + e^{a_j + x}) / (1 + e^{a_j}),
    /// x = s_i W_ij, so d_i = -s_i b_i - ln prod_j r_ij: one logarithm per bit instead of one
    /// softplus per (bit, hidden unit). With e^x - 1 and e^-x - 1 tabulated once per batch
    /// (they do not depend on the example) and u_j = sigmoid(-|a_j|):
    /// - a_j < 0: r = 1 + u_j expm1(x), and p^(i)_j = p_j e^x / r;
    /// - a_j >= 0: r = e^x (1 + u_j expm1(-x)), and p^(i)_j = p_j / (1 + u_j expm1(-x)),
    ///
    /// both free of cancellation (u_j <= 1/2 is the small one of p_j and 1 - p_j). Then
    /// z_i = e^{-d_i} = e^{s_i b_i} prod_j r_ij (products in eight lanes), ln sigmoid(d_i) =
    /// -ln(1 + z_i) (summed over bits as one logarithm of a product, [`LogProduct`]) and
    /// sigmoid(-d_i) = z_i / (1 + z_i). Every partial product lies within
    /// e^±(|b_i| + sum_j |W_ij|), so this form is used for bits with |b_i| + sum_j |W_ij| <= 80
    /// ([`PRODUCT_LOG_BOUND`]) and the direct softplus differences otherwise.
    ///
    /// Rows: the batch is cut into at most [`MAX_CHUNKS`] chunks whose size depends on the
    /// batch only; rayon runs the chunks, each into its own buffers (allocated once), and the
    /// chunk gradients are added in chunk order: bit-identical for any number of threads.
    fn gradient(&mut self, model: &RbmF32, batch: &[f32], grad: &mut Gradient) {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        let rows = batch.len() / nv;
        if rows == 0 {
            grad.weights.fill(0.0);
            grad.visible_bias.fill(0.0);
            grad.hidden_bias.fill(0.0);
            self.value = 0.0;
            return;
        }
        // a = v W + c for the whole batch.
        if self.act.len() < rows * nh {
            self.act.resize(rows * nh, 0.0);
        }
        let act = &mut self.act[..rows * nh];
        matmul(act, View::row_major(batch, rows, nv), model.w(), 0.0, 1.0);
        for a_row in act.chunks_exact_mut(nh) {
            for (a, &c) in a_row.iter_mut().zip(&model.hidden_bias) {
                *a += c;
            }
        }
        for ((e, en), &w) in self
            .expm1_w
            .iter_mut()
            .zip(&mut self.expm1_neg_w)
            .zip(&model.weights)
        {
            *e = w.exp_m1();
            *en = (-w).exp_m1();
        }
        for (i, (ok, w_row)) in self
            .product_ok
            .iter_mut()
            .zip(model.weights.chunks_exact(nh))
            .enumerate()
        {
            let b = model.visible_bias[i];
            self.exp_b[i] = b.exp();
            self.exp_neg_b[i] = (-b).exp();
            *ok = b.abs() + w_row.iter().map(|w| w.abs()).sum::<f32>() <= PRODUCT_LOG_BOUND;
        }
        let rows_per_chunk = rows.div_ceil(MAX_CHUNKS);
        let n_chunks = rows.div_ceil(rows_per_chunk);
        while self.chunks.len() < n_chunks {
            self.chunks.push(ChunkWork::new(nv, nh));
        }
        let shared = Shared {
            kind: self.kind,
            model,
            expm1_w: &self.expm1_w,
            expm1_neg_w: &self.expm1_neg_w,
            exp_b: &self.exp_b,
            exp_neg_b: &self.exp_neg_b,
            product_ok: &self.product_ok,
        };
        let act = &self.act[..rows * nh];
        self.chunks[..n_chunks]
            .par_iter_mut()
            .zip(batch.par_chunks(rows_per_chunk * nv))
            .zip(act.par_chunks(rows_per_chunk * nh))
            .for_each(|((work, rows), acts)| shared.chunk(work, rows, acts));
        // Fixed-order reduction.
        grad.weights.copy_from_slice(&self.chunks[0].grad.weights);
        grad.visible_bias
            .copy_from_slice(&self.chunks[0].grad.visible_bias);
        grad.hidden_bias
            .copy_from_slice(&self.chunks[0].grad.hidden_bias);
        let mut total = self.chunks[0].value;
        for work in &self.chunks[1..n_chunks] {
            add_into(&mut grad.weights, &work.grad.weights);
            add_into(&mut grad.visible_bias, &work.grad.visible_bias);
            add_into(&mut grad.hidden_bias, &work.grad.hidden_bias);
            total += work.value;
        }
        let scale = 1.0 / rows as f32;
        for x in grad
            .weights
            .iter_mut()
            .chain(grad.visible_bias.iter_mut())
            .chain(grad.hidden_bias.iter_mut())
        {
            *x *= scale;
        }
        self.value = total / rows as f64;
    }
}

/// out += x, elementwise.
fn add_into(out: &mut [f32], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += v;
    }
}

/// What every chunk reads: the model and the per-batch tables.
struct Shared<'a> {
    kind: Kind,
    model: &'a RbmF32,
    expm1_w: &'a [f32],
    expm1_neg_w: &'a [f32],
    exp_b: &'a [f32],
    exp_neg_b: &'a [f32],
    product_ok: &'a [bool],
}

impl Shared<'_> {
    /// Sums the gradient and objective of the examples `batch` (rows x n_v), whose hidden
    /// pre-activations are `acts` (rows x n_h), into `work.grad` and `work.value`.
    fn chunk(&self, work: &mut ChunkWork, batch: &[f32], acts: &[f32]) {
        let model = self.model;
        let (nv, nh) = (model.n_visible, model.n_hidden);
        work.grad.weights.fill(0.0);
        work.grad.visible_bias.fill(0.0);
        work.grad.hidden_bias.fill(0.0);
        let mut total = 0.0f64;
        for (v, act) in batch.chunks_exact(nv).zip(acts.chunks_exact(nh)) {
            for ((p, u), &a) in work.prob.iter_mut().zip(&mut work.small).zip(act) {
                // e = e^-|a|: sigmoid(-|a|) = e / (1 + e), and p is it or its complement.
                let e = (-a.abs()).exp();
                *u = e / (1.0 + e);
                *p = if a >= 0.0 { 1.0 / (1.0 + e) } else { *u };
            }
            // p^(i), then the objective's term and weight g_i of every bit, then G and Q.
            let mut g_sum = 0.0f32;
            work.q.fill(0.0);
            let mut log_product = LogProduct::new();
            for (i, &vi) in v.iter().enumerate() {
                let s = 1.0 - 2.0 * vi;
                let range = i * nh..(i + 1) * nh;
                let fp = &mut work.flipped_prob[range.clone()];
                let (term, g) = if self.product_ok[i] {
                    // expm1(x) and expm1(-x) for x = s W_ij.
                    let (em_x, em_neg_x) = if s > 0.0 {
                        (&self.expm1_w[range.clone()], &self.expm1_neg_w[range])
                    } else {
                        (&self.expm1_neg_w[range.clone()], &self.expm1_w[range])
                    };
                    flipped_ratios(
                        act,
                        &work.prob,
                        &work.small,
                        em_x,
                        em_neg_x,
                        fp,
                        &mut work.ratio,
                    );
                    // z = e^{-d_i} = e^{s b_i} prod_j r_ij, within e^±80.
                    let exp_sb = if s > 0.0 {
                        self.exp_b[i]
                    } else {
                        self.exp_neg_b[i]
                    };
                    let z = exp_sb * product(&work.ratio);
                    let sig_neg_d = z / (1.0 + z);
                    match self.kind {
                        // ln sigmoid(d) = -ln(1 + z); d/dd = sigmoid(-d) = z / (1 + z).
                        // The logarithm is taken once per example (`log_product`).
                        Kind::PseudoLikelihood => {
                            log_product.push(1.0 + z as f64);
                            (0.0, sig_neg_d)
                        }
                        // sigmoid(-d)^2; d/dd of its negative = 2 sigmoid(-d)^2 sigmoid(d),
                        // sigmoid(d) = 1 / (1 + z).
                        Kind::RatioMatching => (
                            sig_neg_d * sig_neg_d,
                            2.0 * sig_neg_d * sig_neg_d / (1.0 + z),
                        ),
                    }
                } else {
                    let w_row = &model.weights[range];
                    let mut log_ratio = 0.0f32;
                    for ((p, &a), &w) in fp.iter_mut().zip(act).zip(w_row) {
                        let (soft_flipped, prob_flipped) = softplus_and_sigmoid_f32(a + s * w);
                        log_ratio += soft_flipped - softplus_f32(a);
                        *p = prob_flipped;
                    }
                    let d = -s * model.visible_bias[i] - log_ratio;
                    match self.kind {
                        // ln sigmoid(d) = -softplus(-d); d/dd = sigmoid(-d).
                        Kind::PseudoLikelihood => {
                            let (soft, sig) = softplus_and_sigmoid_f32(-d);
                            (-soft, sig)
                        }
                        Kind::RatioMatching => {
                            let r = sigmoid_f32(-d);
                            (r * r, 2.0 * r * r * sigmoid_f32(d))
                        }
                    }
                };
                total += term as f64;
                work.bit_weight[i] = g;
                g_sum += g;
                let fp = &work.flipped_prob[i * nh..(i + 1) * nh];
                for (q, &p) in work.q.iter_mut().zip(fp) {
                    *q += g * p;
                }
            }
            total -= log_product.ln();
            // Accumulate this example's gradient.
            let grad = &mut work.grad;
            for (gc, (&p, &q)) in grad
                .hidden_bias
                .iter_mut()
                .zip(work.prob.iter().zip(&work.q))
            {
                *gc += g_sum * p - q;
            }
            for (k, &vk) in v.iter().enumerate() {
                let s = 1.0 - 2.0 * vk;
                let gk = work.bit_weight[k];
                grad.visible_bias[k] -= s * gk;
                let fp = &work.flipped_prob[k * nh..(k + 1) * nh];
                let gw = &mut grad.weights[k * nh..(k + 1) * nh];
                if vk != 0.0 {
                    for (((o, &p), &q), &pk) in gw.iter_mut().zip(&work.prob).zip(&work.q).zip(fp) {
                        *o += g_sum * p - q - s * gk * pk;
                    }
                } else {
                    for (o, &pk) in gw.iter_mut().zip(fp) {
                        *o -= s * gk * pk;
                    }
                }
            }
        }
        work.value = total;
    }
}

/// For one bit (x_j = s W_ij, see [`FlipObjective::gradient`]): the ratios r_j into `ratio` and
/// the flipped hidden probabilities p^(i)_j into `flipped`. Branch-free over j (selects), so
/// the loop vectorises.
#[inline]
fn flipped_ratios(
    act: &[f32],
    prob: &[f32],
    small: &[f32],
    expm1_x: &[f32],
    expm1_neg_x: &[f32],
    flipped: &mut [f32],
    ratio: &mut [f32],
) {
    let n = act.len();
    let (prob, small, expm1_x, expm1_neg_x) =
        (&prob[..n], &small[..n], &expm1_x[..n], &expm1_neg_x[..n]);
    let (flipped, ratio) = (&mut flipped[..n], &mut ratio[..n]);
    for j in 0..n {
        // All-ones bits when a_j < 0.
        let negative = ((act[j] < 0.0) as u32).wrapping_neg();
        let e_x = 1.0 + expm1_x[j];
        let em = select(negative, expm1_x[j], expm1_neg_x[j]);
        let stable = 1.0 + small[j] * em;
        let scaled = e_x * stable;
        let numerator = prob[j] * e_x;
        flipped[j] = select(negative, numerator, prob[j]) / stable;
        ratio[j] = select(negative, stable, scaled);
    }
}

/// `yes` where `mask` is all ones, `no` where it is zero (exact, and branch-free so that loops
/// using it vectorise).
#[inline]
fn select(mask: u32, yes: f32, no: f32) -> f32 {
    f32::from_bits((yes.to_bits() & mask) | (no.to_bits() & !mask))
}

/// ln of a product of factors >= 1, kept as an f64 mantissa times a power of two so that it
/// never overflows: after every eighth factor the mantissa is brought back to [1, 2). The
/// factors used here are 1 + z <= 1 + e^80 < 2^116 (`PRODUCT_LOG_BOUND`), so the mantissa stays
/// below 2^(1 + 8 * 116) = 2^929, inside f64's range.
struct LogProduct {
    mantissa: f64,
    exponent: i64,
    pending: u32,
}

impl LogProduct {
    fn new() -> Self {
        LogProduct {
            mantissa: 1.0,
            exponent: 0,
            pending: 0,
        }
    }

    #[inline]
    fn push(&mut self, factor: f64) {
        self.mantissa *= factor;
        self.pending += 1;
        if self.pending == 8 {
            self.normalise();
        }
    }

    /// mantissa = m 2^e with m in [1, 2): keep m, add e to the exponent (mantissa >= 1 is a
    /// normal number, so the bit fields are exact).
    #[inline]
    fn normalise(&mut self) {
        const EXP_MASK: u64 = 0x7ff << 52;
        let bits = self.mantissa.to_bits();
        self.exponent += ((bits & EXP_MASK) >> 52) as i64 - 1023;
        self.mantissa = f64::from_bits((bits & !EXP_MASK) | (1023 << 52));
        self.pending = 0;
    }

    fn ln(&self) -> f64 {
        self.mantissa.ln() + self.exponent as f64 * std::f64::consts::LN_2
    }
}

/// The product of `x` in eight interleaved lanes (combined in a fixed order), so that it
/// vectorises.
#[inline]
fn product(x: &[f32]) -> f32 {
    let mut lanes = [1.0f32; 8];
    let mut blocks = x.chunks_exact(8);
    for block in &mut blocks {
        for (l, &v) in lanes.iter_mut().zip(block) {
            *l *= v;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(blocks.remainder()) {
        *l *= v;
    }
    lanes.iter().product()
}

/// Exact pseudo-likelihood (Besag 1975): per example sum over all n_v bits of
/// ln sigmoid(F(v^(i)) - F(v)), averaged over the batch; the gradient written is that
/// average's (to be ascended). Formulas and cost: the [module documentation](self).
#[derive(Debug, Clone)]
pub struct PseudoLikelihood(FlipObjective);

impl PseudoLikelihood {
    /// An estimator for `model`'s shape (buffers of O(n_v n_h), allocated here once).
    pub fn new(model: &RbmF32) -> Self {
        PseudoLikelihood(FlipObjective::new(Kind::PseudoLikelihood, model))
    }

    /// The average pseudo-log-likelihood (nats per example) of the last batch, at the model
    /// before that batch's update.
    pub fn value(&self) -> f64 {
        self.0.value
    }
}

impl GradientEstimator for PseudoLikelihood {
    fn gradient(&mut self, model: &RbmF32, batch: &[f32], _: &mut [EbmRng], grad: &mut Gradient) {
        self.0.gradient(model, batch, grad)
    }

    fn streams(&self, _batch_rows: usize) -> usize {
        0
    }

    fn batch_objective(&self) -> Option<f64> {
        Some(self.value())
    }
}

/// Ratio matching (Hyvarinen 2007; the form of Marlin, Swersky, Chen & de Freitas, AISTATS
/// 2010): minimises per example sum_i sigmoid(F(v) - F(v^(i)))^2, averaged over the batch; the
/// gradient written is that of the negated average (to be ascended). Formulas and cost: the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct RatioMatching(FlipObjective);

impl RatioMatching {
    /// An estimator for `model`'s shape (buffers of O(n_v n_h), allocated here once).
    pub fn new(model: &RbmF32) -> Self {
        RatioMatching(FlipObjective::new(Kind::RatioMatching, model))
    }

    /// The average ratio-matching objective (to be minimised) of the last batch, at the model
    /// before that batch's update.
    pub fn value(&self) -> f64 {
        self.0.value
    }
}

impl GradientEstimator for RatioMatching {
    fn gradient(&mut self, model: &RbmF32, batch: &[f32], _: &mut [EbmRng], grad: &mut Gradient) {
        self.0.gradient(model, batch, grad)
    }

    fn streams(&self, _batch_rows: usize) -> usize {
        0
    }

    fn batch_objective(&self) -> Option<f64> {
        Some(self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;
    use crate::infer::rbm::rbm_log_partition;
    use crate::learn::cd::{CdParams, TrainState, train_with_estimator};
    use crate::learn::eval::average_log_likelihood;
    use crate::logspace::{sigmoid, softplus};
    use crate::progress::Silent;
    use rand::RngExt;

    const NV: usize = 5;
    const NH: usize = 3;

    /// Parameters as one f64 vector: W (row-major), then b, then c.
    fn tiny_params() -> Vec<f64> {
        let mut rng = crate::rng::stream_for(7, crate::rng::Purpose::Training, 0);
        (0..NV * NH + NV + NH)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    fn tiny_batch() -> Vec<f32> {
        let mut rng = crate::rng::stream_for(8, crate::rng::Purpose::Training, 1);
        (0..4 * NV)
            .map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 })
            .collect()
    }

    fn model_f32(theta: &[f64]) -> RbmF32 {
        let f = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        RbmF32 {
            n_visible: NV,
            n_hidden: NH,
            weights: f(&theta[..NV * NH]),
            visible_bias: f(&theta[NV * NH..NV * NH + NV]),
            hidden_bias: f(&theta[NV * NH + NV..]),
        }
    }

    /// F(v) straight from the definition, in f64.
    fn free_energy(theta: &[f64], v: &[f64]) -> f64 {
        let (w, rest) = theta.split_at(NV * NH);
        let (b, c) = rest.split_at(NV);
        let mut f = -(0..NV).map(|i| b[i] * v[i]).sum::<f64>();
        for j in 0..NH {
            let a = c[j] + (0..NV).map(|i| v[i] * w[i * NH + j]).sum::<f64>();
            f -= softplus(a);
        }
        f
    }

    /// The batch average of the objective by brute force: every flipped vector's free energy
    /// computed directly.
    fn brute_force(kind: Kind, theta: &[f64], batch: &[f32]) -> f64 {
        let mut total = 0.0;
        for row in batch.chunks_exact(NV) {
            let v: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let f = free_energy(theta, &v);
            for i in 0..NV {
                let mut u = v.clone();
                u[i] = 1.0 - u[i];
                let d = free_energy(theta, &u) - f;
                total += match kind {
                    Kind::PseudoLikelihood => sigmoid(d).ln(),
                    Kind::RatioMatching => sigmoid(-d).powi(2),
                };
            }
        }
        total / (batch.len() / NV) as f64
    }

    fn check_value_and_gradient(kind: Kind) {
        check_value_and_gradient_at(kind, &tiny_params(), 1e-5, 1e-3);
    }

    /// Value within `value_tol` (relative) of brute force, and every gradient entry within
    /// `grad_tol` (relative + absolute) of central differences.
    fn check_value_and_gradient_at(kind: Kind, theta: &[f64], value_tol: f64, grad_tol: f64) {
        let batch = tiny_batch();
        let model = model_f32(theta);
        // The f64 reference uses the f32-rounded parameters, so only the estimator's f32
        // arithmetic differs.
        let theta: Vec<f64> = model
            .weights
            .iter()
            .chain(&model.visible_bias)
            .chain(&model.hidden_bias)
            .map(|&x| x as f64)
            .collect();
        let mut est = FlipObjective::new(kind, &model);
        let mut grad = Gradient::zeros(NV, NH);
        est.gradient(&model, &batch, &mut grad);
        // (a) Value. Each term is a few f32 operations on O(1) numbers (relative rounding
        // ~6e-8 each, a few dozen of them summed), far below 1e-5 of an O(1) total.
        let exact = brute_force(kind, &theta, &batch);
        assert!(
            (est.value - exact).abs() <= value_tol * exact.abs(),
            "{kind:?}: value {} vs brute force {exact}",
            est.value
        );
        // (b) Gradient vs central differences of the brute-force objective in f64, h = 1e-4:
        // truncation O(h^2) ~ 1e-8 and rounding ~1e-16 / h ~ 1e-12, so the difference is the
        // estimator's f32 rounding (~1e-6); 1e-3 relative + absolute leaves a wide margin
        // while any wrong term (an O(0.1) change) fails.
        let sign = match kind {
            Kind::PseudoLikelihood => 1.0,
            Kind::RatioMatching => -1.0,
        };
        let analytic: Vec<f32> = grad
            .weights
            .iter()
            .chain(&grad.visible_bias)
            .chain(&grad.hidden_bias)
            .copied()
            .collect();
        let h = 1e-4;
        for (k, &g) in analytic.iter().enumerate() {
            let mut plus = theta.clone();
            plus[k] += h;
            let mut minus = theta.clone();
            minus[k] -= h;
            let fd = sign * (brute_force(kind, &plus, &batch) - brute_force(kind, &minus, &batch))
                / (2.0 * h);
            assert!(
                (g as f64 - fd).abs() <= grad_tol * (1.0 + fd.abs()),
                "{kind:?}: parameter {k}: gradient {g} vs finite difference {fd}"
            );
        }
    }

    #[test]
    fn pseudo_likelihood_value_and_gradient_match_brute_force() {
        check_value_and_gradient(Kind::PseudoLikelihood);
    }

    /// Large weights (sum_j |W_ij| + |b_i| above the product form's bound for some bits) take
    /// the softplus-difference path; with the same tolerances as above.
    #[test]
    fn both_objectives_match_brute_force_with_large_weights() {
        for kind in [Kind::PseudoLikelihood, Kind::RatioMatching] {
            let mut theta = tiny_params();
            // Row 0 of W: |W_0j| = 30, sum 90 > 80, so bit 0 uses the fallback; the others
            // stay on the product form.
            for (j, w) in theta[..NH].iter_mut().enumerate() {
                *w = if j % 2 == 0 { 30.0 } else { -30.0 };
            }
            check_value_and_gradient_at(kind, &theta, 1e-5, 1e-3);
        }
    }

    /// The gradient and the value are bit-identical whatever the rayon pool size (the batch
    /// is split into chunks by its size only, and chunk sums are added in order). A batch of
    /// 37 rows gives 13 chunks of 3 rows (and one of 1).
    #[test]
    fn gradient_is_identical_for_one_and_several_threads() {
        let model = model_f32(&tiny_params());
        let mut rng = crate::rng::stream_for(9, crate::rng::Purpose::Training, 2);
        let batch: Vec<f32> = (0..37 * NV)
            .map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 })
            .collect();
        for kind in [Kind::PseudoLikelihood, Kind::RatioMatching] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut est = FlipObjective::new(kind, &model);
                    let mut grad = Gradient::zeros(NV, NH);
                    est.gradient(&model, &batch, &mut grad);
                    (grad, est.value.to_bits())
                })
            };
            let one = run(1);
            assert_eq!(one, run(2), "{kind:?}");
            assert_eq!(one, run(4), "{kind:?}");
        }
    }

    #[test]
    fn ratio_matching_value_and_gradient_match_brute_force() {
        check_value_and_gradient(Kind::RatioMatching);
    }

    fn bars_and_stripes() -> Dataset {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bars_stripes_4x4.txt");
        crate::io::datasets::read_dataset(&path, None).unwrap()
    }

    /// Trains on bars-and-stripes 4x4 (all 30 patterns) with `estimator` and returns the exact
    /// average log-likelihood of the data before and after.
    fn train_bars_and_stripes(
        learning_rate: f64,
        make: impl Fn(&RbmF32) -> Box<dyn GradientEstimator>,
    ) -> (f64, f64) {
        let data = bars_and_stripes();
        let params = CdParams {
            hidden: 8,
            epochs: 300,
            batch_size: 10,
            learning_rate,
            seed: 3,
            ..CdParams::default()
        };
        let state = TrainState::init(&data, &params).unwrap();
        let ll = |m: &RbmF32| {
            let rbm = m.to_rbm().unwrap();
            average_log_likelihood(&rbm, &data, rbm_log_partition(&rbm).unwrap()).unwrap()
        };
        let before = ll(&state.model);
        let mut est = make(&state.model);
        let out =
            train_with_estimator(&data, None, &params, state, est.as_mut(), &mut Silent).unwrap();
        (before, ll(&out.state.model))
    }

    /// Learning rates: ratio matching's per-bit weights g_i carry a factor sigmoid(-d_i)^2
    /// that PL's lack, so its gradients are smaller and it takes a larger rate.
    const LR_PL: f64 = 0.1;
    const LR_RM: f64 = 0.5;

    // The initial model is (nearly) the data's independent Bernoulli marginals: about
    // -16 ln 2 = -11.1 nats per example; the uniform distribution over the 30 patterns has
    // -ln 30 = -3.4. A margin of 2 nats is a clear gain that a wrong-signed or broken gradient
    // (which lowers the likelihood or leaves it) cannot reach; the seed is fixed.
    #[test]
    fn pseudo_likelihood_training_raises_the_exact_likelihood() {
        let (before, after) = train_bars_and_stripes(LR_PL, |m| Box::new(PseudoLikelihood::new(m)));
        assert!(after > before + 2.0, "before {before}, after {after}");
    }

    #[test]
    fn ratio_matching_training_raises_the_exact_likelihood() {
        let (before, after) = train_bars_and_stripes(LR_RM, |m| Box::new(RatioMatching::new(m)));
        assert!(after > before + 2.0, "before {before}, after {after}");
    }

    #[test]
    fn persistent_chains_are_refused_for_the_chain_free_objectives() {
        use crate::learn::cd::Objective;
        for objective in [Objective::PseudoLikelihood, Objective::RatioMatching] {
            let params = CdParams {
                objective,
                persistent: true,
                ..CdParams::default()
            };
            let msg = params.validate().unwrap_err().to_string();
            assert!(
                msg.contains("persistent") && msg.contains(objective.name(false)),
                "{msg}"
            );
        }
    }
}
