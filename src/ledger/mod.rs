//! The results ledger: one SQLite row per identity, the single source of truth for what has
//! been done. A claim (`sending`) is committed before its request leaves; a result is committed
//! before it is reported. [`writer`] runs it on one thread with batched transactions.

pub mod export;
pub mod lock;
pub mod seen;
pub mod writer;

use crate::error::RunError;
use crate::fields::FieldError;
use crate::outcome::{Outcome, RowReport};
use crate::submit::Submission;
use crate::validate::{InvalidRow, ReadyUser};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    target           TEXT    NOT NULL,
    identity         TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    remote_id        TEXT,
    http_status      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    content_hash     INTEGER,
    first_attempt_ms INTEGER,
    last_attempt_ms  INTEGER,
    updated_ms       INTEGER NOT NULL,
    source_file      TEXT,
    source_row       INTEGER,
    run_id           INTEGER,
    errors           TEXT,
    response_body    TEXT,
    PRIMARY KEY (target, identity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT    NOT NULL,
    source_file TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    summary     TEXT
);
";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One identity's record, as read back for audits and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised identity (email).
    pub identity: String,
    /// `sending`, `created`, `exists`, `rejected`, `failed` or `invalid`.
    pub state: String,
    /// The id the API gave the user.
    pub remote_id: Option<String>,
    /// The last HTTP status.
    pub http_status: Option<u16>,
    /// All attempts over all runs.
    pub attempts: u32,
    /// The row in the source file that last spoke for this identity.
    pub source_row: Option<u64>,
}

/// How a claim is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Only for an identity the ledger has never seen.
    IfNew,
    /// Whatever the ledger holds for the identity.
    Always,
}

/// An entry's `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Sending,
    Created,
    Exists,
    Rejected,
    Failed,
    Other,
}

impl State {
    fn parse(text: &str) -> State {
        match text {
            "sending" => State::Sending,
            "created" => State::Created,
            "exists" => State::Exists,
            "rejected" => State::Rejected,
            "failed" => State::Failed,
            _ => State::Other,
        }
    }
}

