//! Composite models over binary visible units: products, mixtures, negations and tempered
//! versions of RBMs and factor graphs, nested to any depth.
//!
//! Every node has a free energy F(v) over the same n visible bits, p(v) = exp(-F(v)) / Z:
//!
//! * a leaf RBM: F(v) = -b^T v - sum_j softplus(c_j + (v^T W)_j); a leaf factor graph:
//!   F(x) = -sum_f ln phi_f(x_f);
//! * product (AND, a product of experts): F = sum_k F_k, p ∝ prod_k p_k. The product of RBMs
//!   over the same visible units is itself an RBM ([`product_rbm`]: hidden layers concatenated,
//!   visible biases added), so products of RBMs never need this node;
//! * mixture (OR): p = sum_k w_k p_k with weights w_k > 0 summing to 1. This needs each
//!   component's ln Z_k; with the stored values ln Ẑ_k the node's free energy is
//!   F(v) = -ln sum_k w_k exp(-F_k(v) - ln Ẑ_k). Its normaliser is Z = sum_k w_k Z_k / Ẑ_k: exactly
//!   1 when every ln Ẑ_k is exact, and within the interval that the AIS spreads of the ln Ẑ_k give
//!   otherwise (see [`crate::infer::composite::log_partition`]);
//! * negation (A AND NOT B): F = F_A - alpha F_B, p ∝ p_A p_B^(-alpha), alpha > 0. On a finite
//!   state space every such p is normalisable as long as p_B > 0 everywhere (always so for RBMs;
//!   a factor graph with a zero table entry cannot be negated);
//! * temperature T > 0: F / T, p ∝ p_inner^(1/T). For an RBM this is again an RBM with every
//!   parameter divided by T ([`tempered_rbm`]).
//!
//! Free energies are evaluated without allocation over any view of the visible units (bits,
//! spins, the bits of an integer), so the same code serves scoring, the enumeration of ln Z
//! ([`crate::infer::composite`]) and the single-site samplers ([`crate::sample::composite`]):
//! a [`Composite`] is an [`EnergyModel`] over spins with E(s) = F(bits of s), whose
//! flip differences come from the free energies of the two values of the flipped unit.

use super::{EnergyModel, FactorGraph, FreeEnergyModel, Rbm, Spin};
use crate::error::{Error, Result};
use crate::logspace::{LogSumExp, softplus};

/// How far the weights of a mixture may be from summing to 1 (they are then rescaled to sum to
/// exactly 1).
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// The deepest nesting accepted (a guard against runaway recursion).
pub const MAX_DEPTH: usize = 32;

/// How a ln Z was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogZMethod {
    /// Exact (enumeration, or the closed form of a mixture of exactly normalised parts).
    Exact,
    /// Annealed importance sampling, or derived from AIS estimates: `low..high` is its spread.
    Ais,
}

impl LogZMethod {
    /// `"exact"` or `"ais"`.
    pub fn name(self) -> &'static str {
        match self {
            LogZMethod::Exact => "exact",
            LogZMethod::Ais => "ais",
        }
    }
}

/// A ln Z with its provenance. For exact values `low == value == high`; for AIS `low..high` is
/// ln(mean ± 3 standard errors) of the importance weights (`low` may be -inf when that interval
/// reaches 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogZ {
    /// The estimate.
    pub value: f64,
    /// Lower end of the spread.
    pub low: f64,
    /// Upper end of the spread.
    pub high: f64,
    /// How it was obtained.
    pub method: LogZMethod,
    /// AIS settings (annealing steps, runs) when AIS was used directly.
    pub ais: Option<(usize, usize)>,
    /// Effective sample size of the AIS weights when AIS was used directly and it is known
    /// (see `crate::infer::ais::effective_sample_size`).
    pub ais_ess: Option<f64>,
    /// True when an AIS estimate behind this value is flagged unreliable (its effective sample
    /// size is below `crate::infer::ais::ess_threshold`; for a mixture, any part's).
    pub unreliable: bool,
}

