//! Samplers against exact answers: chi-square goodness of fit of the visited states against the
//! Boltzmann distribution (by enumeration), exact stationarity of one-sweep transition matrices,
//! UAI marginals within error bars, thread-count independence, and (ignored, slow) Onsager and
//! Kaufman checks.
//!
//! The exact distributions come from a small enumeration helper here, independent of the
//! library's samplers and statistics.

use crate::common::tol::{
    CHECKERBOARD_STATIONARY_ABS, CHI_SQUARE_ALPHA, CHI_SQUARE_MIN_EXPECTED, MC_SIGMAS,
    STATIONARY_ABS,
};
use ebm::model::{Boundary, EnergyModel, IsingLattice, PairwiseMrf, Spin};
use ebm::progress::Silent;
use ebm::rng::{from_seed, uniform_f64};
use ebm::sample::general;
use ebm::sample::lattice::{Checkerboard, Kernel, checkerboard_flip_probabilities};
use ebm::sample::multispin::multispin_flip_probabilities;
use ebm::sample::{
    LatticeChain, LatticeParams, LocalRule, ModelParams, SamplerKind, Start, initial_state,
    lattice_observables, sample_lattice, sample_model,
};
use statrs::distribution::{ChiSquared, ContinuousCDF};

// ---------------------------------------------------------------------------------------------
// Exact enumeration (state index: bit i set <=> spin i = +1)

pub(crate) fn spins_of(index: usize, n: usize) -> Vec<Spin> {
    (0..n)
        .map(|i| if index >> i & 1 == 1 { 1 } else { -1 })
        .collect()
}

pub(crate) fn index_of(s: &[Spin]) -> usize {
    s.iter()
        .enumerate()
        .map(|(i, &x)| ((x > 0) as usize) << i)
        .sum()
}

/// p(s) ∝ exp(-beta E(s)) for every state, normalised in log space.
pub(crate) fn boltzmann(model: &dyn EnergyModel, beta: f64) -> Vec<f64> {
    let n = model.num_vars();
    let log_w: Vec<f64> = (0..1usize << n)
        .map(|k| -beta * model.energy(&spins_of(k, n)))
        .collect();
    let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = log_w.iter().map(|l| (l - max).exp()).sum();
    log_w.iter().map(|l| (l - max).exp() / z).collect()
}

/// A random frustrated model: couplings of both signs on a dense graph, random fields.
pub(crate) fn frustrated_mrf(n: usize, seed: u64) -> PairwiseMrf {
    let mut rng = from_seed(seed);
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if uniform_f64(&mut rng) < 0.6 {
                edges.push((i, j, 2.0 * uniform_f64(&mut rng) - 1.0));
            }
        }
    }
    let fields = (0..n).map(|_| uniform_f64(&mut rng) - 0.5).collect();
    PairwiseMrf::new(fields, &edges).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Chi-square goodness of fit

/// p-value of Pearson's statistic for `counts` against `probs`; cells with expected count below
/// CHI_SQUARE_MIN_EXPECTED are pooled into one cell.
pub(crate) fn chi_square_p(counts: &[u64], probs: &[f64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let n = total as f64;
    let (mut stat, mut cells) = (0.0, 0usize);
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(probs) {
        let e = n * p;
        if e < CHI_SQUARE_MIN_EXPECTED {
            pooled_obs += c as f64;
            pooled_exp += e;
        } else {
            stat += (c as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pooled_exp > 0.0 {
        if pooled_exp >= CHI_SQUARE_MIN_EXPECTED {
            stat += (pooled_obs - pooled_exp).powi(2) / pooled_exp;
            cells += 1;
        } else {
            // Too little mass to form a cell: it must still not be over-visited grossly.
            assert!(
                pooled_obs < 10.0 + 10.0 * pooled_exp,
                "rare states over-visited"
            );
        }
    }
    assert!(cells >= 2, "too few cells for a chi-square test");
    1.0 - ChiSquared::new((cells - 1) as f64).unwrap().cdf(stat)
}

/// Samples per chi-square case and the thinning between them (in sweeps or cluster updates).
/// At the temperatures used below the integrated autocorrelation times are a few steps at most,
/// so with THIN steps between samples they are nearly independent: the residual correlation
/// inflates the statistic by roughly 1 + 2 sum_t rho(t * THIN), a fraction of a percent.
/// With 40 000 samples a rule that samples beta 10% off fails (see the power test below).
const SAMPLES: usize = 40_000;
const THIN: usize = 10;

fn lattice_counts(model: &IsingLattice, kind: SamplerKind, beta: f64, seed: u64) -> Vec<u64> {
    let n = model.num_sites();
    let mut chain = LatticeChain::new(
        model,
        kind,
        beta,
        seed,
        initial_state(n, Start::Random, seed),
    )
    .unwrap();
    for _ in 0..100 {
        chain.step();
    }
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            chain.step();
        }
        let s = chain.state();
        // The chain's own energy and magnetisation bookkeeping must agree with the state.
        debug_assert!((chain.energy() - model.energy(&s)).abs() < 1e-9);
        counts[index_of(&s)] += 1;
    }
    counts
}

fn general_counts(model: &dyn EnergyModel, rule: LocalRule, beta: f64, seed: u64) -> Vec<u64> {
    let n = model.num_vars();
    let mut rng = from_seed(seed);
    let mut s = initial_state(n, Start::Random, seed);
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..100 {
        general::sweep(model, beta, rule, &mut s, &mut rng);
    }
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            general::sweep(model, beta, rule, &mut s, &mut rng);
        }
        counts[index_of(&s)] += 1;
    }
    counts
}

const ALL: [SamplerKind; 4] = [
    SamplerKind::Gibbs,
    SamplerKind::Metropolis,
    SamplerKind::Wolff,
    SamplerKind::SwendsenWang,
];

fn assert_fits(name: &str, counts: &[u64], probs: &[f64]) {
    let p = chi_square_p(counts, probs);
    // alpha = CHI_SQUARE_ALPHA (1e-4): a correct sampler fails one case with probability 1e-4,
    // and the seeds are fixed, so the outcome is reproducible.
    assert!(p > CHI_SQUARE_ALPHA, "{name}: chi-square p-value {p:.3e}");
}

/// 3x3 torus (512 states; odd sides, so gibbs and metropolis run the sequential sweep).
#[test]
fn every_sampler_fits_boltzmann_on_a_3x3_torus() {
    let m = IsingLattice::new(3, 3, Boundary::Periodic, 1.0, 0.0).unwrap();
    // Not too hot: near beta = 0 a sequential Metropolis sweep flips almost every spin, so
    // states THIN sweeps apart stay strongly correlated (period-2 dynamics) although the
    // chain is correct.
    let beta = 0.45;
    let exact = boltzmann(&m, beta);
    for (k, kind) in ALL.into_iter().enumerate() {
        let counts = lattice_counts(&m, kind, beta, 100 + k as u64);
        assert_fits(&format!("3x3 torus {kind:?}"), &counts, &exact);
    }
}

