//! `ithil-bench run`: the whole comparison in one process tree on loopback.
//!
//! It starts the stub, nginx in front of it and the gateway in front of it, each as a child of
//! its own; measures the three side by side at each client count (closed loop, interleaved so
//! that a change in the machine's load hits every column alike), then once more at a fixed rate
//! of half of the gateway's saturation (open loop); samples the gateway's resident memory idle,
//! under load and after; stops every child by its pid and prints a markdown report.
//!
//! Two more gateway targets measure what durable charging costs: the same gateway with one
//! durable commit per charge instead of group commit, and with charging switched off. Each
//! runs as a gateway process of its own, started with `serve --bench-charging`, which only a
//! build with the `bench` feature has.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::BenchError;
use crate::client::{self, Endpoint, Shape};
use crate::load::{self, OPEN_LOOP_MAX_CONNECTIONS, Report, Stop};
use crate::process::{self, Process};
use crate::report::{Cell, Machine, Memory, log_cell, render};
use crate::stub;

/// The nginx configuration, with `@PREFIX@`, `@LISTEN@` and `@STUB@` to fill in.
const NGINX_CONF: &str = include_str!("../nginx.conf.template");
/// The tool every gateway call uses.
const TOOL: &str = "getData";
/// The path every call reaches on the stub; the gateway builds it from the tool's argument.
const STUB_PATH: &str = "/data/7";

/// The columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Target {
    /// The stub itself, plain HTTP GETs: the floor.
    Direct,
    /// nginx as a reverse proxy in front of the stub: one plain hop.
    Nginx,
    /// Ithil in front of the stub: MCP tool calls with every check on, as shipped.
    Ithil,
    /// The same, but the charge writer commits each charge on its own (no group commit); needs
    /// a gateway built with `--features bench`.
    IthilPerCall,
    /// The same, with charging switched off: no charge, no audit record, no commit; needs a
    /// gateway built with `--features bench`.
    IthilUncharged,
}

impl Target {
    /// The column name.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Ithil => "Ithil",
            Target::IthilPerCall => "Ithil per-call commit",
            Target::IthilUncharged => "Ithil uncharged",
        }
    }

    /// Whether this target is a gateway, loaded with MCP tool calls.
    pub fn is_gateway(self) -> bool {
        matches!(
            self,
            Target::Ithil | Target::IthilPerCall | Target::IthilUncharged
        )
    }

    /// The gateway's `--bench-charging` value; `None` for the gateway as shipped.
    fn charging(self) -> Option<&'static str> {
        match self {
            Target::IthilPerCall => Some("per-call"),
            Target::IthilUncharged => Some("off"),
            _ => None,
        }
    }
}

/// What `run` measures and where its tools are.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The measured time of each cell.
    pub duration: Duration,
    /// The unmeasured time before each cell.
    pub warmup: Duration,
    /// The client counts of the closed loop.
    pub clients: Vec<usize>,
    /// How many times each closed-loop cell is measured, the targets taking turns; the rounds
    /// of a cell are reported as one.
    pub rounds: usize,
    /// The targets to measure.
    pub targets: Vec<Target>,
    /// The open loop's rate; `None` means half of the gateway's best closed-loop throughput.
    pub rate: Option<f64>,
    /// Whether to skip the open loop.
    pub no_rate: bool,
    /// The `ithil` binary.
    pub ithil_bin: PathBuf,
    /// A command (split at spaces) the gateway runs under, such as a profiler.
    pub ithil_wrapper: Option<String>,
    /// The `nginx` binary.
    pub nginx_bin: PathBuf,
    /// Where the run's temporary directory is made.
    pub dir: PathBuf,
    /// Whether the temporary directory is kept.
    pub keep: bool,
    /// Runtime worker threads of the load tool and the stub.
    pub threads: usize,
}

/// The running servers and what the load needs to reach them.
struct Servers {
    stub: Process,
    stub_addr: SocketAddr,
    nginx: Option<(Process, SocketAddr)>,
    gateways: Vec<Gateway>,
}

/// One running gateway.
struct Gateway {
    target: Target,
    process: Process,
    addr: SocketAddr,
    /// The benchmark agent's token.
    token: String,
}

impl Servers {
    fn gateway(&self, target: Target) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.target == target)
    }
}

