//! The local sealed keystore, the embedded default: root key versions kept
//! in `DATA_DIR/keystore/root.json`, each sealed with AES-256-GCM under a
//! key derived with Argon2id from an unseal passphrase or key file kept
//! apart from the data directory. The plaintext root key lives only in
//! memory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use crypto::{Key256, KeyContext, SealingKdf, canonical};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{KmsError, KmsInfo, WrappedKey, frame, unframe};

const BACKEND: &str = "local";
const FILE: &str = "root.json";
/// Shortest unseal passphrase accepted.
pub const MIN_PASSPHRASE: usize = 12;
/// Shortest unseal key file accepted, in bytes.
pub const MIN_KEY_FILE: usize = 32;

/// What unseals the keystore.
#[derive(Clone)]
pub enum UnsealSecret {
    Passphrase(Zeroizing<String>),
    /// The contents of a key file.
    KeyFile(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for UnsealSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Passphrase(_) => "Passphrase([redacted])",
            Self::KeyFile(_) => "KeyFile([redacted])",
        })
    }
}

impl UnsealSecret {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Passphrase(p) => p.as_bytes(),
            Self::KeyFile(k) => k,
        }
    }

    fn check_strength(&self) -> Result<(), KmsError> {
        match self {
            Self::Passphrase(p) if p.chars().count() < MIN_PASSPHRASE => {
                Err(KmsError::Unseal(format!("the unseal passphrase must be at least {MIN_PASSPHRASE} characters")))
            }
            Self::KeyFile(k) if k.len() < MIN_KEY_FILE => {
                Err(KmsError::Unseal(format!("the unseal key file must hold at least {MIN_KEY_FILE} bytes")))
            }
            _ => Ok(()),
        }
    }

    /// Reads a key file, refusing one that other users can read.
    pub fn from_key_file(path: &Path) -> Result<Self, KmsError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| KmsError::Keystore { path: path.display().to_string(), reason };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err("the unseal key file is readable by other users; chmod 600 it".into()));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        Ok(Self::KeyFile(bytes))
    }
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    format: u32,
    kdf: KdfFile,
    versions: Vec<SealedVersion>,
}

#[derive(Serialize, Deserialize)]
struct KdfFile {
    alg: String,
    m_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct SealedVersion {
    version: u32,
    sealed: String,
}

/// The local backend: unsealed root key versions, in memory only.
pub struct LocalKms {
    dir: PathBuf,
    sealing_key: Key256,
    kdf: SealingKdf,
    /// (version, key), oldest first; the last is current.
    roots: RwLock<Vec<(u32, Key256)>>,
}

impl std::fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKms").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn root_aad(version: u32) -> Vec<u8> {
    canonical(&[b"strongroom/local-root/v1", &version.to_be_bytes()])
}

impl LocalKms {
    /// Whether a keystore exists in `dir`.
    pub fn exists(dir: &Path) -> bool {
        dir.join(FILE).is_file()
    }

    /// Creates a keystore with a fresh root key, sealed under `secret`.
    /// Refuses to overwrite an existing one.
    pub fn init(dir: &Path, secret: &UnsealSecret) -> Result<Self, KmsError> {
        secret.check_strength()?;
        if Self::exists(dir) {
            return Err(KmsError::Keystore {
                path: dir.join(FILE).display().to_string(),
                reason: "a keystore already exists here; it is never overwritten".into(),
            });
        }
        let kdf = SealingKdf::generate()?;
        let sealing_key = crypto::derive_sealing_key(secret.bytes(), &kdf)?;
        let kms = Self { dir: dir.to_owned(), sealing_key, kdf, roots: RwLock::new(vec![(1, Key256::generate()?)]) };
        kms.save()?;
        Ok(kms)
    }

