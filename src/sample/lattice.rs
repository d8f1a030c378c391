//! Checkerboard Gibbs and Metropolis on a bipartite [`IsingLattice`], rayon-parallel over rows.
//!
//! # Algorithm
//! Colour site (r, c) by (r + c) mod 2. On a lattice whose sides are even (or open, or of
//! length 1 on a periodic side, which has no bonds along it) every bond joins two colours, so all
//! sites of one colour are conditionally independent given the other colour and can be updated
//! at once. One sweep updates colour 0, then colour 1, with the same single-site rules as
//! [`super::general`]: flip with probability 1 / (1 + exp(beta Delta)) (Gibbs) or
//! min(1, exp(-beta Delta)) (Metropolis), Delta = 2 s_i (J S_i + h), S_i the neighbour sum.
//!
//! # Layout and speed
//! Each colour is stored in its own array, `height` rows of `width / 2` spins (i8). For the site
//! k of colour c in row r (column 2k + o with o = (r + c) mod 2), the neighbours above and below
//! are entry k of the other colour's rows r -+ 1, and the left and right neighbours are entries
//! k + o - 1 and k + o of the other colour's row r. Every operand is a contiguous slice. Where the
//! CPU has AVX2 (checked at run time) a kernel written with intrinsics updates 8 sites per step;
//! elsewhere a portable branch-free loop does the same work and gives bit-identical chains.
//!
//! The flip probability takes few values: 18 table entries, for s_i in {-1, +1} and
//! s_i S_i in {-4, ..., 4} (only even sums occur on a torus). They are precomputed as 32-bit
//! thresholds t = floor(p 2^32), and a spin flips when a 32-bit uniform u < t, which happens with
//! probability t / 2^32, in (p - 2^-32, p]; p = 0 gives t = 0 and never flips. The largest
//! threshold, u32::MAX, means "always" (any p >= 1 - 2^-32, in particular p = 1), so
//! probability 1 stays exactly 1 and every probability is within 2^-32 of p.
//! The threshold is selected without branches (compare and blend), s_i S_i is formed without a
//! multiplication, and a flip is an XOR with -2 (1 ^ -2 = -1).
//!
//! # Randomness
//! Every row owns a generator of 8 interleaved Xoshiro128++ streams (Blackman & Vigna 2021)
//! seeded from [`crate::rng::stream_for`]`(seed, Purpose::LatticeRow, row)` and kept across sweeps, so the output does not
//! depend on how rayon spreads rows over threads. Each block of 8 sites takes one step of the 8
//! streams (lane l for site l of the block; a partial block at a row's end uses the first lanes).

// Index loops over several parallel slices are the clearest form of the kernels and vectorise.
#![allow(clippy::needless_range_loop)]

use rand::Rng;
use rayon::prelude::*;

use super::LocalRule;
use super::general::flip_probability;
use super::multispin::MultiSpin;
use crate::model::{Boundary, IsingLattice, Spin};

/// Colours with fewer sites than this are updated on the calling thread.
pub const PARALLEL_MIN_SITES: usize = 4096;

/// Lanes of the per-row generator.
const LANES: usize = 8;

/// Eight interleaved Xoshiro128++ generators; `next_block` yields 8 uniform u32 at once.
#[derive(Debug, Clone)]
struct RowRng {
    s: [[u32; LANES]; 4],
}

impl RowRng {
    fn new(seed: u64, index: u64) -> Self {
        let mut base = crate::rng::stream_for(seed, crate::rng::Purpose::LatticeRow, index);
        let mut s = [[0u32; LANES]; 4];
        for lane in 0..LANES {
            let a = base.next_u64();
            let b = base.next_u64();
            s[0][lane] = a as u32;
            s[1][lane] = (a >> 32) as u32;
            s[2][lane] = b as u32;
            s[3][lane] = ((b >> 32) as u32) | 1; // never the all-zero state
        }
        RowRng { s }
    }

    /// Xoshiro128++: out = rotl(s0 + s3, 7) + s0, then the xorshift state update.
    #[inline(always)]
    fn next_block(&mut self) -> [u32; LANES] {
        let mut out = [0u32; LANES];
        let [s0, s1, s2, s3] = &mut self.s;
        for l in 0..LANES {
            out[l] = s0[l].wrapping_add(s3[l]).rotate_left(7).wrapping_add(s0[l]);
            let t = s1[l] << 9;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(11);
        }
        out
    }
}

/// Per-row working state: the row's generator.
#[derive(Debug, Clone)]
struct RowWork {
    rng: RowRng,
}

/// Flip thresholds: entry [s_i S_i + 4] for s_i = -1 (`minus`) and +1 (`plus`). On a torus
/// S_i is even; open edges give sites with 2 or 3 neighbours, hence odd sums.
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    pub(super) minus: [u32; 9],
    pub(super) plus: [u32; 9],
}

/// The 32-bit threshold of probability p: t = floor(p 2^32), and u32::MAX (always flip) for
/// p >= 1 - 2^-32. A site flips when `accept(u, t)`.
fn threshold(p: f64) -> u32 {
    let scaled = (p * 4_294_967_296.0).floor();
    if scaled >= u32::MAX as f64 {
        u32::MAX
    } else if scaled >= 1.0 {
        scaled as u32
    } else {
        // p < 2^-32, 0, or NaN: never.
        0
    }
}

