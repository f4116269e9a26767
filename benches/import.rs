//! End to end: an import against the in-process sandbox with the rate limit off, and an
//! import's local stages (read, map, validate, claim) with the network left out: dry runs,
//! and an import into a real SQLite ledger whose every claimed person is answered in place.

mod data;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roster::model::{Outcome, Person, Stop, Submission};
use roster::pipeline::{self, Delivery, ImportSettings, RunMode};
use roster::submit::SubmitSettings;
use roster::targets::{self, TargetSpec};
use roster_sandbox::{Sandbox, SandboxConfig};
use std::sync::Arc;

const ROWS: usize = 5_000;

/// Rows of the local-stages run: enough that the run's fixed start (the phone metadata,
/// the threads) is a small part of it.
const LOCAL_ROWS: usize = 200_000;

/// The allocator the `roster` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Settings for a run of `input` with `ledger` in `mode`, 64 requests at a time.
fn settings(
    input: &std::path::Path,
    ledger: &std::path::Path,
    errors: std::path::PathBuf,
    mode: RunMode,
) -> ImportSettings {
    let ledger = roster::ledger::LedgerLocation::Sqlite(ledger.to_path_buf());
    let mut settings = ImportSettings::new(input.to_path_buf(), ledger, errors, mode);
    settings.submit = SubmitSettings {
        concurrency: 64,
        start_concurrency: 64,
        ..SubmitSettings::default()
    };
    settings
}

/// People of the local-stages file already imported into the ledger the second run reads.
const LOCAL_DONE: usize = LOCAL_ROWS / 5;

/// Read, map, validate and claim, end to end through `pipeline::run`, with nothing sent:
/// a dry run, which decides every row against the ledger as an import would and stops
/// short of the network. Once with no ledger file yet, once against a SQLite ledger in
/// which the file's first fifth is done (the dry run reads a copy of it, and keeps what it
/// would write in memory).
fn local_stages(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    let text = data::people_csv(LOCAL_ROWS, 5);
    std::fs::write(&input, &text).unwrap();
    let sandbox = runtime
        .block_on(Sandbox::start(SandboxConfig::default(), 0))
        .unwrap();
    let target = Arc::new(
        targets::build(&TargetSpec {
            name: "sandbox".into(),
            base_url: Some(sandbox.base_url()),
            ..TargetSpec::default()
        })
        .unwrap(),
    );
    let existing = dir.path().join("existing.sqlite");
    let first_fifth = dir.path().join("first-fifth.csv");
    let lines: Vec<&str> = text.lines().take(LOCAL_DONE + 1).collect();
    std::fs::write(&first_fifth, lines.join("\n") + "\n").unwrap();
    let import = settings(
        &first_fifth,
        &existing,
        dir.path().join("import.errors.csv"),
        RunMode::Send,
    );
    let imported = runtime
        .block_on(pipeline::run(
            &import,
            target.clone(),
            Arc::new(Stop::default()),
        ))
        .unwrap();
    assert_eq!(imported.summary.created, LOCAL_DONE as u64);

    let mut group = c.benchmark_group("local_stages");
    group.throughput(Throughput::Elements(LOCAL_ROWS as u64));
    group.sample_size(10);
    for (name, ledger) in [
        ("dry_run_no_ledger_yet", dir.path().join("none.sqlite")),
        ("dry_run_sqlite_ledger", existing),
    ] {
        let errors = dir.path().join(format!("{name}.errors.csv"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let settings = settings(&input, &ledger, errors.clone(), RunMode::DryRun);
                let result = runtime
                    .block_on(pipeline::run(
                        &settings,
                        target.clone(),
                        Arc::new(Stop::default()),
                    ))
                    .unwrap();
                let done = match name {
                    "dry_run_sqlite_ledger" => LOCAL_DONE,
                    _ => 0,
                };
                assert_eq!(result.summary.would_send, Some((LOCAL_ROWS - done) as u64));
                assert_eq!(result.summary.skipped, done as u64);
            })
        });
    }
    // A real import into a new SQLite ledger, every claim and result in it, with the
    // network stubbed: each claimed person is answered 201 at once. Once with the file in
    // key order, once shuffled (the ledger's b-tree then takes its rows all over).
    let shuffled = dir.path().join("people-shuffled.csv");
    std::fs::write(&shuffled, data::people_csv_shuffled(LOCAL_ROWS, 5)).unwrap();
    let mut run = 0;
    for (name, input) in [
        ("import_sqlite_network_stubbed", &input),
        ("import_sqlite_network_stubbed_shuffled", &shuffled),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    run += 1;
                    dir.path().join(format!("stubbed-{run}.sqlite"))
                },
                |ledger| {
                    let errors = dir.path().join("stubbed.errors.csv");
                    let settings = settings(input, &ledger, errors, RunMode::Send);
                    let result = runtime
                        .block_on(pipeline::run_delivering(
                            &settings,
                            target.clone(),
                            Arc::new(Stop::default()),
                            Delivery::Answered(created),
                        ))
                        .unwrap();
                    assert_eq!(result.summary.created, LOCAL_ROWS as u64);
                    std::fs::remove_file(&ledger).unwrap();
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The target's answer to every person in the stubbed import: 201, with an id.
fn created(user: Person) -> Submission {
    Submission {
        outcome: Outcome::Created,
        remote_id: Some(user.row.to_string()),
        status: Some(201),
        attempts: 1,
        ..Submission::new(user)
    }
}

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
                let settings = settings(
                    &input,
                    &ledger,
                    dir.path().join("errors.csv"),
                    RunMode::Send,
                );
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
    local_stages(c, &runtime);
}

criterion_group!(benches, bench);
criterion_main!(benches);
