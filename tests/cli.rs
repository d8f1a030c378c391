//! The binary as a user runs it: exit codes, messages, no half-written outputs.

use crate::common::ebm;
use predicates::prelude::*;

#[test]
fn noise_refuses_a_probability_above_one_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("noisy.png");
    ebm()
        .args([
            "noise",
            "--input",
            "data/images/horse.png",
            "--flip",
            "1.5",
            "--output",
        ])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--flip"));
    assert!(!out.exists());
}

#[test]
fn noise_refuses_a_file_that_is_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.png");
    std::fs::write(&fake, "this is text, not a PNG").unwrap();
    let out = dir.path().join("noisy.png");
    ebm()
        .args(["noise", "--flip", "0.1", "--input"])
        .arg(&fake)
        .arg("--output")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("fake.png"));
    assert!(!out.exists());
}

/// Every data file of data/ (not its README or script), the bundled UAI models and answers included.
fn info_targets() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![crate::common::project_root().join("data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.extension().is_some_and(|e| e == "md" || e == "py")
                // Label files (one integer per line) are not datasets; tests/score.rs checks them.
                && !path.to_string_lossy().ends_with("_labels.txt")
            {
                files.push(path);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "uai")),
        "no bundled UAI model found under data/"
    );
    files.sort();
    files
}

#[test]
fn info_prints_one_json_object_for_every_bundled_and_reference_file() {
    let files = info_targets();
    assert!(files.len() >= 6, "data/ files missing: {files:?}");
    for file in files {
        let out = ebm()
            .arg("info")
            .arg(&file)
            .arg("--json")
            .assert()
            .success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{}: {stdout}", file.display());
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let kind = v["kind"].as_str().unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let expected = if name.ends_with(".png") {
            "image"
        } else if name.ends_with(".txt") || name.ends_with(".csv") {
            "dataset"
        } else if name.ends_with(".uai") {
            "uai"
        } else {
            "pr_answer"
        };
        assert_eq!(kind, expected, "{name}");
    }
}

#[test]
fn info_reports_the_facts_of_known_files() {
    let json = |args: &[&str]| -> serde_json::Value {
        let out = ebm().args(args).arg("--json").assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    };
    let bs = json(&["info", "data/bars_stripes_4x4.txt"]);
    assert_eq!(bs["rows"], 30);
    assert_eq!(bs["cols"], 16);
    assert_eq!(bs["distinct_rows"], 30);
    assert_eq!(bs["fraction_of_ones"], 0.5);
    let horse = json(&["info", "data/images/horse.png"]);
    assert_eq!(
        (horse["width"].as_u64(), horse["height"].as_u64()),
        (Some(400), Some(328))
    );
    // Text mode writes the summary to stderr and nothing to stdout.
    ebm()
        .args(["info", "data/digits_test.txt"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("300 examples x 64 bits"));
    let dir = crate::common::uai_reference_dir();
    let grids = json(&["info", dir.join("Grids_15.uai").to_str().unwrap()]);
    assert_eq!(grids["variables"], 400);
    assert_eq!(grids["max_arity"], 2);
    assert_eq!(grids["pairwise"], true);
}

/// Runs `ebm info FILE` on a file with `content` and checks that it fails with exit status 2
/// and a message naming the file and each of `needles`.
fn info_refuses(name: &str, content: &[u8], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    let out = ebm().arg("info").arg(&path).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(name),
        "{name}: message does not name the file: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{name}: expected `{needle}` in: {stderr}"
        );
    }
    assert!(out.get_output().stdout.is_empty());
    // Nothing but the input is left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn truncated_uai_file_is_refused_with_its_line() {
    info_refuses(
        "cut.uai",
        b"MARKOV\n2\n2 2\n2\n1 0\n2 0 1\n\n2\n0.5 1.5\n\n4\n1.0 2.0\n",
        &["line 12", "ends early", "entry 3 of 4 of factor 1"],
    );
}

#[test]
fn uai_table_with_the_wrong_entry_count_is_refused() {
    info_refuses(
        "count.uai",
        b"MARKOV\n2\n2 2\n1\n2 0 1\n\n3\n1.0 2.0 3.0\n",
        &["line 7", "declares 3 entries", "needs 2^2 = 4"],
    );
}

