//! The audit trail: one hash chain per organisation plus a platform chain,
//! signed checkpoints, verification and off-host sinks.
//!
//! Architecture invariant: entries hold identifiers and field names, never a
//! personal value, so erasing personal data never breaks a chain.
//!
//! The chain arrives with the audit capability; today the crate only marks
//! its place in the dependency graph.
