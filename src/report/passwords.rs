//! The password file of `--generate-passwords`: one `identity,password,status` line per
//! person roster created — `created` when an answer of the target's confirmed it received
//! that password, `unconfirmed` when it cannot be known (the target said the person exists
//! after an attempt of roster's whose answer was lost).

use crate::model::cells::neutralise;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether the target is known to hold the password a line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStatus {
    /// A 2xx answer to the request that carried it.
    Created,
    /// The target said the person exists after an attempt whose answer was lost.
    Unconfirmed,
}

impl PasswordStatus {
    fn word(self) -> &'static str {
        match self {
            PasswordStatus::Created => "created",
            PasswordStatus::Unconfirmed => "unconfirmed",
        }
    }
}

/// `--generate-passwords FILE`: one `identity,password,status` line per person created, in a
/// file only its owner can read (mode 0600 on Unix, never through a symbolic link). Lines are
/// appended, so re-runs add to it; cells are neutralised against CSV injection.
pub struct PasswordFile {
    path: PathBuf,
    out: Mutex<std::fs::File>,
    /// A regular file (not a device or a pipe): it can be synced.
    regular: bool,
}

impl PasswordFile {
    /// Header of a new file.
    pub const HEADER: &'static str = "identity,password,status\n";

    /// Opens (or creates) the file for appending.
    pub fn open(path: &Path) -> std::io::Result<PasswordFile> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(crate::files::NOFOLLOW);
        }
        let mut file = options.open(path)?;
        let meta = file.metadata()?;
        // Only a regular file is the password file's own: a device or a pipe (a vault
        // loader's FIFO) keeps its mode and gets no header, having no start.
        if meta.is_file() {
            #[cfg(unix)]
            {
                // An existing file keeps its mode on open: tighten it.
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            if meta.len() == 0 {
                file.write_all(Self::HEADER.as_bytes())?;
            }
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
            out: Mutex::new(file),
            regular: meta.is_file(),
        })
    }

    /// Where the passwords go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line in a single write, so a killed process loses none it wrote.
    pub fn write(
        &self,
        identity: &str,
        password: &str,
        status: PasswordStatus,
    ) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(64);
        {
            let mut writer = csv::Writer::from_writer(&mut line);
            writer
                .write_record([
                    neutralise(identity).as_ref(),
                    neutralise(password).as_ref(),
                    status.word(),
                ])
                .map_err(std::io::Error::from)?;
            writer.flush()?;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&line)
    }

    /// Syncs every line to disk (a device or a pipe has nothing to sync).
    pub fn sync(&self) -> std::io::Result<()> {
        if !self.regular {
            return Ok(());
        }
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_has_a_header_neutralised_cells_and_a_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        let file = PasswordFile::open(&path).unwrap();
        file.write("a@x.io", "Abc", PasswordStatus::Created)
            .unwrap();
        file.write("=cmd|'/ccalc'!a0@x.io", "Def", PasswordStatus::Unconfirmed)
            .unwrap();
        drop(file);
        PasswordFile::open(&path).unwrap(); // no second header
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "identity,password,status\na@x.io,Abc,created\n'=cmd|'/ccalc'!a0@x.io,Def,unconfirmed\n"
        );
    }
}
