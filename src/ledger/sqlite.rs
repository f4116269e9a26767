//! The ledger in SQLite (WAL): one row per identity in a STRICT table (`schema.sql`), plus one
//! row per run and one per output written. Older ledgers are migrated on open.

use super::LedgerError;
use super::{Claimed, Entry, Ledger, RowWork, claims, lock, results, seen, unfolded};
use crate::model::{FieldError, Outcome, Person, Refused, RowReport, Submission};
use rusqlite::{CachedStatement, Connection, params};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema this roster writes (`PRAGMA user_version`); older ledgers are migrated on open.
const SCHEMA_VERSION: i64 = 5;

/// WAL pages between automatic checkpoints (SQLite's default is 1,000).
const WAL_CHECKPOINT_PAGES: i64 = 8192;

/// Most people claimed in batches whose results the run has not recorded before the batches
/// are folded into `entries` (as a crash would leave them) and forgotten: an import has a
/// few thousand in flight, but a dry run over a copy records no results, and 10,000,000
/// people remembered would take ~280 MB.
const MAX_IN_FLIGHT: usize = 65_536;

/// The tables, as `schema.sql` defines them.
const SCHEMA: &str = include_str!("schema.sql");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An entry's `state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Sending,
    Created,
    Exists,
    Rejected,
    Invalid,
    Other,
}

