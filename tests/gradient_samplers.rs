//! The gradient samplers (GWG, DULA, DMALA of `ebm::sample::gradient`) against exact answers:
//! chi-square goodness of fit against enumeration (with power checks at a wrong temperature),
//! exact one-step detailed balance of the enumerated kernels and the chains' agreement with
//! them, DULA's bias measured exactly, and thread-count independence.

use crate::common::tol::CHI_SQUARE_ALPHA;
use crate::samplers::{boltzmann, chi_square_p, frustrated_mrf, index_of, spins_of};
use ebm::model::{Boundary, EnergyModel, Factor, FactorGraph, IsingLattice, Rbm, RbmF32, Spin};
use ebm::progress::Silent;
use ebm::rng::{from_seed, uniform_f64};
use ebm::sample::gradient::{
    ExactChain, GradientParams, GradientSampler, RbmChain, exact_kernel, sample_model_gradient,
    sample_rbm_gradient,
};
use ebm::sample::{LatticeChain, SamplerKind, Start, initial_state};
use rand::Rng;

const GWG: GradientSampler = GradientSampler::Gwg;
const DMALA: GradientSampler = GradientSampler::Dmala { step_size: 0.3 };

/// Samples per chi-square case and the sweeps between them. At these temperatures tau_int is a
/// few sweeps at most, so samples 10 sweeps apart are nearly independent (the residual
/// correlation inflates the statistic by a fraction of a percent); with 40 000 samples a chain
/// at a temperature 10-20% off fails (the power checks below).
const SAMPLES: usize = 40_000;
const THIN: usize = 10;

fn lattice() -> IsingLattice {
    IsingLattice::new(3, 3, Boundary::Open, 1.0, 0.3).unwrap()
}
const LATTICE_BETA: f64 = 0.35;

/// A frustrated 10-variable model as a UAI factor graph: the pairwise couplings of both signs
/// as pair tables, plus a three-variable table, so the general factor path is exercised.
fn frustrated_graph() -> FactorGraph {
    let pairwise = FactorGraph::from_pairwise(&frustrated_mrf(10, 11), 1.0).unwrap();
    let mut factors = pairwise.factors().to_vec();
    factors.push(Factor::new(vec![2, 5, 7], vec![1.0, 0.5, 2.0, 1.5, 0.7, 1.2, 0.4, 3.0]).unwrap());
    FactorGraph::new(10, factors).unwrap()
}

/// A 10 x 4 RBM with weights uniform in [-1.5, 1.5] and biases in [-1, 1], scaled by `scale`.
fn small_rbm(scale: f64) -> Rbm {
    let mut rng = from_seed(21);
    let mut u = |s: f64| scale * s * (2.0 * uniform_f64(&mut rng) - 1.0);
    let w = (0..40).map(|_| u(1.5)).collect();
    let b = (0..10).map(|_| u(1.0)).collect();
    let c = (0..4).map(|_| u(1.0)).collect();
    Rbm::new(10, 4, w, b, c).unwrap()
}

/// p(v) ∝ exp(-F(v)) over the visible states (index: bit i = v_i).
fn rbm_visible_distribution(rbm: &Rbm) -> Vec<f64> {
    let n = rbm.n_visible();
    let log_w: Vec<f64> = (0..1usize << n)
        .map(|k| {
            let v: Vec<u8> = (0..n).map(|i| (k >> i & 1) as u8).collect();
            -rbm.free_energy(&v)
        })
        .collect();
    let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = log_w.iter().map(|l| (l - max).exp()).sum();
    log_w.iter().map(|l| (l - max).exp() / z).collect()
}

fn lattice_counts(sampler: GradientSampler, beta: f64, seed: u64) -> Vec<u64> {
    let m = lattice();
    let n = m.num_sites();
    let state = initial_state(n, Start::Random, seed);
    let mut chain =
        LatticeChain::new(&m, SamplerKind::Gradient(sampler), beta, seed, state).unwrap();
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..100 {
        chain.step();
    }
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            chain.step();
        }
        counts[index_of(&chain.state())] += 1;
    }
    counts
}

fn graph_counts(graph: &FactorGraph, sampler: GradientSampler, beta: f64, seed: u64) -> Vec<u64> {
    let n = graph.num_vars();
    let start = initial_state(n, Start::Random, seed);
    let mut chain = ExactChain::new(graph.clone(), sampler, beta, start, from_seed(seed)).unwrap();
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..100 {
        chain.sweep();
    }
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            chain.sweep();
        }
        counts[index_of(chain.spins())] += 1;
    }
    counts
}

