//! Tokenizer candidates side by side: `bpe-openai` (the counter Ithil uses) against `tiktoken-rs`
//! (the reference encoding) on the same tool responses.
//!
//! Inputs: one small JSON object (a user record), a JSON array of 200 KB (the comments of the
//! shared JSONPlaceholder dataset, pretty-printed as json-server serves them and cycled to reach
//! the size) and English prose (the design notes). Before timing anything, the bench checks that both candidates give the
//! same count on every input and prints the counts, so a disagreement cannot hide behind a speed
//! figure.
//!
//! Run: `cargo bench -p ithil-budget --bench tokenizer -- --warm-up-time 1 --measurement-time 3`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Where the shared test data lives: `ITHIL_SHARED_DATA`, else `shared/data` beside the checkout.
fn shared_data(name: &str) -> String {
    let dir = std::env::var_os("ITHIL_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The dataset's comments as a pretty-printed JSON array (as json-server serves them), cycled
/// with fresh ids until it is at least `min_bytes` long.
fn comments_array(db: &serde_json::Value, min_bytes: usize) -> String {
    let comments = db["comments"].as_array().expect("comments is an array");
    let mut out = Vec::new();
    let mut bytes = 2;
    for (id, comment) in (1..).zip(comments.iter().cycle()) {
        if bytes >= min_bytes {
            break;
        }
        let mut comment = comment.clone();
        comment["id"] = serde_json::Value::from(id);
        bytes += serde_json::to_string_pretty(&comment)
            .expect("serialize")
            .len()
            + 6;
        out.push(comment);
    }
    serde_json::to_string_pretty(&out).expect("serialize")
}

/// The three inputs, named.
fn inputs() -> Vec<(&'static str, String)> {
    let db: serde_json::Value =
        serde_json::from_str(&shared_data("jsonplaceholder-db.json")).expect("dataset is json");
    let small = serde_json::to_string_pretty(&db["users"][0]).expect("serialize");
    let array = comments_array(&db, 200_000);
    let prose = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/DESIGN.md"),
    )
    .unwrap_or_else(|_| shared_data("README.md"));
    vec![
        ("small_json", small),
        ("json_array_200kb", array),
        ("prose", prose),
    ]
}

fn tokenizers(c: &mut Criterion) {
    // Loading happens once per process in both crates; time it here so the report can say what
    // the first call costs.
    let start = Instant::now();
    let tik_o200k = tiktoken_rs::o200k_base_singleton();
    eprintln!("load tiktoken-rs o200k_base: {:?}", start.elapsed());
    let start = Instant::now();
    let bpe_o200k = bpe_openai::o200k_base();
    let _ = bpe_o200k.count("warm up the lazy static");
    eprintln!("load bpe-openai o200k_base: {:?}", start.elapsed());
    let tik_cl100k = tiktoken_rs::cl100k_base_singleton();
    let bpe_cl100k = bpe_openai::cl100k_base();

    let inputs = inputs();
    for (name, text) in &inputs {
        let tik = tik_o200k.encode_ordinary(text).len();
        let bpe = bpe_o200k.count(text.as_str());
        let tik_cl = tik_cl100k.encode_ordinary(text).len();
        let bpe_cl = bpe_cl100k.count(text.as_str());
        eprintln!(
            "{name}: {} bytes; o200k tiktoken-rs {tik} bpe-openai {bpe} equal {}; \
             cl100k tiktoken-rs {tik_cl} bpe-openai {bpe_cl} equal {}",
            text.len(),
            tik == bpe,
            tik_cl == bpe_cl
        );
        assert_eq!(tik, bpe, "o200k counts differ on {name}");
        assert_eq!(tik_cl, bpe_cl, "cl100k counts differ on {name}");
    }

    for (name, text) in &inputs {
        let mut group = c.benchmark_group(format!("o200k/{name}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("tiktoken-rs", name), text, |b, t| {
            b.iter(|| tik_o200k.encode_ordinary(black_box(t)).len());
        });
        group.bench_with_input(BenchmarkId::new("bpe-openai", name), text, |b, t| {
            b.iter(|| bpe_o200k.count(black_box(t.as_str())));
        });
        group.finish();
    }

    // cl100k only on the large input: the ranking between the candidates is what matters.
    let (name, text) = &inputs[1];
    let mut group = c.benchmark_group(format!("cl100k/{name}"));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_with_input(BenchmarkId::new("tiktoken-rs", name), text, |b, t| {
        b.iter(|| tik_cl100k.encode_ordinary(black_box(t)).len());
    });
    group.bench_with_input(BenchmarkId::new("bpe-openai", name), text, |b, t| {
        b.iter(|| bpe_cl100k.count(black_box(t.as_str())));
    });
    group.finish();
}

criterion_group!(benches, tokenizers);
criterion_main!(benches);
