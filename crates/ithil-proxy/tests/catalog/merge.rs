//! The checks of `Catalog::merge`, each error naming the tool and where it came from.

use std::sync::Arc;

use ithil_proxy::catalog::{
    Catalog, CatalogError, CatalogPart, Downstream, LoadOptions, ParamLocation, load_file,
    load_slice,
};
use ithil_proxy::schema::CompiledSchema;
use serde_json::{Value, json};

use crate::support::{example_manifest, placeholder_openapi};

fn part(origin: &str, document: Value) -> CatalogPart {
    load_slice(
        origin,
        "api",
        document.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{origin} loads: {e}"))
}

fn downstream_only(origin: &str) -> CatalogPart {
    part(
        origin,
        json!({"downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200"}}}),
    )
}

fn tool_only(origin: &str, name: &str, downstream: &str) -> CatalogPart {
    part(
        origin,
        json!({"tools": [{"name": name, "downstream": downstream, "method": "GET", "route": "/"}]}),
    )
}

#[test]
fn tools_may_use_a_downstream_of_another_part() {
    let catalog = Catalog::merge([
        tool_only("tools.json", "a", "api"),
        downstream_only("ds.json"),
    ])
    .unwrap();
    assert_eq!(catalog.len(), 1);
    assert_eq!(
        catalog
            .downstream_of(catalog.tool("a").unwrap())
            .unwrap()
            .name,
        "api"
    );
}

#[test]
fn duplicate_tool_names_name_both_origins() {
    let error = Catalog::merge([
        downstream_only("ds.json"),
        tool_only("one.json", "getPost", "api"),
        tool_only("two.json", "getPost", "api"),
    ])
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tool getPost is defined twice: in one.json and in two.json"
    );
}

#[test]
fn example_manifest_and_shared_openapi_clash_on_tool_names() {
    let options = LoadOptions::default();
    let error = Catalog::merge([
        load_file(example_manifest(), &options).unwrap(),
        load_file(placeholder_openapi(), &options).unwrap(),
    ])
    .unwrap_err();
    assert!(
        matches!(error, CatalogError::DuplicateTool { .. }),
        "{error}"
    );
}

#[test]
fn duplicate_downstreams_name_both_origins() {
    let error = Catalog::merge([downstream_only("a.json"), downstream_only("b.json")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "downstream api is defined twice: in a.json and in b.json"
    );
}

#[test]
fn unknown_downstream_names_the_tool() {
    let error = Catalog::merge([
        downstream_only("ds.json"),
        tool_only("t.json", "a", "nowhere"),
    ])
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "t.json: tool a: unknown downstream nowhere"
    );
}

#[test]
fn invalid_tool_names_are_refused() {
    for name in ["", "get post", "a/b", "ünï", &"x".repeat(129)] {
        let document =
            json!({"tools": [{"name": name, "downstream": "api", "method": "GET", "route": "/"}]});
        let error = load_slice(
            "t.json",
            "api",
            document.to_string().as_bytes(),
            &LoadOptions::default(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("a tool name must be 1 to 128 characters"),
            "{name}: {error}"
        );
    }
}

#[test]
fn path_parameters_must_be_declared_and_required() {
    let missing = json!({"tools": [{"name": "a", "downstream": "api", "method": "GET",
        "route": "/posts/{id}", "inputSchema": {"properties": {}}}]});
    let error = load_slice(
        "t.json",
        "api",
        missing.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "t.json: tool a: path parameter id is missing from inputSchema properties"
    );

    let optional = json!({"tools": [{"name": "a", "downstream": "api", "method": "GET",
        "route": "/posts/{id}", "inputSchema": {"properties": {"id": {"type": "integer"}}}}]});
    let error = load_slice(
        "t.json",
        "api",
        optional.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "t.json: tool a: path parameter id must be listed in inputSchema required"
    );
}

#[test]
fn merge_checks_hand_built_tools_too() {
    let mut built = part(
        "t.json",
        json!({
            "downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200"}},
            "tools": [{"name": "a", "downstream": "api", "method": "GET", "route": "/posts/{id}",
                "inputSchema": {"properties": {"id": {}}, "required": ["id"]}}]
        }),
    );
    let tool = &mut built.tools[0];
    tool.input_schema = json!({"type": "object", "properties": {}});
    tool.compiled_schema = Arc::new(CompiledSchema::compile(&tool.input_schema).unwrap());
    let error = Catalog::merge([built.clone()]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "t.json: tool a: path parameter id is missing from inputSchema properties"
    );

    built.tools[0].name = "bad name".to_owned();
    assert!(Catalog::merge([built]).is_err());
}

#[test]
fn base_urls_must_be_http_or_https() {
    for url in [
        "ftp://127.0.0.1/",
        "file:///tmp/x",
        "127.0.0.1:5200",
        "http://user:pw@127.0.0.1/",
    ] {
        let document = json!({"downstreams": {"api": {"baseUrl": url}}});
        let error = load_slice(
            "d.json",
            "api",
            document.to_string().as_bytes(),
            &LoadOptions::default(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("d.json: downstream api: base URL"),
            "{url}: {error}"
        );
    }

    let mut hand_built = Downstream::new("api", "http://127.0.0.1:5200").unwrap();
    hand_built.base_url = "ftp://127.0.0.1/".parse().unwrap();
    let error = Catalog::merge([CatalogPart {
        origin: "config".to_owned(),
        downstreams: vec![hand_built],
        tools: Vec::new(),
    }])
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("must start with http:// or https://"),
        "{error}"
    );
}

#[test]
fn header_arguments_may_not_replace_configured_headers() {
    let document = json!({
        "downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200", "headers": {"X-Api-Key": "k"}}},
        "tools": [{"name": "a", "downstream": "api", "method": "GET", "route": "/",
            "inputSchema": {"properties": {"key": {"type": "string"}}},
            "params": [{"name": "key", "in": "header", "wireName": "x-api-key"}]}]
    });
    let error = Catalog::merge([part("h.json", document)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "h.json: tool a: header argument key would replace header x-api-key, which downstream api sets"
    );
}

#[test]
fn downstream_new_uses_the_defaults() {
    let downstream = Downstream::new("placeholder", "http://127.0.0.1:5200").unwrap();
    assert_eq!(
        downstream.connect_timeout,
        Downstream::DEFAULT_CONNECT_TIMEOUT
    );
    assert_eq!(
        downstream.request_timeout,
        Downstream::DEFAULT_REQUEST_TIMEOUT
    );
    assert_eq!(
        downstream.max_response_bytes,
        Downstream::DEFAULT_MAX_RESPONSE_BYTES
    );
    assert!(downstream.headers.is_empty());
    assert!(Downstream::new("bad name", "http://127.0.0.1").is_err());
    assert!(Downstream::new("ok", "gopher://127.0.0.1").is_err());
}

#[test]
fn merged_catalog_is_ordered_by_tool_name() {
    let document = json!({
        "downstreams": {"api": {"baseUrl": "http://127.0.0.1:5200"}},
        "tools": [
            {"name": "zeta", "downstream": "api", "method": "GET", "route": "/z"},
            {"name": "alpha", "downstream": "api", "method": "GET", "route": "/a"}
        ]
    });
    let catalog = Catalog::merge([part("o.json", document)]).unwrap();
    let names: Vec<&str> = catalog.tools.keys().map(String::as_str).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert!(
        catalog.tools["alpha"]
            .params
            .iter()
            .all(|p| p.location != ParamLocation::Path)
    );
}
