//! Backend-neutral access to every archived table, for backups: a read-only
//! snapshot that streams rows as typed values, and a restore transaction that
//! writes them back, into either backend, all or nothing.
//!
//! The table list is the contract between the store and the archive format:
//! a table's columns have one logical type on both backends, so a SQLite
//! deployment's rows restore onto PostgreSQL and back.

use std::fmt;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::{Postgres, Row, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, Store, StoreError};

/// The logical type of a column, the same on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A 64-bit integer (`BIGINT`; SQLite `INTEGER`).
    Int,
    /// A 32-bit integer (`INTEGER` on PostgreSQL).
    Int32,
    Bool,
    Text,
    Bytes,
    Uuid,
    /// A timestamp (`TIMESTAMPTZ`; SQLite text through sqlx).
    Time,
}

impl ColumnKind {
    /// The one-byte code the archive format uses for this kind.
    pub fn code(self) -> u8 {
        match self {
            Self::Int => 1,
            Self::Int32 => 2,
            Self::Bool => 3,
            Self::Text => 4,
            Self::Bytes => 5,
            Self::Uuid => 6,
            Self::Time => 7,
        }
    }

    /// The kind of an archive code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Int,
            2 => Self::Int32,
            3 => Self::Bool,
            4 => Self::Text,
            5 => Self::Bytes,
            6 => Self::Uuid,
            7 => Self::Time,
            _ => return None,
        })
    }
}

/// One archived table: its columns in order, and the key that orders its
/// rows in a snapshot.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnKind)],
    pub order_by: &'static str,
}

impl Table {
    /// The table of that name, if it is archived.
    pub fn named(name: &str) -> Option<&'static Table> {
        TABLES.iter().find(|t| t.name == name)
    }

    /// The position of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(c, _)| *c == name)
    }
}

use ColumnKind::{Bool, Bytes, Int, Int32, Text, Time, Uuid as Id};

