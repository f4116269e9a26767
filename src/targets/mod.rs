//! Targets: one file per API, each knowing its request shape, rules and how its answers read.
//!
//! Adding a vendor means one new file here and one line in [`build`].

pub mod problem;
pub mod sandbox;

use crate::error::RunError;
use crate::fields::{Field, UserFields, squash};
use crate::retry::server_wait;
use problem::ApiError;
use reqwest::header::HeaderMap;
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
    /// The API says the user already exists.
    Exists,
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

/// A target API.
pub trait Target: Send + Sync {
    /// The profile name (`sandbox`, `cryptlex`, …).
    fn name(&self) -> &str;

    /// The key identities are recorded under in the ledger: profile and base URL.
    fn ledger_key(&self) -> &str;

    /// The URL a create request is sent to.
    fn endpoint(&self) -> &str;

    /// What a row must satisfy before it is sent.
    fn rules(&self) -> &TargetRules;

    /// Requests per second when `--rate` is not given (0 = unlimited).
    fn default_rate(&self) -> f64;

    /// The JSON request body for one user.
    fn body(&self, user: &UserFields) -> Vec<u8>;

    /// Adds authentication and any fixed headers to a request.
    fn prepare(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
    }

    /// Reads one response.
    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        classify_common(status, headers, body, "/id")
    }

    /// What to check when the target refuses our credentials (names the variables).
    fn auth_hint(&self) -> &str {
        ""
    }

    /// The canonical field an API field name refers to, for naming the user's column.
    fn field_for(&self, api_name: &str) -> Option<Field> {
        field_for_common(api_name)
    }
}

/// The usual reading of a create-user response: 2xx created (remote id at `id_pointer`),
/// 409 or a 400/422 that says "already exists" is a duplicate, 408/425/429/5xx are transient,
/// 401/403 stop the run, other 4xx refuse the row.
pub fn classify_common(status: u16, headers: &HeaderMap, body: &[u8], id_pointer: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Created {
            remote_id: remote_id(body, id_pointer),
        },
        409 => Verdict::Exists,
        401 | 403 => Verdict::Fatal {
            message: format!("credentials refused (HTTP {status}): {}", summary(body)),
        },
        408 | 425 | 429 | 500..=599 => Verdict::Retry {
            wait: server_wait(headers, SystemTime::now()),
        },
        _ => {
            let errors = problem::parse(body);
            if errors
                .iter()
                .any(|e| problem::says_already_exists(&e.message))
            {
                Verdict::Exists
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

/// The first message of an error body, for one-line operator messages.
pub fn summary(body: &[u8]) -> String {
    problem::parse(body)
        .into_iter()
        .next()
        .map(|e| e.message)
        .unwrap_or_else(|| "no body".into())
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
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The profile name.
    pub name: String,
    /// The base URL requests go to.
    pub base_url: String,
    /// The base URL is roster's own in-process sandbox (its ledger key then has no port).
    pub in_process: bool,
    /// Credentials from the environment.
    pub credentials: crate::auth::Credentials,
}

/// The built-in target names.
pub const TARGETS: &[&str] = &["sandbox"];

/// The `roster targets` listing: name, endpoint, auth and the variables each reads.
pub fn describe() -> String {
    let rows = [(
        "sandbox",
        "POST {base}/users (default: in-process on 127.0.0.1)",
        "none, or Authorization: Bearer",
        "ROSTER_TOKEN (optional)",
    )];
    let mut out = format!(
        "{:<10} {:<55} {:<32} {}\n",
        "target", "endpoint", "auth", "environment"
    );
    for (name, endpoint, auth, env) in rows {
        out.push_str(&format!("{name:<10} {endpoint:<55} {auth:<32} {env}\n"));
    }
    out
}

/// Builds the target a run talks to.
pub fn build(spec: &TargetSpec) -> Result<Arc<dyn Target>, RunError> {
    match spec.name.as_str() {
        "sandbox" => Ok(Arc::new(
            sandbox::SandboxTarget::new(&spec.base_url, spec.in_process)
                .with_token(spec.credentials.token.clone()),
        )),
        other => Err(RunError::Usage(format!(
            "unknown target `{other}` (built-in targets: {})",
            TARGETS.join(", ")
        ))),
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
        assert_eq!(verdict(409, ""), Verdict::Exists);
        assert_eq!(
            verdict(
                400,
                r#"{"errors":{"Email":["Email 'a@b.co' is already taken."]}}"#
            ),
            Verdict::Exists
        );
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
    fn api_field_names_map_to_canonical_fields() {
        assert_eq!(field_for_common("FirstName"), Some(Field::FirstName));
        assert_eq!(field_for_common("name.givenName"), Some(Field::FirstName));
        assert_eq!(field_for_common("phoneNumber"), Some(Field::Phone));
        assert_eq!(field_for_common("userName"), Some(Field::Username));
        assert_eq!(field_for_common("UserEmail"), Some(Field::Email));
        assert_eq!(field_for_common("walletAddress"), None);
    }
}
