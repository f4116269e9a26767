//! The run's totals, and the set of rows that had an outcome.

use crate::model::{FirstRow, Outcome, RowReport};
use serde::Serialize;

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
    /// Of the rows sent (or that a dry run would send), those sent without a cell
    /// `--drop-invalid` left out; each such cell is a warning in the error file.
    #[serde(skip_serializing_if = "is_zero")]
    pub sent_without_invalid: u64,
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
    /// The results file (`--results`), when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_file: Option<String>,
    /// What the adaptive concurrency limit did, when the run sent anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySummary>,
}

/// Requests in flight over a run: where the adaptive limit ended, and why it came down.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrencySummary {
    /// The ceiling (`--concurrency`, or the default).
    pub ceiling: usize,
    /// The limit at the end.
    pub last: usize,
    /// The lowest it went.
    pub lowest: usize,
    /// How many times it came down.
    pub lowered: u32,
    /// Why it last came down (`server errors (5xx)`, `latency rising past its baseline`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
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
        self.sent_without_invalid += u64::from(!report.warnings.is_empty());
        self.requests += u64::from(report.attempts);
        self.retries += u64::from(report.attempts.saturating_sub(1));
        self.throttled += u64::from(report.throttled);
    }

    /// Rows with a final outcome so far.
    pub fn finished(&self) -> u64 {
        self.accounted()
    }

    /// The human table printed on stderr at the end, under `headline` (the run's start
    /// time, command and target: see [`super::RunContext::headline`]).
    pub fn render(&self, headline: &str) -> String {
        let mut out = String::from(headline);
        let line = |out: &mut String, label: &str, value: String| {
            out.push_str(&format!("  {label:<20}{value}\n"));
        };
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
        if self.sent_without_invalid > 0 {
            line(
                &mut out,
                "sent without a cell",
                format!(
                    "{} (--drop-invalid left out an invalid cell: warnings in the error file)",
                    self.sent_without_invalid
                ),
            );
        }
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
        if let Some(c) = self.concurrency.as_ref().filter(|c| c.lowered > 0) {
            line(
                &mut out,
                "slowed down",
                format!(
                    "{} times, on {}: {} in flight at the end (lowest {}, ceiling {})",
                    c.lowered,
                    c.why.as_deref().unwrap_or("back-pressure"),
                    c.last,
                    c.lowest,
                    c.ceiling
                ),
            );
        }
        line(&mut out, "ledger", self.ledger.clone());
        if let Some(errors) = &self.errors_file {
            line(&mut out, "error file", errors.clone());
        }
        if let Some(results) = &self.results_file {
            line(&mut out, "results file", results.clone());
        }
        out
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FirstRow, Outcome, RowReport};

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
