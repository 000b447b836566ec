//! Configuration: a TOML file, then `STRONGROOM_*` environment variables,
//! then flags, in rising precedence; validated once at start, refusing
//! unknown keys and unsafe settings by name.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./strongroom-data";
/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// Environment variables Strongroom reads; any other `STRONGROOM_*`
/// variable is a typo and refused.
pub const KNOWN_ENV: &[&str] = &[
    "STRONGROOM_CONFIG",
    "STRONGROOM_DATA_DIR",
    "STRONGROOM_DATABASE_URL",
    "STRONGROOM_LISTEN",
    "STRONGROOM_TLS_CERT_FILE",
    "STRONGROOM_TLS_KEY_FILE",
    "STRONGROOM_MAX_BODY_BYTES",
    "STRONGROOM_MAX_ATTACHMENT_BYTES",
    "STRONGROOM_REQUEST_TIMEOUT_SECS",
    "STRONGROOM_SHUTDOWN_GRACE_SECS",
    "STRONGROOM_DATABASE_MAX_CONNECTIONS",
    "STRONGROOM_LOG",
    "STRONGROOM_DEV",
    "STRONGROOM_KMS_BACKEND",
    "STRONGROOM_UNSEAL_KEY_FILE",
    "STRONGROOM_UNSEAL_PASSPHRASE",
    "STRONGROOM_PKCS11_PIN",
    "STRONGROOM_TRANSIT_TOKEN",
];

/// Variables with this prefix belong to the test harness, not the product.
const TEST_ENV_PREFIX: &str = "STRONGROOM_TEST_";

/// One refused setting: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self { setting: setting.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Every refused setting at once, so one run shows all that must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The config file's shape. Every field optional; unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    kms: FileKms,
    #[serde(default)]
    auth: FileAuth,
    smtp: Option<FileSmtp>,
    #[serde(default)]
    blobs: FileBlobs,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    support: FileSupport,
    #[serde(default)]
    backup: FileBackup,
    #[serde(default)]
    retention: FileDataRetention,
}

/// The `[retention]` table: how often organisations' retention policies
/// are swept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDataRetention {
    sweep_every: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackup {
    #[serde(default)]
    targets: Vec<FileBackupTarget>,
    schedules: Option<Vec<FileSchedule>>,
    drill_every: Option<String>,
    poll_secs: Option<u64>,
    retention: Option<FileRetention>,
}

/// One `[[backup.targets]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackupTarget {
    name: String,
    kind: String,
    path: Option<PathBuf>,
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    name: String,
    every: Option<String>,
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    hourly: Option<u32>,
    daily: Option<u32>,
    monthly: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSupport {
    max_duration_minutes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    #[serde(default)]
    sinks: Vec<FileSink>,
}

/// One `[[audit.sinks]]` table; which members apply depends on `kind`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    name: String,
    kind: String,
    batch: Option<usize>,
    poll_millis: Option<u64>,
    retry_max_secs: Option<u64>,
    // file
    path: Option<PathBuf>,
    // syslog
    address: Option<String>,
    tls: Option<bool>,
    facility: Option<u8>,
    hostname: Option<String>,
    // syslog (TLS) and webhook
    ca_file: Option<PathBuf>,
    // webhook
    url: Option<String>,
    secret_file: Option<PathBuf>,
    // s3
    bucket: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBlobs {
    backend: Option<String>,
    max_attachment_bytes: Option<u64>,
    transfer_timeout_secs: Option<u64>,
    s3: Option<FileBlobsS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBlobsS3 {
    bucket: String,
    region: Option<String>,
    endpoint: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSmtp {
    host: String,
    port: Option<u16>,
    security: Option<String>,
    from: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    password_policy: Option<String>,
    session_idle_secs: Option<u64>,
    session_absolute_secs: Option<u64>,
    password_hashing_cpu_percent: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKms {
    backend: Option<String>,
    cache_ttl_secs: Option<u64>,
    cache_max_entries: Option<usize>,
    #[serde(default)]
    local: FileKmsLocal,
    pkcs11: Option<FileKmsPkcs11>,
    transit: Option<FileKmsTransit>,
    aws: Option<FileKmsAws>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKmsLocal {
    unseal_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKmsPkcs11 {
    module: PathBuf,
    token_label: String,
    #[serde(default = "default_key_label")]
    key_label: String,
    pin_file: Option<PathBuf>,
}

fn default_key_label() -> String {
    "strongroom-root".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKmsTransit {
    address: String,
    #[serde(default = "default_mount")]
    mount: String,
    key: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

fn default_mount() -> String {
    "transit".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKmsAws {
    key_id: String,
    region: Option<String>,
    endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    max_body_bytes: Option<u64>,
    request_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
}

/// Values from the environment and flags (the CLI merges those two), laid
/// over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub listen: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub max_body_bytes: Option<u64>,
    pub max_attachment_bytes: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub log_level: Option<String>,
    pub kms_backend: Option<String>,
    pub unseal_key_file: Option<PathBuf>,
    /// `--dev`: the unseal key is kept in the data directory.
    pub dev: bool,
}

/// A PostgreSQL URL. Holds a credential, so it prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The full URL, password included: only for opening the connection.
    pub fn expose_for_connect(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced, fit for display.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    // Setting a password on a parsed postgres URL cannot fail.
                    let _ = u.set_password(Some("REDACTED"));
                }
                u.to_string()
            }
            Err(_) => "[unparseable, redacted]".to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Where the service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite file inside the data directory.
    Embedded,
    Postgres {
        url: DatabaseUrl,
        max_connections: u32,
    },
}

/// TLS material: given, or generated on first start in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A local CA and a leaf for these names, kept in `DATA_DIR/tls`.
    Generated {
        names: Vec<String>,
    },
}

/// Which key backend holds the root key, and how to reach it. Secrets (PIN,
/// token, passphrase) are never in here: they are read from the files named
/// or from the environment when the backend is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsBackend {
    /// The sealed keystore in `DATA_DIR/keystore`.
    Local {
        unseal_key_file: Option<PathBuf>,
    },
    Pkcs11 {
        module: PathBuf,
        token_label: String,
        key_label: String,
        pin_file: Option<PathBuf>,
    },
    Transit {
        address: String,
        mount: String,
        key: String,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    },
    Aws {
        key_id: String,
        region: Option<String>,
        endpoint: Option<String>,
    },
}

impl KmsBackend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Pkcs11 { .. } => "pkcs11",
            Self::Transit { .. } => "transit",
            Self::Aws { .. } => "aws-kms",
        }
    }
}

