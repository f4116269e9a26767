//! The command line: clap definitions, merging flags with the config file, and running the
//! chosen command. Returns the process exit code; only this edge uses `anyhow`-style chains.

use crate::auth::Credentials;
use crate::error::{
    EXIT_INTERRUPTED, EXIT_OK, EXIT_RETRY_LATER, EXIT_ROWS_REFUSED, EXIT_USAGE, RunError,
    print_stdout,
};
use crate::input::decode::encoding_for_label;
use crate::input::{Format, InputOptions};
use crate::ledger::export::{self, ExportFilter, ExportFormat};
use crate::model::{Field, Stop, StopReason};
use crate::pipeline::{self, ImportSettings, RunMode};
use crate::prepare::mapping::{MappingOptions, parse_assignment};
use crate::report::ErrorFormat;
use crate::report::ProgressMode;
use crate::retry::RetryPolicy;
use crate::submit::SubmitSettings;
use crate::targets::{self, TargetSpec};
use crate::values::Conventions;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roster_sandbox::{Profile, Sandbox, SandboxConfig, SandboxCredentials};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The exit codes, as `--help` lists them (the contract scripts rely on; see `error.rs`): a
/// macro, so `concat!` can join it to a command's examples.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0    done: every row created, already present or skipped
  1    rows were refused in this run: fix the error file and feed it back in
  2    bad usage, config or unreadable input
  3    run aborted: credentials refused, a systematic refusal, a quota
  4    the ledger is held by another run
  5    failures left that a re-run will retry (target down, a wait too long, a disk full)
  70   internal error: roster lost track of rows (a bug; please report it)
  130  interrupted (Ctrl-C / SIGTERM): run again to resume"
    };
}

/// Bulk-import people into SaaS products through their "create user" REST APIs.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about, long_about = None, after_help = exit_codes!())]
pub struct Cli {
    /// Log format on stderr (`RUST_LOG` sets the level).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// roster's commands.
// Parsed once per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create every valid person in FILE through the target's API.
    #[command(
        after_help = concat!("Examples:\n  roster import samples/people.csv            # in-process sandbox, nothing leaves the machine\n  roster import people.csv --target sandbox --base-url http://127.0.0.1:8080 --rate 50\n  roster import people.csv --map email=\"Work Mail\" --set role=user --json\n\n", exit_codes!())
    )]
    Import(ImportArgs),
    /// Map, normalise and validate FILE without any network or ledger.
    #[command(
        after_help = "Example:\n  roster validate samples/people.csv --errors /tmp/refused.csv"
    )]
    Validate(ValidateArgs),
    /// Audit the results ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// List the built-in targets and the environment variables they read.
    #[command(after_help = "Example:\n  roster targets")]
    Targets,
    /// Run the fake target API standalone.
    #[command(
        after_help = "Examples:\n  roster sandbox --port 8080 --rate 100 --fail-rate 0.05\n  roster sandbox --profile cl2c   # also serve cl2c at the root\n\nVendor profiles are served under /<profile> (cryptlex, crayon, cl2c, nexway, cradl, scim)\nand accept each ROSTER_* variable set in the sandbox's environment, else these defaults:\n  ROSTER_TOKEN=sandbox-token ROSTER_API_KEY=sandbox-key ROSTER_TENANT=sandbox-tenant\n  ROSTER_CLIENT_ID=sandbox-client ROSTER_CLIENT_SECRET=sandbox-secret\n  ROSTER_USERNAME=sandbox-user ROSTER_PASSWORD=sandbox-password ROSTER_REALM=sandbox"
    )]
    Sandbox(SandboxArgs),
}

