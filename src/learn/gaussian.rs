//! Training of a [`GaussianRbm`] on real-valued data: CD-k, PCD-k, score matching and
//! denoising score matching.
//!
//! # Parameters
//! theta = (W, b, c, rho) packed in that order ([`pack`], [`unpack`]), with rho_i = ln sigma_i
//! so that sigma stays positive; with fixed sigma the rho part of every gradient is ignored.
//! Learned sigmas are kept in [[`MIN_LEARNED_SIGMA`], [`MAX_LEARNED_SIGMA`]].
//!
//! # Objectives (lambda_i = 1 / sigma_i^2, s_j = sigmoid(a_j(v)), a_j = c_j + sum_i v_i W_ij lambda_i)
//! * **CD-k / PCD-k**: the log-likelihood gradient E_data[-dF/dtheta] - E_model[-dF/dtheta] with
//!   the model term from k block-Gibbs sweeps started at the batch (CD) or continued from
//!   persistent chains (PCD), where
//!   -dF/dW_ij = v_i lambda_i s_j, -dF/db_i = (v_i - b_i) lambda_i, -dF/dc_j = s_j,
//!   -dF/drho_i = 2 lambda_i ((v_i - b_i)^2 / 2 - v_i sum_j W_ij s_j).
//! * **Score matching** (Hyvarinen 2005; for this model Swersky et al. 2011): minimise
//!   J = E_data sum_i [ psi_i^2 / 2 + d psi_i / d v_i ], psi = grad_v ln p(v) = -grad_v F, which
//!   in closed form is psi_i = lambda_i (b_i - v_i + sum_j W_ij s_j) and
//!   d psi_i / d v_i = -lambda_i + lambda_i^2 sum_j W_ij^2 s_j (1 - s_j).
//!   Its exact gradient ([`score_matching_terms`]): with r_i = psi_i / lambda_i,
//!   u_j = sum_i psi_i lambda_i W_ij, q_j = sum_i lambda_i^2 W_ij^2, s'_j = s_j (1 - s_j),
//!   s''_j = s'_j (1 - 2 s_j) and g_j = s'_j u_j + s''_j q_j:
//!   dJ/dc_j = g_j, dJ/db_i = psi_i lambda_i,
//!   dJ/dW_ij = psi_i lambda_i s_j + 2 lambda_i^2 W_ij s'_j + v_i lambda_i g_j,
//!   dJ/dlambda_i = psi_i r_i - 1 + 2 lambda_i sum_j W_ij^2 s'_j + v_i sum_j W_ij g_j,
//!   dJ/drho_i = -2 lambda_i dJ/dlambda_i.
//! * **Denoising score matching** (Vincent 2011): for x from the data and y = x + s z,
//!   z ~ N(0, I), minimise E |psi(y) - (x - y) / s^2|^2 / 2 ([`denoising_terms`]); its gradient
//!   is the psi-part of the one above with psi replaced by the residual e = psi(y) - (x - y) / s^2
//!   and v by y (no Hessian terms). The noise of batch k of epoch t comes from its own stream;
//!   each example is used with an antithetic pair y = x + s z and y = x - s z (both draws of
//!   the noisy example, so the estimate stays unbiased), which cancels the residual's large
//!   +-z/s terms to first order and keeps the gradient's variance O(1) instead of O(1/s^2).
//!
//! Updates: momentum gradient ascent, velocity <- m velocity + lr (direction - weight_decay W),
//! theta <- theta + velocity, on mini-batches of a fresh permutation each epoch. Every random
//! choice draws from `rng::stream_for(seed, Purpose::GaussianTraining, key)` with one key per
//! use (initialisation, each epoch's shuffle, each batch), and batches are processed in order, so
//! the result depends on the seed only.

// Loops over i (visible) and j (hidden) index several arrays at once, as the formulas do.
#![allow(clippy::needless_range_loop)]

use rand::RngExt;
use rand_distr::{Distribution, Normal, StandardNormal};

use crate::dataset::RealDataset;
use crate::error::{Error, Result};
use crate::logspace::sigmoid;
use crate::model::GaussianRbm;
use crate::rng::{EbmRng, Purpose, stream_for};
use crate::sample::gaussian::{sample_hidden, sample_visible};

/// The smallest sigma that learning may reach (a density on data with repeated values can grow
/// without bound as sigma shrinks).
pub const MIN_LEARNED_SIGMA: f64 = 1e-2;
/// The largest sigma that learning may reach.
pub const MAX_LEARNED_SIGMA: f64 = 1e2;

/// What a Gaussian RBM is trained to optimise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaussianObjective {
    /// CD-k.
    Cd {
        /// Gibbs sweeps per update.
        k: usize,
    },
    /// PCD-k with one persistent chain per batch row.
    Pcd {
        /// Gibbs sweeps per update.
        k: usize,
    },
    /// Score matching in closed form.
    ScoreMatching,
    /// Denoising score matching with Gaussian noise of this standard deviation.
    DenoisingScoreMatching {
        /// s > 0.
        noise_std: f64,
    },
}

/// Settings of [`GaussianTrainer`].
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianTrainParams {
    /// Hidden units.
    pub hidden: usize,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Momentum in [0, 1).
    pub momentum: f64,
    /// L2 weight decay on W.
    pub weight_decay: f64,
    /// The objective.
    pub objective: GaussianObjective,
    /// Learn sigma (else it stays at `sigma`).
    pub learn_sigma: bool,
    /// The initial (or fixed) sigma of every visible unit.
    pub sigma: f64,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// The seed of every random choice.
    pub seed: u64,
}

impl GaussianTrainParams {
    /// Defaults for `hidden` hidden units and `objective`.
    pub fn new(hidden: usize, objective: GaussianObjective) -> Self {
        GaussianTrainParams {
            hidden,
            batch_size: 20,
            learning_rate: 0.01,
            momentum: 0.5,
            weight_decay: 0.0,
            objective,
            learn_sigma: false,
            sigma: 1.0,
            init_std: 0.01,
            seed: crate::rng::DEFAULT_SEED,
        }
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be a finite number > 0, got {x}"),
                ))
            }
        };
        if self.hidden == 0 {
            return Err(Error::param("hidden", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::param("batch-size", "must be at least 1"));
        }
        positive("lr", self.learning_rate)?;
        positive("sigma", self.sigma)?;
        positive("init-std", self.init_std)?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::param(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::param(
                "weight-decay",
                format!("must be a finite number >= 0, got {}", self.weight_decay),
            ));
        }
        match self.objective {
            GaussianObjective::Cd { k } | GaussianObjective::Pcd { k } if k == 0 => {
                Err(Error::param("k", "must be at least 1"))
            }
            GaussianObjective::DenoisingScoreMatching { noise_std } => {
                positive("noise-std", noise_std)
            }
            _ => Ok(()),
        }
    }
}

