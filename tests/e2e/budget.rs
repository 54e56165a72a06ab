//! Budgets end to end: concurrent charges, the budget API, and crashes under load.
//!
//! Every test runs the real `ithil` binary in front of json-server on a private copy of the
//! shared dataset, with a tool manifest written for the test (see [`manifest`]), and speaks MCP
//! as plain JSON-RPC over HTTP: `initialize`, `notifications/initialized`, then `tools/call`.
//!
//! The gateway never tells a client the `requestId` of its call (that id goes to the downstream
//! as `x-request-id` and into the audit record), so the tests make the arguments of every call
//! unique and join a received result with its audit record by those arguments. The charge of
//! one result is the `tokens` of its record; the budget's own counter (`tokensUsedToday`) is the
//! independent total those charges must add up to.
//!
//! The helpers here are shared with `audit.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use ithil_tests::gateway::{Client, GatewayOptions, GatewayProcess, Response};
use ithil_tests::tools::{self, JsonServer};

/// The admin API key every gateway of these tests is started with.
pub(crate) const API_KEY: &str = "e2e-budget-audit-0123456789abcdef0123456789abcdef";

/// The message of every budget refusal, as issue 5 and the reference document it.
pub(crate) const BUDGET_MESSAGE: &str =
    "Daily token budget exhausted. Limit resets at midnight UTC.";

/// The JSON-RPC code of a budget refusal.
pub(crate) const BUDGET_CODE: i64 = -32029;

/// The protocol revision the tests ask for.
const PROTOCOL: &str = "2025-06-18";

/// How long one HTTP exchange with the gateway may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of todos in the shared dataset (each call of the concurrency test reads one).
const TODOS: u64 = 200;

/// The tool manifest of these tests: `placeholder` is json-server, `dead` a port nobody
/// listens on.
///
/// - `getUser`, `getPost`, `getTodo` (with an optional `tag` that goes into the query string,
///   which json-server ignores on a single item, so that every call can carry unique
///   arguments), `listUsers` and `listComments`: plain reads;
/// - `listCommentsStrict`: at most 100 tokens, larger answers rejected (`rejected_too_large`);
/// - `listCommentsShort`: at most 300 tokens, larger answers truncated;
/// - `createPost`: a write that is not enabled (`write_blocked`);
/// - `getSecretTodo`: needs the scope `todos:secret` (`denied_scope`);
/// - `getDeadTodo`: served by the dead port (`downstream_error`).
pub(crate) fn manifest(downstream: &str, dead_port: u16) -> Value {
    let by_id = |name: &str, route: &str, downstream: &str| {
        json!({
            "name": name, "description": format!("{name} by id"), "downstream": downstream,
            "method": "GET", "route": route,
            "inputSchema": {"type": "object",
                            "properties": {"id": {"type": "integer", "minimum": 1}},
                            "required": ["id"]}
        })
    };
    let mut secret = by_id("getSecretTodo", "/todos/{id}", "placeholder");
    secret["requiredScopes"] = json!(["todos:secret"]);
    json!({
        "downstreams": {
            "placeholder": {"baseUrl": downstream},
            "dead": {"baseUrl": format!("http://127.0.0.1:{dead_port}"),
                     "connectTimeoutMs": 2000, "requestTimeoutMs": 5000}
        },
        "tools": [
            by_id("getUser", "/users/{id}", "placeholder"),
            by_id("getPost", "/posts/{id}", "placeholder"),
            {
                "name": "getTodo", "description": "a todo by id", "downstream": "placeholder",
                "method": "GET", "route": "/todos/{id}",
                "inputSchema": {"type": "object",
                                "properties": {"id": {"type": "integer", "minimum": 1},
                                               "tag": {"type": "string"}},
                                "required": ["id"]},
                "params": [{"name": "tag", "in": "query"}]
            },
            {
                "name": "listUsers", "description": "every user", "downstream": "placeholder",
                "method": "GET", "route": "/users", "maxResponseTokens": 20000,
                "inputSchema": {"type": "object", "properties": {}}
            },
            {
                "name": "listCommentsStrict", "description": "comments, at most 100 tokens",
                "downstream": "placeholder", "method": "GET", "route": "/comments",
                "maxResponseTokens": 100, "overLimit": "reject",
                "inputSchema": {"type": "object",
                                "properties": {"_limit": {"type": "integer", "minimum": 1}}}
            },
            {
                "name": "listCommentsShort", "description": "comments, cut at 300 tokens",
                "downstream": "placeholder", "method": "GET", "route": "/comments",
                "maxResponseTokens": 300,
                "inputSchema": {"type": "object",
                                "properties": {"_limit": {"type": "integer", "minimum": 1}}}
            },
            {
                "name": "createPost", "description": "a write that is not enabled",
                "downstream": "placeholder", "method": "POST", "route": "/posts",
                "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}}}
            },
            secret,
            by_id("getDeadTodo", "/todos/{id}", "dead"),
        ]
    })
}