/// Options shared by `import` and `validate`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The people file (CSV, TSV, JSONL, XLSX, XLS or ODS).
    pub file: PathBuf,
    /// The target API profile (default: the in-process sandbox).
    #[arg(long)]
    pub target: Option<String>,
    /// The generic target's TOML description (`--target http --profile FILE.toml`).
    #[arg(long, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// A TOML config file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read FIELD from COLUMN (repeatable), e.g. `--map email="Work Mail"`.
    #[arg(long = "map", value_name = "FIELD=COLUMN")]
    pub map: Vec<String>,
    /// Default for FIELD when its cell is empty (repeatable), e.g. `--set role=user`.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// A target-specific setting (repeatable), e.g. `--target-option app_client_id=cradl:app-client:x`
    /// (`roster targets` lists them).
    #[arg(long = "target-option", value_name = "KEY=VALUE")]
    pub target_option: Vec<String>,
    /// The input format (default: from the file extension).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The worksheet of an XLSX, XLS or ODS file (default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Region for phone numbers written without a country code when the row has no country:
    /// an ISO code or a name, e.g. `--region GB` or `--region Germany`.
    #[arg(long, value_name = "CC")]
    pub region: Option<String>,
    /// Read SYNONYM in the role column as ROLE (repeatable), e.g. `--role-synonym "Team Lead=user"`.
    #[arg(long = "role-synonym", value_name = "SYNONYM=ROLE")]
    pub role_synonym: Vec<String>,
    /// The input's text encoding, e.g. utf-8, utf-16le, windows-1252 (default: detected).
    #[arg(long, value_parser = parse_encoding)]
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// The CSV delimiter: one character, or `tab` (default: `sep=` line, else sniffed).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Where refused rows go (default: `<input>.errors.csv`, or `.errors.jsonl`).
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// The error file's format.
    #[arg(long, value_enum)]
    pub errors_format: Option<ErrorFormat>,
    /// Keep password cells in the error file instead of blanking them.
    #[arg(long)]
    pub keep_secrets: bool,
    /// Print the first N request bodies a dry run or validation would send (secrets redacted).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub show_requests: usize,
    /// Write a self-contained HTML report of the run here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output, only errors and the summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `roster import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Input, mapping and output options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The target's base URL (default: the vendor's public one, or the in-process sandbox).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The OAuth2 token endpoint (default: the vendor's, see `roster targets`).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Give users without a password a strong random one, written only to FILE (mode 0600,
    /// one `identity,password` line per created user).
    #[arg(long, value_name = "FILE")]
    pub generate_passwords: Option<PathBuf>,
    /// Attempts per second, retries included (0 = no limit; default: the target's).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Attempts allowed at once after an idle spell.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub burst: Option<u32>,
    /// Most requests in flight at once [default: 16].
    #[arg(long, value_parser = parse_concurrency)]
    pub concurrency: Option<usize>,
    /// Per-request timeout in seconds [default: 30].
    #[arg(long, value_parser = parse_timeout)]
    pub timeout: Option<f64>,
    /// Retries per row after the first attempt [default: 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_retries: Option<u32>,
    /// The longest wait accepted from the target (Retry-After, a rate-limit reset), e.g.
    /// `90s`, `10m`; a longer one stops the run with exit 5 (try again later) [default: 5m].
    #[arg(long, value_parser = parse_max_wait)]
    pub max_wait: Option<Duration>,
    /// Send again rows the API refused in an earlier run even when they are unchanged.
    #[arg(long)]
    pub retry_rejected: bool,
    /// Stop (exit 3) once more than N rows are refused in this run.
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Stop (exit 3) once more than this share of the rows (0-1, judged after 100) is refused.
    #[arg(long, value_name = "P", value_parser = parse_share)]
    pub max_error_rate: Option<f64>,
    /// The results ledger (SQLite).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Do everything but send: report what would be created, skipped and refused.
    #[arg(long)]
    pub dry_run: bool,
}

/// `roster validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Input, mapping and output options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Print which column feeds which field, and the unused columns.
    #[arg(long)]
    pub print_mapping: bool,
}

/// `roster sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests per second before answering 429 (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds in the 429's Retry-After.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Probability of an injected 500/502/503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// The first N attempts for each email fail with 503.
    #[arg(long, default_value_t = 0)]
    pub fail_first: u32,
    /// Delay before each answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Seed for the injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Require `Authorization: Bearer $ROSTER_TOKEN` (read from the environment).
    #[arg(long)]
    pub require_token: bool,
    /// Also serve this vendor profile at the root (every profile is always served under
    /// `/<name>`, e.g. `/cl2c/v1/cl2c/user`).
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<Profile>,
    /// Lifetime of issued tokens in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Issued tokens stop working after N requests (to exercise renewal after a 401).
    #[arg(long, value_name = "N")]
    pub token_uses: Option<u32>,
    /// Users a profile creates before answering 429 "Limit Exceeded" (Cradl's quota).
    #[arg(long)]
    pub quota: Option<u64>,
    /// Probability of an injected 429 (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Probability of closing the connection before doing anything.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Probability of creating the user, then closing the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_after_commit_rate: f64,
    /// Create again when an email is taken (a double send shows as a second user).
    #[arg(long)]
    pub allow_duplicates: bool,
    /// The first N creations of each email are committed, then their answer is lost.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drop_first_answers: u32,
}

