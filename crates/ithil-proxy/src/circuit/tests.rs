use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use http::StatusCode;
use ithil_token::ManualClock;
use time::macros::datetime;

use super::*;

const START: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

fn breakers(config: CircuitConfig) -> (CircuitBreakers, ManualClock) {
    let clock = ManualClock::new(START);
    let breakers = CircuitBreakers::new(config, Arc::new(clock.clone())).expect("valid config");
    (breakers, clock)
}

fn default_breakers() -> (CircuitBreakers, ManualClock) {
    breakers(CircuitConfig::default())
}

/// Runs one call through the circuit of `posts` and returns the transition it caused.
fn call(breakers: &CircuitBreakers, outcome: Outcome) -> Option<Transition> {
    let permit = breakers
        .acquire("posts")
        .expect("the circuit lets the call through");
    permit.record(outcome)
}

fn calls(breakers: &CircuitBreakers, outcome: Outcome, n: usize) -> Vec<Transition> {
    (0..n).filter_map(|_| call(breakers, outcome)).collect()
}

fn advance(clock: &ManualClock, by: Duration) {
    clock.advance(time::Duration::try_from(by).expect("small duration"));
}

/// Opens the circuit of `posts` with the default configuration.
fn open(breakers: &CircuitBreakers) {
    let transitions = calls(breakers, Outcome::Failure, 5);
    assert_eq!(transitions.len(), 1);
    assert_eq!(breakers.state("posts"), Some(CircuitState::Open));
}

/// Opens the circuit of `posts` and moves the clock past its break.
fn open_and_wait(breakers: &CircuitBreakers, clock: &ManualClock) {
    open(breakers);
    advance(
        clock,
        CircuitConfig::DEFAULT_BREAK_DURATION + Duration::from_secs(1),
    );
}

#[test]
fn the_default_configuration_is_valid_and_matches_the_reference() {
    let config = CircuitConfig::default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.minimum_throughput, 5);
    assert_eq!(config.failure_ratio, 1.0);
    assert_eq!(config.sampling_duration, Duration::from_secs(30));
    assert_eq!(config.break_duration, Duration::from_secs(30));
}

#[test]
fn validation_names_the_field_out_of_range() {
    let cases = [
        (
            CircuitConfig {
                minimum_throughput: 0,
                ..CircuitConfig::default()
            },
            "circuitBreaker.minimumThroughput",
        ),
        (
            CircuitConfig {
                failure_ratio: 0.0,
                ..CircuitConfig::default()
            },
            "circuitBreaker.failureRatio",
        ),
        (
            CircuitConfig {
                failure_ratio: 1.5,
                ..CircuitConfig::default()
            },
            "circuitBreaker.failureRatio",
        ),
        (
            CircuitConfig {
                failure_ratio: f64::NAN,
                ..CircuitConfig::default()
            },
            "circuitBreaker.failureRatio",
        ),
        (
            CircuitConfig {
                sampling_duration: Duration::ZERO,
                ..CircuitConfig::default()
            },
            "circuitBreaker.samplingDuration",
        ),
        (
            CircuitConfig {
                break_duration: Duration::ZERO,
                ..CircuitConfig::default()
            },
            "circuitBreaker.breakDuration",
        ),
        (
            CircuitConfig {
                break_duration: CircuitConfig::MAX_DURATION + Duration::from_secs(1),
                ..CircuitConfig::default()
            },
            "circuitBreaker.breakDuration",
        ),
    ];

    for (config, key) in cases {
        let error = config.validate().expect_err("out of range");
        assert_eq!(error.key(), key);
        assert!(error.to_string().starts_with(key), "{error}");
    }
}

#[test]
fn an_invalid_configuration_is_refused_when_the_breakers_are_created() {
    let config = CircuitConfig {
        minimum_throughput: 0,
        ..CircuitConfig::default()
    };
    let error = CircuitBreakers::new(config, Arc::new(ManualClock::new(START))).unwrap_err();
    assert_eq!(error, CircuitConfigError::MinimumThroughput);
}

