//! A short fuzz run of the parsers that read what others wrote: the JSON-RPC request parser
//! (agents' bodies) and the catalog loaders (manifests, OpenAPI documents, discovery answers).
//!
//! Each property feeds arbitrary bytes, arbitrary JSON values, or values shaped like the real
//! format with arbitrary parts, and asserts that nothing panics and that the answers keep their
//! documented invariants. The number of cases per property is `PROPTEST_CASES` (default 256),
//! so `PROPTEST_CASES=20000 cargo test -p ithil-proxy --test fuzz --release` is a longer run.
//! Inputs that once broke a parser are kept below as named regression tests.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

use ithil_proxy::catalog::{self, Catalog, LoadOptions, discovery, openapi};
use ithil_proxy::mcp::jsonrpc::{self, DEFAULT_MAX_DEPTH, Message, Payload};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Findings become the named regression tests below instead of files beside the source.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings that mean something to one of the formats, and some that mean trouble.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2.0".to_owned()),
        Just("3.0.3".to_owned()),
        Just("3.1.0".to_owned()),
        Just("2.0.0".to_owned()),
        Just("tools/call".to_owned()),
        Just("notifications/cancelled".to_owned()),
        Just("#/components/schemas/A".to_owned()),
        Just("#/components/schemas/B".to_owned()),
        Just("#/components/parameters/P".to_owned()),
        Just("#/paths".to_owned()),
        Just("#/".to_owned()),
        Just("#".to_owned()),
        Just("/posts/{id}".to_owned()),
        Just("/{a}/{b}".to_owned()),
        Just("/a//b".to_owned()),
        Just("/../x".to_owned()),
        Just("{id}".to_owned()),
        Just("http://127.0.0.1:1".to_owned()),
        Just("https://[::1]:9/p".to_owned()),
        Just("http://".to_owned()),
        Just("GET".to_owned()),
        Just("post".to_owned()),
        Just("object".to_owned()),
        Just("string".to_owned()),
        Just("integer".to_owned()),
        Just("number".to_owned()),
        Just("array".to_owned()),
        Just("boolean".to_owned()),
        Just("null".to_owned()),
        Just("path".to_owned()),
        Just("query".to_owned()),
        Just("header".to_owned()),
        Just("body".to_owned()),
        Just("wholeBody".to_owned()),
        Just("${env:X}".to_owned()),
        Just("${".to_owned()),
        Just("id".to_owned()),
        Just("date-time".to_owned()),
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("é\u{301}ü🦀".to_owned()),
        Just("x".repeat(300)),
        "[a-zA-Z0-9_./{}$#-]{0,12}",
        any::<String>(),
    ]
}

/// Object keys of every format the tests parse, and arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "jsonrpc", "id", "method", "params", "result", "error", "name", "arguments",
            "requestId", "openapi", "swagger", "info", "servers", "url", "variables", "paths",
            "components", "schemas", "parameters", "requestBody", "responses", "content",
            "application/json", "schema", "$ref", "operationId", "summary", "description",
            "get", "post", "put", "delete", "patch", "in", "required", "type", "properties",
            "items", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern",
            "format", "oneOf", "anyOf", "allOf", "additionalProperties", "nullable", "default",
            "downstreams", "tools", "baseUrl", "route", "inputSchema", "downstream", "wireName",
            "allowWrite", "maxResponseTokens", "overLimit", "requiredScopes", "headers",
            "connectTimeoutMs", "requestTimeoutMs", "maxResponseBytes", "category", "$schema",
            "x-ithil", "tags",
        ])
        .prop_map(str::to_owned),
        1 => word(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1e300)),
        word().prop_map(Value::String),
    ]
}

/// Arbitrary JSON, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with some of `keys` set to arbitrary values, and perhaps an arbitrary extra member.
fn object_with(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((prop::sample::select(keys), value()), 0..keys.len() + 1),
        prop::option::of((key(), value())),
    )
        .prop_map(|(members, extra)| {
            let mut map: Map<String, Value> = members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if let Some((k, v)) = extra {
                map.insert(k, v);
            }
            Value::Object(map)
        })
}

