//! The test harness: a gateway on a temporary redb file, a manual clock, and a real local
//! downstream that records every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ithil_audit::{AuditLog, AuditRecord, Query};
use ithil_budget::{Budget, TokenCounter, utc_day};
use ithil_proxy::catalog::{self, Catalog, LoadOptions};
use ithil_proxy::circuit::{CircuitBreakers, CircuitConfig, Transition};
use ithil_proxy::gateway::{Gateway, GatewayConfig, GatewayDeps};
use ithil_proxy::privacy::PrivacyFilter;
use ithil_registry::{Agent, AgentPatch, Credentials, NewAgent, Registry};
use ithil_token::{Clock, KeyRing, ManualClock, SigningKey};
use serde_json::{Value, json};
use time::macros::datetime;
use tokio::sync::Semaphore;

/// The peer address every test request comes from.
pub const PEER: &str = "127.0.0.1:40000";

/// One request as the downstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as it arrived (path and query, still percent-encoded).
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real HTTP server on 127.0.0.1 that answers by path and records what it was sent.
pub struct TestDownstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// What the test controls of the downstream's answers.
    pub control: Arc<Control>,
}

/// Switches of the downstream that a test flips while it runs.
#[derive(Debug)]
pub struct Control {
    /// How many more `GET /ithil/schema` requests answer 503 before one succeeds.
    pub schema_failures: AtomicUsize,
    /// While set, `/flaky` answers 500; else 200.
    pub failing: AtomicBool,
    /// `/hold/...` requests wait for a permit here before they answer.
    pub hold: Semaphore,
}

impl TestDownstream {
    pub async fn start() -> TestDownstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let control = Arc::new(Control {
            schema_failures: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            hold: Semaphore::new(0),
        });
        let switches = Arc::clone(&control);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                let switches = Arc::clone(&switches);
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req| answer(req, Arc::clone(&log), Arc::clone(&switches)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestDownstream {
            addr,
            seen,
            control,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests arrived whose target starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target.starts_with(prefix))
            .count()
    }

    /// Waits until `n` requests whose target starts with `prefix` have arrived.
    ///
    /// # Panics
    ///
    /// Panics when they have not arrived within ten seconds.
    pub async fn arrived(&self, prefix: &str, n: usize) {
        let wait = async {
            while self.count(prefix) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{n} requests to {prefix} did not arrive"));
    }

    /// Lets one waiting (or the next) `/hold/...` request answer.
    pub fn release(&self) {
        self.control.hold.add_permits(1);
    }
}

async fn answer(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    control: Arc<Control>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });

    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, text) = match segments.as_slice() {
        ["posts"] if parts.method == http::Method::POST => {
            let mut v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            v["id"] = json!(101);
            (StatusCode::CREATED, v.to_string())
        }
        ["posts", id] => (
            StatusCode::OK,
            json!({ "id": id, "title": format!("post {id}"), "contact": "jane@example.com" })
                .to_string(),
        ),
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                json!({ "error": format!("status {code}") }).to_string(),
            )
        }
        ["slow"] => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            (StatusCode::OK, "late".to_owned())
        }
        ["ithil", "schema"] => {
            let failing = control
                .schema_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                (StatusCode::SERVICE_UNAVAILABLE, "starting".to_owned())
            } else {
                (StatusCode::OK, discovery_document().to_string())
            }
        }
        ["big"] => (StatusCode::OK, "x".repeat(200_000)),
        ["flaky"] if control.failing.load(Ordering::SeqCst) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": "failing" }).to_string(),
        ),
        ["flaky"] => (StatusCode::OK, json!({ "ok": true }).to_string()),
        ["flaky", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                json!({ "error": format!("status {code}") }).to_string(),
            )
        }
        ["hold", n] => {
            // A closed semaphore (never here) would answer at once.
            if let Ok(permit) = control.hold.acquire().await {
                permit.forget();
            }
            let n: usize = n.parse().unwrap_or(10);
            let status = if parts.method == http::Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, vec!["word"; n].join(" "))
        }
        ["text", n] => {
            let n: usize = n.parse().unwrap_or(10);
            (StatusCode::OK, vec!["word"; n].join(" "))
        }
        _ => (StatusCode::OK, json!({ "path": path }).to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    Ok(resp)
}

