//! Gradient-informed samplers of binary models: Gibbs-with-Gradients (GWG, Grathwohl et al.,
//! "Oops I took a gradient", ICML 2021) and the discrete Langevin proposal without and with a
//! Metropolis-Hastings correction (DULA and DMALA, Zhang, Liu & Liu, "A Langevin-like sampler
//! for discrete distributions", ICML 2022).
//!
//! # The flip scores d_i
//! All three samplers need, for the current state x and every variable i, a score d_i(x) for
//! the change of log p when x_i alone is flipped:
//!
//! * Pairwise models, Ising lattices and factor graphs ([`ExactChain`]): the exact change,
//!   d_i = log p(x with i flipped) - log p(x) = -beta Delta_i with Delta_i the model's
//!   [`EnergyModel::flip_delta`]. For a pairwise model log p is linear in each spin, so the
//!   first-order (gradient) estimate of the papers *is* this exact change and costs the same
//!   O(degree); for factor graphs of higher arity the exact change is used too. The scores are
//!   kept in an array and, after every accepted move, recomputed only for the flipped variables
//!   and their neighbours ([`Neighbours`]).
//! * RBMs on their visible units v in {0, 1}^n ([`RbmChain`]): log p(v) = -F(v) - ln Z with
//!   -F(v) = b^T v + sum_j softplus(a_j), a = c + W^T v. Its gradient is
//!   g_i = d(-F)/dv_i = b_i + sum_j W_ij sigmoid(a_j), and flipping bit i changes v_i by
//!   (1 - 2 v_i), so the first-order estimate of the change of -F is
//!   d_i = (1 - 2 v_i) g_i = -(2 v_i - 1) g_i. The Metropolis-Hastings test uses the exact
//!   change of -F, b_i (1 - 2 v_i) + sum_j [softplus(a'_j) - softplus(a_j)].
//!
//! # The samplers
//! * GWG: propose one flip i from q(i | x) = softmax(d(x) / 2), accept x' with probability
//!   min(1, p(x') q(i | x') / (p(x) q(i | x))), q(i | x') from the scores of the reverse
//!   state x'. Reversible with respect to p.
//! * DULA with step size alpha: every bit flips independently with probability
//!   sigmoid(d_i / 2 - 1 / (2 alpha)), the two-point form of the paper's proposal
//!   q(x'_i | x) ∝ exp(d_i(x'_i - x_i)/2 - (x'_i - x_i)^2 / (2 alpha)) (a flip has
//!   |x'_i - x_i| = 1). No correction: the chain is biased, by an amount that shrinks with
//!   alpha (measured in docs/sampling.md and bounded in tests/gradient_samplers.rs).
//! * DMALA: the same proposal, accepted with min(1, p(x') q(x | x') / (p(x) q(x' | x))), q the
//!   product of the per-bit probabilities. With z_i = d_i / 2 - 1 / (2 alpha),
//!   ln q(x' | x) = sum_{i flipped} z_i - sum_i softplus(z_i). Reversible with respect to p.
//!
//! # Quantised flip probabilities ([`ExactChain`])
//! On pairwise models, lattices and factor graphs each bit's flip probability sigmoid(z_i) is
//! rounded to a multiple of 2^-32, t_i / 2^32 with t_i = [`flip_threshold`] of z_i in
//! [1, 2^32 - 1], and the flips are drawn with exactly these probabilities by integer compares
//! of 16-bit pieces of random words, four bits per word ([`draw_flips`]). DMALA's ratio uses
//! the same t_i (ln t_i / 2^32 and ln(1 - t_i / 2^32)), so the chain is exactly reversible for
//! the proposal it makes; the proposal differs from the unrounded one by at most 2^-33 per bit
//! (DULA's bias, already of order 1e-2 at alpha = 0.2, is unchanged in practice).
//! [`exact_kernel`] enumerates this quantised proposal. The RBM chain ([`RbmChain`]), whose
//! proposals are dominated by matrix-vector products, draws one f64 uniform per bit.
//!
//! One *sweep* is n proposals of GWG (n = number of variables: as many single-flip
//! proposals as a sweep of single-site Gibbs has updates) and one proposal of DULA or DMALA
//! (each bit once offered a flip). Per-step work allocates nothing: every buffer is made when
//! the chain is built. Chains run in parallel, chain k drawing from
//! `rng::stream_for(seed, Purpose::GradientChain, k)`, so results do not depend on the number
//! of threads.

use rand::Rng;
use rayon::prelude::*;

use super::general::{MARGINAL_BATCHES, ModelRun, repair_start};
use super::{LatticeUpdate, Start, stats};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::logspace::softplus;
use crate::model::{EnergyModel, FactorGraph, IsingLattice, PairwiseMrf, RbmF32, Spin};
use crate::progress::{Control, Observer, Step};
use crate::rng::{self, EbmRng, uniform_f64};

/// The default step size alpha of DULA and DMALA.
pub const DEFAULT_STEP_SIZE: f64 = 0.2;

/// A gradient-informed sampler (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradientSampler {
    /// Gibbs-with-Gradients: one flip from softmax(d / 2), Metropolis-Hastings corrected.
    Gwg,
    /// Discrete unadjusted Langevin: independent flips, no correction (biased).
    Dula {
        /// Step size alpha > 0.
        step_size: f64,
    },
    /// Discrete Metropolis-adjusted Langevin: independent flips, Metropolis-Hastings corrected.
    Dmala {
        /// Step size alpha > 0.
        step_size: f64,
    },
}

impl GradientSampler {
    /// The command-line name: gwg, dula or dmala.
    pub fn name(self) -> &'static str {
        match self {
            GradientSampler::Gwg => "gwg",
            GradientSampler::Dula { .. } => "dula",
            GradientSampler::Dmala { .. } => "dmala",
        }
    }

    /// The step size alpha of the Langevin pair (None for GWG).
    pub fn step_size(self) -> Option<f64> {
        match self {
            GradientSampler::Gwg => None,
            GradientSampler::Dula { step_size } | GradientSampler::Dmala { step_size } => {
                Some(step_size)
            }
        }
    }

    /// Refuses a step size that is not a finite positive number.
    pub fn check(self) -> Result<()> {
        if let Some(a) = self.step_size()
            && !(a.is_finite() && a > 0.0)
        {
            return Err(Error::param(
                "step_size",
                format!("must be a finite number > 0, got {a}"),
            ));
        }
        Ok(())
    }

    /// Proposals per sweep for a model of `n` variables (see the module docs).
    pub fn proposals_per_sweep(self, n: usize) -> u64 {
        match self {
            GradientSampler::Gwg => n as u64,
            _ => 1,
        }
    }
}

/// Counts of a chain's proposals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProposalCounts {
    /// Proposals made.
    pub proposals: u64,
    /// Proposals that moved the state: accepted and flipping at least one bit. A DULA proposal
    /// is always accepted, but one that flips no bit (likely at small step sizes) is not
    /// counted, so for every sampler this is the fraction of proposals that changed the state.
    pub accepted: u64,
    /// Bits flipped by the accepted proposals.
    pub bits_flipped: u64,
}

impl ProposalCounts {
    /// Moves (accepted proposals that flipped at least one bit) over proposals made (0 with no
    /// proposal).
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted as f64 / self.proposals.max(1) as f64
    }

    /// Bits flipped per proposal.
    pub fn mean_bits_flipped(&self) -> f64 {
        self.bits_flipped as f64 / self.proposals.max(1) as f64
    }

    fn add(&mut self, other: &ProposalCounts) {
        self.proposals += other.proposals;
        self.accepted += other.accepted;
        self.bits_flipped += other.bits_flipped;
    }
}

/// The variables whose flip score can change when variable i flips, in compressed rows
/// (symmetric, without i itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbours {
    start: Vec<usize>,
    list: Vec<usize>,
}

impl Neighbours {
    /// From the pairs (i, j) that interact; duplicates and self pairs are dropped.
    pub fn from_pairs(n: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, j) in pairs {
            if i != j {
                rows[i].push(j);
                rows[j].push(i);
            }
        }
        let mut start = Vec::with_capacity(n + 1);
        let mut list = Vec::new();
        start.push(0);
        for mut row in rows {
            row.sort_unstable();
            row.dedup();
            list.extend_from_slice(&row);
            start.push(list.len());
        }
        Neighbours { start, list }
    }

    /// The neighbours of variable i.
    #[inline]
    pub fn of(&self, i: usize) -> &[usize] {
        &self.list[self.start[i]..self.start[i + 1]]
    }
}

/// Fields h_i and couplings (i, j, J_ij) of a pairwise model.
pub type PairwiseTerms = (Vec<f64>, Vec<(usize, usize, f64)>);

/// A model whose flip scores are exact and local: an [`EnergyModel`] with its interaction
/// graph.
pub trait LocalModel: EnergyModel + Clone + Send + std::fmt::Debug {
    /// The interaction graph: j is a neighbour of i when flipping i can change Delta_j.
    fn neighbours(&self) -> Neighbours;

    /// The model's fields h_i and couplings (i, j, J_ij) when it is pairwise,
    /// E(s) = const - sum_i h_i s_i - sum_(i,j) J_ij s_i s_j (a pair listed twice counts
    /// twice), for the score-table path (`ScoreTable`); None (the default) otherwise.
    fn pairwise_terms(&self) -> Option<PairwiseTerms> {
        None
    }
}

impl LocalModel for PairwiseMrf {
    fn neighbours(&self) -> Neighbours {
        Neighbours::from_pairs(
            self.num_vars(),
            self.edges().iter().map(|&(i, j, _)| (i, j)),
        )
    }
    fn pairwise_terms(&self) -> Option<PairwiseTerms> {
        Some((self.fields().to_vec(), self.edges().to_vec()))
    }
}

impl LocalModel for IsingLattice {
    fn neighbours(&self) -> Neighbours {
        Neighbours::from_pairs(self.num_sites(), self.bonds())
    }
    fn pairwise_terms(&self) -> Option<PairwiseTerms> {
        let fields = (0..self.num_sites()).map(|i| self.field_at(i)).collect();
        let j = self.coupling();
        Some((
            fields,
            self.bonds().into_iter().map(|(a, b)| (a, b, j)).collect(),
        ))
    }
}

impl LocalModel for FactorGraph {
    fn neighbours(&self) -> Neighbours {
        let pairs = self.factors().iter().flat_map(|f| {
            let scope = f.scope();
            (0..scope.len())
                .flat_map(move |a| (a + 1..scope.len()).map(move |b| (scope[a], scope[b])))
        });
        Neighbours::from_pairs(self.num_vars(), pairs)
    }
}

/// 2^32: the Langevin flip probabilities of [`ExactChain`] are multiples of 1 / 2^32.
const PROBABILITY_ONE: f64 = 4_294_967_296.0;

/// The flip threshold t of the Langevin proposal at z = d / 2 - 1 / (2 alpha): the flip
/// probability sigmoid(z) rounded to a multiple of 2^-32, t = round(2^32 sigmoid(z)), clamped to
/// [1, 2^32 - 1] so that both outcomes keep a positive probability. [`ExactChain`] flips the bit
/// with probability exactly t / 2^32 (see [`draw_flips`]) and uses exactly that probability in
/// DMALA's Metropolis-Hastings ratio ([`log_flip_probability`], [`log_stay_probability`]), so
/// the chain is exactly reversible for the proposal it draws from; the rounding moves each
/// probability by at most 2^-33 from sigmoid(z) (more, relatively, only below 2^-32, where the
/// clamp keeps it at 2^-32).
pub fn flip_threshold(z: f64) -> u32 {
    let t = (crate::logspace::sigmoid(z) * PROBABILITY_ONE).round();
    if t >= 1.0 {
        t.min(PROBABILITY_ONE - 1.0) as u32
    } else {
        1 // also for a NaN z
    }
}

/// ln(t / 2^32): the log probability that a bit of threshold t flips (computed from the integer
/// t, so the drawing probability and the one in the ratio are the same number).
pub fn log_flip_probability(t: u32) -> f64 {
    (t as f64 / PROBABILITY_ONE).ln()
}

/// ln(1 - t / 2^32) = ln((2^32 - t) / 2^32): the log probability that a bit of threshold t stays.
pub fn log_stay_probability(t: u32) -> f64 {
    ((PROBABILITY_ONE - t as f64) / PROBABILITY_ONE).ln()
}

