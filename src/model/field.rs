//! The canonical vocabulary of a person, and the row-level problems found with one.
//!
//! A refused row is data, not an error: it carries a list of [`FieldError`]s that travel with
//! the row into the ledger and the error file, each naming the user's own column.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A canonical field every input column is mapped onto and every target builds its body from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The person's email address; the default identity.
    Email,
    /// Given name.
    FirstName,
    /// Family name.
    LastName,
    /// Login name, where the target has one distinct from the email.
    Username,
    /// Phone number.
    Phone,
    /// Role in the target (`user`, `organization-admin`).
    Role,
    /// Initial password; a secret, never written to outputs.
    Password,
    /// "First Last" in one column; split into first and last name when those are absent.
    FullName,
    /// Country (name or ISO code), the person's region.
    Country,
    /// Department.
    Department,
    /// Job title.
    Title,
    /// Account status: active (enabled) or not; targets spell it their way.
    Status,
}

impl Field {
    /// Every canonical field, in a fixed order that indexes [`UserFields`].
    pub const ALL: [Field; 12] = [
        Field::Email,
        Field::FirstName,
        Field::LastName,
        Field::Username,
        Field::Phone,
        Field::Role,
        Field::Password,
        Field::FullName,
        Field::Country,
        Field::Department,
        Field::Title,
        Field::Status,
    ];

    /// Number of canonical fields.
    pub const COUNT: usize = Self::ALL.len();

    /// The field's canonical (snake_case) name as used by `--map` and `--set`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::Username => "username",
            Field::Phone => "phone",
            Field::Role => "role",
            Field::Password => "password",
            Field::FullName => "full_name",
            Field::Country => "country",
            Field::Department => "department",
            Field::Title => "title",
            Field::Status => "status",
        }
    }

    /// Parses a canonical name, accepting any case and `-`/`_`/space spellings.
    pub fn parse(name: &str) -> Option<Field> {
        let key = squash(name);
        Field::ALL.into_iter().find(|f| squash(f.name()) == key)
    }

    /// Position of the field in [`UserFields`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the value is a secret that must never reach logs or output files.
    pub fn is_secret(self) -> bool {
        matches!(self, Field::Password)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lower-cases and drops everything but letters and digits: the key used to compare header
/// spellings ("E-mail Address" and "email_address" both become "emailaddress").
pub fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The normalised values of one person, indexed by [`Field`].
///
/// The values share one buffer: a person is a handful of short strings, and a million rows
/// checked a second made one allocation (and one free, on another thread) of each the
/// biggest cost of a validation after the checks themselves.
#[derive(Clone, Default)]
pub struct UserFields {
    /// Every value set, one after another (a value replaced stays, unreferenced).
    text: String,
    /// Each field's value as a range of `text`; an empty range is an absent value.
    spans: [(u32, u32); Field::COUNT],
    /// Free-form `metadata.KEY` values, in column order, for targets that take them.
    metadata: Vec<(String, String)>,
}

impl UserFields {
    /// Fields with room for `bytes` of values before the buffer grows.
    pub fn with_capacity(bytes: usize) -> UserFields {
        UserFields {
            text: String::with_capacity(bytes),
            ..UserFields::default()
        }
    }

    /// The value of `field`, if present and non-empty.
    pub fn get(&self, field: Field) -> Option<&str> {
        let (start, end) = self.spans[field.index()];
        (start < end).then(|| &self.text[start as usize..end as usize])
    }

    /// Sets `field`; an empty value is stored as absent.
    pub fn set(&mut self, field: Field, value: Option<String>) {
        self.set_str(field, value.as_deref());
    }

    /// Sets `field` to a copy of `value`; an empty value is stored as absent.
    pub fn set_str(&mut self, field: Field, value: Option<&str>) {
        let span = match value {
            Some(value) if !value.is_empty() => {
                let start = self.text.len();
                self.text.push_str(value);
                // Beyond 4 GiB of one person's values the offsets would wrap: refuse to
                // store a value that large rather than read back another field's bytes.
                match (u32::try_from(start), u32::try_from(self.text.len())) {
                    (Ok(start), Ok(end)) => (start, end),
                    _ => {
                        self.text.truncate(start);
                        (0, 0)
                    }
                }
            }
            _ => (0, 0),
        };
        self.spans[field.index()] = span;
    }

    /// The `metadata.KEY` values (key without the prefix, value), in column order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Adds a `metadata.KEY` value; empty values are left out.
    pub fn push_metadata(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.metadata.push((key.to_string(), value));
        }
    }

    fn values(&self) -> impl Iterator<Item = Option<&str>> {
        Field::ALL.iter().map(|&field| self.get(field))
    }
}

/// Equal when every field and the metadata are: how the values lie in the buffer does not
/// matter.
impl PartialEq for UserFields {
    fn eq(&self, other: &UserFields) -> bool {
        self.values().eq(other.values()) && self.metadata == other.metadata
    }
}

impl Eq for UserFields {}