fn rbm_counts(rbm: &Rbm, sampler: GradientSampler, seed: u64) -> Vec<u64> {
    let model = RbmF32::from_rbm(rbm);
    let n = rbm.n_visible();
    let mut chain = RbmChain::new(&model, sampler, vec![0; n]).unwrap();
    let mut rng = from_seed(seed);
    let per_sweep = sampler.proposals_per_sweep(n);
    let mut counts = vec![0u64; 1 << n];
    for _ in 0..100 * per_sweep {
        chain.step(&model, &mut rng);
    }
    for _ in 0..SAMPLES {
        for _ in 0..THIN as u64 * per_sweep {
            chain.step(&model, &mut rng);
        }
        let k: usize = (chain.visible().iter().enumerate())
            .map(|(i, &b)| (b as usize) << i)
            .sum();
        counts[k] += 1;
    }
    counts
}

fn assert_fits(name: &str, counts: &[u64], probs: &[f64]) {
    let p = chi_square_p(counts, probs);
    // alpha = 1e-4 (CHI_SQUARE_ALPHA): a correct sampler fails with probability 1e-4; seeded.
    assert!(p > CHI_SQUARE_ALPHA, "{name}: chi-square p-value {p:.3e}");
}

fn assert_rejected(name: &str, counts: &[u64], probs: &[f64]) {
    let p = chi_square_p(counts, probs);
    assert!(
        p < CHI_SQUARE_ALPHA,
        "{name}: a chain at the wrong temperature passed (p = {p:.3e}): the test has no power"
    );
}

#[test]
fn gwg_and_dmala_fit_boltzmann_on_a_3x3_lattice_with_field() {
    let exact = boltzmann(&lattice(), LATTICE_BETA);
    for sampler in [GWG, DMALA] {
        let counts = lattice_counts(sampler, LATTICE_BETA, 1);
        assert_fits(&format!("3x3 lattice {sampler:?}"), &counts, &exact);
    }
    // Power: a chain at beta 15% too high is rejected by the same test.
    let counts = lattice_counts(GWG, LATTICE_BETA * 1.15, 1);
    assert_rejected("3x3 lattice GWG at 1.15 beta", &counts, &exact);
}

#[test]
fn gwg_and_dmala_fit_a_frustrated_10_variable_uai_model() {
    let graph = frustrated_graph();
    let exact = boltzmann(&graph, 1.0);
    for sampler in [GWG, DMALA] {
        let counts = graph_counts(&graph, sampler, 1.0, 2);
        assert_fits(&format!("frustrated UAI {sampler:?}"), &counts, &exact);
    }
    let counts = graph_counts(&graph, DMALA, 1.15, 2);
    assert_rejected("frustrated UAI DMALA at beta 1.15", &counts, &exact);
}

#[test]
fn gwg_and_dmala_fit_the_visible_units_of_a_10x4_rbm() {
    let rbm = small_rbm(1.0);
    let exact = rbm_visible_distribution(&rbm);
    for sampler in [GWG, DMALA] {
        let counts = rbm_counts(&rbm, sampler, 3);
        assert_fits(&format!("10x4 RBM {sampler:?}"), &counts, &exact);
    }
    // Power: the same RBM at temperature 1 / 0.85 (every parameter times 0.85).
    let counts = rbm_counts(&small_rbm(0.85), GWG, 3);
    assert_rejected("10x4 RBM GWG at 0.85 beta", &counts, &exact);
}

/// A 4-variable model with pairwise and three-variable factors (not pairwise: the scores are
/// exact flip changes, not linear).
fn four_variable_graph() -> FactorGraph {
    FactorGraph::new(
        4,
        vec![
            Factor::new(vec![0, 1], vec![2.0, 0.5, 0.7, 1.5]).unwrap(),
            Factor::new(vec![1, 2, 3], vec![1.0, 3.0, 0.2, 1.1, 0.6, 2.5, 1.7, 0.4]).unwrap(),
            Factor::new(vec![3], vec![0.3, 1.2]).unwrap(),
            Factor::new(vec![0, 2], vec![1.4, 0.6, 0.9, 2.2]).unwrap(),
        ],
    )
    .unwrap()
}

