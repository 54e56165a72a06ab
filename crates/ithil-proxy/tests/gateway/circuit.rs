//! The circuit breaker in the tool-call pipeline, against a real downstream that fails on
//! command, with the harness's manual clock stepping over the break.

use std::sync::atomic::Ordering;

use http::StatusCode;
use ithil_proxy::circuit::CircuitState;
use ithil_proxy::gateway::{ErrorStatus, GatewayConfig};
use ithil_registry::NewAgent;
use serde_json::json;

use crate::support::{Harness, ten_words};

/// Opens the circuit of `flaky` with five failed calls, checking each answer.
async fn open_flaky(h: &Harness, token: &str, session: &str) {
    h.downstream.control.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let reply = h.call(token, session, "getFlaky", json!({})).await;
        assert_eq!(reply.error_code(), -32002, "{}", reply.text());
    }
    assert_eq!(h.downstream.count("/flaky"), 5);
}

#[tokio::test]
async fn five_failures_open_the_circuit_and_later_calls_never_reach_the_downstream() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    open_flaky(&h, &token, &s).await;

    let reply = h.call(&token, &s, "getFlaky", json!({})).await;
    // The default mode answers 200 with the JSON-RPC error, like every other refusal.
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.error_code(), -32003);
    assert_eq!(
        reply.json()["error"]["message"],
        "circuit open: downstream flaky is isolated; retry after 30 s"
    );
    assert_eq!(reply.json()["error"]["data"]["downstream"], "flaky");
    assert_eq!(reply.json()["error"]["data"]["retryAfterSeconds"], 30);
    assert_eq!(
        h.downstream.count("/flaky"),
        5,
        "the downstream was contacted"
    );

    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "circuit_open");
    assert_eq!(record.tool.as_deref(), Some("getFlaky"));
    assert_eq!(record.tokens, 0);
    assert_eq!(record.downstream_status, None);
    assert_eq!(h.used_today(&agent.agent_id), 0);

    // Other downstreams are not affected.
    let other = h.call(&token, &s, "getPost", json!({ "id": "1" })).await;
    assert_eq!(other.json()["result"]["isError"], false);
}

#[tokio::test]
async fn the_reference_mode_answers_an_open_circuit_with_503_and_retry_after() {
    let cfg = GatewayConfig {
        error_status: ErrorStatus::Reference,
        ..GatewayConfig::default()
    };
    let h = Harness::extended(cfg).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    h.downstream.control.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let reply = h.call(&token, &s, "getFlaky", json!({})).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    }

    h.clock.advance(time::Duration::seconds(10));
    let reply = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("retry-after"), Some("20"));
    assert_eq!(reply.error_code(), -32003);
    assert_eq!(
        reply.json()["error"]["message"],
        "circuit open: downstream flaky is isolated; retry after 20 s"
    );
}

#[tokio::test]
async fn after_the_break_one_probe_reaches_the_downstream_and_its_success_closes_the_circuit() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    open_flaky(&h, &token, &s).await;
    assert_eq!(
        h.gateway.circuits().state("flaky"),
        Some(CircuitState::Open)
    );

    h.downstream.control.failing.store(false, Ordering::SeqCst);
    h.clock.advance(time::Duration::seconds(30));
    let probe = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(probe.json()["result"]["isError"], false, "{}", probe.text());
    assert_eq!(h.downstream.count("/flaky"), 6);
    assert_eq!(
        h.gateway.circuits().state("flaky"),
        Some(CircuitState::Closed)
    );

    let next = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(next.json()["result"]["isError"], false);

    let changes: Vec<(CircuitState, CircuitState)> = h
        .transitions
        .lock()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(&*t.downstream, "flaky");
            (t.from, t.to)
        })
        .collect();
    assert_eq!(
        changes,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );
}

