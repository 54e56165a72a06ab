//! The privacy filter: personal data scrubbed from every tool response.
//!
//! The gateway runs [`PrivacyFilter::filter_body`] on every downstream response before it is
//! counted, returned to the agent or written anywhere, and [`PrivacyFilter::filter_json`] on the
//! arguments it puts in the audit trail. Three built-in rules always run, in this order:
//!
//! | what | shape | becomes |
//! |---|---|---|
//! | email address | `local@domain.tld`: letters, digits and combining marks of any script and `._%+-` before the `@`; labels of letters, digits, marks and `-`; a top-level domain of two or more letters | `[EMAIL REDACTED]` |
//! | US social security number | `ddd-dd-dddd`, not part of a longer run of digits and dashes | `[SSN REDACTED]` |
//! | payment card number | 13 to 19 digits, optionally split into groups of three or more by one dash or by one or more spaces, first digit 2 to 6 (or 1 at exactly 15 digits), valid Luhn checksum | `[CARD REDACTED]` |
//!
//! The card rule's checksum, first digit and groups keep order numbers, phone numbers, dates and
//! timestamps: about one random digit string in ten passes the Luhn check, but no payment
//! network issues cards starting with 0, 7, 8 or 9, a card starting with 1 is a 15-digit UATP
//! airline card, millisecond (13 digits), microsecond (16) and nanosecond (19) Unix timestamps
//! start with `1` until 2033, and dates and phone numbers hold groups of one or two digits,
//! which a card written in groups never has. A longer run of separated digits, such as two
//! card numbers with one space between them, is searched for card numbers that start and end
//! at a separator; digits are never split inside a group. The spaces may be ASCII spaces or
//! the no-break, figure, thin and narrow no-break spaces of typeset numbers.
//!
//! Custom rules ([`CustomRule`], from `privacy.customRules`) follow in configuration order, each
//! applied to the output of the rules before it. Their replacement may name capture groups
//! (`$1`, `${name}`); write `$$` for a literal dollar sign. Patterns use the `regex` crate, which
//! runs in time linear in the input, so no pattern can stall the gateway.
//!
//! JSON bodies stay valid JSON: the rules run on the decoded text of every string, object keys
//! included (a map keyed by email addresses is personal data too), and never across the
//! document's structure. A JSON number whose value is an integer that passes the card rule
//! (`4111111111111111`, `-4111111111111111`, `4111111111111111.0`, `4.111111111111111e15`) is
//! replaced by the string `"[CARD REDACTED]"`. Everything else is left as it came:
//! [`filter_body`] copies the document byte for byte and rewrites only the strings that
//! changed, so formatting, key order and number spelling survive (two keys of one object that
//! redact alike both stay, as a repeated name; [`filter_json`], whose map cannot hold that,
//! renames the later ones).
//!
//! A body of several JSON texts (JSON Lines, concatenated JSON, RFC 7464 sequences) is filtered
//! as JSON too, as a whole when every text in it parses, else line by line: each line that is
//! JSON text starting with `{`, `[` or `"` as JSON, the lines between as plain text.
//!
//! Text is read as it reads, escapes included: where a text (a body that is not JSON, or a
//! decoded JSON string, such as one that holds JSON itself) contains `\uXXXX` escapes, with one
//! backslash or several, the rules run over the decoded text and each match replaces the
//! escaped text it was read from; nothing outside a match changes. `john\u0040example.com` is
//! an email address wherever it appears. Other encodings (`%40`, `&#64;`, base64) are not
//! decoded.
//!
//! A JSON document holds thousands of short strings, and running every rule on each of them
//! would cost more in per-call overhead than in matching. So both JSON methods first join the
//! decoded strings with newlines and run each rule once over the whole: only the strings a
//! built-in rule hits (or that hold an escape) are filtered one by one, and a custom rule that
//! matches nowhere is skipped for every string. The newline stands in for a string's edges
//! exactly (it is not a word character, and no built-in pattern spans it), except for the
//! anchors `^`, `$`, `\A` and `\z`: a custom rule whose pattern may hold one is always run
//! string by string. Where the strings hold letters beyond ASCII, the custom rules are tried on
//! those strings one by one and on the others together, since a Unicode `\b` sends the regex
//! engine to a slower automaton for the rest of a text once it meets such a letter.
//!
//! [`filter_body`]: PrivacyFilter::filter_body
//! [`filter_json`]: PrivacyFilter::filter_json

