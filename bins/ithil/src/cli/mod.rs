//! The admin command line: `ithil agents ...`, `ithil budget ...` and the other commands that
//! talk to a running gateway over its management API.
//!
//! Each command is one or a few HTTP requests. By default the answer is printed as plain aligned
//! columns; `--json` prints the API's JSON as the gateway sent it. The exit code tells the
//! outcome apart: 0 done, 2 a usage error (clap's, or a missing token or API key), 3 the gateway
//! refused the request (its error code and message go to stderr), 4 the gateway could not be
//! reached, 1 anything else (such as a token file that cannot be written).
//!
//! The admin token comes from `--token-file FILE` or else `ITHIL_ADMIN_TOKEN`, never from the
//! command line, where other users could read it. It is printed only by the two commands whose
//! job that is: `admin login` and `tokens issue`.

mod agents;
mod audit;
mod client;
mod render;
mod secret;
mod tools;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

use self::client::Gateway;

/// The gateway the management commands talk to when neither `--url` nor `ITHIL_URL` names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:5100";

/// The options of every management command, accepted anywhere on the command line.
#[derive(Debug, Args)]
pub struct Remote {
    /// The gateway's base URL (http only).
    #[arg(
        long,
        global = true,
        env = "ITHIL_URL",
        default_value = DEFAULT_URL,
        value_name = "URL",
        help_heading = "Management API"
    )]
    url: String,

    /// Read the admin token from FILE instead of ITHIL_ADMIN_TOKEN (`admin login` writes it
    /// there).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Management API"
    )]
    token_file: Option<PathBuf>,

    /// Print the API's JSON instead of a table.
    #[arg(long, global = true, help_heading = "Management API")]
    json: bool,
}

/// The management commands beside `tools`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get an admin token.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Create, list, show, change and delete agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Issue agent tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Show, reset and set an agent's daily token budget.
    Budget {
        #[command(subcommand)]
        command: BudgetCommand,
    },
    /// Read the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Show the circuit breaker of every downstream.
    Circuits,
}

/// `ithil admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Exchange the API key (from ITHIL_API_KEY or --api-key-file) for an admin token; print
    /// the token, or write it to --token-file.
    Login {
        /// Read the API key from FILE instead of ITHIL_API_KEY.
        #[arg(long, value_name = "FILE")]
        api_key_file: Option<PathBuf>,
    },
}

/// `ithil agents ...`.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Create an agent.
    Create(CreateArgs),
    /// List every agent.
    List,
    /// Show one agent.
    Show {
        /// The agent's id (agt_...).
        id: String,
    },
    /// Change an agent's fields (at least one); the fields not named stay as they are.
    Update(UpdateArgs),
    /// Deactivate an agent: its tokens are refused from the next request on.
    Deactivate {
        /// The agent's id (agt_...).
        id: String,
    },
    /// Delete an agent; its audit records stay.
    Delete {
        /// The agent's id (agt_...).
        id: String,
    },
}

/// `ithil agents create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A human-readable name, 1 to 200 characters.
    #[arg(long, value_name = "NAME")]
    label: String,

    /// The agent's daily token limit, or `default` for the gateway's [default: default].
    #[arg(long, value_name = "N|default")]
    daily_token_budget: Option<Budget>,

    /// A tool the agent may call; repeatable. Without it the agent may call every tool.
    #[arg(long, value_name = "TOOL", conflicts_with = "no_tools")]
    allowed_tool: Vec<String>,

    /// The agent may call no tool at all (an empty allowlist).
    #[arg(long)]
    no_tools: bool,

    /// A scope copied into the agent's tokens; repeatable.
    #[arg(long, value_name = "SCOPE")]
    scope: Vec<String>,

    /// Create the agent inactive.
    #[arg(long)]
    inactive: bool,
}

/// `ithil agents update`.
#[derive(Debug, Args)]
#[command(override_usage = "ithil agents update <ID> <CHANGE>...")]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args([
    "label", "daily_token_budget", "allowed_tool", "all_tools", "no_tools", "scope", "no_scopes",
    "active", "inactive",
])))]
pub struct UpdateArgs {
    /// The agent's id (agt_...).
    id: String,

