//! Samplers of a [`GaussianRbm`]'s real visible units: unadjusted Langevin (ULA), the
//! Metropolis-adjusted Langevin algorithm (MALA) and block Gibbs.
//!
//! With the score grad ln p(v) = -grad F(v) (see [`crate::model::gaussian_rbm`]) and a step
//! size epsilon:
//! * **ULA** (Roberts & Tweedie 1996): v' = v - epsilon grad F(v) + sqrt(2 epsilon) xi,
//!   xi ~ N(0, I). Its stationary law is biased by O(epsilon).
//! * **MALA**: the ULA move as a proposal y, accepted with probability
//!   min(1, exp(-F(y) + F(v) - |v - y + epsilon grad F(y)|^2 / (4 epsilon)
//!   + |y - v + epsilon grad F(v)|^2 / (4 epsilon))), which makes p(v) exactly stationary.
//! * **Block Gibbs**: h ~ p(h | v) (independent Bernoulli(sigmoid(a_j(v)))), then
//!   v ~ N(b + W h, diag sigma^2).
//!
//! Every chain draws from its own stream `rng::stream_for(seed, Purpose::GaussianChains,
//! chain)`, and chains run in parallel with rayon, so the samples do not depend on the number of
//! threads. A chain starts from h uniform on {0,1}^n_h and v ~ p(v | h).

// Loops over i (visible) and j (hidden) index several arrays at once, as the formulas do.
#![allow(clippy::needless_range_loop)]

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::logspace::sigmoid;
use crate::model::GaussianRbm;
use crate::rng::{EbmRng, Purpose, stream_for, uniform_f64};

/// The samplers of real visible units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaussianSampler {
    /// Unadjusted Langevin: one gradient step plus Gaussian noise, no correction.
    Langevin,
    /// Metropolis-adjusted Langevin.
    Mala,
    /// Block Gibbs v -> h -> v.
    Gibbs,
}

/// Settings of a run of chains.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianChainParams {
    /// Which move.
    pub sampler: GaussianSampler,
    /// epsilon of the Langevin moves (ignored by Gibbs); > 0.
    pub step_size: f64,
    /// Number of independent chains (>= 1).
    pub chains: usize,
    /// Moves discarded at the start of each chain.
    pub burn_in: usize,
    /// Moves recorded after the burn-in, per chain (every `thin`-th state is kept).
    pub steps: usize,
    /// Keep every `thin`-th state (>= 1).
    pub thin: usize,
    /// The seed of every chain's stream.
    pub seed: u64,
}

impl GaussianChainParams {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.sampler != GaussianSampler::Gibbs
            && !(self.step_size.is_finite() && self.step_size > 0.0)
        {
            return Err(Error::param(
                "step-size",
                format!("must be a finite number > 0, got {}", self.step_size),
            ));
        }
        if self.chains == 0 {
            return Err(Error::param("chains", "must be at least 1"));
        }
        if self.thin == 0 {
            return Err(Error::param("thin", "must be at least 1"));
        }
        Ok(())
    }
}

/// The states recorded by [`run_gaussian_chains`].
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianSamples {
    /// Values per state.
    pub n_visible: usize,
    /// States per chain.
    pub per_chain: usize,
    /// All states, chain by chain (`chains x per_chain x n_visible`).
    pub states: Vec<f64>,
    /// The fraction of accepted MALA proposals (1 for ULA and Gibbs).
    pub acceptance: f64,
}

/// Scratch of one chain, allocated once.
struct Chain {
    v: Vec<f64>,
    grad: Vec<f64>,
    f: f64,
    proposal: Vec<f64>,
    grad_proposal: Vec<f64>,
    hidden: Vec<f64>,
    h: Vec<u8>,
    accepted: u64,
    moves: u64,
}

impl Chain {
    fn new(model: &GaussianRbm, rng: &mut EbmRng) -> Self {
        let (nv, nh) = (model.n_visible(), model.n_hidden());
        let mut chain = Chain {
            v: vec![0.0; nv],
            grad: vec![0.0; nv],
            f: 0.0,
            proposal: vec![0.0; nv],
            grad_proposal: vec![0.0; nv],
            hidden: vec![0.0; nh],
            h: (0..nh).map(|_| (rng.next_u64() >> 63) as u8).collect(),
            accepted: 0,
            moves: 0,
        };
        sample_visible(model, &chain.h, &mut chain.v, rng);
        chain.f = model.free_energy_grad(&chain.v, &mut chain.hidden, &mut chain.grad);
        chain
    }

