//! The ledger's single writer: one thread owns the connection, drains whatever commands are
//! waiting into one transaction, and only after the commit answers claims and passes the
//! recorded outcomes on to the reports.
//!
//! What waits for it is bounded in rows (a semaphore of [`ROW_BUDGET`] permits that senders
//! take before sending and the writer gives back once the rows are reported), and so is the
//! report channel, so a slow disk (or a file of refused rows) pushes back on the stages before
//! it instead of piling rows up in memory, while results from many workers still gather into
//! large commits. The writer is also the only sender of reports, so every row's report
//! follows its commit, in order.

use super::LedgerError;
use super::{Ledger, RowWork};
use crate::model::{Person, Refused, RowReport, Stop, StopReason, Submission};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most results folded into one transaction: a claim that arrives meanwhile waits for it to
/// commit, so this bounds how long senders can be kept waiting for work (~3 ms here).
const MAX_RESULTS: usize = 512;
/// Most rows taken off the channel at once (a command holds one result or a chunk of rows).
const MAX_WAITING_ROWS: usize = 4096;
/// Below this many waiting results, the writer waits [`GROUP_COMMIT_WAIT`] for more.
const GROUP_COMMIT_ROWS: usize = 256;
/// How long results may wait to share a commit (a crash loses none: they are only reported
/// as done after the commit, and unrecorded rows are resent as uncertain).
const GROUP_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// How often the writer looks for a claim while results gather.
const GROUP_COMMIT_POLL: std::time::Duration = std::time::Duration::from_micros(100);
/// Rows the commands waiting for the writer may hold before senders wait.
pub const ROW_BUDGET: usize = 16_384;
/// Report batches (each at most about [`MAX_WAITING_ROWS`] rows) waiting for the aggregator
/// before the writer waits.
pub const REPORT_CAPACITY: usize = 4;

/// Commands waiting for the writer: new rows (claims and local refusals, kept in their order)
/// and results of submissions.
#[derive(Default)]
struct Waiting {
    rows: Vec<Command>,
    results: std::collections::VecDeque<Submission>,
    /// Rows held by `rows` and `results`.
    held: usize,
}

impl Waiting {
    fn push(&mut self, command: Command) {
        self.held += command.rows();
        match command {
            Command::Done(done) => self.results.push_back(*done),
            other => self.rows.push(other),
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.results.is_empty()
    }

    /// Takes whatever else is waiting, up to about [`MAX_WAITING_ROWS`] rows.
    fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) {
        while self.held < MAX_WAITING_ROWS {
            match rx.try_recv() {
                Ok(command) => self.push(command),
                Err(_) => break,
            }
        }
    }
}

enum Command {
    Claim {
        users: Vec<Person>,
        limit: usize,
        reply: oneshot::Sender<(Vec<Person>, Vec<Person>)>,
    },
    Invalid(Vec<Refused>),
    Done(Box<Submission>),
    /// Reports with nothing to record (a dry run's would-be sends), passed on in order.
    Report(Vec<RowReport>),
}

impl Command {
    /// Permits the command takes from the budget (at least one, at most all).
    fn permits(&self) -> u32 {
        self.rows().clamp(1, ROW_BUDGET) as u32
    }

    /// Rows the command carries.
    fn rows(&self) -> usize {
        match self {
            Command::Claim { users, .. } => users.len(),
            Command::Invalid(rows) => rows.len(),
            Command::Done(_) => 1,
            Command::Report(reports) => reports.len(),
        }
    }
}

/// A handle for sending work to the ledger thread; cheap to clone.
#[derive(Clone)]
pub struct LedgerSender {
    tx: mpsc::UnboundedSender<Command>,
    budget: Arc<Semaphore>,
}

impl LedgerSender {
    /// Waits for room in the budget, then sends `command`.
    async fn send(&self, command: Command) -> Result<(), LedgerGone> {
        let permits = self
            .budget
            .acquire_many(command.permits())
            .await
            .map_err(|_| LedgerGone)?;
        // Given back by the writer once the rows are reported.
        permits.forget();
        self.tx.send(command).map_err(|_| LedgerGone)
    }

