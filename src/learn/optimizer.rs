//! The optimizer of RBM training: gradient ascent with momentum and L2 weight decay on W, at a
//! learning rate that follows a schedule over the epochs.
//!
//! The update follows Hinton, "A practical guide to training restricted Boltzmann machines"
//! (UTML TR 2010-003): for every parameter theta with velocity u and gradient g,
//!
//! ```text
//! u <- momentum * u + lr_t * (g - weight_decay * theta),    theta <- theta + u,
//! ```
//!
//! with the decay term on W only (biases are not decayed). The velocities are part of the
//! training state ([`crate::learn::TrainState`]) so that checkpoints continue exactly.

use super::estimator::Gradient;
use crate::model::RbmF32;

/// How the learning rate changes over the epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    /// lr_t = lr.
    Constant,
    /// lr_t = lr * (1 - t / epochs) for epoch t = 0, 1, ... (annealed towards 0, which lets PCD
    /// settle instead of drifting).
    Linear,
}

impl LrSchedule {
    /// The learning rate of epoch `t` (0-based) of `epochs`, starting from `rate`.
    pub fn rate_at(self, rate: f64, t: usize, epochs: usize) -> f64 {
        match self {
            LrSchedule::Constant => rate,
            LrSchedule::Linear => rate * (1.0 - t as f64 / epochs as f64).max(0.0),
        }
    }
}

/// Gradient ascent with momentum and weight decay (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Momentum {
    /// Momentum in [0, 1).
    pub momentum: f32,
    /// L2 weight decay on W (>= 0).
    pub weight_decay: f32,
}

impl Momentum {
    /// One update of `model` along `grad` at learning rate `lr`, with the velocities
    /// `velocity_*` (same shapes as the parameters) updated in place.
    pub fn step(
        &self,
        model: &mut RbmF32,
        velocity_weights: &mut [f32],
        velocity_visible: &mut [f32],
        velocity_hidden: &mut [f32],
        grad: &Gradient,
        lr: f32,
    ) {
        // Element by element (the same values for any number of threads); blocks of W in
        // parallel when W is large.
        let weights = |((w, u), g): ((&mut [f32], &mut [f32]), &[f32])| {
            self.weights_block(w, u, g, lr);
        };
        const BLOCK: usize = 1 << 14;
        if model.weights.len() < 4 * BLOCK {
            weights(((&mut model.weights, velocity_weights), &grad.weights));
        } else {
            use rayon::prelude::*;
            model
                .weights
                .par_chunks_mut(BLOCK)
                .zip(velocity_weights.par_chunks_mut(BLOCK))
                .zip(grad.weights.par_chunks(BLOCK))
                .for_each(weights);
        }
        self.step_biases(model, velocity_visible, velocity_hidden, grad, lr);
    }

    /// The update of [`Momentum::step`] for the entries `w` of W, their velocities `u` and
    /// gradient `g` (any block of W, the same values whatever the blocks).
    pub fn weights_block(&self, w: &mut [f32], u: &mut [f32], g: &[f32], lr: f32) {
        let (m, wd) = (self.momentum, self.weight_decay);
        for ((w, u), &g) in w.iter_mut().zip(u).zip(g) {
            *u = m * *u + lr * (g - wd * *w);
            *w += *u;
        }
    }

    /// The update of [`Momentum::step`] for the biases b and c.
    pub fn step_biases(
        &self,
        model: &mut RbmF32,
        velocity_visible: &mut [f32],
        velocity_hidden: &mut [f32],
        grad: &Gradient,
        lr: f32,
    ) {
        let m = self.momentum;
        for ((b, u), &g) in model
            .visible_bias
            .iter_mut()
            .zip(velocity_visible)
            .zip(&grad.visible_bias)
        {
            *u = m * *u + lr * g;
            *b += *u;
        }
        for ((c, u), &g) in model
            .hidden_bias
            .iter_mut()
            .zip(velocity_hidden)
            .zip(&grad.hidden_bias)
        {
            *u = m * *u + lr * g;
            *c += *u;
        }
    }
}
