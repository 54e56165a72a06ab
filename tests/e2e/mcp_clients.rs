//! Real MCP clients (the official Python SDK) through the gateway to json-server.
//!
//! Each SDK release line (the last 1.x and the newest 2.x) runs every scenario of
//! `tests/python/mcp_e2e.py` against the real `ithil` binary, whose catalog is the shared OpenAPI
//! document and whose downstream is json-server on a private copy of the shared dataset. The
//! script only reports what the SDK saw, one JSON line per step; the assertions are here.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use ithil_tests::gateway::{GatewayOptions, GatewayProcess, line_channel};
use ithil_tests::tools::{self, JsonServer, Sdk};

/// How long one script run may take before it counts as hung (each step inside has 20 s).
const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// The observations of one run of the Python script.
struct Run {
    what: String,
    lines: Vec<Value>,
    stderr: String,
}

impl Run {
    /// The only observation of `step`.
    fn step(&self, step: &str) -> &Value {
        let found: Vec<&Value> = self.lines.iter().filter(|l| l["step"] == step).collect();
        assert_eq!(
            found.len(),
            1,
            "{}: expected one `{step}` step\n{self}",
            self.what
        );
        found[0]
    }

    /// The observations of `step`, in order.
    fn steps(&self, step: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["step"] == step).collect()
    }

    /// The result of `step`, which must have succeeded.
    fn ok(&self, step: &str) -> &Value {
        let line = self.step(step);
        assert_eq!(line["ok"], true, "{}: `{step}` failed\n{self}", self.what);
        &line["result"]
    }

    /// The error of `step`, which must have failed.
    fn err(&self, step: &str) -> &Value {
        let line = self.step(step);
        assert_eq!(
            line["ok"], false,
            "{}: `{step}` succeeded\n{self}",
            self.what
        );
        &line["error"]
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in &self.lines {
            writeln!(f, "  {line}")?;
        }
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// Runs `mcp_e2e.py` with `sdk`'s virtual environment and collects its observations.
///
/// When the script pauses (`deactivated`), `on_pause` runs before the script is told to go on.
/// Fails the test when the script does not finish within [`RUN_DEADLINE`] or any step timed out.
fn run_script(
    sdk: Sdk,
    url: &str,
    token: &str,
    scenario: &[&str],
    sse: bool,
    mut on_pause: impl FnMut(),
) -> Run {
    let python = tools::python_sdk(sdk);
    let what = format!(
        "mcp {} {}{}",
        sdk.version(),
        scenario.join(" "),
        if sse { " (event stream)" } else { "" }
    );
    let stderr_file = tempfile::NamedTempFile::new().expect("cannot create a temporary file");
    let mut cmd = Command::new(&python);
    cmd.arg(tools::mcp_script());
    if sse {
        cmd.arg("--sse");
    }
    let mut child = cmd
        .arg(url)
        .arg(token)
        .args(scenario)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(
            stderr_file
                .reopen()
                .expect("cannot reopen the temporary file"),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

    let stdout = child.stdout.take().expect("stdout is piped");
    let rx = line_channel(stdout);

    let deadline = Instant::now() + RUN_DEADLINE;
    let mut lines = Vec::new();
    let mut hung = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}"));
                if value["step"] == "pause" {
                    on_pause();
                    let stdin = child.stdin.as_mut().expect("stdin is piped");
                    stdin
                        .write_all(b"go\n")
                        .and_then(|()| stdin.flush())
                        .expect("cannot wake the script");
                }
                lines.push(value);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                hung = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if hung {
        // Child::kill signals exactly this process id.
        let _ = child.kill();
    }
    let status = child.wait().expect("cannot wait for the script");
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    let run = Run {
        what,
        lines,
        stderr,
    };

    assert!(!hung, "{}: hung for {RUN_DEADLINE:?}\n{run}", run.what);
    assert!(
        status.success(),
        "{}: exited with {status}\n{run}",
        run.what
    );
    assert_eq!(
        run.lines.last().map(|l| &l["step"]),
        Some(&Value::from("done")),
        "{}: ended early\n{run}",
        run.what
    );
    for line in &run.lines {
        assert_ne!(
            line["error"]["kind"], "timeout",
            "{}: step `{}` hung\n{run}",
            run.what, line["step"]
        );
    }
    run
}

/// The admin API key the gateway is started with.
const API_KEY: &str = "e2e-mcp-clients-0123456789abcdef0123456789abcdef";

/// The tools an agent without scopes may call: the OpenAPI document's read operations.
const READ_TOOLS: [&str; 8] = [
    "getPost",
    "getTodo",
    "getUser",
    "listComments",
    "listPostComments",
    "listPosts",
    "listUserTodos",
    "listUsers",
];

/// The protocol revisions the gateway negotiates.
const REVISIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// json-server on a copy of the dataset, and the gateway in front of it with the shared OpenAPI
/// document as its catalog.
struct Stack {
    rt: tokio::runtime::Runtime,
    downstream: JsonServer,
    gateway: GatewayProcess,
    admin: String,
}

impl Stack {
    fn start() -> Stack {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let downstream = JsonServer::start();

        // The OpenAPI document's downstream is named after the file's stem.
        let catalog = tools::examples_dir().join("placeholder-openapi.json");
        let opts = GatewayOptions::new()
            .api_key(API_KEY)
            .arg("--catalog")
            .arg(catalog.to_string_lossy())
            .arg("--downstream-url")
            .arg(format!("placeholder-openapi={}", downstream.base_url()));
        let gateway = GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"));

        let answer = rt.block_on(
            gateway
                .client()
                .post("/auth/admin/token")
                .json(&json!({ "apiKey": API_KEY }).to_string())
                .send(),
        );
        assert_eq!(answer.status, 200, "admin token: {}", answer.text());
        let admin = answer.json()["token"].as_str().expect("a token").to_owned();
        Stack {
            rt,
            downstream,
            gateway,
            admin,
        }
    }

    fn url(&self) -> String {
        self.gateway.url("/mcp")
    }

    /// Creates an agent from `body` and returns its id and a fresh token.
    fn agent(&self, body: Value) -> (String, String) {
        let client = self.gateway.client();
        let created = self.rt.block_on(
            client
                .post("/management/agents")
                .bearer(&self.admin)
                .json(&body.to_string())
                .send(),
        );
        assert_eq!(created.status, 201, "create agent: {}", created.text());
        let id = created.json()["agentId"]
            .as_str()
            .expect("an agentId")
            .to_owned();

        let issued = self.rt.block_on(
            client
                .post(&format!("/management/agents/{id}/token"))
                .bearer(&self.admin)
                .send(),
        );
        assert_eq!(issued.status, 200, "issue token: {}", issued.text());
        let token = issued.json()["token"].as_str().expect("a token").to_owned();
        (id, token)
    }

    fn deactivate(&self, id: &str) {
        let answer = self.rt.block_on(
            self.gateway
                .client()
                .put(&format!("/management/agents/{id}"))
                .bearer(&self.admin)
                .json(r#"{ "isActive": false }"#)
                .send(),
        );
        assert_eq!(answer.status, 200, "deactivate: {}", answer.text());
    }

    /// The posts json-server holds now.
    fn posts(&self) -> Vec<Value> {
        let (status, posts) = self.downstream.get_json("/posts");
        assert_eq!(status, 200);
        posts.as_array().expect("an array of posts").clone()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // A failed assertion shows the processes' own account beside the client's.
        if std::thread::panicking() {
            let log = self.gateway.stderr();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- gateway stderr (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("--- json-server log ---\n{}", self.downstream.log());
        }
    }
}

/// The text of a tool result's only content item, parsed as JSON.
fn text_json(run: &Run, result: &Value) -> Value {
    let content = result["content"].as_array().expect("content is an array");
    assert_eq!(content.len(), 1, "{}: one content item\n{run}", run.what);
    assert_eq!(content[0]["type"], "text", "{}\n{run}", run.what);
    let text = content[0]["text"].as_str().expect("text is a string");
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{}: the text is not JSON ({e}): {text}", run.what))
}

fn assert_initialized(run: &Run) {
    let init = run.ok("initialize");
    let version = init["protocolVersion"].as_str().unwrap_or_default();
    assert!(
        REVISIONS.contains(&version),
        "{}: revision {version}\n{run}",
        run.what
    );
    assert!(
        init["serverInfo"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{}: serverInfo.name\n{run}",
        run.what
    );
    assert!(
        init["capabilities"]["tools"].is_object(),
        "{}\n{run}",
        run.what
    );
}

fn tool_names(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = result["tools"]
        .as_array()
        .expect("tools is an array")
        .iter()
        .map(|t| t["name"].as_str().expect("a tool name").to_owned())
        .collect();
    names.sort();
    names
}

fn assert_not_error(run: &Run, result: &Value) {
    assert_ne!(result["isError"], true, "{}: isError\n{run}", run.what);
}

/// A refusal as the caller sees it: a JSON-RPC error with `code` whose message has `words`.
fn assert_refused(run: &Run, step: &str, code: i64, words: &[&str]) {
    let error = run.err(step);
    assert_eq!(
        error["kind"], "jsonrpc",
        "{}: `{step}` kind\n{run}",
        run.what
    );
    assert_eq!(error["code"], code, "{}: `{step}` code\n{run}", run.what);
    let message = error["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(
            message.contains(word),
            "{}: `{step}` message {message:?}\n{run}",
            run.what
        );
    }
}

/// An authentication failure as the caller sees it: 1.x raises the HTTP 401 (the transport
/// drops the body of every non-2xx answer), 2.x surfaces the JSON-RPC error -32001.
fn assert_unauthorized(sdk: Sdk, run: &Run, line: &Value) {
    let error = &line["error"];
    assert_eq!(line["ok"], false, "{}: not refused\n{run}", run.what);
    match sdk {
        Sdk::V1 => {
            assert_eq!(error["kind"], "http", "{}\n{run}", run.what);
            assert_eq!(error["status"], 401, "{}\n{run}", run.what);
        }
        Sdk::V2 => {
            assert_eq!(error["kind"], "jsonrpc", "{}\n{run}", run.what);
            assert_eq!(error["code"], -32001, "{}\n{run}", run.what);
        }
    }
}

/// Every scenario of issue 4 with one SDK release line, through the real gateway.
fn every_step_passes(sdk: Sdk) {
    let stack = Stack::start();
    let url = stack.url();
    let data = dataset();
    let run = |token: &str, scenario: &[&str]| run_script(sdk, &url, token, scenario, false, || {});

    let (_, reader) = stack.agent(json!({ "label": "e2e reader" }));
    let (_, writer) = stack.agent(json!({ "label": "e2e writer", "scopes": ["posts:write"] }));
    let (_, limited) = stack.agent(json!({
        "label": "e2e limited",
        "allowedTools": ["getPost", "listPosts"],
    }));
    let (doomed_id, doomed) = stack.agent(json!({ "label": "e2e doomed" }));

    // initialize + list tools: a reader sees the read operations only (the writes need scopes).
    let listed = run(&reader, &["list"]);
    assert_initialized(&listed);
    let tools = listed.ok("list_tools");
    assert_eq!(tool_names(tools), READ_TOOLS, "{}\n{listed}", listed.what);
    let get_post = tools["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "getPost"))
        .expect("getPost is listed");
    assert!(
        get_post["inputSchema"]["properties"]["id"].is_object(),
        "{get_post}"
    );
    assert!(
        get_post["inputSchema"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("id"))),
        "{get_post}"
    );

    // A writer also sees the writes its scope opens (deletePost needs posts:delete).
    let listed = run(&writer, &["list"]);
    let mut expected: Vec<&str> = READ_TOOLS.to_vec();
    expected.extend(["createPost", "updatePost"]);
    expected.sort_unstable();
    assert_eq!(tool_names(listed.ok("list_tools")), expected, "{listed}");

    // Read a post: the downstream's answer, as the dataset has it.
    let read = run(&reader, &["get_post"]);
    assert_initialized(&read);
    let result = read.ok("call_tool");
    assert_not_error(&read, result);
    assert_eq!(text_json(&read, result), data["posts"][0], "{read}");
    if !result["structuredContent"].is_null() {
        assert_eq!(result["structuredContent"], data["posts"][0], "{read}");
    }

    // Read a user: user 3 arrives, with the card and the SSN in its notes redacted.
    let read = run(&reader, &["get_user"]);
    let result = read.ok("call_tool");
    assert_not_error(&read, result);
    let user = text_json(&read, result);
    assert_eq!(user["id"], 3, "{read}");
    assert_eq!(user["name"], data["users"][2]["name"], "{read}");
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let notes = user["notes"].as_str().unwrap_or_default();
    assert!(notes.contains("[CARD REDACTED]"), "{notes}");
    assert!(notes.contains("[SSN REDACTED]"), "{notes}");
    assert_eq!(user["email"], "[EMAIL REDACTED]", "{read}");
    for secret in [
        "4111 1111 1111 1111",
        "123-45-6789",
        "cleo.lindqvist@example.com",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} reached the client: {text}"
        );
        assert!(
            !result["structuredContent"].to_string().contains(secret),
            "{secret} reached the client's structuredContent: {read}"
        );
    }

    // A read-only agent is refused the write, and json-server never sees it.
    let refused = run(&reader, &["write_refused"]);
    assert_refused(
        &refused,
        "call_tool",
        -32003,
        &["createPost", "posts:write"],
    );
    assert_eq!(
        stack.posts().len(),
        100,
        "a refused write reached json-server"
    );
    assert!(
        !stack.downstream.log().contains("POST /posts"),
        "{}",
        stack.downstream.log()
    );

    // A write-enabled agent creates a post, and json-server holds it afterwards.
    let created = run(&writer, &["create_post"]);
    let result = created.ok("call_tool");
    assert_not_error(&created, result);
    let post = text_json(&created, result);
    assert_eq!(post["title"], "written through ithil", "{created}");
    assert_eq!(post["userId"], 2, "{created}");
    let id = post["id"].as_u64().expect("json-server assigned an id");
    let (status, stored) = stack.downstream.get_json(&format!("/posts/{id}"));
    assert_eq!(status, 200, "the created post is not in json-server");
    assert_eq!(stored, post);
    assert_eq!(stack.posts().len(), 101);
    let on_disk = read_json(&stack.downstream.db_path());
    assert!(
        on_disk["posts"]
            .as_array()
            .is_some_and(|p| p.contains(&post))
    );

    // A tool off the allowlist is neither listed nor callable.
    let limited_run = run(&limited, &["off_allowlist"]);
    assert_eq!(
        tool_names(limited_run.ok("list_tools")),
        ["getPost", "listPosts"],
        "{limited_run}"
    );
    assert_refused(&limited_run, "call_tool", -32003, &["getUser", "allowlist"]);

    // A deactivated agent is refused at once, on its open session and on a new one.
    let deactivated = run_script(sdk, &url, &doomed, &["deactivated"], false, || {
        stack.deactivate(&doomed_id);
    });
    let before = deactivated.ok("call_before");
    assert_eq!(text_json(&deactivated, before), data["posts"][0]);
    assert_unauthorized(sdk, &deactivated, deactivated.step("call_after"));
    let inits = deactivated.steps("initialize");
    assert_eq!(inits.len(), 2, "{deactivated}");
    assert_eq!(inits[0]["ok"], true, "{deactivated}");
    assert_unauthorized(sdk, &deactivated, inits[1]);

    // The same through event-stream answers, parsed by the SDK's own SSE reader.
    let read = run_script(sdk, &url, &reader, &["get_post"], true, || {});
    assert_initialized(&read);
    assert_eq!(
        text_json(&read, read.ok("call_tool")),
        data["posts"][0],
        "{read}"
    );
    let refused = run_script(sdk, &url, &reader, &["write_refused"], true, || {});
    assert_refused(&refused, "call_tool", -32003, &["createPost"]);
}

/// Issue 4 asks that a caller sees a refusal's or a failure's message at once. With the default
/// error status (HTTP 200 plus the JSON-RPC error; see docs/errors.md for why), both SDK lines
/// get the code and the message of a budget refusal (here a result withheld because it does
/// not fit in the one token left) and of a failed downstream, in JSON and in event-stream
/// answers.
#[test]
fn budget_and_downstream_errors_reach_both_sdks_with_their_message() {
    let mut stack = Stack::start();
    let url = stack.url();

    let (_, frugal) = stack.agent(json!({ "label": "e2e frugal", "dailyTokenBudget": 1 }));
    for (sdk, sse) in sdk_and_format() {
        let run = run_script(sdk, &url, &frugal, &["get_post"], sse, || {});
        assert_refused(
            &run,
            "call_tool",
            -32029,
            &[
                "exceeds the remaining daily token budget (1 token).",
                "Limit resets at midnight UTC.",
            ],
        );
    }

    let (_, reader) = stack.agent(json!({ "label": "e2e reader" }));
    stack.downstream.stop();
    for (sdk, sse) in sdk_and_format() {
        let run = run_script(sdk, &url, &reader, &["get_post"], sse, || {});
        assert_refused(&run, "call_tool", -32002, &["Downstream API failed"]);
    }
}

/// Every SDK line with JSON answers and with event-stream answers.
fn sdk_and_format() -> impl Iterator<Item = (Sdk, bool)> {
    Sdk::ALL
        .into_iter()
        .flat_map(|sdk| [(sdk, false), (sdk, true)])
}

#[test]
fn python_sdk_1_passes_every_step_through_the_gateway() {
    every_step_passes(Sdk::V1);
}

#[test]
fn python_sdk_2_passes_every_step_through_the_gateway() {
    every_step_passes(Sdk::V2);
}

fn dataset() -> Value {
    let path = tools::examples_dir().join("placeholder-db.json");
    read_json(&path)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn json_server_serves_a_private_copy_of_the_dataset() {
    let server = JsonServer::start();

    let (status, post) = server.get_json("/posts/1");
    assert_eq!(status, 200);
    assert_eq!(post, dataset()["posts"][0]);

    let served = server.db_path();
    assert_ne!(served, tools::examples_dir().join("placeholder-db.json"));
    assert_eq!(read_json(&served)["posts"], dataset()["posts"]);
}

#[test]
fn each_sdk_venv_holds_its_pinned_mcp_release() {
    for sdk in Sdk::ALL {
        let python = tools::python_sdk(sdk);
        let out = Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('mcp'))",
            ])
            .output()
            .expect("the venv python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), sdk.version());
    }
}
