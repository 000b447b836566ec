//! Interop with jwcrypto, the independent JOSE peer, in both directions:
//! EdDSA JWS, dir + A256GCM JWE and A256KW + A256GCM JWE, each made by one
//! side and accepted by the other. Needs STRONGROOM_TEST_JWCRYPTO_PYTHON (a
//! Python with jwcrypto; scripts/test provides it) and the bridge script
//! `scripts/jose_interop.py` (or STRONGROOM_TEST_JOSE_INTEROP_SCRIPT).

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crypto::Key256;
use crypto::jose::{JweKey, SigningKey, check_claims, decrypt_jwe, encrypt_jwe, verify_jws};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn python() -> String {
    std::env::var("STRONGROOM_TEST_JWCRYPTO_PYTHON").unwrap_or_else(|_| {
        panic!("STRONGROOM_TEST_JWCRYPTO_PYTHON is not set: run scripts/test, which installs jwcrypto")
    })
}

fn script() -> PathBuf {
    std::env::var_os("STRONGROOM_TEST_JOSE_INTEROP_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/jose_interop.py"))
}

/// Runs one subcommand of the bridge; its stdout line, or its stderr line.
fn peer(args: &[&str]) -> Result<String, String> {
    let out = Command::new(python()).arg(script()).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn random<const N: usize>() -> Result<[u8; N], Box<dyn std::error::Error>> {
    let mut b = [0u8; N];
    crypto::random_bytes(&mut b)?;
    Ok(b)
}

fn claims() -> Value {
    serde_json::json!({"iss": "strongroom", "aud": ["api", "admin"], "sub": "user-7", "exp": 4_000_000_000_i64, "n": 1.5})
}

/// A fresh Ed25519 key and its private JWK (as jwcrypto reads it).
fn ed25519_pair() -> Result<(SigningKey, String), Box<dyn std::error::Error>> {
    let seed = random::<32>()?;
    let key = SigningKey::from_seed(&seed);
    let mut jwk = key.public_jwk();
    jwk["d"] = URL_SAFE_NO_PAD.encode(seed).into();
    Ok((key, jwk.to_string()))
}

/// A JWE key, the `alg` it implies and its bytes in hex for the peer.
type PeerKey = (JweKey, &'static str, String);

fn jwe_keys() -> Result<[PeerKey; 2], Box<dyn std::error::Error>> {
    let (a, b) = (random::<32>()?, random::<32>()?);
    Ok([
        (JweKey::Dir(Key256::from_slice(&mut a.clone())?), "dir", hex::encode(a)),
        (JweKey::A256Kw(Key256::from_slice(&mut b.clone())?), "A256KW", hex::encode(b)),
    ])
}

#[test]
fn kid_is_the_rfc7638_thumbprint_jwcrypto_computes() -> TestResult {
    let (key, _) = ed25519_pair()?;
    assert_eq!(peer(&["thumbprint", "--jwk", &key.public_jwk().to_string()])?, key.kid());
    Ok(())
}

#[test]
fn jws_made_by_jwcrypto_is_verified_by_strongroom() -> TestResult {
    let (key, private_jwk) = ed25519_pair()?;
    let token = peer(&["make-jws", "--jwk", &private_jwk, "--claims", &claims().to_string()])?;
    let verified = verify_jws(&token, &[key.verifying_entry()])?;
    assert_eq!(verified, claims());
    check_claims(&verified, "strongroom", "api", 1_700_000_000, 0)?;
    // Signed by another key under the same kid: refused.
    let (_, other_jwk) = ed25519_pair()?;
    // `--kid=` form: a base64url thumbprint may start with '-', which
    // argparse would take for an option.
    let kid_arg = format!("--kid={}", key.kid());
    let forged = peer(&["make-jws", "--jwk", &other_jwk, "--claims", "{}", &kid_arg])?;
    assert!(verify_jws(&forged, &[key.verifying_entry()]).is_err());
    Ok(())
}

#[test]
fn jws_made_by_strongroom_is_verified_by_jwcrypto() -> TestResult {
    let (key, _) = ed25519_pair()?;
    let token = key.sign(&claims())?;
    let public = key.public_jwk().to_string();
    let expect_arg = format!("--expect-kid={}", key.kid());
    let printed = peer(&["verify-jws", "--jwk", &public, "--token", &token, &expect_arg])?;
    assert_eq!(serde_json::from_str::<Value>(&printed)?, claims());
    // The peer is not a rubber stamp: another key fails there.
    let (other, _) = ed25519_pair()?;
    assert!(peer(&["verify-jws", "--jwk", &other.public_jwk().to_string(), "--token", &token]).is_err());
    Ok(())
}

#[test]
fn jwe_made_by_jwcrypto_is_decrypted_by_strongroom() -> TestResult {
    let plaintext = random::<97>()?;
    for (key, alg, key_hex) in jwe_keys()? {
        let args = ["make-jwe", "--alg", alg, "--key-hex", &key_hex, "--plaintext-hex", &hex::encode(plaintext)];
        let token = peer(&[&args[..], &["--kid", "k-1", "--cty", "JWT"]].concat())?;
        assert_eq!(decrypt_jwe(&token, &key)?.as_slice(), plaintext, "{alg}");
        let empty = peer(&["make-jwe", "--alg", alg, "--key-hex", &key_hex, "--plaintext-hex", ""])?;
        assert!(decrypt_jwe(&empty, &key)?.is_empty(), "{alg}");
    }
    // Made with one key, opened with another of the same kind: refused.
    let [(dir, _, _), (kw, _, _)] = jwe_keys()?;
    let [(_, _, other_dir), (_, _, other_kw)] = jwe_keys()?;
    let t = peer(&["make-jwe", "--alg", "dir", "--key-hex", &other_dir, "--plaintext-hex", "00"])?;
    assert!(decrypt_jwe(&t, &dir).is_err());
    let t = peer(&["make-jwe", "--alg", "A256KW", "--key-hex", &other_kw, "--plaintext-hex", "00"])?;
    assert!(decrypt_jwe(&t, &kw).is_err());
    Ok(())
}

#[test]
fn jwe_made_by_strongroom_is_decrypted_by_jwcrypto() -> TestResult {
    let plaintext = random::<97>()?;
    for (key, alg, key_hex) in jwe_keys()? {
        let token = encrypt_jwe(&plaintext, &key, "k-1", Some("JWT"))?;
        assert_eq!(
            peer(&["open-jwe", "--alg", alg, "--key-hex", &key_hex, "--token", &token])?,
            hex::encode(plaintext)
        );
        // (No empty-plaintext case this way: jwcrypto 1.5/1.6 reports an empty
        // plaintext as a failed decryption, even for its own tokens.)
        // A flipped tag fails there too.
        let (rest, tag) = token.rsplit_once('.').ok_or("no tag")?;
        let flipped = format!("{rest}.{}{}", if tag.starts_with('A') { "B" } else { "A" }, &tag[1..]);
        assert!(peer(&["open-jwe", "--alg", alg, "--key-hex", &key_hex, "--token", &flipped]).is_err(), "{alg}");
    }
    Ok(())
}
