//! Moving a ledger between SQLite and PostgreSQL: `roster ledger copy`, and the read-only
//! SQLite snapshot a dry run, an export or the stats work on when the ledger is PostgreSQL.
//!
//! A copy reads the source in one consistent transaction and writes the destination in one,
//! entries streamed a chunk at a time. Runs keep their order, renumbered after the
//! destination's own (entries follow their run); the destination must not hold people of
//! the targets copied (a copy never merges two histories of one target), and is locked
//! while it is written.

use super::postgres::{self as pg, PgLocation};
use super::{LedgerError, LedgerLocation, lock};
use postgres::fallible_iterator::FallibleIterator;
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;

/// Entries moved per statement.
const CHUNK: usize = 5_000;

/// One entry, every column.
#[derive(Debug, Clone)]
struct EntryRow {
    target: String,
    identity: String,
    state: String,
    remote_id: Option<String>,
    http_status: Option<i64>,
    attempts: i64,
    content_hash: Option<i64>,
    first_attempt_ms: Option<i64>,
    last_attempt_ms: Option<i64>,
    updated_ms: i64,
    source_file: Option<String>,
    source_row: Option<i64>,
    run_id: Option<i64>,
    errors: Option<String>,
    response_body: Option<String>,
    uncertain: bool,
    unconfirmed: bool,
    password_owed: bool,
}

/// One run.
#[derive(Debug, Clone)]
struct RunRow {
    id: i64,
    target: String,
    source_file: String,
    host: String,
    pid: i64,
    started_ms: i64,
    finished_ms: Option<i64>,
    summary: Option<String>,
}

/// One output roster wrote.
#[derive(Debug, Clone)]
struct OutputRow {
    path: String,
    length: i64,
    hash: i64,
    written_ms: i64,
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Entries (people).
    pub entries: u64,
    /// Runs.
    pub runs: u64,
    /// Outputs recorded.
    pub outputs: u64,
}

const ENTRY_COLUMNS: &str = "target, identity, state, remote_id, http_status, attempts, \
    content_hash, first_attempt_ms, last_attempt_ms, updated_ms, source_file, source_row, \
    run_id, errors, response_body, uncertain, unconfirmed, password_owed";

/// Copies the ledger at `from` into `to`: only the entries of `target` (a ledger key) when
/// given, with the runs and outputs. Refuses when `to` already holds people of a copied
/// target, or another run holds it.
pub fn copy(
    from: &LedgerLocation,
    to: &LedgerLocation,
    target: Option<&str>,
) -> Result<Copied, LedgerError> {
    pg::off_runtime(|| copy_here(from, to, target, true))
}

fn copy_here(
    from: &LedgerLocation,
    to: &LedgerLocation,
    target: Option<&str>,
    refuse_sync_records: bool,
) -> Result<Copied, LedgerError> {
    if let (LedgerLocation::Sqlite(a), LedgerLocation::Sqlite(b)) = (from, to)
        && lock::canonical(a) == lock::canonical(b)
    {
        return Err(LedgerError::Io {
            path: a.clone(),
            what: "copying a ledger onto itself".into(),
            source: std::io::Error::other("--from and --to are the same file"),
        });
    }
    let mut source = Source::open(from)?;
    let targets = source.targets(target)?;
    if refuse_sync_records {
        for t in &targets {
            let people = source.sync_people(t)?;
            if people > 0 {
                return Err(LedgerError::SyncRecords {
                    ledger: from.shown(),
                    target: t.clone(),
                    people,
                });
            }
        }
    }
    let runs = source.runs()?;
    let outputs = source.outputs()?;
    let mut sink = Sink::open(to, &targets)?;
    let offset = sink.run_offset()?;
    let mut copied = Copied::default();
    sink.write_runs(&runs, offset)?;
    copied.runs = runs.len() as u64;
    source.entries(target, &mut |chunk| {
        copied.entries += chunk.len() as u64;
        sink.write_entries(chunk, offset)
    })?;
    sink.write_outputs(&outputs)?;
    copied.outputs = outputs.len() as u64;
    sink.commit()?;
    Ok(copied)
}

/// A copy of the ledger at `location` (all of it, or one target's people) as a SQLite file
/// at `copy`, for a dry run, an export or the stats to read.
pub fn snapshot_to_sqlite(
    location: &PgLocation,
    target: Option<&str>,
    copy: &Path,
) -> Result<(), LedgerError> {
    let from = LedgerLocation::Postgres(Box::new(location.clone()));
    // A snapshot for reading (an export, a dry run) carries the entries; it is not a move.
    let to = LedgerLocation::Sqlite(copy.to_path_buf());
    pg::off_runtime(|| copy_here(&from, &to, target, false))?;
    Ok(())
}

