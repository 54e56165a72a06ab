use std::io::Write as _;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Environment {
    pairs.iter().copied().collect()
}

fn load(flags: &Flags, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(flags, &env(pairs))
}

fn file(json: &str) -> (tempfile::TempDir, Flags) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ithil.json");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    (dir, flags)
}

fn error(result: Result<Config, ConfigError>) -> String {
    result.unwrap_err().to_string()
}

/// Asserts that each `(json, text)` of `cases`, as the configuration file, is refused with a
/// message that contains `text` (mostly the key at fault).
fn refused_naming(cases: &[(&str, &str)]) {
    for (json, key) in cases {
        let (_dir, flags) = file(json);
        let result = load(&flags, &[]);
        assert!(result.is_err(), "{json} was accepted");
        let message = error(result);
        assert!(message.contains(key), "{json}: {message}");
    }
}

#[test]
fn nothing_configured_gives_the_documented_defaults() {
    let config = load(&Flags::default(), &[]).unwrap();

    assert_eq!(config.server.listen, "127.0.0.1:5100".parse().unwrap());
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.server.data_dir, PathBuf::from("data"));
    assert_eq!(config.server.shutdown_timeout, Duration::from_secs(25));
    assert_eq!(config.server.max_header_bytes, 64 * 1024);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.server.max_connections_per_peer, 1024);
    assert!(!config.dev);
    assert!(config.jwt.signing_key.is_none());
    assert_eq!(config.jwt.issuer, "ithil-dev");
    assert_eq!(config.jwt.audience, "ithil-gateway");
    assert!(config.admin.api_key.is_none());
    assert_eq!(config.admin.token_expiry_days, 90);
    assert_eq!(config.default_daily_token_limit, 100_000);
    assert!(config.catalog.files.is_empty());
    assert!(config.catalog.downstream_urls.is_empty());
    assert_eq!(config.tool_registry.downstream_base_url, None);
    assert_eq!(config.tool_registry.schema_path, "/ithil/schema");
    assert!(config.privacy_rules.is_empty());
    assert!(!config.audit_disable_stdout_sink);
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(1800));
    assert_eq!(config.sessions.max_per_agent, 100);
    assert!(config.mcp.allowed_origins.is_empty());
    assert!(config.mcp.allow_loopback_origins);
    assert_eq!(
        config.mcp.error_status,
        ithil_proxy::gateway::ErrorStatus::Always200
    );
    assert_eq!(config.budget_encoding, ithil_budget::Encoding::O200kBase);
    assert_eq!(config.budget_retention_days, 90);
    assert_eq!(config.audit_retention_days, 90);
}

