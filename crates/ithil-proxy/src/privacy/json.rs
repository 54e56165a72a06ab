//! JSON as the filter sees it: the strings and numbers of a document, read from its text or
//! from a parsed [`Value`], and written back.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use serde::de::IgnoredAny;
use serde_json::{Map, Number, Value};

use super::CARD_REPLACEMENT;
use super::escapes::find_escape;
use super::rules::{Decimal, is_card_number, is_card_number_f64, is_card_number_token};
use super::scan::{find_flagged, has_byte, has_digit};

/// A string of a JSON document: where its literal is (quotes included) and its decoded text.
pub(super) struct JsonString<'a> {
    pub(super) range: Range<usize>,
    pub(super) text: Cow<'a, str>,
    /// The decoded text holds `\u`, which only an escaped backslash (`\\`) in the literal can
    /// give.
    pub(super) holds_escape: bool,
}

/// The parts of JSON text the filter looks at.
pub(super) struct Document<'a> {
    /// Every string, object keys included, in document order.
    pub(super) strings: Vec<JsonString<'a>>,
    /// The numbers that are card numbers, sign included, in document order.
    pub(super) cards: Vec<Range<usize>>,
}

impl<'a> Document<'a> {
    /// Splits `body`, which must be valid JSON or a sequence of valid JSON texts (see
    /// [`is_sequence`]), into its strings and card numbers.
    pub(super) fn scan(body: &'a str) -> Self {
        let bytes = body.as_bytes();
        let mut doc = Self {
            strings: Vec::new(),
            cards: Vec::new(),
        };
        let mut pos = 0;
        // Outside strings there are punctuation, whitespace, literals and numbers; a quote
        // opens a string and a digit starts a number or follows its minus sign.
        while let Some(at) = find_flagged(bytes, pos, |w| has_byte(w, b'"') | has_digit(w)) {
            if bytes[at] != b'"' {
                let start = if at > 0 && bytes[at - 1] == b'-' {
                    at - 1
                } else {
                    at
                };
                pos = at;
                while pos < bytes.len()
                    && matches!(bytes[pos], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    pos += 1;
                }
                if is_card_number_token(&bytes[start..pos]) {
                    doc.cards.push(start..pos);
                }
                continue;
            }

            // Inside a string the first quote not escaped closes it. The text is valid JSON,
            // so there is one, and every escape is a backslash and one ASCII character (the
            // hex digits of `\u` need no skipping).
            let open = at;
            let mut from = open + 1;
            let mut escaped = false;
            let mut backslash = false;
            let close = loop {
                let next = find_flagged(bytes, from, |w| has_byte(w, b'"') | has_byte(w, b'\\'));
                let Some(at) = next else {
                    break bytes.len();
                };
                if bytes[at] == b'"' {
                    break at;
                }
                escaped = true;
                // `\\` or `\u005c` decode to a backslash that may start an escape.
                backslash |= match bytes.get(at + 1..at + 6) {
                    Some([b'\\', ..]) => true,
                    Some(hex) => hex.eq_ignore_ascii_case(b"u005c"),
                    None => bytes.get(at + 1) == Some(&b'\\'),
                };
                from = at + 2;
            };
            let raw = &body[open + 1..close];
            let text = if escaped {
                Cow::Owned(unescape(raw))
            } else {
                Cow::Borrowed(raw)
            };
            doc.strings.push(JsonString {
                range: open..close + 1,
                holds_escape: backslash && find_escape(&text, 0).is_some(),
                text,
            });
            pos = close + 1;
        }
        doc
    }
}

/// Tells whether `text` is one or more JSON texts that each start with `{`, `[` or `"`,
/// separated by nothing, whitespace or the record separator of JSON text sequences (RFC 7464):
/// JSON Lines, concatenated JSON, or a JSON text sequence. A sequence of bare numbers or
/// literals does not count, since `4111 1111` is more likely text.
pub(super) fn is_sequence(text: &str) -> bool {
    let mut rest = text;
    let mut texts = 0;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x1e']);
        if rest.is_empty() {
            return texts > 0;
        }
        if !rest.starts_with(['{', '[', '"']) {
            return false;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
        if !matches!(stream.next(), Some(Ok(_))) {
            return false;
        }
        rest = &rest[stream.byte_offset()..];
        texts += 1;
    }
}