/// theta = (W, b, c, ln sigma) of `model`.
pub fn pack(model: &GaussianRbm) -> Vec<f64> {
    let mut theta = model.weights().to_vec();
    theta.extend_from_slice(model.visible_bias());
    theta.extend_from_slice(model.hidden_bias());
    theta.extend(model.visible_sigma().iter().map(|s| s.ln()));
    theta
}

/// The model of theta = (W, b, c, ln sigma) (the inverse of [`pack`]).
pub fn unpack(n_visible: usize, n_hidden: usize, theta: &[f64]) -> Result<GaussianRbm> {
    let (nv, nh) = (n_visible, n_hidden);
    let w = nv * nh;
    if theta.len() != w + 2 * nv + nh {
        return Err(Error::SizeMismatch(format!(
            "{} parameters for a {nv} x {nh} Gaussian RBM, expected {}",
            theta.len(),
            w + 2 * nv + nh
        )));
    }
    GaussianRbm::new(
        nv,
        nh,
        theta[..w].to_vec(),
        theta[w..w + nv].to_vec(),
        theta[w + nv..w + nv + nh].to_vec(),
        theta[w + nv + nh..].iter().map(|r| r.exp()).collect(),
    )
}

/// Scratch for the per-example terms, allocated once, with the per-model quantities
/// lambda_i = 1 / sigma_i^2 and q_j = sum_i lambda_i^2 W_ij^2 that every example shares: after
/// the model changes, call [`Scratch::prepare`] before using the scratch with it.
#[derive(Debug, Clone)]
pub struct Scratch {
    lambda: Vec<f64>,
    q: Vec<f64>,
    w2s1: Vec<f64>,
    a: Vec<f64>,
    s: Vec<f64>,
    s1: Vec<f64>,
    g: Vec<f64>,
    psi: Vec<f64>,
    r: Vec<f64>,
}

impl Scratch {
    /// Buffers for `model`'s shape, prepared for `model`.
    pub fn new(model: &GaussianRbm) -> Self {
        let (nv, nh) = (model.n_visible(), model.n_hidden());
        let mut scratch = Scratch {
            lambda: vec![0.0; nv],
            q: vec![0.0; nh],
            w2s1: vec![0.0; nv],
            a: vec![0.0; nh],
            s: vec![0.0; nh],
            s1: vec![0.0; nh],
            g: vec![0.0; nh],
            psi: vec![0.0; nv],
            r: vec![0.0; nv],
        };
        scratch.prepare(model);
        scratch
    }

    /// Computes lambda and q for `model` (of the shape the scratch was made for).
    pub fn prepare(&mut self, model: &GaussianRbm) {
        let nh = model.n_hidden();
        for (l, s) in self.lambda.iter_mut().zip(model.visible_sigma()) {
            *l = 1.0 / (s * s);
        }
        self.q.fill(0.0);
        for (i, &l) in self.lambda.iter().enumerate() {
            for (q, w) in self
                .q
                .iter_mut()
                .zip(&model.weights()[i * nh..(i + 1) * nh])
            {
                *q += l * l * w * w;
            }
        }
    }
}

/// Adds `weight * (-dF(v)/dtheta)` to `grad` (see the module docs).
pub fn add_log_likelihood_terms(
    model: &GaussianRbm,
    v: &[f64],
    weight: f64,
    scratch: &mut Scratch,
    grad: &mut [f64],
) {
    let (nv, nh) = (model.n_visible(), model.n_hidden());
    let (w, b, sig) = (model.weights(), model.visible_bias(), model.visible_sigma());
    model.hidden_activations(v, &mut scratch.a);
    for (s, a) in scratch.s.iter_mut().zip(&scratch.a) {
        *s = sigmoid(*a);
    }
    let (gw, rest) = grad.split_at_mut(nv * nh);
    let (gb, rest) = rest.split_at_mut(nv);
    let (gc, grho) = rest.split_at_mut(nh);
    for (gc, s) in gc.iter_mut().zip(&scratch.s) {
        *gc += weight * s;
    }
    for i in 0..nv {
        let lambda = 1.0 / (sig[i] * sig[i]);
        let x = v[i] * lambda * weight;
        let row = &w[i * nh..(i + 1) * nh];
        let mut ws = 0.0;
        for ((g, s), wij) in gw[i * nh..(i + 1) * nh].iter_mut().zip(&scratch.s).zip(row) {
            *g += x * s;
            ws += wij * s;
        }
        let d = v[i] - b[i];
        gb[i] += weight * d * lambda;
        grho[i] += weight * 2.0 * lambda * (0.5 * d * d - v[i] * ws);
    }
}

