//! Argument validation against a tool's input schema (a JSON Schema subset).
//!
//! A tool's input schema is compiled once, when the catalog is loaded ([`CompiledSchema::compile`]),
//! so that a call only walks a prepared tree: patterns are compiled regexes, type names are bit
//! sets. The subset understood:
//!
//! - `type`: `string`, `integer`, `number`, `boolean`, `object`, `array`, `null`, or an array of
//!   them; OpenAPI 3.0's `nullable: true` adds `null`.
//! - objects: `properties`, `required`, `additionalProperties` (a boolean; a schema given there
//!   counts as `true`).
//! - any value: `enum`, `const`.
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, as in
//!   JSON Schema 2020-12 and OpenAPI 3.1, or booleans modifying `minimum`/`maximum`, as in
//!   OpenAPI 3.0).
//! - strings: `minLength`, `maxLength` (counted in Unicode scalar values), `pattern` (the `regex`
//!   crate's syntax, unanchored: no look-around or back-references).
//! - arrays: `items` (one schema for every item), `minItems`, `maxItems`.
//! - the boolean schemas `true` and `false`.
//!
//! Every other keyword (`format`, `allOf`, `oneOf`, `$ref`, `uniqueItems`, ...) is ignored, so
//! such a schema accepts more than its full reading would; the downstream still validates.
//!
//! Two decisions for real clients: an integer may arrive as a JSON number with a zero fraction
//! (`5.0` is an integer, as JSON Schema itself says), and a top-level argument whose value is
//! `null`, whose schema does not accept `null` and that is not required is treated as omitted
//! (models often send `null` for optional arguments). Strings are never coerced to numbers.
//!
//! Error messages name the argument (`title`, `address.city`, `tags[2]`) and the rule it broke;
//! they never repeat the value, and names the agent made up are shortened.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use regex::Regex;
use serde_json::{Map, Number, Value};

/// The deepest schema nesting that is compiled; deeper schemas are refused.
const MAX_SCHEMA_DEPTH: usize = 64;

/// The longest argument name or path quoted in an error message, in characters.
const MAX_NAME_IN_MESSAGE: usize = 64;

/// Why a tool call's arguments were refused, before anything was sent downstream.
///
/// These are the agent's errors (JSON-RPC invalid params), except
/// [`ArgumentError::Request`], which means the gateway could not assemble a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// A required argument is absent (or `null` where `null` is not allowed).
    #[error("missing required argument {0}")]
    Missing(String),

    /// An argument that the schema does not declare, where `additionalProperties` is false.
    #[error("unknown argument {0}")]
    Unknown(String),

    /// An argument breaks a rule of the schema, or cannot be placed where the tool puts it.
    #[error("argument {path} {reason}")]
    Invalid {
        /// The argument, with the path inside it (`address.city`, `tags[2]`).
        path: String,
        /// The rule it broke (`must be at most 100`).
        reason: String,
    },

    /// The downstream request could not be assembled.
    #[error("the downstream request could not be built")]
    Request(#[source] http::Error),
}

impl ArgumentError {
    /// An [`ArgumentError::Invalid`] for the argument path `path`.
    pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> ArgumentError {
        ArgumentError::Invalid {
            path: shorten(path),
            reason: reason.into(),
        }
    }
}

/// Why an input schema cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A keyword has a value of the wrong kind, or the schema is too deep.
    #[error("at {at}: {reason}")]
    Invalid {
        /// A JSON pointer to the offending place (`/properties/title/maxLength`).
        at: String,
        /// What is wrong.
        reason: String,
    },

    /// A `pattern` is not a valid regular expression for the `regex` crate.
    #[error("at {at}: invalid pattern")]
    Pattern {
        /// A JSON pointer to the pattern.
        at: String,
        /// The regex error.
        #[source]
        error: Box<regex::Error>,
    },
}

/// An input schema compiled for validation.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    root: Node,
}

