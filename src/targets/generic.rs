//! A generic HTTP target described in a TOML profile (`--target http --profile FILE.toml`):
//! method, path (appended to `--base-url`) or full `url`, headers whose values may name
//! environment variables (`"Bearer ${ACME_TOKEN}"`), a JSON body template built from
//! canonical fields (`"{first_name} {last_name}"`) and literals, success statuses, the JSON
//! pointer of the remote id, the duplicate rule, and an optional `[lookup]` (a GET `path`
//! or `url` with `{email}` / `{username}`, and the `id_pointer` of the person found) that
//! gives the id of a person the API says exists and settles whose a conflict is; for
//! `roster sync`, optional `[update]`, `[deactivate]`, `[reactivate]` and `[delete]` tables
//! (a `path` or `url` holding `{id}`, a `method`, a `body` template). See
//! `samples/http-profile.toml`.
//!
//! In the template a string that is exactly one placeholder of an empty field is left out of
//! its object (or `null` in an array); a placeholder inside a longer string becomes "".
//! `{{` and `}}` are literal braces.

use super::lifecycle::{Action, Bodies, Change, changed_keys, unsupported};
use super::{Api, PasswordUse, Schema, TargetDef, TargetInfo, TargetRules, TargetSpec, Verdict};
use crate::auth::Authenticator;
use crate::error::RunError;
use crate::model::{Field, UserFields};
use http::header::{HeaderMap, HeaderName};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    name: Option<String>,
    method: Option<String>,
    path: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: toml::Value,
    #[serde(default)]
    success: Vec<u16>,
    id_pointer: Option<String>,
    #[serde(default)]
    duplicate_status: Vec<u16>,
    duplicate_message: Option<String>,
    #[serde(default)]
    required: Vec<String>,
    rate: Option<f64>,
    /// Requests in flight for this server (else the adaptive limit finds it).
    concurrency: Option<usize>,
    content_type: Option<String>,
    /// The API honours `Idempotency-Key` on create.
    #[serde(default)]
    idempotency_key: bool,
    /// How to find a person by email: `GET` of `path` (after `--base-url`) or `url`.
    lookup: Option<LookupProfile>,
    /// `roster sync`: how a person's changes are sent (default `PATCH` of the changed body
    /// keys to `path`/`url` with `{id}`).
    update: Option<ChangeProfile>,
    /// `roster sync --leavers deactivate`: how a leaver is disabled (a `body` is required).
    deactivate: Option<ChangeProfile>,
    /// How a returning leaver is enabled again (a `body` is required).
    reactivate: Option<ChangeProfile>,
    /// `roster sync --leavers delete`: how a leaver is removed (default `DELETE`).
    delete: Option<ChangeProfile>,
}

/// A `[update]`, `[deactivate]`, `[reactivate]` or `[delete]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeProfile {
    method: Option<String>,
    /// After `--base-url`, with `{id}` for the remote id.
    path: Option<String>,
    /// Or a full URL with `{id}`.
    url: Option<String>,
    /// A body template as the create's; for `[update]` without one, the create body's
    /// changed keys are sent.
    body: Option<toml::Value>,
}

/// A compiled change section.
#[derive(Debug, Clone)]
struct ChangeRoute {
    method: http::Method,
    url: String,
    body: Option<Node>,
}

/// The profile's `[lookup]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupProfile {
    path: Option<String>,
    url: Option<String>,
    /// Where the found person's id is; without it, the answer is read as a list of users.
    id_pointer: Option<String>,
}

/// A compiled `[lookup]`: the URL template and the id's pointer.
#[derive(Debug, Clone)]
struct Lookup {
    url: String,
    id_pointer: Option<String>,
}

/// One piece of a string template.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(Field),
    /// `{metadata}` (every key, as an object) or `{metadata.KEY}` (one value).
    Metadata(Option<String>),
}

