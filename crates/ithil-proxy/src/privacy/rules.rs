//! The three built-in rules: how email addresses, social security numbers and card numbers are
//! found.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{NoExpand, Regex};

use super::scan::{find_char, next_digit};
use super::{CARD_REPLACEMENT, EMAIL_REPLACEMENT, SSN_REPLACEMENT, Splicer};

/// The fewest digits a card number has.
pub(super) const CARD_MIN_DIGITS: usize = 13;

/// The most digits a card number has.
pub(super) const CARD_MAX_DIGITS: usize = 19;

/// The only length at which a card number may start with `1`: UATP airline cards have 15
/// digits. Millisecond (13 digits), microsecond (16) and nanosecond (19) Unix timestamps, which
/// start with `1` until 2033, never have it.
const UATP_DIGITS: usize = 15;

/// The fewest digits of a group of a card number written with separators. Dates (`2024-05-06`)
/// and phone numbers (`+1 415 …`, `01 23 45 67 89`) have groups of one or two digits; card
/// numbers are printed in groups of three to six.
const CARD_MIN_GROUP: usize = 3;

/// The email rule for ASCII text, compiled once per process. The regex engine finds it fast by
/// searching for the `@` first. Social security and card numbers are found by hand-written
/// scans instead ([`for_each_ssn`], [`for_each_digit_run`]): their patterns have no literal to
/// search for, and a scan that skips eight bytes at a time is several times faster than an
/// automaton.
static EMAIL_ASCII: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}")
        .expect("the built-in email pattern compiles")
});

/// The email rule for text that is not all ASCII: letters, combining marks and digits of any
/// script in the local part and the domain, as internationalised addresses (RFC 6531) and
/// domain names have them. On ASCII text it finds exactly what [`EMAIL_ASCII`] finds, so which
/// of the two runs is a matter of speed only: the ASCII automaton is smaller.
static EMAIL_UNICODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\p{L}\p{M}\p{N}._%+\-]+@(?:[\p{L}\p{M}\p{N}\-]+\.)+\p{L}[\p{L}\p{M}]+")
        .expect("the built-in email pattern compiles")
});

/// Compiles the email rules now rather than inside the first tool call.
pub(super) fn compile() {
    LazyLock::force(&EMAIL_ASCII);
    LazyLock::force(&EMAIL_UNICODE);
}

/// The email rule to run over text that is all ASCII or not (see [`EMAIL_UNICODE`]).
pub(super) fn email_regex(ascii: bool) -> &'static Regex {
    if ascii { &EMAIL_ASCII } else { &EMAIL_UNICODE }
}

