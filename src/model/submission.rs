//! The end of one submission: every attempt for one row.

use super::{FieldError, Outcome, Person};
use bytes::Bytes;

/// The end of one submission: every attempt for one row.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The user sent.
    pub user: Person,
    /// What became of it.
    pub outcome: Outcome,
    /// The id the API gave it.
    pub remote_id: Option<String>,
    /// The last HTTP status.
    pub status: Option<u16>,
    /// Per-field messages for refusals and failures.
    pub errors: Vec<FieldError>,
    /// The refusal's raw body (truncated), kept for the audit.
    pub response_body: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Attempts answered 429.
    pub throttled: u32,
    /// When the first attempt left (ms since epoch).
    pub first_attempt_ms: Option<i64>,
    /// When the last attempt left.
    pub last_attempt_ms: Option<i64>,
    /// The generated password's line could not be written: the next run writes it.
    pub password_owed: bool,
    /// The last answer's body (shared, not copied), to describe an answer that is not what
    /// the target documents.
    pub last_body: Bytes,
}

impl Submission {
    /// A submission of `user` that has not started.
    pub fn new(user: Person) -> Submission {
        Submission {
            user,
            outcome: Outcome::NotProcessed,
            remote_id: None,
            status: None,
            errors: Vec::new(),
            response_body: None,
            attempts: 0,
            throttled: 0,
            first_attempt_ms: None,
            last_attempt_ms: None,
            password_owed: false,
            last_body: Bytes::new(),
        }
    }
}