/// The key backend and the cache of unwrapped organisation keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsSettings {
    pub backend: KmsBackend,
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
}

/// Limits that protect the HTTP listener. Attachment uploads and
/// downloads have their own size limit and time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_attachment_bytes: u64,
    pub transfer_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            max_attachment_bytes: 100 * 1024 * 1024,
            transfer_timeout: Duration::from_secs(1800),
        }
    }
}

/// Where attachments' encrypted bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobBackend {
    /// `DATA_DIR/blobs`.
    Local,
    /// An S3 bucket; credentials from the AWS environment only.
    S3 { bucket: String, region: String, endpoint: Option<String>, prefix: Option<String>, allow_http: bool },
}

/// The validated, effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database: Database,
    pub listen: SocketAddr,
    pub tls: TlsSource,
    pub http: HttpLimits,
    pub log_level: String,
    pub kms: KmsSettings,
    /// Development mode: the local keystore's unseal key is kept in the data
    /// directory. Never for real data.
    pub dev: bool,
    pub auth: engine::IdentitySettings,
    /// Where mail goes; `None`: no mail is sent (password resets are
    /// accepted but not delivered, and logged).
    pub smtp: Option<engine::mail::SmtpSettings>,
    pub blobs: BlobBackend,
    /// Off-host audit sinks, each delivered on its own.
    pub audit_sinks: Vec<engine::SinkSettings>,
    /// The longest support session an operator may ask for.
    pub support_max: Duration,
    /// Backup targets, schedules, drills and retention.
    pub backup: BackupSettings,
    /// How often organisations' retention policies are swept; `None`:
    /// only when asked (API or CLI).
    pub retention_sweep: Option<Duration>,
}

/// Where backups go and when they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// Every archive is copied to each; at least one.
    pub targets: Vec<BackupTarget>,
    pub schedules: Vec<backup::schedule::Schedule>,
    /// How often a drill restores the newest backup; `None`: never.
    pub drill_every: Option<Duration>,
    /// How often the scheduler looks for due work.
    pub poll: Duration,
    pub retention: backup::retention::Rules,
}

/// One backup target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTarget {
    pub name: String,
    /// A folder (`Local` is `DATA_DIR/backups` unless `path` is set) or a bucket.
    pub store: store::BlobConfig,
}

