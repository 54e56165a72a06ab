//! The JOSE header (RFC 7515 section 4) as far as HS256 tokens need it.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{Part, VerifyError};
use crate::strict_json::{DuplicateCheck, KeyName, KeySet};

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

/// A header as decoded, before any of its values are judged, borrowing from the JSON text.
pub(crate) struct RawHeader<'a> {
    pub(crate) alg: Option<Cow<'a, str>>,
    pub(crate) typ: Option<Cow<'a, str>>,
    pub(crate) kid: Option<Cow<'a, str>>,
    pub(crate) crit: bool,
}

impl<'a> RawHeader<'a> {
    /// Parses the header JSON, refusing duplicate members and non-string `alg`, `typ`, `kid`.
    ///
    /// Nothing is allocated unless a string has escapes: members this crate ignores are walked
    /// for repeats, not built.
    pub(crate) fn parse(json: &'a [u8]) -> Result<RawHeader<'a>, VerifyError> {
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

    /// Checks the algorithm, type and `crit`, and returns the key id.
    pub(crate) fn check(self) -> Result<Option<Cow<'a, str>>, VerifyError> {
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
        Ok(self.kid)
    }

    /// Checks the algorithm, type and `crit`, and returns the header.
    pub(crate) fn into_checked(self) -> Result<Header, VerifyError> {
        let typ = self.typ.as_deref().map(str::to_owned);
        let kid = self.check()?;
        Ok(Header {
            alg: "HS256".to_owned(),
            typ,
            kid: kid.map(Cow::into_owned),
        })
    }
}

struct HeaderSeed<'c> {
    duplicate: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = RawHeader<'de>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<RawHeader<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader<'de>, A::Error> {
        let mut header = RawHeader {
            alg: None,
            typ: None,
            kid: None,
            crit: false,
        };
        // The names of the members other than `alg`, `typ` and `kid`, so that a repeat among
        // them is seen.
        let mut others = KeySet::default();

        while let Some(KeyName(name)) = map.next_key()? {
            let slot = match &*name {
                "alg" => &mut header.alg,
                "typ" => &mut header.typ,
                "kid" => &mut header.kid,
                _ => {
                    map.next_value_seed(DuplicateCheck {
                        duplicate: self.duplicate,
                    })?;
                    header.crit |= name == "crit";
                    if !others.insert(name) {
                        return Err(self.duplicate());
                    }
                    continue;
                }
            };
            let value = map.next_value_seed(HeaderText {
                duplicate: self.duplicate,
            })?;
            if slot.is_some() {
                return Err(self.duplicate());
            }
            match value {
                Some(text) => *slot = Some(text),
                None => return Err(de::Error::custom("header member is not a string")),
            }
        }
        Ok(header)
    }
}

impl HeaderSeed<'_> {
    fn duplicate<E: de::Error>(&self) -> E {
        self.duplicate.set(true);
        E::custom("duplicate member")
    }
}

/// The value of `alg`, `typ` or `kid`: the string, or `None` for any other JSON value, which is
/// still walked for repeated members.
struct HeaderText<'c> {
    duplicate: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for HeaderText<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HeaderText<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let check = DuplicateCheck {
            duplicate: self.duplicate,
        };
        check.visit_seq(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let check = DuplicateCheck {
            duplicate: self.duplicate,
        };
        check.visit_map(map).map(|()| None)
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
