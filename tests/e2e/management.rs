//! The management API, replayed from the spec page against the real server.
//!
//! Every curl command of `agent-management.txt` is sent as written (same paths, headers and
//! bodies) to the real binary on a loopback port; the answers are checked for status, headers
//! and JSON fields. The restart, the refusals and the hostile inputs run against the same real
//! process.

use std::time::Duration;

use ithil_tests::gateway::{Client, GatewayOptions, GatewayProcess, Response};
use serde_json::{Value, json};

use crate::budget::now_seconds;

/// A key as `openssl rand -hex 32` makes one.
const API_KEY: &str = "5f0c3b8e2a7d4c1f9e6b0a3d8c5f2e7b1a4d9c6f3e0b8a5d2c7f4e1b9a6d3c0f";

fn start(opts: GatewayOptions) -> GatewayProcess {
    GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

fn with_key() -> GatewayProcess {
    start(GatewayOptions::new().api_key(API_KEY))
}

/// Seconds since the epoch of an RFC 3339 UTC time with whole seconds, such as
/// `2026-08-04T12:00:00Z`.
fn unix_seconds(text: &str) -> i64 {
    assert!(
        text.len() == 20 && text.as_bytes()[4] == b'-',
        "not an RFC 3339 UTC time with seconds: {text}"
    );
    crate::budget::unix_seconds(text)
}

/// Checks `{"token", "expiresAt"}` with the expiry `lifetime` from now (give or take a minute).
fn assert_token_answer(answer: &Response, lifetime: Duration) -> String {
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let json = answer.json();
    assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
    let token = json["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("eyJhbGci"), "{token}");
    assert_eq!(token.split('.').count(), 3);
    let expires = unix_seconds(json["expiresAt"].as_str().unwrap());
    let expected = now_seconds() + lifetime.as_secs() as i64;
    assert!((expires - expected).abs() < 60, "{expires} vs {expected}");
    token
}

async fn admin_token(gateway: &GatewayProcess) -> String {
    // curl -s -X POST http://your-gateway/auth/admin/token \
    //   -H "Content-Type: application/json" -d '{ "apiKey": "<your-generated-key>" }'
    let answer = gateway
        .client()
        .post("/auth/admin/token")
        .json(&format!("{{ \"apiKey\": \"{API_KEY}\" }}"))
        .send()
        .await;
    assert_token_answer(&answer, Duration::from_secs(90 * 86_400))
}

async fn create_agent(client: Client, admin: &str, body: &str) -> Value {
    let answer = client
        .post("/management/agents")
        .bearer(admin)
        .json(body)
        .send()
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn every_curl_command_of_the_spec_page_works_as_written() {
    let gateway = with_key();
    let client = gateway.client();
    let admin = admin_token(&gateway).await;

    // Create an agent.
    let created = client
        .post("/management/agents")
        .header("Authorization", &format!("Bearer {admin}"))
        .header("Content-Type", "application/json")
        .body("{\n\"label\": \"My Claude Agent\",\n\"dailyTokenBudget\": 50000\n}")
        .send()
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let agent = created.json();
    let id = agent["agentId"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 12
            && id.starts_with("agt_")
            && id[4..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{id}"
    );
    assert_eq!(
        created.header("location"),
        Some(format!("/management/agents/{id}").as_str())
    );
    assert_eq!(agent["label"], "My Claude Agent");
    assert_eq!(agent["dailyTokenBudget"], 50000);
    assert_eq!(agent["isActive"], true);

    // Issue a token, with the body of the page and without a body.
    let path = format!("/management/agents/{id}/token");
    let answer = client
        .post(&path)
        .bearer(&admin)
        .json("{ \"expiresInDays\": 30 }")
        .send()
        .await;
    assert_token_answer(&answer, 30 * DAY);
    let answer = client.post(&path).bearer(&admin).send().await;
    assert_token_answer(&answer, 30 * DAY);
    let answer = client
        .post(&path)
        .bearer(&admin)
        .json("{\"expiresInDays\": 7}")
        .send()
        .await;
    assert_token_answer(&answer, 7 * DAY);

    // List all agents.
    let list = client.get("/management/agents").bearer(&admin).send().await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json(), json!([agent]));

    // Get a single agent.
    let got = client
        .get(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), agent);

    // Update an agent.
    let updated = client
        .put(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .json("{ \"dailyTokenBudget\": 100000, \"isActive\": true }")
        .send()
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["dailyTokenBudget"], 100000);
    assert_eq!(updated["isActive"], true);
    assert_eq!(updated["label"], "My Claude Agent");
    assert_eq!(updated["agentId"], id.as_str());

    // Deactivate an agent; it gets no new token.
    let deactivated = client
        .put(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .json("{ \"isActive\": false }")
        .send()
        .await;
    assert_eq!(deactivated.status, 200);
    assert_eq!(deactivated.json()["isActive"], false);
    assert_eq!(deactivated.json()["dailyTokenBudget"], 100000);
    let refused = client.post(&path).bearer(&admin).send().await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.error_code(), "agent_inactive");

    // Check remaining budget, then reset it.
    let budget = client
        .get(&format!("/management/agents/{id}/budget"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(budget.status, 200, "{}", budget.text());
    let budget = budget.json();
    assert_eq!(budget["agentId"], id.as_str());
    assert_eq!(budget["dailyTokenBudget"], 100000);
    assert_eq!(budget["tokensUsedToday"], 0);
    assert_eq!(budget["remaining"], 100000);
    assert_eq!(budget["percentageUsed"], 0.0);
    let resets = unix_seconds(budget["resetsAt"].as_str().unwrap());
    assert_eq!(resets % 86_400, 0, "resets at midnight UTC");
    assert!(resets > now_seconds() && resets <= now_seconds() + 86_400);
    let reset = client
        .delete(&format!("/management/agents/{id}/budget"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(reset.status, 204, "{}", reset.text());

    // Delete an agent.
    let deleted = client
        .delete(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    let gone = client
        .get(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "agent_not_found");
    let list = client.get("/management/agents").bearer(&admin).send().await;
    assert_eq!(list.json(), json!([]));
}

#[tokio::test]
async fn the_development_shortcut_gives_an_admin_token_from_localhost() {
    let gateway = start(GatewayOptions::new().dev());
    let client = gateway.client();

    // curl http://localhost:5100/dev/admin-token
    let answer = client.get("/dev/admin-token").send().await;
    let admin = assert_token_answer(&answer, 90 * DAY);

    let agent = create_agent(client, &admin, r#"{"label": "from dev"}"#).await;
    assert_eq!(agent["label"], "from dev");

    // Without an API key the exchange does not exist.
    let answer = client
        .post("/auth/admin/token")
        .json(&format!("{{\"apiKey\": \"{API_KEY}\"}}"))
        .send()
        .await;
    assert_eq!(answer.status, 404);

    // The development agent token lives 8 hours.
    let answer = client.get("/dev/token").send().await;
    assert_token_answer(&answer, Duration::from_secs(8 * 3600));
    let list = client.get("/management/agents").bearer(&admin).send().await;
    let labels: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["label"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        labels.iter().any(|l| l == "Development agent"),
        "{labels:?}"
    );
}

#[tokio::test]
async fn the_development_shortcut_answers_over_ipv6_loopback() {
    // Machines without IPv6 loopback cannot run this check; say so rather than pass silently.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let gateway = start(GatewayOptions::new().dev().listen("[::1]:0"));
    assert!(gateway.addr().is_ipv6());
    let answer = gateway.client().get("/dev/admin-token").send().await;
    assert_token_answer(&answer, 90 * DAY);
}

#[tokio::test]
async fn dev_endpoints_answer_404_without_dev_mode() {
    let gateway = with_key();
    let client = gateway.client();
    for path in ["/dev/admin-token", "/dev/token"] {
        let answer = client
            .get(path)
            .header("X-Forwarded-For", "127.0.0.1")
            .send()
            .await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.error_code(), "not_found");
    }
}

#[tokio::test]
async fn the_development_shortcut_refuses_a_rebinding_host_or_a_foreign_origin() {
    // Bug: DNS rebinding. A page at rebind.example, whose name the attacker makes resolve to
    // 127.0.0.1, reached /dev/admin-token through the developer's browser, a loopback peer.
    let gateway = start(GatewayOptions::new().dev());
    let client = gateway.client();
    let port = gateway.addr().port();
    for path in ["/dev/admin-token", "/dev/token"] {
        for headers in [
            format!("Host: rebind.example:{port}\r\n"),
            format!("Host: localhost:{port}\r\nOrigin: http://rebind.example\r\n"),
        ] {
            let request = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
            let answer =
                String::from_utf8_lossy(&client.raw(request.as_bytes()).await).into_owned();
            assert!(
                answer.starts_with("HTTP/1.1 404 "),
                "{path} {headers}: {answer}"
            );
            assert!(!answer.contains("\"token\""), "{answer}");
        }
    }

    // The same requests addressed to localhost, from a local page, get their tokens.
    let answer = client
        .get("/dev/admin-token")
        .header("origin", "http://localhost:3000")
        .send()
        .await;
    assert_token_answer(&answer, 90 * DAY);
    let request =
        format!("GET /dev/token HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    let answer = String::from_utf8_lossy(&client.raw(request.as_bytes()).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn agents_and_the_signing_key_survive_a_restart() {
    let mut gateway = with_key();
    let admin = admin_token(&gateway).await;
    let client = gateway.client();
    for label in ["one", "two", "three"] {
        create_agent(
            client,
            &admin,
            &json!({"label": label, "allowedTools": ["getPost"], "scopes": ["read"]}).to_string(),
        )
        .await;
    }
    let before = client
        .get("/management/agents")
        .bearer(&admin)
        .send()
        .await
        .json();

    let status = gateway.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");
    let client = gateway.client();

    // The old admin token still verifies: the generated signing key was kept.
    let after = client.get("/management/agents").bearer(&admin).send().await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.json(), before);
    assert_eq!(before.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_configured_signing_key_signs_tokens_that_survive_a_restart() {
    let opts = GatewayOptions::new().api_key(API_KEY).env(
        "Ithil__Jwt__SigningKey",
        "a configured signing key of 32+ bytes!!",
    );
    let mut gateway = start(opts);
    let admin = admin_token(&gateway).await;

    gateway.restart().unwrap_or_else(|e| panic!("{e}"));
    let answer = gateway
        .client()
        .get("/management/agents")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn tokens_of_the_wrong_kind_or_none_are_refused_on_management() {
    let gateway = with_key();
    let client = gateway.client();
    let admin = admin_token(&gateway).await;
    let agent = create_agent(client, &admin, r#"{"label": "a"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    let agent_token = client
        .post(&format!("/management/agents/{id}/token"))
        .bearer(&admin)
        .send()
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let answer = client
        .get("/management/agents")
        .bearer(&agent_token)
        .send()
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.error_code(), "forbidden");

    let answer = client.get("/management/agents").send().await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));

    let mut forged = admin.clone();
    forged.pop();
    forged.push(if admin.ends_with('A') { 'B' } else { 'A' });
    for token in [forged.as_str(), "garbage", "a.b.c"] {
        let answer = client.get("/management/agents").bearer(token).send().await;
        assert_eq!(answer.status, 401, "{token}");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }

    let answer = client
        .get("/management/agents")
        .bearer(&admin)
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(answer.status, 401);

    let answer = client
        .delete(&format!("/management/agents/{id}"))
        .bearer(&agent_token)
        .send()
        .await;
    assert_eq!(answer.status, 403);
    let list = client.get("/management/agents").bearer(&admin).send().await;
    assert_eq!(list.json(), json!([agent]));
}

#[tokio::test]
async fn hostile_inputs_get_a_clear_4xx_and_change_nothing() {
    let gateway = with_key();
    let client = gateway.client();
    let admin = admin_token(&gateway).await;
    let agent = create_agent(client, &admin, r#"{"label": "keep"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    let long_label = json!({"label": "x".repeat(10_000)}).to_string();

    for (body, status, code) in [
        ("{\"label\": ", 400, "malformed_json"),
        ("{'label': 'a'}", 400, "malformed_json"),
        (
            r#"{"label": "a", "dailyTokenBudget": 1e999}"#,
            400,
            "malformed_json",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": 123456789012345678901234567890}"#,
            400,
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": "lots"}"#,
            400,
            "invalid_field",
        ),
        (r#"{"label": true}"#, 400, "invalid_field"),
        (
            r#"{"label": "a", "allowedTools": {"a": 1}}"#,
            400,
            "invalid_field",
        ),
        (long_label.as_str(), 400, "invalid_field"),
        (r#"{"label": "a\u202eb\u0007"}"#, 400, "invalid_field"),
        (r#"{"label": "a", "isAdmin": true}"#, 400, "unknown_field"),
    ] {
        let answer = client
            .post("/management/agents")
            .bearer(&admin)
            .json(body)
            .send()
            .await;
        assert_eq!(answer.status, status, "POST {body:.60}: {}", answer.text());
        assert_eq!(answer.error_code(), code, "POST {body:.60}");

        let answer = client
            .put(&format!("/management/agents/{id}"))
            .bearer(&admin)
            .json(body)
            .send()
            .await;
        assert!(answer.status.is_client_error(), "PUT {body:.60}");
    }

    // Wrong content type, and a body over the 1 MiB default, declared or chunked.
    let answer = client
        .post("/management/agents")
        .bearer(&admin)
        .header("content-type", "text/plain")
        .body(r#"{"label": "a"}"#)
        .send()
        .await;
    assert_eq!(answer.status, 415);
    let huge = json!({"label": "x".repeat(2 * 1024 * 1024)}).to_string();
    let answer = client
        .post("/management/agents")
        .bearer(&admin)
        .json(&huge)
        .send()
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_code(), "payload_too_large");

    let mut chunked = format!(
        "POST /management/agents HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        gateway.addr()
    )
    .into_bytes();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 512 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 512 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = client.raw(&chunked).await;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Unicode is fine where it is valid.
    let unicode = create_agent(client, &admin, r#"{"label": "Agent 日本語 ✓ 🚀"}"#).await;
    assert_eq!(unicode["label"], "Agent 日本語 ✓ 🚀");
    let answer = client
        .delete(&format!(
            "/management/agents/{}",
            unicode["agentId"].as_str().unwrap()
        ))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(answer.status, 204);

    let list = client.get("/management/agents").bearer(&admin).send().await;
    assert_eq!(list.json(), json!([agent]));
}

#[tokio::test]
async fn the_server_speaks_h2c_as_well_as_http_1_1() {
    let gateway = with_key();
    let answer = gateway.client().get("/health/live").http2().send().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.version, hyper::Version::HTTP_2);

    let answer = gateway.client().get("/health/ready").send().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"], "ready");
}

#[tokio::test]
async fn oauth_discovery_is_404_without_a_token() {
    let gateway = with_key();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = gateway.client().get(path).send().await;
        assert_eq!(answer.status, 404, "{path}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully_and_logs_go_to_stderr_only() {
    let mut gateway = with_key();
    admin_token(&gateway).await;

    let status = gateway.stop();
    assert!(status.success(), "{status:?}");
    let log = gateway.stderr();
    assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(API_KEY), "the log holds the API key");
    // Stdout is the audit trail: JSON Lines only.
    for line in gateway.stdout_lines() {
        assert!(serde_json::from_str::<Value>(&line).is_ok(), "{line}");
    }
}

#[test]
fn invalid_configuration_stops_the_start_naming_the_key_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, key) in [
        (
            "Ithil__Jwt__SigningKey",
            "too-short-secret",
            "jwt.signingKey",
        ),
        (
            "Ithil__Admin__TokenExpiryDays",
            "ninety",
            "admin.tokenExpiryDays",
        ),
        (
            "Ithil__Admin__ApiKye",
            "whatever-value-here",
            "Ithil__Admin__ApiKye",
        ),
    ] {
        let output = GatewayOptions::new()
            .env(name, value)
            .command(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{stderr}");
        if name.contains("SigningKey") {
            assert!(!stderr.contains(value), "{stderr}");
        }
    }
}

/// A JSON-RPC `initialize` to `/mcp` with `token`.
async fn mcp_initialize(client: Client, token: &str) -> Response {
    client
        .post("/mcp")
        .bearer(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "e2e", "version": "0"}}}"#,
        )
        .send()
        .await
}

async fn agent_token(client: Client, admin: &str, id: &str) -> String {
    let answer = client
        .post(&format!("/management/agents/{id}/token"))
        .bearer(admin)
        .send()
        .await;
    assert_token_answer(&answer, 30 * DAY)
}

#[tokio::test]
async fn a_deactivated_agents_token_is_refused_at_mcp_by_the_next_request() {
    let gateway = with_key();
    let client = gateway.client();
    let admin = admin_token(&gateway).await;
    let agent = create_agent(client, &admin, r#"{"label": "soon inactive"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    let token = agent_token(client, &admin, id).await;

    let answer = mcp_initialize(client, &token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.header("mcp-session-id").is_some());

    // The admin token never opens /mcp.
    let answer = mcp_initialize(client, &admin).await;
    assert_eq!(answer.status, 401);

    let answer = client
        .put(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .json(r#"{ "isActive": false }"#)
        .send()
        .await;
    assert_eq!(answer.status, 200);
    let answer = mcp_initialize(client, &token).await;
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );

    // Reactivated, the same token works again; deleted, it is refused for good.
    client
        .put(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .json(r#"{ "isActive": true }"#)
        .send()
        .await;
    assert_eq!(mcp_initialize(client, &token).await.status, 200);
    client
        .delete(&format!("/management/agents/{id}"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(mcp_initialize(client, &token).await.status, 401);
}

#[tokio::test]
async fn an_agent_token_issued_before_a_restart_still_opens_mcp() {
    let mut gateway = with_key();
    let admin = admin_token(&gateway).await;
    let agent = create_agent(gateway.client(), &admin, r#"{"label": "long lived"}"#).await;
    let token = agent_token(gateway.client(), &admin, agent["agentId"].as_str().unwrap()).await;

    gateway.restart().unwrap_or_else(|e| panic!("{e}"));
    let answer = mcp_initialize(gateway.client(), &token).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test]
async fn sighup_reloads_the_catalog_and_a_broken_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.json");
    let tool = |name: &str| {
        json!({"name": name, "description": "a post", "downstream": "local", "method": "GET",
               "route": "/posts/{id}",
               "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}},
                               "required": ["id"]}})
    };
    let write = |tools: Vec<Value>| {
        let doc =
            json!({"downstreams": {"local": {"baseUrl": "http://127.0.0.1:9"}}, "tools": tools});
        std::fs::write(&manifest, doc.to_string()).unwrap();
    };
    write(vec![tool("getPost")]);

    let gateway = start(
        GatewayOptions::new()
            .api_key(API_KEY)
            .arg("--catalog")
            .arg(manifest.to_string_lossy()),
    );
    let client = gateway.client();
    let admin = admin_token(&gateway).await;
    let names = || async {
        let answer = client.get("/management/tools").bearer(&admin).send().await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["getPost"]);

    write(vec![tool("getPost"), tool("getPostAgain")]);
    let pid = gateway.pid().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while names().await.len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file is refused by the reload endpoint and the catalog in place stays.
    std::fs::write(&manifest, "{ not json").unwrap();
    let answer = client
        .post("/management/tools/reload")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(answer.error_code(), "invalid_catalog");
    assert_eq!(names().await, ["getPost", "getPostAgain"]);
}

/// `ithil check-config ARGS`, run in `dir` with an empty environment: its exit code, stdout and
/// stderr.
fn check_config(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(ithil_tests::gateway::binary())
        .arg("check-config")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `serve` with `opts` and waits for it to exit; its exit code and stderr.
fn serve_exit(opts: GatewayOptions) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = opts.refused_start(dir.path(), "the gateway started");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A manifest of one tool on downstream `name`.
fn manifest(name: &str) -> String {
    json!({
        "downstreams": {name: {"baseUrl": "http://127.0.0.1:9"}},
        "tools": [{"name": format!("get_{name}"), "description": "a post", "downstream": name,
                   "method": "GET", "route": "/posts/{id}",
                   "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}},
                                   "required": ["id"]}}]
    })
    .to_string()
}

fn rules_config(patterns: &[&str]) -> String {
    let rules: Vec<Value> = patterns.iter().map(|p| json!({ "pattern": p })).collect();
    json!({ "privacy": { "customRules": rules } }).to_string()
}

#[test]
fn check_config_refuses_with_exit_code_2_what_serve_refuses() {
    // Bug: check-config read the settings only, so a broken catalog or privacy rule passed it
    // and stopped `serve` at start.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let good = write("good.json", &manifest("posts"));
    let same = write("same.json", &manifest("posts"));
    let broken = write("broken.json", "{ not json");
    let bad_rule = write(
        "bad-rule.json",
        &rules_config(&[r"EMP-\d{6}", r"ACC(\d{10}"]),
    );
    let empty_rule = write("empty-rule.json", &rules_config(&[r"EMP-\d{6}", "x*"]));

    for (args, named) in [
        (
            vec!["--config", &bad_rule, "--catalog", &good],
            vec!["privacy.customRules.1", "invalid pattern"],
        ),
        (
            vec!["--config", &empty_rule],
            vec!["privacy.customRules.1", "matches the empty string"],
        ),
        (
            vec!["--catalog", &good, "--catalog", &broken],
            vec!["cannot load the tool catalog", "broken.json"],
        ),
        (
            vec!["--catalog", &good, "--catalog", &same],
            vec!["cannot load the tool catalog", "posts", "defined twice"],
        ),
    ] {
        let (code, stdout, stderr) = check_config(dir.path(), &args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            !stdout.contains("configuration is valid"),
            "{args:?}: {stdout}"
        );
        for text in named {
            assert!(
                stderr.contains(text),
                "{args:?} should name {text}: {stderr}"
            );
        }
        assert!(!stderr.contains("privacy.customRules.0"), "{stderr}");

        // And `serve` refuses the same configuration.
        let serve = args
            .iter()
            .fold(GatewayOptions::new(), |opts, arg| opts.arg(*arg));
        let (code, stderr) = serve_exit(serve);
        assert_ne!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }

    // Settings were refused before too, the circuit breaker's among them; still 2, still
    // named.
    for (text, key) in [
        (
            r#"{"admin": {"tokenExpiryDays": 0}}"#,
            "admin.tokenExpiryDays",
        ),
        (
            r#"{"circuitBreaker": {"failureRatio": 0}}"#,
            "circuitBreaker.failureRatio",
        ),
    ] {
        let file = write("setting.json", text);
        let (code, stdout, stderr) = check_config(dir.path(), &["--config", &file]);
        assert_eq!(code, Some(2), "{text}: {stdout}{stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
}

#[tokio::test]
async fn check_config_passes_what_serve_starts_with_and_says_what_it_did_not_check() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("posts.json");
    std::fs::write(&catalog, manifest("posts")).unwrap();
    let other = dir.path().join("users.json");
    std::fs::write(&other, manifest("users")).unwrap();
    let config = dir.path().join("ithil.json");
    std::fs::write(&config, rules_config(&[r"EMP-\d{6}"])).unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--catalog",
        other.to_str().unwrap(),
    ];

    let (code, stdout, stderr) = check_config(dir.path(), &args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("configuration is valid: "), "{stdout}");
    assert!(
        stdout.contains("2 catalog file(s) merged into 2 tool(s), 1 custom privacy rule(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("not checked: the store"), "{stdout}");

    // Discovery needs the network: named as not checked, not refused.
    let (code, stdout, stderr) = {
        let output = std::process::Command::new(ithil_tests::gateway::binary())
            .arg("check-config")
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env(
                "Ithil__ToolRegistry__DownstreamBaseUrl",
                "http://127.0.0.1:9",
            )
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("discovery from http://127.0.0.1:9/ at /ithil/schema (needs the network)"),
        "{stdout}"
    );

    // `serve` starts with what check-config passed.
    let gateway = start(
        args.iter()
            .fold(GatewayOptions::new().api_key(API_KEY), |opts, arg| {
                opts.arg(*arg)
            }),
    );
    let admin = admin_token(&gateway).await;
    let tools = gateway
        .client()
        .get("/management/tools")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(
        tools.json().as_array().map(Vec::len),
        Some(2),
        "{}",
        tools.text()
    );
}

#[test]
fn serve_exits_2_for_a_custom_rule_that_matches_the_empty_string_and_names_it() {
    let (code, stderr) = serve_exit(
        GatewayOptions::new()
            .env("Ithil__Privacy__CustomRules__0__Pattern", r"EMP-\d{6}")
            .env("Ithil__Privacy__CustomRules__1__Pattern", "x*"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("custom privacy rule 1"), "{stderr}");
    assert!(stderr.contains("matches the empty string"), "{stderr}");
}

/// The value of `field` in the first log line carrying `message`, as the text log writes it
/// (`... message field=value ...`).
fn logged(stderr: &str, message: &str, field: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.contains(message))
        .unwrap_or_else(|| panic!("no log line {message:?} in:\n{stderr}"));
    let start = line
        .find(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        + field.len()
        + 2;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// The `kid` of a token's header (base64url without padding, decoded here: the tests crate has
/// no base64 dependency).
fn header_kid(token: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let encoded = token.split('.').next().unwrap();
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in encoded.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_previous_signing_key_keeps_old_tokens_valid_until_it_is_dropped() {
    const KEY_A: &str = "rotation test signing key A, 32 bytes or more";
    const KEY_B: &str = "base64:cm90YXRpb24gdGVzdCBzaWduaW5nIGtleSBCLCAzMiBieXRlcyBvciBtb3Jl";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let opts = |signing: &str| {
        GatewayOptions::new()
            .api_key(API_KEY)
            .data_dir(&data)
            .env("Ithil__Jwt__SigningKey", signing)
    };

    // Key A signs an admin token and an agent token.
    let mut gateway = start(opts(KEY_A));
    let kid_a = logged(&gateway.stderr(), "registry loaded", "kid");
    assert_eq!(
        logged(
            &gateway.stderr(),
            "verify-only signing keys loaded",
            "count"
        ),
        "0"
    );
    let old_admin = admin_token(&gateway).await;
    let agent = create_agent(gateway.client(), &old_admin, r#"{"label": "rotated"}"#).await;
    let id = agent["agentId"].as_str().unwrap().to_owned();
    let old_agent = agent_token(gateway.client(), &old_admin, &id).await;
    assert_eq!(header_kid(&old_admin), kid_a);
    assert_eq!(header_kid(&old_agent), kid_a);
    assert!(gateway.stop().success());

    // Key B signs, A only verifies: the old tokens still work, new ones carry B's kid.
    let mut gateway = start(opts(KEY_B).env("Ithil__Jwt__PreviousSigningKeys__0", KEY_A));
    let stderr = gateway.stderr();
    let kid_b = logged(&stderr, "registry loaded", "kid");
    assert_ne!(kid_b, kid_a);
    assert_eq!(
        logged(&stderr, "verify-only signing keys loaded", "count"),
        "1"
    );
    assert_eq!(
        logged(&stderr, "verify-only signing keys loaded", "kids"),
        kid_a
    );
    assert!(
        !stderr.contains(KEY_A) && !stderr.contains(KEY_B),
        "{stderr}"
    );

    let client = gateway.client();
    assert_tokens(client, &old_admin, &old_agent, 200).await;

    let new_admin = admin_token(&gateway).await;
    let new_agent = agent_token(client, &new_admin, &id).await;
    assert_eq!(header_kid(&new_admin), kid_b);
    assert_eq!(header_kid(&new_agent), kid_b);
    assert!(gateway.stop().success());

    // A dropped: tokens it signed are refused, tokens of B still work.
    let gateway = start(opts(KEY_B));
    let client = gateway.client();
    assert_tokens(client, &old_admin, &old_agent, 401).await;
    assert_tokens(client, &new_admin, &new_agent, 200).await;
}

/// Asserts that `admin` on the management API and `agent` at `/mcp` both get `status`.
async fn assert_tokens(client: Client, admin: &str, agent: &str, status: u16) {
    let answer = client.get("/management/agents").bearer(admin).send().await;
    assert_eq!(answer.status, status, "admin: {}", answer.text());
    let answer = mcp_initialize(client, agent).await;
    assert_eq!(answer.status, status, "agent: {}", answer.text());
}

#[test]
fn a_repeated_or_short_previous_signing_key_stops_the_start_with_exit_code_2() {
    const KEY: &str = "a signing key of at least 32 bytes, secret";
    let dir = tempfile::tempdir().unwrap();
    for (pairs, key) in [
        (
            vec![
                ("Ithil__Jwt__SigningKey", KEY),
                ("Ithil__Jwt__PreviousSigningKeys__0", KEY),
            ],
            "jwt.previousSigningKeys.0",
        ),
        (
            vec![
                ("Ithil__Jwt__PreviousSigningKeys__0", KEY),
                ("Ithil__Jwt__PreviousSigningKeys__1", KEY),
            ],
            "jwt.previousSigningKeys.1",
        ),
        (
            vec![("Ithil__Jwt__PreviousSigningKeys__0", "too-short-secret")],
            "jwt.previousSigningKeys.0",
        ),
    ] {
        let opts = pairs
            .iter()
            .fold(GatewayOptions::new(), |opts, (name, value)| {
                opts.env(*name, *value)
            });
        let output = opts.command(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
        assert!(!stderr.contains(KEY), "{stderr}");
        assert!(!stderr.contains("too-short-secret"), "{stderr}");
    }
}
