//! Running one command from its plan: the target built (the in-process sandbox started if
//! none is named), the pipeline run under a stop switch the signals flip, the summary printed,
//! and the documented exit code.

use crate::cli::args::{Cli, Command, LedgerCommand, LogFormat, SandboxArgs};
use crate::cli::plan::{self, ImportPlan, ValidatePlan};
use crate::error::{
    EXIT_INTERRUPTED, EXIT_OK, EXIT_RETRY_LATER, EXIT_ROWS_REFUSED, EXIT_USAGE, RunError,
    print_stdout,
};
use crate::ledger::LedgerLocation;
use crate::ledger::export::{self, ExportFilter};
use crate::model::{Stop, StopReason};
use crate::pipeline::{self, ImportSettings, RunMode};
use crate::prepare::PasswordKey;
use crate::report::{Outcome, RunContext};
use crate::targets::{self, TargetSpec};
use clap::CommandFactory;
use roster_sandbox::{Profile, Sandbox, SandboxConfig, SandboxCredentials};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Parses the command line, runs it and returns the exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::error::EXIT_USAGE
            } else {
                EXIT_OK
            };
        }
    };
    run(cli)
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    init_logging(cli.log_format, cli.verbose);
    // A run's `--json` object is printed however it ends, a fatal error included.
    let (json, command) = match &cli.command {
        Command::Import(args) if args.dry_run => (args.common.json, "import --dry-run"),
        Command::Import(args) => (args.common.json, "import"),
        Command::Sync(args) if args.import.dry_run => (args.import.common.json, "sync --dry-run"),
        Command::Sync(args) => (args.import.common.json, "sync"),
        Command::Validate(args) => (args.common.json, "validate"),
        _ => (false, ""),
    };
    let mut context = RunContext::start(command);
    // An import sends from its own per-core threads (see `Submitter::run`); the main thread
    // only reads, claims and hands out batches, so it needs no thread pool of its own. The
    // sandbox serves many clients and gets one.
    let mut builder = match cli.command {
        Command::Sandbox(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("roster: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Import(args) => import(args, &mut context).await,
            Command::Sync(args) => sync(args, &mut context).await,
            Command::Validate(args) => validate(args, &mut context).await,
            Command::Sandbox(args) => sandbox(args).await,
            Command::Ledger(command) => ledger(command),
            Command::Targets => {
                print_stdout(&targets::describe((
                    crate::submit::START_CONCURRENCY,
                    crate::submit::DEFAULT_CONCURRENCY,
                )))?;
                Ok(EXIT_OK)
            }
            Command::Template(args) => template(args),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "roster", &mut script);
                print_stdout(&String::from_utf8_lossy(&script))?;
                Ok(EXIT_OK)
            }
            Command::Man { command } => {
                print_stdout(&man_page(&command)?)?;
                Ok(EXIT_OK)
            }
        }
    });
    match result {
        Ok(code) => code,
        // `roster … | head`: the reader went away; that is how pipes end, not a failure.
        Err(RunError::BrokenPipe) => EXIT_OK,
        Err(e) => {
            eprintln!("roster: {e}");
            if json {
                let outcome = Outcome {
                    word: "error",
                    reason: Some(e.to_string()),
                    exit_code: e.exit_code(),
                };
                // Best effort: stdout may be what failed.
                let _ = print_stdout(&format!("{}\n", context.json(&outcome, None)));
            }
            e.exit_code()
        }
    }
}

/// The pace and why, for the progress line: who set it, and how to change it.
fn pace(rate: f64, asked: bool, source: &str) -> String {
    match (rate > 0.0, asked) {
        (true, true) => format!("{rate}/s: --rate"),
        (true, false) => format!("{rate}/s: {source}; --rate to change"),
        (false, true) => "no rate limit: --rate 0".into(),
        (false, false) => format!("no rate limit: {source}"),
    }
}