    fn step(&mut self, model: &GaussianRbm, sampler: GaussianSampler, eps: f64, rng: &mut EbmRng) {
        match sampler {
            GaussianSampler::Gibbs => {
                sample_hidden(model, &self.v, &mut self.hidden, &mut self.h, rng);
                sample_visible(model, &self.h, &mut self.v, rng);
            }
            GaussianSampler::Langevin => {
                let noise = (2.0 * eps).sqrt();
                for (v, g) in self.v.iter_mut().zip(&self.grad) {
                    *v += -eps * g + noise * rng.sample::<f64, _>(StandardNormal);
                }
                self.f = model.free_energy_grad(&self.v, &mut self.hidden, &mut self.grad);
            }
            GaussianSampler::Mala => {
                let noise = (2.0 * eps).sqrt();
                for ((y, v), g) in self.proposal.iter_mut().zip(&self.v).zip(&self.grad) {
                    *y = v - eps * g + noise * rng.sample::<f64, _>(StandardNormal);
                }
                let fy = model.free_energy_grad(
                    &self.proposal,
                    &mut self.hidden,
                    &mut self.grad_proposal,
                );
                // ln q(v | y) - ln q(y | v) with q(y | v) = N(v - eps grad F(v), 2 eps I).
                let mut log_q_back = 0.0;
                let mut log_q_forward = 0.0;
                for i in 0..self.v.len() {
                    let back = self.v[i] - self.proposal[i] + eps * self.grad_proposal[i];
                    let forward = self.proposal[i] - self.v[i] + eps * self.grad[i];
                    log_q_back -= back * back / (4.0 * eps);
                    log_q_forward -= forward * forward / (4.0 * eps);
                }
                let log_alpha = self.f - fy + log_q_back - log_q_forward;
                self.moves += 1;
                if log_alpha >= 0.0 || uniform_f64(rng) < log_alpha.exp() {
                    self.accepted += 1;
                    std::mem::swap(&mut self.v, &mut self.proposal);
                    std::mem::swap(&mut self.grad, &mut self.grad_proposal);
                    self.f = fy;
                }
            }
        }
    }
}

/// h_j ~ Bernoulli(sigmoid(a_j(v))); `hidden` is scratch of length n_hidden.
pub fn sample_hidden(
    model: &GaussianRbm,
    v: &[f64],
    hidden: &mut [f64],
    h: &mut [u8],
    rng: &mut EbmRng,
) {
    model.hidden_activations(v, hidden);
    for (hj, &a) in h.iter_mut().zip(hidden.iter()) {
        *hj = (uniform_f64(rng) < sigmoid(a)) as u8;
    }
}

/// v ~ N(b + W h, diag sigma^2) into `v`.
pub fn sample_visible(model: &GaussianRbm, h: &[u8], v: &mut [f64], rng: &mut EbmRng) {
    model.visible_means(h, v);
    for (x, s) in v.iter_mut().zip(model.visible_sigma()) {
        *x += s * rng.sample::<f64, _>(StandardNormal);
    }
}

/// Runs `params.chains` independent chains (see the module docs) and records their states.
pub fn run_gaussian_chains(
    model: &GaussianRbm,
    params: &GaussianChainParams,
) -> Result<GaussianSamples> {
    params.validate()?;
    let nv = model.n_visible();
    let per_chain = params.steps / params.thin;
    let runs: Vec<(Vec<f64>, u64, u64)> = (0..params.chains)
        .into_par_iter()
        .map(|c| {
            let mut rng = stream_for(params.seed, Purpose::GaussianChains, c as u64);
            let mut chain = Chain::new(model, &mut rng);
            for _ in 0..params.burn_in {
                chain.step(model, params.sampler, params.step_size, &mut rng);
            }
            let (burn_accepted, burn_moves) = (chain.accepted, chain.moves);
            let mut states = Vec::with_capacity(per_chain * nv);
            for t in 1..=per_chain * params.thin {
                chain.step(model, params.sampler, params.step_size, &mut rng);
                if t % params.thin == 0 {
                    states.extend_from_slice(&chain.v);
                }
            }
            (
                states,
                chain.accepted - burn_accepted,
                chain.moves - burn_moves,
            )
        })
        .collect();
    let (accepted, moves) = runs
        .iter()
        .fold((0u64, 0u64), |(a, m), r| (a + r.1, m + r.2));
    Ok(GaussianSamples {
        n_visible: nv,
        per_chain,
        states: runs.into_iter().flat_map(|r| r.0).collect(),
        acceptance: if moves == 0 {
            1.0
        } else {
            accepted as f64 / moves as f64
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MALA with a tiny step accepts almost everything, with a huge one almost nothing (the
    /// correction is live); Gibbs and ULA report acceptance 1.
    #[test]
    fn mala_acceptance_falls_with_the_step_size() {
        let m = GaussianRbm::new(
            2,
            1,
            vec![1.0, -0.5],
            vec![0.0, 0.5],
            vec![0.2],
            vec![0.5, 0.8],
        )
        .unwrap();
        let run = |sampler, step_size| {
            run_gaussian_chains(
                &m,
                &GaussianChainParams {
                    sampler,
                    step_size,
                    chains: 4,
                    burn_in: 10,
                    steps: 500,
                    thin: 1,
                    seed: 3,
                },
            )
            .unwrap()
        };
        assert!(run(GaussianSampler::Mala, 1e-4).acceptance > 0.99);
        assert!(run(GaussianSampler::Mala, 50.0).acceptance < 0.05);
        assert_eq!(run(GaussianSampler::Gibbs, 1.0).acceptance, 1.0);
        let ula = run(GaussianSampler::Langevin, 0.01);
        assert_eq!(ula.states.len(), 4 * 500 * 2);
        assert!(ula.states.iter().all(|x| x.is_finite()));
    }
}
