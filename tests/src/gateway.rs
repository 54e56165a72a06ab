//! Starting the real `ithil` binary on an ephemeral loopback port with a temporary store.
//!
//! # Finding the binary
//!
//! `CARGO_BIN_EXE_ithil` exists only for tests of the `ithil` package itself, so the harness
//! finds the binary beside its own test executable: a test binary runs from
//! `<target>/<profile>/deps/`, and cargo puts `ithil` in `<target>/<profile>/`. That respects
//! `CARGO_TARGET_DIR` and the profile without reading either. Once per test process the harness
//! runs `cargo build -p ithil --bin ithil` into that same directory, so a stale or missing binary
//! is rebuilt (cargo's own freshness check makes this a no-op when nothing changed). Setting
//! `ITHIL_BIN` to a path skips the build and uses that binary instead.
//!
//! # Starting
//!
//! [`GatewayProcess::start`] runs `ithil serve --listen 127.0.0.1:0 --data <temp dir>` with a
//! cleared environment plus the variables the options name, reads the bound address from the
//! server's `listening on http://ADDR` log line on stderr, and waits until `GET /health/live`
//! answers 200. The process is killed (by its pid) when the handle drops; [`GatewayProcess::stop`]
//! sends SIGTERM first and waits for a graceful exit; [`GatewayProcess::restart`] starts it again
//! on the same data directory.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How long a start may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a start that must fail may take to exit.
const REFUSED_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The log line that carries the bound address.
const LISTENING: &str = "listening on http://";

/// The path of the `ithil` binary, built once per test process.
///
/// # Panics
///
/// Panics when the binary cannot be built.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("ITHIL_BIN") {
            return PathBuf::from(path);
        }

        let exe = std::env::current_exe().expect("the test binary knows its path");
        // <target>/<profile>/deps/<test> -> <target>/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary runs from <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory sits in the target directory");
        let release = profile_dir
            .file_name()
            .is_some_and(|name| name == "release");

        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "ithil", "--bin", "ithil"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            build.arg("--release");
        }
        let output = build.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo build -p ithil failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        profile_dir.join(format!("ithil{}", std::env::consts::EXE_SUFFIX))
    })
}

/// How to start a gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<serde_json::Value>,
    data_dir: Option<PathBuf>,
    rust_log: Option<String>,
    listen: Option<String>,
}

impl GatewayOptions {
    /// No flags beyond `--listen` and `--data`, and no configuration variables.
    pub fn new() -> GatewayOptions {
        GatewayOptions::default()
    }

    /// Adds `--dev`.
    pub fn dev(self) -> GatewayOptions {
        self.arg("--dev")
    }

