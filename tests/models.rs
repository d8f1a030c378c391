//! The models' energies and single-flip differences on random small instances.

use ebm::model::{EnergyModel, Factor, FactorGraph, PairwiseMrf, Spin, spin_of_bit};
use ebm::rng::{from_seed, uniform_f64};
use rand::RngExt;

use crate::common::tol;

/// Checks flip_delta against the energy difference for every site of random states.
fn check_flip_deltas(model: &dyn EnergyModel, seed: u64, states: usize) {
    let n = model.num_vars();
    let mut rng = from_seed(seed);
    for _ in 0..states {
        let s: Vec<Spin> = (0..n)
            .map(|_| spin_of_bit(rng.random_range(0..2u8)))
            .collect();
        let e = model.energy(&s);
        for i in 0..n {
            let mut t = s.clone();
            t[i] = -t[i];
            let direct = model.energy(&t) - e;
            let delta = model.flip_delta(&s, i);
            assert!(
                (delta - direct).abs() <= tol::EXACT_REL * (1.0 + direct.abs() + e.abs()),
                "site {i}: flip_delta {delta}, energy difference {direct}"
            );
        }
    }
}

#[test]
fn pairwise_flip_delta_equals_the_energy_difference() {
    for seed in 0..10 {
        let mut rng = from_seed(seed);
        let n = 2 + (seed as usize % 9);
        let fields = (0..n).map(|_| 2.0 * uniform_f64(&mut rng) - 1.0).collect();
        let mut couplings = Vec::new();
        for i in 0..n {
            for j in i + 1..n {
                if rng.random_bool(0.5) {
                    couplings.push((i, j, 3.0 * uniform_f64(&mut rng) - 1.5));
                }
            }
        }
        let m = PairwiseMrf::with_constant(fields, &couplings, 0.7).unwrap();
        check_flip_deltas(&m, 1000 + seed, 20);
    }
}

#[test]
fn factor_graph_flip_delta_equals_the_energy_difference() {
    for seed in 0..10 {
        let mut rng = from_seed(seed);
        let n = 6;
        let mut factors = Vec::new();
        for _ in 0..8 {
            let arity = rng.random_range(1..=4usize);
            let mut scope: Vec<usize> = Vec::new();
            while scope.len() < arity {
                let v = rng.random_range(0..n);
                if !scope.contains(&v) {
                    scope.push(v);
                }
            }
            let table = (0..1 << arity)
                .map(|_| 0.01 + uniform_f64(&mut rng))
                .collect();
            factors.push(Factor::new(scope, table).unwrap());
        }
        let g = FactorGraph::new(n, factors).unwrap();
        check_flip_deltas(&g, 2000 + seed, 20);
    }
}

#[test]
fn rbm_energy_of_a_hand_computed_case() {
    // W = [[1, -2], [0.5, 3]], b = (0.25, -1), c = (0.5, 0); v = (1, 1), h = (1, 0):
    // v^T W h = 1 + 0.5 = 1.5, b^T v = -0.75, c^T h = 0.5, so E = -1.5 + 0.75 - 0.5 = -1.25.
    let rbm = ebm::model::Rbm::new(
        2,
        2,
        vec![1.0, -2.0, 0.5, 3.0],
        vec![0.25, -1.0],
        vec![0.5, 0.0],
    )
    .unwrap();
    assert_eq!(rbm.energy(&[1, 1], &[1, 0]), -1.25);
    // F(v) = -b^T v - sum_j softplus(c_j + (v^T W)_j) = 0.75 - softplus(2) - softplus(1).
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let f = 0.75 - softplus(2.0) - softplus(1.0);
    assert!((rbm.free_energy(&[1, 1]) - f).abs() < 1e-14);
}
