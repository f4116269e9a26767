//! Flags, the config file and the environment, merged into one validated plan per command:
//! every check of what the user asked for is made here, before anything runs.

use super::args::{
    CommonArgs, ImportArgs, ValidateArgs, parse_concurrency, parse_rate, parse_timeout,
};
use super::config::{ConfigFile, load_config};
use crate::auth::Credentials;
use crate::error::RunError;
use crate::input::{Format, InputOptions};
use crate::ledger::LedgerLocation;
use crate::model::Field;
use crate::pipeline::{self, ImportSettings, RunMode};
use crate::prepare::mapping::{MappingOptions, parse_assignment};
use crate::report::ErrorFormat;
use crate::report::{ProgressMode, StopRules};
use crate::submit::RetryPolicy;
use crate::submit::SubmitSettings;
use crate::targets::TargetSpec;
use crate::values::Conventions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// An import (or dry run), planned: where to send, and how.
#[derive(Debug)]
pub struct ImportPlan {
    /// The target as named; with no name (or `sandbox` and no URL), the in-process sandbox
    /// is started when the plan runs.
    pub spec: TargetSpec,
    /// Everything else the run needs. Its rate and burst are filled from `rate` and `burst`,
    /// or the target's own defaults, when the target is built.
    pub settings: ImportSettings,
    /// `--rate` or the config's, when given.
    pub rate: Option<f64>,
    /// `--burst` or the config's, when given.
    pub burst: Option<u32>,
    /// Whether `--concurrency` (or the config's) was given: else a profile's may set it.
    pub concurrency_given: bool,
    /// Print the summary as JSON on stdout.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
}

/// A validation, planned.
#[derive(Debug)]
pub struct ValidatePlan {
    /// The target whose rules and bodies the rows are checked against (no URL needed).
    pub spec: TargetSpec,
    /// The run's settings (no network, no ledger).
    pub settings: ImportSettings,
    /// `--print-mapping`.
    pub print_mapping: bool,
    /// Print the summary as JSON on stdout.
    pub json: bool,
}

/// Plans what `roster sync` adds to an import: leaver rules, the plan file, the plan to apply.
pub fn sync(args: &super::args::SyncArgs) -> Result<crate::sync::SyncOptions, RunError> {
    use crate::sync::plan::{LeaverLimit, LeaverRules};
    let limit = match &args.max_leavers {
        Some(text) => {
            LeaverLimit::parse(text).map_err(|e| RunError::Usage(format!("--max-leavers: {e}")))?
        }
        None => LeaverLimit::Default,
    };
    if let Some(plan) = &args.plan {
        if !args.import.dry_run {
            return Err(RunError::Usage(
                "--plan writes what a sync would do: give it with --dry-run (then --apply the .json)".into(),
            ));
        }
        let ext = plan
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if !matches!(ext.as_deref(), Some("json" | "csv" | "html" | "htm")) {
            return Err(RunError::Usage(format!(
                "--plan {}: the plan is written as .json, .csv or .html",
                plan.display()
            )));
        }
    }
    if args.import.update {
        return Err(RunError::Usage(
            "--update is `import`'s: `sync` always updates".into(),
        ));
    }
    Ok(crate::sync::SyncOptions {
        leaver_step: true,
        rules: LeaverRules {
            mode: args.leavers,
            limit,
            after: args.leaver_after.unwrap_or(1),
        },
        plan: args.plan.clone(),
        apply: args.apply.clone(),
    })
}

