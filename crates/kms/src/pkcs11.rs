//! The PKCS#11 backend: root key versions are AES-256 secret keys generated
//! inside the token as sensitive and non-extractable, labelled
//! `<key_label>-v<N>`; wrapping is CKM_AES_GCM inside the token with the
//! encryption context as associated data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crypto::{Key256, KeyContext};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::{KmsError, KmsInfo, WrappedKey, frame, unframe};

const BACKEND: &str = "pkcs11";
const IV_LEN: usize = 12;

/// Where the HSM is and how to log in.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token, chosen by label (slot numbers are not stable).
    pub token_label: String,
    /// The root key's label prefix; versions are `<label>-v1`, `-v2`...
    pub key_label: String,
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"[redacted]")
            .finish()
    }
}

struct Inner {
    session: Session,
    /// (version, handle), oldest first.
    keys: Vec<(u32, ObjectHandle)>,
}

/// A logged-in session on the token holding the root key.
pub struct Pkcs11Kms {
    config: Pkcs11Config,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Pkcs11Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Kms").field("config", &self.config).finish_non_exhaustive()
    }
}

/// One initialised library per module per process: initialising twice is
/// an error, and SoftHSM crashes on concurrent initialisation.
fn library(module: &Path) -> Result<Pkcs11, KmsError> {
    static LIBS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut libs = LIBS.get_or_init(Default::default).lock().map_err(|_| unavailable("library lock poisoned"))?;
    if let Some(lib) = libs.get(module) {
        return Ok(lib.clone());
    }
    let lib = Pkcs11::new(module).map_err(|e| KmsError::Config {
        setting: "kms.pkcs11.module",
        reason: format!("cannot load {}: {e}", module.display()),
    })?;
    lib.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| unavailable(&format!("C_Initialize: {e}")))?;
    libs.insert(module.to_owned(), lib.clone());
    Ok(lib)
}

fn unavailable(reason: &str) -> KmsError {
    KmsError::Unavailable { backend: BACKEND, reason: reason.to_owned() }
}

/// Maps a failed decrypt: a wrong tag or context is a refusal, a dead
/// session or device is an outage.
fn decrypt_error(e: P11Error) -> KmsError {
    match e {
        P11Error::Pkcs11(
            RvError::DeviceError
            | RvError::DeviceRemoved
            | RvError::SessionClosed
            | RvError::SessionHandleInvalid
            | RvError::TokenNotPresent,
            _,
        ) => unavailable(&e.to_string()),
        _ => KmsError::Refused { backend: BACKEND },
    }
}