/// Draws the independent flips of a Langevin proposal: bit i flips with probability exactly
/// `thresholds[i]` / 2^32, and the indices of the bits that flip are written, in increasing
/// order, to `out[..m]`; returns m. `out` must be at least as long as `thresholds`. (Packs the
/// thresholds' high pieces into a new array, then `draw_flips_packed`; the chains keep the
/// packed array instead.)
pub fn draw_flips<R: Rng + Clone>(rng: &mut R, thresholds: &[u32], out: &mut [u32]) -> usize {
    let mut packed = vec![0; thresholds.len().div_ceil(4)];
    pack_high_pieces(thresholds, &mut packed);
    draw_flips_packed(rng, &packed, thresholds, out)
}

/// Lane k (bits 16k..16k + 15) of `packed[w]` := thresholds[4w + k] / 2^16 (integer part;
/// lanes past the end 0).
fn pack_high_pieces(thresholds: &[u32], packed: &mut [u64]) {
    for (p, four) in packed.iter_mut().zip(thresholds.chunks(4)) {
        *p = four
            .iter()
            .enumerate()
            .fold(0, |acc, (k, &t)| acc | ((t >> 16) as u64) << (16 * k));
    }
}

/// Sets lane i mod 4 of `packed[i / 4]` to t / 2^16.
#[inline(always)]
fn set_high_piece(packed: &mut [u64], i: usize, t: u32) {
    let shift = 16 * (i % 4);
    let p = &mut packed[i / 4];
    *p = (*p & !(0xffff << shift)) | ((t >> 16) as u64) << shift;
}

/// The top bit of each 16-bit lane.
const LANE_TOPS: u64 = 0x8000_8000_8000_8000;

/// The four lane top bits of `v` (bits 15, 31, 47, 63) gathered into bits 0..3: shifted to
/// 0, 16, 32, 48 and multiplied so that lane k's bit lands on bit 48 + k (the other products
/// fall on distinct bits below 48 or beyond 63, so no carry reaches 48..51).
#[inline(always)]
fn lane_tops_to_nibble(v: u64) -> u64 {
    const GATHER: u64 = (1 << 48) | (1 << 33) | (1 << 18) | (1 << 3);
    ((v >> 15).wrapping_mul(GATHER) >> 48) & 0xf
}

/// [`draw_flips`] with the high pieces already packed ([`pack_high_pieces`]).
///
/// Each bit compares a 32-bit uniform U with its threshold t (flip iff U < t). U is built
/// lazily from 16-bit pieces. The bits go in groups of 64 (the last one shorter); word w of a
/// group, one 64-bit draw from `rng`, gives in its lane k (bits 16k..16k + 15) the high piece
/// of bit 4w + k of the group. A bit flips when its high piece is below floor(t / 2^16) and
/// stays when above; only when they are equal (probability 2^-16) is a low piece needed: after
/// the group's words, each such tie, in increasing bit order, draws a fresh word and flips iff
/// its low 16 bits are below t mod 2^16. So P(flip) = t / 2^32 exactly and the bits are
/// independent. The four lanes of a word are compared at once in 64-bit integer arithmetic
/// (SWAR: lane-wise unsigned less-than and equality without borrows crossing lanes), so a bit
/// costs a quarter of a random word and about five integer operations, with no branch that is
/// hard to predict.
fn draw_flips_packed<R: Rng + Clone>(
    rng: &mut R,
    packed: &[u64],
    thresholds: &[u32],
    out: &mut [u32],
) -> usize {
    let n = thresholds.len();
    assert!(out.len() >= n && packed.len() >= n.div_ceil(4));
    // A local copy keeps the generator's state in registers.
    let mut r = rng.clone();
    let mut m = 0;
    for (g, group) in packed[..n.div_ceil(4)].chunks(16).enumerate() {
        let (mut flips, mut ties) = (0u64, 0u64);
        for &y in group {
            let x = r.next_u64();
            // Lane-wise x < y: the top bits decide where they differ; else the low 15 bits,
            // compared through d = (x | tops) - (y & !tops), whose lane top bit is set iff the
            // low 15 bits of x are >= those of y (no borrow leaves a lane).
            let d = (x | LANE_TOPS) - (y & !LANE_TOPS);
            let below = ((!x & y) | (!(x ^ y) & !d)) & LANE_TOPS;
            // Lane-wise x == y: a lane of z = x ^ y is nonzero iff its top bit or (its low 15
            // bits + 0x7fff) has the top bit set.
            let z = x ^ y;
            let nonzero = (((z & !LANE_TOPS) + !LANE_TOPS) | z) & LANE_TOPS;
            // Shift the nibbles in from the top: after 16 words bit 4w + k is lane k of word w.
            flips = (flips >> 4) | lane_tops_to_nibble(below) << 60;
            ties = (ties >> 4) | lane_tops_to_nibble(!nonzero & LANE_TOPS) << 60;
        }
        let unused = 4 * (16 - group.len());
        let bits = (n - 64 * g).min(64);
        let valid = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        flips = (flips >> unused) & valid;
        ties = (ties >> unused) & valid;
        while ties != 0 {
            let bit = ties.trailing_zeros() as usize;
            ties &= ties - 1;
            let low = r.next_u64() as u32 & 0xffff;
            flips |= ((low < (thresholds[64 * g + bit] & 0xffff)) as u64) << bit;
        }
        while flips != 0 {
            out[m] = (64 * g) as u32 + flips.trailing_zeros();
            m += 1;
            flips &= flips - 1;
        }
    }
    *rng = r;
    m
}

/// ln q(x' | x) of the Langevin proposal as [`ExactChain`] draws it: the sum over flipped i of
/// ln(t_i / 2^32) and over the others of ln(1 - t_i / 2^32), t_i = [`flip_threshold`] of z_i with
/// z_i = d_i / 2 - 1 / (2 alpha), for `scores` d and flips `flipped`. (Unquantised, it would be
/// sum over flipped i of z_i minus sum_i softplus(z_i).)
pub fn langevin_log_proposal(scores: &[f64], flipped: &[bool], step_size: f64) -> f64 {
    let shift = 0.5 / step_size;
    scores
        .iter()
        .zip(flipped)
        .map(|(&d, &f)| {
            let t = flip_threshold(0.5 * d - shift);
            if f {
                log_flip_probability(t)
            } else {
                log_stay_probability(t)
            }
        })
        .sum()
}

/// ln q(i | x) = d_i / 2 - ln sum_j exp(d_j / 2) of the GWG proposal.
pub fn gwg_log_proposal(scores: &[f64], i: usize) -> f64 {
    let max = scores
        .iter()
        .fold(f64::NEG_INFINITY, |m, &d| m.max(0.5 * d));
    let sum: f64 = scores.iter().map(|&d| (0.5 * d - max).exp()).sum();
    0.5 * scores[i] - max - sum.ln()
}

/// The exact flip scores d_i = -beta Delta_i of every variable at `s`.
pub fn exact_scores<M: EnergyModel + ?Sized>(model: &M, beta: f64, s: &[Spin]) -> Vec<f64> {
    (0..s.len())
        .map(|i| -beta * model.flip_delta(s, i))
        .collect()
}

/// The transition probabilities K(x, y) of one proposal of `sampler` (with exact scores) from
/// `x` to every state y of a small model (state index: bit i set when spin i is +1), computed
/// by enumerating the proposal and the acceptance probability: the reference the chains are
/// checked against (tests/gradient_samplers.rs). For DULA and DMALA the proposal is the one the
/// chains draw from, with per-bit flip probabilities [`flip_threshold`] / 2^32 (see
/// [`langevin_log_proposal`]); a move to a state of zero probability is refused. Needs n <= 20.
pub fn exact_kernel<M: EnergyModel + ?Sized>(
    model: &M,
    sampler: GradientSampler,
    beta: f64,
    x: &[Spin],
) -> Vec<f64> {
    let n = x.len();
    assert!(n <= 20, "exact_kernel enumerates 2^n states");
    let index = |s: &[Spin]| -> usize {
        s.iter()
            .enumerate()
            .map(|(i, &v)| ((v > 0) as usize) << i)
            .sum()
    };
    let log_p = |s: &[Spin]| -beta * model.energy(s);
    let mut k = vec![0.0; 1 << n];
    let dx = exact_scores(model, beta, x);
    let from = index(x);
    match sampler {
        GradientSampler::Gwg => {
            for i in 0..n {
                let fwd = gwg_log_proposal(&dx, i);
                if fwd == f64::NEG_INFINITY {
                    continue;
                }
                let mut y = x.to_vec();
                y[i] = -y[i];
                let dy = exact_scores(model, beta, &y);
                let rev = gwg_log_proposal(&dy, i);
                let a = (log_p(&y) - log_p(x) + rev - fwd).min(0.0).exp();
                k[index(&y)] += fwd.exp() * a;
                k[from] += fwd.exp() * (1.0 - a);
            }
        }
        GradientSampler::Dula { step_size } | GradientSampler::Dmala { step_size } => {
            let corrected = matches!(sampler, GradientSampler::Dmala { .. });
            for mask in 0..1usize << n {
                let flipped: Vec<bool> = (0..n).map(|i| mask >> i & 1 == 1).collect();
                let y: Vec<Spin> = (0..n)
                    .map(|i| if flipped[i] { -x[i] } else { x[i] })
                    .collect();
                let fwd = langevin_log_proposal(&dx, &flipped, step_size);
                let a = if mask != 0 && log_p(&y) == f64::NEG_INFINITY {
                    0.0 // the chains refuse a state of zero probability (both samplers)
                } else if corrected && mask != 0 {
                    let dy = exact_scores(model, beta, &y);
                    let rev = langevin_log_proposal(&dy, &flipped, step_size);
                    (log_p(&y) - log_p(x) + rev - fwd).min(0.0).exp()
                } else {
                    1.0
                };
                k[index(&y)] += fwd.exp() * a;
                k[from] += fwd.exp() * (1.0 - a);
            }
        }
    }
    k
}

/// Largest number of score classes of the table path (keys k in -32..=32).
const TABLE_MAX_KEY: i64 = 32;

/// Largest number of variables for which GWG on the table path draws its flip by a linear scan
/// of the per-variable weights; larger models use the sum tree (with the table's weights).
pub const LINEAR_SCAN_MAX_VARS: usize = 64;

/// The unit q and the integers v / q when every value v is an integer multiple of one unit
/// q > 0 (to 1e-14 relative, the rounding of the values themselves) with |v / q| small enough
/// that every variable's |h_i / q| + sum_j |J_ij / q| stays within [`TABLE_MAX_KEY`] (checked by
/// the caller); candidates q = (smallest nonzero |v|) / m for m = 1, ..., 12. None otherwise.
fn quantise(values: &[f64]) -> Option<(f64, Vec<i64>)> {
    let smallest = values
        .iter()
        .filter(|v| **v != 0.0)
        .fold(f64::INFINITY, |m, v| m.min(v.abs()));
    if smallest == f64::INFINITY {
        return Some((1.0, vec![0; values.len()]));
    }
    'unit: for m in 1..=12 {
        let q = smallest / m as f64;
        let mut ints = Vec::with_capacity(values.len());
        for &v in values {
            let r = (v / q).round();
            if r.abs() > TABLE_MAX_KEY as f64 || (r * q - v).abs() > 1e-14 * v.abs() {
                continue 'unit;
            }
            ints.push(r as i64);
        }
        return Some((q, ints));
    }
    None
}

