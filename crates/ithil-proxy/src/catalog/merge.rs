//! Merging the parts of a catalog into one, with the checks that need every part at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;

use super::build::{check_tool, parse_base_url};
use super::error::{CatalogError, Result};
use super::model::{Catalog, CatalogPart, Downstream, ParamLocation, Tool};

impl Catalog {
    /// Merges catalog parts into one catalog.
    ///
    /// A tool may use a downstream defined by another part. The checks: tool names are valid
    /// MCP names and unique across parts, downstream names are unique, every tool's downstream
    /// exists, base URLs are `http` or `https`, every path parameter is declared and required in
    /// its tool's schema, and no header argument would replace a header the downstream's
    /// configuration sets.
    ///
    /// # Errors
    ///
    /// The first [`CatalogError`] found, naming the tool or downstream and the part it came from.
    pub fn merge(parts: impl IntoIterator<Item = CatalogPart>) -> Result<Catalog> {
        let parts: Vec<CatalogPart> = parts.into_iter().collect();
        let mut catalog = Catalog::default();

        // Downstreams first, because a tool may refer to one from a later part.
        let mut downstream_origins: BTreeMap<&str, &str> = BTreeMap::new();
        for part in &parts {
            for downstream in &part.downstreams {
                if let Some(first) = downstream_origins.insert(&downstream.name, &part.origin) {
                    return Err(CatalogError::DuplicateDownstream {
                        downstream: downstream.name.clone(),
                        first: first.to_owned(),
                        second: part.origin.clone(),
                    });
                }
                parse_base_url(&downstream.base_url.to_string()).map_err(|reason| {
                    CatalogError::Downstream {
                        origin: part.origin.clone(),
                        downstream: downstream.name.clone(),
                        reason,
                    }
                })?;
            }
        }

        let mut tool_origins: BTreeMap<&str, &str> = BTreeMap::new();
        for part in &parts {
            for tool in &part.tools {
                let fail = |reason: String| CatalogError::Tool {
                    origin: part.origin.clone(),
                    tool: tool.name.clone(),
                    reason,
                };
                check_tool(tool).map_err(fail)?;
                if let Some(first) = tool_origins.insert(&tool.name, &part.origin) {
                    return Err(CatalogError::DuplicateTool {
                        tool: tool.name.clone(),
                        first: first.to_owned(),
                        second: part.origin.clone(),
                    });
                }
                let Some(downstream) = parts
                    .iter()
                    .flat_map(|p| &p.downstreams)
                    .find(|d| d.name == tool.downstream)
                else {
                    return Err(CatalogError::UnknownDownstream {
                        origin: part.origin.clone(),
                        tool: tool.name.clone(),
                        downstream: tool.downstream.clone(),
                    });
                };
                check_headers(tool, downstream).map_err(fail)?;
            }
        }

        for part in parts {
            for downstream in part.downstreams {
                catalog
                    .downstreams
                    .insert(downstream.name.clone(), Arc::new(downstream));
            }
            for tool in part.tools {
                catalog.tools.insert(tool.name.clone(), Arc::new(tool));
            }
        }
        Ok(catalog)
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tools.get(name)
    }

    /// The downstream called `name`.
    pub fn downstream(&self, name: &str) -> Option<&Arc<Downstream>> {
        self.downstreams.get(name)
    }

    /// The downstream that serves `tool`. Always present for a tool of this catalog, since
    /// [`Catalog::merge`] checks it.
    pub fn downstream_of(&self, tool: &Tool) -> Option<&Arc<Downstream>> {
        self.downstreams.get(&tool.downstream)
    }

    /// The number of tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether the catalog has no tools.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// Refuses a header argument that would collide with a header the downstream sets, since the
/// configured header (often a credential) must win and the argument would silently vanish.
fn check_headers(tool: &Tool, downstream: &Downstream) -> std::result::Result<(), String> {
    for param in &tool.params {
        if param.location != ParamLocation::Header {
            continue;
        }
        let wire = param.wire_name.as_deref().unwrap_or(&param.name);
        let Ok(name) = HeaderName::from_bytes(wire.as_bytes()) else {
            return Err(format!("{wire:?} is not a valid header name"));
        };
        if downstream.headers.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "header argument {} would replace header {name}, which downstream {} sets",
                param.name, downstream.name
            ));
        }
    }
    Ok(())
}
