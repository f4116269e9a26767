//! Targets: one file per API, each exporting its [`TargetDef`]: what is known of it before any
//! settings ([`TargetInfo`]: the `roster targets` row, its documented pace, its fake in the
//! sandbox), the rows' half ([`Schema`]: rules and bodies, built from options alone, so a
//! validation needs no URL or credentials) and the API's half ([`Api`]: endpoint,
//! authentication, how its answers read, lookups, follow-up steps).
//!
//! Adding a vendor means one new file here, one line in [`TARGETS`], and its fake in the
//! sandbox crate (a test checks that the three, `roster targets` and `--help` agree).

pub mod cl2c;
pub mod cradl;
pub mod crayon;
pub mod cryptlex;
pub mod generic;
pub mod lifecycle;
pub mod nexway;

pub mod sandbox;
pub mod scim;

use crate::auth::{Authenticator, Credentials};
use crate::error::RunError;
use crate::http::problem::{self, ApiError};
use crate::http::wait::server_wait;
use crate::model::{ErrorCode, Field, UserFields, squash};
use ::http::header::HeaderMap;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a target requires of a row before it is worth a request.
#[derive(Debug, Clone, Default)]
pub struct TargetRules {
    /// Fields that must have a value.
    pub required: Vec<Field>,
    /// Maximum lengths in characters.
    pub max_len: Vec<(Field, usize)>,
}

/// How one attempt ended, as the target reads its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Created (any 2xx), with the remote id when the body has one.
    Created {
        /// The id the API gave the new user.
        remote_id: Option<String>,
    },
    /// The API refused because something is already taken (a 409, or a refusal saying "already
    /// exists"): the submitter decides whether it is this row's identity (the person exists)
    /// or another person's value (a refusal of that field).
    Conflict {
        /// The API's messages, with its field names where it gave them.
        errors: Vec<ApiError>,
        /// The target's own rules say this answer means the identity exists (a generic
        /// profile's `duplicate_status`), so an answer naming no field is not a doubt.
        declared: bool,
    },
    /// Refused for this row; retrying the same request will not help.
    Rejected {
        /// The API's per-field messages.
        errors: Vec<ApiError>,
    },
    /// A transient failure: try again after backoff (and at least `wait`, for all workers).
    Retry {
        /// The server's requested wait, if it gave one.
        wait: Option<Duration>,
    },
    /// Going on is pointless (credentials refused, quota exhausted): stop the run.
    Fatal {
        /// What to tell the operator.
        message: String,
    },
}

/// Whether a target takes a password with each user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordUse {
    /// The API refuses a user without one (a password column or `--generate-passwords`).
    Required,
    /// Sent when the row has one (or one is generated).
    Optional,
    /// The API has no password field.
    Unused,
}

/// A second request made after the user is created (Crayon's set-password call).
#[derive(Debug, Clone)]
pub struct FollowUp {
    /// The HTTP method.
    pub method: ::http::Method,
    /// The URL.
    pub url: String,
    /// The JSON body.
    pub body: Vec<u8>,
    /// What the step does, for messages ("setting the password").
    pub what: &'static str,
}

/// A problem a target's own rules find with a row (patterns, enumerations).
pub type RuleProblem = (Field, ErrorCode, String);

/// What is known of a target before any settings.
#[derive(Debug)]
pub struct TargetInfo {
    /// The name `--target` takes.
    pub name: &'static str,
    /// Where users are created, as `roster targets` shows it.
    pub endpoint: &'static str,
    /// How requests are authenticated, in a few words.
    pub auth: &'static str,
    /// The environment variables its credentials come from.
    pub env: &'static str,
    /// The `--target-option` keys it takes.
    pub options: &'static [&'static str],
    /// Requests per second when `--rate` is not given (0 = none).
    pub default_rate: f64,
    /// Where that pace comes from (a page, a vendor's docs, or roster's choice).
    pub rate_source: &'static str,
    /// Whether its users carry a password.
    pub password: PasswordUse,
    /// The fake of it in `roster-sandbox` (its `Profile` name), if there is one.
    pub sandbox: Option<&'static str>,
}

