//! The listener: accept TCP connections, serve HTTP/1.1 and h2c on each, and shut down
//! gracefully on SIGINT or SIGTERM.
//!
//! Every connection is held to the request limits of the configuration: a cap on connections
//! per peer (checked at accept), the size of a request head and the time it may take (hyper's),
//! the time a request body may take, and the time a connection may stay without a request. Each
//! limit answers with its own status where HTTP has one; `docs/hardening.md` lists them.

mod limits;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ithil_token::SystemClock;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, warn};

use self::limits::{Activity, PeerSlot, PeerSlots, TimedBody};
use crate::config::{Config, Environment, ServerConfig};
use crate::routes::{self, ApiError};
use crate::state::{AppState, StateError};
use crate::store::StoreError;

/// At most this many refused connections are answered at once; beyond that a refused
/// connection is closed without an answer, so a flood costs no more than the cap allows.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How long the answer to a refused connection may take to write and to be read.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The handlers' state could not be built.
    #[error(transparent)]
    State(#[from] StateError),

    /// The listening address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),

    /// The budget writer thread could not be started.
    #[error("cannot start the budget writer thread")]
    Writer(#[source] std::io::Error),
}

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Interrupt,
    Terminate,
    Hangup,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Interrupt => "SIGINT",
            Cause::Terminate => "SIGTERM",
            Cause::Hangup => "SIGHUP",
        })
    }
}

/// How often idle sessions are swept and old usage and audit records purged.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Opens the store, binds the listener and serves until a shutdown signal, then drains.
///
/// Returns the budget writer's thread: it ends once the runtime has dropped the last handler
/// state, and the caller joins it so that every queued commit lands before the process exits.
///
/// # Errors
///
/// Fails when the store, the state or the listener cannot be set up.
pub async fn serve(
    config: Config,
    env: Environment,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    info!(config = %config, "starting");
    let (state, writer) = AppState::open(&config, Arc::new(SystemClock), &env)?;
    info!(store = %state.store.path().display(), "store open");
    let writer = std::thread::Builder::new()
        .name("ithil-budget-writer".into())
        .spawn(move || writer.run())
        .map_err(ServeError::Writer)?;
    let state = Arc::new(state);
    info!(
        agents = state.registry.len(),
        kid = %state.signing_kid,
        "registry loaded"
    );
    info!(
        tools = state.gateway.catalog().len(),
        files = config.catalog.files.len(),
        discovery = state
            .catalog
            .discovery()
            .map(|d| d.downstream.base_url.to_string()),
        "catalog loaded"
    );
    if state.catalog.discovery().is_some() {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let complete = state
                .catalog
                .discover_at_start(state.gateway.forwarder(), &state.gateway)
                .await;
            state.readiness.set_catalog(complete);
        });
    }
    tokio::spawn(maintenance(Arc::clone(&state)));

    let mut signals = Signals::install()?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    // The test harness reads this line to learn the port when `--listen` asked for port 0.
    info!("listening on http://{local}");

    let builder = Arc::new(http_builder(&config.server));
    let limits = ConnectionLimits::from(&config.server);
    let peers = PeerSlots::new(config.server.max_connections_per_peer);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let (stop, stopping) = watch::channel(false);
    // Every connection task holds a clone of `open`; `closed` ends once all of them are gone.
    let (open, mut closed) = mpsc::channel::<Infallible>(1);

    let cause = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Running out of file descriptors is passing; back off instead of
                        // spinning.
                        warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = peers.acquire(peer.ip()) else {
                    debug!(peer = %peer, "connection refused: too many from this peer");
                    if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream).await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                // Answers are written whole; waiting to coalesce them only adds latency.
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(Connection {
                    builder: Arc::clone(&builder),
                    state: Arc::clone(&state),
                    stream,
                    peer,
                    limits,
                    stopping: stopping.clone(),
                    _slot: slot,
                    _open: open.clone(),
                }));
            }
            cause = signals.next() => {
                if cause != Cause::Hangup {
                    break cause;
                }
                info!("SIGHUP: reloading the catalog");
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    match state.catalog.reload(state.gateway.forwarder(), &state.gateway).await {
                        Ok(_) => state.readiness.set_catalog(true),
                        Err(error) => warn!(
                            error = %error,
                            source = ?std::error::Error::source(&error),
                            "catalog reload failed; the previous catalog stays"
                        ),
                    }
                });
            }
        }
    };

    // From here no connection is accepted: a request either runs on a connection that is
    // already open, to its end, or never starts.
    info!(cause = %cause, timeout_s = config.server.shutdown_timeout.as_secs(), "shutting down");
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    tokio::select! {
        _ = closed.recv() => info!("all connections closed"),
        () = tokio::time::sleep(config.server.shutdown_timeout) => {
            warn!("shutdown timeout reached; closing the remaining connections");
        }
        cause = signals.next() => warn!(cause = %cause, "second signal; stopping at once"),
    }

    // The store closes when the last handle drops; redb commits are durable when they return,
    // so nothing is left to flush but the file handle. Connections still open after the
    // timeout hold the state until the runtime drops them.
    drop(state);
    Ok(writer)
}

