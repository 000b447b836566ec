//! Blob store for attachments: opaque bytes, already encrypted by the caller,
//! under keys the caller builds (never user-supplied names), on a local
//! folder or, with the `s3` feature, an S3 bucket, through `object_store`.
//!
//! Memory stays bounded whatever the blob's size: a body is read from a
//! stream and uploaded in parts of [`PART_SIZE`] with at most
//! [`PARTS_IN_FLIGHT`] parts in flight; a read is a stream of chunks. A body
//! that fits in one part is stored with a single write. An upload whose body
//! fails is aborted and leaves no object behind (an upload dropped half-way
//! is aborted in the background).
//!
//! Messages of [`BlobError`] never carry object contents or credentials:
//! remote error bodies are cut off before they reach a message.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// Size of one uploaded part, and the largest body stored with a single
/// write. S3 requires at least 5 MiB for every part but the last and allows
/// 10,000 parts, so a blob on S3 can hold up to about 48 GiB.
pub const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts of one upload in flight at once: with the part being filled, one
/// upload holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes (15 MiB)
/// plus the body stream's current chunk.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Longest accepted key, in bytes (S3 allows 1024).
const MAX_KEY_LEN: usize = 512;

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConfig {
    /// A folder on this machine; created `0700` if missing, refused if group
    /// or others have any access to it.
    Local { root: PathBuf },
    /// An S3 bucket (or an S3-compatible service at `endpoint`). Credentials
    /// come from the environment only (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity, container
    /// credentials) or the instance metadata service, never from here.
    /// `prefix` is put in front of every key. Needs the `s3` feature.
    S3 { bucket: String, region: String, endpoint: Option<String>, allow_http: bool, prefix: Option<String> },
}

