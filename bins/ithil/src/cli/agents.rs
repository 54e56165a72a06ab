//! `admin login`, `agents ...`, `tokens issue` and `budget ...`: the commands about agents and
//! the tokens that open the gateway.

use std::path::Path;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Gateway, encode};
use super::render::{Table, cell, fields, note, object_fields, out};
use super::{AgentsCommand, BudgetCommand, CreateArgs, Failure, Remote, UpdateArgs, secret};

/// The fields of an agent, in the order they are shown.
const AGENT_FIELDS: &[&str] = &[
    "agentId",
    "label",
    "isActive",
    "dailyTokenBudget",
    "allowedTools",
    "scopes",
    "createdAt",
    "updatedAt",
];

/// The fields of a budget status, in the order they are shown.
const BUDGET_FIELDS: &[&str] = &[
    "agentId",
    "dailyTokenBudget",
    "tokensUsedToday",
    "remaining",
    "percentageUsed",
    "resetsAt",
];

/// The pages of `agents list` followed at most; at 1000 agents a page, far more than any
/// registry holds.
const MAX_PAGES: usize = 1000;

/// `{"token", "expiresAt"}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Issued {
    token: String,
    expires_at: String,
}

/// `ithil admin login`: the API key exchange.
///
/// Without `--token-file` the token is printed alone on stdout (its expiry goes to stderr), so
/// `export ITHIL_ADMIN_TOKEN=$(ithil admin login)` works. With `--token-file` the token is
/// written there, readable by its owner only, and never printed.
///
/// # Errors
///
/// As [`super::run`].
pub async fn login(
    gateway: &Gateway,
    remote: &Remote,
    api_key_file: Option<&Path>,
) -> Result<(), Failure> {
    let key = secret::api_key(api_key_file, secret::process_env)?;
    let body = json!({"apiKey": key.expose()});
    let answer = gateway
        .send(Method::POST, "/auth/admin/token", Some(&body))
        .await
        .map_err(|failure| match failure {
            Failure::Refused(mut refusal) if refusal.status == StatusCode::NOT_FOUND => {
                refusal.hint = Some(
                    "the gateway offers no login without a configured API key \
                     (Ithil__Admin__ApiKey)",
                );
                Failure::Refused(refusal)
            }
            other => other,
        })?;
    let issued: Issued = answer.json()?;

    match &remote.token_file {
        Some(path) => {
            secret::write_token(path, &issued.token)?;
            if remote.json {
                out(&format!("{}\n", json!({"expiresAt": issued.expires_at})))
            } else {
                out(&format!(
                    "admin token written to {}; it expires at {}\n",
                    path.display(),
                    issued.expires_at
                ))
            }
        }
        None if remote.json => out(&answer.raw()),
        None => {
            note(&format!("admin token expires at {}", issued.expires_at));
            out(&format!("{}\n", issued.token))
        }
    }
}

/// `ithil agents ...`.
///
/// # Errors
///
/// As [`super::run`].
pub async fn agents(gateway: &Gateway, json: bool, command: AgentsCommand) -> Result<(), Failure> {
    match command {
        AgentsCommand::Create(args) => {
            let body = create_body(&args);
            let answer = gateway
                .send(Method::POST, "/management/agents", Some(&body))
                .await?;
            show_agent(&answer, json)
        }
        AgentsCommand::List => list(gateway, json).await,
        AgentsCommand::Show { id } => {
            let answer = gateway.get(&agent_path(&id, "")).await?;
            show_agent(&answer, json)
        }
        AgentsCommand::Update(args) => {
            let body = update_body(&args);
            let answer = gateway
                .send(Method::PUT, &agent_path(&args.id, ""), Some(&body))
                .await?;
            show_agent(&answer, json)
        }
        AgentsCommand::Deactivate { id } => {
            let body = json!({"isActive": false});
            let answer = gateway
                .send(Method::PUT, &agent_path(&id, ""), Some(&body))
                .await?;
            show_agent(&answer, json)
        }
        AgentsCommand::Delete { id } => {
            let answer = gateway
                .send(Method::DELETE, &agent_path(&id, ""), None)
                .await?;
            if json {
                out(&answer.raw())
            } else {
                out(&format!("agent {id} deleted\n"))
            }
        }
    }
}

