//! SCIM 2.0 (RFC 7643/7644): `POST {base}/Users` (`--base-url` required), how Okta, Entra ID
//! and most identity providers provision users.
//!
//! Body: the core User schema, `application/scim+json`: `userName` (the username column, else
//! the email), `name {givenName, familyName, formatted}`, `displayName`,
//! `emails [{value, type: work, primary: true}]`, `phoneNumbers [{value, type: work}]`,
//! `title`, `active` (from the status column, `true` when empty) and the enterprise
//! extension's `department`. Auth: `Authorization: Bearer $ROSTER_TOKEN`. Success: 201 with
//! `id`. Errors are SCIM error messages `{schemas, scimType, detail, status}`; a 409
//! `uniqueness` means the user exists.

use super::lifecycle::{Action, Bodies, Change, changed_keys, overlay};
use super::{
    Account, AccountPart, Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec,
    display_name, username_or_email,
};
use crate::auth::Authenticator;
use crate::error::RunError;
use crate::model::{Field, UserFields};
use serde::Serialize;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// SCIM 2.0 in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "scim",
        endpoint: "POST {base}/Users (SCIM 2.0; --base-url required)",
        auth: "bearer",
        env: "ROSTER_TOKEN",
        options: &[],
        default_rate: 0.0,
        rate_source: "no limit: RFC 7644 sets none; the adaptive concurrency finds the server's pace, 429s slow it",
        password: PasswordUse::Unused,
        sandbox: Some("scim"),
    },
    schema: |_| Ok(Box::new(ScimSchema::new())),
    api: |spec| Ok(Box::new(ScimApi::new(spec)?)),
};

/// SCIM's rows: the core User, the enterprise extension's department.
pub struct ScimSchema {
    rules: TargetRules,
}

impl ScimSchema {
    fn new() -> ScimSchema {
        ScimSchema {
            rules: TargetRules {
                required: vec![Field::Email],
                max_len: vec![],
            },
        }
    }
}

/// A SCIM server.
pub struct ScimApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl ScimApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<ScimApi, RunError> {
        let base = spec.base_required()?;
        let c = &spec.credentials;
        let auth = match c.require("scim", [("ROSTER_TOKEN", &c.token)]) {
            Ok([token]) => Authenticator::bearer(token),
            Err(missing) => missing,
        };
        Ok(ScimApi {
            ledger_key: spec.ledger_key("scim", &base, Account::Of(&[AccountPart::TokenSubject])),
            endpoint: format!("{base}/Users"),
            auth,
            auth_hint: format!(
                "{} (the SCIM provisioning bearer token)",
                c.check_hint(&["ROSTER_TOKEN"])
            ),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Name<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    formatted: Option<&'a str>,
}

#[derive(Serialize)]
struct Multi<'a> {
    value: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    primary: bool,
}

#[derive(Serialize)]
struct Enterprise<'a> {
    department: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    schemas: Vec<&'static str>,
    user_name: Option<&'a str>,
    name: Name<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    emails: Vec<Multi<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    phone_numbers: Vec<Multi<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    active: bool,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    enterprise: Option<Enterprise<'a>>,
}

