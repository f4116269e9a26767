//! The sandbox's own validation: stricter in places than roster's local rules (name lengths,
//! username characters), so that API refusals can be exercised end to end.

use serde::Deserialize;

/// Longest first or last name the sandbox accepts.
pub const MAX_NAME: usize = 64;

/// A request body that passed validation.
#[derive(Debug)]
pub struct Input {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
    /// The password as sent (only its hash is stored).
    pub password: Option<String>,
    pub status: Option<String>,
}

/// A request body as sent, in canonical terms (each profile reads its own shape into this).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Raw {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
    pub password: Option<String>,
    #[serde(skip)]
    pub status: Option<String>,
    #[serde(skip)]
    pub role_ids: Vec<String>,
}

/// A canonical field, named the profile's way in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Email,
    FirstName,
    LastName,
    Username,
    Phone,
    Role,
    Password,
    Status,
}

/// What one profile demands of a body.
pub struct Demands {
    /// The API's name for each canonical field.
    pub name: fn(Canon) -> &'static str,
    /// Fields that must be present.
    pub required: &'static [Canon],
    /// Allowed roles (empty: any).
    pub roles: &'static [&'static str],
    /// Allowed statuses (empty: any).
    pub statuses: &'static [&'static str],
    /// Role ids must look like `cradl:role:…`.
    pub cradl_role_ids: bool,
}

/// The plain sandbox's demands.
pub const SANDBOX: Demands = Demands {
    name: camel_names,
    required: &[Canon::Email, Canon::FirstName, Canon::LastName],
    roles: &["user", "organization-admin"],
    statuses: &[],
    cradl_role_ids: false,
};

/// camelCase API names (`firstName`, `userName`, `phoneNumber`).
pub fn camel_names(c: Canon) -> &'static str {
    match c {
        Canon::Email => "email",
        Canon::FirstName => "firstName",
        Canon::LastName => "lastName",
        Canon::Username => "userName",
        Canon::Phone => "phoneNumber",
        Canon::Role => "role",
        Canon::Password => "password",
        Canon::Status => "status",
    }
}

/// Why a body was refused.
pub enum Refusal {
    /// Not a JSON object of strings.
    Body(String),
    /// Per-field messages (API field name, messages).
    Fields(Vec<(&'static str, Vec<String>)>),
}

/// The lower-cased email of a body that is not a valid user object, or "" when it has none.
pub fn email_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct EmailOnly {
        email: Option<String>,
    }
    serde_json::from_slice::<EmailOnly>(body)
        .ok()
        .and_then(|b| b.email)
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default()
}

impl Raw {
    /// The lower-cased email, the key attempts are counted under ("" when absent).
    pub fn email_key(&self) -> String {
        self.email
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_lowercase()
    }
}

/// Parses a plain sandbox request body.
pub fn parse(body: &[u8]) -> Result<Raw, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Body(format!("the body is not a valid user object: {e}")))
}

/// Validates a parsed body against the plain sandbox's demands.
#[cfg(test)]
pub fn validate(raw: Raw) -> Result<Input, Refusal> {
    validate_with(raw, &SANDBOX)
}

/// Validates a parsed body against a profile's demands.
pub fn validate_with(raw: Raw, demands: &Demands) -> Result<Input, Refusal> {
    let name = demands.name;
    let mut errors: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut push = |field: Canon, message: String| {
        let field = name(field);
        match errors.iter_mut().find(|(f, _)| *f == field) {
            Some((_, list)) => list.push(message),
            None => errors.push((field, vec![message])),
        }
    };
    let present = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    for &field in demands.required {
        let value = match field {
            Canon::Email => &raw.email,
            Canon::FirstName => &raw.first_name,
            Canon::LastName => &raw.last_name,
            Canon::Username => &raw.username,
            Canon::Phone => &raw.phone,
            Canon::Role => &raw.role,
            Canon::Password => &raw.password,
            Canon::Status => &raw.status,
        };
        if !present(value) {
            push(field, format!("The {} field is required.", name(field)));
        }
    }
    let email = raw.email.unwrap_or_default().trim().to_lowercase();
    match email.split_once('@') {
        _ if email.is_empty() => {}
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.ends_with('.')
                && !email.contains(' ') => {}
        _ => push(
            Canon::Email,
            format!("'{email}' is not a valid email address."),
        ),
    }
    for (field, value) in [
        (Canon::FirstName, &raw.first_name),
        (Canon::LastName, &raw.last_name),
    ] {
        let value = value.as_deref().unwrap_or("").trim();
        if value.chars().count() > MAX_NAME {
            push(
                field,
                format!(
                    "The field {} must be a string with a maximum length of {MAX_NAME}.",
                    name(field)
                ),
            );
        }
    }
    if let Some(username) = &raw.username {
        let ok = !username.is_empty()
            && username.len() <= 64
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-+".contains(c));
        if !ok {
            push(
                Canon::Username,
                format!("Username '{username}' is invalid, can only contain letters or digits."),
            );
        }
    }
    if let Some(phone) = &raw.phone {
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        if !(4..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            push(
                Canon::Phone,
                format!("'{phone}' is not a valid phone number."),
            );
        }
    }
    if let Some(role) = &raw.role
        && !demands.roles.is_empty()
        && !demands.roles.contains(&role.as_str())
    {
        push(Canon::Role, format!("'{role}' is not a valid role."));
    }
    if let Some(status) = &raw.status
        && !demands.statuses.is_empty()
        && !demands.statuses.contains(&status.as_str())
    {
        push(Canon::Status, format!("'{status}' is not a valid status."));
    }
    if demands.cradl_role_ids {
        for id in &raw.role_ids {
            let rest = id
                .strip_prefix("cradl:role:")
                .or_else(|| id.strip_prefix("las:role:"));
            if !rest.is_some_and(|r| (1..=32).contains(&r.len())) {
                push(
                    Canon::Role,
                    format!("{id} does not match the role id pattern"),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(Refusal::Fields(errors));
    }
    Ok(Input {
        email,
        first_name: raw.first_name.unwrap_or_default().trim().to_string(),
        last_name: raw.last_name.unwrap_or_default().trim().to_string(),
        username: raw.username,
        phone: raw.phone,
        role: raw.role,
        password: raw.password.filter(|p| !p.trim().is_empty()),
        status: raw.status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &[u8]) -> Result<Input, Refusal> {
        parse(body).and_then(validate)
    }

    fn refusal(body: &str) -> Vec<(&'static str, Vec<String>)> {
        match check(body.as_bytes()) {
            Err(Refusal::Fields(errors)) => errors,
            Err(Refusal::Body(b)) => panic!("body refusal: {b}"),
            Ok(_) => panic!("accepted {body}"),
        }
    }

    #[test]
    fn a_complete_user_passes() {
        let input = check(br#"{"email":"A@x.io","firstName":"A","lastName":"B"}"#)
            .ok()
            .unwrap();
        assert_eq!(input.email, "a@x.io");
    }

    #[test]
    fn each_rule_names_its_field() {
        let long = "x".repeat(65);
        let errors = refusal(&format!(
            r#"{{"email":"a@x.io","firstName":"{long}","lastName":""}}"#
        ));
        let mut fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        fields.sort();
        assert_eq!(fields, ["firstName", "lastName"]);
        let errors = refusal(
            r#"{"email":"a@x.io","firstName":"A","lastName":"B","username":"a b","role":"root"}"#,
        );
        assert_eq!(
            errors.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            ["userName", "role"]
        );
    }

    #[test]
    fn not_json_is_a_body_refusal() {
        assert!(matches!(check(b"nope"), Err(Refusal::Body(_))));
    }
}
