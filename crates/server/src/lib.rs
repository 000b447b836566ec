//! HTTP for Strongroom: the router, its layers (TLS-only listener, problem
//! details, limits, request ids, metrics, security headers) and the
//! lifecycle of a running server.
//!
//! Architecture invariant: only this crate knows HTTP and JSON shapes. It
//! authenticates callers but never decides what they may do; `engine` does.

pub mod api;
pub mod config;
mod drain;
pub mod json;
pub mod keys;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod problem;
pub mod telemetry;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use engine::Engine;
use http::{HeaderName, HeaderValue, header};
use metrics_exporter_prometheus::PrometheusHandle;
use store::{Store, StoreConfig};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::{Config, Database, HttpLimits, TlsSource};
use crate::problem::{Kind, Problem};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: PrometheusHandle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("engine", &self.engine).finish_non_exhaustive()
    }
}

/// The whole HTTP application, ready to serve or to call in-process.
pub fn app(state: AppState, limits: &HttpLimits) -> Router {
    with_layers(api::routes(&state).with_state(state), limits)
}

/// Wraps routes in the layers every response passes through. Public so
/// tests can mount a route of their own behind exactly these layers.
pub fn with_layers(routes: Router, limits: &HttpLimits) -> Router {
    let body_limit = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let limits = limits.clone();
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    routes.fallback(not_found).layer(
        ServiceBuilder::new()
            .layer(header(header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"))
            .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(header(header::REFERRER_POLICY, "no-referrer"))
            .layer(header(header::X_FRAME_OPTIONS, "DENY"))
            .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ))
            .layer(middleware::from_fn(observe::observe))
            .layer(middleware::from_fn(problem::problemise))
            .layer(CatchPanicLayer::custom(problem::from_panic))
            .layer(middleware::from_fn(drain::drain_unread_body))
            .layer(middleware::from_fn(move |req, next| limit_request(limits.clone(), req, next)))
            .layer(DefaultBodyLimit::max(body_limit)),
    )
}

/// Whether a path is an attachment's: those stream large bodies and get
/// their own size and time limits.
fn is_attachment_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["", "v1", "orgs", _, "profiles", _, "attachments", name] if !name.is_empty())
}

/// Bounds every request: bodies by size (refused up front by
/// `Content-Length`, cut off while streaming otherwise) and handlers by
/// time until the response starts. Attachment uploads have their own
/// limits; their size is enforced while they stream, by the engine.
async fn limit_request(
    limits: HttpLimits,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let attachment = is_attachment_path(req.uri().path());
    let (max, setting, timeout) = if attachment {
        (limits.max_attachment_bytes, "blobs.max_attachment_bytes", limits.transfer_timeout)
    } else {
        (limits.max_body_bytes, "http.max_body_bytes", limits.request_timeout)
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Problem::new(Kind::PayloadTooLarge)
            .with_detail(format!("the request body exceeds the configured limit ({setting})"))
            .into_response();
    }
    let req = if attachment {
        req
    } else {
        req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, usize::try_from(max).unwrap_or(usize::MAX))))
    };
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(Kind::Timeout)
            .with_detail(if attachment {
                "the transfer took longer than the configured limit (blobs.transfer_timeout_secs)"
            } else {
                "the request took longer than the configured limit (http.request_timeout_secs)"
            })
            .into_response(),
    }
}

async fn not_found() -> Problem {
    Problem::new(Kind::NotFound).with_detail("no such resource")
}

/// Creates the data directory and its folders, private to this user.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for sub in ["", "blobs", "backups", "backup-work", "tls", keys::KEYSTORE_DIR] {
        let path = dir.join(sub);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("data_dir: cannot create {}", path.display()))?;
    }
    Ok(())
}

/// Opens the store the configuration names, applying migrations. The
/// embedded database is opened with its key, unwrapped through `kms`.
pub async fn open_store(config: &Config, kms: &kms::Kms) -> anyhow::Result<Store> {
    let store_config = match &config.database {
        Database::Embedded => {
            StoreConfig::Sqlite { path: keys::database_file(config), key: keys::database_key(config, kms).await? }
        }
        Database::Postgres { url, max_connections } => {
            StoreConfig::Postgres { url: url.expose_for_connect().to_owned(), max_connections: *max_connections }
        }
    };
    Ok(Store::open(&store_config).await?)
}

/// A deployment's engine: key backend opened (created with `create`), store
/// opened and migrated. What `serve` and every operator command start from.
pub async fn open_engine(config: &Config, create: bool) -> anyhow::Result<Engine> {
    prepare_data_dir(&config.data_dir)?;
    let kms = std::sync::Arc::new(keys::open_kms(config, create).await?);
    let store = open_store(config, &kms).await?;
    let cache = engine::CacheSettings { ttl: config.kms.cache_ttl, max_entries: config.kms.cache_max_entries };
    let mailer = match &config.smtp {
        Some(settings) => engine::mail::Mailer::new(settings).context("smtp")?,
        None => engine::mail::Mailer::disabled(),
    };
    let blobs = open_blobs(config).await?;
    Ok(Engine::new(store, kms, cache)
        .with_identity(config.auth)
        .with_mailer(mailer)
        .with_blobs(blobs, config.http.max_attachment_bytes)
        .with_support_max(config.support_max))
}

