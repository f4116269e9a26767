//! Credentials, read from environment variables only, held as secrets that never print.

pub mod scheme;
pub mod token;

pub use scheme::{AuthError, Authenticator};
use secrecy::SecretString;

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
    /// The variable a credential was read from where the config's `[env]` renamed it
    /// (`ROSTER_TOKEN` → `MY_TOKEN`): messages name the variable the user actually set.
    pub renamed: std::collections::BTreeMap<&'static str, String>,
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
        let renamed_from = |default: &str| {
            let key = default.trim_start_matches("ROSTER_").to_lowercase();
            names.get(&key).cloned()
        };
        let mut credentials = Self::from_lookup(|default| {
            let name = renamed_from(default).unwrap_or_else(|| default.to_string());
            std::env::var(name).ok()
        });
        credentials.renamed = ENV_VARS
            .iter()
            .filter_map(|&default| Some((default, renamed_from(default)?)))
            .collect();
        Ok(credentials)
    }

    /// The variable the credential `default` (its `ROSTER_*` name) is read from in this run.
    pub fn var<'a>(&'a self, default: &'a str) -> &'a str {
        self.renamed.get(default).map_or(default, String::as_str)
    }

    /// `check A, B and C`, naming the variables `defaults` are read from in this run: what a
    /// refusal of the credentials actually used asks the user to check.
    pub fn check_hint(&self, defaults: &[&str]) -> String {
        let names: Vec<&str> = defaults.iter().map(|d| self.var(d)).collect();
        let listed = match names.split_last() {
            None => String::new(),
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        };
        format!("check {listed}")
    }

    /// The hint for a target that takes a pasted `ROSTER_TOKEN` or an OAuth2 `grant` (named
    /// `grant_name`): the variables of whichever this run uses.
    pub fn token_or_grant_hint(&self, pasted: bool, grant: &[&str], grant_name: &str) -> String {
        match pasted {
            true => format!(
                "{} (a pasted token; or set {} for the {grant_name} grant)",
                self.check_hint(&["ROSTER_TOKEN"]),
                grant
                    .iter()
                    .map(|v| self.var(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            false => self.check_hint(grant),
        }
    }

    /// The values of `needed` (by `ROSTER_*` name) when every one is set, in order; else
    /// `Authenticator::Missing` naming the variables that are not, as this run reads them.
    pub fn require<const N: usize>(
        &self,
        target: &str,
        needed: [(&str, &Option<SecretString>); N],
    ) -> Result<[SecretString; N], Authenticator> {
        let values: Vec<SecretString> = needed.iter().filter_map(|(_, v)| (*v).clone()).collect();
        <[SecretString; N]>::try_from(values).map_err(|_| {
            let unset: Vec<&str> = needed
                .iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| self.var(name))
                .collect();
            Authenticator::Missing(format!(
                "target `{target}` needs {} in the environment",
                unset.join(" and ")
            ))
        })
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
            renamed: Default::default(),
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
        let Ok([tenant, api_key]) = Credentials::default()
            .require("cl2c", [("ROSTER_TENANT", &set), ("ROSTER_API_KEY", &key)])
        else {
            panic!("both are set");
        };
        assert_eq!(
            (tenant.expose_secret(), api_key.expose_secret()),
            ("t", "k")
        );
        let renamed = Credentials {
            renamed: [("ROSTER_API_KEY", "CL2C_KEY".to_string())].into(),
            ..Credentials::default()
        };
        match renamed.require("cl2c", [("ROSTER_TENANT", &set), ("ROSTER_API_KEY", &None)]) {
            Err(Authenticator::Missing(m)) => assert!(m.contains("needs CL2C_KEY in"), "{m}"),
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