/// `ithil tokens issue`: the token alone on stdout (its expiry on stderr), or the API's JSON.
///
/// # Errors
///
/// As [`super::run`].
pub async fn issue(
    gateway: &Gateway,
    json: bool,
    id: &str,
    expires_in_days: Option<u64>,
) -> Result<(), Failure> {
    // Without a body the gateway takes its default lifetime.
    let body = expires_in_days.map(|days| json!({"expiresInDays": days}));
    let answer = gateway
        .send(Method::POST, &agent_path(id, "/token"), body.as_ref())
        .await?;
    if json {
        return out(&answer.raw());
    }
    let issued: Issued = answer.json()?;
    note(&format!(
        "token of agent {id} expires at {}",
        issued.expires_at
    ));
    out(&format!("{}\n", issued.token))
}

/// `ithil budget ...`.
///
/// # Errors
///
/// As [`super::run`].
pub async fn budget(gateway: &Gateway, json: bool, command: BudgetCommand) -> Result<(), Failure> {
    let answer = match &command {
        BudgetCommand::Show { id } => gateway.get(&agent_path(id, "/budget")).await?,
        BudgetCommand::Reset { id } => {
            let answer = gateway
                .send(Method::DELETE, &agent_path(id, "/budget"), None)
                .await?;
            return if json {
                out(&answer.raw())
            } else {
                out(&format!("today's usage of agent {id} is reset to 0\n"))
            };
        }
        BudgetCommand::Set { id, budget } => {
            let body = json!({"dailyTokenBudget": budget.to_json()});
            gateway
                .send(Method::PUT, &agent_path(id, "/budget"), Some(&body))
                .await?
        }
    };
    if json {
        return out(&answer.raw());
    }
    let status: Value = answer.json()?;
    out(&fields(&object_fields(&status, BUDGET_FIELDS, |_, v| {
        cell(v)
    })))
}

/// `agents list`: every page the gateway links to, as one table or one JSON array.
async fn list(gateway: &Gateway, json: bool) -> Result<(), Failure> {
    let mut path = "/management/agents".to_owned();
    let mut agents: Vec<Value> = Vec::new();
    let mut pages = 0;
    let single = loop {
        let answer = gateway.get(&path).await?;
        pages += 1;
        let next = answer.next_link().filter(|_| pages < MAX_PAGES);
        if pages == 1 && next.is_none() && json {
            // One page: the API's JSON exactly as it came.
            break Some(answer.raw());
        }
        agents.extend(answer.json::<Vec<Value>>()?);
        match next {
            Some(link) => path = link,
            None => break None,
        }
    };
    if let Some(raw) = single {
        return out(&raw);
    }
    if json {
        return out(&format!("{}\n", Value::Array(agents)));
    }

    let mut table = Table::new(&[
        "ID", "LABEL", "ACTIVE", "BUDGET", "TOOLS", "SCOPES", "CREATED",
    ]);
    for agent in &agents {
        table.row(vec![
            cell(&agent["agentId"]),
            cell(&agent["label"]),
            cell(&agent["isActive"]),
            show_field("dailyTokenBudget", &agent["dailyTokenBudget"]),
            show_field("allowedTools", &agent["allowedTools"]),
            cell(&agent["scopes"]),
            cell(&agent["createdAt"]),
        ]);
    }
    out(&table.render())
}

fn show_agent(answer: &super::client::Answer, json: bool) -> Result<(), Failure> {
    if json {
        return out(&answer.raw());
    }
    let agent: Value = answer.json()?;
    out(&fields(&object_fields(&agent, AGENT_FIELDS, show_field)))
}

/// An agent field for people: an unset budget is the default, an unset allowlist is every tool.
fn show_field(name: &str, value: &Value) -> String {
    match (name, value) {
        ("dailyTokenBudget", Value::Null) => "default".to_owned(),
        ("allowedTools", Value::Null) => "all".to_owned(),
        ("allowedTools", Value::Array(tools)) if tools.is_empty() => "none".to_owned(),
        _ => cell(value),
    }
}

/// `/management/agents/{id}{rest}`, the id percent-encoded so it stays one path segment.
fn agent_path(id: &str, rest: &str) -> String {
    format!("/management/agents/{}{rest}", encode(id))
}

fn create_body(args: &CreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("label".into(), args.label.clone().into());
    if let Some(budget) = args.daily_token_budget {
        body.insert("dailyTokenBudget".into(), budget.to_json());
    }
    if !args.allowed_tool.is_empty() || args.no_tools {
        body.insert("allowedTools".into(), json!(args.allowed_tool));
    }
    if !args.scope.is_empty() {
        body.insert("scopes".into(), json!(args.scope));
    }
    if args.inactive {
        body.insert("isActive".into(), false.into());
    }
    Value::Object(body)
}

