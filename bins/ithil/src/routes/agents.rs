//! `/management/agents/**`: create, list, read, change and delete agents, and issue their tokens.
//!
//! Callers have already passed the admin check. Every body is validated completely before the
//! registry is asked to write, and the registry validates values again, so a refused request
//! changes nothing.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use ithil_audit::{Action, Outcome};
use ithil_registry::{
    AdminPrincipal, AgentPatch, CredentialError, NewAgent, RegistryError, is_agent_id,
};
use serde_json::json;
use tracing::{debug, error};

use super::auth::token_response;
use super::body::{self, JsonObject, invalid};
use super::error::{ApiError, Body, empty, json};
use super::record;
use crate::state::AppState;

/// The default and largest page of `GET /management/agents`.
const MAX_PAGE: usize = 1000;
/// The default lifetime of an agent token, in days.
const DEFAULT_TOKEN_DAYS: u64 = 30;
/// The longest lifetime of an agent token, in days.
const MAX_TOKEN_DAYS: u64 = 365;

const BUDGET: &str = "a whole number of tokens from 1 to 1000000000000, or null";
const TOOLS: &str = "a list of tool names, or null for every tool";
const SCOPES: &str = "a list of scope strings";
const LABEL: &str = "a string of 1 to 200 characters";
const ACTIVE: &str = "true or false";

/// The fields of an agent body, for both create and update.
const FIELDS: &[&str] = &[
    "label",
    "dailyTokenBudget",
    "allowedTools",
    "scopes",
    "isActive",
];