#[test]
fn uai_with_a_non_binary_variable_is_refused() {
    info_refuses(
        "ternary.uai",
        b"MARKOV\n2\n2 3\n0\n",
        &["line 3", "cardinality 3", "only binary"],
    );
}

#[test]
fn ragged_txt_dataset_is_refused_naming_both_lengths() {
    info_refuses(
        "ragged.txt",
        b"0101\n1100\n011\n",
        &["line 3", "3 values", "line 1 has 4"],
    );
}

#[test]
fn txt_dataset_with_a_stray_character_is_refused() {
    info_refuses("stray.txt", b"0101\n1120\n", &["line 2", "column 3", "`2`"]);
}

#[test]
fn csv_cell_that_is_not_a_number_is_refused() {
    info_refuses(
        "cells.csv",
        b"0,1,0.5\n1,one,0\n",
        &["line 2", "column 2", "`one` is not a number"],
    );
}

#[test]
fn empty_files_are_refused() {
    info_refuses("empty.txt", b"", &["empty"]);
    info_refuses("empty.uai", b"", &["empty", "MARKOV"]);
    info_refuses("empty.png", b"", &["image"]);
    info_refuses("empty.safetensors", b"", &["safetensors"]);
}

#[test]
fn png_that_is_not_a_png_is_refused() {
    info_refuses("fake.png", b"GIF89a, or rather just text", &["image"]);
}

#[test]
fn safetensors_without_hidden_bias_is_refused_naming_the_tensor() {
    use ebm::io::safetensors::encode_raw;
    use safetensors::Dtype;
    let f64s = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let bytes = encode_raw(
        &[
            ("weights", Dtype::F64, vec![2, 1], f64s(&[0.5, -0.5])),
            ("visible_bias", Dtype::F64, vec![2], f64s(&[0.0, 0.0])),
        ],
        None,
    )
    .unwrap();
    info_refuses(
        "partial.safetensors",
        &bytes,
        &["missing tensor `hidden_bias`"],
    );
}

#[test]
fn noise_refuses_bad_inputs_and_keeps_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("noisy.png");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    // An empty input, then an output name whose format is unknown.
    ebm()
        .args(["noise", "--flip", "0.1", "--input"])
        .arg(&empty)
        .arg("--output")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty.png"));
    assert!(!out.exists());
    let jpg = dir.path().join("noisy.jpg");
    ebm()
        .args([
            "noise",
            "--flip",
            "0.1",
            "--input",
            "data/images/shapes.png",
            "--output",
        ])
        .arg(&jpg)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("noisy.jpg").and(predicate::str::contains(".png or .pbm")),
        );
    assert!(!jpg.exists());
    // A failed run does not replace an existing output.
    std::fs::write(&out, b"previous").unwrap();
    ebm()
        .args([
            "noise",
            "--flip",
            "-0.5",
            "--input",
            "data/images/shapes.png",
            "--output",
        ])
        .arg(&out)
        .assert()
        .code(2);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn noise_flips_about_the_requested_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("noisy.pbm");
    let assert = ebm()
        .args([
            "noise",
            "--flip",
            "0.2",
            "--seed",
            "5",
            "--json",
            "--input",
            "data/images/horse.png",
            "--output",
        ])
        .arg(&out)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    let n = 400.0 * 328.0;
    // Binomial(n, 0.2): standard error sqrt(0.2 * 0.8 / n); MC_SIGMAS standard errors allowed.
    let se = (0.2f64 * 0.8 / n).sqrt();
    let flipped = v["flipped_fraction"].as_f64().unwrap();
    assert!(
        (flipped - 0.2).abs() <= crate::common::tol::MC_SIGMAS * se,
        "{flipped}"
    );
    assert_eq!(v["seed"], 5);
    let clean =
        ebm::io::images::read_binary_image(std::path::Path::new("data/images/horse.png"), 128)
            .unwrap();
    let noisy = ebm::io::images::read_binary_image(&out, 128).unwrap();
    // (serde_json's default float parsing may be off by one ulp, hence the tolerance.)
    assert!((clean.error_rate(&noisy).unwrap() - flipped).abs() < 1e-12);
}
