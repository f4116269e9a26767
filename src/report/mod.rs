//! Everything a person or a script reads during and after a run: the summary, progress, the
//! error file, the HTML report, the password file, and the checks that keep outputs from
//! destroying other files.
//!
//! One aggregator thread owns all counters and outputs; the ledger thread reports every row
//! to it after the commit that recorded it. Each output is a [`Sink`].

pub mod aggregator;
mod early_stop;
pub mod error_file;
pub mod html;
pub mod outputs;
pub mod passwords;
pub mod progress;
pub mod run_record;
mod summary;

pub use crate::model::cells::META_COLUMNS;
pub use aggregator::{Aggregated, Aggregator};
pub use early_stop::{EarlyStop, StopRules};
pub use error_file::{ErrorFile, ErrorFormat};
pub use html::ReportCollector;
pub use passwords::{PasswordFile, PasswordStatus};
pub use progress::{Progress, ProgressMode};
pub use run_record::{Outcome, RunContext};
pub use summary::{ConcurrencySummary, RowSet, Summary};

use crate::error::RunError;
use crate::model::RowReport;

/// One destination of the run's row reports.
pub trait Sink {
    /// Takes one row's report (the summary has counted it already).
    fn add(&mut self, report: &RowReport, summary: &Summary) -> Result<(), RunError>;

    /// A moment passed (a quarter of a second, or a batch of reports).
    fn tick(&mut self, _summary: &Summary) {}
}
