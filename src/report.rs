//! Everything a person or a script reads after a run: the error file, progress, the summary.
//!
//! One aggregator thread owns all counters and the error file; every stage reports to it
//! through a channel (no shared mutable statistics).

use crate::error::RunError;
pub use crate::error_file::{ErrorFile, ErrorFormat, META_COLUMNS};
use crate::html_report::ReportCollector;
use crate::model::{FirstRow, Outcome, RowReport, Stop, StopReason};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
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
///
/// Every row read has exactly one outcome, so `rows` is the sum of `created`,
/// `created_unconfirmed`, `exists`, `skipped`, `invalid`, `duplicates`, `rejected`,
/// `still_refused`, `failed`, `not_processed` and `would_send`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Rows in the input (blank records excluded), read or not.
    pub rows: u64,
    /// Created by this run.
    pub created: u64,
    /// The API said they exist after an earlier attempt of roster's may have created them.
    pub created_unconfirmed: u64,
    /// The API said they already existed.
    pub exists: u64,
    /// Already done according to the ledger; nothing sent.
    pub skipped: u64,
    /// Refused locally.
    pub invalid: u64,
    /// Repeated identities inside the file.
    pub duplicates: u64,
    /// Of those, repeats of a person who was created or present: not errors.
    pub duplicates_of_done: u64,
    /// Refused by the API in this run.
    pub rejected: u64,
    /// Refused by the API in an earlier run and unchanged since: not sent again.
    pub still_refused: u64,
    /// Retries exhausted, or stopped before success: a re-run retries them.
    pub failed: u64,
    /// Never sent (or never read) because the run stopped first.
    pub not_processed: u64,
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
    /// Rows in the error file: refused (now or before), repeated or failed.
    pub fn in_error_file(&self) -> u64 {
        self.invalid + self.duplicates + self.rejected + self.still_refused + self.failed
    }

    /// Rows refused in this run for their data: any makes the exit code 1. Repeats of a
    /// person who was created are not errors, nor are refusals unchanged since an earlier run.
    pub fn refused_this_run(&self) -> u64 {
        self.invalid + self.rejected + self.duplicates.saturating_sub(self.duplicates_of_done)
    }

    /// Every outcome counted: equals `rows` when no row was lost.
    pub fn accounted(&self) -> u64 {
        self.created
            + self.created_unconfirmed
            + self.exists
            + self.skipped
            + self.in_error_file()
            + self.not_processed
            + self.would_send.unwrap_or(0)
    }

    /// People created by this run, confirmed or not.
    pub fn created_all(&self) -> u64 {
        self.created + self.created_unconfirmed
    }

    /// Adds one row's outcome to the totals.
    pub fn count(&mut self, report: &RowReport) {
        match report.outcome {
            Outcome::Created => self.created += 1,
            Outcome::CreatedUnconfirmed => self.created_unconfirmed += 1,
            Outcome::Exists => self.exists += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Invalid => self.invalid += 1,
            Outcome::Duplicate { first, .. } => {
                self.duplicates += 1;
                self.duplicates_of_done += u64::from(first == FirstRow::Done);
            }
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::StillRefused { .. } => self.still_refused += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::NotProcessed => self.not_processed += 1,
            Outcome::WouldSend => *self.would_send.get_or_insert(0) += 1,
        }
        self.requests += u64::from(report.attempts);
        self.retries += u64::from(report.attempts.saturating_sub(1));
        self.throttled += u64::from(report.throttled);
    }

    /// Rows with a final outcome so far.
    pub fn finished(&self) -> u64 {
        self.accounted()
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
            if self.created_unconfirmed > 0 {
                line(
                    &mut out,
                    "created (unconfirmed)",
                    format!(
                        "{} (the API said they exist after an attempt of roster's may have created them)",
                        self.created_unconfirmed
                    ),
                );
            }
            line(&mut out, "already existed", self.exists.to_string());
        }
        line(
            &mut out,
            "already done",
            format!("{} (ledger)", self.skipped),
        );
        let harmless = match self.duplicates_of_done {
            0 => String::new(),
            n => format!(", {n} of them repeats of a person who is done"),
        };
        line(
            &mut out,
            "refused locally",
            format!(
                "{} (invalid {}, duplicates {}{harmless})",
                self.invalid + self.duplicates,
                self.invalid,
                self.duplicates
            ),
        );
        line(&mut out, "refused by the API", self.rejected.to_string());
        if self.still_refused > 0 {
            line(
                &mut out,
                "still refused",
                format!(
                    "{} (refused in an earlier run and unchanged: not sent again; --retry-rejected sends them)",
                    self.still_refused
                ),
            );
        }
        line(&mut out, "failed", self.failed.to_string());
        if self.not_processed > 0 {
            line(
                &mut out,
                "not processed",
                format!("{} (the run stopped first)", self.not_processed),
            );
        }
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

