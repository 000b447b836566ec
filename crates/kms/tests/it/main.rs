//! The KMS conformance suite, run against every backend on its real peer:
//! the local keystore, SoftHSM2 over PKCS#11, OpenBao Transit and moto's
//! AWS KMS. Peers are started by `scripts/test`, which exports their
//! `STRONGROOM_TEST_*` settings; without them these tests fail, never skip.

#[cfg(feature = "aws")]
mod aws;
mod conformance;
mod local;
mod pkcs11;
mod transit;

/// A peer setting from the environment, or a failure naming it.
pub fn peer_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test, which starts the peer"))
}
