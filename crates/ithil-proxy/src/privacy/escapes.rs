//! Text as it reads once its `\uXXXX` escapes are decoded, and the way back to the text as
//! written.
//!
//! A body that is not JSON, or a JSON string that holds JSON itself, may spell an address
//! `john\u0040example.com`. The rules run over the decoded text, and each match is mapped back
//! to the escaped text it was read from, which is what gets replaced: nothing outside a match
//! changes, so an escape that no rule hits stays as it was written.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::scan::find_char;

/// A text with its `\uXXXX` escapes decoded, and where each decoded character came from.
pub(super) struct Unescaped<'a> {
    /// The text as it reads.
    pub(super) text: Cow<'a, str>,
    /// Each decoded escape, in order: the range of its character in `text` and the range of
    /// the escape in the source.
    escapes: Vec<(Range<usize>, Range<usize>)>,
}

impl<'a> Unescaped<'a> {
    /// Decodes the escapes of `source`: a backslash, or several (an escape inside a JSON string
    /// inside a JSON string), then `u` and four hex digits. A surrogate pair decodes to one
    /// character, a lone surrogate to U+FFFD. Every other backslash stays as it is.
    pub(super) fn of(source: &'a str) -> Self {
        let plain = Self {
            text: Cow::Borrowed(source),
            escapes: Vec::new(),
        };
        if find_escape(source, 0).is_none() {
            return plain;
        }

        let mut text = String::with_capacity(source.len());
        let mut escapes = Vec::new();
        let mut copied = 0;
        let mut from = 0;
        while let Some(at) = find_char(source, from, '\\') {
            let (code, end) = match escape_at(source, at) {
                Ok(escape) => escape,
                Err(past) => {
                    from = past;
                    continue;
                }
            };
            let (code, end) = if (0xD800..0xDC00).contains(&code) {
                match escape_at(source, end) {
                    Ok((low, low_end)) if (0xDC00..0xE000).contains(&low) => {
                        (0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), low_end)
                    }
                    _ => (0xFFFD, end),
                }
            } else {
                (code, end)
            };
            text.push_str(&source[copied..at]);
            let decoded = text.len();
            text.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            escapes.push((decoded..text.len(), at..end));
            copied = end;
            from = end;
        }
        if escapes.is_empty() {
            return plain;
        }
        text.push_str(&source[copied..]);
        Self {
            text: Cow::Owned(text),
            escapes,
        }
    }

    /// The range of the source that `range` of the decoded text was read from.
    pub(super) fn source_range(&self, range: Range<usize>) -> Range<usize> {
        self.source_at(range.start, false)..self.source_at(range.end, true)
    }

    /// Where `at` of the decoded text is in the source; a position inside a decoded character
    /// maps to the start of its escape, or with `end` to the end of it.
    fn source_at(&self, at: usize, end: bool) -> usize {
        let before = self
            .escapes
            .partition_point(|(decoded, _)| decoded.end <= at);
        if let Some((decoded, source)) = self.escapes.get(before)
            && decoded.start < at
        {
            return if end { source.end } else { source.start };
        }
        match before.checked_sub(1).map(|i| &self.escapes[i]) {
            Some((decoded, source)) => source.end + (at - decoded.end),
            None => at,
        }
    }
}

/// The start of an escape: a backslash and a `u`. Searched for as a literal, with the vector
/// instructions of the regex crate's substring search, so that a text without escapes costs
/// little and the backslashes of other escapes (`\n` in JSON text) cost nothing.
static ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\u").expect("the escape pattern compiles"));

/// Compiles the escape search now rather than inside the first tool call.
pub(super) fn compile() {
    LazyLock::force(&ESCAPE);
}

/// The position of the first `\u` in `text` at or after `from`, which must be a character
/// boundary: where an escape may be.
pub(super) fn find_escape(text: &str, from: usize) -> Option<usize> {
    ESCAPE.find_at(text, from).map(|m| m.start())
}

/// The escape at `source[at..]`, if one starts there: its code unit and where it ends. When
/// none does, where to search on: past the backslashes, so a long run of them is read once.
fn escape_at(source: &str, at: usize) -> Result<(u32, usize), usize> {
    let bytes = source.as_bytes();
    let slashes = bytes[at..].iter().take_while(|&&b| b == b'\\').count();
    let u = at + slashes;
    if slashes == 0 || bytes.get(u) != Some(&b'u') {
        return Err(u.max(at + 1));
    }
    let code = source
        .get(u + 1..u + 5)
        .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or(u)?;
    Ok((code, u + 5))
}
