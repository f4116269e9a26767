//! The client side of roster's own sandbox API (`POST {base}/users`).
//!
//! Body: `{"email","firstName","lastName","username","phone","role","password"}` (absent
//! values omitted); 201 with `id`; 400 problem details with an `errors` map; 409 duplicate.
//! Auth: `Authorization: Bearer $ROSTER_TOKEN` when the variable is set (the sandbox checks it
//! only when started with a token).

use super::lifecycle::status;
use super::lifecycle::{Action, Bodies, Change, changed_keys};
use super::{Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec};
use crate::auth::Authenticator;
use crate::model::{Field, UserFields};
use serde::Serialize;

/// The sandbox in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "sandbox",
        endpoint: "POST {base}/users (default: in-process on 127.0.0.1)",
        auth: "none, or bearer",
        env: "ROSTER_TOKEN (optional)",
        options: &[],
        default_rate: 0.0,
        rate_source: "no limit: the sandbox is local (`roster sandbox --rate N` fakes one)",
        password: PasswordUse::Optional,
        sandbox: Some("sandbox"),
    },
    schema: |_| Ok(Box::new(SandboxSchema::new())),
    api: |spec| Ok(Box::new(SandboxApi::new(spec))),
};

/// The sandbox's rows: rules and body.
pub struct SandboxSchema {
    rules: TargetRules,
}

impl SandboxSchema {
    /// The sandbox's rules: email, first and last name.
    pub fn new() -> SandboxSchema {
        SandboxSchema {
            rules: TargetRules {
                required: vec![Field::Email, Field::FirstName, Field::LastName],
                max_len: vec![(Field::Email, 254)],
            },
        }
    }
}

impl Default for SandboxSchema {
    fn default() -> Self {
        Self::new()
    }
}

/// The sandbox's API.
pub struct SandboxApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
}

impl SandboxApi {
    /// The sandbox at the spec's base URL (default `http://127.0.0.1:8080`); the in-process
    /// one has a port-independent ledger key, so re-running the default command finds its
    /// earlier results. `Authorization: Bearer $ROSTER_TOKEN` when the variable is set.
    pub fn new(spec: &TargetSpec) -> SandboxApi {
        let base = spec.base_or("http://127.0.0.1:8080");
        let ledger_key = match spec.in_process {
            true => "sandbox".to_string(),
            false => format!("sandbox@{base}"),
        };
        let auth = match &spec.credentials.token {
            Some(token) => Authenticator::bearer(token.clone()),
            None => Authenticator::None,
        };
        SandboxApi {
            ledger_key,
            endpoint: format!("{base}/users"),
            auth,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
}

impl Schema for SandboxSchema {
    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let body = Body {
            email: user.get(Field::Email),
            first_name: user.get(Field::FirstName),
            last_name: user.get(Field::LastName),
            username: user.get(Field::Username),
            phone: user.get(Field::Phone),
            role: user.get(Field::Role),
            password: user.get(Field::Password),
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for SandboxApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// `PATCH /users/{id}` with the changed fields, or `status` `DISABLED`/`ENABLED`;
    /// `DELETE /users/{id}`.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        Ok(match action {
            Action::Update => Change::patch(url, changed_keys(bodies.before, bodies.after)),
            Action::Deactivate => Change::patch(url, status("DISABLED")),
            Action::Reactivate => Change::patch(url, status("ENABLED")),
            Action::Delete => Change::delete(url),
        })
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
        "check ROSTER_TOKEN"
    }

    fn default_rate(&self) -> f64 {
        DEF.info.default_rate
    }

    /// The sandbox honours `Idempotency-Key`.
    fn idempotency_keys(&self) -> bool {
        true
    }

    fn lookup_url(&self, identity: &str, _user: &UserFields) -> Option<String> {
        Some(super::with_query(&self.endpoint, "email", identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_uses_camel_case_and_omits_absent_fields() {
        let spec = TargetSpec {
            name: "sandbox".into(),
            base_url: Some("http://127.0.0.1:1/".into()),
            ..TargetSpec::default()
        };
        let api = SandboxApi::new(&spec);
        assert_eq!(api.endpoint(), "http://127.0.0.1:1/users");
        assert_eq!(api.ledger_key(), "sandbox@http://127.0.0.1:1");
        let target = SandboxSchema::new();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        let body = String::from_utf8(target.body(&user)).unwrap();
        assert_eq!(body, r#"{"email":"a@b.co","firstName":"A"}"#);
    }
}
