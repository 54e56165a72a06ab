//! Token counting with the byte-pair encodings that OpenAI's models use.
//!
//! The counter is `bpe-openai`, chosen by measurement against `tiktoken-rs` (see
//! `docs/benchmarks.md`, "ithil-budget: tokenizer"): it gives the same counts as the reference
//! ranks and is faster on every tool response measured. The vocabularies are compiled into the
//! binary, so nothing is read from disk or the network.
//!
//! # Counting without allocating
//!
//! `bpe_openai::Tokenizer::count` splits the text with the encoding's pre-tokenizer and counts
//! each piece with a fresh backtracking encoder, which allocates a bit field and a token buffer
//! for every piece (175 allocations for a 1 KB JSON response). The crate has no count that
//! reuses an encoder: the backtracking encoder is private, and its public `AppendableEncoder`,
//! which could be reused, costs more than twice as many instructions on long pieces. So
//! [`TokenCounter::count`] splits the same way and remembers the counts of short pieces in a
//! per-thread table (`PIECE_CACHE_ENTRIES` at most per encoding, emptied when full; about
//! 400 KiB): tool responses repeat their keys, punctuation and common words, and a piece found
//! there costs one hash and no allocation. A piece of one byte is one token in both encodings
//! (every byte is a token), and pieces longer than `PIECE_CACHE_MAX_BYTES` are counted as
//! before. The count of
//! a piece depends on its bytes alone, so the result is exactly `Tokenizer::count`'s; the
//! table's hasher is std's keyed SipHash, so a downstream cannot craft pieces that collide.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A byte-pair encoding that tokens are counted in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// `o200k_base`, the encoding of GPT-4o, GPT-4.1, GPT-5 and the o-series.
    #[default]
    #[serde(rename = "o200k_base")]
    O200kBase,
    /// `cl100k_base`, the encoding of GPT-4 and GPT-3.5.
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
}

impl Encoding {
    /// The encoding's name as configuration spells it: `o200k_base` or `cl100k_base`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encoding name that is neither `o200k_base` nor `cl100k_base`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token encoding {name:?} (expected o200k_base or cl100k_base)")]
pub struct UnknownEncoding {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "o200k_base" => Ok(Encoding::O200kBase),
            "cl100k_base" => Ok(Encoding::Cl100kBase),
            _ => Err(UnknownEncoding { name: s.to_owned() }),
        }
    }
}

/// Counts and truncates text in one encoding.
///
/// The vocabulary of each encoding is loaded once per process, on the first
/// [`TokenCounter::new`] for that encoding, and shared by every counter after it (it lives in a
/// process-wide static). That first call deserializes the ranks compiled into the binary, which
/// takes tens of milliseconds; call it at startup rather than on the first request. After that a
/// counter is a pointer: `Copy`, free to create and safe to share between threads.
#[derive(Clone, Copy)]
pub struct TokenCounter {
    encoding: Encoding,
    tokenizer: &'static bpe_openai::Tokenizer,
}

impl fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCounter")
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// The result of [`TokenCounter::truncate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The kept text: a prefix of the input that ends on a token boundary and a character
    /// boundary, or the whole input when it fit.
    pub text: String,
    /// How many tokens `text` counts.
    pub kept: u64,
    /// How many tokens the whole input counts.
    pub total: u64,
}

impl Truncated {
    /// Whether anything was cut off.
    pub fn is_truncated(&self) -> bool {
        self.kept < self.total
    }

    /// How many tokens were cut off.
    pub fn cut(&self) -> u64 {
        self.total - self.kept
    }
}

impl TokenCounter {
    /// A counter for `encoding`; the first call per encoding loads its vocabulary.
    pub fn new(encoding: Encoding) -> TokenCounter {
        let tokenizer = match encoding {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        };
        TokenCounter {
            encoding,
            tokenizer,
        }
    }

