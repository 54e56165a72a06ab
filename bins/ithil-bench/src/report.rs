//! The markdown report of `ithil-bench run`: the closed-loop table, the CPU per call, the
//! goals, the fixed-rate table and the gateway's memory.

use std::fmt::Write as _;
use std::time::Duration;

use crate::latency::ms;
use crate::load::Report;
use crate::run::{RunOptions, Target};

/// One measurement: a target at a client count (closed loop) or at the fixed rate.
pub struct Cell {
    /// The client count of a closed loop; 0 for the fixed rate.
    pub clients: usize,
    /// What was loaded.
    pub target: Target,
    /// What the load found.
    pub report: Report,
    /// The CPU time the target's server process used during the whole cell, warm-up and
    /// connection set-up included (the stub's for `direct`, nginx's master and workers' for
    /// `nginx`, the gateway's for `Ithil`).
    pub cpu: Option<Duration>,
    /// The CPU time the load tool itself used during the cell.
    pub tool_cpu: Option<Duration>,
}

impl Cell {
    /// The server's CPU time per successful call, warm-up included.
    fn cpu_per_call(&self) -> Option<Duration> {
        per_call(self.cpu, self.report.all_calls)
    }

    /// The load tool's CPU time per successful call, warm-up included.
    fn tool_cpu_per_call(&self) -> Option<Duration> {
        per_call(self.tool_cpu, self.report.all_calls)
    }

    /// Adds another round of the same target and client count to this cell.
    pub fn absorb(&mut self, other: Cell) {
        let sum = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a + b);
        self.cpu = sum(self.cpu, other.cpu);
        self.tool_cpu = sum(self.tool_cpu, other.tool_cpu);
        self.report.absorb(other.report);
    }

    /// The latency that `q` of the calls did not exceed.
    pub fn p(&self, q: f64) -> Duration {
        self.report.latencies.clone().quantile(q)
    }
}

fn per_call(cpu: Option<Duration>, calls: u64) -> Option<Duration> {
    let calls = u32::try_from(calls).ok().filter(|&n| n > 0)?;
    cpu.map(|cpu| cpu / calls)
}

/// Prints one cell's figures on stderr as the run goes.
pub fn log_cell(cell: &Cell) {
    let report = &cell.report;
    eprintln!(
        "ithil-bench:   {:.0} calls/s, p50 {} ms, p99 {} ms, CPU per call {} µs (server) and \
         {} µs (load tool), {} errors{}",
        report.rate(),
        ms(cell.p(0.5)),
        ms(cell.p(0.99)),
        micros(cell.cpu_per_call()),
        micros(cell.tool_cpu_per_call()),
        report.errors,
        report
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
}

fn micros(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0}", d.as_secs_f64() * 1e6))
        .unwrap_or_else(|| "n/a".into())
}

/// The gateway's resident memory, in KiB.
#[derive(Debug, Default)]
pub struct Memory {
    /// Before any load, after set-up.
    pub idle: Option<u64>,
    /// The largest value sampled while the gateway was loaded.
    pub peak: Option<u64>,
    /// Two seconds after the last load.
    pub after_2s: Option<u64>,
    /// Ten seconds after the last load.
    pub after_10s: Option<u64>,
}

/// What the report says about the machine.
pub struct Machine {
    /// `/proc/loadavg` before the run.
    pub load_before: String,
    /// `/proc/loadavg` after the run.
    pub load_after: String,
    /// The file system of the gateway's store.
    pub store_fs: String,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The whole report.
pub fn render(
    options: &RunOptions,
    machine: &Machine,
    cells: &[Cell],
    rate: Option<f64>,
    paced: &[Cell],
    memory: &Memory,
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {cores} cores ({}), shared by the load tool and every server measured; load \
         average {} before, {} after; the gateway's store on {}. Each cell: {} round(s) of {} s \
         warm-up and {} s measured, the targets taking turns.\n",
        cpu_model(),
        machine.load_before,
        machine.load_after,
        machine.store_fs,
        options.rounds,
        options.warmup.as_secs_f64(),
        options.duration.as_secs_f64(),
    );

