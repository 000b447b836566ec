//! Key management backends: the `Kms` trait wraps and unwraps key material
//! under a root key that never leaves its backend (local sealed keystore,
//! PKCS#11 HSM, AWS KMS, Vault/OpenBao Transit).
//!
//! Architecture invariant: only this crate talks to key backends.
//!
//! The trait and its backends arrive with the key hierarchy; today the crate
//! only marks its place in the dependency graph.