/// The flip decision for a 32-bit uniform u: u < t, or always when t = u32::MAX. The AVX2
/// kernel computes the same predicate lane by lane.
#[inline(always)]
fn accept(u: u32, t: u32) -> bool {
    (u < t) | (t == u32::MAX)
}

/// The probability with which a threshold flips a spin: t / 2^32, or 1 for u32::MAX.
pub(super) fn threshold_probability(t: u32) -> f64 {
    if t == u32::MAX {
        1.0
    } else {
        t as f64 / 4_294_967_296.0
    }
}

/// The flip probabilities the checkerboard actually uses (after quantisation to 32-bit
/// thresholds), indexed `[spin][s_i S_i + 4]` with spin 0 for s_i = -1 and 1 for s_i = +1,
/// on a lattice of coupling `j` and uniform field `h`. Exposed for the exact stationarity tests.
#[doc(hidden)]
pub fn checkerboard_flip_probabilities(
    rule: LocalRule,
    beta: f64,
    j: f64,
    h: f64,
) -> [[f64; 9]; 2] {
    let t = Thresholds::new(rule, beta, j, h);
    [
        t.minus.map(threshold_probability),
        t.plus.map(threshold_probability),
    ]
}

impl Thresholds {
    pub(super) fn new(rule: LocalRule, beta: f64, j: f64, h: f64) -> Self {
        let mut t = Thresholds {
            minus: [0; 9],
            plus: [0; 9],
        };
        for k in 0..9 {
            let s_sum = k as f64 - 4.0; // s_i S_i
            // Delta = 2 s (J S + h) = 2 J (s S) + 2 h s
            t.plus[k] = threshold(flip_probability(rule, beta, 2.0 * j * s_sum + 2.0 * h));
            t.minus[k] = threshold(flip_probability(rule, beta, 2.0 * j * s_sum - 2.0 * h));
        }
        t
    }
}

/// Branch-free selection of table[k + 4] in 32-bit lanes; with `ODD = false` only even k
/// occur.
#[inline(always)]
fn pick<const ODD: bool>(table: &[u32; 9], k: i32) -> u32 {
    let mut t = table[0];
    for (v, &entry) in table.iter().enumerate().skip(1) {
        if ODD || v % 2 == 0 {
            t = if k == v as i32 - 4 { entry } else { t };
        }
    }
    t
}

/// What a row update did: spins flipped, and over the flipped sites the sums of s_i S_i and of
/// s_i before the flip. Flipping site i changes the bond sum by -2 s_i S_i and the
/// magnetisation by -2 s_i (sites of one colour have no bonds between them), so the chain keeps
/// E and M up to date without another pass over the lattice.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    flips: u32,
    ss: i32,
    s: i32,
}

impl std::ops::AddAssign for Tally {
    #[inline(always)]
    fn add_assign(&mut self, o: Tally) {
        self.flips += o.flips;
        self.ss += o.ss;
        self.s += o.s;
    }
}

/// Updates `row[k]` for every k given its four neighbour slices.
///
/// Written for auto-vectorisation: s S is formed as (S ^ m) - m with m = s >> 7 (all ones for
/// s = -1), no multiplications; the flip is s ^ (-2 & mask), since -1 = 1 ^ -2.
#[inline(always)]
fn update_span<const ODD: bool, const FIELD: bool, const TRACK: bool>(
    row: &mut [i8],
    up: &[i8],
    down: &[i8],
    left: &[i8],
    right: &[i8],
    rng: &mut RowRng,
    t: &Thresholds,
) -> Tally {
    let n = row.len();
    let (up, down, left, right) = (&up[..n], &down[..n], &left[..n], &right[..n]);
    let mut flips = Tally::default();
    let mut k0 = 0;
    // Full blocks of LANES sites, each with one block of uniforms, then the tail.
    while k0 + LANES <= n {
        let u = rng.next_block();
        let row = &mut row[k0..k0 + LANES];
        let (up, down) = (&up[k0..k0 + LANES], &down[k0..k0 + LANES]);
        let (left, right) = (&left[k0..k0 + LANES], &right[k0..k0 + LANES]);
        for l in 0..LANES {
            flips += update_site::<ODD, FIELD, TRACK>(
                &mut row[l],
                up[l],
                down[l],
                left[l],
                right[l],
                u[l],
                t,
            );
        }
        k0 += LANES;
    }
    if k0 < n {
        let u = rng.next_block();
        for l in 0..n - k0 {
            let k = k0 + l;
            flips += update_site::<ODD, FIELD, TRACK>(
                &mut row[k],
                up[k],
                down[k],
                left[k],
                right[k],
                u[l],
                t,
            );
        }
    }
    flips
}

/// One site: s S is formed as (S ^ m) - m with m = s >> 7 (all ones for s = -1), no
/// multiplication; the flip is s ^ (-2 & mask), since -1 = 1 ^ -2.
#[inline(always)]
fn update_site<const ODD: bool, const FIELD: bool, const TRACK: bool>(
    site: &mut i8,
    up: i8,
    down: i8,
    left: i8,
    right: i8,
    u: u32,
    t: &Thresholds,
) -> Tally {
    let s = *site;
    let sum = up + down + left + right;
    let m = s >> 7;
    let ss = ((sum ^ m) - m) as i32;
    let m32 = m as i32;
    let tp = pick::<ODD>(&t.plus, ss);
    let thr = if FIELD {
        let tm = pick::<ODD>(&t.minus, ss);
        (tp & !(m32 as u32)) | (tm & m32 as u32)
    } else {
        tp
    };
    let flip = accept(u, thr) as u32;
    let fm = (flip as i32).wrapping_neg();
    *site = s ^ ((flip as i8).wrapping_neg() & -2);
    // Without TRACK only the flips are counted (the portable path recounts E and M after the
    // sweep, which keeps this loop simple enough to vectorise with baseline SSE2).
    Tally {
        flips: flip,
        ss: if TRACK { ss & fm } else { 0 },
        s: if TRACK { s as i32 & fm } else { 0 },
    }
}