/// A compiled body template.
#[derive(Debug, Clone)]
enum Node {
    Literal(Value),
    Text(Vec<Part>),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// The generic target in the registry.
pub const DEF: TargetDef = TargetDef {
    info: TargetInfo {
        name: "http",
        endpoint: "--profile FILE.toml: method, path, headers, body",
        auth: "headers from the profile",
        env: "the variables its headers name",
        options: &[],
        default_rate: 0.0,
        rate_source: "the profile's `rate`, else no limit",
        password: PasswordUse::Optional,
        sandbox: None,
    },
    schema: |spec| Ok(Box::new(GenericSchema::new(spec)?)),
    api: |spec| Ok(Box::new(GenericApi::new(spec)?)),
};

/// The profile's rows: its required fields and body template.
pub struct GenericSchema {
    rules: TargetRules,
    body: Node,
    content_type: String,
}

/// The profile's API: where, how, and how its answers read.
pub struct GenericApi {
    method: http::Method,
    ledger_key: String,
    endpoint: String,
    auth: Authenticator,
    success: Vec<u16>,
    id_pointer: String,
    /// The profile names where the id is: a success without one is not a success.
    id_required: bool,
    duplicate_status: Vec<u16>,
    duplicate_message: Option<String>,
    rate: f64,
    concurrency: Option<usize>,
    idempotency_key: bool,
    lookup: Option<Lookup>,
    changes: Vec<(Action, ChangeRoute)>,
}

/// The profile file `spec` names, read and parsed, with its name for messages.
fn read_profile(spec: &TargetSpec) -> Result<(Profile, String), RunError> {
    let path = spec
        .profile
        .as_deref()
        .ok_or_else(|| RunError::Usage("target `http` needs --profile FILE.toml".into()))?;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Usage(format!("cannot read profile `{shown}`: {e}")))?;
    let profile: Profile = toml::from_str(&text).map_err(|e: toml::de::Error| {
        let problem = crate::error::toml_problem(&text, &e);
        RunError::Usage(format!("profile `{shown}`: {problem}"))
    })?;
    Ok((profile, shown))
}

impl GenericSchema {
    /// The rows' half of the profile `spec` names (no URL needed).
    pub fn new(spec: &TargetSpec) -> Result<GenericSchema, RunError> {
        let (profile, shown) = read_profile(spec)?;
        let bad = |m: String| RunError::Usage(format!("profile `{shown}`: {m}"));
        let mut required = vec![Field::Email];
        for name in &profile.required {
            let field = Field::parse(name).ok_or_else(|| bad(format!("unknown field `{name}`")))?;
            if !required.contains(&field) {
                required.push(field);
            }
        }
        Ok(GenericSchema {
            rules: TargetRules {
                required,
                max_len: vec![],
            },
            body: compile(&profile.body).map_err(bad)?,
            content_type: profile
                .content_type
                .unwrap_or_else(|| "application/json".into()),
        })
    }
}

impl GenericApi {
    /// The API half of the profile `spec` names.
    pub fn new(spec: &TargetSpec) -> Result<GenericApi, RunError> {
        Self::with_env(spec, |name| std::env::var(name).ok())
    }

