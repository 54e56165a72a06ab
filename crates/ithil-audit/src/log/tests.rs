use std::collections::HashSet;
use std::path::Path;

use redb::ReadableTableMetadata;
use serde_json::json;
use tempfile::TempDir;
use time::Duration;
use time::macros::datetime;

use super::*;
use crate::{Action, MAX_LIMIT, Outcome};

const T0: OffsetDateTime = datetime!(2026-05-06 12:00:00 UTC);

fn open_at(path: &Path) -> AuditLog {
    let db = Arc::new(Database::create(path).unwrap());
    AuditLog::open(db).unwrap()
}

fn fresh() -> (TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_at(&dir.path().join("audit.redb"));
    (dir, log)
}

fn call(agent: &str, tool: &str, outcome: Outcome, time: OffsetDateTime) -> NewRecord {
    NewRecord {
        tool: Some(tool.to_owned()),
        tokens: 10,
        downstream_status: Some(200),
        latency_ms: Some(3),
        arguments: Some(json!({ "id": 1 })),
        ..NewRecord::new(time, "req", agent, Action::ToolsCall, outcome)
    }
}

fn ids(page: &Page) -> Vec<u64> {
    page.records.iter().map(|r| r.id).collect()
}

/// Every record of `q`'s filters, read page by page; panics on a repeated id.
fn read_all(log: &AuditLog, mut q: Query) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let page = log.query(&q).unwrap();
        assert!(page.records.len() <= q.limit);
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record came twice: {seen:?}");
    seen
}

fn index_rows(log: &AuditLog) -> [u64; 5] {
    let txn = log.db.begin_read().unwrap();
    [
        txn.open_table(RECORDS).unwrap().len().unwrap(),
        txn.open_table(BY_TIME).unwrap().len().unwrap(),
        txn.open_table(BY_AGENT).unwrap().len().unwrap(),
        txn.open_table(BY_TOOL).unwrap().len().unwrap(),
        txn.open_table(BY_OUTCOME).unwrap().len().unwrap(),
    ]
}

