//! The tool catalog: its model, the loaders for manifests, OpenAPI documents and discovery.
//!
//! Every source becomes a [`CatalogPart`]; [`Catalog::merge`] joins the parts and checks what
//! needs all of them (unique names, known downstreams). The formats are described in
//! `docs/tools.md`.

mod build;
pub mod discovery;
mod error;
pub mod manifest;
mod merge;
mod model;
pub mod openapi;
mod options;
mod route;

use std::path::Path;

use serde_json::Value;

pub use build::is_valid_tool_name;
pub use error::{CatalogError, Result};
pub use manifest::{DownstreamSpec, Manifest, ParamSpec, ToolSpec};
pub use model::{
    Catalog, CatalogPart, Downstream, OverLimit, Param, ParamLocation, RoutePattern, Segment, Tool,
};
pub use options::{EnvLookup, LoadOptions};
pub use route::RouteError;

/// Loads one catalog file: an OpenAPI document when it has an `openapi` member, else a manifest.
///
/// An OpenAPI document's downstream is named after the file's stem (`placeholder-openapi.json`
/// gives `placeholder-openapi`). Errors name the file by the path given.
///
/// # Errors
///
/// [`CatalogError::Read`] when the file cannot be read; otherwise the errors of
/// [`load_slice`].
pub fn load_file(path: impl AsRef<Path>, options: &LoadOptions) -> Result<CatalogPart> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|error| CatalogError::Read {
        path: path.to_owned(),
        error,
    })?;
    load_slice(
        &path.display().to_string(),
        &file_stem(path),
        &bytes,
        options,
    )
}

/// Loads a catalog document from memory: an OpenAPI document when it has an `openapi` member
/// (its downstream is called `downstream_name`), else a manifest (`downstream_name` unused).
///
/// # Errors
///
/// [`CatalogError::Parse`] for a document that is not JSON or not a manifest;
/// [`CatalogError::Unsupported`] for Swagger 2.0 or another OpenAPI major version; the tool and
/// downstream errors of the format.
pub fn load_slice(
    origin: &str,
    downstream_name: &str,
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<CatalogPart> {
    let document: Value = serde_json::from_slice(bytes).map_err(|error| CatalogError::Parse {
        origin: origin.to_owned(),
        error,
    })?;
    let manifest = if is_openapi(&document) {
        openapi::import(origin, downstream_name, &document, options)?
    } else {
        Manifest::from_value(origin, document)?
    };
    build::build_part(origin, &manifest, options)
}

/// Loads a manifest from memory.
///
/// # Errors
///
/// [`CatalogError::Parse`] when the JSON is not a manifest; the definition errors naming a tool
/// or downstream with an unknown member; the tool and downstream errors of the format.
pub fn load_manifest(origin: &str, bytes: &[u8], options: &LoadOptions) -> Result<CatalogPart> {
    let document: Value = serde_json::from_slice(bytes).map_err(|error| CatalogError::Parse {
        origin: origin.to_owned(),
        error,
    })?;
    build::build_part(origin, &Manifest::from_value(origin, document)?, options)
}

/// Builds the part for a downstream's discovery answer: the downstream itself and its tools.
///
/// # Errors
///
/// The errors of [`discovery::parse`].
pub fn from_discovery(downstream: &Downstream, json: &[u8]) -> Result<CatalogPart> {
    let tools = discovery::parse(&downstream.name, json)?;
    Ok(CatalogPart {
        origin: discovery::origin(&downstream.name),
        downstreams: vec![downstream.clone()],
        tools,
    })
}

impl Downstream {
    /// A downstream with the default timeouts and size cap and no extra headers, for one given
    /// by configuration rather than by a catalog file (the discovered downstream, say).
    ///
    /// # Errors
    ///
    /// [`CatalogError::Downstream`] for an invalid name or a base URL that is not `http` or
    /// `https` with a host.
    pub fn new(name: &str, base_url: &str) -> Result<Downstream> {
        let spec = DownstreamSpec {
            base_url: base_url.to_owned(),
            ..DownstreamSpec::default()
        };
        build::build_downstream("configuration", name, &spec, &LoadOptions::default())
    }
}

/// Whether a JSON document is an OpenAPI (or Swagger) document rather than a manifest.
fn is_openapi(document: &Value) -> bool {
    document.get("openapi").is_some() || document.get("swagger").is_some()
}

/// The file name without its last extension, as an OpenAPI downstream's name.
fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
