//! One record in, one verdict out: a user ready to send, or the list of what is wrong with it.
//!
//! Pure and thread-safe, so chunks of records are checked in parallel on rayon.

use crate::fields::{ErrorCode, Field, FieldError, UserFields};
use crate::input::Record;
use crate::mapping::Mapping;
use crate::normalize;
use crate::targets::Target;
use rayon::prelude::*;
use std::sync::Arc;

/// A row that passed every local rule, with its request body already built.
#[derive(Debug, Clone)]
pub struct ReadyUser {
    /// Where the row is in the input.
    pub row: u64,
    /// What makes two rows the same person: the normalised email.
    pub identity: String,
    /// The normalised values.
    pub fields: UserFields,
    /// The request body the target will receive.
    pub body: Vec<u8>,
    /// A stable hash of the body, to notice a refused row that has since been changed.
    pub content_hash: u64,
    /// The original cells, for the error file should the API refuse the row.
    pub cells: Vec<String>,
}

/// A row refused locally.
#[derive(Debug, Clone)]
pub struct InvalidRow {
    /// Where the row is in the input.
    pub row: u64,
    /// The identity, when the row had a valid one.
    pub identity: Option<String>,
    /// What is wrong, per field.
    pub errors: Vec<FieldError>,
    /// The original cells.
    pub cells: Vec<String>,
}

/// The outcome of checking one record.
// Ready is the common case; boxing it would cost an allocation per row on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Checked {
    /// Ready to send.
    Ready(ReadyUser),
    /// Refused locally.
    Invalid(InvalidRow),
}

/// Normalises and validates records for one target with one mapping.
pub struct Validator {
    mapping: Mapping,
    target: Arc<dyn Target>,
}

impl Validator {
    /// A validator for records mapped by `mapping`, checked against `target`'s rules.
    pub fn new(mapping: Mapping, target: Arc<dyn Target>) -> Validator {
        Validator { mapping, target }
    }

    /// The mapping in use.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Checks a chunk of records in parallel, keeping their order.
    pub fn check_chunk(&self, records: Vec<Record>) -> Vec<Checked> {
        records.into_par_iter().map(|r| self.check(r)).collect()
    }

    /// Checks one record.
    pub fn check(&self, record: Record) -> Checked {
        let Record { row, cells, defect } = record;
        let mut errors = Vec::new();
        if let Some(defect) = defect {
            errors.push(FieldError::local(None, "", ErrorCode::Malformed, defect));
        }
        let mut fields = UserFields::default();
        for field in Field::ALL {
            let Some(raw) = self.mapping.raw(&cells, field) else {
                continue;
            };
            let normalised = match field {
                Field::Email => normalize::email(raw),
                Field::Phone => normalize::phone(raw),
                Field::Role => normalize::role(raw),
                // Passwords are taken exactly as given: spaces may be part of them.
                Field::Password => Ok(raw.to_string()),
                _ => Ok(normalize::clean(raw)),
            };
            match normalised {
                Ok(value) => fields.set(field, Some(value)),
                Err(message) => errors.push(self.error(field, ErrorCode::Format, message)),
            }
        }
        self.split_full_name(&mut fields, &mut errors);
        let rules = self.target.rules();
        for &field in &rules.required {
            let failed_already = errors.iter().any(|e| e.field == Some(field));
            if fields.get(field).is_none() && !failed_already {
                errors.push(self.error(field, ErrorCode::Required, "is required"));
            }
        }
        for &(field, max) in &rules.max_len {
            if let Some(value) = fields.get(field) {
                let len = value.chars().count();
                if len > max {
                    let message = format!("is {len} characters long; at most {max} allowed");
                    errors.push(self.error(field, ErrorCode::Length, message));
                }
            }
        }
        let identity = fields.get(Field::Email).map(str::to_string);
        match identity {
            Some(identity) if errors.is_empty() => {
                let body = self.target.body(&fields);
                let content_hash = xxhash_rust::xxh3::xxh3_64(&body);
                Checked::Ready(ReadyUser {
                    row,
                    identity,
                    fields,
                    body,
                    content_hash,
                    cells,
                })
            }
            identity => Checked::Invalid(InvalidRow {
                row,
                identity,
                errors,
                cells,
            }),
        }
    }

    /// With neither first nor last name given, a full name is split on its first whitespace;
    /// a single word leaves the last name missing (refused, never guessed).
    fn split_full_name(&self, fields: &mut UserFields, errors: &mut Vec<FieldError>) {
        if fields.get(Field::FirstName).is_some() || fields.get(Field::LastName).is_some() {
            return;
        }
        let Some(full) = fields.get(Field::FullName).map(str::to_string) else {
            return;
        };
        match full.split_once(char::is_whitespace) {
            Some((first, last)) => {
                fields.set(Field::FirstName, Some(first.to_string()));
                fields.set(Field::LastName, Some(last.trim().to_string()));
            }
            None => {
                fields.set(Field::FirstName, Some(full.clone()));
                let column = self.mapping.column_name(Field::FullName).to_string();
                let message = format!("`{full}` is one word: no last name to take from it");
                errors.push(FieldError::local(
                    Some(Field::LastName),
                    column,
                    ErrorCode::Required,
                    message,
                ));
            }
        }
    }

