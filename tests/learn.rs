//! RBM training, AIS and block Gibbs sampling, checked against exact enumeration.

use ebm::dataset::Dataset;
use ebm::infer::ais::{AisParams, ais_log_partition};
use ebm::infer::rbm::rbm_log_partition;
use ebm::learn::cd::{CdParams, TrainState};
use ebm::learn::{Evaluation, average_log_likelihood, train_rbm};
use ebm::logspace::sigmoid;
use ebm::model::Rbm;
use ebm::progress::{Control, Silent};
use ebm::sample::rbm::RbmF32;

use crate::common::{ebm, project_root, tol};

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

/// Statistics of one phase under an exact f64 model, from visible states with weights:
/// (sum p v_i P(h_j = 1 | v), sum p v_i, sum p P(h_j = 1 | v)) over (v, p).
fn exact_phase(rbm: &Rbm, states: &[(Vec<u8>, f64)]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (nv, nh) = (rbm.n_visible(), rbm.n_hidden());
    let (mut vh, mut v_mean, mut h_mean) = (vec![0.0; nv * nh], vec![0.0; nv], vec![0.0; nh]);
    let mut ph = vec![0.0; nh];
    for (v, p) in states {
        rbm.hidden_probs(v, &mut ph);
        for i in 0..nv {
            v_mean[i] += p * v[i] as f64;
            for j in 0..nh {
                vh[i * nh + j] += p * v[i] as f64 * ph[j];
            }
        }
        for j in 0..nh {
            h_mean[j] += p * ph[j];
        }
    }
    (vh, v_mean, h_mean)
}

#[test]
fn one_real_pcd_update_moves_by_the_exact_data_term_minus_the_model_term() {
    use statrs::distribution::{ContinuousCDF, Normal};
    // One real update of the training code (train_rbm -> Trainer::step): a 4 x 3 RBM, one
    // epoch of one mini-batch holding all 5 examples, learning rate 1, momentum 0, weight decay
    // 0, so that the velocity after the step is exactly the gradient the step computed
    // (u = 0 * u + 1 * (g - 0 * W)) and W moves by it.
    let rbm = test_rbm(4, 3, 1.5);
    // f64 copies of the f32 parameters, so that enumeration uses the same numbers.
    let exact = RbmF32::from_rbm(&rbm).to_rbm().unwrap();
    let (nv, nh) = (4, 3);
    let data = [
        [1u8, 0, 1, 1],
        [0, 1, 1, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 1],
        [1, 0, 1, 1],
    ];
    let dataset = Dataset::new(5, 4, data.concat()).unwrap();
    // Persistent chains started from exact draws of P(v) (inverse CDF over the 16 states): a
    // block Gibbs sweep leaves P(v) invariant, so after the step's sweep each chain is still an
    // exact, independent draw, and the negative phase is a Monte Carlo mean of the model term.
    let pv = exact_visible_distribution(&exact);
    let n_chains = 50_000;
    let mut rng = ebm::rng::from_seed(3);
    let mut chains = Vec::with_capacity(n_chains * nv);
    for _ in 0..n_chains {
        let u = ebm::rng::uniform_f64(&mut rng);
        let mut acc = 0.0;
        let s = pv
            .iter()
            .position(|&p| {
                acc += p;
                u < acc
            })
            .unwrap_or(pv.len() - 1);
        chains.extend(bits(s, nv).iter().map(|&b| b as f64));
    }
    let get = |name: &str| {
        (name == ebm::learn::checkpoint::PERSISTENT_CHAINS)
            .then(|| (vec![n_chains, nv], chains.clone()))
    };
    let start = TrainState::from_parts(&exact, 0, &get).unwrap();
    let params = CdParams {
        hidden: nh,
        epochs: 1,
        batch_size: 5,
        learning_rate: 1.0,
        schedule: ebm::learn::LrSchedule::Constant,
        cd_k: 1,
        persistent: true,
        chains: n_chains,
        momentum: 0.0,
        weight_decay: 0.0,
        ..CdParams::default()
    };
    let out = train_rbm(&dataset, None, &params, Some(start.clone()), &mut Silent).unwrap();
    let after = &out.state;
    // The update applied is the velocity: W_new - W_old = u up to the rounding of the f32
    // addition (half an ulp of numbers below 4).
    for (k, ((new, old), u)) in after
        .model
        .weights
        .iter()
        .zip(&start.model.weights)
        .zip(&after.velocity_weights)
        .enumerate()
    {
        assert!((new - old - u).abs() <= 4.0 * f32::EPSILON, "weight {k}");
    }

    // Exact gradient: data term (mean over the 5 examples) minus model term (sum over P(v)).
    let data_states: Vec<(Vec<u8>, f64)> = data.iter().map(|v| (v.to_vec(), 0.2)).collect();
    let model_states: Vec<(Vec<u8>, f64)> = pv
        .iter()
        .enumerate()
        .map(|(s, &p)| (bits(s, nv), p))
        .collect();
    let (d_vh, d_v, d_h) = exact_phase(&exact, &data_states);
    let (m_vh, m_v, m_h) = exact_phase(&exact, &model_states);
    let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>();
    let (want_w, want_b, want_c) = (diff(&d_vh, &m_vh), diff(&d_v, &m_v), diff(&d_h, &m_h));

    // Tolerance. Positive phase: exact up to f32 rounding and the f32 sigmoid (< 1e-5).
    // Negative phase: each entry is a mean over the independent chains of a number in [0, 1],
    // so its standard error is at most 0.5 / sqrt(n_chains) = 0.0022. The 19 entries are
    // checked at a family-wise false-failure rate of CHI_SQUARE_ALPHA (1e-4) by Bonferroni:
    // z = Phi^-1(1 - 1e-4 / (2 * 19)) = 4.55 standard errors, 0.0102.
    let entries = (nv * nh + nv + nh) as f64;
    let z = Normal::new(0.0, 1.0)
        .unwrap()
        .inverse_cdf(1.0 - tol::CHI_SQUARE_ALPHA / (2.0 * entries));
    let tolerance = z * 0.5 / (n_chains as f64).sqrt() + 1e-5;
    let got = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    for (name, got, want) in [
        ("W", got(&after.velocity_weights), &want_w),
        ("b", got(&after.velocity_visible), &want_b),
        ("c", got(&after.velocity_hidden), &want_c),
    ] {
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() < tolerance,
                "grad {name}[{k}]: step {g} vs exact {w} (tolerance {tolerance})"
            );
        }
    }
    // Not vacuous: the gradient is far from zero (a step that skipped the data or the model
    // term, or swapped their signs, would miss by more than the tolerance).
    assert!(
        want_w.iter().any(|g| g.abs() > 10.0 * tolerance),
        "{want_w:?}"
    );
    assert!(
        want_c.iter().any(|g| g.abs() > 10.0 * tolerance),
        "{want_c:?}"
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

fn digits_train() -> Dataset {
    ebm::io::datasets::read_dataset(
        &crate::common::project_root().join("data/digits_train.txt"),
        None,
    )
    .unwrap()
}

#[test]
fn ais_lies_within_its_error_bars_of_exact_log_z_and_tightens_with_more_temperatures() {
    // A 64 x 20 RBM trained briefly on the digits: 2^20 hidden states is exact territory.
    let data = digits_train();
    let params = CdParams {
        hidden: 20,
        persistent: true,
        epochs: 10,
        batch_size: 20,
        ..CdParams::default()
    };
    let out = train_rbm(&data, None, &params, None, &mut Silent).unwrap();
    let rbm = out.state.model.to_rbm().unwrap();
    let exact = rbm_log_partition(&rbm).unwrap();
    let means = data.column_means();
    let mut widths = Vec::new();
    for betas in [100, 1000, 10_000] {
        let est = ais_log_partition(
            &rbm,
            &means,
            &AisParams {
                betas,
                runs: 100,
                seed: 5,
            },
            &mut Silent,
        )
        .unwrap();
        widths.push(est.log_z_high - est.log_z_low);
        if betas >= 1000 {
            // The interval ln(mean +- 3 standard errors) must hold the exact value.
            assert!(
                est.log_z_low <= exact && exact <= est.log_z_high,
                "K = {betas}: exact {exact} outside [{}, {}] (estimate {})",
                est.log_z_low,
                est.log_z_high,
                est.log_z
            );
        }
    }
    assert!(
        widths[0] > widths[1] && widths[1] > widths[2],
        "spreads do not shrink with more temperatures: {widths:?}"
    );
}

struct StopAt(usize);
impl ebm::learn::TrainObserver for StopAt {
    fn on_epoch(&mut self, _s: &TrainState, stats: &ebm::learn::EpochStats) -> Control {
        if stats.epoch == self.0 {
            Control::Break
        } else {
            Control::Continue
        }
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let data = digits_train().select(&(0..300).collect::<Vec<_>>());
    for persistent in [true, false] {
        let params = CdParams {
            hidden: 12,
            persistent,
            chains: 30,
            epochs: 10,
            batch_size: 25,
            momentum: 0.9,
            ..CdParams::default()
        };
        let full = train_rbm(&data, None, &params, None, &mut Silent).unwrap();
        let half = train_rbm(&data, None, &params, None, &mut StopAt(5)).unwrap();
        assert!(half.interrupted && half.state.epoch == 5);
        assert_ne!(half.state.model, full.state.model);
        // Through the checkpoint representation: f64 arrays, looked up by name.
        let arrays = half.state.extra_arrays();
        let get = |name: &str| {
            arrays
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, s, d)| (s.clone(), d.clone()))
        };
        let rbm = half.state.model.to_rbm().unwrap();
        let resumed_state = TrainState::from_parts(&rbm, 5, &get).unwrap();
        assert_eq!(resumed_state, half.state);
        let resumed = train_rbm(&data, None, &params, Some(resumed_state), &mut Silent).unwrap();
        assert_eq!(resumed.state, full.state, "persistent = {persistent}");
    }
}

