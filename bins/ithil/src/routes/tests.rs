//! The HTTP API without a socket: requests go straight into [`route`] with a chosen peer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use ithil_registry::AuthError;
use ithil_token::ManualClock;
use serde_json::{Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::route;
use crate::config::{Config, Environment, Flags};
use crate::state::AppState;
use crate::store::Store;

const API_KEY: &str = "test-api-key-0123456789";
const START: OffsetDateTime = datetime!(2026-05-06 12:00:00 UTC);

struct Fixture {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    state: AppState,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn remote() -> SocketAddr {
    "203.0.113.7:40000".parse().unwrap()
}

fn fixture(pairs: &[(&str, &str)], dev: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    // Audit records are read from the store here; stdout stays for the test runner.
    let env: Environment = pairs
        .iter()
        .copied()
        .chain([("Ithil__Audit__DisableStdoutSink", "true")])
        .collect();
    let flags = Flags {
        dev,
        data: Some(dir.path().to_owned()),
        ..Flags::default()
    };
    let config = Config::load(&flags, &env).unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(&config.server.data_dir).unwrap();
    let (state, writer) = AppState::build(&config, store, Arc::new(clock.clone()), &env).unwrap();
    // The writer ends when the state (and with it every charge handle) is dropped.
    std::thread::spawn(move || writer.run());
    Fixture {
        _dir: dir,
        clock,
        state,
    }
}

fn with_key() -> Fixture {
    fixture(&[("Ithil__Admin__ApiKey", API_KEY)], false)
}

impl Fixture {
    async fn send(&self, request: Request<Full<Bytes>>, peer: SocketAddr) -> Answer {
        let response = route(&self.state, request, peer).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        // As curl sends it; the development endpoints answer only requests addressed to a
        // loopback name.
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost:5100");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let body = Full::new(Bytes::from(body.unwrap_or("").to_owned()));
        self.send(builder.body(body).unwrap(), loopback()).await
    }

    fn admin(&self) -> String {
        self.state
            .credentials
            .issue_admin(Duration::days(1))
            .unwrap()
            .token
    }

    async fn create(&self, admin: &str, body: &str) -> Value {
        let answer = self
            .call("POST", "/management/agents", Some(admin), Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.message());
        answer.json()
    }

    fn agents(&self) -> Vec<Value> {
        self.state
            .registry
            .list(None, 10_000)
            .iter()
            .map(|a| serde_json::to_value(a.as_ref()).unwrap())
            .collect()
    }
}

fn rfc3339(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn liveness_and_readiness_answer_json() {
    let f = fixture(&[], false);

    let answer = f.call("GET", "/health/live", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "live");

    let answer = f.call("GET", "/health/ready", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["components"]["store"], "ready");

    f.state.readiness.set_catalog(false);
    let answer = f.call("GET", "/health/ready", None, None).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["components"]["catalog"], "not_ready");
}

#[tokio::test]
async fn oauth_discovery_documents_are_404_never_401() {
    let f = with_key();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let answer = f.call("GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.code(), "not_found");
        assert!(answer.headers.get(header::WWW_AUTHENTICATE).is_none());
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let f = with_key();
    let admin = f.admin();

    let answer = f.call("GET", "/nothing/here", None, None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let answer = f
        .call("GET", "/management/agents/", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let answer = f
        .call("PATCH", "/management/agents", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers[header::ALLOW], "GET, POST");
    assert_eq!(answer.code(), "method_not_allowed");

    let answer = f.call("POST", "/health/live", None, None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_api_key_exchange_gives_a_90_day_admin_token() {
    let f = with_key();
    let body = json!({"apiKey": API_KEY}).to_string();

    let answer = f.call("POST", "/auth/admin/token", None, Some(&body)).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let json = answer.json();
    assert_eq!(rfc3339(&json["expiresAt"]), START + Duration::days(90));
    assert_eq!(json.as_object().unwrap().len(), 2);
    let token = json["token"].as_str().unwrap();
    assert!(f.state.credentials.verify_admin(token).is_ok());
}

#[tokio::test]
async fn the_admin_token_lifetime_follows_the_configuration() {
    let f = fixture(
        &[
            ("Ithil__Admin__ApiKey", API_KEY),
            ("Ithil__Admin__TokenExpiryDays", "7"),
        ],
        false,
    );
    let body = json!({"apiKey": API_KEY}).to_string();
    let answer = f.call("POST", "/auth/admin/token", None, Some(&body)).await;
    assert_eq!(
        rfc3339(&answer.json()["expiresAt"]),
        START + Duration::days(7)
    );
}

#[tokio::test]
async fn without_a_configured_key_the_exchange_does_not_exist() {
    let f = fixture(&[], false);
    let body = json!({"apiKey": API_KEY}).to_string();
    for method in ["POST", "GET"] {
        let answer = f.call(method, "/auth/admin/token", None, Some(&body)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_wrong_or_malformed_key_is_refused() {
    let f = with_key();

    let answer = f
        .call(
            "POST",
            "/auth/admin/token",
            None,
            Some(r#"{"apiKey": "wrong"}"#),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.code(), "invalid_api_key");

    for (body, code) in [
        ("{", "malformed_json"),
        (r#"{"apiKey": 5}"#, "invalid_field"),
        (r#"{}"#, "missing_field"),
        (r#"{"apiKey": "x", "extra": 1}"#, "unknown_field"),
        (r#"["apiKey"]"#, "invalid_body"),
    ] {
        let answer = f.call("POST", "/auth/admin/token", None, Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.code(), code, "{body}");
    }

    let request = Request::post("/auth/admin/token")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(format!(
            r#"{{"apiKey": "{API_KEY}"}}"#
        ))))
        .unwrap();
    let answer = f.send(request, loopback()).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn repeated_wrong_keys_from_one_address_are_slowed_down() {
    let f = with_key();
    let wrong = r#"{"apiKey": "wrong-key"}"#;
    let right = json!({"apiKey": API_KEY}).to_string();
    let attempt = |body: String, peer: SocketAddr| {
        let request = Request::post("/auth/admin/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        f.send(request, peer)
    };

    for _ in 0..5 {
        let answer = attempt(wrong.into(), remote()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }

    // Blocked now: even the right key is not looked at.
    let answer = attempt(right.clone(), remote()).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    assert_eq!(answer.code(), "too_many_requests");

    // Another address is not affected.
    let answer = attempt(right.clone(), loopback()).await;
    assert_eq!(answer.status, StatusCode::OK);

    f.clock.advance(Duration::seconds(1));
    let answer = attempt(right, remote()).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn management_needs_an_admin_token() {
    let f = with_key();
    let agent = f.create(&f.admin(), r#"{"label": "a"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    let stored = f.state.registry.get(id).unwrap();
    let agent_token = f
        .state
        .credentials
        .issue_agent(&stored, Duration::days(1))
        .unwrap()
        .token;

    for (method, path) in [
        ("GET", "/management/agents".to_owned()),
        ("POST", "/management/agents".to_owned()),
        ("GET", format!("/management/agents/{id}")),
        ("PUT", format!("/management/agents/{id}")),
        ("DELETE", format!("/management/agents/{id}")),
        ("POST", format!("/management/agents/{id}/token")),
        ("GET", format!("/management/agents/{id}/budget")),
    ] {
        let answer = f.call(method, &path, None, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(answer.code(), "unauthorized");

        let answer = f.call(method, &path, Some("not.a.token"), None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            answer.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );

        let answer = f.call(method, &path, Some(&agent_token), None).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(answer.code(), "forbidden");
    }

    // Nothing was changed by any of the refused calls.
    assert_eq!(f.agents(), vec![agent]);
}

#[tokio::test]
async fn doubled_authorization_headers_are_refused() {
    let f = with_key();
    let admin = f.admin();
    let request = Request::get("/management/agents")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = f.send(request, loopback()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_admin_token_is_refused() {
    let f = with_key();
    let admin = f.admin();
    f.clock.advance(Duration::days(2));
    let answer = f
        .call("GET", "/management/agents", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_spec_walkthrough_creates_lists_reads_updates_and_deletes() {
    let f = with_key();
    let admin = f.admin();

    let created = f
        .call(
            "POST",
            "/management/agents",
            Some(&admin),
            Some(r#"{"label": "My Claude Agent", "dailyTokenBudget": 50000}"#),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let agent = created.json();
    let id = agent["agentId"].as_str().unwrap().to_owned();
    assert!(ithil_registry::is_agent_id(&id));
    assert_eq!(
        created.headers[header::LOCATION],
        format!("/management/agents/{id}").as_str()
    );
    assert_eq!(agent["label"], "My Claude Agent");
    assert_eq!(agent["dailyTokenBudget"], 50000);
    assert_eq!(agent["isActive"], true);
    assert_eq!(agent["allowedTools"], Value::Null);
    assert_eq!(agent["scopes"], json!([]));
    assert_eq!(rfc3339(&agent["createdAt"]), START);

    let list = f
        .call("GET", "/management/agents", Some(&admin), None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json(), json!([agent]));

    let got = f
        .call(
            "GET",
            &format!("/management/agents/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json(), agent);

    f.clock.advance(Duration::minutes(5));
    let updated = f
        .call(
            "PUT",
            &format!("/management/agents/{id}"),
            Some(&admin),
            Some(r#"{"dailyTokenBudget": 100000, "isActive": true}"#),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    let updated = updated.json();
    assert_eq!(updated["dailyTokenBudget"], 100000);
    assert_eq!(updated["label"], "My Claude Agent");
    assert_eq!(updated["createdAt"], agent["createdAt"]);
    assert_eq!(rfc3339(&updated["updatedAt"]), START + Duration::minutes(5));

    let deactivated = f
        .call(
            "PUT",
            &format!("/management/agents/{id}"),
            Some(&admin),
            Some(r#"{"isActive": false}"#),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK);
    assert_eq!(deactivated.json()["isActive"], false);
    assert_eq!(deactivated.json()["dailyTokenBudget"], 100000);

    let deleted = f
        .call(
            "DELETE",
            &format!("/management/agents/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.body.is_empty());

    let gone = f
        .call(
            "GET",
            &format!("/management/agents/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "agent_not_found");
    let again = f
        .call(
            "DELETE",
            &format!("/management/agents/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_can_unset_the_budget_and_the_allowlist() {
    let f = with_key();
    let admin = f.admin();
    let agent = f
        .create(
            &admin,
            r#"{"label": "a", "dailyTokenBudget": 5, "allowedTools": ["getPost"], "scopes": ["read"]}"#,
        )
        .await;
    assert_eq!(agent["allowedTools"], json!(["getPost"]));
    assert_eq!(agent["scopes"], json!(["read"]));
    let path = format!("/management/agents/{}", agent["agentId"].as_str().unwrap());

    let answer = f
        .call(
            "PUT",
            &path,
            Some(&admin),
            Some(r#"{"dailyTokenBudget": null, "allowedTools": null}"#),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["dailyTokenBudget"], Value::Null);
    assert_eq!(answer.json()["allowedTools"], Value::Null);
    assert_eq!(answer.json()["scopes"], json!(["read"]));
}

#[tokio::test]
async fn the_list_is_paged_with_a_next_link() {
    let f = with_key();
    let admin = f.admin();
    for n in 0..3 {
        f.create(&admin, &format!(r#"{{"label": "agent {n}"}}"#))
            .await;
    }
    let mut ids: Vec<String> = f
        .agents()
        .iter()
        .map(|a| a["agentId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();

    let first = f
        .call("GET", "/management/agents?limit=2", Some(&admin), None)
        .await;
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    let link = first.headers[header::LINK].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!(
            "</management/agents?limit=2&after={}>; rel=\"next\"",
            ids[1]
        )
    );

    let next = f
        .call(
            "GET",
            &format!("/management/agents?limit=2&after={}", ids[1]),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(next.json()[0]["agentId"], ids[2].as_str());
    assert!(next.headers.get(header::LINK).is_none());

    for query in ["limit=0", "limit=x", "after=../x", "colour=red"] {
        let answer = f
            .call(
                "GET",
                &format!("/management/agents?{query}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.code(), "invalid_query");
    }
}

#[tokio::test]
async fn agent_tokens_default_to_30_days_and_take_expires_in_days() {
    let f = with_key();
    let admin = f.admin();
    let agent = f
        .create(&admin, r#"{"label": "a", "scopes": ["read"]}"#)
        .await;
    let id = agent["agentId"].as_str().unwrap();
    let path = format!("/management/agents/{id}/token");

    // No body and no Content-Type.
    let answer = f.call("POST", &path, Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let json = answer.json();
    assert_eq!(rfc3339(&json["expiresAt"]), START + Duration::days(30));
    let principal = f
        .state
        .credentials
        .verify_agent(json["token"].as_str().unwrap(), &f.state.registry)
        .unwrap();
    assert_eq!(principal.agent.agent_id, id);
    assert_eq!(principal.scopes, vec!["read".to_owned()]);

    let answer = f
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(r#"{ "expiresInDays": 30 }"#),
        )
        .await;
    assert_eq!(
        rfc3339(&answer.json()["expiresAt"]),
        START + Duration::days(30)
    );

    let answer = f
        .call(
            "POST",
            &path,
            Some(&admin),
            Some(r#"{"expiresInDays": 365}"#),
        )
        .await;
    assert_eq!(
        rfc3339(&answer.json()["expiresAt"]),
        START + Duration::days(365)
    );

    let answer = f.call("POST", &path, Some(&admin), Some("{}")).await;
    assert_eq!(
        rfc3339(&answer.json()["expiresAt"]),
        START + Duration::days(30)
    );

    for body in [
        r#"{"expiresInDays": 0}"#,
        r#"{"expiresInDays": 366}"#,
        r#"{"expiresInDays": -1}"#,
        r#"{"expiresInDays": 1.5}"#,
        r#"{"expiresInDays": "30"}"#,
        r#"{"expiresInDays": null}"#,
        r#"{"expiresInDays": 1e400}"#,
        r#"{"expiresInDays": 99999999999999999999999999}"#,
        r#"{"days": 30}"#,
    ] {
        let answer = f.call("POST", &path, Some(&admin), Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
    }

    let answer = f
        .call(
            "POST",
            "/management/agents/agt_00000000/token",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_inactive_agent_gets_no_token_and_its_old_token_is_refused_at_once() {
    let f = with_key();
    let admin = f.admin();
    let agent = f.create(&admin, r#"{"label": "a"}"#).await;
    let id = agent["agentId"].as_str().unwrap();

    let token = f
        .call(
            "POST",
            &format!("/management/agents/{id}/token"),
            Some(&admin),
            None,
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        f.state
            .credentials
            .verify_agent(&token, &f.state.registry)
            .is_ok()
    );

    f.call(
        "PUT",
        &format!("/management/agents/{id}"),
        Some(&admin),
        Some(r#"{"isActive": false}"#),
    )
    .await;
    assert_eq!(
        f.state
            .credentials
            .verify_agent(&token, &f.state.registry)
            .unwrap_err(),
        AuthError::InactiveAgent
    );

    let answer = f
        .call(
            "POST",
            &format!("/management/agents/{id}/token"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.code(), "agent_inactive");
}

#[tokio::test]
async fn hostile_agent_bodies_get_a_clear_4xx_and_change_nothing() {
    let f = with_key();
    let admin = f.admin();
    let agent = f.create(&admin, r#"{"label": "keep me"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    let long = "x".repeat(10_000);
    let deep = format!("{{\"label\": {}{}}}", "[".repeat(5000), "]".repeat(5000));

    let hostile: Vec<(String, &str)> = vec![
        ("{".into(), "malformed_json"),
        ("not json".into(), "malformed_json"),
        (r#"{"label": "a",}"#.into(), "malformed_json"),
        (r#"{"label": "a", "label": "b"}"#.into(), "malformed_json"),
        (deep, "malformed_json"),
        ("[]".into(), "invalid_body"),
        ("null".into(), "invalid_body"),
        (r#"{"label": 5}"#.into(), "invalid_field"),
        (r#"{"label": null}"#.into(), "invalid_field"),
        (r#"{"label": ["a"]}"#.into(), "invalid_field"),
        (format!(r#"{{"label": "{long}"}}"#), "invalid_field"),
        (r#"{"label": ""}"#.into(), "invalid_field"),
        (r#"{"label": "   "}"#.into(), "invalid_field"),
        (r#"{"label": "a\u0000b"}"#.into(), "invalid_field"),
        (
            r#"{"label": "a", "dailyTokenBudget": 0}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": -5}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": 1.5}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": "50000"}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": 100000000000000000000000000000}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "dailyTokenBudget": 1e400}"#.into(),
            "malformed_json",
        ),
        (
            r#"{"label": "a", "allowedTools": "all"}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "allowedTools": [1]}"#.into(),
            "invalid_field",
        ),
        (r#"{"label": "a", "scopes": null}"#.into(), "invalid_field"),
        (
            r#"{"label": "a", "isActive": "true"}"#.into(),
            "invalid_field",
        ),
        (
            r#"{"label": "a", "agentId": "agt_00000000"}"#.into(),
            "unknown_field",
        ),
        (r#"{"label": "a", "budget": 5}"#.into(), "unknown_field"),
    ];

    for (body, code) in &hostile {
        let answer = f
            .call("POST", "/management/agents", Some(&admin), Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "POST {body:.80}");
        assert_eq!(
            answer.code(),
            *code,
            "POST {body:.80}: {}",
            answer.message()
        );

        let answer = f
            .call(
                "PUT",
                &format!("/management/agents/{id}"),
                Some(&admin),
                Some(body),
            )
            .await;
        assert!(answer.status.is_client_error(), "PUT {body:.80}");
    }

    let answer = f
        .call(
            "POST",
            "/management/agents",
            Some(&admin),
            Some(r#"{"dailyTokenBudget": 5}"#),
        )
        .await;
    assert_eq!(answer.code(), "missing_field");
    let answer = f
        .call(
            "PUT",
            &format!("/management/agents/{id}"),
            Some(&admin),
            Some("{}"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let message = f
        .call(
            "POST",
            "/management/agents",
            Some(&admin),
            Some(r#"{"label": "a", "budget": 5}"#),
        )
        .await
        .message();
    assert!(message.contains("`budget`"), "{message}");
    let message = f
        .call(
            "POST",
            "/management/agents",
            Some(&admin),
            Some(r#"{"label": 5}"#),
        )
        .await
        .message();
    assert!(message.contains("`label`"), "{message}");

    assert_eq!(f.agents(), vec![agent]);
}

#[tokio::test]
async fn unicode_labels_are_kept_as_given() {
    let f = with_key();
    let label = "Agent ✓ 日本語 🚀 émigré";
    let agent = f
        .create(&f.admin(), &json!({"label": label}).to_string())
        .await;
    assert_eq!(agent["label"], label);
}

#[tokio::test]
async fn bodies_need_json_and_stay_under_the_limit() {
    let f = fixture(
        &[
            ("Ithil__Admin__ApiKey", API_KEY),
            ("Ithil__Server__MaxBodyBytes", "1024"),
        ],
        false,
    );
    let admin = f.admin();

    let request = Request::post("/management/agents")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"label=a")))
        .unwrap();
    let answer = f.send(request, loopback()).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.code(), "unsupported_media_type");

    let request = Request::post("/management/agents")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Full::new(Bytes::from_static(br#"{"label": "a"}"#)))
        .unwrap();
    assert_eq!(
        f.send(request, loopback()).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let big = json!({"label": "x".repeat(2000)}).to_string();
    let answer = f
        .call("POST", "/management/agents", Some(&admin), Some(&big))
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.code(), "payload_too_large");

    let answer = f
        .call("POST", "/management/agents", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(f.agents().is_empty());
}

#[tokio::test]
async fn dev_endpoints_do_not_exist_outside_development_mode() {
    let f = with_key();
    for path in ["/dev/admin-token", "/dev/token"] {
        let answer = f.call("GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(f.agents().is_empty());
}

#[tokio::test]
async fn dev_endpoints_answer_loopback_peers_of_every_family() {
    let f = fixture(&[], true);
    for peer in [
        "127.0.0.1:1",
        "127.8.9.10:1",
        "[::1]:1",
        "[::ffff:127.0.0.1]:1",
    ] {
        let request = Request::get("/dev/admin-token")
            .header(header::HOST, "localhost:5100")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = f.send(request, peer.parse().unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{peer}");
        let json = answer.json();
        assert_eq!(rfc3339(&json["expiresAt"]), START + Duration::days(90));
        assert!(
            f.state
                .credentials
                .verify_admin(json["token"].as_str().unwrap())
                .is_ok()
        );
    }
}

#[tokio::test]
async fn dev_endpoints_ignore_forwarding_headers_from_a_remote_peer() {
    let f = fixture(&[], true);
    for peer in [
        "203.0.113.7:1",
        "[2001:db8::1]:1",
        "[::ffff:10.0.0.1]:1",
        "0.0.0.0:1",
    ] {
        for path in ["/dev/admin-token", "/dev/token"] {
            let request = Request::get(path)
                .header("x-forwarded-for", "127.0.0.1")
                .header("x-real-ip", "127.0.0.1")
                .header("forwarded", "for=127.0.0.1")
                .header(header::HOST, "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let answer = f.send(request, peer.parse().unwrap()).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{peer} {path}");
        }
    }
    assert!(f.agents().is_empty());
}

#[tokio::test]
async fn the_dev_token_belongs_to_one_development_agent_made_on_first_use() {
    let f = fixture(&[], true);

    let first = f.call("GET", "/dev/token", None, None).await;
    assert_eq!(first.status, StatusCode::OK);
    let json = first.json();
    assert_eq!(rfc3339(&json["expiresAt"]), START + Duration::hours(8));
    let principal = f
        .state
        .credentials
        .verify_agent(json["token"].as_str().unwrap(), &f.state.registry)
        .unwrap();
    assert_eq!(principal.agent.label, "Development agent");
    assert_eq!(principal.agent.allowed_tools, None);
    assert!(principal.agent.scopes.is_empty());

    let second = f.call("GET", "/dev/token", None, None).await;
    let again = f
        .state
        .credentials
        .verify_agent(second.json()["token"].as_str().unwrap(), &f.state.registry)
        .unwrap();
    assert_eq!(again.agent.agent_id, principal.agent.agent_id);
    assert_eq!(f.agents().len(), 1);

    // Deleted by an operator: the next call makes a new one.
    f.state.registry.delete(&principal.agent.agent_id).unwrap();
    let third = f.call("GET", "/dev/token", None, None).await;
    assert_eq!(third.status, StatusCode::OK);
    assert_eq!(f.agents().len(), 1);
    assert_ne!(
        f.agents()[0]["agentId"].as_str().unwrap(),
        principal.agent.agent_id
    );
}

#[tokio::test]
async fn mcp_goes_to_the_gateway_which_wants_an_agent_token() {
    let f = fixture(&[], true);
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}
    })
    .to_string();
    let mcp = |token: Option<String>| {
        let mut builder = Request::post("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder
            .body(Full::new(Bytes::from(initialize.clone())))
            .unwrap()
    };

    let answer = f.send(mcp(None), loopback()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));

    // An admin token never opens /mcp.
    let answer = f.send(mcp(Some(f.admin())), loopback()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let dev = f.call("GET", "/dev/token", None, None).await.json();
    let token = dev["token"].as_str().unwrap().to_owned();
    let answer = f.send(mcp(Some(token.clone())), loopback()).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.headers.contains_key("mcp-session-id"));

    // Deactivated: refused by the very next request.
    let principal = f
        .state
        .credentials
        .verify_agent(&token, &f.state.registry)
        .unwrap();
    let patch = ithil_registry::AgentPatch {
        is_active: Some(false),
        ..Default::default()
    };
    f.state
        .registry
        .update(&principal.agent.agent_id, patch, START)
        .unwrap();
    let answer = f.send(mcp(Some(token)), loopback()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn mcp_bodies_over_the_limit_get_413_before_the_gateway() {
    let f = fixture(&[("Ithil__Server__MaxBodyBytes", "1024")], false);
    let agent = f
        .state
        .registry
        .create(ithil_registry::NewAgent::new("big bodies"), START)
        .unwrap();
    let token = f
        .state
        .credentials
        .issue_agent(&agent, Duration::days(1))
        .unwrap()
        .token;
    let request = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(vec![b' '; 2048])))
        .unwrap();
    assert_eq!(
        f.send(request, loopback()).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn mcp_requests_without_a_valid_token_are_refused_before_their_body_is_read() {
    // The body used to be read first, so an anonymous client could make the server buffer up
    // to the body limit (or wait out the body timeout) before it was refused.
    let f = fixture(&[("Ithil__Server__MaxBodyBytes", "1024")], false);
    let oversized = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(vec![b' '; 2048])))
        .unwrap();
    let answer = f.send(oversized, loopback()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));

    // A body that never arrives is never waited for.
    let request = Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer not.a.token")
        .body(NeverBody)
        .unwrap();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        route(&f.state, request, loopback()),
    )
    .await
    .expect("answered without the body");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}

/// A request body whose first byte never arrives.
struct NeverBody;

impl hyper::body::Body for NeverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn the_circuits_are_listed_for_admins() {
    let f = fixture(&[], false);
    let answer = f.call("GET", "/management/circuits", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let admin = f.admin();
    let answer = f
        .call("GET", "/management/circuits", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!([]));

    let answer = f
        .call("POST", "/management/circuits", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn management_actions_leave_audit_records_naming_the_admin_token() {
    let f = with_key();
    let admin = f.admin();
    let jti = f.state.credentials.verify_admin(&admin).unwrap().jti;
    let agent = f.create(&admin, r#"{"label": "audited"}"#).await;
    let id = agent["agentId"].as_str().unwrap();
    f.call(
        "POST",
        &format!("/management/agents/{id}/token"),
        Some(&admin),
        None,
    )
    .await;
    f.call(
        "DELETE",
        &format!("/management/agents/{id}"),
        Some(&admin),
        None,
    )
    .await;

    let page = f.state.audit.query(&ithil_audit::Query::default()).unwrap();
    let actions: Vec<&str> = page.records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["agent.delete", "token.issue", "agent.create"]);
    for record in &page.records {
        assert_eq!(record.agent_id, "admin");
        assert_eq!(record.operator.as_deref(), Some(jti.as_str()));
        assert_eq!(record.arguments.as_ref().unwrap()["agentId"], id);
        let text = serde_json::to_string(record).unwrap();
        assert!(!text.contains(&admin), "a record holds the admin token");
    }
}

#[tokio::test]
async fn the_budget_endpoints_show_set_and_reset_the_daily_limit() {
    let f = with_key();
    let admin = f.admin();
    let agent = f
        .create(&admin, r#"{"label": "b", "dailyTokenBudget": 50000}"#)
        .await;
    let id = agent["agentId"].as_str().unwrap().to_owned();
    let path = format!("/management/agents/{id}/budget");

    let day = ithil_budget::utc_day(START);
    let charge = ithil_budget::Charge {
        agent_id: id.clone(),
        day,
        tokens: 12_500,
        limit: 50_000,
        extra: None,
    };
    f.state.charges.charge(charge).await.unwrap();

    let answer = f.call("GET", &path, Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({
            "agentId": id, "dailyTokenBudget": 50000, "tokensUsedToday": 12500,
            "remaining": 37500, "percentageUsed": 25.0, "resetsAt": "2026-05-07T00:00:00Z",
        })
    );

    let answer = f
        .call(
            "PUT",
            &path,
            Some(&admin),
            Some(r#"{"dailyTokenBudget": 20000}"#),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["remaining"], 7500);
    assert_eq!(
        f.state.registry.get(&id).unwrap().daily_token_budget,
        Some(20_000)
    );

    let answer = f
        .call(
            "PUT",
            &path,
            Some(&admin),
            Some(r#"{"dailyTokenBudget": null}"#),
        )
        .await;
    assert_eq!(answer.json()["dailyTokenBudget"], 100_000);

    for body in [
        r#"{"dailyTokenBudget": 0}"#,
        r#"{"dailyTokenBudget": "5"}"#,
        "{}",
        r#"{"x": 1}"#,
    ] {
        let answer = f.call("PUT", &path, Some(&admin), Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(f.state.registry.get(&id).unwrap().daily_token_budget, None);

    let answer = f
        .call("GET", &format!("{path}/history?days=3"), Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let days = answer.json()["days"].clone();
    assert_eq!(
        days,
        json!([
            {"date": "2026-05-04", "tokensUsed": 0},
            {"date": "2026-05-05", "tokensUsed": 0},
            {"date": "2026-05-06", "tokensUsed": 12500},
        ])
    );

    let answer = f.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(f.state.budget.used(&id, day), 0);
    let reset = f
        .state
        .audit
        .query(&ithil_audit::Query::default())
        .unwrap()
        .records
        .into_iter()
        .find(|r| r.action == "budget.reset")
        .expect("the reset is audited");
    assert_eq!(reset.arguments.unwrap()["agentId"], id.as_str());

    let unknown = "/management/agents/agt_00000000/budget";
    assert_eq!(
        f.call("GET", unknown, Some(&admin), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.call("DELETE", unknown, Some(&admin), None).await.status,
        StatusCode::NOT_FOUND
    );
    let answer = f
        .call("GET", &format!("{path}/history?days=0"), Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_tool_catalog_is_listed_for_admins() {
    let f = with_key();
    let answer = f
        .call("GET", "/management/tools", Some(&f.admin()), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), json!([]));
    let answer = f.call("GET", "/management/tools", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = f
        .call("POST", "/management/tools/reload", Some(&f.admin()), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["tools"], 0);
}

#[tokio::test]
async fn the_audit_trail_is_queried_paged_and_exported() {
    let f = with_key();
    let admin = f.admin();
    let mut ids = Vec::new();
    for label in ["a", "b", "c"] {
        let agent = f.create(&admin, &json!({"label": label}).to_string()).await;
        ids.push(agent["agentId"].as_str().unwrap().to_owned());
    }

    let page = f
        .call("GET", "/management/audit?limit=2", Some(&admin), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let page = page.json();
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
    assert_eq!(page["records"][0]["arguments"]["agentId"], ids[2].as_str());
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();

    let next = f
        .call(
            "GET",
            &format!("/management/audit?limit=2&cursor={cursor}"),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(next["records"].as_array().unwrap().len(), 1);
    assert_eq!(next["nextCursor"], Value::Null);

    // Management records belong to `admin`; an agent's own trail is empty until it calls.
    let own = f
        .call(
            "GET",
            &format!("/management/agents/{}/audit", ids[0]),
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(own["records"], json!([]));
    let admins = f
        .call(
            "GET",
            "/management/audit?agentId=admin&outcome=ok",
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(admins["records"].as_array().unwrap().len(), 3);

    let export = f
        .call("GET", "/management/audit/export", Some(&admin), None)
        .await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = String::from_utf8(export.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The export records itself before it reads, so it is the newest line.
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["action"], "audit.export");
    assert_eq!(lines[1]["action"], "agent.create");

    let answer = f
        .call(
            "GET",
            "/management/audit?since=nonsense",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = f.call("GET", "/management/audit", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

impl Fixture {
    /// `GET /metrics` with an admin token, as text.
    async fn scrape(&self) -> String {
        let answer = self
            .call("GET", "/metrics", Some(&self.admin()), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        String::from_utf8(answer.body.to_vec()).unwrap()
    }
}

#[tokio::test]
async fn metrics_need_an_admin_token() {
    let f = with_key();
    let agent = f.create(&f.admin(), r#"{"label": "a"}"#).await;
    let stored = f
        .state
        .registry
        .get(agent["agentId"].as_str().unwrap())
        .unwrap();
    let agent_token = f
        .state
        .credentials
        .issue_agent(&stored, Duration::days(1))
        .unwrap()
        .token;

    let answer = f.call("GET", "/metrics", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(answer.code(), "unauthorized");

    let answer = f.call("GET", "/metrics", Some("not.a.token"), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let answer = f.call("GET", "/metrics", Some(&agent_token), None).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "forbidden");

    let admin = f.admin();
    let answer = f.call("POST", "/metrics", Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);

    let answer = f.call("GET", "/metrics", Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    // The refusals above were counted under the route's template.
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"} 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"403\"} 1\n"
        ),
        "{text}"
    );
    // Labelled metrics show once they have a series; these have one from the start.
    for name in [
        "# TYPE ithil_http_requests_total counter",
        "# TYPE ithil_tokens_charged_total counter",
        "# TYPE ithil_store_commit_duration_seconds histogram",
        "# TYPE ithil_mcp_sessions_open gauge",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // Creating the agent above committed its audit record durably.
    let commits: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("ithil_store_commit_duration_seconds_count "))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no commit count in:\n{text}"));
    assert!(commits >= 1, "{text}");
}

#[tokio::test]
async fn requests_are_counted_under_their_route_template_never_their_path() {
    let f = with_key();
    let admin = f.admin();
    let answer = f
        .call("GET", "/management/agents/agt_x", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f
        .call("GET", "/management/agents/agt_x/budget", Some(&admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f.call("GET", "/no/such/path/zzz", None, None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f.call("BREW", "/health/live", None, None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);

    let text = f.scrape().await;
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"GET\",\
             route=\"/management/agents/{agentId}\",status=\"404\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"GET\",\
             route=\"/management/agents/{agentId}/budget\",status=\"404\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"GET\",route=\"other\",status=\"404\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"other\",route=\"/health/live\",status=\"405\"} 1\n"
        ),
        "{text}"
    );
    for raw in ["agt_x", "zzz", "BREW"] {
        assert!(!text.contains(raw), "{raw} reached a label:\n{text}");
    }
}

#[test]
fn every_route_has_a_template_and_nothing_else_does() {
    use super::{OTHER_ROUTE, template};
    for (path, expected) in [
        ("/health/live", "/health/live"),
        ("/health/ready", "/health/ready"),
        ("/auth/admin/token", "/auth/admin/token"),
        ("/dev/admin-token", "/dev/admin-token"),
        ("/dev/token", "/dev/token"),
        ("/management/agents", "/management/agents"),
        ("/management/agents/agt_1", "/management/agents/{agentId}"),
        (
            "/management/agents/a/token",
            "/management/agents/{agentId}/token",
        ),
        (
            "/management/agents/a/budget",
            "/management/agents/{agentId}/budget",
        ),
        (
            "/management/agents/a/budget/history",
            "/management/agents/{agentId}/budget/history",
        ),
        (
            "/management/agents/a/audit",
            "/management/agents/{agentId}/audit",
        ),
        ("/mcp", "/mcp"),
        ("/management/audit", "/management/audit"),
        ("/management/audit/export", "/management/audit/export"),
        ("/management/circuits", "/management/circuits"),
        ("/management/tools", "/management/tools"),
        ("/management/tools/reload", "/management/tools/reload"),
        ("/metrics", "/metrics"),
    ] {
        assert_eq!(template(path), expected, "{path}");
    }
    for path in [
        "",
        "/",
        "/mcp/",
        "/metrics/x",
        "/management/agents/a/b",
        "/.well-known/oauth-authorization-server",
        "*",
    ] {
        assert_eq!(template(path), OTHER_ROUTE, "{path}");
    }
}

#[tokio::test]
async fn a_tool_name_outside_the_catalog_is_counted_under_one_label() {
    let f = fixture(&[], true);
    let dev = f.call("GET", "/dev/token", None, None).await.json();
    let token = dev["token"].as_str().unwrap().to_owned();
    let post = |session: Option<&str>, body: Value| {
        let mut builder = Request::post("/mcp")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(session) = session {
            builder = builder
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        builder
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}
    });
    let answer = f.send(post(None, initialize), loopback()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let session = answer.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    for name in ["made-up-tool-one", "made-up-tool-two"] {
        let call = json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": name, "arguments": {}}
        });
        let answer = f.send(post(Some(&session), call), loopback()).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["error"]["code"], -32602);
    }

    let text = f.scrape().await;
    assert!(
        text.contains("ithil_tool_calls_total{tool=\"(unknown)\",outcome=\"unknown_tool\"} 2\n"),
        "{text}"
    );
    assert!(!text.contains("made-up-tool"), "{text}");
    assert!(text.contains("ithil_mcp_sessions_open 1\n"), "{text}");
    assert!(
        text.contains(
            "ithil_http_requests_total{method=\"POST\",route=\"/mcp\",status=\"200\"} 3\n"
        ),
        "{text}"
    );
}