/// A JSON Schema of the subset the gateway compiles, with arbitrary parts.
fn schema() -> impl Strategy<Value = Value> {
    let simple = prop_oneof![
        object_with(&["type", "minimum", "maximum", "enum", "format", "pattern"]),
        prop::sample::select(vec![
            "string", "integer", "number", "boolean", "array", "null"
        ])
        .prop_map(|t| json!({ "type": t })),
        Just(json!({ "$ref": "#/components/schemas/A" })),
        Just(json!({ "$ref": "#/components/schemas/B" })),
        Just(json!({ "$ref": "#/components/schemas/Missing" })),
        value(),
    ];
    simple.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                prop::collection::btree_map(word(), inner.clone(), 0..4),
                prop::collection::vec(word(), 0..3),
            )
                .prop_map(|(props, required)| {
                    json!({
                        "type": "object",
                        "properties": props.into_iter().collect::<Map<_, _>>(),
                        "required": required,
                    })
                }),
            inner
                .clone()
                .prop_map(|items| json!({ "type": "array", "items": items })),
            prop::collection::vec(inner, 1..3).prop_map(|alts| json!({ "oneOf": alts })),
        ]
    })
}

/// A valid tool or operation name, usually; sometimes anything.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-zA-Z][a-zA-Z0-9_.-]{0,10}", 1 => word()]
}

/// A route that loads, usually, with the schema that declares its parameters.
fn route_and_schema() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        3 => (
            prop::sample::select(vec!["/posts/{id}", "/users/{id}/posts", "/{id}"]),
            schema(),
        )
            .prop_map(|(route, extra)| {
                let schema = json!({
                    "type": "object",
                    "properties": { "id": { "type": "integer" }, "x": extra },
                    "required": ["id"],
                });
                (route.to_owned(), schema)
            }),
        2 => (prop::sample::select(vec!["/posts", "/", "/a/b"]), schema())
            .prop_map(|(route, s)| (route.to_owned(), s)),
        1 => (word(), schema()),
    ]
}

/// Members that are absent more often than not, so that most tools stay loadable.
fn sometimes(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![3 => Just(json!({})), 1 => object_with(keys)]
}

/// A manifest: a downstream and some tools, each with arbitrary parts.
fn manifest() -> impl Strategy<Value = Value> {
    let downstream = prop_oneof![
        3 => Just(json!({ "baseUrl": "http://127.0.0.1:5200" })),
        1 => word().prop_map(|url| json!({ "baseUrl": url })),
        1 => object_with(&[
            "baseUrl",
            "connectTimeoutMs",
            "requestTimeoutMs",
            "maxResponseBytes",
            "headers",
        ]),
    ];
    let method = prop_oneof![
        3 => prop::sample::select(vec!["GET", "POST", "put", "DELETE"]).prop_map(str::to_owned),
        1 => word(),
    ];
    let params = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(object_with(&["name", "in", "wireName"]), 1..3),
        1 => prop::sample::select(vec!["path", "query", "header", "body", "wholeBody"])
            .prop_map(|location| vec![json!({ "name": "x", "in": location })]),
    ];
    let tool = (
        name(),
        prop::sample::select(vec!["d", "d", "d", "other"]),
        method,
        route_and_schema(),
        params,
        sometimes(&[
            "allowWrite",
            "maxResponseTokens",
            "overLimit",
            "requiredScopes",
            "description",
            "category",
        ]),
    )
        .prop_map(|(name, ds, method, (route, schema), params, rest)| {
            let mut tool = json!({
                "name": name,
                "downstream": ds,
                "method": method,
                "route": route,
                "inputSchema": schema,
                "params": params,
            });
            if let (Value::Object(tool), Value::Object(rest)) = (&mut tool, rest) {
                tool.extend(rest);
            }
            tool
        });
    (
        downstream,
        prop::collection::vec(tool, 0..4),
        prop::option::weighted(0.2, (key(), value())),
    )
        .prop_map(|(ds, tools, extra)| {
            let mut doc = json!({ "downstreams": { "d": ds }, "tools": tools });
            if let (Some((k, v)), Value::Object(map)) = (extra, &mut doc) {
                map.insert(k, v);
            }
            doc
        })
}