/// The score-matching loss of one example, sum_i [psi_i^2 / 2 + d psi_i / d v_i], and (if
/// `grad` is given) `weight` times its gradient added to it (module docs). `scratch` must be
/// prepared for `model` ([`Scratch::prepare`]).
pub fn score_matching_terms(
    model: &GaussianRbm,
    v: &[f64],
    weight: f64,
    scratch: &mut Scratch,
    grad: Option<&mut [f64]>,
) -> f64 {
    let (nv, nh) = (model.n_visible(), model.n_hidden());
    let (w, b) = (model.weights(), model.visible_bias());
    debug_assert_eq!(scratch.lambda.len(), nv);
    model.hidden_activations(v, &mut scratch.a);
    for j in 0..nh {
        let s = sigmoid(scratch.a[j]);
        scratch.s[j] = s;
        scratch.s1[j] = s * (1.0 - s);
    }
    let mut loss = 0.0;
    for i in 0..nv {
        let lambda = scratch.lambda[i];
        let row = &w[i * nh..(i + 1) * nh];
        let mut ws = 0.0;
        let mut w2s1 = 0.0;
        for ((wij, s), s1) in row.iter().zip(&scratch.s).zip(&scratch.s1) {
            ws += wij * s;
            w2s1 += wij * wij * s1;
        }
        scratch.w2s1[i] = w2s1;
        scratch.r[i] = b[i] - v[i] + ws;
        scratch.psi[i] = lambda * scratch.r[i];
        loss += 0.5 * scratch.psi[i] * scratch.psi[i] - lambda + lambda * lambda * w2s1;
    }
    let Some(grad) = grad else {
        return loss;
    };
    // u_j = sum_i psi_i lambda_i W_ij, row by row; then g_j = s'_j u_j + s''_j q_j.
    scratch.g.fill(0.0);
    for i in 0..nv {
        let c = scratch.psi[i] * scratch.lambda[i];
        for (u, wij) in scratch.g.iter_mut().zip(&w[i * nh..(i + 1) * nh]) {
            *u += c * wij;
        }
    }
    for j in 0..nh {
        let s1 = scratch.s1[j];
        scratch.g[j] = s1 * scratch.g[j] + s1 * (1.0 - 2.0 * scratch.s[j]) * scratch.q[j];
    }
    let (gw, rest) = grad.split_at_mut(nv * nh);
    let (gb, rest) = rest.split_at_mut(nv);
    let (gc, grho) = rest.split_at_mut(nh);
    for (gc, g) in gc.iter_mut().zip(&scratch.g) {
        *gc += weight * g;
    }
    for i in 0..nv {
        let lambda = scratch.lambda[i];
        let psi = scratch.psi[i];
        let row = &w[i * nh..(i + 1) * nh];
        let (c_s, c_s1, c_g) = (
            weight * psi * lambda,
            weight * 2.0 * lambda * lambda,
            weight * v[i] * lambda,
        );
        let mut wg = 0.0;
        for ((((gij, wij), s), s1), g) in gw[i * nh..(i + 1) * nh]
            .iter_mut()
            .zip(row)
            .zip(&scratch.s)
            .zip(&scratch.s1)
            .zip(&scratch.g)
        {
            *gij += c_s * s + c_s1 * wij * s1 + c_g * g;
            wg += wij * g;
        }
        gb[i] += weight * psi * lambda;
        let d_lambda = psi * scratch.r[i] - 1.0 + 2.0 * lambda * scratch.w2s1[i] + v[i] * wg;
        grho[i] += weight * (-2.0 * lambda * d_lambda);
    }
    loss
}

/// The denoising score-matching loss |psi(y) - (x - y) / s^2|^2 / 2 of a clean example `x` and
/// its noisy copy `y` (noise standard deviation `noise_std`), and (if `grad` is given) `weight`
/// times its gradient added to it (module docs).
pub fn denoising_terms(
    model: &GaussianRbm,
    x: &[f64],
    y: &[f64],
    noise_std: f64,
    weight: f64,
    scratch: &mut Scratch,
    grad: Option<&mut [f64]>,
) -> f64 {
    let (nv, nh) = (model.n_visible(), model.n_hidden());
    let (w, b, sig) = (model.weights(), model.visible_bias(), model.visible_sigma());
    let inv_var = 1.0 / (noise_std * noise_std);
    model.hidden_activations(y, &mut scratch.a);
    for j in 0..nh {
        let s = sigmoid(scratch.a[j]);
        scratch.s[j] = s;
        scratch.s1[j] = s * (1.0 - s);
    }
    let mut loss = 0.0;
    for i in 0..nv {
        let lambda = 1.0 / (sig[i] * sig[i]);
        let row = &w[i * nh..(i + 1) * nh];
        let ws: f64 = row.iter().zip(&scratch.s).map(|(w, s)| w * s).sum();
        scratch.r[i] = b[i] - y[i] + ws;
        // The residual e_i, kept in psi.
        scratch.psi[i] = lambda * scratch.r[i] - (x[i] - y[i]) * inv_var;
        loss += 0.5 * scratch.psi[i] * scratch.psi[i];
    }
    let Some(grad) = grad else {
        return loss;
    };
    for j in 0..nh {
        let mut u = 0.0;
        for i in 0..nv {
            u += scratch.psi[i] * w[i * nh + j] / (sig[i] * sig[i]);
        }
        scratch.g[j] = scratch.s1[j] * u;
    }
    let (gw, rest) = grad.split_at_mut(nv * nh);
    let (gb, rest) = rest.split_at_mut(nv);
    let (gc, grho) = rest.split_at_mut(nh);
    for (gc, g) in gc.iter_mut().zip(&scratch.g) {
        *gc += weight * g;
    }
    for i in 0..nv {
        let lambda = 1.0 / (sig[i] * sig[i]);
        let e = scratch.psi[i];
        let row = &w[i * nh..(i + 1) * nh];
        let mut wg = 0.0;
        for j in 0..nh {
            gw[i * nh + j] += weight * (e * lambda * scratch.s[j] + y[i] * lambda * scratch.g[j]);
            wg += row[j] * scratch.g[j];
        }
        gb[i] += weight * e * lambda;
        let d_lambda = e * scratch.r[i] + y[i] * wg;
        grho[i] += weight * (-2.0 * lambda * d_lambda);
    }
    loss
}

/// The mean score-matching loss J over the rows of `data` (lower is better).
pub fn score_matching_objective(model: &GaussianRbm, data: &RealDataset) -> f64 {
    let mut scratch = Scratch::new(model);
    data.iter_rows()
        .map(|v| score_matching_terms(model, v, 1.0, &mut scratch, None))
        .sum::<f64>()
        / data.rows() as f64
}

/// The mean exact log-likelihood (nats per example) of `data`: -F(v) - ln Z.
pub fn average_log_likelihood(model: &GaussianRbm, data: &RealDataset) -> Result<f64> {
    let ln_z = model.log_partition()?;
    let mut hidden = vec![0.0; model.n_hidden()];
    Ok(-data
        .iter_rows()
        .map(|v| model.free_energy_with(v, &mut hidden))
        .sum::<f64>()
        / data.rows() as f64
        - ln_z)
}

/// Key of the initialisation stream.
const KEY_INIT: u64 = u64::MAX;
/// Key of the stream that dequantises the training data ([`dequantise`]).
pub const KEY_DEQUANTISE_TRAIN: u64 = u64::MAX - 1;
/// Key of the stream that dequantises held-out data ([`dequantise`]).
pub const KEY_DEQUANTISE_TEST: u64 = u64::MAX - 2;

/// The most distinct values a dataset may have for [`detect_quantisation`] to call it
/// quantised (more than 12-bit data is treated as continuous).
pub const MAX_QUANTISED_LEVELS: usize = 4096;

/// A grid that every value of a dataset lies on: x = offset + k step for integers k.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantisation {
    /// The grid spacing (the smallest gap between two distinct values).
    pub step: f64,
    /// The number of distinct values in the data.
    pub levels: usize,
}

