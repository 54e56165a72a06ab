//! Changes to an agent while one of its calls waits for the downstream: the call's result is
//! released only under the agent as the registry holds it when the result is charged.
//!
//! The `hold*` tools wait at the downstream until the test releases them, so each test changes
//! the agent at a known point: after the downstream has the request, before it answers.

use std::sync::Arc;

use http::StatusCode;
use ithil_audit::Outcome;
use ithil_proxy::gateway::GatewayConfig;
use ithil_registry::{AgentPatch, NewAgent};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Harness, Reply, ten_words, withheld_message};

/// Starts `tool` in a task; it waits at the downstream until [`TestDownstream::release`].
fn spawn_call(
    h: &Arc<Harness>,
    token: &str,
    session: &str,
    tool: &str,
    args: Value,
) -> JoinHandle<Reply> {
    let (h, token, session, tool) = (
        Arc::clone(h),
        token.to_owned(),
        session.to_owned(),
        tool.to_owned(),
    );
    tokio::spawn(async move { h.call(&token, &session, &tool, args).await })
}

/// Calls `tool` with ten words, runs `change` once the downstream holds the request, then lets
/// the downstream answer and returns the reply.
async fn call_changed_midway(
    h: &Arc<Harness>,
    token: &str,
    session: &str,
    tool: &str,
    change: impl FnOnce(&Harness),
) -> Reply {
    let call = spawn_call(h, token, session, tool, json!({ "n": "10" }));
    h.downstream.arrived("/hold/", 1).await;
    change(h);
    h.downstream.release();
    call.await.unwrap()
}

/// The patch that deactivates an agent.
fn deactivate() -> AgentPatch {
    AgentPatch {
        is_active: Some(false),
        ..AgentPatch::default()
    }
}

/// The patch that sets an agent's daily limit to `limit`.
fn limit(limit: u64) -> AgentPatch {
    AgentPatch {
        daily_token_budget: Some(Some(limit)),
        ..AgentPatch::default()
    }
}

#[tokio::test]
async fn a_call_whose_agent_is_deactivated_while_it_waits_gets_no_result_and_no_charge() {
    // The agent was looked up once, when the request arrived, so a call in flight when its
    // agent was deactivated still delivered its result and was charged.
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = call_changed_midway(&h, &token, &s, "holdText", |h| {
        h.update_agent(&agent.agent_id, deactivate());
    })
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(reply.error_code(), -32001);
    assert_eq!(reply.json()["id"], 7);
    assert!(reply.json().get("result").is_none(), "{}", reply.text());
    assert_eq!(h.used_today(&agent.agent_id), 0);
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "unauthenticated");
    assert_eq!(record.tool.as_deref(), Some("holdText"));
    assert_eq!(record.tokens, 0);
    assert_eq!(record.downstream_status, Some(200));
}

#[tokio::test]
async fn a_call_whose_agent_is_deleted_while_it_waits_gets_no_result() {
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = call_changed_midway(&h, &token, &s, "holdText", |h| {
        h.registry.delete(&agent.agent_id).unwrap();
    })
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error_code(), -32001);
    assert_eq!(h.used_today(&agent.agent_id), 0);
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "unauthenticated");
    assert_eq!(record.tokens, 0);
}

#[tokio::test]
async fn a_limit_lowered_while_a_call_waits_applies_to_its_charge() {
    // The limit was read at the pre-check, so a result was charged against a limit the
    // operator had already lowered, and the day's total passed the new limit.
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(1000),
        ..NewAgent::new("lowered")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = call_changed_midway(&h, &token, &s, "holdText", |h| {
        h.update_agent(&agent.agent_id, limit(5));
    })
    .await;

    assert_eq!(reply.error_code(), -32029, "{}", reply.text());
    assert_eq!(
        reply.json()["error"]["message"],
        withheld_message(ten_words(), 5)
    );
    assert_eq!(h.used_today(&agent.agent_id), 0);
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "withheld_over_budget");
    assert_eq!(record.tokens, 0);
}

#[tokio::test]
async fn a_limit_raised_while_a_call_waits_lets_its_result_through() {
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(1),
        ..NewAgent::new("raised")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = call_changed_midway(&h, &token, &s, "holdText", |h| {
        h.update_agent(&agent.agent_id, limit(1000));
    })
    .await;

    assert_eq!(reply.json()["result"]["isError"], false, "{}", reply.text());
    assert_eq!(h.used_today(&agent.agent_id), ten_words());
}

