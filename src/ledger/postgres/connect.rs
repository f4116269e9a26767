//! Where a PostgreSQL ledger is and how to reach it, by libpq's conventions: the URL names the
//! server, the database and the user; the password comes from `PGPASSWORD` or the password
//! file (`PGPASSFILE`, else `~/.pgpass`), never from the URL; TLS follows `sslmode` /
//! `PGSSLMODE` (default `prefer`) and `sslrootcert` / `PGSSLROOTCERT` (else
//! `~/.postgresql/root.crt`).

use super::tls;
use crate::ledger::LedgerError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// libpq's `sslmode`s (`allow` is read as `prefer`: roster never downgrades on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS, unverified unless a root certificate is there (then as `verify-ca`).
    Require,
    /// TLS with the server's certificate chained to the root certificate.
    VerifyCa,
    /// `verify-ca`, and the certificate names the host.
    VerifyFull,
}

/// A PostgreSQL ledger's address and credentials, ready to connect.
#[derive(Clone)]
pub struct PgLocation {
    config: postgres::Config,
    ssl: SslMode,
    root_cert: Option<PathBuf>,
    /// The URL as roster prints it: no password, nothing from the query but `sslmode`.
    shown: String,
}

impl std::fmt::Debug for PgLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: only the shown URL is ever printed.
        f.debug_tuple("PgLocation").field(&self.shown).finish()
    }
}

/// Whether `text` names a PostgreSQL ledger rather than a SQLite file.
pub fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The query parameters roster takes in a ledger URL.
const PARAMETERS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "options",
    "application_name",
    "connect_timeout",
    "host",
];

impl PgLocation {
    /// Reads `url` (`postgres://USER@HOST:PORT/DB?sslmode=…`) with the environment's
    /// defaults and password.
    pub fn parse(url: &str) -> Result<PgLocation, LedgerError> {
        Self::parse_with(url, &|name| std::env::var(name).ok())
    }

    /// [`parse`](Self::parse) with `env` for the environment (tests).
    pub fn parse_with(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PgLocation, LedgerError> {
        let refuse = |shown: &str, message: String| LedgerError::Postgres {
            ledger: shown.to_string(),
            message,
            exit: crate::exit::EXIT_USAGE,
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            refuse(
                "postgres://…",
                format!("not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE"),
            )
        })?;
        let decode = |text: &str| {
            percent_decode(text).ok_or_else(|| {
                refuse(
                    "postgres://…",
                    "the URL is not valid UTF-8 once decoded".into(),
                )
            })
        };
        let mut query = Vec::new();
        for (key, value) in parsed.query_pairs() {
            if !PARAMETERS.contains(&key.as_ref()) {
                return Err(refuse(
                    &shown_url(&parsed, None),
                    format!(
                        "unknown parameter `{key}` in the ledger URL (roster takes {})",
                        PARAMETERS.join(", ")
                    ),
                ));
            }
            query.push((key.into_owned(), value.into_owned()));
        }
        let param = |name: &str| {
            query
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let sslmode_text = param("sslmode").or_else(|| env("PGSSLMODE"));
        let shown = shown_url(&parsed, sslmode_text.as_deref());
        if parsed.password().is_some() {
            return Err(refuse(
                &shown,
                "the ledger URL holds a password: give it in PGPASSWORD or the password file \
                 (~/.pgpass, or PGPASSFILE) instead, so it never lands in a shell history, a \
                 config file or a process list"
                    .into(),
            ));
        }
        let mut config = postgres::Config::new();
        let host = match (param("host"), parsed.host_str()) {
            (Some(host), _) => host,
            (None, Some(host)) if !host.is_empty() => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            _ => env("PGHOST").unwrap_or_else(|| "localhost".into()),
        };
        let port = match parsed.port() {
            Some(port) => port,
            None => match env("PGPORT") {
                Some(text) => text
                    .parse()
                    .map_err(|_| refuse(&shown, format!("PGPORT `{text}` is not a port number")))?,
                None => 5432,
            },
        };
        let user = match parsed.username() {
            "" => env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".into()),
            name => decode(name)?,
        };
        let database = match parsed.path().trim_start_matches('/') {
            "" => env("PGDATABASE").unwrap_or_else(|| user.clone()),
            path => decode(path)?,
        };
        config
            .host(&host)
            .port(port)
            .user(&user)
            .dbname(&database)
            .application_name(&param("application_name").unwrap_or_else(|| "roster".into()));
        if let Some(options) = param("options") {
            config.options(&options);
        }
        let timeout = match param("connect_timeout").or_else(|| env("PGCONNECT_TIMEOUT")) {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                refuse(
                    &shown,
                    format!("connect_timeout `{text}` is not a number of seconds"),
                )
            })?,
            None => 10,
        };
        config.connect_timeout(Duration::from_secs(timeout.max(1)));
        let password = match env("PGPASSWORD") {
            Some(password) => Some(password),
            None => password_file(env)
                .and_then(|file| lookup_password(&file, &host, port, &database, &user)),
        };
        if let Some(password) = password {
            config.password(password);
        }
        let ssl = match sslmode_text.as_deref() {
            None | Some("prefer") | Some("allow") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(refuse(
                    &shown,
                    format!(
                        "sslmode `{other}` is not one of disable, allow, prefer, require, \
                         verify-ca, verify-full"
                    ),
                ));
            }
        };
        let root_cert = param("sslrootcert")
            .or_else(|| env("PGSSLROOTCERT"))
            .map(PathBuf::from)
            .or_else(|| {
                let default = PathBuf::from(env("HOME")?).join(".postgresql/root.crt");
                default.is_file().then_some(default)
            });
        // libpq: `require` with a root certificate verifies the chain, as `verify-ca`.
        let ssl = match (ssl, &root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (ssl, _) => ssl,
        };
        if matches!(ssl, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(refuse(
                &shown,
                format!(
                    "sslmode {} needs the server's root certificate: set PGSSLROOTCERT or \
                     sslrootcert=FILE, or put it at ~/.postgresql/root.crt",
                    if ssl == SslMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ),
            ));
        }
        config.ssl_mode(match ssl {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        Ok(PgLocation {
            config,
            ssl,
            root_cert,
            shown,
        })
    }

    /// The URL as it may be printed: no password, no query but `sslmode`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Connects, by TLS as `sslmode` says.
    pub fn connect(&self) -> Result<postgres::Client, LedgerError> {
        let connected = match self.ssl {
            SslMode::Disable => self.config.connect(postgres::NoTls),
            ssl => {
                let client = tls::client_config(ssl, self.root_cert.as_deref()).map_err(|e| {
                    LedgerError::Postgres {
                        ledger: self.shown.clone(),
                        message: e,
                        exit: crate::exit::EXIT_USAGE,
                    }
                })?;
                self.config
                    .connect(tokio_postgres_rustls::MakeRustlsConnect::new(client))
            }
        };
        connected.map_err(|e| super::pg_error(&self.shown, &e))
    }
}

