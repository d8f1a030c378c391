//! Exact partition functions: every method against closed forms and against each other.
//!
//! Oracles that do not come from our own code: independent spins (ln Z = sum ln 2 cosh beta h_i),
//! the periodic 1-D chain (Z = l+^N + l-^N), Kaufman's finite torus (checked itself against
//! enumeration), Onsager's infinite-lattice free energy (a numerical double integral), the value
//! of ln Z(4x4 torus, beta = 0.4406868) quoted in issue 3, and the UAI 2014 `.PR` answers.

use ebm::infer::eliminate::{self, EliminateOptions, Heuristic};
use ebm::infer::exact::{self, EnumerateOptions, Shard};
use ebm::infer::kaufman::kaufman_log_partition;
use ebm::infer::partition::{self, Budget, Method, Model, PartitionOptions};
use ebm::infer::rbm::rbm_log_partition;
use ebm::infer::transfer::{StripLattice, transfer_log_partition, transfer_log_partition_strip};
use ebm::model::{Boundary, Factor, FactorGraph, IsingLattice, PairwiseMrf, Rbm};
use ebm::progress::Silent;
use rand::RngExt;

use crate::common::tol::{EXACT_REL, PR_DIGITS_ABS};
use crate::common::{ebm, uai_reference_dir};

const BETAS: [f64; 3] = [0.2, 0.4406868, 0.6];

fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(a.is_finite() && b.is_finite(), "{what}: {a} vs {b}");
    let err = (a - b).abs() / b.abs().max(1.0);
    assert!(
        err <= rel,
        "{what}: {a} vs {b} (relative error {err:.3e} > {rel:.0e})"
    );
}

fn random_pairwise(n: usize, density: f64, scale: f64, seed: u64) -> PairwiseMrf {
    let mut rng = ebm::rng::from_seed(seed);
    let fields = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if rng.random_bool(density) {
                edges.push((i, j, rng.random_range(-scale..scale)));
            }
        }
    }
    PairwiseMrf::new(fields, &edges).unwrap()
}

#[test]
fn independent_spins_match_the_closed_form() {
    let h = [0.3, -1.7, 0.0, 2.5, -0.01, 4.0];
    let model = PairwiseMrf::new(h.to_vec(), &[]).unwrap();
    for beta in [0.5, 1.0, 50.0] {
        let closed: f64 = h
            .iter()
            .map(|&hi: &f64| {
                let x = (beta * hi).abs();
                x + (-2.0 * x).exp().ln_1p() // ln 2cosh x, overflow-free
            })
            .sum();
        let en = exact::enumerate_log_partition(&model, beta).unwrap();
        let el = eliminate::eliminate_pairwise(&model, beta, &EliminateOptions::default())
            .unwrap()
            .log_z;
        assert_close(en, closed, EXACT_REL, "enumerate, independent spins");
        assert_close(el, closed, EXACT_REL, "eliminate, independent spins");
        let m = exact::enumerate_marginals(&model, beta).unwrap();
        for (p, &hi) in m.iter().zip(&h) {
            let want = 1.0 / (1.0 + (-2.0 * beta * hi).exp());
            assert!((p - want).abs() < 1e-12, "marginal {p} vs {want}");
        }
    }
}

#[test]
fn periodic_chain_matches_the_transfer_eigenvalues() {
    for &(n, j, h, beta) in &[
        (2usize, 1.0, 0.3, 0.7),
        (3, -0.8, 0.5, 1.1),
        (10, 1.0, 0.2, 0.4406868),
        (17, -1.3, -0.4, 0.9),
    ] {
        let (k, hb): (f64, f64) = (beta * j, beta * h);
        let root = ((2.0 * k).exp() * hb.sinh().powi(2) + (-2.0 * k).exp()).sqrt();
        let lp = k.exp() * hb.cosh() + root;
        let lm = k.exp() * hb.cosh() - root;
        let closed = (lp.powi(n as i32) + lm.powi(n as i32)).ln();
        let ring = IsingLattice::new(n, 1, Boundary::Periodic, j, h).unwrap();
        let what = format!("ring N={n} J={j} h={h} beta={beta}");
        assert_close(
            exact::log_partition_lattice(&ring, beta).unwrap(),
            closed,
            EXACT_REL,
            &what,
        );
        assert_close(
            exact::enumerate_log_partition(&ring, beta).unwrap(),
            closed,
            EXACT_REL,
            &what,
        );
        assert_close(
            transfer_log_partition(&ring, beta).unwrap(),
            closed,
            EXACT_REL,
            &what,
        );
        let el =
            eliminate::eliminate_pairwise(&ring.to_pairwise().unwrap(), beta, &Default::default());
        assert_close(el.unwrap().log_z, closed, EXACT_REL, &what);
    }
}

#[test]
fn kaufman_reproduces_the_quoted_critical_value() {
    // ln Z(4x4 torus, J = 1, beta = 0.4406868) = 15.5219156213353822658... (issue 3).
    let want = 15.521_915_621_335_382; // 15.5219156213353822658... rounded to f64
    assert!((kaufman_log_partition(4, 4, 1.0, 0.4406868).unwrap() - want).abs() < 1e-12);
    let lattice = IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.0).unwrap();
    assert!((exact::log_partition_lattice(&lattice, 0.4406868).unwrap() - want).abs() < 1e-12);
}

#[test]
fn kaufman_matches_enumeration_on_small_tori() {
    for (w, h) in [(4, 4), (5, 5), (3, 4), (4, 3), (2, 2), (2, 5), (3, 6)] {
        let lattice = IsingLattice::new(w, h, Boundary::Periodic, 1.0, 0.0).unwrap();
        for beta in BETAS {
            let k = kaufman_log_partition(w, h, 1.0, beta).unwrap();
            let e = exact::log_partition_lattice(&lattice, beta).unwrap();
            assert_close(k, e, EXACT_REL, &format!("kaufman {w}x{h} beta={beta}"));
        }
    }
}

#[test]
fn kaufman_matches_transfer_on_larger_tori() {
    for (w, h) in [(8, 8), (10, 10), (6, 9), (8, 11)] {
        let lattice = IsingLattice::new(w, h, Boundary::Periodic, 1.0, 0.0).unwrap();
        let betas: &[f64] = if w * h >= 88 {
            &[0.4406868, 0.6]
        } else {
            &BETAS
        };
        for &beta in betas {
            let k = kaufman_log_partition(w, h, 1.0, beta).unwrap();
            let t = transfer_log_partition(&lattice, beta).unwrap();
            assert_close(
                k,
                t,
                EXACT_REL,
                &format!("kaufman vs transfer {w}x{h} beta={beta}"),
            );
        }
    }
    // 10x10 at the high-temperature point too (g_0 < 0 there, the sign-sensitive case).
    let lattice = IsingLattice::new(10, 10, Boundary::Periodic, 1.0, 0.0).unwrap();
    let t = transfer_log_partition(&lattice, 0.2).unwrap();
    assert_close(
        kaufman_log_partition(10, 10, 1.0, 0.2).unwrap(),
        t,
        EXACT_REL,
        "10x10 b=0.2",
    );
    // Antiferromagnet with even sides: Z(-J) = Z(J), checked against transfer.
    let afm = IsingLattice::new(6, 4, Boundary::Periodic, -1.0, 0.0).unwrap();
    let t = transfer_log_partition(&afm, 0.6).unwrap();
    assert_close(
        kaufman_log_partition(6, 4, -1.0, 0.6).unwrap(),
        t,
        EXACT_REL,
        "afm 6x4",
    );
    assert!(kaufman_log_partition(5, 4, -1.0, 0.6).is_err());
}

