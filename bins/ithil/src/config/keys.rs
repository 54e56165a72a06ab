//! Every configuration key in one place: its name, its shape, its type and its default.
//!
//! A key is written in the file's form, camelCase sections joined by dots (`admin.apiKey`). The
//! environment form is derived from it (`Ithil__Admin__ApiKey`, matched case-insensitively) and
//! the flags map onto the same keys, so one table serves the parser, the error messages and
//! `docs/configuration.md`.

/// The prefix of every environment variable the gateway reads as configuration.
pub const ENV_PREFIX: &str = "Ithil";

/// The HMAC-SHA256 signing key of issued tokens.
pub const JWT_SIGNING_KEY: &str = "jwt.signingKey";
/// Keys that still verify tokens but never sign, a list; for key rotation.
pub const JWT_PREVIOUS_SIGNING_KEYS: &str = "jwt.previousSigningKeys";
/// The `iss` claim written into tokens and required on incoming ones.
pub const JWT_ISSUER: &str = "jwt.issuer";
/// The `aud` claim written into tokens and required on incoming ones.
pub const JWT_AUDIENCE: &str = "jwt.audience";
/// The API key that `POST /auth/admin/token` exchanges for an admin token.
pub const ADMIN_API_KEY: &str = "admin.apiKey";
/// The lifetime of admin tokens, in days.
pub const ADMIN_TOKEN_EXPIRY_DAYS: &str = "admin.tokenExpiryDays";
/// The daily token limit of agents without their own.
pub const BUDGET_DEFAULT_DAILY_TOKEN_LIMIT: &str = "budget.defaultDailyTokenLimit";
/// The address the server listens on.
pub const SERVER_LISTEN: &str = "server.listen";
/// The largest request body the server reads.
pub const SERVER_MAX_BODY_BYTES: &str = "server.maxBodyBytes";
/// The largest request head (request line and headers) the server reads.
pub const SERVER_MAX_HEADER_BYTES: &str = "server.maxHeaderBytes";
/// How long a client may take to send a request's head, in seconds.
pub const SERVER_HEADER_READ_TIMEOUT_SECONDS: &str = "server.headerReadTimeoutSeconds";
/// How long a client may take to send a request's body, in seconds.
pub const SERVER_BODY_READ_TIMEOUT_SECONDS: &str = "server.bodyReadTimeoutSeconds";
/// How long a connection without a request in flight stays open, in seconds.
pub const SERVER_IDLE_TIMEOUT_SECONDS: &str = "server.idleTimeoutSeconds";
/// How many connections one peer address may hold at once.
pub const SERVER_MAX_CONNECTIONS_PER_PEER: &str = "server.maxConnectionsPerPeer";
/// The directory of the store.
pub const SERVER_DATA_DIR: &str = "server.dataDir";
/// How long a graceful shutdown waits for requests in flight.
pub const SHUTDOWN_TIMEOUT_SECONDS: &str = "shutdown.timeoutSeconds";
/// The format of the log lines on stderr.
pub const LOG_FORMAT: &str = "log.format";
/// Development mode.
pub const DEV: &str = "dev";
/// Catalog files loaded at start, a list.
pub const CATALOG_FILES: &str = "catalog.files";
/// Base URL overrides by downstream name, a map.
pub const CATALOG_DOWNSTREAM_URLS: &str = "catalog.downstreamUrls";
/// The single discovered downstream of the simplest set-up.
pub const TOOL_REGISTRY_DOWNSTREAM_BASE_URL: &str = "toolRegistry.downstreamBaseUrl";
/// Where a discovered downstream publishes its tools.
pub const TOOL_REGISTRY_SCHEMA_PATH: &str = "toolRegistry.schemaPath";
/// Custom privacy rules, a list of `{pattern, replacement}`.
pub const PRIVACY_CUSTOM_RULES: &str = "privacy.customRules";
/// The documented alias of [`PRIVACY_CUSTOM_RULES`].
pub const PRIVACY_FILTER_CUSTOM_RULES: &str = "privacyFilter.customRules";
/// Whether the audit trail is kept off stdout.
pub const AUDIT_DISABLE_STDOUT_SINK: &str = "audit.disableStdoutSink";
/// The tokenizer that counts tool output.
pub const BUDGET_ENCODING: &str = "budget.encoding";
/// How many days of budget usage history are kept.
pub const BUDGET_RETENTION_DAYS: &str = "budget.retentionDays";
/// How many days audit records are kept.
pub const AUDIT_RETENTION_DAYS: &str = "audit.retentionDays";
/// Browser origins accepted at `/mcp` beyond loopback ones, a list.
pub const MCP_ALLOWED_ORIGINS: &str = "mcp.allowedOrigins";
/// Whether loopback browser origins are accepted at `/mcp`.
pub const MCP_ALLOW_LOOPBACK_ORIGINS: &str = "mcp.allowLoopbackOrigins";
/// How MCP refusals show in the HTTP status.
pub const MCP_ERROR_STATUS: &str = "mcp.errorStatus";
/// The deepest nesting of arrays and objects an MCP request body may have.
pub const MCP_MAX_JSON_DEPTH: &str = "mcp.maxJsonDepth";
/// How many calls a circuit must have sampled before it may open.
pub const CIRCUIT_BREAKER_MINIMUM_THROUGHPUT: &str = "circuitBreaker.minimumThroughput";
/// The share of failed sampled calls that opens a circuit.
pub const CIRCUIT_BREAKER_FAILURE_RATIO: &str = "circuitBreaker.failureRatio";
/// How far back a circuit samples calls, in seconds.
pub const CIRCUIT_BREAKER_SAMPLING_DURATION_SECONDS: &str =
    "circuitBreaker.samplingDurationSeconds";
