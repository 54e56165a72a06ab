//! The HTTP side of Streamable HTTP: response format by `Accept`, SSE framing, `Origin` checks.

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::mcp::jsonrpc::{ErrorObject, INVALID_REQUEST, Reply, UNAUTHORIZED};

/// The body format of a response to a POST that held requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// One JSON document, `application/json`.
    Json,
    /// One Server-Sent Events stream holding one `message` event, `text/event-stream`.
    EventStream,
}

impl ResponseFormat {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ResponseFormat::Json => "application/json",
            ResponseFormat::EventStream => "text/event-stream",
        }
    }

    /// Frames a JSON document in this format.
    pub fn frame(self, json: Vec<u8>) -> Bytes {
        match self {
            ResponseFormat::Json => Bytes::from(json),
            ResponseFormat::EventStream => sse_event(&json),
        }
    }
}

/// Chooses the response format from the request's `Accept` header.
///
/// JSON is chosen whenever the client accepts it (clients must accept both, and one JSON
/// document is cheaper for both sides than a one-event stream); the event stream only when it
/// is the one format the client lists. A missing header or `*/*` means JSON. `None` means the
/// client accepts neither (the caller answers 406).
pub fn response_format(headers: &HeaderMap) -> Option<ResponseFormat> {
    let values: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return Some(ResponseFormat::Json);
    }

    let mut json = false;
    let mut sse = false;
    for range in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        // A range with q=0 is an explicit refusal.
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => json = true,
            "text/event-stream" | "text/*" => sse = true,
            _ => {}
        }
    }
    if json {
        Some(ResponseFormat::Json)
    } else if sse {
        Some(ResponseFormat::EventStream)
    } else {
        None
    }
}

/// Frames one JSON-RPC message as a complete SSE stream: one `message` event, then the end.
///
/// Serialized JSON holds no raw line breaks (they are escaped inside strings), so the document
/// fits one `data:` line.
pub fn sse_event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Which `Origin` headers the endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Whether `http(s)://localhost`, `127.0.0.0/8` and `[::1]` origins, on any port, are
    /// accepted.
    pub allow_loopback: bool,
    /// Further origins accepted exactly (scheme, host and port, compared without case).
    pub allowed: Vec<String>,
}

impl OriginPolicy {
    /// Whether a request with these headers may proceed. A request without `Origin` (every
    /// non-browser client) always may: the header is how browsers mark cross-site requests,
    /// which is what DNS rebinding attacks need.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let mut origins = headers.get_all(ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return true;
        };
        if origins.next().is_some() {
            return false;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim();
        if self
            .allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        self.allow_loopback && is_loopback_origin(origin)
    }
}

impl Default for OriginPolicy {
    fn default() -> OriginPolicy {
        OriginPolicy {
            allow_loopback: true,
            allowed: Vec::new(),
        }
    }
}

/// Whether `origin` is `http` or `https` on a loopback host.
fn is_loopback_origin(origin: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return false;
    };
    // An origin is scheme, host and port only: any path, userinfo or query disqualifies it.
    if rest.contains(['/', '@', '?', '#']) {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, port)) if port.is_empty() || valid_port(port) => {
                return addr
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|a| a.is_loopback());
            }
            _ => return false,
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) if valid_port(port) => host,
            Some(_) => return false,
            None => rest,
        }
    };
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn valid_port(port: &str) -> bool {
    port.strip_prefix(':')
        .unwrap_or(port)
        .parse::<u16>()
        .is_ok()
}

/// The bearer token of `Authorization`, if there is exactly one such header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The `sub` of a token whose signature has already been verified.
pub(crate) fn verified_subject(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    match headers.get(CONTENT_TYPE) {
        // Some clients leave it out; the body still has to be JSON-RPC.
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        }),
    }
}

