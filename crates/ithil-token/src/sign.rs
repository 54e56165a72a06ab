//! Issuing tokens.

use ring::hmac;
use serde::Serialize;

use crate::base64url;
use crate::claims::{Claims, in_time_range};
use crate::error::SignError;
use crate::key::KeyRing;
use crate::strict_json::{Malformed, check_object};

/// Length of an HS256 MAC in unpadded base64url.
const SIGNATURE_B64_LEN: usize = 43;

/// Signs `claims` with the ring's signing key and returns the compact token.
///
/// The header is `{"alg":"HS256","typ":"JWT","kid":...}` with the ring's signing kid. `sign`
/// refuses what [`verify`](crate::verify) would refuse for its shape, so a token it returns is
/// well formed; whether it is valid (expiry, issuer, audience) is the caller's choice of claims.
///
/// # Errors
///
/// - [`SignError::TimeOutOfRange`] if `exp`, `nbf` or `iat` is outside 0 to
///   [`MAX_TIMESTAMP`](crate::MAX_TIMESTAMP).
/// - [`SignError::Serialize`] if the claims cannot be serialized, for example because the
///   application claims are not a struct or a map.
/// - [`SignError::DuplicateMember`] if the application claims use a registered claim's name or
///   otherwise produce a repeated member.
pub fn sign<T: Serialize>(keys: &KeyRing, claims: &Claims<T>) -> Result<String, SignError> {
    for (claim, value) in claims.time_claims() {
        if value.is_some_and(|secs| !in_time_range(secs)) {
            return Err(SignError::TimeOutOfRange(claim));
        }
    }

    let json = serde_json::to_string(claims).map_err(SignError::Serialize)?;
    // `flatten` writes the application's members beside the registered ones without checking
    // that the names differ.
    if check_object(&json) == Err(Malformed::Duplicate) {
        return Err(SignError::DuplicateMember);
    }

    let header = keys.header_b64();
    let capacity = header.len() + 2 + json.len().div_ceil(3) * 4 + SIGNATURE_B64_LEN;
    let mut token = String::with_capacity(capacity);
    token.push_str(header);
    token.push('.');
    base64url::encode_into(json.as_bytes(), &mut token);

    let tag = hmac::sign(keys.signing_key(), token.as_bytes());
    token.push('.');
    base64url::encode_into(tag.as_ref(), &mut token);
    Ok(token)
}
