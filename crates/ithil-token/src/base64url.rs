//! Strict unpadded base64url (RFC 4648 section 5), as JWS compact serialization requires.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The URL-safe alphabet, no padding written, padding refused, and non-zero unused trailing bits
/// refused, so that every byte string has exactly one accepted encoding.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes `bytes` as unpadded base64url.
pub(crate) fn encode(bytes: &[u8]) -> String {
    ENGINE.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    ENGINE.encode_string(bytes, out);
}

/// Returns the length `text_len` characters of canonical base64url decode to; `None` for a
/// length no encoding has (one more than a multiple of four).
pub(crate) fn decoded_len(text_len: usize) -> Option<usize> {
    match text_len % 4 {
        1 => None,
        rest => Some(text_len / 4 * 3 + rest.saturating_sub(1)),
    }
}

/// Decodes canonical unpadded base64url; `None` for anything else.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = vec![0; decoded_len(text.len())?];
    decode_into(text, &mut out)?;
    Some(out)
}

/// Decodes canonical unpadded base64url into the start of `out`, returning the decoded length;
/// `None` for anything else, including output longer than `out`.
///
/// Verification decodes into buffers on the stack, so nothing is allocated for a typical token.
pub(crate) fn decode_into(text: &str, out: &mut [u8]) -> Option<usize> {
    let len = decoded_len(text.len())?;
    let out = out.get_mut(..len)?;
    ENGINE.decode_slice(text, out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_encodings_decode() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("eA").unwrap(), b"x");
        assert_eq!(decode("eHk").unwrap(), b"xy");
        assert_eq!(decode("eHl6").unwrap(), b"xyz");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn encoding_round_trips_without_padding() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let text = encode(&bytes);
            assert!(!text.contains('='));
            assert_eq!(decode(&text).unwrap(), bytes);
        }
    }

    #[test]
    fn padding_is_refused() {
        assert_eq!(decode("eA=="), None);
        assert_eq!(decode("eA="), None);
        assert_eq!(decode("eHk="), None);
    }

    #[test]
    fn standard_alphabet_is_refused() {
        // "+/8" is "-_8" in the standard alphabet.
        assert_eq!(decode("+/8"), None);
        assert_eq!(decode("-/8"), None);
        assert_eq!(decode("+_8"), None);
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // "eA" is the only encoding of "x"; "eB" to "eP" set the unused low bits.
        for last in ['B', 'C', 'D', 'H', 'P'] {
            assert_eq!(decode(&format!("e{last}")), None, "e{last}");
        }
        // "eHk" is the only encoding of "xy"; "eHl" sets an unused bit.
        assert_eq!(decode("eHl"), None);
    }

    #[test]
    fn impossible_lengths_are_refused() {
        assert_eq!(decode("e"), None);
        assert_eq!(decode("eHl6e"), None);
    }

    #[test]
    fn whitespace_and_foreign_bytes_are_refused() {
        assert_eq!(decode("eA "), None);
        assert_eq!(decode(" eA"), None);
        assert_eq!(decode("e\nA"), None);
        assert_eq!(decode("eA.A"), None);
    }

    #[test]
    fn decoded_len_matches_the_decoded_bytes() {
        for len in 0..40usize {
            let text = encode(&vec![7; len]);
            assert_eq!(decoded_len(text.len()), Some(len));
        }
        assert_eq!(decoded_len(5), None);
    }

    #[test]
    fn every_character_outside_the_alphabet_is_refused_at_every_position() {
        let valid = "eHl6eHl6eHk";
        for byte in (0..=255u8).filter(|b| !b.is_ascii_alphanumeric() && !b"-_".contains(b)) {
            for i in 0..valid.len() {
                let mut bytes = valid.as_bytes().to_vec();
                bytes[i] = byte;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    assert_eq!(decode(text), None, "byte {byte} at {i}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decoder_agrees_with_the_base64_crate(text in "[A-Za-z0-9_+/=. é-]{0,70}") {
            let reference = ENGINE.decode(&text).ok();
            proptest::prop_assert_eq!(decode(&text), reference);
        }

        #[test]
        fn decoder_agrees_with_the_base64_crate_on_valid_alphabets(text in "[A-Za-z0-9_-]{0,70}") {
            let reference = ENGINE.decode(&text).ok();
            proptest::prop_assert_eq!(decode(&text), reference);
        }
    }

    #[test]
    fn decode_into_refuses_output_that_does_not_fit() {
        let mut out = [0u8; 2];
        assert_eq!(decode_into("eHk", &mut out), Some(2));
        assert_eq!(&out, b"xy");
        assert_eq!(decode_into("eHl6", &mut out), None);
    }
}