impl LogZ {
    /// An exact value.
    pub fn exact(value: f64) -> LogZ {
        LogZ {
            value,
            low: value,
            high: value,
            method: LogZMethod::Exact,
            ais: None,
            ais_ess: None,
            unreliable: false,
        }
    }

    /// Checks that the figures are ordered, the value finite and the spread not NaN.
    pub fn validate(&self, what: &str) -> Result<()> {
        let ok = self.value.is_finite()
            && !self.low.is_nan()
            && self.high.is_finite()
            && self.low <= self.value
            && self.value <= self.high;
        if !ok {
            return Err(Error::param(
                what,
                format!(
                    "ln Z = {} with spread {} .. {}: expected a finite value inside its spread",
                    self.value, self.low, self.high
                ),
            ));
        }
        if self.method == LogZMethod::Exact && (self.low != self.value || self.high != self.value) {
            return Err(Error::param(
                what,
                "an exact ln Z has no spread (low and high must equal the value)",
            ));
        }
        Ok(())
    }
}

/// A mixture node: components, their weights and stored ln Z's.
#[derive(Debug, Clone)]
pub struct Mixture {
    components: Vec<Composite>,
    log_weights: Vec<f64>,
    log_z: Vec<LogZ>,
}

impl Mixture {
    /// The components.
    pub fn components(&self) -> &[Composite] {
        &self.components
    }
    /// The weights w_k (summing to 1).
    pub fn weights(&self) -> Vec<f64> {
        self.log_weights.iter().map(|w| w.exp()).collect()
    }
    /// The stored ln Z_k of the components.
    pub fn log_z(&self) -> &[LogZ] {
        &self.log_z
    }
    /// The ln w_k.
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }
}

/// A composite model (see the module docs for each node's free energy).
#[derive(Debug, Clone)]
pub enum Composite {
    /// A binary RBM.
    Rbm(Rbm),
    /// A factor graph over bits.
    Factors(FactorGraph),
    /// F = sum_k F_k (p ∝ prod_k p_k).
    Product(Vec<Composite>),
    /// p = sum_k w_k p_k.
    Mixture(Mixture),
    /// F = F_base - alpha F_negated.
    Negation {
        /// The model kept (A).
        base: Box<Composite>,
        /// The model negated (B).
        negated: Box<Composite>,
        /// The exponent alpha > 0 of p_B^(-alpha).
        alpha: f64,
    },
    /// F = F_inner / temperature.
    Tempered {
        /// The model tempered.
        inner: Box<Composite>,
        /// T > 0.
        temperature: f64,
    },
}

/// The product of RBMs over the same visible units as one RBM: W = [W_1 | W_2 | ...] (hidden
/// layers concatenated), b = sum_k b_k, c = [c_1, c_2, ...]. Summing out each expert's hidden
/// units separately gives F = sum_k F_k, so p ∝ prod_k p_k exactly.
pub fn product_rbm(parts: &[&Rbm]) -> Result<Rbm> {
    let Some(first) = parts.first() else {
        return Err(Error::param("product", "needs at least one model"));
    };
    let nv = first.n_visible();
    if let Some((k, r)) = parts.iter().enumerate().find(|(_, r)| r.n_visible() != nv) {
        return Err(Error::SizeMismatch(format!(
            "product: model {k} has {} visible units, model 0 has {nv}",
            r.n_visible()
        )));
    }
    let nh: usize = parts.iter().map(|r| r.n_hidden()).sum();
    let mut weights = vec![0.0; nv * nh];
    let mut visible_bias = vec![0.0; nv];
    let mut hidden_bias = Vec::with_capacity(nh);
    let mut offset = 0;
    for r in parts {
        let h = r.n_hidden();
        for i in 0..nv {
            weights[i * nh + offset..i * nh + offset + h]
                .copy_from_slice(&r.weights()[i * h..(i + 1) * h]);
        }
        for (b, &x) in visible_bias.iter_mut().zip(r.visible_bias()) {
            *b += x;
        }
        hidden_bias.extend_from_slice(r.hidden_bias());
        offset += h;
    }
    Rbm::new(nv, nh, weights, visible_bias, hidden_bias)
}

