//! The listener: accept TCP connections, serve HTTP/1.1 and h2c on each, and shut down
//! gracefully on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ithil_token::SystemClock;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::{Config, Environment};
use crate::routes;
use crate::state::{AppState, StateError};
use crate::store::{Store, StoreError};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    let store = Store::open(&config.server.data_dir)?;
    info!(store = %store.path().display(), "store open");

    let (state, writer) = AppState::build(&config, store, Arc::new(SystemClock), &env)?;
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

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();

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
                let state = Arc::clone(&state);
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(routes::route(&state, request, peer).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(peer = %peer, error = %error, "connection ended with an error");
                    }
                });
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

    info!(cause = %cause, timeout_s = config.server.shutdown_timeout.as_secs(), "shutting down");
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
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
