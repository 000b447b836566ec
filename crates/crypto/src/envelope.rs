//! The versioned formats of the key hierarchy below the organisation key:
//! record keys wrapped by an organisation key, and field values encrypted by
//! a record key. Associated data binds each ciphertext to its organisation,
//! record, field and key version, so a ciphertext moved anywhere else fails.
//!
//! Field ciphertext, format 1:
//!   `0x01 || record-key version (u32 BE) || nonce (12) || ciphertext || tag (16)`
//!   AAD = canonical("strongroom/field/v1", org id, profile id, field name, version)
//! Wrapped record key, format 1:
//!   `0x01 || org-key version (u32 BE) || nonce (12) || key (32) || tag (16)`
//!   AAD = canonical("strongroom/record-key/v1", org id, profile id, version)

use domain::{OrgId, ProfileId};
use zeroize::Zeroizing;

use crate::{CryptoError, Key256, KeyVersion, canonical};

pub const FIELD_FORMAT_V1: u8 = 1;
pub const RECORD_KEY_FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 5;

fn header(format: u8, version: KeyVersion) -> [u8; HEADER_LEN] {
    let v = version.get().to_be_bytes();
    [format, v[0], v[1], v[2], v[3]]
}

/// Splits a header off, checking the format and returning the version.
fn parse_header(format: u8, bytes: &[u8]) -> Result<(KeyVersion, &[u8]), CryptoError> {
    if bytes.len() < HEADER_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    if bytes[0] != format {
        return Err(CryptoError::Malformed("unknown format version"));
    }
    let v = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let version = KeyVersion::new(v).ok_or(CryptoError::Malformed("key version 0"))?;
    Ok((version, &bytes[HEADER_LEN..]))
}

fn field_aad(org: OrgId, profile: ProfileId, field: &str, version: KeyVersion) -> Vec<u8> {
    let v = version.get().to_be_bytes();
    canonical(&[b"strongroom/field/v1", org.as_bytes(), profile.as_bytes(), field.as_bytes(), &v])
}

fn record_key_aad(org: OrgId, profile: ProfileId, version: KeyVersion) -> Vec<u8> {
    let v = version.get().to_be_bytes();
    canonical(&[b"strongroom/record-key/v1", org.as_bytes(), profile.as_bytes(), &v])
}

/// Encrypts one field value under a record key.
pub fn encrypt_field(
    record_key: &Key256,
    version: KeyVersion,
    org: OrgId,
    profile: ProfileId,
    field: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let sealed = crate::seal(record_key, &field_aad(org, profile, field, version), plaintext)?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header(FIELD_FORMAT_V1, version));
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts one field value; fails unless organisation, profile, field and
/// record-key version are exactly those it was encrypted for.
pub fn decrypt_field(
    record_key: &Key256,
    version: KeyVersion,
    org: OrgId,
    profile: ProfileId,
    field: &str,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (found, sealed) = parse_header(FIELD_FORMAT_V1, ciphertext)?;
    if found != version {
        return Err(CryptoError::WrongVersion { expected: version.get(), found: found.get() });
    }
    crate::open(record_key, &field_aad(org, profile, field, version), sealed)
}

/// Wraps a record key under an organisation key version.
pub fn wrap_record_key(
    org_key: &Key256,
    org_key_version: KeyVersion,
    org: OrgId,
    profile: ProfileId,
    record_key: &Key256,
) -> Result<Vec<u8>, CryptoError> {
    let aad = record_key_aad(org, profile, org_key_version);
    let sealed = crate::seal(org_key, &aad, record_key.expose_for_cipher())?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header(RECORD_KEY_FORMAT_V1, org_key_version));
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The organisation key version a wrapped record key needs.
pub fn wrapped_record_key_version(wrapped: &[u8]) -> Result<KeyVersion, CryptoError> {
    parse_header(RECORD_KEY_FORMAT_V1, wrapped).map(|(v, _)| v)
}

/// Unwraps a record key with the organisation key version it names.
pub fn unwrap_record_key(
    org_key: &Key256,
    org_key_version: KeyVersion,
    org: OrgId,
    profile: ProfileId,
    wrapped: &[u8],
) -> Result<Key256, CryptoError> {
    let (found, sealed) = parse_header(RECORD_KEY_FORMAT_V1, wrapped)?;
    if found != org_key_version {
        return Err(CryptoError::WrongVersion { expected: org_key_version.get(), found: found.get() });
    }
    let mut key = crate::open(org_key, &record_key_aad(org, profile, found), sealed)?;
    Key256::from_slice(&mut key)
}
