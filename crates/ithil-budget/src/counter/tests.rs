use std::path::PathBuf;

use super::*;

/// The reference encoding: the ranks that `tiktoken-rs` ships, encoded as ordinary text.
fn reference(encoding: Encoding) -> &'static tiktoken_rs::CoreBPE {
    match encoding {
        Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
    }
}

/// The JSONPlaceholder dataset, as the repository bundles it in `examples/`.
fn shared_dataset() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/placeholder-db.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the dataset at {} ({e})", path.display()))
}

/// Unicode, emoji, JSON, whitespace runs, special-token look-alikes, and the shared dataset as a
/// whole, per collection and per record (compact and pretty).
fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "a",
        "hello world",
        "Hello, World! How's it going? I'm fine, they've said we'll see.",
        "Grüße aus Köln: Straße, Maß, Äpfel, Øresund, naïve café, Ελληνικά, Кириллица.",
        "中文文本的分词测试，日本語のテキスト、한국어 텍스트。",
        "עברית ועربية: مرحبا بالعالم",
        "हिन्दी, தமிழ், ภาษาไทย, ქართული",
        "e\u{301} vs \u{e9}: combining marks; A\u{30a}; \u{fb01} ligature; \u{200b}zero width",
        "emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 🏳️‍🌈 ❤️‍🔥 🧑🏿‍🚀",
        "🤖",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛 and \u{10ffff} at the top of the range",
        "{\"id\":1,\"name\":\"Leanne\",\"tags\":[\"a\",\"b\"],\"nested\":{\"x\":-1.5e10,\"ok\":true}}",
        "{\n  \"id\": 1,\n  \"title\": \"sunt aut facere\",\n  \"body\": \"quia et\\nsuscipit\"\n}",
        "[1,2,3,4,5,6,7,8,9,10,100,1000,10000,123456789012345678901234567890]",
        "\"\\u00e9\\ud83d\\ude00\\n\\t\\\\\"",
        "<|endoftext|> <|fim_prefix|> <|endofprompt|> are plain text here",
        "tabs\tand\t\ttabs\t\t\t\nnew\nlines\r\n\r\ncarriage\rreturns",
        "   leading and trailing   ",
        "a  b   c    d     e      f",
        "\n\n\n\n",
        "x\u{a0}\u{a0}y\u{2003}\u{2003}z\u{3000}w",
        "don't DON'T You'RE we'Ve they'LL I'D it's",
        "https://api.example.com/v1/users?id=42&sort=desc#frag",
        "fn main() { println!(\"{}\", 1 + 2); } // code",
        "CamelCaseIdentifiers and snake_case_names and SCREAMING_CASE",
        "0123456789 3.14159 1e-9 -0 +42 1,000,000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();

    // Long runs of one kind of whitespace and of mixed whitespace, where pre-tokenizers differ
    // most (the `\s+(?!\S)` rule).
    for n in [2, 3, 17, 256, 4096] {
        texts.push(" ".repeat(n));
        texts.push(format!("word{}word", " ".repeat(n)));
        texts.push(format!("{}x", "\n".repeat(n)));
        texts.push(format!("a{}b", " \t\n".repeat(n / 3 + 1)));
    }
    texts.push("😀".repeat(500));
    texts.push("é".repeat(1000));

    let dataset = shared_dataset();
    let db: serde_json::Value = serde_json::from_str(&dataset).expect("dataset is json");
    let collections = db.as_object().expect("dataset is an object");
    for (_, records) in collections {
        texts.push(serde_json::to_string(records).expect("serialize"));
        texts.push(serde_json::to_string_pretty(records).expect("serialize"));
        for record in records.as_array().expect("collection is an array") {
            texts.push(serde_json::to_string(record).expect("serialize"));
        }
    }
    texts.push(dataset);
    texts
}

#[test]
fn counts_equal_the_reference_encoding_on_the_corpus() {
    let corpus = corpus();
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let counter = TokenCounter::new(encoding);
        let reference = reference(encoding);
        let mut mismatches = Vec::new();
        for text in &corpus {
            let expected = reference.encode_ordinary(text).len() as u64;
            let got = counter.count(text);
            if got != expected {
                mismatches.push((text.chars().take(60).collect::<String>(), expected, got));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{encoding}: {} of {} texts differ: {mismatches:?}",
            mismatches.len(),
            corpus.len()
        );
    }
}