    /// Claims up to `limit` of `users`, returning them once the claims are committed, and
    /// the users not reached.
    pub async fn claim(
        &self,
        users: Vec<Person>,
        limit: usize,
    ) -> Result<(Vec<Person>, Vec<Person>), LedgerGone> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Claim {
            users,
            limit,
            reply,
        })
        .await?;
        answer.await.map_err(|_| LedgerGone)
    }

    /// Records rows refused locally.
    pub async fn invalid(&self, rows: Vec<Refused>) -> Result<(), LedgerGone> {
        self.send(Command::Invalid(rows)).await
    }

    /// Records a finished submission.
    pub async fn done(&self, submission: Submission) -> Result<(), LedgerGone> {
        self.send(Command::Done(Box::new(submission))).await
    }

    /// Passes reports on to the aggregator behind everything sent before them.
    pub async fn report(&self, reports: Vec<RowReport>) -> Result<(), LedgerGone> {
        self.send(Command::Report(reports)).await
    }
}

/// The ledger thread stopped (its error is returned by [`LedgerWriter::finish`]).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the ledger writer stopped")]
pub struct LedgerGone;

/// The running ledger thread.
pub struct LedgerWriter {
    sender: LedgerSender,
    thread: JoinHandle<Result<Box<dyn Ledger>, LedgerError>>,
}

impl LedgerWriter {
    /// Starts the writer thread; recorded outcomes go to `reports` after each commit. A write
    /// that fails stops the run (`stop`) at once, so nothing more is sent that could not be
    /// recorded.
    pub fn spawn(
        ledger: Box<dyn Ledger>,
        reports: std_mpsc::SyncSender<Vec<RowReport>>,
        stop: Arc<Stop>,
    ) -> Result<LedgerWriter, LedgerError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(ROW_BUDGET));
        let writer_budget = budget.clone();
        let thread = std::thread::Builder::new()
            .name("roster-ledger".into())
            .spawn(move || {
                let result = run(ledger, rx, reports, &writer_budget);
                // Nobody gives permits back any more: senders waiting for some are told so.
                writer_budget.close();
                if let Err(e) = &result {
                    stop.stop(StopReason::RetryLater(format!(
                        "{e}; every answer recorded before it is kept, and a re-run resumes"
                    )));
                }
                result
            })
            .map_err(LedgerError::WriterStart)?;
        Ok(LedgerWriter {
            sender: LedgerSender { tx, budget },
            thread,
        })
    }

    /// A sender for the pipeline's stages.
    pub fn sender(&self) -> LedgerSender {
        self.sender.clone()
    }

    /// Waits for every sender to be dropped and all work to be committed.
    pub fn finish(self) -> Result<Box<dyn Ledger>, LedgerError> {
        drop(self.sender);
        self.thread
            .join()
            .unwrap_or(Err(LedgerError::WriterPanicked))
    }
}

