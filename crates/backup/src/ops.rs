//! Backup operations: create an archive from a snapshot and copy it to every
//! target, list, verify, restore (into any store, all or nothing), prune by
//! retention, drill, and the per-organisation escrow objects that make
//! crypto-shredding reach old archives.

use std::collections::HashMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use crypto::{Key256, KeyContext};
use futures_util::{StreamExt, TryStreamExt};
use kms::{Kms, WrappedKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::dump::{TABLES, Table, Value};
use store::{BlobKey, BlobStore, DrillRow, EscrowRow, Store, StoreConfig, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::format::{BLOB_PIECE, FORMAT_VERSION, FormatError, Header, Manifest, Reader, Record, Writer, escrow_aad};
use crate::retention::{self, Rules};

/// Archive keys: `backups/<uuid v7>`, so key order is time order.
const ARCHIVES: &str = "backups";
/// Escrow keys: `escrow/<org uuid>`, one object per organisation.
const ESCROWS: &str = "escrow";
/// Most archives a listing reads.
const MAX_LISTED: usize = 100_000;
/// Rows buffered per insert when restoring.
const RESTORE_BATCH: usize = 1000;
/// The key cache of a drill's engine: short-lived, small.
const DRILL_CACHE: engine::CacheSettings =
    engine::CacheSettings { ttl: std::time::Duration::from_secs(60), max_entries: 1000 };
/// The lease that makes escrow publishing and deletion exclusive.
const ESCROW_LEASE: &str = "backup:escrow";
const ESCROW_LEASE_MICROS: i64 = 300 * 1_000_000;
const ESCROW_WAIT: std::time::Duration = std::time::Duration::from_secs(120);
/// Records a drill decrypts per organisation.
const DRILL_SAMPLE: u32 = 5;

/// What goes wrong. Messages name the backup, target or table, never a
/// stored value.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("target {target}: {source}")]
    Target { target: String, source: store::BlobError },
    #[error("key backend: {0}")]
    Kms(#[from] kms::KmsError),
    #[error(
        "cannot unwrap the data key of backup {0}: this deployment's key backend or root key is not the one that made it"
    )]
    WrongKey(Uuid),
    #[error("no backup {0} at target {1}")]
    NotFound(String, String),
    #[error("no readable backup at target {0}")]
    NoneReadable(String),
    #[error("no backup target named {0}")]
    NoTarget(String),
    #[error("the target store is not empty (table {0} holds rows); restore with --force to replace its content")]
    NotEmpty(&'static str),
    #[error("the archive does not fit this version: {0}")]
    Incompatible(String),
    #[error("the copy at target {0} differs from what was written")]
    CopyMismatch(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("a schedule's name must be 1 to 64 printable characters, without spaces")]
    ScheduleName,
    #[error("{0}")]
    Other(String),
}

/// Whether `name` may name a backup run's schedule. It is written into the
/// run's audit entries as a field (`schedule:<name>`), and an audit entry's
/// field names are stored separated by spaces.
pub fn valid_schedule_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// Reports progress to a person (the CLI's bars); the server passes
/// [`Quiet`].
pub trait Progress: Send + Sync {
    /// A stage starts; `total` units if known.
    fn stage(&self, name: &str, total: Option<u64>);
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// No progress reporting.
#[derive(Debug, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {
    fn stage(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A place archives are copied to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub blobs: BlobStore,
}

/// One archive at one target.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub target: String,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub schedule: String,
    pub bytes: u64,
    pub format: u16,
    pub source_backend: String,
}

/// A backup just made.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub id: Uuid,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
    pub blobs: u64,
    pub targets: Vec<String>,
    pub seconds: f64,
}

/// What a restore (or verification) read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restored {
    pub id: Uuid,
    pub tables: Vec<(String, u64)>,
    pub rows: u64,
    pub blobs: u64,
    /// Organisations whose keys were destroyed since the backup: their
    /// escrow is gone, so their data stays unreadable.
    pub shredded_orgs: Vec<Uuid>,
    pub seconds: f64,
}

/// The escrow object of an organisation at a target.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscrowObject {
    format: u16,
    org: Uuid,
    kms_backend: String,
    kms_key_id: String,
    /// The escrow key, wrapped by the root key with context
    /// `{backup-escrow, <org>, 1}`, base64.
    wrapped: String,
    created_at: i64,
}

fn archive_key(id: Uuid) -> Result<BlobKey> {
    BlobKey::new(&format!("{ARCHIVES}/{id}")).map_err(|e| BackupError::Other(e.to_string()))
}

fn escrow_key(org: Uuid) -> Result<BlobKey> {
    BlobKey::new(&format!("{ESCROWS}/{org}")).map_err(|e| BackupError::Other(e.to_string()))
}

/// Backups of one deployment.
#[derive(Debug, Clone)]
pub struct Backups {
    engine: engine::Engine,
    targets: Vec<Target>,
    work_dir: PathBuf,
    rules: Rules,
}

