//! Key rotation: a new key signs, the previous one still verifies, unknown key ids fail.

use ithil_token::{KeyRing, VerifyError, sign, verify};

use crate::{Agent, agent_claims, key, validation};

#[test]
fn token_signed_before_a_rotation_still_verifies() {
    let before = KeyRing::new("k1", key(1));
    let old_token = sign(&before, &agent_claims()).unwrap();

    let after = before.rotate("k2", key(2));
    assert_eq!(after.signing_kid(), "k2");
    let new_token = sign(&after, &agent_claims()).unwrap();

    assert!(verify::<Agent>(&old_token, &after, &validation()).is_ok());
    assert!(verify::<Agent>(&new_token, &after, &validation()).is_ok());
}

#[test]
fn verify_key_added_by_kid_verifies_its_tokens() {
    let old = KeyRing::new("old", key(7));
    let token = sign(&old, &agent_claims()).unwrap();
    let current = KeyRing::new("new", key(8)).with_verify_key("old", key(7));
    assert!(verify::<Agent>(&token, &current, &validation()).is_ok());
}

#[test]
fn token_with_an_unknown_kid_is_refused() {
    let token = sign(&KeyRing::new("gone", key(1)), &agent_claims()).unwrap();
    let ring = KeyRing::new("k2", key(2)).with_verify_key("k3", key(3));
    assert_eq!(
        verify::<Agent>(&token, &ring, &validation()).unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[test]
fn unknown_kid_is_refused_even_when_another_key_in_the_ring_would_match() {
    // Selecting by kid alone means a token cannot make the verifier try every key.
    let token = sign(&KeyRing::new("other", key(1)), &agent_claims()).unwrap();
    let ring = KeyRing::new("k1", key(1));
    assert_eq!(
        verify::<Agent>(&token, &ring, &validation()).unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[test]
fn removed_key_no_longer_verifies() {
    let mut ring = KeyRing::new("k1", key(1)).rotate("k2", key(2));
    let token = sign(&KeyRing::new("k1", key(1)), &agent_claims()).unwrap();
    assert!(verify::<Agent>(&token, &ring, &validation()).is_ok());
    assert!(ring.remove_verify_key("k1"));
    assert_eq!(
        verify::<Agent>(&token, &ring, &validation()).unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[test]
fn token_signed_by_the_same_kid_with_another_key_is_refused() {
    let token = sign(&KeyRing::new("k1", key(5)), &agent_claims()).unwrap();
    assert_eq!(
        verify::<Agent>(&token, &KeyRing::new("k1", key(1)), &validation()).unwrap_err(),
        VerifyError::BadSignature
    );
}
