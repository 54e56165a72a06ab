//! Signing and verifying a typical agent token, against `jsonwebtoken` verifying the same token
//! with the same validation, against a bare `ring::hmac::verify` of the same signing input (the
//! floor: what verification costs with no parsing at all), and against the MAC plus one base64url
//! decode and one serde_json parse of the claims (what any verifier returning owned claims must
//! do, with no checks).
//!
//! The `verify-cost` group times those floor steps one by one (base64url, serde_json into owned
//! strings, serde_json into borrowed strings), so that the share of each in a verification can be
//! read off the same run. Two more ithil-token cases take the paths the typical token does not:
//! a header this ring did not write (decoded and judged in full) and claims with a nested object.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ithil_token::{Claims, sign, verify};
use ring::hmac;
use serde::{Deserialize, Serialize};

mod fixture;

use fixture::{Agent, BorrowedFlatClaims, FlatClaims, SECRET, agent_claims, jwt_validation};

/// Agent claims with a nested object, as a token carrying per-agent limits would have.
#[derive(Debug, Serialize, Deserialize)]
struct LimitedAgent {
    role: String,
    scopes: Vec<String>,
    limits: Limits,
}

#[derive(Debug, Serialize, Deserialize)]
struct Limits {
    rpm: u32,
    daily_tokens: u64,
}

fn benches(c: &mut Criterion) {
    let keys = fixture::keys();
    let claims = agent_claims();
    let token = sign(&keys, &claims).unwrap();

    let validation = fixture::validation();
    verify::<Agent>(&token, &keys, &validation).expect("ithil-token verifies its own token");

    let jwt_key = jsonwebtoken::DecodingKey::from_secret(&SECRET).unwrap();
    let jwt_validation = jwt_validation();
    jsonwebtoken::decode::<FlatClaims>(&token, &jwt_key, &jwt_validation)
        .expect("jsonwebtoken verifies the same token");

    // The same claims under a header this ring would not write (no `typ`), so that verification
    // decodes and judges the header instead of recognising it.
    let other_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"2025-01"}"#);
    let claims_part = token.split('.').nth(1).unwrap();
    let other_input = format!("{other_header}.{claims_part}");
    let other_mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &SECRET),
        other_input.as_bytes(),
    );
    let other_token = format!("{other_input}.{}", URL_SAFE_NO_PAD.encode(other_mac));
    verify::<Agent>(&other_token, &keys, &validation).expect("a header the ring did not write");

    let nested = Claims {
        iss: claims.iss.clone(),
        sub: claims.sub.clone(),
        aud: claims.aud.clone(),
        exp: claims.exp,
        nbf: None,
        iat: claims.iat,
        jti: claims.jti.clone(),
        extra: LimitedAgent {
            role: claims.extra.role.clone(),
            scopes: claims.extra.scopes.clone(),
            limits: Limits {
                rpm: 600,
                daily_tokens: 2_000_000,
            },
        },
    };
    let nested_token = sign(&keys, &nested).unwrap();
    verify::<LimitedAgent>(&nested_token, &keys, &validation).expect("nested claims verify");

    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let ring_key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);

    println!(
        "token: {} bytes; nested-claims token: {} bytes",
        token.len(),
        nested_token.len()
    );

    let mut group = c.benchmark_group("verify");
    group.bench_function("ithil-token", |b| {
        b.iter(|| verify::<Agent>(black_box(&token), &keys, &validation).unwrap())
    });
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<FlatClaims>(black_box(&token), &jwt_key, &jwt_validation)
                .unwrap()
        })
    });
    group.bench_function("ring-hmac-floor", |b| {
        b.iter(|| hmac::verify(&ring_key, black_box(signing_input.as_bytes()), &signature).unwrap())
    });
    // What any verifier must do at least for these claims: the MAC, one base64url decode and one
    // serde_json parse into owned strings, with no checks at all.
    let claims_b64 = signing_input.split_once('.').unwrap().1;
    group.bench_function("hmac-decode-parse-floor", |b| {
        b.iter(|| {
            hmac::verify(&ring_key, black_box(signing_input.as_bytes()), &signature).unwrap();
            let json = URL_SAFE_NO_PAD.decode(black_box(claims_b64)).unwrap();
            serde_json::from_slice::<FlatClaims>(&json).unwrap()
        })
    });
    group.bench_function("ithil-token-other-header", |b| {
        b.iter(|| verify::<Agent>(black_box(&other_token), &keys, &validation).unwrap())
    });
    group.bench_function("ithil-token-nested-claims", |b| {
        b.iter(|| verify::<LimitedAgent>(black_box(&nested_token), &keys, &validation).unwrap())
    });
    group.finish();

    // The floor's steps one at a time, on the same claims.
    let claims_json = URL_SAFE_NO_PAD.decode(claims_b64).unwrap();
    let claims_text = std::str::from_utf8(&claims_json).unwrap();
    let mut group = c.benchmark_group("verify-cost");
    group.bench_function("base64-claims", |b| {
        let mut buf = [0u8; 512];
        b.iter(|| {
            URL_SAFE_NO_PAD
                .decode_slice(black_box(claims_b64), &mut buf)
                .unwrap()
        })
    });
    group.bench_function("json-owned", |b| {
        b.iter(|| serde_json::from_str::<FlatClaims>(black_box(claims_text)).unwrap())
    });
    group.bench_function("json-borrowed", |b| {
        b.iter(|| serde_json::from_str::<BorrowedFlatClaims>(black_box(claims_text)).unwrap())
    });
    group.finish();

    let jwt_encoding_key = jsonwebtoken::EncodingKey::from_secret(&SECRET).unwrap();
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jwt_header.kid = Some("2025-01".into());
    let flat: FlatClaims = jsonwebtoken::decode(&token, &jwt_key, &jwt_validation)
        .unwrap()
        .claims;

    let mut group = c.benchmark_group("sign");
    group.bench_function("ithil-token", |b| {
        b.iter(|| sign(&keys, black_box(&claims)).unwrap())
    });
    group.bench_function("jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::encode(&jwt_header, black_box(&flat), &jwt_encoding_key).unwrap())
    });
    group.bench_function("ring-hmac-floor", |b| {
        b.iter(|| hmac::sign(&ring_key, black_box(signing_input.as_bytes())))
    });
    group.finish();
}

criterion_group!(verify_benches, benches);
criterion_main!(verify_benches);
