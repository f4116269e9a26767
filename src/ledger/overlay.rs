//! The ledger of a dry run against an existing ledger: what earlier runs recorded, read from
//! a copy of the ledger and never written, under what this run would have written, kept in
//! memory.
//!
//! A dry run used to claim every row in the copy as an import claims in the ledger: an
//! upsert per row, 3.5x the time of a validation of the same file. Nothing a dry run writes
//! outlives it, so this keeps its writes (claims, local refusals, rows found done) in
//! compact in-memory tables keyed by identity hash, and reads the earlier runs' entries once,
//! in one scan, into another (or, past [`PRIOR_IN_MEMORY_UP_TO`] entries, looks each up in
//! the copy). It answers exactly as [`SqliteLedger`](super::SqliteLedger) on the copy does
//! (a test holds the two side by side); the rare fields only a few rows need (a refusal's
//! errors, a remote id) are read from the copy for those rows.
//!
//! Identities are told apart by their 64-bit xxh3 hash, as the SQLite ledger's in-run table
//! of done rows already does.

use super::seen::{SeenMap, SeenRows};
use super::sqlite::{State, ledger_error};
use super::{Claimed, Ledger, LedgerError, RowWork};
use crate::model::{FieldError, FirstRow, Outcome, Person, Refused, RowReport, Submission};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// Most entries of earlier runs read into memory (~28 bytes each): past it, each identity
/// is looked up in the copy.
const PRIOR_IN_MEMORY_UP_TO: u64 = 2_000_000;

/// What an earlier run recorded of an identity, as much as a claim decides on.
#[derive(Debug, Clone, Copy)]
struct Prior {
    state: State,
    uncertain: bool,
    /// The entry has a remote id (read from the copy when a claim needs it).
    has_remote_id: bool,
    content_hash: Option<i64>,
}

/// What this run would have written of an identity.
#[derive(Debug, Clone, Copy)]
enum Written {
    /// Claimed (`sending`) by this row.
    Claimed(u64),
    /// Recorded `invalid` with this content.
    Invalid(u64),
}

/// The earlier runs' entries of this target.
enum Priors {
    /// None: every identity is new.
    Empty,
    /// All of them, read in one scan.
    Loaded(SeenMap<Prior>),
    /// Too many to hold: each looked up in the copy.
    Lookup,
}

/// The ledger of a dry run over a copy of an existing ledger (see the module's notes).
pub struct DryRunLedger {
    conn: Connection,
    path: PathBuf,
    target: String,
    /// Read on the first rows, on the ledger's thread, while the first chunks are validated.
    priors: Option<Priors>,
    written: SeenMap<Written>,
    /// Rows of this run found already done (as [`SqliteLedger`](super::SqliteLedger) keeps).
    done_this_run: SeenRows,
    retry_rejected: bool,
    remote_ids: bool,
    /// Most earlier entries read into memory ([`PRIOR_IN_MEMORY_UP_TO`]; tests lower it).
    prior_in_memory_up_to: u64,
}

impl DryRunLedger {
    /// Reads the ledger copy at `copy` for `target`, with room for `rows` of this run before
    /// its tables grow. The copy is only written to bring it to this schema, if an older
    /// roster wrote the ledger.
    pub fn open(copy: &Path, target: &str, rows: usize) -> Result<DryRunLedger, LedgerError> {
        let conn = Connection::open(copy).map_err(|e| ledger_error(copy, e))?;
        super::sqlite::migrate(&conn, copy)?;
        Ok(DryRunLedger {
            conn,
            path: copy.to_path_buf(),
            target: target.to_string(),
            priors: None,
            written: SeenMap::with_capacity(rows),
            done_this_run: SeenRows::default(),
            retry_rejected: false,
            remote_ids: false,
            prior_in_memory_up_to: PRIOR_IN_MEMORY_UP_TO,
        })
    }

    /// `--retry-rejected`: rows the API refused before would be sent even when unchanged.
    pub fn retrying_rejected(mut self, on: bool) -> DryRunLedger {
        self.retry_rejected = on;
        self
    }

    /// Reports rows already done with their remote id (for `--results`).
    pub fn reporting_remote_ids(mut self, on: bool) -> DryRunLedger {
        self.remote_ids = on;
        self
    }