#[test]
fn an_appended_record_comes_back_from_a_query_as_stored() {
    let (_dir, log) = fresh();

    let stored = log
        .append(call("agt_a", "getUser", Outcome::Ok, T0))
        .unwrap();

    assert_eq!(stored.id, 1);
    assert_eq!(stored.agent_id, "agt_a");
    assert_eq!(stored.tool.as_deref(), Some("getUser"));
    assert_eq!(stored.arguments, Some(json!({ "id": 1 })));
    let page = log.query(&Query::default()).unwrap();
    assert_eq!(page.records, vec![stored]);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn ids_increase_by_one_across_both_ways_of_appending() {
    let (_dir, log) = fresh();

    let a = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    let txn = log.db.begin_write().unwrap();
    let b = log
        .append_in(&txn, call("a", "t", Outcome::Ok, T0))
        .unwrap();
    let c = log
        .append_in(&txn, call("a", "t", Outcome::Ok, T0))
        .unwrap();
    txn.commit().unwrap();
    let d = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    assert_eq!([a.id, b.id, c.id, d.id], [1, 2, 3, 4]);
}

#[test]
fn records_come_newest_first_by_time_then_id() {
    let (_dir, log) = fresh();
    // Appended out of time order, as concurrent writers may commit.
    log.append(call("a", "t", Outcome::Ok, T0 + Duration::seconds(2)))
        .unwrap();
    log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    log.append(call("a", "t", Outcome::Ok, T0 + Duration::seconds(5)))
        .unwrap();
    log.append(call("a", "t", Outcome::Ok, T0 + Duration::seconds(2)))
        .unwrap();

    assert_eq!(ids(&log.query(&Query::default()).unwrap()), [3, 4, 1, 2]);
    assert_eq!(
        ids(&log.query(&Query::for_agent("a")).unwrap()),
        [3, 4, 1, 2]
    );
}

#[test]
fn each_filter_selects_only_matching_records() {
    let (_dir, log) = fresh();
    let at = |s: i64| T0 + Duration::seconds(s);
    log.append(call("a", "getUser", Outcome::Ok, at(0)))
        .unwrap(); // 1
    log.append(call("b", "getUser", Outcome::DeniedScope, at(1)))
        .unwrap(); // 2
    log.append(call("a", "listPosts", Outcome::DeniedScope, at(2)))
        .unwrap(); // 3
    log.append(call("b", "listPosts", Outcome::Ok, at(3)))
        .unwrap(); // 4
    log.append(NewRecord::admin(
        at(4),
        "r",
        "jti",
        Action::AgentCreate,
        Outcome::Ok,
    ))
    .unwrap(); // 5, no tool
    log.append(call("a", "getUser", Outcome::BudgetExhausted, at(5)))
        .unwrap(); // 6

    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        ids(&log.query(&q).unwrap())
    };

    assert_eq!(q(|_| {}), [6, 5, 4, 3, 2, 1]);
    assert_eq!(q(|q| q.agent_id = Some("a".into())), [6, 3, 1]);
    assert_eq!(q(|q| q.agent_id = Some("admin".into())), [5]);
    assert_eq!(q(|q| q.agent_id = Some("nobody".into())), Vec::<u64>::new());
    assert_eq!(q(|q| q.tool = Some("getUser".into())), [6, 2, 1]);
    assert_eq!(q(|q| q.outcome = Some("denied_scope".into())), [3, 2]);
    assert_eq!(q(|q| q.since = Some(T0 + Duration::seconds(3))), [6, 5, 4]);
    assert_eq!(q(|q| q.until = Some(T0 + Duration::seconds(2))), [2, 1]);
    assert_eq!(
        q(|q| {
            q.since = Some(T0 + Duration::seconds(1));
            q.until = Some(T0 + Duration::seconds(4));
        }),
        [4, 3, 2]
    );
    assert_eq!(
        q(|q| {
            q.agent_id = Some("a".into());
            q.tool = Some("getUser".into());
        }),
        [6, 1]
    );
    assert_eq!(
        q(|q| {
            q.agent_id = Some("b".into());
            q.outcome = Some("ok".into());
            q.until = Some(T0 + Duration::seconds(4));
        }),
        [4]
    );
    assert_eq!(
        q(|q| {
            q.tool = Some("listPosts".into());
            q.outcome = Some("ok".into());
        }),
        [4]
    );
    assert_eq!(q(|q| q.limit = 2), [6, 5]);
    assert_eq!(
        q(|q| {
            q.since = Some(T0 + Duration::seconds(2));
            q.until = Some(T0 + Duration::seconds(2));
        }),
        Vec::<u64>::new()
    );
}

