//! The audit record: what one request or management action did, as it is stored and exported.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

/// The `agentId` of a record written for an operator's management action; the operator's token
/// id (`jti`) goes into [`AuditRecord::operator`].
pub const ADMIN_AGENT_ID: &str = "admin";

/// The largest serialized size of [`NewRecord::arguments`] that is stored as given, in bytes.
///
/// Larger arguments are replaced by a marker object (see [`cap_arguments`]). Default of
/// [`AuditLog`](crate::AuditLog); change it with
/// [`AuditLog::with_max_argument_bytes`](crate::AuditLog::with_max_argument_bytes).
pub const MAX_ARGUMENT_BYTES: usize = 4096;

/// The key of the marker object that replaces oversized arguments; its value is `true`.
pub const TRUNCATED_KEY: &str = "truncated";

/// The key of the marker object that holds the serialized size of the arguments it replaces.
pub const ORIGINAL_BYTES_KEY: &str = "originalBytes";

/// The earliest time a record can carry: RFC 3339 has no years before 0.
const EARLIEST_TIME: OffsetDateTime = time::macros::datetime!(0000-01-01 00:00:00 UTC);

/// The latest time a record can carry: RFC 3339 has no years after 9999.
const LATEST_TIME: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999_999_999 UTC);

/// One stored entry of the audit trail.
///
/// Serialized as camelCase JSON with every field present (absent values are `null`) and `time`
/// in RFC 3339, always UTC. This is the shape of `GET /management/audit` and of one line of the
/// JSON Lines export and stdout sink (see [`AuditRecord::to_json_line`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// The record's position in the trail: assigned on append, strictly increasing in commit
    /// order, never reused once committed.
    pub id: u64,

    /// When the request or action happened, in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,

    /// The gateway's id of the HTTP request, for joining the record with the server log.
    pub request_id: String,

    /// The agent that made the request, or [`ADMIN_AGENT_ID`] for a management action.
    pub agent_id: String,

    /// For a management action, the id (`jti`) of the admin token that authorized it.
    #[serde(default)]
    pub operator: Option<String>,

    /// What was asked for, one of [`Action`] or another JSON-RPC method name.
    pub action: String,

    /// The tool of a `tools/call`, if the request named one.
    #[serde(default)]
    pub tool: Option<String>,

    /// What became of the request, one of [`Outcome`].
    pub outcome: String,

    /// The tokens charged to the agent's budget for this request; 0 when nothing was charged.
    #[serde(default)]
    pub tokens: u64,

    /// The HTTP status the downstream API answered with, if it was called.
    #[serde(default)]
    pub downstream_status: Option<u16>,

    /// How long the gateway took to answer, in milliseconds, if measured.
    #[serde(default)]
    pub latency_ms: Option<u64>,

    /// The tool call's arguments after the privacy filter, capped at the log's
    /// [maximum size](MAX_ARGUMENT_BYTES).
    #[serde(default)]
    pub arguments: Option<Value>,
}

impl AuditRecord {
    /// Serializes the record as one line of JSON Lines: compact JSON followed by `\n`.
    pub fn to_json_line(&self) -> String {
        let mut line = self.to_json();
        line.push('\n');
        line
    }

    /// Serializes the record as compact JSON.
    pub fn to_json(&self) -> String {
        // Cannot fail for a record the log returned: every map key is a string, and the log
        // clamps times to what RFC 3339 can express. A record built by hand with a negative
        // year is written without its time rather than panicking.
        serde_json::to_string(self).unwrap_or_else(|_| {
            let mut value = serde_json::json!({
                "id": self.id,
                "time": Value::Null,
                "requestId": self.request_id,
                "agentId": self.agent_id,
                "operator": self.operator,
                "action": self.action,
                "tool": self.tool,
                "outcome": self.outcome,
                "tokens": self.tokens,
                "downstreamStatus": self.downstream_status,
                "latencyMs": self.latency_ms,
            });
            value["arguments"] = self.arguments.clone().unwrap_or(Value::Null);
            value.to_string()
        })
    }
}

