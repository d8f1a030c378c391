//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test module uses a different subset

pub mod tol;

use std::path::PathBuf;

/// The project root (where Cargo.toml is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `data/uai`: the bundled UAI 2014 PR models with their `.PR` answers (see data/README.md).
/// A missing folder is a test failure, never a skip.
pub fn uai_reference_dir() -> PathBuf {
    let dir = project_root().join("data/uai");
    assert!(
        dir.join("Grids_11.uai").is_file(),
        "bundled UAI models missing: {} (see data/README.md)",
        dir.display()
    );
    dir
}

/// The `ebm` binary under test.
pub fn ebm() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("ebm").expect("ebm binary is built")
}
