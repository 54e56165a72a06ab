//! The gateway: the MCP endpoint and the tool-call pipeline.
//!
//! [`Gateway::handle_mcp`] is a function of the gateway's state and one buffered HTTP request,
//! so the whole endpoint can be driven without a socket. A server that reads bodies itself
//! calls [`Gateway::authenticate`] on the request head first and
//! [`Gateway::handle_mcp_authenticated`] once the body is in, so that a request without a valid
//! token is refused before a byte of its body is read.
//!
//! Every request passes the same gates, in order: the `Origin` check (403), the HTTP method
//! (`GET` and others 405), the agent token (401), the body format, the session (400 without
//! one, 404 for an unknown, expired or foreign one) and the `MCP-Protocol-Version` header
//! (400). Then each JSON-RPC message is dispatched; before each message of a batch the agent is
//! looked up again, so a batch stops at the first message after its agent was deactivated or
//! deleted. A tool call runs governance (allowlist, scopes, write block), the budget pre-check,
//! the circuit pre-check, argument validation, the downstream request, the privacy filter, the
//! `maxResponseTokens` limit and the atomic charge, whose write transaction also holds the
//! call's audit record (see [`crate::mcp`]'s `call` module).
//!
//! While a call waits for its downstream it can be cancelled: by `notifications/cancelled`
//! naming its id in its session, or by its client going away (hyper then drops the call's
//! future). Either way the downstream request is dropped with its connection, nothing is
//! charged, and the audit record says `cancelled`. Once the charge is queued the call is
//! committed: a client that leaves after that point is charged for a result that hyper then
//! fails to write, and the record says `ok`. The charge commits before the answer is handed to
//! hyper, so a result is never delivered uncharged; the converse cannot be promised by a server
//! that does not know whether its last bytes arrived.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use ithil_audit::{Action, AuditLog, Outcome};
use ithil_budget::{Budget, ChargeHandle, Encoding, TokenCounter};
use ithil_registry::{AgentPrincipal, AuthError, Credentials, Registry};
use ring::rand::SystemRandom;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::circuit::{CircuitBreakers, Transition};
use crate::forward::Forwarder;
use crate::mcp::call::unauthorized_error;
use crate::mcp::inflight::InFlightCalls;
use crate::mcp::jsonrpc::{
    self, ErrorObject, INTERNAL_ERROR, INVALID_REQUEST, Id, METHOD_NOT_FOUND, Message, Payload,
    Reply,
};
pub use crate::mcp::recorder::AuditSink;
use crate::mcp::recorder::{Note, Recorder};
use crate::mcp::session::{self, SESSION_HEADER, SessionInfo, SessionLimits, Sessions};
use crate::mcp::tools;
use crate::mcp::transport::{
    OriginPolicy, ResponseFormat, bearer_token, empty, framed, is_json_content_type,
    reply_response, response_format, transport_error, unauthorized, verified_subject,
};
use crate::mcp::version::{self, ProtocolVersion};
use crate::privacy::PrivacyFilter;

/// The message of every budget refusal, as the reference documents it.
pub const BUDGET_EXHAUSTED_MESSAGE: &str =
    "Daily token budget exhausted. Limit resets at midnight UTC.";

/// How refusals and downstream failures show in the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStatus {
    /// HTTP 200 with the JSON-RPC error in the body, for every error of a well-formed request
    /// (401 for authentication stays). Some MCP clients drop the JSON-RPC body of a non-2xx
    /// answer or never complete the pending request, so the agent would not see why its call
    /// failed. The default.
    #[default]
    Always200,
    /// The reference behaviour: 403 for refusals, 429 for an exhausted budget, 502 for a failed
    /// downstream, 503 (with `Retry-After`) for an open circuit, 500 for a failure of the
    /// gateway itself, each with its JSON-RPC body.
    Reference,
}

