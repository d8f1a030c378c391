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
//! source, negative: to the sink) after pushing `min(source, sink)` straight through. Per node
//! this is 3 f64 (terminal residual, right and down flows), two u32 (distance and timestamp)
//! and one byte of flags: 33 bytes, about 550 MB for 4096 x 4096.

use std::collections::VecDeque;

use rayon::prelude::*;

use super::GridEnergy;
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

/// A max-flow / min-cut problem on a `width x height` grid: every 4-neighbour pair joined by
/// edges of capacity `pair_capacity` in both directions, and each node joined to the source and
/// the sink by its own capacities.
#[derive(Debug, Clone)]
pub struct GridCut {
    width: usize,
    height: usize,
    cap: f64,
    /// Terminal residual: > 0 from the source into the node, < 0 from the node to the sink.
    tr: Vec<f64>,
    /// Flow on edge (i, i + 1), in [-cap, cap] (positive: rightwards).
    fr: Vec<f64>,
    /// Flow on edge (i, i + width), in [-cap, cap] (positive: downwards).
    fd: Vec<f64>,
    flags: Vec<u8>,
    dist: Vec<u32>,
    ts: Vec<u32>,
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
            return Err(Error::NotSubmodular { i: 0, j: 1 });
        }
        let (h, eta) = (energy.field(), energy.eta());
        // a_i = h - eta x_i; terminal residual = source - sink = -2 a_i.
        let tr = energy
            .evidence()
            .iter()
            .map(|&x| -2.0 * (h - eta * x as f64))
            .collect();
        Ok(Self::from_residuals(
            energy.width(),
            energy.height(),
            2.0 * beta,
            tr,
            0.0,
        ))
    }

    fn from_residuals(width: usize, height: usize, cap: f64, tr: Vec<f64>, flow: f64) -> Self {
        let n = width * height;
        let mut flags = vec![0u8; n];
        for row in flags.chunks_exact_mut(width) {
            row[0] |= LEFT_EDGE;
            row[width - 1] |= RIGHT_EDGE;
        }
        GridCut {
            width,
            height,
            cap,
            tr,
            fr: vec![0.0; n],
            fd: vec![0.0; n],
            flags,
            dist: vec![0; n],
            ts: vec![0; n],
            flow,
            solved: false,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.tr.len()
    }

    /// Always false (a grid has at least one node).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes held by the per-node arrays (the queues come on top, usually far smaller).
    pub fn memory_bytes(&self) -> usize {
        self.len() * (3 * 8 + 1 + 2 * 4)
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
        let strip = strip_rows(w, h);
        let chunk = strip * w;
        let cap = self.cap;
        let results: Vec<(f64, u32)> = self
            .tr
            .par_chunks_mut(chunk)
            .zip(self.fr.par_chunks_mut(chunk))
            .zip(self.fd.par_chunks_mut(chunk))
            .zip(self.flags.par_chunks_mut(chunk))
            .zip(self.dist.par_chunks_mut(chunk))
            .zip(self.ts.par_chunks_mut(chunk))
            .map(|(((((tr, fr), fd), flags), dist), ts)| {
                let mut region = Region {
                    width: w,
                    cap,
                    tr,
                    fr,
                    fd,
                    flags,
                    dist,
                    ts,
                    time: 1,
                    flow: 0.0,
                };
                region.push_local();
                region.init_trees();
                let n = region.tr.len();
                let mut active = VecDeque::new();
                for p in 0..n {
                    let tree = region.tree(p);
                    if tree != 0
                        && region
                            .directions(p)
                            .into_iter()
                            .any(|d| d != NONE && region.tree(region.neighbour(p, d)) != tree)
                    {
                        region.activate(&mut active, p);
                    }
                }
                region.run(active);
                (region.flow, region.time)
            })
            .collect();
        let mut flow = self.flow;
        let mut time = 0;
        for (f, t) in &results {
            flow += f;
            time = time.max(*t);
        }
        if results.len() > 1 {
            let mut region = Region {
                width: w,
                cap,
                tr: &mut self.tr,
                fr: &mut self.fr,
                fd: &mut self.fd,
                flags: &mut self.flags,
                dist: &mut self.dist,
                ts: &mut self.ts,
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
        self.flow = flow;
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
        self.flags
            .iter()
            .map(|&f| if f & TREE_MASK == IN_S { 1 } else { -1 })
            .collect()
    }
}

/// Rows per strip of the first phase, a function of the grid size only: about 2^17 nodes
/// (4 MB of node arrays, so that a strip's search stays in cache), at least 16 rows, and at least
/// two strips when the grid has 32 rows or more. Measured at 4096 x 4096 (10% noise): strips of
/// 2^17 nodes ran about 1.6x faster than strips of 2^21.
fn strip_rows(width: usize, height: usize) -> usize {
    (STRIP_NODES / width).min(height.div_ceil(2)).max(16)
}

/// Target number of nodes per strip.
const STRIP_NODES: usize = 1 << 17;

/// The Boykov-Kolmogorov machinery over a band of whole rows of the grid (indices local to the
/// band; edges leaving the band are ignored).
struct Region<'a> {
    width: usize,
    cap: f64,
    tr: &'a mut [f64],
    fr: &'a mut [f64],
    fd: &'a mut [f64],
    flags: &'a mut [u8],
    dist: &'a mut [u32],
    ts: &'a mut [u32],
    time: u32,
    flow: f64,
}

impl Region<'_> {
    /// Pushes flow along every path `source -> p -> q -> sink` of two terminal edges and one
    /// pair edge, in one pass over the pairs (right and down neighbours, row-major). This is
    /// ordinary augmentation on the shortest paths, done without search trees; the trees are
    /// built afterwards from the residuals left.
    fn push_local(&mut self) {
        if self.cap <= 0.0 {
            return;
        }
        let n = self.tr.len();
        for p in 0..n {
            if self.tr[p] == 0.0 {
                continue;
            }
            if self.flags[p] & RIGHT_EDGE == 0 {
                self.push_pair(p, RIGHT);
            }
            if p + self.width < n {
                self.push_pair(p, DOWN);
            }
        }
    }

    /// Augments along `source -> p -> q -> sink` or `source -> q -> p -> sink`, where `q` is
    /// the neighbour of `p` in direction `d`, when the terminal residuals allow it.
    #[inline(always)]
    fn push_pair(&mut self, p: usize, d: u8) {
        let q = self.neighbour(p, d);
        let (tp, tq) = (self.tr[p], self.tr[q]);
        let (from, to, dir) = if tp > 0.0 && tq < 0.0 {
            (p, q, d)
        } else if tp < 0.0 && tq > 0.0 {
            (q, p, opposite(d))
        } else {
            return;
        };
        let delta = self.tr[from].min(-self.tr[to]).min(self.res_out(from, dir));
        if delta > 0.0 {
            self.push_out(from, dir, delta);
            self.tr[from] -= delta;
            self.tr[to] += delta;
            self.flow += delta;
        }
    }

    /// Puts every node with a terminal residual in the tree of that terminal.
    fn init_trees(&mut self) {
        for p in 0..self.tr.len() {
            let t = self.tr[p];
            if t > 0.0 {
                self.flags[p] |= IN_S | TERMINAL;
            } else if t < 0.0 {
                self.flags[p] |= IN_T | TERMINAL;
            } else {
                continue;
            }
            self.dist[p] = 1;
            self.ts[p] = self.time;
        }
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
    fn res_out(&self, p: usize, d: u8) -> f64 {
        match d {
            RIGHT => self.cap - self.fr[p],
            LEFT => self.cap + self.fr[p - 1],
            DOWN => self.cap - self.fd[p],
            _ => self.cap + self.fd[p - self.width],
        }
    }

    /// Pushes `delta` (at most the residual) from `p` to its neighbour in direction `d`; returns
    /// true when the edge is saturated afterwards. A push of the whole residual sets the flow to
    /// exactly the capacity, so saturation is exact in floating point.
    #[inline(always)]
    fn push_out(&mut self, p: usize, d: u8, delta: f64) -> bool {
        let cap = self.cap;
        let (f, sign) = match d {
            RIGHT => (&mut self.fr[p], 1.0),
            LEFT => (&mut self.fr[p - 1], -1.0),
            DOWN => (&mut self.fd[p], 1.0),
            _ => (&mut self.fd[p - self.width], -1.0),
        };
        let residual = cap - sign * *f;
        if delta >= residual {
            *f = sign * cap;
            true
        } else {
            *f += sign * delta;
            if sign * *f >= cap {
                *f = sign * cap;
                true
            } else {
                false
            }
        }
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
            let residual = if tree == IN_S {
                self.res_out(p, d)
            } else {
                self.res_out(q, opposite(d))
            };
            if residual <= 0.0 {
                continue;
            }
            let qt = self.tree(q);
            if qt == 0 {
                self.flags[q] = (self.flags[q] & (ACTIVE | FIXED)) | tree | opposite(d);
                self.dist[q] = self.dist[p] + 1;
                self.ts[q] = self.ts[p];
                self.activate(active, q);
            } else if qt != tree {
                return Some(if tree == IN_S {
                    (p, q, p, d)
                } else {
                    (q, p, q, opposite(d))
                });
            } else if self.ts[q] <= self.ts[p] && self.dist[q] > self.dist[p] {
                // The paper's heuristic: re-hang q below p when p is closer to the terminal.
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
                delta = delta.min(self.tr[u]);
                break;
            }
            let v = self.neighbour(u, pd);
            delta = delta.min(self.res_out(v, opposite(pd)));
            u = v;
        }
        // Sink side: tree edges run child -> parent.
        let mut u = t_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                delta = delta.min(-self.tr[u]);
                break;
            }
            delta = delta.min(self.res_out(u, pd));
            u = self.neighbour(u, pd);
        }
        debug_assert!(delta > 0.0);
        self.push_out(from, dir, delta);
        let mut u = s_end;
        loop {
            let pd = self.parent(u);
            if pd == TERMINAL {
                if self.tr[u] <= delta {
                    self.tr[u] = 0.0;
                    self.make_orphan(u, orphans);
                } else {
                    self.tr[u] -= delta;
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
                    self.tr[u] = 0.0;
                    self.make_orphan(u, orphans);
                } else {
                    self.tr[u] += delta;
                }
                break;
            }
            let v = self.neighbour(u, pd);
            if self.push_out(u, pd, delta) {
                self.make_orphan(u, orphans);
            }
            u = v;
        }
        self.flow += delta;
    }

    #[inline]
    fn make_orphan(&mut self, u: usize, orphans: &mut VecDeque<u32>) {
        self.set_parent(u, NONE);
        orphans.push_back(u as u32);
    }

    /// Walks from `q` towards its root; returns the number of edges to the terminal, or None
    /// when the walk ends at an orphan. Marks the nodes visited with the current time.
    fn origin_distance(&mut self, q: usize) -> Option<u32> {
        let mut len = 0u32;
        let mut u = q;
        loop {
            if self.ts[u] == self.time {
                len += self.dist[u];
                break;
            }
            let pd = self.parent(u);
            if pd == NONE {
                return None;
            }
            len += 1;
            if pd == TERMINAL {
                break;
            }
            u = self.neighbour(u, pd);
        }
        // Second walk: record the distances found, so later checks stop early.
        let mut u = q;
        let mut d = len;
        while self.ts[u] != self.time {
            self.ts[u] = self.time;
            self.dist[u] = d;
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
            // After 2^32 augmentations: forget all timestamps (0 is never current).
            self.ts.iter_mut().for_each(|t| *t = 0);
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
                if self.tree(q) != tree {
                    continue;
                }
                let residual = if tree == IN_S {
                    self.res_out(q, opposite(d))
                } else {
                    self.res_out(p, d)
                };
                if residual <= 0.0 {
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
                self.dist[p] = best_dist + 1;
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
                let residual = if tree == IN_S {
                    self.res_out(q, opposite(d))
                } else {
                    self.res_out(p, d)
                };
                if residual > 0.0 {
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

/// The exact minimum-energy labelling of a grid energy with `beta >= 0`.
pub fn graph_cut(energy: &GridEnergy<'_>) -> Result<Vec<Spin>> {
    if energy.beta() < 0.0 {
        return Err(Error::param(
            "beta",
            format!(
                "{} is negative: the energy is not submodular, so graph cut cannot minimise it \
                 exactly; use --method icm, anneal or gibbs",
                energy.beta()
            ),
        ));
    }
    let mut cut = GridCut::from_energy(energy)?;
    Ok(cut.labels())
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
    fn parallel_terminal_capacities_count_directly() {
        let mut g = GridCut::new(2, 1, 0.0, &[2.0, 1.0], &[3.0, 0.5]).unwrap();
        assert_eq!(g.max_flow(), 2.5);
    }
}