    /// As [`new`](Self::new), reading variables through `env`.
    pub fn with_env(
        spec: &TargetSpec,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GenericApi, RunError> {
        let (profile, shown) = read_profile(spec)?;
        let bad = |m: String| RunError::Usage(format!("profile `{shown}`: {m}"));
        if let Some(n) = profile.concurrency
            && !(1..=10_000).contains(&n)
        {
            return Err(bad(format!(
                "`concurrency = {n}`: give from 1 to 10,000 requests in flight"
            )));
        }
        let endpoint = match (&profile.url, &profile.path, &spec.base_url) {
            (Some(url), _, None) => url.clone(),
            (_, Some(path), Some(base)) => format!("{}{path}", base.trim_end_matches('/')),
            (Some(_), None, Some(base)) => base.trim_end_matches('/').to_string(),
            (None, Some(_), None) => {
                return Err(bad("`path` needs --base-url (or give a full `url`)".into()));
            }
            (None, None, _) => return Err(bad("give `url` or `path`".into())),
        };
        let method = profile
            .method
            .as_deref()
            .unwrap_or("POST")
            .to_uppercase()
            .parse::<http::Method>()
            .map_err(|_| bad("`method` is not an HTTP method".into()))?;
        let mut headers = Vec::new();
        let mut missing = Vec::new();
        for (name, value) in &profile.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("`{name}` is not a header name")))?;
            match expand_env(value, &env) {
                Ok(value) => headers.push((header, SecretString::from(value))),
                Err(var) => missing.push(var),
            }
        }
        let auth = if !missing.is_empty() {
            Authenticator::Missing(format!(
                "profile `{shown}` needs {} in the environment",
                missing.join(" and ")
            ))
        } else if headers.is_empty() {
            Authenticator::None
        } else {
            Authenticator::Headers(headers)
        };
        let lookup = match &profile.lookup {
            None => None,
            Some(l) => {
                let url = match (&l.url, &l.path, &spec.base_url) {
                    (Some(url), _, _) => url.clone(),
                    (None, Some(path), Some(base)) => {
                        format!("{}{path}", base.trim_end_matches('/'))
                    }
                    (None, Some(_), None) => {
                        return Err(bad(
                            "`[lookup] path` needs --base-url (or give `url`)".into()
                        ));
                    }
                    (None, None, _) => return Err(bad("`[lookup]` needs `path` or `url`".into())),
                };
                Some(Lookup {
                    url,
                    id_pointer: l.id_pointer.clone(),
                })
            }
        };
        let mut changes = Vec::new();
        for (action, section, default_method, needs_body) in [
            (Action::Update, &profile.update, "PATCH", false),
            (Action::Deactivate, &profile.deactivate, "PATCH", true),
            (Action::Reactivate, &profile.reactivate, "PATCH", true),
            (Action::Delete, &profile.delete, "DELETE", false),
        ] {
            let Some(section) = section else { continue };
            let table = action.word();
            let url = match (&section.url, &section.path, &spec.base_url) {
                (Some(url), _, _) => url.clone(),
                (None, Some(path), Some(base)) => format!("{}{path}", base.trim_end_matches('/')),
                (None, Some(_), None) => {
                    return Err(bad(format!(
                        "`[{table}] path` needs --base-url (or give `url`)"
                    )));
                }
                (None, None, _) => return Err(bad(format!("`[{table}]` needs `path` or `url`"))),
            };
            if !url.contains("{id}") {
                return Err(bad(format!(
                    "`[{table}]`: the URL must hold `{{id}}`, the person's remote id"
                )));
            }
            let method = section
                .method
                .as_deref()
                .unwrap_or(default_method)
                .to_uppercase()
                .parse::<http::Method>()
                .map_err(|_| bad(format!("`[{table}] method` is not an HTTP method")))?;
            let body = section
                .body
                .as_ref()
                .map(compile)
                .transpose()
                .map_err(bad)?;
            if needs_body && body.is_none() {
                return Err(bad(format!(
                    "`[{table}]` needs a `body` (e.g. `body = {{ active = false }}`)"
                )));
            }
            changes.push((action, ChangeRoute { method, url, body }));
        }
        let name = profile.name.unwrap_or_else(|| "http".into());
        Ok(GenericApi {
            ledger_key: format!("http:{name}@{endpoint}"),
            endpoint,
            auth,
            method,
            success: profile.success,
            id_required: profile.id_pointer.is_some(),
            id_pointer: profile.id_pointer.unwrap_or_else(|| "/id".into()),
            duplicate_status: profile.duplicate_status,
            duplicate_message: profile.duplicate_message.map(|m| m.to_lowercase()),
            rate: profile.rate.unwrap_or(0.0),
            concurrency: profile.concurrency,
            idempotency_key: profile.idempotency_key,
            lookup,
            changes,
        })
    }
}

