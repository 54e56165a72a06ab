//! Tool listing and the tool-call pipeline against a real downstream.

use http::StatusCode;
use ithil_proxy::gateway::{ErrorStatus, GatewayConfig};
use ithil_registry::NewAgent;
use serde_json::{Value, json};

use crate::support::Harness;

fn names(reply: &crate::support::Reply) -> Vec<String> {
    reply.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn list(cursor: Option<&str>) -> Value {
    match cursor {
        Some(c) => json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list",
                           "params": { "cursor": c } }),
        None => json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
    }
}

#[tokio::test]
async fn tools_list_shows_every_callable_tool_with_its_schema() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .post(&token, Some(&s), Some("2025-11-25"), &list(None))
        .await;
    // Not adminStats (scope) and not deletePost (a write without allowWrite).
    assert_eq!(
        names(&reply),
        [
            "big",
            "createPost",
            "getPost",
            "getStatus",
            "getText",
            "getTextStrict",
            "slow",
            "unreachable"
        ]
    );
    let tools = reply.json()["result"]["tools"].clone();
    let get_post = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "getPost")
        .unwrap();
    assert_eq!(get_post["description"], "Reads a post.");
    assert_eq!(get_post["inputSchema"]["type"], "object");
    assert_eq!(get_post["inputSchema"]["required"], json!(["id"]));
    assert!(reply.json()["result"].get("nextCursor").is_none());
}

#[tokio::test]
async fn tools_list_honours_the_allowlist_and_the_scopes() {
    let h = Harness::new().await;
    let (_, token) = h.agent(NewAgent {
        allowed_tools: Some(vec!["getPost".into(), "adminStats".into()]),
        scopes: vec!["admin:read".into()],
        ..NewAgent::new("narrow")
    });
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .post(&token, Some(&s), Some("2025-11-25"), &list(None))
        .await;
    assert_eq!(names(&reply), ["adminStats", "getPost"]);
}

#[tokio::test]
async fn tools_list_pages_with_an_opaque_cursor() {
    let cfg = GatewayConfig {
        tools_page_size: 3,
        ..GatewayConfig::default()
    };
    let h = Harness::with_config(cfg).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let reply = h
            .post(
                &token,
                Some(&s),
                Some("2025-11-25"),
                &list(cursor.as_deref()),
            )
            .await;
        let page = names(&reply);
        assert!(page.len() <= 3);
        all.extend(page);
        pages += 1;
        match reply.json()["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 8);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
}

#[tokio::test]
async fn a_cursor_the_gateway_did_not_make_gets_invalid_params() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .post(&token, Some(&s), Some("2025-11-25"), &list(Some("!!!")))
        .await;
    assert_eq!(reply.error_code(), -32602);
}

#[tokio::test]
async fn a_tool_call_reaches_the_downstream_and_returns_its_body() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "getPost", json!({ "id": "1" })).await;
    assert_eq!(reply.status, StatusCode::OK);

    let result = &reply.json()["result"];
    assert_eq!(result["isError"], false);
    assert_eq!(result["content"][0]["type"], "text");
    let text: Value = serde_json::from_str(&reply.result_text()).unwrap();
    assert_eq!(text["title"], "post 1");
    assert_eq!(result["structuredContent"]["title"], "post 1");

    let seen = h.downstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/posts/1");
    assert_eq!(seen[0].headers["x-api-key"], "downstream-secret");
    assert!(seen[0].headers.get("authorization").is_none());

    // The trace id sent downstream is the audit record's request id.
    let trace = seen[0].headers["x-request-id"].to_str().unwrap().to_owned();
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.request_id, trace);
    assert_eq!(record.action, "tools/call");
    assert_eq!(record.tool.as_deref(), Some("getPost"));
    assert_eq!(record.outcome, "ok");
    assert_eq!(record.downstream_status, Some(200));
}

