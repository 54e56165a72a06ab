//! The catalog's data model: tools, the downstreams they call, and where each argument goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schema::CompiledSchema;

/// Every tool the gateway offers, with the downstreams they call.
///
/// A catalog is immutable once built; a reload builds a new one and swaps it in whole, so a
/// request in flight keeps the catalog it started with.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tools by name, in name order (which is also the order of `tools/list`).
    pub tools: BTreeMap<String, Arc<Tool>>,
    /// Downstreams by name.
    pub downstreams: BTreeMap<String, Arc<Downstream>>,
}

/// The tools and downstreams of one source (a catalog file or one discovery answer), before
/// [`Catalog::merge`] checks them against the other sources.
#[derive(Debug, Clone, Default)]
pub struct CatalogPart {
    /// Where the part came from, as errors name it: a file path, or `discovery from NAME`.
    pub origin: String,
    /// The downstreams the part defines.
    pub downstreams: Vec<Downstream>,
    /// The tools the part defines, in source order.
    pub tools: Vec<Tool>,
}

/// One tool: what the model sees, the HTTP call it makes, and its governance fields.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The tool's name as the model calls it (`getPost`).
    pub name: String,
    /// What the tool does, shown to the model.
    pub description: String,
    /// Operator-facing grouping label.
    pub category: Option<String>,
    /// The name of the downstream that serves this tool.
    pub downstream: String,
    /// The HTTP method of the downstream call.
    pub method: Method,
    /// The downstream route, relative to the downstream's base URL.
    pub route: RoutePattern,
    /// The JSON Schema of the arguments (an object schema), as `tools/list` shows it.
    pub input_schema: Value,
    /// `input_schema` compiled for validation, once, when the tool was loaded.
    ///
    /// The loaders set both together; a tool built by hand must compile its schema with
    /// [`CompiledSchema::compile`]. Changing `input_schema` later does not change validation.
    pub compiled_schema: Arc<CompiledSchema>,
    /// Where each argument goes in the downstream request, in declaration order.
    pub params: Vec<Param>,
    /// Whether a writing method (POST, PUT, PATCH, DELETE) may run. Default is false.
    pub allow_write: bool,
    /// The largest response, in tokens, that reaches the agent. Default is 2000.
    pub max_response_tokens: u64,
    /// What happens to a response above `max_response_tokens`. Default is truncate.
    pub over_limit: OverLimit,
    /// Scopes the calling token must all carry.
    pub required_scopes: Vec<String>,
}

impl Tool {
    /// The default `maxResponseTokens` of a tool that does not set one.
    pub const DEFAULT_MAX_RESPONSE_TOKENS: u64 = 2000;

    /// Whether the tool's HTTP method changes state downstream.
    pub fn writes(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }
}

/// Where one argument goes in the downstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The argument's name in the tool's input schema.
    pub name: String,
    /// Where the argument's value is placed.
    pub location: ParamLocation,
    /// The name on the wire when it differs from `name` (a header name, say).
    pub wire_name: Option<String>,
}

/// The part of the downstream request an argument fills.
///
/// In a manifest it is written in camelCase: `path`, `query`, `header`, `body`, `wholeBody`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ParamLocation {
    /// One path segment, percent-encoded.
    Path,
    /// A query-string pair, percent-encoded.
    Query,
    /// A request header.
    Header,
    /// A member of the JSON request body.
    Body,
    /// The whole JSON request body (an OpenAPI request body that is not an object).
    WholeBody,
}

/// What to do with a response larger than the tool's `maxResponseTokens`.
///
/// In a manifest it is written `truncate` or `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OverLimit {
    /// Cut the response at a token boundary and append a marker. The default.
    #[default]
    Truncate,
    /// Refuse the response with a tool error saying how large it was.
    Reject,
}

/// A route such as `posts/{id}/comments`: literal segments and named parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// The segments in order.
    pub segments: Vec<Segment>,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A literal segment, sent as written.
    Literal(String),
    /// A parameter filled from the argument of that name.
    Param(String),
}

/// A downstream API and how to reach it.
#[derive(Clone)]
pub struct Downstream {
    /// The downstream's name, which tools refer to.
    pub name: String,
    /// The base URL every route is joined to (scheme, authority and an optional path prefix).
    pub base_url: Uri,
    /// Timeout for establishing a connection. Default is 5 seconds.
    pub connect_timeout: Duration,
    /// Timeout for the whole request, from sending to the last body byte. Default is 10 seconds.
    pub request_timeout: Duration,
    /// The largest response body read. Default is 10 MiB.
    pub max_response_bytes: usize,
    /// Headers added to every request, such as the downstream's own credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Downstream {
    /// The default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default request timeout.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default response size cap.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be the downstream's credentials, so only their names are shown.
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Downstream")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("headers", &header_names)
            .finish()
    }
}
