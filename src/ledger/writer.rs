//! The ledger's single writer: one thread owns the connection, drains whatever commands are
//! waiting into one transaction, and only after the commit answers claims and passes the
//! recorded outcomes on to the reports.

use super::SqliteLedger;
use crate::error::RunError;
use crate::outcome::RowReport;
use crate::submit::Submission;
use crate::validate::{InvalidRow, ReadyUser};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most commands folded into one transaction.
const MAX_BATCH: usize = 4096;
/// Below this many waiting results, the writer waits [`GROUP_COMMIT_WAIT`] for more.
const GROUP_COMMIT_ROWS: usize = 256;
/// How long results may wait to share a commit (a crash loses none: they are only reported
/// as done after the commit, and unrecorded rows are resent as uncertain).
const GROUP_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

fn drain(rx: &mpsc::Receiver<Command>, batch: &mut Vec<Command>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(command) => batch.push(command),
            Err(_) => break,
        }
    }
}

enum Command {
    Claim {
        users: Vec<ReadyUser>,
        limit: usize,
        reply: oneshot::Sender<(Vec<ReadyUser>, Vec<ReadyUser>)>,
    },
    Invalid(Vec<InvalidRow>),
    Done(Box<Submission>),
}

/// A handle for sending work to the ledger thread; cheap to clone.
#[derive(Clone)]
pub struct LedgerSender {
    tx: mpsc::Sender<Command>,
}

impl LedgerSender {
    /// Claims up to `limit` of `users`, returning them once the claims are committed, and
    /// the users not reached.
    pub async fn claim(
        &self,
        users: Vec<ReadyUser>,
        limit: usize,
    ) -> Result<(Vec<ReadyUser>, Vec<ReadyUser>), LedgerGone> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Claim {
                users,
                limit,
                reply,
            })
            .map_err(|_| LedgerGone)?;
        answer.await.map_err(|_| LedgerGone)
    }

    /// Records rows refused locally.
    pub fn invalid(&self, rows: Vec<InvalidRow>) -> Result<(), LedgerGone> {
        self.tx.send(Command::Invalid(rows)).map_err(|_| LedgerGone)
    }

    /// Records a finished submission.
    pub fn done(&self, submission: Submission) -> Result<(), LedgerGone> {
        self.tx
            .send(Command::Done(Box::new(submission)))
            .map_err(|_| LedgerGone)
    }
}

/// The ledger thread stopped (its error is returned by [`LedgerWriter::finish`]).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the ledger writer stopped")]
pub struct LedgerGone;

/// The running ledger thread.
pub struct LedgerWriter {
    sender: LedgerSender,
    thread: JoinHandle<Result<SqliteLedger, RunError>>,
}

impl LedgerWriter {
    /// Starts the writer thread; recorded outcomes go to `reports` after each commit.
    pub fn spawn(ledger: SqliteLedger, reports: mpsc::Sender<Vec<RowReport>>) -> LedgerWriter {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("roster-ledger".into())
            .spawn(move || run(ledger, rx, reports))
            .expect("spawning the ledger thread");
        LedgerWriter {
            sender: LedgerSender { tx },
            thread,
        }
    }

    /// A sender for the pipeline's stages.
    pub fn sender(&self) -> LedgerSender {
        self.sender.clone()
    }

    /// Waits for every sender to be dropped and all work to be committed.
    pub fn finish(self) -> Result<SqliteLedger, RunError> {
        drop(self.sender);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(RunError::Startup("the ledger thread panicked".into())))
    }
}

fn run(
    mut ledger: SqliteLedger,
    rx: mpsc::Receiver<Command>,
    reports_tx: mpsc::Sender<Vec<RowReport>>,
) -> Result<SqliteLedger, RunError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        drain(&rx, &mut batch);
        // Group commit: results arrive one by one from many workers, and a commit per handful
        // would cost more than the rows. When only results are waiting (no claim, whose sender
        // waits for the answer), give them a moment to gather.
        let only_results = batch.iter().all(|c| matches!(c, Command::Done(_)));
        if only_results && batch.len() < GROUP_COMMIT_ROWS {
            std::thread::sleep(GROUP_COMMIT_WAIT);
            drain(&rx, &mut batch);
        }
        let mut reports = Vec::new();
        let mut replies = Vec::new();
        let commands = std::mem::take(&mut batch);
        ledger.transaction(|l| {
            for command in commands {
                match command {
                    Command::Claim {
                        users,
                        limit,
                        reply,
                    } => {
                        let answer = l.claim_up_to(users, limit, &mut reports)?;
                        replies.push((reply, answer));
                    }
                    Command::Invalid(rows) => l.record_invalid(rows, &mut reports)?,
                    Command::Done(done) => l.record_submission(*done, &mut reports)?,
                }
            }
            Ok(())
        })?;
        for (reply, answer) in replies {
            let _ = reply.send(answer);
        }
        if !reports.is_empty() {
            let _ = reports_tx.send(reports);
        }
    }
    Ok(ledger)
}