/// Every archived table, parents before children (the order restores insert
/// in). Not archived: migration history, sink leases, backup runs, and the
/// backup escrow keys, which must never travel with the data they unlock.
pub const TABLES: &[Table] = &[
    Table {
        name: "organisations",
        columns: &[
            ("id", Id),
            ("slug", Text),
            ("name", Text),
            ("status", Text),
            ("created_at", Time),
            ("updated_at", Time),
            ("require_mfa", Bool),
            ("encrypted_tokens", Bool),
        ],
        order_by: "id",
    },
    Table {
        name: "users",
        columns: &[
            ("id", Id),
            ("email", Text),
            ("display_name", Text),
            ("password_hash", Text),
            ("is_operator", Bool),
            ("status", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        order_by: "id",
    },
    Table {
        name: "org_keys",
        columns: &[
            ("org_id", Id),
            ("version", Int32),
            ("wrapped", Bytes),
            ("kms_backend", Text),
            ("kms_key_id", Text),
            ("state", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        order_by: "org_id, version",
    },
    Table {
        name: "memberships",
        columns: &[("org_id", Id), ("user_id", Id), ("role", Text), ("created_at", Time), ("updated_at", Time)],
        order_by: "org_id, user_id",
    },
    Table {
        name: "sessions",
        columns: &[
            ("secret_hash", Bytes),
            ("id", Id),
            ("user_id", Id),
            ("mfa_passed", Bool),
            ("created_at", Time),
            ("last_seen_at", Time),
            ("expires_at", Time),
            ("revoked_at", Time),
            ("acting_operator", Id),
            ("account_grant", Id),
        ],
        order_by: "secret_hash",
    },
    Table {
        name: "password_setups",
        columns: &[
            ("token_hash", Bytes),
            ("user_id", Id),
            ("purpose", Text),
            ("created_at", Time),
            ("expires_at", Time),
            ("used_at", Time),
        ],
        order_by: "token_hash",
    },
    Table {
        name: "platform_keys",
        columns: &[
            ("purpose", Text),
            ("version", Int32),
            ("wrapped", Bytes),
            ("kms_key_id", Text),
            ("created_at", Time),
        ],
        order_by: "purpose, version",
    },
    Table {
        name: "user_totp",
        columns: &[
            ("user_id", Id),
            ("seed", Bytes),
            ("key_version", Int32),
            ("confirmed_at", Time),
            ("last_step", Int),
            ("created_at", Time),
        ],
        order_by: "user_id",
    },
    Table {
        name: "recovery_codes",
        columns: &[("user_id", Id), ("code_hash", Bytes), ("used_at", Time)],
        order_by: "user_id, code_hash",
    },
    Table {
        name: "service_accounts",
        columns: &[
            ("org_id", Id),
            ("id", Id),
            ("name", Text),
            ("client_id", Text),
            ("secret_hash", Bytes),
            ("scopes", Text),
            ("created_at", Time),
            ("revoked_at", Time),
        ],
        order_by: "org_id, id",
    },
    Table {
        name: "signing_keys",
        columns: &[
            ("kid", Text),
            ("seed_wrapped", Bytes),
            ("kms_key_id", Text),
            ("created_at", Time),
            ("retired_at", Time),
        ],
        order_by: "kid",
    },
    Table { name: "revoked_tokens", columns: &[("jti", Text), ("expires_at", Time)], order_by: "jti" },
    Table {
        name: "invitations",
        columns: &[
            ("org_id", Id),
            ("id", Id),
            ("email", Text),
            ("role", Text),
            ("token_hash", Bytes),
            ("created_at", Time),
            ("expires_at", Time),
            ("accepted_at", Time),
        ],
        order_by: "org_id, id",
    },
    Table {
        name: "profile_schemas",
        columns: &[("org_id", Id), ("version", Int), ("fields", Text), ("created_at", Time), ("created_by", Text)],
        order_by: "org_id, version",
    },
    Table {
        name: "profiles",
        columns: &[
            ("org_id", Id),
            ("id", Id),
            ("revision", Int),
            ("schema_version", Int),
            ("owner_user_id", Id),
            ("record_key", Bytes),
            ("key_version", Int),
            ("field_names", Text),
            ("plain", Text),
            ("sealed", Bytes),
            ("created_at", Time),
            ("created_by", Text),
            ("updated_at", Time),
            ("updated_by", Text),
        ],
        order_by: "org_id, id",
    },
    Table {
        name: "profile_terms",
        columns: &[("org_id", Id), ("field", Text), ("term", Bytes), ("profile_id", Id)],
        order_by: "org_id, field, term, profile_id",
    },
    Table {
        name: "attachments",
        columns: &[
            ("org_id", Id),
            ("profile_id", Id),
            ("id", Id),
            ("name_token", Bytes),
            ("name_sealed", Bytes),
            ("content_type", Text),
            ("size", Int),
            ("blob_key", Text),
            ("created_at", Time),
            ("created_by", Text),
        ],
        order_by: "org_id, id",
    },
    Table { name: "audit_heads", columns: &[("chain", Text), ("seq", Int), ("hash", Bytes)], order_by: "chain" },
    Table {
        name: "audit_entries",
        columns: &[
            ("chain", Text),
            ("seq", Int),
            ("at_micros", Int),
            ("actor", Text),
            ("on_behalf_of", Text),
            ("action", Text),
            ("target", Text),
            ("outcome", Text),
            ("fields", Text),
            ("request_id", Text),
            ("prev_hash", Bytes),
            ("hash", Bytes),
        ],
        order_by: "chain, seq",
    },
    Table {
        name: "audit_checkpoints",
        columns: &[("chain", Text), ("size", Int), ("head", Bytes), ("at_micros", Int), ("jws", Text)],
        order_by: "chain, size",
    },
    Table {
        name: "audit_sink_cursors",
        columns: &[("sink", Text), ("chain", Text), ("entry_seq", Int), ("checkpoint_size", Int)],
        order_by: "sink, chain",
    },
    Table {
        name: "support_sessions",
        columns: &[
            ("org_id", Id),
            ("id", Id),
            ("operator_id", Id),
            ("reason", Text),
            ("write", Bool),
            ("profiles", Text),
            ("duration_secs", Int),
            ("status", Text),
            ("requested_at", Int),
            ("decided_by", Id),
            ("decided_at", Int),
            ("expires_at", Int),
            ("ended_at", Int),
            ("ended_by", Text),
            ("summary_sent", Bool),
        ],
        order_by: "org_id, id",
    },
    Table {
        name: "account_grants",
        columns: &[
            ("id", Id),
            ("user_id", Id),
            ("created_at", Int),
            ("expires_at", Int),
            ("ended_at", Int),
            ("ended_by", Text),
            ("end_notice_sent", Bool),
        ],
        order_by: "id",
    },
    Table {
        name: "backup_drills",
        columns: &[
            ("id", Id),
            ("backup_id", Id),
            ("target", Text),
            ("started_at", Int),
            ("restore_millis", Int),
            ("total_millis", Int),
            ("from_scratch", Bool),
            ("outcome", Text),
            ("report", Text),
        ],
        order_by: "id",
    },
    Table {
        name: "retention_policies",
        columns: &[("org_id", Id), ("policy", Text), ("updated_at", Int), ("updated_by", Text)],
        order_by: "org_id",
    },
];

/// Tables a forced restore also empties although they are not archived.
const CLEARED_NOT_ARCHIVED: &[&str] = &["backup_escrow", "backup_runs", "audit_sink_leases"];

/// One column's value. `Debug` shows the kind and size, never the content.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    Time(OffsetDateTime),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("Null"),
            Self::Int(_) => f.write_str("Int"),
            Self::Bool(_) => f.write_str("Bool"),
            Self::Text(s) => write!(f, "Text({} bytes)", s.len()),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Uuid(_) => f.write_str("Uuid"),
            Self::Time(_) => f.write_str("Time"),
        }
    }
}

impl Value {
    /// Whether the value fits a column of `kind` (null fits any; nullability
    /// is the database's to check).
    pub fn fits(&self, kind: ColumnKind) -> bool {
        matches!(
            (self, kind),
            (Self::Null, _)
                | (Self::Int(_), ColumnKind::Int | ColumnKind::Int32)
                | (Self::Bool(_), ColumnKind::Bool)
                | (Self::Text(_), ColumnKind::Text)
                | (Self::Bytes(_), ColumnKind::Bytes)
                | (Self::Uuid(_), ColumnKind::Uuid)
                | (Self::Time(_), ColumnKind::Time)
        )
    }
}

fn select_sql(table: &Table) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
    format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), table.name, table.order_by)
}