/// The score-table path of [`ExactChain`] for pairwise models whose fields and couplings are
/// small integer multiples of one unit q (uniform Ising lattices, +-J spin glasses, ...).
///
/// With integer fields H_i = h_i / q and couplings K_ij = J_ij / q, the integer local field
/// L_i = H_i + sum_j K_ij s_j gives Delta_i = 2 q s_i L_i, so the score
/// d_i = -beta Delta_i = -2 beta q k_i depends only on the *key* k_i = s_i L_i, an integer in
/// [-L_max, L_max]. Everything a proposal needs per variable (the GWG weight exp(d / 2), the
/// Langevin flip threshold t = [`flip_threshold`] of z with z = d / 2 - 1 / (2 alpha), and
/// ln(t / 2^32), ln(1 - t / 2^32)) is read from tables indexed by the *class* k_i + L_max,
/// computed once; every variable's threshold is kept in an array next to its class, so that
/// a Langevin proposal draws its flips by [`draw_flips`] (integer compares, a quarter of a
/// random word per bit).
/// A flip of i negates k_i and adds 2 K_ij s_i (new s_i) to each neighbour's L_j: integer
/// work, no exp or log per proposal, and the exact change of log p of a move is -2 beta q times
/// the integer sum of the keys met while its flips are applied one after another.
///
/// GWG's Metropolis-Hastings ratio needs no logarithm either: with exact scores the reverse
/// score of the flipped bit is -d_i, so
/// p(x') q(i | x') / (p(x) q(i | x)) = e^{d_i} (e^{-d_i/2} / W(x')) / (e^{d_i/2} / W(x))
/// = W(x) / W(x'), W the sum of the weights, kept as sum over classes of (count x weight) (an
/// exact function of the state, no running-sum drift). DMALA's ratio only involves the
/// variables whose class changed (the flipped ones and their neighbours): the other factors
/// of q(x' | x) and q(x | x') are the same table entries and cancel. The factors are the logs
/// of the same quantised probabilities t / 2^32 the flips were drawn with, so the
/// Metropolis-Hastings test is exact for the proposal actually made.
#[derive(Debug, Clone)]
struct ScoreTable {
    /// Compressed rows of the integer couplings: neighbours of i at `row[i]..row[i + 1]`.
    row: Vec<u32>,
    nbr: Vec<u32>,
    coupling: Vec<i32>,
    /// L_i, the integer local field of the current state.
    local: Vec<i32>,
    /// k_i + L_max of the current state.
    class: Vec<u8>,
    /// L_max.
    offset: i32,
    /// -2 beta q: the score of key k is unit * k.
    unit: f64,
    /// Per class c: exp(d / 2) (GWG), the flip threshold t (the flip probability is t / 2^32)
    /// and, at index 2c + f, ln(1 - t / 2^32) (f = 0: the bit stays) or ln(t / 2^32) (f = 1:
    /// it flips) (DULA, DMALA).
    weight: Vec<f64>,
    threshold: Vec<u32>,
    log_factor: Vec<f64>,
    /// GWG: number of variables in each class (as f64, for W = sum count * weight; not kept
    /// for DULA and DMALA).
    count: Vec<f64>,
    /// GWG: W of the current state (`total()`, kept so that a proposal computes it once).
    current_total: f64,
    /// GWG: the weight of every variable (the linear scan's array).
    var_weight: Vec<f64>,
    /// DULA, DMALA: the flip threshold of every variable, and their high pieces packed four to
    /// a word (the arrays [`draw_flips_packed`] reads).
    var_threshold: Vec<u32>,
    packed_high: Vec<u64>,
    /// True for DULA and DMALA (keep `var_threshold`), false for GWG (keep `var_weight`).
    langevin: bool,
    /// Variables whose class the current proposal changed, with their class before it.
    undo: Vec<(u32, u8)>,
    /// Per variable: the proposal that last touched it (visit each once), and whether the
    /// current proposal flips it (1) or not (0).
    stamp: Vec<u64>,
    in_move: Vec<u8>,
    now: u64,
}

impl ScoreTable {
    /// The table for `model` at `beta` in state `s`, when the model is pairwise with quantised
    /// parameters, the keys fit [`TABLE_MAX_KEY`] and every |d| fits [`TREE_MAX_SCORE`].
    fn build<M: LocalModel>(
        model: &M,
        sampler: GradientSampler,
        beta: f64,
        s: &[Spin],
    ) -> Option<Self> {
        let (fields, edges) = model.pairwise_terms()?;
        let n = fields.len();
        if n != s.len() || n > u32::MAX as usize {
            return None;
        }
        let values: Vec<f64> = (fields.iter().copied())
            .chain(edges.iter().map(|e| e.2))
            .collect();
        let (q, ints) = quantise(&values)?;
        let (h, k) = ints.split_at(n);
        // Integer couplings per ordered pair, duplicates added.
        let mut pairs: Vec<(u32, u32, i64)> = Vec::with_capacity(2 * edges.len());
        for (&(i, j, _), &kij) in edges.iter().zip(k) {
            if kij != 0 && i != j {
                pairs.push((i as u32, j as u32, kij));
                pairs.push((j as u32, i as u32, kij));
            }
        }
        pairs.sort_unstable_by_key(|p| (p.0, p.1));
        let (mut row, mut nbr, mut coupling) = (vec![0u32; n + 1], Vec::new(), Vec::new());
        let mut reach = vec![0i64; n];
        for &(i, j, kij) in &pairs {
            let last = coupling.len();
            let same = last > 0 && row[i as usize + 1] as usize == last && nbr[last - 1] == j;
            if same {
                coupling[last - 1] += kij as i32;
            } else {
                nbr.push(j);
                coupling.push(kij as i32);
                row[i as usize + 1] = nbr.len() as u32;
            }
            reach[i as usize] += kij.abs();
        }
        for i in 0..n {
            row[i + 1] = row[i + 1].max(row[i]);
        }
        let l_max = (0..n).map(|i| h[i].abs() + reach[i]).max().unwrap_or(0);
        let unit = -2.0 * beta * q;
        if l_max > TABLE_MAX_KEY || !unit.is_finite() || unit.abs() * l_max as f64 > TREE_MAX_SCORE
        {
            return None;
        }
        let offset = l_max as i32;
        let classes = 2 * l_max as usize + 1;
        let shift = sampler.step_size().map_or(f64::INFINITY, |a| 0.5 / a);
        let score = |c: usize| unit * (c as i32 - offset) as f64;
        let z = |c: usize| 0.5 * score(c) - shift;
        let threshold: Vec<u32> = (0..classes).map(|c| flip_threshold(z(c))).collect();
        let mut table = ScoreTable {
            local: (0..n)
                .map(|i| {
                    let mut l = h[i] as i32;
                    for e in row[i] as usize..row[i + 1] as usize {
                        l += coupling[e] * s[nbr[e] as usize] as i32;
                    }
                    l
                })
                .collect(),
            row,
            nbr,
            coupling,
            class: vec![0; n],
            offset,
            unit,
            weight: (0..classes).map(|c| (0.5 * score(c)).exp()).collect(),
            // The same function as the general path's, so both draw the same flips from the
            // same random words.
            log_factor: (threshold.iter())
                .flat_map(|&t| [log_stay_probability(t), log_flip_probability(t)])
                .collect(),
            threshold,
            count: vec![0.0; classes],
            current_total: 0.0,
            var_weight: vec![0.0; n],
            var_threshold: vec![0; n],
            packed_high: vec![0; n.div_ceil(4)],
            langevin: sampler.step_size().is_some(),
            undo: Vec::with_capacity(n),
            stamp: vec![0; n],
            in_move: vec![0; n],
            now: 0,
        };
        for (i, &si) in s.iter().enumerate() {
            let c = table.class_of(si, i);
            table.class[i] = c;
            table.count[c as usize] += 1.0;
            table.var_weight[i] = table.weight[c as usize];
            table.var_threshold[i] = table.threshold[c as usize];
        }
        pack_high_pieces(&table.var_threshold, &mut table.packed_high);
        table.current_total = table.total();
        Some(table)
    }

    #[inline]
    fn class_of(&self, si: Spin, i: usize) -> u8 {
        (si as i32 * self.local[i] + self.offset) as u8
    }

    /// The score d_i of the current state.
    #[inline]
    fn score(&self, i: usize) -> f64 {
        self.unit * (self.class[i] as i32 - self.offset) as f64
    }

    /// W = sum_i exp(d_i / 2) = sum over classes of count x weight.
    #[inline]
    fn total(&self) -> f64 {
        self.count
            .iter()
            .zip(&self.weight)
            .map(|(c, w)| c * w)
            .sum()
    }

    /// Starts a proposal: nothing touched yet.
    #[inline]
    fn begin(&mut self) {
        self.undo.clear();
        self.now += 1;
    }

    /// Moves variable j to class c, remembering (with `track`) its class before the proposal.
    #[inline(always)]
    fn set_class(&mut self, j: usize, c: u8, track: bool) {
        let old = self.class[j];
        if track && self.stamp[j] != self.now {
            self.stamp[j] = self.now;
            self.undo.push((j as u32, old));
        }
        self.class[j] = c;
        if self.langevin {
            let t = self.threshold[c as usize];
            self.var_threshold[j] = t;
            set_high_piece(&mut self.packed_high, j, t);
        } else {
            self.count[old as usize] -= 1.0;
            self.count[c as usize] += 1.0;
            self.var_weight[j] = self.weight[c as usize];
        }
    }

    /// Flips s_i and updates the local fields and classes of i and its neighbours; returns the
    /// key k_i before the flip (so the change of log p is unit * k_i). With `track`, the
    /// variables whose class changed are listed in `undo` with their old class.
    #[inline(always)]
    fn flip(&mut self, s: &mut [Spin], i: usize, track: bool) -> i32 {
        let key = self.class[i] as i32 - self.offset;
        s[i] = -s[i];
        let si = s[i] as i32;
        self.set_class(i, (self.offset - key) as u8, track);
        for e in self.row[i] as usize..self.row[i + 1] as usize {
            let j = self.nbr[e] as usize;
            self.local[j] += 2 * self.coupling[e] * si;
            let c = self.class_of(s[j], j);
            self.set_class(j, c, track);
        }
        key
    }

    /// The flip of the linear scan: the first i where the running sum of the weights passes
    /// `target` (0 <= target < W), never one of weight 0 (rounding can leave the target above
    /// the last partial sum: then the last variable of positive weight).
    #[inline]
    fn scan(&self, target: f64) -> usize {
        let mut acc = 0.0;
        for (k, &w) in self.var_weight.iter().enumerate() {
            acc += w;
            if target < acc && w > 0.0 {
                return k;
            }
        }
        let mut i = self.var_weight.len() - 1;
        while self.var_weight[i] == 0.0 && i > 0 {
            i -= 1;
        }
        i
    }
}

/// One chain of a gradient sampler on a model with exact local flip scores (pairwise models,
/// Ising lattices, factor graphs): the state, the scores d_i = -beta Delta_i kept up to date,
/// and work buffers allocated once.
#[derive(Debug, Clone)]
pub struct ExactChain<M: LocalModel> {
    model: M,
    neighbours: Neighbours,
    sampler: GradientSampler,
    beta: f64,
    s: Vec<Spin>,
    scores: Vec<f64>,
    /// GWG: exp(d_i / 2 - max) of the current state.
    weights: Vec<f64>,
    /// Variables flipped by the current proposal.
    flipped: Vec<usize>,
    /// DULA, DMALA: the flips drawn by [`draw_flips`] (its output, n entries).
    drawn: Vec<u32>,
    /// DULA, DMALA on the general path: every variable's flip threshold at the current state
    /// (and their high pieces packed, see [`draw_flips_packed`]), and whether the current
    /// proposal flips it.
    thresholds: Vec<u32>,
    packed_high: Vec<u64>,
    in_move: Vec<bool>,
    /// Scores changed by the current proposal, with their old values (restored on rejection).
    undo: Vec<(usize, f64)>,
    /// Proposal stamp per variable, to visit each affected variable once.
    stamp: Vec<u64>,
    /// GWG: a sum tree over w_i = exp(d_i / 2) (leaves at `leaves..`, node k the sum of nodes
    /// 2k and 2k + 1, recomputed from its children whenever a leaf below changes, so the tree
    /// is a function of the leaves alone). Empty when not used (see [`ExactChain::new`]).
    tree: Vec<f64>,
    leaves: usize,
    /// The score-table path, when the model allows it (see [`ScoreTable`]); the fields above
    /// that hold scores (`scores`, `weights`, `undo`) are then unused, and the tree (GWG with
    /// more than [`LINEAR_SCAN_MAX_VARS`] variables) holds the table's weights.
    table: Option<ScoreTable>,
    rng: EbmRng,
    counts: ProposalCounts,
}

/// Largest |d_i| for which GWG keeps unshifted weights exp(d_i / 2) in its sum tree: far from
/// overflow (exp(350) ~ 1e152) however many variables are summed.
const TREE_MAX_SCORE: f64 = 700.0;

