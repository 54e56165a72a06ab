//! Signing and verifying a typical agent token, against `jsonwebtoken` verifying the same token
//! with the same validation, against a bare `ring::hmac::verify` of the same signing input (the
//! floor: what verification costs with no parsing at all), and against the MAC plus one base64url
//! decode and one serde_json parse of the claims (what any verifier returning owned claims must
//! do, with no checks).

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ithil_token::{Audience, Claims, KeyRing, SigningKey, Validation, sign, verify};
use ring::hmac;
use serde::{Deserialize, Serialize};

const SECRET: [u8; 32] = *b"bench-secret-bench-secret-bench!";

/// The application claims of a gateway agent token.
#[derive(Debug, Serialize, Deserialize)]
struct Agent {
    role: String,
    scopes: Vec<String>,
}

/// The same token's claims in one flat struct, the way `jsonwebtoken` users write them.
#[derive(Debug, Serialize, Deserialize)]
struct FlatClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    role: String,
    scopes: Vec<String>,
}

fn agent_claims() -> Claims<Agent> {
    // The benchmark uses the system clock on both sides, so the token must be valid now.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Claims {
        iss: Some("ithil".into()),
        sub: Some("agt_3f9a1c2b".into()),
        aud: Some(Audience::One("mcp".into())),
        exp: Some(now + 30 * 24 * 3600),
        nbf: None,
        iat: Some(now),
        jti: Some("tok_5d2e8f7a91b34c06".into()),
        extra: Agent {
            role: "agent".into(),
            scopes: vec![
                "orders:read".into(),
                "orders:write".into(),
                "catalog:read".into(),
            ],
        },
    }
}

fn benches(c: &mut Criterion) {
    let keys = KeyRing::new("2025-01", SigningKey::from_bytes(&SECRET).unwrap());
    let claims = agent_claims();
    let token = sign(&keys, &claims).unwrap();

    let validation = Validation::default().issuer("ithil").audience("mcp");
    verify::<Agent>(&token, &keys, &validation).expect("ithil-token verifies its own token");

    // The same checks in jsonwebtoken: HS256 only, exp required and checked with 60 s leeway,
    // issuer and audience.
    let jwt_key = jsonwebtoken::DecodingKey::from_secret(&SECRET).unwrap();
    let mut jwt_validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    jwt_validation.leeway = 60;
    jwt_validation.set_issuer(&["ithil"]);
    jwt_validation.set_audience(&["mcp"]);
    jwt_validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<FlatClaims>(&token, &jwt_key, &jwt_validation)
        .expect("jsonwebtoken verifies the same token");

    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let ring_key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);

    println!("token: {} bytes", token.len());

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
