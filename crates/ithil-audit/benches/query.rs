//! Query latency on a trail of a million records over a thousand agents: a page of 100 read
//! through the indexes, against a baseline that scans the records table newest first and
//! decodes each record until it has found 100 of the agent's.
//!
//! Run with `cargo bench -p ithil-audit --bench query`; the store is built once per run in a
//! temporary directory (about half a minute on two cores).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ithil_audit::{Action, AuditLog, AuditRecord, NewRecord, Outcome, Query};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const RECORDS: u64 = 1_000_000;
const AGENTS: u64 = 1_000;
const BATCH: u64 = 25_000;
const TOOLS: [&str; 8] = [
    "getUser",
    "listUsers",
    "getPost",
    "listPosts",
    "listComments",
    "getTodo",
    "createPost",
    "searchPosts",
];
const START: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// The records table as the crate lays it out, for the scanning baseline.
const RECORDS_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("ithil_audit_records");

fn agent(i: u64) -> String {
    format!("agt_{:08x}", i % AGENTS)
}

fn time_of(i: u64) -> OffsetDateTime {
    // One record every 100 ms: a million records span about 28 hours.
    START + Duration::milliseconds(i as i64 * 100)
}

fn build(db: &Arc<Database>, log: &AuditLog) {
    let started = Instant::now();
    for batch in 0..RECORDS / BATCH {
        let txn = db.begin_write().unwrap();
        for i in batch * BATCH..(batch + 1) * BATCH {
            let outcome = if i % 50 == 0 {
                Outcome::DeniedScope
            } else {
                Outcome::Ok
            };
            let rec = NewRecord {
                tool: Some(TOOLS[(i % TOOLS.len() as u64) as usize].to_owned()),
                tokens: 100 + i % 900,
                downstream_status: Some(200),
                latency_ms: Some(i % 40),
                arguments: Some(serde_json::json!({ "id": i % 500, "_limit": 10 })),
                ..NewRecord::new(
                    time_of(i),
                    format!("req-{i}"),
                    agent(i),
                    Action::ToolsCall,
                    outcome,
                )
            };
            log.append_in(&txn, rec).unwrap();
        }
        txn.commit().unwrap();
    }
    eprintln!(
        "built {RECORDS} records over {AGENTS} agents in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// What a store without indexes can do at best: walk every record newest first and decode it
/// until `limit` of the agent's are found.
fn scan_newest(db: &Database, agent_id: &str, limit: usize) -> Vec<AuditRecord> {
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(RECORDS_TABLE).unwrap();
    let mut found = Vec::with_capacity(limit);
    for entry in table.iter().unwrap().rev() {
        let (_, bytes) = entry.unwrap();
        let record: AuditRecord = serde_json::from_slice(bytes.value()).unwrap();
        if record.agent_id == agent_id {
            found.push(record);
            if found.len() == limit {
                break;
            }
        }
    }
    found
}

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path().join("audit.redb")).unwrap());
    let log = AuditLog::open(Arc::clone(&db)).unwrap();
    build(&db, &log);
    let bytes = std::fs::metadata(dir.path().join("audit.redb"))
        .unwrap()
        .len();
    eprintln!("store file: {:.0} MiB", bytes as f64 / (1024.0 * 1024.0));

    let who = agent(417);
    let newest = Query::for_agent(who.as_str());
    let window = Query {
        since: Some(time_of(RECORDS / 2)),
        until: Some(time_of(RECORDS / 2 + 200_000)),
        ..Query::for_agent(who.as_str())
    };
    let indexed = log.query(&newest).unwrap().records;
    assert_eq!(indexed.len(), 100);
    assert_eq!(indexed, scan_newest(&db, &who, 100));
    assert_eq!(log.query(&window).unwrap().records.len(), 100);

    let mut group = c.benchmark_group("audit_query_1m");
    group.bench_function("agent_newest_100_indexed", |b| {
        b.iter(|| black_box(log.query(black_box(&newest)).unwrap()))
    });
    group.bench_function("agent_time_window_100_indexed", |b| {
        b.iter(|| black_box(log.query(black_box(&window)).unwrap()))
    });
    let second_page = Query {
        cursor: log.query(&newest).unwrap().next_cursor,
        ..newest.clone()
    };
    group.bench_function("agent_second_page_100_indexed", |b| {
        b.iter(|| black_box(log.query(black_box(&second_page)).unwrap()))
    });
    let denied = Query {
        outcome: Some(Outcome::DeniedScope.into()),
        ..Query::default()
    };
    group.bench_function("outcome_newest_100_indexed", |b| {
        b.iter(|| black_box(log.query(black_box(&denied)).unwrap()))
    });
    group.bench_function("all_newest_100_indexed", |b| {
        b.iter(|| black_box(log.query(black_box(&Query::default())).unwrap()))
    });
    group.finish();

    let mut baseline = c.benchmark_group("audit_query_1m_baseline");
    baseline.sample_size(10);
    baseline.bench_function("agent_newest_100_scan", |b| {
        b.iter(|| black_box(scan_newest(&db, black_box(&who), 100)))
    });
    baseline.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