    fn load_priors(&self) -> rusqlite::Result<Priors> {
        let count: u64 = self.conn.query_row(
            "SELECT count(*) FROM entries WHERE target = ?1",
            [&self.target],
            |r| r.get(0),
        )?;
        if count == 0 {
            return Ok(Priors::Empty);
        }
        if count > self.prior_in_memory_up_to {
            return Ok(Priors::Lookup);
        }
        let mut priors = SeenMap::with_capacity(count as usize);
        let mut statement = self.conn.prepare(
            "SELECT identity, state, uncertain, remote_id IS NOT NULL, content_hash
             FROM entries WHERE target = ?1",
        )?;
        let mut rows = statement.query([&self.target])?;
        while let Some(r) = rows.next()? {
            let identity = r.get_ref(0)?.as_str().unwrap_or("");
            priors.set(identity_hash(identity), prior_of(r, 1)?);
        }
        Ok(Priors::Loaded(priors))
    }

    /// What earlier runs recorded of `identity`.
    fn prior(&mut self, identity: &str, hash: u64) -> rusqlite::Result<Option<Prior>> {
        if self.priors.is_none() {
            self.priors = Some(self.load_priors()?);
        }
        match &self.priors {
            Some(Priors::Loaded(priors)) => Ok(priors.get(hash)),
            Some(Priors::Lookup) => self
                .conn
                .prepare_cached(
                    "SELECT state, uncertain, remote_id IS NOT NULL, content_hash
                     FROM entries WHERE target = ?1 AND identity = ?2",
                )?
                .query_row(params![self.target, identity], |r| prior_of(r, 0))
                .optional(),
            Some(Priors::Empty) | None => Ok(None),
        }
    }

