//! The library's one error vocabulary.
//!
//! Every fallible function in `ebm` returns [`Result<T>`]. Variants carry the data a user needs to
//! fix the problem (which parameter, which line, which variable); the CLI adds the file name as
//! context.

use std::io;

/// Errors raised by the `ebm` library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of its valid range (NaN, negative where it must not be, ...).
    #[error("invalid {name}: {reason}")]
    InvalidParam {
        /// The parameter's name as a user would write it (e.g. `beta`, `--flip`).
        name: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A model failed validation at construction.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// Two objects that must agree in size do not.
    #[error("size mismatch: {0}")]
    SizeMismatch(String),
    /// A text file could not be parsed; `line` is 1-based.
    #[error("line {line}: {msg}")]
    Parse {
        /// 1-based line number of the offending token.
        line: usize,
        /// What was found and what was expected.
        msg: String,
    },
    /// A file's content is not of the expected format (binary formats, headers, tensors).
    #[error("{0}")]
    Format(String),
    /// An exact method would need more work or memory than allowed.
    #[error("too large for {method}: {detail}")]
    TooLarge {
        /// The method that refused.
        method: String,
        /// The cost that was estimated (states, width, memory).
        detail: String,
    },
    /// The energy is not submodular, so minimum cut does not apply.
    #[error("the energy is not submodular (coupling between variables {i} and {j} is negative)")]
    NotSubmodular {
        /// First variable of the offending pair.
        i: usize,
        /// Second variable of the offending pair.
        j: usize,
    },
    /// The work was stopped by an observer.
    #[error("interrupted")]
    Interrupted,
    /// An operating-system I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::InvalidParam`].
    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Parse`].
    pub fn parse(line: usize, msg: impl Into<String>) -> Self {
        Error::Parse {
            line,
            msg: msg.into(),
        }
    }
}

/// Checks that `value` is finite, naming the parameter otherwise.
pub fn check_finite(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::param(
            name,
            format!("must be a finite number, got {value}"),
        ))
    }
}