/// Onsager: ln Z / N -> ln 2 + 1/(2 pi^2) int_0^pi int_0^pi ln(cosh^2 2K - sinh 2K (cos a + cos b)).
fn onsager_free_energy(k: f64, points: usize) -> f64 {
    // The integrand is smooth and periodic away from K_c: the midpoint rule converges
    // exponentially.
    let (c, s) = ((2.0 * k).cosh(), (2.0 * k).sinh());
    let step = std::f64::consts::PI / points as f64;
    let mut sum = 0.0;
    for a in 0..points {
        let ca = ((a as f64 + 0.5) * step).cos();
        for b in 0..points {
            let cb = ((b as f64 + 0.5) * step).cos();
            sum += (c * c - s * (ca + cb)).ln();
        }
    }
    std::f64::consts::LN_2 + sum * step * step / (2.0 * std::f64::consts::PI.powi(2))
}

#[test]
fn kaufman_on_a_huge_torus_approaches_onsager() {
    // Away from the critical point finite-size corrections decay like exp(-L / xi), except that
    // below T_c the torus holds both ordered phases: ln Z = N f + ln 2 + O(exp(-L / xi)).
    for beta in [0.3, 0.6] {
        let l = 4096;
        let two_phases = if beta > 0.4406868 {
            std::f64::consts::LN_2
        } else {
            0.0
        };
        let per_site =
            (kaufman_log_partition(l, l, 1.0, beta).unwrap() - two_phases) / (l * l) as f64;
        let onsager = onsager_free_energy(beta, 400);
        assert!(
            (per_site - onsager).abs() < 1e-10,
            "beta {beta}: {per_site} vs {onsager}"
        );
    }
}

#[test]
fn transfer_matches_enumeration_on_open_and_cylinder_lattices_with_fields() {
    let mut rng = ebm::rng::from_seed(3);
    for (w, h) in [(4, 5), (5, 4), (3, 7), (6, 3)] {
        let fields: Vec<f64> = (0..w * h).map(|_| rng.random_range(-1.0..1.0)).collect();
        for periodic_width in [false, true] {
            let strip = StripLattice {
                width: w,
                height: h,
                periodic_width,
                periodic_height: false,
                coupling: -0.7,
                fields: fields.clone(),
            };
            // The same lattice as a pairwise model, bonds written out here independently.
            let mut bonds = Vec::new();
            for r in 0..h {
                for c in 0..w {
                    let i = r * w + c;
                    if c + 1 < w {
                        bonds.push((i, i + 1, -0.7));
                    } else if periodic_width && w > 1 {
                        bonds.push((i, r * w, -0.7));
                    }
                    if r + 1 < h {
                        bonds.push((i, i + w, -0.7));
                    }
                }
            }
            let pw = PairwiseMrf::new(fields.clone(), &bonds).unwrap();
            for beta in [0.3, 1.0] {
                let t = transfer_log_partition_strip(&strip, beta).unwrap();
                let e = exact::enumerate_log_partition(&pw, beta).unwrap();
                let what = format!("{w}x{h} periodic_width={periodic_width} beta={beta}");
                assert_close(t, e, EXACT_REL, &what);
            }
        }
    }
}

#[test]
fn transfer_orientation_counts_the_boundary() {
    let cylinder = |w: usize, h: usize| StripLattice {
        width: w,
        height: h,
        periodic_width: true,
        periodic_height: false,
        coupling: 0.5,
        fields: vec![0.1; w * h],
    };
    // 16 wide, periodic across the width, 12 high: sweeping the rows costs 12 16 2^16; the
    // transpose would be a 12-wide torus, 2^12 times 16 12 2^12 (over 60 times more).
    let s = cylinder(16, 12).best_sweep();
    assert!(!s.transpose && !s.torus && s.width == 16, "{s:?}");
    assert_eq!(s.cost, 12.0 * 16.0 * 65536.0);
    assert!(s.cost < cylinder(16, 12).sweep_of(true).cost);
    // 24 wide (over the open-strip limit 22), 3 high: only the transposed torus sweep fits.
    let s = cylinder(24, 3).best_sweep();
    assert!(s.transpose && s.torus && s.width == 3 && s.fits(), "{s:?}");
    // An open lattice still sweeps its shorter side.
    let mut open = cylinder(9, 4);
    open.periodic_width = false;
    assert!(open.best_sweep().transpose);
    // The answer does not depend on the orientation (5x3 cylinder: the rows are now swept;
    // the old choice, the 3-wide transposed torus, is checked by enumeration in
    // transfer_matches_enumeration_on_open_and_cylinder_lattices_with_fields).
    assert!(!cylinder(5, 3).best_sweep().transpose);
}

#[test]
fn all_methods_agree_on_random_models_with_fields_and_mixed_couplings() {
    for seed in 0..6u64 {
        let n = 10 + seed as usize;
        let model = random_pairwise(n, 0.35, 1.5, seed);
        let beta = 0.8;
        let reference = exact::enumerate_log_partition(&model, beta).unwrap();
        let opts = EnumerateOptions::default();
        let graph = FactorGraph::from_pairwise(&model, beta).unwrap();
        let mut answers = vec![
            (
                "pairwise enumeration",
                exact::enumerate_pairwise(&model, beta, &opts, &mut Silent)
                    .unwrap()
                    .log_sum,
            ),
            (
                "factor-graph enumeration",
                exact::log_partition_factor_graph(&graph).unwrap(),
            ),
            (
                "generic enumeration of the factor graph",
                exact::enumerate_log_partition(&graph, 1.0).unwrap(),
            ),
            (
                "factor-graph elimination",
                eliminate::log_partition_eliminate(&graph).unwrap(),
            ),
        ];
        for h in [Heuristic::MinFill, Heuristic::MinDegree] {
            let o = EliminateOptions {
                heuristic: h,
                ..Default::default()
            };
            answers.push((
                "pairwise elimination",
                eliminate::eliminate_pairwise(&model, beta, &o)
                    .unwrap()
                    .log_z,
            ));
        }
        for (name, value) in answers {
            assert_close(value, reference, EXACT_REL, &format!("seed {seed}: {name}"));
        }
        // Marginals: enumeration against elimination.
        let me = exact::enumerate_marginals(&model, beta).unwrap();
        let ml = eliminate::marginals_pairwise(&model, beta, &Default::default()).unwrap();
        for (a, b) in me.iter().zip(&ml) {
            assert!((a - b).abs() < 1e-10, "seed {seed}: marginal {a} vs {b}");
        }
    }
    // Lattices with per-site fields: enumeration, histogram-free walk, transfer, elimination.
    let mut rng = ebm::rng::from_seed(11);
    for (w, h, boundary) in [
        (4, 4, Boundary::Periodic),
        (3, 5, Boundary::Open),
        (2, 6, Boundary::Periodic),
    ] {
        let fields: Vec<f64> = (0..w * h).map(|_| rng.random_range(-0.8..0.8)).collect();
        let l = IsingLattice::new(w, h, boundary, -1.1, 0.0)
            .unwrap()
            .with_site_field(fields)
            .unwrap();
        for beta in [0.4, 1.3] {
            let reference = exact::enumerate_log_partition(&l, beta).unwrap();
            let model = Model::Lattice { lattice: &l, beta };
            for m in [
                Method::Enumerate,
                Method::Eliminate,
                Method::Transfer,
                Method::Auto,
            ] {
                let got = partition::exact_log_partition(
                    &model,
                    m,
                    &PartitionOptions::default(),
                    &mut Silent,
                )
                .unwrap();
                assert_close(got.log_z, reference, EXACT_REL, &format!("{w}x{h} {m:?}"));
            }
        }
    }
}

