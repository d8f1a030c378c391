//! Results on stdout (one JSON object) and human summaries on stderr, and the output files of a
//! command as one plan ([`Outputs`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use ebm::io::atomic::StagedFile;
use serde::Serialize;

/// Set once a result object has been (or began to be) written to stdout: an error after that
/// must not print a second object.
static RESULT_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints `value` as one JSON object followed by a newline on stdout (see [`print_stdout`]).
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    RESULT_PRINTED.store(true, Ordering::SeqCst);
    print_stdout(&bytes)
}

/// Writes a result on stdout. A failed write is an error (exit status 1: a full disk, ...),
/// except a closed pipe: the reader has gone (`ebm ... | head -c 10`), which counts as
/// delivered, so the run goes on to write its output files and exits 0.
pub fn print_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing the result to stdout"),
    }
}

/// The one JSON object of a failed run: `{"error": message, "exit_code": code}` on stdout,
/// unless a result object was already written. A failure to write it is ignored (there is
/// nowhere left to report it).
pub fn print_error_json(message: &str, code: u8) {
    if RESULT_PRINTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let value = serde_json::json!({ "error": message, "exit_code": code });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}").and_then(|()| out.flush());
}

/// Writes one line of human text on stderr. A stderr that cannot be written (a full device, a
/// closed pipe) is ignored: human text never aborts a run (`eprintln!` would panic).
pub fn eprint_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints a human summary line on stderr unless `--quiet` or `--json` is given.
pub fn say(global: &super::GlobalArgs, line: &str) {
    if !global.quiet && !global.json {
        eprint_line(line);
    }
}

/// Name endings of image outputs (format by extension).
pub const IMAGE: &[&str] = &[".png", ".pbm"];
/// Name ending of PNG-only outputs (grey levels, tiles).
pub const PNG: &[&str] = &[".png"];
/// Name ending of CSV tables.
pub const CSV: &[&str] = &[".csv"];
/// Name ending of RBM model files.
pub const SAFETENSORS: &[&str] = &[".safetensors"];
/// Name endings of dataset outputs (see `ebm::io::datasets::write_dataset`).
pub const DATASET: &[&str] = &[
    ".txt",
    ".csv",
    ".npy",
    ".idx",
    "-ubyte",
    ".txt.gz",
    ".csv.gz",
    ".npy.gz",
    ".idx.gz",
    "-ubyte.gz",
];

/// One declared output file.
#[derive(Debug)]
struct Planned {
    flag: &'static str,
    path: PathBuf,
    /// The canonical folder and the file name: two outputs with the same identity are one file.
    identity: (PathBuf, OsString),
    staged: Option<StagedFile>,
}

/// The output files of one command, declared before any work and written together at the end.
///
/// [`declare`](Outputs::declare) checks each path at once (usage errors, exit status 2): its
/// name ends in an allowed extension, its folder exists, it does not name a folder, and no two
/// outputs name the same file. [`stage`](Outputs::stage) writes an output to a temporary file
/// in its folder; [`commit`](Outputs::commit) renames every staged file into place, and is
/// called after the whole run succeeded and its result was printed. A run that fails before
/// that (or a dropped `Outputs`) leaves no output file and no temporary behind.
#[derive(Debug, Default)]
pub struct Outputs {
    planned: Vec<Planned>,
}

fn usage(msg: String) -> anyhow::Error {
    super::UsageError(msg).into()
}

impl Outputs {
    /// No outputs yet.
    pub fn new() -> Self {
        Outputs::default()
    }

