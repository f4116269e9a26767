//! How progress is shown while a run goes: a bar on a terminal (total, percentage, ETA, the
//! pace and why), a plain line now and then elsewhere (no ANSI codes: a cron log stays
//! readable), nothing with `--quiet`. The counts are the summary's.

use super::{Sink, Summary};
use crate::error::RunError;
use crate::model::RowReport;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How progress is shown, decided once from the terminal, CI and `--quiet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on stderr, redrawn in place.
    Bar,
    /// A plain line every so often.
    Lines(Duration),
    /// Nothing until the summary.
    Quiet,
}

impl ProgressMode {
    /// The mode for this process: a bar on a terminal, periodic lines otherwise.
    pub fn detect(quiet: bool) -> ProgressMode {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        ProgressMode::choose(quiet, terminal, std::env::var_os("CI").is_some())
    }

    /// The mode for these facts: `--quiet` wins; a bar only on a terminal outside CI (whose
    /// log viewers do not redraw); plain lines every 10 s otherwise.
    pub fn choose(quiet: bool, terminal: bool, ci: bool) -> ProgressMode {
        match (quiet, terminal && !ci) {
            (true, _) => ProgressMode::Quiet,
            (false, true) => ProgressMode::Bar,
            (false, false) => ProgressMode::Lines(Duration::from_secs(10)),
        }
    }
}

/// How far the reader got, shared with the display: rows handed on, and the share of the
/// input read (from its bytes, or a spreadsheet's rows).
#[derive(Debug, Default)]
pub struct ReadGauge {
    rows: AtomicU64,
    fraction: AtomicU64,
    done: AtomicBool,
}

impl ReadGauge {
    /// `rows` read so far, `fraction` of the input.
    pub fn update(&self, rows: u64, fraction: Option<f64>) {
        self.rows.store(rows, Ordering::Relaxed);
        if let Some(f) = fraction {
            self.fraction.store(f.to_bits(), Ordering::Relaxed);
        }
    }

    /// The whole input is read: the row count is the total.
    pub fn finish(&self, rows: u64) {
        self.rows.store(rows, Ordering::Relaxed);
        self.done.store(true, Ordering::Relaxed);
    }

    /// The rows in the input: exact once read, else estimated from the share read so far.
    pub fn total(&self) -> Option<u64> {
        let rows = self.rows.load(Ordering::Relaxed);
        if self.done.load(Ordering::Relaxed) {
            return Some(rows);
        }
        let fraction = f64::from_bits(self.fraction.load(Ordering::Relaxed));
        (fraction > 0.0 && rows > 0).then(|| ((rows as f64 / fraction).round() as u64).max(rows))
    }

    /// The total is known, not estimated.
    pub fn exact(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// The progress display of one run.
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    gauge: Arc<ReadGauge>,
    /// The pace and why (`9.5/s: Cryptlex's documented limit; --rate to change`).
    pace: String,
    /// Why the sender slowed down, when it did.
    note: Arc<PaceNote>,
}

/// Why the run slowed down (`concurrency 6 of 64, lowered on server errors (5xx)`): set by the
/// sender, shown by the progress line.
#[derive(Debug, Default)]
pub struct PaceNote(std::sync::Mutex<String>);

impl PaceNote {
    /// Says why (empty: nothing slowed the run).
    pub fn set(&self, note: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = note;
    }