fn parse_profile(name: &str) -> Result<Profile, String> {
    Profile::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        format!("unknown profile (profiles: {})", names.join(", "))
    })
}

/// `roster ledger …`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Write every identity's record as CSV or JSONL.
    #[command(
        after_help = "Examples:\n  roster ledger export --state rejected > refused.csv\n  roster ledger export --format jsonl --target sandbox"
    )]
    Export {
        /// The results ledger.
        #[arg(long, default_value = "roster-ledger.sqlite")]
        ledger: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only identities in this state (created, exists, rejected, failed, invalid, sending).
        #[arg(long)]
        state: Option<String>,
        /// Only this target (profile name, or profile@base-url).
        #[arg(long)]
        target: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Count identities per target and state.
    #[command(after_help = "Example:\n  roster ledger stats --ledger nightly.sqlite")]
    Stats {
        /// The results ledger.
        #[arg(long, default_value = "roster-ledger.sqlite")]
        ledger: PathBuf,
    },
}

/// `--rate`: 0 (no limit) or between 0.01 and 1,000,000 attempts per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    match rate {
        0.0 => Ok(0.0),
        r if (0.01..=1_000_000.0).contains(&r) => Ok(r),
        _ => Err("must be 0 (no limit) or from 0.01 to 1000000 per second".into()),
    }
}

/// A share from 0 to 1 (`0.05`), or a percentage (`5%`).
fn parse_share(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let share: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a share"))?;
    let share = share / scale;
    match share {
        s if (0.0..=1.0).contains(&s) => Ok(s),
        _ => Err("must be from 0 to 1 (or 0% to 100%)".into()),
    }
}

/// `--timeout`: from 0.1 s to a day.
fn parse_timeout(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    match secs {
        s if (0.1..=86_400.0).contains(&s) => Ok(s),
        _ => Err("must be from 0.1 to 86400 seconds".into()),
    }
}

/// `--concurrency`: from 1 to 10,000 requests in flight.
fn parse_concurrency(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    match n {
        1..=10_000 => Ok(n),
        _ => Err("must be from 1 to 10000".into()),
    }
}

/// `--max-wait`: seconds (`90`) or a duration (`90s`, `10m`), at most a day.
fn parse_max_wait(text: &str) -> Result<Duration, String> {
    let wait = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => {
            Duration::from_secs_f64(secs)
        }
        Ok(_) => return Err("must be from 0 to 86400 seconds".into()),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); e.g. 90s, 10m"))?,
    };
    if wait > Duration::from_secs(86_400) {
        return Err("must be at most a day".into());
    }
    Ok(wait)
}

fn parse_encoding(label: &str) -> Result<&'static encoding_rs::Encoding, String> {
    encoding_for_label(label)
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!("`{text}` is not one ASCII character (or `tab`)")),
    }
}

/// `roster.toml`: the same settings as the flags; flags win. Secrets never live here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Target profile.
    pub target: Option<String>,
    /// Base URL.
    pub base_url: Option<String>,
    /// Attempts per second.
    pub rate: Option<f64>,
    /// Burst.
    pub burst: Option<u32>,
    /// In-flight requests.
    pub concurrency: Option<usize>,
    /// Timeout in seconds.
    pub timeout: Option<f64>,
    /// Retries per row.
    pub max_retries: Option<u32>,
    /// Ledger path.
    pub ledger: Option<PathBuf>,
    /// Error file path.
    pub errors: Option<PathBuf>,
    /// Error file format.
    pub errors_format: Option<ErrorFormat>,
    /// Input format.
    pub format: Option<Format>,
    /// field = "Column".
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// field = "default value".
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// HTML report path.
    pub report: Option<PathBuf>,
    /// credential = "NAME_OF_ENV_VAR": read a credential from another variable than its
    /// `ROSTER_*` default (the config names variables, never holds secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// OAuth2 token endpoint.
    pub token_url: Option<String>,
    /// The generic target's profile file.
    pub profile: Option<PathBuf>,
    /// key = "value" settings of the target (`[target_options]`).
    #[serde(default)]
    pub target_options: BTreeMap<String, String>,
    /// The worksheet to read.
    pub sheet: Option<String>,
    /// Default region for national phone numbers.
    pub region: Option<String>,
    /// "Synonym" = "role" (`[role_synonyms]`).
    #[serde(default)]
    pub role_synonyms: BTreeMap<String, String>,
}