/// How long an open circuit refuses calls before one probe, in seconds.
pub const CIRCUIT_BREAKER_BREAK_DURATION_SECONDS: &str = "circuitBreaker.breakDurationSeconds";
/// How long an idle MCP session lives, in seconds.
pub const SESSIONS_IDLE_TIMEOUT_SECONDS: &str = "sessions.idleTimeoutSeconds";
/// How many MCP sessions one agent may hold.
pub const SESSIONS_MAX_PER_AGENT: &str = "sessions.maxPerAgent";

/// What may follow a key's own segments in a full key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Nothing: the key holds one value.
    Value,
    /// An index: `catalog.files.0`.
    List,
    /// A name, kept as written: `catalog.downstreamUrls.placeholder`.
    Map,
    /// An index and a field of a privacy rule: `privacy.customRules.0.pattern`.
    Rules,
}

/// The fields of one privacy rule, as they follow an index under a [`Shape::Rules`] key.
pub const RULE_FIELDS: &[&str] = &["pattern", "replacement"];

/// One documented key.
#[derive(Debug)]
pub struct KeySpec {
    /// The key in the file's form.
    pub key: &'static str,
    /// What may follow it.
    pub shape: Shape,
    /// The type, as the documentation names it.
    pub kind: &'static str,
    /// The default, as the documentation names it.
    pub default: &'static str,
    /// The flag that also sets it, if any.
    pub flag: Option<&'static str>,
    /// What it means.
    pub meaning: &'static str,
}

