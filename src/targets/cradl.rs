//! Cradl: `POST {base}/users` (default base `https://api.cradl.ai/v1`), 200 with `userId`.
//!
//! Body `{email, name, description, appClientId, roleIds, metadata}`: `name` is "First Last"
//! (or the full-name column); `roleIds` are the role column's Cradl role ids (`cradl:role:…`,
//! several separated by `,` `;` `|`), else `--target-option role_ids=…`; `appClientId` and
//! `description` come from `--target-option app_client_id=…` / `description=…`; `metadata`
//! keeps the columns Cradl has no field for (phone, department, title, country).
//! Local rules from the page: the email pattern
//! `^[A-Za-z0-9][-+._A-Za-z0-9]*@([-_.A-Za-z0-9]+\.)+[A-Za-z]{2,}$`, role ids
//! `^(cradl|las):role:[0-9A-Za-z-_]{1,32}$`, app client ids `^(cradl|las):app-client:[a-z0-9-_]+$`,
//! name and description at most 4096 characters.
//!
//! Auth: OAuth2 client credentials ($ROSTER_CLIENT_ID, $ROSTER_CLIENT_SECRET) at
//! `https://auth.cradl.ai/oauth2/token` with `audience=https://api.cradl.ai/v1` — or, when
//! `--base-url` points elsewhere, at `{base}/oauth2/token` with that base as audience;
//! `--token-url` overrides. $ROSTER_TOKEN is used as given when set. Errors are
//! `{"message": …}`; 403 "Forbidden" means bad credentials; 429 "Too Many Requests" is the
//! per-second limit (retried) but 429 "Limit Exceeded" is the monthly quota: the run stops.

use super::lifecycle::{Action, Bodies, Change, changed_keys, unsupported};
use super::{
    Account, AccountPart, Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec,
    Verdict, display_name,
};
use crate::auth::Authenticator;
use crate::auth::token::{ClientCredentials, TokenSource};
use crate::error::RunError;
use crate::model::{ErrorCode, Field, UserFields};
use http::header::HeaderMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The public API.
pub const DEFAULT_BASE: &str = "https://api.cradl.ai/v1";
/// The public token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.cradl.ai/oauth2/token";
/// Users a new Cradl organisation may create in total.
const DEFAULT_QUOTA: u64 = 5;

/// Cradl in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "cradl",
        endpoint: "POST https://api.cradl.ai/v1/users",
        auth: "OAuth2 client credentials",
        env: "ROSTER_CLIENT_ID ROSTER_CLIENT_SECRET (or ROSTER_TOKEN)",
        options: &["app_client_id", "role_ids", "description"],
        default_rate: 5.0,
        rate_source: "roster's choice: Cradl limits per second and per month (429s tell which)",
        password: PasswordUse::Unused,
        sandbox: Some("cradl"),
    },
    schema: |spec| Ok(Box::new(CradlSchema::new(spec)?)),
    api: |spec| Ok(Box::new(CradlApi::new(spec)?)),
};

/// Cradl's rows: its patterns, role ids, and the body with the run's options.
pub struct CradlSchema {
    rules: TargetRules,
    app_client_id: Option<String>,
    role_ids: Vec<String>,
    description: Option<String>,
}

impl CradlSchema {
    /// The rows' half described by `spec`'s options.
    pub fn new(spec: &TargetSpec) -> Result<CradlSchema, RunError> {
        let app_client_id = spec.option("app_client_id").map(str::to_string);
        if let Some(id) = &app_client_id
            && !is_app_client_id(id)
        {
            return Err(RunError::Usage(format!(
                "cradl app_client_id `{id}` does not look like cradl:app-client:…"
            )));
        }
        let role_ids = match spec.option("role_ids") {
            Some(list) => role_id_list(list).map_err(|bad| {
                RunError::Usage(format!(
                    "cradl role_ids: `{bad}` does not look like cradl:role:…"
                ))
            })?,
            None => Vec::new(),
        };
        if let Some(description) = spec.option("description")
            && description.chars().count() > 4096
        {
            return Err(RunError::Usage(
                "cradl description: at most 4096 characters".into(),
            ));
        }
        Ok(CradlSchema {
            rules: TargetRules {
                required: vec![Field::Email],
                max_len: vec![(Field::FullName, 4096)],
            },
            app_client_id,
            role_ids,
            description: spec.option("description").map(str::to_string),
        })
    }
}