/// Runs the comparison and prints the report on stdout (progress goes to stderr).
///
/// # Errors
///
/// Returns an error when a server cannot be started or set up, or a measurement cannot start.
pub fn run(options: &RunOptions) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .map_err(BenchError::Io)?;

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temp = options
        .dir
        .join(format!("ithil-bench-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&temp).map_err(BenchError::Io)?;
    eprintln!("ithil-bench: working in {}", temp.display());

    let outcome = measure(options, &runtime, &temp);

    if options.keep || outcome.is_err() {
        eprintln!("ithil-bench: kept {}", temp.display());
    } else {
        let _ = std::fs::remove_dir_all(&temp);
    }
    let text = outcome?;
    print!("{text}");
    Ok(())
}

fn measure(
    options: &RunOptions,
    runtime: &tokio::runtime::Runtime,
    temp: &Path,
) -> Result<String, BenchError> {
    let load_before = load_average();
    let mut servers = start(options, runtime, temp)?;
    let store_fs = filesystem_of(temp);

    let endpoints = endpoints(&servers, &options.targets)?;
    // Memory is sampled for the gateway as shipped, or the first one when it is not measured.
    let sampled_gateway = servers.gateway(Target::Ithil).or(servers.gateways.first());
    let gateway_pid = sampled_gateway.map(|g| g.process.pid());
    let sampled = sampled_gateway.map(|g| g.target);
    let stub_pid = servers.stub.pid();
    let nginx_pid = servers.nginx.as_ref().map(|(p, _)| p.pid());
    let gateway_pids: Vec<(Target, u32)> = servers
        .gateways
        .iter()
        .map(|g| (g.target, g.process.pid()))
        .collect();
    let watched = move |target: Target| match target {
        Target::Direct => Some((stub_pid, false)),
        Target::Nginx => nginx_pid.map(|pid| (pid, true)),
        _ => gateway_pids
            .iter()
            .find(|(t, _)| *t == target)
            .map(|&(_, pid)| (pid, false)),
    };
    let mut memory = Memory::default();
    if let Some(pid) = gateway_pid {
        std::thread::sleep(Duration::from_secs(1));
        memory.idle = process::rss_kib(pid);
    }

    // One cell: the load, with the server's CPU time around it and the gateway's memory
    // sampled while it runs.
    let mut cell = |clients: usize,
                    target: Target,
                    load: &mut dyn FnMut() -> Result<Report, BenchError>|
     -> Result<Cell, BenchError> {
        let watch = watched(target);
        let cpu_before = watch.and_then(|(pid, children)| process::cpu_time(pid, children));
        let tool_before = process::cpu_time(std::process::id(), false);
        let sampler = (Some(target) == sampled)
            .then(|| gateway_pid.map(Sampler::start))
            .flatten();
        let report = load()?;
        if let Some(sampler) = sampler {
            memory.peak = memory.peak.max(sampler.stop());
        }
        let cpu_after = watch.and_then(|(pid, children)| process::cpu_time(pid, children));
        let tool_after = process::cpu_time(std::process::id(), false);
        let used = |before: Option<Duration>, after: Option<Duration>| {
            before
                .zip(after)
                .map(|(before, after)| after.saturating_sub(before))
        };
        let cell = Cell {
            clients,
            target,
            report,
            cpu: used(cpu_before, cpu_after),
            tool_cpu: used(tool_before, tool_after),
        };
        log_cell(&cell);
        Ok(cell)
    };

    // The closed loop: for each client count, each target in turn.
    // Rounds alternate the targets, so that a change in the machine's load between rounds
    // hits every target alike.
    let mut cells: Vec<Cell> = Vec::new();
    for &clients in &options.clients {
        let first = cells.len();
        for round in 1..=options.rounds.max(1) {
            for (i, (target, endpoint)) in endpoints.iter().enumerate() {
                eprintln!(
                    "ithil-bench: {} with {clients} clients, round {round}",
                    target.label()
                );
                let measured = cell(clients, *target, &mut || {
                    runtime.block_on(load::closed_loop(
                        Arc::clone(endpoint),
                        clients,
                        options.warmup,
                        Stop::After(options.duration),
                    ))
                })?;
                match cells.get_mut(first + i) {
                    Some(sum) => sum.absorb(measured),
                    None => cells.push(measured),
                }
            }
            check_alive(&mut servers)?;
        }
    }

    // The open loop, at one rate for every target so that their tails compare.
    let mut paced: Vec<Cell> = Vec::new();
    let rate = options.rate.or_else(|| {
        let best = cells
            .iter()
            .filter(|c| c.target.is_gateway())
            .map(|c| c.report.rate())
            .fold(0.0, f64::max);
        (best > 0.0).then_some((best / 2.0).round())
    });
    if let (false, Some(rate)) = (options.no_rate, rate) {
        for (target, endpoint) in &endpoints {
            eprintln!("ithil-bench: {} at {rate} calls/s", target.label());
            paced.push(cell(0, *target, &mut || {
                load::open_loop(
                    Arc::clone(endpoint),
                    rate,
                    options.warmup,
                    options.duration,
                    OPEN_LOOP_MAX_CONNECTIONS,
                )
            })?);
        }
    }

    if let Some(pid) = gateway_pid {
        std::thread::sleep(Duration::from_secs(2));
        memory.after_2s = process::rss_kib(pid);
        std::thread::sleep(Duration::from_secs(8));
        memory.after_10s = process::rss_kib(pid);
    }
    check_alive(&mut servers)?;
    let load_after = load_average();
    stop(&mut servers);

    let machine = Machine {
        load_before,
        load_after,
        store_fs,
    };
    Ok(render(
        options,
        &machine,
        &cells,
        rate.filter(|_| !options.no_rate),
        &paced,
        &memory,
    ))
}

/// Starts the stub, nginx and the gateways (those the targets need) and sets the gateways up.
fn start(
    options: &RunOptions,
    runtime: &tokio::runtime::Runtime,
    temp: &Path,
) -> Result<Servers, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::Io)?;
    let (stub, stub_addr) = Process::spawn_announcing(
        "stub",
        Command::new(exe)
            .args(["stub", "--listen", "127.0.0.1:0", "--threads"])
            .arg(options.threads.to_string()),
    )?;
    eprintln!("ithil-bench: stub on {stub_addr}");

    let nginx = if options.targets.contains(&Target::Nginx) {
        Some(start_nginx(options, runtime, temp, stub_addr)?)
    } else {
        None
    };
    let mut servers = Servers {
        stub,
        stub_addr,
        nginx,
        gateways: Vec::new(),
    };
    let mut gateways: Vec<Target> = options
        .targets
        .iter()
        .copied()
        .filter(|t| t.is_gateway())
        .collect();
    gateways.sort();
    gateways.dedup();
    if gateways.iter().any(|t| t.charging().is_some()) {
        check_bench_build(&options.ithil_bin)?;
    }
    for target in gateways {
        // Pushed one by one, so that a failed start still stops those already running.
        let gateway = start_ithil(options, runtime, temp, stub_addr, target)?;
        servers.gateways.push(gateway);
    }
    Ok(servers)
}

