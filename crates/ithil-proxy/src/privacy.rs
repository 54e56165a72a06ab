//! The privacy filter: personal data scrubbed from every tool response.
//!
//! The gateway runs [`PrivacyFilter::filter_body`] on every downstream response before it is
//! counted, returned to the agent or written anywhere, and [`PrivacyFilter::filter_json`] on the
//! arguments it puts in the audit trail. Three built-in rules always run, in this order:
//!
//! | what | shape | becomes |
//! |---|---|---|
//! | email address | `local@domain.tld` (ASCII letters, digits, `._%+-` before the `@`) | `[EMAIL REDACTED]` |
//! | US social security number | `ddd-dd-dddd`, not part of a longer run of digits and dashes | `[SSN REDACTED]` |
//! | payment card number | 13 to 19 digits, optionally split by single spaces or dashes, first digit 2 to 6, valid Luhn checksum | `[CARD REDACTED]` |
//!
//! The card rule's checksum and first digit keep order numbers, phone numbers and timestamps:
//! about one random digit string in ten passes the Luhn check, but millisecond and nanosecond
//! Unix timestamps start with `1` until 2033, and no payment network issues cards starting with
//! 0, 1 (except the airline-only UATP range), 7, 8 or 9. A longer run of separated digits, such
//! as two card numbers with one space between them, is searched for card numbers that start and
//! end at a separator; digits are never split inside a group.
//!
//! Custom rules ([`CustomRule`], from `privacy.customRules`) follow in configuration order, each
//! applied to the output of the rules before it. Their replacement may name capture groups
//! (`$1`, `${name}`); write `$$` for a literal dollar sign. Patterns use the `regex` crate, which
//! runs in time linear in the input, so no pattern can stall the gateway.
//!
//! JSON bodies stay valid JSON: the rules run on the decoded text of every string, object keys
//! included (a map keyed by email addresses is personal data too), and never across the
//! document's structure. A JSON integer of 13 to 19 digits that passes the card rule is replaced
//! by the string `"[CARD REDACTED]"`. Everything else is left as it came: [`filter_body`] copies
//! the document byte for byte and rewrites only the strings that changed, so formatting, key
//! order and number spelling survive (two keys of one object that redact alike both stay, as a
//! repeated name; [`filter_json`], whose map cannot hold that, renames the later ones). Bodies
//! that are not JSON are filtered as plain text.
//!
//! A JSON document holds thousands of short strings, and running every rule on each of them
//! would cost more in per-call overhead than in matching. So both JSON methods first join the
//! decoded strings with newlines and run each rule once over the whole: only the strings a
//! built-in rule hits are filtered one by one, and a custom rule that matches nowhere is skipped
//! for every string. The newline stands in for a string's edges exactly (it is not a word
//! character, and no built-in pattern spans it), except for the anchors `^`, `$`, `\A` and
//! `\z`: a custom rule whose pattern may hold one is always run string by string.
//!
//! [`filter_body`]: PrivacyFilter::filter_body
//! [`filter_json`]: PrivacyFilter::filter_json

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{NoExpand, Regex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What an email address becomes.
pub const EMAIL_REPLACEMENT: &str = "[EMAIL REDACTED]";

/// What a US social security number becomes.
pub const SSN_REPLACEMENT: &str = "[SSN REDACTED]";

/// What a payment card number becomes.
pub const CARD_REPLACEMENT: &str = "[CARD REDACTED]";

/// A card number written as a JSON integer becomes this string literal.
const QUOTED_CARD_REPLACEMENT: &str = "\"[CARD REDACTED]\"";

/// The fewest digits a card number has.
const CARD_MIN_DIGITS: usize = 13;

/// The most digits a card number has.
const CARD_MAX_DIGITS: usize = 19;

/// One configured rule: every match of `pattern` is replaced by `replacement`.
///
/// Deserializes from `{"pattern": …, "replacement": …}`, also spelled `Pattern` and
/// `Replacement` as in the reference configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomRule {
    /// A regular expression in the syntax of the `regex` crate.
    #[serde(alias = "Pattern")]
    pub pattern: String,
    /// The text that replaces each match; `$1` or `${name}` insert a capture group.
    #[serde(alias = "Replacement")]
    pub replacement: String,
}

impl CustomRule {
    /// A rule from its pattern and replacement.
    pub fn new(pattern: impl Into<String>, replacement: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            replacement: replacement.into(),
        }
    }
}

/// Why a privacy filter could not be built from its custom rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivacyError {
    /// A custom rule's pattern does not compile.
    #[error("custom privacy rule {index} has an invalid pattern {pattern:?}")]
    InvalidPattern {
        /// The rule's position in the configured list, from 0.
        index: usize,
        /// The pattern as configured.
        pattern: String,
        /// What the regex compiler objected to.
        #[source]
        source: regex::Error,
    },

    /// A custom rule's pattern matches the empty string, so it would insert its replacement
    /// between every two characters.
    #[error("custom privacy rule {index} has a pattern {pattern:?} that matches the empty string")]
    MatchesEmpty {
        /// The rule's position in the configured list, from 0.
        index: usize,
        /// The pattern as configured.
        pattern: String,
    },
}

/// The email rule, compiled once per process. The regex engine finds it fast by searching for
/// the `@` first. Social security and card numbers are found by hand-written scans instead
/// ([`for_each_ssn`], [`for_each_digit_run`]): their patterns have no literal to search for,
/// and a scan that skips eight bytes at a time is several times faster than an automaton.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}")
        .expect("the built-in email pattern compiles")
});

/// A compiled custom rule.
#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    replacement: String,
    /// The pattern may hold an anchor, so a match in the joined strings of a document does not
    /// tell which strings it matches (see the module docs).
    may_anchor: bool,
}

/// Scrubs personal data from text and JSON: the built-in rules, then the custom ones.
///
/// Built once at start (every pattern compiled then) and shared; all methods take `&self` and
/// the filter is `Send + Sync`. Each method borrows its input back when no rule matched, so the
/// common case allocates nothing. [`Default`] gives the built-in rules alone.
#[derive(Clone, Debug, Default)]
pub struct PrivacyFilter {
    custom: Vec<Rule>,
}

