//! The Transit backend against an OpenBao dev server: conformance
//! (including Transit's own key rotation), and a wrong token or a server
//! that is down reported as what they are.

use kms::{Kms, KmsError, TransitConfig, TransitKms};
use zeroize::Zeroizing;

use crate::peer_env;

fn config() -> TransitConfig {
    TransitConfig {
        address: peer_env("STRONGROOM_TEST_TRANSIT_ADDR"),
        mount: "transit".into(),
        key: peer_env("STRONGROOM_TEST_TRANSIT_KEY"),
        token: Zeroizing::new(peer_env("STRONGROOM_TEST_TRANSIT_TOKEN")),
        ca_file: None,
    }
}

// claim 000.6 003.6
#[tokio::test]
async fn openbao_transit_passes_the_conformance_suite() {
    let kms = TransitKms::open(config()).await.unwrap_or_else(|e| panic!("{e}"));
    crate::conformance::run(&Kms::Transit(kms), "transit", true).await;
}

#[tokio::test]
async fn a_wrong_token_or_missing_key_is_a_configuration_error() {
    let bad_token = TransitKms::open(TransitConfig { token: Zeroizing::new("not-the-token".into()), ..config() }).await;
    assert!(matches!(&bad_token, Err(KmsError::Config { setting: "kms.transit.token", .. })), "{bad_token:?}");
    let bad_key = TransitKms::open(TransitConfig { key: "no-such-key".into(), ..config() }).await;
    assert!(matches!(&bad_key, Err(KmsError::Config { .. })), "{bad_key:?}");
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable_not_refused() {
    let down = TransitKms::open(TransitConfig { address: "http://127.0.0.1:9".into(), ..config() }).await;
    assert!(down.as_ref().is_err_and(KmsError::is_unavailable), "{down:?}");
}
