//! The shapes the built-in rules find and the ones they leave: card numbers in text and as
//! JSON numbers, social security numbers, email addresses.

use serde_json::json;

use super::super::json::is_card_value;
use super::super::rules::{Decimal, email_regex, is_card_number, is_card_number_token};
use super::super::scan::{find_flagged, has_byte, next_digit};
use super::*;

#[test]
fn luhn_invalid_numbers_and_timestamps_survive() {
    let filter = PrivacyFilter::default();
    for kept in [
        "order 4111111111111112 shipped",
        "order 4111 1111 1111 1112 shipped",
        "created 1700000000000",
        "created 1700000000004 (a Luhn-valid millisecond timestamp)",
        "nanos 1715000000000000002 (Luhn-valid too)",
        "micros 1715000000000004 (Luhn-valid too)",
        "call 555-0103 or +1 415 555 2671",
        "2024-05-06T12:00:00Z",
        "id 12345678901234567890123456",
        "EMP-004211",
    ] {
        assert_eq!(filter.filter_text(kept), kept);
        assert!(matches!(filter.filter_text(kept), Cow::Borrowed(_)));
    }
    let body = r#"{"createdAt":1700000000000,"order":4111111111111112,"n":-4111111111111112,
        "f":4111111111111111.5,"g":4.1111111111111115e15,"t":1.7e12,"h":1e400,"z":-0.0}"#;
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
fn card_numbers_written_as_json_integers_become_strings() {
    let filter = PrivacyFilter::default();
    let body = r#"{"card":4111111111111111,"list":[5555555555554444, 7],"f":4111111111111111.5}"#;

    let filtered = filter.filter_body(body);

    assert_eq!(
        filtered,
        r#"{"card":"[CARD REDACTED]","list":["[CARD REDACTED]", 7],"f":4111111111111111.5}"#
    );
    let mut value: Value = serde_json::from_str(body).unwrap();
    assert!(filter.filter_json(&mut value));
    assert_eq!(value["card"], CARD_REPLACEMENT);
    assert_eq!(value["list"], json!([CARD_REPLACEMENT, 7]));
    assert_eq!(value["f"], 4111111111111111.5);
}