/// Plans `roster import`.
pub fn import(args: ImportArgs) -> Result<ImportPlan, RunError> {
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
    check_token_url(&spec)?;
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
        Some(r) => Some(r),
        None => match config.rate {
            Some(r) => Some(
                parse_rate(&r.to_string())
                    .map_err(|e| RunError::Usage(format!("config `rate`: {e}")))?,
            ),
            None => None,
        },
    };
    // Given, the limit starts there and only comes down when the server pushes back; not
    // given, it starts low and finds the server's pace under the default ceiling.
    let (concurrency, start_concurrency) = match args.concurrency.or(config.concurrency) {
        Some(n) => {
            let n = parse_concurrency(&n.to_string())
                .map_err(|e| RunError::Usage(format!("--concurrency: {e}")))?;
            (n, n)
        }
        None => (defaults.concurrency, defaults.start_concurrency),
    };
    let submit = SubmitSettings {
        concurrency,
        start_concurrency,
        rate: rate.unwrap_or(0.0),
        timeout: Duration::from_secs_f64(timeout),
        retry: RetryPolicy {
            max_retries: args
                .max_retries
                .or(config.max_retries)
                .unwrap_or(defaults.retry.max_retries),
            ..RetryPolicy::default()
        },
        max_wait: args.max_wait.unwrap_or(defaults.max_wait),
        ..defaults
    };
    let ledger = args
        .ledger
        .clone()
        .or(config.ledger.clone())
        .unwrap_or_else(|| PathBuf::from("roster-ledger.sqlite"));
    let ledger = LedgerLocation::parse(&ledger)?;
    let mode = match args.dry_run {
        true => RunMode::DryRun,
        false => RunMode::Send,
    };
    let mut settings = import_settings(&args.common, &config, mapping, ledger, submit, mode)?;
    settings.generate_passwords = args.generate_passwords.clone();
    settings.retry_rejected = args.retry_rejected;
    settings.stop_rules = StopRules {
        max_errors: args.max_errors,
        max_error_rate: args.max_error_rate,
    };
    Ok(ImportPlan {
        spec,
        settings,
        rate,
        burst: args.burst.or(config.burst),
        concurrency_given: args.concurrency.or(config.concurrency).is_some(),
        json: args.common.json,
        quiet: args.common.quiet,
    })
}

/// Plans `roster validate`.
pub fn validate(args: ValidateArgs) -> Result<ValidatePlan, RunError> {
    let config = load_config(&args.common)?;
    let mapping = mapping_options(&args.common, &config)?;
    let name = args
        .common
        .target
        .clone()
        .or(config.target.clone())
        .unwrap_or_else(|| "sandbox".into());
    // No network: only the target's schema is built, which needs no URL or credentials.
    let spec = TargetSpec {
        name,
        token_url: args.token_url.clone().or(config.token_url.clone()),
        options: target_options(&args.common, &config)?,
        profile: args.common.profile.clone().or(config.profile.clone()),
        ..TargetSpec::default()
    };
    check_token_url(&spec)?;
    // A validation opens no ledger, but reads what the ledger recorded of the error file so
    // it never overwrites one the user changed.
    let ledger = config
        .ledger
        .clone()
        .unwrap_or_else(|| PathBuf::from("roster-ledger.sqlite"));
    let ledger = LedgerLocation::parse(&ledger)?;
    let settings = import_settings(
        &args.common,
        &config,
        mapping,
        ledger,
        SubmitSettings::default(),
        RunMode::ValidateOnly,
    )?;
    let settings = ImportSettings {
        generate_passwords: args.generate_passwords.clone(),
        ..settings
    };
    Ok(ValidatePlan {
        spec,
        settings,
        print_mapping: args.print_mapping,
        json: args.common.json,
    })
}

/// A token URL given (flag or config) is checked as the base URL is, import or validation.
fn check_token_url(spec: &TargetSpec) -> Result<(), RunError> {
    match &spec.token_url {
        Some(url) => pipeline::check_url(url, "--token-url"),
        None => Ok(()),
    }
}