/// pi(x) K(x, y) = pi(y) K(y, x) for every pair of the 16 states, to 1e-12, for GWG and DMALA
/// at several step sizes (K enumerated from the proposal and acceptance probabilities); every
/// row sums to 1. DULA has no correction and is not reversible: its defect is reported.
#[test]
fn one_step_detailed_balance_holds_exactly_on_a_4_variable_model() {
    let graph = four_variable_graph();
    let beta = 0.8;
    let pi = boltzmann(&graph, beta);
    let kernel = |sampler| -> Vec<Vec<f64>> {
        (0..16)
            .map(|x| exact_kernel(&graph, sampler, beta, &spins_of(x, 4)))
            .collect()
    };
    for sampler in [
        GWG,
        GradientSampler::Dmala { step_size: 0.1 },
        GradientSampler::Dmala { step_size: 1.0 },
        GradientSampler::Dmala { step_size: 10.0 },
    ] {
        let k = kernel(sampler);
        for x in 0..16 {
            let row: f64 = k[x].iter().sum();
            assert!(
                (row - 1.0).abs() < 1e-12,
                "{sampler:?} row {x} sums to {row}"
            );
            for y in 0..16 {
                let (a, b) = (pi[x] * k[x][y], pi[y] * k[y][x]);
                assert!((a - b).abs() < 1e-12, "{sampler:?} {x} -> {y}: {a} vs {b}");
            }
        }
    }
    let k = kernel(GradientSampler::Dula { step_size: 1.0 });
    let defect = (0..16)
        .flat_map(|x| (0..16).map(move |y| (x, y)))
        .map(|(x, y)| (pi[x] * k[x][y] - pi[y] * k[y][x]).abs())
        .fold(0.0, f64::max);
    assert!(
        defect > 1e-4,
        "DULA is not reversible, yet its defect is {defect}"
    );
}

/// The chains implement the enumerated kernels: from each of three states, 20 000 single
/// proposals of the library's chain land on the states y with the frequencies K(x, y)
/// (chi-square at alpha 1e-4), for all three samplers.
#[test]
fn one_proposal_of_the_chain_follows_the_enumerated_kernel() {
    assert_one_proposal_follows_the_kernel("", &four_variable_graph(), 0.8, [0, 5, 14], 100, false);
}

/// From each start state `x` (bits of x, n = the model's size), 20 000 single proposals of an
/// [`ExactChain`] (seeds drawn from `seed_base + x`) for GWG, DMALA and DULA land on the states y
/// with the enumerated frequencies K(x, y) (chi-square at alpha 1e-4); with `table`, every chain
/// must be on the score-table path.
fn assert_one_proposal_follows_the_kernel<M: ebm::sample::gradient::LocalModel>(
    name: &str,
    model: &M,
    beta: f64,
    starts: [usize; 3],
    seed_base: u64,
    table: bool,
) {
    let n = model.num_vars();
    for sampler in [GWG, DMALA, GradientSampler::Dula { step_size: 0.3 }] {
        for x in starts {
            let start = spins_of(x, n);
            let expected = exact_kernel(model, sampler, beta, &start);
            let mut counts = vec![0u64; 1 << n];
            let mut rng = from_seed(x as u64 + seed_base);
            for _ in 0..20_000 {
                let seed = rng.next_u64();
                let mut chain =
                    ExactChain::new(model.clone(), sampler, beta, start.clone(), from_seed(seed))
                        .unwrap();
                assert!(!table || chain.uses_score_table());
                chain.step();
                counts[index_of(chain.spins())] += 1;
            }
            assert_fits(&format!("{name}{sampler:?} from {x}"), &counts, &expected);
        }
    }
}

/// The stationary distribution of a kernel: the solution of p K = p with sum_x p(x) = 1, by
/// Gaussian elimination with partial pivoting (the last balance equation replaced by the
/// normalisation). Exact up to rounding, however slowly the chain mixes.
fn stationary(k: &[Vec<f64>]) -> Vec<f64> {
    let m = k.len();
    // Row y of the system: sum_x p(x) (K(x, y) - [x == y]) = 0.
    let mut a: Vec<Vec<f64>> = (0..m)
        .map(|y| {
            let mut row: Vec<f64> = (0..m).map(|x| k[x][y]).collect();
            row[y] -= 1.0;
            row.push(0.0);
            row
        })
        .collect();
    a[m - 1] = vec![1.0; m + 1];
    for col in 0..m {
        let pivot = (col..m)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        for r in 0..m {
            if r != col && a[r][col] != 0.0 {
                let f = a[r][col] / a[col][col];
                let (pivot_row, row) = if r < col {
                    let (lo, hi) = a.split_at_mut(col);
                    (&hi[0], &mut lo[r])
                } else {
                    let (lo, hi) = a.split_at_mut(r);
                    (&lo[col], &mut hi[0])
                };
                for (v, &pv) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= f * pv;
                }
            }
        }
    }
    (0..m).map(|x| a[x][m] / a[x][x]).collect()
}

