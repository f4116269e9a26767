//! Where a run writes, checked before anything is written.
//!
//! No output may be the input, the ledger or one of its companion files (WAL, shared memory,
//! journal, lock, password key), or another output of the same run: any name for the same
//! file counts (a symbolic link, a hard link, `./x` and `x`). And an error file that the user
//! changed since roster wrote it — the file the README tells them to edit — is never
//! overwritten or removed: roster remembers the length and hash of what it wrote (in the
//! ledger), and writes beside a changed file instead. Nor is an output written through a
//! symbolic link (see [`crate::files`]).

use crate::error::RunError;
use std::path::{Path, PathBuf};

/// The files that belong to the ledger at `ledger`.
pub fn ledger_files(ledger: &Path) -> Vec<PathBuf> {
    let mut files = vec![ledger.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal", ".lock", ".key"] {
        let mut name = ledger.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files.push(crate::ledger::lock::LedgerLock::path_for(ledger));
    files
}

/// Whether `a` and `b` name the same file: the same canonical path (for a file that does
/// not exist yet, its directory's), or the same device and inode.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = crate::ledger::lock::canonical;
    if canonical(a) == canonical(b) {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    false
}

/// Refuses (exit 2, nothing written) an output that is the input, a file of the ledger, or
/// another output. `outputs` pairs each path with the flag that named it.
pub fn check(
    input: &Path,
    ledger: Option<&Path>,
    outputs: &[(&str, &Path)],
) -> Result<(), RunError> {
    let mut protected: Vec<(String, PathBuf)> =
        vec![("the input file".to_string(), input.to_path_buf())];
    if let Some(ledger) = ledger {
        for file in ledger_files(ledger) {
            protected.push((format!("the ledger's `{}`", file.display()), file));
        }
    }
    for (i, (flag, path)) in outputs.iter().enumerate() {
        if crate::files::is_symlink(path) {
            return Err(RunError::Usage(format!(
                "{flag} `{}` is a symbolic link: roster does not write through one (nothing was written; name the file itself)",
                path.display()
            )));
        }
        for (what, other) in &protected {
            if same_file(path, other) {
                return Err(RunError::Usage(format!(
                    "{flag} `{}` is {what}: writing it would destroy it (nothing was written; choose another path)",
                    path.display()
                )));
            }
        }
        for (other_flag, other) in &outputs[..i] {
            if same_file(path, other) {
                return Err(RunError::Usage(format!(
                    "{flag} and {other_flag} are the same file `{}` (nothing was written; choose two paths)",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// The length and a hash of a file's bytes, `None` if it does not exist.
pub fn fingerprint(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
    }
    Ok(Some((length, hasher.digest())))
}

/// What roster may do with an existing error file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing there, or roster's own file unchanged: write (or remove) it.
    Free,
    /// The user changed it (or it is not roster's): leave it, write here instead.
    Changed {
        /// Where this run's error file goes.
        instead: PathBuf,
    },
}

/// Decides about the error file at `path`, given what the ledger recorded of it.
pub fn existing_errors_file(path: &Path, recorded: Option<(u64, u64)>) -> Existing {
    let now = match fingerprint(path) {
        Ok(Some(now)) => now,
        // Missing, or unreadable (writing will say why).
        _ => return Existing::Free,
    };
    let ours = match recorded {
        Some(written) => written == now,
        // Not recorded (an older roster, a validation, another ledger): roster's own only if
        // it looks like one of its error files.
        None => looks_like_an_error_file(path),
    };
    if ours {
        return Existing::Free;
    }
    Existing::Changed {
        instead: beside(path),
    }
}

/// Whether the file starts like an error file roster writes (`_row`, `_status`, `_errors`
/// columns, or JSONL objects with `row` and `status`).
fn looks_like_an_error_file(path: &Path) -> bool {
    use std::io::{BufRead, Read};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = Vec::new();
    let read = std::io::BufReader::new(file)
        .take(64 * 1024)
        .read_until(b'\n', &mut first);
    if read.is_err() {
        return false;
    }
    let first = String::from_utf8_lossy(&first);
    let csv = crate::model::cells::META_COLUMNS
        .iter()
        .all(|m| first.contains(m));
    let jsonl = first.trim_start().starts_with('{')
        && first.contains("\"row\"")
        && first.contains("\"status\"");
    csv || jsonl
}

/// A free name beside `path`: `people.errors.csv` → `people.errors.2.csv`, `.3`…
fn beside(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|n| path.with_file_name(format!("{stem}.{n}{ext}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_may_not_be_the_input_the_ledger_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("people.csv");
        std::fs::write(&input, "email\n").unwrap();
        let ledger = dir.path().join("l.sqlite");
        let report = dir.path().join("r.html");
        assert!(check(&input, Some(&ledger), &[("--report", &report)]).is_ok());
        for bad in [
            input.clone(),
            ledger.clone(),
            dir.path().join("l.sqlite-wal"),
            dir.path().join("l.sqlite.lock"),
            dir.path().join("l.sqlite.key"),
            dir.path().join(".").join("people.csv"),
        ] {
            let e = check(&input, Some(&ledger), &[("--report", &bad)]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{}", bad.display());
        }
        let e = check(
            &input,
            None,
            &[("--errors", &report), ("--report", &report)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("the same file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn links_to_the_input_are_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("people.csv");
        std::fs::write(&input, "email\n").unwrap();
        let soft = dir.path().join("soft.csv");
        std::os::unix::fs::symlink(&input, &soft).unwrap();
        let hard = dir.path().join("hard.csv");
        std::fs::hard_link(&input, &hard).unwrap();
        for link in [soft, hard] {
            assert!(check(&input, None, &[("--errors", &link)]).is_err());
        }
    }

    #[test]
    fn a_changed_error_file_is_left_and_the_new_one_goes_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.errors.csv");
        assert_eq!(existing_errors_file(&path, None), Existing::Free);
        std::fs::write(&path, "Email,_row,_status,_errors\na,2,invalid,x\n").unwrap();
        let written = fingerprint(&path).unwrap();
        assert_eq!(existing_errors_file(&path, written), Existing::Free);
        assert_eq!(
            existing_errors_file(&path, None),
            Existing::Free,
            "looks like ours"
        );
        std::fs::write(&path, "Email,_row,_status,_errors\nfixed,2,invalid,x\n").unwrap();
        assert_eq!(
            existing_errors_file(&path, written),
            Existing::Changed {
                instead: dir.path().join("people.errors.2.csv")
            }
        );
        std::fs::write(dir.path().join("notes.csv"), "my,own\n").unwrap();
        assert!(matches!(
            existing_errors_file(&dir.path().join("notes.csv"), None),
            Existing::Changed { .. }
        ));
    }
}
