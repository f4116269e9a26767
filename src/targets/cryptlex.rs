//! Cryptlex: `POST {base}/v3/users` (default base `https://api.cryptlex.com`).
//!
//! Body `{firstName, lastName, email, password, role}`, all required by the docs; `role` is
//! `user` or `organization-admin` (`user` when the row has none). Auth: a personal access token
//! as `Authorization: Bearer $ROSTER_TOKEN`. Success: the user object with `id`.
//! Errors are `{message, code}` or `{message, errors: [{message, code, field}]}` (Cryptlex's
//! response-format guide); a duplicate email is a 409 or a message saying it exists.
//! Rate limit: bursts of 50 per 5 s per IP, so the default is 9.5 requests/s evenly spaced.

use super::lifecycle::{Action, Bodies, Change, changed_keys, unsupported};
use super::{
    Account, AccountPart, Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec,
};
use crate::auth::Authenticator;
use crate::error::RunError;
use crate::model::{Field, UserFields};
use serde::Serialize;

/// The public API.
pub const DEFAULT_BASE: &str = "https://api.cryptlex.com";

/// Cryptlex in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "cryptlex",
        endpoint: "POST https://api.cryptlex.com/v3/users",
        auth: "bearer access token",
        env: "ROSTER_TOKEN",
        options: &[],
        default_rate: 9.5,
        rate_source: "Cryptlex's documented limit: bursts of 50 per 5 s per IP",
        password: PasswordUse::Required,
        sandbox: Some("cryptlex"),
    },
    schema: |_| Ok(Box::new(CryptlexSchema::new())),
    api: |spec| Ok(Box::new(CryptlexApi::new(spec)?)),
};

/// Cryptlex's rows: rules and body.
pub struct CryptlexSchema {
    rules: TargetRules,
}

impl CryptlexSchema {
    fn new() -> CryptlexSchema {
        CryptlexSchema {
            rules: TargetRules {
                required: vec![
                    Field::Email,
                    Field::FirstName,
                    Field::LastName,
                    Field::Password,
                ],
                max_len: vec![(Field::Email, 254)],
            },
        }
    }
}

/// Cryptlex's API.
pub struct CryptlexApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl CryptlexApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<CryptlexApi, RunError> {
        let base = spec.base_or(DEFAULT_BASE);
        let c = &spec.credentials;
        let auth = match c.require("cryptlex", [("ROSTER_TOKEN", &c.token)]) {
            Ok([token]) => Authenticator::bearer(token),
            Err(missing) => missing,
        };
        Ok(CryptlexApi {
            ledger_key: spec.ledger_key(
                "cryptlex",
                &base,
                Account::Of(&[AccountPart::TokenSubject]),
            ),
            endpoint: format!("{base}/v3/users"),
            auth_hint: format!(
                "{} (a Cryptlex personal access token with user write scope)",
                c.check_hint(&["ROSTER_TOKEN"])
            ),
            auth,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    email: Option<&'a str>,
    password: Option<&'a str>,
    role: &'a str,
}

impl Schema for CryptlexSchema {
    /// What it receives: the body: email, names, password, role.
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(
            field,
            Email | FirstName | LastName | FullName | Password | Role
        )
    }

    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let body = Body {
            first_name: user.get(Field::FirstName),
            last_name: user.get(Field::LastName),
            email: user.get(Field::Email),
            password: user.get(Field::Password),
            role: user.get(Field::Role).unwrap_or("user"),
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for CryptlexApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// `PATCH /v3/users/{id}` with the changed fields; `DELETE /v3/users/{id}`. Cryptlex has
    /// no deactivation of a user (the closest, `allowCustomerPortalAccess`, is not one).
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        match action {
            Action::Update => Ok(Change::patch(
                url,
                changed_keys(bodies.before, bodies.after),
            )),
            Action::Delete => Ok(Change::delete(url)),
            Action::Deactivate | Action::Reactivate => Err(unsupported(
                action,
                "Cryptlex documents no disabled state for users (closest: allowCustomerPortalAccess)",
            )),
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

    /// `GET /v3/users?email=` lists the users with that email.
    fn lookup_url(&self, identity: &str, _user: &UserFields) -> Option<String> {
        Some(super::with_query(&self.endpoint, "email", identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_follows_the_docs() {
        let spec = TargetSpec {
            name: "cryptlex".into(),
            base_url: Some("http://127.0.0.1:9/cryptlex/".into()),
            ..TargetSpec::default()
        };
        let api = CryptlexApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "http://127.0.0.1:9/cryptlex/v3/users");
        assert!(matches!(api.auth(), Authenticator::Missing(m) if m.contains("ROSTER_TOKEN")));
        let target = CryptlexSchema::new();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        user.set(Field::LastName, Some("B".into()));
        user.set(Field::Password, Some("pw".into()));
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"firstName":"A","lastName":"B","email":"a@b.co","password":"pw","role":"user"}"#
        );
    }
}
