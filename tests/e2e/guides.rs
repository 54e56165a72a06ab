//! The guides in docs/ run as written: their shell blocks against the real binary.
//!
//! A test reads a guide, starts the servers its `sh server` blocks describe (the gateway with the
//! very arguments the guide gives, json-server on the dataset it names), and runs every other
//! `sh` block, command by command, in one `bash` session, as a reader pasting them into one
//! terminal would: shell variables set by one block are there for the next. Each command must
//! exit 0, and the test then checks what the key commands printed (an agent created, a token
//! issued, a tool result carrying the post).
//!
//! # Conventions for guide authors
//!
//! A fenced block's info string is its language, then optional words (Markdown renderers use
//! the first word only):
//!
//! - ```` ```sh ````: run, in order, in the guide's shell session.
//! - ```` ```sh server ````: starts a long-running server. Not run; the test starts its own
//!   gateway from the arguments after `serve` on the line that runs the binary (paths under
//!   `examples/` resolve against the repository), and json-server, which must be the pinned
//!   [`tools::JSON_SERVER_VERSION`] on port 5200.
//! - ```` ```sh skip ````: shown, not run (builds, installs, production-only commands).
//! - ```` ```json NAME.json ````: written into a temporary directory; a gateway argument
//!   `NAME.json` (as in `--config NAME.json`) names that file.
//! - ```` ```python NAME.py ````: written into the session's working directory as `NAME.py`
//!   before the blocks after it run; the session's `python` is the MCP Python SDK 2.x
//!   virtual environment's.
//! - ```` ```python sdk-1 ```` and ```` ```python sdk-2 ```` (connecting-clients.md): run on
//!   their own with that SDK line and `ITHIL_TOKEN` in the environment.
//! - ```` ```sh mcp-remote ```` and ```` ```json claude-desktop ```` (connecting-clients.md): the
//!   mcp-remote command line and the Claude Desktop configuration, run as a stdio bridge.
//!
//! Before a command runs, the test rewrites what only the reader's machine can know:
//!
//! - `localhost:5100` and `127.0.0.1:5100` become the test gateway's address, `localhost:5200`
//!   and `127.0.0.1:5200` the test json-server's;
//! - the example agent id `agt_3f9a1c2b`, and `AGENT_ID` right after a `/` (a placeholder in a
//!   path), become the id of the first agent a command of the guide printed. A guide does better
//!   to capture the id from the create call's answer (`AGENT_ID=$(curl ... | sed -n '...p')`),
//!   which works as pasted and needs no rewriting.
//!
//! The session starts with `set -uo pipefail`, so an unset variable or a failing stage of a
//! pipe fails the command; `ITHIL_API_KEY` holds the API key the test gateway was started with.
//! Set `ITHIL_GUIDE_TRANSCRIPT=1` to see every command and its output (with `--nocapture`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use ithil_tests::gateway::{GatewayOptions, GatewayProcess, line_channel};
use ithil_tests::tools::{self, JsonServer, Sdk};

/// How long one command of a guide may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the mcp-remote bridge may take for one answer (its first start included).
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(90);

/// The agent id the guides use as an example; it stands for the first agent created.
const EXAMPLE_AGENT_ID: &str = "agt_3f9a1c2b";

/// The API key of every test gateway here; the session has it as `ITHIL_API_KEY`.
const API_KEY: &str = "e2e-guides-api-key-0123456789abcdef0123456789";

/// The title of post 1 of `examples/placeholder-db.json`, which `getPost {"id": 1}` returns.
const POST_1_TITLE: &str = "occaecat cupidatat est est voluptate amet fugiat velit";

/// The line that ends the output of every command in the session, followed by its status.
const DONE: &str = "@@ithil-guide-command-done";

// ----- Markdown ---------------------------------------------------------------------------

/// One fenced code block of a Markdown file.
#[derive(Debug, Clone)]
struct Block {
    /// The info string's first word (`sh`, `json`, `python`).
    lang: String,
    /// The info string's other words (`server`, `skip`, a file name, `sdk-2`).
    attrs: Vec<String>,
    /// The text between the fences, ending with a newline.
    text: String,
    /// The line of the opening fence, from 1.
    line: usize,
}

impl Block {
    fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a == attr)
    }
}

/// The fenced code blocks of `markdown`, in order.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Block)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        match &mut open {
            None if ticks >= 3 => {
                let mut words = trimmed[ticks..].split_whitespace().map(str::to_owned);
                let block = Block {
                    lang: words.next().unwrap_or_default(),
                    attrs: words.collect(),
                    text: String::new(),
                    line: index + 1,
                };
                open = Some((ticks, block));
            }
            None => {}
            Some((fence, _)) if ticks >= *fence && trimmed[ticks..].trim().is_empty() => {
                if let Some((_, block)) = open.take() {
                    out.push(block);
                }
            }
            Some((_, block)) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    out
}

/// Splits a shell script into its top-level commands: a newline ends a command unless it is
/// escaped, inside quotes, or inside parentheses or braces. Blank and comment-only commands are
/// dropped. Heredocs and `case` patterns are not understood (the guides use neither).
fn commands(script: &str) -> Vec<String> {
    fn keep(command: &str, out: &mut Vec<String>) {
        let meaningful = command
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if meaningful {
            out.push(command.trim_end().to_owned());
        }
    }

    let mut out = Vec::new();
    let mut current = String::new();
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut depth = 0i32;
    let mut word_start = true;
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        if comment {
            if c != '\n' {
                current.push(c);
                continue;
            }
            comment = false;
        }
        match c {
            '\\' if !single => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                word_start = false;
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && word_start => comment = true,
            '(' | '{' if !single && !double => depth += 1,
            ')' | '}' if !single && !double => depth -= 1,
            '\n' if !single && !double && depth <= 0 => {
                keep(&current, &mut out);
                current.clear();
                word_start = true;
                continue;
            }
            _ => {}
        }
        current.push(c);
        word_start = c.is_whitespace() || c == ';' || c == '(';
    }
    keep(&current, &mut out);
    out
}