/// The RBM with p(v, h) ∝ exp(-E(v, h) / T): every parameter divided by T. Its visible marginal
/// is not p(v)^(1/T) in general, so this is used only where the product is taken over the joint
/// (the tempered product of RBMs written by `ebm compose product --temperature`).
pub fn tempered_rbm(rbm: &Rbm, temperature: f64) -> Result<Rbm> {
    check_temperature(temperature)?;
    let scale = |xs: &[f64]| xs.iter().map(|x| x / temperature).collect::<Vec<_>>();
    Rbm::new(
        rbm.n_visible(),
        rbm.n_hidden(),
        scale(rbm.weights()),
        scale(rbm.visible_bias()),
        scale(rbm.hidden_bias()),
    )
}

fn check_temperature(t: f64) -> Result<()> {
    if !(t.is_finite() && t > 0.0) {
        return Err(Error::param(
            "temperature",
            format!("must be a positive number, got {t}"),
        ));
    }
    Ok(())
}

/// Checks mixture weights: every weight finite and positive, their sum 1 within
/// [`WEIGHT_SUM_TOLERANCE`]. Returns them rescaled to sum to exactly 1.
pub fn check_weights(weights: &[f64], components: usize) -> Result<Vec<f64>> {
    if weights.len() != components {
        return Err(Error::param(
            "weights",
            format!(
                "{} weight(s) for {components} component(s); give one weight per component",
                weights.len()
            ),
        ));
    }
    if let Some((k, w)) = weights
        .iter()
        .enumerate()
        .find(|(_, w)| !(w.is_finite() && **w > 0.0))
    {
        return Err(Error::param(
            "weights",
            format!("weight {k} is {w}: every weight must be a positive number"),
        ));
    }
    let sum: f64 = weights.iter().sum();
    if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
        return Err(Error::param(
            "weights",
            format!("the weights sum to {sum}, not 1 (tolerance {WEIGHT_SUM_TOLERANCE:e})"),
        ));
    }
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// A read-only view of the visible units as bits.
trait Units {
    fn on(&self, i: usize) -> bool;
}

impl Units for [u8] {
    #[inline]
    fn on(&self, i: usize) -> bool {
        self[i] != 0
    }
}

/// Spins: +1 is the bit 1.
struct SpinUnits<'a>(&'a [Spin]);

impl Units for SpinUnits<'_> {
    #[inline]
    fn on(&self, i: usize) -> bool {
        self.0[i] > 0
    }
}

/// The bits of an integer: unit i is bit i (the enumeration order).
struct IndexUnits(u64);

impl Units for IndexUnits {
    #[inline]
    fn on(&self, i: usize) -> bool {
        self.0 >> i & 1 == 1
    }
}

/// `base` with unit `index` set to `value`.
struct WithUnit<'a, U: Units + ?Sized> {
    base: &'a U,
    index: usize,
    value: bool,
}

impl<U: Units + ?Sized> Units for WithUnit<'_, U> {
    #[inline]
    fn on(&self, i: usize) -> bool {
        if i == self.index {
            self.value
        } else {
            self.base.on(i)
        }
    }
}

/// Hidden units per block of the free-energy loops: their activations live in a stack array,
/// filled by adding the (contiguous) rows of W of the units that are on.
const HIDDEN_BLOCK: usize = 64;

fn rbm_free_energy<U: Units + ?Sized>(rbm: &Rbm, u: &U) -> f64 {
    let (nv, nh) = (rbm.n_visible(), rbm.n_hidden());
    let w = rbm.weights();
    let mut f = 0.0;
    for (i, &b) in rbm.visible_bias().iter().enumerate() {
        if u.on(i) {
            f -= b;
        }
    }
    let mut act = [0.0f64; HIDDEN_BLOCK];
    for (block, c) in rbm.hidden_bias().chunks(HIDDEN_BLOCK).enumerate() {
        let j0 = block * HIDDEN_BLOCK;
        let act = &mut act[..c.len()];
        act.copy_from_slice(c);
        for i in 0..nv {
            if u.on(i) {
                let row = &w[i * nh + j0..i * nh + j0 + c.len()];
                for (a, &x) in act.iter_mut().zip(row) {
                    *a += x;
                }
            }
        }
        f -= act.iter().map(|&a| softplus(a)).sum::<f64>();
    }
    f
}