impl<M: LocalModel> ExactChain<M> {
    /// A chain of `sampler` on `model` at `beta` from `state` (of positive probability), drawing
    /// from `rng`.
    pub fn new(
        model: M,
        sampler: GradientSampler,
        beta: f64,
        state: Vec<Spin>,
        rng: EbmRng,
    ) -> Result<Self> {
        sampler.check()?;
        super::check_chain(beta, 1, 0)?;
        if state.len() != model.num_vars() {
            return Err(Error::SizeMismatch(format!(
                "initial state has {} spins, the model {}",
                state.len(),
                model.num_vars()
            )));
        }
        if !model.energy(&state).is_finite() {
            return Err(Error::InvalidModel(
                "the initial configuration has zero probability".into(),
            ));
        }
        let n = state.len();
        let scores = exact_scores(&model, beta, &state);
        let table = ScoreTable::build(&model, sampler, beta, &state);
        let mut chain = ExactChain {
            tree: Vec::new(),
            leaves: 0,
            table,
            neighbours: model.neighbours(),
            model,
            sampler,
            beta,
            s: state,
            scores,
            weights: vec![0.0; n],
            flipped: Vec::with_capacity(n),
            drawn: vec![0; n],
            thresholds: vec![0; n],
            packed_high: vec![0; n.div_ceil(4)],
            in_move: vec![false; n],
            undo: Vec::with_capacity(n),
            stamp: vec![0; n],
            rng,
            counts: ProposalCounts::default(),
        };
        chain.build_tree();
        Ok(chain)
    }

    /// Builds GWG's sum tree, if it uses one: on the table path when there are more than
    /// [`LINEAR_SCAN_MAX_VARS`] variables (leaves: the table's weights); on the general path
    /// when every score is bounded by [`TREE_MAX_SCORE`] (leaves exp(d_i / 2)): O(degree log n)
    /// per proposal. A pairwise model's |d_i| is at most 2 beta (|h_i| + sum_j |J_ij|), estimated
    /// here from the start and checked on every update (the general chain falls back to the
    /// O(n) softmax with a max shift if a score ever exceeds it).
    fn build_tree(&mut self) {
        let n = self.s.len();
        let weights: Vec<f64> = match &self.table {
            Some(t) if n > LINEAR_SCAN_MAX_VARS => t.var_weight.clone(),
            Some(_) => Vec::new(),
            None => {
                let bounded = (self.scores.iter())
                    .all(|d| d.abs() <= TREE_MAX_SCORE || *d == f64::NEG_INFINITY);
                if bounded {
                    self.scores.iter().map(|d| (0.5 * d).exp()).collect()
                } else {
                    Vec::new()
                }
            }
        };
        let leaves = if self.sampler == GradientSampler::Gwg && !weights.is_empty() {
            n.next_power_of_two()
        } else {
            0
        };
        let mut tree = vec![0.0; 2 * leaves];
        for (i, &w) in weights.iter().enumerate().take(leaves) {
            tree[leaves + i] = w;
        }
        for k in (1..leaves).rev() {
            tree[k] = tree[2 * k] + tree[2 * k + 1];
        }
        self.tree = tree;
        self.leaves = leaves;
    }

    /// The same chain on the general path (scores from [`EnergyModel::flip_delta`], exp and
    /// softplus per proposal) even when the score-table path applies: the reference the table
    /// path is checked against, and a way to time one against the other.
    pub fn general_path(mut self) -> Self {
        self.table = None;
        self.scores = exact_scores(&self.model, self.beta, &self.s);
        self.build_tree();
        self
    }

    /// True when the chain runs on the score-table path (`ScoreTable`).
    pub fn uses_score_table(&self) -> bool {
        self.table.is_some()
    }

    /// The flip scores d_i of the current state as the chain keeps them (from the table on the
    /// table path). Allocates: for checks, not for the inner loop.
    pub fn scores(&self) -> Vec<f64> {
        match &self.table {
            Some(t) => (0..self.s.len()).map(|i| t.score(i)).collect(),
            None => self.scores.clone(),
        }
    }

    /// The current configuration.
    pub fn spins(&self) -> &[Spin] {
        &self.s
    }

    /// The proposal counts so far.
    pub fn counts(&self) -> ProposalCounts {
        self.counts
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Recomputes the scores of the flipped variables and their neighbours, saving the old
    /// values in `undo`.
    fn refresh_scores(&mut self) {
        self.undo.clear();
        let stamp = self.counts.proposals + 1;
        for k in 0..self.flipped.len() {
            let i = self.flipped[k];
            let around = std::iter::once(i).chain(self.neighbours.of(i).iter().copied());
            for j in around {
                if self.stamp[j] == stamp {
                    continue;
                }
                self.stamp[j] = stamp;
                let old = self.scores[j];
                self.undo.push((j, old));
                self.scores[j] = -self.beta * self.model.flip_delta(&self.s, j);
            }
        }
    }

    /// Flips the variables of the current proposal (applies it, or undoes it).
    fn flip_proposed(&mut self) {
        for &i in &self.flipped {
            self.s[i] = -self.s[i];
        }
    }

    fn reject(&mut self) {
        self.flip_proposed();
        for &(j, old) in self.undo.iter().rev() {
            self.scores[j] = old;
        }
    }

    /// ln sum_i exp(d_i / 2), filling `weights` with exp(d_i / 2 - max); returns (max, sum).
    fn softmax_weights(&mut self) -> (f64, f64) {
        let max = self
            .scores
            .iter()
            .fold(f64::NEG_INFINITY, |m, &d| m.max(0.5 * d));
        let mut sum = 0.0;
        for (w, &d) in self.weights.iter_mut().zip(&self.scores) {
            *w = (0.5 * d - max).exp();
            sum += *w;
        }
        (max, sum)
    }

    /// One proposal; returns the number of bits flipped (0 when rejected).
    pub fn step(&mut self) -> u64 {
        let flips = match (self.sampler, self.table.is_some()) {
            (GradientSampler::Gwg, true) => self.gwg_table_step(),
            (GradientSampler::Gwg, false) => self.gwg_step(),
            (GradientSampler::Dula { .. }, true) => self.langevin_table_step(false),
            (GradientSampler::Dmala { .. }, true) => self.langevin_table_step(true),
            (GradientSampler::Dula { step_size }, false) => self.langevin_step(step_size, false),
            (GradientSampler::Dmala { step_size }, false) => self.langevin_step(step_size, true),
        };
        self.counts.proposals += 1;
        if flips > 0 {
            self.counts.accepted += 1;
            self.counts.bits_flipped += flips;
        }
        flips
    }

    /// Sets leaf i of the sum tree to exp(d_i / 2) and recomputes the nodes above it; returns
    /// false when |d_i| exceeds [`TREE_MAX_SCORE`] (the tree cannot hold it).
    fn set_leaf(&mut self, i: usize) -> bool {
        let d = self.scores[i];
        set_tree_leaf(&mut self.tree, self.leaves, i, (0.5 * d).exp());
        d.abs() <= TREE_MAX_SCORE || d == f64::NEG_INFINITY
    }

    /// The leaf where the cumulative weight passes `target` (0 <= target < total), never one
    /// of weight 0.
    fn tree_sample(&self, target: f64) -> usize {
        tree_sample(&self.tree, self.leaves, target)
    }

    /// GWG on the table path: the flip from the linear scan (or the tree), accepted with
    /// probability min(1, W(x) / W(x')) (see [`ScoreTable`]).
    fn gwg_table_step(&mut self) -> u64 {
        let t = self.table.as_mut().expect("table path");
        let tree = self.leaves > 0;
        let total = if tree { self.tree[1] } else { t.current_total };
        if !(total > 0.0 && total.is_finite()) {
            return 0;
        }
        let target = uniform_f64(&mut self.rng) * total;
        let i = if tree {
            tree_sample(&self.tree, self.leaves, target)
        } else {
            t.scan(target)
        };
        t.begin();
        t.flip(&mut self.s, i, tree);
        let total_rev = if tree {
            for &(j, _) in &t.undo {
                let j = j as usize;
                set_tree_leaf(&mut self.tree, self.leaves, j, t.var_weight[j]);
            }
            self.tree[1]
        } else {
            t.total()
        };
        if total_rev <= total || uniform_f64(&mut self.rng) * total_rev < total {
            t.current_total = total_rev;
            return 1;
        }
        t.begin();
        t.flip(&mut self.s, i, tree);
        if tree {
            for &(j, _) in &t.undo {
                let j = j as usize;
                set_tree_leaf(&mut self.tree, self.leaves, j, t.var_weight[j]);
            }
        }
        0
    }

    /// DULA / DMALA on the table path: every bit flips with its class's probability (drawn by
    /// [`draw_flips`] from the kept thresholds); DMALA accepts with the ratio of
    /// [`ExactChain::apply_table_move`].
    fn langevin_table_step(&mut self, corrected: bool) -> u64 {
        let t = self.table.as_ref().expect("table path");
        let m = draw_flips_packed(
            &mut self.rng,
            &t.packed_high,
            &t.var_threshold,
            &mut self.drawn,
        );
        if m == 0 {
            return 0;
        }
        let log_accept = self.apply_table_move(m, corrected);
        if !corrected || log_accept >= 0.0 || uniform_f64(&mut self.rng) < log_accept.exp() {
            return m as u64;
        }
        let t = self.table.as_mut().expect("table path");
        t.begin();
        for &i in self.drawn[..m].iter().rev() {
            t.flip(&mut self.s, i as usize, false);
        }
        0
    }

    /// Applies the flips `drawn[..m]` on the table path and, with `corrected` (DMALA), returns
    /// ln of the Metropolis-Hastings ratio p(x') q(x | x') / (p(x) q(x' | x)) (0 without):
    /// unit x (sum of the keys met as the flips are applied one after another) plus, over the
    /// variables whose class changed, ln t'/2^32 - ln t/2^32 (flipped ones) or
    /// ln(1 - t'/2^32) - ln(1 - t/2^32) (the others), t and t' their thresholds before and after.
    fn apply_table_move(&mut self, m: usize, corrected: bool) -> f64 {
        let t = self.table.as_mut().expect("table path");
        let moves = &self.drawn[..m];
        t.begin();
        let mut key_sum = 0i64;
        for &i in moves {
            t.in_move[i as usize] = 1;
            key_sum += t.flip(&mut self.s, i as usize, corrected) as i64;
        }
        let mut log_accept = 0.0;
        if corrected {
            // The proposal factors of variables whose class did not change cancel.
            log_accept = t.unit * key_sum as f64;
            for &(j, old) in &t.undo {
                let (j, old) = (j as usize, old as usize);
                let new = t.class[j] as usize;
                let f = t.in_move[j] as usize;
                log_accept += t.log_factor[2 * new + f] - t.log_factor[2 * old + f];
            }
        }
        for &i in moves {
            t.in_move[i as usize] = 0;
        }
        log_accept
    }

    /// GWG with the sum tree: O(degree log n) per proposal.
    fn gwg_tree_step(&mut self) -> u64 {
        let total = self.tree[1];
        if !(total > 0.0 && total.is_finite()) {
            return 0;
        }
        let target = uniform_f64(&mut self.rng) * total;
        let i = self.tree_sample(target);
        let log_fwd = 0.5 * self.scores[i] - total.ln();
        let delta = self.scores[i];
        self.s[i] = -self.s[i];
        self.flipped.clear();
        self.flipped.push(i);
        self.refresh_scores();
        let mut bounded = true;
        for k in 0..self.undo.len() {
            bounded &= self.set_leaf(self.undo[k].0);
        }
        let log_rev = 0.5 * self.scores[i] - self.tree[1].ln();
        let log_accept = delta + log_rev - log_fwd;
        let flips = if log_accept >= 0.0 || uniform_f64(&mut self.rng) < log_accept.exp() {
            1
        } else {
            self.reject();
            for k in 0..self.undo.len() {
                self.set_leaf(self.undo[k].0);
            }
            0
        };
        if !bounded {
            // A score left the range of the tree: from now on the O(n) softmax.
            self.tree = Vec::new();
            self.leaves = 0;
        }
        flips
    }

    fn gwg_step(&mut self) -> u64 {
        if self.leaves > 0 {
            return self.gwg_tree_step();
        }
        let (max, sum) = self.softmax_weights();
        if !(max.is_finite() && sum > 0.0) {
            return 0; // no flip has positive probability
        }
        let target = uniform_f64(&mut self.rng) * sum;
        let mut acc = 0.0;
        let mut i = self.weights.len() - 1;
        for (k, &w) in self.weights.iter().enumerate() {
            acc += w;
            if target < acc && w > 0.0 {
                i = k;
                break;
            }
        }
        // (If rounding left target >= acc, the last variable of positive weight is taken.)
        while self.weights[i] == 0.0 {
            i -= 1;
        }
        let log_fwd = 0.5 * self.scores[i] - max - sum.ln();
        let delta = self.scores[i];
        self.s[i] = -self.s[i];
        self.flipped.clear();
        self.flipped.push(i);
        self.refresh_scores();
        let (max_rev, sum_rev) = self.softmax_weights();
        let log_rev = 0.5 * self.scores[i] - max_rev - sum_rev.ln();
        let log_accept = delta + log_rev - log_fwd;
        if log_accept >= 0.0 || uniform_f64(&mut self.rng) < log_accept.exp() {
            1
        } else {
            self.reject();
            0
        }
    }

    /// DULA / DMALA on the general path: the thresholds ([`flip_threshold`] of d_i / 2 - shift)
    /// of every variable, the flips drawn by [`draw_flips`] (the same draws as the table path),
    /// and for DMALA the Metropolis-Hastings test of [`ExactChain::apply_general_move`].
    fn langevin_step(&mut self, step_size: f64, corrected: bool) -> u64 {
        let shift = 0.5 / step_size;
        for (t, &d) in self.thresholds.iter_mut().zip(&self.scores) {
            *t = flip_threshold(0.5 * d - shift);
        }
        pack_high_pieces(&self.thresholds, &mut self.packed_high);
        let m = draw_flips_packed(
            &mut self.rng,
            &self.packed_high,
            &self.thresholds,
            &mut self.drawn,
        );
        if m == 0 {
            return 0;
        }
        self.flipped.clear();
        self.flipped
            .extend(self.drawn[..m].iter().map(|&i| i as usize));
        let Some(log_accept) = self.apply_general_move(shift, corrected) else {
            return 0;
        };
        if !corrected || log_accept >= 0.0 || uniform_f64(&mut self.rng) < log_accept.exp() {
            m as u64
        } else {
            self.reject();
            0
        }
    }

    /// Applies the flips `flipped` on the general path (the scores of the flipped variables and
    /// their neighbours refreshed) and returns ln of DMALA's Metropolis-Hastings ratio
    /// p(x') q(x | x') / (p(x) q(x' | x)) (0 when not `corrected`): the exact change of log p
    /// plus, over the refreshed variables, ln t'/2^32 - ln t/2^32 (flipped ones) or
    /// ln(1 - t'/2^32) - ln(1 - t/2^32) (the others), t = `thresholds` (those drawn with) and
    /// t' those of the new scores; the factors of the other variables cancel. None (the state
    /// restored) for a move into a state of zero probability, which both samplers refuse.
    fn apply_general_move(&mut self, shift: f64, corrected: bool) -> Option<f64> {
        // Exact change of log p: the flips applied one after another.
        let mut delta = 0.0;
        for k in 0..self.flipped.len() {
            let i = self.flipped[k];
            delta -= self.beta * self.model.flip_delta(&self.s, i);
            self.s[i] = -self.s[i];
        }
        if delta.is_nan() {
            // The flips passed through a state of zero probability (inf - inf): take the
            // change from the two energies instead.
            let after = self.model.energy(&self.s);
            self.flip_proposed();
            let before = self.model.energy(&self.s);
            self.flip_proposed();
            delta = -self.beta * (after - before);
        }
        if delta == f64::NEG_INFINITY || delta.is_nan() {
            // A state of zero probability (hard constraints of a factor graph): refused by
            // both samplers (its scores are not even computed).
            self.flip_proposed();
            return None;
        }
        self.refresh_scores();
        if !corrected {
            return Some(0.0);
        }
        for &i in &self.flipped {
            self.in_move[i] = true;
        }
        let mut log_accept = delta;
        for &(j, _) in &self.undo {
            let (old, new) = (
                self.thresholds[j],
                flip_threshold(0.5 * self.scores[j] - shift),
            );
            log_accept += if self.in_move[j] {
                log_flip_probability(new) - log_flip_probability(old)
            } else {
                log_stay_probability(new) - log_stay_probability(old)
            };
        }
        for &i in &self.flipped {
            self.in_move[i] = false;
        }
        Some(log_accept)
    }

    /// One sweep ([`GradientSampler::proposals_per_sweep`] proposals); returns bits flipped.
    pub fn sweep(&mut self) -> u64 {
        (0..self.sampler.proposals_per_sweep(self.s.len()))
            .map(|_| self.step())
            .sum()
    }
}

/// Sets leaf i of a sum tree (leaves at `leaves..`, node k the sum of nodes 2k and 2k + 1) to
/// `w` and recomputes the nodes above it from their children.
#[inline]
fn set_tree_leaf(tree: &mut [f64], leaves: usize, i: usize, w: f64) {
    let mut k = leaves + i;
    tree[k] = w;
    while k > 1 {
        k /= 2;
        tree[k] = tree[2 * k] + tree[2 * k + 1];
    }
}

/// The leaf of a sum tree where the cumulative weight passes `target` (0 <= target < total),
/// never one of weight 0.
#[inline]
fn tree_sample(tree: &[f64], leaves: usize, mut target: f64) -> usize {
    let mut k = 1;
    while k < leaves {
        let (left, right) = (tree[2 * k], tree[2 * k + 1]);
        if (target < left && left > 0.0) || right == 0.0 {
            k *= 2;
        } else {
            target -= left;
            k = 2 * k + 1;
        }
    }
    k - leaves
}

impl LatticeUpdate for ExactChain<IsingLattice> {
    fn sweep(&mut self) -> u64 {
        ExactChain::sweep(self)
    }
    fn energy(&self) -> f64 {
        self.model.energy(&self.s)
    }
    fn magnetization(&self) -> i64 {
        self.s.iter().map(|&x| x as i64).sum()
    }
    fn state(&self) -> Vec<Spin> {
        self.s.clone()
    }
    fn updates_per_sweep(&self) -> u64 {
        self.sampler.proposals_per_sweep(self.s.len())
    }
    fn boxed_clone(&self) -> Box<dyn LatticeUpdate> {
        Box::new(self.clone())
    }
    fn proposal_counts(&self) -> Option<ProposalCounts> {
        Some(self.counts)
    }
}

/// Settings of [`sample_model_gradient`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientParams {
    /// Inverse temperature.
    pub beta: f64,
    /// The sampler.
    pub sampler: GradientSampler,
    /// Sweeps recorded after the burn-in, per chain.
    pub sweeps: u64,
    /// Sweeps discarded first, per chain.
    pub burn_in: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Initial configuration of every chain (random: each chain its own draw).
    pub start: Start,
    /// Chains run in parallel (at least 1).
    pub chains: usize,
}