    /// Adds one command-line argument after `serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> GatewayOptions {
        self.args.push(arg.into());
        self
    }

    /// Sets one environment variable of the gateway process (its environment is otherwise
    /// empty).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> GatewayOptions {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets `Ithil__Admin__ApiKey`.
    pub fn api_key(self, key: impl Into<String>) -> GatewayOptions {
        self.env("Ithil__Admin__ApiKey", key)
    }

    /// Writes this JSON as `ithil.json` in the data directory's parent and passes `--config`.
    pub fn config(mut self, json: serde_json::Value) -> GatewayOptions {
        self.config = Some(json);
        self
    }

    /// Uses this data directory instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> GatewayOptions {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listens on this address instead of `127.0.0.1:0` (use port 0).
    pub fn listen(mut self, addr: impl Into<String>) -> GatewayOptions {
        self.listen = Some(addr.into());
        self
    }

    /// Sets `RUST_LOG` of the gateway. Default is `info`.
    pub fn rust_log(mut self, filter: impl Into<String>) -> GatewayOptions {
        self.rust_log = Some(filter.into());
        self
    }

    /// The command `start` would run, for tests that expect the gateway not to start.
    pub fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg(self.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--data")
            .arg(data_dir)
            .args(&self.args)
            .env_clear()
            .env("RUST_LOG", self.rust_log.as_deref().unwrap_or("info"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        command
    }

    /// Runs [`GatewayOptions::command`] on `data_dir`, stdout discarded and stderr captured,
    /// for a start that must fail; returns how it exited and what it wrote.
    ///
    /// # Panics
    ///
    /// Panics with `what` when the gateway is still running after 30 seconds (after killing
    /// it), or when it cannot be spawned.
    pub fn refused_start(&self, data_dir: &Path, what: &str) -> Output {
        let child = self
            .command(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary runs");
        wait_exit(child, REFUSED_START_TIMEOUT, what)
    }
}

/// The lines `pipe` yields, sent one by one from a reader thread that ends with the pipe (or
/// when the receiver is dropped).
pub fn line_channel(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to `limit` for `child` to exit and returns its status and what is left of its
/// piped output.
///
/// # Panics
///
/// Panics with `what` when the process is still running after `limit` (after killing it).
pub fn wait_exit(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            // Child::kill signals exactly this process id.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .expect("the child's output is read")
}

/// Why a gateway did not start.
#[derive(Debug)]
pub struct StartError {
    /// What went wrong.
    pub reason: String,
    /// Everything the process wrote to stderr.
    pub stderr: String,
    /// Its exit status, when it exited.
    pub status: Option<ExitStatus>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gateway did not start: {}\n--- stderr ---\n{}",
            self.reason, self.stderr
        )
    }
}

impl std::error::Error for StartError {}

enum DataDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(dir) => dir.path(),
            DataDir::Given(path) => path,
        }
    }
}

/// A running gateway process.
pub struct GatewayProcess {
    child: Option<Child>,
    addr: SocketAddr,
    opts: GatewayOptions,
    /// Holds the temporary directory: `<root>/data` is the store, `<root>/ithil.json` the config.
    root: DataDir,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts a gateway and waits until it is live.
    ///
    /// # Errors
    ///
    /// Fails when the process exits, or does not listen or answer within a minute.
    pub fn start(opts: GatewayOptions) -> Result<GatewayProcess, StartError> {
        let root = match &opts.data_dir {
            Some(dir) => DataDir::Given(dir.clone()),
            None => DataDir::Temp(tempfile::tempdir().map_err(|e| StartError {
                reason: format!("no temporary directory: {e}"),
                stderr: String::new(),
                status: None,
            })?),
        };
        let mut gateway = GatewayProcess {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            opts,
            root,
            stderr: Arc::default(),
            stdout: Arc::default(),
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    fn data_path(&self) -> PathBuf {
        match &self.root {
            DataDir::Temp(dir) => dir.path().join("data"),
            DataDir::Given(path) => path.clone(),
        }
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        let fail = |reason: String, stderr: &Arc<Mutex<String>>, status| StartError {
            reason,
            stderr: lock(stderr).clone(),
            status,
        };

        let mut command = self.opts.command(&self.data_path());
        if let Some(config) = &self.opts.config {
            let path = self.root.path().join("ithil.json");
            std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap_or_default())
                .map_err(|e| fail(format!("cannot write config: {e}"), &self.stderr, None))?;
            command.arg("--config").arg(path);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                fail(
                    format!("cannot run {}: {e}", binary().display()),
                    &self.stderr,
                    None,
                )
            })?;

        // Readers run until the process closes its pipes; stderr also reports the address.
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::clone(&self.stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                let mut text = lock(&stderr);
                text.push_str(&line);
                text.push('\n');
            }
        });
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let stdout = Arc::clone(&self.stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { break };
                lock(&stdout).push(line);
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    return Err(fail(
                        "the process closed stderr".into(),
                        &self.stderr,
                        status,
                    ));
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err(fail(
                    "the process exited".into(),
                    &self.stderr,
                    Some(status),
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("no listening line in time".into(), &self.stderr, None));
            }
        };

        while !is_live(addr) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(
                    "/health/live did not answer 200".into(),
                    &self.stderr,
                    None,
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }

        self.addr = addr;
        self.child = Some(child);
        Ok(())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The store directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_path()
    }

    /// A client for this gateway.
    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// Everything the process wrote to stderr so far (its log).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// The lines the process wrote to stdout so far (the audit JSON Lines sink).
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// Sends SIGTERM and waits for the process to exit; kills it after 30 seconds.
    ///
    /// # Panics
    ///
    /// Panics when the gateway is not running or cannot be signalled.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway is running");
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(signalled, "kill -TERM {} failed", child.id());

        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().expect("the killed gateway is reaped");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the gateway gracefully and starts it again on the same data directory (on a new
    /// port; [`GatewayProcess::addr`] changes).
    ///
    /// # Errors
    ///
    /// As [`GatewayProcess::start`].
    pub fn restart(&mut self) -> Result<ExitStatus, StartError> {
        let status = self.stop();
        self.spawn()?;
        Ok(status)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The address in a `listening on http://ADDR` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let start = line.find(LISTENING)? + LISTENING.len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One blocking `GET /health/live`; true on 200.
fn is_live(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A tiny HTTP client for one gateway: one connection per request, HTTP/1.1 or h2c.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    /// A client for any loopback address (such as a gateway started another way).
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr }
    }

    /// A request with any method.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            addr: self.addr,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            http2: false,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Writes raw bytes to a new connection and returns everything read until the server
    /// closes it (or 10 seconds pass).
    ///
    /// # Panics
    ///
    /// Panics when the connection cannot be made.
    pub async fn raw(&self, request: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("the gateway accepts connections");
        stream
            .write_all(request)
            .await
            .expect("the request is sent");
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        answer
    }
}

