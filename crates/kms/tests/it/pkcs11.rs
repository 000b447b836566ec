//! The PKCS#11 backend against SoftHSM2: conformance, a root key that the
//! token marks sensitive and non-extractable, and clear configuration errors.

use kms::{Kms, KmsError, Pkcs11Config, Pkcs11Kms};
use zeroize::Zeroizing;

use crate::peer_env;

fn config(key_label: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: peer_env("STRONGROOM_TEST_PKCS11_MODULE").into(),
        token_label: peer_env("STRONGROOM_TEST_PKCS11_TOKEN"),
        key_label: key_label.to_owned(),
        pin: Zeroizing::new(peer_env("STRONGROOM_TEST_PKCS11_PIN")),
    }
}

fn unique_label() -> String {
    format!("sr-test-{}", uuid::Uuid::new_v4().simple())
}

// claim 000.6 003.6
#[tokio::test]
async fn softhsm_passes_the_conformance_suite() {
    let kms = Pkcs11Kms::open(config(&unique_label()), true).unwrap_or_else(|e| panic!("{e}"));
    crate::conformance::run(&Kms::Pkcs11(kms), "pkcs11", true).await;
}

// claim 000.6
#[tokio::test]
async fn the_root_key_cannot_leave_the_token() {
    let kms = Pkcs11Kms::open(config(&unique_label()), true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kms.root_keys_locked_in().await.ok(), Some(true));
}

#[tokio::test]
async fn a_missing_key_wrong_token_or_wrong_pin_is_a_clear_configuration_error() {
    let missing = Pkcs11Kms::open(config(&unique_label()), false);
    assert!(matches!(&missing, Err(KmsError::Config { setting: "kms.pkcs11.key_label", .. })), "{missing:?}");
    let wrong_token = Pkcs11Kms::open(Pkcs11Config { token_label: "no-such-token".into(), ..config("x") }, false);
    assert!(matches!(&wrong_token, Err(KmsError::Config { setting: "kms.pkcs11.token_label", .. })), "{wrong_token:?}");
    let wrong_pin = Pkcs11Kms::open(Pkcs11Config { pin: Zeroizing::new("0000".into()), ..config("x") }, false);
    assert!(matches!(&wrong_pin, Err(KmsError::Config { setting: "kms.pkcs11.pin", .. })), "{wrong_pin:?}");
}