    /// Declares `path` as the output of `flag` (nothing when `None`): its name must end in one
    /// of `endings` (compared without regard to case), `what` says what is written there.
    pub fn declare(
        &mut self,
        flag: &'static str,
        path: Option<&Path>,
        endings: &[&str],
        what: &str,
    ) -> anyhow::Result<()> {
        let Some(path) = path else { return Ok(()) };
        let shown = path.display();
        let text = path.to_string_lossy();
        let Some(name) = path.file_name() else {
            return Err(usage(format!(
                "{flag} {shown}: names no file; give a file name"
            )));
        };
        if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) || path.is_dir() {
            return Err(usage(format!(
                "{flag} {shown}: is a folder; give the name of the file to write"
            )));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            let problem = if dir.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            return Err(usage(format!(
                "{flag} {shown}: the output folder {} {problem}",
                dir.display()
            )));
        }
        let folder = dir
            .canonicalize()
            .with_context(|| format!("{flag} {shown}: cannot resolve the folder"))?;
        let identity = (folder, name.to_os_string());
        if let Some(other) = self.planned.iter().find(|p| p.identity == identity) {
            return Err(usage(format!(
                "{flag} {shown} and {} {} name the same file; give each output its own name",
                other.flag,
                other.path.display()
            )));
        }
        let lower = name.to_string_lossy().to_ascii_lowercase();
        if !endings.iter().any(|e| lower.ends_with(e)) {
            return Err(usage(format!(
                "{flag} {shown}: {what} is written here, so the name must end in {}",
                endings.join(" or ")
            )));
        }
        self.planned.push(Planned {
            flag,
            path: path.to_path_buf(),
            identity,
            staged: None,
        });
        Ok(())
    }

    fn planned(&mut self, flag: &str) -> anyhow::Result<&mut Planned> {
        self.planned
            .iter_mut()
            .find(|p| p.flag == flag)
            .ok_or_else(|| anyhow::anyhow!("internal error: output {flag} was not declared"))
    }

    /// Writes the output of `flag` to its temporary file through `write` (renamed into place by
    /// [`commit`](Outputs::commit)).
    pub fn stage(
        &mut self,
        flag: &str,
        write: impl FnOnce(&mut dyn Write) -> ebm::Result<()>,
    ) -> anyhow::Result<()> {
        let planned = self.planned(flag)?;
        let path = planned.path.clone();
        let result = (|| -> ebm::Result<StagedFile> {
            let mut staged = StagedFile::new(&path)?;
            write(&mut staged)?;
            staged.flush()?;
            Ok(staged)
        })();
        planned.staged = Some(result.with_context(|| format!("writing {}", path.display()))?);
        Ok(())
    }

    /// Writes `bytes` as the output of `flag` (see [`stage`](Outputs::stage)).
    pub fn stage_bytes(&mut self, flag: &str, bytes: &[u8]) -> anyhow::Result<()> {
        self.stage(flag, |w| Ok(w.write_all(bytes)?))
    }

    /// Renames every staged output into place, in the order declared, all or nothing as far as
    /// the file system allows.
    ///
    /// For each output in turn, an existing target that is not a folder is first set aside
    /// (renamed over a fresh temporary file in its folder, named as in [`ebm::io::atomic`]),
    /// then the staged file is flushed to disk and renamed to the target. The set-aside copies
    /// are removed only once every rename succeeded. On a failure, what was done is undone in
    /// reverse order (each new file is replaced by its set-aside copy, or removed when the
    /// target did not exist before), every staged temporary is removed, and the error names the
    /// file that failed; should a restoration itself fail, the error names the copy that holds
    /// the previous content, which is then kept. A crash between two renames (power loss,
    /// `kill -9`) can still leave some outputs replaced: several renames are not one atomic
    /// operation.
    pub fn commit(self) -> anyhow::Result<()> {
        let mut done: Vec<Committed> = Vec::new();
        for planned in self.planned {
            let Some(staged) = planned.staged else {
                continue;
            };
            let target = planned.path;
            let aside = match set_aside(&target) {
                Ok(aside) => aside,
                Err(e) => return Err(undo(done, e, &target)),
            };
            let renamed = staged.commit();
            done.push(Committed {
                target: target.clone(),
                aside,
                renamed_in: renamed.is_ok(),
            });
            if let Err(e) = renamed {
                return Err(undo(done, e.into(), &target));
            }
        }
        // Every new file is in place: dropping the set-aside copies removes them.
        Ok(())
    }
}

/// One output of a commit in progress: its target, the previous file set aside (if any) and
/// whether the new file was renamed in.
struct Committed {
    target: PathBuf,
    aside: Option<tempfile::TempPath>,
    renamed_in: bool,
}

/// Moves an existing `target` (not a folder: renaming a file over a folder fails, and that
/// failure is the one to report) to a fresh temporary name in its folder.
fn set_aside(target: &Path) -> anyhow::Result<Option<tempfile::TempPath>> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_dir() => {
            let aside = ebm::io::atomic::sibling_temporary(target)?;
            std::fs::rename(target, &aside)
                .with_context(|| format!("moving the existing {} aside", target.display()))?;
            Ok(Some(aside))
        }
        _ => Ok(None),
    }
}