/// Replaces `${VAR}` with the variable's value; `Err` names the first one unset.
fn expand_env(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match env(var).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(&v),
            None => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn compile(value: &toml::Value) -> Result<Node, String> {
    Ok(match value {
        toml::Value::String(s) => Node::Text(parse_template(s)?),
        toml::Value::Table(t) => Node::Object(
            t.iter()
                .map(|(k, v)| compile(v).map(|n| (k.clone(), n)))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Array(items) => {
            Node::Array(items.iter().map(compile).collect::<Result<_, _>>()?)
        }
        other => Node::Literal(serde_json::to_value(other).map_err(|e| e.to_string())?),
    })
}

fn parse_template(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let part = if name == "metadata" {
                    Part::Metadata(None)
                } else if let Some(key) = crate::model::metadata_key(&name) {
                    Part::Metadata(Some(key.to_string()))
                } else {
                    Part::Field(Field::parse(&name).ok_or_else(|| {
                        format!("`{{{name}}}` is not a canonical field or metadata.KEY")
                    })?)
                };
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(part);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || parts.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn metadata_value<'a>(user: &'a UserFields, key: &str) -> Option<&'a str> {
    user.metadata()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Renders a node; `None` means "leave this key out".
fn render(node: &Node, user: &UserFields) -> Option<Value> {
    match node {
        Node::Literal(v) => Some(v.clone()),
        Node::Text(parts) => match parts.as_slice() {
            [Part::Field(f)] => user.get(*f).map(|v| Value::String(v.to_string())),
            // `"{metadata}"` alone is the object of every metadata.KEY column.
            [Part::Metadata(None)] => Some(Value::Object(
                user.metadata()
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )),
            [Part::Metadata(Some(key))] => {
                metadata_value(user, key).map(|v| Value::String(v.to_string()))
            }
            parts => Some(Value::String(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.as_str(),
                        Part::Field(f) => user.get(*f).unwrap_or(""),
                        Part::Metadata(Some(key)) => metadata_value(user, key).unwrap_or(""),
                        Part::Metadata(None) => "",
                    })
                    .collect(),
            )),
        },
        Node::Object(fields) => Some(Value::Object(
            fields
                .iter()
                .filter_map(|(k, n)| render(n, user).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Node::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|n| render(n, user).unwrap_or(Value::Null))
                .collect(),
        )),
    }
}

impl Schema for GenericSchema {
    fn rules(&self) -> &TargetRules {
        &self.rules
    }

    fn content_type(&self) -> &str {
        &self.content_type
    }

    /// What its template fills (and what it requires): a column no placeholder reads
    /// refuses no row. A full name counts where a name placeholder is; a country where the
    /// phone is, since it decides how the phone reads.
    fn checks(&self, field: Field) -> bool {
        fn uses(node: &Node, field: Field) -> bool {
            match node {
                Node::Object(entries) => entries.iter().any(|(_, n)| uses(n, field)),
                Node::Array(items) => items.iter().any(|n| uses(n, field)),
                Node::Text(parts) => parts
                    .iter()
                    .any(|p| matches!(p, Part::Field(f) if *f == field)),
                Node::Literal(_) => false,
            }
        }
        let used = |f| uses(&self.body, f) || self.rules.required.contains(&f);
        used(field)
            || (field == Field::FullName && (used(Field::FirstName) || used(Field::LastName)))
            || (field == Field::Country && used(Field::Phone))
    }

    fn body(&self, user: &UserFields) -> Vec<u8> {
        let value = render(&self.body, user).unwrap_or(Value::Null);
        serde_json::to_vec(&value).expect("a JSON value always serialises")
    }