fn read_doc(relative: &str) -> String {
    let path = tools::workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ----- The servers a guide starts ---------------------------------------------------------

/// The arguments after `serve` on the line of `text` that starts the gateway, with paths under
/// `examples/` made absolute.
fn gateway_args(text: &str) -> Option<Vec<String>> {
    let root = tools::workspace_root();
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let runs_ithil = line.contains("ithil ") || line.contains("-p ithil");
        let serve = words.iter().position(|w| *w == "serve")?;
        runs_ithil.then(|| {
            words[serve + 1..]
                .iter()
                .map(|w| {
                    if w.starts_with("examples/") {
                        root.join(w).display().to_string()
                    } else {
                        (*w).to_owned()
                    }
                })
                .collect()
        })
    })
}

/// Checks the json-server line of a server block: the pinned version, on port 5200.
fn check_json_server_line(text: &str, guide: &str) -> bool {
    let Some(line) = text
        .lines()
        .find(|l| l.contains("json-server") && !l.trim_start().starts_with('#'))
    else {
        return false;
    };
    let pinned = format!("json-server@{}", tools::JSON_SERVER_VERSION);
    assert!(
        line.contains(&pinned),
        "{guide}: the json-server command must run the pinned {pinned}: {line}"
    );
    assert!(
        line.contains("--port 5200"),
        "{guide}: json-server must listen on 5200, as the catalog expects: {line}"
    );
    assert!(
        text.contains("examples/placeholder-db.json"),
        "{guide}: json-server must serve a copy of examples/placeholder-db.json"
    );
    true
}

/// The servers of a guide: json-server on the example dataset and a gateway in front of it.
struct Servers {
    gateway: GatewayProcess,
    downstream: JsonServer,
}

impl Servers {
    /// Starts json-server and a gateway with `args` (what follows `serve`) plus the test's own
    /// listen address, data directory, downstream URL and API key.
    fn start(args: &[String]) -> Servers {
        let dataset = tools::workspace_root().join("examples/placeholder-db.json");
        let downstream = JsonServer::start_with(&dataset);
        let mut opts = GatewayOptions::new().api_key(API_KEY);
        for arg in args {
            opts = opts.arg(arg.clone());
        }
        let opts = opts
            .arg("--downstream-url")
            .arg(format!("placeholder={}", downstream.base_url()));
        let gateway = GatewayProcess::start(opts)
            .unwrap_or_else(|e| panic!("the gateway did not start: {e}"));
        Servers {
            gateway,
            downstream,
        }
    }

    /// The gateway of the getting-started guide.
    fn development() -> Servers {
        let catalog = tools::workspace_root().join("examples/placeholder.json");
        Servers::start(&[
            "--dev".to_owned(),
            "--catalog".to_owned(),
            catalog.display().to_string(),
        ])
    }

    /// The JSON answer of `GET path` with `bearer` as its token, which must be a 200.
    fn get_json(&self, path: &str, bearer: Option<&str>) -> Value {
        let client = self.gateway.client();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut request = client.get(path);
        if let Some(token) = bearer {
            request = request.bearer(token);
        }
        let answer = runtime.block_on(request.send());
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.text());
        answer.json()
    }

    /// The `token` of a `/dev/...` token answer.
    fn dev_token_from(&self, path: &str) -> String {
        self.get_json(path, None)["token"]
            .as_str()
            .expect("the answer has a token")
            .to_owned()
    }

    /// A token of the development agent, from `GET /dev/token`.
    fn dev_token(&self) -> String {
        self.dev_token_from("/dev/token")
    }

    /// The management API's view of an agent, read with a development admin token.
    fn agent(&self, agent_id: &str) -> Value {
        let admin = self.dev_token_from("/dev/admin-token");
        self.get_json(&format!("/management/agents/{agent_id}"), Some(&admin))
    }

    /// `text` with the documented ports replaced by the test servers' addresses.
    fn localize(&self, text: &str) -> String {
        let gateway = self.gateway.addr().to_string();
        let downstream = format!("127.0.0.1:{}", self.downstream.port());
        text.replace("localhost:5100", &gateway)
            .replace("127.0.0.1:5100", &gateway)
            .replace("localhost:5200", &downstream)
            .replace("127.0.0.1:5200", &downstream)
    }

    /// The last lines of the gateway's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.gateway.stderr();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

// ----- The shell session ------------------------------------------------------------------

/// One command a guide ran, and what it printed (stdout and stderr together).
#[derive(Debug)]
struct Step {
    block_line: usize,
    command: String,
    output: String,
    status: i32,
}

/// Everything a guide's session ran.
#[derive(Debug, Default)]
struct Transcript {
    guide: String,
    steps: Vec<Step>,
}

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- transcript of {} ---", self.guide)?;
        for step in &self.steps {
            writeln!(
                f,
                "$ {}    (block at line {})",
                step.command, step.block_line
            )?;
            writeln!(f, "{}", step.output)?;
            writeln!(f, "[exit {}]", step.status)?;
        }
        Ok(())
    }
}