/// How the gateway behaves; every field has a default.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a session lives without a request. Default is 30 minutes.
    pub session_idle_timeout: std::time::Duration,
    /// How many sessions one agent may hold; opening one more drops its least recently used.
    /// Default is 100.
    pub max_sessions_per_agent: usize,
    /// Whether browser `Origin`s on loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`, any
    /// port) are accepted. Requests without `Origin` are always accepted. Default is true.
    pub allow_loopback_origins: bool,
    /// Further accepted origins, such as `https://app.example.com`, compared exactly without
    /// case. Default is empty.
    pub allowed_origins: Vec<String>,
    /// How refusals and downstream failures show in the HTTP status. Default is
    /// [`ErrorStatus::Always200`].
    pub error_status: ErrorStatus,
    /// How many tools one `tools/list` page holds. Default is 100.
    pub tools_page_size: usize,
    /// The most messages one JSON-RPC batch may hold (batches exist only in 2025-03-26).
    /// Default is 50.
    pub max_batch_len: usize,
    /// The deepest nesting of arrays and objects a request body may have; deeper bodies get
    /// 400. Default is 64.
    pub max_json_depth: usize,
    /// The `serverInfo.version` announced at `initialize`. Default is this crate's version.
    pub server_version: String,
    /// Optional `instructions` returned by `initialize`. Default is none.
    pub instructions: Option<String>,
    /// The tokenizer that counts tool output against budgets and `maxResponseTokens`. Default
    /// is `o200k_base`.
    pub encoding: Encoding,
    /// Benchmarks only (feature `bench`): when true, nothing goes through the charge writer,
    /// so no charge and no audit record is written and every call fits its budget. A load run
    /// compares the gateway with and without it to measure what durable charging costs.
    /// Default is false.
    #[cfg(feature = "bench")]
    pub uncharged: bool,
}

impl GatewayConfig {
    /// Whether charging is switched off (only a `bench` build can switch it off).
    fn uncharged(&self) -> bool {
        #[cfg(feature = "bench")]
        return self.uncharged;
        #[cfg(not(feature = "bench"))]
        false
    }
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            session_idle_timeout: std::time::Duration::from_secs(30 * 60),
            max_sessions_per_agent: 100,
            allow_loopback_origins: true,
            allowed_origins: Vec::new(),
            error_status: ErrorStatus::default(),
            tools_page_size: 100,
            max_batch_len: 50,
            max_json_depth: jsonrpc::DEFAULT_MAX_DEPTH,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            instructions: None,
            encoding: Encoding::default(),
            #[cfg(feature = "bench")]
            uncharged: false,
        }
    }
}

/// An answer decided before the request reached its handler (a refusal at the HTTP level),
/// boxed because a response is large next to the values it stands beside.
type Early = Box<Response<Full<Bytes>>>;

/// Receives every change of a circuit's state (the server logs them at warn).
pub type TransitionSink = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Hears what the gateway does, for the server's metrics; see [`GatewayDeps::observer`].
///
/// Both methods run on the runtime's tasks, so they should be quick (a counter, a histogram).
pub trait Observer: Send + Sync {
    /// A tool call ended and its audit record is committed (refusals, cancellations and calls
    /// dropped by their client included; a call whose record could not be committed is not
    /// reported).
    ///
    /// `tool` is the tool's name when the call named a tool of the catalog it ran with, and
    /// `None` for any other name or no name, so that labels made from it are no more than the
    /// catalog's tools however many names agents send. `outcome` is the record's outcome, and
    /// `tokens` what the call was charged (zero for every call that was not charged).
    fn tool_call(&self, tool: Option<&str>, outcome: Outcome, tokens: u64);

    /// A request to the downstream named `downstream` ended after `elapsed`: answered, with
    /// any status, or failed on the downstream's side (unreachable, timed out, broken off or
    /// over the size cap). A request the gateway failed to send, or a call cancelled while it
    /// waited, is not reported.
    fn downstream_request(&self, downstream: &str, elapsed: std::time::Duration);
}

/// The id a server gave an HTTP request, put in the request's extensions for
/// [`Gateway::authenticate`] and [`Gateway::handle_mcp_authenticated`]: the audit record of a
/// request that is one message (or none) then carries it as its `requestId`, and the server's
/// log span of the request can carry the same id. Each message of a JSON-RPC batch gets a
/// fresh id of its own. Without it every record gets a fresh id. A tool call sends the id to
/// its downstream as `X-Request-Id`, so it must be a valid header value; the gateway's own ids
/// are 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// What the gateway is built from: the stores and services it shares with the server.
#[derive(Clone)]
pub struct GatewayDeps {
    /// The agents.
    pub registry: Arc<Registry>,
    /// Token verification, and the clock every decision reads.
    pub credentials: Arc<Credentials>,
    /// The catalog served until [`Gateway::replace_catalog`] swaps in another.
    pub catalog: Arc<Catalog>,
    /// Today's usage per agent, for the pre-check.
    pub budget: Arc<Budget>,
    /// The group-commit writer's handle: charges, and audit records of uncharged requests.
    pub charges: ChargeHandle,
    /// The audit trail, written inside the writer's transactions.
    pub audit: Arc<AuditLog>,
    /// Applied to every tool response before it is counted, returned or recorded, and to the
    /// arguments kept in the audit trail.
    pub privacy: Arc<PrivacyFilter>,
    /// Called with every committed audit record; `None` writes them nowhere else.
    pub audit_sink: Option<AuditSink>,
    /// The daily token limit of agents without their own.
    pub default_daily_limit: u64,
    /// The circuit breakers of the downstreams, kept in step with the catalog (one circuit per
    /// downstream name). Build them on the same clock as `credentials`, so that one injected
    /// clock moves breaks too.
    pub circuits: Arc<CircuitBreakers>,
    /// Called with every change of a circuit's state; `None` leaves them to the debug log.
    pub on_circuit_transition: Option<TransitionSink>,
    /// Hears every finished tool call and downstream request, for metrics; `None` reports them
    /// nowhere.
    pub observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for GatewayDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayDeps")
            .field("tools", &self.catalog.tools.len())
            .field("default_daily_limit", &self.default_daily_limit)
            .field("circuits", &self.circuits)
            .finish_non_exhaustive()
    }
}