#[test]
fn statuses_are_classified_by_their_class() {
    assert_eq!(Outcome::from_status(StatusCode::OK), Outcome::Success);
    assert_eq!(Outcome::from_status(StatusCode::FOUND), Outcome::Success);
    assert_eq!(
        Outcome::from_status(StatusCode::NOT_FOUND),
        Outcome::Ignored
    );
    assert_eq!(
        Outcome::from_status(StatusCode::TOO_MANY_REQUESTS),
        Outcome::Ignored
    );
    assert_eq!(
        Outcome::from_status(StatusCode::INTERNAL_SERVER_ERROR),
        Outcome::Failure
    );
    assert_eq!(
        Outcome::from_status(StatusCode::GATEWAY_TIMEOUT),
        Outcome::Failure
    );
}

#[test]
fn the_circuit_opens_exactly_at_the_minimum_throughput_with_ratio_one() {
    let (breakers, _clock) = default_breakers();

    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));

    let transition = call(&breakers, Outcome::Failure).expect("the fifth failure opens it");
    assert_eq!(&*transition.downstream, "posts");
    assert_eq!(transition.from, CircuitState::Closed);
    assert_eq!(transition.to, CircuitState::Open);
    assert_eq!(transition.at, START);
    assert_eq!(breakers.state("posts"), Some(CircuitState::Open));
}

#[test]
fn the_circuit_stays_closed_below_the_minimum_throughput() {
    let (breakers, _clock) = breakers(CircuitConfig {
        minimum_throughput: 20,
        ..CircuitConfig::default()
    });

    assert!(calls(&breakers, Outcome::Failure, 19).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));
}

#[test]
fn one_success_among_the_samples_keeps_a_ratio_of_one_from_opening() {
    let (breakers, _clock) = default_breakers();
    call(&breakers, Outcome::Success);

    assert!(calls(&breakers, Outcome::Failure, 10).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));
}

#[test]
fn client_errors_never_count() {
    let (breakers, _clock) = default_breakers();

    // Neither as failures nor as samples: 4 failures among 50 client errors stay below the
    // minimum throughput, and the fifth failure opens with ratio 1.0 as if they were not there.
    assert!(calls(&breakers, Outcome::Ignored, 50).is_empty());
    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());
    assert!(calls(&breakers, Outcome::Ignored, 50).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));

    let snapshot = &breakers.snapshot()[0];
    assert_eq!(
        (snapshot.recent_successes, snapshot.recent_failures),
        (0, 4)
    );

    assert!(call(&breakers, Outcome::Failure).is_some());
}

#[test]
fn half_the_calls_failing_opens_a_circuit_with_ratio_one_half() {
    let (breakers, _clock) = breakers(CircuitConfig {
        minimum_throughput: 10,
        failure_ratio: 0.5,
        ..CircuitConfig::default()
    });

    // Six successes and four failures: ten samples, but only 0.4 of them failed.
    assert!(calls(&breakers, Outcome::Success, 6).is_empty());
    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));

    // Six of twelve is one half.
    assert!(call(&breakers, Outcome::Failure).is_none());
    let transition = call(&breakers, Outcome::Failure).expect("six of twelve failed");
    assert_eq!(transition.to, CircuitState::Open);
}

#[test]
fn failures_older_than_the_sampling_duration_slide_out_of_the_window() {
    let (breakers, clock) = default_breakers();
    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());

    advance(&clock, CircuitConfig::DEFAULT_SAMPLING_DURATION);
    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));
    assert_eq!(breakers.snapshot()[0].recent_failures, 4);

    // The four recent failures and this one are five within the window.
    assert!(call(&breakers, Outcome::Failure).is_some());
}

#[test]
fn failures_spread_over_nine_tenths_of_the_window_still_open_the_circuit() {
    let (breakers, clock) = default_breakers();
    for _ in 0..4 {
        assert!(call(&breakers, Outcome::Failure).is_none());
        advance(&clock, Duration::from_secs(6));
    }
    // The first failure is 24 seconds old now.
    assert!(call(&breakers, Outcome::Failure).is_some());
}

