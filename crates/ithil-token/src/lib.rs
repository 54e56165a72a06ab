//! HS256 JSON Web Tokens: sign and verify compact JWS/JWT (RFC 7515, RFC 7519) with a ring of
//! keys named by key id, typed claims, and an injectable clock. No I/O, no async runtime.
//!
//! Verification is deliberately narrow. It accepts only `alg` exactly `HS256`, compares MACs in
//! constant time, decodes base64url strictly (URL-safe alphabet, no padding, canonical trailing
//! bits), refuses repeated JSON members, a `crit` header, non-integer or out-of-range time
//! claims, and anything after the signature, and checks the MAC before it parses the claims.
//! Each reason for refusing a token is its own [`VerifyError`] variant; no error message contains
//! a token or a key.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ithil_token::{Claims, Clock, KeyRing, ManualClock, SigningKey, Validation, sign, verify};
//! use serde::{Deserialize, Serialize};
//! use time::{Duration, macros::datetime};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Role {
//!     role: String,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeyRing::new("2025-01", SigningKey::generate()?);
//! let clock = ManualClock::new(datetime!(2025-01-15 12:00 UTC));
//! let now = clock.now().unix_timestamp();
//!
//! let claims = Claims {
//!     iss: Some("ithil".to_owned()),
//!     sub: Some("agt_3f9a1c2b".to_owned()),
//!     iat: Some(now),
//!     exp: Some(now + 3600),
//!     ..Claims::new(Role { role: "agent".to_owned() })
//! };
//! let token = sign(&keys, &claims)?;
//!
//! let validation = Validation::default()
//!     .issuer("ithil")
//!     .clock(Arc::new(clock.clone()));
//! let verified: Claims<Role> = verify(&token, &keys, &validation)?;
//! assert_eq!(verified, claims);
//!
//! // Two hours later the token has expired.
//! clock.advance(Duration::hours(2));
//! assert!(verify::<Role>(&token, &keys, &validation).is_err());
//! # Ok(())
//! # }
//! ```

pub use crate::claims::{Audience, Claim, Claims, MAX_TIMESTAMP, NoExtra};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::{KeyError, Part, SignError, VerifyError};
pub use crate::header::Header;
pub use crate::key::{KeyRing, MIN_KEY_LEN, SigningKey};
pub use crate::sign::sign;
pub use crate::validation::{DEFAULT_LEEWAY, DEFAULT_MAX_LEN, Validation};
pub use crate::verify::{decode_header, verify};

mod base64url;
mod claims;
mod clock;
mod error;
mod header;
mod key;
mod payload;
mod sign;
mod strict_de;
mod strict_json;
mod validation;
mod verify;