/// One built-in target: its facts and how to build its halves.
pub struct TargetDef {
    /// What is known of it before any settings.
    pub info: TargetInfo,
    /// The rows' half, from the spec's options (and profile) alone.
    pub schema: fn(&TargetSpec) -> Result<Box<dyn Schema>, RunError>,
    /// The API's half: base URL, credentials, token endpoint.
    pub api: fn(&TargetSpec) -> Result<Box<dyn Api>, RunError>,
}

/// The built-in targets, in the order `roster targets` lists them.
pub static TARGETS: &[&TargetDef] = &[
    &sandbox::DEF,
    &cryptlex::DEF,
    &crayon::DEF,
    &cl2c::DEF,
    &nexway::DEF,
    &cradl::DEF,
    &scim::DEF,
    &generic::DEF,
];

/// The built-in target called `name`.
pub fn find(name: &str) -> Option<&'static TargetDef> {
    TARGETS.iter().copied().find(|d| d.info.name == name)
}

/// The built-in targets' names, for `--help`.
pub fn names() -> Vec<&'static str> {
    TARGETS.iter().map(|d| d.info.name).collect()
}

/// What a row must satisfy for a target, and the body it becomes.
pub trait Schema: Send + Sync {
    /// Required fields and lengths.
    fn rules(&self) -> &TargetRules;

    /// Normalises a role cell into the target's vocabulary.
    fn normalize_role(&self, raw: &str) -> Result<String, String> {
        crate::values::role(raw)
    }

    /// Whether the target receives `field` in a form it checks, so that a malformed value
    /// refuses the row. A field the body does not carry, or carries only as free text (Cradl's
    /// `metadata`), never refuses a row: `call reception` in a phone column costs no Cryptlex
    /// user. The email is always checked: it is the row's identity.
    fn checks(&self, _field: Field) -> bool {
        true
    }

    /// The target's own rules beyond required fields and lengths (patterns, enumerations).
    fn check(&self, _user: &UserFields, _problems: &mut Vec<RuleProblem>) {}

    /// The request body for one user.
    fn body(&self, user: &UserFields) -> Vec<u8>;

    /// The body's media type.
    fn content_type(&self) -> &str {
        "application/json"
    }

    /// The canonical field an API field name refers to, for naming the user's column.
    fn field_for(&self, api_name: &str) -> Option<Field> {
        field_for_common(api_name)
    }
}

/// How a target's API is spoken to.
pub trait Api: Send + Sync {
    /// The key identities are recorded under in the ledger: the target, its base URL and the
    /// account written to.
    fn ledger_key(&self) -> &str;

    /// The URL a create request is sent to.
    fn endpoint(&self) -> &str;

    /// The create request's method.
    fn method(&self) -> ::http::Method {
        ::http::Method::POST
    }

    /// How requests are authenticated.
    fn auth(&self) -> &Authenticator;

    /// What to check when the target refuses the credentials (names the variables).
    fn auth_hint(&self) -> &str {
        ""
    }

    /// Requests per second when `--rate` is not given (0 = unlimited).
    fn default_rate(&self) -> f64;

    /// Requests in flight when `--concurrency` is not given, if the target says (a generic
    /// profile's `concurrency`); else the adaptive limit finds it.
    fn default_concurrency(&self) -> Option<usize> {
        None
    }

    /// Requests allowed at once when `--burst` is not given. Two, not one: with a burst of
    /// one, every late wake-up of a waiting worker is lost to the schedule (the limiter counts
    /// from when the request left, not from its slot), and `--rate 200` sent about 194/s.
    fn default_burst(&self) -> u32 {
        2
    }

