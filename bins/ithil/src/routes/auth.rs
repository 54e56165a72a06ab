//! Admin authentication: bearer tokens on the management API and the API key exchange.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use ithil_registry::{AdminPrincipal, AuthError};
use tracing::{debug, error, warn};

use super::body::{self, JsonObject};
use super::error::{ApiError, Body, json};
use super::record;
use crate::state::AppState;

/// The largest API key exchange body read, whatever the general limit.
const EXCHANGE_BODY_LIMIT: usize = 16 * 1024;

/// The bearer token of a request.
///
/// # Errors
///
/// 401 without a token, with a scheme other than `Bearer`, or with more than one
/// `Authorization` header (a request that says two things is not trusted with either).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (Some(value), None) => value,
        (None, _) => return Err(ApiError::unauthorized(false)),
        (Some(_), Some(_)) => {
            debug!("refused a request with more than one authorization header");
            return Err(ApiError::unauthorized(true));
        }
    };

    let value = value.to_str().map_err(|_| ApiError::unauthorized(true))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::unauthorized(true))?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(ApiError::unauthorized(true));
    }
    Ok(token)
}

/// Requires a valid admin token: 401 without a valid token, 403 for a valid agent token.
///
/// # Errors
///
/// As above; the reason goes to the debug log, never to the client.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<AdminPrincipal, ApiError> {
    let token = bearer(headers)?;
    match state.credentials.verify_admin(token) {
        Ok(principal) => {
            // Management records name the admin as their agent.
            tracing::Span::current().record("agent.id", ithil_audit::ADMIN_AGENT_ID);
            debug!(admin.jti = %principal.jti, "admin token accepted");
            Ok(principal)
        }
        Err(AuthError::WrongRole) => Err(ApiError::forbidden()),
        Err(reason) => {
            debug!(reason = %reason, "admin token refused");
            Err(ApiError::unauthorized(true))
        }
    }
}

/// `POST /auth/admin/token`: exchanges the configured API key for an admin token.
pub async fn exchange<B>(
    state: &AppState,
    request: Request<B>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Without a configured key the endpoint does not exist, whatever the method.
    let Some(check) = &state.api_key else {
        return Err(ApiError::not_found());
    };
    if request.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }

    // A blocked address is refused before its body is read: a cheap early answer that
    // counts nothing.
    if let Err(retry_after) = state.throttle.check(peer.ip()) {
        return Err(too_many(retry_after));
    }

    let (parts, body) = request.into_parts();
    let limit = state.max_body_bytes.min(EXCHANGE_BODY_LIMIT);
    let bytes = body::read(body, &parts.headers, limit).await?;
    body::require_json(&parts.headers)?;
    let mut object = JsonObject::parse(&bytes, &["apiKey"])?;
    let api_key: String = object.required("apiKey", "a string")?;

    // The attempt counts against the address before the key is compared, in the same step as
    // the check, and nothing awaits in between: requests racing from one address cannot all
    // pass the check and be compared, whatever their number.
    let reservation = state.throttle.reserve(peer.ip()).map_err(too_many)?;
    if !check.matches(&api_key) {
        warn!(
            peer = %peer.ip(),
            blocked_for = ?reservation.blocks_for,
            "wrong admin api key"
        );
        return Err(wrong_key());
    }
    state.throttle.success(peer.ip());

    let issued = state
        .credentials
        .issue_admin(state.admin_token_ttl)
        .map_err(|error| {
            error!(error = %error, "admin token could not be issued");
            ApiError::internal()
        })?;
    record::admin_token_issued(state, &issued, "api_key").await;
    Ok(token_response(&issued))
}

/// The `{"token", "expiresAt"}` answer, never to be cached.
pub fn token_response(issued: &ithil_registry::IssuedToken) -> Response<Body> {
    let mut response = json(StatusCode::OK, issued);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 401 in the standard error shape, without `WWW-Authenticate`: the exchange is not a
/// resource behind a bearer token, and a challenge would invite one.
fn wrong_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "the API key is not valid",
    )
}