#[test]
fn higher_arity_factors_and_zeros_agree_between_enumeration_and_elimination() {
    let mut rng = ebm::rng::from_seed(5);
    for trial in 0..4 {
        let n = 12;
        let mut factors = Vec::new();
        for _ in 0..14 {
            let arity = rng.random_range(1..=4usize);
            let mut scope: Vec<usize> = Vec::new();
            while scope.len() < arity {
                let v = rng.random_range(0..n);
                if !scope.contains(&v) {
                    scope.push(v);
                }
            }
            let mut table: Vec<f64> = (0..1 << arity)
                .map(|_| {
                    if rng.random_bool(0.2) {
                        0.0
                    } else {
                        rng.random_range(0.01..5.0)
                    }
                })
                .collect();
            table[0] = table[0].max(0.5); // never all zero
            factors.push(Factor::new(scope, table).unwrap());
        }
        let g = FactorGraph::new(n, factors).unwrap();
        let en = exact::log_partition_factor_graph(&g).unwrap();
        let el = eliminate::log_partition_eliminate(&g).unwrap();
        assert_close(el, en, EXACT_REL, &format!("trial {trial}"));
        // The generic walk through EnergyModel::flip_delta (infinite deltas on zero entries).
        let generic = exact::enumerate_log_partition(&g, 1.0).unwrap();
        assert_close(generic, en, EXACT_REL, &format!("trial {trial}: generic"));
        let me = exact::marginals_factor_graph(&g).unwrap();
        let ml = eliminate::marginals_factor_graph(&g, &Default::default()).unwrap();
        let mg = exact::enumerate_marginals(&g, 1.0).unwrap();
        for ((a, b), c) in me.iter().zip(&ml).zip(&mg) {
            assert!(
                a.is_finite() && (a - b).abs() < 1e-10 && (a - c).abs() < 1e-10,
                "trial {trial}: {a} vs {b} vs {c}"
            );
        }
        // Brute-force MAP against a direct scan of the log-weights of all states.
        let best = exact::brute_force_map(&g).unwrap();
        let direct = (0..1u32 << n)
            .map(|x| {
                let bits: Vec<u8> = (0..n).map(|i| (x >> i & 1) as u8).collect();
                g.log_weight_bits(&bits)
            })
            .fold(f64::NEG_INFINITY, f64::max);
        assert!(
            (-best.energy - direct).abs() < 1e-12 * direct.abs().max(1.0),
            "trial {trial}: MAP log-weight {} vs {direct}",
            -best.energy
        );
    }
}

#[test]
fn large_beta_does_not_overflow() {
    let beta = 50.0;
    let lattice = IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.0).unwrap();
    // Ground states: all up and all down, 32 satisfied bonds; the first excitation costs 8 J:
    // ln Z = 32 beta + ln 2 + ln(1 + 16 e^{-8 beta} + ...), exact to far below 1e-9 here.
    let want = 32.0 * beta + std::f64::consts::LN_2;
    let model = Model::Lattice {
        lattice: &lattice,
        beta,
    };
    for m in [
        Method::Enumerate,
        Method::Eliminate,
        Method::Transfer,
        Method::Kaufman,
    ] {
        let got =
            partition::exact_log_partition(&model, m, &PartitionOptions::default(), &mut Silent)
                .unwrap();
        assert_close(got.log_z, want, 1e-13, &format!("beta 50, {m:?}"));
    }
    assert_close(
        exact::enumerate_log_partition(&lattice, beta).unwrap(),
        want,
        1e-13,
        "generic walk",
    );
    // An RBM with huge weights.
    let rbm = Rbm::new(
        3,
        2,
        vec![100.0, -100.0, 50.0, 80.0, -90.0, 40.0],
        vec![0.0; 3],
        vec![0.0; 2],
    )
    .unwrap();
    assert!(rbm_log_partition(&rbm).unwrap().is_finite());
}

#[test]
fn rbm_method_agrees_with_enumeration_over_both_layers() {
    let mut rng = ebm::rng::from_seed(9);
    let (nv, nh) = (6, 5);
    let w: Vec<f64> = (0..nv * nh).map(|_| rng.random_range(-2.0..2.0)).collect();
    let b: Vec<f64> = (0..nv).map(|_| rng.random_range(-1.0..1.0)).collect();
    let c: Vec<f64> = (0..nh).map(|_| rng.random_range(-1.0..1.0)).collect();
    let rbm = Rbm::new(nv, nh, w, b, c).unwrap();
    // The RBM as a pairwise factor graph over 11 bits: phi = exp(W_ij v_i h_j), exp(b v), exp(c h).
    let mut factors = Vec::new();
    for i in 0..nv {
        factors.push(Factor::new(vec![i], vec![1.0, rbm.visible_bias()[i].exp()]).unwrap());
        for j in 0..nh {
            let wij = rbm.weight(i, j);
            factors.push(Factor::new(vec![i, nv + j], vec![1.0, 1.0, 1.0, wij.exp()]).unwrap());
        }
    }
    for j in 0..nh {
        factors.push(Factor::new(vec![nv + j], vec![1.0, rbm.hidden_bias()[j].exp()]).unwrap());
    }
    let joint = FactorGraph::new(nv + nh, factors).unwrap();
    let brute = exact::log_partition_factor_graph(&joint).unwrap();
    let fast = rbm_log_partition(&rbm).unwrap();
    assert_close(fast, brute, EXACT_REL, "rbm vs enumeration of both layers");
    let swapped = rbm_log_partition(&rbm.transposed()).unwrap();
    assert_close(swapped, fast, 1e-13, "either layer enumerated");
}