impl Transcript {
    /// The first command whose text contains every one of `parts`.
    fn step(&self, parts: &[&str]) -> &Step {
        self.steps
            .iter()
            .find(|s| parts.iter().all(|p| s.command.contains(p)))
            .unwrap_or_else(|| panic!("{}: no command contains {parts:?}\n{self}", self.guide))
    }

    /// The first command after `anchor` whose text contains every one of `parts`.
    fn step_after(&self, anchor: &Step, parts: &[&str]) -> &Step {
        let from = self
            .steps
            .iter()
            .position(|s| std::ptr::eq(s, anchor))
            .expect("the anchor is a step of this transcript");
        self.steps[from + 1..]
            .iter()
            .find(|s| parts.iter().all(|p| s.command.contains(p)))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no command after `{}` contains {parts:?}\n{self}",
                    self.guide, anchor.command
                )
            })
    }

    /// Asserts that the first command containing `parts` printed `expected`.
    fn assert_printed(&self, parts: &[&str], expected: &str) {
        let step = self.step(parts);
        assert!(
            step.output.contains(expected),
            "{}: `{}` did not print {expected:?}\n{self}",
            self.guide,
            step.command
        );
    }

    /// Asserts that every command starting with `prefix` printed nothing.
    fn assert_silent(&self, prefix: &str) {
        let checks: Vec<&Step> = self
            .steps
            .iter()
            .filter(|s| s.command.starts_with(prefix))
            .collect();
        assert!(
            !checks.is_empty(),
            "{}: no command starts with {prefix:?}\n{self}",
            self.guide
        );
        for step in checks {
            assert!(
                step.output.is_empty(),
                "{}: `{}` printed {:?}\n{self}",
                self.guide,
                step.command,
                step.output
            );
        }
    }

    /// Asserts that no command printed `text`.
    fn assert_never_printed(&self, text: &str) {
        for step in &self.steps {
            assert!(
                !step.output.contains(text),
                "{}: `{}` printed {text:?}\n{self}",
                self.guide,
                step.command
            );
        }
    }
}

/// A `bash` process fed one command at a time, as a reader's terminal would be.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Shell {
    /// Starts `bash` in a fresh temporary directory with `PATH` (after `path_first`, if any),
    /// a private `HOME`, and `env`.
    fn start(path_first: Option<&Path>, env: &[(&str, &str)]) -> Shell {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let inherited = std::env::var("PATH").unwrap_or_default();
        let path = match path_first {
            Some(first) => format!("{}:{inherited}", first.display()),
            None => inherited,
        };
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.path())
            .env("LC_ALL", "C")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash runs");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = line_channel(stdout);
        let mut shell = Shell {
            child,
            stdin,
            lines,
            dir,
        };
        let (status, output) = shell
            .run("exec 2>&1; set -uo pipefail")
            .unwrap_or_else(|e| panic!("the shell did not start: {e}"));
        assert_eq!(status, 0, "the shell did not start: {output}");
        shell
    }

    /// Runs one command and returns its exit status and output, or why it did not finish.
    fn run(&mut self, command: &str) -> Result<(i32, String), String> {
        let script = format!("{command}\nprintf '\\n{DONE} %s\\n' \"$?\"\n");
        self.stdin
            .write_all(script.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("cannot write to bash: {e}"))?;

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut lines: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(status) = line.strip_prefix(DONE) {
                        // The marker's own leading newline ends the output's last line, or adds
                        // an empty one when the output ended with a newline already.
                        if lines.last().is_some_and(String::is_empty) {
                            lines.pop();
                        }
                        let status = status.trim().parse().unwrap_or(-1);
                        return Ok((status, lines.join("\n")));
                    }
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no end within {COMMAND_TIMEOUT:?}; output so far:\n{}",
                        lines.join("\n")
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "bash exited; its last output:\n{}",
                        lines.join("\n")
                    ));
                }
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // Child::kill signals exactly this process id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- Running a guide --------------------------------------------------------------------

/// Which `sh` blocks of a file start servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marking {
    /// The guides' info-string words (`sh server`, `sh skip`).
    InfoString,
    /// The README, whose blocks carry no words: a block that runs `cargo` or json-server starts
    /// the servers (or the test suite), every other `sh` block runs.
    ByContent,
}

/// What a guide's servers and session did.
struct GuideRun {
    servers: Servers,
    transcript: Transcript,
    /// Holds the configuration files the gateway was started with.
    _config_dir: tempfile::TempDir,
}