enum Source {
    Sqlite {
        conn: Connection,
        path: std::path::PathBuf,
    },
    Postgres {
        client: Box<postgres::Client>,
        shown: String,
    },
}

impl Source {
    fn open(location: &LedgerLocation) -> Result<Source, LedgerError> {
        match location {
            LedgerLocation::Sqlite(path) => {
                if !path.is_file() {
                    return Err(LedgerError::Missing { path: path.clone() });
                }
                let err = |e| LedgerError::sqlite(path, e);
                let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                    .map_err(err)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(err)?;
                // An older ledger is brought to this schema first (as any run would), and a
                // crashed run's claims and results become their entries.
                super::sqlite::migrate(&conn, path)?;
                super::unfolded::fold(&conn).map_err(err)?;
                conn.execute_batch("BEGIN").map_err(err)?;
                Ok(Source::Sqlite {
                    conn,
                    path: path.clone(),
                })
            }
            LedgerLocation::Postgres(location) => {
                let mut client = pg::connect(location)?;
                client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .map_err(|e| pg::pg_error(location.shown(), &e))?;
                Ok(Source::Postgres {
                    client: Box::new(client),
                    shown: location.shown().to_string(),
                })
            }
        }
    }

    /// The target keys to copy: `only`, or every target with people.
    fn targets(&mut self, only: Option<&str>) -> Result<Vec<String>, LedgerError> {
        if let Some(target) = only {
            return Ok(vec![target.to_string()]);
        }
        let sql = "SELECT DISTINCT target FROM entries ORDER BY target";
        match self {
            Source::Sqlite { conn, path } => {
                let err = |e| LedgerError::sqlite(path, e);
                let mut statement = conn.prepare(sql).map_err(err)?;
                let rows = statement.query_map([], |r| r.get(0)).map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            }
            Source::Postgres { client, shown } => Ok(client
                .query(sql, &[])
                .map_err(|e| pg::pg_error(shown, &e))?
                .into_iter()
                .map(|r| r.get(0))
                .collect()),
        }
    }