macro_rules! decode_row {
    ($row:expr, $table:expr, $int32:ty) => {{
        let row = $row;
        let mut values = Vec::with_capacity($table.columns.len());
        for (i, (_, kind)) in $table.columns.iter().enumerate() {
            let v = match kind {
                ColumnKind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                ColumnKind::Int32 => row.try_get::<Option<$int32>, _>(i)?.map(|v| Value::Int(i64::from(v))),
                ColumnKind::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                ColumnKind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
                ColumnKind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
                ColumnKind::Uuid => row.try_get::<Option<Uuid>, _>(i)?.map(Value::Uuid),
                ColumnKind::Time => row.try_get::<Option<OffsetDateTime>, _>(i)?.map(Value::Time),
            };
            values.push(v.unwrap_or(Value::Null));
        }
        Ok::<_, StoreError>(values)
    }};
}

enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A consistent, read-only view of the whole store, open until dropped or
/// [`Snapshot::finish`]ed. Writers keep working meanwhile.
pub struct Snapshot {
    tx: Tx,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Streams one table's rows, in key order, as values in the table's
    /// column order.
    pub fn rows<'a>(&'a mut self, table: &'static Table) -> BoxStream<'a, Result<Vec<Value>>> {
        let sql = select_sql(table);
        match &mut self.tx {
            Tx::Sqlite(tx) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch(&mut **tx)
                .map(move |row| decode_row!(row?, table, i64))
                .boxed(),
            Tx::Postgres(tx) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch(&mut **tx)
                .map(move |row| decode_row!(row?, table, i32))
                .boxed(),
        }
    }

