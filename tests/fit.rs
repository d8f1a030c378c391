//! `ebm fit` and `ebm::learn::fit`: pseudo-likelihood recovery of planted couplings, thread
//! independence and the refusals of the command line.

use crate::common::ebm;
use ebm::dataset::Dataset;
use ebm::learn::fit::{FitParams, complete_edges, fit_pseudo_likelihood};
use ebm::rng::{from_seed, uniform_f64};

const SPINS: usize = 6;

/// A 6-spin complete model with couplings and fields uniform in [-0.5, 0.5) (fixed seed):
/// (fields, couplings in the order of `complete_edges(6)`).
fn planted() -> (Vec<f64>, Vec<f64>) {
    let mut rng = from_seed(2024);
    let fields = (0..SPINS).map(|_| uniform_f64(&mut rng) - 0.5).collect();
    let couplings = complete_edges(SPINS)
        .iter()
        .map(|_| uniform_f64(&mut rng) - 0.5)
        .collect();
    (fields, couplings)
}

/// `examples` states drawn exactly from the planted model: the 2^6 probabilities by
/// enumeration, then inverse-CDF sampling (bit k of the state index is spin k).
fn draw(examples: usize, seed: u64) -> Dataset {
    let (fields, couplings) = planted();
    let edges = complete_edges(SPINS);
    let spin = |x: usize, i: usize| if x >> i & 1 == 1 { 1.0 } else { -1.0 };
    let weights: Vec<f64> = (0..1usize << SPINS)
        .map(|x| {
            let mut minus_energy = 0.0;
            for (i, h) in fields.iter().enumerate() {
                minus_energy += h * spin(x, i);
            }
            for (&(i, j), w) in edges.iter().zip(&couplings) {
                minus_energy += w * spin(x, i) * spin(x, j);
            }
            minus_energy.exp()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut rng = from_seed(seed);
    let mut bits = Vec::with_capacity(examples * SPINS);
    for _ in 0..examples {
        let u = uniform_f64(&mut rng);
        let x = cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1);
        bits.extend((0..SPINS).map(|i| (x >> i & 1) as u8));
    }
    Dataset::new(examples, SPINS, bits).unwrap()
}

/// Root-mean-square difference between fitted and planted couplings.
fn coupling_error(examples: usize) -> f64 {
    let (_, planted) = planted();
    let params = FitParams::default();
    let out = fit_pseudo_likelihood(&draw(examples, 7), &complete_edges(SPINS), &params).unwrap();
    assert!(out.converged, "N = {examples}: not converged");
    assert!(
        out.gradient_norm <= params.tolerance,
        "N = {examples}: gradient norm {} above the tolerance",
        out.gradient_norm
    );
    let fitted = out.model.edges();
    assert_eq!(fitted.len(), planted.len());
    let sq: f64 = fitted
        .iter()
        .zip(&planted)
        .map(|(&(_, _, w), p)| (w - p).powi(2))
        .sum();
    (sq / planted.len() as f64).sqrt()
}

#[test]
fn pseudo_likelihood_recovers_planted_couplings_at_rate_one_over_sqrt_n() {
    // Pseudo-likelihood is consistent and asymptotically normal, so the coupling error scales
    // like 1/sqrt(N): from N = 2000 to 32000 the expected RMS error falls by sqrt(16) = 4. The
    // RMS over 15 couplings fluctuates (its square is roughly a scaled chi-square with 15
    // degrees of freedom, relative spread sqrt(2/15) = 0.37, so about 0.18 on the RMS), so the
    // ratio of the two errors is 0.25 give or take about 0.07; asserting < 0.5 leaves more than
    // three spreads of room while still failing for an estimator whose error does not shrink
    // (ratio ~ 1) or shrinks only like N^-1/4 (ratio 0.5).
    let small = coupling_error(2000);
    let large = coupling_error(32000);
    assert!(small > 0.0 && large > 0.0);
    assert!(
        large < 0.5 * small,
        "error at N = 32000 ({large}) is not below half the error at N = 2000 ({small})"
    );
}

fn write_data(dir: &std::path::Path, data: &Dataset) -> std::path::PathBuf {
    let mut text = String::new();
    for row in data.iter_rows() {
        text.extend(row.iter().map(|&b| if b == 1 { '1' } else { '0' }));
        text.push('\n');
    }
    let path = dir.join("data.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn fit_output_is_identical_for_one_and_two_threads_and_readable_by_partition() {
    let dir = tempfile::tempdir().unwrap();
    // More than one chunk of 256 examples, so the parallel reduction is exercised.
    let data = write_data(dir.path(), &draw(1500, 3));
    let mut outputs = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("fit{threads}.uai"));
        ebm()
            .args(["fit", "--graph", "complete", "--threads", threads, "--json"])
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(&out)
            .assert()
            .success()
            .stdout(predicates::str::contains("\"gradient_norm\""));
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "--threads 1 and 2 wrote different models"
    );
    ebm()
        .args(["partition", "--model"])
        .arg(dir.path().join("fit1.uai"))
        .assert()
        .success();
}