mod escapes;
mod json;
mod rules;
mod scan;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::ops::Range;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::escapes::{Unescaped, find_escape};
use self::json::{Document, collect_strings, is_sequence, push_json_string, write_back};
use self::rules::{
    apply_builtins, email_regex, for_each_card, for_each_digit_run, for_each_email, for_each_ssn,
    for_each_ssn_shape,
};
use self::scan::{find_flagged, has_high};

/// What an email address becomes.
pub const EMAIL_REPLACEMENT: &str = "[EMAIL REDACTED]";

/// What a US social security number becomes.
pub const SSN_REPLACEMENT: &str = "[SSN REDACTED]";

/// What a payment card number becomes.
pub const CARD_REPLACEMENT: &str = "[CARD REDACTED]";

/// A card number written as a JSON number becomes this string literal.
const QUOTED_CARD_REPLACEMENT: &str = "\"[CARD REDACTED]\"";

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

/// A compiled custom rule.
#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    replacement: String,
    /// The pattern may hold an anchor, so a match in the joined strings of a document does not
    /// tell which strings it matches (see the module docs).
    may_anchor: bool,
}

/// One rule of the filter, built in or custom, for the text that holds escapes.
#[derive(Clone, Copy)]
enum Step<'r> {
    Email,
    Ssn,
    Card,
    Custom(&'r Rule),
}

