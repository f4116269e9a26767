//! Which input column feeds which canonical field.
//!
//! Headers are matched against an alias table, compared case- and punctuation-insensitively
//! ("E-mail Address" = "email_address" = "emailAddress"); `--map field=Column` overrides that,
//! and `--set field=value` gives a default for cells that are empty or columns that are absent.
//! Columns whose name starts with `_` are roster's own (`_row`, `_status`, `_errors` in an
//! error file fed back in) and are never mapped.

use crate::error::RunError;
use crate::model::{Field, squash};

/// Header spellings accepted for each field, already squashed (see [`squash`]).
fn aliases(field: Field) -> &'static [&'static str] {
    match field {
        Field::Email => &[
            "email",
            "emailaddress",
            "mail",
            "workemail",
            "primaryemail",
            "useremail",
            "businessemail",
            "emailid",
            "loginemail",
            "contactemail",
            "officeemail",
            "companyemail",
        ],
        Field::FirstName => &[
            "firstname",
            "first",
            "givenname",
            "forename",
            "fname",
            "given",
            "preferredfirstname",
        ],
        Field::LastName => &[
            "lastname",
            "last",
            "surname",
            "familyname",
            "lname",
            "family",
        ],
        Field::Username => &[
            "username",
            "login",
            "loginname",
            "userlogin",
            "handle",
            "userprincipalname",
            "upn",
        ],
        Field::Phone => &[
            "phone",
            "phonenumber",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cellphone",
            "cell",
            "telephone",
            "tel",
            "workphone",
            "businessphone",
        ],
        Field::Role => &["role", "userrole", "accessrole", "accesslevel", "usertype"],
        Field::FullName => &[
            "fullname",
            "name",
            "displayname",
            "employeename",
            "employee",
            "personname",
        ],
        Field::Country => &[
            "country",
            "countryregion",
            "countrycode",
            "usagelocation",
            "nation",
        ],
        Field::Department => &[
            "department",
            "dept",
            "division",
            "team",
            "organizationalunit",
        ],
        Field::Title => &["title", "jobtitle", "position", "designation"],
        Field::Status => &[
            "status",
            "accountstatus",
            "userstatus",
            "active",
            "isactive",
            "enabled",
            "accountenabled",
        ],
        Field::Password => &["password", "initialpassword", "pwd", "pass"],
    }
}

/// Column choices given on the command line or in the config file.
#[derive(Debug, Clone, Default)]
pub struct MappingOptions {
    /// `--map field=Column`: the column to read a field from.
    pub explicit: Vec<(Field, String)>,
    /// `--set field=value`: the value when the cell is empty or the column absent.
    pub defaults: Vec<(Field, String)>,
    /// `--map metadata.KEY=Column`: free-form values passed through to targets that take them
    /// (columns headed `metadata.KEY` are taken without asking).
    pub metadata: Vec<(String, String)>,
}

pub use crate::model::{METADATA_PREFIX, metadata_key};

/// Parses `field=value` as given to `--map` and `--set`.
pub fn parse_assignment(text: &str) -> Result<(Field, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not FIELD=VALUE"))?;
    let field = Field::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        format!("unknown field `{name}` (fields: {})", names.join(", "))
    })?;
    Ok((field, value.trim().to_string()))
}

/// The resolved mapping for one file.
#[derive(Debug, Clone)]
pub struct Mapping {
    headers: Vec<String>,
    columns: [Option<usize>; Field::COUNT],
    defaults: [Option<String>; Field::COUNT],
    /// `metadata.KEY` → column.
    metadata: Vec<(String, usize)>,
}

