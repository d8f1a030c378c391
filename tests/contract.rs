//! The command-line contract under attack: outputs checked as one plan before any work and
//! written only after success, one JSON object on stdout in every case, no abort when stderr or
//! stdout is broken, and one rule for exit codes (2: bad input or flags, 1: runtime failure).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::ebm;
use predicates::prelude::*;

/// The files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The `ebm` binary as a plain `std::process::Command` (for stdio redirections).
fn ebm_plain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ebm"))
}

/// A writable handle on `/dev/full` (every write fails with ENOSPC).
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
}

const SMALL_ISING: [&str; 8] = [
    "sample", "ising", "--width", "4", "--height", "4", "--sweeps", "50",
];

#[test]
fn two_outputs_naming_the_same_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.png");
    let noisy = dir.path().join("noisy.png");
    ebm()
        .args([
            "noise",
            "--input",
            "data/images/shapes.png",
            "--flip",
            "0.1",
        ])
        .arg("--output")
        .arg(&noisy)
        .assert()
        .success();
    ebm()
        .args(["denoise", "--method", "gibbs", "--sweeps", "2", "--input"])
        .arg(&noisy)
        .arg("--output")
        .arg(&x)
        .arg("--marginals")
        // The same file through another spelling of its folder.
        .arg(dir.path().join(".").join("x.png"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--output")
                .and(predicate::str::contains("--marginals"))
                .and(predicate::str::contains("same file")),
        );
    let t = dir.path().join("t.png");
    ebm()
        .args(SMALL_ISING)
        .arg("--image")
        .arg(&t)
        .arg("--trace")
        .arg(&t)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("same file"));
    assert_eq!(listing(dir.path()), ["noisy.png"]);
}