/// (F with unit `i` = 0, F with unit `i` = 1) of an RBM in one pass over W.
fn rbm_free_energy_pair<U: Units + ?Sized>(rbm: &Rbm, u: &U, index: usize) -> (f64, f64) {
    let (nv, nh) = (rbm.n_visible(), rbm.n_hidden());
    let w = rbm.weights();
    let mut f = 0.0;
    for (i, &b) in rbm.visible_bias().iter().enumerate() {
        if i != index && u.on(i) {
            f -= b;
        }
    }
    let (mut f0, mut f1) = (f, f - rbm.visible_bias()[index]);
    let mut act = [0.0f64; HIDDEN_BLOCK];
    for (block, c) in rbm.hidden_bias().chunks(HIDDEN_BLOCK).enumerate() {
        let j0 = block * HIDDEN_BLOCK;
        let act = &mut act[..c.len()];
        act.copy_from_slice(c);
        for i in 0..nv {
            if i != index && u.on(i) {
                let row = &w[i * nh + j0..i * nh + j0 + c.len()];
                for (a, &x) in act.iter_mut().zip(row) {
                    *a += x;
                }
            }
        }
        let own = &w[index * nh + j0..index * nh + j0 + c.len()];
        for (&a, &x) in act.iter().zip(own) {
            f0 -= softplus(a);
            f1 -= softplus(a + x);
        }
    }
    (f0, f1)
}

fn factor_free_energy<U: Units + ?Sized>(graph: &FactorGraph, u: &U) -> f64 {
    let mut f = 0.0;
    for factor in graph.factors() {
        let index = factor
            .scope()
            .iter()
            .fold(0usize, |acc, &v| acc << 1 | u.on(v) as usize);
        f -= factor.log_table()[index];
    }
    f
}

impl Composite {
    /// Wraps a model loaded from a file: RBMs and factor graphs are leaves.
    pub fn mixture(components: Vec<Composite>, weights: &[f64], log_z: Vec<LogZ>) -> Result<Self> {
        let weights = check_weights(weights, components.len())?;
        check_same_size(&components, "mixture")?;
        if log_z.len() != components.len() {
            return Err(Error::param(
                "log_z",
                format!(
                    "{} stored ln Z for {} components",
                    log_z.len(),
                    components.len()
                ),
            ));
        }
        for (k, z) in log_z.iter().enumerate() {
            z.validate(&format!("ln Z of component {k}"))?;
        }
        Ok(Composite::Mixture(Mixture {
            components,
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            log_z,
        }))
    }

