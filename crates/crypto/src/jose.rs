//! JOSE for Strongroom: compact EdDSA JWS (RFC 7515, RFC 8037) and compact
//! JWE with `dir` or `A256KW` and `A256GCM` (RFC 7516, RFC 7518), plus JWT
//! claim checks (RFC 7519).
//!
//! Deliberately narrow. A JWS is accepted only with `alg` exactly `EdDSA`, a
//! known `kid` and a strict Ed25519 verification; a JWE only with the `alg`
//! that matches the caller's key (`dir` or `A256KW`) and `enc` `A256GCM`.
//! Everything else (`none`, HMAC, RSA, other encodings, compression, critical
//! extensions) is refused from the protected header, before any
//! cryptography. Content encryption goes through the crate's AEAD envelope
//! (`seal`/`open`: AES-256-GCM, fresh random 96-bit IV), with the ASCII of the
//! encoded protected header as associated data. Errors name what is wrong and
//! never echo token contents; the one exception is the refused `alg`/`enc`
//! value, shortened and reduced to printable ASCII.

use std::fmt;

use aes_kw::KwAes256;
use aes_kw::cipher::KeyInit;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{CryptoError, Key256, NONCE_LEN, TAG_LEN};

/// The only JWS algorithm accepted.
const ALG_EDDSA: &str = "EdDSA";
/// JWE key management: the key is the content key.
const ALG_DIR: &str = "dir";
/// JWE key management: a random content key wrapped with AES-256 key wrap.
const ALG_A256KW: &str = "A256KW";
/// The only JWE content encryption accepted.
const ENC_A256GCM: &str = "A256GCM";
/// Longest token accepted, to bound decoding work.
const MAX_TOKEN_LEN: usize = 1 << 20;
/// An AES key wrap of a 256-bit content key is 40 bytes.
const WRAPPED_CEK_LEN: usize = Key256::LEN + 8;
/// Longest part of a refused algorithm name kept in the error.
const MAX_ALG_LABEL: usize = 24;

/// Why a JOSE operation failed. Never carries token contents, apart from a
/// shortened, sanitised copy of a refused algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The token or one of its parts is not well formed.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm or encoding that is refused here.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No verification key has the token's key id (or it has none).
    #[error("no key matches the token's key id")]
    UnknownKey,
    /// The signature does not verify under the selected key.
    #[error("signature verification failed")]
    BadSignature,
    /// Authenticated decryption or key unwrapping failed: wrong key, or the
    /// token was altered.
    #[error("decryption failed: wrong key, or the token was altered")]
    DecryptFailed,
    /// The `exp` claim is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// The `nbf` claim is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// The `iss` claim is not the expected issuer.
    #[error("token issuer is not the expected one")]
    WrongIssuer,
    /// The `aud` claim does not name the expected audience.
    #[error("token audience does not include the expected one")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token lacks the {0:?} claim")]
    MissingClaim(&'static str),
    /// A cryptographic operation failed while producing a token.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
}

// ---------------------------------------------------------------------------
// Signing (JWS, EdDSA)
// ---------------------------------------------------------------------------

/// An Ed25519 signing key with its derived key id. The secret is zeroized on
/// drop (by `ed25519-dalek`) and never printed.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl SigningKey {
    /// A fresh key from 32 bytes of the operating system's generator.
    pub fn generate() -> Result<Self, JoseError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random_bytes(seed.as_mut()).map_err(|_| JoseError::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key for a 32-byte Ed25519 seed (RFC 8032 private key); the caller
    /// keeps responsibility for wiping its copy.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let kid = thumbprint(&key.verifying_key());
        Self { key, kid }
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public JWK,
    /// base64url (43 characters).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as an RFC 8037 JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "alg": ALG_EDDSA,
            "use": "sig",
        })
    }

    /// The matching entry for a verification key set.
    pub fn verifying_entry(&self) -> VerifyingKeyEntry {
        VerifyingKeyEntry { kid: self.kid.clone(), key: self.key.verifying_key() }
    }

    /// Signs a JWT claims object as a compact JWS with protected header
    /// `{"alg":"EdDSA","typ":"JWT","kid":...}`.
    pub fn sign(&self, claims: &Value) -> Result<String, JoseError> {
        if !claims.is_object() {
            return Err(JoseError::Malformed("claims must be a JSON object"));
        }
        let header = JwsHeaderOut { alg: ALG_EDDSA, typ: "JWT", kid: &self.kid };
        let input = format!("{}.{}", encode_json(&header)?, encode_json(claims)?);
        Ok(self.sign_input(input))
    }

    /// Appends `.signature` to a JWS signing input.
    fn sign_input(&self, mut input: String) -> String {
        let signature = self.key.sign(input.as_bytes());
        input.push('.');
        input.push_str(&b64(&signature.to_bytes()));
        input
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("key", &"[redacted]").finish()
    }
}

