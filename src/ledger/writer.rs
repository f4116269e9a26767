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

/// Most results folded into one transaction: a claim that arrives meanwhile waits for it to
/// commit, so this bounds how long senders can be kept waiting for work (~3 ms here).
const MAX_RESULTS: usize = 512;
/// Most commands taken off the channel at once.
const MAX_WAITING: usize = 4096;
/// Below this many waiting results, the writer waits [`GROUP_COMMIT_WAIT`] for more.
const GROUP_COMMIT_ROWS: usize = 256;
/// How long results may wait to share a commit (a crash loses none: they are only reported
/// as done after the commit, and unrecorded rows are resent as uncertain).
const GROUP_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Commands waiting for the writer: new rows (claims and local refusals, kept in their order)
/// and results of submissions.
#[derive(Default)]
struct Waiting {
    rows: Vec<Command>,
    results: std::collections::VecDeque<Submission>,
}

impl Waiting {
    fn push(&mut self, command: Command) {
        match command {
            Command::Done(done) => self.results.push_back(*done),
            other => self.rows.push(other),
        }
    }

    fn len(&self) -> usize {
        self.rows.len() + self.results.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes whatever else is waiting, up to [`MAX_WAITING`].
    fn drain(&mut self, rx: &mpsc::Receiver<Command>) {
        while self.len() < MAX_WAITING {
            match rx.try_recv() {
                Ok(command) => self.push(command),
                Err(_) => break,
            }
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
    let mut waiting = Waiting::default();
    loop {
        if waiting.is_empty() {
            match rx.recv() {
                Ok(command) => waiting.push(command),
                Err(_) => break,
            }
        }
        waiting.drain(&rx);
        // Group commit: results arrive one by one from many workers, and a commit per handful
        // would cost more than the rows. When only results are waiting (no claim, whose sender
        // waits for the answer), give them a moment to gather.
        if waiting.rows.is_empty() && waiting.results.len() < GROUP_COMMIT_ROWS {
            std::thread::sleep(GROUP_COMMIT_WAIT);
            waiting.drain(&rx);
        }
        let mut reports = Vec::new();
        // New rows first, in a transaction of their own: the senders run dry while a claim
        // waits behind hundreds of results.
        if !waiting.rows.is_empty() {
            let mut replies = Vec::new();
            let rows = std::mem::take(&mut waiting.rows);
            ledger.transaction(|l| {
                for command in rows {
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
                        Command::Done(_) => unreachable!("results are queued apart"),
                    }
                }
                Ok(())
            })?;
            for (reply, answer) in replies {
                let _ = reply.send(answer);
            }
        }
        if !waiting.results.is_empty() {
            let take = waiting.results.len().min(MAX_RESULTS);
            let results = waiting.results.drain(..take);
            ledger.transaction(|l| l.record_submissions(results, &mut reports))?;
        }
        if !reports.is_empty() {
            let _ = reports_tx.send(reports);
        }
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::tests::{submission, user};
    use crate::outcome::Outcome;

    #[test]
    fn a_backlog_of_results_larger_than_a_transaction_is_all_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let ledger = SqliteLedger::open(&path, "t", "f.csv").unwrap();
        let (reports_tx, reports_rx) = mpsc::channel();
        let writer = LedgerWriter::spawn(ledger, reports_tx);
        let sender = writer.sender();
        let n = 3 * MAX_RESULTS + 7;
        let users = (0..n as u64)
            .map(|i| user(i + 2, &format!("p{i}@example.com"), i))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (claimed, rest) = runtime.block_on(sender.claim(users, usize::MAX)).unwrap();
        assert_eq!((claimed.len(), rest.len()), (n, 0));
        // All results at once, then the senders go: the writer works through them in
        // transactions of at most MAX_RESULTS and loses none when the channel closes.
        for u in claimed {
            sender.done(submission(u, Outcome::Created)).unwrap();
        }
        drop(sender);
        writer.finish().unwrap();
        let reported: usize = reports_rx.iter().map(|batch| batch.len()).sum();
        assert_eq!(reported, n, "every result reported once");
        let entries = crate::ledger::entries(&path, "t").unwrap();
        assert_eq!(entries.len(), n);
        assert!(entries.iter().all(|e| e.state == "created"), "all recorded");
    }
}