    /// p ∝ p_base p_negated^(-alpha); refused when `negated` can give a state probability 0.
    pub fn negation(base: Composite, negated: Composite, alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(Error::param(
                "alpha",
                format!("must be a positive number, got {alpha}"),
            ));
        }
        if base.num_visible() != negated.num_visible() {
            return Err(Error::SizeMismatch(format!(
                "negation: the negated model has {} visible units, the base {}",
                negated.num_visible(),
                base.num_visible()
            )));
        }
        if base.depth().max(negated.depth()) >= MAX_DEPTH {
            return Err(Error::param(
                "negation",
                format!("nested too deep; the limit is {MAX_DEPTH}"),
            ));
        }
        if negated.may_vanish() {
            return Err(Error::InvalidModel(
                "the negated model has states of probability 0 (a zero table entry), so \
                 p^(-alpha) is infinite there; only models positive everywhere can be negated"
                    .into(),
            ));
        }
        Ok(Composite::Negation {
            base: Box::new(base),
            negated: Box::new(negated),
            alpha,
        })
    }

    /// The product of `parts`; when every part is an RBM, the product RBM ([`product_rbm`]).
    pub fn product(parts: Vec<Composite>) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::param("product", "needs at least one model"));
        }
        check_same_size(&parts, "product")?;
        let rbms: Option<Vec<&Rbm>> = parts
            .iter()
            .map(|p| match p {
                Composite::Rbm(r) => Some(r),
                _ => None,
            })
            .collect();
        match rbms {
            Some(rbms) => Ok(Composite::Rbm(product_rbm(&rbms)?)),
            None => Ok(Composite::Product(parts)),
        }
    }

    /// p^(1/T); T = 1 returns the model unchanged.
    pub fn tempered(inner: Composite, temperature: f64) -> Result<Self> {
        check_temperature(temperature)?;
        if temperature == 1.0 {
            return Ok(inner);
        }
        Ok(Composite::Tempered {
            inner: Box::new(inner),
            temperature,
        })
    }

    /// For a mixture: the same mixture with every stored ln Z_k replaced by `pick(ln Z_k)` (its
    /// low or high end), marked exact. With ln Z_k within [low_k, high_k] for every k, the true
    /// ln p(v) = ln sum_k w_k exp(-F_k(v) - ln Z_k) of the mixture lies between -F(v) of the
    /// variant at the high ends and -F(v) of the variant at the low ends: the interval that an
    /// AIS-normalised mixture's log-likelihoods carry. `None` for other nodes.
    pub fn mixture_at(&self, pick: impl Fn(&LogZ) -> f64) -> Option<Composite> {
        match self {
            Composite::Mixture(m) => Some(Composite::Mixture(Mixture {
                components: m.components.clone(),
                log_weights: m.log_weights.clone(),
                log_z: m.log_z.iter().map(|z| LogZ::exact(pick(z))).collect(),
            })),
            _ => None,
        }
    }

    /// The RBM this composite is, if it is one (a leaf).
    pub fn as_rbm(&self) -> Option<&Rbm> {
        match self {
            Composite::Rbm(r) => Some(r),
            _ => None,
        }
    }

    /// The operation's name: `rbm`, `factors`, `product`, `mixture`, `negation`, `temperature`.
    pub fn operation(&self) -> &'static str {
        match self {
            Composite::Rbm(_) => "rbm",
            Composite::Factors(_) => "factors",
            Composite::Product(_) => "product",
            Composite::Mixture(_) => "mixture",
            Composite::Negation { .. } => "negation",
            Composite::Tempered { .. } => "temperature",
        }
    }

    /// Number of nodes on the longest path from this node to a leaf (a leaf has depth 0).
    pub fn depth(&self) -> usize {
        match self {
            Composite::Rbm(_) | Composite::Factors(_) => 0,
            Composite::Product(p) => 1 + p.iter().map(Composite::depth).max().unwrap_or(0),
            Composite::Mixture(m) => {
                1 + m.components.iter().map(Composite::depth).max().unwrap_or(0)
            }
            Composite::Negation { base, negated, .. } => 1 + base.depth().max(negated.depth()),
            Composite::Tempered { inner, .. } => 1 + inner.depth(),
        }
    }

    /// True when some state may have probability 0 (a factor graph with a zero entry inside).
    fn may_vanish(&self) -> bool {
        match self {
            Composite::Rbm(_) => false,
            Composite::Factors(g) => g.factors().iter().any(|f| f.table().contains(&0.0)),
            Composite::Product(p) => p.iter().any(Composite::may_vanish),
            // A mixture vanishes only where every component does.
            Composite::Mixture(m) => m.components.iter().all(Composite::may_vanish),
            Composite::Negation { base, .. } => base.may_vanish(),
            Composite::Tempered { inner, .. } => inner.may_vanish(),
        }
    }

    /// True when every stored ln Z inside (at any depth) is exact.
    pub fn stored_log_z_exact(&self) -> bool {
        match self {
            Composite::Rbm(_) | Composite::Factors(_) => true,
            Composite::Product(p) => p.iter().all(Composite::stored_log_z_exact),
            Composite::Mixture(m) => {
                m.log_z.iter().all(|z| z.method == LogZMethod::Exact)
                    && m.components.iter().all(Composite::stored_log_z_exact)
            }
            Composite::Negation { base, negated, .. } => {
                base.stored_log_z_exact() && negated.stored_log_z_exact()
            }
            Composite::Tempered { inner, .. } => inner.stored_log_z_exact(),
        }
    }

    fn free_energy_of<U: Units + ?Sized>(&self, u: &U) -> f64 {
        match self {
            Composite::Rbm(r) => rbm_free_energy(r, u),
            Composite::Factors(g) => factor_free_energy(g, u),
            Composite::Product(parts) => parts.iter().map(|p| p.free_energy_of(u)).sum(),
            Composite::Mixture(m) => {
                let mut acc = LogSumExp::new();
                for ((c, &lw), z) in m.components.iter().zip(&m.log_weights).zip(&m.log_z) {
                    acc.add(lw - z.value - c.free_energy_of(u));
                }
                -acc.value()
            }
            Composite::Negation {
                base,
                negated,
                alpha,
            } => base.free_energy_of(u) - alpha * negated.free_energy_of(u),
            Composite::Tempered { inner, temperature } => inner.free_energy_of(u) / temperature,
        }
    }

    /// (F with unit `i` = 0, F with unit `i` = 1), the rest as in `u`.
    fn free_energy_pair<U: Units + ?Sized>(&self, u: &U, i: usize) -> (f64, f64) {
        match self {
            Composite::Rbm(r) => rbm_free_energy_pair(r, u, i),
            Composite::Factors(g) => {
                let off = WithUnit {
                    base: u,
                    index: i,
                    value: false,
                };
                let on = WithUnit {
                    base: u,
                    index: i,
                    value: true,
                };
                (factor_free_energy(g, &off), factor_free_energy(g, &on))
            }
            Composite::Product(parts) => parts.iter().fold((0.0, 0.0), |(a, b), p| {
                let (x, y) = p.free_energy_pair(u, i);
                (a + x, b + y)
            }),
            Composite::Mixture(m) => {
                let (mut off, mut on) = (LogSumExp::new(), LogSumExp::new());
                for ((c, &lw), z) in m.components.iter().zip(&m.log_weights).zip(&m.log_z) {
                    let (f0, f1) = c.free_energy_pair(u, i);
                    off.add(lw - z.value - f0);
                    on.add(lw - z.value - f1);
                }
                (-off.value(), -on.value())
            }
            Composite::Negation {
                base,
                negated,
                alpha,
            } => {
                let (a0, a1) = base.free_energy_pair(u, i);
                let (b0, b1) = negated.free_energy_pair(u, i);
                (a0 - alpha * b0, a1 - alpha * b1)
            }
            Composite::Tempered { inner, temperature } => {
                let (f0, f1) = inner.free_energy_pair(u, i);
                (f0 / temperature, f1 / temperature)
            }
        }
    }

    /// F(v) of the state whose unit i is bit i of `x` (the order in which enumerations walk the
    /// states).
    pub fn free_energy_of_index(&self, x: u64) -> f64 {
        self.free_energy_of(&IndexUnits(x))
    }
}

