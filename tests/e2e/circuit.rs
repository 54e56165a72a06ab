//! The circuit breaker end to end: the real binary in front of a downstream that fails on
//! command.
//!
//! The downstream is a tiny hyper server inside the test that answers 500 while its switch is
//! set and 200 otherwise, and counts every request it receives, so the tests can tell calls the
//! gateway forwarded from calls it refused at once. The break is one second, so the half-open
//! probe is waited for in real time (about 1.2 s); the state machine itself is tested with a
//! manual clock in crates/ithil-proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use ithil_tests::gateway::{GatewayOptions, GatewayProcess};

use crate::budget::{Bounded as _, Mcp, admin_token, create_agent};

/// The admin API key of these tests' gateways.
const API_KEY: &str = "e2e-circuit-api-key-0123456789abcdef0123456789";

/// A downstream on 127.0.0.1 that fails while `failing` is set and counts what it receives.
struct FlakyDownstream {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    received: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl FlakyDownstream {
    async fn start() -> FlakyDownstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("a local address");
        let failing = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (fail, count) = (Arc::clone(&failing), Arc::clone(&received));
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (fail, count) = (Arc::clone(&fail), Arc::clone(&count));
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = if fail.load(Ordering::SeqCst) {
                            (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"failing"}"#)
                        } else {
                            (StatusCode::OK, r#"{"ok":true}"#)
                        };
                        let mut response =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *response.status_mut() = status;
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        async move { Ok::<_, Infallible>(response) }
                    });
                    // A connection the gateway's pool drops ends with an error of no concern.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FlakyDownstream {
            addr,
            failing,
            received,
            server,
        }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyDownstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The gateway in front of `downstream` with a one-second break, an admin token, and one
/// agent's open MCP session.
struct Stack {
    gateway: GatewayProcess,
    admin: String,
    agent_id: String,
    mcp: Mcp,
    _catalog: tempfile::TempDir,
}

impl Stack {
    async fn start(downstream: &FlakyDownstream) -> Stack {
        let catalog = tempfile::tempdir().expect("a temporary directory");
        let path = catalog.path().join("tools.json");
        let manifest = json!({
            "downstreams": { "flaky": { "baseUrl": format!("http://{}", downstream.addr) } },
            "tools": [{
                "name": "getFlaky", "description": "Fails on command.", "downstream": "flaky",
                "method": "GET", "route": "/flaky",
                "inputSchema": { "type": "object", "properties": {} }
            }]
        });
        std::fs::write(&path, manifest.to_string()).expect("the manifest is written");

        let opts = GatewayOptions::new()
            .api_key(API_KEY)
            .env("Ithil__CircuitBreaker__BreakDurationSeconds", "1")
            .env("Ithil__Audit__DisableStdoutSink", "true")
            .arg("--catalog")
            .arg(path.to_string_lossy());
        let gateway = GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"));
        let client = gateway.client();
        let admin = admin_token(&client, API_KEY).await;
        let (agent_id, token) =
            create_agent(&client, &admin, json!({"label": "circuit tester"})).await;
        let mcp = Mcp::open(gateway.addr(), &token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        Stack {
            gateway,
            admin,
            agent_id,
            mcp,
            _catalog: catalog,
        }
    }

    /// `GET path` with the admin token, as JSON.
    async fn admin_get(&self, path: &str) -> Value {
        let answer = self
            .gateway
            .client()
            .get(path)
            .bearer(&self.admin)
            .send()
            .bounded()
            .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        answer.json()
    }

    /// The one circuit of `GET /management/circuits`.
    async fn circuit(&self) -> Value {
        let circuits = self.admin_get("/management/circuits").await;
        let circuits = circuits.as_array().expect("a list of circuits");
        assert_eq!(circuits.len(), 1, "{circuits:?}");
        assert_eq!(circuits[0]["downstream"], "flaky");
        circuits[0].clone()
    }
}

#[tokio::test]
async fn a_failing_downstream_is_isolated_and_one_probe_after_the_break_closes_its_circuit() {
    let downstream = FlakyDownstream::start().await;
    let stack = Stack::start(&downstream).await;
    assert_eq!(stack.circuit().await["state"], "closed");

    // Five failures in a row: each reached the downstream and failed as -32002.
    downstream.fail(true);
    for n in 1..=5 {
        let answer = stack.mcp.call("getFlaky", json!({})).await.unwrap();
        assert_eq!(
            answer.error_code(),
            Some(-32002),
            "call {n}: {}",
            answer.body
        );
    }
    assert_eq!(downstream.received(), 5);

    // Open: refused at once, without the downstream, with the documented message.
    for _ in 0..3 {
        let answer = stack.mcp.call("getFlaky", json!({})).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.error_code(), Some(-32003), "{}", answer.body);
        assert_eq!(
            answer.body["error"]["message"],
            "circuit open: downstream flaky is isolated; retry after 1 s"
        );
    }
    assert_eq!(
        downstream.received(),
        5,
        "an open circuit reached the downstream"
    );

