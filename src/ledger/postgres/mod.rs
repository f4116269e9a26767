//! The ledger in PostgreSQL: the SQLite ledger's tables, states and answers (`schema.sql`),
//! for jobs whose machine keeps nothing between runs.
//!
//! - Each [`Ledger`] call that writes is one transaction, committed before it returns, as on
//!   SQLite; a batch of claims is one lookup (`identity = ANY(…)`) and one upsert
//!   (`UNNEST(…)`), so a batch costs two round trips however many rows it holds.
//! - The run lock is a session advisory lock on the target's ledger key: two runs on any two
//!   hosts cannot send the same target's rows, and the server drops the lock with the
//!   connection of a run that dies. The second run is told the holder's host, pid and start
//!   from its `runs` row.
//! - The blocking client runs on a thread of its own (it may not block inside the import's
//!   async runtime); the ledger's methods hand it work and wait for the answer.

mod connect;
mod tls;

pub use connect::{PgLocation, SslMode, is_postgres_url};

use super::sqlite::State;
use super::{Claimed, Entry, Ledger, LedgerError, RowWork, lock, now_ms, seen};
use crate::model::{FieldError, Outcome, Person, Refused, RowReport, Submission};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;

/// The schema this roster writes (the `roster_schema` row); a newer one is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// The tables, as `schema.sql` defines them.
const SCHEMA: &str = include_str!("schema.sql");

/// The advisory locks' first key: "Rost". The second is the target key's hash.
pub(crate) const LOCK_CLASS: i32 = 0x526F_7374;

/// The ledger error for a PostgreSQL error on the ledger shown as `shown`: credentials, a
/// missing database or a refused permission are the user's to fix (exit 2); the rest may pass
/// (exit 5).
pub(crate) fn pg_error(shown: &str, e: &postgres::Error) -> LedgerError {
    use crate::exit::{EXIT_RETRY_LATER, EXIT_USAGE};
    let (message, exit) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let exit = match code {
                c if c.starts_with("28") => EXIT_USAGE,
                "3D000" | "3F000" | "42501" => EXIT_USAGE,
                _ => EXIT_RETRY_LATER,
            };
            (
                format!("{}: {} ({code})", db.severity(), db.message()),
                exit,
            )
        }
        None => {
            // The cause says what went wrong ("error performing TLS handshake" alone does not);
            // a certificate roster will not trust is the user's to fix, not a passing fault.
            let mut message = e.to_string();
            let mut exit = EXIT_RETRY_LATER;
            let mut cause = std::error::Error::source(e);
            while let Some(inner) = cause {
                let text = inner.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                let tls = inner.downcast_ref::<rustls::Error>().or_else(|| {
                    inner
                        .downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .and_then(|e| e.downcast_ref::<rustls::Error>())
                });
                if let Some(rustls::Error::InvalidCertificate(_)) = tls {
                    exit = EXIT_USAGE;
                    message.push_str(
                        " (hint: sslmode verify-ca and verify-full trust only the root \
                         certificate in sslrootcert / PGSSLROOTCERT / ~/.postgresql/root.crt)",
                    );
                }
                cause = inner.source();
            }
            (message, exit)
        }
    };
    LedgerError::Postgres {
        ledger: shown.to_string(),
        message,
        exit,
    }
}

/// PostgreSQL text holds no NUL: one is kept as U+FFFD (a server's answer may carry one).
fn text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

fn opt_text(value: Option<&str>) -> Option<String> {
    value.map(text)
}

/// The advisory lock's second key for a target key (31 bits: `pg_locks` shows it as an oid).
pub(crate) fn lock_key(target: &str) -> i32 {
    (xxhash_rust::xxh3::xxh3_64(target.as_bytes()) & 0x7FFF_FFFF) as i32
}

/// Quotes an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `work` on a thread of its own: the blocking client starts a runtime of its own,
/// which it may not do on a thread that drives the import's async runtime.
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Connects to the ledger at `location`, in its schema (created and migrated if needed).
/// Blocks: call it off the async runtime ([`off_runtime`]).
pub fn connect(location: &PgLocation) -> Result<postgres::Client, LedgerError> {
    let mut client = location.connect()?;
    prepare_schema(&mut client, location.shown())?;
    Ok(client)
}

