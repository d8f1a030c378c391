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
//! Once eq is 0 every site is decided and no more digits are drawn (about log2(64) + 1.3 words
//! per 64 sites); after digit 31, or after the last nonzero digit of every threshold, the sites
//! still equal have U >= t / 2^32 and stay. So a site flips with probability exactly t / 2^32,
//! as on the byte path, independently of every other site: no random number is shared between
//! sites (sharing one uniform across the sites of a word would not be exact: it correlates their
//! flips and breaks the stationarity of the product distribution).
//!
//! # Bookkeeping and randomness
//! A flip changes the bond sum by -2 s_i S_i = 4a - 8 and the magnetisation by -2 s_i, summed
//! with popcounts over the flip mask. Packed row r' owns two Xoshiro256++ streams
//! [`crate::rng::stream_for`]`(seed, Purpose::MultiSpinRow, 2r' + i)`, i = 0, 1, used for both
//! colours and kept across sweeps: the words of a row are compared in pairs (k, k + 1), word
//! k + i drawing from stream i, in one loop (two independent dependency chains, one loop exit
//! per pair); the packing depends on the lattice only, so the chain does not depend on the
//! number of rayon threads.

// Index loops over the class and group arrays are the clearest form of the kernel.
#![allow(clippy::needless_range_loop)]

use rand::Rng;
use rayon::prelude::*;

use super::LocalRule;
use super::lattice::{Thresholds, threshold_probability};
use crate::model::{Boundary, IsingLattice, Spin};
use crate::rng::{EbmRng, Purpose, stream_for};

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
    /// The CPU has the POPCNT instruction (x86-64).
    popcnt: bool,
}