/// Runs the guide at `relative` (from the repository root) and returns its transcript; panics
/// with the transcript and the gateway's log when a command fails.
fn run_guide(relative: &str, marking: Marking) -> GuideRun {
    let markdown = read_doc(relative);
    let all = blocks(&markdown);
    let is_server = |b: &Block| match marking {
        Marking::InfoString => b.has("server"),
        Marking::ByContent => b.text.contains("cargo ") || b.text.contains("json-server"),
    };
    let runs = |b: &Block| b.lang == "sh" && b.attrs.is_empty() && !is_server(b);

    // The servers, from the guide's own commands.
    let servers_text: String = all
        .iter()
        .filter(|b| b.lang == "sh" && is_server(b))
        .map(|b| b.text.as_str())
        .collect();
    let args = gateway_args(&servers_text)
        .unwrap_or_else(|| panic!("{relative}: no server block starts the gateway"));

    // Configuration files the guide shows (```json NAME.json), where its commands name them.
    let config_dir = tempfile::tempdir().expect("a temporary directory");
    let mut files = Vec::new();
    for block in all.iter().filter(|b| b.lang == "json") {
        if let Some(name) = block.attrs.iter().find(|a| a.ends_with(".json")) {
            let path = config_dir.path().join(name);
            std::fs::write(&path, &block.text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            files.push((name.clone(), path));
        }
    }
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| match files.iter().find(|(name, _)| *name == arg) {
            Some((_, path)) => path.display().to_string(),
            None => arg,
        })
        .collect();
    assert!(
        check_json_server_line(&servers_text, relative),
        "{relative}: no server block starts json-server"
    );
    let servers = Servers::start(&args);

    // A python block needs the SDK's virtual environment first on PATH.
    let writes_python = all
        .iter()
        .any(|b| b.lang == "python" && !b.attrs.is_empty());
    let venv_bin = writes_python.then(|| {
        tools::python_sdk(Sdk::V2)
            .parent()
            .expect("the interpreter sits in the venv's bin")
            .to_path_buf()
    });
    let mut shell = Shell::start(venv_bin.as_deref(), &[("ITHIL_API_KEY", API_KEY)]);

    let mut transcript = Transcript {
        guide: relative.to_owned(),
        steps: Vec::new(),
    };
    let mut agent_id: Option<String> = None;
    for block in &all {
        if block.lang == "python" {
            if let Some(name) = block.attrs.iter().find(|a| a.ends_with(".py")) {
                let path = shell.dir.path().join(name);
                std::fs::write(&path, servers.localize(&block.text))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
            continue;
        }
        if !runs(block) {
            continue;
        }
        for command in commands(&block.text) {
            let mut command = servers.localize(&command);
            if command.contains(EXAMPLE_AGENT_ID) || command.contains("/AGENT_ID") {
                let id = agent_id.as_deref().unwrap_or_else(|| {
                    panic!(
                        "{relative}: `{command}` uses the example agent id before any command \
                         printed an agent\n{transcript}"
                    )
                });
                command = command
                    .replace(EXAMPLE_AGENT_ID, id)
                    .replace("/AGENT_ID", &format!("/{id}"));
            }
            let (status, output) = shell.run(&command).unwrap_or_else(|why| {
                panic!(
                    "{relative}: `{command}` (block at line {}) did not finish: {why}\n\
                     {transcript}\n--- gateway log ---\n{}",
                    block.line,
                    servers.log_tail()
                )
            });
            if agent_id.is_none() {
                agent_id = printed_agent_id(&output);
            }
            transcript.steps.push(Step {
                block_line: block.line,
                command,
                output,
                status,
            });
            if status != 0 {
                panic!(
                    "{relative}: a command exited with {status}\n{transcript}\n--- gateway log \
                     ---\n{}",
                    servers.log_tail()
                );
            }
        }
    }
    assert!(
        !transcript.steps.is_empty(),
        "{relative}: no sh block was run"
    );
    if std::env::var_os("ITHIL_GUIDE_TRANSCRIPT").is_some() {
        eprintln!("{transcript}");
    }
    GuideRun {
        servers,
        transcript,
        _config_dir: config_dir,
    }
}

/// The id of the agent an output shows, when it shows a whole agent (a create answer or a
/// listing), as `"agentId":"agt_xxxxxxxx"`.
fn printed_agent_id(output: &str) -> Option<String> {
    if !output.contains("\"createdAt\"") {
        return None;
    }
    let start = output.find("\"agentId\":\"agt_")? + "\"agentId\":\"".len();
    let id = output.get(start..start + 12)?;
    id[4..]
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| id.to_owned())
}

// ----- The guides -------------------------------------------------------------------------