    /// People `roster sync` keeps records for in `target` (none where no sync ran).
    fn sync_people(&mut self, target: &str) -> Result<i64, LedgerError> {
        match self {
            Source::Sqlite { conn, path } => {
                let err = |e| LedgerError::sqlite(path, e);
                let exists: bool = conn
                    .query_row(
                        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'sync_people'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if !exists {
                    return Ok(0);
                }
                conn.query_row(
                    "SELECT count(*) FROM sync_people WHERE target = ?1",
                    [target],
                    |r| r.get(0),
                )
                .map_err(err)
            }
            Source::Postgres { client, shown } => {
                let err = |e: postgres::Error| pg::pg_error(shown, &e);
                let exists: bool = client
                    .query_one("SELECT to_regclass('sync_people') IS NOT NULL", &[])
                    .map_err(err)?
                    .get(0);
                if !exists {
                    return Ok(0);
                }
                Ok(client
                    .query_one(
                        "SELECT count(*) FROM sync_people WHERE target = $1",
                        &[&target],
                    )
                    .map_err(err)?
                    .get(0))
            }
        }
    }

    fn runs(&mut self) -> Result<Vec<RunRow>, LedgerError> {
        match self {
            Source::Sqlite { conn, path } => {
                let err = |e| LedgerError::sqlite(path, e);
                let mut statement = conn
                    .prepare(
                        "SELECT id, target, source_file, pid, started_ms, finished_ms, summary
                         FROM runs ORDER BY id",
                    )
                    .map_err(err)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok(RunRow {
                            id: r.get(0)?,
                            target: r.get(1)?,
                            source_file: r.get(2)?,
                            host: String::new(),
                            pid: r.get(3)?,
                            started_ms: r.get(4)?,
                            finished_ms: r.get(5)?,
                            summary: r.get(6)?,
                        })
                    })
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            }
            Source::Postgres { client, shown } => Ok(client
                .query(
                    "SELECT id, target, source_file, host, pid, started_ms, finished_ms, summary
                     FROM runs ORDER BY id",
                    &[],
                )
                .map_err(|e| pg::pg_error(shown, &e))?
                .into_iter()
                .map(|r| RunRow {
                    id: r.get(0),
                    target: r.get(1),
                    source_file: r.get(2),
                    host: r.get(3),
                    pid: r.get(4),
                    started_ms: r.get(5),
                    finished_ms: r.get(6),
                    summary: r.get(7),
                })
                .collect()),
        }
    }

    fn outputs(&mut self) -> Result<Vec<OutputRow>, LedgerError> {
        let sql = "SELECT path, length, hash, written_ms FROM outputs ORDER BY path";
        match self {
            Source::Sqlite { conn, path } => {
                let err = |e| LedgerError::sqlite(path, e);
                let mut statement = conn.prepare(sql).map_err(err)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok(OutputRow {
                            path: r.get(0)?,
                            length: r.get(1)?,
                            hash: r.get(2)?,
                            written_ms: r.get(3)?,
                        })
                    })
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            }
            Source::Postgres { client, shown } => Ok(client
                .query(sql, &[])
                .map_err(|e| pg::pg_error(shown, &e))?
                .into_iter()
                .map(|r| OutputRow {
                    path: r.get(0),
                    length: r.get(1),
                    hash: r.get(2),
                    written_ms: r.get(3),
                })
                .collect()),
        }
    }

    /// Streams the entries (of `only`, or all) to `each`, a chunk at a time.
    fn entries(
        &mut self,
        only: Option<&str>,
        each: &mut dyn FnMut(Vec<EntryRow>) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let filter = match only {
            Some(_) => "WHERE target = $1",
            None => "",
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        match self {
            Source::Sqlite { conn, path } => {
                let err = |e| LedgerError::sqlite(path, e);
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} FROM entries {} ORDER BY target, identity",
                    filter.replace('$', "?")
                );
                let mut statement = conn.prepare(&sql).map_err(err)?;
                let mut rows = match only {
                    Some(target) => statement.query([target]),
                    None => statement.query([]),
                }
                .map_err(err)?;
                while let Some(r) = rows.next().map_err(err)? {
                    let row = (|| -> rusqlite::Result<EntryRow> {
                        Ok(EntryRow {
                            target: r.get(0)?,
                            identity: r.get(1)?,
                            state: r.get(2)?,
                            remote_id: r.get(3)?,
                            http_status: r.get(4)?,
                            attempts: r.get(5)?,
                            content_hash: r.get(6)?,
                            first_attempt_ms: r.get(7)?,
                            last_attempt_ms: r.get(8)?,
                            updated_ms: r.get(9)?,
                            source_file: r.get(10)?,
                            source_row: r.get(11)?,
                            run_id: r.get(12)?,
                            errors: r.get(13)?,
                            response_body: r.get(14)?,
                            uncertain: r.get(15)?,
                            unconfirmed: r.get(16)?,
                            password_owed: r.get(17)?,
                        })
                    })()
                    .map_err(err)?;
                    chunk.push(row);
                    if chunk.len() == CHUNK {
                        each(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
                    }
                }
            }
            Source::Postgres { client, shown } => {
                let err = |e: postgres::Error| pg::pg_error(shown, &e);
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} FROM entries {filter} ORDER BY target, identity"
                );
                let mut rows = match only {
                    Some(target) => client.query_raw(&sql, [target]),
                    None => client.query_raw(&sql, std::iter::empty::<&str>()),
                }
                .map_err(err)?;
                while let Some(r) = rows.next().map_err(err)? {
                    chunk.push(EntryRow {
                        target: r.get(0),
                        identity: r.get(1),
                        state: r.get(2),
                        remote_id: r.get(3),
                        http_status: r.get::<_, Option<i32>>(4).map(i64::from),
                        attempts: i64::from(r.get::<_, i32>(5)),
                        content_hash: r.get(6),
                        first_attempt_ms: r.get(7),
                        last_attempt_ms: r.get(8),
                        updated_ms: r.get(9),
                        source_file: r.get(10),
                        source_row: r.get(11),
                        run_id: r.get(12),
                        errors: r.get(13),
                        response_body: r.get(14),
                        uncertain: r.get(15),
                        unconfirmed: r.get(16),
                        password_owed: r.get(17),
                    });
                    if chunk.len() == CHUNK {
                        each(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))?;
                    }
                }
            }
        }
        if !chunk.is_empty() {
            each(chunk)?;
        }
        Ok(())
    }
}

enum Sink {
    Sqlite {
        conn: Connection,
        path: std::path::PathBuf,
        _lock: lock::LedgerLock,
    },
    Postgres {
        client: Box<postgres::Client>,
        shown: String,
    },
}