/// The MCP endpoint with its sessions, catalog and downstream client.
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) deps: GatewayDeps,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) in_flight: Arc<InFlightCalls>,
    catalog: RwLock<Arc<Catalog>>,
    sessions: Sessions,
    origins: OriginPolicy,
    pub(crate) forwarder: Forwarder,
    pub(crate) counter: Arc<TokenCounter>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cfg", &self.cfg)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// The HTTP status class of a JSON-RPC answer, turned into a status by [`ErrorStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Ok,
    /// The agent is no longer allowed in (401 in both modes, as authentication failures are).
    Unauthorized,
    Forbidden,
    Budget,
    Downstream,
    /// An open circuit; carries the seconds for `Retry-After`.
    Unavailable(u64),
    Internal,
}

/// One message's answer: the reply (none for notifications) and its status class. The audit
/// record is already committed when a `Handled` exists.
#[derive(Debug)]
pub(crate) struct Handled {
    pub(crate) reply: Option<Reply>,
    pub(crate) class: Class,
}

/// What every message of one HTTP request shares.
pub(crate) struct Ctx<'a> {
    /// The agent as the registry held it when the message started.
    pub(crate) principal: &'a AgentPrincipal,
    pub(crate) version: ProtocolVersion,
    pub(crate) peer: SocketAddr,
    /// The session the request belongs to, which scopes the ids it may cancel.
    pub(crate) session: &'a str,
    /// The span the request arrived in (the server's span of the HTTP request, if any): a tool
    /// call records its tool there once the catalog knows it.
    pub(crate) span: &'a tracing::Span,
}

impl Gateway {
    /// Creates the gateway.
    ///
    /// The session store reads time from the credentials' clock, like token checks and budget
    /// days, so one injected clock moves them all. The charge writer behind `deps.charges` must
    /// be running: every answer waits for its audit record's commit, so without the writer
    /// every authenticated request fails with 500. The circuits are made to match the catalog's
    /// downstreams, here and on every [`Gateway::replace_catalog`].
    pub fn new(cfg: GatewayConfig, deps: GatewayDeps) -> Gateway {
        sync_circuits(&deps.circuits, &deps.catalog);
        let limits = SessionLimits {
            idle_timeout: time::Duration::try_from(cfg.session_idle_timeout)
                .unwrap_or(time::Duration::MAX),
            max_per_agent: cfg.max_sessions_per_agent.max(1),
        };
        let sessions = Sessions::new(limits, Arc::clone(deps.credentials.clock()));
        let origins = OriginPolicy {
            allow_loopback: cfg.allow_loopback_origins,
            allowed: cfg.allowed_origins.clone(),
        };
        let recorder = Arc::new(Recorder {
            charges: deps.charges.clone(),
            audit: Arc::clone(&deps.audit),
            privacy: Arc::clone(&deps.privacy),
            sink: deps.audit_sink.clone(),
            clock: Arc::clone(deps.credentials.clock()),
            uncharged: cfg.uncharged(),
            observer: deps.observer.clone(),
        });
        Gateway {
            recorder,
            in_flight: InFlightCalls::new(),
            catalog: RwLock::new(Arc::clone(&deps.catalog)),
            counter: Arc::new(TokenCounter::new(cfg.encoding)),
            sessions,
            origins,
            forwarder: Forwarder::new(),
            rng: SystemRandom::new(),
            cfg,
            deps,
        }
    }

    /// The catalog in use; a request keeps the one it started with.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Swaps in a new catalog; requests in flight finish with the old one. Circuits of
    /// downstreams that stay keep their state; those of new ones start closed, and those of
    /// removed ones are forgotten.
    pub fn replace_catalog(&self, catalog: Catalog) {
        sync_circuits(&self.deps.circuits, &catalog);
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }

    /// The circuit breakers of the downstreams, for `GET /management/circuits`.
    pub fn circuits(&self) -> &Arc<CircuitBreakers> {
        &self.deps.circuits
    }