#[test]
fn fit_refuses_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), &draw(50, 3));
    let out = dir.path().join("out.uai");
    let arity3 = dir.path().join("arity3.uai");
    std::fs::write(
        &arity3,
        "MARKOV\n6\n2 2 2 2 2 2\n1\n3 0 1 2\n\n8\n1 1 1 1 1 1 1 1\n",
    )
    .unwrap();
    let five = dir.path().join("five.uai");
    std::fs::write(&five, "MARKOV\n5\n2 2 2 2 2\n1\n2 0 1\n\n4\n1 2 2 1\n").unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--graph".into(),
                "lattice".into(),
                "--width".into(),
                "4".into(),
                "--height".into(),
                "2".into(),
            ],
            "--width",
        ),
        (
            vec![
                "--graph".into(),
                "complete".into(),
                "--l2".into(),
                "-1".into(),
            ],
            "--l2",
        ),
        (
            vec![
                "--graph".into(),
                "complete".into(),
                "--tolerance".into(),
                "-0.001".into(),
            ],
            "--tolerance",
        ),
        (
            vec!["--structure".into(), arity3.to_string_lossy().into()],
            "--structure",
        ),
        (
            vec!["--structure".into(), five.to_string_lossy().into()],
            "--structure",
        ),
    ];
    for (extra, flag) in cases {
        let assert = ebm()
            .arg("fit")
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(&out)
            .args(&extra)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(
            stderr.contains(flag),
            "{extra:?}: stderr does not name {flag}: {stderr}"
        );
    }
    ebm()
        .args(["fit", "--graph", "complete", "--data"])
        .arg(&empty)
        .arg("--output")
        .arg(&out)
        .assert()
        .code(2);
    assert!(!out.exists(), "a refused run wrote its output");
}

#[test]
fn mean_field_fit_writes_a_readable_model_and_refuses_a_constant_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), &draw(32000, 5));
    let out = dir.path().join("mf.uai");
    ebm()
        .args([
            "fit",
            "--graph",
            "complete",
            "--method",
            "mean-field",
            "--json",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("\"method\":\"mean-field\""));
    ebm()
        .args(["partition", "--model"])
        .arg(&out)
        .assert()
        .success();
    // A constant column has zero variance: the covariance is singular, refused with exit 2.
    let constant = dir.path().join("constant.txt");
    std::fs::write(&constant, "101\n110\n100\n111\n").unwrap();
    let assert = ebm()
        .args([
            "fit",
            "--graph",
            "complete",
            "--method",
            "mean-field",
            "--data",
        ])
        .arg(&constant)
        .arg("--output")
        .arg(dir.path().join("c.uai"))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("singular"), "{stderr}");
}

#[test]
fn l1_and_asymmetric_pl_fits_are_identical_for_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), &draw(3000, 11));
    for method in ["pseudo-likelihood", "asymmetric-pl"] {
        let mut outputs = Vec::new();
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("{method}{threads}.uai"));
            let assert = ebm()
                .args(["fit", "--graph", "complete", "--l1", "0.01", "--json"])
                .args(["--method", method, "--threads", threads])
                .arg("--data")
                .arg(&data)
                .arg("--output")
                .arg(&out)
                .assert()
                .success();
            let report: serde_json::Value =
                serde_json::from_slice(&assert.get_output().stdout).unwrap();
            assert_eq!(report["method"], method);
            assert_eq!(report["l1"], 0.01);
            assert_eq!(report["converged"], true, "{method}: {report}");
            outputs.push(std::fs::read(&out).unwrap());
        }
        assert_eq!(outputs[0], outputs[1], "{method}: --threads 1 and 2 differ");
    }
}

#[test]
fn l1_is_refused_when_negative_or_with_mean_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), &draw(200, 3));
    for extra in [
        vec!["--l1", "-0.5"],
        vec!["--l1", "0.1", "--method", "mean-field"],
    ] {
        let assert = ebm()
            .args(["fit", "--graph", "complete"])
            .args(&extra)
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(dir.path().join("out.uai"))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(stderr.contains("--l1"), "{extra:?}: {stderr}");
    }
}
