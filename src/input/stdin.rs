//! `-` as the input: standard input, copied to a private temporary file before reading.
//!
//! Every reader needs a file: a spreadsheet is a zip archive read from its end, CSV's
//! encoding and delimiter are sniffed from its start, and a resumed run reads the input
//! again. The copy streams (flat memory) and is removed when the run ends.

use super::{Format, InputError};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Standard input, spooled to a temporary file named with its format's extension.
#[derive(Debug)]
pub struct SpooledStdin {
    /// The copy; removed when this is dropped.
    pub path: tempfile::TempPath,
    /// `--format`, else what the first bytes say.
    pub format: Format,
}

/// Copies standard input to a temporary file; its format is `format` when given, else
/// sniffed from the first bytes (a zip archive: XLSX or ODS; an OLE file: XLS; `{`: JSONL;
/// anything else: CSV).
pub fn spool(format: Option<Format>) -> Result<SpooledStdin, InputError> {
    spool_from(&mut std::io::stdin().lock(), format)
}

/// [`spool`] from any reader.
pub fn spool_from(
    input: &mut dyn Read,
    format: Option<Format>,
) -> Result<SpooledStdin, InputError> {
    let io = |source| InputError::Io {
        path: PathBuf::from("-"),
        source,
    };
    let mut head = Vec::with_capacity(8192);
    input.take(8192).read_to_end(&mut head).map_err(io)?;
    let (format, extension) = match format {
        Some(Format::Xlsx) | None if head.starts_with(b"PK\x03\x04") => {
            (Format::Xlsx, zip_extension(&head))
        }
        Some(Format::Xlsx) | None if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) => {
            (Format::Xlsx, "xls")
        }
        Some(Format::Xlsx) => (Format::Xlsx, "xlsx"),
        Some(Format::Tsv) => (Format::Tsv, "tsv"),
        Some(Format::Jsonl) => (Format::Jsonl, "jsonl"),
        Some(Format::Csv) => (Format::Csv, "csv"),
        None if starts_json_object(&head) => (Format::Jsonl, "jsonl"),
        None => (Format::Csv, "csv"),
    };
    let mut file = tempfile::Builder::new()
        .prefix("roster-stdin-")
        .suffix(&format!(".{extension}"))
        .tempfile()
        .map_err(io)?;
    file.write_all(&head).map_err(io)?;
    std::io::copy(input, &mut file).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(SpooledStdin {
        path: file.into_temp_path(),
        format,
    })
}

/// An OpenDocument archive names its type in a first stored `mimetype` entry.
fn zip_extension(head: &[u8]) -> &'static str {
    let opendocument = b"application/vnd.oasis.opendocument.spreadsheet";
    match head.windows(opendocument.len()).any(|w| w == opendocument) {
        true => "ods",
        false => "xlsx",
    }
}

fn starts_json_object(head: &[u8]) -> bool {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    text.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_flag_else_the_first_bytes() {
        let cases: [(&[u8], Option<Format>, Format, &str); 5] = [
            (b"Email\na@x.io\n", None, Format::Csv, "csv"),
            (b"\n {\"email\":\"a@x.io\"}\n", None, Format::Jsonl, "jsonl"),
            (b"PK\x03\x04rest", None, Format::Xlsx, "xlsx"),
            (b"Email\ta\n", Some(Format::Tsv), Format::Tsv, "tsv"),
            (b"{\"a\":1}\n", Some(Format::Csv), Format::Csv, "csv"),
        ];
        for (bytes, flag, format, extension) in cases {
            let spooled = spool_from(&mut &bytes[..], flag).unwrap();
            assert_eq!(spooled.format, format);
            assert_eq!(
                spooled.path.extension().unwrap().to_str().unwrap(),
                extension
            );
            assert_eq!(std::fs::read(&spooled.path).unwrap(), bytes);
        }
    }

    #[test]
    fn the_copy_is_removed_when_dropped() {
        let spooled = spool_from(&mut &b"Email\n"[..], None).unwrap();
        let path = spooled.path.to_path_buf();
        assert!(path.exists());
        drop(spooled);
        assert!(!path.exists());
    }
}