#[test]
fn getting_started_runs_as_written() {
    let run = run_guide("docs/getting-started.md", Marking::InfoString);
    let t = &run.transcript;

    t.assert_printed(&["/posts/1"], POST_1_TITLE);
    t.assert_printed(&["/health/ready"], "\"status\":\"ready\"");
    // The id is taken from the create call's answer, and the agent read back is that one.
    let agent_id = &t.step(&["echo \"$AGENT_ID\""]).output;
    assert!(
        agent_id.len() == 12
            && agent_id.starts_with("agt_")
            && agent_id[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "the create call's agentId is kept\n{t}"
    );
    let read_back = t.step(&["/management/agents/$AGENT_ID -H"]);
    assert!(
        read_back
            .output
            .contains(&format!("\"agentId\":\"{agent_id}\""))
            && read_back.output.contains("\"label\":\"My Claude Agent\"")
            && read_back.output.contains("\"dailyTokenBudget\":50000"),
        "the agent read back is the one created\n{t}"
    );
    t.assert_printed(&["echo \"$TOKEN\""], "eyJ");
    // Every value was extracted: the checks after the extractions stayed silent.
    t.assert_silent("test -n ");
    let session = t.step(&["echo \"$SESSION\""]);
    assert!(
        session.output.len() == 32 && session.output.chars().all(|c| c.is_ascii_hexdigit()),
        "the session id is 32 hex digits\n{t}"
    );
    t.assert_printed(&["notifications/initialized"], "202");
    t.assert_printed(&["\"name\":\"getPost\""], POST_1_TITLE);
    t.assert_printed(&["\"name\":\"getUser\""], "[CARD REDACTED]");
    t.assert_printed(&["\"name\":\"getUser\""], "[SSN REDACTED]");
    t.assert_printed(&["\"name\":\"getUser\""], "[EMAIL REDACTED]");
    t.assert_never_printed("4111 1111 1111 1111");

    // The Python SDK, as the guide runs it: eight tools and post 1.
    let python = t.step(&["python first_call.py"]);
    assert!(
        python.output.contains(POST_1_TITLE),
        "first_call.py did not print post 1\n{t}"
    );
    assert!(
        python.output.contains("getPost") && !python.output.contains("createPost"),
        "first_call.py lists the agent's tools, without createPost\n{t}"
    );

    // The calls were made as the agent the guide created, not the development agent.
    let agents = run.servers.gateway.stdout_lines();
    let calls: Vec<Value> = agents
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "tools/call")
        .collect();
    assert!(calls.len() >= 3, "three tool calls are audited: {agents:?}");
    assert!(
        calls
            .iter()
            .all(|r| r["agentId"] == calls[0]["agentId"] && r["outcome"] == "ok"),
        "every call is the guide's agent's, and ok: {calls:?}"
    );
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let run = run_guide("README.md", Marking::ByContent);
    let t = &run.transcript;

    // "Your first tool call": user 3 through the gateway, redacted.
    t.assert_printed(&["\"name\":\"getUser\""], "[CARD REDACTED]");
    t.assert_printed(&["\"name\":\"getUser\""], "[SSN REDACTED]");
    t.assert_never_printed("4111 1111 1111 1111");
    t.assert_never_printed("123-45-6789");

    // "Agents, admin tokens and budgets": an agent, its id taken from the create call, and a
    // token issued for that very agent.
    t.assert_printed(&["/management/agents/$AGENT_ID/token"], "\"token\":\"eyJ");
    let records: Vec<Value> = run
        .servers
        .gateway
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let created = records
        .iter()
        .find(|r| r["action"] == "agent.create")
        .and_then(|r| r["arguments"]["agentId"].as_str())
        .unwrap_or_else(|| panic!("the README creates an agent: {records:?}"));
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "token.issue" && r["arguments"]["agentId"] == created),
        "the token is issued for the agent the README created: {records:?}"
    );
    let agent = run.servers.agent(created);
    assert_eq!(agent["label"], "My Claude Agent", "{agent}");
    assert_eq!(agent["dailyTokenBudget"], 50000, "{agent}");
}

#[test]
fn agent_management_runs_as_written() {
    let run = run_guide("docs/agent-management.md", Marking::InfoString);
    let t = &run.transcript;

    // Admin tokens, both ways.
    t.assert_printed(&["/auth/admin/token"], "\"token\":\"eyJ");
    t.assert_printed(&["curl -s http://", "/dev/admin-token"], "\"expiresAt\"");

    // The spec page's commands.
    t.assert_printed(&["\"label\": \"My Claude Agent\""], "\"agentId\":\"agt_");
    t.assert_printed(&["\"expiresInDays\": 30"], "\"token\":\"eyJ");
    t.assert_printed(
        &["curl http://", "/management/agents \\"],
        "\"label\":\"My Claude Agent\"",
    );
    t.assert_printed(
        &["curl http://", "/management/agents/$AGENT_ID \\"],
        "\"isActive\":true",
    );
    t.assert_printed(
        &["\"dailyTokenBudget\": 100000"],
        "\"dailyTokenBudget\":100000",
    );
    t.assert_printed(&["curl http://", "/budget \\"], "\"tokensUsedToday\":0");
    t.step(&["-X DELETE", "/budget"]);

    // Budgets beyond the spec page.
    t.assert_printed(&["-X PUT", "/budget"], "\"dailyTokenBudget\":20000");
    t.assert_printed(&["/budget/history?days=7"], "\"tokensUsed\":0");

    // Allowlists: the reader sees and may call its two tools only.
    let listed = &t.step(&["as_agent \"$READER_TOKEN\"", "tools/list"]).output;
    assert!(
        listed.contains("\"getPost\"")
            && listed.contains("\"listPosts\"")
            && !listed.contains("getUser"),
        "the reader's tools/list holds getPost and listPosts only\n{t}"
    );
    t.assert_printed(
        &["as_agent \"$READER_TOKEN\"", "getUser"],
        "Tool getUser is not on this agent's allowlist.",
    );

    // Scopes: the writer may create a post, the first agent may not.
    t.assert_printed(
        &["as_agent \"$WRITER_TOKEN\"", "createPost"],
        "\"isError\":false",
    );
    t.assert_printed(
        &["as_agent \"$WRITER_TOKEN\"", "createPost"],
        "Written through Ithil",
    );
    t.assert_printed(
        &["as_agent \"$TOKEN\"", "createPost"],
        "requires scopes this agent's token does not carry: posts:write.",
    );

    // Deactivation: refused at once, and no new token.
    t.assert_printed(&["\"isActive\": false"], "\"isActive\":false");
    t.assert_printed(&["HTTP %{http_code}"], "HTTP 401");
    t.assert_printed(&["HTTP %{http_code}"], "-32001");
    let deactivated = t.step(&["\"isActive\": false"]);
    let reissue = t.step_after(deactivated, &["-X POST", "$AGENT_ID/token"]);
    assert!(
        reissue.output.contains("agent_inactive"),
        "an inactive agent gets no token\n{t}"
    );

    // Deletion: gone for good, its record of it stays.
    let deleted = t.step(&["-X DELETE", "/management/agents/$AGENT_ID \\"]);
    let read_back = t.step_after(deleted, &["/management/agents/$AGENT_ID"]);
    assert!(
        read_back.output.contains("agent_not_found"),
        "a deleted agent is not found\n{t}"
    );
    let records: Vec<Value> = run
        .servers
        .gateway
        .stdout_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for action in [
        "agent.create",
        "token.issue",
        "agent.update",
        "budget.reset",
        "budget.set",
        "agent.delete",
    ] {
        assert!(
            records.iter().any(|r| r["action"] == action),
            "the audit trail records {action}: {records:?}"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "tools/call" && r["outcome"] == "denied_allowlist"),
        "the allowlist refusal is audited"
    );
}

