//! The types the stages hand each other: the canonical fields of a person and the problems
//! found with a row, a row ready to send or refused, the end of a submission, each row's
//! outcome, the run's stop switch, and how cells are written into CSV for people.

pub mod cells;
mod field;
mod outcome;
mod person;
mod secrets;
mod stop;
mod submission;

pub use field::{
    ErrorCode, ErrorSource, Field, FieldError, METADATA_PREFIX, UserFields, join_errors,
    metadata_key, squash,
};
pub use outcome::{FirstRow, Outcome, RowReport};
pub use person::{Person, Refused};
pub use secrets::Redactor;
pub use stop::{Stop, StopReason, panic_message};
pub use submission::Submission;
