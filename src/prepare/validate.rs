//! One record in, one verdict out: a user ready to send, or the list of what is wrong with it.
//!
//! Pure and thread-safe, so chunks of records are checked in parallel on rayon.

use crate::input::Record;
use crate::model::{ErrorCode, Field, FieldError, Person, Refused, UserFields};
use crate::prepare::mapping::Mapping;
use crate::prepare::passwords::PasswordKey;
use crate::targets::{PasswordUse, Target};
use crate::values::{self, Conventions};
use crate::values::{country, phone};
use rayon::prelude::*;
use std::sync::Arc;

/// The outcome of checking one record.
// Ready is the common case; boxing it would cost an allocation per row on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Checked {
    /// Ready to send.
    Ready(Person),
    /// Refused locally.
    Invalid(Refused),
}

/// Normalises and validates records for one target with one mapping.
pub struct Validator {
    mapping: Mapping,
    target: Arc<Target>,
    /// `--generate-passwords`: the key users without a password get theirs derived from.
    passwords: Option<Arc<PasswordKey>>,
    conventions: Conventions,
    /// `--drop-invalid`: optional fields whose invalid cell is left out of the body (and
    /// listed as a warning) instead of refusing the row.
    drop_invalid: Vec<Field>,
    /// The columns that are the user's data (not roster's own `_` columns of an error file
    /// fed back in): what a refused row's content hash covers.
    data_columns: Vec<usize>,
    /// Whether a ready person's request body (and the content hash over it) is built: a
    /// validation sends nothing and compares nothing with a ledger, so it skips both.
    bodies: bool,
}

impl Validator {
    /// A validator for records mapped by `mapping`, checked against `target`'s rules.
    pub fn new(mapping: Mapping, target: Arc<Target>) -> Validator {
        let data_columns = (0..mapping.headers().len())
            .filter(|&i| !mapping.headers()[i].starts_with('_'))
            .collect();
        Validator {
            data_columns,
            mapping,
            target,
            passwords: None,
            conventions: Conventions::default(),
            drop_invalid: Vec::new(),
            bodies: true,
        }
    }

    /// Leaves ready people without a request body or content hash (`validate`, which sends
    /// nothing and keeps no ledger). Every check still runs: building a body refuses nothing.
    pub fn without_bodies(mut self) -> Validator {
        self.bodies = false;
        self
    }

    /// Reads cells under the run's conventions (default phone region, role synonyms).
    pub fn with_conventions(mut self, conventions: Conventions) -> Validator {
        self.conventions = conventions;
        self
    }

    /// Gives every user without a password a strong one derived from `key`
    /// (`--generate-passwords`), the same in every run for the same person.
    pub fn generating_passwords(mut self, key: Option<Arc<PasswordKey>>) -> Validator {
        self.passwords = key.filter(|_| self.target.info.password != PasswordUse::Unused);
        self
    }

    /// Sends a person whose only problems are in `fields` without those cells
    /// (`--drop-invalid`); a field the target requires is never dropped.
    pub fn dropping_invalid(mut self, fields: &[Field]) -> Validator {
        let required = &self.target.schema.rules().required;
        self.drop_invalid = fields
            .iter()
            .copied()
            .filter(|f| *f != Field::Email && !required.contains(f))
            .collect();
        self
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
        // Room for every cell's text: the values are the cells cleaned, so the fields' one
        // buffer rarely grows.
        let mut fields =
            UserFields::with_capacity(cells.iter().map(String::len).sum::<usize>() + 16);
        for field in Field::ALL {
            let Some(raw) = self.mapping.raw(&cells, field) else {
                continue;
            };
            // A field the target does not check never refuses the row; it travels (where the
            // body carries it at all) as clean text.
            if field != Field::Email && !self.target.schema.checks(field) {
                if values::damage(raw).is_none() {
                    fields.set_str(field, Some(&values::cleaned(raw)));
                }
                continue;
            }
            // Damaged text is refused whatever the field: sent on, it would create a person
            // named `L\u{FFFD}chel`.
            if let Some(message) = values::damage(raw) {
                errors.push(self.error(field, ErrorCode::Malformed, message));
                continue;
            }
            let normalised = match field {
                Field::Email => values::email(raw),
                // Read once the country is known: it decides how a national number reads.
                Field::Phone => continue,
                Field::Role => self
                    .target
                    .schema
                    .normalize_role(self.conventions.role(raw)),
                Field::Status => values::status(raw),
                // Passwords are taken exactly as given: spaces may be part of them.
                Field::Password => {
                    fields.set_str(field, Some(raw));
                    continue;
                }
                _ => {
                    fields.set_str(field, Some(&values::cleaned(raw)));
                    continue;
                }
            };
            match normalised {
                Ok(value) => fields.set(field, Some(value)),
                Err(message) => errors.push(self.error(field, ErrorCode::Format, message)),
            }
        }
        self.read_phone(&cells, &mut fields, &mut errors);
        for (key, column) in self.mapping.metadata() {
            if let Some(cell) = cells.get(*column) {
                if let Some(message) = values::damage(cell) {
                    let header = self.mapping.headers().get(*column).cloned();
                    let header = header.unwrap_or_default();
                    errors.push(FieldError::local(
                        None,
                        header,
                        ErrorCode::Malformed,
                        message,
                    ));
                    continue;
                }
                fields.push_metadata(key, values::clean(cell));
            }
        }
        self.split_full_name(&mut fields, &mut errors);
        // A generated password is derived from the person's identity, so it is the same in
        // every run: the hash below (and the idempotency key) then reads an unchanged row as
        // unchanged, and a resend carries what the first attempt carried.
        let generated_password = fields.get(Field::Password).is_none()
            && fields.get(Field::Email).is_some()
            && self.passwords.is_some();
        if generated_password
            && let (Some(key), Some(identity)) = (&self.passwords, fields.get(Field::Email))
        {
            let password = key.derive(self.target.ledger_key(), identity);
            fields.set(Field::Password, Some(password));
        }
        let rules = self.target.schema.rules();
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
        let mut problems = Vec::new();
        self.target.schema.check(&fields, &mut problems);
        for (field, code, message) in problems {
            errors.push(self.error(field, code, message));
        }
        let warnings = self.drop_invalid_cells(&mut fields, &mut errors);
        let identity = fields.get(Field::Email).map(str::to_string);
        match identity {
            Some(identity) if errors.is_empty() => {
                let (body, content_hash) = match self.bodies {
                    true => self.body_and_hash(&fields),
                    false => (Vec::new(), 0),
                };
                Checked::Ready(Person {
                    row,
                    identity,
                    fields,
                    body,
                    content_hash,
                    cells,
                    generated_password,
                    remote_id: None,
                    uncertain: false,
                    warnings,
                })
            }
            identity => {
                let content_hash = cells_hash(&cells, &self.data_columns);
                // A row without a valid identity is remembered by its content, so the same
                // broken row is "still refused" next time rather than a new failure.
                let identity =
                    identity.or_else(|| Some(format!("{UNIDENTIFIED_PREFIX}{content_hash:016x}")));
                Checked::Invalid(Refused {
                    row,
                    identity,
                    errors,
                    content_hash,
                    cells,
                })
            }
        }
    }