    /// Ends the snapshot.
    pub async fn finish(self) -> Result<()> {
        match self.tx {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// Bound parameters per INSERT statement when restoring: under SQLite's
/// limit (32,766) and PostgreSQL's (65,535).
const MAX_PARAMS: usize = 30_000;
/// Rows per INSERT statement at most.
const MAX_ROWS_PER_INSERT: usize = 1000;

/// A restore under way: one write transaction over the whole store, which
/// commits only in [`Restore::commit`]. Dropped uncommitted, it leaves the
/// store exactly as it was.
pub struct Restore {
    tx: Tx,
}

impl fmt::Debug for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restore").finish_non_exhaustive()
    }
}

impl Restore {
    /// Inserts rows of `table` given in the archive's column order:
    /// `columns` holds each archived column's position in the table. Columns
    /// the archive lacks (added by a later migration) take their default.
    /// Values are moved into the statements, never copied.
    pub async fn insert(&mut self, table: &'static Table, columns: &[usize], rows: Vec<Vec<Value>>) -> Result<()> {
        let per_statement = (MAX_PARAMS / columns.len().max(1)).clamp(1, MAX_ROWS_PER_INSERT);
        let names: Vec<&str> = columns.iter().map(|&i| table.columns[i].0).collect();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
            let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
            let mut n = 0;
            for r in 0..batch.len() {
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..columns.len() {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    match self.tx {
                        Tx::Sqlite(_) => sql.push('?'),
                        Tx::Postgres(_) => sql.push_str(&format!("${n}")),
                    }
                }
                sql.push(')');
            }
            match &mut self.tx {
                Tx::Sqlite(tx) => {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for row in batch {
                        for (v, &i) in row.into_iter().zip(columns) {
                            q = bind_sqlite(q, v, table.columns[i].1);
                        }
                    }
                    q.execute(&mut **tx).await?;
                }
                Tx::Postgres(tx) => {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for row in batch {
                        for (v, &i) in row.into_iter().zip(columns) {
                            q = bind_postgres(q, v, table.columns[i].1);
                        }
                    }
                    q.execute(&mut **tx).await?;
                }
            }
        }
        Ok(())
    }