fn check_same_size(parts: &[Composite], what: &str) -> Result<()> {
    let Some(first) = parts.first() else {
        return Err(Error::param(what, "needs at least one model"));
    };
    let n = first.num_visible();
    if let Some((k, p)) = parts.iter().enumerate().find(|(_, p)| p.num_visible() != n) {
        return Err(Error::SizeMismatch(format!(
            "{what}: model {k} has {} visible units, model 0 has {n}",
            p.num_visible()
        )));
    }
    if let Some(d) = parts.iter().map(Composite::depth).max()
        && d >= MAX_DEPTH
    {
        return Err(Error::param(
            what,
            format!("nested {d} levels deep; the limit is {MAX_DEPTH}"),
        ));
    }
    Ok(())
}

impl FreeEnergyModel for Composite {
    fn num_visible(&self) -> usize {
        match self {
            Composite::Rbm(r) => r.n_visible(),
            Composite::Factors(g) => g.num_vars(),
            Composite::Product(p) => p[0].num_visible(),
            Composite::Mixture(m) => m.components[0].num_visible(),
            Composite::Negation { base, .. } => base.num_visible(),
            Composite::Tempered { inner, .. } => inner.num_visible(),
        }
    }

    fn free_energy(&self, v: &[u8]) -> f64 {
        debug_assert_eq!(v.len(), self.num_visible());
        self.free_energy_of(v)
    }
}

