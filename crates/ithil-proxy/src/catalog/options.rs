//! What the caller supplies to the loaders: the environment and base-URL overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A function that looks up an environment variable, so that tests (and embedders) can supply
/// their own environment.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Options for loading catalog files and discovery answers.
#[derive(Clone)]
pub struct LoadOptions {
    /// Looks up the variables that `${env:NAME}` in a downstream header refers to. Default is
    /// an empty environment (every reference fails); [`LoadOptions::process_env`] reads the
    /// process environment.
    pub env: EnvLookup,
    /// Base URLs that replace the one a catalog file gives a downstream, by downstream name
    /// (`--downstream-url NAME=URL`). Default is none.
    pub downstream_urls: BTreeMap<String, String>,
}

impl LoadOptions {
    /// Options whose environment is the process environment.
    pub fn process_env() -> LoadOptions {
        LoadOptions {
            env: Arc::new(|name| std::env::var(name).ok()),
            ..LoadOptions::default()
        }
    }

    /// Replaces the environment lookup.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Replaces the base URL of the downstream `name`, whatever a catalog file says.
    pub fn with_downstream_url(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.downstream_urls.insert(name.into(), url.into());
        self
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            env: Arc::new(|_| None),
            downstream_urls: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The environment holds secrets; only the overrides are shown.
        f.debug_struct("LoadOptions")
            .field("env", &"<lookup>")
            .field("downstream_urls", &self.downstream_urls)
            .finish()
    }
}
