//! Normalise + validate: rows per second through the rayon chunk stage.

mod data;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roster::input::{self, Format};
use roster::prepare::mapping::{Mapping, MappingOptions};
use roster::prepare::validate::{Checked, Validator};
use roster::targets::{self, TargetSpec};
use std::sync::Arc;

/// The allocator the `roster` binary uses, so the figure is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The measure: a 1M-row people file.
const ROWS: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    std::fs::write(&path, data::people_csv(ROWS, 2)).unwrap();
    let mut source = input::open(&path, Some(Format::Csv)).unwrap();
    let spec = TargetSpec {
        name: "sandbox".into(),
        ..TargetSpec::default()
    };
    let target = Arc::new(targets::build_schema(&spec).unwrap());
    let mapping = Mapping::resolve(
        source.headers(),
        &MappingOptions::default(),
        &target.schema.rules().required,
    )
    .unwrap();
    let records = input::read_all(source.as_mut()).unwrap();
    let validator = Validator::new(mapping, target);

    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("normalise_and_validate", |b| {
        // The pipeline hands the validator owned chunks of 1,024 records; so does the bench,
        // with the copying done in setup, outside the measurement.
        b.iter_batched(
            || records.chunks(1024).map(<[_]>::to_vec).collect::<Vec<_>>(),
            |chunks| {
                let mut ready = 0;
                for chunk in chunks {
                    ready += validator
                        .check_chunk(chunk)
                        .iter()
                        .filter(|c| matches!(c, Checked::Ready(_)))
                        .count();
                }
                assert_eq!(ready, ROWS);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