    /// Opens and unseals an existing keystore.
    pub fn unseal(dir: &Path, secret: &UnsealSecret) -> Result<Self, KmsError> {
        let path = dir.join(FILE);
        let err = |reason: String| KmsError::Keystore { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err("no keystore here; run `strongroom init` first".into())
            } else {
                err(e.to_string())
            }
        })?;
        let file: KeystoreFile = serde_json::from_str(&text).map_err(|e| err(format!("unreadable: {e}")))?;
        if file.format != 1 || file.kdf.alg != "argon2id" {
            return Err(err("unknown keystore format".into()));
        }
        let salt: [u8; 16] =
            B64.decode(&file.kdf.salt).ok().and_then(|s| s.try_into().ok()).ok_or_else(|| err("bad salt".into()))?;
        let kdf = SealingKdf { m_kib: file.kdf.m_kib, t_cost: file.kdf.t_cost, p_cost: file.kdf.p_cost, salt };
        let sealing_key = crypto::derive_sealing_key(secret.bytes(), &kdf)?;
        let mut roots = Vec::new();
        for v in &file.versions {
            let sealed = B64.decode(&v.sealed).map_err(|_| err("bad sealed key".into()))?;
            let mut key = crypto::open(&sealing_key, &root_aad(v.version), &sealed)
                .map_err(|_| KmsError::Unseal("wrong unseal passphrase or key file".into()))?;
            roots.push((v.version, Key256::from_slice(&mut key)?));
        }
        if roots.is_empty() {
            return Err(err("the keystore holds no root key".into()));
        }
        Ok(Self { dir: dir.to_owned(), sealing_key, kdf, roots: RwLock::new(roots) })
    }

    /// Writes the sealed versions, whole, through a 0600 temporary file.
    fn save(&self) -> Result<(), KmsError> {
        let path = self.dir.join(FILE);
        let err = |reason: String| KmsError::Keystore { path: path.display().to_string(), reason };
        let roots = self.roots.read().map_err(|_| err("lock poisoned".into()))?;
        let mut versions = Vec::new();
        for (v, key) in roots.iter() {
            let sealed = crypto::seal(&self.sealing_key, &root_aad(*v), key.expose_for_cipher())?;
            versions.push(SealedVersion { version: *v, sealed: B64.encode(sealed) });
        }
        let file = KeystoreFile {
            format: 1,
            kdf: KdfFile {
                alg: "argon2id".into(),
                m_kib: self.kdf.m_kib,
                t_cost: self.kdf.t_cost,
                p_cost: self.kdf.p_cost,
                salt: B64.encode(self.kdf.salt),
            },
            versions,
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| err(e.to_string()))?;
        create_private_dir(&self.dir).map_err(|e| err(e.to_string()))?;
        write_private(&path, text.as_bytes()).map_err(|e| err(e.to_string()))
    }

    fn current(&self) -> Result<(u32, Key256), KmsError> {
        let roots = self.roots.read().map_err(|_| KmsError::Unseal("lock poisoned".into()))?;
        roots.last().map(|(v, k)| (*v, k.clone())).ok_or_else(|| KmsError::Unseal("no root key".into()))
    }

    pub(crate) async fn wrap(&self, key: &Key256, context: &KeyContext) -> Result<WrappedKey, KmsError> {
        let (version, root) = self.current()?;
        let sealed = crypto::seal(&root, &context.to_aad(), key.expose_for_cipher())?;
        Ok(WrappedKey(frame(version, &sealed)))
    }

    pub(crate) async fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<Key256, KmsError> {
        let (version, sealed) = unframe(&wrapped.0)?;
        let root = {
            let roots = self.roots.read().map_err(|_| KmsError::Unseal("lock poisoned".into()))?;
            roots.iter().find(|(v, _)| *v == version).map(|(_, k)| k.clone())
        };
        let root = root.ok_or(KmsError::Refused { backend: BACKEND })?;
        let mut key =
            crypto::open(&root, &context.to_aad(), sealed).map_err(|_| KmsError::Refused { backend: BACKEND })?;
        Ok(Key256::from_slice(&mut key)?)
    }

    pub(crate) async fn health(&self) -> Result<(), KmsError> {
        self.current().map(drop)
    }

    pub(crate) fn info(&self) -> KmsInfo {
        let version = self.current().map(|(v, _)| v).unwrap_or(0);
        KmsInfo { backend: BACKEND, key_id: format!("local root key v{version}") }
    }

    pub(crate) async fn rotate_root(&self) -> Result<u32, KmsError> {
        let next = {
            let mut roots = self.roots.write().map_err(|_| KmsError::Unseal("lock poisoned".into()))?;
            let next = roots.last().map_or(1, |(v, _)| v + 1);
            roots.push((next, Key256::generate()?));
            next
        };
        // Never keep wrapping under a version that is not on disk: after a
        // restart nothing it wrapped could be unwrapped again.
        if let Err(e) = self.save() {
            if let Ok(mut roots) = self.roots.write() {
                roots.retain(|(v, _)| *v != next);
            }
            return Err(e);
        }
        Ok(next)
    }
}

/// Creates a directory private to this user.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a file whole with mode 0600, through a temporary file and a
/// rename, and syncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