impl PrivacyFilter {
    /// Builds a filter with the built-in rules and `custom` after them, in order.
    ///
    /// # Errors
    ///
    /// [`PrivacyError::InvalidPattern`] naming the first rule whose pattern does not compile,
    /// and [`PrivacyError::MatchesEmpty`] for a pattern that matches the empty string.
    pub fn new(custom: &[CustomRule]) -> Result<Self, PrivacyError> {
        // Compile the email rule now, at start, rather than inside the first tool call.
        LazyLock::force(&EMAIL);

        let mut rules = Vec::with_capacity(custom.len());
        for (index, rule) in custom.iter().enumerate() {
            let regex =
                Regex::new(&rule.pattern).map_err(|source| PrivacyError::InvalidPattern {
                    index,
                    pattern: rule.pattern.clone(),
                    source,
                })?;
            if regex.is_match("") {
                return Err(PrivacyError::MatchesEmpty {
                    index,
                    pattern: rule.pattern.clone(),
                });
            }
            rules.push(Rule {
                regex,
                replacement: rule.replacement.clone(),
                may_anchor: may_anchor(&rule.pattern),
            });
        }
        Ok(Self { custom: rules })
    }

    /// How many custom rules run after the built-ins.
    pub fn custom_rule_count(&self) -> usize {
        self.custom.len()
    }

    /// Applies every rule to `text`; borrowed back when no rule matched.
    pub fn filter_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = match apply_builtins(text) {
            Some(new) => Cow::Owned(new),
            None => Cow::Borrowed(text),
        };
        self.apply_custom(&mut out, None);
        out
    }

    /// Applies every rule inside `value`: to each string, to each object key, and to integers
    /// that are card numbers (which become the string `"[CARD REDACTED]"`). Returns whether
    /// anything changed.
    ///
    /// When two keys of one object redact to the same text, the later ones get a suffix (`" #2"`,
    /// `" #3"`, …) so that no value is lost.
    pub fn filter_json(&self, value: &mut Value) -> bool {
        // Read every string first, filter them together (see the module docs), then write the
        // changed ones back, walking the tree in the same order.
        let mut texts = Vec::new();
        collect_strings(value, &mut texts);
        let filtered = self.filter_texts(texts.into_iter().map(Cow::Borrowed).collect());
        write_back(value, &mut filtered.into_iter())
    }

    /// Filters a response body: as JSON when it is JSON (see the module docs), else as text.
    /// Borrowed back when no rule matched.
    pub fn filter_body<'a>(&self, body: &'a str) -> Cow<'a, str> {
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
            self.filter_json_text(body)
        } else {
            self.filter_text(body)
        }
    }

    /// Filters a response body given as bytes, like [`filter_body`](Self::filter_body).
    ///
    /// A body that is not UTF-8 is filtered after replacing its invalid sequences with U+FFFD;
    /// if no rule matched, the original bytes are borrowed back unchanged.
    pub fn filter_bytes<'a>(&self, body: &'a [u8]) -> Cow<'a, [u8]> {
        let text = String::from_utf8_lossy(body);
        match self.filter_body(&text) {
            Cow::Borrowed(_) => Cow::Borrowed(body),
            Cow::Owned(new) => Cow::Owned(new.into_bytes()),
        }
    }

    /// Runs the custom rules over `text` in order and tells whether any changed it.
    ///
    /// With `active`, a rule marked inactive (it matched nowhere in the joined strings of the
    /// document) is skipped until an earlier custom rule changes `text`; from then on every
    /// rule runs, since a replacement can create new matches.
    fn apply_custom(&self, text: &mut Cow<'_, str>, active: Option<&[bool]>) -> bool {
        let mut changed = false;
        for (index, rule) in self.custom.iter().enumerate() {
            if !changed && active.is_some_and(|active| !active[index]) {
                continue;
            }
            let replaced = match rule.regex.replace_all(text, rule.replacement.as_str()) {
                Cow::Owned(new) => new,
                Cow::Borrowed(_) => continue,
            };
            *text = Cow::Owned(replaced);
            changed = true;
        }
        changed
    }

    /// Filters a document already known to be valid JSON.
    fn filter_json_text<'a>(&self, body: &'a str) -> Cow<'a, str> {
        let doc = Document::scan(body);
        let (ranges, texts): (Vec<_>, Vec<_>) =
            doc.strings.into_iter().map(|s| (s.range, s.text)).unzip();
        let filtered = self.filter_texts(texts);

        // Splice the changed strings and the card numbers back, in document order.
        let mut out = Splicer::new(body);
        let mut cards = doc.cards.into_iter().peekable();
        let changed = ranges
            .into_iter()
            .zip(filtered)
            .filter_map(|(range, text)| Some((range, text?)));
        for (range, text) in changed {
            while let Some(card) = cards.next_if(|card| card.start < range.start) {
                out.replace(card, QUOTED_CARD_REPLACEMENT);
            }
            let mut quoted = String::with_capacity(text.len() + 2);
            push_json_string(&mut quoted, &text);
            out.replace(range, &quoted);
        }
        for card in cards {
            out.replace(card, QUOTED_CARD_REPLACEMENT);
        }
        out.finish()
    }

    /// Filters the strings of one document together and returns, for each, its new text if a
    /// rule changed it.
    fn filter_texts(&self, strings: Vec<Cow<'_, str>>) -> Vec<Option<String>> {
        if strings.is_empty() {
            return Vec::new();
        }

        // The built-ins: one pass of each over all strings joined by newlines (see the module
        // docs), then work only on the strings they hit.
        let (joined, starts) = join(strings.iter().map(|s| &**s));
        let string_at = |at: usize| starts.partition_point(|&start| start <= at) - 1;

        // The emails, by string and place in it: the same matches a search of each string on
        // its own would find, since none spans a newline and the pattern has no look-around.
        let mut emails: Vec<(usize, Range<usize>)> = Vec::new();
        if joined.contains('@') {
            for m in EMAIL.find_iter(&joined) {
                let i = string_at(m.start());
                emails.push((i, m.start() - starts[i]..m.end() - starts[i]));
            }
        }
        // Strings where a number rule may apply get every built-in rule run on them alone.
        let mut numbers = vec![false; strings.len()];
        for_each_ssn_shape(&joined, |ssn| numbers[string_at(ssn.start)] = true);
        for_each_digit_run(&joined, |run| numbers[string_at(run.start)] = true);

        let mut emails = emails.into_iter().peekable();
        let mut texts: Vec<(Cow<'_, str>, bool)> = Vec::with_capacity(strings.len());
        let mut any_changed = false;
        for (i, text) in strings.into_iter().enumerate() {
            let mut splicer = Splicer::new(&text);
            while let Some((_, email)) = emails.next_if(|(at, _)| *at == i) {
                splicer.replace(email, EMAIL_REPLACEMENT);
            }
            let filtered = if numbers[i] {
                apply_builtins(&text)
            } else {
                splicer.into_changed()
            };
            any_changed |= filtered.is_some();
            texts.push(match filtered {
                Some(new) => (Cow::Owned(new), true),
                None => (text, false),
            });
        }

        // The custom rules: a rule that matches nowhere in the joined strings, as the
        // built-ins left them, is skipped for every string that no earlier custom rule
        // changed.
        if !self.custom.is_empty() {
            let joined = if any_changed {
                join(texts.iter().map(|(text, _)| &**text)).0
            } else {
                joined
            };
            let active: Vec<bool> = self
                .custom
                .iter()
                .map(|rule| rule.may_anchor || rule.regex.is_match(&joined))
                .collect();
            if active.contains(&true) {
                for (text, changed) in &mut texts {
                    *changed |= self.apply_custom(text, Some(&active));
                }
            }
        }

        texts
            .into_iter()
            .map(|(text, changed)| changed.then(|| text.into_owned()))
            .collect()
    }
}