#[test]
fn enumeration_is_bit_identical_for_any_thread_count() {
    let model = random_pairwise(23, 0.3, 1.0, 77);
    let lattice = IsingLattice::new(5, 5, Boundary::Periodic, 0.9, 0.1).unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let opts = EnumerateOptions {
                    marginals: true,
                    ..Default::default()
                };
                let e = exact::enumerate_pairwise(&model, 0.7, &opts, &mut Silent).unwrap();
                let l = exact::log_partition_lattice(&lattice, 0.5).unwrap();
                (
                    e.log_sum.to_bits(),
                    e.marginals
                        .unwrap()
                        .iter()
                        .map(|m| m.to_bits())
                        .collect::<Vec<_>>(),
                    l.to_bits(),
                )
            })
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one, run(2));
}

#[test]
fn merged_shards_equal_the_single_run() {
    let model = random_pairwise(23, 0.25, 1.0, 4);
    let single = exact::enumerate_pairwise(&model, 1.0, &EnumerateOptions::default(), &mut Silent)
        .unwrap()
        .log_sum;
    for count in [2u64, 3, 7] {
        let parts: Vec<f64> = (0..count)
            .map(|k| {
                let opts = EnumerateOptions {
                    marginals: false,
                    shard: Shard::new(k, count).unwrap(),
                };
                exact::enumerate_pairwise(&model, 1.0, &opts, &mut Silent)
                    .unwrap()
                    .log_sum
            })
            .collect();
        let merged = exact::merge_shards(&parts);
        assert!(
            (merged - single).abs() <= 1e-12 * single.abs(),
            "{count} shards: {merged} vs {single}"
        );
    }
    // The lattice histogram path shards too.
    let lattice = IsingLattice::new(5, 5, Boundary::Periodic, 1.0, 0.2).unwrap();
    let single = exact::log_partition_lattice(&lattice, 0.5).unwrap();
    let parts: Vec<f64> = (0..5)
        .map(|k| {
            let opts = EnumerateOptions {
                marginals: false,
                shard: Shard::new(k, 5).unwrap(),
            };
            exact::enumerate_lattice(&lattice, 0.5, &opts, &mut Silent)
                .unwrap()
                .log_sum
        })
        .collect();
    let merged = exact::merge_shards(&parts);
    assert!((merged - single).abs() <= 1e-12 * single.abs());
}

#[test]
fn auto_avoids_kaufman_for_negative_beta_on_an_odd_torus() {
    // beta J < 0 with an odd side is frustrated: Kaufman's formula does not apply, even though
    // J > 0. auto must pick another method and agree with enumeration (2^25 states).
    let torus = IsingLattice::new(5, 5, Boundary::Periodic, 1.0, 0.0).unwrap();
    let model = Model::Lattice {
        lattice: &torus,
        beta: -0.5,
    };
    let got = partition::exact_log_partition(
        &model,
        Method::Auto,
        &PartitionOptions::default(),
        &mut Silent,
    )
    .unwrap();
    assert_ne!(got.method, Method::Kaufman);
    let want = exact::log_partition_lattice(&torus, -0.5).unwrap();
    assert_close(got.log_z, want, EXACT_REL, "5x5 torus at beta = -0.5");
    ebm()
        .args(["partition", "ising", "--width", "5", "--height", "5"])
        .args(["--beta", "-0.5"])
        .assert()
        .success();
}

#[test]
fn auto_estimates_lattice_elimination_without_planning() {
    // A 40x5000 torus: Kaufman answers at once; elimination is estimated analytically (width
    // twice the shorter side on a torus) and refused, with no min-fill planning over 2e5 sites
    // (which took over a minute before choosing).
    let torus = IsingLattice::new(40, 5000, Boundary::Periodic, 1.0, 0.0).unwrap();
    let model = Model::Lattice {
        lattice: &torus,
        beta: 0.3,
    };
    let opts = PartitionOptions::default();
    let err = partition::estimate(&model, Method::Eliminate, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("induced width about 80"), "{err}");
    assert_eq!(
        partition::choose(&model, &opts).unwrap().method,
        Method::Kaufman
    );
    // A 12x2000 open lattice with a field: elimination is estimated (width 12, no plan) and
    // transfer is chosen as the cheaper.
    let strip = IsingLattice::new(12, 2000, Boundary::Open, 1.0, 0.1).unwrap();
    let model = Model::Lattice {
        lattice: &strip,
        beta: 0.3,
    };
    let e = partition::estimate(&model, Method::Eliminate, &opts).unwrap();
    assert!(e.plan.is_none() && e.detail.contains("induced width about 12"));
    assert_eq!(
        partition::choose(&model, &opts).unwrap().method,
        Method::Transfer
    );
    // Non-lattice models are planned once, in the estimate, and the run reuses that plan.
    let model_pw = random_pairwise(12, 0.3, 1.0, 9);
    let graph = FactorGraph::from_pairwise(&model_pw, 0.8).unwrap();
    let e = partition::estimate(&Model::Factors(&graph), Method::Eliminate, &opts).unwrap();
    let plan = e.plan.expect("a plan for a factor graph");
    let run =
        eliminate::eliminate_factor_graph_with_plan(&graph, plan.clone(), &Default::default())
            .unwrap();
    // The run re-derives the width and cost of the given order on this graph: the same figures.
    assert_eq!(
        (
            &run.plan.order,
            run.plan.induced_width,
            run.plan.max_table_entries,
            run.plan.cost
        ),
        (
            &plan.order,
            plan.induced_width,
            plan.max_table_entries,
            plan.cost
        )
    );
    let want = exact::log_partition_factor_graph(&graph).unwrap();
    assert_close(run.log_z, want, EXACT_REL, "elimination with a given plan");
    // A plan of another model is refused, not run.
    let mut short = plan;
    short.order.pop();
    assert!(
        eliminate::eliminate_factor_graph_with_plan(&graph, short, &Default::default()).is_err()
    );
}