#[tokio::test]
async fn a_write_tool_sends_its_arguments_as_a_json_body() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "createPost", json!({ "title": "hello" }))
        .await;
    assert_eq!(reply.json()["result"]["isError"], false);
    let seen = h.downstream.seen();
    assert_eq!(seen[0].method, "POST");
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, json!({ "title": "hello" }));
}

#[tokio::test]
async fn structured_content_comes_only_with_2025_06_18_and_later() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    for (version, expected) in [
        ("2024-11-05", false),
        ("2025-03-26", false),
        ("2025-06-18", true),
        ("2025-11-25", true),
    ] {
        let s = h.initialize(&token, version).await;
        let body = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": { "name": "getPost", "arguments": { "id": "2" } } });
        let header = (version >= "2025-06-18").then_some(version);
        let reply = h.post(&token, Some(&s), header, &body).await;
        let has = reply.json()["result"].get("structuredContent").is_some();
        assert_eq!(has, expected, "{version}");
    }
}

#[tokio::test]
async fn refused_calls_get_32003_and_never_reach_the_downstream() {
    let h = Harness::new().await;
    let (agent, token) = h.agent(NewAgent {
        allowed_tools: Some(vec![
            "getPost".into(),
            "adminStats".into(),
            "deletePost".into(),
        ]),
        ..NewAgent::new("limited")
    });
    let s = h.initialize(&token, "2025-11-25").await;

    let cases = [
        ("createPost", json!({ "title": "x" }), "denied_allowlist"),
        ("adminStats", json!({}), "denied_scope"),
        ("deletePost", json!({ "id": "1" }), "write_blocked"),
    ];
    for (tool, args, outcome) in cases {
        let reply = h.call(&token, &s, tool, args).await;
        assert_eq!(reply.status, StatusCode::OK, "{tool}");
        assert_eq!(reply.error_code(), -32003, "{tool}");
        let record = h.records(&agent.agent_id).pop().unwrap();
        assert_eq!(record.outcome, outcome);
        assert_eq!(record.tool.as_deref(), Some(tool));
    }
    assert!(h.downstream.seen().is_empty());
}

#[tokio::test]
async fn the_reference_status_mode_answers_refusals_with_403() {
    let cfg = GatewayConfig {
        error_status: ErrorStatus::Reference,
        ..GatewayConfig::default()
    };
    let h = Harness::with_config(cfg).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "deletePost", json!({ "id": "1" })).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_code(), -32003);
    let reply = h
        .call(&token, &s, "getStatus", json!({ "code": "503" }))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.error_code(), -32002);
}

#[tokio::test]
async fn an_unknown_tool_gets_32602() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "noSuchTool", json!({})).await;
    assert_eq!(reply.error_code(), -32602);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "unknown_tool"
    );
}

#[tokio::test]
async fn invalid_arguments_get_32602_with_the_reason_and_never_reach_the_downstream() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let reply = h.call(&token, &s, "getPost", json!({})).await;
    assert_eq!(reply.error_code(), -32602);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("id"), "{message}");

    let reply = h
        .call(&token, &s, "createPost", json!({ "title": "t".repeat(51) }))
        .await;
    assert_eq!(reply.error_code(), -32602);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "invalid_arguments"
    );

    let body = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": { "name": "getPost", "arguments": [1] } });
    let reply = h.post(&token, Some(&s), Some("2025-11-25"), &body).await;
    assert_eq!(reply.error_code(), -32602);
    assert!(h.downstream.seen().is_empty());
}

#[tokio::test]
async fn hostile_path_arguments_arrive_as_one_encoded_segment() {
    // Each value tries to climb out of /posts/{id}, add a query, or split the request.
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let hostile = [
        "../admin",
        "..",
        "%2e%2e",
        "%2e%2e%2fadmin",
        "a/b",
        "x?admin=true",
        "x#frag",
        "a\r\nX-Injected: 1",
        "..\\admin",
        "/etc/passwd",
        " ",
    ];
    for value in hostile {
        let reply = h.call(&token, &s, "getPost", json!({ "id": value })).await;
        assert_eq!(reply.status, StatusCode::OK, "{value:?}");
    }

    let seen = h.downstream.seen();
    assert_eq!(seen.len(), hostile.len());
    for request in &seen {
        let target = &request.target;
        let rest = target
            .strip_prefix("/posts/")
            .unwrap_or_else(|| panic!("{target}"));
        assert!(!rest.is_empty(), "{target}");
        assert!(
            !rest.contains(['/', '?', '#', '\\', '\r', '\n', ' ']),
            "{target}"
        );
        assert!(!rest.contains(".."), "{target}");
        assert!(request.headers.get("x-injected").is_none());
    }
}

