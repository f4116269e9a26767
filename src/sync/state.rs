//! What `roster sync` keeps beside the ledger's entries, in the same SQLite file: per person,
//! the values last sent (normalised, never a password or secret), whether the person is
//! active, deactivated or deleted at the target, and how many syncs in a row missed them;
//! per change, its claim and outcome (the history `roster ledger export --history` shows);
//! per sync, the input's size and header set, which the next sync's damage checks compare with.

use crate::ledger::{LedgerError, now_ms};
use crate::model::{Field, UserFields};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

// The CHECKs compare rather than use `IN (...)`, which SQLite evaluates through a temporary
// b-tree per row written (see the ledger's schema.sql).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_people (
    target       TEXT    NOT NULL,
    identity     TEXT    NOT NULL,
    -- The normalised values last sent, as a JSON object of field names (no password).
    sent         TEXT,
    status       TEXT    NOT NULL DEFAULT 'active'
                         CHECK (status = 'active' OR status = 'deactivated' OR status = 'deleted'),
    absent_runs  INTEGER NOT NULL DEFAULT 0 CHECK (absent_runs >= 0),
    last_seen_ms INTEGER,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (target, identity)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sync_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT    NOT NULL,
    identity    TEXT    NOT NULL,
    sync_run    INTEGER NOT NULL,
    action      TEXT    NOT NULL CHECK (action = 'update' OR action = 'deactivate'
                                OR action = 'reactivate' OR action = 'delete'),
    -- What changed: {field: [before, after]} for an update.
    detail      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state = 'claimed' OR state = 'done' OR state = 'gone'
                                OR state = 'refused' OR state = 'failed'),
    http_status INTEGER,
    message     TEXT,
    claimed_ms  INTEGER NOT NULL,
    done_ms     INTEGER
) STRICT;

CREATE TABLE IF NOT EXISTS sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT    NOT NULL,
    source_file TEXT    NOT NULL,
    rows        INTEGER NOT NULL,
    headers     TEXT    NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    -- Why the leaver step was held back, when it was: such a run is no baseline.
    held        TEXT
) STRICT;
";

/// A person the ledger knows for this target, as a sync sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The normalised identity.
    pub identity: String,
    /// The ledger's state (`created` or `exists`).
    pub state: String,
    /// The id the target gave them.
    pub remote_id: Option<String>,
    /// The values last sent, when roster knows them.
    pub sent: Option<BTreeMap<String, String>>,
    /// `active`, `deactivated` or `deleted`.
    pub status: String,
    /// Syncs in a row that did not find them in the input.
    pub absent_runs: u32,
    /// When a sync last found them (ms since the epoch).
    pub last_seen_ms: Option<i64>,
}

/// The last sync whose leaver step ran: what its input held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// Data rows read.
    pub rows: u64,
    /// The header set, sorted.
    pub headers: Vec<String>,
}

/// A change's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEnd {
    /// Done.
    Done,
    /// The target no longer holds the user.
    Gone,
    /// Refused by the target.
    Refused,
    /// Transient failures outlasted the retries.
    Failed,
}

impl ChangeEnd {
    /// Its word in the ledger.
    pub fn word(self) -> &'static str {
        match self {
            ChangeEnd::Done => "done",
            ChangeEnd::Gone => "gone",
            ChangeEnd::Refused => "refused",
            ChangeEnd::Failed => "failed",
        }
    }
}

/// Where a sync keeps its records for one target: the ledger's own database (SQLite here,
/// PostgreSQL in [`super::pg_state`]). Every call that writes commits before it returns.
pub trait SyncStore {
    /// Everyone the ledger holds as created or existing for this target, with what a sync
    /// kept of them.
    fn known(&self) -> Result<Vec<Known>, LedgerError>;
    /// The last sync of this target whose leaver step was not held back.
    fn baseline(&self) -> Result<Option<Baseline>, LedgerError>;
    /// Starts a sync run: its id.
    fn start_run(&self, source: &str, rows: u64, headers: &[String]) -> Result<i64, LedgerError>;
    /// Ends a sync run, with why its leaver step was held back if it was.
    fn finish_run(&self, run: i64, held: Option<&str>) -> Result<(), LedgerError>;
    /// Records the values sent to `identity` (active, seen now).
    fn record_sent(
        &self,
        identity: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), LedgerError>;
    /// Sets a person's status at the target.
    fn set_status(&self, identity: &str, status: &str) -> Result<(), LedgerError>;
    /// Counts this sync's sightings: everyone in `present` was seen now, everyone else
    /// known was missed once more. One transaction.
    fn count_absences(&self, present: &HashSet<String>, known: &[Known])
    -> Result<(), LedgerError>;
    /// Claims a change before its request leaves: its id.
    fn claim(
        &self,
        run: i64,
        identity: &str,
        action: &str,
        detail: &str,
    ) -> Result<i64, LedgerError>;
    /// Records a change's end.
    fn settle(
        &self,
        change: i64,
        end: ChangeEnd,
        status: Option<u16>,
        message: Option<&str>,
    ) -> Result<(), LedgerError>;
    /// Marks claims left by a killed run as failed (this sync redoes what is still due:
    /// changes carry absolute values, so a repeat is harmless).
    fn close_unsettled(&self) -> Result<(), LedgerError>;
    /// A person deleted at the target who is back in the input: their ledger entry is
    /// released (`unsent`), so the create step makes them again.
    fn release_for_create(&self, identity: &str) -> Result<(), LedgerError>;

