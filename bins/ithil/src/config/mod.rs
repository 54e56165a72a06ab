//! The gateway's configuration: one JSON file, overridden by environment variables, overridden by
//! command-line flags, parsed into one typed [`Config`].
//!
//! Every key is named once in [`keys`]; every value is parsed by one reader here that names the
//! key, where it came from and the form it expected. Secrets are never echoed.

pub mod keys;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use ithil_proxy::circuit::{CircuitConfig, CircuitConfigError};
use serde_json::Value;

pub use source::{Environment, Flags, Origin};
use source::{Setting, Settings};

/// A value that must never reach a log, a `Debug` print or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The whole configuration of one gateway process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening, request limits, the store and shutdown.
    pub server: ServerConfig,
    /// Development mode. Default is false.
    pub dev: bool,
    /// Token signing and claims.
    pub jwt: JwtConfig,
    /// Admin authentication.
    pub admin: AdminConfig,
    /// The default daily token limit. Default is 100000.
    pub default_daily_token_limit: u64,
    /// Catalog files and downstream URL overrides.
    pub catalog: CatalogConfig,
    /// Discovery of the single downstream of the simplest set-up.
    pub tool_registry: ToolRegistryConfig,
    /// Custom privacy rules, `privacy.customRules` then `privacyFilter.customRules`.
    pub privacy_rules: Vec<PrivacyRule>,
    /// Whether the audit trail is kept off stdout. Default is false.
    pub audit_disable_stdout_sink: bool,
    /// The format of the log lines on stderr. Default is [`LogFormat::Text`].
    pub log_format: LogFormat,
    /// MCP session limits.
    pub sessions: SessionsConfig,
    /// The MCP endpoint's origin policy and error statuses.
    pub mcp: McpConfig,
    /// The tokenizer that counts tool output. Default is `o200k_base`.
    pub budget_encoding: ithil_budget::Encoding,
    /// Days of usage history kept. Default is 90.
    pub budget_retention_days: u32,
    /// Days audit records are kept. Default is 90.
    pub audit_retention_days: u32,
    /// When a downstream's circuit opens and how long it stays open; already validated.
    /// Default is [`CircuitConfig::default`]: 5 calls, ratio 1.0, 30 s window, 30 s break.
    pub circuit_breaker: CircuitConfig,
    /// Benchmarks only: how tool calls are charged; set by `serve --bench-charging`, never by
    /// a key.
    #[cfg(feature = "bench")]
    pub bench_charging: crate::bench::Charging,
}

/// The format of the log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal. The default.
    #[default]
    Text,
    /// One JSON object per line, with the fields and spans of each event.
    Json,
}

/// The MCP endpoint's origin policy and error statuses.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Browser origins accepted besides loopback ones. Default is none.
    pub allowed_origins: Vec<String>,
    /// Whether loopback origins are accepted. Default is true.
    pub allow_loopback_origins: bool,
    /// How refusals show in the HTTP status. Default is HTTP 200 with the JSON-RPC error.
    pub error_status: ithil_proxy::gateway::ErrorStatus,
    /// The deepest nesting of arrays and objects a request body may have. Default is 64.
    pub max_json_depth: usize,
}

/// Listening, request limits, the store and shutdown.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The listening address. Default is `127.0.0.1:5100`.
    pub listen: SocketAddr,
    /// The largest request body read. Default is 1 MiB.
    pub max_body_bytes: usize,
    /// The largest request head (request line and headers) read. Default is 64 KiB.
    pub max_header_bytes: usize,
    /// How long a request head may take to arrive, counted from the moment the connection waits
    /// for it. Default is 10 seconds.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive, counted from the end of its head. Default is
    /// 30 seconds.
    pub body_read_timeout: Duration,
    /// How long a connection without a request in flight stays open. Default is 60 seconds.
    pub idle_timeout: Duration,
    /// How many connections one peer address may hold at once. Default is 1024.
    pub max_connections_per_peer: usize,
    /// The store's directory. Default is `./data`.
    pub data_dir: PathBuf,
    /// How long a graceful shutdown waits for requests in flight. Default is 25 seconds.
    pub shutdown_timeout: Duration,
}

