//! The two ways of loading a server: closed loop (N connections, each sending its next call as
//! soon as the last one is answered) for throughput, and open loop (calls sent at a fixed rate,
//! whatever the answers do) for latency below saturation.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::BenchError;
use crate::client::{Conn, Endpoint};
use crate::latency::Samples;

/// How long a connection that broke keeps trying to reconnect before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(5);

/// When a closed-loop measurement ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After this many calls (after the warm-up), spread over the connections.
    Calls(u64),
}

/// What one measurement found.
#[derive(Debug, Default)]
pub struct Report {
    /// Successful calls in the measured window.
    pub calls: u64,
    /// Successful calls in all, the warm-up's too.
    pub all_calls: u64,
    /// Failed calls in the measured window.
    pub errors: u64,
    /// The first failure, for the log.
    pub first_error: Option<String>,
    /// The measured window.
    pub elapsed: Duration,
    /// The latency of every successful call.
    pub latencies: Samples,
    /// The most connections open at once.
    pub connections: usize,
}

impl Report {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds another measurement of the same target to this one, as if it were one longer
    /// window.
    pub fn absorb(&mut self, other: Report) {
        self.calls += other.calls;
        self.all_calls += other.all_calls;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.connections = self.connections.max(other.connections);
    }

    fn failure(&mut self, error: &BenchError) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

/// Loads `endpoint` from `connections` connections in a closed loop: each sends its next call
/// when the last is answered. Calls during `warmup` are not counted.
///
/// # Errors
///
/// Returns an error when a connection cannot be opened at the start.
pub async fn closed_loop(
    endpoint: Arc<Endpoint>,
    connections: usize,
    warmup: Duration,
    stop: Stop,
) -> Result<Report, BenchError> {
    // Every connection (and MCP session) is open before the clock starts.
    let mut opening = JoinSet::new();
    for _ in 0..connections {
        opening.spawn(Conn::open(Arc::clone(&endpoint)));
    }
    let mut conns = Vec::with_capacity(connections);
    while let Some(joined) = opening.join_next().await {
        conns.push(joined.map_err(|e| BenchError::Task(e.to_string()))??);
    }

    let measure_from = Instant::now() + warmup;
    let (end, remaining) = match stop {
        Stop::After(duration) => (Some(measure_from + duration), None),
        Stop::Calls(n) => (None, Some(Arc::new(AtomicI64::new(n as i64)))),
    };

    let mut workers = JoinSet::new();
    for conn in conns {
        let worker = Worker {
            endpoint: Arc::clone(&endpoint),
            measure_from,
            end,
            remaining: remaining.clone(),
        };
        workers.spawn(worker.run(conn));
    }

    let mut report = Report {
        connections,
        ..Report::default()
    };
    let mut last_done = measure_from;
    while let Some(joined) = workers.join_next().await {
        let part = joined.map_err(|e| BenchError::Task(e.to_string()))?;
        report.calls += part.report.calls;
        report.all_calls += part.report.all_calls;
        report.errors += part.report.errors;
        if report.first_error.is_none() {
            report.first_error = part.report.first_error;
        }
        report.latencies.extend(part.report.latencies);
        last_done = last_done.max(part.last_done);
    }
    report.elapsed = match end {
        Some(end) => end - measure_from,
        None => last_done - measure_from,
    };
    Ok(report)
}

/// One connection of a closed loop.
struct Worker {
    endpoint: Arc<Endpoint>,
    measure_from: Instant,
    end: Option<Instant>,
    remaining: Option<Arc<AtomicI64>>,
}

struct WorkerReport {
    report: Report,
    last_done: Instant,
}

impl Worker {
    async fn run(self, mut conn: Conn) -> WorkerReport {
        let mut report = Report::default();
        let mut last_done = self.measure_from;
        loop {
            let start = Instant::now();
            let measuring = start >= self.measure_from;
            if self.end.is_some_and(|end| start >= end) {
                break;
            }
            if measuring
                && let Some(remaining) = &self.remaining
                && remaining.fetch_sub(1, Ordering::Relaxed) <= 0
            {
                break;
            }

            let result = conn.call().await;
            let done = Instant::now();
            // A call still running when the window closes is not counted.
            let counted = measuring && self.end.is_none_or(|end| done <= end);
            if result.is_ok() {
                report.all_calls += 1;
            }
            match result {
                Ok(()) if counted => {
                    report.calls += 1;
                    report.latencies.push(done - start);
                    last_done = done;
                }
                Ok(()) => {}
                Err(error) => {
                    if counted {
                        report.failure(&error);
                    }
                    // The connection may be broken: start a fresh one, as a client would.
                    match self.reconnect().await {
                        Some(fresh) => conn = fresh,
                        None => {
                            return WorkerReport { report, last_done };
                        }
                    }
                }
            }
        }
        conn.close().await;
        WorkerReport { report, last_done }
    }

