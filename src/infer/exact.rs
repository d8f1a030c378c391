//! Exact enumeration of all 2^n states: ln Z, marginals and a brute-force MAP (the oracles that
//! every approximate method in `ebm` is tested against).
//!
//! # Order of the states and determinism
//! State number k (0 <= k < 2^n) is the Gray code g(k) = k ^ (k >> 1), bit i of g(k) being
//! variable i (bit 1 = spin +1). Consecutive states differ in one variable, number
//! `trailing_zeros(k)`, so the log-weight is updated in O(degree) per state. The range of k is cut
//! into fixed units of 2^[`UNIT_BITS`] states (independent of the number of threads); rayon sums
//! the units in parallel and the unit results are merged in unit order, so every result is
//! bit-identical for any `--threads`. Inside a unit, log-weights are buffered in chunks of
//! 2^[`CHUNK_BITS`] states; at the start of each chunk the log-weight is recomputed from scratch
//! (so round-off cannot drift), and each full chunk is reduced by a vectorised max-shifted
//! log-sum-exp.
//!
//! # Conventions
//! Pairwise and generic models: log-weight -beta E(s), spins in {-1, +1}. Factor graphs:
//! log-weight sum_f ln phi_f(x_f) over bits (zeros give -inf, which is carried without NaN).
//! Marginals are P(x_i = 1) = P(s_i = +1).
//!
//! # Shards
//! [`Shard`] `K/N` restricts the sum to the K-th of N equal contiguous parts of the range of k;
//! [`merge_shards`] combines the parts exactly (up to one rounding per part).

use rayon::prelude::*;

use super::kernel::{block_log_sum, exp_nonpositive, max_of};
use crate::error::{Error, Result};
use crate::logspace::LogSumExp;
use crate::model::{EnergyModel, FactorGraph, IsingLattice, PairwiseMrf, Spin};
use crate::progress::{Observer, Silent, report_or_interrupt};

/// log2 of the most states one run (a whole enumeration or one shard) may sum: 2^40 states
/// are days on two cores.
pub const MAX_ENUMERATED_VARS: usize = 40;
/// Most variables of any enumeration, sharded or not (state numbers are u64; 2^63 states).
pub const MAX_SHARDED_VARS: usize = 63;
/// log2 of the number of states in one parallel unit of work.
pub const UNIT_BITS: u32 = 20;
/// log2 of the number of states per buffered chunk (recomputed from scratch at its start).
pub const CHUNK_BITS: u32 = 11;

/// The K-th (0-based) of N equal contiguous parts of the enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, 0 <= index < count.
    pub index: u64,
    /// Number of parts, >= 1.
    pub count: u64,
}

impl Shard {
    /// The whole enumeration.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Checks 0 <= index < count.
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        super::shards::check_numbering(index, count)
    }

    /// The state range [start, end) of this shard out of `total` states.
    pub fn range(&self, total: u64) -> (u64, u64) {
        let t = total as u128;
        let start = t * self.index as u128 / self.count as u128;
        let end = t * (self.index as u128 + 1) / self.count as u128;
        (start as u64, end as u64)
    }
}

/// Options of an enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumerateOptions {
    /// Also compute P(x_i = 1) for every variable (costs O(CHUNK_BITS) more per state).
    pub marginals: bool,
    /// The part of the state space to sum ([`Shard::WHOLE`] for all of it).
    pub shard: Shard,
}

impl Default for EnumerateOptions {
    fn default() -> Self {
        EnumerateOptions {
            marginals: false,
            shard: Shard::WHOLE,
        }
    }
}

/// The result of an enumeration.
#[derive(Debug, Clone, PartialEq)]
pub struct Enumeration {
    /// ln of the sum of the weights of the enumerated states (ln Z for a whole run).
    pub log_sum: f64,
    /// P(x_i = 1) for every variable when asked for, normalised by this run's sum (so they are the
    /// exact marginals only for a whole run).
    pub marginals: Option<Vec<f64>>,
    /// Number of states summed.
    pub states: u64,
    /// The range [start, end) of state numbers (Gray-code ranks) summed.
    pub range: (u64, u64),
}

/// Incremental log-weight of a model along a Gray-code walk.
trait Walker: Clone + Send + Sync {
    /// Sets the state to the bits of `x` and returns its log-weight, computed from scratch.
    fn reset(&mut self, x: u64) -> f64;
    /// Flips variable `i` of the current state whose log-weight is `logw`; returns the new one.
    fn flip(&mut self, i: usize, logw: f64) -> f64;
}

/// A generic model through [`EnergyModel::flip_delta`].
struct GenericWalker<'a, M: EnergyModel + ?Sized> {
    model: &'a M,
    beta: f64,
    spins: Vec<Spin>,
}

impl<M: EnergyModel + ?Sized> Clone for GenericWalker<'_, M> {
    fn clone(&self) -> Self {
        GenericWalker {
            model: self.model,
            beta: self.beta,
            spins: self.spins.clone(),
        }
    }
}