fn update_body(args: &UpdateArgs) -> Value {
    let mut body = Map::new();
    if let Some(label) = &args.label {
        body.insert("label".into(), label.clone().into());
    }
    if let Some(budget) = args.daily_token_budget {
        body.insert("dailyTokenBudget".into(), budget.to_json());
    }
    if args.all_tools {
        body.insert("allowedTools".into(), Value::Null);
    } else if !args.allowed_tool.is_empty() || args.no_tools {
        body.insert("allowedTools".into(), json!(args.allowed_tool));
    }
    if !args.scope.is_empty() || args.no_scopes {
        body.insert("scopes".into(), json!(args.scope));
    }
    if args.active || args.inactive {
        body.insert("isActive".into(), args.active.into());
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{AgentsCommand, Command};
    use super::*;

    #[derive(clap::Parser)]
    struct Line {
        #[command(subcommand)]
        command: Command,
    }

    fn agents_command(args: &[&str]) -> AgentsCommand {
        let line = Line::try_parse_from(std::iter::once("ithil").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        match line.command {
            Command::Agents { command } => command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_sends_only_the_fields_given() {
        let AgentsCommand::Create(args) = agents_command(&["agents", "create", "--label", "a"])
        else {
            panic!()
        };
        assert_eq!(create_body(&args), json!({"label": "a"}));

        let AgentsCommand::Create(args) = agents_command(&[
            "agents",
            "create",
            "--label",
            "b",
            "--daily-token-budget",
            "500",
            "--allowed-tool",
            "getPost",
            "--allowed-tool",
            "listPosts",
            "--scope",
            "posts:read",
            "--inactive",
        ]) else {
            panic!()
        };
        assert_eq!(
            create_body(&args),
            json!({"label": "b", "dailyTokenBudget": 500,
                   "allowedTools": ["getPost", "listPosts"], "scopes": ["posts:read"],
                   "isActive": false})
        );

        let AgentsCommand::Create(args) =
            agents_command(&["agents", "create", "--label", "c", "--no-tools"])
        else {
            panic!()
        };
        assert_eq!(
            create_body(&args),
            json!({"label": "c", "allowedTools": []})
        );
    }

    #[test]
    fn update_sends_the_changes_asked_for() {
        let body = |args: &[&str]| {
            let mut line = vec!["agents", "update", "agt_00000001"];
            line.extend_from_slice(args);
            match agents_command(&line) {
                AgentsCommand::Update(args) => update_body(&args),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            body(&["--daily-token-budget", "default"]),
            json!({"dailyTokenBudget": null})
        );
        assert_eq!(body(&["--all-tools"]), json!({"allowedTools": null}));
        assert_eq!(body(&["--no-tools"]), json!({"allowedTools": []}));
        assert_eq!(
            body(&[
                "--allowed-tool",
                "a",
                "--scope",
                "s",
                "--active",
                "--label",
                "L"
            ]),
            json!({"allowedTools": ["a"], "scopes": ["s"], "isActive": true, "label": "L"})
        );
        assert_eq!(
            body(&["--no-scopes", "--inactive"]),
            json!({"scopes": [], "isActive": false})
        );
    }

    #[test]
    fn update_without_a_change_or_with_contradictions_is_a_usage_error() {
        for args in [
            &["agents", "update", "agt_00000001"][..],
            &["agents", "update", "agt_00000001", "--active", "--inactive"],
            &[
                "agents",
                "update",
                "agt_00000001",
                "--all-tools",
                "--allowed-tool",
                "a",
            ],
            &[
                "agents",
                "update",
                "agt_00000001",
                "--scope",
                "s",
                "--no-scopes",
            ],
            &[
                "agents",
                "update",
                "agt_00000001",
                "--daily-token-budget",
                "lots",
            ],
            &["agents", "create"],
        ] {
            let argv = std::iter::once("ithil").chain(args.iter().copied());
            let error = Line::try_parse_from(argv).err().expect("refused");
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn agent_fields_read_as_their_meaning() {
        assert_eq!(show_field("dailyTokenBudget", &Value::Null), "default");
        assert_eq!(show_field("dailyTokenBudget", &json!(5)), "5");
        assert_eq!(show_field("allowedTools", &Value::Null), "all");
        assert_eq!(show_field("allowedTools", &json!([])), "none");
        assert_eq!(show_field("allowedTools", &json!(["a", "b"])), "a,b");
        assert_eq!(show_field("scopes", &json!([])), "-");
    }

    #[test]
    fn an_agent_id_stays_one_path_segment() {
        assert_eq!(
            agent_path("agt_3f9a1c2b", "/budget"),
            "/management/agents/agt_3f9a1c2b/budget"
        );
        assert_eq!(
            agent_path("../tools/reload", ""),
            "/management/agents/..%2Ftools%2Freload"
        );
    }
}