/// What went wrong in the blob store. Messages name the operation and the
/// backend's answer, never object contents or credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob under that key.
    #[error("blob not found")]
    NotFound,
    /// A key or prefix that is not of the accepted form.
    #[error("invalid blob key: {0}")]
    InvalidKey(&'static str),
    /// A configuration value that cannot work.
    #[error("blob store setting {setting}: {reason}")]
    Config { setting: &'static str, reason: String },
    /// The remote store could not be reached, refused the credentials or
    /// failed.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// The local folder failed.
    #[error("blob store I/O error: {0}")]
    Io(String),
    /// The body stream given to [`BlobStore::put`] failed; the upload was
    /// aborted and nothing was stored.
    #[error("blob upload aborted: the body failed: {0}")]
    Body(std::io::Error),
}

/// A validated blob key: ASCII `[a-z0-9-]` segments joined by `/`, none
/// empty, so no leading or trailing `/`, no `//` and no `..`; at most 512
/// bytes. Keys are built by the caller (`orgs/<uuid>/blobs/<uuid>`), never
/// taken from user-supplied names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// Checks `key` and wraps it.
    pub fn new(key: &str) -> Result<Self, BlobError> {
        validate_key(key)?;
        Ok(Self(key.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> Path {
        // Every character is one `Path` accepts as is; `from_iter` never
        // re-encodes these segments.
        Path::from_iter(self.0.split('/'))
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BlobKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn validate_key(key: &str) -> Result<(), BlobError> {
    if key.is_empty() {
        return Err(BlobError::InvalidKey("it is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(BlobError::InvalidKey("it is longer than 512 bytes"));
    }
    if key.starts_with('/') {
        return Err(BlobError::InvalidKey("it starts with '/'"));
    }
    if key.contains("..") {
        return Err(BlobError::InvalidKey("it contains '..'"));
    }
    if !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'/') {
        return Err(BlobError::InvalidKey("only a-z, 0-9, '-' and '/' are allowed"));
    }
    if key.split('/').any(str::is_empty) {
        return Err(BlobError::InvalidKey("it has an empty segment ('//' or a trailing '/')"));
    }
    Ok(())
}

/// The blob store of one deployment. Cheap to clone: clones share one
/// client (and its connection pool).
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

enum Backend {
    Local {
        root: PathBuf,
    },
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.backend {
            Backend::Local { root } => {
                f.debug_struct("BlobStore").field("backend", &"local").field("root", root).finish()
            }
            Backend::S3 { bucket, prefix } => f
                .debug_struct("BlobStore")
                .field("backend", &"s3")
                .field("bucket", bucket)
                .field("prefix", prefix)
                .finish(),
        }
    }
}

impl BlobStore {
    /// Opens the store. Local: creates the folder `0700` if missing and
    /// refuses one that group or others can access. S3: builds the client
    /// (no request is made; see [`BlobStore::health`]).
    pub async fn open(config: &BlobConfig) -> Result<Self, BlobError> {
        let (store, backend) = match config {
            BlobConfig::Local { root } => open_local(root).await?,
            BlobConfig::S3 { bucket, region, endpoint, allow_http, prefix } => {
                open_s3(bucket, region, endpoint.as_deref(), *allow_http, prefix.as_deref())?
            }
        };
        Ok(Self { inner: Arc::new(Inner { store, backend }) })
    }

    /// `local` or `s3`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Local { .. } => "local",
            Backend::S3 { .. } => "s3",
        }
    }

    /// Stores `body` under `key`, replacing any blob there, and returns the
    /// number of bytes written. The blob appears whole or not at all. If
    /// the body fails, the upload is aborted and [`BlobError::Body`]
    /// returned; a blob already under `key` is then left as it was.
    pub async fn put<S>(&self, key: &BlobKey, mut body: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let path = key.path();
        // Up to one part is read before anything is sent: a small body (the
        // usual attachment) is stored with a single write, and a body that
        // fails this early leaves nothing to clean up.
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let mut total = 0u64;
        while buffered < PART_SIZE {
            match body.next().await {
                None => {
                    self.inner.store.put(&path, PutPayload::from_iter(first)).await.map_err(|e| self.error(e))?;
                    self.written(key).await?;
                    return Ok(total);
                }
                Some(Err(e)) => return Err(BlobError::Body(e)),
                Some(Ok(chunk)) => {
                    buffered += chunk.len();
                    total += chunk.len() as u64;
                    first.push(chunk);
                }
            }
        }

        let upload = self.inner.store.put_multipart(&path).await.map_err(|e| self.error(e))?;
        let mut upload = Upload(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        for chunk in first {
            upload.writer()?.put(chunk);
        }
        loop {
            if let Err(e) = upload.writer()?.wait_for_capacity(PARTS_IN_FLIGHT).await {
                upload.abort().await;
                return Err(self.error(e));
            }
            match body.next().await {
                None => break,
                Some(Err(e)) => {
                    upload.abort().await;
                    return Err(BlobError::Body(e));
                }
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    upload.writer()?.put(chunk);
                }
            }
        }
        // `finish` aborts the upload itself when it fails.
        upload.finish().await.map_err(|e| self.error(e))?;
        self.written(key).await?;
        Ok(total)
    }

    /// The blob under `key` as a stream of chunks; [`BlobError::NotFound`]
    /// if there is none.
    pub async fn get(&self, key: &BlobKey) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let result = self.inner.store.get(&key.path()).await.map_err(|e| self.error(e))?;
        let remote = self.is_remote();
        Ok(result.into_stream().map_err(move |e| map_error(remote, e)).boxed())
    }

    /// The size in bytes of the blob under `key`, or `None` if there is none.
    pub async fn head(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self.inner.store.head(&key.path()).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Deletes the blob under `key`; deleting a missing blob succeeds.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.inner.store.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Deletes every blob whose key lies under `prefix`, segment by segment
    /// (`orgs/a` covers `orgs/a/x`, not `orgs/ab`), and returns how many
    /// were deleted. `prefix` follows the key rules; one trailing `/`
    /// is allowed. For erasing an organisation or a profile: call it after
    /// no new blobs can be written under the prefix.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let prefix = BlobKey::new(prefix.strip_suffix('/').unwrap_or(prefix))?.path();
        // In batches: list a bounded number of keys, delete them, list again
        // (the deleted ones are gone), so memory stays bounded and local
        // directories emptied by a delete are never walked.
        const BATCH: usize = 1000;
        let mut deleted = 0u64;
        loop {
            let batch: Vec<Path> = self
                .inner
                .store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location)
                .take(BATCH)
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            let listed = batch.len();
            let mut results =
                self.inner.store.delete_stream(futures_util::stream::iter(batch.into_iter().map(Ok)).boxed());
            let mut this_batch = 0u64;
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) => this_batch += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.error(e)),
                }
            }
            deleted += this_batch;
            // A short listing was the last one; a batch of which nothing was
            // left to delete (someone else deleted it) ends the loop rather
            // than spin.
            if listed < BATCH || this_batch == 0 {
                return Ok(deleted);
            }
        }
    }

    /// The keys under `prefix` (segment by segment, as in
    /// [`BlobStore::delete_prefix`]), sorted, at most `limit`.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BlobError> {
        let prefix = BlobKey::new(prefix.strip_suffix('/').unwrap_or(prefix))?.path();
        let mut keys: Vec<String> = self
            .inner
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .take(limit)
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        keys.sort();
        Ok(keys)
    }

    /// Checks that the store answers: the local folder is still there, or
    /// the bucket can be listed with these credentials.
    pub async fn health(&self) -> Result<(), BlobError> {
        match &self.inner.backend {
            Backend::Local { root } => match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(BlobError::Io(format!("{} is not a directory", root.display()))),
                Err(e) => Err(BlobError::Io(format!("{}: {e}", root.display()))),
            },
            Backend::S3 { .. } => {
                // Any error, a missing bucket (404) included, is a failure.
                let probe = Path::from("health");
                match self.inner.store.list_with_delimiter(Some(&probe)).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(BlobError::Unavailable(sanitize(&e.to_string()))),
                }
            }
        }
    }

    fn is_remote(&self) -> bool {
        matches!(self.inner.backend, Backend::S3 { .. })
    }

    fn error(&self, e: object_store::Error) -> BlobError {
        map_error(self.is_remote(), e)
    }

    /// After a blob is written: local files are made `0600` (object_store
    /// creates them under the process umask, usually `0644`; the root
    /// folder is `0700` either way, so nobody else could read them before).
    async fn written(&self, key: &BlobKey) -> Result<(), BlobError> {
        match &self.inner.backend {
            Backend::Local { root } => restrict_file(&root.join(key.as_str())).await,
            Backend::S3 { .. } => Ok(()),
        }
    }
}

