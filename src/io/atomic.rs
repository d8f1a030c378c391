//! Atomic file output: write to a temporary file in the destination's folder, then rename.
//!
//! A reader never sees a half-written file, and an existing file is replaced only by a complete
//! new one. On error (or when a [`StagedFile`] is dropped without [`StagedFile::commit`]) the
//! temporary file is removed.
//!
//! The temporary file is created with `O_CREAT | O_EXCL` (an existing entry of that name, a
//! symbolic link included, makes the creation fail and another name is drawn; no link is ever
//! followed) under an unpredictable name of the form
//!
//! ```text
//! .{file name}.ebm-{process id}-{10 random letters or digits}.tmp
//! ```
//!
//! The final `rename` replaces the destination's directory entry: a symbolic link at the
//! destination path is replaced by the new file, its target is never written.
//!
//! A process killed during a write (`kill -9`) leaves its temporary file behind. The next write
//! of the same destination removes such leftovers: regular files of exactly the pattern above
//! for that file name whose process id no longer runs (Linux: no `/proc/{pid}`). Nothing else
//! in the folder is touched, and on systems without `/proc` nothing is removed.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Number of random letters and digits in a temporary file's name.
const RANDOM_CHARS: usize = 10;
/// The text between the destination's name and the process id in a temporary file's name.
const MARKER: &str = ".ebm-";
/// The end of every temporary file's name.
const SUFFIX: &str = ".tmp";

/// An output file being written: the bytes go to a fresh temporary file in the destination's
/// folder; [`commit`](StagedFile::commit) renames it into place, dropping it removes it.
pub struct StagedFile {
    target: PathBuf,
    writer: BufWriter<NamedTempFile>,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFile")
            .field("target", &self.target)
            .field("temporary", &self.writer.get_ref().path())
            .finish()
    }
}

/// The folder `path` is in (`.` for a bare file name) and its file name.
fn split_target(path: &Path) -> Result<(PathBuf, &OsStr)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        Error::param(
            "output path",
            format!("{} names no file (expected a file name)", path.display()),
        )
    })?;
    if !dir.is_dir() {
        return Err(Error::param(
            "output path",
            format!(
                "cannot write {}: the output folder {} does not exist",
                path.display(),
                dir.display()
            ),
        ));
    }
    Ok((dir, name))
}

/// The process id in `entry` when it is the name of a temporary file for `name` (see the module
/// docs), `None` otherwise.
fn temporary_pid(entry: &str, name: &str) -> Option<u32> {
    let middle = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(MARKER)?
        .strip_suffix(SUFFIX)?;
    let (pid, random) = middle.split_once('-')?;
    let valid = !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == RANDOM_CHARS
        && random.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| pid.parse().ok()).flatten()
}

/// True when process `pid` is known to have ended. Only answers on systems with `/proc`
/// (Linux); elsewhere every process counts as running.
fn process_ended(pid: u32) -> bool {
    let proc = Path::new("/proc");
    cfg!(target_os = "linux")
        && pid != std::process::id()
        && proc.join("self").exists()
        && !proc.join(pid.to_string()).exists()
}

