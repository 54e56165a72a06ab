//! JSON-RPC 2.0 messages as MCP carries them: parsing with bounded nesting, and replies.
//!
//! Parsing happens in three steps: a byte scan that refuses documents nested deeper than a
//! bound (so no input can drive serde's recursion towards its limit or the stack towards its
//! end), a parse into `serde_json::Value`, and a check of each message's envelope. A batch keeps
//! the outcome of each element, so one bad element gets its own error and the others still run.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Number, Value};

/// The JSON-RPC code of a document that is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// The JSON-RPC code of a message that is JSON but not a valid request.
pub const INVALID_REQUEST: i32 = -32600;
/// The JSON-RPC code of a method the server does not offer.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The JSON-RPC code of bad parameters: an unknown tool, or arguments the schema refuses.
pub const INVALID_PARAMS: i32 = -32602;
/// The JSON-RPC code of a failure inside the gateway.
pub const INTERNAL_ERROR: i32 = -32603;
/// Ithil's code for a missing or refused agent token (HTTP 401).
pub const UNAUTHORIZED: i32 = -32001;
/// Ithil's code for a failed downstream API: 5xx, timeout, refused connection (HTTP 502).
pub const DOWNSTREAM_FAILED: i32 = -32002;
/// Ithil's code for a refused call: allowlist, scope, write block, open circuit (HTTP 403/503).
pub const FORBIDDEN: i32 = -32003;
/// Ithil's code for a call refused because its downstream's circuit is open (HTTP 503); the
/// reference gives it the same number as [`FORBIDDEN`].
pub const CIRCUIT_OPEN: i32 = -32003;
/// Ithil's code for an exhausted daily token budget (HTTP 429).
pub const BUDGET_EXHAUSTED: i32 = -32029;
/// The code of a request its client cancelled with `notifications/cancelled` before it was
/// answered. MCP defines no code for it (a client that cancels ignores the answer); this is the
/// one the Language Server Protocol uses.
pub const REQUEST_CANCELLED: i32 = -32800;

/// The deepest nesting of arrays and objects [`parse`] accepts by default.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// A request id: JSON-RPC allows a string or a number (MCP forbids null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// A numeric id, kept exactly as the client wrote it.
    Number(Number),
    /// A string id.
    String(String),
}

impl Id {
    fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::Number(n) => Some(Id::Number(n.clone())),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }

    /// Returns the id as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::Number(n.clone()),
            Id::String(s) => Value::String(s.clone()),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => n.serialize(serializer),
            Id::String(s) => serializer.serialize_str(s),
        }
    }
}

/// A request: a method call that expects a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the response must carry.
    pub id: Id,
    /// The method name, such as `tools/call`.
    pub method: String,
    /// The parameters, an object or an array when present.
    pub params: Option<Value>,
}

/// A notification: a method call without an id, which gets no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method name, such as `notifications/initialized`.
    pub method: String,
    /// The parameters, an object or an array when present.
    pub params: Option<Value>,
}

/// One message a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request, which gets a response.
    Request(Request),
    /// A notification, which gets none.
    Notification(Notification),
    /// A response to a request the server sent (the gateway sends none, so these are accepted
    /// and dropped).
    Response(Id),
}

impl Message {
    /// The method name of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            Message::Response(_) => None,
        }
    }
}

/// A message that could not be accepted, with the error its response carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The id of the offending message, when it had a usable one.
    pub id: Option<Id>,
    /// The error to answer with.
    pub error: ErrorObject,
}

/// What one HTTP body held.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A single message (or a single invalid one).
    Single(Result<Message, Invalid>),
    /// A non-empty batch, each element checked on its own.
    Batch(Vec<Result<Message, Invalid>>),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i32,
    /// A short description.
    pub message: String,
    /// Extra detail, when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// Creates an error without data.
    pub fn new(code: i32, message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds data to the error.
    pub fn with_data(mut self, data: Value) -> ErrorObject {
        self.data = Some(data);
        self
    }
}

/// A response the gateway sends: a result or an error for one id (or for no id).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The id of the request answered; `None` serializes as `null` (the request had no usable
    /// id, or the error is about the whole HTTP body).
    pub id: Option<Id>,
    /// The result or the error.
    pub outcome: Result<Value, ErrorObject>,
}