/// A port on 127.0.0.1 that refuses connections: bound once to learn a free one, then closed.
fn dead_port() -> u16 {
    tools::free_port()
}

/// A bound on a harness request, whose client has no timeout of its own.
pub(crate) trait Bounded: std::future::Future + Sized {
    /// Awaits the request, failing the test if it takes longer than [`REQUEST_TIMEOUT`].
    fn bounded(self) -> impl std::future::Future<Output = Self::Output> {
        async {
            tokio::time::timeout(REQUEST_TIMEOUT, self)
                .await
                .unwrap_or_else(|_| panic!("no answer within {REQUEST_TIMEOUT:?}"))
        }
    }
}

impl<F: std::future::Future> Bounded for F {}

/// One HTTP/1.1 `POST` with a JSON body, bounded by [`REQUEST_TIMEOUT`]. Unlike the harness
/// client it reports a failed exchange instead of panicking, because the crash tests expect
/// the connections in flight to break.
pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Result<(u16, HeaderMap, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = hyper::Request::post(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("exchange: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, headers, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// One MCP session of one agent, spoken as plain JSON-RPC over HTTP.
pub(crate) struct Mcp {
    addr: SocketAddr,
    auth: String,
    session: String,
    next_id: AtomicU64,
}

/// The answer to one `tools/call`: the HTTP status and the JSON-RPC response.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The JSON-RPC response object.
    pub(crate) body: Value,
}

impl Answer {
    /// The JSON-RPC error code, if the call failed.
    pub(crate) fn error_code(&self) -> Option<i64> {
        self.body["error"]["code"].as_i64()
    }

    /// The text of the result's only content item.
    ///
    /// # Panics
    ///
    /// Panics when the answer is not a result with one text item.
    pub(crate) fn text(&self) -> &str {
        let content = self.body["result"]["content"]
            .as_array()
            .unwrap_or_else(|| panic!("not a tool result: {}", self.body));
        assert_eq!(content.len(), 1, "{}", self.body);
        assert_eq!(content[0]["type"], "text", "{}", self.body);
        content[0]["text"].as_str().expect("the text is a string")
    }

    /// The result's text parsed as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.text())
            .unwrap_or_else(|e| panic!("the result text is not JSON ({e}): {}", self.text()))
    }

    /// Whether this is a successful tool result (`isError` false).
    pub(crate) fn is_result(&self) -> bool {
        self.body["result"].is_object() && self.body["result"]["isError"] == false
    }

    /// Asserts that this is a result withheld at the charge: -32029, no result, and the
    /// documented message for a result that does not fit (or the exhausted one when nothing at
    /// all was left).
    pub(crate) fn assert_withheld(&self) {
        assert_eq!(self.error_code(), Some(BUDGET_CODE), "{}", self.body);
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        let does_not_fit = message.starts_with("The result of this call (")
            && message.contains(") exceeds the remaining daily token budget (")
            && message.ends_with("). Limit resets at midnight UTC.");
        assert!(does_not_fit || message == BUDGET_MESSAGE, "{}", self.body);
        assert!(self.body["result"].is_null(), "{}", self.body);
    }

    /// Asserts that this is the budget refusal: -32029 with the documented message.
    pub(crate) fn assert_budget_refusal(&self) {
        assert_eq!(self.error_code(), Some(BUDGET_CODE), "{}", self.body);
        assert_eq!(
            self.body["error"]["message"], BUDGET_MESSAGE,
            "{}",
            self.body
        );
        assert!(self.body["result"].is_null(), "{}", self.body);
    }
}

impl Mcp {
    /// Opens a session: `initialize`, then `notifications/initialized`.
    ///
    /// # Errors
    ///
    /// Fails when an exchange fails or the gateway refuses the session.
    pub(crate) async fn open(addr: SocketAddr, token: &str) -> Result<Mcp, String> {
        let auth = format!("Bearer {token}");
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "ithil-e2e-budget-audit", "version": "0"}}
        });
        let accept = ("accept", "application/json, text/event-stream");
        let (status, headers, body) = post(
            addr,
            "/mcp",
            &[("authorization", &auth), accept],
            init.to_string(),
        )
        .await?;
        if status != 200 {
            return Err(format!(
                "initialize answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let session = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("initialize answered without a session id")?
            .to_owned();

        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, _, _) = post(
            addr,
            "/mcp",
            &[
                ("authorization", &auth),
                accept,
                ("mcp-session-id", &session),
                ("mcp-protocol-version", PROTOCOL),
            ],
            initialized.to_string(),
        )
        .await?;
        if status != 202 {
            return Err(format!("notifications/initialized answered {status}"));
        }
        Ok(Mcp {
            addr,
            auth,
            session,
            next_id: AtomicU64::new(1),
        })
    }

    /// Calls `tool` with `arguments`.
    ///
    /// # Errors
    ///
    /// Fails when the exchange fails or the answer is not a JSON-RPC response.
    pub(crate) async fn call(&self, tool: &str, arguments: Value) -> Result<Answer, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}
        });
        let (status, _, body) = post(
            self.addr,
            "/mcp",
            &[
                ("authorization", &self.auth),
                ("accept", "application/json, text/event-stream"),
                ("mcp-session-id", &self.session),
                ("mcp-protocol-version", PROTOCOL),
            ],
            request.to_string(),
        )
        .await?;
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "answer {status} is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if body["id"] != id {
            return Err(format!("answer to another request: {body}"));
        }
        Ok(Answer { status, body })
    }
}