impl<M: EnergyModel + ?Sized> Walker for GenericWalker<'_, M> {
    fn reset(&mut self, x: u64) -> f64 {
        for (i, s) in self.spins.iter_mut().enumerate() {
            *s = if x >> i & 1 == 1 { 1 } else { -1 };
        }
        self.log_weight_now()
    }
    #[inline]
    fn flip(&mut self, i: usize, logw: f64) -> f64 {
        let d = self.model.flip_delta(&self.spins, i);
        self.spins[i] = -self.spins[i];
        let next = logw - self.beta * d;
        // A state of infinite energy (a zero table entry) makes logw or the delta infinite, and
        // -inf - (-inf) is NaN: only finite updates are incremental, the rest are recomputed.
        if next.is_finite() {
            next
        } else {
            self.log_weight_now()
        }
    }
}

impl<M: EnergyModel + ?Sized> GenericWalker<'_, M> {
    /// -beta E(s) of the current state, computed from scratch; a state of energy +inf has
    /// weight 0 (log-weight -inf) for any beta >= 0, including beta = 0.
    fn log_weight_now(&self) -> f64 {
        let e = self.model.energy(&self.spins);
        if e == f64::INFINITY && self.beta >= 0.0 {
            f64::NEG_INFINITY
        } else {
            -self.beta * e
        }
    }
}

/// A pairwise model in CSR form with beta folded into the couplings and fields.
#[derive(Clone)]
struct PairwiseWalker {
    spins: Vec<f64>,
    fields: Vec<f64>,
    start: Vec<u32>,
    nbr: Vec<u32>,
    weight: Vec<f64>,
    edges: Vec<(usize, usize, f64)>,
    constant: f64,
}

impl PairwiseWalker {
    fn new(model: &PairwiseMrf, beta: f64) -> Self {
        let n = model.fields().len();
        let mut start = vec![0u32; n + 1];
        let mut nbr = Vec::new();
        let mut weight = Vec::new();
        for i in 0..n {
            let (ns, js) = model.neighbours(i);
            nbr.extend(ns.iter().map(|&j| j as u32));
            weight.extend(js.iter().map(|&w| beta * w));
            start[i + 1] = nbr.len() as u32;
        }
        PairwiseWalker {
            spins: vec![-1.0; n],
            fields: model.fields().iter().map(|&h| beta * h).collect(),
            start,
            nbr,
            weight,
            edges: model
                .edges()
                .iter()
                .map(|&(i, j, w)| (i, j, beta * w))
                .collect(),
            constant: -beta * model.constant(),
        }
    }
}

impl Walker for PairwiseWalker {
    fn reset(&mut self, x: u64) -> f64 {
        for (i, s) in self.spins.iter_mut().enumerate() {
            *s = if x >> i & 1 == 1 { 1.0 } else { -1.0 };
        }
        let s = &self.spins;
        let mut lw = self.constant;
        for (h, &si) in self.fields.iter().zip(s) {
            lw += h * si;
        }
        for &(i, j, w) in &self.edges {
            lw += w * s[i] * s[j];
        }
        lw
    }
    #[inline]
    fn flip(&mut self, i: usize, logw: f64) -> f64 {
        let (a, b) = (self.start[i] as usize, self.start[i + 1] as usize);
        let mut local = self.fields[i];
        for (&j, &w) in self.nbr[a..b].iter().zip(&self.weight[a..b]) {
            local += w * self.spins[j as usize];
        }
        let si = self.spins[i];
        self.spins[i] = -si;
        logw - 2.0 * si * local
    }
}

/// A factor graph: current table index of every factor, the sum of the finite log-entries and
/// the number of factors sitting on a zero entry.
#[derive(Clone)]
struct FactorWalker<'a> {
    graph: &'a FactorGraph,
    /// For each variable: (factor, bit mask of the variable in that factor's table index).
    touches: Vec<Vec<(u32, u32)>>,
    index: Vec<u32>,
    finite: f64,
    zeros: u32,
}

impl<'a> FactorWalker<'a> {
    fn new(graph: &'a FactorGraph) -> Self {
        let mut touches = vec![Vec::new(); graph.num_vars()];
        for (f, factor) in graph.factors().iter().enumerate() {
            let k = factor.arity();
            for (pos, &v) in factor.scope().iter().enumerate() {
                touches[v].push((f as u32, 1u32 << (k - 1 - pos)));
            }
        }
        FactorWalker {
            graph,
            touches,
            index: vec![0; graph.factors().len()],
            finite: 0.0,
            zeros: 0,
        }
    }
    #[inline]
    fn value(&self) -> f64 {
        if self.zeros > 0 {
            f64::NEG_INFINITY
        } else {
            self.finite
        }
    }
}

impl Walker for FactorWalker<'_> {
    fn reset(&mut self, x: u64) -> f64 {
        self.finite = 0.0;
        self.zeros = 0;
        for (f, factor) in self.graph.factors().iter().enumerate() {
            let idx = factor
                .scope()
                .iter()
                .fold(0u32, |acc, &v| (acc << 1) | (x >> v & 1) as u32);
            self.index[f] = idx;
            let l = factor.log_table()[idx as usize];
            if l == f64::NEG_INFINITY {
                self.zeros += 1;
            } else {
                self.finite += l;
            }
        }
        self.value()
    }
    #[inline]
    fn flip(&mut self, i: usize, _logw: f64) -> f64 {
        let factors = self.graph.factors();
        for &(f, mask) in &self.touches[i] {
            let table = factors[f as usize].log_table();
            let old = table[self.index[f as usize] as usize];
            let idx = self.index[f as usize] ^ mask;
            self.index[f as usize] = idx;
            let new = table[idx as usize];
            if old == f64::NEG_INFINITY {
                self.zeros -= 1;
            } else {
                self.finite -= old;
            }
            if new == f64::NEG_INFINITY {
                self.zeros += 1;
            } else {
                self.finite += new;
            }
        }
        self.value()
    }
}