    /// When every problem of the row is in a `--drop-invalid` field, those fields are left
    /// out and their problems returned as warnings; otherwise the row stays refused with all
    /// of them, so the user fixes every cell at once.
    fn drop_invalid_cells(
        &self,
        fields: &mut UserFields,
        errors: &mut Vec<FieldError>,
    ) -> Vec<FieldError> {
        let droppable = |e: &FieldError| e.field.is_some_and(|f| self.drop_invalid.contains(&f));
        if errors.is_empty() || !errors.iter().all(droppable) {
            return Vec::new();
        }
        let mut warnings = std::mem::take(errors);
        for warning in &mut warnings {
            if let Some(field) = warning.field {
                fields.set(field, None);
            }
            warning.message.push_str(" (left out: --drop-invalid)");
        }
        warnings
    }

    /// The request body for `fields`, and the hash of everything roster would send for
    /// the row: the body, and the password even where it goes in a later step (Crayon), so a
    /// row refused for want of a password is resent once one is given or generated.
    fn body_and_hash(&self, fields: &UserFields) -> (Vec<u8>, u64) {
        let body = self.target.schema.body(fields);
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(&body);
        if let Some(password) = fields.get(Field::Password) {
            hasher.update(&[0]);
            hasher.update(password.as_bytes());
        }
        (body, hasher.digest())
    }

    /// The phone in E.164, a national number read in the row's country, else `--region`.
    fn read_phone(&self, cells: &[String], fields: &mut UserFields, errors: &mut Vec<FieldError>) {
        let Some(raw) = self.mapping.raw(cells, Field::Phone) else {
            return;
        };
        if errors.iter().any(|e| e.field == Some(Field::Phone)) {
            return; // already refused as damaged text
        }
        if !self.target.schema.checks(Field::Phone) {
            return; // set as clean text above, if the target carries it at all
        }
        let country = fields.get(Field::Country);
        let row_region = country.and_then(country::phone_region);
        let region = row_region.or(self.conventions.region.as_deref());
        match phone::to_e164(raw, region) {
            Ok(number) => fields.set(Field::Phone, Some(number)),
            Err(mut message) => {
                if let (Some(country), None) = (country, row_region) {
                    message.push_str(&format!(" (country `{country}` is not one roster knows)"));
                }
                errors.push(self.error(Field::Phone, ErrorCode::Format, message));
            }
        }
    }

    /// With neither first nor last name given, a full name is split on its first whitespace;
    /// a single word leaves the last name missing: refused (never guessed) for a target that
    /// requires a last name, kept as the given name alone for one that does not (SCIM, Cradl).
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
                let needs_last = self
                    .target
                    .schema
                    .rules()
                    .required
                    .contains(&Field::LastName);
                if !needs_last {
                    return;
                }
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

/// The ledger identity of a refused row that has no valid email: this prefix and a hash of
/// its cells (no email starts with `~`).
pub const UNIDENTIFIED_PREFIX: &str = "~row:";

/// A hash of a row's data cells (separated, so `a,bc` and `ab,c` differ).
fn cells_hash(cells: &[String], columns: &[usize]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for &i in columns {
        hasher.update(cells.get(i).map_or("", String::as_str).as_bytes());
        hasher.update(&[0]);
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare::mapping::MappingOptions;

    fn validator(headers: &[&str]) -> Validator {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let spec = crate::targets::TargetSpec {
            name: "sandbox".into(),
            ..Default::default()
        };
        let target = Arc::new(crate::targets::build_schema(&spec).unwrap());
        let mapping = Mapping::resolve(
            &headers,
            &MappingOptions::default(),
            &target.schema.rules().required,
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
        assert!(
            bad.identity.unwrap().starts_with(UNIDENTIFIED_PREFIX),
            "no email: known by its content"
        );
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