#[test]
fn cursor_paging_returns_every_record_once_in_order() {
    let (_dir, log) = fresh();
    for i in 0..95_i64 {
        let agent = if i % 3 == 0 { "a" } else { "b" };
        let outcome = if i % 5 == 0 {
            Outcome::DeniedAllowlist
        } else {
            Outcome::Ok
        };
        // Several records share each second, so ties on time are paged by id.
        log.append(call(agent, "t", outcome, T0 + Duration::seconds(i / 4)))
            .unwrap();
    }

    let all = read_all(
        &log,
        Query {
            limit: 7,
            ..Query::default()
        },
    );
    let mut expected: Vec<u64> = (1..=95).collect();
    expected.sort_by_key(|id| std::cmp::Reverse(((id - 1) / 4, *id)));
    assert_eq!(all, expected);

    let of_a = read_all(
        &log,
        Query {
            limit: 4,
            ..Query::for_agent("a")
        },
    );
    assert_eq!(of_a.len(), 32);
    assert!(of_a.windows(2).all(|w| w[0] > w[1]));

    let denied = read_all(
        &log,
        Query {
            outcome: Some("denied_allowlist".into()),
            limit: 5,
            ..Query::default()
        },
    );
    assert_eq!(denied.len(), 19);

    let exact = read_all(
        &log,
        Query {
            limit: 95,
            ..Query::default()
        },
    );
    assert_eq!(exact.len(), 95);
    let page = log
        .query(&Query {
            limit: 95,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(
        page.next_cursor, None,
        "a full last page has no next cursor"
    );
}

#[test]
fn records_appended_while_paging_do_not_disturb_the_pages() {
    let (_dir, log) = fresh();
    for i in 0..10 {
        log.append(call("a", "t", Outcome::Ok, T0 + Duration::seconds(i)))
            .unwrap();
    }
    let first = log
        .query(&Query {
            limit: 4,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(ids(&first), [10, 9, 8, 7]);

    log.append(call("a", "t", Outcome::Ok, T0 + Duration::seconds(60)))
        .unwrap();
    let rest = read_all(
        &log,
        Query {
            limit: 4,
            cursor: first.next_cursor,
            ..Query::default()
        },
    );

    assert_eq!(rest, [6, 5, 4, 3, 2, 1]);
}

#[test]
fn bad_queries_are_refused_with_clear_errors() {
    let (_dir, log) = fresh();
    log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    let err = log
        .query(&Query {
            cursor: Some("%%%".into()),
            ..Query::default()
        })
        .unwrap_err();
    assert!(matches!(err, AuditError::InvalidCursor));
    assert!(err.is_invalid_input());
    assert_eq!(err.to_string(), "malformed audit cursor");

    for limit in [0, MAX_LIMIT + 1] {
        let err = log
            .query(&Query {
                limit,
                ..Query::default()
            })
            .unwrap_err();
        assert!(matches!(err, AuditError::InvalidLimit { limit: l } if l == limit));
    }
    assert!(
        log.query(&Query {
            limit: MAX_LIMIT,
            ..Query::default()
        })
        .is_ok()
    );

    let err = log
        .query(&Query {
            since: Some(T0),
            until: Some(T0 - Duration::seconds(1)),
            ..Query::default()
        })
        .unwrap_err();
    assert!(matches!(err, AuditError::InvalidTimeRange));
}

#[test]
fn a_record_appended_in_an_aborted_transaction_leaves_no_trace_but_a_skipped_id() {
    let (_dir, log) = fresh();

    let txn = log.db.begin_write().unwrap();
    let lost = log
        .append_in(&txn, call("a", "t", Outcome::Ok, T0))
        .unwrap();
    txn.abort().unwrap();

    assert_eq!(log.count().unwrap(), 0);
    assert_eq!(index_rows(&log), [0; 5]);
    let kept = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    assert_eq!(
        kept.id,
        lost.id + 1,
        "the aborted id is skipped, never reused"
    );
}

#[test]
fn append_all_in_writes_every_record_with_consecutive_ids_and_index_rows() {
    let (_dir, log) = fresh();
    let first = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    let txn = log.db.begin_write().unwrap();
    let admin = NewRecord::admin(
        T0 + Duration::milliseconds(1500),
        "r",
        "jti",
        Action::AgentDelete,
        Outcome::Ok,
    );
    let batch = log
        .append_all_in(
            &txn,
            [
                call("b", "u", Outcome::Ok, T0 + Duration::seconds(1)),
                admin,
                call("a", "t", Outcome::DeniedScope, T0 + Duration::seconds(2)),
            ],
        )
        .unwrap();
    assert!(log.append_all_in(&txn, []).unwrap().is_empty());
    txn.commit().unwrap();

    let batch_ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
    assert_eq!(batch_ids, [first.id + 1, first.id + 2, first.id + 3]);
    // Four records, one of them without a tool.
    assert_eq!(index_rows(&log), [4, 4, 4, 3, 4]);
    let newest_first: Vec<AuditRecord> = batch.iter().rev().cloned().collect();
    assert_eq!(
        log.query(&Query::default()).unwrap().records[..3],
        newest_first[..]
    );
    assert_eq!(ids(&log.query(&Query::for_agent("a")).unwrap()), [4, 1]);
    let by_tool = Query {
        tool: Some("u".into()),
        ..Query::default()
    };
    assert_eq!(ids(&log.query(&by_tool).unwrap()), [2]);
}

#[test]
fn two_logs_opened_on_one_database_never_assign_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path().join("audit.redb")).unwrap());
    let first = AuditLog::open(Arc::clone(&db)).unwrap();
    let a = first.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    let second = AuditLog::open(Arc::clone(&db)).unwrap();

    let b = second.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    let c = first.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    assert_eq!([a.id, b.id, c.id], [1, 2, 3]);
    assert_eq!(first.count().unwrap(), 3);
}

#[test]
fn ids_are_not_reused_after_retention_deleted_every_record_and_the_file_was_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.redb");
    {
        let log = open_at(&path);
        for _ in 0..3 {
            log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
        }
        // Taken by a transaction that never commits.
        let txn = log.db.begin_write().unwrap();
        log.append_in(&txn, call("a", "t", Outcome::Ok, T0))
            .unwrap();
        txn.abort().unwrap();
        assert_eq!(log.purge_before(T0 + Duration::days(1), 10).unwrap(), 3);
        assert_eq!(log.count().unwrap(), 0);
    }

    let log = open_at(&path);
    let next = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    assert_eq!(next.id, 5);
}