#[test]
fn an_output_with_the_wrong_extension_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    ebm()
        .args(SMALL_ISING)
        .arg("--trace")
        .arg(dir.path().join("trace.png"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--trace").and(predicate::str::contains(".csv")));
    let models = tempfile::tempdir().unwrap();
    let rbm_file = models.path().join("m.safetensors");
    let rbm = ebm::model::Rbm::new(4, 1, vec![0.0; 4], vec![0.0; 4], vec![0.0]).unwrap();
    ebm::io::safetensors::write_rbm(&rbm_file, &ebm::io::safetensors::RbmFile::new(rbm)).unwrap();
    ebm()
        .args(["sample", "--model"])
        .arg(&rbm_file)
        .arg("--image")
        .arg(dir.path().join("grid.pbm"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--image").and(predicate::str::contains(".png")));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_missing_output_folder_fails_every_writer_with_status_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = d.join("ok.png");
    let nodir = d.join("nodir");
    let cases: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        (
            "--trace",
            SMALL_ISING
                .iter()
                .map(Into::into)
                .chain([
                    "--image".into(),
                    ok.clone().into(),
                    "--trace".into(),
                    nodir.join("t.csv").into(),
                ])
                .collect(),
        ),
        (
            "--output",
            [
                "noise",
                "--input",
                "data/images/shapes.png",
                "--flip",
                "0.1",
            ]
            .iter()
            .map(Into::into)
            .chain(["--output".into(), nodir.join("n.png").into()])
            .collect(),
        ),
        (
            "--marginals",
            [
                "denoise",
                "--input",
                "data/images/shapes.png",
                "--method",
                "gibbs",
            ]
            .iter()
            .map(Into::into)
            .chain([
                "--output".into(),
                ok.clone().into(),
                "--marginals".into(),
                nodir.join("m.png").into(),
            ])
            .collect(),
        ),
        (
            "--log",
            ["train-rbm", "--data", "data/bars_stripes_4x4.txt"]
                .iter()
                .map(Into::into)
                .chain([
                    "--output".into(),
                    d.join("m.safetensors").into(),
                    "--log".into(),
                    nodir.join("log.csv").into(),
                ])
                .collect(),
        ),
    ];
    for (flag, args) in cases {
        ebm()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(flag).and(predicate::str::contains("does not exist")));
        assert!(listing(d).is_empty(), "{flag}: {:?}", listing(d));
    }
}

#[test]
fn train_rbm_refuses_a_folder_as_filters_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let filters = dir.path().join("filters.png");
    std::fs::create_dir(&filters).unwrap();
    let model = dir.path().join("m.safetensors");
    ebm()
        .args([
            "train-rbm",
            "--data",
            "data/bars_stripes_4x4.txt",
            "--epochs",
            "1",
        ])
        .arg("--output")
        .arg(&model)
        .arg("--filters")
        .arg(&filters)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--filters").and(predicate::str::contains("folder")));
    assert!(!model.exists());
    assert_eq!(listing(dir.path()), ["filters.png"]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_result_that_cannot_be_printed_fails_and_keeps_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("noisy.png");
    let status = ebm_plain()
        .args([
            "noise",
            "--input",
            "data/images/shapes.png",
            "--flip",
            "0.1",
        ])
        .arg("--output")
        .arg(&out)
        .arg("--json")
        .stdout(dev_full())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    // The same run with a working stdout writes the file.
    ebm()
        .args([
            "noise",
            "--input",
            "data/images/shapes.png",
            "--flip",
            "0.1",
        ])
        .arg("--output")
        .arg(&out)
        .arg("--json")
        .assert()
        .success();
    assert_eq!(listing(dir.path()), ["noisy.png"]);
}

/// Parses stdout as exactly one JSON object (one line).
fn one_object(stdout: &[u8]) -> serde_json::Value {
    let text = std::str::from_utf8(stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "not one line: {text:?}");
    serde_json::from_str(text).unwrap()
}

#[test]
fn json_errors_are_one_object_with_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // clap's own refusals, --json before or after the subcommand.
        (vec!["--json", "noise", "--flip", "x"], 2, "--flip"),
        (
            vec!["info", "--json", "--no-such-flag"],
            2,
            "--no-such-flag",
        ),
        (vec!["--json"], 2, "subcommand"),
        (
            vec!["--threads", "2000", "info", "x", "--json"],
            2,
            "--threads",
        ),
        // The command's own refusals and runtime failures.
        (
            vec![
                "noise",
                "--input",
                "data/images/shapes.png",
                "--flip",
                "2",
                "--output",
                "n.png",
                "--json",
            ],
            2,
            "--flip",
        ),
        (
            vec!["info", "no_such_file.txt", "--json"],
            1,
            "no_such_file.txt",
        ),
    ];
    for (args, code, needle) in cases {
        let out = ebm()
            .current_dir(crate::common::project_root())
            .args(&args)
            .assert()
            .code(code);
        let v = one_object(&out.get_output().stdout);
        let message = v["error"].as_str().unwrap();
        assert!(message.contains(needle), "{args:?}: {message}");
        assert_eq!(v["exit_code"], code, "{args:?}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{args:?}: {v}");
    }
    // Without --json stdout stays empty, and --help / --version are unchanged.
    ebm()
        .args(["info", "no_such_file.txt"])
        .assert()
        .code(1)
        .stdout("");
    ebm()
        .args(["--json", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage"));
    ebm()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("ebm "));
    assert!(listing(dir.path()).is_empty());
}

/// Human text on a stderr that is a full device or a closed pipe never aborts the run: the
/// exit status is that of the command (a panic would give 101, or 134 in a release build).
#[cfg(target_os = "linux")]
#[test]
fn a_broken_stderr_never_aborts_the_run() {
    let status = |args: &[&str], stderr: Stdio| {
        ebm_plain()
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .unwrap()
            .code()
    };
    // An error message, and a success's summary, on a full stderr.
    assert_eq!(
        status(&["info", "no_such_file.txt"], dev_full().into()),
        Some(1)
    );
    assert_eq!(
        status(&["info", "data/digits_test.txt"], dev_full().into()),
        Some(0)
    );
    // The same on a closed pipe (`2>&1 | head` after head has gone).
    for (args, code) in [
        (&["info", "no_such_file.txt"][..], 1),
        (&["info", "data/digits_test.txt"][..], 0),
        (
            &[
                "sample", "ising", "--width", "4", "--height", "4", "--sweeps", "20",
            ][..],
            0,
        ),
    ] {
        let mut child = ebm_plain()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        assert_eq!(child.wait().unwrap().code(), Some(code), "{args:?}");
    }
}

