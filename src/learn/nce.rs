//! Noise-contrastive estimation (Gutmann & Hyvarinen, "Noise-contrastive estimation of
//! unnormalized statistical models, with applications to natural image statistics", JMLR 2012)
//! as a [`GradientEstimator`] ([`NoiseContrastive`]) for the shared epoch loop.
//!
//! The model is unnormalised with a learned normaliser: ln p_m(v) = -F(v) - c, with the free
//! energy F(v) = -b^T v - sum_j softplus(a_j), a = c_hidden + v^T W, and c a scalar (the
//! estimate of ln Z). The noise is q(u) = prod_i m_i^u_i (1 - m_i)^(1 - u_i), the factorised
//! Bernoulli distribution with the training data's bit means m_i
//! ([`crate::learn::TrainState::data_means`], clipped to [1e-3, 1 - 1e-3] so that ln q is
//! finite). With nu noise samples per data example and G(x) = ln p_m(x) - ln(nu q(x)), the
//! objective of a batch of N examples v_r and M = nu N noise samples u_s is
//!
//! ```text
//! J = (1/N) sum_r ln sigmoid(G(v_r)) + nu (1/M) sum_s ln(1 - sigmoid(G(u_s))),
//! ```
//!
//! the log-likelihood of telling data from noise by logistic regression on G; it is ascended in
//! (W, b, c_hidden, c). With dG/dtheta = -dF/dtheta (dW_kj: x_k sigmoid(a_j), db_k: x_k,
//! dc_hidden_j: sigmoid(a_j)) and dG/dc = -1, the gradient is a weighted sum over the rows,
//! weight sigmoid(-G(v_r)) / N for a data row and -nu sigmoid(G(u_s)) / M for a noise row
//! ([`nce_value_and_gradient`]).
//!
//! c is a parameter of the estimator, not of the RBM: the estimator owns it
//! ([`GradientEstimator::own_parameters`]), the epoch loop steps it after each optimizer step
//! ([`GradientEstimator::step_own_parameters`]: plain gradient ascent at the epoch's learning
//! rate, no momentum, so the optimizer stays generic and a checkpoint needs c only), and a
//! checkpoint stores it (tensor `nce_log_z`). At the optimum of the expected objective
//! p_m = p_data when the model family contains p_data, so c = ln Z: NCE's c is a consistent
//! estimate of the model's ln Z.

use super::estimator::{Gradient, GradientEstimator};
use crate::model::rbm_f32::RbmF32;
use crate::rng::EbmRng;
use rand::RngExt;

/// The noise means are clipped to [NOISE_MEAN_CLIP, 1 - NOISE_MEAN_CLIP].
pub const NOISE_MEAN_CLIP: f64 = 1e-3;

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

/// The factorised Bernoulli noise: its means and log-probabilities per bit.
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliNoise {
    /// m_i, clipped to [NOISE_MEAN_CLIP, 1 - NOISE_MEAN_CLIP].
    pub means: Vec<f32>,
    ln_on: Vec<f32>,
    ln_off: Vec<f32>,
}

impl BernoulliNoise {
    /// The noise with bit means `data_means` (clipped, see [`NOISE_MEAN_CLIP`]).
    pub fn new(data_means: &[f64]) -> Self {
        let means: Vec<f64> = data_means
            .iter()
            .map(|&m| m.clamp(NOISE_MEAN_CLIP, 1.0 - NOISE_MEAN_CLIP))
            .collect();
        BernoulliNoise {
            ln_on: means.iter().map(|&m| m.ln() as f32).collect(),
            ln_off: means.iter().map(|&m| (1.0 - m).ln() as f32).collect(),
            means: means.iter().map(|&m| m as f32).collect(),
        }
    }

    /// ln q(u) = sum_i u_i ln m_i + (1 - u_i) ln(1 - m_i).
    pub fn ln_prob(&self, u: &[f32]) -> f32 {
        u.iter()
            .zip(self.ln_on.iter().zip(&self.ln_off))
            .map(|(&x, (&on, &off))| if x != 0.0 { on } else { off })
            .sum()
    }

    /// Draws one sample into `out` from `rng`.
    pub fn sample(&self, rng: &mut EbmRng, out: &mut [f32]) {
        for (o, &m) in out.iter_mut().zip(&self.means) {
            *o = if rng.random::<f32>() < m { 1.0 } else { 0.0 };
        }
    }
}

