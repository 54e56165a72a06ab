//! The pooled HTTP client that forwards tool calls to downstreams.
//!
//! One [`Forwarder`] serves every downstream. Its connection pools are keyed by connect
//! timeout: hyper's connector holds one connect timeout, so downstreams that share a value
//! (the usual case, since the default is 5 seconds) share one client and its pool, and a
//! downstream with its own value gets a client of its own. The total timeout and the response
//! size cap are applied per request, so they need no client of their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::catalog::{CatalogError, CatalogPart, Downstream};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where a failure came from, which decides the status, the JSON-RPC code and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// The downstream API: refused, slow, broken or oversized answers.
    Downstream,
    /// The gateway itself: a request it could not send.
    Gateway,
}

/// Why a forwarded request produced no response.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection could be made (refused, unresolvable, TLS failure or connect timeout).
    #[error("could not connect to downstream {downstream}")]
    Connect {
        /// The downstream's name.
        downstream: String,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The whole exchange took longer than the downstream's request timeout.
    #[error("downstream {downstream} did not answer within {timeout:?}")]
    Timeout {
        /// The downstream's name.
        downstream: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The response body is larger than the downstream's cap.
    #[error("response of downstream {downstream} exceeds {limit} bytes")]
    TooLarge {
        /// The downstream's name.
        downstream: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The connection failed after it was made (reset, protocol error).
    #[error("request to downstream {downstream} failed")]
    Exchange {
        /// The downstream's name.
        downstream: String,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The response body could not be read to its end.
    #[error("reading the response of downstream {downstream} failed")]
    Body {
        /// The downstream's name.
        downstream: String,
        /// The body's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The gateway built a request it cannot send (no scheme or host in its URI).
    #[error("request for downstream {downstream} has no absolute uri")]
    NotAbsolute {
        /// The downstream's name.
        downstream: String,
    },
}

impl ForwardError {
    /// Where the failure came from.
    pub fn origin(&self) -> ErrorOrigin {
        match self {
            ForwardError::NotAbsolute { .. } => ErrorOrigin::Gateway,
            _ => ErrorOrigin::Downstream,
        }
    }

    /// Whether trying again later may succeed (the downstream may come up or recover).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ForwardError::Connect { .. }
                | ForwardError::Timeout { .. }
                | ForwardError::Exchange { .. }
                | ForwardError::Body { .. }
        )
    }

    /// The name of the downstream the request was for.
    pub fn downstream(&self) -> &str {
        match self {
            ForwardError::Connect { downstream, .. }
            | ForwardError::Timeout { downstream, .. }
            | ForwardError::TooLarge { downstream, .. }
            | ForwardError::Exchange { downstream, .. }
            | ForwardError::Body { downstream, .. }
            | ForwardError::NotAbsolute { downstream } => downstream,
        }
    }
}

/// A downstream's complete response.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body, at most the downstream's cap.
    pub body: Bytes,
    /// Time from sending the request to the last body byte.
    pub latency: Duration,
}

/// The shared, pooled client for every downstream; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    clients: Arc<Mutex<HashMap<Duration, HttpClient>>>,
    pool_idle_timeout: Duration,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Forwarder {
    fn default() -> Forwarder {
        Forwarder::new()
    }
}

impl Forwarder {
    /// How long an idle pooled connection is kept.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

    /// Creates a forwarder with the default pool idle timeout (90 seconds).
    pub fn new() -> Forwarder {
        Forwarder::with_pool_idle_timeout(Forwarder::DEFAULT_POOL_IDLE_TIMEOUT)
    }

    /// Creates a forwarder whose pools keep idle connections for `idle`.
    pub fn with_pool_idle_timeout(idle: Duration) -> Forwarder {
        Forwarder {
            clients: Arc::new(Mutex::new(HashMap::new())),
            pool_idle_timeout: idle,
        }
    }

    fn client(&self, connect_timeout: Duration) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(connect_timeout)
            .or_insert_with(|| build_client(connect_timeout, self.pool_idle_timeout))
            .clone()
    }

    /// Sends `req` to `ds` and reads the whole response.
    ///
    /// The downstream's request timeout covers sending, waiting and reading the body; its
    /// connect timeout covers making the connection; its size cap bounds the body, checked
    /// against `Content-Length` first and enforced while reading.
    ///
    /// # Errors
    ///
    /// Returns [`ForwardError`] when no complete response arrives. A response with any status
    /// is not an error here.
    pub async fn send(
        &self,
        ds: &Downstream,
        req: Request<Bytes>,
    ) -> Result<Forwarded, ForwardError> {
        if req.uri().scheme().is_none() || req.uri().authority().is_none() {
            return Err(ForwardError::NotAbsolute {
                downstream: ds.name.clone(),
            });
        }
        let client = self.client(ds.connect_timeout);
        let limit = ds.max_response_bytes;
        let started = Instant::now();

        let exchange = async {
            let resp = client.request(req.map(Full::new)).await.map_err(|e| {
                if e.is_connect() {
                    ForwardError::Connect {
                        downstream: ds.name.clone(),
                        source: e,
                    }
                } else {
                    ForwardError::Exchange {
                        downstream: ds.name.clone(),
                        source: e,
                    }
                }
            })?;
            let (parts, body) = resp.into_parts();

            // A declared length over the cap is refused before a byte of the body is read.
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(ForwardError::TooLarge {
                    downstream: ds.name.clone(),
                    limit,
                });
            }

            let body = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ForwardError::TooLarge {
                        downstream: ds.name.clone(),
                        limit,
                    }
                } else {
                    ForwardError::Body {
                        downstream: ds.name.clone(),
                        source: e,
                    }
                }
            })?;
            Ok((parts, body.to_bytes()))
        };

        let (parts, body) = tokio::time::timeout(ds.request_timeout, exchange)
            .await
            .map_err(|_| ForwardError::Timeout {
                downstream: ds.name.clone(),
                timeout: ds.request_timeout,
            })??;
        Ok(Forwarded {
            status: parts.status,
            headers: parts.headers,
            body,
            latency: started.elapsed(),
        })
    }

    /// Sends `GET {base}{path}` to `ds` with the downstream's configured headers.
    ///
    /// # Errors
    ///
    /// Returns [`ForwardError`] as [`Forwarder::send`] does, and
    /// [`ForwardError::NotAbsolute`] when the joined URL is not a valid URI.
    pub async fn get(&self, ds: &Downstream, path: &str) -> Result<Forwarded, ForwardError> {
        let uri = join(&ds.base_url, path).ok_or_else(|| ForwardError::NotAbsolute {
            downstream: ds.name.clone(),
        })?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::ACCEPT, "application/json")
            .body(Bytes::new())
            .map_err(|_| ForwardError::NotAbsolute {
                downstream: ds.name.clone(),
            })?;
        for (name, value) in &ds.headers {
            req.headers_mut().append(name.clone(), value.clone());
        }
        self.send(ds, req).await
    }
}