/// A discovery answer in the reference format.
pub fn discovery_document() -> Value {
    json!([
        { "name": "getUser", "description": "Reads a user.", "httpMethod": "GET",
          "routePattern": "users/{id:int}", "parameterSources": { "id": "route" },
          "inputSchema": { "properties": { "id": { "type": "integer" } }, "required": ["id"] },
          "allowWrite": false, "maxResponseTokens": null, "category": "users",
          "requiredScopes": null },
        { "name": "hidden", "description": "No method.", "httpMethod": "",
          "routePattern": "x", "parameterSources": {}, "inputSchema": {} }
    ])
}

/// The catalog every test uses, pointed at `ds`; `dead` is a port nothing listens on.
pub fn test_catalog(ds: &TestDownstream, dead: SocketAddr) -> Catalog {
    catalog_with(ds, dead, false)
}

/// [`test_catalog`] plus the tools of the circuit and mid-call tests:
///
/// - `getFlaky` (`GET /flaky`, 500 while [`Control::failing`] is set) and `getFlakyStatus`
///   (`GET /flaky/{code}`), both on the downstream `flaky`;
/// - `holdText` (`GET /hold/{n}`) and `holdWrite` (`POST /hold/{n}`, allowed to write), both
///   held until [`TestDownstream::release`], both limited to 50 tokens, on the downstream
///   `held`, whose timeout outlasts the hold.
pub fn extended_catalog(ds: &TestDownstream, dead: SocketAddr) -> Catalog {
    catalog_with(ds, dead, true)
}