impl State {
    pub(crate) fn parse(text: &str) -> State {
        match text {
            "sending" => State::Sending,
            "created" => State::Created,
            "exists" => State::Exists,
            "rejected" => State::Rejected,
            "invalid" => State::Invalid,
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
    /// What the run has learnt while claiming (kept apart from `conn`, so that a batch's
    /// prepared statements can borrow the connection while it changes).
    memory: RunMemory,
    /// The run's lock on the ledger file; declared last so it is released only after the
    /// connection is closed (closing another descriptor of the file first would drop
    /// SQLite's own POSIX locks on it).
    lock: Option<std::sync::Arc<lock::LedgerLock>>,
}

/// What a run remembers of the identities it has claimed or found done.
struct RunMemory {
    /// The run's id in `runs`.
    run_id: i64,
    /// Rows of this run found already done, by identity hash → row: they are not written
    /// back (an idle re-run of a million done rows would otherwise rewrite the whole ledger),
    /// so a repeat of one within the file is caught here.
    done_this_run: seen::SeenRows,
    /// Identities new to the ledger claimed in this run (in a [`claims`] batch) whose result
    /// is not recorded yet: identity hash → (source row, batch id). They have no entry, so a
    /// repeat or a refused row of the same identity is caught here. (By hash, as
    /// `done_this_run`: a string key's copy and SipHash were a fifth of a claim.)
    in_flight: seen::HashKeyed<(u64, i64)>,
    /// Identities whose result this run journaled and has not folded into `entries`:
    /// identity hash → (source row, state recorded). A repeat of one, or a refused row of
    /// the same identity, is caught here (their entries, if any, are the claim's).
    journaled: seen::HashKeyed<(u64, State)>,
    /// Results journaled (one an identity) before the run folds them ([`results::FOLD_ROWS`]).
    fold_rows: usize,
    /// Whether the file comes in key order: its results are then written as they come,
    /// not journaled.
    key_order: results::KeyOrder,
    /// Batch id → its people whose result is not recorded yet.
    open_batches: std::collections::HashMap<i64, usize>,
    /// The id the run's next claim batch takes. The run holds the ledger's lock and found
    /// `claims` empty once it folded what earlier runs left, so it numbers its own batches
    /// and knows a person's batch as it adds them (an id taken after all would fail the
    /// claim's transaction, not overwrite a batch).
    next_batch: i64,
    /// Past this many people in flight, the batches are folded ([`MAX_IN_FLIGHT`]).
    max_in_flight: usize,
    /// `--retry-rejected`: rows the API refused before are sent again even if unchanged.
    retry_rejected: bool,
    /// `--results`: a row already done is reported with its remote id (read only then: an
    /// idle re-run of a million done rows needs nothing else of them).
    remote_ids: bool,
}

/// What the ledger says of a user about to be claimed.
enum Found {
    /// An identity the ledger has no entry for and this run has not claimed, with its hash.
    New(Person, u64),
    /// An entry that is not settled: the user is sent again.
    Unsettled(Person),
    /// Nothing to send: its report is pushed.
    Settled,
}

impl RunMemory {
    /// Looks `user`'s identity up: `user` back (with what the ledger knows) if it is to be
    /// sent — never seen, or seen but not settled (refused with other content, failed, in
    /// flight when a run died, created without its follow-up step) — else its report is
    /// pushed (done, refused unchanged, or a repeat within this run).
    fn unsettled(
        &mut self,
        lookup: &mut CachedStatement<'_>,
        user: Person,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Found> {
        // Answered earlier in this run, its result not folded yet: a repeat.
        let hash = seen::identity_hash(&user.identity);
        if let Some(&(first, state)) = self.journaled.get(&hash) {
            let repeat = self
                .done_this_run
                .unless_repeat(user, Some((first, state)), reports);
            debug_assert!(repeat.is_none(), "a journaled result is a repeat");
            return Ok(Found::Settled);
        }
        lookup.raw_bind_parameter(2, &user.identity)?;
        let mut rows = lookup.raw_query();
        let Some(r) = rows.next()? else {
            // Claimed earlier in this run and still in flight: a repeat.
            if let Some(&(first, _)) = self.in_flight.get(&hash) {
                let repeat =
                    self.done_this_run
                        .unless_repeat(user, Some((first, State::Sending)), reports);
                debug_assert!(repeat.is_none(), "an in-flight claim is a repeat");
                return Ok(Found::Settled);
            }
            return Ok(Found::New(user, hash));
        };
        // Read as borrowed text: most rows of a re-run are done, and need nothing else.
        let state = State::parse(r.get_ref(0)?.as_str().unwrap_or(""));
        let run_id = r.get::<_, Option<i64>>(1)?;
        // Claimed in this run: its state now says how it went, or that it is in flight.
        let claimed_here = match run_id == Some(self.run_id) {
            true => Some((r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64, state)),
            false => None,
        };
        let Some((mut user, identity_hash)) =
            self.done_this_run
                .unless_repeat(user, claimed_here, reports)
        else {
            return Ok(Found::Settled);
        };
        let unchanged_refusal = state == State::Rejected
            && !self.retry_rejected
            && r.get::<_, Option<i64>>(3)? == Some(user.content_hash as i64);
        if matches!(state, State::Created | State::Exists) || unchanged_refusal {
            self.done_this_run
                .insert(identity_hash, u32::try_from(user.row).unwrap_or(u32::MAX));
            let report = if unchanged_refusal {
                let errors: Vec<FieldError> = r
                    .get::<_, Option<String>>(4)?
                    .and_then(|e| serde_json::from_str(&e).ok())
                    .unwrap_or_default();
                let outcome = Outcome::StillRefused {
                    status: Some(r.get::<_, Option<u16>>(5)?.unwrap_or(400)),
                };
                RowReport::local(user.row, outcome, errors, user.cells)
            } else {
                let remote_id = match self.remote_ids {
                    true => r.get::<_, Option<String>>(6)?,
                    false => None,
                };
                RowReport::local(user.row, Outcome::Skipped, Vec::new(), user.cells)
                    .with_remote_id(remote_id)
            };
            reports.push(report);
            return Ok(Found::Settled);
        }
        // Created in an earlier run, but a later step (setting the password) did not finish:
        // resume at that step.
        user.remote_id = r.get(6)?;
        // Claimed by a run that never recorded its end (killed), or ended after an attempt
        // whose outcome is unknown: its request may have created the user.
        user.uncertain = state == State::Sending || r.get::<_, bool>(7)?;
        Ok(Found::Unsettled(user))
    }

    /// Notes that the result of one person of `batch` has been recorded: true once all its
    /// people's are (the batch is then deleted).
    fn settle(&mut self, batch: i64) -> bool {
        let Some(open) = self.open_batches.get_mut(&batch) else {
            return false;
        };
        *open -= 1;
        if *open > 0 {
            return false;
        }
        self.open_batches.remove(&batch);
        true
    }
}

/// The statements one claim batch runs, each prepared (and its run-wide parameters bound)
/// once for the batch rather than looked up in the statement cache by its text and bound
/// whole for every row (together a tenth of the claim bench's `perf` samples; the bench
/// gained 15 %).
struct ClaimStatements<'c> {
    conn: &'c Connection,
    target: &'c str,
    source_file: &'c str,
    run_id: i64,
    now: i64,
    again: Option<CachedStatement<'c>>,
    lookup: Option<CachedStatement<'c>>,
}

impl<'c> ClaimStatements<'c> {
    /// Marks `user`, whose entry is not settled, `sending` again. An uncertain user stays
    /// uncertain in the ledger, so a run stopped before sending it again does not forget it.
    fn claim_again(&mut self, user: &Person) -> rusqlite::Result<()> {
        let statement = match &mut self.again {
            Some(statement) => statement,
            None => {
                let mut statement = self.conn.prepare_cached(
                    "UPDATE entries SET
                        state = 'sending', content_hash = ?3, updated_ms = ?4, source_file = ?5,
                        source_row = ?6, run_id = ?7, uncertain = max(uncertain, ?8)
                     WHERE target = ?1 AND identity = ?2",
                )?;
                statement.raw_bind_parameter(1, self.target)?;
                statement.raw_bind_parameter(4, self.now)?;
                statement.raw_bind_parameter(5, self.source_file)?;
                statement.raw_bind_parameter(7, self.run_id)?;
                self.again.insert(statement)
            }
        };
        // Every per-row parameter is bound for every row: none is left from the last one.
        statement.raw_bind_parameter(2, &user.identity)?;
        statement.raw_bind_parameter(3, user.content_hash as i64)?;
        statement.raw_bind_parameter(6, user.row)?;
        statement.raw_bind_parameter(8, user.uncertain)?;
        statement.raw_execute()?;
        Ok(())
    }

    /// The look-up of an identity's entry, its target bound (?2 is the identity).
    fn lookup(&mut self) -> rusqlite::Result<&mut CachedStatement<'c>> {
        if self.lookup.is_none() {
            let mut statement = self.conn.prepare_cached(
                "SELECT state, run_id, source_row, content_hash, errors, http_status, remote_id,
                        uncertain
                 FROM entries WHERE target = ?1 AND identity = ?2",
            )?;
            statement.raw_bind_parameter(1, self.target)?;
            self.lookup = Some(statement);
        }
        Ok(self.lookup.as_mut().expect("prepared above"))
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path` and starts a run for `target` reading
    /// `source_file`.
    pub fn open(path: &Path, target: &str, source_file: &str) -> Result<SqliteLedger, LedgerError> {
        let err = |e: rusqlite::Error| ledger_error(path, e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // A file in no particular order (most exports) claims and records identities all
        // over the b-tree, so each commit dirties pages of its own and SQLite's default
        // checkpoint every 1,000 WAL pages wrote (and fsynced) ~4 MB of scattered pages each
        // time. Every 8,192 pages (a WAL of at most 32 MiB at 4 KiB pages, truncated when the
        // run ends) a page rewritten meanwhile is copied once: 200,000 shuffled rows into
        // loopback nginx went from ~9.6 k to ~13.4–13.9 k rows/s (`benches/e2e.sh
        // throughput`); a file in key order is unchanged.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(err)?;
        migrate(&conn, path)?;
        // Claims a run left behind (it crashed) become the `sending` entries they stand for,
        // and its journaled results their entries.
        unfolded::fold(&conn).map_err(err)?;
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
            memory: RunMemory {
                run_id,
                done_this_run: seen::SeenRows::default(),
                in_flight: Default::default(),
                journaled: Default::default(),
                fold_rows: results::FOLD_ROWS,
                key_order: Default::default(),
                open_batches: Default::default(),
                next_batch: 1,
                max_in_flight: MAX_IN_FLIGHT,
                retry_rejected: false,
                remote_ids: false,
            },
            lock: None,
        })
    }

    /// Keeps the run's lock with the connection, released after it closes.
    pub fn holding(mut self, lock: std::sync::Arc<lock::LedgerLock>) -> SqliteLedger {
        self.lock = Some(lock);
        self
    }

    /// `--retry-rejected`: send rows the API refused before even when unchanged.
    pub fn retrying_rejected(mut self, on: bool) -> SqliteLedger {
        self.memory.retry_rejected = on;
        self
    }

    /// Reports rows already done with their remote id (for `--results`).
    pub fn reporting_remote_ids(mut self, on: bool) -> SqliteLedger {
        self.memory.remote_ids = on;
        self
    }

    /// Journals every result, as for a file in no order (for tests of the journal with a
    /// few people).
    #[cfg(test)]
    pub(crate) fn journaling(mut self) -> SqliteLedger {
        self.memory.key_order = results::KeyOrder::judged_shuffled();
        self
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` in one transaction.
    pub fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Self) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
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
        users: Vec<Person>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Vec<Person>> {
        Ok(self.claim_up_to(users, usize::MAX, reports)?.0)
    }

    /// [`claim`](Self::claim) that stops once `limit` users are claimed, returning them and
    /// the users it did not reach. Done rows cost no claim, so a re-run of a file that is
    /// all done goes through in one call.
    pub fn claim_up_to(
        &mut self,
        users: Vec<Person>,
        limit: usize,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<(Vec<Person>, Vec<Person>)> {
        let memory = &mut self.memory;
        let mut statements = ClaimStatements {
            conn: &self.conn,
            target: &self.target,
            source_file: &self.source_file,
            run_id: memory.run_id,
            now: now_ms(),
            again: None,
            lookup: None,
        };
        let mut to_send = Vec::with_capacity(users.len().min(limit));
        let mut batch = claims::Batch::default();
        let mut users = users.into_iter();
        while to_send.len() < limit {
            let Some(user) = users.next() else {
                break;
            };
            match memory.unsettled(statements.lookup()?, user, reports)? {
                Found::New(user, hash) => {
                    memory.key_order.note(&user.identity);
                    batch.push(&user.identity, user.row, user.content_hash, user.uncertain);
                    memory.in_flight.insert(hash, (user.row, memory.next_batch));
                    to_send.push(user);
                }
                Found::Unsettled(user) => {
                    memory.key_order.note(&user.identity);
                    statements.claim_again(&user)?;
                    to_send.push(user);
                }
                Found::Settled => {}
            }
        }
        if batch.len() > 0 {
            let id = memory.next_batch;
            batch.write(
                &self.conn,
                id,
                &self.target,
                memory.run_id,
                &self.source_file,
                statements.now,
            )?;
            memory.next_batch += 1;
            memory.open_batches.insert(id, batch.len());
            if memory.in_flight.len() > memory.max_in_flight {
                // Their entries now say what the claims did; results update them.
                claims::fold_in_transaction(&self.conn)?;
                memory.in_flight.clear();
                memory.open_batches.clear();
            }
        }
        Ok((to_send, users.collect()))
    }

    /// Records rows refused locally (those with an identity) and reports them. A locally
    /// refused row never overwrites an identity that is created, present or in flight, one
    /// claimed earlier in this run (a later repeat must not undo an earlier row), or one whose
    /// create may have landed. A row refused the same way before is reported as such.
    pub fn record_invalid(
        &mut self,
        rows: Vec<Refused>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<()> {
        let now = now_ms();
        for row in rows {
            let mut outcome = Outcome::Invalid;
            // Claimed earlier in this run and in flight: a later repeat must not undo it (the
            // claim has no entry yet for the insert's condition below to see).
            // Answered in this run, its result not folded yet: likewise.
            if let Some(identity) = row.identity.as_ref().filter(|i| {
                let hash = seen::identity_hash(i);
                !self.memory.in_flight.contains_key(&hash)
                    && !self.memory.journaled.contains_key(&hash)
            }) {
                let before: Option<(String, Option<i64>)> = self
                    .conn
                    .prepare_cached(
                        "SELECT state, content_hash FROM entries WHERE target = ?1 AND identity = ?2",
                    )?
                    .query_row(params![self.target, identity], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })?;
                let unchanged = before.as_ref().is_some_and(|(state, hash)| {
                    State::parse(state) == State::Invalid && *hash == Some(row.content_hash as i64)
                });
                if unchanged {
                    outcome = Outcome::StillRefused { status: None };
                } else {
                    let errors = serde_json::to_string(&row.errors).unwrap_or_default();
                    self.conn
                        .prepare_cached(
                            "INSERT INTO entries (target, identity, state, updated_ms, source_file,
                                                  source_row, errors, content_hash)
                             VALUES (?1, ?2, 'invalid', ?3, ?4, ?5, ?6, ?8)
                             ON CONFLICT (target, identity) DO UPDATE SET
                                state = 'invalid', updated_ms = excluded.updated_ms,
                                source_file = excluded.source_file,
                                source_row = excluded.source_row, errors = excluded.errors,
                                content_hash = excluded.content_hash
                             WHERE entries.state IN ('invalid', 'failed', 'rejected', 'unsent')
                               AND entries.uncertain = 0
                               AND entries.run_id IS NOT ?7",
                        )?
                        .execute(params![
                            self.target,
                            identity,
                            now,
                            self.source_file,
                            row.row,
                            errors,
                            self.memory.run_id,
                            row.content_hash as i64,
                        ])?;
                }
            }
            reports.push(RowReport::local(row.row, outcome, row.errors, row.cells));
        }
        Ok(())
    }

    /// Records the end of each submission and reports it. The results of a file in no
    /// particular order are journaled as one row ([`results`]), and folded into `entries`
    /// once the journal holds [`results::FOLD_ROWS`] of them (the end of the run folds the
    /// rest); those of a file in key order are written into `entries` at once.
    pub fn record_submissions(
        &mut self,
        submissions: impl IntoIterator<Item = Submission>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<()> {
        let journal = !self.memory.key_order.in_key_order();
        let mut batch = results::Batch::default();
        let mut settled = Vec::new();
        for done in submissions {
            let state = batch.push(&done);
            let hash = seen::identity_hash(&done.user.identity);
            // A user claimed in a batch: the batch is deleted with the last of its results.
            if let Some((_, claim_batch)) = self.memory.in_flight.remove(&hash)
                && self.memory.settle(claim_batch)
            {
                settled.push(claim_batch);
            }
            if journal {
                self.memory
                    .journaled
                    .insert(hash, (done.user.row, State::parse(state)));
            }
            reports.push(RowReport::of_submission(done));
        }
        if batch.len() == 0 {
            return Ok(());
        }
        let memory = &mut self.memory;
        match journal {
            true => batch.write(
                &self.conn,
                &self.target,
                memory.run_id,
                &self.source_file,
                now_ms(),
            )?,
            false => batch.write_entries(
                &self.conn,
                &self.target,
                memory.run_id,
                &self.source_file,
                now_ms(),
            )?,
        }
        if !settled.is_empty() {
            let mut delete_batch = self
                .conn
                .prepare_cached("DELETE FROM claims WHERE id = ?1")?;
            for claim_batch in settled {
                delete_batch.execute([claim_batch])?;
            }
        }
        if !journal {
            return Ok(());
        }
        if memory.journaled.len() >= memory.fold_rows {
            self.fold_journal_in_transaction()?;
        }
        Ok(())
    }

    /// Folds the run's journaled results into `entries` (in the caller's transaction).
    fn fold_journal_in_transaction(&mut self) -> rusqlite::Result<()> {
        results::fold_in_transaction(&self.conn)?;
        self.memory.journaled.clear();
        Ok(())
    }

    /// Folds the run's journaled results into `entries` before they are read or changed.
    fn fold_journal(&mut self) -> Result<(), LedgerError> {
        if self.memory.journaled.is_empty() {
            return Ok(());
        }
        self.transaction(|l| l.fold_journal_in_transaction())
    }

    /// Identities created by an earlier run whose generated password line could not be
    /// written (a full disk), each with whether its creation is unconfirmed: this run writes
    /// their lines.
    pub fn owed_passwords(&mut self) -> Result<Vec<(String, bool)>, LedgerError> {
        self.fold_journal()?;
        let err = |e| ledger_error(&self.path, e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT identity, unconfirmed FROM entries
                 WHERE target = ?1 AND password_owed = 1",
            )
            .map_err(err)?;
        let rows = statement
            .query_map([&self.target], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// The password lines of `identities` are written now.
    pub fn passwords_written(&mut self, identities: &[String]) -> Result<(), LedgerError> {
        // A journaled result would otherwise still owe the line when folded.
        self.fold_journal()?;
        let target = self.target.clone();
        self.transaction(|l| {
            let mut update = l.conn.prepare_cached(
                "UPDATE entries SET password_owed = 0 WHERE target = ?1 AND identity = ?2",
            )?;
            for identity in identities {
                update.execute(params![target, identity])?;
            }
            Ok(())
        })
    }

    /// Other ledger keys of the same target and base URL (another tenant, realm or client):
    /// people recorded there are not this run's.
    pub fn other_accounts(&mut self) -> Result<Vec<(String, u64)>, LedgerError> {
        self.fold_journal()?;
        let base = self
            .target
            .split('#')
            .next()
            .unwrap_or(&self.target)
            .to_string();
        let err = |e| ledger_error(&self.path, e);
        let mut statement = self
            .conn
            .prepare(
                "SELECT target, count(*) FROM entries
                 WHERE (target = ?1 OR target LIKE ?2 ESCAPE '\\') AND target != ?3
                 GROUP BY target",
            )
            .map_err(err)?;
        let like = format!(
            "{}#%",
            base.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows = statement
            .query_map(params![base, like, self.target], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// What roster recorded of the output file at `path` (canonical): its length and hash.
    pub fn output_written(&mut self, path: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        output_record(&self.conn, path).map_err(|e| ledger_error(&self.path, e))
    }

    /// Records that roster wrote `path` (canonical) with this length and hash; `None`
    /// forgets it (the file was removed).
    pub fn record_output(
        &mut self,
        path: &str,
        written: Option<(u64, u64)>,
    ) -> Result<(), LedgerError> {
        let result = match written {
            Some((length, hash)) => self.conn.execute(
                "INSERT INTO outputs (path, length, hash, written_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET length = excluded.length,
                    hash = excluded.hash, written_ms = excluded.written_ms",
                params![path, length as i64, hash as i64, now_ms()],
            ),
            None => self
                .conn
                .execute("DELETE FROM outputs WHERE path = ?1", [path]),
        };
        result.map(|_| ()).map_err(|e| ledger_error(&self.path, e))
    }

    /// Marks the run finished with its summary (JSON).
    pub fn finish_run(&mut self, summary: &str) -> Result<(), LedgerError> {
        // Users claimed and never reported (none, unless a stage failed): their claims become
        // `sending` entries, as a crash would leave them. The journal's results become theirs.
        unfolded::fold(&self.conn).map_err(|e| ledger_error(&self.path, e))?;
        self.memory.journaled.clear();
        self.memory.in_flight.clear();
        self.memory.open_batches.clear();
        self.conn
            .execute(
                "UPDATE runs SET finished_ms = ?2, summary = ?3 WHERE id = ?1",
                params![self.memory.run_id, now_ms(), summary],
            )
            .map_err(|e| ledger_error(&self.path, e))?;
        // Fold the WAL back so the ledger is one self-contained file between runs.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        Ok(())
    }
}

impl Ledger for SqliteLedger {
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        self.transaction(|l| {
            let mut answers = Vec::new();
            for work in rows {
                match work {
                    RowWork::Claim { users, limit } => {
                        answers.push(l.claim_up_to(users, limit, reports)?);
                    }
                    RowWork::Invalid(rows) => l.record_invalid(rows, reports)?,
                    RowWork::Report(mut passed) => reports.append(&mut passed),
                }
            }
            Ok(answers)
        })
    }

    fn write_results(
        &mut self,
        results: Vec<Submission>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), LedgerError> {
        self.transaction(|l| l.record_submissions(results, reports))
    }

    fn owed_passwords(&mut self) -> Result<Vec<(String, bool)>, LedgerError> {
        SqliteLedger::owed_passwords(self)
    }

    fn passwords_written(&mut self, identities: &[String]) -> Result<(), LedgerError> {
        SqliteLedger::passwords_written(self, identities)
    }

    fn other_accounts(&mut self) -> Result<Vec<(String, u64)>, LedgerError> {
        SqliteLedger::other_accounts(self)
    }

    fn output_written(&mut self, path: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        SqliteLedger::output_written(self, path)
    }

    fn record_output(
        &mut self,
        path: &str,
        written: Option<(u64, u64)>,
    ) -> Result<(), LedgerError> {
        SqliteLedger::record_output(self, path, written)
    }

    fn finish_run(&mut self, summary: &str) -> Result<(), LedgerError> {
        SqliteLedger::finish_run(self, summary)
    }
}

/// A consistent copy of the ledger at `ledger` in `dir`, for a dry run to work on (an empty
/// one if there is no ledger yet).
pub fn snapshot(ledger: &Path, dir: &Path) -> Result<PathBuf, LedgerError> {
    let copy = dir.join("ledger-copy.sqlite");
    if ledger.exists() {
        let err = |e: rusqlite::Error| ledger_error(ledger, e);
        let conn = open_for_reading(ledger).map_err(err)?;
        let mut to = Connection::open(&copy).map_err(|e| ledger_error(&copy, e))?;
        // The pages as they are, in one step, so under one read lock: consistent with any
        // run writing meanwhile. (VACUUM INTO rebuilt every b-tree: 270 ms for a ledger of
        // 100,000 people, against ~20 ms.)
        // A run committing at that moment holds the lock briefly: wait for it, up to 5 s.
        let backup = rusqlite::backup::Backup::new(&conn, &mut to).map_err(err)?;
        let mut waits = 0;
        while backup.step(-1).map_err(err)? != rusqlite::backup::StepResult::Done {
            waits += 1;
            if waits > 50 {
                return Err(err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the ledger stayed locked for 5 s while it was copied".into()),
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        drop(backup);
        // Claims and journaled results of a run in progress, or of one that crashed, read as
        // their entries.
        unfolded::fold(&to).map_err(|e| ledger_error(&copy, e))?;
    }
    Ok(copy)
}

/// The length and hash recorded for the output at `path`, if any.
fn output_record(conn: &Connection, path: &str) -> rusqlite::Result<Option<(u64, u64)>> {
    match conn.query_row(
        "SELECT length, hash FROM outputs WHERE path = ?1",
        [path],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    ) {
        Ok(found) => Ok(Some(found)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the existing ledger at `path` to read it, and only to read it (`query_only`).
/// Not with `SQLITE_OPEN_READ_ONLY`: a read-only connection to a WAL database creates its
/// `-wal` and `-shm` files but cannot remove them, so every dry run or validation left two
/// files beside a ledger the import had tidied. Opened read-write, the last connection to
/// close removes them, as an import's does. A write-protected ledger is opened read-only.
pub(crate) fn open_for_reading(path: &Path) -> rusqlite::Result<Connection> {
    let conn = open_existing(path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The existing ledger at `path`, read-write unless it is write-protected.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    // No CREATE, and no URI (a path is a path, as the read-only open read it).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    match Connection::open_with_flags(path, flags) {
        Ok(conn) => Ok(conn),
        Err(_) => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY),
    }
}

/// [`open_for_reading`], after folding any claim batches into `entries` (writing only the
/// `sending` entries the claims stand for, as the claiming run would have), so that what
/// is read includes people in flight or left in flight by a crashed run. A write-protected
/// ledger, or one busy for 5 s, is read as it is.
pub(crate) fn open_folded(path: &Path) -> rusqlite::Result<Connection> {
    let conn = open_existing(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if let Err(e) = unfolded::fold(&conn) {
        tracing::debug!(error = %e, "claims and results left unfolded; reading the entries as they are");
    }
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// What the ledger at `path` (if there is one) recorded of the output at `output`
/// (canonical), read without a lock or a write: for validation and dry runs.
pub fn recorded_output(path: &Path, output: &str) -> Option<(u64, u64)> {
    if !path.is_file() {
        return None;
    }
    let conn = open_for_reading(path).ok()?;
    output_record(&conn, output).ok().flatten()
}

/// Creates the tables of a new ledger, rebuilds an older one into them (the schema before
/// version 2 had neither STRICT tables nor the `uncertain`, `unconfirmed` and `password_owed`
/// columns; version 2's CHECKs used `IN` lists, which cost a temporary b-tree per row
/// written; version 3 lacks only the `claims` table and version 4 the `results` journal,
/// which are added), and refuses a ledger written by a newer roster (a roster before
/// version 5 would not see the results in the journal).
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let err = |e: rusqlite::Error| ledger_error(path, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::Newer {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version == 3 || version == 4 {
        // Version 4 only adds the `claims` table and version 5 the `results` journal: nothing
        // to rebuild.
        return conn
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                err(e)
            });
    }
    let old_tables: Vec<String> = {
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .map_err(err)?;
        let rows = statement.query_map([], |r| r.get(0)).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)?
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
    let rebuilt = (|| -> rusqlite::Result<()> {
        for table in ["entries", "runs", "outputs"] {
            if old_tables.iter().any(|t| t == table) {
                conn.execute_batch(&format!("ALTER TABLE {table} RENAME TO old_{table}"))?;
            }
        }
        conn.execute_batch(SCHEMA)?;
        for table in ["entries", "runs", "outputs"] {
            if !old_tables.iter().any(|t| t == table) {
                continue;
            }
            // The columns both have: a column new in this schema takes its default.
            let mut statement = conn.prepare(&format!("PRAGMA table_info(old_{table})"))?;
            let old: Vec<String> = statement
                .query_map([], |r| r.get::<_, String>(1))?
                .collect::<Result<_, _>>()?;
            drop(statement);
            let mut statement = conn.prepare(&format!("PRAGMA table_info({table})"))?;
            let new: Vec<String> = statement
                .query_map([], |r| r.get::<_, String>(1))?
                .collect::<Result<_, _>>()?;
            drop(statement);
            let shared: Vec<&String> = new.iter().filter(|c| old.contains(c)).collect();
            let list = shared
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            conn.execute_batch(&format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM old_{table}; DROP TABLE old_{table};"
            ))?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match rebuilt {
        Ok(()) => conn.execute_batch("COMMIT").map_err(err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err(e))
        }
    }
}

/// The target keys the ledger at `path` holds entries for, in order.
pub fn target_keys(path: &Path) -> Result<Vec<String>, LedgerError> {
    let err = |e: rusqlite::Error| ledger_error(path, e);
    let conn = open_folded(path).map_err(err)?;
    let mut stmt = conn
        .prepare("SELECT DISTINCT target FROM entries ORDER BY target")
        .map_err(err)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(err)?;
    rows.collect::<Result<Vec<String>, _>>().map_err(err)
}

/// Reads every entry of `target` from the ledger at `path`, ordered by identity.
pub fn entries(path: &Path, target: &str) -> Result<Vec<Entry>, LedgerError> {
    let err = |e: rusqlite::Error| ledger_error(path, e);
    let conn = open_folded(path).map_err(err)?;
    // A ledger from before a column existed reads it as 0 (nothing is migrated by reading).
    let has = |column: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM pragma_table_info('entries') WHERE name = ?1",
            [column],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    let column = |name: &str| -> rusqlite::Result<&'static str> {
        Ok(match (name, has(name)?) {
            ("uncertain", true) => "uncertain",
            ("unconfirmed", true) => "unconfirmed",
            _ => "0",
        })
    };
    let sql = format!(
        "SELECT identity, state, remote_id, http_status, attempts, source_row, {}, {}
         FROM entries WHERE target = ?1 ORDER BY identity",
        column("uncertain").map_err(err)?,
        column("unconfirmed").map_err(err)?,
    );
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let rows = stmt
        .query_map([target], |r| {
            Ok(Entry {
                identity: r.get(0)?,
                state: r.get(1)?,
                remote_id: r.get(2)?,
                http_status: r.get(3)?,
                attempts: r.get(4)?,
                source_row: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                uncertain: r.get(6)?,
                unconfirmed: r.get(7)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// The ledger error for a SQLite error on the ledger at `path`.
pub(crate) fn ledger_error(path: &Path, e: rusqlite::Error) -> LedgerError {
    LedgerError::sqlite(path, e)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{FirstRow, UserFields};

    pub(crate) fn user(row: u64, identity: &str, hash: u64) -> Person {
        Person {
            row,
            identity: identity.into(),
            fields: UserFields::default(),
            body: Vec::new(),
            content_hash: hash,
            cells: vec![identity.to_string()],
            generated_password: false,
            remote_id: None,
            uncertain: false,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn submission(u: Person, outcome: Outcome) -> Submission {
        Submission {
            outcome,
            remote_id: Some("r1".into()),
            status: Some(201),
            attempts: 1,
            first_attempt_ms: Some(1),
            last_attempt_ms: Some(2),
            ..Submission::new(u)
        }
    }

    /// Claims `users` in their own transaction: those to send, and the reports of the rest.
    pub(crate) fn claim(
        ledger: &mut SqliteLedger,
        users: Vec<Person>,
    ) -> (Vec<Person>, Vec<RowReport>) {
        let mut reports = Vec::new();
        let sent = ledger
            .transaction(|l| l.claim(users, &mut reports))
            .unwrap();
        (sent, reports)
    }

    /// Records `done` in its own transaction.
    pub(crate) fn record(ledger: &mut SqliteLedger, done: Submission) {
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
        assert_eq!(
            reports[0].outcome,
            Outcome::Duplicate {
                of: 2,
                first: FirstRow::Pending
            },
            "its first row is still being sent"
        );
        assert_eq!(reports[0].errors[0].message, "duplicate of row 2");
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, reports) = claim(&mut ledger, vec![user(2, "a@x.io", 9)]);
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
        assert_eq!(
            reports[1].outcome,
            Outcome::Duplicate {
                of: 4,
                first: FirstRow::Done
            },
            "a repeat of a done row is harmless"
        );
        assert_eq!(reports[1].errors[0].message, "duplicate of row 4");
    }

    #[test]
    fn a_refused_row_is_resent_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, _) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        let mut done = submission(
            sent.into_iter().next().unwrap(),
            Outcome::Rejected { status: 400 },
        );
        done.status = Some(400);
        done.errors = vec![FieldError::remote(None, "Name", "too long")];
        record(&mut ledger, done);
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, reports) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        assert!(sent.is_empty());
        assert_eq!(
            reports[0].outcome,
            Outcome::StillRefused { status: Some(400) },
            "unchanged since the refusal: not sent, not a new failure"
        );
        assert_eq!(reports[0].errors[0].message, "too long");
        drop(ledger);

        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, _) = claim(&mut ledger, vec![user(2, "a@x.io", 2)]);
        assert_eq!(sent.len(), 1, "changed content is sent again");
    }

    #[test]
    fn a_ledger_of_the_first_schema_is_rebuilt_strict_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            // The schema of roster before version 2 (4094632), with one created identity.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE entries (target TEXT NOT NULL, identity TEXT NOT NULL,
                    state TEXT NOT NULL, remote_id TEXT, http_status INTEGER,
                    attempts INTEGER NOT NULL DEFAULT 0, content_hash INTEGER,
                    first_attempt_ms INTEGER, last_attempt_ms INTEGER,
                    updated_ms INTEGER NOT NULL, source_file TEXT, source_row INTEGER,
                    run_id INTEGER, errors TEXT, response_body TEXT,
                    PRIMARY KEY (target, identity)) WITHOUT ROWID;
                 CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,
                    source_file TEXT NOT NULL, pid INTEGER NOT NULL, started_ms INTEGER NOT NULL,
                    finished_ms INTEGER, summary TEXT);
                 INSERT INTO entries (target, identity, state, remote_id, attempts, updated_ms)
                    VALUES ('t', 'a@x.io', 'created', 'r9', 2, 1);
                 INSERT INTO runs (target, source_file, pid, started_ms) VALUES ('t', 'f', 1, 1);",
            )
            .unwrap();
        }
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, reports) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        assert!(sent.is_empty(), "its created identity is still done");
        assert_eq!(reports[0].outcome, Outcome::Skipped);
        let e = &entries(&path, "t").unwrap()[0];
        assert_eq!((e.remote_id.as_deref(), e.attempts), (Some("r9"), 2));
        assert!(
            !e.uncertain && !e.unconfirmed,
            "new columns take their defaults"
        );
        let conn = &ledger.conn;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("STRICT"), "{sql}");
        let runs: i64 = conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(runs, 2, "the old run kept, this one added");
        let bad = conn.execute(
            "INSERT INTO entries (target, identity, state, updated_ms) VALUES ('t', 'b', 'done', 1)",
            [],
        );
        assert!(bad.is_err(), "a state outside the CHECK is refused");
    }

    /// SQLite checks `x IN (a, b, c…)` through a temporary b-tree opened and closed for every
    /// row written: in the ledger of schema 2 that was most of a claim's cost.
    #[test]
    fn a_ledger_of_schema_2_is_rebuilt_with_checks_that_open_no_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE entries (target TEXT NOT NULL, identity TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('sending', 'created', 'exists',
                        'rejected', 'failed', 'invalid', 'unsent')),
                    remote_id TEXT, http_status INTEGER,
                    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                    content_hash INTEGER, first_attempt_ms INTEGER, last_attempt_ms INTEGER,
                    updated_ms INTEGER NOT NULL, source_file TEXT, source_row INTEGER,
                    run_id INTEGER, errors TEXT, response_body TEXT,
                    uncertain INTEGER NOT NULL DEFAULT 0 CHECK (uncertain IN (0, 1)),
                    unconfirmed INTEGER NOT NULL DEFAULT 0 CHECK (unconfirmed IN (0, 1)),
                    password_owed INTEGER NOT NULL DEFAULT 0 CHECK (password_owed IN (0, 1)),
                    PRIMARY KEY (target, identity)) STRICT, WITHOUT ROWID;
                 CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,
                    source_file TEXT NOT NULL, pid INTEGER NOT NULL, started_ms INTEGER NOT NULL,
                    finished_ms INTEGER, summary TEXT) STRICT;
                 CREATE TABLE outputs (path TEXT PRIMARY KEY, length INTEGER NOT NULL,
                    hash INTEGER NOT NULL, written_ms INTEGER NOT NULL) STRICT;
                 INSERT INTO entries (target, identity, state, remote_id, updated_ms, unconfirmed)
                    VALUES ('t', 'a@x.io', 'created', 'r9', 1, 1);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let e = &entries(&path, "t").unwrap()[0];
        assert_eq!((e.remote_id.as_deref(), e.unconfirmed), (Some("r9"), true));
        let conn = &ledger.conn;
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains(" IN ("), "{sql}");
        // What SQLite runs for an insert: no ephemeral table.
        let mut plan = conn
            .prepare(
                "EXPLAIN INSERT INTO entries (target, identity, state, updated_ms)
                 VALUES ('t', 'b', 'sending', 1)",
            )
            .unwrap();
        let opcodes: Vec<String> = plan
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "{opcodes:?}"
        );
        for bad in [
            "INSERT INTO entries (target, identity, state, updated_ms) VALUES ('t', 'b', 'done', 1)",
            "INSERT INTO entries (target, identity, state, updated_ms, uncertain) VALUES ('t', 'c', 'sending', 1, 2)",
        ] {
            assert!(
                conn.execute(bad, []).is_err(),
                "the CHECKs still refuse: {bad}"
            );
        }
    }

    #[test]
    fn invalid_rows_never_overwrite_created_identities() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (sent, _) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        record(
            &mut ledger,
            submission(sent.into_iter().next().unwrap(), Outcome::Created),
        );
        let bad = Refused {
            row: 5,
            identity: Some("a@x.io".into()),
            errors: Vec::new(),
            cells: Vec::new(),
            content_hash: 7,
        };
        let mut reports = Vec::new();
        ledger
            .transaction(|l| l.record_invalid(vec![bad], &mut reports))
            .unwrap();
        assert_eq!(reports[0].outcome, Outcome::Invalid);
        let entry = &entries(&path, "t").unwrap()[0];
        assert_eq!(entry.state, "created");
        assert_eq!(
            entry.source_row,
            Some(2),
            "the created row's entry, untouched"
        );
    }

    /// A run that dies after claiming (its claim batch committed, no result recorded) leaves
    /// people the next run must treat as possibly created: their claims become `sending`
    /// entries of the dead run, and claimed again they are uncertain.
    #[test]
    fn a_claim_without_its_result_is_in_flight_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut first = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let dead_run = first.memory.run_id;
        let (sent, _) = claim(&mut first, vec![user(2, "a@x.io", 9)]);
        assert_eq!(sent.len(), 1);
        assert!(!sent[0].uncertain);
        drop(first); // killed: no result, no finish
        assert_eq!(rows_of(&path, "claims"), 1);

        let mut next = SqliteLedger::open(&path, "t", "g.csv").unwrap();
        assert_eq!(rows_of(&path, "claims"), 0);
        let (state, run, row, hash, file): (String, i64, i64, i64, String) = next
            .conn
            .query_row(
                "SELECT state, run_id, source_row, content_hash, source_file FROM entries
                 WHERE target = 't' AND identity = 'a@x.io'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            (state.as_str(), run, row, hash),
            ("sending", dead_run, 2, 9)
        );
        assert_eq!(file, "f.csv");
        let (again, _) = claim(&mut next, vec![user(4, "a@x.io", 9)]);
        assert_eq!(again.len(), 1);
        assert!(again[0].uncertain, "its first request may have created it");
    }

    /// What is read of a ledger while a run is sending (an export, a dry run's copy) shows
    /// the people in flight as `sending`, and each result replaces its claim; once every
    /// person of a batch has a result, the batch is gone.
    #[test]
    fn readers_see_people_in_flight_and_results_replace_their_claims() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let sent = ledger
            .transaction(|l| {
                l.claim(
                    vec![user(2, "a@x.io", 1), user(3, "b@x.io", 1)],
                    &mut Vec::new(),
                )
            })
            .unwrap();
        let mut sent = sent.into_iter();
        let (a, b) = (sent.next().unwrap(), sent.next().unwrap());
        record(&mut ledger, submission(a, Outcome::Created));
        assert_eq!(rows_of(&path, "claims"), 1, "b@x.io has no result yet");

        let copy = snapshot(&path, dir.path()).unwrap();
        let states = |p: &Path| -> Vec<(String, String)> {
            entries(p, "t")
                .unwrap()
                .into_iter()
                .map(|e| (e.identity, e.state))
                .collect()
        };
        let in_flight = vec![
            ("a@x.io".to_string(), "created".to_string()),
            ("b@x.io".to_string(), "sending".to_string()),
        ];
        assert_eq!(states(&copy), in_flight);
        assert_eq!(states(&path), in_flight);

        // The reader folded b@x.io's claim into an entry: its result still lands.
        record(&mut ledger, submission(b, Outcome::Created));
        let e = &entries(&path, "t").unwrap()[1];
        assert_eq!(
            (e.state.as_str(), e.attempts, e.source_row),
            ("created", 1, Some(3))
        );
        assert_eq!(rows_of(&path, "claims"), 0);
    }

    /// A later row refused locally for the identity of a person in flight must not replace
    /// the claim: killed then, the next run would take the person for never sent.
    #[test]
    fn a_refused_repeat_of_a_person_in_flight_does_not_undo_its_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        let bad = Refused {
            row: 5,
            identity: Some("a@x.io".into()),
            errors: Vec::new(),
            cells: Vec::new(),
            content_hash: 7,
        };
        ledger
            .transaction(|l| l.record_invalid(vec![bad], &mut Vec::new()))
            .unwrap();
        drop(ledger); // killed with the request in flight
        let e = &entries(&path, "t").unwrap()[0];
        assert_eq!((e.state.as_str(), e.source_row), ("sending", Some(2)));
    }

    /// A run that claims without recording results (a dry run over a copy) keeps at most
    /// so many people in memory: past that, the claims become `sending` entries, and later
    /// results and repeats still find them.
    #[test]
    fn people_in_flight_past_the_bound_are_folded_into_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        ledger.memory.max_in_flight = 3;
        let users = (0..5)
            .map(|i| user(i + 2, &format!("p{i}@x.io"), 1))
            .collect();
        let (sent, _) = claim(&mut ledger, users);
        assert_eq!(sent.len(), 5);
        assert!(ledger.memory.in_flight.is_empty());
        assert_eq!(rows_of(&path, "claims"), 0);
        let (again, reports) = claim(&mut ledger, vec![user(9, "p1@x.io", 1)]);
        assert!(again.is_empty());
        assert_eq!(
            reports[0].outcome,
            Outcome::Duplicate {
                of: 3,
                first: FirstRow::Pending
            }
        );
        let first = sent.into_iter().next().unwrap();
        record(&mut ledger, submission(first, Outcome::Created));
        let states: Vec<String> = entries(&path, "t")
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(
            states,
            ["created", "sending", "sending", "sending", "sending"]
        );
    }

    /// Rows of a table in the ledger file (a raw read: no fold).
    fn rows_of(path: &Path, table: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    /// A run that dies after its results are journaled, before they are folded, loses none
    /// of them: the next run finds the people done, and their entries are what the results
    /// said.
    #[test]
    fn results_journaled_by_a_run_that_died_are_its_entries_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut first = SqliteLedger::open(&path, "t", "f.csv")
            .unwrap()
            .journaling();
        let dead_run = first.memory.run_id;
        let (sent, _) = claim(&mut first, vec![user(2, "a@x.io", 9), user(3, "b@x.io", 9)]);
        let mut sent = sent.into_iter();
        record(
            &mut first,
            submission(sent.next().unwrap(), Outcome::Created),
        );
        let refused = Submission {
            errors: vec![FieldError::local(
                None,
                "Email",
                crate::model::ErrorCode::Format,
                "taken",
            )],
            status: Some(400),
            ..submission(sent.next().unwrap(), Outcome::Rejected { status: 400 })
        };
        record(&mut first, refused);
        drop(first); // killed: no finish, no fold
        assert_eq!(rows_of(&path, "results"), 2, "journaled");
        assert_eq!(rows_of(&path, "entries"), 0, "not folded");

        let mut next = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        assert_eq!(rows_of(&path, "results"), 0, "folded on open");
        let (sent, reports) = claim(&mut next, vec![user(2, "a@x.io", 9), user(3, "b@x.io", 9)]);
        assert!(sent.is_empty(), "one done, one refused unchanged");
        assert_eq!(reports[0].outcome, Outcome::Skipped);
        assert_eq!(
            reports[1].outcome,
            Outcome::StillRefused { status: Some(400) }
        );
        assert_eq!(reports[1].errors[0].message, "taken");
        let e = entries(&path, "t").unwrap();
        assert_eq!(
            (
                e[0].state.as_str(),
                e[0].remote_id.as_deref(),
                e[0].attempts
            ),
            ("created", Some("r1"), 1)
        );
        assert_eq!((e[0].source_row, e[1].source_row), (Some(2), Some(3)));
        assert_eq!(e[1].state, "rejected");
        let run: Option<i64> = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT run_id FROM entries WHERE identity = 'a@x.io'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(run, Some(dead_run));
    }

    /// Past the journal's bound its results are folded into `entries` while the run goes
    /// on, and a later repeat of a person answered before or after the fold is still a
    /// duplicate of its first row, done.
    #[test]
    fn results_past_the_journal_bound_are_folded_and_repeats_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv")
            .unwrap()
            .journaling();
        ledger.memory.fold_rows = 3;
        // Not in key order: the fold sorts them.
        let users = ["e", "b", "d", "a", "c"]
            .iter()
            .enumerate()
            .map(|(i, name)| user(i as u64 + 2, &format!("{name}@x.io"), 1))
            .collect();
        let (sent, _) = claim(&mut ledger, users);
        for (i, person) in sent.into_iter().enumerate() {
            record(&mut ledger, submission(person, Outcome::Created));
            // A row of the journal per commit; the third result folds all three.
            assert_eq!(rows_of(&path, "results"), (i as i64 + 1) % 3);
            assert_eq!(rows_of(&path, "entries"), if i < 2 { 0 } else { 3 });
        }
        let (again, reports) = claim(
            &mut ledger,
            vec![user(9, "b@x.io", 1), user(10, "c@x.io", 1)],
        );
        assert!(again.is_empty());
        let outcomes: Vec<Outcome> = reports.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Duplicate {
                    of: 3,
                    first: FirstRow::Done
                },
                Outcome::Duplicate {
                    of: 6,
                    first: FirstRow::Done
                }
            ],
            "b was folded, c is still journaled"
        );
        ledger.finish_run("{}").unwrap();
        assert_eq!(rows_of(&path, "results"), 0);
        let e = entries(&path, "t").unwrap();
        let seen: Vec<(&str, Option<u64>)> = e
            .iter()
            .map(|e| (e.identity.as_str(), e.source_row))
            .collect();
        assert_eq!(
            seen,
            [
                ("a@x.io", Some(5)),
                ("b@x.io", Some(3)),
                ("c@x.io", Some(6)),
                ("d@x.io", Some(4)),
                ("e@x.io", Some(2))
            ]
        );
    }

    /// A password line written after its result was journaled owing it is not owed again
    /// once the journal is folded.
    #[test]
    fn a_password_line_written_after_its_result_is_journaled_is_not_owed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let mut ledger = SqliteLedger::open(&path, "t", "f.csv")
            .unwrap()
            .journaling();
        let (sent, _) = claim(&mut ledger, vec![user(2, "a@x.io", 1)]);
        let owed = Submission {
            password_owed: true,
            ..submission(sent.into_iter().next().unwrap(), Outcome::Created)
        };
        record(&mut ledger, owed);
        assert_eq!(
            ledger.owed_passwords().unwrap(),
            [("a@x.io".to_string(), false)]
        );
        ledger.passwords_written(&["a@x.io".to_string()]).unwrap();
        ledger.finish_run("{}").unwrap();
        drop(ledger);
        let mut next = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        assert!(next.owed_passwords().unwrap().is_empty());
    }

    /// A ledger of schema 3 gains the `claims` table in place, its entries untouched.
    #[test]
    fn a_ledger_of_schema_3_gains_the_claims_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            let v3 = SCHEMA
                .split("CREATE TABLE IF NOT EXISTS claims")
                .next()
                .unwrap();
            conn.execute_batch(v3).unwrap();
            conn.execute_batch(
                "INSERT INTO entries (target, identity, state, remote_id, updated_ms)
                    VALUES ('t', 'a@x.io', 'created', 'r9', 1);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let version: i64 = ledger
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(rows_of(&path, "claims"), 0);
        assert_eq!(
            entries(&path, "t").unwrap()[0].remote_id.as_deref(),
            Some("r9")
        );
    }
}
