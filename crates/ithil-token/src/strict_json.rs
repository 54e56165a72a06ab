//! JSON parsing that refuses duplicate object members at every depth.
//!
//! `serde_json` keeps the last of two members with the same name. Two parsers that disagree on
//! which one counts are a classic way to smuggle a claim past one of them (RFC 7515 section 4
//! says to reject or use the last; we reject), so every object in a header or claims set is
//! checked, by the walk here or, while the claims are read, by [`crate::strict_de`].

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// What is wrong with a JSON text that [`check_object`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Some object, at any depth, repeats a member name.
    Duplicate,
    /// The text is not one JSON object.
    NotAnObject,
}

/// Checks that `json` is exactly one JSON object without a repeated member name at any depth.
///
/// Nothing is built: strings are borrowed where they have no escapes, so a clean object costs
/// one allocation per nested object at most.
pub(crate) fn check_object(json: &str) -> Result<(), Malformed> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(json);
    let checked = de
        .deserialize_map(DuplicateCheck {
            duplicate: &duplicate,
        })
        .and_then(|()| de.end());
    match checked {
        Ok(()) => Ok(()),
        Err(_) if duplicate.get() => Err(Malformed::Duplicate),
        Err(_) => Err(Malformed::NotAnObject),
    }
}

/// Walks a value without building it, setting `duplicate` on the first repeated member name.
#[derive(Clone, Copy)]
pub(crate) struct DuplicateCheck<'c> {
    pub(crate) duplicate: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DuplicateCheck<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateCheck<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = KeySet::default();
        while let Some(KeyName(key)) = map.next_key()? {
            if !seen.insert(key) {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// The member names of one object seen so far.
///
/// Typical objects have a handful of members: the first [`KeySet::FEW`] names sit in an inline
/// array and are scanned linearly, so that checking them allocates nothing. Past that it switches
/// to a hash set, so that an object with thousands of members costs linear time, not quadratic.
pub(crate) struct KeySet<'de> {
    few: [Cow<'de, str>; KeySet::FEW],
    /// How many of `few` are in use.
    len: usize,
    /// Every name, once there are more than `FEW`; `few` is then empty.
    many: Option<HashSet<Cow<'de, str>>>,
}

impl Default for KeySet<'_> {
    fn default() -> Self {
        KeySet {
            few: [const { Cow::Borrowed("") }; KeySet::FEW],
            len: 0,
            many: None,
        }
    }
}

impl<'de> KeySet<'de> {
    const FEW: usize = 16;

    /// Adds `key`; returns `false` if it was already present.
    pub(crate) fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(key);
        }
        let few = &mut self.few[..self.len];
        if few.contains(&key) {
            return false;
        }
        if self.len < Self::FEW {
            self.few[self.len] = key;
            self.len += 1;
        } else {
            let mut many: HashSet<_> = few.iter_mut().map(std::mem::take).collect();
            many.insert(key);
            self.many = Some(many);
            self.len = 0;
        }
        true
    }
}

/// An object member name, borrowed from the input when it has no escapes.
pub(crate) struct KeyName<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyName<'de>, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName<'de>, E> {
                Ok(KeyName(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_check_finds_repeats_at_any_depth() {
        let dup = Err(Malformed::Duplicate);
        assert_eq!(check_object(r#"{"a":1,"a":2}"#), dup);
        assert_eq!(check_object(r#"{"a":{"b":[{"c":1,"c":2}]}}"#), dup);
        assert_eq!(check_object(r#"{"exp":1,"\u0065xp":2}"#), dup);
        assert_eq!(
            check_object(r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#),
            Ok(())
        );
    }

    #[test]
    fn object_check_refuses_anything_but_one_object() {
        for json in ["", "[]", "1", "\"a\"", "{", "{}{}", "{} x", "{\"a\":}"] {
            assert_eq!(check_object(json), Err(Malformed::NotAnObject), "{json}");
        }
        assert_eq!(check_object(" {} "), Ok(()));
    }

    #[test]
    fn key_set_finds_repeats_before_and_after_it_outgrows_its_array() {
        for count in [1, KeySet::FEW - 1, KeySet::FEW, KeySet::FEW + 1, 100] {
            let names: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
            let mut set = KeySet::default();
            for name in &names {
                assert!(set.insert(Cow::Borrowed(name)), "{count}: {name}");
            }
            for name in &names {
                assert!(
                    !set.insert(Cow::Owned(name.clone())),
                    "{count}: {name} again"
                );
            }
            assert!(set.insert(Cow::Borrowed("new")), "{count}");
        }
    }

    #[test]
    fn object_check_handles_many_members() {
        let members: Vec<String> = (0..500).map(|i| format!("\"m{i}\":{i}")).collect();
        let json = format!("{{{}}}", members.join(","));
        assert_eq!(check_object(&json), Ok(()));
        let json = format!("{{{},\"m0\":0}}", members.join(","));
        assert_eq!(check_object(&json), Err(Malformed::Duplicate));
        let json = format!("{{{},\"m499\":0}}", members.join(","));
        assert_eq!(check_object(&json), Err(Malformed::Duplicate));
    }
}
