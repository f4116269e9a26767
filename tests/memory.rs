//! Memory stays bounded however many rows are refused (#14, item 3): validating 400,000 rows
//! that all lack a last name. The only test in this binary, so the peak resident size of its
//! children (`RUSAGE_CHILDREN`) is that of the one run it starts.

mod common;

use common::WorkDir;

/// Peak resident set size of the waited-for children, in kilobytes.
#[cfg(unix)]
fn children_peak_kb() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(ok, 0);
    usage.ru_maxrss
}

#[cfg(unix)]
#[test]
fn item03_refused_rows_are_validated_in_bounded_memory() {
    let work = WorkDir::new();
    let rows = 400_000;
    let mut text = String::with_capacity(rows * 48);
    text.push_str("First Name,Last Name,Email,Department\n");
    for i in 0..rows {
        text.push_str(&format!(
            "First{i},,person{i}@example.com,Engineering and operations\n"
        ));
    }
    work.write("people.csv", &text);
    drop(text);
    let run = work.roster(&["validate", "people.csv", "--json", "--quiet"]);
    run.expect_code(1);
    assert_eq!(run.json()["invalid"], rows as u64);
    let peak_mb = children_peak_kb() / 1024;
    assert!(
        peak_mb <= 100,
        "validating {rows} refused rows peaked at {peak_mb} MB (bound: 100 MB)"
    );
}
