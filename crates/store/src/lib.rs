//! Persistence: one repository API over two hand-written backends, SQLite
//! (the embedded default) and PostgreSQL, each with its own migrations.
//!
//! Architecture invariant: only this crate knows SQL. Every call on
//! tenant-owned data takes an `OrgId` and filters by it in the query itself.

/// Runs one body on whichever backend's pool the store has. `both!(@on
/// self, writer, |pool| ...)` picks SQLite's writing connection instead:
/// see [`both_write!`].
macro_rules! both {
    ($self:ident, |$pool:ident| $body:expr) => {
        both!(@on $self, pool, |$pool| $body)
    };
    (@on $self:ident, $sqlite:ident, |$pool:ident| $body:expr) => {
        match &$self.backend {
            crate::Backend::Sqlite(s) => {
                let $pool = &s.$sqlite;
                $body
            }
            crate::Backend::Postgres(s) => {
                let $pool = &s.pool;
                $body
            }
        }
    };
}

/// [`both!`] for a statement that writes: SQLite's writes take the
/// store's one writing connection.
macro_rules! both_write {
    ($self:ident, |$pool:ident| $body:expr) => {
        both!(@on $self, writer, |$pool| $body)
    };
}

/// SQL in the two dialects: SQLite's `?` and PostgreSQL's `$n` placeholders.
macro_rules! sql2 {
    ($self:ident, $sqlite:expr, $pg:expr) => {
        match &$self.backend {
            crate::Backend::Sqlite(_) => $sqlite,
            crate::Backend::Postgres(_) => $pg,
        }
    };
}

mod audit;
pub mod blobs;
pub mod dump;
mod identity;
mod migrate;
mod offboard;
mod postgres;
mod postgres_audit;
mod postgres_identity;
mod postgres_profiles;
mod postgres_support;
mod profiles;
mod retention;
mod sqlite;
mod sqlite_audit;
mod sqlite_identity;
mod sqlite_profiles;
mod sqlite_support;
mod support;

use std::path::PathBuf;

use domain::{Email, KeyState, OrgId, OrgSlug, Organisation, ProfileId, Role, ServiceAccountId, SessionId, UserId};
use time::OffsetDateTime;

pub use audit::{AuditAppend, AuditQuery, AuditRow, AuditRowRef, CheckpointRow, SinkCursor};
pub use blobs::{BlobConfig, BlobError, BlobKey, BlobStore};
pub use dump::{BackupRunRow, DrillRow, EscrowRow, Restore, Snapshot};
pub use identity::{
    BearerFacts, InvitationRecord, MemberRecord, MembershipChange, MembershipOutcome, OrgAccess, ServiceAccountRecord,
    SessionRecord, SetupPurpose, SigningKeyRecord, TotpRecord, UserRecord, UserStatus,
};
pub use migrate::{Applied, Migration, MigrationError, plan};
pub use offboard::{PURGED, Purged};
pub use profiles::{AttachmentRow, ProfileRow, SchemaRecord, Term, TermFilter};
pub use retention::RetentionRow;
pub use sqlite::connect_options as sqlite_connect_options;
pub use support::{AccountGrantRow, SupportSessionRow, SupportStatus};

/// Where the store lives.
#[derive(Clone)]
pub enum StoreConfig {
    /// The embedded database file, page-encrypted with SQLCipher under
    /// `key` (itself stored wrapped by the KMS root key).
    Sqlite { path: PathBuf, key: zeroize::Zeroizing<[u8; 32]> },
    /// A PostgreSQL server; the URL may carry a password, so this type's
    /// `Debug` never prints it.
    Postgres { url: String, max_connections: u32 },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path, .. } => {
                f.debug_struct("Sqlite").field("path", path).field("key", &"[redacted]").finish()
            }
            Self::Postgres { max_connections, .. } => f
                .debug_struct("Postgres")
                .field("url", &"[redacted]")
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

