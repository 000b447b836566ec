//! Cryptography for Strongroom over well-kept primitives (RustCrypto's
//! AES-GCM, HKDF, HMAC, SHA-2, Argon2): typed zeroizing keys, the AEAD
//! envelope with canonical associated data, the versioned field and
//! record-key formats, the chunked streaming format for attachments and
//! backups, and blind-index tokens.
//!
//! Architecture invariant: this crate does no IO (randomness comes from the
//! operating system's generator) and depends only on `domain`. Every choice
//! made here is recorded in `docs/security.md`.

mod aead;
mod blind;
mod context;
mod envelope;
pub mod jose;
mod key;
mod passphrase;
mod password;
pub mod stream;
mod token;
mod totp;

pub use aead::{NONCE_LEN, TAG_LEN, danger_seal_with_nonce, open, seal};
pub use blind::{BlindIndexKey, BlindToken, PseudonymKey, hkdf_sha256, hmac_sha256};
pub use context::{CanonicalSha256, KeyContext, KeyPurpose, canonical};
pub use envelope::{
    FIELD_FORMAT_V1, RECORD_KEY_FORMAT_V1, decrypt_field, encrypt_field, unwrap_record_key, wrap_record_key,
    wrapped_record_key_version,
};
pub use key::{Key256, KeyVersion};
pub use passphrase::{SealingKdf, derive_sealing_key};
pub use password::{PasswordPolicy, PolicyViolation, Verified, hash_password, verify_dummy, verify_password};
pub use token::{OpaqueToken, sha256};
pub use totp::{TotpSecret, qr_svg};

/// Why a cryptographic operation failed. Deliberately uninformative about
/// secrets: a failed decrypt says only that it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong associated data, or altered
    /// bytes.
    #[error("decryption failed: wrong key or context, or the data was altered")]
    Decrypt,
    /// The ciphertext is too short or has an unknown format version.
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The ciphertext was made under another key version than expected.
    #[error("ciphertext is for key version {found}, expected {expected}")]
    WrongVersion { expected: u32, found: u32 },
    /// Key material of the wrong length.
    #[error("key material must be {expected} bytes")]
    KeyLength { expected: usize },
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// Key derivation failed (bad parameters).
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// Constant-time equality for secrets and tokens.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Fills a buffer from the operating system's generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}
