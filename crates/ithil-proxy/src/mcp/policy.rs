//! The governance rules of a tool call: who may call a tool, and what of its answer the
//! agent receives.

use http::StatusCode;
use ithil_audit::Outcome;
use ithil_budget::TokenCounter;
use ithil_registry::AgentPrincipal;
use serde_json::Value;

use crate::catalog::{OverLimit, Tool};
use crate::mcp::tools;
use crate::mcp::version::ProtocolVersion;
use crate::privacy::PrivacyFilter;

/// The result a tool call returns, and how its audit record describes it.
#[derive(Debug)]
pub(crate) struct Shaped {
    /// The `tools/call` result.
    pub result: Value,
    /// The tokens of the text the agent receives.
    pub tokens: u64,
    /// The audit outcome.
    pub outcome: Outcome,
}

/// Filters the body, applies the tool's token limit and builds the tool result.
///
/// The counted text is exactly the text block the agent receives (the filtered body, the
/// status line of a 4xx, a truncation marker); `structuredContent` repeats the body and is not
/// counted again.
pub(crate) fn shape_body(
    privacy: &PrivacyFilter,
    counter: &TokenCounter,
    tool: &Tool,
    status: StatusCode,
    body: &[u8],
    version: ProtocolVersion,
) -> Shaped {
    let raw = String::from_utf8_lossy(body);
    let filtered = privacy.filter_body(&raw).into_owned();
    let is_error = status.is_client_error();
    let text = if is_error {
        format!("Downstream API answered HTTP {status}: {filtered}")
    } else {
        filtered
    };
    let max = tool.max_response_tokens;
    let total = counter.count(&text);
    if total <= max {
        let structured = if is_error {
            None
        } else {
            tools::structured_content(&text, version)
        };
        return Shaped {
            result: tools::text_result(text, is_error, structured),
            tokens: total,
            outcome: if is_error {
                Outcome::ToolError
            } else {
                Outcome::Ok
            },
        };
    }

    match tool.over_limit {
        OverLimit::Truncate => {
            // The marker counts against the limit too, so the text is cut to leave room for it.
            let marker = format!(
                "\n[truncated by the gateway: the response has {total} tokens, the limit is {max}]"
            );
            let keep = max.saturating_sub(counter.count(&marker));
            let mut cut = counter.truncate(&text, keep).text;
            cut.push_str(&marker);
            let tokens = counter.count(&cut);
            Shaped {
                result: tools::text_result(cut, is_error, None),
                tokens,
                outcome: if is_error {
                    Outcome::ToolError
                } else {
                    Outcome::Ok
                },
            }
        }
        OverLimit::Reject => {
            let message = format!(
                "The response was too large: {total} tokens, {} over this tool's limit of {max}.",
                total - max
            );
            let tokens = counter.count(&message);
            Shaped {
                result: tools::text_result(message, true, None),
                tokens,
                outcome: Outcome::RejectedTooLarge,
            }
        }
    }
}

/// Why an agent may not call a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Allowlist,
    Scope,
    Write,
}

impl Refusal {
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Refusal::Allowlist => Outcome::DeniedAllowlist,
            Refusal::Scope => Outcome::DeniedScope,
            Refusal::Write => Outcome::WriteBlocked,
        }
    }

    pub(crate) fn message(self, tool: &Tool) -> String {
        match self {
            Refusal::Allowlist => format!("Tool {} is not on this agent's allowlist.", tool.name),
            Refusal::Scope => format!(
                "Tool {} requires scopes this agent's token does not carry: {}.",
                tool.name,
                tool.required_scopes.join(", ")
            ),
            Refusal::Write => format!(
                "Tool {} writes ({}) and is not enabled for writes.",
                tool.name, tool.method
            ),
        }
    }
}

/// The first reason `principal` may not call `tool`, if any. `tools/list` shows exactly the
/// tools without one.
pub(crate) fn refusal(principal: &AgentPrincipal, tool: &Tool) -> Option<Refusal> {
    if !principal.agent.allows_tool(&tool.name) {
        return Some(Refusal::Allowlist);
    }
    if !tool.required_scopes.iter().all(|s| principal.has_scope(s)) {
        return Some(Refusal::Scope);
    }
    if tool.writes() && !tool.allow_write {
        return Some(Refusal::Write);
    }
    None
}