/// The outcome of [`sample_model_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradientRun {
    /// The run in the form of the other samplers: `energies` is the mean energy over the
    /// chains after each recorded sweep, marginals the mean over chains (standard errors from
    /// each chain's batch means, combined as sqrt(sum se_k^2) / chains), `updates` the
    /// proposals and `flips` the accepted proposals of all chains, burn-in included, `frozen`
    /// the variables that kept one value in every chain, `state` the last state of chain 0.
    pub run: ModelRun,
    /// Proposal counts of all chains, burn-in included.
    pub counts: ProposalCounts,
}

/// What one chain records over the recorded sweeps.
struct ChainRecord {
    energies: Vec<f64>,
    ones: Vec<u64>,
    batch_ones: Vec<u64>,
}

/// Runs `params.chains` chains of a gradient sampler on `model` in parallel (chain k from
/// `stream_for(seed, Purpose::GradientChain, k)`, which also draws its random start), each
/// `burn_in` discarded and `sweeps` recorded sweeps. A factor graph's start of zero probability
/// is repaired as in [`super::sample_factor_graph`]. The observer hears about progress between
/// blocks of sweeps; `Break` stops with [`Error::Interrupted`].
pub fn sample_model_gradient<M: LocalModel + Sync>(
    model: &M,
    params: &GradientParams,
    repair: Option<&FactorGraph>,
    obs: &mut dyn Observer,
) -> Result<GradientRun> {
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    params.sampler.check()?;
    if params.chains == 0 {
        return Err(Error::param("chains", "must be at least 1"));
    }
    let n = model.num_vars();
    let mut chains = Vec::with_capacity(params.chains);
    for k in 0..params.chains {
        let mut rng = rng::stream_for(params.seed, rng::Purpose::GradientChain, k as u64);
        let mut s: Vec<Spin> = match params.start {
            Start::Up => vec![1; n],
            Start::Random => (0..n)
                .map(|_| if uniform_f64(&mut rng) < 0.5 { 1 } else { -1 })
                .collect(),
        };
        if let Some(graph) = repair {
            repair_start(graph, &mut s)?;
        }
        let chain = ExactChain::new(model.clone(), params.sampler, params.beta, s, rng)?;
        let energies = super::series_buffers(params.sweeps, 1)?
            .pop()
            .expect("one buffer");
        let record = ChainRecord {
            energies,
            ones: vec![0; n],
            batch_ones: vec![0; n * MARGINAL_BATCHES],
        };
        chains.push((chain, record));
    }
    let total = params.burn_in + params.sweeps;
    let block = (total / 200).max(1);
    let batch_len = params.sweeps / MARGINAL_BATCHES as u64;
    let mut done = 0;
    while done < total {
        let len = block.min(total - done);
        chains.par_iter_mut().for_each(|(chain, record)| {
            for t in done..done + len {
                chain.sweep();
                if t < params.burn_in {
                    continue;
                }
                let k = t - params.burn_in;
                record.energies.push(chain.model.energy(&chain.s));
                for (c, &x) in record.ones.iter_mut().zip(&chain.s) {
                    *c += (x > 0) as u64;
                }
                if batch_len > 0 && k < batch_len * MARGINAL_BATCHES as u64 {
                    let b = (k / batch_len) as usize;
                    for (c, &x) in record.batch_ones[b * n..(b + 1) * n]
                        .iter_mut()
                        .zip(&chain.s)
                    {
                        *c += (x > 0) as u64;
                    }
                }
            }
        });
        done += len;
        let step = Step {
            done,
            total,
            metric: chains[0].1.energies.last().copied(),
        };
        if obs.on_step(&step) == Control::Break {
            return Err(Error::Interrupted);
        }
    }
    let k = params.chains as f64;
    let recorded = params.sweeps as f64;
    let mut counts = ProposalCounts::default();
    let mut energies = vec![0.0; params.sweeps as usize];
    let mut marginals = vec![0.0; n];
    let mut se2 = vec![0.0; n];
    let mut frozen_everywhere = vec![true; n];
    for (chain, record) in &chains {
        counts.add(&chain.counts);
        for (e, &x) in energies.iter_mut().zip(&record.energies) {
            *e += x / k;
        }
        for i in 0..n {
            let c = record.ones[i];
            marginals[i] += c as f64 / recorded / k;
            frozen_everywhere[i] &= c == 0 || c == params.sweeps;
            if batch_len > 0 {
                let means: Vec<f64> = (0..MARGINAL_BATCHES)
                    .map(|b| record.batch_ones[b * n + i] as f64 / batch_len as f64)
                    .collect();
                let m = stats::mean(&means);
                let var = means.iter().map(|v| (v - m) * (v - m)).sum::<f64>()
                    / (MARGINAL_BATCHES - 1) as f64;
                se2[i] += var / MARGINAL_BATCHES as f64;
            }
        }
    }
    if counts.bits_flipped == 0 && n > 0 {
        return Err(Error::InvalidModel(format!(
            "the chain did not move: no proposal of {} was accepted in {total} sweeps, so no \
             marginal can be estimated (beta = {} may be too large, or hard constraints pin \
             the chain)",
            params.sampler.name(),
            params.beta
        )));
    }
    // A variable is frozen when it kept one value over the recorded sweeps of every chain and
    // that value is the same in all chains (marginal 0 or 1).
    let frozen = (0..n)
        .filter(|&i| frozen_everywhere[i] && (marginals[i] == 0.0 || marginals[i] == 1.0))
        .collect();
    let marginal_stderr = (batch_len > 0).then(|| se2.iter().map(|v| v.sqrt() / k).collect());
    let run = ModelRun {
        energies,
        marginals,
        marginal_stderr,
        updates: counts.proposals,
        flips: counts.accepted,
        frozen,
        tied_blocks: 0,
        state: chains[0].0.s.clone(),
    };
    Ok(GradientRun { run, counts })
}