#[test]
fn shards_are_limited_per_shard_not_in_total() {
    // At most 2^40 states per part and 63 variables in all: the documented 7x6 (42-variable)
    // GNU-parallel example in 64 shards is accepted, and a whole 41-variable run is not.
    let ok = |n: usize, count: u64| {
        exact::check_enumeration_size(n, Shard::new(count - 1, count).unwrap()).is_ok()
    };
    assert!(ok(40, 1) && !ok(41, 1));
    assert!(ok(41, 2) && ok(41, 3) && ok(42, 4) && !ok(42, 3));
    assert!(ok(42, 64) && ok(46, 64) && !ok(47, 64));
    assert!(ok(63, 1 << 23) && !ok(64, 1 << 24) && !ok(64, u64::MAX));
    let err = exact::check_enumeration_size(42, Shard::WHOLE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("N >= 4"), "{err}");
    // The estimate of the documented example applies (the run itself takes 2^36 states per part).
    let lattice = IsingLattice::new(7, 6, Boundary::Periodic, 1.0, 0.0).unwrap();
    let model = Model::Lattice {
        lattice: &lattice,
        beta: 0.4,
    };
    let opts = PartitionOptions {
        shard: Shard::new(5, 64).unwrap(),
        ..Default::default()
    };
    let e = partition::estimate(&model, Method::Enumerate, &opts).unwrap();
    assert_eq!(e.method, Method::Enumerate);
    assert!(partition::estimate(&model, Method::Enumerate, &PartitionOptions::default()).is_err());
    // A 41-variable shard small enough to run (2^41 / 2^24 = 2^17 states) by the lattice
    // histogram and by the general pairwise walk: the two agree.
    let chain = IsingLattice::new(41, 1, Boundary::Open, 1.0, 0.3).unwrap();
    let opts = EnumerateOptions {
        marginals: false,
        shard: Shard::new(3, 1 << 24).unwrap(),
    };
    let part = exact::enumerate_lattice(&chain, 0.5, &opts, &mut Silent).unwrap();
    let pw = chain.to_pairwise().unwrap();
    let walk = exact::enumerate_pairwise(&pw, 0.5, &opts, &mut Silent).unwrap();
    assert_eq!((part.states, part.range), (1 << 17, walk.range));
    assert_close(part.log_sum, walk.log_sum, EXACT_REL, "41-variable shard");
}

#[test]
fn auto_refuses_hopeless_models_naming_the_cost() {
    let lattice = IsingLattice::new(64, 64, Boundary::Open, 1.0, 0.1).unwrap();
    let model = Model::Lattice {
        lattice: &lattice,
        beta: 0.5,
    };
    let err = partition::exact_log_partition(
        &model,
        Method::Auto,
        &PartitionOptions::default(),
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("2^4096 states") && err.contains("induced width"),
        "{err}"
    );
    // With a tiny budget even a small model is refused.
    let small = IsingLattice::new(5, 5, Boundary::Open, 1.0, 0.1).unwrap();
    let opts = PartitionOptions {
        budget: Budget {
            max_seconds: 1e-12,
            max_bytes: 1.0,
        },
        ..Default::default()
    };
    let model = Model::Lattice {
        lattice: &small,
        beta: 0.5,
    };
    assert!(partition::exact_log_partition(&model, Method::Auto, &opts, &mut Silent).is_err());
    // Zero-field torus: auto takes the closed form.
    let torus = IsingLattice::new(64, 64, Boundary::Periodic, 1.0, 0.0).unwrap();
    let model = Model::Lattice {
        lattice: &torus,
        beta: 0.5,
    };
    let got = partition::exact_log_partition(
        &model,
        Method::Auto,
        &PartitionOptions::default(),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(got.method, Method::Kaufman);
}

#[test]
fn uai_benchmarks_match_their_pr_answers() {
    let dir = uai_reference_dir();
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "uai"))
        .collect();
    names.sort();
    for path in names {
        let graph = ebm::io::uai::read_uai(&path).unwrap();
        let pr = ebm::io::uai::read_pr(&path.with_extension("uai.PR")).unwrap();
        let e = eliminate::eliminate_factor_graph(&graph, &EliminateOptions::default()).unwrap();
        let log10 = e.log_z / std::f64::consts::LN_10;
        // The .PR files print log10 Z to 6 significant digits (3 decimals for the grids, whose
        // log10 Z exceeds 100): one tolerance, PR_DIGITS_ABS = 1e-3, for all seven.
        assert!(
            (log10 - pr).abs() <= PR_DIGITS_ABS,
            "{}: log10 Z {log10} vs .PR {pr}",
            path.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 7, "expected the seven UAI 2014 models");
}

