//! Test helpers: `spawn_app(Backend)` starts Strongroom in-process on port 0
//! over a fresh SQLite file or a fresh PostgreSQL database, with a client
//! that trusts the generated CA; `TestDb` gives a fresh store alone.
//!
//! PostgreSQL tests need `STRONGROOM_TEST_DATABASE_URL`, the admin URL of a
//! throwaway cluster that `scripts/test` starts. Without it they fail; they
//! never skip.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use server::config::{Config, Overrides};
use tempfile::TempDir;

/// The environment variable naming the throwaway PostgreSQL cluster.
pub const PG_ENV: &str = "STRONGROOM_TEST_DATABASE_URL";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from an async body taking a `Backend`:
///
/// ```ignore
/// backend_tests! {
///     async fn serves_health(backend) { ... }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: $crate::Backend) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { run($crate::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { run($crate::Backend::Postgres).await }
        }
    )*};
}

/// A fresh, empty store: a temporary data directory, plus a new database in
/// the throwaway cluster for PostgreSQL.
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    pub dir: TempDir,
    pub database_url: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("strongroom-test-").tempdir()?;
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(create_pg_database().await?),
        };
        Ok(Self { backend, dir, database_url })
    }

    /// The data directory (the SQLite file, TLS material, blobs, backups).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Overrides that point a configuration at this store, listening on a
    /// free loopback port.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: Some(self.data_dir()),
            database_url: self.database_url.clone(),
            listen: Some("127.0.0.1:0".into()),
            // Test deployments keep their unseal key in their own temporary
            // data directory.
            dev: true,
            ..Overrides::default()
        }
    }

    /// A validated configuration for this store.
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::load(&self.overrides()).map_err(anyhow::Error::from)
    }

    /// Opens the deployment's engine directly, bypassing HTTP (creating
    /// the deployment on first use).
    pub async fn open_engine(&self) -> anyhow::Result<engine::Engine> {
        server::open_engine(&self.config()?, true).await
    }

    /// Opens the store directly, bypassing HTTP and the engine.
    pub async fn open_store(&self) -> anyhow::Result<store::Store> {
        let config = self.config()?;
        server::prepare_data_dir(&config.data_dir)?;
        let kms = server::keys::open_kms(&config, true).await?;
        server::open_store(&config, &kms).await
    }

    /// Connection options for the raw SQLite file, with its key: what
    /// someone holding both the file and the key would have.
    pub async fn raw_sqlite_options(&self) -> anyhow::Result<sqlx::sqlite::SqliteConnectOptions> {
        let config = self.config()?;
        let kms = server::keys::open_kms(&config, false).await?;
        let key = server::keys::database_key(&config, &kms).await?;
        Ok(store::sqlite_connect_options(&server::keys::database_file(&config), &key))
    }
}

impl TestDb {
    /// Runs one statement straight against the database, as someone with
    /// database access would; returns the rows affected.
    pub async fn raw_sql(&self, sql: &str) -> u64 {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let done = match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
                sqlx::query(sql).execute(&mut conn).await.map(|d| d.rows_affected())
            }
            None => {
                let options = self.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("{e}"));
                sqlx::query(sql).execute(&mut conn).await.map(|d| d.rows_affected())
            }
        };
        done.unwrap_or_else(|e| panic!("raw sql: {e}"))
    }

    /// A UUID as a literal of this backend's SQL.
    pub fn uuid_literal(&self, id: &str) -> String {
        let id = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        match self.backend {
            Backend::Sqlite => format!("X'{}'", id.simple()),
            Backend::Postgres => format!("'{id}'::uuid"),
        }
    }

    /// Every row of every table, decrypted with the deployment's own keys
    /// where the database is page-encrypted: what someone with the
    /// database and its key would see. Table names, then one line per row.
    pub async fn dump_rows(&self) -> Vec<u8> {
        use sqlx::{Connection, Row};
        let mut out = Vec::new();
        match &self.database_url {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
                let tables: Vec<String> =
                    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
                        .fetch_all(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                for t in tables {
                    out.extend_from_slice(format!("-- {t}\n").as_bytes());
                    let sql = format!("SELECT row_to_json(t)::text FROM \"{t}\" t");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    for r in rows {
                        out.extend_from_slice(r.as_bytes());
                        out.push(b'\n');
                    }
                }
            }
            None => {
                let options = self.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("{e}"));
                let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                for t in tables {
                    out.extend_from_slice(format!("-- {t}\n").as_bytes());
                    let sql = format!("SELECT * FROM \"{t}\"");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    for row in rows {
                        for i in 0..row.len() {
                            if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                                out.extend_from_slice(&b);
                            } else if let Ok(Some(s)) = row.try_get::<Option<String>, _>(i) {
                                out.extend_from_slice(s.as_bytes());
                            } else if let Ok(Some(n)) = row.try_get::<Option<i64>, _>(i) {
                                out.extend_from_slice(n.to_string().as_bytes());
                            } else if let Ok(Some(n)) = row.try_get::<Option<f64>, _>(i) {
                                out.extend_from_slice(n.to_string().as_bytes());
                            }
                            out.push(b'|');
                        }
                        out.push(b'\n');
                    }
                }
            }
        }
        out
    }
}

