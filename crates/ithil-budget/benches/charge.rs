//! Charges per second from 64 concurrent tasks: the group-commit writer on a real redb file
//! against one durable commit per charge (the baseline) and against charging off (an in-memory
//! check-and-add, no redb at all).
//!
//! Each iteration runs 64 tokio tasks that each make `PER_TASK` charges one after the other, so
//! at most 64 charges wait at any moment, as with 64 concurrent tool calls. The `_audit` variants
//! give every charge extra work that writes one row into another table, as the audit log will;
//! that is the gateway's real path, and it costs one extra (non-durable) transaction per charge
//! (see the writer's documentation).
//!
//! Run: `cargo bench -p ithil-budget --bench charge -- --warm-up-time 1 --measurement-time 3`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ithil_budget::{Budget, BudgetConfig, Charge, ChargeHandle, ChargeOutcome, ExtraWork};
use redb::{Database, TableDefinition};
use time::Date;
use time::macros::date;

const TASKS: usize = 64;
const PER_TASK: usize = 4;
const DAY: Date = date!(2026 - 05 - 06);
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("bench_audit");

/// A budget on a fresh file in a temp dir, with its writer on a thread of its own.
struct Durable {
    _dir: tempfile::TempDir,
    budget: Budget,
    handle: ChargeHandle,
}

impl Durable {
    fn new(max_group: usize) -> Durable {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("bench.redb")).expect("database");
        let config = BudgetConfig {
            max_group,
            ..BudgetConfig::default()
        };
        let budget = Budget::open_with(Arc::new(db), config).expect("budget");
        let (handle, writer) = budget.writer();
        std::thread::spawn(move || writer.run());
        Durable {
            _dir: dir,
            budget,
            handle,
        }
    }
}

/// Extra work standing in for the audit record: one row in another table.
fn audit_row(ids: &Arc<AtomicU64>) -> ExtraWork {
    let id = ids.fetch_add(1, Ordering::Relaxed);
    Box::new(move |txn, outcome| {
        let row = format!("{{\"agentId\":\"agt_bench\",\"outcome\":\"{outcome:?}\"}}");
        txn.open_table(AUDIT)?.insert(id, row.as_str())?;
        Ok(())
    })
}

async fn charge_durably(handle: ChargeHandle, ids: Option<Arc<AtomicU64>>) {
    for _ in 0..PER_TASK {
        let charge = Charge {
            agent_id: "agt_bench".to_owned(),
            day: DAY,
            tokens: 100,
            limit: u64::MAX,
            extra: ids.as_ref().map(audit_row),
        };
        let outcome = handle.charge(charge).await.expect("charge");
        assert!(matches!(outcome, ChargeOutcome::Charged { .. }));
    }
}

/// Charging off: the same check-and-add on a counter in memory.
async fn charge_in_memory(counter: Arc<Mutex<u64>>) {
    for _ in 0..PER_TASK {
        {
            let mut used = counter.lock().expect("counter");
            *used = used.checked_add(100).expect("no overflow");
        }
        tokio::task::yield_now().await;
    }
}

fn charging(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("charge_64_tasks");
    group.throughput(Throughput::Elements((TASKS * PER_TASK) as u64));
    group.sample_size(10);

    for (name, max_group, audit) in [
        ("group_commit", 1024, false),
        ("commit_per_charge", 1, false),
        ("group_commit_audit", 1024, true),
        ("commit_per_charge_audit", 1, true),
    ] {
        let durable = Durable::new(max_group);
        let ids = Arc::new(AtomicU64::new(0));
        let commits_before = durable.budget.commit_count();
        let mut charges = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let ids = audit.then(|| Arc::clone(&ids));
                            tokio::spawn(charge_durably(durable.handle.clone(), ids))
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task");
                    }
                });
                charges += (TASKS * PER_TASK) as u64;
            });
        });
        let commits = durable.budget.commit_count() - commits_before;
        eprintln!(
            "{name}: {charges} charges, {commits} durable commits, {:.1} charges per commit",
            charges as f64 / commits.max(1) as f64
        );
    }

    let counter = Arc::new(Mutex::new(0u64));
    group.bench_function("in_memory", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| tokio::spawn(charge_in_memory(Arc::clone(&counter))))
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
            });
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = charging
}
criterion_main!(benches);