    let circuit = stack.circuit().await;
    assert_eq!(circuit["state"], "open", "{circuit}");
    assert_eq!(circuit["recentFailures"], 5, "{circuit}");
    assert_eq!(circuit["recentSuccesses"], 0, "{circuit}");
    assert_eq!(circuit["openedCount"], 1, "{circuit}");
    assert!(circuit["since"].as_str().is_some(), "{circuit}");

    let refused = stack
        .admin_get(&format!(
            "/management/agents/{}/audit?outcome=circuit_open",
            stack.agent_id
        ))
        .await;
    let refused = refused["records"].as_array().expect("records").clone();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r["tokens"] == 0 && r["tool"] == "getFlaky")
    );
    let budget = stack
        .admin_get(&format!("/management/agents/{}/budget", stack.agent_id))
        .await;
    assert_eq!(budget["tokensUsedToday"], 0, "{budget}");

    // After the one-second break, one probe reaches the healed downstream and closes it.
    downstream.fail(false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let probe = stack.mcp.call("getFlaky", json!({})).await.unwrap();
    assert!(probe.is_result(), "{}", probe.body);
    assert_eq!(probe.json(), json!({ "ok": true }));
    assert_eq!(downstream.received(), 6);
    assert_eq!(stack.circuit().await["state"], "closed");

    let next = stack.mcp.call("getFlaky", json!({})).await.unwrap();
    assert!(next.is_result(), "{}", next.body);
    assert_eq!(downstream.received(), 7);

    // Every change of state is in the server log at warn.
    let log = stack.gateway.stderr();
    for change in [
        "circuit of downstream flaky changed from closed to open",
        "circuit of downstream flaky changed from open to half_open",
        "circuit of downstream flaky changed from half_open to closed",
    ] {
        let line = log
            .lines()
            .find(|line| line.contains(change))
            .unwrap_or_else(|| panic!("no log line {change:?} in\n{log}"));
        assert!(line.contains("WARN"), "{line}");
    }
}

#[tokio::test]
async fn a_failed_probe_isolates_the_downstream_again() {
    let downstream = FlakyDownstream::start().await;
    let stack = Stack::start(&downstream).await;
    downstream.fail(true);
    for _ in 0..5 {
        let answer = stack.mcp.call("getFlaky", json!({})).await.unwrap();
        assert_eq!(answer.error_code(), Some(-32002), "{}", answer.body);
    }

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let probe = stack.mcp.call("getFlaky", json!({})).await.unwrap();
    assert_eq!(probe.error_code(), Some(-32002), "{}", probe.body);
    assert_eq!(downstream.received(), 6);

    let answer = stack.mcp.call("getFlaky", json!({})).await.unwrap();
    assert_eq!(answer.error_code(), Some(-32003), "{}", answer.body);
    assert_eq!(downstream.received(), 6);
    let circuit = stack.circuit().await;
    assert_eq!(circuit["state"], "open", "{circuit}");
    assert_eq!(circuit["openedCount"], 2, "{circuit}");
}

#[test]
fn a_circuit_breaker_setting_out_of_range_stops_the_start_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = GatewayOptions::new()
        .env("Ithil__CircuitBreaker__FailureRatio", "1.5")
        .refused_start(
            &dir.path().join("data"),
            "the gateway started with a failure ratio of 1.5",
        );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("circuitBreaker.failureRatio"), "{stderr}");
    assert!(
        stderr.contains("Ithil__CircuitBreaker__FailureRatio"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused start left a store behind"
    );
}
