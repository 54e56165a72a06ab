//! The three sources of configuration, flattened into one map of settings by canonical key.
//!
//! Every source becomes leaves keyed by the canonical key path (`admin.apiKey`,
//! `catalog.files.0`), so that a later source overrides an earlier one leaf by leaf: a file gives
//! JSON values, the environment and the flags give strings that the typed parser reads the same
//! way.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ConfigError;
use super::keys::{self, Mismatch};

/// The process environment, or any map a test gives instead.
///
/// The configuration never reads `std::env` itself: [`Environment::from_process`] takes a
/// snapshot once, so tests pass their own map and run in parallel.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    /// Names of configuration variables whose value is not valid Unicode.
    unreadable: Vec<String>,
}

impl Environment {
    /// A snapshot of the process environment.
    pub fn from_process() -> Environment {
        Environment::from_os(std::env::vars_os())
    }

    fn from_os(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Environment {
        let mut env = Environment::default();
        for (name, value) in vars {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => {
                    env.vars.insert(name, value);
                }
                (Ok(name), Err(_)) if config_suffix(&name).is_some() => env.unreadable.push(name),
                _ => {}
            }
        }
        env
    }

    /// The value of one variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Environment {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            unreadable: Vec::new(),
        }
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets; only the names are shown.
        f.debug_struct("Environment")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file.
    File(PathBuf),
    /// An environment variable, by its name as set.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in file {}", path.display()),
            Origin::Env(name) => write!(f, "from environment variable {name}"),
            Origin::Flag(flag) => write!(f, "from flag {flag}"),
        }
    }
}

/// One value as a source gave it, before it is parsed.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The value; the environment and the flags give strings.
    pub value: Value,
    /// Its source.
    pub origin: Origin,
}

/// The command-line flags that carry configuration, already split from the rest of the CLI.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--listen ADDR:PORT`.
    pub listen: Option<String>,
    /// `--data DIR`.
    pub data: Option<PathBuf>,
    /// `--dev`.
    pub dev: bool,
    /// `--catalog FILE`, repeatable; added to the configured files.
    pub catalog: Vec<PathBuf>,
    /// `--downstream-url NAME=URL`, repeatable.
    pub downstream_urls: Vec<String>,
    /// `--log-format text|json`.
    pub log_format: Option<String>,
}

/// Every setting by canonical key, with the later sources already applied over the earlier.
#[derive(Debug, Default)]
pub struct Settings {
    pub(super) leaves: BTreeMap<String, Setting>,
    /// The directory of the configuration file, against which its relative paths resolve.
    pub(super) file_dir: Option<PathBuf>,
}

impl Settings {
    /// Reads the file (if any), then the environment, then the flags.
    pub fn collect(flags: &Flags, env: &Environment) -> Result<Settings, ConfigError> {
        let mut settings = Settings::default();

        if let Some(path) = &flags.config {
            settings.read_file(path, env)?;
        }
        settings.read_env(env)?;
        settings.read_flags(flags)?;
        Ok(settings)
    }