/// A result that cannot be written to stdout (ENOSPC) exits 1; a closed stdout pipe
/// (`ebm ... --json | head -c 1`) keeps exit status 0.
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_stdout_fails_but_a_closed_pipe_does_not() {
    let args = ["info", "data/digits_test.txt", "--json"];
    let out = ebm_plain()
        .args(args)
        .stdout(dev_full())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdout"));
    let mut child = ebm_plain()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The CLI reads the gzip cap from EBM_MAX_DECOMPRESSED_BYTES and says how to raise it; a
/// refusal is a runtime failure (exit 1), a bad value of the variable is bad input (exit 2).
#[test]
fn the_gzip_cap_is_set_by_the_environment_and_named_in_the_refusal() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..1000 {
        enc.write_all(b"0110\n").unwrap();
    }
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let run = |cap: &str| {
        ebm()
            .env("EBM_MAX_DECOMPRESSED_BYTES", cap)
            .arg("info")
            .arg(&path)
            .assert()
    };
    run("4999").code(1).stderr(
        predicate::str::contains("too large")
            .and(predicate::str::contains("EBM_MAX_DECOMPRESSED_BYTES")),
    );
    run("5000").success();
    run("lots")
        .code(2)
        .stderr(predicate::str::contains("EBM_MAX_DECOMPRESSED_BYTES"));
    ebm().arg("info").arg(&path).assert().success();
}

#[test]
fn threads_above_1024_are_refused() {
    ebm()
        .args(["--threads", "1025", "info", "data/digits_test.txt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--threads").and(predicate::str::contains("1024")));
    ebm()
        .args(["--threads", "3", "info", "data/digits_test.txt"])
        .assert()
        .success();
}

/// Every command's exit status follows one rule: 2 for bad input or flags (a missing output
/// folder included), 1 for a runtime failure (a missing input file, a job too large). With
/// `--json` the same status is in the one object on stdout.
#[test]
fn exit_codes_follow_one_rule_in_every_command() {
    use ebm::io::safetensors::{RbmFile, write_rbm};
    use ebm::model::Rbm;
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(d("bad.uai"), "MARKOV\n2\n2 3\n").unwrap();
    let rbm = Rbm::new(4, 2, vec![0.0; 8], vec![0.0; 4], vec![0.0; 2]).unwrap();
    write_rbm(Path::new(&d("m.safetensors")), &RbmFile::new(rbm.clone())).unwrap();
    let mut bad_meta = RbmFile::new(rbm);
    bad_meta
        .metadata
        .insert("training".into(), "{not json".into());
    bad_meta.metadata.insert("epochs_done".into(), "1".into());
    write_rbm(Path::new(&d("badmeta.safetensors")), &bad_meta).unwrap();
    std::fs::write(d("four.txt"), "0101\n1100\n").unwrap();
    let nodir = |name: &str| d(&format!("no_such_folder/{name}"));
    let ising = ["ising", "--width", "4", "--height", "4"];
    let shapes = "data/images/shapes.png";
    #[rustfmt::skip]
    let table: Vec<(Vec<String>, i32, &str)> = [
        (vec!["info".into(), d("bad.uai")], 2, "cardinality 3"),
        (vec!["info".into(), d("none.txt")], 1, "none.txt"),
        (vec!["noise".into(), "--input".into(), shapes.into(), "--flip".into(), "2".into(), "--output".into(), d("n.png")], 2, "--flip"),
        (vec!["noise".into(), "--input".into(), shapes.into(), "--flip".into(), "0.1".into(), "--output".into(), nodir("n.png")], 2, "--output"),
        (vec!["noise".into(), "--input".into(), d("none.png"), "--flip".into(), "0.1".into(), "--output".into(), d("n.png")], 1, "none.png"),
        ([&["partition"][..], &ising, &["--beta", "NaN"]].concat().iter().map(|s| s.to_string()).collect(), 2, "--beta"),
        (vec!["partition".into(), "--model".into(), d("bad.uai")], 2, "bad.uai"),
        ([&["partition"][..], &["ising", "--width", "100", "--height", "100", "--method", "enumerate"]].concat().iter().map(|s| s.to_string()).collect(), 1, "too large"),
        ([&["sample"][..], &ising, &["--sweeps", "0"]].concat().iter().map(|s| s.to_string()).collect(), 2, "--sweeps"),
        ([&["sample"][..], &ising, &["--image", &nodir("x.png")]].concat().iter().map(|s| s.to_string()).collect(), 2, "--image"),
        (vec!["sample".into(), "--model".into(), d("m.safetensors"), "--output".into(), nodir("s.txt")], 2, "--output"),
        (vec!["sample".into(), "--model".into(), d("none.uai")], 1, "none.uai"),
        (vec!["train-rbm".into(), "--data".into(), d("four.txt"), "--output".into(), d("m.bin")], 2, ".safetensors"),
        (vec!["train-rbm".into(), "--data".into(), d("four.txt"), "--output".into(), d("t.safetensors"), "--log".into(), nodir("log.csv")], 2, "--log"),
        (vec!["train-rbm".into(), "--data".into(), d("four.txt"), "--output".into(), d("t.safetensors"), "--resume".into(), d("badmeta.safetensors")], 2, "bad `training` metadata"),
        (vec!["train-rbm".into(), "--data".into(), d("none.txt"), "--output".into(), d("t.safetensors")], 1, "none.txt"),
        (vec!["evaluate".into(), "--model".into(), d("m.safetensors"), "--data".into(), "data/digits_test.txt".into()], 2, "size mismatch"),
        (vec!["evaluate".into(), "--model".into(), d("m.safetensors"), "--data".into(), d("four.txt"), "--method".into(), "magic".into()], 2, "--method"),
        (vec!["evaluate".into(), "--model".into(), d("none.safetensors"), "--data".into(), d("four.txt")], 1, "none.safetensors"),
        (vec!["denoise".into(), "--input".into(), shapes.into(), "--beta".into(), "NaN".into(), "--output".into(), d("r.png")], 2, "--beta"),
        (vec!["denoise".into(), "--input".into(), shapes.into(), "--output".into(), nodir("r.png")], 2, "--output"),
        (vec!["denoise".into(), "--input".into(), d("none.png"), "--output".into(), d("r.png")], 1, "none.png"),
    ]
    .into_iter()
    .collect();
    let commands: std::collections::BTreeSet<&str> =
        table.iter().map(|(args, _, _)| args[0].as_str()).collect();
    assert_eq!(commands.len(), 7, "every command is covered: {commands:?}");
    for (args, code, needle) in &table {
        ebm()
            .args(args)
            .assert()
            .code(*code)
            .stderr(predicate::str::contains(*needle));
        let out = ebm().args(args).arg("--json").assert().code(*code);
        let v = one_object(&out.get_output().stdout);
        assert_eq!(v["exit_code"], *code, "{args:?}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{args:?}: {v}"
        );
    }
    let mut left = listing(dir.path());
    left.retain(|f| {
        ![
            "bad.uai",
            "m.safetensors",
            "badmeta.safetensors",
            "four.txt",
        ]
        .contains(&f.as_str())
    });
    assert!(left.is_empty(), "outputs of failed runs: {left:?}");
}