/// Undoes the outputs of a failed commit, last first, and returns the error `cause` (which
/// arose at `failed`) with what became of the outputs.
fn undo(done: Vec<Committed>, cause: anyhow::Error, failed: &Path) -> anyhow::Error {
    let mut problems = Vec::new();
    for step in done.into_iter().rev() {
        let shown = step.target.display();
        match step.aside {
            Some(mut aside) => {
                // Renaming the old file back replaces the new one in one step. Either way the
                // drop must not remove anything: the path is gone, or it holds the old content.
                aside.disable_cleanup(true);
                if let Err(e) = std::fs::rename(&aside, &step.target) {
                    problems.push(format!(
                        "could not restore {shown} ({e}); its previous content is in {}",
                        aside.display()
                    ));
                }
            }
            None if step.renamed_in => {
                if let Err(e) = std::fs::remove_file(&step.target) {
                    problems.push(format!("could not remove the new {shown} ({e})"));
                }
            }
            None => {}
        }
    }
    let cause = cause.context(format!("writing {}", failed.display()));
    if problems.is_empty() {
        cause.context("no output file was changed")
    } else {
        cause.context(format!(
            "the outputs could not all be restored: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: anyhow::Result<()>) -> String {
        let e = r.unwrap_err();
        assert!(
            e.downcast_ref::<super::super::UsageError>().is_some(),
            "{e}"
        );
        e.to_string()
    }

    #[test]
    fn declared_outputs_are_checked_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut o = Outputs::new();
        o.declare("--image", Some(&d.join("a.PNG")), IMAGE, "the image")
            .unwrap();
        o.declare("--trace", None, CSV, "the trace").unwrap();
        let same = d.join(".").join("a.PNG");
        let m = message(o.declare("--marginals", Some(&same), PNG, "the marginals"));
        assert!(m.contains("--marginals") && m.contains("--image"), "{m}");
        let m = message(o.declare("--trace", Some(&d.join("t.png")), CSV, "the trace"));
        assert!(m.contains("--trace") && m.contains(".csv"), "{m}");
        let m = message(o.declare("--trace", Some(&d.join("no/t.csv")), CSV, "the trace"));
        assert!(m.contains("does not exist") && m.contains("--trace"), "{m}");
        // A file where the folder should be exists but is not a folder.
        std::fs::write(d.join("plain"), b"").unwrap();
        let m = message(o.declare("--trace", Some(&d.join("plain/t.csv")), CSV, "the trace"));
        assert!(m.contains("plain is not a folder"), "{m}");
        std::fs::create_dir(d.join("f.png")).unwrap();
        let m = message(o.declare("--filters", Some(&d.join("f.png")), PNG, "the filters"));
        assert!(m.contains("is a folder"), "{m}");
        o.declare("--output", Some(&d.join("s.txt.gz")), DATASET, "samples")
            .unwrap();
    }

    #[test]
    fn staged_outputs_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        let mut o = Outputs::new();
        o.declare("--a", Some(&a), CSV, "a").unwrap();
        o.declare("--b", Some(&b), CSV, "b").unwrap();
        o.stage_bytes("--a", b"1\n").unwrap();
        o.stage_bytes("--b", b"2\n").unwrap();
        assert!(!a.exists() && !b.exists());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"1\n");
        assert_eq!(std::fs::read(&b).unwrap(), b"2\n");
        let mut o = Outputs::new();
        o.declare("--a", Some(&a), CSV, "a").unwrap();
        o.stage_bytes("--a", b"changed\n").unwrap();
        drop(o);
        assert_eq!(std::fs::read(&a).unwrap(), b"1\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// The names in `dir`.
    fn names(dir: &Path) -> std::collections::BTreeSet<String> {
        let entries = std::fs::read_dir(dir).unwrap();
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn set<const N: usize>(names: [&str; N]) -> std::collections::BTreeSet<String> {
        names.map(String::from).into()
    }

    /// Outputs `--a` (a.csv) and `--b` (b.csv) in `dir`, declared and staged with new contents.
    fn two_staged_outputs(dir: &Path) -> (Outputs, PathBuf, PathBuf) {
        let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
        let mut o = Outputs::new();
        o.declare("--a", Some(&a), CSV, "a").unwrap();
        o.declare("--b", Some(&b), CSV, "b").unwrap();
        o.stage_bytes("--a", b"new a\n").unwrap();
        o.stage_bytes("--b", b"new b\n").unwrap();
        (o, a, b)
    }

    /// A commit whose second rename fails (a folder appeared at the second target after it was
    /// declared and staged) changes nothing: the first output keeps its old content, or does
    /// not appear when it did not exist before, the folder is untouched, no temporary (staged
    /// file or set-aside copy) is left, and the error names the file that failed.
    #[test]
    fn a_failed_rename_undoes_the_whole_commit() {
        for first_existed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            if first_existed {
                std::fs::write(dir.path().join("a.csv"), b"old\n").unwrap();
            }
            let (o, a, b) = two_staged_outputs(dir.path());
            std::fs::create_dir(&b).unwrap();
            std::fs::write(b.join("inside.txt"), b"kept").unwrap();
            let e = o.commit().unwrap_err();
            let m = format!("{e:#}");
            assert!(
                m.contains(&format!("writing {}", b.display())) && m.contains("no output"),
                "{m}"
            );
            if first_existed {
                assert_eq!(std::fs::read(&a).unwrap(), b"old\n");
                assert_eq!(names(dir.path()), set(["a.csv", "b.csv"]));
            } else {
                assert!(!a.exists());
                assert_eq!(names(dir.path()), set(["b.csv"]));
            }
            assert_eq!(names(&b), set(["inside.txt"]));
            assert_eq!(std::fs::read(b.join("inside.txt")).unwrap(), b"kept");
        }
    }

    /// A successful commit over existing files replaces them and removes the set-aside copies.
    #[test]
    fn a_commit_over_existing_files_leaves_only_the_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), b"old a\n").unwrap();
        std::fs::write(dir.path().join("b.csv"), b"old b\n").unwrap();
        let (o, a, b) = two_staged_outputs(dir.path());
        o.commit().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a\n");
        assert_eq!(std::fs::read(&b).unwrap(), b"new b\n");
        assert_eq!(names(dir.path()), set(["a.csv", "b.csv"]));
    }
}
