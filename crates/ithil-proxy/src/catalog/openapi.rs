//! Importing OpenAPI 3.0 and 3.1 documents: one tool per operation.
//!
//! The import produces a [`Manifest`], so an imported document obeys exactly the rules of a
//! hand-written manifest, and `ithil tools import FILE` can print what the gateway would load
//! ([`to_manifest`]). The decisions, also in `docs/tools.md`:
//!
//! - The tool's name is the `operationId`; an operation without one is named from its method
//!   and path (`get_posts_id_comments` for `GET /posts/{id}/comments`). An `operationId` that is
//!   not a valid MCP name is a load error.
//! - The description is the `summary`, then the `description`, separated by a blank line; with
//!   neither, the method and path.
//! - Parameters in the path, the query and headers become arguments of the same name (path-level
//!   parameters included, overridden by the operation's own). A `cookie` parameter is a load
//!   error. Header parameters named `Accept`, `Content-Type` or `Authorization` are ignored, as
//!   OpenAPI says. `style` and `explode` are not read: query arrays are sent as repeated keys,
//!   header arrays comma-separated.
//! - A JSON request body (`application/json` or `*+json`) whose schema is an object with
//!   properties (or an `allOf` of such) gives each property as a top-level argument, `readOnly`
//!   properties left out; a property whose name another argument already has is a load error
//!   naming both. Any other body schema, including an object without properties, becomes one
//!   argument `body` holding the whole body. A body with only other media types is a load error.
//! - Local `$ref`s (`#/...`) are resolved and inlined, so the tool's schema is self-contained;
//!   external ones are a load error (nothing is ever fetched). A reference cycle, a schema
//!   nesting deeper than 64 levels, or one expanding to more than 100000 values is a load error.
//! - In OpenAPI 3.0 documents, `nullable: true` becomes a `null` in `type`, and boolean
//!   `exclusiveMinimum`/`exclusiveMaximum` become numeric ones, so tools show plain JSON Schema.
//! - The `x-ithil` extension on an operation sets `category`, `allowWrite`, `requiredScopes`,
//!   `maxResponseTokens` and `overLimit`, and `exclude: true` leaves the operation out (the way to
//!   load a document that has an operation Ithil cannot import).
//! - The downstream is called `downstream_name` (the file's stem) and uses `servers[0].url`, its
//!   `{variables}` replaced by their defaults, unless the options give that downstream another
//!   base URL. Path-level and operation-level `servers` are not read. `trace` operations are
//!   skipped.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::build::is_valid_tool_name;
use super::error::{CatalogError, Result};
use super::manifest::{DownstreamSpec, Manifest, ParamSpec, ToolSpec};
use super::model::{Catalog, OverLimit, ParamLocation};
use super::options::LoadOptions;

/// The deepest nesting (of values and references together) that is inlined.
const MAX_DEPTH: usize = 64;

/// The most JSON values one operation's schemas may expand to once references are inlined.
const MAX_EXPANDED_VALUES: usize = 100_000;

/// The methods read from a path item, in the order tools are made.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// Keywords whose values are data, not schemas: never searched for references.
const DATA_KEYWORDS: &[&str] = &["example", "examples", "default", "enum", "const"];

/// The `x-ithil` extension of an operation.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Extension {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    allow_write: bool,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    max_response_tokens: Option<u64>,
    #[serde(default)]
    over_limit: OverLimit,
    #[serde(default)]
    exclude: bool,
}

/// Reads an OpenAPI file and returns the manifest JSON the gateway would load from it, after
/// checking that it loads. The downstream is named after the file's stem.
///
/// # Errors
///
/// [`CatalogError::Read`] when the file cannot be read, [`CatalogError::Parse`] when it is not
/// JSON, [`CatalogError::Unsupported`] when it is not OpenAPI 3.0 or 3.1, and the errors of
/// [`import`] and of loading the result.
pub fn to_manifest(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Value> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|error| CatalogError::Read {
        path: path.to_owned(),
        error,
    })?;
    let origin = path.display().to_string();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let document: Value = serde_json::from_slice(&bytes).map_err(|error| CatalogError::Parse {
        origin: origin.clone(),
        error,
    })?;
    let manifest = import(&origin, &stem, &document, options)?;

    // The manifest is printed for review, so it must load as it stands.
    let part = super::build::build_part(&origin, &manifest, options)?;
    Catalog::merge([part])?;
    serde_json::to_value(&manifest).map_err(|error| CatalogError::Parse { origin, error })
}

