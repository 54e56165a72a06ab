//! Privacy filter throughput on the 200 KB comments response of the shared JSONPlaceholder
//! dataset (pretty-printed as json-server serves it, one email address per comment), with the
//! built-in rules alone and with ten custom rules after them.
//!
//! Baseline in the same run: parsing the body into a `serde_json::Value` and serializing it
//! again, the least a filter that rebuilds the document would pay before running any rule.
//! A second input, the todos (no email, no long number), shows the cost when nothing matches.
//! Two variants of the comments show the paths the baseline body does not take: the same
//! comments as JSON Lines (one compact comment per line), and with one letter beyond ASCII,
//! which makes the email rule run its Unicode pattern over the whole body.
//!
//! Run: `cargo bench -p ithil-proxy --bench privacy -- --warm-up-time 1 --measurement-time 3`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ithil_proxy::privacy::{CustomRule, PrivacyFilter};

/// Where the shared test data lives: `ITHIL_SHARED_DATA`, else `shared/data` beside the checkout.
fn shared_data(name: &str) -> String {
    let dir = std::env::var_os("ITHIL_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Ten rules of the kinds operators configure: ids, account numbers, keys, addresses.
fn custom_rules() -> Vec<CustomRule> {
    [
        (r"EMP-\d{6}", "[EMPLOYEE ID REDACTED]"),
        (r"ACC\d{10}", "[ACCOUNT REDACTED]"),
        (r"\b[A-Z]{2}\d{2}[A-Z0-9]{12,30}\b", "[IBAN REDACTED]"),
        (r"\bAKIA[0-9A-Z]{16}\b", "[AWS KEY REDACTED]"),
        (r"\bsk-[A-Za-z0-9]{32,}\b", "[API KEY REDACTED]"),
        (r"(?i)\bpassword\s*[:=]\s*\S+", "password=[REDACTED]"),
        (r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b", "[IP REDACTED]"),
        (r"\bPASSPORT-[A-Z0-9]{9}\b", "[PASSPORT REDACTED]"),
        (r"\b555-01\d\d\b", "[PHONE REDACTED]"),
        (r"(?i)\bdob:\s*\d{4}-\d{2}-\d{2}\b", "dob: [REDACTED]"),
    ]
    .into_iter()
    .map(|(pattern, replacement)| CustomRule::new(pattern, replacement))
    .collect()
}

fn privacy(c: &mut Criterion) {
    let db: serde_json::Value =
        serde_json::from_str(&shared_data("jsonplaceholder-db.json")).expect("dataset is json");
    let comments = serde_json::to_string_pretty(&db["comments"]).expect("serialize");
    let todos = serde_json::to_string_pretty(&db["todos"]).expect("serialize");
    let lines: String = db["comments"]
        .as_array()
        .expect("comments are an array")
        .iter()
        .map(|comment| serde_json::to_string(comment).expect("serialize") + "\n")
        .collect();
    let non_ascii = comments.replacen("\"name\": \"", "\"name\": \"Jörg ", 1);
    assert_ne!(non_ascii, comments);
    let builtins = PrivacyFilter::default();
    let custom = PrivacyFilter::new(&custom_rules()).expect("rules compile");

    // What is being timed must do the work: every comment's email goes, the todos stay.
    let filtered = custom.filter_body(&comments);
    assert_eq!(filtered.matches("[EMAIL REDACTED]").count(), 500);
    assert!(!filtered.contains("@example."));
    serde_json::from_str::<serde_json::Value>(&filtered).expect("still valid JSON");
    assert!(matches!(
        custom.filter_body(&todos),
        std::borrow::Cow::Borrowed(_)
    ));
    for variant in [&lines, &non_ascii] {
        let filtered = custom.filter_body(variant);
        assert_eq!(filtered.matches("[EMAIL REDACTED]").count(), 500);
        assert!(!filtered.contains("@example."));
    }
    eprintln!(
        "comments body: {} bytes; as JSON Lines: {} bytes; todos body: {} bytes",
        comments.len(),
        lines.len(),
        todos.len()
    );

    let mut group = c.benchmark_group("privacy_comments_200k");
    group.throughput(Throughput::Bytes(comments.len() as u64));
    group.bench_function("baseline_parse_and_serialize", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_str(black_box(&comments)).unwrap();
            black_box(serde_json::to_string(&value).unwrap())
        })
    });
    group.bench_function("filter_body_builtins", |b| {
        b.iter(|| black_box(builtins.filter_body(black_box(&comments)).len()))
    });
    group.bench_function("filter_body_builtins_and_10_custom", |b| {
        b.iter(|| black_box(custom.filter_body(black_box(&comments)).len()))
    });
    group.bench_function("filter_body_non_ascii_builtins_and_10_custom", |b| {
        b.iter(|| black_box(custom.filter_body(black_box(&non_ascii)).len()))
    });
    group.bench_function("filter_text_builtins_and_10_custom", |b| {
        b.iter(|| black_box(custom.filter_text(black_box(&comments)).len()))
    });
    let parsed: serde_json::Value = serde_json::from_str(&comments).unwrap();
    group.bench_function("filter_json_value_builtins_and_10_custom", |b| {
        b.iter_batched_ref(
            || parsed.clone(),
            |value| black_box(custom.filter_json(value)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("privacy_comments_json_lines");
    group.throughput(Throughput::Bytes(lines.len() as u64));
    group.bench_function("filter_body_builtins_and_10_custom", |b| {
        b.iter(|| black_box(custom.filter_body(black_box(&lines)).len()))
    });
    group.finish();

    let mut group = c.benchmark_group("privacy_todos_no_match");
    group.throughput(Throughput::Bytes(todos.len() as u64));
    group.bench_function("filter_body_builtins_and_10_custom", |b| {
        b.iter(|| black_box(custom.filter_body(black_box(&todos)).len()))
    });
    group.finish();
}

criterion_group!(benches, privacy);
criterion_main!(benches);
