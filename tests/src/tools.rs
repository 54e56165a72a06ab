//! Test tools beyond cargo (json-server, the MCP Python SDK), installed into `.tools/`.
//!
//! `cargo test --workspace` on a fresh machine with only the Rust toolchain, node/npm and
//! python3 (3.10 or newer) must pass, and CI runs the very same command. So the end-to-end tests
//! install what they need themselves, into the ignored folder `.tools/` at the workspace root:
//!
//! - `.tools/node`: `json-server` (npm, exact version [`JSON_SERVER_VERSION`]);
//! - `.tools/node-mcp-remote`: `mcp-remote`, the stdio bridge of Claude Desktop (npm, exact
//!   version [`MCP_REMOTE_VERSION`]);
//! - `.tools/py-mcp-1` and `.tools/py-mcp-2`: one virtual environment per release line of the
//!   official MCP Python SDK, installed from `tests/python/requirements-mcp-N.txt`, which pins
//!   the SDK and every dependency.
//!
//! An install is done once and reused. Several test threads may ask at once (a [`OnceLock`] per
//! tool makes the others wait), and so may several test processes: the install runs under a lock
//! directory beside it, and is taken as done only when its marker file holds the expected
//! specification, written last and atomically. A half-finished install (a killed test run) has
//! no marker and is redone; a lock left by a dead process is taken over. Changing a pinned
//! version, or a requirements file, changes the specification and reinstalls.
//!
//! The programs are found on `PATH` as `node`, `npm` and `python3`; `ITHIL_TEST_NODE`,
//! `ITHIL_TEST_NPM` and `ITHIL_TEST_PYTHON` name others. Each install's output goes to
//! `.tools/<name>.log`, and a failed install panics with it.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The json-server release the tests run, pinned exactly.
pub const JSON_SERVER_VERSION: &str = "0.17.4";

/// The mcp-remote release the tests run, pinned exactly.
pub const MCP_REMOTE_VERSION: &str = "0.15.1";

/// How long one install command may run before it counts as hung.
const INSTALL_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How long a waiting process waits for another one's install.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

/// A lock older than this is taken as abandoned, whatever its process id says.
const LOCK_STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The marker file inside an install directory; it holds the specification installed there.
const MARKER: &str = ".ithil-installed";

/// The workspace root (the folder holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// The folder the tools are installed into: `.tools/` at the workspace root.
pub fn tools_dir() -> PathBuf {
    workspace_root().join(".tools")
}

/// The bundled example files: the JSONPlaceholder dataset (`placeholder-db.json`), its OpenAPI
/// document (`placeholder-openapi.json`) and the example manifest, so that the tests need
/// nothing outside the repository.
pub fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

/// The Python script that drives an MCP server with the official SDK.
pub fn mcp_script() -> PathBuf {
    workspace_root()
        .join("tests")
        .join("python")
        .join("mcp_e2e.py")
}

/// The path of json-server's command-line entry point, installed on first use.
///
/// # Panics
///
/// Panics when npm is missing or the install fails; the message carries npm's output.
pub fn json_server() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| npm_package("node", "json-server", JSON_SERVER_VERSION, "lib/cli/bin.js"))
        .clone()
}

/// The path of mcp-remote's stdio bridge (`dist/proxy.js`, its `mcp-remote` command), installed
/// on first use into its own folder, so that its install never replaces json-server's.
///
/// # Panics
///
/// Panics when npm is missing or the install fails; the message carries npm's output.
pub fn mcp_remote() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        npm_package(
            "node-mcp-remote",
            "mcp-remote",
            MCP_REMOTE_VERSION,
            "dist/proxy.js",
        )
    })
    .clone()
}

/// Installs `package@version` with npm into `.tools/<folder>` (once; see `ensure_installed`)
/// and returns the path of its file `entry`.
fn npm_package(folder: &str, package: &str, version: &str, entry: &str) -> PathBuf {
    let spec = format!("{package}@{version}");
    let dir = ensure_installed(folder, &spec, |dir, log| {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut npm = Command::new(program("ITHIL_TEST_NPM", "npm"));
        npm.arg("install")
            .arg(&spec)
            .arg("--prefix")
            .arg(dir)
            .args([
                "--save-exact",
                "--no-audit",
                "--no-fund",
                "--no-update-notifier",
            ]);
        run_logged(npm, log)
    });
    let bin = dir.join("node_modules").join(package).join(entry);
    assert!(
        bin.is_file(),
        "{package} installed, but {} is missing",
        bin.display()
    );
    bin
}

/// A release line of the official MCP Python SDK (`mcp` on PyPI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// The last 1.x release.
    V1,
    /// The newest 2.x release.
    V2,
}

impl Sdk {
    /// Both release lines, oldest first.
    pub const ALL: [Sdk; 2] = [Sdk::V1, Sdk::V2];

