//! `GET /health/live` and `GET /health/ready`.

use http::{Response, StatusCode};
use serde::Serialize;

use super::error::{Body, json};
use crate::state::AppState;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<Components>,
}

#[derive(Serialize)]
struct Components {
    store: &'static str,
    catalog: &'static str,
}

/// 200 while the process runs.
pub fn live() -> Response<Body> {
    json(
        StatusCode::OK,
        &Health {
            status: "live",
            components: None,
        },
    )
}

/// 200 once the store is open and the catalog loaded, else 503 naming the component.
///
/// The store is open before the server listens, so it is always ready here.
pub fn ready(state: &AppState) -> Response<Body> {
    let catalog = state.readiness.catalog();
    let components = Components {
        store: "ready",
        catalog: if catalog { "ready" } else { "not_ready" },
    };
    let (status, text) = if catalog {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    json(
        status,
        &Health {
            status: text,
            components: Some(components),
        },
    )
}
