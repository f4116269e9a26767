//! The sandbox's own validation: stricter in places than roster's local rules (name lengths,
//! username characters), so that API refusals can be exercised end to end.

use serde::Deserialize;

/// Longest first or last name the sandbox accepts.
pub const MAX_NAME: usize = 64;

/// A request body that passed validation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
}

/// A request body as sent, before any rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Raw {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    username: Option<String>,
    phone: Option<String>,
    role: Option<String>,
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

/// Parses a request body.
pub fn parse(body: &[u8]) -> Result<Raw, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Body(format!("the body is not a valid user object: {e}")))
}

/// Validates a parsed body.
pub fn validate(raw: Raw) -> Result<Input, Refusal> {
    let mut errors: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut push =
        |field: &'static str, message: String| match errors.iter_mut().find(|(f, _)| *f == field) {
            Some((_, list)) => list.push(message),
            None => errors.push((field, vec![message])),
        };
    let email = raw.email.unwrap_or_default().trim().to_lowercase();
    match email.split_once('@') {
        _ if email.is_empty() => push("email", "The email field is required.".into()),
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') => {}
        _ => push("email", format!("'{email}' is not a valid email address.")),
    }
    for (field, value) in [("firstName", &raw.first_name), ("lastName", &raw.last_name)] {
        let value = value.as_deref().unwrap_or("").trim();
        if value.is_empty() {
            push(field, format!("The {field} field is required."));
        } else if value.chars().count() > MAX_NAME {
            push(
                field,
                format!("The field {field} must be a string with a maximum length of {MAX_NAME}."),
            );
        }
    }
    if let Some(username) = &raw.username {
        let ok = !username.is_empty()
            && username.len() <= 64
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
        if !ok {
            push(
                "userName",
                format!("Username '{username}' is invalid, can only contain letters or digits."),
            );
        }
    }
    if let Some(phone) = &raw.phone {
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        if !(4..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            push(
                "phoneNumber",
                format!("'{phone}' is not a valid phone number."),
            );
        }
    }
    if let Some(role) = &raw.role
        && role != "user"
        && role != "organization-admin"
    {
        push("role", format!("'{role}' is not a valid role."));
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
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
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
