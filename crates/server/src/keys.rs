//! Opening the key backend the configuration names, unsealing the local
//! keystore, and the embedded database's SQLCipher key, which is stored
//! wrapped by the root key in `DATA_DIR/keystore/database.key`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto::{KeyContext, KeyPurpose};
use kms::{Kms, LocalKms, UnsealSecret, WrappedKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{Config, KmsBackend};

/// The keystore folder inside the data directory.
pub const KEYSTORE_DIR: &str = "keystore";
const DEV_UNSEAL_FILE: &str = "dev-unseal.key";
const DATABASE_KEY_FILE: &str = "database.key";
const DATABASE_FILE: &str = "strongroom.db";

pub fn keystore_dir(config: &Config) -> PathBuf {
    config.data_dir.join(KEYSTORE_DIR)
}

/// The embedded database file.
pub fn database_file(config: &Config) -> PathBuf {
    config.data_dir.join(DATABASE_FILE)
}

/// Opens the configured key backend. With `create`, a missing local
/// keystore or PKCS#11 root key is created (by `init`, or `serve --dev`);
/// without it, a missing one is an error that says how to create it.
pub async fn open_kms(config: &Config, create: bool) -> anyhow::Result<Kms> {
    match &config.kms.backend {
        KmsBackend::Local { unseal_key_file } => {
            let dir = keystore_dir(config);
            let exists = LocalKms::exists(&dir);
            if !exists && !create {
                bail!(
                    "no keystore in {}: run `strongroom init` first (or `strongroom serve --dev` for a throwaway development deployment)",
                    dir.display()
                );
            }
            let secret = unseal_secret(config, unseal_key_file.as_deref(), !exists)?;
            let kms = if exists { LocalKms::unseal(&dir, &secret)? } else { LocalKms::init(&dir, &secret)? };
            Ok(Kms::Local(kms))
        }
        KmsBackend::Pkcs11 { module, token_label, key_label, pin_file } => {
            let pin = secret_from(pin_file.as_deref(), "STRONGROOM_PKCS11_PIN", "kms.pkcs11.pin_file")?;
            let cfg = kms::Pkcs11Config {
                module: module.clone(),
                token_label: token_label.clone(),
                key_label: key_label.clone(),
                pin,
            };
            let kms = tokio::task::spawn_blocking(move || kms::Pkcs11Kms::open(cfg, create)).await??;
            Ok(Kms::Pkcs11(kms))
        }
        KmsBackend::Transit { address, mount, key, token_file, ca_file } => {
            let token = secret_from(token_file.as_deref(), "STRONGROOM_TRANSIT_TOKEN", "kms.transit.token_file")?;
            let cfg = kms::TransitConfig {
                address: address.clone(),
                mount: mount.clone(),
                key: key.clone(),
                token,
                ca_file: ca_file.clone(),
            };
            Ok(Kms::Transit(kms::TransitKms::open(cfg).await?))
        }
        #[cfg(feature = "aws")]
        KmsBackend::Aws { key_id, region, endpoint } => {
            let cfg = kms::AwsKmsConfig { key_id: key_id.clone(), region: region.clone(), endpoint: endpoint.clone() };
            Ok(Kms::Aws(kms::AwsKms::open(cfg).await?))
        }
        #[cfg(not(feature = "aws"))]
        KmsBackend::Aws { .. } => {
            bail!("kms.backend: this build has no AWS KMS support; build with `--features aws-kms`")
        }
    }
}

/// A secret from a file (preferred) or an environment variable.
fn secret_from(file: Option<&Path>, env: &str, setting: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{setting}: cannot read {}", path.display()))?;
        return Ok(Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Zeroizing::new(v)),
        _ => bail!("{setting}: set it, or the environment variable {env}"),
    }
}