fn start_nginx(
    options: &RunOptions,
    runtime: &tokio::runtime::Runtime,
    temp: &Path,
    stub_addr: SocketAddr,
) -> Result<(Process, SocketAddr), BenchError> {
    let prefix = temp.join("nginx");
    std::fs::create_dir_all(&prefix).map_err(BenchError::Io)?;
    let addr: SocketAddr = ([127, 0, 0, 1], process::free_port()?).into();
    let conf = NGINX_CONF
        .replace("@PREFIX@", &prefix.display().to_string())
        .replace("@LISTEN@", &addr.to_string())
        .replace("@STUB@", &stub_addr.to_string());
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(BenchError::Io)?;

    let output = File::create(prefix.join("output.log")).map_err(BenchError::Io)?;
    let mut nginx = Process::spawn(
        "nginx",
        Command::new(&options.nginx_bin)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdout(output.try_clone().map_err(BenchError::Io)?)
            .stderr(output),
    )
    .map_err(|error| match error {
        BenchError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            BenchError::Start(format!(
                "{} not found; install Debian's package (apt-get install -y nginx) or pass \
                 --targets direct,ithil",
                options.nginx_bin.display()
            ))
        }
        other => other,
    })?;
    process::wait_until(&mut nginx, Duration::from_secs(20), || {
        let probe = client::once(addr, Method::GET, STUB_PATH, &[], None);
        matches!(runtime.block_on(probe), Ok((StatusCode::OK, _)))
    })?;
    eprintln!("ithil-bench: nginx (pid {}) on {addr}", nginx.pid());
    Ok((nginx, addr))
}