/// Every key the gateway reads; anything else in the file or the environment is refused.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: JWT_SIGNING_KEY,
        shape: Shape::Value,
        kind: "secret string",
        default: "generated on first start and kept in the store",
        flag: None,
        meaning: "HMAC-SHA256 key of issued tokens: the UTF-8 bytes of the string, or the \
                  decoded bytes of a `base64:` value; at least 32 bytes",
    },
    KeySpec {
        key: JWT_PREVIOUS_SIGNING_KEYS,
        shape: Shape::List,
        kind: "list of secret strings",
        default: "`[]`",
        flag: None,
        meaning: "keys that verify tokens but never sign, each in the form of `jwt.signingKey` and \
                  different from it and from the others; keep the old key here after a rotation \
                  until its tokens have expired (see `docs/agent-management.md`)",
    },
    KeySpec {
        key: JWT_ISSUER,
        shape: Shape::Value,
        kind: "string",
        default: "`ithil-dev`",
        flag: None,
        meaning: "`iss` written into issued tokens and required on incoming ones",
    },
    KeySpec {
        key: JWT_AUDIENCE,
        shape: Shape::Value,
        kind: "string",
        default: "`ithil-gateway`",
        flag: None,
        meaning: "`aud` written into issued tokens and required on incoming ones",
    },
    KeySpec {
        key: ADMIN_API_KEY,
        shape: Shape::Value,
        kind: "secret string, at least 16 characters",
        default: "unset (`POST /auth/admin/token` answers 404)",
        flag: None,
        meaning: "the key `POST /auth/admin/token` exchanges for an admin token",
    },
    KeySpec {
        key: ADMIN_TOKEN_EXPIRY_DAYS,
        shape: Shape::Value,
        kind: "integer, 1 to 3650",
        default: "`90`",
        flag: None,
        meaning: "lifetime of admin tokens in days",
    },
    KeySpec {
        key: BUDGET_DEFAULT_DAILY_TOKEN_LIMIT,
        shape: Shape::Value,
        kind: "integer, 1 to 10^12",
        default: "`100000`",
        flag: None,
        meaning: "daily token limit of agents without their own",
    },
    KeySpec {
        key: BUDGET_ENCODING,
        shape: Shape::Value,
        kind: "`o200k_base` or `cl100k_base`",
        default: "`o200k_base`",
        flag: None,
        meaning: "the tokenizer that counts tool output against budgets and `maxResponseTokens`",
    },
    KeySpec {
        key: BUDGET_RETENTION_DAYS,
        shape: Shape::Value,
        kind: "integer, 1 to 3650",
        default: "`90`",
        flag: None,
        meaning: "days of per-agent usage history kept",
    },
    KeySpec {
        key: SERVER_LISTEN,
        shape: Shape::Value,
        kind: "socket address `IP:PORT`",
        default: "`127.0.0.1:5100`",
        flag: Some("--listen"),
        meaning: "address the server listens on (port 0 picks a free port)",
    },
    KeySpec {
        key: SERVER_MAX_BODY_BYTES,
        shape: Shape::Value,
        kind: "integer, 1024 to 268435456",
        default: "`1048576` (1 MiB)",
        flag: None,
        meaning: "largest request body read; larger ones get 413",
    },
    KeySpec {
        key: SERVER_MAX_HEADER_BYTES,
        shape: Shape::Value,
        kind: "integer, 8192 to 1048576",
        default: "`65536` (64 KiB)",
        flag: None,
        meaning: "largest request head (request line and headers; for HTTP/2 the header list) \
                  read; a larger one gets 431 and the connection closes",
    },
    KeySpec {
        key: SERVER_HEADER_READ_TIMEOUT_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 300",
        default: "`10`",
        flag: None,
        meaning: "time allowed for a request head, counted from the moment the connection waits \
                  for it (so it also bounds an idle HTTP/1.1 keep-alive connection); when it runs \
                  out the connection closes",
    },
    KeySpec {
        key: SERVER_BODY_READ_TIMEOUT_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 30",
        default: "`30`",
        flag: None,
        meaning: "time allowed for a whole request body, counted from the end of its head; when \
                  it runs out the request gets 408 and the connection closes",
    },
    KeySpec {
        key: SERVER_IDLE_TIMEOUT_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 3600",
        default: "`60`",
        flag: None,
        meaning: "a connection without a request in flight for this long is closed (HTTP/2 gets \
                  GOAWAY)",
    },
    KeySpec {
        key: SERVER_MAX_CONNECTIONS_PER_PEER,
        shape: Shape::Value,
        kind: "integer, 1 to 1000000",
        default: "`1024`",
        flag: None,
        meaning: "open connections one peer (an IPv4 address, or an IPv6 /64) may hold; one more \
                  gets 503 and is closed at once",
    },
    KeySpec {
        key: SERVER_DATA_DIR,
        shape: Shape::Value,
        kind: "path",
        default: "`./data`",
        flag: Some("--data"),
        meaning: "directory of the store `ithil.redb`, created when missing",
    },
    KeySpec {
        key: SHUTDOWN_TIMEOUT_SECONDS,
        shape: Shape::Value,
        kind: "integer, 0 to 3600",
        default: "`25`",
        flag: None,
        meaning: "how long a graceful shutdown waits for requests in flight",
    },
    KeySpec {
        key: LOG_FORMAT,
        shape: Shape::Value,
        kind: "`text` or `json`",
        default: "`text`",
        flag: Some("--log-format"),
        meaning: "log lines on stderr: human-readable text, or one JSON object per line (the \
                  level is set with `RUST_LOG`, default `info`); see `docs/observability.md`",
    },
    KeySpec {
        key: DEV,
        shape: Shape::Value,
        kind: "boolean",
        default: "`false`",
        flag: Some("--dev"),
        meaning: "development mode: `GET /dev/admin-token` and `GET /dev/token` answer to \
                  loopback peers",
    },
    KeySpec {
        key: CATALOG_FILES,
        shape: Shape::List,
        kind: "list of paths",
        default: "`[]`",
        flag: Some("--catalog"),
        meaning: "catalog files (manifests or OpenAPI documents) loaded at start; the flag adds \
                  to the list",
    },
    KeySpec {
        key: CATALOG_DOWNSTREAM_URLS,
        shape: Shape::Map,
        kind: "map of downstream name to URL",
        default: "`{}`",
        flag: Some("--downstream-url"),
        meaning: "base URL overrides by downstream name (`--downstream-url NAME=URL`)",
    },
    KeySpec {
        key: TOOL_REGISTRY_DOWNSTREAM_BASE_URL,
        shape: Shape::Value,
        kind: "http(s) URL",
        default: "unset",
        flag: None,
        meaning: "the single downstream of the simplest set-up; when set, its tools are discovered",
    },
    KeySpec {
        key: TOOL_REGISTRY_SCHEMA_PATH,
        shape: Shape::Value,
        kind: "path starting with `/`",
        default: "`/ithil/schema`",
        flag: None,
        meaning: "where a discovered downstream publishes its tools",
    },
    KeySpec {
        key: PRIVACY_CUSTOM_RULES,
        shape: Shape::Rules,
        kind: "list of `{pattern, replacement}`",
        default: "`[]`",
        flag: None,
        meaning: "privacy rules applied after the built-in ones, in order; `replacement` \
                  defaults to `[REDACTED]`",
    },
    KeySpec {
        key: PRIVACY_FILTER_CUSTOM_RULES,
        shape: Shape::Rules,
        kind: "list of `{pattern, replacement}`",
        default: "`[]`",
        flag: None,
        meaning: "alias of `privacy.customRules`; its rules follow those",
    },
    KeySpec {
        key: AUDIT_DISABLE_STDOUT_SINK,
        shape: Shape::Value,
        kind: "boolean",
        default: "`false`",
        flag: None,
        meaning: "keep the audit trail off stdout (it is written there as JSON Lines by default)",
    },
    KeySpec {
        key: AUDIT_RETENTION_DAYS,
        shape: Shape::Value,
        kind: "integer, 1 to 36500",
        default: "`90`",
        flag: None,
        meaning: "audit records older than this are deleted in the background",
    },
    KeySpec {
        key: MCP_ALLOWED_ORIGINS,
        shape: Shape::List,
        kind: "list of origins such as `https://app.example.com`",
        default: "`[]`",
        flag: None,
        meaning: "browser origins accepted at `/mcp` besides loopback ones (requests without \
                  `Origin` are always accepted)",
    },
    KeySpec {
        key: MCP_ALLOW_LOOPBACK_ORIGINS,
        shape: Shape::Value,
        kind: "boolean",
        default: "`true`",
        flag: None,
        meaning: "accept `Origin`s on loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) at `/mcp`",
    },
    KeySpec {
        key: MCP_ERROR_STATUS,
        shape: Shape::Value,
        kind: "`always200` or `reference`",
        default: "`always200`",
        flag: None,
        meaning: "`always200` answers MCP refusals with HTTP 200 and the JSON-RPC error (401 \
                  stays); `reference` uses 403, 429, 502 and 503 as the reference does",
    },
    KeySpec {
        key: MCP_MAX_JSON_DEPTH,
        shape: Shape::Value,
        kind: "integer, 2 to 128",
        default: "`64`",
        flag: None,
        meaning: "deepest nesting of arrays and objects an MCP request body may have; a deeper \
                  body gets 400 before it is parsed",
    },
    KeySpec {
        key: CIRCUIT_BREAKER_MINIMUM_THROUGHPUT,
        shape: Shape::Value,
        kind: "integer, 1 to 1000000",
        default: "`5`",
        flag: None,
        meaning: "calls a downstream's circuit must have sampled within the sampling window \
                  before it may open",
    },
    KeySpec {
        key: CIRCUIT_BREAKER_FAILURE_RATIO,
        shape: Shape::Value,
        kind: "number, more than 0 and at most 1",
        default: "`1.0`",
        flag: None,
        meaning: "share of failed sampled calls (5xx, timeouts, refused or broken connections) \
                  at which the circuit opens; 1.0 opens it only when every sampled call failed",
    },
    KeySpec {
        key: CIRCUIT_BREAKER_SAMPLING_DURATION_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 86400",
        default: "`30`",
        flag: None,
        meaning: "how far back a circuit samples calls, in seconds",
    },
    KeySpec {
        key: CIRCUIT_BREAKER_BREAK_DURATION_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 86400",
        default: "`30`",
        flag: None,
        meaning: "how long an open circuit refuses every call (503 / -32003) before it lets one \
                  probe through, in seconds",
    },
    KeySpec {
        key: SESSIONS_IDLE_TIMEOUT_SECONDS,
        shape: Shape::Value,
        kind: "integer, 1 to 604800",
        default: "`1800`",
        flag: None,
        meaning: "how long an idle MCP session lives",
    },
    KeySpec {
        key: SESSIONS_MAX_PER_AGENT,
        shape: Shape::Value,
        kind: "integer, 1 to 10000",
        default: "`100`",
        flag: None,
        meaning: "MCP sessions one agent may hold; at the cap the least recently used is dropped",
    },
];