    fn read_file(&mut self, path: &Path, env: &Environment) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let root: Value = serde_json::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source,
        })?;
        let Value::Object(root) = root else {
            return Err(ConfigError::FileNotObject {
                path: path.to_owned(),
            });
        };

        let origin = Origin::File(path.to_owned());
        let mut leaves = Vec::new();
        flatten(&mut Vec::new(), Value::Object(root), &mut leaves);
        for (segments, value) in leaves {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let key = canonical_or_error(&segments, &origin)?;
            let value = resolve_env_refs(&key, value, env, &origin)?;
            if !value.is_null() {
                self.insert(key, value, origin.clone());
            }
        }

        self.file_dir = path.parent().map(Path::to_owned);
        Ok(())
    }

    fn read_env(&mut self, env: &Environment) -> Result<(), ConfigError> {
        if let Some(name) = env.unreadable.first() {
            return Err(ConfigError::EnvNotUnicode { name: name.clone() });
        }
        for (name, value) in &env.vars {
            let Some(rest) = config_suffix(name) else {
                continue;
            };
            let segments = split_env(rest);
            let origin = Origin::Env(name.clone());
            let key = canonical_or_error(&segments, &origin)?;
            self.insert(key, Value::String(value.clone()), origin);
        }
        Ok(())
    }

    fn read_flags(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        if let Some(listen) = &flags.listen {
            let origin = Origin::Flag("--listen");
            self.insert(keys::SERVER_LISTEN.into(), listen.clone().into(), origin);
        }
        if let Some(data) = &flags.data {
            let origin = Origin::Flag("--data");
            let value = Value::String(data.to_string_lossy().into_owned());
            self.insert(keys::SERVER_DATA_DIR.into(), value, origin);
        }
        if flags.dev {
            self.insert(keys::DEV.into(), Value::Bool(true), Origin::Flag("--dev"));
        }
        if let Some(format) = &flags.log_format {
            let origin = Origin::Flag("--log-format");
            self.insert(keys::LOG_FORMAT.into(), format.clone().into(), origin);
        }

        // `--catalog` adds to the configured files instead of replacing them.
        let first = self.list_len(keys::CATALOG_FILES);
        for (index, file) in (first..).zip(&flags.catalog) {
            let key = format!("{}.{index}", keys::CATALOG_FILES);
            let value = Value::String(file.to_string_lossy().into_owned());
            self.insert(key, value, Origin::Flag("--catalog"));
        }

        for pair in &flags.downstream_urls {
            let origin = Origin::Flag("--downstream-url");
            let Some((name, url)) = pair.split_once('=').filter(|(n, _)| !n.is_empty()) else {
                return Err(ConfigError::Invalid {
                    key: keys::CATALOG_DOWNSTREAM_URLS.into(),
                    origin,
                    expected: "NAME=URL",
                    got: Some(pair.clone()),
                });
            };
            let key = format!("{}.{name}", keys::CATALOG_DOWNSTREAM_URLS);
            self.insert(key, Value::String(url.to_owned()), origin);
        }
        Ok(())
    }

    fn insert(&mut self, key: String, value: Value, origin: Origin) {
        self.leaves.insert(key, Setting { value, origin });
    }

    /// One past the highest index of a list key, 0 when it has no entries.
    fn list_len(&self, key: &str) -> usize {
        self.children(key)
            .filter_map(|(rest, _)| rest.split('.').next()?.parse::<usize>().ok())
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    }

    /// The setting of one value key.
    pub(super) fn get(&self, key: &str) -> Option<&Setting> {
        self.leaves.get(key)
    }

    /// The leaves below a list, map or rules key, with the path below it.
    pub(super) fn children<'a>(
        &'a self,
        key: &str,
    ) -> impl Iterator<Item = (&'a str, &'a Setting)> + use<'a> {
        let prefix = format!("{key}.");
        let skip = prefix.len();
        self.leaves
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(move |(k, v)| (&k[skip..], v))
    }
}

/// The part of a variable name after `Ithil__` (or `Ithil:`), compared case-insensitively.
fn config_suffix(name: &str) -> Option<&str> {
    let prefix = keys::ENV_PREFIX;
    let head = name.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = &name[prefix.len()..];
    rest.strip_prefix("__").or_else(|| rest.strip_prefix(':'))
}

fn split_env(rest: &str) -> Vec<&str> {
    if rest.contains("__") {
        rest.split("__").collect()
    } else {
        rest.split(':').collect()
    }
}

fn canonical_or_error(segments: &[&str], origin: &Origin) -> Result<String, ConfigError> {
    keys::canonical(segments).map_err(|mismatch| {
        let key = segments.join(".");
        match mismatch {
            Mismatch::Unknown => ConfigError::UnknownKey {
                key,
                origin: origin.clone(),
            },
            Mismatch::Container(expected) => ConfigError::Invalid {
                key,
                origin: origin.clone(),
                expected,
                got: None,
            },
        }
    })
}