#[test]
fn bad_settings_and_data_are_refused_with_the_setting_named() {
    let data = bars_and_stripes();
    let check = |params: CdParams, needle: &str| {
        let err = train_rbm(&data, None, &params, None, &mut Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    };
    check(
        CdParams {
            learning_rate: f64::NAN,
            ..CdParams::default()
        },
        "learning-rate",
    );
    check(
        CdParams {
            hidden: 0,
            ..CdParams::default()
        },
        "hidden",
    );
    check(
        CdParams {
            momentum: 1.0,
            ..CdParams::default()
        },
        "momentum",
    );
    // Finite as f64 but infinite (1e39) or zero (1e-50) as the f32 the update uses.
    for lr in [1e39, 1e-50] {
        check(
            CdParams {
                learning_rate: lr,
                ..CdParams::default()
            },
            "learning-rate",
        );
    }
    check(
        CdParams {
            weight_decay: 1e39,
            ..CdParams::default()
        },
        "weight-decay",
    );
    // Sizes whose arrays overflow (16 x usize::MAX) or cannot be allocated (10^15 chains x 16
    // values x 8 bytes = 1.3e17 bytes, beyond any 64-bit address space in use).
    check(
        CdParams {
            hidden: usize::MAX,
            ..CdParams::default()
        },
        "hidden",
    );
    check(
        CdParams {
            persistent: true,
            chains: 1_000_000_000_000_000,
            ..CdParams::default()
        },
        "chains",
    );
    // A rate that is finite but makes the parameters overflow: stopped at the first epoch, with
    // the advice.
    check(
        CdParams {
            learning_rate: 1e30,
            epochs: 3,
            ..CdParams::default()
        },
        "training diverged at epoch 1",
    );
    let empty = Dataset::new(0, 16, vec![]).unwrap();
    let err = train_rbm(&empty, None, &CdParams::default(), None, &mut Silent).unwrap_err();
    assert!(err.to_string().contains("no examples"), "{err}");
    let narrow = Dataset::new(1, 3, vec![0, 1, 0]).unwrap();
    let err = train_rbm(
        &data,
        Some(&narrow),
        &CdParams::default(),
        None,
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("3 columns") && err.contains("16"), "{err}");
}

#[test]
fn block_gibbs_visible_states_follow_exact_distribution() {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let rbm = test_rbm(6, 4, 1.0);
    let model = RbmF32::from_rbm(&rbm);
    let exact = exact_visible_distribution(&model.to_rbm().unwrap());
    // 40,000 independent chains (one stream each), 100 sweeps each: the final states are
    // independent draws from the chain's distribution after 100 sweeps, which for this 6 x 4
    // model equals P(v) to far below the test's resolution.
    let n = 40_000;
    let samples = ebm::sample::rbm::sample_rbm(&rbm, n, 100, 17, &mut Silent).unwrap();
    let mut counts = vec![0f64; 64];
    for v in samples.iter_rows() {
        counts[v
            .iter()
            .enumerate()
            .map(|(k, &b)| (b as usize) << k)
            .sum::<usize>()] += 1.0;
    }
    // Pearson chi-square; cells with expected count below 5 are pooled into one.
    let (mut stat, mut cells, mut pool_e, mut pool_o) = (0.0, 0, 0.0, 0.0);
    for (o, p) in counts.iter().zip(&exact) {
        let e = p * n as f64;
        if e < 5.0 {
            pool_e += e;
            pool_o += o;
        } else {
            stat += (o - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e.max(1e-300);
        cells += 1;
    }
    assert!(cells >= 40, "too few cells: {cells}");
    let p_value = 1.0 - ChiSquared::new((cells - 1) as f64).unwrap().cdf(stat);
    // A correct sampler fails with probability CHI_SQUARE_ALPHA (1e-4).
    assert!(
        p_value > tol::CHI_SQUARE_ALPHA,
        "chi-square {stat} on {cells} cells: p = {p_value}"
    );
    // Power: the distribution of the data-free model (b only) is clearly rejected.
    let mut indep = 0.0;
    for (s, o) in counts.iter().enumerate() {
        let p: f64 = (0..6)
            .map(|i| {
                let q = sigmoid(rbm.visible_bias()[i]);
                if s >> i & 1 == 1 { q } else { 1.0 - q }
            })
            .product();
        indep += (o - p * n as f64).powi(2) / (p * n as f64);
    }
    assert!(1.0 - ChiSquared::new(63.0).unwrap().cdf(indep) < 1e-10);
}

// ---- command line ----

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn digits_path(name: &str) -> String {
    crate::common::project_root()
        .join("data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The log's rows without the timing column (`seconds`).
fn log_rows(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            // Every column but `seconds` (the 9th), which differs from run to run.
            let mut fields: Vec<&str> = l.split(',').collect();
            fields.remove(8);
            fields.join(",")
        })
        .collect()
}

#[test]
fn cli_resume_under_the_default_schedule_equals_one_run_and_threads_do_not_change_the_model() {
    use ebm::io::safetensors::read_rbm;
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let cmd = |extra: &[&str]| {
        let mut cmd = crate::common::ebm();
        cmd.args(["train-rbm", "--data", &digits_path("digits_train.txt")])
            .args(["--eval", "none", "--quiet"])
            .args(extra);
        cmd
    };
    // 1200 chains and examples per batch: large enough that the products (1200 x 64 x 16 >=
    // linalg::PARALLEL_MIN_FLOPS) and the visible sampling pass run in parallel. The learning
    // rate schedule is the default (linear over --epochs).
    let settings = [
        "--hidden",
        "16",
        "--persistent",
        "--batch-size",
        "1200",
        "--chains",
        "1200",
    ];
    let train = |extra: &[&str], output: &str| {
        cmd(&settings)
            .args(["--output", output])
            .args(extra)
            .assert()
            .success();
    };
    train(
        &[
            "--epochs",
            "10",
            "--threads",
            "2",
            "--log",
            &out("full.csv"),
        ],
        &out("full.safetensors"),
    );
    train(
        &[
            "--epochs",
            "10",
            "--stop-after",
            "5",
            "--log",
            &out("log.csv"),
        ],
        &out("half.safetensors"),
    );
    // The resumed run takes every setting from the checkpoint, --epochs included.
    cmd(&[
        "--resume",
        &out("half.safetensors"),
        "--log",
        &out("log.csv"),
        "--output",
        &out("resumed.safetensors"),
    ])
    .assert()
    .success();
    train(
        &["--epochs", "10", "--threads", "1"],
        &out("one.safetensors"),
    );
    let full =
        ebm::io::safetensors::read_rbm(std::path::Path::new(&out("full.safetensors"))).unwrap();
    let resumed = read_rbm(std::path::Path::new(&out("resumed.safetensors"))).unwrap();
    let one = read_rbm(std::path::Path::new(&out("one.safetensors"))).unwrap();
    let half = read_rbm(std::path::Path::new(&out("half.safetensors"))).unwrap();
    assert_eq!(half.metadata["epochs_done"], "5");
    assert_ne!(half.rbm, full.rbm);
    assert_eq!(resumed.rbm, full.rbm);
    assert_eq!(resumed.extra, full.extra);
    assert_eq!(one.rbm, full.rbm);
    assert_eq!(one.extra, full.extra);
    // The log of the resumed run keeps the first 5 rows and continues: the same figures as the
    // uninterrupted run's log (learning rates included), header plus 10 rows.
    let (log, full_log) = (
        log_rows(std::path::Path::new(&out("log.csv"))),
        log_rows(std::path::Path::new(&out("full.csv"))),
    );
    assert_eq!(log.len(), 11);
    assert_eq!(log, full_log);

    // Changed settings are refused, naming the flag, the stored value and the given one.
    let refuse = |extra: &[&str], needles: &[&str]| {
        let assert = cmd(&["--resume", &out("half.safetensors")])
            .args(["--output", &out("x.safetensors")])
            .args(extra)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in needles {
            assert!(err.contains(n), "{err:?} does not mention {n:?}");
        }
        assert!(!dir.path().join("x.safetensors").exists());
    };
    refuse(
        &["--epochs", "12"],
        &[
            "linear schedule decays over 10 epochs",
            "--epochs 10",
            "--lr-schedule constant",
        ],
    );
    refuse(&["--batch-size", "100"], &["--batch-size: 100", "1200"]);
    refuse(
        &["--learning-rate", "0.1"],
        &["--learning-rate: 0.1", "0.05"],
    );
    refuse(
        &["--lr-schedule", "constant"],
        &["--lr-schedule: constant", "linear"],
    );
    refuse(&["--chains", "10"], &["--chains: 10", "1200"]);
    refuse(&["--cd-k", "3"], &["--cd-k: 3", "1"]);
    refuse(&["--momentum", "0.9"], &["--momentum: 0.9", "0.5"]);
    refuse(&["--weight-decay", "0"], &["--weight-decay: 0", "0.0001"]);
    refuse(&["--seed", "7"], &["--seed: 7", "--seed 42"]);
}

#[test]
fn cli_missing_output_folders_and_wrong_extensions_are_refused_before_reading_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_folder");
    // The data file does not exist either: the output checks must come first.
    let data = dir.path().join("absent.txt");
    let ok_model = dir.path().join("m.safetensors");
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![
                "--output".into(),
                missing.join("m.safetensors").display().to_string(),
            ],
            vec!["--output".into(), missing.display().to_string()],
        ),
        (
            vec![
                "--log".into(),
                missing.join("log.csv").display().to_string(),
            ],
            vec!["--log".into(), missing.display().to_string()],
        ),
        (
            vec![
                "--filters".into(),
                missing.join("f.png").display().to_string(),
            ],
            vec!["--filters".into(), missing.display().to_string()],
        ),
        (
            vec![
                "--output".into(),
                dir.path().join("m.bin").display().to_string(),
            ],
            vec!["--output".into(), ".safetensors".into()],
        ),
        (
            vec![
                "--log".into(),
                dir.path().join("log.txt").display().to_string(),
            ],
            vec!["--log".into(), ".csv".into()],
        ),
        (
            vec![
                "--filters".into(),
                dir.path().join("f.pbm").display().to_string(),
            ],
            vec!["--filters".into(), ".png".into()],
        ),
    ];
    for (args, needles) in cases {
        let mut cmd = crate::common::ebm();
        cmd.arg("train-rbm").arg("--data").arg(&data);
        if args[0] != "--output" {
            cmd.arg("--output").arg(&ok_model);
        }
        let assert = cmd.args(&args).assert().code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in &needles {
            assert!(err.contains(n.as_str()), "{err:?} does not mention {n:?}");
        }
        assert!(!err.contains("absent.txt"), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn evaluate_help_states_the_enumeration_limit_of_the_code() {
    let assert = crate::common::ebm()
        .args(["evaluate", "--help"])
        .assert()
        .success();
    let help = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    let limit = format!(
        "refused beyond 2^{} states",
        ebm::infer::rbm::MAX_ENUMERATED_UNITS
    );
    assert!(help.contains(&limit), "{help}");
}

#[test]
fn cli_train_and_evaluate_print_the_contract_keys() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let assert = crate::common::ebm()
        .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args(["--test", &digits_path("bars_stripes_4x4.txt")])
        .args(["--hidden", "8", "--epochs", "20", "--json"])
        .arg("--output")
        .arg(&model)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    for key in [
        "train_log_likelihood",
        "test_log_likelihood",
        "log_z",
        "log_z_method",
        "epochs",
        "seconds",
        "seconds_per_epoch",
        "seed",
    ] {
        assert!(!v[key].is_null(), "missing {key} in {v}");
    }
    let assert = crate::common::ebm()
        .args(["evaluate", "--data", &digits_path("bars_stripes_4x4.txt")])
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .assert()
        .success();
    let e: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(e["method"], "exact");
    assert_eq!(e["log_likelihood"], v["train_log_likelihood"]);
    assert_eq!(e["log_z"], v["log_z"]);
    let assert = crate::common::ebm()
        .args(["evaluate", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args([
            "--method",
            "ais",
            "--ais-betas",
            "500",
            "--ais-runs",
            "20",
            "--json",
        ])
        .arg("--model")
        .arg(&model)
        .assert()
        .success();
    let a: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(a["method"], "ais");
    assert!(a["log_z_high"].as_f64().unwrap() >= a["log_z"].as_f64().unwrap());
}

#[test]
fn cli_bad_input_gives_clear_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let bas = digits_path("bars_stripes_4x4.txt");
    let run = |args: &[&str], needles: &[&str]| {
        let assert = crate::common::ebm()
            .args(args)
            .arg("--output")
            .arg(&model)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in needles {
            assert!(err.contains(n), "{err:?} does not mention {n:?}");
        }
        assert!(!model.exists());
    };
    run(
        &["train-rbm", "--data", &bas, "--learning-rate", "NaN"],
        &["learning-rate", "NaN"],
    );
    run(
        &["train-rbm", "--data", &bas, "--hidden", "0"],
        &["hidden", "0"],
    );
    run(
        &["train-rbm", "--data", &bas, "--learning-rate", "1e39"],
        &["learning-rate", "1e39"],
    );
    run(
        &[
            "train-rbm",
            "--data",
            &bas,
            "--hidden",
            "18446744073709551615",
        ],
        &["hidden", "too large"],
    );
    run(
        &[
            "train-rbm",
            "--data",
            &bas,
            "--persistent",
            "--chains",
            "1000000000000000",
        ],
        &["chains", "too large"],
    );
    // Divergence: a clear error and no model file with non-finite numbers.
    run(
        &["train-rbm", "--data", &bas, "--learning-rate", "1e30"],
        &["diverged at epoch 1", "--learning-rate"],
    );
    let empty = write(dir.path(), "empty.txt", "");
    run(
        &["train-rbm", "--data", empty.to_str().unwrap()],
        &["empty.txt", "empty"],
    );
    let bad = write(dir.path(), "bad.txt", "0101\n0121\n");
    run(
        &["train-rbm", "--data", bad.to_str().unwrap()],
        &["bad.txt", "line 2"],
    );
    // Width mismatch: a 16-unit model evaluated on 64-column digits.
    crate::common::ebm()
        .args([
            "train-rbm",
            "--data",
            &bas,
            "--hidden",
            "4",
            "--epochs",
            "1",
        ])
        .args(["--eval", "none", "--quiet", "--output"])
        .arg(&model)
        .assert()
        .success();
    let assert = crate::common::ebm()
        .args([
            "evaluate",
            "--data",
            &digits_path("digits_test.txt"),
            "--model",
        ])
        .arg(&model)
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("64 columns") && err.contains("16 visible"),
        "{err}"
    );
}

#[test]
fn cli_sample_rbm_writes_samples_and_a_tile_grid() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    crate::common::ebm()
        .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args([
            "--hidden", "8", "--epochs", "5", "--eval", "none", "--quiet", "--output",
        ])
        .arg(&model)
        .assert()
        .success();
    let (txt, png) = (dir.path().join("s.txt"), dir.path().join("s.png"));
    crate::common::ebm()
        .args([
            "sample", "--chains", "7", "--steps", "20", "--quiet", "--model",
        ])
        .arg(&model)
        .arg("--output")
        .arg(&txt)
        .arg("--image")
        .arg(&png)
        .assert()
        .success();
    let samples = ebm::io::datasets::read_dataset(&txt, None).unwrap();
    assert_eq!((samples.rows(), samples.cols()), (7, 16));
    let (w, h, _) = ebm::io::images::read_luma(&png).unwrap();
    // 3 x 3 grid of 4 x 4 tiles with 1-pixel gaps: 3 * 5 + 1 = 16.
    assert_eq!((w, h), (16, 16));
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_that_resumes() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let log = dir.path().join("log.csv");
    let bin = assert_cmd::cargo::cargo_bin("ebm");
    let child = std::process::Command::new(&bin)
        .args(["train-rbm", "--data", &digits_path("digits_train.txt")])
        .args([
            "--hidden",
            "16",
            "--persistent",
            "--epochs",
            "100000",
            "--lr-schedule",
            "constant",
            "--eval",
            "none",
            "--json",
        ])
        .arg("--log")
        .arg(&log)
        .arg("--output")
        .arg(&model)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few epochs are logged, then press Ctrl-C.
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) < 4 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Ctrl-C") && err.contains("--resume"), "{err}");
    // Exactly one JSON object, the report, saying so.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let file = ebm::io::safetensors::read_rbm(&model).unwrap();
    let done: usize = file.metadata["epochs_done"].parse().unwrap();
    assert_eq!(report["epochs"], done);
    assert!((3..100_000).contains(&done), "epochs_done = {done}");
    assert!(file.extra.contains_key("persistent_chains"));
    // Under the constant schedule --epochs may change (here: 2 epochs beyond the checkpoint
    // instead of 100000); the other settings come from the checkpoint.
    let more = (done + 2).to_string();
    crate::common::ebm()
        .args(["train-rbm", "--data", &digits_path("digits_train.txt")])
        .args(["--eval", "none", "--quiet", "--epochs", &more])
        .arg("--resume")
        .arg(&model)
        .arg("--log")
        .arg(&log)
        .arg("--output")
        .arg(&model)
        .assert()
        .success();
    let file = ebm::io::safetensors::read_rbm(&model).unwrap();
    assert_eq!(file.metadata["epochs_done"], more);
    // The log keeps its rows up to the checkpoint and continues: epochs 1 .. done + 2.
    let epochs: Vec<usize> = log_rows(&log)[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(epochs, (1..=done + 2).collect::<Vec<_>>());
}

// ---- hardening (issue 10) ----

/// Records what the library shows an observer, and stops the first likelihood evaluation.
#[derive(Default)]
struct BreakDuringEvaluation {
    final_state: Option<TrainState>,
    evaluation_steps: usize,
    epochs_seen: Vec<usize>,
}

impl ebm::learn::TrainObserver for BreakDuringEvaluation {
    fn on_epoch(&mut self, _s: &TrainState, stats: &ebm::learn::EpochStats) -> Control {
        self.epochs_seen.push(stats.epoch);
        Control::Continue
    }
    fn on_final_state(&mut self, state: &TrainState) -> Control {
        self.final_state = Some(state.clone());
        Control::Continue
    }
    fn on_evaluation_step(&mut self, _step: &ebm::progress::Step) -> Control {
        self.evaluation_steps += 1;
        Control::Break
    }
}

#[test]
fn the_final_state_is_handed_over_before_the_final_evaluation_which_can_be_stopped() {
    let data = bars_and_stripes();
    for evaluation in [
        Evaluation::Exact,
        Evaluation::Ais(AisParams {
            betas: 1000,
            runs: 10,
            seed: 1,
        }),
    ] {
        let params = CdParams {
            hidden: 6,
            epochs: 3,
            evaluation: Some(evaluation),
            ..CdParams::default()
        };
        let mut observer = BreakDuringEvaluation::default();
        let outcome = train_rbm(&data, None, &params, None, &mut observer).unwrap();
        assert!(outcome.interrupted && outcome.evaluation_interrupted);
        assert_eq!(observer.evaluation_steps, 1, "{evaluation:?}");
        // The whole training happened, and the observer had the final model before the
        // evaluation started; the last epoch is still reported, without likelihoods.
        assert_eq!(outcome.state.epoch, 3);
        assert_eq!(observer.final_state.as_ref(), Some(&outcome.state));
        assert_eq!(observer.epochs_seen, vec![1, 2, 3]);
        let last = outcome.history.last().unwrap();
        assert_eq!((last.log_z, last.train_log_likelihood), (None, None));
    }
}

/// Trains a small persistent-CD checkpoint (2 of 4 epochs) with the CLI in `dir`.
fn small_checkpoint(dir: &std::path::Path) -> std::path::PathBuf {
    let model = dir.join("ckpt.safetensors");
    crate::common::ebm()
        .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args([
            "--hidden",
            "4",
            "--persistent",
            "--chains",
            "5",
            "--epochs",
            "4",
        ])
        .args(["--stop-after", "2", "--eval", "none", "--quiet"])
        .arg("--output")
        .arg(&model)
        .assert()
        .success();
    model
}

#[test]
fn cli_resume_refuses_a_file_without_the_state_it_needs_and_names_what_is_missing() {
    use ebm::io::safetensors::{read_rbm, write_rbm};
    let dir = tempfile::tempdir().unwrap();
    let model = small_checkpoint(dir.path());
    let good = read_rbm(&model).unwrap();
    let broken = dir.path().join("broken.safetensors");
    let resume = |needle: &str| {
        let assert = crate::common::ebm()
            .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
            .args(["--eval", "none", "--quiet", "--resume"])
            .arg(&broken)
            .arg("--output")
            .arg(dir.path().join("out.safetensors"))
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(
            err.contains(needle) && err.contains("broken.safetensors"),
            "{err:?} does not name {needle:?} and the file"
        );
        assert!(!dir.path().join("out.safetensors").exists());
    };
    for tensor in [
        "velocity_weights",
        "velocity_visible_bias",
        "velocity_hidden_bias",
        "persistent_chains",
        "data_visible_means",
    ] {
        let mut file = good.clone();
        file.extra.remove(tensor);
        write_rbm(&broken, &file).unwrap();
        resume(&format!("tensor `{tensor}`"));
    }
    for key in ["epochs_done", "training"] {
        let mut file = good.clone();
        file.metadata.remove(key);
        write_rbm(&broken, &file).unwrap();
        resume(&format!("`{key}` metadata"));
    }
    let settings: serde_json::Value = serde_json::from_str(&good.metadata["training"]).unwrap();
    for key in [
        "epochs",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "cd_k",
        "persistent",
        "chains",
        "momentum",
        "weight_decay",
        "seed",
    ] {
        let mut s = settings.clone();
        s.as_object_mut().unwrap().remove(key);
        let mut file = good.clone();
        file.metadata.insert("training".into(), s.to_string());
        write_rbm(&broken, &file).unwrap();
        resume(&format!("setting `{key}`"));
    }
    // The complete file resumes.
    std::fs::copy(&model, &broken).unwrap();
    crate::common::ebm()
        .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args(["--eval", "none", "--quiet", "--resume"])
        .arg(&broken)
        .arg("--output")
        .arg(&broken)
        .assert()
        .success();
}

#[test]
fn cli_the_same_run_twice_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        crate::common::ebm()
            .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
            .args([
                "--hidden",
                "4",
                "--persistent",
                "--chains",
                "5",
                "--epochs",
                "3",
            ])
            .args(["--eval", "none", "--quiet", "--output"])
            .arg(&out)
            .assert()
            .success();
        std::fs::read(out).unwrap()
    };
    let first = run("a.safetensors");
    for k in 0..3 {
        assert!(
            run(&format!("b{k}.safetensors")) == first,
            "run {k} differs"
        );
    }
}

