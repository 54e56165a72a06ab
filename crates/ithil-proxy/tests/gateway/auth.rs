//! Authentication: every failure looks the same from outside.

use bytes::Bytes;
use http::{Request, StatusCode};
use ithil_registry::AgentPatch;
use serde_json::json;

use crate::support::{Harness, Reply, initialize};

fn assert_unauthorized(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        reply.json(),
        json!({ "jsonrpc": "2.0", "id": null,
                "error": { "code": -32001, "message": "Unauthorized" } })
    );
}

#[tokio::test]
async fn a_request_without_a_token_gets_401() {
    let h = Harness::new().await;
    let req = Request::post("/mcp")
        .body(Bytes::from(initialize(1, "2025-11-25").to_string()))
        .unwrap();
    assert_unauthorized(&h.send(req).await);
}

#[tokio::test]
async fn a_garbage_or_non_bearer_token_gets_401() {
    let h = Harness::new().await;
    assert_unauthorized(
        &h.post("not.a.jwt", None, None, &initialize(1, "2025-11-25"))
            .await,
    );
    let req = Request::post("/mcp")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Bytes::from(initialize(1, "2025-11-25").to_string()))
        .unwrap();
    assert_unauthorized(&h.send(req).await);
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let h = Harness::new().await;
    let (_, token) = h.open_agent();
    h.clock.advance(time::Duration::days(2));
    assert_unauthorized(
        &h.post(&token, None, None, &initialize(1, "2025-11-25"))
            .await,
    );
}

#[tokio::test]
async fn an_admin_token_gets_401() {
    let h = Harness::new().await;
    let admin = h
        .credentials
        .issue_admin(time::Duration::days(1))
        .unwrap()
        .token;
    assert_unauthorized(
        &h.post(&admin, None, None, &initialize(1, "2025-11-25"))
            .await,
    );
}

#[tokio::test]
async fn a_deactivated_agent_is_refused_on_its_next_request_and_audited() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let s = h.initialize(&token, "2025-11-25").await;

    let patch = AgentPatch {
        is_active: Some(false),
        ..AgentPatch::default()
    };
    h.update_agent(&agent.agent_id, patch);

    let reply = h.call(&token, &s, "getPost", json!({ "id": "1" })).await;
    assert_unauthorized(&reply);
    assert!(h.downstream.seen().is_empty());
    let last = h.records(&agent.agent_id).pop().unwrap();
    assert_eq!(last.outcome, "unauthenticated");
}

#[tokio::test]
async fn a_deleted_agent_gets_401() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    h.registry.delete(&agent.agent_id).unwrap();
    assert_unauthorized(
        &h.post(&token, None, None, &initialize(1, "2025-11-25"))
            .await,
    );
}

#[tokio::test]
async fn delete_needs_a_token_too() {
    let h = Harness::new().await;
    let req = Request::delete("/mcp")
        .header("mcp-session-id", "0123")
        .body(Bytes::new())
        .unwrap();
    assert_unauthorized(&h.send(req).await);
}

#[tokio::test]
async fn authenticate_checks_the_head_alone_and_its_principal_opens_the_request() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let peer = crate::support::PEER.parse().unwrap();

    // No token: refused from the head, whatever the body would have been.
    let (head, ()) = Request::post("/mcp").body(()).unwrap().into_parts();
    let refused = h.gateway.authenticate(&head, peer).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // The origin and the method come first, as in handle_mcp.
    let (head, ()) = Request::get("/mcp").body(()).unwrap().into_parts();
    let refused = h.gateway.authenticate(&head, peer).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (head, ()) = Request::post("/mcp")
        .header("origin", "https://evil.example")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    let refused = h.gateway.authenticate(&head, peer).await.unwrap_err();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let (head, ()) = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let principal = h.gateway.authenticate(&head, peer).await.unwrap();
    assert_eq!(principal.agent.agent_id, agent.agent_id);
    let body = Bytes::from(initialize(1, "2025-11-25").to_string());
    let resp = h
        .gateway
        .handle_mcp_authenticated(Request::from_parts(head, body), principal, peer)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("mcp-session-id"));
}

#[tokio::test]
async fn a_principal_of_an_agent_deactivated_since_authentication_is_refused() {
    let h = Harness::new().await;
    let (agent, token) = h.open_agent();
    let peer = crate::support::PEER.parse().unwrap();
    let (head, ()) = Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts();
    let principal = h.gateway.authenticate(&head, peer).await.unwrap();

    // The body takes its time; meanwhile the agent is deactivated.
    let patch = AgentPatch {
        is_active: Some(false),
        ..AgentPatch::default()
    };
    h.update_agent(&agent.agent_id, patch);
    let body = Bytes::from(initialize(1, "2025-11-25").to_string());
    let resp = h
        .gateway
        .handle_mcp_authenticated(Request::from_parts(head, body), principal, peer)
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.records(&agent.agent_id).pop().unwrap().outcome,
        "unauthenticated"
    );
}
