//! The privacy filter's tests: the shared dataset, custom rules, JSON handling, and the
//! joined-strings shortcut against filtering string by string. The shapes of the built-in rules
//! are tested in `rules`, escapes and bodies of several JSON texts in `escapes`.

mod escapes;
mod rules;

use std::path::PathBuf;

use serde_json::json;

use super::json::is_card_value;
use super::*;

/// The JSONPlaceholder dataset, as the repository bundles it in `examples/`.
fn dataset() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/placeholder-db.json");
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
        // Beyond ASCII, where the custom rules' word boundaries search piece by piece.
        odd.push(format!("é{pad} Qui sunt EMP-004211 x"));
        odd.push(format!("Qui sunt{pad} ACC0012345678 ü"));
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
        Value::Number(n) if is_card_value(n) => Value::String(CARD_REPLACEMENT.to_owned()),
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
