//! Turning manifest specs into validated tools and downstreams.
//!
//! Every source (manifest, OpenAPI, discovery) ends here, so one set of rules applies to all.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Uri};
use serde_json::{Map, Value};

use super::error::{CatalogError, Result};
use super::manifest::{DownstreamSpec, Manifest, ToolSpec};
use super::model::{CatalogPart, Downstream, Param, ParamLocation, RoutePattern, Tool};
use super::options::LoadOptions;
use crate::schema::CompiledSchema;

/// Headers that neither a downstream's configuration nor an argument may set: they frame the
/// message or are set by the gateway itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "content-type",
    "x-request-id",
];

/// Builds the part that a manifest describes.
pub(crate) fn build_part(
    origin: &str,
    manifest: &Manifest,
    options: &LoadOptions,
) -> Result<CatalogPart> {
    let mut downstreams = Vec::with_capacity(manifest.downstreams.len());
    for (name, spec) in &manifest.downstreams {
        downstreams.push(build_downstream(origin, name, spec, options)?);
    }
    let mut tools = Vec::with_capacity(manifest.tools.len());
    for spec in &manifest.tools {
        tools.push(build_tool(origin, spec)?);
    }
    Ok(CatalogPart {
        origin: origin.to_owned(),
        downstreams,
        tools,
    })
}

/// Builds one downstream, resolving `${env:NAME}` in its headers and applying a base-URL
/// override from `options`.
pub(crate) fn build_downstream(
    origin: &str,
    name: &str,
    spec: &DownstreamSpec,
    options: &LoadOptions,
) -> Result<Downstream> {
    let fail = |reason: String| CatalogError::Downstream {
        origin: origin.to_owned(),
        downstream: name.to_owned(),
        reason,
    };
    if !is_downstream_name(name) {
        return Err(fail(
            "a downstream name must be 1 to 64 characters of A-Z a-z 0-9 _ . -".to_owned(),
        ));
    }

    let url = options
        .downstream_urls
        .get(name)
        .map_or(spec.base_url.as_str(), String::as_str);
    let base_url = parse_base_url(url).map_err(fail)?;

    let millis = |value: Option<u64>, default: Duration, key: &str| match value {
        None => Ok(default),
        Some(0) => Err(fail(format!("{key} must be positive"))),
        Some(ms) => Ok(Duration::from_millis(ms)),
    };
    let connect_timeout = millis(
        spec.connect_timeout_ms,
        Downstream::DEFAULT_CONNECT_TIMEOUT,
        "connectTimeoutMs",
    )?;
    let request_timeout = millis(
        spec.request_timeout_ms,
        Downstream::DEFAULT_REQUEST_TIMEOUT,
        "requestTimeoutMs",
    )?;
    let max_response_bytes = match spec.max_response_bytes {
        None => Downstream::DEFAULT_MAX_RESPONSE_BYTES,
        Some(0) => return Err(fail("maxResponseBytes must be positive".to_owned())),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };

    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(spec.headers.len());
    for (header, raw) in &spec.headers {
        let header_name = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| fail(format!("{header:?} is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header_name.as_str()) {
            return Err(fail(format!("header {header_name} cannot be configured")));
        }
        if headers.iter().any(|(n, _)| *n == header_name) {
            return Err(fail(format!("header {header_name} is given twice")));
        }
        let resolved = resolve_env(raw, &*options.env).map_err(|problem| match problem {
            EnvProblem::Missing(variable) => CatalogError::MissingEnv {
                origin: origin.to_owned(),
                downstream: name.to_owned(),
                variable,
            },
            EnvProblem::Malformed => fail(format!(
                "header {header_name}: malformed ${{...}} reference (the form is ${{env:NAME}})"
            )),
        })?;
        // The value may be a credential: the message never includes it.
        let mut value = HeaderValue::from_str(&resolved).map_err(|_| {
            fail(format!(
                "header {header_name} has a value with characters not allowed in a header"
            ))
        })?;
        value.set_sensitive(true);
        headers.push((header_name, value));
    }

    Ok(Downstream {
        name: name.to_owned(),
        base_url,
        connect_timeout,
        request_timeout,
        max_response_bytes,
        headers,
    })
}

/// Builds one tool: parses its method and route, compiles its schema, places its arguments and
/// checks its governance fields.
pub(crate) fn build_tool(origin: &str, spec: &ToolSpec) -> Result<Tool> {
    let fail = |reason: String| CatalogError::Tool {
        origin: origin.to_owned(),
        tool: spec.name.clone(),
        reason,
    };
    check_tool_name(&spec.name).map_err(fail)?;
    if spec.downstream.is_empty() {
        return Err(fail("downstream must not be empty".to_owned()));
    }
    let method = parse_method(&spec.method).map_err(fail)?;
    let route = RoutePattern::parse(&spec.route).map_err(|e| fail(e.to_string()))?;

    let input_schema = normalize_root(spec.input_schema.clone()).map_err(fail)?;
    let compiled =
        CompiledSchema::compile(&input_schema).map_err(|error| CatalogError::Schema {
            origin: origin.to_owned(),
            tool: spec.name.clone(),
            error,
        })?;
    let params = place_params(spec, &method, &route, &compiled).map_err(fail)?;

    let max_response_tokens = match spec.max_response_tokens {
        None => Tool::DEFAULT_MAX_RESPONSE_TOKENS,
        Some(0) => return Err(fail("maxResponseTokens must be positive".to_owned())),
        Some(n) => n,
    };
    for scope in &spec.required_scopes {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(format!(
                "required scope {:?} must be non-empty, without spaces",
                crate::schema::shorten(scope)
            )));
        }
    }
    let category = spec.category.clone().filter(|c| !c.is_empty());

    Ok(Tool {
        name: spec.name.clone(),
        description: spec.description.clone(),
        category,
        downstream: spec.downstream.clone(),
        method,
        route,
        input_schema,
        compiled_schema: Arc::new(compiled),
        params,
        allow_write: spec.allow_write,
        max_response_tokens,
        over_limit: spec.over_limit,
        required_scopes: spec.required_scopes.clone(),
    })
}