/// The environment variable name of a key in the file's form: `admin.apiKey` gives
/// `Ithil__Admin__ApiKey`.
pub fn env_name(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for segment in key.split('.') {
        name.push_str("__");
        let mut chars = segment.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// The table of every key as Markdown, as `docs/configuration.md` shows it and
/// `ithil config-keys` prints it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | environment variable | flag | type | default | meaning |\n\
         |---|---|---|---|---|---|\n",
    );
    for spec in KEYS {
        let env = match spec.shape {
            Shape::Value => env_name(spec.key),
            Shape::List => format!("{}__0", env_name(spec.key)),
            Shape::Map => format!("{}__NAME", env_name(spec.key)),
            Shape::Rules => format!("{}__0__Pattern", env_name(spec.key)),
        };
        out.push_str(&format!(
            "| `{}` | `{env}` | {} | {} | {} | {} |\n",
            spec.key,
            spec.flag
                .map_or_else(|| "".to_owned(), |f| format!("`{f}`")),
            spec.kind,
            spec.default,
            spec.meaning,
        ));
    }
    out
}

/// Why a key path matched no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Nothing is called that.
    Unknown,
    /// The path stops where a list, a map or an object was expected; carries the expected form.
    Container(&'static str),
}

/// Maps the segments of a key path, compared case-insensitively, to the key's canonical form:
/// `["ADMIN", "apikey"]` gives `admin.apiKey`, `["catalog", "files", "03"]` gives
/// `catalog.files.3`.
pub fn canonical(segments: &[&str]) -> Result<String, Mismatch> {
    let mut mismatch = Mismatch::Unknown;

    for spec in KEYS {
        let own: Vec<&str> = spec.key.split('.').collect();
        let shared = own.len().min(segments.len());
        let prefix_matches = own
            .iter()
            .zip(segments)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
        if !prefix_matches || shared == 0 {
            continue;
        }
        if segments.len() < own.len() {
            mismatch = Mismatch::Container("an object");
            continue;
        }

        let rest = &segments[own.len()..];
        let found = match (spec.shape, rest) {
            (Shape::Value, []) => Some(spec.key.to_owned()),
            (Shape::List, [index]) => parse_index(index).map(|i| format!("{}.{i}", spec.key)),
            (Shape::Map, [name]) if !name.is_empty() => Some(format!("{}.{name}", spec.key)),
            (Shape::Rules, [index, field]) => parse_index(index).and_then(|i| {
                RULE_FIELDS
                    .iter()
                    .find(|f| f.eq_ignore_ascii_case(field))
                    .map(|f| format!("{}.{i}.{f}", spec.key))
            }),
            (Shape::List, []) => {
                mismatch = Mismatch::Container("a list");
                None
            }
            (Shape::Map, []) => {
                mismatch = Mismatch::Container("an object of names to values");
                None
            }
            (Shape::Rules, [] | [_]) => {
                mismatch = Mismatch::Container("a list of {pattern, replacement} objects");
                None
            }
            _ => None,
        };
        if let Some(found) = found {
            return Ok(found);
        }
    }

    Err(mismatch)
}

