//! The HTTP side of the command line: one gateway, its admin token, requests and their answers.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Failure;
use super::render::printable;
use super::secret::AdminToken;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read; management answers are far smaller (an audit page is a few MB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A gateway's management API.
#[derive(Debug)]
pub struct Gateway {
    /// The base URL as the user gave it, for messages.
    url: String,
    /// `host:port`.
    authority: String,
    /// A path prefix without a final `/`, such as `/ithil` behind a proxy; usually empty.
    prefix: String,
    token: Option<AdminToken>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Gateway {
    /// A gateway at `url` (`http://host:port`, optionally with a path prefix).
    ///
    /// # Errors
    ///
    /// A usage error for a URL that is not plain `http` with a host, or that carries
    /// credentials, a query or a fragment.
    pub fn new(url: &str, token: Option<AdminToken>) -> Result<Gateway, Failure> {
        // A URL with credentials is not repeated: they would land in a terminal or a log.
        let shown = if url.contains('@') {
            String::new()
        } else {
            format!(" {}", printable(url))
        };
        let bad = |why: &str| Failure::Usage(format!("invalid --url{shown}: {why}"));
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; talk to the gateway's own http listener",
                ));
            }
            _ => return Err(bad("the URL must start with http://")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("the URL names no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("the URL must not carry credentials"));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("the URL must not carry a query or fragment"));
        }

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Gateway {
            url: url.trim().trim_end_matches('/').to_owned(),
            authority: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            token,
            client,
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    ///
    /// As [`Gateway::send`].
    pub async fn get(&self, path: &str) -> Result<Answer, Failure> {
        self.send(Method::GET, path, None).await
    }

    /// Sends one request, with the admin token if the gateway has one and `body` as JSON.
    ///
    /// # Errors
    ///
    /// [`Failure::Refused`] for a 4xx or 5xx answer, [`Failure::Unreachable`] when no whole
    /// answer arrives.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Failure> {
        let uri = format!("http://{}{}{}", self.authority, self.prefix, path);
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("ithil-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, token.authorization()?);
        }
        let bytes = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|_| Failure::Usage(format!("invalid request path {}", printable(path))))?;

        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(TransportError::Request)?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(e) => TransportError::Body(*e),
                    Err(_) => TransportError::TooLarge(MAX_ANSWER_BYTES),
                })?
                .to_bytes();
            Ok(Answer {
                path: path.to_owned(),
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or(Err(TransportError::Timeout(REQUEST_TIMEOUT)))
            .map_err(|source| Failure::Unreachable {
                url: self.url.clone(),
                source,
            })?;

        if answer.status.is_client_error() || answer.status.is_server_error() {
            return Err(Failure::Refused(Refusal::of(&answer)));
        }
        Ok(answer)
    }
}

/// Why no whole answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection could not be made or broke before the answer.
    #[error(transparent)]
    Request(hyper_util::client::legacy::Error),

    /// The answer did not arrive in time.
    #[error("no answer within {} seconds", .0.as_secs())]
    Timeout(Duration),

    /// The answer's body broke off.
    #[error("the answer broke off")]
    Body(#[source] hyper::Error),

    /// The answer was larger than any management answer.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    path: String,
    /// The status, 1xx to 3xx.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as `T`.
    ///
    /// # Errors
    ///
    /// [`Failure::Answer`] when the body is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|source| Failure::Answer {
            path: self.path.clone(),
            source,
        })
    }

    /// The body as the gateway sent it, for `--json`: nothing for an empty body, else the bytes
    /// and a final newline.
    pub fn raw(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// The target of a `Link: <...>; rel="next"` header.
    pub fn next_link(&self) -> Option<String> {
        self.headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(next_target)
    }
}

/// The target of one link value if its relation is `next`.
fn next_target(link: &str) -> Option<String> {
    let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
    let next = params.split(';').any(|param| {
        let param = param.trim().replace(' ', "");
        param == "rel=\"next\"" || param == "rel=next"
    });
    // Only a path on the same gateway is followed, never another host.
    (next && target.starts_with('/') && !target.starts_with("//")).then(|| target.to_owned())
}

/// A 4xx or 5xx answer: its status and the API's error code and message.
#[derive(Debug)]
pub struct Refusal {
    /// The status.
    pub status: StatusCode,
    /// `error.code` of the body, if it has the API's error shape.
    pub code: Option<String>,
    /// `error.message` of the body, or the start of a body of another shape.
    pub message: Option<String>,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// What the refusal probably means, when the command knows better than the status.
    pub hint: Option<&'static str>,
}