/// sum_k row[k] * (up[k] + down[k] + left[k] + right[k]), vectorisable.
#[inline]
fn bond_span(row: &[i8], up: &[i8], down: &[i8], left: &[i8], right: &[i8]) -> i64 {
    let n = row.len();
    let (up, down, left, right) = (&up[..n], &down[..n], &left[..n], &right[..n]);
    let mut acc = 0i32;
    for k in 0..n {
        let sum = up[k] + down[k] + left[k] + right[k];
        let m = row[k] >> 7;
        acc += ((sum ^ m) - m) as i32;
    }
    acc as i64
}

/// The bonds of one colour-0 row: each bond of the lattice has exactly one colour-0 end.
fn row_bond_sum(row: &[i8], nb: &Neighbours<'_>) -> i64 {
    let w2 = row.len();
    let mid = nb.mid;
    if nb.offset == 0 {
        let edge_left = if nb.wrap { mid[w2 - 1] } else { 0 };
        bond_span(
            &row[..1],
            &nb.up[..1],
            &nb.down[..1],
            &[edge_left],
            &mid[..1],
        ) + bond_span(
            &row[1..],
            &nb.up[1..],
            &nb.down[1..],
            &mid[..w2 - 1],
            &mid[1..],
        )
    } else {
        let edge_right = if nb.wrap { mid[0] } else { 0 };
        bond_span(
            &row[..w2 - 1],
            &nb.up[..w2 - 1],
            &nb.down[..w2 - 1],
            &mid[..w2 - 1],
            &mid[1..],
        ) + bond_span(
            &row[w2 - 1..],
            &nb.up[w2 - 1..],
            &nb.down[w2 - 1..],
            &mid[w2 - 1..],
            &[edge_right],
        )
    }
}

/// The row-update body; compiled twice (baseline and AVX2).
#[inline(always)]
fn update_row_body<const SIMD: bool>(
    row: &mut [i8],
    nb: &Neighbours<'_>,
    work: &mut RowWork,
    t: &Thresholds,
) -> Tally {
    // On a torus every site has four neighbours (a side of length 1 has none along it), so
    // s S is even; open edges allow odd sums.
    // Without a field the two tables are equal and one lookup is enough.
    match (nb.wrap, t.plus == t.minus) {
        (true, true) => update_row_generic::<false, false, SIMD>(row, nb, work, t),
        (true, false) => update_row_generic::<false, true, SIMD>(row, nb, work, t),
        (false, true) => update_row_generic::<true, false, SIMD>(row, nb, work, t),
        (false, false) => update_row_generic::<true, true, SIMD>(row, nb, work, t),
    }
}

#[inline(always)]
fn update_row_generic<const ODD: bool, const FIELD: bool, const SIMD: bool>(
    row: &mut [i8],
    nb: &Neighbours<'_>,
    work: &mut RowWork,
    t: &Thresholds,
) -> Tally {
    let w2 = row.len();
    let rng = &mut work.rng;
    let mid = nb.mid;
    let mut flips = Tally::default();
    if nb.offset == 0 {
        // left = mid[k - 1], right = mid[k]; k = 0 has its left neighbour across the edge.
        let edge_left = if nb.wrap { mid[w2 - 1] } else { 0 };
        flips += update_span_dispatch::<ODD, FIELD, SIMD>(
            &mut row[..1],
            &nb.up[..1],
            &nb.down[..1],
            &[edge_left],
            &mid[..1],
            rng,
            t,
        );
        flips += update_span_dispatch::<ODD, FIELD, SIMD>(
            &mut row[1..],
            &nb.up[1..],
            &nb.down[1..],
            &mid[..w2 - 1],
            &mid[1..],
            rng,
            t,
        );
    } else {
        // left = mid[k], right = mid[k + 1]; k = w2 - 1 has its right neighbour across the edge.
        let edge_right = if nb.wrap { mid[0] } else { 0 };
        flips += update_span_dispatch::<ODD, FIELD, SIMD>(
            &mut row[..w2 - 1],
            &nb.up[..w2 - 1],
            &nb.down[..w2 - 1],
            &mid[..w2 - 1],
            &mid[1..],
            rng,
            t,
        );
        flips += update_span_dispatch::<ODD, FIELD, SIMD>(
            &mut row[w2 - 1..],
            &nb.up[w2 - 1..],
            &nb.down[w2 - 1..],
            &mid[w2 - 1..],
            &[edge_right],
            rng,
            t,
        );
    }
    flips
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_row_avx2(
    row: &mut [i8],
    nb: &Neighbours<'_>,
    work: &mut RowWork,
    t: &Thresholds,
) -> Tally {
    update_row_body::<true>(row, nb, work, t)
}

fn update_row_baseline(
    row: &mut [i8],
    nb: &Neighbours<'_>,
    work: &mut RowWork,
    t: &Thresholds,
) -> Tally {
    update_row_body::<false>(row, nb, work, t)
}

/// The explicit AVX2 span update when `SIMD` (only reached from `update_row_avx2`), else the
/// portable one. Both consume the generator identically, so they give the same states.
#[inline(always)]
fn update_span_dispatch<const ODD: bool, const FIELD: bool, const SIMD: bool>(
    row: &mut [i8],
    up: &[i8],
    down: &[i8],
    left: &[i8],
    right: &[i8],
    rng: &mut RowRng,
    t: &Thresholds,
) -> Tally {
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: SIMD = true is instantiated only inside `update_row_avx2`, which runs only
        // when the CPU reported AVX2.
        return unsafe { avx2::update_span::<ODD, FIELD>(row, up, down, left, right, rng, t) };
    }
    update_span::<ODD, FIELD, false>(row, up, down, left, right, rng, t)
}

