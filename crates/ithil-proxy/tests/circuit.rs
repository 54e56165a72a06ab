//! The circuit breaker in front of a real downstream on loopback that fails on command.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ithil_proxy::circuit::{
    CircuitBreakers, CircuitConfig, CircuitState, Open, Outcome, Transition,
};
use ithil_token::ManualClock;
use time::macros::datetime;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A downstream that answers 500 while `failing` is set and 200 otherwise, or never answers while
/// `hanging` is set; it counts the requests it receives and signals each arrival.
struct Downstream {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    hanging: Arc<AtomicBool>,
    received: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    server: JoinHandle<()>,
}

impl Downstream {
    async fn start() -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let failing = Arc::new(AtomicBool::new(false));
        let hanging = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(Notify::new());

        let (fail, hang) = (failing.clone(), hanging.clone());
        let (count, arrival) = (received.clone(), arrived.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (fail, hang) = (fail.clone(), hang.clone());
                let (count, arrival) = (count.clone(), arrival.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        arrival.notify_one();
                        let hang = hang.load(Ordering::SeqCst);
                        let status = if fail.load(Ordering::SeqCst) {
                            StatusCode::INTERNAL_SERVER_ERROR
                        } else {
                            StatusCode::OK
                        };
                        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *response.status_mut() = status;
                        async move {
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    // A connection the client drops ends with an error that is no concern here.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        Downstream {
            addr,
            failing,
            hanging,
            received,
            arrived,
            server,
        }
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn hang(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits until the downstream has received `n` requests in all.
    async fn wait_for(&self, n: usize) {
        while self.received() < n {
            self.arrived.notified().await;
        }
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A caller that goes through the circuit the way the gateway does.
struct Caller {
    breakers: CircuitBreakers,
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    transitions: Vec<Transition>,
}

impl Caller {
    fn new(breakers: CircuitBreakers, downstream: &Downstream) -> Caller {
        Caller {
            breakers,
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("http://{}/posts/1", downstream.addr),
            transitions: Vec::new(),
        }
    }

    /// Calls the downstream if the circuit allows it; the status it answered, or the refusal.
    async fn call(&mut self) -> Result<StatusCode, Open> {
        let permit = self.breakers.acquire("posts")?;
        self.transitions.extend(permit.transition().cloned());

        let request = Request::get(&self.url)
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let (status, outcome) = match self.client.request(request).await {
            Ok(response) => (response.status(), Outcome::from_status(response.status())),
            // A refused or broken connection is the downstream's failure.
            Err(_) => (StatusCode::BAD_GATEWAY, Outcome::Failure),
        };

        self.transitions.extend(permit.record(outcome));
        Ok(status)
    }

    fn state(&self) -> Option<CircuitState> {
        self.breakers.state("posts")
    }

    fn last_change(&self) -> (CircuitState, CircuitState) {
        let last = self.transitions.last().expect("a transition");
        (last.from, last.to)
    }
}

fn caller(downstream: &Downstream) -> (Caller, ManualClock) {
    let clock = ManualClock::new(datetime!(2025-03-01 12:00 UTC));
    let breakers =
        CircuitBreakers::new(CircuitConfig::default(), Arc::new(clock.clone())).expect("valid");
    (Caller::new(breakers, downstream), clock)
}

fn past_the_break() -> time::Duration {
    time::Duration::try_from(CircuitConfig::DEFAULT_BREAK_DURATION).expect("short")
        + time::Duration::seconds(1)
}

#[tokio::test]
async fn a_failing_downstream_is_isolated_and_one_probe_closes_the_circuit_once_it_recovers() {
    let downstream = Downstream::start().await;
    let (mut caller, clock) = caller(&downstream);
    downstream.fail(true);

    // Five failed calls reach the downstream; the fifth opens the circuit.
    for _ in 0..5 {
        assert_eq!(caller.call().await, Ok(StatusCode::INTERNAL_SERVER_ERROR));
    }
    assert_eq!(downstream.received(), 5);
    assert_eq!(caller.state(), Some(CircuitState::Open));
    assert_eq!(
        caller.last_change(),
        (CircuitState::Closed, CircuitState::Open)
    );

    // While it is open, calls are refused and never reach the downstream.
    for _ in 0..20 {
        assert!(caller.call().await.is_err());
    }
    assert_eq!(downstream.received(), 5);

    // The downstream recovers, the break ends, and exactly one probe reaches it and closes the
    // circuit.
    downstream.fail(false);
    clock.advance(past_the_break());
    assert_eq!(caller.call().await, Ok(StatusCode::OK));
    assert_eq!(downstream.received(), 6);
    assert_eq!(caller.state(), Some(CircuitState::Closed));
    let changes: Vec<_> = caller.transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        changes,
        [
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::Open, CircuitState::HalfOpen),
            (CircuitState::HalfOpen, CircuitState::Closed),
        ]
    );

    // Calls flow again.
    for _ in 0..3 {
        assert_eq!(caller.call().await, Ok(StatusCode::OK));
    }
    assert_eq!(downstream.received(), 9);
}

#[tokio::test]
async fn a_probe_that_fails_again_reopens_the_circuit_for_a_fresh_break() {
    let downstream = Downstream::start().await;
    let (mut caller, clock) = caller(&downstream);
    downstream.fail(true);
    for _ in 0..5 {
        caller.call().await.expect("closed");
    }

    clock.advance(past_the_break());
    assert_eq!(caller.call().await, Ok(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(downstream.received(), 6);
    assert_eq!(
        caller.last_change(),
        (CircuitState::HalfOpen, CircuitState::Open)
    );

    let refused = caller.call().await.expect_err("open again");
    assert_eq!(refused.retry_after.as_secs(), 30);
    assert_eq!(downstream.received(), 6);

    let snapshot = &caller.breakers.snapshot()[0];
    assert_eq!(snapshot.opened_count, 2);
}

#[tokio::test]
async fn a_probe_whose_call_is_cancelled_in_flight_lets_the_next_call_probe() {
    let downstream = Downstream::start().await;
    let (mut caller, clock) = caller(&downstream);
    downstream.fail(true);
    for _ in 0..5 {
        caller.call().await.expect("closed");
    }
    clock.advance(past_the_break());

    // The probe reaches a downstream that never answers, and its caller goes away.
    downstream.hang(true);
    let probe = caller.breakers.acquire("posts").expect("the probe");
    let client = caller.client.clone();
    let request = Request::get(&caller.url)
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let call = tokio::spawn(async move {
        let answer = client.request(request).await;
        probe.record(match answer {
            Ok(response) => Outcome::from_status(response.status()),
            Err(_) => Outcome::Failure,
        })
    });
    downstream.wait_for(6).await;
    assert!(caller.call().await.is_err(), "the probe is still in flight");
    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());

    // Its permit was dropped unrecorded: the circuit is still half-open, and the next call is the
    // probe that closes it.
    assert_eq!(caller.state(), Some(CircuitState::HalfOpen));
    downstream.hang(false);
    downstream.fail(false);
    assert_eq!(caller.call().await, Ok(StatusCode::OK));
    assert_eq!(downstream.received(), 7);
    assert_eq!(caller.state(), Some(CircuitState::Closed));
}

#[tokio::test]
async fn client_errors_from_a_real_downstream_do_not_open_the_circuit() {
    // A downstream that answers 404 to everything: the agent asks for what is not there.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let clock = ManualClock::new(datetime!(2025-03-01 12:00 UTC));
    let breakers =
        CircuitBreakers::new(CircuitConfig::default(), Arc::new(clock)).expect("valid config");
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    for _ in 0..10 {
        let permit = breakers.acquire("posts").expect("the circuit stays closed");
        let request = Request::get(format!("http://{addr}/missing"))
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = client
            .request(request)
            .await
            .expect("the downstream answers");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(
            permit
                .record(Outcome::from_status(response.status()))
                .is_none()
        );
    }
    assert_eq!(breakers.state("posts"), Some(CircuitState::Closed));
    server.abort();
}
