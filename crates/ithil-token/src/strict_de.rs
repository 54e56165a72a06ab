//! A deserializer wrapper that refuses repeated object members at every depth while the value is
//! read, so that the application's claims are checked in the same pass that builds them.
//!
//! [`StrictSeed`] wraps the seed the application type hands to `next_value_seed`. Every
//! deserializer, visitor, map, sequence and enum the value is read through is wrapped in turn, and
//! each wrapped map keeps the member names it has seen in a [`KeySet`]. Two things pass through
//! without their members being seen: a serde_json `RawValue`, whose text is handed over unparsed,
//! and a member name read as something other than a string. Both are recorded in
//! [`Findings::unseen`], and the caller then checks the whole text separately, so that neither is
//! ever a way around the check. A value the application ignores is walked member by member here,
//! where serde_json would skip it unread.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use crate::strict_json::{DuplicateCheck, KeySet};

/// The name serde_json gives the newtype struct behind `RawValue`, whose text it does not parse.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// What the wrapped deserializers found, shared by every level of one parse.
#[derive(Default)]
pub(crate) struct Findings {
    /// An object repeated a member name; the parse failed there.
    pub(crate) duplicate: Cell<bool>,
    /// Part of the value passed without its members being seen; check the text separately.
    pub(crate) unseen: Cell<bool>,
}

/// A seed whose value is read through a [`Strict`] deserializer.
pub(crate) struct StrictSeed<'f, S> {
    pub(crate) seed: S,
    pub(crate) findings: &'f Findings,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Strict {
            de,
            findings: self.findings,
        })
    }
}

/// Forwards `deserialize_*` methods to `self.de`, with the visitor wrapped by `self.wrap`.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(
                self
                $(, $arg: $ty)*,
                visitor: V,
            ) -> Result<V::Value, Self::Error> {
                let (de, visitor) = self.wrap(visitor);
                de.$method($($arg,)* visitor)
            }
        )*
    };
}

/// Forwards `deserialize_*` methods that every wrapper passes on unchanged.
macro_rules! forward_common_deserialize {
    () => {
        forward_deserialize! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
            deserialize_identifier();
        }

        fn is_human_readable(&self) -> bool {
            self.de.is_human_readable()
        }
    };
}

/// Forwards `visit_*` methods for values without parts to `self.visitor`.
macro_rules! forward_visit {
    ($($method:ident($($arg:ident: $ty:ty)?);)*) => {
        $(
            fn $method<E: de::Error>(self $(, $arg: $ty)?) -> Result<Self::Value, E> {
                self.visitor.$method($($arg)?)
            }
        )*
    };
}

/// Forwards the `visit_*` methods of [`forward_visit`] that every visitor wrapper passes on.
macro_rules! forward_common_visit {
    () => {
        forward_visit! {
            visit_bool(v: bool);
            visit_i8(v: i8);
            visit_i16(v: i16);
            visit_i32(v: i32);
            visit_i64(v: i64);
            visit_i128(v: i128);
            visit_u8(v: u8);
            visit_u16(v: u16);
            visit_u32(v: u32);
            visit_u64(v: u64);
            visit_u128(v: u128);
            visit_f32(v: f32);
            visit_f64(v: f64);
            visit_char(v: char);
            visit_bytes(v: &[u8]);
            visit_borrowed_bytes(v: &'de [u8]);
            visit_byte_buf(v: Vec<u8>);
            visit_none();
            visit_unit();
        }

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.visitor.expecting(f)
        }
    };
}

/// A deserializer whose maps, at any depth, refuse a repeated member name.
struct Strict<'f, D> {
    de: D,
    findings: &'f Findings,
}

impl<'f, D> Strict<'f, D> {
    fn wrap<V>(self, visitor: V) -> (D, StrictVisitor<'f, V>) {
        let findings = self.findings;
        (self.de, StrictVisitor { visitor, findings })
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<'_, D> {
    type Error = D::Error;

    forward_common_deserialize!();

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if name == RAW_VALUE {
            self.findings.unseen.set(true);
            return self.de.deserialize_newtype_struct(name, visitor);
        }
        let (de, visitor) = self.wrap(visitor);
        de.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(DuplicateCheck {
            duplicate: &self.findings.duplicate,
        })?;
        visitor.visit_unit()
    }
}

