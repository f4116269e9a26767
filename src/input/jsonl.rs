//! JSON Lines: one object per line, nested objects flattened to `a.b` columns.
//!
//! The header list is the union of keys in the order they first appear. It is gathered by a
//! first streaming pass over the file, so the records that follow line up with a fixed header
//! list (as CSV's do) and memory stays flat however long the file is.

use super::{InputError, Record, RecordSource, open_text};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A JSONL file.
pub struct JsonlSource {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    headers: Vec<String>,
    index: HashMap<String, usize>,
    line: Vec<u8>,
    line_no: u64,
    read: super::BytesRead,
}

impl JsonlSource {
    /// Opens `path`, gathering its keys in a first pass.
    pub fn open(path: &Path) -> Result<JsonlSource, InputError> {
        let mut headers = Vec::new();
        let mut index = HashMap::new();
        let (mut reader, _) = open_text(path)?;
        let mut line = Vec::new();
        let mut flat = Vec::new();
        loop {
            line.clear();
            if read_line(&mut reader, &mut line, path)? == 0 {
                break;
            }
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(line.trim_ascii()) {
                flat.clear();
                flatten("", map, &mut flat);
                for (key, _) in flat.drain(..) {
                    if !index.contains_key(&key) {
                        index.insert(key.clone(), headers.len());
                        headers.push(key);
                    }
                }
            }
        }
        if headers.is_empty() {
            return Err(InputError::shape(path, "no JSON object found on any line"));
        }
        let (reader, read) = open_text(path)?;
        Ok(JsonlSource {
            path: path.to_path_buf(),
            reader,
            read,
            headers,
            index,
            line,
            line_no: 0,
        })
    }
}

impl RecordSource for JsonlSource {
    fn headers(&self) -> &[String] {
        &self.headers
    }

    fn dialect(&self) -> super::Dialect {
        super::Dialect::Jsonl
    }

    fn fraction_read(&self) -> Option<f64> {
        self.read.fraction()
    }

    fn read_record(&mut self, record: &mut Record) -> Result<bool, InputError> {
        loop {
            self.line.clear();
            if read_line(&mut self.reader, &mut self.line, &self.path)? == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            let bytes = self.line.trim_ascii();
            if bytes.is_empty() {
                continue;
            }
            record.row = self.line_no;
            record.defect = None;
            record.cells.clear();
            record.cells.resize(self.headers.len(), String::new());
            // A line that is not UTF-8 is this line's defect; the next line is its own.
            let Ok(text) = std::str::from_utf8(bytes) else {
                record.defect = Some("the line is not valid UTF-8 text (a damaged byte)".into());
                return Ok(true);
            };
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => {
                    let mut flat = Vec::with_capacity(self.headers.len());
                    flatten("", map, &mut flat);
                    for (key, value) in flat {
                        if let Some(&i) = self.index.get(&key) {
                            record.cells[i] = value;
                        }
                    }
                }
                Ok(_) => record.defect = Some("line is not a JSON object".to_string()),
                Err(e) => record.defect = Some(format!("line is not valid JSON: {e}")),
            }
            return Ok(true);
        }
    }
}

/// Reads one line's bytes (UTF-8 is checked by the caller, so a bad byte costs only its
/// own line).
fn read_line(
    reader: &mut BufReader<Box<dyn Read + Send>>,
    line: &mut Vec<u8>,
    path: &Path,
) -> Result<usize, InputError> {
    reader
        .read_until(b'\n', line)
        .map_err(|e| InputError::io(path, e))
}

/// Flattens nested objects into `parent.child` keys; scalars become their text, `null`
/// becomes empty, arrays stay JSON text.
fn flatten(prefix: &str, map: Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in map {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&key, inner, out),
            Value::Null => out.push((key, String::new())),
            Value::String(s) => out.push((key, s)),
            Value::Bool(b) => out.push((key, b.to_string())),
            Value::Number(n) => out.push((key, n.to_string())),
            array @ Value::Array(_) => out.push((key, array.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_all;
    use std::io::Write;

    #[test]
    fn a_line_with_a_bad_byte_is_its_own_defect_and_the_next_line_is_read() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(
            b"{\"email\":\"a@x.io\"}\n{\"email\":\"b\xff@x.io\"}\n{\"email\":\"c@x.io\"}\n",
        )
        .unwrap();
        let mut s = JsonlSource::open(f.path()).unwrap();
        let recs = read_all(&mut s).unwrap();
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert_eq!(recs[1].row, 2);
        assert!(recs[1].defect.as_deref().unwrap().contains("UTF-8"));
        assert_eq!((recs[2].row, recs[2].cells[0].as_str()), (3, "c@x.io"));
    }

    #[test]
    fn keys_are_unioned_and_nested_objects_flattened() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, r#"{{"email":"a@x.io","name":{{"first":"A"}}}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"email":"b@x.io","phone":null,"age":41}}"#).unwrap();
        writeln!(f, "not json").unwrap();
        let mut s = JsonlSource::open(f.path()).unwrap();
        assert_eq!(s.headers(), ["email", "name.first", "phone", "age"]);
        let recs = read_all(&mut s).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[0].row, recs[0].cells[1].as_str()), (1, "A"));
        assert_eq!(
            (
                recs[1].row,
                recs[1].cells[3].as_str(),
                recs[1].cells[2].as_str()
            ),
            (3, "41", "")
        );
        assert_eq!(recs[2].row, 4);
        assert!(
            recs[2]
                .defect
                .as_deref()
                .unwrap()
                .starts_with("line is not valid JSON")
        );
    }
}