#[tokio::test]
async fn an_allowlist_narrowed_while_a_call_waits_withholds_its_result() {
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.agent(NewAgent {
        allowed_tools: Some(vec!["holdText".into(), "getPost".into()]),
        ..NewAgent::new("narrowed")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let narrow = AgentPatch {
        allowed_tools: Some(Some(vec!["getPost".into()])),
        ..AgentPatch::default()
    };
    let reply = call_changed_midway(&h, &token, &s, "holdText", |h| {
        h.update_agent(&agent.agent_id, narrow);
    })
    .await;

    assert_eq!(reply.error_code(), -32003, "{}", reply.text());
    assert!(reply.json().get("result").is_none());
    assert_eq!(h.used_today(&agent.agent_id), 0);
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "denied_allowlist");
    assert_eq!(record.downstream_status, Some(200));
}

#[tokio::test]
async fn a_withheld_write_says_that_the_write_was_carried_out() {
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.agent(NewAgent {
        daily_token_budget: Some(100),
        ..NewAgent::new("writer")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = call_changed_midway(&h, &token, &s, "holdWrite", |h| {
        h.update_agent(&agent.agent_id, limit(5));
    })
    .await;

    assert_eq!(reply.error_code(), -32029, "{}", reply.text());
    let error = &reply.json()["error"];
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("The write was carried out (the downstream answered HTTP 201)"),
        "{message}"
    );
    assert!(message.contains("(5 tokens)"), "{message}");
    assert_eq!(
        error["data"],
        json!({ "writePerformed": true, "downstreamStatus": 201 })
    );
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "withheld_over_budget");
    assert_eq!(record.downstream_status, Some(201));
}

#[tokio::test]
async fn a_batch_stops_at_the_message_after_its_agent_was_deactivated() {
    // Every message of a batch ran under the agent as it was when the batch arrived.
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-03-26").await;

    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "tools/call",
          "params": { "name": "holdText", "arguments": { "n": "10" } } },
        { "jsonrpc": "2.0", "id": 2, "method": "ping" },
        { "jsonrpc": "2.0", "method": "notifications/progress" },
        { "jsonrpc": "2.0", "id": 3, "method": "tools/call",
          "params": { "name": "getPost", "arguments": { "id": "1" } } }
    ]);
    let send = {
        let (h, token, s) = (Arc::clone(&h), token.clone(), s.clone());
        tokio::spawn(async move { h.post(&token, Some(&s), Some("2025-03-26"), &batch).await })
    };
    h.downstream.arrived("/hold/", 1).await;
    h.update_agent(&agent.agent_id, deactivate());
    h.downstream.release();
    let reply = send.await.unwrap();

    assert_eq!(reply.status, StatusCode::OK);
    let replies = reply.json();
    let replies = replies.as_array().unwrap();
    assert_eq!(replies.len(), 3, "{replies:?}");
    for (reply, id) in replies.iter().zip([1, 2, 3]) {
        assert_eq!(reply["id"], id);
        assert_eq!(reply["error"]["code"], -32001, "{reply}");
    }
    assert_eq!(
        h.downstream.count("/posts/"),
        0,
        "a later call was forwarded"
    );
    assert_eq!(h.used_today(&agent.agent_id), 0);

    let records = h.records(&agent.agent_id);
    let last: Vec<(&str, &str)> = records[records.len() - 4..]
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        last,
        [
            ("tools/call", "unauthenticated"),
            ("ping", "unauthenticated"),
            ("notifications/progress", "unauthenticated"),
            ("tools/call", "unauthenticated"),
        ]
    );
}

#[tokio::test]
async fn a_cancelled_call_is_recorded_with_the_cancelled_outcome() {
    let h = Arc::new(Harness::extended(GatewayConfig::default()).await);
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let call = spawn_call(&h, &token, &s, "holdText", json!({ "n": "10" }));
    h.downstream.arrived("/hold/", 1).await;
    let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                         "params": { "requestId": 7, "reason": "user" } });
    let ack = h.post(&token, Some(&s), Some("2025-11-25"), &cancel).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    let reply = call.await.unwrap();

    assert_eq!(reply.error_code(), -32800);
    let record = h
        .records(&agent.agent_id)
        .into_iter()
        .find(|r| r.action == "tools/call")
        .unwrap();
    assert_eq!(record.outcome.parse::<Outcome>(), Ok(Outcome::Cancelled));
    assert_eq!(record.tokens, 0);
}