/// What went wrong in the store. Messages name the operation and the
/// backend, never a stored value or a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("could not open the {backend} database: {source}")]
    Connect { backend: &'static str, source: sqlx::Error },
    /// The schema history does not match this binary.
    #[error(transparent)]
    Migration(#[from] MigrationError),
    /// Applying a migration failed; it was rolled back.
    #[error("applying migration {label} failed: {source}")]
    MigrationFailed { label: String, source: sqlx::Error },
    /// A unique value is already taken.
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    /// A stored row could not be read back into its type.
    #[error("stored {what} is invalid: {why}")]
    Corrupt { what: &'static str, why: String },
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store of one deployment (later: of one region).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Dispatches one call to the backend's implementation.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens the store and brings its schema up to date, refusing a schema
    /// history that does not match this binary.
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        let backend = match config {
            StoreConfig::Sqlite { path, key } => Backend::Sqlite(sqlite::SqliteStore::open(path, key).await?),
            StoreConfig::Postgres { url, max_connections } => {
                Backend::Postgres(postgres::PgStore::open(url, *max_connections).await?)
            }
        };
        Ok(Self { backend })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self.ping())
    }

    /// The migrations recorded in the database, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<Applied>> {
        dispatch!(self.applied_migrations())
    }

    /// Creates an organisation together with its first key, in one
    /// transaction: there is never an organisation without a key. The slug
    /// must be unused.
    pub async fn create_org(&self, org: &Organisation, first_key: &OrgKeyRecord) -> Result<()> {
        dispatch!(self.create_org(org, first_key))
    }

    /// Every key version of one organisation, oldest first.
    pub async fn org_keys(&self, org: OrgId) -> Result<Vec<OrgKeyRecord>> {
        dispatch!(self.org_keys(org))
    }

    /// Every organisation key of the deployment (for status and root-key
    /// re-wrapping), by organisation then version.
    pub async fn all_org_keys(&self) -> Result<Vec<OrgKeyRecord>> {
        dispatch!(self.all_org_keys())
    }

    /// Adds a new active key version and retires the previous active one,
    /// in one transaction. Fails with `Conflict` if the version exists.
    pub async fn rotate_org_key(&self, new: &OrgKeyRecord) -> Result<()> {
        dispatch!(self.rotate_org_key(new))
    }

    /// Replaces a key version's wrapped form (after a root-key rotation).
    /// Returns false if the version was destroyed meanwhile.
    pub async fn rewrap_org_key(&self, org: OrgId, version: u32, wrapped: &[u8], kms_key_id: &str) -> Result<bool> {
        dispatch!(self.rewrap_org_key(org, version, wrapped, kms_key_id))
    }

    /// Crypto-shredding: erases every wrapped key version of an
    /// organisation. Returns how many versions were destroyed.
    pub async fn destroy_org_keys(&self, org: OrgId) -> Result<u64> {
        dispatch!(self.destroy_org_keys(org))
    }

    pub async fn get_org(&self, id: OrgId) -> Result<Option<Organisation>> {
        dispatch!(self.get_org(id))
    }

    pub async fn find_org_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organisation>> {
        dispatch!(self.find_org_by_slug(slug))
    }

    /// Every organisation, oldest first.
    pub async fn list_orgs(&self) -> Result<Vec<Organisation>> {
        dispatch!(self.list_orgs())
    }

    /// Creates a user; the e-mail must be unused.
    pub async fn create_user(&self, user: &UserRecord) -> Result<()> {
        dispatch!(self.create_user(user))
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        dispatch!(self.user_by_id(id))
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>> {
        dispatch!(self.user_by_email(email))
    }

    /// Every user account, oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        dispatch!(self.list_users())
    }

    /// Stores a new password hash; false if the user does not exist.
    pub async fn set_password_hash(&self, id: UserId, hash: &str) -> Result<bool> {
        dispatch!(self.set_password_hash(id, hash))
    }

    /// Adds a member, or changes the role of an existing one.
    pub async fn put_membership(&self, org: OrgId, user: UserId, role: Role) -> Result<()> {
        dispatch!(self.put_membership(org, user, role))
    }

    /// Removes a member; false if they were not one.
    pub async fn remove_membership(&self, org: OrgId, user: UserId) -> Result<bool> {
        dispatch!(self.remove_membership(org, user))
    }

    /// Adds, re-roles or removes a member in one transaction that holds
    /// the organisation's row, so concurrent changes cannot together
    /// remove its last owner; the audit entries are appended in the same
    /// transaction. Nothing changes unless the outcome is `Done`.
    pub async fn change_membership(
        &self,
        org: OrgId,
        user: UserId,
        change: MembershipChange,
        may_touch_owners: bool,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<MembershipOutcome> {
        dispatch!(self.change_membership(org, user, change, may_touch_owners, audit))
    }

    /// The role of a user in an organisation, if a member.
    pub async fn membership_role(&self, org: OrgId, user: UserId) -> Result<Option<Role>> {
        dispatch!(self.membership_role(org, user))
    }

    /// The organisations a user belongs to, with their role.
    pub async fn memberships_of(&self, user: UserId) -> Result<Vec<(OrgId, Role)>> {
        dispatch!(self.memberships_of(user))
    }

    /// The members of one organisation.
    pub async fn members(&self, org: OrgId) -> Result<Vec<MemberRecord>> {
        dispatch!(self.members(org))
    }

    /// How many owners an organisation has.
    pub async fn count_owners(&self, org: OrgId) -> Result<i64> {
        dispatch!(self.count_owners(org))
    }

    /// Stores a new session under the SHA-256 of its secret.
    pub async fn create_session(&self, session: &SessionRecord, secret_hash: &[u8; 32]) -> Result<()> {
        dispatch!(self.create_session(session, secret_hash))
    }

    /// The session whose secret has this SHA-256.
    pub async fn session_by_secret(&self, secret_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        dispatch!(self.session_by_secret(secret_hash))
    }

    /// Records activity on a session.
    pub async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<()> {
        dispatch!(self.touch_session(id, at))
    }

    /// Revokes one of a user's sessions; false if there was no such live
    /// session of theirs.
    pub async fn revoke_session(&self, user: UserId, id: SessionId) -> Result<bool> {
        dispatch!(self.revoke_session(user, id))
    }

    /// Revokes every session of a user; returns how many.
    pub async fn revoke_all_sessions(&self, user: UserId) -> Result<u64> {
        dispatch!(self.revoke_all_sessions(user))
    }

    /// A user's sessions that are neither revoked nor expired.
    pub async fn live_sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>> {
        dispatch!(self.live_sessions_of(user))
    }

    /// Stores a one-time password-setup token (its SHA-256).
    pub async fn create_password_setup(
        &self,
        token_hash: &[u8; 32],
        user: UserId,
        purpose: SetupPurpose,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        dispatch!(self.create_password_setup(token_hash, user, purpose, expires_at))
    }

    /// The user of a password-setup token that is unused and unexpired,
    /// without using it up.
    pub async fn peek_password_setup(&self, token_hash: &[u8; 32], purpose: SetupPurpose) -> Result<Option<UserId>> {
        dispatch!(self.peek_password_setup(token_hash, purpose))
    }

    /// Uses up a password-setup token, atomically: returns its user if the
    /// token exists, has this purpose, is unused and unexpired.
    pub async fn take_password_setup(&self, token_hash: &[u8; 32], purpose: SetupPurpose) -> Result<Option<UserId>> {
        dispatch!(self.take_password_setup(token_hash, purpose))
    }

    /// The newest version of a platform key: (version, wrapped, root key id).
    pub async fn platform_key(&self, purpose: &str) -> Result<Option<(u32, Vec<u8>, String)>> {
        dispatch!(self.platform_key(purpose))
    }

    /// Stores a platform key version; `Conflict` if another instance stored
    /// it first.
    pub async fn insert_platform_key(
        &self,
        purpose: &str,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<()> {
        dispatch!(self.insert_platform_key(purpose, version, wrapped, kms_key_id))
    }

    /// Replaces a platform key version's wrapped form (root rotation).
    pub async fn rewrap_platform_key(
        &self,
        purpose: &str,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<()> {
        dispatch!(self.rewrap_platform_key(purpose, version, wrapped, kms_key_id))
    }

    /// Starts (or restarts, if unconfirmed) a TOTP enrolment.
    pub async fn put_totp(&self, user: UserId, seed: &[u8], key_version: u32) -> Result<()> {
        dispatch!(self.put_totp(user, seed, key_version))
    }

    /// A user's TOTP seed (encrypted), key version, whether confirmed, and
    /// the last accepted step.
    pub async fn totp(&self, user: UserId) -> Result<Option<TotpRecord>> {
        dispatch!(self.totp(user))
    }

    /// Accepts a TOTP step, atomically: true only if it is later than every
    /// step accepted before (a code is never accepted twice). Confirms an
    /// enrolment.
    pub async fn accept_totp_step(&self, user: UserId, step: i64) -> Result<bool> {
        dispatch!(self.accept_totp_step(user, step))
    }

    /// Replaces a user's recovery codes (hashes).
    pub async fn replace_recovery_codes(&self, user: UserId, hashes: &[[u8; 32]]) -> Result<()> {
        dispatch!(self.replace_recovery_codes(user, hashes))
    }

    /// Uses up a recovery code, atomically; false if unknown or used.
    pub async fn use_recovery_code(&self, user: UserId, hash: &[u8; 32]) -> Result<bool> {
        dispatch!(self.use_recovery_code(user, hash))
    }

    /// Marks a session as having passed the second factor.
    pub async fn set_session_mfa(&self, id: SessionId) -> Result<()> {
        dispatch!(self.set_session_mfa(id))
    }

    /// What every authorisation needs to know about an organisation, in one
    /// read: its status, whether it requires 2FA of every member, and its
    /// current schema and active key versions. `None` if it does not exist.
    pub async fn org_access(&self, org: OrgId) -> Result<Option<OrgAccess>> {
        dispatch!(self.org_access(org))
    }

    /// Whether an organisation requires 2FA of every member.
    pub async fn org_requires_mfa(&self, org: OrgId) -> Result<bool> {
        dispatch!(self.org_requires_mfa(org))
    }

    pub async fn set_org_requires_mfa(&self, org: OrgId, required: bool) -> Result<()> {
        dispatch!(self.set_org_requires_mfa(org, required))
    }

    pub async fn create_service_account(&self, sa: &ServiceAccountRecord) -> Result<()> {
        dispatch!(self.create_service_account(sa))
    }

    pub async fn service_account_by_client_id(&self, client_id: &str) -> Result<Option<ServiceAccountRecord>> {
        dispatch!(self.service_account_by_client_id(client_id))
    }

    /// What checking a bearer token needs from the store, in one round
    /// trip: the service account with this client id, whether its
    /// organisation wants encrypted tokens, whether `jti` is revoked, and
    /// what authorising a call of that organisation needs ([`OrgAccess`]).
    pub async fn bearer_facts(&self, client_id: &str, jti: &str) -> Result<Option<BearerFacts>> {
        dispatch!(self.bearer_facts(client_id, jti))
    }

    /// An organisation's service accounts, revoked ones included.
    pub async fn service_accounts(&self, org: OrgId) -> Result<Vec<ServiceAccountRecord>> {
        dispatch!(self.service_accounts(org))
    }

    /// Revokes a service account; false if no live one of this organisation.
    pub async fn revoke_service_account(&self, org: OrgId, id: ServiceAccountId) -> Result<bool> {
        dispatch!(self.revoke_service_account(org, id))
    }

    /// Signing keys not retired, newest first.
    pub async fn live_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        dispatch!(self.live_signing_keys())
    }

    pub async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        dispatch!(self.insert_signing_key(key))
    }

    /// Replaces a signing key's wrapped seed (root rotation).
    pub async fn rewrap_signing_key(&self, kid: &str, seed_wrapped: &[u8], kms_key_id: &str) -> Result<()> {
        dispatch!(self.rewrap_signing_key(kid, seed_wrapped, kms_key_id))
    }

    /// Stops using a signing key, even for verification.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<()> {
        dispatch!(self.retire_signing_key(kid))
    }

    /// Records a revoked token id until it would have expired anyway.
    pub async fn revoke_jti(&self, jti: &str, expires_at: OffsetDateTime) -> Result<()> {
        dispatch!(self.revoke_jti(jti, expires_at))
    }

    /// Whether an organisation's access tokens are encrypted (JWE).
    pub async fn org_encrypts_tokens(&self, org: OrgId) -> Result<bool> {
        dispatch!(self.org_encrypts_tokens(org))
    }

    pub async fn set_org_encrypts_tokens(&self, org: OrgId, on: bool) -> Result<()> {
        dispatch!(self.set_org_encrypts_tokens(org, on))
    }

    /// Stores an invitation under the SHA-256 of its token.
    pub async fn create_invitation(&self, inv: &InvitationRecord, token_hash: &[u8; 32]) -> Result<()> {
        dispatch!(self.create_invitation(inv, token_hash))
    }

    /// An organisation's invitations not yet accepted nor expired.
    pub async fn pending_invitations(&self, org: OrgId) -> Result<Vec<InvitationRecord>> {
        dispatch!(self.pending_invitations(org))
    }

    /// The live invitation with this token, without using it up.
    pub async fn peek_invitation(&self, token_hash: &[u8; 32]) -> Result<Option<InvitationRecord>> {
        dispatch!(self.peek_invitation(token_hash))
    }

    /// Makes a consumed invitation usable again (when what its acceptance
    /// was for failed).
    pub async fn reopen_invitation(&self, token_hash: &[u8; 32]) -> Result<()> {
        dispatch!(self.reopen_invitation(token_hash))
    }

    /// Uses up an invitation, atomically; false if it was used or expired
    /// meanwhile.
    pub async fn accept_invitation(&self, token_hash: &[u8; 32]) -> Result<bool> {
        dispatch!(self.accept_invitation(token_hash))
    }

    /// Renames an organisation and/or changes its status; the updated row.
    pub async fn update_org(
        &self,
        id: OrgId,
        name: Option<&domain::OrgName>,
        status: Option<domain::OrgStatus>,
    ) -> Result<Option<Organisation>> {
        dispatch!(self.update_org(id, name, status))
    }

    /// The newest version of an organisation's profile schema.
    pub async fn current_schema(&self, org: OrgId) -> Result<Option<SchemaRecord>> {
        dispatch!(self.current_schema(org))
    }

    /// Records a new schema version; `Conflict` if that version exists
    /// (someone else changed the schema first). The audit entries are
    /// appended in the same transaction.
    pub async fn insert_schema(&self, schema: &SchemaRecord, audit: Option<&AuditAppend<'_>>) -> Result<()> {
        dispatch!(self.insert_schema(schema, audit))
    }

    /// Whether an organisation holds any profile.
    pub async fn has_profiles(&self, org: OrgId) -> Result<bool> {
        dispatch!(self.has_profiles(org))
    }

    /// The field names each of an organisation's profiles holds (one
    /// space-separated string per profile), for the minimisation report.
    pub async fn profile_field_names(&self, org: OrgId) -> Result<Vec<String>> {
        dispatch!(self.profile_field_names(org))
    }

    /// Stores a new profile and its lookup terms in one transaction.
    pub async fn insert_profile(
        &self,
        profile: &ProfileRow,
        terms: &[Term],
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<()> {
        dispatch!(self.insert_profiles(&[(profile, terms)], audit))
    }

    /// Stores new profiles and their lookup terms in one transaction (an
    /// import's batch), with one audit append for all of them.
    pub async fn insert_profiles(
        &self,
        rows: &[(&ProfileRow, &[Term])],
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<()> {
        dispatch!(self.insert_profiles(rows, audit))
    }

    pub async fn get_profile(&self, org: OrgId, id: ProfileId) -> Result<Option<ProfileRow>> {
        dispatch!(self.get_profile(org, id))
    }

    /// Replaces a profile if it is still at `expected_revision` (and, when
    /// given, all its lookup terms) in one transaction; `false` if it has
    /// changed or gone.
    pub async fn update_profile(
        &self,
        profile: &ProfileRow,
        expected_revision: i64,
        terms: Option<&[Term]>,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<bool> {
        dispatch!(self.update_profile(profile, expected_revision, terms, audit))
    }

    /// Deletes a profile (its terms and attachment rows go with it) if it
    /// is still at `expected_revision`.
    pub async fn delete_profile(
        &self,
        org: OrgId,
        id: ProfileId,
        expected_revision: i64,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<bool> {
        dispatch!(self.delete_profile(org, id, expected_revision, audit))
    }

    /// Appends entries to an audit chain in a transaction of their own.
    pub async fn append_audit(&self, append: &AuditAppend<'_>) -> Result<()> {
        dispatch!(self.append_audit(append))
    }

    /// Several appends, to one chain or several, in one transaction: all
    /// are written or none. Appends to the same chain go in the order given.
    pub async fn append_audit_batch(&self, appends: &[AuditAppend<'_>]) -> Result<()> {
        dispatch!(self.append_audit_batch(appends))
    }

    /// A chain's entries after position `after`, in order.
    pub async fn audit_entries(&self, chain: &str, after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        dispatch!(self.audit_entries(chain, after, limit))
    }

    /// A chain's entries after position `after` that match `query`, in
    /// order; at most `limit`.
    pub async fn audit_search(&self, chain: &str, query: &AuditQuery, after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        dispatch!(self.audit_search(chain, query, after, limit))
    }

    /// Reads a chain's entries after position `after` in order, in one
    /// statement, handing each to `f` until it returns false. Memory stays
    /// flat whatever the chain's length (for verification).
    pub async fn scan_audit(
        &self,
        chain: &str,
        after: i64,
        f: &mut (dyn FnMut(AuditRowRef<'_>) -> bool + Send),
    ) -> Result<()> {
        dispatch!(self.scan_audit(chain, after, f))
    }

    /// A chain's entries about one target, after position `after`.
    pub async fn audit_entries_for(&self, chain: &str, target: &str, after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        dispatch!(self.audit_entries_for(chain, target, after, limit))
    }

    /// Every chain with its head: (chain, size, head hash).
    pub async fn audit_chains(&self) -> Result<Vec<(String, i64, Vec<u8>)>> {
        dispatch!(self.audit_chains())
    }

    pub async fn insert_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<()> {
        dispatch!(self.insert_checkpoint(checkpoint))
    }

    pub async fn checkpoints(&self, chain: &str) -> Result<Vec<CheckpointRow>> {
        dispatch!(self.checkpoints(chain))
    }

    /// Records a support session request, chained in the same transaction.
    pub async fn insert_support_session(&self, session: &SupportSessionRow, audit: &AuditAppend<'_>) -> Result<()> {
        dispatch!(self.insert_support_session(session, audit))
    }

    pub async fn support_session(&self, org: OrgId, id: uuid::Uuid) -> Result<Option<SupportSessionRow>> {
        dispatch!(self.support_session(org, id))
    }

    /// An organisation's support sessions, newest first.
    pub async fn support_sessions(&self, org: OrgId, limit: u32) -> Result<Vec<SupportSessionRow>> {
        dispatch!(self.support_sessions(org, limit))
    }

    /// An organisation's sessions approved and not expired at `now`.
    pub async fn active_support_sessions(&self, org: OrgId, now: i64) -> Result<Vec<SupportSessionRow>> {
        dispatch!(self.active_support_sessions(org, now))
    }

    /// The sessions active now that `user` is told of: those of every
    /// organisation they belong to, and their own as an operator.
    pub async fn active_support_seen_by(&self, user: UserId, now: i64) -> Result<Vec<SupportSessionRow>> {
        dispatch!(self.active_support_seen_by(user, now))
    }

    /// Approves (active until `approve`, unix microseconds) or denies a
    /// requested session; false if it is no longer a request.
    pub async fn decide_support_session(
        &self,
        org: OrgId,
        id: uuid::Uuid,
        approve: Option<i64>,
        by: UserId,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        dispatch!(self.decide_support_session(org, id, approve, by, now, audit))
    }

    /// Revokes a session that is requested or still active; false if it
    /// was neither.
    pub async fn revoke_support_session(
        &self,
        org: OrgId,
        id: uuid::Uuid,
        by: &str,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        dispatch!(self.revoke_support_session(org, id, by, now, audit))
    }

    /// Sessions that were active and have ended (revoked or expired by
    /// `now`) whose summary has not been sent.
    pub async fn support_sessions_ended(&self, now: i64, limit: u32) -> Result<Vec<SupportSessionRow>> {
        dispatch!(self.support_sessions_ended(now, limit))
    }

    /// Marks a session's summary as sent; false if it already was (another
    /// instance sent it).
    pub async fn mark_support_summary_sent(&self, org: OrgId, id: uuid::Uuid) -> Result<bool> {
        dispatch!(self.mark_support_summary_sent(org, id))
    }

    /// Records a user's grant of support access to their account.
    pub async fn insert_account_grant(&self, grant: &AccountGrantRow, audit: &AuditAppend<'_>) -> Result<()> {
        dispatch!(self.insert_account_grant(grant, audit))
    }

    pub async fn account_grant(&self, id: uuid::Uuid) -> Result<Option<AccountGrantRow>> {
        dispatch!(self.account_grant(id))
    }

    /// A user's grants, newest first.
    pub async fn account_grants_of(&self, user: UserId) -> Result<Vec<AccountGrantRow>> {
        dispatch!(self.account_grants_of(user))
    }

    /// Ends a user's active grant and every session acting under it, in
    /// one transaction with its audit entry; false if it was not active.
    pub async fn end_account_grant(
        &self,
        user: UserId,
        id: uuid::Uuid,
        by: &str,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        dispatch!(self.end_account_grant(user, id, by, now, audit))
    }

    /// Grants that ended or expired whose end the user was not told of yet.
    pub async fn account_grants_ended(&self, now: i64, limit: u32) -> Result<Vec<AccountGrantRow>> {
        dispatch!(self.account_grants_ended(now, limit))
    }

    /// Marks a grant's end notice as sent; false if it already was.
    pub async fn mark_account_grant_notice_sent(&self, id: uuid::Uuid) -> Result<bool> {
        dispatch!(self.mark_account_grant_notice_sent(id))
    }

    /// A chain's checkpoints above `size`, smallest first, at most `limit`.
    pub async fn checkpoints_after(&self, chain: &str, size: i64, limit: u32) -> Result<Vec<CheckpointRow>> {
        dispatch!(self.checkpoints_after(chain, size, limit))
    }

    /// How far a sink has received each chain it has seen.
    pub async fn sink_cursors(&self, sink: &str) -> Result<Vec<SinkCursor>> {
        dispatch!(self.sink_cursors(sink))
    }

    /// Moves a sink's cursor on a chain forward (never back: a slower
    /// instance cannot undo a faster one's progress).
    pub async fn advance_sink_cursor(&self, sink: &str, cursor: &SinkCursor) -> Result<()> {
        dispatch!(self.advance_sink_cursor(sink, cursor))
    }

    /// Gives up a sink's lease if `holder` still has it.
    pub async fn release_sink_lease(&self, sink: &str, holder: &str) -> Result<()> {
        dispatch!(self.release_sink_lease(sink, holder))
    }

    /// Takes or renews the lease on delivering to a sink for
    /// `until_micros - now_micros`; false if another holder's lease has not
    /// expired. PostgreSQL reckons both by the database's clock (instances
    /// may run on hosts whose clocks differ); SQLite, whose instances share
    /// a host, by the caller's.
    pub async fn take_sink_lease(&self, sink: &str, holder: &str, now_micros: i64, until_micros: i64) -> Result<bool> {
        dispatch!(self.take_sink_lease(sink, holder, now_micros, until_micros))
    }

    /// One page of an organisation's profiles in id order, after `after`,
    /// matching every filter.
    pub async fn list_profiles(
        &self,
        org: OrgId,
        after: Option<ProfileId>,
        limit: u32,
        filters: &[TermFilter],
    ) -> Result<Vec<ProfileRow>> {
        dispatch!(self.list_profiles(org, after, limit, filters))
    }

    /// The profiles linked to a user account, in every organisation.
    pub async fn profiles_owned_by(&self, user: UserId) -> Result<Vec<(OrgId, ProfileId)>> {
        dispatch!(self.profiles_owned_by(user))
    }

    /// Profiles whose record key is wrapped by an organisation key older
    /// than `version`.
    pub async fn profiles_below_key_version(&self, org: OrgId, version: u32, limit: u32) -> Result<Vec<ProfileRow>> {
        dispatch!(self.profiles_below_key_version(org, version, limit))
    }

    /// Stores an attachment row, replacing one of the same name; returns
    /// the replaced one's blob key.
    pub async fn put_attachment(&self, row: &AttachmentRow, audit: Option<&AuditAppend<'_>>) -> Result<Option<String>> {
        dispatch!(self.put_attachment(row, audit))
    }

    pub async fn attachment(&self, org: OrgId, profile: ProfileId, name_token: &[u8]) -> Result<Option<AttachmentRow>> {
        dispatch!(self.attachment(org, profile, name_token))
    }

    pub async fn attachments(&self, org: OrgId, profile: ProfileId) -> Result<Vec<AttachmentRow>> {
        dispatch!(self.attachments(org, profile))
    }

    /// Deletes an attachment row; returns its blob key.
    pub async fn delete_attachment(
        &self,
        org: OrgId,
        profile: ProfileId,
        name_token: &[u8],
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<Option<String>> {
        dispatch!(self.delete_attachment(org, profile, name_token, audit))
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

/// One version of an organisation key as stored: wrapped by the KMS root
/// key (or erased, once destroyed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgKeyRecord {
    pub org_id: OrgId,
    pub version: u32,
    /// `None` once destroyed.
    pub wrapped: Option<Vec<u8>>,
    /// The backend and root key that wrapped it.
    pub kms_backend: String,
    pub kms_key_id: String,
    pub state: KeyState,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The current time at the precision both backends keep (microseconds), so
/// a value reads back equal to what was written.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

/// Builds an organisation from stored columns, refusing invalid values.
fn org_from_columns(
    id: uuid::Uuid,
    slug: &str,
    name: &str,
    status: &str,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> Result<Organisation> {
    let corrupt = |why: domain::ParseError| StoreError::Corrupt { what: "organisation", why: why.to_string() };
    Ok(Organisation {
        id: OrgId::from_uuid(id),
        slug: OrgSlug::parse(slug).map_err(corrupt)?,
        name: domain::OrgName::parse(name).map_err(corrupt)?,
        status: domain::OrgStatus::parse(status).map_err(corrupt)?,
        created_at,
        updated_at,
    })
}

/// Builds a key record from stored columns.
#[allow(clippy::too_many_arguments)]
fn org_key_from_columns(
    org_id: uuid::Uuid,
    version: i64,
    wrapped: Option<Vec<u8>>,
    kms_backend: String,
    kms_key_id: String,
    state: &str,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> Result<OrgKeyRecord> {
    Ok(OrgKeyRecord {
        org_id: OrgId::from_uuid(org_id),
        version: u32::try_from(version)
            .map_err(|_| StoreError::Corrupt { what: "organisation key", why: "version out of range".into() })?,
        wrapped,
        kms_backend,
        kms_key_id,
        state: KeyState::parse(state)
            .map_err(|e| StoreError::Corrupt { what: "organisation key", why: e.to_string() })?,
        created_at,
        updated_at,
    })
}

/// Maps a unique-constraint violation to `Conflict`.
fn conflict_or(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict { what },
        _ => StoreError::Database(e),
    }
}