    /// The field whose placeholder fills the body key the API names (`username =
    /// "{email}"`: a refusal of `username` is about the email column), else the common names.
    fn field_for(&self, api_name: &str) -> Option<Field> {
        fn find(node: &Node, path: &str, wanted: &str) -> Option<Field> {
            match node {
                Node::Object(entries) => entries.iter().find_map(|(key, child)| {
                    let here = match path.is_empty() {
                        true => key.clone(),
                        false => format!("{path}.{key}"),
                    };
                    find(child, &here, wanted)
                }),
                Node::Text(parts) => {
                    let last = path.rsplit('.').next().unwrap_or(path);
                    let named = super::squash(path) == wanted || super::squash(last) == wanted;
                    let fields: Vec<Field> = parts
                        .iter()
                        .filter_map(|p| match p {
                            Part::Field(f) => Some(*f),
                            _ => None,
                        })
                        .collect();
                    match (named, fields.as_slice()) {
                        (true, [one]) => Some(*one),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        find(&self.body, "", &super::squash(api_name)).or_else(|| super::field_for_common(api_name))
    }
}

impl Api for GenericApi {
    fn ledger_key(&self) -> &str {
        &self.ledger_key
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn auth(&self) -> &Authenticator {
        &self.auth
    }

    fn idempotency_keys(&self) -> bool {
        self.idempotency_key
    }

    fn default_rate(&self) -> f64 {
        self.rate
    }

    fn default_concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    fn method(&self) -> http::Method {
        self.method.clone()
    }

    fn auth_hint(&self) -> &str {
        "check the variables the profile's headers name"
    }

    fn returns_id(&self) -> bool {
        self.id_required
    }

    fn success_status(&self, status: u16) -> bool {
        match self.success.is_empty() {
            true => (200..300).contains(&status),
            false => self.success.contains(&status),
        }
    }

    fn user_url(&self, remote_id: &str) -> Option<String> {
        let (_, route) = self.changes.first()?;
        Some(route.url.replace("{id}", &super::path_segment(remote_id)))
    }

    /// The profile's `[update]`, `[deactivate]`, `[reactivate]` or `[delete]` section.
    fn change(
        &self,
        action: Action,
        remote_id: &str,
        bodies: Bodies<'_>,
    ) -> Result<Change, String> {
        let Some((_, route)) = self.changes.iter().find(|(a, _)| *a == action) else {
            return Err(unsupported(
                action,
                &format!("its profile has no `[{}]` section", action.word()),
            ));
        };
        let url = route.url.replace("{id}", &super::path_segment(remote_id));
        let body = match (&route.body, action) {
            (Some(node), _) => Some(render(node, bodies.user).unwrap_or(Value::Null)),
            (None, Action::Update) => {
                Some(Value::Object(changed_keys(bodies.before, bodies.after)))
            }
            (None, _) => None,
        };
        Ok(match body {
            Some(body) => Change::json(route.method.clone(), url, body),
            None => Change {
                method: route.method.clone(),
                url,
                body: None,
            },
        })
    }

    fn lookup_url(&self, identity: &str, user: &UserFields) -> Option<String> {
        let lookup = self.lookup.as_ref()?;
        let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let username = super::username_or_email(user).unwrap_or(identity);
        Some(
            lookup
                .url
                .replace("{email}", &encode(identity))
                .replace("{username}", &encode(username)),
        )
    }

    fn lookup_id(&self, body: &[u8], identity: &str) -> Option<String> {
        match self.lookup.as_ref()?.id_pointer.as_deref() {
            Some(pointer) => super::remote_id(body, pointer),
            None => super::find_listed(body, identity),
        }
    }

    fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let declared = self.duplicate_status.contains(&status)
            || self.duplicate_message.as_ref().is_some_and(|needle| {
                (400..500).contains(&status)
                    && String::from_utf8_lossy(body)
                        .to_lowercase()
                        .contains(needle)
            });
        if declared {
            // The profile says this answer means "exists"; whose it is, the messages say.
            return Verdict::Conflict {
                errors: crate::http::problem::parse(body),
                declared: true,
            };
        }
        if self.success.contains(&status) {
            return Verdict::Created {
                remote_id: super::remote_id(body, &self.id_pointer),
            };
        }
        if !self.success.is_empty() && (200..300).contains(&status) {
            return Verdict::Rejected {
                errors: vec![crate::http::problem::ApiError {
                    field: None,
                    message: format!("unexpected success status {status}"),
                }],
            };
        }
        super::classify_common(status, headers, body, &self.id_pointer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both halves of a profile.
    struct Both(GenericSchema, GenericApi);

    impl Both {
        fn endpoint(&self) -> &str {
            self.1.endpoint()
        }
        fn auth(&self) -> &Authenticator {
            self.1.auth()
        }
        fn classify(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
            self.1.classify(status, headers, body)
        }
        fn body(&self, user: &UserFields) -> Vec<u8> {
            self.0.body(user)
        }
    }

    fn target(profile: &str, base: Option<&str>) -> Result<Both, RunError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, profile).unwrap();
        let spec = TargetSpec {
            name: "http".into(),
            base_url: base.map(str::to_string),
            profile: Some(path),
            ..TargetSpec::default()
        };
        let schema = GenericSchema::new(&spec)?;
        let api = GenericApi::with_env(&spec, |v| (v == "ACME_TOKEN").then(|| "t0k".into()))?;
        Ok(Both(schema, api))
    }

    const PROFILE: &str = r#"
        name = "acme"
        path = "/v2/people"
        success = [201]
        id_pointer = "/data/id"
        duplicate_status = [409, 422]
        [headers]
        Authorization = "Bearer ${ACME_TOKEN}"
        [body]
        email = "{email}"
        display = "{first_name} {last_name}"
        phone = "{phone}"
        active = true
        tags = ["import", "{role}"]
        name = { first = "{first_name}", braces = "{{x}}" }
    "#;

    #[test]
    fn only_the_fields_its_template_reads_are_checked() {
        let t = target(PROFILE, Some("http://h/")).unwrap();
        assert!(t.0.checks(Field::Phone) && t.0.checks(Field::Role) && t.0.checks(Field::Email));
        assert!(t.0.checks(Field::Country), "the country reads the phone");
        assert!(!t.0.checks(Field::Password) && !t.0.checks(Field::Title));
    }

    #[test]
    fn a_refused_body_key_names_the_column_its_placeholder_reads() {
        let profile = r#"
            name = "acme"
            path = "/people"
            [body]
            login = "{email}"
            person = { given = "{first_name}", label = "{first_name} {last_name}" }
        "#;
        let t = target(profile, Some("http://h/")).unwrap();
        assert_eq!(
            t.0.field_for("login"),
            Some(Field::Email),
            "not the common `username`"
        );
        assert_eq!(t.0.field_for("person.given"), Some(Field::FirstName));
        assert_eq!(t.0.field_for("label"), None, "two fields fill it: no guess");
        assert_eq!(
            t.0.field_for("lastName"),
            Some(Field::LastName),
            "common names still"
        );
    }

    #[test]
    fn the_template_renders_fields_and_literals_and_omits_empty_placeholders() {
        let t = target(PROFILE, Some("http://h/")).unwrap();
        assert_eq!(t.endpoint(), "http://h/v2/people");
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.set(Field::FirstName, Some("Ann".into()));
        user.set(Field::LastName, Some("Lee".into()));
        let body: Value = serde_json::from_slice(&t.body(&user)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"email": "a@b.co", "display": "Ann Lee", "active": true,
                "tags": ["import", null], "name": {"first": "Ann", "braces": "{x}"}})
        );
        let h = HeaderMap::new();
        assert_eq!(
            t.classify(201, &h, br#"{"data":{"id":7}}"#),
            Verdict::Created {
                remote_id: Some("7".into())
            }
        );
        assert!(matches!(
            t.classify(422, &h, b"{}"),
            Verdict::Conflict { declared: true, .. }
        ));
        assert!(matches!(
            t.classify(200, &h, b"{}"),
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn metadata_placeholders_render_one_key_or_all() {
        let profile = "url = \"http://h/u\"\n[body]\nemail = \"{email}\"\nextra = \"{metadata}\"\ncost = \"cc-{metadata.cost_center}\"\n";
        let t = target(profile, None).unwrap();
        let mut user = UserFields::default();
        user.set(Field::Email, Some("a@b.co".into()));
        user.push_metadata("cost_center", "4711".into());
        user.push_metadata("badge", "B7".into());
        let body: Value = serde_json::from_slice(&t.body(&user)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"email": "a@b.co", "extra": {"cost_center": "4711", "badge": "B7"},
                "cost": "cc-4711"})
        );
    }

    #[test]
    fn bad_profiles_are_usage_errors() {
        assert!(target(PROFILE, None).is_err(), "path without base");
        assert!(target("url = \"http://x\"\n[body]\nemail = \"{mail}\"\n", None).is_err());
        assert!(target("url = \"http://x\"\nbogus = 1\n[body]\n", None).is_err());
        let t = target(
            "url = \"http://x\"\n[headers]\nX-Key = \"${NOPE}\"\n[body]\nemail = \"{email}\"\n",
            None,
        )
        .unwrap();
        assert!(matches!(t.auth(), Authenticator::Missing(m) if m.contains("NOPE")));
    }
}
