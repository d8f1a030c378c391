//! The `ebm` command line: parse, run, map errors to exit codes.
//!
//! Exit status: 0 on success (and when stdout is a closed pipe, `ebm ... | head`), 1 on a
//! runtime failure, 2 on bad input or flags. With `--json`, a failed run prints one object
//! `{"error": ..., "exit_code": ...}` on stdout (clap's parse errors included); the message also
//! goes to stderr, whose failures are ignored.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => return cli::parse_error(err),
    };
    let json = args.global.json;
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = cli::exit_code(&err);
            let message = format!("{err:#}");
            cli::output::eprint_line(&format!("error: {message}"));
            if json {
                cli::output::print_error_json(&message, code);
            }
            ExitCode::from(code)
        }
    }
}