impl Config {
    /// Reads the file named in `overrides` (if any), lays the overrides
    /// over it and validates the result.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigErrors> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(file, overrides)
    }

    /// Parses a config file's text with the overrides laid over it.
    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Self, ConfigErrors> {
        let file = parse_toml(text).map_err(|m| one("config file", m))?;
        Self::resolve(file, overrides)
    }

    fn resolve(file: FileConfig, o: &Overrides) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();

        let data_dir = o.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if let Err(e) = check_data_dir(&data_dir) {
            errors.push(e);
        }

        let listen_text = o.listen.clone().or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::new("listen", format!("{listen_text:?} is not an IP:PORT address")));

        let max_connections = o.database_max_connections.or(file.database.max_connections).unwrap_or(16);
        if !(1..=1000).contains(&max_connections) {
            errors.push(ConfigError::new("database.max_connections", "must be 1 to 1000"));
        }
        let database = match o.database_url.clone().or(file.database_url) {
            None => Ok(Database::Embedded),
            Some(url) => {
                check_database_url(&url).map(|()| Database::Postgres { url: DatabaseUrl(url), max_connections })
            }
        };

        let cert = o.tls_cert_file.clone().or(file.tls.cert_file);
        let key = o.tls_key_file.clone().or(file.tls.key_file);
        let tls = match (cert, key) {
            (Some(cert_file), Some(key_file)) => {
                for (setting, path) in [("tls.cert_file", &cert_file), ("tls.key_file", &key_file)] {
                    if !path.is_file() {
                        errors.push(ConfigError::new(setting, format!("{} is not a readable file", path.display())));
                    }
                }
                Ok(TlsSource::Files { cert_file, key_file })
            }
            (Some(_), None) => Err(ConfigError::new("tls.key_file", "required when tls.cert_file is set")),
            (None, Some(_)) => Err(ConfigError::new("tls.cert_file", "required when tls.key_file is set")),
            (None, None) => {
                let names =
                    file.tls.names.unwrap_or_else(|| ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec());
                names
                    .iter()
                    .find(|n| !is_dns_name_or_ip(n))
                    .map_or(Ok(()), |bad| {
                        Err(ConfigError::new("tls.names", format!("{bad:?} is not a DNS name or IP address")))
                    })
                    .map(|()| TlsSource::Generated { names })
            }
        };

        let defaults = HttpLimits::default();
        let max_body_bytes = o.max_body_bytes.or(file.http.max_body_bytes).unwrap_or(defaults.max_body_bytes);
        if !(1024..=1 << 30).contains(&max_body_bytes) {
            errors.push(ConfigError::new("http.max_body_bytes", "must be 1024 to 1073741824 (1 KiB to 1 GiB)"));
        }
        let mut seconds = |setting: &str, value: Option<u64>, default: Duration| {
            let secs = value.unwrap_or(default.as_secs());
            if !(1..=3600).contains(&secs) {
                errors.push(ConfigError::new(setting, "must be 1 to 3600 seconds"));
            }
            Duration::from_secs(secs)
        };
        let request_timeout = seconds(
            "http.request_timeout_secs",
            o.request_timeout_secs.or(file.http.request_timeout_secs),
            defaults.request_timeout,
        );
        let shutdown_grace = seconds(
            "http.shutdown_grace_secs",
            o.shutdown_grace_secs.or(file.http.shutdown_grace_secs),
            defaults.shutdown_grace,
        );

        let log_level = o.log_level.clone().or(file.log.level).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            errors.push(ConfigError::new(
                "log.level",
                format!("{log_level:?} is not a log filter such as info or strongroom=debug"),
            ));
        }

        let kms = resolve_kms(file.kms, o, &data_dir, &mut errors);
        let auth = resolve_auth(&file.auth, &mut errors);
        let smtp = file.smtp.as_ref().and_then(|f| resolve_smtp(f, &mut errors));
        let blobs = resolve_blobs(&file.blobs, &mut errors);
        let audit_sinks = resolve_sinks(&file.audit.sinks, &mut errors);
        let backup = resolve_backup(&file.backup, &data_dir, &mut errors);
        let retention_sweep = match file.retention.sweep_every.as_deref() {
            None => Some(Duration::from_secs(3600)),
            Some("off") => None,
            Some(text) => match backup::schedule::parse_interval(text) {
                Ok(d) => Some(d),
                Err(m) => {
                    errors.push(ConfigError::new("retention.sweep_every", format!("{m}, or \"off\"")));
                    None
                }
            },
        };
        let support_minutes = file.support.max_duration_minutes.unwrap_or(240);
        if !(1..=7 * 24 * 60).contains(&support_minutes) {
            errors.push(ConfigError::new("support.max_duration_minutes", "must be 1 to 10080 minutes (a week)"));
        }
        let max_attachment_bytes =
            o.max_attachment_bytes.or(file.blobs.max_attachment_bytes).unwrap_or(defaults.max_attachment_bytes);
        if !(1024..=1 << 40).contains(&max_attachment_bytes) {
            errors
                .push(ConfigError::new("blobs.max_attachment_bytes", "must be 1024 to 1099511627776 (1 KiB to 1 TiB)"));
        }
        let transfer_secs = file.blobs.transfer_timeout_secs.unwrap_or(defaults.transfer_timeout.as_secs());
        if !(1..=86_400).contains(&transfer_secs) {
            errors.push(ConfigError::new("blobs.transfer_timeout_secs", "must be 1 to 86400 seconds"));
        }

        let (listen, database, tls) = match (listen, database, tls) {
            (Ok(l), Ok(d), Ok(t)) if errors.is_empty() => (l, d, t),
            (l, d, t) => {
                errors.extend([l.err(), d.err(), t.err()].into_iter().flatten());
                return Err(ConfigErrors(errors));
            }
        };
        Ok(Self {
            data_dir,
            database,
            listen,
            tls,
            http: HttpLimits {
                max_body_bytes,
                request_timeout,
                shutdown_grace,
                max_attachment_bytes,
                transfer_timeout: Duration::from_secs(transfer_secs),
            },
            log_level,
            kms,
            dev: o.dev,
            auth,
            smtp,
            blobs,
            audit_sinks,
            support_max: Duration::from_secs(support_minutes * 60),
            backup,
            retention_sweep,
        })
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn render_redacted(&self) -> String {
        #[derive(Serialize)]
        struct View<'a> {
            data_dir: &'a Path,
            #[serde(skip_serializing_if = "Option::is_none")]
            database_url: Option<String>,
            database: DbView,
            listen: String,
            tls: TlsView<'a>,
            http: HttpView,
            log: LogView<'a>,
            kms: KmsView,
            blobs: BlobsView,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            audit_sinks: Vec<SinkView>,
            dev: bool,
        }
        #[derive(Serialize)]
        struct SinkView {
            name: String,
            kind: &'static str,
            destination: String,
        }
        #[derive(Serialize)]
        struct BlobsView {
            backend: &'static str,
            max_attachment_bytes: u64,
            transfer_timeout_secs: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<String>,
        }
        #[derive(Serialize)]
        struct KmsView {
            backend: &'static str,
            cache_ttl_secs: u64,
            cache_max_entries: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<String>,
        }
        #[derive(Serialize)]
        struct DbView {
            backend: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_connections: Option<u32>,
        }
        #[derive(Serialize)]
        struct TlsView<'a> {
            source: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            cert_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            key_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            names: Option<&'a [String]>,
            versions: [&'static str; 2],
        }
        #[derive(Serialize)]
        struct HttpView {
            max_body_bytes: u64,
            request_timeout_secs: u64,
            shutdown_grace_secs: u64,
        }
        #[derive(Serialize)]
        struct LogView<'a> {
            level: &'a str,
        }
        let (database_url, database) = match &self.database {
            Database::Embedded => (None, DbView { backend: "sqlite", max_connections: None }),
            Database::Postgres { url, max_connections } => {
                (Some(url.redacted()), DbView { backend: "postgres", max_connections: Some(*max_connections) })
            }
        };
        let tls = match &self.tls {
            TlsSource::Files { cert_file, key_file } => TlsView {
                source: "files",
                cert_file: Some(cert_file),
                key_file: Some(key_file),
                names: None,
                versions: ["TLS1.3", "TLS1.2"],
            },
            TlsSource::Generated { names } => TlsView {
                source: "generated",
                cert_file: None,
                key_file: None,
                names: Some(names),
                versions: ["TLS1.3", "TLS1.2"],
            },
        };
        let view = View {
            data_dir: &self.data_dir,
            database_url,
            database,
            listen: self.listen.to_string(),
            tls,
            http: HttpView {
                max_body_bytes: self.http.max_body_bytes,
                request_timeout_secs: self.http.request_timeout.as_secs(),
                shutdown_grace_secs: self.http.shutdown_grace.as_secs(),
            },
            log: LogView { level: &self.log_level },
            kms: KmsView {
                backend: self.kms.backend.name(),
                cache_ttl_secs: self.kms.cache_ttl.as_secs(),
                cache_max_entries: self.kms.cache_max_entries,
                detail: match &self.kms.backend {
                    KmsBackend::Local { unseal_key_file } => {
                        unseal_key_file.as_ref().map(|f| format!("unseal key file {}", f.display()))
                    }
                    KmsBackend::Pkcs11 { module, token_label, key_label, .. } => {
                        Some(format!("module {}, token {token_label}, key {key_label}", module.display()))
                    }
                    KmsBackend::Transit { address, mount, key, .. } => Some(format!("{address} {mount}/{key}")),
                    KmsBackend::Aws { key_id, region, .. } => {
                        Some(format!("{key_id} in {}", region.as_deref().unwrap_or("the default region")))
                    }
                },
            },
            blobs: BlobsView {
                backend: match self.blobs {
                    BlobBackend::Local => "local",
                    BlobBackend::S3 { .. } => "s3",
                },
                max_attachment_bytes: self.http.max_attachment_bytes,
                transfer_timeout_secs: self.http.transfer_timeout.as_secs(),
                detail: match &self.blobs {
                    BlobBackend::Local => Some(format!("{}", self.data_dir.join("blobs").display())),
                    BlobBackend::S3 { bucket, region, endpoint, prefix, .. } => Some(format!(
                        "bucket {bucket} in {region}{}{}",
                        endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default(),
                        prefix.as_ref().map(|p| format!(", prefix {p}")).unwrap_or_default()
                    )),
                },
            },
            audit_sinks: self
                .audit_sinks
                .iter()
                .map(|s| {
                    let (kind, destination) = sink_destination(&s.target);
                    SinkView { name: s.name.clone(), kind, destination }
                })
                .collect(),
            dev: self.dev,
        };
        toml::to_string_pretty(&view).unwrap_or_else(|e| format!("# could not render: {e}\n"))
    }
}

