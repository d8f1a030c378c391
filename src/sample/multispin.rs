//! Multi-spin-coded checkerboard sweeps of a torus: up to 64 spins of one colour per `u64`.
//!
//! The fast path of [`super::lattice::Checkerboard`] (Jacobs & Rebbi 1981; Bhanot, Duke &
//! Salvador 1986), taken on a periodic lattice with even sides (uniform J and field, Gibbs or
//! Metropolis). It samples the same chain law as the byte-per-spin checkerboard, with the same
//! quantised flip probabilities, but draws its random numbers differently, so for one seed the
//! two paths give different (equally valid) chains.
//!
//! # Packing
//! The H rows are cut into B horizontal strips of Hs = H / B rows, B the largest divisor of H / 2
//! that is at most 64, so Hs is even (1024 x 1024: B = 64, Hs = 16; a 4 x 2 torus: B = 1). Bit b
//! of word (r', k) of colour c holds the spin of site (r' + b Hs, 2k + o), o = (r' + c) mod 2,
//! as 1 for +1 and 0 for -1; bits b >= B are unused and stay 0. Because Hs is even the colour
//! (r + col) mod 2 of every bit of a word is that of its row r', so a word holds sites of one
//! colour, all conditionally independent given the other colour. The neighbours of word (r', k)
//! are words of the other colour in the same places as in the byte layout (left and right in
//! row r', above and below in rows r' -+ 1), except across a strip edge: the row above r' = 0 is
//! row Hs - 1 of the strip before, so its word is rotated by one bit within the B bits (bit b
//! takes bit b - 1, and bit 0 takes bit B - 1, the bottom strip), and likewise below r' = Hs - 1.
//!
//! # Neighbour counts by bitwise adders
//! With x_n = s XOR n_n (1 where neighbour n is anti-aligned), the number of anti-aligned
//! neighbours a = x_1 + x_2 + x_3 + x_4 in {0, ..., 4} is formed bit-sliced, as three words
//! (a_0, a_1, a_2), by two half adders and a carry merge ([`anti_aligned_count`]). Then
//! s_i S_i = 4 - 2a and Delta = 2 J (4 - 2a) + 2 h s_i, so the flip probability of a site takes
//! one of ten values, one per class (a, s_i) (five without a field).
//!
//! # Acceptance: exact bit-sliced comparison of uniforms with thresholds
//! Each class has the byte path's 32-bit threshold t = floor(p 2^32) (u32::MAX: always), and a
//! site flips when its own uniform U < t / 2^32. The 64 sites of a word draw 64 independent
//! uniforms digit by digit: random word number j (j = 0, 1, ...) supplies binary digit j of
//! every site's U, and for every site the word of threshold digits d_j (digit j of its class's
//! t, selected by the class masks) is compared lexicographically:
//! `lt |= eq & d_j & !r_j; eq &= !(d_j ^ r_j)`, starting from eq = the sites still undecided.
//! Once eq is 0 every site is decided and no more digits are drawn (for a group of words: see
//! below); after digit 31, or after the last nonzero digit of every threshold, the sites
//! still equal have U >= t / 2^32 and stay. So a site flips with probability exactly t / 2^32,
//! as on the byte path, independently of every other site: no random number is shared between
//! sites (sharing one uniform across the sites of a word would not be exact: it correlates their
//! flips and breaks the stationarity of the product distribution).
//!
//! # Bookkeeping and randomness
//! A flip changes the bond sum by -2 s_i S_i = 4a - 8 and the magnetisation by -2 s_i, summed
//! with popcounts over the flip mask. The words of a packed row are updated in groups of
//! [`LANES`] = 8 consecutive words (the last group of a row may be cut short by the row end: its
//! missing lanes have no live sites). Packed row r' owns 8 Xoshiro256++ streams, kept across
//! sweeps and used for both colours: lane i starts from the first four outputs of
//! [`crate::rng::stream_for`]`(seed, Purpose::MultiSpinRow, 8 r' + i)`. In a group, word k + i
//! takes its digits from lane i, and every lane draws one word per digit until every site of
//! the group is decided (a decided word, or a missing lane, still draws its word, which is
//! discarded), so a group draws as many digits as its slowest site needs: about
//! log2(512) + 1.3, i.e. 10 words per word of sites. Every digit of every site is still a fresh
//! random bit used once, and each site compares only its own digits, so the law is the exact
//! one above (when to stop depends on digits already drawn, not on the ones still to come). The
//! packing and the lane count depend on the lattice only, so the chain depends neither on the
//! number of rayon threads nor on the CPU.
//!
//! # Instruction sets
//! The row kernel has three copies, one chosen per chain by `is_x86_feature_detected!`: AVX-512
//! (F and VPOPCNTDQ) intrinsics with one group per 512-bit register (the adders, class masks
//! and comparison in ternary-logic instructions, the 8 generators by VPROLQ, the tallies by
//! VPOPCNTQ), AVX2 intrinsics with a group in two 256-bit registers (rotations by two shifts,
//! popcounts by a VPSHUFB nibble table and VPSADBW), and the portable code over `[u64; 8]`
//! arrays for any CPU. All do the same operations lane by lane, so they give the same chain bit
//! for bit (tested); [`MultiSpin::set_simd`] forces the portable copy.

// Index loops over the class and group arrays are the clearest form of the kernel.
#![allow(clippy::needless_range_loop)]

use rand::Rng;
use rayon::prelude::*;

use super::LocalRule;
use super::lattice::{Thresholds, threshold_probability};
use crate::model::{Boundary, IsingLattice, Spin};
use crate::rng::{Purpose, stream_for};

/// Packed words of one colour below which a half sweep runs on the calling thread.
const PARALLEL_MIN_WORDS: usize = 256;

/// The bit-sliced number of anti-aligned neighbours: `[a_0, a_1, a_2]` with bit b of
/// a = a_0 + 2 a_1 + 4 a_2 equal to the number of n in {up, down, left, right} whose bit b differs
/// from bit b of `s`.
///
/// Two half adders give x_1 + x_2 = u_1 + 2 c_1 and x_3 + x_4 = u_2 + 2 c_2, a third
/// u_1 + u_2 = a_0 + 2 c_3; then c_1 + c_2 + c_3 <= 2 (c_1 = c_2 = 1 forces u_1 = u_2 = 0), so
/// a_1 = c_1 ^ c_2 ^ c_3 and a_2 = c_1 & c_2.
#[inline(always)]
pub fn anti_aligned_count(s: u64, up: u64, down: u64, left: u64, right: u64) -> [u64; 3] {
    let (x1, x2, x3, x4) = (s ^ up, s ^ down, s ^ left, s ^ right);
    let (u1, c1) = (x1 ^ x2, x1 & x2);
    let (u2, c2) = (x3 ^ x4, x3 & x4);
    let (a0, c3) = (u1 ^ u2, u1 & u2);
    [a0, c1 ^ c2 ^ c3, c1 & c2]
}

/// One-hot masks of a = 0..=4 from the bit-sliced count (a_2 = 1 forces a_0 = a_1 = 0).
#[inline(always)]
fn count_masks([a0, a1, a2]: [u64; 3]) -> [u64; 5] {
    [!(a0 | a1 | a2), a0 & !a1 & !a2, !a0 & a1, a0 & a1, a2]
}

