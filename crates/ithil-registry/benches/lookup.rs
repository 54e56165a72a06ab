//! The request path's agent lookup, against two baselines measured in the same run.
//!
//! - `hashmap_get` is the floor: a plain `HashMap<String, Arc<Agent>>` with the same agents and
//!   no lock, so the gap to it is what the registry's read lock costs.
//! - `redb_read_txn_get` is what a lookup would cost without the in-memory view: one redb read
//!   transaction, one table open and one get per lookup, without even decoding the record.
//!
//! Run with `cargo bench -p ithil-registry --bench lookup -- --warm-up-time 1
//! --measurement-time 3`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ithil_registry::{Agent, NewAgent, Registry};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use time::macros::datetime;

/// Enough agents that lookups do not all hit one cache line; each costs one durable commit to
/// create, which bounds the set-up time.
const AGENTS: usize = 1_000;

/// The registry's own table, named here only so the baseline reads the same data.
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("ithil_registry_agents");

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = Arc::new(Database::create(dir.path().join("bench.redb")).expect("database"));
    let registry = Registry::open(Arc::clone(&db)).expect("registry");
    let now = datetime!(2026-05-06 12:00:00 UTC);
    for i in 0..AGENTS {
        let new = NewAgent {
            daily_token_budget: Some(50_000),
            allowed_tools: Some(vec!["get_post".into(), "list_posts".into()]),
            scopes: vec!["read".into()],
            ..NewAgent::new(format!("bench agent {i}"))
        };
        registry.create(new, now).expect("create");
    }
    let ids: Vec<String> = registry
        .list(None, AGENTS)
        .iter()
        .map(|a| a.agent_id.clone())
        .collect();
    let plain: HashMap<String, Arc<Agent>> = registry
        .list(None, AGENTS)
        .into_iter()
        .map(|a| (a.agent_id.clone(), a))
        .collect();

    let mut group = c.benchmark_group("ithil-registry: lookup");
    group.throughput(Throughput::Elements(1));

    let mut next = cycle(&ids);
    group.bench_function("registry_get_hit", |b| {
        b.iter(|| black_box(registry.get(black_box(next()))))
    });

    group.bench_function("registry_get_miss", |b| {
        b.iter(|| black_box(registry.get(black_box("agt_ffffffff_"))))
    });

    let mut next = cycle(&ids);
    group.bench_function("baseline/hashmap_get", |b| {
        b.iter(|| black_box(plain.get(black_box(next())).cloned()))
    });

    let mut next = cycle(&ids);
    group.bench_function("baseline/redb_read_txn_get", |b| {
        b.iter(|| {
            let txn = db.begin_read().expect("read transaction");
            let table = txn.open_table(TABLE).expect("table");
            let found = table.get(black_box(next())).expect("get").is_some();
            black_box(found)
        })
    });

    group.finish();
}

/// Hands out the ids round-robin.
fn cycle<'a>(ids: &'a [String]) -> impl FnMut() -> &'a str {
    let mut i = 0;
    move || {
        i = (i + 1) % ids.len();
        ids[i].as_str()
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
