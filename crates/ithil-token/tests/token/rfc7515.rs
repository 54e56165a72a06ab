//! RFC 7515 Appendix A.1: the HS256 example.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ithil_token::{Claims, KeyRing, ManualClock, SigningKey, Validation, VerifyError, verify};
use ring::hmac;
use serde::Deserialize;
use time::OffsetDateTime;

/// The JWK `k` of Appendix A.1.
const JWK_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

/// The JWS Signing Input of Appendix A.1, split across lines exactly where the RFC splits it.
const SIGNING_INPUT: &str = concat!(
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9",
    ".",
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
);

const SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[derive(Debug, Deserialize)]
struct Root {
    #[serde(rename = "http://example.com/is_root")]
    is_root: bool,
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&URL_SAFE_NO_PAD.decode(JWK_K).unwrap()).unwrap()
}

fn clock_at(secs: i64) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(secs).unwrap(),
    ))
}

#[test]
fn hmac_of_the_a1_signing_input_is_the_a1_signature() {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key().expose_secret());
    let tag = hmac::sign(&key, SIGNING_INPUT.as_bytes());
    assert_eq!(URL_SAFE_NO_PAD.encode(tag.as_ref()), SIGNATURE);
}

#[test]
fn a1_token_verifies_before_its_expiry_with_issuer_joe() {
    let token = format!("{SIGNING_INPUT}.{SIGNATURE}");
    let keys = KeyRing::new("a1", key());
    let validation = Validation::default()
        .issuer("joe")
        .leeway(time::Duration::ZERO)
        .clock(clock_at(1_300_819_379));

    let claims: Claims<Root> = verify(&token, &keys, &validation).unwrap();
    assert_eq!(claims.iss.as_deref(), Some("joe"));
    assert_eq!(claims.exp, Some(1_300_819_380));
    assert!(claims.extra.is_root);
}

#[test]
fn a1_token_is_expired_at_its_exp() {
    let token = format!("{SIGNING_INPUT}.{SIGNATURE}");
    let keys = KeyRing::new("a1", key());
    let validation = Validation::default()
        .issuer("joe")
        .leeway(time::Duration::ZERO)
        .clock(clock_at(1_300_819_380));
    let err = verify::<Root>(&token, &keys, &validation).unwrap_err();
    assert_eq!(err, VerifyError::Expired);
}