/// Joins `texts` with a newline after each, and returns the joined text with the offset where
/// each text starts.
fn join<'t>(texts: impl Iterator<Item = &'t str> + Clone) -> (String, Vec<usize>) {
    let mut joined = String::with_capacity(texts.clone().map(|t| t.len() + 1).sum());
    let mut starts = Vec::new();
    for text in texts {
        starts.push(joined.len());
        joined.push_str(text);
        joined.push('\n');
    }
    (joined, starts)
}

/// Pushes every string of `value` in walk order: an object's entries in map order, each key
/// before its value.
fn collect_strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
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
/// and replaces card-number integers; tells whether anything changed.
///
/// When two keys of one object redact to the same text, the later ones get a suffix (`" #2"`,
/// `" #3"`, …) so that no value is lost.
fn write_back(value: &mut Value, filtered: &mut impl Iterator<Item = Option<String>>) -> bool {
    match value {
        Value::String(s) => match filtered.next().flatten() {
            Some(new) => {
                *s = new;
                true
            }
            None => false,
        },
        Value::Number(n) => {
            let is_card = n
                .as_u64()
                .is_some_and(|n| is_card_number(Decimal::of(n).digits()));
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

/// A string of a JSON document: where its literal is (quotes included) and its decoded text.
struct JsonString<'a> {
    range: Range<usize>,
    text: Cow<'a, str>,
}

/// The parts of a valid JSON document the filter looks at.
struct Document<'a> {
    /// Every string, object keys included, in document order.
    strings: Vec<JsonString<'a>>,
    /// The integers that are card numbers, in document order.
    cards: Vec<Range<usize>>,
}

impl<'a> Document<'a> {
    /// Splits `body`, which must be valid JSON, into its strings and card-number integers.
    fn scan(body: &'a str) -> Self {
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
                let token = &bytes[start..pos];
                if token.iter().all(u8::is_ascii_digit) && is_card_number(token) {
                    doc.cards.push(start..pos);
                }
                continue;
            }

            // Inside a string the first quote not escaped closes it. The document is valid
            // JSON, so there is one, and every escape is a backslash and one ASCII character
            // (the hex digits of `\u` need no skipping).
            let open = at;
            let mut from = open + 1;
            let mut escaped = false;
            let close = loop {
                let next = find_flagged(bytes, from, |w| has_byte(w, b'"') | has_byte(w, b'\\'));
                let Some(at) = next else {
                    break bytes.len();
                };
                if bytes[at] == b'"' {
                    break at;
                }
                escaped = true;
                from = at + 2;
            };
            let raw = &body[open + 1..close];
            doc.strings.push(JsonString {
                range: open..close + 1,
                text: if escaped {
                    Cow::Owned(unescape(raw))
                } else {
                    Cow::Borrowed(raw)
                },
            });
            pos = close + 1;
        }
        doc
    }
}

/// Tells whether `pattern` may hold an anchor (`^`, `$`, `\A`, `\z`). Errs towards yes: a `^`
/// counts unless it directly follows an unescaped `[` (where it negates a class), and every
/// unescaped `$` counts, even inside a class.
fn may_anchor(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    let mut class_opened = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                if matches!(bytes.get(i + 1), Some(b'A' | b'z')) {
                    return true;
                }
                i += 2;
                class_opened = false;
                continue;
            }
            b'[' => {
                i += 1;
                class_opened = true;
                continue;
            }
            b'^' if class_opened => {}
            b'^' | b'$' => return true,
            _ => {}
        }
        class_opened = false;
        i += 1;
    }
    false
}

/// Runs the built-in rules over `text`; `None` when none matched.
fn apply_builtins(text: &str) -> Option<String> {
    let mut out: Option<String> = None;
    if let Some(new) = redact_emails(out.as_deref().unwrap_or(text)) {
        out = Some(new);
    }
    if let Some(new) = redact_ssns(out.as_deref().unwrap_or(text)) {
        out = Some(new);
    }
    if let Some(new) = redact_cards(out.as_deref().unwrap_or(text)) {
        out = Some(new);
    }
    out
}

