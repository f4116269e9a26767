//! The aggregator: one thread owns the run's counters and every output, fed row reports by
//! the ledger thread after each commit (no shared mutable statistics).

use super::progress::{PaceNote, ReadGauge};
use super::{EarlyStop, ErrorFile, Progress, ProgressMode, ReportCollector, RowSet, Sink, Summary};
use crate::error::RunError;
use crate::model::{FirstRow, Outcome, RowReport, Stop, StopReason};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// What the aggregator hands back: the totals, the error file if written, the HTML report's
/// data if one was asked for, and the rows it got a report for.
pub type Aggregated = (
    Summary,
    Option<PathBuf>,
    Option<ReportCollector>,
    RowSet,
    Option<PathBuf>,
);

/// The files the aggregator writes: the error file, and the results file when asked for.
pub struct Files {
    /// Refused rows.
    pub errors: ErrorFile,
    /// Every row (`--results`).
    pub results: Option<ErrorFile>,
}

/// The aggregator thread: counts outcomes, writes the error file, shows progress.
pub struct Aggregator {
    thread: std::thread::JoinHandle<Result<Aggregated, RunError>>,
}

impl Aggregator {
    /// Starts the aggregator reading reports from `reports` (in batches: one hand-off per
    /// ledger commit, not one per row).
    pub fn spawn(
        reports: mpsc::Receiver<Vec<RowReport>>,
        files: Files,
        progress: (ProgressMode, Arc<ReadGauge>, String, Arc<PaceNote>),
        collector: Option<ReportCollector>,
        stop: Arc<Stop>,
        mut watch: EarlyStop,
    ) -> Aggregator {
        let thread = std::thread::Builder::new()
            .name("roster-report".into())
            .spawn(move || {
                let result = aggregate(reports, files, progress, collector, |report, summary| {
                    if let Some(message) = watch.observe(report, summary) {
                        stop.stop(StopReason::Aborted(message));
                    }
                });
                // The error file cannot be written: nothing more may be refused unseen.
                if let Err(e) = &result {
                    stop.stop(StopReason::RetryLater(e.to_string()));
                }
                result
            })
            .expect("spawning the report thread");
        Aggregator { thread }
    }

    /// Waits for every report sender to be dropped; returns the totals and the error file.
    pub fn finish(self) -> Result<Aggregated, RunError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(RunError::Internal("the report thread panicked".into())))
    }
}

fn aggregate(
    reports: mpsc::Receiver<Vec<RowReport>>,
    files: Files,
    (mode, gauge, pace, note): (ProgressMode, Arc<ReadGauge>, String, Arc<PaceNote>),
    mut collector: Option<ReportCollector>,
    mut observe: impl FnMut(&RowReport, &Summary),
) -> Result<Aggregated, RunError> {
    let Files {
        mut errors,
        mut results,
    } = files;
    let mut summary = Summary::default();
    let mut progress = Progress::start(mode, gauge, pace, note);
    let tick = Duration::from_millis(250);
    // Repeats met while their first row was still being sent, by that row: its own report
    // settles whether they are harmless (the person got created) or refused with it.
    let mut awaiting: HashMap<u64, u64> = HashMap::new();
    let mut reported = RowSet::default();
    loop {
        match reports.recv_timeout(tick) {
            Ok(batch) => {
                for report in batch {
                    summary.count(&report);
                    reported.insert(report.row);
                    observe(&report, &summary);
                    if let Outcome::Duplicate {
                        of,
                        first: FirstRow::Pending,
                    } = report.outcome
                    {
                        *awaiting.entry(of).or_insert(0) += 1;
                    }
                    // (Nearly always empty: no hashing of every row's number for nothing.)
                    if !awaiting.is_empty()
                        && let Some(repeats) = awaiting.remove(&report.row)
                        && report.outcome.is_done()
                    {
                        summary.duplicates_of_done += repeats;
                    }
                    if let Some(collector) = collector.as_mut() {
                        collector.add(&report, &summary)?;
                    }
                    errors.add(&report, &summary)?;
                    if let Some(results) = results.as_mut() {
                        results.add(&report, &summary)?;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        progress.tick(&summary);
    }
    progress.finish();
    let path = errors.finish()?;
    let results = match results {
        Some(results) => results.finish()?,
        None => None,
    };
    Ok((summary, path, collector, reported, results))
}
