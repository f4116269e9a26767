//! The import, end to end: read → map → normalise + validate (rayon) → ledger check and claim
//! → submit (tokio) → ledger → reports. Stages are joined by bounded channels, so memory stays
//! flat however long the file is.

use crate::auth::AuthError;
use crate::error::RunError;
use crate::error_file::{ErrorFile, ErrorFormat};
use crate::fields::Field;
use crate::html_report::ReportCollector;
use crate::input::{self, InputOptions, Record, RecordSource};
use crate::ledger::SqliteLedger;
use crate::ledger::lock::LedgerLock;
use crate::ledger::writer::{LedgerGone, LedgerSender, LedgerWriter};
use crate::mapping::{Mapping, MappingOptions};
use crate::normalize::Conventions;
use crate::outcome::{Outcome, RowReport};
use crate::password::PasswordFile;
use crate::report::{Aggregator, ProgressMode, Summary};
use crate::stop::{Stop, StopReason};
use crate::submit::{SubmitSettings, Submitter};
use crate::targets::{PasswordUse, Target};
use crate::validate::{Checked, ReadyUser, Validator};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Records validated together on rayon.
const CHUNK: usize = 1024;

/// What the run does with valid rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Send them.
    Send,
    /// Everything but the network, against a copy of the ledger (`import --dry-run`).
    DryRun,
    /// Everything but the network and the ledger (`validate`).
    ValidateOnly,
}

/// Everything an import needs besides the target.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// The people file.
    pub input: PathBuf,
    /// Format, encoding and delimiter, where the file itself should not decide.
    pub read: InputOptions,
    /// Column choices.
    pub mapping: MappingOptions,
    /// Default phone region and role synonyms.
    pub conventions: Conventions,
    /// The results ledger.
    pub ledger: PathBuf,
    /// The error file.
    pub errors: PathBuf,
    /// Its format.
    pub errors_format: ErrorFormat,
    /// Write secret columns (passwords) to the error file instead of blanking them.
    pub keep_secrets: bool,
    /// In a dry run or validation, print this many request bodies (secrets redacted).
    pub show_requests: usize,
    /// Write a self-contained HTML report here.
    pub report: Option<PathBuf>,
    /// Concurrency, rate, retries.
    pub submit: SubmitSettings,
    /// Send, dry run or validate.
    pub mode: RunMode,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// `--generate-passwords FILE`: users without a password get a random one, written here.
    pub generate_passwords: Option<PathBuf>,
}

/// The default error file for an input: `people.csv` → `people.errors.csv` beside it
/// (`people.errors.jsonl` in JSONL format).
pub fn default_errors_path(input: &Path, format: ErrorFormat) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = match format {
        ErrorFormat::Csv => "csv",
        ErrorFormat::Jsonl => "jsonl",
    };
    input.with_file_name(format!("{stem}.errors.{ext}"))
}

/// How a run ended: its totals, and why it stopped early if it did.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The totals.
    pub summary: Summary,
    /// Set when the run was aborted or interrupted.
    pub stopped: Option<StopReason>,
}

/// Opens the input and resolves its mapping for `target` (a run error if a required field
/// has no column).
pub fn prepare(
    settings: &ImportSettings,
    target: &dyn Target,
) -> Result<(Box<dyn RecordSource>, Mapping), RunError> {
    let source = input::open_with(&settings.input, &settings.read)?;
    // A password is checked apart: its absence has its own remedy (--generate-passwords).
    let required: Vec<Field> = target
        .rules()
        .required
        .iter()
        .copied()
        .filter(|f| *f != Field::Password)
        .collect();
    let mapping = Mapping::resolve(source.headers(), &settings.mapping, &required)?;
    let password_given = mapping.column(Field::Password).is_some()
        || settings
            .mapping
            .defaults
            .iter()
            .any(|(f, _)| *f == Field::Password);
    if target.password_use() == PasswordUse::Required
        && !password_given
        && settings.generate_passwords.is_none()
    {
        return Err(RunError::Usage(format!(
            "target `{}` requires a password for every user and the file has no password column: \
             add one, or pass --generate-passwords FILE to create a strong random password per \
             user (written only to FILE)",
            target.name()
        )));
    }
    Ok((source, mapping))
}