fn too_many(retry_after: std::time::Duration) -> ApiError {
    let seconds = retry_after.as_secs().max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!("too many failed attempts; retry in {seconds} seconds"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Frame;
    use ithil_token::ManualClock;
    use time::macros::datetime;

    use super::*;
    use crate::config::{Config, Environment, Flags};
    use crate::routes::route;
    use crate::store::Store;
    use crate::throttle::FREE_FAILURES;

    const API_KEY: &str = "auth-test-api-key-0123456789";

    /// A state with an API key, on a store in a temporary directory, on a manual clock.
    fn state_with_key() -> (tempfile::TempDir, ManualClock, Arc<AppState>) {
        let dir = tempfile::tempdir().unwrap();
        let env: Environment = [
            ("Ithil__Admin__ApiKey", API_KEY),
            ("Ithil__Audit__DisableStdoutSink", "true"),
        ]
        .into_iter()
        .collect();
        let flags = Flags {
            data: Some(dir.path().to_owned()),
            ..Flags::default()
        };
        let config = Config::load(&flags, &env).unwrap();
        let store = Store::open(&config.server.data_dir).unwrap();
        let clock = ManualClock::new(datetime!(2026-05-06 12:00 UTC));
        let (state, writer) =
            AppState::build(&config, store, Arc::new(clock.clone()), &env).unwrap();
        // The writer ends when the state is dropped.
        std::thread::spawn(move || writer.run());
        (dir, clock, Arc::new(state))
    }

    fn peer() -> SocketAddr {
        "203.0.113.7:40000".parse().unwrap()
    }

    fn exchange_request<B>(body: B) -> Request<B> {
        Request::post("/auth/admin/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap()
    }

    fn key_body(key: &str) -> Bytes {
        Bytes::from(serde_json::json!({ "apiKey": key }).to_string())
    }

    async fn send(state: &AppState, key: &str) -> Response<Body> {
        route(state, exchange_request(Full::new(key_body(key))), peer()).await
    }

    /// A body that arrives only once its gate opens, and counts the requests waiting for it.
    struct Gated {
        /// `None` once open.
        gate: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
        data: Option<Bytes>,
    }

    impl Gated {
        fn new(
            data: Bytes,
            mut open: tokio::sync::watch::Receiver<bool>,
            waiting: Arc<AtomicUsize>,
        ) -> Gated {
            let gate = async move {
                waiting.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|open| *open).await;
            };
            Gated {
                gate: Some(Box::pin(gate)),
                data: Some(data),
            }
        }
    }

    impl hyper::body::Body for Gated {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = self.get_mut();
            if let Some(gate) = &mut this.gate {
                if gate.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.gate = None;
            }
            Poll::Ready(this.data.take().map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test]
    async fn parallel_wrong_keys_are_compared_no_more_often_than_the_throttle_allows() {
        // Bug: the throttle was checked before the body was read and the failure counted after
        // the comparison, so 60 wrong keys sent at once all passed the check and were all
        // compared. Every request here has passed the early check and waits for its body
        // before any key is compared.
        const RACERS: usize = 60;
        let (_dir, _clock, state) = state_with_key();
        let (open, gate) = tokio::sync::watch::channel(false);
        let waiting = Arc::new(AtomicUsize::new(0));

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..RACERS {
            let state = Arc::clone(&state);
            let body = Gated::new(
                key_body(&format!("wrong-{i}")),
                gate.clone(),
                Arc::clone(&waiting),
            );
            tasks.spawn(async move { route(&state, exchange_request(body), peer()).await });
        }
        let mut rounds = 0;
        while waiting.load(Ordering::SeqCst) < RACERS {
            rounds += 1;
            assert!(rounds < 100_000, "the requests never reached their bodies");
            tokio::task::yield_now().await;
        }
        open.send(true).unwrap();

        let mut compared = 0;
        let mut refused = 0;
        while let Some(response) = tasks.join_next().await {
            let response = response.unwrap();
            match response.status() {
                StatusCode::UNAUTHORIZED => compared += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(response.headers().contains_key(header::RETRY_AFTER));
                    refused += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(compared, FREE_FAILURES as usize);
        assert_eq!(refused, RACERS - FREE_FAILURES as usize);

        // The address is blocked now, even for the right key.
        let answer = send(&state, API_KEY).await;
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[tokio::test]
    async fn the_right_key_releases_its_reservation_and_the_failures_before_it() {
        let (_dir, _clock, state) = state_with_key();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(
                send(&state, "wrong").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        // This attempt would have blocked the address had it failed.
        assert_eq!(send(&state, API_KEY).await.status(), StatusCode::OK);

        for _ in 0..FREE_FAILURES {
            assert_eq!(
                send(&state, "wrong").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            send(&state, API_KEY).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn a_malformed_exchange_body_reserves_no_attempt() {
        let (_dir, _clock, state) = state_with_key();
        for _ in 0..FREE_FAILURES * 2 {
            let answer = route(
                &state,
                exchange_request(Full::new(Bytes::from("{"))),
                peer(),
            )
            .await;
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        }
        assert_eq!(send(&state, API_KEY).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_wrong_key_gets_the_standard_error_shape_without_a_bearer_challenge() {
        let (_dir, _clock, state) = state_with_key();
        let answer = send(&state, "wrong").await;

        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        // The exchange is not a bearer-protected resource: no challenge.
        assert!(!answer.headers().contains_key(header::WWW_AUTHENTICATE));
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": { "code": "invalid_api_key", "message": "the API key is not valid" }
            })
        );
    }

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_bearer_token_is_taken_from_one_authorization_header() {
        assert_eq!(
            bearer(&headers(&["Bearer abc.def.ghi"])).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(bearer(&headers(&["bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer(&headers(&["BEARER  abc "])).unwrap(), "abc");
    }

    #[test]
    fn missing_doubled_or_malformed_authorization_is_refused() {
        for map in [
            headers(&[]),
            headers(&["Bearer a", "Bearer a"]),
            headers(&["Basic YWRtaW46YWRtaW4="]),
            headers(&["Bearer"]),
            headers(&["Bearer "]),
            headers(&["Bearer a b"]),
            headers(&["abc"]),
        ] {
            let error = bearer(&map).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{map:?}");
        }
    }
}