#[test]
fn the_budget_example_runs_out_as_the_guide_says() {
    let run = run_guide("docs/budgets.md", Marking::InfoString);
    let t = &run.transcript;

    let first = t.step(&["\"id\":2,\"method\":\"tools/call\""]);
    assert!(
        first.output.contains(POST_1_TITLE),
        "the first call fits\n{t}"
    );
    let status = t.step_after(first, &["/budget -H"]);
    assert!(
        status.output.contains("\"tokensUsedToday\":98")
            && status.output.contains("\"remaining\":52"),
        "post 1 costs 98 tokens, as the guide says\n{t}"
    );

    let second = t.step(&["\"id\":3,\"method\":\"tools/call\""]);
    assert!(
        second.output.contains("-32029")
            && second.output.contains(
                "The result of this call (98 tokens) exceeds the remaining daily token budget \
                 (52 tokens). Limit resets at midnight UTC."
            ),
        "the second call is withheld\n{t}"
    );
    let status = t.step_after(second, &["/budget -H"]);
    assert!(
        status.output.contains("\"tokensUsedToday\":98"),
        "a withheld result charges nothing\n{t}"
    );

    let audit = t.step(&["/audit?tool=getPost"]);
    assert!(
        audit
            .output
            .contains("\"outcome\":\"withheld_over_budget\"")
            && audit.output.contains("\"downstreamStatus\":200")
            && audit.output.contains("\"tokens\":98"),
        "the audit trail shows the charged and the withheld call\n{t}"
    );

    t.assert_printed(&["-X DELETE", "/budget"], "204");
    t.assert_printed(&["\"id\":4,\"method\":\"tools/call\""], POST_1_TITLE);
}

#[test]
fn the_audit_guide_reads_the_trail_as_it_says() {
    let run = run_guide("docs/audit.md", Marking::InfoString);
    let t = &run.transcript;

    t.assert_printed(&["asked by ada@example.com"], POST_1_TITLE);
    let page: Value = serde_json::from_str(&t.step(&["/management/audit?limit=2"]).output)
        .unwrap_or_else(|e| panic!("the query answers JSON ({e})\n{t}"));
    assert_eq!(page["records"].as_array().map(Vec::len), Some(2), "{page}");
    assert!(
        page["nextCursor"].is_string(),
        "a first page of two has a next one: {page}"
    );
    assert_eq!(
        page["records"][0]["action"], "tools/call",
        "newest first: {page}"
    );

    let today = t.step(&["tool=getPost&since="]);
    assert!(
        today.output.contains("asked by [EMAIL REDACTED]")
            && !today.output.contains("ada@example.com"),
        "the stored arguments are filtered\n{t}"
    );
    let next: Value = serde_json::from_str(&t.step(&["&cursor=$NEXT"]).output)
        .unwrap_or_else(|e| panic!("the second page answers JSON ({e})\n{t}"));
    assert!(
        next["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["agentId"] == "admin")),
        "the second page holds more management actions: {next}"
    );
    t.assert_printed(&["/audit?outcome=ok"], "\"action\":\"tools/call\"");

    let export = &t.step(&["/management/audit/export"]).output;
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|r| r["action"] == "tools/call")
            && lines.iter().any(|r| r["action"] == "initialize"),
        "the export holds the agent's records: {export}"
    );

    // The same records went to standard output, filtered too.
    let stdout = run.servers.gateway.stdout_lines();
    assert!(
        stdout
            .iter()
            .any(|l| l.contains("asked by [EMAIL REDACTED]")),
        "the stdout stream has the call: {stdout:?}"
    );
    assert!(
        stdout.iter().all(|l| !l.contains("ada@example.com")),
        "no address reaches the stdout stream"
    );
}

#[test]
fn the_privacy_guide_custom_rules_filter_as_shown() {
    let run = run_guide("docs/privacy.md", Marking::InfoString);
    let t = &run.transcript;

    let user = &t.step(&["\"name\":\"getUser\""]).output;
    for marker in [
        "[EMAIL REDACTED]",
        "[PHONE REDACTED]",
        "[CARD REDACTED]",
        "[SSN REDACTED]",
    ] {
        assert!(
            user.contains(marker),
            "getUser 3 arrives with {marker}\n{t}"
        );
    }
    assert!(
        user.contains("Cleo Lindqvist"),
        "names pass the filter, as the guide says\n{t}"
    );
    for raw in [
        "555-0103",
        "cleo.lindqvist@example.com",
        "4111 1111 1111 1111",
        "123-45-6789",
    ] {
        t.assert_never_printed(raw);
    }
}

// ----- connecting-clients.md --------------------------------------------------------------

/// The blocks of connecting-clients.md.
fn client_blocks() -> Vec<Block> {
    blocks(&read_doc("docs/connecting-clients.md"))
}

/// The only block of connecting-clients.md with this language and word.
fn client_block(lang: &str, attr: &str) -> Block {
    let found: Vec<Block> = client_blocks()
        .into_iter()
        .filter(|b| b.lang == lang && b.has(attr))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "connecting-clients.md must have one ```{lang} {attr} block"
    );
    found.into_iter().next().expect("one block")
}