impl Backups {
    /// `work_dir` holds archives while they are written and scratch stores
    /// of drills; it must be private to this user (the data directory's
    /// `backups` folder).
    pub fn new(engine: engine::Engine, targets: Vec<Target>, work_dir: PathBuf, rules: Rules) -> Self {
        Self { engine, targets, work_dir, rules }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    fn kms(&self) -> &Kms {
        self.engine.keys().kms()
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    pub fn target(&self, name: Option<&str>) -> Result<&Target> {
        match name {
            None => self.targets.first().ok_or_else(|| BackupError::NoTarget("(none configured)".into())),
            Some(n) => self.targets.iter().find(|t| t.name == n).ok_or_else(|| BackupError::NoTarget(n.to_owned())),
        }
    }

    /// The escrow keys organisations already have, unwrapped. Missing ones
    /// are made when a key version first needs sealing, so organisations
    /// whose keys are all destroyed never get one again.
    async fn escrow_keys(&self) -> Result<HashMap<Uuid, Key256>> {
        let mut keys = HashMap::new();
        for row in self.store().backup_escrows().await? {
            let context = KeyContext::backup_escrow(domain::OrgId::from_uuid(row.org_id));
            keys.insert(row.org_id, self.kms().unwrap(&WrappedKey(row.wrapped.clone()), &context).await?);
        }
        Ok(keys)
    }

    /// An organisation's escrow key, made if missing; `None` once its keys
    /// are all destroyed (it never gets one again).
    async fn ensure_escrow(&self, org: Uuid) -> Result<Option<EscrowRow>> {
        let existing = self.store().backup_escrows().await?.into_iter().find(|r| r.org_id == org);
        if let Some(row) = existing {
            return Ok(Some(row));
        }
        let (_, wrapped) =
            self.kms().generate_data_key(&KeyContext::backup_escrow(domain::OrgId::from_uuid(org))).await?;
        let row = EscrowRow {
            org_id: org,
            wrapped: wrapped.0,
            kms_key_id: self.kms().info().key_id,
            created_at: engine::now_micros(),
        };
        Ok(self.store().ensure_backup_escrow(&row).await?)
    }

    /// Takes the lease that makes publishing and deleting escrow objects
    /// exclusive (a backup against `keys destroy`), waiting up to two minutes.
    async fn lock_escrows(&self) -> Result<String> {
        let holder = Uuid::new_v4().to_string();
        let deadline = Instant::now() + ESCROW_WAIT;
        loop {
            let now = engine::now_micros();
            if self.store().take_sink_lease(ESCROW_LEASE, &holder, now, now + ESCROW_LEASE_MICROS).await? {
                return Ok(holder);
            }
            if Instant::now() > deadline {
                return Err(BackupError::Other("another backup or key destruction holds the escrow lease".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn unlock_escrows(&self, holder: &str) {
        let _ = self.store().release_sink_lease(ESCROW_LEASE, holder).await;
    }

    /// Brings the escrow objects at every target in line with the store,
    /// under the escrow lease: each escrow row is written, and the object of
    /// any organisation of ours without a row (its keys destroyed) deleted.
    /// Objects of organisations this deployment does not know are left alone.
    async fn publish_escrows(&self) -> Result<()> {
        let holder = self.lock_escrows().await?;
        let result = self.publish_escrows_locked().await;
        self.unlock_escrows(&holder).await;
        result
    }

    async fn publish_escrows_locked(&self) -> Result<()> {
        let info = self.kms().info();
        let rows = self.store().backup_escrows().await?;
        let shredded: Vec<Uuid> = self
            .store()
            .list_orgs()
            .await?
            .into_iter()
            .map(|o| o.id.as_uuid())
            .filter(|id| !rows.iter().any(|r| r.org_id == *id))
            .collect();
        for t in &self.targets {
            let fail = |source| BackupError::Target { target: t.name.clone(), source };
            for row in &rows {
                let object = EscrowObject {
                    format: 1,
                    org: row.org_id,
                    kms_backend: info.backend.to_owned(),
                    kms_key_id: row.kms_key_id.clone(),
                    wrapped: B64.encode(&row.wrapped),
                    created_at: row.created_at,
                };
                let body = Bytes::from(serde_json::to_vec(&object).map_err(|e| BackupError::Other(e.to_string()))?);
                let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(body)]);
                t.blobs.put(&escrow_key(row.org_id)?, stream).await.map_err(fail)?;
            }
            for org in &shredded {
                t.blobs.delete(&escrow_key(*org)?).await.map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Crypto-shredding reaches backups: deletes an organisation's escrow
    /// object at every target (its row went with its keys), under the
    /// escrow lease so no backup puts it back. Returns the targets that
    /// could not be reached; every later backup deletes it there again.
    pub async fn forget_org(&self, org: Uuid) -> Vec<(String, String)> {
        let holder = match self.lock_escrows().await {
            Ok(h) => h,
            Err(e) => return self.targets.iter().map(|t| (t.name.clone(), e.to_string())).collect(),
        };
        let mut failed = Vec::new();
        for t in &self.targets {
            let result = match escrow_key(org) {
                Ok(key) => t.blobs.delete(&key).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                failed.push((t.name.clone(), e));
            }
        }
        self.unlock_escrows(&holder).await;
        failed
    }

    /// Makes a backup: a consistent snapshot of the store and the blobs of
    /// its attachments, written once, copied to every target and each copy
    /// read back and compared. Records the run and audits it.
    pub async fn create(&self, schedule: &str, actor: &str, progress: &dyn Progress) -> Result<Created> {
        if !valid_schedule_name(schedule) {
            return Err(BackupError::ScheduleName);
        }
        let id = Uuid::now_v7();
        let started = Instant::now();
        let started_at = engine::now_micros();
        self.store()
            .start_backup_run(&store::BackupRunRow {
                id,
                schedule: schedule.to_owned(),
                started_at,
                finished_at: None,
                outcome: "running".into(),
                bytes: None,
                detail: String::new(),
            })
            .await?;
        let result = self.create_inner(id, schedule, progress).await;
        let finished = engine::now_micros();
        match &result {
            Ok(c) => {
                let c = Created { seconds: started.elapsed().as_secs_f64(), ..c.clone() };
                let detail = format!("{} rows, {} blobs, targets {}", c.rows, c.blobs, c.targets.join(","));
                self.store().finish_backup_run(id, finished, "success", i64::try_from(c.bytes).ok(), &detail).await?;
                self.engine
                    .record_operation(
                        actor,
                        "backup.create",
                        format!("backup:{id}"),
                        true,
                        vec![format!("schedule:{schedule}"), format!("rows:{}", c.rows), format!("bytes:{}", c.bytes)],
                    )
                    .await
                    .map_err(|e| BackupError::Other(e.to_string()))?;
                return Ok(c);
            }
            Err(e) => {
                let detail = e.to_string();
                self.store().finish_backup_run(id, finished, "failure", None, &detail).await?;
                let _ = self
                    .engine
                    .record_operation(
                        actor,
                        "backup.create",
                        format!("backup:{id}"),
                        false,
                        vec![format!("schedule:{schedule}")],
                    )
                    .await;
            }
        }
        result
    }

    async fn create_inner(&self, id: Uuid, schedule: &str, progress: &dyn Progress) -> Result<Created> {
        if self.targets.is_empty() {
            return Err(BackupError::NoTarget("(none configured)".into()));
        }
        let kms = self.kms();
        let (data_key, wrapped) = kms.generate_data_key(&KeyContext::backup(id)).await?;
        let mut escrow_keys = self.escrow_keys().await?;
        let schema_version = self.store().applied_migrations().await?.last().map_or(0, |m| m.version);
        let header = Header {
            format: FORMAT_VERSION,
            id,
            created_at: OffsetDateTime::now_utc(),
            source_backend: self.store().backend_name().to_owned(),
            schema_version,
            strongroom_version: env!("CARGO_PKG_VERSION").to_owned(),
            kms_backend: kms.info().backend.to_owned(),
            kms_key_id: kms.info().key_id,
            wrapped_key: B64.encode(&wrapped.0),
            schedule: schedule.to_owned(),
        };
        create_private_dir(&self.work_dir)?;
        let partial = self.work_dir.join(format!(".{id}.partial"));
        let _cleanup = RemoveOnDrop(partial.clone());
        let file = open_private(&partial)?;
        let mut w = Writer::new(&header, &data_key, BufWriter::with_capacity(256 * 1024, file))?;
        let mut manifest = Manifest::default();
        let mut attachments: Vec<(Uuid, Uuid, String)> = Vec::new();
        let mut rows_total = 0u64;

        progress.stage("snapshot", None);
        let mut snapshot = self.store().snapshot().await?;
        for table in TABLES {
            w.begin_table(table.name, table.columns)?;
            let mut rows = snapshot.rows(table);
            while let Some(row) = rows.next().await {
                let mut row = row?;
                if table.name == "org_keys" {
                    self.seal_org_key(table, &mut row, &mut escrow_keys).await?;
                }
                if table.name == "attachments" {
                    attachments.push(attachment_ref(table, &row)?);
                }
                w.row(&row)?;
                rows_total += 1;
                progress.advance(1);
            }
            drop(rows);
            manifest.sections.push(w.end_table(table.name)?);
        }
        snapshot.finish().await?;

        if let Some(blobs) = self.engine.blob_store() {
            progress.stage("attachments", Some(attachments.len() as u64));
            for (org, att, key) in &attachments {
                let Ok(blob_key) = BlobKey::new(key) else {
                    return Err(BackupError::Other(format!("attachment {att} has an invalid blob key")));
                };
                let len = match blobs.head(&blob_key).await {
                    Ok(Some(len)) => len,
                    Ok(None) => {
                        manifest.missing_blobs.push((*org, *att));
                        continue;
                    }
                    Err(e) => return Err(BackupError::Other(format!("attachments: {e}"))),
                };
                let mut stream = match blobs.get(&blob_key).await {
                    Ok(s) => s,
                    Err(store::BlobError::NotFound) => {
                        manifest.missing_blobs.push((*org, *att));
                        continue;
                    }
                    Err(e) => return Err(BackupError::Other(format!("attachments: {e}"))),
                };
                w.begin_blob(key, len)?;
                let mut seen = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| BackupError::Other(format!("attachments: {e}")))?;
                    for piece in chunk.chunks(BLOB_PIECE) {
                        w.blob_piece(piece)?;
                    }
                    seen += chunk.len() as u64;
                }
                if seen != len {
                    return Err(BackupError::Other(format!("attachment {att} changed size while it was read")));
                }
                manifest.blobs += 1;
                manifest.blob_bytes += len;
                progress.advance(1);
            }
        }
        manifest.blobs_sha256 = w.blobs_sha256();
        manifest.escrowed_orgs = escrow_keys.keys().copied().collect();
        manifest.escrowed_orgs.sort();
        let (out, bytes, digest) = w.finish(&manifest)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;

        // Escrow objects first: an archive is never at a target without
        // what opens its organisations' keys.
        self.publish_escrows().await?;
        progress.stage("upload", Some(bytes * self.targets.len() as u64));
        let key = archive_key(id)?;
        for t in &self.targets {
            let file = tokio::fs::File::open(&partial).await?;
            let stream = tokio_util_stream(file);
            let fail = |source| BackupError::Target { target: t.name.clone(), source };
            t.blobs.put(&key, stream).await.map_err(fail)?;
            // Read the copy back and compare before trusting it.
            let mut hash = Sha256::new();
            let mut copy = t.blobs.get(&key).await.map_err(fail)?;
            while let Some(chunk) = copy.next().await {
                let chunk = chunk.map_err(fail)?;
                hash.update(&chunk);
                progress.advance(chunk.len() as u64);
            }
            if <[u8; 32]>::from(hash.finalize()) != digest {
                return Err(BackupError::CopyMismatch(t.name.clone()));
            }
        }
        progress.finish();
        Ok(Created {
            id,
            bytes,
            sha256: hex::encode(digest),
            rows: rows_total,
            blobs: manifest.blobs,
            targets: self.targets.iter().map(|t| t.name.clone()).collect(),
            seconds: 0.0,
        })
    }

    /// Seals an `org_keys` row's wrapped key under its organisation's
    /// escrow key, so the archive alone (with the root key) cannot open it.
    async fn seal_org_key(
        &self,
        table: &Table,
        row: &mut [Value],
        escrow_keys: &mut HashMap<Uuid, Key256>,
    ) -> Result<()> {
        let (org_i, version_i, wrapped_i) = org_key_columns(table)?;
        let (Value::Uuid(org), Value::Int(version)) = (&row[org_i], &row[version_i]) else {
            return Err(BackupError::Other("org_keys row without organisation or version".into()));
        };
        let (org, version) = (*org, *version);
        if let Value::Bytes(wrapped) = row[wrapped_i].clone() {
            let key = match escrow_keys.entry(org) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => match self.ensure_escrow(org).await? {
                    Some(escrow) => {
                        let context = KeyContext::backup_escrow(domain::OrgId::from_uuid(org));
                        slot.insert(self.kms().unwrap(&WrappedKey(escrow.wrapped.clone()), &context).await?)
                    }
                    None => {
                        // Destroyed after the snapshot was taken: the archive
                        // keeps it destroyed.
                        row[wrapped_i] = Value::Null;
                        if let Some(state) = table.column("state") {
                            row[state] = Value::Text("destroyed".into());
                        }
                        return Ok(());
                    }
                },
            };
            let sealed = crypto::seal(key, &escrow_aad(org, version), &wrapped)
                .map_err(|e| BackupError::Other(format!("sealing a key version: {e}")))?;
            row[wrapped_i] = Value::Bytes(sealed);
        }
        Ok(())
    }

    /// Every archive at every target (or one), oldest first, from their
    /// plain headers.
    pub async fn list(&self, target: Option<&str>) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for t in &self.targets {
            if target.is_some_and(|n| n != t.name) {
                continue;
            }
            out.extend(list_target(t).await?);
        }
        if let Some(n) = target
            && !self.targets.iter().any(|t| t.name == n)
        {
            return Err(BackupError::NoTarget(n.to_owned()));
        }
        Ok(out)
    }

    /// The newest archive at a target.
    pub async fn newest(&self, target: &Target) -> Result<Listed> {
        newest_at(target).await
    }

    /// Reads an archive whole without writing anything: authenticates every
    /// byte, checks every section against the manifest and that each
    /// escrowed key version opens.
    pub async fn verify(&self, target: Option<&str>, id: Option<Uuid>) -> Result<Restored> {
        let t = self.target(target)?;
        let id = match id {
            Some(id) => id,
            None => self.newest(t).await?.id,
        };
        read_archive(self.kms(), t, id, None, &Quiet).await
    }

    /// Deletes, at every target, the archives the retention rules do not
    /// keep (`dry_run`: only says which). Audited.
    pub async fn prune(&self, actor: &str, dry_run: bool) -> Result<Vec<(String, retention::Plan)>> {
        let now = OffsetDateTime::now_utc();
        let mut plans = Vec::new();
        for t in &self.targets {
            let items: Vec<retention::Item> = list_target(t)
                .await?
                .into_iter()
                .map(|l| retention::Item { id: l.id, created_at: l.created_at })
                .collect();
            let plan = retention::plan(&items, self.rules, now);
            if !dry_run {
                for id in &plan.prune {
                    t.blobs
                        .delete(&archive_key(*id)?)
                        .await
                        .map_err(|source| BackupError::Target { target: t.name.clone(), source })?;
                }
                if !plan.prune.is_empty() {
                    let mut fields: Vec<String> = plan.prune.iter().map(|id| format!("backup:{id}")).collect();
                    fields.insert(0, format!("kept:{}", plan.keep.len()));
                    self.engine
                        .record_operation(actor, "backup.prune", format!("target:{}", t.name), true, fields)
                        .await
                        .map_err(|e| BackupError::Other(e.to_string()))?;
                }
            }
            plans.push((t.name.clone(), plan));
        }
        Ok(plans)
    }

    /// A drill: restores the newest archive of a target into a scratch
    /// store, then checks the audit chains and decrypts a sample of every
    /// organisation's records. The report is stored, audited and returned,
    /// failed or not.
    pub async fn drill(&self, actor: &str, target: Option<&str>) -> Result<DrillRow> {
        let clock = DrillClock::start();
        let t = self.target(target)?.clone();
        let mut report = DrillReport::default();
        let mut backup_id = None;
        let mut restore_millis = 0;
        let outcome = async {
            let newest = self.newest(&t).await?;
            backup_id = Some(newest.id);
            report.backup_created_at = Some(newest.created_at);
            let scratch = Scratch::new(&self.work_dir).await?;
            let restored = restore(self.kms(), &t, newest.id, &scratch.store, &scratch.blobs, false, &Quiet).await?;
            restore_millis = millis(restored.seconds);
            report.tables = restored.tables.clone();
            report.blobs = restored.blobs;
            report.shredded_orgs = restored.shredded_orgs.clone();
            let checked = check_restored(&scratch.store, self.engine.keys().kms_arc(), &restored).await?;
            report.chains = checked.chains;
            report.decrypted_records = checked.records;
            report.decrypted_fields = checked.fields;
            scratch.close().await;
            Ok::<_, BackupError>(())
        }
        .await;
        if let Err(e) = &outcome {
            report.error = Some(e.to_string());
        }
        let row = clock.finish(&t.name, backup_id, restore_millis, false, outcome.is_ok(), &report)?;
        self.record_drill(actor, &row).await?;
        Ok(row)
    }

    /// Stores a drill's report and chains it on the platform trail.
    pub async fn record_drill(&self, actor: &str, row: &DrillRow) -> Result<()> {
        self.store().record_drill(row).await?;
        let mut fields = vec![
            format!("target:{}", row.target),
            format!("restore_ms:{}", row.restore_millis),
            format!("total_ms:{}", row.total_millis),
        ];
        if let Some(b) = row.backup_id {
            fields.insert(0, format!("backup:{b}"));
        }
        if row.from_scratch {
            fields.push("from_scratch".into());
        }
        self.engine
            .record_operation(actor, "backup.drill", format!("drill:{}", row.id), row.outcome == "success", fields)
            .await
            .map_err(|e| BackupError::Other(e.to_string()))
    }
}

/// When a drill started, for its report row.
#[derive(Debug, Clone, Copy)]
pub struct DrillClock {
    started: Instant,
    started_at: i64,
}

impl DrillClock {
    pub fn start() -> Self {
        Self { started: Instant::now(), started_at: engine::now_micros() }
    }

    /// The drill's report row, timed to now.
    pub fn finish(
        self,
        target: &str,
        backup_id: Option<Uuid>,
        restore_millis: i64,
        from_scratch: bool,
        succeeded: bool,
        report: &DrillReport,
    ) -> Result<DrillRow> {
        Ok(DrillRow {
            id: Uuid::now_v7(),
            backup_id,
            target: target.to_owned(),
            started_at: self.started_at,
            restore_millis,
            total_millis: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            from_scratch,
            outcome: if succeeded { "success" } else { "failure" }.into(),
            report: serde_json::to_string(report).map_err(|e| BackupError::Other(e.to_string()))?,
        })
    }
}

/// What a drill found, stored as its report (identifiers and counts only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DrillReport {
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub backup_created_at: Option<OffsetDateTime>,
    pub tables: Vec<(String, u64)>,
    pub blobs: u64,
    pub shredded_orgs: Vec<Uuid>,
    /// Audit chains that verified.
    pub chains: u64,
    pub decrypted_records: u64,
    pub decrypted_fields: u64,
    pub error: Option<String>,
}

fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// The result of checking a restored store.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub chains: u64,
    pub records: u64,
    pub fields: u64,
}

/// Checks a restored store: every audit chain verifies against its signed
/// checkpoints, and a sample of each organisation's records (whose keys
/// survive) decrypts.
pub async fn check_restored(store: &Store, kms: Arc<Kms>, restored: &Restored) -> Result<Checked> {
    let engine = engine::Engine::new(store.clone(), kms, DRILL_CACHE);
    let other = |e: engine::EngineError| BackupError::Other(e.to_string());
    let mut checked = Checked::default();
    for chain in engine.verify_audit(None).await.map_err(other)? {
        if let Err(broken) = chain.result {
            return Err(BackupError::Other(format!("audit chain {} does not verify: {broken}", chain.chain)));
        }
        checked.chains += 1;
    }
    for org in engine.list_orgs().await.map_err(other)? {
        if restored.shredded_orgs.contains(&org.id.as_uuid()) {
            continue;
        }
        let (records, fields) = engine.check_decrypts(org.id, DRILL_SAMPLE).await.map_err(other)?;
        checked.records += records as u64;
        checked.fields += fields as u64;
    }
    Ok(checked)
}

/// A throwaway SQLite store and blob folder under the work directory,
/// removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    pub store: Store,
    pub blobs: BlobStore,
}

impl Scratch {
    pub async fn new(work_dir: &Path) -> Result<Self> {
        create_private_dir(work_dir)?;
        let dir = tempfile::Builder::new().prefix(".drill-").tempdir_in(work_dir)?;
        let key = Key256::generate().map_err(|e| BackupError::Other(e.to_string()))?;
        let store =
            Store::open(&StoreConfig::Sqlite { path: dir.path().join("scratch.db"), key: zeroize_key(&key) }).await?;
        let blob_dir = dir.path().join("blobs");
        let blobs = BlobStore::open(&store::BlobConfig::Local { root: blob_dir })
            .await
            .map_err(|e| BackupError::Other(format!("scratch blobs: {e}")))?;
        Ok(Self { dir, store, blobs })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Closes the scratch store and removes its folder.
    pub async fn close(self) {
        self.store.close().await;
        drop(self.dir);
    }
}

fn zeroize_key(key: &Key256) -> zeroize::Zeroizing<[u8; 32]> {
    zeroize::Zeroizing::new(*key.expose_for_cipher())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A folder only this user can enter.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// A file as a stream of 256 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}

fn org_key_columns(table: &Table) -> Result<(usize, usize, usize)> {
    match (table.column("org_id"), table.column("version"), table.column("wrapped")) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(BackupError::Incompatible("org_keys lacks org_id, version or wrapped".into())),
    }
}

fn attachment_ref(table: &Table, row: &[Value]) -> Result<(Uuid, Uuid, String)> {
    let get = |name: &str| table.column(name).and_then(|i| row.get(i));
    match (get("org_id"), get("id"), get("blob_key")) {
        (Some(Value::Uuid(org)), Some(Value::Uuid(id)), Some(Value::Text(key))) => Ok((*org, *id, key.clone())),
        _ => Err(BackupError::Other("an attachment row without org, id or blob key".into())),
    }
}

/// The newest archive at a target.
pub async fn newest_at(t: &Target) -> Result<Listed> {
    list_target(t).await?.into_iter().next_back().ok_or_else(|| BackupError::NoneReadable(t.name.clone()))
}

async fn list_target(t: &Target) -> Result<Vec<Listed>> {
    let fail = |source| BackupError::Target { target: t.name.clone(), source };
    let keys = match t.blobs.list(ARCHIVES, MAX_LISTED).await {
        Ok(keys) => keys,
        Err(e) => return Err(fail(e)),
    };
    let mut out = Vec::new();
    for key in keys {
        let Some(id) = key.rsplit('/').next().and_then(|s| Uuid::parse_str(s).ok()) else { continue };
        let blob_key = archive_key(id)?;
        let Some(bytes) = t.blobs.head(&blob_key).await.map_err(fail)? else { continue };
        let header = match read_header(t, id).await {
            Ok(h) => h,
            // One unreadable object does not hide the others (nor stop
            // pruning); verify or restore names what is wrong with it.
            Err(BackupError::Format(e)) => {
                tracing::warn!(backup = %id, target = %t.name, error = %e, "an archive's header cannot be read; skipped");
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push(Listed {
            target: t.name.clone(),
            id,
            created_at: header.created_at,
            schedule: header.schedule,
            bytes,
            format: header.format,
            source_backend: header.source_backend,
        });
    }
    out.sort_by_key(|l| (l.created_at, l.id));
    Ok(out)
}

async fn read_header(t: &Target, id: Uuid) -> Result<Header> {
    let fail = |source| BackupError::Target { target: t.name.clone(), source };
    let mut stream = match t.blobs.get(&archive_key(id)?).await {
        Ok(s) => s,
        Err(store::BlobError::NotFound) => return Err(BackupError::NotFound(id.to_string(), t.name.clone())),
        Err(e) => return Err(fail(e)),
    };
    let mut reader = Reader::new()?;
    while let Some(chunk) = stream.next().await {
        if let Some(h) = reader.feed_header(&chunk.map_err(fail)?)? {
            return Ok(h.clone());
        }
    }
    Err(FormatError::Truncated("the header is cut short").into())
}

/// Restores archive `id` of target `from` into `into` (and its attachments'
/// blobs into `into_blobs`), in one transaction: on any error (a wrong
/// key, a corrupt, truncated or incomplete archive, a store that is not
/// empty without `replace`) the store is left as it was.
pub async fn restore(
    kms: &Kms,
    from: &Target,
    id: Uuid,
    into: &Store,
    into_blobs: &BlobStore,
    replace: bool,
    progress: &dyn Progress,
) -> Result<Restored> {
    let restore = into.begin_restore(replace).await.map_err(|e| match e {
        StoreError::Conflict { what } => BackupError::NotEmpty(what),
        other => other.into(),
    })?;
    read_archive(
        kms,
        from,
        id,
        Some(Sink { restore: Some(restore), blobs: into_blobs.clone(), written: Vec::new() }),
        progress,
    )
    .await
}

struct Sink {
    /// Taken when committed.
    restore: Option<store::Restore>,
    blobs: BlobStore,
    written: Vec<BlobKey>,
}

/// A blob being restored: the channel feeding its upload, and the upload.
struct BlobUpload {
    key: BlobKey,
    left: u64,
    tx: Option<tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>>,
    task: tokio::task::JoinHandle<Result<u64, store::BlobError>>,
}

/// Reads (and with a sink, restores) an archive.
async fn read_archive(
    kms: &Kms,
    from: &Target,
    id: Uuid,
    mut sink: Option<Sink>,
    progress: &dyn Progress,
) -> Result<Restored> {
    let started = Instant::now();
    let fail = |source| BackupError::Target { target: from.name.clone(), source };
    let size = from.blobs.head(&archive_key(id)?).await.map_err(fail)?;
    let Some(size) = size else { return Err(BackupError::NotFound(id.to_string(), from.name.clone())) };
    progress.stage("restore", Some(size));
    let mut stream = from.blobs.get(&archive_key(id)?).await.map_err(fail)?;
    let mut reader = Reader::new()?;
    let mut state = ReadState { id, ..ReadState::default() };
    let mut escrow = Escrows { keys: HashMap::new(), rows: HashMap::new(), unopened: Default::default() };

    let result = async {
        let mut unlocked = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(fail)?;
            progress.advance(chunk.len() as u64);
            let records = if unlocked {
                reader.feed(&chunk)?
            } else {
                let Some(header) = reader.feed_header(&chunk)?.cloned() else { continue };
                if header.id != id {
                    return Err(FormatError::Corrupt("the header names another backup".into()).into());
                }
                let wrapped = B64
                    .decode(&header.wrapped_key)
                    .map_err(|_| FormatError::Corrupt("the wrapped key is not base64".into()))?;
                let key = kms
                    .unwrap(&WrappedKey(wrapped), &KeyContext::backup(id))
                    .await
                    .map_err(|e| if e.is_unavailable() { BackupError::Kms(e) } else { BackupError::WrongKey(id) })?;
                unlocked = true;
                escrow = load_escrows(kms, from).await?;
                reader.unlock(&key)?
            };
            for record in records {
                state.apply(record, &escrow, sink.as_mut()).await?;
            }
        }
        if !unlocked {
            return Err(FormatError::Truncated("the header is cut short").into());
        }
        let tail = std::mem::replace(&mut reader, Reader::new()?).finish()?;
        for record in tail {
            state.apply(record, &escrow, sink.as_mut()).await?;
        }
        if !state.manifest_seen {
            return Err(FormatError::Truncated("the manifest is missing").into());
        }
        if let Some(sink) = sink.as_mut()
            && let Some(mut restore) = sink.restore.take()
        {
            for (org, att) in &state.missing_blobs {
                restore.drop_attachment(*org, *att).await?;
            }
            for row in state.escrow_rows.drain(..) {
                restore.put_escrow(&row).await?;
            }
            restore.commit().await?;
        }
        Ok::<_, BackupError>(())
    }
    .await;

    match (result, sink) {
        (Err(e), Some(sink)) => {
            // Nothing of the store changed (its transaction is dropped
            // uncommitted); remove the blobs this restore added.
            if let Some(upload) = state.blob.take() {
                upload.task.abort();
                let _ = upload.task.await;
            }
            for key in &sink.written {
                let _ = sink.blobs.delete(key).await;
            }
            Err(e)
        }
        (Err(e), None) => Err(e),
        (Ok(()), _) => {
            progress.finish();
            Ok(state.into_restored(started))
        }
    }
}

/// Escrow keys found at a target, unwrapped: those of organisations whose
/// keys were destroyed are gone from there, and with them any way to open
/// their key versions in an archive.
struct Escrows {
    keys: HashMap<Uuid, Key256>,
    rows: HashMap<Uuid, EscrowRow>,
    /// Objects present that this root key does not open: another
    /// deployment's, or ours after the root key was lost.
    unopened: std::collections::HashSet<Uuid>,
}

async fn load_escrows(kms: &Kms, t: &Target) -> Result<Escrows> {
    let fail = |source| BackupError::Target { target: t.name.clone(), source };
    let mut keys = HashMap::new();
    let mut rows = HashMap::new();
    let mut unopened = std::collections::HashSet::new();
    for key in t.blobs.list(ESCROWS, MAX_LISTED).await.map_err(fail)? {
        let Some(org) = key.rsplit('/').next().and_then(|s| Uuid::parse_str(s).ok()) else { continue };
        let blob_key = escrow_key(org)?;
        let body: Vec<Bytes> = match t.blobs.get(&blob_key).await {
            Ok(s) => s.try_collect().await.map_err(fail)?,
            Err(store::BlobError::NotFound) => continue,
            Err(e) => return Err(fail(e)),
        };
        let object: EscrowObject = serde_json::from_slice(&body.concat())
            .map_err(|e| BackupError::Other(format!("escrow object of {org} at {}: {e}", t.name)))?;
        if object.org != org {
            return Err(BackupError::Other(format!("escrow object of {org} at {} names another organisation", t.name)));
        }
        let wrapped = B64.decode(&object.wrapped).map_err(|_| BackupError::Other("escrow object encoding".into()))?;
        let context = KeyContext::backup_escrow(domain::OrgId::from_uuid(org));
        let key = match kms.unwrap(&WrappedKey(wrapped.clone()), &context).await {
            Ok(key) => key,
            Err(e) if e.is_unavailable() => return Err(BackupError::Kms(e)),
            // Another deployment's organisation sharing the target: not ours
            // to open, and no archive of ours needs it.
            Err(_) => {
                unopened.insert(org);
                continue;
            }
        };
        keys.insert(org, key);
        rows.insert(
            org,
            EscrowRow { org_id: org, wrapped, kms_key_id: object.kms_key_id, created_at: object.created_at },
        );
    }
    Ok(Escrows { keys, rows, unopened })
}

#[derive(Default)]
struct ReadState {
    id: Uuid,
    table: Option<(&'static Table, Vec<usize>)>,
    batch: Vec<Vec<Value>>,
    tables: Vec<(String, u64)>,
    rows: u64,
    blobs: u64,
    blob: Option<BlobUpload>,
    shredded: Vec<Uuid>,
    escrow_rows: Vec<EscrowRow>,
    missing_blobs: Vec<(Uuid, Uuid)>,
    manifest_seen: bool,
}

impl ReadState {
    async fn apply(&mut self, record: Record, escrow: &Escrows, sink: Option<&mut Sink>) -> Result<()> {
        match record {
            Record::Table { name, columns } => {
                let table = Table::named(&name)
                    .ok_or_else(|| BackupError::Incompatible(format!("table {name} is unknown to this version")))?;
                let mut positions = Vec::with_capacity(columns.len());
                for (c, kind) in &columns {
                    let i = table.column(c).ok_or_else(|| {
                        BackupError::Incompatible(format!("column {name}.{c} is unknown to this version"))
                    })?;
                    if table.columns[i].1 != *kind {
                        return Err(BackupError::Incompatible(format!("column {name}.{c} has another type")));
                    }
                    positions.push(i);
                }
                self.table = Some((table, positions));
            }
            Record::Row(mut values) => {
                let Some((table, positions)) = &self.table else {
                    return Err(FormatError::Corrupt("a row outside a table".into()).into());
                };
                for (v, &p) in values.iter().zip(positions.iter()) {
                    if table.columns[p].1 == store::dump::ColumnKind::Int32
                        && let Value::Int(i) = v
                        && i32::try_from(*i).is_err()
                    {
                        let column = table.columns[p].0;
                        return Err(BackupError::Incompatible(format!("{}.{column} out of range", table.name)));
                    }
                }
                if table.name == "org_keys" {
                    let (table, positions) = (*table, positions.clone());
                    self.open_org_key(table, &positions, &mut values, escrow)?;
                }
                self.batch.push(values);
                self.rows += 1;
                if self.batch.len() >= RESTORE_BATCH {
                    self.flush(sink).await?;
                }
            }
            Record::TableEnd { rows, .. } => {
                self.flush(sink).await?;
                let Some((table, _)) = self.table.take() else {
                    return Err(FormatError::Corrupt("a table end outside a table".into()).into());
                };
                self.tables.push((table.name.to_owned(), rows));
            }
            Record::Blob { key, len } => {
                self.blobs += 1;
                let blob_key =
                    BlobKey::new(&key).map_err(|_| FormatError::Corrupt("an attachment with a bad key".into()))?;
                if let Some(sink) = sink {
                    // A blob already there (same key, same bytes: keys are
                    // ids) is not this restore's to remove on failure.
                    let existed = sink.blobs.head(&blob_key).await.ok().flatten().is_some();
                    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                    let blobs = sink.blobs.clone();
                    let k = blob_key.clone();
                    let task = tokio::spawn(async move { blobs.put(&k, tokio_stream_from(rx)).await });
                    if !existed {
                        sink.written.push(blob_key.clone());
                    }
                    self.blob = Some(BlobUpload { key: blob_key, left: len, tx: Some(tx), task });
                    if len == 0 {
                        self.end_blob().await?;
                    }
                }
            }
            Record::BlobPiece(piece) => {
                if let Some(upload) = self.blob.as_mut() {
                    upload.left = upload.left.saturating_sub(piece.len() as u64);
                    if let Some(tx) = &upload.tx {
                        tx.send(Ok(Bytes::from(piece)))
                            .await
                            .map_err(|_| BackupError::Other(format!("restoring blob {} failed", upload.key)))?;
                    }
                    if upload.left == 0 {
                        self.end_blob().await?;
                    }
                }
            }
            Record::Manifest(m) => {
                self.missing_blobs = m.missing_blobs.clone();
                self.escrow_rows = m.escrowed_orgs.iter().filter_map(|o| escrow.rows.get(o).cloned()).collect();
                self.manifest_seen = true;
            }
        }
        Ok(())
    }

    async fn end_blob(&mut self) -> Result<()> {
        if let Some(mut upload) = self.blob.take() {
            upload.tx.take();
            upload
                .task
                .await
                .map_err(|e| BackupError::Other(format!("restoring blob {}: {e}", upload.key)))?
                .map_err(|e| BackupError::Other(format!("restoring blob {}: {e}", upload.key)))?;
        }
        Ok(())
    }

    fn open_org_key(
        &mut self,
        table: &Table,
        positions: &[usize],
        values: &mut [Value],
        escrow: &Escrows,
    ) -> Result<()> {
        let (org_c, version_c, wrapped_c) = org_key_columns(table)?;
        let at = |c: usize| positions.iter().position(|&p| p == c);
        let (Some(org_i), Some(version_i), Some(wrapped_i)) = (at(org_c), at(version_c), at(wrapped_c)) else {
            return Err(BackupError::Incompatible("org_keys lacks org_id, version or wrapped".into()));
        };
        let (Value::Uuid(org), Value::Int(version)) = (&values[org_i], &values[version_i]) else {
            return Err(FormatError::Corrupt("an org_keys row without organisation or version".into()).into());
        };
        let (org, version) = (*org, *version);
        let Value::Bytes(sealed) = &values[wrapped_i] else { return Ok(()) };
        match escrow.keys.get(&org) {
            Some(key) => {
                let opened = crypto::open(key, &escrow_aad(org, version), sealed).map_err(|_| {
                    BackupError::Other(format!("a key version of organisation {org} does not open with its escrow key"))
                })?;
                values[wrapped_i] = Value::Bytes(opened.to_vec());
            }
            None if escrow.unopened.contains(&org) => {
                return Err(BackupError::Other(format!(
                    "the escrow object of organisation {org} does not unwrap under this root key; refusing to restore its keys as destroyed"
                )));
            }
            None => {
                // Crypto-shredded since the backup: restored as destroyed.
                values[wrapped_i] = Value::Null;
                if let Some(state_i) = table.column("state").and_then(at) {
                    values[state_i] = Value::Text("destroyed".into());
                }
                if !self.shredded.contains(&org) {
                    self.shredded.push(org);
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self, sink: Option<&mut Sink>) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        if let (Some(sink), Some((table, positions))) = (sink, &self.table)
            && let Some(restore) = sink.restore.as_mut()
        {
            restore.insert(table, positions, batch).await?;
        }
        Ok(())
    }

    fn into_restored(self, started: Instant) -> Restored {
        Restored {
            id: self.id,
            tables: self.tables,
            rows: self.rows,
            blobs: self.blobs,
            shredded_orgs: self.shredded,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}