/// The row kernel written with AVX2 intrinsics: 8 sites per step in 32-bit lanes.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LANES, RowRng, Tally, Thresholds, update_span as portable_span};
    use std::arch::x86_64::*;

    /// For an 8-bit flip mask, the u64 whose byte l is 0xFE when bit l is set: XOR with it
    /// negates the flipped +-1 bytes (1 ^ 0xFE = -1, -1 ^ 0xFE = 1).
    static FLIP_BYTES: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut m = 0;
        while m < 256 {
            let mut v = 0u64;
            let mut l = 0;
            while l < 8 {
                if (m >> l) & 1 == 1 {
                    v |= 0xFE << (8 * l);
                }
                l += 1;
            }
            table[m] = v;
            m += 1;
        }
        table
    };

    #[inline(always)]
    unsafe fn rotl<const R: i32, const L: i32>(x: __m256i) -> __m256i {
        // SAFETY: inlined into the AVX2 kernel only.
        unsafe { _mm256_or_si256(_mm256_slli_epi32::<R>(x), _mm256_srli_epi32::<L>(x)) }
    }

    #[inline(always)]
    unsafe fn load8(p: &[i8], k: usize) -> __m256i {
        debug_assert!(k + 8 <= p.len());
        // SAFETY (caller): k + 8 <= p.len().
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.as_ptr().add(k) as *const __m128i)) }
    }

    #[inline(always)]
    unsafe fn select(table: &[u32; 9], ss: __m256i, odd: bool) -> __m256i {
        // SAFETY: inlined into the AVX2 kernel only.
        unsafe {
            let mut t = _mm256_set1_epi32(table[0] as i32);
            for (v, &entry) in table.iter().enumerate().skip(1) {
                if odd || v % 2 == 0 {
                    let eq = _mm256_cmpeq_epi32(ss, _mm256_set1_epi32(v as i32 - 4));
                    t = _mm256_blendv_epi8(t, _mm256_set1_epi32(entry as i32), eq);
                }
            }
            t
        }
    }

    /// Same contract and same use of the generator as [`super::update_span`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn update_span<const ODD: bool, const FIELD: bool>(
        row: &mut [i8],
        up: &[i8],
        down: &[i8],
        left: &[i8],
        right: &[i8],
        rng: &mut RowRng,
        t: &Thresholds,
    ) -> Tally {
        const _: () = assert!(LANES == 8);
        let n = row.len();
        let (up, down, left, right) = (&up[..n], &down[..n], &left[..n], &right[..n]);
        let full = n / 8 * 8;
        let mut flips = 0u32;
        let mut tally = Tally::default();
        // SAFETY: every load and store below covers k..k + 8 with k + 8 <= n, within the
        // slices re-sliced to n above; the generator state arrays hold exactly 8 u32.
        unsafe {
            let st = |i: usize| _mm256_loadu_si256(rng.s[i].as_ptr() as *const __m256i);
            let (mut s0, mut s1, mut s2, mut s3) = (st(0), st(1), st(2), st(3));
            let (mut acc_ss, mut acc_s) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            let ones = _mm256_set1_epi32(-1);
            let mut k = 0;
            while k < full {
                // Xoshiro128++ in 8 lanes, exactly as RowRng::next_block.
                let u = _mm256_add_epi32(rotl::<7, 25>(_mm256_add_epi32(s0, s3)), s0);
                let t9 = _mm256_slli_epi32::<9>(s1);
                s2 = _mm256_xor_si256(s2, s0);
                s3 = _mm256_xor_si256(s3, s1);
                s1 = _mm256_xor_si256(s1, s2);
                s0 = _mm256_xor_si256(s0, s3);
                s2 = _mm256_xor_si256(s2, t9);
                s3 = rotl::<11, 21>(s3);

                let s = load8(row, k);
                let sum = _mm256_add_epi32(
                    _mm256_add_epi32(load8(up, k), load8(down, k)),
                    _mm256_add_epi32(load8(left, k), load8(right, k)),
                );
                let m = _mm256_srai_epi32::<31>(s);
                let ss = _mm256_sub_epi32(_mm256_xor_si256(sum, m), m);
                let tp = select(&t.plus, ss, ODD);
                let thr = if FIELD {
                    _mm256_blendv_epi8(tp, select(&t.minus, ss, ODD), m)
                } else {
                    tp
                };
                // super::accept: u < thr (unsigned), i.e. not max(u, thr) == u, or
                // thr == u32::MAX (always).
                let ge = _mm256_cmpeq_epi32(_mm256_max_epu32(u, thr), u);
                let always = _mm256_cmpeq_epi32(thr, ones);
                let le = _mm256_or_si256(_mm256_andnot_si256(ge, ones), always);
                acc_ss = _mm256_add_epi32(acc_ss, _mm256_and_si256(ss, le));
                acc_s = _mm256_add_epi32(acc_s, _mm256_and_si256(s, le));
                let mask = _mm256_movemask_ps(_mm256_castsi256_ps(le)) as usize;
                let p = row.as_mut_ptr().add(k) as *mut u64;
                p.write_unaligned(p.read_unaligned() ^ FLIP_BYTES[mask]);
                flips += mask.count_ones();
                k += 8;
            }
            let put = |i: usize, v: __m256i, s: &mut [[u32; LANES]; 4]| {
                _mm256_storeu_si256(s[i].as_mut_ptr() as *mut __m256i, v)
            };
            put(0, s0, &mut rng.s);
            put(1, s1, &mut rng.s);
            put(2, s2, &mut rng.s);
            put(3, s3, &mut rng.s);
            let mut lanes = [[0i32; 8]; 2];
            _mm256_storeu_si256(lanes[0].as_mut_ptr() as *mut __m256i, acc_ss);
            _mm256_storeu_si256(lanes[1].as_mut_ptr() as *mut __m256i, acc_s);
            tally.ss = lanes[0].iter().sum();
            tally.s = lanes[1].iter().sum();
        }
        tally.flips = flips;
        if full < n {
            tally += portable_span::<ODD, FIELD, true>(
                &mut row[full..],
                &up[full..],
                &down[full..],
                &left[full..],
                &right[full..],
                rng,
                t,
            );
        }
        tally
    }
}

