//! Everything a person or a script reads after a run: the error file, progress, the summary.
//!
//! One aggregator thread owns all counters and the error file; every stage reports to it
//! through a channel (no shared mutable statistics).

use crate::error::RunError;
pub use crate::error_file::{ErrorFile, ErrorFormat, META_COLUMNS};
use crate::html_report::ReportCollector;
use crate::outcome::{Outcome, RowReport};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How progress is shown, decided once from the terminal, CI and `--quiet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on stderr.
    Bar,
    /// A log line every so often.
    Lines(Duration),
    /// Nothing until the summary.
    Quiet,
}

impl ProgressMode {
    /// The mode for this process: a bar on a terminal, periodic lines otherwise.
    pub fn detect(quiet: bool) -> ProgressMode {
        use std::io::IsTerminal;
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines(Duration::from_secs(10))
        }
    }
}

/// The run's totals; also the `--json` object.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Rows read from the input (blank records excluded).
    pub rows: u64,
    /// Created by this run.
    pub created: u64,
    /// The API said they already existed.
    pub exists: u64,
    /// Already done according to the ledger; nothing sent.
    pub skipped: u64,
    /// Refused locally.
    pub invalid: u64,
    /// Repeated identities inside the file.
    pub duplicates: u64,
    /// Refused by the API.
    pub rejected: u64,
    /// Retries exhausted, or stopped before success.
    pub failed: u64,
    /// Valid and not yet done: what a dry run would send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_send: Option<u64>,
    /// HTTP requests sent.
    pub requests: u64,
    /// Of those, attempts after the first for a row.
    pub retries: u64,
    /// Responses with status 429.
    pub throttled: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Rows per second over the whole run.
    pub rows_per_s: f64,
    /// The ledger file.
    pub ledger: String,
    /// The error file, when one was written.
    pub errors_file: Option<String>,
}

impl Summary {
    /// Rows refused or failed: any makes the exit code 1.
    pub fn refused(&self) -> u64 {
        self.invalid + self.duplicates + self.rejected + self.failed
    }

    /// Adds one row's outcome to the totals.
    pub fn count(&mut self, report: &RowReport) {
        match report.outcome {
            Outcome::Created => self.created += 1,
            Outcome::Exists => self.exists += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Invalid => self.invalid += 1,
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::Failed { .. } | Outcome::NotSent => self.failed += 1,
            Outcome::WouldSend => *self.would_send.get_or_insert(0) += 1,
        }
        self.requests += u64::from(report.attempts);
        self.retries += u64::from(report.attempts.saturating_sub(1));
        self.throttled += u64::from(report.throttled);
    }

    /// Rows with a final outcome so far.
    pub fn finished(&self) -> u64 {
        self.created + self.exists + self.skipped + self.refused() + self.would_send.unwrap_or(0)
    }

    /// The human table printed on stderr at the end.
    pub fn render(&self, target: &str) -> String {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, value: String| {
            out.push_str(&format!("  {label:<20}{value}\n"));
        };
        out.push_str(&format!("roster: summary (target {target})\n"));
        line(&mut out, "rows read", self.rows.to_string());
        if let Some(would) = self.would_send {
            line(&mut out, "would be sent", would.to_string());
        } else {
            line(&mut out, "created", self.created.to_string());
            line(&mut out, "already existed", self.exists.to_string());
        }
        line(
            &mut out,
            "already done",
            format!("{} (ledger)", self.skipped),
        );
        line(
            &mut out,
            "refused locally",
            format!(
                "{} (invalid {}, duplicates {})",
                self.invalid + self.duplicates,
                self.invalid,
                self.duplicates
            ),
        );
        line(&mut out, "refused by the API", self.rejected.to_string());
        line(&mut out, "failed", self.failed.to_string());
        line(
            &mut out,
            "requests sent",
            format!(
                "{} (retries {}, 429s {})",
                self.requests, self.retries, self.throttled
            ),
        );
        line(
            &mut out,
            "elapsed",
            format!("{:.2} s ({:.0} rows/s)", self.elapsed_s, self.rows_per_s),
        );
        line(&mut out, "ledger", self.ledger.clone());
        if let Some(errors) = &self.errors_file {
            line(&mut out, "error file", errors.clone());
        }
        out
    }
}

/// What the aggregator hands back: the totals, the error file if written, and the HTML
/// report's data if one was asked for.
pub type Aggregated = (Summary, Option<PathBuf>, Option<ReportCollector>);

/// The aggregator thread: counts outcomes, writes the error file, shows progress.
pub struct Aggregator {
    thread: std::thread::JoinHandle<Result<Aggregated, RunError>>,
}

impl Aggregator {
    /// Starts the aggregator reading reports from `reports` (in batches: one hand-off per
    /// ledger commit, not one per row).
    pub fn spawn(
        reports: mpsc::Receiver<Vec<RowReport>>,
        errors: ErrorFile,
        mode: ProgressMode,
        collector: Option<ReportCollector>,
    ) -> Aggregator {
        let thread = std::thread::Builder::new()
            .name("roster-report".into())
            .spawn(move || aggregate(reports, errors, mode, collector))
            .expect("spawning the report thread");
        Aggregator { thread }
    }

    /// Waits for every report sender to be dropped; returns the totals and the error file.
    pub fn finish(self) -> Result<Aggregated, RunError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(RunError::Startup("the report thread panicked".into())))
    }
}

fn aggregate(
    reports: mpsc::Receiver<Vec<RowReport>>,
    mut errors: ErrorFile,
    mode: ProgressMode,
    mut collector: Option<ReportCollector>,
) -> Result<Aggregated, RunError> {
    let mut summary = Summary::default();
    let started = Instant::now();
    let bar = match mode {
        ProgressMode::Bar => {
            let bar = ProgressBar::new_spinner();
            let style =
                ProgressStyle::with_template("{spinner} {elapsed} {pos} rows ({per_sec}) {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        }
        _ => None,
    };
    let mut last_line = Instant::now();
    let tick = Duration::from_millis(250);
    loop {
        match reports.recv_timeout(tick) {
            Ok(batch) => {
                for report in batch {
                    summary.count(&report);
                    if let Some(collector) = collector.as_mut() {
                        collector.add(&report, started.elapsed().as_secs());
                    }
                    if report.outcome.is_refused() {
                        errors.write(&report)?;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(bar) = &bar {
            bar.set_position(summary.finished());
            bar.set_message(format!(
                "created {} · done {} · refused {} · 429s {}",
                summary.created + summary.exists,
                summary.skipped,
                summary.refused(),
                summary.throttled
            ));
        } else if let ProgressMode::Lines(every) = mode
            && last_line.elapsed() >= every
        {
            last_line = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                rows = summary.finished(),
                created = summary.created + summary.exists,
                skipped = summary.skipped,
                refused = summary.refused(),
                throttled = summary.throttled,
                rows_per_s = (summary.finished() as f64 / secs).round(),
                "progress"
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let path = errors.finish()?;
    Ok((summary, path, collector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_requests_and_retries() {
        let mut s = Summary::default();
        let mut r = RowReport::local(2, Outcome::Created, Vec::new(), Vec::new());
        r.attempts = 3;
        r.throttled = 1;
        s.count(&r);
        s.count(&RowReport::local(
            3,
            Outcome::Duplicate,
            Vec::new(),
            Vec::new(),
        ));
        assert_eq!(
            (s.created, s.duplicates, s.requests, s.retries, s.throttled),
            (1, 1, 3, 2, 1)
        );
        assert_eq!(s.refused(), 1);
    }
}