/// Turns a JSON tree into leaves: scalars, and whole values at keys that hold one value (so that
/// `"issuer": {}` is refused as "expected a string" rather than as an unknown key).
fn flatten(path: &mut Vec<String>, value: Value, out: &mut Vec<(Vec<String>, Value)>) {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    if !path.is_empty() && keys::is_value_key(&segments) {
        out.push((path.clone(), value));
        return;
    }
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                path.push(name);
                flatten(path, child, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.into_iter().enumerate() {
                path.push(index.to_string());
                flatten(path, child, out);
                path.pop();
            }
        }
        scalar => out.push((path.clone(), scalar)),
    }
}

/// Replaces every `${env:NAME}` in a string value by the variable's value.
fn resolve_env_refs(
    key: &str,
    value: Value,
    env: &Environment,
    origin: &Origin,
) -> Result<Value, ConfigError> {
    const OPEN: &str = "${env:";

    let Value::String(text) = value else {
        return Ok(value);
    };
    if !text.contains(OPEN) {
        return Ok(Value::String(text));
    }

    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: origin.clone(),
                expected: "a closing `}` after `${env:NAME`",
                got: None,
            });
        };
        let name = &after[..end];
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: origin.clone(),
                expected: "`${env:NAME}` with NAME of letters, digits and `_`",
                got: None,
            });
        }
        let Some(found) = env.get(name) else {
            return Err(ConfigError::MissingEnv {
                key: key.to_owned(),
                origin: origin.clone(),
                name: name.to_owned(),
            });
        };
        out.push_str(found);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_variables_are_recognised_case_insensitively() {
        assert_eq!(config_suffix("Ithil__Admin__ApiKey"), Some("Admin__ApiKey"));
        assert_eq!(config_suffix("ITHIL__ADMIN__APIKEY"), Some("ADMIN__APIKEY"));
        assert_eq!(config_suffix("Ithil:Admin:ApiKey"), Some("Admin:ApiKey"));
        assert_eq!(config_suffix("IthilAdmin"), None);
        assert_eq!(config_suffix("PATH"), None);
        assert_eq!(config_suffix("Ith"), None);
    }

    #[test]
    fn environment_references_are_replaced_inside_strings() {
        let env: Environment = [("SECRET", "s3cr3t"), ("HOST", "localhost")]
            .into_iter()
            .collect();
        let origin = Origin::File("ithil.json".into());

        let value = resolve_env_refs(
            "admin.apiKey",
            Value::String("${env:SECRET}".into()),
            &env,
            &origin,
        )
        .unwrap();
        assert_eq!(value, "s3cr3t");

        let value = resolve_env_refs(
            "toolRegistry.downstreamBaseUrl",
            Value::String("http://${env:HOST}:5200/$x".into()),
            &env,
            &origin,
        )
        .unwrap();
        assert_eq!(value, "http://localhost:5200/$x");
    }

    #[test]
    fn a_missing_environment_reference_names_the_variable_and_the_key() {
        let env = Environment::default();
        let origin = Origin::File("ithil.json".into());

        let error = resolve_env_refs(
            "admin.apiKey",
            Value::String("${env:NOT_SET}".into()),
            &env,
            &origin,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("NOT_SET"), "{error}");
        assert!(error.contains("admin.apiKey"), "{error}");

        let error = resolve_env_refs(
            "admin.apiKey",
            Value::String("${env:OPEN".into()),
            &env,
            &origin,
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { .. }));
    }

    #[test]
    fn environment_debug_shows_names_but_no_values() {
        let env: Environment = [("Ithil__Admin__ApiKey", "very-secret-value")]
            .into_iter()
            .collect();
        let debug = format!("{env:?}");
        assert!(debug.contains("Ithil__Admin__ApiKey"));
        assert!(!debug.contains("very-secret-value"));
    }
}
