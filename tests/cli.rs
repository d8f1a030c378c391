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