    /// Columns of `identity`'s entry in the copy that only a few rows need.
    fn read<T: rusqlite::types::FromSql>(
        &self,
        column: &str,
        identity: &str,
    ) -> rusqlite::Result<Option<T>> {
        let sql = format!("SELECT {column} FROM entries WHERE target = ?1 AND identity = ?2");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![self.target, identity], |r| r.get::<_, Option<T>>(0))
            .optional()?
            .flatten())
    }

    /// An identity's entry as this run would leave it (`written` over `prior`): its state,
    /// content hash and what earlier runs recorded of it.
    fn entry(
        written: Option<Written>,
        prior: Option<Prior>,
    ) -> Option<(State, Option<i64>, Option<Prior>)> {
        match written {
            Some(Written::Claimed(_)) => Some((State::Sending, None, prior)),
            Some(Written::Invalid(content)) => Some((State::Invalid, Some(content as i64), prior)),
            None => prior.map(|p| (p.state, p.content_hash, Some(p))),
        }
    }

    /// [`SqliteLedger::claim_up_to`](super::SqliteLedger::claim_up_to)'s answers.
    fn claim_up_to(
        &mut self,
        users: Vec<Person>,
        limit: usize,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Claimed> {
        let mut to_send = Vec::with_capacity(users.len().min(limit));
        let mut users = users.into_iter();
        while to_send.len() < limit {
            let Some(user) = users.next() else {
                break;
            };
            if let Some(user) = self.unsettled(user, reports)? {
                to_send.push(user);
            }
        }
        Ok((to_send, users.collect()))
    }

    /// `user` back, claimed, if it would be sent; else its report pushed.
    fn unsettled(
        &mut self,
        mut user: Person,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Option<Person>> {
        let hash = identity_hash(&user.identity);
        let written = self.written.get(hash);
        if let Some(Written::Claimed(first)) = written {
            reports.push(RowReport::duplicate(
                user.row,
                user.cells,
                first,
                FirstRow::Pending,
            ));
            return Ok(None);
        }
        let prior = self.prior(&user.identity, hash)?;
        // New to the ledger (most rows of a first import): claimed, in no more look-ups.
        // (A row found done is always one the ledger knew.)
        if written.is_none() && prior.is_none() {
            self.written.set(hash, Written::Claimed(user.row));
            return Ok(Some(user));
        }
        if let Some(first) = self.done_this_run.get(hash) {
            let report = RowReport::duplicate(user.row, user.cells, first.into(), FirstRow::Done);
            reports.push(report);
            return Ok(None);
        }
        if let Some((state, content_hash, prior)) = Self::entry(written, prior) {
            let unchanged_refusal = state == State::Rejected
                && !self.retry_rejected
                && content_hash == Some(user.content_hash as i64);
            if matches!(state, State::Created | State::Exists) || unchanged_refusal {
                self.done_this_run
                    .insert(hash, u32::try_from(user.row).unwrap_or(u32::MAX));
                let report = if unchanged_refusal {
                    let errors: Vec<FieldError> = self
                        .read::<String>("errors", &user.identity)?
                        .and_then(|e| serde_json::from_str(&e).ok())
                        .unwrap_or_default();
                    let status = self.read::<u16>("http_status", &user.identity)?;
                    let outcome = Outcome::StillRefused {
                        status: Some(status.unwrap_or(400)),
                    };
                    RowReport::local(user.row, outcome, errors, user.cells)
                } else {
                    let remote_id = match self.remote_ids {
                        true => self.read::<String>("remote_id", &user.identity)?,
                        false => None,
                    };
                    RowReport::local(user.row, Outcome::Skipped, Vec::new(), user.cells)
                        .with_remote_id(remote_id)
                };
                reports.push(report);
                return Ok(None);
            }
            user.remote_id = match prior.is_some_and(|p| p.has_remote_id) {
                true => self.read::<String>("remote_id", &user.identity)?,
                false => None,
            };
            user.uncertain = state == State::Sending || prior.is_some_and(|p| p.uncertain);
        }
        self.written.set(hash, Written::Claimed(user.row));
        Ok(Some(user))
    }

    /// [`SqliteLedger::record_invalid`](super::SqliteLedger::record_invalid)'s answers.
    fn record_invalid(
        &mut self,
        rows: Vec<Refused>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<()> {
        for row in rows {
            let mut outcome = Outcome::Invalid;
            if let Some(identity) = &row.identity {
                let hash = identity_hash(identity);
                let prior = self.prior(identity, hash)?;
                match Self::entry(self.written.get(hash), prior) {
                    Some((State::Invalid, content, _))
                        if content == Some(row.content_hash as i64) =>
                    {
                        outcome = Outcome::StillRefused { status: None };
                    }
                    // Only a settled refusal of an earlier run, or nothing, is written over.
                    Some((State::Invalid | State::Rejected | State::Other, _, prior))
                        if !prior.is_some_and(|p| p.uncertain) =>
                    {
                        self.written.set(hash, Written::Invalid(row.content_hash));
                    }
                    None => self.written.set(hash, Written::Invalid(row.content_hash)),
                    Some(_) => {}
                }
            }
            reports.push(RowReport::local(row.row, outcome, row.errors, row.cells));
        }
        Ok(())
    }
}

/// Whether the ledger copy at `copy` holds a refusal by the API for `target`: only then does
/// a dry run need its rows' content hashes (each the hash of the request body it would send),
/// to tell a row refused before and unchanged since from one to send again.
pub fn holds_api_refusals(copy: &Path, target: &str) -> Result<bool, LedgerError> {
    if !copy.exists() {
        return Ok(false);
    }
    let err = |e| ledger_error(copy, e);
    let conn = Connection::open_with_flags(copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(err)?;
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM entries WHERE target = ?1 AND state = 'rejected')",
        [target],
        |r| r.get(0),
    )
    .map_err(err)
}

/// A [`Prior`] from the columns state, uncertain, has-remote-id and content hash, from
/// column `at` on.
fn prior_of(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Prior> {
    Ok(Prior {
        state: State::parse(r.get_ref(at)?.as_str().unwrap_or("")),
        uncertain: r.get(at + 1)?,
        has_remote_id: r.get(at + 2)?,
        content_hash: r.get(at + 3)?,
    })
}

fn identity_hash(identity: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(identity.as_bytes())
}

impl Ledger for DryRunLedger {
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        let mut answers = Vec::new();
        for work in rows {
            let done = match work {
                RowWork::Claim { users, limit } => self
                    .claim_up_to(users, limit, reports)
                    .map(|claimed| answers.push(claimed)),
                RowWork::Invalid(rows) => self.record_invalid(rows, reports),
                RowWork::Report(mut passed) => {
                    reports.append(&mut passed);
                    Ok(())
                }
            };
            done.map_err(|e| ledger_error(&self.path, e))?;
        }
        Ok(answers)
    }

    /// A dry run sends nothing; a submission ended unsent is reported as it is.
    fn write_results(
        &mut self,
        results: Vec<Submission>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), LedgerError> {
        for done in results {
            reports.push(
                RowReport::local(done.user.row, done.outcome, done.errors, done.user.cells)
                    .with_remote_id(done.remote_id),
            );
        }
        Ok(())
    }

    fn owed_passwords(&mut self) -> Result<Vec<(String, bool)>, LedgerError> {
        Ok(Vec::new())
    }

    fn passwords_written(&mut self, _identities: &[String]) -> Result<(), LedgerError> {
        Ok(())
    }

    fn other_accounts(&mut self) -> Result<Vec<(String, u64)>, LedgerError> {
        Ok(Vec::new())
    }

    fn output_written(&mut self, path: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        Ok(super::recorded_output(&self.path, path))
    }

    fn record_output(
        &mut self,
        _path: &str,
        _written: Option<(u64, u64)>,
    ) -> Result<(), LedgerError> {
        Ok(())
    }

    fn finish_run(&mut self, _summary: &str) -> Result<(), LedgerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::SqliteLedger;
    use crate::ledger::sqlite::tests::{submission, user};
    use crate::model::{ErrorCode, Field};

    const TARGET: &str = "sandbox@http://x";

    fn refused(row: u64, identity: &str, content: u64) -> Refused {
        Refused {
            row,
            identity: Some(identity.into()),
            errors: Vec::new(),
            cells: vec![identity.to_string()],
            content_hash: content,
        }
    }

    fn identity(rng: &mut fastrand::Rng) -> String {
        // Few identities, so every kind of earlier entry and repeat is common.
        format!("p{}@x.io", rng.u32(0..30))
    }

    /// A ledger as earlier runs leave it: identities created, present, refused by the API
    /// (with errors), failed, unsent, refused locally, in flight when a run died, uncertain.
    fn earlier_runs(path: &Path, rng: &mut fastrand::Rng) {
        for run in 0..3 {
            let mut ledger = SqliteLedger::open(path, TARGET, "earlier.csv").unwrap();
            let mut reports = Vec::new();
            let invalid = (0..rng.usize(0..6))
                .map(|i| refused(i as u64 + 2, &identity(rng), rng.u64(0..3)))
                .collect();
            ledger
                .transaction(|l| l.record_invalid(invalid, &mut reports))
                .unwrap();
            let mut users: Vec<Person> = (0..rng.usize(1..15))
                .map(|i| user(i as u64 + 10, &identity(rng), rng.u64(0..3)))
                .collect();
            for u in &mut users {
                u.uncertain = rng.bool();
            }
            let claimed = ledger
                .transaction(|l| l.claim(users, &mut reports))
                .unwrap();
            let mut ended = Vec::new();
            for u in claimed {
                let error =
                    FieldError::local(Some(Field::Email), "Email", ErrorCode::Refused, "taken");
                let mut done = match rng.u8(0..7) {
                    0 => submission(u, Outcome::Created),
                    1 => submission(u, Outcome::Exists),
                    2 => submission(u, Outcome::Rejected { status: 422 }),
                    3 => submission(u, Outcome::Failed { status: Some(503) }),
                    4 => submission(u, Outcome::NotProcessed),
                    5 => submission(u, Outcome::CreatedUnconfirmed),
                    // Never answered: left `sending` by a run that died.
                    _ => continue,
                };
                if matches!(done.outcome, Outcome::Rejected { .. }) {
                    done.status = Some(422);
                    done.errors = vec![error];
                }
                if rng.bool() {
                    done.remote_id = None;
                }
                ended.push(done);
            }
            ledger
                .transaction(|l| l.record_submissions(ended, &mut reports))
                .unwrap();
            if run < 2 {
                ledger.finish_run("{}").unwrap();
            }
        }
    }

    /// A file's rows as the pipeline hands them over: chunks of valid and refused rows.
    fn work(rng: &mut fastrand::Rng) -> Vec<Vec<RowWork>> {
        let mut row = 1;
        (0..30)
            .map(|_| {
                let mut valid = Vec::new();
                let mut invalid = Vec::new();
                for _ in 0..rng.usize(1..20) {
                    row += 1;
                    let identity = identity(rng);
                    let content = rng.u64(0..3);
                    match rng.u8(0..3) {
                        0 => invalid.push(refused(row, &identity, content)),
                        _ => valid.push(user(row, &identity, content)),
                    }
                }
                vec![
                    RowWork::Invalid(invalid),
                    RowWork::Claim {
                        users: valid,
                        limit: rng.usize(1..30),
                    },
                ]
            })
            .collect()
    }

    /// Every report (row, outcome, errors, remote id) and every claimed person (row,
    /// uncertain, remote id) of `work`, in order.
    fn answers(ledger: &mut dyn Ledger, work: Vec<Vec<RowWork>>) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in work {
            let mut reports = Vec::new();
            for (claimed, rest) in ledger.write_rows(chunk, &mut reports).unwrap() {
                for u in claimed {
                    out.push(format!(
                        "claimed {} {} {:?}",
                        u.row, u.uncertain, u.remote_id
                    ));
                }
                out.push(format!(
                    "not reached {:?}",
                    rest.iter().map(|u| u.row).collect::<Vec<_>>()
                ));
            }
            for r in reports {
                out.push(format!(
                    "{} {:?} {:?} {:?}",
                    r.row, r.outcome, r.errors, r.remote_id
                ));
            }
        }
        out
    }

    #[test]
    fn answers_exactly_as_the_sqlite_ledger_on_a_copy_does() {
        let mut seen = Vec::new();
        for seed in 0..60 {
            let (retry_rejected, remote_ids) = (seed % 3 == 1, seed % 2 == 1);
            let dir = tempfile::tempdir().unwrap();
            let ledger = dir.path().join("ledger.sqlite");
            let mut rng = fastrand::Rng::with_seed(seed);
            earlier_runs(&ledger, &mut rng);
            let work_seed = rng.u64(..);

            std::fs::create_dir(dir.path().join("a")).unwrap();
            let copy = crate::ledger::snapshot(&ledger, &dir.path().join("a")).unwrap();
            let mut sqlite = SqliteLedger::open(&copy, TARGET, "people.csv")
                .unwrap()
                .retrying_rejected(retry_rejected)
                .reporting_remote_ids(remote_ids);
            let expected = answers(&mut sqlite, work(&mut fastrand::Rng::with_seed(work_seed)));

            std::fs::create_dir(dir.path().join("b")).unwrap();
            let copy = crate::ledger::snapshot(&ledger, &dir.path().join("b")).unwrap();
            let mut overlay = DryRunLedger::open(&copy, TARGET, 0)
                .unwrap()
                .retrying_rejected(retry_rejected)
                .reporting_remote_ids(remote_ids);
            // Every fourth seed looks each identity up in the copy instead.
            if seed % 4 == 3 {
                overlay.prior_in_memory_up_to = 1;
            }
            let got = answers(&mut overlay, work(&mut fastrand::Rng::with_seed(work_seed)));
            assert_eq!(got, expected, "seed {seed}");
            seen.extend(expected);
        }
        // The seeds between them meet every kind of answer.
        for kind in [
            "Skipped",
            "StillRefused { status: Some(422)",
            "StillRefused { status: None",
            "Skipped [] Some(\"r1\")",
            "Duplicate",
            "Pending",
            "Done",
            "Invalid",
            "claimed",
            "true Some(\"r1\")",
            "taken",
        ] {
            assert!(
                seen.iter().any(|a| a.contains(kind)),
                "no answer has {kind}"
            );
        }
    }

    #[test]
    fn the_copy_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger.sqlite");
        earlier_runs(&ledger, &mut fastrand::Rng::with_seed(7));
        let before = std::fs::read(&ledger).unwrap();
        let mut overlay = DryRunLedger::open(&ledger, TARGET, 0).unwrap();
        answers(&mut overlay, work(&mut fastrand::Rng::with_seed(8)));
        drop(overlay);
        assert_eq!(std::fs::read(&ledger).unwrap(), before);
    }
}
