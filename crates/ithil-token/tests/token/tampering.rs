//! Changing any single byte or character of a valid token makes verification fail.

use proptest::prelude::*;

use ithil_token::{KeyRing, sign, verify};

use crate::{Agent, agent_claims, ring, validation};

fn token() -> String {
    sign(&ring(), &agent_claims()).unwrap()
}

fn verifies(token: &str, keys: &KeyRing) -> bool {
    verify::<Agent>(token, keys, &validation()).is_ok()
}

#[test]
fn every_single_ascii_byte_substitution_is_refused() {
    let keys = ring();
    let token = token();
    assert!(verifies(&token, &keys));

    let mut bytes = token.clone().into_bytes();
    for i in 0..bytes.len() {
        let original = bytes[i];
        for replacement in (0..=127u8).filter(|&b| b != original) {
            bytes[i] = replacement;
            let tampered = std::str::from_utf8(&bytes).unwrap();
            assert!(!verifies(tampered, &keys), "byte {i} set to {replacement}");
        }
        bytes[i] = original;
    }
}

proptest! {
    #[test]
    fn any_single_character_substitution_is_refused(index in any::<prop::sample::Index>(), c in any::<char>()) {
        let keys = ring();
        let token = token();
        let chars: Vec<char> = token.chars().collect();
        let i = index.index(chars.len());
        prop_assume!(chars[i] != c);

        let mut tampered = chars;
        tampered[i] = c;
        let tampered: String = tampered.into_iter().collect();
        prop_assert!(!verifies(&tampered, &keys));
    }

    #[test]
    fn any_single_character_insertion_is_refused(index in any::<prop::sample::Index>(), c in any::<char>()) {
        let keys = ring();
        let mut tampered = token();
        let i = index.index(tampered.len() + 1);
        tampered.insert(i, c);
        prop_assert!(!verifies(&tampered, &keys));
    }

    #[test]
    fn any_single_character_deletion_is_refused(index in any::<prop::sample::Index>()) {
        let keys = ring();
        let mut tampered = token();
        let i = index.index(tampered.len());
        tampered.remove(i);
        prop_assert!(!verifies(&tampered, &keys));
    }
}
