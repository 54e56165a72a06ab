//! One keep-alive HTTP/1.1 connection of the load tool and the requests it sends: a plain `GET`
//! (direct and through nginx) or an MCP `tools/call` (through Ithil).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// The MCP revision the load tool speaks.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// The header that names an MCP session.
const SESSION: HeaderName = HeaderName::from_static("mcp-session-id");
/// The header that names the negotiated MCP revision.
const VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// What one call is.
#[derive(Clone)]
pub enum Shape {
    /// `GET` the path; the answer must be 200 (and equal `expect` when given).
    Get {
        /// The exact body every answer must have, when known.
        expect: Option<Bytes>,
    },
    /// `POST` a JSON-RPC `tools/call` of `tool` with `arguments` to the path, in a session
    /// opened with `initialize` when the connection opens; the answer must be a successful tool
    /// result.
    Mcp {
        /// `Bearer <agent token>`.
        authorization: HeaderValue,
        /// `"params":{...}` of every call, serialized once.
        params: String,
        /// A text every result must contain, when known.
        expect: Option<String>,
    },
}

impl std::fmt::Debug for Shape {
    // The authorization header carries a token, which must not reach a print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Get { .. } => f.write_str("Get"),
            Shape::Mcp { params, .. } => f.debug_struct("Mcp").field("params", params).finish(),
        }
    }
}

impl Shape {
    /// An MCP shape calling `tool` with `arguments` (a JSON object) as the holder of `token`.
    ///
    /// # Errors
    ///
    /// Returns an error when the token cannot be a header value.
    pub fn mcp(
        token: &str,
        tool: &str,
        arguments: &serde_json::Value,
        expect: Option<String>,
    ) -> Result<Shape, BenchError> {
        let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BenchError::Usage("the token is not a valid header value".into()))?;
        let params = serde_json::json!({ "name": tool, "arguments": arguments }).to_string();
        Ok(Shape::Mcp {
            authorization,
            params,
            expect,
        })
    }
}

/// Where calls go and what they are.
#[derive(Debug)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// The path (and query) of every call.
    pub path: String,
    /// What a call is.
    pub shape: Shape,
}

impl Endpoint {
    /// An endpoint for `url`, which must be `http://IP:PORT/PATH`.
    ///
    /// # Errors
    ///
    /// Returns an error for any other form of URL.
    pub fn new(url: &str, shape: Shape) -> Result<Endpoint, BenchError> {
        let bad = || BenchError::Usage(format!("{url} is not of the form http://IP:PORT/PATH"));
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority.parse().map_err(|_| bad())?;
        let host = HeaderValue::from_str(authority).map_err(|_| bad())?;
        Ok(Endpoint {
            addr,
            host,
            path: path.to_owned(),
            shape,
        })
    }
}

/// One open connection, with its MCP session when the shape has one.
pub struct Conn {
    endpoint: Arc<Endpoint>,
    sender: SendRequest<Full<Bytes>>,
    session: Option<HeaderValue>,
    next_id: u64,
    checked: bool,
}

impl Conn {
    /// Connects and, for MCP, opens a session (`initialize`, then `notifications/initialized`).
    ///
    /// # Errors
    ///
    /// Returns an error when the connection or the session cannot be opened.
    pub async fn open(endpoint: Arc<Endpoint>) -> Result<Conn, BenchError> {
        let sender = handshake(endpoint.addr).await?;
        let mut conn = Conn {
            endpoint,
            sender,
            session: None,
            next_id: 1,
            checked: false,
        };
        if matches!(conn.endpoint.shape, Shape::Mcp { .. }) {
            conn.initialize().await?;
        }
        Ok(conn)
    }

    /// Sends one call and checks its answer.
    ///
    /// # Errors
    ///
    /// Returns an error when the exchange fails or the answer is not the expected one.
    pub async fn call(&mut self) -> Result<(), BenchError> {
        let endpoint = Arc::clone(&self.endpoint);
        match &endpoint.shape {
            Shape::Get { expect } => {
                let request = self.request(Method::GET, Bytes::new());
                let (status, body) = self.exchange(request).await?;
                if status != StatusCode::OK {
                    return Err(BenchError::Answer(format!("HTTP {status}")));
                }
                if expect.as_ref().is_some_and(|e| *e != body) {
                    return Err(BenchError::Answer("unexpected body".into()));
                }
                Ok(())
            }
            Shape::Mcp { params, expect, .. } => {
                let id = self.next_id;
                self.next_id += 1;
                let json = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#
                );
                let request = self.request(Method::POST, Bytes::from(json));
                let (status, body) = self.exchange(request).await?;
                if status != StatusCode::OK {
                    return Err(BenchError::Answer(format!("HTTP {status}")));
                }
                // The first result of a connection is read completely; the rest only as far
                // as telling success from failure, so that checking costs the load tool little
                // of the CPU it shares with the gateway.
                if !self.checked {
                    check_result(&body, expect.as_deref())?;
                    self.checked = true;
                } else if !contains(&body, br#""result":"#) || contains(&body, br#""isError":true"#)
                {
                    return Err(BenchError::Answer(snippet(&body)));
                }
                Ok(())
            }
        }
    }

    /// Ends the MCP session, if there is one; errors are ignored, as the load is over.
    pub async fn close(mut self) {
        if self.session.is_some() {
            let request = self.request(Method::DELETE, Bytes::new());
            let _ = self.exchange(request).await;
        }
    }