impl Mapping {
    /// Resolves `headers` against the aliases and `options`; a `required` field with neither a
    /// column nor a default is a run error that names the closest header.
    pub fn resolve(
        headers: &[String],
        options: &MappingOptions,
        required: &[Field],
    ) -> Result<Mapping, RunError> {
        let mut columns = [None; Field::COUNT];
        let mut defaults: [Option<String>; Field::COUNT] = Default::default();
        for (field, value) in &options.defaults {
            defaults[field.index()] = Some(value.clone()).filter(|v| !v.is_empty());
        }
        // `--map FIELD=` (nothing after `=`): the field has no column, whatever the headers.
        let mut unmapped = [false; Field::COUNT];
        for (field, column) in &options.explicit {
            if column.is_empty() {
                unmapped[field.index()] = true;
                continue;
            }
            columns[field.index()] = Some(named_column(headers, field.name(), column)?);
        }
        let squashed: Vec<String> = headers.iter().map(|h| squash(&header_words(h))).collect();
        for field in Field::ALL {
            if columns[field.index()].is_some() || unmapped[field.index()] {
                continue;
            }
            let taken = |i: usize| columns.contains(&Some(i));
            let aliases: Vec<String> = aliases(field).iter().map(|a| squash(a)).collect();
            let found: Vec<usize> = (0..headers.len())
                .filter(|&i| !headers[i].starts_with('_') && !taken(i))
                .filter(|&i| aliases.contains(&squashed[i]))
                .collect();
            // Two columns that both read as one field (`Email` and `Work Email`, or a header
            // written twice): which one holds the truth is the user's call, never a guess.
            if let [first, second, ..] = found[..] {
                return Err(RunError::Usage(format!(
                    "columns `{}` (column {}) and `{}` (column {}) both read as field `{field}`: \
                     choose one with --map {field}=COLUMN, or --map {field}= for neither",
                    headers[first],
                    first + 1,
                    headers[second],
                    second + 1
                )));
            }
            columns[field.index()] = found.first().copied();
        }
        let mut metadata: Vec<(String, usize)> = Vec::new();
        for (key, column) in &options.metadata {
            let index = named_column(headers, &format!("{METADATA_PREFIX}{key}"), column)?;
            metadata.push((key.clone(), index));
        }
        for (index, header) in headers.iter().enumerate() {
            if let Some(key) = metadata_key(header)
                && !metadata.iter().any(|(k, i)| k == key || *i == index)
            {
                metadata.push((key.to_string(), index));
            }
        }
        let full_name = columns[Field::FullName.index()].is_some();
        for &field in required {
            // A full name column can supply first and last names.
            let from_full_name = full_name && matches!(field, Field::FirstName | Field::LastName);
            if columns[field.index()].is_none()
                && defaults[field.index()].is_none()
                && !from_full_name
            {
                return Err(RunError::Usage(format!(
                    "no column for required field `{field}`{} (hint: --map {field}=COLUMN or --set {field}=VALUE)",
                    suggestion(headers, field.name())
                )));
            }
        }
        Ok(Mapping {
            headers: headers.to_vec(),
            columns,
            defaults,
            metadata,
        })
    }

    /// The column index feeding `field`, if any.
    pub fn column(&self, field: Field) -> Option<usize> {
        self.columns[field.index()]
    }

    /// The default value for `field`, if one was set.
    pub fn default_value(&self, field: Field) -> Option<&str> {
        self.defaults[field.index()].as_deref()
    }

    /// The user's header for `field`, or the canonical name when no column feeds it.
    pub fn column_name(&self, field: Field) -> &str {
        match self.column(field) {
            Some(i) => &self.headers[i],
            None => field.name(),
        }
    }

    /// The file's headers.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// Raw (un-normalised) value of `field` in a record's cells, falling back to the default.
    pub fn raw<'a>(&'a self, cells: &'a [String], field: Field) -> Option<&'a str> {
        let cell = self
            .column(field)
            .and_then(|i| cells.get(i))
            .map(String::as_str);
        match cell {
            Some(v) if !v.trim().is_empty() => Some(v),
            _ => self.default_value(field),
        }
    }

    /// The `metadata.KEY` pass-through columns: (key, column index).
    pub fn metadata(&self) -> &[(String, usize)] {
        &self.metadata
    }

    /// Lines describing which column feeds which field, for `--print-mapping` and logs.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = Field::ALL
            .iter()
            .map(|&f| match (self.column(f), self.default_value(f)) {
                (Some(i), _) => format!("{f:<10} <- {}", self.headers[i]),
                (None, Some(_)) if f.is_secret() => format!("{f:<10} = (set, hidden)"),
                (None, Some(d)) => format!("{f:<10} = {d:?}"),
                (None, None) => format!("{f:<10} (no column)"),
            })
            .collect();
        for (key, column) in &self.metadata {
            lines.push(format!("metadata.{key} <- {}", self.headers[*column]));
        }
        let unused: Vec<&str> = (0..self.headers.len())
            .filter(|i| !self.columns.contains(&Some(*i)))
            .filter(|i| !self.metadata.iter().any(|(_, c)| c == i))
            .map(|i| self.headers[i].as_str())
            .collect();
        if !unused.is_empty() {
            lines.push(format!("unused columns: {}", unused.join(", ")));
        }
        lines
    }
}

/// The column `--map NAME=COLUMN` names: exactly, else ignoring case and punctuation; a
/// usage error suggesting the closest header when there is none.
fn named_column(headers: &[String], name: &str, column: &str) -> Result<usize, RunError> {
    headers
        .iter()
        .position(|h| h == column)
        .or_else(|| headers.iter().position(|h| squash(h) == squash(column)))
        .ok_or_else(|| {
            RunError::Usage(format!(
                "--map {name}={column}: the file has no column `{column}`{}",
                suggestion(headers, column)
            ))
        })
}

/// A header without the annotations export templates add: Google Workspace's
/// "First Name [Required]", Entra ID's "First name [givenName]", "(optional)".
fn header_words(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    let mut depth = 0usize;
    for c in header.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    if out.trim().is_empty() {
        header.to_string()
    } else {
        out
    }
}