/// Converts an OpenAPI 3.0 or 3.1 document into the equivalent manifest, whose one downstream
/// is called `downstream_name`.
///
/// # Errors
///
/// [`CatalogError::Unsupported`] for Swagger 2.0 or another OpenAPI major version;
/// [`CatalogError::Downstream`] when no usable server URL is given; [`CatalogError::Tool`] and
/// [`CatalogError::Reference`] naming the operation that cannot be imported.
pub fn import(
    origin: &str,
    downstream_name: &str,
    document: &Value,
    options: &LoadOptions,
) -> Result<Manifest> {
    let version = check_version(origin, document)?;
    let base_url = base_url(origin, downstream_name, document, options)?;

    let mut manifest = Manifest::default();
    manifest.downstreams.insert(
        downstream_name.to_owned(),
        DownstreamSpec {
            base_url,
            ..DownstreamSpec::default()
        },
    );

    let paths = match document.get("paths") {
        None => return Ok(manifest),
        Some(Value::Object(paths)) => paths,
        Some(_) => {
            return Err(CatalogError::Unsupported {
                origin: origin.to_owned(),
                reason: "paths must be an object".to_owned(),
            });
        }
    };

    for (path, item) in paths {
        let item_label = format!("path {path}");
        let resolver = Resolver::new(origin, &item_label, document);
        let item = resolver.follow(item)?;
        let Value::Object(item) = item else {
            return Err(resolver.fail(format!("path item {path} must be an object")));
        };
        let shared = item.get("parameters");
        for method in METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            let Some(spec) = import_operation(
                origin,
                downstream_name,
                document,
                version,
                path,
                method,
                operation,
                shared,
            )?
            else {
                continue;
            };
            manifest.tools.push(spec);
        }
    }
    Ok(manifest)
}

/// The OpenAPI minor family a document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V30,
    V31,
}

fn check_version(origin: &str, document: &Value) -> Result<Version> {
    let unsupported = |reason: String| CatalogError::Unsupported {
        origin: origin.to_owned(),
        reason,
    };
    if document.get("swagger").is_some() {
        return Err(unsupported(
            "Swagger 2.0 documents are not supported; convert the document to OpenAPI 3".to_owned(),
        ));
    }
    match document.get("openapi").and_then(Value::as_str) {
        Some(v) if v == "3.0" || v.starts_with("3.0.") => Ok(Version::V30),
        Some(v) if v == "3.1" || v.starts_with("3.1.") => Ok(Version::V31),
        Some(v) => Err(unsupported(format!(
            "OpenAPI version {:?} is not supported (3.0 and 3.1 are)",
            crate::schema::shorten(v)
        ))),
        None => Err(unsupported("openapi must be a version string".to_owned())),
    }
}

/// The downstream's base URL: the override, or `servers[0].url` with its variables replaced.
fn base_url(
    origin: &str,
    downstream_name: &str,
    document: &Value,
    options: &LoadOptions,
) -> Result<String> {
    if let Some(url) = options.downstream_urls.get(downstream_name) {
        return Ok(url.clone());
    }
    let fail = |reason: String| CatalogError::Downstream {
        origin: origin.to_owned(),
        downstream: downstream_name.to_owned(),
        reason,
    };
    let Some(server) = document
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return Err(fail(format!(
            "the document names no server; give the base URL (--downstream-url {downstream_name}=URL)"
        )));
    };
    let Some(template) = server.get("url").and_then(Value::as_str) else {
        return Err(fail("servers[0] has no url".to_owned()));
    };

    let mut url = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        url.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(fail(format!(
                "servers[0].url {template:?} has an unclosed {{"
            )));
        };
        let name = &rest[start + 1..start + end];
        let default = server
            .get("variables")
            .and_then(|v| v.get(name))
            .and_then(|v| v.get("default"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                fail(format!(
                    "servers[0].url variable {name} has no default value"
                ))
            })?;
        url.push_str(default);
        rest = &rest[start + end + 1..];
    }
    url.push_str(rest);

    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(fail(format!(
            "servers[0].url {url:?} is not an absolute http or https URL; give the base URL \
             (--downstream-url {downstream_name}=URL)"
        )));
    }
    Ok(url)
}