impl Refusal {
    fn of(answer: &Answer) -> Refusal {
        let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let error = body.as_ref().map(|b| &b["error"]);
        let code = error.and_then(|e| e["code"].as_str()).map(printable);
        let message = match error.and_then(|e| e["message"].as_str()) {
            Some(message) => Some(printable(message)),
            None if !answer.body.is_empty() && code.is_none() => {
                let text = String::from_utf8_lossy(&answer.body);
                Some(printable(&text.chars().take(200).collect::<String>()))
            }
            None => None,
        };
        let retry_after = answer
            .headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(printable);
        Refusal {
            status: answer.status,
            code,
            message,
            retry_after,
            hint: None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(seconds) = &self.retry_after {
            write!(f, " (retry after {seconds} seconds)")?;
        }
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// `/path?name=value&...` with every value percent-encoded; `None` values are left out.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut out = path.to_owned();
    let mut first = true;
    for (name, value) in params {
        let Some(value) = value else { continue };
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(name);
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// Percent-encodes everything but the unreserved characters of RFC 3986, so that a value (an
/// agent id in a path, a tool name in a query) can never add a path segment or a parameter.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn values_are_percent_encoded_so_they_cannot_escape_their_place() {
        assert_eq!(encode("agt_3f9a1c2b"), "agt_3f9a1c2b");
        assert_eq!(encode("agt_1/budget"), "agt_1%2Fbudget");
        assert_eq!(encode("a&b=c?d#e"), "a%26b%3Dc%3Fd%23e");
        assert_eq!(
            encode("2026-05-06T12:00:00+02:00"),
            "2026-05-06T12%3A00%3A00%2B02%3A00"
        );
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(
            with_query(
                "/management/audit",
                &[
                    ("agentId", Some("agt_1")),
                    ("tool", None),
                    ("limit", Some("5"))
                ]
            ),
            "/management/audit?agentId=agt_1&limit=5"
        );
        assert_eq!(with_query("/x", &[("a", None)]), "/x");
    }

    #[test]
    fn only_a_next_link_on_the_same_gateway_is_followed() {
        assert_eq!(
            next_target("</management/agents?limit=2&after=agt_00000002>; rel=\"next\""),
            Some("/management/agents?limit=2&after=agt_00000002".to_owned())
        );
        assert_eq!(next_target("</a>; rel=next"), Some("/a".to_owned()));
        assert_eq!(next_target("</a>; rel=\"prev\""), None);
        assert_eq!(next_target("<http://elsewhere/a>; rel=\"next\""), None);
        assert_eq!(next_target("<//elsewhere/a>; rel=\"next\""), None);
        assert_eq!(next_target("garbage"), None);
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        for good in [
            "http://127.0.0.1:5100",
            "http://localhost:5100/",
            "http://[::1]:5100/ithil",
        ] {
            assert!(Gateway::new(good, None).is_ok(), "{good}");
        }
        for bad in [
            "https://127.0.0.1:5100",
            "127.0.0.1:5100",
            "ftp://127.0.0.1",
            "http://user:secret@127.0.0.1:5100",
            "http://127.0.0.1:5100/?a=b",
            "not a url",
        ] {
            let failure = Gateway::new(bad, None).unwrap_err();
            assert_eq!(failure.exit_code(), 2, "{bad}");
            assert!(!failure.to_string().contains("secret"), "{failure}");
        }
    }

    #[test]
    fn a_path_prefix_is_kept() {
        let gateway = Gateway::new("http://127.0.0.1:5100/ithil/", None).unwrap();
        assert_eq!(gateway.prefix, "/ithil");
        assert_eq!(gateway.authority, "127.0.0.1:5100");
        assert_eq!(gateway.url, "http://127.0.0.1:5100/ithil");
    }

    #[test]
    fn a_refusal_names_the_status_code_and_message() {
        let answer = |status: u16, body: &'static str, retry: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(r) = retry {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(r));
            }
            Answer {
                path: "/x".into(),
                status: StatusCode::from_u16(status).unwrap(),
                headers,
                body: Bytes::from_static(body.as_bytes()),
            }
        };
        let refusal = Refusal::of(&answer(
            404,
            r#"{"error":{"code":"agent_not_found","message":"agent agt_1 not found"}}"#,
            None,
        ));
        assert_eq!(
            refusal.to_string(),
            "404 Not Found agent_not_found: agent agt_1 not found"
        );
        let refusal = Refusal::of(&answer(
            429,
            r#"{"error":{"code":"too_many_requests","message":"slow down"}}"#,
            Some("30"),
        ));
        assert!(refusal.to_string().ends_with("(retry after 30 seconds)"));
        let refusal = Refusal::of(&answer(502, "bad gateway\x1b[31m", None));
        assert_eq!(refusal.to_string(), "502 Bad Gateway: bad gateway?[31m");
        let refusal = Refusal::of(&answer(500, "", None));
        assert_eq!(refusal.to_string(), "500 Internal Server Error");
    }
}