/// Token signing and claims.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The configured signing key bytes; `None` means generate one and keep it in the store.
    pub signing_key: Option<Secret<Vec<u8>>>,
    /// Keys that verify tokens but never sign them, in the order of their indexes; each differs
    /// from the signing key and from the others. Default is none.
    pub previous_signing_keys: Vec<Secret<Vec<u8>>>,
    /// The issuer. Default is `ithil-dev`.
    pub issuer: String,
    /// The audience. Default is `ithil-gateway`.
    pub audience: String,
}

/// Admin authentication.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The API key exchanged for admin tokens; `None` turns the exchange off (404).
    pub api_key: Option<Secret<String>>,
    /// The lifetime of admin tokens in days. Default is 90.
    pub token_expiry_days: u32,
}

/// Catalog files and downstream URL overrides.
#[derive(Debug, Clone, Default)]
pub struct CatalogConfig {
    /// The files to load, configured ones first, then `--catalog` ones.
    pub files: Vec<PathBuf>,
    /// Base URL overrides by downstream name.
    pub downstream_urls: BTreeMap<String, String>,
}

/// Discovery of the single downstream of the simplest set-up.
#[derive(Debug, Clone)]
pub struct ToolRegistryConfig {
    /// The downstream whose tools are discovered. Default is none.
    pub downstream_base_url: Option<String>,
    /// Where it publishes them. Default is `/ithil/schema`.
    pub schema_path: String,
}

/// One custom privacy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyRule {
    /// The regular expression.
    pub pattern: String,
    /// What each match becomes. Default is `[REDACTED]`.
    pub replacement: String,
    /// The key it was configured under, such as `privacy.customRules.0`, for error messages.
    pub key: String,
}

/// MCP session limits.
#[derive(Debug, Clone)]
pub struct SessionsConfig {
    /// How long an idle session lives. Default is 30 minutes.
    pub idle_timeout: Duration,
    /// How many sessions one agent may hold. Default is 100.
    pub max_per_agent: usize,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The file is not JSON.
    #[error("configuration file {} is not valid JSON", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: serde_json::Error,
    },

    /// The file's top level is not an object.
    #[error("configuration file {} must hold a JSON object", path.display())]
    FileNotObject {
        /// The file.
        path: PathBuf,
    },

    /// A key that the gateway does not read, most likely a typo.
    #[error("unknown configuration key {key} {origin}{}", suggestion(key))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was written.
        origin: Origin,
    },

    /// A value of the wrong form.
    #[error(
        "invalid value for configuration key {key} {origin}: expected {expected}{}",
        got_text(got)
    )]
    Invalid {
        /// The key.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// The expected form.
        expected: &'static str,
        /// The value as given, shortened; `None` for secrets.
        got: Option<String>,
    },

    /// A secret that repeats another key's secret, such as a previous signing key equal to the
    /// signing key.
    #[error("configuration key {key} {origin} holds the same key as {other}; list each key once")]
    SameKey {
        /// The key that repeats.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The key it repeats.
        other: String,
    },

    /// A `${env:NAME}` reference to a variable that is not set.
    #[error(
        "configuration key {key} {origin} refers to environment variable {name}, which is not set"
    )]
    MissingEnv {
        /// The key.
        key: String,
        /// Where the reference was written.
        origin: Origin,
        /// The variable.
        name: String,
    },

    /// A configuration variable whose value is not valid Unicode.
    #[error("environment variable {name} is not valid unicode")]
    EnvNotUnicode {
        /// The variable.
        name: String,
    },
}

fn got_text(got: &Option<String>) -> String {
    match got {
        Some(value) => format!(", got {value}"),
        None => String::new(),
    }
}