    async fn initialize(&mut self) -> Result<(), BenchError> {
        let json = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "ithil-bench", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let request = self.request(Method::POST, Bytes::from(json.to_string()));
        let response = self.send(request).await?;
        let status = response.status();
        let session = response.headers().get(&SESSION).cloned();
        let body = collect(response).await?;
        let Some(session) = session.filter(|_| status == StatusCode::OK) else {
            return Err(BenchError::Answer(format!(
                "initialize answered HTTP {status} without a session: {}",
                snippet(&body)
            )));
        };
        self.session = Some(session);

        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let request = self.request(Method::POST, Bytes::from_static(note.as_bytes()));
        let (status, body) = self.exchange(request).await?;
        if status != StatusCode::ACCEPTED {
            return Err(BenchError::Answer(format!(
                "notifications/initialized answered HTTP {status}: {}",
                snippet(&body)
            )));
        }
        Ok(())
    }

    fn request(&self, method: Method, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        // An origin-form URI: the path alone, as HTTP/1.1 clients send it.
        *request.uri_mut() = self
            .endpoint
            .path
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
        let headers = request.headers_mut();
        headers.insert(HOST, self.endpoint.host.clone());
        if let Shape::Mcp { authorization, .. } = &self.endpoint.shape {
            headers.insert(AUTHORIZATION, authorization.clone());
            headers.insert(
                ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
            if method == Method::POST {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            if let Some(session) = &self.session {
                headers.insert(SESSION, session.clone());
                headers.insert(VERSION, HeaderValue::from_static(PROTOCOL_VERSION));
            }
        }
        request
    }

    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, BenchError> {
        self.sender
            .ready()
            .await
            .map_err(|e| BenchError::Exchange(e.to_string()))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| BenchError::Exchange(e.to_string()))
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), BenchError> {
        let response = self.send(request).await?;
        let status = response.status();
        let body = collect(response).await?;
        Ok((status, body))
    }
}

/// Sends one request on a fresh connection and returns the status and body; for the set-up
/// calls of the management API.
///
/// # Errors
///
/// Returns an error when the exchange fails.
pub async fn once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, Bytes), BenchError> {
    let mut sender = handshake(addr).await?;
    let mut request = Request::new(Full::new(
        body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
    ));
    *request.method_mut() = method;
    *request.uri_mut() = path
        .parse()
        .map_err(|_| BenchError::Usage(format!("{path} is not a valid path")))?;
    let host = HeaderValue::from_str(&addr.to_string())
        .map_err(|_| BenchError::Usage(format!("{addr} is not a valid host")))?;
    request.headers_mut().insert(HOST, host);
    if body.is_some() {
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        request.headers_mut().insert(name, value.clone());
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| BenchError::Exchange(e.to_string()))?;
    let status = response.status();
    let body = collect(response).await?;
    Ok((status, body))
}

async fn handshake(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BenchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| BenchError::Connect { addr, source })?;
    stream.set_nodelay(true).map_err(BenchError::Io)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| BenchError::Exchange(e.to_string()))?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, BenchError> {
    let mut body = response.into_body();
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Exchange(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Checks a `tools/call` answer completely: a JSON-RPC result, not a tool error, whose text
/// contains `expect`.
fn check_result(body: &[u8], expect: Option<&str>) -> Result<(), BenchError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| BenchError::Answer(snippet(body)))?;
    let result = value
        .get("result")
        .ok_or_else(|| BenchError::Answer(snippet(body)))?;
    if result.get("isError") == Some(&serde_json::Value::Bool(true)) {
        return Err(BenchError::Answer(snippet(body)));
    }
    let text = result
        .pointer("/content/0/text")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if expect.is_some_and(|e| !text.contains(e)) {
        return Err(BenchError::Answer(format!(
            "the result does not carry the stub's answer: {}",
            snippet(body)
        )));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The start of an answer, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_read_from_an_http_url_with_an_ip_address() {
        let endpoint =
            Endpoint::new("http://127.0.0.1:8080/data/7", Shape::Get { expect: None }).unwrap();
        assert_eq!(endpoint.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(endpoint.host, "127.0.0.1:8080");
        assert_eq!(endpoint.path, "/data/7");

        let bare = Endpoint::new("http://[::1]:80", Shape::Get { expect: None }).unwrap();
        assert_eq!(bare.path, "/");
    }

    #[test]
    fn urls_with_names_or_other_schemes_are_refused() {
        for url in [
            "https://127.0.0.1:1/",
            "http://localhost:80/",
            "127.0.0.1:80",
        ] {
            assert!(
                Endpoint::new(url, Shape::Get { expect: None }).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn a_tool_result_is_accepted_only_when_successful_and_carrying_the_expected_text() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a stub b"}],"isError":false}}"#;
        assert!(check_result(ok, Some("stub")).is_ok());
        assert!(check_result(ok, Some("other")).is_err());

        let tool_error = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#;
        assert!(check_result(tool_error, None).is_err());

        let rpc_error = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no"}}"#;
        assert!(check_result(rpc_error, None).is_err());
    }

    #[test]
    fn the_debug_print_of_an_mcp_shape_hides_the_token() {
        let shape = Shape::mcp(
            "secret.token.value",
            "getData",
            &serde_json::json!({}),
            None,
        )
        .unwrap();
        let printed = format!("{shape:?}");
        assert!(!printed.contains("secret.token.value"), "{printed}");
        assert!(printed.contains("getData"), "{printed}");
    }
}
