//! The processes a run starts (the stub, nginx, the gateway): started as children, watched by
//! pid, and stopped by pid with SIGTERM, then SIGKILL if they do not go.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::BenchError;

/// How long a stopped process may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process that is stopped when dropped.
pub struct Process {
    name: &'static str,
    child: Child,
    stopped: bool,
}

impl Process {
    /// Starts `command`.
    ///
    /// # Errors
    ///
    /// Returns an error naming the process when it cannot be started.
    pub fn spawn(name: &'static str, command: &mut Command) -> Result<Process, BenchError> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Spawn { name, source })?;
        Ok(Process {
            name,
            child,
            stopped: false,
        })
    }

    /// Starts `command` with stdout piped and waits for its first line, which must be
    /// `listening on http://ADDR` (as the stub prints it); returns the process and the address.
    ///
    /// # Errors
    ///
    /// Returns an error when the process cannot start or does not announce an address.
    pub fn spawn_announcing(
        name: &'static str,
        command: &mut Command,
    ) -> Result<(Process, SocketAddr), BenchError> {
        let mut process = Process::spawn(name, command.stdout(Stdio::piped()))?;
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Start(format!("{name} has no stdout")))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(BenchError::Io)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BenchError::Start(format!("{name} printed {line:?}")))?;
        Ok((process, addr))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    ///
    /// # Errors
    ///
    /// As above, with its exit status.
    pub fn check_running(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait().map_err(BenchError::Io)? {
            None => Ok(()),
            Some(status) => Err(BenchError::Start(format!(
                "{} exited early with {status}",
                self.name
            ))),
        }
    }

    /// Sends SIGTERM to the process, waits for it to exit, and kills it if it does not within
    /// 15 seconds.
    ///
    /// # Errors
    ///
    /// Returns an error when the process cannot be waited for.
    pub fn stop(&mut self) -> Result<ExitStatus, BenchError> {
        self.stopped = true;
        if let Some(status) = self.child.try_wait().map_err(BenchError::Io)? {
            return Ok(status);
        }
        // std has no signal API and the workspace has no libc binding; `kill` is a command
        // everywhere this tool runs. The pid is our own child's.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(BenchError::Io)? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "ithil-bench: {} did not stop on SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        self.child.wait().map_err(BenchError::Io)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.stop();
        }
    }
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The CPU time (user and system, every thread) process `pid` has used, plus that of its
/// live children when `children` is set (nginx's workers are children of its master).
pub fn cpu_time(pid: u32, children: bool) -> Option<Duration> {
    let mut ticks = cpu_ticks(pid)?;
    if children {
        let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        for child in list.split_whitespace().filter_map(|c| c.parse().ok()) {
            ticks += cpu_ticks(child).unwrap_or(0);
        }
    }
    // Linux reports these in USER_HZ, which is 100 on every architecture it exposes to
    // user space through /proc.
    Some(Duration::from_millis(ticks * 10))
}

/// `utime + stime` of `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its closing
    // parenthesis start with the state (field 3), so utime (field 14) is the twelfth.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A loopback port that was free a moment ago, for servers that must be told their port
/// (nginx, the gateway) rather than report the one they bound.
///
/// # Errors
///
/// Returns an error when no port can be bound.
pub fn free_port() -> Result<u16, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(BenchError::Io)?;
    Ok(listener.local_addr().map_err(BenchError::Io)?.port())
}

/// Waits until `probe` succeeds, checking that `process` is still running in between.
///
/// # Errors
///
/// Returns an error when the process exits or `timeout` passes first.
pub fn wait_until(
    process: &mut Process,
    timeout: Duration,
    mut probe: impl FnMut() -> bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        process.check_running()?;
        if probe() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Start(format!(
                "{} did not become ready within {timeout:?}",
                process.name
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_memory_of_this_process_is_read() {
        let rss = rss_kib(std::process::id()).unwrap();
        assert!(rss > 0);
    }

    #[test]
    fn the_cpu_time_of_this_process_grows_with_work() {
        let before = cpu_time(std::process::id(), false).unwrap();
        let start = Instant::now();
        let mut x = 0u64;
        // Long enough to cross several 10 ms ticks even on a machine busy with other work.
        while start.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(std::process::id(), true).unwrap();
        assert!(after > before, "{before:?} then {after:?}");
    }

    #[test]
    fn a_stopped_process_is_gone_and_its_status_is_returned() {
        let mut process = Process::spawn("sleep", Command::new("sleep").arg("30")).unwrap();
        let pid = process.pid();
        assert!(rss_kib(pid).is_some());
        let status = process.stop().unwrap();
        assert!(!status.success());
        assert!(rss_kib(pid).is_none());
    }
}
