use std::sync::Arc;

use ithil_token::{Claims, KeyRing, ManualClock, SigningKey, Validation, VerifyError, verify};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::{AgentPatch, NewAgent, Registry};

const T0: OffsetDateTime = datetime!(2026-05-06 12:00:00 UTC);
const ISSUER: &str = "ithil-dev";
const AUDIENCE: &str = "ithil-gateway";
const KEY: [u8; 32] = [7; 32];

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    clock: ManualClock,
    credentials: Credentials,
}

fn keys(bytes: &[u8]) -> KeyRing {
    KeyRing::new("k1", SigningKey::from_bytes(bytes).unwrap())
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("ithil.redb")).unwrap();
    let registry = Registry::open(Arc::new(db)).unwrap();
    let clock = ManualClock::new(T0);
    let credentials = Credentials::new(keys(&KEY), ISSUER, AUDIENCE, Arc::new(clock.clone()));
    Fixture {
        _dir: dir,
        registry,
        clock,
        credentials,
    }
}

impl Fixture {
    fn agent(&self, scopes: &[&str]) -> Agent {
        let new = NewAgent {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..NewAgent::new("agent")
        };
        self.registry.create(new, self.clock.now()).unwrap()
    }

    /// Issues a 30-day token for `agent`.
    fn issue(&self, agent: &Agent) -> IssuedToken {
        let ttl = Duration::days(30);
        self.credentials.issue_agent(agent, ttl).unwrap()
    }

    /// Verifies an agent token against the fixture's registry.
    fn check(&self, token: &str) -> Result<AgentPrincipal, AuthError> {
        self.credentials.verify_agent(token, &self.registry)
    }

    /// Decodes a token's claims with a plain validation, independent of `Credentials`.
    fn claims(&self, token: &str) -> Claims<GatewayClaims> {
        let validation = Validation::default()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .clock(Arc::new(self.clock.clone()));
        verify(token, &keys(&KEY), &validation).unwrap()
    }
}