#[tokio::test]
async fn a_downstream_4xx_is_a_tool_error_with_the_status() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "getStatus", json!({ "code": "404" }))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let result = &reply.json()["result"];
    assert_eq!(result["isError"], true);
    let text = reply.result_text();
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("status 404"), "{text}");
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "tool_error");
    assert_eq!(record.downstream_status, Some(404));
    assert!(record.tokens > 0);
}

#[tokio::test]
async fn a_downstream_5xx_is_a_gateway_error() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "getStatus", json!({ "code": "500" }))
        .await;
    assert_eq!(reply.error_code(), -32002);
    let record = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(record.outcome, "downstream_error");
    assert_eq!(record.tokens, 0);
}

#[tokio::test]
async fn a_slow_downstream_times_out_as_a_gateway_error() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "slow", json!({})).await;
    assert_eq!(reply.error_code(), -32002);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "downstream_timeout"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_gateway_error() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "unreachable", json!({})).await;
    assert_eq!(reply.error_code(), -32002);
}

#[tokio::test]
async fn a_response_over_the_size_cap_is_a_gateway_error() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "big", json!({})).await;
    assert_eq!(reply.error_code(), -32002);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "rejected_too_large"
    );
}

#[tokio::test]
async fn a_long_response_is_truncated_to_the_tools_token_limit() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "getText", json!({ "n": "500" })).await;
    let text = reply.result_text();
    assert!(text.starts_with("word word"), "{text}");
    assert!(text.contains("truncated"), "{text}");
    assert_eq!(reply.json()["result"]["isError"], false);

    let counter = ithil_budget::TokenCounter::default();
    let tokens = counter.count(&text);
    assert!(tokens <= 50, "{tokens} tokens");
    assert_eq!(h.records(&agent.agent_id).pop().unwrap().tokens, tokens);
}

#[tokio::test]
async fn a_long_response_of_a_rejecting_tool_is_a_tool_error() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "getTextStrict", json!({ "n": "500" }))
        .await;
    assert_eq!(reply.json()["result"]["isError"], true);
    let text = reply.result_text();
    assert!(text.contains("too large"), "{text}");
    assert!(!text.contains("word word"), "{text}");
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "rejected_too_large"
    );
}

#[tokio::test]
async fn a_short_response_of_a_limited_tool_is_returned_whole() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.call(&token, &s, "getText", json!({ "n": "10" })).await;
    assert_eq!(reply.result_text(), ["word"; 10].join(" "));
}

#[tokio::test]
async fn personal_data_is_redacted_before_the_agent_and_the_audit_trail_see_it() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h
        .call(&token, &s, "getPost", json!({ "id": "bob@example.com" }))
        .await;
    let text = reply.result_text();
    assert!(!text.contains("jane@example.com"), "{text}");
    assert!(text.contains("[EMAIL REDACTED]"), "{text}");
    // Still JSON after filtering.
    let _: Value = serde_json::from_str(&text).unwrap();

    let record = h.records(&agent.agent_id).pop().unwrap();
    let args = record.arguments.unwrap().to_string();
    assert!(!args.contains("bob@example.com"), "{args}");
}

#[tokio::test]
async fn a_swapped_catalog_serves_the_next_request() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    h.gateway
        .replace_catalog(ithil_proxy::catalog::Catalog::default());
    let reply = h
        .post(&token, Some(&s), Some("2025-11-25"), &list(None))
        .await;
    assert!(names(&reply).is_empty());
}