/// The other colour's rows around a row being updated.
struct Neighbours<'a> {
    up: &'a [i8],
    down: &'a [i8],
    mid: &'a [i8],
    /// o = (r + c) mod 2: where the row's sites sit relative to the other colour.
    offset: usize,
    /// Periodic in the horizontal direction.
    wrap: bool,
}

/// A checkerboard chain on a bipartite lattice with uniform coupling and field.
#[derive(Debug, Clone)]
pub struct ByteCheckerboard {
    width: usize,
    height: usize,
    boundary: Boundary,
    coupling: f64,
    field: f64,
    colours: [Vec<i8>; 2],
    zeros: Vec<i8>,
    work: Vec<RowWork>,
    thresholds: Thresholds,
    avx2: bool,
    /// Bond sum and magnetisation, kept up to date by the sweeps.
    bonds: i64,
    magnetization: i64,
}

impl ByteCheckerboard {
    /// True when the checkerboard applies: an even width, a bipartite vertical direction
    /// (open, even height, or height 1) and a uniform field.
    pub fn applies(model: &IsingLattice) -> bool {
        let w_ok = model.width().is_multiple_of(2);
        let h_ok = model.boundary() == Boundary::Open
            || model.height().is_multiple_of(2)
            || model.height() == 1;
        w_ok && h_ok && model.site_field().is_none()
    }

    /// A chain started from `state` (row-major); the caller has checked [`Self::applies`].
    pub fn new(
        model: &IsingLattice,
        rule: LocalRule,
        beta: f64,
        seed: u64,
        state: &[Spin],
    ) -> Self {
        debug_assert!(Self::applies(model));
        let (w, h) = (model.width(), model.height());
        let w2 = w / 2;
        let mut colours = [vec![0i8; w2 * h], vec![0i8; w2 * h]];
        for r in 0..h {
            for col in 0..w {
                colours[(r + col) % 2][r * w2 + col / 2] = state[r * w + col];
            }
        }
        let work = (0..h)
            .map(|r| RowWork {
                rng: RowRng::new(seed, r as u64),
            })
            .collect();
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        let mut chain = ByteCheckerboard {
            width: w,
            height: h,
            boundary: model.boundary(),
            coupling: model.coupling(),
            field: model.uniform_field(),
            colours,
            zeros: vec![0; w2],
            work,
            thresholds: Thresholds::new(rule, beta, model.coupling(), model.uniform_field()),
            avx2,
            bonds: 0,
            magnetization: 0,
        };
        chain.bonds = chain.bond_sum();
        chain.magnetization = chain.count_magnetization();
        chain
    }

