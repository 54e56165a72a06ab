//! Budgets and the audit trail as the gateway applies them.

use ithil_budget::TokenCounter;
use ithil_proxy::gateway::{BUDGET_EXHAUSTED_MESSAGE, GatewayConfig};
use ithil_registry::{Agent, NewAgent};
use serde_json::json;

use crate::support::{Harness, ten_words, withheld_message};

/// An agent with three tokens left after one ten-word call, its token and its session.
async fn three_tokens_left(h: &Harness) -> (Agent, String, String) {
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(ten_words() + 3),
        ..NewAgent::new("tight")
    });
    let s = h.initialize(&token, "2025-11-25").await;
    h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    (agent, token, s)
}

#[tokio::test]
async fn an_agent_with_nothing_left_is_refused_before_the_downstream() {
    let h = Harness::new().await;
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(ten_words()),
        ..NewAgent::new("exact")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let first = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(first.json()["result"]["isError"], false);
    assert_eq!(h.used_today(&agent.agent_id), ten_words());

    let second = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(second.error_code(), -32029);
    assert_eq!(second.json()["error"]["message"], BUDGET_EXHAUSTED_MESSAGE);
    assert_eq!(h.downstream.seen().len(), 1);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "budget_exhausted"
    );
}

#[tokio::test]
async fn a_result_that_does_not_fit_is_withheld_and_not_charged() {
    let h = Harness::new().await;
    let (agent, token, s) = three_tokens_left(&h).await;

    let withheld = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(withheld.error_code(), -32029);
    assert!(withheld.json().get("result").is_none());
    assert_eq!(h.downstream.seen().len(), 2);
    assert_eq!(h.used_today(&agent.agent_id), ten_words());
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "withheld_over_budget");
    assert_eq!(record.tokens, 0);
}

#[tokio::test]
async fn the_budget_starts_again_at_midnight_utc() {
    let h = Harness::new().await;
    let (_, token) = h.agent(NewAgent {
        daily_token_budget: Some(ten_words()),
        ..NewAgent::new("daily")
    });
    let s = h.initialize(&token, "2025-11-25").await;
    h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    let refused = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(refused.error_code(), -32029);

    // 12:00 plus 12 hours is 00:00 the next day; the session was used 12 hours ago, so a new
    // one is opened.
    h.clock.advance(time::Duration::hours(12));
    let s = h.initialize(&token, "2025-11-25").await;
    let again = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(again.json()["result"]["isError"], false);
}

#[tokio::test]
async fn agents_without_their_own_limit_use_the_default() {
    let h = Harness::build(GatewayConfig::default(), 1).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(reply.error_code(), -32029);
}

#[tokio::test]
async fn charged_tokens_equal_the_tokens_in_the_audit_trail() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for n in ["3", "30", "300"] {
        h.call(&token, &s, "getText", json!({ "n": n })).await;
    }
    h.call(&token, &s, "getPost", json!({ "id": "9" })).await;
    h.call(&token, &s, "getStatus", json!({ "code": "418" }))
        .await;

    let used = h.used_today(&agent.agent_id);
    let recorded: u64 = h.records(&agent.agent_id).iter().map(|r| r.tokens).sum();
    assert!(used > 0);
    assert_eq!(used, recorded);
}

#[tokio::test]
async fn every_request_with_a_token_leaves_one_record_also_in_the_sink() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    h.post(&token, Some(&s), Some("2025-11-25"), &ping).await;
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    h.post(&token, Some(&s), Some("2025-11-25"), &list).await;
    h.call(&token, &s, "getPost", json!({ "id": "1" })).await;

    let records = h.records(&agent.agent_id);
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "initialize",
            "notifications/initialized",
            "ping",
            "tools/list",
            "tools/call"
        ]
    );
    let sunk = h.sunk.lock().unwrap().clone();
    assert_eq!(sunk, records);
    let mut ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_calls_never_charge_past_the_limit_and_charged_results_are_the_ones_received() {
    let h = std::sync::Arc::new(Harness::new().await);
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(7 * ten_words() + 3),
        ..NewAgent::new("racer")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (h, token, s) = (std::sync::Arc::clone(&h), token.clone(), s.clone());
        tasks.spawn(async move { h.call(&token, &s, "getText", json!({ "n": "10" })).await });
    }
    let mut received = 0;
    let mut withheld = 0;
    while let Some(reply) = tasks.join_next().await {
        let doc = reply.unwrap().json();
        if doc.get("result").is_some() {
            received += TokenCounter::default()
                .count(doc["result"]["content"][0]["text"].as_str().unwrap());
        } else {
            assert_eq!(doc["error"]["code"], -32029);
            withheld += 1;
        }
    }
    let used = h.used_today(&agent.agent_id);
    assert_eq!(used, 7 * ten_words());
    assert_eq!(received, used);
    assert_eq!(withheld, 23);
}

#[tokio::test]
async fn a_withheld_result_says_what_it_cost_and_what_was_left_instead_of_exhausted() {
    // The withheld answer used to say "Daily token budget exhausted" although tokens were left,
    // so an agent stopped calling when a smaller result would still have fit.
    let h = Harness::new().await;
    let (_, token, s) = three_tokens_left(&h).await;

    let withheld = h.call(&token, &s, "getText", json!({ "n": "10" })).await;

    assert_eq!(withheld.error_code(), -32029);
    assert_eq!(
        withheld.json()["error"]["message"],
        withheld_message(ten_words(), 3)
    );
    // A result that fits in the 3 tokens left still comes through.
    let small = h.call(&token, &s, "getText", json!({ "n": "1" })).await;
    assert_eq!(small.json()["result"]["isError"], false, "{}", small.text());
}

#[tokio::test]
async fn a_write_is_not_carried_out_when_the_budget_left_cannot_hold_its_largest_result() {
    let h = Harness::new().await;
    // createPost keeps the default maxResponseTokens of 2000.
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(1999),
        ..NewAgent::new("small writer")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = h
        .call(&token, &s, "createPost", json!({ "title": "never sent" }))
        .await;

    assert_eq!(reply.error_code(), -32029);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("up to 2000 tokens"), "{message}");
    assert!(message.contains("(1999 tokens)"), "{message}");
    assert!(
        message.contains("the write was not carried out"),
        "{message}"
    );
    assert!(
        h.downstream.seen().is_empty(),
        "the write reached the downstream"
    );
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "budget_exhausted");
    assert_eq!(record.downstream_status, None);
}

#[tokio::test]
async fn a_write_runs_when_the_budget_left_holds_its_largest_result() {
    let h = Harness::new().await;
    let (_, token) = h.agent(NewAgent {
        daily_token_budget: Some(2000),
        ..NewAgent::new("writer")
    });
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "createPost", json!({ "title": "sent" }))
        .await;
    assert_eq!(reply.json()["result"]["isError"], false, "{}", reply.text());
    assert_eq!(h.downstream.seen().len(), 1);
}
