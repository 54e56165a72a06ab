//! One test per reason `verify` refuses a token.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ithil_token::{
    Audience, Claim, Claims, KeyRing, NoExtra, Part, Validation, VerifyError, sign, verify,
};
use ring::hmac;
use time::Duration;

use crate::{Agent, NOW, agent_claims, clock, key, ring, validation};

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#;
const CLAIMS: &str = r#"{"iss":"ithil","aud":"mcp","exp":1750003600}"#;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Builds a token from raw parts and gives it a valid MAC under [`key(1)`](crate::key).
fn forge(header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    mac(&input)
}

/// Appends a valid MAC under `key(1)` to an already encoded signing input.
fn mac(input: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key(1).expose_secret());
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// Validation at [`NOW`] without issuer or audience checks.
fn no_audience() -> Validation {
    Validation::default().clock(Arc::new(clock()))
}

fn check(token: &str) -> Result<Claims<NoExtra>, VerifyError> {
    verify(token, &ring(), &validation())
}

fn assert_refused(token: &str, expected: VerifyError) {
    assert_eq!(check(token).unwrap_err(), expected, "token {token:?}");
}

#[test]
fn forged_baseline_token_verifies() {
    // Guards the helpers: every test below changes one thing from this token.
    check(&forge(HEADER, CLAIMS)).unwrap();
}

#[test]
fn token_longer_than_the_maximum_is_refused_before_decoding() {
    let token = forge(HEADER, CLAIMS);
    let v = validation().max_len(token.len() - 1);
    let err = verify::<NoExtra>(&token, &ring(), &v).unwrap_err();
    assert_eq!(
        err,
        VerifyError::TooLong {
            len: token.len(),
            max: token.len() - 1
        }
    );
    // Garbage of the same length gets the same answer: length is judged first.
    let garbage = "!".repeat(token.len());
    assert_eq!(verify::<NoExtra>(&garbage, &ring(), &v).unwrap_err(), err);
    assert!(verify::<NoExtra>(&token, &ring(), &validation().max_len(token.len())).is_ok());
}