    let targets: Vec<Target> = {
        let mut t: Vec<Target> = cells.iter().map(|c| c.target).collect();
        t.sort();
        t.dedup();
        t
    };
    let both = targets.contains(&Target::Ithil) && targets.contains(&Target::Nginx);

    // The closed loop, one row per client count.
    let mut header = String::from("| clients |");
    let mut rule = String::from("|---|");
    for target in &targets {
        let name = target.label();
        let _ = write!(header, " {name} calls/s | {name} p50 ms | {name} p99 ms |");
        rule.push_str("---|---|---|");
    }
    if both {
        header.push_str(" Ithil / nginx |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for &clients in &options.clients {
        let mut row = format!("| {clients} |");
        for target in &targets {
            match find(cells, clients, *target) {
                Some(cell) => {
                    let errors = match cell.report.errors {
                        0 => String::new(),
                        n => format!(" ({n} errors)"),
                    };
                    let _ = write!(
                        row,
                        " {:.0}{errors} | {} | {} |",
                        cell.report.rate(),
                        ms(cell.p(0.5)),
                        ms(cell.p(0.99))
                    );
                }
                None => row.push_str(" | | |"),
            }
        }
        if both {
            match ratio(cells, clients, Target::Ithil, Target::Nginx) {
                Some(r) => {
                    let _ = write!(row, " {r:.2} |");
                }
                None => row.push_str(" |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }

    // The CPU per call, which the machine's other load disturbs less than rates do.
    let _ = write!(
        out,
        "\nCPU time per call in µs, server / load tool (user and system, from /proc, warm-up \
         included; the server is the stub for direct, nginx's master and workers for nginx, the \
         gateway for Ithil; the stub's own work behind a proxy is in neither figure):\n\n\
         | clients |"
    );
    for target in &targets {
        let _ = write!(out, " {} |", target.label());
    }
    let _ = writeln!(out, "\n|---|{}", "---|".repeat(targets.len()));
    for &clients in &options.clients {
        let _ = write!(out, "| {clients} |");
        for target in &targets {
            let cell = find(cells, clients, *target);
            let _ = write!(
                out,
                " {} / {} |",
                micros(cell.and_then(Cell::cpu_per_call)),
                micros(cell.and_then(Cell::tool_cpu_per_call))
            );
        }
        out.push('\n');
    }

    // The goals.
    out.push('\n');
    if let (Some(i), Some(n), Some(share)) = (
        find(cells, 64, Target::Ithil),
        find(cells, 64, Target::Nginx),
        ratio(cells, 64, Target::Ithil, Target::Nginx),
    ) {
        let verdict = if share >= 0.8 {
            "met".to_owned()
        } else {
            format!(
                "missed: Ithil reaches {:.0} % of the goal",
                share / 0.8 * 100.0
            )
        };
        let _ = writeln!(
            out,
            "- Throughput at 64 clients: Ithil {:.0} calls/s, nginx {:.0} calls/s, ratio \
             {share:.2} (goal at least 0.80): {verdict}.",
            i.report.rate(),
            n.report.rate(),
        );
    }
    if let (Some(i), Some(d)) = (
        find(cells, 16, Target::Ithil),
        find(cells, 16, Target::Direct),
    ) {
        let (ithil, direct) = (i.p(0.5), d.p(0.5));
        let gap = ithil.saturating_sub(direct);
        let verdict = if gap <= Duration::from_millis(1) {
            "met".to_owned()
        } else {
            format!("missed by {} ms", ms(gap - Duration::from_millis(1)))
        };
        let _ = writeln!(
            out,
            "- p50 at 16 clients: Ithil {} ms, direct {} ms, difference {} ms (goal at most \
             1 ms): {verdict}.",
            ms(ithil),
            ms(direct),
            ms(gap),
        );
    }

    render_charging(&mut out, options, cells);

    // The open loop.
    if let Some(rate) = rate {
        let _ = writeln!(
            out,
            "\nFixed rate of {rate:.0} calls/s (half of Ithil's best closed-loop throughput), \
             one pacing thread, latency from each call's scheduled send time:\n\n\
             | target | achieved calls/s | connections | p50 ms | p90 ms | p99 ms | p99.9 ms | \
             max ms | errors | CPU µs per call, server / load tool |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for cell in paced {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                cell.target.label(),
                cell.report.rate(),
                cell.report.connections,
                ms(cell.p(0.5)),
                ms(cell.p(0.9)),
                ms(cell.p(0.99)),
                ms(cell.p(0.999)),
                ms(cell.p(1.0)),
                cell.report.errors,
                micros(cell.cpu_per_call()),
                micros(cell.tool_cpu_per_call()),
            );
        }
    }

    // Memory.
    if memory.idle.is_some() {
        let mib = |kib: Option<u64>| {
            kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".into())
        };
        let _ = writeln!(
            out,
            "\n| gateway resident memory (VmRSS) | idle | under load (peak) | 2 s after | \
             10 s after |\n|---|---|---|---|---|\n| | {} | {} | {} | {} |",
            mib(memory.idle),
            mib(memory.peak),
            mib(memory.after_2s),
            mib(memory.after_10s)
        );
    }
    out
}

fn find(cells: &[Cell], clients: usize, target: Target) -> Option<&Cell> {
    cells
        .iter()
        .find(|c| c.clients == clients && c.target == target)
}

/// The throughput of `target` as a share of that of `baseline` at `clients`.
fn ratio(cells: &[Cell], clients: usize, target: Target, baseline: Target) -> Option<f64> {
    let target = find(cells, clients, target)?.report.rate();
    let baseline = find(cells, clients, baseline)?.report.rate();
    (baseline > 0.0).then(|| target / baseline)
}

/// The cost of durable charging: each charging gateway's throughput as a share of the
/// uncharged gateway's, per client count, and the goal at 64 clients.
fn render_charging(out: &mut String, options: &RunOptions, cells: &[Cell]) {
    let charged: Vec<Target> = [Target::Ithil, Target::IthilPerCall]
        .into_iter()
        .filter(|&t| cells.iter().any(|c| c.target == t && c.clients > 0))
        .collect();
    if charged.is_empty() || !cells.iter().any(|c| c.target == Target::IthilUncharged) {
        return;
    }
    let _ = write!(
        out,
        "\nDurable charging against charging off: throughput of the gateway that commits every \
         charge and its audit record before answering, as a share of the same gateway's with \
         charging switched off (`{}`), in the same run:\n\n| clients |",
        Target::IthilUncharged.label()
    );
    for target in &charged {
        let _ = write!(out, " {} / uncharged |", target.label());
    }
    let _ = writeln!(out, "\n|---|{}", "---|".repeat(charged.len()));
    for &clients in &options.clients {
        let _ = write!(out, "| {clients} |");
        for &target in &charged {
            match ratio(cells, clients, target, Target::IthilUncharged) {
                Some(r) => {
                    let _ = write!(out, " {r:.2} |");
                }
                None => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    let Some(off) = find(cells, 64, Target::IthilUncharged) else {
        return;
    };
    for &target in &charged {
        let (Some(on), Some(share)) = (
            find(cells, 64, target),
            ratio(cells, 64, target, Target::IthilUncharged),
        ) else {
            continue;
        };
        let verdict = if share >= 0.8 { "met" } else { "missed" };
        let _ = writeln!(
            out,
            "- Charging at 64 clients, {}: {:.0} calls/s against {:.0} calls/s uncharged, ratio \
             {share:.2} (goal at least 0.80): {verdict}.",
            target.label(),
            on.report.rate(),
            off.report.rate(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn cell(clients: usize, target: Target, calls: u64, latency_ms: u64) -> Cell {
        let mut report = Report {
            calls,
            all_calls: calls,
            elapsed: Duration::from_secs(1),
            connections: clients,
            ..Report::default()
        };
        report.latencies.push(Duration::from_millis(latency_ms));
        Cell {
            clients,
            target,
            report,
            cpu: Some(Duration::from_millis(100)),
            tool_cpu: None,
        }
    }

    fn options() -> RunOptions {
        RunOptions {
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            clients: vec![16, 64],
            rounds: 1,
            targets: vec![Target::Direct, Target::Nginx, Target::Ithil],
            rate: None,
            no_rate: true,
            ithil_bin: PathBuf::from("ithil"),
            ithil_wrapper: None,
            nginx_bin: PathBuf::from("nginx"),
            dir: PathBuf::from("/tmp"),
            keep: false,
            threads: 1,
        }
    }

    fn machine() -> Machine {
        Machine {
            load_before: "1 1 1".into(),
            load_after: "2 2 2".into(),
            store_fs: "ext4 (/dev/test)".into(),
        }
    }

    /// The report of closed-loop `cells` alone: no fixed rate, no memory samples.
    fn render_closed_loop(cells: &[Cell]) -> String {
        render(&options(), &machine(), cells, None, &[], &Memory::default())
    }

    #[test]
    fn the_report_compares_ithil_with_nginx_and_the_direct_call_against_the_goals() {
        let cells = vec![
            cell(16, Target::Direct, 4000, 1),
            cell(16, Target::Nginx, 3000, 1),
            cell(16, Target::Ithil, 2000, 3),
            cell(64, Target::Direct, 4000, 1),
            cell(64, Target::Nginx, 1000, 1),
            cell(64, Target::Ithil, 500, 2),
        ];
        let text = render_closed_loop(&cells);

        assert!(
            text.contains(
                "| 64 | 4000 | 1.00 | 1.00 | 1000 | 1.00 | 1.00 | 500 | 2.00 | 2.00 | 0.50 |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ratio 0.50 (goal at least 0.80): missed: Ithil reaches 62 % of the goal"
            ),
            "{text}"
        );
        assert!(
            text.contains("difference 2.00 ms (goal at most 1 ms): missed by 1.00 ms"),
            "{text}"
        );
        // 100 ms of server CPU over 1000 calls.
        assert!(
            text.contains("| 64 | 25 / n/a | 100 / n/a | 200 / n/a |"),
            "{text}"
        );
        assert!(text.contains("ext4 (/dev/test)"), "{text}");
        assert!(!text.contains("Fixed rate"), "{text}");
        assert!(!text.contains("Durable charging"), "{text}");
    }

    #[test]
    fn rounds_of_a_cell_add_up_to_one_longer_measurement() {
        let mut sum = cell(64, Target::Ithil, 1000, 2);
        sum.absorb(cell(64, Target::Ithil, 500, 4));
        assert_eq!(sum.report.calls, 1500);
        assert_eq!(sum.report.elapsed, Duration::from_secs(2));
        assert!((sum.report.rate() - 750.0).abs() < 1e-9);
        assert_eq!(sum.cpu, Some(Duration::from_millis(200)));
        assert_eq!(sum.p(1.0), Duration::from_millis(4));
    }

    #[test]
    fn the_report_compares_durable_charging_with_charging_off() {
        let cells = vec![
            cell(16, Target::Ithil, 900, 2),
            cell(16, Target::IthilPerCall, 300, 5),
            cell(16, Target::IthilUncharged, 1000, 2),
            cell(64, Target::Ithil, 850, 8),
            cell(64, Target::IthilPerCall, 200, 30),
            cell(64, Target::IthilUncharged, 1000, 7),
        ];
        let text = render_closed_loop(&cells);

        assert!(text.contains("| 16 | 0.90 | 0.30 |"), "{text}");
        assert!(text.contains("| 64 | 0.85 | 0.20 |"), "{text}");
        assert!(
            text.contains(
                "Ithil: 850 calls/s against 1000 calls/s uncharged, ratio 0.85 (goal at least \
                 0.80): met."
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Ithil per-call commit: 200 calls/s against 1000 calls/s uncharged, ratio 0.20 \
                 (goal at least 0.80): missed."
            ),
            "{text}"
        );
    }
}