    /// The encoding this counter counts in.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The number of tokens of `text`, encoded as ordinary text.
    ///
    /// Special-token markers such as `<|endoftext|>` count as the ordinary text they spell: a
    /// downstream response is data, never control input for the model.
    ///
    /// The counts of short pre-tokenizer pieces are remembered per thread (at most 4,096 per
    /// encoding, about 400 KiB), so that a repeated piece costs a lookup instead of a fresh
    /// encoder and its allocations; a piece's count depends on its bytes alone, so the result
    /// is exactly that of counting without.
    pub fn count(&self, text: &str) -> u64 {
        let slot = match self.encoding {
            Encoding::O200kBase => 0,
            Encoding::Cl100kBase => 1,
        };
        // Neither encoding normalizes its input (`bpe_openai`'s `nfc` is off for both), so the
        // pieces of `text` are exactly what `Tokenizer::count` splits it into.
        let counted = PIECE_COUNTS.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            let cache = &mut cache[slot];
            self.tokenizer
                .split(text)
                .map(|piece| self.count_piece(piece.as_bytes(), cache))
                .sum::<usize>()
        });
        // Only while the thread's locals are being destroyed is the table gone.
        to_u64(counted.unwrap_or_else(|_| self.tokenizer.count(text)))
    }

    /// The tokens of one pre-tokenized piece, from `cache` when it was counted before.
    fn count_piece(&self, piece: &[u8], cache: &mut PieceCounts) -> usize {
        match piece.len() {
            0 => 0,
            // Every single byte is a token of its own in both encodings.
            1 => 1,
            len if len > PIECE_CACHE_MAX_BYTES => self.tokenizer.bpe.count(piece),
            _ => {
                if let Some(&n) = cache.get(piece) {
                    return n;
                }
                let n = self.tokenizer.bpe.count(piece);
                if cache.len() >= PIECE_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(piece.into(), n);
                n
            }
        }
    }

    /// The longest prefix of `text` that ends on a token boundary and counts at most
    /// `max_tokens` tokens, with the counts of the prefix and of the whole text.
    ///
    /// A token of a byte-pair encoding may end inside a multi-byte character (an emoji is often
    /// two or three tokens). Such a partial character is dropped, so the kept text is always
    /// valid UTF-8 and may count fewer than `max_tokens`. The caller appends its own marker; the
    /// marker's tokens are not included in `kept`.
    pub fn truncate(&self, text: &str, max_tokens: u64) -> Truncated {
        let tokens = self.tokenizer.encode(text);
        let total = to_u64(tokens.len());
        if total <= max_tokens {
            return Truncated {
                text: text.to_owned(),
                kept: total,
                total,
            };
        }

        // The tokens spell the input byte for byte (neither encoding normalizes), so the bytes of
        // the first n tokens are a prefix of the input; cut there, then back to a character
        // boundary.
        let bpe = &self.tokenizer.bpe;
        let mut n = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        loop {
            let bytes: usize = tokens[..n].iter().map(|&t| bpe.token_len(t)).sum();
            let mut end = bytes.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let kept_text = &text[..end];

            // Encoding a prefix on its own gives the prefix's tokens again, except in rare
            // pre-tokenizer edge cases at the cut; recount so `kept` is exact and never above
            // the maximum.
            let kept = self.count(kept_text);
            if kept <= max_tokens || n == 0 {
                return Truncated {
                    text: kept_text.to_owned(),
                    kept,
                    total,
                };
            }
            n -= 1;
        }
    }
}

impl Default for TokenCounter {
    /// A counter for the default encoding, `o200k_base`.
    fn default() -> Self {
        TokenCounter::new(Encoding::default())
    }
}

/// The longest piece whose count [`TokenCounter::count`] remembers, in bytes.
const PIECE_CACHE_MAX_BYTES: usize = 32;

/// How many piece counts [`TokenCounter::count`] remembers per thread and encoding before it
/// forgets them all and starts over. Each costs at most about 100 bytes (the key's allocation
/// and its slot), so a table stays under about 400 KiB.
const PIECE_CACHE_ENTRIES: usize = 4096;

/// Counts of pieces by their bytes.
type PieceCounts = HashMap<Box<[u8]>, usize>;

thread_local! {
    /// Piece counts of this thread, one table per [`Encoding`] (`o200k_base`, `cl100k_base`).
    static PIECE_COUNTS: RefCell<[PieceCounts; 2]> = RefCell::new([HashMap::new(), HashMap::new()]);
}

fn to_u64(n: usize) -> u64 {
    // usize is at most 64 bits on every target Rust supports.
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
