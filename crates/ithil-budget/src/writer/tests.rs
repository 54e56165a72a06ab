use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::Database;
use time::macros::datetime;

use super::*;
use crate::test_support::*;
use crate::{Budget, BudgetConfig, utc_day};

#[tokio::test]
async fn a_charge_that_fits_is_charged_and_counted() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let outcome = w.handle.charge(charge("agt_a", DAY, 40, 100)).await;
    assert_eq!(
        outcome.expect("charge"),
        ChargeOutcome::Charged { used: 40 }
    );
    assert_eq!(store.budget.used("agt_a", DAY), 40);
    assert_eq!(store.budget.used("agt_b", DAY), 0);
    w.stop();
}

#[tokio::test]
async fn a_charge_of_exactly_the_remaining_budget_fits() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let h = &w.handle;
    assert_eq!(
        h.charge(charge("agt_a", DAY, 60, 100))
            .await
            .expect("charge"),
        ChargeOutcome::Charged { used: 60 }
    );
    assert_eq!(
        h.charge(charge("agt_a", DAY, 40, 100))
            .await
            .expect("charge"),
        ChargeOutcome::Charged { used: 100 }
    );
    assert_eq!(
        h.charge(charge("agt_a", DAY, 1, 100))
            .await
            .expect("charge"),
        ChargeOutcome::OverLimit {
            used: 100,
            limit: 100
        }
    );
    w.stop();
}

#[tokio::test]
async fn a_charge_that_would_cross_the_limit_charges_nothing() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    w.handle
        .charge(charge("agt_a", DAY, 60, 100))
        .await
        .expect("charge");
    let outcome = w.handle.charge(charge("agt_a", DAY, 41, 100)).await;
    assert_eq!(
        outcome.expect("charge"),
        ChargeOutcome::OverLimit {
            used: 60,
            limit: 100
        }
    );
    assert_eq!(store.budget.used("agt_a", DAY), 60);
    w.stop();

    // Nothing of the refused charge reached the disk either.
    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 60);
}

#[tokio::test]
async fn a_limit_lowered_below_todays_usage_leaves_nothing_and_refuses_charges() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let now = datetime!(2026-05-06 12:00 UTC);
    let day = utc_day(now);
    w.handle
        .charge(charge("agt_a", day, 80, 100))
        .await
        .expect("charge");

    let status = store.budget.status("agt_a", 50, now);
    assert_eq!((status.used, status.remaining, status.limit), (80, 0, 50));
    assert!((status.percentage_used() - 160.0).abs() < 1e-9);
    for tokens in [1, 0] {
        assert_eq!(
            w.handle
                .charge(charge("agt_a", day, tokens, 50))
                .await
                .expect("charge"),
            ChargeOutcome::OverLimit {
                used: 80,
                limit: 50
            },
            "a charge of {tokens} tokens"
        );
    }
    assert_eq!(store.budget.used("agt_a", day), 80);
    w.stop();
}

#[tokio::test]
async fn the_utc_day_boundary_separates_charges() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let before = datetime!(2026-05-06 23:59:59.999 UTC);
    let after = datetime!(2026-05-07 00:00:00 UTC);
    assert_ne!(utc_day(before), utc_day(after));

    // Each charge fits a day alone; together they would not.
    for now in [before, after] {
        assert_eq!(
            w.handle
                .charge(charge("agt_a", utc_day(now), 80, 100))
                .await
                .expect("charge"),
            ChargeOutcome::Charged { used: 80 }
        );
    }
    assert_eq!(store.budget.status("agt_a", 100, before).used, 80);
    assert_eq!(store.budget.status("agt_a", 100, after).used, 80);
    assert_eq!(
        store.budget.status("agt_a", 100, before).resets_at,
        datetime!(2026-05-07 00:00 UTC)
    );
    assert_eq!(
        store.budget.status("agt_a", 100, after).resets_at,
        datetime!(2026-05-08 00:00 UTC)
    );
    w.stop();
}

