//! The JSON error shape of the HTTP API and the responses built from it.
//!
//! Every error is `{"error": {"code": "<stable_snake_case>", "message": "..."}}` with the fitting
//! status. Codes are part of the API; messages are for people and may change.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use serde::Serialize;

/// The body type of every response the server builds: whole bodies, and the audit export's
/// stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An error answer: a status, a stable code, a message and extra headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// The status of the answer.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code of the answer.
    #[cfg(test)]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 400 with a code naming the kind of bad input.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with `WWW-Authenticate: Bearer`; `invalid_token` says a token was given but refused.
    ///
    /// Every token failure gets the same message: which check failed is logged, not told.
    pub fn unauthorized(invalid_token: bool) -> ApiError {
        let challenge = if invalid_token {
            HeaderValue::from_static("Bearer error=\"invalid_token\"")
        } else {
            HeaderValue::from_static("Bearer")
        };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        )
        .with_header(header::WWW_AUTHENTICATE, challenge)
    }

    /// 403 for a valid token of the wrong role.
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may not call the management API",
        )
    }

    /// 404 for a path the server does not serve (or does not serve to this caller).
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this endpoint accepts {allow}"),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
    }

    /// 500; the detail goes to the log, never to the client.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the gateway failed; see its log",
        )
    }

    /// The response.
    pub fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }

        let mut response = json(
            self.status,
            &Envelope {
                error: Inner {
                    code: self.code,
                    message: &self.message,
                },
            },
        );
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serializing the server's own types cannot fail: they hold only strings, numbers, bools
    // and lists, never maps with non-string keys.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_have_the_documented_shape() {
        let response = ApiError::bad_request("unknown_field", "unknown field `x`").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(response).await,
            serde_json::json!({"error": {"code": "unknown_field", "message": "unknown field `x`"}})
        );
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = ApiError::unauthorized(false).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");

        let response = ApiError::unauthorized(true).into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }
}
