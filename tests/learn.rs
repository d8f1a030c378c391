//! RBM training, AIS and block Gibbs sampling, checked against exact enumeration.

use ebm::dataset::Dataset;
use ebm::infer::ais::{AisParams, ais_log_partition};
use ebm::infer::rbm::rbm_log_partition;
use ebm::learn::cd::{CdParams, LrSchedule, TrainState, phase_statistics};
use ebm::learn::{Evaluation, average_log_likelihood, train_rbm};
use ebm::logspace::{LogSumExp, sigmoid};
use ebm::model::Rbm;
use ebm::progress::{Control, Silent};
use ebm::sample::rbm::{GibbsChains, RbmF32};

use crate::common::tol;

/// The 30 distinct 4x4 bars-and-stripes patterns (rows all equal or columns all equal).
pub fn bars_and_stripes() -> Dataset {
    let mut rows: Vec<Vec<u8>> = Vec::new();
    for mask in 0..16u32 {
        let horizontal: Vec<u8> = (0..16).map(|k| (mask >> (k / 4) & 1) as u8).collect();
        let vertical: Vec<u8> = (0..16).map(|k| (mask >> (k % 4) & 1) as u8).collect();
        for p in [horizontal, vertical] {
            if !rows.contains(&p) {
                rows.push(p);
            }
        }
    }
    assert_eq!(rows.len(), 30);
    Dataset::new(30, 16, rows.concat()).unwrap()
}

fn bits(state: usize, n: usize) -> Vec<u8> {
    (0..n).map(|k| (state >> k & 1) as u8).collect()
}

fn test_rbm(nv: usize, nh: usize, scale: f64) -> Rbm {
    let w = (0..nv * nh)
        .map(|k| ((k * 7919 % 23) as f64 - 11.0) / 11.0 * scale)
        .collect();
    let b = (0..nv).map(|i| ((i * 5 % 7) as f64 - 3.0) * 0.2).collect();
    let c = (0..nh).map(|j| ((j * 3 % 5) as f64 - 2.0) * 0.25).collect();
    Rbm::new(nv, nh, w, b, c).unwrap()
}

/// Exact P(v) of every visible state by enumeration (index = bits of v, unit 0 lowest).
fn exact_visible_distribution(rbm: &Rbm) -> Vec<f64> {
    let log_z = rbm_log_partition(rbm).unwrap();
    (0..1usize << rbm.n_visible())
        .map(|s| (-rbm.free_energy(&bits(s, rbm.n_visible())) - log_z).exp())
        .collect()
}

#[test]
fn positive_phase_equals_exact_data_term_and_negative_phase_matches_model_term() {
    let rbm = test_rbm(4, 3, 1.5);
    let model = RbmF32::from_rbm(&rbm);
    // f64 copies of the f32 parameters, so that enumeration uses the same numbers.
    let exact_rbm = model.to_rbm().unwrap();
    let (nv, nh) = (4, 3);
    let data = [[1u8, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 1]];
    // Exact data term <v_i h_j>_data = mean over examples of v_i P(h_j = 1 | v), by hand.
    let mut want = vec![0.0f64; nv * nh];
    for v in &data {
        let mut p = vec![0.0; nh];
        exact_rbm.hidden_probs(v, &mut p);
        for i in 0..nv {
            for j in 0..nh {
                want[i * nh + j] += v[i] as f64 * p[j] / data.len() as f64;
            }
        }
    }
    let batch: Vec<f32> = data.iter().flatten().map(|&x| x as f32).collect();
    let pos = phase_statistics(&model, &batch);
    // Equal up to f32 rounding of the products (a handful of ulps of numbers below 1).
    for (g, w) in pos.vh.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
    }

    // Exact model term <v_i h_j>_model = sum_v P(v) v_i P(h_j = 1 | v).
    let pv = exact_visible_distribution(&exact_rbm);
    let mut model_term = vec![0.0f64; nv * nh];
    for (s, &p) in pv.iter().enumerate() {
        let v = bits(s, nv);
        let mut ph = vec![0.0; nh];
        exact_rbm.hidden_probs(&v, &mut ph);
        for i in 0..nv {
            for j in 0..nh {
                model_term[i * nh + j] += p * v[i] as f64 * ph[j];
            }
        }
    }
    // The negative phase as the update computes it, averaged over 1000 chains x 400 sweeps
    // (after 50 sweeps of burn-in). Each entry is a mean of numbers in [0, 1]; the sweeps of a
    // 4x3 chain decorrelate within a few steps, so the standard error is below
    // 0.5 / sqrt(1000 * 400 / 5) = 0.0018: a tolerance of 0.01 is more than 5 standard errors.
    let mut chains = GibbsChains::new(&model, 1000, 11);
    for _ in 0..50 {
        chains.sweep(&model);
    }
    let mut acc = vec![0.0f64; nv * nh];
    let sweeps = 400;
    for _ in 0..sweeps {
        chains.sweep(&model);
        let neg = phase_statistics(&model, &chains.visible);
        for (a, &x) in acc.iter_mut().zip(&neg.vh) {
            *a += x as f64 / sweeps as f64;
        }
    }
    for (k, (a, w)) in acc.iter().zip(&model_term).enumerate() {
        assert!((a - w).abs() < 0.01, "entry {k}: chains {a} vs exact {w}");
    }
    // The model term differs from the data term, so the check above is not vacuous.
    assert!(
        want.iter()
            .zip(&model_term)
            .any(|(a, b)| (a - b).abs() > 0.05)
    );
}

#[test]
fn pcd_with_defaults_learns_bars_and_stripes() {
    let data = bars_and_stripes();
    let params = CdParams {
        hidden: 16,
        persistent: true,
        // 30 examples make 3 updates per epoch: 2000 epochs are 6000 updates (under a second).
        epochs: 2000,
        evaluation: Some(Evaluation::Exact),
        ..CdParams::default()
    };
    let out = train_rbm(&data, None, &params, None, &mut Silent).unwrap();
    let last = out.history.last().unwrap();
    let ll = last.train_log_likelihood.unwrap();
    // Recompute independently of the training code's evaluation.
    let rbm = out.state.model.to_rbm().unwrap();
    let direct = average_log_likelihood(&rbm, &data, rbm_log_partition(&rbm).unwrap()).unwrap();
    assert!((ll - direct).abs() < 1e-9);
    // The optimum is -ln 30 = -3.40 nats.
    assert!(ll >= -4.0, "final average log-likelihood {ll}");
}

#[test]
#[ignore]
fn tune_tmp() {
    let data = bars_and_stripes();
    for &(lr, m, epochs, bs, chains) in &[
        (0.1, 0.5, 2000, 10, 100),
        (0.1, 0.5, 3000, 10, 100),
        (0.05, 0.5, 2000, 10, 100),
        (0.1, 0.5, 2000, 20, 100),
    ] {
      for seed in 1..4u64 {
        let params = CdParams {
            hidden: 16,
            persistent: true,
            learning_rate: lr,
            momentum: m,
            epochs,
            batch_size: bs,
            chains,
            evaluation: Some(Evaluation::Exact),
            eval_every: epochs / 4,
            seed,
            ..CdParams::default()
        };
        let t = std::time::Instant::now();
        let out = train_rbm(&data, None, &params, None, &mut Silent).unwrap();
        let lls: Vec<f64> = out.history.iter().filter_map(|s| s.train_log_likelihood).collect();
        println!("lr {lr} m {m} e {epochs} bs {bs} ch {chains}: {lls:?} {:.2}s", t.elapsed().as_secs_f64());
    }}
}
