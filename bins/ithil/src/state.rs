//! Everything a request handler needs, built once at start from the configuration and the store.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ithil_audit::{AuditError, AuditLog, AuditRecord};
use ithil_budget::{Budget, BudgetConfig, BudgetError, ChargeHandle, ChargeWriter};
use ithil_proxy::catalog::{Catalog, CatalogError};
use ithil_proxy::circuit::{CircuitBreakers, CircuitConfigError, Transition};
use ithil_proxy::gateway::{
    AuditSink, Gateway, GatewayConfig, GatewayDeps, Observer, TransitionSink,
};
use ithil_proxy::privacy::{CustomRule, PrivacyError, PrivacyFilter};
use ithil_registry::{Credentials, Registry, RegistryError};
use ithil_token::{Clock, KeyError, KeyRing, SigningKey};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};
use tracing::{debug, info, warn};

use crate::catalog::CatalogSource;
use crate::config::{Config, Environment, Secret};
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreError};
use crate::throttle::FailureThrottle;

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The registry could not be opened on the store.
    #[error("cannot open the agent registry")]
    Registry(#[source] RegistryError),

    /// The signing key was refused or could not be generated.
    #[error("signing key unusable")]
    Key(#[source] KeyError),

    /// The budget tables could not be opened.
    #[error("cannot open the budget store")]
    Budget(#[source] BudgetError),

    /// The audit tables could not be opened.
    #[error("cannot open the audit trail")]
    Audit(#[source] AuditError),

    /// A custom privacy rule is unusable.
    #[error("invalid configuration value for configuration key {key}")]
    Privacy {
        /// The rule's key, such as `privacy.customRules.0`.
        key: String,
        /// Why.
        #[source]
        source: PrivacyError,
    },

    /// A catalog file or the discovered downstream is unusable.
    #[error("cannot load the tool catalog")]
    Catalog(#[source] CatalogError),

    /// The circuit breaker's configuration is out of range.
    #[error("invalid circuit breaker configuration")]
    Circuit(#[source] CircuitConfigError),

    /// Two keys of the ring have the same key id: a previous signing key equal to the generated
    /// signing key, or (very unlikely) two different keys whose ids collide.
    #[error(
        "two signing keys have the key id {kid}; remove the repeated one from \
         jwt.previousSigningKeys"
    )]
    DuplicateKeyId {
        /// The shared key id.
        kid: String,
    },

    /// The system random source failed.
    #[error("the system random source failed")]
    Random,
}

/// The shared state of the HTTP handlers.
pub struct AppState {
    /// The store, for the server's own meta table.
    pub store: Store,
    /// The agents.
    pub registry: Arc<Registry>,
    /// Issues and verifies tokens.
    pub credentials: Arc<Credentials>,
    /// The clock every handler reads.
    pub clock: Arc<dyn Clock>,
    /// The API key check; `None` when no key is configured (the exchange answers 404).
    pub api_key: Option<ApiKeyCheck>,
    /// Wrong API keys by peer address.
    pub throttle: FailureThrottle,
    /// Development mode.
    pub dev: bool,
    /// The largest request body read.
    pub max_body_bytes: usize,
    /// The lifetime of admin tokens.
    pub admin_token_ttl: time::Duration,
    /// Readiness of the parts that load after the store.
    pub readiness: Readiness,
    /// Serializes creation of the development agent, so that two first requests make one.
    pub dev_agent: tokio::sync::Mutex<()>,
    /// The key id of the signing key, for the start-up log.
    pub signing_kid: String,
    /// The MCP endpoint.
    pub gateway: Arc<Gateway>,
    /// The catalog's sources, for discovery and reloads.
    pub catalog: CatalogSource,
    /// Budget usage, read side.
    pub budget: Arc<Budget>,
    /// Budget and audit writes, through the group-commit writer.
    pub charges: ChargeHandle,
    /// The audit trail.
    pub audit: Arc<AuditLog>,
    /// Where committed audit records also go (stdout), unless turned off.
    pub audit_sink: Option<AuditSink>,
    /// The daily token limit of agents without their own.
    pub default_daily_limit: u64,
    /// Days audit records are kept.
    pub audit_retention_days: u32,
    /// The counters and histograms of `GET /metrics`.
    pub metrics: Arc<Metrics>,
    random: SystemRandom,
}

tokio::task_local! {
    /// The id of the HTTP request the current task answers; see [`AppState::in_request`].
    static REQUEST_ID: String;
}

/// What is built from the configuration alone: checked before the store is opened, so that a
/// configuration the gateway refuses (a privacy rule that does not compile, a catalog file that
/// does not load) never leaves a new store behind. `check-config` builds it too.
pub struct Prepared {
    privacy: PrivacyFilter,
    /// The catalog's sources.
    pub catalog: CatalogSource,
    /// The catalog merged from them.
    pub loaded: Catalog,
}

impl Prepared {
    /// Compiles the custom privacy rules and loads and merges the catalog files.
    ///
    /// # Errors
    ///
    /// Fails when a privacy rule does not compile (naming the rule's key) or a catalog file
    /// does not load.
    pub fn new(config: &Config, env: &Environment) -> Result<Prepared, StateError> {
        let rules: Vec<CustomRule> = config
            .privacy_rules
            .iter()
            .map(|rule| CustomRule::new(rule.pattern.clone(), rule.replacement.clone()))
            .collect();
        let privacy = PrivacyFilter::new(&rules).map_err(|source| {
            let key = match &source {
                PrivacyError::InvalidPattern { index, .. }
                | PrivacyError::MatchesEmpty { index, .. } => config.privacy_rules.get(*index),
                _ => None,
            }
            .map_or_else(|| "privacy.customRules".to_owned(), |rule| rule.key.clone());
            StateError::Privacy { key, source }
        })?;

        let catalog = CatalogSource::new(config, env).map_err(StateError::Catalog)?;
        let loaded = catalog.load().map_err(StateError::Catalog)?;
        Ok(Prepared {
            privacy,
            catalog,
            loaded,
        })
    }
}

impl AppState {
    /// Checks what the configuration alone decides, then opens the store in
    /// `config.server.dataDir` and builds the state on it, with `clock` as the only source of
    /// time; `env` is what `${env:NAME}` in catalog files reads. The caller runs the returned
    /// budget writer (it blocks its thread) until the state is dropped.
    ///
    /// # Errors
    ///
    /// Fails when a privacy rule does not compile or a catalog file does not load (before the
    /// store is opened or created), when the store cannot be opened, a store table cannot be
    /// read, or the key is unusable.
    pub fn open(
        config: &Config,
        clock: Arc<dyn Clock>,
        env: &Environment,
    ) -> Result<(AppState, ChargeWriter), StateError> {
        let prepared = Prepared::new(config, env)?;
        let store = Store::open(&config.server.data_dir)?;
        AppState::build_prepared(config, prepared, store, clock)
    }

    /// Builds the state on a store the caller opened, as [`AppState::open`] does; for tests,
    /// which keep the store's directory of their own.
    ///
    /// # Errors
    ///
    /// Fails when a store table cannot be read, the key is unusable, a privacy rule does not
    /// compile, or a catalog file does not load.
    #[cfg(test)]
    pub fn build(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        env: &Environment,
    ) -> Result<(AppState, ChargeWriter), StateError> {
        let prepared = Prepared::new(config, env)?;
        AppState::build_prepared(config, prepared, store, clock)
    }

    fn build_prepared(
        config: &Config,
        prepared: Prepared,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<(AppState, ChargeWriter), StateError> {
        let Prepared {
            privacy,
            catalog,
            loaded,
        } = prepared;

        let key_bytes = match &config.jwt.signing_key {
            Some(configured) => configured.expose().clone(),
            None => store
                .signing_key(|| SigningKey::generate().map(|k| k.expose_secret().to_vec()))?
                .map_err(StateError::Key)?,
        };
        let signing_kid = store::key_id(&key_bytes);
        let key = SigningKey::from_bytes(&key_bytes).map_err(StateError::Key)?;
        let keys = key_ring(signing_kid.clone(), key, &config.jwt.previous_signing_keys)?;

        let credentials = Credentials::new(
            keys,
            config.jwt.issuer.clone(),
            config.jwt.audience.clone(),
            Arc::clone(&clock),
        );
        let registry =
            Registry::open(Arc::clone(store.database())).map_err(StateError::Registry)?;

        let api_key = match &config.admin.api_key {
            Some(key) => Some(ApiKeyCheck::new(key.expose()).ok_or(StateError::Random)?),
            None => None,
        };

        let budget_config = BudgetConfig {
            retention_days: config.budget_retention_days,
            ..BudgetConfig::default()
        };
        #[cfg(feature = "bench")]
        let budget_config = config.bench_charging.budget_config(budget_config);
        let budget = Budget::open_with(Arc::clone(store.database()), budget_config)
            .map_err(StateError::Budget)?;
        let (charges, writer) = budget.writer();
        let metrics = Arc::new(Metrics::new());
        let writer = writer.on_commit(metrics.commit_observer());
        let audit = AuditLog::open(Arc::clone(store.database())).map_err(StateError::Audit)?;
        let circuits = CircuitBreakers::new(config.circuit_breaker, Arc::clone(&clock))
            .map_err(StateError::Circuit)?;

        let registry = Arc::new(registry);
        let credentials = Arc::new(credentials);
        let budget = Arc::new(budget);
        let audit = Arc::new(audit);
        let audit_sink = (!config.audit_disable_stdout_sink).then(stdout_sink);
        let gateway_config = GatewayConfig {
            session_idle_timeout: config.sessions.idle_timeout,
            max_sessions_per_agent: config.sessions.max_per_agent,
            allow_loopback_origins: config.mcp.allow_loopback_origins,
            allowed_origins: config.mcp.allowed_origins.clone(),
            error_status: config.mcp.error_status,
            max_json_depth: config.mcp.max_json_depth,
            encoding: config.budget_encoding,
            #[cfg(feature = "bench")]
            uncharged: config.bench_charging == crate::bench::Charging::Off,
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(
            gateway_config,
            GatewayDeps {
                registry: Arc::clone(&registry),
                credentials: Arc::clone(&credentials),
                catalog: Arc::new(loaded),
                budget: Arc::clone(&budget),
                charges: charges.clone(),
                audit: Arc::clone(&audit),
                privacy: Arc::new(privacy),
                audit_sink: audit_sink.clone(),
                default_daily_limit: config.default_daily_token_limit,
                circuits: Arc::new(circuits),
                on_circuit_transition: Some(log_transition()),
                observer: Some(Arc::clone(&metrics) as Arc<dyn Observer>),
            },
        );

        let readiness = Readiness::default();
        readiness.set_catalog(catalog.complete());

        let state = AppState {
            store,
            registry,
            credentials,
            throttle: FailureThrottle::new(Arc::clone(&clock)),
            clock,
            api_key,
            dev: config.dev,
            max_body_bytes: config.server.max_body_bytes,
            admin_token_ttl: time::Duration::days(i64::from(config.admin.token_expiry_days)),
            readiness,
            dev_agent: tokio::sync::Mutex::new(()),
            signing_kid,
            gateway: Arc::new(gateway),
            catalog,
            budget,
            charges,
            audit,
            audit_sink,
            default_daily_limit: config.default_daily_token_limit,
            audit_retention_days: config.audit_retention_days,
            metrics,
            random: SystemRandom::new(),
        };
        Ok((state, writer))
    }

    /// The request id for records of management actions: the id of the HTTP request being
    /// answered (see [`AppState::in_request`]), or a fresh one outside a request.
    pub fn request_id(&self) -> String {
        REQUEST_ID
            .try_with(String::clone)
            .unwrap_or_else(|_| self.new_request_id("req_"))
    }

    /// A fresh request id: `prefix` and 16 hex digits. The server gives `/mcp` requests ids
    /// without a prefix, as the gateway makes its own, and every other request `req_` ones.
    pub fn new_request_id(&self, prefix: &str) -> String {
        let mut bytes = [0u8; 8];
        // Request ids only correlate log lines and records; a failing random source leaves
        // zeros rather than failing the request.
        let _ = self.random.fill(&mut bytes);
        let mut id = String::with_capacity(prefix.len() + 16);
        id.push_str(prefix);
        for b in bytes {
            let _ = write!(id, "{b:02x}");
        }
        id
    }

    /// Runs `answer` as the answer to the HTTP request `request_id`: records of management
    /// actions made inside it carry that id (see [`AppState::request_id`]).
    pub async fn in_request<F: Future>(request_id: String, answer: F) -> F::Output {
        REQUEST_ID.scope(request_id, answer).await
    }
}

/// The ring of the signing key `key`, known as `signing_kid`, and the verify-only `previous`
/// keys, each under its own [`store::key_id`]. Logs the verify-only kids, never a key.
fn key_ring(
    signing_kid: String,
    key: SigningKey,
    previous: &[Secret<Vec<u8>>],
) -> Result<KeyRing, StateError> {
    let mut keys = KeyRing::new(signing_kid, key);
    let mut verify_kids = Vec::with_capacity(previous.len());
    for secret in previous {
        let kid = store::key_id(secret.expose());
        // The ring would ignore or replace a key under a kid it holds; refuse instead, so that
        // no configured key is silently dropped.
        if keys.contains_kid(&kid) {
            return Err(StateError::DuplicateKeyId { kid });
        }
        let key = SigningKey::from_bytes(secret.expose()).map_err(StateError::Key)?;
        keys.add_verify_key(kid.clone(), key);
        verify_kids.push(kid);
    }
    info!(
        count = verify_kids.len(),
        kids = %verify_kids.join(","),
        "verify-only signing keys loaded"
    );
    Ok(keys)
}

/// Logs every change of a circuit's state at warn: an operator wants to know at once that a
/// downstream is isolated, and when it is back.
fn log_transition() -> TransitionSink {
    Arc::new(|transition: &Transition| {
        warn!(
            downstream = %transition.downstream,
            from = %transition.from,
            to = %transition.to,
            "{transition}"
        );
    })
}

/// Writes every committed audit record to stdout as one JSON line.
fn stdout_sink() -> AuditSink {
    Arc::new(|record: &AuditRecord| {
        let line = record.to_json_line();
        let mut out = std::io::stdout().lock();
        if let Err(error) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            debug!(error = %error, "audit record not written to stdout");
        }
    })
}

/// Compares presented API keys with the configured one in constant time.
///
/// Both sides go through HMAC-SHA256 under a key drawn at start, and `ring` compares the tags in
/// constant time, so neither the content nor the length of the configured key leaks through
/// timing.
pub struct ApiKeyCheck {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl ApiKeyCheck {
    /// A check against `api_key`; `None` when the random source fails.
    pub fn new(api_key: &str) -> Option<ApiKeyCheck> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new()).ok()?;
        let tag = hmac::sign(&key, api_key.as_bytes());
        Some(ApiKeyCheck { key, tag })
    }

    /// Tells whether `candidate` is the configured key.
    pub fn matches(&self, candidate: &str) -> bool {
        hmac::verify(&self.key, candidate.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// Whether the parts that load after the store are ready.
#[derive(Debug)]
pub struct Readiness {
    catalog: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            catalog: AtomicBool::new(true),
        }
    }
}

impl Readiness {
    /// Whether the tool catalog is loaded (an empty catalog counts as loaded).
    pub fn catalog(&self) -> bool {
        self.catalog.load(Ordering::Acquire)
    }

    /// Marks the catalog loaded or not.
    pub fn set_catalog(&self, ready: bool) {
        self.catalog.store(ready, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`AppState::open`] with the data directory `data` and the environment `env`.
    fn open_at(
        data: &std::path::Path,
        env: &Environment,
    ) -> Result<(AppState, ChargeWriter), StateError> {
        let flags = crate::config::Flags {
            data: Some(data.to_owned()),
            ..crate::config::Flags::default()
        };
        let config = Config::load(&flags, env).unwrap();
        AppState::open(&config, Arc::new(ithil_token::SystemClock), env)
    }

    #[test]
    fn a_privacy_rule_that_does_not_compile_leaves_no_store_behind() {
        // A bad rule used to be found only after the store was created, so a refused start
        // left an empty store in a fresh data directory.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let env: Environment = [("Ithil__Privacy__CustomRules__0__Pattern", "(unclosed")]
            .into_iter()
            .collect();

        let error = open_at(&data, &env).err().expect("the rule is refused");

        assert!(
            error.to_string().contains("privacy.customRules.0"),
            "{error}"
        );
        assert!(!data.exists(), "a store directory was created");
    }

    #[test]
    fn open_creates_the_store_of_a_valid_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");

        let (state, _writer) = open_at(&data, &Environment::default()).unwrap();

        assert!(state.store.path().starts_with(&data));
        assert!(state.store.path().exists());
        assert!(state.gateway.circuits().snapshot().is_empty());
    }

    #[tokio::test]
    async fn records_made_inside_a_request_carry_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _writer) = open_at(&dir.path().join("data"), &Environment::default()).unwrap();

        let inside = AppState::in_request("req_00000000000000ab".to_owned(), async {
            (state.request_id(), state.request_id())
        })
        .await;
        assert_eq!(inside.0, "req_00000000000000ab");
        assert_eq!(inside.1, "req_00000000000000ab");

        let outside = (state.request_id(), state.request_id());
        assert_ne!(outside.0, outside.1);
        for id in [&outside.0, &outside.1] {
            assert!(id.starts_with("req_") && id.len() == 20, "{id}");
        }
        assert_eq!(state.new_request_id("").len(), 16);
    }

    /// The state on `data` with signing key `signing` and the verify-only `previous` keys.
    fn state_with_keys(data: &std::path::Path, signing: &str, previous: &[&str]) -> AppState {
        let mut pairs = vec![("Ithil__Jwt__SigningKey".to_owned(), signing.to_owned())];
        for (index, key) in previous.iter().enumerate() {
            pairs.push((
                format!("Ithil__Jwt__PreviousSigningKeys__{index}"),
                (*key).to_owned(),
            ));
        }
        let env: Environment = pairs.into_iter().collect();
        open_at(data, &env).unwrap().0
    }

    #[test]
    fn previous_signing_keys_verify_but_never_sign() {
        const A: &str = "signing key A of the rotation test, 32+ bytes";
        const B: &str = "signing key B of the rotation test, 32+ bytes";
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let ttl = time::Duration::hours(1);

        let old = state_with_keys(&data, A, &[]);
        let token = old.credentials.issue_admin(ttl).unwrap().token;
        drop(old);

        let rotated = state_with_keys(&data, B, &[A]);
        assert_eq!(rotated.signing_kid, store::key_id(B.as_bytes()));
        assert!(rotated.credentials.verify_admin(&token).is_ok());
        let new_token = rotated.credentials.issue_admin(ttl).unwrap().token;
        let kid = |token: &str| ithil_token::decode_header(token).unwrap().kid;
        assert_eq!(kid(&token), Some(store::key_id(A.as_bytes())));
        assert_eq!(kid(&new_token), Some(store::key_id(B.as_bytes())));
        drop(rotated);

        let dropped = state_with_keys(&data, B, &[]);
        assert!(dropped.credentials.verify_admin(&token).is_err());
        assert!(dropped.credentials.verify_admin(&new_token).is_ok());
    }

    #[test]
    fn a_previous_key_equal_to_the_generated_signing_key_is_refused() {
        use base64::Engine as _;

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (state, _writer) = open_at(&data, &Environment::default()).unwrap();
        let generated = state
            .store
            .signing_key(|| -> Result<Vec<u8>, ()> { panic!("the key was generated") })
            .unwrap()
            .unwrap();
        let kid = state.signing_kid.clone();
        drop((state, _writer));

        let encoded = base64::engine::general_purpose::STANDARD.encode(&generated);
        let env: Environment = [(
            "Ithil__Jwt__PreviousSigningKeys__0",
            format!("base64:{encoded}"),
        )]
        .into_iter()
        .collect();
        let error = open_at(&data, &env)
            .err()
            .expect("the repeated key is refused");

        assert!(
            matches!(&error, StateError::DuplicateKeyId { kid: found } if *found == kid),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("jwt.previousSigningKeys"), "{message}");
        assert!(!message.contains(&encoded), "{message}");
    }

    #[test]
    fn the_api_key_check_accepts_only_the_exact_key() {
        let check = ApiKeyCheck::new("0123456789abcdef").unwrap();
        assert!(check.matches("0123456789abcdef"));
        assert!(!check.matches("0123456789abcdeF"));
        assert!(!check.matches("0123456789abcde"));
        assert!(!check.matches("0123456789abcdef "));
        assert!(!check.matches(""));
    }
}