fn total_variation(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// DULA's bias, measured exactly: the total variation between the stationary distribution of
/// its enumerated kernel and the target, on the 3x3 lattice with field and a frustrated
/// 8-variable model, for step sizes 0.05 ... 1. The bias must shrink as the step size does and
/// be small (below 0.05) at alpha = 0.05, and it must be visible (above 0.01) at alpha = 1: it
/// is a property of the sampler, not of sampling noise (no sampling is involved). DMALA's
/// stationary distribution is the target to 1e-9 (its kernel is reversible). The figures are
/// printed (`--nocapture`) and quoted in docs/sampling.md.
#[test]
fn dula_bias_shrinks_with_the_step_size_and_dmala_has_none() {
    let mrf = frustrated_mrf(8, 5);
    let models: [(&str, &dyn EnergyModel, f64); 2] = [
        ("3x3 lattice", &lattice() as &dyn EnergyModel, LATTICE_BETA),
        ("frustrated 8-variable", &mrf, 1.0),
    ];
    for (name, model, beta) in models {
        let n = model.num_vars();
        let pi = boltzmann(model, beta);
        let states: Vec<Vec<Spin>> = (0..1usize << n).map(|x| spins_of(x, n)).collect();
        let tv_of = |sampler| {
            let k: Vec<Vec<f64>> = states
                .iter()
                .map(|s| exact_kernel(model, sampler, beta, s))
                .collect();
            total_variation(&stationary(&k), &pi)
        };
        let mut last = 0.0;
        for alpha in [0.05, 0.1, 0.2, 0.5, 1.0] {
            let tv = tv_of(GradientSampler::Dula { step_size: alpha });
            println!("DULA bias {name}: alpha {alpha}: TV {tv:.2e}");
            assert!(
                tv > last,
                "{name}: TV {tv} at alpha {alpha} not above {last}"
            );
            if alpha == 0.05 {
                assert!(tv < 0.05, "{name}: TV {tv} at alpha 0.05");
            }
            if alpha == 1.0 {
                assert!(tv > 0.01, "{name}: TV {tv} at alpha 1");
            }
            last = tv;
        }
        let tv = tv_of(GradientSampler::Dmala { step_size: 1.0 });
        assert!(tv < 1e-9, "{name}: DMALA TV {tv}");
    }
}

/// A 3x3 open lattice whose parameters are multiples of 0.25 (J = 0.5, h = 0.25): the
/// gradient chains run on the score-table path.
fn table_lattice() -> IsingLattice {
    IsingLattice::new(3, 3, Boundary::Open, 0.5, 0.25).unwrap()
}
const TABLE_BETA: f64 = 0.7;

fn table_lattice_counts(sampler: GradientSampler, beta: f64, seed: u64) -> Vec<u64> {
    let m = table_lattice();
    let state = initial_state(9, Start::Random, seed);
    let mut chain = ExactChain::new(m, sampler, beta, state, from_seed(seed)).unwrap();
    assert!(chain.uses_score_table(), "{sampler:?}");
    let mut counts = vec![0u64; 1 << 9];
    for _ in 0..100 {
        chain.sweep();
    }
    for _ in 0..SAMPLES {
        for _ in 0..THIN {
            chain.sweep();
        }
        counts[index_of(chain.spins())] += 1;
    }
    counts
}

/// The score-table path passes the same chi-square test (alpha 1e-4) as the general path, with
/// the same power check (beta 15% too high is rejected).
#[test]
fn table_path_fits_boltzmann_on_a_quantised_3x3_lattice() {
    let exact = boltzmann(&table_lattice(), TABLE_BETA);
    for sampler in [GWG, DMALA, GradientSampler::Dmala { step_size: 1.0 }] {
        let counts = table_lattice_counts(sampler, TABLE_BETA, 4);
        assert_fits(&format!("table path {sampler:?}"), &counts, &exact);
    }
    let counts = table_lattice_counts(DMALA, TABLE_BETA * 1.15, 4);
    assert_rejected("table path DMALA at 1.15 beta", &counts, &exact);
}

/// A +-J spin glass on 12 variables with +-0.5 fields: quantised, so on the table path.
fn quantised_glass() -> ebm::model::PairwiseMrf {
    let mut rng = from_seed(31);
    let mut sign = |x: f64| if uniform_f64(&mut rng) < 0.5 { x } else { -x };
    let mut bonds = Vec::new();
    for i in 0..12 {
        bonds.push((i, (i + 1) % 12, sign(1.0)));
        if i % 3 == 0 {
            bonds.push((i, (i + 5) % 12, sign(1.0)));
        }
    }
    let fields = (0..12).map(|_| sign(0.5)).collect();
    ebm::model::PairwiseMrf::new(fields, &bonds).unwrap()
}

/// The table path and the general path (exp / softplus of scores from `flip_delta`) make the
/// same move: along a 5 000-proposal run of the table chain, from every state it visits, one
/// proposal of each path with the same fresh seed lands on the same state, for every sampler,
/// on a 5x5 torus (linear scan), a 12x12 torus (GWG's sum tree) and a quantised spin glass.
/// (Their scores agree to rounding, so they could part only if a uniform fell within ~1e-16
/// of a threshold. Over a long run the two streams can drift apart: where the acceptance
/// ratio is exactly 1 one path may round it to just below 1 and draw a uniform the other
/// does not, so they are compared move by move.)
#[test]
fn table_path_and_general_path_make_the_same_moves() {
    fn follow<M: ebm::sample::gradient::LocalModel>(name: &str, model: &M, beta: f64) {
        let n = model.num_vars();
        for sampler in [
            GWG,
            GradientSampler::Dula { step_size: 0.4 },
            GradientSampler::Dmala { step_size: 0.4 },
        ] {
            let start = initial_state(n, Start::Random, 3);
            let mut chain =
                ExactChain::new(model.clone(), sampler, beta, start, from_seed(8)).unwrap();
            let mut moved = 0;
            for t in 0..5_000u64 {
                let s = chain.spins().to_vec();
                let one = |general: bool| {
                    let c = ExactChain::new(model.clone(), sampler, beta, s.clone(), from_seed(t))
                        .unwrap();
                    let mut c = if general { c.general_path() } else { c };
                    assert_eq!(c.uses_score_table(), !general);
                    let flips = c.step();
                    (flips, c.spins().to_vec())
                };
                let (table, general) = (one(false), one(true));
                assert_eq!(table, general, "{name} {sampler:?}: proposal {t}");
                moved += (table.0 > 0) as u64;
                chain.step();
            }
            assert!(moved > 500, "{name} {sampler:?}: {moved} moves");
        }
    }
    let torus = |side| IsingLattice::new(side, side, Boundary::Periodic, 0.2, 0.2).unwrap();
    follow("5x5 torus", &torus(5), 1.0);
    follow("12x12 torus", &torus(12), 1.0);
    follow("spin glass", &quantised_glass(), 0.8);
}

/// One proposal of the table-path chain follows the enumerated kernel (chi-square at alpha
/// 1e-4 over 20 000 single proposals from three states), on a quantised 5-variable model.
#[test]
fn one_proposal_of_the_table_path_follows_the_enumerated_kernel() {
    let model = ebm::model::PairwiseMrf::new(
        vec![0.5, -0.5, 0.0, 1.0, 0.5],
        &[
            (0, 1, 1.0),
            (1, 2, -0.5),
            (2, 3, 1.5),
            (3, 4, -1.0),
            (0, 4, 0.5),
            (1, 3, 1.0),
        ],
    )
    .unwrap();
    assert_one_proposal_follows_the_kernel("table ", &model, 0.9, [0, 11, 30], 200, true);
}

/// `chains` gradient-sampler chains on the lattice `m` run in a pool of `threads` threads.
fn gradient_lattice_on_threads(
    m: &ebm::model::IsingLattice,
    params: &ebm::sample::LatticeParams,
    threads: usize,
    chains: usize,
) -> ebm::sample::gradient::LatticeChainsRun {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        ebm::sample::gradient::sample_lattice_gradient(m, params, chains, &mut Silent).unwrap()
    })
}

