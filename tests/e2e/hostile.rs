//! Hostile and faulty traffic: limits, slow clients, broken downstreams, cancelled calls and
//! shutdown under load, against the real binary.
//!
//! Each case checks the answer the client gets (a status, a JSON-RPC error, or a closed
//! connection) and then that the gateway still serves another request. The downstream of these
//! tests is [`Faulty`], a small TCP server written here that misbehaves by path, so each fault
//! is exact: it never answers, trickles, breaks off, oversends, or sends broken text. Limits are
//! configured small (a 2-second header timeout, a 1.5-second downstream timeout) so that every
//! test ends in seconds; the defaults are documented in `docs/configuration.md` and
//! `docs/hardening.md`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use ithil_tests::gateway::{Client, GatewayOptions, GatewayProcess, Response};

/// The protocol revision the tests ask for.
const PROTOCOL: &str = "2025-06-18";

/// The downstream timeout of the tool manifest, in milliseconds.
const DOWNSTREAM_TIMEOUT_MS: u64 = 1500;

/// The response size cap of the tool manifest.
const DOWNSTREAM_CAP: usize = 4096;

/// How long any single wait of these tests may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(15);

/// The JSON-RPC code of a failed downstream.
const DOWNSTREAM_FAILED: i64 = -32002;

/// The JSON-RPC code of a cancelled request.
const REQUEST_CANCELLED: i64 = -32800;

// ---------------------------------------------------------------------------------------------
// The faulty downstream.

/// What the downstream has seen: requests by path, and connections the gateway closed while a
/// request on them was still unanswered.
#[derive(Debug, Default)]
struct Seen {
    arrived: Vec<String>,
    closed_early: Vec<String>,
}

/// A downstream on 127.0.0.1 whose answer depends on the path:
///
/// - `/good`: 200 with a small JSON body, keep-alive;
/// - `/hang`: reads the request and never answers;
/// - `/slow`: answers 200 once [`Faulty::release`] is called, unless the gateway leaves first;
/// - `/trickle`: 200 headers, then one byte of the body a second;
/// - `/cut`: declares 100 bytes, sends 10, closes;
/// - `/huge`: declares 10 MB (over the cap) and starts sending;
/// - `/huge-chunked`: a chunked body that goes on past the cap;
/// - `/bad-utf8`: 200 `text/plain` that is not UTF-8;
/// - `/bad-json`: 200 `application/json` that is not JSON.
struct Faulty {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    release: watch::Sender<bool>,
}