impl Reply {
    /// A successful response.
    pub fn result(id: Id, result: Value) -> Reply {
        Reply {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Reply {
        Reply {
            id,
            outcome: Err(error),
        }
    }

    /// Serializes the response to JSON bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing a `Value`, strings and numbers into a `Vec` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", "2.0")?;
        map.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(result) => map.serialize_entry("result", result)?,
            Err(error) => map.serialize_entry("error", error)?,
        }
        map.end()
    }
}

/// Why a whole body was refused before any message in it could be looked at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON.
    #[error("body is not valid json")]
    NotJson,
    /// Arrays and objects are nested deeper than the bound.
    #[error("json nested deeper than {max} levels")]
    TooDeep {
        /// The bound that was exceeded.
        max: usize,
    },
    /// The body is an empty array.
    #[error("empty batch")]
    EmptyBatch,
    /// The body is neither an object nor an array.
    #[error("body is not a json-rpc message or batch")]
    NotAMessage,
}

impl ParseError {
    /// The JSON-RPC error to answer with.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            ParseError::NotJson => ErrorObject::new(PARSE_ERROR, "Parse error"),
            ParseError::TooDeep { max } => ErrorObject::new(
                PARSE_ERROR,
                format!("Parse error: JSON nested deeper than {max} levels"),
            ),
            ParseError::EmptyBatch => {
                ErrorObject::new(INVALID_REQUEST, "Invalid Request: empty batch")
            }
            ParseError::NotAMessage => ErrorObject::new(INVALID_REQUEST, "Invalid Request"),
        }
    }
}

/// Parses an HTTP body into one message or a batch.
///
/// # Errors
///
/// Returns [`ParseError`] when the body is not JSON, is nested deeper than `max_depth`, is an
/// empty array, or is neither an object nor an array. Problems with a single message (a missing
/// `jsonrpc` member, a bad id) are not errors here: they come back as [`Invalid`] elements.
pub fn parse(body: &[u8], max_depth: usize) -> Result<Payload, ParseError> {
    // The scan runs before serde so that a hostile document never reaches a recursive parser.
    check_depth(body, max_depth)?;

    let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    match value {
        Value::Array(items) if items.is_empty() => Err(ParseError::EmptyBatch),
        Value::Array(items) => Ok(Payload::Batch(items.into_iter().map(message).collect())),
        Value::Object(_) => Ok(Payload::Single(message(value))),
        _ => Err(ParseError::NotAMessage),
    }
}

/// Refuses documents whose arrays and objects nest deeper than `max_depth`.
///
/// Brackets inside strings do not count; escapes inside strings are skipped. The scan does not
/// validate JSON, which serde does next.
fn check_depth(body: &[u8], max_depth: usize) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ParseError::TooDeep { max: max_depth });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks one message's envelope.
fn message(value: Value) -> Result<Message, Invalid> {
    let Value::Object(mut obj) = value else {
        return Err(invalid(
            None,
            "Invalid Request: a message must be an object",
        ));
    };

    // The id is read first so that even a malformed message gets its error under its own id.
    let raw_id = obj.remove("id");
    let id = match &raw_id {
        None => None,
        Some(v) => match Id::from_value(v) {
            Some(id) => Some(id),
            None => {
                return Err(invalid(
                    None,
                    "Invalid Request: id must be a string or a number",
                ));
            }
        },
    };

    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(id, "Invalid Request: jsonrpc must be \"2.0\""));
    }

    if let Some(method) = obj.remove("method") {
        let Value::String(method) = method else {
            return Err(invalid(id, "Invalid Request: method must be a string"));
        };
        let params = obj.remove("params");
        if let Some(p) = &params
            && !matches!(p, Value::Object(_) | Value::Array(_))
        {
            return Err(invalid(
                id,
                "Invalid Request: params must be an object or an array",
            ));
        }
        return Ok(match id {
            Some(id) => Message::Request(Request { id, method, params }),
            None => Message::Notification(Notification { method, params }),
        });
    }

    let has_result = obj.contains_key("result");
    let has_error = obj.contains_key("error");
    match id {
        Some(id) if has_result != has_error => Ok(Message::Response(id)),
        id => Err(invalid(id, "Invalid Request")),
    }
}

fn invalid(id: Option<Id>, message: &str) -> Invalid {
    Invalid {
        id,
        error: ErrorObject::new(INVALID_REQUEST, message),
    }
}