/// Cradl's API.
pub struct CradlApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl CradlApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<CradlApi, RunError> {
        let base = spec.base_or(DEFAULT_BASE);
        let c = &spec.credentials;
        // The grant, when its credentials are set, even beside a ROSTER_TOKEN: its tokens
        // renew themselves, a pasted one expires mid-run.
        let grant_set = c.client_id.is_some() && c.client_secret.is_some();
        const GRANT: [&str; 2] = ["ROSTER_CLIENT_ID", "ROSTER_CLIENT_SECRET"];
        let pasted = c.token.as_ref().filter(|_| !grant_set);
        let auth_hint = c.token_or_grant_hint(pasted.is_some(), &GRANT, "client-credentials");
        let auth = match pasted {
            Some(token) => Authenticator::bearer(token.clone()),
            None => match c.require(
                "cradl",
                [
                    ("ROSTER_CLIENT_ID", &c.client_id),
                    ("ROSTER_CLIENT_SECRET", &c.client_secret),
                ],
            ) {
                Ok([client_id, client_secret]) => {
                    let (default_url, audience) = if base == DEFAULT_BASE {
                        (DEFAULT_TOKEN_URL.to_string(), DEFAULT_BASE.to_string())
                    } else {
                        (format!("{base}/oauth2/token"), base.clone())
                    };
                    let grant = ClientCredentials {
                        client_id,
                        client_secret,
                        audience: Some(audience),
                    };
                    let url = spec.token_url.clone().unwrap_or(default_url);
                    let source = TokenSource::new(url, Box::new(grant), super::token_client()?);
                    Authenticator::Token(Arc::new(source))
                }
                Err(missing) => missing,
            },
        };
        Ok(CradlApi {
            ledger_key: spec.ledger_key("cradl", &base, Account::Of(&[AccountPart::ClientId])),
            endpoint: format!("{base}/users"),
            auth,
            auth_hint,
        })
    }
}