#[test]
fn default_maximum_length_is_8_kib() {
    let token = forge(
        HEADER,
        &format!(r#"{{"exp":{},"pad":"{}"}}"#, NOW + 1, "x".repeat(7000)),
    );
    assert!(token.len() > 8192);
    assert!(matches!(
        check(&token).unwrap_err(),
        VerifyError::TooLong { max: 8192, .. }
    ));
}

#[test]
fn token_with_fewer_than_three_parts_is_refused() {
    for token in ["", "abc", "abc.def", "eyJhbGciOiJIUzI1NiJ9.e30"] {
        assert_refused(token, VerifyError::MissingParts);
    }
}

#[test]
fn anything_after_the_signature_is_refused() {
    let token = forge(HEADER, CLAIMS);
    for suffix in [".", ".x", ".e30", " ", "\n", "\t", "\r\n"] {
        assert_refused(&format!("{token}{suffix}"), VerifyError::TrailingData);
    }
}

#[test]
fn padded_header_is_refused() {
    let token = forge(HEADER, CLAIMS);
    let (header, rest) = token.split_once('.').unwrap();
    // The header is 56 bytes of JSON, so its base64 has 75 characters and would take one `=`.
    assert_eq!(header.len() % 4, 3);
    let claims = rest.rsplit_once('.').unwrap().0;
    assert_refused(
        &mac(&format!("{header}=.{claims}")),
        VerifyError::Base64(Part::Header),
    );
}

#[test]
fn standard_alphabet_in_the_claims_is_refused() {
    // A claims set whose base64url has a `-` or `_`, rewritten in the standard alphabet.
    let claims = r#"{"exp":1750003600,"x":"~~~???>>>"}"#;
    let encoded = b64(claims.as_bytes());
    assert!(encoded.contains(['-', '_']), "{encoded}");
    let standard = encoded.replace('-', "+").replace('_', "/");
    let token = mac(&format!("{}.{standard}", b64(HEADER.as_bytes())));
    assert_eq!(
        verify::<NoExtra>(&token, &ring(), &no_audience()).unwrap_err(),
        VerifyError::Base64(Part::Claims)
    );
}

#[test]
fn non_canonical_trailing_bits_in_the_claims_are_refused() {
    // 20 bytes of JSON leave 2 unused bits in the last base64 character; setting one gives a
    // second spelling of the same bytes, which only a lax decoder accepts.
    let claims = br#"{"exp":1750003600}  "#;
    assert_eq!(claims.len() % 3, 2);
    let encoded = b64(claims);
    let index = base64_index(encoded.chars().last().unwrap());
    assert_eq!(
        index & 1,
        0,
        "canonical encodings leave the unused bits zero"
    );
    let tweaked = format!(
        "{}{}",
        &encoded[..encoded.len() - 1],
        base64_char(index | 1)
    );

    let canonical = mac(&format!("{}.{encoded}", b64(HEADER.as_bytes())));
    assert!(verify::<NoExtra>(&canonical, &ring(), &no_audience()).is_ok());
    let token = mac(&format!("{}.{tweaked}", b64(HEADER.as_bytes())));
    assert_eq!(
        verify::<NoExtra>(&token, &ring(), &no_audience()).unwrap_err(),
        VerifyError::Base64(Part::Claims)
    );
}

#[test]
fn signature_that_is_not_base64url_is_refused() {
    let token = forge(HEADER, CLAIMS);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let bad = format!("{input}.{}=", signature);
    assert_refused(&bad, VerifyError::Base64(Part::Signature));
    let bad = format!(
        "{input}.{}",
        signature.replace(|c: char| c.is_ascii_digit(), "+")
    );
    if bad != token {
        assert_refused(&bad, VerifyError::Base64(Part::Signature));
    }
}

#[test]
fn header_that_is_not_a_json_object_is_refused() {
    for header in [
        "[]",
        "null",
        r#"{"alg":"HS256""#,
        r#"{"alg":["HS256"]}"#,
        "\u{feff}{}",
    ] {
        assert_refused(&forge(header, CLAIMS), VerifyError::HeaderJson);
    }
}

#[test]
fn duplicate_member_in_the_header_is_refused() {
    let header = r#"{"alg":"HS256","kid":"k1","kid":"k2"}"#;
    assert_refused(
        &forge(header, CLAIMS),
        VerifyError::DuplicateMember(Part::Header),
    );
}

#[test]
fn header_without_alg_is_refused() {
    assert_refused(
        &forge(r#"{"typ":"JWT"}"#, CLAIMS),
        VerifyError::MissingAlgorithm,
    );
}

#[test]
fn algorithm_other_than_hs256_is_refused() {
    for alg in ["none", "None", "HS512", "hs256", "RS256", "ES256"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
        assert_refused(&forge(&header, CLAIMS), VerifyError::UnsupportedAlgorithm);
    }
}

#[test]
fn alg_none_without_a_signature_is_refused() {
    let token = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(CLAIMS.as_bytes()));
    assert_refused(&token, VerifyError::UnsupportedAlgorithm);
}

#[test]
fn type_other_than_jwt_is_refused() {
    for typ in ["at+jwt", "jwt", "JOSE", ""] {
        let header = format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#);
        assert_refused(&forge(&header, CLAIMS), VerifyError::UnsupportedType);
    }
}

#[test]
fn absent_type_is_accepted() {
    check(&forge(r#"{"alg":"HS256"}"#, CLAIMS)).unwrap();
}

#[test]
fn crit_header_is_refused() {
    for crit in [r#"["b64"]"#, "[]", "null"] {
        let header = format!(r#"{{"alg":"HS256","crit":{crit},"b64":false}}"#);
        assert_refused(&forge(&header, CLAIMS), VerifyError::CriticalHeader);
    }
}

#[test]
fn unknown_kid_is_refused() {
    let header = r#"{"alg":"HS256","kid":"k9"}"#;
    assert_refused(&forge(header, CLAIMS), VerifyError::UnknownKey);
}

#[test]
fn token_without_kid_is_checked_against_the_signing_key() {
    let token = forge(r#"{"alg":"HS256"}"#, CLAIMS);
    check(&token).unwrap();
    // A ring with another signing key refuses it, even when key(1) is a verify key there.
    let other = KeyRing::new("k2", key(2)).with_verify_key("k1", key(1));
    assert_eq!(
        verify::<NoExtra>(&token, &other, &validation()).unwrap_err(),
        VerifyError::BadSignature
    );
}

#[test]
fn wrong_mac_is_refused() {
    let token = forge(HEADER, CLAIMS);
    let (input, _) = token.rsplit_once('.').unwrap();
    let zeros = b64(&[0; 32]);
    assert_refused(&format!("{input}.{zeros}"), VerifyError::BadSignature);
    // Truncated or extended MACs are wrong MACs too.
    assert_refused(
        &format!("{input}.{}", b64(&[0; 31])),
        VerifyError::BadSignature,
    );
    assert_refused(
        &format!("{input}.{}", b64(&[0; 33])),
        VerifyError::BadSignature,
    );
    assert_refused(&format!("{input}."), VerifyError::BadSignature);
}

#[test]
fn mac_is_checked_before_the_claims_are_decoded() {
    let header = b64(HEADER.as_bytes());
    let zeros = b64(&[0; 32]);
    for claims in ["!!!", "e30=", &b64(b"not json")] {
        assert_refused(
            &format!("{header}.{claims}.{zeros}"),
            VerifyError::BadSignature,
        );
    }
}

#[test]
fn claims_that_are_not_a_json_object_are_refused() {
    for claims in [
        "[]",
        "1",
        r#"{"exp":1750003600"#,
        r#"{"exp":1750003600}{}"#,
        "\u{0}",
    ] {
        assert_refused(&forge(HEADER, claims), VerifyError::ClaimsJson);
    }
}

#[test]
fn duplicate_member_in_the_claims_is_refused() {
    for claims in [
        r#"{"iss":"ithil","aud":"mcp","exp":1750003600,"exp":1750003600}"#,
        r#"{"iss":"evil","iss":"ithil","aud":"mcp","exp":1750003600}"#,
        r#"{"iss":"ithil","aud":"mcp","exp":1750003600,"role":"agent","role":"admin"}"#,
    ] {
        assert_refused(
            &forge(HEADER, claims),
            VerifyError::DuplicateMember(Part::Claims),
        );
    }
}

#[test]
fn registered_claim_of_the_wrong_type_is_refused() {
    let claims = r#"{"iss":["ithil"],"aud":"mcp","exp":1750003600}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::InvalidClaim(Claim::Iss),
    );
    let claims = r#"{"iss":"ithil","aud":7,"exp":1750003600}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::InvalidClaim(Claim::Aud),
    );
}

#[test]
fn non_integer_time_claim_is_refused() {
    for exp in ["1750003600.0", "1.75e9", "\"1750003600\""] {
        let claims = format!(r#"{{"iss":"ithil","aud":"mcp","exp":{exp}}}"#);
        assert_refused(
            &forge(HEADER, &claims),
            VerifyError::NonIntegerTime(Claim::Exp),
        );
    }
    let claims = r#"{"iss":"ithil","aud":"mcp","exp":1750003600,"iat":0.5}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::NonIntegerTime(Claim::Iat),
    );
}

#[test]
fn out_of_range_time_claim_is_refused() {
    for exp in [
        "-1",
        "253402300800",
        "9223372036854775807",
        "18446744073709551615",
    ] {
        let claims = format!(r#"{{"iss":"ithil","aud":"mcp","exp":{exp}}}"#);
        assert_refused(
            &forge(HEADER, &claims),
            VerifyError::TimeOutOfRange(Claim::Exp),
        );
    }
    let claims = r#"{"iss":"ithil","aud":"mcp","exp":1750003600,"nbf":-5}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::TimeOutOfRange(Claim::Nbf),
    );
}

#[test]
fn application_claims_of_the_wrong_shape_are_refused() {
    let token = forge(
        HEADER,
        r#"{"iss":"ithil","aud":"mcp","exp":1750003600,"role":1}"#,
    );
    assert_eq!(
        verify::<Agent>(&token, &ring(), &validation()).unwrap_err(),
        VerifyError::ClaimsType
    );
}

#[test]
fn missing_exp_is_refused_by_default() {
    let claims = r#"{"iss":"ithil","aud":"mcp"}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::MissingClaim(Claim::Exp),
    );
}

#[test]
fn missing_required_claim_is_refused() {
    let token = forge(HEADER, CLAIMS);
    for claim in [Claim::Sub, Claim::Nbf, Claim::Iat, Claim::Jti] {
        let v = validation().require(claim);
        assert_eq!(
            verify::<NoExtra>(&token, &ring(), &v).unwrap_err(),
            VerifyError::MissingClaim(claim)
        );
    }
}

#[test]
fn missing_issuer_is_refused_when_an_issuer_is_expected() {
    let claims = r#"{"aud":"mcp","exp":1750003600}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::MissingClaim(Claim::Iss),
    );
}

#[test]
fn missing_audience_is_refused_when_an_audience_is_expected() {
    let claims = r#"{"iss":"ithil","exp":1750003600}"#;
    assert_refused(
        &forge(HEADER, claims),
        VerifyError::MissingClaim(Claim::Aud),
    );
}

#[test]
fn expired_token_is_refused_once_the_leeway_has_passed() {
    let keys = ring();
    let token = sign(&keys, &agent_claims()).unwrap();
    let clock = clock();
    let v = validation().clock(Arc::new(clock.clone()));

    clock.advance(Duration::seconds(3600 + 59));
    assert!(verify::<Agent>(&token, &keys, &v).is_ok());
    clock.advance(Duration::seconds(1));
    assert_eq!(
        verify::<Agent>(&token, &keys, &v).unwrap_err(),
        VerifyError::Expired
    );

    let strict = v.leeway(Duration::ZERO);
    clock.advance(Duration::seconds(-60));
    assert_eq!(
        verify::<Agent>(&token, &keys, &strict).unwrap_err(),
        VerifyError::Expired
    );
    clock.advance(Duration::seconds(-1));
    assert!(verify::<Agent>(&token, &keys, &strict).is_ok());
}

#[test]
fn token_before_its_nbf_is_refused_beyond_the_leeway() {
    let keys = ring();
    let claims = Claims {
        nbf: Some(NOW + 120),
        ..agent_claims()
    };
    let token = sign(&keys, &claims).unwrap();
    let clock = clock();
    let v = validation().clock(Arc::new(clock.clone()));

    assert_eq!(
        verify::<Agent>(&token, &keys, &v).unwrap_err(),
        VerifyError::NotYetValid
    );
    clock.advance(Duration::seconds(60));
    assert!(verify::<Agent>(&token, &keys, &v).is_ok());
}

#[test]
fn wrong_issuer_is_refused() {
    let claims = Claims {
        iss: Some("someone-else".into()),
        ..agent_claims()
    };
    let token = sign(&ring(), &claims).unwrap();
    assert_eq!(
        verify::<Agent>(&token, &ring(), &validation()).unwrap_err(),
        VerifyError::WrongIssuer
    );
}

#[test]
fn wrong_audience_is_refused() {
    for aud in [
        Audience::One("management".into()),
        Audience::Many(vec!["a".into(), "b".into()]),
        Audience::Many(vec![]),
    ] {
        let claims = Claims {
            aud: Some(aud),
            ..agent_claims()
        };
        let token = sign(&ring(), &claims).unwrap();
        assert_eq!(
            verify::<Agent>(&token, &ring(), &validation()).unwrap_err(),
            VerifyError::WrongAudience
        );
    }
}

#[test]
fn audience_in_a_list_is_accepted() {
    let claims = Claims {
        aud: Some(Audience::Many(vec!["other".into(), "mcp".into()])),
        ..agent_claims()
    };
    let token = sign(&ring(), &claims).unwrap();
    assert!(verify::<Agent>(&token, &ring(), &validation()).is_ok());
}

#[test]
fn audience_is_refused_when_none_is_expected() {
    let token = sign(&ring(), &agent_claims()).unwrap();
    let v = Validation::default()
        .issuer("ithil")
        .clock(Arc::new(clock()));
    assert_eq!(
        verify::<Agent>(&token, &ring(), &v).unwrap_err(),
        VerifyError::WrongAudience
    );
}

#[test]
fn error_messages_contain_no_token_or_key_material() {
    let secret = key(1);
    let token = sign(&ring(), &agent_claims()).unwrap();
    let pieces: Vec<&str> = token.split('.').collect();
    let mut errors = vec![
        check(&format!("{token}x")).unwrap_err(),
        check(&format!("{token} ")).unwrap_err(),
        check(&token[..token.len() - 2]).unwrap_err(),
        check(&forge(r#"{"alg":"HS256","kid":"agt_3f9a1c2b"}"#, CLAIMS)).unwrap_err(),
        check(&forge(
            HEADER,
            r#"{"iss":"agt_3f9a1c2b","aud":"mcp","exp":1750003600}"#,
        ))
        .unwrap_err(),
        check(&forge(r#"{"alg":"agt_3f9a1c2b"}"#, CLAIMS)).unwrap_err(),
    ];
    errors.push(verify::<Agent>(&token, &ring(), &validation().max_len(10)).unwrap_err());

    for err in errors {
        let text = format!("{err} {err:?}");
        for piece in &pieces {
            assert!(!text.contains(piece), "{text}");
        }
        assert!(!text.contains("agt_3f9a1c2b"), "{text}");
        assert!(!text.contains("orders"), "{text}");
        assert!(
            !text.contains(&format!("{:?}", secret.expose_secret())),
            "{text}"
        );
        assert_eq!(text, text.to_string());
        assert!(text.chars().next().unwrap().is_lowercase(), "{text}");
    }
}

fn base64_index(c: char) -> u8 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET.iter().position(|&a| a as char == c).unwrap() as u8
}

fn base64_char(index: u8) -> char {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    ALPHABET[usize::from(index)] as char
}