#[test]
fn counts_from_remembered_pieces_equal_the_reference_and_the_uncached_count() {
    // Every text is counted on a fresh thread (an empty piece table) and then three more times
    // on the same thread, where its pieces, and those of every text before it, are remembered.
    let corpus = corpus();
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let counter = TokenCounter::new(encoding);
        let reference = reference(encoding);
        let texts = corpus.clone();
        std::thread::spawn(move || {
            for text in &texts {
                let expected = reference.encode_ordinary(text).len() as u64;
                assert_eq!(counter.tokenizer.count(text.as_str()) as u64, expected);
                for round in 0..3 {
                    assert_eq!(
                        counter.count(text),
                        expected,
                        "{encoding}, round {round}: {:?}",
                        text.chars().take(60).collect::<String>()
                    );
                }
            }
        })
        .join()
        .expect("counting thread");
    }
}

#[test]
fn counts_stay_exact_when_the_piece_table_fills_and_starts_over() {
    // 20 000 distinct words, five times more than the table keeps, in one text and one by one.
    let words: Vec<String> = (0..20_000u32)
        .map(|n| {
            let letters = [n % 26, n / 26 % 26, n / 676 % 26, n / 17_576];
            letters
                .iter()
                .map(|&l| char::from(b'a' + u8::try_from(l).expect("letter")))
                .collect()
        })
        .collect();
    let text = words.join(" ");
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let counter = TokenCounter::new(encoding);
        let reference = reference(encoding);
        assert_eq!(
            counter.count(&text),
            reference.encode_ordinary(&text).len() as u64
        );
        for word in words.iter().step_by(997) {
            let word = format!(" {word}");
            assert_eq!(
                counter.count(&word),
                reference.encode_ordinary(&word).len() as u64,
                "{encoding}: {word:?}"
            );
        }
    }
}

#[test]
fn every_single_byte_is_one_token_in_both_encodings() {
    // The counter counts a one-byte piece as one token without asking the encoder.
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let bpe = &TokenCounter::new(encoding).tokenizer.bpe;
        for byte in 0..=u8::MAX {
            assert_eq!(bpe.count(&[byte]), 1, "{encoding}: byte {byte}");
        }
    }
}

#[test]
fn token_ids_equal_the_reference_encoding_on_the_corpus() {
    // Equal counts could hide compensating differences; the token ids themselves must agree.
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let counter = TokenCounter::new(encoding);
        let reference = reference(encoding);
        for text in corpus() {
            assert_eq!(
                counter.tokenizer.encode(text.as_str()),
                reference.encode_ordinary(&text),
                "{encoding} encodes {:?} differently",
                text.chars().take(60).collect::<String>()
            );
        }
    }
}

#[test]
fn known_counts_match_published_values() {
    // Anchors independent of both crates' code paths: "hello world" is two tokens in both
    // encodings, and the empty string none.
    let o200k = TokenCounter::new(Encoding::O200kBase);
    let cl100k = TokenCounter::new(Encoding::Cl100kBase);
    assert_eq!(o200k.count("hello world"), 2);
    assert_eq!(cl100k.count("hello world"), 2);
    assert_eq!(o200k.count(""), 0);
}

#[test]
fn encodings_count_differently() {
    // Guards against both names silently mapping to the same vocabulary.
    let text = "中文文本的分词测试，日本語のテキスト、한국어 텍스트。";
    assert_ne!(
        TokenCounter::new(Encoding::O200kBase).count(text),
        TokenCounter::new(Encoding::Cl100kBase).count(text)
    );
}

#[test]
fn default_encoding_is_o200k_base() {
    assert_eq!(Encoding::default(), Encoding::O200kBase);
    assert_eq!(TokenCounter::default().encoding(), Encoding::O200kBase);
}

#[test]
fn encoding_names_round_trip_through_str_and_serde() {
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        assert_eq!(encoding.as_str().parse::<Encoding>(), Ok(encoding));
        let json = serde_json::to_string(&encoding).expect("serialize");
        assert_eq!(json, format!("\"{}\"", encoding.as_str()));
        assert_eq!(
            serde_json::from_str::<Encoding>(&json).expect("deserialize"),
            encoding
        );
    }
    let err = "p50k_base".parse::<Encoding>().expect_err("unknown name");
    assert_eq!(
        err.to_string(),
        "unknown token encoding \"p50k_base\" (expected o200k_base or cl100k_base)"
    );
}

