//! Results on stdout (one JSON object) and human summaries on stderr.

use std::io::Write;

use serde::Serialize;

/// Prints `value` as one JSON object followed by a newline on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    // Serialise first, then write: a closed pipe then surfaces as an io::Error (exit status 0)
    // rather than inside a serde_json::Error.
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// Prints a human summary line on stderr unless `--quiet` or `--json` is given.
pub fn say(global: &super::GlobalArgs, line: &str) {
    if !global.quiet && !global.json {
        eprintln!("{line}");
    }
}
