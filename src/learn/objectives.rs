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
//! again O(n_v n_h) per example. Arithmetic is f32 like the rest of training; the objective's
//! value of the last batch is kept (f64 sum of f32 terms) for monitoring and tests.

use super::estimator::{Gradient, GradientEstimator};
use crate::model::rbm_f32::RbmF32;
use crate::rng::EbmRng;

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

/// The computation both objectives share (see the module documentation), with its buffers
/// allocated once for the model's shape.
#[derive(Debug, Clone)]
struct FlipObjective {
    kind: Kind,
    /// a = c + v^T W of the current example (n_h).
    act: Vec<f32>,
    /// p = sigmoid(a) (n_h).
    prob: Vec<f32>,
    /// softplus(a) (n_h).
    soft: Vec<f32>,
    /// p^(i) = sigmoid(a + s_i W_i.), row i (n_v x n_h).
    flipped_prob: Vec<f32>,
    /// d_i = F(v^(i)) - F(v) (n_v).
    delta: Vec<f32>,
    /// Q_j = sum_i g_i p^(i)_j (n_h).
    q: Vec<f32>,
    /// The objective (PL, or RM) averaged over the last batch.
    value: f64,
}

impl FlipObjective {
    fn new(kind: Kind, model: &RbmF32) -> Self {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        FlipObjective {
            kind,
            act: vec![0.0; nh],
            prob: vec![0.0; nh],
            soft: vec![0.0; nh],
            flipped_prob: vec![0.0; nv * nh],
            delta: vec![0.0; nv],
            q: vec![0.0; nh],
            value: 0.0,
        }
    }

    fn gradient(&mut self, model: &RbmF32, batch: &[f32], grad: &mut Gradient) {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        let rows = batch.len() / nv;
        grad.weights.fill(0.0);
        grad.visible_bias.fill(0.0);
        grad.hidden_bias.fill(0.0);
        let mut total = 0.0f64;
        for v in batch.chunks_exact(nv) {
            // a = c + v^T W.
            self.act.copy_from_slice(&model.hidden_bias);
            for (&vi, w_row) in v.iter().zip(model.weights.chunks_exact(nh)) {
                if vi != 0.0 {
                    for (a, &w) in self.act.iter_mut().zip(w_row) {
                        *a += w;
                    }
                }
            }
            for ((p, sp), &a) in self.prob.iter_mut().zip(&mut self.soft).zip(&self.act) {
                (*sp, *p) = softplus_and_sigmoid_f32(a);
            }
            // d_i and p^(i).
            for (i, &vi) in v.iter().enumerate() {
                let s = 1.0 - 2.0 * vi;
                let w_row = &model.weights[i * nh..(i + 1) * nh];
                let fp = &mut self.flipped_prob[i * nh..(i + 1) * nh];
                let mut d = -s * model.visible_bias[i];
                for (((p, &a), &sp), &w) in fp.iter_mut().zip(&self.act).zip(&self.soft).zip(w_row)
                {
                    let (soft_flipped, prob_flipped) = softplus_and_sigmoid_f32(a + s * w);
                    d -= soft_flipped - sp;
                    *p = prob_flipped;
                }
                self.delta[i] = d;
            }
            // Weights g_i (stored over d_i), the objective, G and Q.
            let mut g_sum = 0.0f32;
            self.q.fill(0.0);
            for i in 0..nv {
                let d = self.delta[i];
                let (term, g) = match self.kind {
                    // ln sigmoid(d) = -softplus(-d); d/dd = sigmoid(-d).
                    Kind::PseudoLikelihood => (-softplus_f32(-d), sigmoid_f32(-d)),
                    // sigmoid(-d)^2; d/dd of its negative = 2 sigmoid(-d)^2 sigmoid(d).
                    Kind::RatioMatching => {
                        let r = sigmoid_f32(-d);
                        (r * r, 2.0 * r * r * sigmoid_f32(d))
                    }
                };
                total += term as f64;
                self.delta[i] = g;
                g_sum += g;
                let fp = &self.flipped_prob[i * nh..(i + 1) * nh];
                for (q, &p) in self.q.iter_mut().zip(fp) {
                    *q += g * p;
                }
            }
            // Accumulate this example's gradient.
            for (gc, (&p, &q)) in grad
                .hidden_bias
                .iter_mut()
                .zip(self.prob.iter().zip(&self.q))
            {
                *gc += g_sum * p - q;
            }
            for (k, &vk) in v.iter().enumerate() {
                let s = 1.0 - 2.0 * vk;
                let gk = self.delta[k];
                grad.visible_bias[k] -= s * gk;
                let fp = &self.flipped_prob[k * nh..(k + 1) * nh];
                let gw = &mut grad.weights[k * nh..(k + 1) * nh];
                if vk != 0.0 {
                    for (((o, &p), &q), &pk) in gw.iter_mut().zip(&self.prob).zip(&self.q).zip(fp) {
                        *o += g_sum * p - q - s * gk * pk;
                    }
                } else {
                    for (o, &pk) in gw.iter_mut().zip(fp) {
                        *o -= s * gk * pk;
                    }
                }
            }
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
        let theta = tiny_params();
        let batch = tiny_batch();
        let model = model_f32(&theta);
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
            (est.value - exact).abs() <= 1e-5 * exact.abs(),
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
                (g as f64 - fd).abs() <= 1e-3 * (1.0 + fd.abs()),
                "{kind:?}: parameter {k}: gradient {g} vs finite difference {fd}"
            );
        }
    }

    #[test]
    fn pseudo_likelihood_value_and_gradient_match_brute_force() {
        check_value_and_gradient(Kind::PseudoLikelihood);
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
