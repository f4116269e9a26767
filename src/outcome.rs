//! The final word on each row, as recorded in the ledger and then reported.

use crate::fields::FieldError;

/// What became of a row in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created by this run.
    Created,
    /// The API said the user already exists.
    Exists,
    /// Already created or present according to the ledger; nothing sent.
    Skipped,
    /// Refused locally.
    Invalid,
    /// The same identity appeared earlier in the file.
    Duplicate,
    /// Refused by the API with this HTTP status.
    Rejected {
        /// The HTTP status of the refusal.
        status: u16,
    },
    /// Retries exhausted, or the request could not be completed.
    Failed {
        /// The last HTTP status, if any response came.
        status: Option<u16>,
    },
    /// Claimed but never sent because the run stopped first.
    NotSent,
    /// Valid and not yet done: a dry run would send it.
    WouldSend,
}

impl Outcome {
    /// The ledger state this outcome leaves behind.
    pub fn state(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Exists => "exists",
            Outcome::Skipped => "skipped",
            Outcome::Invalid => "invalid",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Failed { .. } | Outcome::NotSent => "failed",
            Outcome::WouldSend => "ready",
        }
    }

    /// Whether the row belongs in the error file.
    pub fn is_refused(self) -> bool {
        matches!(
            self,
            Outcome::Invalid
                | Outcome::Duplicate
                | Outcome::Rejected { .. }
                | Outcome::Failed { .. }
        )
    }

    /// The error file's `_status`: `invalid`, `duplicate`, or the HTTP status.
    pub fn status_text(self) -> String {
        match self {
            Outcome::Invalid => "invalid".into(),
            Outcome::Duplicate => "duplicate".into(),
            Outcome::Rejected { status }
            | Outcome::Failed {
                status: Some(status),
            } => status.to_string(),
            Outcome::Failed { status: None } => "failed".into(),
            other => other.state().into(),
        }
    }
}

/// One row's outcome with everything the reports need.
#[derive(Debug, Clone)]
pub struct RowReport {
    /// Where the row is in the input.
    pub row: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// Why it was refused, per field.
    pub errors: Vec<FieldError>,
    /// The original cells.
    pub cells: Vec<String>,
    /// HTTP attempts made for it in this run.
    pub attempts: u32,
    /// Of those, how many were answered 429.
    pub throttled: u32,
}

impl RowReport {
    /// A report for a row that involved no request.
    pub fn local(row: u64, outcome: Outcome, errors: Vec<FieldError>, cells: Vec<String>) -> Self {
        RowReport {
            row,
            outcome,
            errors,
            cells,
            attempts: 0,
            throttled: 0,
        }
    }
}