/// An upload in progress: aborted in the background if dropped before it
/// finished (a caller's future cancelled half-way).
struct Upload(Option<WriteMultipart>);

impl Upload {
    fn writer(&mut self) -> Result<&mut WriteMultipart, BlobError> {
        self.0.as_mut().ok_or_else(|| BlobError::Io("upload already finished".into()))
    }

    async fn abort(&mut self) {
        if let Some(writer) = self.0.take()
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(error = %sanitize(&e.to_string()), "aborting a blob upload failed");
        }
    }

    async fn finish(&mut self) -> Result<(), object_store::Error> {
        match self.0.take() {
            Some(writer) => writer.finish().await.map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %sanitize(&e.to_string()), "aborting a dropped blob upload failed");
                }
            });
        }
    }
}

fn map_error(remote: bool, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        object_store::Error::InvalidPath { .. } => BlobError::InvalidKey("not a valid object path"),
        e if remote => BlobError::Unavailable(sanitize(&e.to_string())),
        e => BlobError::Io(sanitize(&e.to_string())),
    }
}

/// Keeps an error message free of anything a remote sent back: S3 error
/// bodies (XML) can echo the access key id, the string to sign and the
/// request; the status line before them is enough. Also bounds the length.
fn sanitize(message: &str) -> String {
    const MAX: usize = 300;
    let cut = message.find('<').unwrap_or(message.len());
    let mut out: String = message[..cut].trim_end().trim_end_matches(':').to_owned();
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

async fn open_local(root: &FsPath) -> Result<(Arc<dyn ObjectStore>, Backend), BlobError> {
    let setting = "root";
    let config_err = |reason: String| BlobError::Config { setting, reason };
    match tokio::fs::metadata(root).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = tokio::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            builder.mode(0o700);
            builder.create(root).await.map_err(|e| config_err(format!("cannot create {}: {e}", root.display())))?;
        }
        Err(e) => return Err(config_err(format!("{}: {e}", root.display()))),
    }
    let meta = tokio::fs::metadata(root).await.map_err(|e| config_err(format!("{}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(config_err(format!("{} is not a directory", root.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(config_err(format!(
                "{} is open to group or others (mode {mode:04o}); run chmod 700 on it",
                root.display()
            )));
        }
    }
    let root = tokio::fs::canonicalize(root).await.map_err(|e| config_err(format!("{}: {e}", root.display())))?;
    let store = LocalFileSystem::new_with_prefix(&root)
        .map_err(|e| config_err(sanitize(&e.to_string())))?
        .with_automatic_cleanup(true)
        // Attachments are acknowledged to the user once stored: make them
        // survive a power loss, like the database's synchronous=FULL.
        .with_fsync(true);
    Ok((Arc::new(store), Backend::Local { root }))
}