/// Gray code of k.
#[inline]
pub fn gray(k: u64) -> u64 {
    k ^ (k >> 1)
}

/// Per-unit partial result.
#[derive(Clone)]
struct Partial {
    total: LogSumExp,
    marg: Vec<LogSumExp>,
}

/// Sums the states [start, end) of an n-variable walk (a sub-range of one unit).
fn walk_range<W: Walker>(
    walker: &mut W,
    n: usize,
    start: u64,
    end: u64,
    marginals: bool,
) -> Partial {
    let chunk = 1u64 << CHUNK_BITS.min(n as u32);
    let low_bits = CHUNK_BITS.min(n as u32) as usize;
    let mut buf = vec![0.0f64; chunk as usize];
    let mut total = LogSumExp::new();
    let mut marg = vec![LogSumExp::new(); if marginals { n } else { 0 }];
    let mut low_sums = vec![0.0f64; if marginals { low_bits } else { 0 }];
    let mut k = start;
    while k < end {
        let chunk_end = ((k / chunk + 1) * chunk).min(end);
        let len = (chunk_end - k) as usize;
        let mut logw = walker.reset(gray(k));
        buf[0] = logw;
        for (t, slot) in buf[1..len].iter_mut().enumerate() {
            let kk = k + 1 + t as u64;
            logw = walker.flip(kk.trailing_zeros() as usize, logw);
            *slot = logw;
        }
        let block = &buf[..len];
        if !marginals {
            total.add(block_log_sum(block));
        } else {
            let m = max_of(block);
            if m > f64::NEG_INFINITY {
                low_sums.iter_mut().for_each(|s| *s = 0.0);
                let mut sum = 0.0;
                for (t, &x) in block.iter().enumerate() {
                    let w = exp_nonpositive(x - m);
                    sum += w;
                    let g = gray(k + t as u64);
                    for (b, s) in low_sums.iter_mut().enumerate() {
                        if g >> b & 1 == 1 {
                            *s += w;
                        }
                    }
                }
                let ln_sum = m + sum.ln();
                total.add(ln_sum);
                let high = gray(k);
                for (i, acc) in marg.iter_mut().enumerate() {
                    if i < low_bits {
                        if low_sums[i] > 0.0 {
                            acc.add(m + low_sums[i].ln());
                        }
                    } else if high >> i & 1 == 1 {
                        acc.add(ln_sum);
                    }
                }
            }
        }
        k = chunk_end;
    }
    Partial { total, marg }
}

/// Checks that the `shard` of the 2^n states is small enough for one run: n <= 63 (so state
/// numbers fit a u64) and n - floor(log2 N) <= 40, i.e. at most 2^[`MAX_ENUMERATED_VARS`]
/// states per shard (a 42-variable model needs `--shard K/4` or more parts).
pub fn check_enumeration_size(n: usize, shard: Shard) -> Result<()> {
    let log2_parts = (63 - shard.count.max(1).leading_zeros()) as usize;
    if n > MAX_SHARDED_VARS || n.saturating_sub(log2_parts) > MAX_ENUMERATED_VARS {
        let need = 1u128 << n.saturating_sub(MAX_ENUMERATED_VARS).min(64);
        return Err(Error::TooLarge {
            method: "enumeration".into(),
            detail: if n > MAX_SHARDED_VARS {
                format!(
                    "{n} variables: 2^{n} states (at most 2^{MAX_SHARDED_VARS}, even in shards)"
                )
            } else {
                format!(
                    "{n} variables: 2^{n} states in {} part(s) (at most 2^{MAX_ENUMERATED_VARS} \
                     states per part: use --shard K/N with N >= {need}); or try elimination",
                    shard.count
                )
            },
        });
    }
    Ok(())
}

/// The units of the grid that meet [start, end), clipped to it.
fn units_of(start: u64, end: u64) -> Vec<(u64, u64)> {
    let unit = 1u64 << UNIT_BITS;
    let mut out = Vec::new();
    let mut k = start;
    while k < end {
        let e = ((k / unit + 1) * unit).min(end);
        out.push((k, e));
        k = e;
    }
    out
}

