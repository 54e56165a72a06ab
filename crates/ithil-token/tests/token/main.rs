//! Behaviour of the public API: the RFC vector, round trips, every rejection, key rotation, and
//! tampering.

mod rejections;
mod rfc7515;
mod rotation;
mod round_trip;
mod tampering;

use std::sync::Arc;

use ithil_token::{Audience, Claims, KeyRing, ManualClock, SigningKey, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The instant every test's clock starts at.
pub const NOW: i64 = 1_750_000_000;

/// Application claims shaped like the gateway's agent tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `admin` or `agent`.
    pub role: String,
    /// The scopes copied from the agent.
    pub scopes: Vec<String>,
}

/// A 32-byte key of `fill` bytes.
pub fn key(fill: u8) -> SigningKey {
    SigningKey::from_bytes(&[fill; 32]).unwrap()
}

/// A ring signing with `key(1)` under kid `k1`.
pub fn ring() -> KeyRing {
    KeyRing::new("k1", key(1))
}

/// A clock reading [`NOW`].
pub fn clock() -> ManualClock {
    ManualClock::new(OffsetDateTime::from_unix_timestamp(NOW).unwrap())
}

/// A validation matching [`agent_claims`], at [`NOW`].
pub fn validation() -> Validation {
    Validation::default()
        .issuer("ithil")
        .audience("mcp")
        .clock(Arc::new(clock()))
}

/// Valid agent claims: issued at [`NOW`], valid for an hour.
pub fn agent_claims() -> Claims<Agent> {
    Claims {
        iss: Some("ithil".into()),
        sub: Some("agt_3f9a1c2b".into()),
        aud: Some(Audience::One("mcp".into())),
        exp: Some(NOW + 3600),
        nbf: None,
        iat: Some(NOW),
        jti: Some("tok_01".into()),
        extra: Agent {
            role: "agent".into(),
            scopes: vec!["orders:read".into(), "orders:write".into()],
        },
    }
}