/// The outcome of [`sample_lattice_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct LatticeChainsRun {
    /// The run in the form of a single chain's: `energies` and `magnetizations` are the means
    /// over the chains after every stored sweep (for the trace), `updates`, `flips` and
    /// `proposals` the sums over the chains, `state` the last state of chain 0.
    pub run: super::LatticeRun,
    /// Chain k's E after every recorded sweep (burn-in not included).
    pub chain_energies: Vec<Vec<f64>>,
    /// Chain k's M = sum_i s_i after every recorded sweep.
    pub chain_magnetizations: Vec<Vec<f64>>,
}

impl LatticeChainsRun {
    /// The observables of all chains combined
    /// ([`super::lattice_observables_of_chains`]).
    pub fn observables(&self, beta: f64) -> super::LatticeObservables {
        let e: Vec<&[f64]> = self.chain_energies.iter().map(Vec::as_slice).collect();
        let m: Vec<&[f64]> = (self.chain_magnetizations.iter())
            .map(Vec::as_slice)
            .collect();
        super::lattice_observables_of_chains(self.run.sites, &e, &m, beta)
    }
}

/// Runs `chains` chains of the gradient sampler `params.sampler` (which must be
/// [`super::SamplerKind::Gradient`]) on `model` in parallel, each `burn_in` discarded and
/// `sweeps` recorded sweeps. Chain k starts from
/// [`super::initial_state_of_chain`]`(.., k)` and draws from
/// `stream_for(seed, Purpose::GradientChain, k)`, so chain 0 is the chain of
/// [`super::sample_lattice`] with the same parameters and the result does not depend on the
/// number of threads. The observer hears about progress between blocks of sweeps; `Break`
/// stops with [`Error::Interrupted`]. Errors: those of [`super::sample_lattice`], zero chains,
/// and [`Error::TooLarge`] when the chains' states or series exceed
/// [`super::MAX_SAMPLER_BYTES`].
pub fn sample_lattice_gradient(
    model: &IsingLattice,
    params: &super::LatticeParams,
    chains: usize,
    obs: &mut dyn Observer,
) -> Result<LatticeChainsRun> {
    let super::SamplerKind::Gradient(sampler) = params.sampler else {
        return Err(Error::param(
            "sampler",
            format!(
                "multi-chain lattice runs need gwg, dula or dmala, got {:?}",
                params.sampler
            ),
        ));
    };
    super::check_chain(params.beta, params.sweeps, params.burn_in)?;
    super::check_lattice_job(model, params.sampler, params.beta)?;
    sampler.check()?;
    if chains == 0 {
        return Err(Error::param("chains", "must be at least 1"));
    }
    let n = model.num_sites();
    let bytes = (n as u64)
        .checked_mul(96)
        .and_then(|b| b.checked_mul(chains as u64));
    if bytes.is_none_or(|b| b > super::MAX_SAMPLER_BYTES) {
        let what = format!("{chains} chains of {sampler:?} on {n} sites");
        return Err(super::job_too_large(&what, bytes));
    }
    let total = params.burn_in + params.sweeps; // checked by check_chain
    let first_stored = if params.record_burn_in {
        0
    } else {
        params.burn_in
    };
    struct Record {
        energies: Vec<f64>,
        magnetizations: Vec<f64>,
        flips: u64,
    }
    let mut all = Vec::with_capacity(chains);
    for k in 0..chains {
        let state = super::initial_state_of_chain(n, params.start, params.seed, k as u64);
        let rng = rng::stream_for(params.seed, rng::Purpose::GradientChain, k as u64);
        let chain = ExactChain::new(model.clone(), sampler, params.beta, state, rng)?;
        let [energies, magnetizations]: [Vec<f64>; 2] =
            super::series_buffers(total - first_stored, 2)?
                .try_into()
                .expect("two buffers");
        let record = Record {
            energies,
            magnetizations,
            flips: 0,
        };
        all.push((chain, record));
    }
    let block = (total / 200).max(1);
    let mut done = 0;
    while done < total {
        let len = block.min(total - done);
        all.par_iter_mut().for_each(|(chain, record)| {
            for t in done..done + len {
                record.flips += chain.sweep();
                if t >= first_stored {
                    record.energies.push(chain.model.energy(&chain.s));
                    let m: i64 = chain.s.iter().map(|&x| x as i64).sum();
                    record.magnetizations.push(m as f64);
                }
            }
        });
        done += len;
        let step = Step {
            done,
            total,
            metric: all[0].1.energies.last().map(|e| e / n as f64),
        };
        if obs.on_step(&step) == Control::Break {
            return Err(Error::Interrupted);
        }
    }
    let k = chains as f64;
    let stored = (total - first_stored) as usize;
    let mean = |f: &dyn Fn(&Record) -> &[f64]| -> Vec<f64> {
        (0..stored)
            .map(|t| all.iter().map(|(_, r)| f(r)[t]).sum::<f64>() / k)
            .collect()
    };
    let energies = mean(&|r| &r.energies);
    let magnetizations = mean(&|r| &r.magnetizations);
    let burn_in = (params.burn_in - first_stored) as usize;
    let mut counts = ProposalCounts::default();
    let mut flips = 0;
    for (chain, record) in &all {
        counts.add(&chain.counts);
        flips += record.flips;
    }
    let run = super::LatticeRun {
        sites: n,
        energies,
        magnetizations,
        burn_in,
        updates: total
            .saturating_mul(sampler.proposals_per_sweep(n))
            .saturating_mul(chains as u64),
        flips,
        checkerboard: false,
        state: all[0].0.s.clone(),
        proposals: Some(counts),
    };
    let (chain_energies, chain_magnetizations) = all
        .into_iter()
        .map(|(_, r)| {
            (
                r.energies[burn_in..].to_vec(),
                r.magnetizations[burn_in..].to_vec(),
            )
        })
        .unzip();
    Ok(LatticeChainsRun {
        run,
        chain_energies,
        chain_magnetizations,
    })
}

/// One chain of a gradient sampler on the visible units of an RBM (see the module docs for the
/// scores d_i = (1 - 2 v_i) g_i with g the gradient of -F). Holds the pre-activations
/// a = c + W^T v, softplus(a) and the gradient of the current state and of the proposal.
#[derive(Debug, Clone)]
pub struct RbmChain {
    sampler: GradientSampler,
    /// Visible state, 0 or 1.
    v: Vec<u8>,
    a: Vec<f64>,
    softplus_a: Vec<f64>,
    grad: Vec<f64>,
    a_new: Vec<f64>,
    softplus_new: Vec<f64>,
    grad_new: Vec<f64>,
    sigmoid_new: Vec<f32>,
    /// Scores d (GWG: exp weights too) of the current and the proposed state.
    scores: Vec<f64>,
    weights: Vec<f64>,
    flipped: Vec<usize>,
    counts: ProposalCounts,
    /// Proposals since the pre-activations were last recomputed from scratch.
    since_refresh: usize,
}

impl RbmChain {
    /// A chain of `sampler` on `model` from the visible state `v` (bits). The generator is
    /// passed to every [`RbmChain::step`] (so that a trainer can seed it per batch).
    pub fn new(model: &RbmF32, sampler: GradientSampler, v: Vec<u8>) -> Result<Self> {
        sampler.check()?;
        let (nv, nh) = (model.n_visible, model.n_hidden);
        if v.len() != nv {
            return Err(Error::SizeMismatch(format!(
                "initial state has {} visible units, the RBM {nv}",
                v.len()
            )));
        }
        let mut chain = RbmChain {
            sampler,
            v,
            a: vec![0.0; nh],
            softplus_a: vec![0.0; nh],
            grad: vec![0.0; nv],
            a_new: vec![0.0; nh],
            softplus_new: vec![0.0; nh],
            grad_new: vec![0.0; nv],
            sigmoid_new: vec![0.0; nh],
            scores: vec![0.0; nv],
            weights: vec![0.0; nv],
            flipped: Vec::with_capacity(nv),
            counts: ProposalCounts::default(),
            since_refresh: 0,
        };
        chain.refresh(model);
        Ok(chain)
    }

    /// The visible state (bits).
    pub fn visible(&self) -> &[u8] {
        &self.v
    }

    /// The proposal counts so far.
    pub fn counts(&self) -> ProposalCounts {
        self.counts
    }

    /// Moves the chain to the visible state `v` (entries 0.0 or 1.0) of `model` (whose
    /// parameters may have changed since the last step, as in training), recomputing its
    /// activations and gradient. Allocates nothing.
    pub fn reset(&mut self, model: &RbmF32, v: &[f32]) {
        for (b, &x) in self.v.iter_mut().zip(v) {
            *b = (x > 0.5) as u8;
        }
        self.refresh(model);
    }

    /// Recomputes a, softplus(a) and the gradient of the current state from scratch (bounds
    /// the rounding drift of the incremental updates; done once per n_visible proposals).
    fn refresh(&mut self, model: &RbmF32) {
        let (nv, nh) = (model.n_visible, model.n_hidden);
        self.a_new
            .iter_mut()
            .zip(&model.hidden_bias)
            .for_each(|(a, &c)| *a = c as f64);
        for i in 0..nv {
            if self.v[i] == 1 {
                let row = &model.weights[i * nh..(i + 1) * nh];
                for (a, &w) in self.a_new.iter_mut().zip(row) {
                    *a += w as f64;
                }
            }
        }
        self.finish_proposal(model);
        std::mem::swap(&mut self.a, &mut self.a_new);
        std::mem::swap(&mut self.softplus_a, &mut self.softplus_new);
        std::mem::swap(&mut self.grad, &mut self.grad_new);
        self.since_refresh = 0;
    }

    /// From `a_new`: `softplus_new`, the sigmoids and `grad_new` = b + W sigmoid(a_new); returns
    /// sum_j softplus(a_new_j) - softplus(a_j).
    fn finish_proposal(&mut self, model: &RbmF32) -> f64 {
        let nh = model.n_hidden;
        let mut change = 0.0;
        for j in 0..nh {
            let x = self.a_new[j];
            let sp = softplus(x);
            self.softplus_new[j] = sp;
            self.sigmoid_new[j] = (x - sp).exp() as f32;
            change += sp - self.softplus_a[j];
        }
        gradient_rows(model, &self.sigmoid_new, &mut self.grad_new);
        change
    }

    /// Scores d_i = (1 - 2 v_i) g_i of the state `v` with gradient `grad` into `scores`.
    fn fill_scores(scores: &mut [f64], v: &[u8], grad: &[f64]) {
        for ((d, &x), &g) in scores.iter_mut().zip(v).zip(grad) {
            *d = if x == 1 { -g } else { g };
        }
    }

    /// a_new = a + sum over flipped i of (1 - 2 v_i) W_i (v before the flips).
    fn propose_activations(&mut self, model: &RbmF32) -> f64 {
        let nh = model.n_hidden;
        self.a_new.copy_from_slice(&self.a);
        let mut bias_change = 0.0;
        for &i in &self.flipped {
            let sign = if self.v[i] == 1 { -1.0 } else { 1.0 };
            bias_change += sign * model.visible_bias[i] as f64;
            let row = &model.weights[i * nh..(i + 1) * nh];
            for (a, &w) in self.a_new.iter_mut().zip(row) {
                *a += sign * w as f64;
            }
        }
        bias_change
    }

    fn accept(&mut self) {
        for &i in &self.flipped {
            self.v[i] ^= 1;
        }
        std::mem::swap(&mut self.a, &mut self.a_new);
        std::mem::swap(&mut self.softplus_a, &mut self.softplus_new);
        std::mem::swap(&mut self.grad, &mut self.grad_new);
    }

    /// One proposal drawing from `rng`; returns the number of bits flipped (0 when rejected).
    pub fn step(&mut self, model: &RbmF32, rng: &mut EbmRng) -> u64 {
        let flips = match self.sampler {
            GradientSampler::Gwg => self.gwg_step(model, rng),
            GradientSampler::Dula { step_size } => self.langevin_step(model, rng, step_size, false),
            GradientSampler::Dmala { step_size } => self.langevin_step(model, rng, step_size, true),
        };
        self.counts.proposals += 1;
        if flips > 0 {
            self.counts.accepted += 1;
            self.counts.bits_flipped += flips;
        }
        self.since_refresh += 1;
        if self.since_refresh >= model.n_visible {
            self.refresh(model);
        }
        flips
    }