    /// Deletes the attachment rows whose blobs were gone when the backup
    /// was taken (deleted while it ran).
    pub async fn drop_attachment(&mut self, org: Uuid, id: Uuid) -> Result<()> {
        match &mut self.tx {
            Tx::Sqlite(tx) => {
                sqlx::query("DELETE FROM attachments WHERE org_id = ? AND id = ?")
                    .bind(org)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                sqlx::query("DELETE FROM attachments WHERE org_id = $1 AND id = $2")
                    .bind(org)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stores an organisation's backup escrow key in the restored store.
    pub async fn put_escrow(&mut self, escrow: &EscrowRow) -> Result<()> {
        match &mut self.tx {
            Tx::Sqlite(tx) => {
                sqlx::query("INSERT INTO backup_escrow (org_id, wrapped, kms_key_id, created_at) VALUES (?, ?, ?, ?)")
                    .bind(escrow.org_id)
                    .bind(&escrow.wrapped)
                    .bind(&escrow.kms_key_id)
                    .bind(escrow.created_at)
                    .execute(&mut **tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                sqlx::query(
                    "INSERT INTO backup_escrow (org_id, wrapped, kms_key_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(escrow.org_id)
                .bind(&escrow.wrapped)
                .bind(&escrow.kms_key_id)
                .bind(escrow.created_at)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }

    /// Makes the restore visible, all at once.
    pub async fn commit(self) -> Result<()> {
        match self.tx {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_sqlite<'q>(q: SqliteQuery<'q>, v: Value, kind: ColumnKind) -> SqliteQuery<'q> {
    match (v, kind) {
        (Value::Null, ColumnKind::Int | ColumnKind::Int32 | ColumnKind::Bool) => q.bind(None::<i64>),
        (Value::Null, ColumnKind::Text | ColumnKind::Time) => q.bind(None::<String>),
        (Value::Null, ColumnKind::Bytes | ColumnKind::Uuid) => q.bind(None::<Vec<u8>>),
        (Value::Int(i), _) => q.bind(i),
        (Value::Bool(b), _) => q.bind(b),
        (Value::Text(s), _) => q.bind(s),
        (Value::Bytes(b), _) => q.bind(b),
        (Value::Uuid(u), _) => q.bind(u),
        (Value::Time(t), _) => q.bind(t),
    }
}

fn bind_postgres<'q>(q: PgQuery<'q>, v: Value, kind: ColumnKind) -> PgQuery<'q> {
    match (v, kind) {
        (Value::Null, ColumnKind::Int) => q.bind(None::<i64>),
        (Value::Null, ColumnKind::Int32) => q.bind(None::<i32>),
        (Value::Null, ColumnKind::Bool) => q.bind(None::<bool>),
        (Value::Null, ColumnKind::Text) => q.bind(None::<String>),
        (Value::Null, ColumnKind::Bytes) => q.bind(None::<Vec<u8>>),
        (Value::Null, ColumnKind::Uuid) => q.bind(None::<Uuid>),
        (Value::Null, ColumnKind::Time) => q.bind(None::<OffsetDateTime>),
        // The backup reader refuses an archived 32-bit value that does not
        // fit before it gets here.
        (Value::Int(i), ColumnKind::Int32) => q.bind(i32::try_from(i).unwrap_or(i32::MIN)),
        (Value::Int(i), _) => q.bind(i),
        (Value::Bool(b), _) => q.bind(b),
        (Value::Text(s), _) => q.bind(s),
        (Value::Bytes(b), _) => q.bind(b),
        (Value::Uuid(u), _) => q.bind(u),
        (Value::Time(t), _) => q.bind(t),
    }
}

/// An organisation's backup escrow key, wrapped by the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowRow {
    pub org_id: Uuid,
    pub wrapped: Vec<u8>,
    pub kms_key_id: String,
    pub created_at: i64,
}

/// One backup run, scheduled or manual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRunRow {
    pub id: Uuid,
    pub schedule: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `running`, `success` or `failure`.
    pub outcome: String,
    pub bytes: Option<i64>,
    /// A short description, never a stored value.
    pub detail: String,
}

/// One drill's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRow {
    pub id: Uuid,
    pub backup_id: Option<Uuid>,
    pub target: String,
    pub started_at: i64,
    pub restore_millis: i64,
    pub total_millis: i64,
    pub from_scratch: bool,
    /// `success` or `failure`.
    pub outcome: String,
    /// The report as JSON: counts, chains, decrypts, the failure if any.
    pub report: String,
}

fn run_from_row<R: Row>(r: &R) -> Result<BackupRunRow>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> Uuid: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(BackupRunRow {
        id: r.try_get("id")?,
        schedule: r.try_get("schedule")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        outcome: r.try_get("outcome")?,
        bytes: r.try_get("bytes")?,
        detail: r.try_get("detail")?,
    })
}

fn drill_from_row<R: Row>(r: &R) -> Result<DrillRow>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> Uuid: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> bool: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(DrillRow {
        id: r.try_get("id")?,
        backup_id: r.try_get("backup_id")?,
        target: r.try_get("target")?,
        started_at: r.try_get("started_at")?,
        restore_millis: r.try_get("restore_millis")?,
        total_millis: r.try_get("total_millis")?,
        from_scratch: r.try_get("from_scratch")?,
        outcome: r.try_get("outcome")?,
        report: r.try_get("report")?,
    })
}

fn escrow_from_row<R: Row>(r: &R) -> Result<EscrowRow>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> Uuid: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> Vec<u8>: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(EscrowRow {
        org_id: r.try_get("org_id")?,
        wrapped: r.try_get("wrapped")?,
        kms_key_id: r.try_get("kms_key_id")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Opens a consistent read-only snapshot of every archived table
    /// (PostgreSQL: a `REPEATABLE READ, READ ONLY` transaction; SQLite: one
    /// read transaction of the WAL, fixed by its first read).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let tx = match &self.backend {
            crate::Backend::Sqlite(s) => {
                let mut tx = s.pool.begin().await?;
                // The first read fixes the snapshot for the whole transaction.
                sqlx::query("SELECT count(*) FROM organisations").execute(&mut *tx).await?;
                Tx::Sqlite(tx)
            }
            crate::Backend::Postgres(s) => {
                let mut tx = s.pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
                Tx::Postgres(tx)
            }
        };
        Ok(Snapshot { tx })
    }