/// What a sink is and where it ships to, without secrets, paths or
/// queries of URLs.
fn sink_destination(t: &engine::SinkTarget) -> (&'static str, String) {
    use engine::SinkTarget;
    match t {
        SinkTarget::File { path } => ("file", path.display().to_string()),
        SinkTarget::Syslog { host, port, tls, .. } => {
            ("syslog", format!("{host}:{port}{}", if tls.is_some() { " over TLS" } else { "" }))
        }
        SinkTarget::Webhook { url, secret, .. } => (
            "webhook",
            format!(
                "{}{}",
                url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default(),
                if secret.is_some() { ", signed" } else { "" }
            ),
        ),
        SinkTarget::Objects { config } => match config {
            store::BlobConfig::S3 { bucket, region, .. } => ("s3", format!("bucket {bucket} in {region}")),
            store::BlobConfig::Local { root } => ("folder", root.display().to_string()),
        },
    }
}

/// True for `localhost` and loopback addresses.
fn is_local_host(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolves `[[audit.sinks]]`: unique names; per kind, the members it
/// needs and no others; TLS (or HTTPS) unless the receiver is on this host.
fn resolve_sinks(sinks: &[FileSink], errors: &mut Vec<ConfigError>) -> Vec<engine::SinkSettings> {
    use engine::{SinkSettings, SinkTarget, TlsTrust};
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, f) in sinks.iter().enumerate() {
        let at = |member: &str| format!("audit.sinks[{i}].{member}");
        let before = errors.len();
        let valid_name = (1..=64).contains(&f.name.len())
            && f.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            errors.push(ConfigError::new(at("name"), "must be 1 to 64 of a-z, 0-9, '-' and '_'"));
        } else if !seen.insert(f.name.clone()) {
            errors.push(ConfigError::new(at("name"), format!("{:?} names another sink too", f.name)));
        }
        let allowed: &[&str] = match f.kind.as_str() {
            "file" => &["path"],
            "syslog" => &["address", "tls", "facility", "hostname", "ca_file"],
            "webhook" => &["url", "secret_file", "ca_file"],
            "s3" => &["bucket", "region", "endpoint", "prefix"],
            other => {
                errors.push(ConfigError::new(at("kind"), format!("{other:?} is not one of file, syslog, webhook, s3")));
                continue;
            }
        };
        let present = [
            ("path", f.path.is_some()),
            ("address", f.address.is_some()),
            ("tls", f.tls.is_some()),
            ("facility", f.facility.is_some()),
            ("hostname", f.hostname.is_some()),
            ("ca_file", f.ca_file.is_some()),
            ("url", f.url.is_some()),
            ("secret_file", f.secret_file.is_some()),
            ("bucket", f.bucket.is_some()),
            ("region", f.region.is_some()),
            ("endpoint", f.endpoint.is_some()),
            ("prefix", f.prefix.is_some()),
        ];
        for (member, set) in present {
            if set && !allowed.contains(&member) {
                errors.push(ConfigError::new(at(member), format!("does not apply to a {} sink", f.kind)));
            }
        }
        if let Some(ca) = &f.ca_file
            && !ca.is_file()
        {
            errors.push(ConfigError::new(at("ca_file"), format!("{} is not a readable file", ca.display())));
        }
        let target = match f.kind.as_str() {
            "file" => match &f.path {
                Some(path) if path.parent().is_some_and(|d| d.as_os_str().is_empty() || d.is_dir()) => {
                    Some(SinkTarget::File { path: path.clone() })
                }
                Some(path) => {
                    errors.push(ConfigError::new(at("path"), format!("{}: its folder does not exist", path.display())));
                    None
                }
                None => {
                    errors.push(ConfigError::new(at("path"), "required for a file sink"));
                    None
                }
            },
            "syslog" => {
                let parsed = f.address.as_deref().and_then(|a| {
                    let (host, port) = a.rsplit_once(':')?;
                    Some((host.trim_matches(['[', ']']).to_owned(), port.parse::<u16>().ok().filter(|p| *p > 0)?))
                });
                let tls = f.tls.unwrap_or(true);
                match parsed {
                    None => {
                        errors.push(ConfigError::new(at("address"), "required, as HOST:PORT"));
                        None
                    }
                    Some((host, _)) if !tls && !is_local_host(&host) => {
                        errors.push(ConfigError::new(
                            at("tls"),
                            "false (plain TCP) is allowed only for a server on this host",
                        ));
                        None
                    }
                    Some(_) if f.facility.is_some_and(|x| x > 23) => {
                        errors.push(ConfigError::new(at("facility"), "must be 0 to 23 (10 is authpriv)"));
                        None
                    }
                    Some(_) if !tls && f.ca_file.is_some() => {
                        errors.push(ConfigError::new(at("ca_file"), "applies only with tls = true"));
                        None
                    }
                    Some((host, port)) => Some(SinkTarget::Syslog {
                        host,
                        port,
                        tls: tls.then(|| TlsTrust { ca_file: f.ca_file.clone() }),
                        origin: engine::SyslogOrigin {
                            facility: f.facility.unwrap_or(10),
                            hostname: f.hostname.clone().unwrap_or_else(this_host),
                            app_name: "strongroom".into(),
                        },
                    }),
                }
            }
            "webhook" => {
                let url = match f.url.as_deref().map(url::Url::parse) {
                    None => Err("required for a webhook sink".to_owned()),
                    Some(Err(e)) => Err(format!("not a URL ({e})")),
                    Some(Ok(u)) if u.scheme() == "https" => Ok(u),
                    Some(Ok(u)) if u.scheme() == "http" && is_local_host(u.host_str().unwrap_or("")) => Ok(u),
                    Some(Ok(u)) if u.scheme() == "http" => {
                        Err("plain http is allowed only for a receiver on this host".to_owned())
                    }
                    Some(Ok(_)) => Err("must be an https:// URL".to_owned()),
                };
                let secret = f.secret_file.as_deref().map(read_secret_file).transpose();
                match (url, secret) {
                    (Ok(url), Ok(secret)) => Some(SinkTarget::Webhook {
                        url: url.to_string(),
                        secret: secret.map(std::sync::Arc::new),
                        ca_file: f.ca_file.clone(),
                    }),
                    (url, secret) => {
                        if let Err(m) = url {
                            errors.push(ConfigError::new(at("url"), m));
                        }
                        if let Err(m) = secret {
                            errors.push(ConfigError::new(at("secret_file"), m));
                        }
                        None
                    }
                }
            }
            _ => {
                let section = FileBlobs {
                    backend: Some("s3".into()),
                    s3: Some(FileBlobsS3 {
                        bucket: f.bucket.clone().unwrap_or_default(),
                        region: f.region.clone(),
                        endpoint: f.endpoint.clone(),
                        prefix: f.prefix.clone(),
                    }),
                    ..FileBlobs::default()
                };
                let mut s3_errors = Vec::new();
                let backend = resolve_blobs(&section, &mut s3_errors);
                for e in s3_errors {
                    let member = e.setting.rsplit('.').next().unwrap_or("bucket").to_owned();
                    errors.push(ConfigError::new(at(&member), e.message));
                }
                match backend {
                    BlobBackend::S3 { bucket, region, endpoint, prefix, allow_http } => Some(SinkTarget::Objects {
                        config: store::BlobConfig::S3 { bucket, region, endpoint, allow_http, prefix },
                    }),
                    BlobBackend::Local => None,
                }
            }
        };
        let batch = f.batch.unwrap_or(500);
        if !(1..=10_000).contains(&batch) {
            errors.push(ConfigError::new(at("batch"), "must be 1 to 10000 records"));
        }
        let poll_millis = f.poll_millis.unwrap_or(1000);
        if !(50..=60_000).contains(&poll_millis) {
            errors.push(ConfigError::new(at("poll_millis"), "must be 50 to 60000"));
        }
        let retry_max_secs = f.retry_max_secs.unwrap_or(60);
        if !(1..=3600).contains(&retry_max_secs) {
            errors.push(ConfigError::new(at("retry_max_secs"), "must be 1 to 3600 seconds"));
        }
        if let Some(target) = target
            && errors.len() == before
        {
            out.push(SinkSettings {
                name: f.name.clone(),
                target,
                batch,
                poll: Duration::from_millis(poll_millis),
                retry_max: Duration::from_secs(retry_max_secs),
            });
        }
    }
    out
}

