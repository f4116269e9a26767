//! `roster.toml`: the same settings as the flags (flags win), never a secret.

use super::args::CommonArgs;
use crate::error::RunError;
use crate::input::Format;
use crate::report::ErrorFormat;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Optional fields whose invalid cells are left out instead of refusing the row.
    #[serde(default)]
    pub drop_invalid: Vec<String>,
}

impl ConfigFile {
    /// The keys a config file may hold.
    pub const KEYS: [&'static str; 22] = [
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
        "drop_invalid",
    ];

    /// Reads a config file; an unknown key is an error that suggests the closest valid one.
    pub fn load(path: &Path) -> Result<ConfigFile, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RunError::Usage(format!("cannot read config `{}`: {e}", path.display()))
        })?;
        let problem = |e: toml::de::Error| {
            let problem = crate::error::toml_problem(&text, &e);
            RunError::Usage(format!("config `{}`: {problem}", path.display()))
        };
        let table: toml::Table = toml::from_str(&text).map_err(problem)?;
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
        toml::from_str(&text).map_err(problem)
    }
}

/// The config file the command names, else `roster.toml` in the working directory, else none.
pub fn load_config(common: &CommonArgs) -> Result<ConfigFile, RunError> {
    match &common.config {
        Some(path) => ConfigFile::load(path),
        None if Path::new("roster.toml").exists() => ConfigFile::load(Path::new("roster.toml")),
        None => Ok(ConfigFile::default()),
    }
}
