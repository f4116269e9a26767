//! A sync's first pass over the input: who is in it (every row with an identity, refused
//! rows too: a person whose phone cell is wrong has not left), the normalised values of each
//! valid person, and whether the file looks whole.

use crate::error::RunError;
use crate::input::Dialect;
use crate::model::{Field, UserFields};
use crate::pipeline::{self, ImportSettings};
use crate::prepare::validate::{Checked, UNIDENTIFIED_PREFIX, Validator};
use crate::targets::Target;
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// A valid person as the input has them now.
#[derive(Debug, Clone)]
pub struct Present {
    /// The row in the input.
    pub row: u64,
    /// The normalised values, the password left out.
    pub fields: UserFields,
}

/// What the input holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid people by identity (the first row of each).
    pub people: BTreeMap<String, Present>,
    /// Every identity in the input, valid or not.
    pub present: HashSet<String>,
    /// Data rows read.
    pub rows: u64,
    /// The header row as written.
    pub headers: Vec<String>,
    /// Why the file looks cut short, if it does (a quote never closed, a last line with
    /// fewer columns than the header and no line break).
    pub truncated: Option<String>,
    /// SHA-256 of the input's bytes.
    pub sha256: String,
}

/// Reads and checks the whole input for `target`.
pub fn scan(settings: &ImportSettings, target: &Arc<Target>) -> Result<Scan, RunError> {
    let (mut source, mapping) = pipeline::prepare(settings, target)?;
    let headers = source.headers().to_vec();
    let dialect = source.dialect();
    // Rows are checked as the create step checks them; a generated password's value does
    // not matter here (a sync never compares or keeps passwords), only that the row passes.
    let passwords = settings
        .generate_passwords
        .as_ref()
        .map(|_| Arc::new(crate::prepare::PasswordKey::ephemeral()));
    let validator = Validator::new(mapping, target.clone())
        .dropping_invalid(&settings.drop_invalid)
        .generating_passwords(passwords)
        .with_conventions(settings.conventions.clone())
        .without_bodies();
    let mut scan = Scan {
        headers,
        sha256: file_sha256(&settings.input)?,
        ..Scan::default()
    };
    let mut chunk = Vec::new();
    let mut record = crate::input::Record::default();
    loop {
        let more = source.read_record(&mut record)?;
        if more {
            scan.rows += 1;
            if scan.truncated.is_none()
                && let Some(defect) = record
                    .defect
                    .as_deref()
                    .filter(|d| d.contains("not closed"))
            {
                scan.truncated = Some(format!("row {}: {defect}", record.row));
            }
            chunk.push(std::mem::take(&mut record));
        }
        if chunk.len() >= 4096 || (!more && !chunk.is_empty()) {
            for checked in validator.check_chunk(std::mem::take(&mut chunk)) {
                take(&mut scan, checked);
            }
        }
        if !more {
            break;
        }
    }
    if scan.truncated.is_none()
        && let Dialect::Text(text) = dialect
    {
        scan.truncated = cut_line(&settings.input, scan.headers.len(), text.delimiter);
    }
    Ok(scan)
}

fn take(scan: &mut Scan, checked: Checked) {
    match checked {
        Checked::Ready(person) => {
            scan.present.insert(person.identity.clone());
            let mut fields = person.fields;
            fields.set(Field::Password, None);
            scan.people.entry(person.identity).or_insert(Present {
                row: person.row,
                fields,
            });
        }
        Checked::Invalid(refused) => {
            if let Some(identity) = refused
                .identity
                .filter(|i| !i.starts_with(UNIDENTIFIED_PREFIX))
            {
                scan.present.insert(identity);
            }
        }
    }
}

fn file_sha256(path: &Path) -> Result<String, RunError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| RunError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| RunError::Usage(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(super::state::hex(context.finish().as_ref()))
}

/// A delimited file whose last line has no line break and fewer columns than the header
/// (and no quote, which would make counting delimiters a guess): cut mid-record.
fn cut_line(path: &Path, columns: usize, delimiter: u8) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    if tail.is_empty() || tail.ends_with(b"\n") || tail.ends_with(b"\r") {
        return None;
    }
    let last = match memchr::memrchr2(b'\n', b'\r', &tail) {
        Some(i) => &tail[i + 1..],
        None if start == 0 => return None, // the header line alone
        None => &tail[..],
    };
    if last.contains(&b'"') {
        return None;
    }
    let fields = last.iter().filter(|&&b| b == delimiter).count() + 1;
    (fields < columns)
        .then(|| format!("its last line has {fields} of {columns} columns and no line break"))
}
