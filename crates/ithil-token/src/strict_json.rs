//! JSON parsing that refuses duplicate object members at every depth.
//!
//! `serde_json` keeps the last of two members with the same name. Two parsers that disagree on
//! which one counts are a classic way to smuggle a claim past one of them (RFC 7515 section 4
//! says to reject or use the last; we reject), so every object in a header or claims set is
//! checked here before anything reads it.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Builds a [`Value`], failing (and setting `duplicate`) when an object repeats a member name.
#[derive(Clone, Copy)]
pub(crate) struct StrictValue<'c> {
    pub(crate) duplicate: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float, so `from_f64` cannot return `None` here;
        // `Null` keeps this total without a panic path.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            insert_unique(&mut object, key, value, self.duplicate)?;
        }
        Ok(Value::Object(object))
    }
}

/// Inserts `key` into `object`, failing (and setting `duplicate`) if it is already there.
pub(crate) fn insert_unique<E: de::Error>(
    object: &mut Map<String, Value>,
    key: String,
    value: Value,
    duplicate: &Cell<bool>,
) -> Result<(), E> {
    if object.insert(key, value).is_some() {
        duplicate.set(true);
        return Err(E::custom("duplicate member"));
    }
    Ok(())
}

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
struct DuplicateCheck<'c> {
    duplicate: &'c Cell<bool>,
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
/// Typical objects have a handful of members, where a linear scan beats hashing; past
/// [`KeySet::LINEAR_MAX`] names it switches to a hash set, so that an object with thousands of
/// members costs linear time, not quadratic.
#[derive(Default)]
pub(crate) struct KeySet<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> KeySet<'de> {
    const LINEAR_MAX: usize = 32;

    /// Adds `key`; returns `false` if it was already present.
    pub(crate) fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if !self.many.is_empty() {
            return self.many.insert(key);
        }
        if self.few.contains(&key) {
            return false;
        }
        if self.few.len() < Self::LINEAR_MAX {
            self.few.push(key);
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(key);
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

    fn strict(json: &str) -> (Result<Value, serde_json::Error>, bool) {
        let duplicate = Cell::new(false);
        let mut de = serde_json::Deserializer::from_str(json);
        let value = StrictValue {
            duplicate: &duplicate,
        }
        .deserialize(&mut de);
        (value, duplicate.get())
    }

    #[test]
    fn strict_value_builds_the_same_value_as_serde_json() {
        let json = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        let (value, duplicate) = strict(json);
        assert!(!duplicate);
        assert_eq!(value.unwrap(), serde_json::from_str::<Value>(json).unwrap());
    }

    #[test]
    fn strict_value_refuses_a_duplicate_at_any_depth() {
        for json in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[{"x":1},{"y":[{"z":0,"z":0}]}]"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let (value, duplicate) = strict(json);
            assert!(value.is_err(), "{json}");
            assert!(duplicate, "{json}");
        }
    }

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