    /// The exact `mcp` version installed for this line.
    pub fn version(self) -> &'static str {
        match self {
            Sdk::V1 => "1.30.0",
            Sdk::V2 => "2.3.0",
        }
    }

    /// The requirements file (every dependency pinned) installed for this line.
    pub fn requirements(self) -> PathBuf {
        workspace_root()
            .join("tests")
            .join("python")
            .join(format!("requirements-mcp-{}.txt", self.major()))
    }

    fn major(self) -> u8 {
        match self {
            Sdk::V1 => 1,
            Sdk::V2 => 2,
        }
    }
}

/// The Python interpreter of a virtual environment holding `sdk`, installed on first use.
///
/// # Panics
///
/// Panics when python3 is missing or too old, or the install fails; the message carries pip's
/// output.
pub fn python_sdk(sdk: Sdk) -> PathBuf {
    static PATHS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    PATHS[usize::from(sdk.major() - 1)]
        .get_or_init(|| install_sdk(sdk))
        .clone()
}

fn install_sdk(sdk: Sdk) -> PathBuf {
    let requirements_path = sdk.requirements();
    let requirements = fs::read_to_string(&requirements_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", requirements_path.display()));
    let pin = format!("mcp=={}", sdk.version());
    assert!(
        requirements.lines().any(|line| line.trim() == pin),
        "{} does not pin {pin}",
        requirements_path.display()
    );

    // The whole file is the specification, so editing any pin reinstalls.
    let spec = format!("{pin}\n{requirements}");
    let name = format!("py-mcp-{}", sdk.major());
    let dir = ensure_installed(&name, &spec, |dir, log| {
        let mut venv = Command::new(program("ITHIL_TEST_PYTHON", "python3"));
        venv.args(["-c", VENV_WITH_VERSION_CHECK]).arg(dir);
        run_logged(venv, log)?;

        let mut pip = Command::new(venv_python(dir));
        pip.args([
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
        ])
        .arg("--requirement")
        .arg(&requirements_path);
        run_logged(pip, log)
    });
    venv_python(&dir)
}

/// Creates the virtual environment named by argv[1] after checking the interpreter's version,
/// so that an old python3 fails with a clear message instead of an unsatisfiable pin.
const VENV_WITH_VERSION_CHECK: &str = "\
import sys, venv
if sys.version_info < (3, 10):
    sys.exit('the MCP Python SDK needs python 3.10 or newer, this is ' + sys.version)
venv.EnvBuilder(with_pip=True).create(sys.argv[1])
";

fn venv_python(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    }
}

/// The program named by environment variable `var`, else `default` (looked up on `PATH`).
fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Returns `.tools/<name>`, installing it with `install` unless its marker says `spec`.
///
/// `install` gets the (absent) target directory and a log file for the commands' output, and
/// returns an error message when it fails.
fn ensure_installed(
    name: &str,
    spec: &str,
    install: impl Fn(&Path, &Path) -> Result<(), String>,
) -> PathBuf {
    let tools = tools_dir();
    let dir = tools.join(name);
    if is_installed(&dir, spec) {
        return dir;
    }
    fs::create_dir_all(&tools).unwrap_or_else(|e| panic!("cannot create {}: {e}", tools.display()));
    let lock = tools.join(format!("{name}.lock"));
    let _guard = Lock::acquire(&lock);

    // Another process may have finished the install while this one waited for the lock.
    if is_installed(&dir, spec) {
        return dir;
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot remove stale {}: {e}", dir.display()));
    }

    let log = tools.join(format!("{name}.log"));
    let started = Instant::now();
    if let Err(message) = install(&dir, &log) {
        let output = fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "installing {name} ({}) failed: {message}\n{output}",
            first_line(spec)
        );
    }

    // The marker goes in last, by rename, so a reader never sees a marker before the install
    // is complete, nor a half-written marker.
    let tmp = dir.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, spec).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::rename(&tmp, dir.join(MARKER))
        .unwrap_or_else(|e| panic!("cannot write the marker in {}: {e}", dir.display()));
    eprintln!(
        "installed {} into {} in {:.1} s",
        first_line(spec),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    dir
}

fn is_installed(dir: &Path, spec: &str) -> bool {
    fs::read_to_string(dir.join(MARKER)).is_ok_and(|found| found == spec)
}

fn first_line(spec: &str) -> &str {
    spec.lines().next().unwrap_or(spec)
}

/// Runs `cmd` with its output appended to `log`, within [`INSTALL_DEADLINE`].
fn run_logged(mut cmd: Command, log: &Path) -> Result<(), String> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))
    };
    let mut out = open()?;
    writeln!(out, "$ {cmd:?}").map_err(|e| e.to_string())?;
    let err = open()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;

    let deadline = Instant::now() + INSTALL_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("{:?} exited with {status}", cmd.get_program()));
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{:?} hung; killed it", cmd.get_program()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("cannot wait for {:?}: {e}", cmd.get_program())),
        }
    }
}