    /// The live sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The client that forwards tool calls, shared with discovery fetches.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Handles one request to the MCP endpoint: `POST` (messages), `DELETE` (end a session);
    /// every other method gets 405. It is [`Gateway::authenticate`] followed by
    /// [`Gateway::handle_mcp_authenticated`].
    pub async fn handle_mcp(&self, req: Request<Bytes>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let principal = match self.authenticate(&parts, peer).await {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        self.handle_mcp_authenticated(Request::from_parts(parts, body), principal, peer)
            .await
    }

    /// Runs the gates that need only the request head: the `Origin` check (403), the method
    /// (405 for anything but `POST` and `DELETE`) and the agent token (401), in that order.
    ///
    /// A server that reads the body itself calls this first, so that a request without a valid
    /// token costs it no body, then passes the principal to
    /// [`Gateway::handle_mcp_authenticated`]. The reason of a refusal goes to the debug log
    /// only; a valid token of a deleted or deactivated agent also leaves an audit record.
    ///
    /// # Errors
    ///
    /// Returns the response to send when a gate refuses the request.
    pub async fn authenticate(
        &self,
        head: &Parts,
        peer: SocketAddr,
    ) -> Result<AgentPrincipal, Response<Full<Bytes>>> {
        if !self.origins.allows(&head.headers) {
            tracing::debug!(%peer, "mcp request refused: origin not allowed");
            return Err(transport_error(
                StatusCode::FORBIDDEN,
                "Forbidden: origin not allowed",
            ));
        }
        if !matches!(head.method, Method::POST | Method::DELETE) {
            let mut resp = empty(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
            return Err(resp);
        }
        self.verify(head, peer).await.map_err(|resp| *resp)
    }

    /// Handles a request whose head [`Gateway::authenticate`] accepted, with `principal` as it
    /// returned it; the token is not verified again.
    ///
    /// The agent is looked up again in the registry (from memory) first, since reading the
    /// body may have taken a while: an agent deactivated or deleted meanwhile gets 401.
    pub async fn handle_mcp_authenticated(
        &self,
        req: Request<Bytes>,
        principal: AgentPrincipal,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Some(principal) = self.current_principal(&principal) else {
            let agent_id = principal.agent.agent_id.as_str();
            tracing::debug!(%peer, agent.id = agent_id, "mcp request refused: agent gone or inactive");
            let note = Note::new("mcp", Outcome::Unauthenticated);
            let request_id = self.request_id(&parts.extensions);
            // An audit failure must not turn a 401 into something else.
            let _ = self.record(agent_id, &request_id, note).await;
            return unauthorized();
        };
        match parts.method {
            Method::POST => self.post(&parts, body, &principal, peer).await,
            Method::DELETE => self.delete(&parts, &principal, peer).await,
            _ => {
                let mut resp = empty(StatusCode::METHOD_NOT_ALLOWED);
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
                resp
            }
        }
    }

    /// The agent of `principal` as the registry holds it now, with the token's scopes that the
    /// agent still has; `None` when it was deleted (or deleted and made anew under its id) or
    /// deactivated since `principal` was made.
    pub(crate) fn current_principal(&self, principal: &AgentPrincipal) -> Option<AgentPrincipal> {
        let agent = self.deps.registry.get(&principal.agent.agent_id)?;
        if !agent.is_active || agent.created_at != principal.agent.created_at {
            return None;
        }
        if Arc::ptr_eq(&agent, &principal.agent) {
            return Some(principal.clone());
        }
        let mut current = principal.clone();
        current.scopes.retain(|scope| agent.scopes.contains(scope));
        current.agent = agent;
        Some(current)
    }

    /// Verifies the bearer token; the reason of a refusal goes to the debug log only.
    async fn verify(&self, head: &Parts, peer: SocketAddr) -> Result<AgentPrincipal, Early> {
        let token = bearer_token(&head.headers);
        let result = match token {
            Some(t) => self.deps.credentials.verify_agent(t, &self.deps.registry),
            None => Err(AuthError::Missing),
        };
        match result {
            Ok(p) => Ok(p),
            Err(err) => {
                tracing::debug!(%peer, reason = %err, "mcp request refused: authentication failed");
                // The token's signature and claims were good in these two cases, so its
                // subject names a real (deleted or deactivated) agent worth an audit record.
                if matches!(err, AuthError::UnknownAgent | AuthError::InactiveAgent)
                    && let Some(agent_id) = token.and_then(verified_subject)
                {
                    let request_id = self.request_id(&head.extensions);
                    let note = Note::new("mcp", Outcome::Unauthenticated);
                    // An audit failure must not turn a 401 into something else.
                    let _ = self.record(&agent_id, &request_id, note).await;
                }
                Err(Box::new(unauthorized()))
            }
        }
    }

    async fn post(
        &self,
        parts: &Parts,
        body: Bytes,
        principal: &AgentPrincipal,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let agent_id = principal.agent.agent_id.as_str();

        if !is_json_content_type(&parts.headers) {
            let resp = transport_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type: expected application/json",
            );
            return self
                .refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                .await;
        }
        let Some(format) = response_format(&parts.headers) else {
            let resp = transport_error(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable: accept application/json or text/event-stream",
            );
            return self
                .refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                .await;
        };

        let payload = match jsonrpc::parse(&body, self.cfg.max_json_depth) {
            Ok(p) => p,
            Err(err) => {
                tracing::debug!(%peer, agent.id = agent_id, error = %err, "mcp body refused");
                let reply = Reply::error(None, err.to_error_object());
                let resp = reply_response(StatusCode::BAD_REQUEST, format, &reply);
                return self
                    .refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                    .await;
            }
        };

        match payload {
            Payload::Single(Ok(Message::Request(req))) if req.method == "initialize" => {
                let request_id = self.request_id(&parts.extensions);
                self.initialize(principal, &request_id, req.id, req.params.as_ref(), format)
                    .await
            }
            Payload::Single(Ok(Message::Request(req))) if req.method == "server/discover" => {
                // The stateless 2026-07-28 probe. A plain "method not found" with 400 makes
                // current SDKs fall back to `initialize`; the revision's own -32022 would make
                // them treat the server as a 2026 server that refused their version.
                let err = ErrorObject::new(METHOD_NOT_FOUND, "Method not found: server/discover");
                let reply = Reply::error(Some(req.id), err);
                let resp = reply_response(StatusCode::BAD_REQUEST, format, &reply);
                self.refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                    .await
            }
            Payload::Single(Err(invalid)) => {
                let reply = Reply::error(invalid.id, invalid.error);
                let resp = reply_response(StatusCode::BAD_REQUEST, format, &reply);
                self.refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                    .await
            }
            Payload::Single(Ok(message)) => {
                let (session, version) = match self.session(&parts.headers, agent_id, peer) {
                    Ok(s) => s,
                    Err((outcome, resp)) => {
                        return self.refuse_http(parts, agent_id, outcome, *resp).await;
                    }
                };
                let span = tracing::Span::current();
                let ctx = Ctx {
                    principal,
                    version,
                    peer,
                    session: &session.id,
                    span: &span,
                };
                let request_id = self.request_id(&parts.extensions);
                let handled = self.dispatch(&ctx, message, request_id).await;
                match handled.reply {
                    // A notification whose record could not be committed is not accepted.
                    None if handled.class == Class::Internal => {
                        transport_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
                    }
                    None => empty(StatusCode::ACCEPTED),
                    Some(reply) => self.answer(handled.class, format, &reply),
                }
            }
            Payload::Batch(items) => {
                let (session, version) = match self.session(&parts.headers, agent_id, peer) {
                    Ok(s) => s,
                    Err((outcome, resp)) => {
                        return self.refuse_http(parts, agent_id, outcome, *resp).await;
                    }
                };
                let refusal = if !session.version.allows_batches() {
                    Some(format!(
                        "Invalid Request: protocol version {} does not allow batches",
                        session.version
                    ))
                } else if items.len() > self.cfg.max_batch_len {
                    Some(format!(
                        "Invalid Request: a batch may hold at most {} messages",
                        self.cfg.max_batch_len
                    ))
                } else {
                    None
                };
                if let Some(message) = refusal {
                    let resp = transport_error(StatusCode::BAD_REQUEST, &message);
                    return self
                        .refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                        .await;
                }
                let span = tracing::Span::current();
                let ctx = Ctx {
                    principal,
                    version,
                    peer,
                    session: &session.id,
                    span: &span,
                };
                self.batch(&ctx, items, format).await
            }
        }
    }

    /// The response to a single message's reply, with the status its class has in the
    /// configured mode.
    fn answer(&self, class: Class, format: ResponseFormat, reply: &Reply) -> Response<Full<Bytes>> {
        let status = self.status(class);
        let mut resp = reply_response(status, format, reply);
        match class {
            Class::Unauthorized => {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Class::Unavailable(secs) if status == StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        resp
    }

    /// Records the refusal of an authenticated request at the HTTP level, then answers `resp`.
    async fn refuse_http(
        &self,
        parts: &Parts,
        agent_id: &str,
        outcome: Outcome,
        resp: Response<Full<Bytes>>,
    ) -> Response<Full<Bytes>> {
        let request_id = self.request_id(&parts.extensions);
        match self
            .record(agent_id, &request_id, Note::new("mcp", outcome))
            .await
        {
            Ok(()) => resp,
            Err(failed) => *failed,
        }
    }

    /// Runs a batch in order and answers with the array of its replies (202 when it held only
    /// notifications and responses).
    ///
    /// The agent is looked up again before each message: once it is deactivated or deleted,
    /// every later message is refused with -32001 and recorded as `unauthenticated`.
    async fn batch(
        &self,
        ctx: &Ctx<'_>,
        items: Vec<Result<Message, jsonrpc::Invalid>>,
        format: ResponseFormat,
    ) -> Response<Full<Bytes>> {
        let agent_id = ctx.principal.agent.agent_id.as_str();
        let mut replies = Vec::new();
        for item in items {
            let Some(current) = self.current_principal(ctx.principal) else {
                let (id, action) = match &item {
                    Ok(Message::Request(req)) => (Some(req.id.clone()), req.method.as_str()),
                    Ok(Message::Notification(n)) => (None, n.method.as_str()),
                    Ok(Message::Response(_)) => continue,
                    Err(invalid) => (invalid.id.clone(), "mcp"),
                };
                let request_id = self.trace_id();
                let note = Note::new(action, Outcome::Unauthenticated);
                if let Err(resp) = self.record(agent_id, &request_id, note).await {
                    return *resp;
                }
                if let Some(id) = id {
                    replies.push(Reply::error(Some(id), unauthorized_error()));
                }
                continue;
            };
            let ctx = Ctx {
                principal: &current,
                version: ctx.version,
                peer: ctx.peer,
                session: ctx.session,
                span: ctx.span,
            };

            let reply = match item {
                Ok(Message::Request(req)) if req.method == "initialize" => {
                    let request_id = self.trace_id();
                    let note = Note::new("initialize", Outcome::InvalidRequest);
                    if let Err(resp) = self.record(agent_id, &request_id, note).await {
                        return *resp;
                    }
                    Some(Reply::error(
                        Some(req.id),
                        ErrorObject::new(
                            INVALID_REQUEST,
                            "Invalid Request: initialize must not be part of a batch",
                        ),
                    ))
                }
                Ok(message) => self.dispatch(&ctx, message, self.trace_id()).await.reply,
                Err(invalid) => {
                    let request_id = self.trace_id();
                    let note = Note::new("mcp", Outcome::InvalidRequest);
                    if let Err(resp) = self.record(agent_id, &request_id, note).await {
                        return *resp;
                    }
                    Some(Reply::error(invalid.id, invalid.error))
                }
            };
            replies.extend(reply);
        }
        if replies.is_empty() {
            return empty(StatusCode::ACCEPTED);
        }
        // Serializing `Value`s into a `Vec` cannot fail.
        let json = serde_json::to_vec(&replies).unwrap_or_default();
        framed(StatusCode::OK, format, json)
    }

    /// Finds the request's session and decides its protocol version.
    fn session(
        &self,
        headers: &HeaderMap,
        agent_id: &str,
        peer: SocketAddr,
    ) -> Result<(SessionInfo, ProtocolVersion), (Outcome, Early)> {
        let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
            let resp = transport_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            );
            return Err((Outcome::InvalidRequest, Box::new(resp)));
        };
        let session = self.sessions.touch(id, agent_id).map_err(|err| {
            tracing::debug!(%peer, agent.id = agent_id, reason = %err, "mcp session refused");
            let resp = transport_error(StatusCode::NOT_FOUND, "Session not found");
            (Outcome::NotFound, Box::new(resp))
        })?;
        let version = version::request_version(headers, session.version).map_err(|err| {
            tracing::debug!(%peer, agent.id = agent_id, reason = %err, "mcp version header refused");
            let resp = transport_error(StatusCode::BAD_REQUEST, &format!("Bad Request: {err}"));
            (Outcome::InvalidRequest, Box::new(resp))
        })?;
        Ok((session, version))
    }

    async fn initialize(
        &self,
        principal: &AgentPrincipal,
        request_id: &str,
        id: Id,
        params: Option<&Value>,
        format: ResponseFormat,
    ) -> Response<Full<Bytes>> {
        let agent_id = principal.agent.agent_id.as_str();
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = ProtocolVersion::negotiate(requested);

        let session_id = match self.sessions.create(agent_id, version) {
            Ok(s) => s,
            Err(err) => {
                tracing::debug!(agent.id = agent_id, error = %err, "session could not be created");
                let note = Note::new(Action::Initialize.as_str(), Outcome::InternalError);
                if let Err(resp) = self.record(agent_id, request_id, note).await {
                    return *resp;
                }
                let reply =
                    Reply::error(Some(id), ErrorObject::new(INTERNAL_ERROR, "Internal error"));
                return reply_response(self.status(Class::Internal), format, &reply);
            }
        };

        let note = Note::new(Action::Initialize.as_str(), Outcome::Ok);
        if let Err(resp) = self.record(agent_id, request_id, note).await {
            // Nothing was answered, so the session would only linger unused.
            let _ = self.sessions.end(&session_id, agent_id);
            return *resp;
        }
        tracing::debug!(
            agent.id = agent_id,
            request.id = %request_id,
            version = %version,
            requested = requested.unwrap_or(""),
            "mcp session opened"
        );

        let result = tools::initialize_result(
            version,
            &self.cfg.server_version,
            self.cfg.instructions.as_deref(),
        );
        let mut resp = reply_response(StatusCode::OK, format, &Reply::result(id, result));
        if let Ok(value) = HeaderValue::from_str(&session_id) {
            resp.headers_mut().insert(SESSION_HEADER, value);
        }
        resp
    }

    async fn delete(
        &self,
        parts: &Parts,
        principal: &AgentPrincipal,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let agent_id = principal.agent.agent_id.as_str();
        let Some(id) = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            let resp = transport_error(
                StatusCode::BAD_REQUEST,
                "Bad Request: Mcp-Session-Id header is required",
            );
            return self
                .refuse_http(parts, agent_id, Outcome::InvalidRequest, resp)
                .await;
        };
        let request_id = self.request_id(&parts.extensions);
        let ended = self.sessions.end(id, agent_id);
        let outcome = if ended.is_ok() {
            Outcome::Ok
        } else {
            Outcome::NotFound
        };
        if let Err(resp) = self
            .record(
                agent_id,
                &request_id,
                Note::new(Action::SessionDelete.as_str(), outcome),
            )
            .await
        {
            return *resp;
        }
        match ended {
            Ok(()) => empty(StatusCode::OK),
            Err(err) => {
                tracing::debug!(%peer, agent.id = agent_id, reason = %err, "mcp session not ended");
                transport_error(StatusCode::NOT_FOUND, "Session not found")
            }
        }
    }