/// Builds a copy of a text with some ranges replaced, allocating only at the first one.
struct Splicer<'a> {
    source: &'a str,
    out: Option<String>,
    /// How much of `source` has been copied or replaced so far.
    done: usize,
}

impl<'a> Splicer<'a> {
    fn new(source: &'a str) -> Self {
        Self {
            source,
            out: None,
            done: 0,
        }
    }

    /// Replaces `range`, which must start at or after the end of the previous one.
    fn replace(&mut self, range: Range<usize>, with: &str) {
        let source = self.source;
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(source.len() + 64));
        out.push_str(&source[self.done..range.start]);
        out.push_str(with);
        self.done = range.end;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.source),
            Some(mut out) => {
                out.push_str(&self.source[self.done..]);
                Cow::Owned(out)
            }
        }
    }

    fn into_changed(self) -> Option<String> {
        match self.finish() {
            Cow::Borrowed(_) => None,
            Cow::Owned(out) => Some(out),
        }
    }
}

fn redact_emails(text: &str) -> Option<String> {
    if !text.contains('@') {
        return None;
    }
    match EMAIL.replace_all(text, NoExpand(EMAIL_REPLACEMENT)) {
        Cow::Borrowed(_) => None,
        Cow::Owned(new) => Some(new),
    }
}

fn redact_ssns(text: &str) -> Option<String> {
    let mut out = Splicer::new(text);
    for_each_ssn(text, |ssn| out.replace(ssn, SSN_REPLACEMENT));
    out.into_changed()
}

/// Calls `f` with every `ddd-dd-dddd` in `text` that is not glued to more digits, left to
/// right.
fn for_each_ssn(text: &str, f: impl FnMut(Range<usize>)) {
    ssn_search(text, true, f);
}

/// Calls `f` with every `ddd-dd-dddd` in `text`, glued to more digits or not.
fn for_each_ssn_shape(text: &str, f: impl FnMut(Range<usize>)) {
    ssn_search(text, false, f);
}

fn ssn_search(text: &str, isolated: bool, mut f: impl FnMut(Range<usize>)) {
    let bytes = text.as_bytes();
    let digits = |range: Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let mut from = 0;
    // Each candidate is found by its first dash.
    while let Some(dash) = find_char(text, from, '-') {
        from = dash + 1;
        if dash < 3 || dash + 8 > bytes.len() {
            continue;
        }
        let (start, end) = (dash - 3, dash + 8);
        if digits(start..dash)
            && digits(dash + 1..dash + 3)
            && bytes[dash + 3] == b'-'
            && digits(dash + 4..end)
            && (!isolated || is_isolated(bytes, start, end))
        {
            f(start..end);
            from = end;
        }
    }
}

/// Tells whether `bytes[start..end]` is not glued to more digits, directly or through a dash.
fn is_isolated(bytes: &[u8], start: usize, end: usize) -> bool {
    let glued_before = match &bytes[..start] {
        [.., b] if b.is_ascii_digit() => true,
        [.., d, b'-'] if d.is_ascii_digit() => true,
        _ => false,
    };
    let glued_after = match &bytes[end..] {
        [b, ..] if b.is_ascii_digit() => true,
        [b'-', d, ..] if d.is_ascii_digit() => true,
        _ => false,
    };
    !glued_before && !glued_after
}

fn redact_cards(text: &str) -> Option<String> {
    let mut out = Splicer::new(text);
    for_each_digit_run(text, |run| {
        for span in card_spans(&text[run.clone()]) {
            out.replace(
                run.start + span.start..run.start + span.end,
                CARD_REPLACEMENT,
            );
        }
    });
    out.into_changed()
}

/// Calls `f` with every maximal run of at least 13 ASCII digits in which single spaces or
/// dashes may stand between two digits; the regular expression `[0-9](?:[ -]?[0-9]){12,}`,
/// found left to right.
fn for_each_digit_run(text: &str, mut f: impl FnMut(Range<usize>)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(start) = next_digit(bytes, i) {
        i = start;
        let mut digits = 0;
        loop {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
                digits += 1;
            }
            let separated = i + 1 < bytes.len()
                && matches!(bytes[i], b' ' | b'-')
                && bytes[i + 1].is_ascii_digit();
            if !separated {
                break;
            }
            i += 1;
        }
        if digits >= CARD_MIN_DIGITS {
            f(start..i);
        }
    }
}

/// The card numbers in a run of digits with single separators, as ranges of `run`.
///
/// The whole run is one candidate; when it is not a card number, the candidates are the spans
/// of whole digit groups (never splitting digits that touch), tried from each group on, longest
/// first, left to right without overlap.
fn card_spans(run: &str) -> Vec<Range<usize>> {
    let bytes = run.as_bytes();

    // The digit groups: maximal stretches of digits between separators.
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if !b.is_ascii_digit() {
            groups.push(start..i);
            start = i + 1;
        }
    }
    groups.push(start..bytes.len());

    let mut spans = Vec::new();
    let mut digits = Vec::with_capacity(CARD_MAX_DIGITS);
    let mut first = 0;
    'from: while first < groups.len() {
        // Longest first: take as many groups as fit in 19 digits, then shrink.
        let mut last = first;
        let mut count = groups[first].len();
        while last + 1 < groups.len() && count + groups[last + 1].len() <= CARD_MAX_DIGITS {
            last += 1;
            count += groups[last].len();
        }
        if count <= CARD_MAX_DIGITS {
            while count >= CARD_MIN_DIGITS {
                digits.clear();
                for group in &groups[first..=last] {
                    digits.extend_from_slice(&bytes[group.clone()]);
                }
                if is_card_number(&digits) {
                    spans.push(groups[first].start..groups[last].end);
                    first = last + 1;
                    continue 'from;
                }
                if last == first {
                    break;
                }
                count -= groups[last].len();
                last -= 1;
            }
        }
        first += 1;
    }
    spans
}

