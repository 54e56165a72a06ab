//! Verifying tokens: structure, header, key, MAC, then claims, in that order.

use ring::hmac;
use serde::de::DeserializeOwned;

use crate::base64url;
use crate::claims::{Claim, Claims};
use crate::error::{Part, VerifyError};
use crate::header::{Header, RawHeader};
use crate::key::KeyRing;
use crate::payload::parse_claims_into;
use crate::validation::{DEFAULT_MAX_LEN, Validation};

/// Length of an HS256 MAC in bytes.
const MAC_LEN: usize = 32;

/// The longest decoded header or claims kept on the stack; longer ones are decoded onto the heap.
///
/// Typical tokens' claims are a few hundred bytes, so verifying them allocates nothing to decode.
const STACK_DECODE_LEN: usize = 1024;

/// Verifies a compact HS256 token and returns its claims.
///
/// The checks run in this order, and the first failure is returned:
///
/// 1. length, against [`Validation::max_len`], before anything is decoded;
/// 2. structure: exactly three dot-separated parts, nothing after the signature;
/// 3. the header: canonical base64url, a JSON object without repeated members, no `crit`,
///    `alg` exactly `HS256`, `typ` absent or `JWT`;
/// 4. the key: the ring's key for the header's `kid`; a header without `kid` selects the signing
///    key, and an unknown `kid` is refused without trying other keys;
/// 5. the MAC, compared in constant time, before the claims are decoded;
/// 6. the claims: canonical base64url, a JSON object without repeated members, registered claims
///    of the right types, time claims integers from 0 to [`MAX_TIMESTAMP`](crate::MAX_TIMESTAMP);
/// 7. required claims present, then `exp` and `nbf` against the clock with the leeway, then the
///    issuer and the audience.
///
/// # Errors
///
/// Returns the [`VerifyError`] variant naming the first check that failed.
pub fn verify<T: DeserializeOwned>(
    token: &str,
    keys: &KeyRing,
    validation: &Validation,
) -> Result<Claims<T>, VerifyError> {
    if token.len() > validation.max_len {
        return Err(VerifyError::TooLong {
            len: token.len(),
            max: validation.max_len,
        });
    }
    let parts = Parts::split(token)?;

    // A header this ring wrote itself needs no decoding; any other is decoded and judged.
    let key = match keys.key_for_known_header(parts.header) {
        Some(key) => key,
        None => decoded(parts.header, Part::Header, |json| {
            let kid = RawHeader::parse(json)?.check()?;
            keys.verification_key(kid.as_deref())
                .ok_or(VerifyError::UnknownKey)
        })?,
    };

    // `ring::hmac::verify` compares in constant time. A MAC that decodes to the wrong length is
    // simply a wrong MAC; only text that is not base64url at all is a decoding error.
    let mut mac = [0u8; MAC_LEN];
    match base64url::decode_into(parts.signature, &mut mac) {
        Some(MAC_LEN) => {}
        Some(_) => return Err(VerifyError::BadSignature),
        None if base64url::decode(parts.signature).is_some() => {
            return Err(VerifyError::BadSignature);
        }
        None => return Err(VerifyError::Base64(Part::Signature)),
    }
    hmac::verify(key, parts.signing_input.as_bytes(), &mac)
        .map_err(|_| VerifyError::BadSignature)?;

    // From here on the claims are known to come from a holder of the key.
    let mut claims = None;
    decoded(parts.claims, Part::Claims, |json| {
        parse_claims_into::<T>(json, &mut claims)
    })?;
    // Parsing succeeded, so the claims are there; they are checked where they lie, and moved
    // only once, into the result.
    if let Some(claims) = &claims {
        check_claims(claims, validation)?;
    }
    claims.ok_or(VerifyError::ClaimsJson)
}