    /// What it says now.
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Progress {
    /// Starts showing progress in `mode`, the input's size from `gauge`.
    pub fn start(
        mode: ProgressMode,
        gauge: Arc<ReadGauge>,
        pace: String,
        note: Arc<PaceNote>,
    ) -> Progress {
        let bar = match mode {
            ProgressMode::Bar => {
                let bar = ProgressBar::new(0);
                let style = ProgressStyle::with_template("{bar:20} {percent:>3}% {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.enable_steady_tick(Duration::from_millis(250));
                Some(bar)
            }
            _ => None,
        };
        Progress {
            mode,
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            gauge,
            pace,
            note,
        }
    }

    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Sink for Progress {
    fn add(&mut self, _report: &RowReport, _summary: &Summary) -> Result<(), RunError> {
        Ok(())
    }

    fn tick(&mut self, summary: &Summary) {
        let state = State {
            finished: summary.finished(),
            total: self.gauge.total(),
            exact: self.gauge.exact(),
            elapsed: self.started.elapsed(),
        };
        let note = self.note.get();
        let pace = match (note.is_empty(), self.pace.is_empty()) {
            (true, _) => self.pace.clone(),
            (false, true) => note,
            (false, false) => format!("{}; {note}", self.pace),
        };
        if let Some(bar) = &self.bar {
            if let Some(total) = state.total {
                bar.set_length(total.max(state.finished));
            }
            bar.set_position(state.finished);
            bar.set_message(bar_message(summary, &state, &pace));
        } else if let ProgressMode::Lines(every) = self.mode
            && self.last_line.elapsed() >= every
        {
            self.last_line = Instant::now();
            let at = super::run_record::rfc3339(SystemTime::now());
            eprintln!("roster: {at} {}", line(summary, &state, &pace));
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy)]
pub struct State {
    /// Rows with an outcome.
    pub finished: u64,
    /// Rows in the input, when known or estimated.
    pub total: Option<u64>,
    /// `total` is exact.
    pub exact: bool,
    /// Since the run started.
    pub elapsed: Duration,
}

/// The progress line: rows of the total, the summary's counts, the pace and why, the ETA,
/// e.g. `1,200 of ~4,586 rows (26%) · created 1,100 · existed 2 · done 50 · refused 3 ·
/// failed 0 · 9.5/s now; 9.5/s: Cryptlex's documented limit; --rate to change · ETA 6m 4s`.
pub fn line(summary: &Summary, state: &State, pace: &str) -> String {
    let mut parts = vec![position(state, true), counts(summary), speed(state, pace)];
    parts.extend(eta(state));
    parts.join(" · ")
}

/// The bar's message: what a narrow terminal must still show comes first (the bar itself
/// shows the percentage).
fn bar_message(summary: &Summary, state: &State, pace: &str) -> String {
    let mut parts = vec![position(state, false)];
    parts.extend(eta(state));
    parts.push(speed(state, pace));
    parts.push(counts(summary));
    parts.join(" · ")
}

/// `1,200 of ~4,586 rows (26%)`.
fn position(state: &State, percent: bool) -> String {
    match state.total {
        Some(total) if total > 0 => {
            let share = (state.finished as f64 * 100.0 / total as f64).min(100.0);
            let about = if state.exact { "" } else { "~" };
            let share = match percent {
                true => format!(" ({share:.0}%)"),
                false => String::new(),
            };
            format!(
                "{} of {about}{} rows{share}",
                thousands(state.finished),
                thousands(total)
            )
        }
        _ => format!("{} rows", thousands(state.finished)),
    }
}

/// The summary's counts, as the summary names them.
fn counts(summary: &Summary) -> String {
    let created = match summary.would_send {
        Some(would) => format!("would send {}", thousands(would)),
        None => format!("created {}", thousands(summary.created_all())),
    };
    format!(
        "{created} · existed {} · done {} · refused {} · failed {}",
        thousands(summary.exists),
        thousands(summary.skipped),
        thousands(summary.in_error_file() - summary.failed),
        thousands(summary.failed),
    )
}

/// Rows per second so far since the start.
fn measured(state: &State) -> f64 {
    let secs = state.elapsed.as_secs_f64();
    match secs > 0.0 {
        true => state.finished as f64 / secs,
        false => 0.0,
    }
}

/// `9.5/s now; 9.5/s: Cryptlex's documented limit; --rate to change`.
fn speed(state: &State, pace: &str) -> String {
    match pace.is_empty() {
        true => format!("{}/s", rate(measured(state))),
        false => format!("{}/s now; {pace}", rate(measured(state))),
    }
}

/// `ETA 6m 4s`, when the total is known and rows are moving.
fn eta(state: &State) -> Option<String> {
    let total = state.total?;
    let per_s = measured(state);
    (per_s > 0.0 && total > state.finished)
        .then(|| format!("ETA {}", duration((total - state.finished) as f64 / per_s)))
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate people read: `9.5`, `143`, `12,000`.
fn rate(per_s: f64) -> String {
    match per_s {
        r if r < 10.0 => format!("{r:.1}"),
        r => thousands(r.round() as u64),
    }
}

/// `45s`, `6m 4s`, `2h 5m`.
fn duration(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_quiet_then_terminal_then_ci() {
        assert_eq!(ProgressMode::choose(true, true, false), ProgressMode::Quiet);
        assert_eq!(ProgressMode::choose(false, true, false), ProgressMode::Bar);
        let lines = ProgressMode::Lines(Duration::from_secs(10));
        assert_eq!(
            ProgressMode::choose(false, true, true),
            lines,
            "CI logs do not redraw"
        );
        assert_eq!(
            ProgressMode::choose(false, false, false),
            lines,
            "a file, a pipe"
        );
    }

    #[test]
    fn the_line_gives_the_total_the_counts_the_pace_and_the_eta() {
        let summary = Summary {
            created: 1_100,
            exists: 2,
            skipped: 95,
            invalid: 3,
            ..Summary::default()
        };
        let state = State {
            finished: 1_200,
            total: Some(4_586),
            exact: false,
            elapsed: Duration::from_secs(126),
        };
        let pace =
            "9.5/s: Cryptlex's documented limit: bursts of 50 per 5 s per IP; --rate to change";
        insta::assert_snapshot!(line(&summary, &state, pace), @"1,200 of ~4,586 rows (26%) · created 1,100 · existed 2 · done 95 · refused 3 · failed 0 · 9.5/s now; 9.5/s: Cryptlex's documented limit: bursts of 50 per 5 s per IP; --rate to change · ETA 5m 56s");
        let done = State {
            finished: 4_586,
            total: Some(4_586),
            exact: true,
            elapsed: Duration::from_secs(3),
        };
        let line = line(&summary, &done, "");
        assert!(line.starts_with("4,586 of 4,586 rows (100%)"), "{line}");
        assert!(line.ends_with("1,529/s"), "{line}");
        insta::assert_snapshot!(bar_message(&summary, &state, "9.5/s: --rate"), @"1,200 of ~4,586 rows · ETA 5m 56s · 9.5/s now; 9.5/s: --rate · created 1,100 · existed 2 · done 95 · refused 3 · failed 0");
    }

    #[test]
    fn the_total_is_estimated_from_the_share_read_then_exact() {
        let gauge = ReadGauge::default();
        assert_eq!(gauge.total(), None);
        gauge.update(1_000, Some(0.25));
        assert_eq!(gauge.total(), Some(4_000));
        assert!(!gauge.exact());
        gauge.finish(3_990);
        assert_eq!(gauge.total(), Some(3_990));
        assert!(gauge.exact());
    }
}