/// An OpenAPI document with operations, parameters, bodies and `$ref`s, cycles included.
fn openapi_document() -> impl Strategy<Value = Value> {
    let parameter = prop_oneof![
        3 => Just(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } })),
        2 => (
            prop_oneof![name(), word()],
            prop::sample::select(vec!["query", "header", "path", "cookie", "body"]),
            any::<bool>(),
            schema(),
        )
            .prop_map(|(name, location, required, s)| {
                json!({ "name": name, "in": location, "required": required, "schema": s })
            }),
        1 => Just(json!({ "$ref": "#/components/parameters/P" })),
        1 => value(),
    ];
    let operation = (
        prop::option::of(name()),
        prop::collection::vec(parameter.clone(), 0..4),
        prop::option::of(schema()),
    )
        .prop_map(|(id, params, body)| {
            let mut op = json!({ "parameters": params, "responses": { "200": {} } });
            if let Some(id) = id {
                op["operationId"] = Value::String(id);
            }
            if let Some(body) = body {
                op["requestBody"] =
                    json!({ "content": { "application/json": { "schema": body } } });
            }
            op
        });
    let path_item = prop::collection::btree_map(
        prop::sample::select(vec![
            "get", "post", "put", "delete", "patch", "head", "trace",
        ]),
        operation,
        1..3,
    );
    let path = prop_oneof![
        3 => prop::sample::select(vec!["/posts/{id}", "/posts", "/a/{id}/b"]).prop_map(str::to_owned),
        1 => word(),
    ];
    (
        prop::sample::select(vec!["3.0.3", "3.1.0", "3.0.3", "3.1.0", "3.0", "2.0", "4.0.0"]),
        prop::sample::select(vec![
            json!([{ "url": "http://127.0.0.1:5200" }]),
            json!([{ "url": "http://127.0.0.1:5200" }]),
            json!([{ "url": "http://127.0.0.1:5200" }]),
            json!([{ "url": "/relative" }]),
            json!([{ "url": "http://{host}:5200", "variables": { "host": { "default": "127.0.0.1" } } }]),
            json!([]),
            json!("not a list"),
        ]),
        prop::collection::btree_map(path, path_item, 0..4),
        schema(),
        schema(),
        parameter,
    )
        .prop_map(|(version, servers, paths, a, b, p)| {
            let paths: Map<String, Value> = paths
                .into_iter()
                .map(|(path, item)| {
                    let item: Map<String, Value> =
                        item.into_iter().map(|(m, op)| (m.to_owned(), op)).collect();
                    (path, Value::Object(item))
                })
                .collect();
            json!({
                "openapi": version,
                "info": { "title": "fuzz", "version": "1" },
                "servers": servers,
                "paths": paths,
                "components": {
                    "schemas": { "A": a, "B": b },
                    "parameters": { "P": p },
                },
            })
        })
}

/// Arguments for a tool: arbitrary, or shaped like the generated tools' schemas want them.
fn arguments() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => value(),
        2 => (prop_oneof![any::<i64>().prop_map(Value::from), leaf()], value())
            .prop_map(|(id, x)| json!({ "id": id, "x": x })),
    ]
}