/// 3x3 open lattice with a field (Wolff accepts the cluster flip with the field's Metropolis
/// probability; Swendsen-Wang picks each cluster's orientation by heat bath).
#[test]
fn every_sampler_fits_boltzmann_on_a_3x3_open_lattice_with_field() {
    let m = IsingLattice::new(3, 3, Boundary::Open, 0.8, 0.25).unwrap();
    let beta = 0.6;
    let exact = boltzmann(&m, beta);
    for (k, kind) in ALL.into_iter().enumerate() {
        let counts = lattice_counts(&m, kind, beta, 200 + k as u64);
        assert_fits(&format!("3x3 open, field {kind:?}"), &counts, &exact);
    }
}

/// The parallel checkerboard: a 4x2 torus (double vertical bonds) with a field and a 2x4 open
/// lattice (sites with 2 and 3 neighbours), 256 states each, plus cluster samplers on them.
#[test]
fn checkerboard_and_clusters_fit_boltzmann_on_even_lattices() {
    let cases = [
        IsingLattice::new(4, 2, Boundary::Periodic, 0.5, -0.2).unwrap(),
        IsingLattice::new(2, 4, Boundary::Open, 1.0, 0.3).unwrap(),
    ];
    for (c, m) in cases.iter().enumerate() {
        let beta = 0.7;
        let exact = boltzmann(m, beta);
        for (k, kind) in ALL.into_iter().enumerate() {
            if let Some(_rule) = kind.local_rule() {
                let chain = LatticeChain::new(m, kind, beta, 1, vec![1; 8]).unwrap();
                assert!(chain.is_checkerboard());
            }
            let counts = lattice_counts(m, kind, beta, 300 + 10 * c as u64 + k as u64);
            assert_fits(&format!("{m:?} {kind:?}"), &counts, &exact);
        }
    }
}

/// A random 8-variable frustrated pairwise MRF, sequential Gibbs and Metropolis.
#[test]
fn general_samplers_fit_boltzmann_on_a_frustrated_mrf() {
    let m = frustrated_mrf(8, 17);
    assert!(m.edges().iter().any(|e| e.2 < 0.0) && m.edges().iter().any(|e| e.2 > 0.0));
    let beta = 1.0;
    let exact = boltzmann(&m, beta);
    for (k, rule) in [LocalRule::Gibbs, LocalRule::Metropolis]
        .into_iter()
        .enumerate()
    {
        let counts = general_counts(&m, rule, beta, 400 + k as u64);
        assert_fits(&format!("frustrated MRF {rule:?}"), &counts, &exact);
    }
}

