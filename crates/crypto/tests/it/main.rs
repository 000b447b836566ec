//! Tests of the crypto crate's public API: known answers from published
//! vectors (`kat`) and the properties of the envelope formats (`envelope`).

mod envelope;
mod jose_interop;
mod kat;