impl Sink {
    /// Opens the destination, locks it and checks it holds none of `targets`' people, then
    /// starts the transaction everything is written in.
    fn open(location: &LedgerLocation, targets: &[String]) -> Result<Sink, LedgerError> {
        let occupied = |target: &str, people: i64| LedgerError::Occupied {
            ledger: location.shown(),
            target: target.to_string(),
            people,
        };
        match location {
            LedgerLocation::Sqlite(path) => {
                let held = lock::LedgerLock::acquire(path)?;
                let err = |e| LedgerError::sqlite(path, e);
                let conn = Connection::open(path).map_err(err)?;
                super::sqlite::migrate(&conn, path)?;
                super::unfolded::fold(&conn).map_err(err)?;
                for target in targets {
                    let people: i64 = conn
                        .query_row(
                            "SELECT count(*) FROM entries WHERE target = ?1",
                            [target],
                            |r| r.get(0),
                        )
                        .map_err(err)?;
                    if people > 0 {
                        return Err(occupied(target, people));
                    }
                }
                conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
                Ok(Sink::Sqlite {
                    conn,
                    path: path.clone(),
                    _lock: held,
                })
            }
            LedgerLocation::Postgres(location) => {
                let shown = location.shown().to_string();
                let err = |e: postgres::Error| pg::pg_error(&shown, &e);
                let mut client = pg::connect(location)?;
                client.batch_execute("BEGIN").map_err(err)?;
                for target in targets {
                    // The run lock of each target, for the transaction: no run sends for it
                    // while its people arrive.
                    let free: bool = client
                        .query_one(
                            "SELECT pg_try_advisory_xact_lock($1, $2)",
                            &[&pg::LOCK_CLASS, &pg::lock_key(target)],
                        )
                        .map_err(err)?
                        .get(0);
                    if !free {
                        return Err(LedgerError::Held {
                            path: format!("{shown} (target {target})").into(),
                            holder: "another roster run".into(),
                        });
                    }
                    let people: i64 = client
                        .query_one("SELECT count(*) FROM entries WHERE target = $1", &[target])
                        .map_err(err)?
                        .get(0);
                    if people > 0 {
                        return Err(occupied(target, people));
                    }
                }
                Ok(Sink::Postgres {
                    client: Box::new(client),
                    shown,
                })
            }
        }
    }