#[test]
fn a_file_of_schema_version_1_is_upgraded_and_its_ids_continue() {
    // Version 1 advanced `next_id` with every append, so it is exact there.
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path().join("audit.redb")).unwrap());
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(SCHEMA_KEY, 1).unwrap();
        meta.insert(NEXT_ID_KEY, 42).unwrap();
    }
    txn.commit().unwrap();

    let log = AuditLog::open(Arc::clone(&db)).unwrap();
    let next = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    assert_eq!(next.id, 42);
    let read = db.begin_read().unwrap();
    let version = read
        .open_table(META)
        .unwrap()
        .get(SCHEMA_KEY)
        .unwrap()
        .map(|v| v.value());
    assert_eq!(version, Some(SCHEMA_VERSION));
}

#[test]
fn a_record_appended_in_a_transaction_appears_only_when_the_caller_commits() {
    let (_dir, log) = fresh();
    const CHARGES: TableDefinition<&str, u64> = TableDefinition::new("test_charges");

    let txn = log.db.begin_write().unwrap();
    txn.open_table(CHARGES).unwrap().insert("a", 10).unwrap();
    log.append_in(&txn, call("a", "t", Outcome::Ok, T0))
        .unwrap();

    assert_eq!(log.count().unwrap(), 0, "visible before the commit");
    txn.commit().unwrap();

    assert_eq!(log.count().unwrap(), 1);
    let read = log.db.begin_read().unwrap();
    let charge = read
        .open_table(CHARGES)
        .unwrap()
        .get("a")
        .unwrap()
        .unwrap()
        .value();
    assert_eq!(charge, 10);
}

#[test]
fn records_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.redb");
    let written = {
        let log = open_at(&path);
        let a = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
        let b = log
            .append(call(
                "b",
                "u",
                Outcome::CircuitOpen,
                T0 + Duration::seconds(1),
            ))
            .unwrap();
        vec![b, a]
    };

    let log = open_at(&path);

    assert_eq!(log.query(&Query::default()).unwrap().records, written);
    assert_eq!(
        log.query(&Query::for_agent("a")).unwrap().records,
        written[1..]
    );
    let next = log.append(call("a", "t", Outcome::Ok, T0)).unwrap();
    assert_eq!(next.id, 3, "ids continue after a reopen");
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(dir.path().join("audit.redb")).unwrap());
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
        .unwrap();
    txn.commit().unwrap();

    let err = AuditLog::open(db).unwrap_err();

    assert!(matches!(
        err,
        AuditError::UnsupportedSchema { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
    ));
}

