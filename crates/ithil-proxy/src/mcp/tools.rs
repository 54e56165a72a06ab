//! The MCP shapes of the gateway's answers: `initialize`, tool listings, cursors, tool results.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use ithil_registry::AgentPrincipal;

use crate::catalog::{Catalog, Tool};
use crate::mcp::jsonrpc::{self, ErrorObject, INVALID_PARAMS};
use crate::mcp::policy::refusal;
use crate::mcp::version::ProtocolVersion;

/// The `serverInfo.name` the gateway announces.
pub const SERVER_NAME: &str = "ithil";

/// The longest cursor accepted, in bytes; longer ones cannot be the gateway's.
const MAX_CURSOR_LEN: usize = 1024;

/// The result of `initialize`: the negotiated revision, the capabilities and `serverInfo`.
///
/// Only `tools` is declared, with `listChanged` false: the gateway sends no notifications, and
/// methods it does not offer (resources, prompts, logging, completions) are not announced.
pub fn initialize_result(
    version: ProtocolVersion,
    server_version: &str,
    instructions: Option<&str>,
) -> Value {
    let mut result = json!({
        "protocolVersion": version.as_str(),
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": SERVER_NAME, "version": server_version },
    });
    if let (Some(text), Some(obj)) = (instructions, result.as_object_mut()) {
        obj.insert("instructions".into(), Value::String(text.to_owned()));
    }
    result
}

/// One tool as `tools/list` shows it: name, description and input schema.
///
/// The schema's root `type` is set to `object` when a loader left it out (discovery documents
/// may), since clients require it.
pub fn tool_entry(tool: &Tool) -> Value {
    let mut schema = match &tool.input_schema {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    schema
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    json!({
        "name": tool.name,
        "description": tool.description,
        "inputSchema": schema,
    })
}

/// The `tools/list` result: the page of tools `principal` may call that starts after the
/// request's cursor, with `nextCursor` when more follow.
///
/// Tools the agent may not call are skipped entirely, so the listing shows exactly the tools
/// a `tools/call` would accept.
pub(crate) fn list_page(
    catalog: &Catalog,
    principal: &AgentPrincipal,
    params: Option<&Value>,
    page_size: usize,
) -> Result<Value, ErrorObject> {
    let params = jsonrpc::params_object(params)?;
    let after =
        match params.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(decode_cursor(c).ok_or_else(|| {
                ErrorObject::new(INVALID_PARAMS, "Invalid params: unknown cursor")
            })?),
            Some(_) => {
                return Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "Invalid params: cursor must be a string",
                ));
            }
        };

    let page_size = page_size.max(1);
    let range = match &after {
        Some(name) => catalog.tools.range::<str, _>((
            std::ops::Bound::Excluded(name.as_str()),
            std::ops::Bound::Unbounded,
        )),
        None => catalog.tools.range::<str, _>(..),
    };
    let mut page = Vec::with_capacity(page_size.min(catalog.tools.len()));
    let mut last = None;
    let mut more = false;
    for (name, tool) in range {
        if refusal(principal, tool).is_some() {
            continue;
        }
        if page.len() == page_size {
            more = true;
            break;
        }
        page.push(tool_entry(tool));
        last = Some(name.as_str());
    }

    let mut result = Map::new();
    result.insert("tools".into(), Value::Array(page));
    if let (true, Some(last)) = (more, last) {
        result.insert("nextCursor".into(), Value::String(encode_cursor(last)));
    }
    Ok(Value::Object(result))
}

/// Encodes the cursor of the page that starts after the tool named `last`.
///
/// The cursor names a position in the name order rather than an index, so a catalog reload
/// between two pages neither repeats nor skips a tool that is still there.
pub fn encode_cursor(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// Decodes a cursor made by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.len() > MAX_CURSOR_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

/// A tool result with one text block, `isError`, and `structuredContent` when given.
pub fn text_result(text: String, is_error: bool, structured: Option<Value>) -> Value {
    let mut result = Map::new();
    result.insert("content".into(), json!([{ "type": "text", "text": text }]));
    if let Some(s) = structured {
        result.insert("structuredContent".into(), s);
    }
    result.insert("isError".into(), Value::Bool(is_error));
    Value::Object(result)
}

/// The structured form of a response body: the body itself when it is a JSON object and the
/// revision has structured content, else nothing.
pub fn structured_content(body: &str, version: ProtocolVersion) -> Option<Value> {
    if !version.has_structured_content() {
        return None;
    }
    let trimmed = body.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_json::from_str::<Value>(body) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialize_declares_only_tools_without_list_changes() {
        let r = initialize_result(ProtocolVersion::V2025_06_18, "1.2.3", None);
        assert_eq!(r["protocolVersion"], "2025-06-18");
        assert_eq!(
            r["capabilities"],
            json!({ "tools": { "listChanged": false } })
        );
        assert_eq!(
            r["serverInfo"],
            json!({ "name": "ithil", "version": "1.2.3" })
        );
        assert!(r.get("instructions").is_none());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor("getPost");
        assert_eq!(decode_cursor(&c).as_deref(), Some("getPost"));
        assert_eq!(decode_cursor("***"), None);
        assert_eq!(decode_cursor(&"A".repeat(2000)), None);
    }

    #[test]
    fn a_tool_result_has_one_text_block() {
        let r = text_result("hi".into(), false, None);
        assert_eq!(
            r,
            json!({ "content": [{ "type": "text", "text": "hi" }], "isError": false })
        );
    }

    #[test]
    fn structured_content_needs_a_json_object_and_a_recent_revision() {
        let body = r#"{"id": 1}"#;
        assert_eq!(
            structured_content(body, ProtocolVersion::V2025_06_18),
            Some(json!({ "id": 1 }))
        );
        assert_eq!(structured_content(body, ProtocolVersion::V2025_03_26), None);
        assert_eq!(structured_content("[1]", ProtocolVersion::LATEST), None);
        assert_eq!(structured_content("{broken", ProtocolVersion::LATEST), None);
    }
}