#[test]
fn cli_overflowing_rbm_parameters_are_refused_with_the_tensor_and_value_named() {
    use ebm::io::safetensors::encode_raw;
    use safetensors::tensor::Dtype;
    let dir = tempfile::tempdir().unwrap();
    let bytes = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    // Finite f64 values whose sums overflow: ln Z used to come out NaN (printed as null).
    let model = dir.path().join("huge.safetensors");
    let file = encode_raw(
        &[
            (
                "weights",
                Dtype::F64,
                vec![2, 2],
                bytes(&[1e308, 1e308, 0.5, 1e308]),
            ),
            ("visible_bias", Dtype::F64, vec![2], bytes(&[0.0, 0.0])),
            ("hidden_bias", Dtype::F64, vec![2], bytes(&[0.0, 0.0])),
        ],
        None,
    )
    .unwrap();
    std::fs::write(&model, file).unwrap();
    let data = write(dir.path(), "d.txt", "01\n11\n");
    for method in ["exact", "ais"] {
        let assert = crate::common::ebm()
            .args(["evaluate", "--json", "--method", method, "--model"])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .assert()
            .code(2);
        let out = assert.get_output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("huge.safetensors") && err.contains("weights[0] = 1e308"),
            "{err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("null"));
    }
}

#[test]
fn cli_a_folder_as_filters_and_mismatched_files_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let folder = dir.path().join("filters.png");
    std::fs::create_dir(&folder).unwrap();
    let bas = digits_path("bars_stripes_4x4.txt");
    let fails = |args: &[&str], needles: &[&str]| {
        let assert = crate::common::ebm()
            .args(args)
            .args(["--eval", "none", "--output"])
            .arg(&model)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in needles {
            assert!(err.contains(n), "{err:?} does not mention {n:?}");
        }
        assert!(!model.exists(), "a failed run left {}", model.display());
    };
    let folder_arg = folder.to_string_lossy().into_owned();
    fails(
        &["train-rbm", "--data", &bas, "--filters", &folder_arg],
        &["--filters", "filters.png", "folder"],
    );
    let narrow = write(dir.path(), "narrow.txt", "0101\n1100\n");
    let narrow_arg = narrow.to_string_lossy().into_owned();
    fails(
        &["train-rbm", "--data", &bas, "--test", &narrow_arg],
        &["narrow.txt", "4 columns", "bars_stripes_4x4.txt", "16"],
    );
    // A setting that conflicts with the checkpoint names the checkpoint file.
    let ckpt = small_checkpoint(dir.path());
    let ckpt_arg = ckpt.to_string_lossy().into_owned();
    fails(
        &[
            "train-rbm",
            "--data",
            &bas,
            "--resume",
            &ckpt_arg,
            "--batch-size",
            "3",
        ],
        &["--batch-size: 3", "ckpt.safetensors"],
    );
    fails(
        &["train-rbm", "--data", &narrow_arg, "--resume", &ckpt_arg],
        &["ckpt.safetensors", "narrow.txt", "16 visible units"],
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_the_final_evaluation_keeps_the_trained_model() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let bin = assert_cmd::cargo::cargo_bin("ebm");
    // One epoch, then an AIS evaluation far too long to finish before the signal arrives.
    let mut child = std::process::Command::new(&bin)
        .args(["train-rbm", "--data", &digits_path("bars_stripes_4x4.txt")])
        .args(["--hidden", "4", "--epochs", "2", "--json"])
        .args([
            "--eval",
            "ais",
            "--ais-betas",
            "100000000",
            "--ais-runs",
            "10",
        ])
        .arg("--output")
        .arg(&model)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !model.exists() {
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the model was not written before the final evaluation");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Ctrl-C") && err.contains("ebm evaluate"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["epochs"], 2);
    let file = ebm::io::safetensors::read_rbm(&model).unwrap();
    assert_eq!(file.metadata["epochs_done"], "2");
}

