//! Retention policies as stored: one JSON policy per organisation, set
//! together with its audit entry in one transaction.

use domain::OrgId;
use sqlx::Row;
use uuid::Uuid;

use crate::{AuditAppend, Result, Store};

/// An organisation's retention policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRow {
    pub org_id: OrgId,
    /// The rules as JSON text (field names and numbers of days; no values).
    pub policy: String,
    /// Unix microseconds.
    pub updated_at: i64,
    pub updated_by: String,
}

fn from_row<R: Row>(r: &R) -> Result<RetentionRow>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> Uuid: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RetentionRow {
        org_id: OrgId::from_uuid(r.try_get("org_id")?),
        policy: r.try_get("policy")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

impl Store {
    /// An organisation's retention policy, if it has one.
    pub async fn retention_policy(&self, org: OrgId) -> Result<Option<RetentionRow>> {
        let sql = sql2!(
            self,
            "SELECT org_id, policy, updated_at, updated_by FROM retention_policies WHERE org_id = ?",
            "SELECT org_id, policy, updated_at, updated_by FROM retention_policies WHERE org_id = $1"
        );
        both!(self, |pool| sqlx::query(sql)
            .bind(org.as_uuid())
            .fetch_optional(pool)
            .await?
            .map(|r| from_row(&r))
            .transpose())
    }

    /// Every organisation's retention policy, for the scheduled sweep.
    pub async fn retention_policies(&self) -> Result<Vec<RetentionRow>> {
        let sql = "SELECT org_id, policy, updated_at, updated_by FROM retention_policies ORDER BY org_id";
        both!(self, |pool| sqlx::query(sql).fetch_all(pool).await?.iter().map(from_row).collect())
    }

    /// Sets an organisation's policy, or removes it (`policy: None`),
    /// with its audit entry, all or nothing.
    pub async fn put_retention_policy(
        &self,
        org: OrgId,
        policy: Option<(&str, i64, &str)>,
        audit: &AuditAppend<'_>,
    ) -> Result<()> {
        let delete = sql2!(
            self,
            "DELETE FROM retention_policies WHERE org_id = ?",
            "DELETE FROM retention_policies WHERE org_id = $1"
        );
        let upsert = sql2!(
            self,
            "INSERT INTO retention_policies (org_id, policy, updated_at, updated_by) VALUES (?, ?, ?, ?)
             ON CONFLICT (org_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by",
            "INSERT INTO retention_policies (org_id, policy, updated_at, updated_by) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by"
        );
        match &self.backend {
            crate::Backend::Sqlite(s) => {
                let mut tx = s.begin_write().await?;
                match policy {
                    None => sqlx::query(delete).bind(org.as_uuid()).execute(&mut *tx).await?,
                    Some((p, at, by)) => {
                        sqlx::query(upsert).bind(org.as_uuid()).bind(p).bind(at).bind(by).execute(&mut *tx).await?
                    }
                };
                crate::sqlite_audit::append_in(&mut tx, audit).await?;
                tx.commit().await?;
            }
            crate::Backend::Postgres(s) => {
                let mut tx = s.pool.begin().await?;
                match policy {
                    None => sqlx::query(delete).bind(org.as_uuid()).execute(&mut *tx).await?,
                    Some((p, at, by)) => {
                        sqlx::query(upsert).bind(org.as_uuid()).bind(p).bind(at).bind(by).execute(&mut *tx).await?
                    }
                };
                crate::postgres_audit::append_in(&mut tx, audit).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