/// A public key that may verify tokens, under the key id tokens name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKeyEntry {
    /// Matched exactly against the JWS header's `kid`.
    pub kid: String,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl VerifyingKeyEntry {
    /// An entry for `key` under its RFC 7638 thumbprint, the id
    /// [`SigningKey::kid`] gives.
    pub fn new(key: VerifyingKey) -> Self {
        Self { kid: thumbprint(&key), key }
    }

    /// Imports a public RFC 8037 Ed25519 JWK (`kty` `OKP`, `crv` `Ed25519`).
    /// Its `kid` is kept if present, else the thumbprint is used. Refuses a
    /// JWK carrying a private key, one restricted to another `alg` or `use`,
    /// and small-order (weak) points.
    pub fn from_public_jwk(jwk: &Value) -> Result<Self, JoseError> {
        let jwk = jwk.as_object().ok_or(JoseError::Malformed("JWK is not a JSON object"))?;
        check_public_jwk_members(jwk)?;
        let x = jwk.get("x").and_then(Value::as_str).ok_or(JoseError::Malformed("JWK lacks x"))?;
        let x: [u8; 32] = unb64(x, "JWK x")?.try_into().map_err(|_| JoseError::Malformed("JWK x is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&x).map_err(|_| JoseError::Malformed("JWK x is not a curve point"))?;
        if key.is_weak() {
            return Err(JoseError::Malformed("JWK x is a weak key"));
        }
        match jwk.get("kid") {
            None => Ok(Self::new(key)),
            Some(Value::String(kid)) => Ok(Self { kid: kid.clone(), key }),
            Some(_) => Err(JoseError::Malformed("JWK kid is not a string")),
        }
    }
}

/// Checks the members of a public Ed25519 JWK other than `x` and `kid`.
fn check_public_jwk_members(jwk: &Map<String, Value>) -> Result<(), JoseError> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
        return Err(JoseError::Malformed("JWK is not an OKP Ed25519 key"));
    }
    if jwk.contains_key("d") {
        return Err(JoseError::Malformed("public JWK carries a private key"));
    }
    if jwk.get("alg").is_some_and(|a| a.as_str() != Some(ALG_EDDSA)) {
        return Err(JoseError::Malformed("JWK is restricted to another alg"));
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err(JoseError::Malformed("JWK is not for signatures"));
    }
    Ok(())
}

/// The RFC 7638 SHA-256 thumbprint of an Ed25519 public key's JWK.
fn thumbprint(key: &VerifyingKey) -> String {
    // Required members only, in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(key.as_bytes()));
    b64(&Sha256::digest(canonical.as_bytes()))
}

#[derive(Serialize)]
struct JwsHeaderOut<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct JwsHeaderIn {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Verifies a compact JWS and returns its claims. The header's `alg` must be
/// exactly `EdDSA` (checked before any cryptography); the key is chosen by
/// the header's `kid` among `keys`; the signature is checked with
/// `verify_strict`. Claims are not checked here: see [`check_claims`].
pub fn verify_jws(token: &str, keys: &[VerifyingKeyEntry]) -> Result<Value, JoseError> {
    let [header_b64, payload_b64, signature_b64] = split_parts::<3>(token)?;
    let header: JwsHeaderIn = decode_header(header_b64)?;
    if header.alg != ALG_EDDSA {
        return Err(unsupported(&header.alg));
    }
    if header.crit.is_some() {
        return Err(JoseError::Malformed("critical header extensions are not supported"));
    }
    if header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
        return Err(JoseError::Malformed("typ is not JWT"));
    }
    let kid = header.kid.ok_or(JoseError::UnknownKey)?;
    let entry = keys.iter().find(|k| k.kid == kid).ok_or(JoseError::UnknownKey)?;
    let signing_input = token.get(..header_b64.len() + 1 + payload_b64.len()).ok_or(JoseError::Malformed("token"))?;
    verify_signature(&entry.key, signing_input, signature_b64)?;
    decode_claims(payload_b64)
}

/// Strict Ed25519 verification of a JWS signing input.
fn verify_signature(key: &VerifyingKey, signing_input: &str, signature_b64: &str) -> Result<(), JoseError> {
    let bytes: [u8; 64] = unb64(signature_b64, "signature")?.try_into().map_err(|_| JoseError::BadSignature)?;
    key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&bytes)).map_err(|_| JoseError::BadSignature)
}

/// The payload of a verified JWS as a claims object.
fn decode_claims(payload_b64: &str) -> Result<Value, JoseError> {
    let claims: Value = serde_json::from_slice(&unb64(payload_b64, "payload")?)
        .map_err(|_| JoseError::Malformed("payload is not JSON"))?;
    if !claims.is_object() {
        return Err(JoseError::Malformed("payload is not a JSON object"));
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------
// Encryption (JWE, dir / A256KW with A256GCM)
// ---------------------------------------------------------------------------

/// A 256-bit JWE key, typed by its key-management algorithm so a key is used
/// only the way it was meant to be. Zeroized on drop; printed redacted.
#[derive(Clone, Debug)]
pub enum JweKey {
    /// `alg: dir`: the key is the AES-256-GCM content key.
    Dir(Key256),
    /// `alg: A256KW`: the key wraps a fresh random content key per token.
    A256Kw(Key256),
}

impl JweKey {
    /// The `alg` header value this key produces and accepts.
    fn alg(&self) -> &'static str {
        match self {
            Self::Dir(_) => ALG_DIR,
            Self::A256Kw(_) => ALG_A256KW,
        }
    }
}

#[derive(Serialize)]
struct JweHeaderOut<'a> {
    alg: &'static str,
    enc: &'static str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cty: Option<&'a str>,
}

