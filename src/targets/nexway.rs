//! Nexway: `POST {base}/iam/users` (default base `https://api.nexway.store`), 201 on success.
//!
//! Body `{email, firstName, lastName, userName, password, status, roles, authorizedCustomers}`:
//! `userName` is the username column, else the email; `status` is `ENABLED` or `DISABLED`
//! from the status column (`ENABLED` when empty); `password` is required: the page marks every
//! property *Optional* but these five, so an import without a password column stops before
//! sending with the `--generate-passwords` hint (Keycloak, which Nexway's IAM is built on,
//! would take a user without one; the page is what roster builds to). `roles` (`[{name}]`) and `authorizedCustomers`
//! (`[{customerId, name}]`) come from `--target-option roles=a,b`, `customer_id=…`,
//! `customer_name=…`, the same for every user.
//!
//! Auth: a JWT bearer: $ROSTER_TOKEN as given, or one fetched from `POST {base}/iam/tokens`
//! (or `--token-url`) with `{realmName: $ROSTER_REALM, grantType: client_credentials}` and
//! $ROSTER_CLIENT_ID/$ROSTER_CLIENT_SECRET, or `grantType: password` with
//! $ROSTER_USERNAME/$ROSTER_PASSWORD. Tokens live 300 s: renewed ahead of expiry with the
//! refresh token. Only 201/401/403/404/500 are documented; other refusals are read
//! generically (Keycloak's 409 `{"errorMessage": "User exists with same email"}` = exists).
//! Rate limit: 10 requests/s.

use super::lifecycle::status;
use super::lifecycle::{Action, Bodies, Change, changed_keys, overlay};
use super::{
    Account, AccountPart, Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec,
    username_or_email,
};
use crate::auth::Authenticator;
use crate::auth::token::{TokenDialect, TokenRequest, TokenSource};
use crate::error::RunError;
use crate::model::{Field, UserFields};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::Arc;

/// The public API.
pub const DEFAULT_BASE: &str = "https://api.nexway.store";

/// Nexway in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "nexway",
        endpoint: "POST https://api.nexway.store/iam/users",
        auth: "bearer, or token from /iam/tokens",
        env: "ROSTER_TOKEN, or ROSTER_REALM + ROSTER_CLIENT_ID/SECRET or ROSTER_USERNAME/PASSWORD",
        options: &["roles", "customer_id", "customer_name"],
        default_rate: 10.0,
        rate_source: "Nexway's documented limit (nx-api-docs, rate limits): 10 requests/s",
        password: PasswordUse::Required,
        sandbox: Some("nexway"),
    },
    schema: |spec| Ok(Box::new(NexwaySchema::new(spec))),
    api: |spec| Ok(Box::new(NexwayApi::new(spec)?)),
};

/// Nexway's rows: rules, and the body with the run's roles and customers.
pub struct NexwaySchema {
    rules: TargetRules,
    roles: Vec<Role>,
    customers: Vec<Customer>,
}

#[derive(Serialize, Clone)]
struct Role {
    name: String,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Customer {
    customer_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl NexwaySchema {
    fn new(spec: &TargetSpec) -> NexwaySchema {
        let roles = spec
            .option("roles")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(|name| Role { name: name.into() })
                    .collect()
            })
            .unwrap_or_default();
        let customers = spec
            .option("customer_id")
            .map(|id| Customer {
                customer_id: id.into(),
                name: spec.option("customer_name").map(str::to_string),
            })
            .into_iter()
            .collect();
        NexwaySchema {
            rules: TargetRules {
                required: vec![
                    Field::Email,
                    Field::FirstName,
                    Field::LastName,
                    Field::Password,
                ],
                max_len: vec![(Field::Email, 255), (Field::Username, 255)],
            },
            roles,
            customers,
        }
    }
}

/// Nexway's API.
pub struct NexwayApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl NexwayApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<NexwayApi, RunError> {
        let base = spec.base_or(DEFAULT_BASE);
        Ok(NexwayApi {
            ledger_key: spec.ledger_key(
                "nexway",
                &base,
                Account::Of(&[
                    AccountPart::Realm,
                    AccountPart::ClientId,
                    AccountPart::Username,
                ]),
            ),
            endpoint: format!("{base}/iam/users"),
            auth: authenticator(spec, &base)?,
            auth_hint: auth_hint(&spec.credentials),
        })
    }
}

