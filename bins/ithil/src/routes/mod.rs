//! The HTTP API as a function of the state: a request and its peer address in, a response out.
//!
//! No socket is involved, so tests call [`route`] directly with any peer address they like; the
//! server only adds the listener around it.
//!
//! Every request runs in an info-level `request` span that carries its request id, its method
//! and route template, and (once known) the agent and the tool it calls; every log line made
//! while it is answered carries them too. Each answered request is counted in the metrics by
//! method, route template and status.

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
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use ithil_proxy::gateway::RequestId;
use tracing::Instrument as _;
use tracing::debug;
use tracing::field::Empty;

pub use error::{ApiError, Body};

use crate::state::AppState;

/// The route template of a path that no route serves.
pub const OTHER_ROUTE: &str = "other";

/// The route template of the MCP endpoint.
const MCP_ROUTE: &str = "/mcp";

/// Answers one request from `peer`: [`route_then`] with nothing to finish, for tests.
#[cfg(test)]
pub async fn route<B>(state: &AppState, request: Request<B>, peer: SocketAddr) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    route_then(state, request, peer, |response| response).await
}

/// Answers one request from `peer` as [`route`] does, with `finish` applied to the answer
/// before it is counted and logged (the server replaces the answer to a body that stopped
/// arriving).
pub async fn route_then<B>(
    state: &AppState,
    mut request: Request<B>,
    peer: SocketAddr,
    finish: impl FnOnce(Response<Body>) -> Response<Body>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = template(&path);
    // The id of the request's audit record: `/mcp` ids have the gateway's form.
    let request_id = state.new_request_id(if route == MCP_ROUTE { "" } else { "req_" });
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let span = tracing::info_span!(
        "request",
        request.id = %request_id,
        http.method = %method,
        http.route = route,
        agent.id = Empty,
        tool = Empty,
    );

    let answer = async {
        let response = match dispatch(state, request, peer).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let response = finish(response);
        debug!(
            http.path = %path,
            http.status = response.status().as_u16(),
            peer = %peer,
            "request"
        );
        response
    };
    let response = AppState::in_request(request_id, answer)
        .instrument(span)
        .await;
    state
        .metrics
        .http_request(&method, route, response.status());
    response
}

/// The route template of `path`, as the metrics label it: the path with its agent id replaced
/// by `{agentId}`, or [`OTHER_ROUTE`] for a path no route serves. The templates are the
/// patterns of [`dispatch`], whatever the method.
pub fn template(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix('/') else {
        return OTHER_ROUTE;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["health", "live"] => "/health/live",
        ["health", "ready"] => "/health/ready",
        ["auth", "admin", "token"] => "/auth/admin/token",
        ["dev", "admin-token"] => "/dev/admin-token",
        ["dev", "token"] => "/dev/token",
        ["management", "agents"] => "/management/agents",
        ["management", "agents", _] => "/management/agents/{agentId}",
        ["management", "agents", _, "token"] => "/management/agents/{agentId}/token",
        ["management", "agents", _, "budget"] => "/management/agents/{agentId}/budget",
        ["management", "agents", _, "budget", "history"] => {
            "/management/agents/{agentId}/budget/history"
        }
        ["management", "agents", _, "audit"] => "/management/agents/{agentId}/audit",
        ["mcp"] => MCP_ROUTE,
        ["management", "audit"] => "/management/audit",
        ["management", "audit", "export"] => "/management/audit/export",
        ["management", "circuits"] => "/management/circuits",
        ["management", "tools"] => "/management/tools",
        ["management", "tools", "reload"] => "/management/tools/reload",
        ["metrics"] => "/metrics",
        _ => OTHER_ROUTE,
    }
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

        ["metrics"] => {
            only(&method, Method::GET, "GET")?;
            auth::require_admin(state, request.headers())?;
            metrics(state)
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
    tracing::Span::current().record("agent.id", principal.agent.agent_id.as_str());
    let bytes = body::read(body, &parts.headers, state.max_body_bytes).await?;
    let request = Request::from_parts(parts, bytes);
    let response = state
        .gateway
        .handle_mcp_authenticated(request, principal, peer)
        .await;
    Ok(response.map(http_body_util::BodyExt::boxed))
}

/// `GET /metrics`: every metric in the Prometheus text format, never cached.
fn metrics(state: &AppState) -> Result<Response<Body>, ApiError> {
    let text = state.metrics.render(state).map_err(|_| {
        tracing::error!("the metrics could not be encoded");
        ApiError::internal()
    })?;
    let mut response = Response::new(error::full(text));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests;
