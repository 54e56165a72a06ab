//! Helpers shared by the catalog tests.

use std::path::PathBuf;

use ithil_proxy::catalog::{Catalog, CatalogError, CatalogPart, LoadOptions, load_slice};
use serde_json::{Map, Value};

/// The OpenAPI document of the JSONPlaceholder-style API, as the repository bundles it.
pub fn placeholder_openapi() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/placeholder-openapi.json")
}

/// The bundled example manifest.
pub fn example_manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/placeholder.json")
}

/// Loads a JSON document (manifest or OpenAPI) given inline, with the downstream name `api`.
pub fn load(document: Value) -> Result<CatalogPart, CatalogError> {
    load_with(document, &LoadOptions::default())
}

/// Like [`load`], with options.
pub fn load_with(document: Value, options: &LoadOptions) -> Result<CatalogPart, CatalogError> {
    load_slice(
        "inline.json",
        "api",
        document.to_string().as_bytes(),
        options,
    )
}

/// Loads and merges one inline document.
pub fn catalog(document: Value) -> Result<Catalog, CatalogError> {
    Catalog::merge([load(document)?])
}

/// The object inside a JSON value.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected an object, got {other}"),
    }
}

/// A minimal OpenAPI 3.0 document with the given paths and schemas.
pub fn openapi(paths: Value, schemas: Value) -> Value {
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "http://127.0.0.1:5200"}],
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