/// Makes a freshly written local blob readable by its owner only.
async fn restrict_file(path: &FsPath) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .await
            .map_err(|e| BlobError::Io(format!("cannot restrict {} to 0600: {e}", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(not(feature = "s3"))]
fn open_s3(
    _bucket: &str,
    _region: &str,
    _endpoint: Option<&str>,
    _allow_http: bool,
    _prefix: Option<&str>,
) -> Result<(Arc<dyn ObjectStore>, Backend), BlobError> {
    Err(BlobError::Config {
        setting: "backend",
        reason: "this build has no S3 support (built without the store crate's `s3` feature)".into(),
    })
}

#[cfg(feature = "s3")]
fn open_s3(
    bucket: &str,
    region: &str,
    endpoint: Option<&str>,
    allow_http: bool,
    prefix: Option<&str>,
) -> Result<(Arc<dyn ObjectStore>, Backend), BlobError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::prefix::PrefixStore;
    use object_store::{ClientOptions, RetryConfig};
    use std::time::Duration;

    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_bucket {
        return Err(BlobError::Config {
            setting: "bucket",
            reason: "not an S3 bucket name (3-63 of a-z, 0-9, '-', '.')".into(),
        });
    }
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(BlobError::Config { setting: "region", reason: "not a region name such as eu-west-1".into() });
    }
    if let Some(endpoint) = endpoint {
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(BlobError::Config { setting: "endpoint", reason: "must be an http(s):// URL".into() });
        }
        if endpoint.starts_with("http://") && !allow_http {
            return Err(BlobError::Config {
                setting: "endpoint",
                reason: "is plain http but allow_http is off".into(),
            });
        }
    }
    let prefix = match prefix {
        Some(p) => Some(
            BlobKey::new(p.strip_suffix('/').unwrap_or(p))
                .map_err(|e| BlobError::Config { setting: "prefix", reason: e.to_string() })?,
        ),
        None => None,
    };

    // reqwest is built without a bundled rustls provider: make sure the
    // process has one (ring, as everywhere in Strongroom; the server
    // installs it at start already, and a provider already set is kept).
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Credentials only: nothing else of the AWS_* environment (endpoint,
    // skip-signature, invalid certificates...) changes this store.
    let mut builder = AmazonS3Builder::new();
    for (name, value) in std::env::vars() {
        if !name.starts_with("AWS_") {
            continue;
        }
        let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() else { continue };
        if matches!(
            key,
            AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token
                | AmazonS3ConfigKey::ContainerCredentialsRelativeUri
                | AmazonS3ConfigKey::ContainerCredentialsFullUri
                | AmazonS3ConfigKey::ContainerAuthorizationTokenFile
                | AmazonS3ConfigKey::WebIdentityTokenFile
                | AmazonS3ConfigKey::RoleArn
                | AmazonS3ConfigKey::RoleSessionName
                | AmazonS3ConfigKey::StsEndpoint
        ) {
            builder = builder.with_config(key, value);
        }
    }
    let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..Default::default() };
    builder = builder
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(retry)
        // These options replace the builder's whole client options, so
        // allow_http is set here, not on the builder. A whole part must go
        // through within the request timeout: 5 MiB in 120 s is about
        // 350 kbit/s.
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(allow_http)
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let s3 = builder.build().map_err(|e| BlobError::Config { setting: "s3", reason: sanitize(&e.to_string()) })?;
    let store: Arc<dyn ObjectStore> = match &prefix {
        Some(p) => Arc::new(PrefixStore::new(s3, p.path())),
        None => Arc::new(s3),
    };
    Ok((store, Backend::S3 { bucket: bucket.to_owned(), prefix: prefix.map(|p| p.0) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_the_accepted_form_pass() {
        for key in ["a", "orgs/0f3c/blobs/9a-b", "x/y/z", "0"] {
            assert!(BlobKey::new(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in ["", "/x", "../x", "x/../y", "x/..", "A", "x//y", "x/", "a.b", "a b", "é", "a\\b", "a\0b"] {
            assert!(matches!(BlobKey::new(key), Err(BlobError::InvalidKey(_))), "{key:?}");
        }
        assert!(BlobKey::new(&"a".repeat(513)).is_err());
        assert!(BlobKey::new(&"a".repeat(512)).is_ok());
    }

    #[test]
    fn remote_error_bodies_are_cut_off() {
        let m =
            "Error performing PUT http://h/b/k: 403 Forbidden: <Error><AWSAccessKeyId>AKIAX</AWSAccessKeyId></Error>";
        let s = sanitize(m);
        assert!(!s.contains("AKIAX"), "{s}");
        assert!(s.contains("403 Forbidden"), "{s}");
        assert!(sanitize(&"é".repeat(400)).chars().count() <= 301);
    }
}
