//! Exact MAP for the grid energy by a minimum s-t cut, with a max-flow specialised to
//! 4-connected grids.
//!
//! **Reduction** (Greig, Porteous & Seheult, "Exact maximum a posteriori estimation for binary
//! images", JRSS B 1989). With `a_i = h - eta * x_i`, the energy is
//! `E(s) = sum_i a_i s_i - beta sum_<ij> s_i s_j`. Put pixel `i` on the source side for
//! `s_i = +1` and on the sink side for `s_i = -1`. Then
//!
//! ```text
//! E(s) = -sum_i |a_i| - beta * #bonds + cut(S),
//! ```
//!
//! where the cut counts a terminal edge `source -> i` of capacity `2 |a_i|` when `a_i < 0` (paid
//! when `s_i = -1`), `i -> sink` of capacity `2 a_i` when `a_i > 0` (paid when `s_i = +1`), and
//! `2 beta` in each direction between 4-neighbours (paid when they disagree). For `beta >= 0`
//! every capacity is non-negative, so the minimum cut is the minimum energy; a negative `beta`
//! makes the energy non-submodular and is refused.
//!
//! **Max-flow** (Boykov & Kolmogorov, "An experimental comparison of min-cut/max-flow algorithms
//! for energy minimization in vision", IEEE TPAMI 26(9), 2004): two search trees, `S` grown from
//! the source and `T` from the sink, over the residual graph. *Growth* takes an active node and
//! claims its free residual neighbours for its tree; when it touches the other tree an augmenting
//! path is found. *Augmentation* pushes the bottleneck along that path; the nodes whose tree
//! edge saturates become orphans. *Adoption* gives each orphan a new parent in its tree whose
//! origin is a terminal (checked by walking up, with the paper's timestamp / distance
//! heuristic, preferring the parent closest to the terminal), or frees it. The algorithm stops
//! when no active node is left; the source side of the minimum cut is then the tree `S`.
//!
//! Specialised to the grid: neighbours are implicit (`i +- 1`, `i +- width`), every pair edge
//! has the same capacity `c = 2 beta` in both directions, so one signed flow per undirected edge
//! (`f` in `[-c, c]`, residuals `c - f` forward and `c + f` backward) describes both residuals;
//! the two terminal edges of a node are merged into one signed residual (positive: from the
//! source, negative: to the sink) after pushing `min(source, sink)` straight through. When all
//! capacities are whole multiples of one unit, as PRML's 2, 4.2, 4.2 are of 0.2, they are held
//! as exact integers (i8 up to 63 units, as there: 10, 21, 21; i16 up to 8000), else as f64; a
//! push of a whole residual sets it to exactly zero either way. Per node: 3 residuals (1, 2 or 8
//! bytes), a distance (u8, saturating), a timestamp (u16, reset when the clock wraps) and one
//! byte of flags: 7, 10 or 28 bytes, i.e. about 117 MB (PRML's parameters), 168 MB or 470 MB for
//! 4096 x 4096. Page faults on that memory are a large part of the time of a fresh process (at
//! 256 x 256 about 120 faults of 1-3 us each in a run of under a millisecond), so every byte
//! counts.
//!
//! Speed-ups that keep the result exact: one pass first pushes flow along every
//! `source -> p -> q -> sink` path of two adjacent pixels; the starting trees then take in the
//! free nodes this leaves inside one tree (a flipped pixel whose terminal capacity its
//! neighbours used up), and only nodes with a residual edge out of their tree start active
//! (`Region::init_trees`: at 256 x 256 with 10% noise, 1 387 active nodes instead of 21 859;
//! the local pushes leave 6 295 nodes free, and the starting trees take in all but 2); the rows
//! are solved in strips of about 2^17 nodes (in parallel, each in cache), then once more over
//! the whole grid from the strips' flows and trees with only the strip borders active (see
//! [`GridCut::max_flow`]); a grid of one strip is solved on the calling thread, without rayon.

use std::collections::VecDeque;

use rayon::prelude::*;

use super::{GridEnergy, ONE_THREAD_PIXELS};
use crate::error::{Error, Result, check_finite};
use crate::model::Spin;

const NONE: u8 = 0;
const RIGHT: u8 = 1;
const LEFT: u8 = 2;
const DOWN: u8 = 3;
const UP: u8 = 4;
const TERMINAL: u8 = 5;
const PARENT_MASK: u8 = 0b111;
const IN_S: u8 = 0b1000;
const IN_T: u8 = 0b1_0000;
const TREE_MASK: u8 = IN_S | IN_T;
const ACTIVE: u8 = 0b10_0000;
/// The node is in the first column (no left neighbour).
const LEFT_EDGE: u8 = 0b100_0000;
/// The node is in the last column (no right neighbour).
const RIGHT_EDGE: u8 = 0b1000_0000;
/// Bits that stay fixed for the whole run.
const FIXED: u8 = LEFT_EDGE | RIGHT_EDGE;

#[inline(always)]
fn opposite(d: u8) -> u8 {
    match d {
        RIGHT => LEFT,
        LEFT => RIGHT,
        DOWN => UP,
        _ => DOWN,
    }
}

/// Capacities: f64 in general, or exact integers (i8 or i16) when every capacity is a small
/// whole multiple of one unit (as the denoising energy's three values usually are: 2, 4.2, 4.2
/// are 10, 21, 21 times 0.2). Integer residuals are exact and take an eighth or a quarter of the
/// memory.
pub(crate) trait Capacity:
    Copy
    + PartialOrd
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const ZERO: Self;
    fn cmin(self, other: Self) -> Self;
    fn cmax(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
    /// The value `v` (already a whole number of units for the integer types).
    fn from_f64(v: f64) -> Self;
    /// `sum_i |values_i|`, exactly for integers.
    fn abs_sum(values: &[Self]) -> f64;
}