/// The HTTP/1.1 and HTTP/2 settings of every connection.
fn http_builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers a head larger than its read buffer with 431 and closes the connection. Its
    // header timer starts whenever the connection waits for a head, so it also ends an idle
    // keep-alive connection; hyper closes such a connection without an answer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(server.max_header_bytes)
        .header_read_timeout(server.header_read_timeout);
    // h2 answers a header list over the bound with 431 on that stream.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The time limits one connection is held to.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    /// How long a request head may take; also the bound on a connection's first request.
    header_read_timeout: Duration,
    /// How long a request body may take after its head.
    body_read_timeout: Duration,
    /// How long a connection may stay without a request in flight.
    idle_timeout: Duration,
}

impl From<&ServerConfig> for ConnectionLimits {
    fn from(server: &ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: server.header_read_timeout,
            body_read_timeout: server.body_read_timeout,
            idle_timeout: server.idle_timeout,
        }
    }
}

/// Everything a connection task owns.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    state: Arc<AppState>,
    stream: TcpStream,
    peer: SocketAddr,
    limits: ConnectionLimits,
    stopping: watch::Receiver<bool>,
    /// The peer's connection slot, given back when the task ends.
    _slot: PeerSlot,
    /// Keeps the shutdown's drain waiting until the task ends.
    _open: mpsc::Sender<Infallible>,
}

/// Serves one connection until it closes, asking it to close gracefully at shutdown or once it
/// has been idle too long.
async fn connection(conn: Connection) {
    let Connection {
        builder,
        state,
        stream,
        peer,
        limits,
        mut stopping,
        _slot,
        _open,
    } = conn;
    let activity = Activity::new();

    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |request: Request<Incoming>| {
            let state = Arc::clone(&state);
            let in_flight = activity.begin();
            async move {
                let response = handle(&state, request, peer, limits.body_read_timeout).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);

    // A graceful close lets the request in flight finish (HTTP/1.1) or sends GOAWAY and lets the
    // open streams finish (HTTP/2); a connection that has not sent a request closes at once.
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = served.as_mut() => break result,
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            () = activity.idle(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                debug!(peer = %peer, "closing an idle connection");
                closing = true;
                served.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = result {
        debug!(peer = %peer, error = %error, "connection ended with an error");
    }
}

/// Answers one request, holding its body to the body deadline.
async fn handle(
    state: &AppState,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
) -> Response<routes::Body> {
    let http1 = request.version() < Version::HTTP_2;
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + body_timeout;
    let request = request.map(|body| TimedBody::new(body, deadline, Arc::clone(&expired)));

    routes::route_then(state, request, peer, |response| {
        if !expired.load(Ordering::Acquire) {
            return response;
        }

        // The handler saw a body that broke off; the truth is that it stopped arriving.
        debug!(peer = %peer, "request body did not arrive in time");
        let mut error = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        );
        if http1 {
            // The rest of the body may still come; the connection cannot carry another
            // request.
            error = error.with_header(CONNECTION, HeaderValue::from_static("close"));
        }
        error.into_response()
    })
    .await
}

/// Answers a connection over the peer's cap with 503 and closes it.
///
/// The request is not read. After the answer, the write side is shut and what the client sent
/// is read and dropped for a moment: closing a socket with unread data makes the kernel reset
/// the connection, and the client could lose the answer.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this \
                        address holds too many open connections; close one and retry\"}}";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Sweeps expired sessions and purges usage and audit records past their retention.
async fn maintenance(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let swept = state.gateway.sessions().sweep();
        let now = state.clock.now();

        let purged_usage = state
            .charges
            .purge(ithil_budget::utc_day(now))
            .await
            .unwrap_or_else(|error| {
                warn!(error = %error, "budget history purge failed");
                0
            });

        // Audit purges run in small transactions on a blocking thread, so tool calls never
        // wait behind them for long.
        let cutoff = now - time::Duration::days(i64::from(state.audit_retention_days));
        let audit = Arc::clone(&state.audit);
        let purged_audit = tokio::task::spawn_blocking(move || audit.purge_before(cutoff, 500))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .unwrap_or_else(|error| {
                warn!(error = %error, "audit purge failed");
                0
            });
        debug!(swept, purged_usage, purged_audit, "maintenance done");
    }
}

/// SIGINT, SIGTERM and SIGHUP as one stream of causes.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, ServeError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                terminate: signal(SignalKind::terminate()).map_err(ServeError::Signals)?,
                interrupt: signal(SignalKind::interrupt()).map_err(ServeError::Signals)?,
                hangup: signal(SignalKind::hangup()).map_err(ServeError::Signals)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Cause {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Cause::Interrupt,
                _ = self.terminate.recv() => Cause::Terminate,
                _ = self.hangup.recv() => Cause::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Cause::Interrupt
        }
    }
}