/// A set of JSON types, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: Types = Types(1);
    const BOOLEAN: Types = Types(2);
    const INTEGER: Types = Types(4);
    const NUMBER: Types = Types(8);
    const STRING: Types = Types(16);
    const ARRAY: Types = Types(32);
    const OBJECT: Types = Types(64);

    fn from_name(name: &str) -> Option<Types> {
        Some(match name {
            "null" => Types::NULL,
            "boolean" => Types::BOOLEAN,
            "integer" => Types::INTEGER,
            "number" => Types::NUMBER,
            "string" => Types::STRING,
            "array" => Types::ARRAY,
            "object" => Types::OBJECT,
            _ => return None,
        })
    }

    fn contains(self, other: Types) -> bool {
        self.0 & other.0 == other.0
    }

    fn union(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    /// Whether `value` is of one of these types.
    fn accepts(self, value: &Value) -> bool {
        match value {
            Value::Null => self.contains(Types::NULL),
            Value::Bool(_) => self.contains(Types::BOOLEAN),
            Value::Number(n) => {
                self.contains(Types::NUMBER) || (self.contains(Types::INTEGER) && is_integer(n))
            }
            Value::String(_) => self.contains(Types::STRING),
            Value::Array(_) => self.contains(Types::ARRAY),
            Value::Object(_) => self.contains(Types::OBJECT),
        }
    }

    /// The type names, for an error message (`integer or null`).
    fn describe(self) -> String {
        let names = [
            (Types::STRING, "string"),
            (Types::INTEGER, "integer"),
            (Types::NUMBER, "number"),
            (Types::BOOLEAN, "boolean"),
            (Types::OBJECT, "object"),
            (Types::ARRAY, "array"),
            (Types::NULL, "null"),
        ];
        let present: Vec<&str> = names
            .iter()
            .filter(|(t, _)| self.contains(*t))
            .map(|(_, n)| *n)
            .collect();
        present.join(" or ")
    }
}

/// A numeric bound, inclusive or exclusive.
#[derive(Debug, Clone)]
struct Bound {
    limit: Number,
    exclusive: bool,
}

/// One compiled schema node.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The boolean schema `false`: nothing is valid.
    never: bool,
    types: Option<Types>,
    properties: BTreeMap<String, Node>,
    required: Vec<String>,
    additional_properties: bool,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    /// Lower bounds: `minimum` and a numeric `exclusiveMinimum` may both be present.
    minimum: Vec<Bound>,
    /// Upper bounds, likewise.
    maximum: Vec<Bound>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Regex>,
    items: Option<Box<Node>>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

impl crate::catalog::Tool {
    /// Checks a tool call's arguments against the tool's input schema, before anything is sent.
    ///
    /// # Errors
    ///
    /// The first [`ArgumentError`] found; see [`CompiledSchema::validate_arguments`].
    pub fn validate_arguments(&self, args: &Map<String, Value>) -> Result<(), ArgumentError> {
        self.compiled_schema.validate_arguments(args)
    }
}

impl CompiledSchema {
    /// Compiles a tool's input schema, whose root must be an object schema (a missing `type` is
    /// taken as `object`).
    ///
    /// # Errors
    ///
    /// [`SchemaError`] when a keyword of the subset has a value of the wrong kind, a pattern
    /// does not compile, the root is not an object schema, or the schema nests deeper than 64
    /// levels.
    pub fn compile(schema: &Value) -> Result<CompiledSchema, SchemaError> {
        let root = compile_node(schema, "", 0)?;
        if let Some(types) = root.types
            && types != Types::OBJECT
        {
            return Err(SchemaError::Invalid {
                at: "/type".to_owned(),
                reason: "the root of an input schema must have type object".to_owned(),
            });
        }
        Ok(CompiledSchema { root })
    }

    /// Checks a tool call's arguments.
    ///
    /// # Errors
    ///
    /// The first [`ArgumentError`] found: a missing required argument, an unknown one where
    /// unknown ones are refused, or an argument that breaks a rule.
    pub fn validate_arguments(&self, args: &Map<String, Value>) -> Result<(), ArgumentError> {
        validate_object(&self.root, args, "", true)
    }

    /// Whether the argument `name` counts as omitted: absent, or `null` where the schema does not
    /// accept `null` for it and it is not required.
    pub fn is_omitted(&self, name: &str, value: Option<&Value>) -> bool {
        match value {
            None => true,
            Some(Value::Null) => {
                !self.root.required.iter().any(|r| r == name)
                    && self
                        .root
                        .properties
                        .get(name)
                        .is_some_and(|p| !p.accepts_null())
            }
            Some(_) => false,
        }
    }

    /// Rewrites numbers with a zero fraction (`5.0`) into integers wherever the schema asks for
    /// an integer, inside the argument `name`.
    ///
    /// Validation accepts `5.0` as an integer; downstreams with typed models often do not.
    pub fn normalize_argument(&self, name: &str, value: &mut Value) {
        if let Some(node) = self.root.properties.get(name) {
            node.normalize(value);
        }
    }

