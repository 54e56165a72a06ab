//! The protocol surface: initialize, ping, methods, notifications, formats, batches, origins.

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::json;

use crate::support::{Harness, initialize};

#[tokio::test]
async fn initialize_answers_the_clients_supported_version_with_a_session() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let reply = h.post(&token, None, None, &initialize(1, version)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["result"]["protocolVersion"], version);
        let session = reply.header("mcp-session-id").unwrap();
        assert_eq!(session.len(), 32);
        assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

#[tokio::test]
async fn initialize_with_an_unknown_version_gets_the_newest() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let reply = h
        .post(&token, None, None, &initialize(1, "2030-01-01"))
        .await;
    assert_eq!(reply.json()["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn initialize_declares_only_tools_and_names_the_server() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let result = h
        .post(&token, None, None, &initialize(1, "2025-06-18"))
        .await
        .json()["result"]
        .clone();
    assert_eq!(
        result["capabilities"],
        json!({ "tools": { "listChanged": false } })
    );
    assert_eq!(result["serverInfo"]["name"], "ithil");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn ping_answers_an_empty_result_with_the_same_id() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let ping = json!({ "jsonrpc": "2.0", "id": "p-1", "method": "ping" });
    let reply = h.post(&token, Some(&s), Some("2025-11-25"), &ping).await;
    assert_eq!(
        reply.json(),
        json!({ "jsonrpc": "2.0", "id": "p-1", "result": {} })
    );
}

#[tokio::test]
async fn methods_not_offered_get_method_not_found() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for method in [
        "resources/list",
        "prompts/list",
        "logging/setLevel",
        "completion/complete",
    ] {
        let body = json!({ "jsonrpc": "2.0", "id": 3, "method": method });
        let reply = h.post(&token, Some(&s), Some("2025-11-25"), &body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.error_code(), -32601, "{method}");
    }
}

#[tokio::test]
async fn notifications_and_client_responses_get_202_without_a_body() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for body in [
        json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": { "requestId": 4, "reason": "user" } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/whatever" }),
        json!({ "jsonrpc": "2.0", "id": 9, "result": {} }),
    ] {
        let reply = h.post(&token, Some(&s), Some("2025-11-25"), &body).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert!(reply.body.is_empty());
    }
}

#[tokio::test]
async fn get_and_other_methods_answer_405() {
    let h = Harness::new().await;
    for method in ["GET", "PUT", "PATCH"] {
        let req = Request::builder()
            .method(method)
            .uri("/mcp")
            .body(Bytes::new())
            .unwrap();
        let reply = h.send(req).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.header("allow"), Some("POST, DELETE"));
    }
}

#[tokio::test]
async fn the_stateless_discover_probe_gets_400_with_a_plain_json_rpc_error() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {} });
    let reply = h.post(&token, None, Some("2026-07-28"), &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["id"], 1);
    assert_eq!(reply.error_code(), -32601);
    assert!(reply.header("mcp-session-id").is_none());
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_400_parse_error() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let req = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Bytes::from_static(b"{\"jsonrpc\": "))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), -32700);
    assert_eq!(reply.json()["id"], serde_json::Value::Null);
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_crashing() {
    // Guards against stack exhaustion from hostile nesting.
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let body = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let req = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::from(body))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), -32700);
}

#[tokio::test]
async fn an_invalid_message_gets_400_invalid_request_with_its_id() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let body = json!({ "jsonrpc": "1.0", "id": 5, "method": "ping" });
    let reply = h.post(&token, None, None, &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), -32600);
    assert_eq!(reply.json()["id"], 5);
}

#[tokio::test]
async fn a_wrong_content_type_gets_415_and_an_unacceptable_accept_406() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let body = Bytes::from(initialize(1, "2025-11-25").to_string());
    let req = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/html")
        .body(body)
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn a_client_accepting_both_formats_gets_json() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let reply = h
        .post(&token, None, None, &initialize(1, "2025-11-25"))
        .await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_client_accepting_only_event_streams_gets_one_sse_message() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let req = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Bytes::from(initialize(1, "2025-11-25").to_string()))
        .unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let text = reply.text();
    assert!(text.starts_with("event: message\ndata: {"), "{text}");
    assert!(text.ends_with("}\n\n"));
    assert_eq!(text.matches("data: ").count(), 1);
    assert_eq!(reply.json()["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn a_foreign_origin_gets_403_and_a_loopback_origin_passes() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let request = |origin: &str| {
        Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("origin", origin)
            .body(Bytes::from(initialize(1, "2025-11-25").to_string()))
            .unwrap()
    };
    assert_eq!(
        h.send(request("http://evil.example")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.send(request("http://localhost:6274")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_origin_check_comes_before_authentication() {
    let h = Harness::new().await;
    let req = Request::post("/mcp")
        .header("origin", "http://evil.example")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h.send(req).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn batches_run_in_2025_03_26() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-03-26").await;
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "ping" },
        { "jsonrpc": "2.0", "method": "notifications/initialized" },
        { "jsonrpc": "2.0", "id": 2, "method": "tools/list" },
        { "jsonrpc": "2.0", "id": 3, "method": "nope" }
    ]);
    let reply = h.post(&token, Some(&s), Some("2025-03-26"), &batch).await;
    assert_eq!(reply.status, StatusCode::OK);
    let items = reply.json();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], 1);
    assert!(items[1]["result"]["tools"].is_array());
    assert_eq!(items[2]["error"]["code"], -32601);
}

#[tokio::test]
async fn a_batch_of_notifications_gets_202() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-03-26").await;
    let batch = json!([{ "jsonrpc": "2.0", "method": "notifications/initialized" }]);
    let reply = h.post(&token, Some(&s), None, &batch).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn batches_are_refused_where_the_revision_has_none() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    for version in ["2024-11-05", "2025-06-18", "2025-11-25"] {
        let s = h.initialize(&token, version).await;
        let batch = json!([{ "jsonrpc": "2.0", "id": 1, "method": "ping" }]);
        let reply = h.post(&token, Some(&s), Some(version), &batch).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{version}");
        assert_eq!(reply.error_code(), -32600);
    }
}

#[tokio::test]
async fn initialize_inside_a_batch_is_refused() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-03-26").await;
    let batch = json!([initialize(5, "2025-03-26")]);
    let reply = h.post(&token, Some(&s), Some("2025-03-26"), &batch).await;
    assert_eq!(reply.json()[0]["error"]["code"], -32600);
    assert_eq!(reply.json()[0]["id"], 5);
}
