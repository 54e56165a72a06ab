//! Byte searches eight bytes at a time, for the hand-written scans of the built-in rules and of
//! JSON documents.

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
pub(super) fn has_byte(word: u64, b: u8) -> u64 {
    has_less(word ^ (ONES * u64::from(b)), 1)
}

/// Flags the bytes of `word` beyond ASCII.
pub(super) fn has_high(word: u64) -> u64 {
    word & HIGHS
}

/// Flags the ASCII digits of `word`: after `xor 0x30` they are the only bytes below 10.
pub(super) fn has_digit(word: u64) -> u64 {
    has_less(word ^ (ONES * 0x30), 10)
}

/// The position of the first byte at or after `from` that `flags` flags, eight bytes at a
/// time, read little-endian so that the lowest flag is the first byte.
pub(super) fn find_flagged(bytes: &[u8], from: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
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
pub(super) fn next_digit(bytes: &[u8], from: usize) -> Option<usize> {
    find_flagged(bytes, from, has_digit)
}

/// The position of the first `needle` in `text` at or after `from`, which must be a character
/// boundary. (`str::find` with a `char` searches with `memchr`.)
pub(super) fn find_char(text: &str, from: usize, needle: char) -> Option<usize> {
    text[from..].find(needle).map(|i| from + i)
}
