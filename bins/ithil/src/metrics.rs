//! The gateway's metrics, served by `GET /metrics` in the Prometheus text format (version
//! 0.0.4); `docs/observability.md` lists them.
//!
//! Counters and histograms live in one registry and are moved by the request handlers, the
//! gateway's [`Observer`] hook and the budget writer's commit observer. The gauges (circuit
//! states, open sessions) are read from the state at each scrape, so they cannot drift from it.
//!
//! Every label takes values from a bounded set, so that no client can make the gateway keep
//! more series than its configuration implies: routes are templates, methods outside the usual
//! ones are `other`, tools are the catalog's (any other name is `(unknown)`), outcomes are the
//! audit trail's vocabulary and downstreams are the catalog's.

use std::fmt::Write as _;
use std::time::Duration;

use http::{Method, StatusCode};
use ithil_audit::Outcome;
use ithil_budget::CommitObserver;
use ithil_proxy::circuit::CircuitState;
use ithil_proxy::gateway::Observer;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `tool` label of a call that named no tool of the catalog.
pub const UNKNOWN_TOOL: &str = "(unknown)";

/// Bucket bounds of downstream request durations, in seconds: 5 ms to 30 s.
const DOWNSTREAM_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of durable commit durations, in seconds: 0.5 ms to 1 s.
const COMMIT_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DownstreamLabels {
    downstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    downstream: String,
    state: &'static str,
}

/// The counters and histograms of one gateway process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    tool_calls: Family<ToolLabels, Counter>,
    tokens_charged: Counter,
    downstream_duration: Family<DownstreamLabels, Histogram, fn() -> Histogram>,
    commit_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "ithil_http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register(
            "ithil_tool_calls",
            "Tool calls whose audit record is committed, by tool and outcome",
            tool_calls.clone(),
        );
        let tokens_charged = Counter::default();
        registry.register(
            "ithil_tokens_charged",
            "Tokens charged to agents' daily budgets for tool results",
            tokens_charged.clone(),
        );
        let downstream_duration: Family<DownstreamLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DOWNSTREAM_BUCKETS));
        registry.register(
            "ithil_downstream_request_duration_seconds",
            "Duration of requests to downstream APIs, by downstream",
            downstream_duration.clone(),
        );
        let commit_duration = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "ithil_store_commit_duration_seconds",
            "Duration of the budget writer's durable store commits",
            commit_duration.clone(),
        );
        Metrics {
            registry,
            http_requests,
            tool_calls,
            tokens_charged,
            downstream_duration,
            commit_duration,
        }
    }

    /// Counts one answered HTTP request; `route` is its template (see
    /// [`crate::routes::template`]).
    pub fn http_request(&self, method: &Method, route: &'static str, status: StatusCode) {
        let labels = HttpLabels {
            method: method_label(method),
            route,
            status: status.as_u16(),
        };
        self.http_requests.get_or_create(&labels).inc();
    }

    /// The budget writer's commit observer, feeding the commit duration histogram.
    pub fn commit_observer(&self) -> CommitObserver {
        let histogram = self.commit_duration.clone();
        Box::new(move |took| histogram.observe(took.as_secs_f64()))
    }

    /// Every metric in the Prometheus text format, with the gauges read from `state` now.
    ///
    /// # Errors
    ///
    /// Only when a metric cannot be encoded, which writing to a `String` does not cause.
    pub fn render(&self, state: &AppState) -> Result<String, std::fmt::Error> {
        let mut live = Registry::default();

        let circuits = Family::<CircuitLabels, Gauge>::default();
        for circuit in state.gateway.circuits().snapshot() {
            for each in [
                CircuitState::Closed,
                CircuitState::Open,
                CircuitState::HalfOpen,
            ] {
                let labels = CircuitLabels {
                    downstream: circuit.downstream.clone(),
                    state: each.as_str(),
                };
                circuits
                    .get_or_create(&labels)
                    .set(i64::from(circuit.state == each));
            }
        }
        live.register(
            "ithil_circuit_state",
            "1 for the state each downstream's circuit is in, 0 for the others",
            circuits,
        );

        // Expired sessions are dead already; sweeping them first makes the count the live ones.
        let sessions = Gauge::<i64>::default();
        state.gateway.sessions().sweep();
        sessions.set(i64::try_from(state.gateway.sessions().len()).unwrap_or(i64::MAX));
        live.register("ithil_mcp_sessions_open", "MCP sessions open", sessions);

        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        prometheus_text::encode(&mut text, &live)?;
        if !text.ends_with('\n') {
            text.write_char('\n')?;
        }
        Ok(text)
    }
}

impl Observer for Metrics {
    fn tool_call(&self, tool: Option<&str>, outcome: Outcome, tokens: u64) {
        let labels = ToolLabels {
            tool: tool.unwrap_or(UNKNOWN_TOOL).to_owned(),
            outcome: outcome.as_str(),
        };
        self.tool_calls.get_or_create(&labels).inc();
        if tokens > 0 {
            self.tokens_charged.inc_by(tokens);
        }
    }

    fn downstream_request(&self, downstream: &str, elapsed: Duration) {
        let labels = DownstreamLabels {
            downstream: downstream.to_owned(),
        };
        self.downstream_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// The `method` label: the method's name for the usual ones, `other` for the rest, so that
/// clients cannot invent labels with made-up methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_usual_methods_are_labels_of_their_own() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::TRACE), "other");
    }

    #[test]
    fn the_commit_observer_feeds_the_commit_histogram() {
        let metrics = Metrics::new();
        let observe = metrics.commit_observer();
        observe(Duration::from_millis(2));
        observe(Duration::from_millis(3));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains("ithil_store_commit_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ithil_store_commit_duration_seconds_bucket{le=\"0.0025\"} 1\n"),
            "{text}"
        );
    }
}