/// Puts the session in the ledger's schema (the first of `search_path`, which the URL's
/// `options=-csearch_path%3DNAME` can set; `public` else), creating it and its tables, and
/// refuses a schema written by a newer roster.
fn prepare_schema(client: &mut postgres::Client, shown: &str) -> Result<(), LedgerError> {
    let err = |e: postgres::Error| pg_error(shown, &e);
    let path: String = client
        .query_one("SHOW search_path", &[])
        .map_err(err)?
        .get(0);
    let schema = path
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .find(|s| !s.is_empty() && s != "$user")
        .unwrap_or_else(|| "public".into());
    let mut tx = client.transaction().map_err(err)?;
    // Two first runs at once must not both create the tables.
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_CLASS])
        .map_err(err)?;
    let quoted = quote_ident(&schema);
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted};
         CREATE TABLE IF NOT EXISTS roster_schema (version INTEGER NOT NULL);"
    ))
    .map_err(err)?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM roster_schema", &[])
        .map_err(err)?
        .and_then(|r| r.get(0));
    match found {
        Some(version) if version > SCHEMA_VERSION => {
            return Err(LedgerError::Newer {
                path: PathBuf::from(shown),
                found: i64::from(version),
                known: i64::from(SCHEMA_VERSION),
            });
        }
        Some(_) => {}
        None => {
            tx.batch_execute(SCHEMA).map_err(err)?;
            tx.execute(
                "INSERT INTO roster_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    // `SET` inside the transaction lasts the session once committed.
    Ok(())
}

/// What the ledger holds for an identity a claim meets.
#[derive(Debug, Clone)]
struct Known {
    state: String,
    run_id: Option<i64>,
    source_row: Option<i64>,
    content_hash: Option<i64>,
    errors: Option<String>,
    http_status: Option<i32>,
    remote_id: Option<String>,
    uncertain: bool,
}

/// The statements a run sends per batch, prepared once per run (sending a statement's text
/// with every batch would have the server parse and plan it each time).
struct Statements {
    known: postgres::Statement,
    claim: postgres::Statement,
    invalid: postgres::Statement,
    results: postgres::Statement,
}

impl Statements {
    fn prepare(client: &mut postgres::Client) -> Result<Statements, postgres::Error> {
        Ok(Statements {
            known: client.prepare(KNOWN)?,
            claim: client.prepare(CLAIM)?,
            invalid: client.prepare(INVALID)?,
            results: client.prepare(RESULTS)?,
        })
    }
}

/// What the ledger holds for a batch's identities.
const KNOWN: &str = "SELECT identity, state, run_id, source_row, content_hash, errors, http_status,
                    remote_id, uncertain
             FROM entries WHERE target = $1 AND identity = ANY($2)";

/// Claims a batch (`sending`); an uncertain identity stays uncertain.
const CLAIM: &str =
    "INSERT INTO entries (target, identity, state, content_hash, updated_ms, source_file,
                                  source_row, run_id, uncertain)
             SELECT $1, u.identity, 'sending', u.hash, $2, $3, u.row, $4, u.uncertain
             FROM UNNEST($5::text[], $6::int8[], $7::int8[], $8::bool[])
                  AS u(identity, hash, row, uncertain)
             ON CONFLICT (target, identity) DO UPDATE SET
                state = 'sending', content_hash = excluded.content_hash,
                updated_ms = excluded.updated_ms, source_file = excluded.source_file,
                source_row = excluded.source_row, run_id = excluded.run_id,
                uncertain = entries.uncertain OR excluded.uncertain";

/// Records a batch of local refusals (the caller chose which may be written).
const INVALID: &str =
    "INSERT INTO entries (target, identity, state, updated_ms, source_file, source_row,
                                  errors, content_hash)
             SELECT $1, u.identity, 'invalid', $2, $3, u.row, u.errors, u.hash
             FROM UNNEST($4::text[], $5::int8[], $6::int8[], $7::text[])
                  AS u(identity, hash, row, errors)
             ON CONFLICT (target, identity) DO UPDATE SET
                state = 'invalid', updated_ms = excluded.updated_ms,
                source_file = excluded.source_file, source_row = excluded.source_row,
                errors = excluded.errors, content_hash = excluded.content_hash";

