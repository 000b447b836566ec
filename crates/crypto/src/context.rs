//! Canonical associated data: an unambiguous, length-prefixed encoding of
//! labelled parts, and the encryption context under which a KMS wraps a key.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Encodes parts as `u32 big-endian length || bytes` each, so no two
/// different lists of parts encode alike.
pub fn canonical(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// SHA-256 of a [`canonical`] encoding, fed part by part without building
/// the encoding in memory (the audit chain hashes every entry this way).
#[derive(Clone, Debug, Default)]
pub struct CanonicalSha256(Sha256);

impl CanonicalSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one part, as [`canonical`] encodes it.
    pub fn part(&mut self, part: &[u8]) -> &mut Self {
        self.0.update(u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        self.0.update(part);
        self
    }

    /// Adds one part that is itself the [`canonical`] encoding of `parts`.
    pub fn nested<'a>(&mut self, parts: impl Iterator<Item = &'a [u8]> + Clone) -> &mut Self {
        let len: usize = parts.clone().map(|p| p.len() + 4).sum();
        self.0.update(u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        for part in parts {
            self.part(part);
        }
        self
    }

    pub fn finish(&mut self) -> [u8; 32] {
        std::mem::take(&mut self.0).finalize().into()
    }
}

/// What a key wrapped by the root key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// An organisation's key.
    OrgKey,
    /// The embedded database's page-encryption key (SQLCipher).
    DatabaseKey,
    /// The deployment key that encrypts platform secrets (TOTP seeds).
    PlatformSecrets,
    /// The seed of an Ed25519 key that signs access tokens.
    TokenSigning,
    /// The seed of the Ed25519 key that signs audit checkpoints.
    AuditSigning,
    /// The data key of one backup archive (scope: the backup's id).
    BackupKey,
    /// An organisation's backup escrow key, which seals its key versions
    /// inside archives and is itself never archived (scope: the org id).
    BackupEscrow,
    /// Used only by the KMS conformance tests.
    Conformance,
}

impl KeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgKey => "org-key",
            Self::DatabaseKey => "database-key",
            Self::PlatformSecrets => "platform-secrets",
            Self::TokenSigning => "token-signing",
            Self::AuditSigning => "audit-signing",
            Self::BackupKey => "backup-key",
            Self::BackupEscrow => "backup-escrow",
            Self::Conformance => "conformance",
        }
    }
}

/// The encryption context a key is wrapped under: `{purpose, scope,
/// version}`, where scope is an organisation id or `deployment`. A wrapped
/// key unwraps only under the same context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyContext {
    pub purpose: KeyPurpose,
    pub scope: String,
    pub version: u32,
}

impl KeyContext {
    pub fn org_key(org: domain::OrgId, version: crate::KeyVersion) -> Self {
        Self { purpose: KeyPurpose::OrgKey, scope: org.to_string(), version: version.get() }
    }

    /// The data key of the backup `id`.
    pub fn backup(id: uuid::Uuid) -> Self {
        Self { purpose: KeyPurpose::BackupKey, scope: id.to_string(), version: 1 }
    }

    /// The backup escrow key of an organisation.
    pub fn backup_escrow(org: domain::OrgId) -> Self {
        Self { purpose: KeyPurpose::BackupEscrow, scope: org.to_string(), version: 1 }
    }

    pub fn deployment(purpose: KeyPurpose) -> Self {
        Self { purpose, scope: "deployment".into(), version: 1 }
    }

    /// The context as a map, for KMS APIs that take one (AWS KMS).
    pub fn as_map(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("purpose".to_owned(), self.purpose.as_str().to_owned()),
            ("scope".to_owned(), self.scope.clone()),
            ("version".to_owned(), self.version.to_string()),
        ])
    }

    /// The context as associated-data bytes, for AEAD-based backends.
    pub fn to_aad(&self) -> Vec<u8> {
        let version = self.version.to_be_bytes();
        canonical(&[b"strongroom/key-context/v1", self.purpose.as_str().as_bytes(), self.scope.as_bytes(), &version])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_hash_equals_the_hash_of_the_encoding() {
        let inner: [&[u8]; 3] = [b"email", b"", b"phone"];
        let expected = crate::sha256(&canonical(&[b"label", &canonical(&inner), b"", b"tail"]));
        let got = CanonicalSha256::new().part(b"label").nested(inner.into_iter()).part(b"").part(b"tail").finish();
        assert_eq!(got, expected);
        let empty: [&[u8]; 0] = [];
        assert_eq!(
            CanonicalSha256::new().nested(empty.into_iter()).finish(),
            crate::sha256(&canonical(&[&canonical(&empty)]))
        );
    }

    #[test]
    fn canonical_encoding_is_unambiguous() {
        assert_ne!(canonical(&[b"ab", b"c"]), canonical(&[b"a", b"bc"]));
        assert_ne!(canonical(&[b"abc"]), canonical(&[b"abc", b""]));
        assert_eq!(canonical(&[b"x"]), vec![0, 0, 0, 1, b'x']);
    }

    #[test]
    fn contexts_differ_by_every_field() {
        let base = KeyContext::deployment(KeyPurpose::DatabaseKey);
        let other_purpose = KeyContext { purpose: KeyPurpose::OrgKey, ..base.clone() };
        let other_scope = KeyContext { scope: "x".into(), ..base.clone() };
        let other_version = KeyContext { version: 2, ..base.clone() };
        for other in [other_purpose, other_scope, other_version] {
            assert_ne!(base.to_aad(), other.to_aad());
            assert_ne!(base.as_map(), other.as_map());
        }
    }
}