/// Returns the params of a request as an object: absent params are an empty object.
///
/// # Errors
///
/// Returns an `INVALID_PARAMS` error when the params are an array.
pub fn params_object(params: Option<&Value>) -> Result<Map<String, Value>, ErrorObject> {
    match params {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(ErrorObject::new(
            INVALID_PARAMS,
            "Invalid params: expected an object",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn single(body: &str) -> Result<Message, Invalid> {
        match parse(body.as_bytes(), DEFAULT_MAX_DEPTH).expect("parses") {
            Payload::Single(m) => m,
            Payload::Batch(_) => panic!("expected a single message"),
        }
    }

    #[test]
    fn a_request_with_a_number_id_parses() {
        let m = single(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
        assert_eq!(
            m,
            Message::Request(Request {
                id: Id::Number(7.into()),
                method: "ping".into(),
                params: None
            })
        );
    }

    #[test]
    fn a_request_with_a_string_id_keeps_it() {
        let m = single(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/list","params":{}}"#);
        let Message::Request(r) = m.unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(r.id, Id::String("a-1".into()));
        assert_eq!(r.params, Some(json!({})));
    }

    #[test]
    fn a_message_without_id_is_a_notification() {
        let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(m, Message::Notification(n) if n.method == "notifications/initialized"));
    }

    #[test]
    fn a_client_response_is_recognised() {
        let m = single(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert_eq!(m, Message::Response(Id::Number(3.into())));
    }

    #[test]
    fn a_null_id_is_invalid() {
        let err = single(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).unwrap_err();
        assert_eq!(err.error.code, INVALID_REQUEST);
        assert_eq!(err.id, None);
    }

    #[test]
    fn a_wrong_jsonrpc_version_is_invalid_but_keeps_the_id() {
        let err = single(r#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#).unwrap_err();
        assert_eq!(err.error.code, INVALID_REQUEST);
        assert_eq!(err.id, Some(Id::Number(9.into())));
    }

    #[test]
    fn scalar_params_are_invalid() {
        let err = single(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#).unwrap_err();
        assert_eq!(err.error.code, INVALID_REQUEST);
    }

    #[test]
    fn a_response_with_both_result_and_error_is_invalid() {
        let err = single(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#).unwrap_err();
        assert_eq!(err.error.code, INVALID_REQUEST);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = parse(b"{not json", DEFAULT_MAX_DEPTH).unwrap_err();
        assert_eq!(err, ParseError::NotJson);
        assert_eq!(err.to_error_object().code, PARSE_ERROR);
    }

    #[test]
    fn a_scalar_body_is_not_a_message() {
        assert_eq!(parse(b"42", 64).unwrap_err(), ParseError::NotAMessage);
    }

    #[test]
    fn an_empty_batch_is_invalid() {
        let err = parse(b" [ ] ", DEFAULT_MAX_DEPTH).unwrap_err();
        assert_eq!(err.to_error_object().code, INVALID_REQUEST);
    }

    #[test]
    fn a_batch_keeps_each_elements_outcome() {
        let body =
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 5, {"jsonrpc":"2.0","method":"x"}]"#;
        let Payload::Batch(items) = parse(body.as_bytes(), DEFAULT_MAX_DEPTH).unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], Ok(Message::Request(_))));
        assert!(items[1].is_err());
        assert!(matches!(items[2], Ok(Message::Notification(_))));
    }

    #[test]
    fn deep_nesting_is_refused_before_serde_sees_it() {
        // Far deeper than serde_json's own recursion limit of 128.
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse(body.as_bytes(), DEFAULT_MAX_DEPTH).unwrap_err(),
            ParseError::TooDeep { max: 64 }
        );
    }

    #[test]
    fn nesting_at_the_bound_is_accepted() {
        // The envelope object is one level, the params arrays the other 63.
        let inner = format!("{}1{}", "[".repeat(63), "]".repeat(63));
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{inner}}}"#);
        assert!(parse(body.as_bytes(), 64).is_ok());
        assert!(parse(body.as_bytes(), 63).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{{"s":"{}\"\\"}}}}"#,
            "[{".repeat(500)
        );
        assert!(matches!(
            parse(body.as_bytes(), 8),
            Ok(Payload::Single(Ok(_)))
        ));
    }

    #[test]
    fn replies_serialize_as_json_rpc() {
        let ok = Reply::result(Id::Number(1.into()), json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"a": 1}})
        );
        let err = Reply::error(None, ErrorObject::new(PARSE_ERROR, "Parse error"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})
        );
    }

    #[test]
    fn array_params_are_refused_where_an_object_is_needed() {
        assert_eq!(params_object(None).unwrap(), Map::new());
        assert_eq!(
            params_object(Some(&json!([1]))).unwrap_err().code,
            INVALID_PARAMS
        );
    }
}
