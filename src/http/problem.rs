//! Error bodies of any common shape → per-field messages.
//!
//! APIs refuse a row in many dialects: RFC 7807/9457 problem details with an `errors` map
//! (ASP.NET) or array (JSON pointers), `{"errors":[{"field","message"}]}`, FastAPI's
//! `{"detail":[{"loc","msg"}]}`, Django REST framework's `{field: [messages]}`, Crayon's
//! `{ErrorCode, Message, ObjectErrors}`, SCIM's `{scimType, detail}` and plain
//! `{"message": …}`. They all become [`ApiError`]s: an optional API field name and a message.

use serde_json::{Map, Value};

/// One message from an error body, with the API's name for the field when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The API's field name or path (`FirstName`, `phoneNumber`, `name.givenName`).
    pub field: Option<String>,
    /// The message as the API wrote it.
    pub message: String,
}

/// Longest message kept from an error body: a hostile 10 MB message must not reach the
/// error file, the ledger and the report whole.
pub const MAX_MESSAGE: usize = 500;

/// Most messages kept from one error body; the rest are counted in a last message, so a
/// body of 100,000 field errors costs a row no more than this many.
pub const MAX_ERRORS: usize = 50;

/// `text` cut to [`MAX_MESSAGE`] characters, with a marker when it was cut.
pub fn truncated(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        None => text.to_string(),
        Some((at, _)) => format!(
            "{}… (cut: {} characters more)",
            &text[..at],
            text[at..].chars().count()
        ),
    }
}

impl ApiError {
    /// A message, with its field as the API gave it, else as the message names one
    /// (Rails' `"First name is too long"` sentences).
    fn new(field: Option<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let field = field
            .filter(|f| !f.is_empty() && f != "$" && f != "body")
            .or_else(|| field_named_in(&message))
            .map(|f| truncated(&f));
        ApiError {
            field,
            message: truncated(&message),
        }
    }
}

/// Parses an error body into messages; never fails (an unreadable body becomes its text).
pub fn parse(body: &[u8]) -> Vec<ApiError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return text_body(body),
    };
    let mut out = Vec::new();
    match &value {
        Value::Object(map) => parse_object(map, &mut out),
        Value::Array(items) => items
            .iter()
            .for_each(|item| parse_item(item, None, &mut out)),
        Value::String(s) => out.push(ApiError::new(None, s.clone())),
        _ => {}
    }
    if out.is_empty() {
        out = text_body(body);
    }
    if out.len() > MAX_ERRORS {
        let more = out.len() - (MAX_ERRORS - 1);
        out.truncate(MAX_ERRORS - 1);
        out.push(ApiError::new(
            None,
            format!("… (cut: {more} more errors in the answer)"),
        ));
    }
    out
}

fn text_body(body: &[u8]) -> Vec<ApiError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    vec![ApiError::new(None, text)]
}

/// The first message of an error body, for one-line operator messages.
pub fn summary(body: &[u8]) -> String {
    parse(body)
        .into_iter()
        .next()
        .map(|e| e.message)
        .unwrap_or_else(|| "no body".into())
}

