//! The one random-number generator of `ebm`, its seeding, and independent streams.
//!
//! `ebm` names its generator, Xoshiro256++ (Blackman & Vigna, "Scrambled linear pseudorandom
//! number generators", ACM TOMS 2021), instead of `StdRng`, whose algorithm may change between
//! versions of `rand`: the same `--seed` gives the same output with every build.
//!
//! Parallel work never shares a generator. Each fixed chunk of work (a lattice row, a block of
//! chains, a prefix of an enumeration) gets its own stream from [`stream_for`], keyed by the
//! seed, the [`Purpose`] of the stream and the chunk's index, so results do not depend on the
//! number of threads, and two tasks run with the same seed (say `ebm noise` and
//! `ebm denoise --method gibbs`, both one stream per image row) never draw the same numbers.

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

/// What a random stream is used for: the second part of every stream's key (seed, purpose,
/// index). Each task of the library draws from its own purpose, so equal seeds in two commands
/// give unrelated numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The random ("hot") initial configuration of a chain; index 0.
    InitialState,
    /// A sequential Markov chain with one generator for the whole run (single-site sweeps of
    /// any model, the cluster samplers); index 0.
    Chain,
    /// The checkerboard lattice sampler; index: the lattice row.
    LatticeRow,
    /// Flip noise added to an image (`ebm noise`); index: the image row.
    Noise,
    /// Gibbs sampling of the denoising posterior (`denoise --method gibbs`); index: the row.
    DenoiseGibbs,
    /// Simulated annealing of the denoising energy (`denoise --method anneal`); index: the row.
    DenoiseAnneal,
    /// Block-Gibbs chains of an RBM (`ebm sample --model rbm`); index: the chain.
    RbmChains,
    /// Annealed importance sampling of an RBM's ln Z; index: the AIS run.
    Ais,
    /// RBM training (initial weights, persistent chains, shuffles, batches, monitoring); index:
    /// the key the trainer derives for each of these.
    Training,
    /// Simulated annealing of any model with flip deltas (`infer::map::anneal_model`), one
    /// sequential generator; index 0.
    ModelAnneal,
    /// Single-site chains over the visible units of a composite model
    /// (`sample::composite::sample_composite`); index: the chain.
    CompositeChains,
    /// Training of a Gaussian-Bernoulli RBM (`learn::gaussian`: initial weights, shuffles,
    /// Gibbs chains of CD/PCD, denoising noise); index: the key the trainer derives for each.
    GaussianTraining,
    /// Chains of a Gaussian-Bernoulli RBM sampler (`sample::gaussian`: Langevin, MALA, block
    /// Gibbs); index: the chain.
    GaussianChains,
    /// Chains of the gradient samplers (GWG, DULA, DMALA: `sample::gradient`); index: the
    /// chain.
    GradientChain,
    /// Annealed importance sampling over the visible units of a composite
    /// (`infer::composite::visible_ais_log_partition`); index: the run.
    CompositeAis,
    /// The multi-spin-coded checkerboard (`sample::multispin`); index: the packed row.
    MultiSpinRow,
}

impl Purpose {
    /// A fixed, distinct 64-bit tag per purpose (never reorder: seeds would change meaning).
    const fn tag(self) -> u64 {
        match self {
            Purpose::InitialState => 1,
            Purpose::Chain => 2,
            Purpose::LatticeRow => 3,
            Purpose::Noise => 4,
            Purpose::DenoiseGibbs => 5,
            Purpose::DenoiseAnneal => 6,
            Purpose::RbmChains => 7,
            Purpose::Ais => 8,
            Purpose::Training => 9,
            Purpose::ModelAnneal => 10,
            Purpose::CompositeChains => 11,
            Purpose::GaussianTraining => 12,
            Purpose::GaussianChains => 13,
            Purpose::GradientChain => 14,
            Purpose::CompositeAis => 15,
            Purpose::MultiSpinRow => 16,
        }
    }
}

/// A generator from the user's seed alone, for test data, examples and benchmarks. The
/// library's own randomness comes from [`stream_for`].
pub fn from_seed(seed: u64) -> EbmRng {
    stream(seed, u64::MAX)
}

/// The stream for chunk `index` of the work of `purpose` in a run seeded by `seed`.
///
/// The purpose and the seed are first mixed into one 64-bit key by SplitMix64 (a bijection of
/// `seed ^ tag * 0x9E37_79B9_7F4A_7C15`, so distinct purposes give distinct keys for one seed),
/// then the stream is built from (key, index) as in the private `stream`.
pub fn stream_for(seed: u64, purpose: Purpose, index: u64) -> EbmRng {
    let mut state = seed ^ purpose.tag().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let key = splitmix64(&mut state);
    stream(key, index)
}

/// An independent stream for chunk `index` of a key `seed` (use [`stream_for`], which adds the
/// purpose, for the library's streams).
///
/// The 256-bit state is four SplitMix64 outputs of a state mixing `seed` and `index`; distinct
/// `(seed, index)` pairs give unrelated streams (the construction the Xoshiro authors recommend
/// for seeding).
fn stream(seed: u64, index: u64) -> EbmRng {
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

    fn first_words(mut rng: EbmRng) -> [u64; 4] {
        [
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ]
    }

    /// Every pair of purposes gives different streams for the same seed and index, and the
    /// same purpose gives the same stream (no stream of the library is another's).
    #[test]
    fn streams_of_different_purposes_differ() {
        use Purpose::*;
        let all = [
            InitialState,
            Chain,
            LatticeRow,
            Noise,
            DenoiseGibbs,
            DenoiseAnneal,
            RbmChains,
            Ais,
            Training,
            ModelAnneal,
            CompositeChains,
            GaussianTraining,
            GaussianChains,
            GradientChain,
            CompositeAis,
            MultiSpinRow,
        ];
        for seed in [0, 42, u64::MAX] {
            for index in [0, 1, 7] {
                let words: Vec<[u64; 4]> = all
                    .iter()
                    .map(|&p| first_words(stream_for(seed, p, index)))
                    .collect();
                for a in 0..all.len() {
                    assert_eq!(words[a], first_words(stream_for(seed, all[a], index)));
                    for b in a + 1..all.len() {
                        assert_ne!(words[a], words[b], "{:?} {:?}", all[a], all[b]);
                    }
                }
            }
        }
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