/// Runs the built-in rules over `text`; `None` when none matched.
pub(super) fn apply_builtins(text: &str) -> Option<String> {
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

fn redact_emails(text: &str) -> Option<String> {
    if !text.contains('@') {
        return None;
    }
    match email_regex(text.is_ascii()).replace_all(text, NoExpand(EMAIL_REPLACEMENT)) {
        Cow::Borrowed(_) => None,
        Cow::Owned(new) => Some(new),
    }
}

fn redact_ssns(text: &str) -> Option<String> {
    let mut out = Splicer::new(text);
    for_each_ssn(text, |ssn| out.replace(ssn, SSN_REPLACEMENT));
    out.into_changed()
}

fn redact_cards(text: &str) -> Option<String> {
    let mut out = Splicer::new(text);
    for_each_card(text, |card| out.replace(card, CARD_REPLACEMENT));
    out.into_changed()
}

/// Calls `f` with every email address in `text`, left to right.
pub(super) fn for_each_email(text: &str, mut f: impl FnMut(Range<usize>)) {
    if text.contains('@') {
        for m in email_regex(text.is_ascii()).find_iter(text) {
            f(m.range());
        }
    }
}

/// Calls `f` with every `ddd-dd-dddd` in `text` that is not glued to more digits, left to
/// right.
pub(super) fn for_each_ssn(text: &str, f: impl FnMut(Range<usize>)) {
    ssn_search(text, true, f);
}

/// Calls `f` with every `ddd-dd-dddd` in `text`, glued to more digits or not.
pub(super) fn for_each_ssn_shape(text: &str, f: impl FnMut(Range<usize>)) {
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

/// Calls `f` with every card number in `text`, left to right.
pub(super) fn for_each_card(text: &str, mut f: impl FnMut(Range<usize>)) {
    for_each_digit_run(text, |run| {
        for span in card_spans(&text.as_bytes()[run.clone()]) {
            f(run.start + span.start..run.start + span.end);
        }
    });
}

/// The length of the space at `bytes[at..]`, if one starts there: an ASCII space, or one of the
/// Unicode spaces that typesetting puts between groups of digits (no-break, figure, thin and
/// narrow no-break space).
fn space_at(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at..)? {
        [b' ', ..] => Some(1),
        [0xC2, 0xA0, ..] => Some(2),
        [0xE2, 0x80, 0x87 | 0x89 | 0xAF, ..] => Some(3),
        _ => None,
    }
}

/// Calls `f` with every maximal run of at least 13 ASCII digits in which one dash, or one or
/// more spaces (see [`space_at`]), may stand between two digits, left to right.
pub(super) fn for_each_digit_run(text: &str, mut f: impl FnMut(Range<usize>)) {
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
            let mut next = i;
            if bytes.get(next) == Some(&b'-') {
                next += 1;
            } else {
                while let Some(len) = space_at(bytes, next) {
                    next += len;
                }
            }
            if next == i || !bytes.get(next).is_some_and(u8::is_ascii_digit) {
                break;
            }
            i = next;
        }
        if digits >= CARD_MIN_DIGITS {
            f(start..i);
        }
    }
}

