//! Reading: CSV, JSONL and XLSX records per second.

mod data;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roster::input::{self, Format, Record};

const ROWS: usize = 100_000;

fn read_all(path: &std::path::Path, format: Format) -> u64 {
    let mut source = input::open(path, Some(format)).unwrap();
    let mut record = Record::default();
    let mut n = 0;
    while source.read_record(&mut record).unwrap() {
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, data::people_csv(ROWS, 1)).unwrap();
    let jsonl = dir.path().join("people.jsonl");
    std::fs::write(&jsonl, data::people_jsonl(ROWS, 1)).unwrap();
    let xlsx = dir.path().join("people.xlsx");
    data::write_people_xlsx(&xlsx, ROWS, 1);

    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("csv", |b| {
        b.iter(|| assert_eq!(read_all(&csv, Format::Csv), ROWS as u64))
    });
    group.bench_function("jsonl", |b| {
        b.iter(|| assert_eq!(read_all(&jsonl, Format::Jsonl), ROWS as u64))
    });
    group.bench_function("xlsx", |b| {
        b.iter(|| assert_eq!(read_all(&xlsx, Format::Xlsx), ROWS as u64))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
