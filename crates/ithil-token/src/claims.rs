//! Registered JWT claims (RFC 7519 section 4.1) and the application's own claims beside them.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The latest instant a time claim may name: 9999-12-31T23:59:59Z, in seconds since the epoch.
///
/// The earliest is 0, the epoch itself. Both bounds are what `time` and RFC 3339 can represent
/// without extensions, so any accepted claim converts to an `OffsetDateTime` and back.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// The claims of a token: the registered ones by name, the application's in `extra`.
///
/// `T` is the application's claim type, serialized beside the registered claims in the same JSON
/// object. It must serialize to, and deserialize from, a JSON object (a struct or a map), and must
/// not use the registered names. [`NoExtra`] is the default for tokens without application claims.
///
/// Absent registered claims are `None` and are left out of the JSON. Time claims are seconds
/// since the Unix epoch, from 0 to [`MAX_TIMESTAMP`].
///
/// Numbers in the application claims are parsed by serde_json as the build configures it.
/// Without serde_json's `float_roundtrip` feature its float parser is not always correctly
/// rounded, so a float in the application claims can come back one unit in the last place away
/// after a sign and verify round trip (found by the fuzz target; see `docs/fuzzing.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<T = NoExtra> {
    /// Issuer (`iss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,

    /// Subject (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,

    /// Audience (`aud`), one string or an array of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,

    /// Expiry (`exp`): the token is not accepted at or after this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,

    /// Not before (`nbf`): the token is not accepted before this second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,

    /// Issued at (`iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,

    /// Token id (`jti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,

    /// The application's claims, in the same JSON object as the registered ones.
    #[serde(flatten)]
    pub extra: T,
}

impl<T> Claims<T> {
    /// Creates claims with the application claims `extra` and no registered claims.
    pub fn new(extra: T) -> Claims<T> {
        Claims {
            iss: None,
            sub: None,
            aud: None,
            exp: None,
            nbf: None,
            iat: None,
            jti: None,
            extra,
        }
    }

    /// Returns `exp` as an instant; `None` if absent or outside the accepted range.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.exp.and_then(instant)
    }

    /// Returns `nbf` as an instant; `None` if absent or outside the accepted range.
    pub fn not_before(&self) -> Option<OffsetDateTime> {
        self.nbf.and_then(instant)
    }

    /// Returns `iat` as an instant; `None` if absent or outside the accepted range.
    pub fn issued_at(&self) -> Option<OffsetDateTime> {
        self.iat.and_then(instant)
    }

    /// Returns the time claims paired with their names, for range checks.
    pub(crate) fn time_claims(&self) -> [(Claim, Option<i64>); 3] {
        [
            (Claim::Exp, self.exp),
            (Claim::Nbf, self.nbf),
            (Claim::Iat, self.iat),
        ]
    }

    /// Returns whether the registered claim `claim` is present.
    pub(crate) fn has(&self, claim: Claim) -> bool {
        match claim {
            Claim::Iss => self.iss.is_some(),
            Claim::Sub => self.sub.is_some(),
            Claim::Aud => self.aud.is_some(),
            Claim::Exp => self.exp.is_some(),
            Claim::Nbf => self.nbf.is_some(),
            Claim::Iat => self.iat.is_some(),
            Claim::Jti => self.jti.is_some(),
        }
    }
}

/// Returns whether `secs` is a time claim value this crate accepts.
pub(crate) fn in_time_range(secs: i64) -> bool {
    (0..=MAX_TIMESTAMP).contains(&secs)
}

fn instant(secs: i64) -> Option<OffsetDateTime> {
    if !in_time_range(secs) {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// The name of a registered claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claim {
    /// `iss`, the issuer.
    Iss,
    /// `sub`, the subject.
    Sub,
    /// `aud`, the audience.
    Aud,
    /// `exp`, the expiry.
    Exp,
    /// `nbf`, not before.
    Nbf,
    /// `iat`, issued at.
    Iat,
    /// `jti`, the token id.
    Jti,
}

impl Claim {
    /// Every registered claim, in the order of RFC 7519 section 4.1.
    pub const ALL: [Claim; 7] = [
        Claim::Iss,
        Claim::Sub,
        Claim::Aud,
        Claim::Exp,
        Claim::Nbf,
        Claim::Iat,
        Claim::Jti,
    ];

    /// Returns the claim's JSON member name, such as `"exp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Claim::Iss => "iss",
            Claim::Sub => "sub",
            Claim::Aud => "aud",
            Claim::Exp => "exp",
            Claim::Nbf => "nbf",
            Claim::Iat => "iat",
            Claim::Jti => "jti",
        }
    }

    /// Returns the claim named `name`, if it is a registered one.
    pub fn from_name(name: &str) -> Option<Claim> {
        match name {
            "iss" => Some(Claim::Iss),
            "sub" => Some(Claim::Sub),
            "aud" => Some(Claim::Aud),
            "exp" => Some(Claim::Exp),
            "nbf" => Some(Claim::Nbf),
            "iat" => Some(Claim::Iat),
            "jti" => Some(Claim::Jti),
            _ => None,
        }
    }

    /// Returns this claim's bit in a set of claims.
    pub(crate) const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `aud` claim: one audience or several.
