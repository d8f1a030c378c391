//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test module uses a different subset

pub mod tol;

use std::path::PathBuf;

/// The project root (where Cargo.toml is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/ref/ising/uai` beside the project, if present (CI has it).
pub fn uai_reference_dir() -> Option<PathBuf> {
    let dir = project_root().join("../shared/ref/ising/uai");
    dir.is_dir().then_some(dir)
}

/// The `ebm` binary under test.
pub fn ebm() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("ebm").expect("ebm binary is built")
}