fn catalog_with(ds: &TestDownstream, dead: SocketAddr, extended: bool) -> Catalog {
    let id_schema = json!({
        "type": "object",
        "properties": { "id": { "type": "string" } },
        "required": ["id"]
    });
    let manifest = json!({
        "downstreams": {
            "api": {
                "baseUrl": ds.base_url(),
                "requestTimeoutMs": 300,
                "maxResponseBytes": 100_000,
                "headers": { "x-api-key": "downstream-secret" }
            },
            "dead": { "baseUrl": format!("http://{dead}"), "connectTimeoutMs": 1000 }
        },
        "tools": [
            { "name": "getPost", "description": "Reads a post.", "downstream": "api",
              "method": "GET", "route": "/posts/{id}", "inputSchema": id_schema },
            { "name": "createPost", "description": "Creates a post.", "downstream": "api",
              "method": "POST", "route": "/posts", "allowWrite": true,
              "inputSchema": { "type": "object",
                               "properties": { "title": { "type": "string", "maxLength": 50 } },
                               "required": ["title"] } },
            { "name": "deletePost", "description": "Deletes a post.", "downstream": "api",
              "method": "DELETE", "route": "/posts/{id}", "inputSchema": id_schema },
            { "name": "adminStats", "description": "Statistics.", "downstream": "api",
              "method": "GET", "route": "/stats", "requiredScopes": ["admin:read"] },
            { "name": "getStatus", "description": "Answers with a status.", "downstream": "api",
              "method": "GET", "route": "/status/{code}",
              "inputSchema": { "type": "object",
                               "properties": { "code": { "type": "string" } },
                               "required": ["code"] } },
            { "name": "slow", "description": "Never in time.", "downstream": "api",
              "method": "GET", "route": "/slow" },
            { "name": "big", "description": "Too large.", "downstream": "api",
              "method": "GET", "route": "/big" },
            { "name": "getText", "description": "Words.", "downstream": "api",
              "method": "GET", "route": "/text/{n}", "maxResponseTokens": 50,
              "inputSchema": { "type": "object",
                               "properties": { "n": { "type": "string" } },
                               "required": ["n"] } },
            { "name": "getTextStrict", "description": "Words, or nothing.", "downstream": "api",
              "method": "GET", "route": "/text/{n}", "maxResponseTokens": 50,
              "overLimit": "reject",
              "inputSchema": { "type": "object",
                               "properties": { "n": { "type": "string" } },
                               "required": ["n"] } },
            { "name": "unreachable", "description": "Nobody home.", "downstream": "dead",
              "method": "GET", "route": "/x" }
        ]
    });
    let mut manifest = manifest;
    if extended {
        let n_schema = json!({
            "type": "object",
            "properties": { "n": { "type": "string" } },
            "required": ["n"]
        });
        manifest["downstreams"]["flaky"] = json!({ "baseUrl": ds.base_url() });
        manifest["downstreams"]["held"] =
            json!({ "baseUrl": ds.base_url(), "requestTimeoutMs": 20_000 });
        let tools = manifest["tools"].as_array_mut().unwrap();
        tools.extend([
            json!({ "name": "getFlaky", "description": "Fails on command.",
                    "downstream": "flaky", "method": "GET", "route": "/flaky" }),
            json!({ "name": "getFlakyStatus", "description": "Answers with a status.",
                    "downstream": "flaky", "method": "GET", "route": "/flaky/{code}",
                    "inputSchema": { "type": "object",
                                     "properties": { "code": { "type": "string" } },
                                     "required": ["code"] } }),
            json!({ "name": "holdText", "description": "Words, when released.",
                    "downstream": "held", "method": "GET", "route": "/hold/{n}",
                    "maxResponseTokens": 50, "inputSchema": n_schema.clone() }),
            json!({ "name": "holdWrite", "description": "A write, when released.",
                    "downstream": "held", "method": "POST", "route": "/hold/{n}",
                    "allowWrite": true, "maxResponseTokens": 50,
                    "inputSchema": n_schema }),
        ]);
    }
    let part = catalog::load_manifest(
        "test manifest",
        manifest.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap();
    Catalog::merge([part]).unwrap()
}

/// A gateway with everything it needs, on a temporary store.
pub struct Harness {
    pub gateway: Arc<Gateway>,
    pub clock: ManualClock,
    pub registry: Arc<Registry>,
    pub credentials: Arc<Credentials>,
    pub budget: Arc<Budget>,
    pub audit: Arc<AuditLog>,
    pub downstream: TestDownstream,
    pub sunk: Arc<Mutex<Vec<AuditRecord>>>,
    /// Every change of a circuit's state the gateway reported, in order.
    pub transitions: Arc<Mutex<Vec<Transition>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_config(GatewayConfig::default()).await
    }

    pub async fn with_config(cfg: GatewayConfig) -> Harness {
        Harness::build(cfg, 100_000).await
    }

    pub async fn build(cfg: GatewayConfig, default_daily_limit: u64) -> Harness {
        Harness::assemble(cfg, default_daily_limit, false).await
    }

    /// A gateway on [`extended_catalog`] with the default circuit configuration.
    pub async fn extended(cfg: GatewayConfig) -> Harness {
        Harness::assemble(cfg, 100_000, true).await
    }

    async fn assemble(cfg: GatewayConfig, default_daily_limit: u64, extended: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("ithil.redb")).unwrap());
        let clock = ManualClock::new(datetime!(2026-05-06 12:00 UTC));
        let registry = Arc::new(Registry::open(Arc::clone(&db)).unwrap());
        let keys = KeyRing::new("test", SigningKey::generate().unwrap());
        let credentials = Arc::new(Credentials::new(
            keys,
            "ithil-dev",
            "ithil-gateway",
            Arc::new(clock.clone()),
        ));
        let budget = Arc::new(Budget::open(Arc::clone(&db)).unwrap());
        let audit = Arc::new(AuditLog::open(Arc::clone(&db)).unwrap());
        let (charges, writer) = budget.writer();
        // The writer ends by itself once the gateway, the last handle holder, is dropped.
        std::thread::spawn(move || writer.run());

        let downstream = TestDownstream::start().await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let sunk: Arc<Mutex<Vec<AuditRecord>>> = Arc::default();
        let sink_log = Arc::clone(&sunk);
        let transitions: Arc<Mutex<Vec<Transition>>> = Arc::default();
        let transition_log = Arc::clone(&transitions);
        let catalog = if extended {
            extended_catalog(&downstream, dead)
        } else {
            test_catalog(&downstream, dead)
        };
        let circuits =
            CircuitBreakers::new(CircuitConfig::default(), Arc::new(clock.clone())).unwrap();
        let deps = GatewayDeps {
            registry: Arc::clone(&registry),
            credentials: Arc::clone(&credentials),
            catalog: Arc::new(catalog),
            budget: Arc::clone(&budget),
            charges,
            audit: Arc::clone(&audit),
            privacy: Arc::new(PrivacyFilter::new(&[]).unwrap()),
            audit_sink: Some(Arc::new(move |rec: &AuditRecord| {
                sink_log.lock().unwrap().push(rec.clone());
            })),
            default_daily_limit,
            circuits: Arc::new(circuits),
            on_circuit_transition: Some(Arc::new(move |t: &Transition| {
                transition_log.lock().unwrap().push(t.clone());
            })),
            observer: None,
        };
        Harness {
            gateway: Arc::new(Gateway::new(cfg, deps)),
            clock,
            registry,
            credentials,
            budget,
            audit,
            downstream,
            sunk,
            transitions,
            _dir: dir,
        }
    }

    /// Creates an agent and a one-day token for it.
    pub fn agent(&self, new: NewAgent) -> (Agent, String) {
        let agent = self.registry.create(new, self.clock.now()).unwrap();
        let token = self
            .credentials
            .issue_agent(&agent, time::Duration::days(1))
            .unwrap()
            .token;
        (agent, token)
    }

    /// An agent without allowlist or scopes.
    pub fn open_agent(&self) -> (Agent, String) {
        self.agent(NewAgent::new("open agent"))
    }

    /// Applies `patch` to the agent `agent_id` at the harness clock's instant.
    pub fn update_agent(&self, agent_id: &str, patch: AgentPatch) {
        self.registry
            .update(agent_id, patch, self.clock.now())
            .unwrap();
    }

    /// The tokens charged to `agent_id` on the harness clock's UTC day.
    pub fn used_today(&self, agent_id: &str) -> u64 {
        self.budget.used(agent_id, utc_day(self.clock.now()))
    }

    /// Every audit record of `agent_id`, oldest first.
    pub fn records(&self, agent_id: &str) -> Vec<AuditRecord> {
        let mut q = Query::for_agent(agent_id);
        q.limit = 1000;
        let mut records = self.audit.query(&q).unwrap().records;
        records.reverse();
        records
    }

    /// Sends a request to the endpoint.
    pub async fn send(&self, req: Request<Bytes>) -> Reply {
        // Spawned, so that every test also proves the request future can move between threads,
        // as a server's connection tasks need.
        let gateway = Arc::clone(&self.gateway);
        let resp =
            tokio::spawn(async move { gateway.handle_mcp(req, PEER.parse().unwrap()).await })
                .await
                .unwrap();
        Reply::from(resp).await
    }

    /// POSTs `body` with the usual client headers.
    pub async fn post(
        &self,
        token: &str,
        session: Option<&str>,
        version: Option<&str>,
        body: &Value,
    ) -> Reply {
        let mut b = Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        if let Some(v) = version {
            b = b.header("mcp-protocol-version", v);
        }
        self.send(b.body(Bytes::from(body.to_string())).unwrap())
            .await
    }

    /// Opens a session at `version` and returns its id.
    pub async fn initialize(&self, token: &str, version: &str) -> String {
        let reply = self.post(token, None, None, &initialize(1, version)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.text());
        assert_eq!(reply.json()["result"]["protocolVersion"], version);
        let session = reply
            .header("mcp-session-id")
            .expect("session id")
            .to_owned();
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let ack = self.post(token, Some(&session), Some(version), &note).await;
        assert_eq!(ack.status, StatusCode::ACCEPTED);
        session
    }

    /// Calls a tool in a session of the newest revision and returns the whole reply.
    pub async fn call(&self, token: &str, session: &str, name: &str, args: Value) -> Reply {
        let body = json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": name, "arguments": args }
        });
        self.post(token, Some(session), Some("2025-11-25"), &body)
            .await
    }
}