    async fn reconnect(&self) -> Option<Conn> {
        let give_up = Instant::now() + RECONNECT_FOR;
        loop {
            if let Ok(conn) = Conn::open(Arc::clone(&self.endpoint)).await {
                return Some(conn);
            }
            let now = Instant::now();
            if now >= give_up || self.end.is_some_and(|end| now >= end) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The most connections the open loop of `run` and of `load --rate` may open.
pub const OPEN_LOOP_MAX_CONNECTIONS: usize = 256;

/// Sends calls to `endpoint` at `rate` per second for `warmup` plus `duration`, and reports
/// the calls scheduled after the warm-up.
///
/// One thread paces the calls (a plain sleeping thread: tokio's timer rounds to whole
/// milliseconds, too coarse for sub-millisecond intervals) and one single-threaded runtime
/// sends them, each on an idle connection of a pool that opens a new connection only when
/// every open one is busy, up to `max_connections`. A call's latency runs from the moment it
/// was scheduled to its answer, so a call that had to wait for the sender is not flattered
/// (no coordinated omission).
///
/// # Errors
///
/// Returns an error when the runtime or the pacing thread cannot start.
pub fn open_loop(
    endpoint: Arc<Endpoint>,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    max_connections: usize,
) -> Result<Report, BenchError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(BenchError::Usage(
            "the rate must be a positive number".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Io)?;
    let handle = runtime.handle().clone();
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        open: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        max: max_connections,
    });

    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();

    let pacer = {
        let pool = Arc::clone(&pool);
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                for i in 0u32.. {
                    let scheduled = start + interval * i;
                    if scheduled >= end {
                        break;
                    }
                    let now = Instant::now();
                    if scheduled > now {
                        std::thread::sleep(scheduled - now);
                    }
                    let tx = tx.clone();
                    let pool = Arc::clone(&pool);
                    let endpoint = Arc::clone(&endpoint);
                    handle.spawn(async move {
                        let result = pool.call(endpoint).await;
                        let _ = tx.send(Outcome {
                            scheduled,
                            done: Instant::now(),
                            result,
                        });
                    });
                }
            })
            .map_err(BenchError::Io)?
    };

    // The channel closes once the pacer and every call it started have dropped their senders.
    let mut report = Report::default();
    runtime.block_on(async {
        while let Some(outcome) = rx.recv().await {
            if outcome.result.is_ok() {
                report.all_calls += 1;
            }
            if outcome.scheduled < measure_from {
                continue;
            }
            match outcome.result {
                Ok(()) => {
                    report.calls += 1;
                    report.latencies.push(outcome.done - outcome.scheduled);
                }
                Err(error) => report.failure(&error),
            }
        }
        let idle = std::mem::take(&mut *pool.idle.lock().unwrap_or_else(PoisonError::into_inner));
        for conn in idle {
            conn.close().await;
        }
    });
    pacer
        .join()
        .map_err(|_| BenchError::Task("the pacing thread panicked".into()))?;
    report.elapsed = duration;
    report.connections = pool.most.load(Ordering::Relaxed);
    Ok(report)
}

/// The answer to one paced call.
struct Outcome {
    scheduled: Instant,
    done: Instant,
    result: Result<(), BenchError>,
}

/// The connections of an open loop.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    open: AtomicUsize,
    most: AtomicUsize,
    max: usize,
}

impl Pool {
    /// Makes one call on an idle connection, or on a new one when none is idle.
    async fn call(&self, endpoint: Arc<Endpoint>) -> Result<(), BenchError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
                if open > self.max {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    return Err(BenchError::Answer(format!(
                        "all {} connections were busy",
                        self.max
                    )));
                }
                self.most.fetch_max(open, Ordering::Relaxed);
                match Conn::open(endpoint).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        return Err(error);
                    }
                }
            }
        };

        let result = conn.call().await;
        if result.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        } else {
            // A connection that failed a call may be broken; it is dropped, not reused.
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Shape;
    use crate::stub;

    /// Starts the stub on a free loopback port of the current runtime.
    async fn stub_endpoint() -> Arc<Endpoint> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(stub::serve_on(listener));
        let shape = Shape::Get {
            expect: Some(stub::body()),
        };
        Arc::new(Endpoint::new(&format!("http://{addr}/data/7"), shape).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_loop_of_a_fixed_count_makes_exactly_that_many_calls() {
        let endpoint = stub_endpoint().await;
        let report = closed_loop(endpoint, 4, Duration::ZERO, Stop::Calls(200))
            .await
            .unwrap();
        assert_eq!(report.calls, 200);
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.connections, 4);
        assert!(report.rate() > 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_with_an_unexpected_answer_count_as_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(stub::serve_on(listener));
        let shape = Shape::Get {
            expect: Some(bytes::Bytes::from_static(b"something else")),
        };
        let endpoint = Arc::new(Endpoint::new(&format!("http://{addr}/"), shape).unwrap());
        let report = closed_loop(endpoint, 2, Duration::ZERO, Stop::Calls(10))
            .await
            .unwrap();
        assert_eq!(report.calls, 0);
        assert_eq!(report.errors, 10);
        assert!(report.first_error.unwrap().contains("unexpected body"));
    }

    #[test]
    fn an_open_loop_sends_the_scheduled_calls_after_the_warm_up() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let endpoint = runtime.block_on(stub_endpoint());
        // 200 calls per second for half a second after a tenth of a second of warm-up.
        let report = open_loop(
            endpoint,
            200.0,
            Duration::from_millis(100),
            Duration::from_millis(500),
            64,
        )
        .unwrap();
        assert_eq!(report.calls + report.errors, 100);
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert!(report.connections >= 1 && report.connections <= 64);
    }

    #[test]
    fn a_rate_that_is_not_positive_is_refused() {
        let endpoint =
            Arc::new(Endpoint::new("http://127.0.0.1:9/", Shape::Get { expect: None }).unwrap());
        for rate in [0.0, -1.0, f64::NAN] {
            let result = open_loop(
                Arc::clone(&endpoint),
                rate,
                Duration::ZERO,
                Duration::ZERO,
                1,
            );
            assert!(matches!(result, Err(BenchError::Usage(_))), "{rate}");
        }
    }
}
