//! The command line as clap reads it: commands, flags, their defaults and their checks.

use crate::input::Format;
use crate::input::decode::encoding_for_label;
use crate::ledger::export::ExportFormat;
use crate::report::ErrorFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use roster_sandbox::Profile;
use std::path::PathBuf;
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
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log lines: by default text logs carry warnings and JSON logs also the run's start
    /// and finish; `-v` adds the run events and a debug line per attempt (status, latency,
    /// retry delay), `-vv` everything (`RUST_LOG`, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
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
    /// Make the target match FILE: create joiners, update movers, handle leavers.
    #[command(
        after_help = concat!("FILE is the whole truth for the target: people the ledger knows who are absent from it are\nleavers. Nobody is touched without --leavers deactivate|delete, and never when a safeguard\nholds the leaver step back (too many leavers, an input that looks damaged, fewer absences\nthan --leaver-after); creates and updates still run.\n\nExamples:\n  roster sync hr-export.csv --target scim --base-url https://idp.example.com/scim/v2 --dry-run --plan plan.html\n  roster sync hr-export.csv --target scim --base-url … --dry-run --plan plan.json\n  roster sync hr-export.csv --target scim --base-url … --apply plan.json --leavers deactivate\n\n", exit_codes!(), "\n  6    sync: the leaver step was held back by a safeguard (see the message)")
    )]
    Sync(SyncArgs),
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
    /// Write a file to start from: the target's columns, one example row that passes.
    #[command(
        after_help = "Examples:\n  roster template --target cryptlex > people.csv\n  roster template --target scim -o people.xlsx   # with pick lists and an About sheet"
    )]
    Template(TemplateArgs),
    /// Print a completion script for SHELL on stdout.
    #[command(
        after_help = "Examples:\n  roster completions bash > ~/.local/share/bash-completion/completions/roster\n  roster completions zsh > \"${fpath[1]}/_roster\"\n  roster completions fish > ~/.config/fish/completions/roster.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff) on stdout: roster's, or a command's (`roster-import(1)`).
    #[command(
        after_help = "Examples:\n  roster man > roster.1 && man ./roster.1\n  roster man import > roster-import.1\n  roster man ledger export > roster-ledger-export.1"
    )]
    Man {
        /// The command whose page to print (default: roster's own).
        command: Vec<String>,
    },
    /// Run the fake target API standalone.
    #[command(
        after_help = "Examples:\n  roster sandbox --port 8080 --rate 100 --fail-rate 0.05\n  roster sandbox --profile cl2c   # also serve cl2c at the root\n\nVendor profiles are served under /<profile> (cryptlex, crayon, cl2c, nexway, cradl, scim)\nand accept each ROSTER_* variable set in the sandbox's environment, else these defaults:\n  ROSTER_TOKEN=sandbox-token ROSTER_API_KEY=sandbox-key ROSTER_TENANT=sandbox-tenant\n  ROSTER_CLIENT_ID=sandbox-client ROSTER_CLIENT_SECRET=sandbox-secret\n  ROSTER_USERNAME=sandbox-user ROSTER_PASSWORD=sandbox-password ROSTER_REALM=sandbox"
    )]
    Sandbox(SandboxArgs),
}

/// Options shared by `import` and `validate`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The people file (CSV, TSV, JSONL, XLSX, XLS or ODS), or `-` for standard input (its
    /// format from --format, else from its first bytes).
    pub file: PathBuf,
    /// The target API profile (default: the in-process sandbox; `roster targets` describes each).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::targets::names()))]
    pub target: Option<String>,
    /// The generic target's TOML description (`--target http --profile FILE.toml`).
    #[arg(long, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// A TOML config file (flags override it) [default: roster.toml here, if there is one].
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
    /// Send a person whose only invalid cells are FIELD's without them, each listed in the
    /// error file as a warning (repeatable; optional fields only) [default: such a row is
    /// refused].
    #[arg(long = "drop-invalid", value_name = "FIELD")]
    pub drop_invalid: Vec<String>,
    /// Where refused rows go [default: beside the input: `people.errors.csv`,
    /// `hr.errors.tsv`, `people.errors.xlsx`, or `.errors.jsonl`].
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Also write every row of the input, in its order, with its outcome, the target's id
    /// for the person and any message (CSV in the input's dialect; XLSX when FILE ends in
    /// `.xlsx`; JSONL for `.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// The error file's format [default: the extension of --errors, else xlsx for a
    /// spreadsheet input and csv for any other].
    #[arg(long, value_enum)]
    pub errors_format: Option<ErrorFormat>,
    /// Keep password cells in the error file instead of blanking them.
    #[arg(long)]
    pub keep_secrets: bool,
    /// Print the first N request bodies a dry run or validation would send (secrets redacted).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub show_requests: usize,
    /// Write a self-contained HTML report of the run here [default: none].
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
    /// Attempts allowed at once after an idle spell [default: the target's, 2 for most;
    /// `roster targets`].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub burst: Option<u32>,
    /// Most requests in flight at once. Not given, roster starts at 8 and finds the pace the
    /// server sustains (more while latency holds, fewer on 5xx, timeouts or rising latency)
    /// up to 64; given, it starts there and only comes down when the server pushes back
    /// [default: adaptive, up to 64].
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
    /// Stop (exit 3) once more than N rows are refused in this run [default: no limit].
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,
    /// Stop (exit 3) once more than this share of the rows (0-1, judged after 100) is refused
    /// [default: no limit].
    #[arg(long, value_name = "P", value_parser = parse_share)]
    pub max_error_rate: Option<f64>,
    /// The results ledger: a SQLite file, or postgres://USER@HOST:PORT/DB (password from
    /// PGPASSWORD or ~/.pgpass) [default: roster-ledger.sqlite].
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Do everything but send: report what would be created, skipped and refused.
    #[arg(long)]
    pub dry_run: bool,
    /// Also update people whose values changed since roster last sent them (as `sync`
    /// does, without its leaver step: the file may be a delta).
    #[arg(long)]
    pub update: bool,
}