/// This machine's name, for syslog headers.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "strongroom".into())
}

/// A webhook's signing secret: at least 32 bytes, in a file only its owner
/// can read.
fn read_secret_file(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("{} is open to other users; run chmod 600 on it", path.display()));
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < 32 {
        return Err(format!("{} must hold at least 32 bytes", path.display()));
    }
    Ok(zeroize::Zeroizing::new(trimmed.to_vec()))
}

/// Resolves the `[smtp]` section: plain SMTP only to a relay on this host.
fn resolve_smtp(f: &FileSmtp, errors: &mut Vec<ConfigError>) -> Option<engine::mail::SmtpSettings> {
    use engine::mail::SmtpSecurity;
    let security = match f.security.as_deref().unwrap_or("starttls") {
        "tls" => SmtpSecurity::Tls,
        "starttls" => SmtpSecurity::StartTls,
        "none" => SmtpSecurity::Plain,
        other => {
            errors.push(ConfigError::new("smtp.security", format!("{other:?} is not one of tls, starttls, none")));
            return None;
        }
    };
    let local = is_local_host(&f.host);
    if security == SmtpSecurity::Plain && !local {
        errors.push(ConfigError::new("smtp.security", "none (plain SMTP) is allowed only for a relay on this host"));
    }
    if !f.from.contains('@') {
        errors.push(ConfigError::new("smtp.from", "must be an e-mail address"));
    }
    let port = f.port.unwrap_or(match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Plain => 25,
    });
    Some(engine::mail::SmtpSettings { host: f.host.clone(), port, security, from: f.from.clone() })
}

/// Resolves the `[blobs]` section: the local folder by default; S3 with a
/// bucket, over HTTPS unless the endpoint is on this host.
fn resolve_blobs(f: &FileBlobs, errors: &mut Vec<ConfigError>) -> BlobBackend {
    match (f.backend.as_deref().unwrap_or("local"), &f.s3) {
        ("local", None) => BlobBackend::Local,
        ("local", Some(_)) => {
            errors.push(ConfigError::new("blobs.s3", "set only with blobs.backend = \"s3\""));
            BlobBackend::Local
        }
        ("s3", None) => {
            errors
                .push(ConfigError::new("blobs.s3", "blobs.backend = \"s3\" needs a [blobs.s3] section with a bucket"));
            BlobBackend::Local
        }
        ("s3", Some(s3)) => s3_backend(
            "blobs.s3",
            &s3.bucket,
            s3.region.as_deref(),
            s3.endpoint.as_deref(),
            s3.prefix.as_deref(),
            errors,
        ),
        (other, _) => {
            errors.push(ConfigError::new("blobs.backend", format!("{other:?} is not one of local, s3")));
            BlobBackend::Local
        }
    }
}

