//! The manifest format and the bundled example.

use std::error::Error as _;

use ithil_proxy::catalog::{
    Catalog, CatalogError, LoadOptions, OverLimit, ParamLocation, Tool, load_file,
};
use serde_json::{Value, json};

use crate::support::{catalog, example_manifest, load, load_with, object};

fn one_tool(tool: Value) -> Value {
    json!({
        "downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200"}},
        "tools": [tool],
    })
}

#[test]
fn bundled_example_describes_the_placeholder_api() {
    let part = load_file(example_manifest(), &LoadOptions::default()).unwrap();
    let catalog = Catalog::merge([part]).unwrap();

    let downstream = catalog.downstream("placeholder").unwrap();
    assert_eq!(downstream.base_url.to_string(), "http://127.0.0.1:5200/");

    let names: Vec<&str> = catalog.tools.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "createPost",
            "getPost",
            "getTodo",
            "getUser",
            "listComments",
            "listPostComments",
            "listPosts",
            "listUserTodos",
            "listUsers",
        ]
    );
    for tool in catalog.tools.values() {
        assert_eq!(tool.downstream, "placeholder");
        assert_eq!(tool.writes(), tool.name == "createPost", "{}", tool.name);
    }

    let create = catalog.tool("createPost").unwrap();
    assert!(create.allow_write);
    assert_eq!(create.required_scopes, ["posts:write"]);
    let args = object(json!({"userId": 1, "title": "t", "body": "b"}));
    create.validate_arguments(&args).unwrap();
    let request = create.build_request(downstream, &args, "t").unwrap();
    assert_eq!(request.uri().to_string(), "http://127.0.0.1:5200/posts");

    let get = catalog.tool("getPost").unwrap();
    let request = get
        .build_request(downstream, &object(json!({"id": 1})), "t")
        .unwrap();
    assert_eq!(request.uri().to_string(), "http://127.0.0.1:5200/posts/1");
}

#[test]
fn defaults_apply_to_a_minimal_tool() {
    let catalog = catalog(one_tool(json!({
        "name": "getThing", "downstream": "api", "method": "get", "route": "things/{id}",
        "inputSchema": {"properties": {"id": {"type": "string"}, "q": {"type": "string"}}, "required": ["id"]}
    })))
    .unwrap();
    let tool = catalog.tool("getThing").unwrap();
    assert_eq!(tool.method, http::Method::GET);
    assert_eq!(tool.route.to_string(), "/things/{id}");
    assert!(!tool.allow_write);
    assert_eq!(tool.max_response_tokens, Tool::DEFAULT_MAX_RESPONSE_TOKENS);
    assert_eq!(tool.over_limit, OverLimit::Truncate);
    assert!(tool.required_scopes.is_empty());
    assert_eq!(tool.category, None);
    assert_eq!(tool.description, "");
    assert_eq!(tool.input_schema["type"], json!("object"));
    let places: Vec<(&str, ParamLocation)> = tool
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.location))
        .collect();
    assert_eq!(
        places,
        [("id", ParamLocation::Path), ("q", ParamLocation::Query)]
    );

    let downstream = catalog.downstream("api").unwrap();
    assert_eq!(
        downstream.connect_timeout,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        downstream.request_timeout,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(downstream.max_response_bytes, 10 * 1024 * 1024);
}

#[test]
fn unplaced_properties_of_writing_methods_go_in_the_body() {
    let catalog = catalog(one_tool(json!({
        "name": "put", "downstream": "api", "method": "PUT", "route": "/x",
        "inputSchema": {"properties": {"a": {}, "b": {}}},
        "params": [{"name": "b", "in": "query"}]
    })))
    .unwrap();
    let tool = catalog.tool("put").unwrap();
    let places: Vec<(&str, ParamLocation)> = tool
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.location))
        .collect();
    assert_eq!(
        places,
        [("b", ParamLocation::Query), ("a", ParamLocation::Body)]
    );
}

#[test]
fn governance_fields_and_downstream_settings_are_read() {
    let catalog = catalog(json!({
        "downstreams": {"api": {
            "baseUrl": "https://localhost:8443/v2",
            "connectTimeoutMs": 250, "requestTimeoutMs": 1500, "maxResponseBytes": 4096
        }},
        "tools": [{
            "name": "dropAll", "description": "Danger.", "downstream": "api", "method": "DELETE",
            "route": "/", "allowWrite": true, "maxResponseTokens": 10, "overLimit": "reject",
            "requiredScopes": ["admin:all", "danger"], "category": "Admin"
        }]
    }))
    .unwrap();
    let tool = catalog.tool("dropAll").unwrap();
    assert!(tool.allow_write && tool.writes());
    assert_eq!(tool.max_response_tokens, 10);
    assert_eq!(tool.over_limit, OverLimit::Reject);
    assert_eq!(tool.required_scopes, ["admin:all", "danger"]);
    assert_eq!(tool.category.as_deref(), Some("Admin"));
    let downstream = catalog.downstream("api").unwrap();
    assert_eq!(downstream.connect_timeout.as_millis(), 250);
    assert_eq!(downstream.request_timeout.as_millis(), 1500);
    assert_eq!(downstream.max_response_bytes, 4096);
    let request = tool
        .build_request(downstream, &serde_json::Map::new(), "t")
        .unwrap();
    assert_eq!(request.uri().to_string(), "https://localhost:8443/v2");
}

