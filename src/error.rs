//! Errors that stop a run, and the exit codes they map to.
//!
//! Row problems are never here: they are [`crate::model::FieldError`] values.
//!
//! The codes are a contract with scripts (cron, CI), so each tells what to do next:
//!
//! | code | meaning | what to do |
//! |---|---|---|
//! | 0 | done: every row created, present or skipped (also: stdout was closed) | nothing |
//! | 1 | rows were refused in this run | fix the error file, feed it back in |
//! | 2 | bad usage, config or unreadable input | fix the command or the file |
//! | 3 | run aborted: credentials refused, a systematic refusal, a quota | a human looks |
//! | 4 | the ledger is held by another run | skip this time |
//! | 5 | failures left that a re-run will retry (target down, wait too long, breaker, disk) | run again later |
//! | 70 | internal error: roster lost track of rows (a bug) | report it |
//! | 130 | interrupted (Ctrl-C / SIGTERM) | run again to resume |

use std::path::PathBuf;
use thiserror::Error;

/// Exit code: every row created, already present or skipped.
pub const EXIT_OK: i32 = 0;
/// Exit code: rows were refused in this run (error file written).
pub const EXIT_ROWS_REFUSED: i32 = 1;
/// Exit code: bad usage, configuration or unreadable input.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: run aborted (credentials refused, systematic refusal, quota exhausted).
pub const EXIT_ABORTED: i32 = 3;
/// Exit code: the ledger is held by another run.
pub const EXIT_LOCKED: i32 = 4;
/// Exit code: failures left that a re-run will retry.
pub const EXIT_RETRY_LATER: i32 = 5;
/// Exit code: an internal error (BSD `EX_SOFTWARE`): rows unaccounted for, a panic.
pub const EXIT_INTERNAL: i32 = 70;
/// Exit code: interrupted by a signal (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

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
        #[source]
        source: std::io::Error,
    },
    /// Standard output was closed by its reader (`roster … | head`): not a failure.
    #[error("standard output was closed")]
    BrokenPipe,
    /// The results ledger cannot be written (a full disk, an I/O error): try again later.
    #[error("ledger `{path}`: {message}")]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file is not a ledger roster can read (not SQLite, damaged, from a newer roster).
    #[error("ledger `{path}`: {message}")]
    LedgerUnreadable {
        /// The ledger file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Another run holds the ledger.
    #[error("ledger `{path}` {message}")]
    Locked {
        /// The ledger file.
        path: PathBuf,
        /// Who holds it, and the hint.
        message: String,
    },
    /// The target refused our credentials, or otherwise made going on pointless.
    #[error("run aborted: {0}")]
    Aborted(String),
    /// The run stopped for a reason a later run will not meet (target down, a wait longer
    /// than the run is willing to wait).
    #[error("run stopped: {0}")]
    RetryLater(String),
    /// The run was interrupted (Ctrl-C / SIGTERM).
    #[error("run interrupted")]
    Interrupted,
    /// roster lost track of something it must account for: a bug.
    #[error("internal error: {0} (this is a bug in roster; please report it)")]
    Internal(String),
    /// The sandbox or another local service could not start.
    #[error("{0}")]
    Startup(String),
}

impl RunError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::BrokenPipe => EXIT_OK,
            RunError::Usage(_)
            | RunError::Input { .. }
            | RunError::LedgerUnreadable { .. }
            | RunError::Startup(_) => EXIT_USAGE,
            RunError::Aborted(_) => EXIT_ABORTED,
            RunError::Locked { .. } => EXIT_LOCKED,
            RunError::Output { .. } | RunError::Ledger { .. } | RunError::RetryLater(_) => {
                EXIT_RETRY_LATER
            }
            RunError::Internal(_) => EXIT_INTERNAL,
            RunError::Interrupted => EXIT_INTERRUPTED,
        }
    }

    /// An error writing to standard output: a closed pipe is [`RunError::BrokenPipe`].
    pub fn stdout(e: std::io::Error) -> RunError {
        match e.kind() {
            std::io::ErrorKind::BrokenPipe => RunError::BrokenPipe,
            _ => RunError::Output {
                path: PathBuf::from("<stdout>"),
                source: e,
            },
        }
    }
}

/// Writes `text` to standard output; a reader that went away is [`RunError::BrokenPipe`].
pub fn print_stdout(text: &str) -> Result<(), RunError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(RunError::stdout)
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
        let locked = RunError::Locked {
            path: "l".into(),
            message: "held".into(),
        };
        assert_eq!(locked.exit_code(), 4);
        assert_eq!(RunError::RetryLater("down".into()).exit_code(), 5);
        let full = RunError::Ledger {
            path: "l".into(),
            message: "disk full".into(),
        };
        assert_eq!(full.exit_code(), 5);
        assert_eq!(RunError::Internal("lost".into()).exit_code(), 70);
        assert_eq!(RunError::Interrupted.exit_code(), 130);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(RunError::stdout(pipe).exit_code(), 0);
    }
}
