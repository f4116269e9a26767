//! End to end: an import against the in-process sandbox with the rate limit off.

mod data;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roster::model::Stop;
use roster::pipeline::{self, ImportSettings, RunMode};
use roster::prepare::mapping::MappingOptions;
use roster::report::ProgressMode;
use roster::submit::SubmitSettings;
use roster::targets::{self, TargetSpec};
use roster_sandbox::{Sandbox, SandboxConfig};
use std::sync::Arc;

const ROWS: usize = 5_000;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    std::fs::write(&input, data::people_csv(ROWS, 3)).unwrap();

    let mut group = c.benchmark_group("import");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("sandbox_rate_off", |b| {
        b.iter_batched(
            || {
                // A fresh server and ledger each time, so every row is really sent.
                let sandbox = runtime
                    .block_on(Sandbox::start(SandboxConfig::default(), 0))
                    .unwrap();
                let ledger = tempfile::NamedTempFile::new_in(dir.path())
                    .unwrap()
                    .into_temp_path();
                (sandbox, ledger)
            },
            |(sandbox, ledger)| {
                let spec = TargetSpec {
                    name: "sandbox".into(),
                    base_url: Some(sandbox.base_url()),
                    ..TargetSpec::default()
                };
                let target = Arc::new(targets::build(&spec).unwrap());
                let settings = ImportSettings {
                    input: input.clone(),
                    read: Default::default(),
                    mapping: MappingOptions::default(),
                    conventions: Default::default(),
                    ledger: roster::ledger::LedgerLocation::Sqlite(ledger.to_path_buf()),
                    retry_rejected: false,
                    errors: dir.path().join("errors.csv"),
                    errors_format: Default::default(),
                    keep_secrets: false,
                    show_requests: 0,
                    report: None,
                    submit: SubmitSettings {
                        concurrency: 64,
                        start_concurrency: 64,
                        ..SubmitSettings::default()
                    },
                    mode: RunMode::Send,
                    progress: ProgressMode::Quiet,
                    generate_passwords: None,
                    stop_rules: Default::default(),
                    drop_invalid: Vec::new(),
                    stdin: None,
                    ledger_lock: None,
                    pg_lock_held: false,
                    results: None,
                    pace: String::new(),
                };
                let result = runtime
                    .block_on(pipeline::run(&settings, target, Arc::new(Stop::default())))
                    .unwrap();
                assert_eq!(result.summary.created, ROWS as u64);
                drop(sandbox);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
