//! `roster ledger export` and `roster ledger stats`: the ledger as CSV/JSONL for audits, and
//! counts per target and state.

use super::LedgerError;
use crate::model::cells::neutralise;
use crate::model::{FieldError, join_errors};
use rusqlite::{Connection, params_from_iter};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};
use thiserror::Error;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated, one identity per line.
    Csv,
    /// One JSON object per identity.
    Jsonl,
}

/// Which entries to export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only this state (`created`, `rejected`…).
    pub state: Option<String>,
    /// Only this target (its ledger key, or the profile name before `@`).
    pub target: Option<String>,
}

/// One exported entry.
#[derive(Debug, Serialize)]
pub struct ExportRow {
    /// Target ledger key (profile and base URL).
    pub target: String,
    /// Normalised identity.
    pub identity: String,
    /// Ledger state.
    pub state: String,
    /// Remote id.
    pub remote_id: Option<String>,
    /// Last HTTP status.
    pub http_status: Option<u16>,
    /// Attempts over all runs.
    pub attempts: u32,
    /// First attempt, RFC 3339.
    pub first_attempt: Option<String>,
    /// Last attempt, RFC 3339.
    pub last_attempt: Option<String>,
    /// The file the identity last came from.
    pub source_file: Option<String>,
    /// Its row there.
    pub source_row: Option<u64>,
    /// Per-field errors.
    pub errors: Vec<FieldError>,
    /// `roster sync`: `active`, `deactivated` or `deleted` at the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_status: Option<String>,
    /// `roster sync`: the normalised values last sent (never a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<serde_json::Value>,
    /// `roster sync`: every change made, in order (run, action, what changed, outcome, when).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<serde_json::Value>,
}

enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

/// Why an export stopped: the ledger, or the place it was written to.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The destination cannot be written (a closed pipe among others).
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
}

fn open_read_only(path: &Path) -> Result<Connection, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Missing {
            path: path.to_path_buf(),
        });
    }
    super::sqlite::open_folded(path).map_err(|e| LedgerError::sqlite(path, e))
}