/// Every file under a directory, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out
}

/// Creates a uniquely named database in the throwaway cluster and returns
/// its URL.
async fn create_pg_database() -> anyhow::Result<String> {
    use sqlx::Connection;
    let admin = std::env::var(PG_ENV).with_context(|| {
        format!("PostgreSQL tests need {PG_ENV}: run scripts/test, which starts a throwaway cluster")
    })?;
    let name = format!("sr_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .with_context(|| format!("cannot reach the test cluster named by {PG_ENV}"))?;
    // The name is generated above from hex digits only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// A running in-process server and a client that trusts it.
#[derive(Debug)]
pub struct TestApp {
    pub db: TestDb,
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    config: Config,
    running: Option<server::Running>,
}

/// Starts the app on a fresh store of the given backend.
pub async fn spawn_app(backend: Backend) -> TestApp {
    match spawn_app_with(backend, |_| {}).await {
        Ok(app) => app,
        Err(e) => panic!("spawn_app({backend:?}) failed: {e:#}"),
    }
}

/// Starts the app with the configuration adjusted by `tweak`.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Overrides)) -> anyhow::Result<TestApp> {
    spawn_app_on(TestDb::new(backend).await?, tweak).await
}

/// Starts the app on an existing test store (one restored from a backup).
pub async fn spawn_app_on(db: TestDb, tweak: impl FnOnce(&mut Overrides)) -> anyhow::Result<TestApp> {
    let mut overrides = db.overrides();
    tweak(&mut overrides);
    let config = Config::load(&overrides)?;
    let running = server::start(&config).await?;
    let ca = running.ca_file().context("a generated CA")?.to_owned();
    let client = client_trusting(&ca)?;
    Ok(TestApp { db, addr: running.local_addr(), client, config, running: Some(running) })
}

impl TestApp {
    /// `https://localhost:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        match self.client.get(self.url(path)).send().await {
            Ok(r) => r,
            Err(e) => panic!("GET {path}: {e:#}"),
        }
    }

    /// The generated CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.db.data_dir().join("tls/ca.pem")
    }

    /// The engine the server runs on, for seeding and inspection.
    pub fn engine(&self) -> &engine::Engine {
        match &self.running {
            Some(r) => r.engine(),
            None => panic!("the app was shut down"),
        }
    }

    /// Creates an account with a password.
    pub async fn create_user(&self, email: &str, password: &str, operator: bool) -> store::UserRecord {
        let new = engine::NewUser {
            email: domain::Email::parse(email).unwrap_or_else(|e| panic!("{email}: {e}")),
            display_name: domain::DisplayName::parse("Test User").unwrap_or_else(|e| panic!("{e}")),
            is_operator: operator,
        };
        match self.engine().create_user(&new, Some(password)).await {
            Ok(u) => u,
            Err(e) => panic!("create_user {email}: {e}"),
        }
    }

    /// Creates an organisation.
    pub async fn create_org(&self, slug: &str) -> domain::Organisation {
        let new = domain::NewOrganisation {
            slug: domain::OrgSlug::parse(slug).unwrap_or_else(|e| panic!("{slug}: {e}")),
            name: domain::OrgName::parse(slug).unwrap_or_else(|e| panic!("{e}")),
        };
        self.engine().create_org(&new).await.unwrap_or_else(|e| panic!("create_org {slug}: {e}"))
    }

    /// Makes a user a member of an organisation.
    pub async fn add_member(&self, org: domain::OrgId, user: domain::UserId, role: domain::Role) {
        let auth = self.engine().authorize_local_admin(domain::PlatformAction::ManageUsers);
        self.engine()
            .put_member_as_operator(&auth, org, user, role)
            .await
            .unwrap_or_else(|e| panic!("add_member: {e}"));
    }

    /// Signs in and returns a client carrying the session cookie.
    pub async fn login(&self, email: &str, password: &str) -> UserClient {
        let res = self
            .client
            .post(self.url("/v1/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("login: {e}"));
        let status = res.status();
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        match cookie {
            Some(cookie) if status.is_success() => {
                UserClient { client: self.client.clone(), base: self.url(""), cookie }
            }
            _ => panic!("login {email} failed: {status} {}", res.text().await.unwrap_or_default()),
        }
    }

    /// A new user with a unique address, made a member of `org` with
    /// `role`, signed in with two-factor authentication: the record, the
    /// address and the client.
    pub async fn signed_in_member(
        &self,
        org: domain::OrgId,
        role: domain::Role,
        password: &str,
    ) -> (store::UserRecord, String, UserClient) {
        let email = format!("{}-{}@example.com", role.as_str(), uuid::Uuid::new_v4().simple());
        let user = self.create_user(&email, password, false).await;
        self.add_member(org, user.id, role).await;
        let (client, _, _) = self.login_with_mfa(&email, password).await;
        (user, email, client)
    }

    /// Signs in, enrols TOTP and confirms it: a client whose session passed
    /// two-factor authentication, with the TOTP secret and recovery codes.
    pub async fn login_with_mfa(&self, email: &str, password: &str) -> (UserClient, crypto::TotpSecret, Vec<String>) {
        let client = self.login(email, password).await;
        let enrol: serde_json::Value =
            client.send(reqwest::Method::POST, "/v1/auth/mfa/totp", None).await.json().await.unwrap_or_default();
        let secret = crypto::TotpSecret::from_base32(enrol["secret"].as_str().unwrap_or(""))
            .unwrap_or_else(|| panic!("enrolment gave no secret: {enrol}"));
        let code = secret.code_at(unix_now());
        let res = client
            .send(reqwest::Method::POST, "/v1/auth/mfa/totp/confirm", Some(serde_json::json!({ "code": code })))
            .await;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        assert!(status.is_success(), "confirm: {status} {body}");
        let codes = body["recovery_codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        (client, secret, codes)
    }

    /// Stops the server gracefully and starts it again on the same store
    /// and configuration (on a new port).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(r) = self.running.take() {
            r.shutdown().await?;
        }
        let running = server::start(&self.config).await?;
        self.addr = running.local_addr();
        self.running = Some(running);
        Ok(())
    }

    /// Stops the server and starts it again on the same store with the
    /// configuration loaded afresh, adjusted by `tweak` (a changed config
    /// file is read again).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Overrides)) -> anyhow::Result<()> {
        let mut overrides = self.db.overrides();
        tweak(&mut overrides);
        self.config = Config::load(&overrides)?;
        self.restart().await
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(r) => r.shutdown().await,
            None => Ok(()),
        }
    }
}