    /// Uses the baseline code path even where AVX2 is available (for benchmarks and tests).
    pub fn set_simd(&mut self, allow: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            self.avx2 = allow && std::arch::is_x86_feature_detected!("avx2");
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = allow;
        }
    }

    /// One sweep (colour 0 then colour 1); returns the number of spins flipped.
    pub fn sweep(&mut self) -> u64 {
        let mut flips = 0;
        for c in 0..2 {
            let [f, ss, s] = self.half_sweep(c);
            flips += f as u64;
            self.bonds -= 2 * ss;
            self.magnetization -= 2 * s;
        }
        if !self.avx2 {
            // The portable kernel does not track the sums: recount them.
            self.bonds = self.bond_sum();
            self.magnetization = self.count_magnetization();
        }
        flips
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            w2: self.width / 2,
            h: self.height,
            periodic: self.boundary == Boundary::Periodic,
        }
    }

    /// Updates colour c; returns [flips, sum of s S over flipped sites, sum of s over them].
    fn half_sweep(&mut self, c: usize) -> [i64; 3] {
        let g = self.geometry();
        let [a, b] = &mut self.colours;
        let (target, other) = if c == 0 { (a, &*b) } else { (b, &*a) };
        let zeros = &self.zeros[..];
        let thresholds = &self.thresholds;
        let avx2 = self.avx2;
        let update = |(r, (row, wk)): (usize, (&mut [i8], &mut RowWork))| -> [i64; 3] {
            let nb = g.neighbours(other, zeros, r, c);
            let f = if avx2 {
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: `avx2` is true only when the CPU reported AVX2 support.
                    unsafe { update_row_avx2(row, &nb, wk, thresholds) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    update_row_baseline(row, &nb, wk, thresholds)
                }
            } else {
                update_row_baseline(row, &nb, wk, thresholds)
            };
            [f.flips as i64, f.ss as i64, f.s as i64]
        };
        let add = |a: [i64; 3], b: [i64; 3]| [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
        // Small lattices are not worth waking threads for; the result is the same either way
        // because every row has its own generator.
        if target.len() < PARALLEL_MIN_SITES {
            target
                .chunks_mut(g.w2)
                .zip(self.work.iter_mut())
                .enumerate()
                .map(update)
                .fold([0; 3], add)
        } else {
            target
                .par_chunks_mut(g.w2)
                .zip(self.work.par_iter_mut())
                .enumerate()
                .with_min_len(4)
                .map(update)
                .reduce(|| [0; 3], add)
        }
    }

    /// Sum over bonds of s_i s_j, recomputed from the configuration (each bond has exactly one
    /// end of colour 0).
    pub fn bond_sum(&self) -> i64 {
        let g = self.geometry();
        let zeros = &self.zeros[..];
        let other = &self.colours[1][..];
        let one = |(r, row): (usize, &[i8])| row_bond_sum(row, &g.neighbours(other, zeros, r, 0));
        if self.colours[0].len() < PARALLEL_MIN_SITES {
            self.colours[0].chunks(g.w2).enumerate().map(one).sum()
        } else {
            self.colours[0]
                .par_chunks(g.w2)
                .enumerate()
                .with_min_len(4)
                .map(one)
                .sum()
        }
    }

    /// Sum of all spins (kept up to date by the sweeps).
    pub fn magnetization(&self) -> i64 {
        self.magnetization
    }

    /// Sum of all spins, recounted from the configuration.
    pub fn count_magnetization(&self) -> i64 {
        self.colours
            .iter()
            .map(|c| {
                let part = |ch: &[i8]| ch.iter().map(|&x| x as i32).sum::<i32>() as i64;
                if c.len() < PARALLEL_MIN_SITES {
                    part(c)
                } else {
                    c.par_chunks(PARALLEL_MIN_SITES).map(part).sum::<i64>()
                }
            })
            .sum()
    }

    /// E(s) = -J (bond sum) - h (magnetisation), from the tracked sums (O(1)).
    pub fn energy(&self) -> f64 {
        -self.coupling * self.bonds as f64 - self.field * self.magnetization as f64
    }

    /// The configuration, row-major.
    pub fn state(&self) -> Vec<Spin> {
        let (w, h, w2) = (self.width, self.height, self.width / 2);
        let mut s = vec![0; w * h];
        for r in 0..h {
            for col in 0..w {
                s[r * w + col] = self.colours[(r + col) % 2][r * w2 + col / 2];
            }
        }
        s
    }
}

/// The kernel a [`Checkerboard`] chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// One byte per spin, 8 sites per step ([`ByteCheckerboard`]): any bipartite lattice.
    Bytes,
    /// Up to 64 spins per word ([`MultiSpin`]): a torus with even sides.
    MultiSpin,
}

/// A checkerboard chain: the multi-spin-coded kernel ([`MultiSpin`]) on a torus with even
/// sides, the byte kernel ([`ByteCheckerboard`]) on other bipartite lattices. Both sample the
/// same chain law with the same 32-bit flip thresholds; they draw their random numbers
/// differently, so one seed gives different chains on the two kernels.
#[derive(Debug, Clone)]
pub struct Checkerboard {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Bytes(ByteCheckerboard),
    Multi(MultiSpin),
}

impl Checkerboard {
    /// True when the checkerboard applies (see [`ByteCheckerboard::applies`]).
    pub fn applies(model: &IsingLattice) -> bool {
        ByteCheckerboard::applies(model)
    }

    /// A chain started from `state` (row-major) with the fastest kernel that applies; the
    /// caller has checked [`Self::applies`].
    pub fn new(
        model: &IsingLattice,
        rule: LocalRule,
        beta: f64,
        seed: u64,
        state: &[Spin],
    ) -> Self {
        Self::with_kernel(model, rule, beta, seed, state, Kernel::MultiSpin)
    }

    /// A chain on `kernel`, or on the byte kernel when `kernel` is [`Kernel::MultiSpin`] and
    /// the lattice is not a torus with even sides.
    pub fn with_kernel(
        model: &IsingLattice,
        rule: LocalRule,
        beta: f64,
        seed: u64,
        state: &[Spin],
        kernel: Kernel,
    ) -> Self {
        let inner = if kernel == Kernel::MultiSpin && MultiSpin::applies(model) {
            Inner::Multi(MultiSpin::new(model, rule, beta, seed, state))
        } else {
            Inner::Bytes(ByteCheckerboard::new(model, rule, beta, seed, state))
        };
        Checkerboard { inner }
    }

