//! Opaque bearer secrets (session ids, reset tokens, recovery codes,
//! service-account secrets): 256 random bits shown once as base64url, and
//! stored only as their SHA-256, compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A fresh secret token. Its text goes to the holder once; the store keeps
/// `digest()`.
pub struct OpaqueToken(Zeroizing<String>);

impl OpaqueToken {
    /// 32 random bytes, base64url without padding (43 characters).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::random_bytes(bytes.as_mut())?;
        Ok(Self(Zeroizing::new(base64url(bytes.as_ref()))))
    }

    /// The text to hand to its holder, once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn digest(&self) -> [u8; 32] {
        Self::digest_of(&self.0)
    }

    /// The digest of a token presented by a client.
    pub fn digest_of(presented: &str) -> [u8; 32] {
        sha256(presented.as_bytes())
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken([redacted])")
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let (a, b) = (OpaqueToken::generate(), OpaqueToken::generate());
        let (Ok(a), Ok(b)) = (a, b) else { return };
        assert_eq!(a.reveal().len(), 43);
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(a.digest(), OpaqueToken::digest_of(a.reveal()));
        assert!(a.reveal().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(format!("{a:?}"), "OpaqueToken([redacted])");
    }
}
