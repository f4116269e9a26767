//! The import, end to end: read → map → normalise + validate (rayon) → ledger check and claim
//! → submit (tokio) → ledger → reports. Stages are joined by bounded channels, so memory stays
//! flat however long the file is.

use crate::auth::AuthError;
use crate::error::RunError;
use crate::input::{self, InputOptions, Record, RecordSource};
use crate::ledger::lock::LedgerLock;
use crate::ledger::postgres::PostgresLedger;
use crate::ledger::writer::{LedgerGone, LedgerSender, LedgerWriter, REPORT_CAPACITY};
use crate::ledger::{Ledger, LedgerError, LedgerLocation, SqliteLedger};
use crate::model::{Field, Outcome, Person, RowReport, Stop, StopReason, Submission};
use crate::prepare::mapping::{Mapping, MappingOptions};
use crate::prepare::passwords::PasswordKey;
use crate::prepare::validate::{Checked, Validator};
use crate::report::ReportCollector;
use crate::report::outputs::{self, Existing};
use crate::report::progress::PaceNote;
use crate::report::progress::ReadGauge;
use crate::report::{Aggregator, EarlyStop, ProgressMode, RowSet, StopRules, Summary};
use crate::report::{ErrorFile, ErrorFormat};
use crate::report::{PasswordFile, PasswordStatus};
use crate::submit::adaptive::ConcurrencyLimit;
use crate::submit::{SubmitSettings, Submitter};
use crate::targets::{PasswordUse, Target};
use crate::values::Conventions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// The results ledger (a validation only reads what it recorded of the error file).
    pub ledger: LedgerLocation,
    /// `--retry-rejected`: send rows the API refused before even when unchanged.
    pub retry_rejected: bool,
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
    /// When refusals stop the run.
    pub stop_rules: StopRules,
    /// `--drop-invalid`: optional fields whose invalid cell is left out, not the row.
    pub drop_invalid: Vec<Field>,
    /// The pace and why, for the progress line (`9.5/s: …; --rate to change`).
    pub pace: String,
    /// `--results FILE`: every row with its outcome, remote id and message, in this format.
    pub results: Option<(PathBuf, ErrorFormat)>,
    /// The ledger's lock, when the caller already holds it for longer than this run
    /// (`roster sync` holds it from its plan to its last change).
    pub ledger_lock: Option<Arc<LedgerLock>>,
    /// The PostgreSQL ledger's lock for this target is held by the caller's own session
    /// (`roster sync`): the run's session does not take it.
    pub pg_lock_held: bool,
    /// The input is `-`: standard input, copied to `input` (removed when the last clone of
    /// the settings goes).
    pub stdin: Option<Arc<input::stdin::SpooledStdin>>,
}

impl ImportSettings {
    /// Settings for a run of `input` in `mode` with its ledger at `ledger` and its error file
    /// at `errors`, everything else as the command line's defaults leave it (but quiet: no
    /// progress line), for callers of the library (tests, benches).
    pub fn new(input: PathBuf, ledger: LedgerLocation, errors: PathBuf, mode: RunMode) -> Self {
        ImportSettings {
            input,
            read: InputOptions::default(),
            mapping: MappingOptions::default(),
            conventions: Conventions::default(),
            ledger,
            retry_rejected: false,
            errors,
            errors_format: ErrorFormat::default(),
            keep_secrets: false,
            show_requests: 0,
            report: None,
            submit: SubmitSettings::default(),
            mode,
            progress: ProgressMode::Quiet,
            generate_passwords: None,
            stop_rules: StopRules::default(),
            drop_invalid: Vec::new(),
            pace: String::new(),
            results: None,
            ledger_lock: None,
            pg_lock_held: false,
            stdin: None,
        }
    }

    /// The input as the user named it: its path, or `-` for standard input.
    pub fn input_name(&self) -> String {
        match self.stdin {
            Some(_) => "-".into(),
            None => self.input.display().to_string(),
        }
    }
}

/// The largest input a validation checks with its ledger in memory: 128 MiB, some 1.8 M rows
/// of an HR export (a million identities take ~20 MB); past it the table of identities is a
/// scratch SQLite file with a bounded cache, which keeps memory flat.
const SCRATCH_IN_MEMORY_UP_TO: u64 = 128 << 20;

/// What the in-memory ledger of a validation is sized for: a row per this many bytes of
/// input (an HR export's rows are 60–200 bytes; a file of bare addresses, ~25, grows the
/// table past it). At 128 MiB that is room for 2 M identities, ~35 MB.
const BYTES_PER_ROW_AT_LEAST: u64 = 64;