/// The grid of `data` when its values are quantised: at least 2 and at most
/// [`MAX_QUANTISED_LEVELS`] distinct values, each within 1e-6 step of offset + k step, where
/// offset is the smallest value and step the smallest gap between two distinct values. `None`
/// for continuous data (or a single value).
///
/// Why it matters: a continuous density fitted to values on a grid can put unbounded density
/// on the grid points. With sigma learned, F gains -ln sigma_i per unit that concentrates on an
/// atom (a constant or nearly constant column is the simplest case), so the log-likelihood and
/// the score-matching objective J (whose -1 / sigma_i^2 term is then not balanced by psi_i^2)
/// are unbounded as sigma_i -> 0: training drives sigma to its bound. Adding uniform noise of
/// one grid step ([`dequantise`]) gives the data a density, on which both are bounded.
pub fn detect_quantisation(data: &RealDataset) -> Option<Quantisation> {
    let mut values: Vec<f64> = data.data().to_vec();
    values.sort_unstable_by(f64::total_cmp);
    values.dedup();
    if values.len() < 2 || values.len() > MAX_QUANTISED_LEVELS {
        return None;
    }
    let step = values
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let offset = values[0];
    let on_grid = values.iter().all(|&x| {
        let k = (x - offset) / step;
        (k - k.round()).abs() <= 1e-6
    });
    (step > 0.0 && on_grid).then_some(Quantisation {
        step,
        levels: values.len(),
    })
}

/// Uniform dequantisation: x -> x + step (u - 1/2), u ~ U(0, 1) independently for every value,
/// drawn from `rng::stream_for(seed, Purpose::GaussianTraining, key)` (keys
/// [`KEY_DEQUANTISE_TRAIN`], [`KEY_DEQUANTISE_TEST`]). Each value of a grid of spacing `step`
/// spreads uniformly over its own cell [x - step / 2, x + step / 2), the cells tiling the line,
/// so for a density p of the dequantised data E_u ln p(x + step (u - 1/2)) + D ln step is a
/// lower bound on ln P(x) of the grid values (Theis et al. 2016).
pub fn dequantise(data: &mut RealDataset, step: f64, seed: u64, key: u64) -> Result<()> {
    if !(step.is_finite() && step > 0.0) {
        return Err(Error::param(
            "dequantise",
            format!("the step must be a finite number > 0, got {step}"),
        ));
    }
    let mut rng = stream_for(seed, Purpose::GaussianTraining, key);
    let noisy: Vec<f64> = data
        .data()
        .iter()
        .map(|x| x + step * (rng.random::<f64>() - 0.5))
        .collect();
    *data = RealDataset::new(data.rows(), data.cols(), noisy)?;
    Ok(())
}

/// Momentum gradient training of a [`GaussianRbm`], one epoch at a time.
#[derive(Debug, Clone)]
pub struct GaussianTrainer {
    params: GaussianTrainParams,
    n_visible: usize,
    model: GaussianRbm,
    theta: Vec<f64>,
    velocity: Vec<f64>,
    grad: Vec<f64>,
    scratch: Scratch,
    /// PCD chains (`batch_size x n_visible`), CD negatives, DSM noisy rows: one row per batch row.
    chains: Vec<f64>,
    noisy: Vec<f64>,
    noise: Vec<f64>,
    hidden: Vec<f64>,
    h: Vec<u8>,
    order: Vec<usize>,
    epochs_done: usize,
}

impl GaussianTrainer {
    /// A trainer for `train`: W ~ N(0, init_std^2), b = the data's column means, c = 0,
    /// sigma = `params.sigma`; PCD chains start at random training rows.
    pub fn new(train: &RealDataset, params: GaussianTrainParams) -> Result<Self> {
        params.validate()?;
        let (nv, nh) = (train.cols(), params.hidden);
        let mut rng = stream_for(params.seed, Purpose::GaussianTraining, KEY_INIT);
        let normal = Normal::new(0.0, params.init_std)
            .map_err(|e| Error::param("init-std", e.to_string()))?;
        let weights = (0..nv * nh).map(|_| normal.sample(&mut rng)).collect();
        let (mean, _) = train.column_mean_std();
        let model = GaussianRbm::new(nv, nh, weights, mean, vec![0.0; nh], vec![params.sigma; nv])?;
        Self::resume(train, params, model, &mut rng)
    }

    /// A trainer that continues from `model` (fresh velocity; PCD chains at random rows drawn
    /// from `rng`).
    pub fn resume(
        train: &RealDataset,
        params: GaussianTrainParams,
        model: GaussianRbm,
        rng: &mut EbmRng,
    ) -> Result<Self> {
        params.validate()?;
        let nv = train.cols();
        if model.n_visible() != nv || model.n_hidden() != params.hidden {
            return Err(Error::SizeMismatch(format!(
                "the model is {} x {}, the data has {nv} columns and {} hidden units were asked",
                model.n_visible(),
                model.n_hidden(),
                params.hidden
            )));
        }
        let batch = params.batch_size.min(train.rows());
        let mut chains = vec![0.0; batch * nv];
        for row in chains.chunks_exact_mut(nv) {
            row.copy_from_slice(train.row(rng.random_range(0..train.rows())));
        }
        let theta = pack(&model);
        Ok(GaussianTrainer {
            n_visible: nv,
            velocity: vec![0.0; theta.len()],
            grad: vec![0.0; theta.len()],
            scratch: Scratch::new(&model),
            noisy: vec![0.0; nv],
            noise: vec![0.0; nv],
            hidden: vec![0.0; params.hidden],
            h: vec![0; params.hidden],
            order: (0..train.rows()).collect(),
            theta,
            chains,
            model,
            params,
            epochs_done: 0,
        })
    }

    /// A trainer that continues exactly where the one whose state ([`GaussianTrainer::theta`],
    /// [`GaussianTrainer::velocity`], [`GaussianTrainer::chains`]) was saved stopped: `theta` =
    /// (W, b, c, ln sigma) as packed by [`pack`] (ln sigma itself, not ln of a stored sigma,
    /// so that the continuation is bit for bit the uninterrupted run),
    /// the momentum `velocity` of every parameter, the PCD `chains` (`batch x n_visible`, only
    /// read for PCD) and the number of completed epochs. Each epoch shuffles the previous
    /// epoch's order, so the order is rebuilt by replaying the shuffles of the completed epochs
    /// (their streams depend on the seed and the epoch only).
    pub fn restore(
        train: &RealDataset,
        params: GaussianTrainParams,
        theta: &[f64],
        velocity: &[f64],
        chains: Option<&[f64]>,
        epochs_done: usize,
    ) -> Result<Self> {
        let model = unpack(train.cols(), params.hidden, theta)?;
        let mut rng = stream_for(params.seed, Purpose::GaussianTraining, KEY_INIT);
        let mut trainer = Self::resume(train, params, model, &mut rng)?;
        if velocity.len() != trainer.theta.len() {
            return Err(Error::SizeMismatch(format!(
                "{} momentum velocities for {} parameters",
                velocity.len(),
                trainer.theta.len()
            )));
        }
        trainer.theta.copy_from_slice(theta);
        trainer.velocity.copy_from_slice(velocity);
        if matches!(trainer.params.objective, GaussianObjective::Pcd { .. }) {
            let chains = chains.ok_or_else(|| {
                Error::Format("a PCD checkpoint needs its persistent chains".into())
            })?;
            if chains.len() != trainer.chains.len() {
                return Err(Error::SizeMismatch(format!(
                    "{} persistent chain values, expected {} ({} chains of {} units)",
                    chains.len(),
                    trainer.chains.len(),
                    trainer.chains.len() / trainer.n_visible.max(1),
                    trainer.n_visible
                )));
            }
            trainer.chains.copy_from_slice(chains);
        }
        for epoch in 0..epochs_done {
            trainer.shuffle(epoch as u64);
        }
        trainer.epochs_done = epochs_done;
        Ok(trainer)
    }