/// How [`Forwarder::discover_with_retry`] waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles after each further one. Default is
    /// 500 milliseconds.
    pub initial_delay: Duration,
    /// The longest wait between two attempts. Default is 30 seconds.
    pub max_delay: Duration,
    /// How many attempts in all; `None` retries until the downstream answers. Default is
    /// `None`.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

/// Why a downstream's discovery answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The request failed (the downstream is unreachable, slow or broken).
    #[error("discovery request failed")]
    Fetch(#[source] ForwardError),
    /// The downstream answered with a status other than 2xx.
    #[error("downstream {downstream} answered discovery with http {status}")]
    Status {
        /// The downstream's name.
        downstream: String,
        /// The status it answered with.
        status: u16,
    },
    /// The answer is not a valid discovery document.
    #[error("discovery answer is invalid")]
    Invalid(#[source] CatalogError),
}

impl DiscoveryError {
    /// Whether asking again later may succeed: the downstream could not be reached or answered
    /// 5xx, 429 or 408 (still starting, say). A 4xx or an invalid document will not change by
    /// waiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscoveryError::Fetch(e) => e.is_retryable(),
            DiscoveryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            DiscoveryError::Invalid(_) => false,
        }
    }
}

impl Forwarder {
    /// Fetches `GET {base}{schema_path}` from `ds` once and turns the answer into a catalog
    /// part holding `ds` and its tools.
    ///
    /// # Errors
    ///
    /// Returns [`DiscoveryError`] when the request fails, the status is not 2xx, or the
    /// document is invalid.
    pub async fn discover(
        &self,
        ds: &Downstream,
        schema_path: &str,
    ) -> Result<CatalogPart, DiscoveryError> {
        let resp = self
            .get(ds, schema_path)
            .await
            .map_err(DiscoveryError::Fetch)?;
        if !resp.status.is_success() {
            return Err(DiscoveryError::Status {
                downstream: ds.name.clone(),
                status: resp.status.as_u16(),
            });
        }
        crate::catalog::from_discovery(ds, &resp.body).map_err(DiscoveryError::Invalid)
    }