impl Api for ScimApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// A server without PATCH (RFC 7644 makes it optional) gets `PUT /Users/{id}`: the user
    /// as read with the changes written over it, and `active` as it was — never left out, so
    /// a replace never disables anyone by omission — or as the action sets it.
    fn fallback(&self, action: Action, remote_id: &str, bodies: Bodies<'_>) -> Option<Change> {
        if action == Action::Delete {
            return None;
        }
        let current = bodies.current?;
        let mut changes = match action {
            Action::Update => changed_keys(bodies.before, bodies.after),
            _ => serde_json::Map::new(),
        };
        changes.remove("active");
        let mut resource = overlay(Some(current), changes);
        let map = resource.as_object_mut()?;
        map.remove("meta");
        map.insert("id".into(), serde_json::Value::String(remote_id.into()));
        let active = match action {
            Action::Deactivate => false,
            Action::Reactivate => true,
            _ => current
                .get("active")
                .and_then(|a| a.as_bool())
                .unwrap_or(true),
        };
        map.insert("active".into(), serde_json::Value::Bool(active));
        Some(Change::json(
            http::Method::PUT,
            self.user_url(remote_id)?,
            resource,
        ))
    }

    /// `PATCH /Users/{id}` (RFC 7644 section 3.5.2): a `replace` per changed attribute, or of
    /// `active`; `DELETE /Users/{id}`.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        let ops: Vec<serde_json::Value> = match action {
            Action::Update => changed_keys(bodies.before, bodies.after)
                .into_iter()
                .filter(|(k, _)| k != "schemas" && k != "active")
                .map(|(path, value)| serde_json::json!({"op": "replace", "path": path, "value": value}))
                .collect(),
            Action::Deactivate => vec![serde_json::json!({"op": "replace", "path": "active", "value": false})],
            Action::Reactivate => vec![serde_json::json!({"op": "replace", "path": "active", "value": true})],
            Action::Delete => return Ok(Change::delete(url)),
        };
        Ok(Change::json(
            http::Method::PATCH,
            url,
            serde_json::json!({"schemas": [PATCH_OP], "Operations": ops}),
        ))
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

    /// RFC 7644 §3.4.2.2: `GET /Users?filter=userName eq "…"` (userName is the email here
    /// unless the row gives one).
    fn lookup_url(&self, _identity: &str, user: &UserFields) -> Option<String> {
        let name = super::username_or_email(user)?;
        let filter = format!("userName eq \"{}\"", name.replace('"', "\\\""));
        Some(super::with_query(&self.endpoint, "filter", &filter))
    }
}

impl Schema for ScimSchema {
    /// What it receives: the core and enterprise attributes SCIM carries (no role).
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(
            field,
            Email
                | FirstName
                | LastName
                | FullName
                | Username
                | Phone
                | Country
                | Status
                | Department
                | Title
        )
    }

    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    fn content_type(&self) -> &str {
        "application/scim+json"
    }

    /// Roles are not part of the SCIM core User; the column is not sent, so not judged.
    fn normalize_role(&self, raw: &str) -> Result<String, String> {
        Ok(crate::values::clean(raw))
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let display = display_name(user);
        let department = user.get(Field::Department);
        let mut schemas = vec![USER_SCHEMA];
        if department.is_some() {
            schemas.push(ENTERPRISE_SCHEMA);
        }
        let body = Body {
            schemas,
            user_name: username_or_email(user),
            name: Name {
                given_name: user.get(Field::FirstName),
                family_name: user.get(Field::LastName),
                formatted: display.as_deref(),
            },
            display_name: display.as_deref(),
            emails: user
                .get(Field::Email)
                .map(|value| Multi {
                    value,
                    kind: "work",
                    primary: true,
                })
                .into_iter()
                .collect(),
            phone_numbers: user
                .get(Field::Phone)
                .map(|value| Multi {
                    value,
                    kind: "work",
                    primary: true,
                })
                .into_iter()
                .collect(),
            title: user.get(Field::Title),
            active: user.get(Field::Status) != Some("inactive"),
            enterprise: department.map(|department| Enterprise { department }),
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_a_core_scim_user() {
        let spec = TargetSpec {
            name: "scim".into(),
            base_url: Some("http://127.0.0.1:9/scim/v2/".into()),
            ..TargetSpec::default()
        };
        let api = ScimApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "http://127.0.0.1:9/scim/v2/Users");
        let target = ScimSchema::new();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("Ann".into()));
        user.set(Field::LastName, Some("Lee".into()));
        let body: serde_json::Value = serde_json::from_slice(&target.body(&user)).unwrap();
        assert_eq!(body["userName"], "a@b.co");
        assert_eq!(body["name"]["givenName"], "Ann");
        assert_eq!(body["name"]["familyName"], "Lee");
        assert_eq!(body["emails"][0]["value"], "a@b.co");
        assert_eq!(body["emails"][0]["primary"], true);
        assert_eq!(body["active"], true);
        assert_eq!(body["schemas"][0], USER_SCHEMA);
    }
}