/// The deployment's backups: every configured target opened, archives
/// written through `DATA_DIR/backup-work` (outside every target).
pub async fn open_backups(config: &Config, engine: &Engine) -> anyhow::Result<backup::Backups> {
    let targets = open_backup_targets(config).await?;
    let work = config.data_dir.join("backup-work");
    Ok(backup::Backups::new(engine.clone(), targets, work, config.backup.retention))
}

/// Every configured backup target, opened.
pub async fn open_backup_targets(config: &Config) -> anyhow::Result<Vec<backup::Target>> {
    let mut targets = Vec::new();
    for t in &config.backup.targets {
        let blobs = store::BlobStore::open(&t.store).await.with_context(|| format!("backup target {}", t.name))?;
        targets.push(backup::Target { name: t.name.clone(), blobs });
    }
    Ok(targets)
}

/// Opens the blob store the configuration names.
pub async fn open_blobs(config: &Config) -> anyhow::Result<store::BlobStore> {
    let blob_config = match &config.blobs {
        config::BlobBackend::Local => store::BlobConfig::Local { root: config.data_dir.join("blobs") },
        config::BlobBackend::S3 { bucket, region, endpoint, prefix, allow_http } => store::BlobConfig::S3 {
            bucket: bucket.clone(),
            region: region.clone(),
            endpoint: endpoint.clone(),
            allow_http: *allow_http,
            prefix: prefix.clone(),
        },
    };
    store::BlobStore::open(&blob_config).await.context("blobs")
}

/// The TLS source, with a specific listen address added to the names of a
/// generated certificate so clients can connect by IP.
fn tls_source(config: &Config) -> TlsSource {
    match &config.tls {
        TlsSource::Generated { names } => {
            let mut names = names.clone();
            let ip = config.listen.ip().to_string();
            if !config.listen.ip().is_unspecified() && !names.contains(&ip) {
                names.push(ip);
            }
            TlsSource::Generated { names }
        }
        files @ TlsSource::Files { .. } => files.clone(),
    }
}

/// How often `serve` looks for record keys still wrapped by an older
/// organisation key version.
const REWRAP_EVERY: Duration = Duration::from_secs(600);

/// How often `serve` looks for ended support sessions to summarise.
const SUPPORT_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// How often `serve` signs checkpoints of the audit chains that grew.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// Every background job of a serving instance, stopped with the server.
async fn background_jobs(
    engine: Engine,
    sinks: Vec<engine::Sink>,
    holder: String,
    (backups, backup_settings): (backup::Backups, config::BackupSettings),
    retention_sweep: Option<Duration>,
) {
    // Each sink delivers on its own, so one that is down holds up no other;
    // the holder id tells this instance's leases from another's.
    let deliveries = futures_util::future::join_all(sinks.into_iter().map(|sink| {
        let engine = engine.clone();
        let holder = holder.clone();
        async move { engine.run_sink(sink, holder).await }
    }));
    let checkpoints = {
        let engine = engine.clone();
        async move {
            let start = tokio::time::Instant::now() + CHECKPOINT_EVERY;
            let mut tick = tokio::time::interval_at(start, CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = engine.checkpoint_chains().await {
                    tracing::warn!(error = %e, "audit checkpoint failed; retrying next minute");
                }
            }
        }
    };
    let support = {
        let engine = engine.clone();
        async move {
            let mut tick = tokio::time::interval(SUPPORT_SUMMARY_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = engine.summarise_support_sessions().await {
                    tracing::warn!(error = %e, "support-session summaries failed; retrying next minute");
                }
                if let Err(e) = engine.notify_ended_grants().await {
                    tracing::warn!(error = %e, "ended-grant notices failed; retrying next minute");
                }
            }
        }
    };
    let scheduled_backups = backup_job(engine.clone(), backups, backup_settings, holder.clone());
    let retention = retention_job(engine.clone(), retention_sweep, holder);
    tokio::join!(rewrap_job(engine), checkpoints, deliveries, support, scheduled_backups, retention);
}

/// The lease that lets one instance at a time sweep retention policies.
const RETENTION_LEASE: &str = "job:retention";
/// Held without renewal this long; renewed while a sweep runs, released
/// when it ends.
const RETENTION_LEASE_SECS: i64 = 900;
const RETENTION_LEASE_RENEW: Duration = Duration::from_secs(300);