/// `roster sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Everything `import` takes.
    #[command(flatten)]
    pub import: ImportArgs,
    /// What to do with leavers: list them in `<input>.leavers.csv` and touch nobody, disable
    /// them (where the target can; else report), or delete them (where it documents a DELETE).
    #[arg(long, value_enum, default_value_t = crate::sync::plan::LeaverMode::Report)]
    pub leavers: crate::sync::plan::LeaverMode,
    /// Most leavers acted on, as a count `N` or a share `P%` of the people known; more holds
    /// the leaver step back (exit 6) [default: 5% of the people known, at least 1, at most 50].
    #[arg(long, value_name = "N|P%")]
    pub max_leavers: Option<String>,
    /// Syncs in a row a person must be absent from before they are a leaver (until then,
    /// a pending leaver) [default: 1].
    #[arg(long, value_name = "RUNS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub leaver_after: Option<u32>,
    /// Write the plan (every create, update with before → after, leaver, safeguard) here:
    /// `.json` (for --apply), `.csv` or `.html`.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Run exactly this plan (from `--dry-run --plan FILE.json`); refused if the input, the
    /// target or the ledger changed since it was made.
    #[arg(long, value_name = "PLAN.json", conflicts_with = "dry_run")]
    pub apply: Option<PathBuf>,
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
    /// The OAuth2 token endpoint the import would use: checked as the import checks it
    /// (nothing is fetched).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Plan generated passwords for users without one, as the import would (nothing is
    /// written to FILE): a target that requires passwords then validates a file without them.
    #[arg(long, value_name = "FILE")]
    pub generate_passwords: Option<PathBuf>,
}

/// `roster template`.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The target whose columns the template holds [default: sandbox].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::targets::names()))]
    pub target: Option<String>,
    /// The generic target's TOML description (`--target http --profile FILE.toml`).
    #[arg(long, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// A target-specific setting (repeatable), as for `import`.
    #[arg(long = "target-option", value_name = "KEY=VALUE")]
    pub target_option: Vec<String>,
    /// The template's format [default: from the extension of -o, else csv].
    #[arg(long, value_enum)]
    pub format: Option<crate::template::TemplateFormat>,
    /// Write it here [default: standard output, for CSV].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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
    /// Creates handled at once, as a server with that many workers (0 = any number): beyond
    /// it requests queue, and some answer 500 after their user was created.
    #[arg(long, default_value_t = 0)]
    pub capacity: u32,
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
        /// The results ledger (a SQLite file, or postgres://USER@HOST:PORT/DB).
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
        /// The results ledger (a SQLite file, or postgres://USER@HOST:PORT/DB).
        #[arg(long, default_value = "roster-ledger.sqlite")]
        ledger: PathBuf,
    },
    /// Copy a ledger into another: SQLite to PostgreSQL, and back.
    #[command(
        after_help = "The destination must hold none of the copied targets' people; both stay as they are \
if anything fails. The password for PostgreSQL comes from PGPASSWORD or ~/.pgpass.\n\n\
Example:\n  roster ledger copy --from roster-ledger.sqlite --to postgres://roster@db:5432/hr"
    )]
    Copy {
        /// The ledger to copy (a SQLite file, or postgres://USER@HOST:PORT/DB).
        #[arg(long)]
        from: PathBuf,
        /// The ledger to copy into (created if new).
        #[arg(long)]
        to: PathBuf,
    },
}

/// `--rate`: 0 (no limit) or between 0.01 and 1,000,000 attempts per second.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
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
pub(crate) fn parse_timeout(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    match secs {
        s if (0.1..=86_400.0).contains(&s) => Ok(s),
        _ => Err("must be from 0.1 to 86400 seconds".into()),
    }
}

/// `--concurrency`: from 1 to 10,000 requests in flight.
pub(crate) fn parse_concurrency(text: &str) -> Result<usize, String> {
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