impl ConfigFile {
    /// The keys a config file may hold.
    pub const KEYS: [&'static str; 21] = [
        "target",
        "base_url",
        "rate",
        "burst",
        "concurrency",
        "timeout",
        "max_retries",
        "ledger",
        "errors",
        "errors_format",
        "format",
        "report",
        "map",
        "set",
        "env",
        "token_url",
        "target_options",
        "profile",
        "sheet",
        "region",
        "role_synonyms",
    ];

    /// Reads a config file; an unknown key is an error that suggests the closest valid one.
    pub fn load(path: &Path) -> Result<ConfigFile, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RunError::Usage(format!("cannot read config `{}`: {e}", path.display()))
        })?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| RunError::Usage(format!("config `{}`: {e}", path.display())))?;
        for key in table.keys() {
            if !Self::KEYS.contains(&key.as_str()) {
                let closest = Self::KEYS
                    .iter()
                    .max_by(|a, b| {
                        strsim::jaro_winkler(key, a).total_cmp(&strsim::jaro_winkler(key, b))
                    })
                    .filter(|k| strsim::jaro_winkler(key, k) > 0.7)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(RunError::Usage(format!(
                    "config `{}`: unknown key `{key}`{closest}; secrets never go in the config file, only in ROSTER_* variables",
                    path.display()
                )));
            }
        }
        toml::from_str(&text)
            .map_err(|e| RunError::Usage(format!("config `{}`: {e}", path.display())))
    }
}