fn run(
    mut ledger: Box<dyn Ledger>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    reports_tx: std_mpsc::SyncSender<Vec<RowReport>>,
    budget: &Semaphore,
) -> Result<Box<dyn Ledger>, LedgerError> {
    let mut waiting = Waiting::default();
    loop {
        if waiting.is_empty() {
            match rx.blocking_recv() {
                Some(command) => waiting.push(command),
                None => break,
            }
        }
        waiting.drain(&mut rx);
        // Group commit: results arrive one by one from many workers, and a commit per handful
        // would cost more than the rows. When only results are waiting (no claim, whose sender
        // waits for the answer), give them a moment to gather, but no longer than it takes a
        // claim to arrive: one slept through idled the senders it would feed.
        let gathering = std::time::Instant::now();
        while waiting.rows.is_empty()
            && waiting.results.len() < GROUP_COMMIT_ROWS
            && gathering.elapsed() < GROUP_COMMIT_WAIT
        {
            std::thread::sleep(GROUP_COMMIT_POLL);
            waiting.drain(&mut rx);
        }
        let mut reports = Vec::new();
        let mut permits = 0usize;
        // New rows first, in a transaction of their own: the senders run dry while a claim
        // waits behind hundreds of results.
        if !waiting.rows.is_empty() {
            let mut replies = Vec::new();
            let rows = std::mem::take(&mut waiting.rows);
            permits += rows.iter().map(|c| c.permits() as usize).sum::<usize>();
            waiting.held = waiting.results.len();
            let work: Vec<RowWork> = rows
                .into_iter()
                .map(|command| match command {
                    Command::Claim {
                        users,
                        limit,
                        reply,
                    } => {
                        replies.push(reply);
                        RowWork::Claim { users, limit }
                    }
                    Command::Invalid(rows) => RowWork::Invalid(rows),
                    Command::Report(passed) => RowWork::Report(passed),
                    Command::Done(_) => unreachable!("results are queued apart"),
                })
                .collect();
            let answers = ledger.write_rows(work, &mut reports)?;
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        if !waiting.results.is_empty() {
            let take = waiting.results.len().min(MAX_RESULTS);
            let results = waiting.results.drain(..take);
            waiting.held -= take;
            permits += take;
            ledger.write_results(results.collect(), &mut reports)?;
        }
        if !reports.is_empty() && reports_tx.send(reports).is_err() {
            // The aggregator is gone (it failed writing the error file and stopped the run):
            // nothing more can be reported, but what is recorded stays recorded.
            break;
        }
        // The rows are reported (the aggregator may still hold them in its channel): room
        // for as many more.
        budget.add_permits(permits);
    }
    Ok(ledger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::SqliteLedger;
    use crate::ledger::sqlite::tests::{submission, user};
    use crate::model::Outcome;

    #[test]
    fn a_backlog_of_results_larger_than_a_transaction_is_all_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let ledger = Box::new(SqliteLedger::open(&path, "t", "f.csv").unwrap());
        let (reports_tx, reports_rx) = std_mpsc::sync_channel(REPORT_CAPACITY);
        let writer = LedgerWriter::spawn(ledger, reports_tx, Arc::default()).unwrap();
        let sender = writer.sender();
        let n = 3 * MAX_RESULTS + 7;
        let users = (0..n as u64)
            .map(|i| user(i + 2, &format!("p{i}@example.com"), i))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let reader =
            std::thread::spawn(move || reports_rx.iter().map(|batch| batch.len()).sum::<usize>());
        runtime.block_on(async {
            let (claimed, rest) = sender.claim(users, usize::MAX).await.unwrap();
            assert_eq!((claimed.len(), rest.len()), (n, 0));
            // All results at once, then the senders go: the writer works through them in
            // transactions of at most MAX_RESULTS and loses none when the channel closes.
            for u in claimed {
                sender.done(submission(u, Outcome::Created)).await.unwrap();
            }
        });
        drop(sender);
        writer.finish().unwrap();
        assert_eq!(reader.join().unwrap(), n, "every result reported once");
        let entries = crate::ledger::entries(&path, "t").unwrap();
        assert_eq!(entries.len(), n);
        assert!(entries.iter().all(|e| e.state == "created"), "all recorded");
    }

    #[test]
    fn the_channels_are_bounded_so_a_stalled_writer_pushes_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            Box::new(SqliteLedger::open(&dir.path().join("l.sqlite"), "t", "f.csv").unwrap());
        // Nobody reads the reports: the writer blocks on them, then its commands fill up.
        let (reports_tx, _reports_rx) = std_mpsc::sync_channel(REPORT_CAPACITY);
        let writer = LedgerWriter::spawn(ledger, reports_tx, Arc::default()).unwrap();
        let sender = writer.sender();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let accepted = runtime.block_on(async {
            let mut accepted = 0;
            for i in 0..200_000u64 {
                let report = vec![RowReport::local(i, Outcome::Skipped, vec![], vec![])];
                let sent = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    sender.report(report),
                )
                .await;
                if sent.is_err() {
                    break;
                }
                accepted += 1;
            }
            accepted
        });
        let bound = ROW_BUDGET + (REPORT_CAPACITY + 2) * MAX_WAITING_ROWS;
        assert!(
            accepted <= bound,
            "accepted {accepted} reports with no reader"
        );
        drop(_reports_rx);
        drop(sender);
        writer.finish().unwrap();
    }
}
