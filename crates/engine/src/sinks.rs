//! Off-host audit sinks: every chained entry and every checkpoint shipped,
//! in chain order, to a JSON-lines file, a syslog server (RFC 5424 over
//! TCP, optionally TLS), an HTTP webhook or S3 objects; several at once.
//!
//! Delivery runs beside requests, never in them: a sink reads what the
//! store already holds, after a cursor kept in the store per sink and
//! chain, and moves the cursor only once the sink has taken a batch. A sink
//! that is down is retried with doubling back-off, and picks up where it
//! stopped. Delivery is at least once: a batch may be sent again after a
//! failure or a crash, so every record carries its chain position (`id`)
//! for the receiver to drop repeats. One instance at a time delivers to a
//! sink, under a lease in the store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use audit::export::SyslogOrigin;
use audit::export::{checkpoint_record, entry_record, syslog_frame};
use serde_json::Value;
use store::{BlobConfig, BlobKey, BlobStore, SinkCursor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::Engine;
use crate::audit::{checkpoint_of, from_row, now_micros};

/// How long one instance holds a sink before another may take it over.
const LEASE: Duration = Duration::from_secs(60);
/// Batches sent in one round before the lease is renewed.
const BATCHES_PER_ROUND: usize = 20;
/// The longest a connection, request or write to a sink may take.
const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// One configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// Unique per deployment; the delivery cursor is kept under it, so a
    /// renamed sink starts again from the first entry.
    pub name: String,
    pub target: SinkTarget,
    /// Records per batch (a webhook request, an S3 object, a file write).
    pub batch: usize,
    /// How often the store is polled for new entries.
    pub poll: Duration,
    /// The longest wait between retries of a failing sink.
    pub retry_max: Duration,
}

/// Where a sink ships to.
#[derive(Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// A JSON-lines file on this host, appended and synced per batch
    /// (`0600` when created). Reopened per batch, so it may be rotated.
    File { path: PathBuf },
    /// A syslog server: RFC 5424 messages in octet-counting frames over
    /// TCP, or TLS (RFC 5425) when `tls` is set.
    Syslog { host: String, port: u16, tls: Option<TlsTrust>, origin: SyslogOrigin },
    /// An HTTPS endpoint taking `{"records": [...]}` by POST; any 2xx
    /// answer takes the batch. With a secret, each request carries
    /// `Strongroom-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    Webhook { url: String, secret: Option<Arc<Zeroizing<Vec<u8>>>>, ca_file: Option<PathBuf> },
    /// Objects in a bucket (or a local folder), one per batch, named by
    /// chain and positions: `audit/<chain>/entries/<first>-<last>`.
    Objects { config: BlobConfig },
}

impl std::fmt::Debug for SinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path } => f.debug_struct("File").field("path", path).finish(),
            Self::Syslog { host, port, tls, .. } => {
                f.debug_struct("Syslog").field("host", host).field("port", port).field("tls", &tls.is_some()).finish()
            }
            // The URL may carry a token; only its origin is shown.
            Self::Webhook { url, secret, .. } => f
                .debug_struct("Webhook")
                .field("origin", &url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default())
                .field("signed", &secret.is_some())
                .finish(),
            Self::Objects { config } => f.debug_struct("Objects").field("config", config).finish(),
        }
    }
}

/// Whom a TLS connection to a sink trusts: the web roots, plus a CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsTrust {
    pub ca_file: Option<PathBuf>,
}

/// Why a sink did not take a batch. Messages name the sink's answer, never
/// a record, a secret or a URL's path or query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("sink {sink}: {reason}")]
    Setup { sink: String, reason: String },
    #[error("sink {sink}: {reason}")]
    Unreachable { sink: String, reason: String },
    #[error("sink {sink} answered HTTP {status}")]
    Refused { sink: String, status: u16 },
    #[error("sink {sink}: reading the trail failed: {source}")]
    Store {
        sink: String,
        #[source]
        source: store::StoreError,
    },
}

/// A sink ready to deliver: its settings and the clients it needs.
#[derive(Debug)]
pub struct Sink {
    settings: SinkSettings,
    transport: Transport,
}