/// Sweeps every organisation's retention policy on schedule. Every
/// instance runs the loop; the one holding the lease sweeps.
async fn retention_job(engine: Engine, every: Option<Duration>, holder: String) {
    let Some(every) = every else { return };
    let start = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Renewed while the sweep runs, so no other instance starts one.
        let Some(renewer) =
            take_job_lease(&engine, RETENTION_LEASE, &holder, RETENTION_LEASE_SECS, RETENTION_LEASE_RENEW).await
        else {
            continue;
        };
        match engine.sweep_all_retention().await {
            Ok(results) => {
                for (org, result) in results {
                    match result {
                        Ok(r) if r.deleted > 0 => {
                            tracing::info!(org = %org, checked = r.checked, deleted = r.deleted, "retention sweep");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(org = %org, error = %e, "retention sweep failed; retrying next round"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention sweep: cannot read the policies"),
        }
        renewer.abort();
        let _ = engine.store().release_sink_lease(RETENTION_LEASE, &holder).await;
    }
}

/// Takes a job's lease (held `secs` without renewal) and, if this instance
/// got it, returns the task that renews it every `renew` while the job
/// works: abort it, then release the lease, when done. `None`: another
/// instance holds it, or the store could not say.
async fn take_job_lease(
    engine: &Engine,
    lease: &'static str,
    holder: &str,
    secs: i64,
    renew: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let now = engine::now_micros();
    match engine.store().take_sink_lease(lease, holder, now, now + secs * 1_000_000).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(lease, error = %e, "cannot take a job's lease");
            return None;
        }
    }
    let (engine, holder) = (engine.clone(), holder.to_owned());
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(renew).await;
            let now = engine::now_micros();
            if !matches!(engine.store().take_sink_lease(lease, &holder, now, now + secs * 1_000_000).await, Ok(true)) {
                tracing::warn!(lease, "a job lost its lease while working");
            }
        }
    }))
}

/// The lease that lets one instance at a time run scheduled backups and
/// drills, among all those sharing a database.
const BACKUP_LEASE: &str = "job:backup";
/// How long the backup lease is held without renewal: longer than a backup
/// takes, so another instance never starts one alongside.
const BACKUP_LEASE_SECS: i64 = 900;
/// How often a round renews its lease.
const BACKUP_LEASE_RENEW: Duration = Duration::from_secs(300);