impl Packing {
    fn new(width: usize, height: usize) -> Self {
        let half = height / 2;
        let bits = (1..=64usize.min(half))
            .rev()
            .find(|b| half % b == 0)
            .unwrap_or(1);
        Packing {
            bits: bits as u32,
            rows: height / bits,
            w2: width / 2,
            valid: if bits == 64 { !0 } else { (1u64 << bits) - 1 },
            #[cfg(target_arch = "x86_64")]
            popcnt: std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(not(target_arch = "x86_64"))]
            popcnt: false,
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
        let w2 = self.w2;
        let mut up = nb.up[k];
        if nb.rotate_up {
            up = self.rotate_from_above(up);
        }
        let mut down = nb.down[k];
        if nb.rotate_down {
            down = self.rotate_from_below(down);
        }
        let (left, right) = if nb.offset == 0 {
            (nb.mid[if k == 0 { w2 - 1 } else { k - 1 }], nb.mid[k])
        } else {
            (nb.mid[k], nb.mid[if k + 1 == w2 { 0 } else { k + 1 }])
        };
        [up, down, left, right]
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
    rngs: Vec<[EbmRng; 2]>,
    table: Box<AcceptTable>,
    bonds: i64,
    magnetization: i64,
}

impl MultiSpin {
    /// True when the multi-spin path applies: a torus with even width and even height (so both
    /// directions are two-colourable and every site has four neighbours) and a uniform field.
    pub fn applies(model: &IsingLattice) -> bool {
        model.boundary() == Boundary::Periodic
            && model.width() % 2 == 0
            && model.height() % 2 == 0
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
        let rngs = (0..packing.rows)
            .map(|r| {
                let r = r as u64;
                [
                    stream_for(seed, Purpose::MultiSpinRow, 2 * r),
                    stream_for(seed, Purpose::MultiSpinRow, 2 * r + 1),
                ]
            })
            .collect();
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
            bonds: 0,
            magnetization: 0,
        };
        chain.bonds = chain.bond_sum();
        chain.magnetization = chain.count_magnetization();
        chain
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
        let table = &self.table;
        let update = |(r, (row, rngs)): (usize, (&mut [u64], &mut [EbmRng; 2]))| -> Change {
            let nb = p.neighbours(other, r, c);
            update_row_dispatch(row, &nb, &p, rngs, table)
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
/// copy built with the POPCNT instruction where the CPU has it (checked once per chain; both
/// copies compute the same thing, the baseline one counts bits without the instruction).
fn update_row_dispatch(
    row: &mut [u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    rngs: &mut [EbmRng; 2],
    t: &AcceptTable,
) -> Change {
    macro_rules! go {
        ($f:ident; $($g:literal)*) => {
            match (t.groups, t.no_field) {
                $(
                    ($g, true) => $f::<$g, false>(row, nb, p, rngs, t),
                    ($g, false) => $f::<$g, true>(row, nb, p, rngs, t),
                )*
                _ => unreachable!("at most 10 threshold groups"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if p.popcnt {
        // SAFETY: `popcnt` is true only when the CPU reported the POPCNT instruction.
        return unsafe { go!(update_row_popcnt; 0 1 2 3 4 5 6 7 8 9 10) };
    }
    go!(update_row; 0 1 2 3 4 5 6 7 8 9 10)
}

/// [`update_row`] compiled with the POPCNT instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn update_row_popcnt<const G: usize, const FIELD: bool>(
    row: &mut [u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    rngs: &mut [EbmRng; 2],
    t: &AcceptTable,
) -> Change {
    update_row::<G, FIELD>(row, nb, p, rngs, t)
}

/// The classes of one word: the masks of the threshold groups, of the sites that always flip,
/// and of the sites still to compare (in some group).
#[inline(always)]
fn classify<const G: usize, const FIELD: bool>(
    s: u64,
    count: [u64; 3],
    t: &AcceptTable,
) -> ([u64; G], u64, u64) {
    let by_count = count_masks(count);
    let mut class = [0u64; 10];
    if FIELD {
        for a in 0..5 {
            class[a] = by_count[a] & !s;
            class[a + 5] = by_count[a] & s;
        }
    } else {
        // Classes (a, -1) and (a, +1) have the same threshold: use the first for both.
        class[..5].copy_from_slice(&by_count);
    }
    let classes = if FIELD { 10 } else { 5 };
    let mut always = 0u64;
    for q in 0..classes {
        always |= class[q] & t.always[q];
    }
    let mut group = [0u64; G];
    let mut undecided = 0u64;
    for g in 0..G {
        for q in 0..classes {
            group[g] |= class[q] & t.member[g][q];
        }
        undecided |= group[g];
    }
    (group, always, undecided)
}

/// Threshold digit `d` of every site of a word, from its group masks.
#[inline(always)]
fn threshold_digit<const G: usize>(group: &[u64; G], t: &AcceptTable, d: usize) -> u64 {
    let mut digit = 0u64;
    for g in 0..G {
        digit |= group[g] & t.digit[d][g];
    }
    digit
}

/// The flip mask of one word: the sites of classes that always flip, and those whose uniform,
/// drawn digit by digit from `rng`, is below their class's threshold.
#[inline(always)]
fn flip_mask<const G: usize, const FIELD: bool>(
    s: u64,
    count: [u64; 3],
    valid: u64,
    rng: &mut EbmRng,
    t: &AcceptTable,
) -> u64 {
    let (group, always, undecided) = classify::<G, FIELD>(s, count, t);
    let mut eq = undecided & valid;
    let mut lt = 0u64;
    let mut d = 0;
    while eq != 0 && d < t.last_digit {
        let r = rng.next_u64();
        let digit = threshold_digit(&group, t, d);
        lt |= eq & digit & !r;
        eq &= !(digit ^ r);
        d += 1;
    }
    (lt | always) & valid
}

/// [`flip_mask`] of two words at once, word i drawing its digits from `rngs[i]`: the two
/// comparisons run in one loop (two independent dependency chains, one loop exit per pair)
/// until both are decided; a word already decided still draws its digit (discarded), so the
/// streams advance by the same number of words.
#[inline(always)]
fn flip_mask_pair<const G: usize, const FIELD: bool>(
    s: [u64; 2],
    count: [[u64; 3]; 2],
    valid: u64,
    rngs: &mut [EbmRng; 2],
    t: &AcceptTable,
) -> [u64; 2] {
    let (group0, always0, undecided0) = classify::<G, FIELD>(s[0], count[0], t);
    let (group1, always1, undecided1) = classify::<G, FIELD>(s[1], count[1], t);
    let (mut eq0, mut eq1) = (undecided0 & valid, undecided1 & valid);
    let (mut lt0, mut lt1) = (0u64, 0u64);
    let [rng0, rng1] = rngs;
    let mut d = 0;
    while (eq0 | eq1) != 0 && d < t.last_digit {
        let (r0, r1) = (rng0.next_u64(), rng1.next_u64());
        let digit0 = threshold_digit(&group0, t, d);
        let digit1 = threshold_digit(&group1, t, d);
        lt0 |= eq0 & digit0 & !r0;
        eq0 &= !(digit0 ^ r0);
        lt1 |= eq1 & digit1 & !r1;
        eq1 &= !(digit1 ^ r1);
        d += 1;
    }
    [(lt0 | always0) & valid, (lt1 | always1) & valid]
}

#[inline(always)]
fn update_row<const G: usize, const FIELD: bool>(
    row: &mut [u64],
    nb: &RowNeighbours<'_>,
    p: &Packing,
    rngs: &mut [EbmRng; 2],
    t: &AcceptTable,
) -> Change {
    let (mut flips, mut a_sum, mut up_flips) = (0u32, 0u32, 0u32);
    let mut tally = |s: u64, count: [u64; 3], f: u64| {
        flips += f.count_ones();
        a_sum += (f & count[0]).count_ones()
            + 2 * (f & count[1]).count_ones()
            + 4 * (f & count[2]).count_ones();
        up_flips += (f & s).count_ones();
    };
    let count_at = |row: &[u64], k: usize| {
        let [up, down, left, right] = p.around(nb, k);
        anti_aligned_count(row[k], up, down, left, right)
    };
    // Words in pairs (k, k + 1), then a last odd word with the first stream.
    let pairs = row.len() / 2;
    for i in 0..pairs {
        let k = 2 * i;
        let s = [row[k], row[k + 1]];
        let count = [count_at(row, k), count_at(row, k + 1)];
        let f = flip_mask_pair::<G, FIELD>(s, count, p.valid, rngs, t);
        row[k] = s[0] ^ f[0];
        row[k + 1] = s[1] ^ f[1];
        tally(s[0], count[0], f[0]);
        tally(s[1], count[1], f[1]);
    }
    if row.len() % 2 == 1 {
        let k = row.len() - 1;
        let (s, count) = (row[k], count_at(row, k));
        let f = flip_mask::<G, FIELD>(s, count, p.valid, &mut rngs[0], t);
        row[k] = s ^ f;
        tally(s, count, f);
    }
    let (flips, a_sum, up_flips) = (flips as i64, a_sum as i64, up_flips as i64);
    Change {
        flips,
        // -2 s S = 4a - 8 per flipped site.
        bonds: 4 * a_sum - 8 * flips,
        // +1 -> -1 for up_flips sites, -1 -> +1 for the others.
        magnetization: 2 * (flips - up_flips) - 2 * up_flips,
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
    use crate::sample::{Start, initial_state};

    /// Tori with even sides and their packings: B = 1 (H = 2), B = 2, 3, 4 (rotations across
    /// strips of 2 rows), B = 8 with strips of 4 rows, B = 64 with 2 and 4 rows.
    fn tori() -> Vec<(IsingLattice, u32)> {
        [
            (4, 2, 1.0, 0.3, 1),
            (2, 4, 1.0, 0.0, 2),
            (6, 6, 0.7, -0.3, 3),
            (4, 8, 1.0, 0.0, 4),
            (8, 32, -0.6, 0.2, 16),
            (6, 128, 1.0, 0.1, 64),
            (2, 256, 1.0, 0.0, 64),
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
            for _ in 0..300 {
                let mut word = || {
                    let s = words.next_u64();
                    let n = [0; 4].map(|_| words.next_u64());
                    (s, anti_aligned_count(s, n[0], n[1], n[2], n[3]))
                };
                let ((s0, c0), (s1, c1)) = (word(), word());
                let mut rngs = [0; 2].map(|_| crate::rng::from_seed(words.next_u64()));
                let replay = rngs.clone();
                let digits = |mut r: EbmRng| (0..32).map(|_| r.next_u64()).collect::<Vec<_>>();
                // One word alone, on the first stream.
                let mut single = rngs[0].clone();
                let f = if table.no_field {
                    flip_mask_any::<false>(s0, c0, &mut single, &table)
                } else {
                    flip_mask_any::<true>(s0, c0, &mut single, &table)
                };
                scalar(s0, c0, f, &digits(replay[0].clone()));
                // Two words together, one stream each.
                let f = if table.no_field {
                    flip_mask_pair_any::<false>([s0, s1], [c0, c1], &mut rngs, &table)
                } else {
                    flip_mask_pair_any::<true>([s0, s1], [c0, c1], &mut rngs, &table)
                };
                scalar(s0, c0, f[0], &digits(replay[0].clone()));
                scalar(s1, c1, f[1], &digits(replay[1].clone()));
                tested += 3 * 64;
            }
        }
        assert_eq!(tested, 5 * 300 * 3 * 64);
    }

    fn flip_mask_pair_any<const FIELD: bool>(
        s: [u64; 2],
        count: [[u64; 3]; 2],
        rngs: &mut [EbmRng; 2],
        t: &AcceptTable,
    ) -> [u64; 2] {
        macro_rules! go {
            ($($g:literal)*) => {
                match t.groups {
                    $( $g => flip_mask_pair::<$g, FIELD>(s, count, !0, rngs, t), )*
                    _ => unreachable!(),
                }
            };
        }
        go!(0 1 2 3 4 5 6 7 8 9 10)
    }

    fn flip_mask_any<const FIELD: bool>(
        s: u64,
        count: [u64; 3],
        rng: &mut EbmRng,
        t: &AcceptTable,
    ) -> u64 {
        macro_rules! go {
            ($($g:literal)*) => {
                match t.groups {
                    $( $g => flip_mask::<$g, FIELD>(s, count, !0, rng, t), )*
                    _ => unreachable!(),
                }
            };
        }
        go!(0 1 2 3 4 5 6 7 8 9 10)
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