    /// Handles one message within a session and commits its audit record under `request_id`,
    /// inside a debug span that carries it.
    async fn dispatch(&self, ctx: &Ctx<'_>, message: Message, request_id: String) -> Handled {
        use tracing::Instrument as _;
        let span = tracing::debug_span!(
            "mcp",
            request.id = %request_id,
            agent.id = %ctx.principal.agent.agent_id,
            method = message.method().unwrap_or("response"),
        );
        self.dispatch_in_span(ctx, message, request_id)
            .instrument(span)
            .await
    }

    async fn dispatch_in_span(
        &self,
        ctx: &Ctx<'_>,
        message: Message,
        request_id: String,
    ) -> Handled {
        let agent_id = ctx.principal.agent.agent_id.as_str();

        let (id, method, params) = match message {
            Message::Request(r) => (Some(r.id), r.method, r.params),
            Message::Notification(n) => (None, n.method, n.params),
            Message::Response(_) => {
                // The gateway sends no requests, so a response answers nothing it waits for.
                return Handled {
                    reply: None,
                    class: Class::Ok,
                };
            }
        };

        let Some(id) = id else {
            // Notifications: `cancelled` stops the call it names if that call still waits for
            // its downstream; `initialized` needs no action, and unknown ones are ignored, as
            // JSON-RPC asks.
            if method == "notifications/cancelled" {
                self.cancel(ctx, params.as_ref());
            }
            let note = Note::new(method, Outcome::Ok);
            return match self.record(agent_id, &request_id, note).await {
                Ok(()) => Handled {
                    reply: None,
                    class: Class::Ok,
                },
                Err(_) => Handled {
                    reply: None,
                    class: Class::Internal,
                },
            };
        };

        if method == "tools/call" {
            return self.tools_call(ctx, &request_id, id, params.as_ref()).await;
        }

        let (outcome, note) = match method.as_str() {
            "ping" => (Ok(json!({})), Note::new(Action::Ping.as_str(), Outcome::Ok)),
            "tools/list" => match tools::list_page(
                &self.catalog(),
                ctx.principal,
                params.as_ref(),
                self.cfg.tools_page_size,
            ) {
                Ok(v) => (Ok(v), Note::new(Action::ToolsList.as_str(), Outcome::Ok)),
                Err(e) => (
                    Err(e),
                    Note::new(Action::ToolsList.as_str(), Outcome::InvalidRequest),
                ),
            },
            // The recorder bounds and filters the method before it reaches the trail.
            other => (
                Err(ErrorObject::new(
                    METHOD_NOT_FOUND,
                    format!("Method not found: {}", truncate_chars(other, 64)),
                )),
                Note::new(other, Outcome::InvalidRequest),
            ),
        };
        if let Err(handled) = self.record_or_fail(agent_id, &request_id, note, &id).await {
            return handled;
        }
        tracing::debug!(request.id = %request_id, agent.id = agent_id, method = %method, peer = %ctx.peer, "mcp request handled");
        Handled {
            reply: Some(Reply {
                id: Some(id),
                outcome,
            }),
            class: Class::Ok,
        }
    }

