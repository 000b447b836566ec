//! The use cases of Strongroom, one place for every caller (API, console,
//! CLI): authorise, validate, encrypt, store, audit.
//!
//! Architecture invariant: authorisation is decided here, by one policy
//! function, for every caller; `server` authenticates but does not decide.
//! The engine owns the store, the key hierarchy and the blob store:
//! identity, profiles and attachments, and the audit trail they write.

pub mod attachments;
pub mod audit;
pub mod export;
pub mod identity;
pub mod import;
pub mod keys;
pub mod mail;
pub mod offboard;
pub mod profiles;
pub mod pseudonymise;
pub mod retention;
pub mod sinks;
pub mod support;
pub mod tokens;

use std::sync::Arc;

use domain::{NewOrganisation, OrgSlug, Organisation};
use kms::Kms;
use store::Store;

pub use ::audit::export::rfc3339_micros;
pub use attachments::{AttachmentError, AttachmentInfo, PlainStream};
pub use audit::{
    AuditFilter, AuditView, ChainReport, PLATFORM_CHAIN, from_row, now_micros, org_chain, to_row, with_request_id,
};
pub use export::{ExportFormat, ExportStream, neutralise};
pub use identity::{
    AuthError, Authorized, AuthorizedPlatform, Denied, Grant, IdentitySettings, MfaError, NewUser, Principal,
    ServiceAccountGrant, SessionPolicy, TotpEnrolment,
};
pub use import::{ImportReport, ImportSource, RowProblem, unneutralise};
pub use keys::{CacheSettings, DestroyReport, KeyError, KeyEvent, KeyObserver, KeyStatus, Keys, MetricsObserver};
pub use offboard::OffboardReport;
pub use profiles::{
    FieldHolding, Page, PersonalDataReport, ProfileError, ProfileQuery, ProfileView, Visibility, actor_of,
};
pub use retention::{RetentionSetting, SweepReport};
pub use sinks::{Sink, SinkError, SinkSettings, SinkTarget, SyslogOrigin, TlsTrust};
pub use support::{SupportError, SupportRequest};
pub use tokens::{IssuedToken, TokenError, TokenSettings};

/// Why the engine cannot serve requests right now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The store does not answer.
    #[error("the {backend} store is unreachable")]
    Store { backend: &'static str, source: store::StoreError },
    /// The key backend does not answer.
    #[error("the {backend} key backend is unavailable")]
    Kms { backend: &'static str, source: kms::KmsError },
}

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("no organisation {0}")]
    NoSuchOrg(String),
    #[error("no such user")]
    NoSuchUser,
    #[error("an organisation must keep at least one owner")]
    LastOwner,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Mfa(#[from] identity::MfaError),
    #[error("mail is not configured ([smtp]); add members with `strongroom member add` instead")]
    MailNotConfigured,
    #[error("no account has this address yet: give display_name and password to create one")]
    AccountDetailsNeeded,
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    #[error(transparent)]
    Support(#[from] support::SupportError),
    /// An export broke off (its reader went away, or encoding failed).
    #[error("export failed: {0}")]
    Export(String),
    /// An import file that cannot be read as a whole (its header, or CSV
    /// that does not parse).
    #[error("import refused: {0}")]
    Import(String),
    /// Offboarding stopped before removing anything.
    #[error("offboarding stopped: {0}")]
    Offboard(String),
    /// The audit writer stopped before saying whether an entry was written
    /// (its runtime is shutting down).
    #[error("the audit writer did not answer in time, or stopped")]
    AuditWriterStopped,
    /// A shared audit transaction failed; the reason is the store's.
    #[error("the audit trail could not be written: {0}")]
    AuditBatch(String),
}

/// The application core shared by every interface.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    keys: Arc<Keys>,
    identity: Arc<identity::Identity>,
    mailer: mail::Mailer,
    tokens: Arc<tokens::TokenState>,
    token_settings: tokens::TokenSettings,
    blobs: Option<store::BlobStore>,
    max_attachment_bytes: u64,
    max_support: std::time::Duration,
    audit_writer: Arc<audit::Writer>,
    slugs: Arc<SlugCache>,
    schemas: Arc<SchemaCache>,
}

/// A small map whose entries expire: read for `ttl` after they were put,
/// and bounded (when full, expired entries go, and if none had expired,
/// all of them).
#[derive(Debug)]
struct Expiring<K, V> {
    entries: std::sync::Mutex<std::collections::HashMap<K, (V, std::time::Instant)>>,
    ttl: std::time::Duration,
    max: usize,
}

impl<K: Eq + std::hash::Hash, V: Clone> Expiring<K, V> {
    fn new(ttl: std::time::Duration, max: usize) -> Self {
        Self { entries: std::sync::Mutex::default(), ttl, max }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
                if entries.len() >= self.max {
                    entries.clear();
                }
            }
            entries.insert(key, (value, std::time::Instant::now()));
        }
    }
}