/// Power: the same test rejects a sampler whose acceptance rule is off. A rule using
/// exp(-1.1 beta Delta) in place of exp(-beta Delta) is exactly the correct rule at 1.1 beta, so
/// comparing correct samples at 1.1 beta with the exact distribution at beta is that wrong rule.
/// (And Metropolis with exp(-beta Delta / 2) is the correct rule at beta / 2.)
#[test]
fn the_chi_square_test_rejects_a_wrong_acceptance_rule() {
    let m = IsingLattice::new(3, 3, Boundary::Periodic, 1.0, 0.0).unwrap();
    let exact = boltzmann(&m, 0.45);
    for (k, wrong_beta) in [0.495, 0.225].into_iter().enumerate() {
        let counts = lattice_counts(&m, SamplerKind::Metropolis, wrong_beta, 500 + k as u64);
        let p = chi_square_p(&counts, &exact);
        assert!(p < CHI_SQUARE_ALPHA, "beta {wrong_beta}: p = {p:.3e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Exact stationarity of one sweep

/// A generator that replays given 64-bit words: `uniform_f64` of the word k << 11 is exactly
/// k / 2^53. It lets the test drive the library's own `general::sweep` down every path.
struct Scripted {
    words: Vec<u64>,
    next: usize,
}

impl rand::TryRng for Scripted {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("general::sweep draws 64-bit words")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let w = self.words[self.next];
        self.next += 1;
        Ok(w)
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
        unreachable!("general::sweep draws 64-bit words")
    }
}

/// Runs one sweep from a state with scripted uniforms k_i / 2^53; returns the new state.
type RunSweep<'a> = dyn Fn(&[Spin], &[u64]) -> Vec<Spin> + 'a;

/// 2^53: the number of distinct uniforms `uniform_f64` returns.
const UNIFORMS: u64 = 1 << 53;

/// The exact 2^n x 2^n matrix of one call of the library's `general::sweep` (row a: start
/// state, column b: state after the sweep), read off the code itself. Site i consumes the i-th
/// uniform u_i = k_i / 2^53 and is visited once, so for a fixed prefix k_0..k_{i-1} the
/// uniforms that flip site i form an interval [0, K) (the sweep flips when u < p); K is found by
/// bisection over k, running the real sweep with scripted uniforms, and the two branches (flip:
/// weight K / 2^53, stay: weight 1 - K / 2^53) are followed recursively.
fn library_sweep_matrix(model: &dyn EnergyModel, beta: f64, rule: LocalRule) -> Vec<Vec<f64>> {
    let n = model.num_vars();
    let run = |a: &[Spin], ks: &[u64]| {
        let mut s = a.to_vec();
        let mut words: Vec<u64> = ks.iter().map(|k| k << 11).collect();
        words.resize(n, 0);
        let mut rng = Scripted { words, next: 0 };
        general::sweep(model, beta, rule, &mut s, &mut rng);
        assert_eq!(rng.next, n, "one uniform per site");
        s
    };
    fn explore(a: &[Spin], ks: &mut Vec<u64>, weight: f64, row: &mut [f64], run: &RunSweep) {
        let i = ks.len();
        if i == a.len() {
            row[index_of(&run(a, ks))] += weight;
            return;
        }
        let flips = |k: u64, ks: &mut Vec<u64>| {
            ks.push(k);
            let f = run(a, ks)[i] != a[i];
            ks.pop();
            f
        };
        // Smallest k in [0, 2^53] that does not flip (k = 2^53 stands for "none").
        let (mut lo, mut hi) = (0u64, UNIFORMS);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if flips(mid, ks) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        let p = lo as f64 / UNIFORMS as f64;
        for (k, w) in [(0, p), (UNIFORMS - 1, 1.0 - p)] {
            if w > 0.0 {
                ks.push(k);
                explore(a, ks, weight * w, row, run);
                ks.pop();
            }
        }
    }
    (0..1usize << n)
        .map(|a| {
            let mut row = vec![0.0; 1 << n];
            explore(&spins_of(a, n), &mut Vec::new(), 1.0, &mut row, &run);
            row
        })
        .collect()
}

/// The exact 2^4 x 2^4 matrix of one checkerboard sweep of a 2x2 torus: colour 0 (sites with
/// r + c even) is updated at once given colour 1, then colour 1, each site flipped with the
/// probability of the library's quantised 32-bit threshold table for its spin and s_i S_i
/// (`table`: the byte kernel's or the multi-spin kernel's).
fn checkerboard_sweep_matrix(m: &IsingLattice, table: [[f64; 9]; 2]) -> Vec<Vec<f64>> {
    let n = m.num_sites();
    let size = 1usize << n;
    let half = |c: usize| -> Vec<Vec<f64>> {
        (0..size)
            .map(|a| {
                let s = spins_of(a, n);
                (0..size)
                    .map(|b| {
                        let mut w = 1.0;
                        for i in 0..n {
                            let flipped = (a ^ b) >> i & 1 == 1;
                            if (i / m.width() + i % m.width()) % 2 != c {
                                if flipped {
                                    w = 0.0;
                                }
                                continue;
                            }
                            let ss = s[i] as i32 * m.neighbour_sum(&s, i);
                            let p = table[(s[i] > 0) as usize][(ss + 4) as usize];
                            w *= if flipped { p } else { 1.0 - p };
                        }
                        w
                    })
                    .collect()
            })
            .collect()
    };
    let (t0, t1) = (half(0), half(1));
    (0..size)
        .map(|a| {
            (0..size)
                .map(|b| (0..size).map(|k| t0[a][k] * t1[k][b]).sum())
                .collect()
        })
        .collect()
}

fn stationarity_error(pi: &[f64], t: &[Vec<f64>]) -> f64 {
    (0..pi.len())
        .map(|b| {
            let flow: f64 = (0..pi.len()).map(|a| pi[a] * t[a][b]).sum();
            (flow - pi[b]).abs()
        })
        .fold(0.0, f64::max)
}

/// The matrices are those of the code that runs (general::sweep itself; the checkerboard's own
/// threshold table), so a wrong acceptance rule, site order or neighbour sum in either shows up.
/// Negative control: the same matrices do not leave the Boltzmann distribution at 1.1 beta
/// stationary (errors of order 1e-2), so the check can fail.
#[test]
fn one_sweep_leaves_boltzmann_exactly_stationary() {
    let beta = 0.8;
    let lattice = IsingLattice::new(2, 2, Boundary::Periodic, 1.0, 0.3).unwrap();
    let models: Vec<Box<dyn EnergyModel>> = vec![
        Box::new(frustrated_mrf(3, 5)),
        Box::new(frustrated_mrf(4, 6)),
        Box::new(lattice.clone()),
    ];
    let check = |t: &[Vec<f64>], pi: &[f64], wrong_pi: &[f64], tol: f64, what: &str| {
        for row in t {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < tol, "{what}");
        }
        let err = stationarity_error(pi, t);
        assert!(err < tol, "{what}: |pi T - pi| = {err:e}");
        assert!(stationarity_error(wrong_pi, t) > 1e-4, "{what}: control");
    };
    for model in &models {
        let pi = boltzmann(model.as_ref(), beta);
        let wrong_pi = boltzmann(model.as_ref(), 1.1 * beta);
        for rule in [LocalRule::Gibbs, LocalRule::Metropolis] {
            let t = library_sweep_matrix(model.as_ref(), beta, rule);
            check(
                &t,
                &pi,
                &wrong_pi,
                STATIONARY_ABS,
                &format!("sweep {rule:?}"),
            );
        }
    }
    let pi = boltzmann(&lattice, beta);
    let wrong_pi = boltzmann(&lattice, 1.1 * beta);
    for rule in [LocalRule::Gibbs, LocalRule::Metropolis] {
        let (j, h) = (lattice.coupling(), lattice.uniform_field());
        for (kernel, table) in [
            ("bytes", checkerboard_flip_probabilities(rule, beta, j, h)),
            ("multi-spin", multispin_flip_probabilities(rule, beta, j, h)),
        ] {
            let t = checkerboard_sweep_matrix(&lattice, table);
            let what = format!("checkerboard {kernel} {rule:?}");
            check(&t, &pi, &wrong_pi, CHECKERBOARD_STATIONARY_ABS, &what);
        }
    }
    // The 2x2 torus runs the multi-spin kernel (one spin per word) by default.
    let chain = Checkerboard::new(&lattice, LocalRule::Gibbs, beta, 1, &[1; 4]);
    assert_eq!(chain.kernel(), Kernel::MultiSpin);
}

/// Visits of a checkerboard chain forced onto `kernel`, sampled as in `lattice_counts`.
fn checkerboard_counts(
    model: &IsingLattice,
    rule: LocalRule,
    kernel: Kernel,
    beta: f64,
    seed: u64,
) -> Vec<u64> {
    let n = model.num_sites();
    let s0 = initial_state(n, Start::Random, seed);
    let mut chain = Checkerboard::with_kernel(model, rule, beta, seed, &s0, kernel);
    assert_eq!(chain.kernel(), kernel, "{model:?}");
    for _ in 0..100 {
        chain.sweep();
    }
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            chain.sweep();
        }
        let s = chain.state();
        assert!((chain.energy() - model.energy(&s)).abs() < 1e-9);
        counts[index_of(&s)] += 1;
    }
    counts
}

/// Both checkerboard kernels, forced, on tori that the multi-spin packing stores with 1 spin per
/// word (4x2) and 2 per word (2x4 and 4x4: strips of two rows, so the vertical neighbours of
/// every site cross a strip edge through the word rotations), against enumeration at
/// alpha = CHI_SQUARE_ALPHA (1e-4, see `assert_fits`). Without a field (the five-class kernel)
/// only Gibbs is tested: zero-field checkerboard Metropolis flips every site with Delta E = 0,
/// and on a 2x4 torus it never enters the row-striped states (all sites have Delta E = 0; both
/// kernels, checked), so it is not irreducible there.
/// Power: the multi-spin chain run at 1.1 beta is rejected against the distribution at beta.
#[test]
fn multi_spin_and_byte_checkerboards_fit_boltzmann_on_small_tori() {
    let both = [LocalRule::Gibbs, LocalRule::Metropolis];
    let cases = [
        (
            IsingLattice::new(4, 2, Boundary::Periodic, 0.5, -0.2).unwrap(),
            0.7,
            &both[..],
        ),
        (
            IsingLattice::new(2, 4, Boundary::Periodic, 1.0, 0.1).unwrap(),
            0.4,
            &both[..],
        ),
        (
            IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.0).unwrap(),
            0.4,
            &both[..1],
        ),
        (
            IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.15).unwrap(),
            0.4,
            &both[..],
        ),
    ];
    let mut seed = 600;
    for (m, beta, rules) in &cases {
        let exact = boltzmann(m, *beta);
        for &rule in *rules {
            for kernel in [Kernel::MultiSpin, Kernel::Bytes] {
                seed += 1;
                let counts = checkerboard_counts(m, rule, kernel, *beta, seed);
                assert_fits(&format!("{m:?} {rule:?} {kernel:?}"), &counts, &exact);
            }
        }
    }
    let (m, beta, _) = &cases[3];
    let exact = boltzmann(m, *beta);
    for rule in both {
        let counts = checkerboard_counts(m, rule, Kernel::MultiSpin, 1.1 * beta, 700);
        let p = chi_square_p(&counts, &exact);
        assert!(p < CHI_SQUARE_ALPHA, "{rule:?} at 1.1 beta: p = {p:.3e}");
    }
}