    /// The first archived table that holds a row, if any.
    pub async fn first_non_empty_table(&self) -> Result<Option<&'static str>> {
        for table in TABLES {
            let sql = format!("SELECT 1 FROM {} LIMIT 1", table.name);
            let found = both!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(pool).await?.is_some());
            if found {
                return Ok(Some(table.name));
            }
        }
        Ok(None)
    }

    /// Starts a restore. The store must hold no archived row, unless
    /// `replace`, which empties every table first, inside the same
    /// transaction. Fails with `Conflict` naming the first non-empty table.
    pub async fn begin_restore(&self, replace: bool) -> Result<Restore> {
        let mut tx = match &self.backend {
            // Take the write lock now, so the emptiness check holds.
            crate::Backend::Sqlite(s) => Tx::Sqlite(s.begin_write().await?),
            crate::Backend::Postgres(s) => {
                let mut tx = s.pool.begin().await?;
                // One restore at a time, and no writer meanwhile on these tables.
                let mut names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
                names.extend(CLEARED_NOT_ARCHIVED);
                let lock = format!("LOCK TABLE {} IN EXCLUSIVE MODE", names.join(", "));
                sqlx::query(sqlx::AssertSqlSafe(lock)).execute(&mut *tx).await?;
                Tx::Postgres(tx)
            }
        };
        // Rows that refer to archived ones go first.
        if replace {
            for name in CLEARED_NOT_ARCHIVED {
                let sql = format!("DELETE FROM {name}");
                match &mut tx {
                    Tx::Sqlite(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?.rows_affected(),
                    Tx::Postgres(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?.rows_affected(),
                };
            }
        }
        for table in TABLES.iter().rev() {
            if replace {
                let sql = format!("DELETE FROM {}", table.name);
                match &mut tx {
                    Tx::Sqlite(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?.rows_affected(),
                    Tx::Postgres(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **t).await?.rows_affected(),
                };
                continue;
            }
            let sql = format!("SELECT 1 FROM {} LIMIT 1", table.name);
            let found = match &mut tx {
                Tx::Sqlite(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut **t).await?.is_some(),
                Tx::Postgres(t) => sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut **t).await?.is_some(),
            };
            if found {
                return Err(StoreError::Conflict { what: table.name });
            }
        }
        Ok(Restore { tx })
    }

    /// Every organisation's backup escrow key.
    pub async fn backup_escrows(&self) -> Result<Vec<EscrowRow>> {
        let sql = "SELECT org_id, wrapped, kms_key_id, created_at FROM backup_escrow ORDER BY org_id";
        both!(self, |pool| sqlx::query(sql).fetch_all(pool).await?.iter().map(escrow_from_row).collect())
    }

    /// Stores an organisation's escrow key unless it has one, and only
    /// while it holds a live key version; returns the one stored, or `None`
    /// for an organisation whose keys are all destroyed.
    pub async fn ensure_backup_escrow(&self, row: &EscrowRow) -> Result<Option<EscrowRow>> {
        let insert = sql2!(
            self,
            "INSERT INTO backup_escrow (org_id, wrapped, kms_key_id, created_at)
             SELECT ?, ?, ?, ? WHERE EXISTS
                 (SELECT 1 FROM org_keys WHERE org_id = ? AND state <> 'destroyed')
             ON CONFLICT (org_id) DO NOTHING",
            "INSERT INTO backup_escrow (org_id, wrapped, kms_key_id, created_at)
             SELECT $1, $2, $3, $4 WHERE EXISTS
                 (SELECT 1 FROM org_keys WHERE org_id = $1 AND state <> 'destroyed')
             ON CONFLICT (org_id) DO NOTHING"
        );
        let select = sql2!(
            self,
            "SELECT org_id, wrapped, kms_key_id, created_at FROM backup_escrow WHERE org_id = ?",
            "SELECT org_id, wrapped, kms_key_id, created_at FROM backup_escrow WHERE org_id = $1"
        );
        both_write!(self, |pool| {
            let mut q =
                sqlx::query(insert).bind(row.org_id).bind(&row.wrapped).bind(&row.kms_key_id).bind(row.created_at);
            if matches!(self.backend, crate::Backend::Sqlite(_)) {
                q = q.bind(row.org_id);
            }
            q.execute(pool).await?;
            sqlx::query(select).bind(row.org_id).fetch_optional(pool).await?.map(|r| escrow_from_row(&r)).transpose()
        })
    }

    /// Replaces an escrow key's wrapped form after a root-key rotation.
    pub async fn rewrap_backup_escrow(&self, org: Uuid, wrapped: &[u8], kms_key_id: &str) -> Result<()> {
        let sql = sql2!(
            self,
            "UPDATE backup_escrow SET wrapped = ?, kms_key_id = ? WHERE org_id = ?",
            "UPDATE backup_escrow SET wrapped = $1, kms_key_id = $2 WHERE org_id = $3"
        );
        both_write!(self, |pool| sqlx::query(sql)
            .bind(wrapped)
            .bind(kms_key_id)
            .bind(org)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// When a chain's first entry was written (the deployment's first start,
    /// for the platform chain), in microseconds.
    pub async fn first_audit_micros(&self, chain: &str) -> Result<Option<i64>> {
        let sql = sql2!(
            self,
            "SELECT at_micros FROM audit_entries WHERE chain = ? ORDER BY seq LIMIT 1",
            "SELECT at_micros FROM audit_entries WHERE chain = $1 ORDER BY seq LIMIT 1"
        );
        both!(self, |pool| {
            let row = sqlx::query(sql).bind(chain).fetch_optional(pool).await?;
            Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
        })
    }

    /// How many entries a chain holds (0 for a chain not begun).
    pub async fn audit_size(&self, chain: &str) -> Result<i64> {
        let sql =
            sql2!(self, "SELECT seq FROM audit_heads WHERE chain = ?", "SELECT seq FROM audit_heads WHERE chain = $1");
        both!(self, |pool| {
            let row = sqlx::query(sql).bind(chain).fetch_optional(pool).await?;
            Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0))
        })
    }

    /// Records the start of a backup run.
    pub async fn start_backup_run(&self, run: &BackupRunRow) -> Result<()> {
        let sql = sql2!(
            self,
            "INSERT INTO backup_runs (id, schedule, started_at, finished_at, outcome, bytes, detail)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            "INSERT INTO backup_runs (id, schedule, started_at, finished_at, outcome, bytes, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        both_write!(self, |pool| sqlx::query(sql)
            .bind(run.id)
            .bind(&run.schedule)
            .bind(run.started_at)
            .bind(run.finished_at)
            .bind(&run.outcome)
            .bind(run.bytes)
            .bind(&run.detail)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records how a backup run ended.
    pub async fn finish_backup_run(
        &self,
        id: Uuid,
        finished_at: i64,
        outcome: &str,
        bytes: Option<i64>,
        detail: &str,
    ) -> Result<()> {
        let sql = sql2!(
            self,
            "UPDATE backup_runs SET finished_at = ?, outcome = ?, bytes = ?, detail = ? WHERE id = ?",
            "UPDATE backup_runs SET finished_at = $1, outcome = $2, bytes = $3, detail = $4 WHERE id = $5"
        );
        both_write!(self, |pool| sqlx::query(sql)
            .bind(finished_at)
            .bind(outcome)
            .bind(bytes)
            .bind(detail)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The latest run of a schedule, and its latest successful run.
    pub async fn last_backup_runs(&self, schedule: &str) -> Result<(Option<BackupRunRow>, Option<BackupRunRow>)> {
        let last = sql2!(
            self,
            "SELECT id, schedule, started_at, finished_at, outcome, bytes, detail FROM backup_runs
             WHERE schedule = ? ORDER BY started_at DESC LIMIT 1",
            "SELECT id, schedule, started_at, finished_at, outcome, bytes, detail FROM backup_runs
             WHERE schedule = $1 ORDER BY started_at DESC LIMIT 1"
        );
        let success = sql2!(
            self,
            "SELECT id, schedule, started_at, finished_at, outcome, bytes, detail FROM backup_runs
             WHERE schedule = ? AND outcome = 'success' ORDER BY started_at DESC LIMIT 1",
            "SELECT id, schedule, started_at, finished_at, outcome, bytes, detail FROM backup_runs
             WHERE schedule = $1 AND outcome = 'success' ORDER BY started_at DESC LIMIT 1"
        );
        both!(self, |pool| {
            let a = sqlx::query(last).bind(schedule).fetch_optional(pool).await?.map(|r| run_from_row(&r));
            let b = sqlx::query(success).bind(schedule).fetch_optional(pool).await?.map(|r| run_from_row(&r));
            Ok((a.transpose()?, b.transpose()?))
        })
    }

    /// Records a drill's report.
    pub async fn record_drill(&self, d: &DrillRow) -> Result<()> {
        let sql = sql2!(
            self,
            "INSERT INTO backup_drills (id, backup_id, target, started_at, restore_millis, total_millis,
                 from_scratch, outcome, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            "INSERT INTO backup_drills (id, backup_id, target, started_at, restore_millis, total_millis,
                 from_scratch, outcome, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        both_write!(self, |pool| sqlx::query(sql)
            .bind(d.id)
            .bind(d.backup_id)
            .bind(&d.target)
            .bind(d.started_at)
            .bind(d.restore_millis)
            .bind(d.total_millis)
            .bind(d.from_scratch)
            .bind(&d.outcome)
            .bind(&d.report)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Drill reports, newest first, at most `limit`.
    pub async fn drills(&self, limit: i64) -> Result<Vec<DrillRow>> {
        let sql = sql2!(
            self,
            "SELECT id, backup_id, target, started_at, restore_millis, total_millis, from_scratch, outcome, report
             FROM backup_drills ORDER BY started_at DESC, id DESC LIMIT ?",
            "SELECT id, backup_id, target, started_at, restore_millis, total_millis, from_scratch, outcome, report
             FROM backup_drills ORDER BY started_at DESC, id DESC LIMIT $1"
        );
        both!(self, |pool| sqlx::query(sql).bind(limit).fetch_all(pool).await?.iter().map(drill_from_row).collect())
    }
}