    /// The destination's last run id: copied runs are numbered after it.
    fn run_offset(&mut self) -> Result<i64, LedgerError> {
        let sql = "SELECT COALESCE(max(id), 0) FROM runs";
        match self {
            Sink::Sqlite { conn, path, .. } => conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| LedgerError::sqlite(path, e)),
            Sink::Postgres { client, shown } => Ok(client
                .query_one(sql, &[])
                .map_err(|e| pg::pg_error(shown, &e))?
                .get::<_, i64>(0)),
        }
    }

    fn write_runs(&mut self, runs: &[RunRow], offset: i64) -> Result<(), LedgerError> {
        match self {
            Sink::Sqlite { conn, path, .. } => {
                let err = |e| LedgerError::sqlite(path, e);
                let mut insert = conn
                    .prepare(
                        "INSERT INTO runs (id, target, source_file, pid, started_ms, finished_ms,
                                           summary)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(err)?;
                for run in runs {
                    insert
                        .execute(params![
                            run.id + offset,
                            run.target,
                            run.source_file,
                            run.pid,
                            run.started_ms,
                            run.finished_ms,
                            run.summary
                        ])
                        .map_err(err)?;
                }
                Ok(())
            }
            Sink::Postgres { client, shown } => {
                let err = |e: postgres::Error| pg::pg_error(shown, &e);
                let insert = client
                    .prepare(
                        "INSERT INTO runs (id, target, source_file, host, pid, started_ms,
                                           finished_ms, summary)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .map_err(err)?;
                for run in runs {
                    client
                        .execute(
                            &insert,
                            &[
                                &(run.id + offset),
                                &run.target,
                                &run.source_file,
                                &run.host,
                                &run.pid,
                                &run.started_ms,
                                &run.finished_ms,
                                &run.summary,
                            ],
                        )
                        .map_err(err)?;
                }
                // The next run's id follows the copied ones.
                client
                    .execute(
                        "SELECT setval(pg_get_serial_sequence('runs', 'id'),
                                       GREATEST((SELECT max(id) FROM runs), 1))",
                        &[],
                    )
                    .map_err(err)?;
                Ok(())
            }
        }
    }

    fn write_entries(&mut self, chunk: Vec<EntryRow>, offset: i64) -> Result<(), LedgerError> {
        match self {
            Sink::Sqlite { conn, path, .. } => {
                let err = |e| LedgerError::sqlite(path, e);
                let mut insert = conn
                    .prepare_cached(&format!(
                        "INSERT INTO entries ({ENTRY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                            ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                    ))
                    .map_err(err)?;
                for e in chunk {
                    insert
                        .execute(params![
                            e.target,
                            e.identity,
                            e.state,
                            e.remote_id,
                            e.http_status,
                            e.attempts,
                            e.content_hash,
                            e.first_attempt_ms,
                            e.last_attempt_ms,
                            e.updated_ms,
                            e.source_file,
                            e.source_row,
                            e.run_id.map(|id| id + offset),
                            e.errors,
                            e.response_body,
                            e.uncertain,
                            e.unconfirmed,
                            e.password_owed,
                        ])
                        .map_err(err)?;
                }
                Ok(())
            }
            Sink::Postgres { client, shown } => {
                let text = |v: &str| v.replace('\0', "\u{FFFD}");
                let opt = |v: &Option<String>| v.as_deref().map(text);
                macro_rules! column {
                    ($f:expr) => {
                        chunk.iter().map($f).collect::<Vec<_>>()
                    };
                }
                let targets = column!(|e| text(&e.target));
                let identities = column!(|e| text(&e.identity));
                let states = column!(|e| e.state.clone());
                let remote_ids = column!(|e| opt(&e.remote_id));
                let statuses = column!(|e| e.http_status.map(|s| s as i32));
                let attempts = column!(|e| e.attempts as i32);
                let hashes = column!(|e| e.content_hash);
                let firsts = column!(|e| e.first_attempt_ms);
                let lasts = column!(|e| e.last_attempt_ms);
                let updated = column!(|e| e.updated_ms);
                let files = column!(|e| opt(&e.source_file));
                let rows = column!(|e| e.source_row);
                let runs = column!(|e| e.run_id.map(|id| id + offset));
                let errors = column!(|e| opt(&e.errors));
                let bodies = column!(|e| opt(&e.response_body));
                let uncertain = column!(|e| e.uncertain);
                let unconfirmed = column!(|e| e.unconfirmed);
                let owed = column!(|e| e.password_owed);
                client
                    .execute(
                        &format!(
                            "INSERT INTO entries ({ENTRY_COLUMNS})
                             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[],
                                $4::text[], $5::int4[], $6::int4[], $7::int8[], $8::int8[],
                                $9::int8[], $10::int8[], $11::text[], $12::int8[], $13::int8[],
                                $14::text[], $15::text[], $16::bool[], $17::bool[], $18::bool[])"
                        ),
                        &[
                            &targets,
                            &identities,
                            &states,
                            &remote_ids,
                            &statuses,
                            &attempts,
                            &hashes,
                            &firsts,
                            &lasts,
                            &updated,
                            &files,
                            &rows,
                            &runs,
                            &errors,
                            &bodies,
                            &uncertain,
                            &unconfirmed,
                            &owed,
                        ],
                    )
                    .map_err(|e| pg::pg_error(shown, &e))?;
                Ok(())
            }
        }
    }

    fn write_outputs(&mut self, outputs: &[OutputRow]) -> Result<(), LedgerError> {
        for output in outputs {
            match self {
                Sink::Sqlite { conn, path, .. } => {
                    conn.execute(
                        "INSERT INTO outputs (path, length, hash, written_ms)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (path) DO UPDATE SET length = excluded.length,
                            hash = excluded.hash, written_ms = excluded.written_ms",
                        params![output.path, output.length, output.hash, output.written_ms],
                    )
                    .map_err(|e| LedgerError::sqlite(path, e))?;
                }
                Sink::Postgres { client, shown } => {
                    client
                        .execute(
                            "INSERT INTO outputs (path, length, hash, written_ms)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (path) DO UPDATE SET length = excluded.length,
                                hash = excluded.hash, written_ms = excluded.written_ms",
                            &[
                                &output.path,
                                &output.length,
                                &output.hash,
                                &output.written_ms,
                            ],
                        )
                        .map_err(|e| pg::pg_error(shown, &e))?;
                }
            }
        }
        Ok(())
    }

    fn commit(self) -> Result<(), LedgerError> {
        match self {
            Sink::Sqlite { conn, path, .. } => conn
                .execute_batch("COMMIT")
                .map_err(|e| LedgerError::sqlite(&path, e)),
            Sink::Postgres {
                mut client, shown, ..
            } => client
                .batch_execute("COMMIT")
                .map_err(|e| pg::pg_error(&shown, &e)),
        }
    }
}
