//! The one random-number generator of `ebm`, its seeding, and independent streams.
//!
//! `ebm` names its generator, Xoshiro256++ (Blackman & Vigna, "Scrambled linear pseudorandom
//! number generators", ACM TOMS 2021), instead of `StdRng`, whose algorithm may change between
//! versions of `rand`: the same `--seed` gives the same output with every build.
//!
//! Parallel work never shares a generator. Each fixed chunk of work (a lattice row, a block of
//! chains, a prefix of an enumeration) gets its own stream from [`stream`], keyed by the seed and
//! the chunk's index, so results do not depend on the number of threads.

use rand::SeedableRng;
pub use rand_xoshiro::Xoshiro256PlusPlus;

/// The generator used everywhere in `ebm`.
pub type EbmRng = Xoshiro256PlusPlus;

/// The default seed of every command (so that runs are reproducible unless `--seed` is given).
pub const DEFAULT_SEED: u64 = 42;

/// One step of SplitMix64 (Steele, Lea & Flood 2014), used to expand seeds into full states.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for a whole run, from the user's seed.
pub fn from_seed(seed: u64) -> EbmRng {
    stream(seed, u64::MAX)
}

/// An independent stream for chunk `index` of the work seeded by `seed`.
///
/// The 256-bit state is four SplitMix64 outputs of a state mixing `seed` and `index`; distinct
/// `(seed, index)` pairs give unrelated streams (the construction the Xoshiro authors recommend
/// for seeding).
pub fn stream(seed: u64, index: u64) -> EbmRng {
    let mut state = seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17);
    let _ = splitmix64(&mut state);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    EbmRng::from_seed(bytes)
}

/// A uniform f64 in [0, 1) with 53 random bits.
#[inline]
pub fn uniform_f64<R: rand::Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, 3), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, 3), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(stream(7, 4), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_is_in_unit_interval_with_mean_half() {
        let mut rng = from_seed(1);
        let n = 100_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = uniform_f64(&mut rng);
            assert!((0.0..1.0).contains(&u));
            sum += u;
        }
        // Mean of n uniforms has standard deviation sqrt(1/12/n) = 0.00091; 5 sigma.
        assert!((sum / n as f64 - 0.5).abs() < 5.0 * (1.0f64 / 12.0 / n as f64).sqrt());
    }
}