/// Multi-chain lattice runs: independent of the thread count, chain 0 is the single-chain run,
/// and the combined energy per spin of 8 chains matches the exact value (enumeration of the
/// 3x3 lattice) within 5 of its standard errors, which are smaller than one chain's.
#[test]
fn multi_chain_lattice_runs_combine_chains_and_ignore_threads() {
    use ebm::sample::{LatticeParams, lattice_observables, sample_lattice};
    let m = lattice();
    let params = LatticeParams {
        sweeps: 4000,
        burn_in: 100,
        seed: 5,
        ..LatticeParams::new(LATTICE_BETA, SamplerKind::Gradient(DMALA))
    };
    let run_on = |threads, chains| gradient_lattice_on_threads(&m, &params, threads, chains);
    let (a, b) = (run_on(1, 8), run_on(2, 8));
    assert_eq!(a, b);
    let single = sample_lattice(&m, &params, &mut Silent).unwrap();
    assert_eq!(run_on(1, 1).run, single);
    assert_eq!(a.chain_energies[0], single.recorded_energies());
    let exact = boltzmann(&m, LATTICE_BETA);
    let exact_e: f64 = (0..512)
        .map(|x| exact[x] * m.energy(&crate::samplers::spins_of(x, 9)) / 9.0)
        .sum();
    let obs = a.observables(LATTICE_BETA);
    let one = lattice_observables(&single, LATTICE_BETA);
    let (e, se) = (
        obs.energy_per_spin.value,
        obs.energy_per_spin.stderr.unwrap(),
    );
    assert!(
        (e - exact_e).abs() < 5.0 * se,
        "{e} +- {se} vs exact {exact_e}"
    );
    // 8 chains: the error bar shrinks by about sqrt(8) = 2.8 (estimates of it vary by ~10%).
    assert!(se < 0.6 * one.energy_per_spin.stderr.unwrap());
    assert_eq!(a.run.proposals.unwrap().proposals, 8 * 4100);
}