/// A write to the export's destination failed: a closed pipe is how `| head` ends.
fn write_error(e: impl Into<std::io::Error>) -> ExportError {
    ExportError::Write(e.into())
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    let ms = u64::try_from(ms?).ok()?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

/// Streams the matching entries to `out`, ordered by target and identity; returns the count.
pub fn export(
    path: &Path,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let conn = open_read_only(path)?;
    let err = |e: rusqlite::Error| ExportError::from(LedgerError::sqlite(path, e));
    // A ledger a sync has used also has the values last sent and each person's changes.
    let synced: bool = conn
        .query_row(
            "SELECT count(*) = 2 FROM sqlite_master WHERE name IN ('sync_people', 'sync_changes')",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let sync_columns = match synced {
        true => {
            "(SELECT status FROM sync_people s WHERE s.target = e.target AND s.identity = e.identity),
             (SELECT sent FROM sync_people s WHERE s.target = e.target AND s.identity = e.identity),
             (SELECT json_group_array(json_object('run', c.sync_run, 'action', c.action,
                     'changes', json(c.detail), 'state', c.state, 'message', c.message,
                     'at_ms', COALESCE(c.done_ms, c.claimed_ms)))
              FROM (SELECT * FROM sync_changes c WHERE c.target = e.target AND c.identity = e.identity
                    ORDER BY c.id) c)"
        }
        false => "NULL, NULL, NULL",
    };
    let mut sql = format!(
        "SELECT target, identity, state, remote_id, http_status, attempts, first_attempt_ms,
                last_attempt_ms, source_file, source_row, errors, {sync_columns}
         FROM entries e WHERE 1 = 1",
    );
    let mut args: Vec<String> = Vec::new();
    if let Some(state) = &filter.state {
        args.push(state.clone());
        sql.push_str(&format!(" AND state = ?{}", args.len()));
    }
    if let Some(target) = &filter.target {
        args.push(target.clone());
        let n = args.len();
        sql.push_str(&format!(" AND (target = ?{n} OR target LIKE ?{n} || '@%')"));
    }
    sql.push_str(" ORDER BY target, identity");
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let mut rows = stmt.query(params_from_iter(args.iter())).map_err(err)?;
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "target",
                "identity",
                "state",
                "remote_id",
                "http_status",
                "attempts",
                "first_attempt",
                "last_attempt",
                "source_file",
                "source_row",
                "errors",
                "sync_status",
                "last_sent",
                "history",
            ])
            .map_err(write_error)?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Jsonl => Sink::Jsonl(out),
    };
    let mut count = 0;
    while let Some(r) = rows.next().map_err(err)? {
        let errors: Vec<FieldError> = r
            .get::<_, Option<String>>(10)
            .map_err(err)?
            .and_then(|e| serde_json::from_str(&e).ok())
            .unwrap_or_default();
        let row = ExportRow {
            target: r.get(0).map_err(err)?,
            identity: r.get(1).map_err(err)?,
            state: r.get(2).map_err(err)?,
            remote_id: r.get(3).map_err(err)?,
            http_status: r.get(4).map_err(err)?,
            attempts: r.get(5).map_err(err)?,
            first_attempt: rfc3339(r.get(6).map_err(err)?),
            last_attempt: rfc3339(r.get(7).map_err(err)?),
            source_file: r.get(8).map_err(err)?,
            source_row: r.get::<_, Option<i64>>(9).map_err(err)?.map(|v| v as u64),
            errors,
            sync_status: r.get(11).map_err(err)?,
            last_sent: r
                .get::<_, Option<String>>(12)
                .map_err(err)?
                .and_then(|t| serde_json::from_str(&t).ok()),
            history: r
                .get::<_, Option<String>>(13)
                .map_err(err)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        };
        let written = match &mut sink {
            Sink::Csv(w) => {
                let status = row.http_status.map(|s| s.to_string()).unwrap_or_default();
                let source_row = row.source_row.map(|s| s.to_string()).unwrap_or_default();
                let errors = join_errors(&row.errors);
                let last_sent = row
                    .last_sent
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let history = match row.history.is_empty() {
                    true => String::new(),
                    false => serde_json::Value::Array(row.history.clone()).to_string(),
                };
                let cells = [
                    row.target.as_str(),
                    &row.identity,
                    &row.state,
                    row.remote_id.as_deref().unwrap_or(""),
                    &status,
                    &row.attempts.to_string(),
                    row.first_attempt.as_deref().unwrap_or(""),
                    row.last_attempt.as_deref().unwrap_or(""),
                    row.source_file.as_deref().unwrap_or(""),
                    &source_row,
                    &errors,
                    row.sync_status.as_deref().unwrap_or(""),
                    &last_sent,
                    &history,
                ];
                w.write_record(cells.iter().map(|c| neutralise(c).into_owned()))
                    .map_err(std::io::Error::from)
            }
            Sink::Jsonl(out) => serde_json::to_writer(&mut **out, &row)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n")),
        };
        written.map_err(write_error)?;
        count += 1;
    }
    if let Sink::Csv(mut w) = sink {
        w.flush().map_err(write_error)?;
    }
    Ok(count)
}

/// Counts per target and state, and the runs recorded.
pub fn stats(path: &Path) -> Result<String, LedgerError> {
    let conn = open_read_only(path)?;
    let err = |e: rusqlite::Error| LedgerError::sqlite(path, e);
    let mut out = String::new();
    let mut stmt = conn
        .prepare("SELECT target, state, COUNT(*), SUM(attempts) FROM entries GROUP BY target, state ORDER BY target, state")
        .map_err(err)?;
    let mut rows = stmt.query([]).map_err(err)?;
    out.push_str(&format!(
        "{:<40} {:<10} {:>10} {:>10}\n",
        "target", "state", "identities", "attempts"
    ));
    while let Some(r) = rows.next().map_err(err)? {
        let target: String = r.get(0).map_err(err)?;
        let state: String = r.get(1).map_err(err)?;
        let count: i64 = r.get(2).map_err(err)?;
        let attempts: i64 = r.get::<_, Option<i64>>(3).map_err(err)?.unwrap_or(0);
        out.push_str(&format!(
            "{target:<40} {state:<10} {count:>10} {attempts:>10}\n"
        ));
    }
    let (runs, last): (i64, Option<i64>) = conn
        .query_row("SELECT COUNT(*), MAX(started_ms) FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(err)?;
    out.push_str(&format!("runs: {runs}"));
    if let Some(last) = rfc3339(last) {
        out.push_str(&format!(" (last started {last})"));
    }
    out.push('\n');
    Ok(out)
}