    /// theta = (W, b, c, ln sigma) of the current model ([`pack`]'s layout).
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }

    /// The momentum velocity of every parameter (the layout of [`GaussianTrainer::theta`]).
    pub fn velocity(&self) -> &[f64] {
        &self.velocity
    }

    /// The PCD chains, `batch x n_visible` (for other objectives a scratch that the next
    /// update overwrites).
    pub fn chains(&self) -> &[f64] {
        &self.chains
    }

    /// The training objective.
    pub fn objective(&self) -> GaussianObjective {
        self.params.objective
    }

    /// The Fisher-Yates shuffle of epoch `epoch`, applied to the current order.
    fn shuffle(&mut self, epoch: u64) {
        let mut rng = stream_for(
            self.params.seed,
            Purpose::GaussianTraining,
            epoch << 32 | 0xFFFF_FFFF,
        );
        for k in (1..self.order.len()).rev() {
            let j = rng.random_range(0..=k);
            self.order.swap(k, j);
        }
    }

    /// Sets the learning rate of the next updates (for schedules).
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.params.learning_rate = learning_rate;
    }

    /// The current model.
    pub fn model(&self) -> &GaussianRbm {
        &self.model
    }

    /// Epochs trained so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// One pass over `train` in mini-batches of a fresh permutation. Returns the mean loss of
    /// the objective over the epoch's batches for SM and DSM (at the parameters each batch
    /// saw), `None` for CD and PCD.
    pub fn epoch(&mut self, train: &RealDataset) -> Result<Option<f64>> {
        let nv = self.n_visible;
        let nh = self.params.hidden;
        let epoch = self.epochs_done as u64;
        self.shuffle(epoch);
        let mut loss_sum = 0.0;
        let batches = self.order.len().div_ceil(self.params.batch_size);
        for batch in 0..batches {
            let mut rng = stream_for(
                self.params.seed,
                Purpose::GaussianTraining,
                epoch << 32 | batch as u64,
            );
            let rows_range = batch * self.params.batch_size
                ..((batch + 1) * self.params.batch_size).min(self.order.len());
            let n = rows_range.len();
            let weight = 1.0 / n as f64;
            self.grad.fill(0.0);
            let mut loss = 0.0;
            match self.params.objective {
                GaussianObjective::ScoreMatching => {
                    for &r in &self.order[rows_range] {
                        // Ascent direction: minus the gradient of J.
                        loss += score_matching_terms(
                            &self.model,
                            train.row(r),
                            -weight,
                            &mut self.scratch,
                            Some(&mut self.grad),
                        );
                    }
                }
                GaussianObjective::DenoisingScoreMatching { noise_std } => {
                    for &r in &self.order[rows_range] {
                        let x = train.row(r);
                        for z in self.noise.iter_mut() {
                            *z = noise_std * rng.sample::<f64, _>(StandardNormal);
                        }
                        // Antithetic pair y = x + s z and x - s z: both are draws of the noisy
                        // example, and the large terms +-z/s of their residuals cancel to first
                        // order in the averaged gradient.
                        for sign in [1.0, -1.0] {
                            for ((y, xi), z) in self.noisy.iter_mut().zip(x).zip(&self.noise) {
                                *y = xi + sign * z;
                            }
                            loss += 0.5
                                * denoising_terms(
                                    &self.model,
                                    x,
                                    &self.noisy,
                                    noise_std,
                                    -0.5 * weight,
                                    &mut self.scratch,
                                    Some(&mut self.grad),
                                );
                        }
                    }
                }
                GaussianObjective::Cd { k } | GaussianObjective::Pcd { k } => {
                    let persistent = matches!(self.params.objective, GaussianObjective::Pcd { .. });
                    for (b, &r) in self.order[rows_range.clone()].iter().enumerate() {
                        let v = train.row(r);
                        add_log_likelihood_terms(
                            &self.model,
                            v,
                            weight,
                            &mut self.scratch,
                            &mut self.grad,
                        );
                        if !persistent {
                            self.chains[b * nv..(b + 1) * nv].copy_from_slice(v);
                        }
                    }
                    let negatives = if persistent {
                        self.chains.len() / nv
                    } else {
                        n
                    };
                    let neg_weight = 1.0 / negatives as f64;
                    for chain in self.chains[..negatives * nv].chunks_exact_mut(nv) {
                        for _ in 0..k {
                            sample_hidden(
                                &self.model,
                                chain,
                                &mut self.hidden,
                                &mut self.h,
                                &mut rng,
                            );
                            sample_visible(&self.model, &self.h, chain, &mut rng);
                        }
                        add_log_likelihood_terms(
                            &self.model,
                            chain,
                            -neg_weight,
                            &mut self.scratch,
                            &mut self.grad,
                        );
                    }
                }
            }
            loss_sum += loss * weight;
            self.step(nv, nh)?;
        }
        self.epochs_done += 1;
        Ok(match self.params.objective {
            GaussianObjective::ScoreMatching | GaussianObjective::DenoisingScoreMatching { .. } => {
                Some(loss_sum / batches as f64)
            }
            _ => None,
        })
    }

    /// velocity <- m velocity + lr (grad - decay W); theta += velocity; sigma fixed or clamped.
    fn step(&mut self, nv: usize, nh: usize) -> Result<()> {
        let p = &self.params;
        let n_w = nv * nh;
        let rho_start = n_w + nv + nh;
        if !p.learn_sigma {
            self.grad[rho_start..].fill(0.0);
        }
        for k in 0..self.theta.len() {
            let decay = if k < n_w {
                p.weight_decay * self.theta[k]
            } else {
                0.0
            };
            self.velocity[k] =
                p.momentum * self.velocity[k] + p.learning_rate * (self.grad[k] - decay);
            self.theta[k] += self.velocity[k];
        }
        let (floor, ceiling) = (MIN_LEARNED_SIGMA.ln(), MAX_LEARNED_SIGMA.ln());
        for rho in &mut self.theta[rho_start..] {
            // NaN stays NaN and is reported below.
            *rho = rho.clamp(floor, ceiling);
        }
        if let Some(k) = self.theta.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidParam {
                name: "lr".into(),
                reason: format!(
                    "training diverged (parameter {k} became {} after epoch {}); use a smaller \
                     --lr",
                    self.theta[k],
                    self.epochs_done + 1
                ),
            });
        }
        self.model = unpack(nv, nh, &self.theta)?;
        self.scratch.prepare(&self.model);
        Ok(())
    }
}