/// On the score-table path too (a quantised 3x3 lattice), DULA and DMALA runs of 4 chains give
/// the same result on 1 and 2 threads, and chain 0 is the single-chain run.
#[test]
fn table_path_lattice_runs_ignore_threads() {
    use ebm::sample::{LatticeParams, sample_lattice};
    let m = table_lattice();
    let state = initial_state(9, Start::Random, 1);
    let chain = ExactChain::new(m.clone(), DMALA, TABLE_BETA, state, from_seed(1)).unwrap();
    assert!(chain.uses_score_table());
    for sampler in [DMALA, GradientSampler::Dula { step_size: 0.5 }] {
        let params = LatticeParams {
            sweeps: 3000,
            burn_in: 10,
            seed: 6,
            ..LatticeParams::new(TABLE_BETA, SamplerKind::Gradient(sampler))
        };
        let run_on = |threads, chains| gradient_lattice_on_threads(&m, &params, threads, chains);
        let (a, b) = (run_on(1, 4), run_on(2, 4));
        assert_eq!(a, b, "{sampler:?}");
        let single = sample_lattice(&m, &params, &mut Silent).unwrap();
        assert_eq!(
            a.chain_energies[0],
            single.recorded_energies(),
            "{sampler:?}"
        );
        assert!(a.run.proposals.unwrap().accepted > 1000, "{sampler:?}");
    }
}

/// Chain-parallel runs give the same result on 1 and 3 threads, and their marginals agree
/// with the exact ones. The run is long enough (5 x 20 000 sweeps: batches of 625 sweeps, far
/// beyond DMALA's autocorrelation time on this model, a few tens of sweeps) for the batch-means
/// standard errors to be honest; with 300 sweeps (batches of 9) they are underestimated
/// several-fold and deviations of 5-10 "standard errors" are common.
#[test]
fn gradient_runs_do_not_depend_on_the_thread_count() {
    let graph = frustrated_graph();
    let params = GradientParams {
        beta: 1.0,
        sampler: DMALA,
        sweeps: 20_000,
        burn_in: 10,
        seed: 9,
        start: Start::Random,
        chains: 5,
    };
    let rbm = RbmF32::from_rbm(&small_rbm(1.0));
    let run_on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let model = sample_model_gradient(&graph, &params, Some(&graph), &mut Silent).unwrap();
            let rbm_run = sample_rbm_gradient(&rbm, GWG, 6, 20, 9, &mut Silent).unwrap();
            (model, rbm_run)
        })
    };
    let (a, b) = (run_on(1), run_on(3));
    assert_eq!(a, b);
    assert!(a.0.counts.accepted > 0 && a.1.counts.accepted > 0);
    // Multi-chain marginals agree with the exact ones within 6 standard errors.
    let exact = boltzmann(&graph, 1.0);
    for i in 0..10 {
        let p: f64 = (0..1024)
            .filter(|x| x >> i & 1 == 1)
            .map(|x| exact[x])
            .sum();
        let se = a.0.run.marginal_stderr.as_ref().unwrap()[i];
        assert!((a.0.run.marginals[i] - p).abs() < 6.0 * se + 1e-3, "{i}");
    }
}

mod cli {
    use crate::common::ebm;
    use serde_json::Value;