fn mapping_options(common: &CommonArgs, config: &ConfigFile) -> Result<MappingOptions, RunError> {
    let mut options = MappingOptions::default();
    let parse = |text: &str| parse_assignment(text).map_err(RunError::Usage);
    let field = |name: &str| {
        Field::parse(name).ok_or_else(|| RunError::Usage(format!("config: unknown field `{name}`")))
    };
    for (name, column) in &config.map {
        match crate::model::metadata_key(name) {
            Some(key) => options.metadata.push((key.to_string(), column.clone())),
            None => options.explicit.push((field(name)?, column.clone())),
        }
    }
    for (name, value) in &config.set {
        options.defaults.push((field(name)?, value.clone()));
    }
    for text in &common.map {
        if let Some((name, column)) = text.split_once('=')
            && let Some(key) = crate::model::metadata_key(name)
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

/// `--target-option key=value` (and the config's `[target_options]`) as one map; flags win.
fn target_options(
    common: &CommonArgs,
    config: &ConfigFile,
) -> Result<BTreeMap<String, String>, RunError> {
    add_target_options(config.target_options.clone(), &common.target_option)
}

/// `options` with each `--target-option KEY=VALUE` of `items` added (later ones win).
pub fn add_target_options(
    mut options: BTreeMap<String, String>,
    items: &[String],
) -> Result<BTreeMap<String, String>, RunError> {
    for item in items {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            RunError::Usage(format!("--target-option `{item}`: expected KEY=VALUE"))
        })?;
        options.insert(key.trim().to_string(), value.to_string());
    }
    Ok(options)
}

/// `--drop-invalid` fields (the config's, then the flags').
fn drop_invalid(common: &CommonArgs, config: &ConfigFile) -> Result<Vec<Field>, RunError> {
    let named = config.drop_invalid.iter().chain(&common.drop_invalid);
    named
        .map(|name| {
            Field::parse(name).ok_or_else(|| {
                RunError::Usage(format!(
                    "--drop-invalid `{name}` is not a field (fields: {})",
                    Field::ALL.map(|f| f.to_string()).join(", ")
                ))
            })
        })
        .collect()
}

/// The run's settings from the shared flags, the config file and what the command decided.
fn import_settings(
    common: &CommonArgs,
    config: &ConfigFile,
    mapping: MappingOptions,
    ledger: LedgerLocation,
    submit: SubmitSettings,
    mode: RunMode,
) -> Result<ImportSettings, RunError> {
    let format = common.format.or(config.format);
    // `-` is standard input, copied to a temporary file; its error file is `stdin.errors.csv`.
    let stdin = match common.file.as_os_str() == "-" {
        true => Some(std::sync::Arc::new(crate::input::stdin::spool(format)?)),
        false => None,
    };
    let (input, format, named) = match &stdin {
        Some(spooled) => (
            spooled.path.to_path_buf(),
            Some(spooled.format),
            PathBuf::from("stdin.csv"),
        ),
        None => (common.file.clone(), format, common.file.clone()),
    };
    let errors = common.errors.clone().or(config.errors.clone());
    // The error file's format: as asked; else the one `--errors PATH` names; else the
    // input's kind (a spreadsheet gets a workbook back, anything else CSV).
    let spreadsheet = format.or_else(|| Format::from_path(&named)) == Some(Format::Xlsx);
    let errors_format = match (common.errors_format.or(config.errors_format), &errors) {
        (Some(asked), _) => asked,
        (None, Some(path)) => ErrorFormat::for_path(path),
        (None, None) if spreadsheet => ErrorFormat::Xlsx,
        (None, None) => ErrorFormat::Csv,
    };
    let errors = errors.unwrap_or_else(|| pipeline::default_errors_path(&named, errors_format));
    let results = common.results.clone().map(|path| {
        let format = match ErrorFormat::for_path(&path) {
            ErrorFormat::Csv if spreadsheet && path.extension().is_none() => ErrorFormat::Xlsx,
            format => format,
        };
        (path, format)
    });
    Ok(ImportSettings {
        input,
        stdin,
        ledger_lock: None,
        pg_lock_held: false,
        read: InputOptions {
            format,
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
        drop_invalid: drop_invalid(common, config)?,
        results,
        pace: String::new(),
    })
}