/// The name of an objective in the settings object and on the command line.
pub fn objective_name(objective: GaussianObjective) -> &'static str {
    match objective {
        GaussianObjective::Cd { .. } => "cd",
        GaussianObjective::Pcd { .. } => "pcd",
        GaussianObjective::ScoreMatching => "score-matching",
        GaussianObjective::DenoisingScoreMatching { .. } => "denoising-score-matching",
    }
}

/// Tensor name of the momentum velocity of ln sigma in a Gaussian checkpoint.
pub const VELOCITY_LOG_SIGMA: &str = "velocity_log_sigma";
/// Tensor name of ln sigma in a Gaussian checkpoint (stored beside `visible_sigma` so that a
/// resumed run continues from the exact parameter, not from ln(exp(ln sigma))).
pub const LOG_SIGMA: &str = "log_visible_sigma";

/// Everything that shapes the updates of a Gaussian training run, as stored in its checkpoint
/// (metadata [`TRAINING_KEY`](crate::learn::checkpoint::TRAINING_KEY), a JSON object with the
/// keys `objective`, `epochs`, `hidden`, `batch_size`, `learning_rate`, `lr_schedule`,
/// `momentum`, `weight_decay`, `cd_k`, `noise_std`, `learn_sigma`, `sigma`, `init_std`,
/// `standardise`, `dequantise_step` (null: none) and `seed`, plus `data` for the record).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianRunSettings {
    /// The trainer's settings.
    pub params: GaussianTrainParams,
    /// Total epochs (the linear schedule decays over them).
    pub epochs: usize,
    /// The learning-rate schedule.
    pub schedule: crate::learn::optimizer::LrSchedule,
    /// The data were standardised (the mean and std are the tensors `data_mean`, `data_std`).
    pub standardise: bool,
    /// The step of the uniform dequantisation applied to the data, if any ([`dequantise`]).
    pub dequantise_step: Option<f64>,
}

impl GaussianRunSettings {
    /// The learning rate of epoch `epoch` (1-based): constant, or
    /// lr (1 - (epoch - 1) / epochs) under the linear schedule.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            crate::learn::optimizer::LrSchedule::Constant => self.params.learning_rate,
            crate::learn::optimizer::LrSchedule::Linear => {
                self.params.learning_rate * (1.0 - (epoch - 1) as f64 / self.epochs as f64)
            }
        }
    }

    /// The settings object (`data`: the training data's name, for the record).
    pub fn to_json(&self, data: &str) -> String {
        let p = &self.params;
        let (cd_k, noise_std) = match p.objective {
            GaussianObjective::Cd { k } | GaussianObjective::Pcd { k } => (Some(k), None),
            GaussianObjective::DenoisingScoreMatching { noise_std } => (None, Some(noise_std)),
            GaussianObjective::ScoreMatching => (None, None),
        };
        serde_json::json!({
            "objective": objective_name(p.objective),
            "epochs": self.epochs,
            "hidden": p.hidden,
            "batch_size": p.batch_size,
            "learning_rate": p.learning_rate,
            "lr_schedule": crate::learn::checkpoint::schedule_name(self.schedule),
            "momentum": p.momentum,
            "weight_decay": p.weight_decay,
            "cd_k": cd_k,
            "noise_std": noise_std,
            "learn_sigma": p.learn_sigma,
            "sigma": p.sigma,
            "init_std": p.init_std,
            "standardise": self.standardise,
            "dequantise_step": self.dequantise_step,
            "seed": p.seed,
            "data": data,
        })
        .to_string()
    }

    /// Reads the settings object; `Err` names the first missing or invalid setting.
    pub fn from_json(text: &str) -> Result<Self> {
        use crate::learn::checkpoint::TRAINING_KEY;
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Format(format!("bad `{TRAINING_KEY}` metadata: {e}")))?;
        let get = |key: &str| {
            v.get(key).ok_or_else(|| {
                Error::Format(format!(
                    "the file lacks the setting `{key}` in its `{TRAINING_KEY}` metadata, so \
                     training cannot continue from it"
                ))
            })
        };
        let bad = |key: &str| {
            Error::Format(format!(
                "bad `{TRAINING_KEY}` metadata: {key} = {} is not a valid value",
                v[key]
            ))
        };
        let size = |key: &str| -> Result<usize> {
            get(key)?
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| bad(key))
        };
        let float = |key: &str| -> Result<f64> { get(key)?.as_f64().ok_or_else(|| bad(key)) };
        let flag = |key: &str| -> Result<bool> { get(key)?.as_bool().ok_or_else(|| bad(key)) };
        let objective = match get("objective")?.as_str() {
            Some("cd") => GaussianObjective::Cd { k: size("cd_k")? },
            Some("pcd") => GaussianObjective::Pcd { k: size("cd_k")? },
            Some("score-matching") => GaussianObjective::ScoreMatching,
            Some("denoising-score-matching") => GaussianObjective::DenoisingScoreMatching {
                noise_std: float("noise_std")?,
            },
            _ => return Err(bad("objective")),
        };
        let schedule = match get("lr_schedule")?.as_str() {
            Some("constant") => crate::learn::optimizer::LrSchedule::Constant,
            Some("linear") => crate::learn::optimizer::LrSchedule::Linear,
            _ => return Err(bad("lr_schedule")),
        };
        let dequantise_step = match get("dequantise_step")? {
            serde_json::Value::Null => None,
            x => Some(x.as_f64().ok_or_else(|| bad("dequantise_step"))?),
        };
        let settings = GaussianRunSettings {
            params: GaussianTrainParams {
                hidden: size("hidden")?,
                batch_size: size("batch_size")?,
                learning_rate: float("learning_rate")?,
                momentum: float("momentum")?,
                weight_decay: float("weight_decay")?,
                objective,
                learn_sigma: flag("learn_sigma")?,
                sigma: float("sigma")?,
                init_std: float("init_std")?,
                seed: get("seed")?.as_u64().ok_or_else(|| bad("seed"))?,
            },
            epochs: size("epochs")?,
            schedule,
            standardise: flag("standardise")?,
            dequantise_step,
        };
        settings.params.validate()?;
        Ok(settings)
    }
}