/// Groups of classes (a, s_i) with one threshold strictly between 0 and u32::MAX, and the
/// classes that always flip. Class q = a + 5 s with s = 1 for spin +1.
#[derive(Debug, Clone)]
struct AcceptTable {
    /// The 32-bit threshold of each class.
    class_threshold: [u32; 10],
    /// `member[g][q]`: all ones when class q belongs to group g (groups 0..groups).
    member: [[u64; 10]; 10],
    /// `always[q]`: all ones when class q always flips (threshold u32::MAX).
    always: [u64; 10],
    /// `digit[j][g]`: all ones when binary digit j (from the most significant) of group g's
    /// threshold is 1.
    digit: [[u64; 10]; 32],
    /// Number of groups.
    groups: usize,
    /// Digits after this one are 0 in every group's threshold: comparisons end here.
    last_digit: usize,
    /// The field is zero: classes (a, -1) and (a, +1) have equal thresholds.
    no_field: bool,
}

impl AcceptTable {
    fn new(rule: LocalRule, beta: f64, j: f64, h: f64) -> Self {
        let t = Thresholds::new(rule, beta, j, h);
        let mut class_threshold = [0u32; 10];
        for a in 0..5 {
            // s S = 4 - 2a: entry 8 - 2a of the byte path's table.
            class_threshold[a] = t.minus[8 - 2 * a];
            class_threshold[a + 5] = t.plus[8 - 2 * a];
        }
        let mut table = AcceptTable {
            class_threshold,
            member: [[0; 10]; 10],
            always: [0; 10],
            digit: [[0; 10]; 32],
            groups: 0,
            last_digit: 0,
            no_field: t.minus == t.plus,
        };
        let mut values: Vec<u32> = Vec::new();
        for (q, &tq) in class_threshold.iter().enumerate() {
            if tq == u32::MAX {
                table.always[q] = !0;
            } else if tq > 0 {
                let g = match values.iter().position(|&v| v == tq) {
                    Some(g) => g,
                    None => {
                        values.push(tq);
                        values.len() - 1
                    }
                };
                table.member[g][q] = !0;
            }
        }
        table.groups = values.len();
        for (g, &v) in values.iter().enumerate() {
            for d in 0..32 {
                if v >> (31 - d) & 1 == 1 {
                    table.digit[d][g] = !0;
                }
            }
            table.last_digit = table.last_digit.max(32 - v.trailing_zeros() as usize);
        }
        table
    }
}

/// Words of a packed row updated together, each with its own random stream: a property of the
/// packing, the same on every CPU (8 x 64 bits: one AVX-512 register, two AVX2 registers), so
/// the chain for a seed does not depend on the instruction set.
pub const LANES: usize = 8;

/// One 64-bit word per lane.
type Lanes = [u64; LANES];

/// The instruction set the kernel was compiled for (chosen once per chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    /// Plain 64-bit code (any CPU).
    Portable,
    /// AVX2 and POPCNT.
    Avx2,
    /// AVX-512F, AVX-512 VPOPCNTDQ and POPCNT.
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU has.
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vpopcntdq") && has!("popcnt") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("popcnt") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }
}

/// [`LANES`] Xoshiro256++ generators (Blackman & Vigna) advanced together, lane i by the
/// reference recurrence on `state[0..4][i]`; the lanes are independent streams.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct LaneRng {
    state: [Lanes; 4],
}

impl LaneRng {
    /// The streams of packed row `row`: lane i starts from the first four outputs of
    /// [`crate::rng::stream_for`]`(seed, Purpose::MultiSpinRow, LANES row + i)` (a state of
    /// all zeros, which Xoshiro cannot leave, is replaced by (1, 0, 0, 0)).
    fn new(seed: u64, row: usize) -> Self {
        let mut state = [[0u64; LANES]; 4];
        for i in 0..LANES {
            let mut g = stream_for(seed, Purpose::MultiSpinRow, (LANES * row + i) as u64);
            for word in state.iter_mut() {
                word[i] = g.next_u64();
            }
            if (0..4).all(|w| state[w][i] == 0) {
                state[0][i] = 1;
            }
        }
        LaneRng { state }
    }
}

/// The next output of every lane: result = rotl(s_0 + s_3, 23) + s_0, then
/// s_2 ^= s_0, s_3 ^= s_1, s_1 ^= s_2, s_0 ^= s_3, s_2 ^= s_1 << 17 (the old s_1),
/// s_3 = rotl(s_3, 45).
#[inline(always)]
fn xoshiro_lanes(state: &mut [Lanes; 4]) -> Lanes {
    let [s0, s1, s2, s3] = state;
    let mut out = [0u64; LANES];
    for i in 0..LANES {
        out[i] = s0[i]
            .wrapping_add(s3[i])
            .rotate_left(23)
            .wrapping_add(s0[i]);
        let t = s1[i] << 17;
        s2[i] ^= s0[i];
        s3[i] ^= s1[i];
        s1[i] ^= s2[i];
        s0[i] ^= s3[i];
        s2[i] ^= t;
        s3[i] = s3[i].rotate_left(45);
    }
    out
}

/// What a half sweep of one packed row did: flips, change of the bond sum and of the
/// magnetisation.
#[derive(Debug, Default, Clone, Copy)]
struct Change {
    flips: i64,
    bonds: i64,
    magnetization: i64,
}

impl std::ops::Add for Change {
    type Output = Change;
    fn add(self, o: Change) -> Change {
        Change {
            flips: self.flips + o.flips,
            bonds: self.bonds + o.bonds,
            magnetization: self.magnetization + o.magnetization,
        }
    }
}

/// The words around one packed row of the colour being updated.
struct RowNeighbours<'a> {
    up: &'a [u64],
    down: &'a [u64],
    mid: &'a [u64],
    /// Rotation of `up` / `down` across the strip edge (r' = 0 / r' = Hs - 1).
    rotate_up: bool,
    rotate_down: bool,
    /// o = (r' + c) mod 2.
    offset: usize,
}

/// The packing of a lattice: `bits` strips of `rows` rows, `w2` words per packed row.
#[derive(Debug, Clone, Copy)]
struct Packing {
    bits: u32,
    rows: usize,
    w2: usize,
    valid: u64,
}

impl Packing {
    fn new(width: usize, height: usize) -> Self {
        let half = height / 2;
        let bits = (1..=64usize.min(half))
            .rev()
            .find(|b| half.is_multiple_of(*b))
            .unwrap_or(1);
        Packing {
            bits: bits as u32,
            rows: height / bits,
            w2: width / 2,
            valid: if bits == 64 { !0 } else { (1u64 << bits) - 1 },
        }
    }

    /// Bit b takes bit b - 1 (bit 0 takes bit B - 1): the strip above.
    #[inline(always)]
    fn rotate_from_above(&self, x: u64) -> u64 {
        ((x << 1) | (x >> (self.bits - 1))) & self.valid
    }

    /// Bit b takes bit b + 1 (bit B - 1 takes bit 0): the strip below.
    #[inline(always)]
    fn rotate_from_below(&self, x: u64) -> u64 {
        (x >> 1) | ((x & 1) << (self.bits - 1))
    }