/// A made-up objective whose gradient is 1 for every parameter: the epoch loop must apply it
/// once per batch through the optimizer, whatever the estimator is.
struct ConstantAscent {
    calls: usize,
}

impl ebm::learn::GradientEstimator for ConstantAscent {
    fn gradient(
        &mut self,
        _model: &RbmF32,
        _batch: &[f32],
        _rngs: &mut [ebm::rng::EbmRng],
        grad: &mut ebm::learn::Gradient,
    ) {
        self.calls += 1;
        grad.weights.fill(1.0);
        grad.visible_bias.fill(1.0);
        grad.hidden_bias.fill(1.0);
    }
    fn streams(&self, batch_rows: usize) -> usize {
        batch_rows
    }
}

#[test]
fn a_new_objective_is_a_new_estimator_run_by_the_same_epoch_loop() {
    use ebm::learn::{start_state, train_with_estimator};
    let data = bars_and_stripes();
    let params = CdParams {
        hidden: 3,
        epochs: 4,
        batch_size: 7,
        learning_rate: 0.125,
        schedule: ebm::learn::LrSchedule::Constant,
        momentum: 0.0,
        weight_decay: 0.0,
        ..CdParams::default()
    };
    let start = start_state(&data, None, &params, None).unwrap();
    let mut estimator = ConstantAscent { calls: 0 };
    let out = train_with_estimator(
        &data,
        None,
        &params,
        start.clone(),
        &mut estimator,
        &mut Silent,
    )
    .unwrap();
    // 30 rows in batches of 7: 5 batches per epoch (the last of 2 rows).
    let steps = 4 * 5;
    assert_eq!(estimator.calls, steps);
    // Without momentum and decay every step adds lr * 1 = 0.125: 2.5 in all. Each of the 20
    // f32 additions at magnitudes below 4 rounds by at most 2.4e-7, hence the tolerance 1e-5.
    let moved = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(&x, &y)| (x - y - steps as f32 * 0.125).abs() < 1e-5)
    };
    assert!(moved(&out.state.model.weights, &start.model.weights));
    assert!(moved(
        &out.state.model.visible_bias,
        &start.model.visible_bias
    ));
    assert!(moved(
        &out.state.model.hidden_bias,
        &start.model.hidden_bias
    ));
    assert!(out.state.velocity_weights.iter().all(|&u| u == 0.125));
}

