//! The local sealed keystore: conformance, unsealing by passphrase and key
//! file, clear refusals, private files, and no plaintext root key on disk.

use std::os::unix::fs::PermissionsExt;

use kms::{Kms, KmsError, LocalKms, UnsealSecret};
use zeroize::Zeroizing;

fn passphrase(p: &str) -> UnsealSecret {
    UnsealSecret::Passphrase(Zeroizing::new(p.to_owned()))
}

// claim 000.6
#[tokio::test]
async fn local_keystore_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kms = LocalKms::init(dir.path(), &passphrase("correct horse battery")).unwrap_or_else(|e| panic!("{e}"));
    crate::conformance::run(&Kms::Local(kms), "local", true).await;
}

#[tokio::test]
async fn unsealing_needs_the_same_secret_and_survives_rotation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secret = passphrase("correct horse battery");
    let kms = Kms::Local(LocalKms::init(dir.path(), &secret).unwrap_or_else(|e| panic!("{e}")));
    let ctx = crypto::KeyContext::deployment(crypto::KeyPurpose::DatabaseKey);
    let (key, wrapped) = kms.generate_data_key(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    kms.rotate_root().await.unwrap_or_else(|e| panic!("{e}"));
    drop(kms);

    let reopened = Kms::Local(LocalKms::unseal(dir.path(), &secret).unwrap_or_else(|e| panic!("{e}")));
    let back = reopened.unwrap(&wrapped, &ctx).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.expose_for_cipher(), key.expose_for_cipher());
    assert!(reopened.info().key_id.ends_with("v2"), "{:?}", reopened.info());

    let wrong = LocalKms::unseal(dir.path(), &passphrase("wrong horse battery"));
    let msg = wrong.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("wrong unseal passphrase or key file"), "{msg}");
}

#[test]
fn keystore_files_are_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    LocalKms::init(dir.path(), &passphrase("correct horse battery")).unwrap_or_else(|e| panic!("{e}"));
    let mode = std::fs::metadata(dir.path().join("root.json")).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    let again = LocalKms::init(dir.path(), &passphrase("another passphrase"));
    assert!(matches!(again, Err(KmsError::Keystore { .. })), "{again:?}");
}

#[test]
fn weak_secrets_and_missing_or_exposed_key_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let short = LocalKms::init(dir.path(), &passphrase("short"));
    assert!(short.err().is_some_and(|e| e.to_string().contains("at least 12 characters")));

    let missing = UnsealSecret::from_key_file(&dir.path().join("nope.key"));
    assert!(missing.err().is_some_and(|e| e.to_string().contains("nope.key")));

    let exposed = dir.path().join("exposed.key");
    std::fs::write(&exposed, [7u8; 64]).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    let r = UnsealSecret::from_key_file(&exposed);
    assert!(r.err().is_some_and(|e| e.to_string().contains("chmod 600")));

    let unsealed_nothing = LocalKms::unseal(&dir.path().join("empty"), &passphrase("correct horse battery"));
    assert!(unsealed_nothing.err().is_some_and(|e| e.to_string().contains("strongroom init")));
}

#[tokio::test]
async fn a_key_file_unseals_and_the_root_key_is_never_on_disk_in_clear() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keyfile = dir.path().join("unseal.key");
    std::fs::write(&keyfile, [42u8; 64]).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("keystore");
    let secret = UnsealSecret::from_key_file(&keyfile).unwrap_or_else(|e| panic!("{e}"));
    let kms = LocalKms::init(&store, &secret).unwrap_or_else(|e| panic!("{e}"));
    // The root key is the only key that unwraps this; if its bytes were on
    // disk, the file would contain them.
    let ctx = crypto::KeyContext::deployment(crypto::KeyPurpose::Conformance);
    let (key, _) = Kms::Local(kms).generate_data_key(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    let on_disk = std::fs::read(store.join("root.json")).unwrap_or_default();
    assert!(!on_disk.windows(32).any(|w| w == key.expose_for_cipher()));
    let text = String::from_utf8_lossy(&on_disk);
    assert!(text.contains("argon2id") && text.contains("\"sealed\""), "{text}");
    assert!(LocalKms::unseal(&store, &UnsealSecret::from_key_file(&keyfile).unwrap_or_else(|e| panic!("{e}"))).is_ok());
}