/// `roster template`: the target's columns and an example row, as CSV or XLSX.
fn template(args: crate::cli::args::TemplateArgs) -> Result<i32, RunError> {
    use crate::template::TemplateFormat;
    let options = plan::add_target_options(Default::default(), &args.target_option)?;
    let spec = TargetSpec {
        name: args.target.unwrap_or_else(|| "sandbox".into()),
        profile: args.profile,
        options,
        ..TargetSpec::default()
    };
    let target = Arc::new(targets::build_schema(&spec)?);
    let columns = crate::template::columns(&target)?;
    let by_extension = args.output.as_deref().and_then(|path| {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "xlsx" => TemplateFormat::Xlsx,
            _ => TemplateFormat::Csv,
        })
    });
    match (
        args.format.or(by_extension).unwrap_or(TemplateFormat::Csv),
        args.output,
    ) {
        (TemplateFormat::Csv, None) => {
            print_stdout(&String::from_utf8_lossy(&crate::template::csv(&columns)?))?;
        }
        (TemplateFormat::Csv, Some(path)) => {
            let bytes = crate::template::csv(&columns)?;
            let written = crate::files::create(&path, crate::files::Privacy::Personal)
                .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes));
            written.map_err(|e| RunError::Output { path, source: e })?;
        }
        (TemplateFormat::Xlsx, Some(path)) => {
            crate::template::write_xlsx(&target, &columns, &path)?;
        }
        (TemplateFormat::Xlsx, None) => {
            return Err(RunError::Usage(
                "an XLSX template needs a file: give -o FILE.xlsx".into(),
            ));
        }
    }
    Ok(EXIT_OK)
}

