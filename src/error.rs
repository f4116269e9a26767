//! Errors that stop a run, and the exit codes they map to (see [`crate::exit`]).
//!
//! Row problems are never here: they are [`crate::model::FieldError`] values. Each stage's
//! own error enum ([`crate::input::InputError`], [`crate::ledger::LedgerError`], …) converts
//! into a [`RunError`] keeping its cause as the `source`.

pub use crate::exit::*;
use crate::ledger::export::ExportError;
use crate::model::StopReason;
use std::path::PathBuf;
use thiserror::Error;

/// Something that stops the run.
#[derive(Debug, Error)]
pub enum RunError {
    /// A flag, config file or mapping is wrong.
    #[error("{0}")]
    Usage(String),
    /// The input file cannot be read at all.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
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
    /// The results ledger cannot be used: held by another run, damaged, or not writable.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
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
            RunError::Usage(_) | RunError::Input(_) | RunError::Startup(_) => EXIT_USAGE,
            RunError::Aborted(_) => EXIT_ABORTED,
            RunError::Ledger(e) => e.exit_code(),
            RunError::Output { .. } | RunError::RetryLater(_) => EXIT_RETRY_LATER,
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

impl From<StopReason> for RunError {
    /// The run error a stop ends the run with.
    fn from(reason: StopReason) -> RunError {
        match reason {
            StopReason::Aborted(m) => RunError::Aborted(m),
            StopReason::RetryLater(m) => RunError::RetryLater(m),
            StopReason::Internal(m) => RunError::Internal(m),
            StopReason::Interrupted => RunError::Interrupted,
        }
    }
}

impl From<ExportError> for RunError {
    /// A ledger error as itself; a failed write as a write to standard output (a closed
    /// pipe is how `roster ledger export | head` ends).
    fn from(e: ExportError) -> RunError {
        match e {
            ExportError::Ledger(e) => RunError::Ledger(e),
            ExportError::Write(e) => RunError::stdout(e),
        }
    }
}

/// A TOML file's parse error by position and kind, without the offending line or any quoted
/// value (a token pasted into a config file must not reach the terminal or a CI log).
pub fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let mut message = String::new();
    let mut quoted = false;
    for c in e.message().chars() {
        match c {
            '"' if quoted => {
                quoted = false;
                message.push_str("…\"");
            }
            '"' => {
                quoted = true;
                message.push('"');
            }
            _ if quoted => {}
            _ => message.push(c),
        }
    }
    let message = message.trim().trim_end_matches('.');
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_string(),
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
        let input = RunError::from(crate::input::InputError::Usage("no sheet".into()));
        assert_eq!(input.exit_code(), 2);
        assert_eq!(RunError::Aborted("401".into()).exit_code(), 3);
        let locked = RunError::from(crate::ledger::LedgerError::Held {
            path: "l".into(),
            holder: "pid 1".into(),
        });
        assert_eq!(locked.exit_code(), 4);
        assert_eq!(RunError::RetryLater("down".into()).exit_code(), 5);
        let gone = RunError::from(crate::ledger::LedgerError::WriterStopped { path: "l".into() });
        assert_eq!(gone.exit_code(), 5);
        assert_eq!(RunError::Internal("lost".into()).exit_code(), 70);
        assert_eq!(RunError::Interrupted.exit_code(), 130);
        for (reason, code) in [
            (StopReason::Aborted("x".into()), 3),
            (StopReason::RetryLater("x".into()), 5),
            (StopReason::Internal("x".into()), 70),
            (StopReason::Interrupted, 130),
        ] {
            assert_eq!(RunError::from(reason).exit_code(), code);
        }
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(RunError::stdout(pipe).exit_code(), 0);
    }
}