/// Exchanges `api_key` for an admin token.
pub(crate) async fn admin_token(client: &Client, api_key: &str) -> String {
    let answer = client
        .post("/auth/admin/token")
        .json(&json!({ "apiKey": api_key }).to_string())
        .send()
        .bounded()
        .await;
    assert_eq!(answer.status, 200, "admin token: {}", answer.text());
    answer.json()["token"].as_str().expect("a token").to_owned()
}

/// Creates an agent from `body` with the admin token `admin`; returns its id and a fresh token.
pub(crate) async fn create_agent(client: &Client, admin: &str, body: Value) -> (String, String) {
    let created = client
        .post("/management/agents")
        .bearer(admin)
        .json(&body.to_string())
        .send()
        .bounded()
        .await;
    assert_eq!(created.status, 201, "create agent: {}", created.text());
    let id = created.json()["agentId"]
        .as_str()
        .expect("an agentId")
        .to_owned();
    let issued = client
        .post(&format!("/management/agents/{id}/token"))
        .bearer(admin)
        .send()
        .bounded()
        .await;
    assert_eq!(issued.status, 200, "issue token: {}", issued.text());
    let token = issued.json()["token"].as_str().expect("a token").to_owned();
    (id, token)
}

/// json-server on a copy of the dataset, the gateway in front of it with [`manifest`] as its
/// catalog, and an admin token.
pub(crate) struct Stack {
    /// The downstream.
    pub(crate) downstream: JsonServer,
    /// The gateway.
    pub(crate) gateway: GatewayProcess,
    /// An admin token (it survives restarts: the signing key is kept in the store).
    pub(crate) admin: String,
    _catalog: tempfile::TempDir,
}

impl Stack {
    /// Starts json-server and the gateway with `opts` plus the API key and the catalog.
    pub(crate) async fn start(opts: GatewayOptions) -> Stack {
        let downstream = JsonServer::start();
        let catalog = tempfile::tempdir().expect("a temporary directory");
        let path = catalog.path().join("tools.json");
        let doc = manifest(&downstream.base_url(), dead_port());
        std::fs::write(&path, doc.to_string()).expect("the manifest is written");

        let opts = opts
            .api_key(API_KEY)
            .arg("--catalog")
            .arg(path.to_string_lossy());
        let gateway = GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"));
        let admin = admin_token(&gateway.client(), API_KEY).await;
        Stack {
            downstream,
            gateway,
            admin,
            _catalog: catalog,
        }
    }

    /// A harness client for the gateway (it panics on a failed exchange).
    pub(crate) fn client(&self) -> Client {
        self.gateway.client()
    }

    /// Creates an agent from `body`; returns its id and a fresh token.
    pub(crate) async fn agent(&self, body: Value) -> (String, String) {
        create_agent(&self.client(), &self.admin, body).await
    }

    /// An open MCP session for `token`.
    pub(crate) async fn mcp(&self, token: &str) -> Mcp {
        Mcp::open(self.gateway.addr(), token)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `GET` with the admin token.
    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client()
            .get(path)
            .bearer(&self.admin)
            .send()
            .bounded()
            .await
    }

    /// `GET .../budget` of `id`, which must answer 200.
    pub(crate) async fn budget(&self, id: &str) -> Value {
        let answer = self.get(&format!("/management/agents/{id}/budget")).await;
        assert_eq!(answer.status, 200, "budget: {}", answer.text());
        answer.json()
    }

    /// `tokensUsedToday` of `id`.
    pub(crate) async fn used(&self, id: &str) -> u64 {
        self.budget(id).await["tokensUsedToday"]
            .as_u64()
            .expect("tokensUsedToday is a number")
    }

    /// `PUT .../budget` of `id` with `body`.
    pub(crate) async fn put_budget(&self, id: &str, body: &str) -> Response {
        self.client()
            .put(&format!("/management/agents/{id}/budget"))
            .bearer(&self.admin)
            .json(body)
            .send()
            .bounded()
            .await
    }