/// Fails with the command to run when `ithil_bin` has no `--bench-charging` (a build without
/// the `bench` feature): clap refuses the flag before it looks at `--help`.
fn check_bench_build(ithil_bin: &Path) -> Result<(), BenchError> {
    let status = Command::new(ithil_bin)
        .args(["serve", "--bench-charging", "off", "--help"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|source| BenchError::Spawn {
            name: "ithil",
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::Usage(format!(
            "{} was built without the bench feature, which the ithil-per-call and \
             ithil-uncharged targets need: cargo build --release -p ithil --features bench -p \
             ithil-bench --target-dir target/bench",
            ithil_bin.display()
        )))
    }
}

fn start_ithil(
    options: &RunOptions,
    runtime: &tokio::runtime::Runtime,
    temp: &Path,
    stub_addr: SocketAddr,
    target: Target,
) -> Result<Gateway, BenchError> {
    let manifest = json!({
        "downstreams": {
            "stub": { "baseUrl": format!("http://{stub_addr}") }
        },
        "tools": [{
            "name": TOOL,
            "description": "Fetch one record of the benchmark stub.",
            "downstream": "stub",
            "method": "GET",
            "route": "/data/{id}",
            "inputSchema": {
                "type": "object",
                "properties": { "id": { "type": "integer", "minimum": 1 } },
                "required": ["id"]
            }
        }]
    });
    let manifest_path = temp.join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).map_err(BenchError::Io)?;

    // Each gateway has a directory of its own: its store, its logs.
    let name = match target.charging() {
        Some(charging) => format!("ithil-{charging}"),
        None => "ithil".to_owned(),
    };
    let dir = temp.join(&name);
    std::fs::create_dir_all(&dir).map_err(BenchError::Io)?;
    let api_key = format!("bench-{}-{:x}", std::process::id(), random_word());
    let addr: SocketAddr = ([127, 0, 0, 1], process::free_port()?).into();
    let stdout = File::create(dir.join("stdout.log")).map_err(BenchError::Io)?;
    let stderr = File::create(dir.join("stderr.log")).map_err(BenchError::Io)?;

    let mut words = options
        .ithil_wrapper
        .as_deref()
        .unwrap_or_default()
        .split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(&options.ithil_bin);
            command
        }
        None => Command::new(&options.ithil_bin),
    };
    command
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--catalog")
        .arg(&manifest_path);
    if let Some(charging) = target.charging() {
        command.arg("--bench-charging").arg(charging);
    }
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("Ithil__Admin__ApiKey", &api_key)
        // The audit trail stays durable in the store; only its copy on stdout is off.
        .env("Ithil__Audit__DisableStdoutSink", "true")
        // One session per connection, and the largest cell has 256 connections.
        .env("Ithil__Sessions__MaxPerAgent", "1024")
        .stdout(stdout)
        .stderr(stderr);
    let mut ithil = Process::spawn("ithil", &mut command)?;
    let ready_within = if options.ithil_wrapper.is_some() {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    };
    process::wait_until(&mut ithil, ready_within, || {
        let probe = client::once(addr, Method::GET, "/health/live", &[], None);
        matches!(runtime.block_on(probe), Ok((StatusCode::OK, _)))
    })?;
    eprintln!(
        "ithil-bench: {} (pid {}) on {addr}",
        target.label(),
        ithil.pid()
    );

    let token = runtime.block_on(agent_token(addr, &api_key))?;
    Ok(Gateway {
        target,
        process: ithil,
        addr,
        token,
    })
}

/// Exchanges the API key for an admin token, creates the benchmark agent (allowlisted for the
/// one tool, with a budget the run cannot exhaust) and issues its token.
async fn agent_token(addr: SocketAddr, api_key: &str) -> Result<String, BenchError> {
    let admin = setup_call(
        addr,
        Method::POST,
        "/auth/admin/token",
        None,
        json!({ "apiKey": api_key }),
        StatusCode::OK,
    )
    .await?;
    let admin = string_field(&admin, "token")?;

    let agent = setup_call(
        addr,
        Method::POST,
        "/management/agents",
        Some(&admin),
        json!({
            "label": "ithil-bench",
            "dailyTokenBudget": 1_000_000_000_000_u64,
            "allowedTools": [TOOL],
        }),
        StatusCode::CREATED,
    )
    .await?;
    let agent_id = string_field(&agent, "agentId")?;

    let issued = setup_call(
        addr,
        Method::POST,
        &format!("/management/agents/{agent_id}/token"),
        Some(&admin),
        json!({ "expiresInDays": 1 }),
        StatusCode::OK,
    )
    .await?;
    string_field(&issued, "token")
}