/// Runs the units in fixed batches (so the observer can report and stop), merging in order.
fn run_units<W: Walker>(
    walker: &W,
    n: usize,
    opts: &EnumerateOptions,
    observer: &mut dyn Observer,
) -> Result<Enumeration> {
    check_enumeration_size(n, opts.shard)?;
    let total_states = 1u64 << n;
    let (start, end) = opts.shard.range(total_states);
    let units = units_of(start, end);
    let mut total = LogSumExp::new();
    let mut marg = vec![LogSumExp::new(); if opts.marginals { n } else { 0 }];
    let batch = 256;
    let mut done = 0u64;
    for group in units.chunks(batch) {
        let partials: Vec<Partial> = group
            .par_iter()
            .map(|&(a, b)| {
                let mut w = walker.clone();
                walk_range(&mut w, n, a, b, opts.marginals)
            })
            .collect();
        for p in &partials {
            total.merge(&p.total);
            for (m, q) in marg.iter_mut().zip(&p.marg) {
                m.merge(q);
            }
        }
        done += group.iter().map(|&(a, b)| b - a).sum::<u64>();
        report_or_interrupt(observer, done, end - start)?;
    }
    let log_sum = total.value();
    if log_sum.is_nan() || log_sum == f64::INFINITY {
        return Err(Error::InvalidModel(format!(
            "the sum of the weights is not a finite number (ln = {log_sum}): a log-weight \
             overflowed (scale the parameters or beta down)"
        )));
    }
    let marginals = opts.marginals.then(|| {
        marg.iter()
            .map(|m| {
                if log_sum == f64::NEG_INFINITY {
                    0.0
                } else {
                    (m.value() - log_sum).exp().min(1.0)
                }
            })
            .collect()
    });
    Ok(Enumeration {
        log_sum,
        marginals,
        states: end - start,
        range: (start, end),
    })
}

/// Enumerates any [`EnergyModel`] at inverse temperature `beta` through its `flip_delta`.
pub fn enumerate_model<M: EnergyModel + ?Sized>(
    model: &M,
    beta: f64,
    opts: &EnumerateOptions,
    observer: &mut dyn Observer,
) -> Result<Enumeration> {
    check_beta(beta)?;
    let walker = GenericWalker {
        model,
        beta,
        spins: vec![-1; model.num_vars()],
    };
    run_units(&walker, model.num_vars(), opts, observer)
}

/// Enumerates a [`PairwiseMrf`] at inverse temperature `beta` (specialised CSR walk).
pub fn enumerate_pairwise(
    model: &PairwiseMrf,
    beta: f64,
    opts: &EnumerateOptions,
    observer: &mut dyn Observer,
) -> Result<Enumeration> {
    check_beta(beta)?;
    run_units(
        &PairwiseWalker::new(model, beta),
        model.fields().len(),
        opts,
        observer,
    )
}

/// Enumerates a [`FactorGraph`] (tables of any arity; zero entries allowed).
///
/// A graph whose factors all have arity <= 2 and no zero entry is walked in its Ising form
/// (cheaper per step); otherwise each factor's table index is updated per flip.
pub fn enumerate_factor_graph(
    graph: &FactorGraph,
    opts: &EnumerateOptions,
    observer: &mut dyn Observer,
) -> Result<Enumeration> {
    if let Ok(pairwise) = graph.to_pairwise() {
        return enumerate_pairwise(&pairwise, 1.0, opts, observer);
    }
    run_units(&FactorWalker::new(graph), graph.num_vars(), opts, observer)
}

fn check_beta(beta: f64) -> Result<()> {
    if !beta.is_finite() {
        return Err(Error::param("beta", format!("must be finite, got {beta}")));
    }
    Ok(())
}

/// ln Z(beta) = ln sum_s exp(-beta E(s)) of any [`EnergyModel`], by enumeration.
///
/// The oracle for every other method; O(2^n * degree). Errors with `TooLarge` above
/// [`MAX_ENUMERATED_VARS`] variables.
pub fn enumerate_log_partition<M: EnergyModel + ?Sized>(model: &M, beta: f64) -> Result<f64> {
    Ok(enumerate_model(model, beta, &EnumerateOptions::default(), &mut Silent)?.log_sum)
}

/// Exact marginals P(s_i = +1) of any [`EnergyModel`] at inverse temperature `beta`.
pub fn enumerate_marginals<M: EnergyModel + ?Sized>(model: &M, beta: f64) -> Result<Vec<f64>> {
    let opts = EnumerateOptions {
        marginals: true,
        ..Default::default()
    };
    Ok(enumerate_model(model, beta, &opts, &mut Silent)?
        .marginals
        .expect("asked for marginals"))
}

/// ln Z = ln sum_x prod_f phi_f(x_f) of a [`FactorGraph`], by enumeration.
pub fn log_partition_factor_graph(graph: &FactorGraph) -> Result<f64> {
    Ok(enumerate_factor_graph(graph, &EnumerateOptions::default(), &mut Silent)?.log_sum)
}

/// Exact marginals P(x_i = 1) of a [`FactorGraph`], by enumeration.
pub fn marginals_factor_graph(graph: &FactorGraph) -> Result<Vec<f64>> {
    let opts = EnumerateOptions {
        marginals: true,
        ..Default::default()
    };
    Ok(enumerate_factor_graph(graph, &opts, &mut Silent)?
        .marginals
        .expect("asked for marginals"))
}

/// Row-0 tables for [`lattice_histogram_rows`]: for every pattern of the outside fields on the
/// sites of row 0, the list of (index offset, count) over the 2^W states of row 0.
struct RowTables {
    w: usize,
    /// Per pattern, a range into `entries`.
    ranges: Vec<(u32, u32)>,
    entries: Vec<(u32, u32)>,
    /// Per rest site: change of the pattern number per unit change of its spin's digit.
    pdelta: Vec<i64>,
    /// Rest-only neighbour lists, padded with the dummy site n.
    nbr_rest: Vec<[u32; 4]>,
    /// Bonds with both ends outside row 0.
    rest_bonds: Vec<(usize, usize)>,
    /// Outside neighbours of each row-0 site (the same for all of them).
    d_out: i64,
    /// For each row-0 column, its outside neighbours (with multiplicity).
    outside: Vec<Vec<usize>>,
}