impl Capacity for f64 {
    const ZERO: f64 = 0.0;
    #[inline(always)]
    fn cmin(self, other: f64) -> f64 {
        self.min(other)
    }
    #[inline(always)]
    fn cmax(self, other: f64) -> f64 {
        self.max(other)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn abs_sum(values: &[f64]) -> f64 {
        values.iter().map(|v| v.abs()).sum()
    }
}

macro_rules! integer_capacity {
    ($t:ty) => {
        impl Capacity for $t {
            const ZERO: $t = 0;
            #[inline(always)]
            fn cmin(self, other: $t) -> $t {
                std::cmp::min(self, other)
            }
            #[inline(always)]
            fn cmax(self, other: $t) -> $t {
                std::cmp::max(self, other)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> $t {
                v.round() as $t
            }
            fn abs_sum(values: &[$t]) -> f64 {
                values.iter().map(|&v| (v as i64).abs()).sum::<i64>() as f64
            }
        }
    };
}
integer_capacity!(i8);
integer_capacity!(i16);

/// Largest capacity, in units, of the integer representations: residuals stay within
/// `2 * MAX_UNITS < i16::MAX`, or `2 * MAX_NARROW_UNITS < i8::MAX` for i8.
const MAX_UNITS: u32 = 8000;
const MAX_NARROW_UNITS: f64 = 63.0;

/// A unit `u` such that every value is a whole multiple of `u` of at most [`MAX_UNITS`] (to a
/// relative 8 ulps, which absorbs the rounding of decimal inputs such as 4.2 / 0.2 but not a real
/// difference such as 2 against 2 + 2e-13), or None.
fn common_unit(values: &[f64]) -> Option<f64> {
    let mut distinct: Vec<f64> = values
        .iter()
        .map(|v| v.abs())
        .filter(|&v| v > 0.0)
        .collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() > 64 {
        return None;
    }
    let largest = *distinct.last()?;
    (1..=MAX_UNITS).map(|m| largest / m as f64).find(|&unit| {
        distinct.iter().all(|&v| {
            let r = v / unit;
            (r - r.round()).abs() <= 8.0 * f64::EPSILON * r && r.round() >= 1.0
        })
    })
}

/// Per-node residual arrays of one capacity type.
#[derive(Debug, Clone)]
struct Arrays<C> {
    cap: C,
    /// Terminal residual: > 0 from the source into the node, < 0 from the node to the sink.
    tr: Vec<C>,
    /// Flow on edge (i, i + 1), in [-cap, cap] (positive: rightwards).
    fr: Vec<C>,
    /// Flow on edge (i, i + width), in [-cap, cap] (positive: downwards).
    fd: Vec<C>,
}

impl<C: Capacity> Arrays<C> {
    fn new(cap: C, tr: Vec<C>) -> Self {
        let n = tr.len();
        Arrays {
            cap,
            tr,
            fr: vec![C::ZERO; n],
            fd: vec![C::ZERO; n],
        }
    }
}

#[derive(Debug, Clone)]
enum Residuals {
    Float(Arrays<f64>),
    /// Integer multiples of `unit`, at most [`MAX_NARROW_UNITS`].
    Narrow(Arrays<i8>, f64),
    /// Integer multiples of `unit`, at most [`MAX_UNITS`].
    Wide(Arrays<i16>, f64),
}

impl Residuals {
    /// The arrays for pair capacity `cap` and terminal residuals `tr`: integers in units of the
    /// common unit of `values` (every capacity's magnitude) when there is one, in the narrowest
    /// type that holds them, else f64.
    fn build(cap: f64, values: &[f64], tr: &(impl TerminalResiduals + ?Sized)) -> Self {
        fn arrays<C: Capacity>(
            cap: f64,
            unit: f64,
            tr: &(impl TerminalResiduals + ?Sized),
        ) -> Arrays<C> {
            Arrays::new(C::from_f64(cap / unit), tr.in_units(unit))
        }
        match common_unit(values) {
            Some(unit) => {
                let largest = values.iter().fold(0.0f64, |m, v| m.max(v.abs())) / unit;
                if largest.round() <= MAX_NARROW_UNITS {
                    Residuals::Narrow(arrays(cap, unit, tr), unit)
                } else {
                    Residuals::Wide(arrays(cap, unit, tr), unit)
                }
            }
            None => Residuals::Float(arrays(cap, 1.0, tr)),
        }
    }
}

/// Terminal residuals (source minus sink capacity, per node) before conversion to a capacity
/// type.
trait TerminalResiduals {
    /// Every residual divided by `unit`, as `C` (rounded for the integer types).
    fn in_units<C: Capacity>(&self, unit: f64) -> Vec<C>;
}

impl TerminalResiduals for [f64] {
    fn in_units<C: Capacity>(&self, unit: f64) -> Vec<C> {
        self.iter().map(|&t| C::from_f64(t / unit)).collect()
    }
}

/// The residuals of the denoising energy: `plus` where the evidence is +1, `minus` where -1.
struct EvidenceResiduals<'a> {
    evidence: &'a [Spin],
    plus: f64,
    minus: f64,
}

impl TerminalResiduals for EvidenceResiduals<'_> {
    fn in_units<C: Capacity>(&self, unit: f64) -> Vec<C> {
        let (plus, minus) = (
            C::from_f64(self.plus / unit),
            C::from_f64(self.minus / unit),
        );
        self.evidence
            .iter()
            .map(|&v| if v > 0 { plus } else { minus })
            .collect()
    }
}

/// A max-flow / min-cut problem on a `width x height` grid: every 4-neighbour pair joined by
/// edges of capacity `pair_capacity` in both directions, and each node joined to the source and
/// the sink by its own capacities.
#[derive(Debug, Clone)]
pub struct GridCut {
    width: usize,
    height: usize,
    residuals: Residuals,
    flags: Vec<u8>,
    dist: Vec<Dist>,
    ts: Vec<Stamp>,
    /// Flow pushed straight through `source -> i -> sink` before the search.
    base_flow: f64,
    flow: f64,
    solved: bool,
}

impl GridCut {
    /// A grid problem. `source[i]` and `sink[i]` are the capacities of `source -> i` and
    /// `i -> sink`; all capacities must be finite and >= 0.
    pub fn new(
        width: usize,
        height: usize,
        pair_capacity: f64,
        source: &[f64],
        sink: &[f64],
    ) -> Result<Self> {
        let n = width
            .checked_mul(height)
            .filter(|&n| n > 0 && n < u32::MAX as usize)
            .ok_or_else(|| {
                Error::param(
                    "grid size",
                    format!("{width} x {height} is empty or too large"),
                )
            })?;
        if source.len() != n || sink.len() != n {
            return Err(Error::SizeMismatch(format!(
                "{width} x {height} grid needs {n} terminal capacities, got {} and {}",
                source.len(),
                sink.len()
            )));
        }
        check_finite("pair capacity", pair_capacity)?;
        if pair_capacity < 0.0 {
            return Err(Error::param(
                "pair capacity",
                format!("must be >= 0, got {pair_capacity}"),
            ));
        }
        let mut flow = 0.0;
        let mut tr = Vec::with_capacity(n);
        for (i, (&a, &b)) in source.iter().zip(sink).enumerate() {
            if !(a.is_finite() && b.is_finite() && a >= 0.0 && b >= 0.0) {
                return Err(Error::param(
                    "terminal capacity",
                    format!("node {i}: source {a}, sink {b} (must be finite and >= 0)"),
                ));
            }
            flow += a.min(b);
            tr.push(a - b);
        }
        Ok(Self::from_residuals(width, height, pair_capacity, tr, flow))
    }

