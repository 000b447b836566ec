//! Identity records as stored: users, memberships, sessions and one-time
//! password-setup tokens. Secrets are never stored: passwords as Argon2id
//! PHC strings, session and setup tokens as their SHA-256.

use domain::{DisplayName, Email, OrgId, Role, Scope, ServiceAccountId, SessionId, UserId};
use time::OffsetDateTime;

use crate::{Result, StoreError};

/// Whether an account may sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            _ => Err(StoreError::Corrupt { what: "user", why: "unknown status".into() }),
        }
    }
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub email: Email,
    pub display_name: DisplayName,
    /// Argon2id PHC string; `None` until a password is set.
    pub password_hash: Option<String>,
    pub is_operator: bool,
    pub status: UserStatus,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("is_operator", &self.is_operator)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A change to one membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add the member, or set their role.
    Put(Role),
    Remove,
}

/// What became of a membership change, decided inside its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipOutcome {
    /// Made; the role before it (`None`: was not a member).
    Done { before: Option<Role> },
    /// A removal of someone who is not a member: nothing changed.
    NotMember,
    /// The change makes or unmakes an owner and the caller may not.
    OwnerPermissionNeeded,
    /// The change would leave the organisation without an owner.
    LastOwner,
}

/// A member of an organisation, with the account's details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub role: Role,
    pub email: Email,
    pub display_name: DisplayName,
    pub created_at: OffsetDateTime,
}

/// A sign-in session. Its secret is not here: only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub mfa_passed: bool,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// The operator acting as the user, under `account_grant`.
    pub acting_operator: Option<UserId>,
    pub account_grant: Option<uuid::Uuid>,
}

/// A user's TOTP enrolment as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The seed, encrypted under the platform key `key_version`.
    pub seed: Vec<u8>,
    pub key_version: u32,
    pub confirmed: bool,
    pub last_step: Option<i64>,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord").field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

/// Why a password-setup token was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupPurpose {
    /// The first password of a new account.
    Initial,
    /// A reset requested by the account's owner.
    Reset,
}

impl SetupPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Reset => "reset",
        }
    }
}

pub(crate) fn corrupt(what: &'static str) -> impl Fn(domain::ParseError) -> StoreError {
    move |e| StoreError::Corrupt { what, why: e.to_string() }
}

/// See [`crate::Store::bearer_facts`].
#[derive(Debug, Clone)]
pub struct BearerFacts {
    pub account: ServiceAccountRecord,
    pub org_encrypts_tokens: bool,
    pub jti_revoked: bool,
    /// The account's organisation, read in the same statement.
    pub org: OrgAccess,
}

/// What every authorisation needs to know about an organisation, read in
/// one statement: see [`crate::Store::org_access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgAccess {
    pub status: domain::OrgStatus,
    pub requires_mfa: bool,
    /// The current profile schema's version; `None` before the first.
    pub schema_version: Option<u32>,
    /// When that version was stored: with the version, it names the
    /// schema even across a restore that took versions back.
    pub schema_created_at: Option<OffsetDateTime>,
    /// The newest active key version; `None` if no key is active.
    pub active_key: Option<u32>,
}

impl OrgAccess {
    /// From a row's `status`, `require_mfa`, `schema_version`,
    /// `schema_created_at` and `active_key` columns, as
    /// `org_access_columns!` names them (either backend).
    pub(crate) fn from_row<'r, R>(r: &'r R) -> Result<Self>
    where
        R: sqlx::Row,
        &'r str: sqlx::ColumnIndex<R>,
        &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        OffsetDateTime: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let version = |column: &'r str| -> Result<Option<u32>> {
            let v: Option<i64> = r.try_get(column)?;
            v.map(|v| {
                u32::try_from(v)
                    .map_err(|_| StoreError::Corrupt { what: "organisation", why: "version out of range".into() })
            })
            .transpose()
        };
        let status: &str = r.try_get("status")?;
        Ok(Self {
            status: domain::OrgStatus::parse(status).map_err(corrupt("organisation"))?,
            requires_mfa: r.try_get("require_mfa")?,
            schema_version: version("schema_version")?,
            schema_created_at: r.try_get("schema_created_at")?,
            active_key: version("active_key")?,
        })
    }
}

/// The columns [`OrgAccess`] is read from, for an `organisations` row
/// named `o` (the same text on both backends: `max` of an integer column
/// is a BIGINT on PostgreSQL once cast).
macro_rules! org_access_columns {
    () => {
        "o.status, o.require_mfa,
         (SELECT CAST(max(s.version) AS BIGINT) FROM profile_schemas s WHERE s.org_id = o.id) AS schema_version,
         (SELECT s.created_at FROM profile_schemas s WHERE s.org_id = o.id
          ORDER BY s.version DESC LIMIT 1) AS schema_created_at,
         (SELECT CAST(max(k.version) AS BIGINT) FROM org_keys k WHERE k.org_id = o.id AND k.state = 'active') AS active_key"
    };
}
pub(crate) use org_access_columns;

/// A service account as stored: its secret only as SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountRecord {
    pub org_id: OrgId,
    pub id: ServiceAccountId,
    pub name: String,
    pub client_id: String,
    pub secret_hash: [u8; 32],
    pub scopes: Vec<Scope>,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for ServiceAccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountRecord")
            .field("org_id", &self.org_id)
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A token-signing key: its Ed25519 seed wrapped by the root key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub seed_wrapped: Vec<u8>,
    pub kms_key_id: String,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// An invitation to join an organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitationRecord {
    pub org_id: OrgId,
    pub id: uuid::Uuid,
    pub email: Email,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub accepted_at: Option<OffsetDateTime>,
}
