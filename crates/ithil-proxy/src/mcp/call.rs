//! The tool-call pipeline: governance, the budget and circuit pre-checks, the downstream request,
//! the shaping of its answer, and the charge that releases the result.
//!
//! The steps run in the order DESIGN.md gives them. Nothing leaves the gateway before the tool
//! exists, the agent may call it, its budget is not spent (for a write: can hold the write's
//! largest result), the downstream's circuit lets the call through and the arguments fit the
//! schema. After the downstream answered, the agent is looked up again in the registry: a call
//! whose agent was deactivated or deleted meanwhile, or whose allowlist or scopes no longer let
//! it call the tool, gets no result and is charged nothing; otherwise the result is charged
//! under the agent's limit as it is at that moment.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use ithil_audit::{Action, Outcome};
use ithil_budget::{ChargeOutcome, utc_day};
use ithil_registry::AgentPrincipal;
use serde_json::{Map, Value, json};
use time::Date;

use crate::catalog::{Downstream, Tool};
use crate::circuit::{Open, Outcome as Health, Permit, Transition};
use crate::forward::{ErrorOrigin, ForwardError};
use crate::gateway::{BUDGET_EXHAUSTED_MESSAGE, Class, Ctx, Gateway, Handled, internal_error};
use crate::mcp::jsonrpc::{
    self, BUDGET_EXHAUSTED, CIRCUIT_OPEN, DOWNSTREAM_FAILED, ErrorObject, FORBIDDEN,
    INVALID_PARAMS, Id, REQUEST_CANCELLED, Reply, UNAUTHORIZED,
};
use crate::mcp::policy::{BodyFault, Shaped, check_body, declares_json, refusal, shape_body};
use crate::mcp::recorder::{ChargeCheck, ChargeFailed, DropRecord, Note};
use crate::mcp::version::ProtocolVersion;
use crate::schema::ArgumentError;

/// Bodies at least this long are filtered and counted on a blocking thread, so that a large
/// response does not stall the other requests of its runtime worker.
const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// How often a charge is tried again when the agent changed while it was being committed. Each
/// try sees the agent as the registry holds it then, so only an agent changed again and again
/// within milliseconds runs out of tries (and then gets an internal error, charged nothing).
const CHARGE_ATTEMPTS: usize = 3;

/// Why a tool call ended without a result.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Refused before the charge: the caller records the outcome, then answers the error.
    Refused(Outcome, ErrorObject, Class),
    /// Ended at the charge, whose transaction already holds (or lost) the record.
    Recorded(ErrorObject, Class),
    /// Cancelled by `notifications/cancelled` while it waited for its downstream: nothing was
    /// charged; the caller records the outcome and answers the cancellation error.
    Cancelled,
}

impl Stop {
    fn invalid_params(message: &str) -> Stop {
        let e = ErrorObject::new(INVALID_PARAMS, message);
        Stop::Refused(Outcome::InvalidRequest, e, Class::Ok)
    }

    fn internal() -> Stop {
        Stop::Refused(Outcome::InternalError, internal_error(), Class::Internal)
    }

    /// A failed downstream request: the downstream's failures are -32002 (502), the gateway's
    /// own -32603 (500).
    fn forward(err: &ForwardError) -> Stop {
        if err.origin() == ErrorOrigin::Gateway {
            return Stop::internal();
        }
        let (outcome, message) = match err {
            ForwardError::Timeout { .. } => (
                Outcome::DownstreamTimeout,
                "Downstream API failed: no answer in time",
            ),
            ForwardError::TooLarge { .. } => (
                Outcome::RejectedTooLarge,
                "Downstream API failed: response larger than allowed",
            ),
            ForwardError::Connect { .. } => (
                Outcome::DownstreamError,
                "Downstream API failed: unreachable",
            ),
            ForwardError::Body { .. } => (
                Outcome::DownstreamError,
                "Downstream API failed: the response broke off",
            ),
            ForwardError::Exchange { .. } => (
                Outcome::DownstreamError,
                "Downstream API failed: the connection failed",
            ),
            _ => (Outcome::DownstreamError, "Downstream API failed"),
        };
        let e = ErrorObject::new(DOWNSTREAM_FAILED, message);
        Stop::Refused(outcome, e, Class::Downstream)
    }