    /// The cut problem of a grid energy (see the module docs); refuses `beta < 0`.
    pub fn from_energy(energy: &GridEnergy<'_>) -> Result<Self> {
        let beta = energy.beta();
        if beta < 0.0 {
            return Err(negative_beta(beta));
        }
        let (h, eta) = (energy.field(), energy.eta());
        // a_i = h - eta x_i; terminal residual = source - sink = -2 a_i: one value for x_i = +1,
        // one for x_i = -1.
        let (plus, minus) = (-2.0 * (h - eta), -2.0 * (h + eta));
        let cap = 2.0 * beta;
        let values = [cap, plus.abs(), minus.abs()];
        let evidence = energy.evidence();
        let tr = EvidenceResiduals {
            evidence,
            plus,
            minus,
        };
        let residuals = Residuals::build(cap, &values, &tr);
        Ok(Self::from_parts(
            energy.width(),
            energy.height(),
            residuals,
            0.0,
        ))
    }

    fn from_residuals(width: usize, height: usize, cap: f64, tr: Vec<f64>, flow: f64) -> Self {
        let mut values: Vec<f64> = vec![cap];
        for &t in &tr {
            if values.len() > 65 {
                break;
            }
            if !values.contains(&t.abs()) {
                values.push(t.abs());
            }
        }
        let residuals = Residuals::build(cap, &values, tr.as_slice());
        Self::from_parts(width, height, residuals, flow)
    }