#[tokio::test]
async fn arithmetic_at_u64_max_neither_overflows_nor_wraps() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let h = &w.handle;
    assert_eq!(
        h.charge(charge("agt_a", DAY, u64::MAX, u64::MAX))
            .await
            .expect("charge"),
        ChargeOutcome::Charged { used: u64::MAX }
    );
    assert_eq!(
        h.charge(charge("agt_a", DAY, 1, u64::MAX))
            .await
            .expect("charge"),
        ChargeOutcome::OverLimit {
            used: u64::MAX,
            limit: u64::MAX
        }
    );
    h.charge(charge("agt_b", DAY, 1, u64::MAX))
        .await
        .expect("charge");
    assert_eq!(
        h.charge(charge("agt_b", DAY, u64::MAX, u64::MAX))
            .await
            .expect("charge"),
        ChargeOutcome::OverLimit {
            used: 1,
            limit: u64::MAX
        }
    );
    assert_eq!(store.budget.used("agt_a", DAY), u64::MAX);
    assert_eq!(store.budget.remaining("agt_a", u64::MAX, DAY), 0);
    assert_eq!(store.budget.used("agt_b", DAY), 1);
    w.stop();
}

#[tokio::test]
async fn reset_zeroes_the_day_durably_and_leaves_other_days() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let other = DAY.previous_day().expect("day");
    for day in [DAY, other] {
        w.handle
            .charge(charge("agt_a", day, 100, 100))
            .await
            .expect("charge");
    }
    w.handle.reset("agt_a", DAY).await.expect("reset");
    assert_eq!(store.budget.used("agt_a", DAY), 0);
    assert_eq!(store.budget.used("agt_a", other), 100);
    assert_eq!(
        w.handle
            .charge(charge("agt_a", DAY, 30, 100))
            .await
            .expect("charge"),
        ChargeOutcome::Charged { used: 30 }
    );
    w.handle.reset("agt_a", DAY).await.expect("reset");
    w.stop();

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 0);
    assert_eq!(store.budget.used("agt_a", other), 100);
}

#[tokio::test]
async fn reset_with_extra_work_commits_both() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    w.handle
        .charge(charge("agt_a", DAY, 10, 100))
        .await
        .expect("charge");
    w.handle
        .reset_with("agt_a", DAY, audit(1, "reset by admin"))
        .await
        .expect("reset");
    assert_eq!(store.budget.used("agt_a", DAY), 0);
    assert_eq!(
        audit_rows(&store.budget),
        vec![(1, "reset by admin NotCharged".to_owned())]
    );
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_never_exceed_the_limit_and_every_charged_token_is_stored() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let limit = 5_000;

    // 200 charges of 1 to 97 tokens (about 9 700 in all) race for 5 000.
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let h = w.handle.clone();
        let tokens = 1 + (i * 37) % 97;
        tasks.push(tokio::spawn(async move {
            let outcome = h.charge(charge("agt_a", DAY, tokens, limit)).await;
            (tokens, outcome.expect("charge"))
        }));
    }
    let mut charged = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task") {
            (tokens, ChargeOutcome::Charged { used }) => {
                assert!(used <= limit);
                charged += tokens;
            }
            (_, ChargeOutcome::OverLimit { used, .. }) => {
                assert!(used <= limit);
                refused += 1;
            }
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(refused > 0, "the limit must refuse some charges");
    assert!(charged <= limit);
    assert_eq!(store.budget.used("agt_a", DAY), charged);
    w.stop();

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_charges_share_one_commit() {
    let store = Store::new();
    let (handle, writer) = store.budget.writer();

    // Queue 200 charges before the writer runs, so its first group finds them all waiting.
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            h.charge(charge("agt_a", DAY, 1, 1_000)).await
        }));
    }
    queued(&handle, 200).await;
    let before = store.budget.commit_count();
    let thread = std::thread::spawn(move || writer.run());
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Ok(ChargeOutcome::Charged { .. })
        ));
    }
    assert_eq!(store.budget.commit_count() - before, 1);
    assert_eq!(store.budget.used("agt_a", DAY), 200);
    drop(handle);
    thread.join().expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_take_fewer_commits_than_charges() {
    // The writer runs while the charges arrive, as in production.
    let store = Store::new();
    let w = Running::start(&store.budget);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let h = w.handle.clone();
        tasks.push(tokio::spawn(async move {
            h.charge(charge("agt_a", DAY, 1, 1_000)).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("charge");
    }
    let commits = store.budget.commit_count();
    assert!(commits < 200, "200 charges took {commits} commits");
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_one_commit_per_charge_is_the_baseline() {
    let store = Store::with_config(BudgetConfig {
        max_group: 1,
        ..BudgetConfig::default()
    });
    let (handle, writer) = store.budget.writer();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            h.charge(charge("agt_a", DAY, 1, 1_000)).await
        }));
    }
    queued(&handle, 20).await;
    let thread = std::thread::spawn(move || writer.run());
    for task in tasks {
        task.await.expect("task").expect("charge");
    }
    assert_eq!(store.budget.commit_count(), 20);
    drop(handle);
    thread.join().expect("writer");
}