/// Checks an S3 bucket and endpoint (`setting` names the section in
/// errors): a valid bucket name; https, or plain http only on this host.
fn s3_backend(
    setting: &str,
    bucket: &str,
    region: Option<&str>,
    endpoint: Option<&str>,
    prefix: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> BlobBackend {
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid_bucket {
        errors.push(ConfigError::new(
            format!("{setting}.bucket"),
            "must be a bucket name: 3 to 63 lowercase letters, digits, '-' or '.'",
        ));
    }
    let mut allow_http = false;
    if let Some(endpoint) = endpoint {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" => {
                if is_local_host(u.host_str().unwrap_or("")) {
                    allow_http = true;
                } else {
                    errors.push(ConfigError::new(
                        format!("{setting}.endpoint"),
                        "plain http is allowed only for an endpoint on this host",
                    ));
                }
            }
            _ => errors.push(ConfigError::new(format!("{setting}.endpoint"), "must be an https:// URL")),
        }
    }
    BlobBackend::S3 {
        bucket: bucket.to_owned(),
        region: region.unwrap_or("us-east-1").to_owned(),
        endpoint: endpoint.map(str::to_owned),
        prefix: prefix.map(str::to_owned),
        allow_http,
    }
}

/// Resolves `[backup]`: unique target names (a local folder by default),
/// schedules with a valid interval or time of day, the drill interval and
/// retention. By default: one daily backup to `DATA_DIR/backups`, a drill
/// every 30 days, and retention of 48 hourly, 180 daily and 12 monthly.
fn resolve_backup(f: &FileBackup, data_dir: &Path, errors: &mut Vec<ConfigError>) -> BackupSettings {
    use backup::schedule::{Schedule, When, parse_interval, parse_time_of_day};
    let mut targets = Vec::new();
    for (i, t) in f.targets.iter().enumerate() {
        let at = |member: &str| format!("backup.targets[{i}].{member}");
        let valid_name = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            errors.push(ConfigError::new(at("name"), "must be 1 to 64 letters, digits, '-' or '_'"));
        }
        if f.targets[..i].iter().any(|o| o.name == t.name) {
            errors.push(ConfigError::new(at("name"), format!("{:?} is used by another target", t.name)));
        }
        let store = match t.kind.as_str() {
            "local" => {
                if t.bucket.is_some() || t.endpoint.is_some() || t.region.is_some() || t.prefix.is_some() {
                    errors.push(ConfigError::new(at("kind"), "a local target takes only path"));
                }
                let root = t.path.clone().unwrap_or_else(|| data_dir.join("backups"));
                if !root.is_absolute() {
                    errors.push(ConfigError::new(at("path"), "must be an absolute path"));
                }
                store::BlobConfig::Local { root }
            }
            "s3" => {
                if t.path.is_some() {
                    errors.push(ConfigError::new(at("path"), "an s3 target takes bucket, region, endpoint, prefix"));
                }
                let Some(bucket) = &t.bucket else {
                    errors.push(ConfigError::new(at("bucket"), "an s3 target needs a bucket"));
                    continue;
                };
                match s3_backend(
                    &format!("backup.targets[{i}]"),
                    bucket,
                    t.region.as_deref(),
                    t.endpoint.as_deref(),
                    t.prefix.as_deref(),
                    errors,
                ) {
                    BlobBackend::S3 { bucket, region, endpoint, prefix, allow_http } => {
                        store::BlobConfig::S3 { bucket, region, endpoint, allow_http, prefix }
                    }
                    BlobBackend::Local => continue,
                }
            }
            other => {
                errors.push(ConfigError::new(at("kind"), format!("{other:?} is not one of local, s3")));
                continue;
            }
        };
        targets.push(BackupTarget { name: t.name.clone(), store });
    }
    if f.targets.is_empty() {
        targets.push(BackupTarget {
            name: "local".into(),
            store: store::BlobConfig::Local { root: data_dir.join("backups") },
        });
    }
    let schedules = match &f.schedules {
        None => vec![Schedule { name: "daily".into(), when: When::Every(Duration::from_secs(86_400)) }],
        Some(list) => {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let at = |member: &str| format!("backup.schedules[{i}].{member}");
                if !backup::valid_schedule_name(&s.name) {
                    errors.push(ConfigError::new(at("name"), "must be 1 to 64 printable characters, without spaces"));
                }
                if list[..i].iter().any(|o| o.name == s.name) {
                    errors.push(ConfigError::new(at("name"), format!("{:?} is used by another schedule", s.name)));
                }
                let when = match (&s.every, &s.at) {
                    (Some(every), None) => parse_interval(every).map(When::Every),
                    (None, Some(time)) => parse_time_of_day(time).map(|(hour, minute)| When::DailyAt { hour, minute }),
                    _ => Err("set exactly one of every (such as \"1h\") or at (such as \"02:00\", UTC)".into()),
                };
                match when {
                    Ok(when) => out.push(Schedule { name: s.name.clone(), when }),
                    Err(m) => errors.push(ConfigError::new(at("every"), m)),
                }
            }
            out
        }
    };
    let drill_every = match f.drill_every.as_deref() {
        None => Some(Duration::from_secs(30 * 86_400)),
        Some("off") => None,
        Some(text) => match parse_interval(text) {
            Ok(d) => Some(d),
            Err(m) => {
                errors.push(ConfigError::new("backup.drill_every", format!("{m}, or \"off\"")));
                None
            }
        },
    };
    let poll_secs = f.poll_secs.unwrap_or(60);
    if !(1..=3600).contains(&poll_secs) {
        errors.push(ConfigError::new("backup.poll_secs", "must be 1 to 3600 seconds"));
    }
    let defaults = backup::retention::Rules::default();
    let retention = match &f.retention {
        None => defaults,
        Some(r) => backup::retention::Rules {
            hourly: r.hourly.unwrap_or(defaults.hourly),
            daily: r.daily.unwrap_or(defaults.daily),
            monthly: r.monthly.unwrap_or(defaults.monthly),
        },
    };
    BackupSettings { targets, schedules, drill_every, poll: Duration::from_secs(poll_secs), retention }
}