// ---------------------------------------------------------------------------------------------
// UAI marginals

/// A small UAI model (6 binary variables, a ternary factor, pair and unary factors, one zero
/// entry), parsed from text like any file.
const SMALL_UAI: &str = "MARKOV
6
2 2 2 2 2 2
7
1 0
2 0 1
2 1 2
3 2 3 4
2 4 5
2 5 0
1 3
2 0.6 1.4
4 2.0 0.5 0.5 2.0
4 0.3 1.0 1.0 0.3
8 1.0 2.0 0.5 1.0 0.0 1.5 1.0 3.0
4 1.5 1.0 1.0 1.5
4 0.8 1.2 1.1 0.9
2 1.0 0.4
";

fn exact_marginals(graph: &ebm::model::FactorGraph) -> Vec<f64> {
    let n = graph.num_vars();
    let mut weights = Vec::with_capacity(1 << n);
    for k in 0..1usize << n {
        let bits: Vec<u8> = (0..n).map(|i| (k >> i & 1) as u8).collect();
        weights.push(graph.log_weight_bits(&bits).exp());
    }
    let z: f64 = weights.iter().sum();
    (0..n)
        .map(|i| {
            weights
                .iter()
                .enumerate()
                .filter(|(k, _)| k >> i & 1 == 1)
                .map(|(_, w)| w)
                .sum::<f64>()
                / z
        })
        .collect()
}