/// A set of row numbers, one bit each: the rows read, and the rows reported, so that a row
/// without an outcome can be named (10 million rows: 1.25 MB).
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    words: Vec<u64>,
    len: u64,
}

impl RowSet {
    /// Adds `row`.
    pub fn insert(&mut self, row: u64) {
        let (word, bit) = ((row / 64) as usize, row % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.words[word] & mask == 0 {
            self.words[word] |= mask;
            self.len += 1;
        }
    }

    /// Whether `row` is in the set.
    pub fn contains(&self, row: u64) -> bool {
        let (word, bit) = ((row / 64) as usize, row % 64);
        self.words.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Rows in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows in this set that are not in `other`, in order.
    pub fn missing_from<'a>(&'a self, other: &'a RowSet) -> impl Iterator<Item = u64> + 'a {
        self.words.iter().enumerate().flat_map(move |(i, &word)| {
            let theirs = other.words.get(i).copied().unwrap_or(0);
            let only = word & !theirs;
            (0..64)
                .filter(move |bit| only & (1 << bit) != 0)
                .map(move |bit| i as u64 * 64 + bit)
        })
    }
}

/// Thresholds past which refusals stop the run (`--max-errors`, `--max-error-rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StopRules {
    /// Stop once more rows than this are refused in this run.
    pub max_errors: Option<u64>,
    /// Stop once more than this share of the rows finished (at least 100) are refused.
    pub max_error_rate: Option<f64>,
}

/// Rows answered 404/405 at the start of a run that mean the endpoint is wrong.
const WRONG_ENDPOINT_ROWS: u64 = 5;
/// Rows refused the same way at the start of a run that mean the cause is not in the rows.
const SYSTEMATIC_ROWS: u64 = 20;
/// Rows finished before `--max-error-rate` is judged.
const RATE_SAMPLE: u64 = 100;

/// Watches outcomes for a run that is pointless to go on with: the endpoint answering 404 or
/// 405 to the first rows sent (a wrong `--base-url`), every one of the first rows sent
/// refused for the same field (a missing column, a missing flag), or the user's own limits.
#[derive(Debug)]
pub struct EarlyStop {
    rules: StopRules,
    /// The create endpoint, for the hint.
    endpoint: String,
    /// Rows sent so far, while every one was refused the same way.
    same: u64,
    /// The shape of that refusal: status and the fields refused.
    signature: Option<(u16, Vec<Option<crate::model::Field>>)>,
    /// A row sent got another answer: the start-of-run rules no longer apply.
    varied: bool,
}

impl EarlyStop {
    /// Watches a run sending to `endpoint` under `rules`.
    pub fn new(endpoint: &str, rules: StopRules) -> EarlyStop {
        EarlyStop {
            rules,
            endpoint: endpoint.to_string(),
            same: 0,
            signature: None,
            varied: false,
        }
    }

