//! `ithil-bench`: the load tool that measures what the gateway costs on top of the hop it adds.
//!
//! `stub` serves a fixed 1 KB JSON answer, `load` drives one target (closed loop with N
//! connections, or open loop at a fixed rate), and `run` does the whole comparison on loopback
//! (the stub called directly, nginx in front of it, Ithil in front of it) and prints a markdown
//! report. See `docs/benchmarks.md`.

mod client;
mod latency;
mod load;
mod process;
mod report;
mod run;
mod stub;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum as _};

use crate::client::{Endpoint, Shape};
use crate::latency::ms;
use crate::load::Stop;
use crate::run::{RunOptions, Target};

/// Loads a server on loopback and reports calls per second and latency percentiles.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a fixed 1 KB JSON answer to every request (the downstream of the benchmark).
    Stub {
        /// The address to listen on; port 0 picks a free one, printed on stdout.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Runtime worker threads [default: one per core].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Load one target and print what it did.
    Load(LoadArgs),
    /// Start the stub, nginx and the gateway, measure all three side by side, print a report.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// What the target is: `direct` and `nginx` get plain GETs, `ithil` MCP tool calls.
    #[arg(long, value_enum)]
    target: Target,
    /// The URL of every call: `http://IP:PORT/PATH` (for ithil the MCP endpoint, `/mcp`).
    #[arg(long)]
    url: String,
    /// The agent token (ithil only).
    #[arg(long, env = "ITHIL_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The tool to call (ithil only).
    #[arg(long, default_value = "getData")]
    tool: String,
    /// The tool's arguments as a JSON object (ithil only).
    #[arg(long, default_value = r#"{"id":7}"#)]
    arguments: String,
    /// Concurrent connections of the closed loop.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Calls to measure instead of a duration (closed loop only).
    #[arg(long, conflicts_with = "rate")]
    requests: Option<u64>,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop instead: this many calls per second from one pacing thread.
    #[arg(long)]
    rate: Option<f64>,
    /// Runtime worker threads of the closed loop [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Seconds measured per cell.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of unmeasured load before each cell.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The client counts of the closed loop.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// How many times each closed-loop cell is measured, the targets taking turns.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// The targets to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,nginx,ithil"
    )]
    targets: Vec<Target>,
    /// The fixed rate of the open loop [default: half of Ithil's best closed-loop rate].
    #[arg(long)]
    rate: Option<f64>,
    /// Skip the open loop.
    #[arg(long)]
    no_rate: bool,
    /// The gateway binary [default: `ithil` beside this binary].
    #[arg(long)]
    ithil_bin: Option<PathBuf>,
    /// Run the gateway under this command (split at spaces), such as
    /// `valgrind --tool=callgrind`.
    #[arg(long)]
    ithil_wrapper: Option<String>,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,
    /// Where the run's temporary directory is made; it must be on a real disk, since the
    /// gateway's store lives there [default: the system temp directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the temporary directory (logs, configuration, the gateway's store).
    #[arg(long)]
    keep: bool,
    /// Runtime worker threads of the load tool and of the stub [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A connection could not be made.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP exchange failed.
    #[error("exchange failed: {0}")]
    Exchange(String),
    /// An answer was not the expected one.
    #[error("unexpected answer: {0}")]
    Answer(String),
    /// A process could not be started.
    #[error("cannot start {name}")]
    Spawn {
        /// Which process.
        name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A server started but did not come up as expected.
    #[error("{0}")]
    Start(String),
    /// Setting the gateway up through its management API failed.
    #[error("gateway set-up failed: {0}")]
    Setup(String),
    /// A task of the load failed.
    #[error("load task failed: {0}")]
    Task(String),
    /// Any other I/O failure.
    #[error("i/o error")]
    Io(#[source] std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("ithil-bench: error: {text}");
            match error {
                BenchError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn execute(cli: Cli) -> Result<(), BenchError> {
    match cli.command {
        Command::Stub { listen, threads } => {
            runtime(threads)?.block_on(stub::serve(listen))?;
            Ok(())
        }
        Command::Load(args) => load(args),
        Command::Run(args) => {
            let ithil_bin = match args.ithil_bin {
                Some(path) => path,
                None => std::env::current_exe()
                    .map_err(BenchError::Io)?
                    .with_file_name(format!("ithil{}", std::env::consts::EXE_SUFFIX)),
            };
            let options = RunOptions {
                duration: seconds(args.duration, "--duration")?,
                warmup: seconds(args.warmup, "--warmup")?,
                clients: args.clients,
                rounds: args.rounds,
                targets: args.targets,
                rate: args.rate,
                no_rate: args.no_rate,
                ithil_bin,
                ithil_wrapper: args.ithil_wrapper,
                nginx_bin: args.nginx_bin,
                dir: args.dir.unwrap_or_else(std::env::temp_dir),
                keep: args.keep,
                threads: args.threads.unwrap_or_else(cores),
            };
            if options.rounds == 0 {
                return Err(BenchError::Usage("--rounds must be at least 1".into()));
            }
            if options.clients.contains(&0) {
                return Err(BenchError::Usage(
                    "a client count must be at least 1".into(),
                ));
            }
            run::run(&options)
        }
    }
}

fn load(args: LoadArgs) -> Result<(), BenchError> {
    let shape = if args.target.is_gateway() {
        let token = args.token.as_deref().ok_or_else(|| {
            BenchError::Usage("--target ithil needs --token or ITHIL_BENCH_TOKEN".into())
        })?;
        let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| BenchError::Usage("--arguments must be a JSON object".into()))?;
        Shape::mcp(token, &args.tool, &arguments, None)?
    } else {
        Shape::Get { expect: None }
    };
    let endpoint = Arc::new(Endpoint::new(&args.url, shape)?);
    let warmup = seconds(args.warmup, "--warmup")?;
    let duration = seconds(args.duration, "--duration")?;
    if args.connections == 0 {
        return Err(BenchError::Usage("--connections must be at least 1".into()));
    }

    let mut report = match args.rate {
        Some(rate) => load::open_loop(
            endpoint,
            rate,
            warmup,
            duration,
            load::OPEN_LOOP_MAX_CONNECTIONS,
        )?,
        None => {
            let stop = match args.requests {
                Some(n) => Stop::Calls(n),
                None => Stop::After(duration),
            };
            runtime(args.threads)?.block_on(load::closed_loop(
                endpoint,
                args.connections,
                warmup,
                stop,
            ))?
        }
    };

    let rate = report.rate();
    let l = &mut report.latencies;
    let (p50, p90, p99, max) = (
        l.quantile(0.5),
        l.quantile(0.9),
        l.quantile(0.99),
        l.quantile(1.0),
    );
    if args.json {
        let value = serde_json::json!({
            "target": args.target.to_possible_value().map(|v| v.get_name().to_owned()),
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "connections": report.connections,
            "calls": report.calls,
            "errors": report.errors,
            "firstError": report.first_error,
            "seconds": report.elapsed.as_secs_f64(),
            "callsPerSecond": rate,
            "p50Ms": p50.as_secs_f64() * 1e3,
            "p90Ms": p90.as_secs_f64() * 1e3,
            "p99Ms": p99.as_secs_f64() * 1e3,
            "maxMs": max.as_secs_f64() * 1e3,
        });
        println!("{value}");
    } else {
        println!(
            "{} calls in {:.1} s: {rate:.0} calls/s, p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, \
             {} connections, {} errors{}",
            report.calls,
            report.elapsed.as_secs_f64(),
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            report.connections,
            report.errors,
            report
                .first_error
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.unwrap_or_else(cores).max(1))
        .enable_all()
        .build()
        .map_err(BenchError::Io)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn seconds(value: f64, flag: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| BenchError::Usage(format!("{flag} must be a number of seconds")))
}
