//! Importing OpenAPI documents, starting with the shared placeholder document.

use ithil_proxy::catalog::{
    Catalog, CatalogError, LoadOptions, OverLimit, ParamLocation, Tool, ToolSpec, load_file,
    load_manifest, openapi,
};
use serde_json::{Value, json};

use crate::support::{catalog, load, load_with, object, openapi as doc, placeholder_openapi};

fn placeholder() -> Catalog {
    let part = load_file(placeholder_openapi(), &LoadOptions::default())
        .expect("the shared OpenAPI document loads");
    Catalog::merge([part]).expect("the shared OpenAPI document merges")
}

fn location(tool: &Tool, name: &str) -> ParamLocation {
    tool.params
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{} has no argument {name}", tool.name))
        .location
}

#[test]
fn shared_document_gives_one_tool_per_operation() {
    let catalog = placeholder();
    let mut names: Vec<&str> = catalog.tools.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec![
        "listPosts",
        "createPost",
        "getPost",
        "updatePost",
        "deletePost",
        "listPostComments",
        "listComments",
        "listUsers",
        "getUser",
        "listUserTodos",
        "getTodo",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
}

#[test]
fn shared_document_downstream_is_named_after_the_file_and_uses_the_first_server() {
    let catalog = placeholder();
    let downstream = catalog
        .downstream("placeholder-openapi")
        .expect("the downstream is named after the file's stem");
    assert_eq!(downstream.base_url.to_string(), "http://127.0.0.1:5200/");
    assert!(
        catalog
            .tools
            .values()
            .all(|t| t.downstream == "placeholder-openapi")
    );
}

#[test]
fn configured_base_url_replaces_the_documents_server() {
    let options = LoadOptions::default()
        .with_downstream_url("placeholder-openapi", "http://127.0.0.1:49152/v1");
    let part = load_file(placeholder_openapi(), &options).unwrap();
    let catalog = Catalog::merge([part]).unwrap();
    let downstream = catalog.downstream("placeholder-openapi").unwrap();
    assert_eq!(downstream.base_url.to_string(), "http://127.0.0.1:49152/v1");

    let tool = catalog.tool("getPost").unwrap();
    let args = object(json!({"id": 3}));
    let request = tool.build_request(downstream, &args, "t").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "http://127.0.0.1:49152/v1/posts/3"
    );
}

#[test]
fn x_ithil_governance_fields_are_applied() {
    let catalog = placeholder();

    let list = catalog.tool("listPosts").unwrap();
    assert_eq!(list.category.as_deref(), Some("Posts"));
    assert_eq!(list.max_response_tokens, 4000);
    assert!(!list.allow_write);
    assert!(list.required_scopes.is_empty());

    let create = catalog.tool("createPost").unwrap();
    assert!(create.allow_write);
    assert!(create.writes());
    assert_eq!(create.required_scopes, ["posts:write"]);
    assert_eq!(create.max_response_tokens, 500);

    let update = catalog.tool("updatePost").unwrap();
    assert_eq!(update.method, http::Method::PATCH);
    assert!(update.allow_write);
    assert_eq!(update.required_scopes, ["posts:write"]);
    assert_eq!(
        update.max_response_tokens,
        Tool::DEFAULT_MAX_RESPONSE_TOKENS
    );

    let delete = catalog.tool("deletePost").unwrap();
    assert_eq!(delete.method, http::Method::DELETE);
    assert_eq!(delete.required_scopes, ["posts:delete"]);

    let get = catalog.tool("getTodo").unwrap();
    assert_eq!(get.category.as_deref(), Some("Todos"));
    assert!(!get.allow_write);
    assert_eq!(get.max_response_tokens, 2000);
    assert_eq!(get.over_limit, OverLimit::Truncate);
    assert_eq!(get.description, "Get one todo.");
}