/// Decodes the base64url `text`, the token's `part`, and hands the bytes to `read`.
///
/// Short texts are decoded into a buffer on the stack, longer ones onto the heap.
fn decoded<R>(
    text: &str,
    part: Part,
    read: impl FnOnce(&[u8]) -> Result<R, VerifyError>,
) -> Result<R, VerifyError> {
    let len = base64url::decoded_len(text.len()).ok_or(VerifyError::Base64(part))?;
    let mut stack = [0u8; STACK_DECODE_LEN];
    let mut heap = Vec::new();
    let buf = if len <= STACK_DECODE_LEN {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    base64url::decode_into(text, buf).ok_or(VerifyError::Base64(part))?;
    read(buf)
}

/// Decodes and checks a token's header without verifying the token.
///
/// Useful to see which `kid` a token names, for example to pick a key ring. Nothing in the result
/// is authenticated: an attacker chooses every byte of it. The same structural and header checks
/// as [`verify`] apply, with the default maximum length ([`DEFAULT_MAX_LEN`]).
///
/// # Errors
///
/// Returns the [`VerifyError`] of the first length, structure or header check that failed.
pub fn decode_header(token: &str) -> Result<Header, VerifyError> {
    if token.len() > DEFAULT_MAX_LEN {
        return Err(VerifyError::TooLong {
            len: token.len(),
            max: DEFAULT_MAX_LEN,
        });
    }
    Parts::split(token)?.header()
}

/// The three parts of a compact token, still encoded.
struct Parts<'t> {
    header: &'t str,
    claims: &'t str,
    signature: &'t str,
    /// `header.claims`, the bytes the MAC covers.
    signing_input: &'t str,
}

impl<'t> Parts<'t> {
    fn split(token: &'t str) -> Result<Parts<'t>, VerifyError> {
        let (header, rest) = token.split_once('.').ok_or(VerifyError::MissingParts)?;
        let (claims, signature) = rest.split_once('.').ok_or(VerifyError::MissingParts)?;
        if signature.contains('.') || signature.ends_with(|c: char| c.is_ascii_whitespace()) {
            return Err(VerifyError::TrailingData);
        }
        Ok(Parts {
            header,
            claims,
            signature,
            signing_input: &token[..header.len() + 1 + claims.len()],
        })
    }

    fn header(&self) -> Result<Header, VerifyError> {
        decoded(self.header, Part::Header, |json| {
            RawHeader::parse(json)?.into_checked()
        })
    }
}

fn check_claims<T>(claims: &Claims<T>, v: &Validation) -> Result<(), VerifyError> {
    for claim in Claim::ALL {
        if v.requires(claim) && !claims.has(claim) {
            return Err(VerifyError::MissingClaim(claim));
        }
    }

    // Time claims are at most `MAX_TIMESTAMP` and the leeway is not negative, so the arithmetic
    // only saturates for a clock set absurdly far out, where saturation gives the right answer.
    let now = v.clock.unix_timestamp();
    if let Some(exp) = claims.exp
        && now >= exp.saturating_add(v.leeway)
    {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(v.leeway) < nbf
    {
        return Err(VerifyError::NotYetValid);
    }

    if let Some(issuer) = &v.issuer
        && claims.iss.as_deref() != Some(issuer)
    {
        return Err(VerifyError::WrongIssuer);
    }
    match (&v.audience, &claims.aud) {
        (Some(expected), Some(aud)) if !aud.contains(expected) => Err(VerifyError::WrongAudience),
        (None, Some(_)) => Err(VerifyError::WrongAudience),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use ring::hmac;
    use serde_json::{Map, Value};

    use super::*;
    use crate::key::SigningKey;

    #[test]
    fn parts_longer_than_the_stack_buffer_are_decoded_on_the_heap() {
        let secret = [7; 32];
        let keys = KeyRing::new("k", SigningKey::from_bytes(&secret).unwrap());
        let pad = "p".repeat(2 * STACK_DECODE_LEN);
        // Not byte-identical to the header the ring writes, so it is decoded.
        let header = format!(r#"{{"alg":"HS256","kid":"k","x":"{pad}"}}"#);
        let claims = format!(r#"{{"sub":"s","pad":"{pad}"}}"#);
        let input = format!(
            "{}.{}",
            base64url::encode(header.as_bytes()),
            base64url::encode(claims.as_bytes())
        );
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", base64url::encode(mac.as_ref()));

        let validation = Validation::default().clear_required().max_len(16 * 1024);
        let verified: Claims<Map<String, Value>> = verify(&token, &keys, &validation).unwrap();
        assert_eq!(verified.sub.as_deref(), Some("s"));
        assert_eq!(verified.extra["pad"], Value::String(pad));
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), Some("k"));

        // One changed character in the long header still fails the MAC.
        let tampered = token.replacen("cHBw", "cHBx", 1);
        assert_ne!(tampered, token);
        assert_eq!(
            verify::<Map<String, Value>>(&tampered, &keys, &validation).unwrap_err(),
            VerifyError::BadSignature
        );
    }
}