    /// Returns a future that fetches `ds`'s discovery answer, retrying with exponential
    /// backoff while the failure is retryable, for the caller to spawn or await.
    ///
    /// The future owns everything it needs, so it can run on its own task while the gateway
    /// serves its other tools; the caller merges the part into the catalog when it arrives,
    /// and keeps the catalog it has when the future fails.
    pub fn discover_with_retry(
        &self,
        ds: Downstream,
        schema_path: String,
        policy: RetryPolicy,
    ) -> impl Future<Output = Result<CatalogPart, DiscoveryError>> + Send + 'static {
        let forwarder = self.clone();
        async move {
            let mut delay = policy.initial_delay;
            let mut attempt: u32 = 1;
            loop {
                match forwarder.discover(&ds, &schema_path).await {
                    Ok(part) => return Ok(part),
                    Err(err) => {
                        let exhausted = policy.max_attempts.is_some_and(|max| attempt >= max);
                        if exhausted || !err.is_retryable() {
                            return Err(err);
                        }
                        tracing::debug!(
                            downstream = %ds.name,
                            attempt,
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            error = %err,
                            "discovery failed, retrying"
                        );
                        tokio::time::sleep(delay).await;
                        delay = delay.saturating_mul(2).min(policy.max_delay);
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }
}

fn build_client(connect_timeout: Duration, idle: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));

    // The workspace builds rustls with the ring provider only, so the process default that
    // `with_webpki_roots` asks for is ring. The roots are compiled in: no file or network
    // access is needed to trust public CAs.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .build(https)
}

/// Joins a base URL (with an optional path prefix) and a path.
pub fn join(base: &Uri, path: &str) -> Option<Uri> {
    let base = base.to_string();
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    format!("{base}/{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_the_base_path_prefix() {
        let base: Uri = "http://127.0.0.1:5200/api/".parse().unwrap();
        assert_eq!(
            join(&base, "/ithil/schema").unwrap(),
            "http://127.0.0.1:5200/api/ithil/schema"
        );
        let base: Uri = "http://127.0.0.1:5200".parse().unwrap();
        assert_eq!(
            join(&base, "ithil/schema").unwrap(),
            "http://127.0.0.1:5200/ithil/schema"
        );
    }

    #[test]
    fn only_the_gateways_own_mistakes_have_gateway_origin() {
        let e = ForwardError::NotAbsolute {
            downstream: "d".into(),
        };
        assert_eq!(e.origin(), ErrorOrigin::Gateway);
        assert!(!e.is_retryable());
        let e = ForwardError::Timeout {
            downstream: "d".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(e.origin(), ErrorOrigin::Downstream);
        assert!(e.is_retryable());
    }
}