    /// Reads one answer.
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        classify_common(status, headers, body, "/id")
    }

    /// Whether the create's success answer documents the new user's id: a success without
    /// one is not what the target promised (a wrong `--base-url` answering an HTML page),
    /// and the row fails instead of being recorded done.
    fn returns_id(&self) -> bool {
        true
    }

    /// Whether `status` is the create's documented success (any 2xx unless the target says).
    fn success_status(&self, status: u16) -> bool {
        (200..300).contains(&status)
    }

    /// Whether the API honours an `Idempotency-Key` header on create (IETF draft), so a
    /// resend of a request whose answer was lost replays the first creation.
    fn idempotency_keys(&self) -> bool {
        false
    }

    /// Where to look a user up, for targets that can (Cryptlex's `GET /v3/users?email=`,
    /// SCIM's `filter`, Crayon's user by user name): it gives the remote id of a person the
    /// target says exists, and settles whose a conflict is.
    fn lookup_url(&self, _identity: &str, _user: &UserFields) -> Option<String> {
        None
    }

    /// The remote id in a lookup's answer, when it found the person with this identity (a
    /// listing may hold others: they do not count).
    fn lookup_id(&self, body: &[u8], identity: &str) -> Option<String> {
        find_listed(body, identity)
    }

    /// A request to make after the user is created, if the target needs one.
    fn follow_up(&self, _remote_id: &str, _user: &UserFields) -> Option<FollowUp> {
        None
    }

    /// A warning for a dry run that would send `would_send` users (quotas).
    fn dry_run_warning(&self, _would_send: u64) -> Option<String> {
        None
    }

    /// Where the user with `remote_id` is read (`GET`), when the target documents it.
    fn user_url(&self, _remote_id: &str) -> Option<String> {
        None
    }

    /// Whether a change must read the user first (an update that replaces the whole
    /// resource: what roster does not manage, such as status and roles, is sent back).
    fn reads_before_change(&self) -> bool {
        false
    }

    /// The request to make instead of [`Api::change`]'s when the server answered it 405 or
    /// 501 (a SCIM server without PATCH support): `bodies.current` holds the user as read.
    fn fallback(
        &self,
        _action: lifecycle::Action,
        _remote_id: &str,
        _bodies: lifecycle::Bodies<'_>,
    ) -> Option<lifecycle::Change> {
        None
    }

    /// The request that does `action` to the user with `remote_id`, or why the target
    /// cannot (its documentation has no such endpoint).
    fn change(
        &self,
        action: lifecycle::Action,
        _remote_id: &str,
        _bodies: lifecycle::Bodies<'_>,
    ) -> Result<lifecycle::Change, String> {
        Err(lifecycle::unsupported(
            action,
            "its API documents no such endpoint",
        ))
    }
}

/// A target ready for a run: its facts, the rows' half, and the API's half when the run
/// may send (a validation has none).
pub struct Target {
    /// What is known of it before any settings.
    pub info: &'static TargetInfo,
    /// The rows' half.
    pub schema: Arc<dyn Schema>,
    /// The API's half.
    pub api: Option<Arc<dyn Api>>,
}

impl Target {
    /// The target's name.
    pub fn name(&self) -> &str {
        self.info.name
    }

    /// The ledger key: the API's, or (for a validation, which records nothing) the name.
    pub fn ledger_key(&self) -> &str {
        self.api
            .as_ref()
            .map_or(self.info.name, |api| api.ledger_key())
    }

    /// The API's half, which a run that sends needs.
    pub fn api(&self) -> Result<&Arc<dyn Api>, RunError> {
        self.api.as_ref().ok_or_else(|| {
            RunError::Internal(format!(
                "target `{}` was built without its API",
                self.info.name
            ))
        })
    }
}

/// Builds both halves of the target `spec` names.
pub fn build(spec: &TargetSpec) -> Result<Target, RunError> {
    let def = definition(spec)?;
    Ok(Target {
        info: &def.info,
        schema: Arc::from((def.schema)(spec)?),
        api: Some(Arc::from((def.api)(spec)?)),
    })
}

/// Builds the rows' half only (a validation: no URL, no credentials needed).
pub fn build_schema(spec: &TargetSpec) -> Result<Target, RunError> {
    let def = definition(spec)?;
    Ok(Target {
        info: &def.info,
        schema: Arc::from((def.schema)(spec)?),
        api: None,
    })
}

/// The definition of the target `spec` names, its options checked.
fn definition(spec: &TargetSpec) -> Result<&'static TargetDef, RunError> {
    let def = find(&spec.name).ok_or_else(|| {
        RunError::Usage(format!(
            "unknown target `{}` (built-in targets: {})",
            spec.name,
            names().join(", ")
        ))
    })?;
    spec.check_options(def.info.options)?;
    Ok(def)
}

