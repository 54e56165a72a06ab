//! `GET /management/circuits`: the state of every downstream's circuit breaker.

use http::{Response, StatusCode};

use super::error::{ApiError, Body};
use crate::state::AppState;

/// Every downstream's circuit in name order: `downstream`, `state` (`closed`, `open` or
/// `half_open`), `since` (RFC 3339), `recentSuccesses` and `recentFailures` (within the sampling
/// window) and `openedCount`.
pub fn list(state: &AppState) -> Result<Response<Body>, ApiError> {
    let circuits = state.gateway.circuits().snapshot();
    Ok(super::error::json(StatusCode::OK, &circuits))
}
