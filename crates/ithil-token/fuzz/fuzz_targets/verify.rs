//! Feeds arbitrary bytes to the verifier; it must never panic.
//!
//! Random bytes almost never carry a valid MAC, so most of them stop at the signature check.
//! To reach the code behind it, each input is also used as the header and as the claims of a
//! token that is given a valid MAC here, and a token that verifies must sign and verify again
//! to the same claims.

#![no_main]

use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ithil_token::{
    Claims, KeyRing, ManualClock, NoExtra, SigningKey, Validation, decode_header, sign, verify,
};
use libfuzzer_sys::fuzz_target;
use ring::hmac;
use serde_json::{Map, Value};

const SECRET: &[u8; 32] = b"fuzz-secret-fuzz-secret-fuzz-sec";
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"fuzz"}"#;
const CLAIMS: &str = r#"{"iss":"ithil","exp":1750003600,"role":"agent"}"#;

type Extra = Map<String, Value>;

struct Fixture {
    keys: KeyRing,
    mac_key: hmac::Key,
    lenient: Validation,
    strict: Validation,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let clock = Arc::new(ManualClock::new(
        time::OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap(),
    ));
    Fixture {
        keys: KeyRing::new("fuzz", SigningKey::from_bytes(SECRET).unwrap()),
        mac_key: hmac::Key::new(hmac::HMAC_SHA256, SECRET),
        lenient: Validation::default().clear_required().clock(clock.clone()),
        strict: Validation::default()
            .issuer("ithil")
            .audience("mcp")
            .clock(clock),
    }
});

fn forge(fixture: &Fixture, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let tag = hmac::sign(&fixture.mac_key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn check(fixture: &Fixture, token: &str) {
    let _ = verify::<NoExtra>(token, &fixture.keys, &fixture.strict);
    let Ok(claims) = verify::<Extra>(token, &fixture.keys, &fixture.lenient) else {
        return;
    };
    // Whatever verifies must survive a round trip unchanged.
    let again = sign(&fixture.keys, &claims).expect("verified claims sign again");
    let back: Claims<Extra> =
        verify(&again, &fixture.keys, &fixture.lenient).expect("re-signed claims verify");
    assert_eq!(back.iss, claims.iss);
    assert_eq!(back.sub, claims.sub);
    assert_eq!(back.aud, claims.aud);
    assert_eq!(
        (back.exp, back.nbf, back.iat),
        (claims.exp, claims.nbf, claims.iat)
    );
    assert_eq!(back.jti, claims.jti);
    assert!(
        same_object(&back.extra, &claims.extra),
        "{back:?} != {claims:?}"
    );
}

/// Compares application claims, allowing floats to differ in the last few bits.
///
/// serde_json's default float parser (without its `float_roundtrip` feature) is not always
/// correctly rounded: `543333333333333333333333333333333333333333333` reads as a float whose
/// shortest printed form, `5.433333333333333e44`, reads back as its neighbour. That is a property
/// of serde_json as the workspace configures it, not of this crate.
fn same_object(a: &Extra, b: &Extra) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.to_bits().abs_diff(y.to_bits()) <= 4,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        (Value::Object(x), Value::Object(y)) => same_object(x, y),
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;

    if let Ok(token) = std::str::from_utf8(data) {
        let _ = decode_header(token);
        check(fixture, token);
    }
    check(fixture, &forge(fixture, HEADER.as_bytes(), data));
    check(fixture, &forge(fixture, data, CLAIMS.as_bytes()));
});