/// Records a batch of submissions' ends.
const RESULTS: &str = "UPDATE entries AS e SET state = u.state,
                remote_id = COALESCE(u.remote_id, e.remote_id),
                http_status = COALESCE(u.http_status, e.http_status),
                attempts = e.attempts + u.attempts,
                first_attempt_ms = COALESCE(e.first_attempt_ms, u.first_ms),
                last_attempt_ms = COALESCE(u.last_ms, e.last_attempt_ms),
                updated_ms = $2, errors = u.errors, response_body = u.body,
                uncertain = u.uncertain, unconfirmed = u.unconfirmed, password_owed = u.owed
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int4[], $7::int4[], $8::int8[],
                         $9::int8[], $10::text[], $11::text[], $12::bool[], $13::bool[],
                         $14::bool[])
                  AS u(identity, state, remote_id, http_status, attempts, first_ms, last_ms,
                       errors, body, uncertain, unconfirmed, owed)
             WHERE e.target = $1 AND e.identity = u.identity";

/// The connection and the run's state, owned by the ledger's thread.
struct Session {
    client: postgres::Client,
    statements: Statements,
    shown: String,
    target: String,
    source_file: String,
    run_id: i64,
    /// Rows of this run found already done (as in the SQLite ledger: not written back).
    done_this_run: seen::SeenRows,
    retry_rejected: bool,
    remote_ids: bool,
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// A PostgreSQL ledger for one run against one target, holding the target's lock.
pub struct PostgresLedger {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shown: String,
}

impl PostgresLedger {
    /// Connects, takes the target's lock (or says who holds it) and starts a run for
    /// `target` reading `source_file`.
    pub fn open(
        location: &PgLocation,
        target: &str,
        source_file: &str,
        take_lock: bool,
    ) -> Result<PostgresLedger, LedgerError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel(1);
        let location = location.clone();
        let shown = location.shown().to_string();
        let (target, source_file) = (target.to_string(), source_file.to_string());
        let thread = std::thread::Builder::new()
            .name("roster-ledger-pg".into())
            .spawn(move || {
                let mut session = match Session::start(&location, target, source_file, take_lock) {
                    Ok(session) => {
                        let _ = ready.send(Ok(()));
                        session
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut session);
                }
                // Dropping the client closes the connection, and the server drops the lock.
            })
            .map_err(LedgerError::WriterStart)?;
        let gone = || LedgerError::WriterStopped {
            path: PathBuf::from(&shown),
        };
        started.recv().map_err(|_| gone())??;
        Ok(PostgresLedger {
            jobs: Some(jobs),
            thread: Some(thread),
            shown,
        })
    }

    /// The URL as printed.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `--retry-rejected`: send rows the API refused before even when unchanged.
    pub fn retrying_rejected(self, on: bool) -> Result<PostgresLedger, LedgerError> {
        self.call(move |s| {
            s.retry_rejected = on;
            Ok(())
        })?;
        Ok(self)
    }

    /// Reports rows already done with their remote id (for `--results`).
    pub fn reporting_remote_ids(self, on: bool) -> Result<PostgresLedger, LedgerError> {
        self.call(move |s| {
            s.remote_ids = on;
            Ok(())
        })?;
        Ok(self)
    }

    /// Runs `work` on the ledger's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Session) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let gone = || LedgerError::WriterStopped {
            path: PathBuf::from(&self.shown),
        };
        let (answer, answered) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send(Box::new(move |session: &mut Session| {
            let _ = answer.send(work(session));
        }))
        .map_err(|_| gone())?;
        answered.recv().map_err(|_| gone())?
    }
}

