//! A sync's records in a PostgreSQL ledger (`--ledger postgres://…`): the same three tables
//! as in SQLite ([`super::state`]), in the ledger's schema, and the target's advisory lock
//! held by this session from the plan to the last change.

use super::state::{Baseline, ChangeEnd, Known, SyncStore};
use crate::ledger::postgres::{LOCK_CLASS, PgLocation, connect, lock_key, off_runtime, pg_error};
use crate::ledger::{LedgerError, now_ms};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sync_people (
    target       TEXT    NOT NULL,
    identity     TEXT    NOT NULL,
    sent         TEXT,
    status       TEXT    NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'deactivated', 'deleted')),
    absent_runs  INTEGER NOT NULL DEFAULT 0 CHECK (absent_runs >= 0),
    last_seen_ms BIGINT,
    updated_ms   BIGINT  NOT NULL,
    PRIMARY KEY (target, identity)
);
CREATE TABLE IF NOT EXISTS sync_changes (
    id          BIGSERIAL PRIMARY KEY,
    target      TEXT    NOT NULL,
    identity    TEXT    NOT NULL,
    sync_run    BIGINT  NOT NULL,
    action      TEXT    NOT NULL CHECK (action IN ('update', 'deactivate', 'reactivate', 'delete')),
    detail      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('claimed', 'done', 'gone', 'refused', 'failed')),
    http_status INTEGER,
    message     TEXT,
    claimed_ms  BIGINT  NOT NULL,
    done_ms     BIGINT
);
CREATE TABLE IF NOT EXISTS sync_runs (
    id          BIGSERIAL PRIMARY KEY,
    target      TEXT    NOT NULL,
    source_file TEXT    NOT NULL,
    rows        BIGINT  NOT NULL,
    headers     TEXT    NOT NULL,
    started_ms  BIGINT  NOT NULL,
    finished_ms BIGINT,
    held        TEXT
);
";

/// The sync tables of a PostgreSQL ledger, for one target.
pub struct PgSyncState {
    /// `None` once dropped: the blocking client closes its connection through a runtime of
    /// its own, which it may not start on the import's runtime thread.
    client: Mutex<Option<postgres::Client>>,
    shown: String,
    target: String,
}

impl PgSyncState {
    /// Connects, creates the sync tables if needed and, when `lock`, takes the target's
    /// lock (the one an import holds), or says it is held.
    pub fn open(
        location: &PgLocation,
        target: &str,
        lock: bool,
    ) -> Result<PgSyncState, LedgerError> {
        let shown = location.shown().to_string();
        let client = off_runtime(|| -> Result<postgres::Client, LedgerError> {
            let mut client = connect(location)?;
            let err = |e: postgres::Error| pg_error(&shown, &e);
            client.batch_execute(SCHEMA).map_err(err)?;
            if lock {
                let locked: bool = client
                    .query_one(
                        "SELECT pg_try_advisory_lock($1, $2)",
                        &[&LOCK_CLASS, &lock_key(target)],
                    )
                    .map_err(err)?
                    .get(0);
                if !locked {
                    return Err(LedgerError::Held {
                        path: PathBuf::from(format!("{shown} (target {target})")),
                        holder: "another run".into(),
                    });
                }
            }
            Ok(client)
        })?;
        Ok(PgSyncState {
            client: Mutex::new(Some(client)),
            shown,
            target: target.to_string(),
        })
    }

    /// Runs `work` with the client, off the async runtime (the blocking client may not run
    /// on a thread that drives one).
    fn with<T: Send>(
        &self,
        work: impl FnOnce(&mut postgres::Client, &str) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, LedgerError> {
        off_runtime(|| {
            let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
            let client = guard.as_mut().ok_or_else(|| LedgerError::WriterStopped {
                path: PathBuf::from(&self.shown),
            })?;
            work(client, &self.target).map_err(|e| pg_error(&self.shown, &e))
        })
    }
}

impl Drop for PgSyncState {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Closing the connection releases the target's lock.
        off_runtime(move || drop(client));
    }
}

