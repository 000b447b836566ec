//! Cryptography for Strongroom: AEAD envelopes, typed keys, blind indexes,
//! JOSE, password hashing and TOTP, all over well-kept primitives.
//!
//! Architecture invariant: this crate does no IO. It depends only on
//! `domain`. Every choice made here is recorded in `docs/security.md`.
//!
//! The primitives arrive with the key hierarchy; today the crate only marks
//! its place in the dependency graph.
