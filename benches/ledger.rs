//! Ledger: identities claimed and results recorded per second, in batched transactions.
//! With `ROSTER_BENCH_POSTGRES=postgres://USER@HOST:PORT/DB` (password in `PGPASSWORD`), the
//! PostgreSQL ledger too, through the same `Ledger` calls the writer thread makes.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use roster::ledger::postgres::{PgLocation, PostgresLedger};
use roster::ledger::{Ledger, RowWork, SqliteLedger};
use roster::model::{Outcome, Person, Submission, UserFields};

const ROWS: usize = 20_000;
const BATCH: usize = 512;
/// Users claimed a call by an import at the default concurrency (16 x 4).
const CLAIM_BATCH: usize = 64;

fn user(i: usize) -> Person {
    Person {
        row: i as u64 + 2,
        identity: format!("person{i}@example.com"),
        fields: UserFields::default(),
        body: Vec::new(),
        content_hash: i as u64,
        cells: Vec::new(),
        generated_password: false,
        remote_id: None,
        uncertain: false,
        warnings: Vec::new(),
    }
}

/// `u`'s submission, answered 201.
fn created(u: Person) -> Submission {
    Submission {
        outcome: Outcome::Created,
        remote_id: Some("id".into()),
        status: Some(201),
        attempts: 1,
        first_attempt_ms: Some(1),
        last_attempt_ms: Some(1),
        ..Submission::new(u)
    }
}

/// An empty SQLite ledger in a directory of its own (removed when the directory is dropped).
fn fresh_ledger() -> (tempfile::TempDir, SqliteLedger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(&dir.path().join("l.sqlite"), "bench", "bench.csv").unwrap();
    (dir, ledger)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("claim_and_record", |b| {
        b.iter_batched(
            fresh_ledger,
            |(_dir, mut ledger)| {
                let mut reports = Vec::new();
                for start in (0..ROWS).step_by(BATCH) {
                    let users: Vec<Person> = (start..(start + BATCH).min(ROWS)).map(user).collect();
                    let claimed = ledger
                        .transaction(|l| l.claim(users, &mut reports))
                        .unwrap();
                    let results = claimed.into_iter().map(created);
                    ledger
                        .transaction(|l| l.record_submissions(results, &mut reports))
                        .unwrap();
                }
                assert_eq!(reports.len(), ROWS);
            },
            BatchSize::PerIteration,
        )
    });
    // The claims alone, as an import of new people makes them: a send-ahead's worth (4 x
    // the default 16 workers) a call, one transaction each.
    group.bench_function("claim_new", |b| {
        b.iter_batched(
            || (fresh_ledger(), (0..ROWS).map(user).collect::<Vec<Person>>()),
            |((_dir, mut ledger), users)| {
                let mut reports = Vec::new();
                let mut users = users.into_iter();
                let mut claimed = 0;
                loop {
                    let batch: Vec<Person> = users.by_ref().take(CLAIM_BATCH).collect();
                    if batch.is_empty() {
                        break;
                    }
                    claimed += ledger
                        .transaction(|l| l.claim(batch, &mut reports))
                        .unwrap()
                        .len();
                }
                assert_eq!(claimed, ROWS);
            },
            BatchSize::PerIteration,
        )
    });
    if let Ok(url) = std::env::var("ROSTER_BENCH_POSTGRES") {
        let location = PgLocation::parse(&url).expect("ROSTER_BENCH_POSTGRES");
        let mut run = 0;
        group.bench_function("claim_and_record_postgres", |b| {
            b.iter_batched(
                || {
                    // A target of its own per iteration: every identity is new to it.
                    run += 1;
                    let target = format!("bench-{}-{run}", std::process::id());
                    PostgresLedger::open(&location, &target, "bench.csv", true).unwrap()
                },
                |mut ledger| {
                    let mut reports = Vec::new();
                    for start in (0..ROWS).step_by(BATCH) {
                        let users: Vec<Person> =
                            (start..(start + BATCH).min(ROWS)).map(user).collect();
                        let claimed = ledger
                            .write_rows(
                                vec![RowWork::Claim {
                                    users,
                                    limit: usize::MAX,
                                }],
                                &mut reports,
                            )
                            .unwrap();
                        let results = claimed
                            .into_iter()
                            .flat_map(|(sent, _)| sent)
                            .map(created)
                            .collect();
                        ledger.write_results(results, &mut reports).unwrap();
                    }
                    assert_eq!(reports.len(), ROWS);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