/// Checks that a tool's path parameters are declared and required in its schema, and that its
/// placements are consistent. The loaders guarantee this already; [`super::Catalog::merge`]
/// checks it again for tools built by hand.
pub(crate) fn check_tool(tool: &Tool) -> std::result::Result<(), String> {
    check_tool_name(&tool.name)?;
    for name in tool.route.params() {
        check_path_param(name, &tool.compiled_schema)?;
        if !tool
            .params
            .iter()
            .any(|p| p.name == name && p.location == ParamLocation::Path)
        {
            return Err(format!("path parameter {name} has no path placement"));
        }
    }
    for param in &tool.params {
        if param.location == ParamLocation::Path && !tool.route.has_param(&param.name) {
            return Err(format!(
                "argument {} is placed in the path, but the route has no {{{}}}",
                param.name, param.name
            ));
        }
    }
    Ok(())
}

/// Whether `name` is a valid MCP tool name: 1 to 128 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_tool_name(name: &str) -> std::result::Result<(), String> {
    if is_valid_tool_name(name) {
        Ok(())
    } else {
        Err("a tool name must be 1 to 128 characters of A-Z a-z 0-9 _ . -".to_owned())
    }
}

fn is_downstream_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses a method name; only the methods whose meaning (writing or not) is known are allowed,
/// because `allowWrite` is enforced by method.
pub(crate) fn parse_method(text: &str) -> std::result::Result<Method, String> {
    match text.to_ascii_uppercase().as_str() {
        "GET" => Ok(Method::GET),
        "HEAD" => Ok(Method::HEAD),
        "POST" => Ok(Method::POST),
        "PUT" => Ok(Method::PUT),
        "PATCH" => Ok(Method::PATCH),
        "DELETE" => Ok(Method::DELETE),
        "OPTIONS" => Ok(Method::OPTIONS),
        _ => Err(format!(
            "method {:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            crate::schema::shorten(text)
        )),
    }
}