#[tokio::test]
async fn acknowledged_charges_survive_closing_and_reopening_the_file() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let mut acknowledged = std::collections::HashMap::new();
    for (i, agent) in ["agt_a", "agt_b", "agt_c"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        let day = if i % 2 == 0 {
            DAY
        } else {
            DAY.next_day().expect("day")
        };
        if let ChargeOutcome::Charged { used } = w
            .handle
            .charge(charge(agent, day, 7, 1_000))
            .await
            .expect("charge")
        {
            acknowledged.insert((*agent, day), used);
        }
    }
    w.stop();

    let store = store.reopen();
    for ((agent, day), used) in acknowledged {
        assert_eq!(store.budget.used(agent, day), used, "{agent} on {day}");
    }
}

#[tokio::test]
async fn extra_work_commits_with_its_charge_and_sees_the_outcome() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let mut c = charge("agt_a", DAY, 40, 50);
    c.extra = Some(audit(1, "call 1"));
    assert_eq!(
        w.handle.charge(c).await.expect("charge"),
        ChargeOutcome::Charged { used: 40 }
    );
    let mut c = charge("agt_a", DAY, 40, 50);
    c.extra = Some(audit(2, "call 2"));
    assert_eq!(
        w.handle.charge(c).await.expect("charge"),
        ChargeOutcome::OverLimit {
            used: 40,
            limit: 50
        }
    );
    w.handle.write(audit(3, "no charge")).await.expect("write");
    w.stop();

    let store = store.reopen();
    assert_eq!(
        audit_rows(&store.budget),
        vec![
            (1, "call 1 Charged { used: 40 }".to_owned()),
            (2, "call 2 OverLimit { used: 40, limit: 50 }".to_owned()),
            (3, "no charge NotCharged".to_owned()),
        ]
    );
    assert_eq!(store.budget.used("agt_a", DAY), 40);
}

