//! The key hierarchy at work: organisation keys created with their
//! organisation, unwrapped through the KMS into a bounded, expiring cache,
//! rotated, re-wrapped after a root-key rotation, and destroyed
//! (crypto-shredding). Every KMS call and unwrap is reported through one
//! hook, `KeyObserver`, which the audit trail will take over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crypto::{Key256, KeyContext, KeyVersion};
use domain::{KeyState, OrgId};
use kms::{Kms, KmsError, KmsInfo, WrappedKey};
use store::{OrgKeyRecord, Store, StoreError};

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The KMS cannot be reached: answer 503 and retry later, never fall
    /// back to anything.
    #[error("the key service is unavailable")]
    KmsUnavailable(#[source] KmsError),
    /// The organisation has no key (it does not exist).
    #[error("no key for this organisation")]
    NoKey,
    /// The organisation's keys were destroyed: its data is unreadable for good.
    #[error("this organisation's keys were destroyed")]
    Destroyed,
    #[error(transparent)]
    Kms(KmsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

impl From<KmsError> for KeyError {
    fn from(e: KmsError) -> Self {
        if e.is_unavailable() { Self::KmsUnavailable(e) } else { Self::Kms(e) }
    }
}

/// One event in a key's life, reported to the observer. Identifiers only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    /// An organisation key version was created and wrapped.
    Created { org: OrgId, version: u32 },
    /// An organisation key version was unwrapped through the KMS.
    Unwrapped { org: OrgId, version: u32 },
    /// An organisation key version was re-wrapped under a new root key.
    Rewrapped { org: OrgId, version: u32 },
    /// An organisation's keys were destroyed.
    Destroyed { org: OrgId, versions: u64 },
    /// A KMS call failed.
    Failed { org: Option<OrgId>, reason: String },
}

/// Receives every key event.
pub trait KeyObserver: Send + Sync + std::fmt::Debug {
    fn observe(&self, backend: &'static str, event: &KeyEvent);
}

/// The default observer: Prometheus counters and a debug log line.
#[derive(Debug, Default)]
pub struct MetricsObserver;

impl KeyObserver for MetricsObserver {
    fn observe(&self, backend: &'static str, event: &KeyEvent) {
        let kind = match event {
            KeyEvent::Created { .. } => "created",
            KeyEvent::Unwrapped { .. } => "unwrapped",
            KeyEvent::Rewrapped { .. } => "rewrapped",
            KeyEvent::Destroyed { .. } => "destroyed",
            KeyEvent::Failed { .. } => "failed",
        };
        metrics::counter!("strongroom_key_events_total", "event" => kind, "backend" => backend).increment(1);
        tracing::debug!(?event, backend, "key event");
    }
}

/// How long unwrapped organisation keys stay in memory, and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub max_entries: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(300), max_entries: 10_000 }
    }
}

/// Unwrapped keys by (organisation, version). Keys zeroize when the last
/// `Arc` drops, so eviction wipes them once no request holds them.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<(OrgId, u32), (Instant, Arc<Key256>)>,
}

/// The organisation keys of one deployment.
#[derive(Debug)]
pub struct Keys {
    kms: Arc<Kms>,
    store: Store,
    settings: CacheSettings,
    cache: Mutex<Cache>,
    observer: Arc<dyn KeyObserver>,
    /// The unwrapped platform-secrets key: (version, when, key).
    platform: Mutex<Option<(u32, Instant, Arc<Key256>)>>,
}

/// The stored name of the platform-secrets key.
const PLATFORM_SECRETS: &str = "platform-secrets";
const AUDIT_SIGNING: &str = "audit-signing";

fn platform_context(version: u32) -> KeyContext {
    KeyContext { purpose: crypto::KeyPurpose::PlatformSecrets, scope: "deployment".into(), version }
}

/// What `destroy` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestroyReport {
    pub org: OrgId,
    pub versions_destroyed: u64,
    /// Whether a check afterwards found no version of the key left to unwrap.
    pub verified_unreadable: bool,
}