/// Runs one import (or dry run, or validation) to the end.
pub async fn run(
    settings: &ImportSettings,
    target: Arc<dyn Target>,
    stop: Arc<Stop>,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    if same_file(&settings.errors, &settings.input) {
        return Err(RunError::Usage(
            "--errors must not be the input file".into(),
        ));
    }
    let (source, mapping) = prepare(settings, target.as_ref())?;
    let mapping = Arc::new(mapping);
    let passwords = match (&settings.generate_passwords, settings.mode) {
        (Some(path), RunMode::Send) => {
            if same_file(path, &settings.input) {
                return Err(RunError::Usage(
                    "--generate-passwords must not be the input file".into(),
                ));
            }
            let file = PasswordFile::open(path).map_err(|e| RunError::Output {
                path: path.clone(),
                source: e,
            })?;
            Some(Arc::new(file))
        }
        _ => None,
    };
    if settings.mode == RunMode::Send {
        // Missing or wrong credentials stop the run here, before any row is claimed.
        target.auth().check().await.map_err(|e| match e {
            AuthError::Missing(message) => RunError::Usage(message),
            AuthError::Token(e) => RunError::Aborted(format!(
                "target `{}`: {e} (hint: {})",
                target.name(),
                target.auth_hint()
            )),
        })?;
    }
    let scratch = tempfile::tempdir()
        .map_err(|e| RunError::Startup(format!("cannot create a temporary directory: {e}")))?;
    let ledger_path = match settings.mode {
        RunMode::Send => settings.ledger.clone(),
        RunMode::DryRun => copy_ledger(&settings.ledger, scratch.path())?,
        RunMode::ValidateOnly => scratch.path().join("ledger.sqlite"),
    };
    // One run per ledger; a dry run only reads a copy, so it needs no lock.
    let _lock = match settings.mode {
        RunMode::Send => Some(LedgerLock::acquire(&settings.ledger)?),
        _ => None,
    };
    let source_name = settings.input.display().to_string();
    let ledger = SqliteLedger::open(&ledger_path, target.ledger_key(), &source_name)?;

    let secret_columns: Vec<usize> = match settings.keep_secrets {
        true => Vec::new(),
        false => mapping.column(Field::Password).into_iter().collect(),
    };
    let errors = ErrorFile::new(
        &settings.errors,
        settings.errors_format,
        mapping.headers(),
        secret_columns,
    );
    let (reports_tx, reports_rx) = std::sync::mpsc::channel();
    let collector = settings.report.as_ref().map(|_| ReportCollector::default());
    let aggregator = Aggregator::spawn(reports_rx, errors, settings.progress, collector);
    let writer = LedgerWriter::spawn(ledger, reports_tx.clone());

    let validator = Arc::new(
        Validator::new((*mapping).clone(), target.clone())
            .generating_passwords(settings.generate_passwords.is_some())
            .with_conventions(settings.conventions.clone()),
    );
    let (chunks_tx, chunks_rx) = mpsc::channel::<Vec<Checked>>(2);
    let reader = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || read_and_check(source, validator, chunks_tx, &stop))
    };

    let concurrency = settings.submit.concurrency.max(1);
    let (submit_tx, submitter) = if settings.mode == RunMode::Send {
        let submitter = Arc::new(
            Submitter::new(
                target.clone(),
                mapping.clone(),
                settings.submit,
                stop.clone(),
            )?
            .with_password_file(passwords),
        );
        let (tx, rx) = mpsc::channel::<Vec<ReadyUser>>(4 * submitter.lanes());
        let queue = SubmitQueue {
            tx,
            batch: submitter.lane_batch(),
        };
        let task = tokio::spawn(submitter.run(rx, writer.sender()));
        (Some(queue), Some(task))
    } else {
        (None, None)
    };

    let claim_batch = (concurrency * 4).clamp(16, 1024);
    let mut preview = RequestPreview {
        left: settings.show_requests,
        target: target.clone(),
    };
    let dispatched = dispatch(
        chunks_rx,
        writer.sender(),
        submit_tx,
        &reports_tx,
        claim_batch,
        &stop,
        &mut preview,
    )
    .await;
    if let Some(task) = submitter {
        let _ = task.await;
    }
    let rows = reader
        .await
        .map_err(|e| RunError::Startup(format!("the reader stopped: {e}")))?;
    let ledger_result = writer.finish();
    drop(reports_tx);
    let (mut summary, errors_file, collector) = aggregator.finish()?;
    let mut ledger = ledger_result?;
    let rows = rows?;
    dispatched.map_err(|_| RunError::Ledger {
        path: ledger_path.clone(),
        message: "stopped unexpectedly".into(),
    })?;

    summary.rows = rows;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.rows_per_s = if summary.elapsed_s > 0.0 {
        rows as f64 / summary.elapsed_s
    } else {
        0.0
    };
    summary.ledger = match settings.mode {
        RunMode::Send => settings.ledger.display().to_string(),
        RunMode::DryRun => format!("{} (read only: dry run)", settings.ledger.display()),
        RunMode::ValidateOnly => "(none: validation only)".to_string(),
    };
    summary.errors_file = errors_file.map(|p| p.display().to_string());
    if settings.mode == RunMode::Send {
        let json = serde_json::to_string(&summary).unwrap_or_default();
        ledger.finish_run(&json)?;
    }
    if let (Some(path), Some(collector)) = (&settings.report, collector) {
        let html = collector.render(&summary, target.name(), &source_name);
        std::fs::write(path, html).map_err(|e| RunError::Output {
            path: path.clone(),
            source: e,
        })?;
    }
    Ok(RunResult {
        summary,
        stopped: stop.reason(),
    })
}