    /// The problem with these residuals; every node free (its tree is set when solving).
    /// Distances and timestamps start at zero, which is what the search expects (see
    /// [`Region::init_trees`]).
    fn from_parts(width: usize, height: usize, residuals: Residuals, flow: f64) -> Self {
        let n = width * height;
        let mut flags = vec![0u8; n];
        for row in flags.chunks_exact_mut(width) {
            row[0] |= LEFT_EDGE;
            row[width - 1] |= RIGHT_EDGE;
        }
        GridCut {
            width,
            height,
            residuals,
            flags,
            dist: vec![0; n],
            ts: vec![0; n],
            base_flow: flow,
            flow,
            solved: false,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Always false (a grid has at least one node).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when the capacities are held as exact integers (see the module docs).
    pub fn is_integral(&self) -> bool {
        !matches!(self.residuals, Residuals::Float(..))
    }

    /// Bytes per residual: 1 (i8 units), 2 (i16 units) or 8 (f64).
    pub fn residual_bytes(&self) -> usize {
        match self.residuals {
            Residuals::Narrow(..) => 1,
            Residuals::Wide(..) => 2,
            Residuals::Float(..) => 8,
        }
    }

    /// Switches to f64 capacities (before solving), e.g. to compare the representations.
    pub fn use_float_capacities(&mut self) {
        fn scaled<C: Capacity>(arrays: &Arrays<C>, unit: f64) -> Arrays<f64> {
            let scale = |v: &C| v.to_f64() * unit;
            Arrays {
                cap: scale(&arrays.cap),
                tr: arrays.tr.iter().map(scale).collect(),
                fr: arrays.fr.iter().map(scale).collect(),
                fd: arrays.fd.iter().map(scale).collect(),
            }
        }
        let float = match &self.residuals {
            Residuals::Float(_) => return,
            Residuals::Narrow(arrays, unit) => scaled(arrays, *unit),
            Residuals::Wide(arrays, unit) => scaled(arrays, *unit),
        };
        self.residuals = Residuals::Float(float);
    }

    /// Bytes held by the per-node arrays (the queues come on top, usually far smaller):
    /// 3 residuals ([`GridCut::residual_bytes`] each), flags (1), distance (1) and time (2).
    pub fn memory_bytes(&self) -> usize {
        let per_node = 3 * self.residual_bytes() + 1 + size_of::<Dist>() + size_of::<Stamp>();
        self.len() * per_node
    }

    /// Computes the maximum flow (once; later calls return the same value).
    ///
    /// The rows are cut into strips of a fixed height (a function of the grid size only); each
    /// strip is solved on its own, in parallel, ignoring the edges between strips. Those flows
    /// together are a valid flow of the whole grid, and the search trees of the strips are
    /// valid trees of the whole grid, so a last run over the whole grid continues from them,
    /// with only the nodes next to a strip border active. The labels are the source tree at
    /// the end: the nodes reachable from the source in the final residual graph, the same set
    /// for every maximum flow, so the result does not depend on the number of threads.
    pub fn max_flow(&mut self) -> f64 {
        if self.solved {
            return self.flow;
        }
        let (w, h) = (self.width, self.height);
        let (flags, dist, ts) = (&mut self.flags, &mut self.dist, &mut self.ts);
        let pushed = match &mut self.residuals {
            Residuals::Float(arrays) => solve(w, h, arrays, flags, dist, ts),
            Residuals::Narrow(arrays, unit) => solve(w, h, arrays, flags, dist, ts) * *unit,
            Residuals::Wide(arrays, unit) => solve(w, h, arrays, flags, dist, ts) * *unit,
        };
        self.flow = self.base_flow + pushed;
        self.solved = true;
        self.flow
    }

    /// True when node `i` is on the source side of the minimum cut found (the nodes reachable
    /// from the source in the final residual graph). Computes the flow first if needed.
    pub fn source_side(&mut self, i: usize) -> bool {
        self.max_flow();
        self.flags[i] & TREE_MASK == IN_S
    }

    /// The minimum-cut labelling: +1 on the source side, -1 on the sink side.
    pub fn labels(&mut self) -> Vec<Spin> {
        self.max_flow();
        self.flags.iter().map(|&f| label(f)).collect()
    }

    /// [`GridCut::labels`], written over the node flags' own memory (no new allocation).
    pub fn into_labels(mut self) -> Vec<Spin> {
        self.max_flow();
        std::mem::take(&mut self.flags)
            .into_iter()
            .map(label)
            .collect()
    }
}

/// +1 for a node in the source tree, else -1.
#[inline(always)]
fn label(flags: u8) -> Spin {
    if flags & TREE_MASK == IN_S { 1 } else { -1 }
}

/// Boykov-Kolmogorov on strips, then on the whole grid (see [`GridCut::max_flow`]); returns the
/// flow pushed, in capacity units.
fn solve<C: Capacity>(
    width: usize,
    height: usize,
    arrays: &mut Arrays<C>,
    flags: &mut [u8],
    dist: &mut [Dist],
    ts: &mut [Stamp],
) -> f64 {
    let (w, h) = (width, height);
    let strip = strip_rows(w, h);
    let chunk = strip * w;
    let cap = arrays.cap;
    let results: Vec<(f64, Stamp)> = if chunk >= arrays.tr.len() {
        // One strip: solved here, without rayon.
        let a = &mut *arrays;
        vec![solve_strip(
            w, cap, &mut a.tr, &mut a.fr, &mut a.fd, flags, dist, ts,
        )]
    } else {
        arrays
            .tr
            .par_chunks_mut(chunk)
            .zip(arrays.fr.par_chunks_mut(chunk))
            .zip(arrays.fd.par_chunks_mut(chunk))
            .zip(flags.par_chunks_mut(chunk))
            .zip(dist.par_chunks_mut(chunk))
            .zip(ts.par_chunks_mut(chunk))
            .map(|(((((tr, fr), fd), flags), dist), ts)| {
                solve_strip(w, cap, tr, fr, fd, flags, dist, ts)
            })
            .collect()
    };
    let mut flow = 0.0;
    let mut time = 0;
    for (f, t) in &results {
        flow += f;
        time = time.max(*t);
    }
    if results.len() > 1 {
        let mut region = Region {
            width: w,
            cap,
            tr: &mut arrays.tr,
            fr: &mut arrays.fr,
            fd: &mut arrays.fd,
            flags: &mut *flags,
            dist: &mut *dist,
            ts: &mut *ts,
            time,
            flow: 0.0,
        };
        let mut active = VecDeque::new();
        for border in (strip..h).step_by(strip) {
            for p in (border - 1) * w..(border + 1) * w {
                if region.tree(p) != 0 {
                    region.activate(&mut active, p);
                }
            }
        }
        region.run(active);
        flow += region.flow;
    }
    flow
}

/// The first phase on one strip (indices local to it): local pushes, the starting trees, then
/// Boykov-Kolmogorov; returns the flow pushed and the clock at the end.
#[allow(clippy::too_many_arguments)]
fn solve_strip<C: Capacity>(
    w: usize,
    cap: C,
    tr: &mut [C],
    fr: &mut [C],
    fd: &mut [C],
    flags: &mut [u8],
    dist: &mut [Dist],
    ts: &mut [Stamp],
) -> (f64, Stamp) {
    // Written once here, so that the search's first touch of a page is not a read (a read of
    // untouched zeroed memory and a later write cost two page faults).
    dist.fill(0);
    ts.fill(0);
    let mut region = Region {
        width: w,
        cap,
        tr,
        fr,
        fd,
        flags,
        dist,
        ts,
        time: START_TIME,
        flow: 0.0,
    };
    region.push_local();
    let active = region.init_trees();
    region.run(active);
    (region.flow, region.time)
}

/// True when [`GridCut::max_flow`] on a `width x height` grid runs on the calling thread (the grid
/// is one strip of at most [`ONE_THREAD_PIXELS`] nodes), so that rayon is not involved.
pub fn runs_on_one_thread(width: usize, height: usize) -> bool {
    width.saturating_mul(height) <= ONE_THREAD_PIXELS && height <= strip_rows(width, height)
}

/// Rows per strip of the first phase, a function of the grid size only: about 2^17 nodes
/// (about 1 MB of node arrays in the integer case, so that a strip's search stays in cache), and at
/// least 16 rows. Measured at 4096 x 4096 (10% noise): strips of 2^17 nodes ran about 1.6x
/// faster than strips of 2^21. Smaller grids are one strip, solved without handing work to
/// other threads.
fn strip_rows(width: usize, _height: usize) -> usize {
    (STRIP_NODES / width).max(16)
}

/// A node's distance to its terminal in its search tree (edges minus one), saturating at
/// [`FAR`]. One byte: trees deeper than 255 only lose precision in the choice of parents.
type Dist = u8;

/// A node's timestamp: the adoption stage at which its distance was last known exact. Two bytes:
/// the clock wraps around after 65535 stages of one search, and the reset then costs one pass over
/// the search's nodes (see [`Region::adopt`]); a search of a strip rarely gets there.
type Stamp = u16;

/// The largest distance held: it stands for any distance >= FAR, and the search never compares
/// such distances (see [`Region::grow`]). The library's unit tests use 3, so that saturated
/// distances are everywhere there.
const FAR: Dist = if cfg!(test) { 3 } else { Dist::MAX };

/// The clock of a strip's search at the start. The library's unit tests start close to the
/// wrap-around of the clock, so that the reset in [`Region::adopt`] runs there.
const START_TIME: Stamp = if cfg!(test) { Stamp::MAX - 40 } else { 0 };

/// Target number of nodes per strip.
const STRIP_NODES: usize = 1 << 17;

/// The flow to push from `p` to `q` along `source -> p -> q -> sink` (positive) or from `q` to
/// `p` along `source -> q -> p -> sink` (negative), given their terminal residuals and a pair
/// edge of capacity `cap` carrying no flow yet: the bottleneck, or zero when no such path exists.
#[inline(always)]
fn pair_delta<C: Capacity>(tp: C, tq: C, cap: C) -> C {
    // At most one of the two is positive: the first needs tp > 0, the second tp < 0.
    let forward = tp.cmin(-tq).cmin(cap).cmax(C::ZERO);
    let backward = (-tp).cmin(tq).cmin(cap).cmax(C::ZERO);
    forward - backward
}

/// The Boykov-Kolmogorov machinery over a band of whole rows of the grid (indices local to the
/// band; edges leaving the band are ignored).
struct Region<'a, C: Capacity> {
    width: usize,
    cap: C,
    tr: &'a mut [C],
    fr: &'a mut [C],
    fd: &'a mut [C],
    flags: &'a mut [u8],
    dist: &'a mut [Dist],
    ts: &'a mut [Stamp],
    time: Stamp,
    flow: f64,
}

impl<C: Capacity> Region<'_, C> {
    /// Pushes flow along every path `source -> p -> q -> sink` of two terminal edges and one
    /// pair edge, in one pass over the pairs: row by row, the pairs within the row (left to
    /// right), then the pairs between the row and the next. This is ordinary augmentation on the
    /// shortest paths, done without search trees (every pair edge still carries no flow when its
    /// turn comes); the trees are built afterwards from the residuals left. Every pair edge is
    /// pushed along at most once, so the flow pushed is the sum of the edges' |flow|.
    fn push_local(&mut self) {
        let cap = self.cap;
        if cap <= C::ZERO {
            return;
        }
        let (w, n) = (self.width, self.tr.len());
        for r in 0..n / w {
            let row = &mut self.tr[r * w..(r + 1) * w];
            let flow = &mut self.fr[r * w..(r + 1) * w];
            // Pairs (0, 1), (2, 3), ... are disjoint, then (1, 2), (3, 4), ...: no chain.
            for start in [0, 1] {
                let pairs = row[start..].chunks_exact_mut(2);
                let flows = flow[start..].chunks_exact_mut(2);
                for (pair, f) in pairs.zip(flows) {
                    let delta = pair_delta(pair[0], pair[1], cap);
                    pair[0] = pair[0] - delta;
                    pair[1] = pair[1] + delta;
                    f[0] = delta;
                }
            }
            if (r + 2) * w > n {
                break;
            }
            let (above, below) = self.tr[r * w..(r + 2) * w].split_at_mut(w);
            let flow = &mut self.fd[r * w..(r + 1) * w];
            for ((p, q), f) in above.iter_mut().zip(below.iter_mut()).zip(flow.iter_mut()) {
                let delta = pair_delta(*p, *q, cap);
                *p = *p - delta;
                *q = *q + delta;
                *f = delta;
            }
        }
        self.flow += C::abs_sum(self.fr) + C::abs_sum(self.fd);
    }