    fn json_without_timing(out: &[u8]) -> Value {
        let mut v: Value = serde_json::from_slice(out).unwrap();
        for volatile in [
            "seconds",
            "flips_per_second",
            "threads",
            "sweeps_per_second",
        ] {
            v.as_object_mut().unwrap().remove(volatile);
        }
        v
    }

    fn write_uai(dir: &std::path::Path) -> std::path::PathBuf {
        // A frustrated triangle with fields: 3 variables, 3 pair factors, 1 unary.
        let path = dir.join("tri.uai");
        std::fs::write(
            &path,
            "MARKOV\n3\n2 2 2\n4\n2 0 1\n2 1 2\n2 0 2\n1 0\n\n4\n2.0 0.5 0.5 2.0\n\n4\n2.0 0.5 \
             0.5 2.0\n\n4\n0.5 2.0 2.0 0.5\n\n2\n1.0 3.0\n",
        )
        .unwrap();
        path
    }

    fn write_rbm(dir: &std::path::Path) -> std::path::PathBuf {
        use ebm::io::safetensors::{RbmFile, write_rbm};
        let rbm = super::small_rbm(1.0);
        let path = dir.join("small.safetensors");
        write_rbm(&path, &RbmFile::new(rbm)).unwrap();
        path
    }

    /// Every model kind samples with gwg, dula and dmala, reports acceptance and bits flipped
    /// per proposal, and gives the same JSON on 1 and 2 threads.
    #[test]
    fn gradient_samplers_run_on_every_model_kind_independently_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let uai = write_uai(dir.path());
        let rbm = write_rbm(dir.path());
        let lattice = [
            "sample",
            "ising",
            "--width",
            "5",
            "--height",
            "5",
            "--coupling",
            "0.2",
            "--field",
            "0.2",
            "--sweeps",
            "200",
        ];
        for sampler in ["gwg", "dula", "dmala"] {
            let uai_args = [
                "sample",
                "--model",
                uai.to_str().unwrap(),
                "--chains",
                "3",
                "--sweeps",
                "300",
            ];
            let rbm_args = [
                "sample",
                "--model",
                rbm.to_str().unwrap(),
                "--chains",
                "4",
                "--steps",
                "20",
            ];
            for args in [&lattice[..], &uai_args[..], &rbm_args[..]] {
                let runs: Vec<Value> = ["1", "2"]
                    .iter()
                    .map(|threads| {
                        let out = ebm()
                            .args(args)
                            .args(["--sampler", sampler, "--json", "--threads", threads])
                            .assert()
                            .success()
                            .get_output()
                            .stdout
                            .clone();
                        json_without_timing(&out)
                    })
                    .collect();
                assert_eq!(runs[0], runs[1], "{sampler} {args:?}");
                let v = &runs[0];
                assert_eq!(v["sampler"], sampler);
                let rate = v["acceptance_rate"].as_f64().unwrap();
                assert!(rate > 0.0 && rate <= 1.0, "{sampler} {args:?}: {rate}");
                assert!(v["mean_bits_flipped"].as_f64().unwrap() > 0.0);
                assert_eq!(v["step_size"].is_null(), sampler == "gwg");
            }
        }
    }

    /// `ebm sample ising --chains K` with gwg and dmala: the same JSON on 1 and 2 threads,
    /// `chains` reported, proposals of all chains counted, `--chains 1` the same run as no
    /// flag; --chains with a non-gradient sampler or 0 chains refused (exit 2).
    #[test]
    fn lattice_chains_are_thread_independent_and_refused_where_they_do_not_apply() {
        let lattice = [
            "sample",
            "ising",
            "--width",
            "5",
            "--height",
            "5",
            "--coupling",
            "0.2",
            "--field",
            "0.2",
            "--sweeps",
            "300",
            "--json",
        ];
        for sampler in ["gwg", "dmala"] {
            let run = |extra: &[&str], threads: &str| {
                let out = ebm()
                    .args(lattice)
                    .args(["--sampler", sampler, "--threads", threads])
                    .args(extra)
                    .assert()
                    .success()
                    .get_output()
                    .stdout
                    .clone();
                json_without_timing(&out)
            };
            let (a, b) = (run(&["--chains", "4"], "1"), run(&["--chains", "4"], "2"));
            assert_eq!(a, b, "{sampler}");
            assert_eq!(a["chains"], 4);
            let per_sweep = if sampler == "gwg" { 25 } else { 1 };
            assert_eq!(a["proposals"], 4 * 400 * per_sweep);
            assert!(a["energy_per_spin_stderr"].as_f64().unwrap() > 0.0);
            assert_eq!(run(&["--chains", "1"], "2"), run(&[], "1"), "{sampler}");
        }
        for (extra, what) in [
            (
                &["--sampler", "metropolis", "--chains", "2"][..],
                "--chains",
            ),
            (&["--sampler", "gwg", "--chains", "0"][..], "--chains"),
        ] {
            ebm()
                .args(["sample", "ising", "--width", "4", "--height", "4"])
                .args(extra)
                .assert()
                .code(2)
                .stderr(predicates::str::contains(what));
        }
    }

    /// Flags that do not apply are refused by name (exit 2).
    #[test]
    fn inapplicable_gradient_flags_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uai = write_uai(dir.path());
        let rbm = write_rbm(dir.path());
        let (uai, rbm) = (uai.to_str().unwrap(), rbm.to_str().unwrap());
        let ising = ["sample", "ising", "--width", "4", "--height", "4"];
        let cases: [(&[&str], &str); 6] = [
            (&["--sampler", "gwg", "--step-size", "0.3"], "--step-size"),
            (&["--sampler", "gibbs", "--step-size", "0.3"], "--step-size"),
            (&["--step-size", "0.3"], "--step-size"),
            (&["--sampler", "dmala", "--step-size", "0"], "--step-size"),
            (&["--sampler", "dula", "--step-size", "nan"], "--step-size"),
            (&["--sampler", "dmala", "--step-size", "-1"], "--step-size"),
        ];
        for (extra, flag) in cases {
            ebm()
                .args(ising)
                .args(extra)
                .assert()
                .code(2)
                .stderr(predicates::str::contains(flag));
        }
        ebm()
            .args([
                "sample",
                "--model",
                uai,
                "--sampler",
                "gibbs",
                "--chains",
                "2",
            ])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("--chains"));
        ebm()
            .args(["sample", "--model", rbm, "--sampler", "metropolis"])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("--sampler"));
        ebm()
            .args([
                "sample",
                "--model",
                rbm,
                "--sampler",
                "gwg",
                "--step-size",
                "0.1",
            ])
            .assert()
            .code(2)
            .stderr(predicates::str::contains("--step-size"));
    }
}

