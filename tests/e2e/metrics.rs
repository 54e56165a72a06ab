//! Observability end to end: `GET /metrics` after a real tool call, and the JSON log format.
//!
//! The gateway runs in front of json-server (see [`crate::budget::Stack`]) with
//! `--log-format json` and per-request lines at debug, so that the lines made while a tool call
//! is answered show on stderr with the call's `request` span.

use serde_json::{Value, json};

use ithil_tests::gateway::GatewayOptions;

use crate::budget::Stack;

/// The value of the series `series` (name and labels exactly as the gateway writes them) in a
/// Prometheus text exposition, if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// `sample`, which must be there.
fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Every non-empty line of `stderr` as JSON; panics at the first line that is not.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_moves_the_metrics_and_the_json_logs_carry_its_request_id() {
    let opts = GatewayOptions::new()
        .arg("--log-format")
        .arg("json")
        .rust_log("info,ithil=debug,ithil_proxy=debug");
    let mut stack = Stack::start(opts).await;
    let (agent_id, token) = stack.agent(json!({ "label": "metrics" })).await;

    let before = stack.get("/metrics").await;
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = before.text();
    assert_eq!(value(&before, "ithil_mcp_sessions_open"), 0.0);
    assert_eq!(value(&before, "ithil_tokens_charged_total"), 0.0);

    let mcp = stack.mcp(&token).await;
    let answer = mcp
        .call("getUser", json!({ "id": 1 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.is_result(), "{}", answer.text());

    let calls = stack.calls(&agent_id).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let record = &calls[0];
    let request_id = record["requestId"]
        .as_str()
        .expect("a requestId")
        .to_owned();
    let tokens = record["tokens"].as_u64().expect("tokens");
    assert!(tokens > 0, "{record}");

    let after = stack.get("/metrics").await;
    assert_eq!(after.status, 200, "{}", after.text());
    let after = after.text();
    assert_eq!(
        value(
            &after,
            "ithil_tool_calls_total{tool=\"getUser\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&after, "ithil_tokens_charged_total"),
        tokens as f64,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "ithil_downstream_request_duration_seconds_count{downstream=\"placeholder\"}"
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "ithil_downstream_request_duration_seconds_sum{downstream=\"placeholder\"}"
        ) > 0.0
    );
    assert_eq!(value(&after, "ithil_mcp_sessions_open"), 1.0);
    assert_eq!(
        value(
            &after,
            "ithil_circuit_state{downstream=\"placeholder\",state=\"closed\"}"
        ),
        1.0
    );
    assert!(
        value(&after, "ithil_store_commit_duration_seconds_count")
            > value(&before, "ithil_store_commit_duration_seconds_count")
    );
    assert!(
        value(
            &after,
            "ithil_http_requests_total{method=\"POST\",route=\"/mcp\",status=\"200\"}"
        ) >= 2.0
    );
    assert!(
        !after.contains(&agent_id),
        "an agent id reached a label:\n{after}"
    );

    // Every line on stderr is one JSON object; stopping first lets the last ones arrive.
    stack.gateway.stop();
    let stderr = stack.gateway.stderr();
    let lines = json_lines(&stderr);
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        lines.iter().any(
            |line| message(line).starts_with("listening on http://") && line["level"] == "INFO"
        ),
        "no listening line in:\n{stderr}"
    );
    assert!(
        lines.iter().any(|line| message(line) == "stopped"),
        "{stderr}"
    );

    // The lines of the tool call carry its span: the audit record's request id, the agent and
    // the tool.
    let in_call: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|span| span["name"] == "request" && span["request.id"] == request_id)
            })
        })
        .collect();
    assert!(
        !in_call.is_empty(),
        "no line in the span of {request_id}:\n{stderr}"
    );
    let charged = in_call
        .iter()
        .find(|line| message(line) == "tool call charged")
        .unwrap_or_else(|| panic!("no charge line in the span of {request_id}:\n{stderr}"));
    let span = charged["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|span| span["name"] == "request"))
        .expect("the request span");
    assert_eq!(span["agent.id"], agent_id.as_str(), "{span}");
    assert_eq!(span["tool"], "getUser", "{span}");
    assert_eq!(span["http.route"], "/mcp", "{span}");

    // Requests log at debug only: no info line is made inside a request.
    let info_in_request = lines.iter().find(|line| {
        line["level"] == "INFO"
            && line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|span| span["name"] == "request"))
    });
    assert!(info_in_request.is_none(), "{info_in_request:?}");
}

#[test]
fn a_start_that_fails_in_json_mode_says_why_in_json_too() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = GatewayOptions::new()
        .listen(busy.local_addr().unwrap().to_string())
        .arg("--log-format")
        .arg("json")
        .command(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");

    let lines = json_lines(&stderr);
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no lines in:\n{stderr}"));
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert_eq!(
        last["fields"]["message"], "stopped with an error",
        "{stderr}"
    );
    let error = last["fields"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot listen"), "{stderr}");
}