#[test]
fn cli_partition_prints_the_contract_keys() {
    let out = ebm()
        .args([
            "partition",
            "ising",
            "--width",
            "4",
            "--height",
            "4",
            "--beta",
            "0.4406868",
            "--method",
            "enumerate",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for key in ["log_z", "log10_z", "method", "variables", "seconds"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert!((v["log_z"].as_f64().unwrap() - 15.521_915_621_335_382).abs() < 1e-12);
    assert_eq!(v["method"], "enumerate");
    assert_eq!(v["variables"], 16);
    let l10 = v["log10_z"].as_f64().unwrap() * std::f64::consts::LN_10;
    assert!((l10 - v["log_z"].as_f64().unwrap()).abs() < 1e-12);
}

#[test]
fn cli_partition_refuses_bad_requests() {
    use predicates::prelude::*;
    ebm()
        .args(["partition"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--model"));
    ebm()
        .args([
            "partition",
            "ising",
            "--width",
            "5",
            "--height",
            "5",
            "--boundary",
            "open",
            "--method",
            "kaufman",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("kaufman"));
    ebm()
        .args([
            "partition",
            "ising",
            "--width",
            "4",
            "--height",
            "4",
            "--shard",
            "4/4",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--shard"));
    ebm()
        .args([
            "partition",
            "ising",
            "--width",
            "80",
            "--height",
            "80",
            "--field",
            "0.1",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("2^6400 states"));
}

#[test]
fn cli_partition_refuses_overflowing_parameters_and_sizes() {
    use predicates::prelude::*;
    // Finite flags whose log-weights overflow: exit 2 naming the flag and value, no NaN/null.
    for (flag, value) in [
        ("--beta", "1e308"),
        ("--field", "1e308"),
        ("--coupling", "1e308"),
        ("--beta", "1e306"),
    ] {
        ebm()
            .args(["partition", "ising", "--width", "4", "--height", "4"])
            .args([flag, value, "--json"])
            .assert()
            .code(2)
            .stdout(predicate::str::contains("\"exit_code\":2"))
            .stdout(predicate::str::contains("null").not())
            .stderr(predicate::str::contains(format!("{flag} {value}")))
            .stderr(predicate::str::contains("overflow"));
    }
    // The same through the library, for every method.
    let lattice = IsingLattice::new(4, 4, Boundary::Periodic, 1.0, 0.0).unwrap();
    let model = Model::Lattice {
        lattice: &lattice,
        beta: 1e306,
    };
    for m in [Method::Auto, Method::Kaufman, Method::Eliminate] {
        let err =
            partition::exact_log_partition(&model, m, &PartitionOptions::default(), &mut Silent)
                .unwrap_err();
        assert!(err.to_string().contains("overflow"), "{m:?}: {err}");
    }
    // A .PR answer whose ln Z overflows.
    let dir = tempfile::tempdir().unwrap();
    let pr = dir.path().join("big.PR");
    std::fs::write(&pr, "PR\n1e308\n").unwrap();
    ebm()
        .arg("info")
        .arg(&pr)
        .arg("--json")
        .assert()
        .code(2)
        .stdout(predicate::str::contains("\"exit_code\":2"))
        .stderr(predicate::str::contains("1e308"));
    // 2^32 sites: refused before any per-site allocation, as a job too large (exit 1).
    for method in ["auto", "transfer", "eliminate"] {
        ebm()
            .args([
                "partition",
                "ising",
                "--width",
                "4294967296",
                "--height",
                "1",
            ])
            .args(["--method", method])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("too large"));
    }
}

/// The arguments as owned OS strings (so paths and flags mix).
fn os_args(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(|a| a.into()).collect()
}

/// Runs `ebm ARGS --shard K/N` for every K, writes each shard's JSON to `dir/{name}{K}.json`,
/// and returns the files and the parsed JSON objects.
fn run_shards(
    dir: &std::path::Path,
    name: &str,
    args: &[std::ffi::OsString],
    n: usize,
) -> (Vec<std::path::PathBuf>, Vec<serde_json::Value>) {
    let mut files = Vec::new();
    let mut values = Vec::new();
    for k in 0..n {
        let out = ebm()
            .args(args)
            .args(["--shard", &format!("{k}/{n}")])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        values.push(serde_json::from_slice(&out).unwrap());
        let f = dir.join(format!("{name}{k}.json"));
        std::fs::write(&f, out).unwrap();
        files.push(f);
    }
    (files, values)
}

/// `ebm partition merge --json FILES`, parsed.
fn merge_json(files: &[std::path::PathBuf]) -> serde_json::Value {
    serde_json::from_slice(
        &ebm()
            .args(["partition", "merge", "--json"])
            .args(files)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap()
}

#[test]
fn cli_shards_merge_to_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "partition",
        "ising",
        "--width",
        "4",
        "--height",
        "5",
        "--field",
        "0.3",
        "--beta",
        "0.7",
        "--method",
        "enumerate",
    ];
    let single: serde_json::Value = serde_json::from_slice(
        &ebm()
            .args(args)
            .arg("--json")
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let (files, _) = run_shards(dir.path(), "part", &os_args(&args), 3);
    let merged = merge_json(&files);
    let (a, b) = (
        merged["log_z"].as_f64().unwrap(),
        single["log_z"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
    // A missing shard is an error naming it.
    use predicates::prelude::*;
    ebm()
        .args(["partition", "merge"])
        .args(&files[..2])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("2/3"));
    // Flags that do not apply to a merge are refused by name.
    for flag in [
        &["--method", "enumerate"][..],
        &["--marginals"],
        &["--ordering", "min-degree"],
        &["--max-seconds", "5"],
    ] {
        ebm()
            .args(["partition", "merge"])
            .args(&files)
            .args(flag)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(flag[0]));
    }
    // A record numbered 7/4, one with N = 0, and a part of another split of the same run.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let renumber = |from: &str, to: &str, k: u64, n: u64| {
        text.replace(
            &format!("\"shard\":\"{from}\""),
            &format!("\"shard\":\"{to}\""),
        )
        .replace("\"shard_index\":0", &format!("\"shard_index\":{k}"))
        .replace("\"shard_count\":3", &format!("\"shard_count\":{n}"))
    };
    for (to, k, n, want) in [("7/4", 7, 4, "0/4 to 3/4"), ("0/0", 0, 0, "N = 0")] {
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, renumber("0/3", to, k, n)).unwrap();
        ebm()
            .args(["partition", "merge"])
            .arg(&bad)
            .args(&files[1..])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(want))
            .stderr(predicate::str::contains("bad.json"));
    }
    let (four, _) = run_shards(dir.path(), "four", &os_args(&args), 4);
    ebm()
        .args(["partition", "merge"])
        .args(&files[..2])
        .arg(&four[2])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("number of parts N differs"));
}

#[test]
fn cli_merges_empty_and_zero_weight_shards() {
    // 2 states in 8 shards: most shards are empty, so their log_sum is -inf, written as null.
    let dir = tempfile::tempdir().unwrap();
    let args = ["partition", "ising", "--width", "2", "--height", "1"];
    let args = [
        &args[..],
        &["--coupling", "0", "--field", "0.4", "--method", "enumerate"],
    ]
    .concat();
    let (files, shards) = run_shards(dir.path(), "part", &os_args(&args), 8);
    for v in &shards {
        if v["states"] == 0 {
            assert!(v["log_sum"].is_null(), "{v}");
        }
    }
    let merged = merge_json(&files);
    // Closed form: two independent spins in field 0.4 at beta = 1.
    let want = 2.0 * (2.0 * 0.4f64.cosh()).ln();
    let got = merged["log_z"].as_f64().unwrap();
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    // A UAI model whose tables contradict each other (x0 = 1 only, and x0 = 0 only) has Z = 0:
    // the whole run is a clear error, its shards are -inf (null) and merge to the same error.
    let uai = dir.path().join("zero.uai");
    std::fs::write(
        &uai,
        "MARKOV\n2\n2 2\n2\n1 0\n2 0 1\n\n2\n0 1\n\n4\n1 1 0 0\n",
    )
    .unwrap();
    use predicates::prelude::*;
    ebm()
        .args(["partition", "--model"])
        .arg(&uai)
        .args(["--method", "enumerate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no state has positive weight"));
    let mut uai_args = os_args(&["partition", "--model"]);
    uai_args.push(uai.clone().into_os_string());
    uai_args.extend(os_args(&["--method", "enumerate"]));
    let (zero_files, shards) = run_shards(dir.path(), "zero", &uai_args, 2);
    for v in &shards {
        assert!(v["log_sum"].is_null(), "{v}");
    }
    ebm()
        .args(["partition", "merge"])
        .args(&zero_files)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no state has positive weight"));
}

#[test]
fn cli_reads_rbm_and_uai_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ebm::rng::from_seed(1);
    let (nv, nh) = (9, 4);
    let rbm = Rbm::new(
        nv,
        nh,
        (0..nv * nh).map(|_| rng.random_range(-1.0..1.0)).collect(),
        (0..nv).map(|_| rng.random_range(-1.0..1.0)).collect(),
        (0..nh).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
    .unwrap();
    let path = dir.path().join("m.safetensors");
    ebm::io::safetensors::write_rbm(&path, &ebm::io::safetensors::RbmFile::new(rbm.clone()))
        .unwrap();
    let out: serde_json::Value = serde_json::from_slice(
        &ebm()
            .args(["partition", "--json", "--model"])
            .arg(&path)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    assert_eq!(out["method"], "rbm");
    assert_eq!(out["variables"], 13);
    assert_close(
        out["log_z"].as_f64().unwrap(),
        rbm_log_partition(&rbm).unwrap(),
        1e-12,
        "cli rbm",
    );

    let g = FactorGraph::from_pairwise(&random_pairwise(9, 0.4, 1.0, 2), 1.0).unwrap();
    let uai = dir.path().join("m.uai");
    ebm::io::uai::write_uai(&uai, &g).unwrap();
    let out: serde_json::Value = serde_json::from_slice(
        &ebm()
            .args([
                "partition",
                "--json",
                "--marginals",
                "--method",
                "eliminate",
                "--model",
            ])
            .arg(&uai)
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let want = exact::marginals_factor_graph(&g).unwrap();
    let got: Vec<f64> = out["marginals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), 9);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
}

#[test]
fn cli_answer_does_not_depend_on_threads() {
    let run = |threads: &str| {
        let out = ebm()
            .args([
                "partition",
                "ising",
                "--width",
                "5",
                "--height",
                "4",
                "--field",
                "0.2",
            ])
            .args([
                "--boundary",
                "open",
                "--method",
                "enumerate",
                "--marginals",
                "--json",
            ])
            .args(["--threads", threads])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        (v["log_z"].to_string(), v["marginals"].to_string())
    };
    assert_eq!(run("1"), run("2"));
    // auto ranks methods by single-core cost, so it picks the same method (and so the same last
    // bits of ln Z) for any --threads: a 4x4 open lattice with a field once gave transfer with
    // one thread and eliminate with two.
    let auto = |threads: &str| {
        let out = ebm()
            .args(["partition", "ising", "--width", "4", "--height", "4"])
            .args(["--field", "0.1", "--boundary", "open", "--json"])
            .args(["--threads", threads])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        (v["method"].to_string(), v["log_z"].to_string())
    };
    assert_eq!(auto("1"), auto("2"));
}

/// `--evidence` against sums over the states of the unconditioned model that agree with it.
#[test]
fn cli_evidence_conditions_partition_and_marginals() {
    use predicates::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    // 4 variables: a 3-ary factor, a pair with a zero entry, a unary.
    let text = "MARKOV\n4\n2 2 2 2\n3\n3 2 0 1\n2 1 3\n1 3\n\
                8\n0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5\n4\n1 0 2 0.7\n2\n0.2 1.3\n";
    let model = dir.path().join("m.uai");
    std::fs::write(&model, text).unwrap();
    let graph = ebm::io::uai::parse_uai(text).unwrap();
    // Evidence x2 = 1, x1 = 1, in the 2014 form and in the older `1 k ...` form.
    let observed = [(2usize, 1u8), (1, 1)];
    let mut terms = Vec::new();
    let mut ones = vec![Vec::new(); 4];
    for x in 0..16u32 {
        let bits: Vec<u8> = (0..4).map(|i| (x >> i & 1) as u8).collect();
        if observed.iter().any(|&(v, b)| bits[v] != b) {
            continue;
        }
        let lw = graph.log_weight_bits(&bits);
        terms.push(lw);
        for i in 0..4 {
            if bits[i] == 1 {
                ones[i].push(lw);
            }
        }
    }
    let want_z = ebm::logspace::log_sum_exp(&terms);
    let want_m: Vec<f64> = ones
        .iter()
        .map(|t| (ebm::logspace::log_sum_exp(t) - want_z).exp())
        .collect();
    for (name, evid_text) in [("new.evid", "2 2 1 1 1\n"), ("old.evid", "1\n2 2 1 1 1\n")] {
        let evid = dir.path().join(name);
        std::fs::write(&evid, evid_text).unwrap();
        for method in ["enumerate", "eliminate"] {
            let out = ebm()
                .args(["partition", "--marginals", "--json", "--method", method])
                .arg("--model")
                .arg(&model)
                .arg("--evidence")
                .arg(&evid)
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_close(v["log_z"].as_f64().unwrap(), want_z, 1e-12, name);
            assert_eq!(v["variables"], 4);
            assert_eq!(v["evidence_variables"], 2);
            let m = v["marginals"].as_array().unwrap();
            for (got, want) in m.iter().zip(&want_m) {
                assert!(
                    (got.as_f64().unwrap() - want).abs() < 1e-12,
                    "{m:?} vs {want_m:?}"
                );
            }
        }
    }
    // --output in the competition formats.
    let evid = dir.path().join("new.evid");
    let pr = dir.path().join("answer.PR");
    let mar = dir.path().join("answer.MAR");
    for out in [&pr, &mar] {
        ebm()
            .arg("partition")
            .arg("--model")
            .arg(&model)
            .arg("--evidence")
            .arg(&evid)
            .arg("--output")
            .arg(out)
            .assert()
            .success();
    }
    let log10 = ebm::io::uai::read_pr(&pr).unwrap();
    assert_close(log10 * std::f64::consts::LN_10, want_z, 1e-12, ".PR");
    let mar_text = std::fs::read_to_string(&mar).unwrap();
    let tokens: Vec<&str> = mar_text.split_whitespace().collect();
    assert_eq!(&tokens[..3], &["MAR", "4", "2"]);
    for i in 0..4 {
        let p1: f64 = tokens[4 + 3 * i].parse().unwrap();
        let p0: f64 = tokens[3 + 3 * i].parse().unwrap();
        assert!((p1 - want_m[i]).abs() < 1e-12 && (p0 + p1 - 1.0).abs() < 1e-12);
    }
    // info reports the conditioned model.
    ebm()
        .arg("info")
        .arg(&model)
        .arg("--evidence")
        .arg(&evid)
        .arg("--json")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"evidence_variables\":2"))
        .stdout(predicate::str::contains("\"variables\":2"));
    // Bad evidence: out of range, not 0/1, contradictory, of probability zero (one factor:
    // x1 = 0 and x3 = 1; jointly: none here), a malformed file; and an --output of another kind.
    for (evid_text, want) in [
        ("1 4 0", "4 variables"),
        ("1 0 2", "values 0 and 1"),
        ("2 0 1 0 0", "contradicts"),
        ("2 1 0 3 1", "probability zero"),
        ("2 0 1", "tokens"),
    ] {
        let bad = dir.path().join("bad.evid");
        std::fs::write(&bad, evid_text).unwrap();
        for cmd in [&["partition", "--model"][..], &["info"]] {
            ebm()
                .args(cmd)
                .arg(&model)
                .arg("--evidence")
                .arg(&bad)
                .assert()
                .code(2)
                .stderr(predicate::str::contains(want))
                .stderr(predicate::str::contains("bad.evid"));
        }
    }
    ebm()
        .arg("partition")
        .arg("--model")
        .arg(&model)
        .arg("--output")
        .arg(dir.path().join("x.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(".MAR"));
}

/// `ebm sample --model X.uai --evidence E`: observed variables report their value, the others
/// the conditional marginals (computed here by enumeration of the unconditioned model).
#[test]
fn cli_sample_with_evidence_estimates_conditional_marginals() {
    let dir = tempfile::tempdir().unwrap();
    let text = "MARKOV\n4\n2 2 2 2\n3\n3 2 0 1\n2 1 3\n1 3\n\
                8\n0.5 1.5 2.5 3.5 4.5 5.5 6.5 7.5\n4\n1 0.3 2 0.7\n2\n0.2 1.3\n";
    let model = dir.path().join("m.uai");
    std::fs::write(&model, text).unwrap();
    let evid = dir.path().join("m.evid");
    std::fs::write(&evid, "1 2 0\n").unwrap();
    let graph = ebm::io::uai::parse_uai(text).unwrap();
    let mut weights = [0.0f64; 4];
    let mut total = 0.0;
    for x in 0..16u32 {
        let bits: Vec<u8> = (0..4).map(|i| (x >> i & 1) as u8).collect();
        if bits[2] != 0 {
            continue;
        }
        let w = graph.log_weight_bits(&bits).exp();
        total += w;
        for i in 0..4 {
            weights[i] += w * bits[i] as f64;
        }
    }
    let out = ebm()
        .args(["sample", "--sweeps", "20000", "--json", "--seed", "3"])
        .arg("--model")
        .arg(&model)
        .arg("--evidence")
        .arg(&evid)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let m = v["marginals"].as_array().unwrap();
    let se = v["marginals_stderr"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[2].as_f64().unwrap(), 0.0);
    for i in [0, 1, 3] {
        let (p, s) = (m[i].as_f64().unwrap(), se[i].as_f64().unwrap());
        let want = weights[i] / total;
        // 5 batch-means standard errors (false-failure rate ~1e-6 per variable for a normal
        // estimate) plus 0.005 for the error of the error bar itself; fixed seed.
        assert!(
            (p - want).abs() < 5.0 * s + 0.005,
            "x{i}: {p} +- {s} vs {want}"
        );
    }
}

/// A refusal for width names the ordering that gave up (it said "min-fill" under min-degree).
#[test]
fn width_refusals_name_the_ordering_used() {
    // The complete graph on 60 variables: any ordering has width 59 > 48.
    let n = 60;
    let mut factors = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            factors.push(Factor::new(vec![i, j], vec![1.0, 0.5, 0.5, 1.0]).unwrap());
        }
    }
    let g = FactorGraph::new(n, factors).unwrap();
    for (heuristic, name) in [
        (Heuristic::MinDegree, "(min-degree gave up)"),
        (Heuristic::MinFill, "(min-fill gave up)"),
    ] {
        let opts = PartitionOptions {
            heuristic,
            ..Default::default()
        };
        let err = partition::estimate(&Model::Factors(&g), Method::Eliminate, &opts).unwrap_err();
        assert!(err.to_string().contains(name), "{heuristic:?}: {err}");
    }
}

#[test]
fn two_pass_marginals_cost_a_few_eliminations_and_count_their_messages() {
    // Segmentation_12 (229 variables, width 18): the marginals used to be one clamped
    // elimination per variable (estimated 230 times ln Z); in two passes they are estimated at
    // a few eliminations, and the stored messages are in the memory estimate.
    let g = ebm::io::uai::read_uai(&uai_reference_dir().join("Segmentation_12.uai")).unwrap();
    let model = Model::Factors(&g);
    let opts = |marginals: bool, max_bytes: f64| PartitionOptions {
        marginals,
        budget: Budget {
            max_bytes,
            ..Budget::default()
        },
        ..PartitionOptions::default()
    };
    let roomy = 2.0 * 1024.0 * 1024.0 * 1024.0;
    let log_z = partition::estimate(&model, Method::Eliminate, &opts(false, roomy)).unwrap();
    let marg = partition::estimate(&model, Method::Eliminate, &opts(true, roomy)).unwrap();
    let plan = marg.plan.clone().unwrap();
    assert!(
        marg.seconds <= 4.0 * log_z.seconds,
        "{} vs {}",
        marg.seconds,
        log_z.seconds
    );
    assert_eq!(marg.bytes, plan.marginal_bytes());
    assert!(plan.marginal_bytes() > 2.0 * plan.max_table_bytes());
    // Room for one elimination's tables but not for the messages: clamping, estimated as such.
    let tight = plan.max_table_bytes() * 1.5;
    let clamped = partition::estimate(&model, Method::Eliminate, &opts(true, tight)).unwrap();
    assert_eq!(clamped.bytes, plan.max_table_bytes());
    assert!(clamped.seconds > 50.0 * log_z.seconds);
}

#[test]
fn two_pass_marginals_of_a_uai_model_match_clamping() {
    // Grids_12 (100 variables, width 10, couplings up to 10): the two passes against one clamped
    // elimination per variable (the fallback, forced by a memory limit that holds one
    // elimination's tables but not the stored messages), through the library and the command
    // line. Tolerance 1e-12 absolute: both are exact, they differ only in rounding (measured
    // 3e-13 at most here; ln Z reaches 700, so one ulp of a log-weight is 1e-13).
    let file = uai_reference_dir().join("Grids_12.uai");
    let g = ebm::io::uai::read_uai(&file).unwrap();
    let plan = eliminate::plan_factor_graph(&g, Heuristic::MinFill);
    let tight = EliminateOptions {
        max_table_entries: plan.max_table_entries,
        ..Default::default()
    };
    assert!(!eliminate::two_pass_fits(&plan, &tight));
    let (e1, clamped) =
        eliminate::eliminate_factor_graph_marginals_with_plan(&g, plan.clone(), &tight).unwrap();
    let (e2, two_pass) =
        eliminate::eliminate_factor_graph_marginals_with_plan(&g, plan, &Default::default())
            .unwrap();
    assert_eq!(e1.log_z.to_bits(), e2.log_z.to_bits());
    for (i, (a, b)) in clamped.iter().zip(&two_pass).enumerate() {
        assert!((a - b).abs() < 1e-12, "variable {i}: {a} vs {b}");
    }
    let out = ebm()
        .args([
            "partition",
            "--method",
            "eliminate",
            "--marginals",
            "--json",
        ])
        .arg("--model")
        .arg(&file)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["log_z"].as_f64().unwrap().to_bits(), e2.log_z.to_bits());
    let m = v["marginals"].as_array().unwrap();
    for (got, want) in m.iter().zip(&clamped) {
        assert!(
            (got.as_f64().unwrap() - want).abs() < 1e-12,
            "{got} vs {want}"
        );
    }
}

#[test]
fn ising_marginals_by_elimination_match_enumeration() {
    // `partition ising --method eliminate --marginals` (the pairwise route, P(s_i = +1))
    // against enumeration of the same lattice, on a torus and an open grid with a field.
    // Tolerance 1e-12 absolute: two exact computations, rounding only.
    for boundary in ["periodic", "open"] {
        let run = |method: &str| -> Vec<f64> {
            let out = ebm()
                .args(["partition", "ising", "--width", "4", "--height", "3"])
                .args(["--field", "0.3", "--coupling", "-0.7", "--beta", "1.3"])
                .args(["--boundary", boundary, "--marginals", "--json"])
                .args(["--method", method])
                .assert()
                .success()
                .get_output()
                .stdout
                .clone();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v["marginals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect()
        };
        let (elim, enumerated) = (run("eliminate"), run("enumerate"));
        assert_eq!(elim.len(), 12);
        for (a, b) in elim.iter().zip(&enumerated) {
            assert!((a - b).abs() < 1e-12, "{boundary}: {a} vs {b}");
        }
    }
}