/// Nexway's `POST /iam/tokens`: a JSON body `{realmName, grantType, …}` with client
/// credentials, a user's, or a refresh token; renewals prefer the refresh token.
struct NexwayTokens {
    realm: SecretString,
    client: Option<(SecretString, SecretString)>,
    user: Option<(SecretString, SecretString)>,
}

impl TokenDialect for NexwayTokens {
    fn request(&self, refresh: Option<&SecretString>) -> TokenRequest {
        let mut body = serde_json::Map::new();
        body.insert("realmName".into(), self.realm.expose_secret().into());
        if let Some((id, secret)) = &self.client {
            body.insert("clientId".into(), id.expose_secret().into());
            body.insert("clientSecret".into(), secret.expose_secret().into());
        }
        match (refresh, &self.user) {
            (Some(refresh), _) => {
                body.insert("grantType".into(), "refresh_token".into());
                body.insert("refreshToken".into(), refresh.expose_secret().into());
            }
            (None, Some((name, password))) => {
                body.insert("grantType".into(), "password".into());
                body.insert("username".into(), name.expose_secret().into());
                body.insert("password".into(), password.expose_secret().into());
            }
            (None, None) => {
                body.insert("grantType".into(), "client_credentials".into());
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        TokenRequest {
            headers,
            body: serde_json::Value::Object(body).to_string(),
        }
    }

    fn secrets(&self) -> Vec<String> {
        let client = self.client.iter().map(|(_, secret)| secret);
        let user = self.user.iter().map(|(_, password)| password);
        client
            .chain(user)
            .map(|s| s.expose_secret().to_string())
            .collect()
    }

    fn refreshes(&self) -> bool {
        true
    }
}

/// What to check when the credentials this run uses are refused: the pasted token, or the
/// realm and the grant's credentials.
fn auth_hint(c: &crate::auth::Credentials) -> String {
    let client = c.client_id.is_some() && c.client_secret.is_some();
    let user = c.username.is_some() && c.password.is_some();
    if c.token.is_some() && !(c.realm.is_some() && (client || user)) {
        return c.check_hint(&["ROSTER_TOKEN"]);
    }
    let mut used = vec!["ROSTER_REALM"];
    if client || !user {
        used.extend(["ROSTER_CLIENT_ID", "ROSTER_CLIENT_SECRET"]);
    }
    if user {
        used.extend(["ROSTER_USERNAME", "ROSTER_PASSWORD"]);
    }
    c.check_hint(&used)
}

fn authenticator(spec: &TargetSpec, base: &str) -> Result<Authenticator, RunError> {
    let c = &spec.credentials;
    let client = c.client_id.clone().zip(c.client_secret.clone());
    let user = c.username.clone().zip(c.password.clone());
    // A grant, when its credentials are set, even beside a ROSTER_TOKEN: its tokens renew
    // themselves, a pasted one expires mid-run.
    let grant_set = c.realm.is_some() && (client.is_some() || user.is_some());
    if let Some(token) = c.token.as_ref().filter(|_| !grant_set) {
        return Ok(Authenticator::bearer(token.clone()));
    }
    let Some(realm) = c
        .realm
        .clone()
        .filter(|_| client.is_some() || user.is_some())
    else {
        return Ok(Authenticator::Missing(format!(
            "target `nexway` needs {}, or {} with {} and {} (or {} and {}), in the environment",
            c.var("ROSTER_TOKEN"),
            c.var("ROSTER_REALM"),
            c.var("ROSTER_CLIENT_ID"),
            c.var("ROSTER_CLIENT_SECRET"),
            c.var("ROSTER_USERNAME"),
            c.var("ROSTER_PASSWORD"),
        )));
    };
    let url = spec
        .token_url
        .clone()
        .unwrap_or_else(|| format!("{base}/iam/tokens"));
    let dialect = NexwayTokens {
        realm,
        client,
        user,
    };
    Ok(Authenticator::Token(Arc::new(TokenSource::new(
        url,
        Box::new(dialect),
        super::token_client()?,
    ))))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    email: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    status: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    roles: &'a [Role],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    authorized_customers: &'a [Customer],
}

impl Schema for NexwaySchema {
    /// What it receives: the body: email, names, userName, password, status.
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(
            field,
            Email | FirstName | LastName | FullName | Username | Password | Status
        )
    }

    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    /// Nexway roles come from `--target-option roles=…`; the role column is not sent, so it
    /// is taken as written rather than refused for not being `user`/`organization-admin`.
    fn normalize_role(&self, raw: &str) -> Result<String, String> {
        Ok(crate::values::clean(raw))
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let status = match user.get(Field::Status) {
            Some("inactive") => "DISABLED",
            _ => "ENABLED",
        };
        let body = Body {
            email: user.get(Field::Email),
            first_name: user.get(Field::FirstName),
            last_name: user.get(Field::LastName),
            user_name: username_or_email(user),
            password: user.get(Field::Password),
            status,
            roles: &self.roles,
            authorized_customers: &self.customers,
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for NexwayApi {
    fn user_url(&self, remote_id: &str) -> Option<String> {
        Some(super::lifecycle::by_id(&self.endpoint, remote_id))
    }

    /// `GET /iam/users?email=…` (Nexway's filter matches by "contains": only the listed user
    /// with exactly this email counts).
    fn lookup_url(&self, identity: &str, _user: &UserFields) -> Option<String> {
        Some(super::with_query(&self.endpoint, "email", identity))
    }

    /// Nexway's `PUT /iam/users/{id}` takes a complete user: it is read first, and only
    /// what changed is written over it, so `status` and roles are never lost.
    fn reads_before_change(&self) -> bool {
        true
    }

    /// `PUT /iam/users/{id}`: the user as read, with the changed fields, or `status`
    /// `DISABLED`/`ENABLED`; `DELETE /iam/users/{id}`.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let url = self.user_url(remote_id).unwrap_or_default();
        let put = |changes| {
            let mut resource = overlay(bodies.current, changes);
            if let Some(map) = resource.as_object_mut() {
                map.remove("id");
                map.remove("password");
            }
            Change::json(http::Method::PUT, url.clone(), resource)
        };
        Ok(match action {
            Action::Update => {
                let mut changes = changed_keys(bodies.before, bodies.after);
                // The status is the account's, not the file's (a deactivation sets it).
                changes.remove("status");
                put(changes)
            }
            Action::Deactivate => put(status("DISABLED")),
            Action::Reactivate => put(status("ENABLED")),
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
        &self.auth_hint
    }

    fn default_rate(&self) -> f64 {
        DEF.info.default_rate
    }

    /// The page documents `201 Created`, "optionally with a response resource": the status
    /// is the success, an id in the body is a bonus.
    fn returns_id(&self) -> bool {
        false
    }

    fn success_status(&self, status: u16) -> bool {
        status == 201
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_status_roles_and_customers() {
        let mut spec = TargetSpec {
            name: "nexway".into(),
            ..TargetSpec::default()
        };
        spec.options.insert("roles".into(), "buyer, admin".into());
        spec.options.insert("customer_id".into(), "c-1".into());
        let api = NexwayApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "https://api.nexway.store/iam/users");
        assert!(matches!(api.auth(), Authenticator::Missing(m) if m.contains("ROSTER_REALM")));
        let target = NexwaySchema::new(&spec);
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        user.set(Field::LastName, Some("B".into()));
        user.set(Field::Status, Some("inactive".into()));
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"email":"a@b.co","firstName":"A","lastName":"B","userName":"a@b.co","status":"DISABLED","roles":[{"name":"buyer"},{"name":"admin"}],"authorizedCustomers":[{"customerId":"c-1"}]}"#
        );
        spec.options.insert("colour".into(), "red".into());
        assert!(
            super::super::build(&spec).is_err(),
            "an unknown option is refused"
        );
    }
}