/// The state of every organisation key, for `keys status`.
#[derive(Clone, Debug)]
pub struct KeyStatus {
    pub kms: KmsInfo,
    pub keys: Vec<OrgKeyRecord>,
    /// Key versions still wrapped by an older root key version.
    pub pending_root_rewrap: usize,
}

impl Keys {
    pub fn new(kms: Arc<Kms>, store: Store, settings: CacheSettings, observer: Arc<dyn KeyObserver>) -> Self {
        Self { kms, store, settings, cache: Mutex::new(Cache::default()), observer, platform: Mutex::new(None) }
    }

    fn backend(&self) -> &'static str {
        self.kms.info().backend
    }

    fn report(&self, event: KeyEvent) {
        self.observer.observe(self.backend(), &event);
        self.chain(&event);
    }

    /// Records a key event in the audit trail: the organisation's chain for
    /// its keys, the platform chain otherwise. Done in the background (a
    /// KMS call must not wait on the trail); a failure is logged.
    fn chain(&self, event: &KeyEvent) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (org, action, target, outcome) = match event {
            KeyEvent::Created { org, version } => (Some(*org), "key.create", format!("org_key:{version}"), "success"),
            KeyEvent::Unwrapped { org, version } => (Some(*org), "key.unwrap", format!("org_key:{version}"), "success"),
            KeyEvent::Rewrapped { org, version } => (Some(*org), "key.rewrap", format!("org_key:{version}"), "success"),
            KeyEvent::Destroyed { org, versions } => {
                (Some(*org), "key.destroy", format!("org_key:1-{versions}"), "success")
            }
            KeyEvent::Failed { org, .. } => (*org, "kms.call", "kms".to_owned(), "failure"),
        };
        let chain = org.map_or_else(|| crate::audit::PLATFORM_CHAIN.to_owned(), crate::audit::org_chain);
        let mut entry = crate::audit::draft(format!("kms:{}", self.backend()), action, target, Vec::new());
        entry.outcome = outcome.to_owned();
        let store = self.store.clone();
        runtime.spawn(async move {
            let pending = crate::audit::Pending::new(chain, vec![entry]);
            if let Err(e) = store.append_audit(&pending.append()).await {
                tracing::warn!(error = %e, "could not record a key event in the audit trail");
            }
        });
    }

    fn failed(&self, org: Option<OrgId>, e: KmsError) -> KeyError {
        self.report(KeyEvent::Failed { org, reason: e.to_string() });
        e.into()
    }

    /// The key backend, shared (for an engine over another store, such as
    /// a drill's scratch store).
    pub fn kms_arc(&self) -> Arc<Kms> {
        self.kms.clone()
    }

    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    /// Makes and wraps version 1 of a new organisation's key; the caller
    /// stores the record with the organisation.
    pub(crate) async fn new_org_key(&self, org: OrgId) -> Result<(Arc<Key256>, OrgKeyRecord), KeyError> {
        let (key, record) = self.wrap_new_version(org, KeyVersion::FIRST).await?;
        Ok((key, record))
    }

    async fn wrap_new_version(&self, org: OrgId, version: KeyVersion) -> Result<(Arc<Key256>, OrgKeyRecord), KeyError> {
        let ctx = KeyContext::org_key(org, version);
        let (key, wrapped) = self.kms.generate_data_key(&ctx).await.map_err(|e| self.failed(Some(org), e))?;
        let info = self.kms.info();
        let now = store::now();
        let record = OrgKeyRecord {
            org_id: org,
            version: version.get(),
            wrapped: Some(wrapped.0),
            kms_backend: info.backend.to_owned(),
            kms_key_id: info.key_id,
            state: KeyState::Active,
            created_at: now,
            updated_at: now,
        };
        Ok((Arc::new(key), record))
    }

    /// Remembers a key created by this process.
    pub(crate) fn created(&self, org: OrgId, version: u32, key: Arc<Key256>) {
        self.report(KeyEvent::Created { org, version });
        self.remember(org, version, key);
    }

    fn remember(&self, org: OrgId, version: u32, key: Arc<Key256>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.entries.len() >= self.settings.max_entries {
            let oldest = cache.entries.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                cache.entries.remove(&oldest);
            }
        }
        if self.settings.max_entries > 0 {
            cache.entries.insert((org, version), (Instant::now(), key));
        }
    }

    fn cached(&self, org: OrgId, version: u32) -> Option<Arc<Key256>> {
        let mut cache = self.cache.lock().ok()?;
        match cache.entries.get(&(org, version)) {
            Some((at, key)) if at.elapsed() < self.settings.ttl => Some(Arc::clone(key)),
            Some(_) => {
                cache.entries.remove(&(org, version));
                None
            }
            None => None,
        }
    }

    fn forget_org(&self, org: OrgId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.entries.retain(|(o, _), _| *o != org);
        }
    }

    /// How many unwrapped keys are in memory.
    pub fn cached_count(&self) -> usize {
        self.cache.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// One version of an organisation's key, from the cache or unwrapped
    /// through the KMS.
    pub async fn org_key(&self, org: OrgId, version: u32) -> Result<Arc<Key256>, KeyError> {
        if let Some(key) = self.cached(org, version) {
            return Ok(key);
        }
        let records = self.store.org_keys(org).await?;
        let record = records.iter().find(|r| r.version == version).ok_or(KeyError::NoKey)?;
        self.unwrap_record(record).await
    }

    /// The active version of an organisation's key, when authorising the
    /// request already read which version that is (`active`): from the
    /// cache without another read if it is there, otherwise as
    /// [`Self::current_org_key`].
    pub(crate) async fn active_org_key(&self, org: OrgId, active: Option<u32>) -> Result<(u32, Arc<Key256>), KeyError> {
        if let Some(version) = active
            && let Some(key) = self.cached(org, version)
        {
            return Ok((version, key));
        }
        self.current_org_key(org).await
    }

    /// The active version of an organisation's key.
    pub async fn current_org_key(&self, org: OrgId) -> Result<(u32, Arc<Key256>), KeyError> {
        let records = self.store.org_keys(org).await?;
        if records.is_empty() {
            return Err(KeyError::NoKey);
        }
        let record = records.iter().rev().find(|r| r.state == KeyState::Active).ok_or(KeyError::Destroyed)?;
        if let Some(key) = self.cached(org, record.version) {
            return Ok((record.version, key));
        }
        Ok((record.version, self.unwrap_record(record).await?))
    }

    async fn unwrap_record(&self, record: &OrgKeyRecord) -> Result<Arc<Key256>, KeyError> {
        let org = record.org_id;
        let wrapped = record.wrapped.clone().ok_or(KeyError::Destroyed)?;
        let version = KeyVersion::new(record.version).ok_or(KeyError::NoKey)?;
        let key = self
            .kms
            .unwrap(&WrappedKey(wrapped), &KeyContext::org_key(org, version))
            .await
            .map_err(|e| self.failed(Some(org), e))?;
        let key = Arc::new(key);
        self.report(KeyEvent::Unwrapped { org, version: record.version });
        self.remember(org, record.version, Arc::clone(&key));
        Ok(key)
    }

    /// Adds a key version; new data uses it, older versions keep
    /// decrypting.
    pub async fn rotate_org(&self, org: OrgId) -> Result<u32, KeyError> {
        let records = self.store.org_keys(org).await?;
        let newest = records.last().ok_or(KeyError::NoKey)?;
        if newest.state == KeyState::Destroyed {
            return Err(KeyError::Destroyed);
        }
        let version = KeyVersion::new(newest.version).ok_or(KeyError::NoKey)?.next();
        let (key, record) = self.wrap_new_version(org, version).await?;
        self.store.rotate_org_key(&record).await?;
        self.created(org, version.get(), key);
        Ok(version.get())
    }

    /// Rotates the root key where the backend allows, then re-wraps every
    /// organisation key under it. Returns (new root version, re-wrapped).
    pub async fn rotate_root(&self) -> Result<(u32, usize), KeyError> {
        let version = self.kms.rotate_root().await.map_err(|e| self.failed(None, e))?;
        let rewrapped = self.rewrap_all().await?;
        Ok((version, rewrapped))
    }

    /// Re-wraps every live key version not yet wrapped by the current root
    /// key. Safe to repeat: it resumes where it stopped.
    pub async fn rewrap_all(&self) -> Result<usize, KeyError> {
        let current = self.kms.info().key_id;
        self.rewrap_platform_key(&current).await?;
        self.rewrap_signing_keys(&current).await?;
        let mut done = 0;
        // Backup escrow keys: archives keep opening after the old root
        // version goes.
        for row in self.store.backup_escrows().await? {
            if row.kms_key_id == current {
                continue;
            }
            let ctx = KeyContext::backup_escrow(OrgId::from_uuid(row.org_id));
            let key =
                self.kms.unwrap(&WrappedKey(row.wrapped.clone()), &ctx).await.map_err(|e| self.failed(None, e))?;
            let wrapped = self.kms.wrap(&key, &ctx).await.map_err(|e| self.failed(None, e))?;
            self.store.rewrap_backup_escrow(row.org_id, &wrapped.0, &current).await?;
        }
        for record in self.store.all_org_keys().await? {
            if record.state == KeyState::Destroyed || record.kms_key_id == current {
                continue;
            }
            let key = self.unwrap_record(&record).await?;
            let version = KeyVersion::new(record.version).ok_or(KeyError::NoKey)?;
            let ctx = KeyContext::org_key(record.org_id, version);
            let wrapped = self.kms.wrap(&key, &ctx).await.map_err(|e| self.failed(Some(record.org_id), e))?;
            if self.store.rewrap_org_key(record.org_id, record.version, &wrapped.0, &current).await? {
                self.report(KeyEvent::Rewrapped { org: record.org_id, version: record.version });
                done += 1;
            }
        }
        Ok(done)
    }

    /// Crypto-shredding: erases every wrapped version of an organisation's
    /// key and forgets any unwrapped copy, then checks none can be had.
    pub async fn destroy_org(&self, org: OrgId) -> Result<DestroyReport, KeyError> {
        let versions_destroyed = self.store.destroy_org_keys(org).await?;
        self.forget_org(org);
        self.report(KeyEvent::Destroyed { org, versions: versions_destroyed });
        let mut verified_unreadable = true;
        for record in self.store.org_keys(org).await? {
            verified_unreadable &=
                record.wrapped.is_none() && matches!(self.org_key(org, record.version).await, Err(KeyError::Destroyed));
        }
        Ok(DestroyReport { org, versions_destroyed, verified_unreadable })
    }

    /// The key that encrypts platform secrets (TOTP seeds): created on
    /// first use, wrapped by the root key, unwrapped into the cache.
    pub async fn platform_key(&self) -> Result<(u32, Arc<Key256>), KeyError> {
        if let Ok(guard) = self.platform.lock()
            && let Some((v, at, key)) = guard.as_ref()
            && at.elapsed() < self.settings.ttl
        {
            return Ok((*v, Arc::clone(key)));
        }
        let (version, wrapped) = match self.store.platform_key(PLATFORM_SECRETS).await? {
            Some((v, w, _)) => (v, w),
            None => {
                let (_, wrapped) =
                    self.kms.generate_data_key(&platform_context(1)).await.map_err(|e| self.failed(None, e))?;
                match self.store.insert_platform_key(PLATFORM_SECRETS, 1, &wrapped.0, &self.kms.info().key_id).await {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.store.platform_key(PLATFORM_SECRETS).await?.map(|(v, w, _)| (v, w)).ok_or(KeyError::NoKey)?
            }
        };
        let key = self
            .kms
            .unwrap(&WrappedKey(wrapped), &platform_context(version))
            .await
            .map_err(|e| self.failed(None, e))?;
        let key = Arc::new(key);
        if let Ok(mut guard) = self.platform.lock() {
            *guard = Some((version, Instant::now(), Arc::clone(&key)));
        }
        Ok((version, key))
    }

    /// The Ed25519 key that signs audit checkpoints: its seed created on
    /// first use, wrapped by the root key.
    pub async fn audit_signing_key(&self) -> Result<crypto::jose::SigningKey, KeyError> {
        let ctx = || KeyContext { purpose: crypto::KeyPurpose::AuditSigning, scope: "deployment".into(), version: 1 };
        let wrapped = match self.store.platform_key(AUDIT_SIGNING).await? {
            Some((_, w, _)) => w,
            None => {
                let (_, wrapped) = self.kms.generate_data_key(&ctx()).await.map_err(|e| self.failed(None, e))?;
                match self.store.insert_platform_key(AUDIT_SIGNING, 1, &wrapped.0, &self.kms.info().key_id).await {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.store.platform_key(AUDIT_SIGNING).await?.map(|(_, w, _)| w).ok_or(KeyError::NoKey)?
            }
        };
        let seed = self.kms.unwrap(&WrappedKey(wrapped), &ctx()).await.map_err(|e| self.failed(None, e))?;
        Ok(crypto::jose::SigningKey::from_seed(seed.expose_for_cipher()))
    }

    /// A platform-secrets key by version (every version so far is 1).
    pub async fn platform_key_version(&self, version: u32) -> Result<Arc<Key256>, KeyError> {
        let (current, key) = self.platform_key().await?;
        if current == version { Ok(key) } else { Err(KeyError::NoKey) }
    }

    /// Re-wraps token-signing seeds not yet under the current root key.
    async fn rewrap_signing_keys(&self, current: &str) -> Result<(), KeyError> {
        for record in self.store.live_signing_keys().await? {
            if record.kms_key_id == current {
                continue;
            }
            let ctx = KeyContext { purpose: crypto::KeyPurpose::TokenSigning, scope: record.kid.clone(), version: 1 };
            let seed =
                self.kms.unwrap(&WrappedKey(record.seed_wrapped), &ctx).await.map_err(|e| self.failed(None, e))?;
            let wrapped = self.kms.wrap(&seed, &ctx).await.map_err(|e| self.failed(None, e))?;
            self.store.rewrap_signing_key(&record.kid, &wrapped.0, current).await?;
        }
        Ok(())
    }

    async fn rewrap_platform_key(&self, current: &str) -> Result<usize, KeyError> {
        let mut done = 0;
        for (purpose, kind) in
            [(PLATFORM_SECRETS, crypto::KeyPurpose::PlatformSecrets), (AUDIT_SIGNING, crypto::KeyPurpose::AuditSigning)]
        {
            let Some((version, wrapped, key_id)) = self.store.platform_key(purpose).await? else { continue };
            if key_id == current {
                continue;
            }
            let ctx = KeyContext { purpose: kind, scope: "deployment".into(), version };
            let key = self.kms.unwrap(&WrappedKey(wrapped), &ctx).await.map_err(|e| self.failed(None, e))?;
            let rewrapped = self.kms.wrap(&key, &ctx).await.map_err(|e| self.failed(None, e))?;
            self.store.rewrap_platform_key(purpose, version, &rewrapped.0, current).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Every key version and how far root re-wrapping has got.
    pub async fn status(&self) -> Result<KeyStatus, KeyError> {
        let kms = self.kms.info();
        let keys = self.store.all_org_keys().await?;
        let pending_root_rewrap =
            keys.iter().filter(|k| k.state != KeyState::Destroyed && k.kms_key_id != kms.key_id).count();
        Ok(KeyStatus { kms, keys, pending_root_rewrap })
    }
}
