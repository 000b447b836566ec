//! Versioned, checksummed schema migrations: the embedded list per backend
//! and the pure check that decides what to apply or refuse (claim 002.3).

use sha2::{Digest, Sha256};

/// One migration as embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL text, hex encoded: what is recorded when applied.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// `0001_organisations`: the name an operator sees in errors.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// A migration as recorded in the `schema_migrations` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
}

/// Why the database's schema history does not match this binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A migration's text changed after it was applied.
    #[error(
        "migration {label} was edited after it was applied (recorded checksum {recorded}, this binary has {embedded}); released migrations must never change"
    )]
    Edited { label: String, recorded: String, embedded: String },
    /// The database has a migration this binary does not know: it was
    /// migrated by a newer release.
    #[error(
        "the database has migration {label}, which this binary does not know; it was migrated by a newer release of Strongroom"
    )]
    Unknown { label: String },
    /// A migration older than the newest applied one is missing from the
    /// database, so applying it now would run it out of order.
    #[error("migration {label} is not applied but a later one is; the schema history is out of order")]
    OutOfOrder { label: String },
}

/// Compares the embedded migrations with the recorded ones and returns those
/// to apply, in order; any mismatch refuses the whole start.
pub fn plan<'a>(embedded: &'a [Migration], applied: &[Applied]) -> Result<Vec<&'a Migration>, MigrationError> {
    for recorded in applied {
        let label = format!("{:04}_{}", recorded.version, recorded.name);
        let Some(m) = embedded.iter().find(|m| m.version == recorded.version) else {
            return Err(MigrationError::Unknown { label });
        };
        let embedded_sum = m.checksum();
        if embedded_sum != recorded.checksum {
            return Err(MigrationError::Edited {
                label: m.label(),
                recorded: recorded.checksum.clone(),
                embedded: embedded_sum,
            });
        }
    }
    let newest_applied = applied.iter().map(|a| a.version).max();
    let pending: Vec<&Migration> =
        embedded.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).collect();
    if let (Some(newest), Some(first)) = (newest_applied, pending.first())
        && first.version < newest
    {
        return Err(MigrationError::OutOfOrder { label: first.label() });
    }
    Ok(pending)
}

/// The SQLite migrations, in order.
pub(crate) const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "organisations", sql: include_str!("../migrations/sqlite/0001_organisations.sql") },
    Migration { version: 2, name: "org_keys", sql: include_str!("../migrations/sqlite/0002_org_keys.sql") },
    Migration { version: 3, name: "identity", sql: include_str!("../migrations/sqlite/0003_identity.sql") },
    Migration { version: 4, name: "mfa", sql: include_str!("../migrations/sqlite/0004_mfa.sql") },
    Migration {
        version: 5,
        name: "service_accounts",
        sql: include_str!("../migrations/sqlite/0005_service_accounts.sql"),
    },
    Migration { version: 6, name: "invitations", sql: include_str!("../migrations/sqlite/0006_invitations.sql") },
    Migration { version: 7, name: "profiles", sql: include_str!("../migrations/sqlite/0007_profiles.sql") },
    Migration { version: 8, name: "audit", sql: include_str!("../migrations/sqlite/0008_audit.sql") },
    Migration { version: 9, name: "audit_sinks", sql: include_str!("../migrations/sqlite/0009_audit_sinks.sql") },
    Migration {
        version: 10,
        name: "support_sessions",
        sql: include_str!("../migrations/sqlite/0010_support_sessions.sql"),
    },
    Migration {
        version: 11,
        name: "account_grants",
        sql: include_str!("../migrations/sqlite/0011_account_grants.sql"),
    },
    Migration { version: 12, name: "backups", sql: include_str!("../migrations/sqlite/0012_backups.sql") },
    Migration { version: 13, name: "retention", sql: include_str!("../migrations/sqlite/0013_retention.sql") },
];

/// The PostgreSQL migrations, in order.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "organisations", sql: include_str!("../migrations/postgres/0001_organisations.sql") },
    Migration { version: 2, name: "org_keys", sql: include_str!("../migrations/postgres/0002_org_keys.sql") },
    Migration { version: 3, name: "identity", sql: include_str!("../migrations/postgres/0003_identity.sql") },
    Migration { version: 4, name: "mfa", sql: include_str!("../migrations/postgres/0004_mfa.sql") },
    Migration {
        version: 5,
        name: "service_accounts",
        sql: include_str!("../migrations/postgres/0005_service_accounts.sql"),
    },
    Migration { version: 6, name: "invitations", sql: include_str!("../migrations/postgres/0006_invitations.sql") },
    Migration { version: 7, name: "profiles", sql: include_str!("../migrations/postgres/0007_profiles.sql") },
    Migration { version: 8, name: "audit", sql: include_str!("../migrations/postgres/0008_audit.sql") },
    Migration { version: 9, name: "audit_sinks", sql: include_str!("../migrations/postgres/0009_audit_sinks.sql") },
    Migration {
        version: 10,
        name: "support_sessions",
        sql: include_str!("../migrations/postgres/0010_support_sessions.sql"),
    },
    Migration {
        version: 11,
        name: "account_grants",
        sql: include_str!("../migrations/postgres/0011_account_grants.sql"),
    },
    Migration { version: 12, name: "backups", sql: include_str!("../migrations/postgres/0012_backups.sql") },
    Migration { version: 13, name: "retention", sql: include_str!("../migrations/postgres/0013_retention.sql") },
];

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: Migration = Migration { version: 1, name: "one", sql: "create table a (x int);" };
    const TWO: Migration = Migration { version: 2, name: "two", sql: "create table b (x int);" };

    fn applied(m: &Migration) -> Applied {
        Applied { version: m.version, name: m.name.into(), checksum: m.checksum() }
    }

    #[test]
    fn fresh_database_applies_everything_in_order() {
        let plan = plan(&[ONE, TWO], &[]).map(|p| p.iter().map(|m| m.version).collect::<Vec<_>>());
        assert_eq!(plan, Ok(vec![1, 2]));
    }

    #[test]
    fn up_to_date_database_applies_nothing() {
        assert_eq!(plan(&[ONE, TWO], &[applied(&ONE), applied(&TWO)]).map(|p| p.len()), Ok(0));
    }

    // claim 002.3
    #[test]
    fn edited_migration_is_refused_by_name() {
        let edited = Migration { sql: "create table a (x bigint);", ..ONE };
        let err = plan(&[edited, TWO], &[applied(&ONE)]).err();
        assert!(matches!(&err, Some(MigrationError::Edited { label, .. }) if label == "0001_one"), "{err:?}");
    }

    #[test]
    fn migration_from_a_newer_release_is_refused() {
        let err = plan(&[ONE], &[applied(&ONE), applied(&TWO)]).err();
        assert!(matches!(err, Some(MigrationError::Unknown { label }) if label == "0002_two"));
    }

    #[test]
    fn gap_in_history_is_refused() {
        let err = plan(&[ONE, TWO], &[applied(&TWO)]).err();
        assert!(matches!(err, Some(MigrationError::OutOfOrder { label }) if label == "0001_one"));
    }

    #[test]
    fn embedded_lists_are_ordered_and_paired() {
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
        }
        let names = |l: &[Migration]| l.iter().map(Migration::label).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES), "every migration exists for both backends");
    }
}
