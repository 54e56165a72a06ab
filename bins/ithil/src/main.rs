//! The `ithil` gateway binary: parse the command line, run the command, map the outcome to an
//! exit code.

#[cfg(feature = "bench")]
mod bench;
mod catalog;
mod cli;
mod config;
mod metrics;
mod peer;
mod routes;
mod server;
mod state;
mod store;
mod throttle;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Environment, Flags, LogFormat};

/// Ithil: a governance gateway that lets AI agents use an existing HTTP API safely.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    remote: cli::Remote,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway.
    Serve(ServeArgs),
    /// Check offline what `serve` checks at start (settings, catalog files, privacy rules),
    /// print a summary and exit: 0 when `serve` would start, 2 when it would refuse.
    CheckConfig(ServeArgs),
    /// Print every configuration key with its environment variable, type and default.
    ConfigKeys,
    /// Work with tool catalogs.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    #[command(flatten)]
    Remote(cli::Command),
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Print the manifest the gateway would load from an OpenAPI document, for review.
    Import {
        /// The OpenAPI 3.0 or 3.1 document (JSON).
        file: PathBuf,
        /// The base URL of the downstream, overriding `servers[0].url`
        /// (NAME is the file's stem).
        #[arg(long, value_name = "NAME=URL")]
        downstream_url: Vec<String>,
    },
    #[command(flatten)]
    Remote(cli::ToolsCommand),
}

/// The flags that carry configuration; they override the file and the environment.
#[derive(Debug, Args)]
struct ServeArgs {
    /// A JSON configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The address to listen on [default: 127.0.0.1:5100].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,

    /// The directory of the store [default: ./data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

    /// Development mode: /dev/admin-token and /dev/token answer to loopback peers.
    #[arg(long)]
    dev: bool,

    /// A catalog file (manifest or OpenAPI document) to load; repeatable.
    #[arg(long, value_name = "FILE")]
    catalog: Vec<PathBuf>,

    /// The base URL of a downstream, overriding its catalog's; repeatable.
    #[arg(long, value_name = "NAME=URL")]
    downstream_url: Vec<String>,

    /// The format of the log lines on stderr: `text` or `json` [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,

    /// Benchmarks only: how tool calls are charged.
    #[cfg(feature = "bench")]
    #[arg(long, value_enum, default_value_t, hide = true)]
    bench_charging: bench::Charging,
}

impl ServeArgs {
    fn flags(self) -> Flags {
        Flags {
            config: self.config,
            listen: self.listen,
            data: self.data,
            dev: self.dev,
            catalog: self.catalog,
            downstream_urls: self.downstream_url,
            log_format: self.log_format,
        }
    }
}