/// A record to append: everything but the id, which the log assigns.
///
/// Start from [`NewRecord::new`] (or [`NewRecord::admin`]) and set the optional fields with
/// struct update syntax:
///
/// ```
/// use ithil_audit::{Action, NewRecord, Outcome};
/// use time::macros::datetime;
///
/// let rec = NewRecord {
///     tool: Some("getUser".into()),
///     tokens: 312,
///     downstream_status: Some(200),
///     ..NewRecord::new(
///         datetime!(2026-05-06 12:00:00 UTC),
///         "req-1",
///         "agt_3f9a1c2b",
///         Action::ToolsCall,
///         Outcome::Ok,
///     )
/// };
/// assert_eq!(rec.action, "tools/call");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// When the request or action happened; stored in UTC whatever its offset.
    pub time: OffsetDateTime,
    /// See [`AuditRecord::request_id`].
    pub request_id: String,
    /// See [`AuditRecord::agent_id`].
    pub agent_id: String,
    /// See [`AuditRecord::operator`]. Default is `None`.
    pub operator: Option<String>,
    /// See [`AuditRecord::action`].
    pub action: String,
    /// See [`AuditRecord::tool`]. Default is `None`.
    pub tool: Option<String>,
    /// See [`AuditRecord::outcome`].
    pub outcome: String,
    /// See [`AuditRecord::tokens`]. Default is 0.
    pub tokens: u64,
    /// See [`AuditRecord::downstream_status`]. Default is `None`.
    pub downstream_status: Option<u16>,
    /// See [`AuditRecord::latency_ms`]. Default is `None`.
    pub latency_ms: Option<u64>,
    /// The arguments, already through the privacy filter; the log caps their size. Default is
    /// `None`.
    pub arguments: Option<Value>,
}

impl NewRecord {
    /// Starts a record of an agent's request with the required fields; the others are empty.
    pub fn new(
        time: OffsetDateTime,
        request_id: impl Into<String>,
        agent_id: impl Into<String>,
        action: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        Self {
            time,
            request_id: request_id.into(),
            agent_id: agent_id.into(),
            operator: None,
            action: action.into(),
            tool: None,
            outcome: outcome.into(),
            tokens: 0,
            downstream_status: None,
            latency_ms: None,
            arguments: None,
        }
    }

    /// Starts a record of a management action: `agentId` is [`ADMIN_AGENT_ID`] and `operator`
    /// the admin token's id.
    pub fn admin(
        time: OffsetDateTime,
        request_id: impl Into<String>,
        operator_jti: impl Into<String>,
        action: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        Self {
            operator: Some(operator_jti.into()),
            ..Self::new(time, request_id, ADMIN_AGENT_ID, action, outcome)
        }
    }

    /// Builds the stored record: assigns the id, moves the time to UTC (clamped to the years 0
    /// to 9999 that RFC 3339 can write) and caps the arguments.
    pub(crate) fn into_record(self, id: u64, max_argument_bytes: usize) -> AuditRecord {
        AuditRecord {
            id,
            time: self
                .time
                .to_offset(UtcOffset::UTC)
                .clamp(EARLIEST_TIME, LATEST_TIME),
            request_id: self.request_id,
            agent_id: self.agent_id,
            operator: self.operator,
            action: self.action,
            tool: self.tool,
            outcome: self.outcome,
            tokens: self.tokens,
            downstream_status: self.downstream_status,
            latency_ms: self.latency_ms,
            arguments: self
                .arguments
                .map(|args| cap_arguments(args, max_argument_bytes)),
        }
    }
}

/// Replaces `arguments` by a marker object when their compact JSON is larger than `max_bytes`.
///
/// The marker is `{"truncated": true, "originalBytes": N}` with `N` the serialized size of what
/// it replaces (see [`TRUNCATED_KEY`] and [`ORIGINAL_BYTES_KEY`]). Arguments within the limit
/// are returned unchanged. Nothing of an oversized value is kept: a prefix cut at a byte count
/// could end inside a value, and the record should say plainly that the arguments are missing.
pub fn cap_arguments(arguments: Value, max_bytes: usize) -> Value {
    let size = serialized_len(&arguments);
    if size <= max_bytes {
        return arguments;
    }
    serde_json::json!({ TRUNCATED_KEY: true, ORIGINAL_BYTES_KEY: size })
}