    /// Takes one row's outcome (after `summary` counted it); a message when the run should
    /// stop.
    pub fn observe(&mut self, report: &RowReport, summary: &Summary) -> Option<String> {
        if let Some(max) = self.rules.max_errors
            && summary.refused_this_run() > max
        {
            return Some(format!(
                "more than {max} rows were refused in this run (--max-errors {max}); the error file says why"
            ));
        }
        if let Some(rate) = self.rules.max_error_rate {
            let finished = summary.accounted();
            let refused = summary.refused_this_run();
            if finished >= RATE_SAMPLE && refused as f64 > rate * finished as f64 {
                return Some(format!(
                    "{refused} of {finished} rows were refused, more than --max-error-rate {rate}"
                ));
            }
        }
        if self.varied || report.attempts == 0 {
            return None;
        }
        // A refusal, or a "success" that is not one (a web page where the API should be).
        let status = match report.outcome {
            Outcome::Rejected { status } => status,
            Outcome::Failed {
                status: Some(status @ 200..=399),
            } if report
                .errors
                .first()
                .is_some_and(|e| e.code == crate::model::ErrorCode::Unexpected) =>
            {
                status
            }
            _ => {
                self.varied = true;
                return None;
            }
        };
        let mut fields: Vec<Option<crate::model::Field>> =
            report.errors.iter().map(|e| e.field).collect();
        fields.sort();
        fields.dedup();
        let signature = (status, fields);
        match &self.signature {
            None => self.signature = Some(signature),
            Some(first) if *first == signature => {}
            Some(_) => {
                self.varied = true;
                return None;
            }
        }
        self.same += 1;
        if matches!(status, 200..=399 | 404 | 405) && self.same >= WRONG_ENDPOINT_ROWS {
            let what = match status {
                200..=299 => "not with what the target documents",
                300..=399 => "with a redirect",
                _ => "as not there",
            };
            return Some(format!(
                "the first {} rows sent were all answered HTTP {status} by `{}`, {what} (hint: \
                 check --base-url and the target)",
                self.same,
                crate::targets::redact_query(&self.endpoint)
            ));
        }
        if self.same >= SYSTEMATIC_ROWS {
            let first = report.errors.first();
            let column = first.map_or("", |e| e.column.as_str());
            let message = first.map_or("", |e| e.message.as_str());
            let hint = match first.and_then(|e| e.field) {
                Some(crate::model::Field::Password) => {
                    "add a password column, or pass --generate-passwords FILE".to_string()
                }
                Some(field) => format!(
                    "check the `{column}` column, or give it with --map {}=COLUMN or --set {}=VALUE",
                    field.name(),
                    field.name()
                ),
                None => "the cause is not in the rows: check the target's settings".to_string(),
            };
            let what = match column {
                "" => format!("HTTP {status}: {message}"),
                column => format!("`{column}`: {message}"),
            };
            return Some(format!(
                "the first {} rows sent were all refused the same way ({what}) (hint: {hint})",
                self.same
            ));
        }
        None
    }
}

/// What the aggregator hands back: the totals, the error file if written, the HTML report's
/// data if one was asked for, and the rows it got a report for.
pub type Aggregated = (Summary, Option<PathBuf>, Option<ReportCollector>, RowSet);

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
        stop: Arc<Stop>,
        mut watch: EarlyStop,
    ) -> Aggregator {
        let thread = std::thread::Builder::new()
            .name("roster-report".into())
            .spawn(move || {
                let result = aggregate(reports, errors, mode, collector, |report, summary| {
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
    mut errors: ErrorFile,
    mode: ProgressMode,
    mut collector: Option<ReportCollector>,
    mut observe: impl FnMut(&RowReport, &Summary),
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
                    if let Some(repeats) = awaiting.remove(&report.row)
                        && report.outcome.is_done()
                    {
                        summary.duplicates_of_done += repeats;
                    }
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
                "created {} · existed {} · done {} · refused {} · 429s {}",
                summary.created_all(),
                summary.exists,
                summary.skipped,
                summary.in_error_file(),
                summary.throttled
            ));
        } else if let ProgressMode::Lines(every) = mode
            && last_line.elapsed() >= every
        {
            last_line = Instant::now();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                rows = summary.finished(),
                created = summary.created_all(),
                existed = summary.exists,
                skipped = summary.skipped,
                refused = summary.in_error_file(),
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
    Ok((summary, path, collector, reported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_set_names_the_rows_missing_from_another() {
        let mut read = RowSet::default();
        let mut reported = RowSet::default();
        for row in [2, 3, 64, 65, 1_000_000] {
            read.insert(row);
        }
        read.insert(3);
        for row in [2, 65] {
            reported.insert(row);
        }
        assert_eq!(read.len(), 5);
        assert!(read.contains(1_000_000) && !read.contains(4));
        let missing: Vec<u64> = read.missing_from(&reported).collect();
        assert_eq!(missing, [3, 64, 1_000_000]);
    }

    #[test]
    fn summary_counts_requests_and_retries() {
        let mut s = Summary::default();
        let mut r = RowReport::local(2, Outcome::Created, Vec::new(), Vec::new());
        r.attempts = 3;
        r.throttled = 1;
        s.count(&r);
        s.count(&RowReport::local(
            3,
            Outcome::Duplicate {
                of: 2,
                first: FirstRow::Refused,
            },
            Vec::new(),
            Vec::new(),
        ));
        assert_eq!(
            (s.created, s.duplicates, s.requests, s.retries, s.throttled),
            (1, 1, 3, 2, 1)
        );
        assert_eq!(s.refused_this_run(), 1);
    }
}
