//! What the audit trail keeps of strings the agent wrote: bounded, and through the privacy
//! filter like everything else it keeps.

use ithil_audit::AuditRecord;
use ithil_proxy::gateway::RequestId;
use serde_json::json;

use crate::support::Harness;

/// The bound on a recorded `action` or `tool`, in characters.
const BOUND: usize = 128;

fn assert_clean(text: &str) {
    assert!(
        text.chars().count() <= BOUND,
        "{} chars: {text}",
        text.len()
    );
    assert!(!text.contains("jane@example.com"), "{text}");
    assert!(!text.contains("123-45-6789"), "{text}");
}

fn last(h: &Harness, agent_id: &str) -> AuditRecord {
    h.records(agent_id).pop().unwrap()
}

#[tokio::test]
async fn agent_written_methods_are_bounded_and_filtered_in_the_trail() {
    // An unknown method or notification is recorded as its action; a long one used to be
    // kept whole (notifications) or cut without the privacy filter (requests).
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let method = format!("jane@example.com/123-45-6789/{}", "x".repeat(10_000));

    let note = json!({ "jsonrpc": "2.0", "method": method });
    h.post(&token, Some(&s), Some("2025-11-25"), &note).await;
    let recorded = last(&h, &agent.agent_id);
    assert_clean(&recorded.action);
    assert!(
        recorded
            .action
            .starts_with("[EMAIL REDACTED]/[SSN REDACTED]/xxx")
    );
    assert_eq!(recorded.action.chars().count(), BOUND);

    let request = json!({ "jsonrpc": "2.0", "id": 4, "method": method });
    let reply = h.post(&token, Some(&s), Some("2025-11-25"), &request).await;
    assert_eq!(reply.error_code(), -32601);
    let recorded = last(&h, &agent.agent_id);
    assert_clean(&recorded.action);
    assert!(recorded.action.starts_with("[EMAIL REDACTED]"));
}

#[tokio::test]
async fn agent_written_tool_names_are_bounded_and_filtered_in_the_trail() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let name = format!("{} jane@example.com", "t".repeat(100));

    let reply = h.call(&token, &s, &name, json!({})).await;
    assert_eq!(reply.error_code(), -32602);

    let recorded = last(&h, &agent.agent_id);
    assert_eq!(recorded.outcome, "unknown_tool");
    let tool = recorded.tool.unwrap();
    assert_clean(&tool);
    // Filtered before the cut: the address is replaced, not cut in half.
    assert_eq!(tool, format!("{} [EMAIL REDACTED]", "t".repeat(100)));

    let huge = "y".repeat(100_000);
    h.call(&token, &s, &huge, json!({})).await;
    assert_eq!(last(&h, &agent.agent_id).tool.unwrap(), "y".repeat(BOUND));
}

#[tokio::test]
async fn known_actions_and_tool_names_are_recorded_as_they_are() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    h.call(&token, &s, "getPost", json!({ "id": "1" })).await;
    let recorded = last(&h, &agent.agent_id);
    assert_eq!(recorded.action, "tools/call");
    assert_eq!(recorded.tool.as_deref(), Some("getPost"));
}

#[tokio::test]
async fn a_request_id_from_the_server_names_the_record_and_the_downstream_request() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "getPost", "arguments": { "id": "1" } }
    });
    let mut request = http::Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &s)
        .header("mcp-protocol-version", "2025-11-25")
        .body(bytes::Bytes::from(body.to_string()))
        .unwrap();
    request
        .extensions_mut()
        .insert(RequestId("00c0ffee00c0ffee".to_owned()));

    let reply = h.send(request).await;

    assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    let record = last(&h, &agent.agent_id);
    assert_eq!(record.request_id, "00c0ffee00c0ffee");
    assert_eq!(record.tool.as_deref(), Some("getPost"));
    let seen = h.downstream.seen();
    assert_eq!(seen[0].headers["x-request-id"], "00c0ffee00c0ffee");
}
