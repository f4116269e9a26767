//! Creating the files roster writes: never through a symbolic link, and private when they
//! can hold a secret.
//!
//! `O_NOFOLLOW` makes the open itself refuse a link at the final component, so a link put
//! there after the outputs were checked (or by another user in a shared directory) cannot
//! redirect the write onto a file of the user's.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Who may read a file roster writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// Personal data: created with the user's umask (the README says what these files hold).
    Personal,
    /// It can hold a secret (passwords, with `--keep-secrets`): owner-only, 0600.
    Secret,
}

/// Creates (or truncates) `path` for writing, refusing a symbolic link at `path`.
pub fn create(path: &Path, privacy: Privacy) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    open(path, &mut options, privacy)
}

/// Opens `path` with `options`, refusing a symbolic link at `path`; a file that can hold a
/// secret is made owner-only even when it existed with a wider mode.
pub fn open(path: &Path, options: &mut OpenOptions, privacy: Privacy) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(NOFOLLOW);
        if privacy == Privacy::Secret {
            options.mode(0o600);
        }
    }
    let file = options.open(path).map_err(|e| explain(path, e))?;
    #[cfg(unix)]
    if privacy == Privacy::Secret {
        use std::os::unix::fs::PermissionsExt;
        // A device or a FIFO (a vault loader's pipe) keeps its own mode.
        if file.metadata()?.is_file() {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

/// `O_NOFOLLOW` where the platform has it.
#[cfg(unix)]
pub const NOFOLLOW: i32 = libc::O_NOFOLLOW;

/// Whether `path` is a symbolic link (not what it points to).
pub fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The open's error, saying so when it was refused for being a symbolic link.
fn explain(path: &Path, e: io::Error) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP)
        || (e.kind() != io::ErrorKind::NotFound && is_symlink(path))
    {
        return io::Error::new(
            e.kind(),
            "it is a symbolic link, and roster does not write through one",
        );
    }
    let _ = path;
    e
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_link_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create(&link, Privacy::Personal).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn a_secret_file_is_owner_only_even_if_it_was_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = create(&path, Privacy::Secret).unwrap();
        file.write_all(b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