#[test]
fn the_mcp_and_budget_keys_are_read() {
    let (_dir, flags) = file(
        r#"{"mcp": {"allowedOrigins": ["https://app.example.com/"], "allowLoopbackOrigins": false,
                    "errorStatus": "reference"},
            "budget": {"encoding": "cl100k_base", "retentionDays": 7},
            "audit": {"retentionDays": 30}}"#,
    );
    let config = load(&flags, &[]).unwrap();
    assert_eq!(config.mcp.allowed_origins, vec!["https://app.example.com"]);
    assert!(!config.mcp.allow_loopback_origins);
    assert_eq!(
        config.mcp.error_status,
        ithil_proxy::gateway::ErrorStatus::Reference
    );
    assert_eq!(config.budget_encoding, ithil_budget::Encoding::Cl100kBase);
    assert_eq!(config.budget_retention_days, 7);
    assert_eq!(config.audit_retention_days, 30);

    for (name, value) in [
        ("Ithil__Mcp__AllowedOrigins__0", "app.example.com"),
        (
            "Ithil__Mcp__AllowedOrigins__0",
            "https://app.example.com/path",
        ),
        ("Ithil__Mcp__ErrorStatus", "sometimes"),
        ("Ithil__Budget__Encoding", "gpt2"),
    ] {
        let message = error(load(&Flags::default(), &[(name, value)]));
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn the_documented_environment_names_set_their_keys() {
    let config = load(
        &Flags::default(),
        &[
            ("Ithil__Admin__ApiKey", "0123456789abcdef0123"),
            ("Ithil__Admin__TokenExpiryDays", "7"),
            (
                "Ithil__Jwt__SigningKey",
                "a signing key of at least thirty-two bytes",
            ),
            ("Ithil__Jwt__Issuer", "me"),
            ("Ithil__Jwt__Audience", "them"),
            ("Ithil__Budget__DefaultDailyTokenLimit", "5000"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();

    assert_eq!(
        config.admin.api_key.unwrap().expose(),
        "0123456789abcdef0123"
    );
    assert_eq!(config.admin.token_expiry_days, 7);
    assert_eq!(
        config.jwt.signing_key.unwrap().expose(),
        b"a signing key of at least thirty-two bytes"
    );
    assert_eq!(config.jwt.issuer, "me");
    assert_eq!(config.jwt.audience, "them");
    assert_eq!(config.default_daily_token_limit, 5000);
}

#[test]
fn environment_names_match_case_insensitively() {
    let config = load(
        &Flags::default(),
        &[
            ("ITHIL__ADMIN__TOKENEXPIRYDAYS", "3"),
            ("ithil__budget__defaultdailytokenlimit", "9"),
        ],
    )
    .unwrap();
    assert_eq!(config.admin.token_expiry_days, 3);
    assert_eq!(config.default_daily_token_limit, 9);
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_both() {
    let (_dir, mut flags) = file(
        r#"{"server": {"listen": "127.0.0.1:1111", "maxBodyBytes": 2048},
            "admin": {"tokenExpiryDays": 10}}"#,
    );
    let pairs = [
        ("Ithil__Server__Listen", "127.0.0.1:2222"),
        ("Ithil__Admin__TokenExpiryDays", "20"),
    ];

    let config = load(&flags, &pairs).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:2222".parse().unwrap());
    assert_eq!(config.server.max_body_bytes, 2048);
    assert_eq!(config.admin.token_expiry_days, 20);

    flags.listen = Some("127.0.0.1:3333".into());
    let config = load(&flags, &pairs).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:3333".parse().unwrap());
}

#[test]
fn the_file_takes_every_section_in_camel_case() {
    let (dir, flags) = file(
        r#"{
            "jwt": {"signingKey": "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                    "issuer": "i", "audience": "a"},
            "admin": {"apiKey": "${env:ADMIN_KEY}", "tokenExpiryDays": 30},
            "budget": {"defaultDailyTokenLimit": 123},
            "server": {"listen": "[::1]:0", "maxBodyBytes": 4096, "dataDir": "store"},
            "shutdown": {"timeoutSeconds": 0},
            "dev": true,
            "catalog": {"files": ["one.json", "/abs/two.json"],
                        "downstreamUrls": {"placeholder": "http://localhost:5200"}},
            "toolRegistry": {"downstreamBaseUrl": "http://localhost:5200", "schemaPath": "/s"},
            "privacy": {"customRules": [{"pattern": "a+", "replacement": "[A]"}]},
            "privacyFilter": {"customRules": [{"pattern": "b+"}]},
            "audit": {"disableStdoutSink": true},
            "sessions": {"idleTimeoutSeconds": 60, "maxPerAgent": 2}
        }"#,
    );

    let config = load(&flags, &[("ADMIN_KEY", "from-the-environment-1")]).unwrap();

    let key: Vec<u8> = (0u8..32).collect();
    assert_eq!(config.jwt.signing_key.unwrap().expose(), &key);
    assert_eq!(
        config.admin.api_key.unwrap().expose(),
        "from-the-environment-1"
    );
    assert_eq!(config.server.listen, "[::1]:0".parse().unwrap());
    assert_eq!(config.server.data_dir, dir.path().join("store"));
    assert_eq!(config.server.shutdown_timeout, Duration::ZERO);
    assert!(config.dev);
    assert_eq!(
        config.catalog.files,
        vec![dir.path().join("one.json"), PathBuf::from("/abs/two.json")]
    );
    assert_eq!(
        config.catalog.downstream_urls["placeholder"],
        "http://localhost:5200"
    );
    assert_eq!(config.tool_registry.schema_path, "/s");
    assert_eq!(config.privacy_rules.len(), 2);
    assert_eq!(config.privacy_rules[0].replacement, "[A]");
    assert_eq!(config.privacy_rules[1].pattern, "b+");
    assert_eq!(config.privacy_rules[1].replacement, "[REDACTED]");
    assert_eq!(config.privacy_rules[1].key, "privacyFilter.customRules.0");
    assert!(config.audit_disable_stdout_sink);
    assert_eq!(config.sessions.max_per_agent, 2);
}

#[test]
fn the_request_limits_are_read_from_the_file_and_the_environment() {
    let (_dir, flags) = file(
        r#"{"server": {"maxHeaderBytes": 8192, "headerReadTimeoutSeconds": 2,
                       "bodyReadTimeoutSeconds": 3, "idleTimeoutSeconds": 4}}"#,
    );
    let config = load(&flags, &[("Ithil__Server__MaxConnectionsPerPeer", "5")]).unwrap();

    assert_eq!(config.server.max_header_bytes, 8192);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(2));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(3));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(4));
    assert_eq!(config.server.max_connections_per_peer, 5);
}