/// A connection to the ledger for one run against one target.
pub struct SqliteLedger {
    conn: Connection,
    path: PathBuf,
    target: String,
    source_file: String,
    run_id: i64,
    /// Rows of this run found already done, by identity hash → row: they are not written
    /// back (an idle re-run of a million done rows would otherwise rewrite the whole ledger),
    /// so a repeat of one within the file is caught here.
    done_this_run: seen::SeenRows,
    /// Whether the last claimed identity was new to the ledger: a first import (or a file of
    /// new people) then claims with one insert per row instead of a lookup and an insert.
    expect_new: bool,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path` and starts a run for `target` reading
    /// `source_file`.
    pub fn open(path: &Path, target: &str, source_file: &str) -> Result<SqliteLedger, RunError> {
        let err = |e: rusqlite::Error| ledger_error(path, e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute(
            "INSERT INTO runs (target, source_file, pid, started_ms) VALUES (?1, ?2, ?3, ?4)",
            params![target, source_file, std::process::id(), now_ms()],
        )
        .map_err(err)?;
        let run_id = conn.last_insert_rowid();
        Ok(SqliteLedger {
            conn,
            path: path.to_path_buf(),
            target: target.to_string(),
            source_file: source_file.to_string(),
            run_id,
            done_this_run: seen::SeenRows::default(),
            expect_new: true,
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in one transaction.
    pub fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Self) -> rusqlite::Result<T>,
    ) -> Result<T, RunError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| ledger_error(&self.path, e))?;
        match work(self) {
            Ok(value) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(|e| ledger_error(&self.path, e))?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(ledger_error(&self.path, e))
            }
        }
    }

    /// Decides each ready user's fate against the ledger: users to send are claimed
    /// (`sending`) and returned; the rest (already done, repeated in this file, refused before
    /// with the same content) are reported into `reports`.
    pub fn claim(
        &mut self,
        users: Vec<ReadyUser>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Vec<ReadyUser>> {
        Ok(self.claim_up_to(users, usize::MAX, reports)?.0)
    }

    /// [`claim`](Self::claim) that stops once `limit` users are claimed, returning them and
    /// the users it did not reach. Done rows cost no claim, so a re-run of a file that is
    /// all done goes through in one call.
    pub fn claim_up_to(
        &mut self,
        users: Vec<ReadyUser>,
        limit: usize,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<(Vec<ReadyUser>, Vec<ReadyUser>)> {
        let now = now_ms();
        let mut to_send = Vec::with_capacity(users.len().min(limit));
        let mut users = users.into_iter();
        while to_send.len() < limit {
            let Some(user) = users.next() else {
                break;
            };
            if self.expect_new && self.write_claim(&user, now, Claim::IfNew)? {
                to_send.push(user);
                continue;
            }
            if let Some(user) = self.unsettled(user, reports)? {
                self.write_claim(&user, now, Claim::Always)?;
                to_send.push(user);
            }
        }
        Ok((to_send, users.collect()))
    }

    /// Marks `user` `sending`; true if it did (with [`Claim::IfNew`], false means the ledger
    /// already knew the identity and nothing was written).
    fn write_claim(&mut self, user: &ReadyUser, now: i64, how: Claim) -> rusqlite::Result<bool> {
        macro_rules! insert_sending {
            () => {
                "INSERT INTO entries (target, identity, state, content_hash, updated_ms,
                                      source_file, source_row, run_id)
                 VALUES (?1, ?2, 'sending', ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (target, identity) "
            };
        }
        let sql = match how {
            Claim::IfNew => concat!(insert_sending!(), "DO NOTHING"),
            Claim::Always => concat!(
                insert_sending!(),
                "DO UPDATE SET
                    state = 'sending', content_hash = excluded.content_hash,
                    updated_ms = excluded.updated_ms, source_file = excluded.source_file,
                    source_row = excluded.source_row, run_id = excluded.run_id"
            ),
        };
        let written = self.conn.prepare_cached(sql)?.execute(params![
            self.target,
            user.identity,
            user.content_hash as i64,
            now,
            self.source_file,
            user.row,
            self.run_id
        ])?;
        Ok(written == 1)
    }

    /// Looks `user`'s identity up: `user` back (with what the ledger knows) if it is to be
    /// sent — never seen, or seen but not settled (refused with other content, failed, in
    /// flight when a run died, created without its follow-up step) — else `None`, its report
    /// pushed (done, refused unchanged, or a repeat within this run). Also notes whether to
    /// expect the next identity to be new.
    fn unsettled(
        &mut self,
        mut user: ReadyUser,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Option<ReadyUser>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT state, run_id, source_row, content_hash, errors, http_status, remote_id
             FROM entries WHERE target = ?1 AND identity = ?2",
        )?;
        let mut rows = statement.query(params![self.target, user.identity])?;
        let Some(r) = rows.next()? else {
            self.expect_new = true;
            return Ok(Some(user));
        };
        self.expect_new = false;
        // Read as borrowed text: most rows of a re-run are done, and need nothing else.
        let state = State::parse(r.get_ref(0)?.as_str().unwrap_or(""));
        let run_id = r.get::<_, Option<i64>>(1)?;
        let identity_hash = xxhash_rust::xxh3::xxh3_64(user.identity.as_bytes());
        let first_this_run = match run_id == Some(self.run_id) {
            true => Some(r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64),
            false => self.done_this_run.get(identity_hash).map(u64::from),
        };
        if let Some(first) = first_this_run {
            let error = FieldError::local(
                Some(crate::fields::Field::Email),
                "",
                crate::fields::ErrorCode::Duplicate,
                format!("duplicate of row {first}"),
            );
            let report = RowReport::local(user.row, Outcome::Duplicate, vec![error], user.cells);
            reports.push(report);
            return Ok(None);
        }
        let unchanged_refusal = state == State::Rejected
            && r.get::<_, Option<i64>>(3)? == Some(user.content_hash as i64);
        if matches!(state, State::Created | State::Exists) || unchanged_refusal {
            self.done_this_run
                .insert(identity_hash, u32::try_from(user.row).unwrap_or(u32::MAX));
            let report = if unchanged_refusal {
                let errors: Vec<FieldError> = r
                    .get::<_, Option<String>>(4)?
                    .and_then(|e| serde_json::from_str(&e).ok())
                    .unwrap_or_default();
                let outcome = Outcome::Rejected {
                    status: r.get::<_, Option<u16>>(5)?.unwrap_or(400),
                };
                RowReport::local(user.row, outcome, errors, user.cells)
            } else {
                RowReport::local(user.row, Outcome::Skipped, Vec::new(), user.cells)
            };
            reports.push(report);
            return Ok(None);
        }
        // Created in an earlier run, but a later step (setting the password) did not finish:
        // resume at that step.
        user.remote_id = r.get(6)?;
        // Claimed but never settled (the run was killed), or given up after attempts that
        // may have landed: its request may have created the user.
        user.uncertain = matches!(state, State::Sending | State::Failed);
        Ok(Some(user))
    }

    /// Records rows refused locally (those with an identity) and reports them. A locally
    /// refused row never overwrites an identity that is created, present or in flight.
    pub fn record_invalid(
        &mut self,
        rows: Vec<InvalidRow>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<()> {
        let now = now_ms();
        for row in rows {
            if let Some(identity) = &row.identity {
                let errors = serde_json::to_string(&row.errors).unwrap_or_default();
                self.conn
                    .prepare_cached(
                        "INSERT INTO entries (target, identity, state, updated_ms, source_file,
                                              source_row, errors)
                         VALUES (?1, ?2, 'invalid', ?3, ?4, ?5, ?6)
                         ON CONFLICT (target, identity) DO UPDATE SET
                            state = 'invalid', updated_ms = excluded.updated_ms,
                            source_file = excluded.source_file, source_row = excluded.source_row,
                            errors = excluded.errors
                         WHERE entries.state IN ('invalid', 'failed', 'rejected')",
                    )?
                    .execute(params![
                        self.target,
                        identity,
                        now,
                        self.source_file,
                        row.row,
                        errors
                    ])?;
            }
            reports.push(RowReport::local(
                row.row,
                Outcome::Invalid,
                row.errors,
                row.cells,
            ));
        }
        Ok(())
    }

    /// Records the end of each submission and reports it (one prepared statement for all:
    /// looking it up in the statement cache per row hashed its text every time).
    pub fn record_submissions(
        &mut self,
        submissions: impl IntoIterator<Item = Submission>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<()> {
        let mut update = self.conn.prepare_cached(
            "UPDATE entries SET state = ?3, remote_id = COALESCE(?4, remote_id),
                http_status = COALESCE(?5, http_status), attempts = attempts + ?6,
                first_attempt_ms = COALESCE(first_attempt_ms, ?7), last_attempt_ms = COALESCE(?8, last_attempt_ms),
                updated_ms = ?9, errors = ?10, response_body = ?11
             WHERE target = ?1 AND identity = ?2",
        )?;
        let now = now_ms();
        for done in submissions {
            let errors = if done.errors.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&done.errors).unwrap_or_default())
            };
            update.execute(params![
                self.target,
                done.user.identity,
                done.outcome.state(),
                done.remote_id,
                done.status,
                done.attempts,
                done.first_attempt_ms,
                done.last_attempt_ms,
                now,
                errors,
                done.response_body,
            ])?;
            reports.push(RowReport {
                row: done.user.row,
                outcome: done.outcome,
                errors: done.errors,
                cells: done.user.cells,
                attempts: done.attempts,
                throttled: done.throttled,
            });
        }
        Ok(())
    }

    /// Marks the run finished with its summary (JSON).
    pub fn finish_run(&mut self, summary: &str) -> Result<(), RunError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_ms = ?2, summary = ?3 WHERE id = ?1",
                params![self.run_id, now_ms(), summary],
            )
            .map_err(|e| ledger_error(&self.path, e))?;
        // Fold the WAL back so the ledger is one self-contained file between runs.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        Ok(())
    }
}

/// Reads every entry of `target` from the ledger at `path`, ordered by identity.
pub fn entries(path: &Path, target: &str) -> Result<Vec<Entry>, RunError> {
    let err = |e: rusqlite::Error| ledger_error(path, e);
    let conn = Connection::open(path).map_err(err)?;
    let mut stmt = conn
        .prepare(
            "SELECT identity, state, remote_id, http_status, attempts, source_row
             FROM entries WHERE target = ?1 ORDER BY identity",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([target], |r| {
            Ok(Entry {
                identity: r.get(0)?,
                state: r.get(1)?,
                remote_id: r.get(2)?,
                http_status: r.get(3)?,
                attempts: r.get(4)?,
                source_row: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

fn ledger_error(path: &Path, e: rusqlite::Error) -> RunError {
    let message = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            "is locked by another roster run (hint: wait for it to finish)".to_string()
        }
        _ => e.to_string(),
    };
    RunError::Ledger {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::UserFields;

    pub(crate) fn user(row: u64, identity: &str, hash: u64) -> ReadyUser {
        ReadyUser {
            row,
            identity: identity.into(),
            fields: UserFields::default(),
            body: Vec::new(),
            content_hash: hash,
            cells: vec![identity.to_string()],
            generated_password: false,
            remote_id: None,
            uncertain: false,
        }
    }

    pub(crate) fn submission(u: ReadyUser, outcome: Outcome) -> Submission {
        Submission {
            user: u,
            outcome,
            remote_id: Some("r1".into()),
            status: Some(201),
            errors: Vec::new(),
            response_body: None,
            attempts: 1,
            throttled: 0,
            first_attempt_ms: Some(1),
            last_attempt_ms: Some(2),
        }
    }

    /// Records `done` in its own transaction.
    fn record(ledger: &mut SqliteLedger, done: Submission) {
        ledger
            .transaction(|l| l.record_submissions([done], &mut Vec::new()))
            .unwrap();
    }

    #[test]
    fn claims_then_skips_what_is_done_and_flags_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let mut reports = Vec::new();
        let sent = ledger
            .transaction(|l| {
                l.claim(
                    vec![user(2, "a@x.io", 1), user(3, "a@x.io", 1)],
                    &mut reports,
                )
            })
            .unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(reports[0].outcome, Outcome::Duplicate);
        assert_eq!(reports[0].errors[0].message, "duplicate of row 2");
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let mut reports = Vec::new();
        let sent = ledger
            .transaction(|l| l.claim(vec![user(2, "a@x.io", 9)], &mut reports))
            .unwrap();
        assert!(sent.is_empty());
        assert_eq!(reports[0].outcome, Outcome::Skipped);
        let e = entries(&path, "t").unwrap();
        assert_eq!(e[0].state, "created");
        assert_eq!(e[0].remote_id.as_deref(), Some("r1"));
    }

    #[test]
    fn a_repeat_of_a_done_row_is_a_duplicate_and_claims_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, rest) = ledger
            .transaction(|l| {
                l.claim_up_to(
                    vec![user(2, "a@x.io", 1), user(3, "b@x.io", 1)],
                    1,
                    &mut Vec::new(),
                )
            })
            .unwrap();
        assert_eq!((sent.len(), rest.len()), (1, 1), "one claimed, one left");
        assert_eq!(rest[0].identity, "b@x.io");
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        drop(ledger);

        // Next run: the done row passes without a claim (no limit spent), its repeat is a
        // duplicate of it, and the new row behind them is claimed.
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let mut reports = Vec::new();
        let (sent, rest) = ledger
            .transaction(|l| {
                l.claim_up_to(
                    vec![
                        user(4, "a@x.io", 1),
                        user(7, "a@x.io", 1),
                        user(9, "c@x.io", 1),
                    ],
                    1,
                    &mut reports,
                )
            })
            .unwrap();
        assert_eq!((sent.len(), rest.len()), (1, 0));
        assert_eq!(sent[0].identity, "c@x.io");
        assert_eq!(reports[0].outcome, Outcome::Skipped);
        assert_eq!(reports[1].outcome, Outcome::Duplicate);
        assert_eq!(reports[1].errors[0].message, "duplicate of row 4");
    }

    #[test]
    fn a_refused_row_is_resent_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let sent = ledger
            .transaction(|l| l.claim(vec![user(2, "a@x.io", 1)], &mut Vec::new()))
            .unwrap();
        let mut done = submission(
            sent.into_iter().next().unwrap(),
            Outcome::Rejected { status: 400 },
        );
        done.status = Some(400);
        done.errors = vec![FieldError::remote(None, "Name", "too long")];
        record(&mut ledger, done);
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let mut reports = Vec::new();
        let sent = ledger
            .transaction(|l| l.claim(vec![user(2, "a@x.io", 1)], &mut reports))
            .unwrap();
        assert!(sent.is_empty());
        assert_eq!(reports[0].outcome, Outcome::Rejected { status: 400 });
        assert_eq!(reports[0].errors[0].message, "too long");
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let sent = ledger
            .transaction(|l| l.claim(vec![user(2, "a@x.io", 2)], &mut Vec::new()))
            .unwrap();
        assert_eq!(sent.len(), 1, "changed content is sent again");
    }

    #[test]
    fn invalid_rows_never_overwrite_created_identities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let sent = ledger
            .transaction(|l| l.claim(vec![user(2, "a@x.io", 1)], &mut Vec::new()))
            .unwrap();
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        let bad = InvalidRow {
            row: 5,
            identity: Some("a@x.io".into()),
            errors: Vec::new(),
            cells: Vec::new(),
        };
        let mut reports = Vec::new();
        ledger
            .transaction(|l| l.record_invalid(vec![bad], &mut reports))
            .unwrap();
        assert_eq!(reports[0].outcome, Outcome::Invalid);
        assert_eq!(entries(&path, "t").unwrap()[0].state, "created");
    }
}
