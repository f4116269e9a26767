//! The ledger of a validation, for one run that sends nothing and keeps nothing: a table of
//! identities in memory, or in a scratch file for an input too large for memory.
//!
//! A validation needs of a ledger only what it says about the file itself: which identity a
//! later row repeats. The SQLite ledger answered that from a scratch file (a third of a
//! validation's time went to it); this answers it from a compact table of identity hashes
//! (12 bytes an identity, in [`SeenMap`]'s shards, or a two-integer SQLite table on disk),
//! with the SQLite ledger's own answers:
//!
//! - a valid row whose identity an earlier valid row claimed is `duplicate of row N`;
//! - a valid row after a refused row of the same identity is claimed (the fix comes later in
//!   the file);
//! - a refused row is `invalid`, or still refused when an earlier refused row of the same
//!   identity had the same content; it never displaces a claimed identity.
//!
//! Identities are told apart by their 64-bit xxh3 hash, as the SQLite ledger's in-run table
//! of done rows already does (two of ten million colliding: about one in 400,000 runs).

use super::seen::SeenMap;
use super::{Claimed, Ledger, LedgerError, RowWork};
use crate::model::{FirstRow, Outcome, RowReport, Submission};

/// What the table holds for an identity, in 32 bits so an entry is 12 bytes: the row that
/// claimed it, or (top bit set) the low 31 bits of the content it was refused with.
#[derive(Debug, Clone, Copy)]
struct Seen(u32);

const REFUSED: u32 = 1 << 31;

impl Seen {
    /// Claimed by this row (it would be sent). Rows past 2^31 (never held in memory: the
    /// in-memory ledger is for files of up to 128 MiB) share the last number.
    fn claimed(row: u64) -> Seen {
        Seen(u32::try_from(row).unwrap_or(u32::MAX).min(REFUSED - 1))
    }

    /// Refused with this content.
    fn refused(content_hash: u64) -> Seen {
        Seen(REFUSED | (content_hash as u32 & !REFUSED))
    }

    /// The row that claimed the identity, unless it was refused.
    fn claimed_row(self) -> Option<u32> {
        (self.0 & REFUSED == 0).then_some(self.0)
    }
}

/// The ledger of a validation: its table of identities in memory, or for a file too large
/// for that, in a scratch SQLite file.
#[derive(Default)]
pub struct ScratchLedger {
    seen: Table,
}

/// Where a validation's identities are kept.
enum Table {
    Memory(SeenMap<Seen>),
    Disk(DiskTable),
}

impl Default for Table {
    fn default() -> Table {
        Table::Memory(SeenMap::default())
    }
}

/// Identity hash → [`Seen`] in a scratch SQLite file: 10 M identities in flat memory.
///
/// A table of two integers keyed by the hash (a rowid table: no separate index) with no
/// journal and no syncing, written in one transaction that is never committed: the file is
/// thrown away with the run, and a crash loses nothing a validation keeps. (A commit per
/// batch wrote every page the batch touched: with hashes for keys, a page a row.) Its page
/// cache is bounded, so memory stays flat however many rows; pages past it spill to the file.
struct DiskTable {
    conn: rusqlite::Connection,
    path: std::path::PathBuf,
}

/// The disk table's page cache: enough for the b-tree's inner pages of ten million
/// identities and a share of its leaves.
const DISK_CACHE_KIB: i64 = 16 * 1024;

impl DiskTable {
    fn open(path: &std::path::Path) -> Result<DiskTable, LedgerError> {
        let err = |e| LedgerError::sqlite(path, e);
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE; PRAGMA cache_size = -{DISK_CACHE_KIB};
             CREATE TABLE IF NOT EXISTS seen (hash INTEGER PRIMARY KEY, value INTEGER NOT NULL);
             BEGIN;"
        ))
        .map_err(err)?;
        Ok(DiskTable {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn get(&self, hash: u64) -> rusqlite::Result<Option<Seen>> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached("SELECT value FROM seen WHERE hash = ?1")?
            .query_row([hash as i64], |r| r.get::<_, i64>(0))
            .optional()
            .map(|value| value.map(|v| Seen(v as u32)))
    }

    fn set(&self, hash: u64, seen: Seen) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO seen (hash, value) VALUES (?1, ?2)
                 ON CONFLICT (hash) DO UPDATE SET value = excluded.value",
            )?
            .execute([hash as i64, i64::from(seen.0)])
            .map(drop)
    }
}

impl Table {
    /// Where the table is, for an error's message (only the disk table can fail).
    fn location(&self) -> &std::path::Path {
        match self {
            Table::Memory(_) => std::path::Path::new("(in memory)"),
            Table::Disk(disk) => &disk.path,
        }
    }

    fn get(&self, hash: u64) -> rusqlite::Result<Option<Seen>> {
        match self {
            Table::Memory(map) => Ok(map.get(hash)),
            Table::Disk(disk) => disk.get(hash),
        }
    }

    /// Claims `hash` for `row` unless a row claimed it already, whose number it returns.
    fn claim(&mut self, hash: u64, row: u64) -> rusqlite::Result<Option<u32>> {
        match self {
            // One look-up: this runs for every row of a validation.
            Table::Memory(map) => Ok(map
                .update(hash, |before| match before {
                    Some(seen) if seen.claimed_row().is_some() => seen,
                    _ => Seen::claimed(row),
                })
                .and_then(Seen::claimed_row)),
            Table::Disk(_) => {
                let first = self.get(hash)?.and_then(Seen::claimed_row);
                if first.is_none() {
                    self.set(hash, Seen::claimed(row))?;
                }
                Ok(first)
            }
        }
    }

