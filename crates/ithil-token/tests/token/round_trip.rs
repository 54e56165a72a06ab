//! Tokens this crate signs verify to the same claims.

use std::collections::BTreeMap;

use ithil_token::{
    Audience, Claim, Claims, KeyRing, NoExtra, SignError, Validation, decode_header, sign, verify,
};
use serde_json::{Value, json};

use crate::{Agent, NOW, agent_claims, clock, key, ring, validation};

#[test]
fn agent_token_round_trips() {
    let keys = ring();
    let claims = agent_claims();
    let token = sign(&keys, &claims).unwrap();
    let back: Claims<Agent> = verify(&token, &keys, &validation()).unwrap();
    assert_eq!(back, claims);
}

#[test]
fn signed_token_is_three_base64url_parts_with_the_kid_in_the_header() {
    let keys = KeyRing::new("2025-06", key(9));
    let token = sign(&keys, &agent_claims()).unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );

    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, "HS256");
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some("2025-06"));
}

#[test]
fn token_without_application_claims_round_trips() {
    let keys = ring();
    let claims = Claims {
        exp: Some(NOW + 1),
        ..Claims::new(NoExtra)
    };
    let token = sign(&keys, &claims).unwrap();
    let validation = Validation::default().clock(std::sync::Arc::new(clock()));
    assert_eq!(
        verify::<NoExtra>(&token, &keys, &validation).unwrap(),
        claims
    );
}

#[test]
fn every_registered_claim_and_a_map_of_extras_round_trip() {
    let keys = ring();
    let mut extra = BTreeMap::new();
    extra.insert("nested".to_owned(), json!({"a": [1, 2.5, null, "é"]}));
    extra.insert("flag".to_owned(), json!(true));
    let claims = Claims {
        iss: Some("ithil".into()),
        sub: Some("admin".into()),
        aud: Some(Audience::Many(vec!["x".into(), "mcp".into()])),
        exp: Some(NOW + 10),
        nbf: Some(NOW - 10),
        iat: Some(NOW - 10),
        jti: Some("j".into()),
        extra,
    };
    let token = sign(&keys, &claims).unwrap();
    let back: Claims<BTreeMap<String, Value>> = verify(&token, &keys, &validation()).unwrap();
    assert_eq!(back, claims);
}

#[test]
fn application_claims_may_be_read_as_a_looser_type() {
    let keys = ring();
    let token = sign(&keys, &agent_claims()).unwrap();
    let back: Claims<NoExtra> = verify(&token, &keys, &validation()).unwrap();
    assert_eq!(back.sub.as_deref(), Some("agt_3f9a1c2b"));
}

#[test]
fn application_claims_using_a_registered_name_are_refused_at_signing() {
    let mut extra = BTreeMap::new();
    extra.insert("exp".to_owned(), json!(1));
    let claims = Claims {
        exp: Some(NOW),
        ..Claims::new(extra)
    };
    let err = sign(&ring(), &claims).unwrap_err();
    assert!(matches!(err, SignError::DuplicateMember), "{err:?}");
}

#[test]
fn application_claims_that_are_not_an_object_are_refused_at_signing() {
    let err = sign(&ring(), &Claims::new(5u32)).unwrap_err();
    assert!(matches!(err, SignError::Serialize(_)), "{err:?}");
}

#[test]
fn out_of_range_time_claims_are_refused_at_signing() {
    for (claims, claim) in [
        (
            Claims {
                exp: Some(-1),
                ..Claims::new(NoExtra)
            },
            Claim::Exp,
        ),
        (
            Claims {
                nbf: Some(ithil_token::MAX_TIMESTAMP + 1),
                ..Claims::new(NoExtra)
            },
            Claim::Nbf,
        ),
        (
            Claims {
                iat: Some(i64::MIN),
                ..Claims::new(NoExtra)
            },
            Claim::Iat,
        ),
    ] {
        let err = sign(&ring(), &claims).unwrap_err();
        assert!(
            matches!(err, SignError::TimeOutOfRange(c) if c == claim),
            "{err:?}"
        );
    }
}

#[test]
fn leeway_accepts_a_token_shortly_after_expiry_and_before_nbf() {
    let keys = ring();
    let claims = Claims {
        exp: Some(NOW - 30),
        nbf: Some(NOW + 30),
        ..Claims::new(NoExtra)
    };
    let token = sign(&keys, &claims).unwrap();
    let validation = Validation::default().clock(std::sync::Arc::new(clock()));
    assert!(verify::<NoExtra>(&token, &keys, &validation).is_ok());
}

#[test]
fn token_without_exp_verifies_when_exp_is_not_required() {
    let keys = ring();
    let token = sign(&keys, &Claims::new(NoExtra)).unwrap();
    let validation = Validation::default().clear_required();
    assert!(verify::<NoExtra>(&token, &keys, &validation).is_ok());
}