enum Transport {
    File(PathBuf),
    Syslog { host: String, port: u16, tls: Option<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>)> },
    Webhook { client: reqwest::Client, url: String },
    Objects(BlobStore),
}

/// What a batch holds: entries or checkpoints of one chain, between two
/// positions.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Entries,
    Checkpoints,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File(_) => "file",
            Self::Syslog { tls: None, .. } => "syslog",
            Self::Syslog { tls: Some(_), .. } => "syslog over TLS",
            Self::Webhook { .. } => "webhook",
            Self::Objects(_) => "objects",
        })
    }
}

impl Sink {
    /// Builds the sink's clients; nothing is sent yet.
    pub async fn open(settings: SinkSettings) -> Result<Self, SinkError> {
        let setup = |reason: String| SinkError::Setup { sink: settings.name.clone(), reason };
        let transport = match &settings.target {
            SinkTarget::File { path } => Transport::File(path.clone()),
            SinkTarget::Syslog { host, port, tls, .. } => {
                let tls = match tls {
                    None => None,
                    Some(trust) => {
                        let config = kms::client_tls_config(trust.ca_file.as_deref()).map_err(setup)?;
                        let name = rustls_pki_types::ServerName::try_from(host.clone())
                            .map_err(|_| setup(format!("{host:?} is not a DNS name or IP address")))?;
                        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
                    }
                };
                Transport::Syslog { host: host.clone(), port: *port, tls }
            }
            SinkTarget::Webhook { url, ca_file, .. } => {
                let config = kms::client_tls_config(ca_file.as_deref()).map_err(setup)?;
                let client = reqwest::Client::builder()
                    .tls_backend_preconfigured(config)
                    .timeout(IO_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| setup(e.to_string()))?;
                Transport::Webhook { client, url: url.clone() }
            }
            SinkTarget::Objects { config } => {
                Transport::Objects(BlobStore::open(config).await.map_err(|e| setup(e.to_string()))?)
            }
        };
        Ok(Self { settings, transport })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Sends one batch; `Ok` only once the sink has taken all of it.
    async fn send(&self, chain: &str, kind: Kind, first: i64, last: i64, records: &[Value]) -> Result<(), SinkError> {
        let name = &self.settings.name;
        let unreachable = |reason: String| SinkError::Unreachable { sink: name.clone(), reason };
        match &self.transport {
            Transport::File(path) => {
                let text = json_lines(records);
                match tokio::time::timeout(IO_TIMEOUT, append_synced(path.clone(), text)).await {
                    Ok(done) => done.map_err(|e| unreachable(format!("{}: {e}", path.display()))),
                    Err(_) => Err(unreachable(format!("{}: no write in {} s", path.display(), IO_TIMEOUT.as_secs()))),
                }
            }
            Transport::Syslog { host, port, tls } => {
                let SinkTarget::Syslog { origin, .. } = &self.settings.target else {
                    return Err(unreachable("not a syslog sink".into()));
                };
                let mut frames = Vec::new();
                for r in records {
                    frames.extend(syslog_frame(origin, r));
                }
                let delivered = async {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    tcp.set_nodelay(true)?;
                    match tls {
                        None => send_and_close(tcp, &frames).await,
                        Some((connector, server)) => {
                            let stream = connector.connect(server.clone(), tcp).await?;
                            send_and_close(stream, &frames).await
                        }
                    }
                };
                match tokio::time::timeout(IO_TIMEOUT, delivered).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(unreachable(format!("{host}:{port}: {e}"))),
                    Err(_) => Err(unreachable(format!("{host}:{port}: no answer in {} s", IO_TIMEOUT.as_secs()))),
                }
            }
            Transport::Webhook { client, url } => {
                let body = serde_json::to_vec(&serde_json::json!({ "records": records }))
                    .map_err(|e| unreachable(e.to_string()))?;
                let mut request = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("strongroom-batch", format!("{chain}/{}/{first}-{last}", kind.word()));
                if let SinkTarget::Webhook { secret: Some(secret), .. } = &self.settings.target {
                    let mac = crypto::hmac_sha256(secret.as_slice(), &body);
                    request = request.header("strongroom-signature", format!("sha256={}", hex::encode(mac)));
                }
                match request.body(body).send().await {
                    Ok(res) if res.status().is_success() => Ok(()),
                    Ok(res) => Err(SinkError::Refused { sink: name.clone(), status: res.status().as_u16() }),
                    // reqwest's message names the URL; only the kind of failure is kept.
                    Err(e) => Err(unreachable(describe_http_error(&e))),
                }
            }
            Transport::Objects(blobs) => {
                let text = json_lines(records);
                let key = object_key(chain, kind, first, last).map_err(|e| unreachable(e.to_string()))?;
                let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(text)) });
                match tokio::time::timeout(IO_TIMEOUT, blobs.put(&key, Box::pin(body))).await {
                    Ok(done) => done.map(|_| ()).map_err(|e| unreachable(e.to_string())),
                    Err(_) => Err(unreachable(format!("no answer in {} s", IO_TIMEOUT.as_secs()))),
                }
            }
        }
    }
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Entries => "entries",
            Kind::Checkpoints => "checkpoints",
        }
    }
}

