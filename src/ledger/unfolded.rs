//! What runs write beside `entries`, folded into it before anything reads it: claim batches
//! ([`claims`], people claimed and not yet answered) and the results journal ([`results`]).

use super::{claims, results};
use rusqlite::Connection;

/// Whether `conn`'s ledger holds a row of `table` (false for a ledger without the table).
fn any(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(false);
    }
    conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
        r.get(0)
    })
}

/// Folds every claim batch and journaled result into `entries`, in one transaction of its
/// own; returns the entries written. Safe beside a run that is still claiming: it writes
/// only what that run's claims and results stand for, as the run itself would.
pub(crate) fn fold(conn: &Connection) -> rusqlite::Result<usize> {
    if !any(conn, "claims")? && !any(conn, "results")? {
        return Ok(0);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match fold_in_transaction(conn) {
        Ok(written) => {
            conn.execute_batch("COMMIT")?;
            Ok(written)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// [`fold`], in the caller's transaction. Claims first: a claim's `sending` entry is written
/// only where there is none, and a result overwrites it, so either order leaves the same
/// entries; this one writes each entry's columns as the run wrote them.
pub(crate) fn fold_in_transaction(conn: &Connection) -> rusqlite::Result<usize> {
    Ok(claims::fold_in_transaction(conn)? + results::fold_in_transaction(conn)?)
}