#[test]
fn request_limits_outside_their_range_are_refused_by_key() {
    refused_naming(&[
        // hyper cannot parse a request head in a buffer smaller than 8 KiB.
        (
            r#"{"server": {"maxHeaderBytes": 8191}}"#,
            "server.maxHeaderBytes",
        ),
        (
            r#"{"server": {"headerReadTimeoutSeconds": 0}}"#,
            "server.headerReadTimeoutSeconds",
        ),
        (
            r#"{"server": {"bodyReadTimeoutSeconds": 31}}"#,
            "server.bodyReadTimeoutSeconds",
        ),
        (
            r#"{"server": {"idleTimeoutSeconds": 0}}"#,
            "server.idleTimeoutSeconds",
        ),
        (
            r#"{"server": {"maxConnectionsPerPeer": 0}}"#,
            "server.maxConnectionsPerPeer",
        ),
    ]);
}

#[test]
fn catalog_flags_add_to_the_configured_files() {
    let (dir, mut flags) = file(r#"{"catalog": {"files": ["a.json"]}}"#);
    flags.catalog = vec!["b.json".into(), "c.json".into()];

    let config = load(&flags, &[("Ithil__Catalog__Files__1", "env.json")]).unwrap();

    assert_eq!(
        config.catalog.files,
        vec![
            dir.path().join("a.json"),
            PathBuf::from("env.json"),
            PathBuf::from("b.json"),
            PathBuf::from("c.json"),
        ]
    );
}

#[test]
fn downstream_url_flags_override_by_name() {
    let (_dir, mut flags) = file(
        r#"{"catalog": {"downstreamUrls": {"a": "http://localhost:1", "b": "http://localhost:2"}}}"#,
    );
    flags.downstream_urls = vec!["b=http://127.0.0.1:5200/api".into()];

    let config = load(&flags, &[]).unwrap();
    assert_eq!(config.catalog.downstream_urls["a"], "http://localhost:1");
    assert_eq!(
        config.catalog.downstream_urls["b"],
        "http://127.0.0.1:5200/api"
    );

    flags.downstream_urls = vec!["no-equals-sign".into()];
    let message = error(load(&flags, &[]));
    assert!(message.contains("catalog.downstreamUrls"), "{message}");
    assert!(message.contains("--downstream-url"), "{message}");

    flags.downstream_urls = vec!["b=ftp://localhost".into()];
    let message = error(load(&flags, &[]));
    assert!(message.contains("catalog.downstreamUrls.b"), "{message}");
}

#[test]
fn an_unknown_key_in_the_file_is_refused_with_a_suggestion() {
    let (_dir, flags) = file(r#"{"admin": {"apiKye": "x"}}"#);
    let message = error(load(&flags, &[]));
    assert!(message.contains("admin.apiKye"), "{message}");
    assert!(message.contains("did you mean admin.apiKey"), "{message}");

    let (_dir, flags) = file(r#"{"nonsense": 1}"#);
    let message = error(load(&flags, &[]));
    assert!(
        message.contains("unknown configuration key nonsense"),
        "{message}"
    );
}

#[test]
fn an_unknown_environment_key_is_refused() {
    let message = error(load(&Flags::default(), &[("Ithil__Admin__ApiKye", "x")]));
    assert!(message.contains("Ithil__Admin__ApiKye"), "{message}");
    assert!(message.contains("admin.apiKey"), "{message}");
}

#[test]
fn a_value_of_the_wrong_form_names_the_key_and_its_source() {
    let message = error(load(
        &Flags::default(),
        &[("Ithil__Admin__TokenExpiryDays", "ninety")],
    ));
    assert!(message.contains("admin.tokenExpiryDays"), "{message}");
    assert!(
        message.contains("Ithil__Admin__TokenExpiryDays"),
        "{message}"
    );
    assert!(message.contains("\"ninety\""), "{message}");

    refused_naming(&[
        (
            r#"{"admin": {"tokenExpiryDays": 0}}"#,
            "admin.tokenExpiryDays",
        ),
        (
            r#"{"admin": {"tokenExpiryDays": 9.5}}"#,
            "admin.tokenExpiryDays",
        ),
        (
            r#"{"admin": {"tokenExpiryDays": true}}"#,
            "admin.tokenExpiryDays",
        ),
        (r#"{"admin": {"tokenExpiryDays": 1e400}}"#, "not valid JSON"),
        (r#"{"server": {"listen": "nowhere"}}"#, "server.listen"),
        (r#"{"server": {"maxBodyBytes": -1}}"#, "server.maxBodyBytes"),
        (r#"{"dev": "yes"}"#, "dev"),
        (r#"{"jwt": {"issuer": {"nested": 1}}}"#, "jwt.issuer"),
        (r#"{"jwt": {"issuer": ""}}"#, "jwt.issuer"),
        (r#"{"catalog": {"files": "one.json"}}"#, "catalog.files"),
        (r#"{"catalog": {"files": [5]}}"#, "catalog.files.0"),
        (r#"{"admin": 5}"#, "admin"),
        (
            r#"{"toolRegistry": {"schemaPath": "no-slash"}}"#,
            "toolRegistry.schemaPath",
        ),
        (
            r#"{"privacy": {"customRules": [{"replacement": "x"}]}}"#,
            "privacy.customRules.0.pattern",
        ),
        (r#"[1, 2]"#, "must hold a JSON object"),
    ]);
}

#[test]
fn numbers_and_booleans_in_the_file_may_be_written_as_strings_like_the_environment() {
    let (_dir, flags) = file(r#"{"admin": {"tokenExpiryDays": "9"}, "dev": "true"}"#);
    let config = load(&flags, &[]).unwrap();
    assert_eq!(config.admin.token_expiry_days, 9);
    assert!(config.dev);
}

#[test]
fn listen_accepts_localhost_and_ipv6() {
    let flags = Flags {
        listen: Some("localhost:8080".into()),
        ..Flags::default()
    };
    assert_eq!(
        load(&flags, &[]).unwrap().server.listen,
        "127.0.0.1:8080".parse().unwrap()
    );
}

#[test]
fn a_short_signing_key_is_refused_without_echoing_it() {
    for value in ["short-secret-value", "base64:c2hvcnQtc2VjcmV0LXZhbHVl"] {
        let message = error(load(
            &Flags::default(),
            &[("Ithil__Jwt__SigningKey", value)],
        ));
        assert!(message.contains("jwt.signingKey"), "{message}");
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(!message.contains("short-secret-value"), "{message}");
        assert!(!message.contains("c2hvcnQ"), "{message}");
    }

    let message = error(load(
        &Flags::default(),
        &[("Ithil__Jwt__SigningKey", "base64:not base64 at all!!")],
    ));
    assert!(message.contains("base64"), "{message}");
    assert!(!message.contains("not base64 at all"), "{message}");
}

#[test]
fn a_signing_key_of_exactly_32_bytes_is_accepted() {
    let config = load(
        &Flags::default(),
        &[("Ithil__Jwt__SigningKey", "0123456789abcdef0123456789abcdef")],
    )
    .unwrap();
    assert_eq!(config.jwt.signing_key.unwrap().expose().len(), 32);
}

const KEY_A: &str = "previous signing key A, 32 bytes or more";
const KEY_B: &str = "previous signing key B, 32 bytes or more";
const KEY_C: &str = "the current signing key, 32 bytes or more";

#[test]
fn previous_signing_keys_are_read_in_index_order_from_the_file_and_the_environment() {
    let (_dir, flags) = file(&format!(
        r#"{{"jwt": {{"signingKey": "{KEY_C}",
                    "previousSigningKeys": ["{KEY_A}", "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]}}}}"#
    ));
    let config = load(&flags, &[]).unwrap();
    let previous: Vec<&[u8]> = config
        .jwt
        .previous_signing_keys
        .iter()
        .map(|k| k.expose().as_slice())
        .collect();
    let decoded: Vec<u8> = (0..32).collect();
    assert_eq!(previous, [KEY_A.as_bytes(), decoded.as_slice()]);

    // The environment form, indexes out of order, overriding the file's entry 1.
    let config = load(
        &flags,
        &[
            ("Ithil__Jwt__PreviousSigningKeys__1", KEY_B),
            (
                "ITHIL__JWT__PREVIOUSSIGNINGKEYS__2",
                "base64:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            ),
        ],
    )
    .unwrap();
    let previous: Vec<&[u8]> = config
        .jwt
        .previous_signing_keys
        .iter()
        .map(|k| k.expose().as_slice())
        .collect();
    assert_eq!(
        previous,
        [KEY_A.as_bytes(), KEY_B.as_bytes(), decoded.as_slice()]
    );

    // Environment only, and without a configured signing key (the generated one signs).
    let config = load(
        &Flags::default(),
        &[("Ithil__Jwt__PreviousSigningKeys__0", KEY_A)],
    )
    .unwrap();
    assert!(config.jwt.signing_key.is_none());
    assert_eq!(config.jwt.previous_signing_keys.len(), 1);
    assert_eq!(
        config.jwt.previous_signing_keys[0].expose().as_slice(),
        KEY_A.as_bytes()
    );

    assert!(
        load(&Flags::default(), &[])
            .unwrap()
            .jwt
            .previous_signing_keys
            .is_empty()
    );
}

#[test]
fn a_previous_signing_key_equal_to_the_signing_key_is_refused_by_name() {
    for signing in [KEY_A.to_owned(), format!("base64:{}", base64_of(KEY_A))] {
        let message = error(load(
            &Flags::default(),
            &[
                ("Ithil__Jwt__SigningKey", signing.as_str()),
                ("Ithil__Jwt__PreviousSigningKeys__0", KEY_B),
                ("Ithil__Jwt__PreviousSigningKeys__1", KEY_A),
            ],
        ));
        assert!(message.contains("jwt.previousSigningKeys.1"), "{message}");
        assert!(message.contains("same key as jwt.signingKey"), "{message}");
        assert!(
            message.contains("Ithil__Jwt__PreviousSigningKeys__1"),
            "{message}"
        );
        assert!(!message.contains(KEY_A), "{message}");
        assert!(!message.contains(&base64_of(KEY_A)), "{message}");
    }
}

#[test]
fn two_equal_previous_signing_keys_are_refused_by_name() {
    let (_dir, flags) = file(&format!(
        r#"{{"jwt": {{"signingKey": "{KEY_C}",
                    "previousSigningKeys": ["{KEY_A}", "{KEY_B}", "{KEY_A}"]}}}}"#
    ));
    let message = error(load(&flags, &[]));
    assert!(message.contains("jwt.previousSigningKeys.2"), "{message}");
    assert!(
        message.contains("same key as jwt.previousSigningKeys.0"),
        "{message}"
    );
    assert!(message.contains("ithil.json"), "{message}");
    assert!(!message.contains(KEY_A), "{message}");
}

#[test]
fn a_short_or_malformed_previous_signing_key_is_refused_by_name_without_echoing_it() {
    for value in ["short-secret-value", "base64:c2hvcnQtc2VjcmV0LXZhbHVl", ""] {
        let message = error(load(
            &Flags::default(),
            &[
                ("Ithil__Jwt__PreviousSigningKeys__0", KEY_A),
                ("Ithil__Jwt__PreviousSigningKeys__1", value),
            ],
        ));
        assert!(message.contains("jwt.previousSigningKeys.1"), "{message}");
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(!message.contains("short-secret-value"), "{message}");
        assert!(!message.contains("c2hvcnQ"), "{message}");
    }

    let (_dir, flags) = file(r#"{"jwt": {"previousSigningKeys": [12345678901234567890]}}"#);
    let message = error(load(&flags, &[]));
    assert!(message.contains("jwt.previousSigningKeys.0"), "{message}");
    assert!(message.contains("a string"), "{message}");
    assert!(!message.contains("12345678901234567890"), "{message}");

    let (_dir, flags) = file(&format!(
        r#"{{"jwt": {{"previousSigningKeys": "{KEY_A}"}}}}"#
    ));
    let message = error(load(&flags, &[]));
    assert!(message.contains("jwt.previousSigningKeys"), "{message}");
    assert!(message.contains("a list"), "{message}");
    assert!(!message.contains(KEY_A), "{message}");
}

fn base64_of(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_short_api_key_is_refused_without_echoing_it() {
    let message = error(load(
        &Flags::default(),
        &[("Ithil__Admin__ApiKey", "tiny-key")],
    ));
    assert!(message.contains("admin.apiKey"), "{message}");
    assert!(!message.contains("tiny-key"), "{message}");

    let (_dir, flags) = file(r#"{"admin": {"apiKey": 1234567890123456789}}"#);
    let message = error(load(&flags, &[]));
    assert!(message.contains("admin.apiKey"), "{message}");
    assert!(!message.contains("1234567890123456789"), "{message}");
}

#[test]
fn a_missing_environment_reference_names_the_variable_never_a_value() {
    let (_dir, flags) = file(r#"{"admin": {"apiKey": "${env:ITHIL_TEST_UNSET}"}}"#);
    let message = error(load(&flags, &[]));
    assert!(message.contains("ITHIL_TEST_UNSET"), "{message}");
    assert!(message.contains("admin.apiKey"), "{message}");
}

#[test]
fn an_unreadable_file_is_named() {
    let flags = Flags {
        config: Some("/nonexistent/ithil.json".into()),
        ..Flags::default()
    };
    let message = error(load(&flags, &[]));
    assert!(message.contains("/nonexistent/ithil.json"), "{message}");
}

#[test]
fn debug_and_display_of_the_config_hold_no_secret() {
    let config = load(
        &Flags::default(),
        &[
            ("Ithil__Admin__ApiKey", "admin-key-that-is-secret"),
            (
                "Ithil__Jwt__SigningKey",
                "signing-key-that-is-secret-too-yes",
            ),
            (
                "Ithil__Jwt__PreviousSigningKeys__0",
                "previous-key-that-is-secret-as-well",
            ),
        ],
    )
    .unwrap();

    for text in [format!("{config:?}"), config.to_string()] {
        assert!(!text.contains("admin-key-that-is-secret"), "{text}");
        assert!(!text.contains("signing-key-that-is-secret"), "{text}");
        assert!(!text.contains("previous-key-that-is-secret"), "{text}");
    }
    assert!(
        config.to_string().contains("previous_signing_keys=1"),
        "{config}"
    );
}

#[test]
fn null_in_the_file_means_unset() {
    let (_dir, flags) = file(r#"{"admin": {"apiKey": null}}"#);
    assert!(load(&flags, &[]).unwrap().admin.api_key.is_none());
}

#[test]
fn edit_distance_counts_single_character_edits() {
    assert_eq!(edit_distance("apikye", "apikey"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

#[test]
fn the_circuit_breaker_and_json_depth_default_as_documented() {
    let config = load(&Flags::default(), &[]).unwrap();
    assert_eq!(config.circuit_breaker, CircuitConfig::default());
    assert_eq!(config.circuit_breaker.minimum_throughput, 5);
    assert_eq!(config.circuit_breaker.failure_ratio, 1.0);
    assert_eq!(
        config.circuit_breaker.sampling_duration,
        Duration::from_secs(30)
    );
    assert_eq!(
        config.circuit_breaker.break_duration,
        Duration::from_secs(30)
    );
    assert_eq!(config.mcp.max_json_depth, 64);
}

#[test]
fn the_circuit_breaker_keys_are_read_from_the_file_and_the_environment() {
    let (_dir, flags) = file(
        r#"{"circuitBreaker": {"minimumThroughput": 10, "failureRatio": 0.5,
                               "samplingDurationSeconds": 60},
            "mcp": {"maxJsonDepth": 16}}"#,
    );
    let config = load(
        &flags,
        &[
            ("Ithil__CircuitBreaker__BreakDurationSeconds", "1"),
            ("ITHIL__CIRCUITBREAKER__FAILURERATIO", "0.25"),
        ],
    )
    .unwrap();
    assert_eq!(config.circuit_breaker.minimum_throughput, 10);
    assert_eq!(config.circuit_breaker.failure_ratio, 0.25);
    assert_eq!(
        config.circuit_breaker.sampling_duration,
        Duration::from_secs(60)
    );
    assert_eq!(
        config.circuit_breaker.break_duration,
        Duration::from_secs(1)
    );
    assert_eq!(config.mcp.max_json_depth, 16);
}

#[test]
fn circuit_breaker_values_out_of_range_are_refused_by_key() {
    refused_naming(&[
        (
            r#"{"circuitBreaker": {"failureRatio": 0}}"#,
            "circuitBreaker.failureRatio",
        ),
        (
            r#"{"circuitBreaker": {"failureRatio": 1.5}}"#,
            "circuitBreaker.failureRatio",
        ),
        (
            r#"{"circuitBreaker": {"failureRatio": "half"}}"#,
            "circuitBreaker.failureRatio",
        ),
        (
            r#"{"circuitBreaker": {"minimumThroughput": 0}}"#,
            "circuitBreaker.minimumThroughput",
        ),
        (
            r#"{"circuitBreaker": {"samplingDurationSeconds": 0}}"#,
            "circuitBreaker.samplingDurationSeconds",
        ),
        (
            r#"{"circuitBreaker": {"breakDurationSeconds": 86401}}"#,
            "circuitBreaker.breakDurationSeconds",
        ),
        (r#"{"mcp": {"maxJsonDepth": 1}}"#, "mcp.maxJsonDepth"),
        (r#"{"mcp": {"maxJsonDepth": 129}}"#, "mcp.maxJsonDepth"),
    ]);

    let message = error(load(
        &Flags::default(),
        &[("Ithil__CircuitBreaker__FailureRatio", "-1")],
    ));
    assert!(
        message.contains("circuitBreaker.failureRatio")
            && message.contains("Ithil__CircuitBreaker__FailureRatio")
            && message.contains("greater than 0"),
        "{message}"
    );
}

#[test]
fn the_log_format_is_text_unless_the_file_the_environment_or_the_flag_says_json() {
    assert_eq!(
        load(&Flags::default(), &[]).unwrap().log_format,
        LogFormat::Text
    );
    let (_dir, flags) = file(r#"{"log": {"format": "json"}}"#);
    assert_eq!(load(&flags, &[]).unwrap().log_format, LogFormat::Json);
    let config = load(&flags, &[("Ithil__Log__Format", "TEXT")]).unwrap();
    assert_eq!(config.log_format, LogFormat::Text);
    let flags = Flags {
        log_format: Some("json".into()),
        ..flags
    };
    let config = load(&flags, &[("Ithil__Log__Format", "text")]).unwrap();
    assert_eq!(config.log_format, LogFormat::Json);

    let message = error(load(&Flags::default(), &[("Ithil__Log__Format", "xml")]));
    assert!(message.contains("log.format"), "{message}");
    let flags = Flags {
        log_format: Some("yaml".into()),
        ..Flags::default()
    };
    let message = error(load(&flags, &[]));
    assert!(message.contains("--log-format"), "{message}");
}