/// `GET /management/agents[?limit=N&after=ID]`: agents in id order, as a JSON array.
///
/// When more agents follow, a `Link: <...>; rel="next"` header points at the next page.
pub fn list(state: &AppState, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let mut limit = MAX_PAGE;
    let mut after = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "after" if is_agent_id(value) => after = Some(value),
            "after" => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "after must be an agent id",
                ));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "accepted query parameters are limit and after",
                ));
            }
        }
    }

    // One more than the page tells whether a next page exists.
    let mut agents = state.registry.list(after, limit + 1);
    let more = agents.len() > limit;
    agents.truncate(limit);

    let page: Vec<&ithil_registry::Agent> = agents.iter().map(|a| a.as_ref()).collect();
    let mut response = json(StatusCode::OK, &page);
    if let (true, Some(last)) = (more, page.last()) {
        let link = format!(
            "</management/agents?limit={limit}&after={}>; rel=\"next\"",
            last.agent_id
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// `POST /management/agents`: 201 with the agent and its `Location`.
pub async fn create<B>(
    state: &AppState,
    admin: &AdminPrincipal,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = json_body(state, request).await?.ok_or_else(body_required)?;
    let object = &mut JsonObject::parse(&bytes, FIELDS)?;
    let new = NewAgent {
        label: object.required("label", LABEL)?,
        daily_token_budget: object.nullable("dailyTokenBudget", BUDGET)?.flatten(),
        allowed_tools: object.nullable("allowedTools", TOOLS)?.flatten(),
        scopes: object.optional("scopes", SCOPES)?.unwrap_or_default(),
        is_active: object.optional("isActive", ACTIVE)?.unwrap_or(true),
    };

    let agent = state
        .registry
        .create(new, state.clock.now())
        .map_err(registry_error)?;
    debug!(agent.id = %agent.agent_id, "agent created");
    let arguments = json!({"agentId": agent.agent_id, "label": agent.label});
    record::action(
        state,
        Some(admin),
        Action::AgentCreate,
        Outcome::Ok,
        arguments,
    )
    .await;

    let mut response = json(StatusCode::CREATED, &agent);
    let location = format!("/management/agents/{}", agent.agent_id);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /management/agents/{agentId}`.
pub fn get(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    let agent = state.registry.get(id).ok_or_else(|| not_found(id))?;
    Ok(json(StatusCode::OK, agent.as_ref()))
}

/// `PUT /management/agents/{agentId}`: changes the named fields, 200 with the whole agent.
pub async fn update<B>(
    state: &AppState,
    admin: &AdminPrincipal,
    id: &str,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = json_body(state, request).await?.ok_or_else(body_required)?;
    let object = &mut JsonObject::parse(&bytes, FIELDS)?;
    let changed: Vec<&str> = FIELDS
        .iter()
        .copied()
        .filter(|f| object.contains(f))
        .collect();
    let patch = AgentPatch {
        label: object.optional("label", LABEL)?,
        daily_token_budget: object.nullable("dailyTokenBudget", BUDGET)?,
        allowed_tools: object.nullable("allowedTools", TOOLS)?,
        scopes: object.optional("scopes", SCOPES)?,
        is_active: object.optional("isActive", ACTIVE)?,
    };
    if patch.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the request names no field to change",
        ));
    }
    if state.registry.get(id).is_none() {
        return Err(not_found(id));
    }

    let agent = state
        .registry
        .update(id, patch, state.clock.now())
        .map_err(registry_error)?;
    debug!(agent.id = %agent.agent_id, active = agent.is_active, "agent updated");
    let arguments =
        json!({"agentId": agent.agent_id, "fields": changed, "isActive": agent.is_active});
    record::action(
        state,
        Some(admin),
        Action::AgentUpdate,
        Outcome::Ok,
        arguments,
    )
    .await;
    Ok(json(StatusCode::OK, &agent))
}

/// `DELETE /management/agents/{agentId}`: 204.
pub async fn delete(
    state: &AppState,
    admin: &AdminPrincipal,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    if state.registry.get(id).is_none() {
        return Err(not_found(id));
    }
    state.registry.delete(id).map_err(registry_error)?;
    debug!(agent.id = %id, "agent deleted");
    let arguments = json!({"agentId": id});
    record::action(
        state,
        Some(admin),
        Action::AgentDelete,
        Outcome::Ok,
        arguments,
    )
    .await;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /management/agents/{agentId}/token`, optional body `{"expiresInDays"}`: the agent's
/// token, `{"token", "expiresAt"}`; 409 for an inactive agent.
pub async fn issue_token<B>(
    state: &AppState,
    admin: &AdminPrincipal,
    id: &str,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const DAYS: &str = "a whole number of days from 1 to 365";

    // An empty body takes the default and needs no Content-Type.
    let days = match json_body(state, request).await? {
        None => DEFAULT_TOKEN_DAYS,
        Some(bytes) => {
            let object = &mut JsonObject::parse(&bytes, &["expiresInDays"])?;
            object
                .optional::<u64>("expiresInDays", DAYS)?
                .map(|days| {
                    (1..=MAX_TOKEN_DAYS)
                        .contains(&days)
                        .then_some(days)
                        .ok_or_else(|| invalid("expiresInDays", DAYS))
                })
                .transpose()?
                .unwrap_or(DEFAULT_TOKEN_DAYS)
        }
    };

    let agent = state.registry.get(id).ok_or_else(|| not_found(id))?;
    let ttl = time::Duration::days(days as i64);
    let issued = match state.credentials.issue_agent(&agent, ttl) {
        Ok(issued) => issued,
        Err(CredentialError::InactiveAgent(_)) => {
            let arguments = json!({"agentId": id});
            record::action(
                state,
                Some(admin),
                Action::TokenIssue,
                Outcome::Conflict,
                arguments,
            )
            .await;
            return Err(inactive(id));
        }
        Err(other) => {
            error!(error = %other, agent.id = %id, "agent token could not be issued");
            return Err(ApiError::internal());
        }
    };
    debug!(agent.id = %id, days, "agent token issued");
    let arguments = json!({"agentId": id, "jti": issued.jti, "expiresInDays": days});
    record::action(
        state,
        Some(admin),
        Action::TokenIssue,
        Outcome::Ok,
        arguments,
    )
    .await;
    Ok(token_response(&issued))
}

/// The body of a request, declared JSON, or `None` for an empty body (which needs no
/// `Content-Type`).
async fn json_body<B>(state: &AppState, request: Request<B>) -> Result<Option<Bytes>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let bytes = body::read(body, &parts.headers, state.max_body_bytes).await?;
    if bytes.is_empty() {
        return Ok(None);
    }
    body::require_json(&parts.headers)?;
    Ok(Some(bytes))
}

fn body_required() -> ApiError {
    ApiError::bad_request("invalid_body", "a JSON object body is required")
}

pub fn not_found(id: &str) -> ApiError {
    // Only well-formed ids are echoed; anything else came from the client and is not repeated.
    let message = if is_agent_id(id) {
        format!("agent {id} not found")
    } else {
        "agent not found".to_owned()
    };
    ApiError::new(StatusCode::NOT_FOUND, "agent_not_found", message)
}

fn inactive(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "agent_inactive",
        format!("agent {id} is inactive; activate it before issuing a token"),
    )
}

/// Maps a registry refusal to its answer; failures of the store are logged and hidden.
pub fn registry_error(error: RegistryError) -> ApiError {
    match &error {
        RegistryError::NotFound(id) => not_found(id),
        _ => match error.field() {
            Some(field) => ApiError::bad_request(
                "invalid_field",
                format!("field `{field}` is invalid: {error}"),
            ),
            None => {
                error!(error = %error, source = ?std::error::Error::source(&error), "registry failed");
                ApiError::internal()
            }
        },
    }
}