/// Imports one operation, or `None` when `x-ithil` excludes it.
#[allow(
    clippy::too_many_arguments,
    reason = "the operation's context, read once by the caller"
)]
fn import_operation(
    origin: &str,
    downstream_name: &str,
    document: &Value,
    version: Version,
    path: &str,
    method: &str,
    operation: &Value,
    shared_parameters: Option<&Value>,
) -> Result<Option<ToolSpec>> {
    let label = format!("{} {path}", method.to_ascii_uppercase());
    let Value::Object(operation) = operation else {
        return Err(CatalogError::Tool {
            origin: origin.to_owned(),
            tool: label,
            reason: "the operation must be an object".to_owned(),
        });
    };

    let name = match operation.get("operationId") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => {
            return Err(CatalogError::Tool {
                origin: origin.to_owned(),
                tool: label,
                reason: "operationId must be a string".to_owned(),
            });
        }
        None => derive_name(method, path),
    };
    let tool = if is_valid_tool_name(&name) {
        name.clone()
    } else {
        format!("{label} ({})", crate::schema::shorten(&name))
    };
    let resolver = Resolver::new(origin, &tool, document);
    if !is_valid_tool_name(&name) {
        return Err(resolver.fail(
            "the operationId is not a valid tool name (1 to 128 characters of A-Z a-z 0-9 _ . -)"
                .to_owned(),
        ));
    }

    let extension = match operation.get("x-ithil") {
        None | Some(Value::Null) => Extension::default(),
        Some(value) => {
            Extension::deserialize(value).map_err(|error| CatalogError::ToolDefinition {
                origin: origin.to_owned(),
                tool: tool.clone(),
                error,
            })?
        }
    };
    if extension.exclude {
        return Ok(None);
    }

    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut params: Vec<ParamSpec> = Vec::new();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();

    // Parameters: the path item's, replaced by the operation's own of the same name and place.
    let mut parameters: Vec<&Value> = Vec::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for list in [operation.get("parameters"), shared_parameters]
        .into_iter()
        .flatten()
    {
        let Value::Array(list) = list else {
            return Err(resolver.fail("parameters must be an array".to_owned()));
        };
        for parameter in list {
            let parameter = resolver.follow(parameter)?;
            let key = (
                parameter
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                parameter
                    .get("in")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
            if !keys.contains(&key) {
                keys.push(key);
                parameters.push(parameter);
            }
        }
    }

    for parameter in parameters {
        let Some(name) = parameter.get("name").and_then(Value::as_str) else {
            return Err(resolver.fail("a parameter has no name".to_owned()));
        };
        let location = match parameter.get("in").and_then(Value::as_str) {
            Some("path") => ParamLocation::Path,
            Some("query") => ParamLocation::Query,
            Some("header") => {
                if ["accept", "content-type", "authorization"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    continue;
                }
                ParamLocation::Header
            }
            Some("cookie") => {
                return Err(resolver.fail(format!(
                    "cookie parameter {name} is not supported (exclude the operation with \
                     x-ithil exclude: true)"
                )));
            }
            _ => {
                return Err(resolver.fail(format!(
                    "parameter {name} has no valid \"in\" (path, query, header or cookie)"
                )));
            }
        };
        let kind = format!("{} parameter {name}", location_word(location));
        if let Some(other) = placed.get(name) {
            return Err(resolver.fail(format!("{kind} clashes with {other}")));
        }

        let schema = match (parameter.get("schema"), parameter.get("content")) {
            (Some(schema), _) => resolver.inline(schema, version)?,
            (None, Some(Value::Object(content))) => match content.values().next() {
                Some(media) => match media.get("schema") {
                    Some(schema) => resolver.inline(schema, version)?,
                    None => Value::Object(Map::new()),
                },
                None => Value::Object(Map::new()),
            },
            _ => Value::Object(Map::new()),
        };
        let schema = with_description(schema, parameter.get("description"));

        let is_required = location == ParamLocation::Path
            || parameter.get("required") == Some(&Value::Bool(true));
        if is_required {
            required.push(Value::String(name.to_owned()));
        }
        properties.insert(name.to_owned(), schema);
        params.push(ParamSpec {
            name: name.to_owned(),
            location,
            wire_name: None,
        });
        placed.insert(name.to_owned(), kind);
    }

    let mut closed = false;
    if let Some(body) = operation.get("requestBody") {
        let body = resolver.follow(body)?;
        let body_required = body.get("required") == Some(&Value::Bool(true));
        let schema = json_body_schema(&resolver, body)?;
        let schema = resolver.inline(&schema, version)?;

        match object_members(&schema) {
            Some(members) => {
                closed = members.closed;
                for (name, member) in members.properties {
                    if let Some(other) = placed.get(&name) {
                        return Err(resolver
                            .fail(format!("request body property {name} clashes with {other}")));
                    }
                    if members.required.contains(&name) {
                        required.push(Value::String(name.clone()));
                    }
                    properties.insert(name.clone(), member);
                    params.push(ParamSpec {
                        name: name.clone(),
                        location: ParamLocation::Body,
                        wire_name: None,
                    });
                    placed.insert(name.clone(), format!("request body property {name}"));
                }
            }
            None => {
                if let Some(other) = placed.get("body") {
                    return Err(resolver.fail(format!(
                        "the request body argument body clashes with {other}"
                    )));
                }
                let schema = with_description(schema, body.get("description"));
                if body_required {
                    required.push(Value::String("body".to_owned()));
                }
                properties.insert("body".to_owned(), schema);
                params.push(ParamSpec {
                    name: "body".to_owned(),
                    location: ParamLocation::WholeBody,
                    wire_name: None,
                });
            }
        }
    }

    let mut input_schema = Map::new();
    input_schema.insert("type".to_owned(), Value::String("object".to_owned()));
    input_schema.insert("properties".to_owned(), Value::Object(properties));
    if !required.is_empty() {
        input_schema.insert("required".to_owned(), Value::Array(required));
    }
    if closed {
        input_schema.insert("additionalProperties".to_owned(), Value::Bool(false));
    }

    Ok(Some(ToolSpec {
        name,
        description: describe(operation, &label),
        downstream: downstream_name.to_owned(),
        method: method.to_ascii_uppercase(),
        route: path.to_owned(),
        input_schema: Some(Value::Object(input_schema)),
        params,
        allow_write: extension.allow_write,
        max_response_tokens: extension.max_response_tokens,
        over_limit: extension.over_limit,
        required_scopes: extension.required_scopes,
        category: extension.category,
    }))
}