    /// Builds the starting search trees from the residuals that [`Region::push_local`] left, in
    /// three passes, and returns the active nodes in index order:
    ///
    /// 1. every node with a terminal residual joins that terminal's tree, the terminal as its
    ///    parent (branch-free);
    /// 2. in index order, every node still free that a neighbour in `S` can send flow to
    ///    (residual neighbour -> node > 0) joins `S` below that neighbour; failing that, one that
    ///    can send flow to a neighbour in `T` joins `T` below it. These are growth steps the
    ///    search would take first anyway; taken here, the free nodes that the local pushes leave
    ///    inside a region of one tree (typically a flipped pixel whose terminal residual its
    ///    neighbours used up) join it without making themselves and their neighbours active;
    /// 3. a node of a tree is active when it can grow: when the edge to a neighbour outside its
    ///    tree has residual capacity in the tree's direction (out of the node in `S`, into it in
    ///    `T`). This is the search's invariant for passive nodes; along the boundary between the
    ///    trees the local pushes have usually saturated those edges, so few nodes qualify. A
    ///    branch-free pass marks the nodes with a neighbour outside their tree, and only those
    ///    are checked.
    ///
    /// Distances count the edges to the terminal minus one: 0 for a child of a terminal, the
    /// parent's plus one in pass 2. Timestamps stay 0 (no later than the starting time), as the
    /// arrays hold them before the search.
    fn init_trees(&mut self) -> VecDeque<u32> {
        let (w, n) = (self.width, self.tr.len());
        let rows = n / w;
        for (f, &t) in self.flags.iter_mut().zip(self.tr.iter()) {
            let side = ((t > C::ZERO) as u8) << 3 | ((t < C::ZERO) as u8) << 4;
            *f = (*f & FIXED) | side | ((side != 0) as u8 * TERMINAL);
        }
        for p in 0..n {
            if self.flags[p] & TREE_MASK == 0 {
                self.claim(p);
            }
        }
        let mut queue: Vec<u32> = Vec::with_capacity(n / 8);
        let mut border = vec![0u8; w];
        let single_row = if rows == 1 {
            self.flags.to_vec()
        } else {
            Vec::new()
        };
        for r in 0..rows {
            let cur = &self.flags[r * w..(r + 1) * w];
            // A missing neighbour row is replaced by the other one, or by a copy of the row
            // itself on a one-row grid: neither ever adds a difference that is not there.
            let (above, below) = if rows == 1 {
                (&single_row[..], &single_row[..])
            } else {
                let other = |k: usize| &self.flags[k * w..(k + 1) * w];
                let above = if r > 0 { other(r - 1) } else { other(r + 1) };
                let below = if r + 1 < rows {
                    other(r + 1)
                } else {
                    other(r - 1)
                };
                (above, below)
            };
            let differs = |a: u8, b: u8| ((a ^ b) & TREE_MASK != 0) as u8;
            if w > 2 {
                let interior = border[1..w - 1]
                    .iter_mut()
                    .zip(cur.windows(3))
                    .zip(above[1..w - 1].iter().zip(&below[1..w - 1]));
                for ((b, c), (&u, &d)) in interior {
                    *b = (differs(c[1], c[0]) | differs(c[1], c[2]))
                        | (differs(c[1], u) | differs(c[1], d));
                }
            }
            // The two ends (one node when w = 1): a missing side neighbour is the node itself.
            let ends: &[usize] = if w > 1 { &[0, w - 1] } else { &[0] };
            for &c in ends {
                let left = cur[c.saturating_sub(1)];
                let right = cur[(c + 1).min(w - 1)];
                border[c] = differs(cur[c], left)
                    | differs(cur[c], right)
                    | differs(cur[c], above[c])
                    | differs(cur[c], below[c]);
            }
            for (c, &b) in border.iter().enumerate() {
                let p = r * w + c;
                if b != 0 && self.tree(p) != 0 && self.can_grow(p) {
                    self.flags[p] |= ACTIVE;
                    queue.push(p as u32);
                }
            }
        }
        VecDeque::from(queue)
    }

    /// True when `p`, in a tree, has a residual edge in its tree's direction to a neighbour
    /// outside the tree (pass 3 of [`Region::init_trees`]).
    #[inline]
    fn can_grow(&self, p: usize) -> bool {
        let tree = self.tree(p);
        self.directions(p).into_iter().any(|d| {
            d != NONE
                && self.tree(self.neighbour(p, d)) != tree
                && self.tree_residual(p, d, tree) > C::ZERO
        })
    }

    /// Pass 2 of [`Region::init_trees`] for the free node `p`.
    #[inline]
    fn claim(&mut self, p: usize) {
        let (mut s_parent, mut t_parent) = (NONE, NONE);
        for d in self.directions(p) {
            if d == NONE {
                continue;
            }
            let q = self.neighbour(p, d);
            match self.tree(q) {
                IN_S if self.res_out(q, opposite(d)) > C::ZERO => s_parent = d,
                IN_T if self.res_out(p, d) > C::ZERO => t_parent = d,
                _ => {}
            }
        }
        let (tree, parent) = if s_parent != NONE {
            (IN_S, s_parent)
        } else if t_parent != NONE {
            (IN_T, t_parent)
        } else {
            return;
        };
        self.flags[p] |= tree | parent;
        let q = self.neighbour(p, parent);
        self.dist[p] = self.dist[q].min(FAR - 1) + 1;
    }
    /// Growth, augmentation and adoption until no active node is left.
    fn run(&mut self, mut active: VecDeque<u32>) {
        let mut orphans: VecDeque<u32> = VecDeque::new();
        while let Some(&front) = active.front() {
            let p = front as usize;
            let tree = self.tree(p);
            if tree == 0 {
                self.flags[p] &= !ACTIVE;
                active.pop_front();
                continue;
            }
            match self.grow(p, tree, &mut active) {
                Some((s_end, t_end, from, dir)) => {
                    self.augment(s_end, t_end, from, dir, &mut orphans);
                    self.adopt(&mut orphans, &mut active);
                }
                None => {
                    self.flags[p] &= !ACTIVE;
                    active.pop_front();
                }
            }
        }
    }

    #[inline(always)]
    fn neighbour(&self, p: usize, d: u8) -> usize {
        match d {
            RIGHT => p + 1,
            LEFT => p - 1,
            DOWN => p + self.width,
            _ => p - self.width,
        }
    }