    /// Every record `path` (`/management/audit?...` or `/management/agents/ID/audit?...`)
    /// returns, following `nextCursor` through pages of 1000.
    pub(crate) async fn audit(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        for _page in 0..1000 {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let answer = self.get(&url).await;
            assert_eq!(answer.status, 200, "{url}: {}", answer.text());
            let page = answer.json();
            records.extend(page["records"].as_array().expect("records").iter().cloned());
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return records,
            }
        }
        panic!("{path}: more than 1000 pages");
    }

    /// The `tools/call` records of agent `id`, newest first.
    pub(crate) async fn calls(&self, id: &str) -> Vec<Value> {
        self.audit(&format!("/management/agents/{id}/audit"))
            .await
            .into_iter()
            .filter(|r| r["action"] == "tools/call")
            .collect()
    }

    /// How many requests json-server logged whose line contains `needle` (such as
    /// `GET /todos/`).
    pub(crate) fn downstream_requests(&self, needle: &str) -> usize {
        self.downstream
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Kills the gateway with SIGKILL, by its process id.
    pub(crate) fn kill_9(&self) {
        let pid = self.gateway.pid().expect("the gateway runs").to_string();
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(killed, "kill -KILL {pid} failed");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failed assertion shows the gateway's own account beside the test's.
        if std::thread::panicking() {
            let log = self.gateway.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- gateway stderr (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The shared dataset.
pub(crate) fn dataset() -> Value {
    let path = tools::examples_dir().join("placeholder-db.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the dataset is JSON")
}

/// The `tokens` of a record.
pub(crate) fn tokens(record: &Value) -> u64 {
    record["tokens"].as_u64().expect("tokens is a number")
}

/// The UTC date `days_back` days before today, as `YYYY-MM-DD`.
fn utc_dates_back(days_back: i64) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let day = i64::try_from(secs / 86_400).expect("a day number") - days_back;
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The civil date of a day number since the epoch (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`...Z`, fraction allowed and dropped).
pub(crate) fn unix_seconds(text: &str) -> i64 {
    assert!(
        text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
        "not an RFC 3339 UTC time: {text}"
    );
    let number = |range: std::ops::Range<usize>| -> i64 {
        text[range]
            .parse()
            .unwrap_or_else(|_| panic!("not an RFC 3339 time: {text}"))
    };
    let (y, m, d) = (number(0..4), number(5..7), number(8..10));
    let (hh, mm, ss) = (number(11..13), number(14..16), number(17..19));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3600 + mm * 60 + ss
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

/// A result a client received during a load run, with the tag that makes its call unique.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The `tag` argument of the call.
    pub(crate) tag: String,
    /// The todo it read.
    pub(crate) todo: u64,
}

/// What a load run saw.
pub(crate) struct LoadRun {
    /// Every tool result that arrived whole.
    pub(crate) received: Vec<Received>,
    /// Calls that were in flight when the kill broke their connection.
    pub(crate) in_flight: usize,
}

/// Runs `clients` sessions of `token` calling `getTodo` with unique tags in a loop, kills the
/// gateway with SIGKILL once `kill_after` results have arrived, and collects what the clients
/// received. Bounded: each client stops at its first failed exchange, which must come after
/// the kill, or after 60 seconds.
pub(crate) async fn load_until_killed(
    stack: &Stack,
    token: &str,
    clients: usize,
    kill_after: usize,
) -> LoadRun {
    let received = Arc::new(Mutex::new(Vec::<Received>::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mcp = stack.mcp(token).await;
        let received = Arc::clone(&received);
        let killed = Arc::clone(&killed);
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                if Instant::now() > deadline {
                    return None;
                }
                let todo = (n * 7 + client as u64) % TODOS + 1;
                let tag = format!("c{client}-n{n}");
                match mcp.call("getTodo", json!({"id": todo, "tag": tag})).await {
                    Ok(answer) => {
                        assert!(answer.is_result(), "{}", answer.body);
                        assert_eq!(answer.json()["id"], todo, "{}", answer.body);
                        received
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Received { tag, todo });
                    }
                    // The first broken exchange ends this client: the server is gone.
                    Err(error) => {
                        assert!(killed.load(Ordering::SeqCst), "before the kill: {error}");
                        return Some(error);
                    }
                }
            }
            None
        }));
    }

    // Kill in the middle of the run, with calls in flight on the connections.
    let wait_until = Instant::now() + Duration::from_secs(60);
    loop {
        let count = received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if count >= kill_after {
            break;
        }
        assert!(Instant::now() < wait_until, "only {count} results in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    stack.kill_9();

    let mut in_flight = 0;
    for task in tasks {
        let error = task.await.expect("a load client panicked");
        let error = error.expect("a client outlived the gateway");
        // A client between two calls finds the port closed; one in the middle of a call
        // loses its connection.
        if !error.starts_with("connect:") {
            assert!(
                error.starts_with("exchange:") || error.starts_with("body:"),
                "{error}"
            );
            in_flight += 1;
        }
    }
    let received = received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    LoadRun {
        received,
        in_flight,
    }
}

/// The record of each tagged call, by tag; every tag must appear at most once.
pub(crate) fn by_tag(records: &[Value]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for record in records {
        if let Some(tag) = record["arguments"]["tag"].as_str() {
            let earlier = map.insert(tag.to_owned(), record.clone());
            assert!(earlier.is_none(), "two records of call {tag}");
        }
    }
    map
}

#[tokio::test]
async fn the_budget_endpoints_answer_as_documented_and_change_nothing_on_error() {
    let stack =
        Stack::start(GatewayOptions::new().env("Ithil__Budget__DefaultDailyTokenLimit", "77777"))
            .await;
    let (id, token) = stack
        .agent(json!({"label": "budget api", "dailyTokenBudget": 50000}))
        .await;

    // A fresh agent: the whole limit left, resetting at the next midnight UTC.
    let fresh = stack.budget(&id).await;
    let keys: BTreeSet<&str> = fresh
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "agentId",
            "dailyTokenBudget",
            "tokensUsedToday",
            "remaining",
            "percentageUsed",
            "resetsAt"
        ]),
        "{fresh}"
    );
    assert_eq!(fresh["agentId"], id.as_str());
    assert_eq!(fresh["dailyTokenBudget"], 50000);
    assert_eq!(fresh["tokensUsedToday"], 0);
    assert_eq!(fresh["remaining"], 50000);
    assert_eq!(fresh["percentageUsed"].as_f64(), Some(0.0), "{fresh}");
    let resets = unix_seconds(fresh["resetsAt"].as_str().unwrap());
    assert_eq!(resets % 86_400, 0, "resets at midnight UTC: {fresh}");
    assert!(
        resets > now_seconds() && resets <= now_seconds() + 86_400,
        "{fresh}"
    );

    // One call: its charge is today's usage.
    let mcp = stack.mcp(&token).await;
    let answer = mcp.call("getTodo", json!({"id": 1})).await.unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    let calls = stack.calls(&id).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let charged = tokens(&calls[0]);
    assert!(charged > 0, "{calls:?}");
    let status = stack.budget(&id).await;
    assert_eq!(status["tokensUsedToday"], charged);
    assert_eq!(status["remaining"], 50000 - charged);
    let percentage = status["percentageUsed"].as_f64().unwrap();
    let expected = charged as f64 * 100.0 / 50000.0;
    assert!(
        (percentage - expected).abs() <= 0.01,
        "{status} vs {expected}"
    );

    // PUT sets the limit and answers with the GET body.
    let put = stack.put_budget(&id, r#"{"dailyTokenBudget": 1000}"#).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let put = put.json();
    assert_eq!(put["dailyTokenBudget"], 1000);
    assert_eq!(put["tokensUsedToday"], charged);
    assert_eq!(put["remaining"], 1000 - charged);
    assert_eq!(put, stack.budget(&id).await);
    let agent = stack.get(&format!("/management/agents/{id}")).await.json();
    assert_eq!(agent["dailyTokenBudget"], 1000, "{agent}");

    // null returns the agent to the configured default.
    let put = stack.put_budget(&id, r#"{"dailyTokenBudget": null}"#).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let put = put.json();
    assert_eq!(put["dailyTokenBudget"], 77777, "{put}");
    assert_eq!(put["remaining"], 77777 - charged, "{put}");
    assert_eq!(put, stack.budget(&id).await);
    let agent = stack.get(&format!("/management/agents/{id}")).await.json();
    assert!(agent["dailyTokenBudget"].is_null(), "{agent}");

    // Bad values: 400, and neither the budget nor the agent changes.
    let put = stack.put_budget(&id, r#"{"dailyTokenBudget": 1234}"#).await;
    assert_eq!(put.status, 200);
    let before = stack.budget(&id).await;
    let agent_before = stack.get(&format!("/management/agents/{id}")).await.json();
    for body in [
        r#"{"dailyTokenBudget": -1}"#,
        r#"{"dailyTokenBudget": 0}"#,
        r#"{"dailyTokenBudget": 1.5}"#,
        r#"{"dailyTokenBudget": "lots"}"#,
        r#"{"dailyTokenBudget": true}"#,
        r#"{"dailyTokenBudget": [5]}"#,
        r#"{"dailyTokenBudget": 1e999}"#,
        r#"{"dailyTokenBudget": 1000000000001}"#,
        r#"{"dailyTokenBudget": 123456789012345678901234567890}"#,
        r#"{"dailyTokenBudget": 5, "label": "sneaky"}"#,
        r#"{}"#,
        r#"[5]"#,
        r#"{"dailyTokenBudget": "#,
        "",
    ] {
        let answer = stack.put_budget(&id, body).await;
        assert_eq!(answer.status, 400, "PUT {body:?}: {}", answer.text());
        assert!(
            !answer.error_code().is_empty(),
            "PUT {body:?}: {}",
            answer.text()
        );
    }
    let answer = stack
        .client()
        .put(&format!("/management/agents/{id}/budget"))
        .bearer(&stack.admin)
        .header("content-type", "text/plain")
        .body(r#"{"dailyTokenBudget": 5}"#)
        .send()
        .bounded()
        .await;
    assert!(answer.status.is_client_error(), "{}", answer.status);
    assert_eq!(stack.budget(&id).await, before);
    assert_eq!(
        stack.get(&format!("/management/agents/{id}")).await.json(),
        agent_before
    );

    // History: one row per day, oldest first, today last with today's usage.
    for days in [1, 3, 7] {
        let answer = stack
            .get(&format!(
                "/management/agents/{id}/budget/history?days={days}"
            ))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let history = answer.json();
        assert_eq!(history["agentId"], id.as_str());
        let rows = history["days"].as_array().expect("days is an array");
        assert_eq!(rows.len(), days, "{history}");
        for (i, row) in rows.iter().enumerate() {
            let back = (days - 1 - i) as i64;
            assert_eq!(row["date"], utc_dates_back(back), "{history}");
            let want = if back == 0 { charged } else { 0 };
            assert_eq!(row["tokensUsed"], want, "{history}");
        }
    }
    let answer = stack
        .get(&format!("/management/agents/{id}/budget/history"))
        .await;
    assert_eq!(answer.status, 200);
    assert!(!answer.json()["days"].as_array().unwrap().is_empty());
    for query in ["days=0", "days=-1", "days=abc", "days=3661", "colour=red"] {
        let answer = stack
            .get(&format!("/management/agents/{id}/budget/history?{query}"))
            .await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
    }

    // DELETE resets today's usage, with the admin's identity in the audit trail.
    let reset = stack
        .client()
        .delete(&format!("/management/agents/{id}/budget"))
        .bearer(&stack.admin)
        .send()
        .bounded()
        .await;
    assert_eq!(reset.status, 204, "{}", reset.text());
    assert!(reset.body.is_empty());
    let status = stack.budget(&id).await;
    assert_eq!(status["tokensUsedToday"], 0, "{status}");
    assert_eq!(status["remaining"], 1234, "{status}");
    let history = stack
        .get(&format!("/management/agents/{id}/budget/history?days=1"))
        .await
        .json();
    assert_eq!(history["days"][0]["tokensUsed"], 0, "{history}");
    let admin_records = stack.audit("/management/audit?agentId=admin").await;
    let resets: Vec<&Value> = admin_records
        .iter()
        .filter(|r| r["action"] == "budget.reset")
        .collect();
    assert_eq!(resets.len(), 1, "{admin_records:?}");
    assert!(
        resets[0]["operator"]
            .as_str()
            .is_some_and(|o| !o.is_empty())
    );
    assert_eq!(
        resets[0]["arguments"]["agentId"],
        id.as_str(),
        "{:?}",
        resets[0]
    );
    let sets = admin_records
        .iter()
        .filter(|r| r["action"] == "budget.set")
        .count();
    assert_eq!(sets, 3, "one record per accepted PUT: {admin_records:?}");

    // Unknown agents: 404 on every route, and nothing is created.
    let agents_before = stack.get("/management/agents").await.json();
    let unknown = "agt_00000000";
    let path = format!("/management/agents/{unknown}/budget");
    let answers = [
        stack.get(&path).await,
        stack
            .put_budget(unknown, r#"{"dailyTokenBudget": 10}"#)
            .await,
        stack
            .client()
            .delete(&path)
            .bearer(&stack.admin)
            .send()
            .bounded()
            .await,
        stack.get(&format!("{path}/history?days=2")).await,
    ];
    for answer in answers {
        assert_eq!(answer.status, 404, "{}", answer.text());
        assert_eq!(answer.error_code(), "agent_not_found");
    }
    assert_eq!(stack.get("/management/agents").await.json(), agents_before);
}

/// Reads every todo once, concurrently, with `mcp` and returns each todo's charge (the tokens
/// of its record), checking that every call succeeded.
async fn every_todo_concurrently(mcp: &Arc<Mcp>) -> Vec<(u64, Answer)> {
    let mut tasks = Vec::new();
    for todo in 1..=TODOS {
        let mcp = Arc::clone(mcp);
        tasks.push(tokio::spawn(async move {
            let answer = mcp
                .call("getTodo", json!({"id": todo}))
                .await
                .unwrap_or_else(|e| panic!("todo {todo}: {e}"));
            (todo, answer)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("a client task panicked"));
    }
    answers
}

/// The records of one agent's `getTodo` calls by todo id; each id exactly once.
fn by_todo(records: &[Value]) -> BTreeMap<u64, Value> {
    let mut map = BTreeMap::new();
    for record in records {
        assert_eq!(record["tool"], "getTodo", "{record}");
        let todo = record["arguments"]["id"].as_u64().expect("an id argument");
        let earlier = map.insert(todo, record.clone());
        assert!(earlier.is_none(), "two records of todo {todo}");
    }
    map
}

#[tokio::test]
async fn two_hundred_concurrent_calls_charge_exactly_what_clients_received_within_the_limit() {
    let stack = Stack::start(GatewayOptions::new()).await;
    let data = dataset();

    // The price of each todo, measured by an agent with room for all of them.
    let (reference_id, reference) = stack
        .agent(json!({"label": "reference", "dailyTokenBudget": 1_000_000_000u64}))
        .await;
    let mcp = Arc::new(stack.mcp(&reference).await);
    for (todo, answer) in every_todo_concurrently(&mcp).await {
        assert!(answer.is_result(), "todo {todo}: {}", answer.body);
        assert_eq!(answer.json(), data["todos"][todo as usize - 1]);
    }
    let price: BTreeMap<u64, u64> = by_todo(&stack.calls(&reference_id).await)
        .into_iter()
        .map(|(todo, record)| {
            assert_eq!(record["outcome"], "ok", "{record}");
            (todo, tokens(&record))
        })
        .collect();
    assert_eq!(price.len(), TODOS as usize);
    let all: u64 = price.values().sum();
    assert_eq!(stack.used(&reference_id).await, all);

    // The same 200 calls at once from an agent whose limit fits about a quarter of them.
    let limit = all / 4;
    let (id, token) = stack
        .agent(json!({"label": "limited", "dailyTokenBudget": limit}))
        .await;
    let mcp = Arc::new(stack.mcp(&token).await);
    let started = Instant::now();
    let answers = every_todo_concurrently(&mcp).await;
    eprintln!("200 concurrent calls in {:?}", started.elapsed());

    let mut received = BTreeSet::new();
    for (todo, answer) in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.is_result() {
            assert_eq!(answer.json(), data["todos"][*todo as usize - 1]);
            received.insert(*todo);
        } else {
            answer.assert_withheld();
        }
    }
    assert!(!received.is_empty(), "no call fit the limit");
    assert!(received.len() < answers.len(), "every call fit the limit");

    // Each result's record carries exactly its price; each refusal's record charges nothing.
    let records = by_todo(&stack.calls(&id).await);
    assert_eq!(records.len(), TODOS as usize, "one record per call");
    let mut charged_to_received = 0;
    let mut withheld = Vec::new();
    let mut exhausted = 0;
    for (todo, record) in &records {
        if received.contains(todo) {
            assert_eq!(record["outcome"], "ok", "{record}");
            assert_eq!(tokens(record), price[todo], "{record}");
            charged_to_received += tokens(record);
        } else {
            assert_eq!(tokens(record), 0, "{record}");
            match record["outcome"].as_str() {
                Some("withheld_over_budget") => {
                    assert_eq!(record["downstreamStatus"], 200, "{record}");
                    withheld.push(*todo);
                }
                Some("budget_exhausted") => {
                    assert!(record["downstreamStatus"].is_null(), "{record}");
                    exhausted += 1;
                }
                _ => panic!("a refused call recorded as {record}"),
            }
        }
    }

    // The budget's own counter agrees to the token, and never passes the limit.
    let used = stack.used(&id).await;
    assert_eq!(used, charged_to_received);
    assert!(used <= limit, "{used} > {limit}");

    // Nothing that would have fit was withheld: the remainder stays below every withheld
    // price, and a pre-check refusal means the limit was reached exactly.
    for todo in &withheld {
        assert!(
            price[todo] > limit - used,
            "todo {todo} ({} tokens) withheld with {} left",
            price[todo],
            limit - used
        );
    }
    if exhausted > 0 {
        assert_eq!(
            used, limit,
            "{exhausted} refused before the downstream with room left"
        );
    }

    // json-server saw the reference run and every call that passed the pre-check.
    assert_eq!(
        stack.downstream_requests("GET /todos/"),
        2 * TODOS as usize - exhausted
    );
    eprintln!(
        "limit {limit}: {} received, {} withheld, {exhausted} refused up front, {used} charged",
        received.len(),
        withheld.len()
    );
}

#[tokio::test]
async fn an_exhausted_agent_is_refused_without_the_downstream_being_called() {
    // The reference status mode, so that the refusal is also visible as HTTP 429.
    let stack =
        Stack::start(GatewayOptions::new().env("Ithil__Mcp__ErrorStatus", "reference")).await;
    let (id, token) = stack.agent(json!({"label": "spender"})).await;
    let mcp = stack.mcp(&token).await;

    // One call, then a limit of exactly its charge: nothing left.
    let answer = mcp.call("getTodo", json!({"id": 1})).await.unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    let charged = stack.used(&id).await;
    assert!(charged > 0);
    let put = stack
        .put_budget(&id, &json!({"dailyTokenBudget": charged}).to_string())
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.json()["remaining"], 0);
    let hits = stack.downstream_requests("GET /todos/");
    assert_eq!(hits, 1);

    // Refused up front: 429, -32029, the documented message. A tool whose downstream is dead
    // gets the same refusal, not a downstream error, so it was never tried.
    for todo in 2..=6 {
        let answer = mcp.call("getTodo", json!({"id": todo})).await.unwrap();
        assert_eq!(answer.status, 429, "{}", answer.body);
        answer.assert_budget_refusal();
    }
    let answer = mcp.call("getDeadTodo", json!({"id": 1})).await.unwrap();
    assert_eq!(answer.status, 429, "{}", answer.body);
    answer.assert_budget_refusal();

    // A limit lowered below today's usage refuses the same way.
    let put = stack.put_budget(&id, r#"{"dailyTokenBudget": 1}"#).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let put = put.json();
    assert_eq!(put["remaining"], 0, "{put}");
    assert_eq!(put["tokensUsedToday"], charged, "{put}");
    let answer = mcp.call("getTodo", json!({"id": 7})).await.unwrap();
    answer.assert_budget_refusal();

    assert_eq!(stack.downstream_requests("GET /todos/"), hits);
    let calls = stack.calls(&id).await;
    let refused: Vec<&Value> = calls
        .iter()
        .filter(|r| r["outcome"] == "budget_exhausted")
        .collect();
    assert_eq!(refused.len(), 7, "{calls:?}");
    for record in &refused {
        assert!(record["downstreamStatus"].is_null(), "{record}");
        assert_eq!(tokens(record), 0, "{record}");
    }
    assert_eq!(stack.used(&id).await, charged);

    // After a reset the same agent reaches the downstream again.
    let reset = stack
        .client()
        .delete(&format!("/management/agents/{id}/budget"))
        .bearer(&stack.admin)
        .send()
        .bounded()
        .await;
    assert_eq!(reset.status, 204);
    let put = stack.put_budget(&id, r#"{"dailyTokenBudget": null}"#).await;
    assert_eq!(put.status, 200);
    let answer = mcp.call("getTodo", json!({"id": 8})).await.unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    assert_eq!(stack.downstream_requests("GET /todos/"), hits + 1);
}

#[tokio::test]
async fn every_result_received_before_a_kill_9_is_charged_after_the_restart() {
    let mut stack = Stack::start(GatewayOptions::new()).await;
    let (id, token) = stack
        .agent(json!({"label": "crash", "dailyTokenBudget": 1_000_000_000u64}))
        .await;

    let run = load_until_killed(&stack, &token, 16, 150).await;
    assert!(run.received.len() >= 150);
    assert!(run.in_flight > 0, "the kill broke no call in flight");
    stack.gateway.restart().unwrap_or_else(|e| panic!("{e}"));

    // After the restart: a record for every received result, and the charges of the
    // received results are all in the budget's total.
    let records = stack.calls(&id).await;
    let tagged = by_tag(&records);
    let mut received_tokens = 0;
    for got in &run.received {
        let record = tagged
            .get(&got.tag)
            .unwrap_or_else(|| panic!("no record of received call {}", got.tag));
        assert_eq!(record["outcome"], "ok", "{record}");
        assert_eq!(record["arguments"]["id"], got.todo, "{record}");
        assert!(tokens(record) > 0, "{record}");
        received_tokens += tokens(record);
    }
    let used = stack.used(&id).await;
    assert!(
        received_tokens <= used,
        "{received_tokens} received, {used} charged"
    );

    // Charges and records committed together: the records of charged calls add up to the
    // budget's counter exactly, crash or not.
    let recorded: u64 = records.iter().map(tokens).sum();
    assert_eq!(recorded, used);
    eprintln!(
        "{} results received, {} calls broken in flight, {} recorded, {used} tokens charged",
        run.received.len(),
        run.in_flight,
        records.len()
    );

    // The restarted gateway charges on from there.
    let mcp = stack.mcp(&token).await;
    let answer = mcp
        .call("getTodo", json!({"id": 1, "tag": "after"}))
        .await
        .unwrap();
    assert!(answer.is_result(), "{}", answer.body);
    let after = by_tag(&stack.calls(&id).await);
    assert_eq!(stack.used(&id).await, used + tokens(&after["after"]));
}