/// Opens a writer on `budget`, queues `requests` as charges of `agt_a` (limit 1 000) in this
/// order, then starts the writer, so that they form one group; answers each request's result
/// once the writer's thread has ended.
async fn one_group(
    budget: &Budget,
    requests: Vec<(u64, Option<ExtraWork>)>,
) -> Vec<Result<ChargeOutcome, &'static str>> {
    let (handle, writer) = budget.writer();
    let mut tasks = Vec::new();
    for (n, (tokens, extra)) in requests.into_iter().enumerate() {
        let h = handle.clone();
        let mut c = charge("agt_a", DAY, tokens, 1_000);
        c.extra = extra;
        tasks.push(tokio::spawn(async move { h.charge(c).await }));
        // Keep the queue order equal to the list order.
        queued(&handle, n + 1).await;
    }
    let thread = std::thread::spawn(move || writer.run());
    let results = futures_join(tasks).await;
    drop(handle);
    thread.join().expect("writer");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_extra_work_fails_its_own_request_and_the_rest_commit_through_the_retry() {
    let store = Store::new();

    // One group: a plain charge, a charge whose extra work writes a row and then fails, a charge
    // with good extra work, one whose extra work panics, and a plain charge.
    let results = one_group(
        &store.budget,
        vec![
            (1, None),
            (2, Some(failing_audit(2))),
            (4, Some(audit(4, "good"))),
            (8, Some(Box::new(|_, _| panic!("extra work panics")))),
            (16, None),
        ],
    )
    .await;

    // The first attempt aborts at the failing extra work, before any other extra work ran; the
    // second at the panic, after the good extra work ran in it, which goes with it.
    assert_eq!(results[0], Ok(ChargeOutcome::Charged { used: 1 }));
    assert_eq!(
        results[1],
        Err("extra work in the budget transaction failed")
    );
    assert_eq!(
        results[2],
        Err("extra work in the budget transaction panicked")
    );
    assert_eq!(
        results[3],
        Err("extra work in the budget transaction panicked")
    );
    assert_eq!(results[4], Ok(ChargeOutcome::Charged { used: 17 }));
    assert_eq!(store.budget.used("agt_a", DAY), 17);
    assert_eq!(store.budget.commit_count(), 1, "one durable commit");
    assert_eq!(
        store.budget.transaction_count(),
        3,
        "two aborted, one committed"
    );
    assert!(audit_rows(&store.budget).is_empty(), "nothing half written");

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 17);
    assert!(audit_rows(&store.budget).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_work_that_had_not_run_yet_commits_in_the_retry() {
    let store = Store::new();

    let results = one_group(
        &store.budget,
        vec![
            (1, None),
            (2, Some(failing_audit(2))),
            (4, Some(audit(4, "after"))),
            (16, None),
        ],
    )
    .await;

    assert_eq!(results[0], Ok(ChargeOutcome::Charged { used: 1 }));
    assert_eq!(
        results[1],
        Err("extra work in the budget transaction failed")
    );
    assert_eq!(results[2], Ok(ChargeOutcome::Charged { used: 5 }));
    assert_eq!(results[3], Ok(ChargeOutcome::Charged { used: 21 }));
    assert_eq!(store.budget.used("agt_a", DAY), 21);
    assert_eq!(
        (
            store.budget.commit_count(),
            store.budget.transaction_count()
        ),
        (1, 2)
    );
    assert_eq!(
        audit_rows(&store.budget),
        vec![(4, "after Charged { used: 5 }".to_owned())]
    );

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 21);
    assert_eq!(audit_rows(&store.budget).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_extra_work_fails_only_its_own_request_in_the_same_transaction() {
    let store = Store::new();
    let declined: ExtraWork = Box::new(|_, outcome| {
        assert_eq!(*outcome, ChargeOutcome::Charged { used: 3 });
        Err(Declined.into())
    });

    let results = one_group(
        &store.budget,
        vec![
            (1, Some(audit(1, "before"))),
            (2, Some(declined)),
            (4, Some(audit(4, "after"))),
        ],
    )
    .await;

    // The declined charge is not written, so the next charge sees the total before it.
    assert_eq!(results[0], Ok(ChargeOutcome::Charged { used: 1 }));
    assert_eq!(
        results[1],
        Err("extra work in the budget transaction failed")
    );
    assert_eq!(results[2], Ok(ChargeOutcome::Charged { used: 5 }));
    assert_eq!(
        (
            store.budget.commit_count(),
            store.budget.transaction_count()
        ),
        (1, 1)
    );
    assert_eq!(
        audit_rows(&store.budget),
        vec![
            (1, "before Charged { used: 1 }".to_owned()),
            (4, "after Charged { used: 5 }".to_owned()),
        ]
    );

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_can_tell_a_declined_request_from_a_failed_one() {
    let store = Store::new();
    let w = Running::start(&store.budget);
    let mut c = charge("agt_a", DAY, 1, 10);
    c.extra = Some(Box::new(|_, _| Err(Declined.into())));
    let err = w.handle.charge(c).await.expect_err("declined");
    assert!(matches!(&err, BudgetError::ExtraWork(e) if Declined::is(e)));

    let mut c = charge("agt_a", DAY, 1, 10);
    c.extra = Some(failing_audit(1));
    let err = w.handle.charge(c).await.expect_err("failed");
    assert!(matches!(&err, BudgetError::ExtraWork(e) if !Declined::is(e)));

    // A group of nothing but declined requests makes no commit.
    assert_eq!(store.budget.commit_count(), 0);
    assert_eq!(store.budget.used("agt_a", DAY), 0);
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_work_that_ran_before_a_failure_in_its_group_fails_with_it() {
    let store = Store::new();

    let results = one_group(
        &store.budget,
        vec![
            (1, Some(audit(1, "lost"))),
            (2, Some(failing_audit(2))),
            (4, None),
        ],
    )
    .await;

    // The first charge's audit row was written in the aborted transaction and its extra work
    // cannot run twice, so it fails rather than commit without its row.
    assert_eq!(
        results[0],
        Err("extra work in the budget transaction failed")
    );
    assert_eq!(
        results[1],
        Err("extra work in the budget transaction failed")
    );
    assert_eq!(results[2], Ok(ChargeOutcome::Charged { used: 4 }));
    assert!(audit_rows(&store.budget).is_empty());

    let store = store.reopen();
    assert_eq!(store.budget.used("agt_a", DAY), 4);
}

/// Awaits every task and keeps the outcome or the error's message.
async fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<Result<ChargeOutcome>>>,
) -> Vec<Result<ChargeOutcome, &'static str>> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task").map_err(|e| match e {
            BudgetError::ExtraWork(_) => "extra work in the budget transaction failed",
            BudgetError::ExtraWorkPanicked => "extra work in the budget transaction panicked",
            other => panic!("unexpected error {other}"),
        }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_the_whole_group_and_moves_no_counter() {
    let backend = FlakyBackend::default();
    let fail_sync = Arc::clone(&backend.fail_sync);
    let db = Database::builder()
        .create_with_backend(backend)
        .expect("database");
    let budget = Budget::open(Arc::new(db)).expect("budget");
    let (handle, writer) = budget.writer();
    let thread = std::thread::spawn(move || writer.run());
    handle
        .charge(charge("agt_a", DAY, 5, 100))
        .await
        .expect("charge");
    let commits = budget.commit_count();

    fail_sync.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let h = handle.clone();
        let mut c = charge("agt_a", DAY, 10, 100);
        if i == 1 {
            c.extra = Some(audit(i, "with extra work"));
        }
        tasks.push(tokio::spawn(async move { h.charge(c).await }));
    }
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Err(BudgetError::Storage(_))
        ));
    }
    assert_eq!(budget.used("agt_a", DAY), 5);
    assert_eq!(budget.commit_count(), commits);

    // redb refuses every later write until the database is reopened, even once the disk works
    // again: charging fails closed rather than building on a group that was never durable.
    fail_sync.store(false, Ordering::SeqCst);
    assert!(matches!(
        handle.charge(charge("agt_a", DAY, 1, 100)).await,
        Err(BudgetError::Storage(_))
    ));
    assert_eq!(budget.used("agt_a", DAY), 5);
    drop(handle);
    thread.join().expect("writer");
}