/// The tokens of the `getText` and `holdText` answers for ten words.
pub fn ten_words() -> u64 {
    TokenCounter::default().count(&["word"; 10].join(" "))
}

/// The message of a result withheld because its `cost` exceeds the `left` of the day's budget.
pub fn withheld_message(cost: u64, left: u64) -> String {
    format!(
        "The result of this call ({cost} tokens) exceeds the remaining daily token budget \
         ({left} tokens). Limit resets at midnight UTC."
    )
}

/// An `initialize` request.
pub fn initialize(id: u64, version: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "test", "version": "0" }
        }
    })
}

/// A buffered response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    async fn from(resp: Response<Full<Bytes>>) -> Reply {
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The JSON-RPC document: the body, or the data of its one SSE event.
    pub fn json(&self) -> Value {
        let text = self.text();
        if self.header("content-type") == Some("text/event-stream") {
            let data = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("one data line");
            return serde_json::from_str(data).unwrap();
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not json ({e}): {text}"))
    }

    /// The `error.code` of the JSON-RPC document.
    pub fn error_code(&self) -> i64 {
        self.json()["error"]["code"].as_i64().expect("an error")
    }

    /// The text of the tool result's first content block.
    pub fn result_text(&self) -> String {
        self.json()["result"]["content"][0]["text"]
            .as_str()
            .expect("a text result")
            .to_owned()
    }
}