/// Records as JSON lines, each ending in a newline.
fn json_lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// `audit/<chain>/<kind>/<first>-<last>`, positions zero-padded so that
/// names sort in chain order; `org:<uuid>` becomes `org-<uuid>`.
fn object_key(chain: &str, kind: Kind, first: i64, last: i64) -> Result<BlobKey, store::BlobError> {
    BlobKey::new(&format!("audit/{}/{}/{first:020}-{last:020}", chain.replace(':', "-"), kind.word()))
}

fn describe_http_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer in {} s", IO_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Appends `text` to the file at `path` (created `0600`) and syncs it.
async fn append_synced(path: PathBuf, text: String) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::fs::PermissionsExt;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        // A file others can read (made by someone else, or loosened) gets
        // nothing more.
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(std::io::Error::other(format!(
                "open to other users (mode {:04o}); run chmod 600 on it",
                mode & 0o7777
            )));
        }
        file.write_all(text.as_bytes())?;
        file.sync_data()
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Writes every frame, closes the sending side and waits for the server to
/// close its own: a syslog server closes only after it has read all that
/// was sent, so a clean end means the batch was taken.
async fn send_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, frames: &[u8]) -> std::io::Result<()> {
    stream.write_all(frames).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    let mut rest = [0u8; 512];
    loop {
        match stream.read(&mut rest).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // Some servers reset rather than close once they have read all.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

impl Engine {
    /// Sends a sink what it has not taken yet, up to a bounded number of
    /// batches; returns how many records were delivered (0: it is up to
    /// date).
    ///
    /// With a `holder`, the sink's lease is renewed before every batch and
    /// the round stops as soon as another instance holds it, so two
    /// instances never send at once while the lease is respected.
    pub async fn deliver_to_sink(&self, sink: &Sink, holder: Option<&str>) -> Result<usize, SinkError> {
        let name = sink.name();
        let store_err = |source| SinkError::Store { sink: name.to_owned(), source };
        let batch = u32::try_from(sink.settings.batch.clamp(1, 10_000)).unwrap_or(500);
        let mut cursors: HashMap<String, SinkCursor> =
            self.store.sink_cursors(name).await.map_err(store_err)?.into_iter().map(|c| (c.chain.clone(), c)).collect();
        let mut delivered = 0;
        let mut batches = 0;
        for (chain, size, _) in self.store.audit_chains().await.map_err(store_err)? {
            let mut cursor =
                cursors.remove(&chain).unwrap_or(SinkCursor { chain: chain.clone(), entry_seq: 0, checkpoint_size: 0 });
            while cursor.entry_seq < size && batches < BATCHES_PER_ROUND {
                if !self.renew_lease(sink, holder).await.map_err(store_err)? {
                    return Ok(delivered);
                }
                let rows = self.store.audit_entries(&chain, cursor.entry_seq, batch).await.map_err(store_err)?;
                let (Some(first), Some(last)) = (rows.first().map(|r| r.seq), rows.last().map(|r| r.seq)) else {
                    break;
                };
                let records: Vec<Value> = rows.into_iter().map(|r| entry_record(&from_row(r))).collect();
                sink.send(&chain, Kind::Entries, first, last, &records).await?;
                cursor.entry_seq = last;
                self.store.advance_sink_cursor(name, &cursor).await.map_err(store_err)?;
                delivered += records.len();
                batches += 1;
            }
            // A checkpoint follows the entries it covers.
            while batches < BATCHES_PER_ROUND {
                if !self.renew_lease(sink, holder).await.map_err(store_err)? {
                    return Ok(delivered);
                }
                let rows =
                    self.store.checkpoints_after(&chain, cursor.checkpoint_size, batch).await.map_err(store_err)?;
                let rows: Vec<_> = rows.into_iter().take_while(|c| c.size <= cursor.entry_seq).collect();
                let (Some(first), Some(last)) = (rows.first().map(|c| c.size), rows.last().map(|c| c.size)) else {
                    break;
                };
                let records: Vec<Value> = rows.into_iter().map(|c| checkpoint_record(&checkpoint_of(c))).collect();
                sink.send(&chain, Kind::Checkpoints, first, last, &records).await?;
                cursor.checkpoint_size = last;
                self.store.advance_sink_cursor(name, &cursor).await.map_err(store_err)?;
                delivered += records.len();
                batches += 1;
            }
        }
        if delivered > 0 {
            metrics::counter!("strongroom_audit_sink_records_total", "sink" => name.to_owned())
                .increment(delivered as u64);
        }
        Ok(delivered)
    }

    /// Takes or renews `holder`'s lease on the sink (always true without a
    /// holder).
    async fn renew_lease(&self, sink: &Sink, holder: Option<&str>) -> Result<bool, store::StoreError> {
        let Some(holder) = holder else { return Ok(true) };
        let now = now_micros();
        let until = now.saturating_add(i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX));
        self.store.take_sink_lease(sink.name(), holder, now, until).await
    }

    /// Gives up this instance's leases on the named sinks, so that another
    /// instance (or this one, restarted) takes over at once.
    pub async fn release_sink_leases(&self, sinks: &[String], holder: &str) {
        for sink in sinks {
            if let Err(e) = self.store.release_sink_lease(sink, holder).await {
                tracing::warn!(sink, error = %e, "audit sink lease not released; it expires by itself");
            }
        }
    }

    /// Delivers to a sink for as long as the task runs: polls, delivers
    /// while this instance (`holder`) holds the sink's lease, and backs off
    /// (doubling, up to `retry_max`) while the sink fails.
    pub async fn run_sink(&self, sink: Sink, holder: String) {
        let poll = sink.settings.poll.max(Duration::from_millis(50));
        let retry_max = sink.settings.retry_max.max(poll);
        let mut backoff = poll;
        // When this instance last took or renewed the lease here: an idle
        // holder renews it every quarter lease, not on every poll (each
        // batch renews it too).
        let mut renewed: Option<tokio::time::Instant> = None;
        loop {
            let fresh = renewed.is_some_and(|at| at.elapsed() < LEASE / 4);
            let taken = if fresh { Ok(true) } else { self.renew_lease(&sink, Some(&holder)).await };
            match taken {
                Ok(true) => {
                    if !fresh {
                        renewed = Some(tokio::time::Instant::now());
                    }
                }
                // Another instance delivers; look again when its lease may end.
                Ok(false) => {
                    renewed = None;
                    tokio::time::sleep(LEASE / 4).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(sink = sink.name(), error = %e, "audit sink lease failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(retry_max);
                    continue;
                }
            }
            match self.deliver_to_sink(&sink, Some(&holder)).await {
                // A round cut short because the lease went elsewhere also
                // ends here; the next turn finds out.
                Ok(0) => {
                    backoff = poll;
                    tokio::time::sleep(poll).await;
                }
                Ok(_) => backoff = poll,
                Err(e) => {
                    metrics::counter!("strongroom_audit_sink_failures_total", "sink" => sink.name().to_owned())
                        .increment(1);
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "audit sink delivery failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(retry_max);
                }
            }
        }
    }
}