#[test]
fn cli_pseudo_likelihood_raises_the_exact_test_likelihood_and_contradicting_flags_are_refused() {
    use ebm::learn::cd::Objective;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pl.safetensors");
    let out = out.to_string_lossy();
    let train_path = digits_path("digits_train.txt");
    let test_path = digits_path("digits_test.txt");
    let run = |extra: &[&str]| {
        let mut cmd = crate::common::ebm();
        cmd.args(["train-rbm", "--data", &train_path, "--quiet"])
            .args(["--output", &out])
            .args(extra);
        cmd.assert()
    };
    let assert = run(&[
        "--test",
        &test_path,
        "--objective",
        "pseudo-likelihood",
        "--hidden",
        "16",
        "--epochs",
        "20",
        "--eval",
        "exact",
        "--json",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(v["objective"], "pseudo-likelihood");
    let trained = v["test_log_likelihood"].as_f64().unwrap();
    assert!(trained.is_finite());
    // The initial model of the same run (same seed, hidden units and init), measured exactly.
    let train = ebm::io::datasets::read_dataset(std::path::Path::new(&train_path), None).unwrap();
    let test = ebm::io::datasets::read_dataset(std::path::Path::new(&test_path), None).unwrap();
    let params = CdParams {
        hidden: 16,
        objective: Objective::PseudoLikelihood,
        ..CdParams::default()
    };
    let init = TrainState::init(&train, &params)
        .unwrap()
        .model
        .to_rbm()
        .unwrap();
    let initial = average_log_likelihood(&init, &test, rbm_log_partition(&init).unwrap()).unwrap();
    // The initial model is the data's independent marginals; 20 epochs of exact PL must gain
    // clearly over it (a 1-nat margin; the run is seeded, the figures exact).
    assert!(
        trained > initial + 1.0,
        "initial {initial}, trained {trained}"
    );
    // The checkpoint resumes with its objective, and refuses another one.
    let assert = run(&[
        "--resume",
        &out,
        "--epochs",
        "20",
        "--objective",
        "ratio-matching",
    ])
    .code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("--objective") && err.contains("pseudo-likelihood"),
        "{err}"
    );
    // Flags that contradict the objective or do not apply to it.
    for (args, names) in [
        (
            &["--objective", "cd", "--persistent"][..],
            &["--objective cd", "--persistent"][..],
        ),
        (
            &["--objective", "pseudo-likelihood", "--persistent"],
            &["--objective pseudo-likelihood", "--persistent"],
        ),
        (
            &["--objective", "pseudo-likelihood", "--cd-k", "3"],
            &["--cd-k", "pseudo-likelihood"],
        ),
        (
            &["--objective", "ratio-matching", "--chains", "50"],
            &["--chains", "ratio-matching"],
        ),
    ] {
        let assert = run(args).code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in names {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
}

#[test]
fn cli_pseudo_likelihood_resumed_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let train_path = digits_path("digits_train.txt");
    let run = |extra: &[&str], output: &str| {
        crate::common::ebm()
            .args([
                "train-rbm",
                "--data",
                &train_path,
                "--quiet",
                "--eval",
                "none",
            ])
            .args(["--output", output])
            .args(extra)
            .assert()
            .success();
    };
    let settings = [
        "--hidden",
        "16",
        "--objective",
        "pseudo-likelihood",
        "--epochs",
        "6",
    ];
    run(&settings, &out("full.safetensors"));
    run(
        &[&settings[..], &["--stop-after", "3"]].concat(),
        &out("half.safetensors"),
    );
    // The objective comes from the checkpoint.
    run(
        &["--resume", &out("half.safetensors")],
        &out("half.safetensors"),
    );
    assert_eq!(
        std::fs::read(out("full.safetensors")).unwrap(),
        std::fs::read(out("half.safetensors")).unwrap()
    );
}

#[test]
fn cli_nce_reports_its_log_z_resumes_exactly_and_refuses_a_bad_nce_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let train_path = digits_path("digits_train.txt");
    let run = |extra: &[&str], output: &str| {
        let mut cmd = crate::common::ebm();
        cmd.args(["train-rbm", "--data", &train_path, "--quiet"])
            .args(["--output", output])
            .args(extra);
        cmd.assert()
    };
    let settings = [
        "--hidden",
        "8",
        "--objective",
        "nce",
        "--nce-ratio",
        "2",
        "--epochs",
        "6",
    ];
    let assert = run(
        &[&settings[..], &["--eval", "exact", "--json"]].concat(),
        &out("full.safetensors"),
    )
    .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(v["objective"], "nce");
    let c = v["nce_log_z"].as_f64().unwrap();
    assert!(c.is_finite() && v["log_z"].as_f64().unwrap().is_finite());
    // The learned c is in the checkpoint, and a run stopped and resumed (objective, ratio and
    // c taken from the checkpoint), on 1 thread instead of all, equals one run, byte for byte.
    let full =
        ebm::io::safetensors::read_rbm(std::path::Path::new(&out("full.safetensors"))).unwrap();
    assert_eq!(full.extra["nce_log_z"].data, vec![c]);
    run(
        &[
            &settings[..],
            &["--eval", "none", "--stop-after", "3", "--threads", "1"],
        ]
        .concat(),
        &out("half.safetensors"),
    )
    .success();
    run(
        &[
            "--resume",
            &out("half.safetensors"),
            "--eval",
            "exact",
            "--threads",
            "1",
        ],
        &out("half.safetensors"),
    )
    .success();
    assert!(
        std::fs::read(out("full.safetensors")).unwrap()
            == std::fs::read(out("half.safetensors")).unwrap(),
        "the resumed NCE run differs from the uninterrupted one"
    );
    // Another objective reports no c.
    let assert = run(
        &["--hidden", "8", "--epochs", "1", "--eval", "none", "--json"],
        &out("cd.safetensors"),
    )
    .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert!(v["nce_log_z"].is_null(), "{v}");
    // --nce-ratio with another objective, and a ratio of 0, are refused as bad flags.
    for (args, names) in [
        (
            &["--objective", "pseudo-likelihood", "--nce-ratio", "2"][..],
            &["--nce-ratio", "pseudo-likelihood"][..],
        ),
        (&["--nce-ratio", "3"], &["--nce-ratio", "cd"]),
        (
            &["--objective", "nce", "--nce-ratio", "0"],
            &["nce-ratio", "got 0"],
        ),
    ] {
        let assert = run(args, &out("bad.safetensors")).code(2);
        let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        for n in names {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
}

// ---- the objective column of --log (issue 11) ----

/// Mean over the rows of `data` of sum_i ln sigmoid(F(v^(i)) - F(v)) (pseudo-log-likelihood) and
/// of sum_i sigmoid(F(v) - F(v^(i)))^2 (ratio-matching loss), by brute force over the flips.
fn flip_objectives(rbm: &Rbm, data: &Dataset) -> (f64, f64) {
    let (mut pl, mut rm) = (0.0, 0.0);
    for r in 0..data.rows() {
        let v = data.row(r).to_vec();
        let f = rbm.free_energy(&v);
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 1;
            let d = rbm.free_energy(&w) - f;
            pl += sigmoid(d).ln();
            rm += sigmoid(-d).powi(2);
        }
    }
    (pl / data.rows() as f64, rm / data.rows() as f64)
}

/// With a learning rate of 1e-9 the parameters move by ~1e-9 over an epoch, so the logged
/// objective (each batch's value before its update, averaged over the epoch) equals the
/// objective of the saved model on the whole training set up to f32 rounding of the kernels
/// (relative 1e-4 allows it; a wrong sign, a missing term or a per-batch sum instead of a mean
/// is off by far more). CD has no objective: the column is empty.
#[test]
fn the_log_carries_each_objectives_value_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = digits_path("bars_stripes_4x4.txt");
    let data = ebm::io::datasets::read_dataset(std::path::Path::new(&data_path), None).unwrap();
    for (objective, column) in [("pseudo-likelihood", 0), ("ratio-matching", 1), ("cd", 2)] {
        let (log, model) = (dir.path().join("l.csv"), dir.path().join("m.safetensors"));
        crate::common::ebm()
            .args(["train-rbm", "--data", &data_path, "--objective", objective])
            .args(["--hidden", "4", "--epochs", "1", "--learning-rate", "1e-9"])
            .args(["--eval", "none", "--quiet", "--batch-size", "7"])
            .arg("--log")
            .arg(&log)
            .arg("--output")
            .arg(&model)
            .assert()
            .success();
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines = text.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .ends_with(",seconds,objective,ais_ess")
        );
        let logged = lines
            .next()
            .unwrap()
            .rsplit(',')
            .nth(1)
            .unwrap()
            .to_string();
        let rbm = ebm::io::safetensors::read_rbm(&model).unwrap().rbm;
        let (pl, rm) = flip_objectives(&rbm, &data);
        match column {
            0 | 1 => {
                let want = if column == 0 { pl } else { rm };
                let got: f64 = logged.parse().unwrap();
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs(),
                    "{objective}: logged {got}, brute force {want}"
                );
            }
            _ => assert_eq!(logged, "", "CD has no objective"),
        }
    }
}