/// The default error file for an input, beside it: `people.csv` → `people.errors.csv`,
/// `people.tsv` → `people.errors.tsv`, `people.xlsx` → `people.errors.xlsx` (and
/// `people.errors.jsonl` in JSONL format). An input of another kind than its error file keeps
/// its extension in the name, so no two inputs share one: `hr.jsonl` → `hr.jsonl.errors.csv`,
/// `hr.ods` → `hr.ods.errors.xlsx`.
pub fn default_errors_path(input: &Path, format: ErrorFormat) -> PathBuf {
    let input_ext = input
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let ext = match (format, input_ext.as_deref()) {
        // A TSV (or Excel "Unicode text") input's error file is written as the input was,
        // and named so.
        (ErrorFormat::Csv, Some(same @ ("tsv" | "tab" | "txt"))) => same,
        (ErrorFormat::Csv, _) => "csv",
        (ErrorFormat::Jsonl, _) => "jsonl",
        (ErrorFormat::Xlsx, _) => "xlsx",
    };
    let same_kind = input_ext.as_deref() == Some(ext) || input_ext.as_deref() == Some("csv");
    let base = match same_kind {
        true => input.file_stem(),
        false => input.file_name(),
    };
    let base = base
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    input.with_file_name(format!("{base}.errors.{ext}"))
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
    target: &Target,
) -> Result<(Box<dyn RecordSource>, Mapping), RunError> {
    let source = input::open_with(&settings.input, &settings.read)?;
    // A password is checked apart: its absence has its own remedy (--generate-passwords).
    let required: Vec<Field> = target
        .schema
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
    if target.info.password == PasswordUse::Required
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

/// The mapped columns whose values the target does not check (`Mobile Phone (phone)`):
/// the dry run, validation and `--print-mapping` say so, since they refuse no row.
pub fn unchecked_columns(mapping: &Mapping, target: &Target) -> Vec<String> {
    Field::ALL
        .iter()
        .filter(|&&f| f != Field::Email && !target.schema.checks(f))
        .filter_map(|&f| {
            mapping
                .column(f)
                .map(|_| format!("`{}` ({f})", mapping.column_name(f)))
        })
        .collect()
}

/// `--drop-invalid` names only fields a row may go without: never the identity, never a
/// field the target requires (the row would be refused for its absence instead).
fn check_drop_invalid(fields: &[Field], target: &Target) -> Result<(), RunError> {
    for &field in fields {
        if field == Field::Email {
            return Err(RunError::Usage(
                "--drop-invalid email: the email is who the person is; a row cannot go without it"
                    .into(),
            ));
        }
        if target.schema.rules().required.contains(&field) {
            return Err(RunError::Usage(format!(
                "--drop-invalid {field}: target `{}` requires {field}, so a row without it is \
                 refused all the same; fix those cells instead",
                target.name()
            )));
        }
    }
    Ok(())
}

/// What carries an import's claimed people to the target.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// The target's API over HTTP: every import roster runs.
    Network,
    /// No network: each claimed person is answered at once by this function, as if the
    /// target had. Everything else is the import's own (reading, checking, the claims and
    /// results in the real ledger, the reports), so a benchmark measures the local stages
    /// end to end (`benches/import.rs`).
    Answered(fn(Person) -> Submission),
}

/// Runs one import (or dry run, or validation) to the end.
pub async fn run(
    settings: &ImportSettings,
    target: Arc<Target>,
    stop: Arc<Stop>,
) -> Result<RunResult, RunError> {
    run_delivering(settings, target, stop, Delivery::Network).await
}