/// Parses and checks a downstream base URL.
pub(crate) fn parse_base_url(text: &str) -> std::result::Result<Uri, String> {
    // `Uri` drops a fragment silently; a base URL with one is a mistake worth reporting.
    if text.contains('#') {
        return Err(format!("base URL {text:?} must not have a fragment"));
    }
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("base URL {text:?} is not a valid URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        _ => {
            return Err(format!(
                "base URL {text:?} must start with http:// or https://"
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("base URL {text:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "base URL {text:?} must not carry user info; put credentials in headers"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("base URL {text:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("base URL {text:?} must not have a query"));
    }
    Ok(uri)
}

/// Gives a schema without a root `type` the type `object` (MCP clients expect one), and an
/// absent schema an empty object schema.
fn normalize_root(schema: Option<Value>) -> std::result::Result<Value, String> {
    let mut schema = schema.unwrap_or_else(|| Value::Object(Map::new()));
    let Value::Object(object) = &mut schema else {
        return Err("inputSchema must be a JSON object".to_owned());
    };
    object
        .entry("type")
        .or_insert_with(|| Value::String("object".to_owned()));
    if !object.contains_key("properties") {
        object.insert("properties".to_owned(), Value::Object(Map::new()));
    }
    Ok(schema)
}

fn check_path_param(name: &str, schema: &CompiledSchema) -> std::result::Result<(), String> {
    if !schema.declares(name) {
        return Err(format!(
            "path parameter {name} is missing from inputSchema properties"
        ));
    }
    if !schema.requires(name) {
        return Err(format!(
            "path parameter {name} must be listed in inputSchema required"
        ));
    }
    Ok(())
}

/// Decides where every argument goes: the explicit placements, then route parameters in the
/// path, then every other declared property in the body (POST, PUT, PATCH) or the query.
fn place_params(
    spec: &ToolSpec,
    method: &Method,
    route: &RoutePattern,
    schema: &CompiledSchema,
) -> std::result::Result<Vec<Param>, String> {
    let mut params: Vec<Param> = Vec::new();
    let mut seen = BTreeSet::new();

    for p in &spec.params {
        if p.name.is_empty() {
            return Err("a parameter name must not be empty".to_owned());
        }
        if !seen.insert(p.name.as_str()) {
            return Err(format!("argument {} is placed twice", p.name));
        }
        if !schema.declares(&p.name) {
            return Err(format!(
                "argument {} is placed but missing from inputSchema properties",
                p.name
            ));
        }
        let in_route = route.has_param(&p.name);
        match p.location {
            ParamLocation::Path if !in_route => {
                return Err(format!(
                    "argument {} is placed in the path, but the route has no {{{}}}",
                    p.name, p.name
                ));
            }
            ParamLocation::Path => {
                if p.wire_name.is_some() {
                    return Err(format!(
                        "path argument {} cannot have a wireName; the route names it",
                        p.name
                    ));
                }
            }
            _ if in_route => {
                return Err(format!(
                    "route parameter {} must be placed in the path",
                    p.name
                ));
            }
            ParamLocation::Header => {
                let wire = p.wire_name.as_deref().unwrap_or(&p.name);
                let header = HeaderName::from_bytes(wire.as_bytes())
                    .map_err(|_| format!("{wire:?} is not a valid header name"))?;
                if RESERVED_HEADERS.contains(&header.as_str()) {
                    return Err(format!("header {header} cannot be set from an argument"));
                }
            }
            ParamLocation::WholeBody => {
                if p.wire_name.is_some() {
                    return Err(format!(
                        "whole-body argument {} cannot have a wireName",
                        p.name
                    ));
                }
            }
            ParamLocation::Query | ParamLocation::Body => {
                if p.wire_name.as_deref() == Some("") {
                    return Err(format!("argument {} has an empty wireName", p.name));
                }
            }
        }
        params.push(Param {
            name: p.name.clone(),
            location: p.location,
            wire_name: p.wire_name.clone(),
        });
    }

    for name in route.params() {
        check_path_param(name, schema)?;
        if !seen.contains(name) {
            params.push(Param {
                name: name.to_owned(),
                location: ParamLocation::Path,
                wire_name: None,
            });
        }
    }

    let default_location = if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        ParamLocation::Body
    } else {
        ParamLocation::Query
    };
    let whole_body = params
        .iter()
        .any(|p| p.location == ParamLocation::WholeBody);
    for name in schema.property_names() {
        if !seen.contains(name) && !route.has_param(name) {
            if whole_body && default_location == ParamLocation::Body {
                return Err(format!(
                    "argument {name} has no placement, and the body is a whole-body argument"
                ));
            }
            params.push(Param {
                name: name.to_owned(),
                location: default_location,
                wire_name: None,
            });
        }
    }

    check_wire_names(&params)?;
    Ok(params)
}

/// Refuses two arguments that would fill the same header, query key or body member, and a
/// whole-body argument beside other body arguments.
fn check_wire_names(params: &[Param]) -> std::result::Result<(), String> {
    let whole = params
        .iter()
        .filter(|p| p.location == ParamLocation::WholeBody)
        .count();
    let members = params
        .iter()
        .filter(|p| p.location == ParamLocation::Body)
        .count();
    if whole > 1 || (whole == 1 && members > 0) {
        return Err("a whole-body argument must be the only body argument".to_owned());
    }
    let mut seen: BTreeSet<(u8, String)> = BTreeSet::new();
    for p in params {
        let wire = p.wire_name.as_deref().unwrap_or(&p.name);
        let key = match p.location {
            ParamLocation::Header => (0, wire.to_ascii_lowercase()),
            ParamLocation::Query => (1, wire.to_owned()),
            ParamLocation::Body => (2, wire.to_owned()),
            ParamLocation::Path | ParamLocation::WholeBody => continue,
        };
        if !seen.insert(key) {
            return Err(format!(
                "two arguments are sent as the same {} {wire}",
                match p.location {
                    ParamLocation::Header => "header",
                    ParamLocation::Query => "query key",
                    _ => "body member",
                }
            ));
        }
    }
    Ok(())
}

enum EnvProblem {
    Missing(String),
    Malformed,
}

/// Replaces every `${env:NAME}` in `text`. Any other `${` is an error, so a typo such as
/// `${ENV:X}` cannot reach the downstream as a literal.
fn resolve_env(
    text: &str,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
) -> std::result::Result<String, EnvProblem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(EnvProblem::Malformed);
        };
        let Some(name) = after[..end].strip_prefix("env:") else {
            return Err(EnvProblem::Malformed);
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(EnvProblem::Malformed);
        }
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(EnvProblem::Missing(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_references_are_replaced_anywhere_in_a_value() {
        assert_eq!(
            resolve_env("Bearer ${env:TOKEN}", &env).ok().as_deref(),
            Some("Bearer abc")
        );
        assert_eq!(
            resolve_env("${env:TOKEN}-${env:EMPTY}-${env:TOKEN}", &env)
                .ok()
                .as_deref(),
            Some("abc--abc")
        );
        assert_eq!(resolve_env("plain", &env).ok().as_deref(), Some("plain"));
    }

    #[test]
    fn malformed_or_missing_env_references_are_refused() {
        assert!(matches!(
            resolve_env("${env:NOPE}", &env),
            Err(EnvProblem::Missing(n)) if n == "NOPE"
        ));
        for text in [
            "${ENV:TOKEN}",
            "${env:TOKEN",
            "${env:}",
            "${env:1A}",
            "${TOKEN}",
        ] {
            assert!(
                matches!(resolve_env(text, &env), Err(EnvProblem::Malformed)),
                "{text}"
            );
        }
    }

    #[test]
    fn base_urls_must_be_http_or_https_with_a_host() {
        assert!(parse_base_url("http://127.0.0.1:5200").is_ok());
        assert!(parse_base_url("https://localhost/api/v1/").is_ok());
        for bad in [
            "ftp://127.0.0.1",
            "file:///etc/passwd",
            "127.0.0.1:5200",
            "/relative",
            "http://user:pw@127.0.0.1",
            "http://127.0.0.1/?a=1",
            "http://127.0.0.1/#top",
            "http://127.0.0.1:5200 /x",
            "http:///x",
            "not a url",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_methods_of_known_meaning_are_accepted() {
        assert_eq!(parse_method("get"), Ok(Method::GET));
        assert_eq!(parse_method("PATCH"), Ok(Method::PATCH));
        assert!(parse_method("PURGE").is_err());
        assert!(parse_method("").is_err());
    }

    #[test]
    fn tool_names_follow_the_mcp_rule() {
        assert!(is_valid_tool_name("getPost"));
        assert!(is_valid_tool_name("posts.get-v2_x"));
        assert!(is_valid_tool_name(&"a".repeat(128)));
        assert!(!is_valid_tool_name(&"a".repeat(129)));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name("get post"));
        assert!(!is_valid_tool_name("get/post"));
        assert!(!is_valid_tool_name("getPöst"));
    }
}