/// Tells whether ASCII `digits` are a payment card number: 13 to 19 digits, a first digit of 2
/// to 6, and a valid Luhn checksum.
fn is_card_number(digits: &[u8]) -> bool {
    if !(CARD_MIN_DIGITS..=CARD_MAX_DIGITS).contains(&digits.len())
        || !(b'2'..=b'6').contains(&digits[0])
    {
        return false;
    }
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The decimal digits of a `u64`, without allocating.
struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    fn of(mut n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            // A remainder of 10 is below 10, so the cast keeps it whole.
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    fn digits(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// The position of the first `needle` in `text` at or after `from`, which must be a character
/// boundary. (`str::find` with a `char` searches with `memchr`.)
fn find_char(text: &str, from: usize, needle: char) -> Option<usize> {
    text[from..].find(needle).map(|i| from + i)
}

/// Eight ones, one per byte of a `u64`.
const ONES: u64 = u64::from_ne_bytes([1; 8]);

/// The high bit of every byte of a `u64`.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Flags, in the high bit of its byte, every byte of `word` that is below `n` (at most 128).
///
/// The classic bit trick: it may also flag bytes above a true hit, through the borrow of the
/// subtraction, but never one below, so the lowest flag always marks the first hit.
fn has_less(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// Flags the bytes of `word` equal to `b` (see [`has_less`]).
fn has_byte(word: u64, b: u8) -> u64 {
    has_less(word ^ (ONES * u64::from(b)), 1)
}

/// Flags the ASCII digits of `word`: after `xor 0x30` they are the only bytes below 10.
fn has_digit(word: u64) -> u64 {
    has_less(word ^ (ONES * 0x30), 10)
}

/// The position of the first byte at or after `from` that `flags` flags, eight bytes at a
/// time, read little-endian so that the lowest flag is the first byte.
fn find_flagged(bytes: &[u8], from: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let hits = flags(word);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    // The last few bytes, padded with zero bytes, which no caller searches for.
    let tail = bytes.get(i..).filter(|tail| !tail.is_empty())?;
    let mut padded = [0u8; 8];
    padded[..tail.len()].copy_from_slice(tail);
    let hits = flags(u64::from_le_bytes(padded));
    (hits != 0).then(|| i + (hits.trailing_zeros() / 8) as usize)
}

/// The position of the first ASCII digit in `bytes` at or after `from`.
fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    find_flagged(bytes, from, has_digit)
}

/// Decodes the content of a valid JSON string literal (without its quotes).
///
/// A lone surrogate escape, which JSON's grammar admits but Unicode text cannot hold, becomes
/// U+FFFD.
fn unescape(raw: &str) -> String {
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
fn push_json_string(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    /// The shared JSONPlaceholder dataset: `ITHIL_SHARED_DATA`, else `shared/data` beside the
    /// checkout.
    fn dataset() -> Value {
        let dir = std::env::var_os("ITHIL_SHARED_DATA").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
            PathBuf::from,
        );
        let path = dir.join("jsonplaceholder-db.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text).expect("the dataset is JSON")
    }

    fn with_item(db: &Value, collection: &str, id: u64) -> Value {
        db[collection]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == id)
            .unwrap_or_else(|| panic!("{collection} {id} is in the dataset"))
            .clone()
    }

    fn employee_rules() -> PrivacyFilter {
        PrivacyFilter::new(&[
            CustomRule::new(r"EMP-\d{6}", "[EMPLOYEE ID REDACTED]"),
            CustomRule::new(r"ACC\d{10}", "[ACCOUNT REDACTED]"),
        ])
        .unwrap()
    }

    fn text(filter: &PrivacyFilter, s: &str) -> String {
        filter.filter_text(s).into_owned()
    }

    #[test]
    fn user_3_comes_back_without_its_card_and_ssn() {
        let db = dataset();
        let user = serde_json::to_string_pretty(&with_item(&db, "users", 3)).unwrap();
        assert!(user.contains("4111 1111 1111 1111") && user.contains("123-45-6789"));

        let filtered = PrivacyFilter::default().filter_body(&user);

        assert!(!filtered.contains("4111 1111 1111 1111"));
        assert!(!filtered.contains("123-45-6789"));
        assert!(!filtered.contains("cleo.lindqvist@example.com"));
        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        assert_eq!(
            value["notes"],
            "Billing contact; card on file [CARD REDACTED], tax id [SSN REDACTED]."
        );
        assert_eq!(value["email"], EMAIL_REPLACEMENT);
        assert_eq!(value["phone"], "555-0103");
        assert_eq!(value["address"]["zipcode"], "58718");
    }

    #[test]
    fn user_7_comes_back_without_its_employee_id_account_and_email() {
        let db = dataset();
        let user = serde_json::to_string(&with_item(&db, "users", 7)).unwrap();

        let filtered = employee_rules().filter_body(&user);

        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        assert_eq!(
            value["notes"],
            "Employee [EMPLOYEE ID REDACTED], account [ACCOUNT REDACTED], backup email \
             [EMAIL REDACTED]"
        );
        for secret in ["EMP-004211", "ACC0012345678", "ops-team@example.net"] {
            assert!(!filtered.contains(secret), "{secret} survived");
        }
    }

    #[test]
    fn post_5_comes_back_without_its_authors_email() {
        let db = dataset();
        let post = serde_json::to_string_pretty(&with_item(&db, "posts", 5)).unwrap();
        assert!(post.contains("ada.marsh@example.com"));

        let filtered = PrivacyFilter::default().filter_body(&post);

        assert!(!filtered.contains("ada.marsh@example.com"));
        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        let body = value["body"].as_str().unwrap();
        assert!(
            body.ends_with("Questions? Write to [EMAIL REDACTED]"),
            "{body}"
        );
        assert!(body.contains('\n'), "escaped newlines are kept");
    }

    #[test]
    fn the_whole_dataset_stays_valid_json_without_a_single_email() {
        let db = dataset();
        let body = serde_json::to_string_pretty(&db).unwrap();

        let filtered = employee_rules().filter_body(&body);

        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        assert!(!filtered.contains("@example."));
        assert_eq!(value["comments"].as_array().unwrap().len(), 500);
        assert_eq!(value["todos"], db["todos"], "nothing to redact there");
        // Only strings changed: the filtered tree equals the dataset filtered as a value.
        let mut expected = db.clone();
        assert!(employee_rules().filter_json(&mut expected));
        assert_eq!(value, expected);
    }

    #[test]
    fn filtering_a_body_keeps_its_formatting_and_key_order() {
        let body = "{\n  \"z\": \"mail bob@example.com\",\n  \"a\": [1, 2.5e3, true, null]\n}";

        let filtered = PrivacyFilter::default().filter_body(body);

        assert_eq!(
            filtered,
            "{\n  \"z\": \"mail [EMAIL REDACTED]\",\n  \"a\": [1, 2.5e3, true, null]\n}"
        );
    }

    #[test]
    fn luhn_invalid_numbers_and_timestamps_survive() {
        let filter = PrivacyFilter::default();
        for kept in [
            "order 4111111111111112 shipped",
            "order 4111 1111 1111 1112 shipped",
            "created 1700000000000",
            "created 1700000000004 (a Luhn-valid millisecond timestamp)",
            "nanos 1715000000000000002 (Luhn-valid too)",
            "call 555-0103 or +1 415 555 2671",
            "2024-05-06T12:00:00Z",
            "id 12345678901234567890123456",
            "EMP-004211",
        ] {
            assert_eq!(filter.filter_text(kept), kept);
            assert!(matches!(filter.filter_text(kept), Cow::Borrowed(_)));
        }
        let body = r#"{"createdAt":1700000000000,"order":4111111111111112,"n":-4111111111111111}"#;
        assert!(matches!(filter.filter_body(body), Cow::Borrowed(_)));
    }

    #[test]
    fn luhn_valid_card_numbers_are_redacted_in_every_spelling() {
        let filter = PrivacyFilter::default();
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",
            "3782 822463 10005",
            "5555555555554444",
            "6011111111111117",
            "4222222222222",
            "2223003122003222",
            "6250941006528599",
            "4000056655665556015",
        ] {
            assert_eq!(
                text(&filter, &format!("card {card}.")),
                "card [CARD REDACTED].",
                "{card}"
            );
        }
    }

    #[test]
    fn two_cards_separated_by_one_space_are_both_redacted() {
        let filter = PrivacyFilter::default();
        assert_eq!(
            text(&filter, "4111111111111111 5555555555554444"),
            "[CARD REDACTED] [CARD REDACTED]"
        );
        assert_eq!(
            text(&filter, "ref 12 4111 1111 1111 1111 05"),
            "ref 12 [CARD REDACTED] 05"
        );
    }

    #[test]
    fn digits_are_never_split_inside_a_group() {
        // 17 contiguous digits whose last 16 are a valid card: not a card, not split.
        let s = "94111111111111111";
        assert_eq!(text(&PrivacyFilter::default(), s), s);
    }

    #[test]
    fn ssns_inside_longer_numbers_survive() {
        let filter = PrivacyFilter::default();
        assert_eq!(text(&filter, "ssn 123-45-6789"), "ssn [SSN REDACTED]");
        assert_eq!(text(&filter, "SSN-123-45-6789"), "SSN-[SSN REDACTED]");
        assert_eq!(
            text(&filter, "123-45-6789,987-65-4321"),
            "[SSN REDACTED],[SSN REDACTED]"
        );
        for kept in [
            "1123-45-6789",
            "123-45-67890",
            "9-123-45-6789",
            "123-45-6789-1",
            "123-456-7890",
        ] {
            assert_eq!(text(&filter, kept), kept);
        }
    }

    #[test]
    fn emails_are_redacted_but_not_their_surroundings() {
        let filter = PrivacyFilter::default();
        assert_eq!(
            text(&filter, "write to ops-team@example.net."),
            "write to [EMAIL REDACTED]."
        );
        assert_eq!(
            text(&filter, "a.b+tag@mail.example.co.uk,x@y.io"),
            "[EMAIL REDACTED],[EMAIL REDACTED]"
        );
        assert_eq!(
            text(&filter, "@handle and user@localhost"),
            "@handle and user@localhost"
        );
    }

    #[test]
    fn nothing_matched_means_nothing_allocated() {
        let filter = employee_rules();
        let s = "plain text with 42 numbers and a - dash";
        assert!(matches!(filter.filter_text(s), Cow::Borrowed(b) if std::ptr::eq(b, s)));
        let body = r#"{"title":"irure ipsum et","completed":true,"id":1}"#;
        assert!(matches!(filter.filter_body(body), Cow::Borrowed(b) if std::ptr::eq(b, body)));
        let bytes = b"\xff\xfe not utf-8 at all";
        assert!(matches!(filter.filter_bytes(bytes), Cow::Borrowed(_)));
        let mut value = json!({ "a": ["b", 1, null] });
        assert!(!filter.filter_json(&mut value));
    }

    #[test]
    fn custom_rules_run_in_order_after_the_built_ins() {
        let filter = PrivacyFilter::new(&[
            CustomRule::new("REDACTED", "GONE"),
            CustomRule::new("GONE", "X"),
            CustomRule::new(r"id=(\d+)", "id=<$1>"),
        ])
        .unwrap();

        assert_eq!(text(&filter, "bob@example.com id=42"), "[EMAIL X] id=<42>");
    }

    #[test]
    fn a_later_rule_sees_what_an_earlier_one_wrote() {
        let filter = PrivacyFilter::new(&[
            CustomRule::new("secret", "EMP-123456"),
            CustomRule::new(r"EMP-\d{6}", "[EMP]"),
        ])
        .unwrap();
        assert_eq!(text(&filter, "a secret"), "a [EMP]");
    }

    #[test]
    fn an_invalid_pattern_is_an_error_naming_the_rule() {
        let err = PrivacyFilter::new(&[
            CustomRule::new("ok", "x"),
            CustomRule::new("EMP-(\\d{6}", "x"),
        ])
        .unwrap_err();

        assert!(matches!(
            &err,
            PrivacyError::InvalidPattern { index: 1, .. }
        ));
        assert_eq!(
            err.to_string(),
            r#"custom privacy rule 1 has an invalid pattern "EMP-(\\d{6}""#
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn a_pattern_that_matches_the_empty_string_is_refused() {
        for pattern in ["", "a*", "(EMP)?", "^"] {
            let err = PrivacyFilter::new(&[CustomRule::new(pattern, "x")]).unwrap_err();
            assert!(
                matches!(err, PrivacyError::MatchesEmpty { index: 0, .. }),
                "{pattern:?}"
            );
        }
    }

    #[test]
    fn custom_rules_deserialize_in_both_spellings() {
        let rules: Vec<CustomRule> = serde_json::from_value(json!([
            { "pattern": "a", "replacement": "b" },
            { "Pattern": "c", "Replacement": "d" },
        ]))
        .unwrap();
        assert_eq!(
            rules,
            [CustomRule::new("a", "b"), CustomRule::new("c", "d")]
        );
        assert!(serde_json::from_value::<CustomRule>(json!({ "pattern": "a" })).is_err());
        assert!(
            serde_json::from_value::<CustomRule>(json!({
                "pattern": "a", "replacement": "b", "flags": "i"
            }))
            .is_err()
        );
    }

    #[test]
    fn replacements_with_json_special_characters_keep_the_body_valid() {
        let filter = PrivacyFilter::new(&[CustomRule::new("ACC\\d{10}", "\"\\\n\u{1}")]).unwrap();
        let body = r#"{"a":"x ACC0012345678 y","b":"ACC0012345678\t"}"#;

        let filtered = filter.filter_body(body);

        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        assert_eq!(value["a"], "x \"\\\n\u{1} y");
        assert_eq!(value["b"], "\"\\\n\u{1}\t");
    }

    #[test]
    fn escaped_text_is_filtered_as_it_reads() {
        let filter = PrivacyFilter::default();
        // `\u0040` is `@`, `\n` is a newline that must not join the address.
        let body = r#"["bob\u0040example.com","line\nann@example.org","\ud83d\ude00 x","\ud800 c@example.com"]"#;

        let filtered = filter.filter_body(body);

        let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
        assert_eq!(value[0], EMAIL_REPLACEMENT);
        assert_eq!(value[1], "line\n[EMAIL REDACTED]");
        assert!(
            filtered.contains(r#""\ud83d\ude00 x""#),
            "unchanged strings stay verbatim"
        );
        assert_eq!(
            value[3], "\u{FFFD} [EMAIL REDACTED]",
            "a lone surrogate reads as U+FFFD"
        );
    }

    #[test]
    fn unescape_decodes_every_json_escape() {
        assert_eq!(
            unescape(r#"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x\udc00"#),
            "\"\\/\u{8}\u{c}\n\r\té😀\u{FFFD}x\u{FFFD}"
        );
    }

    #[test]
    fn object_keys_are_filtered_without_losing_values() {
        let filter = PrivacyFilter::default();
        let body = r#"{"ann@example.com":1,"bob@example.com":2,"id":3}"#;
        let filtered = filter.filter_body(body);
        assert_eq!(
            filtered,
            r#"{"[EMAIL REDACTED]":1,"[EMAIL REDACTED]":2,"id":3}"#
        );

        let mut value: Value = serde_json::from_str(body).unwrap();
        assert!(filter.filter_json(&mut value));
        assert_eq!(
            value,
            json!({ "[EMAIL REDACTED]": 1, "[EMAIL REDACTED] #2": 2, "id": 3 })
        );
    }

    #[test]
    fn card_numbers_written_as_json_integers_become_strings() {
        let filter = PrivacyFilter::default();
        let body =
            r#"{"card":4111111111111111,"list":[5555555555554444, 7],"f":4111111111111111.0}"#;

        let filtered = filter.filter_body(body);

        assert_eq!(
            filtered,
            r#"{"card":"[CARD REDACTED]","list":["[CARD REDACTED]", 7],"f":4111111111111111.0}"#
        );
        let mut value: Value = serde_json::from_str(body).unwrap();
        assert!(filter.filter_json(&mut value));
        assert_eq!(value["card"], CARD_REPLACEMENT);
        assert_eq!(value["list"], json!([CARD_REPLACEMENT, 7]));
        assert_eq!(value["f"], 4111111111111111.0);
    }

    #[test]
    fn bodies_that_are_not_json_are_filtered_as_text() {
        let filter = PrivacyFilter::default();
        assert_eq!(
            filter.filter_body("Contact: bob@example.com\nSSN 123-45-6789"),
            "Contact: [EMAIL REDACTED]\nSSN [SSN REDACTED]"
        );
        assert_eq!(
            filter.filter_body("{\"unterminated\": \"bob@example.com"),
            "{\"unterminated\": \"[EMAIL REDACTED]"
        );
        assert_eq!(filter.filter_body(""), "");
    }

    #[test]
    fn a_json_scalar_body_is_filtered_as_json() {
        let filter = PrivacyFilter::default();
        assert_eq!(
            filter.filter_body(r#""bob@example.com""#),
            r#""[EMAIL REDACTED]""#
        );
        assert_eq!(
            filter.filter_body("4111111111111111"),
            r#""[CARD REDACTED]""#
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_still_filtered() {
        let filter = PrivacyFilter::default();
        let filtered = filter.filter_bytes(b"\xff mail bob@example.com");
        assert_eq!(&*filtered, "\u{FFFD} mail [EMAIL REDACTED]".as_bytes());
    }

    #[test]
    fn the_filter_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PrivacyFilter>();
    }

    #[test]
    fn anchored_custom_rules_match_each_json_string_on_its_own() {
        let filter = PrivacyFilter::new(&[
            CustomRule::new(r"^ACC\d{10}$", "[ACCOUNT]"),
            CustomRule::new(r"\Aid:", "ID:"),
        ])
        .unwrap();
        let body = r#"{"a":"ACC0012345678","b":"x ACC0012345678","c":"id: 7","d":"my id: 7"}"#;

        let filtered = filter.filter_body(body);

        assert_eq!(
            filtered,
            r#"{"a":"[ACCOUNT]","b":"x ACC0012345678","c":"ID: 7","d":"my id: 7"}"#
        );
    }

    #[test]
    fn word_boundaries_see_the_edges_of_each_json_string() {
        let filter = PrivacyFilter::new(&[CustomRule::new(r"\bEMP\b", "[E]")]).unwrap();
        let body = r#"["EMP","xEMP","EMPx","EMP-1","a\nEMP"]"#;

        assert_eq!(
            filter.filter_body(body),
            r#"["[E]","xEMP","EMPx","[E]-1","a\n[E]"]"#
        );
    }

    #[test]
    fn a_custom_rule_that_matches_only_what_a_built_in_wrote_still_runs_in_json() {
        let filter = PrivacyFilter::new(&[
            CustomRule::new(r"\[EMAIL REDACTED\]", "[MAIL]"),
            CustomRule::new(r"\[MAIL\] at", "[MAIL] in"),
        ])
        .unwrap();

        assert_eq!(
            filter.filter_body(r#"["bob@example.com at home","plain at home"]"#),
            r#"["[MAIL] in home","plain at home"]"#
        );
    }

    #[test]
    fn joined_filtering_agrees_with_filtering_each_string_alone() {
        let filters = [
            PrivacyFilter::default(),
            employee_rules(),
            PrivacyFilter::new(&[
                CustomRule::new(r"(?m)^Qui", "QUI"),
                CustomRule::new(r"(?i)\bsunt\b", "S"),
                CustomRule::new(r"S veniam", "SV"),
                CustomRule::new(r"[^a-z ]{3,}", "#"),
            ])
            .unwrap(),
        ];
        let db = dataset();
        let mut bodies: Vec<String> = ["users", "posts", "comments"]
            .iter()
            .map(|c| serde_json::to_string_pretty(&db[*c]).unwrap())
            .collect();
        bodies.push(serde_json::to_string(&db).unwrap());
        // Strings of every length around the eight-byte steps of the scanner, with escapes,
        // digits and quotes near their ends.
        let mut odd = Vec::new();
        for len in 0..20 {
            let pad = "a".repeat(len);
            odd.push(format!("{pad}\"x"));
            odd.push(format!("{pad}\\"));
            odd.push(format!("{pad}4111111111111111"));
            odd.push(format!("{pad}\n{pad}b@example.com"));
        }
        bodies.push(serde_json::to_string(&odd).unwrap());

        for filter in &filters {
            for body in &bodies {
                let value: Value = serde_json::from_str(body).unwrap();
                let expected = one_by_one(filter, &value);

                let filtered: Value = serde_json::from_str(&filter.filter_body(body)).unwrap();
                assert_eq!(filtered, expected);
                let mut tree = value.clone();
                assert_eq!(filter.filter_json(&mut tree), expected != value);
                assert_eq!(tree, expected);
            }
        }
    }

    /// The reference for the joined-strings shortcut: every string and key filtered on its
    /// own with `filter_text`.
    fn one_by_one(filter: &PrivacyFilter, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(filter.filter_text(s).into_owned()),
            Value::Number(n)
                if n.as_u64()
                    .is_some_and(|n| is_card_number(n.to_string().as_bytes())) =>
            {
                Value::String(CARD_REPLACEMENT.to_owned())
            }
            Value::Array(items) => items.iter().map(|item| one_by_one(filter, item)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (filter.filter_text(k).into_owned(), one_by_one(filter, v)))
                .collect(),
            other => other.clone(),
        }
    }

    #[test]
    fn only_anchors_outside_a_class_negation_make_a_rule_run_string_by_string() {
        for (pattern, anchored) in [
            (r"EMP-\d{6}", false),
            (r"[^0-9]+x", false),
            (r"\^x", false),
            (r"\$5", false),
            (r"^EMP", true),
            (r"EMP$", true),
            (r"\AEMP", true),
            (r"EMP\z", true),
            (r"\\^x", true),
            (r"\[^x", true),
            (r"[a^]", true),
            (r"[$]", true),
        ] {
            assert_eq!(may_anchor(pattern), anchored, "{pattern}");
        }
    }

    #[test]
    fn the_eight_byte_scan_finds_the_first_match_at_every_offset() {
        let text = b"ab1cdefghij2klmnopq\"rstuvw3xyz";
        for from in 0..=text.len() {
            let naive = text[from..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|i| from + i);
            assert_eq!(next_digit(text, from), naive, "from {from}");
            let naive = text[from..]
                .iter()
                .position(|&b| b == b'"')
                .map(|i| from + i);
            assert_eq!(find_flagged(text, from, |w| has_byte(w, b'"')), naive);
        }
        // Every byte value: only the ten digits are flagged.
        let all: Vec<u8> = (0..=255).collect();
        let digits: Vec<usize> = (0..all.len())
            .filter(|&i| next_digit(&all[i..i + 1], 0).is_some())
            .collect();
        assert_eq!(digits, (48..58).collect::<Vec<_>>());
    }

    #[test]
    fn luhn_check_matches_known_values() {
        assert!(is_card_number(b"4111111111111111"));
        assert!(!is_card_number(b"4111111111111112"));
        assert!(
            !is_card_number(b"1700000000004"),
            "leading 1 is not a card network"
        );
        assert!(!is_card_number(b"411111111111"), "12 digits");
        assert!(!is_card_number(b"41111111111111111111"), "20 digits");
        assert_eq!(Decimal::of(u64::MAX).digits(), b"18446744073709551615");
        assert_eq!(Decimal::of(0).digits(), b"0");
    }
}
