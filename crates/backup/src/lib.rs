//! Backups: a versioned, encrypted archive format, directory and S3 targets,
//! schedules with retention, restores and drills.

pub mod format;
pub mod ops;
pub mod retention;
pub mod schedule;

pub use ops::{
    BackupError, Backups, Created, DrillReport, Listed, Progress, Quiet, Restored, Scratch, Target, check_restored,
    restore, valid_schedule_name,
};