impl fmt::Debug for UserFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("UserFields");
        for &field in Field::ALL.iter() {
            match self.get(field) {
                Some(_) if field == Field::Password => out.field(field.name(), &"(secret)"),
                Some(value) => out.field(field.name(), &value),
                None => continue,
            };
        }
        out.field("metadata", &self.metadata).finish()
    }
}

/// Where a row error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorSource {
    /// Refused by roster before any request.
    Local,
    /// Refused by the target API.
    Remote,
}

/// A small closed set of reasons a field or row was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A required value is missing.
    Required,
    /// The value does not have the expected form.
    Format,
    /// The value is too long.
    Length,
    /// The value is not one of the allowed values.
    NotAllowed,
    /// The identity already appeared earlier in the same file.
    Duplicate,
    /// The row itself is unreadable (wrong number of fields, bad encoding, bad JSON).
    Malformed,
    /// The target refused it; see the message.
    Refused,
    /// Another user on the target holds this value (a user name, a phone).
    Conflict,
    /// The target could not be reached or kept failing.
    Unavailable,
    /// The target answered something it does not document (a "success" without the user).
    Unexpected,
}

/// One problem with one row, named by the user's own column so they can find the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The canonical field, when the problem is attributable to one.
    pub field: Option<Field>,
    /// The user's column header (or the API's field name when no column matches).
    pub column: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
    /// Found locally or reported by the API.
    pub source: ErrorSource,
    /// The kind of problem.
    pub code: ErrorCode,
}

impl FieldError {
    /// A problem found locally.
    pub fn local(
        field: Option<Field>,
        column: impl Into<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field,
            column: column.into(),
            message: message.into(),
            source: ErrorSource::Local,
            code,
        }
    }

    /// A problem reported by the target.
    pub fn remote(
        field: Option<Field>,
        column: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field,
            column: column.into(),
            message: message.into(),
            source: ErrorSource::Remote,
            code: ErrorCode::Refused,
        }
    }
}

/// Joins errors the way the error file's `_errors` column shows them:
/// `column: message; column: message`.
pub fn join_errors(errors: &[FieldError]) -> String {
    let mut out = String::new();
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        if !e.column.is_empty() {
            out.push_str(&e.column);
            out.push_str(": ");
        }
        out.push_str(&e.message);
    }
    out
}

/// The prefix of free-form pass-through keys and columns (`metadata.KEY`).
pub const METADATA_PREFIX: &str = "metadata.";

/// The key of a `metadata.KEY` name (any case of the prefix), if it is one.
pub fn metadata_key(name: &str) -> Option<&str> {
    let head = name.get(..METADATA_PREFIX.len())?;
    let key = &name[METADATA_PREFIX.len()..];
    (head.eq_ignore_ascii_case(METADATA_PREFIX) && !key.trim().is_empty()).then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_one_buffer_read_back_as_set_and_compare_by_value() {
        let mut a = UserFields::default();
        a.set_str(Field::Email, Some("ann@x.io"));
        a.set(Field::FirstName, Some("Ann".into()));
        a.set_str(Field::LastName, Some(""));
        a.set_str(Field::FirstName, Some("Anne")); // replaced: the old bytes stay unused
        assert_eq!(a.get(Field::Email), Some("ann@x.io"));
        assert_eq!(a.get(Field::FirstName), Some("Anne"));
        assert_eq!(a.get(Field::LastName), None, "empty is absent");
        let mut b = UserFields::with_capacity(64);
        b.set_str(Field::FirstName, Some("Anne"));
        b.set_str(Field::Email, Some("ann@x.io"));
        assert_eq!(a, b, "the same values, laid out differently");
        b.set(Field::Email, None);
        assert_ne!(a, b);
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let mut fields = UserFields::default();
        fields.set_str(Field::Email, Some("ann@x.io"));
        fields.set_str(Field::Password, Some("hunter2-secret"));
        let shown = format!("{fields:?}");
        assert!(shown.contains("ann@x.io"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn parse_accepts_common_spellings() {
        for (text, field) in [
            ("email", Field::Email),
            ("First_Name", Field::FirstName),
            ("first-name", Field::FirstName),
            ("lastName", Field::LastName),
            ("PHONE", Field::Phone),
        ] {
            assert_eq!(Field::parse(text), Some(field), "{text}");
        }
        assert_eq!(Field::parse("nickname"), None);
    }

    #[test]
    fn empty_values_are_absent() {
        let mut u = UserFields::default();
        u.set(Field::Email, Some(String::new()));
        assert_eq!(u.get(Field::Email), None);
        u.set(Field::Email, Some("a@b.co".into()));
        assert_eq!(u.get(Field::Email), Some("a@b.co"));
    }

    #[test]
    fn join_errors_names_columns() {
        let errors = vec![
            FieldError::local(
                Some(Field::Email),
                "E-mail",
                ErrorCode::Format,
                "is not an email address",
            ),
            FieldError::local(None, "", ErrorCode::Malformed, "row has 3 fields"),
        ];
        assert_eq!(
            join_errors(&errors),
            "E-mail: is not an email address; row has 3 fields"
        );
    }
}