/// Every maximum from 0 to the total: the kept text is a prefix, counts what `kept` says, never
/// more than the maximum, and grows with the maximum.
fn check_truncation(counter: TokenCounter, text: &str) {
    let total = counter.count(text);
    let mut previous = 0;
    for max in 0..=total + 1 {
        let t = counter.truncate(text, max);
        assert_eq!(t.total, total, "total for {text:?}");
        assert!(text.starts_with(&t.text), "not a prefix at max {max}");
        assert_eq!(
            counter.count(&t.text),
            t.kept,
            "kept miscounted at max {max}"
        );
        assert!(t.kept <= max, "kept {} above max {max}", t.kept);
        assert!(t.text.len() >= previous, "shrank at max {max}");
        previous = t.text.len();
        if max >= total {
            assert_eq!(t.text, text);
            assert!(!t.is_truncated());
        } else {
            assert!(t.is_truncated());
            assert_eq!(t.cut(), total - t.kept);
        }
    }
}

#[test]
fn truncation_cuts_at_token_boundaries_and_never_splits_a_character() {
    for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
        let counter = TokenCounter::new(encoding);
        for text in [
            "emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 🏳️‍🌈 ❤️‍🔥 🧑🏿‍🚀",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛",
            "中文文本的分词测试，日本語のテキスト、한국어 텍스트。",
            "{\"id\": 1, \"name\": \"Grüße\", \"tags\": [\"a\", \"b\"]}",
            "word     word\n\n\n   x",
            "plain ASCII prose that is long enough to be cut in several places",
        ] {
            check_truncation(counter, text);
        }
    }
}

#[test]
fn truncation_of_an_emoji_that_spans_tokens_keeps_no_partial_bytes() {
    // 🧑🏿‍🚀 is several tokens whose boundaries fall inside its UTF-8 sequences; a cut there must
    // fall back to the previous whole character.
    let counter = TokenCounter::new(Encoding::O200kBase);
    let text = "🧑🏿‍🚀";
    let tokens = counter.tokenizer.encode(text);
    assert!(tokens.len() > 1, "the test needs a multi-token emoji");
    let split_inside = (1..tokens.len()).any(|n| {
        let bytes: usize = tokens[..n]
            .iter()
            .map(|&t| counter.tokenizer.bpe.token_len(t))
            .sum();
        !text.is_char_boundary(bytes)
    });
    assert!(
        split_inside,
        "the test needs a token boundary inside a character"
    );
    check_truncation(counter, text);
}

#[test]
fn truncation_keeps_the_whole_text_when_it_fits() {
    let counter = TokenCounter::default();
    let t = counter.truncate("hello world", 2);
    assert_eq!(
        t,
        Truncated {
            text: "hello world".to_owned(),
            kept: 2,
            total: 2
        }
    );
    let t = counter.truncate("hello world", u64::MAX);
    assert_eq!(t.kept, 2);
}

#[test]
fn truncation_of_the_large_array_keeps_exactly_the_maximum() {
    let counter = TokenCounter::default();
    let db: serde_json::Value = serde_json::from_str(&shared_dataset()).expect("dataset is json");
    let text = serde_json::to_string_pretty(&db["comments"]).expect("serialize");
    let t = counter.truncate(&text, 2000);
    assert!(t.total > 2000);
    // ASCII JSON never splits a character, so the cut lands on the 2000th token exactly.
    assert_eq!(t.kept, 2000);
    assert!(text.starts_with(&t.text));
}

#[test]
fn debug_of_a_counter_names_its_encoding() {
    let s = format!("{:?}", TokenCounter::new(Encoding::Cl100kBase));
    assert_eq!(s, "TokenCounter { encoding: Cl100kBase, .. }");
}

#[test]
fn a_megabyte_of_whitespace_is_counted_without_panicking() {
    // A downstream response decides what we count. tiktoken-rs' backtracking pre-tokenizer gives
    // up on a run of about a million spaces and panics (measured: 800 000 pass, 1 000 000 panic);
    // the chosen counter's pre-tokenizer is linear and must not.
    let counter = TokenCounter::default();
    let reference_text = format!("a{}b", " ".repeat(100_000));
    assert_eq!(
        counter.count(&reference_text),
        reference(Encoding::O200kBase)
            .encode_ordinary(&reference_text)
            .len() as u64
    );

    let text = format!("a{}b", " ".repeat(2_000_000));
    let total = counter.count(&text);
    assert!(total > 2 * counter.count(&reference_text));
    let t = counter.truncate(&text, 10);
    assert_eq!((t.kept, t.total), (10, total));
}