/// Resolves the `[auth]` section.
fn resolve_auth(file: &FileAuth, errors: &mut Vec<ConfigError>) -> engine::IdentitySettings {
    let defaults = engine::IdentitySettings::default();
    let password_policy = match file.password_policy.as_deref() {
        None => defaults.password_policy,
        Some(name) => crypto::PasswordPolicy::parse(name).unwrap_or_else(|| {
            errors.push(ConfigError::new("auth.password_policy", format!("{name:?} is not one of default, classes")));
            defaults.password_policy
        }),
    };
    let mut secs = |setting: &str, value: Option<u64>, default: Duration, max: u64| {
        let v = value.unwrap_or(default.as_secs());
        if !(60..=max).contains(&v) {
            errors.push(ConfigError::new(setting, format!("must be 60 to {max} seconds")));
        }
        Duration::from_secs(v)
    };
    let idle = secs("auth.session_idle_secs", file.session_idle_secs, defaults.sessions.idle, 7 * 86_400);
    let absolute =
        secs("auth.session_absolute_secs", file.session_absolute_secs, defaults.sessions.absolute, 30 * 86_400);
    let hashing_cpu_percent = file.password_hashing_cpu_percent.unwrap_or(defaults.hashing_cpu_percent);
    if !(1..=100).contains(&hashing_cpu_percent) {
        errors.push(ConfigError::new("auth.password_hashing_cpu_percent", "must be 1 to 100"));
    }
    engine::IdentitySettings {
        sessions: engine::SessionPolicy { idle, absolute },
        password_policy,
        hashing_cpu_percent,
    }
}

/// Resolves the `[kms]` section, pushing an error naming the setting for
/// anything missing or unsafe.
fn resolve_kms(file: FileKms, o: &Overrides, data_dir: &Path, errors: &mut Vec<ConfigError>) -> KmsSettings {
    let name = o.kms_backend.clone().or(file.backend).unwrap_or_else(|| "local".into());
    let missing =
        |section: &str| ConfigError::new(format!("kms.{section}"), format!("required when kms.backend = {name:?}"));
    let backend = match name.as_str() {
        "local" => {
            let unseal_key_file = o.unseal_key_file.clone().or(file.local.unseal_key_file);
            if unseal_key_file.as_deref().is_some_and(|f| inside(f, data_dir)) {
                errors.push(ConfigError::new(
                    "kms.local.unseal_key_file",
                    "must be kept apart from the data directory (a copy of the data directory would carry its own key)",
                ));
            }
            KmsBackend::Local { unseal_key_file }
        }
        "pkcs11" => match file.pkcs11 {
            Some(p) => KmsBackend::Pkcs11 {
                module: p.module,
                token_label: p.token_label,
                key_label: p.key_label,
                pin_file: p.pin_file,
            },
            None => {
                errors.push(missing("pkcs11"));
                KmsBackend::Local { unseal_key_file: None }
            }
        },
        "transit" => match file.transit {
            Some(t) => {
                if !(t.address.starts_with("https://") || is_loopback_url(&t.address)) {
                    errors.push(ConfigError::new(
                        "kms.transit.address",
                        "must use https:// unless the server is on this host",
                    ));
                }
                KmsBackend::Transit {
                    address: t.address,
                    mount: t.mount,
                    key: t.key,
                    token_file: t.token_file,
                    ca_file: t.ca_file,
                }
            }
            None => {
                errors.push(missing("transit"));
                KmsBackend::Local { unseal_key_file: None }
            }
        },
        "aws-kms" => match file.aws {
            Some(a) => KmsBackend::Aws { key_id: a.key_id, region: a.region, endpoint: a.endpoint },
            None => {
                errors.push(missing("aws"));
                KmsBackend::Local { unseal_key_file: None }
            }
        },
        other => {
            errors.push(ConfigError::new(
                "kms.backend",
                format!("{other:?} is not one of local, pkcs11, transit, aws-kms"),
            ));
            KmsBackend::Local { unseal_key_file: None }
        }
    };
    if o.dev && !matches!(backend, KmsBackend::Local { .. }) {
        errors.push(ConfigError::new("dev", "--dev applies to the local keystore only"));
    }
    let ttl = file.cache_ttl_secs.unwrap_or(300);
    if !(1..=86_400).contains(&ttl) {
        errors.push(ConfigError::new("kms.cache_ttl_secs", "must be 1 to 86400 seconds"));
    }
    let cache_max_entries = file.cache_max_entries.unwrap_or(10_000);
    if cache_max_entries > 1_000_000 {
        errors.push(ConfigError::new("kms.cache_max_entries", "must be at most 1000000"));
    }
    KmsSettings { backend, cache_ttl: Duration::from_secs(ttl), cache_max_entries }
}

fn inside(path: &Path, dir: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let dir = canon(dir);
    path.parent().is_some_and(|parent| canon(parent).starts_with(&dir))
}

fn is_loopback_url(address: &str) -> bool {
    url::Url::parse(address).ok().and_then(|u| u.host_str().map(str::to_owned)).is_some_and(|h| {
        h == "localhost" || h.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// Refuses `STRONGROOM_*` variables that Strongroom does not read.
pub fn check_environment<I>(vars: I) -> Result<(), ConfigErrors>
where
    I: IntoIterator<Item = String>,
{
    let unknown: Vec<ConfigError> = vars
        .into_iter()
        .filter(|k| k.starts_with("STRONGROOM_") && !k.starts_with(TEST_ENV_PREFIX))
        .filter(|k| !KNOWN_ENV.contains(&k.as_str()))
        .map(|k| ConfigError::new(k, "unknown environment variable (a typo?)"))
        .collect();
    if unknown.is_empty() { Ok(()) } else { Err(ConfigErrors(unknown)) }
}

fn one(setting: &str, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError::new(setting, message)])
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let setting = format!("config file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| one(&setting, e.to_string()))?;
    parse_toml(&text).map_err(|m| one(&setting, m))
}

/// Parses the file, naming the key path of a bad value (`kms.pkcs11: missing
/// field ...`).
fn parse_toml(text: &str) -> Result<FileConfig, String> {
    let de = toml::Deserializer::parse(text).map_err(|e| e.message().to_owned())?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_owned();
        if path.is_empty() || path == "." { message } else { format!("{path}: {message}") }
    })
}

/// A data directory others can read or write would expose keys and data.
fn check_data_dir(dir: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            Err(ConfigError::new("data_dir", format!("{} is not a directory", dir.display())))
        }
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(ConfigError::new(
            "data_dir",
            format!(
                "{} is open to other users (mode {:04o}); run chmod 700 on it",
                dir.display(),
                meta.permissions().mode() & 0o7777
            ),
        )),
        _ => Ok(()),
    }
}

