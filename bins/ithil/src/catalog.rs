//! Where the tool catalog comes from: the configured files, and the discovered downstream.
//!
//! Files load at start (a broken file stops the start); discovery runs after the server
//! listens and retries while the downstream is unreachable. A reload reads the files again and
//! fetches discovery once; whatever fails keeps the catalog that is in place, so a failed fetch
//! never swaps an empty catalog in for a good one.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use ithil_proxy::catalog::{self, Catalog, CatalogError, CatalogPart, Downstream, LoadOptions};
use ithil_proxy::forward::{DiscoveryError, Forwarder, RetryPolicy};
use ithil_proxy::gateway::Gateway;
use tracing::{info, warn};

use crate::config::{Config, Environment};

/// The name of the downstream that `toolRegistry.downstreamBaseUrl` configures.
pub const DISCOVERED_DOWNSTREAM: &str = "downstream";

/// Why a catalog could not be loaded or reloaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or the merged catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),

    /// The discovery fetch failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// The discovered downstream and where it publishes its tools.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The downstream.
    pub downstream: Downstream,
    /// Its schema path, such as `/ithil/schema`.
    pub schema_path: String,
}

/// The catalog's sources, and the last discovery answer that loaded.
pub struct CatalogSource {
    files: Vec<PathBuf>,
    options: LoadOptions,
    discovery: Option<Discovery>,
    discovered: Mutex<Option<CatalogPart>>,
    /// Reloads run one at a time, so two cannot interleave their swaps.
    reloading: tokio::sync::Mutex<()>,
}

impl CatalogSource {
    /// The sources the configuration names; `${env:NAME}` in catalog files reads `env`.
    ///
    /// # Errors
    ///
    /// Fails when the discovered downstream's URL is unusable.
    pub fn new(config: &Config, env: &Environment) -> Result<CatalogSource, CatalogError> {
        let env = env.clone();
        let mut options =
            LoadOptions::default().with_env(move |name| env.get(name).map(str::to_owned));
        for (name, url) in &config.catalog.downstream_urls {
            options = options.with_downstream_url(name.clone(), url.clone());
        }

        let discovery = match &config.tool_registry.downstream_base_url {
            Some(url) => {
                let url = config
                    .catalog
                    .downstream_urls
                    .get(DISCOVERED_DOWNSTREAM)
                    .unwrap_or(url);
                Some(Discovery {
                    downstream: Downstream::new(DISCOVERED_DOWNSTREAM, url)?,
                    schema_path: config.tool_registry.schema_path.clone(),
                })
            }
            None => None,
        };

        Ok(CatalogSource {
            files: config.catalog.files.clone(),
            options,
            discovery,
            discovered: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The options catalog files load with (also for `ithil tools import`).
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The discovered downstream, when one is configured.
    pub fn discovery(&self) -> Option<&Discovery> {
        self.discovery.as_ref()
    }

    /// Whether the catalog is complete: no discovery configured, or its answer loaded.
    pub fn complete(&self) -> bool {
        self.discovery.is_none() || self.last_discovered().is_some()
    }

    fn last_discovered(&self) -> Option<CatalogPart> {
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads every file and merges them with the last discovery answer.
    ///
    /// # Errors
    ///
    /// The first file or merge error.
    pub fn load(&self) -> Result<Catalog, CatalogError> {
        let mut parts = Vec::with_capacity(self.files.len() + 1);
        for file in &self.files {
            parts.push(catalog::load_file(file, &self.options)?);
        }
        parts.extend(self.last_discovered());
        Catalog::merge(parts)
    }

    /// Fetches discovery until it succeeds (or fails for good), then swaps in the merged
    /// catalog. Returns whether the catalog is now complete.
    pub async fn discover_at_start(&self, forwarder: &Forwarder, gateway: &Gateway) -> bool {
        let Some(discovery) = &self.discovery else {
            return true;
        };
        let fetch = forwarder.discover_with_retry(
            discovery.downstream.clone(),
            discovery.schema_path.clone(),
            RetryPolicy::default(),
        );
        match fetch.await {
            Ok(part) => self.take_discovered(part, gateway).is_ok(),
            Err(error) => {
                warn!(
                    downstream = %discovery.downstream.name,
                    error = %error,
                    source = ?std::error::Error::source(&error),
                    "discovery failed for good; serving the catalog files only"
                );
                false
            }
        }
    }

    fn take_discovered(&self, part: CatalogPart, gateway: &Gateway) -> Result<usize, CatalogError> {
        let previous = self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(part);
        match self.load() {
            Ok(merged) => {
                let tools = merged.len();
                gateway.replace_catalog(merged);
                info!(tools, "catalog loaded with discovered tools");
                Ok(tools)
            }
            Err(error) => {
                *self
                    .discovered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = previous;
                warn!(error = %error, "discovered tools do not merge; catalog unchanged");
                Err(error)
            }
        }
    }

    /// Reads the files again and fetches discovery once, then swaps in the merged catalog;
    /// on any failure the catalog in place stays. Returns the number of tools.
    ///
    /// # Errors
    ///
    /// The file, discovery or merge error that kept the old catalog.
    pub async fn reload(
        &self,
        forwarder: &Forwarder,
        gateway: &Gateway,
    ) -> Result<usize, LoadError> {
        let _one_at_a_time = self.reloading.lock().await;

        if let Some(discovery) = &self.discovery {
            let part = forwarder
                .discover(&discovery.downstream, &discovery.schema_path)
                .await?;
            return Ok(self.take_discovered(part, gateway)?);
        }

        let merged = self.load()?;
        let tools = merged.len();
        gateway.replace_catalog(merged);
        info!(tools, "catalog reloaded");
        Ok(tools)
    }
}
