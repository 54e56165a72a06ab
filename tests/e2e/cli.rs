//! The admin command line against a real gateway: every subcommand, run as the real binary.
//!
//! Each test starts `ithil serve` with the harness, then runs `ithil <subcommand>` as a child
//! process with a cleared environment (only `ITHIL_URL`, `ITHIL_ADMIN_TOKEN` and what the test
//! names), and checks its exit code, its table, and that its `--json` output is the API's own
//! answer, fetched beside it with the harness client.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ithil_tests::gateway::{
    Client, GatewayOptions, GatewayProcess, binary, line_channel, wait_exit,
};
use serde_json::{Value, json};

/// A key as `openssl rand -hex 32` makes one.
const API_KEY: &str = "0d7f4c2a9b1e6f3a8c5d0e7b2f9a4c1d6e3b8a5f2c7d0e9b4a1f6c3d8e5b2a7f";

/// What one run of the command line did.
#[derive(Debug)]
struct Run {
    what: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit code and returns the run.
    fn code(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{self}");
        self
    }

    /// Asserts success.
    fn ok(self) -> Run {
        self.code(0)
    }

    /// Standard output as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }

    /// The value of the `name  value` line of a field list.
    fn field(&self, name: &str) -> String {
        self.stdout
            .lines()
            .find_map(|line| {
                let (first, rest) = line.split_once("  ")?;
                (first == name).then(|| rest.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no field {name}\n{self}"))
    }

    /// The data lines of a table: every line but the header.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ithil {} exited with {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// The command line pointed at one gateway with one admin token.
struct Cli {
    url: String,
    token: Option<String>,
    env: Vec<(String, String)>,
}

impl Cli {
    fn new(gateway: &GatewayProcess, token: &str) -> Cli {
        Cli {
            url: gateway.url(""),
            token: Some(token.to_owned()),
            env: Vec::new(),
        }
    }

    fn without_token(mut self) -> Cli {
        self.token = None;
        self
    }

    fn env(mut self, name: &str, value: &str) -> Cli {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_clear()
            .env("ITHIL_URL", &self.url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(token) = &self.token {
            command.env("ITHIL_ADMIN_TOKEN", token);
        }
        command
    }

    /// Runs `ithil ARGS` to its end; the admin token must appear in neither output.
    fn run(&self, args: &[&str]) -> Run {
        let output = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()));
        let run = Run {
            what: args.join(" "),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if let Some(token) = &self.token {
            assert!(
                !run.stdout.contains(token.as_str()) && !run.stderr.contains(token.as_str()),
                "the admin token was printed\n{run}"
            );
        }
        run
    }
}

fn start(opts: GatewayOptions) -> GatewayProcess {
    GatewayProcess::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

/// A gateway with an API key, its admin token, and the command line pointed at both.
async fn gateway(opts: GatewayOptions) -> (GatewayProcess, String, Cli) {
    let gateway = start(opts.api_key(API_KEY));
    let token = crate::budget::admin_token(&gateway.client(), API_KEY).await;
    let cli = Cli::new(&gateway, &token);
    (gateway, token, cli)
}

/// `GET path` with the admin token: the API's own answer, as JSON.
async fn api(client: Client, token: &str, path: &str) -> Value {
    let answer = client.get(path).bearer(token).send().await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

async fn create_agent(client: Client, token: &str, body: Value) -> String {
    let answer = client
        .post("/management/agents")
        .bearer(token)
        .json(&body.to_string())
        .send()
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()["agentId"].as_str().unwrap().to_owned()
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn is_jwt(text: &str) -> bool {
    text.starts_with("eyJ") && text.split('.').count() == 3 && !text.contains(char::is_whitespace)
}

#[tokio::test]
async fn admin_login_exchanges_the_api_key_for_a_working_admin_token() {
    let gateway = start(GatewayOptions::new().api_key(API_KEY));
    let client = gateway.client();
    let cli = Cli::new(&gateway, "unused").without_token();

    // From the environment: the token alone on stdout, so $(ithil admin login) is the token.
    let run = cli
        .env("ITHIL_API_KEY", API_KEY)
        .run(&["admin", "login"])
        .ok();
    let token = run.stdout.trim_end_matches('\n');
    assert!(is_jwt(token), "{run}");
    assert!(run.stderr.contains("admin token expires at"), "{run}");
    assert!(!run.stderr.contains(API_KEY), "{run}");
    let answer = client.get("/management/agents").bearer(token).send().await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    // From a file, written to --token-file (given before the subcommand): never printed.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let token_file = dir.path().join("admin-token");
    let cli = Cli::new(&gateway, "unused").without_token();
    let run = cli
        .run(&[
            "--token-file",
            token_file.to_str().unwrap(),
            "admin",
            "login",
            "--api-key-file",
            key_file.to_str().unwrap(),
        ])
        .ok();
    let written = std::fs::read_to_string(&token_file).unwrap();
    let written = written.trim_end();
    assert!(is_jwt(written), "{written}");
    assert!(!run.stdout.contains(written) && !run.stderr.contains(written));
    assert!(run.stdout.contains("admin token written to"), "{run}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The written file is what later commands read.
    let run = cli
        .run(&[
            "agents",
            "list",
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .ok();
    assert!(run.stdout.starts_with("ID"), "{run}");

    // With --token-file, --json leaves the token out too.
    let run = cli
        .env("ITHIL_API_KEY", API_KEY)
        .run(&[
            "admin",
            "login",
            "--json",
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(run.json().as_object().unwrap().len(), 1, "{run}");
    assert!(run.json()["expiresAt"].is_string(), "{run}");
    let rewritten = std::fs::read_to_string(&token_file).unwrap();
    assert!(!run.stdout.contains(rewritten.trim_end()), "{run}");

    // --json prints the exchange's answer.
    let cli = Cli::new(&gateway, "unused").without_token();
    let run = cli
        .env("ITHIL_API_KEY", API_KEY)
        .run(&["admin", "login", "--json"])
        .ok();
    let answer = run.json();
    assert!(is_jwt(answer["token"].as_str().unwrap()), "{run}");
    assert!(
        answer["expiresAt"].as_str().unwrap().ends_with('Z'),
        "{run}"
    );

    // A wrong key is refused by the gateway; no key at all is a usage error.
    let cli = Cli::new(&gateway, "unused").without_token();
    let run = cli
        .env("ITHIL_API_KEY", "ffffffffffffffffffffffffffffffff")
        .run(&["admin", "login"])
        .code(3);
    assert!(run.stderr.contains("401"), "{run}");
    assert!(run.stderr.contains("invalid_api_key"), "{run}");
    assert!(!run.stderr.contains("ffffffffffffffff"), "{run}");
    let cli = Cli::new(&gateway, "unused").without_token();
    let run = cli.run(&["admin", "login"]).code(2);
    assert!(run.stderr.contains("ITHIL_API_KEY"), "{run}");

    // A gateway without an API key offers no exchange: its 404, with the reason.
    let keyless = start(GatewayOptions::new());
    let cli = Cli::new(&keyless, "unused").without_token();
    let run = cli
        .env("ITHIL_API_KEY", API_KEY)
        .run(&["admin", "login"])
        .code(3);
    assert!(run.stderr.contains("404"), "{run}");
    assert!(run.stderr.contains("Ithil__Admin__ApiKey"), "{run}");
}

#[tokio::test]
async fn agents_commands_manage_an_agent_from_creation_to_deletion() {
    let (gateway, token, cli) = gateway(GatewayOptions::new()).await;
    let client = gateway.client();

    // create: every flag reaches the API.
    let run = cli
        .run(&[
            "agents",
            "create",
            "--label",
            "My Claude Agent",
            "--daily-token-budget",
            "50000",
            "--allowed-tool",
            "getPost",
            "--allowed-tool",
            "listPosts",
            "--scope",
            "posts:read",
        ])
        .ok();
    let id = run.field("agentId");
    assert!(id.starts_with("agt_"), "{run}");
    assert_eq!(run.field("label"), "My Claude Agent");
    assert_eq!(run.field("dailyTokenBudget"), "50000");
    assert_eq!(run.field("allowedTools"), "getPost,listPosts");
    assert_eq!(run.field("scopes"), "posts:read");
    assert_eq!(run.field("isActive"), "true");
    let stored = api(client, &token, &format!("/management/agents/{id}")).await;
    assert_eq!(stored["allowedTools"], json!(["getPost", "listPosts"]));
    assert_eq!(stored["scopes"], json!(["posts:read"]));

    // create --json prints the created agent as the API gave it.
    let run = cli
        .run(&[
            "agents",
            "create",
            "--label",
            "second",
            "--inactive",
            "--json",
        ])
        .ok();
    let created = run.json();
    let second = created["agentId"].as_str().unwrap().to_owned();
    assert_eq!(
        created,
        api(client, &token, &format!("/management/agents/{second}")).await
    );
    assert_eq!(created["isActive"], false);
    assert_eq!(created["dailyTokenBudget"], Value::Null);

    // list: a table with both, and --json anywhere on the line is the API's list.
    let run = cli.run(&["agents", "list"]).ok();
    assert!(run.stdout.starts_with("ID"), "{run}");
    for header in ["LABEL", "ACTIVE", "BUDGET", "TOOLS", "SCOPES", "CREATED"] {
        assert!(run.stdout.lines().next().unwrap().contains(header), "{run}");
    }
    let rows = run.rows();
    assert_eq!(rows.len(), 2, "{run}");
    let first = rows.iter().find(|r| r[0] == id).expect("the first agent");
    assert!(first.contains(&"50000".to_owned()) && first.contains(&"true".to_owned()));
    let second_row = rows
        .iter()
        .find(|r| r[0] == second)
        .expect("the second agent");
    assert!(second_row.contains(&"default".to_owned()) && second_row.contains(&"all".to_owned()));
    let listed = api(client, &token, "/management/agents").await;
    for args in [
        &["--json", "agents", "list"][..],
        &["agents", "--json", "list"],
        &["agents", "list", "--json"],
    ] {
        assert_eq!(cli.run(args).ok().json(), listed, "{args:?}");
    }

    // show.
    let run = cli.run(&["agents", "show", &id]).ok();
    assert_eq!(run.field("agentId"), id);
    assert_eq!(run.field("label"), "My Claude Agent");
    assert!(run.stdout.contains("createdAt") && run.stdout.contains("updatedAt"));
    let run = cli.run(&["agents", "show", &id, "--json"]).ok();
    assert_eq!(
        run.json(),
        api(client, &token, &format!("/management/agents/{id}")).await
    );

    // update: only the fields named change.
    let run = cli
        .run(&[
            "agents",
            "update",
            &id,
            "--label",
            "renamed",
            "--daily-token-budget",
            "default",
            "--all-tools",
            "--scope",
            "a",
            "--scope",
            "b",
        ])
        .ok();
    assert_eq!(run.field("label"), "renamed");
    assert_eq!(run.field("dailyTokenBudget"), "default");
    assert_eq!(run.field("allowedTools"), "all");
    assert_eq!(run.field("scopes"), "a,b");
    let stored = api(client, &token, &format!("/management/agents/{id}")).await;
    assert_eq!(stored["dailyTokenBudget"], Value::Null);
    assert_eq!(stored["allowedTools"], Value::Null);
    assert_eq!(stored["isActive"], true);
    let run = cli
        .run(&[
            "agents",
            "update",
            &id,
            "--no-tools",
            "--no-scopes",
            "--json",
        ])
        .ok();
    assert_eq!(run.json()["allowedTools"], json!([]));
    assert_eq!(run.json()["scopes"], json!([]));
    assert_eq!(
        run.json(),
        api(client, &token, &format!("/management/agents/{id}")).await
    );
    cli.run(&["agents", "update", &id]).code(2);
    let run = cli.run(&["agents", "update", &id, "--label", ""]).code(3);
    assert!(run.stderr.contains("invalid_field"), "{run}");

    // deactivate and update --active.
    let run = cli.run(&["agents", "deactivate", &id]).ok();
    assert_eq!(run.field("isActive"), "false");
    let stored = api(client, &token, &format!("/management/agents/{id}")).await;
    assert_eq!(stored["isActive"], false);
    let run = cli.run(&["agents", "update", &id, "--active"]).ok();
    assert_eq!(run.field("isActive"), "true");

    // delete, after which the agent is gone.
    let run = cli.run(&["agents", "delete", &id]).ok();
    assert_eq!(run.stdout, format!("agent {id} deleted\n"));
    let run = cli.run(&["agents", "show", &id]).code(3);
    assert!(run.stderr.contains("404"), "{run}");
    assert!(run.stderr.contains("agent_not_found"), "{run}");
    cli.run(&["agents", "delete", &id]).code(3);
    let run = cli.run(&["agents", "delete", &second, "--json"]).ok();
    assert_eq!(run.stdout, "", "a 204 has no JSON to print");
    assert_eq!(
        cli.run(&["agents", "list", "--json"]).ok().json(),
        json!([])
    );

    // An id cannot reach another endpoint: it stays one path segment.
    let run = cli
        .run(&["agents", "delete", "x/../../tools/reload"])
        .code(3);
    assert!(run.stderr.contains("agent_not_found"), "{run}");
}

#[tokio::test]
async fn tokens_issue_prints_an_agent_token_that_opens_mcp() {
    let (gateway, token, cli) = gateway(GatewayOptions::new()).await;
    let client = gateway.client();
    let id = create_agent(client, &token, json!({"label": "issued"})).await;

    let run = cli.run(&["tokens", "issue", &id]).ok();
    let agent_token = run.stdout.trim_end_matches('\n');
    assert!(is_jwt(agent_token), "{run}");
    assert!(
        run.stderr
            .contains(&format!("token of agent {id} expires at")),
        "{run}"
    );
    let answer = client
        .post("/mcp")
        .bearer(agent_token)
        .header("accept", "application/json, text/event-stream")
        .json(
            r#"{"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "cli-e2e", "version": "0"}}}"#,
        )
        .send()
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    // --expires-in-days and --json: the API's {"token", "expiresAt"}.
    let run = cli
        .run(&["tokens", "issue", &id, "--expires-in-days", "2", "--json"])
        .ok();
    let issued = run.json();
    assert_eq!(issued.as_object().unwrap().len(), 2, "{run}");
    assert!(is_jwt(issued["token"].as_str().unwrap()));
    let records = api(
        client,
        &token,
        "/management/audit?agentId=admin&outcome=ok&limit=1",
    )
    .await;
    assert_eq!(records["records"][0]["action"], "token.issue");
    assert_eq!(records["records"][0]["arguments"]["expiresInDays"], 2);

    // Refusals: a lifetime out of range, an inactive agent, an unknown agent.
    let run = cli
        .run(&["tokens", "issue", &id, "--expires-in-days", "0"])
        .code(3);
    assert!(run.stderr.contains("invalid_field"), "{run}");
    cli.run(&["agents", "deactivate", &id]).ok();
    let run = cli.run(&["tokens", "issue", &id]).code(3);
    assert!(run.stderr.contains("409"), "{run}");
    assert!(run.stderr.contains("agent_inactive"), "{run}");
    assert_eq!(run.stdout, "");
    cli.run(&["tokens", "issue", "agt_00000000"]).code(3);
    cli.run(&["tokens", "issue", &id, "--expires-in-days", "soon"])
        .code(2);
}

#[tokio::test]
async fn budget_commands_show_set_and_reset_a_daily_limit() {
    let (gateway, token, cli) = gateway(GatewayOptions::new()).await;
    let client = gateway.client();
    let id = create_agent(client, &token, json!({"label": "budgeted"})).await;
    let path = format!("/management/agents/{id}/budget");
    let default = api(client, &token, &path).await["dailyTokenBudget"].clone();

    let run = cli.run(&["budget", "show", &id]).ok();
    assert_eq!(run.field("agentId"), id);
    assert_eq!(run.field("dailyTokenBudget"), default.to_string());
    assert_eq!(run.field("tokensUsedToday"), "0");
    assert_eq!(run.field("remaining"), default.to_string());
    assert!(run.field("resetsAt").ends_with("T00:00:00Z"), "{run}");
    let run = cli.run(&["budget", "show", &id, "--json"]).ok();
    assert_eq!(run.json(), api(client, &token, &path).await);

    let run = cli.run(&["budget", "set", &id, "1234"]).ok();
    assert_eq!(run.field("dailyTokenBudget"), "1234");
    assert_eq!(run.field("remaining"), "1234");
    let stored = api(client, &token, &format!("/management/agents/{id}")).await;
    assert_eq!(stored["dailyTokenBudget"], 1234);

    let run = cli.run(&["budget", "set", &id, "default", "--json"]).ok();
    assert_eq!(run.json(), api(client, &token, &path).await);
    assert_eq!(run.json()["dailyTokenBudget"], default);
    let stored = api(client, &token, &format!("/management/agents/{id}")).await;
    assert_eq!(stored["dailyTokenBudget"], Value::Null);

    let run = cli.run(&["budget", "reset", &id]).ok();
    assert_eq!(
        run.stdout,
        format!("today's usage of agent {id} is reset to 0\n")
    );
    let records = api(client, &token, "/management/audit?agentId=admin&limit=1").await;
    assert_eq!(records["records"][0]["action"], "budget.reset");
    assert_eq!(records["records"][0]["arguments"]["agentId"], id.as_str());

    cli.run(&["budget", "set", &id, "lots"]).code(2);
    cli.run(&["budget", "set", &id]).code(2);
    let run = cli.run(&["budget", "set", &id, "0"]).code(3);
    assert!(run.stderr.contains("invalid_field"), "{run}");
    let run = cli.run(&["budget", "reset", "agt_00000000"]).code(3);
    assert!(run.stderr.contains("agent_not_found"), "{run}");
}

/// A manifest of one downstream nobody listens on, with these tools.
fn write_manifest(path: &Path, port: u16, tools: &[(&str, &str)]) {
    let tools: Vec<Value> = tools
        .iter()
        .map(|(name, method)| {
            json!({"name": name, "description": "a post", "downstream": "local",
                   "method": method, "route": "/posts/{id}",
                   "inputSchema": {"type": "object",
                                   "properties": {"id": {"type": "integer"}},
                                   "required": ["id"]}})
        })
        .collect();
    let doc = json!({"downstreams": {"local": {"baseUrl": format!("http://127.0.0.1:{port}")}},
                     "tools": tools});
    std::fs::write(path, doc.to_string()).unwrap();
}

#[tokio::test]
async fn audit_query_filters_and_tail_follows_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.json");
    write_manifest(&manifest, closed_port(), &[("getPost", "GET")]);
    let (gateway, token, cli) = gateway(
        GatewayOptions::new()
            .arg("--catalog")
            .arg(manifest.to_string_lossy()),
    )
    .await;
    let client = gateway.client();

    // An agent whose allowlist leaves getPost out calls it: one refused tools/call record.
    let id = create_agent(
        client,
        &token,
        json!({"label": "audited", "allowedTools": ["other"]}),
    )
    .await;
    let run = cli.run(&["tokens", "issue", &id]).ok();
    let agent_token = run.stdout.trim().to_owned();
    let mcp = |body: Value, session: Option<String>| {
        let agent_token = agent_token.clone();
        async move {
            let mut request = client
                .post("/mcp")
                .bearer(&agent_token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18");
            if let Some(session) = &session {
                request = request.header("mcp-session-id", session);
            }
            request.json(&body.to_string()).send().await
        }
    };
    let init = mcp(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                          "clientInfo": {"name": "cli-e2e", "version": "0"}}}),
        None,
    )
    .await;
    assert_eq!(init.status, 200, "{}", init.text());
    let session = init.header("mcp-session-id").unwrap().to_owned();
    let call = mcp(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "getPost", "arguments": {"id": 1}}}),
        Some(session),
    )
    .await;
    assert!(call.text().contains("error"), "{}", call.text());

    // query by agent, tool and outcome: the API's page, and a table of it.
    let page = api(
        client,
        &token,
        &format!("/management/audit?agentId={id}&tool=getPost&outcome=denied_allowlist"),
    )
    .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "{page}");
    let args = [
        "audit",
        "query",
        "--agent",
        &id,
        "--tool",
        "getPost",
        "--outcome",
        "denied_allowlist",
    ];
    let run = cli.run(&args).ok();
    let header = run.stdout.lines().next().unwrap().to_owned();
    for column in [
        "ID", "TIME", "AGENT", "ACTION", "TOOL", "OUTCOME", "TOKENS", "STATUS", "MS",
    ] {
        assert!(header.contains(column), "{run}");
    }
    let rows = run.rows();
    assert_eq!(rows.len(), 1, "{run}");
    assert_eq!(
        rows[0][2..6],
        [id.as_str(), "tools/call", "getPost", "denied_allowlist"]
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    assert_eq!(cli.run(&json_args).ok().json(), page);

    // Time bounds: an age, an RFC 3339 time, and a usage error for anything else.
    let run = cli
        .run(&["audit", "query", "--agent", &id, "--since", "1h", "--json"])
        .ok();
    assert_eq!(
        run.json(),
        api(client, &token, &format!("/management/audit?agentId={id}")).await
    );
    let run = cli
        .run(&[
            "audit",
            "query",
            "--until",
            "2000-01-01T00:00:00Z",
            "--json",
        ])
        .ok();
    assert_eq!(run.json(), json!({"records": [], "nextCursor": null}));
    cli.run(&["audit", "query", "--since", "yesterday"]).code(2);
    let run = cli.run(&["audit", "query", "--limit", "0"]).code(3);
    assert!(run.stderr.contains("invalid_query"), "{run}");

    // Pages: the cursor of the next page goes to stderr and continues the query.
    let run = cli.run(&["audit", "query", "--limit", "1"]).ok();
    assert_eq!(run.rows().len(), 1, "{run}");
    let cursor = run
        .stderr
        .split("--cursor ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("no cursor\n{run}"))
        .to_owned();
    let run = cli
        .run(&[
            "audit", "query", "--limit", "1", "--cursor", &cursor, "--json",
        ])
        .ok();
    assert_eq!(
        run.json(),
        api(
            client,
            &token,
            &format!("/management/audit?limit=1&cursor={cursor}")
        )
        .await
    );

    // tail: the newest records, oldest first; --json gives one record per line.
    let newest = api(client, &token, "/management/audit?limit=3").await;
    let mut newest: Vec<Value> = newest["records"].as_array().unwrap().clone();
    newest.reverse();
    let run = cli.run(&["audit", "tail", "-n", "3"]).ok();
    let ids: Vec<String> = run.rows().iter().map(|r| r[0].clone()).collect();
    let expected: Vec<String> = newest.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(ids, expected, "{run}");
    let run = cli.run(&["audit", "tail", "-n", "3", "--json"]).ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, newest);
    let run = cli.run(&["audit", "tail", "--agent", &id, "--json"]).ok();
    assert!(!run.stdout.is_empty());
    for line in run.stdout.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["agentId"], id.as_str(), "{line}");
    }

    // tail --follow: a record committed later shows up; Ctrl-C ends it with 0.
    let mut child = cli
        .command(&[
            "audit",
            "tail",
            "-n",
            "0",
            "--follow",
            "--interval",
            "1",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let rx = line_channel(stdout);
    // Nothing old is printed; then a new agent is created through the API.
    std::thread::sleep(Duration::from_millis(1500));
    let followed = create_agent(client, &token, json!({"label": "followed"})).await;
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("--follow printed no new record"));
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        record["action"], "agent.create",
        "only the new record: {line}"
    );
    assert_eq!(record["arguments"]["agentId"], followed.as_str());
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let ended = wait_exit(
        child,
        Duration::from_secs(10),
        "tail --follow did not end on SIGINT",
    );
    assert_eq!(ended.status.code(), Some(0));
    assert!(rx.try_recv().is_err(), "nothing else was printed");
}

#[tokio::test]
async fn tools_list_and_reload_follow_the_catalog_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.json");
    let port = closed_port();
    write_manifest(&manifest, port, &[("getPost", "GET")]);
    let (gateway, token, cli) = gateway(
        GatewayOptions::new()
            .arg("--catalog")
            .arg(manifest.to_string_lossy()),
    )
    .await;
    let client = gateway.client();

    let run = cli.run(&["tools", "list"]).ok();
    assert!(run.stdout.starts_with("NAME"), "{run}");
    assert_eq!(
        run.rows(),
        [[
            "getPost",
            "local",
            "GET",
            "/posts/{id}",
            "-",
            "-",
            "2000",
            "truncate"
        ]],
        "{run}"
    );
    let run = cli.run(&["tools", "list", "--json"]).ok();
    assert_eq!(run.json(), api(client, &token, "/management/tools").await);

    // The file changes; reload picks it up.
    write_manifest(
        &manifest,
        port,
        &[("getPost", "GET"), ("deletePost", "DELETE")],
    );
    let run = cli.run(&["tools", "reload"]).ok();
    assert_eq!(run.stdout, "catalog reloaded: 2 tools\n");
    let run = cli.run(&["tools", "list"]).ok();
    let rows = run.rows();
    assert_eq!(rows.len(), 2, "{run}");
    assert_eq!(
        rows[0][0..5],
        ["deletePost", "local", "DELETE", "/posts/{id}", "blocked"]
    );

    // A broken file is refused, and the catalog in place stays.
    std::fs::write(&manifest, "{ not json").unwrap();
    let run = cli.run(&["tools", "reload"]).code(3);
    assert!(run.stderr.contains("422"), "{run}");
    assert!(run.stderr.contains("invalid_catalog"), "{run}");
    assert_eq!(cli.run(&["tools", "list"]).ok().rows().len(), 2);
    write_manifest(&manifest, port, &[("getPost", "GET")]);
    let run = cli.run(&["tools", "reload", "--json"]).ok();
    assert_eq!(run.json(), json!({"tools": 1}));
}

#[tokio::test]
async fn tools_import_still_prints_a_manifest_offline() {
    let dir = tempfile::tempdir().unwrap();
    let openapi = dir.path().join("posts.json");
    let doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "Posts", "version": "1"},
        "servers": [{"url": "http://127.0.0.1:5200"}],
        "paths": {"/posts/{id}": {"get": {
            "operationId": "getPost",
            "parameters": [{"name": "id", "in": "path", "required": true,
                            "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "a post"}}}}}
    });
    std::fs::write(&openapi, doc.to_string()).unwrap();

    // No gateway runs: ITHIL_URL points at a closed port, and import needs none.
    let cli = Cli {
        url: format!("http://127.0.0.1:{}", closed_port()),
        token: None,
        env: Vec::new(),
    };
    let run = cli
        .run(&["tools", "import", openapi.to_str().unwrap()])
        .ok();
    let manifest = run.json();
    assert_eq!(manifest["tools"][0]["name"], "getPost", "{run}");
    cli.run(&["tools", "import"]).code(2);
}

#[tokio::test]
async fn circuits_prints_the_gateways_answer_or_its_refusal() {
    let (gateway, token, cli) = gateway(GatewayOptions::new()).await;
    let answer = gateway
        .client()
        .get("/management/circuits")
        .bearer(&token)
        .send()
        .await;

    // Whether or not this gateway serves the route yet, the command tells what it answered.
    if answer.status == 200 {
        let run = cli.run(&["circuits", "--json"]).ok();
        assert_eq!(run.json(), answer.json());
        let run = cli.run(&["circuits"]).ok();
        assert!(run.stdout.starts_with("DOWNSTREAM"), "{run}");
    } else {
        let run = cli.run(&["circuits"]).code(3);
        assert!(
            run.stderr.contains(&answer.status.as_u16().to_string()),
            "{run}"
        );
        assert!(run.stderr.contains(&answer.error_code()), "{run}");
        assert_eq!(run.stdout, "");
    }
}

#[tokio::test]
async fn exit_codes_tell_usage_errors_refusals_and_an_unreachable_gateway_apart() {
    let (gateway, token, cli) = gateway(GatewayOptions::new()).await;

    // 2: clap's usage errors, and a command without an admin token.
    for args in [
        &[][..],
        &["agents"],
        &["agents", "frobnicate"],
        &["agents", "show"],
        &["agents", "create", "--label", "x", "--colour", "red"],
        &["audit", "tail", "--lines", "5000"],
        &["audit", "tail", "--interval", "0"],
    ] {
        let run = cli.run(args).code(2);
        assert_eq!(run.stdout, "", "{run}");
    }
    let run = Cli::new(&gateway, &token)
        .without_token()
        .run(&["agents", "list"])
        .code(2);
    assert!(run.stderr.contains("ITHIL_ADMIN_TOKEN"), "{run}");
    let run = cli
        .run(&["agents", "list", "--url", "https://127.0.0.1:5100"])
        .code(2);
    assert!(run.stderr.contains("https"), "{run}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    cli.run(&["agents", "list", "--token-file", missing.to_str().unwrap()])
        .code(2);

    // 3: the gateway refuses a token that is not an admin token.
    let wrong = Cli::new(&gateway, "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl");
    let run = wrong.run(&["agents", "list"]).code(3);
    assert!(run.stderr.contains("401"), "{run}");
    assert!(run.stderr.contains("unauthorized"), "{run}");
    let agent = create_agent(gateway.client(), &token, json!({"label": "not an admin"})).await;
    let agent_token = cli.run(&["tokens", "issue", &agent]).ok().stdout;
    let run = Cli::new(&gateway, agent_token.trim())
        .run(&["agents", "list"])
        .code(3);
    assert!(run.stderr.contains("403"), "{run}");

    // 4: nothing listens at the URL; --url after the subcommand overrides ITHIL_URL, and
    // ITHIL_URL alone is used without it.
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let run = cli.run(&["agents", "list", "--url", &closed]).code(4);
    assert!(run.stderr.contains("cannot reach the gateway"), "{run}");
    assert!(run.stderr.contains(&closed), "{run}");
    let unreachable = Cli {
        url: closed.clone(),
        token: Some(token.clone()),
        env: Vec::new(),
    };
    unreachable.run(&["budget", "show", &agent]).code(4);
    unreachable.run(&["audit", "tail", "--follow"]).code(4);
    unreachable
        .run(&["agents", "list", "--url", &gateway.url("")])
        .ok();
}