/// Pushes every string of `value` in walk order: an object's entries in map order, each key
/// before its value.
pub(super) fn collect_strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => {
            for (key, item) in map {
                out.push(key);
                collect_strings(item, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Writes the filtered strings back into `value` in the order [`collect_strings`] read them,
/// and replaces card numbers; tells whether anything changed.
///
/// When two keys of one object redact to the same text, the later ones get a suffix (`" #2"`,
/// `" #3"`, …) so that no value is lost.
pub(super) fn write_back(
    value: &mut Value,
    filtered: &mut impl Iterator<Item = Option<String>>,
) -> bool {
    match value {
        Value::String(s) => match filtered.next().flatten() {
            Some(new) => {
                *s = new;
                true
            }
            None => false,
        },
        Value::Number(n) => {
            let is_card = is_card_value(n);
            if is_card {
                *value = Value::String(CARD_REPLACEMENT.to_owned());
            }
            is_card
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= write_back(item, filtered);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            let mut new_keys = Vec::new();
            for (key, item) in map.iter_mut() {
                if let Some(new) = filtered.next().flatten() {
                    new_keys.push((key.clone(), new));
                }
                changed |= write_back(item, filtered);
            }
            if !new_keys.is_empty() {
                rename_keys(map, new_keys);
                changed = true;
            }
            changed
        }
        Value::Null | Value::Bool(_) => false,
    }
}

/// Tells whether a parsed JSON number is a card number: an integer, negative or not, whose
/// digits pass the card rule, or a double that holds one (see [`is_card_number_f64`]).
pub(super) fn is_card_value(n: &Number) -> bool {
    if let Some(n) = n.as_u64() {
        is_card_number(Decimal::of(n).digits())
    } else if let Some(n) = n.as_i64() {
        is_card_number(Decimal::of(n.unsigned_abs()).digits())
    } else {
        n.as_f64().is_some_and(is_card_number_f64)
    }
}

/// Renames the keys of `map` as `renames` (old, new) says, in map order, keeping every value.
fn rename_keys(map: &mut Map<String, Value>, renames: Vec<(String, String)>) {
    let mut renames = renames.into_iter().peekable();
    let old = std::mem::take(map);
    for (key, item) in old {
        let key = match renames.next_if(|(old, _)| *old == key) {
            Some((_, new)) => new,
            None => key,
        };
        let mut free = key.clone();
        let mut n = 1;
        while map.contains_key(&free) {
            n += 1;
            free = format!("{key} #{n}");
        }
        map.insert(free, item);
    }
}

/// Decodes the content of a valid JSON string literal (without its quotes).
///
/// A lone surrogate escape, which JSON's grammar admits but Unicode text cannot hold, becomes
/// U+FFFD.
pub(super) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let mut chars = rest[backslash + 1..].chars();
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let high = hex4(&mut chars);
                let code = if (0xD800..0xDC00).contains(&high) {
                    // A high surrogate; a pair needs `\uDC00`..`\uDFFF` right after it.
                    let rest = chars.as_str();
                    let low = rest
                        .strip_prefix("\\u")
                        .and_then(|r| r.get(..4))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .filter(|low| (0xDC00..0xE000).contains(low));
                    match low {
                        Some(low) => {
                            chars = rest[6..].chars();
                            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                        }
                        None => 0xFFFD,
                    }
                } else {
                    high
                };
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            // `"`, `\` and `/` stand for themselves.
            Some(other) => out.push(other),
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    out
}

/// Reads the four hex digits of a `\u` escape; a malformed escape reads as U+FFFD.
fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    let rest = chars.as_str();
    match rest.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok()) {
        Some(code) => {
            *chars = rest[4..].chars();
            code
        }
        None => 0xFFFD,
    }
}

/// Appends `s` to `out` as a JSON string literal, quotes included.
pub(super) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}