async fn setup_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Value,
    expect: StatusCode,
) -> Result<Value, BenchError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BenchError::Setup(format!("{path}: the token is not a header value")))?;
        headers.push((AUTHORIZATION, value));
    }
    let (status, bytes) = client::once(addr, method, path, &headers, Some(&body)).await?;
    if status != expect {
        return Err(BenchError::Setup(format!(
            "{path} answered HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| BenchError::Setup(format!("{path} answered something other than JSON")))
}

fn string_field(value: &Value, name: &str) -> Result<String, BenchError> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Setup(format!("the answer has no {name}")))
}

/// A few random bits for the API key, without a random number crate: the std hasher is seeded
/// randomly per process.
fn random_word() -> u64 {
    use std::hash::{BuildHasher as _, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn endpoints(
    servers: &Servers,
    targets: &[Target],
) -> Result<Vec<(Target, Arc<Endpoint>)>, BenchError> {
    let expect = Some(stub::body());
    let mut out = Vec::new();
    if targets.contains(&Target::Direct) {
        let url = format!("http://{}{STUB_PATH}", servers.stub_addr);
        let shape = Shape::Get {
            expect: expect.clone(),
        };
        out.push((Target::Direct, Arc::new(Endpoint::new(&url, shape)?)));
    }
    if let Some((_, addr)) = &servers.nginx {
        out.push((
            Target::Nginx,
            Arc::new(Endpoint::new(
                &format!("http://{addr}{STUB_PATH}"),
                Shape::Get { expect },
            )?),
        ));
    }
    for gateway in &servers.gateways {
        let shape = Shape::mcp(
            &gateway.token,
            TOOL,
            &json!({ "id": 7 }),
            Some(stub::MARKER.into()),
        )?;
        let url = format!("http://{}/mcp", gateway.addr);
        out.push((gateway.target, Arc::new(Endpoint::new(&url, shape)?)));
    }
    Ok(out)
}

fn check_alive(servers: &mut Servers) -> Result<(), BenchError> {
    servers.stub.check_running()?;
    if let Some((nginx, _)) = &mut servers.nginx {
        nginx.check_running()?;
    }
    for gateway in &mut servers.gateways {
        gateway.process.check_running()?;
    }
    Ok(())
}

fn stop(servers: &mut Servers) {
    for gateway in &mut servers.gateways {
        let label = gateway.target.label();
        match gateway.process.stop() {
            Ok(status) => eprintln!("ithil-bench: {label} stopped ({status})"),
            Err(error) => eprintln!("ithil-bench: {label}: {error}"),
        }
    }
    if let Some((nginx, _)) = &mut servers.nginx {
        let _ = nginx.stop();
    }
    let _ = servers.stub.stop();
}

/// Reads a process's resident memory every 100 ms on a thread of its own and keeps the
/// largest value.
struct Sampler {
    running: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let running = Arc::new(AtomicBool::new(true));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let running = Arc::clone(&running);
            let peak = Arc::clone(&peak);
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    if let Some(rss) = process::rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            running,
            peak,
            thread,
        }
    }

    fn stop(self) -> Option<u64> {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
        Some(self.peak.load(Ordering::Relaxed)).filter(|&p| p > 0)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The file system type and device of the mount holding `path` (the longest mount point
/// that is a prefix of it), so the report says whether fsync reached a disk.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let point = fields.next()?;
            let fs = fields.next()?;
            path.starts_with(point)
                .then(|| (point.len(), format!("{fs} ({device})")))
        })
        .max()
        .map(|(_, text)| text)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nginx_template_has_every_placeholder_and_runs_in_the_foreground() {
        for placeholder in ["@PREFIX@", "@LISTEN@", "@STUB@"] {
            assert!(NGINX_CONF.contains(placeholder), "{placeholder}");
        }
        assert!(NGINX_CONF.contains("daemon off;"));
        assert!(NGINX_CONF.contains("pid @PREFIX@/nginx.pid;"));
    }

    #[test]
    fn the_store_file_system_is_found_for_the_root() {
        assert_ne!(filesystem_of(Path::new("/")), "unknown");
    }
}