fn suggestion(key: &str) -> String {
    let wanted = key.to_lowercase();
    let best = keys::KEYS
        .iter()
        .map(|spec| (edit_distance(&wanted, &spec.key.to_lowercase()), spec.key))
        .min();
    match best {
        Some((distance, key)) if distance <= 3 => format!(" (did you mean {key}?)"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

impl Config {
    /// Reads the configuration from the file named in `flags` (if any), then `env`, then `flags`.
    ///
    /// # Errors
    ///
    /// Returns an error naming the key when a file cannot be read, a key is unknown, or a
    /// value has the wrong form.
    pub fn load(flags: &Flags, env: &Environment) -> Result<Config, ConfigError> {
        let settings = Settings::collect(flags, env)?;
        let read = Reader {
            settings: &settings,
        };

        let server = ServerConfig {
            listen: read.listen()?,
            max_body_bytes: read.integer(
                keys::SERVER_MAX_BODY_BYTES,
                1024..=268_435_456,
                1024 * 1024,
                "a whole number of bytes from 1024 to 268435456",
            )? as usize,
            max_header_bytes: read.integer(
                keys::SERVER_MAX_HEADER_BYTES,
                8192..=1_048_576,
                64 * 1024,
                "a whole number of bytes from 8192 to 1048576",
            )? as usize,
            header_read_timeout: Duration::from_secs(read.integer(
                keys::SERVER_HEADER_READ_TIMEOUT_SECONDS,
                1..=300,
                10,
                "a whole number of seconds from 1 to 300",
            )?),
            body_read_timeout: Duration::from_secs(read.integer(
                keys::SERVER_BODY_READ_TIMEOUT_SECONDS,
                1..=30,
                30,
                "a whole number of seconds from 1 to 30",
            )?),
            idle_timeout: Duration::from_secs(read.integer(
                keys::SERVER_IDLE_TIMEOUT_SECONDS,
                1..=3600,
                60,
                "a whole number of seconds from 1 to 3600",
            )?),
            max_connections_per_peer: read.integer(
                keys::SERVER_MAX_CONNECTIONS_PER_PEER,
                1..=1_000_000,
                1024,
                "a whole number from 1 to 1000000",
            )? as usize,
            data_dir: read.path(keys::SERVER_DATA_DIR)?.unwrap_or("data".into()),
            shutdown_timeout: Duration::from_secs(read.integer(
                keys::SHUTDOWN_TIMEOUT_SECONDS,
                0..=3600,
                25,
                "a whole number of seconds from 0 to 3600",
            )?),
        };

        let signing_key = read.signing_key()?;
        let jwt = JwtConfig {
            previous_signing_keys: read.previous_signing_keys(signing_key.as_ref())?,
            signing_key,
            issuer: read.name(keys::JWT_ISSUER)?.unwrap_or("ithil-dev".into()),
            audience: read
                .name(keys::JWT_AUDIENCE)?
                .unwrap_or("ithil-gateway".into()),
        };

        let admin = AdminConfig {
            api_key: read.api_key()?,
            token_expiry_days: read.integer(
                keys::ADMIN_TOKEN_EXPIRY_DAYS,
                1..=3650,
                90,
                "a whole number of days from 1 to 3650",
            )? as u32,
        };

        let catalog = CatalogConfig {
            files: read.paths(keys::CATALOG_FILES)?,
            downstream_urls: read.urls(keys::CATALOG_DOWNSTREAM_URLS)?,
        };

        let tool_registry = ToolRegistryConfig {
            downstream_base_url: read.url(keys::TOOL_REGISTRY_DOWNSTREAM_BASE_URL)?,
            schema_path: read.schema_path()?,
        };

        let mut privacy_rules = read.rules(keys::PRIVACY_CUSTOM_RULES)?;
        privacy_rules.extend(read.rules(keys::PRIVACY_FILTER_CUSTOM_RULES)?);

        Ok(Config {
            server,
            dev: read.boolean(keys::DEV, false)?,
            jwt,
            admin,
            default_daily_token_limit: read.integer(
                keys::BUDGET_DEFAULT_DAILY_TOKEN_LIMIT,
                1..=1_000_000_000_000,
                100_000,
                "a whole number of tokens from 1 to 1000000000000",
            )?,
            catalog,
            tool_registry,
            privacy_rules,
            audit_disable_stdout_sink: read.boolean(keys::AUDIT_DISABLE_STDOUT_SINK, false)?,
            log_format: read.log_format()?,
            mcp: McpConfig {
                allowed_origins: read.origins(keys::MCP_ALLOWED_ORIGINS)?,
                allow_loopback_origins: read.boolean(keys::MCP_ALLOW_LOOPBACK_ORIGINS, true)?,
                error_status: read.error_status()?,
                max_json_depth: read.integer(
                    keys::MCP_MAX_JSON_DEPTH,
                    2..=128,
                    64,
                    "a whole number from 2 to 128",
                )? as usize,
            },
            budget_encoding: read.encoding()?,
            budget_retention_days: read.integer(
                keys::BUDGET_RETENTION_DAYS,
                1..=3650,
                90,
                "a whole number of days from 1 to 3650",
            )? as u32,
            audit_retention_days: read.integer(
                keys::AUDIT_RETENTION_DAYS,
                1..=36_500,
                90,
                "a whole number of days from 1 to 36500",
            )? as u32,
            sessions: SessionsConfig {
                idle_timeout: Duration::from_secs(read.integer(
                    keys::SESSIONS_IDLE_TIMEOUT_SECONDS,
                    1..=604_800,
                    1800,
                    "a whole number of seconds from 1 to 604800",
                )?),
                max_per_agent: read.integer(
                    keys::SESSIONS_MAX_PER_AGENT,
                    1..=10_000,
                    100,
                    "a whole number from 1 to 10000",
                )? as usize,
            },
            circuit_breaker: read.circuit_breaker()?,
            #[cfg(feature = "bench")]
            bench_charging: crate::bench::Charging::default(),
        })
    }
}

/// A one-line summary for the start-up log: no secrets, only whether they are set.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dev={} issuer={} audience={} signing_key={} previous_signing_keys={} admin_api_key={} \
             admin_token_days={} \
             default_daily_limit={} max_body_bytes={} max_header_bytes={} header_timeout={}s \
             body_timeout={}s idle_timeout={}s max_connections_per_peer={} shutdown_timeout={}s \
             catalog_files={} discovery={} circuit_breaker={}/{}/{}s/{}s",
            self.dev,
            self.jwt.issuer,
            self.jwt.audience,
            if self.jwt.signing_key.is_some() {
                "configured"
            } else {
                "stored"
            },
            self.jwt.previous_signing_keys.len(),
            if self.admin.api_key.is_some() {
                "set"
            } else {
                "unset"
            },
            self.admin.token_expiry_days,
            self.default_daily_token_limit,
            self.server.max_body_bytes,
            self.server.max_header_bytes,
            self.server.header_read_timeout.as_secs(),
            self.server.body_read_timeout.as_secs(),
            self.server.idle_timeout.as_secs(),
            self.server.max_connections_per_peer,
            self.server.shutdown_timeout.as_secs(),
            self.catalog.files.len(),
            self.tool_registry
                .downstream_base_url
                .as_deref()
                .unwrap_or("off"),
            self.circuit_breaker.minimum_throughput,
            self.circuit_breaker.failure_ratio,
            self.circuit_breaker.sampling_duration.as_secs(),
            self.circuit_breaker.break_duration.as_secs(),
        )
    }
}

