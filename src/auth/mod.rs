//! Credentials, read from environment variables only, held as secrets that never print.

pub mod scheme;
pub mod token;

pub use scheme::{AuthError, Authenticator};
use secrecy::SecretString;

/// `Authenticator::Missing` naming the unset variables among `needed`, or `None` if all are set.
pub fn missing(target: &str, needed: &[(&str, &Option<SecretString>)]) -> Option<Authenticator> {
    let unset: Vec<&str> = needed
        .iter()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| *name)
        .collect();
    (!unset.is_empty()).then(|| {
        Authenticator::Missing(format!(
            "target `{target}` needs {} in the environment",
            unset.join(" and ")
        ))
    })
}

/// The values of `needed` when every one is set, in order; else `Authenticator::Missing`
/// naming the variables that are not.
pub fn require<const N: usize>(
    target: &str,
    needed: [(&str, &Option<SecretString>); N],
) -> Result<[SecretString; N], Authenticator> {
    let values: Vec<SecretString> = needed.iter().filter_map(|(_, v)| (*v).clone()).collect();
    <[SecretString; N]>::try_from(values).map_err(|_| {
        missing(target, &needed).unwrap_or_else(|| {
            Authenticator::Missing(format!("target `{target}` is missing a credential"))
        })
    })
}

/// Adds a credential header's value to `values` for redaction: whole, and after its scheme
/// word (`Bearer abc` → also `abc`), since a server may echo either.
fn push_header_secret(values: &mut Vec<String>, text: &str) {
    values.push(text.to_string());
    values.extend(text.split_once(' ').map(|(_, v)| v.to_string()));
}

/// The environment variables roster reads credentials from.
pub const ENV_VARS: [&str; 8] = [
    "ROSTER_TOKEN",
    "ROSTER_API_KEY",
    "ROSTER_TENANT",
    "ROSTER_CLIENT_ID",
    "ROSTER_CLIENT_SECRET",
    "ROSTER_USERNAME",
    "ROSTER_PASSWORD",
    "ROSTER_REALM",
];

/// Every credential a target may need; `Debug` shows none of the values.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `ROSTER_TOKEN`: a bearer access token.
    pub token: Option<SecretString>,
    /// `ROSTER_API_KEY`: an API key.
    pub api_key: Option<SecretString>,
    /// `ROSTER_TENANT`: a tenant id.
    pub tenant: Option<SecretString>,
    /// `ROSTER_CLIENT_ID`: an OAuth2 client id.
    pub client_id: Option<SecretString>,
    /// `ROSTER_CLIENT_SECRET`: an OAuth2 client secret.
    pub client_secret: Option<SecretString>,
    /// `ROSTER_USERNAME`: a user name for the password grant.
    pub username: Option<SecretString>,
    /// `ROSTER_PASSWORD`: a password for the password grant.
    pub password: Option<SecretString>,
    /// `ROSTER_REALM`: a realm.
    pub realm: Option<SecretString>,
}

impl Credentials {
    /// Reads the `ROSTER_*` variables (empty values count as absent).
    pub fn from_env() -> Credentials {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables, with some credentials renamed by the config file's `[env]` table
    /// (`token = "MY_TOKEN"` reads `MY_TOKEN` instead of `ROSTER_TOKEN`).
    pub fn from_env_named(
        names: &std::collections::BTreeMap<String, String>,
    ) -> Result<Credentials, String> {
        for key in names.keys() {
            if !ENV_VARS
                .iter()
                .any(|v| v.trim_start_matches("ROSTER_").eq_ignore_ascii_case(key))
            {
                let keys: Vec<String> = ENV_VARS
                    .iter()
                    .map(|v| v.trim_start_matches("ROSTER_").to_lowercase())
                    .collect();
                return Err(format!(
                    "config [env]: unknown credential `{key}` (credentials: {})",
                    keys.join(", ")
                ));
            }
        }
        Ok(Self::from_lookup(|default| {
            let key = default.trim_start_matches("ROSTER_").to_lowercase();
            let name = names.get(&key).map(String::as_str).unwrap_or(default);
            std::env::var(name).ok()
        }))
    }

    /// Reads credentials through `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Credentials {
        let get = |name: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .map(SecretString::from)
        };
        Credentials {
            token: get("ROSTER_TOKEN"),
            api_key: get("ROSTER_API_KEY"),
            tenant: get("ROSTER_TENANT"),
            client_id: get("ROSTER_CLIENT_ID"),
            client_secret: get("ROSTER_CLIENT_SECRET"),
            username: get("ROSTER_USERNAME"),
            password: get("ROSTER_PASSWORD"),
            realm: get("ROSTER_REALM"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn required_credentials_come_back_in_order_or_name_what_is_missing() {
        let set = Some(SecretString::from("t"));
        let key = Some(SecretString::from("k"));
        let Ok([tenant, api_key]) =
            require("cl2c", [("ROSTER_TENANT", &set), ("ROSTER_API_KEY", &key)])
        else {
            panic!("both are set");
        };
        assert_eq!(
            (tenant.expose_secret(), api_key.expose_secret()),
            ("t", "k")
        );
        match require("cl2c", [("ROSTER_TENANT", &set), ("ROSTER_API_KEY", &None)]) {
            Err(Authenticator::Missing(m)) => assert!(m.contains("ROSTER_API_KEY"), "{m}"),
            _ => panic!("a missing key is named"),
        }
    }

    #[test]
    fn values_are_read_but_never_printed() {
        let creds =
            Credentials::from_lookup(|name| (name == "ROSTER_TOKEN").then(|| "s3cret".to_string()));
        assert_eq!(
            creds.token.as_ref().map(|t| t.expose_secret()),
            Some("s3cret")
        );
        assert!(creds.api_key.is_none());
        assert!(!format!("{creds:?}").contains("s3cret"));
    }
}
