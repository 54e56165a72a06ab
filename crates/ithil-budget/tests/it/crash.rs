//! Crash safety: a process killed with SIGKILL in the middle of a charge load loses no charge
//! that it acknowledged.
//!
//! The parent runs this same test binary again as a child (the ignored test below), lets it
//! charge from 64 tasks, reads its acknowledgements from stdout, kills it with SIGKILL and opens
//! the file again. Every acknowledged charge must be on disk, with the audit row that its extra
//! work wrote in the same commit.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ithil_budget::{Budget, Charge, ChargeOutcome};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use time::Date;
use time::macros::date;

const AUDIT: TableDefinition<u64, u64> = TableDefinition::new("crash_audit");
const AGENT: &str = "agt_crash";
const DAY: Date = date!(2026 - 05 - 06);
const DB_ENV: &str = "ITHIL_BUDGET_CRASH_DB";
const TASKS: u64 = 64;
const MAX_TOKENS: u64 = 10;

/// The tokens charge `id` asks for: 1 to `MAX_TOKENS`.
fn tokens_of(id: u64) -> u64 {
    1 + id % MAX_TOKENS
}

#[test]
fn a_process_killed_mid_load_keeps_every_charge_it_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash::child_charges_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");

    // Read acknowledgements until enough have arrived, then kill the child mid-load.
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut max_used = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 3_000 {
        assert!(
            Instant::now() < deadline,
            "the child acknowledged too little"
        );
        let line = lines
            .next()
            .expect("child ended before it was killed")
            .expect("read");
        if let Some((id, used)) = parse_ack(&line) {
            acked.insert(id);
            max_used = max_used.max(used);
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    // Acknowledgements written before the kill and still in the pipe count too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some((id, used)) = parse_ack(&line) {
            acked.insert(id);
            max_used = max_used.max(used);
        }
    }

    let db = Arc::new(Database::create(&path).expect("reopen after the crash"));
    let budget = Budget::open(Arc::clone(&db)).expect("budget");
    let stored = budget.used(AGENT, DAY);
    let read = db.begin_read().expect("read");
    let audit = read.open_table(AUDIT).expect("audit table");
    let mut audited = HashSet::new();
    let mut audited_tokens = 0;
    for row in audit.iter().expect("iter") {
        let (id, tokens) = row.expect("row");
        audited.insert(id.value());
        audited_tokens += tokens.value();
    }

    let missing: Vec<_> = acked.difference(&audited).take(10).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not on disk: {missing:?}"
    );
    assert!(
        stored >= max_used,
        "stored {stored} < acknowledged {max_used}"
    );
    // Charge and audit row commit together: the stored total is exactly the audited tokens.
    assert_eq!(stored, audited_tokens);
    // At most the charges in flight at the kill were committed without an acknowledgement.
    assert!(stored - max_used <= TASKS * MAX_TOKENS);
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    let id = parts.next()?.parse().ok()?;
    let used = parts.next()?.parse().ok()?;
    Some((id, used))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_process_killed_mid_load_keeps_every_charge_it_acknowledged"]
async fn child_charges_until_killed() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        eprintln!("{DB_ENV} is not set: this runs only as the crash test's child");
        return;
    };
    let db = Arc::new(Database::create(path).expect("database"));
    let budget = Budget::open(db).expect("budget");
    let (handle, writer) = budget.writer();
    std::thread::spawn(move || writer.run());

    // Bounded in count and time, so the child ends by itself should the parent die.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..100_000u64 {
                if Instant::now() > deadline {
                    break;
                }
                let id = n * TASKS + task;
                let tokens = tokens_of(id);
                let charge = Charge {
                    agent_id: AGENT.to_owned(),
                    day: DAY,
                    tokens,
                    limit: u64::MAX,
                    extra: Some(Box::new(move |txn, _| {
                        txn.open_table(AUDIT)?.insert(id, tokens)?;
                        Ok(())
                    })),
                };
                if let Ok(ChargeOutcome::Charged { used }) = handle.charge(charge).await {
                    println!("ack {id} {used}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}