/// A PostgreSQL URL whose remote connections verify the server.
fn check_database_url(raw: &str) -> Result<(), ConfigError> {
    let bad = |m: String| ConfigError::new("database_url", m);
    let url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad(format!(
            "scheme {:?} is not supported; use postgres://, or leave it unset for the embedded database",
            url.scheme()
        )));
    }
    let host = url.host_str().unwrap_or("");
    let local = host.is_empty() || is_local_host(host);
    let sslmode = url.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned());
    if !local && !matches!(sslmode.as_deref(), Some("verify-full" | "verify-ca")) {
        return Err(bad("connects to a remote host without verifying its certificate; add sslmode=verify-full".into()));
    }
    Ok(())
}

fn is_dns_name_or_ip(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok()
        || (!name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str, o: &Overrides) -> Vec<String> {
        match Config::from_toml(text, o) {
            Ok(_) => vec![],
            Err(ConfigErrors(es)) => es.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn check(text: &str, expect_setting: &str) {
        let errs = errors_of(text, &Overrides::default());
        assert!(
            errs.iter().any(|e| e.contains(expect_setting)),
            "config {text:?}: expected an error naming {expect_setting:?}, got {errs:?}"
        );
    }

    #[test]
    fn defaults_are_valid_and_safe() {
        let c = Config::from_toml("", &Overrides::default());
        let c = c.as_ref().map(|c| (c.listen.to_string(), c.database.clone()));
        assert_eq!(c, Ok(("127.0.0.1:8443".into(), Database::Embedded)));
    }

    // claim 002.11
    #[test]
    fn invalid_and_unsafe_values_are_refused_by_name() {
        check("listen = 'everywhere'", "listen");
        check("[http]\nmax_body_bytes = 10", "http.max_body_bytes");
        check("[http]\nrequest_timeout_secs = 0", "http.request_timeout_secs");
        check("[tls]\ncert_file = '/nonexistent.pem'", "tls.key_file");
        check("[tls]\nnames = ['bad name']", "tls.names");
        check("database_url = 'mysql://x/y'", "database_url");
        check("database_url = 'postgres://u:p@db.example.com/s'", "database_url");
        check("[log]\nlevel = 'loud=!'", "log.level");
        // The name goes into audit entries' field list, which spaces divide.
        check("[[backup.schedules]]\nname = 'nightly full'\nevery = '1h'", "backup.schedules[0].name");
    }

    // claim 002.11
    #[test]
    fn unknown_keys_are_refused_by_name() {
        let errs = errors_of("listn = '127.0.0.1:1'", &Overrides::default());
        assert!(errs.iter().any(|e| e.contains("listn")), "{errs:?}");
        let errs = errors_of("[http]\nmax_body = 5", &Overrides::default());
        assert!(errs.iter().any(|e| e.contains("max_body")), "{errs:?}");
    }

    #[test]
    fn several_errors_are_reported_together() {
        let errs = errors_of("listen = 'x'\n[http]\nmax_body_bytes = 1", &Overrides::default());
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides { listen: Some("127.0.0.1:9999".into()), ..Overrides::default() };
        let c = Config::from_toml("listen = '127.0.0.1:1111'", &o).map(|c| c.listen.port());
        assert_eq!(c, Ok(9999));
    }

    #[test]
    fn remote_postgres_with_verification_and_local_postgres_are_accepted() {
        for url in [
            "postgres://u:p@127.0.0.1:5432/s",
            "postgresql://localhost/s",
            "postgres://u@db.example.com/s?sslmode=verify-full",
        ] {
            assert!(check_database_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn redaction_hides_the_password_only() {
        let url = DatabaseUrl("postgres://app:hunter2@127.0.0.1:5432/sr".into());
        assert_eq!(url.redacted(), "postgres://app:REDACTED@127.0.0.1:5432/sr");
        assert!(!format!("{url:?}").contains("hunter2"));
        let c = Config::from_toml("database_url = 'postgres://app:hunter2@127.0.0.1/sr'", &Overrides::default());
        let shown = c.map(|c| c.render_redacted()).unwrap_or_default();
        assert!(shown.contains("REDACTED") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn kms_settings_are_checked_by_name() {
        check("[kms]\nbackend = 'vault'", "kms.backend");
        check("[kms]\nbackend = 'pkcs11'", "kms.pkcs11");
        check(
            "[kms]\nbackend = 'transit'\n[kms.transit]\naddress = 'http://vault.example.com:8200'\nkey = 'k'",
            "kms.transit.address",
        );
        check("[kms]\ncache_ttl_secs = 0", "kms.cache_ttl_secs");
        check("[kms.pkcs11]\nmodule = '/x.so'", "kms.pkcs11");
    }

    #[test]
    fn plain_smtp_is_only_for_a_local_relay() {
        check("[smtp]\nhost = 'mail.example.com'\nsecurity = 'none'\nfrom = 'v@example.com'", "smtp.security");
        check("[smtp]\nhost = '127.0.0.1'\nsecurity = 'ssl'\nfrom = 'v@example.com'", "smtp.security");
        check("[smtp]\nhost = '127.0.0.1'\nfrom = 'nobody'", "smtp.from");
        assert!(
            errors_of(
                "[smtp]\nhost = '127.0.0.1'\nport = 2525\nsecurity = 'none'\nfrom = 'v@example.com'",
                &Overrides::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn an_unseal_key_file_inside_the_data_directory_is_refused() {
        let o = Overrides {
            data_dir: Some("/tmp/sr-data".into()),
            unseal_key_file: Some("/tmp/sr-data/keystore/unseal.key".into()),
            ..Overrides::default()
        };
        let errs = errors_of("", &o);
        assert!(errs.iter().any(|e| e.contains("kms.local.unseal_key_file")), "{errs:?}");
    }

    #[test]
    fn unknown_environment_variables_are_refused() {
        let vars = ["STRONGROOM_LISTN", "STRONGROOM_LISTEN", "PATH", "STRONGROOM_TEST_DATABASE_URL"];
        let r = check_environment(vars.iter().map(|s| s.to_string()));
        let names: Vec<String> = r.err().map(|e| e.0.into_iter().map(|e| e.setting).collect()).unwrap_or_default();
        assert_eq!(names, vec!["STRONGROOM_LISTN".to_string()]);
    }
}
