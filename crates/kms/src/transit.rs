//! The Vault/OpenBao Transit backend: the root key is a Transit key of type
//! aes256-gcm96 that never leaves the server; wrapping calls `encrypt` and
//! `decrypt` with the encryption context as associated data, and rotation
//! calls `rotate` (old versions keep decrypting).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto::{Key256, KeyContext};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::{KmsError, KmsInfo, WrappedKey};

const BACKEND: &str = "transit";

/// Where the Transit engine is and how to authenticate.
#[derive(Clone)]
pub struct TransitConfig {
    /// For example `https://vault.internal:8200`.
    pub address: String,
    /// The Transit engine's mount path [default: transit].
    pub mount: String,
    /// The Transit key's name.
    pub key: String,
    pub token: Zeroizing<String>,
    /// A CA to trust for the server's certificate, besides the web roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for TransitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("key", &self.key)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// A Transit client.
#[derive(Debug)]
pub struct TransitKms {
    config: TransitConfig,
    client: reqwest::Client,
    /// The newest key version the server reported.
    latest: std::sync::atomic::AtomicU32,
}

fn unavailable(reason: impl Into<String>) -> KmsError {
    KmsError::Unavailable { backend: BACKEND, reason: reason.into() }
}

impl TransitKms {
    /// Builds the client and checks that the key exists and the token may
    /// use it.
    pub async fn open(config: TransitConfig) -> Result<Self, KmsError> {
        let client = http_client(config.ca_file.as_deref())?;
        let kms = Self { config, client, latest: Default::default() };
        kms.latest_version().await?;
        Ok(kms)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/{}/{path}/{}",
            self.config.address.trim_end_matches('/'),
            self.config.mount.trim_matches('/'),
            self.config.key
        )
    }

    /// Sends one request; maps transport failures and 5xx to `Unavailable`,
    /// 401/403 to a configuration error, other 4xx to `Refused`.
    async fn call(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Value, KmsError> {
        let mut req = self.client.request(method, url).header("X-Vault-Token", self.config.token.as_str());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| unavailable(without_url(&e)))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(body),
            401 | 403 => Err(KmsError::Config {
                setting: "kms.transit.token",
                reason: format!("the Transit server refused the token ({status})"),
            }),
            404 => Err(KmsError::Config {
                setting: "kms.transit.key",
                reason: format!("no Transit key {:?} at mount {:?}", self.config.key, self.config.mount),
            }),
            400..=499 => Err(KmsError::Refused { backend: BACKEND }),
            _ => Err(unavailable(format!("the Transit server answered {status}"))),
        }
    }

    async fn latest_version(&self) -> Result<u32, KmsError> {
        let body = self.call(reqwest::Method::GET, self.url("keys"), None).await?;
        let latest = body["data"]["latest_version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| unavailable("unexpected answer to a key read"))?;
        self.latest.store(latest, std::sync::atomic::Ordering::Relaxed);
        Ok(latest)
    }

    pub(crate) async fn wrap(&self, key: &Key256, context: &KeyContext) -> Result<WrappedKey, KmsError> {
        let plaintext = Zeroizing::new(B64.encode(key.expose_for_cipher()));
        let body = json!({ "plaintext": plaintext.as_str(), "associated_data": B64.encode(context.to_aad()) });
        let res = self.call(reqwest::Method::POST, self.url("encrypt"), Some(body)).await?;
        let ct = res["data"]["ciphertext"].as_str().ok_or_else(|| unavailable("no ciphertext in answer"))?;
        Ok(WrappedKey(ct.as_bytes().to_vec()))
    }

    pub(crate) async fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<Key256, KmsError> {
        let ct = std::str::from_utf8(&wrapped.0).map_err(|_| KmsError::Refused { backend: BACKEND })?;
        let body = json!({ "ciphertext": ct, "associated_data": B64.encode(context.to_aad()) });
        let res = self.call(reqwest::Method::POST, self.url("decrypt"), Some(body)).await?;
        let pt = res["data"]["plaintext"].as_str().ok_or(KmsError::Refused { backend: BACKEND })?;
        let mut bytes = Zeroizing::new(B64.decode(pt).map_err(|_| KmsError::Refused { backend: BACKEND })?);
        Ok(Key256::from_slice(&mut bytes)?)
    }

    pub(crate) async fn health(&self) -> Result<(), KmsError> {
        self.latest_version().await.map(drop)
    }

    pub(crate) fn info(&self) -> KmsInfo {
        let v = self.latest.load(std::sync::atomic::Ordering::Relaxed);
        KmsInfo {
            backend: BACKEND,
            key_id: format!("{}/{} v{v} at {}", self.config.mount, self.config.key, self.config.address),
        }
    }

    pub(crate) async fn rotate_root(&self) -> Result<u32, KmsError> {
        let url = format!(
            "{}/v1/{}/keys/{}/rotate",
            self.config.address.trim_end_matches('/'),
            self.config.mount.trim_matches('/'),
            self.config.key
        );
        self.call(reqwest::Method::POST, url, Some(json!({}))).await?;
        self.latest_version().await
    }
}

/// A transport error's text without the URL (which could carry a path the
/// operator considers private).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

/// A TLS client configuration (ring provider, TLS 1.2 and 1.3) trusting
/// the web roots plus the CAs in an optional PEM file. Every outbound TLS
/// connection of Strongroom (key backends, audit sinks) uses it.
pub fn client_tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))? {
            roots.add(cert.map_err(|e| format!("{}: {e}", path.display()))?).map_err(|e| e.to_string())?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTPS client (ring provider) trusting the web roots plus an optional
/// CA, with a short timeout so an outage is noticed quickly.
pub(crate) fn http_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, KmsError> {
    let config_err = |reason: String| KmsError::Config { setting: "kms.transit.ca_file", reason };
    let tls = client_tls_config(ca_file).map_err(config_err)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| config_err(e.to_string()))
}