    /// Residual capacity of the edge from `p` to its neighbour in direction `d`.
    #[inline(always)]
    fn res_out(&self, p: usize, d: u8) -> C {
        match d {
            RIGHT => self.cap - self.fr[p],
            LEFT => self.cap + self.fr[p - 1],
            DOWN => self.cap - self.fd[p],
            _ => self.cap + self.fd[p - self.width],
        }
    }

    /// Residual capacity of the tree edge between `parent` and its neighbour in direction `d`
    /// (the child), in the direction flow takes along it: parent -> child in the source tree,
    /// child -> parent in the sink tree.
    #[inline(always)]
    fn tree_residual(&self, parent: usize, d: u8, tree: u8) -> C {
        if tree == IN_S {
            self.res_out(parent, d)
        } else {
            self.res_out(self.neighbour(parent, d), opposite(d))
        }
    }

    /// Pushes `delta` (at most the residual) from `p` to its neighbour in direction `d`; returns
    /// true when the edge is saturated afterwards. A push of the whole residual sets the flow to
    /// exactly the capacity, so saturation is exact in floating point.
    #[inline(always)]
    fn push_out(&mut self, p: usize, d: u8, delta: C) -> bool {
        let cap = self.cap;
        let (f, forward) = match d {
            RIGHT => (&mut self.fr[p], true),
            LEFT => (&mut self.fr[p - 1], false),
            DOWN => (&mut self.fd[p], true),
            _ => (&mut self.fd[p - self.width], false),
        };
        if forward {
            if delta >= cap - *f {
                *f = cap;
                return true;
            }
            *f = *f + delta;
            if *f >= cap {
                *f = cap;
                return true;
            }
        } else {
            if delta >= cap + *f {
                *f = -cap;
                return true;
            }
            *f = *f - delta;
            if *f <= -cap {
                *f = -cap;
                return true;
            }
        }
        false
    }

    /// The directions from `p` that stay on the grid (`NONE` for those that leave it).
    #[inline(always)]
    fn directions(&self, p: usize) -> [u8; 4] {
        let f = self.flags[p];
        [
            if f & RIGHT_EDGE == 0 { RIGHT } else { NONE },
            if f & LEFT_EDGE == 0 { LEFT } else { NONE },
            if p + self.width < self.tr.len() {
                DOWN
            } else {
                NONE
            },
            if p >= self.width { UP } else { NONE },
        ]
    }

    #[inline(always)]
    fn tree(&self, p: usize) -> u8 {
        self.flags[p] & TREE_MASK
    }

    #[inline(always)]
    fn parent(&self, p: usize) -> u8 {
        self.flags[p] & PARENT_MASK
    }

    #[inline(always)]
    fn set_parent(&mut self, p: usize, d: u8) {
        self.flags[p] = (self.flags[p] & !PARENT_MASK) | d;
    }

    #[inline(always)]
    fn activate(&mut self, queue: &mut VecDeque<u32>, p: usize) {
        if self.flags[p] & ACTIVE == 0 {
            self.flags[p] |= ACTIVE;
            queue.push_back(p as u32);
        }
    }

    /// Growth from active node `p` of tree `tree`; returns an augmenting path when `p` touches
    /// the other tree: `(end in S, end in T, tail of the middle edge, its direction)`.
    #[inline]
    fn grow(
        &mut self,
        p: usize,
        tree: u8,
        active: &mut VecDeque<u32>,
    ) -> Option<(usize, usize, usize, u8)> {
        for d in self.directions(p) {
            if d == NONE {
                continue;
            }
            let q = self.neighbour(p, d);
            if self.tree_residual(p, d, tree) <= C::ZERO {
                continue;
            }
            let qt = self.tree(q);
            if qt == 0 {
                self.flags[q] = (self.flags[q] & (ACTIVE | FIXED)) | tree | opposite(d);
                self.dist[q] = self.dist[p].min(FAR - 1) + 1;
                self.ts[q] = self.ts[p];
                self.activate(active, q);
            } else if qt != tree {
                return Some(if tree == IN_S {
                    (p, q, p, d)
                } else {
                    (q, p, q, opposite(d))
                });
            } else if self.ts[q] <= self.ts[p] && self.dist[q] > self.dist[p] && self.dist[p] < FAR
            {
                // The paper's heuristic: re-hang q below p when p is closer to the terminal
                // (only on exact distances: FAR stands for any distance >= FAR).
                self.set_parent(q, opposite(d));
                self.ts[q] = self.ts[p];
                self.dist[q] = self.dist[p] + 1;
            }
        }
        None
    }