/// A reader that has gone (`ebm ... --json | head -c 1`) counts as delivered: the run exits 0
/// and writes its output files, as a run whose reader kept reading does.
#[cfg(target_os = "linux")]
#[test]
fn a_closed_stdout_pipe_still_writes_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("state.png");
    let mut child = ebm_plain()
        .args(SMALL_ISING)
        .arg("--image")
        .arg(&image)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(listing(dir.path()), ["state.png"]);
}

/// `partition --output x.PR` is staged like every other output: written only after the report
/// reached stdout, so a run whose result cannot be printed leaves no answer file, and a
/// successful one leaves exactly the answer.
#[test]
fn partition_answer_files_are_written_only_after_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let pr = dir.path().join("grid.PR");
    let args = ["partition", "--model", "data/uai/Grids_11.uai", "--json"];
    let out = ebm_plain()
        .args(args)
        .arg("--output")
        .arg(&pr)
        .stdout(dev_full())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    ebm().args(args).arg("--output").arg(&pr).assert().success();
    let answer = ebm::io::uai::read_pr(&pr).unwrap();
    let expected = ebm::io::uai::read_pr(Path::new("data/uai/Grids_11.uai.PR")).unwrap();
    // The .PR reference prints 6 significant digits of log10 Z (see tests/common/tol.rs).
    assert!((answer - expected).abs() < 1e-3, "{answer} vs {expected}");
    assert_eq!(listing(dir.path()), vec!["grid.PR".to_string()]);
}