#[test]
fn uai_marginals_are_within_error_bars_of_the_exact_ones() {
    let graph = ebm::io::uai::parse_uai(SMALL_UAI).unwrap();
    let exact = exact_marginals(&graph);
    for (k, rule) in [LocalRule::Gibbs, LocalRule::Metropolis]
        .into_iter()
        .enumerate()
    {
        let params = ModelParams {
            beta: 1.0,
            rule,
            sweeps: 64_000,
            burn_in: 500,
            seed: 600 + k as u64,
            start: Start::Up,
        };
        let run = sample_model(&graph, &params, &mut Silent).unwrap();
        let se = run.marginal_stderr.as_ref().unwrap();
        for i in 0..graph.num_vars() {
            // MC_SIGMAS (5) batch-means standard errors: a false failure per variable has
            // probability ~6e-7 for a normal estimate (32 batches add a t-tail; still < 1e-4).
            assert!(
                (run.marginals[i] - exact[i]).abs() < MC_SIGMAS * se[i],
                "{rule:?} x{i}: {} vs exact {} (se {})",
                run.marginals[i],
                exact[i],
                se[i]
            );
            // The error bar itself is sane: between 1e-4 and 0.02 for 64 000 sweeps.
            assert!(se[i] > 1e-4 && se[i] < 0.02, "se {}", se[i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Thread-count independence

#[test]
fn same_seed_gives_identical_output_on_one_and_two_threads() {
    // 128 x 64: each colour has 4096 sites, enough for the rayon path of the checkerboard.
    let m = IsingLattice::new(128, 64, Boundary::Periodic, 1.0, 0.1).unwrap();
    let run_with = |threads: usize, kind: SamplerKind| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let params = LatticeParams {
                sweeps: 20,
                burn_in: 5,
                seed: 77,
                ..LatticeParams::new(0.44, kind)
            };
            sample_lattice(&m, &params, &mut Silent).unwrap()
        })
    };
    for kind in ALL {
        let a = run_with(1, kind);
        let b = run_with(2, kind);
        assert_eq!(a, b, "{kind:?}");
        assert_ne!(a.state, vec![1; m.num_sites()]);
    }
}

/// 10^15 recorded sweeps need 8 * 10^15 bytes per series (16 PB for E and M, far more than
/// the 128 TiB address space of x86-64 user processes), so the allocation fails on every
/// machine and whatever the overcommit policy: the run must refuse with a "too large" error (exit 1)
/// naming the bytes, before sampling, instead of aborting. Only the recorded sweeps are stored, so a huge
/// burn-in alone costs no memory.
#[test]
fn huge_sweep_counts_fail_with_an_error_instead_of_aborting() {
    const HUGE: u64 = 1_000_000_000_000_000;
    let m = IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.0).unwrap();
    let params = LatticeParams {
        sweeps: HUGE,
        burn_in: 0,
        ..LatticeParams::new(0.4, SamplerKind::Metropolis)
    };
    match sample_lattice(&m, &params, &mut Silent) {
        Err(ebm::Error::TooLarge { detail, .. }) => {
            assert!(detail.contains("16000000000000000 bytes"), "{detail}");
            assert!(detail.contains("sweeps"), "{detail}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let mrf = frustrated_mrf(4, 1);
    let params = ModelParams {
        beta: 1.0,
        rule: LocalRule::Gibbs,
        sweeps: HUGE,
        burn_in: 0,
        seed: 1,
        start: Start::Random,
    };
    match sample_model(&mrf, &params, &mut Silent) {
        Err(ebm::Error::TooLarge { detail, .. }) => {
            assert!(detail.contains("8000000000000000 bytes"), "{detail}");
            assert!(detail.contains("sweeps"), "{detail}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Burn-in sweeps are stored only on request (for a trace), and then come first.
    let params = LatticeParams {
        sweeps: 3,
        burn_in: 50,
        ..LatticeParams::new(0.4, SamplerKind::Metropolis)
    };
    let run = sample_lattice(&m, &params, &mut Silent).unwrap();
    assert_eq!(
        (run.energies.len(), run.magnetizations.len(), run.burn_in),
        (3, 3, 0)
    );
    let full = sample_lattice(
        &m,
        &LatticeParams {
            record_burn_in: true,
            ..params
        },
        &mut Silent,
    )
    .unwrap();
    assert_eq!((full.energies.len(), full.burn_in), (53, 50));
    assert_eq!(full.recorded_energies(), &run.energies[..]);
    assert_eq!(full.recorded_magnetizations(), &run.magnetizations[..]);
}

/// x_0 = x_1 = x_2 enforced by two equality factors (1, 0, 0, 1), and a unary factor (1, 2) on
/// x_0. Most random starts violate an equality (zero probability); the sampler must repair the
/// start for every seed instead of refusing. Single flips cannot leave (0,0,0) or (1,1,1); the
/// block move of the tied variables does, so the chain moves and nothing stays frozen.
#[test]
fn hard_equality_constraints_sample_for_every_seed() {
    use ebm::model::{Factor, FactorGraph};
    use ebm::sample::general::{repair_start, zero_factor_count};
    use ebm::sample::sample_factor_graph;
    let eq = |a, b| Factor::new(vec![a, b], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let unary = Factor::new(vec![0], vec![1.0, 2.0]).unwrap();
    let graph = FactorGraph::new(3, vec![eq(0, 1), eq(1, 2), unary]).unwrap();
    let mut zero_starts = 0;
    for seed in 1..=6 {
        zero_starts +=
            (zero_factor_count(&graph, &initial_state(3, Start::Random, seed)) > 0) as usize;
        for rule in [LocalRule::Gibbs, LocalRule::Metropolis] {
            let params = ModelParams {
                beta: 1.0,
                rule,
                sweeps: 50,
                burn_in: 5,
                seed,
                start: Start::Random,
            };
            let run = sample_factor_graph(&graph, &params, &mut Silent)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(zero_factor_count(&graph, &run.state), 0);
            assert!(
                run.state.iter().all(|&x| x == run.state[0]),
                "{:?}",
                run.state
            );
            // One block of three: one move per sweep. The block flips with probability >= 1/3
            // per sweep, so 55 sweeps without a flip have probability (2/3)^55 < 1e-9, and 50
            // recorded sweeps all in one state at most 2 (2/3)^50 < 1e-8.
            assert_eq!(run.tied_blocks, 1);
            assert_eq!(run.updates, 55);
            assert!(run.flips > 0, "seed {seed} {rule:?}: the block never moved");
            assert!(run.frozen.is_empty(), "frozen {:?}", run.frozen);
        }
    }
    // Without the repair these seeds would fail: most random starts have zero probability.
    assert!(zero_starts >= 3, "{zero_starts}");
    // The greedy repair of (+, -, +) (two violated equalities): flipping x_0 removes one,
    // then x_1 gains nothing, then flipping x_2 removes the other.
    let mut s = vec![1, -1, 1];
    repair_start(&graph, &mut s).unwrap();
    assert_eq!(s, vec![-1, -1, -1]);
    // A model without any configuration of positive probability names a violated factor.
    let neq = Factor::new(vec![0, 1], vec![0.0, 1.0, 1.0, 0.0]).unwrap();
    let impossible = FactorGraph::new(2, vec![eq(0, 1), neq]).unwrap();
    let err = repair_start(&impossible, &mut [1, 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("factor 1 over variables [0, 1]"), "{err}");
}

/// Six variables with hard ties x_0 = x_1 (table 1 0 0 2), x_1 != x_2 (0 1.5 0.5 0) and
/// x_3 = x_4 (1 0 0 1), soft factors joining the blocks, a ternary factor with a zero entry
/// that is not a tie (it excludes x_0 = 1, x_5 = 0, x_3 = 1), and a variable x_5: 7 states of
/// positive probability out of 64.
fn tied_graph() -> ebm::model::FactorGraph {
    use ebm::model::{Factor, FactorGraph};
    let f = |scope: Vec<usize>, table: Vec<f64>| Factor::new(scope, table).unwrap();
    FactorGraph::new(
        6,
        vec![
            f(vec![0, 1], vec![1.0, 0.0, 0.0, 2.0]),
            f(vec![1, 2], vec![0.0, 1.5, 0.5, 0.0]),
            f(vec![3, 4], vec![1.0, 0.0, 0.0, 1.0]),
            f(vec![2, 3], vec![2.0, 0.5, 0.5, 1.0]),
            f(vec![3], vec![1.0, 3.0]),
            f(vec![4, 5], vec![1.2, 0.8, 0.7, 1.5]),
            f(vec![0, 5, 3], vec![1.0, 2.0, 0.5, 1.0, 1.0, 0.0, 1.5, 1.0]),
        ],
    )
    .unwrap()
}

/// Block moves of tied variables sample the exact distribution: chi-square of the visited
/// states (thinned by THIN sweeps) against enumeration, alpha = CHI_SQUARE_ALPHA (1e-4), for
/// both rules. States of probability 0 must never be visited.
#[test]
fn block_moves_of_hard_ties_fit_the_exact_distribution() {
    use ebm::sample::general::{TiedBlocks, block_sweep, repair_start};
    let graph = tied_graph();
    let blocks = TiedBlocks::new(&graph);
    assert_eq!(blocks.block_count(), 2);
    assert_eq!(
        (blocks.block(0), blocks.block(1)),
        (&[0, 1, 2][..], &[3, 4][..])
    );
    assert_eq!(blocks.moves_per_sweep(), 3);
    let probs = boltzmann(&graph, 1.0);
    assert_eq!(probs.iter().filter(|&&p| p > 0.0).count(), 7);
    for (k, rule) in [LocalRule::Gibbs, LocalRule::Metropolis]
        .into_iter()
        .enumerate()
    {
        let seed = 70 + k as u64;
        let mut rng = from_seed(seed);
        let mut s = initial_state(6, Start::Random, seed);
        repair_start(&graph, &mut s).unwrap();
        let mut counts = vec![0u64; 64];
        for _ in 0..100 {
            block_sweep(&graph, &blocks, 1.0, rule, &mut s, &mut rng);
        }
        for _ in 0..SAMPLES {
            for _ in 0..THIN {
                block_sweep(&graph, &blocks, 1.0, rule, &mut s, &mut rng);
            }
            counts[index_of(&s)] += 1;
        }
        for (state, (&c, &p)) in counts.iter().zip(&probs).enumerate() {
            assert!(
                p > 0.0 || c == 0,
                "{rule:?}: state {state} of probability 0 visited"
            );
        }
        assert_fits(&format!("tied blocks {rule:?}"), &counts, &probs);
    }
}

/// The whole run on the tied model: marginals within MC_SIGMAS batch-means errors of the exact
/// ones (x_0 and x_1 equal, x_2 their complement), nothing frozen. Before block moves this
/// chain never left its start and reported marginals of 0 or 1.
#[test]
fn tied_model_marginals_match_enumeration() {
    use ebm::sample::sample_factor_graph;
    let graph = tied_graph();
    let exact = exact_marginals(&graph);
    let params = ModelParams {
        beta: 1.0,
        rule: LocalRule::Gibbs,
        sweeps: 32_000,
        burn_in: 200,
        seed: 9,
        start: Start::Random,
    };
    let run = sample_factor_graph(&graph, &params, &mut Silent).unwrap();
    assert!(run.frozen.is_empty(), "{:?}", run.frozen);
    let se = run.marginal_stderr.as_ref().unwrap();
    for i in 0..6 {
        assert!(
            (run.marginals[i] - exact[i]).abs() < MC_SIGMAS * se[i],
            "x{i}: {} ± {} vs exact {}",
            run.marginals[i],
            se[i],
            exact[i]
        );
    }
}

/// A ternary parity constraint x_0 + x_1 + x_2 even (no pairwise tie, so no block): single
/// flips never satisfy it, so x_0..x_2 never change. With a free x_3 the run succeeds and lists
/// them as frozen; without one nothing moves at all and the run is refused.
#[test]
fn chains_pinned_by_hard_constraints_are_flagged_or_refused() {
    use ebm::model::{Factor, FactorGraph};
    use ebm::sample::sample_factor_graph;
    let parity = || Factor::new(vec![0, 1, 2], vec![1., 0., 0., 1., 0., 1., 1., 0.]).unwrap();
    let free = Factor::new(vec![3], vec![1.0, 3.0]).unwrap();
    let params = ModelParams {
        beta: 1.0,
        rule: LocalRule::Gibbs,
        sweeps: 200,
        burn_in: 10,
        seed: 3,
        start: Start::Random,
    };
    let graph = FactorGraph::new(4, vec![parity(), free]).unwrap();
    let run = sample_factor_graph(&graph, &params, &mut Silent).unwrap();
    assert_eq!(run.frozen, vec![0, 1, 2]);
    let pinned = FactorGraph::new(3, vec![parity()]).unwrap();
    let err = sample_factor_graph(&pinned, &params, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not move"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Closed forms (slow)

/// Onsager/Yang: spontaneous magnetisation (1 - sinh(2 beta)^-4)^(1/8) = 0.973609... at
/// beta = 0.6; at 64x64 the finite-size correction is far below the error bar (correlation
/// length about 1 lattice spacing). Cold start avoids stripe states.
#[test]
#[ignore = "slow: run with --include-ignored"]
fn onsager_magnetisation_on_a_64x64_torus_at_beta_0_6() {
    let exact = (1.0 - (2.0f64 * 0.6).sinh().powi(-4)).powf(0.125);
    assert!((exact - 0.973_609).abs() < 1e-6);
    let m = IsingLattice::new(64, 64, Boundary::Periodic, 1.0, 0.0).unwrap();
    for kind in [SamplerKind::Metropolis, SamplerKind::SwendsenWang] {
        let params = LatticeParams {
            sweeps: 20_000,
            burn_in: 1_000,
            seed: 9,
            start: Start::Up,
            ..LatticeParams::new(0.6, kind)
        };
        let run = sample_lattice(&m, &params, &mut Silent).unwrap();
        let obs = lattice_observables(&run, 0.6);
        let est = obs.abs_magnetization_per_spin;
        assert!(
            (est.value - exact).abs() < MC_SIGMAS * est.stderr.unwrap(),
            "{kind:?}: {} ± {:?} vs {exact}",
            est.value,
            est.stderr
        );
    }
}

/// Kaufman's exact finite-torus energy per spin at beta = 0.4406868 on 16x16 (-1.45306490289944).
#[test]
#[ignore = "slow: run with --include-ignored"]
fn kaufman_energy_on_a_16x16_torus_at_beta_c() {
    let exact = -1.453_064_902_899_44;
    let m = IsingLattice::new(16, 16, Boundary::Periodic, 1.0, 0.0).unwrap();
    for kind in ALL {
        let params = LatticeParams {
            sweeps: if kind == SamplerKind::Wolff {
                400_000
            } else {
                100_000
            },
            burn_in: 2_000,
            seed: 10,
            ..LatticeParams::new(0.440_686_8, kind)
        };
        let run = sample_lattice(&m, &params, &mut Silent).unwrap();
        let obs = lattice_observables(&run, 0.440_686_8);
        let est = obs.energy_per_spin;
        assert!(
            (est.value - exact).abs() < MC_SIGMAS * est.stderr.unwrap(),
            "{kind:?}: {} ± {:?} vs {exact}",
            est.value,
            est.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The command line

mod cli {
    use super::{MC_SIGMAS, SMALL_UAI, exact_marginals};
    use crate::common::ebm;
    use predicates::prelude::*;
    use serde_json::Value;

    fn json_of(out: &[u8]) -> Value {
        let text = std::str::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "exactly one JSON line: {text}");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ising_json_has_the_contract_keys_and_writes_image_and_trace() {
        let dir = tempfile::tempdir().unwrap();
        let (img, trace) = (dir.path().join("final.png"), dir.path().join("trace.csv"));
        let out = ebm()
            .args([
                "sample", "ising", "--width", "16", "--height", "12", "--beta", "0.3",
            ])
            .args([
                "--sweeps",
                "300",
                "--burn-in",
                "20",
                "--json",
                "--seed",
                "5",
                "--image",
            ])
            .arg(&img)
            .arg("--trace")
            .arg(&trace)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v = json_of(&out);
        for key in [
            "energy_per_spin",
            "energy_per_spin_stderr",
            "abs_magnetization_per_spin",
            "abs_magnetization_per_spin_stderr",
            "specific_heat",
            "susceptibility",
            "binder_cumulant",
            "tau_int_energy",
            "acceptance_rate",
            "flips_per_second",
        ] {
            assert!(v[key].is_f64(), "{key}: {}", v[key]);
        }
        assert_eq!(v["sweeps"], 300);
        assert_eq!(v["seed"], 5);
        assert_eq!(v["checkerboard"], true);
        assert!(v["seconds"].as_f64().unwrap() >= 0.0);
        // Hot phase: energy per spin between the ground state -2 and 0.
        let e = v["energy_per_spin"].as_f64().unwrap();
        assert!(-2.0 < e && e < 0.0);
        let decoded = image::open(&img).unwrap().to_luma8();
        assert_eq!(decoded.dimensions(), (16, 12));
        let csv = std::fs::read_to_string(&trace).unwrap();
        assert_eq!(csv.lines().count(), 1 + 320);
        assert!(csv.starts_with("sweep,recorded,energy_per_spin,magnetization_per_spin\n"));
    }

    #[test]
    fn output_does_not_depend_on_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut results = Vec::new();
        for threads in ["1", "2"] {
            let img = dir.path().join(format!("t{threads}.png"));
            let out = ebm()
                .args([
                    "sample", "ising", "--width", "128", "--height", "64", "--beta", "0.5",
                ])
                .args([
                    "--sweeps",
                    "30",
                    "--burn-in",
                    "0",
                    "--json",
                    "--threads",
                    threads,
                ])
                .arg("--image")
                .arg(&img)
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            let mut v = json_of(&out);
            for volatile in ["seconds", "flips_per_second", "threads", "image"] {
                v.as_object_mut().unwrap().remove(volatile);
            }
            results.push((v, std::fs::read(&img).unwrap()));
        }
        assert_eq!(results[0], results[1]);
    }

    #[test]
    fn cluster_sampler_with_antiferromagnetic_coupling_is_refused_without_output() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.png");
        ebm()
            .args([
                "sample",
                "ising",
                "--width",
                "8",
                "--height",
                "8",
                "--coupling",
                "-1",
            ])
            .args(["--sampler", "wolff", "--image"])
            .arg(&img)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("J >= 0"));
        assert!(!img.exists());
    }

    #[test]
    fn bad_flags_and_files_give_clear_errors() {
        ebm()
            .args([
                "sample", "ising", "--width", "8", "--height", "8", "--image", "x.gif",
            ])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("x.gif"));
        ebm()
            .args([
                "sample", "ising", "--width", "8", "--height", "8", "--sweeps", "0",
            ])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--sweeps"));
        ebm()
            .args([
                "sample", "ising", "--width", "4", "--height", "4", "--sweeps", "1",
            ])
            .args(["--burn-in", "18446744073709551615"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("burn-in"));
        // 10^15 sweeps would need 16 PB of per-sweep series: a clear error, not an abort.
        ebm()
            .args(["sample", "ising", "--width", "4", "--height", "4"])
            .args(["--sweeps", "1000000000000000", "--burn-in", "0"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("too large"))
            .stderr(predicate::str::contains("16000000000000000 bytes"))
            .stderr(predicate::str::contains("sweeps"));
        // A real RBM file: the content, not the name, says what a model is.
        let dir = tempfile::tempdir().unwrap();
        let rbm_file = dir.path().join("model.safetensors");
        let rbm = ebm::model::Rbm::new(1, 1, vec![0.0], vec![0.0], vec![0.0]).unwrap();
        ebm::io::safetensors::write_rbm(&rbm_file, &ebm::io::safetensors::RbmFile::new(rbm))
            .unwrap();
        ebm()
            .args(["sample", "--model"])
            .arg(&rbm_file)
            .arg("--marginals")
            .assert()
            .code(2)
            .stderr(predicate::str::contains("does not apply to RBMs"));
        ebm()
            .args(["sample", "--model", "no/such/file.uai"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("no/such/file.uai"));
        ebm()
            .args(["sample"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("ebm sample ising"));
    }

    /// Chain flags that do not apply to an RBM are refused by name (exit 2), not ignored;
    /// RBM-only flags are refused for UAI models.
    #[test]
    fn flags_that_do_not_apply_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let rbm = dir.path().join("m.safetensors");
        let file = ebm::io::safetensors::RbmFile::new(ebm::model::Rbm::zeros(4, 2).unwrap());
        ebm::io::safetensors::write_rbm(&rbm, &file).unwrap();
        for (flag, value) in [
            ("--sweeps", "5"),
            ("--burn-in", "3"),
            ("--beta", "0.5"),
            ("--start", "up"),
            ("--sampler", "gibbs"),
        ] {
            ebm()
                .args(["sample", "--steps", "2", flag, value, "--model"])
                .arg(&rbm)
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!(
                    "{flag} does not apply to RBMs"
                )));
        }
        ebm()
            .args(["sample", "--steps", "2", "--chains", "3", "--model"])
            .arg(&rbm)
            .assert()
            .success();
        let uai = dir.path().join("small.uai");
        std::fs::write(&uai, SMALL_UAI).unwrap();
        for (flag, value) in [("--chains", "3"), ("--steps", "2"), ("--output", "o.txt")] {
            ebm()
                .args(["sample", flag, value, "--model"])
                .arg(&uai)
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!(
                    "{flag} applies to RBM models"
                )));
        }
        // The lattice form does not take the model-only flags at all (it takes --chains with
        // the gradient samplers: tests/gradient_samplers.rs).
        for flag in ["--steps", "--output", "--marginals"] {
            ebm()
                .args(["sample", "ising", "--width", "4", "--height", "4", flag])
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!(
                    "unexpected argument '{flag}'"
                )));
        }
    }

    /// Finite but huge --field, --coupling, --beta printed NaN/null with exit 0: refused up
    /// front naming the flag (exit 2). The largest accepted values give finite figures only.
    #[test]
    fn overflowing_parameters_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--field", "1e308"),
            ("--field", "-1e51"),
            ("--coupling", "1e308"),
            ("--beta", "1e308"),
        ] {
            ebm()
                .args([
                    "sample", "ising", "--width", "4", "--height", "4", "--sweeps", "10",
                ])
                .args([flag, value])
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!(
                    "{flag} must be a finite number"
                )));
        }
        ebm()
            .args([
                "sample", "--beta", "1e308", "--sweeps", "10", "--model", "x.uai",
            ])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--beta"));
        for sampler in ["metropolis", "gibbs", "wolff", "swendsen-wang"] {
            let out = ebm()
                .args(["--json", "sample", "ising", "--width", "5", "--height", "4"])
                .args(["--sweeps", "100", "--field", "-1e50", "--coupling", "1e50"])
                .args(["--beta", "1e50", "--sampler", sampler])
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            let v = json_of(&out);
            for key in ["energy_per_spin", "specific_heat", "susceptibility"] {
                assert!(
                    v[key].as_f64().is_some_and(f64::is_finite),
                    "{sampler} {key}: {v}"
                );
            }
        }
    }

    /// Lattices and RBM chain counts that cannot be held in memory aborted in the allocator:
    /// now exit 1 with "job too large" before anything is allocated.
    #[test]
    fn jobs_too_large_for_memory_exit_1() {
        for sampler in ["metropolis", "wolff"] {
            ebm()
                .args([
                    "sample", "ising", "--width", "1000000", "--height", "1000000",
                ])
                .args(["--sampler", sampler])
                .assert()
                .code(1)
                .stderr(predicate::str::contains("job too large"));
        }
        let dir = tempfile::tempdir().unwrap();
        let rbm = dir.path().join("m.safetensors");
        let file = ebm::io::safetensors::RbmFile::new(ebm::model::Rbm::zeros(4, 2).unwrap());
        ebm::io::safetensors::write_rbm(&rbm, &file).unwrap();
        for chains in ["18446744073709551615", "10000000000"] {
            ebm()
                .args(["sample", "--chains", chains, "--model"])
                .arg(&rbm)
                .assert()
                .code(1)
                .stderr(predicate::str::contains("job too large"));
        }
    }

    /// `--flip -0.1` is parsed as a number (it was taken for a flag) and refused by the range
    /// check with a clear message, writing nothing.
    #[test]
    fn negative_flip_probability_is_parsed_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("noisy.png");
        ebm()
            .args([
                "noise",
                "--input",
                "data/images/horse.png",
                "--flip",
                "-0.1",
                "--output",
            ])
            .arg(&out)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "--flip must be a probability in [0, 1], got -0.1",
            ));
        assert!(!out.exists());
    }

    /// x_0 = x_1 = x_2 by two equality tables and a unary (1, 2) on x_2: the command repairs
    /// zero-probability random starts for every seed, moves the tied block as one, and reports
    /// marginals of 2/3 (within MC_SIGMAS standard errors). It used to print 0 or 1 with an
    /// error bar of 0 and acceptance 0.
    #[test]
    fn uai_models_with_hard_equalities_sample_for_every_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("equal.uai");
        let text = "MARKOV\n3\n2 2 2\n3\n2 0 1\n2 1 2\n1 2\n\n4\n1 0 0 1\n\n4\n1 0 0 1\n\n2\n1 2\n";
        std::fs::write(&path, text).unwrap();
        for seed in 1..=6 {
            let out = ebm()
                .args([
                    "--seed",
                    &seed.to_string(),
                    "--json",
                    "sample",
                    "--sweeps",
                    "3200",
                ])
                .arg("--model")
                .arg(&path)
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            let v = json_of(&out);
            assert!(v["acceptance_rate"].as_f64().unwrap() > 0.0, "seed {seed}");
            assert_eq!(v["tied_blocks"].as_u64(), Some(1));
            assert_eq!(v["frozen_variables"].as_array().unwrap().len(), 0);
            assert!(v["warning"].is_null());
            let m = v["marginals"].as_array().unwrap();
            let se = v["marginals_stderr"].as_array().unwrap();
            for i in 0..3 {
                let (p, s) = (m[i].as_f64().unwrap(), se[i].as_f64().unwrap());
                assert!(
                    (p - 2.0 / 3.0).abs() < MC_SIGMAS * s && s > 0.0,
                    "seed {seed} x{i}: {p} ± {s}"
                );
            }
        }
    }

    /// A ternary parity constraint pins x_0..x_2 (no single flip keeps it, and it is no
    /// pairwise tie); x_3 is free. JSON lists the frozen variables with a warning and null
    /// error bars for them; the text form warns on stderr (even with --quiet) and marks them
    /// in the --marginals table. A model where nothing can move is refused (exit 2).
    #[test]
    fn pinned_variables_are_flagged_and_a_chain_that_never_moves_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parity.uai");
        let parity = "3 0 1 2\n1 3\n\n8\n1 0 0 1 0 1 1 0\n\n2\n1 3\n";
        std::fs::write(&path, format!("MARKOV\n4\n2 2 2 2\n2\n{parity}")).unwrap();
        let out = ebm()
            .args(["--json", "sample", "--sweeps", "320", "--model"])
            .arg(&path)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v = json_of(&out);
        assert_eq!(v["frozen_variables"], serde_json::json!([0, 1, 2]));
        assert!(v["warning"].as_str().unwrap().contains("never changed"));
        let se = v["marginals_stderr"].as_array().unwrap();
        assert!(se[0].is_null() && se[3].as_f64().unwrap() > 0.0, "{se:?}");
        ebm()
            .args([
                "--quiet",
                "sample",
                "--sweeps",
                "320",
                "--marginals",
                "--model",
            ])
            .arg(&path)
            .assert()
            .success()
            .stderr(predicate::str::contains(
                "warning: 3 variable(s) never changed",
            ))
            .stdout(predicate::str::contains("0\t").and(predicate::str::contains("frozen")));
        let pinned = dir.path().join("pinned.uai");
        std::fs::write(
            &pinned,
            "MARKOV\n3\n2 2 2\n1\n3 0 1 2\n\n8\n1 0 0 1 0 1 1 0\n",
        )
        .unwrap();
        ebm()
            .args(["sample", "--model"])
            .arg(&pinned)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("did not move"));
    }

    #[test]
    fn uai_marginals_from_the_command_line_match_the_exact_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.uai");
        std::fs::write(&path, SMALL_UAI).unwrap();
        let out = ebm()
            .args(["sample", "--sweeps", "32000", "--json", "--model"])
            .arg(&path)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v = json_of(&out);
        let exact = exact_marginals(&ebm::io::uai::parse_uai(SMALL_UAI).unwrap());
        let est = v["marginals"].as_array().unwrap();
        let se = v["marginals_stderr"].as_array().unwrap();
        assert_eq!(est.len(), 6);
        for i in 0..6 {
            let (p, s) = (est[i].as_f64().unwrap(), se[i].as_f64().unwrap());
            // MC_SIGMAS batch-means standard errors, as in the library test above.
            assert!(
                (p - exact[i]).abs() < MC_SIGMAS * s,
                "x{i}: {p} ± {s} vs {}",
                exact[i]
            );
        }
        // Text form: a header and one line per variable on stdout.
        ebm()
            .args(["sample", "--sweeps", "200", "--marginals", "--model"])
            .arg(&path)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("variable\tP(x=1)\tstderr\n"));
    }
}

