//! Profile records as stored: schema versions (field definitions only),
//! profile rows holding a wrapped record key, plain values as JSON text and
//! sealed values as one opaque blob, lookup terms, and attachment rows.
//! Nothing here is plaintext personal data; the engine encrypts before it
//! calls the store.

use domain::{OrgId, ProfileId, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

/// One version of an organisation's schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaRecord {
    pub org_id: OrgId,
    pub version: u32,
    /// The field definitions as JSON text (names, types, flags; no values).
    pub fields: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// A profile as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub org_id: OrgId,
    pub id: ProfileId,
    /// Starts at 1, grows by one on every change; the `ETag`.
    pub revision: i64,
    pub schema_version: u32,
    /// The user whose record this is, if linked.
    pub owner: Option<UserId>,
    /// The record key, wrapped by organisation key `key_version`.
    pub record_key: Vec<u8>,
    pub key_version: u32,
    /// The names of the fields this record holds, space-separated.
    pub field_names: String,
    /// Plain-classified values, as JSON text.
    pub plain: String,
    /// Encrypted values, in the engine's sealed-map encoding.
    pub sealed: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

impl std::fmt::Debug for ProfileRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileRow")
            .field("org_id", &self.org_id)
            .field("id", &self.id)
            .field("revision", &self.revision)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// One lookup term of a profile: a blind-index token, or the normalised
/// value of a plain field.
#[derive(Clone, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub term: Vec<u8>,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term").field("field", &self.field).finish_non_exhaustive()
    }
}

/// A filter on one field: a profile matches if it has any of `terms` for
/// it (several when tokens of more than one key version are live).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermFilter {
    pub field: String,
    pub terms: Vec<Vec<u8>>,
}

/// An attachment as stored; its bytes are in the blob store under
/// `blob_key`, encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub org_id: OrgId,
    pub profile_id: ProfileId,
    pub id: Uuid,
    /// Blind-index token of the name, for lookup by name.
    pub name_token: Vec<u8>,
    /// The name, encrypted under the record key.
    pub name_sealed: Vec<u8>,
    pub content_type: String,
    /// Plaintext size in bytes.
    pub size: i64,
    pub blob_key: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

impl std::fmt::Debug for AttachmentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentRow")
            .field("profile_id", &self.profile_id)
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}