    /// A new label.
    #[arg(long, value_name = "NAME")]
    label: Option<String>,

    /// A new daily token limit, or `default` for the gateway's.
    #[arg(long, value_name = "N|default")]
    daily_token_budget: Option<Budget>,

    /// Replace the allowlist with these tools; repeatable.
    #[arg(long, value_name = "TOOL", conflicts_with_all = ["all_tools", "no_tools"])]
    allowed_tool: Vec<String>,

    /// Remove the allowlist: the agent may call every tool.
    #[arg(long, conflicts_with = "no_tools")]
    all_tools: bool,

    /// An empty allowlist: the agent may call no tool.
    #[arg(long)]
    no_tools: bool,

    /// Replace the scopes with these; repeatable.
    #[arg(long, value_name = "SCOPE", conflicts_with = "no_scopes")]
    scope: Vec<String>,

    /// Remove every scope.
    #[arg(long)]
    no_scopes: bool,

    /// Activate the agent.
    #[arg(long, conflicts_with = "inactive")]
    active: bool,

    /// Deactivate the agent.
    #[arg(long)]
    inactive: bool,
}

/// `ithil tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token for an agent and print it.
    Issue {
        /// The agent's id (agt_...).
        id: String,
        /// The token's lifetime in days, 1 to 365 [default: 30].
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u64>,
    },
}

/// `ithil budget ...`.
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Show the agent's limit, today's usage, what is left and when it resets.
    Show {
        /// The agent's id (agt_...).
        id: String,
    },
    /// Set today's usage back to zero.
    Reset {
        /// The agent's id (agt_...).
        id: String,
    },
    /// Set the agent's daily token limit, or `default` for the gateway's.
    Set {
        /// The agent's id (agt_...).
        id: String,
        /// The limit in tokens, or `default`.
        #[arg(value_name = "N|default")]
        budget: Budget,
    },
}

/// `ithil audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest records, oldest first; with --follow, then every new one until Ctrl-C.
    Tail(TailArgs),
    /// Print one page of records, newest first, that match every filter given.
    Query(QueryArgs),
}

/// `ithil audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only this agent's records (`admin` for management actions).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,

    /// How many of the newest records to print first.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(0..=1000))]
    lines: u16,

    /// Keep polling for new records until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,

    /// Seconds between polls with --follow.
    #[arg(long, value_name = "SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
}

/// `ithil audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only this agent's records (`admin` for management actions).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,

    /// Only records of this tool.
    #[arg(long, value_name = "TOOL")]
    tool: Option<String>,

    /// Only records with this outcome (ok, denied_allowlist, downstream_error, ...).
    #[arg(long, value_name = "OUTCOME")]
    outcome: Option<String>,

    /// Only records at or after this time: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = audit::parse_time)]
    since: Option<String>,

    /// Only records before this time: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = audit::parse_time)]
    until: Option<String>,

    /// The page size, 1 to 1000 [default: 100].
    #[arg(long, value_name = "N")]
    limit: Option<u32>,

    /// Continue after an earlier page: the cursor it ended with.
    #[arg(long, value_name = "CURSOR")]
    cursor: Option<String>,
}

/// The management commands under `ithil tools`.
#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// List the tools of the running gateway's catalog.
    List,
    /// Load the catalog again from its files and discovery; a broken catalog is refused and
    /// the one in place stays.
    Reload,
}

/// A daily token limit, or the gateway's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The gateway's default limit applies (`null` in the API).
    Default,
    /// This many tokens a day.
    Tokens(u64),
}

impl std::str::FromStr for Budget {
    type Err = String;

    fn from_str(text: &str) -> Result<Budget, String> {
        if text == "default" {
            return Ok(Budget::Default);
        }
        text.parse()
            .map(Budget::Tokens)
            .map_err(|_| "expected a whole number of tokens or `default`".to_owned())
    }
}

impl Budget {
    fn to_json(self) -> serde_json::Value {
        match self {
            Budget::Default => serde_json::Value::Null,
            Budget::Tokens(n) => n.into(),
        }
    }
}