/// Looks a key up case-insensitively (`errors`, `Errors`, `ERRORS`).
fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn get_str<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| get(map, k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

fn parse_object(map: &Map<String, Value>, out: &mut Vec<ApiError>) {
    // Problem details / generic: an `errors` map or array.
    if let Some(errors) = get(map, "errors") {
        match errors {
            Value::Object(fields) => {
                for (field, messages) in fields {
                    push_messages(Some(field_name(field)), messages, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| parse_item(item, None, out)),
            Value::String(s) => out.push(ApiError::new(None, s.clone())),
            _ => {}
        }
    }
    // FastAPI / pydantic: detail is a list of {loc, msg}.
    if let Some(Value::Array(items)) = get(map, "detail") {
        items.iter().for_each(|item| parse_item(item, None, out));
    }
    // Crayon: ObjectErrors [{ErrorCode, Message, Parameters}].
    if let Some(Value::Array(items)) = get(map, "objecterrors") {
        items.iter().for_each(|item| parse_item(item, None, out));
    }
    if !out.is_empty() {
        return;
    }
    // Django REST framework: {field: ["message", …]} at the top level.
    let drf: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, v)| {
            !is_envelope_key(k)
                && matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string))
        })
        .collect();
    for (field, messages) in drf {
        let field = (field != "non_field_errors").then(|| field_name(field));
        push_messages(field, messages, out);
    }
    if !out.is_empty() {
        return;
    }
    // Plain message; SCIM's detail; problem details' detail or title.
    let message = get_str(
        map,
        &["detail", "message", "error_description", "error", "title"],
    );
    if let Some(message) = message {
        // Without a field key, `ApiError::new` reads the field from the message.
        let field = get_str(map, &["field", "param", "parameter", "attribute"]).map(field_name);
        out.push(ApiError::new(field, message));
    } else if let Some(Value::Object(detail)) = get(map, "detail") {
        // FastAPI Users: `{"detail": {"code": "REGISTER_INVALID_PASSWORD", "reason": "…"}}`.
        let code = get_str(detail, &["code"]).map(|c| c.replace('_', " "));
        let reason = get_str(detail, &["reason", "message", "msg"]).map(str::to_string);
        if let Some(message) = reason.clone().or_else(|| code.clone()) {
            let field = code
                .as_deref()
                .and_then(field_named_in)
                .or_else(|| field_named_in(&message));
            let message = match (&code, &reason) {
                (Some(code), Some(_)) if says_already_exists(code) => code.to_lowercase(),
                _ => message,
            };
            out.push(ApiError::new(field, message));
        }
    } else if let Some(Value::Object(inner)) = get(map, "error") {
        parse_object(inner, out);
    }
}

fn is_envelope_key(key: &str) -> bool {
    [
        "schemas", "type", "title", "status", "detail", "instance", "message", "code", "traceid",
    ]
    .iter()
    .any(|k| key.eq_ignore_ascii_case(k))
}

fn push_messages(field: Option<String>, messages: &Value, out: &mut Vec<ApiError>) {
    match messages {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => out.push(ApiError::new(field.clone(), s.clone())),
                    other => parse_item(other, field.clone(), out),
                }
            }
        }
        Value::String(s) => out.push(ApiError::new(field, s.clone())),
        other => parse_item(other, field, out),
    }
}

/// One entry of an errors array: `{field|path|pointer|source.pointer|loc, message|detail|msg|code}`.
fn parse_item(item: &Value, field: Option<String>, out: &mut Vec<ApiError>) {
    let map = match item {
        Value::Object(map) => map,
        Value::String(s) => return out.push(ApiError::new(field, s.clone())),
        _ => return,
    };
    let named = get_str(
        map,
        &[
            "field",
            "path",
            "pointer",
            "property",
            "propertyName",
            "param",
            "name",
        ],
    )
    .map(field_name)
    .or_else(|| {
        get(map, "source")
            .and_then(Value::as_object)
            .and_then(|s| get_str(s, &["pointer", "parameter", "field"]))
            .map(field_name)
    })
    .or_else(|| {
        get(map, "loc")
            .and_then(Value::as_array)
            .and_then(|loc| loc_name(loc))
    })
    .or_else(|| {
        get(map, "parameters")
            .and_then(Value::as_object)
            .and_then(|p| {
                get_str(p, &["PropertyName", "Property", "Field", "Name"]).map(field_name)
            })
    })
    .or(field);
    let message = get_str(
        map,
        &[
            "message",
            "detail",
            "msg",
            "description",
            "title",
            "errorcode",
            "code",
        ],
    );
    if let Some(message) = message {
        out.push(ApiError::new(named, message));
    }
}

/// FastAPI's `loc` (`["body", "user", "email"]`) → `email`.
fn loc_name(loc: &[Value]) -> Option<String> {
    let parts: Vec<String> = loc
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|p| p != "body" && p != "query")
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// `/name/givenName` → `name.givenName`; `$.email` → `email`; `User.Email` stays.
fn field_name(raw: &str) -> String {
    let trimmed = raw
        .trim_start_matches("$.")
        .trim_start_matches('#')
        .trim_matches('/');
    trimmed.replace('/', ".")
}