/// Removes the temporary files of earlier writes of `name` in `dir` whose process has ended.
/// Failures are ignored: the leftovers are only clutter.
fn remove_stale_temporaries(dir: &Path, name: &OsStr) {
    let Some(name) = name.to_str() else { return };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|e| temporary_pid(e, name)) else {
            continue;
        };
        // A link or folder of that name was not made by ebm: leave it.
        let regular = fs::symlink_metadata(entry.path()).is_ok_and(|m| m.file_type().is_file());
        if regular && process_ended(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A new empty file named as the module docs say, for `name` in `dir`.
fn create_temporary(dir: &Path, name: &OsStr) -> Result<NamedTempFile> {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(format!("{MARKER}{}-", std::process::id()));
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(SUFFIX)
        .rand_bytes(RANDOM_CHARS);
    #[cfg(unix)]
    {
        // As `File::create`: read-write for all, less the umask (tempfile's default is 0600).
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    Ok(builder.tempfile_in(dir)?)
}

/// A fresh, empty, closed temporary file next to `path`, named as the module docs say (so that
/// a leftover of a killed process is removed by the next write of `path`); it is removed when
/// the returned [`tempfile::TempPath`] is dropped, unless kept. Renaming a file over it is how
/// a multi-file commit sets an existing output aside until every new file is in place.
pub fn sibling_temporary(path: &Path) -> Result<tempfile::TempPath> {
    let (dir, name) = split_target(path)?;
    Ok(create_temporary(&dir, name)?.into_temp_path())
}

impl StagedFile {
    /// Creates the temporary file for `path`, after removing stale temporaries of `path` (see
    /// the module docs). Fails when the folder does not exist.
    pub fn new(path: &Path) -> Result<StagedFile> {
        let (dir, name) = split_target(path)?;
        remove_stale_temporaries(&dir, name);
        let file = create_temporary(&dir, name)?;
        Ok(StagedFile {
            target: path.to_path_buf(),
            writer: BufWriter::new(file),
        })
    }

    /// The destination path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file's path (in the destination's folder).
    pub fn temporary_path(&self) -> &Path {
        self.writer.get_ref().path()
    }

    /// Flushes the bytes to disk and renames the temporary file to the destination.
    pub fn commit(self) -> Result<()> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))?;
        file.as_file().sync_all()?;
        file.persist(&self.target).map_err(|e| Error::Io(e.error))?;
        Ok(())
    }
}

impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `path` atomically by calling `write` on a buffered temporary file.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let mut staged = StagedFile::new(path)?;
    write(&mut staged)?;
    staged.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| Ok(w.write_all(bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_only_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_bytes_atomic(&path, b"first").unwrap();
        let failed = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(Error::Format("stop".into()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["out.txt"], "temporary file left behind");
        let missing = write_bytes_atomic(&dir.path().join("missing/out.txt"), b"x");
        assert!(
            matches!(missing, Err(Error::InvalidParam { .. })),
            "{missing:?}"
        );
    }

    #[test]
    fn a_dropped_stage_leaves_nothing_and_a_committed_one_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        let mut staged = StagedFile::new(&path).unwrap();
        staged.write_all(b"1,2\n").unwrap();
        let tmp = staged.temporary_path().to_path_buf();
        let tmp_name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(temporary_pid(tmp_name, "a.csv"), Some(std::process::id()));
        assert!(!path.exists(), "the destination appears only on commit");
        drop(staged);
        assert!(!tmp.exists());
        assert!(names(dir.path()).is_empty());
        let mut staged = StagedFile::new(&path).unwrap();
        staged.write_all(b"3,4\n").unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"3,4\n");
    }

    #[test]
    fn temporary_names_are_recognised_exactly() {
        assert_eq!(
            temporary_pid(".x.png.ebm-42-abcDEF0123.tmp", "x.png"),
            Some(42)
        );
        for other in [
            ".x.png.ebm-42-abcDEF012.tmp",   // 9 random characters
            ".x.png.ebm-42-abcDEF01234.tmp", // 11
            ".x.png.ebm--abcDEF0123.tmp",    // no pid
            ".x.png.ebm-4a-abcDEF0123.tmp",  // pid not a number
            ".y.png.ebm-42-abcDEF0123.tmp",  // another file's
            "x.png.ebm-42-abcDEF0123.tmp",   // not hidden
            ".x.png.ebm-42-abcDEF0123.tmpx", // another suffix
            ".x.png.tmp-42",                 // the old pattern
        ] {
            assert_eq!(temporary_pid(other, "x.png"), None, "{other}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("out.txt");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_bytes_atomic(&out, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&out).unwrap().is_symlink());
        assert_eq!(fs::read(&out).unwrap(), b"new");
    }
}
