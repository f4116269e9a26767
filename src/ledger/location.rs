//! Where the ledger lives: a SQLite file (the default) or a PostgreSQL database
//! (`--ledger postgres://USER@HOST:PORT/DB`).

use super::LedgerError;
use super::postgres::{PgLocation, is_postgres_url};
use std::path::{Path, PathBuf};

/// The ledger's place, as `--ledger` or `ledger =` named it.
#[derive(Debug, Clone)]
pub enum LedgerLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (address and credentials, never printed whole).
    Postgres(Box<PgLocation>),
}

impl LedgerLocation {
    /// Reads `--ledger`: a `postgres://` or `postgresql://` URL, else a file path.
    pub fn parse(given: &Path) -> Result<LedgerLocation, LedgerError> {
        match given.to_str() {
            Some(text) if is_postgres_url(text) => {
                Ok(LedgerLocation::Postgres(Box::new(PgLocation::parse(text)?)))
            }
            _ => Ok(LedgerLocation::Sqlite(given.to_path_buf())),
        }
    }

    /// How the ledger is named in messages and summaries (a URL without its password).
    pub fn shown(&self) -> String {
        match self {
            LedgerLocation::Sqlite(path) => path.display().to_string(),
            LedgerLocation::Postgres(pg) => pg.shown().to_string(),
        }
    }

    /// The SQLite file, if the ledger is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            LedgerLocation::Sqlite(path) => Some(path),
            LedgerLocation::Postgres(_) => None,
        }
    }
}