/// The field a plain message talks about ("email: invalid", "The FirstName field is
/// required", "first name too long"), when it names exactly one field unambiguously.
pub fn field_named_in(message: &str) -> Option<String> {
    const FIELDS: [&str; 15] = [
        "email",
        "emailaddress",
        "firstname",
        "givenname",
        "lastname",
        "familyname",
        "surname",
        "username",
        "login",
        "phone",
        "phonenumber",
        "password",
        "roleids",
        "role",
        "appclientid",
    ];
    let lower = message.to_lowercase();
    // Two-word spellings first ("first name"), then single tokens ("firstName", "e-mail").
    for (phrase, field) in [
        ("first name", "firstName"),
        ("last name", "lastName"),
        ("user name", "userName"),
        ("phone number", "phoneNumber"),
        ("e-mail", "email"),
    ] {
        if lower.contains(phrase) {
            return Some(field.to_string());
        }
    }
    let squash = |token: &str| -> String {
        token
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let tokens = || message.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    tokens()
        .find(|token| FIELDS.contains(&squash(token).as_str()))
        // A bare "name" only when nothing more precise is named (Cradl's one name field).
        .or_else(|| tokens().find(|token| squash(token) == "name"))
        .map(str::to_string)
}

/// Whether a conflict message is about the user as a whole ("User already exists", "the
/// account exists"): then it is about the person, not one of their values.
pub fn names_the_user(message: &str) -> bool {
    let m = message.to_lowercase();
    ["user", "account", "member", "person", "identity", "record"]
        .iter()
        .any(|w| {
            m.split(|c: char| !c.is_alphanumeric())
                .any(|token| token == *w || token == format!("{w}s"))
        })
}

/// An API's field name for a conflict, without ASP.NET Identity's `Duplicate` prefix
/// (`DuplicateUserName`, `DuplicateEmail`).
pub fn conflict_field_name(name: &str) -> &str {
    name.strip_prefix("Duplicate")
        .or_else(|| name.strip_prefix("duplicate_"))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
}

/// Whether a message says the user already exists (a duplicate, not a refusal); codes with
/// words joined by `_` read the same (`REGISTER_USER_ALREADY_EXISTS`).
pub fn says_already_exists(message: &str) -> bool {
    let m = message.to_lowercase().replace('_', " ");
    [
        "already exist",
        "already taken",
        "is taken",
        "already registered",
        "already in use",
        "already been taken",
        "exists with same",
        "duplicate",
        "uniqueness",
        "not unique",
        "must be unique",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rails_sentences_and_fastapi_codes_land_under_their_field() {
        let rails = r#"{"errors":["First name is too long (maximum is 30 characters)","Login is invalid"]}"#;
        assert_eq!(
            fields(rails),
            vec![
                one(
                    "firstName",
                    "First name is too long (maximum is 30 characters)"
                ),
                one("Login", "Login is invalid"),
            ]
        );
        let fastapi = r#"{"detail":{"code":"REGISTER_INVALID_PASSWORD","reason":"Password should be at least 3 characters"}}"#;
        assert_eq!(
            fields(fastapi),
            vec![one("PASSWORD", "Password should be at least 3 characters")]
        );
        let exists = r#"{"detail":"REGISTER_USER_ALREADY_EXISTS"}"#;
        assert!(says_already_exists(&parse(exists.as_bytes())[0].message));
        assert!(names_the_user("REGISTER_USER_ALREADY_EXISTS"));
    }

    #[test]
    fn a_body_of_countless_errors_keeps_a_bounded_few() {
        let errors: Vec<Value> = (0..10_000)
            .map(|i| serde_json::json!({"field": format!("f{i}"), "message": "bad"}))
            .collect();
        let body = serde_json::json!({ "errors": errors }).to_string();
        let parsed = parse(body.as_bytes());
        assert_eq!(parsed.len(), MAX_ERRORS);
        assert!(
            parsed[MAX_ERRORS - 1].message.contains("9951 more errors"),
            "{parsed:?}"
        );
    }

    fn fields(body: &str) -> Vec<(Option<String>, String)> {
        parse(body.as_bytes())
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    fn one(field: &str, message: &str) -> (Option<String>, String) {
        (Some(field.to_string()), message.to_string())
    }

    #[test]
    fn plain_messages_are_attributed_to_the_field_they_name() {
        assert_eq!(
            fields(r#"{"message":"email: not valid"}"#),
            vec![one("email", "email: not valid")]
        );
        assert_eq!(
            fields(r#"{"message":"The first name is too long"}"#),
            vec![one("firstName", "The first name is too long")]
        );
        assert_eq!(
            fields(r#"{"error":"Invalid value for roleIds"}"#),
            vec![one("roleIds", "Invalid value for roleIds")]
        );
        assert_eq!(
            fields(r#"{"message":"Internal error"}"#),
            vec![(None, "Internal error".into())]
        );
    }

    #[test]
    fn problem_details_errors_map() {
        let body = r#"{"type":"x","title":"One or more validation errors occurred.","status":400,
            "errors":{"FirstName":["The FirstName field is required.","Too short"],"email":"bad"}}"#;
        assert_eq!(
            fields(body),
            vec![
                one("FirstName", "The FirstName field is required."),
                one("FirstName", "Too short"),
                one("email", "bad")
            ]
        );
    }

    #[test]
    fn errors_array_with_json_pointers_and_fields() {
        let body = r##"{"errors":[{"detail":"must be a valid email","pointer":"#/email"},
            {"source":{"pointer":"/data/attributes/phoneNumber"},"detail":"invalid"},
            {"field":"lastName","message":"required"}]}"##;
        assert_eq!(
            fields(body),
            vec![
                one("email", "must be a valid email"),
                one("data.attributes.phoneNumber", "invalid"),
                one("lastName", "required")
            ]
        );
    }

    #[test]
    fn crayon_object_errors() {
        let body = r#"{"ErrorCode":"BadRequest","Message":"Validation failed","Parameters":{},
            "ObjectErrors":[{"ErrorCode":"Required","Message":"'User Name' must not be empty.","Parameters":{"PropertyName":"UserName"}}]}"#;
        assert_eq!(
            fields(body),
            vec![one("UserName", "'User Name' must not be empty.")]
        );
    }

    #[test]
    fn fastapi_detail_list() {
        let body = r#"{"detail":[{"loc":["body","email"],"msg":"value is not a valid email address","type":"value_error"}]}"#;
        assert_eq!(
            fields(body),
            vec![one("email", "value is not a valid email address")]
        );
    }

    #[test]
    fn django_rest_framework_field_lists() {
        let body = r#"{"username":["A user with that username already exists."],"non_field_errors":["Bad"]}"#;
        assert_eq!(
            fields(body),
            vec![
                one("username", "A user with that username already exists."),
                (None, "Bad".into())
            ]
        );
    }

    #[test]
    fn scim_and_plain_messages() {
        let scim = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"scimType":"uniqueness","detail":"User already exists","status":"409"}"#;
        assert_eq!(fields(scim), vec![(None, "User already exists".into())]);
        assert_eq!(
            fields(r#"{"message":"Limit Exceeded"}"#),
            vec![(None, "Limit Exceeded".into())]
        );
        assert_eq!(
            fields(r#"{"error":{"message":"nope"}}"#),
            vec![(None, "nope".into())]
        );
        assert_eq!(
            fields("<html>Bad gateway</html>"),
            vec![(None, "<html>Bad gateway</html>".into())]
        );
        assert!(fields("").is_empty());
    }

    #[test]
    fn conflict_messages_say_what_is_taken() {
        assert!(names_the_user("User already exists"));
        assert!(names_the_user("An account with these details exists"));
        assert!(!names_the_user("Conflict"));
        assert!(!names_the_user("Username 'x' is already taken."));
        assert_eq!(conflict_field_name("DuplicateUserName"), "UserName");
        assert_eq!(conflict_field_name("Duplicate"), "Duplicate");
        assert_eq!(
            field_named_in("Login has already been taken").as_deref(),
            Some("Login")
        );
    }

    #[test]
    fn duplicate_messages_are_recognised() {
        assert!(says_already_exists("Email 'a@b.co' is already taken."));
        assert!(says_already_exists("User exists with same email"));
        assert!(says_already_exists(
            "A user with that username already exists."
        ));
        assert!(!says_already_exists("The email field is required."));
    }
}