/// Large fields (within the accepted 1e50) freeze the chain after the burn-in, so the energy
/// is constant up to rounding and the specific heat is 0 up to rounding. Computed as
/// <e^2> - <e>^2 of the raw energies it cancelled catastrophically (a negative specific heat of
/// about -7e106 at h = beta = 1e30). Bound: e is constant to a relative 1e-15 (a few ulps of
/// the summed energy), so C = beta^2 N Var(e) <= beta^2 N (1e-15 |e|)^2.
#[test]
fn specific_heat_of_a_frozen_chain_with_huge_fields_is_not_negative() {
    for (field, coupling, beta) in [(1e30, 1.0, 1e30), (0.0, 1e30, 1e30), (1e49, 1.0, 1.0)] {
        let m = IsingLattice::new(8, 8, Boundary::Periodic, coupling, field).unwrap();
        let params = LatticeParams {
            sweeps: 50,
            ..LatticeParams::new(beta, SamplerKind::Metropolis)
        };
        let run = sample_lattice(&m, &params, &mut Silent).unwrap();
        let obs = lattice_observables(&run, beta);
        let c = obs.specific_heat.value;
        let e = obs.energy_per_spin.value;
        let bound = beta * beta * 64.0 * (1e-15 * e).powi(2);
        assert!(
            (0.0..=bound).contains(&c),
            "h = {field}, J = {coupling}, beta = {beta}: C = {c}, bound {bound}"
        );
    }
}