/// Reads typed values out of the merged settings, naming the key on every error.
struct Reader<'a> {
    settings: &'a Settings,
}

impl Reader<'_> {
    fn invalid(key: &str, setting: &Setting, expected: &'static str, secret: bool) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: setting.origin.clone(),
            expected,
            got: (!secret).then(|| shorten(&setting.value)),
        }
    }

    /// A string value, or `None` when unset.
    fn text(&self, key: &str, secret: bool) -> Result<Option<(&str, &Setting)>, ConfigError> {
        let Some(setting) = self.settings.get(key) else {
            return Ok(None);
        };
        match &setting.value {
            Value::String(text) => Ok(Some((text, setting))),
            _ => Err(Self::invalid(key, setting, "a string", secret)),
        }
    }

    fn integer(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
        expected: &'static str,
    ) -> Result<u64, ConfigError> {
        let Some(setting) = self.settings.get(key) else {
            return Ok(default);
        };
        let number = match &setting.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => {
                let s = s.trim();
                (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok())
                    .flatten()
            }
            _ => None,
        };
        number
            .filter(|n| range.contains(n))
            .ok_or_else(|| Self::invalid(key, setting, expected, false))
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some(setting) = self.settings.get(key) else {
            return Ok(default);
        };
        match &setting.value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(Self::invalid(key, setting, "true or false", false)),
        }
    }

    /// A short printable name such as an issuer: 1 to 256 characters, no control characters.
    fn name(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok(None);
        };
        let chars = text.chars().count();
        if chars == 0 || chars > 256 || text.chars().any(char::is_control) {
            return Err(Self::invalid(
                key,
                setting,
                "1 to 256 characters without control characters",
                false,
            ));
        }
        Ok(Some(text.to_owned()))
    }

    fn listen(&self) -> Result<SocketAddr, ConfigError> {
        let key = keys::SERVER_LISTEN;
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 5100)));
        };
        let text = text.trim();
        let parsed = match text.strip_prefix("localhost:") {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            None => text.parse().ok(),
        };
        parsed.ok_or_else(|| {
            Self::invalid(
                key,
                setting,
                "IP:PORT such as 127.0.0.1:5100 or [::1]:5100",
                false,
            )
        })
    }

    /// A path; a relative one written in the file resolves against the file's directory.
    fn path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(setting) = self.settings.get(key) else {
            return Ok(None);
        };
        self.path_of(key, setting).map(Some)
    }

    fn path_of(&self, key: &str, setting: &Setting) -> Result<PathBuf, ConfigError> {
        let text = match &setting.value {
            Value::String(text) if !text.trim().is_empty() => text,
            _ => return Err(Self::invalid(key, setting, "a non-empty path", false)),
        };
        let path = PathBuf::from(text);
        Ok(match (&setting.origin, &self.settings.file_dir) {
            (Origin::File(_), Some(dir)) if path.is_relative() => dir.join(path),
            _ => path,
        })
    }

    fn paths(&self, key: &str) -> Result<Vec<PathBuf>, ConfigError> {
        let mut indexed: Vec<(usize, PathBuf)> = Vec::new();
        for (rest, setting) in self.settings.children(key) {
            let index = rest.parse().unwrap_or(usize::MAX);
            let full = format!("{key}.{rest}");
            indexed.push((index, self.path_of(&full, setting)?));
        }
        indexed.sort_by_key(|(index, _)| *index);
        Ok(indexed.into_iter().map(|(_, path)| path).collect())
    }

    fn url_of(key: &str, setting: &Setting) -> Result<String, ConfigError> {
        const EXPECTED: &str = "an http:// or https:// URL such as http://localhost:5200";
        let Value::String(text) = &setting.value else {
            return Err(Self::invalid(key, setting, EXPECTED, false));
        };
        let text = text.trim();
        let valid = text.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|a| !a.host().is_empty())
        });
        if valid {
            Ok(text.to_owned())
        } else {
            Err(Self::invalid(key, setting, EXPECTED, false))
        }
    }

    fn url(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.settings.get(key) {
            Some(setting) => Self::url_of(key, setting).map(Some),
            None => Ok(None),
        }
    }

    fn urls(&self, key: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut urls = BTreeMap::new();
        for (name, setting) in self.settings.children(key) {
            let url = Self::url_of(&format!("{key}.{name}"), setting)?;
            urls.insert(name.to_owned(), url);
        }
        Ok(urls)
    }

    fn origins(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        const EXPECTED: &str = "an origin such as https://app.example.com (scheme, host, port)";
        let mut indexed = Vec::new();
        for (rest, setting) in self.settings.children(key) {
            let full = format!("{key}.{rest}");
            let Value::String(text) = &setting.value else {
                return Err(Self::invalid(&full, setting, EXPECTED, false));
            };
            let text = text.trim().trim_end_matches('/');
            let valid = text.parse::<http::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
            });
            if !valid {
                return Err(Self::invalid(&full, setting, EXPECTED, false));
            }
            indexed.push((rest.parse().unwrap_or(usize::MAX), text.to_owned()));
        }
        indexed.sort();
        Ok(indexed.into_iter().map(|(_, origin)| origin).collect())
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        let key = keys::LOG_FORMAT;
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok(LogFormat::default());
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(Self::invalid(key, setting, "text or json", false)),
        }
    }

    fn error_status(&self) -> Result<ithil_proxy::gateway::ErrorStatus, ConfigError> {
        use ithil_proxy::gateway::ErrorStatus;

        let key = keys::MCP_ERROR_STATUS;
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok(ErrorStatus::default());
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "always200" => Ok(ErrorStatus::Always200),
            "reference" => Ok(ErrorStatus::Reference),
            _ => Err(Self::invalid(key, setting, "always200 or reference", false)),
        }
    }

    /// A number, such as a ratio: JSON number or decimal string; `None` when unset.
    fn number(&self, key: &str, expected: &'static str) -> Result<Option<f64>, ConfigError> {
        let Some(setting) = self.settings.get(key) else {
            return Ok(None);
        };
        let number = match &setting.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        number
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| Self::invalid(key, setting, expected, false))
    }

    /// The circuit breaker's keys, checked together by [`CircuitConfig::validate`].
    fn circuit_breaker(&self) -> Result<CircuitConfig, ConfigError> {
        const RATIO: &str = "a number greater than 0 and at most 1, such as 0.5";
        let defaults = CircuitConfig::default();
        let seconds = |key, default: Duration| {
            self.integer(
                key,
                1..=86_400,
                default.as_secs(),
                "a whole number of seconds from 1 to 86400",
            )
            .map(Duration::from_secs)
        };
        let config = CircuitConfig {
            minimum_throughput: self.integer(
                keys::CIRCUIT_BREAKER_MINIMUM_THROUGHPUT,
                1..=1_000_000,
                u64::from(defaults.minimum_throughput),
                "a whole number from 1 to 1000000",
            )? as u32,
            failure_ratio: self
                .number(keys::CIRCUIT_BREAKER_FAILURE_RATIO, RATIO)?
                .unwrap_or(defaults.failure_ratio),
            sampling_duration: seconds(
                keys::CIRCUIT_BREAKER_SAMPLING_DURATION_SECONDS,
                defaults.sampling_duration,
            )?,
            break_duration: seconds(
                keys::CIRCUIT_BREAKER_BREAK_DURATION_SECONDS,
                defaults.break_duration,
            )?,
        };

        // The library's own check has the last word; its fields map onto these keys.
        config.validate().map_err(|error| {
            let (key, expected) = match error {
                CircuitConfigError::MinimumThroughput => (
                    keys::CIRCUIT_BREAKER_MINIMUM_THROUGHPUT,
                    "a whole number from 1 to 1000000",
                ),
                CircuitConfigError::FailureRatio(_) => (keys::CIRCUIT_BREAKER_FAILURE_RATIO, RATIO),
                CircuitConfigError::SamplingDuration(_) => (
                    keys::CIRCUIT_BREAKER_SAMPLING_DURATION_SECONDS,
                    "a whole number of seconds from 1 to 86400",
                ),
                CircuitConfigError::BreakDuration(_) => (
                    keys::CIRCUIT_BREAKER_BREAK_DURATION_SECONDS,
                    "a whole number of seconds from 1 to 86400",
                ),
            };
            match self.settings.get(key) {
                Some(setting) => Self::invalid(key, setting, expected, false),
                // A default out of range would be a bug here; it still names the key.
                None => ConfigError::Invalid {
                    key: key.to_owned(),
                    origin: Origin::Flag("(default)"),
                    expected,
                    got: None,
                },
            }
        })?;
        Ok(config)
    }

    fn encoding(&self) -> Result<ithil_budget::Encoding, ConfigError> {
        let key = keys::BUDGET_ENCODING;
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok(ithil_budget::Encoding::default());
        };
        text.trim()
            .parse()
            .map_err(|_| Self::invalid(key, setting, "o200k_base or cl100k_base", false))
    }

    fn schema_path(&self) -> Result<String, ConfigError> {
        let key = keys::TOOL_REGISTRY_SCHEMA_PATH;
        let Some((text, setting)) = self.text(key, false)? else {
            return Ok("/ithil/schema".into());
        };
        let valid = text.starts_with('/')
            && text.len() <= 1024
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(text.to_owned())
        } else {
            Err(Self::invalid(
                key,
                setting,
                "a path starting with / and without spaces",
                false,
            ))
        }
    }

    fn rules(&self, key: &str) -> Result<Vec<PrivacyRule>, ConfigError> {
        let mut by_index: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
        for (rest, setting) in self.settings.children(key) {
            let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
            let index = index.parse().unwrap_or(usize::MAX);
            let full = format!("{key}.{rest}");
            let Value::String(text) = &setting.value else {
                return Err(Self::invalid(&full, setting, "a string", false));
            };
            let entry = by_index.entry(index).or_default();
            if field == "pattern" {
                entry.0 = Some(text.clone());
            } else {
                entry.1 = Some(text.clone());
            }
        }

        let mut rules = Vec::with_capacity(by_index.len());
        for (index, (pattern, replacement)) in by_index {
            let rule_key = format!("{key}.{index}");
            let pattern = pattern.filter(|p| !p.is_empty()).ok_or_else(|| {
                let origin = self
                    .settings
                    .children(&rule_key)
                    .next()
                    .map(|(_, s)| s.origin.clone())
                    .unwrap_or(Origin::Flag("(none)"));
                ConfigError::Invalid {
                    key: format!("{rule_key}.pattern"),
                    origin,
                    expected: "a non-empty regular expression",
                    got: None,
                }
            })?;
            rules.push(PrivacyRule {
                pattern,
                replacement: replacement.unwrap_or_else(|| "[REDACTED]".into()),
                key: rule_key,
            });
        }
        Ok(rules)
    }

    fn signing_key(&self) -> Result<Option<Secret<Vec<u8>>>, ConfigError> {
        let key = keys::JWT_SIGNING_KEY;
        match self.settings.get(key) {
            Some(setting) => Self::signing_key_of(key, setting).map(Some),
            None => Ok(None),
        }
    }

    /// The verify-only keys, each read as [`Reader::signing_key_of`] reads the signing key;
    /// a key equal to `signing` or to an earlier one is refused, naming both.
    fn previous_signing_keys(
        &self,
        signing: Option<&Secret<Vec<u8>>>,
    ) -> Result<Vec<Secret<Vec<u8>>>, ConfigError> {
        let list = keys::JWT_PREVIOUS_SIGNING_KEYS;
        let mut indexed = Vec::new();
        for (rest, setting) in self.settings.children(list) {
            let index: usize = rest.parse().unwrap_or(usize::MAX);
            let key = format!("{list}.{rest}");
            indexed.push((index, Self::signing_key_of(&key, setting)?, key, setting));
        }
        indexed.sort_by_key(|(index, ..)| *index);

        let mut seen: Vec<(&str, &Secret<Vec<u8>>)> = Vec::new();
        if let Some(signing) = signing {
            seen.push((keys::JWT_SIGNING_KEY, signing));
        }
        for (_, secret, key, setting) in &indexed {
            if let Some((other, _)) = seen.iter().find(|(_, earlier)| *earlier == secret) {
                return Err(ConfigError::SameKey {
                    key: key.clone(),
                    origin: setting.origin.clone(),
                    other: (*other).to_owned(),
                });
            }
            seen.push((key, secret));
        }
        Ok(indexed.into_iter().map(|(_, secret, ..)| secret).collect())
    }

    /// A signing key: the UTF-8 bytes of a string, or the decoded bytes of a `base64:` one; at
    /// least 32 bytes. Errors name `key` but never show the value.
    fn signing_key_of(key: &str, setting: &Setting) -> Result<Secret<Vec<u8>>, ConfigError> {
        let Value::String(text) = &setting.value else {
            return Err(Self::invalid(key, setting, "a string", true));
        };
        let bytes = match text.strip_prefix("base64:") {
            Some(encoded) => BASE64_ANY_PADDING
                .decode(encoded.trim())
                .map_err(|_| Self::invalid(key, setting, "valid base64 after `base64:`", true))?,
            None => text.as_bytes().to_vec(),
        };
        if bytes.len() < 32 {
            return Err(Self::invalid(key, setting, "at least 32 bytes", true));
        }
        Ok(Secret(bytes))
    }

    fn api_key(&self) -> Result<Option<Secret<String>>, ConfigError> {
        let key = keys::ADMIN_API_KEY;
        let Some((text, setting)) = self.text(key, true)? else {
            return Ok(None);
        };
        if text.chars().count() < 16 || text.chars().any(char::is_control) {
            return Err(Self::invalid(
                key,
                setting,
                "at least 16 characters without control characters (openssl rand -hex 32 makes one)",
                true,
            ));
        }
        Ok(Some(Secret(text.to_owned())))
    }
}

/// Standard base64, with or without padding.
const BASE64_ANY_PADDING: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A value as it may appear in an error message: JSON, at most 80 characters.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 {
        text
    } else {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests;