/// Organisation ids by slug (see [`Engine::org_id_by_slug`]).
type SlugCache = Expiring<String, domain::OrgId>;

/// Parsed profile schemas by organisation and version, with the time the
/// version was stored. A stored version never changes (a change is a new
/// version), so an entry is only used for the version, and the time it was
/// stored, that authorising the request read as current (a restore that
/// took versions back cannot make a later, different version look
/// cached); entries also expire.
type SchemaCache = Expiring<(domain::OrgId, u32), (Arc<domain::Schema>, time::OffsetDateTime)>;

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    pub fn new(store: Store, kms: Arc<Kms>, cache: CacheSettings) -> Self {
        Self::with_observer(store, kms, cache, Arc::new(MetricsObserver))
    }

    /// An engine whose key events go to `observer`.
    pub fn with_observer(store: Store, kms: Arc<Kms>, cache: CacheSettings, observer: Arc<dyn KeyObserver>) -> Self {
        let keys = Arc::new(Keys::new(kms, store.clone(), cache, observer));
        let identity = Arc::new(identity::Identity::new(IdentitySettings::default()));
        Self {
            store,
            keys,
            identity,
            mailer: mail::Mailer::disabled(),
            tokens: Arc::new(tokens::TokenState::default()),
            token_settings: tokens::TokenSettings::default(),
            blobs: None,
            max_attachment_bytes: 0,
            max_support: support::DEFAULT_MAX_SUPPORT,
            audit_writer: Arc::new(audit::Writer::default()),
            slugs: Arc::new(SlugCache::new(MINUTE, 10_000)),
            schemas: Arc::new(SchemaCache::new(MINUTE, 1_000)),
        }
    }

    /// The same engine allowing support sessions up to `max`.
    pub fn with_support_max(mut self, max: std::time::Duration) -> Self {
        self.max_support = max;
        self
    }

    /// The same engine sending mail through `mailer`.
    pub fn with_mailer(mut self, mailer: mail::Mailer) -> Self {
        self.mailer = mailer;
        self
    }

    /// The same engine with other identity settings.
    pub fn with_identity(mut self, settings: IdentitySettings) -> Self {
        self.identity = Arc::new(identity::Identity::new(settings));
        self
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// The deployment's store, for operations that work on it whole
    /// (backups and restores).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The blob store of attachments, if configured.
    pub fn blob_store(&self) -> Option<&store::BlobStore> {
        self.blobs.as_ref()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether every dependency needed to serve requests answers.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.ping().await.map_err(|source| NotReady::Store { backend: self.store.backend_name(), source })?;
        let kms = self.keys.kms();
        kms.health().await.map_err(|source| NotReady::Kms { backend: kms.info().backend, source })
    }

    /// Creates an organisation with version 1 of its key, atomically.
    pub async fn create_org(&self, new: &NewOrganisation) -> Result<Organisation, EngineError> {
        let now = store::now();
        let org = Organisation {
            id: domain::OrgId::new(),
            slug: new.slug.clone(),
            name: new.name.clone(),
            status: domain::OrgStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let (key, record) = self.keys.new_org_key(org.id).await?;
        self.store.create_org(&org, &record).await?;
        self.keys.created(org.id, record.version, key);
        Ok(org)
    }

    pub async fn list_orgs(&self) -> Result<Vec<Organisation>, EngineError> {
        Ok(self.store.list_orgs().await?)
    }

    /// The organisation with this slug, or `NoSuchOrg`.
    pub async fn org_by_slug(&self, slug: &OrgSlug) -> Result<Organisation, EngineError> {
        self.store.find_org_by_slug(slug).await?.ok_or_else(|| EngineError::NoSuchOrg(slug.to_string()))
    }

    /// The id of the organisation with this slug, as every API path names
    /// it. Slugs never change, so ids found are kept for a minute. An entry
    /// can only go stale if the store under it is replaced (a restore), and
    /// then it names an id nothing answers to (fail closed). Misses are not
    /// kept.
    pub async fn org_id_by_slug(&self, slug: &OrgSlug) -> Result<domain::OrgId, EngineError> {
        if let Some(id) = self.slugs.get(slug.as_str()) {
            return Ok(id);
        }
        let org = self.org_by_slug(slug).await?;
        self.slugs.put(slug.as_str().to_owned(), org.id);
        Ok(org.id)
    }

    /// An organisation by id, if it exists.
    pub async fn org(&self, id: domain::OrgId) -> Result<Option<Organisation>, EngineError> {
        Ok(self.store.get_org(id).await?)
    }

    /// Closes the store once in-flight work has finished.
    pub async fn shutdown(&self) {
        self.store.close().await;
    }
}
