//! Deriving a sealing key from an unseal passphrase or key file with
//! Argon2id; the parameters travel with what they seal so they can be
//! raised later.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::{CryptoError, Key256};

/// Argon2id parameters and salt for one sealed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealingKdf {
    /// Memory in KiB.
    pub m_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: [u8; 16],
}

impl SealingKdf {
    /// Fresh salt with the default cost: 64 MiB, 3 passes, 1 lane (above
    /// OWASP's minimum of 19 MiB and 2 passes; the cost is paid once per
    /// unseal).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut salt = [0u8; 16];
        crate::random_bytes(&mut salt)?;
        Ok(Self { m_kib: 64 * 1024, t_cost: 3, p_cost: 1, salt })
    }
}

/// Derives the 256-bit sealing key from a secret.
pub fn derive_sealing_key(secret: &[u8], kdf: &SealingKdf) -> Result<Key256, CryptoError> {
    let params = Params::new(kdf.m_kib, kdf.t_cost, kdf.p_cost, Some(Key256::LEN))
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(secret, &kdf.salt, out.as_mut())
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Key256::from_slice(out.as_mut())
}
