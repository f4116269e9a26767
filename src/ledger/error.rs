//! Why the results ledger cannot be used, sorted by what a script should do next.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// A ledger that cannot be opened, read or written.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// Another roster run holds the ledger's lock (exit 4: skip this time).
    #[error("ledger `{}` is held by another roster run ({holder}) (hint: wait for it to finish; overlapping runs would double-send)", path.display())]
    Held {
        /// The ledger file.
        path: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// SQLite found the database locked (exit 4).
    #[error("ledger `{}` is locked by another roster run (hint: wait for it to finish)", path.display())]
    Busy {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not SQLite, or is damaged (exit 2).
    #[error("ledger `{}` is not a roster ledger, or is damaged: {source}", path.display())]
    Damaged {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A newer roster wrote it (exit 2).
    #[error("ledger `{}` was written by a newer roster (schema {found}; this one knows {known})", path.display())]
    Newer {
        /// The ledger file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this roster knows.
        known: i64,
    },
    /// There is no ledger where one was asked for (exit 2).
    #[error("no ledger at `{}` (hint: --ledger PATH)", path.display())]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The disk is full (exit 5: free space, run again).
    #[error("ledger `{}` cannot be written: the disk is full ({source}); free space and run again", path.display())]
    DiskFull {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite error (exit 5).
    #[error("ledger `{}`: {source}", path.display())]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file beside the ledger (the ledger itself, its lock) cannot be opened or written.
    #[error("ledger `{}`: {what}: {source}", path.display())]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// What roster was doing.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PostgreSQL ledger refused or failed (exit 2 for credentials, a missing database or
    /// a refused permission; 5 otherwise). Never holds the password.
    #[error("ledger `{ledger}`: {message}")]
    Postgres {
        /// The URL without its password.
        ledger: String,
        /// What the server or the connection said.
        message: String,
        /// The exit code it maps to.
        exit: i32,
    },
    /// A copy's destination already holds people of a target copied (exit 2).
    #[error(
        "ledger `{ledger}` already holds {people} people of `{target}`: a copy never merges two histories of one target (hint: copy into an empty ledger)"
    )]
    Occupied {
        /// The destination, as shown.
        ledger: String,
        /// The target key.
        target: String,
        /// How many it holds.
        people: i64,
    },
    /// `ledger copy` of a target `roster sync` keeps records for, which the copy would lose.
    #[error(
        "`{ledger}` holds `roster sync` records for {people} people of `{target}` (values last sent, who is deactivated), which `ledger copy` does not carry yet: copying would make the next sync re-send every field and never reactivate a returning leaver"
    )]
    SyncRecords {
        /// The source, as shown.
        ledger: String,
        /// The target key.
        target: String,
        /// How many people it keeps records for.
        people: i64,
    },
    /// The ledger's writer thread cannot start (exit 5).
    #[error("cannot start the ledger's writer thread: {0}")]
    WriterStart(#[source] std::io::Error),
    /// The ledger's writer thread panicked: a bug (exit 70).
    #[error("the ledger's writer thread panicked (this is a bug in roster; please report it)")]
    WriterPanicked,
    /// The ledger's writer thread went away before the run ended (exit 5).
    #[error("ledger `{}`: the writer stopped unexpectedly", path.display())]
    WriterStopped {
        /// The ledger file.
        path: PathBuf,
    },
}

impl LedgerError {
    /// Sorts a SQLite error on the ledger at `path` by what a script should do next.
    pub fn sqlite(path: &Path, source: rusqlite::Error) -> LedgerError {
        let path = path.to_path_buf();
        let code = match &source {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
            _ => None,
        };
        use rusqlite::ErrorCode as C;
        match code {
            Some(C::DatabaseBusy | C::DatabaseLocked) => LedgerError::Busy { path, source },
            Some(C::NotADatabase | C::DatabaseCorrupt) => LedgerError::Damaged { path, source },
            Some(C::DiskFull) => LedgerError::DiskFull { path, source },
            _ => LedgerError::Sqlite { path, source },
        }
    }

    /// The documented exit code: held (4), not usable as given (2), or try again later (5).
    pub fn exit_code(&self) -> i32 {
        use crate::exit::{EXIT_INTERNAL, EXIT_LOCKED, EXIT_RETRY_LATER, EXIT_USAGE};
        match self {
            LedgerError::Held { .. } | LedgerError::Busy { .. } => EXIT_LOCKED,
            LedgerError::Damaged { .. }
            | LedgerError::Newer { .. }
            | LedgerError::Missing { .. }
            | LedgerError::Occupied { .. }
            | LedgerError::SyncRecords { .. } => EXIT_USAGE,
            LedgerError::DiskFull { .. }
            | LedgerError::Sqlite { .. }
            | LedgerError::Io { .. }
            | LedgerError::WriterStart(_)
            | LedgerError::WriterStopped { .. } => EXIT_RETRY_LATER,
            LedgerError::WriterPanicked => EXIT_INTERNAL,
            LedgerError::Postgres { exit, .. } => *exit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn sqlite_errors_sort_by_what_to_do_and_keep_their_cause() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let path = Path::new("l.sqlite");
        let busy = LedgerError::sqlite(path, failure(rusqlite::ffi::SQLITE_BUSY));
        assert_eq!(busy.exit_code(), 4);
        assert!(busy.source().is_some(), "SQLite's error is the source");
        let damaged = LedgerError::sqlite(path, failure(rusqlite::ffi::SQLITE_NOTADB));
        assert_eq!(damaged.exit_code(), 2);
        let full = LedgerError::sqlite(path, failure(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(full.exit_code(), 5);
        assert!(full.to_string().contains("the disk is full"), "{full}");
    }
}