/// Parses the command line, runs it and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    init_logging(cli.log_format);
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
            Command::Import(args) => import(args).await,
            Command::Validate(args) => validate(args).await,
            Command::Sandbox(args) => sandbox(args).await,
            Command::Ledger(command) => ledger(command),
            Command::Targets => {
                print_stdout(&targets::describe())?;
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
            e.exit_code()
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("roster=info,warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn mapping_options(common: &CommonArgs, config: &ConfigFile) -> Result<MappingOptions, RunError> {
    let mut options = MappingOptions::default();
    let parse = |text: &str| parse_assignment(text).map_err(RunError::Usage);
    let field = |name: &str| {
        Field::parse(name).ok_or_else(|| RunError::Usage(format!("config: unknown field `{name}`")))
    };
    for (name, column) in &config.map {
        match crate::prepare::mapping::metadata_key(name) {
            Some(key) => options.metadata.push((key.to_string(), column.clone())),
            None => options.explicit.push((field(name)?, column.clone())),
        }
    }
    for (name, value) in &config.set {
        options.defaults.push((field(name)?, value.clone()));
    }
    for text in &common.map {
        if let Some((name, column)) = text.split_once('=')
            && let Some(key) = crate::prepare::mapping::metadata_key(name)
        {
            options
                .metadata
                .push((key.to_string(), column.trim().to_string()));
            continue;
        }
        options.explicit.push(parse(text)?);
    }
    for text in &common.set {
        options.defaults.push(parse(text)?);
    }
    Ok(options)
}

/// `--region` and the role synonyms (flags after the config's, so flags win).
fn conventions(common: &CommonArgs, config: &ConfigFile) -> Result<Conventions, RunError> {
    let mut conventions = Conventions::default();
    if let Some(written) = common.region.as_ref().or(config.region.as_ref()) {
        let region = crate::values::country::phone_region(written).ok_or_else(|| {
            RunError::Usage(format!(
                "--region `{written}` is not a country (give an ISO code such as GB, or a name)"
            ))
        })?;
        conventions.region = Some(region.to_string());
    }
    for (synonym, role) in &config.role_synonyms {
        conventions.add_role_synonym(synonym, role);
    }
    for text in &common.role_synonym {
        let (synonym, role) = text.split_once('=').ok_or_else(|| {
            RunError::Usage(format!("--role-synonym `{text}`: expected SYNONYM=ROLE"))
        })?;
        conventions.add_role_synonym(synonym, role);
    }
    Ok(conventions)
}

fn load_config(common: &CommonArgs) -> Result<ConfigFile, RunError> {
    match &common.config {
        Some(path) => ConfigFile::load(path),
        None if Path::new("roster.toml").exists() => ConfigFile::load(Path::new("roster.toml")),
        None => Ok(ConfigFile::default()),
    }
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

/// `--target-option key=value` (and the config's `[target_options]`) as one map; flags win.
fn target_options(
    common: &CommonArgs,
    config: &ConfigFile,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut options = config.target_options.clone();
    for item in &common.target_option {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            RunError::Usage(format!("--target-option `{item}`: expected KEY=VALUE"))
        })?;
        options.insert(key.trim().to_string(), value.to_string());
    }
    Ok(options)
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

async fn import(args: ImportArgs) -> Result<i32, RunError> {
    let config = load_config(&args.common)?;
    let mapping = mapping_options(&args.common, &config)?;
    let spec = TargetSpec {
        name: args
            .common
            .target
            .clone()
            .or(config.target.clone())
            .unwrap_or_default(),
        base_url: args.base_url.or(config.base_url.clone()),
        token_url: args.token_url.or(config.token_url.clone()),
        in_process: false,
        credentials: Credentials::from_env_named(&config.env).map_err(RunError::Usage)?,
        options: target_options(&args.common, &config)?,
        profile: args.common.profile.clone().or(config.profile.clone()),
    };
    let (spec, _sandbox) = resolve_target(spec, args.common.quiet).await?;
    let target = targets::build(&spec)?;
    let defaults = SubmitSettings::default();
    let timeout = match args.timeout {
        Some(t) => t,
        None => match config.timeout {
            Some(t) => parse_timeout(&t.to_string())
                .map_err(|e| RunError::Usage(format!("config `timeout`: {e}")))?,
            None => defaults.timeout.as_secs_f64(),
        },
    };
    let rate = match args.rate {
        Some(r) => r,
        None => match config.rate {
            Some(r) => parse_rate(&r.to_string())
                .map_err(|e| RunError::Usage(format!("config `rate`: {e}")))?,
            None => target.default_rate(),
        },
    };
    let concurrency = match args.concurrency.or(config.concurrency) {
        Some(n) => parse_concurrency(&n.to_string())
            .map_err(|e| RunError::Usage(format!("--concurrency: {e}")))?,
        None => defaults.concurrency,
    };
    let submit = SubmitSettings {
        concurrency,
        rate,
        burst: args
            .burst
            .or(config.burst)
            .unwrap_or(target.default_burst())
            .max(1),
        timeout: Duration::from_secs_f64(timeout),
        retry: RetryPolicy {
            max_retries: args
                .max_retries
                .or(config.max_retries)
                .unwrap_or(defaults.retry.max_retries),
            ..RetryPolicy::default()
        },
        max_wait: args.max_wait.unwrap_or(defaults.max_wait),
    };
    let common = &args.common;
    let ledger = args
        .ledger
        .or(config.ledger.clone())
        .unwrap_or_else(|| PathBuf::from("roster-ledger.sqlite"));
    let mode = if args.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Send
    };
    let mut settings = import_settings(common, &config, mapping, ledger, submit, mode)?;
    settings.generate_passwords = args.generate_passwords.clone();
    settings.retry_rejected = args.retry_rejected;
    settings.stop_rules = crate::report::StopRules {
        max_errors: args.max_errors,
        max_error_rate: args.max_error_rate,
    };
    let stop = Arc::new(Stop::default());
    watch_signals(stop.clone());
    let result = pipeline::run(&settings, target.clone(), stop).await?;
    if mode == RunMode::DryRun
        && let Some(warning) = target.dry_run_warning(result.summary.would_send.unwrap_or(0))
    {
        eprintln!("roster: warning: {warning}");
    }
    finish(result, target.name(), common.json)
}

