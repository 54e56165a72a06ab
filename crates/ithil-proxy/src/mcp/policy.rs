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

/// Why a successful downstream answer cannot be handed to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// The body is not UTF-8, so it is no text an agent could read.
    NotUtf8,
    /// The body is declared JSON and is not.
    NotJson,
}

impl BodyFault {
    pub(crate) fn message(self) -> &'static str {
        match self {
            BodyFault::NotUtf8 => "Downstream API failed: the response is not valid UTF-8",
            BodyFault::NotJson => "Downstream API failed: the response is not valid JSON",
        }
    }
}

/// Checks a 2xx body before it is filtered: it must be UTF-8, and JSON when `json` says the
/// downstream declared it so. An empty body passes (a 204, or a 200 with nothing to say).
///
/// A broken body is the downstream's failure: passing it on would hand the agent replacement
/// characters or half a document as if the call had worked, and charge for them.
pub(crate) fn check_body(body: &[u8], json: bool) -> Result<(), BodyFault> {
    if std::str::from_utf8(body).is_err() {
        return Err(BodyFault::NotUtf8);
    }
    if json
        && !body.trim_ascii().is_empty()
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
    {
        return Err(BodyFault::NotJson);
    }
    Ok(())
}

/// Whether a downstream's `Content-Type` declares JSON: `application/json` or any
/// `application/*+json`, parameters aside.
pub(crate) fn declares_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = media.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::*;

    fn content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_suffixes() {
        for value in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+JSON",
        ] {
            assert!(declares_json(&content_type(value)), "{value}");
        }
        for value in [
            "text/plain",
            "application/jsonx",
            "application/+json",
            "json",
            "",
        ] {
            assert!(!declares_json(&content_type(value)), "{value}");
        }
        assert!(!declares_json(&HeaderMap::new()));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_fault_whatever_its_type() {
        assert_eq!(check_body(b"ok \xff\xfe", false), Err(BodyFault::NotUtf8));
        assert_eq!(
            check_body(b"{\"a\": \"\xc3\"}", true),
            Err(BodyFault::NotUtf8)
        );
    }

    #[test]
    fn a_body_declared_json_must_parse() {
        assert_eq!(check_body(br#"{"a": [1, 2"#, true), Err(BodyFault::NotJson));
        assert_eq!(check_body(b"<html>", true), Err(BodyFault::NotJson));
        assert_eq!(check_body(br#"{"a": 1}"#, true), Ok(()));
        assert_eq!(check_body(b"  \n", true), Ok(()));
        // Undeclared text passes as text.
        assert_eq!(check_body(b"<html>", false), Ok(()));
    }

    #[test]
    fn deeply_nested_json_is_checked_without_recursion() {
        // serde_json skips an ignored value with a loop, not a recursion, so depth cannot
        // exhaust the stack here; a valid document passes however deep it is.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check_body(deep.as_bytes(), true), Ok(()));
        let broken = format!("{}{}", "[".repeat(100_000), "]".repeat(99_999));
        assert_eq!(check_body(broken.as_bytes(), true), Err(BodyFault::NotJson));
    }
}