    /// Pushes the bottleneck along the path source -> ... -> s_end -> t_end -> ... -> sink.
    fn augment(
        &mut self,
        s_end: usize,
        t_end: usize,
        from: usize,
        dir: u8,
        orphans: &mut VecDeque<u32>,
    ) {
        let mut delta = self.res_out(from, dir);
        // Bottleneck on the source side: tree edges run parent -> child.
        let mut u = s_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                delta = delta.cmin(self.tr[u]);
                break;
            }
            let v = self.neighbour(u, pd);
            delta = delta.cmin(self.res_out(v, opposite(pd)));
            u = v;
        }
        // Sink side: tree edges run child -> parent.
        let mut u = t_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                delta = delta.cmin(-self.tr[u]);
                break;
            }
            delta = delta.cmin(self.res_out(u, pd));
            u = self.neighbour(u, pd);
        }
        debug_assert!(delta > C::ZERO);
        self.push_out(from, dir, delta);
        let mut u = s_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                if self.tr[u] <= delta {
                    self.tr[u] = C::ZERO;
                    self.make_orphan(u, orphans);
                } else {
                    self.tr[u] = self.tr[u] - delta;
                }
                break;
            }
            let v = self.neighbour(u, pd);
            if self.push_out(v, opposite(pd), delta) {
                self.make_orphan(u, orphans);
            }
            u = v;
        }
        let mut u = t_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                if -self.tr[u] <= delta {
                    self.tr[u] = C::ZERO;
                    self.make_orphan(u, orphans);
                } else {
                    self.tr[u] = self.tr[u] + delta;
                }
                break;
            }
            let v = self.neighbour(u, pd);
            if self.push_out(u, pd, delta) {
                self.make_orphan(u, orphans);
            }
            u = v;
        }
        self.flow += delta.to_f64();
    }

    #[inline]
    fn make_orphan(&mut self, u: usize, orphans: &mut VecDeque<u32>) {
        self.set_parent(u, NONE);
        orphans.push_back(u as u32);
    }

    /// Walks from `q` towards its root; returns the number of edges to the terminal minus one
    /// (the distance convention of [`Region::init_trees`]), or None when the walk ends at an
    /// orphan. Marks the nodes visited with the current time.
    fn origin_distance(&mut self, q: usize) -> Option<u32> {
        let mut len = 0u32;
        let mut u = q;
        loop {
            if self.ts[u] == self.time {
                len += self.dist[u] as u32;
                break;
            }
            let pd = self.parent(u);
            if pd == NONE {
                return None;
            }
            if pd == TERMINAL {
                break;
            }
            len += 1;
            u = self.neighbour(u, pd);
        }
        // Second walk: record the distances found, so later checks stop early.
        let mut u = q;
        let mut d = len;
        while self.ts[u] != self.time {
            self.ts[u] = self.time;
            self.dist[u] = d.min(FAR as u32) as Dist;
            let pd = self.parent(u);
            if pd == TERMINAL {
                break;
            }
            u = self.neighbour(u, pd);
            d -= 1;
        }
        Some(len)
    }

    /// Adoption stage: finds a new valid parent for every orphan or frees it.
    fn adopt(&mut self, orphans: &mut VecDeque<u32>, active: &mut VecDeque<u32>) {
        self.time = self.time.wrapping_add(1);
        if self.time == 0 {
            // After 2^16 adoption stages: forget all timestamps (0 is never current) and the
            // distances they vouched for. With every stamp equal, an old distance could hang a
            // node below its own descendant (a cycle); FAR is never compared (see grow), and a
            // child of a terminal is at distance 0 whatever the time.
            let nodes = self
                .ts
                .iter_mut()
                .zip(self.dist.iter_mut())
                .zip(self.flags.iter());
            for ((t, d), &f) in nodes {
                *t = 0;
                *d = if f & PARENT_MASK == TERMINAL { 0 } else { FAR };
            }
            self.time = 1;
        }
        while let Some(o) = orphans.pop_front() {
            let p = o as usize;
            let tree = self.tree(p);
            let mut best = NONE;
            let mut best_dist = u32::MAX;
            for d in self.directions(p) {
                if d == NONE {
                    continue;
                }
                let q = self.neighbour(p, d);
                if self.tree(q) != tree || self.tree_residual(q, opposite(d), tree) <= C::ZERO {
                    continue;
                }
                if let Some(len) = self.origin_distance(q)
                    && len < best_dist
                {
                    best = d;
                    best_dist = len;
                }
            }
            if best != NONE {
                self.set_parent(p, best);
                self.ts[p] = self.time;
                self.dist[p] = (best_dist + 1).min(FAR as u32) as Dist;
                continue;
            }
            // No valid parent: p becomes free; its tree neighbours may grow into it again.
            for d in self.directions(p) {
                if d == NONE {
                    continue;
                }
                let q = self.neighbour(p, d);
                if self.tree(q) != tree {
                    continue;
                }
                if self.tree_residual(q, opposite(d), tree) > C::ZERO {
                    self.activate(active, q);
                }
                if self.parent(q) == opposite(d) {
                    self.make_orphan(q, orphans);
                }
            }
            self.flags[p] &= ACTIVE | FIXED;
        }
    }
}

/// The error for a negative coupling, which graph cut cannot handle.
fn negative_beta(beta: f64) -> Error {
    Error::param(
        "beta",
        format!(
            "{beta} is negative: the energy is not submodular, so graph cut cannot minimise it \
             exactly; use --method icm, anneal or gibbs"
        ),
    )
}