impl SyncStore for PgSyncState {
    fn known(&self) -> Result<Vec<Known>, LedgerError> {
        self.with(|c, target| {
            let rows = c.query(
                "SELECT e.identity, e.state, e.remote_id, s.sent, COALESCE(s.status, 'active'),
                        COALESCE(s.absent_runs, 0), s.last_seen_ms
                 FROM entries e LEFT JOIN sync_people s
                   ON s.target = e.target AND s.identity = e.identity
                 WHERE e.target = $1 AND e.state IN ('created', 'exists')
                 ORDER BY e.identity",
                &[&target],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let sent: Option<String> = r.get(3);
                    Known {
                        identity: r.get(0),
                        state: r.get(1),
                        remote_id: r.get(2),
                        sent: sent.and_then(|s| serde_json::from_str(&s).ok()),
                        status: r.get(4),
                        absent_runs: r.get::<_, i32>(5) as u32,
                        last_seen_ms: r.get(6),
                    }
                })
                .collect())
        })
    }

    fn baseline(&self) -> Result<Option<Baseline>, LedgerError> {
        self.with(|c, target| {
            let row = c.query_opt(
                "SELECT rows, headers FROM sync_runs
                 WHERE target = $1 AND finished_ms IS NOT NULL AND held IS NULL
                 ORDER BY id DESC LIMIT 1",
                &[&target],
            )?;
            Ok(row.map(|r| Baseline {
                rows: r.get::<_, i64>(0) as u64,
                headers: serde_json::from_str(r.get::<_, &str>(1)).unwrap_or_default(),
            }))
        })
    }

    fn start_run(&self, source: &str, rows: u64, headers: &[String]) -> Result<i64, LedgerError> {
        let headers = serde_json::to_string(headers).unwrap_or_default();
        self.with(|c, target| {
            Ok(c.query_one(
                "INSERT INTO sync_runs (target, source_file, rows, headers, started_ms)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&target, &source, &(rows as i64), &headers, &now_ms()],
            )?
            .get(0))
        })
    }

    fn finish_run(&self, run: i64, held: Option<&str>) -> Result<(), LedgerError> {
        self.with(|c, _| {
            c.execute(
                "UPDATE sync_runs SET finished_ms = $2, held = $3 WHERE id = $1",
                &[&run, &now_ms(), &held],
            )?;
            Ok(())
        })
    }

    fn record_sent(
        &self,
        identity: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), LedgerError> {
        let sent = serde_json::to_string(values).unwrap_or_default();
        self.with(|c, target| {
            c.execute(
                "INSERT INTO sync_people (target, identity, sent, status, absent_runs, last_seen_ms, updated_ms)
                 VALUES ($1, $2, $3, 'active', 0, $4, $4)
                 ON CONFLICT (target, identity) DO UPDATE SET sent = $3, status = 'active',
                     absent_runs = 0, last_seen_ms = $4, updated_ms = $4",
                &[&target, &identity, &sent, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn set_status(&self, identity: &str, status: &str) -> Result<(), LedgerError> {
        self.with(|c, target| {
            c.execute(
                "INSERT INTO sync_people (target, identity, status, updated_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (target, identity) DO UPDATE SET status = $3, updated_ms = $4",
                &[&target, &identity, &status, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn count_absences(
        &self,
        present: &HashSet<String>,
        known: &[Known],
    ) -> Result<(), LedgerError> {
        let (seen, missed): (Vec<&Known>, Vec<&Known>) =
            known.iter().partition(|k| present.contains(&k.identity));
        let seen: Vec<&str> = seen.iter().map(|k| k.identity.as_str()).collect();
        let missed: Vec<&str> = missed.iter().map(|k| k.identity.as_str()).collect();
        self.with(|c, target| {
            let now = now_ms();
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO sync_people (target, identity, absent_runs, last_seen_ms, updated_ms)
                 SELECT $1, i, 0, $3, $3 FROM unnest($2::text[]) AS i
                 ON CONFLICT (target, identity) DO UPDATE SET absent_runs = 0, last_seen_ms = $3",
                &[&target, &seen, &now],
            )?;
            tx.execute(
                "INSERT INTO sync_people (target, identity, absent_runs, updated_ms)
                 SELECT $1, i, 1, $3 FROM unnest($2::text[]) AS i
                 ON CONFLICT (target, identity) DO UPDATE
                     SET absent_runs = sync_people.absent_runs + 1",
                &[&target, &missed, &now],
            )?;
            tx.commit()
        })
    }

    fn claim(
        &self,
        run: i64,
        identity: &str,
        action: &str,
        detail: &str,
    ) -> Result<i64, LedgerError> {
        self.with(|c, target| {
            Ok(c.query_one(
                "INSERT INTO sync_changes (target, identity, sync_run, action, detail, state, claimed_ms)
                 VALUES ($1, $2, $3, $4, $5, 'claimed', $6) RETURNING id",
                &[&target, &identity, &run, &action, &detail, &now_ms()],
            )?
            .get(0))
        })
    }

    fn settle(
        &self,
        change: i64,
        end: ChangeEnd,
        status: Option<u16>,
        message: Option<&str>,
    ) -> Result<(), LedgerError> {
        let status = status.map(i32::from);
        self.with(|c, _| {
            c.execute(
                "UPDATE sync_changes SET state = $2, http_status = $3, message = $4, done_ms = $5
                 WHERE id = $1",
                &[&change, &end.word(), &status, &message, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn close_unsettled(&self) -> Result<(), LedgerError> {
        self.with(|c, target| {
            c.execute(
                "UPDATE sync_changes SET state = 'failed',
                     message = 'the run that claimed it ended before its answer', done_ms = $2
                 WHERE target = $1 AND state = 'claimed'",
                &[&target, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn release_for_create(&self, identity: &str) -> Result<(), LedgerError> {
        self.with(|c, target| {
            let mut tx = c.transaction()?;
            tx.execute(
                "UPDATE entries SET state = 'unsent', remote_id = NULL WHERE target = $1 AND identity = $2",
                &[&target, &identity],
            )?;
            tx.execute(
                "DELETE FROM sync_people WHERE target = $1 AND identity = $2",
                &[&target, &identity],
            )?;
            tx.commit()
        })
    }
}