    /// ln sum_i exp(d_i / 2) of `scores`, with `weights` = exp(d_i / 2 - max); (max, sum).
    fn softmax(scores: &[f64], weights: &mut [f64]) -> (f64, f64) {
        let max = scores
            .iter()
            .fold(f64::NEG_INFINITY, |m, &d| m.max(0.5 * d));
        let mut sum = 0.0;
        for (w, &d) in weights.iter_mut().zip(scores) {
            *w = (0.5 * d - max).exp();
            sum += *w;
        }
        (max, sum)
    }

    fn gwg_step(&mut self, model: &RbmF32, rng: &mut EbmRng) -> u64 {
        Self::fill_scores(&mut self.scores, &self.v, &self.grad);
        let (max, sum) = Self::softmax(&self.scores, &mut self.weights);
        let target = uniform_f64(rng) * sum;
        let mut acc = 0.0;
        let mut i = self.v.len() - 1;
        for (k, &w) in self.weights.iter().enumerate() {
            acc += w;
            if target < acc {
                i = k;
                break;
            }
        }
        let log_fwd = 0.5 * self.scores[i] - max - sum.ln();
        self.flipped.clear();
        self.flipped.push(i);
        let bias_change = self.propose_activations(model);
        let delta = bias_change + self.finish_proposal(model);
        // Scores of the reverse state: v with bit i flipped, gradient grad_new.
        self.v[i] ^= 1;
        Self::fill_scores(&mut self.scores, &self.v, &self.grad_new);
        self.v[i] ^= 1;
        let (max_rev, sum_rev) = Self::softmax(&self.scores, &mut self.weights);
        let log_rev = 0.5 * self.scores[i] - max_rev - sum_rev.ln();
        let log_accept = delta + log_rev - log_fwd;
        if log_accept >= 0.0 || uniform_f64(rng) < log_accept.exp() {
            self.accept();
            1
        } else {
            0
        }
    }

    fn langevin_step(
        &mut self,
        model: &RbmF32,
        rng: &mut EbmRng,
        step_size: f64,
        corrected: bool,
    ) -> u64 {
        let shift = 0.5 / step_size;
        Self::fill_scores(&mut self.scores, &self.v, &self.grad);
        self.flipped.clear();
        let mut log_fwd = 0.0;
        for (i, &d) in self.scores.iter().enumerate() {
            let z = 0.5 * d - shift;
            if uniform_f64(rng) < crate::logspace::sigmoid(z) {
                self.flipped.push(i);
                if corrected {
                    log_fwd -= softplus(-z);
                }
            } else if corrected {
                log_fwd -= softplus(z);
            }
        }
        if self.flipped.is_empty() {
            return 0;
        }
        let flips = self.flipped.len() as u64;
        let bias_change = self.propose_activations(model);
        let delta = bias_change + self.finish_proposal(model);
        if corrected {
            for &i in &self.flipped {
                self.v[i] ^= 1;
            }
            Self::fill_scores(&mut self.scores, &self.v, &self.grad_new);
            for &i in &self.flipped {
                self.v[i] ^= 1;
            }
            let mut log_rev = 0.0;
            let mut next = 0;
            for (i, &d) in self.scores.iter().enumerate() {
                let z = 0.5 * d - shift;
                if next < self.flipped.len() && self.flipped[next] == i {
                    log_rev -= softplus(-z);
                    next += 1;
                } else {
                    log_rev -= softplus(z);
                }
            }
            let log_accept = delta + log_rev - log_fwd;
            if !(log_accept >= 0.0 || uniform_f64(rng) < log_accept.exp()) {
                return 0;
            }
        }
        self.accept();
        flips
    }
}

/// grad_i = b_i + sum_j W_ij sigma_j for every visible unit: the matrix-vector product that
/// dominates an RBM proposal. On x86-64 with AVX2 the same code is compiled for 8-wide vectors
/// (chosen once per call); both copies add in the same order (16 accumulators, separate
/// multiply and add, no fused multiply-add), so results are bit-identical on every machine.
fn gradient_rows(model: &RbmF32, sigma: &[f32], grad: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { gradient_rows_avx2(model, sigma, grad) };
        return;
    }
    gradient_rows_portable(model, sigma, grad);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gradient_rows_avx2(model: &RbmF32, sigma: &[f32], grad: &mut [f64]) {
    gradient_rows_portable(model, sigma, grad);
}

#[inline(always)]
fn gradient_rows_portable(model: &RbmF32, sigma: &[f32], grad: &mut [f64]) {
    let nh = model.n_hidden;
    for (i, g) in grad.iter_mut().enumerate() {
        let row = &model.weights[i * nh..(i + 1) * nh];
        *g = model.visible_bias[i] as f64 + dot(row, sigma) as f64;
    }
}

/// sum_k a_k b_k in f32 with sixteen independent accumulators (vectorisable), then the tail.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// The outcome of [`sample_rbm_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct RbmGradientRun {
    /// The final visible states, one row per chain.
    pub samples: Dataset,
    /// Proposal counts of all chains.
    pub counts: ProposalCounts,
}