/// Why a management command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command cannot run as given: exit code 2.
    #[error("{0}")]
    Usage(String),

    /// A file named on the command line cannot be read: exit code 2.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The gateway answered with an error status: exit code 3.
    #[error("the gateway refused the request: {0}")]
    Refused(client::Refusal),

    /// No answer from the gateway: exit code 4.
    #[error("cannot reach the gateway at {url}")]
    Unreachable {
        /// The gateway's base URL.
        url: String,
        /// Why.
        #[source]
        source: client::TransportError,
    },

    /// The gateway answered, but not with the JSON the command expects: exit code 1.
    #[error("the gateway's answer to {path} is not the expected JSON")]
    Answer {
        /// The request path.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },

    /// A file cannot be written: exit code 1.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Standard output cannot be written: exit code 1.
    #[error("cannot write to standard output")]
    Output(#[source] std::io::Error),

    /// The async runtime could not start: exit code 1.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl Failure {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Read { .. } => 2,
            Failure::Refused(_) => 3,
            Failure::Unreachable { .. } => 4,
            Failure::Answer { .. }
            | Failure::Write { .. }
            | Failure::Output(_)
            | Failure::Runtime(_) => 1,
        }
    }
}

/// Runs one management command against the gateway of `remote`.
///
/// # Errors
///
/// As [`Failure`] describes; the variant decides the exit code.
pub fn run(remote: &Remote, command: Command) -> Result<(), Failure> {
    block_on(async {
        match command {
            Command::Admin {
                command: AdminCommand::Login { api_key_file },
            } => {
                let gateway = Gateway::new(&remote.url, None)?;
                agents::login(&gateway, remote, api_key_file.as_deref()).await
            }
            Command::Agents { command } => {
                let gateway = connect(remote)?;
                agents::agents(&gateway, remote.json, command).await
            }
            Command::Tokens {
                command:
                    TokensCommand::Issue {
                        id,
                        expires_in_days,
                    },
            } => {
                let gateway = connect(remote)?;
                agents::issue(&gateway, remote.json, &id, expires_in_days).await
            }
            Command::Budget { command } => {
                let gateway = connect(remote)?;
                agents::budget(&gateway, remote.json, command).await
            }
            Command::Audit { command } => {
                let gateway = connect(remote)?;
                match command {
                    AuditCommand::Tail(args) => audit::tail(&gateway, remote.json, args).await,
                    AuditCommand::Query(args) => audit::query(&gateway, remote.json, args).await,
                }
            }
            Command::Circuits => {
                let gateway = connect(remote)?;
                tools::circuits(&gateway, remote.json).await
            }
        }
    })
}

/// Runs `ithil tools list` or `ithil tools reload` against the gateway of `remote`.
///
/// # Errors
///
/// As [`run`].
pub fn run_tools(remote: &Remote, command: ToolsCommand) -> Result<(), Failure> {
    block_on(async {
        let gateway = connect(remote)?;
        match command {
            ToolsCommand::List => tools::list(&gateway, remote.json).await,
            ToolsCommand::Reload => tools::reload(&gateway, remote.json).await,
        }
    })
}

/// The gateway of `remote`, with the admin token every command but `admin login` needs.
fn connect(remote: &Remote) -> Result<Gateway, Failure> {
    let token = secret::admin_token(remote.token_file.as_deref(), secret::process_env)?;
    Gateway::new(&remote.url, Some(token))
}

fn block_on(work: impl Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    // One request at a time: a single-threaded runtime is all a command needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    runtime.block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_number_or_default() {
        assert_eq!("default".parse(), Ok(Budget::Default));
        assert_eq!("50000".parse(), Ok(Budget::Tokens(50_000)));
        assert!("-1".parse::<Budget>().is_err());
        assert!("lots".parse::<Budget>().is_err());
        assert!("Default".parse::<Budget>().is_err());
        assert_eq!(Budget::Default.to_json(), serde_json::Value::Null);
        assert_eq!(Budget::Tokens(7).to_json(), serde_json::json!(7));
    }

    #[test]
    fn every_failure_has_its_exit_code() {
        let io = || std::io::Error::other("x");
        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
        let read = Failure::Read {
            path: "f".into(),
            source: io(),
        };
        assert_eq!(read.exit_code(), 2);
        assert_eq!(Failure::Output(io()).exit_code(), 1);
    }
}
