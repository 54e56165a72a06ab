//! One error enum per operation family: keys, signing, verification.
//!
//! No message contains a token, a part of one, a claim value or key material: errors end up in
//! logs, and a token in a log is a credential in a log.

use std::fmt;

use crate::claims::Claim;
use crate::key::MIN_KEY_LEN;

/// Why a [`SigningKey`](crate::SigningKey) could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is shorter than [`MIN_KEY_LEN`] bytes.
    #[error("signing key is {len} bytes, shorter than the {MIN_KEY_LEN} required")]
    TooShort {
        /// The length of the key offered.
        len: usize,
    },

    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// Why [`sign`](crate::sign) could not issue a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The claims' `Serialize` implementation failed.
    #[error("claims could not be serialized to JSON")]
    Serialize(#[source] serde_json::Error),

    /// The application claims repeat a member name, or use a registered claim's name.
    #[error("claims serialize to a JSON object with a duplicate member")]
    DuplicateMember,

    /// A time claim (`exp`, `nbf`, `iat`) is outside the range [`verify`](crate::verify) accepts.
    #[error("claim {0} is outside the accepted time range")]
    TimeOutOfRange(Claim),
}

/// The part of a compact token an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The first part, the JOSE header.
    Header,
    /// The second part, the claims (payload).
    Claims,
    /// The third part, the MAC.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Claims => "claims",
            Part::Signature => "signature",
        })
    }
}

/// Why [`verify`](crate::verify) refused a token; one variant per reason.
///
/// The detail is for server logs. A server should answer every variant the same way to the
/// client, so that probing tokens teaches an attacker nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is longer than [`Validation::max_len`](crate::Validation::max_len); nothing was
    /// decoded.
    #[error("token is {len} bytes, longer than the {max} allowed")]
    TooLong {
        /// The token's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },

    /// The token has fewer than three dot-separated parts.
    #[error("token does not have three dot-separated parts")]
    MissingParts,

    /// Something follows the signature: a fourth part, or trailing whitespace.
    #[error("token has data after the signature")]
    TrailingData,

    /// A part is not canonical unpadded base64url.
    #[error("token {0} is not canonical unpadded base64url")]
    Base64(Part),

    /// The header is not a JSON object of the expected shape.
    #[error("token header is not a valid JSON object")]
    HeaderJson,

    /// The header, or the claims, repeat a member name.
    #[error("token {0} has a duplicate JSON member")]
    DuplicateMember(Part),

    /// The header has no `alg`.
    #[error("token header has no alg")]
    MissingAlgorithm,

    /// The header's `alg` is not exactly `HS256`.
    #[error("token algorithm is not HS256")]
    UnsupportedAlgorithm,

    /// The header's `typ` is present and not `JWT`.
    #[error("token type is not JWT")]
    UnsupportedType,

    /// The header has a `crit` member; no extension is understood, so none may be critical.
    #[error("token header has a crit member")]
    CriticalHeader,

    /// The header names a `kid` that is not in the key ring.
    #[error("token key id is not in the key ring")]
    UnknownKey,

    /// The MAC does not match the signing input under the selected key.
    #[error("token signature does not match")]
    BadSignature,

    /// The claims are not a JSON object.
    #[error("token claims are not a valid JSON object")]
    ClaimsJson,

    /// A registered claim has the wrong JSON type (for example a numeric `iss`).
    #[error("claim {0} has the wrong type")]
    InvalidClaim(Claim),

    /// A time claim (`exp`, `nbf`, `iat`) is not an integer number of seconds.
    #[error("claim {0} is not an integer")]
    NonIntegerTime(Claim),

    /// A time claim is outside 0 to 253402300799 (year 9999).
    #[error("claim {0} is outside the accepted time range")]
    TimeOutOfRange(Claim),

    /// The application claims do not deserialize into the caller's claim type.
    #[error("token claims do not match the application claim type")]
    ClaimsType,

    /// A claim the validation requires is absent.
    #[error("required claim {0} is missing")]
    MissingClaim(Claim),

    /// `exp` is at or before now, beyond the leeway.
    #[error("token has expired")]
    Expired,

    /// `nbf` is after now, beyond the leeway.
    #[error("token is not yet valid")]
    NotYetValid,

    /// `iss` is not the expected issuer.
    #[error("token issuer does not match")]
    WrongIssuer,

    /// `aud` does not contain the expected audience, or is present when no audience is expected.
    #[error("token audience does not match")]
    WrongAudience,
}