/// The manual page of roster, or of the command `path` names (`["ledger", "export"]`).
fn man_page(path: &[String]) -> Result<String, RunError> {
    let mut command = Cli::command();
    // Built, so that each command's page is titled `roster-import` and its synopsis is whole.
    command.build();
    for name in path {
        let sub = command.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
            RunError::Usage(format!(
                "`{name}` is not a command of `{}` (commands: {})",
                command.get_display_name().unwrap_or("roster"),
                names.join(", ")
            ))
        })?;
        command = sub.version(env!("CARGO_PKG_VERSION"));
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| RunError::Internal(format!("cannot render the man page: {e}")))?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// Structured logs on stderr: roster's events at info (run start and end, pace changes,
/// pauses, the breaker, token renewals), per-attempt debug lines with `-v`, all with `-vv`.
fn init_logging(format: LogFormat, verbose: u8) {
    // Text logs share stderr with the progress line and the summary, so by default they carry
    // only warnings; JSON logs are read by machines (cron, a log shipper) and get the run's
    // start and finish events too.
    let level = match (verbose, format) {
        (0, LogFormat::Text) => "roster=warn,warn",
        (0, LogFormat::Json) => "roster=info,warn",
        (1, _) => "roster=debug,warn",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Starts the in-process sandbox when no target (or `sandbox` without a URL) is named.
async fn resolve_target(
    mut spec: TargetSpec,
    quiet: bool,
) -> Result<(TargetSpec, Option<Sandbox>), RunError> {
    if spec.name.is_empty() {
        spec.name = "sandbox".to_string();
    }
    if spec.name == "sandbox" && spec.base_url.is_none() {
        let sandbox = Sandbox::start(SandboxConfig::default(), 0)
            .await
            .map_err(|e| RunError::Startup(format!("cannot start the in-process sandbox: {e}")))?;
        if !quiet {
            eprintln!(
                "roster: no --target given: using the in-process sandbox at {} (nothing leaves this machine)",
                sandbox.base_url()
            );
        }
        spec.base_url = Some(sandbox.base_url());
        spec.in_process = true;
        return Ok((spec, Some(sandbox)));
    }
    Ok((spec, None))
}

/// Ctrl-C / SIGTERM: the first stops taking rows and lets in-flight requests finish; the
/// second exits at once (SQLite's journal keeps the ledger consistent).
fn watch_signals(stop: Arc<Stop>) {
    tokio::spawn(async move {
        let mut interrupts = 0;
        loop {
            wait_for_signal().await;
            interrupts += 1;
            if interrupts == 1 {
                eprintln!(
                    "roster: interrupted: finishing requests in flight (interrupt again to quit now)"
                );
                stop.stop(StopReason::Interrupted);
            } else {
                eprintln!("roster: quitting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// An import or sync, ready to run: its settings, its target and the in-process sandbox
/// it may have started (kept alive as long as this is).
struct Prepared {
    settings: ImportSettings,
    target: Arc<targets::Target>,
    json: bool,
    _sandbox: Option<Sandbox>,
}

async fn prepare_import(
    args: crate::cli::args::ImportArgs,
    context: &mut RunContext,
) -> Result<Prepared, RunError> {
    let ImportPlan {
        spec,
        mut settings,
        rate,
        burst,
        concurrency_given,
        json,
        quiet,
    } = plan::import(args)?;
    context.target = Some(match spec.name.as_str() {
        "" => "sandbox".to_string(),
        name => name.to_string(),
    });
    let (spec, sandbox) = resolve_target(spec, quiet).await?;
    context.base_url = spec
        .base_url
        .as_deref()
        .map(|url| crate::http::redact_query(url).to_string());
    let target = Arc::new(targets::build(&spec)?);
    let api = target.api()?.clone();
    settings.submit.rate = rate.unwrap_or(api.default_rate());
    settings.pace = pace(
        settings.submit.rate,
        rate.is_some(),
        target.info.rate_source,
    );
    settings.submit.burst = burst.unwrap_or(api.default_burst()).max(1);
    if let (false, Some(n)) = (concurrency_given, api.default_concurrency()) {
        // A profile's `concurrency` is the user's word for that server, as the flag is.
        settings.submit.concurrency = n;
        settings.submit.start_concurrency = n;
    }
    Ok(Prepared {
        settings,
        target,
        json,
        _sandbox: sandbox,
    })
}

async fn import(
    args: crate::cli::args::ImportArgs,
    context: &mut RunContext,
) -> Result<i32, RunError> {
    if args.update {
        // `import --update` is a sync without its leaver step.
        return run_sync(args, &crate::sync::SyncOptions::updates_only(), context).await;
    }
    let prepared = prepare_import(args, context).await?;
    let (settings, target) = (&prepared.settings, prepared.target.clone());
    let api = target.api()?.clone();
    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let result = pipeline::run(settings, target.clone(), stop).await?;
    if settings.mode == RunMode::DryRun
        && let Some(warning) = api.dry_run_warning(result.summary.would_send.unwrap_or(0))
    {
        eprintln!("roster: warning: {warning}");
    }
    finish(result, context, prepared.json, None)
}

async fn sync(args: crate::cli::args::SyncArgs, context: &mut RunContext) -> Result<i32, RunError> {
    let options = plan::sync(&args)?;
    run_sync(args.import, &options, context).await
}

/// Runs a sync (or `import --update`) of what `args` names, and reports it.
async fn run_sync(
    args: crate::cli::args::ImportArgs,
    options: &crate::sync::SyncOptions,
    context: &mut RunContext,
) -> Result<i32, RunError> {
    let prepared = prepare_import(args, context).await?;
    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let (result, summary) =
        crate::sync::run(&prepared.settings, prepared.target.clone(), options, stop).await?;
    finish(result, context, prepared.json, Some(&summary))
}

async fn validate(
    args: crate::cli::args::ValidateArgs,
    context: &mut RunContext,
) -> Result<i32, RunError> {
    let ValidatePlan {
        spec,
        settings,
        print_mapping,
        json,
    } = plan::validate(args)?;
    context.target = Some(spec.name.clone());
    let target = Arc::new(targets::build_schema(&spec)?);
    if print_mapping {
        let (_, mapping) = pipeline::prepare(&settings, &target)?;
        for line in mapping.describe() {
            eprintln!("{line}");
        }
    }
    let result = pipeline::run(&settings, target.clone(), Arc::new(Stop::default())).await?;
    finish(result, context, json, None)
}

/// Prints the summary and turns the result into an exit code: a stop's own code first
/// (aborted 3, try again 5, internal 70, interrupted 130), then rows refused in this run (1:
/// fix the file), then rows left failed (5: a re-run retries them), else 0.
fn finish(
    result: pipeline::RunResult,
    context: &RunContext,
    json: bool,
    sync: Option<&crate::sync::SyncSummary>,
) -> Result<i32, RunError> {
    let summary = &result.summary;
    if sync.is_none()
        && summary.requests == 0
        && summary.skipped > 0
        && summary.skipped + summary.duplicates_of_done + summary.still_refused
            == summary.rows - summary.invalid - (summary.duplicates - summary.duplicates_of_done)
    {
        eprintln!(
            "roster: nothing to send: all {} valid rows are already done according to the ledger",
            summary.skipped
        );
    }
    eprint!("{}", summary.render(&context.headline()));
    if let Some(sync) = sync {
        eprint!("{}", sync.render());
    }
    let (outcome, stopped) = match result.stopped {
        Some(reason) => {
            let word = reason.label();
            let message = reason.message().to_string();
            let error = RunError::from(reason);
            let outcome = Outcome {
                word,
                reason: Some(message),
                exit_code: error.exit_code(),
            };
            (outcome, Some(error))
        }
        None => {
            let mut code = exit_code(summary);
            // A held leaver step comes first: it is what cron must not miss.
            if let Some(sync) = sync {
                if !sync.held.is_empty() {
                    code = crate::sync::EXIT_LEAVERS_HELD;
                } else if code == EXIT_OK && sync.change_failures > 0 {
                    code = EXIT_RETRY_LATER;
                }
            }
            let (word, reason) = match code {
                EXIT_OK => ("done", None),
                crate::sync::EXIT_LEAVERS_HELD => (
                    "held",
                    Some(format!(
                        "leaver step held back: {}",
                        sync.map(|s| s.held.join("; ")).unwrap_or_default()
                    )),
                ),
                EXIT_ROWS_REFUSED => ("refused", None),
                _ => (
                    "incomplete",
                    Some("rows failed or were not processed: a re-run retries them".to_string()),
                ),
            };
            let outcome = Outcome {
                word,
                reason,
                exit_code: code,
            };
            (outcome, None)
        }
    };
    if json {
        let mut record = context.json(&outcome, Some(summary));
        if let Some(sync) = sync
            && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(&record)
        {
            map.insert(
                "sync".into(),
                serde_json::to_value(sync).unwrap_or_default(),
            );
            record = serde_json::Value::Object(map).to_string();
        }
        print_stdout(&format!("{record}\n"))?;
    }
    if let Some(error) = stopped {
        eprintln!("roster: {error}");
    }
    Ok(outcome.exit_code)
}

/// The exit code of a run that was not stopped.
fn exit_code(summary: &crate::report::Summary) -> i32 {
    if summary.refused_this_run() > 0 {
        EXIT_ROWS_REFUSED
    } else if summary.failed > 0 || summary.not_processed > 0 {
        EXIT_RETRY_LATER
    } else {
        EXIT_OK
    }
}

async fn sandbox(args: SandboxArgs) -> Result<i32, RunError> {
    let config = SandboxConfig {
        rate: args.rate,
        retry_after_secs: args.retry_after,
        fail_rate: args.fail_rate,
        fail_first: args.fail_first,
        delay: Duration::from_millis(args.delay_ms),
        capacity: args.capacity,
        seed: args.seed,
        token: if args.require_token {
            let token = std::env::var("ROSTER_TOKEN").unwrap_or_default();
            if token.is_empty() {
                return Err(RunError::Usage(
                    "--require-token needs ROSTER_TOKEN in the environment".into(),
                ));
            }
            Some(token)
        } else {
            None
        },
        profile: args.profile,
        // The vendor profiles accept each ROSTER_* variable set here, else the defaults.
        credentials: SandboxCredentials::default().overridden_by(|name| std::env::var(name).ok()),
        token_ttl_secs: args.token_ttl,
        token_uses: args.token_uses,
        quota: args.quota,
        throttle_rate: args.throttle_rate,
        reset_rate: args.reset_rate,
        drop_after_commit_rate: args.drop_after_commit_rate,
        allow_duplicates: args.allow_duplicates,
        drop_first_answers: args.drop_first_answers,
        no_patch: false,
    };
    let sandbox = Sandbox::start(config, args.port)
        .await
        .map_err(|e| RunError::Startup(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    eprintln!(
        "roster: sandbox listening on {} (POST /users; Ctrl-C to stop)",
        sandbox.base_url()
    );
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
    eprintln!(
        "roster: vendor profiles under {}/<profile> ({}); credentials: the ROSTER_* variables of this environment, else the sandbox defaults",
        sandbox.base_url(),
        names.join(", ")
    );
    wait_for_signal().await;
    let stats = sandbox.stats();
    eprintln!(
        "roster: sandbox stopped: {} requests, {} created, {} conflicts, {} invalid, {} throttled, {} faults",
        stats.requests,
        stats.created,
        stats.conflicts,
        stats.invalid,
        stats.throttled,
        stats.faults
    );
    Ok(EXIT_OK)
}

/// A SQLite file to read the ledger `given` names from: the file itself, or a copy of a
/// PostgreSQL ledger in `scratch`.
fn readable_ledger(given: &Path, scratch: &tempfile::TempDir) -> Result<PathBuf, RunError> {
    match LedgerLocation::parse(given)? {
        LedgerLocation::Sqlite(path) => Ok(path),
        LedgerLocation::Postgres(location) => {
            let copy = scratch.path().join("ledger.sqlite");
            crate::ledger::copy::snapshot_to_sqlite(&location, None, &copy)?;
            Ok(copy)
        }
    }
}

fn ledger(command: LedgerCommand) -> Result<i32, RunError> {
    let scratch = tempfile::tempdir()
        .map_err(|e| RunError::Startup(format!("cannot create a temporary directory: {e}")))?;
    match command {
        LedgerCommand::Copy { from, to } => {
            let (from, to) = (LedgerLocation::parse(&from)?, LedgerLocation::parse(&to)?);
            let copied = crate::ledger::copy::copy(&from, &to, None)?;
            eprintln!(
                "roster: copied {} people, {} runs and {} outputs from `{}` to `{}`",
                copied.entries,
                copied.runs,
                copied.outputs,
                from.shown(),
                to.shown()
            );
            let (key_from, key_to) = (
                PasswordKey::path_for_ledger(&from),
                PasswordKey::path_for_ledger(&to),
            );
            if key_from.is_file() && key_from != key_to {
                eprintln!(
                    "roster: note: generated passwords derive from `{}`: keep it as `{}` where \
                     the job runs, or a resumed run derives other passwords",
                    key_from.display(),
                    key_to.display()
                );
            }
            Ok(EXIT_OK)
        }
        LedgerCommand::Export {
            ledger,
            format,
            state,
            target,
            output,
        } => {
            let filter = ExportFilter { state, target };
            let given = ledger;
            let ledger = readable_ledger(&given, &scratch)?;
            match output {
                Some(path) => {
                    // `-o roster-ledger.sqlite` would truncate the ledger before reading it.
                    crate::report::outputs::check(&given, Some(&ledger), &[("--output", &path)])?;
                    let file = crate::files::create(&path, crate::files::Privacy::Personal)
                        .map_err(|e| RunError::Output {
                            path: path.clone(),
                            source: e,
                        })?;
                    let mut out = std::io::BufWriter::new(file);
                    export::export(&ledger, &filter, format, &mut out)?;
                    std::io::Write::flush(&mut out)
                        .map_err(|e| RunError::Output { path, source: e })?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    export::export(&ledger, &filter, format, &mut out)?;
                    std::io::Write::flush(&mut out).map_err(RunError::stdout)?;
                }
            }
            Ok(EXIT_OK)
        }
        LedgerCommand::Stats { ledger } => {
            print_stdout(&export::stats(&readable_ledger(&ledger, &scratch)?)?)?;
            Ok(EXIT_OK)
        }
    }
}