impl Drop for PostgresLedger {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which closes the connection (and the lock).
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Session {
    fn start(
        location: &PgLocation,
        target: String,
        source_file: String,
        take_lock: bool,
    ) -> Result<Session, LedgerError> {
        let shown = location.shown().to_string();
        let err = |e: postgres::Error| pg_error(&shown, &e);
        let mut client = connect(location)?;
        let key = lock_key(&target);
        // Taken here, unless the caller's own session holds it for longer (a sync).
        let locked: bool = !take_lock
            || client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
                .map_err(err)?
                .get(0);
        if !locked {
            let holder = client
                .query_opt(
                    "SELECT host, pid, started_ms FROM runs
                     WHERE target = $1 AND finished_ms IS NULL AND backend_pid IN (
                        SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                           AND classid::int8 = $2 AND objid::int8 = $3 AND objsubid = 2)
                     ORDER BY id DESC LIMIT 1",
                    &[&target, &i64::from(LOCK_CLASS), &i64::from(key)],
                )
                .map_err(err)?
                .map(|r| {
                    let (host, pid, started): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
                    let since = std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(u64::try_from(started).unwrap_or(0));
                    lock::holder_text(
                        u32::try_from(pid).unwrap_or(0),
                        &host,
                        &humantime::format_rfc3339_seconds(since).to_string(),
                    )
                })
                .unwrap_or_else(|| "another process".into());
            return Err(LedgerError::Held {
                path: PathBuf::from(format!("{shown} (target {target})")),
                holder,
            });
        }
        let run_id: i64 = client
            .query_one(
                "INSERT INTO runs (target, source_file, host, pid, backend_pid, started_ms)
                 VALUES ($1, $2, $3, $4, pg_backend_pid(), $5) RETURNING id",
                &[
                    &target,
                    &text(&source_file),
                    &lock::hostname(),
                    &i64::from(std::process::id()),
                    &now_ms(),
                ],
            )
            .map_err(err)?
            .get(0);
        let statements = Statements::prepare(&mut client).map_err(err)?;
        Ok(Session {
            client,
            statements,
            shown,
            target,
            source_file,
            run_id,
            done_this_run: seen::SeenRows::default(),
            retry_rejected: false,
            remote_ids: false,
        })
    }

    fn err(&self) -> impl Fn(postgres::Error) -> LedgerError + '_ {
        |e| pg_error(&self.shown, &e)
    }

    /// Claims, refusals and pass-through reports in one transaction, as [`Ledger::write_rows`].
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, postgres::Error> {
        let mut tx = self.client.transaction()?;
        let mut answers = Vec::new();
        let mut run = RunView {
            statements: &self.statements,
            target: &self.target,
            source_file: &self.source_file,
            run_id: self.run_id,
            done_this_run: &mut self.done_this_run,
            retry_rejected: self.retry_rejected,
            remote_ids: self.remote_ids,
        };
        for work in rows {
            match work {
                RowWork::Claim { users, limit } => {
                    answers.push(run.claim_up_to(&mut tx, users, limit, reports)?);
                }
                RowWork::Invalid(refused) => run.record_invalid(&mut tx, refused, reports)?,
                RowWork::Report(mut passed) => reports.append(&mut passed),
            }
        }
        tx.commit()?;
        Ok(answers)
    }

    /// Records the end of each submission in one transaction and reports it.
    fn write_results(
        &mut self,
        results: Vec<Submission>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), postgres::Error> {
        let mut identities = Vec::with_capacity(results.len());
        let mut states = Vec::with_capacity(results.len());
        let mut remote_ids = Vec::with_capacity(results.len());
        let mut statuses: Vec<Option<i32>> = Vec::with_capacity(results.len());
        let mut attempts: Vec<i32> = Vec::with_capacity(results.len());
        let mut firsts = Vec::with_capacity(results.len());
        let mut lasts = Vec::with_capacity(results.len());
        let mut errors = Vec::with_capacity(results.len());
        let mut bodies = Vec::with_capacity(results.len());
        let mut uncertain = Vec::with_capacity(results.len());
        let mut unconfirmed = Vec::with_capacity(results.len());
        let mut owed = Vec::with_capacity(results.len());
        for done in &results {
            identities.push(text(&done.user.identity));
            states.push(done.outcome.state());
            remote_ids.push(opt_text(done.remote_id.as_deref()));
            statuses.push(done.status.map(i32::from));
            attempts.push(i32::try_from(done.attempts).unwrap_or(i32::MAX));
            firsts.push(done.first_attempt_ms);
            lasts.push(done.last_attempt_ms);
            errors.push(match done.errors.is_empty() {
                true => None,
                false => Some(serde_json::to_string(&done.errors).unwrap_or_default()),
            });
            bodies.push(opt_text(done.response_body.as_deref()));
            // Unknown still: only an answer (or a row never sent) settles it.
            uncertain.push(
                done.user.uncertain
                    && matches!(done.outcome, Outcome::Failed { .. } | Outcome::NotProcessed),
            );
            unconfirmed.push(done.outcome == Outcome::CreatedUnconfirmed);
            owed.push(done.password_owed);
        }
        let mut tx = self.client.transaction()?;
        tx.execute(
            &self.statements.results,
            &[
                &self.target,
                &now_ms(),
                &identities,
                &states,
                &remote_ids,
                &statuses,
                &attempts,
                &firsts,
                &lasts,
                &errors,
                &bodies,
                &uncertain,
                &unconfirmed,
                &owed,
            ],
        )?;
        tx.commit()?;
        for done in results {
            reports.push(RowReport::of_submission(done));
        }
        Ok(())
    }
}