/// Reads records in chunks, checks each chunk on rayon and passes it on, in order.
fn read_and_check(
    mut source: Box<dyn RecordSource>,
    validator: Arc<Validator>,
    chunks: mpsc::Sender<Vec<Checked>>,
    stop: &Stop,
) -> Result<u64, RunError> {
    let mut rows = 0u64;
    let mut record = Record::default();
    while !stop.is_stopped() {
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK && source.read_record(&mut record)? {
            chunk.push(std::mem::take(&mut record));
        }
        if chunk.is_empty() {
            break;
        }
        rows += chunk.len() as u64;
        if chunks.blocking_send(validator.check_chunk(chunk)).is_err() {
            break;
        }
    }
    Ok(rows)
}

/// Records invalid rows, claims valid ones in batches and hands the claimed to the submitter
/// (or, without one, reports them as what a dry run would send).
async fn dispatch(
    mut chunks: mpsc::Receiver<Vec<Checked>>,
    ledger: LedgerSender,
    submit: Option<SubmitQueue>,
    reports: &std::sync::mpsc::Sender<Vec<RowReport>>,
    claim_batch: usize,
    stop: &Stop,
    preview: &mut RequestPreview,
) -> Result<(), LedgerGone> {
    while let Some(chunk) = chunks.recv().await {
        if stop.is_stopped() {
            break;
        }
        let mut ready = Vec::with_capacity(chunk.len());
        let mut invalid = Vec::new();
        for checked in chunk {
            match checked {
                Checked::Ready(user) => ready.push(user),
                Checked::Invalid(row) => invalid.push(row),
            }
        }
        if !invalid.is_empty() {
            ledger.invalid(invalid)?;
        }
        // The whole chunk goes to the ledger, which claims at most `claim_batch` users a
        // call: a crash leaves few claims unsent, and done rows pass in one call.
        while !ready.is_empty() {
            if stop.is_stopped() {
                return Ok(());
            }
            let (claimed, rest) = ledger.claim(ready, claim_batch).await?;
            ready = rest;
            match &submit {
                Some(queue) => {
                    if let Err(unsent) = queue.send(claimed).await {
                        // The submitter is gone: release the claims as not sent.
                        let not_sent = unsent
                            .into_iter()
                            .map(|user| {
                                RowReport::local(user.row, Outcome::NotSent, Vec::new(), user.cells)
                            })
                            .collect();
                        let _ = reports.send(not_sent);
                        return Ok(());
                    }
                }
                None => {
                    let would_send = claimed
                        .into_iter()
                        .map(|user| {
                            preview.show(&user);
                            RowReport::local(user.row, Outcome::WouldSend, Vec::new(), user.cells)
                        })
                        .collect();
                    let _ = reports.send(would_send);
                }
            }
        }
    }
    Ok(())
}

/// The submitter's intake: claimed users go to its lanes in pieces of at most `batch`.
struct SubmitQueue {
    tx: mpsc::Sender<Vec<ReadyUser>>,
    batch: usize,
}

impl SubmitQueue {
    /// Hands `claimed` over; if the submitter is gone, returns every user not handed over.
    async fn send(&self, mut claimed: Vec<ReadyUser>) -> Result<(), Vec<ReadyUser>> {
        while !claimed.is_empty() {
            let rest = claimed.split_off(claimed.len().min(self.batch));
            let piece = std::mem::replace(&mut claimed, rest);
            if let Err(unsent) = self.tx.send(piece).await {
                let mut unsent = unsent.0;
                unsent.append(&mut claimed);
                return Err(unsent);
            }
        }
        Ok(())
    }
}

/// `--show-requests N`: the first N request bodies a dry run would send, on stderr, with
/// secret values redacted.
struct RequestPreview {
    left: usize,
    target: Arc<dyn Target>,
}

impl RequestPreview {
    fn show(&mut self, user: &ReadyUser) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let mut body: serde_json::Value = serde_json::from_slice(&user.body).unwrap_or_default();
        redact(&mut body);
        eprintln!(
            "roster: row {}: POST {} {}",
            user.row,
            self.target.endpoint(),
            body
        );
    }
}

/// Replaces the value of every key that names a secret (password, secret, token) with `***`.
pub fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                if ["password", "secret", "token"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    *v = serde_json::Value::String("***".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A consistent copy of the ledger for a dry run (an empty one if there is none yet).
fn copy_ledger(ledger: &Path, dir: &Path) -> Result<PathBuf, RunError> {
    let copy = dir.join("ledger-copy.sqlite");
    if ledger.exists() {
        let err = |e: rusqlite::Error| RunError::Ledger {
            path: ledger.to_path_buf(),
            message: e.to_string(),
        };
        let conn = rusqlite::Connection::open_with_flags(
            ledger,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(err)?;
        conn.execute("VACUUM INTO ?1", [copy.display().to_string()])
            .map_err(err)?;
    }
    Ok(copy)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