#[test]
fn role_is_written_as_lowercase_claim_values() {
    assert_eq!(serde_json::to_value(Role::Admin).unwrap(), "admin");
    assert_eq!(serde_json::to_value(Role::Agent).unwrap(), "agent");
    assert_eq!(Role::Agent.to_string(), "agent");
    assert!(serde_json::from_str::<Role>(r#""Admin""#).is_err());
}

#[test]
fn admin_token_verifies_as_admin() {
    let f = fixture();

    let issued = f.credentials.issue_admin(Duration::days(90)).unwrap();
    let admin = f.credentials.verify_admin(&issued.token).unwrap();

    assert_eq!(admin.jti, issued.jti);
    assert_eq!(admin.expires_at, T0 + Duration::days(90));
    assert_eq!(issued.expires_at, T0 + Duration::days(90));
}

#[test]
fn admin_token_carries_the_configured_claims() {
    let f = fixture();

    let issued = f.credentials.issue_admin(Duration::days(90)).unwrap();
    let claims = f.claims(&issued.token);

    assert_eq!(claims.iss.as_deref(), Some(ISSUER));
    assert_eq!(claims.sub.as_deref(), Some(ADMIN_SUBJECT));
    assert_eq!(claims.aud, Some(Audience::One(AUDIENCE.into())));
    assert_eq!(claims.iat, Some(T0.unix_timestamp()));
    assert_eq!(claims.exp, Some((T0 + Duration::days(90)).unix_timestamp()));
    assert_eq!(
        claims.extra,
        GatewayClaims {
            role: Role::Admin,
            scopes: Vec::new()
        }
    );
}

#[test]
fn agent_token_carries_the_agent_id_and_a_copy_of_its_scopes() {
    let f = fixture();
    let agent = f.agent(&["read", "posts:write"]);

    let issued = f.issue(&agent);
    let claims = f.claims(&issued.token);

    assert_eq!(claims.sub.as_deref(), Some(agent.agent_id.as_str()));
    assert_eq!(claims.extra.role, Role::Agent);
    assert_eq!(claims.extra.scopes, ["read", "posts:write"]);
    assert_eq!(claims.iat, Some(T0.unix_timestamp()));
    assert_eq!(claims.exp, Some((T0 + Duration::days(30)).unix_timestamp()));
}

#[test]
fn agent_token_verifies_to_its_agent_and_scopes() {
    let f = fixture();
    let agent = f.agent(&["read"]);

    let issued = f.issue(&agent);
    let principal = f.check(&issued.token).unwrap();

    assert_eq!(*principal.agent, agent);
    assert_eq!(principal.scopes, ["read"]);
    assert!(principal.has_scope("read"));
    assert!(!principal.has_scope("write"));
    assert_eq!(principal.jti, issued.jti);
    assert_eq!(principal.expires_at, T0 + Duration::days(30));
}

#[test]
fn token_id_is_128_random_bits_in_lowercase_hex() {
    let f = fixture();

    let a = f.credentials.issue_admin(Duration::HOUR).unwrap();
    let b = f.credentials.issue_admin(Duration::HOUR).unwrap();

    for jti in [&a.jti, &b.jti] {
        assert_eq!(jti.len(), 32);
        assert!(jti.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }
    assert_ne!(a.jti, b.jti);
    assert_eq!(f.claims(&a.token).jti.as_ref(), Some(&a.jti));
}

#[test]
fn agent_token_never_passes_verify_admin() {
    let f = fixture();
    let agent = f.agent(&[]);
    let issued = f.issue(&agent);

    assert_eq!(
        f.credentials.verify_admin(&issued.token),
        Err(AuthError::WrongRole)
    );
}

#[test]
fn admin_token_never_passes_verify_agent() {
    let f = fixture();
    let issued = f.credentials.issue_admin(Duration::days(90)).unwrap();

    assert_eq!(f.check(&issued.token), Err(AuthError::WrongRole));
}

#[test]
fn deactivated_agent_is_refused_right_after_the_write() {
    let f = fixture();
    let agent = f.agent(&[]);
    let issued = f.issue(&agent);
    assert!(f.check(&issued.token).is_ok());

    let off = AgentPatch {
        is_active: Some(false),
        ..AgentPatch::default()
    };
    f.registry.update(&agent.agent_id, off, T0).unwrap();
    assert_eq!(f.check(&issued.token), Err(AuthError::InactiveAgent));

    let on = AgentPatch {
        is_active: Some(true),
        ..AgentPatch::default()
    };
    f.registry.update(&agent.agent_id, on, T0).unwrap();
    assert!(f.check(&issued.token).is_ok());
}

#[test]
fn deleted_agent_is_refused_right_after_the_write() {
    let f = fixture();
    let agent = f.agent(&[]);
    let issued = f.issue(&agent);
    assert!(f.check(&issued.token).is_ok());

    f.registry.delete(&agent.agent_id).unwrap();

    assert_eq!(f.check(&issued.token), Err(AuthError::UnknownAgent));
}

#[test]
fn token_issued_before_its_agent_was_created_is_refused() {
    let f = fixture();
    // The agent holding this id now was created an hour after the clock's "now", as if the
    // token had been issued to an earlier agent that drew the same id.
    let new = NewAgent::new("successor");
    let agent = f.registry.create(new, T0 + Duration::HOUR).unwrap();
    let issued = f.issue(&agent);

    assert_eq!(f.check(&issued.token), Err(AuthError::UnknownAgent));
}

#[test]
fn token_issued_within_a_minute_before_its_agent_is_accepted() {
    let f = fixture();
    // As if the wall clock had stepped back between creating the agent and issuing the token.
    let new = NewAgent::new("fresh");
    let agent = f.registry.create(new, T0 + Duration::seconds(60)).unwrap();
    let issued = f.issue(&agent);

    assert!(f.check(&issued.token).is_ok());
}

#[test]
fn inactive_agent_gets_no_token() {
    let f = fixture();
    let new = NewAgent {
        is_active: false,
        ..NewAgent::new("off")
    };
    let agent = f.registry.create(new, T0).unwrap();

    let err = f
        .credentials
        .issue_agent(&agent, Duration::days(30))
        .unwrap_err();

    assert!(matches!(err, CredentialError::InactiveAgent(id) if id == agent.agent_id));
}

#[test]
fn scope_removed_from_the_agent_is_not_granted_by_an_older_token() {
    let f = fixture();
    let agent = f.agent(&["read", "write"]);
    let issued = f.issue(&agent);

    let patch = AgentPatch {
        scopes: Some(vec!["read".into(), "admin".into()]),
        ..AgentPatch::default()
    };
    f.registry.update(&agent.agent_id, patch, T0).unwrap();
    let principal = f.check(&issued.token).unwrap();

    // "write" was removed; "admin" was added after the token and is not in it.
    assert_eq!(principal.scopes, ["read"]);
}

#[test]
fn expired_token_is_refused() {
    let f = fixture();
    let agent = f.agent(&[]);
    let admin = f.credentials.issue_admin(Duration::HOUR).unwrap();
    let token = f.credentials.issue_agent(&agent, Duration::HOUR).unwrap();

    // Within the 60 s leeway after expiry both still pass.
    f.clock.advance(Duration::HOUR + Duration::seconds(59));
    assert!(f.credentials.verify_admin(&admin.token).is_ok());
    assert!(f.check(&token.token).is_ok());

    f.clock.advance(Duration::seconds(2));
    assert_eq!(
        f.credentials.verify_admin(&admin.token),
        Err(AuthError::Invalid(VerifyError::Expired))
    );
    assert_eq!(
        f.check(&token.token),
        Err(AuthError::Invalid(VerifyError::Expired))
    );
}

#[test]
fn token_signed_with_another_key_is_refused() {
    let f = fixture();
    let other = Credentials::new(keys(&[8; 32]), ISSUER, AUDIENCE, Arc::new(f.clock.clone()));

    let issued = other.issue_admin(Duration::HOUR).unwrap();

    assert_eq!(
        f.credentials.verify_admin(&issued.token),
        Err(AuthError::Invalid(VerifyError::BadSignature))
    );
}

#[test]
fn token_for_another_issuer_or_audience_is_refused() {
    let f = fixture();
    let clock: Arc<dyn Clock> = Arc::new(f.clock.clone());
    let wrong_issuer = Credentials::new(keys(&KEY), "elsewhere", AUDIENCE, Arc::clone(&clock));
    let wrong_audience = Credentials::new(keys(&KEY), ISSUER, "elsewhere", clock);

    let a = wrong_issuer.issue_admin(Duration::HOUR).unwrap();
    let b = wrong_audience.issue_admin(Duration::HOUR).unwrap();

    assert_eq!(
        f.credentials.verify_admin(&a.token),
        Err(AuthError::Invalid(VerifyError::WrongIssuer))
    );
    assert_eq!(
        f.credentials.verify_admin(&b.token),
        Err(AuthError::Invalid(VerifyError::WrongAudience))
    );
}

#[test]
fn empty_or_malformed_token_is_refused() {
    let f = fixture();

    assert_eq!(f.credentials.verify_admin(""), Err(AuthError::Missing));
    assert_eq!(
        f.credentials.verify_agent("", &f.registry),
        Err(AuthError::Missing)
    );
    for junk in ["Bearer x", "a.b", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert!(
            matches!(f.credentials.verify_admin(junk), Err(AuthError::Invalid(_))),
            "{junk}"
        );
    }
}

#[test]
fn token_lifetime_must_be_at_least_a_second_and_end_by_year_9999() {
    let f = fixture();

    for ttl in [Duration::ZERO, Duration::milliseconds(999), -Duration::DAY] {
        assert!(matches!(
            f.credentials.issue_admin(ttl),
            Err(CredentialError::InvalidTtl)
        ));
    }
    assert!(matches!(
        f.credentials.issue_admin(Duration::days(365 * 10_000)),
        Err(CredentialError::InvalidTtl)
    ));
    assert!(f.credentials.issue_admin(Duration::SECOND).is_ok());
}

#[test]
fn issued_token_debug_hides_the_token_and_json_shows_it() {
    let f = fixture();
    let issued = f.credentials.issue_admin(Duration::days(90)).unwrap();

    let debug = format!("{issued:?}");
    assert!(!debug.contains(&issued.token));
    assert!(!debug.contains("eyJ"));

    let json = serde_json::to_value(&issued).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"token": issued.token, "expiresAt": "2026-08-04T12:00:00Z"})
    );
}

#[test]
fn credentials_debug_shows_no_key_material() {
    let f = fixture();

    let debug = format!("{:?}", f.credentials);

    assert!(debug.contains("ithil-dev"));
    assert!(!debug.contains("7, 7"));
    assert!(!debug.contains("BwcH"), "base64 of the key bytes");
}

#[test]
fn error_messages_name_no_token_content() {
    let f = fixture();
    let issued = f.credentials.issue_admin(Duration::HOUR).unwrap();
    f.clock.advance(Duration::DAY);

    let err = f.credentials.verify_admin(&issued.token).unwrap_err();

    assert_eq!(err.to_string(), "token is invalid");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "token has expired"
    );
}