/// [`run`], with the claimed people carried by `delivery`.
pub async fn run_delivering(
    settings: &ImportSettings,
    target: Arc<Target>,
    stop: Arc<Stop>,
    delivery: Delivery,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let sending = settings.mode == RunMode::Send;
    let input_size = std::fs::metadata(&settings.input).map_or(u64::MAX, |m| m.len());
    // Nothing is written before every output is known not to destroy another file.
    let mut named: Vec<(&str, &Path)> = vec![("--errors", settings.errors.as_path())];
    if let Some(report) = &settings.report {
        named.push(("--report", report));
    }
    if let Some(passwords) = &settings.generate_passwords {
        named.push(("--generate-passwords", passwords));
    }
    if let Some((results, _)) = &settings.results {
        named.push(("--results", results));
    }
    outputs::check(&settings.input, settings.ledger.sqlite_path(), &named)?;
    // A validation needs no API: it has no endpoint to check.
    let endpoint = match settings.mode {
        RunMode::ValidateOnly => String::new(),
        _ => {
            let api = target.api()?;
            let endpoint = api.endpoint().to_string();
            check_url(&endpoint, "--base-url")?;
            // A dry run that plans sends the import could not make says so now.
            if settings.mode == RunMode::DryRun
                && let crate::auth::Authenticator::Missing(message) = api.auth()
            {
                return Err(RunError::Usage(format!(
                    "{message} (a dry run checks the credentials an import would need; see `roster targets`)"
                )));
            }
            endpoint
        }
    };
    check_drop_invalid(&settings.drop_invalid, target.as_ref())?;
    let (source, mapping) = prepare(settings, target.as_ref())?;
    warm_up_phones(input_size, &target, &mapping);
    let unchecked = unchecked_columns(&mapping, target.as_ref());
    if !unchecked.is_empty() && !matches!(settings.progress, ProgressMode::Quiet) {
        eprintln!(
            "roster: target `{}` does not receive (or takes as free text) {}: they refuse no row",
            target.name(),
            unchecked.join(", ")
        );
    }
    let mapping = Arc::new(mapping);
    tracing::info!(
        target = target.name(),
        mode = ?settings.mode,
        endpoint = %crate::http::redact_query(&endpoint),
        rate = settings.submit.rate,
        concurrency = settings.submit.concurrency,
        "run started"
    );
    let passwords = match (&settings.generate_passwords, sending) {
        (Some(path), true) => {
            let file = PasswordFile::open(path).map_err(|e| RunError::Output {
                path: path.clone(),
                source: e,
            })?;
            Some(Arc::new(file))
        }
        _ => None,
    };
    // Generated passwords are derived from the ledger's key (synced to disk before anything
    // is sent); a validation or dry run derives from a key that lives in memory only.
    let password_key = match (&settings.generate_passwords, sending) {
        (None, _) => None,
        (Some(_), true) => {
            let path = PasswordKey::path_for_ledger(&settings.ledger);
            let key = PasswordKey::load_or_create(&path).map_err(|e| RunError::Output {
                path,
                source: std::io::Error::other(e.to_string()),
            })?;
            Some(Arc::new(key))
        }
        (Some(_), false) => Some(Arc::new(PasswordKey::ephemeral())),
    };
    if sending {
        // Missing or wrong credentials stop the run here, before any row is claimed.
        let api = target.api()?;
        api.auth().check().await.map_err(|e| match e {
            AuthError::Missing(message) => RunError::Usage(message),
            AuthError::Token(e) => RunError::Aborted(format!(
                "target `{}`: {e} (hint: {})",
                target.name(),
                api.auth_hint()
            )),
        })?;
    }
    let scratch = tempfile::tempdir()
        .map_err(|e| RunError::Startup(format!("cannot create a temporary directory: {e}")))?;
    let source_name = settings.input_name();
    // A validation of a file of up to ~1.8 M rows keeps its ledger in memory; a larger one
    // keeps its table of identities in a scratch SQLite file, whose memory stays flat. A
    // dry run works on a SQLite copy of the ledger (of a PostgreSQL ledger, this target's
    // people), so it needs no lock;
    // with no ledger file yet (the dry run before a first import) the copy would be empty,
    // and the in-memory ledger answers exactly as an empty one does, 4x faster.
    let no_ledger_yet = settings.mode == RunMode::DryRun
        && settings
            .ledger
            .sqlite_path()
            .is_some_and(|path| !path.exists());
    let in_memory = (settings.mode == RunMode::ValidateOnly || no_ledger_yet)
        && input_size <= SCRATCH_IN_MEMORY_UP_TO;
    let key = target.ledger_key();
    let (retry_rejected, remote_ids) = (settings.retry_rejected, settings.results.is_some());
    let sqlite = |path: &Path| -> Result<Box<dyn Ledger>, RunError> {
        Ok(Box::new(
            SqliteLedger::open(path, key, &source_name)?
                .retrying_rejected(retry_rejected)
                .reporting_remote_ids(remote_ids),
        ))
    };
    // A dry run reads a copy of the ledger and keeps what it would write in memory, as a
    // validation does; a file too large for that claims in the copy itself.
    let dry_run = |copy: &Path| -> Result<Box<dyn Ledger>, RunError> {
        if input_size > SCRATCH_IN_MEMORY_UP_TO {
            return sqlite(copy);
        }
        let rows = (input_size / BYTES_PER_ROW_AT_LEAST) as usize;
        Ok(Box::new(
            crate::ledger::overlay::DryRunLedger::open(copy, key, rows)?
                .retrying_rejected(retry_rejected)
                .reporting_remote_ids(remote_ids),
        ))
    };
    // What a run that sends nothing reads of the ledger: a copy, or nothing.
    // (A validation reads what the ledger file recorded of the error file, and no more.)
    let mut read_copy: Option<PathBuf> = match settings.mode {
        RunMode::ValidateOnly => settings.ledger.sqlite_path().map(Path::to_path_buf),
        _ => None,
    };
    let mut ledger: Box<dyn Ledger> = match (settings.mode, &settings.ledger) {
        _ if in_memory => Box::new(crate::ledger::scratch::ScratchLedger::with_capacity(
            (input_size / BYTES_PER_ROW_AT_LEAST) as usize,
        )),
        (RunMode::Send, LedgerLocation::Sqlite(path)) => {
            // One run per ledger file; the lock is held by the ledger and released after its
            // connection closes.
            let lock = match &settings.ledger_lock {
                Some(held) => held.clone(),
                None => Arc::new(LedgerLock::acquire(path)?),
            };
            Box::new(
                SqliteLedger::open(path, key, &source_name)?
                    .holding(lock)
                    .retrying_rejected(retry_rejected)
                    .reporting_remote_ids(remote_ids),
            )
        }
        (RunMode::Send, LedgerLocation::Postgres(location)) => {
            // One run per target: the lock is the connection's advisory lock.
            Box::new(
                PostgresLedger::open(location, key, &source_name, !settings.pg_lock_held)?
                    .retrying_rejected(retry_rejected)?
                    .reporting_remote_ids(remote_ids)?,
            )
        }
        (RunMode::DryRun, LedgerLocation::Sqlite(path)) => {
            let copy = crate::ledger::snapshot(path, scratch.path())?;
            read_copy = Some(copy.clone());
            dry_run(&copy)?
        }
        (RunMode::DryRun, LedgerLocation::Postgres(location)) => {
            let copy = scratch.path().join("ledger-copy.sqlite");
            crate::ledger::copy::snapshot_to_sqlite(location, Some(key), &copy)?;
            read_copy = Some(copy.clone());
            dry_run(&copy)?
        }
        (RunMode::ValidateOnly, _) => Box::new(crate::ledger::scratch::ScratchLedger::on_disk(
            &scratch.path().join("seen.sqlite"),
        )?),
    };
    if sending {
        for (other, people) in ledger.other_accounts()? {
            eprintln!(
                "roster: note: the ledger knows {people} people of `{other}`, the same target under \
                 another account (tenant, realm or client); this run's account is `{}`: its people are \
                 tracked apart",
                target.ledger_key()
            );
        }
        if let (Some(file), Some(key)) = (&passwords, &password_key) {
            write_owed_passwords(ledger.as_mut(), file, key, target.ledger_key())?;
        }
    }

    // The error file: never one the user changed since roster wrote it.
    let errors_key = crate::ledger::lock::canonical(&settings.errors)
        .display()
        .to_string();
    let recorded = match sending {
        true => ledger.output_written(&errors_key)?,
        false => read_copy
            .as_deref()
            .and_then(|copy| crate::ledger::recorded_output(copy, &errors_key)),
    };
    let errors_path = match outputs::existing_errors_file(&settings.errors, recorded) {
        Existing::Free => settings.errors.clone(),
        Existing::Changed { instead } => {
            eprintln!(
                "roster: `{}` was changed since roster wrote it: it is left as it is, and this run's \
                 refused rows go to `{}`",
                settings.errors.display(),
                instead.display()
            );
            instead
        }
    };
    let secret_columns: Vec<usize> = match settings.keep_secrets {
        true => Vec::new(),
        false => mapping.column(Field::Password).into_iter().collect(),
    };
    let dialect = match source.dialect() {
        input::Dialect::Text(dialect) => dialect,
        _ => input::TextDialect::default(),
    };
    let holding_secrets = settings.keep_secrets && mapping.column(Field::Password).is_some();
    let results = settings.results.as_ref().map(|(path, format)| {
        ErrorFile::results(path, *format, mapping.headers(), secret_columns.clone())
            .in_dialect(dialect)
            .holding_secrets(holding_secrets)
    });
    let errors = ErrorFile::new(
        &errors_path,
        settings.errors_format,
        mapping.headers(),
        secret_columns,
    )
    .in_dialect(dialect)
    .holding_secrets(holding_secrets);
    let files = crate::report::aggregator::Files { errors, results };
    let (reports_tx, reports_rx) = std::sync::mpsc::sync_channel(REPORT_CAPACITY);
    let collector = settings.report.as_ref().map(|_| {
        let names = match mapping
            .column(Field::FirstName)
            .or(mapping.column(Field::LastName))
        {
            Some(_) => [Field::FirstName, Field::LastName]
                .map(|f| mapping.column(f))
                .to_vec(),
            None => vec![mapping.column(Field::FullName)],
        };
        ReportCollector::new(crate::report::html::RowColumns {
            email: mapping.column(Field::Email),
            names: names.into_iter().flatten().collect(),
        })
    });
    let gauge = Arc::new(ReadGauge::default());
    let note = Arc::new(PaceNote::default());
    let limit = Arc::new(
        ConcurrencyLimit::new(
            settings.submit.start_concurrency,
            settings.submit.concurrency,
        )
        .noting_in(note.clone()),
    );
    let aggregator = Aggregator::spawn(
        reports_rx,
        files,
        (
            settings.progress,
            gauge.clone(),
            settings.pace.clone(),
            note,
        ),
        collector,
        stop.clone(),
        EarlyStop::new(&endpoint, settings.stop_rules),
    );
    let writer = LedgerWriter::spawn(ledger, reports_tx, stop.clone())?;

    let mut validator = Validator::new((*mapping).clone(), target.clone())
        .dropping_invalid(&settings.drop_invalid)
        .generating_passwords(password_key)
        .with_conventions(settings.conventions.clone());
    // A run that sends nothing builds no request bodies (most of a row's cost after its
    // checks) unless it shows them, or a dry run needs their hashes against refusals.
    let bodies = match settings.mode {
        RunMode::Send => true,
        RunMode::ValidateOnly => false,
        RunMode::DryRun => match &read_copy {
            Some(copy) => !retry_rejected && crate::ledger::overlay::holds_api_refusals(copy, key)?,
            None => false,
        },
    };
    if !bodies && settings.show_requests == 0 {
        validator = validator.without_bodies();
    }
    let validator = Arc::new(validator);
    let (chunks_tx, chunks_rx) = mpsc::channel::<Vec<Checked>>(2);
    let reader = {
        let stop = stop.clone();
        let gauge = gauge.clone();
        tokio::task::spawn_blocking(move || {
            read_and_check(source, validator, chunks_tx, &stop, &gauge)
        })
    };

    let concurrency = settings.submit.concurrency.max(1);
    let (submit_tx, submitter) = match (sending, delivery) {
        (false, _) => (None, None),
        (true, Delivery::Answered(answer)) => {
            let (tx, rx) = mpsc::channel::<Vec<Person>>(4);
            let queue = SubmitQueue { tx, batch: CHUNK };
            let task = tokio::spawn(answer_in_place(rx, answer, writer.sender()));
            (Some(queue), Some(task))
        }
        (true, Delivery::Network) => {
            let submitter = Arc::new(
                Submitter::new(
                    target.clone(),
                    mapping.clone(),
                    settings.submit,
                    limit.clone(),
                    stop.clone(),
                )?
                .with_password_file(passwords.clone()),
            );
            let (tx, rx) = mpsc::channel::<Vec<Person>>(4 * submitter.lanes());
            let queue = SubmitQueue {
                tx,
                batch: submitter.lane_batch(),
            };
            let task = tokio::spawn(submitter.run(rx, writer.sender()));
            (Some(queue), Some(task))
        }
    };

    // Claims go a few senders' worth at a time, so a crash leaves few claimed rows unsent; a
    // run that sends nothing claims a whole chunk a call (a quarter of the round trips to
    // the ledger's thread).
    let claim_batch = match sending {
        true => (concurrency * 4).clamp(16, 1024),
        false => CHUNK,
    };
    let mut preview = RequestPreview {
        left: settings.show_requests,
        endpoint: crate::http::redact_query(&endpoint),
        secrets: crate::model::Redactor::new(
            target
                .api()
                .map(|api| api.auth().header_secrets())
                .unwrap_or_default(),
        ),
    };
    let dispatched = dispatch(
        chunks_rx,
        writer.sender(),
        submit_tx,
        claim_batch,
        &stop,
        &mut preview,
    )
    .await;
    if let Some(task) = submitter {
        let _ = task.await;
    }
    let read = reader
        .await
        .map_err(|e| RunError::Internal(format!("the reader stopped: {e}")))?;
    let ledger_result = writer.finish();
    let (mut summary, errors_file, collector, reported, results_file) = aggregator.finish()?;
    let mut ledger = ledger_result?;
    let read = read?;
    dispatched.map_err(|_| LedgerError::WriterStopped {
        path: settings.ledger.shown().into(),
    })?;
    if let Some(file) = &passwords {
        file.sync().map_err(|e| RunError::Output {
            path: file.path().to_path_buf(),
            source: e,
        })?;
    }

    // Every row read has an outcome: a gap is a lost row, unless the run stopped for a
    // reason that explains it (a write that failed leaves those rows to the next run).
    summary.rows = read.rows.len() + read.unread;
    summary.not_processed += read.unread;
    let gap = summary.rows.saturating_sub(summary.accounted());
    if gap > 0 {
        if stop.reason().is_none() {
            let missing: Vec<String> = read
                .rows
                .missing_from(&reported)
                .take(10)
                .map(|r| r.to_string())
                .collect();
            return Err(RunError::Internal(format!(
                "{gap} of {} rows have no outcome (rows {}); the ledger says what was sent",
                summary.rows,
                missing.join(", ")
            )));
        }
        summary.not_processed += gap;
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.rows_per_s = if summary.elapsed_s > 0.0 {
        summary.rows as f64 / summary.elapsed_s
    } else {
        0.0
    };
    summary.ledger = match settings.mode {
        RunMode::Send => settings.ledger.shown(),
        RunMode::DryRun => format!("{} (read only: dry run)", settings.ledger.shown()),
        RunMode::ValidateOnly => "(none: validation only)".to_string(),
    };
    summary.errors_file = errors_file.as_ref().map(|p| p.display().to_string());
    summary.results_file = results_file.as_ref().map(|p| p.display().to_string());
    if sending && summary.requests > 0 {
        let report = limit.report();
        summary.concurrency = Some(crate::report::ConcurrencySummary {
            ceiling: report.ceiling,
            last: report.last,
            lowest: report.lowest,
            lowered: report.decreases,
            why: report.last_slowdown.map(|w| w.label().to_string()),
        });
    }
    if sending {
        // Remember what roster wrote, so a later run never overwrites the user's edits.
        let key = crate::ledger::lock::canonical(&errors_path)
            .display()
            .to_string();
        let written = match &errors_file {
            Some(path) => outputs::fingerprint(path).map_err(|e| RunError::Output {
                path: path.clone(),
                source: e,
            })?,
            None => None,
        };
        ledger.record_output(&key, written)?;
        let json = serde_json::to_string(&summary).unwrap_or_default();
        ledger.finish_run(&json)?;
    }
    tracing::info!(
        target = target.name(),
        rows = summary.rows,
        created = summary.created_all(),
        existed = summary.exists,
        skipped = summary.skipped,
        refused = summary.in_error_file(),
        failed = summary.failed,
        not_processed = summary.not_processed,
        elapsed_s = summary.elapsed_s,
        stopped = stop.reason().map(|r| r.label()),
        "run finished"
    );
    if let (Some(path), Some(collector)) = (&settings.report, collector) {
        let meta = crate::report::html::ReportMeta {
            input: source_name.clone(),
            target: target.name().to_string(),
            base_url: (!endpoint.is_empty())
                .then(|| crate::http::redact_query(&endpoint).to_string()),
            ledger: summary.ledger.clone(),
            mode: match settings.mode {
                RunMode::Send => "import",
                RunMode::DryRun => "dry run",
                RunMode::ValidateOnly => "validation",
            },
            started_at,
            rate: settings.submit.rate,
            concurrency: settings.submit.concurrency,
            stopped: stop
                .reason()
                .map(|r| (r.label().to_string(), r.message().to_string())),
        };
        let html = collector.render(&summary, &meta);
        crate::files::create(path, crate::files::Privacy::Personal)
            .and_then(|mut file| std::io::Write::write_all(&mut file, html.as_bytes()))
            .map_err(|e| RunError::Output {
                path: path.clone(),
                source: e,
            })?;
    }
    Ok(RunResult {
        summary,
        stopped: stop.reason(),
    })
}

/// A URL roster will send to (`flag` names where it came from, for the hint) must be one it
/// can send to before anything is sent: `http` or `https` with a host, and no credentials in
/// it (they belong in the environment, and would reach the ledger's key and every message).
pub fn check_url(url: &str, flag: &str) -> Result<(), RunError> {
    let shown = crate::http::redact_query(url);
    let parsed = url::Url::parse(url).map_err(|e| {
        RunError::Usage(format!("`{shown}` is not a URL: {e} (hint: check {flag})"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RunError::Usage(format!(
            "`{}:` is not a scheme roster sends to (http or https) in `{shown}` (hint: check {flag})",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(RunError::Usage(format!(
            "`{shown}` has no host (hint: check {flag})"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RunError::Usage(format!(
            "the URL of {flag} holds a user name or password: credentials belong in the \
             environment (see `roster targets`), never in {flag}"
        )));
    }
    Ok(())
}

/// Writes the password lines an earlier run owes (its disk was full when it created them):
/// derived again from the key, so nothing is lost.
fn write_owed_passwords(
    ledger: &mut dyn Ledger,
    file: &PasswordFile,
    key: &PasswordKey,
    scope: &str,
) -> Result<(), RunError> {
    let owed = ledger.owed_passwords()?;
    if owed.is_empty() {
        return Ok(());
    }
    let mut written = Vec::with_capacity(owed.len());
    for (identity, unconfirmed) in owed {
        let status = match unconfirmed {
            true => PasswordStatus::Unconfirmed,
            false => PasswordStatus::Created,
        };
        file.write(&identity, &key.derive(scope, &identity), status)
            .map_err(|e| RunError::Output {
                path: file.path().to_path_buf(),
                source: e,
            })?;
        written.push(identity);
    }
    ledger.passwords_written(&written)?;
    eprintln!(
        "roster: wrote {} password lines an earlier run owed to `{}`",
        written.len(),
        file.path().display()
    );
    Ok(())
}

/// What the reader saw of the file.
struct Read {
    /// The rows read and passed on.
    rows: RowSet,
    /// Records left unread when the run stopped (counted, not checked).
    unread: u64,
}

/// Most time spent counting the rest of the file after a stop, so the summary can say how
/// many rows were never processed; past it the count is what was reached.
const COUNT_UNREAD_FOR: Duration = Duration::from_secs(2);

/// Inputs from this size on have the phone metadata loaded beside the run's start.
const WARM_UP_PHONES_FROM: u64 = 1 << 20;

/// Loads the phone-number metadata on a thread of its own while the run opens its files and
/// ledger: ~0.1 s that otherwise holds up the first chunk's check (and every checker with
/// it). Only for a target that checks phones, a file with a phone column (the metadata is
/// ~25 MB resident) and an input large enough to be worth a core.
fn warm_up_phones(input_size: u64, target: &Target, mapping: &Mapping) {
    // (u64::MAX is an input whose size could not be read: no warm-up for it.)
    if (WARM_UP_PHONES_FROM..u64::MAX).contains(&input_size)
        && target.schema.checks(Field::Phone)
        && mapping.column(Field::Phone).is_some()
    {
        // Nothing waits for it: a check that needs the metadata first loads it itself.
        let _ = std::thread::Builder::new()
            .name("roster-phones".into())
            .spawn(crate::values::phone::warm_up);
    }
}

/// Reads records in chunks and passes them, in order, to a thread that checks each chunk on
/// rayon and passes it on: reading the next chunk overlaps checking this one (read in turn,
/// the reader's core idled while rayon checked). After a stop, the rest of the file is only
/// counted.
fn read_and_check(
    mut source: Box<dyn RecordSource>,
    validator: Arc<Validator>,
    chunks: mpsc::Sender<Vec<Checked>>,
    stop: &Stop,
    gauge: &ReadGauge,
) -> Result<Read, RunError> {
    let mut read = Read {
        rows: RowSet::default(),
        unread: 0,
    };
    let mut record = Record::default();
    let finished = std::thread::scope(|scope| -> Result<bool, RunError> {
        let (records_tx, records_rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(2);
        std::thread::Builder::new()
            .name("roster-check".into())
            .spawn_scoped(scope, move || {
                for chunk in records_rx {
                    if chunks.blocking_send(validator.check_chunk(chunk)).is_err() {
                        return; // the run is over: the reader's next send fails
                    }
                }
            })
            .map_err(|e| RunError::Startup(format!("cannot start the checking thread: {e}")))?;
        loop {
            if stop.is_stopped() {
                return Ok(false);
            }
            let mut chunk = Vec::with_capacity(CHUNK);
            while chunk.len() < CHUNK && source.read_record(&mut record)? {
                read.rows.insert(record.row);
                chunk.push(std::mem::take(&mut record));
            }
            if chunk.is_empty() {
                gauge.finish(read.rows.len());
                return Ok(true);
            }
            gauge.update(read.rows.len(), source.fraction_read());
            if records_tx.send(chunk).is_err() {
                return Ok(false);
            }
        }
    })?;
    if finished {
        return Ok(read);
    }
    let counting = Instant::now();
    while counting.elapsed() < COUNT_UNREAD_FOR && source.read_record(&mut record)? {
        read.unread += 1;
    }
    Ok(read)
}

/// Records invalid rows, claims valid ones in batches and hands the claimed to the submitter
/// (or, without one, reports them as what a dry run would send). After a stop, every row
/// still in hand is reported as not processed (claimed ones are released in the ledger).
async fn dispatch(
    mut chunks: mpsc::Receiver<Vec<Checked>>,
    ledger: LedgerSender,
    submit: Option<SubmitQueue>,
    claim_batch: usize,
    stop: &Stop,
    preview: &mut RequestPreview,
) -> Result<(), LedgerGone> {
    while let Some(chunk) = chunks.recv().await {
        if stop.is_stopped() {
            ledger.report(not_processed(chunk)).await?;
            continue;
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
            ledger.invalid(invalid).await?;
        }
        // The whole chunk goes to the ledger, which claims at most `claim_batch` users a
        // call: a crash leaves few claims unsent, and done rows pass in one call.
        while !ready.is_empty() {
            if stop.is_stopped() {
                let rest = std::mem::take(&mut ready).into_iter().map(Checked::Ready);
                ledger.report(not_processed(rest.collect())).await?;
                break;
            }
            let (claimed, rest) = ledger.claim(ready, claim_batch).await?;
            ready = rest;
            match &submit {
                Some(queue) => {
                    if let Err(unsent) = queue.send(claimed).await {
                        // The submitter is gone: release the claims, not sent.
                        for user in unsent {
                            ledger.done(Submission::new(user)).await?;
                        }
                    }
                }
                None => {
                    let would_send = claimed
                        .into_iter()
                        .map(|user| {
                            preview.show(&user);
                            RowReport::local(user.row, Outcome::WouldSend, Vec::new(), user.cells)
                                .with_warnings(user.warnings)
                        })
                        .collect();
                    ledger.report(would_send).await?;
                }
            }
        }
    }
    Ok(())
}

/// Reports for rows the run stopped before handling.
fn not_processed(chunk: Vec<Checked>) -> Vec<RowReport> {
    chunk
        .into_iter()
        .map(|checked| {
            let (row, cells) = match checked {
                Checked::Ready(user) => (user.row, user.cells),
                Checked::Invalid(row) => (row.row, row.cells),
            };
            RowReport::local(row, Outcome::NotProcessed, Vec::new(), cells)
        })
        .collect()
}

/// [`Delivery::Answered`]: records `answer`'s submission of every claimed person.
async fn answer_in_place(
    mut claimed: mpsc::Receiver<Vec<Person>>,
    answer: fn(Person) -> Submission,
    ledger: LedgerSender,
) {
    while let Some(people) = claimed.recv().await {
        for person in people {
            if ledger.done(answer(person)).await.is_err() {
                return;
            }
        }
    }
}

/// The submitter's intake: claimed users go to its lanes in pieces of at most `batch`.
struct SubmitQueue {
    tx: mpsc::Sender<Vec<Person>>,
    batch: usize,
}

impl SubmitQueue {
    /// Hands `claimed` over; if the submitter is gone, returns every user not handed over.
    async fn send(&self, mut claimed: Vec<Person>) -> Result<(), Vec<Person>> {
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
    endpoint: String,
    /// The credentials of fixed headers (a dry run fetches no token).
    secrets: crate::model::Redactor,
}

impl RequestPreview {
    fn show(&mut self, user: &Person) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let mut body: serde_json::Value = serde_json::from_slice(&user.body).unwrap_or_default();
        redact(&mut body);
        // By value too: a profile may send the password under any key.
        let redactor = self.secrets.with(user.fields.get(Field::Password));
        let body = body.to_string();
        let body = redactor.scrub(&body);
        eprintln!("roster: row {}: POST {} {}", user.row, self.endpoint, body);
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