    fn neighbours<'a>(&self, other: &'a [u64], r: usize, c: usize) -> RowNeighbours<'a> {
        let (w2, rows) = (self.w2, self.rows);
        let row = |i: usize| &other[i * w2..(i + 1) * w2];
        RowNeighbours {
            up: row((r + rows - 1) % rows),
            down: row((r + 1) % rows),
            mid: row(r),
            rotate_up: r == 0,
            rotate_down: r + 1 == rows,
            offset: (r + c) % 2,
        }
    }

    /// The four neighbour words of word k.
    #[inline(always)]
    fn around(&self, nb: &RowNeighbours<'_>, k: usize) -> [u64; 4] {
        let [mut up, mut down, left, right] = self.around_raw(nb, k);
        if nb.rotate_up {
            up = self.rotate_from_above(up);
        }
        if nb.rotate_down {
            down = self.rotate_from_below(down);
        }
        [up, down, left, right]
    }

    /// [`Self::around`] without the rotations across strip edges.
    #[inline(always)]
    fn around_raw(&self, nb: &RowNeighbours<'_>, k: usize) -> [u64; 4] {
        let w2 = self.w2;
        let (left, right) = if nb.offset == 0 {
            (nb.mid[if k == 0 { w2 - 1 } else { k - 1 }], nb.mid[k])
        } else {
            (nb.mid[k], nb.mid[if k + 1 == w2 { 0 } else { k + 1 }])
        };
        [nb.up[k], nb.down[k], left, right]
    }
}

/// The multi-spin-coded checkerboard chain (see the module docs).
#[derive(Debug, Clone)]
pub struct MultiSpin {
    width: usize,
    height: usize,
    coupling: f64,
    field: f64,
    packing: Packing,
    colours: [Vec<u64>; 2],
    rngs: Vec<LaneRng>,
    table: Box<AcceptTable>,
    isa: Isa,
    bonds: i64,
    magnetization: i64,
}

impl MultiSpin {
    /// True when the multi-spin path applies: a torus with even width and even height (so both
    /// directions are two-colourable and every site has four neighbours) and a uniform field.
    pub fn applies(model: &IsingLattice) -> bool {
        model.boundary() == Boundary::Periodic
            && model.width().is_multiple_of(2)
            && model.height().is_multiple_of(2)
            && model.site_field().is_none()
    }

    /// Number of sites.
    pub fn num_sites(&self) -> usize {
        self.width * self.height
    }

    /// Spins per word on this lattice (B, at most 64).
    pub fn spins_per_word(&self) -> u32 {
        self.packing.bits
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
        let packing = Packing::new(w, h);
        let mut colours = [
            vec![0u64; packing.rows * packing.w2],
            vec![0u64; packing.rows * packing.w2],
        ];
        for r in 0..h {
            let (b, rp) = (r / packing.rows, r % packing.rows);
            for col in 0..w {
                if state[r * w + col] > 0 {
                    colours[(r + col) % 2][rp * packing.w2 + col / 2] |= 1 << b;
                }
            }
        }
        let rngs = (0..packing.rows).map(|r| LaneRng::new(seed, r)).collect();
        let mut chain = MultiSpin {
            width: w,
            height: h,
            coupling: model.coupling(),
            field: model.uniform_field(),
            packing,
            colours,
            rngs,
            table: Box::new(AcceptTable::new(
                rule,
                beta,
                model.coupling(),
                model.uniform_field(),
            )),
            isa: Isa::detect(),
            bonds: 0,
            magnetization: 0,
        };
        chain.bonds = chain.bond_sum();
        chain.magnetization = chain.count_magnetization();
        chain
    }

    /// With `false`, runs the portable kernel even where the CPU has AVX2 or AVX-512 (for
    /// benchmarks and tests); with `true`, the widest the CPU has. The chain is the same bits
    /// either way.
    pub fn set_simd(&mut self, allow: bool) {
        self.isa = if allow { Isa::detect() } else { Isa::Portable };
    }

    /// One sweep (colour 0 then colour 1); returns the number of spins flipped.
    pub fn sweep(&mut self) -> u64 {
        let mut flips = 0;
        for c in 0..2 {
            let d = self.half_sweep(c);
            flips += d.flips as u64;
            self.bonds += d.bonds;
            self.magnetization += d.magnetization;
        }
        flips
    }

    fn half_sweep(&mut self, c: usize) -> Change {
        let p = self.packing;
        let [a, b] = &mut self.colours;
        let (target, other) = if c == 0 { (a, &*b) } else { (b, &*a) };
        let (table, isa) = (&self.table, self.isa);
        let update = |(r, (row, rng)): (usize, (&mut [u64], &mut LaneRng))| -> Change {
            let nb = p.neighbours(other, r, c);
            update_row_dispatch(row, &nb, &p, rng, table, isa)
        };
        if target.len() < PARALLEL_MIN_WORDS {
            target
                .chunks_mut(p.w2)
                .zip(self.rngs.iter_mut())
                .enumerate()
                .map(update)
                .fold(Change::default(), |x, y| x + y)
        } else {
            target
                .par_chunks_mut(p.w2)
                .zip(self.rngs.par_iter_mut())
                .enumerate()
                .map(update)
                .reduce(Change::default, |x, y| x + y)
        }
    }

    /// Sum over bonds of s_i s_j from the configuration: each bond has one end of colour 0,
    /// and a colour-0 site with a anti-aligned neighbours contributes 4 - 2a.
    pub fn bond_sum(&self) -> i64 {
        let p = self.packing;
        let other = &self.colours[1];
        let mut total = 0i64;
        for (r, row) in self.colours[0].chunks(p.w2).enumerate() {
            let nb = p.neighbours(other, r, 0);
            for (k, &s) in row.iter().enumerate() {
                let [up, down, left, right] = p.around(&nb, k);
                let [a0, a1, a2] = anti_aligned_count(s, up, down, left, right);
                let a = (a0 & p.valid).count_ones()
                    + 2 * (a1 & p.valid).count_ones()
                    + 4 * (a2 & p.valid).count_ones();
                total += 4 * p.bits as i64 - 2 * a as i64;
            }
        }
        total
    }

    /// Sum of all spins, recounted from the configuration.
    pub fn count_magnetization(&self) -> i64 {
        let up: i64 = self
            .colours
            .iter()
            .flat_map(|c| c.iter())
            .map(|w| w.count_ones() as i64)
            .sum();
        2 * up - (self.width * self.height) as i64
    }

    /// Sum of all spins (kept up to date by the sweeps).
    pub fn magnetization(&self) -> i64 {
        self.magnetization
    }

    /// E(s) = -J (bond sum) - h (magnetisation), from the tracked sums.
    pub fn energy(&self) -> f64 {
        -self.coupling * self.bonds as f64 - self.field * self.magnetization as f64
    }

    /// The tracked bond sum.
    pub fn bonds(&self) -> i64 {
        self.bonds
    }

    /// The configuration, row-major.
    pub fn state(&self) -> Vec<Spin> {
        let (w, h, p) = (self.width, self.height, self.packing);
        let mut s = vec![0; w * h];
        for r in 0..h {
            let (b, rp) = (r / p.rows, r % p.rows);
            for col in 0..w {
                let word = self.colours[(r + col) % 2][rp * p.w2 + col / 2];
                s[r * w + col] = if word >> b & 1 == 1 { 1 } else { -1 };
            }
        }
        s
    }
}

/// Picks the kernel compiled for the number of threshold groups and for a zero field, in the
/// copy for the instruction set chosen when the chain was made (all copies compute the same
/// bits: the same operations lane by lane).
#[cfg(target_arch = "x86_64")]
use avx2::update_row as avx2_update_row;
#[cfg(target_arch = "x86_64")]
use avx512::update_row as avx512_update_row;

