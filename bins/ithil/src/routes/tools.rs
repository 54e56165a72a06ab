//! `GET /management/tools` and `POST /management/tools/reload`.

use http::{Response, StatusCode};
use ithil_audit::Outcome;
use ithil_proxy::catalog::OverLimit;
use ithil_registry::AdminPrincipal;
use serde_json::{Value, json};
use tracing::warn;

use super::error::{ApiError, Body};
use super::record;
use crate::catalog::LoadError;
use crate::state::AppState;

/// The catalog with its governance fields, in name order.
pub fn list(state: &AppState) -> Result<Response<Body>, ApiError> {
    let catalog = state.gateway.catalog();
    let tools: Vec<Value> = catalog
        .tools
        .values()
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description,
                "category": tool.category,
                "downstream": tool.downstream,
                "httpMethod": tool.method.as_str(),
                "routePattern": tool.route.to_string(),
                "allowWrite": tool.allow_write,
                "writes": tool.writes(),
                "maxResponseTokens": tool.max_response_tokens,
                "overLimit": match tool.over_limit {
                    OverLimit::Truncate => "truncate",
                    OverLimit::Reject => "reject",
                },
                "requiredScopes": tool.required_scopes,
                "inputSchema": tool.input_schema,
            })
        })
        .collect();
    Ok(super::error::json(StatusCode::OK, &tools))
}

/// Loads the catalog again; on failure the catalog in place stays and the answer says why.
pub async fn reload(state: &AppState, admin: &AdminPrincipal) -> Result<Response<Body>, ApiError> {
    match state
        .catalog
        .reload(state.gateway.forwarder(), &state.gateway)
        .await
    {
        Ok(tools) => {
            state.readiness.set_catalog(true);
            record::action(
                state,
                Some(admin),
                "catalog.reload",
                Outcome::Ok,
                json!({"tools": tools}),
            )
            .await;
            Ok(super::error::json(StatusCode::OK, &json!({"tools": tools})))
        }
        Err(error) => {
            let detail = chain(&error);
            warn!(error = %detail, "catalog reload failed; the previous catalog stays");
            let (status, code) = match error {
                LoadError::Catalog(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_catalog"),
                LoadError::Discovery(_) => (StatusCode::BAD_GATEWAY, "discovery_failed"),
            };
            Err(ApiError::new(
                status,
                code,
                format!("the catalog was not reloaded and stays as it was: {detail}"),
            ))
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