    /// Whether the argument `name` is declared in the schema's `properties`.
    pub fn declares(&self, name: &str) -> bool {
        self.root.properties.contains_key(name)
    }

    /// Whether the schema lists `name` in its top-level `required`.
    pub fn requires(&self, name: &str) -> bool {
        self.root.required.iter().any(|r| r == name)
    }

    /// The names in the schema's top-level `properties`, in name order.
    pub fn property_names(&self) -> impl Iterator<Item = &str> {
        self.root.properties.keys().map(String::as_str)
    }

    /// Whether the schema refuses undeclared arguments (`additionalProperties: false`).
    pub fn refuses_unknown(&self) -> bool {
        !self.root.additional_properties
    }
}

impl Node {
    fn accepts_null(&self) -> bool {
        !self.never && self.types.is_none_or(|t| t.contains(Types::NULL))
    }

    fn normalize(&self, value: &mut Value) {
        match value {
            Value::Number(n) => {
                let wants_integer = self
                    .types
                    .is_some_and(|t| t.contains(Types::INTEGER) && !t.contains(Types::NUMBER));
                if wants_integer && let Some(i) = integral_i64(n) {
                    *value = Value::Number(i.into());
                }
            }
            Value::Object(map) => {
                for (key, member) in map.iter_mut() {
                    if let Some(node) = self.properties.get(key) {
                        node.normalize(member);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(node) = &self.items {
                    for item in items {
                        node.normalize(item);
                    }
                }
            }
            _ => {}
        }
    }
}

fn compile_node(schema: &Value, at: &str, depth: usize) -> Result<Node, SchemaError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(invalid(at, "the schema nests too deeply"));
    }
    let object = match schema {
        Value::Bool(true) => {
            return Ok(Node {
                additional_properties: true,
                ..Node::default()
            });
        }
        Value::Bool(false) => {
            return Ok(Node {
                never: true,
                ..Node::default()
            });
        }
        Value::Object(object) => object,
        _ => return Err(invalid(at, "a schema must be an object or a boolean")),
    };

    let mut node = Node {
        additional_properties: true,
        ..Node::default()
    };

    node.types = match object.get("type") {
        None => None,
        Some(Value::String(name)) => Some(type_from_name(name, &format!("{at}/type"))?),
        Some(Value::Array(names)) => {
            let mut types = Types(0);
            for (i, name) in names.iter().enumerate() {
                let here = format!("{at}/type/{i}");
                let Value::String(name) = name else {
                    return Err(invalid(&here, "a type must be a string"));
                };
                types = types.union(type_from_name(name, &here)?);
            }
            Some(types)
        }
        Some(_) => {
            return Err(invalid(
                &format!("{at}/type"),
                "type must be a string or an array",
            ));
        }
    };
    if object.get("nullable") == Some(&Value::Bool(true)) {
        node.types = node.types.map(|t| t.union(Types::NULL));
    }

    if let Some(properties) = object.get("properties") {
        let Value::Object(properties) = properties else {
            return Err(invalid(
                &format!("{at}/properties"),
                "properties must be an object",
            ));
        };
        for (name, sub) in properties {
            let here = format!("{at}/properties/{}", escape_pointer(name));
            node.properties
                .insert(name.clone(), compile_node(sub, &here, depth + 1)?);
        }
    }
    if let Some(required) = object.get("required") {
        let here = format!("{at}/required");
        let Value::Array(required) = required else {
            return Err(invalid(&here, "required must be an array of strings"));
        };
        for name in required {
            let Value::String(name) = name else {
                return Err(invalid(&here, "required must be an array of strings"));
            };
            node.required.push(name.clone());
        }
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(false)) => node.additional_properties = false,
        Some(Value::Bool(true) | Value::Object(_)) | None => {}
        Some(_) => {
            return Err(invalid(
                &format!("{at}/additionalProperties"),
                "additionalProperties must be a boolean or a schema",
            ));
        }
    }

    if let Some(values) = object.get("enum") {
        let Value::Array(values) = values else {
            return Err(invalid(&format!("{at}/enum"), "enum must be an array"));
        };
        node.enumeration = Some(values.clone());
    }
    node.constant = object.get("const").cloned();

    node.minimum = bound(object, "minimum", "exclusiveMinimum", at)?;
    node.maximum = bound(object, "maximum", "exclusiveMaximum", at)?;

    node.min_length = count(object, "minLength", at)?;
    node.max_length = count(object, "maxLength", at)?;
    if let Some(pattern) = object.get("pattern") {
        let here = format!("{at}/pattern");
        let Value::String(pattern) = pattern else {
            return Err(invalid(&here, "pattern must be a string"));
        };
        let regex = Regex::new(pattern).map_err(|error| SchemaError::Pattern {
            at: here,
            error: Box::new(error),
        })?;
        node.pattern = Some(regex);
    }

    match object.get("items") {
        None => {}
        // The tuple form (an array of schemas) is not part of the subset.
        Some(Value::Array(_)) => {}
        Some(items) => {
            let here = format!("{at}/items");
            node.items = Some(Box::new(compile_node(items, &here, depth + 1)?));
        }
    }
    node.min_items = count(object, "minItems", at)?;
    node.max_items = count(object, "maxItems", at)?;

    Ok(node)
}