pub(crate) fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub(crate) fn framed(
    status: StatusCode,
    format: ResponseFormat,
    json: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(format.frame(json)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if format == ResponseFormat::EventStream {
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

pub(crate) fn reply_response(
    status: StatusCode,
    format: ResponseFormat,
    reply: &Reply,
) -> Response<Full<Bytes>> {
    framed(status, format, reply.to_vec())
}

/// An HTTP-level refusal with a JSON-RPC error body without id, as the transport allows.
pub(crate) fn transport_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let reply = Reply::error(None, ErrorObject::new(INVALID_REQUEST, message));
    reply_response(status, ResponseFormat::Json, &reply)
}

/// The one answer to every authentication failure, whatever its reason.
pub(crate) fn unauthorized() -> Response<Full<Bytes>> {
    let reply = Reply::error(None, ErrorObject::new(UNAUTHORIZED, "Unauthorized"));
    let mut resp = reply_response(StatusCode::UNAUTHORIZED, ResponseFormat::Json, &reply);
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    fn origin(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn both_formats_accepted_means_json() {
        let f = response_format(&accept("application/json, text/event-stream"));
        assert_eq!(f, Some(ResponseFormat::Json));
        let f = response_format(&accept("text/event-stream, application/json"));
        assert_eq!(f, Some(ResponseFormat::Json));
    }

    #[test]
    fn only_event_stream_accepted_means_sse() {
        let f = response_format(&accept("text/event-stream"));
        assert_eq!(f, Some(ResponseFormat::EventStream));
        let f = response_format(&accept("application/json;q=0, text/event-stream"));
        assert_eq!(f, Some(ResponseFormat::EventStream));
    }

    #[test]
    fn a_missing_or_wildcard_accept_means_json() {
        assert_eq!(
            response_format(&HeaderMap::new()),
            Some(ResponseFormat::Json)
        );
        assert_eq!(response_format(&accept("*/*")), Some(ResponseFormat::Json));
    }

    #[test]
    fn an_accept_without_either_format_is_refused() {
        assert_eq!(response_format(&accept("text/html")), None);
    }

    #[test]
    fn an_sse_frame_is_one_message_event() {
        let framed = sse_event(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            &framed[..],
            b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
        );
    }

    #[test]
    fn no_origin_is_allowed() {
        assert!(OriginPolicy::default().allows(&HeaderMap::new()));
    }

    #[test]
    fn loopback_origins_are_allowed_by_default() {
        let p = OriginPolicy::default();
        for o in [
            "http://localhost",
            "http://localhost:5100",
            "https://127.0.0.1:8443",
            "http://127.1.2.3",
            "http://[::1]:3000",
            "HTTP://LOCALHOST:1",
        ] {
            assert!(p.allows(&origin(o)), "{o}");
        }
    }

    #[test]
    fn foreign_and_tricky_origins_are_refused() {
        let p = OriginPolicy::default();
        for o in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example",
            "http://localhost@evil.example",
            "http://localhost:99999",
            "null",
            "file://localhost",
            "http://[::2]",
        ] {
            assert!(!p.allows(&origin(o)), "{o}");
        }
    }

    #[test]
    fn configured_origins_are_allowed_and_loopback_can_be_switched_off() {
        let p = OriginPolicy {
            allow_loopback: false,
            allowed: vec!["https://app.example.com".into()],
        };
        assert!(p.allows(&origin("https://app.example.com")));
        assert!(!p.allows(&origin("http://localhost")));
    }

    #[test]
    fn two_origin_headers_are_refused() {
        let mut h = origin("http://localhost");
        h.append(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!OriginPolicy::default().allows(&h));
    }

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_tokens_are_read_without_case_in_the_scheme() {
        assert_eq!(bearer_token(&auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&auth("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&auth("Basic abc")), None);
        assert_eq!(bearer_token(&auth("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut h = auth("Bearer a");
        h.append(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer b"),
        );
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        let mut h = HeaderMap::new();
        assert!(is_json_content_type(&h));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json_content_type(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content_type(&h));
    }
}
