//! Why a whole input file cannot be read. A bad *row* is never here: it is the row's
//! `defect`, reported in the error file while the rest of the file goes on.

use std::path::PathBuf;
use thiserror::Error;

/// An input file that cannot be read at all (exit code 2: fix the file or the command).
#[derive(Debug, Error)]
pub enum InputError {
    /// The file cannot be opened or read.
    #[error("failed to read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV reader gave up on the file.
    #[error("failed to read `{}`: {source}{}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The line it gave up on, where known.
        line: Option<u64>,
        /// The CSV error.
        #[source]
        source: csv::Error,
    },
    /// The workbook cannot be opened or its sheet read.
    #[error("failed to read `{}`: {source}", path.display())]
    Sheet {
        /// The file.
        path: PathBuf,
        /// The spreadsheet reader's error.
        #[source]
        source: calamine::Error,
    },
    /// The file has no header row, no worksheet, no JSON object: nothing to import from.
    #[error("failed to read `{}`: {reason}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The command asked for something the file does not have (a sheet, a format).
    #[error("{0}")]
    Usage(String),
}

impl InputError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> InputError {
        InputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A file that holds nothing to import, and why.
    pub(crate) fn shape(path: &std::path::Path, reason: impl Into<String>) -> InputError {
        InputError::Shape {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A CSV error on `path`, with the line it happened on.
    pub(crate) fn csv(path: &std::path::Path, source: csv::Error) -> InputError {
        InputError::Csv {
            path: path.to_path_buf(),
            line: source.position().map(|p| p.line()),
            source,
        }
    }
}