/// The length of `value` as compact JSON, measured without building the string.
pub fn serialized_len(value: &Value) -> usize {
    struct Count(usize);

    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let mut count = Count(0);
    // A `Value` always serializes (its keys are strings), and `Count` never fails.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Declares a closed vocabulary of wire strings as an enum with `as_str`, `ALL`, `Display`,
/// `FromStr` and `From<_> for String`.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident, $error:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant),*];

            /// The string stored in the record.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    _ => Err($error(s.to_owned())),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.as_str().to_owned()
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == other.as_str()
            }
        }
    };
}

/// A string that is not one of the known [`Outcome`]s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit outcome {0:?}")]
pub struct UnknownOutcome(pub String);

/// A string that is not one of the known [`Action`]s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAction(pub String);

vocabulary! {
    /// What became of a request: the known values of [`AuditRecord::outcome`].
    ///
    /// The field is a string, so a newer gateway may store values this enum does not know;
    /// parse with [`str::parse`] and treat an error as "other".
    Outcome, UnknownOutcome {
        /// The request succeeded.
        Ok => "ok",
        /// The downstream API answered with a client error, passed to the agent as a tool error.
        ToolError => "tool_error",
        /// The tool is not on the agent's allowlist.
        DeniedAllowlist => "denied_allowlist",
        /// The agent's token lacks a scope the tool requires.
        DeniedScope => "denied_scope",
        /// The tool writes (POST, PUT, PATCH, DELETE) and is not marked `allowWrite`.
        WriteBlocked => "write_blocked",
        /// The agent had no budget left, so the downstream API was not called.
        BudgetExhausted => "budget_exhausted",
        /// The downstream answered, but the response did not fit in the remaining budget.
        WithheldOverBudget => "withheld_over_budget",
        /// The downstream's circuit is open, so it was not called.
        CircuitOpen => "circuit_open",
        /// The downstream API failed (5xx, connection error).
        DownstreamError => "downstream_error",
        /// The downstream API did not answer in time.
        DownstreamTimeout => "downstream_timeout",
        /// The client cancelled the call (`notifications/cancelled`) or went away while it waited
        /// for its downstream; nothing was charged.
        Cancelled => "cancelled",
        /// The arguments do not match the tool's input schema.
        InvalidArguments => "invalid_arguments",
        /// The request is not valid JSON-RPC or MCP, or a management request is invalid.
        InvalidRequest => "invalid_request",
        /// The request or the downstream response is larger than allowed.
        RejectedTooLarge => "rejected_too_large",
        /// No tool of that name is in the catalog.
        UnknownTool => "unknown_tool",
        /// The token is missing or invalid, or its agent is unknown or inactive.
        Unauthenticated => "unauthenticated",
        /// The management action named something that does not exist.
        NotFound => "not_found",
        /// The management action conflicts with the current state.
        Conflict => "conflict",
        /// The gateway itself failed.
        InternalError => "internal_error",
    }
}