async fn validate(args: ValidateArgs) -> Result<i32, RunError> {
    let config = load_config(&args.common)?;
    let mapping = mapping_options(&args.common, &config)?;
    let name = args
        .common
        .target
        .clone()
        .or(config.target.clone())
        .unwrap_or_else(|| "sandbox".into());
    // No network: the target is only asked for its rules and bodies, so any URL will do.
    let spec = TargetSpec {
        name,
        base_url: Some(
            config
                .base_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:9".into()),
        ),
        in_process: true,
        options: target_options(&args.common, &config)?,
        profile: args.common.profile.clone().or(config.profile.clone()),
        ..TargetSpec::default()
    };
    let target = targets::build(&spec)?;
    let common = &args.common;
    // A validation opens no ledger, but reads what the ledger recorded of the error file so
    // it never overwrites one the user changed.
    let ledger = config
        .ledger
        .clone()
        .unwrap_or_else(|| PathBuf::from("roster-ledger.sqlite"));
    let settings = import_settings(
        common,
        &config,
        mapping,
        ledger,
        SubmitSettings::default(),
        RunMode::ValidateOnly,
    )?;
    if args.print_mapping {
        let (_, mapping) = pipeline::prepare(&settings, target.as_ref())?;
        for line in mapping.describe() {
            eprintln!("{line}");
        }
    }
    let result = pipeline::run(&settings, target.clone(), Arc::new(Stop::default())).await?;
    finish(result, target.name(), common.json)
}

/// The run's settings from the shared flags, the config file and what the command decided.
fn import_settings(
    common: &CommonArgs,
    config: &ConfigFile,
    mapping: MappingOptions,
    ledger: PathBuf,
    submit: SubmitSettings,
    mode: RunMode,
) -> Result<ImportSettings, RunError> {
    let errors_format = common
        .errors_format
        .or(config.errors_format)
        .unwrap_or_default();
    let errors = common
        .errors
        .clone()
        .or(config.errors.clone())
        .unwrap_or_else(|| pipeline::default_errors_path(&common.file, errors_format));
    Ok(ImportSettings {
        input: common.file.clone(),
        read: InputOptions {
            format: common.format.or(config.format),
            encoding: common.encoding,
            delimiter: common.delimiter,
            sheet: common.sheet.clone().or(config.sheet.clone()),
        },
        conventions: conventions(common, config)?,
        mapping,
        ledger,
        retry_rejected: false,
        errors,
        errors_format,
        keep_secrets: common.keep_secrets,
        show_requests: common.show_requests,
        report: common.report.clone().or(config.report.clone()),
        submit,
        mode,
        progress: ProgressMode::detect(common.quiet),
        generate_passwords: None,
        stop_rules: Default::default(),
    })
}

/// Prints the summary and turns the result into an exit code: a stop's own code first
/// (aborted 3, try again 5, internal 70, interrupted 130), then rows refused in this run (1:
/// fix the file), then rows left failed (5: a re-run retries them), else 0.
fn finish(result: pipeline::RunResult, target: &str, json: bool) -> Result<i32, RunError> {
    let summary = &result.summary;
    if summary.requests == 0
        && summary.skipped > 0
        && summary.skipped + summary.duplicates_of_done + summary.still_refused
            == summary.rows - summary.invalid - (summary.duplicates - summary.duplicates_of_done)
    {
        eprintln!(
            "roster: nothing to send: all {} valid rows are already done according to the ledger",
            summary.skipped
        );
    }
    eprint!("{}", summary.render(target));
    if json {
        print_stdout(&format!(
            "{}\n",
            serde_json::to_string(summary).unwrap_or_default()
        ))?;
    }
    if let Some(reason) = result.stopped {
        return Err(reason.into_error());
    }
    Ok(exit_code(summary))
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

fn ledger(command: LedgerCommand) -> Result<i32, RunError> {
    match command {
        LedgerCommand::Export {
            ledger,
            format,
            state,
            target,
            output,
        } => {
            let filter = ExportFilter { state, target };
            match output {
                Some(path) => {
                    // `-o roster-ledger.sqlite` would truncate the ledger before reading it.
                    crate::report::outputs::check(&ledger, Some(&ledger), &[("--output", &path)])?;
                    let file = std::fs::File::create(&path).map_err(|e| RunError::Output {
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
            print_stdout(&export::stats(&ledger)?)?;
            Ok(EXIT_OK)
        }
    }
}
