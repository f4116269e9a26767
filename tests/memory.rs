//! Memory stays bounded whatever the input and the server do (#14, item 3 and the fault
//! suite): validating 400,000 rows that all lack a last name, and a server streaming endless
//! bodies. This binary starts no other process, so the peak resident size of its children
//! (`RUSAGE_CHILDREN`, the largest of them) is that of these runs.

#[macro_use]
mod support;

use support::WorkDir;
use support::hostile::{Hostile, Reply};

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

#[cfg(unix)]
#[test]
fn an_endless_body_costs_bounded_memory() {
    let server = Hostile::start(|_| Reply::EndlessBody { status: 200 });
    let work = WorkDir::new();
    work.write("people.csv", &support::people_csv(20));
    let run = work.import_to(
        &server.url(),
        "people.csv",
        &["--max-retries", "1", "--concurrency", "4", "--quiet"],
    );
    assert!([3, 5].contains(&run.code()), "{}", run.context());
    let peak_mb = children_peak_kb() / 1024;
    assert!(
        peak_mb <= 100,
        "endless bodies peaked at {peak_mb} MB (bound: 100 MB)"
    );
}

#[cfg(unix)]
#[test]
fn a_quoted_field_of_newlines_costs_memory_in_proportion_to_its_bytes() {
    // #21 item 7: the line index kept 16 bytes per line break (a 50 MB field of newlines
    // cost 820 MB). 8 MB of newlines in one field, then a row that is fine.
    let work = WorkDir::new();
    let mut text = String::from("First Name,Last Name,Email\n\"");
    text.push_str(&"\n".repeat(8 * 1024 * 1024));
    text.push_str("\",Lee,ann@example.com\nBo,Ray,bo@example.com\n");
    work.write("people.csv", &text);
    drop(text);
    let run = work.roster(&[
        "validate",
        "people.csv",
        "--set",
        "role=user",
        "--json",
        "--quiet",
    ]);
    assert_eq!(run.json()["rows"], 2, "{}", run.context());
    let peak_mb = children_peak_kb() / 1024;
    assert!(
        peak_mb <= 100,
        "8 MB of newlines in one field peaked at {peak_mb} MB (bound: 100 MB)"
    );
}