#[test]
fn create_post_body_properties_are_top_level_arguments() {
    let catalog = placeholder();
    let tool = catalog.tool("createPost").unwrap();
    assert_eq!(tool.route.to_string(), "/posts");
    for name in ["userId", "title", "body"] {
        assert_eq!(location(tool, name), ParamLocation::Body, "{name}");
    }
    assert_eq!(
        tool.input_schema["required"],
        json!(["body", "title", "userId"])
    );
    assert_eq!(tool.input_schema["additionalProperties"], json!(false));
    assert_eq!(
        tool.input_schema["properties"]["title"]["maxLength"],
        json!(200)
    );

    let good = object(json!({"userId": 1, "title": "Hello", "body": "World"}));
    tool.validate_arguments(&good).unwrap();
    let missing = object(json!({"userId": 1, "body": "World"}));
    assert_eq!(
        tool.validate_arguments(&missing).unwrap_err().to_string(),
        "missing required argument title"
    );
    let extra = object(json!({"userId": 1, "title": "a", "body": "b", "admin": true}));
    assert_eq!(
        tool.validate_arguments(&extra).unwrap_err().to_string(),
        "unknown argument admin"
    );

    let downstream = catalog.downstream_of(tool).unwrap();
    let request = tool.build_request(downstream, &good, "trace").unwrap();
    let body: Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(
        body,
        json!({"userId": 1, "title": "Hello", "body": "World"})
    );
}

#[test]
fn get_post_takes_its_id_in_the_path() {
    let catalog = placeholder();
    let tool = catalog.tool("getPost").unwrap();
    assert_eq!(tool.route.to_string(), "/posts/{id}");
    assert_eq!(location(tool, "id"), ParamLocation::Path);
    assert_eq!(tool.input_schema["required"], json!(["id"]));
    assert_eq!(
        tool.input_schema["properties"]["id"],
        json!({"type": "integer", "minimum": 1, "description": "The post's id."})
    );

    let zero = object(json!({"id": 0}));
    assert_eq!(
        tool.validate_arguments(&zero).unwrap_err().to_string(),
        "argument id must be at least 1"
    );
    let five = object(json!({"id": 5.0}));
    tool.validate_arguments(&five).unwrap();
    let request = tool
        .build_request(catalog.downstream_of(tool).unwrap(), &five, "t")
        .unwrap();
    assert_eq!(request.uri().path(), "/posts/5");
    assert!(request.body().is_empty());
}

#[test]
fn path_and_query_parameters_sit_side_by_side() {
    let catalog = placeholder();
    let tool = catalog.tool("listUserTodos").unwrap();
    assert_eq!(location(tool, "id"), ParamLocation::Path);
    assert_eq!(location(tool, "completed"), ParamLocation::Query);
    let args = object(json!({"id": 2, "completed": false}));
    tool.validate_arguments(&args).unwrap();
    let request = tool
        .build_request(catalog.downstream_of(tool).unwrap(), &args, "t")
        .unwrap();
    assert_eq!(
        request.uri().path_and_query().unwrap(),
        "/users/2/todos?completed=false"
    );
}

#[test]
fn to_manifest_round_trips_through_the_manifest_loader() {
    let manifest = openapi::to_manifest(placeholder_openapi(), &LoadOptions::default()).unwrap();
    assert_eq!(
        manifest["downstreams"]["placeholder-openapi"]["baseUrl"],
        json!("http://127.0.0.1:5200")
    );
    let reloaded = load_manifest(
        "imported.json",
        manifest.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap();
    let reloaded = Catalog::merge([reloaded]).unwrap();
    let original = placeholder();
    assert_eq!(reloaded.tools.len(), original.tools.len());
    for (name, tool) in &original.tools {
        let again = reloaded.tool(name).unwrap();
        assert_eq!(
            ToolSpec::from(tool.as_ref()),
            ToolSpec::from(again.as_ref()),
            "{name}"
        );
    }
}

#[test]
fn operation_without_operation_id_is_named_from_method_and_path() {
    let catalog = catalog(doc(
        json!({"/posts/{id}/comments": {"get": {"parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}
        ]}}}),
        json!({}),
    ))
    .unwrap();
    let tool = catalog.tool("get_posts_id_comments").unwrap();
    assert_eq!(tool.description, "GET /posts/{id}/comments");
}