/// `postgres://user@host:port/db` with `?sslmode=` when one was asked for.
fn shown_url(url: &url::Url, sslmode: Option<&str>) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        shown.push_str(url.username());
        shown.push('@');
    }
    shown.push_str(url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if let Some(mode) = sslmode {
        shown.push_str("?sslmode=");
        shown.push_str(&form_urlencoded::byte_serialize(mode.as_bytes()).collect::<String>());
    }
    shown
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The password file libpq would read: `PGPASSFILE`, else `~/.pgpass`.
fn password_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("PGPASSFILE") {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(env("HOME")?).join(".pgpass")),
    }
}

/// The password for this server, database and user in the password file at `path`
/// (`host:port:database:user:password` lines, `*` matching anything, `\` escaping `:` and
/// `\`). As libpq, a file that others can read is ignored, with a warning.
fn lookup_password(
    path: &Path,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "roster: warning: password file `{}` has group or world access; it is ignored \
                 (permissions should be u=rw, 0600, or less)",
                path.display()
            );
            return None;
        }
    }
    let _ = meta;
    let text = std::fs::read_to_string(path).ok()?;
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(split_pgpass_line)
        .find(|fields| {
            let matches = |field: &str, value: &str| field == "*" || field == value;
            matches(&fields[0], host)
                && matches(&fields[1], &port)
                && matches(&fields[2], database)
                && matches(&fields[3], user)
        })
        .map(|fields| fields[4].clone())
}

/// A password file line's five fields, unescaped; `None` for a line with fewer.
fn split_pgpass_line(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_printing_it() {
        let e = PgLocation::parse_with("postgres://ann:S3cret@db:5432/hr", &env(&[])).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("S3cret"), "{text}");
        assert!(text.contains("PGPASSWORD"), "{text}");
        assert!(text.contains("postgres://ann@db:5432/hr"), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn defaults_come_from_the_environment_and_the_shown_url_has_no_secret() {
        let vars = env(&[
            ("PGPASSWORD", "pw1"),
            ("PGSSLMODE", "disable"),
            ("USER", "ann"),
        ]);
        let location = PgLocation::parse_with("postgresql://db.example/hr", &vars).unwrap();
        assert_eq!(location.ssl, SslMode::Disable);
        assert_eq!(
            location.shown(),
            "postgresql://db.example/hr?sslmode=disable"
        );
        assert_eq!(location.config.get_user(), Some("ann"));
        assert_eq!(location.config.get_password(), Some(&b"pw1"[..]));
        assert!(!format!("{location:?}").contains("pw1"));
    }

    #[test]
    fn verify_modes_need_a_root_certificate_and_unknown_parameters_are_refused() {
        let e =
            PgLocation::parse_with("postgres://a@h/d?sslmode=verify-full", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("PGSSLROOTCERT"), "{e}");
        let e = PgLocation::parse_with("postgres://a@h/d?password=x", &env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("unknown parameter `password`"),
            "{e}"
        );
        assert!(!e.to_string().contains("=x"), "{e}");
    }

    #[test]
    fn the_password_file_matches_by_host_port_database_and_user_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:hr:ann:wrong\ndb:*:hr:ann:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            lookup_password(&file, "db", 6432, "hr", "ann").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            lookup_password(&file, "x", 1, "y", "z").as_deref(),
            Some("fallback")
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup_password(&file, "db", 6432, "hr", "ann"), None);
    }
}
