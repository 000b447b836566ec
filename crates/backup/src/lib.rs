//! Backups: a versioned, encrypted archive format, directory and S3 targets,
//! schedules with retention, restores and drills.
//!
//! The archive format arrives with the backup capability; today the crate
//! only marks its place in the dependency graph.