#[test]
fn purge_deletes_only_older_records_and_their_index_rows() {
    let (_dir, log) = fresh();
    for i in 0..10 {
        log.append(call(
            "old",
            "t",
            Outcome::DeniedScope,
            T0 + Duration::days(i),
        ))
        .unwrap();
    }
    let admin = NewRecord::admin(T0, "r", "jti", Action::AgentDelete, Outcome::Ok);
    log.append(admin).unwrap();
    for i in 10..15 {
        log.append(call("new", "u", Outcome::Ok, T0 + Duration::days(i)))
            .unwrap();
    }
    assert_eq!(index_rows(&log), [16, 16, 16, 15, 16]);

    let deleted = log.purge_before(T0 + Duration::days(10), 3).unwrap();

    assert_eq!(deleted, 11);
    assert_eq!(index_rows(&log), [5, 5, 5, 5, 5]);
    assert_eq!(
        ids(&log.query(&Query::default()).unwrap()),
        [16, 15, 14, 13, 12]
    );
    assert!(
        log.query(&Query::for_agent("old"))
            .unwrap()
            .records
            .is_empty()
    );
    assert!(
        log.query(&Query::for_agent("admin"))
            .unwrap()
            .records
            .is_empty()
    );
    let by_outcome = Query {
        outcome: Some("denied_scope".into()),
        ..Query::default()
    };
    assert!(log.query(&by_outcome).unwrap().records.is_empty());
    assert_eq!(log.purge_before(T0 + Duration::days(10), 3).unwrap(), 0);
}

#[test]
fn purge_keeps_a_record_exactly_at_the_cutoff() {
    let (_dir, log) = fresh();
    log.append(call("a", "t", Outcome::Ok, T0 - Duration::nanoseconds(1)))
        .unwrap();
    log.append(call("a", "t", Outcome::Ok, T0)).unwrap();

    assert_eq!(log.purge_before(T0, 0).unwrap(), 1);
    assert_eq!(ids(&log.query(&Query::default()).unwrap()), [2]);
}

#[test]
fn oversized_arguments_are_stored_as_a_marker() {
    let (_dir, log) = fresh();
    let log = log.with_max_argument_bytes(64);
    let big = json!({ "body": "x".repeat(100) });
    let size = serde_json::to_string(&big).unwrap().len();

    let stored = log
        .append(NewRecord {
            arguments: Some(big),
            ..call("a", "t", Outcome::Ok, T0)
        })
        .unwrap();

    let expected = json!({ "truncated": true, "originalBytes": size });
    assert_eq!(stored.arguments, Some(expected.clone()));
    let read = &log.query(&Query::default()).unwrap().records[0];
    assert_eq!(read.arguments, Some(expected));
}

#[test]
fn default_cap_keeps_four_kibibytes_of_arguments() {
    let (_dir, log) = fresh();
    // `{"q":"…"}` is 8 bytes around the string.
    let fits = json!({ "q": "x".repeat(MAX_ARGUMENT_BYTES - 8) });
    let over = json!({ "q": "x".repeat(MAX_ARGUMENT_BYTES - 7) });

    let a = log
        .append(NewRecord {
            arguments: Some(fits.clone()),
            ..call("a", "t", Outcome::Ok, T0)
        })
        .unwrap();
    let b = log
        .append(NewRecord {
            arguments: Some(over),
            ..call("a", "t", Outcome::Ok, T0)
        })
        .unwrap();

    assert_eq!(a.arguments, Some(fits));
    assert_eq!(b.arguments.unwrap()[crate::TRUNCATED_KEY], true);
}

#[test]
fn export_yields_every_matching_record_in_pages() {
    let (_dir, log) = fresh();
    for i in 0..25 {
        let agent = if i % 2 == 0 { "a" } else { "b" };
        log.append(call(agent, "t", Outcome::Ok, T0 + Duration::seconds(i)))
            .unwrap();
    }

    let pages: Vec<Vec<AuditRecord>> = log
        .export(Query {
            limit: 5,
            ..Query::for_agent("a")
        })
        .collect::<Result<_>>()
        .unwrap();

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 3]);
    let exported: Vec<u64> = pages.iter().flatten().map(|r| r.id).collect();
    assert_eq!(exported, [25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1]);
    assert!(log.export(Query::for_agent("nobody")).next().is_none());
}

#[test]
fn export_of_a_bad_query_yields_one_error() {
    let (_dir, log) = fresh();
    let mut export = log.export(Query {
        cursor: Some("x".into()),
        ..Query::default()
    });

    assert!(matches!(
        export.next(),
        Some(Err(AuditError::InvalidCursor))
    ));
    assert!(export.next().is_none());
}