#[test]
fn an_open_circuit_refuses_calls_until_the_break_is_over() {
    let (breakers, clock) = default_breakers();
    open(&breakers);

    let refused = breakers.acquire("posts").expect_err("open");
    assert_eq!(&*refused.downstream, "posts");
    assert_eq!(refused.retry_after, Duration::from_secs(30));
    assert_eq!(refused.retry_after_secs(), 30);
    assert_eq!(refused.to_string(), "circuit of downstream posts is open");

    advance(&clock, Duration::from_millis(29_500));
    let refused = breakers.acquire("posts").expect_err("still open");
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    assert_eq!(refused.retry_after_secs(), 1);
    assert_eq!(breakers.snapshot()[0].opened_count, 1);
}

#[test]
fn an_open_circuit_does_not_affect_other_downstreams() {
    let (breakers, _clock) = default_breakers();
    open(&breakers);

    let permit = breakers.acquire("comments").expect("closed");
    assert!(!permit.is_probe());
    assert_eq!(permit.downstream(), "comments");
    assert!(permit.record(Outcome::Success).is_none());
}

#[test]
fn the_first_call_after_the_break_is_the_probe_and_reports_half_open() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let probe = breakers.acquire("posts").expect("the break is over");
    assert!(probe.is_probe());
    let transition = probe.transition().expect("open to half-open");
    assert_eq!(
        (transition.from, transition.to),
        (CircuitState::Open, CircuitState::HalfOpen)
    );
    assert_eq!(breakers.state("posts"), Some(CircuitState::HalfOpen));

    let refused = breakers
        .acquire("posts")
        .expect_err("the probe is in flight");
    assert_eq!(refused.retry_after, Duration::ZERO);
    assert_eq!(refused.retry_after_secs(), 1);
    drop(probe);
}

#[test]
fn exactly_one_of_fifty_racing_calls_gets_the_probe() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let barrier = Barrier::new(50);
    let results: Vec<Result<Permit, Open>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    breakers.acquire("posts")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });

    // Every result is kept until here, so no dropped probe could have let a second one in.
    let permits: Vec<&Permit> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(permits.len(), 1);
    assert!(permits[0].is_probe());
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 49);
}

#[test]
fn a_successful_probe_closes_the_circuit_with_an_empty_window() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let probe = breakers.acquire("posts").expect("probe");
    let transition = probe.record(Outcome::Success).expect("closes");
    assert_eq!(
        (transition.from, transition.to),
        (CircuitState::HalfOpen, CircuitState::Closed)
    );

    let snapshot = &breakers.snapshot()[0];
    assert_eq!(snapshot.state, CircuitState::Closed);
    assert_eq!(snapshot.since, START + time::Duration::seconds(31));
    assert_eq!(
        (snapshot.recent_successes, snapshot.recent_failures),
        (0, 0)
    );

    // The failures that opened it are gone: four new ones do not reopen it, the fifth does.
    assert!(calls(&breakers, Outcome::Failure, 4).is_empty());
    assert!(call(&breakers, Outcome::Failure).is_some());
}

#[test]
fn a_failed_probe_opens_the_circuit_for_a_fresh_break() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let probe = breakers.acquire("posts").expect("probe");
    let transition = probe.record(Outcome::Failure).expect("reopens");
    assert_eq!(
        (transition.from, transition.to),
        (CircuitState::HalfOpen, CircuitState::Open)
    );

    let refused = breakers.acquire("posts").expect_err("open again");
    assert_eq!(refused.retry_after, Duration::from_secs(30));
    assert_eq!(breakers.snapshot()[0].opened_count, 2);

    advance(&clock, Duration::from_secs(30));
    assert!(breakers.acquire("posts").expect("next probe").is_probe());
}