#[tokio::test]
async fn a_handle_without_a_running_writer_reports_it() {
    let store = Store::new();
    let (handle, writer) = store.budget.writer();
    drop(writer);
    let err = handle
        .charge(charge("agt_a", DAY, 1, 10))
        .await
        .expect_err("no writer");
    assert!(matches!(err, BudgetError::WriterStopped));
    assert_eq!(err.to_string(), "budget writer is not running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_budget_still_respect_the_limit() {
    let store = Store::new();
    let first = Running::start(&store.budget);
    let second = Running::start(&store.budget);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let h = if i % 2 == 0 {
            first.handle.clone()
        } else {
            second.handle.clone()
        };
        tasks.push(tokio::spawn(async move {
            h.charge(charge("agt_a", DAY, 3, 150)).await
        }));
    }
    let mut charged = 0;
    for task in tasks {
        if let ChargeOutcome::Charged { .. } = task.await.expect("task").expect("charge") {
            charged += 3;
        }
    }
    assert_eq!(charged, 150);
    assert_eq!(store.budget.used("agt_a", DAY), 150);
    first.stop();
    second.stop();
}

#[test]
fn redb_refuses_a_savepoint_once_a_table_is_open() {
    // Pins the redb behaviour that rules out one savepoint per request inside a shared
    // transaction (see `ChargeWriter`). If redb ever allows it, a failing extra work could be
    // rolled back alone instead of failing those that ran before it and retrying the group.
    let store = Store::new();
    let txn = store.budget.shared.db.begin_write().expect("write");
    txn.open_table(AUDIT).expect("table");
    assert!(matches!(
        txn.ephemeral_savepoint(),
        Err(redb::SavepointError::InvalidSavepoint)
    ));
}

