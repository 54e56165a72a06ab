//! Tools published by a downstream at `GET /ithil/schema`.
//!
//! Only the conversion lives here; fetching (with retries) is the forwarding layer's job. The
//! answer is a JSON array of objects:
//!
//! ```json
//! [{"name": "getPost", "description": "...", "httpMethod": "GET",
//!   "routePattern": "posts/{id:int}", "parameterSources": {"id": "route"},
//!   "inputSchema": {"properties": {"id": {"type": "integer"}}, "required": ["id"]},
//!   "allowWrite": false, "maxResponseTokens": 2000, "category": null, "requiredScopes": null}]
//! ```
//!
//! Decisions (also in `docs/tools.md`): unknown members are ignored, since the document comes
//! from another program that may be newer; `httpMethod` is matched case-insensitively and an
//! empty or `null` one hides the tool; route parameters keep only their name
//! (`{id:int}`, `{id:regex(^\d+$)}`, `{id?}`, `{id=5}`, `{*rest}` and `{**rest}` all name `id`
//! or `rest`); every route parameter is sent as exactly one encoded segment (a catch-all's
//! slashes are encoded too) and is required, even when the route marks it optional, because
//! leaving a segment out would change the route's shape; `parameterSources` values are `route`
//! (or `path`), `query`, `body` or `header`, in any case, and names that the input schema does
//! not declare are ignored; a missing, `null`, zero or negative `maxResponseTokens` means the
//! default 2000.

use std::collections::BTreeMap;

use http::Uri;
use serde::Deserialize;
use serde_json::Value;

use super::build::{build_tool, is_valid_tool_name};
use super::error::{CatalogError, Result};
use super::manifest::{ParamSpec, ToolSpec};
use super::model::{Downstream, OverLimit, ParamLocation, Tool};

/// The default path at which a downstream publishes its tools.
pub const DEFAULT_SCHEMA_PATH: &str = "/ithil/schema";

/// One entry of a discovery answer. Every member may be missing or `null`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    name: Option<String>,
    description: Option<String>,
    http_method: Option<String>,
    route_pattern: Option<String>,
    parameter_sources: Option<BTreeMap<String, Option<String>>>,
    input_schema: Option<Value>,
    allow_write: Option<bool>,
    max_response_tokens: Option<serde_json::Number>,
    category: Option<String>,
    required_scopes: Option<Vec<String>>,
}

/// The origin that errors name for a downstream's discovery answer.
pub fn origin(downstream_name: &str) -> String {
    format!("discovery from {downstream_name}")
}

/// The URL of a downstream's discovery document: `schema_path` below the base URL, path prefix
/// included (`http://host/api` and `/ithil/schema` give `http://host/api/ithil/schema`).
///
/// # Errors
///
/// [`CatalogError::Downstream`] when `schema_path` does not form a valid URL path.
pub fn schema_url(downstream: &Downstream, schema_path: &str) -> Result<Uri> {
    let fail = |reason: String| CatalogError::Downstream {
        origin: origin(&downstream.name),
        downstream: downstream.name.clone(),
        reason,
    };
    if schema_path.contains(['#', ' ', '\\']) || schema_path.chars().any(char::is_control) {
        return Err(fail(format!(
            "schema path {schema_path:?} is not a valid path"
        )));
    }
    let prefix = downstream.base_url.path().trim_end_matches('/');
    let path = format!("{prefix}/{}", schema_path.trim_start_matches('/'));

    let mut parts = downstream.base_url.clone().into_parts();
    parts.path_and_query = Some(
        path.parse()
            .map_err(|_| fail(format!("schema path {schema_path:?} is not a valid path")))?,
    );
    Uri::from_parts(parts)
        .map_err(|_| fail(format!("schema path {schema_path:?} is not a valid path")))
}

/// Converts a discovery answer into the tools of the downstream `downstream_name`.
///
/// # Errors
///
/// [`CatalogError::Parse`] when the answer is not a JSON array of objects; the tool errors of
/// the manifest rules (named for the tool) when an entry is not usable: no name, no route, a
/// route parameter the schema does not declare, an unknown parameter source.
pub fn parse(downstream_name: &str, json: &[u8]) -> Result<Vec<Tool>> {
    let origin = origin(downstream_name);
    let entries: Vec<Entry> =
        serde_json::from_slice(json).map_err(|error| CatalogError::Parse {
            origin: origin.clone(),
            error,
        })?;

    let mut tools = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        if let Some(spec) = to_spec(&origin, downstream_name, index, entry)? {
            tools.push(build_tool(&origin, &spec)?);
        }
    }
    Ok(tools)
}