#[test]
fn invalid_operation_id_is_a_load_error() {
    let error = load(doc(
        json!({"/a": {"get": {"operationId": "get a"}}}),
        json!({}),
    ))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("inline.json: tool GET /a (get a): "),
        "{error}"
    );
}

#[test]
fn body_property_clashing_with_a_parameter_names_both() {
    let error = load(doc(
        json!({"/posts/{id}": {"put": {
            "operationId": "replacePost",
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Post"}}}}
        }}}),
        json!({"Post": {"type": "object", "properties": {"id": {"type": "integer"}, "title": {"type": "string"}}}}),
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: tool replacePost: request body property id clashes with path parameter id"
    );
}

#[test]
fn parameters_of_the_same_name_in_two_places_clash() {
    let error = load(doc(
        json!({"/posts/{id}": {"get": {
            "operationId": "getPost",
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}},
                {"name": "id", "in": "query", "schema": {"type": "integer"}}
            ]
        }}}),
        json!({}),
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "inline.json: tool getPost: query parameter id clashes with path parameter id"
    );
}

#[test]
fn non_object_body_becomes_one_body_argument() {
    let catalog = catalog(doc(
        json!({"/tags": {"put": {
            "operationId": "setTags",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "array", "items": {"type": "string"}
            }}}}
        }}}),
        json!({}),
    ))
    .unwrap();
    let tool = catalog.tool("setTags").unwrap();
    assert_eq!(location(tool, "body"), ParamLocation::WholeBody);
    assert_eq!(tool.input_schema["required"], json!(["body"]));
    let args = object(json!({"body": ["a", "b"]}));
    tool.validate_arguments(&args).unwrap();
    let request = tool
        .build_request(catalog.downstream_of(tool).unwrap(), &args, "t")
        .unwrap();
    assert_eq!(request.body().as_ref(), br#"["a","b"]"#);
}

#[test]
fn path_level_parameters_apply_and_operation_parameters_override_them() {
    let catalog = catalog(doc(
        json!({"/users/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                {"name": "Authorization", "in": "header", "schema": {"type": "string"}}
            ],
            "get": {"operationId": "getUser", "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}
            ]}
        }}),
        json!({}),
    ))
    .unwrap();
    let tool = catalog.tool("getUser").unwrap();
    assert_eq!(
        tool.input_schema["properties"]["id"]["type"],
        json!("integer")
    );
    assert_eq!(location(tool, "X-Trace"), ParamLocation::Header);
    assert!(tool.params.iter().all(|p| p.name != "Authorization"));
}

#[test]
fn cookie_parameters_are_a_load_error() {
    let error = load(doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"name": "session", "in": "cookie", "schema": {"type": "string"}}
        ]}}}),
        json!({}),
    ))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("inline.json: tool a: cookie parameter session is not supported"),
        "{error}"
    );
}

#[test]
fn x_ithil_can_exclude_an_operation_and_refuses_unknown_members() {
    let cookie = json!({"name": "s", "in": "cookie", "schema": {"type": "string"}});
    let catalog = catalog(doc(
        json!({"/a": {
            "get": {"operationId": "a", "parameters": [cookie], "x-ithil": {"exclude": true}},
            "delete": {"operationId": "b", "x-ithil": {"overLimit": "reject"}}
        }}),
        json!({}),
    ))
    .unwrap();
    assert!(catalog.tool("a").is_none());
    assert_eq!(catalog.tool("b").unwrap().over_limit, OverLimit::Reject);

    let error = load(doc(
        json!({"/a": {"get": {"operationId": "a", "x-ithil": {"allowwrite": true}}}}),
        json!({}),
    ))
    .unwrap_err();
    assert_eq!(error.to_string(), "inline.json: tool a: invalid definition");
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("unknown field `allowwrite`"), "{cause}");
}

