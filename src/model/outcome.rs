//! The final word on each row, as recorded in the ledger and then reported.

use crate::model::FieldError;

/// What the ledger knew of a duplicate's first row when the duplicate was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRow {
    /// Created or present: the repeat is harmless.
    Done,
    /// Refused or failed: the repeat is refused with it.
    Refused,
    /// Still being sent: its own report settles the repeat.
    Pending,
}

/// What became of a row in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Created by this run (a 2xx answer to roster's own create).
    Created,
    /// The API said the user exists after an earlier attempt of roster's may have created it
    /// (an answer lost, a run killed): probably roster's own creation, but not certainly.
    CreatedUnconfirmed,
    /// The API said the user already exists, and no attempt of roster's can have created it.
    Exists,
    /// Already created or present according to the ledger; nothing sent.
    Skipped,
    /// Refused locally.
    Invalid,
    /// The same identity appeared earlier in the file, at row `of`.
    Duplicate {
        /// The first row with this identity.
        of: u64,
        /// What the first row's state was when this one was met.
        first: FirstRow,
    },
    /// Refused by the API with this HTTP status.
    Rejected {
        /// The HTTP status of the refusal.
        status: u16,
    },
    /// Refused in an earlier run (by the API, or locally when `status` is `None`), and
    /// unchanged since: not sent again, and not a new failure.
    StillRefused {
        /// The HTTP status of the earlier refusal, `None` for a local one.
        status: Option<u16>,
    },
    /// Retries exhausted, or the request could not be completed; a re-run retries it.
    Failed {
        /// The last HTTP status, if any response came.
        status: Option<u16>,
    },
    /// Read (and claimed, perhaps) but never sent because the run stopped first.
    NotProcessed,
    /// Valid and not yet done: a dry run would send it.
    WouldSend,
}

impl Outcome {
    /// The ledger state this outcome leaves behind.
    pub fn state(self) -> &'static str {
        match self {
            Outcome::Created | Outcome::CreatedUnconfirmed => "created",
            Outcome::Exists => "exists",
            Outcome::Skipped => "skipped",
            Outcome::Invalid => "invalid",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Rejected { .. } | Outcome::StillRefused { .. } => "rejected",
            Outcome::Failed { .. } => "failed",
            Outcome::NotProcessed => "unsent",
            Outcome::WouldSend => "ready",
        }
    }

    /// Whether the row belongs in the error file.
    pub fn is_refused(self) -> bool {
        matches!(
            self,
            Outcome::Invalid
                | Outcome::Duplicate { .. }
                | Outcome::Rejected { .. }
                | Outcome::StillRefused { .. }
                | Outcome::Failed { .. }
        )
    }

    /// Whether the person now exists on the target (created, present, or done before).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::CreatedUnconfirmed | Outcome::Exists | Outcome::Skipped
        )
    }

    /// The error file's `_status`: `invalid`, `duplicate`, or the HTTP status.
    pub fn status_text(self) -> String {
        match self {
            Outcome::Invalid => "invalid".into(),
            Outcome::Duplicate { .. } => "duplicate".into(),
            Outcome::Rejected { status }
            | Outcome::StillRefused {
                status: Some(status),
            }
            | Outcome::Failed {
                status: Some(status),
            } => status.to_string(),
            Outcome::StillRefused { status: None } => "invalid".into(),
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
    /// Cells left out under `--drop-invalid` (the row was sent, or would be, without them).
    pub warnings: Vec<FieldError>,
    /// The id the target gave the person (this run or, for a row already done, an earlier one).
    pub remote_id: Option<String>,
    /// The original cells.
    pub cells: Vec<String>,
    /// HTTP requests sent for it in this run.
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
            warnings: Vec::new(),
            remote_id: None,
            cells,
            attempts: 0,
            throttled: 0,
        }
    }

    /// The same report, with the target's id for the person.
    pub fn with_remote_id(mut self, remote_id: Option<String>) -> Self {
        self.remote_id = remote_id;
        self
    }

    /// The same report, listing the cells the row was sent without.
    pub fn with_warnings(mut self, warnings: Vec<FieldError>) -> Self {
        self.warnings = warnings;
        self
    }

    /// The report of a row whose identity row `first` of this run already carried (`first`
    /// being `state`): `duplicate of row N`.
    pub fn duplicate(row: u64, cells: Vec<String>, first: u64, state: FirstRow) -> Self {
        let error = FieldError::local(
            Some(crate::model::Field::Email),
            "",
            crate::model::ErrorCode::Duplicate,
            format!("duplicate of row {first}"),
        );
        let outcome = Outcome::Duplicate {
            of: first,
            first: state,
        };
        RowReport::local(row, outcome, vec![error], cells)
    }

    /// The report of a submission's end, as recorded.
    pub fn of_submission(done: crate::model::Submission) -> Self {
        RowReport {
            row: done.user.row,
            outcome: done.outcome,
            errors: done.errors,
            warnings: done.user.warnings,
            remote_id: done.remote_id,
            cells: done.user.cells,
            attempts: done.attempts,
            throttled: done.throttled,
        }
    }
}