/// Tells whether a path of segments names exactly a [`Shape::Value`] key, where the file's value
/// is taken whole even if it is an object or a list (and then refused with the expected form).
pub fn is_value_key(segments: &[&str]) -> bool {
    KEYS.iter().any(|spec| {
        spec.shape == Shape::Value && {
            let own: Vec<&str> = spec.key.split('.').collect();
            own.len() == segments.len()
                && own
                    .iter()
                    .zip(segments)
                    .all(|(a, b)| a.eq_ignore_ascii_case(b))
        }
    })
}

fn parse_index(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|i| *i < 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_follow_the_file_structure() {
        assert_eq!(env_name(ADMIN_API_KEY), "Ithil__Admin__ApiKey");
        assert_eq!(
            env_name(BUDGET_DEFAULT_DAILY_TOKEN_LIMIT),
            "Ithil__Budget__DefaultDailyTokenLimit"
        );
        assert_eq!(env_name(DEV), "Ithil__Dev");
        assert_eq!(
            env_name(CIRCUIT_BREAKER_MINIMUM_THROUGHPUT),
            "Ithil__CircuitBreaker__MinimumThroughput"
        );
    }

    #[test]
    fn key_paths_match_case_insensitively() {
        assert_eq!(canonical(&["ADMIN", "apikey"]).unwrap(), ADMIN_API_KEY);
        assert_eq!(canonical(&["Jwt", "SigningKey"]).unwrap(), JWT_SIGNING_KEY);
        assert_eq!(
            canonical(&["JWT", "previoussigningkeys", "1"]).unwrap(),
            "jwt.previousSigningKeys.1"
        );
        assert_eq!(canonical(&["dev"]).unwrap(), DEV);
    }

    #[test]
    fn lists_maps_and_rules_take_their_extra_segments() {
        assert_eq!(
            canonical(&["catalog", "files", "03"]).unwrap(),
            "catalog.files.3"
        );
        assert_eq!(
            canonical(&["Catalog", "DownstreamUrls", "Placeholder"]).unwrap(),
            "catalog.downstreamUrls.Placeholder"
        );
        assert_eq!(
            canonical(&["privacyfilter", "customrules", "1", "PATTERN"]).unwrap(),
            "privacyFilter.customRules.1.pattern"
        );
    }

    #[test]
    fn unknown_and_incomplete_paths_are_told_apart() {
        assert_eq!(canonical(&["admin", "apiKye"]), Err(Mismatch::Unknown));
        assert_eq!(canonical(&["nothing"]), Err(Mismatch::Unknown));
        assert_eq!(canonical(&["admin"]), Err(Mismatch::Container("an object")));
        assert_eq!(
            canonical(&["catalog", "files"]),
            Err(Mismatch::Container("a list"))
        );
        assert_eq!(
            canonical(&["catalog", "files", "x"]),
            Err(Mismatch::Unknown)
        );
        assert_eq!(
            canonical(&["privacy", "customRules", "0", "colour"]),
            Err(Mismatch::Unknown)
        );
    }

    #[test]
    fn the_configuration_guide_lists_every_key_as_the_code_does() {
        let guide = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let text = std::fs::read_to_string(guide).expect("docs/configuration.md exists");
        assert!(
            text.contains(&markdown_table()),
            "docs/configuration.md is out of date; paste the output of `ithil config-keys`"
        );
    }

    #[test]
    fn every_key_is_unique() {
        let mut names: Vec<String> = KEYS.iter().map(|k| k.key.to_lowercase()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
    }
}
