//! The claims set of a token, parsed strictly: no repeated member, registered claims typed.
//!
//! The object is handed to the application's claim type through a filter that takes the
//! registered claims out as they stream past, so the application type sees only its own members
//! and nothing is buffered in between. The filter refuses a repeated top-level member, and hands
//! each member's value to the application type through [`StrictSeed`], which refuses repeats in
//! nested objects as they are read: one pass over the text checks and builds everything. Only
//! when that wrapper reports part of a value it could not see into (a serde_json `RawValue` in
//! the application type) is the text walked a second time.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::error::Category;

use crate::claims::{Audience, Claim, Claims, in_time_range};
use crate::error::{Part, VerifyError};
use crate::strict_de::{Findings, StrictSeed};
use crate::strict_json::{KeyName, KeySet, Malformed, check_object};

/// Parses the claims JSON into `Claims<T>`.
#[cfg(test)]
pub(crate) fn parse_claims<T: DeserializeOwned>(json: &[u8]) -> Result<Claims<T>, VerifyError> {
    let mut claims = None;
    parse_claims_into(json, &mut claims)?;
    claims.ok_or(VerifyError::ClaimsJson)
}

/// Parses the claims JSON into `out`, which is `Some` whenever this returns `Ok`.
///
/// The claims are built in the caller's slot rather than returned: `Claims<T>` is a few hundred
/// bytes, and returning it through serde's layers copies it once per layer.
pub(crate) fn parse_claims_into<T: DeserializeOwned>(
    json: &[u8],
    out: &mut Option<Claims<T>>,
) -> Result<(), VerifyError> {
    // Validating UTF-8 once here lets serde_json read the text without checking every string.
    let json = std::str::from_utf8(json).map_err(|_| VerifyError::ClaimsJson)?;
    // serde_json would call anything else a type mismatch of the application's claims.
    if !json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(VerifyError::ClaimsJson);
    }

    let fault = Cell::new(None);
    let findings = Findings::default();
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = de
        .deserialize_map(ClaimsVisitor::<T> {
            fault: &fault,
            findings: &findings,
            out,
        })
        .and_then(|()| de.end());

    // A refused registered claim or a repeated member is recorded in `fault` or `findings`, and
    // stays refused even if the application type caught the error and carried on; otherwise a
    // data error came from the application type, and anything else is broken JSON.
    if let Some(reason) = fault.take() {
        return Err(reason);
    }
    if findings.duplicate.get() {
        return Err(VerifyError::DuplicateMember(Part::Claims));
    }
    parsed.map_err(|err| match err.classify() {
        Category::Data => VerifyError::ClaimsType,
        Category::Syntax | Category::Eof | Category::Io => VerifyError::ClaimsJson,
    })?;

    if findings.unseen.get() {
        match check_object(json) {
            Ok(()) => {}
            Err(Malformed::Duplicate) => return Err(VerifyError::DuplicateMember(Part::Claims)),
            Err(Malformed::NotAnObject) => return Err(VerifyError::ClaimsJson),
        }
    }
    Ok(())
}

struct ClaimsVisitor<'c, T> {
    fault: &'c Cell<Option<VerifyError>>,
    findings: &'c Findings,
    out: &'c mut Option<Claims<T>>,
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ClaimsVisitor<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let mut filter = RegisteredFilter {
            inner: map,
            claims: Claims::new(()),
            seen: 0,
            others: KeySet::default(),
            fault: self.fault,
            findings: self.findings,
        };
        let extra = T::deserialize(MapAccessDeserializer::new(&mut filter))?;
        // The application type may stop reading early; the registered claims after that point
        // must still be read, and serde_json insists the object is consumed.
        while filter.next_key::<IgnoredAny>()?.is_some() {
            filter.next_value::<IgnoredAny>()?;
        }

        let registered = filter.claims;
        *self.out = Some(Claims {
            iss: registered.iss,
            sub: registered.sub,
            aud: registered.aud,
            exp: registered.exp,
            nbf: registered.nbf,
            iat: registered.iat,
            jti: registered.jti,
            extra,
        });
        Ok(())
    }
}

