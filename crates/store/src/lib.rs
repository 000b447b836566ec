//! Persistence: one repository API over two hand-written backends, SQLite
//! (the embedded default) and PostgreSQL, each with its own migrations.
//!
//! Architecture invariant: only this crate knows SQL. Every call on
//! tenant-owned data takes an `OrgId` and filters by it in the query itself.

mod migrate;
mod postgres;
mod sqlite;

use std::path::PathBuf;

use domain::{NewOrganisation, OrgId, OrgSlug, Organisation};
use time::OffsetDateTime;

pub use migrate::{Applied, Migration, MigrationError, plan};

/// Where the store lives.
#[derive(Clone)]
pub enum StoreConfig {
    /// The embedded database file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server; the URL may carry a password, so this type's
    /// `Debug` never prints it.
    Postgres { url: String, max_connections: u32 },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres {
                max_connections, ..
            } => f
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
    Connect {
        backend: &'static str,
        source: sqlx::Error,
    },
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
            StoreConfig::Sqlite { path } => Backend::Sqlite(sqlite::SqliteStore::open(path).await?),
            StoreConfig::Postgres {
                url,
                max_connections,
            } => Backend::Postgres(postgres::PgStore::open(url, *max_connections).await?),
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

    /// Creates an organisation; its slug must be unused.
    pub async fn create_org(&self, new: &NewOrganisation) -> Result<Organisation> {
        let now = now();
        let org = Organisation {
            id: OrgId::new(),
            slug: new.slug.clone(),
            name: new.name.clone(),
            status: domain::OrgStatus::Active,
            created_at: now,
            updated_at: now,
        };
        dispatch!(self.insert_org(&org))?;
        Ok(org)
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

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

/// The current time at the precision both backends keep (microseconds), so
/// a value reads back equal to what was written.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
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
    let corrupt = |why: domain::ParseError| StoreError::Corrupt {
        what: "organisation",
        why: why.to_string(),
    };
    Ok(Organisation {
        id: OrgId::from_uuid(id),
        slug: OrgSlug::parse(slug).map_err(corrupt)?,
        name: domain::OrgName::parse(name).map_err(corrupt)?,
        status: domain::OrgStatus::parse(status).map_err(corrupt)?,
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