/// The state of a Gaussian training run read back from its checkpoint file.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianCheckpoint {
    /// The stored settings.
    pub settings: GaussianRunSettings,
    /// Completed epochs.
    pub epochs_done: usize,
    /// theta = (W, b, c, ln sigma) ([`pack`]'s layout).
    pub theta: Vec<f64>,
    /// The momentum velocity of every parameter (the layout of theta).
    pub velocity: Vec<f64>,
    /// The PCD chains (`batch x n_visible`), PCD only.
    pub chains: Option<Vec<f64>>,
}

impl GaussianCheckpoint {
    /// Adds the checkpoint of `trainer` (run with `settings` on the data named `data`) to
    /// `file`, whose model is the trainer's: the metadata
    /// [`EPOCHS_DONE_KEY`](crate::learn::checkpoint::EPOCHS_DONE_KEY) and
    /// [`TRAINING_KEY`](crate::learn::checkpoint::TRAINING_KEY), the velocities of W, b, c and
    /// ln sigma (`velocity_weights`, `velocity_visible_bias`, `velocity_hidden_bias`,
    /// [`VELOCITY_LOG_SIGMA`]), ln sigma itself ([`LOG_SIGMA`]) and, for PCD, the chains
    /// (`persistent_chains`, `batch x n_visible`). The standardisation tensors are the
    /// caller's.
    pub fn store(
        file: &mut crate::io::safetensors::GaussianRbmFile,
        trainer: &GaussianTrainer,
        settings: &GaussianRunSettings,
        data: &str,
    ) {
        use crate::io::safetensors::Tensor;
        use crate::learn::checkpoint::{
            EPOCHS_DONE_KEY, PERSISTENT_CHAINS, TRAINING_KEY, VELOCITY_HIDDEN, VELOCITY_VISIBLE,
            VELOCITY_WEIGHTS,
        };
        let (nv, nh) = (trainer.model().n_visible(), trainer.model().n_hidden());
        let (w, b, c) = (nv * nh, nv, nh);
        let v = trainer.velocity();
        let mut put = |name: &str, shape: Vec<usize>, data: &[f64]| {
            file.extra.insert(
                name.to_string(),
                Tensor {
                    shape,
                    data: data.to_vec(),
                },
            );
        };
        put(VELOCITY_WEIGHTS, vec![nv, nh], &v[..w]);
        put(VELOCITY_VISIBLE, vec![nv], &v[w..w + b]);
        put(VELOCITY_HIDDEN, vec![nh], &v[w + b..w + b + c]);
        put(VELOCITY_LOG_SIGMA, vec![nv], &v[w + b + c..]);
        put(LOG_SIGMA, vec![nv], &trainer.theta()[w + b + c..]);
        if matches!(trainer.objective(), GaussianObjective::Pcd { .. }) {
            let chains = trainer.chains();
            put(PERSISTENT_CHAINS, vec![chains.len() / nv, nv], chains);
        }
        file.metadata
            .insert(EPOCHS_DONE_KEY.into(), trainer.epochs_done().to_string());
        file.metadata
            .insert(TRAINING_KEY.into(), settings.to_json(data));
    }