/// What unseals the local keystore: the development key file, a key file,
/// a passphrase variable, or a prompt on a terminal.
fn unseal_secret(config: &Config, key_file: Option<&Path>, creating: bool) -> anyhow::Result<UnsealSecret> {
    if config.dev {
        let path = keystore_dir(config).join(DEV_UNSEAL_FILE);
        warn_dev(&path);
        if !path.exists() {
            let mut bytes = Zeroizing::new([0u8; 32]);
            crypto::random_bytes(bytes.as_mut())?;
            kms::create_private_dir(&keystore_dir(config))?;
            kms::write_private(&path, B64.encode(bytes.as_ref()).as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(UnsealSecret::from_key_file(&path)?);
    }
    if let Some(path) = key_file {
        return Ok(UnsealSecret::from_key_file(path)?);
    }
    if let Ok(p) = std::env::var("STRONGROOM_UNSEAL_PASSPHRASE") {
        return Ok(UnsealSecret::Passphrase(Zeroizing::new(p)));
    }
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(rpassword::prompt_password("Unseal passphrase: ")?);
        if creating {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
            if !crypto::ct_eq(first.as_bytes(), again.as_bytes()) {
                bail!("the passphrases differ");
            }
        }
        return Ok(UnsealSecret::Passphrase(first));
    }
    bail!(
        "the local keystore is sealed: set STRONGROOM_UNSEAL_KEY_FILE (a key file kept outside the data directory) or STRONGROOM_UNSEAL_PASSPHRASE, or run on a terminal to be asked"
    )
}

fn warn_dev(path: &Path) {
    let line = format!(
        "WARNING: development mode. The keystore's unseal key is kept in {}, beside the data it protects: anyone with a copy of the data directory can read everything. Never use --dev for real data.",
        path.display()
    );
    eprintln!("{line}");
    tracing::warn!(unseal_key = %path.display(), "development mode: the unseal key is kept in the data directory");
}

#[derive(Serialize, Deserialize)]
struct DatabaseKeyFile {
    format: u32,
    kms_backend: String,
    kms_key_id: String,
    wrapped: String,
}

fn database_key_context() -> KeyContext {
    KeyContext::deployment(KeyPurpose::DatabaseKey)
}

/// The embedded database's key, unwrapped. A new one is made only when
/// there is no database file yet; a database without its key file is an
/// error, never a reason to make a new key.
pub async fn database_key(config: &Config, kms: &Kms) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let path = keystore_dir(config).join(DATABASE_KEY_FILE);
    if !path.exists() {
        if database_file(config).exists() {
            bail!(
                "{} is missing: the database {} cannot be opened without it",
                path.display(),
                database_file(config).display()
            );
        }
        let (key, wrapped) = kms.generate_data_key(&database_key_context()).await?;
        write_database_key(&path, kms, &wrapped)?;
        return Ok(Zeroizing::new(*key.expose_for_cipher()));
    }
    let file = read_database_key(&path)?;
    let wrapped = WrappedKey(B64.decode(&file.wrapped).context("database.key: bad encoding")?);
    let key = kms
        .unwrap(&wrapped, &database_key_context())
        .await
        .with_context(|| format!("cannot unwrap {}", path.display()))?;
    Ok(Zeroizing::new(*key.expose_for_cipher()))
}

fn read_database_key(path: &Path) -> anyhow::Result<DatabaseKeyFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a database key file", path.display()))
}

fn write_database_key(path: &Path, kms: &Kms, wrapped: &WrappedKey) -> anyhow::Result<()> {
    let info = kms.info();
    let file = DatabaseKeyFile {
        format: 1,
        kms_backend: info.backend.to_owned(),
        kms_key_id: info.key_id,
        wrapped: B64.encode(&wrapped.0),
    };
    if let Some(dir) = path.parent() {
        kms::create_private_dir(dir)?;
    }
    kms::write_private(path, serde_json::to_string_pretty(&file)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Re-wraps the database key under the current root key version (after a
/// root rotation). Returns whether anything changed.
pub async fn rewrap_database_key(config: &Config, kms: &Kms) -> anyhow::Result<bool> {
    let path = keystore_dir(config).join(DATABASE_KEY_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let file = read_database_key(&path)?;
    if file.kms_key_id == kms.info().key_id {
        return Ok(false);
    }
    let key = database_key(config, kms).await?;
    let mut bytes = *key;
    let key = crypto::Key256::from_slice(&mut bytes)?;
    let wrapped = kms.wrap(&key, &database_key_context()).await?;
    write_database_key(&path, kms, &wrapped)?;
    Ok(true)
}
