//! The JSON manifest format: named downstreams and the tools they serve.
//!
//! The format is documented in `docs/tools.md`. Every object refuses unknown members, so a
//! typo (`allowwrite`) is a load error instead of a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{CatalogError, Result};
use super::model::{OverLimit, ParamLocation, Tool};

/// The top level of a manifest, with the downstreams and tools still unread, so that an error
/// in one of them can name it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Outline {
    #[serde(rename = "$schema", default)]
    schema: Option<String>,
    #[serde(default)]
    downstreams: BTreeMap<String, Value>,
    #[serde(default)]
    tools: Vec<Value>,
}

impl Manifest {
    /// Reads a manifest from a parsed JSON document.
    ///
    /// # Errors
    ///
    /// [`CatalogError::Parse`] when the top level has the wrong shape,
    /// [`CatalogError::DownstreamDefinition`] and [`CatalogError::ToolDefinition`] naming the
    /// downstream or tool with a misspelled member or a value of the wrong type.
    pub fn from_value(origin: &str, document: Value) -> Result<Manifest> {
        let outline: Outline =
            serde_json::from_value(document).map_err(|error| CatalogError::Parse {
                origin: origin.to_owned(),
                error,
            })?;

        let mut downstreams = BTreeMap::new();
        for (name, value) in outline.downstreams {
            let spec = DownstreamSpec::deserialize(value).map_err(|error| {
                CatalogError::DownstreamDefinition {
                    origin: origin.to_owned(),
                    downstream: name.clone(),
                    error,
                }
            })?;
            downstreams.insert(name, spec);
        }

        let mut tools = Vec::with_capacity(outline.tools.len());
        for (index, value) in outline.tools.into_iter().enumerate() {
            let label = match value.get("name").and_then(Value::as_str) {
                Some(name) if !name.is_empty() => crate::schema::shorten(name),
                _ => format!("#{index}"),
            };
            let spec =
                ToolSpec::deserialize(value).map_err(|error| CatalogError::ToolDefinition {
                    origin: origin.to_owned(),
                    tool: label,
                    error,
                })?;
            tools.push(spec);
        }

        Ok(Manifest {
            schema: outline.schema,
            downstreams,
            tools,
        })
    }
}

/// A manifest file: downstreams by name, and tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// An optional `$schema` for editors; ignored by Ithil.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The downstreams this file defines, by name. Default is none (tools may use downstreams
    /// that another catalog file defines).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub downstreams: BTreeMap<String, DownstreamSpec>,
    /// The tools. Default is none.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

/// One downstream as a manifest writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DownstreamSpec {
    /// The base URL, `http` or `https`, with an optional path prefix (`http://127.0.0.1:5200`,
    /// `https://api.example.com/v2`). No query, fragment or user info.
    pub base_url: String,
    /// Connect timeout in milliseconds. Default is 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Timeout for the whole request in milliseconds. Default is 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// The largest response body read, in bytes. Default is 10485760 (10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Headers added to every request to this downstream. Values may contain `${env:NAME}`,
    /// replaced by that environment variable. Default is none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// One tool as a manifest writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    /// The tool's name: 1 to 128 characters of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// What the tool does, shown to the model. Default is empty.
    #[serde(default)]
    pub description: String,
    /// The name of the downstream that serves the tool.
    pub downstream: String,
    /// The HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    pub method: String,
    /// The route relative to the downstream's base URL, such as `/posts/{id}`.
    pub route: String,
    /// The JSON Schema of the arguments. Default is an object schema without properties; a
    /// missing root `type` is taken as `object`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Where arguments go. Route parameters not listed go in the path; other properties not
    /// listed go in the JSON body for POST, PUT and PATCH, in the query otherwise. Default is
    /// none listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    /// Whether a writing method may run. Default is false.
    #[serde(default)]
    pub allow_write: bool,
    /// The largest response, in tokens, that reaches the agent. Default is 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_tokens: Option<u64>,
    /// What happens to a larger response: `truncate` or `reject`. Default is `truncate`.
    #[serde(default)]
    pub over_limit: OverLimit,
    /// Scopes the calling token must all carry. Default is none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// A grouping label for operators. Default is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Where one argument goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParamSpec {
    /// The argument's name, a property of the input schema.
    pub name: String,
    /// `path`, `query`, `header`, `body` (a member of the JSON body) or `wholeBody` (the whole
    /// JSON body).
    #[serde(rename = "in")]
    pub location: ParamLocation,
    /// The name on the wire (header name, query key or body member) when it differs from
    /// `name`. Default is `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_name: Option<String>,
}

impl From<&Tool> for ToolSpec {
    /// The manifest form of a loaded tool, with every placement and default written out.
    fn from(tool: &Tool) -> ToolSpec {
        ToolSpec {
            name: tool.name.clone(),
            description: tool.description.clone(),
            downstream: tool.downstream.clone(),
            method: tool.method.as_str().to_owned(),
            route: tool.route.to_string(),
            input_schema: Some(tool.input_schema.clone()),
            params: tool
                .params
                .iter()
                .map(|p| ParamSpec {
                    name: p.name.clone(),
                    location: p.location,
                    wire_name: p.wire_name.clone(),
                })
                .collect(),
            allow_write: tool.allow_write,
            max_response_tokens: Some(tool.max_response_tokens),
            over_limit: tool.over_limit,
            required_scopes: tool.required_scopes.clone(),
            category: tool.category.clone(),
        }
    }
}