/// The run's view of the ledger inside one transaction.
struct RunView<'a> {
    statements: &'a Statements,
    target: &'a str,
    source_file: &'a str,
    run_id: i64,
    done_this_run: &'a mut seen::SeenRows,
    retry_rejected: bool,
    remote_ids: bool,
}

impl RunView<'_> {
    /// What the ledger holds for each of `identities`.
    fn known(
        &self,
        tx: &mut postgres::Transaction<'_>,
        identities: &[String],
    ) -> Result<HashMap<String, Known>, postgres::Error> {
        let rows = tx.query(&self.statements.known, &[&self.target, &identities])?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    Known {
                        state: r.get(1),
                        run_id: r.get(2),
                        source_row: r.get(3),
                        content_hash: r.get(4),
                        errors: r.get(5),
                        http_status: r.get(6),
                        remote_id: r.get(7),
                        uncertain: r.get(8),
                    },
                )
            })
            .collect())
    }

    /// The SQLite ledger's `claim_up_to`, a batch at a time: users to send are claimed
    /// (`sending`) and returned with the users the limit did not reach; the rest (done,
    /// refused unchanged, repeated in this run) are reported.
    fn claim_up_to(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        users: Vec<Person>,
        limit: usize,
        reports: &mut Vec<RowReport>,
    ) -> Result<Claimed, postgres::Error> {
        let identities: Vec<String> = users.iter().map(|u| text(&u.identity)).collect();
        let mut known = self.known(tx, &identities)?;
        let mut to_send: Vec<Person> = Vec::with_capacity(users.len().min(limit));
        let mut users = users.into_iter();
        while to_send.len() < limit {
            let Some(user) = users.next() else {
                break;
            };
            let key = text(&user.identity);
            let claimed_now = Known {
                state: "sending".into(),
                run_id: Some(self.run_id),
                source_row: Some(user.row as i64),
                content_hash: Some(user.content_hash as i64),
                errors: None,
                http_status: None,
                remote_id: None,
                uncertain: false,
            };
            let Some(before) = known.get(&key) else {
                known.insert(key, claimed_now);
                to_send.push(user);
                continue;
            };
            let claimed_here = (before.run_id == Some(self.run_id)).then(|| {
                (
                    before.source_row.unwrap_or(0) as u64,
                    State::parse(&before.state),
                )
            });
            let Some((mut user, identity_hash)) =
                self.done_this_run
                    .unless_repeat(user, claimed_here, reports)
            else {
                continue;
            };
            let unchanged_refusal = before.state == "rejected"
                && !self.retry_rejected
                && before.content_hash == Some(user.content_hash as i64);
            if matches!(before.state.as_str(), "created" | "exists") || unchanged_refusal {
                self.done_this_run
                    .insert(identity_hash, u32::try_from(user.row).unwrap_or(u32::MAX));
                let report = if unchanged_refusal {
                    let errors: Vec<FieldError> = before
                        .errors
                        .as_deref()
                        .and_then(|e| serde_json::from_str(e).ok())
                        .unwrap_or_default();
                    let status = before
                        .http_status
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(400);
                    let outcome = Outcome::StillRefused {
                        status: Some(status),
                    };
                    RowReport::local(user.row, outcome, errors, user.cells)
                } else {
                    let remote_id = self.remote_ids.then(|| before.remote_id.clone()).flatten();
                    RowReport::local(user.row, Outcome::Skipped, Vec::new(), user.cells)
                        .with_remote_id(remote_id)
                };
                reports.push(report);
                continue;
            }
            // Created without its follow-up step: resume at that step. Claimed by a run that
            // never recorded its end, or ended unsure: its request may have created the user.
            user.remote_id = before.remote_id.clone();
            user.uncertain = before.state == "sending" || before.uncertain;
            known.insert(key, claimed_now);
            to_send.push(user);
        }
        self.write_claims(tx, &to_send)?;
        Ok((to_send, users.collect()))
    }

    /// Marks `users` `sending` (one statement for the batch); an uncertain identity stays so.
    fn write_claims(
        &self,
        tx: &mut postgres::Transaction<'_>,
        users: &[Person],
    ) -> Result<(), postgres::Error> {
        if users.is_empty() {
            return Ok(());
        }
        let identities: Vec<String> = users.iter().map(|u| text(&u.identity)).collect();
        let hashes: Vec<i64> = users.iter().map(|u| u.content_hash as i64).collect();
        let rows: Vec<i64> = users.iter().map(|u| u.row as i64).collect();
        let uncertain: Vec<bool> = users.iter().map(|u| u.uncertain).collect();
        tx.execute(
            &self.statements.claim,
            &[
                &self.target,
                &now_ms(),
                &text(self.source_file),
                &self.run_id,
                &identities,
                &hashes,
                &rows,
                &uncertain,
            ],
        )?;
        Ok(())
    }

    /// The SQLite ledger's `record_invalid`: a locally refused row never overwrites an
    /// identity created, present, in flight, claimed in this run or possibly created; one
    /// refused the same way before is still refused.
    fn record_invalid(
        &mut self,
        tx: &mut postgres::Transaction<'_>,
        rows: Vec<Refused>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), postgres::Error> {
        let identities: Vec<String> = rows
            .iter()
            .filter_map(|r| r.identity.as_deref().map(text))
            .collect();
        let mut known = self.known(tx, &identities)?;
        let (mut ids, mut hashes, mut source_rows, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut written: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let mut outcome = Outcome::Invalid;
            if let Some(identity) = &row.identity {
                let key = text(identity);
                let before = known.get(&key);
                let unchanged = before.is_some_and(|b| {
                    b.state == "invalid" && b.content_hash == Some(row.content_hash as i64)
                });
                let writable = before.is_none_or(|b| {
                    matches!(
                        b.state.as_str(),
                        "invalid" | "failed" | "rejected" | "unsent"
                    ) && !b.uncertain
                        && b.run_id != Some(self.run_id)
                });
                if unchanged {
                    outcome = Outcome::StillRefused { status: None };
                } else if writable {
                    let json = serde_json::to_string(&row.errors).unwrap_or_default();
                    // A later refusal of the same identity replaces an earlier one (one
                    // upsert may not touch a row twice).
                    match written.get(&key).copied() {
                        Some(i) => {
                            hashes[i] = row.content_hash as i64;
                            source_rows[i] = row.row as i64;
                            errors[i] = json;
                        }
                        None => {
                            written.insert(key.clone(), ids.len());
                            ids.push(key.clone());
                            hashes.push(row.content_hash as i64);
                            source_rows.push(row.row as i64);
                            errors.push(json);
                        }
                    }
                    // As on SQLite, a refusal does not take the identity for this run: a
                    // valid row of it later in the file (the fix) is still claimed.
                    let run_id = before.and_then(|b| b.run_id);
                    known.insert(
                        key,
                        Known {
                            state: "invalid".into(),
                            run_id,
                            source_row: Some(row.row as i64),
                            content_hash: Some(row.content_hash as i64),
                            errors: None,
                            http_status: None,
                            remote_id: None,
                            uncertain: false,
                        },
                    );
                }
            }
            reports.push(RowReport::local(row.row, outcome, row.errors, row.cells));
        }
        if ids.is_empty() {
            return Ok(());
        }
        tx.execute(
            &self.statements.invalid,
            &[
                &self.target,
                &now_ms(),
                &text(self.source_file),
                &ids,
                &hashes,
                &source_rows,
                &errors,
            ],
        )?;
        Ok(())
    }
}

