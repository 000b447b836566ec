//! The SQLite backend: the embedded default, one file in the data directory,
//! WAL journal with full fsync so an acknowledged write survives `kill -9`.

use std::path::Path;
use std::time::Duration;

use domain::{OrgId, OrgSlug, Organisation};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::migrate::{self, Applied};
use crate::{Result, StoreError, conflict_or, org_from_columns};

#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                backend: "SQLite",
                source,
            })?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY NOT NULL,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                applied_at TEXT NOT NULL
            ) STRICT",
        )
        .execute(&self.pool)
        .await?;
        let applied = self.applied_migrations().await?;
        for m in migrate::plan(migrate::SQLITE, &applied)? {
            let failed = |source| StoreError::MigrationFailed {
                label: m.label(),
                source,
            };
            let mut tx = self.pool.begin().await?;
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)
                 VALUES (?, ?, ?, ?)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(migration = %m.label(), backend = "sqlite", "applied migration");
        }
        Ok(())
    }

    pub(crate) async fn applied_migrations(&self) -> Result<Vec<Applied>> {
        let rows =
            sqlx::query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Applied {
                    version: r.try_get("version")?,
                    name: r.try_get("name")?,
                    checksum: r.try_get("checksum")?,
                })
            })
            .collect()
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn insert_org(&self, org: &Organisation) -> Result<()> {
        sqlx::query(
            "INSERT INTO organisations (id, slug, name, status, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(org.id.as_uuid())
        .bind(org.slug.as_str())
        .bind(org.name.as_str())
        .bind(org.status.as_str())
        .bind(org.created_at)
        .bind(org.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, "an organisation with this slug"))?;
        Ok(())
    }

    pub(crate) async fn get_org(&self, id: OrgId) -> Result<Option<Organisation>> {
        sqlx::query(
            "SELECT id, slug, name, status, created_at, updated_at
             FROM organisations WHERE id = ?",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| org_from_row(&r))
        .transpose()
    }

    pub(crate) async fn find_org_by_slug(&self, slug: &OrgSlug) -> Result<Option<Organisation>> {
        sqlx::query(
            "SELECT id, slug, name, status, created_at, updated_at
             FROM organisations WHERE slug = ?",
        )
        .bind(slug.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| org_from_row(&r))
        .transpose()
    }

    pub(crate) async fn list_orgs(&self) -> Result<Vec<Organisation>> {
        sqlx::query(
            "SELECT id, slug, name, status, created_at, updated_at
             FROM organisations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(org_from_row)
        .collect()
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

fn org_from_row(r: &SqliteRow) -> Result<Organisation> {
    org_from_columns(
        r.try_get("id")?,
        r.try_get("slug")?,
        r.try_get("name")?,
        r.try_get("status")?,
        r.try_get("created_at")?,
        r.try_get("updated_at")?,
    )
}