/// Logs written before the `ais_ess` column existed, and before the `objective` column too
/// (header and rows without them), are resumed: their rows are kept with those columns empty,
/// and the new rows have the objective.
#[test]
fn a_log_without_the_newer_columns_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = digits_path("bars_stripes_4x4.txt");
    let (log, model) = (dir.path().join("l.csv"), dir.path().join("m.safetensors"));
    let train = |epochs: &str, resume: bool| {
        let mut cmd = crate::common::ebm();
        cmd.args([
            "train-rbm",
            "--data",
            &data_path,
            "--objective",
            "pseudo-likelihood",
        ])
        .args([
            "--hidden",
            "4",
            "--epochs",
            epochs,
            "--lr-schedule",
            "constant",
        ])
        .args(["--eval", "none", "--quiet"]);
        if resume {
            cmd.arg("--resume").arg(&model);
        }
        cmd.arg("--log")
            .arg(&log)
            .arg("--output")
            .arg(&model)
            .assert()
            .success();
    };
    // Dropping the last column gives the log without `ais_ess`, the last two the one without
    // `objective` either.
    for dropped in [1, 2] {
        train("2", false);
        let old: String = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| {
                let mut l = l;
                for _ in 0..dropped {
                    l = l.rsplit_once(',').unwrap().0;
                }
                format!("{l}\n")
            })
            .collect();
        std::fs::write(&log, &old).unwrap();
        train("3", true);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with(",seconds,objective,ais_ess"));
        for (k, line) in lines[1..].iter().enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 11, "{line}");
            assert_eq!(fields[10], "", "no AIS evaluation: {line}");
            if k < 2 && dropped == 2 {
                assert_eq!(fields[9], "", "old row {line}");
            } else {
                assert!(fields[9].parse::<f64>().unwrap() < 0.0, "row {line}");
            }
        }
        std::fs::remove_file(&log).unwrap();
        std::fs::remove_file(&model).unwrap();
    }
}