impl Pkcs11Kms {
    /// Logs in to the token and finds the root key versions. With
    /// `create_if_missing`, generates version 1 when none exists
    /// (`strongroom init`); otherwise a missing key is a configuration error.
    pub fn open(config: Pkcs11Config, create_if_missing: bool) -> Result<Self, KmsError> {
        let lib = library(&config.module)?;
        let slots = lib.get_slots_with_token().map_err(|e| unavailable(&e.to_string()))?;
        let slot = slots
            .into_iter()
            .find(|s| lib.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == config.token_label))
            .ok_or_else(|| KmsError::Config {
                setting: "kms.pkcs11.token_label",
                reason: format!("no token labelled {:?} in {}", config.token_label, config.module.display()),
            })?;
        let session = lib.open_rw_session(slot).map_err(|e| unavailable(&e.to_string()))?;
        let pin = AuthPin::from(config.pin.as_str().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => {
                return Err(KmsError::Config { setting: "kms.pkcs11.pin", reason: format!("login refused: {e}") });
            }
        }
        let mut keys = Vec::new();
        for version in 1.. {
            match find_key(&session, &config.key_label, version)? {
                Some(h) => keys.push((version, h)),
                None => break,
            }
        }
        if keys.is_empty() {
            if !create_if_missing {
                return Err(KmsError::Config {
                    setting: "kms.pkcs11.key_label",
                    reason: format!("no key labelled {}-v1 in the token; run `strongroom init`", config.key_label),
                });
            }
            keys.push((1, generate_key(&session, &config.key_label, 1)?));
        }
        Ok(Self { config, inner: Arc::new(Mutex::new(Inner { session, keys })) })
    }

    async fn with_inner<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, KmsError> + Send + 'static,
    ) -> Result<T, KmsError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().map_err(|_| unavailable("session lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| unavailable(&e.to_string()))?
    }

    pub(crate) async fn wrap(&self, key: &Key256, context: &KeyContext) -> Result<WrappedKey, KmsError> {
        let plaintext = Zeroizing::new(key.expose_for_cipher().to_vec());
        let aad = context.to_aad();
        let mut iv = [0u8; IV_LEN];
        crypto::random_bytes(&mut iv)?;
        self.with_inner(move |inner| {
            let (version, handle) = *inner.keys.last().ok_or_else(|| unavailable("no root key"))?;
            let mut iv_buf = iv;
            let params = GcmParams::new(&mut iv_buf, &aad, 128.into()).map_err(|e| unavailable(&e.to_string()))?;
            let ct = inner
                .session
                .encrypt(&Mechanism::AesGcm(params), handle, &plaintext)
                .map_err(|e| unavailable(&format!("C_Encrypt: {e}")))?;
            Ok(WrappedKey(frame(version, &[&iv[..], &ct].concat())))
        })
        .await
    }

    pub(crate) async fn unwrap(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<Key256, KmsError> {
        let (version, body) = unframe(&wrapped.0)?;
        if body.len() < IV_LEN + 16 {
            return Err(KmsError::Refused { backend: BACKEND });
        }
        let (iv, ct) = body.split_at(IV_LEN);
        let (mut iv, ct, aad) = (iv.to_vec(), ct.to_vec(), context.to_aad());
        self.with_inner(move |inner| {
            let handle = inner
                .keys
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, h)| *h)
                .ok_or(KmsError::Refused { backend: BACKEND })?;
            let params = GcmParams::new(&mut iv, &aad, 128.into()).map_err(|e| unavailable(&e.to_string()))?;
            let mut pt =
                Zeroizing::new(inner.session.decrypt(&Mechanism::AesGcm(params), handle, &ct).map_err(decrypt_error)?);
            Ok(Key256::from_slice(&mut pt)?)
        })
        .await
    }

    /// Whether every root key version is marked sensitive and
    /// non-extractable by the token: the evidence that no one can read it.
    pub async fn root_keys_locked_in(&self) -> Result<bool, KmsError> {
        use cryptoki::object::AttributeType;
        self.with_inner(|inner| {
            let mut locked = !inner.keys.is_empty();
            for (_, handle) in &inner.keys {
                let attrs = inner
                    .session
                    .get_attributes(*handle, &[AttributeType::Sensitive, AttributeType::Extractable])
                    .map_err(|e| unavailable(&e.to_string()))?;
                for a in attrs {
                    match a {
                        Attribute::Sensitive(s) => locked &= s,
                        Attribute::Extractable(x) => locked &= !x,
                        _ => {}
                    }
                }
            }
            Ok(locked)
        })
        .await
    }

    pub(crate) async fn health(&self) -> Result<(), KmsError> {
        self.with_inner(|inner| inner.session.get_session_info().map(drop).map_err(|e| unavailable(&e.to_string())))
            .await
    }

    pub(crate) fn info(&self) -> KmsInfo {
        let version = self.inner.lock().ok().and_then(|i| i.keys.last().map(|(v, _)| *v)).unwrap_or(0);
        KmsInfo {
            backend: BACKEND,
            key_id: format!("token {:?}, key {}-v{version}", self.config.token_label, self.config.key_label),
        }
    }

    pub(crate) async fn rotate_root(&self) -> Result<u32, KmsError> {
        let label = self.config.key_label.clone();
        self.with_inner(move |inner| {
            let next = inner.keys.last().map_or(1, |(v, _)| v + 1);
            let handle = generate_key(&inner.session, &label, next)?;
            inner.keys.push((next, handle));
            Ok(next)
        })
        .await
    }
}

fn versioned_label(prefix: &str, version: u32) -> Vec<u8> {
    format!("{prefix}-v{version}").into_bytes()
}

fn find_key(session: &Session, prefix: &str, version: u32) -> Result<Option<ObjectHandle>, KmsError> {
    let template = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(versioned_label(prefix, version))];
    let found = session.find_objects(&template).map_err(|e| unavailable(&e.to_string()))?;
    Ok(found.first().copied())
}

/// Generates an AES-256 root key version in the token: sensitive,
/// non-extractable, usable only to encrypt and decrypt.
fn generate_key(session: &Session, prefix: &str, version: u32) -> Result<ObjectHandle, KmsError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(versioned_label(prefix, version)),
    ];
    session.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| unavailable(&format!("C_GenerateKey: {e}")))
}