impl Ledger for PostgresLedger {
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        let (answers, mut written) = self.call(move |s| {
            let mut reports = Vec::new();
            let answers = s.write_rows(rows, &mut reports).map_err(s.err())?;
            Ok((answers, reports))
        })?;
        reports.append(&mut written);
        Ok(answers)
    }

    fn write_results(
        &mut self,
        results: Vec<Submission>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), LedgerError> {
        let mut written = self.call(move |s| {
            let mut reports = Vec::new();
            s.write_results(results, &mut reports).map_err(s.err())?;
            Ok(reports)
        })?;
        reports.append(&mut written);
        Ok(())
    }

    fn owed_passwords(&mut self) -> Result<Vec<(String, bool)>, LedgerError> {
        self.call(|s| {
            let rows = s
                .client
                .query(
                    "SELECT identity, unconfirmed FROM entries
                     WHERE target = $1 AND password_owed",
                    &[&s.target],
                )
                .map_err(s.err())?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn passwords_written(&mut self, identities: &[String]) -> Result<(), LedgerError> {
        let identities: Vec<String> = identities.iter().map(|i| text(i)).collect();
        self.call(move |s| {
            s.client
                .execute(
                    "UPDATE entries SET password_owed = FALSE
                     WHERE target = $1 AND identity = ANY($2)",
                    &[&s.target, &identities],
                )
                .map_err(s.err())?;
            Ok(())
        })
    }

    fn other_accounts(&mut self) -> Result<Vec<(String, u64)>, LedgerError> {
        self.call(|s| {
            let base = s.target.split('#').next().unwrap_or(&s.target).to_string();
            let like = format!(
                "{}#%",
                base.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let rows = s
                .client
                .query(
                    "SELECT target, count(*) FROM entries
                     WHERE (target = $1 OR target LIKE $2) AND target <> $3
                     GROUP BY target ORDER BY target",
                    &[&base, &like, &s.target],
                )
                .map_err(s.err())?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    fn output_written(&mut self, path: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        let path = text(path);
        self.call(move |s| {
            let row = s
                .client
                .query_opt("SELECT length, hash FROM outputs WHERE path = $1", &[&path])
                .map_err(s.err())?;
            Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
        })
    }

    fn record_output(
        &mut self,
        path: &str,
        written: Option<(u64, u64)>,
    ) -> Result<(), LedgerError> {
        let path = text(path);
        self.call(move |s| {
            let result = match written {
                Some((length, hash)) => s.client.execute(
                    "INSERT INTO outputs (path, length, hash, written_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (path) DO UPDATE SET length = excluded.length,
                        hash = excluded.hash, written_ms = excluded.written_ms",
                    &[&path, &(length as i64), &(hash as i64), &now_ms()],
                ),
                None => s
                    .client
                    .execute("DELETE FROM outputs WHERE path = $1", &[&path]),
            };
            result.map(|_| ()).map_err(s.err())
        })
    }

    fn finish_run(&mut self, summary: &str) -> Result<(), LedgerError> {
        let summary = text(summary);
        self.call(move |s| {
            s.client
                .execute(
                    "UPDATE runs SET finished_ms = $2, summary = $3 WHERE id = $1",
                    &[&s.run_id, &now_ms(), &summary],
                )
                .map_err(s.err())?;
            Ok(())
        })
    }
}

/// Every entry of `target` in the ledger at `location`, ordered by identity (audits, tests).
pub fn entries(location: &PgLocation, target: &str) -> Result<Vec<Entry>, LedgerError> {
    off_runtime(|| read_entries(location, target))
}

fn read_entries(location: &PgLocation, target: &str) -> Result<Vec<Entry>, LedgerError> {
    let mut client = connect(location)?;
    let rows = client
        .query(
            "SELECT identity, state, remote_id, http_status, attempts, source_row, uncertain,
                    unconfirmed
             FROM entries WHERE target = $1 ORDER BY identity",
            &[&target],
        )
        .map_err(|e| pg_error(location.shown(), &e))?;
    Ok(rows
        .into_iter()
        .map(|r| Entry {
            identity: r.get(0),
            state: r.get(1),
            remote_id: r.get(2),
            http_status: r
                .get::<_, Option<i32>>(3)
                .and_then(|s| u16::try_from(s).ok()),
            attempts: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
            source_row: r.get::<_, Option<i64>>(5).map(|v| v as u64),
            uncertain: r.get(6),
            unconfirmed: r.get(7),
        })
        .collect())
}