/// How deep arrays and objects nest in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Exercises every tool of a part that loaded: validation and request building on arbitrary
/// arguments must answer, never panic.
fn exercise(part: catalog::CatalogPart, args: &Value) {
    let Ok(catalog) = Catalog::merge([part]) else {
        return;
    };
    let args = match args {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = Map::new();
            map.insert("id".into(), other.clone());
            map
        }
    };
    for tool in catalog.tools.values() {
        if tool.validate_arguments(&args).is_ok()
            && let Some(ds) = catalog.downstream_of(tool)
        {
            let _ = tool.build_request(ds, &args, "0123456789abcdef");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_json_rpc_parser_answers_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = jsonrpc::parse(&bytes, DEFAULT_MAX_DEPTH);
    }

    #[test]
    fn the_json_rpc_parser_answers_any_json_and_keeps_its_shape(v in value()) {
        let body = serde_json::to_vec(&v).unwrap();
        let parsed = jsonrpc::parse(&body, DEFAULT_MAX_DEPTH);
        match (&v, parsed) {
            (Value::Object(_), Ok(Payload::Single(_))) => {}
            (Value::Array(items), Ok(Payload::Batch(parsed))) => {
                prop_assert_eq!(items.len(), parsed.len());
            }
            (Value::Array(items), Err(jsonrpc::ParseError::EmptyBatch)) => {
                prop_assert!(items.is_empty());
            }
            (Value::Object(_) | Value::Array(_), other) => {
                prop_assert!(false, "{} gave {:?}", v, other);
            }
            (_, other) => prop_assert_eq!(other, Err(jsonrpc::ParseError::NotAMessage)),
        }
    }

    #[test]
    fn well_formed_requests_keep_their_id_and_method(
        id in prop_oneof![any::<i64>().prop_map(Value::from), word().prop_map(Value::String)],
        method in word(),
        params in prop::option::of(prop_oneof![
            object_with(&["name", "arguments", "requestId"]),
            prop::collection::vec(leaf(), 0..3).prop_map(Value::Array),
        ]),
    ) {
        let mut msg = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if let Some(p) = &params {
            msg["params"] = p.clone();
        }
        let body = serde_json::to_vec(&msg).unwrap();
        prop_assume!(depth(&msg) <= DEFAULT_MAX_DEPTH);
        match jsonrpc::parse(&body, DEFAULT_MAX_DEPTH) {
            Ok(Payload::Single(Ok(Message::Request(r)))) => {
                prop_assert_eq!(r.id.to_value(), id);
                prop_assert_eq!(r.method, method);
                prop_assert_eq!(r.params, params);
            }
            other => prop_assert!(false, "{} gave {:?}", msg, other),
        }
    }

    #[test]
    fn the_depth_bound_refuses_exactly_the_documents_nested_past_it(
        levels in prop::collection::vec(any::<bool>(), 1..160),
        noise in "[\\[\\]{}\"\\\\a-z]{0,16}",
    ) {
        // `levels` picks array or object for each level; the innermost value is a string of
        // brackets and quotes, which must not count.
        let mut v = Value::String(noise);
        for object in levels.iter().rev() {
            v = if *object { json!({ "k": v }) } else { json!([v]) };
        }
        let body = serde_json::to_vec(&v).unwrap();
        let parsed = jsonrpc::parse(&body, DEFAULT_MAX_DEPTH);
        if levels.len() > DEFAULT_MAX_DEPTH {
            prop_assert_eq!(parsed, Err(jsonrpc::ParseError::TooDeep { max: DEFAULT_MAX_DEPTH }));
        } else {
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
        }
    }

    #[test]
    fn the_catalog_loaders_answer_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let options = LoadOptions::default();
        let _ = catalog::load_manifest("fuzz.json", &bytes, &options);
        let _ = catalog::load_slice("fuzz.json", "fuzz", &bytes, &options);
        let _ = discovery::parse("fuzz", &bytes);
    }

    #[test]
    fn the_catalog_loaders_answer_any_json(v in value()) {
        let options = LoadOptions::default();
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = catalog::load_manifest("fuzz.json", &bytes, &options);
        let _ = catalog::load_slice("fuzz.json", "fuzz", &bytes, &options);
        let _ = discovery::parse("fuzz", &bytes);
        let _ = openapi::import("fuzz.json", "fuzz", &v, &options);
    }

    #[test]
    fn manifest_shaped_documents_load_or_fail_and_their_tools_answer(
        doc in manifest(),
        args in arguments(),
    ) {
        let options = LoadOptions::default().with_env(|name| (name == "X").then(|| "v".to_owned()));
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Ok(part) = catalog::load_manifest("fuzz.json", &bytes, &options) {
            exercise(part, &args);
        }
    }

    #[test]
    fn openapi_shaped_documents_import_or_fail_and_their_tools_answer(
        doc in openapi_document(),
        args in arguments(),
    ) {
        let options = LoadOptions::default();
        let _ = openapi::import("fuzz.json", "fuzz", &doc, &options);
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Ok(part) = catalog::load_slice("fuzz.json", "fuzz", &bytes, &options) {
            exercise(part, &args);
        }
    }

    #[test]
    fn discovery_shaped_answers_parse_or_fail(
        entries in prop::collection::vec(
            object_with(&["name", "method", "route", "inputSchema", "params", "description"]),
            0..4,
        ),
    ) {
        let bytes = serde_json::to_vec(&entries).unwrap();
        let _ = discovery::parse("fuzz", &bytes);
    }
}

// Regression tests: inputs the properties above found, fixed, and kept.

/// Found by `well_formed_requests_keep_their_id_and_method`: serde_json's default float parser
/// read `-120118.72687275823` as `-120118.72687275824`, so an agent's argument would have reached
/// its downstream changed in the last digit. The workspace now builds serde_json with
/// `float_roundtrip`.
#[test]
fn the_argument_minus_120118_72687275823_is_parsed_exactly() {
    let body = br#"{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":[[-120118.72687275823]]}}"#;
    let Ok(Payload::Single(Ok(Message::Request(request)))) = jsonrpc::parse(body, 64) else {
        panic!("a well-formed request");
    };
    let parsed = request.params.unwrap()["name"][0][0].as_f64().unwrap();
    assert_eq!(parsed.to_bits(), (-120_118.726_872_758_23_f64).to_bits());
}