fn update_row_dispatch(
    row: &mut [u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    rng: &mut LaneRng,
    t: &AcceptTable,
    isa: Isa,
) -> Change {
    macro_rules! go {
        ($f:ident; $($g:literal)*) => {
            match (t.groups, t.no_field) {
                $(
                    ($g, true) => $f::<$g, false>(row, nb, p, rng, t),
                    ($g, false) => $f::<$g, true>(row, nb, p, rng, t),
                )*
                _ => unreachable!("at most 10 threshold groups"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is chosen only when the CPU reported AVX-512F, AVX-512
        // VPOPCNTDQ and POPCNT (`Isa::detect`).
        Isa::Avx512 => unsafe { go!(avx512_update_row; 0 1 2 3 4 5 6 7 8 9 10) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is chosen only when the CPU reported AVX2 and POPCNT.
        Isa::Avx2 => unsafe { go!(avx2_update_row; 0 1 2 3 4 5 6 7 8 9 10) },
        _ => go!(update_row; 0 1 2 3 4 5 6 7 8 9 10),
    }
}

/// The classes of the words of a group: the masks of the threshold groups, of the sites that
/// always flip, and of the sites still to compare (in some group).
#[inline(always)]
fn classify<const G: usize, const FIELD: bool>(
    s: &Lanes,
    count: &[Lanes; 3],
    t: &AcceptTable,
) -> ([Lanes; G], Lanes, Lanes) {
    let mut group = [[0u64; LANES]; G];
    let mut always = [0u64; LANES];
    let mut undecided = [0u64; LANES];
    for i in 0..LANES {
        let by_count = count_masks([count[0][i], count[1][i], count[2][i]]);
        let mut class = [0u64; 10];
        if FIELD {
            for a in 0..5 {
                class[a] = by_count[a] & !s[i];
                class[a + 5] = by_count[a] & s[i];
            }
        } else {
            // Classes (a, -1) and (a, +1) have the same threshold: use the first for both.
            class[..5].copy_from_slice(&by_count);
        }
        let classes = if FIELD { 10 } else { 5 };
        for q in 0..classes {
            always[i] |= class[q] & t.always[q];
        }
        for g in 0..G {
            for q in 0..classes {
                group[g][i] |= class[q] & t.member[g][q];
            }
            undecided[i] |= group[g][i];
        }
    }
    (group, always, undecided)
}

/// The flip masks of a group of [`LANES`] words (`live[i]`: the sites of word i to update, 0
/// for a lane past the end of the row): the sites of classes that always flip, and those whose
/// uniform, drawn digit by digit with lane i of `rng` supplying the digits of word i, is below
/// their class's threshold. Every lane draws one word per digit until every site of the group
/// is decided (or the last nonzero threshold digit is passed).
#[inline(always)]
fn flip_masks<const G: usize, const FIELD: bool>(
    s: &Lanes,
    count: &[Lanes; 3],
    live: &Lanes,
    rng: &mut [Lanes; 4],
    t: &AcceptTable,
) -> Lanes {
    let (group, always, undecided) = classify::<G, FIELD>(s, count, t);
    let mut eq = [0u64; LANES];
    let mut lt = [0u64; LANES];
    for i in 0..LANES {
        eq[i] = undecided[i] & live[i];
    }
    let mut d = 0;
    while d < t.last_digit && eq.iter().fold(0, |x, &y| x | y) != 0 {
        let r = xoshiro_lanes(rng);
        let digits = &t.digit[d];
        for i in 0..LANES {
            let mut digit = 0u64;
            for g in 0..G {
                digit |= group[g][i] & digits[g];
            }
            lt[i] |= eq[i] & digit & !r[i];
            eq[i] &= !(digit ^ r[i]);
        }
        d += 1;
    }
    let mut f = [0u64; LANES];
    for i in 0..LANES {
        f[i] = (lt[i] | always[i]) & live[i];
    }
    f
}

/// The words of a group starting at word k of the row, with their four neighbour words and
/// their live-site masks; `n` words are in the row (the rest of the lanes are 0 and not live).
#[inline(always)]
fn gather(
    row: &[u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    k: usize,
) -> (Lanes, [Lanes; 4], Lanes) {
    let w2 = p.w2;
    let mut s = [0u64; LANES];
    let mut n4 = [[0u64; LANES]; 4];
    let mut live = [0u64; LANES];
    let interior = k + LANES <= w2
        && if nb.offset == 0 {
            k > 0
        } else {
            k + LANES < w2
        };
    if interior {
        // Contiguous words: plain (vector) loads.
        let side = if nb.offset == 0 { k - 1 } else { k + 1 };
        s.copy_from_slice(&row[k..k + LANES]);
        n4[0].copy_from_slice(&nb.up[k..k + LANES]);
        n4[1].copy_from_slice(&nb.down[k..k + LANES]);
        if nb.offset == 0 {
            n4[2].copy_from_slice(&nb.mid[side..side + LANES]);
            n4[3].copy_from_slice(&nb.mid[k..k + LANES]);
        } else {
            n4[2].copy_from_slice(&nb.mid[k..k + LANES]);
            n4[3].copy_from_slice(&nb.mid[side..side + LANES]);
        }
        live = [p.valid; LANES];
    } else {
        for i in 0..LANES.min(w2 - k) {
            s[i] = row[k + i];
            let [up, down, left, right] = p.around_raw(nb, k + i);
            n4[0][i] = up;
            n4[1][i] = down;
            n4[2][i] = left;
            n4[3][i] = right;
            live[i] = p.valid;
        }
    }
    if nb.rotate_up {
        for i in 0..LANES {
            n4[0][i] = p.rotate_from_above(n4[0][i]);
        }
    }
    if nb.rotate_down {
        for i in 0..LANES {
            n4[1][i] = p.rotate_from_below(n4[1][i]);
        }
    }
    (s, n4, live)
}

/// One half-sweep update of one packed row: groups of [`LANES`] words, word k + i of a group
/// drawing its digits from lane i of the row's streams.
#[inline(always)]
fn update_row<const G: usize, const FIELD: bool>(
    row: &mut [u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    rng: &mut LaneRng,
    t: &AcceptTable,
) -> Change {
    let mut state = rng.state;
    let (mut flips, mut a_sum, mut up_flips) = ([0u64; LANES], [0u64; LANES], [0u64; LANES]);
    let mut k = 0;
    while k < row.len() {
        let (s, [up, down, left, right], live) = gather(row, nb, p, k);
        let mut count = [[0u64; LANES]; 3];
        for i in 0..LANES {
            let [a0, a1, a2] = anti_aligned_count(s[i], up[i], down[i], left[i], right[i]);
            count[0][i] = a0;
            count[1][i] = a1;
            count[2][i] = a2;
        }
        let f = flip_masks::<G, FIELD>(&s, &count, &live, &mut state, t);
        for i in 0..LANES {
            flips[i] += f[i].count_ones() as u64;
            a_sum[i] += (f[i] & count[0][i]).count_ones() as u64
                + 2 * (f[i] & count[1][i]).count_ones() as u64
                + 4 * (f[i] & count[2][i]).count_ones() as u64;
            up_flips[i] += (f[i] & s[i]).count_ones() as u64;
        }
        let n = LANES.min(row.len() - k);
        if n == LANES {
            for i in 0..LANES {
                row[k + i] = s[i] ^ f[i];
            }
        } else {
            for i in 0..n {
                row[k + i] = s[i] ^ f[i];
            }
        }
        k += LANES;
    }
    rng.state = state;
    let flips = flips.iter().sum::<u64>() as i64;
    let a_sum = a_sum.iter().sum::<u64>() as i64;
    let up_flips = up_flips.iter().sum::<u64>() as i64;
    Change {
        flips,
        // -2 s S = 4a - 8 per flipped site.
        bonds: 4 * a_sum - 8 * flips,
        // +1 -> -1 for up_flips sites, -1 -> +1 for the others.
        magnetization: 2 * (flips - up_flips) - 2 * up_flips,
    }
}

/// [`update_row`] written with AVX-512 intrinsics, one group of [`LANES`] words per 512-bit
/// register: the same operations lane by lane, so the same flips and the same stream use.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{AcceptTable, Change, LANES, LaneRng, Lanes, Packing, RowNeighbours, gather};

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(x: &[u64]) -> __m512i {
        assert!(x.len() >= LANES);
        // SAFETY: the slice holds at least LANES words (checked); unaligned load.
        unsafe { _mm512_loadu_si512(x.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store(x: &mut [u64], v: __m512i) {
        assert!(x.len() >= LANES);
        // SAFETY: the slice holds at least LANES words (checked); unaligned store.
        unsafe { _mm512_storeu_si512(x.as_mut_ptr().cast(), v) }
    }

    /// `super::update_row::<G, FIELD>` for a CPU with AVX-512F and VPOPCNTDQ.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
    pub(super) fn update_row<const G: usize, const FIELD: bool>(
        row: &mut [u64],
        nb: &RowNeighbours<'_>,
        p: &Packing,
        rng: &mut LaneRng,
        t: &AcceptTable,
    ) -> Change {
        let w2 = row.len();
        let mut st = [
            load(&rng.state[0]),
            load(&rng.state[1]),
            load(&rng.state[2]),
            load(&rng.state[3]),
        ];
        let zero = _mm512_setzero_si512();
        let (mut flips, mut a_sum, mut up_flips) = (zero, zero, zero);
        let valid = _mm512_set1_epi64(p.valid as i64);
        let bits = p.bits as u64;
        let top = _mm512_set1_epi64(bits as i64 - 1);
        let mut k = 0;
        while k < w2 {
            let interior = k + LANES <= w2
                && if nb.offset == 0 {
                    k > 0
                } else {
                    k + LANES < w2
                };
            let (s, mut up, mut down, left, right, live);
            if interior {
                s = load(&row[k..]);
                up = load(&nb.up[k..]);
                down = load(&nb.down[k..]);
                if nb.offset == 0 {
                    left = load(&nb.mid[k - 1..]);
                    right = load(&nb.mid[k..]);
                } else {
                    left = load(&nb.mid[k..]);
                    right = load(&nb.mid[k + 1..]);
                }
                live = valid;
            } else {
                // Edge or last group: the portable gather (rotations applied below).
                let raw = RowNeighbours {
                    rotate_up: false,
                    rotate_down: false,
                    ..*nb
                };
                let (sl, n4, ll): (Lanes, [Lanes; 4], Lanes) = gather(row, &raw, p, k);
                s = load(&sl);
                up = load(&n4[0]);
                down = load(&n4[1]);
                left = load(&n4[2]);
                right = load(&n4[3]);
                live = load(&ll);
            }
            if nb.rotate_up {
                // Bit b takes bit b - 1, bit 0 takes bit B - 1.
                up = _mm512_and_si512(
                    _mm512_or_si512(_mm512_slli_epi64::<1>(up), _mm512_srlv_epi64(up, top)),
                    valid,
                );
            }
            if nb.rotate_down {
                // Bit b takes bit b + 1, bit B - 1 takes bit 0.
                let low = _mm512_and_si512(down, _mm512_set1_epi64(1));
                down = _mm512_or_si512(_mm512_srli_epi64::<1>(down), _mm512_sllv_epi64(low, top));
            }
            // Anti-aligned count by half adders (see `anti_aligned_count`).
            let (x1, x2) = (_mm512_xor_si512(s, up), _mm512_xor_si512(s, down));
            let (x3, x4) = (_mm512_xor_si512(s, left), _mm512_xor_si512(s, right));
            let (u1, c1) = (_mm512_xor_si512(x1, x2), _mm512_and_si512(x1, x2));
            let (u2, c2) = (_mm512_xor_si512(x3, x4), _mm512_and_si512(x3, x4));
            let (a0, c3) = (_mm512_xor_si512(u1, u2), _mm512_and_si512(u1, u2));
            let a1 = _mm512_ternarylogic_epi64::<0x96>(c1, c2, c3);
            let a2 = _mm512_and_si512(c1, c2);
            // One-hot masks of a = 0..=4 (see `count_masks`).
            let by_count = [
                _mm512_ternarylogic_epi64::<0x01>(a0, a1, a2),
                _mm512_ternarylogic_epi64::<0x10>(a0, a1, a2),
                _mm512_andnot_si512(a0, a1),
                _mm512_and_si512(a0, a1),
                a2,
            ];
            let mut class = [zero; 10];
            if FIELD {
                for a in 0..5 {
                    class[a] = _mm512_andnot_si512(s, by_count[a]);
                    class[a + 5] = _mm512_and_si512(by_count[a], s);
                }
            } else {
                class[..5].copy_from_slice(&by_count);
            }
            let classes = if FIELD { 10 } else { 5 };
            let mut always = zero;
            for q in 0..classes {
                if t.always[q] != 0 {
                    always = _mm512_or_si512(always, class[q]);
                }
            }
            let mut group = [zero; G];
            let mut undecided = zero;
            for g in 0..G {
                for q in 0..classes {
                    if t.member[g][q] != 0 {
                        group[g] = _mm512_or_si512(group[g], class[q]);
                    }
                }
                undecided = _mm512_or_si512(undecided, group[g]);
            }
            // Digit-by-digit comparison (see `flip_masks`).
            let mut eq = _mm512_and_si512(undecided, live);
            let mut lt = zero;
            let mut d = 0;
            while d < t.last_digit && _mm512_test_epi64_mask(eq, eq) != 0 {
                let [s0, s1, s2, s3] = &mut st;
                let r = _mm512_add_epi64(_mm512_rol_epi64::<23>(_mm512_add_epi64(*s0, *s3)), *s0);
                let tt = _mm512_slli_epi64::<17>(*s1);
                *s2 = _mm512_xor_si512(*s2, *s0);
                *s3 = _mm512_xor_si512(*s3, *s1);
                *s1 = _mm512_xor_si512(*s1, *s2);
                *s0 = _mm512_xor_si512(*s0, *s3);
                *s2 = _mm512_xor_si512(*s2, tt);
                *s3 = _mm512_rol_epi64::<45>(*s3);
                let mut digit = zero;
                for g in 0..G {
                    let m = _mm512_set1_epi64(t.digit[d][g] as i64);
                    digit = _mm512_ternarylogic_epi64::<0xF8>(digit, group[g], m);
                }
                // lt |= eq & digit & !r; eq &= !(digit ^ r).
                lt = _mm512_or_si512(lt, _mm512_ternarylogic_epi64::<0x40>(eq, digit, r));
                eq = _mm512_andnot_si512(_mm512_xor_si512(digit, r), eq);
                d += 1;
            }
            let f = _mm512_and_si512(_mm512_or_si512(lt, always), live);
            flips = _mm512_add_epi64(flips, _mm512_popcnt_epi64(f));
            let weighted = _mm512_add_epi64(
                _mm512_popcnt_epi64(_mm512_and_si512(f, a0)),
                _mm512_slli_epi64::<1>(_mm512_add_epi64(
                    _mm512_popcnt_epi64(_mm512_and_si512(f, a1)),
                    _mm512_slli_epi64::<1>(_mm512_popcnt_epi64(_mm512_and_si512(f, a2))),
                )),
            );
            a_sum = _mm512_add_epi64(a_sum, weighted);
            up_flips = _mm512_add_epi64(up_flips, _mm512_popcnt_epi64(_mm512_and_si512(f, s)));
            let new = _mm512_xor_si512(s, f);
            if k + LANES <= w2 {
                store(&mut row[k..], new);
            } else {
                let mut out = [0u64; LANES];
                store(&mut out, new);
                let n = w2 - k;
                row[k..].copy_from_slice(&out[..n]);
            }
            k += LANES;
        }
        for (i, v) in st.into_iter().enumerate() {
            store(&mut rng.state[i], v);
        }
        let flips = _mm512_reduce_add_epi64(flips);
        let a_sum = _mm512_reduce_add_epi64(a_sum);
        let up_flips = _mm512_reduce_add_epi64(up_flips);
        Change {
            flips,
            bonds: 4 * a_sum - 8 * flips,
            magnetization: 2 * (flips - up_flips) - 2 * up_flips,
        }
    }
}

/// [`update_row`] written with AVX2 intrinsics, one group of [`LANES`] words in two 256-bit
/// registers: the same operations lane by lane as the portable code, so the same flips and the
/// same stream use.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{AcceptTable, Change, LANES, LaneRng, Lanes, Packing, RowNeighbours, gather};

    /// One group of [`LANES`] words: lanes 0-3 and 4-7.
    #[derive(Clone, Copy)]
    struct V([__m256i; 2]);

    macro_rules! lanewise {
        ($name:ident, $op:ident) => {
            #[inline]
            #[target_feature(enable = "avx2")]
            fn $name(a: V, b: V) -> V {
                V([$op(a.0[0], b.0[0]), $op(a.0[1], b.0[1])])
            }
        };
    }
    lanewise!(and, _mm256_and_si256);
    lanewise!(or, _mm256_or_si256);
    lanewise!(xor, _mm256_xor_si256);
    lanewise!(add, _mm256_add_epi64);
    // !a & b.
    lanewise!(andnot, _mm256_andnot_si256);

    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(x: u64) -> V {
        let v = _mm256_set1_epi64x(x as i64);
        V([v, v])
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn load(x: &[u64]) -> V {
        assert!(x.len() >= LANES);
        // SAFETY: the slice holds at least LANES words (checked); unaligned loads.
        unsafe {
            V([
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(x.as_ptr().add(4).cast()),
            ])
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn store(x: &mut [u64], v: V) {
        assert!(x.len() >= LANES);
        // SAFETY: the slice holds at least LANES words (checked); unaligned stores.
        unsafe {
            _mm256_storeu_si256(x.as_mut_ptr().cast(), v.0[0]);
            _mm256_storeu_si256(x.as_mut_ptr().add(4).cast(), v.0[1]);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn shl<const N: i32>(a: V) -> V {
        V([
            _mm256_slli_epi64::<N>(a.0[0]),
            _mm256_slli_epi64::<N>(a.0[1]),
        ])
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn shr<const N: i32>(a: V) -> V {
        V([
            _mm256_srli_epi64::<N>(a.0[0]),
            _mm256_srli_epi64::<N>(a.0[1]),
        ])
    }

    /// Rotation left by N (R = 64 - N).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rol<const N: i32, const R: i32>(a: V) -> V {
        or(shl::<N>(a), shr::<R>(a))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn any(a: V) -> bool {
        let x = _mm256_or_si256(a.0[0], a.0[1]);
        _mm256_testz_si256(x, x) == 0
    }

    /// Bits set in each 64-bit lane (nibble table by VPSHUFB, bytes summed by VPSADBW).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn popcnt(a: V) -> V {
        let table = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let one = |x: __m256i| {
            let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
            let hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi64::<4>(x), low));
            _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256())
        };
        V([one(a.0[0]), one(a.0[1])])
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum(a: V) -> i64 {
        let mut out = [0u64; LANES];
        store(&mut out, a);
        out.iter().sum::<u64>() as i64
    }

    /// `super::update_row::<G, FIELD>` for a CPU with AVX2.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn update_row<const G: usize, const FIELD: bool>(
        row: &mut [u64],
        nb: &RowNeighbours<'_>,
        p: &Packing,
        rng: &mut LaneRng,
        t: &AcceptTable,
    ) -> Change {
        let w2 = row.len();
        let [mut s0, mut s1, mut s2, mut s3] = [
            load(&rng.state[0]),
            load(&rng.state[1]),
            load(&rng.state[2]),
            load(&rng.state[3]),
        ];
        let zero = splat(0);
        let (mut flips, mut a_sum, mut up_flips) = (zero, zero, zero);
        let valid = splat(p.valid);
        let top = _mm256_set1_epi64x(p.bits as i64 - 1);
        let mut k = 0;
        while k < w2 {
            let interior = k + LANES <= w2
                && if nb.offset == 0 {
                    k > 0
                } else {
                    k + LANES < w2
                };
            let (s, mut up, mut down, left, right, live);
            if interior {
                s = load(&row[k..]);
                up = load(&nb.up[k..]);
                down = load(&nb.down[k..]);
                if nb.offset == 0 {
                    left = load(&nb.mid[k - 1..]);
                    right = load(&nb.mid[k..]);
                } else {
                    left = load(&nb.mid[k..]);
                    right = load(&nb.mid[k + 1..]);
                }
                live = valid;
            } else {
                // Edge or last group: the portable gather (rotations applied below).
                let raw = RowNeighbours {
                    rotate_up: false,
                    rotate_down: false,
                    ..*nb
                };
                let (sl, n4, ll): (Lanes, [Lanes; 4], Lanes) = gather(row, &raw, p, k);
                s = load(&sl);
                up = load(&n4[0]);
                down = load(&n4[1]);
                left = load(&n4[2]);
                right = load(&n4[3]);
                live = load(&ll);
            }
            if nb.rotate_up {
                // Bit b takes bit b - 1, bit 0 takes bit B - 1.
                let wrap = V([
                    _mm256_srlv_epi64(up.0[0], top),
                    _mm256_srlv_epi64(up.0[1], top),
                ]);
                up = and(or(shl::<1>(up), wrap), valid);
            }
            if nb.rotate_down {
                // Bit b takes bit b + 1, bit B - 1 takes bit 0.
                let low = and(down, splat(1));
                let wrap = V([
                    _mm256_sllv_epi64(low.0[0], top),
                    _mm256_sllv_epi64(low.0[1], top),
                ]);
                down = or(shr::<1>(down), wrap);
            }
            // Anti-aligned count by half adders (see `anti_aligned_count`).
            let (x1, x2, x3, x4) = (xor(s, up), xor(s, down), xor(s, left), xor(s, right));
            let (u1, c1) = (xor(x1, x2), and(x1, x2));
            let (u2, c2) = (xor(x3, x4), and(x3, x4));
            let (a0, c3) = (xor(u1, u2), and(u1, u2));
            let a1 = xor(xor(c1, c2), c3);
            let a2 = and(c1, c2);
            // One-hot masks of a = 0..=4 (see `count_masks`).
            let ones = splat(!0);
            let by_count = [
                andnot(or(or(a0, a1), a2), ones),
                andnot(or(a1, a2), a0),
                andnot(a0, a1),
                and(a0, a1),
                a2,
            ];
            let mut class = [zero; 10];
            if FIELD {
                for a in 0..5 {
                    class[a] = andnot(s, by_count[a]);
                    class[a + 5] = and(by_count[a], s);
                }
            } else {
                class[..5].copy_from_slice(&by_count);
            }
            let classes = if FIELD { 10 } else { 5 };
            let mut always = zero;
            for q in 0..classes {
                if t.always[q] != 0 {
                    always = or(always, class[q]);
                }
            }
            let mut group = [zero; G];
            let mut undecided = zero;
            for g in 0..G {
                for q in 0..classes {
                    if t.member[g][q] != 0 {
                        group[g] = or(group[g], class[q]);
                    }
                }
                undecided = or(undecided, group[g]);
            }
            // Digit-by-digit comparison (see `flip_masks`).
            let mut eq = and(undecided, live);
            let mut lt = zero;
            let mut d = 0;
            while d < t.last_digit && any(eq) {
                let r = add(rol::<23, 41>(add(s0, s3)), s0);
                let tt = shl::<17>(s1);
                s2 = xor(s2, s0);
                s3 = xor(s3, s1);
                s1 = xor(s1, s2);
                s0 = xor(s0, s3);
                s2 = xor(s2, tt);
                s3 = rol::<45, 19>(s3);
                let mut digit = zero;
                for g in 0..G {
                    digit = or(digit, and(group[g], splat(t.digit[d][g])));
                }
                // lt |= eq & digit & !r; eq &= !(digit ^ r).
                lt = or(lt, and(eq, andnot(r, digit)));
                eq = andnot(xor(digit, r), eq);
                d += 1;
            }
            let f = and(or(lt, always), live);
            flips = add(flips, popcnt(f));
            let weighted = add(
                popcnt(and(f, a0)),
                shl::<1>(add(popcnt(and(f, a1)), shl::<1>(popcnt(and(f, a2))))),
            );
            a_sum = add(a_sum, weighted);
            up_flips = add(up_flips, popcnt(and(f, s)));
            let new = xor(s, f);
            if k + LANES <= w2 {
                store(&mut row[k..], new);
            } else {
                let mut out = [0u64; LANES];
                store(&mut out, new);
                let n = w2 - k;
                row[k..].copy_from_slice(&out[..n]);
            }
            k += LANES;
        }
        for (i, v) in [s0, s1, s2, s3].into_iter().enumerate() {
            store(&mut rng.state[i], v);
        }
        let flips = sum(flips);
        let a_sum = sum(a_sum);
        let up_flips = sum(up_flips);
        Change {
            flips,
            bonds: 4 * a_sum - 8 * flips,
            magnetization: 2 * (flips - up_flips) - 2 * up_flips,
        }
    }
}

/// The flip probabilities the multi-spin path uses, indexed like
/// [`super::lattice::checkerboard_flip_probabilities`] (`[spin][s_i S_i + 4]`, odd sums 0),
/// read back from its own class table. Exposed for the exact stationarity tests.
#[doc(hidden)]
pub fn multispin_flip_probabilities(rule: LocalRule, beta: f64, j: f64, h: f64) -> [[f64; 9]; 2] {
    let t = AcceptTable::new(rule, beta, j, h);
    let mut p = [[0.0; 9]; 2];
    for a in 0..5 {
        p[0][8 - 2 * a] = threshold_probability(t.class_threshold[a]);
        p[1][8 - 2 * a] = threshold_probability(t.class_threshold[a + 5]);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EnergyModel;
    use crate::rng::EbmRng;
    use crate::sample::{Start, initial_state};

    /// Tori with even sides and their packings: B = 1 (H = 2), B = 2, 3, 4 (rotations across
    /// strips of 2 rows), B = 8 with strips of 4 rows, B = 64 with 2 and 4 rows.
    fn tori() -> Vec<(IsingLattice, u32)> {
        [
            (4, 2, 1.0, 0.3, 1),
            (2, 4, 1.0, 0.0, 2),
            (6, 6, 0.7, -0.3, 3),
            (4, 8, 1.0, 0.0, 4),
            (4, 4, 1.0, 0.15, 2),
            (8, 32, -0.6, 0.2, 16),
            (6, 128, 1.0, 0.1, 64),
            (2, 256, 1.0, 0.0, 64),
            (38, 12, 1.0, 0.2, 6),
            (34, 64, 0.9, 0.0, 32),
        ]
        .into_iter()
        .map(|(w, h, j, f, b)| {
            (
                IsingLattice::new(w, h, Boundary::Periodic, j, f).unwrap(),
                b,
            )
        })
        .collect()
    }

    /// All 2^5 combinations of a spin and its four neighbours in 32 bit positions, plus random
    /// words: the adder's count equals the scalar count of differing neighbours, bit by bit.
    #[test]
    fn bitwise_adder_counts_anti_aligned_neighbours_like_the_scalar_sum() {
        let mut words = [0u64; 5];
        for pattern in 0..32u64 {
            for (n, w) in words.iter_mut().enumerate() {
                *w |= (pattern >> n & 1) << pattern;
            }
        }
        let mut rng = crate::rng::from_seed(3);
        let mut cases = vec![words];
        for _ in 0..200 {
            cases.push([0; 5].map(|_| rng.next_u64()));
        }
        for [s, up, down, left, right] in cases {
            let count = anti_aligned_count(s, up, down, left, right);
            let masks = count_masks(count);
            for b in 0..64 {
                let spin = |w: u64| if w >> b & 1 == 1 { 1i32 } else { -1 };
                let sum = spin(up) + spin(down) + spin(left) + spin(right);
                // s S = 4 - 2a: the scalar neighbour sum gives a = (4 - s S) / 2.
                let a = ((4 - spin(s) * sum) / 2) as u64;
                let got = (count[0] >> b & 1) + 2 * (count[1] >> b & 1) + 4 * (count[2] >> b & 1);
                assert_eq!(got, a, "bit {b}");
                for (v, m) in masks.iter().enumerate() {
                    assert_eq!(m >> b & 1 == 1, v as u64 == a, "bit {b}, a = {a}, mask {v}");
                }
            }
        }
    }

    /// The digit-by-digit comparison decides, for every bit, U_b < t_b exactly (U_b the 32-bit
    /// number whose digit j is bit b of the j-th word drawn, t_b its class's threshold), and
    /// always flips the classes of threshold u32::MAX: checked against the scalar predicate on
    /// the same random words, with a field (ten classes) and without, for both rules, one word alone
    /// and two words compared together on two streams.
    #[test]
    fn bit_sliced_comparison_equals_the_scalar_threshold_test() {
        let mut words = crate::rng::from_seed(11);
        let mut tested = 0;
        for (rule, beta, j, h) in [
            (LocalRule::Metropolis, 0.44, 1.0, 0.0),
            (LocalRule::Gibbs, 0.44, 1.0, 0.0),
            (LocalRule::Metropolis, 0.3, 0.8, 0.25),
            (LocalRule::Gibbs, 0.7, -1.0, 0.4),
            (LocalRule::Gibbs, 0.0, 1.0, 0.0),
        ] {
            let table = AcceptTable::new(rule, beta, j, h);
            let scalar = |s: u64, count: [u64; 3], f: u64, digits: &[u64]| {
                let masks = count_masks(count);
                for b in 0..64 {
                    let a = (0..5).find(|&a| masks[a] >> b & 1 == 1).unwrap();
                    let q = a + 5 * (s >> b & 1) as usize;
                    let t = table.class_threshold[q];
                    let u = (0..32).fold(0u32, |u, d| (u << 1) | (digits[d] >> b & 1) as u32);
                    assert_eq!(f >> b & 1 == 1, u < t || t == u32::MAX, "bit {b}");
                }
            };
            for rep in 0..300 {
                let mut s = [0u64; LANES];
                let mut count = [[0u64; LANES]; 3];
                for i in 0..LANES {
                    s[i] = words.next_u64();
                    let n = [0; 4].map(|_| words.next_u64());
                    let c = anti_aligned_count(s[i], n[0], n[1], n[2], n[3]);
                    for x in 0..3 {
                        count[x][i] = c[x];
                    }
                }
                // Every third group has its last three lanes past the end of a row.
                let live: Lanes =
                    std::array::from_fn(|i| if rep % 3 == 0 && i >= 5 { 0 } else { !0 });
                let mut state = [0; 4].map(|_| [0; LANES].map(|_| words.next_u64()));
                let mut replay = state;
                let digits: Vec<Lanes> = (0..32).map(|_| xoshiro_lanes(&mut replay)).collect();
                let f = if table.no_field {
                    flip_masks_any::<false>(&s, &count, &live, &mut state, &table)
                } else {
                    flip_masks_any::<true>(&s, &count, &live, &mut state, &table)
                };
                for i in 0..LANES {
                    let lane: Vec<u64> = digits.iter().map(|d| d[i]).collect();
                    let c = [count[0][i], count[1][i], count[2][i]];
                    if live[i] == 0 {
                        assert_eq!(f[i], 0, "lane {i} past the end of the row");
                    } else {
                        scalar(s[i], c, f[i], &lane);
                        tested += 64;
                    }
                }
            }
        }
        assert_eq!(tested, 5 * (300 * LANES - 100 * 3) * 64);
    }

    fn flip_masks_any<const FIELD: bool>(
        s: &Lanes,
        count: &[Lanes; 3],
        live: &Lanes,
        state: &mut [Lanes; 4],
        t: &AcceptTable,
    ) -> Lanes {
        macro_rules! go {
            ($($g:literal)*) => {
                match t.groups {
                    $( $g => flip_masks::<$g, FIELD>(s, count, live, state, t), )*
                    _ => unreachable!(),
                }
            };
        }
        go!(0 1 2 3 4 5 6 7 8 9 10)
    }

    /// Lane i of [`xoshiro_lanes`] is the reference Xoshiro256++ (the `rand_xoshiro` crate)
    /// started from the same four state words.
    #[test]
    fn lane_generators_equal_the_reference_xoshiro256_plus_plus() {
        use rand::SeedableRng;
        let lanes = LaneRng::new(5, 3);
        let mut state = lanes.state;
        let mut reference: Vec<EbmRng> = (0..LANES)
            .map(|i| {
                let mut bytes = [0u8; 32];
                for (w, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                    chunk.copy_from_slice(&lanes.state[w][i].to_le_bytes());
                }
                EbmRng::from_seed(bytes)
            })
            .collect();
        for _ in 0..100 {
            let out = xoshiro_lanes(&mut state);
            for i in 0..LANES {
                assert_eq!(out[i], reference[i].next_u64(), "lane {i}");
            }
        }
        // Distinct rows and lanes get distinct streams.
        let other = LaneRng::new(5, 4);
        for i in 0..LANES {
            assert_ne!(lanes.state[0][i], other.state[0][i]);
            assert_ne!(lanes.state[0][i], lanes.state[0][(i + 1) % LANES]);
        }
    }

    /// The AVX-512 and AVX2 copies of the kernel (those this CPU has) give bit for bit the chain
    /// of the portable copy for one seed, on every packing of `tori` (groups cut by the row end,
    /// edge and interior groups of both offsets), both rules, with and without a field.
    #[test]
    fn every_instruction_set_gives_the_portable_chain() {
        let mut sets = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("popcnt") {
                sets.push(Isa::Avx2);
            }
            if has!("avx512f") && has!("avx512vpopcntdq") && has!("popcnt") {
                sets.push(Isa::Avx512);
            }
        }
        let mut compared = 0;
        for (m, _) in tori() {
            let s0 = initial_state(m.num_sites(), Start::Random, 4);
            for (rule, beta) in [(LocalRule::Metropolis, 0.44), (LocalRule::Gibbs, 0.3)] {
                let run = |isa: Isa| {
                    let mut ms = MultiSpin::new(&m, rule, beta, 21, &s0);
                    ms.isa = isa;
                    let trace: Vec<(u64, i64, i64)> = (0..4)
                        .map(|_| (ms.sweep(), ms.bonds(), ms.magnetization()))
                        .collect();
                    (ms.state(), trace)
                };
                let portable = run(Isa::Portable);
                assert_ne!(portable.0, s0, "{m:?} {rule:?}");
                for &isa in &sets[1..] {
                    assert_eq!(run(isa), portable, "{m:?} {rule:?} {isa:?}");
                    compared += 1;
                }
            }
        }
        eprintln!("{compared} chains compared with the portable kernel ({sets:?})");
    }

    #[test]
    fn packing_round_trips_and_tracked_sums_match_the_model() {
        for (m, bits) in tori() {
            assert!(MultiSpin::applies(&m));
            let s = initial_state(m.num_sites(), Start::Random, 5);
            let mut ms = MultiSpin::new(&m, LocalRule::Gibbs, 0.4, 1, &s);
            assert_eq!(ms.spins_per_word(), bits, "{m:?}");
            assert_eq!(ms.state(), s);
            assert!((ms.energy() - m.energy(&s)).abs() < 1e-9);
            assert_eq!(ms.magnetization(), s.iter().map(|&x| x as i64).sum::<i64>());
            for _ in 0..5 {
                ms.sweep();
                let s = ms.state();
                assert!((ms.energy() - m.energy(&s)).abs() < 1e-9, "{m:?}");
                assert_eq!(ms.bonds(), ms.bond_sum());
                assert_eq!(ms.magnetization(), ms.count_magnetization());
            }
        }
        let odd = IsingLattice::new(4, 3, Boundary::Periodic, 1.0, 0.0).unwrap();
        let open = IsingLattice::new(4, 4, Boundary::Open, 1.0, 0.0).unwrap();
        assert!(!MultiSpin::applies(&odd) && !MultiSpin::applies(&open));
    }

    /// At beta = 1000 Metropolis flips iff Delta E <= 0 (probability exp(-1000 Delta) has
    /// threshold 0 for every Delta > 0 here, at least 0.4), so a sweep is deterministic and must
    /// equal "colour 0, then colour 1" by `flip_delta`: this checks every neighbour word,
    /// including the rotations across strips.
    #[test]
    fn zero_temperature_sweep_matches_flip_delta_on_every_packing() {
        for (m, _) in tori() {
            let s0 = initial_state(m.num_sites(), Start::Random, 9);
            let mut ms = MultiSpin::new(&m, LocalRule::Metropolis, 1000.0, 3, &s0);
            let mut reference = s0.clone();
            for _ in 0..3 {
                ms.sweep();
                for c in 0..2 {
                    let before = reference.clone();
                    for i in 0..m.num_sites() {
                        let (r, col) = (i / m.width(), i % m.width());
                        if (r + col) % 2 == c && m.flip_delta(&before, i) <= 0.0 {
                            reference[i] = -reference[i];
                        }
                    }
                }
                assert_eq!(ms.state(), reference, "{m:?}");
            }
        }
    }

    /// Same seed, same chain on one and two threads (a 256 x 256 torus takes the rayon path).
    #[test]
    fn chain_does_not_depend_on_the_number_of_threads() {
        let m = IsingLattice::new(256, 256, Boundary::Periodic, 1.0, 0.0).unwrap();
        let s0 = initial_state(m.num_sites(), Start::Random, 2);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut ms = MultiSpin::new(&m, LocalRule::Metropolis, 0.44, 7, &s0);
                for _ in 0..5 {
                    ms.sweep();
                }
                ms.state()
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_ne!(one, s0);
    }
}