#[test]
fn misspelled_members_are_load_errors() {
    for document in [
        json!({"tools": [], "downstream": {}}),
        json!({"downstreams": {"api": {"baseUrl": "http://127.0.0.1", "timeoutMs": 1}}}),
        one_tool(
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/",
            "allowwrite": true}),
        ),
        one_tool(
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/",
            "params": [{"name": "x", "in": "query", "as": "y"}]}),
        ),
        one_tool(
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/",
            "overLimit": "drop"}),
        ),
    ] {
        let error = load(document.clone()).unwrap_err();
        let named = match &error {
            CatalogError::Parse { .. } => true,
            CatalogError::ToolDefinition { tool, .. } => tool == "a",
            CatalogError::DownstreamDefinition { downstream, .. } => downstream == "api",
            _ => false,
        };
        assert!(named, "{document}: {error}");
        let cause = error
            .source()
            .expect("the JSON error is the source")
            .to_string();
        assert!(
            cause.contains("unknown field") || cause.contains("unknown variant"),
            "{cause}"
        );
    }
}

#[test]
fn a_misspelled_tool_member_names_the_tool() {
    let error = load(one_tool(
        json!({"name": "getPost", "downstream": "api", "method": "GET",
        "route": "/", "requiredScope": ["x"]}),
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: tool getPost: invalid definition"
    );
    assert!(
        error
            .source()
            .unwrap()
            .to_string()
            .starts_with("unknown field `requiredScope`"),
        "{:?}",
        error.source()
    );
}

#[test]
fn environment_references_are_resolved_through_the_options() {
    let document = json!({
        "downstreams": {"api": {
            "baseUrl": "http://127.0.0.1:5200",
            "headers": {"Authorization": "Bearer ${env:PLACEHOLDER_TOKEN}", "X-Client": "ithil"}
        }},
        "tools": []
    });
    let options = LoadOptions::default()
        .with_env(|name| (name == "PLACEHOLDER_TOKEN").then(|| "tok-123".to_owned()));
    let part = load_with(document.clone(), &options).unwrap();
    let downstream = &part.downstreams[0];
    let headers: Vec<(&str, &[u8])> = downstream
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", b"Bearer tok-123".as_slice()),
            ("x-client", b"ithil".as_slice())
        ]
    );
    let debug = format!("{downstream:?} {options:?}");
    assert!(!debug.contains("tok-123"), "{debug}");

    let error = load(document).unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: downstream api: environment variable PLACEHOLDER_TOKEN is not set"
    );
}

#[test]
fn invalid_header_values_are_refused_without_showing_them() {
    let document = json!({
        "downstreams": {"api": {
            "baseUrl": "http://127.0.0.1:5200",
            "headers": {"Authorization": "${env:T}"}
        }}
    });
    let options = LoadOptions::default().with_env(|_| Some("secret\r\nX-Evil: 1".to_owned()));
    let error = load_with(document, &options).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("header authorization"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn reserved_headers_cannot_be_configured_or_set_by_arguments() {
    let error = load(json!({"downstreams": {"api": {
        "baseUrl": "http://127.0.0.1:5200", "headers": {"Host": "evil.example"}
    }}}))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: downstream api: header host cannot be configured"
    );

    let error = load(one_tool(json!({
        "name": "a", "downstream": "api", "method": "GET", "route": "/",
        "inputSchema": {"properties": {"len": {"type": "string"}}},
        "params": [{"name": "len", "in": "header", "wireName": "Content-Length"}]
    })))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: tool a: header content-length cannot be set from an argument"
    );
}

#[test]
fn placement_mistakes_are_named() {
    let cases = [
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x",
                "inputSchema": {"properties": {"id": {}}}, "params": [{"name": "id", "in": "path"}]}),
            "inline.json: tool a: argument id is placed in the path, but the route has no {id}",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x/{id}",
                "inputSchema": {"properties": {"id": {}}, "required": ["id"]},
                "params": [{"name": "id", "in": "query"}]}),
            "inline.json: tool a: route parameter id must be placed in the path",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x",
                "params": [{"name": "ghost", "in": "query"}]}),
            "inline.json: tool a: argument ghost is placed but missing from inputSchema properties",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "POST", "route": "/x",
                "inputSchema": {"properties": {"a": {}, "b": {}}},
                "params": [{"name": "a", "in": "body", "wireName": "v"}, {"name": "b", "in": "body", "wireName": "v"}]}),
            "inline.json: tool a: two arguments are sent as the same body member v",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x",
                "maxResponseTokens": 0}),
            "inline.json: tool a: maxResponseTokens must be positive",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "PURGE", "route": "/x"}),
            "inline.json: tool a: method \"PURGE\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x/../y"}),
            "inline.json: tool a: invalid route \"/x/../y\": dot segments are not allowed",
        ),
        (
            json!({"name": "a", "downstream": "api", "method": "GET", "route": "/x",
                "requiredScopes": ["posts write"]}),
            "inline.json: tool a: required scope \"posts write\" must be non-empty, without spaces",
        ),
    ];
    for (tool, expected) in cases {
        let error = load(one_tool(tool)).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn invalid_patterns_are_refused_at_load_naming_the_tool() {
    let error = load(one_tool(json!({
        "name": "a", "downstream": "api", "method": "GET", "route": "/",
        "inputSchema": {"properties": {"code": {"type": "string", "pattern": "(?<=x)y"}}}
    })))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: tool a: invalid input schema"
    );
    assert_eq!(
        error.source().unwrap().to_string(),
        "at /properties/code/pattern: invalid pattern"
    );
}

#[test]
fn load_file_names_a_missing_file() {
    let error = load_file("/nonexistent/catalog.json", &LoadOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read catalog file /nonexistent/catalog.json"
    );
}