#[test]
fn reference_cycles_are_a_load_error_naming_the_tool() {
    let error = load(doc(
        json!({"/a": {"post": {"operationId": "makeNode", "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Node"}}
        }}}}}),
        json!({
            "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Child"}}},
            "Child": {"type": "object", "properties": {"parent": {"$ref": "#/components/schemas/Node"}}}
        }),
    ))
    .unwrap_err();
    match &error {
        CatalogError::Reference {
            tool, reference, ..
        } => {
            assert_eq!(tool, "makeNode");
            assert_eq!(reference, "#/components/schemas/Node");
        }
        other => panic!("expected a reference error, got {other}"),
    }
    assert!(error.to_string().contains("cycle"), "{error}");
}

#[test]
fn self_referencing_schema_is_a_cycle() {
    let error = load(doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"name": "f", "in": "query", "schema": {"$ref": "#/components/schemas/F"}}
        ]}}}),
        json!({"F": {"type": "array", "items": {"$ref": "#/components/schemas/F"}}}),
    ))
    .unwrap_err();
    assert!(matches!(error, CatalogError::Reference { .. }), "{error}");
}

#[test]
fn reference_chains_of_parameters_with_a_cycle_do_not_loop() {
    let mut document = doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"$ref": "#/components/parameters/P"}
        ]}}}),
        json!({}),
    );
    document["components"]["parameters"] = json!({
        "P": {"$ref": "#/components/parameters/Q"},
        "Q": {"$ref": "#/components/parameters/P"}
    });
    let error = load(document).unwrap_err();
    assert!(error.to_string().contains("cycle"), "{error}");
}

#[test]
fn deep_reference_chains_are_bounded() {
    let mut schemas = serde_json::Map::new();
    for i in 0..200 {
        schemas.insert(
            format!("S{i}"),
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/S{}", i + 1)}}),
        );
    }
    schemas.insert("S200".into(), json!({"type": "string"}));
    let error = load(doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"name": "f", "in": "query", "schema": {"$ref": "#/components/schemas/S0"}}
        ]}}}),
        Value::Object(schemas),
    ))
    .unwrap_err();
    assert!(error.to_string().contains("nests too deeply"), "{error}");
}

#[test]
fn exponential_reference_fan_out_is_bounded() {
    // Each level refers to the next four times: 4^12 values if inlined naively.
    let mut schemas = serde_json::Map::new();
    for i in 0..12 {
        let next = json!({"$ref": format!("#/components/schemas/L{}", i + 1)});
        schemas.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {"a": next, "b": next, "c": next, "d": next}}),
        );
    }
    schemas.insert("L12".into(), json!({"type": "string"}));
    let error = load(doc(
        json!({"/a": {"post": {"operationId": "a", "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/L0"}}
        }}}}}),
        Value::Object(schemas),
    ))
    .unwrap_err();
    assert!(
        error.to_string().contains("more than 100000 values"),
        "{error}"
    );
}

#[test]
fn external_and_dangling_references_are_load_errors() {
    for (reference, reason) in [
        ("other.json#/components/schemas/X", "only local references"),
        ("https://example.com/schema.json", "only local references"),
        ("#/components/schemas/Missing", "does not exist"),
    ] {
        let error = load(doc(
            json!({"/a": {"get": {"operationId": "a", "parameters": [
                {"name": "f", "in": "query", "schema": {"$ref": reference}}
            ]}}}),
            json!({}),
        ))
        .unwrap_err();
        assert!(error.to_string().contains(reason), "{reference}: {error}");
    }
}

#[test]
fn shared_references_without_a_cycle_are_inlined_each_time() {
    let catalog = catalog(doc(
        json!({"/a": {"post": {"operationId": "a", "requestBody": {"content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "home": {"$ref": "#/components/schemas/Address"},
                "work": {"$ref": "#/components/schemas/Address", "description": "Office."}
            }}}
        }}}}}),
        json!({"Address": {"type": "object", "properties": {"city": {"type": "string"}}}}),
    ))
    .unwrap();
    let schema = &catalog.tool("a").unwrap().input_schema;
    assert_eq!(
        schema["properties"]["home"]["properties"]["city"],
        json!({"type": "string"})
    );
    assert_eq!(
        schema["properties"]["work"]["description"],
        json!("Office.")
    );
    assert!(!schema.to_string().contains("$ref"));
}