/// The NCE objective J of the module docs for the data rows `data` and the noise rows `noise`
/// (both `rows x n_visible`, entries 0.0 or 1.0; `noise` has `ratio` times as many rows as
/// `data`), with normaliser `log_z` (c): writes dJ/d(W, b, c_hidden) into `grad` and returns
/// (J, dJ/dc). `act` is scratch of `n_hidden` entries. J is summed in f64 from f32 terms.
#[allow(clippy::too_many_arguments)]
pub fn nce_value_and_gradient(
    model: &RbmF32,
    log_z: f32,
    noise_dist: &BernoulliNoise,
    ratio: usize,
    data: &[f32],
    noise: &[f32],
    grad: &mut Gradient,
    act: &mut [f32],
) -> (f64, f32) {
    let (nv, nh) = (model.n_visible, model.n_hidden);
    let n_data = data.len() / nv;
    let n_noise = noise.len() / nv;
    let ln_ratio = (ratio as f32).ln();
    grad.weights.fill(0.0);
    grad.visible_bias.fill(0.0);
    grad.hidden_bias.fill(0.0);
    let mut value = 0.0f64;
    let mut d_log_z = 0.0f32;
    let rows = data
        .chunks_exact(nv)
        .map(|x| (x, true))
        .chain(noise.chunks_exact(nv).map(|x| (x, false)));
    for (x, is_data) in rows {
        // a = c_hidden + x^T W over the bits that are on.
        act.copy_from_slice(&model.hidden_bias);
        let mut neg_f = 0.0f32;
        for ((&xi, &bi), w_row) in x
            .iter()
            .zip(&model.visible_bias)
            .zip(model.weights.chunks_exact(nh))
        {
            if xi != 0.0 {
                neg_f += bi;
                for (a, &w) in act.iter_mut().zip(w_row) {
                    *a += w;
                }
            }
        }
        neg_f += act.iter().map(|&a| softplus_f32(a)).sum::<f32>();
        let g = neg_f - log_z - ln_ratio - noise_dist.ln_prob(x);
        // weight = dJ/dG of this row.
        let weight = if is_data {
            value += -softplus_f32(-g) as f64 / n_data as f64;
            sigmoid_f32(-g) / n_data as f32
        } else {
            value += -(ratio as f64) * softplus_f32(g) as f64 / n_noise as f64;
            -(ratio as f32) * sigmoid_f32(g) / n_noise as f32
        };
        d_log_z -= weight;
        for a in act.iter_mut() {
            *a = sigmoid_f32(*a);
        }
        for ((&xi, gb), g_row) in x
            .iter()
            .zip(grad.visible_bias.iter_mut())
            .zip(grad.weights.chunks_exact_mut(nh))
        {
            if xi != 0.0 {
                *gb += weight;
                for (gw, &p) in g_row.iter_mut().zip(act.iter()) {
                    *gw += weight * p;
                }
            }
        }
        for (gc, &p) in grad.hidden_bias.iter_mut().zip(act.iter()) {
            *gc += weight * p;
        }
    }
    (value, d_log_z)
}

/// NCE with Bernoulli noise from the data means, nu = `ratio` noise samples per example and
/// the learned normaliser c (see the module docs). Data row r's noise samples are drawn from
/// `rngs[r]`, so the result does not depend on the number of threads.
#[derive(Debug, Clone)]
pub struct NoiseContrastive {
    ratio: usize,
    noise_dist: BernoulliNoise,
    /// [c].
    log_z: [f32; 1],
    /// dJ/dc of the last batch.
    d_log_z: f32,
    noise: Vec<f32>,
    act: Vec<f32>,
    value: f64,
}

impl NoiseContrastive {
    /// An estimator for `model` with noise means `data_means` and `ratio` (>= 1) noise samples
    /// per example, for batches of at most `max_rows` rows; c starts at `log_z`, or, when
    /// `None` (a fresh run), at [`initial_log_z`] of `model`.
    pub fn new(
        model: &RbmF32,
        data_means: &[f64],
        ratio: usize,
        max_rows: usize,
        log_z: Option<f32>,
    ) -> Self {
        NoiseContrastive {
            ratio,
            noise_dist: BernoulliNoise::new(data_means),
            log_z: [log_z.unwrap_or_else(|| initial_log_z(model))],
            d_log_z: 0.0,
            noise: vec![0.0; max_rows * ratio * model.n_visible],
            act: vec![0.0; model.n_hidden],
            value: 0.0,
        }
    }