vocabulary! {
    /// What was asked for: the known values of [`AuditRecord::action`].
    ///
    /// MCP requests use their JSON-RPC method name; management actions use `noun.verb`. The
    /// field is a string, so other JSON-RPC methods are stored as they came.
    Action, UnknownAction {
        /// An MCP tool call.
        ToolsCall => "tools/call",
        /// An MCP tool listing.
        ToolsList => "tools/list",
        /// An MCP session start.
        Initialize => "initialize",
        /// An MCP ping.
        Ping => "ping",
        /// An MCP session ended by the client (`DELETE /mcp`).
        SessionDelete => "session.delete",
        /// An agent was created.
        AgentCreate => "agent.create",
        /// An agent was changed.
        AgentUpdate => "agent.update",
        /// An agent was deleted.
        AgentDelete => "agent.delete",
        /// An agent token was issued.
        TokenIssue => "token.issue",
        /// An admin token was issued.
        AdminTokenIssue => "admin_token.issue",
        /// An agent's usage for a day was reset.
        BudgetReset => "budget.reset",
        /// An agent's daily limit was set.
        BudgetSet => "budget.set",
        /// The audit trail was exported.
        AuditExport => "audit.export",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    #[test]
    fn arguments_within_the_cap_are_kept_as_given() {
        let args = serde_json::json!({ "id": 3, "q": "x".repeat(100) });
        assert_eq!(cap_arguments(args.clone(), MAX_ARGUMENT_BYTES), args);
    }

    #[test]
    fn arguments_over_the_cap_become_a_marker_with_their_size() {
        let args = serde_json::json!({ "q": "x".repeat(5000) });
        let size = serde_json::to_string(&args).unwrap().len();

        let capped = cap_arguments(args, MAX_ARGUMENT_BYTES);

        assert_eq!(
            capped,
            serde_json::json!({ "truncated": true, "originalBytes": size })
        );
    }

    #[test]
    fn the_cap_is_inclusive() {
        let args = serde_json::json!("abcd");
        assert_eq!(serialized_len(&args), 6);
        assert_eq!(cap_arguments(args.clone(), 6), args);
        assert_ne!(cap_arguments(args, 5), serde_json::json!("abcd"));
    }

    #[test]
    fn new_record_is_stored_in_utc() {
        let rec = NewRecord::new(
            datetime!(2026-05-06 14:00:00 +02:00),
            "r",
            "a",
            Action::Ping,
            Outcome::Ok,
        )
        .into_record(1, MAX_ARGUMENT_BYTES);
        assert_eq!(rec.time.offset(), offset!(UTC));
        assert_eq!(rec.time, datetime!(2026-05-06 12:00:00 UTC));
    }

    #[test]
    fn json_line_is_camel_case_rfc3339_and_ends_with_a_newline() {
        let rec = NewRecord {
            tool: Some("getUser".into()),
            downstream_status: Some(200),
            latency_ms: Some(12),
            tokens: 40,
            ..NewRecord::admin(
                datetime!(2026-05-06 12:00:00 UTC),
                "req-1",
                "jti-9",
                Action::AgentCreate,
                Outcome::Ok,
            )
        }
        .into_record(7, MAX_ARGUMENT_BYTES);

        let line = rec.to_json_line();

        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "id": 7,
                "time": "2026-05-06T12:00:00Z",
                "requestId": "req-1",
                "agentId": "admin",
                "operator": "jti-9",
                "action": "agent.create",
                "tool": "getUser",
                "outcome": "ok",
                "tokens": 40,
                "downstreamStatus": 200,
                "latencyMs": 12,
                "arguments": null,
            })
        );
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn a_time_before_year_zero_is_stored_as_the_earliest_writable_time() {
        let rec = NewRecord::new(
            datetime!(-0005-01-01 00:00:00 UTC),
            "r",
            "a",
            Action::Ping,
            Outcome::Ok,
        )
        .into_record(1, MAX_ARGUMENT_BYTES);

        let value: Value = serde_json::from_str(&rec.to_json_line()).unwrap();

        assert_eq!(value["time"], "0000-01-01T00:00:00Z");
    }

    #[test]
    fn a_hand_built_record_with_an_unwritable_time_still_gives_a_json_line() {
        let mut rec = NewRecord::new(
            datetime!(2026-05-06 12:00:00 UTC),
            "r",
            "a",
            Action::Ping,
            Outcome::Ok,
        )
        .into_record(1, MAX_ARGUMENT_BYTES);
        rec.time = datetime!(-0005-01-01 00:00:00 UTC);
        rec.arguments = Some(serde_json::json!({ "x": 1 }));

        let value: Value = serde_json::from_str(&rec.to_json_line()).unwrap();

        assert_eq!(value["time"], Value::Null);
        assert_eq!(value["agentId"], "a");
        assert_eq!(value["arguments"]["x"], 1);
    }

    #[test]
    fn vocabularies_cover_the_issue_lists_and_round_trip() {
        for text in [
            "ok",
            "tool_error",
            "denied_allowlist",
            "denied_scope",
            "write_blocked",
            "budget_exhausted",
            "withheld_over_budget",
            "circuit_open",
            "downstream_error",
            "invalid_arguments",
            "rejected_too_large",
            "unknown_tool",
            "unauthenticated",
            "cancelled",
        ] {
            let outcome: Outcome = text.parse().unwrap();
            assert_eq!(outcome.as_str(), text);
        }
        for text in [
            "tools/call",
            "tools/list",
            "initialize",
            "agent.create",
            "agent.update",
            "agent.delete",
            "token.issue",
            "budget.reset",
            "budget.set",
        ] {
            let action: Action = text.parse().unwrap();
            assert_eq!(action.to_string(), text);
        }
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(*outcome));
        }
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(*action));
        }
        assert_eq!(
            "nope".parse::<Outcome>(),
            Err(UnknownOutcome("nope".into()))
        );
        assert!(*"ok" == Outcome::Ok);
    }
}