/// One request being built.
#[derive(Debug)]
pub struct RequestBuilder {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    http2: bool,
}

impl RequestBuilder {
    /// Adds a header; calling it twice with one name sends the header twice.
    ///
    /// # Panics
    ///
    /// Panics on a name or value that HTTP does not allow.
    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value).expect("a valid header value"),
        ));
        self
    }

    /// Adds `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> RequestBuilder {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends `body` as `Content-Type: application/json`, byte for byte.
    pub fn json(self, body: &str) -> RequestBuilder {
        self.header("content-type", "application/json")
            .body(body.to_owned())
    }

    /// Sets the body without a content type.
    pub fn body(mut self, body: impl Into<Bytes>) -> RequestBuilder {
        self.body = body.into();
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub fn http2(mut self) -> RequestBuilder {
        self.http2 = true;
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// # Panics
    ///
    /// Panics when the connection or the exchange fails.
    pub async fn send(self) -> Response {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("the gateway accepts connections");
        let io = TokioIo::new(stream);

        let mut request = Request::builder()
            .method(self.method)
            .uri(if self.http2 {
                format!("http://{}{}", self.addr, self.path)
            } else {
                self.path.clone()
            })
            .body(Full::new(self.body))
            .expect("a valid request");
        if !self.http2 {
            let host = HeaderValue::from_str(&self.addr.to_string()).expect("an address is ascii");
            request.headers_mut().insert(hyper::header::HOST, host);
        }
        for (name, value) in self.headers {
            request.headers_mut().append(name, value);
        }

        let response = if self.http2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2c handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("h2c exchange")
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("http/1.1 handshake");
            tokio::spawn(connection);
            sender
                .send_request(request)
                .await
                .expect("http/1.1 exchange")
        };

        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole body arrives")
            .to_bytes();
        Response {
            status,
            version,
            headers,
            body,
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The protocol version it came over.
    pub version: hyper::Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// Panics when the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.code` of a JSON error body, or an empty string.
    pub fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line =
            "2026-05-06T12:00:00.000Z  INFO ithil::server: listening on http://127.0.0.1:41234";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        let line = "INFO listening on http://[::1]:5100 extra";
        assert_eq!(listening_addr(line), Some("[::1]:5100".parse().unwrap()));
        assert_eq!(listening_addr("INFO starting"), None);
    }
}