    /// The kernel this chain runs.
    pub fn kernel(&self) -> Kernel {
        match self.inner {
            Inner::Bytes(_) => Kernel::Bytes,
            Inner::Multi(_) => Kernel::MultiSpin,
        }
    }

    /// With `false`, uses the portable code path even where AVX2 or AVX-512 is available (for
    /// benchmarks and tests): on the byte kernel the baseline x86-64 copy, on the multi-spin
    /// kernel the portable copy (which gives the same chain bit for bit).
    pub fn set_simd(&mut self, allow: bool) {
        match &mut self.inner {
            Inner::Bytes(b) => b.set_simd(allow),
            Inner::Multi(m) => m.set_simd(allow),
        }
    }

    /// One sweep (colour 0 then colour 1); returns the number of spins flipped.
    pub fn sweep(&mut self) -> u64 {
        match &mut self.inner {
            Inner::Bytes(b) => b.sweep(),
            Inner::Multi(m) => m.sweep(),
        }
    }

    /// Sum over bonds of s_i s_j, recomputed from the configuration.
    pub fn bond_sum(&self) -> i64 {
        match &self.inner {
            Inner::Bytes(b) => b.bond_sum(),
            Inner::Multi(m) => m.bond_sum(),
        }
    }

    /// Sum of all spins (kept up to date by the sweeps).
    pub fn magnetization(&self) -> i64 {
        match &self.inner {
            Inner::Bytes(b) => b.magnetization(),
            Inner::Multi(m) => m.magnetization(),
        }
    }

    /// Sum of all spins, recounted from the configuration.
    pub fn count_magnetization(&self) -> i64 {
        match &self.inner {
            Inner::Bytes(b) => b.count_magnetization(),
            Inner::Multi(m) => m.count_magnetization(),
        }
    }

    /// E(s) = -J (bond sum) - h (magnetisation), from the tracked sums (O(1)).
    pub fn energy(&self) -> f64 {
        match &self.inner {
            Inner::Bytes(b) => b.energy(),
            Inner::Multi(m) => m.energy(),
        }
    }

    /// The configuration, row-major.
    pub fn state(&self) -> Vec<Spin> {
        match &self.inner {
            Inner::Bytes(b) => b.state(),
            Inner::Multi(m) => m.state(),
        }
    }

    fn sites(&self) -> u64 {
        match &self.inner {
            Inner::Bytes(b) => (b.width * b.height) as u64,
            Inner::Multi(m) => m.num_sites() as u64,
        }
    }
}

impl super::LatticeUpdate for Checkerboard {
    fn sweep(&mut self) -> u64 {
        Checkerboard::sweep(self)
    }
    fn energy(&self) -> f64 {
        Checkerboard::energy(self)
    }
    fn magnetization(&self) -> i64 {
        Checkerboard::magnetization(self)
    }
    fn state(&self) -> Vec<Spin> {
        Checkerboard::state(self)
    }
    fn updates_per_sweep(&self) -> u64 {
        self.sites()
    }
    fn is_checkerboard(&self) -> bool {
        true
    }
    fn boxed_clone(&self) -> Box<dyn super::LatticeUpdate> {
        Box::new(self.clone())
    }
}

#[derive(Debug, Clone, Copy)]
struct Geometry {
    w2: usize,
    h: usize,
    periodic: bool,
}

