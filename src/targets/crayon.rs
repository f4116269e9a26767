//! Crayon: `POST {base}/api/v1/users/` (default base `https://api.crayon.com`), PascalCase body.
//!
//! Body `{UserName, FirstName, LastName, Email, PhoneNumber, TenantAdmin}`: `UserName` is the
//! username column, else the email; `TenantAdmin` is `true` when the role is
//! organization-admin (omitted otherwise, as the docs say it need not be set). UserName,
//! FirstName and LastName are required (the seed page). Success: 200 with the User and its
//! `Id`. Errors: `{ErrorCode, Message, ObjectErrors: [{ErrorCode, Message, Parameters}]}`.
//!
//! Auth: OAuth2 password grant at `{base}/api/v1/connect/token/` (or `--token-url`), client id
//! and secret in HTTP Basic, scope `CustomerApi` ($ROSTER_CLIENT_ID, $ROSTER_CLIENT_SECRET,
//! $ROSTER_USERNAME, $ROSTER_PASSWORD); or a ready token in $ROSTER_TOKEN.
//!
//! A password (column or `--generate-passwords`) is a second call,
//! `PUT {base}/api/v1/users/{Id}/changepassword/` with `{UserId, NewPassword}`.
//! No published rate limit: 5 requests/s by default.

use super::lifecycle::{Action, Bodies, Change, unsupported};
use super::{
    Account, AccountPart, Api, FollowUp, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules,
    TargetSpec, username_or_email,
};
use crate::auth::Authenticator;
use crate::auth::token::{PasswordGrant, TokenSource};
use crate::error::RunError;
use crate::model::{Field, UserFields};
use http::header::HeaderMap;
use serde::Serialize;
use std::sync::Arc;

/// The public API.
pub const DEFAULT_BASE: &str = "https://api.crayon.com";

/// Crayon in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "crayon",
        endpoint: "POST https://api.crayon.com/api/v1/users/",
        auth: "OAuth2 password grant",
        env: "ROSTER_CLIENT_ID ROSTER_CLIENT_SECRET ROSTER_USERNAME ROSTER_PASSWORD (or ROSTER_TOKEN)",
        options: &[],
        default_rate: 5.0,
        rate_source: "roster's choice: Crayon publishes no limit, so a conservative pace",
        password: PasswordUse::Optional,
        sandbox: Some("crayon"),
    },
    schema: |_| Ok(Box::new(CrayonSchema::new())),
    api: |spec| Ok(Box::new(CrayonApi::new(spec)?)),
};

/// Crayon's rows: rules and the PascalCase body.
pub struct CrayonSchema {
    rules: TargetRules,
}

impl CrayonSchema {
    fn new() -> CrayonSchema {
        CrayonSchema {
            rules: TargetRules {
                required: vec![Field::Email, Field::FirstName, Field::LastName],
                max_len: vec![(Field::Email, 256), (Field::Username, 256)],
            },
        }
    }
}