impl Faulty {
    async fn start() -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (release, released) = watch::channel(false);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_faulty(stream, Arc::clone(&log), released.clone()));
            }
        });
        Faulty {
            addr,
            seen,
            release,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets every `/slow` request waiting now (and later) answer.
    fn release(&self) {
        let _ = self.release.send(true);
    }

    fn arrived(&self, path: &str) -> usize {
        lock(&self.seen)
            .arrived
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    fn closed_early(&self, path: &str) -> usize {
        lock(&self.seen)
            .closed_early
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves one connection of the faulty downstream; `/good` keeps it open for the next request.
async fn serve_faulty(
    mut stream: TcpStream,
    seen: Arc<Mutex<Seen>>,
    released: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(path) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        lock(&seen).arrived.push(path.clone());
        let closed_early = |seen: &Arc<Mutex<Seen>>| lock(seen).closed_early.push(path.clone());

        match path.as_str() {
            "/good" => {
                if respond(&mut stream, "application/json", br#"{"ok":true}"#)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            "/hang" => {
                if wait_for_close(&mut stream, PATIENCE * 2).await {
                    closed_early(&seen);
                }
            }
            "/slow" => {
                let mut released = released.clone();
                let mut byte = [0u8; 1];
                tokio::select! {
                    _ = async { released.wait_for(|go| *go).await.is_ok() } => {
                        let _ = respond(&mut stream, "application/json", br#"{"slow":"done"}"#).await;
                    }
                    _ = stream.read(&mut byte) => closed_early(&seen),
                }
            }
            "/trickle" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    for _ in 0..40 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if stream.write_all(b" ").await.is_err() {
                            closed_early(&seen);
                            break;
                        }
                    }
                }
            }
            "/cut" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(br#"{"a": "012"#).await;
                let _ = stream.shutdown().await;
            }
            "/huge" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 4096];
                for _ in 0..2500 {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            "/huge-chunked" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                let mut chunk = b"1000\r\n".to_vec();
                chunk.extend(std::iter::repeat_n(b' ', 4096));
                chunk.extend_from_slice(b"\r\n");
                for _ in 0..2500 {
                    if stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
            "/bad-utf8" => {
                let _ = respond(&mut stream, "text/plain", b"caf\xc3\x28 \xff\xfe").await;
            }
            "/bad-json" => {
                let _ = respond(&mut stream, "application/json", br#"{"a": [1, 2"#).await;
            }
            _ => {
                let _ = stream
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        }
        return;
    }
}

/// Reads one request head (the gateway sends these tools no body) and returns its path.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return head.split_whitespace().nth(1).map(str::to_owned);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(stream: &mut TcpStream, content_type: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await
}

/// Waits until the peer closes the connection; false when `limit` passes first.
async fn wait_for_close(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

/// The manifest of the faulty downstream: one GET tool per path, named after it.
fn manifest(dir: &Path, downstream: &str) -> std::path::PathBuf {
    let tools: Vec<Value> = [
        ("good", "/good"),
        ("hang", "/hang"),
        ("slow", "/slow"),
        ("trickle", "/trickle"),
        ("cut", "/cut"),
        ("huge", "/huge"),
        ("hugeChunked", "/huge-chunked"),
        ("badUtf8", "/bad-utf8"),
        ("badJson", "/bad-json"),
    ]
    .into_iter()
    .map(|(name, route)| {
        json!({ "name": name, "downstream": "faulty", "method": "GET", "route": route })
    })
    .collect();
    let manifest = json!({
        "downstreams": {
            "faulty": {
                "baseUrl": downstream,
                "connectTimeoutMs": 1000,
                "requestTimeoutMs": DOWNSTREAM_TIMEOUT_MS,
                "maxResponseBytes": DOWNSTREAM_CAP,
            }
        },
        "tools": tools,
    });
    let path = dir.join("faulty.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// The gateway and an MCP client.

/// A gateway in development mode (for tokens) with `config`.
fn start(config: Value) -> GatewayProcess {
    GatewayProcess::start(GatewayOptions::new().dev().config(config))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A development agent's token. `/mcp` refuses a request without a valid token before it reads
/// a byte of its body, so the tests of body limits and timeouts send one.
async fn dev_token(gateway: &GatewayProcess) -> String {
    let answer = gateway.client().get("/dev/token").send().await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["token"].as_str().unwrap().to_owned()
}

/// An agent with a token and an open MCP session.
struct Agent {
    client: Client,
    id: String,
    token: String,
    session: String,
    admin: String,
}

impl Agent {
    /// Creates an agent through the management API and opens a session for it.
    async fn open(gateway: &GatewayProcess) -> Agent {
        let client = gateway.client();
        let admin = client.get("/dev/admin-token").send().await;
        assert_eq!(admin.status, 200, "{}", admin.text());
        let admin = admin.json()["token"].as_str().unwrap().to_owned();

        let created = client
            .post("/management/agents")
            .bearer(&admin)
            .json(r#"{"label": "hostile"}"#)
            .send()
            .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["agentId"].as_str().unwrap().to_owned();
        let issued = client
            .post(&format!("/management/agents/{id}/token"))
            .bearer(&admin)
            .send()
            .await;
        assert_eq!(issued.status, 200, "{}", issued.text());
        let token = issued.json()["token"].as_str().unwrap().to_owned();

        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": { "name": "hostile", "version": "1" },
            },
        });
        let opened = mcp(client, &token, None, &init).await;
        assert_eq!(opened.status, 200, "{}", opened.text());
        let session = opened.header("mcp-session-id").unwrap().to_owned();
        let agent = Agent {
            client,
            id,
            token,
            session,
            admin,
        };
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        assert_eq!(agent.send(&note).await.status, 202);
        agent
    }

    async fn send(&self, message: &Value) -> Response {
        mcp(self.client, &self.token, Some(&self.session), message).await
    }

    async fn call(&self, id: u64, tool: &str) -> Response {
        self.send(&call_message(id, tool)).await
    }

    /// The raw HTTP/1.1 bytes of a `tools/call`, for tests that hold the socket themselves.
    fn raw_call(&self, addr: SocketAddr, id: u64, tool: &str) -> Vec<u8> {
        let body = call_message(id, tool).to_string();
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             mcp-session-id: {}\r\nmcp-protocol-version: {PROTOCOL}\r\n\
             content-length: {}\r\n\r\n{body}",
            self.token,
            self.session,
            body.len()
        )
        .into_bytes()
    }

    /// Today's tokens charged to the agent.
    async fn used(&self) -> u64 {
        let status = self
            .client
            .get(&format!("/management/agents/{}/budget", self.id))
            .bearer(&self.admin)
            .send()
            .await;
        assert_eq!(status.status, 200, "{}", status.text());
        status.json()["tokensUsedToday"].as_u64().unwrap()
    }

    /// The agent's audit records of `tool`, newest first.
    async fn records(&self, tool: &str) -> Vec<Value> {
        audit(self.client, &self.admin, &self.id, tool).await
    }
}

async fn audit(client: Client, admin: &str, agent: &str, tool: &str) -> Vec<Value> {
    let page = client
        .get(&format!(
            "/management/agents/{agent}/audit?tool={tool}&limit=1000"
        ))
        .bearer(admin)
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    page.json()["records"].as_array().unwrap().clone()
}

fn call_message(id: u64, tool: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": tool, "arguments": {} },
    })
}

async fn mcp(client: Client, token: &str, session: Option<&str>, message: &Value) -> Response {
    let mut request = client
        .post("/mcp")
        .bearer(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL)
        .json(&message.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("the gateway answers in time")
}

/// Polls `check` until it holds or [`PATIENCE`] runs out.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The status code of a raw HTTP/1.1 answer, 0 when there is none.
fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A body refused for its size: the answer is a 413, and the connection was closed rather
/// than left open for the rest of the body.
fn assert_refused_as_too_large(answer: &[u8], closed: bool) {
    assert_eq!(
        status_of(answer),
        413,
        "{}",
        String::from_utf8_lossy(answer)
    );
    assert!(
        closed,
        "the connection stayed open for the rest of the body"
    );
}

/// Whether the gateway is still serving: `GET /health/live` answers 200.
async fn still_serving(gateway: &GatewayProcess) {
    let live = gateway.client().get("/health/live").send().await;
    assert_eq!(live.status, 200, "the gateway stopped serving");
}

/// Reads from `stream` until the server closes it (or resets it); false when `limit` passes.
async fn read_until_closed(stream: &mut TcpStream, answer: &mut Vec<u8>, limit: Duration) -> bool {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

// ---------------------------------------------------------------------------------------------
// Header and body limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_limit_get_431_and_the_gateway_keeps_serving() {
    let gateway = start(json!({ "server": { "maxHeaderBytes": 8192 } }));
    let client = gateway.client();

    // Just over the limit, so the gateway has read everything the client sent when it answers.
    let big = "a".repeat(9000);
    let request = format!("GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let answer = client.raw(request.as_bytes()).await;
    assert_eq!(
        status_of(&answer),
        431,
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // More than 100 header fields are refused however small they are (here 2 KB in all).
    let many: String = (0..150).map(|i| format!("x-h{i}: b\r\n")).collect();
    let request = format!("GET /health/live HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let answer = client.raw(request.as_bytes()).await;
    assert_eq!(
        status_of(&answer),
        431,
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Headers within the limit pass.
    let fine = client
        .get("/health/live")
        .header("x-fine", &"c".repeat(4000))
        .send()
        .await;
    assert_eq!(fine.status, 200);

    // HTTP/2 holds the header list to the same bound.
    let h2 = client
        .get("/health/live")
        .header("x-big", &big)
        .http2()
        .send()
        .await;
    assert_eq!(h2.status, 431);
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_over_the_limit_gets_413_before_a_byte_of_it_is_sent() {
    let gateway = start(json!({}));

    // 10 GB declared, nothing sent: the answer must not wait for the body.
    let token = dev_token(&gateway).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ncontent-length: 10737418240\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let closed = read_until_closed(&mut stream, &mut answer, PATIENCE).await;

    assert_refused_as_too_large(&answer, closed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_gets_413_before_it_ends() {
    let gateway = start(json!({ "server": { "maxBodyBytes": 1024 } }));

    let token = dev_token(&gateway).await;
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // 1500 bytes in one chunk, and the body never ends: the answer cannot be waiting for it.
    let mut chunk = b"5dc\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'[', 1500));
    chunk.extend_from_slice(b"\r\n");
    stream.write_all(&chunk).await.unwrap();

    let mut answer = Vec::new();
    let closed = read_until_closed(&mut stream, &mut answer, PATIENCE).await;
    assert_refused_as_too_large(&answer, closed);
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nested_deeper_than_the_bound_gets_400() {
    let gateway = start(json!({}));
    let agent = Agent::open(&gateway).await;

    // 100 levels inside the envelope, beyond the bound of 64; far below the body limit.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}1{}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let answer = mcp_raw_body(&agent, &deep).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], -32700, "{}", answer.text());
    assert!(
        answer.text().contains("nested deeper than 64"),
        "{}",
        answer.text()
    );

    // The management API refuses the same nesting as malformed JSON.
    let body = format!(r#"{{"label": {}"x"{}}}"#, "[".repeat(200), "]".repeat(200));
    let refused = agent
        .client
        .post("/management/agents")
        .bearer(&agent.admin)
        .json(&body)
        .send()
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.error_code(), "malformed_json");

    let ping = agent
        .send(&json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" }))
        .await;
    assert_eq!(ping.status, 200, "{}", ping.text());
}

async fn mcp_raw_body(agent: &Agent, body: &str) -> Response {
    agent
        .client
        .post("/mcp")
        .bearer(&agent.token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &agent.session)
        .json(body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_peer_cap_get_503_and_a_freed_slot_is_used_again() {
    let gateway = start(json!({ "server": { "maxConnectionsPerPeer": 3 } }));

    // Three idle connections take the peer's three slots.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gateway.addr()).await.unwrap());
    }
    // The gateway takes a slot when it accepts; give it the moment that takes.
    let deadline = Instant::now() + PATIENCE;
    let answer = loop {
        let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        read_until_closed(&mut stream, &mut answer, PATIENCE).await;
        if status_of(&answer) == 503 {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the fourth connection was never refused"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("too_many_connections"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );

    // A closed connection gives its slot back.
    held.pop();
    let client = gateway.client();
    eventually("a freed slot is used again", move || async move {
        let request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        status_of(&client.raw(request).await) == 200
    })
    .await;
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// Slow clients.

/// Writes `bytes` one a second until they are sent or the connection breaks.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], answer: &mut Vec<u8>) -> Duration {
    let started = Instant::now();
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    read_until_closed(stream, answer, PATIENCE).await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off_at_the_header_timeout() {
    let gateway = start(json!({ "server": { "headerReadTimeoutSeconds": 2 } }));

    let mut slow = TcpStream::connect(gateway.addr()).await.unwrap();
    let request = b"GET /health/live HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let slow_client = async {
        let mut answer = Vec::new();
        let took = trickle(&mut slow, request, &mut answer).await;
        (took, answer)
    };
    // Everyone else is served meanwhile.
    let others = async {
        for _ in 0..3 {
            still_serving(&gateway).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    // A connection that sends nothing at all is held to the same bound.
    let silent = async {
        let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let closed = read_until_closed(&mut stream, &mut answer, Duration::from_secs(8)).await;
        (closed, started.elapsed(), answer)
    };
    let ((took, answer), (), (closed, silent_took, silent_answer)) =
        tokio::join!(slow_client, others, silent);

    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(closed, "a silent connection stayed open");
    assert!(silent_answer.is_empty());
    assert!(
        silent_took >= Duration::from_millis(1500),
        "{silent_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_gets_408_at_the_body_timeout() {
    let gateway = start(json!({ "server": { "bodyReadTimeoutSeconds": 2 } }));

    let token = dev_token(&gateway).await;
    let mut slow = TcpStream::connect(gateway.addr()).await.unwrap();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let took = trickle(&mut slow, body, &mut answer).await;

    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    still_serving(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_bound() {
    let gateway = start(json!({
        "server": { "headerReadTimeoutSeconds": 2, "idleTimeoutSeconds": 2 }
    }));

    // HTTP/1.1: one request, then silence.
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let closed = read_until_closed(&mut stream, &mut answer, Duration::from_secs(8)).await;
    assert_eq!(status_of(&answer), 200);
    assert!(closed, "the idle connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // HTTP/2: one request, then silence; the gateway ends the connection with GOAWAY.
    let io = TokioIo::new(TcpStream::connect(gateway.addr()).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/health/live", gateway.addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await;
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    still_serving(&gateway).await;
}

// ---------------------------------------------------------------------------------------------
// Downstream faults.

/// A gateway whose catalog is the faulty downstream, answering failures with their HTTP status.
async fn faulty_stack() -> (Faulty, tempfile::TempDir, GatewayProcess) {
    let downstream = Faulty::start().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = manifest(dir.path(), &downstream.base_url());
    let gateway = start(json!({
        "catalog": { "files": [catalog] },
        "mcp": { "errorStatus": "reference" },
    }));
    (downstream, dir, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_downstream_fault_ends_in_a_502_in_time_and_the_pool_stays_healthy() {
    let (downstream, _dir, gateway) = faulty_stack().await;
    let agent = Agent::open(&gateway).await;
    let timeout = Duration::from_millis(DOWNSTREAM_TIMEOUT_MS);

    let good = agent.call(1, "good").await;
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.json()["result"]["isError"], false, "{}", good.text());

    for (id, (tool, words, outcome)) in (10..).zip([
        ("hang", "no answer in time", "downstream_timeout"),
        ("trickle", "no answer in time", "downstream_timeout"),
        ("cut", "broke off", "downstream_error"),
        ("huge", "larger than allowed", "rejected_too_large"),
        ("hugeChunked", "larger than allowed", "rejected_too_large"),
        ("badUtf8", "not valid UTF-8", "downstream_error"),
        ("badJson", "not valid JSON", "downstream_error"),
    ]) {
        let started = Instant::now();
        let answer = agent.call(id, tool).await;
        let took = started.elapsed();

        assert_eq!(answer.status, 502, "{tool}: {}", answer.text());
        let error = &answer.json()["error"];
        assert_eq!(
            error["code"],
            DOWNSTREAM_FAILED,
            "{tool}: {}",
            answer.text()
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(words), "{tool}: {message}");
        assert!(
            took < timeout + Duration::from_secs(2),
            "{tool} took {took:?}"
        );

        let records = agent.records(tool).await;
        assert_eq!(records.len(), 1, "{tool}: {records:?}");
        assert_eq!(records[0]["outcome"], outcome, "{tool}: {records:?}");
        assert_eq!(records[0]["tokens"], 0, "{tool}: {records:?}");

        // The next call finds a working connection (a new one, or a healthy pooled one).
        let good = agent.call(id + 100, "good").await;
        assert_eq!(good.status, 200, "after {tool}: {}", good.text());
        assert_eq!(
            good.json()["result"]["isError"],
            false,
            "after {tool}: {}",
            good.text()
        );
    }

    // The gateway hung up on the downstreams that never finished.
    let ds = &downstream;
    for path in ["/hang", "/trickle"] {
        eventually(&format!("the gateway closes {path}"), move || async move {
            ds.closed_early(path) == 1
        })
        .await;
    }
    still_serving(&gateway).await;
}

// ---------------------------------------------------------------------------------------------
// Cancelled calls.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_call_drops_the_downstream_request_and_is_not_charged() {
    let (downstream, _dir, gateway) = faulty_stack().await;
    let agent = Agent::open(&gateway).await;

    let (ds, who) = (&downstream, &agent);
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    stream
        .write_all(&agent.raw_call(gateway.addr(), 5, "slow"))
        .await
        .unwrap();
    eventually("the call reaches the downstream", move || async move {
        ds.arrived("/slow") == 1
    })
    .await;
    drop(stream);

    eventually(
        "the downstream sees its request dropped",
        move || async move { ds.closed_early("/slow") == 1 },
    )
    .await;
    eventually("the cancellation is recorded", move || async move {
        !who.records("slow").await.is_empty()
    })
    .await;
    let records = agent.records("slow").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "cancelled", "{records:?}");
    assert_eq!(records[0]["action"], "tools/call", "{records:?}");
    assert_eq!(records[0]["tokens"], 0, "{records:?}");
    assert_eq!(agent.used().await, 0);

    // The downstream released later has nobody to answer; the next call is served and charged.
    downstream.release();
    let good = agent.call(6, "good").await;
    assert_eq!(good.json()["result"]["isError"], false, "{}", good.text());
    assert!(agent.used().await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_notification_stops_the_call_it_names_and_nothing_is_charged() {
    let (downstream, _dir, gateway) = faulty_stack().await;
    let agent = Agent::open(&gateway).await;

    let call = {
        let message = call_message(7, "slow");
        let (client, token, session) = (agent.client, agent.token.clone(), agent.session.clone());
        tokio::spawn(async move { mcp(client, &token, Some(&session), &message).await })
    };
    let ds = &downstream;
    eventually("the call reaches the downstream", move || async move {
        ds.arrived("/slow") == 1
    })
    .await;

    // Another session of the same agent cannot cancel it.
    let other = Agent {
        session: {
            let init = json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": { "protocolVersion": PROTOCOL, "capabilities": {},
                            "clientInfo": { "name": "other", "version": "1" } },
            });
            let opened = mcp(agent.client, &agent.token, None, &init).await;
            opened.header("mcp-session-id").unwrap().to_owned()
        },
        client: agent.client,
        id: agent.id.clone(),
        token: agent.token.clone(),
        admin: agent.admin.clone(),
    };
    let cancel = json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": 7, "reason": "the user changed their mind" },
    });
    assert_eq!(other.send(&cancel).await.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "another session cancelled the call");

    assert_eq!(agent.send(&cancel).await.status, 202);
    let answer = tokio::time::timeout(PATIENCE, call).await.unwrap().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["id"], 7, "{}", answer.text());
    assert_eq!(
        answer.json()["error"]["code"],
        REQUEST_CANCELLED,
        "{}",
        answer.text()
    );

    eventually(
        "the downstream sees its request dropped",
        move || async move { ds.closed_early("/slow") == 1 },
    )
    .await;
    let records = agent.records("slow").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "cancelled", "{records:?}");
    assert_eq!(records[0]["tokens"], 0, "{records:?}");
    assert_eq!(agent.used().await, 0);

    let good = agent.call(8, "good").await;
    assert_eq!(good.json()["result"]["isError"], false, "{}", good.text());
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown under load.

/// How many calls are in flight when the gateway is told to stop.
const IN_FLIGHT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_lets_every_started_call_finish_charged_and_recorded() {
    let downstream = Faulty::start().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = manifest(dir.path(), &downstream.base_url());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = json!({ "catalog": { "files": [catalog] } });
    let opts = GatewayOptions::new().dev().config(config).data_dir(&data);
    let gateway = GatewayProcess::start(opts.clone()).unwrap_or_else(|e| panic!("{e}"));
    let addr = gateway.addr();
    let agent = Agent::open(&gateway).await;

    // A hundred calls, each on its own connection, all waiting on the downstream.
    let calls: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|id| {
            let message = call_message(1000 + id, "slow");
            let (token, session) = (agent.token.clone(), agent.session.clone());
            tokio::spawn(async move { try_call(addr, &token, &session, &message).await })
        })
        .collect();
    let ds = &downstream;
    eventually("every call reaches the downstream", move || async move {
        ds.arrived("/slow") == IN_FLIGHT
    })
    .await;

    // SIGTERM, by process id.
    let pid = gateway.pid().unwrap();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    eventually("the gateway stops accepting", move || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

    // A call that tries now never starts: it cannot connect.
    let late = try_call(addr, &agent.token, &agent.session, &call_message(1, "good")).await;
    assert!(late.is_err(), "a call started after SIGTERM: {late:?}");

    // The calls in flight finish, each with a result.
    downstream.release();
    let mut delivered = 0u64;
    for call in calls {
        let answer = tokio::time::timeout(PATIENCE, call).await.unwrap().unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("a call in flight was lost: {e}"));
        assert_eq!(answer["result"]["isError"], false, "{answer}");
        delivered += 1;
    }
    assert_eq!(delivered, IN_FLIGHT as u64);

    // The process exits cleanly; wait for it without signalling again.
    eventually("the gateway exits", move || async move {
        !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid)
    })
    .await;
    // Let the log reader take the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = gateway.stderr();
    assert!(log.contains("all connections closed"), "{log}");
    assert!(log.contains("stopped"), "{log}");

    // After a restart on the same store, every delivered call is there, charged and recorded.
    drop(gateway);
    let gateway = GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"));
    let client = gateway.client();
    let admin = client.get("/dev/admin-token").send().await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let records = audit(client, &admin, &agent.id, "slow").await;
    assert_eq!(records.len(), IN_FLIGHT, "{records:?}");
    assert!(records.iter().all(|r| r["outcome"] == "ok"), "{records:?}");
    let charged: u64 = records.iter().map(|r| r["tokens"].as_u64().unwrap()).sum();
    assert!(charged > 0);
    let status = client
        .get(&format!("/management/agents/{}/budget", agent.id))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(
        status.json()["tokensUsedToday"],
        charged,
        "{}",
        status.text()
    );
}

/// Whether the process is a zombie (exited, not yet reaped by the harness).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// One `tools/call` on a fresh HTTP/1.1 connection: the JSON-RPC answer, or why there is none.
async fn try_call(
    addr: SocketAddr,
    token: &str,
    session: &str,
    message: &Value,
) -> Result<Value, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::post("/mcp")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", PROTOCOL)
        .body(Full::new(Bytes::from(message.to_string())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("exchange: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}