/// A view of the claims object without its registered members, which it reads into `claims`.
struct RegisteredFilter<'c, 'de, A> {
    inner: A,
    claims: Claims<()>,
    /// The registered claims read so far, as [`Claim`] bits.
    seen: u8,
    /// The other member names passed on so far.
    others: KeySet<'de>,
    fault: &'c Cell<Option<VerifyError>>,
    findings: &'c Findings,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for RegisteredFilter<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(KeyName(name)) = self.inner.next_key()? {
            let Some(claim) = Claim::from_name(&name) else {
                if !self.others.insert(name.clone()) {
                    return Err(refuse(
                        self.fault,
                        VerifyError::DuplicateMember(Part::Claims),
                    ));
                }
                return match name {
                    Cow::Borrowed(name) => seed.deserialize(BorrowedStrDeserializer::new(name)),
                    Cow::Owned(name) => seed.deserialize(StringDeserializer::new(name)),
                }
                .map(Some);
            };
            if self.seen & claim.bit() != 0 {
                return Err(refuse(
                    self.fault,
                    VerifyError::DuplicateMember(Part::Claims),
                ));
            }
            self.seen |= claim.bit();

            let fault = self.fault;
            let claims = &mut self.claims;
            match claim {
                Claim::Iss => claims.iss = Some(self.inner.next_value_seed(Text(claim, fault))?),
                Claim::Sub => claims.sub = Some(self.inner.next_value_seed(Text(claim, fault))?),
                Claim::Jti => claims.jti = Some(self.inner.next_value_seed(Text(claim, fault))?),
                Claim::Aud => claims.aud = Some(self.inner.next_value_seed(Aud(fault))?),
                Claim::Exp => claims.exp = Some(self.inner.next_value_seed(Time(claim, fault))?),
                Claim::Nbf => claims.nbf = Some(self.inner.next_value_seed(Time(claim, fault))?),
                Claim::Iat => claims.iat = Some(self.inner.next_value_seed(Time(claim, fault))?),
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(StrictSeed {
            seed,
            findings: self.findings,
        })
    }
}

/// Records `reason` as the cause of the failure and returns an error to stop parsing.
fn refuse<E: de::Error>(fault: &Cell<Option<VerifyError>>, reason: VerifyError) -> E {
    fault.set(Some(reason));
    E::custom("refused claim")
}

/// Implements the `visit_*` methods a seed does not accept by refusing with `$reason`.
macro_rules! refuse_others {
    ($reason:expr; $($method:ident($($ty:ty)?)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self $(, _: $ty)?) -> Result<Self::Value, E> {
                let (fault, reason) = $reason(&self);
                Err(refuse(fault, reason))
            }
        )*
    };
}

/// A registered claim that must be a JSON string.
#[derive(Clone, Copy)]
struct Text<'c>(Claim, &'c Cell<Option<VerifyError>>);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    refuse_others!(
        |s: &Self| (s.1, VerifyError::InvalidClaim(s.0));
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_unit(),
    );

    fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<String, S::Error> {
        Err(refuse(self.1, VerifyError::InvalidClaim(self.0)))
    }

    fn visit_map<M: MapAccess<'de>>(self, _: M) -> Result<String, M::Error> {
        Err(refuse(self.1, VerifyError::InvalidClaim(self.0)))
    }
}

/// The `aud` claim: a string or an array of strings.
#[derive(Clone, Copy)]
struct Aud<'c>(&'c Cell<Option<VerifyError>>);

impl<'de> DeserializeSeed<'de> for Aud<'_> {
    type Value = Audience;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Audience, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Aud<'_> {
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

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Audience, S::Error> {
        let mut many = Vec::new();
        while let Some(audience) = seq.next_element_seed(Text(Claim::Aud, self.0))? {
            many.push(audience);
        }
        Ok(Audience::Many(many))
    }

    refuse_others!(
        |s: &Self| (s.0, VerifyError::InvalidClaim(Claim::Aud));
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_unit(),
    );

    fn visit_map<M: MapAccess<'de>>(self, _: M) -> Result<Audience, M::Error> {
        Err(refuse(self.0, VerifyError::InvalidClaim(Claim::Aud)))
    }
}