/// `" (closest: `Surname`)"` when a header is reasonably close to `wanted`.
fn suggestion(headers: &[String], wanted: &str) -> String {
    let wanted = squash(wanted);
    headers
        .iter()
        .filter(|h| !h.starts_with('_'))
        .map(|h| (strsim::normalized_levenshtein(&squash(h), &wanted), h))
        .filter(|(score, _)| *score >= 0.4)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, h)| format!(" (closest header: `{h}`)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_empty_map_means_no_column_for_the_field() {
        let h = headers(&["Email", "First Name", "Last Name", "Phone"]);
        let options = MappingOptions {
            explicit: vec![(Field::Phone, String::new())],
            ..MappingOptions::default()
        };
        let m = Mapping::resolve(&h, &options, &[Field::Email]).unwrap();
        assert_eq!(m.column(Field::Phone), None);
        assert_eq!(m.column(Field::Email), Some(0));
    }

    #[test]
    fn two_columns_for_one_field_are_an_error_naming_both() {
        for h in [
            headers(&["Email", "Work Email", "First Name"]),
            headers(&["Email", "First Name", "Email"]),
        ] {
            let e = Mapping::resolve(&h, &MappingOptions::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`{}`", h[0])) && e.contains("--map email="),
                "{e}"
            );
        }
        // Choosing one settles it.
        let options = MappingOptions {
            explicit: vec![(Field::Email, "Work Email".into())],
            ..MappingOptions::default()
        };
        let h = headers(&["Email", "Work Email", "First Name"]);
        let m = Mapping::resolve(&h, &options, &[]).unwrap();
        assert_eq!(m.column(Field::Email), Some(1));
    }

    #[test]
    fn aliases_match_case_and_punctuation_insensitively() {
        let h = headers(&[
            "E-mail Address",
            "Given Name",
            "SURNAME",
            "Mobile Phone",
            "_row",
        ]);
        let m = Mapping::resolve(&h, &MappingOptions::default(), &[Field::Email]).unwrap();
        assert_eq!(m.column(Field::Email), Some(0));
        assert_eq!(m.column(Field::FirstName), Some(1));
        assert_eq!(m.column(Field::LastName), Some(2));
        assert_eq!(m.column(Field::Phone), Some(3));
        assert_eq!(m.column(Field::Role), None);
        assert_eq!(m.column_name(Field::LastName), "SURNAME");
    }

    #[test]
    fn camel_and_snake_case_headers_match() {
        let h = headers(&["firstName", "last_name", "emailAddress"]);
        let m = Mapping::resolve(&h, &MappingOptions::default(), &[]).unwrap();
        assert_eq!(m.column(Field::FirstName), Some(0));
        assert_eq!(m.column(Field::LastName), Some(1));
        assert_eq!(m.column(Field::Email), Some(2));
    }

    #[test]
    fn explicit_map_and_defaults_win() {
        let h = headers(&["Email", "Contact", "Role"]);
        let options = MappingOptions {
            explicit: vec![(Field::Email, "contact".into())],
            defaults: vec![(Field::Role, "user".into())],
            ..MappingOptions::default()
        };
        let m = Mapping::resolve(&h, &options, &[Field::Email]).unwrap();
        assert_eq!(m.column(Field::Email), Some(1));
        let cells = vec!["x".to_string(), "a@b.co".to_string(), " ".to_string()];
        assert_eq!(m.raw(&cells, Field::Role), Some("user"));
    }

    #[test]
    fn missing_required_column_suggests_the_closest_header() {
        let h = headers(&["Email", "Lastnme"]);
        let err = Mapping::resolve(&h, &MappingOptions::default(), &[Field::LastName]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`last_name`") && text.contains("`Lastnme`"),
            "{text}"
        );
    }

    #[test]
    fn unknown_explicit_column_is_a_usage_error() {
        let h = headers(&["Email"]);
        let options = MappingOptions {
            explicit: vec![(Field::Phone, "Tel".into())],
            ..Default::default()
        };
        assert!(matches!(
            Mapping::resolve(&h, &options, &[]),
            Err(RunError::Usage(_))
        ));
    }

    #[test]
    fn metadata_columns_pass_through_by_header_or_map() {
        let headers: Vec<String> = ["Email", "metadata.employee_id", "Cost Center", "Notes"]
            .map(String::from)
            .to_vec();
        let options = MappingOptions {
            metadata: vec![("cost_center".into(), "cost center".into())],
            ..MappingOptions::default()
        };
        let m = Mapping::resolve(&headers, &options, &[Field::Email]).unwrap();
        assert_eq!(
            m.metadata(),
            &[
                ("cost_center".to_string(), 2),
                ("employee_id".to_string(), 1)
            ]
        );
        let described = m.describe().join("\n");
        assert!(described.contains("metadata.employee_id <- metadata.employee_id"));
        assert!(described.contains("unused columns: Notes"), "{described}");
        assert_eq!(metadata_key("Metadata.x"), Some("x"));
        assert_eq!(metadata_key("metadata."), None);
    }

    #[test]
    fn parse_assignment_reads_field_equals_value() {
        assert_eq!(
            parse_assignment("role=user"),
            Ok((Field::Role, "user".into()))
        );
        assert!(parse_assignment("nope").is_err());
        assert!(parse_assignment("colour=red").is_err());
    }
}
