//! Sessions: binding to the agent, expiry, the cap, DELETE, and the version header.

use bytes::Bytes;
use http::{Request, StatusCode};
use ithil_proxy::gateway::GatewayConfig;
use serde_json::json;

use crate::support::Harness;

fn ping() -> serde_json::Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" })
}

#[tokio::test]
async fn a_request_without_a_session_gets_400() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let reply = h.post(&token, None, Some("2025-11-25"), &ping()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_session_gets_404() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let reply = h
        .post(
            &token,
            Some("00112233445566778899aabbccddeeff"),
            Some("2025-11-25"),
            &ping(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_agents_session_gets_404_and_stays_usable_for_its_owner() {
    let h = Harness::new().await;
    let (_, alice) = h.open_agent();
    let (_, mallory) = h.open_agent();
    let s = h.initialize(&alice, "2025-11-25").await;

    let stolen = h
        .post(&mallory, Some(&s), Some("2025-11-25"), &ping())
        .await;
    assert_eq!(stolen.status, StatusCode::NOT_FOUND);
    let delete = Request::delete("/mcp")
        .header("authorization", format!("Bearer {mallory}"))
        .header("mcp-session-id", &s)
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h.send(delete).await.status, StatusCode::NOT_FOUND);

    let own = h.post(&alice, Some(&s), Some("2025-11-25"), &ping()).await;
    assert_eq!(own.status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_idle_past_the_timeout_gets_404_and_a_used_one_lives_on() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let idle = h.initialize(&token, "2025-11-25").await;
    let busy = h.initialize(&token, "2025-11-25").await;

    h.clock.advance(time::Duration::minutes(20));
    let ok = h
        .post(&token, Some(&busy), Some("2025-11-25"), &ping())
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    h.clock.advance(time::Duration::minutes(11));

    let expired = h
        .post(&token, Some(&idle), Some("2025-11-25"), &ping())
        .await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
    let alive = h
        .post(&token, Some(&busy), Some("2025-11-25"), &ping())
        .await;
    assert_eq!(alive.status, StatusCode::OK);
}

#[tokio::test]
async fn the_idle_timeout_is_configurable() {
    let cfg = GatewayConfig {
        session_idle_timeout: std::time::Duration::from_secs(60),
        ..GatewayConfig::default()
    };
    let h = Harness::with_config(cfg).await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    h.clock.advance(time::Duration::seconds(61));
    let reply = h.post(&token, Some(&s), Some("2025-11-25"), &ping()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn at_the_cap_the_least_recently_used_session_is_dropped() {
    let cfg = GatewayConfig {
        max_sessions_per_agent: 2,
        ..GatewayConfig::default()
    };
    let h = Harness::with_config(cfg).await;
    let (_, token) = h.open_agent();
    let first = h.initialize(&token, "2025-11-25").await;
    h.clock.advance(time::Duration::seconds(1));
    let second = h.initialize(&token, "2025-11-25").await;
    h.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        h.post(&token, Some(&first), Some("2025-11-25"), &ping())
            .await
            .status,
        StatusCode::OK
    );
    h.clock.advance(time::Duration::seconds(1));

    let third = h.initialize(&token, "2025-11-25").await;
    let gone = h
        .post(&token, Some(&second), Some("2025-11-25"), &ping())
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    for s in [&first, &third] {
        assert_eq!(
            h.post(&token, Some(s), Some("2025-11-25"), &ping())
                .await
                .status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn delete_ends_the_session() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let delete = Request::delete("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-session-id", &s)
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h.send(delete).await.status, StatusCode::OK);
    let after = h.post(&token, Some(&s), Some("2025-11-25"), &ping()).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unsupported_version_header_gets_400() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    for bad in ["1900-01-01", "not-a-version", "2026-07-28"] {
        let reply = h.post(&token, Some(&s), Some(bad), &ping()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_version_header_other_than_the_negotiated_one_gets_400() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let reply = h.post(&token, Some(&s), Some("2025-06-18"), &ping()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_request_without_the_version_header_is_taken_as_2025_03_26() {
    // The revision shows in the tool result: 2025-03-26 has no structuredContent.
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": { "name": "getPost", "arguments": { "id": "1" } } });

    let without = h.post(&token, Some(&s), None, &call).await;
    assert_eq!(without.status, StatusCode::OK);
    assert!(without.json()["result"].get("structuredContent").is_none());

    let with = h.post(&token, Some(&s), Some("2025-11-25"), &call).await;
    assert_eq!(with.json()["result"]["structuredContent"]["id"], "1");
}