/// `train-rbm --eval ais` reports the effective sample size of the last evaluation's AIS
/// weights and flags it, with a warning on stderr even with --json, when it is below
/// max(10, runs / 10). Fixed seed: 1000 epochs at learning rate 1 on the 30 bars-and-stripes
/// patterns make a sharp 16 x 8 RBM (exact ln Z about 99); annealed in 2 steps its 100 weights
/// have an ESS of a few runs and ln Z comes out more than a nat low, while 5000 steps give an
/// ESS of about 77 and an interval around the exact value (checked by `evaluate --method exact`).
#[test]
fn train_rbm_ais_evaluation_reports_and_flags_its_effective_sample_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let data = project_root().join("data/bars_stripes_4x4.txt");
    let log = dir.path().join("log.csv");
    let train = |betas: &str| {
        let out = ebm()
            .args(["train-rbm", "--hidden", "8", "--epochs", "1000"])
            .args(["--learning-rate", "1", "--eval", "ais", "--ais-runs", "100"])
            .args(["--ais-betas", betas, "--seed", "1", "--json", "--data"])
            .arg(&data)
            .arg("--output")
            .arg(&model)
            .arg("--log")
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let exact = |model: &std::path::Path| {
        let out = ebm()
            .args(["evaluate", "--method", "exact", "--json", "--model"])
            .arg(model)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        r["log_z"].as_f64().unwrap()
    };
    let (short, stderr) = train("2");
    let ess = short["ais_ess"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&ess), "ESS {ess}");
    // The log's last row (the final evaluation) has the same ESS; earlier rows have none.
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 1001, "header and 1000 epochs");
    let logged: f64 = rows[1000].rsplit(',').next().unwrap().parse().unwrap();
    assert_eq!(logged, ess);
    assert!(rows[999].ends_with(','), "{}", rows[999]);
    assert_eq!(short["ais_unreliable"], true);
    assert!(
        stderr.contains("warning") && stderr.contains("--ais-betas"),
        "{stderr}"
    );
    let truth = exact(&model);
    assert!(
        short["log_z"].as_f64().unwrap() < truth - 0.5,
        "{short} vs {truth}"
    );
    let (long, stderr) = train("5000");
    let ess = long["ais_ess"].as_f64().unwrap();
    assert!((10.0..=100.0).contains(&ess), "ESS {ess}");
    assert_eq!(long["ais_unreliable"], false);
    assert!(!stderr.contains("warning"), "{stderr}");
    let truth = exact(&model);
    let (low, high) = (
        long["log_z_low"].as_f64().unwrap(),
        long["log_z_high"].as_f64().unwrap(),
    );
    assert!(low <= truth && truth <= high, "{low} .. {high} vs {truth}");
}
