//! TLS for the only listener: rustls limited to TLS 1.3 and TLS 1.2 with
//! ECDHE key exchange and AEAD ciphers; certificates from configuration or a
//! local CA generated on first start.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::TlsSource;

/// How long a generated leaf is valid: under the 366 days that Mozilla's
/// intermediate profile allows.
const LEAF_DAYS: i64 = 365;
/// A generated leaf this close to expiry is replaced at start.
const RENEW_BEFORE_DAYS: i64 = 30;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no certificate found in PEM file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key ({reason})")]
    BadKey { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("could not generate the local certificate authority: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The server's TLS configuration and, when generated, the CA to trust.
#[derive(Debug)]
pub struct TlsMaterial {
    pub server_config: Arc<rustls::ServerConfig>,
    /// The generated CA certificate clients must trust; `None` when the
    /// certificate came from configuration.
    pub ca_file: Option<PathBuf>,
}

/// ring's provider reduced to what Strongroom speaks: TLS 1.3 suites, TLS
/// 1.2 suites with ECDHE and an AEAD only, and three key-exchange groups.
pub fn provider() -> CryptoProvider {
    use ring::cipher_suite as cs;
    use ring::kx_group as kx;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx::X25519, kx::SECP256R1, kx::SECP384R1],
        ..ring::default_provider()
    }
}

/// Loads or generates the certificate and builds the server configuration.
pub fn load(source: &TlsSource, data_dir: &Path) -> Result<TlsMaterial, TlsError> {
    let (chain, key, ca_file) = match source {
        TlsSource::Files { cert_file, key_file } => (read_chain(cert_file)?, read_key(key_file)?, None),
        TlsSource::Generated { names } => {
            let dir = data_dir.join("tls");
            ensure_generated(&dir, names)?;
            let ca = dir.join("ca.pem");
            (read_chain(&dir.join("server.pem"))?, read_key(&dir.join("server.key"))?, Some(ca))
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial { server_config: Arc::new(config), ca_file })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadKey { path: path.to_owned(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey { path: path.to_owned(), reason: e.to_string() })
}

/// The record kept beside a generated leaf: when it expires and for which
/// names, so a start can tell whether to replace it.
fn meta_line(not_after: OffsetDateTime, names: &[String]) -> String {
    format!("{} {}\n", not_after.unix_timestamp(), names.join(","))
}

/// Generates a CA and a leaf it signs, unless a current one for the same
/// names exists. The CA's private key is never written: it signs this one
/// leaf and is dropped, so it can mint nothing else.
fn ensure_generated(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    let meta_path = dir.join("server.meta");
    if let Ok(meta) = fs::read_to_string(&meta_path) {
        let mut parts = meta.trim().splitn(2, ' ');
        let not_after = parts.next().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        let same_names = parts.next() == Some(names.join(",").as_str());
        let fresh =
            not_after - OffsetDateTime::now_utc().unix_timestamp() > Duration::days(RENEW_BEFORE_DAYS).whole_seconds();
        let complete = ["ca.pem", "server.pem", "server.key"].iter().all(|f| dir.join(f).is_file());
        if same_names && fresh && complete {
            return Ok(());
        }
        tracing::warn!(
            "replacing the generated TLS certificate (expiring, renamed or incomplete); clients must trust the new CA"
        );
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;

    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "Strongroom local CA");
    ca.distinguished_name.push(DnType::OrganizationName, "Strongroom");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::hours(1);
    ca.not_after = now + Duration::days(LEAF_DAYS + 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(DnType::CommonName, names.first().map_or("localhost", String::as_str));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - Duration::hours(1);
    leaf.not_after = now + Duration::days(LEAF_DAYS) - Duration::hours(2);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    write_file(&dir.join("server.key"), leaf_key.serialize_pem().as_bytes(), 0o600)?;
    // The chain sent is the leaf alone: clients hold the CA as their anchor.
    write_file(&dir.join("server.pem"), leaf_cert.pem().as_bytes(), 0o644)?;
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&meta_path, meta_line(leaf.not_after, names).as_bytes(), 0o644)?;
    tracing::info!(ca = %dir.join("ca.pem").display(), "generated a local CA and server certificate");
    Ok(())
}

/// Writes a file whole, with the given mode, replacing any old one.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_speaks_only_ecdhe_aead_suites() {
        for suite in provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"), "unexpected suite {name}");
            assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name}");
        }
    }

    #[test]
    fn generated_material_is_reused_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let dir = dir.as_ref().map(|d| d.path().to_owned()).unwrap_or_default();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = load(&TlsSource::Generated { names: names.clone() }, &dir);
        assert!(first.as_ref().is_ok_and(|m| m.ca_file.is_some()), "{first:?}");
        let ca1 = fs::read(dir.join("tls/ca.pem")).unwrap_or_default();
        let again = load(&TlsSource::Generated { names }, &dir);
        assert!(again.is_ok());
        assert_eq!(fs::read(dir.join("tls/ca.pem")).unwrap_or_default(), ca1, "CA reused");
        let mode = fs::metadata(dir.join("tls/server.key")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let key_pem = fs::read_to_string(dir.join("tls/server.key")).unwrap_or_default();
        let listing: Vec<_> =
            fs::read_dir(dir.join("tls")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert_eq!(listing.len(), 4, "ca.pem, server.pem, server.key, server.meta: {listing:?}");
        assert!(key_pem.contains("PRIVATE KEY"));
    }
}
