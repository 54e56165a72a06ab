use std::sync::Arc;

use redb::Database;
use time::macros::{date, datetime};

use super::*;
use crate::test_support::*;

#[test]
fn the_utc_day_of_an_instant_ignores_its_offset() {
    assert_eq!(
        utc_day(datetime!(2026-05-06 23:59:59.999 UTC)),
        date!(2026 - 05 - 06)
    );
    assert_eq!(
        utc_day(datetime!(2026-05-07 00:00:00 UTC)),
        date!(2026 - 05 - 07)
    );
    // 01:30 in UTC+2 is 23:30 UTC the day before.
    assert_eq!(
        utc_day(datetime!(2026-05-07 01:30 +2)),
        date!(2026 - 05 - 06)
    );
    assert_eq!(
        next_reset(datetime!(2026-05-07 01:30 +2)),
        datetime!(2026-05-07 00:00 UTC)
    );
    assert_eq!(
        next_reset(datetime!(2026-12-31 23:59:59.999 UTC)),
        datetime!(2027-01-01 00:00 UTC)
    );
}

#[test]
fn a_new_store_has_no_usage_and_full_budgets() {
    let store = Store::new();
    let now = datetime!(2026-05-06 12:00 UTC);
    let status = store.budget.status("agt_a", 100_000, now);
    assert_eq!(
        status,
        BudgetStatus {
            limit: 100_000,
            used: 0,
            remaining: 100_000,
            resets_at: datetime!(2026-05-07 00:00 UTC),
        }
    );
    assert!(status.percentage_used().abs() < 1e-9);
    assert_eq!(store.budget.commit_count(), 0);
}

#[test]
fn percentage_used_of_a_zero_limit_is_full() {
    let status = BudgetStatus {
        limit: 0,
        used: 0,
        remaining: 0,
        resets_at: datetime!(2026-05-07 00:00 UTC),
    };
    assert!((status.percentage_used() - 100.0).abs() < 1e-9);
}

#[tokio::test]
async fn history_has_one_row_per_day_oldest_first_with_zeros() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let today = date!(2026 - 05 - 06);
    for (day, tokens) in [
        (date!(2026 - 05 - 01), 5),
        (date!(2026 - 05 - 04), 7),
        (today, 11),
    ] {
        w.handle
            .charge(charge("agt_a", day, tokens, 100))
            .await
            .expect("charge");
    }
    w.handle
        .charge(charge("agt_b", today, 13, 100))
        .await
        .expect("charge");
    w.stop();

    let rows = store.budget.history("agt_a", 4, today).expect("history");
    let expected = [
        (date!(2026 - 05 - 03), 0),
        (date!(2026 - 05 - 04), 7),
        (date!(2026 - 05 - 05), 0),
        (today, 11),
    ]
    .map(|(day, tokens)| DayUsage { day, tokens });
    assert_eq!(rows, expected);

    assert_eq!(
        store.budget.history("agt_a", 6, today).expect("history")[0].tokens,
        5
    );
    assert!(
        store
            .budget
            .history("agt_a", 0, today)
            .expect("history")
            .is_empty()
    );
    let unknown = store.budget.history("agt_x", 2, today).expect("history");
    assert_eq!(unknown.iter().map(|r| r.tokens).sum::<u64>(), 0);
    assert_eq!(unknown.len(), 2);
}

#[test]
fn history_is_capped_at_ten_years() {
    let store = Store::new();
    let rows = store
        .budget
        .history("agt_a", u32::MAX, date!(2026 - 05 - 06))
        .expect("history");
    assert_eq!(rows.len(), MAX_HISTORY_DAYS as usize);
    assert_eq!(rows.last().map(|r| r.day), Some(date!(2026 - 05 - 06)));
}

#[tokio::test]
async fn purge_removes_days_beyond_retention_durably() {
    let store = Store::with_config(BudgetConfig {
        retention_days: 3,
        ..BudgetConfig::default()
    });
    let w = Running::start(&store.budget);
    let today = date!(2026 - 05 - 06);
    let mut day = date!(2026 - 05 - 01);
    while day <= today {
        for agent in ["agt_a", "agt_b"] {
            w.handle
                .charge(charge(agent, day, 10, 100))
                .await
                .expect("charge");
        }
        day = day.next_day().expect("day");
    }

    // Kept: May 4, 5 and 6. Removed: May 1, 2 and 3 for two agents.
    assert_eq!(w.handle.purge(today).await.expect("purge"), 6);
    assert_eq!(store.budget.used("agt_a", date!(2026 - 05 - 03)), 0);
    assert_eq!(store.budget.used("agt_a", date!(2026 - 05 - 04)), 10);
    assert_eq!(w.handle.purge(today).await.expect("purge"), 0);
    w.stop();

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_b", date!(2026 - 05 - 03)), 0);
    assert_eq!(store.budget.used("agt_b", date!(2026 - 05 - 04)), 10);
    let rows = store.budget.history("agt_b", 6, today).expect("history");
    assert_eq!(
        rows.iter().map(|r| r.tokens).collect::<Vec<_>>(),
        [0, 0, 0, 10, 10, 10]
    );
}

#[test]
fn default_retention_is_ninety_days() {
    assert_eq!(BudgetConfig::default().retention_days, 90);
}

#[test]
fn reopening_keeps_the_schema_version() {
    let store = Store::new();
    let store = store.reopen();
    let read = store.budget.shared.db.begin_read().expect("read");
    let meta = read.open_table(META).expect("meta");
    assert_eq!(
        meta.get(SCHEMA_VERSION_KEY)
            .expect("get")
            .map(|v| v.value()),
        Some(SCHEMA_VERSION)
    );
}

#[test]
fn an_unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::create(dir.path().join("ithil.redb")).expect("database");
    let txn = db.begin_write().expect("write");
    txn.open_table(META)
        .expect("meta")
        .insert(SCHEMA_VERSION_KEY, 2)
        .expect("insert");
    txn.commit().expect("commit");

    let err = Budget::open(Arc::new(db)).expect_err("newer schema");
    assert!(matches!(
        err,
        BudgetError::UnsupportedSchema {
            found: 2,
            expected: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "budget schema version 2 is not supported (expected 1)"
    );
}

#[test]
fn counters_are_loaded_from_the_table_at_open() {
    // Rows written by an earlier process, straight into the table.
    let store = Store::new();
    let path = store.path();
    drop(store.budget);
    let db = Database::create(&path).expect("database");
    let txn = db.begin_write().expect("write");
    {
        let mut usage = txn.open_table(USAGE).expect("usage");
        usage
            .insert(("agt_a", DAY.to_julian_day()), 42)
            .expect("insert");
    }
    txn.commit().expect("commit");
    let budget = Budget::open(Arc::new(db)).expect("budget");
    assert_eq!(budget.used("agt_a", DAY), 42);
    assert_eq!(budget.remaining("agt_a", 50, DAY), 8);
}