    /// Reads the checkpoint of a Gaussian training run from `file`; the error names the first
    /// missing or malformed piece.
    pub fn from_file(file: &crate::io::safetensors::GaussianRbmFile) -> Result<Self> {
        use crate::learn::checkpoint::{
            EPOCHS_DONE_KEY, PERSISTENT_CHAINS, TRAINING_KEY, VELOCITY_HIDDEN, VELOCITY_VISIBLE,
            VELOCITY_WEIGHTS,
        };
        let lacks = |what: String| {
            Error::Format(format!(
                "the file lacks {what}, so training cannot continue from it (a checkpoint \
                 written by ebm train-rbm --visible gaussian holds its settings, the epoch \
                 count, the momentum velocities, ln sigma and, for PCD, the chains)"
            ))
        };
        let epochs_done: usize = file
            .metadata
            .get(EPOCHS_DONE_KEY)
            .ok_or_else(|| {
                lacks(format!(
                    "the `{EPOCHS_DONE_KEY}` metadata (the epoch count)"
                ))
            })?
            .parse()
            .map_err(|e| Error::Format(format!("bad `{EPOCHS_DONE_KEY}` metadata: {e}")))?;
        let settings = GaussianRunSettings::from_json(
            file.metadata
                .get(TRAINING_KEY)
                .ok_or_else(|| lacks(format!("the `{TRAINING_KEY}` metadata (its settings)")))?,
        )?;
        let m = &file.model;
        let (nv, nh) = (m.n_visible(), m.n_hidden());
        if nh != settings.params.hidden {
            return Err(Error::SizeMismatch(format!(
                "the model has {nh} hidden units, its settings say {}",
                settings.params.hidden
            )));
        }
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
            let t = file
                .extra
                .get(name)
                .ok_or_else(|| lacks(format!("the tensor `{name}`")))?;
            if t.shape != shape {
                return Err(Error::SizeMismatch(format!(
                    "checkpoint tensor {name} has shape {:?}, expected {shape:?}",
                    t.shape
                )));
            }
            if let Some(k) = t.data.iter().position(|x| !x.is_finite()) {
                return Err(Error::InvalidModel(format!(
                    "checkpoint tensor {name}[{k}] is not finite"
                )));
            }
            Ok(t.data.clone())
        };
        let log_sigma = tensor(LOG_SIGMA, &[nv])?;
        if let Some(i) = (0..nv).find(|&i| log_sigma[i].exp() != m.visible_sigma()[i]) {
            return Err(Error::InvalidModel(format!(
                "checkpoint tensor {LOG_SIGMA}[{i}] = {} is not ln of visible_sigma[{i}] = {}",
                log_sigma[i],
                m.visible_sigma()[i]
            )));
        }
        let mut theta = m.weights().to_vec();
        theta.extend_from_slice(m.visible_bias());
        theta.extend_from_slice(m.hidden_bias());
        theta.extend_from_slice(&log_sigma);
        let mut velocity = tensor(VELOCITY_WEIGHTS, &[nv, nh])?;
        velocity.extend(tensor(VELOCITY_VISIBLE, &[nv])?);
        velocity.extend(tensor(VELOCITY_HIDDEN, &[nh])?);
        velocity.extend(tensor(VELOCITY_LOG_SIGMA, &[nv])?);
        let chains = match settings.params.objective {
            GaussianObjective::Pcd { .. } => {
                let rows = file
                    .extra
                    .get(PERSISTENT_CHAINS)
                    .and_then(|t| t.shape.first().copied())
                    .unwrap_or(0);
                Some(tensor(PERSISTENT_CHAINS, &[rows, nv])?)
            }
            _ => None,
        };
        if settings.standardise != file.standardisation().is_some() {
            return Err(lacks(
                "the tensors `data_mean` and `data_std` of its standardisation".into(),
            ));
        }
        Ok(GaussianCheckpoint {
            settings,
            epochs_done,
            theta,
            velocity,
            chains,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> GaussianRbm {
        GaussianRbm::new(
            3,
            2,
            vec![0.5, -1.0, 0.25, 0.8, -0.6, 0.3],
            vec![0.1, -0.3, 0.4],
            vec![0.7, -0.2],
            vec![0.8, 1.3, 0.5],
        )
        .unwrap()
    }

    /// The gradient of `loss(theta)` by central differences.
    fn numeric_gradient(theta: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let step = 1e-6;
        (0..theta.len())
            .map(|k| {
                let (mut up, mut down) = (theta.to_vec(), theta.to_vec());
                up[k] += step;
                down[k] -= step;
                (loss(&up) - loss(&down)) / (2.0 * step)
            })
            .collect()
    }

    /// Central differences with step 1e-6 have truncation error O(1e-12 * third derivative)
    /// and rounding error ~1e-16 * |loss| / 1e-6 ~ 1e-9 for losses of size ~10: tolerance 1e-6
    /// relative to max(1, |gradient|).
    fn assert_close(analytic: &[f64], numeric: &[f64], what: &str) {
        for (k, (a, n)) in analytic.iter().zip(numeric).enumerate() {
            assert!(
                (a - n).abs() < 1e-6 * n.abs().max(1.0),
                "{what} parameter {k}: analytic {a}, numeric {n}"
            );
        }
    }

    #[test]
    fn score_matching_gradient_matches_finite_differences() {
        let m = model();
        let theta = pack(&m);
        let v = [0.4, -1.1, 1.7];
        let mut scratch = Scratch::new(&m);
        let mut grad = vec![0.0; theta.len()];
        score_matching_terms(&m, &v, 1.0, &mut scratch, Some(&mut grad));
        let numeric = numeric_gradient(&theta, |t| {
            let m = unpack(3, 2, t).unwrap();
            score_matching_terms(&m, &v, 1.0, &mut Scratch::new(&m), None)
        });
        assert_close(&grad, &numeric, "score matching");
    }

    #[test]
    fn denoising_gradient_matches_finite_differences() {
        let m = model();
        let theta = pack(&m);
        let (x, y) = ([0.4, -1.1, 1.7], [0.5, -0.9, 1.6]);
        let mut scratch = Scratch::new(&m);
        let mut grad = vec![0.0; theta.len()];
        denoising_terms(&m, &x, &y, 0.3, 1.0, &mut scratch, Some(&mut grad));
        let numeric = numeric_gradient(&theta, |t| {
            let m = unpack(3, 2, t).unwrap();
            denoising_terms(&m, &x, &y, 0.3, 1.0, &mut Scratch::new(&m), None)
        });
        assert_close(&grad, &numeric, "denoising score matching");
    }

    /// A checkpoint written by [`GaussianCheckpoint::store`] reads back to the same settings,
    /// parameters, velocities and chains, and a file lacking a piece is refused naming it.
    #[test]
    fn a_gaussian_checkpoint_reads_back_and_names_missing_pieces() {
        use crate::io::safetensors::GaussianRbmFile;
        use crate::learn::checkpoint::{EPOCHS_DONE_KEY, PERSISTENT_CHAINS, VELOCITY_WEIGHTS};
        let data =
            RealDataset::new(5, 3, (0..15).map(|k| ((k * 7) % 5) as f64 / 4.0).collect()).unwrap();
        let params = GaussianTrainParams {
            batch_size: 2,
            learn_sigma: true,
            ..GaussianTrainParams::new(2, GaussianObjective::Pcd { k: 2 })
        };
        let mut trainer = GaussianTrainer::new(&data, params.clone()).unwrap();
        trainer.epoch(&data).unwrap();
        let settings = GaussianRunSettings {
            params,
            epochs: 9,
            schedule: crate::learn::optimizer::LrSchedule::Linear,
            standardise: false,
            dequantise_step: Some(0.25),
        };
        let mut file = GaussianRbmFile::new(trainer.model().clone());
        GaussianCheckpoint::store(&mut file, &trainer, &settings, "d.csv");
        let back = GaussianCheckpoint::from_file(&file).unwrap();
        assert_eq!(back.settings, settings);
        assert_eq!(back.epochs_done, 1);
        assert_eq!(back.theta, trainer.theta());
        assert_eq!(back.velocity, trainer.velocity());
        assert_eq!(back.chains.as_deref(), Some(trainer.chains()));
        for name in [
            VELOCITY_WEIGHTS,
            VELOCITY_LOG_SIGMA,
            LOG_SIGMA,
            PERSISTENT_CHAINS,
        ] {
            let mut f = file.clone();
            f.extra.remove(name);
            let msg = GaussianCheckpoint::from_file(&f).unwrap_err().to_string();
            assert!(msg.contains(&format!("the tensor `{name}`")), "{msg}");
        }
        let mut f = file.clone();
        f.metadata.remove(EPOCHS_DONE_KEY);
        let msg = GaussianCheckpoint::from_file(&f).unwrap_err().to_string();
        assert!(msg.contains(EPOCHS_DONE_KEY), "{msg}");
    }

    /// -dF/dtheta against differences of -F.
    #[test]
    fn free_energy_parameter_gradient_matches_finite_differences() {
        let m = model();
        let theta = pack(&m);
        let v = [0.4, -1.1, 1.7];
        let mut grad = vec![0.0; theta.len()];
        add_log_likelihood_terms(&m, &v, 1.0, &mut Scratch::new(&m), &mut grad);
        let numeric = numeric_gradient(&theta, |t| -unpack(3, 2, t).unwrap().free_energy(&v));
        assert_close(&grad, &numeric, "free energy");
    }
}
