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

/// Every data file of data/ (not its README or script) and every reference UAI file.
fn info_targets() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![crate::common::project_root().join("data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !path.extension().is_some_and(|e| e == "md" || e == "py") {
                files.push(path);
            }
        }
    }
    if let Some(dir) = crate::common::uai_reference_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "uai" || e == "PR") {
                files.push(path);
            }
        }
    }
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
        } else if name.ends_with(".txt") {
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
    let Some(dir) = crate::common::uai_reference_dir() else {
        return;
    };
    let grids = json(&["info", dir.join("Grids_15.uai").to_str().unwrap()]);
    assert_eq!(grids["variables"], 400);
    assert_eq!(grids["max_arity"], 2);
    assert_eq!(grids["pairwise"], true);
}