    /// The refusal of a call whose downstream's circuit is open: -32003, HTTP 503 in the
    /// reference mode, with the downstream and the wait in `data`.
    fn circuit_open(open: &Open) -> Stop {
        let secs = open.retry_after_secs();
        let message = format!(
            "circuit open: downstream {} is isolated; retry after {secs} s",
            open.downstream
        );
        let e = ErrorObject::new(CIRCUIT_OPEN, message).with_data(json!({
            "downstream": &*open.downstream,
            "retryAfterSeconds": secs,
        }));
        Stop::Refused(Outcome::CircuitOpen, e, Class::Unavailable(secs))
    }
}

/// How a failed exchange bears on the downstream's health.
///
/// A response over the size cap was an answer, about this tool's data rather than the
/// downstream's health, so it is not sampled; every other failure (refused, timed out, broken)
/// is.
fn health_of(err: &ForwardError) -> Health {
    match err {
        ForwardError::TooLarge { .. } => Health::Ignored,
        _ => Health::Failure,
    }
}

/// The -32029 error of a result withheld at the charge: it says what the result cost and what
/// was left, and for a write that the write was carried out.
fn withheld_error(
    tool: &Tool,
    tokens: u64,
    used: u64,
    limit: u64,
    status: Option<u16>,
) -> ErrorObject {
    let remaining = limit.saturating_sub(used);
    if tool.writes() {
        let status_text = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let first = if write_performed(status) {
            format!("The write was carried out (the downstream answered HTTP {status_text})")
        } else {
            format!("The downstream answered this write with HTTP {status_text}")
        };
        let message = format!(
            "{first}, but its result ({}) exceeds the remaining daily token budget ({}) and is \
             withheld. Limit resets at midnight UTC.",
            counted(tokens),
            counted(remaining)
        );
        return note_write(tool, status, ErrorObject::new(BUDGET_EXHAUSTED, message));
    }
    if remaining == 0 {
        return ErrorObject::new(BUDGET_EXHAUSTED, BUDGET_EXHAUSTED_MESSAGE);
    }
    let message = format!(
        "The result of this call ({}) exceeds the remaining daily token budget ({}). Limit \
         resets at midnight UTC.",
        counted(tokens),
        counted(remaining)
    );
    ErrorObject::new(BUDGET_EXHAUSTED, message)
}

/// A number of tokens as a message writes it: `1 token`, `52 tokens`.
fn counted(tokens: u64) -> String {
    if tokens == 1 {
        "1 token".to_owned()
    } else {
        format!("{tokens} tokens")
    }
}

/// For a write whose result is withheld after the downstream answered, `data` says so.
fn note_write(tool: &Tool, status: Option<u16>, e: ErrorObject) -> ErrorObject {
    if !tool.writes() {
        return e;
    }
    e.with_data(json!({ "writePerformed": write_performed(status), "downstreamStatus": status }))
}