/// The usual reading of a create-user response: 2xx created (remote id at `id_pointer`),
/// 409 or a 400/422 that says "already exists" is a conflict, 408/425/429/5xx are transient,
/// 401/403 stop the run, other 4xx refuse the row.
pub fn classify_common(status: u16, headers: &HeaderMap, body: &[u8], id_pointer: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Created {
            remote_id: remote_id(body, id_pointer),
        },
        409 => Verdict::Conflict {
            errors: problem::parse(body),
            declared: false,
        },
        401 | 403 => Verdict::Fatal {
            message: format!(
                "credentials refused (HTTP {status}): {}",
                problem::summary(body)
            ),
        },
        408 | 425 | 429 | 500..=599 => Verdict::Retry {
            wait: server_wait(headers, SystemTime::now()),
        },
        // Never followed: the request carries credentials and a person.
        300..=399 => {
            let location = headers
                .get(::http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(crate::http::redact_query)
                .unwrap_or_else(|| "nowhere".into());
            Verdict::Rejected {
                errors: vec![ApiError {
                    field: None,
                    message: format!(
                        "redirected (HTTP {status}) to `{location}`: roster does not follow \
                         redirects with credentials or personal data (hint: check --base-url)"
                    ),
                }],
            }
        }
        _ => {
            let errors = problem::parse(body);
            if errors
                .iter()
                .any(|e| problem::says_already_exists(&e.message))
            {
                Verdict::Conflict {
                    errors,
                    declared: false,
                }
            } else {
                Verdict::Rejected { errors }
            }
        }
    }
}

/// Reads the remote id at a JSON pointer (`/id`, `/Id`, `/userId`); numbers become text.
pub fn remote_id(body: &[u8], pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The id of the person with `identity` in a lookup's answer: a JSON array of users, a list
/// object holding them under `Resources` (SCIM), `items`, `data` or `users`, or one user.
/// A user is this identity when one of its email fields (`email`, `Email`, `userName`,
/// SCIM's `emails[].value`) is, ignoring case (Nexway's search matches by "contains"); a
/// listing that shows no email at all counts only when it holds exactly one user.
pub fn find_listed(body: &[u8], identity: &str) -> Option<String> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(body).ok()?;
    let list: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => match ["Resources", "items", "data", "users"]
            .iter()
            .find_map(|k| map.get(*k)?.as_array())
        {
            Some(items) => items.iter().collect(),
            None => vec![&value],
        },
        _ => return None,
    };
    let id_of = |user: &Value| {
        ["id", "Id", "userId", "ID"]
            .iter()
            .find_map(|k| match user.get(*k)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    let emails = |user: &Value| -> Vec<String> {
        let mut found: Vec<String> = ["email", "Email", "userName", "UserName", "mail"]
            .iter()
            .filter_map(|k| user.get(*k)?.as_str().map(str::to_string))
            .collect();
        if let Some(Value::Array(list)) = user.get("emails") {
            found.extend(
                list.iter()
                    .filter_map(|e| e.get("value")?.as_str().map(str::to_string)),
            );
        }
        found
    };
    let shown: Vec<(Option<String>, Vec<String>)> =
        list.iter().map(|u| (id_of(u), emails(u))).collect();
    if let Some((id, _)) = shown
        .iter()
        .find(|(_, emails)| emails.iter().any(|e| e.eq_ignore_ascii_case(identity)))
    {
        return id.clone();
    }
    match shown.as_slice() {
        [(id, emails)] if emails.is_empty() => id.clone(),
        _ => None,
    }
}

/// A remote id as one segment of a URL's path: what RFC 3986 allows in a segment is kept
/// (Cradl's `cradl:user:…` ids keep their colons), anything else (`/`, `?`, spaces) is
/// percent-encoded, so an id is always one segment.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(byte as char),
            b'-' | b'.' | b'_' | b'~' | b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
            | b'*' | b'+' | b',' | b';' | b'=' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `endpoint?key=value`, the value encoded for a URL's query (lookups by email or filter).
pub fn with_query(endpoint: &str, key: &str, value: &str) -> String {
    let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("{endpoint}?{key}={value}")
}

/// Maps common API field spellings (`firstName`, `FirstName`, `given_name`, `name.givenName`,
/// `phoneNumber`, `userName`) to canonical fields.
pub fn field_for_common(api_name: &str) -> Option<Field> {
    let key = squash(api_name);
    let key = key
        .strip_prefix("user")
        .filter(|k| !k.is_empty() && *k != "name")
        .unwrap_or(&key);
    Some(match key {
        "email" | "emails" | "emailaddress" | "mail" | "primaryemail" => Field::Email,
        "firstname" | "givenname" | "namegivenname" | "first" => Field::FirstName,
        "lastname" | "familyname" | "namefamilyname" | "surname" | "last" => Field::LastName,
        "username" | "login" => Field::Username,
        "phone" | "phonenumber" | "phonenumbers" | "mobile" => Field::Phone,
        "role" | "roles" | "roleids" | "tenantadmin" => Field::Role,
        "password" => Field::Password,
        "fullname" | "displayname" | "name" => Field::FullName,
        "country" | "countrycode" => Field::Country,
        "department" => Field::Department,
        "title" | "jobtitle" => Field::Title,
        _ => return None,
    })
}

/// Where a target lives and how the run reaches it.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// The profile name.
    pub name: String,
    /// The base URL requests go to (default: the vendor's public one).
    pub base_url: Option<String>,
    /// The token endpoint, where the target fetches tokens (default: the vendor's).
    pub token_url: Option<String>,
    /// The base URL is roster's own in-process sandbox (its ledger key then has no port).
    pub in_process: bool,
    /// Credentials from the environment.
    pub credentials: Credentials,
    /// Target-specific settings (`--target-option key=value`), e.g. Cradl's `app_client_id`.
    pub options: BTreeMap<String, String>,
    /// The generic target's TOML profile (`--target http --profile FILE`).
    pub profile: Option<std::path::PathBuf>,
}