/// The program that runs node.
fn node() -> String {
    std::env::var("ITHIL_TEST_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// A running mcp-remote bridge: JSON-RPC lines on its stdin and stdout.
struct Bridge {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: tempfile::NamedTempFile,
    _home: tempfile::TempDir,
}

impl Bridge {
    /// Runs `command` (its stdin and stdout the bridge's) with a private `HOME` and
    /// `MCP_REMOTE_CONFIG_DIR`, so that nothing of a real user's mcp-remote state is used.
    fn spawn(mut command: Command, home: tempfile::TempDir) -> Bridge {
        let stderr = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut child = command
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("MCP_REMOTE_CONFIG_DIR", home.path().join("mcp-auth"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("the temporary file reopens"))
            .spawn()
            .expect("the bridge starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = line_channel(stdout);
        Bridge {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            _home: home,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to the bridge: {e}\n{}", self.log()));
    }

    /// The next message with this JSON-RPC id; other lines are skipped.
    fn answer(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + BRIDGE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let Ok(value) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if value["id"] == id {
                        return value;
                    }
                }
                Err(e) => panic!(
                    "mcp-remote gave no answer to request {id} ({e:?}); its log:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// initialize, notifications/initialized and tools/call getPost 1, as a stdio client does:
    /// returns the tool call's answer.
    fn call_get_post(&mut self) -> Value {
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "ithil-guides", "version": "1"}}
        }));
        let init = self.answer(1);
        assert_eq!(
            init["result"]["serverInfo"]["name"],
            "ithil",
            "initialize through mcp-remote: {init}\n{}",
            self.log()
        );
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "getPost", "arguments": {"id": 1}}
        }));
        self.answer(2)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Closing stdin ends the bridge; it is killed (by its pid) if it lingers.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_post_1(answer: &Value, what: &str, log: &str) {
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.contains(POST_1_TITLE) && answer["result"]["isError"] == false,
        "{what}: tools/call getPost did not return post 1: {answer}\n{log}"
    );
}

/// The words of a command line, split at spaces outside double quotes, quotes removed.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The arguments after the mcp-remote package in `args` (`mcp-remote` or
/// `mcp-remote@VERSION`, which must be the tested version).
fn after_package(args: &[String], what: &str) -> Vec<String> {
    let at = args
        .iter()
        .position(|a| a == "mcp-remote" || a.starts_with("mcp-remote@"))
        .unwrap_or_else(|| panic!("{what}: no mcp-remote package in {args:?}"));
    if let Some(version) = args[at].strip_prefix("mcp-remote@") {
        assert_eq!(
            version,
            tools::MCP_REMOTE_VERSION,
            "{what}: the guide pins another mcp-remote than the tested one"
        );
    }
    args[at + 1..].to_vec()
}

#[test]
fn mcp_remote_bridges_a_tool_call_with_the_command_line_of_the_guide() {
    let block = client_block("sh", "mcp-remote");
    let line = block
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("npx "))
        .expect("the block runs npx")
        .to_owned();
    let servers = Servers::development();
    let token = servers.dev_token();

    // The guide's words after the package, expanded as bash would expand them.
    let args: Vec<String> = after_package(&words(&servers.localize(&line)), "the command line")
        .into_iter()
        .map(|a| a.replace("$ITHIL_TOKEN", &token))
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--transport" && w[1] == "http-first"),
        "the command line uses --transport http-first: {line}"
    );
    let mut command = Command::new(node());
    command.arg(tools::mcp_remote()).args(&args).env_clear();
    let mut bridge = Bridge::spawn(command, tempfile::tempdir().expect("a temporary directory"));

    let answer = bridge.call_get_post();
    assert_post_1(&answer, "mcp-remote from the command line", &bridge.log());
}

#[test]
fn mcp_remote_bridges_a_tool_call_with_the_claude_desktop_configuration() {
    let block = client_block("json", "claude-desktop");
    let config: Value = serde_json::from_str(&block.text)
        .unwrap_or_else(|e| panic!("the claude_desktop_config.json snippet is not JSON: {e}"));
    let server = &config["mcpServers"]["ithil"];
    assert_eq!(
        server["command"], "npx",
        "Claude Desktop runs npx: {server}"
    );
    let servers = Servers::development();
    let token = servers.dev_token();

    // Claude Desktop passes the args as they are (no shell) and the env beside them;
    // mcp-remote expands `${AUTH_HEADER}` itself.
    let args: Vec<String> = server["args"]
        .as_array()
        .expect("args is a list")
        .iter()
        .map(|a| servers.localize(a.as_str().expect("every arg is a string")))
        .collect();
    let args = after_package(&args, "claude_desktop_config.json");
    assert!(
        args.iter().any(|a| a.contains("${AUTH_HEADER}")),
        "the header comes from the environment, with no space in the argument: {args:?}"
    );
    let mut command = Command::new(node());
    command.arg(tools::mcp_remote()).args(&args).env_clear();
    for (name, value) in server["env"].as_object().expect("env is an object") {
        let value = value.as_str().expect("env values are strings");
        command.env(name, value.replace("<token>", &token));
    }
    let mut bridge = Bridge::spawn(command, tempfile::tempdir().expect("a temporary directory"));

    let answer = bridge.call_get_post();
    assert_post_1(
        &answer,
        "mcp-remote from claude_desktop_config.json",
        &bridge.log(),
    );
}