    /// Signals the call that a `notifications/cancelled` names, if it is still cancellable.
    fn cancel(&self, ctx: &Ctx<'_>, params: Option<&Value>) {
        let Some(id) = params.and_then(|p| p.get("requestId")) else {
            return;
        };
        let stopped = self.in_flight.cancel(ctx.session, id);
        tracing::debug!(
            agent.id = %ctx.principal.agent.agent_id,
            request = %id,
            stopped,
            "cancellation received"
        );
    }

    /// Commits the record of a refused or failed call, then answers with `error`.
    pub(crate) async fn refuse(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
        id: Id,
        error: ErrorObject,
        class: Class,
    ) -> Handled {
        tracing::debug!(
            request.id = request_id,
            agent.id = agent_id,
            tool = note.tool.as_deref().unwrap_or(""),
            outcome = %note.outcome,
            code = error.code,
            "tool call refused"
        );
        if let Err(handled) = self.record_or_fail(agent_id, request_id, note, &id).await {
            return handled;
        }
        Handled {
            reply: Some(Reply::error(Some(id), error)),
            class,
        }
    }

    /// Commits an audit record; a failure becomes an internal error for request `id`.
    async fn record_or_fail(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
        id: &Id,
    ) -> Result<(), Handled> {
        self.record(agent_id, request_id, note)
            .await
            .map_err(|_| Handled {
                reply: Some(Reply::error(
                    Some(id.clone()),
                    ErrorObject::new(INTERNAL_ERROR, "Internal error"),
                )),
                class: Class::Internal,
            })
    }