/// An exclusive lock between processes: a directory created atomically, holding the owner's
/// process id. Removed on drop.
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn acquire(path: &Path) -> Lock {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut told = false;
        loop {
            match fs::create_dir(path) {
                Ok(()) => {
                    // A crash between the two steps leaves a lock without an owner, which
                    // `is_stale` recognises by its age.
                    let _ = fs::write(path.join("pid"), std::process::id().to_string());
                    return Lock {
                        path: path.to_path_buf(),
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create lock {}: {e}", path.display()),
            }
            if is_stale(path) {
                eprintln!("taking over the abandoned lock {}", path.display());
                let _ = fs::remove_dir_all(path);
                continue;
            }
            if !told {
                eprintln!("waiting for another install ({})", path.display());
                told = true;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for the lock {}; remove it if no install is running",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Whether the lock at `path` was left behind: its process is gone, or it is very old.
fn is_stale(path: &Path) -> bool {
    let age = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    if age > LOCK_STALE_AFTER {
        return true;
    }
    let pid = fs::read_to_string(path.join("pid")).ok();
    match pid
        .as_deref()
        .map(str::trim)
        .and_then(|p| p.parse::<u32>().ok())
    {
        // Where /proc exists (Linux), a missing entry means the owner has exited.
        Some(pid) => {
            Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
        }
        // The owner is between creating the lock and writing its id, or died there.
        None => age > Duration::from_secs(60),
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// A json-server process on 127.0.0.1 serving a private copy of a dataset; killed on drop.
pub struct JsonServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl JsonServer {
    /// Starts json-server on a copy of the shared JSONPlaceholder dataset.
    ///
    /// # Panics
    ///
    /// Panics when json-server cannot be installed or does not answer within 30 seconds.
    pub fn start() -> JsonServer {
        JsonServer::start_with(&examples_dir().join("placeholder-db.json"))
    }

    /// Starts json-server on a copy of `dataset` (json-server rewrites its file on every write,
    /// so the original is never served).
    ///
    /// # Panics
    ///
    /// Panics when the dataset cannot be copied, json-server cannot be installed, or it does not
    /// answer within 30 seconds.
    pub fn start_with(dataset: &Path) -> JsonServer {
        let bin = json_server();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let db = dir.path().join("db.json");
        fs::copy(dataset, &db)
            .unwrap_or_else(|e| panic!("cannot copy {} : {e}", dataset.display()));

        // The port is free when chosen but could be taken before json-server binds it; a
        // server that exits at once is retried on another port.
        let log_path = dir.path().join("json-server.log");
        let mut failures = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log = fs::File::create(&log_path).expect("cannot create the json-server log");
            let mut child = Command::new(program("ITHIL_TEST_NODE", "node"))
                .arg(&bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--host",
                    "127.0.0.1",
                    "db.json",
                ])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot share the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run node {}: {e}", bin.display()));
            match wait_ready(&mut child, port, Duration::from_secs(30)) {
                Ok(()) => {
                    eprintln!("json-server {JSON_SERVER_VERSION} on 127.0.0.1:{port}");
                    return JsonServer { child, port, dir };
                }
                Err(message) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let output = fs::read_to_string(&log_path).unwrap_or_default();
                    failures.push_str(&format!("port {port}: {message}\n{output}\n"));
                }
            }
        }
        panic!("json-server did not start:\n{failures}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The dataset file it serves and rewrites.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("db.json")
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("json-server.log")).unwrap_or_default()
    }

    /// Kills it (by its process id) and waits for it to exit, so that its port refuses
    /// connections from now on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `GET path` to it directly and returns the status and the body parsed as JSON.
    ///
    /// # Panics
    ///
    /// Panics when it does not answer or the body is not JSON.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) =
            http_get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, value)
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        // Child::kill signals exactly this process id; after `stop` it does nothing.
        self.stop();
    }
}

/// Waits until json-server answers on `port`, or exits, or `limit` passes.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("json-server exited with {status}"));
        }
        if let Ok((200, _)) = http_get(port, "/posts/1") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("json-server did not answer within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal blocking `GET` over HTTP/1.0 (so the answer is never chunked) on 127.0.0.1.
fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the shared folder sits beside the repository (as in CI), the bundled copies must
    /// be its dataset and OpenAPI document, byte for byte.
    #[test]
    fn the_bundled_examples_are_the_shared_data_unchanged() {
        let shared = workspace_root().join("..").join("shared").join("data");
        if !shared.is_dir() {
            eprintln!("no {} to compare the examples with", shared.display());
            return;
        }
        for (bundled, original) in [
            ("placeholder-db.json", "jsonplaceholder-db.json"),
            ("placeholder-openapi.json", "placeholder-openapi.json"),
        ] {
            let read = |path: PathBuf| {
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            };
            let same = read(examples_dir().join(bundled)) == read(shared.join(original));
            assert!(
                same,
                "examples/{bundled} differs from shared/data/{original}"
            );
        }
    }
}