/// Scheduled backups (each followed by pruning) and drills. Every instance
/// runs the loop; the one holding the lease does the work.
async fn backup_job(engine: Engine, backups: backup::Backups, settings: config::BackupSettings, holder: String) {
    use backup::schedule::{When, is_due};
    // Schedules that never ran count from the deployment's first start, so
    // restarts do not put the first backup off for ever.
    let since = match engine.store().first_audit_micros(engine::PLATFORM_CHAIN).await {
        Ok(Some(micros)) => time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
        _ => time::OffsetDateTime::now_utc(),
    };
    let start = tokio::time::Instant::now() + settings.poll;
    let mut tick = tokio::time::interval_at(start, settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let at = |micros: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    loop {
        tick.tick().await;
        let store = engine.store();
        // Renewed while the round runs, so no other instance starts one.
        let Some(renewer) = take_job_lease(&engine, BACKUP_LEASE, &holder, BACKUP_LEASE_SECS, BACKUP_LEASE_RENEW).await
        else {
            continue;
        };
        let now = time::OffsetDateTime::now_utc();
        for schedule in &settings.schedules {
            let (last, success) = match store.last_backup_runs(&schedule.name).await {
                Ok(runs) => runs,
                Err(e) => {
                    tracing::warn!(error = %e, "backup scheduler: cannot read past runs");
                    continue;
                }
            };
            let due =
                is_due(schedule.when, success.map(|r| at(r.started_at)), last.map(|r| at(r.started_at)), since, now);
            if !due {
                continue;
            }
            match backups.create(&schedule.name, "system", &backup::Quiet).await {
                Ok(c) => {
                    tracing::info!(backup = %c.id, schedule = %schedule.name, bytes = c.bytes, "backup made");
                    if let Err(e) = backups.prune("system", false).await {
                        tracing::warn!(error = %e, "pruning backups failed");
                    }
                }
                Err(e) => tracing::warn!(schedule = %schedule.name, error = %e, "backup failed; retrying later"),
            }
        }
        if let Some(every) = settings.drill_every {
            match store.drills(50).await {
                Ok(drills) => {
                    let last = drills.first().map(|d| at(d.started_at));
                    let success = drills.iter().find(|d| d.outcome == "success").map(|d| at(d.started_at));
                    if is_due(When::Every(every), success, last, since, now) {
                        match backups.drill("system", None).await {
                            Ok(d) => tracing::info!(drill = %d.id, outcome = %d.outcome, "backup drill done"),
                            Err(e) => tracing::warn!(error = %e, "backup drill could not be recorded"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "backup scheduler: cannot read past drills"),
            }
        }
        renewer.abort();
        let _ = store.release_sink_lease(BACKUP_LEASE, &holder).await;
    }
}

/// The background job that finishes key rotations: re-wraps record keys
/// under each organisation's current key version. `keys rotate` does this
/// at once; the job catches anything an interrupted rotation left, and
/// every instance may run it (each row changes only once).
async fn rewrap_job(engine: Engine) {
    let mut tick = tokio::time::interval(REWRAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(orgs) = engine.list_orgs().await else { continue };
        for org in orgs {
            match engine.rewrap_record_keys(org.id).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(org = %org.id, rewrapped = n, "record keys re-wrapped under the current key"),
                // Destroyed or unavailable keys: nothing to do now.
                Err(e) => tracing::debug!(org = %org.id, error = %e, "record-key re-wrap skipped"),
            }
        }
    }
}

/// A server accepting connections.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    ca_file: Option<PathBuf>,
    backend: &'static str,
    grace: Duration,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Background jobs, stopped with the server.
    jobs: tokio::task::JoinHandle<()>,
    /// This instance's lease holder id and the sinks it delivers to.
    sink_leases: (String, Vec<String>),
    engine: Engine,
}

impl Running {
    /// The address actually bound (the port is chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The generated CA that clients must trust, if the certificate was
    /// generated.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The engine the server runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stops accepting connections; in-flight requests get the configured
    /// grace period to finish.
    pub fn begin_shutdown(&self) {
        tracing::info!(grace_secs = self.grace.as_secs(), "shutting down");
        self.handle.graceful_shutdown(Some(self.grace));
    }

    /// Waits for the server to stop, then closes the store.
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.task.await;
        self.jobs.abort();
        // Wait for the jobs to stop (a batch in flight is dropped and sent
        // again later), then hand the sinks over.
        let _ = self.jobs.await;
        let (holder, sinks) = &self.sink_leases;
        self.engine.release_sink_leases(sinks, holder).await;
        self.engine.shutdown().await;
        served.context("server task failed")?.context("server stopped with an error")?;
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until `signal` completes, then shuts down gracefully. Returns
    /// early, with the error, if the server stops by itself.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => self.shutdown().await,
            served = &mut self.task => {
                self.engine.shutdown().await;
                served.context("server task failed")?.context("server stopped with an error")?;
                anyhow::bail!("the server stopped without being asked to")
            }
        }
    }

    /// Graceful shutdown from start to end.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.begin_shutdown();
        self.wait().await
    }
}

/// Opens the store, sets up TLS, binds the listener and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with_routes(config, Router::new()).await
}

/// `start`, with `extra` routes mounted beside the API's, behind the same
/// layers; tests use it to serve a route of their own.
pub async fn start_with_routes(config: &Config, extra: Router<AppState>) -> anyhow::Result<Running> {
    let engine = open_engine(config, config.dev).await?;
    let mut sinks = Vec::new();
    for settings in &config.audit_sinks {
        sinks.push(engine::Sink::open(settings.clone()).await.context("audit sinks")?);
    }
    // A configuration change shows in the platform's trail as a new
    // fingerprint of the effective, redacted configuration.
    let fingerprint = hex::encode(&crypto::sha256(config.render_redacted().as_bytes())[..8]);
    engine.record_config(&fingerprint).await.context("audit trail")?;
    let backend = engine.backend_name();
    let tls = tls::load(&tls_source(config), &config.data_dir).context("tls")?;

    let listener =
        std::net::TcpListener::bind(config.listen).with_context(|| format!("listen: cannot bind {}", config.listen))?;
    listener.set_nonblocking(true).context("listen")?;
    let local_addr = listener.local_addr().context("listen")?;

    let state = AppState { engine: engine.clone(), metrics: observe::metrics_handle() };
    let router = with_layers(api::routes(&state).merge(extra).with_state(state), &config.http);
    let handle = Handle::new();
    let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls.server_config))
        .context("listen")?
        .handle(handle.clone());
    let task =
        tokio::spawn(async move { server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await });
    tracing::info!(address = %local_addr, backend, "serving HTTPS");
    let holder = uuid::Uuid::new_v4().to_string();
    let sink_names = sinks.iter().map(|s| s.name().to_owned()).collect();
    let backups = open_backups(config, &engine).await?;
    let jobs = tokio::spawn(background_jobs(
        engine.clone(),
        sinks,
        holder.clone(),
        (backups, config.backup.clone()),
        config.retention_sweep,
    ));
    Ok(Running {
        jobs,
        sink_leases: (holder, sink_names),
        local_addr,
        ca_file: tls.ca_file,
        backend,
        grace: config.http.shutdown_grace,
        handle,
        task,
        engine,
    })
}