fn location_word(location: ParamLocation) -> &'static str {
    match location {
        ParamLocation::Path => "path",
        ParamLocation::Query => "query",
        ParamLocation::Header => "header",
        ParamLocation::Body | ParamLocation::WholeBody => "body",
    }
}

/// A tool name for an operation without `operationId`: the method, then the path's words.
fn derive_name(method: &str, path: &str) -> String {
    let mut name = method.to_ascii_lowercase();
    for c in path.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let mut name = name.trim_end_matches('_').to_owned();
    name.truncate(128);
    name
}

/// The summary and the description, separated by a blank line; the label when neither exists.
fn describe(operation: &Map<String, Value>, label: &str) -> String {
    let text = |key: &str| {
        operation
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match (text("summary"), text("description")) {
        (Some(summary), Some(description)) if summary != description => {
            format!("{summary}\n\n{description}")
        }
        (Some(summary), _) => summary.to_owned(),
        (None, Some(description)) => description.to_owned(),
        (None, None) => label.to_owned(),
    }
}

/// Copies a parameter's description into its schema when the schema has none, so the model sees
/// it.
fn with_description(mut schema: Value, description: Option<&Value>) -> Value {
    if let (Value::Object(object), Some(Value::String(text))) = (&mut schema, description) {
        object
            .entry("description")
            .or_insert_with(|| Value::String(text.clone()));
    }
    schema
}

/// The schema of a request body's JSON media type.
fn json_body_schema(resolver: &Resolver<'_>, body: &Value) -> Result<Value> {
    let Some(Value::Object(content)) = body.get("content") else {
        return Err(resolver.fail("the request body has no content".to_owned()));
    };
    let is_json = |media: &str| {
        let essence = media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json" || essence.ends_with("+json")
    };
    let media = content
        .iter()
        .find(|(m, _)| m.split(';').next().map(str::trim) == Some("application/json"))
        .or_else(|| content.iter().find(|(m, _)| is_json(m)));
    let Some((_, media)) = media else {
        let types: Vec<&str> = content.keys().map(String::as_str).collect();
        return Err(resolver.fail(format!(
            "request body media types {} are not supported (only JSON)",
            crate::schema::shorten(&types.join(", "))
        )));
    };
    Ok(media
        .get("schema")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// The members of an object body that is flattened into arguments.
struct Members {
    properties: Vec<(String, Value)>,
    required: Vec<String>,
    /// Whether the body refuses other members (`additionalProperties: false`).
    closed: bool,
}

/// The properties of a body schema that is an object with properties (directly, or as an
/// `allOf` of such), or `None` when the body is taken whole. `readOnly` properties are left out.
fn object_members(schema: &Value) -> Option<Members> {
    // A free-form object (no properties at all) is sent whole.
    collect_members(schema).filter(|m| !m.properties.is_empty())
}

/// The members of an object schema, or of an `allOf` of object schemas.
fn collect_members(schema: &Value) -> Option<Members> {
    let Value::Object(object) = schema else {
        return None;
    };
    let typed_object = match object.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(_) => false,
        None => true,
    };
    if !typed_object {
        return None;
    }

    let mut members = Members {
        properties: Vec::new(),
        required: Vec::new(),
        closed: object.get("additionalProperties") == Some(&Value::Bool(false)),
    };
    if let Some(Value::Array(parts)) = object.get("allOf") {
        for part in parts {
            let part_members = collect_members(part)?;
            members.properties.extend(part_members.properties);
            members.required.extend(part_members.required);
        }
        // Each part's additionalProperties speaks only of that part; the whole stays open.
        members.closed = false;
    } else if object.contains_key("anyOf") || object.contains_key("oneOf") {
        return None;
    }

    if let Some(Value::Object(properties)) = object.get("properties") {
        for (name, property) in properties {
            if property.get("readOnly") == Some(&Value::Bool(true)) {
                continue;
            }
            if members.properties.iter().any(|(n, _)| n == name) {
                continue;
            }
            members.properties.push((name.clone(), property.clone()));
        }
    }
    if let Some(Value::Array(required)) = object.get("required") {
        members
            .required
            .extend(required.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    members
        .required
        .retain(|r| members.properties.iter().any(|(n, _)| n == r));
    Some(members)
}

/// Resolves local `$ref`s for one operation, with bounded depth and size.
struct Resolver<'a> {
    origin: &'a str,
    tool: &'a str,
    document: &'a Value,
    expanded: Cell<usize>,
}

impl<'a> Resolver<'a> {
    fn new(origin: &'a str, tool: &'a str, document: &'a Value) -> Resolver<'a> {
        Resolver {
            origin,
            tool,
            document,
            expanded: Cell::new(0),
        }
    }

    fn fail(&self, reason: String) -> CatalogError {
        CatalogError::Tool {
            origin: self.origin.to_owned(),
            tool: self.tool.to_owned(),
            reason,
        }
    }

    fn reference_error(&self, reference: &str, reason: &str) -> CatalogError {
        CatalogError::Reference {
            origin: self.origin.to_owned(),
            tool: self.tool.to_owned(),
            reference: crate::schema::shorten(reference),
            reason: reason.to_owned(),
        }
    }

    /// Follows a chain of `$ref`s (a parameter, request body or path item that is a reference)
    /// to the object it names.
    fn follow(&self, value: &'a Value) -> Result<&'a Value> {
        let mut current = value;
        let mut seen: Vec<&str> = Vec::new();
        while let Some(reference) = current.get("$ref").and_then(Value::as_str) {
            if seen.contains(&reference) {
                return Err(self.reference_error(reference, "the references form a cycle"));
            }
            if seen.len() >= MAX_DEPTH {
                return Err(self.reference_error(reference, "the references nest too deeply"));
            }
            seen.push(reference);
            current = self.lookup(reference)?;
        }
        Ok(current)
    }

    /// The value a local reference points at.
    fn lookup(&self, reference: &str) -> Result<&'a Value> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(self.reference_error(
                reference,
                "only local references (#/...) are supported; nothing is fetched",
            ));
        };
        let mut current = self.document;
        if pointer.is_empty() {
            return Ok(current);
        }
        let Some(pointer) = pointer.strip_prefix('/') else {
            return Err(self.reference_error(reference, "a local reference must start with #/"));
        };
        for token in pointer.split('/') {
            let token = percent_decode(token).replace("~1", "/").replace("~0", "~");
            current = match current {
                Value::Object(map) => map.get(&token),
                Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            }
            .ok_or_else(|| self.reference_error(reference, "the target does not exist"))?;
        }
        Ok(current)
    }

    /// A copy of a schema with every `$ref` replaced by its target, converted to plain JSON
    /// Schema for 3.0 documents.
    fn inline(&self, schema: &Value, version: Version) -> Result<Value> {
        let mut stack = Vec::new();
        let mut value = self.inline_value(schema, &mut stack, 0)?;
        if version == Version::V30 {
            convert_30(&mut value, 0);
        }
        Ok(value)
    }

    fn inline_value(&self, value: &Value, stack: &mut Vec<String>, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(self.fail("a schema nests too deeply (more than 64 levels)".to_owned()));
        }
        let count = self.expanded.get() + 1;
        self.expanded.set(count);
        if count > MAX_EXPANDED_VALUES {
            return Err(self.fail(
                "the schemas expand to more than 100000 values once references are inlined"
                    .to_owned(),
            ));
        }

        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    if stack.iter().any(|r| r == reference) {
                        return Err(self.reference_error(
                            reference,
                            "the references form a cycle (recursive schemas are not supported)",
                        ));
                    }
                    let target = self.lookup(reference)?;
                    stack.push(reference.clone());
                    let resolved = self.inline_value(target, stack, depth + 1)?;
                    stack.pop();

                    // Members beside `$ref` (a description, say) refine the target.
                    let mut resolved = resolved;
                    if let Value::Object(resolved) = &mut resolved {
                        for (key, member) in object {
                            if key != "$ref" {
                                resolved.insert(
                                    key.clone(),
                                    self.inline_value(member, stack, depth + 1)?,
                                );
                            }
                        }
                    }
                    return Ok(resolved);
                }
                let mut out = Map::new();
                for (key, member) in object {
                    let member = if DATA_KEYWORDS.contains(&key.as_str()) {
                        member.clone()
                    } else {
                        self.inline_value(member, stack, depth + 1)?
                    };
                    out.insert(key.clone(), member);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.inline_value(item, stack, depth + 1)?);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }
}

