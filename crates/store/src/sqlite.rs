//! The SQLite backend: the embedded default, one file in the data directory,
//! page-encrypted with SQLCipher, WAL journal with full fsync so an
//! acknowledged write survives `kill -9`.

use std::path::Path;
use std::time::Duration;

use domain::{OrgId, OrgSlug, Organisation};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::migrate::{self, Applied};
use crate::{OrgKeyRecord, Result, StoreError, conflict_or, org_from_columns, org_key_from_columns};

/// Connection options for the encrypted database file: the SQLCipher key
/// is the first pragma (sqlx keeps `key` first), statement logging is off so
/// the key pragma can never reach a log.
pub fn connect_options(path: &Path, key: &[u8; 32]) -> SqliteConnectOptions {
    use sqlx::ConnectOptions;
    let hex_key = zeroize::Zeroizing::new(hex::encode(key));
    SqliteConnectOptions::new()
        .filename(path)
        .pragma("key", format!("\"x'{}'\"", hex_key.as_str()))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .log_statements(log::LevelFilter::Off)
}

/// Reads go to `pool`; writes to `writer`, one connection. SQLite takes
/// one writer at a time anyway: queued on the pool, writers of this
/// process take turns in order, instead of failing with SQLITE_BUSY and
/// sleeping in SQLite's busy handler (which waits up to 100 ms at a time);
/// and the one writing connection keeps the pages it writes decrypted in
/// its cache. Another process (the CLI beside a running server) still
/// meets the busy handler.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pub(crate) pool: SqlitePool,
    pub(crate) writer: SqlitePool,
}

impl SqliteStore {
    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock at the
    /// start: a deferred transaction that reads first and then writes
    /// fails with SQLITE_BUSY against a concurrent writer, and waiting on
    /// it sleeps in SQLite's busy handler (milliseconds at a time).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub(crate) async fn open(path: &Path, key: &[u8; 32]) -> Result<Self> {
        let connect = |max| async move {
            SqlitePoolOptions::new()
                .max_connections(max)
                .connect_with(connect_options(path, key))
                .await
                .map_err(|source| StoreError::Connect { backend: "SQLite", source })
        };
        let writer = connect(1).await?;
        // A wrong key surfaces on the first read as "file is not a database".
        sqlx::query("SELECT count(*) FROM sqlite_master").execute(&writer).await.map_err(|source| {
            StoreError::Connect { backend: "SQLite (wrong database key, or not a Strongroom database)", source }
        })?;
        let pool = connect(8).await?;
        let store = Self { pool, writer };
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
        .execute(&self.writer)
        .await?;
        let applied = self.applied_migrations().await?;
        for m in migrate::plan(migrate::SQLITE, &applied)? {
            let failed = |source| StoreError::MigrationFailed { label: m.label(), source };
            let mut tx = self.begin_write().await?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(failed)?;
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
        let rows = sqlx::query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
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

    pub(crate) async fn create_org(&self, org: &Organisation, key: &OrgKeyRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
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
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "an organisation with this slug"))?;
        insert_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn org_keys(&self, org: OrgId) -> Result<Vec<OrgKeyRecord>> {
        sqlx::query(
            "SELECT org_id, version, wrapped, kms_backend, kms_key_id, state, created_at, updated_at
             FROM org_keys WHERE org_id = ? ORDER BY version",
        )
        .bind(org.as_uuid())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    pub(crate) async fn all_org_keys(&self) -> Result<Vec<OrgKeyRecord>> {
        sqlx::query(
            "SELECT org_id, version, wrapped, kms_backend, kms_key_id, state, created_at, updated_at
             FROM org_keys ORDER BY org_id, version",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    pub(crate) async fn rotate_org_key(&self, new: &OrgKeyRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE org_keys SET state = 'retired', updated_at = ?
             WHERE org_id = ? AND state = 'active'",
        )
        .bind(new.created_at)
        .bind(new.org_id.as_uuid())
        .execute(&mut *tx)
        .await?;
        insert_key(&mut tx, new).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rewrap_org_key(
        &self,
        org: OrgId,
        version: u32,
        wrapped: &[u8],
        kms_key_id: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE org_keys SET wrapped = ?, kms_key_id = ?, updated_at = ?
             WHERE org_id = ? AND version = ? AND state <> 'destroyed'",
        )
        .bind(wrapped)
        .bind(kms_key_id)
        .bind(crate::now())
        .bind(org.as_uuid())
        .bind(i64::from(version))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn destroy_org_keys(&self, org: OrgId) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE org_keys SET wrapped = NULL, state = 'destroyed', updated_at = ?
             WHERE org_id = ? AND state <> 'destroyed'",
        )
        .bind(crate::now())
        .bind(org.as_uuid())
        .execute(&mut *tx)
        .await?;
        // The escrow key that unlocks this organisation's keys in backups
        // goes with them.
        sqlx::query("DELETE FROM backup_escrow WHERE org_id = ?").bind(org.as_uuid()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
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
        self.writer.close().await;
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

async fn insert_key(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, key: &OrgKeyRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO org_keys (org_id, version, wrapped, kms_backend, kms_key_id, state, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(key.org_id.as_uuid())
    .bind(i64::from(key.version))
    .bind(key.wrapped.as_deref())
    .bind(&key.kms_backend)
    .bind(&key.kms_key_id)
    .bind(key.state.as_str())
    .bind(key.created_at)
    .bind(key.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or(e, "this organisation key version"))?;
    Ok(())
}

fn key_from_row(r: &SqliteRow) -> Result<OrgKeyRecord> {
    org_key_from_columns(
        r.try_get("org_id")?,
        r.try_get::<i64, _>("version").or_else(|_| r.try_get::<i32, _>("version").map(i64::from))?,
        r.try_get("wrapped")?,
        r.try_get("kms_backend")?,
        r.try_get("kms_key_id")?,
        r.try_get("state")?,
        r.try_get("created_at")?,
        r.try_get("updated_at")?,
    )
}