/// A time claim: a JSON integer (no fraction, no exponent) from 0 to `MAX_TIMESTAMP`.
#[derive(Clone, Copy)]
struct Time<'c>(Claim, &'c Cell<Option<VerifyError>>);

impl<'de> DeserializeSeed<'de> for Time<'_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Time<'_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer number of seconds")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        if in_time_range(v) {
            Ok(v)
        } else {
            Err(refuse(self.1, VerifyError::TimeOutOfRange(self.0)))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(refuse(self.1, VerifyError::TimeOutOfRange(self.0))),
        }
    }

    // serde_json reports any number with a fraction or an exponent, and any integer beyond
    // 64 bits, as a float.
    refuse_others!(
        |s: &Self| (s.1, VerifyError::NonIntegerTime(s.0));
        visit_f64(f64), visit_bool(bool), visit_str(&str), visit_unit(),
    );

    fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<i64, S::Error> {
        Err(refuse(self.1, VerifyError::NonIntegerTime(self.0)))
    }

    fn visit_map<M: MapAccess<'de>>(self, _: M) -> Result<i64, M::Error> {
        Err(refuse(self.1, VerifyError::NonIntegerTime(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::claims::{MAX_TIMESTAMP, NoExtra};

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Agent {
        role: String,
        scopes: Vec<String>,
    }

    fn parse(json: &str) -> Result<Claims, VerifyError> {
        parse_claims(json.as_bytes())
    }

    #[test]
    fn registered_claims_are_read_and_the_rest_goes_to_the_application_type() {
        let json = r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":20,"nbf":10,"iat":10,
            "jti":"j","role":"agent","scopes":["read"]}"#;
        let claims: Claims<Agent> = parse_claims(json.as_bytes()).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("i"));
        assert_eq!(claims.sub.as_deref(), Some("s"));
        assert_eq!(
            claims.aud,
            Some(Audience::Many(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            (claims.exp, claims.nbf, claims.iat),
            (Some(20), Some(10), Some(10))
        );
        assert_eq!(claims.jti.as_deref(), Some("j"));
        assert_eq!(
            claims.extra,
            Agent {
                role: "agent".into(),
                scopes: vec!["read".into()]
            }
        );
    }

    #[test]
    fn duplicates_are_refused_among_registered_and_other_members() {
        for json in [
            r#"{"exp":1,"exp":1}"#,
            r#"{"sub":"a","\u0073ub":"b"}"#,
            r#"{"role":"a","role":"b"}"#,
            r#"{"x":{"y":1,"y":1}}"#,
        ] {
            assert_eq!(
                parse(json).unwrap_err(),
                VerifyError::DuplicateMember(Part::Claims),
                "{json}"
            );
        }
    }

    #[test]
    fn time_claims_must_be_integers_in_range() {
        let max = MAX_TIMESTAMP;
        for (value, expected) in [
            ("1.5", VerifyError::NonIntegerTime(Claim::Exp)),
            ("1.0", VerifyError::NonIntegerTime(Claim::Exp)),
            ("1e3", VerifyError::NonIntegerTime(Claim::Exp)),
            ("\"10\"", VerifyError::NonIntegerTime(Claim::Exp)),
            ("null", VerifyError::NonIntegerTime(Claim::Exp)),
            ("true", VerifyError::NonIntegerTime(Claim::Exp)),
            ("-1", VerifyError::TimeOutOfRange(Claim::Exp)),
            (
                &format!("{}", max + 1),
                VerifyError::TimeOutOfRange(Claim::Exp),
            ),
            (
                "18446744073709551615",
                VerifyError::TimeOutOfRange(Claim::Exp),
            ),
        ] {
            let json = format!(r#"{{"exp":{value}}}"#);
            assert_eq!(parse(&json).unwrap_err(), expected, "{json}");
        }
        assert_eq!(
            parse(&format!(r#"{{"iat":{max}}}"#)).unwrap().iat,
            Some(max)
        );
        assert_eq!(parse(r#"{"nbf":0}"#).unwrap().nbf, Some(0));
        assert_eq!(
            parse(r#"{"nbf":0.5}"#).unwrap_err(),
            VerifyError::NonIntegerTime(Claim::Nbf)
        );
    }

    #[test]
    fn registered_string_claims_must_be_strings() {
        assert_eq!(
            parse(r#"{"iss":1}"#).unwrap_err(),
            VerifyError::InvalidClaim(Claim::Iss)
        );
        assert_eq!(
            parse(r#"{"sub":null}"#).unwrap_err(),
            VerifyError::InvalidClaim(Claim::Sub)
        );
        assert_eq!(
            parse(r#"{"jti":[]}"#).unwrap_err(),
            VerifyError::InvalidClaim(Claim::Jti)
        );
        assert_eq!(
            parse(r#"{"aud":[1]}"#).unwrap_err(),
            VerifyError::InvalidClaim(Claim::Aud)
        );
        assert_eq!(
            parse(r#"{"aud":{}}"#).unwrap_err(),
            VerifyError::InvalidClaim(Claim::Aud)
        );
    }

    #[test]
    fn anything_but_one_json_object_is_malformed() {
        for json in [
            "",
            "[]",
            "\"x\"",
            "{",
            r#"{"a":1}{}"#,
            r#"{"a":1} x"#,
            "{\"a\":\"\u{0}\"}",
        ] {
            assert_eq!(
                parse(json).unwrap_err(),
                VerifyError::ClaimsJson,
                "{json:?}"
            );
        }
        assert!(parse(" {} \n").is_ok());
    }

    #[test]
    fn a_brace_inside_a_string_is_only_a_brace() {
        let claims = parse(r#"{"sub":"{x}","exp":5}"#).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("{x}"));
    }

    #[test]
    fn escaped_registered_names_are_the_registered_claims() {
        let claims = parse(r#"{"\u0069ss":"a","exp":5}"#).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("a"));
        let err = parse(r#"{"iss":"a","\u0069ss":"b"}"#).unwrap_err();
        assert_eq!(err, VerifyError::DuplicateMember(Part::Claims));
    }

    /// Application claims that read only the first member and stop.
    #[derive(Debug, PartialEq)]
    struct FirstOnly(String);

    impl<'de> Deserialize<'de> for FirstOnly {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<FirstOnly, D::Error> {
            struct FirstVisitor;

            impl<'de> Visitor<'de> for FirstVisitor {
                type Value = FirstOnly;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a map")
                }

                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstOnly, A::Error> {
                    let (key, _) = map
                        .next_entry::<String, IgnoredAny>()?
                        .ok_or_else(|| de::Error::custom("empty"))?;
                    Ok(FirstOnly(key))
                }
            }

            deserializer.deserialize_map(FirstVisitor)
        }
    }

    #[test]
    fn registered_claims_after_an_early_stop_are_still_read_and_checked() {
        let json = br#"{"exp":1,"role":"agent","sub":"s","scopes":[],"iat":2}"#;
        let claims = parse_claims::<FirstOnly>(json).unwrap();
        assert_eq!(claims.extra, FirstOnly("role".into()));
        assert_eq!((claims.exp, claims.iat), (Some(1), Some(2)));
        assert_eq!(claims.sub.as_deref(), Some("s"));

        let json = br#"{"role":"agent","iat":2.5}"#;
        let err = parse_claims::<FirstOnly>(json).unwrap_err();
        assert_eq!(err, VerifyError::NonIntegerTime(Claim::Iat));
        let json = br#"{"role":"agent","x":1,"x":2}"#;
        let err = parse_claims::<FirstOnly>(json).unwrap_err();
        assert_eq!(err, VerifyError::DuplicateMember(Part::Claims));
    }

    /// Application claims with nested values of several shapes.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Nested {
        #[serde(default)]
        limits: Option<Limits>,
        #[serde(default)]
        tags: Vec<serde_json::Map<String, serde_json::Value>>,
        #[serde(default)]
        grant: Option<Grant>,
        #[serde(default)]
        by_id: std::collections::BTreeMap<u32, u8>,
        #[serde(flatten)]
        rest: serde_json::Map<String, serde_json::Value>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Limits {
        rpm: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Grant {
        Scoped(serde_json::Map<String, serde_json::Value>),
        Window { from: u32, to: u32 },
    }

    #[test]
    fn nested_duplicates_are_refused_in_the_same_pass_whatever_reads_them() {
        for json in [
            // a struct field, read by serde's derive
            r#"{"limits":{"rpm":1,"rpm":2}}"#,
            // maps inside a sequence
            r#"{"tags":[{"a":1},{"b":[{"c":0,"c":0}]}]}"#,
            // an escaped repeat
            r#"{"tags":[{"a":1,"\u0061":2}]}"#,
            // enum variants, newtype and struct
            r#"{"grant":{"Scoped":{"a":1,"a":1}}}"#,
            r#"{"grant":{"Window":{"from":1,"to":2,"to":3}}}"#,
            // members the application type does not name, collected by `flatten`
            r#"{"other":{"x":{"y":1,"y":1}}}"#,
            // map keys read as numbers, which the second walk checks
            r#"{"by_id":{"1":0,"1":0}}"#,
        ] {
            assert_eq!(
                parse_claims::<Nested>(json.as_bytes()).unwrap_err(),
                VerifyError::DuplicateMember(Part::Claims),
                "{json}"
            );
        }
    }

    #[test]
    fn nested_duplicates_are_refused_in_members_the_application_ignores() {
        for json in [
            r#"{"role":"a","scopes":[],"x":{"a":1,"a":2}}"#,
            r#"{"role":"a","scopes":[],"x":[[{"a":{"b":1,"b":1}}]]}"#,
        ] {
            // `FirstOnly` stops after its first member and `NoExtra` reads none, so these nested
            // objects are only ever skipped, never built.
            let lenient = json.replace(r#""role":"a","scopes":[],"#, r#""role":"a","#);
            assert_eq!(
                parse_claims::<FirstOnly>(lenient.as_bytes()).unwrap_err(),
                VerifyError::DuplicateMember(Part::Claims),
                "{json}"
            );
            assert_eq!(
                parse_claims::<NoExtra>(json.as_bytes()).unwrap_err(),
                VerifyError::DuplicateMember(Part::Claims),
                "{json}"
            );
        }
    }

    #[test]
    fn equal_names_in_different_objects_are_not_repeats() {
        let json = r#"{"limits":{"rpm":1},"tags":[{"rpm":1},{"rpm":1,"limits":{}}],
            "grant":{"Window":{"from":1,"to":2}},"by_id":{"1":0,"2":0},"x":{"rpm":{"rpm":2}}}"#;
        let claims = parse_claims::<Nested>(json.as_bytes()).unwrap();
        assert_eq!(claims.extra.limits, Some(Limits { rpm: 1 }));
        assert_eq!(claims.extra.tags.len(), 2);
        assert_eq!(claims.extra.grant, Some(Grant::Window { from: 1, to: 2 }));
        assert_eq!(claims.extra.by_id.len(), 2);
        assert_eq!(
            claims.extra.rest["x"],
            serde_json::json!({"rpm": {"rpm": 2}})
        );
    }

    #[test]
    fn application_type_mismatch_is_its_own_error() {
        let err = parse_claims::<Agent>(br#"{"role":"agent"}"#).unwrap_err();
        assert_eq!(err, VerifyError::ClaimsType);
        let err = parse_claims::<Agent>(br#"{"role":"a","scopes":[],"x":1}"#).unwrap_err();
        assert_eq!(err, VerifyError::ClaimsType);
        assert!(parse_claims::<NoExtra>(br#"{"anything":[1,2]}"#).is_ok());
    }
}