/// Why a command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Invalid configuration: exit code 2, like a usage error.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A configuration that reads but that `serve` would refuse, found by `check-config`:
    /// exit code 2.
    #[error(transparent)]
    Check(state::StateError),

    /// The server failed: exit code 1, or 2 when the failure is the configuration's.
    #[error(transparent)]
    Serve(#[from] server::ServeError),

    /// The async runtime could not start: exit code 1.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),

    /// A catalog file could not be imported: exit code 1.
    #[error("cannot import the catalog file")]
    Import(#[source] ithil_proxy::catalog::CatalogError),

    /// A management command failed: its own exit code.
    #[error(transparent)]
    Remote(#[from] cli::Failure),
}

fn main() -> ExitCode {
    let cli = Cli::parse();

    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let error = chain(&failure);
            // A collector reading JSON lines must not choke on the one line that matters.
            if LOG_FORMAT.get() == Some(&LogFormat::Json) {
                tracing::error!(error = %error, "stopped with an error");
            } else {
                eprintln!("ithil: error: {error}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The format logging was set up with, once it is.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

impl Failure {
    /// 2 for invalid configuration (as for a usage error), 1 when the server cannot start or
    /// run, and a management command's own code.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) | Failure::Check(_) => 2,
            // A custom privacy rule and a repeated previous signing key are configuration, even
            // though only building the state finds them.
            Failure::Serve(server::ServeError::State(
                state::StateError::Privacy { .. } | state::StateError::DuplicateKeyId { .. },
            )) => 2,
            Failure::Serve(_) | Failure::Runtime(_) | Failure::Import(_) => 1,
            Failure::Remote(failure) => failure.exit_code(),
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let env = Environment::from_process();
    // `serve` logs in the format its configuration names, once it is read; every other command
    // in the default one.
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging(LogFormat::default());
    }
    match cli.command {
        Command::Serve(args) => {
            #[cfg(feature = "bench")]
            let charging = args.bench_charging;
            let config = Config::load(&args.flags(), &env)?;
            #[cfg(feature = "bench")]
            let config = Config {
                bench_charging: charging,
                ..config
            };
            init_logging(config.log_format);
            #[cfg(feature = "bench")]
            tracing::warn!(
                charging = ?config.bench_charging,
                "a benchmark build (feature bench): never serve agents with it"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Failure::Runtime)?;
            let writer = runtime.block_on(server::serve(config, env))?;
            // Dropping the runtime drops every task still holding handler state, which ends
            // the budget writer once its queue is committed.
            drop(runtime);
            if writer.join().is_err() {
                tracing::error!("the budget writer panicked");
            }
            tracing::info!("stopped");
            Ok(())
        }
        Command::CheckConfig(args) => check_config(&args.flags(), &env),
        Command::ConfigKeys => {
            print!("{}", config::keys::markdown_table());
            Ok(())
        }
        Command::Tools {
            command:
                ToolsCommand::Import {
                    file,
                    downstream_url,
                },
        } => {
            let flags = Flags {
                downstream_urls: downstream_url,
                ..Flags::default()
            };
            let config = Config::load(&flags, &env)?;
            let source = catalog::CatalogSource::new(&config, &env).map_err(Failure::Import)?;
            let manifest = ithil_proxy::catalog::openapi::to_manifest(&file, source.options())
                .map_err(Failure::Import)?;
            let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
            println!("{text}");
            Ok(())
        }
        Command::Tools {
            command: ToolsCommand::Remote(command),
        } => Ok(cli::run_tools(&cli.remote, command)?),
        Command::Remote(command) => Ok(cli::run(&cli.remote, command)?),
    }
}

/// `ithil check-config`: everything `serve` checks before it opens the store and listens,
/// without the network. "configuration is valid" is printed only when `serve` would start
/// with this configuration; what needs the network or the machine is named as not checked.
fn check_config(flags: &Flags, env: &Environment) -> Result<(), Failure> {
    // The settings: every key, its form and range, `${env:...}` references, the signing key.
    let config = Config::load(flags, env)?;

    // The custom privacy rules compile and every catalog file loads and they merge into one
    // catalog, as at start.
    let prepared = state::Prepared::new(&config, env).map_err(Failure::Check)?;

    println!(
        "configuration is valid: listen={} data={} {config}",
        config.server.listen,
        config.server.data_dir.display()
    );
    println!(
        "checked: the settings, {} catalog file(s) merged into {} tool(s), {} custom privacy \
         rule(s)",
        config.catalog.files.len(),
        prepared.loaded.len(),
        config.privacy_rules.len()
    );
    let mut unchecked = vec![
        format!("the store in {}", config.server.data_dir.display()),
        format!("whether {} is free to listen on", config.server.listen),
    ];
    if let Some(discovery) = prepared.catalog.discovery() {
        unchecked.push(format!(
            "discovery from {} at {} (needs the network)",
            discovery.downstream.base_url, discovery.schema_path
        ));
    }
    println!("not checked: {}", unchecked.join(", "));
    Ok(())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); stdout carries the audit trail.
///
/// In JSON each line is one object: `timestamp`, `level`, `target`, `fields` (with `message`),
/// `span` (the innermost span's fields) and `spans` (every enclosing span, outermost first).
fn init_logging(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// An error and its causes on one line: `cannot open store data/ithil.redb: ...`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
