//! cl2c: `POST {base}/v1/cl2c/user` (no public default base: `--base-url` is required).
//!
//! Body `{firstName, lastName, email, userName, phoneNumber}`; `userName` is the username
//! column, else the email. The page calls all five "essential", so all five are required
//! here (the username always has a value: the email stands in); a row without a phone is
//! refused before any request rather than after one. Auth: headers `tenant` ($ROSTER_TENANT) and
//! `X-API-Key` ($ROSTER_API_KEY). Success: 200 with `id`. A 400 is RFC 7807 problem details
//! with an `errors` map (ASP.NET `ValidationProblemDetails`); the RFC 9457 array form with
//! JSON pointers is read too. ASP.NET Identity's "… is already taken." means the user exists.

use super::{
    Account, AccountPart, Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec,
    username_or_email,
};
use crate::auth::Authenticator;
use crate::error::RunError;
use crate::model::{Field, UserFields};
use http::header::HeaderName;
use serde::Serialize;

/// cl2c in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "cl2c",
        endpoint: "POST {base}/v1/cl2c/user (--base-url required)",
        auth: "tenant + X-API-Key headers",
        env: "ROSTER_TENANT ROSTER_API_KEY",
        options: &[],
        default_rate: 10.0,
        rate_source: "roster's choice: the page publishes no limit",
        password: PasswordUse::Unused,
        sandbox: Some("cl2c"),
    },
    schema: |_| Ok(Box::new(Cl2cSchema::new())),
    api: |spec| Ok(Box::new(Cl2cApi::new(spec)?)),
};

/// cl2c's rows: rules and body.
pub struct Cl2cSchema {
    rules: TargetRules,
}

impl Cl2cSchema {
    fn new() -> Cl2cSchema {
        Cl2cSchema {
            rules: TargetRules {
                required: vec![
                    Field::Email,
                    Field::FirstName,
                    Field::LastName,
                    Field::Phone,
                ],
                max_len: vec![(Field::Email, 256), (Field::Username, 256)],
            },
        }
    }
}

/// cl2c's API.
pub struct Cl2cApi {
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    auth_hint: String,
}

impl Cl2cApi {
    /// The API described by `spec`.
    pub fn new(spec: &TargetSpec) -> Result<Cl2cApi, RunError> {
        let base = spec.base_required()?;
        let c = &spec.credentials;
        let auth = match c.require(
            "cl2c",
            [("ROSTER_TENANT", &c.tenant), ("ROSTER_API_KEY", &c.api_key)],
        ) {
            Ok([tenant, api_key]) => Authenticator::Headers(vec![
                (HeaderName::from_static("tenant"), tenant),
                (HeaderName::from_static("x-api-key"), api_key),
            ]),
            Err(missing) => missing,
        };
        Ok(Cl2cApi {
            ledger_key: spec.ledger_key("cl2c", &base, Account::Of(&[AccountPart::Tenant])),
            endpoint: format!("{base}/v1/cl2c/user"),
            auth,
            auth_hint: c.check_hint(&["ROSTER_TENANT", "ROSTER_API_KEY"]),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    email: Option<&'a str>,
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
}

impl Schema for Cl2cSchema {
    /// What it receives: the body: names, email, userName, phoneNumber (the country reads the phone).
    fn checks(&self, field: Field) -> bool {
        use Field::*;
        matches!(
            field,
            Email | FirstName | LastName | FullName | Username | Phone | Country
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
            user_name: username_or_email(user),
            phone_number: user.get(Field::Phone),
        };
        serde_json::to_vec(&body).expect("a struct of strings always serialises")
    }
}

impl Api for Cl2cApi {
    /// cl2c's `PUT /v1/cl2c/user` changes only the authenticated user's own profile, and it
    /// documents no deactivation or deletion of others (docs.taliware.com user/update).
    fn change(
        &self,
        action: super::lifecycle::Action,
        _remote_id: &str,
        _bodies: super::lifecycle::Bodies<'_>,
    ) -> Result<super::lifecycle::Change, String> {
        Err(super::lifecycle::unsupported(
            action,
            "cl2c's API changes only the signed-in user's own profile (PUT /v1/cl2c/user)",
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_appended_to_the_base_and_the_base_is_required() {
        let mut spec = TargetSpec {
            name: "cl2c".into(),
            ..TargetSpec::default()
        };
        assert!(Cl2cApi::new(&spec).is_err());
        spec.base_url = Some("http://127.0.0.1:8080/cl2c".into());
        let api = Cl2cApi::new(&spec).unwrap();
        assert_eq!(api.endpoint(), "http://127.0.0.1:8080/cl2c/v1/cl2c/user");
        let target = Cl2cSchema::new();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("A".into()));
        user.set(Field::LastName, Some("B".into()));
        user.set(Field::Phone, Some("+14155550123".into()));
        assert_eq!(
            String::from_utf8(target.body(&user)).unwrap(),
            r#"{"firstName":"A","lastName":"B","email":"a@b.co","userName":"a@b.co","phoneNumber":"+14155550123"}"#
        );
    }
}