#[test]
fn a_dropped_probe_permit_frees_the_probe_slot() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let probe = breakers.acquire("posts").expect("probe");
    assert!(breakers.acquire("posts").is_err());
    drop(probe);

    // Still half-open, nothing counted, and the next call is the probe (without a transition,
    // since the circuit did not change state).
    assert_eq!(breakers.state("posts"), Some(CircuitState::HalfOpen));
    let probe = breakers.acquire("posts").expect("the slot is free again");
    assert!(probe.is_probe());
    assert!(probe.transition().is_none());
    assert!(probe.record(Outcome::Success).is_some());
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));
}

#[test]
fn a_probe_answered_with_a_client_error_gives_the_slot_back() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);

    let probe = breakers.acquire("posts").expect("probe");
    assert!(probe.record(Outcome::Ignored).is_none());

    assert_eq!(breakers.state("posts"), Some(CircuitState::HalfOpen));
    assert!(breakers.acquire("posts").expect("next probe").is_probe());
}

#[test]
fn a_dropped_ordinary_permit_counts_nothing() {
    let (breakers, _clock) = default_breakers();
    for _ in 0..10 {
        drop(breakers.acquire("posts").expect("closed"));
    }
    assert_eq!(breakers.snapshot()[0].recent_successes, 0);
    assert_eq!(breakers.snapshot()[0].recent_failures, 0);
}

#[test]
fn an_outcome_from_before_the_circuit_opened_is_not_counted() {
    let (breakers, clock) = default_breakers();
    let slow = breakers.acquire("posts").expect("closed");
    open_and_wait(&breakers, &clock);
    let probe = breakers.acquire("posts").expect("probe");
    assert!(probe.record(Outcome::Success).is_some());

    // The slow call granted before the circuit opened fails now, in the fresh window.
    assert!(slow.record(Outcome::Failure).is_none());
    assert_eq!(breakers.snapshot()[0].recent_failures, 0);
}

#[test]
fn the_snapshot_lists_every_known_downstream_in_name_order() {
    let (breakers, clock) = default_breakers();
    breakers.sync_downstreams(["users", "comments"]);
    call(&breakers, Outcome::Success);
    call(&breakers, Outcome::Failure);
    advance(&clock, Duration::from_secs(1));

    let snapshot = breakers.snapshot();
    let names: Vec<&str> = snapshot.iter().map(|s| s.downstream.as_str()).collect();
    assert_eq!(names, ["comments", "posts", "users"]);
    assert_eq!(snapshot[1].recent_successes, 1);
    assert_eq!(snapshot[1].recent_failures, 1);
    assert_eq!(snapshot[0].state, CircuitState::Closed);
    assert_eq!(snapshot[0].since, START);
}

#[test]
fn syncing_downstreams_keeps_known_circuits_and_forgets_removed_ones() {
    let (breakers, _clock) = default_breakers();
    open(&breakers);
    breakers.sync_downstreams(["posts", "comments"]);
    assert_eq!(breakers.state("posts"), Some(CircuitState::Open));
    assert_eq!(breakers.state("comments"), Some(CircuitState::Closed));

    breakers.sync_downstreams(["comments"]);
    assert_eq!(breakers.state("posts"), None);
    assert_eq!(breakers.snapshot().len(), 1);
}

#[test]
fn the_snapshot_serializes_in_camel_case_with_snake_case_states() {
    let (breakers, clock) = default_breakers();
    open_and_wait(&breakers, &clock);
    let probe = breakers.acquire("posts").expect("probe");

    let json = serde_json::to_value(breakers.snapshot()).expect("serializable");
    assert_eq!(
        json,
        serde_json::json!([{
            "downstream": "posts",
            "state": "half_open",
            "since": "2025-03-01T12:00:31Z",
            "recentSuccesses": 0,
            "recentFailures": 0,
            "openedCount": 1,
        }])
    );
    drop(probe);
}

#[test]
fn a_transition_reads_as_one_sentence() {
    let (breakers, _clock) = default_breakers();
    let transitions = calls(&breakers, Outcome::Failure, 5);
    assert_eq!(
        transitions[0].to_string(),
        "circuit of downstream posts changed from closed to open"
    );
}