    /// Commits an audit record, durably, before the caller answers.
    ///
    /// # Errors
    ///
    /// Returns a 500 response (JSON-RPC internal error) when the record could not be committed;
    /// nothing may be answered as if it had been recorded.
    async fn record(&self, agent_id: &str, request_id: &str, note: Note) -> Result<(), Early> {
        self.recorder
            .record(agent_id, request_id, note)
            .await
            .map_err(|err| {
                tracing::debug!(request.id = request_id, error = %err, "audit record not committed");
                Box::new(reply_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ResponseFormat::Json,
                    &Reply::error(None, ErrorObject::new(INTERNAL_ERROR, "Internal error")),
                ))
            })
    }

    fn status(&self, class: Class) -> StatusCode {
        match (self.cfg.error_status, class) {
            (_, Class::Ok) => StatusCode::OK,
            // Clients learn to authenticate again from the 401, in either mode.
            (_, Class::Unauthorized) => StatusCode::UNAUTHORIZED,
            (ErrorStatus::Always200, _) => StatusCode::OK,
            (ErrorStatus::Reference, Class::Forbidden) => StatusCode::FORBIDDEN,
            (ErrorStatus::Reference, Class::Budget) => StatusCode::TOO_MANY_REQUESTS,
            (ErrorStatus::Reference, Class::Downstream) => StatusCode::BAD_GATEWAY,
            (ErrorStatus::Reference, Class::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            (ErrorStatus::Reference, Class::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.deps.credentials.clock().now()
    }

    /// The id the server gave the HTTP request (see [`RequestId`]), or a fresh one.
    fn request_id(&self, extensions: &http::Extensions) -> String {
        extensions
            .get::<RequestId>()
            .map_or_else(|| self.trace_id(), |id| id.0.clone())
    }

    /// A fresh trace id: 64 random bits as 16 hex digits. It is the audit record's
    /// `requestId` and the downstream's `x-request-id`.
    fn trace_id(&self) -> String {
        session::random_hex(&self.rng, 8).unwrap_or_else(|_| "0000000000000000".to_owned())
    }
}

pub(crate) fn internal_error() -> ErrorObject {
    ErrorObject::new(INTERNAL_ERROR, "Internal error")
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Makes the circuits match the downstreams of `catalog`.
fn sync_circuits(circuits: &CircuitBreakers, catalog: &Catalog) {
    circuits.sync_downstreams(catalog.downstreams.keys().map(String::as_str));
}
