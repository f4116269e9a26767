//! Bench data made in setup with a fixed seed: people as HR exports hold them, with phones in
//! mixed national and E.164 formats, countries written as names or codes, and roles.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;

/// One person's cells: first, last, email, phone, role, country.
pub fn person(i: usize, rng: &mut fastrand::Rng) -> [String; 6] {
    let d = |rng: &mut fastrand::Rng, n: usize| -> String {
        (0..n).map(|_| char::from(b'0' + rng.u8(0..10))).collect()
    };
    let area = [415, 212, 646, 312, 617, 206][rng.usize(0..6)];
    let (phone, country) = match rng.u8(0..10) {
        0 => (
            format!("+1 {area} {} {}", rng.u16(200..1000), d(rng, 4)),
            "USA",
        ),
        1 => (
            format!("({area}) {}-{}", rng.u16(200..1000), d(rng, 4)),
            "United States",
        ),
        2 => (format!("+44 20 7946 {}", d(rng, 4)), "United Kingdom"),
        3 => (
            format!("07{}{} {}", rng.u8(1..4), d(rng, 2), d(rng, 6)),
            "UK",
        ),
        4 => (format!("+49 30 {}", d(rng, 8)), "Deutschland"),
        5 => (format!("030 {}", d(rng, 8)), "DE"),
        6 => (
            format!(
                "+33 6 1{} {} {} {}",
                d(rng, 1),
                d(rng, 2),
                d(rng, 2),
                d(rng, 2)
            ),
            "France",
        ),
        7 => (
            format!("01 {} {} {} {}", d(rng, 2), d(rng, 2), d(rng, 2), d(rng, 2)),
            "FR",
        ),
        8 => (format!("0034 612 {} {}", d(rng, 3), d(rng, 3)), "España"),
        _ => (format!("+1{area}{}{}", rng.u16(200..1000), d(rng, 4)), "US"),
    };
    let role = ["user", "Member", "Org Admin", ""][rng.usize(0..4)];
    [
        format!("First{i}"),
        format!("Last{i}"),
        format!("Person.{i}@Example.com"),
        phone,
        role.to_string(),
        country.to_string(),
    ]
}

pub const HEADERS: [&str; 6] = [
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Role",
    "Country",
];

pub fn people_csv(n: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = HEADERS.join(",");
    text.push('\n');
    for i in 0..n {
        let p = person(i, &mut rng);
        let _ = writeln!(text, "{}", p.join(","));
    }
    text
}

/// [`people_csv`] with its rows in an order of `seed`'s (the header first): an export
/// sorted by anything but the identity, as most are.
pub fn people_csv_shuffled(n: usize, seed: u64) -> String {
    let text = people_csv(n, seed);
    let mut lines: Vec<&str> = text.lines().collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut lines[1..]);
    lines.join("\n") + "\n"
}

pub fn people_jsonl(n: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut text = String::new();
    for i in 0..n {
        let [first, last, email, phone, role, country] = person(i, &mut rng);
        let _ = writeln!(
            text,
            r#"{{"firstName":"{first}","lastName":"{last}","email":"{email}","phone":"{phone}","role":"{role}","country":"{country}"}}"#,
        );
    }
    text
}

/// A minimal XLSX workbook (one sheet, inline strings, phones of digits stored as numbers as
/// Excel does) written with `zip`, so benches need no spreadsheet writer.
pub fn write_people_xlsx(path: &std::path::Path, n: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    let parts: [(&str, &str); 4] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="People" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
    ];
    for (name, text) in parts {
        zip.start_file(name, opts).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    let cell = |out: &mut String, value: &str| {
        if !value.is_empty()
            && value.len() < 16
            && value.bytes().all(|b| b.is_ascii_digit())
            && !value.starts_with('0')
        {
            let _ = write!(out, "<c><v>{value}</v></c>");
        } else {
            let _ = write!(out, r#"<c t="inlineStr"><is><t>{value}</t></is></c>"#);
        }
    };
    sheet.push_str("<row>");
    for h in HEADERS {
        cell(&mut sheet, h);
    }
    sheet.push_str("</row>");
    for i in 0..n {
        sheet.push_str("<row>");
        for value in person(i, &mut rng) {
            cell(&mut sheet, &value);
        }
        sheet.push_str("</row>");
        if sheet.len() > 1 << 20 {
            zip.write_all(sheet.as_bytes()).unwrap();
            sheet.clear();
        }
    }
    sheet.push_str("</sheetData></worksheet>");
    zip.write_all(sheet.as_bytes()).unwrap();
    zip.finish().unwrap();
}
