//! Transcoding at the edge: whatever the file's encoding, everything after this reads UTF-8.
//!
//! A byte-order mark decides first (UTF-8, UTF-16 LE/BE); then bytes that are UTF-8 stay as
//! they are (a stray invalid byte in one row is that row's defect, not a reason to re-read the
//! whole file in another encoding); otherwise chardetng guesses (Windows-1252 for most
//! European Excel exports). `--encoding` overrides all of it.

use super::InputError;
use encoding_rs::{Encoding, UTF_8};
use encoding_rs_io::DecodeReaderBytesBuilder;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

/// How much of the file is looked at to decide its encoding.
const SAMPLE: usize = 64 * 1024;

/// A reader of UTF-8 text, and the encoding it was decoded from.
pub struct Decoded {
    /// UTF-8 bytes (a UTF-8 file's own bytes, invalid ones included).
    pub reader: Box<dyn Read + Send>,
    /// The source encoding.
    pub encoding: &'static Encoding,
    /// The file starts with a byte-order mark.
    pub bom: bool,
    /// How much of the file has been read: for progress.
    pub read: super::BytesRead,
}

/// Counts the bytes read through it into a shared counter.
struct Counting<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Parses an `--encoding` label (`utf-8`, `utf-16le`, `windows-1252`, `latin1`…).
pub fn encoding_for_label(label: &str) -> Result<&'static Encoding, String> {
    Encoding::for_label(label.trim().as_bytes())
        .ok_or_else(|| format!("unknown encoding `{label}` (e.g. utf-8, utf-16le, windows-1252)"))
}

/// Opens `path` decoded to UTF-8.
pub fn open(path: &Path, forced: Option<&'static Encoding>) -> Result<Decoded, InputError> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = super::BytesRead::new(size);
    let mut file = Counting {
        inner: file,
        read: read.counter(),
    };
    let mut sample = Vec::with_capacity(SAMPLE);
    (&mut file)
        .take(SAMPLE as u64)
        .read_to_end(&mut sample)
        .map_err(|e| InputError::io(path, e))?;
    let bom = Encoding::for_bom(&sample);
    let encoding = forced
        .or(bom.map(|(e, _)| e))
        .unwrap_or_else(|| guess(&sample));
    let whole = Cursor::new(sample).chain(file);
    if encoding == UTF_8 {
        let mut whole: Box<dyn Read + Send> = Box::new(whole);
        if matches!(bom, Some((e, _)) if e == UTF_8) {
            let mut skip = [0u8; 3];
            whole
                .read_exact(&mut skip)
                .map_err(|e| InputError::io(path, e))?;
        }
        return Ok(Decoded {
            reader: whole,
            encoding,
            bom: bom.is_some(),
            read,
        });
    }
    let reader = DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .build(whole);
    Ok(Decoded {
        reader: Box::new(reader),
        encoding,
        bom: bom.is_some(),
        read,
    })
}

/// UTF-16 without a byte-order mark, told by its zero bytes: text mostly in Latin script has
/// one zero in every other byte (odd positions for little-endian, even for big-endian).
fn utf16_without_bom(sample: &[u8]) -> Option<&'static Encoding> {
    let pairs = sample.len() / 2;
    if pairs < 4 {
        return None;
    }
    let zeros_at = |parity: usize| {
        sample
            .chunks_exact(2)
            .filter(|pair| pair[parity] == 0 && pair[1 - parity] != 0)
            .count()
    };
    let (even, odd) = (zeros_at(0), zeros_at(1));
    match (even * 10 > pairs * 3, odd * 10 > pairs * 3) {
        (false, true) if even * 20 < pairs => Some(encoding_rs::UTF_16LE),
        (true, false) if odd * 20 < pairs => Some(encoding_rs::UTF_16BE),
        _ => None,
    }
}

/// UTF-16 when its zero bytes say so; UTF-8 when the sample is UTF-8 (or mostly: more valid
/// multi-byte characters than invalid bytes); otherwise chardetng's guess.
fn guess(sample: &[u8]) -> &'static Encoding {
    if let Some(utf16) = utf16_without_bom(sample) {
        return utf16;
    }
    let (mut multibyte, mut invalid) = (0usize, 0usize);
    let mut chunks = sample.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        let last = chunks.peek().is_none();
        // A character cut by the end of the sample is not evidence against UTF-8.
        if !(last && sample.len() == SAMPLE) {
            invalid += chunk.invalid().len();
        }
    }
    if invalid == 0 || (multibyte > 0 && invalid <= multibyte) {
        return UTF_8;
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(sample, sample.len() < SAMPLE);
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn decode(bytes: &[u8], forced: Option<&'static Encoding>) -> (String, &'static str) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let mut decoded = open(f.path(), forced).unwrap();
        let mut out = Vec::new();
        decoded.reader.read_to_end(&mut out).unwrap();
        (
            String::from_utf8_lossy(&out).into_owned(),
            decoded.encoding.name(),
        )
    }

    #[test]
    fn boms_decide() {
        assert_eq!(
            decode(b"\xEF\xBB\xBFZo\xC3\xAB", None),
            ("Zoë".into(), "UTF-8")
        );
        assert_eq!(
            decode(b"\xFF\xFEZ\x00\xEB\x00", None),
            ("Zë".into(), "UTF-16LE")
        );
        assert_eq!(
            decode(b"\xFE\xFF\x00Z\x00\xEB", None),
            ("Zë".into(), "UTF-16BE")
        );
    }

    #[test]
    fn utf16_without_a_bom_is_told_by_its_zero_bytes() {
        let le: Vec<u8> = "Email,Name\r\nz@x.io,Zoë\r\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            decode(&le, None),
            ("Email,Name\r\nz@x.io,Zoë\r\n".into(), "UTF-16LE")
        );
        let be: Vec<u8> = "Email,Name\n"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert_eq!(decode(&be, None).1, "UTF-16BE");
        assert_eq!(decode(b"Email,Name\na@x.io,A\n", None).1, "UTF-8");
    }

    #[test]
    fn windows_1252_is_detected() {
        let text = b"Name;Stadt\nJos\xE9 M\xFCller;K\xF6ln\nRen\xE9e;Z\xFCrich\n";
        let (decoded, name) = decode(text, None);
        assert_eq!(name, "windows-1252");
        assert!(decoded.contains("José Müller;Köln"), "{decoded}");
    }

    #[test]
    fn utf8_with_one_stray_byte_stays_utf8() {
        let text = "Name\nZoë\nChloé\nRené\n"
            .as_bytes()
            .iter()
            .copied()
            .chain(*b"Ren\xE9\n")
            .collect::<Vec<u8>>();
        let (_, name) = decode(&text, None);
        assert_eq!(name, "UTF-8");
    }

    #[test]
    fn a_forced_encoding_wins_and_labels_parse() {
        let latin1 = encoding_for_label("latin1").unwrap();
        assert_eq!(decode(b"Ren\xE9", Some(latin1)).0, "René");
        assert!(encoding_for_label("klingon").is_err());
    }
}