/// `denoise` refuses a flag the chosen method does not use (was silently ignored), naming the
/// flag and the method; the same flags with a method that uses them run.
#[test]
fn denoise_refuses_flags_its_method_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.png").to_string_lossy().into_owned();
    let base = [
        "denoise",
        "--input",
        "data/images/horse.png",
        "--output",
        &out,
    ];
    for (method, flag, value) in [
        ("graphcut", "--sweeps", "5"),
        ("icm", "--burn-in", "5"),
        ("anneal", "--burn-in", "5"),
        ("icm", "--t-start", "3"),
        ("gibbs", "--t-end", "0.1"),
        ("graphcut", "--t-start", "3"),
    ] {
        ebm()
            .args(base)
            .args(["--method", method, flag, value])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains(flag)
                    .and(predicate::str::contains(format!("--method {method}"))),
            );
        assert!(listing(dir.path()).is_empty());
    }
    for (method, flag, value) in [
        ("icm", "--sweeps", "2"),
        ("gibbs", "--burn-in", "2"),
        ("anneal", "--t-start", "3"),
    ] {
        ebm()
            .args(base)
            .args(["--method", method, flag, value])
            .assert()
            .success();
    }
}

/// A negative number given to a numeric flag is read as a number and refused for its value,
/// naming the flag (clap otherwise takes `-0.1` for an unknown flag `-0`).
#[test]
fn negative_numbers_are_parsed_and_refused_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let cases: [(Vec<String>, &str); 4] = [
        (
            [
                "noise",
                "--input",
                "data/images/horse.png",
                "--flip",
                "-0.1",
                "--output",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([out("n.png")])
            .collect(),
            "--flip",
        ),
        (
            [
                "sample", "ising", "--width", "4", "--height", "4", "--beta", "-0.3",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "beta",
        ),
        (
            [
                "denoise",
                "--input",
                "data/images/horse.png",
                "--method",
                "anneal",
                "--t-start",
                "-1",
                "--output",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([out("a.png")])
            .collect(),
            "--t-start",
        ),
        (
            [
                "denoise",
                "--input",
                "data/images/horse.png",
                "--method",
                "anneal",
                "--t-end",
                "-1",
                "--output",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([out("b.png")])
            .collect(),
            "--t-end",
        ),
    ];
    for (args, flag) in cases {
        ebm().args(&args).assert().code(2).stderr(
            predicate::str::contains(flag)
                .and(predicate::str::contains("unexpected argument").not()),
        );
    }
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

/// Negative numbers given to numeric flags are read as numbers and refused for their value
/// (exit 2 naming the flag), never taken for an unknown flag; `--threshold` where no file uses
/// it, and a folder given to `info`, are refused as bad input.
#[test]
fn negative_values_and_thresholds_that_do_not_apply_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "0.2,0.9\n0.7,0.1\n").unwrap();
    let model = dir.path().join("m.safetensors");
    let m = model.to_str().unwrap();
    let train = [
        "train-rbm",
        "--data",
        "data/bars_stripes_4x4.txt",
        "--output",
        m,
    ];
    for (args, needle) in [
        (
            vec!["info", "data/digits_test.txt", "--threshold", "0.5"],
            "does not apply to a .txt",
        ),
        (
            vec!["info", "data/uai/Grids_11.uai", "--threshold", "3"],
            "--threshold applies to images",
        ),
        (vec!["info", "data"], "is a folder"),
        (
            [&train[..], &["--learning-rate", "-0.1"]].concat(),
            "learning-rate",
        ),
        ([&train[..], &["--momentum", "-0.5"]].concat(), "momentum"),
        (
            [&train[..], &["--weight-decay", "-1"]].concat(),
            "weight-decay",
        ),
        ([&train[..], &["--init-std", "-1"]].concat(), "init-std"),
        (
            [&train[..], &["--threshold", "0.5"]].concat(),
            "does not apply to a .txt",
        ),
        (
            vec![
                "partition",
                "ising",
                "--width",
                "3",
                "--height",
                "3",
                "--max-seconds",
                "-1",
            ],
            "--max-seconds",
        ),
    ] {
        ebm().args(&args).assert().code(2).stderr(
            predicate::str::contains(needle)
                .and(predicate::str::contains("unexpected argument").not()),
        );
    }
    assert!(!model.exists());
    // A negative threshold is a threshold: every value of the .csv is >= -1.
    let out = ebm()
        .args(["info", "--json", "--threshold", "-1"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fraction_of_ones"], 1.0);
    // With .csv training data the threshold applies to it and a .txt test set is read as bits.
    let txt = dir.path().join("t.txt");
    std::fs::write(&txt, "01\n10\n").unwrap();
    ebm()
        .args([
            "train-rbm",
            "--hidden",
            "2",
            "--epochs",
            "2",
            "--threshold",
            "0.5",
            "--output",
            m,
        ])
        .arg("--data")
        .arg(&csv)
        .arg("--test")
        .arg(&txt)
        .assert()
        .success();
}
