//! Errors that stop a run, and the exit codes they map to.
//!
//! Row problems are never here: they are [`crate::fields::FieldError`] values.

use std::path::PathBuf;
use thiserror::Error;

/// Exit code: every row created, already present or skipped.
pub const EXIT_OK: i32 = 0;
/// Exit code: finished, but some rows were refused or failed (error file written).
pub const EXIT_ROWS_REFUSED: i32 = 1;
/// Exit code: bad usage, configuration or unreadable input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: run aborted (credentials refused, interrupted, ledger locked).
pub const EXIT_ABORTED: i32 = 3;

/// Something that stops the run.
#[derive(Debug, Error)]
pub enum RunError {
    /// A flag, config file or mapping is wrong.
    #[error("{0}")]
    Usage(String),
    /// The input file cannot be read at all.
    #[error("failed to read `{path}`: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What went wrong, with its position where known.
        message: String,
    },
    /// An output file cannot be written.
    #[error("failed to write `{path}`: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The results ledger cannot be opened or written.
    #[error("ledger `{path}`: {message}")]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The target refused our credentials, or otherwise made going on pointless.
    #[error("run aborted: {0}")]
    Aborted(String),
    /// The run was interrupted (Ctrl-C / SIGTERM).
    #[error("run interrupted")]
    Interrupted,
    /// The sandbox or another local service could not start.
    #[error("{0}")]
    Startup(String),
}

impl RunError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::Input { .. } => EXIT_USAGE,
            RunError::Output { .. } | RunError::Startup(_) => EXIT_USAGE,
            RunError::Ledger { .. } | RunError::Aborted(_) | RunError::Interrupted => EXIT_ABORTED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(RunError::Usage("x".into()).exit_code(), 2);
        let input = RunError::Input {
            path: "a.csv".into(),
            message: "gone".into(),
        };
        assert_eq!(input.exit_code(), 2);
        assert_eq!(RunError::Aborted("401".into()).exit_code(), 3);
        assert_eq!(RunError::Interrupted.exit_code(), 3);
    }
}