#[derive(Deserialize)]
struct JweHeaderIn {
    alg: String,
    enc: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    zip: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Encrypts `plaintext` as a compact JWE: `alg` `dir` or `A256KW` as `key`
/// says, `enc` `A256GCM`, the given `kid` and optional `cty` in the protected
/// header, a random 96-bit IV and, for `A256KW`, a random 256-bit content
/// key.
pub fn encrypt_jwe(plaintext: &[u8], key: &JweKey, kid: &str, cty: Option<&str>) -> Result<String, JoseError> {
    let header = JweHeaderOut { alg: key.alg(), enc: ENC_A256GCM, kid, cty };
    let header_b64 = encode_json(&header)?;
    let (encrypted_key, content) = match key {
        JweKey::Dir(cek) => (String::new(), seal_content(cek, &header_b64, plaintext)?),
        JweKey::A256Kw(kek) => {
            let cek = Key256::generate().map_err(|_| JoseError::Random)?;
            (b64(&wrap_cek(kek, &cek)?), seal_content(&cek, &header_b64, plaintext)?)
        }
    };
    let [iv, ciphertext, tag] = content;
    let parts: [&str; 5] = [&header_b64, &encrypted_key, &iv, &ciphertext, &tag];
    Ok(parts.join("."))
}

/// Decrypts a compact JWE made with `key`'s algorithm (`dir` or `A256KW`)
/// and `A256GCM`. The header is checked before any cryptography; a change to
/// any of the five parts makes decryption fail.
pub fn decrypt_jwe(token: &str, key: &JweKey) -> Result<Zeroizing<Vec<u8>>, JoseError> {
    let [header_b64, encrypted_key, iv, ciphertext, tag] = split_parts::<5>(token)?;
    check_jwe_header(&decode_header(header_b64)?, key)?;
    let iv = unb64(iv, "IV")?;
    let tag = unb64(tag, "authentication tag")?;
    if iv.len() != NONCE_LEN || tag.len() != TAG_LEN {
        return Err(JoseError::Malformed("IV or tag has the wrong length"));
    }
    let mut sealed = iv;
    sealed.extend_from_slice(&unb64(ciphertext, "ciphertext")?);
    sealed.extend_from_slice(&tag);
    match key {
        JweKey::Dir(cek) if encrypted_key.is_empty() => open_content(cek, header_b64, &sealed),
        JweKey::Dir(_) => Err(JoseError::Malformed("dir takes an empty encrypted key")),
        JweKey::A256Kw(kek) => open_content(&unwrap_cek(kek, encrypted_key)?, header_b64, &sealed),
    }
}

/// The `kid` of a compact JWE's protected header, to choose the key. The
/// value is unauthenticated until [`decrypt_jwe`] succeeds.
pub fn jwe_kid(token: &str) -> Result<Option<String>, JoseError> {
    let [header_b64, ..] = split_parts::<5>(token)?;
    Ok(decode_header::<JweHeaderIn>(header_b64)?.kid)
}

/// Refuses any header other than `key`'s alg with `A256GCM`, uncompressed
/// and without critical extensions.
fn check_jwe_header(header: &JweHeaderIn, key: &JweKey) -> Result<(), JoseError> {
    if header.alg != key.alg() {
        return Err(unsupported(&header.alg));
    }
    if header.enc != ENC_A256GCM {
        return Err(unsupported(&header.enc));
    }
    if header.zip.is_some() {
        return Err(JoseError::Malformed("compressed JWE is not supported"));
    }
    if header.crit.is_some() {
        return Err(JoseError::Malformed("critical header extensions are not supported"));
    }
    Ok(())
}

/// AES-256-GCM under `cek` with a fresh IV and the header as associated
/// data; returns the base64url IV, ciphertext and tag.
fn seal_content(cek: &Key256, header_b64: &str, plaintext: &[u8]) -> Result<[String; 3], JoseError> {
    let sealed = crate::seal(cek, header_b64.as_bytes(), plaintext).map_err(|e| match e {
        CryptoError::Random => JoseError::Random,
        _ => JoseError::Crypto("content encryption failed"),
    })?;
    split_sealed(&sealed)
}

/// Splits the envelope layout `iv || ciphertext || tag` into JWE parts.
fn split_sealed(sealed: &[u8]) -> Result<[String; 3], JoseError> {
    let (iv, rest) = sealed.split_at_checked(NONCE_LEN).ok_or(JoseError::Crypto("sealed output too short"))?;
    let at = rest.len().checked_sub(TAG_LEN).ok_or(JoseError::Crypto("sealed output too short"))?;
    let (ciphertext, tag) = rest.split_at(at);
    Ok([b64(iv), b64(ciphertext), b64(tag)])
}

/// Authenticated decryption of `iv || ciphertext || tag` under `cek`.
fn open_content(cek: &Key256, header_b64: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, JoseError> {
    crate::open(cek, header_b64.as_bytes(), sealed).map_err(|_| JoseError::DecryptFailed)
}

/// RFC 3394 key wrap of a content key under a key-encryption key.
fn wrap_cek(kek: &Key256, cek: &Key256) -> Result<[u8; WRAPPED_CEK_LEN], JoseError> {
    let mut out = [0u8; WRAPPED_CEK_LEN];
    KwAes256::new(kek.expose_for_cipher().into())
        .wrap_key(cek.expose_for_cipher(), &mut out)
        .map_err(|_| JoseError::Crypto("key wrap failed"))?;
    Ok(out)
}

/// RFC 3394 key unwrap of a base64url encrypted key into a content key.
fn unwrap_cek(kek: &Key256, encrypted_key_b64: &str) -> Result<Key256, JoseError> {
    let wrapped = unb64(encrypted_key_b64, "encrypted key")?;
    if wrapped.len() != WRAPPED_CEK_LEN {
        return Err(JoseError::Malformed("encrypted key has the wrong length"));
    }
    let mut cek = Zeroizing::new([0u8; Key256::LEN]);
    KwAes256::new(kek.expose_for_cipher().into())
        .unwrap_key(&wrapped, cek.as_mut())
        .map_err(|_| JoseError::DecryptFailed)?;
    Key256::from_slice(cek.as_mut()).map_err(|_| JoseError::DecryptFailed)
}

// ---------------------------------------------------------------------------
// Claims (JWT)
// ---------------------------------------------------------------------------

/// Checks JWT claims after verification: `exp` is required and must be after
/// `now_unix - leeway_secs`; `nbf`, if present, must not be after
/// `now_unix + leeway_secs`; `iss` must equal `expected_iss`; `aud` must
/// equal `expected_aud` or, as an array, contain it. A negative leeway counts
/// as zero.
pub fn check_claims(
    claims: &Value,
    expected_iss: &str,
    expected_aud: &str,
    now_unix: i64,
    leeway_secs: i64,
) -> Result<(), JoseError> {
    let claims = claims.as_object().ok_or(JoseError::Malformed("claims are not a JSON object"))?;
    let leeway = leeway_secs.max(0);
    let exp = numeric_date(claims, "exp")?.ok_or(JoseError::MissingClaim("exp"))?;
    if exp <= now_unix.saturating_sub(leeway) as f64 {
        return Err(JoseError::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now_unix.saturating_add(leeway) as f64) {
        return Err(JoseError::NotYetValid);
    }
    match claims.get("iss") {
        None => return Err(JoseError::MissingClaim("iss")),
        Some(iss) if iss.as_str() != Some(expected_iss) => return Err(JoseError::WrongIssuer),
        Some(_) => {}
    }
    let audience_ok = match claims.get("aud") {
        None => return Err(JoseError::MissingClaim("aud")),
        Some(Value::String(aud)) => aud == expected_aud,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected_aud)),
        Some(_) => false,
    };
    if audience_ok { Ok(()) } else { Err(JoseError::WrongAudience) }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, JoseError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(JoseError::Malformed("NumericDate out of range")),
        Some(_) => Err(JoseError::Malformed("NumericDate claim is not a number")),
    }
}

