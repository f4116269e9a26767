//! Strong random passwords for `--generate-passwords`, from the operating system's CSPRNG.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Characters a generated password is drawn from: no look-alikes (`0O1lI`), and symbols that
/// survive CSV, shells and form encoding without quoting trouble.
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"!#%+-.:=?@^_~";

/// Length of a generated password (about 120 bits of entropy).
pub const LENGTH: usize = 20;

/// A new random password with at least one lower-case letter, upper-case letter, digit and
/// symbol, as most password policies demand.
pub fn generate() -> String {
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    loop {
        let mut bytes = [0u8; LENGTH * 2];
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % all.len();
        let password: String = bytes
            .iter()
            .filter(|&&b| (b as usize) < limit)
            .map(|&b| all[b as usize % all.len()] as char)
            .take(LENGTH)
            .collect();
        let has = |set: &[u8]| password.bytes().any(|b| set.contains(&b));
        // A letter first: a cell starting with `=`, `+`, `-` or `@` is a formula to Excel.
        let letter_first = password
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic());
        if password.len() == LENGTH
            && letter_first
            && has(LOWER)
            && has(UPPER)
            && has(DIGITS)
            && has(SYMBOLS)
        {
            return password;
        }
    }
}

/// `--generate-passwords FILE`: one `identity,password` line per created user, in a file only
/// its owner can read (mode 0600 on Unix). Lines are appended, so re-runs add to it.
pub struct PasswordFile {
    path: PathBuf,
    out: Mutex<std::fs::File>,
}

impl PasswordFile {
    /// Opens (or creates) the file for appending.
    pub fn open(path: &Path) -> std::io::Result<PasswordFile> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        #[cfg(unix)]
        {
            // An existing file keeps its mode on open: tighten it.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
            out: Mutex::new(file),
        })
    }

    /// Where the passwords go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line, written through at once so a crash loses none.
    pub fn write(&self, identity: &str, password: &str) -> std::io::Result<()> {
        let line = format!("{identity},{password}\n");
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(line.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), LENGTH);
        assert_ne!(a, b);
        assert!(a.bytes().any(|c| c.is_ascii_digit()));
        assert!(a.bytes().any(|c| SYMBOLS.contains(&c)));
    }
}
