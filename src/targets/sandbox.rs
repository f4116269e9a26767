//! The client side of roster's own sandbox API (`POST {base}/users`).
//!
//! Body: `{"email","firstName","lastName","username","phone","role","password"}` (absent
//! values omitted); 201 with `id`; 400 problem details with an `errors` map; 409 duplicate.
//! Auth: `Authorization: Bearer $ROSTER_TOKEN` when the variable is set (the sandbox checks it
//! only when started with a token).

use super::{Target, TargetBase, TargetRules};
use crate::auth::Authenticator;
use crate::model::{Field, UserFields};
use secrecy::SecretString;
use serde::Serialize;

/// The sandbox target.
pub struct SandboxTarget {
    common: TargetBase,
}

impl SandboxTarget {
    /// A sandbox target at `base_url`; `in_process` gives it a port-independent ledger key, so
    /// re-running the default command finds its earlier results.
    pub fn new(base_url: &str, in_process: bool) -> SandboxTarget {
        let base = base_url.trim_end_matches('/');
        let ledger_key = if in_process {
            "sandbox".to_string()
        } else {
            format!("sandbox@{base}")
        };
        SandboxTarget {
            common: TargetBase {
                auth: Authenticator::None,
                ledger_key,
                endpoint: format!("{base}/users"),
                rules: TargetRules {
                    required: vec![Field::Email, Field::FirstName, Field::LastName],
                    max_len: vec![(Field::Email, 254)],
                },
            },
        }
    }
}

impl SandboxTarget {
    /// Sends `Authorization: Bearer <token>` (from `ROSTER_TOKEN`) when given one.
    pub fn with_token(mut self, token: Option<SecretString>) -> SandboxTarget {
        self.common.auth = match token {
            Some(token) => Authenticator::bearer(token),
            None => Authenticator::None,
        };
        self
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

impl Target for SandboxTarget {
    fn name(&self) -> &str {
        "sandbox"
    }

    fn common(&self) -> &TargetBase {
        &self.common
    }

    /// The sandbox honours `Idempotency-Key`.
    fn idempotency_keys(&self) -> bool {
        true
    }

    fn lookup_url(&self, identity: &str, _user: &UserFields) -> Option<String> {
        Some(super::with_query(&self.common.endpoint, "email", identity))
    }

    fn default_rate(&self) -> f64 {
        0.0
    }

    fn auth_hint(&self) -> &str {
        "check ROSTER_TOKEN"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_uses_camel_case_and_omits_absent_fields() {
        let target = SandboxTarget::new("http://127.0.0.1:1/", false);
        assert_eq!(target.endpoint(), "http://127.0.0.1:1/users");
        assert_eq!(target.ledger_key(), "sandbox@http://127.0.0.1:1");
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        let body = String::from_utf8(target.body(&user)).unwrap();
        assert_eq!(body, r#"{"email":"a@b.co","firstName":"A"}"#);
    }
}
