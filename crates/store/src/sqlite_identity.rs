//! The SQLite implementation of the identity records: users,
//! memberships, sessions and password-setup tokens.

use domain::{DisplayName, Email, OrgId, Role, Scope, ServiceAccountId, SessionId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use crate::audit::AuditAppend;
use crate::identity::{
    MemberRecord, MembershipChange, MembershipOutcome, SessionRecord, SetupPurpose, UserRecord, UserStatus, corrupt,
};
use crate::sqlite::SqliteStore;
use crate::{InvitationRecord, ServiceAccountRecord, SigningKeyRecord, TotpRecord};
use crate::{Result, conflict_or};

impl SqliteStore {
    pub(crate) async fn create_user(&self, u: &UserRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (id, email, display_name, password_hash, is_operator, status, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.as_uuid())
        .bind(u.email.as_str())
        .bind(u.display_name.as_str())
        .bind(u.password_hash.as_deref())
        .bind(u.is_operator)
        .bind(u.status.as_str())
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.writer)
        .await
        .map_err(|e| conflict_or(e, "a user with this e-mail address"))?;
        Ok(())
    }

    pub(crate) async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>> {
        sqlx::query(USER_COLUMNS_BY_ID)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    pub(crate) async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>> {
        sqlx::query(USER_COLUMNS_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_from_row(&r))
            .transpose()
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<UserRecord>> {
        sqlx::query(
            "SELECT id, email, display_name, password_hash, is_operator, status, created_at, updated_at FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    pub(crate) async fn set_password_hash(&self, id: UserId, hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(hash)
            .bind(crate::now())
            .bind(id.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn put_membership(&self, org: OrgId, user: UserId, role: Role) -> Result<()> {
        let now = crate::now();
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
        )
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .bind(role.as_str())
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn remove_membership(&self, org: OrgId, user: UserId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memberships WHERE org_id = ? AND user_id = ?")
            .bind(org.as_uuid())
            .bind(user.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn change_membership(
        &self,
        org: OrgId,
        user: UserId,
        change: MembershipChange,
        may_touch_owners: bool,
        audit: Option<&AuditAppend<'_>>,
    ) -> Result<MembershipOutcome> {
        let mut tx = self.begin_write().await?;
        // Hold the organisation's row first: membership changes of one
        // organisation queue here, and SQLite takes its write lock now rather than fail to upgrade later.
        sqlx::query("UPDATE organisations SET id = id WHERE id = ?1").bind(org.as_uuid()).execute(&mut *tx).await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2")
                .bind(org.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let before = before.map(|r| Role::parse(&r).map_err(corrupt("membership"))).transpose()?;
        let after = match change {
            MembershipChange::Put(role) => Some(role),
            MembershipChange::Remove => None,
        };
        if before.is_none() && after.is_none() {
            return Ok(MembershipOutcome::NotMember);
        }
        let was_owner = before == Some(Role::Owner);
        if (was_owner || after == Some(Role::Owner)) && !may_touch_owners {
            return Ok(MembershipOutcome::OwnerPermissionNeeded);
        }
        if was_owner && after != Some(Role::Owner) {
            let owners: i64 =
                sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = ?1 AND role = 'owner'")
                    .bind(org.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
            if owners <= 1 {
                return Ok(MembershipOutcome::LastOwner);
            }
        }
        match after {
            Some(role) => {
                let now = crate::now();
                sqlx::query(
                    "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
                )
                .bind(org.as_uuid())
                .bind(user.as_uuid())
                .bind(role.as_str())
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM memberships WHERE org_id = ?1 AND user_id = ?2")
                    .bind(org.as_uuid())
                    .bind(user.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(a) = audit {
            crate::sqlite_audit::append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(MembershipOutcome::Done { before })
    }

    pub(crate) async fn membership_role(&self, org: OrgId, user: UserId) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?")
            .bind(org.as_uuid())
            .bind(user.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        role.map(|r| Role::parse(&r).map_err(corrupt("membership"))).transpose()
    }

    pub(crate) async fn memberships_of(&self, user: UserId) -> Result<Vec<(OrgId, Role)>> {
        sqlx::query("SELECT org_id, role FROM memberships WHERE user_id = ? ORDER BY org_id")
            .bind(user.as_uuid())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                Ok((OrgId::from_uuid(r.try_get("org_id")?), Role::parse(&role).map_err(corrupt("membership"))?))
            })
            .collect()
    }

    pub(crate) async fn members(&self, org: OrgId) -> Result<Vec<MemberRecord>> {
        sqlx::query(
            "SELECT m.org_id, m.user_id, m.role, m.created_at, u.email, u.display_name
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = ? ORDER BY m.created_at, m.user_id",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            let email: String = r.try_get("email")?;
            let name: String = r.try_get("display_name")?;
            Ok(MemberRecord {
                org_id: OrgId::from_uuid(r.try_get("org_id")?),
                user_id: UserId::from_uuid(r.try_get("user_id")?),
                role: Role::parse(&role).map_err(corrupt("membership"))?,
                email: Email::parse(&email).map_err(corrupt("user"))?,
                display_name: DisplayName::parse(&name).map_err(corrupt("user"))?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
    }

    pub(crate) async fn count_owners(&self, org: OrgId) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM memberships WHERE org_id = ? AND role = 'owner'")
            .bind(org.as_uuid())
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn create_session(&self, s: &SessionRecord, secret_hash: &[u8; 32]) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (secret_hash, id, user_id, mfa_passed, created_at, last_seen_at, expires_at, revoked_at,
                 acting_operator, account_grant)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&secret_hash[..])
        .bind(s.id.as_uuid())
        .bind(s.user_id.as_uuid())
        .bind(s.mfa_passed)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(s.acting_operator.map(|u| u.as_uuid()))
        .bind(s.account_grant)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn session_by_secret(&self, secret_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
        sqlx::query(
            "SELECT id, user_id, mfa_passed, created_at, last_seen_at, expires_at, revoked_at, acting_operator, account_grant FROM sessions WHERE secret_hash = ?",
        )
        .bind(&secret_hash[..])
        .fetch_optional(&self.pool)
        .await?
        .map(|r| session_from_row(&r))
        .transpose()
    }

    pub(crate) async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id = ?")
            .bind(at)
            .bind(id.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn revoke_session(&self, user: UserId, id: SessionId) -> Result<bool> {
        let done =
            sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
                .bind(crate::now())
                .bind(id.as_uuid())
                .bind(user.as_uuid())
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn revoke_all_sessions(&self, user: UserId) -> Result<u64> {
        let done = sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(crate::now())
            .bind(user.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn live_sessions_of(&self, user: UserId) -> Result<Vec<SessionRecord>> {
        sqlx::query(
            "SELECT id, user_id, mfa_passed, created_at, last_seen_at, expires_at, revoked_at, acting_operator, account_grant FROM sessions
             WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at",
        )
        .bind(user.as_uuid())
        .bind(crate::now())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    pub(crate) async fn create_password_setup(
        &self,
        token_hash: &[u8; 32],
        user: UserId,
        purpose: SetupPurpose,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO password_setups (token_hash, user_id, purpose, created_at, expires_at, used_at)
             VALUES (?, ?, ?, ?, ?, NULL)",
        )
        .bind(&token_hash[..])
        .bind(user.as_uuid())
        .bind(purpose.as_str())
        .bind(crate::now())
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn peek_password_setup(
        &self,
        token_hash: &[u8; 32],
        purpose: SetupPurpose,
    ) -> Result<Option<UserId>> {
        let user: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM password_setups
             WHERE token_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(&token_hash[..])
        .bind(purpose.as_str())
        .bind(crate::now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(user.map(UserId::from_uuid))
    }

    pub(crate) async fn take_password_setup(
        &self,
        token_hash: &[u8; 32],
        purpose: SetupPurpose,
    ) -> Result<Option<UserId>> {
        let now = crate::now();
        let user: Option<uuid::Uuid> = sqlx::query_scalar(
            "UPDATE password_setups SET used_at = ?
             WHERE token_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?
             RETURNING user_id",
        )
        .bind(now)
        .bind(&token_hash[..])
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(user.map(UserId::from_uuid))
    }

    pub(crate) async fn platform_key(&self, purpose: &str) -> Result<Option<(u32, Vec<u8>, String)>> {
        let row = sqlx::query(
            "SELECT version, wrapped, kms_key_id FROM platform_keys WHERE purpose = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let v: i64 = r.try_get::<i64, _>("version").or_else(|_| r.try_get::<i32, _>("version").map(i64::from))?;
            Ok((u32::try_from(v).unwrap_or(0), r.try_get("wrapped")?, r.try_get("kms_key_id")?))
        })
        .transpose()
    }

    pub(crate) async fn insert_platform_key(
        &self,
        purpose: &str,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO platform_keys (purpose, version, wrapped, kms_key_id, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(purpose)
        .bind(i64::from(version))
        .bind(wrapped)
        .bind(kms_key_id)
        .bind(crate::now())
        .execute(&self.writer)
        .await
        .map_err(|e| conflict_or(e, "this platform key version"))?;
        Ok(())
    }

    pub(crate) async fn rewrap_platform_key(
        &self,
        purpose: &str,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE platform_keys SET wrapped = ?, kms_key_id = ? WHERE purpose = ? AND version = ?")
            .bind(wrapped)
            .bind(kms_key_id)
            .bind(purpose)
            .bind(i64::from(version))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn put_totp(&self, user: UserId, seed: &[u8], key_version: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_totp (user_id, seed, key_version, confirmed_at, last_step, created_at) VALUES (?, ?, ?, NULL, NULL, ?)
             ON CONFLICT (user_id) DO UPDATE SET seed = excluded.seed, key_version = excluded.key_version,
               confirmed_at = NULL, last_step = NULL, created_at = excluded.created_at",
        )
        .bind(user.as_uuid())
        .bind(seed)
        .bind(i64::from(key_version))
        .bind(crate::now())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn totp(&self, user: UserId) -> Result<Option<TotpRecord>> {
        let row = sqlx::query("SELECT seed, key_version, confirmed_at, last_step FROM user_totp WHERE user_id = ?")
            .bind(user.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let v: i64 =
                r.try_get::<i64, _>("key_version").or_else(|_| r.try_get::<i32, _>("key_version").map(i64::from))?;
            let confirmed: Option<OffsetDateTime> = r.try_get("confirmed_at")?;
            Ok(TotpRecord {
                seed: r.try_get("seed")?,
                key_version: u32::try_from(v).unwrap_or(0),
                confirmed: confirmed.is_some(),
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn accept_totp_step(&self, user: UserId, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE user_totp SET last_step = ?, confirmed_at = COALESCE(confirmed_at, ?)
             WHERE user_id = ? AND (last_step IS NULL OR last_step < ?)",
        )
        .bind(step)
        .bind(crate::now())
        .bind(user.as_uuid())
        .bind(step)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn replace_recovery_codes(&self, user: UserId, hashes: &[[u8; 32]]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user.as_uuid()).execute(&mut *tx).await?;
        for h in hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES (?, ?, NULL)")
                .bind(user.as_uuid())
                .bind(&h[..])
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn use_recovery_code(&self, user: UserId, hash: &[u8; 32]) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
        )
        .bind(crate::now())
        .bind(user.as_uuid())
        .bind(&hash[..])
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn set_session_mfa(&self, id: SessionId) -> Result<()> {
        sqlx::query("UPDATE sessions SET mfa_passed = 1 WHERE id = ?").bind(id.as_uuid()).execute(&self.writer).await?;
        Ok(())
    }

    pub(crate) async fn org_access(&self, org: OrgId) -> Result<Option<crate::OrgAccess>> {
        sqlx::query(concat!("SELECT ", crate::identity::org_access_columns!(), " FROM organisations o WHERE o.id = ?"))
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| crate::OrgAccess::from_row(&r))
            .transpose()
    }

    pub(crate) async fn org_requires_mfa(&self, org: OrgId) -> Result<bool> {
        let v: Option<bool> = sqlx::query_scalar("SELECT require_mfa FROM organisations WHERE id = ?")
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.unwrap_or(false))
    }

    pub(crate) async fn set_org_requires_mfa(&self, org: OrgId, required: bool) -> Result<()> {
        sqlx::query("UPDATE organisations SET require_mfa = ?, updated_at = ? WHERE id = ?")
            .bind(required)
            .bind(crate::now())
            .bind(org.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn create_service_account(&self, sa: &ServiceAccountRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO service_accounts (org_id, id, name, client_id, secret_hash, scopes, created_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(sa.org_id.as_uuid())
        .bind(sa.id.as_uuid())
        .bind(&sa.name)
        .bind(&sa.client_id)
        .bind(&sa.secret_hash[..])
        .bind(domain::scope_list(&sa.scopes))
        .bind(sa.created_at)
        .execute(&self.writer)
        .await
        .map_err(|e| conflict_or(e, "a service account with this client id"))?;
        Ok(())
    }

    pub(crate) async fn service_account_by_client_id(&self, client_id: &str) -> Result<Option<ServiceAccountRecord>> {
        sqlx::query(
            "SELECT org_id, id, name, client_id, secret_hash, scopes, created_at, revoked_at FROM service_accounts WHERE client_id = ?",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| sa_from_row(&r))
        .transpose()
    }

    pub(crate) async fn bearer_facts(&self, client_id: &str, jti: &str) -> Result<Option<crate::BearerFacts>> {
        let Some(r) = sqlx::query(concat!(
            "SELECT sa.org_id, sa.id, sa.name, sa.client_id, sa.secret_hash, sa.scopes, sa.created_at, sa.revoked_at,
                        o.encrypted_tokens AS org_encrypts_tokens,
                        EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?2) AS jti_revoked, ",
            crate::identity::org_access_columns!(),
            " FROM service_accounts sa JOIN organisations o ON o.id = sa.org_id
                 WHERE sa.client_id = ?1"
        ))
        .bind(client_id)
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(crate::BearerFacts {
            account: sa_from_row(&r)?,
            org_encrypts_tokens: r.try_get("org_encrypts_tokens")?,
            jti_revoked: r.try_get("jti_revoked")?,
            org: crate::OrgAccess::from_row(&r)?,
        }))
    }

    pub(crate) async fn service_accounts(&self, org: OrgId) -> Result<Vec<ServiceAccountRecord>> {
        sqlx::query(
            "SELECT org_id, id, name, client_id, secret_hash, scopes, created_at, revoked_at FROM service_accounts
             WHERE org_id = ? ORDER BY created_at, id",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(sa_from_row)
        .collect()
    }

    pub(crate) async fn revoke_service_account(&self, org: OrgId, id: ServiceAccountId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE service_accounts SET revoked_at = ? WHERE org_id = ? AND id = ? AND revoked_at IS NULL",
        )
        .bind(crate::now())
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn live_signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        sqlx::query("SELECT kid, seed_wrapped, kms_key_id, created_at FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: r.try_get("kid")?,
                    seed_wrapped: r.try_get("seed_wrapped")?,
                    kms_key_id: r.try_get("kms_key_id")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub(crate) async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        sqlx::query("INSERT INTO signing_keys (kid, seed_wrapped, kms_key_id, created_at, retired_at) VALUES (?, ?, ?, ?, NULL)")
            .bind(&key.kid)
            .bind(&key.seed_wrapped)
            .bind(&key.kms_key_id)
            .bind(key.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| conflict_or(e, "this signing key"))?;
        Ok(())
    }

    pub(crate) async fn rewrap_signing_key(&self, kid: &str, seed_wrapped: &[u8], kms_key_id: &str) -> Result<()> {
        sqlx::query("UPDATE signing_keys SET seed_wrapped = ?, kms_key_id = ? WHERE kid = ?")
            .bind(seed_wrapped)
            .bind(kms_key_id)
            .bind(kid)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn retire_signing_key(&self, kid: &str) -> Result<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL")
            .bind(crate::now())
            .bind(kid)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn revoke_jti(&self, jti: &str, expires_at: OffsetDateTime) -> Result<()> {
        sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING")
            .bind(jti)
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn org_encrypts_tokens(&self, org: OrgId) -> Result<bool> {
        let v: Option<bool> = sqlx::query_scalar("SELECT encrypted_tokens FROM organisations WHERE id = ?")
            .bind(org.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.unwrap_or(false))
    }

    pub(crate) async fn set_org_encrypts_tokens(&self, org: OrgId, on: bool) -> Result<()> {
        sqlx::query("UPDATE organisations SET encrypted_tokens = ?, updated_at = ? WHERE id = ?")
            .bind(on)
            .bind(crate::now())
            .bind(org.as_uuid())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn create_invitation(&self, inv: &InvitationRecord, token_hash: &[u8; 32]) -> Result<()> {
        sqlx::query(
            "INSERT INTO invitations (org_id, id, email, role, token_hash, created_at, expires_at, accepted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
        )
        .bind(inv.org_id.as_uuid())
        .bind(inv.id)
        .bind(inv.email.as_str())
        .bind(inv.role.as_str())
        .bind(&token_hash[..])
        .bind(inv.created_at)
        .bind(inv.expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn pending_invitations(&self, org: OrgId) -> Result<Vec<InvitationRecord>> {
        sqlx::query(
            "SELECT org_id, id, email, role, created_at, expires_at, accepted_at FROM invitations
             WHERE org_id = ? AND accepted_at IS NULL AND expires_at > ? ORDER BY created_at",
        )
        .bind(org.as_uuid())
        .bind(crate::now())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invitation_from_row)
        .collect()
    }

    pub(crate) async fn peek_invitation(&self, token_hash: &[u8; 32]) -> Result<Option<InvitationRecord>> {
        sqlx::query(
            "SELECT org_id, id, email, role, created_at, expires_at, accepted_at FROM invitations
             WHERE token_hash = ? AND accepted_at IS NULL AND expires_at > ?",
        )
        .bind(&token_hash[..])
        .bind(crate::now())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| invitation_from_row(&r))
        .transpose()
    }

    pub(crate) async fn accept_invitation(&self, token_hash: &[u8; 32]) -> Result<bool> {
        let now = crate::now();
        let done = sqlx::query(
            "UPDATE invitations SET accepted_at = ? WHERE token_hash = ? AND accepted_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .bind(&token_hash[..])
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn reopen_invitation(&self, token_hash: &[u8; 32]) -> Result<()> {
        sqlx::query("UPDATE invitations SET accepted_at = NULL WHERE token_hash = ?")
            .bind(&token_hash[..])
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(crate) async fn update_org(
        &self,
        id: OrgId,
        name: Option<&domain::OrgName>,
        status: Option<domain::OrgStatus>,
    ) -> Result<Option<domain::Organisation>> {
        sqlx::query(
            "UPDATE organisations SET name = COALESCE(?, name), status = COALESCE(?, status), updated_at = ?
             WHERE id = ?",
        )
        .bind(name.map(|n| n.as_str().to_owned()))
        .bind(status.map(|s| s.as_str()))
        .bind(crate::now())
        .bind(id.as_uuid())
        .execute(&self.writer)
        .await?;
        self.get_org(id).await
    }
}

const USER_COLUMNS_BY_ID: &str = "SELECT id, email, display_name, password_hash, is_operator, status, created_at, updated_at FROM users WHERE id = ?";
const USER_COLUMNS_BY_EMAIL: &str = "SELECT id, email, display_name, password_hash, is_operator, status, created_at, updated_at FROM users WHERE email = ?";

fn user_from_row(r: &SqliteRow) -> Result<UserRecord> {
    let email: String = r.try_get("email")?;
    let name: String = r.try_get("display_name")?;
    let status: String = r.try_get("status")?;
    Ok(UserRecord {
        id: UserId::from_uuid(r.try_get("id")?),
        email: Email::parse(&email).map_err(corrupt("user"))?,
        display_name: DisplayName::parse(&name).map_err(corrupt("user"))?,
        password_hash: r.try_get("password_hash")?,
        is_operator: r.try_get("is_operator")?,
        status: UserStatus::parse(&status)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn session_from_row(r: &SqliteRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId::from_uuid(r.try_get("id")?),
        user_id: UserId::from_uuid(r.try_get("user_id")?),
        mfa_passed: r.try_get("mfa_passed")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        acting_operator: r.try_get::<Option<uuid::Uuid>, _>("acting_operator")?.map(UserId::from_uuid),
        account_grant: r.try_get("account_grant")?,
    })
}

fn sa_from_row(r: &SqliteRow) -> Result<ServiceAccountRecord> {
    let hash: Vec<u8> = r.try_get("secret_hash")?;
    let scopes: String = r.try_get("scopes")?;
    Ok(ServiceAccountRecord {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        id: ServiceAccountId::from_uuid(r.try_get("id")?),
        name: r.try_get("name")?,
        client_id: r.try_get("client_id")?,
        secret_hash: hash
            .try_into()
            .map_err(|_| crate::StoreError::Corrupt { what: "service account", why: "secret hash length".into() })?,
        scopes: Scope::parse_list(&scopes)
            .ok_or(crate::StoreError::Corrupt { what: "service account", why: "unknown scope".into() })?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn invitation_from_row(r: &SqliteRow) -> Result<InvitationRecord> {
    let email: String = r.try_get("email")?;
    let role: String = r.try_get("role")?;
    Ok(InvitationRecord {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        id: r.try_get("id")?,
        email: Email::parse(&email).map_err(corrupt("invitation"))?,
        role: Role::parse(&role).map_err(corrupt("invitation"))?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        accepted_at: r.try_get("accepted_at")?,
    })
}