#[tokio::test]
async fn a_failed_probe_opens_the_circuit_for_a_fresh_break() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    open_flaky(&h, &token, &s).await;

    h.clock.advance(time::Duration::seconds(30));
    let probe = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(probe.error_code(), -32002);
    assert_eq!(h.downstream.count("/flaky"), 6);

    let refused = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(refused.error_code(), -32003);
    assert_eq!(
        refused.json()["error"]["data"]["retryAfterSeconds"],
        30,
        "the break starts again at the failed probe"
    );
    assert_eq!(h.downstream.count("/flaky"), 6);
}

#[tokio::test]
async fn client_errors_never_open_the_circuit() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for _ in 0..10 {
        let reply = h
            .call(&token, &s, "getFlakyStatus", json!({ "code": "404" }))
            .await;
        assert_eq!(reply.json()["result"]["isError"], true, "{}", reply.text());
    }
    assert_eq!(
        h.gateway.circuits().state("flaky"),
        Some(CircuitState::Closed)
    );
    assert!(h.transitions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn refused_connections_open_the_circuit_of_their_downstream() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for _ in 0..5 {
        let reply = h.call(&token, &s, "unreachable", json!({})).await;
        assert_eq!(reply.error_code(), -32002);
    }
    let reply = h.call(&token, &s, "unreachable", json!({})).await;
    assert_eq!(reply.error_code(), -32003);
    assert_eq!(h.gateway.circuits().state("dead"), Some(CircuitState::Open));
}

#[tokio::test]
async fn invalid_arguments_never_reach_the_circuit() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    open_flaky(&h, &token, &s).await;
    h.clock.advance(time::Duration::seconds(30));

    // A call refused for its arguments holds the probe only until it is refused.
    let invalid = h
        .call(&token, &s, "getFlakyStatus", json!({ "code": 5 }))
        .await;
    assert_eq!(invalid.error_code(), -32602);
    h.downstream.control.failing.store(false, Ordering::SeqCst);
    let probe = h.call(&token, &s, "getFlaky", json!({})).await;
    assert_eq!(probe.json()["result"]["isError"], false, "{}", probe.text());
}

#[tokio::test]
async fn an_exhausted_budget_is_refused_before_the_circuit_is_asked() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let (_, spent) = h.agent(NewAgent {
        daily_token_budget: Some(ten_words()),
        ..NewAgent::new("spent")
    });
    let s = h.initialize(&token, "2025-11-25").await;
    open_flaky(&h, &token, &s).await;

    let sp = h.initialize(&spent, "2025-11-25").await;
    let first = h.call(&spent, &sp, "getText", json!({ "n": "10" })).await;
    assert_eq!(first.json()["result"]["isError"], false);
    let reply = h.call(&spent, &sp, "getFlaky", json!({})).await;
    assert_eq!(reply.error_code(), -32029);
}

#[tokio::test]
async fn a_catalog_swap_keeps_known_circuits_and_forgets_removed_ones() {
    let h = Harness::extended(GatewayConfig::default()).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let names = |h: &Harness| -> Vec<String> {
        h.gateway
            .circuits()
            .snapshot()
            .into_iter()
            .map(|c| c.downstream)
            .collect()
    };
    assert_eq!(names(&h), ["api", "dead", "flaky", "held"]);
    open_flaky(&h, &token, &s).await;

    let snapshot = h.gateway.circuits().snapshot();
    let flaky = snapshot.iter().find(|c| c.downstream == "flaky").unwrap();
    assert_eq!(flaky.state, CircuitState::Open);
    assert_eq!(flaky.recent_failures, 5);
    assert_eq!(flaky.opened_count, 1);
    assert_eq!(serde_json::to_value(flaky).unwrap()["state"], json!("open"));

    // The same catalog again: the open circuit stays open.
    h.gateway.replace_catalog((*h.gateway.catalog()).clone());
    assert_eq!(
        h.gateway.circuits().state("flaky"),
        Some(CircuitState::Open)
    );

    let mut smaller = (*h.gateway.catalog()).clone();
    smaller.downstreams.remove("flaky");
    smaller.tools.retain(|_, tool| tool.downstream != "flaky");
    h.gateway.replace_catalog(smaller);
    assert_eq!(names(&h), ["api", "dead", "held"]);
}