#[test]
fn the_python_sdk_snippets_of_connecting_clients_call_a_tool() {
    let servers = Servers::development();
    let token = servers.dev_token();
    for (sdk, attr) in [(Sdk::V1, "sdk-1"), (Sdk::V2, "sdk-2")] {
        let block = client_block("python", attr);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("client.py");
        std::fs::write(&script, servers.localize(&block.text)).expect("the script is written");

        let python = tools::python_sdk(sdk);
        let mut child = Command::new(&python)
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("ITHIL_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                // Child::kill signals exactly this process id.
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().expect("the script's output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains(POST_1_TITLE),
            "the {attr} snippet (mcp {}) did not print post 1: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            sdk.version(),
            output.status
        );
    }
}

// ----- Links --------------------------------------------------------------------------

/// The guides this file owns.
const GUIDES: [&str; 8] = [
    "docs/getting-started.md",
    "docs/agent-management.md",
    "docs/connecting-clients.md",
    "docs/budgets.md",
    "docs/privacy.md",
    "docs/audit.md",
    "docs/deployment.md",
    "docs/limitations.md",
];

/// The anchor GitHub gives a heading: lower case, spaces as `-`, punctuation other than `-`
/// and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The relative link targets of a Markdown file (outside code blocks): `[text](target)`.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_guides_link_only_to_pages_and_headings_that_exist() {
    let docs = tools::workspace_root().join("docs");
    let mut broken = Vec::new();
    for guide in GUIDES {
        let own = read_doc(guide);
        for link in relative_links(&own) {
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let text = if file.is_empty() {
                own.clone()
            } else {
                match std::fs::read_to_string(docs.join(file)) {
                    Ok(text) => text,
                    Err(_) => {
                        broken.push(format!("{guide}: {link}: no such page"));
                        continue;
                    }
                }
            };
            if !anchor.is_empty() && !anchors(&text).iter().any(|a| a == anchor) {
                broken.push(format!("{guide}: {link}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn headings_get_the_anchors_github_gives_them() {
    assert_eq!(slug(" 7. Call a tool with curl"), "7-call-a-tool-with-curl");
    assert_eq!(
        slug(" `maxResponseTokens`: the per-call limit"),
        "maxresponsetokens-the-per-call-limit"
    );
    assert_eq!(
        relative_links("see [a](a.md#b), [c](https://x/y) and [d](#e)"),
        vec!["a.md#b".to_owned(), "#e".to_owned()]
    );
}

// ----- The machinery's own tests ----------------------------------------------------------

#[test]
fn fenced_blocks_keep_their_language_words_and_text() {
    let markdown = "text\n```sh server\nrun me\n```\n\n````json\n{\"a\": \"```\"}\n````\n";
    let found = blocks(markdown);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].lang, "sh");
    assert_eq!(found[0].attrs, vec!["server".to_owned()]);
    assert_eq!(found[0].text, "run me\n");
    assert_eq!(found[0].line, 2);
    assert_eq!(found[1].lang, "json");
    assert_eq!(found[1].text, "{\"a\": \"```\"}\n");
}

#[test]
fn commands_end_at_top_level_newlines_only() {
    let script = "# a comment, with an apostrophe: it's fine\n\
                  A=$(curl -s x \\\n  -H 'y' | sed 's/a/b/')\n\
                  \n\
                  MCP=(-H \"a b\"\n     -H \"c\")\n\
                  curl -d '{\"jsonrpc\":\n  \"2.0\"}' http://h/#frag\n\
                  f() {\n  echo \"${1}\"\n}\n\
                  echo done # trailing comment\n";
    assert_eq!(
        commands(script),
        vec![
            "A=$(curl -s x \\\n  -H 'y' | sed 's/a/b/')".to_owned(),
            "MCP=(-H \"a b\"\n     -H \"c\")".to_owned(),
            "curl -d '{\"jsonrpc\":\n  \"2.0\"}' http://h/#frag".to_owned(),
            "f() {\n  echo \"${1}\"\n}".to_owned(),
            "echo done # trailing comment".to_owned(),
        ]
    );
}

#[test]
fn the_gateway_arguments_are_read_from_either_way_of_starting_it() {
    let root = tools::workspace_root();
    let catalog = root.join("examples/placeholder.json").display().to_string();
    for text in [
        "cp a b\n./target/release/ithil serve --dev --catalog examples/placeholder.json\n",
        "cargo run --release -p ithil -- serve --dev --catalog examples/placeholder.json\n",
    ] {
        assert_eq!(
            gateway_args(text),
            Some(vec![
                "--dev".to_owned(),
                "--catalog".to_owned(),
                catalog.clone()
            ])
        );
    }
    assert_eq!(gateway_args("cargo test --workspace\n"), None);
}

#[test]
fn an_agent_id_is_taken_only_from_a_printed_agent() {
    let created = r#"{"agentId":"agt_0a1b2c3d","label":"x","createdAt":"2026-05-06T12:00:00Z"}"#;
    assert_eq!(printed_agent_id(created), Some("agt_0a1b2c3d".to_owned()));
    assert_eq!(
        printed_agent_id(r#"{"agentId":"agt_0a1b2c3d","remaining":5}"#),
        None
    );
    assert_eq!(printed_agent_id("agt_3f9a1c2b"), None);
}

#[test]
fn command_words_keep_double_quoted_spaces() {
    let mut out = String::new();
    for word in words(r#"npx mcp-remote http://h/mcp --header "Authorization: Bearer $T""#) {
        let _ = write!(out, "[{word}]");
    }
    assert_eq!(
        out,
        "[npx][mcp-remote][http://h/mcp][--header][Authorization: Bearer $T]"
    );
}
