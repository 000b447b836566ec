//! Known-answer tests from published vectors kept as data files in
//! `tests/vectors/`: AES-256-GCM (NIST CAVP / the GCM specification), HKDF
//! (RFC 5869) and HMAC-SHA256 (RFC 4231).

use std::collections::HashMap;

use crypto::{Key256, danger_seal_with_nonce, hkdf_sha256, hmac_sha256, open};

/// Parses a vector file: blocks of `name = hex` lines separated by blank
/// lines; `#` starts a comment.
fn vectors(name: &str) -> Vec<HashMap<String, String>> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    let mut block = HashMap::new();
    for line in text.lines().map(str::trim).chain([""]) {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !block.is_empty() {
                out.push(std::mem::take(&mut block));
            }
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{path}: bad line {line:?}"));
        block.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    out
}

fn hex(v: &HashMap<String, String>, k: &str) -> Vec<u8> {
    hex::decode(v.get(k).unwrap_or_else(|| panic!("missing {k} in {v:?}"))).unwrap_or_else(|e| panic!("{k}: {e}"))
}

// claim 004.7
#[test]
fn aes_256_gcm_matches_published_vectors() {
    let all = vectors("aes_256_gcm.txt");
    assert!(all.len() >= 6, "{} vectors", all.len());
    for v in &all {
        let key = Key256::from_slice(&mut hex(v, "key")).unwrap_or_else(|e| panic!("{e}"));
        let nonce: [u8; 12] = hex(v, "iv").try_into().unwrap_or_else(|_| panic!("iv length"));
        let (aad, pt) = (hex(v, "aad"), hex(v, "pt"));
        let expected = [nonce.to_vec(), hex(v, "ct"), hex(v, "tag")].concat();
        let sealed = danger_seal_with_nonce(&key, &nonce, &aad, &pt).unwrap_or_default();
        assert_eq!(hex::encode(&sealed), hex::encode(&expected), "{v:?}");
        assert_eq!(open(&key, &aad, &expected).map(|p| p.to_vec()), Ok(pt), "{v:?}");
    }
}

#[test]
fn hkdf_sha256_matches_rfc_5869() {
    let all = vectors("hkdf_sha256.txt");
    assert_eq!(all.len(), 3);
    for v in &all {
        let len: usize = v.get("l").and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("l"));
        let (prk, okm) = hkdf_sha256(&hex(v, "salt"), &hex(v, "ikm"), &hex(v, "info"), len).unwrap_or_default();
        assert_eq!(hex::encode(prk), hex::encode(hex(v, "prk")), "{v:?}");
        assert_eq!(hex::encode(okm), hex::encode(hex(v, "okm")), "{v:?}");
    }
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    let all = vectors("hmac_sha256.txt");
    assert_eq!(all.len(), 6);
    for v in &all {
        assert_eq!(hex::encode(hmac_sha256(&hex(v, "key"), &hex(v, "data"))), hex::encode(hex(v, "mac")), "{v:?}");
    }
}
