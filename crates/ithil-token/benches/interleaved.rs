//! The verification ratios of `verify.rs`, measured so that a shared, noisy machine cannot tilt
//! them: the contenders take turns in short batches, and each ratio is the median of the
//! per-round ratios, so that load which comes and goes slows both sides of every ratio alike.
//!
//! Criterion times one benchmark after another, several seconds each; when other work on the
//! machine starts or stops in between, the ratio of two of its figures moves by a factor that has
//! nothing to do with the code. Here a round times 500 verifications of each contender, the
//! order rotating from round to round, and 300 rounds make the quartiles.
//!
//! `cargo bench -p ithil-token --bench interleaved`

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

mod fixture;

use fixture::{Agent, BorrowedFlatClaims, FlatClaims, SECRET};

const ROUNDS: usize = 300;
const BATCH: u32 = 500;

/// A name and one verification.
type Contender<'a> = (&'static str, Box<dyn Fn() + 'a>);

fn main() {
    let keys = fixture::keys();
    let token = ithil_token::sign(&keys, &fixture::agent_claims()).unwrap();
    let validation = fixture::validation();
    let jwt_key = jsonwebtoken::DecodingKey::from_secret(&SECRET).unwrap();
    let jwt_validation = fixture::jwt_validation();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let claims_b64 = signing_input.split_once('.').unwrap().1;
    let ring_key = hmac::Key::new(hmac::HMAC_SHA256, &SECRET);

    let contenders: [Contender<'_>; 5] = [
        (
            "ithil-token",
            Box::new(|| {
                black_box(
                    ithil_token::verify::<Agent>(black_box(&token), &keys, &validation).unwrap(),
                );
            }),
        ),
        (
            "jsonwebtoken",
            Box::new(|| {
                black_box(
                    jsonwebtoken::decode::<FlatClaims>(
                        black_box(&token),
                        &jwt_key,
                        &jwt_validation,
                    )
                    .unwrap(),
                );
            }),
        ),
        (
            "ring-hmac-floor",
            Box::new(|| {
                hmac::verify(&ring_key, black_box(signing_input.as_bytes()), &signature).unwrap();
            }),
        ),
        (
            "hmac-decode-parse-floor",
            Box::new(|| {
                hmac::verify(&ring_key, black_box(signing_input.as_bytes()), &signature).unwrap();
                let json = URL_SAFE_NO_PAD.decode(black_box(claims_b64)).unwrap();
                black_box(serde_json::from_slice::<FlatClaims>(&json).unwrap());
            }),
        ),
        (
            "hmac-decode-borrow-floor",
            Box::new(|| {
                hmac::verify(&ring_key, black_box(signing_input.as_bytes()), &signature).unwrap();
                let mut json = [0; 512];
                let len = URL_SAFE_NO_PAD
                    .decode_slice(black_box(claims_b64), &mut json)
                    .unwrap();
                black_box(serde_json::from_slice::<BorrowedFlatClaims>(&json[..len]).unwrap());
            }),
        ),
    ];

    // Per round, nanoseconds per verification of each contender.
    let mut times = vec![Vec::with_capacity(ROUNDS); contenders.len()];
    for (_, run) in &contenders {
        for _ in 0..BATCH {
            run();
        }
    }
    for round in 0..ROUNDS {
        for turn in 0..contenders.len() {
            let which = (round + turn) % contenders.len();
            let start = Instant::now();
            for _ in 0..BATCH {
                (contenders[which].1)();
            }
            times[which].push(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
    }

    println!("{ROUNDS} rounds of {BATCH} verifications each, medians and quartiles:");
    for ((name, _), samples) in contenders.iter().zip(&times) {
        let (q1, median, q3) = quartiles(samples.clone());
        println!("  {name:<25} {median:6.0} ns  ({q1:.0} to {q3:.0})");
    }
    for (label, over, under) in [
        ("jsonwebtoken / ithil-token", 1, 0),
        ("ithil-token / ring-hmac-floor", 0, 2),
        ("ithil-token / hmac-decode-parse-floor", 0, 3),
        ("hmac-decode-parse-floor / ring-hmac-floor", 3, 2),
        ("hmac-decode-borrow-floor / ring-hmac-floor", 4, 2),
    ] {
        let ratios = times[over].iter().zip(&times[under]).map(|(a, b)| a / b);
        let (q1, median, q3) = quartiles(ratios.collect());
        println!("  {label:<43} {median:.2}x  ({q1:.2} to {q3:.2})");
    }
}

fn quartiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: usize| samples[(samples.len() - 1) * q / 4];
    (at(1), at(2), at(3))
}
