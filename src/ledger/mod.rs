//! The results ledger: the durable record of every identity's state, the single source of
//! truth for what has been done. A claim (`sending`) is committed before its request leaves;
//! a result is committed before it is reported. [`writer`] runs it on one thread, folding
//! whatever is waiting into batched transactions.
//!
//! States: `sending` (claimed by a run that has not recorded its end: if that run is gone, its
//! request may have landed), `created`, `exists`, `rejected`, `failed`, `invalid`, and
//! `unsent` (claimed, then released unsent when the run stopped). Beside the state, `uncertain`
//! says that a create may have reached the target without roster learning its outcome (a lost
//! answer, a 5xx, a killed run): a later "already exists" is then probably roster's own work.
//!
//! [`Ledger`] is what the writer asks of a ledger; [`sqlite`] is the durable default,
//! [`postgres`] the shared one (`--ledger postgres://…`), and [`scratch`] the in-memory one a
//! validation uses; the pipeline does not know which it has.

mod claims;
pub mod copy;
mod error;
pub mod export;
pub mod location;
pub mod lock;
pub mod overlay;
pub mod postgres;
mod results;
pub mod scratch;
pub mod seen;
pub mod sqlite;
pub(crate) mod unfolded;
pub mod writer;

pub use error::LedgerError;
pub use location::LedgerLocation;
pub use sqlite::{SqliteLedger, entries, now_ms, recorded_output, snapshot, target_keys};

use crate::model::{Person, Refused, RowReport, Submission};

/// One identity's record, as read back for audits and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised identity (email).
    pub identity: String,
    /// `sending`, `created`, `exists`, `rejected`, `failed`, `invalid` or `unsent`.
    pub state: String,
    /// The id the API gave the user.
    pub remote_id: Option<String>,
    /// The last HTTP status.
    pub http_status: Option<u16>,
    /// Requests sent for it, over all runs.
    pub attempts: u32,
    /// The row in the source file that last spoke for this identity.
    pub source_row: Option<u64>,
    /// A create may have reached the target without roster learning its outcome.
    pub uncertain: bool,
    /// Recorded created after the target said it exists: probably, not certainly, roster's.
    pub unconfirmed: bool,
}

/// New rows for the ledger, kept in their order within one transaction.
pub enum RowWork {
    /// Claim up to `limit` of these people (`sending`) if they are not settled.
    Claim {
        /// The people, in file order.
        users: Vec<Person>,
        /// Most to claim.
        limit: usize,
    },
    /// Record rows refused locally.
    Invalid(Vec<Refused>),
    /// Pass reports on behind what came before them (nothing to record).
    Report(Vec<RowReport>),
}

/// A claim's answer: the people claimed (to send), and those the claim did not reach.
pub type Claimed = (Vec<Person>, Vec<Person>);

/// What the writer asks of a ledger for one run against one target. Each call that writes is
/// one transaction, committed before it returns; the rows' reports are pushed into
/// `reports` only then.
pub trait Ledger: Send {
    /// Claims, local refusals and pass-through reports, in order: the claims' answers in the
    /// order of the claims. People already done, repeated in this file or refused before
    /// unchanged are reported, not claimed.
    fn write_rows(
        &mut self,
        rows: Vec<RowWork>,
        reports: &mut Vec<RowReport>,
    ) -> Result<Vec<Claimed>, LedgerError>;

    /// The ends of submissions.
    fn write_results(
        &mut self,
        results: Vec<Submission>,
        reports: &mut Vec<RowReport>,
    ) -> Result<(), LedgerError>;

    /// Identities created by an earlier run whose generated password line could not be
    /// written, each with whether its creation is unconfirmed.
    fn owed_passwords(&mut self) -> Result<Vec<(String, bool)>, LedgerError>;

    /// The password lines of `identities` are written now.
    fn passwords_written(&mut self, identities: &[String]) -> Result<(), LedgerError>;

    /// Other ledger keys of the same target and base URL (another tenant, realm or client),
    /// with how many people each holds.
    fn other_accounts(&mut self) -> Result<Vec<(String, u64)>, LedgerError>;

    /// What roster recorded of the output at `path` (canonical): its length and hash.
    fn output_written(&mut self, path: &str) -> Result<Option<(u64, u64)>, LedgerError>;

    /// Records that roster wrote `path` with this length and hash (`None`: removed).
    fn record_output(&mut self, path: &str, written: Option<(u64, u64)>)
    -> Result<(), LedgerError>;

    /// Marks the run finished with its summary (JSON).
    fn finish_run(&mut self, summary: &str) -> Result<(), LedgerError>;
}
