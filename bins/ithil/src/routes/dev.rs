//! Development shortcuts: tokens without an API key, for a loopback peer in development mode.

use std::net::SocketAddr;

use http::{Response, StatusCode};
use ithil_registry::{CredentialError, NewAgent};
use tracing::{error, info};

use super::auth::token_response;
use super::error::{ApiError, Body};
use super::record;
use crate::peer;
use crate::state::AppState;

/// The label of the agent `GET /dev/token` creates on first use.
pub const DEV_AGENT_LABEL: &str = "Development agent";

/// How long a development agent token lives.
const DEV_TOKEN_TTL: time::Duration = time::Duration::hours(8);

/// Whether the development endpoints exist for this peer: development mode and a loopback TCP
/// peer. Headers play no part.
pub fn allowed(state: &AppState, peer: SocketAddr) -> bool {
    state.dev && peer::is_loopback(peer.ip())
}

/// `GET /dev/admin-token`: an admin token, as the API key exchange would give.
pub async fn admin_token(state: &AppState) -> Result<Response<Body>, ApiError> {
    let issued = state
        .credentials
        .issue_admin(state.admin_token_ttl)
        .map_err(|e| {
            error!(error = %e, "development admin token could not be issued");
            ApiError::internal()
        })?;
    info!("development admin token issued");
    record::admin_token_issued(state, &issued, "dev").await;
    Ok(token_response(&issued))
}

/// `GET /dev/token`: an 8-hour token for the development agent, created on first use (no
/// allowlist, no scopes) and remembered in the store.
pub async fn agent_token(state: &AppState) -> Result<Response<Body>, ApiError> {
    let _one_at_a_time = state.dev_agent.lock().await;

    let stored = state.store.dev_agent_id().map_err(|e| {
        error!(error = %e, "development agent id could not be read");
        ApiError::internal()
    })?;
    // An operator may have deleted the agent; then a new one takes its place.
    let agent = match stored.as_deref().and_then(|id| state.registry.get(id)) {
        Some(agent) => agent,
        None => {
            let agent = state
                .registry
                .create(NewAgent::new(DEV_AGENT_LABEL), state.clock.now())
                .map_err(|e| {
                    error!(error = %e, "development agent could not be created");
                    ApiError::internal()
                })?;
            state.store.set_dev_agent_id(&agent.agent_id).map_err(|e| {
                error!(error = %e, "development agent id could not be stored");
                ApiError::internal()
            })?;
            info!(agent.id = %agent.agent_id, "development agent created");
            std::sync::Arc::new(agent)
        }
    };

    let issued = state
        .credentials
        .issue_agent(&agent, DEV_TOKEN_TTL)
        .map_err(|e| match e {
            CredentialError::InactiveAgent(id) => ApiError::new(
                StatusCode::CONFLICT,
                "agent_inactive",
                format!("the development agent {id} is inactive; activate it to get a token"),
            ),
            other => {
                error!(error = %other, "development token could not be issued");
                ApiError::internal()
            }
        })?;
    info!(agent.id = %agent.agent_id, "development agent token issued");
    Ok(token_response(&issued))
}
