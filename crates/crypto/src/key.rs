//! Typed key material: 256-bit keys that zeroize on drop, print as
//! `[redacted]`, and expose their bytes only through a method that names
//! why.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;

/// A 256-bit symmetric key (AES-256-GCM, HMAC-SHA256 or HKDF input).
#[derive(Clone)]
pub struct Key256(Zeroizing<[u8; 32]>);

impl Key256 {
    pub const LEN: usize = 32;

    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::random_bytes(k.as_mut())?;
        Ok(Self(k))
    }

    /// Takes key bytes (for example just unwrapped by a KMS); the source
    /// buffer is zeroized.
    pub fn from_slice(bytes: &mut [u8]) -> Result<Self, CryptoError> {
        if bytes.len() != Self::LEN {
            bytes.zeroize();
            return Err(CryptoError::KeyLength { expected: Self::LEN });
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(bytes);
        bytes.zeroize();
        Ok(Self(k))
    }

    /// The raw bytes, for handing to a cipher or to a KMS to wrap. Never
    /// for storing or logging: key material is only serialised wrapped.
    pub fn expose_for_cipher(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([redacted])")
    }
}

/// The version of a versioned key (organisation keys, record keys). Starts
/// at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyVersion(u32);

impl KeyVersion {
    pub const FIRST: Self = Self(1);

    pub fn new(v: u32) -> Option<Self> {
        (v >= 1).then_some(Self(v))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let k = Key256::from_slice(&mut [7u8; 32]).map(|k| format!("{k:?}"));
        assert_eq!(k.as_deref(), Ok("Key256([redacted])"));
    }

    #[test]
    fn from_slice_wipes_its_source_and_checks_length() {
        let mut src = [9u8; 32];
        assert!(Key256::from_slice(&mut src).is_ok());
        assert_eq!(src, [0u8; 32]);
        let mut short = [9u8; 16];
        assert_eq!(Key256::from_slice(&mut short).err(), Some(CryptoError::KeyLength { expected: 32 }));
        assert_eq!(short, [0u8; 16]);
    }

    #[test]
    fn generated_keys_differ() {
        let (a, b) = (Key256::generate(), Key256::generate());
        assert!(matches!((a, b), (Ok(a), Ok(b)) if a.expose_for_cipher() != b.expose_for_cipher()));
    }
}
