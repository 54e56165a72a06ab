//! Signing keys and the key ring that finds a verification key by key id.

use std::fmt;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::base64url;
use crate::error::KeyError;

/// The shortest key accepted, in bytes: the output size of SHA-256, as RFC 7518 section 3.2
/// requires for HS256.
pub const MIN_KEY_LEN: usize = 32;

/// A secret HMAC-SHA256 key of at least [`MIN_KEY_LEN`] bytes.
///
/// `Debug` prints only `SigningKey(..)`; the bytes leave this type only through
/// [`SigningKey::expose_secret`].
#[derive(Clone)]
pub struct SigningKey {
    bytes: Vec<u8>,
}

impl SigningKey {
    /// Creates a key from raw bytes.
    ///
    /// # Errors
    ///
    /// Returns [`KeyError::TooShort`] if `bytes` is shorter than [`MIN_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len: bytes.len() });
        }
        Ok(SigningKey {
            bytes: bytes.to_vec(),
        })
    }

    /// Creates a key of 32 bytes from the operating system's secure random number generator.
    ///
    /// # Errors
    ///
    /// Returns [`KeyError::Random`] if the random number generator fails.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut bytes = vec![0; MIN_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Ok(SigningKey { bytes })
    }

    /// Returns the key's bytes, for persisting a generated key.
    ///
    /// Anything holding these bytes can issue tokens; keep them out of logs and error messages.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the key's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Returns `false`: a key is never empty. Present because clippy asks for it next to `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.bytes)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// One signing key and any number of verify-only keys, each named by a key id (`kid`).
///
/// [`sign`](crate::sign) always uses the signing key and writes its kid into the header.
/// [`verify`](crate::verify) picks the key named by the token's `kid`; a token without a `kid`
/// is checked against the signing key only. During a rotation the previous key stays in the ring
/// as a verify key until the tokens it signed have expired.
///
/// `Debug` prints the key ids, never the keys.
#[derive(Clone)]
pub struct KeyRing {
    signing: Entry,
    verify: Vec<Entry>,
}

/// One key of a ring.
#[derive(Clone)]
struct Entry {
    kid: String,
    key: hmac::Key,
    /// The base64url header [`sign`](crate::sign) writes for this kid, computed once: signing
    /// reuses it, and verification recognises it without decoding it.
    header_b64: String,
}

impl Entry {
    fn new(kid: String, key: &SigningKey) -> Entry {
        Entry {
            header_b64: signing_header(&kid),
            key: key.hmac_key(),
            kid,
        }
    }
}

impl KeyRing {
    /// Creates a ring whose signing key `key` is known by `kid`.
    pub fn new(kid: impl Into<String>, key: SigningKey) -> KeyRing {
        KeyRing {
            signing: Entry::new(kid.into(), &key),
            verify: Vec::new(),
        }
    }

    /// Adds a verify-only key under `kid` and returns the ring.
    ///
    /// See [`KeyRing::add_verify_key`] for what happens when `kid` is already present.
    pub fn with_verify_key(mut self, kid: impl Into<String>, key: SigningKey) -> KeyRing {
        self.add_verify_key(kid, key);
        self
    }

    /// Adds a verify-only key under `kid`.
    ///
    /// A key added under a kid that is already a verify key replaces it. A key added under the
    /// signing kid is ignored, because the signing key always verifies its own tokens; use
    /// [`KeyRing::rotate`] to change the signing key.
    pub fn add_verify_key(&mut self, kid: impl Into<String>, key: SigningKey) {
        let kid = kid.into();
        if kid == self.signing.kid {
            return;
        }
        match self.verify.iter_mut().find(|e| e.kid == kid) {
            Some(entry) => entry.key = key.hmac_key(),
            None => self.verify.push(Entry::new(kid, &key)),
        }
    }

    /// Removes the verify-only key `kid`; returns whether it was present.
    ///
    /// The signing key cannot be removed this way.
    pub fn remove_verify_key(&mut self, kid: &str) -> bool {
        let before = self.verify.len();
        self.verify.retain(|e| e.kid != kid);
        self.verify.len() != before
    }

    /// Makes `key` the signing key under `kid`, keeping the previous signing key as a verify key.
    ///
    /// If `kid` was a verify key, that verify key is dropped; if `kid` is the current signing
    /// kid, the old key under it is dropped.
    pub fn rotate(mut self, kid: impl Into<String>, key: SigningKey) -> KeyRing {
        let kid = kid.into();
        self.verify.retain(|e| e.kid != kid);
        let old = std::mem::replace(&mut self.signing, Entry::new(kid, &key));
        if old.kid != self.signing.kid {
            self.verify.push(old);
        }
        self
    }

    /// Returns the key id written into the header of every token this ring signs.
    pub fn signing_kid(&self) -> &str {
        &self.signing.kid
    }

