//! Building the downstream HTTP request from a tool and its arguments.
//!
//! The invariant this module keeps: no argument value can change the shape of the request. A
//! path argument becomes exactly one segment, encoded so that only `A-Z a-z 0-9 - _ ~` remain
//! literal (`/`, `%`, `.`, `?`, `#`, spaces, control characters and non-ASCII are all
//! `%XX`-encoded, so `..` arrives as `%2E%2E` and `a/b` as `a%2Fb`); query keys and values are
//! encoded the same way (keeping `.`); a header value with CR, LF, NUL or another control
//! character is refused. The agent's own token is never part of the request: only the
//! downstream's configured headers are added.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request, Uri};
use serde_json::{Map, Value};

use crate::catalog::{Downstream, ParamLocation, Segment, Tool};
use crate::schema::ArgumentError;

/// The header that carries the gateway's trace id to the downstream.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

impl Tool {
    /// Builds the downstream request for a call of this tool with `args`, which
    /// [`Tool::validate_arguments`] has accepted.
    ///
    /// The URI is the downstream's base URL (with its path prefix) joined with the tool's route,
    /// each parameter filled with its argument as one percent-encoded segment, then the query
    /// arguments. Header arguments, the downstream's configured headers, `Accept:
    /// application/json`, `x-request-id: <trace_id>` and, when the tool has body arguments, a
    /// JSON body with `Content-Type: application/json` complete it. Arguments the tool does not
    /// place are not sent; an omitted argument (see [`crate::schema::CompiledSchema::is_omitted`])
    /// is left out.
    ///
    /// # Errors
    ///
    /// [`ArgumentError::Missing`] for an absent path argument, [`ArgumentError::Invalid`] for a
    /// path argument that is empty or not a string, number or boolean, or a header argument with
    /// a control character; [`ArgumentError::Request`] when the parts do not form a request (a
    /// `trace_id` that is not a valid header value, say).
    pub fn build_request(
        &self,
        ds: &Downstream,
        args: &Map<String, Value>,
        trace_id: &str,
    ) -> Result<Request<Bytes>, ArgumentError> {
        let present = |name: &str| {
            let value = args.get(name);
            if self.compiled_schema.is_omitted(name, value) {
                None
            } else {
                value
            }
        };

        // The path: the base URL's prefix, then one encoded segment per route segment.
        let mut path = ds.base_url.path().trim_end_matches('/').to_owned();
        for segment in &self.route.segments {
            path.push('/');
            match segment {
                Segment::Literal(text) => path.push_str(text),
                Segment::Param(name) => {
                    let value =
                        present(name).ok_or_else(|| ArgumentError::Missing(name.clone()))?;
                    let text = path_text(name, value)?;
                    encode_into(&mut path, &text, PATH_SAFE);
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }

        let mut query = String::new();
        let mut body = Map::new();
        let mut whole_body: Option<Value> = None;
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();

        for param in &self.params {
            let wire = param.wire_name.as_deref().unwrap_or(&param.name);
            let Some(value) = present(&param.name) else {
                continue;
            };
            match param.location {
                ParamLocation::Path => {}
                ParamLocation::Query => push_query(&mut query, wire, value),
                ParamLocation::Header => {
                    let name = HeaderName::from_bytes(wire.as_bytes())
                        .map_err(|e| ArgumentError::Request(e.into()))?;
                    headers.push((name, header_value(&param.name, value)?));
                }
                ParamLocation::Body => {
                    let mut value = value.clone();
                    self.compiled_schema
                        .normalize_argument(&param.name, &mut value);
                    body.insert(wire.to_owned(), value);
                }
                ParamLocation::WholeBody => {
                    let mut value = value.clone();
                    self.compiled_schema
                        .normalize_argument(&param.name, &mut value);
                    whole_body = Some(value);
                }
            }
        }

        let path_and_query = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        let mut uri = ds.base_url.clone().into_parts();
        uri.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|e: http::uri::InvalidUri| ArgumentError::Request(e.into()))?,
        );
        let uri = Uri::from_parts(uri).map_err(|e| ArgumentError::Request(e.into()))?;

        // A tool with body members always sends an object, `{}` when none is given.
        let has_members = self
            .params
            .iter()
            .any(|p| p.location == ParamLocation::Body);
        let payload = match whole_body {
            Some(value) => Some(value.to_string()),
            None if has_members => Some(Value::Object(body).to_string()),
            None => None,
        };

        let has_payload = payload.is_some();
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(Bytes::from(payload.unwrap_or_default()))
            .map_err(ArgumentError::Request)?;

        // Argument headers first, so that the downstream's configuration and the gateway's own
        // headers win (merge refuses configured names for arguments anyway).
        let map = request.headers_mut();
        for (name, value) in headers {
            map.append(name, value);
        }
        for (name, value) in &ds.headers {
            map.insert(name.clone(), value.clone());
        }
        if !map.contains_key(ACCEPT) {
            map.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        if has_payload {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let trace =
            HeaderValue::from_str(trace_id).map_err(|e| ArgumentError::Request(e.into()))?;
        map.insert(HeaderName::from_static(REQUEST_ID_HEADER), trace);

        Ok(request)
    }
}

/// Bytes left literal in a path segment: RFC 3986 unreserved characters except `.`, so that
/// no segment can ever read as `.` or `..`, however a server decodes.
const PATH_SAFE: &[u8] = b"-_~";

/// Bytes left literal in a query key or value, beside letters and digits.
const QUERY_SAFE: &[u8] = b"-._~";

/// Appends `text` percent-encoded: ASCII letters, digits and `safe` stay, every other byte of
/// its UTF-8 form becomes `%XX` (upper-case hex).
fn encode_into(out: &mut String, text: &str, safe: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || safe.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// The text of a path argument: a non-empty string, a number or a boolean.
fn path_text(name: &str, value: &Value) -> Result<String, ArgumentError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => scalar_text(value),
        _ => {
            return Err(ArgumentError::invalid(
                name,
                "must be a string, number or boolean to fill a path segment",
            ));
        }
    };
    if text.is_empty() {
        // An empty segment would change the path's shape (`/posts//comments`).
        return Err(ArgumentError::invalid(name, "must not be empty"));
    }
    Ok(text)
}

/// The wire text of a value outside a JSON body: strings as they are, whole numbers without a
/// fraction (`5.0` as `5`), everything else as JSON text.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match crate::schema::integral_i64(n) {
            Some(i) if n.is_f64() => i.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Appends one query argument: an array as repeated keys, anything else as one pair.
fn push_query(query: &mut String, key: &str, value: &Value) {
    let mut pair = |text: &str| {
        if !query.is_empty() {
            query.push('&');
        }
        encode_into(query, key, QUERY_SAFE);
        query.push('=');
        encode_into(query, text, QUERY_SAFE);
    };
    match value {
        Value::Array(items) => {
            for item in items.iter().filter(|v| !v.is_null()) {
                pair(&scalar_text(item));
            }
        }
        other => pair(&scalar_text(other)),
    }
}

/// The header value of an argument: an array as its items joined with `,`, anything else as
/// its text. Control characters are refused, never stripped.
fn header_value(name: &str, value: &Value) -> Result<HeaderValue, ArgumentError> {
    let text = match value {
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => scalar_text(other),
    };
    if text.contains(['\r', '\n', '\0']) {
        return Err(ArgumentError::invalid(
            name,
            "must not contain CR, LF or NUL in a header",
        ));
    }
    HeaderValue::from_bytes(text.as_bytes()).map_err(|_| {
        ArgumentError::invalid(name, "contains a control character not allowed in a header")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, LoadOptions, load_manifest};
    use serde_json::json;

    /// A catalog with one downstream under a path prefix and tools for each placement.
    fn catalog() -> Catalog {
        let manifest = json!({
            "downstreams": {
                "api": {
                    "baseUrl": "http://127.0.0.1:5200/api/",
                    "headers": {"Authorization": "Bearer ${env:API_TOKEN}"}
                }
            },
            "tools": [
                {
                    "name": "getComment", "downstream": "api", "method": "GET",
                    "route": "/posts/{id}/comments/{cid}",
                    "inputSchema": {
                        "properties": {"id": {"type": "string"}, "cid": {"type": ["string", "integer"]}},
                        "required": ["id", "cid"]
                    }
                },
                {
                    "name": "search", "downstream": "api", "method": "GET", "route": "/search",
                    "inputSchema": {"properties": {
                        "q": {"type": "string"}, "tag": {"type": "array"},
                        "limit": {"type": "integer"}, "exact": {"type": "boolean"},
                        "version": {"type": "string"}
                    }},
                    "params": [{"name": "version", "in": "header", "wireName": "X-Api-Version"}]
                },
                {
                    "name": "createPost", "downstream": "api", "method": "POST", "route": "/posts",
                    "allowWrite": true,
                    "inputSchema": {"properties": {
                        "userId": {"type": "integer"}, "title": {"type": "string"},
                        "draft": {"type": ["boolean", "null"]}
                    }, "required": ["title"]}
                },
                {
                    "name": "replaceTags", "downstream": "api", "method": "PUT", "route": "/tags",
                    "inputSchema": {"properties": {"body": {"type": "array"}}},
                    "params": [{"name": "body", "in": "wholeBody"}]
                }
            ]
        });
        let options =
            LoadOptions::default().with_env(|n| (n == "API_TOKEN").then(|| "s3cret".to_owned()));
        let part = load_manifest("test.json", manifest.to_string().as_bytes(), &options)
            .expect("the manifest loads");
        Catalog::merge([part]).expect("the catalog merges")
    }

    fn build(catalog: &Catalog, tool: &str, args: Value) -> Result<Request<Bytes>, ArgumentError> {
        let tool = catalog.tool(tool).expect("tool exists");
        let ds = catalog.downstream_of(tool).expect("downstream exists");
        let Value::Object(args) = args else {
            panic!("arguments are an object")
        };
        tool.validate_arguments(&args)?;
        tool.build_request(ds, &args, "trace-1")
    }

    fn percent_decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn hostile_path_values_stay_one_segment_and_round_trip() {
        let catalog = catalog();
        let hostile = [
            "..",
            ".",
            "...",
            "../admin",
            "../../etc/passwd",
            "%2e%2e",
            "%2E%2E%2F",
            "%252e",
            "a/b",
            "a\\b",
            "?admin=1",
            "x?y#z",
            "#fragment",
            "a b",
            "\r\nHost: evil.example",
            "x\0y",
            "ünïcødé/😀",
            "//evil.example/x",
            "@evil.example",
            "http://evil.example/",
            ";jsessionid=1",
            "a&b=c",
            "~user",
        ];
        for value in hostile {
            let request = build(&catalog, "getComment", json!({"id": value, "cid": 7}))
                .unwrap_or_else(|e| panic!("{value:?}: {e}"));
            let uri = request.uri();
            assert_eq!(uri.host(), Some("127.0.0.1"), "{value:?}");
            assert_eq!(uri.port_u16(), Some(5200), "{value:?}");
            assert_eq!(uri.query(), None, "{value:?}");

            let segments: Vec<&str> = uri.path().split('/').collect();
            // "", "api", "posts", <id>, "comments", "7"
            assert_eq!(segments.len(), 6, "{value:?} gave {}", uri.path());
            assert_eq!(segments[..3], ["", "api", "posts"], "{value:?}");
            assert_eq!(segments[4..], ["comments", "7"], "{value:?}");
            assert!(!segments[3].contains('.'), "{value:?} gave {}", segments[3]);
            assert_eq!(percent_decode(segments[3]), value.as_bytes(), "{value:?}");
        }
    }

    #[test]
    fn dot_segments_are_encoded_as_percent_2e() {
        let catalog = catalog();
        let request = build(&catalog, "getComment", json!({"id": ".", "cid": ".."})).unwrap();
        assert_eq!(request.uri().path(), "/api/posts/%2E/comments/%2E%2E");
    }

    #[test]
    fn empty_or_structured_path_values_are_refused() {
        let catalog = catalog();
        let error = build(&catalog, "getComment", json!({"id": "", "cid": 1})).unwrap_err();
        assert_eq!(error.to_string(), "argument id must not be empty");
        let tool = catalog.tool("getComment").unwrap();
        let ds = catalog.downstream_of(tool).unwrap();
        let args = json!({"id": ["a"], "cid": 1});
        let error = tool
            .build_request(ds, args.as_object().unwrap(), "t")
            .unwrap_err();
        assert!(matches!(error, ArgumentError::Invalid { .. }), "{error}");
        let error = tool
            .build_request(ds, json!({"cid": 1}).as_object().unwrap(), "t")
            .unwrap_err();
        assert_eq!(error.to_string(), "missing required argument id");
    }

    #[test]
    fn whole_float_path_values_are_sent_as_integers() {
        let catalog = catalog();
        let request = build(&catalog, "getComment", json!({"id": "x", "cid": 5.0})).unwrap();
        assert_eq!(request.uri().path(), "/api/posts/x/comments/5");
    }

    #[test]
    fn query_values_cannot_inject_pairs_or_fragments() {
        let catalog = catalog();
        let request = build(
            &catalog,
            "search",
            json!({"q": "a&admin=1#x y+z", "limit": 5.0, "exact": true}),
        )
        .unwrap();
        let query = request.uri().query().unwrap();
        // Unplaced properties take the query in name order.
        assert_eq!(query, "exact=true&limit=5&q=a%26admin%3D1%23x%20y%2Bz");
        let pairs: Vec<&str> = query.split('&').collect();
        assert_eq!(pairs.len(), 3);
        assert_eq!(percent_decode(&pairs[2][2..]), b"a&admin=1#x y+z");
    }

    #[test]
    fn query_arrays_become_repeated_keys_and_omitted_values_are_left_out() {
        let catalog = catalog();
        let request = build(
            &catalog,
            "search",
            json!({"tag": ["a", 2, true], "q": null, "limit": null}),
        )
        .unwrap();
        assert_eq!(request.uri().query(), Some("tag=a&tag=2&tag=true"));
        assert_eq!(request.uri().path(), "/api/search");
        assert!(request.body().is_empty());
    }

    #[test]
    fn header_arguments_with_line_breaks_or_nul_are_refused() {
        let catalog = catalog();
        for value in ["1\r\nX-Admin: yes", "1\nx", "1\rx", "a\0b", "a\u{7f}b"] {
            let error = build(&catalog, "search", json!({ "version": value }))
                .expect_err("control characters are refused");
            assert!(
                error.to_string().starts_with("argument version "),
                "{error}"
            );
            assert!(!error.to_string().contains("X-Admin"), "{error}");
        }
        let request = build(&catalog, "search", json!({"version": "2024-01 ü"})).unwrap();
        assert_eq!(
            request.headers()["x-api-version"].as_bytes(),
            "2024-01 ü".as_bytes()
        );
    }

    #[test]
    fn configured_and_gateway_headers_are_added_and_no_agent_token() {
        let catalog = catalog();
        let request = build(&catalog, "search", json!({})).unwrap();
        let headers = request.headers();
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["x-request-id"], "trace-1");
        assert!(!headers.contains_key("content-type"));
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn body_arguments_become_a_json_object() {
        let catalog = catalog();
        let request = build(
            &catalog,
            "createPost",
            json!({"userId": 1.0, "title": "Hi", "draft": null, "stray": 1}),
        )
        .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:5200/api/posts");
        assert_eq!(request.headers()["content-type"], "application/json");
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        // `draft` accepts null, so it is sent; `stray` has no placement.
        assert_eq!(body, json!({"userId": 1, "title": "Hi", "draft": null}));
        assert_eq!(
            std::str::from_utf8(request.body()).unwrap(),
            r#"{"draft":null,"title":"Hi","userId":1}"#
        );
    }

    #[test]
    fn a_whole_body_argument_is_the_body_itself() {
        let catalog = catalog();
        let request = build(&catalog, "replaceTags", json!({"body": ["a", "b"]})).unwrap();
        assert_eq!(request.body().as_ref(), br#"["a","b"]"#);
        assert_eq!(request.headers()["content-type"], "application/json");

        let empty = build(&catalog, "replaceTags", json!({})).unwrap();
        assert!(empty.body().is_empty());
        assert!(!empty.headers().contains_key("content-type"));
    }

    #[test]
    fn an_invalid_trace_id_is_a_request_error() {
        let catalog = catalog();
        let tool = catalog.tool("search").unwrap();
        let ds = catalog.downstream_of(tool).unwrap();
        let error = tool.build_request(ds, &Map::new(), "a\r\nb").unwrap_err();
        assert!(matches!(error, ArgumentError::Request(_)), "{error}");
    }
}