impl Step<'_> {
    /// Calls `f` with every match of the rule in `text` and what it becomes, left to right.
    fn for_each_match(self, text: &str, mut f: impl FnMut(Range<usize>, &str)) {
        match self {
            Self::Email => for_each_email(text, |m| f(m, EMAIL_REPLACEMENT)),
            Self::Ssn => for_each_ssn(text, |m| f(m, SSN_REPLACEMENT)),
            Self::Card => for_each_card(text, |m| f(m, CARD_REPLACEMENT)),
            Self::Custom(rule) => {
                let mut replacement = String::new();
                for caps in rule.regex.captures_iter(text) {
                    replacement.clear();
                    caps.expand(&rule.replacement, &mut replacement);
                    let whole = caps.get(0).map_or(0..0, |m| m.range());
                    f(whole, &replacement);
                }
            }
        }
    }
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
        rules::compile();
        escapes::compile();

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

    /// Applies every rule to `text`, reading `\uXXXX` escapes as what they stand for (see the
    /// module docs); borrowed back when no rule matched.
    pub fn filter_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if find_escape(text, 0).is_some() {
            return self.filter_escaped(text);
        }
        let mut out = match apply_builtins(text) {
            Some(new) => Cow::Owned(new),
            None => Cow::Borrowed(text),
        };
        self.apply_custom(&mut out, None);
        out
    }

    /// Applies every rule inside `value`: to each string, to each object key, and to numbers
    /// that are card numbers (which become the string `"[CARD REDACTED]"`). Returns whether
    /// anything changed.
    ///
    /// When two keys of one object redact to the same text, the later ones get a suffix (`" #2"`,
    /// `" #3"`, …) so that no value is lost. A double of 2⁵³ or more has lost the digits that
    /// would tell a card number from its neighbours, so an integral one of 16 to 19 digits that
    /// starts like a card number counts as one.
    pub fn filter_json(&self, value: &mut Value) -> bool {
        // Read every string first, filter them together (see the module docs), then write the
        // changed ones back, walking the tree in the same order.
        let mut texts = Vec::new();
        collect_strings(value, &mut texts);
        let filtered = self.filter_texts(texts.into_iter().map(Cow::Borrowed).collect(), None);
        write_back(value, &mut filtered.into_iter())
    }

    /// Filters a response body: as JSON when it is JSON or a sequence of JSON texts, line by
    /// line when some of its lines are, else as text (see the module docs). Borrowed back when
    /// no rule matched.
    pub fn filter_body<'a>(&self, body: &'a str) -> Cow<'a, str> {
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() || is_sequence(body) {
            self.filter_json_text(body)
        } else {
            self.filter_lines(body)
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

    /// Applies every rule to a text that may hold `\uXXXX` escapes: each rule in turn runs over
    /// the text as it reads, and its matches replace the text they were read from.
    fn filter_escaped<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let builtins = [Step::Email, Step::Ssn, Step::Card];
        let steps = builtins
            .into_iter()
            .chain(self.custom.iter().map(Step::Custom));
        let mut out = Cow::Borrowed(text);
        for step in steps {
            if let Some(new) = apply_unescaped(&out, step) {
                out = Cow::Owned(new);
            }
        }
        out
    }

    /// Filters a body that is one JSON text or a sequence of them.
    fn filter_json_text<'a>(&self, body: &'a str) -> Cow<'a, str> {
        let doc = Document::scan(body);
        let mut ranges = Vec::with_capacity(doc.strings.len());
        let mut texts = Vec::with_capacity(doc.strings.len());
        let mut escaped = Vec::with_capacity(doc.strings.len());
        for string in doc.strings {
            ranges.push(string.range);
            texts.push(string.text);
            escaped.push(string.holds_escape);
        }
        let filtered = self.filter_texts(texts, Some(escaped));

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

    /// Filters a body that is not JSON as a whole: each line that is a JSON text, or several
    /// (after an optional RFC 7464 record separator), as JSON, and each stretch of other lines
    /// as text. Consecutive JSON lines are one sequence, filtered together. A body without
    /// such a line is filtered as text in one piece.
    fn filter_lines<'a>(&self, body: &'a str) -> Cow<'a, str> {
        let mut out = Splicer::new(body);
        // The JSON lines not yet filtered, and where the text before them starts.
        let mut json: Option<Range<usize>> = None;
        let mut text_from = 0;
        let mut line_start = 0;
        for line in body.split_inclusive('\n') {
            let start = line_start;
            line_start += line.len();
            let content = line.trim_end_matches(['\n', '\r']);
            let trimmed = content.trim_start_matches([' ', '\t', '\x1e']);
            if !trimmed.starts_with(['{', '[', '"']) || !is_sequence(trimmed) {
                if trimmed.is_empty() {
                    // A blank line does not end a run of JSON lines.
                    continue;
                }
                if let Some(run) = json.take() {
                    self.splice_parts(&mut out, body, text_from..run.start, run.clone());
                    text_from = run.end;
                }
                continue;
            }
            let end = start + content.len();
            match &mut json {
                Some(run) => run.end = end,
                None => json = Some(start + (content.len() - trimmed.len())..end),
            }
        }
        if json.is_none() && text_from == 0 {
            return self.filter_text(body);
        }
        if let Some(run) = json {
            self.splice_parts(&mut out, body, text_from..run.start, run.clone());
            text_from = run.end;
        }
        if let Cow::Owned(new) = self.filter_text(&body[text_from..]) {
            out.replace(text_from..body.len(), &new);
        }
        out.finish()
    }

    /// Filters `text` of `body` as text and the `json` right after it as JSON, into `out`.
    fn splice_parts(
        &self,
        out: &mut Splicer<'_>,
        body: &str,
        text: Range<usize>,
        json: Range<usize>,
    ) {
        if let Cow::Owned(new) = self.filter_text(&body[text.clone()]) {
            out.replace(text, &new);
        }
        if let Cow::Owned(new) = self.filter_json_text(&body[json.clone()]) {
            out.replace(json, &new);
        }
    }

    /// Filters the strings of one document together and returns, for each, its new text if a
    /// rule changed it. `escaped` tells which strings may hold a `\u` escape, if the caller
    /// knows; else they are searched for one.
    fn filter_texts(
        &self,
        strings: Vec<Cow<'_, str>>,
        escaped: Option<Vec<bool>>,
    ) -> Vec<Option<String>> {
        if strings.is_empty() {
            return Vec::new();
        }

        // The built-ins: one pass of each over all strings joined by newlines (see the module
        // docs), then work only on the strings they hit.
        let (joined, starts) = join(strings.iter().map(|s| &**s));
        let string_at = |at: usize| starts.partition_point(|&start| start <= at) - 1;
        let ascii = joined.is_ascii();

        // The emails, by string and place in it: the same matches a search of each string on
        // its own would find, since none spans a newline and the pattern has no look-around,
        // and both email patterns find the same in ASCII text.
        let mut emails: Vec<(usize, Range<usize>)> = Vec::new();
        if joined.contains('@') {
            for m in email_regex(ascii).find_iter(&joined) {
                let i = string_at(m.start());
                emails.push((i, m.start() - starts[i]..m.end() - starts[i]));
            }
        }
        // Strings where a number rule may apply get every built-in rule run on them alone;
        // strings that may hold an escape get every rule, custom ones included.
        let mut numbers = vec![false; strings.len()];
        for_each_ssn_shape(&joined, |ssn| numbers[string_at(ssn.start)] = true);
        for_each_digit_run(&joined, |run| numbers[string_at(run.start)] = true);
        let escaped = escaped.unwrap_or_else(|| {
            let mut escaped = vec![false; strings.len()];
            let mut from = 0;
            while let Some(at) = find_escape(&joined, from) {
                let i = string_at(at);
                escaped[i] = true;
                from = starts.get(i + 1).copied().unwrap_or(joined.len());
            }
            escaped
        });

        let mut emails = emails.into_iter().peekable();
        let mut texts: Vec<Filtered<'_>> = Vec::with_capacity(strings.len());
        let mut any_changed = false;
        for (i, text) in strings.into_iter().enumerate() {
            let mut splicer = Splicer::new(&text);
            while let Some((_, email)) = emails.next_if(|(at, _)| *at == i) {
                splicer.replace(email, EMAIL_REPLACEMENT);
            }
            let filtered = if escaped[i] {
                match self.filter_text(&text) {
                    Cow::Owned(new) => Some(new),
                    Cow::Borrowed(_) => None,
                }
            } else if numbers[i] {
                apply_builtins(&text)
            } else {
                splicer.into_changed()
            };
            any_changed |= filtered.is_some();
            texts.push(Filtered {
                changed: filtered.is_some(),
                text: filtered.map_or(text, Cow::Owned),
                done: escaped[i],
            });
        }

        // The custom rules: a rule that matches nowhere in the joined strings, as the
        // built-ins left them, is skipped for every string that no earlier custom rule
        // changed.
        if !self.custom.is_empty() {
            let (joined, starts) = if any_changed {
                join(texts.iter().map(|t| &*t.text))
            } else {
                (joined, starts)
            };
            // What was ASCII still is, since the built-ins write ASCII. (A string with an
            // escape has had the custom rules too, whose replacement may not be; that costs
            // speed only, as the pieces are no more than a way to search faster.)
            let pieces = if ascii {
                std::iter::once(0..joined.len()).collect()
            } else {
                ascii_pieces(&joined, &starts)
            };
            let active: Vec<bool> = self
                .custom
                .iter()
                .map(|rule| {
                    rule.may_anchor
                        || pieces
                            .iter()
                            .any(|p| rule.regex.is_match(&joined[p.clone()]))
                })
                .collect();
            if active.contains(&true) {
                for t in texts.iter_mut().filter(|t| !t.done) {
                    t.changed |= self.apply_custom(&mut t.text, Some(&active));
                }
            }
        }

        texts
            .into_iter()
            .map(|t| t.changed.then(|| t.text.into_owned()))
            .collect()
    }
}