/// A rustls client configuration (ring provider, default versions) that
/// trusts only the given CA.
pub fn rustls_client_config(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file)? {
        roots.add(cert?)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTPS client that trusts only the given CA.
pub fn client_trusting(ca_file: &Path) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(rustls_client_config(ca_file)?).https_only(true).build()?)
}

/// A client for plain `http://` URLs, to show nothing answers there.
pub fn plain_http_client() -> reqwest::Client {
    // Either this process installed ring already, or the call installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A TCP forwarder in front of a real peer, so a test can take the peer
/// away (an outage) and bring it back on the same address.
#[derive(Debug)]
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts forwarding a free loopback port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Self { addr, target, task: Some(tokio::spawn(forward(listener, target))) })
    }

    /// Stops accepting and cuts every open connection.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Starts forwarding again on the same address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.task = Some(tokio::spawn(forward(listener, self.target)));
        Ok(())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn forward(listener: tokio::net::TcpListener, target: std::net::SocketAddr) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        conns.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// A signed-in user's client: every request carries their session cookie.
#[derive(Debug, Clone)]
pub struct UserClient {
    pub client: reqwest::Client,
    base: String,
    /// `__Host-strongroom_session=...`
    pub cookie: String,
}

impl UserClient {
    /// The same session, against the app where it runs now (after a
    /// restart, on a new port).
    pub fn on(&self, app: &TestApp) -> UserClient {
        UserClient { client: app.client.clone(), base: app.url(""), cookie: self.cookie.clone() }
    }

    /// A request with the session cookie.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut req = self.request(method.clone(), path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, None).await
    }
}

/// Seconds since the epoch, for computing TOTP codes.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