    /// The current c (estimate of ln Z).
    pub fn log_z(&self) -> f32 {
        self.log_z[0]
    }

    /// J of the last batch.
    pub fn value(&self) -> f64 {
        self.value
    }
}

/// The starting value of c: ln Z of `model` with its weights set to zero,
/// sum_i softplus(b_i) + sum_j softplus(c_j), which is exact for W = 0 and, for the small
/// initial weights of [`crate::learn::TrainState::init`] (standard deviation 0.01), off from
/// the initial model's ln Z by O(n_v n_h std^2) only; 0 would start c off by about
/// (n_v + n_h) ln 2 and waste the first epochs on c.
pub fn initial_log_z(model: &RbmF32) -> f32 {
    model
        .visible_bias
        .iter()
        .chain(&model.hidden_bias)
        .map(|&x| softplus_f32(x))
        .sum()
}

impl GradientEstimator for NoiseContrastive {
    fn gradient(
        &mut self,
        model: &RbmF32,
        batch: &[f32],
        rngs: &mut [EbmRng],
        grad: &mut Gradient,
    ) {
        let nv = model.n_visible;
        let rows = batch.len() / nv;
        let noise = &mut self.noise[..rows * self.ratio * nv];
        for (block, rng) in noise.chunks_exact_mut(self.ratio * nv).zip(rngs.iter_mut()) {
            for u in block.chunks_exact_mut(nv) {
                self.noise_dist.sample(rng, u);
            }
        }
        let (value, d_log_z) = nce_value_and_gradient(
            model,
            self.log_z[0],
            &self.noise_dist,
            self.ratio,
            batch,
            noise,
            grad,
            &mut self.act,
        );
        self.value = value;
        self.d_log_z = d_log_z;
    }

    fn streams(&self, batch_rows: usize) -> usize {
        batch_rows
    }

    fn own_parameters(&self) -> &[f32] {
        &self.log_z
    }