impl Geometry {
    fn neighbours<'a>(
        &self,
        other: &'a [i8],
        zeros: &'a [i8],
        r: usize,
        c: usize,
    ) -> Neighbours<'a> {
        let (w2, h) = (self.w2, self.h);
        let row = |i: usize| &other[i * w2..(i + 1) * w2];
        let up = if r > 0 {
            row(r - 1)
        } else if self.periodic && h > 1 {
            row(h - 1)
        } else {
            zeros
        };
        let down = if r + 1 < h {
            row(r + 1)
        } else if self.periodic && h > 1 {
            row(0)
        } else {
            zeros
        };
        Neighbours {
            up,
            down,
            mid: row(r),
            offset: (r + c) % 2,
            wrap: self.periodic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnergyModel;
    use crate::sample::{Start, initial_state};

    fn shapes() -> Vec<IsingLattice> {
        let mut v = Vec::new();
        for (w, h) in [(2, 1), (4, 1), (2, 2), (4, 2), (2, 4), (6, 4), (8, 6)] {
            v.push(IsingLattice::new(w, h, Boundary::Periodic, 1.0, 0.3).unwrap());
        }
        for (w, h) in [(2, 1), (2, 3), (4, 3), (6, 5)] {
            v.push(IsingLattice::new(w, h, Boundary::Open, 0.7, -0.3).unwrap());
        }
        v
    }

    #[test]
    fn layout_round_trips_and_energy_matches_the_model() {
        for m in shapes() {
            assert!(Checkerboard::applies(&m));
            let s = initial_state(m.num_sites(), Start::Random, 5);
            let cb = Checkerboard::new(&m, LocalRule::Metropolis, 0.4, 1, &s);
            assert_eq!(cb.state(), s);
            assert!((cb.energy() - m.energy(&s)).abs() < 1e-9);
            assert_eq!(cb.magnetization(), s.iter().map(|&x| x as i64).sum::<i64>());
        }
    }

    /// At a very large beta every move with Delta E < 0 is accepted and every move with
    /// Delta E > 0 is refused (probability exp(-1000 * 0.6) has threshold 0: never), so one
    /// sweep is deterministic and must match a direct implementation of
    /// "colour 0, then colour 1" built on `flip_delta`. This checks every neighbour index.
    #[test]
    fn zero_temperature_sweep_matches_flip_delta_on_every_shape() {
        for m in shapes() {
            for simd in [false, true] {
                let s0 = initial_state(m.num_sites(), Start::Random, 9);
                let mut cb = ByteCheckerboard::new(&m, LocalRule::Metropolis, 1000.0, 3, &s0);
                cb.set_simd(simd);
                let mut reference = s0.clone();
                for _ in 0..3 {
                    cb.sweep();
                    for c in 0..2 {
                        let before = reference.clone();
                        for i in 0..m.num_sites() {
                            let (r, col) = (i / m.width(), i % m.width());
                            if (r + col) % 2 == c && m.flip_delta(&before, i) < 0.0 {
                                reference[i] = -reference[i];
                            }
                        }
                    }
                    assert_eq!(cb.state(), reference, "{m:?}");
                    assert!((cb.energy() - m.energy(&reference)).abs() < 1e-9);
                    assert_eq!(cb.magnetization(), cb.count_magnetization());
                }
            }
        }
    }

    /// The AVX2 kernel and the portable one consume each row's generator identically, so at any
    /// temperature they produce the same chain (on shapes with full 8-site blocks and tails).
    #[test]
    fn simd_and_portable_kernels_give_identical_chains() {
        let models = [
            IsingLattice::new(40, 6, Boundary::Periodic, 1.0, 0.0).unwrap(),
            IsingLattice::new(36, 4, Boundary::Periodic, 0.8, 0.2).unwrap(),
            IsingLattice::new(34, 5, Boundary::Open, 1.0, -0.1).unwrap(),
            IsingLattice::new(18, 3, Boundary::Open, 1.1, 0.0).unwrap(),
        ];
        for m in &models {
            for rule in [LocalRule::Gibbs, LocalRule::Metropolis] {
                let s0 = initial_state(m.num_sites(), Start::Random, 4);
                let mut a = ByteCheckerboard::new(m, rule, 0.45, 8, &s0);
                let mut b = a.clone();
                a.set_simd(true);
                b.set_simd(false);
                for _ in 0..20 {
                    assert_eq!(a.sweep(), b.sweep());
                    // The sums tracked through the kernels equal a recount.
                    for x in [&a, &b] {
                        assert_eq!(x.bonds, x.bond_sum());
                        assert_eq!(x.magnetization(), x.count_magnetization());
                        assert!((x.energy() - m.energy(&x.state())).abs() < 1e-9);
                    }
                }
                assert_eq!(a.state(), b.state());
                assert_ne!(a.state(), s0);
            }
        }
    }

    /// Exact quantisation: implemented probability t / 2^32 in (p - 2^-32, p], never above p
    /// (so p = 0 and tiny p never flip), and exactly 1 for p = 1.
    #[test]
    fn thresholds_round_down_to_a_multiple_of_two_to_the_minus_32() {
        let two32 = 4_294_967_296.0;
        assert_eq!(threshold(1.0), u32::MAX);
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(f64::NAN), 0);
        assert_eq!(threshold(0.5), 1 << 31);
        assert_eq!(threshold(3.0 / two32), 3);
        // exp(-30) = 9.4e-14 < 2^-32: never (the old rounding up made it 2^-32, 2.5e3 times
        // too often, which broke detailed balance at large beta dE).
        assert_eq!(threshold((-30.0f64).exp()), 0);
        assert!(!accept(0, 0));
        assert!(accept(u32::MAX, u32::MAX));
        assert!(accept(2, 3) && !accept(3, 3));
        for k in 0..2000 {
            let p = (-(k as f64) / 50.0).exp();
            let q = threshold_probability(threshold(p));
            assert!(q <= p && p - q < 1.0 / two32, "p = {p:e}, q = {q:e}");
        }
        // The table exposed to the tests is built from the same thresholds.
        let probs = checkerboard_flip_probabilities(LocalRule::Metropolis, 40.0, 1.0, 0.0);
        assert_eq!(probs[1][8], 0.0); // s S = 4: dE = 8, p = exp(-320)
        assert_eq!(probs[1][0], 1.0); // s S = -4: dE = -8
        assert_eq!(probs[0][4], 1.0); // dE = 0
    }

    /// The flip predicate: of the 16 smallest uniforms, exactly min(t, 16) flip for t below
    /// u32::MAX - 15, all of them for u32::MAX; the largest uniform flips only when t means
    /// "always".
    #[test]
    fn accept_predicate_matches_the_threshold_probability_on_all_small_u() {
        for t in [0u32, 1, 2, 5, u32::MAX - 1, u32::MAX] {
            let small = (0..16u32).filter(|&u| accept(u, t)).count() as u32;
            assert_eq!(
                small,
                if t == u32::MAX - 1 || t == u32::MAX {
                    16
                } else {
                    t.min(16)
                }
            );
            assert_eq!(accept(u32::MAX, t), t == u32::MAX);
        }
    }
}
