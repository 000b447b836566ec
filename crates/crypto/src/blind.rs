//! Blind indexes: a per-organisation key derived from the organisation key
//! with HKDF-SHA256, and HMAC-SHA256 tokens of normalised values, so exact
//! matches can be found without storing plaintext.

use std::fmt;

use domain::OrgId;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{CryptoError, Key256, canonical};

/// HKDF-SHA256 (RFC 5869): returns the pseudorandom key and `len` bytes of
/// output keying material.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let (prk, hk) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut okm = vec![0u8; len];
    hk.expand(info, &mut okm).map_err(|_| CryptoError::Kdf("HKDF output too long".into()))?;
    Ok((prk.to_vec(), okm))
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key that makes an organisation's blind-index tokens.
#[derive(Debug)]
pub struct BlindIndexKey(Key256);

impl BlindIndexKey {
    /// Derives the blind-index key from an organisation key, bound to the
    /// organisation so two organisations' tokens never match.
    pub fn derive(org_key: &Key256, org: OrgId) -> Result<Self, CryptoError> {
        let info = canonical(&[b"strongroom/blind-index/v1", org.as_bytes()]);
        let (_, mut okm) = hkdf_sha256(&[], org_key.expose_for_cipher(), &info, Key256::LEN)?;
        Key256::from_slice(&mut okm).map(Self)
    }

    /// The token for a field's normalised value.
    pub fn token(&self, field: &str, normalised: &[u8]) -> BlindToken {
        BlindToken(hmac_sha256(self.0.expose_for_cipher(), &canonical(&[field.as_bytes(), normalised])))
    }
}

/// A blind-index token: equal values in the same field of the same
/// organisation give equal tokens.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlindToken([u8; 32]);

impl BlindToken {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BlindToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindToken([redacted])")
    }
}

/// The key of one pseudonymisation run: random, held only in memory for
/// the run and zeroized after, so the mapping from real values to fakes
/// cannot be recomputed or reversed later.
#[derive(Debug)]
pub struct PseudonymKey(Key256);

impl PseudonymKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Key256::generate().map(Self)
    }

    /// The 32-byte seed for the fake of `value` made by generator `kind`:
    /// equal inputs give equal seeds within a run, and nothing links runs.
    pub fn seed(&self, kind: &str, value: &[u8]) -> [u8; 32] {
        hmac_sha256(self.0.expose_for_cipher(), &canonical(&[b"strongroom/pseudonym/v1", kind.as_bytes(), value]))
    }
}