/// The exact minimum-energy labelling of a grid energy with `beta >= 0`.
pub fn graph_cut(energy: &GridEnergy<'_>) -> Result<Vec<Spin>> {
    Ok(GridCut::from_energy(energy)?.into_labels())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_bottleneck_is_found() {
        // 3 x 1: source 5 into node 0, sink 4 from node 2, pair capacity 3: max flow 3.
        let mut g = GridCut::new(3, 1, 3.0, &[5.0, 0.0, 0.0], &[0.0, 0.0, 4.0]).unwrap();
        assert_eq!(g.max_flow(), 3.0);
        assert!(g.source_side(0));
        assert!(!g.source_side(2));
    }

    #[test]
    fn decimal_capacities_find_their_common_unit() {
        let unit = common_unit(&[2.0, 4.2, 4.2]).unwrap();
        assert!((unit - 0.2).abs() < 1e-12, "{unit}");
        assert_eq!(common_unit(&[3.0, 6.0, 0.0]), Some(3.0));
        assert_eq!(common_unit(&[1.0, std::f64::consts::PI]), None);
        assert_eq!(common_unit(&[0.0]), None);
        let x = [1i8, -1, 1, 1];
        let e = GridEnergy::new(2, 2, 1.0, 2.1, 0.0, &x).unwrap();
        assert!(GridCut::from_energy(&e).unwrap().is_integral());
        let e = GridEnergy::new(2, 2, 1.0, std::f64::consts::E, 0.0, &x).unwrap();
        assert!(!GridCut::from_energy(&e).unwrap().is_integral());
    }

    /// Max-flow by ac-library-rs (Dinic) on the same grid.
    fn reference_flow(w: usize, h: usize, pair: i64, source: &[i64], sink: &[i64]) -> i64 {
        let n = w * h;
        let mut g = ac_library::MfGraph::<i64>::new(n + 2);
        for i in 0..n {
            g.add_edge(n, i, source[i]);
            g.add_edge(i, n + 1, sink[i]);
            if i % w + 1 < w {
                g.add_edge(i, i + 1, pair);
                g.add_edge(i + 1, i, pair);
            }
            if i + w < n {
                g.add_edge(i, i + w, pair);
                g.add_edge(i + w, i, pair);
            }
        }
        g.flow(n, n + 1)
    }

    #[test]
    fn saturated_distances_keep_the_flow_maximal_and_the_cut_minimal() {
        // Here FAR is 3, so most tree distances are saturated and the re-hanging heuristic is
        // mostly skipped, and every search starts 40 stages before the clock wraps around, so
        // the reset runs. Flows must still equal an independent max-flow and the labels must be
        // a cut of that capacity, in all three capacity representations, at the i8 limit (63
        // units) and just past it (64), on one strip and on several.
        use rand::RngExt;
        let mut rng = crate::rng::from_seed(11);
        let shapes = [(7, 9), (40, 31), (130, 90), (64, 300), (4096, 40)];
        for (k, &(w, h)) in shapes.iter().cycle().take(20).enumerate() {
            let n = w * h;
            let (pair, top, scale, bytes) = match k % 4 {
                0 => (rng.random_range(1..6), 12, 1, 1),
                1 => (rng.random_range(1..6), 12, 41, 2),
                2 => (63, 64, 1, 1),
                _ => (64, 65, 1, 2),
            };
            if n > 100_000 && top > 12 {
                continue; // the reference (Dinic) takes seconds on these
            }
            let mut draw = || rng.random_range(0..top) * scale;
            let source: Vec<i64> = (0..n).map(|_| draw()).collect();
            let sink: Vec<i64> = (0..n).map(|_| draw()).collect();
            let want = reference_flow(w, h, pair, &source, &sink);
            let to_f = |v: &[i64]| v.iter().map(|&c| c as f64).collect::<Vec<_>>();
            for float in [false, true] {
                let mut g = GridCut::new(w, h, pair as f64, &to_f(&source), &to_f(&sink)).unwrap();
                if float {
                    g.use_float_capacities();
                }
                let expected_bytes = if float { 8 } else { bytes };
                assert_eq!(g.residual_bytes(), expected_bytes, "{w}x{h} case {k}");
                assert_eq!(g.max_flow(), want as f64, "{w}x{h} case {k} float {float}");
                let mut cut = 0;
                for i in 0..n {
                    let si = g.source_side(i);
                    cut += if si { sink[i] } else { source[i] };
                    for j in [
                        (i % w + 1 < w).then_some(i + 1),
                        (i + w < n).then_some(i + w),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        if si != g.source_side(j) {
                            cut += pair;
                        }
                    }
                }
                assert_eq!(
                    cut, want,
                    "{w}x{h} case {k} float {float}: not a minimum cut"
                );
            }
        }
    }

    #[test]
    fn near_equal_capacities_are_not_rounded_together() {
        // 2 against 2 +- 2e-13: not whole multiples of one unit to within a few ulps, so f64.
        let e = GridEnergy::new(2, 1, 1.0, 1.0, -1e-13, &[1, -1]).unwrap();
        assert!(!GridCut::from_energy(&e).unwrap().is_integral());
        let labels = graph_cut(&e).unwrap();
        let best = [[1, 1], [1, -1], [-1, 1], [-1, -1]]
            .iter()
            .map(|s| e.energy(s))
            .fold(f64::INFINITY, f64::min);
        assert_eq!(e.energy(&labels), best, "{labels:?}");
    }

    #[test]
    fn parallel_terminal_capacities_count_directly() {
        let mut g = GridCut::new(2, 1, 0.0, &[2.0, 1.0], &[3.0, 0.5]).unwrap();
        assert_eq!(g.max_flow(), 2.5);
    }

    /// The capacity of the cut that puts `side[i]` nodes on the source side.
    fn cut_value(w: usize, pair: f64, source: &[f64], sink: &[f64], side: &[bool]) -> f64 {
        let n = side.len();
        let mut cut = 0.0;
        for i in 0..n {
            cut += if side[i] { sink[i] } else { source[i] };
            if i % w + 1 < w && side[i] != side[i + 1] {
                cut += pair;
            }
            if i + w < n && side[i] != side[i + w] {
                cut += pair;
            }
        }
        cut
    }

    #[test]
    fn small_grids_of_every_shape_match_brute_force() {
        // Every shape up to 12 nodes (single rows and columns included), random integer
        // capacities with many zeros and ties (so that the local pushes leave free nodes for the
        // starting trees to claim, next to both trees), in integer and f64 form: the flow must be
        // the minimum over all 2^n cuts, and the labels a cut of that value.
        use rand::RngExt;
        let mut rng = crate::rng::from_seed(5);
        for w in 1..=12usize {
            for h in 1..=12 / w {
                let n = w * h;
                for trial in 0..40 {
                    let pair = rng.random_range(0..4) as f64;
                    let top = if trial % 2 == 0 { 4 } else { 9 };
                    let mut draw = || (rng.random_range(0..top) as f64 - 2.0).max(0.0);
                    let source: Vec<f64> = (0..n).map(|_| draw()).collect();
                    let sink: Vec<f64> = (0..n).map(|_| draw()).collect();
                    let best = (0u32..1 << n)
                        .map(|mask| {
                            let side: Vec<bool> = (0..n).map(|i| mask >> i & 1 == 1).collect();
                            cut_value(w, pair, &source, &sink, &side)
                        })
                        .fold(f64::INFINITY, f64::min);
                    for float in [false, true] {
                        let mut g = GridCut::new(w, h, pair, &source, &sink).unwrap();
                        if float {
                            g.use_float_capacities();
                        }
                        let what = format!("{w}x{h} trial {trial} float {float}");
                        assert_eq!(g.max_flow(), best, "{what}");
                        let side: Vec<bool> = (0..n).map(|i| g.source_side(i)).collect();
                        assert_eq!(cut_value(w, pair, &source, &sink, &side), best, "{what}");
                    }
                }
            }
        }
    }

    /// The number of active nodes after the local pushes and the starting trees.
    fn starting_active_nodes<C: Capacity>(g: &mut GridCut, arrays: &mut Arrays<C>) -> usize {
        let mut region = Region {
            width: g.width,
            cap: arrays.cap,
            tr: &mut arrays.tr,
            fr: &mut arrays.fr,
            fd: &mut arrays.fd,
            flags: &mut g.flags,
            dist: &mut g.dist,
            ts: &mut g.ts,
            time: START_TIME,
            flow: 0.0,
        };
        region.push_local();
        region.init_trees().len()
    }

    #[test]
    fn isolated_flipped_pixels_leave_no_node_active() {
        // PRML's capacities in units of 0.2: a white 8 x 8 image (source 21) with three
        // isolated black pixels (sink 21), pair capacity 10. The local pushes use up each black
        // pixel's sink capacity (10 + 10 + 1 from its neighbours), which leaves it free inside
        // the source tree; the starting trees hang it below a neighbour, so no node is active
        // and the search has nothing to do. The flow is 3 x 21.
        let (w, h) = (8, 8);
        let black = [2 * w + 2, 5 * w + 5, 6 * w + 2];
        let mut source = vec![21.0; w * h];
        let mut sink = vec![0.0; w * h];
        for &b in &black {
            (source[b], sink[b]) = (0.0, 21.0);
        }
        let mut g = GridCut::new(w, h, 10.0, &source, &sink).unwrap();
        let mut residuals = g.residuals.clone();
        let active = match &mut residuals {
            Residuals::Narrow(arrays, _) => starting_active_nodes(&mut g.clone(), arrays),
            other => panic!("expected 8-bit units, got {other:?}"),
        };
        assert_eq!(active, 0);
        assert_eq!(g.max_flow(), 63.0);
        assert!((0..w * h).all(|i| g.source_side(i)));
    }

    #[test]
    fn node_arrays_take_seven_bytes_per_node_with_8_bit_units() {
        // 3 one-byte residuals, the flags, a one-byte distance and a two-byte timestamp.
        let x = [1i8, -1, 1, 1, -1, -1];
        let e = GridEnergy::new(3, 2, 1.0, 2.1, 0.0, &x).unwrap();
        let g = GridCut::from_energy(&e).unwrap();
        assert_eq!(g.residual_bytes(), 1);
        assert_eq!(g.memory_bytes(), 7 * 6);
    }
}