impl RowTables {
    /// Builds the tables when row 0 has at most 8 sites and every row-0 site has the same number
    /// (<= 2) of neighbours outside row 0; `None` otherwise.
    fn new(lattice: &IsingLattice) -> Option<RowTables> {
        let (w, n) = (lattice.width(), lattice.num_sites());
        if w > 8 {
            return None;
        }
        let bonds = lattice.bonds();
        let stride = n + 1;
        let mut outside = vec![Vec::new(); w];
        let mut row_bonds = Vec::new();
        let mut rest_bonds = Vec::new();
        for &(i, j) in &bonds {
            match (i < w, j < w) {
                (true, true) => row_bonds.push((i, j)),
                (true, false) => outside[i].push(j),
                (false, true) => outside[j].push(i),
                (false, false) => rest_bonds.push((i, j)),
            }
        }
        let d_out = outside[0].len();
        if d_out > 2 || outside.iter().any(|o| o.len() != d_out) {
            return None;
        }
        let mut pdelta = vec![0i64; n];
        let mut pow3 = 1i64;
        for o in &outside {
            for &j in o {
                pdelta[j] += pow3;
            }
            pow3 *= 3;
        }
        let mut nbr_rest = vec![[n as u32; 4]; n];
        let mut deg = vec![0usize; n];
        for &(i, j) in &rest_bonds {
            for (a, b) in [(i, j), (j, i)] {
                nbr_rest[a][deg[a]] = b as u32;
                deg[a] += 1;
            }
        }
        let patterns = 3usize.pow(w as u32);
        let mut ranges = Vec::with_capacity(patterns);
        let mut entries = Vec::new();
        let mut acc = std::collections::BTreeMap::new();
        for p in 0..patterns {
            let mut digits = p;
            let e: Vec<i64> = (0..w)
                .map(|_| {
                    let d = (digits % 3) as i64;
                    digits /= 3;
                    2 * d - d_out as i64
                })
                .collect();
            acc.clear();
            for x0 in 0..1usize << w {
                let s = |c: usize| if x0 >> c & 1 == 1 { 1i64 } else { -1 };
                let mut b0 = 0i64;
                for &(i, j) in &row_bonds {
                    b0 += s(i) * s(j);
                }
                for (c, &ec) in e.iter().enumerate() {
                    b0 += s(c) * ec;
                }
                let delta = b0 * stride as i64 + x0.count_ones() as i64;
                *acc.entry(delta).or_insert(0u32) += 1;
            }
            let from = entries.len() as u32;
            // Offsets are stored shifted by the largest possible negative delta.
            let shift = (w + 2 * w) as i64 * stride as i64;
            entries.extend(acc.iter().map(|(&d, &c)| ((d + shift) as u32, c)));
            ranges.push((from, entries.len() as u32));
        }
        Some(RowTables {
            w,
            ranges,
            entries,
            pdelta,
            nbr_rest,
            rest_bonds,
            d_out: d_out as i64,
            outside,
        })
    }
}

/// The histogram of [`lattice_histogram`] over an aligned range [start, end) (multiples of 2^W),
/// summing each block of 2^W states (all states of row 0 for one state of the other rows) with
/// one table lookup: for fixed other rows, row 0 only sees the fields e_c of its outside
/// neighbours, so its (bond sum, up spins) counts depend on the pattern of e alone.
fn lattice_histogram_rows(lattice: &IsingLattice, t: &RowTables, start: u64, end: u64) -> Vec<u64> {
    let n = lattice.num_sites();
    let nb = lattice.bonds().len();
    let stride = (n + 1) as i64;
    let w = t.w;
    let shift = (w + 2 * w) as i64 * stride;
    // Full-range index (bond sum + nb) * stride + ups, then halved at the end.
    let len = (2 * nb + 1) * (n + 1);
    let mut counts = vec![0u64; len + 2 * shift as usize + 1];
    let mut spins = vec![0i8; n + 1];
    let (k0, k1) = (start >> w, end >> w);
    let x = gray(k0) << w;
    for (i, sp) in spins[..n].iter_mut().enumerate() {
        *sp = if i >= w && x >> i & 1 == 1 { 1 } else { -1 };
    }
    let mut b_rest: i64 = t
        .rest_bonds
        .iter()
        .map(|&(i, j)| (spins[i] * spins[j]) as i64)
        .sum();
    let mut ups_rest = (x >> w).count_ones() as i64;
    let mut p: i64 = 0;
    let mut pow3 = 1i64;
    for o in &t.outside {
        let e: i64 = o.iter().map(|&j| spins[j] as i64).sum();
        p += (e + t.d_out) / 2 * pow3;
        pow3 *= 3;
    }
    for kk in k0..k1 {
        if kk > k0 {
            let i = w + kk.trailing_zeros() as usize;
            let [a, b, c, d] = t.nbr_rest[i];
            let local = spins[a as usize] as i64
                + spins[b as usize] as i64
                + spins[c as usize] as i64
                + spins[d as usize] as i64;
            let si = spins[i] as i64;
            b_rest -= 2 * si * local;
            ups_rest -= si;
            p -= si * t.pdelta[i];
            spins[i] = -spins[i];
        }
        let base = ((b_rest + nb as i64) * stride + ups_rest) as usize;
        let (from, to) = t.ranges[p as usize];
        let slice = &mut counts[base..];
        for &(delta, cnt) in &t.entries[from as usize..to as usize] {
            slice[delta as usize] += cnt as u64;
        }
    }
    // Undo the offset shift and halve the bond index (the bond sum has the parity of nb).
    let mut hist = vec![0u64; (nb + 1) * (n + 1)];
    for (idx, &c) in counts.iter().enumerate() {
        if c > 0 {
            let full = idx as i64 - shift;
            let (b, u) = (full / stride, full % stride);
            hist[(b / 2 * stride + u) as usize] += c;
        }
    }
    hist
}

