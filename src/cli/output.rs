//! Results on stdout (one JSON object) and human summaries on stderr.

use std::io::Write;

use serde::Serialize;

/// Prints `value` as one JSON object followed by a newline on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Prints a human summary line on stderr unless `--quiet` or `--json` is given.
pub fn say(global: &super::GlobalArgs, line: &str) {
    if !global.quiet && !global.json {
        eprintln!("{line}");
    }
}