/// Runs `chains` chains of `sampler` on the visible units of `model` for `sweeps` sweeps each
/// (a sweep: n_visible GWG proposals, or one DULA/DMALA proposal), in parallel. Chain k draws
/// from `stream_for(seed, Purpose::GradientChain, k)`, first its start (P(v_i = 1) =
/// sigmoid(b_i), as block Gibbs starts). The observer may stop the run between sweeps.
pub fn sample_rbm_gradient(
    model: &RbmF32,
    sampler: GradientSampler,
    chains: usize,
    sweeps: usize,
    seed: u64,
    obs: &mut dyn Observer,
) -> Result<RbmGradientRun> {
    sampler.check()?;
    if chains == 0 {
        return Err(Error::param("chains", "must be at least 1"));
    }
    let nv = model.n_visible;
    let mut all: Vec<(RbmChain, EbmRng)> = (0..chains)
        .map(|k| {
            let mut rng = rng::stream_for(seed, rng::Purpose::GradientChain, k as u64);
            let v = model
                .visible_bias
                .iter()
                .map(|&b| (uniform_f64(&mut rng) < crate::logspace::sigmoid(b as f64)) as u8)
                .collect();
            Ok((RbmChain::new(model, sampler, v)?, rng))
        })
        .collect::<Result<_>>()?;
    let per_sweep = sampler.proposals_per_sweep(nv);
    for t in 0..sweeps {
        all.par_iter_mut().for_each(|(c, rng)| {
            for _ in 0..per_sweep {
                c.step(model, rng);
            }
        });
        crate::progress::report_or_interrupt(obs, t as u64 + 1, sweeps as u64)?;
    }
    let mut counts = ProposalCounts::default();
    let mut bits = Vec::with_capacity(chains * nv);
    for (c, _) in &all {
        counts.add(&c.counts);
        bits.extend_from_slice(&c.v);
    }
    Ok(RbmGradientRun {
        samples: Dataset::new(chains, nv, bits)?,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Rbm;

    fn small_mrf() -> PairwiseMrf {
        PairwiseMrf::new(
            vec![0.3, -0.2, 0.1, 0.5],
            &[
                (0, 1, 0.8),
                (1, 2, -0.6),
                (2, 3, 0.4),
                (0, 3, -0.3),
                (0, 2, 0.2),
            ],
        )
        .unwrap()
    }

    /// The incrementally kept scores equal freshly computed ones after many proposals of every
    /// sampler (up to rounding: the scores are recomputed from the model, never accumulated).
    #[test]
    fn kept_scores_match_the_model_after_many_proposals() {
        for sampler in [
            GradientSampler::Gwg,
            GradientSampler::Dula { step_size: 0.5 },
            GradientSampler::Dmala { step_size: 0.5 },
        ] {
            let m = small_mrf();
            let mut chain = ExactChain::new(
                m.clone(),
                sampler,
                0.9,
                vec![1, -1, 1, -1],
                rng::from_seed(3),
            )
            .unwrap()
            .general_path();
            for _ in 0..500 {
                chain.step();
                assert_eq!(chain.scores, exact_scores(&m, 0.9, &chain.s), "{sampler:?}");
                if sampler == GradientSampler::Gwg {
                    // The sum tree holds exp(d_i / 2) at its leaves and their sum at its root.
                    assert!(chain.leaves >= 4);
                    let sum: f64 = chain.scores.iter().map(|d| (0.5 * d).exp()).sum();
                    assert!((chain.tree[1] - sum).abs() < 1e-12 * sum);
                }
            }
            assert!(chain.counts().accepted > 0);
        }
    }

    /// A +-1 spin glass on a ring of 70 variables with fields in {-1, 0, 1}, quantised: the
    /// table path (with the sum tree for GWG, n > 64) keeps scores, class counts and the
    /// tree's total equal to freshly computed ones (up to rounding, 1e-12) after many
    /// proposals of every sampler.
    #[test]
    fn table_path_keeps_its_classes_consistent_with_the_model() {
        let n = 70;
        let fields: Vec<f64> = (0..n).map(|i| (i % 3) as f64 - 1.0).collect();
        let couplings: Vec<(usize, usize, f64)> = (0..n)
            .map(|i| (i, (i + 1) % n, if i % 4 == 0 { -1.0 } else { 1.0 }))
            .chain((0..n / 2).map(|i| (i, i + n / 2, 0.5)))
            .collect();
        let m = PairwiseMrf::new(fields, &couplings).unwrap();
        for sampler in [
            GradientSampler::Gwg,
            GradientSampler::Dula { step_size: 0.5 },
            GradientSampler::Dmala { step_size: 0.5 },
        ] {
            let start = (0..n).map(|i| if i % 3 == 0 { 1 } else { -1 }).collect();
            let mut chain =
                ExactChain::new(m.clone(), sampler, 0.7, start, rng::from_seed(4)).unwrap();
            assert!(chain.uses_score_table(), "{sampler:?}");
            for _ in 0..3000 {
                chain.step();
            }
            let exact = exact_scores(&m, 0.7, &chain.s);
            for (a, b) in chain.scores().iter().zip(&exact) {
                assert!((a - b).abs() < 1e-12, "{sampler:?}: {a} vs {b}");
            }
            let t = chain.table.as_ref().unwrap();
            let w: f64 = exact.iter().map(|d| (0.5 * d).exp()).sum();
            if let Some(a) = sampler.step_size() {
                // The kept thresholds (and their packed high pieces) are those of the scores.
                let th: Vec<u32> = (exact.iter())
                    .map(|d| flip_threshold(0.5 * d - 0.5 / a))
                    .collect();
                assert_eq!(t.var_threshold, th, "{sampler:?}");
                let mut packed = vec![0; n.div_ceil(4)];
                pack_high_pieces(&th, &mut packed);
                assert_eq!(t.packed_high, packed, "{sampler:?}");
            }
            if sampler == GradientSampler::Gwg {
                assert!((t.total() - w).abs() < 1e-12 * w, "{sampler:?}");
                assert_eq!(chain.leaves, 128);
                assert!((chain.tree[1] - w).abs() < 1e-12 * w);
            }
            assert!(chain.counts().accepted > 100, "{sampler:?}");
        }
    }

    /// Parameters that are integer multiples of one unit are recognised (with their integers);
    /// others, or keys beyond the table, are not.
    #[test]
    fn quantise_finds_the_common_unit() {
        let (q, ints) = quantise(&[0.2, 0.2, -0.4, 0.0]).unwrap();
        assert_eq!(q, 0.2);
        assert_eq!(ints, vec![1, 1, -2, 0]);
        let (q, ints) = quantise(&[1.0, 0.5, -1.5]).unwrap();
        assert_eq!((q, ints), (0.5, vec![2, 1, -3]));
        assert!(quantise(&[1.0, std::f64::consts::PI]).is_none());
        assert!(
            quantise(&[0.01, 1.0]).is_none(),
            "100 units is beyond the table"
        );
        let lattice = IsingLattice::new(5, 5, crate::model::Boundary::Periodic, 0.2, 0.2).unwrap();
        let c = ExactChain::new(
            lattice,
            GradientSampler::Gwg,
            1.0,
            vec![1; 25],
            rng::from_seed(1),
        )
        .unwrap();
        assert!(c.uses_score_table());
        assert_eq!(c.leaves, 0, "25 sites: the linear scan");
        // Keys s_i L_i in -5..=5 (L = S + 1 for J = h = q): 11 classes.
        assert_eq!(c.table.as_ref().unwrap().weight.len(), 11);
    }

    /// The RBM chain's kept gradient equals b + W sigmoid(c + W^T v) after many proposals, to
    /// f32 rounding (tolerance 1e-4 on gradients of size ~1).
    #[test]
    fn rbm_chain_gradient_matches_the_free_energy_gradient() {
        let rbm = Rbm::new(
            3,
            2,
            vec![0.5, -1.0, 0.25, 2.0, -0.7, 0.3],
            vec![0.1, -0.3, 0.2],
            vec![0.7, -0.2],
        )
        .unwrap();
        let model = RbmF32::from_rbm(&rbm);
        for sampler in [
            GradientSampler::Gwg,
            GradientSampler::Dmala { step_size: 0.3 },
        ] {
            let mut chain = RbmChain::new(&model, sampler, vec![1, 0, 1]).unwrap();
            let mut rng = rng::from_seed(5);
            for _ in 0..100 {
                chain.step(&model, &mut rng);
                let v: Vec<f64> = chain.v.iter().map(|&x| x as f64).collect();
                for i in 0..3 {
                    let mut g = rbm.visible_bias()[i];
                    for j in 0..2 {
                        let a = rbm.hidden_bias()[j]
                            + (0..3).map(|k| v[k] * rbm.weights()[k * 2 + j]).sum::<f64>();
                        g += rbm.weights()[i * 2 + j] * crate::logspace::sigmoid(a);
                    }
                    assert!((chain.grad[i] - g).abs() < 1e-4, "{sampler:?} {i}");
                }
            }
        }
    }

    /// A generator that replays given 64-bit words (to drive [`draw_flips`] through every
    /// outcome).
    #[derive(Clone)]
    struct Scripted {
        words: Vec<u64>,
        next: usize,
    }

    impl rand::TryRng for Scripted {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
            unreachable!("draw_flips draws 64-bit words")
        }
        fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
            let w = self.words[self.next];
            self.next += 1;
            Ok(w)
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> std::result::Result<(), Self::Error> {
            unreachable!("draw_flips draws 64-bit words")
        }
    }

    /// `draw_flips` flips a bit of threshold t with probability exactly t / 2^32: for every
    /// position of the bit in its word (the 16-bit piece it reads) and thresholds at the edges
    /// of the pieces, all 2^16 values of its high piece and, where that equals t / 2^16, all
    /// 2^16 values of the low piece of the extra word are run through the function, and the
    /// number of flipping (high, low) pairs is t. Words consumed: one per four bits, plus one
    /// per tie. A second check draws 150 bits (three groups) with random thresholds and words
    /// and compares with a plain bit-by-bit reading of the same words.
    #[test]
    fn draw_flips_flips_with_probability_exactly_t_over_2_32() {
        let thresholds = [
            1u32,
            2,
            0xffff,
            0x1_0000,
            0x1_0001,
            0x1234_5678,
            0x8000_0000,
            0xffff_0000,
            u32::MAX,
        ];
        for &t in &thresholds {
            for (len, pos) in [(4, 0), (4, 1), (4, 3), (7, 6), (2, 1)] {
                // Other bits never flip (threshold 1, their pieces all ones) and never tie.
                let mut th = vec![1u32; len];
                th[pos] = t;
                let mut out = vec![0u32; len];
                let mut flips = 0u64;
                for high in 0..=0xffffu64 {
                    let word_of = |first: usize| -> u64 {
                        let mut w = u64::MAX;
                        if first / 4 == pos / 4 {
                            w &= !(0xffff << (16 * (pos % 4)));
                            w |= high << (16 * (pos % 4));
                        }
                        w
                    };
                    let words: Vec<u64> = (0..len.div_ceil(4)).map(|c| word_of(4 * c)).collect();
                    let ties = high == (t >> 16) as u64;
                    let lows = if ties { 0..=0xffffu64 } else { 0..=0 };
                    for low in lows {
                        let mut script = words.clone();
                        if ties {
                            // The tie draws its extra word after the group's words.
                            script.push(0xabcd_0000_0000_0000 | low);
                        }
                        let mut rng = Scripted {
                            words: script.clone(),
                            next: 0,
                        };
                        let m = draw_flips(&mut rng, &th, &mut out);
                        assert_eq!(rng.next, script.len(), "t {t:#x} at {pos} of {len}");
                        assert!(m <= 1 && (m == 0 || out[0] == pos as u32));
                        // Without a tie the low piece is never drawn: all 2^16 values of it
                        // give this outcome.
                        flips += m as u64 * if ties { 1 } else { 1 << 16 };
                    }
                }
                assert_eq!(flips, t as u64, "t {t:#x} at {pos} of {len}");
            }
        }
        // Many groups: a plain reading of the same words, bit by bit. Every fifth bit is given
        // a threshold whose high piece ties with its word's piece.
        let mut source = rng::from_seed(77);
        let n: usize = 150;
        let groups = n.div_ceil(64);
        let words: Vec<u64> = (0..n.div_ceil(4) + n).map(|_| source.next_u64()).collect();
        let mut th: Vec<u32> = (0..n).map(|_| source.next_u64() as u32).collect();
        let mut next_word = 0;
        let mut expected = Vec::new();
        for g in 0..groups {
            let bits = (g * 64..n.min(g * 64 + 64)).collect::<Vec<_>>();
            let first = next_word;
            next_word += bits.len().div_ceil(4);
            let mut ties = Vec::new();
            for &i in &bits {
                let b = i - g * 64;
                let high = (words[first + b / 4] >> (16 * (b % 4))) as u32 & 0xffff;
                if i % 5 == 0 {
                    th[i] = high << 16 | (th[i] & 0xffff);
                }
                if high < th[i] >> 16 {
                    expected.push(i as u32);
                } else if high == th[i] >> 16 {
                    ties.push(i);
                }
            }
            for i in ties {
                let low = words[next_word] as u32 & 0xffff;
                next_word += 1;
                if low < (th[i] & 0xffff) {
                    expected.push(i as u32);
                }
            }
            expected.sort_unstable();
        }
        let mut rng = Scripted { words, next: 0 };
        let mut out = vec![0u32; n];
        let m = draw_flips(&mut rng, &th, &mut out);
        assert_eq!(&out[..m], &expected[..]);
        assert_eq!(rng.next, next_word);
        assert!(m > 10 && m < 140);
        // The thresholds: sigmoid(z) 2^32 rounded, both outcomes kept possible.
        assert_eq!(flip_threshold(0.0), 1 << 31);
        assert_eq!(flip_threshold(-1e6), 1);
        assert_eq!(flip_threshold(f64::NEG_INFINITY), 1);
        assert_eq!(flip_threshold(1e6), u32::MAX);
        assert_eq!(flip_threshold(f64::NAN), 1);
        let t = flip_threshold(-2.5);
        let p = crate::logspace::sigmoid(-2.5);
        assert!((t as f64 / PROBABILITY_ONE - p).abs() <= 0.5 / PROBABILITY_ONE);
        assert_eq!(log_flip_probability(1 << 31), 0.5f64.ln());
        assert_eq!(log_stay_probability(3 << 30), 0.25f64.ln());
    }

    /// The probabilities in DMALA's Metropolis-Hastings ratio are exactly the ones the flips are
    /// drawn with, on both paths: from every state x of a 4-variable model and for every
    /// nonempty set of flips, the chain's log ratio (`apply_table_move` on a quantised pairwise
    /// model, `apply_general_move` on a factor graph and on the same pairwise model) equals
    /// ln p(y) - ln p(x) + ln q(x | y) - ln q(y | x) with q the product over all four bits of
    /// t_i / 2^32 or 1 - t_i / 2^32, t_i the thresholds the chain draws from at x (kept in its
    /// arrays, read before the move) and at y (read after it), to 1e-12 (rounding of the sums).
    /// The thresholds also equal `flip_threshold` of the exact scores, so the chain draws from
    /// the proposal `exact_kernel` enumerates.
    #[test]
    fn dmala_ratio_uses_exactly_the_drawing_probabilities() {
        let pairwise = PairwiseMrf::new(
            vec![0.5, -0.25, 0.0, 0.75],
            &[
                (0, 1, 1.0),
                (1, 2, -0.5),
                (2, 3, 0.75),
                (0, 3, -0.25),
                (0, 2, 0.5),
            ],
        )
        .unwrap();
        let graph = FactorGraph::new(
            4,
            vec![
                crate::model::Factor::new(vec![0, 1], vec![2.0, 0.5, 0.7, 1.5]).unwrap(),
                crate::model::Factor::new(
                    vec![1, 2, 3],
                    vec![1.0, 3.0, 0.2, 1.1, 0.6, 2.5, 1.7, 0.4],
                )
                .unwrap(),
                crate::model::Factor::new(vec![0, 2], vec![1.4, 0.6, 0.9, 2.2]).unwrap(),
            ],
        )
        .unwrap();
        let beta = 0.9;
        let spins = |x: usize| -> Vec<Spin> {
            (0..4)
                .map(|i| if x >> i & 1 == 1 { 1 } else { -1 })
                .collect()
        };
        // ln q(y | x) from the thresholds the chain holds and the flips.
        let log_q = |th: &[u32], mask: usize| -> f64 {
            (0..4)
                .map(|i| {
                    if mask >> i & 1 == 1 {
                        log_flip_probability(th[i])
                    } else {
                        log_stay_probability(th[i])
                    }
                })
                .sum()
        };
        fn check<M: LocalModel>(
            name: &str,
            model: &M,
            beta: f64,
            table: bool,
            spins: &dyn Fn(usize) -> Vec<Spin>,
            log_q: &dyn Fn(&[u32], usize) -> f64,
        ) {
            for step_size in [0.1, 0.4, 3.0] {
                let sampler = GradientSampler::Dmala { step_size };
                let shift = 0.5 / step_size;
                for x in 0..16 {
                    for mask in 1..16usize {
                        let c = ExactChain::new(
                            model.clone(),
                            sampler,
                            beta,
                            spins(x),
                            rng::from_seed(1),
                        )
                        .unwrap();
                        let mut c = if table { c } else { c.general_path() };
                        assert_eq!(c.uses_score_table(), table, "{name}");
                        let thresholds = |c: &ExactChain<M>| -> Vec<u32> {
                            match &c.table {
                                Some(t) => t.var_threshold.clone(),
                                None => (c.scores.iter())
                                    .map(|d| flip_threshold(0.5 * d - shift))
                                    .collect(),
                            }
                        };
                        let before = thresholds(&c);
                        let exact: Vec<u32> = exact_scores(model, beta, &spins(x))
                            .iter()
                            .map(|d| flip_threshold(0.5 * d - shift))
                            .collect();
                        assert_eq!(before, exact, "{name} x {x}");
                        let m = (0..4).filter(|i| mask >> i & 1 == 1).count();
                        let mut k = 0;
                        for i in 0..4u32 {
                            if mask >> i & 1 == 1 {
                                c.drawn[k] = i;
                                k += 1;
                            }
                        }
                        let ratio = if table {
                            c.apply_table_move(m, true)
                        } else {
                            c.thresholds.copy_from_slice(&before);
                            c.flipped.clear();
                            c.flipped.extend(c.drawn[..m].iter().map(|&i| i as usize));
                            c.apply_general_move(shift, true).expect("positive state")
                        };
                        let y = x ^ mask;
                        assert_eq!(c.spins(), &spins(y)[..], "{name}");
                        let after = thresholds(&c);
                        let expected = -beta * (model.energy(&spins(y)) - model.energy(&spins(x)))
                            + log_q(&after, mask)
                            - log_q(&before, mask);
                        assert!(
                            (ratio - expected).abs() < 1e-12,
                            "{name} alpha {step_size} x {x} mask {mask}: {ratio} vs {expected}"
                        );
                    }
                }
            }
        }
        check("pairwise, table", &pairwise, beta, true, &spins, &log_q);
        check("pairwise, general", &pairwise, beta, false, &spins, &log_q);
        check("factor graph, general", &graph, beta, false, &spins, &log_q);
    }

    #[test]
    fn step_sizes_must_be_positive_and_finite() {
        assert!(GradientSampler::Dula { step_size: 0.0 }.check().is_err());
        assert!(
            GradientSampler::Dmala {
                step_size: f64::NAN
            }
            .check()
            .is_err()
        );
        assert!(GradientSampler::Dmala { step_size: 0.1 }.check().is_ok());
        assert!(GradientSampler::Gwg.check().is_ok());
    }
}