/// One spelling per base URL, so one target has one ledger key: scheme and host lower-cased,
/// the scheme's default port and a trailing slash dropped (`HTTP://Host:80/x/` is
/// `http://host/x`). A URL that does not parse is left as written (it is refused later), and
/// a user name or password becomes `***` (refused later too).
pub fn normalize_base(base: &str) -> String {
    let Ok(url) = url::Url::parse(base.trim()) else {
        return base.trim().trim_end_matches('/').to_string();
    };
    let mut out = format!("{}://", url.scheme());
    // Credentials in the URL are never kept, but their place is, so that the URL check
    // refuses them (they belong in the environment) instead of dropping them unnoticed.
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("***@");
    }
    if let Some(host) = url.host_str() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path().trim_end_matches('/'));
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The subject a bearer token names, when it is a JWT (`sub`, with a tenant or organisation
/// claim where there is one): the account a personal access token writes to.
fn token_subject(token: &SecretString) -> Option<String> {
    use base64::Engine;
    use secrecy::ExposeSecret;
    let payload = token.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let subject = text("sub")?;
    let tenant = ["tid", "tenant", "tenantId", "org", "organization", "aud"]
        .iter()
        .find_map(|k| text(k))
        .unwrap_or_default();
    Some(format!("{tenant}/{subject}"))
}

/// Which credentials name the account a target writes to.
#[derive(Debug, Clone, Copy)]
pub enum Account {
    /// One account per base URL.
    None,
    /// These credentials (tenant, realm, client id, API user).
    Of(&'static [AccountPart]),
}

/// A credential that tells accounts apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountPart {
    /// `ROSTER_TENANT`.
    Tenant,
    /// `ROSTER_REALM`.
    Realm,
    /// `ROSTER_CLIENT_ID`.
    ClientId,
    /// `ROSTER_USERNAME`.
    Username,
    /// The subject of a JWT in `ROSTER_TOKEN`.
    TokenSubject,
}

impl TargetSpec {
    /// The ledger key of this target at `base`: its name and normalised base URL, and, when
    /// the credentials say which of several accounts behind that URL the run writes to (a
    /// tenant, realm, OAuth client, API user, or a JWT's subject), `#account=` and a short
    /// SHA-256 of them: never the values themselves.
    pub fn ledger_key(&self, name: &str, base: &str, account: Account) -> String {
        use secrecy::ExposeSecret;
        let base = normalize_base(base);
        let Account::Of(parts) = account else {
            return format!("{name}@{base}");
        };
        let c = &self.credentials;
        let values: Vec<String> = parts
            .iter()
            .filter_map(|part| match part {
                AccountPart::Tenant => c.tenant.as_ref().map(|v| v.expose_secret().to_string()),
                AccountPart::Realm => c.realm.as_ref().map(|v| v.expose_secret().to_string()),
                AccountPart::ClientId => {
                    c.client_id.as_ref().map(|v| v.expose_secret().to_string())
                }
                AccountPart::Username => c.username.as_ref().map(|v| v.expose_secret().to_string()),
                AccountPart::TokenSubject => c.token.as_ref().and_then(token_subject),
            })
            .collect();
        if values.is_empty() {
            return format!("{name}@{base}");
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, values.join("\0").as_bytes());
        let short: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{name}@{base}#account={short}")
    }

    /// The base URL without a trailing slash, or `default`.
    pub fn base_or(&self, default: &str) -> String {
        normalize_base(self.base_url.as_deref().unwrap_or(default))
    }

    /// The base URL, which this target has no public default for.
    pub fn base_required(&self) -> Result<String, RunError> {
        match &self.base_url {
            Some(base) => Ok(normalize_base(base)),
            None => Err(RunError::Usage(format!(
                "target `{}` has no public default URL: give --base-url",
                self.name
            ))),
        }
    }

    /// Fails on an option this target does not know.
    pub fn check_options(&self, known: &[&str]) -> Result<(), RunError> {
        for key in self.options.keys() {
            if !known.contains(&key.as_str()) {
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(RunError::Usage(format!(
                    "target `{}` has no option `{key}` (its options: {known})",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// The value of option `key`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// The HTTP client token endpoints are called with (30 s for an answer).
pub fn token_client() -> Result<Arc<crate::http::Client>, RunError> {
    crate::http::Client::new(Duration::from_secs(30)).map_err(|e| RunError::Startup(e.to_string()))
}

/// The `roster targets` listing: name, endpoint, auth, the variables each reads, and its
/// default pace with where that pace comes from; `concurrency` is where the adaptive limit
/// starts and its default ceiling.
pub fn describe(concurrency: (usize, usize)) -> String {
    let mut out = format!(
        "{:<9} {:<52} {:<34} {}\n",
        "target", "endpoint", "auth", "environment"
    );
    for def in TARGETS {
        let i = &def.info;
        out.push_str(&format!(
            "{:<9} {:<52} {:<34} {}\n",
            i.name, i.endpoint, i.auth, i.env
        ));
    }
    out.push_str("\ndefault pace (--rate overrides)\n");
    for def in TARGETS {
        let i = &def.info;
        let rate = match i.default_rate {
            r if r > 0.0 => format!("{r}/s"),
            _ => "no limit".to_string(),
        };
        out.push_str(&format!("{:<9} {:<10} {}\n", i.name, rate, i.rate_source));
    }
    out.push_str(&format!(
        "\ndefault concurrency (--concurrency sets the ceiling): every target adaptive, from {} \
         up to {} in flight (roster's choice: more while latency holds, fewer on 429s, 5xx, \
         timeouts or rising latency); `http` profiles may set `concurrency`\n",
        concurrency.0, concurrency.1
    ));
    out
}

/// The user name a target gets: the username column, else the email.
pub fn username_or_email(user: &UserFields) -> Option<&str> {
    user.get(Field::Username).or_else(|| user.get(Field::Email))
}

/// "First Last" from the name fields (or the full-name column).
pub fn display_name(user: &UserFields) -> Option<String> {
    match (user.get(Field::FirstName), user.get(Field::LastName)) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (None, None) => user.get(Field::FullName).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: u16, body: &str) -> Verdict {
        classify_common(status, &HeaderMap::new(), body.as_bytes(), "/id")
    }

    #[test]
    fn responses_are_classified() {
        assert_eq!(
            verdict(201, r#"{"id":"u1"}"#),
            Verdict::Created {
                remote_id: Some("u1".into())
            }
        );
        assert_eq!(
            verdict(200, r#"{"id":42}"#),
            Verdict::Created {
                remote_id: Some("42".into())
            }
        );
        assert!(matches!(verdict(409, ""), Verdict::Conflict { .. }));
        assert!(matches!(
            verdict(
                400,
                r#"{"errors":{"Email":["Email 'a@b.co' is already taken."]}}"#
            ),
            Verdict::Conflict { .. }
        ));
        assert!(matches!(
            verdict(400, r#"{"errors":{"email":["bad"]}}"#),
            Verdict::Rejected { .. }
        ));
        assert!(matches!(verdict(503, ""), Verdict::Retry { wait: None }));
        assert!(matches!(verdict(429, ""), Verdict::Retry { .. }));
        assert!(matches!(
            verdict(401, r#"{"message":"bad token"}"#),
            Verdict::Fatal { .. }
        ));
    }

    #[test]
    fn one_target_has_one_ledger_key_per_account() {
        assert_eq!(normalize_base("HTTP://Host:80/x/"), "http://host/x");
        assert_eq!(normalize_base("https://h.io:443"), "https://h.io");
        assert_eq!(normalize_base("http://h:8080/a/"), "http://h:8080/a");
        let spec = |tenant: &str| TargetSpec {
            credentials: crate::auth::Credentials::from_lookup(|n| {
                (n == "ROSTER_TENANT").then(|| tenant.to_string())
            }),
            ..TargetSpec::default()
        };
        let of = Account::Of(&[AccountPart::Tenant]);
        let acme = spec("acme").ledger_key("cl2c", "http://h/", of);
        let beta = spec("beta").ledger_key("cl2c", "http://h", of);
        assert!(acme.starts_with("cl2c@http://h#account="), "{acme}");
        assert_ne!(acme, beta);
        assert!(!acme.contains("acme"), "never the tenant itself");
        assert_eq!(acme, spec("acme").ledger_key("cl2c", "HTTP://H:80", of));
        assert_eq!(
            spec("acme").ledger_key("x", "http://h", Account::None),
            "x@http://h"
        );
        // A JWT's subject tells personal access tokens of different accounts apart.
        use base64::Engine;
        let jwt = |sub: &str| {
            let claims = format!(r#"{{"sub":"{sub}","tid":"t1"}}"#);
            format!(
                "h.{}.s",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
            )
        };
        let token = |t: String| TargetSpec {
            credentials: crate::auth::Credentials::from_lookup(move |n| {
                (n == "ROSTER_TOKEN").then(|| t.clone())
            }),
            ..TargetSpec::default()
        };
        let subject = Account::Of(&[AccountPart::TokenSubject]);
        assert_ne!(
            token(jwt("a")).ledger_key("cryptlex", "http://h", subject),
            token(jwt("b")).ledger_key("cryptlex", "http://h", subject)
        );
        assert_eq!(
            token("opaque".into()).ledger_key("cryptlex", "http://h", subject),
            "cryptlex@http://h",
            "an opaque token names no account"
        );
    }

    #[test]
    fn a_lookup_finds_only_the_person_with_this_identity() {
        let list = br#"[{"id":"1","email":"anna@x.io"},{"id":"2","email":"ann@x.io"}]"#;
        assert_eq!(find_listed(list, "ANN@x.io").as_deref(), Some("2"));
        assert_eq!(
            find_listed(list, "bo@x.io"),
            None,
            "a contains-match is not a match"
        );
        let scim = br#"{"Resources":[{"id":"s1","userName":"u","emails":[{"value":"ann@x.io"}]}]}"#;
        assert_eq!(find_listed(scim, "ann@x.io").as_deref(), Some("s1"));
        let crayon = br#"{"Id":7,"UserName":"alee","Email":"al@x.io"}"#;
        assert_eq!(find_listed(crayon, "al@x.io").as_deref(), Some("7"));
        assert_eq!(
            find_listed(crayon, "ann@x.io"),
            None,
            "another person holds the name"
        );
        assert_eq!(
            find_listed(br#"[{"id":9}]"#, "ann@x.io").as_deref(),
            Some("9")
        );
        assert_eq!(find_listed(br#"[]"#, "ann@x.io"), None);
    }

    #[test]
    fn api_field_names_map_to_canonical_fields() {
        assert_eq!(field_for_common("FirstName"), Some(Field::FirstName));
        assert_eq!(field_for_common("name.givenName"), Some(Field::FirstName));
        assert_eq!(field_for_common("phoneNumber"), Some(Field::Phone));
        assert_eq!(field_for_common("userName"), Some(Field::Username));
        assert_eq!(field_for_common("UserEmail"), Some(Field::Email));
        assert_eq!(field_for_common("walletAddress"), None);
    }
}