///
/// In JSON this is a string or an array of strings (untagged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A single audience, written as a JSON string.
    One(String),
    /// Several audiences, written as a JSON array of strings.
    Many(Vec<String>),
}

impl Audience {
    /// Returns whether `audience` is one of the audiences named.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }

    /// Returns the audiences named, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let slice = match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many.as_slice(),
        };
        slice.iter().map(String::as_str)
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Audience {
        Audience::One(audience.to_owned())
    }
}

impl From<String> for Audience {
    fn from(audience: String) -> Audience {
        Audience::One(audience)
    }
}

impl From<Vec<String>> for Audience {
    fn from(audiences: Vec<String>) -> Audience {
        Audience::Many(audiences)
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Audience::One(one) => serializer.serialize_str(one),
            Audience::Many(many) => {
                let mut seq = serializer.serialize_seq(Some(many.len()))?;
                for audience in many {
                    seq.serialize_element(audience)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Audience, D::Error> {
        struct AudienceVisitor;

        impl<'de> Visitor<'de> for AudienceVisitor {
            type Value = Audience;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience::One(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Audience, E> {
                Ok(Audience::One(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(audience) = seq.next_element::<String>()? {
                    many.push(audience);
                }
                Ok(Audience::Many(many))
            }
        }

        deserializer.deserialize_any(AudienceVisitor)
    }
}

/// Application claims for tokens that carry none: serializes to nothing, ignores whatever is there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoExtra;

impl Serialize for NoExtra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for NoExtra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NoExtra, D::Error> {
        struct NoExtraVisitor;

        impl<'de> Visitor<'de> for NoExtraVisitor {
            type Value = NoExtra;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoExtra, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(NoExtra)
            }
        }

        deserializer.deserialize_map(NoExtraVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Role {
        role: String,
    }

    #[test]
    fn absent_claims_are_left_out_of_the_json() {
        let claims = Claims {
            sub: Some("agt_1".into()),
            exp: Some(10),
            ..Claims::new(NoExtra)
        };
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            json!({"sub": "agt_1", "exp": 10})
        );
    }

    #[test]
    fn application_claims_sit_beside_the_registered_ones() {
        let claims = Claims {
            iss: Some("ithil".into()),
            ..Claims::new(Role {
                role: "admin".into(),
            })
        };
        let value = serde_json::to_value(&claims).unwrap();
        assert_eq!(value, json!({"iss": "ithil", "role": "admin"}));
        let back: Claims<Role> = serde_json::from_value(value).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn audience_is_a_string_or_an_array() {
        let one: Audience = serde_json::from_value(json!("api")).unwrap();
        assert_eq!(one, Audience::One("api".into()));
        let many: Audience = serde_json::from_value(json!(["a", "b"])).unwrap();
        assert_eq!(many, Audience::Many(vec!["a".into(), "b".into()]));
        assert_eq!(serde_json::to_value(&many).unwrap(), json!(["a", "b"]));
        assert_eq!(serde_json::to_value(&one).unwrap(), json!("api"));
        assert!(serde_json::from_value::<Audience>(json!(3)).is_err());
        assert!(serde_json::from_value::<Audience>(json!([3])).is_err());
    }

    #[test]
    fn audience_contains_only_the_audiences_named() {
        let many = Audience::Many(vec!["a".into(), "b".into()]);
        assert!(many.contains("b"));
        assert!(!many.contains("c"));
        assert!(Audience::from("a").contains("a"));
        assert!(!Audience::from("a").contains("ab"));
        assert_eq!(many.iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn time_claims_convert_to_instants_inside_the_range_only() {
        let claims = Claims {
            exp: Some(MAX_TIMESTAMP),
            nbf: Some(-1),
            iat: Some(0),
            ..Claims::new(NoExtra)
        };
        assert_eq!(claims.expires_at().unwrap().year(), 9999);
        assert_eq!(claims.not_before(), None);
        assert_eq!(claims.issued_at(), Some(OffsetDateTime::UNIX_EPOCH));
    }

    #[test]
    fn claim_names_round_trip() {
        for claim in Claim::ALL {
            assert_eq!(Claim::from_name(claim.as_str()), Some(claim));
        }
        assert_eq!(Claim::from_name("role"), None);
    }
}
