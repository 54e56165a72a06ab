//! Converting a downstream's `/ithil/schema` answer into tools.

use ithil_proxy::catalog::{
    Catalog, CatalogError, Downstream, OverLimit, ParamLocation, Tool, discovery, from_discovery,
};
use serde_json::json;

use crate::support::object;

fn answer() -> serde_json::Value {
    json!([
        {
            "name": "getPost",
            "description": "Fetch one post.",
            "httpMethod": "GET",
            "routePattern": "posts/{id:int}",
            "parameterSources": {"id": "route"},
            "inputSchema": {"properties": {"id": {"type": "integer"}}, "required": ["id"]},
            "allowWrite": false,
            "maxResponseTokens": 1500,
            "category": "Posts",
            "requiredScopes": null
        },
        {
            "name": "createPost",
            "description": "Create a post.",
            "httpMethod": "POST",
            "routePattern": "posts",
            "parameterSources": {"title": "Body", "userId": "BODY", "notify": "query", "dto": "body"},
            "inputSchema": {"type": "object", "properties": {
                "title": {"type": "string"}, "userId": {"type": "integer"}, "notify": {"type": "boolean"}
            }, "required": ["title"]},
            "allowWrite": true,
            "maxResponseTokens": null,
            "category": null,
            "requiredScopes": ["posts:write"]
        },
        {
            "name": "internalOnly",
            "description": "Not exposed.",
            "httpMethod": "",
            "routePattern": "internal"
        },
        {
            "name": "listComments",
            "httpMethod": "get",
            "routePattern": "/posts/{postId:int:min(1)}/comments/{page?}",
            "inputSchema": {"properties": {"postId": {"type": "integer"}, "page": {"type": "integer"}}, "required": ["postId"]},
            "someFutureField": {"x": 1}
        },
        {
            "name": "noSchema",
            "httpMethod": "GET",
            "routePattern": "health",
            "maxResponseTokens": 0
        }
    ])
}

fn tools() -> Vec<Tool> {
    discovery::parse("placeholder", answer().to_string().as_bytes()).unwrap()
}

fn find<'a>(tools: &'a [Tool], name: &str) -> &'a Tool {
    tools.iter().find(|t| t.name == name).unwrap()
}

#[test]
fn entries_become_tools_and_an_empty_method_hides_one() {
    let tools = tools();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["getPost", "createPost", "listComments", "noSchema"]);
    assert!(tools.iter().all(|t| t.downstream == "placeholder"));
}

#[test]
fn route_constraints_are_stripped_from_parameter_names() {
    let tools = tools();
    let get = find(&tools, "getPost");
    assert_eq!(get.route.to_string(), "/posts/{id}");
    assert_eq!(get.params[0].location, ParamLocation::Path);
    assert_eq!(get.max_response_tokens, 1500);
    assert_eq!(get.category.as_deref(), Some("Posts"));
    assert!(get.required_scopes.is_empty());
    assert_eq!(get.description, "Fetch one post.");
}

#[test]
fn optional_route_parameters_become_required() {
    let tools = tools();
    let list = find(&tools, "listComments");
    assert_eq!(list.method, http::Method::GET);
    assert_eq!(list.route.to_string(), "/posts/{postId}/comments/{page}");
    assert_eq!(list.input_schema["required"], json!(["postId", "page"]));
    let missing = object(json!({"postId": 1}));
    assert_eq!(
        list.validate_arguments(&missing).unwrap_err().to_string(),
        "missing required argument page"
    );
}

#[test]
fn parameter_sources_are_matched_case_insensitively_and_null_fields_take_defaults() {
    let tools = tools();
    let create = find(&tools, "createPost");
    assert!(create.allow_write);
    assert_eq!(create.required_scopes, ["posts:write"]);
    assert_eq!(
        create.max_response_tokens,
        Tool::DEFAULT_MAX_RESPONSE_TOKENS
    );
    assert_eq!(create.over_limit, OverLimit::Truncate);
    assert_eq!(create.category, None);
    let places: Vec<(&str, ParamLocation)> = create
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.location))
        .collect();
    // `dto` is not a declared property and is ignored.
    assert_eq!(
        places,
        [
            ("notify", ParamLocation::Query),
            ("title", ParamLocation::Body),
            ("userId", ParamLocation::Body),
        ]
    );

    let none = find(&tools, "noSchema");
    assert_eq!(
        none.input_schema,
        json!({"type": "object", "properties": {}})
    );
    assert_eq!(none.max_response_tokens, Tool::DEFAULT_MAX_RESPONSE_TOKENS);
    assert!(!none.allow_write);
}

#[test]
fn discovered_part_merges_with_its_downstream() {
    let downstream = Downstream::new("placeholder", "http://127.0.0.1:5200/api").unwrap();
    let part = from_discovery(&downstream, answer().to_string().as_bytes()).unwrap();
    assert_eq!(part.origin, "discovery from placeholder");
    let catalog = Catalog::merge([part]).unwrap();
    let tool = catalog.tool("getPost").unwrap();
    let request = tool
        .build_request(
            catalog.downstream_of(tool).unwrap(),
            &object(json!({"id": 9})),
            "trace",
        )
        .unwrap();
    assert_eq!(
        request.uri().to_string(),
        "http://127.0.0.1:5200/api/posts/9"
    );
}

#[test]
fn schema_url_keeps_the_base_path_prefix() {
    let plain = Downstream::new("a", "http://127.0.0.1:5200").unwrap();
    assert_eq!(
        discovery::schema_url(&plain, discovery::DEFAULT_SCHEMA_PATH)
            .unwrap()
            .to_string(),
        "http://127.0.0.1:5200/ithil/schema"
    );
    let prefixed = Downstream::new("a", "http://localhost:5200/api/").unwrap();
    assert_eq!(
        discovery::schema_url(&prefixed, "ithil/schema")
            .unwrap()
            .to_string(),
        "http://localhost:5200/api/ithil/schema"
    );
    assert!(discovery::schema_url(&plain, "/a b").is_err());
    assert!(discovery::schema_url(&plain, "/a#b").is_err());
}

#[test]
fn unusable_entries_are_errors_naming_the_tool() {
    let cases = [
        (
            json!([{"name": "a", "httpMethod": "GET", "routePattern": "posts/{id:int}",
                "inputSchema": {"properties": {}}}]),
            "discovery from placeholder: tool a: path parameter id is missing from inputSchema properties",
        ),
        (
            json!([{"name": "a", "httpMethod": "GET", "routePattern": "posts",
                "inputSchema": {"properties": {"x": {}}}, "parameterSources": {"x": "cookie"}}]),
            "discovery from placeholder: tool a: parameter x has an unknown source \"cookie\"",
        ),
        (
            json!([{"name": "a", "httpMethod": "GET"}]),
            "discovery from placeholder: tool a: the entry has no routePattern",
        ),
        (
            json!([{"httpMethod": "GET", "routePattern": "x"}]),
            "discovery from placeholder: tool #0: the entry has no name",
        ),
        (
            json!([{"name": "a", "httpMethod": "TRACE", "routePattern": "x"}]),
            "discovery from placeholder: tool a: method \"TRACE\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
    ];
    for (document, expected) in cases {
        let error = discovery::parse("placeholder", document.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn an_answer_that_is_not_an_array_is_a_parse_error() {
    for body in [&b"{}"[..], b"<html>", b""] {
        let error = discovery::parse("placeholder", body).unwrap_err();
        assert!(matches!(error, CatalogError::Parse { .. }), "{error}");
    }
}