    fn step_own_parameters(&mut self, lr: f32) {
        self.log_z[0] += lr * self.d_log_z;
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
    use crate::progress::Silent;

    const NV: usize = 5;
    const NH: usize = 3;

    /// Parameters as one f64 vector: W (row-major), then b, then c_hidden, then c.
    fn tiny_params() -> Vec<f64> {
        let mut rng = crate::rng::stream_for(7, crate::rng::Purpose::Training, 0);
        (0..NV * NH + NV + NH + 1)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    fn rows(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = crate::rng::stream_for(seed, crate::rng::Purpose::Training, 1);
        (0..n * NV)
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
            hidden_bias: f(&theta[NV * NH + NV..NV * NH + NV + NH]),
        }
    }

    /// J straight from the definition in f64: -F by a sum over all hidden states.
    fn brute_force(theta: &[f64], means: &[f64], ratio: usize, data: &[f32], noise: &[f32]) -> f64 {
        let (w, rest) = theta.split_at(NV * NH);
        let (b, rest) = rest.split_at(NV);
        let (c, log_z) = rest.split_at(NH);
        let g = |x: &[f32]| {
            let mut total = 0.0f64;
            for h in 0..1usize << NH {
                let mut e = 0.0;
                for i in 0..NV {
                    e += b[i] * x[i] as f64;
                    for j in 0..NH {
                        e += w[i * NH + j] * x[i] as f64 * ((h >> j) & 1) as f64;
                    }
                }
                for (j, &cj) in c.iter().enumerate() {
                    e += cj * ((h >> j) & 1) as f64;
                }
                total += e.exp();
            }
            let ln_q: f64 = x
                .iter()
                .zip(means)
                .map(|(&xi, &m)| if xi != 0.0 { m.ln() } else { (1.0 - m).ln() })
                .sum();
            total.ln() - log_z[0] - (ratio as f64).ln() - ln_q
        };
        let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
        let nd = (data.len() / NV) as f64;
        let nn = (noise.len() / NV) as f64;
        data.chunks_exact(NV).map(|x| sig(g(x)).ln()).sum::<f64>() / nd
            + ratio as f64
                * noise
                    .chunks_exact(NV)
                    .map(|u| (1.0 - sig(g(u))).ln())
                    .sum::<f64>()
                / nn
    }

    // Value and every partial derivative (W, b, c_hidden and c) against the f64 definition and
    // central differences (step 1e-4 in f64, error O(1e-8)) with a fixed noise sample. The
    // estimator works in f32 (relative rounding ~1e-6 per term over tens of terms), so 1e-4
    // relative on the value and 1e-3 absolute on the derivatives (of size ~0.1) leave room for
    // rounding only; a wrong term is off by 1e-2 or more.
    #[test]
    fn value_and_gradient_match_brute_force_and_finite_differences() {
        let theta = tiny_params();
        let means = [0.3, 0.5, 0.9, 0.2, 0.6];
        let noise_dist = BernoulliNoise::new(&means);
        for ratio in [1, 3] {
            let data = rows(8, 4);
            let noise = rows(9, 4 * ratio);
            let model = model_f32(&theta);
            let mut grad = Gradient::zeros(NV, NH);
            let mut act = vec![0.0; NH];
            let log_z = theta[theta.len() - 1] as f32;
            let (value, d_log_z) = nce_value_and_gradient(
                &model,
                log_z,
                &noise_dist,
                ratio,
                &data,
                &noise,
                &mut grad,
                &mut act,
            );
            let exact = brute_force(&theta, &means, ratio, &data, &noise);
            assert!(
                (value - exact).abs() <= 1e-4 * exact.abs(),
                "ratio {ratio}: {value} vs {exact}"
            );
            let analytic: Vec<f32> = grad
                .weights
                .iter()
                .chain(&grad.visible_bias)
                .chain(&grad.hidden_bias)
                .copied()
                .chain([d_log_z])
                .collect();
            let h = 1e-4;
            for (k, &a) in analytic.iter().enumerate() {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[k] += h;
                down[k] -= h;
                let fd = (brute_force(&up, &means, ratio, &data, &noise)
                    - brute_force(&down, &means, ratio, &data, &noise))
                    / (2.0 * h);
                assert!(
                    (a as f64 - fd).abs() <= 1e-3,
                    "ratio {ratio}, parameter {k}: analytic {a} vs finite difference {fd}"
                );
            }
        }
    }

    fn bars_and_stripes() -> Dataset {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bars_stripes_4x4.txt");
        crate::io::datasets::read_dataset(&path, None).unwrap()
    }

    // Bars-and-stripes 4x4 (30 patterns), 8 hidden units, 300 epochs at rate 1.0 (NCE against
    // factorised noise has small gradients at the start, where model and noise nearly agree:
    // sigmoid(G) is about 1/2 on both sides), fixed seed. The initial model is about the data's
    // independent marginals (-11.1 nats per example; uniform over the 30 patterns: -3.4); this
    // run gains about 2.3 nats, and 1.5 is a clear gain that a wrong-signed or broken gradient
    // cannot reach. c is then compared with the exact ln Z (2^16 visible states). c is a
    // consistent estimate of ln Z only when the model family contains the data distribution
    // and the data are unlimited; here 30 patterns, one noise sample per example per batch, a
    // misspecified 8-unit RBM, and c stepped without momentum while ln Z still grows by
    // ~0.02 nats per epoch leave c about 0.6 nats above ln Z for this seed. The tolerance of
    // 1 nat (a factor 2.7 on Z) covers that and is far below the distance of a c that was
    // not learned: ln Z moves from ~16.6 (the initial c) to ~21.
    #[test]
    fn training_raises_the_exact_likelihood_and_learns_ln_z() {
        let data = bars_and_stripes();
        let params = CdParams {
            hidden: 8,
            epochs: 300,
            batch_size: 10,
            learning_rate: 1.0,
            seed: 3,
            ..CdParams::default()
        };
        let state = TrainState::init(&data, &params).unwrap();
        let ll = |m: &RbmF32| {
            let rbm = m.to_rbm().unwrap();
            average_log_likelihood(&rbm, &data, rbm_log_partition(&rbm).unwrap()).unwrap()
        };
        let before = ll(&state.model);
        let initial_c = initial_log_z(&state.model);
        let mut est = NoiseContrastive::new(&state.model, &state.data_means, 1, 10, None);
        let out = train_with_estimator(&data, None, &params, state, &mut est, &mut Silent).unwrap();
        let after = ll(&out.state.model);
        assert!(after > before + 1.5, "before {before}, after {after}");
        let exact = rbm_log_partition(&out.state.model.to_rbm().unwrap()).unwrap();
        let c = est.log_z() as f64;
        assert_eq!(out.state.own_parameters, vec![est.log_z()]);
        assert!(
            (c - exact).abs() < 1.0,
            "learned c {c} vs exact ln Z {exact} (initial c {initial_c})"
        );
        assert!((initial_c as f64 - exact).abs() > 2.0);
    }
}
