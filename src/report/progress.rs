//! How progress is shown while a run goes: a bar on a terminal, a log line now and then
//! elsewhere, nothing with `--quiet`.

use super::{Sink, Summary};
use crate::error::RunError;
use crate::model::RowReport;
use indicatif::{ProgressBar, ProgressStyle};
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

/// The progress display of one run.
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts showing progress in `mode`.
    pub fn start(mode: ProgressMode) -> Progress {
        let bar = match mode {
            ProgressMode::Bar => {
                let bar = ProgressBar::new_spinner();
                let style = ProgressStyle::with_template(
                    "{spinner} {elapsed} {pos} rows ({per_sec}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            _ => None,
        };
        Progress {
            mode,
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
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
        if let Some(bar) = &self.bar {
            bar.set_position(summary.finished());
            bar.set_message(format!(
                "created {} · existed {} · done {} · refused {} · 429s {}",
                summary.created_all(),
                summary.exists,
                summary.skipped,
                summary.in_error_file(),
                summary.throttled
            ));
        } else if let ProgressMode::Lines(every) = self.mode
            && self.last_line.elapsed() >= every
        {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
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
}
