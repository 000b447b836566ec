//! Key management: the root key that wraps every other key lives in a
//! backend and never leaves it. `Kms` wraps and unwraps key material under
//! that root key with an encryption context, for four backends: the local
//! sealed keystore (the embedded default), a PKCS#11 HSM, AWS KMS and
//! Vault/OpenBao Transit.
//!
//! Architecture invariant: only this crate talks to key backends. Wrapped
//! keys are opaque bytes that only the backend that made them can open.

#[cfg(feature = "aws")]
mod aws;
mod local;
mod pkcs11;
mod transit;

use crypto::{Key256, KeyContext};

#[cfg(feature = "aws")]
pub use aws::{AwsKms, AwsKmsConfig};
pub use local::{LocalKms, UnsealSecret, create_private_dir, write_private};
pub use pkcs11::{Pkcs11Config, Pkcs11Kms};
pub use transit::{TransitConfig, TransitKms, client_tls_config};

/// Why a KMS call failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The backend could not be reached or did not answer: callers answer
    /// 503 and never fall back to anything.
    #[error("the {backend} key backend is unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    /// The backend refused: wrong context, wrong key, altered ciphertext.
    #[error("the {backend} key backend refused to unwrap: wrong context or altered key material")]
    Refused { backend: &'static str },
    /// The backend is misconfigured; `setting` names what to fix.
    #[error("{setting}: {reason}")]
    Config { setting: &'static str, reason: String },
    /// The local keystore could not be unsealed.
    #[error("cannot unseal the local keystore: {0}")]
    Unseal(String),
    /// The local keystore files could not be read or written.
    #[error("keystore {path}: {reason}")]
    Keystore { path: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl KmsError {
    /// Whether the error means "try again later" rather than "never".
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Key material wrapped by a backend's root key: opaque bytes, safe to
/// store.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// What a backend says about itself, for `keys status` and `attest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsInfo {
    /// `local`, `pkcs11`, `aws-kms` or `transit`.
    pub backend: &'static str,
    /// Which root key: a label, ARN or Transit key name (never secret).
    pub key_id: String,
}

/// A key backend.
#[derive(Debug)]
pub enum Kms {
    Local(LocalKms),
    Pkcs11(Pkcs11Kms),
    Transit(TransitKms),
    #[cfg(feature = "aws")]
    Aws(AwsKms),
}

macro_rules! each {
    ($self:ident, $k:ident => $e:expr) => {
        match $self {
            Kms::Local($k) => $e,
            Kms::Pkcs11($k) => $e,
            Kms::Transit($k) => $e,
            #[cfg(feature = "aws")]
            Kms::Aws($k) => $e,
        }
    };
}

impl Kms {
    /// Wraps key material under the root key, bound to `context`.
    pub async fn wrap(&self, key: &Key256, context: &KeyContext) -> Result<WrappedKey, KmsError> {
        each!(self, k => k.wrap(key, context).await)
    }

    /// Unwraps key material; fails unless `context` is the one it was
    /// wrapped under.
    pub async fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<Key256, KmsError> {
        each!(self, k => k.unwrap(wrapped, context).await)
    }

    /// A fresh key and its wrapped form.
    pub async fn generate_data_key(&self, context: &KeyContext) -> Result<(Key256, WrappedKey), KmsError> {
        let key = Key256::generate()?;
        let wrapped = self.wrap(&key, context).await?;
        Ok((key, wrapped))
    }

    /// Whether the backend answers and its root key is usable.
    pub async fn health(&self) -> Result<(), KmsError> {
        each!(self, k => k.health().await)
    }

    pub fn info(&self) -> KmsInfo {
        each!(self, k => k.info())
    }

    /// Adds a root key version where the backend supports it; new wraps use
    /// it, old wrapped keys keep unwrapping. Returns the new version.
    pub async fn rotate_root(&self) -> Result<u32, KmsError> {
        each!(self, k => k.rotate_root().await)
    }
}

/// The header every locally framed wrapped key starts with: a format byte
/// and the root key version that wrapped it.
pub(crate) fn frame(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits the header off a framed wrapped key.
pub(crate) fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), crypto::CryptoError> {
    match bytes {
        [1, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(crypto::CryptoError::Malformed("wrapped key: unknown format")),
    }
}