/// `^(cradl|las):role:[0-9A-Za-z-_]{1,32}$`
fn is_role_id(s: &str) -> bool {
    let rest = s
        .strip_prefix("cradl:role:")
        .or_else(|| s.strip_prefix("las:role:"));
    rest.is_some_and(|r| {
        (1..=32).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// `^(cradl|las):app-client:[a-z0-9-_]+$`
fn is_app_client_id(s: &str) -> bool {
    let rest = s
        .strip_prefix("cradl:app-client:")
        .or_else(|| s.strip_prefix("las:app-client:"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    })
}

/// `^[A-Za-z0-9][-+._A-Za-z0-9]*@([-_.A-Za-z0-9]+\.)+[A-Za-z]{2,}$`
fn is_cradl_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = local
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_'));
    let Some((labels, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let labels_ok = !labels.is_empty()
        && labels
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let tld_ok = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic());
    local_ok && labels_ok && tld_ok
}

/// Role ids separated by `,` `;` `|` or whitespace; the first that is not one is the error.
fn role_id_list(list: &str) -> Result<Vec<String>, String> {
    list.split([',', ';', '|', ' ', '\t'])
        .filter(|r| !r.is_empty())
        .map(|r| {
            if is_role_id(r) {
                Ok(r.to_string())
            } else {
                Err(r.to_string())
            }
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    role_ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<&'a str, &'a str>,
}

impl Schema for CradlSchema {
    /// What it receives: the body: email, name, roleIds; phone, country, department and title ride in `metadata` as free text.
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(field, Email | FirstName | LastName | FullName | Role)
    }

    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    /// Cradl roles are role ids; a plain "user" means Cradl's default (no role ids).
    fn normalize_role(&self, raw: &str) -> Result<String, String> {
        let value = crate::values::clean(raw);
        if let Ok(ids) = role_id_list(&value) {
            return Ok(ids.join(","));
        }
        match crate::values::role(&value) {
            Ok(role) if role == "user" => Ok(String::new()),
            _ => Err(format!(
                "`{value}` is not a Cradl role id (cradl:role:… — up to 32 letters, digits, - or _); \
                 name the id it stands for with --role-synonym {value}=cradl:role:ID, or send no \
                 roles with --map role="
            )),
        }
    }

    fn check(&self, user: &UserFields, problems: &mut Vec<super::RuleProblem>) {
        if let Some(email) = user.get(Field::Email)
            && !is_cradl_email(email)
        {
            problems.push((
                Field::Email,
                ErrorCode::Format,
                format!("`{email}` does not match Cradl's email pattern"),
            ));
        }
        if let Some(name) = display_name(user)
            && name.chars().count() > 4096
        {
            problems.push((
                Field::FirstName,
                ErrorCode::Length,
                "the name is longer than Cradl's 4096 characters".into(),
            ));
        }
    }

    /// Cradl's one `name` holds first and last name: its errors belong to the first-name column.
    fn field_for(&self, api_name: &str) -> Option<Field> {
        match api_name {
            "name" => Some(Field::FirstName),
            other => super::field_for_common(other),
        }
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let mut role_ids: Vec<&str> = user
            .get(Field::Role)
            .map(|r| r.split(',').filter(|r| !r.is_empty()).collect())
            .unwrap_or_default();
        if role_ids.is_empty() {
            role_ids = self.role_ids.iter().map(String::as_str).collect();
        }
        let mut metadata = BTreeMap::new();
        for (key, field) in [
            ("phone", Field::Phone),
            ("department", Field::Department),
            ("title", Field::Title),
            ("country", Field::Country),
        ] {
            if let Some(value) = user.get(field) {
                metadata.insert(key, value);
            }
        }
        // The file's own `metadata.*` columns, which win over the derived keys above.
        for (key, value) in user.metadata() {
            metadata.insert(key.as_str(), value.as_str());
        }
        let body = Body {
            email: user.get(Field::Email),
            name: display_name(user),
            description: self.description.as_deref(),
            app_client_id: self.app_client_id.as_deref(),
            role_ids,
            metadata,
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for CradlApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// `PATCH /users/{userId}` with what changed of metadata, roleIds, name and description
    /// (the fields Cradl lets change); `DELETE /users/{userId}`. Cradl's `status` is
    /// read-only: no deactivation.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        match action {
            Action::Update => {
                let mut changes = changed_keys(bodies.before, bodies.after);
                changes.retain(|k, _| {
                    ["metadata", "roleIds", "name", "description"].contains(&k.as_str())
                });
                Ok(Change::patch(url, changes))
            }
            Action::Delete => Ok(Change::delete(url)),
            Action::Deactivate | Action::Reactivate => {
                Err(unsupported(action, "Cradl's user status is read-only"))
            }
        }
    }

    fn ledger_key(&self) -> &str {
        &self.ledger_key
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn auth(&self) -> &Authenticator {
        &self.auth
    }

    fn auth_hint(&self) -> &str {
        &self.auth_hint
    }

    fn default_rate(&self) -> f64 {
        DEF.info.default_rate
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        if status == 429
            && crate::http::problem::summary(body)
                .to_lowercase()
                .contains("limit exceeded")
        {
            return Verdict::Fatal {
                message: "Cradl's quota is used up (429 Limit Exceeded): raise it in the Cradl \
                          app before importing more users"
                    .into(),
            };
        }
        super::classify_common(status, headers, body, "/userId")
    }

    fn dry_run_warning(&self, would_send: u64) -> Option<String> {
        (would_send > DEFAULT_QUOTA).then(|| {
            format!(
                "cradl: {would_send} users would be created, but a Cradl organisation's default \
                 quota is {DEFAULT_QUOTA} users in total; check yours before importing"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_the_page() {
        assert!(is_cradl_email("a.b+c@x-y.example.com"));
        for bad in ["_a@b.co", "a@b.c", "a@b", "a b@c.co", "a@b.c0m", "a@.co"] {
            assert!(!is_cradl_email(bad), "{bad}");
        }
        assert!(is_role_id("cradl:role:admin-1"));
        assert!(is_role_id("las:role:x"));
        assert!(!is_role_id("cradl:role:"));
        assert!(!is_role_id(&format!("cradl:role:{}", "a".repeat(33))));
        assert!(is_app_client_id("cradl:app-client:abc-1"));
        assert!(!is_app_client_id("cradl:app-client:ABC"));
    }

    #[test]
    fn roles_are_role_ids_and_body_has_name_and_metadata() {
        let spec = TargetSpec {
            name: "cradl".into(),
            ..TargetSpec::default()
        };
        let api = CradlApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "https://api.cradl.ai/v1/users");
        let target = CradlSchema::new(&spec).unwrap();
        assert_eq!(
            target
                .normalize_role(" cradl:role:a; cradl:role:b ")
                .unwrap(),
            "cradl:role:a,cradl:role:b"
        );
        assert_eq!(target.normalize_role("User").unwrap(), "");
        assert!(target.normalize_role("Org Admin").is_err());
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("Ann".into()));
        user.set(Field::LastName, Some("Lee".into()));
        user.set(Field::Role, Some("cradl:role:a".into()));
        user.set(Field::Phone, Some("+14155550123".into()));
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"email":"a@b.co","name":"Ann Lee","roleIds":["cradl:role:a"],"metadata":{"phone":"+14155550123"}}"#
        );
        user.push_metadata("employee_id", "E-17".into());
        user.push_metadata("phone", "+442079460958".into());
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"email":"a@b.co","name":"Ann Lee","roleIds":["cradl:role:a"],"metadata":{"employee_id":"E-17","phone":"+442079460958"}}"#,
            "the file's metadata.* columns pass through and win"
        );
    }

    #[test]
    fn quota_exhaustion_stops_but_throttling_retries() {
        let spec = TargetSpec {
            name: "cradl".into(),
            ..TargetSpec::default()
        };
        let target = CradlApi::new(&spec).unwrap();
        let h = HeaderMap::new();
        assert!(matches!(
            target.classify(429, &h, br#"{"message":"Limit Exceeded"}"#),
            Verdict::Fatal { .. }
        ));
        assert!(matches!(
            target.classify(429, &h, br#"{"message":"Too Many Requests"}"#),
            Verdict::Retry { .. }
        ));
        assert_eq!(
            target.classify(200, &h, br#"{"userId":"cradl:user:1"}"#),
            Verdict::Created {
                remote_id: Some("cradl:user:1".into())
            }
        );
    }
}