/// Whether a write was carried out: its downstream answered with a 2xx status.
fn write_performed(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

impl Gateway {
    /// The tool-call pipeline; its steps are in [`Gateway::run_call`].
    pub(crate) async fn tools_call(
        &self,
        ctx: &Ctx<'_>,
        request_id: &str,
        id: Id,
        params: Option<&Value>,
    ) -> Handled {
        let agent_id = ctx.principal.agent.agent_id.as_str();
        let mut note = Note::new(Action::ToolsCall.as_str(), Outcome::InvalidRequest);
        match self.run_call(ctx, request_id, &id, params, &mut note).await {
            Ok(result) => Handled {
                reply: Some(Reply::result(id, result)),
                class: Class::Ok,
            },
            Err(Stop::Refused(outcome, error, class)) => {
                note.outcome = outcome;
                self.refuse(agent_id, request_id, note, id, error, class)
                    .await
            }
            Err(Stop::Cancelled) => {
                note.outcome = Outcome::Cancelled;
                let error = ErrorObject::new(REQUEST_CANCELLED, "Request cancelled");
                self.refuse(agent_id, request_id, note, id, error, Class::Ok)
                    .await
            }
            Err(Stop::Recorded(error, class)) => Handled {
                reply: Some(Reply::error(Some(id), error)),
                class,
            },
        }
    }

    /// Runs a tool call up to its charged result, or stops it. `note` collects the audit
    /// fields as the call goes; a stop before the charge is recorded by the caller.
    async fn run_call(
        &self,
        ctx: &Ctx<'_>,
        request_id: &str,
        id: &Id,
        params: Option<&Value>,
        note: &mut Note,
    ) -> Result<Value, Stop> {
        let principal = ctx.principal;
        let agent = &principal.agent;
        let agent_id = agent.agent_id.as_str();

        // The request: a tool name and an object of arguments. The recorder bounds and filters
        // the name before it reaches the trail.
        let params = jsonrpc::params_object(params)
            .map_err(|e| Stop::Refused(Outcome::InvalidRequest, e, Class::Ok))?;
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(Stop::invalid_params(
                "Invalid params: name must be a string",
            ));
        };
        note.tool = Some(name.to_owned());
        let args = match params.get("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(Stop::invalid_params(
                    "Invalid params: arguments must be an object",
                ));
            }
        };
        note.arguments = Some(Value::Object(args.clone()));

        // Governance: the tool must exist and the agent may call it. Nothing leaves the
        // gateway before these checks pass.
        let catalog = self.catalog();
        let Some(tool) = catalog.tool(name) else {
            let message = format!("Unknown tool: {}", truncate_chars(name, 128));
            let e = ErrorObject::new(INVALID_PARAMS, message);
            return Err(Stop::Refused(Outcome::UnknownTool, e, Class::Ok));
        };
        note.known_tool = true;
        // Only a name of the catalog reaches the request's span: one the agent made up stays
        // out of the logs' spans.
        ctx.span.record("tool", name);
        if let Some(refusal) = refusal(principal, tool) {
            let e = ErrorObject::new(FORBIDDEN, refusal.message(tool));
            return Err(Stop::Refused(refusal.outcome(), e, Class::Forbidden));
        }

        // The budget pre-check: an agent with nothing left does not reach the downstream. A
        // write must also leave room for its largest result (responses are held to the tool's
        // `maxResponseTokens`), so that it is not carried out when its result could not be
        // delivered.
        let day = utc_day(self.now());
        let limit = agent.daily_limit(self.deps.default_daily_limit);
        let remaining = self.deps.budget.remaining(agent_id, limit, day);
        if remaining == 0 {
            let e = ErrorObject::new(BUDGET_EXHAUSTED, BUDGET_EXHAUSTED_MESSAGE);
            return Err(Stop::Refused(Outcome::BudgetExhausted, e, Class::Budget));
        }
        if tool.writes() && remaining < tool.max_response_tokens {
            let message = format!(
                "Tool {} writes, and its result may take up to {}; the remaining daily token \
                 budget ({}) cannot hold that, so the write was not carried out. Limit resets at \
                 midnight UTC.",
                tool.name,
                counted(tool.max_response_tokens),
                counted(remaining)
            );
            let e = ErrorObject::new(BUDGET_EXHAUSTED, message);
            return Err(Stop::Refused(Outcome::BudgetExhausted, e, Class::Budget));
        }

        // The circuit pre-check: an isolated downstream is not contacted, and nothing is spent.
        // The permit is settled with the downstream's answer; every way out before that drops
        // it, which counts nothing (and frees the probe slot of a half-open circuit).
        let permit = self
            .deps
            .circuits
            .acquire(&tool.downstream)
            .map_err(|open| {
                let downstream = &*open.downstream;
                tracing::debug!(
                    request.id = request_id,
                    tool = name,
                    downstream,
                    "circuit open"
                );
                Stop::circuit_open(&open)
            })?;
        self.report_transition(permit.transition().cloned());

        // The arguments, checked against the schema, then placed into the request.
        let invalid = |err: ArgumentError| {
            let e = ErrorObject::new(INVALID_PARAMS, format!("Invalid arguments: {err}"));
            Stop::Refused(Outcome::InvalidArguments, e, Class::Ok)
        };
        tool.compiled_schema
            .validate_arguments(&args)
            .map_err(invalid)?;
        let ds = catalog.downstream_of(tool).ok_or_else(Stop::internal)?;
        let request = match tool.build_request(ds, &args, request_id) {
            Ok(r) => r,
            Err(ArgumentError::Request(err)) => {
                tracing::debug!(request.id = request_id, tool = name, error = %err, "downstream request not built");
                return Err(Stop::internal());
            }
            Err(err) => return Err(invalid(err)),
        };

        // From here the call waits for its downstream and may be cancelled, by id or by its
        // client going away. Both drop the downstream request (its connection closes) before
        // anything is charged; the guard records a dropped call, the caller a cancelled one.
        let mut on_drop = DropRecord::arm(&self.recorder, agent_id, request_id, note.clone());
        let fetch = self.fetch(
            ds,
            request,
            (tool, permit),
            ctx.version,
            request_id,
            note,
            &mut on_drop,
        );
        let mut registration = self.in_flight.register(ctx.session, id);
        let shaped = tokio::select! {
            shaped = fetch => shaped,
            Ok(()) = &mut registration.cancelled => {
                tracing::debug!(request.id = request_id, tool = name, "tool call cancelled by its client");
                Err(Stop::Cancelled)
            }
        };
        // A cancellation arriving from here on finds no call: the result is about to be charged
        // and answered.
        drop(registration);
        on_drop.disarm();
        let shaped = shaped?;
        note.outcome = shaped.outcome;

        self.charge_result(principal, tool, request_id, note, (day, shaped.tokens))
            .await?;
        Ok(shaped.result)
    }

    /// The charge step: looks the agent up again, applies its allowlist, scopes and limit as
    /// they are now, and charges the result's tokens with the call's audit record in the same
    /// write transaction; the result leaves only once both are durable.
    ///
    /// The registry is read again inside that transaction too. If the agent changed between
    /// the two reads (deactivated, its limit lowered), the charge is declined before anything
    /// of it is written and the step starts over with the agent as it is then; so a charge
    /// never stands against a limit that was already replaced when its transaction ran.
    async fn charge_result(
        &self,
        principal: &AgentPrincipal,
        tool: &Tool,
        request_id: &str,
        note: &Note,
        (day, tokens): (Date, u64),
    ) -> Result<(), Stop> {
        let agent_id = principal.agent.agent_id.as_str();
        let name = tool.name.as_str();
        let status = note.downstream_status;

        for _ in 0..CHARGE_ATTEMPTS {
            let Some(current) = self.current_principal(principal) else {
                tracing::debug!(
                    request.id = request_id,
                    tool = name,
                    "tool result withheld: the agent was deactivated or deleted"
                );
                let e = note_write(tool, status, unauthorized_error());
                return Err(Stop::Refused(
                    Outcome::Unauthenticated,
                    e,
                    Class::Unauthorized,
                ));
            };
            if let Some(refusal) = refusal(&current, tool) {
                tracing::debug!(
                    request.id = request_id,
                    tool = name,
                    "tool result withheld: the agent may no longer call the tool"
                );
                let e = note_write(
                    tool,
                    status,
                    ErrorObject::new(FORBIDDEN, refusal.message(tool)),
                );
                return Err(Stop::Refused(refusal.outcome(), e, Class::Forbidden));
            }
            let limit = current.agent.daily_limit(self.deps.default_daily_limit);

            let charged = self
                .recorder
                .charge(
                    agent_id,
                    request_id,
                    note.clone(),
                    (day, tokens, limit),
                    Some(self.unchanged(&current)),
                )
                .await;
            match charged {
                Ok(ChargeOutcome::Charged { used }) => {
                    tracing::debug!(
                        request.id = request_id,
                        tool = name,
                        tokens,
                        used,
                        "tool call charged"
                    );
                    return Ok(());
                }
                Ok(ChargeOutcome::OverLimit { used, limit }) => {
                    tracing::debug!(
                        request.id = request_id,
                        tool = name,
                        tokens,
                        used,
                        limit,
                        "tool result withheld over budget"
                    );
                    let e = withheld_error(tool, tokens, used, limit, status);
                    return Err(Stop::Recorded(e, Class::Budget));
                }
                Ok(ChargeOutcome::NotCharged) => {
                    return Err(Stop::Recorded(internal_error(), Class::Internal));
                }
                Err(ChargeFailed::Vetoed) => {
                    tracing::debug!(
                        request.id = request_id,
                        "agent changed while its charge committed; charging again"
                    );
                }
                Err(ChargeFailed::Budget(err)) => {
                    // The record shared the failed transaction, so neither charge nor record
                    // exist.
                    tracing::debug!(request.id = request_id, error = %err, "charge failed, result withheld");
                    return Err(Stop::Recorded(internal_error(), Class::Internal));
                }
            }
        }
        tracing::debug!(
            request.id = request_id,
            "agent kept changing while its charge committed; result withheld"
        );
        Err(Stop::internal())
    }

    /// The last look of a charge from inside its transaction: the agent must still be exactly
    /// the one the charge was checked against.
    fn unchanged(&self, checked: &AgentPrincipal) -> ChargeCheck {
        let registry = Arc::clone(&self.deps.registry);
        let checked = Arc::clone(&checked.agent);
        Box::new(move |_| {
            registry
                .get(&checked.agent_id)
                .is_some_and(|now| now == checked)
        })
    }

    /// Sends a tool call's request, settles its circuit permit with the answer, and shapes the
    /// answer the agent will receive. Only 2xx and 4xx answers reach the agent, and a 2xx only
    /// with a usable body.
    #[allow(clippy::too_many_arguments)] // Reason: one call's pieces, borrowed from run_call.
    async fn fetch(
        &self,
        ds: &Downstream,
        request: Request<Bytes>,
        (tool, permit): (&Arc<Tool>, Permit),
        version: ProtocolVersion,
        request_id: &str,
        note: &mut Note,
        on_drop: &mut DropRecord,
    ) -> Result<Shaped, Stop> {
        let name = tool.name.as_str();
        tracing::debug!(request.id = request_id, tool = name, downstream = %ds.name, "forwarding tool call");
        let started = std::time::Instant::now();
        let forwarded = match self.forwarder.send(ds, request).await {
            Ok(forwarded) => forwarded,
            Err(err) => {
                tracing::debug!(request.id = request_id, tool = name, error = %err, "downstream failed");
                // A request the gateway could not even send says nothing about the downstream.
                match err.origin() {
                    ErrorOrigin::Downstream => {
                        self.observe_downstream(&ds.name, started.elapsed());
                        self.report_transition(permit.record(health_of(&err)));
                    }
                    ErrorOrigin::Gateway => drop(permit),
                }
                return Err(Stop::forward(&err));
            }
        };
        self.observe_downstream(&ds.name, forwarded.latency);
        let status = forwarded.status;
        self.report_transition(permit.record(Health::from_status(status)));
        note.downstream_status = Some(status.as_u16());
        note.latency_ms = Some(u64::try_from(forwarded.latency.as_millis()).unwrap_or(u64::MAX));
        if let Some(pending) = on_drop.note_mut() {
            pending.downstream_status = note.downstream_status;
            pending.latency_ms = note.latency_ms;
        }
        if !(status.is_success() || status.is_client_error()) {
            tracing::debug!(
                request.id = request_id,
                tool = name,
                status = status.as_u16(),
                "downstream answered with an error"
            );
            let message = format!("Downstream API failed: HTTP {}", status.as_u16());
            let e = ErrorObject::new(DOWNSTREAM_FAILED, message)
                .with_data(json!({ "status": status.as_u16() }));
            return Err(Stop::Refused(
                Outcome::DownstreamError,
                e,
                Class::Downstream,
            ));
        }

        // What the agent will receive: filtered, then held to the tool's token limit.
        let json = declares_json(&forwarded.headers);
        self.shape(Arc::clone(tool), status, json, forwarded.body, version)
            .await
            .map_err(|fault| {
                tracing::debug!(request.id = request_id, tool = name, fault = ?fault, "downstream body unusable");
                let e = ErrorObject::new(DOWNSTREAM_FAILED, fault.message())
                    .with_data(json!({ "status": status.as_u16() }));
                Stop::Refused(Outcome::DownstreamError, e, Class::Downstream)
            })
    }

    /// Checks a downstream body, filters it, holds it to the tool's token limit and builds the
    /// result. A 2xx body must be UTF-8, and JSON when `json` says it is declared so.
    async fn shape(
        &self,
        tool: Arc<Tool>,
        status: StatusCode,
        json: bool,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Shaped, BodyFault> {
        let privacy = Arc::clone(&self.deps.privacy);
        let counter = Arc::clone(&self.counter);
        let len = body.len();
        let work = move || {
            if status.is_success() {
                check_body(&body, json)?;
            }
            Ok(shape_body(
                &privacy, &counter, &tool, status, &body, version,
            ))
        };
        if len < BLOCKING_THRESHOLD {
            return work();
        }
        match tokio::task::spawn_blocking(work).await {
            Ok(shaped) => shaped,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Hands the duration of a downstream request to the observer, if there is one.
    fn observe_downstream(&self, downstream: &str, elapsed: std::time::Duration) {
        if let Some(observer) = &self.deps.observer {
            observer.downstream_request(downstream, elapsed);
        }
    }

    /// Hands a change of a circuit's state to the server's callback, if there is one.
    pub(crate) fn report_transition(&self, transition: Option<Transition>) {
        let Some(transition) = transition else {
            return;
        };
        tracing::debug!(
            downstream = %transition.downstream,
            from = %transition.from,
            to = %transition.to,
            "circuit changed state"
        );
        if let Some(sink) = &self.deps.on_circuit_transition {
            sink(&transition);
        }
    }
}

/// The JSON-RPC error of every authentication failure (-32001 "Unauthorized").
pub(crate) fn unauthorized_error() -> ErrorObject {
    ErrorObject::new(UNAUTHORIZED, "Unauthorized")
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;
    use crate::catalog::{self, LoadOptions};

    fn tool(method: &str) -> Tool {
        let manifest = json!({
            "downstreams": { "api": { "baseUrl": "http://127.0.0.1:9" } },
            "tools": [{ "name": "t", "description": "d", "downstream": "api",
                        "method": method, "route": "/x", "allowWrite": true }]
        });
        let part = catalog::load_manifest(
            "test",
            manifest.to_string().as_bytes(),
            &LoadOptions::default(),
        )
        .unwrap();
        part.tools.into_iter().next().unwrap()
    }

    #[test]
    fn a_read_withheld_with_tokens_left_says_what_was_left() {
        let e = withheld_error(&tool("GET"), 98, 98, 150, Some(200));
        assert_eq!(
            e.message,
            "The result of this call (98 tokens) exceeds the remaining daily token budget \
             (52 tokens). Limit resets at midnight UTC."
        );
        assert!(e.data.is_none());
    }

    #[test]
    fn one_token_is_written_in_the_singular() {
        let e = withheld_error(&tool("GET"), 98, 149, 150, Some(200));
        assert!(e.message.contains("budget (1 token)."), "{}", e.message);
        assert_eq!(counted(0), "0 tokens");
        assert_eq!(counted(1), "1 token");
    }

    #[test]
    fn a_read_withheld_with_nothing_left_says_the_budget_is_exhausted() {
        let e = withheld_error(&tool("GET"), 98, 150, 150, Some(200));
        assert_eq!(e.message, BUDGET_EXHAUSTED_MESSAGE);
    }

    #[test]
    fn a_withheld_write_says_it_was_carried_out() {
        let e = withheld_error(&tool("POST"), 40, 90, 100, Some(201));
        assert!(
            e.message.starts_with("The write was carried out"),
            "{}",
            e.message
        );
        assert!(e.message.contains("(10 tokens)"), "{}", e.message);
        assert_eq!(
            e.data,
            Some(json!({ "writePerformed": true, "downstreamStatus": 201 }))
        );

        let e = withheld_error(&tool("DELETE"), 40, 90, 100, Some(409));
        assert!(e.message.contains("HTTP 409"), "{}", e.message);
        assert_eq!(e.data.unwrap()["writePerformed"], false);
    }

    #[test]
    fn only_transport_failures_count_against_the_downstreams_health() {
        let too_large = ForwardError::TooLarge {
            downstream: "api".into(),
            limit: 10,
        };
        assert_eq!(health_of(&too_large), Health::Ignored);
        let timeout = ForwardError::Timeout {
            downstream: "api".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(health_of(&timeout), Health::Failure);
        assert_eq!(
            Health::from_status(StatusCode::from_str("503").unwrap()),
            Health::Failure
        );
    }
}