#[test]
fn openapi_31_documents_keep_json_schema_types() {
    let mut document = doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"name": "n", "in": "query", "schema": {"type": ["integer", "null"], "exclusiveMinimum": 0}}
        ]}}}),
        json!({}),
    );
    document["openapi"] = json!("3.1.0");
    let catalog = catalog(document).unwrap();
    let tool = catalog.tool("a").unwrap();
    tool.validate_arguments(&object(json!({"n": null})))
        .unwrap();
    tool.validate_arguments(&object(json!({"n": 1}))).unwrap();
    assert!(tool.validate_arguments(&object(json!({"n": 0}))).is_err());
}

#[test]
fn openapi_30_nullable_is_shown_as_a_null_type() {
    let catalog = catalog(doc(
        json!({"/a": {"get": {"operationId": "a", "parameters": [
            {"name": "n", "in": "query", "schema": {"type": "integer", "nullable": true}}
        ]}}}),
        json!({}),
    ))
    .unwrap();
    let tool = catalog.tool("a").unwrap();
    assert_eq!(
        tool.input_schema["properties"]["n"]["type"],
        json!(["integer", "null"])
    );
}

#[test]
fn unsupported_documents_and_servers_are_explained() {
    let swagger = json!({"swagger": "2.0", "paths": {}});
    let error = load(swagger).unwrap_err();
    assert!(error.to_string().contains("Swagger 2.0"), "{error}");

    let mut v4 = doc(json!({}), json!({}));
    v4["openapi"] = json!("4.0.0");
    assert!(matches!(
        load(v4).unwrap_err(),
        CatalogError::Unsupported { .. }
    ));

    let mut relative = doc(json!({}), json!({}));
    relative["servers"] = json!([{"url": "/api"}]);
    let error = load(relative.clone()).unwrap_err();
    assert!(
        error.to_string().contains("--downstream-url api=URL"),
        "{error}"
    );
    let options = LoadOptions::default().with_downstream_url("api", "http://127.0.0.1:5200/api");
    load_with(relative, &options).unwrap();

    let mut templated = doc(json!({}), json!({}));
    templated["servers"] = json!([{"url": "http://127.0.0.1:{port}/v{major}", "variables": {
        "port": {"default": "5200"}, "major": {"default": "2"}
    }}]);
    let part = load(templated).unwrap();
    assert_eq!(
        part.downstreams[0].base_url.to_string(),
        "http://127.0.0.1:5200/v2"
    );
}

#[test]
fn non_json_request_bodies_are_a_load_error() {
    let error = load(doc(
        json!({"/upload": {"post": {"operationId": "upload", "requestBody": {"content": {
            "multipart/form-data": {"schema": {"type": "object"}}
        }}}}}),
        json!({}),
    ))
    .unwrap_err();
    assert!(error.to_string().contains("only JSON"), "{error}");
}

#[test]
fn read_only_body_properties_are_not_arguments() {
    let catalog = catalog(doc(
        json!({"/posts": {"post": {"operationId": "create", "requestBody": {"content": {
            "application/vnd.api+json": {"schema": {"allOf": [
                {"type": "object", "properties": {"id": {"type": "integer", "readOnly": true}}, "required": ["id"]},
                {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
            ]}}
        }}}}}),
        json!({}),
    ))
    .unwrap();
    let tool = catalog.tool("create").unwrap();
    assert!(tool.params.iter().all(|p| p.name != "id"));
    assert_eq!(location(tool, "title"), ParamLocation::Body);
    assert_eq!(tool.input_schema["required"], json!(["title"]));
}