/// The card numbers in a run of digit groups and separators, as ranges of `run`.
///
/// A group of fewer than three digits is never part of a card number written with separators,
/// so it splits the run. In each part, the candidates are the spans of whole groups (never
/// splitting digits that touch), tried from each group on, longest first, left to right
/// without overlap.
fn card_spans(run: &[u8]) -> Vec<Range<usize>> {
    // The digit groups: maximal stretches of digits between separators.
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i < run.len() {
        let start = i;
        while i < run.len() && run[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(start..i);
        while i < run.len() && !run[i].is_ascii_digit() {
            i += 1;
        }
    }

    let mut spans = Vec::new();
    let mut digits = Vec::with_capacity(CARD_MAX_DIGITS);
    let joins = |group: &Range<usize>| group.len() >= CARD_MIN_GROUP;
    let mut first = 0;
    'from: while first < groups.len() {
        // Longest first: take as many groups as fit in 19 digits, then shrink.
        let mut last = first;
        let mut count = groups[first].len();
        if joins(&groups[first]) {
            while last + 1 < groups.len()
                && joins(&groups[last + 1])
                && count + groups[last + 1].len() <= CARD_MAX_DIGITS
            {
                last += 1;
                count += groups[last].len();
            }
        }
        if count <= CARD_MAX_DIGITS {
            while count >= CARD_MIN_DIGITS {
                digits.clear();
                for group in &groups[first..=last] {
                    digits.extend_from_slice(&run[group.clone()]);
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
/// to 6 (or 1 for exactly 15 digits, the UATP range), and a valid Luhn checksum.
pub(super) fn is_card_number(digits: &[u8]) -> bool {
    let len = digits.len();
    if !(CARD_MIN_DIGITS..=CARD_MAX_DIGITS).contains(&len) || !network_digit(digits[0], len) {
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

/// Tells whether a card number of `len` digits may start with `first`.
fn network_digit(first: u8, len: usize) -> bool {
    (b'2'..=b'6').contains(&first) || (first == b'1' && len == UATP_DIGITS)
}

/// Tells whether a JSON number token (`-4111111111111111`, `4111111111111111.0`,
/// `4.111111111111111e15`) is a card number: its value is an integer whose decimal digits, sign
/// left aside, pass [`is_card_number`]. A token that is not a JSON number is not one.
#[inline]
pub(super) fn is_card_number_token(token: &[u8]) -> bool {
    // Most numbers are short, and without an exponent a value has no more digits than its
    // token has characters.
    (token.len() >= CARD_MIN_DIGITS || token.iter().any(|&b| b | 0x20 == b'e'))
        && is_long_card_number_token(token)
}

fn is_long_card_number_token(token: &[u8]) -> bool {
    let token = token.strip_prefix(b"-").unwrap_or(token);
    let (mantissa, exponent) = match token.iter().position(|&b| b == b'e' || b == b'E') {
        Some(e) => (&token[..e], Some(&token[e + 1..])),
        None => (token, None),
    };
    if exponent.is_none() && mantissa.len() < CARD_MIN_DIGITS {
        return false;
    }
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 < mantissa.len() => (&mantissa[..dot], &mantissa[dot + 1..]),
        Some(_) => return false,
        None => (mantissa, &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return false;
    }
    let Some(exponent) = exponent.map_or(Some(0), parse_exponent) else {
        return false;
    };

    // The value is `significant × 10^scale`, with `significant` the digits of the mantissa
    // without leading zeros. It is an integer of `len` digits when the digits the scale cuts
    // off are zeros.
    let all = || int.iter().chain(frac).copied();
    let leading = all().take_while(|&d| d == b'0').count();
    let significant = int.len() + frac.len() - leading;
    if significant == 0 {
        return false;
    }
    let trailing = all().rev().take_while(|&d| d == b'0').count();
    // Lengths and exponents are far below `i64::MAX / 4` (see `parse_exponent`).
    let scale = exponent - i64::try_from(frac.len()).unwrap_or(i64::MAX / 4);
    let len = i64::try_from(significant).unwrap_or(i64::MAX / 4) + scale;
    let cut = usize::try_from(-scale).unwrap_or(0);
    if !(CARD_MIN_DIGITS as i64..=CARD_MAX_DIGITS as i64).contains(&len) || cut > trailing {
        return false;
    }

    let mut digits = [b'0'; CARD_MAX_DIGITS];
    let len = usize::try_from(len).unwrap_or(0);
    for (slot, d) in digits
        .iter_mut()
        .zip(all().skip(leading).take(significant - cut))
    {
        *slot = d;
    }
    is_card_number(&digits[..len])
}

/// Reads the exponent of a JSON number; one too large to matter is clamped to ±10⁹, which no
/// 13 to 19 digit integer can have unless its mantissa is a billion digits long.
fn parse_exponent(exponent: &[u8]) -> Option<i64> {
    let (negative, digits) = match exponent {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        value = (value * 10 + i64::from(d - b'0')).min(1_000_000_000);
    }
    Some(if negative { -value } else { value })
}

/// Tells whether a JSON number held as a double is a card number.
///
/// Below 2⁵³ every integer is exact, so its digits are checked. Above, a double no longer tells
/// which of the integers near it it was read from, and about one in ten of those passes the
/// checksum: an integral double of 16 to 19 digits with a card's first digit counts as one.
pub(super) fn is_card_number_f64(value: f64) -> bool {
    /// 2⁵³, the first integer a double cannot tell from its neighbour.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let value = value.abs();
    if !value.is_finite() || value.fract() != 0.0 || value >= 1e19 {
        return false;
    }
    // The value is integral, non-negative and below 10^19 < 2^64, so the cast is exact.
    let integer = value as u64;
    let decimal = Decimal::of(integer);
    let digits = decimal.digits();
    if value < EXACT {
        is_card_number(digits)
    } else {
        network_digit(digits[0], digits.len())
    }
}

/// The decimal digits of a `u64`, without allocating.
pub(super) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(super) fn of(mut n: u64) -> Self {
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

    pub(super) fn digits(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}