/// Converts one entry into a manifest tool, or `None` when the entry is not exposed.
fn to_spec(
    origin: &str,
    downstream_name: &str,
    index: usize,
    entry: Entry,
) -> Result<Option<ToolSpec>> {
    let name = match entry.name {
        Some(name) if !name.is_empty() => name,
        _ => {
            return Err(CatalogError::Tool {
                origin: origin.to_owned(),
                tool: format!("#{index}"),
                reason: "the entry has no name".to_owned(),
            });
        }
    };
    let fail = |reason: String| CatalogError::Tool {
        origin: origin.to_owned(),
        tool: if is_valid_tool_name(&name) {
            name.clone()
        } else {
            format!("#{index} ({})", crate::schema::shorten(&name))
        },
        reason,
    };

    let method = match entry.http_method.as_deref().map(str::trim) {
        None | Some("") => return Ok(None),
        Some(method) => method.to_ascii_uppercase(),
    };
    let Some(raw_route) = entry.route_pattern else {
        return Err(fail("the entry has no routePattern".to_owned()));
    };
    let (route, route_params) = convert_route(&raw_route).map_err(&fail)?;

    // Route parameters are always required (see the module documentation).
    let mut input_schema = entry.input_schema.unwrap_or(Value::Null);
    if input_schema.is_null() {
        input_schema = Value::Object(serde_json::Map::new());
    }
    let Value::Object(schema) = &mut input_schema else {
        return Err(fail("inputSchema must be a JSON object".to_owned()));
    };
    let declared: Vec<String> = match schema.get("properties") {
        Some(Value::Object(properties)) => properties.keys().cloned().collect(),
        _ => Vec::new(),
    };
    if !route_params.is_empty() {
        let required = schema
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if required.is_null() {
            *required = Value::Array(Vec::new());
        }
        if let Value::Array(required) = required {
            for param in &route_params {
                if !required.iter().any(|r| r.as_str() == Some(param)) {
                    required.push(Value::String(param.clone()));
                }
            }
        }
    }

    let mut params = Vec::new();
    for (arg, source) in entry.parameter_sources.unwrap_or_default() {
        let Some(source) = source else { continue };
        let location = match source.to_ascii_lowercase().as_str() {
            "route" | "path" => ParamLocation::Path,
            "query" => ParamLocation::Query,
            "body" => ParamLocation::Body,
            "header" => ParamLocation::Header,
            other => {
                return Err(fail(format!(
                    "parameter {arg} has an unknown source {:?}",
                    crate::schema::shorten(other)
                )));
            }
        };
        if !declared.contains(&arg) {
            continue;
        }
        params.push(ParamSpec {
            name: arg,
            location,
            wire_name: None,
        });
    }

    let max_response_tokens = entry
        .max_response_tokens
        .and_then(|n| n.as_u64())
        .filter(|n| *n > 0);

    Ok(Some(ToolSpec {
        name: name.clone(),
        description: entry.description.unwrap_or_default(),
        downstream: downstream_name.to_owned(),
        method,
        route,
        input_schema: Some(input_schema),
        params,
        allow_write: entry.allow_write.unwrap_or(false),
        max_response_tokens,
        over_limit: OverLimit::Truncate,
        required_scopes: entry.required_scopes.unwrap_or_default(),
        category: entry.category,
    }))
}

/// Rewrites an ASP.NET-style route (`posts/{id:int}/comments`) into the manifest form
/// (`/posts/{id}/comments`) and lists its parameter names.
fn convert_route(raw: &str) -> std::result::Result<(String, Vec<String>), String> {
    let body = raw.trim().trim_start_matches('/');
    let mut route = String::new();
    let mut names = Vec::new();
    for segment in split_segments(body)? {
        route.push('/');
        if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let inner = inner.trim_start_matches('*');
            let end = inner.find([':', '?', '=']).unwrap_or(inner.len());
            let name = &inner[..end];
            route.push('{');
            route.push_str(name);
            route.push('}');
            names.push(name.to_owned());
        } else {
            route.push_str(segment);
        }
    }
    if route.is_empty() {
        route.push('/');
    }
    Ok((route, names))
}

/// Splits a route at the slashes outside braces, since a constraint such as
/// `{p:regex(^a/b$)}` may itself hold a slash.
fn split_segments(route: &str) -> std::result::Result<Vec<&str>, String> {
    let mut segments = Vec::new();
    if route.is_empty() {
        return Ok(segments);
    }
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in route.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("route {route:?} has an unbalanced }}"))?;
            }
            '/' if depth == 0 => {
                segments.push(&route[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("route {route:?} has an unbalanced {{"));
    }
    segments.push(&route[start..]);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_constraints_optional_markers_and_catch_alls_keep_only_the_name() {
        let cases = [
            ("posts/{id:int}", "/posts/{id}", vec!["id"]),
            (
                "/posts/{id:int:min(1)}/comments",
                "/posts/{id}/comments",
                vec!["id"],
            ),
            ("posts/{id?}", "/posts/{id}", vec!["id"]),
            ("posts/{id=5}", "/posts/{id}", vec!["id"]),
            ("files/{*rest}", "/files/{rest}", vec!["rest"]),
            ("files/{**rest}", "/files/{rest}", vec!["rest"]),
            ("codes/{c:regex(^a/b{{2}}$)}", "/codes/{c}", vec!["c"]),
            ("", "/", vec![]),
        ];
        for (raw, route, names) in cases {
            let (got, got_names) = convert_route(raw).unwrap();
            assert_eq!(got, route, "{raw}");
            assert_eq!(got_names, names, "{raw}");
        }
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        assert!(convert_route("posts/{id").is_err());
        assert!(convert_route("posts/id}").is_err());
    }
}