    fn error(&self, field: Field, code: ErrorCode, message: impl Into<String>) -> FieldError {
        FieldError::local(Some(field), self.mapping.column_name(field), code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::MappingOptions;
    use crate::targets::sandbox::SandboxTarget;

    fn validator(headers: &[&str]) -> Validator {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let target: Arc<dyn Target> = Arc::new(SandboxTarget::new("http://127.0.0.1:1", true));
        let mapping = Mapping::resolve(
            &headers,
            &MappingOptions::default(),
            &target.rules().required,
        )
        .unwrap();
        Validator::new(mapping, target)
    }

    fn record(row: u64, cells: &[&str]) -> Record {
        Record {
            row,
            cells: cells.iter().map(|s| s.to_string()).collect(),
            defect: None,
        }
    }

    #[test]
    fn a_good_row_is_ready_with_its_body() {
        let v = validator(&["E-mail", "First Name", "Last Name"]);
        let Checked::Ready(user) = v.check(record(2, &[" Ann@X.io", "Ann ", "Lee"])) else {
            panic!("expected ready")
        };
        assert_eq!(user.identity, "ann@x.io");
        assert_eq!(user.row, 2);
        assert_eq!(
            String::from_utf8(user.body).unwrap(),
            r#"{"email":"ann@x.io","firstName":"Ann","lastName":"Lee"}"#
        );
    }

    #[test]
    fn errors_name_the_users_columns() {
        let v = validator(&["E-mail", "First Name", "Surname"]);
        let Checked::Invalid(bad) = v.check(record(3, &["ann.x.io", "Ann", ""])) else {
            panic!("expected invalid")
        };
        let columns: Vec<&str> = bad.errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, ["E-mail", "Surname"]);
        assert_eq!(bad.errors[1].code, ErrorCode::Required);
        assert_eq!(bad.identity, None);
    }

    #[test]
    fn defects_refuse_the_row_and_keep_the_identity() {
        let v = validator(&["email", "first", "last"]);
        let mut r = record(4, &["a@x.io", "A", "B"]);
        r.defect = Some("row has 4 fields, the header has 3".into());
        let Checked::Invalid(bad) = v.check(r) else {
            panic!("expected invalid")
        };
        assert_eq!(bad.identity.as_deref(), Some("a@x.io"));
        assert_eq!(bad.errors[0].code, ErrorCode::Malformed);
    }

    #[test]
    fn chunks_keep_their_order() {
        let v = validator(&["email", "first", "last"]);
        let records: Vec<Record> = (0..100)
            .map(|i| record(i + 2, &[&format!("u{i}@x.io"), "A", "B"]))
            .collect();
        let rows: Vec<u64> = v
            .check_chunk(records)
            .into_iter()
            .map(|c| match c {
                Checked::Ready(u) => u.row,
                Checked::Invalid(r) => r.row,
            })
            .collect();
        assert_eq!(rows, (2..102).collect::<Vec<u64>>());
    }

    #[test]
    fn a_full_name_is_split_when_first_and_last_are_absent() {
        let v = validator(&["Email", "Full Name"]);
        let Checked::Ready(user) = v.check(record(2, &["a@x.io", "Mary Ann  Smith-Jones"])) else {
            panic!("expected ready")
        };
        assert_eq!(user.fields.get(Field::FirstName), Some("Mary"));
        assert_eq!(user.fields.get(Field::LastName), Some("Ann  Smith-Jones"));
        let Checked::Invalid(bad) = v.check(record(3, &["b@x.io", "Cher"])) else {
            panic!("expected invalid")
        };
        assert_eq!(bad.errors.len(), 1);
        assert_eq!(bad.errors[0].column, "Full Name");
        assert!(bad.errors[0].message.contains("one word"));
    }

    #[test]
    fn export_template_annotations_are_ignored_when_matching_headers() {
        let v = validator(&[
            "Email Address [Required]",
            "First Name [Required]",
            "Last Name (optional)",
            "Job title [jobTitle]",
        ]);
        let Checked::Ready(user) = v.check(record(2, &["a@x.io", "A", "B", "Engineer"])) else {
            panic!("expected ready")
        };
        assert_eq!(user.fields.get(Field::Title), Some("Engineer"));
        assert_eq!(
            v.mapping().column_name(Field::LastName),
            "Last Name (optional)"
        );
    }
}