/// Crayon's API.
pub struct CrayonApi {
    base: String,
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl CrayonApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<CrayonApi, RunError> {
        let base = spec.base_or(DEFAULT_BASE);
        let c = &spec.credentials;
        // The grant, when all of its credentials are set, even beside a ROSTER_TOKEN: its
        // tokens renew themselves, a pasted one expires mid-run.
        let grant_set = [&c.client_id, &c.client_secret, &c.username, &c.password]
            .iter()
            .all(|v| v.is_some());
        const GRANT: [&str; 4] = [
            "ROSTER_CLIENT_ID",
            "ROSTER_CLIENT_SECRET",
            "ROSTER_USERNAME",
            "ROSTER_PASSWORD",
        ];
        let pasted = c.token.as_ref().filter(|_| !grant_set);
        let auth_hint = c.token_or_grant_hint(pasted.is_some(), &GRANT, "password");
        let auth = match pasted {
            Some(token) => Authenticator::bearer(token.clone()),
            None => match c.require(
                "crayon",
                [
                    ("ROSTER_CLIENT_ID", &c.client_id),
                    ("ROSTER_CLIENT_SECRET", &c.client_secret),
                    ("ROSTER_USERNAME", &c.username),
                    ("ROSTER_PASSWORD", &c.password),
                ],
            ) {
                Ok([client_id, client_secret, username, password]) => {
                    let url = spec
                        .token_url
                        .clone()
                        .unwrap_or_else(|| format!("{base}/api/v1/connect/token/"));
                    let grant = PasswordGrant {
                        client_id,
                        client_secret,
                        username,
                        password,
                        scope: Some("CustomerApi".into()),
                    };
                    let source = TokenSource::new(url, Box::new(grant), super::token_client()?);
                    Authenticator::Token(Arc::new(source))
                }
                Err(missing) => missing,
            },
        };
        Ok(CrayonApi {
            ledger_key: spec.ledger_key(
                "crayon",
                &base,
                Account::Of(&[AccountPart::ClientId, AccountPart::Username]),
            ),
            endpoint: format!("{base}/api/v1/users/"),
            auth,
            auth_hint,
            base,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    user_name: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_admin: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ChangePassword<'a> {
    user_id: &'a str,
    new_password: &'a str,
}

impl Schema for CrayonSchema {
    /// What it receives: the body: UserName, names, Email, PhoneNumber, TenantAdmin (from the role), the password step.
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(
            field,
            Email | FirstName | LastName | FullName | Username | Password | Phone | Country | Role
        )
    }

    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let body = Body {
            user_name: username_or_email(user),
            first_name: user.get(Field::FirstName),
            last_name: user.get(Field::LastName),
            email: user.get(Field::Email),
            phone_number: user.get(Field::Phone),
            tenant_admin: (user.get(Field::Role) == Some("organization-admin")).then_some(true),
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for CrayonApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// `PUT /api/v1/users/{id}` with the documented UserName, FirstName, LastName and
    /// TenantAdmin, as the file says now; `DELETE /api/v1/users/{id}` (answers `true`).
    /// Crayon documents no disabled state.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        match action {
            Action::Update => {
                let after = bodies.after;
                let mut body = serde_json::Map::new();
                body.insert("Id".into(), serde_json::Value::String(remote_id.into()));
                for key in ["UserName", "FirstName", "LastName"] {
                    if let Some(value) = after.get(key) {
                        body.insert(key.into(), value.clone());
                    }
                }
                let admin = after
                    .get("TenantAdmin")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                body.insert("TenantAdmin".into(), serde_json::Value::Bool(admin));
                Ok(Change::json(
                    http::Method::PUT,
                    url,
                    serde_json::Value::Object(body),
                ))
            }
            Action::Delete => Ok(Change::delete(url)),
            Action::Deactivate | Action::Reactivate => Err(unsupported(
                action,
                "Crayon documents no disabled state for users",
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

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> super::Verdict {
        super::classify_common(status, headers, body, "/Id")
    }

    /// `GET /api/v1/users/user/?userName=…` (apidocs.crayon.com, user-get-by-username): the
    /// user holding the user name roster sent, whose `Email` says whether it is this person.
    fn lookup_url(&self, _identity: &str, user: &UserFields) -> Option<String> {
        let name = username_or_email(user)?;
        Some(super::with_query(
            &format!("{}/api/v1/users/user/", self.base),
            "userName",
            name,
        ))
    }

    fn follow_up(&self, remote_id: &str, user: &UserFields) -> Option<FollowUp> {
        let password = user.get(Field::Password)?;
        let body = ChangePassword {
            user_id: remote_id,
            new_password: password,
        };
        Some(FollowUp {
            method: http::Method::PUT,
            url: format!("{}/api/v1/users/{remote_id}/changepassword/", self.base),
            body: serde_json::to_vec(&body).expect("strings always serialise"),
            what: "setting the password",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_pascal_case_with_username_from_email() {
        let spec = TargetSpec {
            name: "crayon".into(),
            ..TargetSpec::default()
        };
        let api = CrayonApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "https://api.crayon.com/api/v1/users/");
        let target = CrayonSchema::new();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        user.set(Field::LastName, Some("B".into()));
        user.set(Field::Role, Some("organization-admin".into()));
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"UserName":"a@b.co","FirstName":"A","LastName":"B","Email":"a@b.co","TenantAdmin":true}"#
        );
        assert!(api.follow_up("u1", &user).is_none());
        user.set(Field::Password, Some("pw".into()));
        let step = api.follow_up("u1", &user).unwrap();
        assert_eq!(
            step.url,
            "https://api.crayon.com/api/v1/users/u1/changepassword/"
        );
        assert_eq!(
            String::from_utf8(step.body).unwrap(),
            r#"{"UserId":"u1","NewPassword":"pw"}"#
        );
    }
}