fn type_from_name(name: &str, at: &str) -> Result<Types, SchemaError> {
    Types::from_name(name).ok_or_else(|| invalid(at, format!("unknown type {name:?}")))
}

fn invalid(at: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        at: if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        },
        reason: reason.into(),
    }
}

fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Reads the bounds on one side in both spellings: `exclusiveMinimum: 5` (beside an optional
/// `minimum`, both apply), or `minimum: 5` with `exclusiveMinimum: true`.
fn bound(
    object: &Map<String, Value>,
    inclusive_key: &str,
    exclusive_key: &str,
    at: &str,
) -> Result<Vec<Bound>, SchemaError> {
    let inclusive = match object.get(inclusive_key) {
        None => None,
        Some(Value::Number(n)) => Some(n.clone()),
        Some(_) => {
            return Err(invalid(
                &format!("{at}/{inclusive_key}"),
                format!("{inclusive_key} must be a number"),
            ));
        }
    };
    match object.get(exclusive_key) {
        None | Some(Value::Bool(false)) => Ok(inclusive
            .map(|limit| Bound {
                limit,
                exclusive: false,
            })
            .into_iter()
            .collect()),
        Some(Value::Bool(true)) => Ok(inclusive
            .map(|limit| Bound {
                limit,
                exclusive: true,
            })
            .into_iter()
            .collect()),
        Some(Value::Number(n)) => {
            let exclusive = Bound {
                limit: n.clone(),
                exclusive: true,
            };
            let inclusive = inclusive.map(|limit| Bound {
                limit,
                exclusive: false,
            });
            Ok(inclusive.into_iter().chain([exclusive]).collect())
        }
        Some(_) => Err(invalid(
            &format!("{at}/{exclusive_key}"),
            format!("{exclusive_key} must be a number or a boolean"),
        )),
    }
}

fn count(object: &Map<String, Value>, key: &str, at: &str) -> Result<Option<u64>, SchemaError> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match integral_u64(n) {
            Some(n) => Ok(Some(n)),
            None => Err(invalid(
                &format!("{at}/{key}"),
                format!("{key} must be a non-negative integer"),
            )),
        },
        Some(_) => Err(invalid(
            &format!("{at}/{key}"),
            format!("{key} must be a non-negative integer"),
        )),
    }
}

fn validate_object(
    node: &Node,
    map: &Map<String, Value>,
    path: &str,
    top_level: bool,
) -> Result<(), ArgumentError> {
    for name in &node.required {
        let present = match map.get(name) {
            None => false,
            // At the top level a `null` for an argument that cannot be null counts as missing.
            Some(Value::Null) if top_level => {
                node.properties.get(name).is_none_or(|p| p.accepts_null())
            }
            Some(_) => true,
        };
        if !present {
            return Err(ArgumentError::Missing(shorten(&join(path, name))));
        }
    }

    for (name, value) in map {
        let member_path = join(path, name);
        match node.properties.get(name) {
            Some(sub) => {
                if top_level && value.is_null() && !sub.accepts_null() {
                    // Treated as omitted (it is not required, or the loop above had failed).
                    continue;
                }
                validate_value(sub, value, &member_path)?;
            }
            None if !node.additional_properties => {
                return Err(ArgumentError::Unknown(shorten(&member_path)));
            }
            None => {}
        }
    }
    Ok(())
}

