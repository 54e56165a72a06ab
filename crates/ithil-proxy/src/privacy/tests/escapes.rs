//! Escapes read as what they stand for, and bodies of several JSON texts.

use serde_json::json;

use super::super::escapes::{Unescaped, find_escape};
use super::super::json::unescape;
use super::super::rules::{for_each_card, for_each_email};
use super::*;

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
fn an_escaped_email_in_json_lines_is_redacted() {
    // Review finding: `{"email":"john\u0040example.com"}\n{"b":1}` reached the agent
    // unredacted, since only a body that parses as one JSON document had its escapes decoded.
    let filter = PrivacyFilter::default();
    let body = "{\"email\":\"john\\u0040example.com\"}\n{\"b\":1}";

    let filtered = filter.filter_body(body);

    assert_eq!(filtered, "{\"email\":\"[EMAIL REDACTED]\"}\n{\"b\":1}");
    for line in filtered.lines() {
        serde_json::from_str::<Value>(line).expect("each line stays valid JSON");
    }
}

#[test]
fn concatenated_json_and_json_text_sequences_are_filtered_as_json() {
    let filter = PrivacyFilter::default();
    assert_eq!(
        filter.filter_body(r#"{"a":"bob@example.com"}{"b":4111111111111111}["x\u0040y.io"]"#),
        r#"{"a":"[EMAIL REDACTED]"}{"b":"[CARD REDACTED]"}["[EMAIL REDACTED]"]"#
    );
    // RFC 7464: each text after a record separator.
    assert_eq!(
        filter.filter_body("\x1e{\"a\":\"x\\u0040y.io\"}\n\x1e[-4111111111111111]\n"),
        "\x1e{\"a\":\"[EMAIL REDACTED]\"}\n\x1e[\"[CARD REDACTED]\"]\n"
    );
    // Pretty-printed documents one after the other.
    assert_eq!(
        filter.filter_body("{\n  \"a\": \"bob@example.com\"\n}\n{\n  \"b\": 1\n}\n"),
        "{\n  \"a\": \"[EMAIL REDACTED]\"\n}\n{\n  \"b\": 1\n}\n"
    );
}

#[test]
fn json_lines_with_lines_that_are_not_json_are_filtered_line_by_line() {
    // A log of JSON Lines whose last line was cut off, with a plain line in between.
    let filter = employee_rules();
    let body = "{\"email\":\"john\\u0040example.com\",\"card\":4111111111111111.0}\r\n\
                plain line, ann@example.org and EMP-004211\n\
                \x1e[\"EMP-004211\", 1]\n\
                {\"cut\": \"ada\\u0040example.com";

    let filtered = filter.filter_body(body);

    assert_eq!(
        filtered,
        "{\"email\":\"[EMAIL REDACTED]\",\"card\":\"[CARD REDACTED]\"}\r\n\
         plain line, [EMAIL REDACTED] and [EMPLOYEE ID REDACTED]\n\
         \x1e[\"[EMPLOYEE ID REDACTED]\", 1]\n\
         {\"cut\": \"[EMAIL REDACTED]"
    );
}

#[test]
fn a_sequence_of_bare_numbers_is_filtered_as_text() {
    // Two numbers are more likely text than a JSON sequence: no quotes are added.
    let filter = PrivacyFilter::default();
    assert_eq!(
        filter.filter_body("4111111111111111 5555555555554444"),
        "[CARD REDACTED] [CARD REDACTED]"
    );
    assert_eq!(
        filter.filter_body("4111111111111111\n{\"a\":1}"),
        "[CARD REDACTED]\n{\"a\":1}"
    );
}

#[test]
fn json_escaped_personal_data_in_text_is_redacted() {
    // Review finding: text that is not JSON spelled `@` as `\u0040` and `-` as `\u002d`.
    let filter = PrivacyFilter::default();
    for (escaped, redacted) in [
        (r"mail john\u0040example.com.", "mail [EMAIL REDACTED]."),
        (r"mail JOHN\u0040EXAMPLE\u002ECOM", "mail [EMAIL REDACTED]"),
        (r"john\u002esmith@example.com", "[EMAIL REDACTED]"),
        (r"ssn 123\u002d45\u002d6789", "ssn [SSN REDACTED]"),
        (
            r"card 4111\u00201111\u00201111\u00201111",
            "card [CARD REDACTED]",
        ),
        (r"card \u0034111111111111111", "card [CARD REDACTED]"),
        // Escaped twice, as in JSON inside a JSON string, and more.
        (r"john\\u0040example.com", "[EMAIL REDACTED]"),
        (r"john\\\\u0040example.com", "[EMAIL REDACTED]"),
        // A surrogate pair reads as one character, a lone one as U+FFFD.
        (
            r"\ud83d\ude00 bob\u0040example.com \ud800",
            r"\ud83d\ude00 [EMAIL REDACTED] \ud800",
        ),
    ] {
        assert_eq!(filter.filter_text(escaped), redacted, "{escaped}");
        assert_eq!(filter.filter_body(escaped), redacted, "{escaped}");
    }
    // Escapes that no rule hits stay as written, and so do malformed ones.
    for kept in [
        r"caf\u00e9 \u0040home",
        r"\u00zz \u12 \\ \u",
        r"path C:\users\bob",
    ] {
        assert_eq!(filter.filter_text(kept), kept);
    }
}

#[test]
fn a_json_string_that_holds_escaped_json_is_redacted() {
    // A downstream that returns JSON serialized inside a JSON string.
    let filter = PrivacyFilter::default();
    let body = concat!(
        r#"{"payload":"{\"email\":\"john\\u0040example.com\","#,
        r#"\"n\":\"4111\\u002d1111\\u002d1111\\u002d1111\"}"}"#
    );

    let filtered = filter.filter_body(body);

    let value: Value = serde_json::from_str(&filtered).expect("still valid JSON");
    assert_eq!(
        value["payload"],
        r#"{"email":"[EMAIL REDACTED]","n":"[CARD REDACTED]"}"#
    );
    let mut tree: Value = serde_json::from_str(body).unwrap();
    assert!(filter.filter_json(&mut tree));
    assert_eq!(tree, value);

    // `\u005c` is a backslash too.
    assert_eq!(
        filter.filter_body(r#"["john\u005cu0040example.com", "a\u005C\u005cu0040b.io"]"#),
        r#"["[EMAIL REDACTED]", "[EMAIL REDACTED]"]"#
    );
}

#[test]
fn custom_rules_read_escaped_text_too_and_run_once() {
    let filter = PrivacyFilter::new(&[
        CustomRule::new(r"EMP-\d{6}", "[EMP]"),
        CustomRule::new(r"id=(\d+)", "id=<$1>"),
        CustomRule::new("secret", "[secret]"),
        CustomRule::new(r"\[EMAIL REDACTED\]", "[MAIL]"),
    ])
    .unwrap();

    assert_eq!(
        filter.filter_text(r"EMP\u002d004211 id\u003d42 a secret x\u0040y.io \u00e9"),
        r"[EMP] id=<42> a [secret] [MAIL] \u00e9"
    );
    assert_eq!(
        filter.filter_body(r#"["EMP\\u002d004211", "secret \\u00e9"]"#),
        r#"["[EMP]", "[secret] \\u00e9"]"#
    );
}

#[test]
fn decoded_ranges_map_back_to_the_escapes_they_were_read_from() {
    let source = r"ab\u0040c\\u00e9d\ud83d\ude00e";
    let decoded = Unescaped::of(source);
    assert_eq!(decoded.text, "ab@cé d😀e".replace(' ', ""));

    let map = |text: &str| {
        let start = decoded.text.find(text).unwrap();
        &source[decoded.source_range(start..start + text.len())]
    };
    assert_eq!(map("ab"), "ab");
    assert_eq!(map("@"), r"\u0040");
    assert_eq!(map("b@c"), r"b\u0040c");
    assert_eq!(map("é"), r"\\u00e9");
    assert_eq!(map("d😀e"), r"d\ud83d\ude00e");
    assert_eq!(map("e"), "e");

    let plain = Unescaped::of("no escapes");
    assert!(matches!(plain.text, Cow::Borrowed(_)));
    assert_eq!(plain.source_range(3..10), 3..10);
}

/// Pieces of text that mean something to one of the rules, and some that mean trouble.
fn fragment() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        prop::sample::select(vec![
            "bob@example.com",
            "jöhn@exämple.com",
            "@",
            "\\u0040",
            "\\\\u0040",
            "\\u002d",
            "\\u0020",
            "\\ud83d",
            "\\ude00",
            "\\u00",
            "\\",
            "\\\\",
            "\"",
            "{\"a\":",
            "}",
            "[",
            "]",
            "\n",
            "\r\n",
            "\u{1e}",
            " ",
            "  ",
            "\u{a0}",
            "\u{202f}",
            "-",
            "--",
            ".",
            "4111",
            "1111",
            "4111111111111111",
            "135410014004955",
            "123-45-6789",
            "2024-05-01",
            "1700000000004",
            "e15",
            "EMP-004211",
            "é",
            "😀",
        ])
        .prop_map(str::to_owned),
        "[0-9a-z .@\\\\-]{0,6}",
    ]
}

fn assembled() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop::collection::vec(fragment(), 0..24).prop_map(|parts| parts.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn no_email_or_card_number_can_be_read_in_filtered_text(text in assembled()) {
        let filter = PrivacyFilter::default();
        let filtered = filter.filter_text(&text);
        let reads = Unescaped::of(&filtered);
        let mut found = Vec::new();
        for_each_email(&reads.text, |m| found.push(m));
        for_each_card(&reads.text, |m| found.push(m));
        proptest::prop_assert!(found.is_empty(), "{:?} in {:?}", found, reads.text);
        let _ = filter.filter_body(&text);
        let _ = employee_rules().filter_body(&text);
    }

    #[test]
    fn json_documents_and_json_lines_stay_valid_and_agree_with_string_by_string(
        strings in proptest::collection::vec(assembled(), 0..6),
    ) {
        let filter = employee_rules();
        let value = Value::from(strings.clone());
        let expected = one_by_one(&filter, &value);

        let body = serde_json::to_string(&value).unwrap();
        let filtered: Value = serde_json::from_str(&filter.filter_body(&body)).unwrap();
        proptest::prop_assert_eq!(&filtered, &expected);

        let lines: Vec<String> = strings
            .iter()
            .map(|s| serde_json::to_string(&json!({ "s": s })).unwrap())
            .collect();
        let body = lines.join("\n");
        let filtered = filter.filter_body(&body);
        for (line, s) in filtered.lines().zip(&strings) {
            let line: Value = serde_json::from_str(line).unwrap();
            proptest::prop_assert_eq!(&line["s"], &one_by_one(&filter, &json!(s)));
        }
    }
}

#[test]
fn the_escape_search_finds_the_first_backslash_u_at_every_offset() {
    let text = r"a\nb\\c\u00e9d\\\ue\n\tx\uy\\u";
    for len in 0..=text.len() {
        let text = &text[..len];
        for from in 0..=text.len() {
            let naive = text[from..].find(r"\u").map(|i| from + i);
            assert_eq!(find_escape(text, from), naive, "{text:?} from {from}");
        }
    }
    // A `\u` across every word boundary.
    for pad in 0..20 {
        let text = format!("{}\\u0040", "]".repeat(pad));
        assert_eq!(find_escape(&text, 0), Some(pad));
    }
}