/// A string of a document on its way through [`PrivacyFilter::filter_texts`].
struct Filtered<'a> {
    text: Cow<'a, str>,
    /// Some rule changed `text`.
    changed: bool,
    /// Every rule has run on `text` already.
    done: bool,
}

/// Runs one rule over `text` as it reads with its escapes decoded, and replaces the text each
/// match was read from; `None` when the rule matched nowhere.
fn apply_unescaped(text: &str, step: Step<'_>) -> Option<String> {
    let decoded = Unescaped::of(text);
    let mut out = Splicer::new(text);
    step.for_each_match(&decoded.text, |found, with| {
        out.replace(decoded.source_range(found), with);
    });
    out.into_changed()
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

/// Splits the joined strings of a document into pieces that each are either one string holding
/// a character beyond ASCII, or a stretch of strings that are ASCII, newlines included.
///
/// A pattern with a Unicode word boundary (`\b`, the default) makes the regex engine leave its
/// fast automaton for a slower one at the first byte beyond ASCII it reads, for the rest of the
/// search. Searched piece by piece, only the strings that hold such a byte are searched slowly,
/// and a match inside one string is still found, since every string lies inside one piece.
fn ascii_pieces(joined: &str, starts: &[usize]) -> Vec<Range<usize>> {
    let bytes = joined.as_bytes();
    let mut pieces = Vec::new();
    let mut from = 0;
    while let Some(at) = find_flagged(bytes, from, has_high) {
        let i = starts.partition_point(|&start| start <= at) - 1;
        let end = starts.get(i + 1).copied().unwrap_or(joined.len());
        if from < starts[i] {
            pieces.push(from..starts[i]);
        }
        pieces.push(starts[i]..end);
        from = end;
    }
    if from < joined.len() || pieces.is_empty() {
        pieces.push(from..joined.len());
    }
    pieces
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