/// `train-rbm --negative-sampler gwg` (PCD whose chains move by Gibbs-with-Gradients) learns:
/// after 5 epochs the exact train log-likelihood of a 64 x 16 RBM on the digits is well above
/// that of the untrained start (learning rate 1e-9: about -25.2 nats) and within 1 nat of block
/// Gibbs PCD's (both about -21.7 nats; the gap between runs of different seeds is a few
/// tenths). The sampler is recorded in the report.
#[test]
fn pcd_with_gwg_negative_samples_learns_like_block_gibbs() {
    use crate::common::{ebm, project_root};
    let dir = tempfile::tempdir().unwrap();
    let data = project_root().join("data/digits_train.txt");
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = ebm()
            .arg("train-rbm")
            .arg("--data")
            .arg(&data)
            .args(["--hidden", "16", "--persistent", "--cd-k", "8", "--json"])
            .arg("--output")
            .arg(dir.path().join("m.safetensors"))
            .args(extra)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let ll = |v: &serde_json::Value| v["train_log_likelihood"].as_f64().unwrap();
    let start = run(&["--epochs", "1", "--learning-rate", "1e-9"]);
    let gibbs = run(&["--epochs", "5"]);
    let gwg = run(&["--epochs", "5", "--negative-sampler", "gwg"]);
    assert_eq!(gibbs["negative_sampler"], "gibbs");
    assert_eq!(gwg["negative_sampler"], "gwg");
    assert!(
        ll(&gwg) > ll(&start) + 2.0,
        "{} vs start {}",
        ll(&gwg),
        ll(&start)
    );
    assert!(
        (ll(&gwg) - ll(&gibbs)).abs() < 1.0,
        "{} vs {}",
        ll(&gwg),
        ll(&gibbs)
    );
    // Not for CD, and --step-size only with dmala.
    ebm()
        .arg("train-rbm")
        .arg("--data")
        .arg(&data)
        .args(["--negative-sampler", "gwg", "--epochs", "1"])
        .arg("--output")
        .arg(dir.path().join("x.safetensors"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("negative-sampler"));
    ebm()
        .arg("train-rbm")
        .arg("--data")
        .arg(&data)
        .args([
            "--persistent",
            "--negative-sampler",
            "gwg",
            "--step-size",
            "0.1",
        ])
        .arg("--output")
        .arg(dir.path().join("x.safetensors"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--step-size"));
}