// ---------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------

/// Splits a compact token into exactly `N` dot-separated parts.
fn split_parts<const N: usize>(token: &str) -> Result<[&str; N], JoseError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JoseError::Malformed("token too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    parts.try_into().map_err(|_| JoseError::Malformed("wrong number of parts"))
}

/// Decodes a protected header: base64url of a JSON object (a JSON array or
/// duplicated known member is refused).
fn decode_header<T: DeserializeOwned>(header_b64: &str) -> Result<T, JoseError> {
    let json = unb64(header_b64, "protected header")?;
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(JoseError::Malformed("protected header is not a JSON object"));
    }
    serde_json::from_slice(&json).map_err(|_| JoseError::Malformed("protected header is not a valid JOSE header"))
}

/// Base64url (no padding) of a value's compact JSON.
fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<String, JoseError> {
    serde_json::to_vec(value).map(|json| b64(&json)).map_err(|_| JoseError::Malformed("value is not serialisable"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding: no padding, no stray bits, URL alphabet only.
fn unb64(s: &str, what: &'static str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JoseError::Malformed(what))
}

/// The error for a refused `alg` or `enc`, naming a shortened printable copy.
fn unsupported(value: &str) -> JoseError {
    let label =
        value.chars().take(MAX_ALG_LABEL).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    JoseError::UnsupportedAlgorithm(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    // RFC 8037, Appendix A.1 (key), A.3 (thumbprint) and A.4 (signature).
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    const RFC8037_SIGNING_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    const RFC8037_SIGNATURE: &str =
        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    // RFC 7516, Appendix A.1 (RSAES-OAEP and AES GCM): the A256GCM content
    // layer with its published CEK and IV.
    const RFC7516_A1_HEADER: &str = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ";
    const RFC7516_A1_CEK: &str = "b1a1f480548fe1733fb403ff6b9ad4f68a076e5b702e22692f82cb2e7aea40fc";
    const RFC7516_A1_IV: &str = "48V1_ALb6US04U3b";
    const RFC7516_A1_PLAINTEXT: &[u8] = b"The true sign of intelligence is not knowledge but imagination.";
    const RFC7516_A1_CIPHERTEXT: &str =
        "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A";
    const RFC7516_A1_TAG: &str = "XFBoMYUZodetZdvTiFvSkQ";

    // RFC 3394, section 4.6: wrap 256 bits of key data with a 256-bit KEK.
    const RFC3394_KEK: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const RFC3394_KEY_DATA: &str = "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f";
    const RFC3394_WRAPPED: &str = "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21";

    // RFC 7520, section 5.6 (dir + A128GCM): a real token this module must refuse.
    const RFC7520_5_6_TOKEN: &str = concat!(
        "eyJhbGciOiJkaXIiLCJraWQiOiI3N2M3ZTJiOC02ZTEzLTQ1Y2YtODY3Mi02MTdiNWI0NTI0M2EiLCJlbmMiOiJBMTI4R0NNIn0",
        "..refa467QzzKx6QAB.",
        "JW_i_f52hww_ELQPGaYyeAB6HYGcR559l9TYnSovc23XJoBcW29rHP8yZOZG7YhLpT1bjFuvZPjQS-m0IFtVcXkZXdH_lr_FrdYt9HRUYksh",
        "trMmIUAyGmUnd9zMDB2n0cRDIHAzFVeJUDxkUwVAE7_YGRPdcqMyiBoCO-FBdE-Nceb4h3-FtBP-c_BIwCPTjb9o0SbdcdREEMJMyZBH8ySW",
        "MVi1gPD9yxi-aQpGbSv_F9N4IZAxscj5g-NJsUPbjk29-s7LJAGb15wEBtXphVCgyy53CoIKLHHeJHXex45Uz9aKZSRSInZI-wjsY0yu3cT4_",
        "aQ3i1o-tiE-F8Ios61EKgyIQ4CWao8PFMj8TTnp.vbb32Xvllea2OtmHAdccRQ"
    );
    // RFC 7520, section 5.8 (A128KW + A128GCM): header and encrypted key;
    // refused from the header, so the other parts are placeholders.
    const RFC7520_5_8_PREFIX: &str = concat!(
        "eyJhbGciOiJBMTI4S1ciLCJraWQiOiI4MWIyMDk2NS04MzMyLTQzZDktYTQ2OC04MjE2MGFkOTFhYzgiLCJlbmMiOiJBMTI4R0NNIn0",
        ".CBI6oDw8MydIx1IBntf_lQcw2MmJKIQx.Qx0pmsDa8KnJc9Jo"
    );

    fn key256(hex_str: &str) -> Result<Key256, Box<dyn std::error::Error>> {
        Ok(Key256::from_slice(&mut hex::decode(hex_str)?)?)
    }

    fn seed(b64_str: &str) -> Result<[u8; 32], Box<dyn std::error::Error>> {
        unb64(b64_str, "seed")?.try_into().map_err(|_| "seed is not 32 bytes".into())
    }

    fn rfc8037_key() -> Result<SigningKey, Box<dyn std::error::Error>> {
        Ok(SigningKey::from_seed(&seed(RFC8037_D)?))
    }

    fn claims(now: i64) -> Value {
        serde_json::json!({ "iss": "strongroom", "aud": "api", "sub": "user-1", "iat": now, "exp": now + 300 })
    }

    fn token_with_header(header: &Value, payload: &Value, signature: &str) -> Result<String, JoseError> {
        Ok(format!("{}.{}.{signature}", encode_json(header)?, encode_json(payload)?))
    }

    /// Replaces the `i`-th dot-separated part of a token.
    fn with_part(token: &str, i: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[i] = part;
        parts.join(".")
    }

    /// Flips one character in the middle of a part, keeping the alphabet.
    fn flip_middle(part: &str) -> String {
        let mut chars: Vec<char> = part.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    // --- known answers -----------------------------------------------------

    #[test]
    fn rfc8037_a4_ed25519_signature_known_answer() -> TestResult {
        let key = rfc8037_key()?;
        let token = key.sign_input(RFC8037_SIGNING_INPUT.to_owned());
        assert_eq!(token, format!("{RFC8037_SIGNING_INPUT}.{RFC8037_SIGNATURE}"));
        let entry =
            VerifyingKeyEntry::from_public_jwk(&serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}))?;
        verify_signature(&entry.key, RFC8037_SIGNING_INPUT, RFC8037_SIGNATURE)?;
        // The published token has no kid, so the full check refuses it.
        assert_eq!(verify_jws(&token, &[entry]), Err(JoseError::UnknownKey));
        Ok(())
    }

    #[test]
    fn rfc8037_public_jwk_and_a3_thumbprint_known_answer() -> TestResult {
        let key = rfc8037_key()?;
        assert_eq!(key.kid(), RFC8037_THUMBPRINT);
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["x"], RFC8037_X);
        assert_eq!(jwk["kid"], RFC8037_THUMBPRINT);
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk.as_object().map(Map::len), Some(6));
        assert_eq!(VerifyingKeyEntry::from_public_jwk(&jwk)?, key.verifying_entry());
        Ok(())
    }

    #[test]
    fn rfc7516_a1_a256gcm_content_layer_known_answer() -> TestResult {
        let cek = key256(RFC7516_A1_CEK)?;
        let iv: [u8; NONCE_LEN] = unb64(RFC7516_A1_IV, "iv")?.try_into().map_err(|_| "iv")?;
        let sealed = crate::danger_seal_with_nonce(&cek, &iv, RFC7516_A1_HEADER.as_bytes(), RFC7516_A1_PLAINTEXT)?;
        assert_eq!(split_sealed(&sealed)?, [RFC7516_A1_IV, RFC7516_A1_CIPHERTEXT, RFC7516_A1_TAG]);
        let opened = open_content(&cek, RFC7516_A1_HEADER, &sealed)?;
        assert_eq!(opened.as_slice(), RFC7516_A1_PLAINTEXT);
        // The header is the associated data: another header fails.
        let other_header = encode_json(&serde_json::json!({"alg": "dir", "enc": "A256GCM"}))?;
        assert_eq!(open_content(&cek, &other_header, &sealed), Err(JoseError::DecryptFailed));
        Ok(())
    }

    #[test]
    fn rfc3394_4_6_a256kw_known_answer() -> TestResult {
        let (kek, cek) = (key256(RFC3394_KEK)?, key256(RFC3394_KEY_DATA)?);
        assert_eq!(hex::encode(wrap_cek(&kek, &cek)?), RFC3394_WRAPPED);
        let unwrapped = unwrap_cek(&kek, &b64(&hex::decode(RFC3394_WRAPPED)?))?;
        assert_eq!(unwrapped.expose_for_cipher(), cek.expose_for_cipher());
        let mut altered = hex::decode(RFC3394_WRAPPED)?;
        altered[9] ^= 1;
        assert!(matches!(unwrap_cek(&kek, &b64(&altered)), Err(JoseError::DecryptFailed)));
        Ok(())
    }

    #[test]
    fn rfc7520_128_bit_examples_are_refused_before_crypto() -> TestResult {
        let key = key256(RFC3394_KEK)?;
        let dir = JweKey::Dir(key.clone());
        assert_eq!(decrypt_jwe(RFC7520_5_6_TOKEN, &dir).err(), Some(JoseError::UnsupportedAlgorithm("A128GCM".into())));
        let token = format!("{RFC7520_5_8_PREFIX}.AAAA.AAAAAAAAAAAAAAAAAAAAAA");
        let kw = JweKey::A256Kw(key);
        assert_eq!(decrypt_jwe(&token, &kw).err(), Some(JoseError::UnsupportedAlgorithm("A128KW".into())));
        Ok(())
    }

    // --- JWS ------------------------------------------------------------------

    #[test]
    fn jws_round_trip_with_expected_header() -> TestResult {
        let key = SigningKey::generate()?;
        let claims = claims(1_700_000_000);
        let token = key.sign(&claims)?;
        assert_eq!(verify_jws(&token, &[key.verifying_entry()])?, claims);
        let header: Value = serde_json::from_slice(&unb64(token.split('.').next().unwrap_or(""), "header")?)?;
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()}));
        Ok(())
    }

    #[test]
    fn jws_picks_the_key_by_kid_among_several() -> TestResult {
        let (a, b) = (SigningKey::generate()?, SigningKey::generate()?);
        assert_ne!(a.kid(), b.kid());
        let keys = [a.verifying_entry(), b.verifying_entry()];
        let claims = claims(1);
        assert_eq!(verify_jws(&b.sign(&claims)?, &keys)?, claims);
        assert_eq!(verify_jws(&a.sign(&claims)?, &keys)?, claims);
        Ok(())
    }

    #[test]
    fn sign_refuses_claims_that_are_not_an_object() -> TestResult {
        let key = SigningKey::generate()?;
        assert!(matches!(key.sign(&serde_json::json!(["a"])), Err(JoseError::Malformed(_))));
        Ok(())
    }

    #[test]
    fn jws_refuses_other_algorithms_before_any_crypto() -> TestResult {
        let key = SigningKey::generate()?;
        let keys = [key.verifying_entry()];
        let claims = claims(1);
        for alg in ["none", "HS256", "RS256", "ES256", "eddsa", "EdDSA ", "Ed25519", ""] {
            let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.kid()});
            let token = token_with_header(&header, &claims, "")?;
            assert_eq!(verify_jws(&token, &keys), Err(JoseError::UnsupportedAlgorithm(alg.into())), "{alg}");
        }
        let header = serde_json::json!({"alg": 1, "kid": key.kid()});
        assert!(matches!(verify_jws(&token_with_header(&header, &claims, "")?, &keys), Err(JoseError::Malformed(_))));
        Ok(())
    }

    #[test]
    fn jws_refuses_hs256_keyed_with_the_public_key() -> TestResult {
        use hmac::{KeyInit as _, Mac as _};
        let key = SigningKey::generate()?;
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
        let input = format!("{}.{}", encode_json(&header)?, encode_json(&claims(1))?);
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key.verifying_entry().key.as_bytes())?;
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(verify_jws(&token, &[key.verifying_entry()]), Err(JoseError::UnsupportedAlgorithm("HS256".into())));
        Ok(())
    }

    #[test]
    fn jws_refuses_unknown_or_missing_kid() -> TestResult {
        let (signer, other) = (SigningKey::generate()?, SigningKey::generate()?);
        let token = signer.sign(&claims(1))?;
        assert_eq!(verify_jws(&token, &[other.verifying_entry()]), Err(JoseError::UnknownKey));
        assert_eq!(verify_jws(&token, &[]), Err(JoseError::UnknownKey));
        let no_kid = signer.sign_input(format!("{}.{}", encode_json(&serde_json::json!({"alg": "EdDSA"}))?, "e30"));
        assert_eq!(verify_jws(&no_kid, &[signer.verifying_entry()]), Err(JoseError::UnknownKey));
        Ok(())
    }

    #[test]
    fn jws_refuses_a_known_kid_bound_to_another_key() -> TestResult {
        let (signer, other) = (SigningKey::generate()?, SigningKey::generate()?);
        let forged_entry = VerifyingKeyEntry { kid: signer.kid().to_owned(), key: other.verifying_entry().key };
        assert_eq!(verify_jws(&signer.sign(&claims(1))?, &[forged_entry]), Err(JoseError::BadSignature));
        Ok(())
    }

    #[test]
    fn jws_verification_is_strict_about_small_order_points() -> TestResult {
        // With the identity as public key and R = identity, s = 0, the
        // cofactorless equation holds for any message; verify_strict refuses.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKeyEntry { kid: "weak".into(), key: VerifyingKey::from_bytes(&identity)? };
        let mut signature = [0u8; 64];
        signature[0] = 1;
        let header = serde_json::json!({"alg": "EdDSA", "kid": "weak"});
        let token = token_with_header(&header, &claims(1), &b64(&signature))?;
        assert_eq!(verify_jws(&token, &[weak]), Err(JoseError::BadSignature));
        Ok(())
    }

    #[test]
    fn jws_refuses_tampered_header_payload_or_signature() -> TestResult {
        let key = SigningKey::generate()?;
        let keys = [key.verifying_entry()];
        let token = key.sign(&claims(1))?;
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid(), "x": 1});
        let mut altered_claims = claims(1);
        altered_claims["sub"] = "admin".into();
        let tampered = [
            with_part(&token, 0, &encode_json(&header)?),
            with_part(&token, 1, &encode_json(&altered_claims)?),
            with_part(&token, 2, &flip_middle(token.split('.').nth(2).unwrap_or(""))),
            with_part(&token, 2, &b64(&[0u8; 64])),
            with_part(&token, 2, &b64(&[0u8; 63])),
        ];
        for t in &tampered {
            assert_eq!(verify_jws(t, &keys), Err(JoseError::BadSignature));
        }
        Ok(())
    }

    #[test]
    fn jws_refuses_malformed_structure() -> TestResult {
        let key = SigningKey::generate()?;
        let keys = [key.verifying_entry()];
        let token = key.sign(&claims(1))?;
        let kid = key.kid();
        let crit = serde_json::json!({"alg": "EdDSA", "kid": kid, "crit": ["b64"], "b64": false});
        let typ = serde_json::json!({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"});
        let cases = [
            "".to_owned(),
            format!("{token}."),
            token.rsplit_once('.').map(|(a, _)| a.to_owned()).unwrap_or_default(),
            format!("{token}=="),
            with_part(&token, 0, "e30"),
            with_part(&token, 0, &b64(br#"["EdDSA"]"#)),
            with_part(&token, 0, &b64(br#"{"alg":"none","alg":"EdDSA"}"#)),
            key.sign_input(format!("{}.{}", encode_json(&crit)?, encode_json(&claims(1))?)),
            key.sign_input(format!("{}.{}", encode_json(&typ)?, encode_json(&claims(1))?)),
            key.sign_input(format!("{}.{}", encode_json(&serde_json::json!({"alg": "EdDSA", "kid": kid}))?, "WzFd")),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ];
        for t in &cases {
            assert!(matches!(verify_jws(t, &keys), Err(JoseError::Malformed(_))), "{:?}", verify_jws(t, &keys));
        }
        Ok(())
    }

    #[test]
    fn from_public_jwk_refuses_private_weak_or_foreign_keys() -> TestResult {
        let good = rfc8037_key()?.public_jwk();
        let edit = |name: &str, value: Value| {
            let mut jwk = good.clone();
            jwk[name] = value;
            jwk
        };
        let identity_point = b64(&{
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        });
        let bad = [
            edit("d", RFC8037_D.into()),
            edit("crv", "X25519".into()),
            edit("kty", "EC".into()),
            edit("alg", "HS256".into()),
            edit("use", "enc".into()),
            edit("x", "AAAA".into()),
            edit("x", identity_point.into()),
            edit("kid", 7.into()),
            serde_json::json!("x"),
        ];
        for jwk in &bad {
            assert!(matches!(VerifyingKeyEntry::from_public_jwk(jwk), Err(JoseError::Malformed(_))), "{jwk}");
        }
        let mut anonymous = good.clone();
        anonymous.as_object_mut().map(|o| o.remove("kid"));
        assert_eq!(VerifyingKeyEntry::from_public_jwk(&anonymous)?.kid, RFC8037_THUMBPRINT);
        Ok(())
    }

    // --- JWE ------------------------------------------------------------------

    fn both_keys() -> Result<[JweKey; 2], Box<dyn std::error::Error>> {
        Ok([JweKey::Dir(Key256::generate()?), JweKey::A256Kw(Key256::generate()?)])
    }

    #[test]
    fn jwe_round_trips_with_expected_header() -> TestResult {
        for key in both_keys()? {
            let token = encrypt_jwe(b"secret payload", &key, "k-1", Some("JWT"))?;
            assert_eq!(decrypt_jwe(&token, &key)?.as_slice(), b"secret payload");
            let header: Value = serde_json::from_slice(&unb64(token.split('.').next().unwrap_or(""), "header")?)?;
            let want = serde_json::json!({"alg": key.alg(), "enc": "A256GCM", "kid": "k-1", "cty": "JWT"});
            assert_eq!(header, want);
            assert_eq!(jwe_kid(&token)?.as_deref(), Some("k-1"));
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts[1].is_empty(), matches!(key, JweKey::Dir(_)));
            assert_eq!(unb64(parts[2], "iv")?.len(), 12);
            assert_eq!(unb64(parts[4], "tag")?.len(), 16);
            let empty = encrypt_jwe(b"", &key, "k-1", None)?;
            assert!(decrypt_jwe(&empty, &key)?.is_empty());
        }
        Ok(())
    }

    #[test]
    fn jwe_uses_fresh_iv_and_cek_each_time() -> TestResult {
        for key in both_keys()? {
            let (a, b) = (encrypt_jwe(b"same", &key, "k", None)?, encrypt_jwe(b"same", &key, "k", None)?);
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
            assert_ne!(a[2], b[2]);
            if matches!(key, JweKey::A256Kw(_)) {
                assert_ne!(a[1], b[1]);
            }
        }
        Ok(())
    }

    #[test]
    fn jwe_tampering_with_any_part_is_refused() -> TestResult {
        for key in both_keys()? {
            let token = encrypt_jwe(b"a message long enough to flip a byte", &key, "k", None)?;
            let parts: Vec<&str> = token.split('.').collect();
            let header = serde_json::json!({"alg": key.alg(), "enc": "A256GCM", "kid": "other"});
            let mut tampered = vec![
                with_part(&token, 0, &encode_json(&header)?),
                with_part(&token, 0, &flip_middle(parts[0])),
                with_part(&token, 1, "AAAA"),
                with_part(&token, 2, &flip_middle(parts[2])),
                with_part(&token, 3, &flip_middle(parts[3])),
                with_part(&token, 4, &flip_middle(parts[4])),
            ];
            if !parts[1].is_empty() {
                tampered.push(with_part(&token, 1, &flip_middle(parts[1])));
            }
            for t in &tampered {
                assert!(decrypt_jwe(t, &key).is_err());
            }
            assert_eq!(decrypt_jwe(&tampered[0], &key), Err(JoseError::DecryptFailed));
            assert_eq!(decrypt_jwe(&tampered[3], &key), Err(JoseError::DecryptFailed));
            assert_eq!(decrypt_jwe(&tampered[4], &key), Err(JoseError::DecryptFailed));
            assert_eq!(decrypt_jwe(&tampered[5], &key), Err(JoseError::DecryptFailed));
        }
        Ok(())
    }

    #[test]
    fn jwe_with_the_wrong_key_is_refused() -> TestResult {
        let [dir, kw] = both_keys()?;
        let [other_dir, other_kw] = both_keys()?;
        assert_eq!(decrypt_jwe(&encrypt_jwe(b"x", &dir, "k", None)?, &other_dir), Err(JoseError::DecryptFailed));
        assert_eq!(decrypt_jwe(&encrypt_jwe(b"x", &kw, "k", None)?, &other_kw), Err(JoseError::DecryptFailed));
        Ok(())
    }

    #[test]
    fn jwe_key_is_bound_to_its_algorithm() -> TestResult {
        let bytes = Key256::generate()?;
        let (dir, kw) = (JweKey::Dir(bytes.clone()), JweKey::A256Kw(bytes));
        let kw_token = encrypt_jwe(b"x", &kw, "k", None)?;
        let dir_token = encrypt_jwe(b"x", &dir, "k", None)?;
        assert_eq!(decrypt_jwe(&kw_token, &dir), Err(JoseError::UnsupportedAlgorithm("A256KW".into())));
        assert_eq!(decrypt_jwe(&dir_token, &kw), Err(JoseError::UnsupportedAlgorithm("dir".into())));
        Ok(())
    }

    #[test]
    fn jwe_refuses_other_algorithms_and_features_before_any_crypto() -> TestResult {
        let [dir, kw] = both_keys()?;
        let token = encrypt_jwe(b"x", &dir, "k", None)?;
        let refused = |header: Value| -> Result<JoseError, JoseError> {
            let t = with_part(&token, 0, &encode_json(&header)?);
            Ok(decrypt_jwe(&t, &dir).err().unwrap_or(JoseError::Malformed("accepted")))
        };
        for (alg, enc, named) in [
            ("RSA-OAEP", "A256GCM", "RSA-OAEP"),
            ("A128KW", "A256GCM", "A128KW"),
            ("none", "A256GCM", "none"),
            ("dir", "A128GCM", "A128GCM"),
            ("dir", "A256CBC-HS512", "A256CBC-HS512"),
            ("dir", "a256gcm", "a256gcm"),
        ] {
            let header = serde_json::json!({"alg": alg, "enc": enc});
            assert_eq!(refused(header)?, JoseError::UnsupportedAlgorithm(named.into()));
        }
        assert!(matches!(
            refused(serde_json::json!({"alg": "dir", "enc": "A256GCM", "zip": "DEF"}))?,
            JoseError::Malformed(_)
        ));
        let crit = serde_json::json!({"alg": "dir", "enc": "A256GCM", "crit": ["exp"], "exp": 1});
        assert!(matches!(refused(crit)?, JoseError::Malformed(_)));
        assert!(matches!(refused(serde_json::json!({"alg": "dir"}))?, JoseError::Malformed(_)));
        // A256KW with a too-short encrypted key.
        let kw_token = encrypt_jwe(b"x", &kw, "k", None)?;
        assert!(matches!(decrypt_jwe(&with_part(&kw_token, 1, "AAAA"), &kw), Err(JoseError::Malformed(_))));
        Ok(())
    }

    #[test]
    fn jwe_needs_exactly_five_well_formed_parts() -> TestResult {
        let [dir, _] = both_keys()?;
        let token = encrypt_jwe(b"x", &dir, "k", None)?;
        let short_iv = with_part(&token, 2, &b64(&[0u8; 8]));
        let cases = [
            token.rsplit_once('.').map(|(a, _)| a.to_owned()).unwrap_or_default(),
            format!("{token}.AAAA"),
            with_part(&token, 1, "AAAA"),
            short_iv,
            with_part(&token, 4, &b64(&[0u8; 12])),
            with_part(&token, 3, "a+b/"),
        ];
        for t in &cases {
            assert!(matches!(decrypt_jwe(t, &dir), Err(JoseError::Malformed(_))), "{:?}", decrypt_jwe(t, &dir));
        }
        Ok(())
    }

    // --- claims ---------------------------------------------------------------

    #[test]
    fn claims_accepted_when_valid() -> TestResult {
        let now = 1_700_000_000;
        check_claims(&claims(now), "strongroom", "api", now, 0)?;
        let mut c = claims(now);
        c["aud"] = serde_json::json!(["other", "api"]);
        c["nbf"] = (now + 30).into();
        check_claims(&c, "strongroom", "api", now, 60)?;
        c["exp"] = serde_json::json!(now as f64 + 0.5);
        check_claims(&c, "strongroom", "api", now, 60)?;
        Ok(())
    }

    #[test]
    fn claims_refused_when_expired_early_or_foreign() {
        let now = 1_700_000_000;
        let with = |name: &str, value: Value| {
            let mut c = claims(now);
            c[name] = value;
            c
        };
        let without = |name: &str| {
            let mut c = claims(now);
            c.as_object_mut().map(|o| o.remove(name));
            c
        };
        let cases = [
            (with("exp", (now - 60).into()), JoseError::Expired),
            (with("exp", (now - 100).into()), JoseError::Expired),
            (with("nbf", (now + 61).into()), JoseError::NotYetValid),
            (with("iss", "someone-else".into()), JoseError::WrongIssuer),
            (with("iss", 1.into()), JoseError::WrongIssuer),
            (with("aud", "other".into()), JoseError::WrongAudience),
            (with("aud", serde_json::json!(["a", "b"])), JoseError::WrongAudience),
            (with("aud", serde_json::json!({"api": true})), JoseError::WrongAudience),
            (without("exp"), JoseError::MissingClaim("exp")),
            (without("iss"), JoseError::MissingClaim("iss")),
            (without("aud"), JoseError::MissingClaim("aud")),
            (with("exp", "tomorrow".into()), JoseError::Malformed("NumericDate claim is not a number")),
            (serde_json::json!([1]), JoseError::Malformed("claims are not a JSON object")),
        ];
        for (c, want) in cases {
            assert_eq!(check_claims(&c, "strongroom", "api", now, 60), Err(want.clone()), "{c}");
        }
        assert_eq!(check_claims(&with("exp", (now - 30).into()), "strongroom", "api", now, 60), Ok(()));
        assert_eq!(
            check_claims(&with("exp", (now - 30).into()), "strongroom", "api", now, -5),
            Err(JoseError::Expired)
        );
    }

    // --- hygiene --------------------------------------------------------------

    #[test]
    fn debug_output_never_shows_key_material() -> TestResult {
        let key = rfc8037_key()?;
        let printed = format!("{key:?}");
        assert!(printed.contains("[redacted]") && printed.contains(RFC8037_THUMBPRINT));
        assert!(!printed.contains(RFC8037_D) && !printed.to_lowercase().contains("9d61b19d"));
        let jwe_key = JweKey::A256Kw(key256(RFC3394_KEK)?);
        assert_eq!(format!("{jwe_key:?}"), "A256Kw(Key256([redacted]))");
        Ok(())
    }

    #[test]
    fn errors_do_not_echo_token_contents() -> TestResult {
        let key = SigningKey::generate()?;
        let long_alg = format!("HS256\u{1b}[31m{}", "x".repeat(100));
        let header = serde_json::json!({"alg": long_alg, "kid": key.kid()});
        let secret_claims = serde_json::json!({"password": "hunter2-very-secret"});
        let token = token_with_header(&header, &secret_claims, "sig")?;
        let err = verify_jws(&token, &[key.verifying_entry()]).err().ok_or("accepted")?;
        let shown = err.to_string();
        assert_eq!(err, JoseError::UnsupportedAlgorithm("HS256?[31mxxxxxxxxxxxxxx".into()));
        assert!(!shown.contains("hunter2") && !shown.contains('\u{1b}') && shown.len() < 60, "{shown}");
        let jwe = encrypt_jwe(b"hunter2-very-secret", &JweKey::Dir(Key256::generate()?), "k", None)?;
        let shown = decrypt_jwe(&jwe, &JweKey::Dir(Key256::generate()?)).err().ok_or("accepted")?.to_string();
        assert!(!shown.contains("hunter2") && !shown.contains(jwe.split('.').nth(3).unwrap_or("-")));
        Ok(())
    }
}