#[test]
fn retention_keeps_the_given_number_of_days_up_to_today() {
    let today = datetime!(2026-05-06 0:00 UTC).date();
    assert_eq!(
        retention_cutoff(today, 90),
        datetime!(2026-02-06 0:00 UTC).date()
    );
    assert_eq!(retention_cutoff(today, 1), today);
    assert_eq!(retention_cutoff(today, 0), today);
    assert_eq!(retention_cutoff(today, u32::MAX), time::Date::MIN);
}

#[test]
fn debug_of_a_charge_hides_the_extra_work() {
    let mut c = charge("agt_a", DAY, 1, 2);
    c.extra = Some(audit(1, "x"));
    assert_eq!(
        format!("{c:?}"),
        "Charge { agent_id: \"agt_a\", day: 2026-05-06, tokens: 1, limit: 2, extra: true }"
    );
}

#[test]
fn a_group_whose_requests_all_bring_extra_work_takes_one_transaction() {
    let store = Store::new();
    let (handle, writer) = store.budget.writer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let tasks: Vec<_> = (0..3u64)
        .map(|i| {
            let h = handle.clone();
            let mut c = charge("agt_a", DAY, 1, 10);
            c.extra = Some(audit(i, "x"));
            rt.spawn(async move { h.charge(c).await })
        })
        .collect();
    rt.block_on(queued(&handle, 3));
    let thread = std::thread::spawn(move || writer.run());
    for task in tasks {
        rt.block_on(task).expect("task").expect("charge");
    }
    assert_eq!(store.budget.commit_count(), 1);
    assert_eq!(store.budget.transaction_count(), 1);
    assert_eq!(audit_rows(&store.budget).len(), 3);
    drop(handle);
    thread.join().expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_with_extra_work_take_fewer_transactions_than_charges() {
    // The writer runs while the charges arrive, as in production; each brings its audit row.
    let store = Store::new();
    let w = Running::start(&store.budget);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let h = w.handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = charge("agt_a", DAY, 1, 1_000);
            c.extra = Some(audit(i, "call"));
            h.charge(c).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("charge");
    }
    let transactions = store.budget.transaction_count();
    assert!(
        transactions < 200,
        "200 charges took {transactions} transactions"
    );
    assert_eq!(transactions, store.budget.commit_count());
    assert_eq!(store.budget.used("agt_a", DAY), 200);
    assert_eq!(audit_rows(&store.budget).len(), 200);
    w.stop();
}

#[test]
fn declined_is_recognised_only_in_its_own_error() {
    assert!(Declined::is(&Declined.into()));
    assert!(!Declined::is(&redb::Error::Corrupted("x".to_owned())));
    assert!(!Declined::is(&redb::Error::Io(std::io::Error::other(
        "another cause"
    ))));
    assert_eq!(Declined.to_string(), "extra work declined its request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_observer_hears_of_every_durable_commit_and_of_nothing_else() {
    let store = Store::new();
    let heard: Arc<std::sync::Mutex<Vec<std::time::Duration>>> = Arc::default();
    let log = Arc::clone(&heard);
    let (handle, writer) = store.budget.writer();
    let writer = writer.on_commit(Box::new(move |took| log.lock().unwrap().push(took)));
    let thread = std::thread::spawn(move || writer.run());

    handle
        .charge(charge("agt_a", DAY, 1, 10))
        .await
        .expect("charge");
    handle
        .charge(charge("agt_a", DAY, 2, 10))
        .await
        .expect("charge");
    // A group whose only request declines commits nothing, so it is not reported.
    let mut declined = charge("agt_a", DAY, 1, 10);
    declined.extra = Some(Box::new(|_, _| Err(Declined.into())));
    handle.charge(declined).await.expect_err("declined");

    drop(handle);
    thread.join().expect("writer thread");
    assert_eq!(store.budget.commit_count(), 2);
    assert_eq!(heard.lock().unwrap().len(), 2);
}
