//! The HTTP API as a function of the state: a request and its peer address in, a response out.
//!
//! No socket is involved, so tests call [`route`] directly with any peer address they like; the
//! server only adds the listener around it.

mod agents;
mod audit;
mod auth;
pub mod body;
mod budget;
mod circuits;
mod dev;
pub mod error;
mod health;
mod record;
mod tools;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response};
use tracing::debug;

pub use error::{ApiError, Body};

use crate::state::AppState;

/// Answers one request from `peer`.
pub async fn route<B>(state: &AppState, request: Request<B>, peer: SocketAddr) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();

    let response = match dispatch(state, request, peer).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };

    debug!(
        http.method = %method,
        http.path = %path,
        http.status = response.status().as_u16(),
        peer = %peer,
        "request"
    );
    response
}

async fn dispatch<B>(
    state: &AppState,
    request: Request<B>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return Err(ApiError::not_found()),
    };
    let method = request.method().clone();

    match segments.as_slice() {
        ["health", "live"] => only(&method, Method::GET, "GET")?.then(health::live),
        ["health", "ready"] => only(&method, Method::GET, "GET")?.then(|| health::ready(state)),

        ["auth", "admin", "token"] => auth::exchange(state, request, peer).await,

        // Outside development mode, to anyone but a loopback peer, or to a request addressed to
        // another host name (DNS rebinding) or sent from a foreign page, these do not exist.
        ["dev", "admin-token"] if dev::allowed_request(state, peer, &request) => {
            only(&method, Method::GET, "GET")?;
            dev::admin_token(state).await
        }
        ["dev", "token"] if dev::allowed_request(state, peer, &request) => {
            only(&method, Method::GET, "GET")?;
            dev::agent_token(state).await
        }

        ["management", "agents"] => match method {
            Method::GET => {
                auth::require_admin(state, request.headers())?;
                agents::list(state, request.uri().query())
            }
            Method::POST => {
                let admin = auth::require_admin(state, request.headers())?;
                agents::create(state, &admin, request).await
            }
            _ => Err(ApiError::method_not_allowed("GET, POST")),
        },
        ["management", "agents", id] => {
            let id = (*id).to_owned();
            match method {
                Method::GET => {
                    auth::require_admin(state, request.headers())?;
                    agents::get(state, &id)
                }
                Method::PUT => {
                    let admin = auth::require_admin(state, request.headers())?;
                    agents::update(state, &admin, &id, request).await
                }
                Method::DELETE => {
                    let admin = auth::require_admin(state, request.headers())?;
                    agents::delete(state, &admin, &id).await
                }
                _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
            }
        }
        ["management", "agents", id, "token"] => {
            let id = (*id).to_owned();
            only(&method, Method::POST, "POST")?;
            let admin = auth::require_admin(state, request.headers())?;
            agents::issue_token(state, &admin, &id, request).await
        }
        ["management", "agents", id, "budget"] => {
            let id = (*id).to_owned();
            match method {
                Method::GET => {
                    auth::require_admin(state, request.headers())?;
                    budget::get(state, &id)
                }
                Method::PUT => {
                    let admin = auth::require_admin(state, request.headers())?;
                    budget::set(state, &admin, &id, request).await
                }
                Method::DELETE => {
                    let admin = auth::require_admin(state, request.headers())?;
                    budget::reset(state, &admin, &id).await
                }
                _ => Err(ApiError::method_not_allowed("GET, PUT, DELETE")),
            }
        }
        ["management", "agents", id, "budget", "history"] => {
            let id = (*id).to_owned();
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            budget::history(state, &id, request.uri().query())
        }

        ["mcp"] => mcp(state, request, peer).await,

        ["management", "audit"] => {
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            audit::query(state, None, request.uri().query())
        }
        ["management", "audit", "export"] => {
            only(&method, Method::GET, "GET")?;
            let admin = auth::require_admin(state, request.headers())?;
            audit::export(state, &admin, request.uri().query()).await
        }
        ["management", "agents", id, "audit"] => {
            let id = (*id).to_owned();
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            audit::query(state, Some(&id), request.uri().query())
        }

        ["management", "circuits"] => {
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            circuits::list(state)
        }

        ["management", "tools"] => {
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            tools::list(state)
        }
        ["management", "tools", "reload"] => {
            only(&method, Method::POST, "POST")?;
            let admin = auth::require_admin(state, request.headers())?;
            tools::reload(state, &admin).await
        }

        _ => Err(ApiError::not_found()),
    }
}

/// `Ok` when the method is the one the path accepts, else 405 naming it.
fn only(method: &Method, wanted: Method, allow: &'static str) -> Result<Only, ApiError> {
    if *method == wanted {
        Ok(Only)
    } else {
        Err(ApiError::method_not_allowed(allow))
    }
}

/// Proof that the method was checked; runs a handler that needs nothing else.
struct Only;

impl Only {
    fn then(self, handler: impl FnOnce() -> Response<Body>) -> Result<Response<Body>, ApiError> {
        Ok(handler())
    }
}

/// `/mcp`: the gateway checks the head (origin, method, agent token) first, so that a request
/// without a valid token is refused before a byte of its body is read; then the body is read
/// under the limit here, and everything else is the gateway's.
async fn mcp<B>(
    state: &AppState,
    request: Request<B>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let principal = match state.gateway.authenticate(&parts, peer).await {
        Ok(principal) => principal,
        Err(refused) => return Ok(refused.map(http_body_util::BodyExt::boxed)),
    };
    let bytes = body::read(body, &parts.headers, state.max_body_bytes).await?;
    let request = Request::from_parts(parts, bytes);
    let response = state
        .gateway
        .handle_mcp_authenticated(request, principal, peer)
        .await;
    Ok(response.map(http_body_util::BodyExt::boxed))
}

#[cfg(test)]
mod tests;
