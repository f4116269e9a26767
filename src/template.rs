//! `roster template`: a file to start from. The columns a target takes (the required ones
//! marked `[Required]`, an annotation the mapping reads past), one example row that passes the
//! target's validation, and in XLSX a sheet describing each column and pick lists for the role
//! and status where the target takes only those values.

use crate::error::RunError;
use crate::files::Privacy;
use crate::input::Record;
use crate::model::Field;
use crate::prepare::mapping::{Mapping, MappingOptions};
use crate::prepare::validate::{Checked, Validator};
use crate::targets::{PasswordUse, Target};
use std::path::Path;
use std::sync::Arc;

/// Template formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateFormat {
    /// A CSV header and one example row.
    Csv,
    /// A workbook: the columns with an example row and pick lists, and a sheet about them.
    Xlsx,
}

/// One column of a template.
#[derive(Debug, Clone)]
pub struct Column {
    /// The field it feeds.
    pub field: Field,
    /// Its header, `[Required]` where the target requires it.
    pub header: String,
    /// The target refuses a row without it.
    pub required: bool,
    /// What it takes, in a few words.
    pub about: &'static str,
    /// An example value that passes.
    pub example: String,
}

/// The columns `target` takes, in the usual order, each with a checked example value.
pub fn columns(target: &Arc<Target>) -> Result<Vec<Column>, RunError> {
    let required = &target.schema.rules().required;
    let mut columns: Vec<Column> = Field::ALL
        .iter()
        .copied()
        .filter(|&f| f != Field::FullName)
        .filter(|&f| f == Field::Email || target.schema.checks(f))
        .filter(|&f| f != Field::Password || target.info.password != PasswordUse::Unused)
        .map(|field| {
            let (name, about, example) = describe(field);
            let required = required.contains(&field)
                || (field == Field::Password && target.info.password == PasswordUse::Required);
            let header = match required {
                true => format!("{name} [Required]"),
                false => name.to_string(),
            };
            Column {
                field,
                header,
                required,
                about,
                example: example.to_string(),
            }
        })
        .collect();
    // An optional example the target would refuse (a role vocabulary of its own, a
    // username pattern) is left empty rather than shown wrong.
    for _ in 0..columns.len() {
        let refused = refusals(target, &columns)?;
        let Some(field) = refused.iter().find(|f| {
            columns
                .iter()
                .any(|c| c.field == **f && !c.required && !c.example.is_empty())
        }) else {
            break;
        };
        if let Some(column) = columns.iter_mut().find(|c| c.field == *field) {
            column.example.clear();
        }
    }
    let refused = refusals(target, &columns)?;
    if !refused.is_empty() {
        return Err(RunError::Internal(format!(
            "the template's example row for `{}` does not pass its own checks ({})",
            target.name(),
            refused
                .iter()
                .map(Field::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(columns)
}

/// The fields whose example `target` refuses, read exactly as an import reads the file.
fn refusals(target: &Arc<Target>, columns: &[Column]) -> Result<Vec<Field>, RunError> {
    let headers: Vec<String> = columns.iter().map(|c| c.header.clone()).collect();
    let mapping = Mapping::resolve(&headers, &MappingOptions::default(), &[])?;
    let record = Record {
        row: 2,
        cells: columns.iter().map(|c| c.example.clone()).collect(),
        defect: None,
    };
    match Validator::new(mapping, target.clone()).check(record) {
        Checked::Ready(_) => Ok(Vec::new()),
        Checked::Invalid(refused) => Ok(refused.errors.iter().filter_map(|e| e.field).collect()),
    }
}

/// A field's header, what it takes, and an example value.
fn describe(field: Field) -> (&'static str, &'static str, &'static str) {
    match field {
        Field::Email => (
            "Email",
            "the person's email: who they are (roster never creates one twice)",
            "ada.lovelace@example.com",
        ),
        Field::FirstName => ("First Name", "given name", "Ada"),
        Field::LastName => ("Last Name", "family name", "Lovelace"),
        Field::Username => (
            "Username",
            "login name (default: the email)",
            "ada.lovelace",
        ),
        Field::Phone => (
            "Phone",
            "with its country code (+44 20 7946 0958), or national in the row's Country",
            "+14155550123",
        ),
        Field::Role => ("Role", "user or organization-admin", "user"),
        Field::Password => (
            "Password",
            "the first password (leave empty and use --generate-passwords to have one made)",
            "Example-Passw0rd-2026!",
        ),
        Field::Country => (
            "Country",
            "a name or ISO code; reads national phone numbers",
            "United States",
        ),
        Field::Department => ("Department", "free text", "Engineering"),
        Field::Title => ("Title", "job title, free text", "Engineer"),
        Field::Status => ("Status", "active or inactive", "active"),
        Field::FullName => ("Full Name", "first and last name", "Ada Lovelace"),
    }
}

/// The values a field takes when the target accepts only a few (a pick list), else none.
fn choices(target: &Target, field: Field) -> Vec<&'static str> {
    match field {
        Field::Status => vec!["active", "inactive"],
        // A list only where the target takes nothing else: free-text or id roles (SCIM,
        // Nexway, Cradl's role ids) get none.
        Field::Role => {
            let schema = &target.schema;
            let restricted = schema.normalize_role("not-a-role-anywhere").is_err();
            let both = ["user", "organization-admin"]
                .iter()
                .all(|r| schema.normalize_role(r).is_ok_and(|v| !v.is_empty()));
            match restricted && both {
                true => vec!["user", "organization-admin"],
                false => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// The CSV template: the header and the example row.
pub fn csv(columns: &[Column]) -> Result<Vec<u8>, RunError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| RunError::Internal(format!("cannot write the template: {e}"));
    writer
        .write_record(columns.iter().map(|c| &c.header))
        .map_err(internal)?;
    writer
        .write_record(columns.iter().map(|c| &c.example))
        .map_err(internal)?;
    writer
        .into_inner()
        .map_err(|e| RunError::Internal(format!("cannot write the template: {e}")))
}

/// Writes the XLSX template to `path`: a "People" sheet (a bold header, required columns
/// shaded, text-formatted columns so a typed phone stays as typed, pick lists) and an "About"
/// sheet describing each column.
pub fn write_xlsx(target: &Target, columns: &[Column], path: &Path) -> Result<(), RunError> {
    use rust_xlsxwriter::{Color, DataValidation, DataValidationErrorStyle, Format, Workbook};
    let xlsx = |e: rust_xlsxwriter::XlsxError| RunError::Internal(format!("template: {e}"));
    let mut workbook = Workbook::new();
    let text = Format::new().set_num_format("@");
    let header = Format::new().set_bold();
    let required = Format::new()
        .set_bold()
        .set_background_color(Color::RGB(0xFCE4D6));
    let people = workbook.add_worksheet();
    people.set_name("People").map_err(xlsx)?;
    for (i, column) in columns.iter().enumerate() {
        let c = i as u16;
        people
            .set_column_width(c, column.header.len().max(14) as f64 + 2.0)
            .map_err(xlsx)?;
        people.set_column_format(c, &text).map_err(xlsx)?;
        let style = if column.required { &required } else { &header };
        people
            .write_string_with_format(0, c, &column.header, style)
            .map_err(xlsx)?;
        people
            .write_string_with_format(1, c, &column.example, &text)
            .map_err(xlsx)?;
        let list = choices(target, column.field);
        if !list.is_empty() {
            let validation = DataValidation::new()
                .allow_list_strings(&list)
                .map_err(xlsx)?
                .set_error_style(DataValidationErrorStyle::Stop)
                .set_error_title(column.header.as_str())
                .map_err(xlsx)?
                .set_error_message(format!("One of: {}", list.join(", ")))
                .map_err(xlsx)?;
            people
                .add_data_validation(1, c, 1_048_575, c, &validation)
                .map_err(xlsx)?;
        }
    }
    people.set_freeze_panes(1, 0).map_err(xlsx)?;
    let about = workbook.add_worksheet();
    about.set_name("About").map_err(xlsx)?;
    about.set_column_width(0, 18).map_err(xlsx)?;
    about.set_column_width(1, 10).map_err(xlsx)?;
    about.set_column_width(2, 80).map_err(xlsx)?;
    for (c, title) in ["Column", "Required", "What it takes"].iter().enumerate() {
        about
            .write_string_with_format(0, c as u16, *title, &header)
            .map_err(xlsx)?;
    }
    for (i, column) in columns.iter().enumerate() {
        let row = i as u32 + 1;
        let name = column.header.trim_end_matches(" [Required]");
        about.write_string(row, 0, name).map_err(xlsx)?;
        let needed = if column.required { "yes" } else { "no" };
        about.write_string(row, 1, needed).map_err(xlsx)?;
        about.write_string(row, 2, column.about).map_err(xlsx)?;
    }
    let note = format!(
        "For target `{}`. Other columns are kept in the error file but not sent; \
         `roster validate FILE --target {}` checks a filled-in sheet without sending anything.",
        target.name(),
        target.name()
    );
    about
        .write_string(columns.len() as u32 + 2, 0, note)
        .map_err(xlsx)?;
    let file = crate::files::create(path, Privacy::Personal).map_err(|e| RunError::Output {
        path: path.to_path_buf(),
        source: e,
    })?;
    workbook.save_to_writer(file).map_err(xlsx)
}