/// Rewrites OpenAPI 3.0 spellings into JSON Schema: `nullable` into a `null` type, boolean
/// exclusive bounds into numeric ones. Depth was bounded by inlining.
fn convert_30(value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(object) => {
            if object.remove("nullable") == Some(Value::Bool(true)) {
                match object.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = std::mem::take(t);
                        object.insert(
                            "type".to_owned(),
                            Value::Array(vec![Value::String(t), Value::String("null".to_owned())]),
                        );
                    }
                    Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
                        types.push(Value::String("null".to_owned()));
                    }
                    _ => {}
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                match object.get(flag) {
                    Some(Value::Bool(true)) => {
                        if let Some(limit) = object.remove(bound) {
                            object.insert(flag.to_owned(), limit);
                        } else {
                            object.remove(flag);
                        }
                    }
                    Some(Value::Bool(false)) => {
                        object.remove(flag);
                    }
                    _ => {}
                }
            }
            for (key, member) in object.iter_mut() {
                if !DATA_KEYWORDS.contains(&key.as_str()) {
                    convert_30(member, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                convert_30(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// Decodes `%XX` escapes in a reference token (references are URI fragments); invalid escapes
/// are kept as written.
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_from_method_and_path() {
        assert_eq!(
            derive_name("get", "/posts/{id}/comments"),
            "get_posts_id_comments"
        );
        assert_eq!(derive_name("post", "/"), "post");
        assert_eq!(derive_name("delete", "/a-b/c.d"), "delete_a_b_c_d");
    }

    #[test]
    fn reference_tokens_are_unescaped() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
    }

    #[test]
    fn openapi_30_nullable_and_boolean_bounds_become_json_schema() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "nullable": true, "minimum": 0, "exclusiveMinimum": true},
                "b": {"type": "number", "maximum": 9, "exclusiveMaximum": false},
            }
        });
        convert_30(&mut schema, 0);
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "a": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                    "b": {"type": "number", "maximum": 9},
                }
            })
        );
    }
}
