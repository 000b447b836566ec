//! The SQLite implementation of support sessions: each change conditional on
//! the status it expects, chained in the organisation's trail in the same
//! transaction.

use domain::{OrgId, UserId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::Result;
use crate::audit::AuditAppend;
use crate::sqlite::SqliteStore;
use crate::support::{AccountGrantRow, SupportSessionRow, SupportStatus, parse_profiles, parse_status, profiles_text};

macro_rules! columns {
    () => {
        "org_id, id, operator_id, reason, write, profiles, duration_secs, status, requested_at, \
         decided_by, decided_at, expires_at, ended_at, ended_by, summary_sent"
    };
}

macro_rules! grant_columns {
    () => {
        "id, user_id, created_at, expires_at, ended_at, ended_by, end_notice_sent"
    };
}

fn grant_from_row(r: &SqliteRow) -> Result<AccountGrantRow> {
    Ok(AccountGrantRow {
        id: r.try_get("id")?,
        user: UserId::from_uuid(r.try_get("user_id")?),
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
        ended_by: r.try_get("ended_by")?,
        end_notice_sent: r.try_get("end_notice_sent")?,
    })
}

fn from_row(r: &SqliteRow) -> Result<SupportSessionRow> {
    Ok(SupportSessionRow {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        id: r.try_get("id")?,
        operator: UserId::from_uuid(r.try_get("operator_id")?),
        reason: r.try_get("reason")?,
        write: r.try_get("write")?,
        profiles: parse_profiles(&r.try_get::<String, _>("profiles")?)?,
        duration_secs: r.try_get("duration_secs")?,
        status: parse_status(&r.try_get::<String, _>("status")?)?,
        requested_at: r.try_get("requested_at")?,
        decided_by: r.try_get::<Option<uuid::Uuid>, _>("decided_by")?.map(UserId::from_uuid),
        decided_at: r.try_get("decided_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
        ended_by: r.try_get("ended_by")?,
        summary_sent: r.try_get("summary_sent")?,
    })
}

impl SqliteStore {
    pub(crate) async fn insert_support_session(&self, s: &SupportSessionRow, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "INSERT INTO support_sessions (",
            columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ))
        .bind(s.org_id.as_uuid())
        .bind(s.id)
        .bind(s.operator.as_uuid())
        .bind(&s.reason)
        .bind(s.write)
        .bind(profiles_text(&s.profiles))
        .bind(s.duration_secs)
        .bind(s.status.as_str())
        .bind(s.requested_at)
        .bind(s.decided_by.map(|u| u.as_uuid()))
        .bind(s.decided_at)
        .bind(s.expires_at)
        .bind(s.ended_at)
        .bind(&s.ended_by)
        .bind(s.summary_sent)
        .execute(&mut *tx)
        .await?;
        crate::sqlite_audit::append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn support_session(&self, org: OrgId, id: uuid::Uuid) -> Result<Option<SupportSessionRow>> {
        sqlx::query(concat!("SELECT ", columns!(), " FROM support_sessions WHERE org_id = ?1 AND id = ?2"))
            .bind(org.as_uuid())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| from_row(&r))
            .transpose()
    }

    pub(crate) async fn support_sessions(&self, org: OrgId, limit: u32) -> Result<Vec<SupportSessionRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM support_sessions WHERE org_id = ?1 ORDER BY requested_at DESC, id LIMIT ?2"
        ))
        .bind(org.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    pub(crate) async fn active_support_sessions(&self, org: OrgId, now: i64) -> Result<Vec<SupportSessionRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM support_sessions WHERE org_id = ?1 AND status = 'approved' AND expires_at > ?2
             ORDER BY expires_at, id"
        ))
        .bind(org.as_uuid())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    pub(crate) async fn decide_support_session(
        &self,
        org: OrgId,
        id: uuid::Uuid,
        approve: Option<i64>,
        by: UserId,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let status = if approve.is_some() { SupportStatus::Approved } else { SupportStatus::Denied };
        let done = sqlx::query(
            "UPDATE support_sessions SET status = ?1, decided_by = ?2, decided_at = ?3, expires_at = ?4
             WHERE org_id = ?5 AND id = ?6 AND status = 'requested'",
        )
        .bind(status.as_str())
        .bind(by.as_uuid())
        .bind(now)
        .bind(approve)
        .bind(org.as_uuid())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        crate::sqlite_audit::append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn revoke_support_session(
        &self,
        org: OrgId,
        id: uuid::Uuid,
        by: &str,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE support_sessions SET status = 'revoked', ended_at = ?1, ended_by = ?2
             WHERE org_id = ?3 AND id = ?4
               AND (status = 'requested' OR (status = 'approved' AND expires_at > ?1))",
        )
        .bind(now)
        .bind(by)
        .bind(org.as_uuid())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        crate::sqlite_audit::append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn support_sessions_ended(&self, now: i64, limit: u32) -> Result<Vec<SupportSessionRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM support_sessions
             WHERE summary_sent = 0 AND expires_at IS NOT NULL
               AND (status = 'revoked' OR (status = 'approved' AND expires_at <= ?1))
             ORDER BY requested_at LIMIT ?2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    pub(crate) async fn mark_support_summary_sent(&self, org: OrgId, id: uuid::Uuid) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE support_sessions SET summary_sent = 1 WHERE org_id = ?1 AND id = ?2 AND summary_sent = 0",
        )
        .bind(org.as_uuid())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn insert_account_grant(&self, g: &AccountGrantRow, audit: &AuditAppend<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO account_grants (id, user_id, created_at, expires_at, ended_at, ended_by, end_notice_sent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(g.id)
        .bind(g.user.as_uuid())
        .bind(g.created_at)
        .bind(g.expires_at)
        .bind(g.ended_at)
        .bind(&g.ended_by)
        .bind(g.end_notice_sent)
        .execute(&mut *tx)
        .await?;
        crate::sqlite_audit::append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn account_grant(&self, id: uuid::Uuid) -> Result<Option<AccountGrantRow>> {
        sqlx::query(concat!("SELECT ", grant_columns!(), " FROM account_grants WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| grant_from_row(&r))
            .transpose()
    }

    pub(crate) async fn account_grants_of(&self, user: UserId) -> Result<Vec<AccountGrantRow>> {
        sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM account_grants WHERE user_id = ?1 ORDER BY created_at DESC LIMIT 100"
        ))
        .bind(user.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    pub(crate) async fn end_account_grant(
        &self,
        user: UserId,
        id: uuid::Uuid,
        by: &str,
        now: i64,
        audit: &AuditAppend<'_>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE account_grants SET ended_at = ?1, ended_by = ?2
             WHERE id = ?3 AND user_id = ?4 AND ended_at IS NULL AND expires_at > ?1",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // The sessions acting under it end with it.
        sqlx::query("UPDATE sessions SET revoked_at = ?1 WHERE account_grant = ?2 AND revoked_at IS NULL")
            .bind(crate::now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        crate::sqlite_audit::append_in(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn account_grants_ended(&self, now: i64, limit: u32) -> Result<Vec<AccountGrantRow>> {
        sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM account_grants WHERE end_notice_sent = 0 AND (ended_at IS NOT NULL OR expires_at <= ?1)
             ORDER BY created_at LIMIT ?2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    pub(crate) async fn mark_account_grant_notice_sent(&self, id: uuid::Uuid) -> Result<bool> {
        let done = sqlx::query("UPDATE account_grants SET end_notice_sent = 1 WHERE id = ?1 AND end_notice_sent = 0")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn active_support_seen_by(&self, user: UserId, now: i64) -> Result<Vec<SupportSessionRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM support_sessions WHERE status = 'approved' AND expires_at > ?2
               AND (operator_id = ?1 OR org_id IN (SELECT org_id FROM memberships WHERE user_id = ?1))
             ORDER BY expires_at, id"
        ))
        .bind(user.as_uuid())
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }
}