/// The histogram of (bond sum, number of up spins) over the states [start, end) of a uniform
/// lattice. Entry `b * (n + 1) + u` counts the states with bond sum `2 b - bonds` and `u` up spins.
fn lattice_histogram(lattice: &IsingLattice, start: u64, end: u64) -> Vec<u64> {
    let n = lattice.num_sites();
    let bonds = lattice.bonds();
    let nb = bonds.len();
    // Neighbour lists padded to four entries with the dummy site n (spin 0).
    let mut nbr = vec![[n as u32; 4]; n];
    let mut deg = vec![0usize; n];
    let mut extra: Vec<(usize, usize)> = Vec::new();
    for &(i, j) in &bonds {
        for (a, b) in [(i, j), (j, i)] {
            if deg[a] < 4 {
                nbr[a][deg[a]] = b as u32;
                deg[a] += 1;
            } else {
                extra.push((a, b));
            }
        }
    }
    debug_assert!(extra.is_empty(), "square lattices have degree <= 4");
    let stride = (n + 1) as i64;
    let len = (nb + 1) * (n + 1);
    let mut hist = vec![0u64; len];
    // Four interleaved count tables (step number mod 4), so that consecutive increments of the
    // same bin do not wait on each other through memory.
    let mut counts = vec![0u32; 4 * len];
    let mut spins = vec![0i8; n + 1];
    let unit = 1u64 << UNIT_BITS;
    let mut k = start;
    while k < end {
        let e = ((k / unit + 1) * unit).min(end);
        let x = gray(k);
        for (i, s) in spins[..n].iter_mut().enumerate() {
            *s = if x >> i & 1 == 1 { 1 } else { -1 };
        }
        let bond_sum = lattice.bond_sum(&spins[..n]);
        let ups = (x.count_ones()) as i64;
        let mut idx = ((bond_sum + nb as i64) / 2) * stride + ups;
        counts[idx as usize] += 1;
        for kk in k + 1..e {
            let i = kk.trailing_zeros() as usize;
            let [a, b, c, d] = nbr[i];
            let local = spins[a as usize] as i64
                + spins[b as usize] as i64
                + spins[c as usize] as i64
                + spins[d as usize] as i64;
            let s = spins[i] as i64;
            idx -= s * (local * stride + 1);
            spins[i] = -spins[i];
            counts[(kk & 3) as usize * len + idx as usize] += 1;
        }
        for table in counts.chunks_exact_mut(len) {
            for (h, c) in hist.iter_mut().zip(table.iter_mut()) {
                *h += *c as u64;
                *c = 0;
            }
        }
        k = e;
    }
    hist
}

/// Enumerates an [`IsingLattice`] at inverse temperature `beta`.
///
/// A lattice with uniform field (and no marginals asked) is summed through the exact integer
/// histogram of (bond sum, magnetisation): ln Z = ln sum_{b,m} count(b, m) exp(beta (J b + h m)),
/// which needs no floating point per state. Otherwise the general pairwise walk is used.
pub fn enumerate_lattice(
    lattice: &IsingLattice,
    beta: f64,
    opts: &EnumerateOptions,
    observer: &mut dyn Observer,
) -> Result<Enumeration> {
    check_beta(beta)?;
    let n = lattice.num_sites();
    if lattice.site_field().is_some() || opts.marginals {
        return enumerate_pairwise(&lattice.to_pairwise()?, beta, opts, observer);
    }
    check_enumeration_size(n, opts.shard)?;
    let (start, end) = opts.shard.range(1u64 << n);
    let units = units_of(start, end);
    let nb = lattice.bonds().len();
    let tables = RowTables::new(lattice);
    let mut hist = vec![0u64; (nb + 1) * (n + 1)];
    let mut done = 0u64;
    for group in units.chunks(64) {
        let parts: Vec<Vec<u64>> = group
            .par_iter()
            .map(|&(a, b)| match &tables {
                Some(t) => {
                    // Aligned middle by tables, unaligned ends state by state.
                    let block = 1u64 << t.w;
                    let (a2, b2) = (a.div_ceil(block) * block, b / block * block);
                    if a2 < b2 {
                        let mut h = lattice_histogram_rows(lattice, t, a2, b2);
                        for (lo, hi) in [(a, a2), (b2, b)] {
                            if lo < hi {
                                for (x, y) in h.iter_mut().zip(lattice_histogram(lattice, lo, hi)) {
                                    *x += y;
                                }
                            }
                        }
                        h
                    } else {
                        lattice_histogram(lattice, a, b)
                    }
                }
                None => lattice_histogram(lattice, a, b),
            })
            .collect();
        for p in parts {
            for (h, c) in hist.iter_mut().zip(p) {
                *h += c;
            }
        }
        done += group.iter().map(|&(a, b)| b - a).sum::<u64>();
        report_or_interrupt(observer, done, end - start)?;
    }
    let (j, h) = (lattice.coupling(), lattice.uniform_field());
    let mut terms = Vec::new();
    for (idx, &c) in hist.iter().enumerate() {
        if c > 0 {
            let b = (idx / (n + 1)) as f64 * 2.0 - nb as f64;
            let m = (idx % (n + 1)) as f64 * 2.0 - n as f64;
            terms.push((c as f64).ln() + beta * (j * b + h * m));
        }
    }
    Ok(Enumeration {
        log_sum: crate::logspace::log_sum_exp(&terms),
        marginals: None,
        states: end - start,
        range: (start, end),
    })
}