    /// Returns every key id this ring verifies, the signing kid first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|e| e.kid.as_str())
    }

    /// Returns whether a token carrying `kid` would find a key in this ring.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.kids().any(|k| k == kid)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        std::iter::once(&self.signing).chain(&self.verify)
    }

    pub(crate) fn signing_key(&self) -> &hmac::Key {
        &self.signing.key
    }

    pub(crate) fn header_b64(&self) -> &str {
        &self.signing.header_b64
    }

    /// Returns the key that verifies a token carrying `kid`; no kid means the signing key.
    pub(crate) fn verification_key(&self, kid: Option<&str>) -> Option<&hmac::Key> {
        match kid {
            None => Some(&self.signing.key),
            Some(kid) => self.entries().find(|e| e.kid == kid).map(|e| &e.key),
        }
    }

    /// Returns the key for an encoded header that is byte for byte one this ring writes.
    ///
    /// Such a header decodes to `alg` HS256, `typ` JWT and that entry's kid, so checking it again
    /// would reach the same key; any other header, however equivalent, takes the full path.
    pub(crate) fn key_for_known_header(&self, header_b64: &str) -> Option<&hmac::Key> {
        self.entries()
            .find(|e| e.header_b64 == header_b64)
            .map(|e| &e.key)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.signing.kid)
            .field(
                "verify_kids",
                &self
                    .verify
                    .iter()
                    .map(|e| e.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Builds the base64url header `{"alg":"HS256","typ":"JWT","kid":...}` for `kid`.
fn signing_header(kid: &str) -> String {
    // `Value`'s `Display` writes a correctly escaped JSON string and cannot fail.
    let kid_json = serde_json::Value::String(kid.to_owned()).to_string();
    let json = format!(r#"{{"alg":"HS256","typ":"JWT","kid":{kid_json}}}"#);
    base64url::encode(json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-secret";

    #[test]
    fn key_shorter_than_32_bytes_is_refused() {
        let err = SigningKey::from_bytes(&[7; 31]).unwrap_err();
        assert!(matches!(err, KeyError::TooShort { len: 31 }));
        assert!(SigningKey::from_bytes(&[7; 32]).is_ok());
    }

    #[test]
    fn key_debug_does_not_show_the_bytes() {
        let key = SigningKey::from_bytes(SECRET).unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "SigningKey(..)");
        assert!(!debug.contains("secret"));
        assert!(!debug.contains("0123"));

        let ring_debug = format!("{:?}", KeyRing::new("k1", key));
        assert!(ring_debug.contains("k1"));
        assert!(!ring_debug.contains("secret"));
        assert!(!ring_debug.contains("0123"));
    }

    #[test]
    fn generated_keys_are_32_bytes_and_differ() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn expose_secret_returns_the_bytes_given() {
        let key = SigningKey::from_bytes(SECRET).unwrap();
        assert_eq!(key.expose_secret(), SECRET);
    }

    #[test]
    fn rotate_keeps_the_old_signing_key_as_a_verify_key() {
        let ring = KeyRing::new("old", SigningKey::generate().unwrap())
            .rotate("new", SigningKey::generate().unwrap());
        assert_eq!(ring.signing_kid(), "new");
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["new", "old"]);
    }

    #[test]
    fn verify_key_under_the_signing_kid_is_ignored() {
        let ring = KeyRing::new("k", SigningKey::generate().unwrap())
            .with_verify_key("k", SigningKey::generate().unwrap());
        assert_eq!(ring.kids().count(), 1);
    }

    #[test]
    fn removed_verify_key_no_longer_resolves() {
        let mut ring = KeyRing::new("a", SigningKey::generate().unwrap())
            .with_verify_key("b", SigningKey::generate().unwrap());
        assert!(ring.contains_kid("b"));
        assert!(ring.remove_verify_key("b"));
        assert!(!ring.contains_kid("b"));
        assert!(!ring.remove_verify_key("b"));
        assert!(!ring.remove_verify_key("a"));
    }

    #[test]
    fn known_headers_decode_to_their_own_kid() {
        let ring = KeyRing::new("a", SigningKey::generate().unwrap())
            .with_verify_key("b\u{e9}\"", SigningKey::generate().unwrap());
        for entry in ring.entries() {
            let json = base64url::decode(&entry.header_b64).unwrap();
            let header = crate::header::RawHeader::parse(&json)
                .unwrap()
                .into_checked()
                .unwrap();
            assert_eq!(header.kid.as_deref(), Some(entry.kid.as_str()));
            assert!(std::ptr::eq(
                ring.key_for_known_header(&entry.header_b64).unwrap(),
                ring.verification_key(header.kid.as_deref()).unwrap()
            ));
        }
        assert!(ring.key_for_known_header("eyJhbGciOiJIUzI1NiJ9").is_none());
    }

    #[test]
    fn signing_header_escapes_the_kid() {
        let header = signing_header("a\"b");
        let json = base64url::decode(&header).unwrap();
        assert_eq!(json, br#"{"alg":"HS256","typ":"JWT","kid":"a\"b"}"#);
    }
}