/// A visitor that reads the parts of its value through [`Strict`] wrappers.
struct StrictVisitor<'f, V> {
    visitor: V,
    findings: &'f Findings,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<'_, V> {
    type Value = V::Value;

    forward_common_visit!();

    forward_visit! {
        visit_str(v: &str);
        visit_borrowed_str(v: &'de str);
        visit_string(v: String);
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Strict {
            de,
            findings: self.findings,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Strict {
            de,
            findings: self.findings,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(StrictSeq {
            seq,
            findings: self.findings,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(StrictMap {
            map,
            findings: self.findings,
            names: KeySet::default(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(StrictEnum {
            data,
            findings: self.findings,
        })
    }
}

struct StrictSeq<'f, A> {
    seq: A,
    findings: &'f Findings,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(StrictSeed {
            seed,
            findings: self.findings,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// An object whose member names are collected as they are read, refusing the first repeat.
struct StrictMap<'f, 'de, A> {
    map: A,
    findings: &'f Findings,
    names: KeySet<'de>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut name = None;
        let key = self.map.next_key_seed(NameSeed {
            seed,
            name: &mut name,
        })?;
        let repeated = match name {
            Some(name) => !self.names.insert(name),
            // The name was read as something other than a string.
            None => {
                if key.is_some() {
                    self.findings.unseen.set(true);
                }
                false
            }
        };
        if repeated {
            self.findings.duplicate.set(true);
            return Err(de::Error::custom("duplicate member"));
        }
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(StrictSeed {
            seed,
            findings: self.findings,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A member name's seed that also records the name, when it is read as a string.
struct NameSeed<'n, 'de, K> {
    seed: K,
    name: &'n mut Option<Cow<'de, str>>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for NameSeed<'_, 'de, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<K::Value, D::Error> {
        self.seed.deserialize(NameDeserializer {
            de,
            name: self.name,
        })
    }
}

struct NameDeserializer<'n, 'de, D> {
    de: D,
    name: &'n mut Option<Cow<'de, str>>,
}

impl<'n, 'de, D> NameDeserializer<'n, 'de, D> {
    fn wrap<V>(self, visitor: V) -> (D, NameVisitor<'n, 'de, V>) {
        let name = self.name;
        (self.de, NameVisitor { visitor, name })
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for NameDeserializer<'_, 'de, D> {
    type Error = D::Error;

    forward_common_deserialize!();

    forward_deserialize! {
        deserialize_newtype_struct(name: &'static str);
        deserialize_ignored_any();
    }
}

struct NameVisitor<'n, 'de, V> {
    visitor: V,
    name: &'n mut Option<Cow<'de, str>>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for NameVisitor<'_, 'de, V> {
    type Value = V::Value;

    forward_common_visit!();

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        *self.name = Some(Cow::Owned(v.to_owned()));
        self.visitor.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        *self.name = Some(Cow::Borrowed(v));
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        *self.name = Some(Cow::Owned(v.clone()));
        self.visitor.visit_string(v)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(NameDeserializer {
            de,
            name: self.name,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(NameDeserializer {
            de,
            name: self.name,
        })
    }

    // A member name is never a sequence, a map or an enum in JSON; should a deserializer present
    // it as one, the name goes unrecorded and the caller checks the text separately.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// An enum whose content is read through [`Strict`] wrappers.
///
/// The variant name needs no check: an enum written as an object has exactly one member.
struct StrictEnum<'f, A> {
    data: A,
    findings: &'f Findings,
}

impl<'de, 'f, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<'f, A> {
    type Error = A::Error;
    type Variant = StrictVariant<'f, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.data.variant_seed(seed)?;
        let findings = self.findings;
        Ok((value, StrictVariant { variant, findings }))
    }
}

struct StrictVariant<'f, A> {
    variant: A,
    findings: &'f Findings,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.variant.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.variant.newtype_variant_seed(StrictSeed {
            seed,
            findings: self.findings,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let findings = self.findings;
        self.variant
            .tuple_variant(len, StrictVisitor { visitor, findings })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let findings = self.findings;
        self.variant
            .struct_variant(fields, StrictVisitor { visitor, findings })
    }
}