    /// A digest of everything a plan was computed from in the ledger (entries and sync
    /// records of this target), so that `--apply` can tell the ledger changed since.
    fn fingerprint(&self) -> Result<String, LedgerError> {
        let mut text = String::new();
        for k in self.known()? {
            text.push_str(&format!(
                "{}\u{1f}{}\u{1f}{:?}\u{1f}{:?}\u{1f}{}\u{1f}{}\n",
                k.identity, k.state, k.remote_id, k.sent, k.status, k.absent_runs
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        Ok(hex(digest.as_ref()))
    }
}

/// The sync tables of one SQLite ledger, for one target.
pub struct SyncState {
    conn: Connection,
    path: PathBuf,
    target: String,
}

/// The values roster keeps of a person: every normalised field but the password.
pub fn kept_values(user: &UserFields) -> BTreeMap<String, String> {
    Field::ALL
        .iter()
        .filter(|f| !f.is_secret())
        .filter_map(|&f| user.get(f).map(|v| (f.name().to_string(), v.to_string())))
        .collect()
}

/// Fields from kept values.
pub fn fields_of(values: &BTreeMap<String, String>) -> UserFields {
    let mut user = UserFields::default();
    for (name, value) in values {
        if let Some(field) = Field::parse(name) {
            user.set(field, Some(value.clone()));
        }
    }
    user
}

impl SyncState {
    /// Opens the sync tables of the ledger at `path` (created if missing) for `target`.
    pub fn open(path: &Path, target: &str) -> Result<SyncState, LedgerError> {
        let conn = Connection::open(path).map_err(|e| err(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| err(path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(path, e))?;
        // What a crashed run left beside the entries (claims, journaled results) is read as
        // the entries it stands for, as every reader of them does.
        crate::ledger::unfolded::fold(&conn).map_err(|e| err(path, e))?;
        Ok(SyncState {
            conn,
            path: path.to_path_buf(),
            target: target.to_string(),
        })
    }

    fn e(&self, e: rusqlite::Error) -> LedgerError {
        err(&self.path, e)
    }
}

impl SyncStore for SyncState {
    /// Everyone the ledger holds as created or existing for this target, with what a sync
    /// kept of them.
    fn known(&self) -> Result<Vec<Known>, LedgerError> {
        // A ledger no import has written yet (just created by its lock) holds nobody.
        let has_entries: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'entries'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))?;
        if !has_entries {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.identity, e.state, e.remote_id, s.sent, COALESCE(s.status, 'active'),
                        COALESCE(s.absent_runs, 0), s.last_seen_ms
                 FROM entries e LEFT JOIN sync_people s
                   ON s.target = e.target AND s.identity = e.identity
                 WHERE e.target = ?1 AND e.state IN ('created', 'exists')
                 ORDER BY e.identity",
            )
            .map_err(|e| self.e(e))?;
        let rows = stmt
            .query_map([&self.target], |r| {
                let sent: Option<String> = r.get(3)?;
                Ok(Known {
                    identity: r.get(0)?,
                    state: r.get(1)?,
                    remote_id: r.get(2)?,
                    sent: sent.and_then(|s| serde_json::from_str(&s).ok()),
                    status: r.get(4)?,
                    absent_runs: r.get::<_, i64>(5)? as u32,
                    last_seen_ms: r.get(6)?,
                })
            })
            .map_err(|e| self.e(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.e(e))
    }

    /// The last sync of this target whose leaver step was not held back.
    fn baseline(&self) -> Result<Option<Baseline>, LedgerError> {
        self.conn
            .query_row(
                "SELECT rows, headers FROM sync_runs
                 WHERE target = ?1 AND finished_ms IS NOT NULL AND held IS NULL
                 ORDER BY id DESC LIMIT 1",
                [&self.target],
                |r| {
                    let headers: String = r.get(1)?;
                    Ok(Baseline {
                        rows: r.get::<_, i64>(0)? as u64,
                        headers: serde_json::from_str(&headers).unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// Starts a sync run: its id.
    fn start_run(&self, source: &str, rows: u64, headers: &[String]) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO sync_runs (target, source_file, rows, headers, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    self.target,
                    source,
                    rows as i64,
                    serde_json::to_string(headers).unwrap_or_default(),
                    now_ms()
                ],
            )
            .map_err(|e| self.e(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Ends a sync run, with why its leaver step was held back if it was.
    fn finish_run(&self, run: i64, held: Option<&str>) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE sync_runs SET finished_ms = ?2, held = ?3 WHERE id = ?1",
                params![run, now_ms(), held],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Records the values sent to `identity` (active, seen now).
    fn record_sent(
        &self,
        identity: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), LedgerError> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO sync_people (target, identity, sent, status, absent_runs, last_seen_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'active', 0, ?4, ?4)
                 ON CONFLICT (target, identity) DO UPDATE SET sent = ?3, status = 'active',
                     absent_runs = 0, last_seen_ms = ?4, updated_ms = ?4",
                params![
                    self.target,
                    identity,
                    serde_json::to_string(values).unwrap_or_default(),
                    now
                ],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Sets a person's status at the target.
    fn set_status(&self, identity: &str, status: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT INTO sync_people (target, identity, status, updated_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (target, identity) DO UPDATE SET status = ?3, updated_ms = ?4",
                params![self.target, identity, status, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Counts this sync's sightings: everyone in `present` was seen now, everyone else
    /// known was missed once more. One transaction.
    fn count_absences(
        &self,
        present: &HashSet<String>,
        known: &[Known],
    ) -> Result<(), LedgerError> {
        let now = now_ms();
        let target = self.target.clone();
        let path = self.path.clone();
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| err(&path, e))?;
        {
            let mut seen = tx
                .prepare(
                    "INSERT INTO sync_people (target, identity, absent_runs, last_seen_ms, updated_ms)
                     VALUES (?1, ?2, 0, ?3, ?3)
                     ON CONFLICT (target, identity) DO UPDATE SET absent_runs = 0, last_seen_ms = ?3",
                )
                .map_err(|e| err(&path, e))?;
            let mut missed = tx
                .prepare(
                    "INSERT INTO sync_people (target, identity, absent_runs, updated_ms)
                     VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT (target, identity) DO UPDATE SET absent_runs = absent_runs + 1",
                )
                .map_err(|e| err(&path, e))?;
            for k in known {
                if present.contains(&k.identity) {
                    seen.execute(params![target, k.identity, now])
                } else {
                    missed.execute(params![target, k.identity, now])
                }
                .map_err(|e| err(&path, e))?;
            }
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// Claims a change before its request leaves: its id.
    fn claim(
        &self,
        run: i64,
        identity: &str,
        action: &str,
        detail: &str,
    ) -> Result<i64, LedgerError> {
        self.conn
            .execute(
                "INSERT INTO sync_changes (target, identity, sync_run, action, detail, state, claimed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6)",
                params![self.target, identity, run, action, detail, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records a change's end.
    fn settle(
        &self,
        change: i64,
        end: ChangeEnd,
        status: Option<u16>,
        message: Option<&str>,
    ) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE sync_changes SET state = ?2, http_status = ?3, message = ?4, done_ms = ?5
                 WHERE id = ?1",
                params![change, end.word(), status, message, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Marks claims left by a killed run as failed (this sync redoes what is still due).
    fn close_unsettled(&self) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE sync_changes SET state = 'failed', message = 'the run that claimed it ended before its answer', done_ms = ?2
                 WHERE target = ?1 AND state = 'claimed'",
                params![self.target, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// A person deleted at the target who is back in the input: their ledger entry is
    /// released (`unsent`), so the create step makes them again.
    fn release_for_create(&self, identity: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE entries SET state = 'unsent', remote_id = NULL WHERE target = ?1 AND identity = ?2",
                params![self.target, identity],
            )
            .map_err(|e| self.e(e))?;
        self.conn
            .execute(
                "DELETE FROM sync_people WHERE target = ?1 AND identity = ?2",
                params![self.target, identity],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }
}

fn err(path: &Path, e: rusqlite::Error) -> LedgerError {
    crate::ledger::sqlite::ledger_error(path, e)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::SqliteLedger;
    use crate::ledger::sqlite::tests::{claim, record, submission, user};
    use crate::model::Outcome;

    /// A run killed after its results were committed (journaled, not yet folded into the
    /// entries) created its people: a sync must know them, not plan to create them again.
    #[test]
    fn a_sync_knows_the_people_a_killed_run_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv")
            .unwrap()
            .journaling();
        let (sent, _) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        drop(ledger); // killed: no finish, so nothing folded

        let known = SyncState::open(&path, "t").unwrap().known().unwrap();
        let seen: Vec<(&str, &str, Option<&str>)> = known
            .iter()
            .map(|k| {
                (
                    k.identity.as_str(),
                    k.state.as_str(),
                    k.remote_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(seen, [("a@x.io", "created", Some("r1"))]);
    }
}
