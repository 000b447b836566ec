//! What every backend must do: round-trip wrapped keys, refuse any other
//! context or altered bytes, randomise wraps, report health, and keep old
//! wrapped keys unwrapping after a root rotation.

use crypto::{KeyContext, KeyPurpose};
use kms::{Kms, KmsError, WrappedKey};

fn context(scope: &str) -> KeyContext {
    KeyContext { purpose: KeyPurpose::Conformance, scope: scope.to_owned(), version: 1 }
}

/// Runs the whole suite against one backend. `rotates` says whether the
/// backend numbers its root versions (AWS rotates without numbers).
pub async fn run(kms: &Kms, backend: &str, rotates: bool) {
    assert_eq!(kms.info().backend, backend);
    kms.health().await.unwrap_or_else(|e| panic!("{backend} health: {e}"));

    let scope = uuid::Uuid::new_v4().to_string();
    let ctx = context(&scope);
    let (key, wrapped) = kms.generate_data_key(&ctx).await.unwrap_or_else(|e| panic!("{backend} wrap: {e}"));
    let back = kms.unwrap(&wrapped, &ctx).await.unwrap_or_else(|e| panic!("{backend} unwrap: {e}"));
    assert_eq!(back.expose_for_cipher(), key.expose_for_cipher(), "{backend}: round trip");
    assert!(!contains(&wrapped.0, key.expose_for_cipher()), "{backend}: wrapped form holds the plaintext key");

    let again = kms.wrap(&key, &ctx).await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(again, wrapped, "{backend}: wrapping is randomised");

    // claim 000.6 003.6
    let wrong = [
        KeyContext { scope: format!("{scope}-other"), ..ctx.clone() },
        KeyContext { purpose: KeyPurpose::OrgKey, ..ctx.clone() },
        KeyContext { version: 2, ..ctx.clone() },
    ];
    for other in &wrong {
        let r = kms.unwrap(&wrapped, other).await;
        assert!(matches!(r, Err(KmsError::Refused { .. })), "{backend}: other context {other:?} gave {r:?}");
    }
    let mut altered = wrapped.0.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x01;
    let r = kms.unwrap(&WrappedKey(altered), &ctx).await;
    assert!(r.is_err() && !r.as_ref().is_err_and(KmsError::is_unavailable), "{backend}: altered bytes gave {r:?}");

    if rotates {
        let before = kms.info().key_id;
        let v = kms.rotate_root().await.unwrap_or_else(|e| panic!("{backend} rotate: {e}"));
        assert!(v >= 2, "{backend}: rotation adds a version");
        assert_ne!(kms.info().key_id, before, "{backend}: info names the new version");
        let old =
            kms.unwrap(&wrapped, &ctx).await.unwrap_or_else(|e| panic!("{backend}: old wrap after rotation: {e}"));
        assert_eq!(old.expose_for_cipher(), key.expose_for_cipher());
        let (k2, w2) = kms.generate_data_key(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
        let b2 = kms.unwrap(&w2, &ctx).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b2.expose_for_cipher(), k2.expose_for_cipher());
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