/// Over spins (+1 = bit 1): E(s) = F(v), so beta = 1 samples p(v).
impl EnergyModel for Composite {
    fn num_vars(&self) -> usize {
        self.num_visible()
    }

    fn energy(&self, s: &[Spin]) -> f64 {
        self.free_energy_of(&SpinUnits(s))
    }

    fn flip_delta(&self, s: &[Spin], i: usize) -> f64 {
        let (f0, f1) = self.free_energy_pair(&SpinUnits(s), i);
        if s[i] > 0 { f0 - f1 } else { f1 - f0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbm(nv: usize, nh: usize, seed: u64) -> Rbm {
        let mut state = seed;
        let mut next = || {
            let x = crate::rng::splitmix64(&mut state);
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let w = (0..nv * nh).map(|_| next()).collect();
        let b = (0..nv).map(|_| next()).collect();
        let c = (0..nh).map(|_| next()).collect();
        Rbm::new(nv, nh, w, b, c).unwrap()
    }

    #[test]
    fn leaf_free_energy_matches_the_rbm() {
        let r = rbm(5, 3, 1);
        let c = Composite::Rbm(r.clone());
        for x in 0..32u64 {
            let v: Vec<u8> = (0..5).map(|i| (x >> i & 1) as u8).collect();
            assert!((c.free_energy(&v) - r.free_energy(&v)).abs() < 1e-12);
        }
    }

    #[test]
    fn flip_delta_is_the_difference_of_free_energies() {
        let a = Composite::Rbm(rbm(4, 3, 2));
        let b = Composite::Rbm(rbm(4, 2, 3));
        let mix = Composite::mixture(
            vec![a.clone(), b.clone()],
            &[0.3, 0.7],
            vec![LogZ::exact(1.0), LogZ::exact(2.0)],
        )
        .unwrap();
        let neg = Composite::negation(mix.clone(), b.clone(), 0.5).unwrap();
        let model = Composite::tempered(neg, 1.5).unwrap();
        for x in 0..16u64 {
            let s: Vec<Spin> = (0..4)
                .map(|i| if x >> i & 1 == 1 { 1 } else { -1 })
                .collect();
            for i in 0..4 {
                let mut t = s.clone();
                t[i] = -t[i];
                let want = model.energy(&t) - model.energy(&s);
                assert!((model.flip_delta(&s, i) - want).abs() < 1e-10, "{x} {i}");
            }
        }
    }

    #[test]
    fn product_of_rbms_is_an_rbm_with_summed_free_energies() {
        let (a, b) = (rbm(4, 3, 4), rbm(4, 2, 5));
        let p = product_rbm(&[&a, &b]).unwrap();
        assert_eq!(p.n_hidden(), 5);
        for x in 0..16u64 {
            let v: Vec<u8> = (0..4).map(|i| (x >> i & 1) as u8).collect();
            let want = a.free_energy(&v) + b.free_energy(&v);
            assert!((p.free_energy(&v) - want).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_weights_are_refused() {
        for (w, needle) in [
            (vec![0.5, -0.5], "positive"),
            (vec![0.5, 0.6], "sum to"),
            (vec![f64::NAN, 1.0], "positive"),
            (vec![1.0], "1 weight(s) for 2"),
        ] {
            let e = check_weights(&w, 2).unwrap_err().to_string();
            assert!(e.contains(needle), "{w:?}: {e}");
        }
    }
}