    fn set(&mut self, hash: u64, seen: Seen) -> rusqlite::Result<()> {
        match self {
            Table::Memory(map) => {
                map.set(hash, seen);
                Ok(())
            }
            Table::Disk(disk) => disk.set(hash, seen),
        }
    }
}

impl ScratchLedger {
    /// A ledger with room for `identities` before its table grows (an estimate is enough:
    /// past it the table grows as it must).
    pub fn with_capacity(identities: usize) -> ScratchLedger {
        ScratchLedger {
            seen: Table::Memory(SeenMap::with_capacity(identities)),
        }
    }

    /// A ledger whose table is the scratch SQLite file at `path` (created), for files too
    /// large to keep every identity in memory.
    pub fn on_disk(path: &std::path::Path) -> Result<ScratchLedger, LedgerError> {
        Ok(ScratchLedger {
            seen: Table::Disk(DiskTable::open(path)?),
        })
    }

    fn claim_and_report(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> rusqlite::Result<Vec<Claimed>> {
        let mut answers = Vec::new();
        for work in rows {
            match work {
                RowWork::Claim { users, limit } => {
                    let mut claimed = Vec::with_capacity(users.len().min(limit));
                    let mut users = users.into_iter();
                    while claimed.len() < limit {
                        let Some(user) = users.next() else {
                            break;
                        };
                        let hash = identity_hash(&user.identity);
                        if let Some(row) = self.seen.claim(hash, user.row)? {
                            reports.push(RowReport::duplicate(
                                user.row,
                                user.cells,
                                u64::from(row),
                                FirstRow::Pending,
                            ));
                            continue;
                        }
                        claimed.push(user);
                    }
                    answers.push((claimed, users.collect()));
                }
                RowWork::Invalid(refused) => {
                    for row in refused {
                        let mut outcome = Outcome::Invalid;
                        if let Some(identity) = &row.identity {
                            let hash = identity_hash(identity);
                            let refused = Seen::refused(row.content_hash);
                            match self.seen.get(hash)? {
                                Some(seen) if seen.claimed_row().is_some() => {}
                                Some(seen) if seen.0 == refused.0 => {
                                    outcome = Outcome::StillRefused { status: None };
                                }
                                _ => self.seen.set(hash, refused)?,
                            }
                        }
                        reports.push(RowReport::local(row.row, outcome, row.errors, row.cells));
                    }
                }
                RowWork::Report(mut passed) => reports.append(&mut passed),
            }
        }
        Ok(answers)
    }
}

fn identity_hash(identity: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(identity.as_bytes())
}

impl Ledger for ScratchLedger {
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        let result = self.claim_and_report(rows, reports);
        result.map_err(|e| LedgerError::sqlite(self.seen.location(), e))
    }

    /// A validation sends nothing; a submission ended unsent is reported as it is.
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

    fn output_written(&mut self, _path: &str) -> Result<Option<(u64, u64)>, LedgerError> {
        Ok(None)
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
    use crate::ledger::sqlite::tests::user;
    use crate::model::Refused;

    fn refused(row: u64, identity: &str, content: u64) -> Refused {
        Refused {
            row,
            identity: Some(identity.into()),
            errors: Vec::new(),
            cells: vec![identity.to_string()],
            content_hash: content,
        }
    }

    /// The same file, as the pipeline hands it over: chunks of valid and refused rows.
    fn work(seed: u64) -> Vec<Vec<RowWork>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut row = 1;
        (0..40)
            .map(|_| {
                let mut valid = Vec::new();
                let mut invalid = Vec::new();
                for _ in 0..rng.usize(1..30) {
                    row += 1;
                    // Few identities, so repeats of every kind are common.
                    let identity = format!("p{}@x.io", rng.u32(0..25));
                    let content = rng.u64(0..3);
                    match rng.bool() {
                        true => valid.push(user(row, &identity, content)),
                        false => invalid.push(refused(row, &identity, content)),
                    }
                }
                vec![
                    RowWork::Invalid(invalid),
                    RowWork::Claim {
                        users: valid,
                        limit: rng.usize(1..40),
                    },
                ]
            })
            .collect()
    }

    fn outcomes(ledger: &mut dyn Ledger, seed: u64) -> Vec<(u64, Outcome, Vec<u64>)> {
        let mut out = Vec::new();
        for chunk in work(seed) {
            let mut reports = Vec::new();
            let answers = ledger.write_rows(chunk, &mut reports).unwrap();
            let claimed: Vec<u64> = answers
                .iter()
                .flat_map(|(c, rest)| c.iter().chain(rest).map(|u| u.row))
                .collect();
            for r in reports {
                out.push((r.row, r.outcome, claimed.clone()));
            }
        }
        out
    }

    #[test]
    fn answers_exactly_as_a_fresh_sqlite_ledger_does() {
        for seed in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("scratch.sqlite");
            let mut sqlite = SqliteLedger::open(&path, "sandbox@http://x", "people.csv").unwrap();
            let expected = outcomes(&mut sqlite, seed);
            let got = outcomes(&mut ScratchLedger::default(), seed);
            assert_eq!(got, expected, "seed {seed}");
            let mut on_disk = ScratchLedger::on_disk(&dir.path().join("seen.sqlite")).unwrap();
            assert_eq!(
                outcomes(&mut on_disk, seed),
                expected,
                "seed {seed}, on disk"
            );
        }
    }
}
