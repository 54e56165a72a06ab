//! The JOSE header (RFC 7515 section 4) as far as HS256 tokens need it.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Part, VerifyError};
use crate::strict_json::{StrictValue, insert_unique};

/// The members of a token header this crate reads.
///
/// Other members are allowed and ignored, except `crit`, which [`verify`](crate::verify)
/// refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The algorithm (`alg`); only `HS256` verifies.
    pub alg: String,
    /// The media type (`typ`); `JWT` or absent verifies.
    pub typ: Option<String>,
    /// The key id (`kid`) that selects the verification key.
    pub kid: Option<String>,
}

/// A header as decoded, before any of its values are judged.
pub(crate) struct RawHeader {
    pub(crate) alg: Option<String>,
    pub(crate) typ: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) crit: bool,
}

impl RawHeader {
    /// Parses the header JSON, refusing duplicate members and non-string `alg`, `typ`, `kid`.
    pub(crate) fn parse(json: &[u8]) -> Result<RawHeader, VerifyError> {
        let duplicate = Cell::new(false);
        let mut de = serde_json::Deserializer::from_slice(json);
        let parsed = HeaderSeed {
            duplicate: &duplicate,
        }
        .deserialize(&mut de)
        .and_then(|header| de.end().map(|()| header));

        match parsed {
            Ok(header) => Ok(header),
            Err(_) if duplicate.get() => Err(VerifyError::DuplicateMember(Part::Header)),
            Err(_) => Err(VerifyError::HeaderJson),
        }
    }

    /// Checks the algorithm, type and `crit`, and returns the header.
    pub(crate) fn into_checked(self) -> Result<Header, VerifyError> {
        // `crit` first: a header that marks an extension critical must not be processed further
        // by a verifier that does not implement it (RFC 7515 section 4.1.11).
        if self.crit {
            return Err(VerifyError::CriticalHeader);
        }
        let alg = self.alg.ok_or(VerifyError::MissingAlgorithm)?;
        if alg != "HS256" {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        if self.typ.as_deref().is_some_and(|typ| typ != "JWT") {
            return Err(VerifyError::UnsupportedType);
        }
        Ok(Header {
            alg,
            typ: self.typ,
            kid: self.kid,
        })
    }
}

struct HeaderSeed<'c> {
    duplicate: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawHeader, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let strict = StrictValue {
            duplicate: self.duplicate,
        };
        let mut header = RawHeader {
            alg: None,
            typ: None,
            kid: None,
            crit: false,
        };
        let mut crit = None;
        // Members this crate ignores are still collected, so that a repeat among them is seen.
        let mut others = Map::new();

        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(strict)?;
            let slot = match key.as_str() {
                "alg" => &mut header.alg,
                "typ" => &mut header.typ,
                "kid" => &mut header.kid,
                "crit" => {
                    if crit.replace(value).is_some() {
                        return Err(self.duplicate());
                    }
                    continue;
                }
                _ => {
                    insert_unique(&mut others, key, value, self.duplicate)?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(self.duplicate());
            }
            match value {
                Value::String(s) => *slot = Some(s),
                _ => return Err(serde::de::Error::custom("header member is not a string")),
            }
        }

        header.crit = crit.is_some();
        Ok(header)
    }
}

impl HeaderSeed<'_> {
    fn duplicate<E: serde::de::Error>(&self) -> E {
        self.duplicate.set(true);
        E::custom("duplicate member")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Header, VerifyError> {
        RawHeader::parse(json.as_bytes())?.into_checked()
    }

    #[test]
    fn minimal_header_is_accepted() {
        let header = check(r#"{"alg":"HS256"}"#).unwrap();
        assert_eq!(header.alg, "HS256");
        assert_eq!(header.typ, None);
        assert_eq!(header.kid, None);
    }

    #[test]
    fn unknown_members_are_ignored() {
        let header = check(r#"{"alg":"HS256","typ":"JWT","kid":"k","x5t":"abc","n":{}}"#);
        assert_eq!(header.unwrap().kid.as_deref(), Some("k"));
    }

    #[test]
    fn duplicate_members_are_refused_known_or_not() {
        for json in [
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
            r#"{"alg":"HS256","x":1,"x":1}"#,
            r#"{"alg":"HS256","x":{"y":1,"y":2}}"#,
            r#"{"alg":"HS256","crit":[],"crit":[]}"#,
        ] {
            assert_eq!(
                check(json).unwrap_err(),
                VerifyError::DuplicateMember(Part::Header),
                "{json}"
            );
        }
    }

    #[test]
    fn non_string_members_and_non_objects_are_malformed() {
        for json in [
            r#"{"alg":5}"#,
            r#"{"alg":"HS256","kid":1}"#,
            r#"{"alg":"HS256","typ":null}"#,
            r#"["alg"]"#,
            r#"{"alg":"HS256"} x"#,
            "",
        ] {
            assert_eq!(check(json).unwrap_err(), VerifyError::HeaderJson, "{json}");
        }
    }

    #[test]
    fn algorithm_type_and_crit_are_judged() {
        assert_eq!(
            check(r#"{"typ":"JWT"}"#).unwrap_err(),
            VerifyError::MissingAlgorithm
        );
        for alg in ["none", "hs256", "HS384", "RS256", "HS256 "] {
            let json = format!(r#"{{"alg":"{alg}"}}"#);
            assert_eq!(check(&json).unwrap_err(), VerifyError::UnsupportedAlgorithm);
        }
        assert_eq!(
            check(r#"{"alg":"HS256","typ":"jwt"}"#).unwrap_err(),
            VerifyError::UnsupportedType
        );
        assert_eq!(
            check(r#"{"alg":"HS256","crit":["exp"]}"#).unwrap_err(),
            VerifyError::CriticalHeader
        );
    }
}
