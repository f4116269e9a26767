//! Bench data made in setup with a fixed seed: people with mixed phone formats and roles.
#![allow(dead_code)]

use std::fmt::Write;

pub fn people_csv(n: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::from("First Name,Last Name,Email,Phone,Role\n");
    for i in 0..n {
        let phone = match rng.u8(0..3) {
            0 => format!("+1 415 555 {:04}", rng.u16(0..10_000)),
            1 => format!("+44 20 7946 {:04}", rng.u16(0..10_000)),
            _ => format!("(415) 555-{:04}", rng.u16(0..10_000)),
        };
        let role = ["user", "Member", "Org Admin", ""][rng.usize(0..4)];
        let _ = writeln!(
            text,
            "First{i},Last{i},Person.{i}@Example.com,{phone},{role}"
        );
    }
    text
}

pub fn people_jsonl(n: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(
            text,
            r#"{{"firstName":"First{i}","lastName":"Last{i}","email":"person.{i}@example.com","phone":"+1415555{:04}"}}"#,
            rng.u16(0..10_000)
        );
    }
    text
}