fn validate_value(node: &Node, value: &Value, path: &str) -> Result<(), ArgumentError> {
    if node.never {
        return Err(ArgumentError::invalid(path, "is not allowed"));
    }
    if let Some(types) = node.types
        && !types.accepts(value)
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must be {}, not {}", types.describe(), kind(value)),
        ));
    }
    if let Some(constant) = &node.constant
        && !json_equal(constant, value)
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must be {}", quote_allowed(std::slice::from_ref(constant))),
        ));
    }
    if let Some(values) = &node.enumeration
        && !values.iter().any(|v| json_equal(v, value))
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must be one of {}", quote_allowed(values)),
        ));
    }

    match value {
        Value::Number(n) => check_number(node, n, path),
        Value::String(s) => check_string(node, s, path),
        Value::Array(items) => check_array(node, items, path),
        Value::Object(map) => validate_object(node, map, path, false),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

fn check_number(node: &Node, n: &Number, path: &str) -> Result<(), ArgumentError> {
    for min in &node.minimum {
        let order = compare_numbers(n, &min.limit);
        let below = match order {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => min.exclusive,
            Some(Ordering::Greater) => false,
            None => true,
        };
        if below {
            let rule = if min.exclusive {
                "greater than"
            } else {
                "at least"
            };
            return Err(ArgumentError::invalid(
                path,
                format!("must be {rule} {}", min.limit),
            ));
        }
    }
    for max in &node.maximum {
        let order = compare_numbers(n, &max.limit);
        let above = match order {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => max.exclusive,
            Some(Ordering::Less) => false,
            None => true,
        };
        if above {
            let rule = if max.exclusive {
                "less than"
            } else {
                "at most"
            };
            return Err(ArgumentError::invalid(
                path,
                format!("must be {rule} {}", max.limit),
            ));
        }
    }
    Ok(())
}

fn check_string(node: &Node, s: &str, path: &str) -> Result<(), ArgumentError> {
    if node.min_length.is_some() || node.max_length.is_some() {
        let length = s.chars().count() as u64;
        if let Some(min) = node.min_length
            && length < min
        {
            return Err(ArgumentError::invalid(
                path,
                format!("must be at least {min} characters long"),
            ));
        }
        if let Some(max) = node.max_length
            && length > max
        {
            return Err(ArgumentError::invalid(
                path,
                format!("must be at most {max} characters long"),
            ));
        }
    }
    if let Some(pattern) = &node.pattern
        && !pattern.is_match(s)
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must match the pattern {}", shorten(pattern.as_str())),
        ));
    }
    Ok(())
}

fn check_array(node: &Node, items: &[Value], path: &str) -> Result<(), ArgumentError> {
    let length = items.len() as u64;
    if let Some(min) = node.min_items
        && length < min
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must have at least {min} items"),
        ));
    }
    if let Some(max) = node.max_items
        && length > max
    {
        return Err(ArgumentError::invalid(
            path,
            format!("must have at most {max} items"),
        ));
    }
    if let Some(item_node) = &node.items {
        for (i, item) in items.iter().enumerate() {
            validate_value(item_node, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if is_integer(n) => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The allowed values of an `enum` or `const`, quoted for a message, cut short when long.
fn quote_allowed(values: &[Value]) -> String {
    let mut text = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{value}");
        if text.chars().count() > 200 {
            return format!("{}... (the schema's enum)", shorten(&text));
        }
    }
    text
}

/// A name or path as it may appear in a message: at most 64 characters, control characters
/// replaced, since argument names come from the agent.
pub(crate) fn shorten(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_NAME_IN_MESSAGE)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > MAX_NAME_IN_MESSAGE {
        out.push_str("...");
    }
    out
}

/// Whether a JSON number is an integer, including floats with a zero fraction (`5.0`).
fn is_integer(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// The value of an integral number as an `i64`, where it fits exactly.
pub(crate) fn integral_i64(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // 2^53: beyond it a float no longer stands for one integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT {
        Some(f as i64)
    } else {
        None
    }
}

fn integral_u64(n: &Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    integral_i64(n).and_then(|i| u64::try_from(i).ok())
}

/// Compares two JSON numbers exactly when both are integers, else as floats.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let as_i128 = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (as_i128(a), as_i128(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// JSON equality where `5` and `5.0` are equal, as JSON Schema's `enum` and `const` require.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
