//! `/management/agents/{agentId}/budget` and its `history`: today's usage, resets, limits.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use ithil_audit::{ADMIN_AGENT_ID, Action, NewRecord, Outcome};
use ithil_budget::{MAX_HISTORY_DAYS, utc_day};
use ithil_registry::{AdminPrincipal, Agent, AgentPatch};
use serde_json::{Value, json};
use tracing::{debug, error};

use super::agents::{not_found, registry_error};
use super::body::{self, JsonObject};
use super::error::{ApiError, Body, empty};
use super::record;
use crate::state::AppState;

/// The default number of days of `history`.
const DEFAULT_HISTORY_DAYS: u32 = 30;

const BUDGET: &str = "a whole number of tokens from 1 to 1000000000000, or null for the default";

/// `GET .../budget`: the effective limit, today's usage, what is left and when it resets.
pub fn get(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    let agent = state.registry.get(id).ok_or_else(|| not_found(id))?;
    Ok(super::error::json(StatusCode::OK, &status(state, &agent)))
}

/// `PUT .../budget` with `{"dailyTokenBudget": N}` or `null` for the default: 200 with the
/// new status.
pub async fn set<B>(
    state: &AppState,
    admin: &AdminPrincipal,
    id: &str,
    request: Request<B>,
) -> Result<Response<Body>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let bytes = body::read(body, &parts.headers, state.max_body_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "a JSON object body with dailyTokenBudget is required",
        ));
    }
    body::require_json(&parts.headers)?;
    let object = &mut JsonObject::parse(&bytes, &["dailyTokenBudget"])?;
    let budget: Option<Option<u64>> = object.nullable("dailyTokenBudget", BUDGET)?;
    let Some(budget) = budget else {
        return Err(ApiError::bad_request(
            "missing_field",
            "field `dailyTokenBudget` is required",
        ));
    };
    if state.registry.get(id).is_none() {
        return Err(not_found(id));
    }

    let patch = AgentPatch {
        daily_token_budget: Some(budget),
        ..AgentPatch::default()
    };
    let agent = state
        .registry
        .update(id, patch, state.clock.now())
        .map_err(registry_error)?;
    debug!(agent.id = %id, budget = ?budget, "daily token budget set");
    let arguments = json!({"agentId": id, "dailyTokenBudget": budget});
    record::action(
        state,
        Some(admin),
        Action::BudgetSet,
        Outcome::Ok,
        arguments,
    )
    .await;
    Ok(super::error::json(StatusCode::OK, &status(state, &agent)))
}

/// `DELETE .../budget`: today's usage back to zero, 204; the reset and its audit record
/// commit together.
pub async fn reset(
    state: &AppState,
    admin: &AdminPrincipal,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    if state.registry.get(id).is_none() {
        return Err(not_found(id));
    }
    let now = state.clock.now();
    let day = utc_day(now);

    let rec = NewRecord {
        operator: Some(admin.jti.clone()),
        arguments: Some(json!({"agentId": id, "day": day.to_string()})),
        ..NewRecord::new(
            now,
            state.request_id(),
            ADMIN_AGENT_ID,
            Action::BudgetReset,
            Outcome::Ok,
        )
    };
    let (work, slot) = record::append_work(state, rec);
    state.charges.reset_with(id, day, work).await.map_err(|e| {
        error!(error = %e, agent.id = %id, "budget reset failed");
        ApiError::internal()
    })?;
    record::publish(state, &slot);
    debug!(agent.id = %id, "budget reset");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET .../budget/history?days=N`: one row per UTC day, oldest first, today last.
pub fn history(
    state: &AppState,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut days = DEFAULT_HISTORY_DAYS;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("days", value)) => {
                days = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY_DAYS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_query",
                            format!("days must be a whole number from 1 to {MAX_HISTORY_DAYS}"),
                        )
                    })?;
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "the accepted query parameter is days",
                ));
            }
        }
    }
    let agent = state.registry.get(id).ok_or_else(|| not_found(id))?;

    let today = utc_day(state.clock.now());
    let rows = state.budget.history(id, days, today).map_err(|e| {
        error!(error = %e, agent.id = %id, "budget history failed");
        ApiError::internal()
    })?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| json!({"date": row.day.to_string(), "tokensUsed": row.tokens}))
        .collect();
    let body = json!({
        "agentId": id,
        "dailyTokenBudget": agent.daily_limit(state.default_daily_limit),
        "days": rows,
    });
    Ok(super::error::json(StatusCode::OK, &body))
}

fn status(state: &AppState, agent: &Agent) -> Value {
    let limit = agent.daily_limit(state.default_daily_limit);
    let status = state
        .budget
        .status(&agent.agent_id, limit, state.clock.now());
    let resets_at = status
        .resets_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "agentId": agent.agent_id,
        "dailyTokenBudget": status.limit,
        "tokensUsedToday": status.used,
        "remaining": status.remaining,
        "percentageUsed": (status.percentage_used() * 100.0).round() / 100.0,
        "resetsAt": resets_at,
    })
}