/// ln Z(beta) of an [`IsingLattice`] by enumeration (histogram for uniform fields).
pub fn log_partition_lattice(lattice: &IsingLattice, beta: f64) -> Result<f64> {
    Ok(enumerate_lattice(lattice, beta, &EnumerateOptions::default(), &mut Silent)?.log_sum)
}

/// Merges shard results (each a log-sum over its part) into the log-sum over their union.
pub fn merge_shards(log_sums: &[f64]) -> f64 {
    let mut acc = LogSumExp::new();
    for &x in log_sums {
        acc.add(x);
    }
    acc.value()
}

/// A minimum-energy state found by exhaustive search.
#[derive(Debug, Clone, PartialEq)]
pub struct MapState {
    /// The state (spins +-1).
    pub state: Vec<Spin>,
    /// Its energy E(state), recomputed exactly with [`EnergyModel::energy`].
    pub energy: f64,
}

/// Brute-force MAP: the state of least energy among all 2^n (the first in Gray-code order among
/// ties, up to round-off in the incremental energies). An oracle for the MAP methods; n <= 32.
pub fn brute_force_map<M: EnergyModel + ?Sized>(model: &M) -> Result<MapState> {
    let n = model.num_vars();
    if n > 32 {
        return Err(Error::TooLarge {
            method: "brute-force MAP".into(),
            detail: format!("{n} variables: 2^{n} states (at most 2^32)"),
        });
    }
    let units = units_of(0, 1u64 << n);
    let best: Vec<(f64, u64)> = units
        .par_iter()
        .map(|&(a, b)| {
            let mut w = GenericWalker {
                model,
                beta: 1.0,
                spins: vec![-1; n],
            };
            let chunk = 1u64 << CHUNK_BITS;
            let mut best = (f64::INFINITY, a);
            let mut k = a;
            while k < b {
                let e = ((k / chunk + 1) * chunk).min(b);
                let mut lw = w.reset(gray(k));
                if -lw < best.0 {
                    best = (-lw, k);
                }
                for kk in k + 1..e {
                    lw = w.flip(kk.trailing_zeros() as usize, lw);
                    if -lw < best.0 {
                        best = (-lw, kk);
                    }
                }
                k = e;
            }
            best
        })
        .collect();
    let mut winner = best[0];
    for &b in &best[1..] {
        if b.0 < winner.0 {
            winner = b;
        }
    }
    let x = gray(winner.1);
    let state: Vec<Spin> = (0..n)
        .map(|i| if x >> i & 1 == 1 { 1 } else { -1 })
        .collect();
    let energy = model.energy(&state);
    Ok(MapState { state, energy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Boundary, Factor};

    fn direct_log_z<M: EnergyModel>(m: &M, beta: f64) -> f64 {
        let n = m.num_vars();
        let terms: Vec<f64> = (0..1u64 << n)
            .map(|x| {
                let s: Vec<Spin> = (0..n)
                    .map(|i| if x >> i & 1 == 1 { 1 } else { -1 })
                    .collect();
                -beta * m.energy(&s)
            })
            .collect();
        crate::logspace::log_sum_exp(&terms)
    }

    #[test]
    fn gray_walk_visits_every_state_once() {
        let n = 13;
        let mut seen = vec![false; 1 << n];
        for k in 0..1u64 << n {
            assert!(!std::mem::replace(&mut seen[gray(k) as usize], true));
            if k > 0 {
                assert_eq!((gray(k) ^ gray(k - 1)).trailing_zeros(), k.trailing_zeros());
            }
        }
    }

    #[test]
    fn walkers_agree_with_direct_sums() {
        let lattice = IsingLattice::new(3, 4, Boundary::Periodic, 0.7, -0.3).unwrap();
        let direct = direct_log_z(&lattice, 0.9);
        let pw = lattice.to_pairwise().unwrap();
        let opts = EnumerateOptions::default();
        for got in [
            enumerate_log_partition(&lattice, 0.9).unwrap(),
            enumerate_pairwise(&pw, 0.9, &opts, &mut Silent)
                .unwrap()
                .log_sum,
            log_partition_lattice(&lattice, 0.9).unwrap(),
            log_partition_factor_graph(&FactorGraph::from_pairwise(&pw, 0.9).unwrap()).unwrap(),
        ] {
            assert!(
                (got - direct).abs() < 1e-12 * direct.abs(),
                "{got} vs {direct}"
            );
        }
    }

    #[test]
    fn zero_entries_give_minus_infinity_weights_not_nan() {
        // x0 must equal x1 (a hard constraint), and x2 must be 1.
        let g = FactorGraph::new(
            3,
            vec![
                Factor::new(vec![0, 1], vec![1.0, 0.0, 0.0, 2.0]).unwrap(),
                Factor::new(vec![2], vec![0.0, 3.0]).unwrap(),
            ],
        )
        .unwrap();
        // States: (0,0,1) weight 3, (1,1,1) weight 6.
        assert!((log_partition_factor_graph(&g).unwrap() - 9f64.ln()).abs() < 1e-14);
        let m = marginals_factor_graph(&g).unwrap();
        assert!((m[0] - 6.0 / 9.0).abs() < 1e-14);
        assert!((m[1] - 6.0 / 9.0).abs() < 1e-14);
        assert!((m[2] - 1.0).abs() < 1e-14);
    }

    /// x0 = x1 (table 1 0 0 2) and a unary (1 3) on x2: the allowed states (0,0,x2) and (1,1,x2)
    /// have weights 1 and 2 times 1 or 3, so Z = 3 * 4 = 12, P(x0 = 1) = P(x1 = 1) = 2/3 and
    /// P(x2 = 1) = 3/4, and the MAP state is (1, 1, 1) with energy -ln 6.
    fn hard_equality() -> FactorGraph {
        FactorGraph::new(
            3,
            vec![
                Factor::new(vec![0, 1], vec![1.0, 0.0, 0.0, 2.0]).unwrap(),
                Factor::new(vec![2], vec![1.0, 3.0]).unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn generic_walk_survives_zero_entries() {
        let g = hard_equality();
        for beta in [1.0, 0.5] {
            // At beta, each allowed weight w becomes w^beta.
            let want = (1f64 + 2f64.powf(beta)).ln() + (1f64 + 3f64.powf(beta)).ln();
            let got = enumerate_log_partition(&g, beta).unwrap();
            assert!((got - want).abs() < 1e-14, "beta {beta}: {got} vs {want}");
        }
        let m = enumerate_marginals(&g, 1.0).unwrap();
        for (got, want) in m.iter().zip([2.0 / 3.0, 2.0 / 3.0, 0.75]) {
            assert!((got - want).abs() < 1e-14, "{m:?}");
        }
        // beta = 0 counts the allowed states: 2 * 2.
        assert!((enumerate_log_partition(&g, 0.0).unwrap() - 4f64.ln()).abs() < 1e-14);
        let best = brute_force_map(&g).unwrap();
        assert_eq!(best.state, vec![1, 1, 1]);
        assert!((best.energy + 6f64.ln()).abs() < 1e-14);
        // Every state is reached by a Gray-code flip from an impossible one somewhere in the walk;
        // a graph where most states are impossible: x0 = x1 = x2 = x3 and a weight 5 on x3 = 0.
        let chain = FactorGraph::new(
            4,
            vec![
                Factor::new(vec![0, 1], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
                Factor::new(vec![1, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
                Factor::new(vec![2, 3], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
                Factor::new(vec![3], vec![5.0, 1.0]).unwrap(),
            ],
        )
        .unwrap();
        assert!((enumerate_log_partition(&chain, 1.0).unwrap() - 6f64.ln()).abs() < 1e-14);
        assert_eq!(brute_force_map(&chain).unwrap().state, vec![-1; 4]);
    }

    #[test]
    fn asymmetric_tables_keep_their_constant_in_the_pairwise_walk() {
        // Asymmetric positive tables: the Ising form carries a nonzero constant.
        let g = FactorGraph::new(
            4,
            vec![
                Factor::new(vec![0, 1], vec![2.0, 0.3, 1.1, 5.0]).unwrap(),
                Factor::new(vec![2, 1], vec![0.7, 1.9, 3.3, 0.2]).unwrap(),
                Factor::new(vec![3], vec![4.0, 0.5]).unwrap(),
                Factor::new(vec![3, 0], vec![1.5, 2.5, 0.9, 1.2]).unwrap(),
            ],
        )
        .unwrap();
        assert!(g.to_pairwise().unwrap().constant() != 0.0);
        let direct: Vec<f64> = (0..16u8)
            .map(|x| g.log_weight_bits(&[x & 1, x >> 1 & 1, x >> 2 & 1, x >> 3 & 1]))
            .collect();
        let want = crate::logspace::log_sum_exp(&direct);
        assert!((log_partition_factor_graph(&g).unwrap() - want).abs() < 1e-13);
        let e = crate::infer::eliminate::log_partition_eliminate(&g).unwrap();
        assert!((e - want).abs() < 1e-13);
    }

    #[test]
    fn brute_force_map_finds_the_ground_state() {
        let m = PairwiseMrf::new(vec![0.1, -0.2, 0.3], &[(0, 1, -1.0), (1, 2, 0.5)]).unwrap();
        let best = brute_force_map(&m).unwrap();
        for x in 0..8u64 {
            let s: Vec<Spin> = (0..3)
                .map(|i| if x >> i & 1 == 1 { 1 } else { -1 })
                .collect();
            assert!(best.energy <= m.energy(&s) + 1e-12);
        }
    }
}
