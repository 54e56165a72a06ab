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

    // A blocked address is refused before its key is looked at, so guessing costs time.
    if let Err(retry_after) = state.throttle.check(peer.ip()) {
        return Err(too_many(retry_after));
    }

    let (parts, body) = request.into_parts();
    let limit = state.max_body_bytes.min(EXCHANGE_BODY_LIMIT);
    let bytes = body::read(body, &parts.headers, limit).await?;
    body::require_json(&parts.headers)?;
    let mut object = JsonObject::parse(&bytes, &["apiKey"])?;
    let api_key: String = object.required("apiKey", "a string")?;

    if !check.matches(&api_key) {
        let blocked = state.throttle.failure(peer.ip());
        warn!(peer = %peer.ip(), blocked_for = ?blocked, "wrong admin api key");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not valid",
        ));
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
    use super::*;

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