#[test]
fn card_numbers_written_as_negative_fractional_or_exponent_json_numbers_become_strings() {
    // Review finding: `-4111111111111111`, `4111111111111111.0` and `4.111111111111111e15`
    // reached the agent, since only all-digit number tokens were checked.
    let filter = PrivacyFilter::default();
    for number in [
        "-4111111111111111",
        "4111111111111111.0",
        "4111111111111111.000",
        "4.111111111111111e15",
        "4.111111111111111E+15",
        "4111111111111111e0",
        "41111111111111110e-1",
        "0.4111111111111111e16",
        "-5.555555555554444e15",
        "411111111111111.1e1",
    ] {
        let body = format!(r#"{{"card":{number},"n":7}}"#);

        let filtered = filter.filter_body(&body);

        assert_eq!(filtered, r#"{"card":"[CARD REDACTED]","n":7}"#, "{number}");
        let mut value: Value = serde_json::from_str(&body).unwrap();
        assert!(filter.filter_json(&mut value), "{number}");
        assert_eq!(value["card"], CARD_REPLACEMENT, "{number}");
    }
}

#[test]
fn number_tokens_are_cards_only_when_their_value_is_a_card_integer() {
    for (token, card) in [
        ("4111111111111111", true),
        ("-4111111111111111", true),
        ("4111111111111111.0", true),
        ("4.111111111111111e15", true),
        ("4.111111111111111e+15", true),
        ("41111111111111110000e-4", true),
        ("4111111111111111.5", false),
        ("4.1111111111111115e15", false),
        ("4.111111111111111e14", false),
        ("4.111111111111111e16", false),
        ("4111111111111111e-400", false),
        ("4e999999999999999999999", false),
        ("0.0000e20", false),
        ("0", false),
        ("1700000000004", false),
        ("1.700000000004e12", false),
        ("1.35410014004955e14", true),
        ("4111111111111112", false),
        ("true", false),
        ("-", false),
        ("4111111111111111.", false),
        ("4111111111111111e", false),
    ] {
        assert_eq!(is_card_number_token(token.as_bytes()), card, "{token}");
    }
}

#[test]
fn doubles_too_large_to_be_exact_count_as_cards_when_they_start_like_one() {
    let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
    assert!(is_card_value(&number("4111111111111111.0")));
    assert!(!is_card_value(&number("4111111111111112.0")));
    assert!(!is_card_value(&number("4111111111111111.5")));
    // 19 digits as a double: the digits the checksum needs are gone.
    assert!(is_card_value(&number("4000056655665556015.0")));
    assert!(is_card_value(&number("-4.000056655665556e18")));
    assert!(
        !is_card_value(&number("9.1e15")),
        "no network starts with 9"
    );
    assert!(!is_card_value(&number("1e19")), "20 digits");
    assert!(!is_card_value(&number("1.7e12")));
    assert!(is_card_value(&number("-4111111111111111")));
    assert!(!is_card_value(&number("-7")));
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
        "a leading 1 is a card network only at 15 digits"
    );
    assert!(!is_card_number(b"1715000000000004"), "16 digits with a 1");
    assert!(
        !is_card_number(b"1715000000000000002"),
        "19 digits with a 1"
    );
    assert!(is_card_number(b"135410014004955"), "UATP, 15 digits");
    assert!(!is_card_number(b"135410014004956"));
    assert!(!is_card_number(b"411111111111"), "12 digits");
    assert!(!is_card_number(b"41111111111111111111"), "20 digits");
    assert_eq!(Decimal::of(u64::MAX).digits(), b"18446744073709551615");
    assert_eq!(Decimal::of(0).digits(), b"0");
}

#[test]
fn a_luhn_valid_15_digit_uatp_number_is_redacted() {
    // Review finding: `135410014004955` (UATP, 15 digits starting with 1) passed, since only
    // first digits 2 to 6 counted.
    let filter = PrivacyFilter::default();
    for uatp in ["135410014004955", "1354 10014 004955", "1354-1001-4004-955"] {
        assert_eq!(
            text(&filter, &format!("uatp {uatp}.")),
            "uatp [CARD REDACTED].",
            "{uatp}"
        );
    }
    assert_eq!(
        filter.filter_body(r#"{"uatp":135410014004955}"#),
        r#"{"uatp":"[CARD REDACTED]"}"#
    );
    // Luhn-valid timestamps that start with 1 keep their 13, 16 or 19 digits.
    for kept in ["1700000000004", "1715000000000004", "1715000000000000002"] {
        assert_eq!(text(&filter, kept), kept);
        assert!(matches!(
            filter.filter_body(&format!(r#"{{"t":{kept}}}"#)),
            Cow::Borrowed(_)
        ));
    }
}

#[test]
fn cards_with_several_spaces_between_groups_are_redacted() {
    // Review finding: `4111  1111  1111  1111` passed, since one space only joined groups.
    let filter = PrivacyFilter::default();
    for card in [
        "4111  1111  1111  1111",
        "4111    1111 1111   1111",
        "3782  822463  10005",
        "4111\u{a0}1111\u{a0}1111\u{a0}1111",
        "4111\u{202f}1111\u{202f}1111\u{202f}1111",
        "4111\u{2009}1111\u{2007}1111 \u{a0}1111",
    ] {
        assert_eq!(
            text(&filter, &format!("card {card}.")),
            "card [CARD REDACTED].",
            "{card:?}"
        );
    }
    assert_eq!(
        text(&filter, "4111  1111  1111  1111  5555 5555 5555 4444"),
        "[CARD REDACTED]  [CARD REDACTED]"
    );
}

#[test]
fn phone_numbers_timestamps_dates_and_order_numbers_survive_the_separators() {
    let filter = PrivacyFilter::default();
    for kept in [
        // Two dates side by side read as the Luhn-valid 2024050120240505; their groups of two
        // digits keep them dates.
        "from 2024-05-01 2024-05-05",
        "2024-05-01  2024-05-05",
        "2024-05-06 2024-06-01 2024-07-01",
        "2024-05-01 12:00:00 2024-05-05 13:00:00",
        // French phone numbers, whose digits after the first group read as a card.
        "06 68 20 34 17 06 68 48 78 70",
        "+1  415  555  2671",
        "call 555-0103, 555-0104 or +1 415 555 2671",
        "1700000000004  1700000000004",
        "1715000000000004 1715000000000004",
        "orders 20240506001  20240506002",
        "order 4111  1111  1111  1112",
        // One dash is a separator, two are not.
        "4111--1111--1111--1111",
    ] {
        assert_eq!(text(&filter, kept), kept, "{kept}");
    }
}

#[test]
fn internationalised_email_addresses_are_redacted() {
    // Review finding: `jöhn@exämple.com` passed, since the rule knew ASCII letters only.
    let filter = PrivacyFilter::default();
    for email in [
        "jöhn@exämple.com",
        "jöhn@example.com",
        "john@exämple.com",
        "jo\u{308}hn@exa\u{308}mple.com",
        "用户@例子.广告",
        "пользователь@пример.рф",
        "δοκιμή@παράδειγμα.δοκιμή",
        "उपयोगकर्ता@उदाहरण.भारत",
    ] {
        assert_eq!(
            text(&filter, &format!("mail: {email}, thanks")),
            "mail: [EMAIL REDACTED], thanks",
            "{email}"
        );
        let body = serde_json::to_string(&json!([email, "bob@example.com"])).unwrap();
        assert_eq!(
            filter.filter_body(&body),
            r#"["[EMAIL REDACTED]","[EMAIL REDACTED]"]"#
        );
    }
    // Text with letters beyond ASCII elsewhere still finds ASCII addresses, and still leaves
    // what is not an address.
    assert_eq!(
        text(&filter, "Grüße, bob@example.com; @hándle, user@localhost"),
        "Grüße, [EMAIL REDACTED]; @hándle, user@localhost"
    );
}

#[test]
fn both_email_patterns_find_the_same_in_ascii_text() {
    let db = dataset();
    let mut strings = Vec::new();
    collect_strings(&db, &mut strings);
    strings.extend([
        "a.b+tag@mail.example.co.uk,x@y.io",
        "@handle and user@localhost",
        "x@y.z9 ok@a-b.cd 1@2.34",
    ]);
    for s in strings {
        assert!(s.is_ascii(), "{s}");
        let ascii: Vec<_> = email_regex(true).find_iter(s).map(|m| m.range()).collect();
        let unicode: Vec<_> = email_regex(false).find_iter(s).map(|m| m.range()).collect();
        assert_eq!(ascii, unicode, "{s}");
    }
}
