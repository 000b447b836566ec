//! Offboarding: every row of an organisation's data removed in one
//! transaction. What stays is what proves what happened: the organisation
//! row, its destroyed key versions, and its audit chain (which holds no
//! personal value).

use domain::OrgId;
use sqlx::Row;

use crate::{Result, Store};

/// The organisation's tables emptied at offboarding, children first.
pub const PURGED: &[&str] = &[
    "attachments",
    "profile_terms",
    "profiles",
    "profile_schemas",
    "retention_policies",
    "support_sessions",
    "invitations",
    "service_accounts",
    "memberships",
];

/// What a purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Rows deleted per table, in `PURGED` order.
    pub rows: Vec<(&'static str, u64)>,
    /// The blob keys of the attachments removed, for the caller to delete.
    pub blob_keys: Vec<String>,
}

impl Store {
    /// Deletes every row of the organisation's data (`PURGED`), all or
    /// nothing, and returns the counts and the attachment blobs to delete.
    pub async fn purge_org_data(&self, org: OrgId) -> Result<Purged> {
        let blobs = sql2!(
            self,
            "SELECT blob_key FROM attachments WHERE org_id = ?",
            "SELECT blob_key FROM attachments WHERE org_id = $1"
        );
        let mut purged = Purged::default();
        macro_rules! purge {
            ($tx:ident, $placeholder:literal) => {{
                purged.blob_keys = sqlx::query(blobs)
                    .bind(org.as_uuid())
                    .fetch_all(&mut *$tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<std::result::Result<_, _>>()?;
                for table in PURGED {
                    let sql = format!("DELETE FROM {table} WHERE org_id = {}", $placeholder);
                    let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(org.as_uuid())
                        .execute(&mut *$tx)
                        .await?
                        .rows_affected();
                    purged.rows.push((table, n));
                }
                $tx.commit().await?;
            }};
        }
        match &self.backend {
            crate::Backend::Sqlite(s) => {
                let mut tx = s.begin_write().await?;
                purge!(tx, "?");
            }
            crate::Backend::Postgres(s) => {
                let mut tx = s.pool.begin().await?;
                purge!(tx, "$1");
            }
        }
        Ok(purged)
    }
}
