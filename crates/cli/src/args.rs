//! Command-line arguments. Every command that touches a deployment takes
//! the same configuration options, each also read from a `STRONGROOM_*`
//! environment variable; a flag wins over its variable, which wins over the
//! config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use server::config::Overrides;

#[derive(Debug, Parser)]
#[command(name = "strongroom", version, about = "A vault for the personal data a SaaS product keeps for its clients")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a deployment: the key backend's root key (or the local sealed
    /// keystore), the database key, the database and the first operator.
    Init {
        /// The first operator's e-mail address.
        #[arg(long, default_value = "operator@strongroom.local")]
        operator_email: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Serve the API over HTTPS.
    Serve(ConfigArgs),
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Inspect and manage the key hierarchy.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify and checkpoint the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Make, list, verify, restore, prune and rehearse encrypted backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Show, set and sweep organisations' retention policies.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Import profiles from a CSV file (the export's format): every row is
    /// checked first; with any bad row nothing is written unless
    /// --skip-invalid.
    Import {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        /// Write the good rows and report the bad ones.
        #[arg(long)]
        skip_invalid: bool,
        /// The CSV file.
        file: std::path::PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Export an organisation's profiles, decrypted, as CSV or JSON lines
    /// (chained in its audit trail with the row count); with --audit, its
    /// audit trail instead.
    Export {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        /// csv or jsonl.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here (created 0600, never overwritten); standard output by
        /// default.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Export the audit trail (hashes included, so it can be checked).
        #[arg(long)]
        audit: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write a pseudonymised dataset of an organisation's profiles for
    /// development and testing: every personal and sensitive value replaced
    /// by a consistent, realistic fake (from a key that is not kept), plain
    /// values kept; importable with `strongroom import`.
    Pseudonymise {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        /// csv or jsonl.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here (created 0600, never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organisation memberships.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Print the effective configuration, secrets redacted; exit non-zero if
    /// any setting is invalid or unsafe.
    CheckConfig(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation (and version 1 of its key).
    Create {
        /// URL-safe handle: 3-63 lowercase letters, digits, inner hyphens.
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List organisations.
    List(ConfigArgs),
    /// Rename an organisation.
    Rename {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Suspend an organisation: its members and applications are refused
    /// until it is resumed; nothing is deleted.
    Suspend {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Resume a suspended organisation.
    Resume {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Offboard an organisation for good: hand over its data (profiles,
    /// attachments and audit trail) into a new directory, then suspend it,
    /// destroy its keys, prove a sample no longer decrypts, and remove its
    /// rows and attachments. Writes a report into the directory.
    Offboard {
        #[arg(long)]
        org: String,
        /// A new directory for the handover (created 0700).
        #[arg(long)]
        export_dir: std::path::PathBuf,
        /// The organisation's slug again: this cannot be undone.
        #[arg(long)]
        confirm: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from standard input or a
    /// file, never from the command line; without one, a single-use setup
    /// token is printed instead.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Make the account an operator (platform staff).
        #[arg(long)]
        operator: bool,
        /// Read the password from standard input (first line).
        #[arg(long, conflicts_with = "password_file")]
        password_stdin: bool,
        /// Read the password from a file (first line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List accounts.
    List(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to an organisation with a role, or change their role.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// owner, admin, editor, viewer or auditor.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List an organisation's members.
    List {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove a user from an organisation (never its last owner).
    Remove {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every audit chain (or one organisation's) against its signed
    /// checkpoints; report the first bad entry and exit non-zero.
    Verify {
        /// Only this organisation's chain (its slug).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Sign a checkpoint of every chain that grew since its last one
    /// (`serve` does this every minute).
    Checkpoint(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Print an organisation's retention policy.
    Show {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set an organisation's retention policy (replacing the one in force).
    Set {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        /// Delete profiles this many days after their last change.
        #[arg(long, value_name = "DAYS")]
        after_update_days: Option<u32>,
        /// Delete profiles DAYS days after the date in FIELD (a date field).
        #[arg(long, value_name = "FIELD:DAYS")]
        after_date: Option<String>,
        /// Remove the policy: nothing expires.
        #[arg(long, conflicts_with_all = ["after_update_days", "after_date"])]
        clear: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete every profile an organisation's policy expires now (each
    /// deletion audited), or with --dry-run list them and delete nothing.
    Sweep {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up the whole store and its attachments now, to every target.
    Create {
        /// The name recorded with the run (a schedule's name, or manual).
        #[arg(long, default_value = "manual")]
        schedule: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List the archives at every target (or one), oldest first.
    List {
        #[arg(long)]
        target: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Read an archive whole and check it, writing nothing.
    Verify {
        /// The target to read from (the first configured by default).
        #[arg(long)]
        target: Option<String>,
        /// The backup's id (the newest by default).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Restore an archive into this configuration's store, which must be
    /// empty unless --force; all or nothing.
    Restore {
        #[arg(long)]
        target: Option<String>,
        /// The backup's id (the newest by default).
        #[arg(long)]
        id: Option<String>,
        /// Replace whatever the store holds.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete the archives the retention rules do not keep.
    Prune {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Restore the newest backup into a scratch store and check it; the
    /// report is kept and audited.
    Drill {
        #[arg(long)]
        target: Option<String>,
        /// Rehearse a full recovery: a new, empty data directory, the
        /// backup and the keys, up to a serving instance; timed end to end.
        #[arg(long)]
        from_scratch: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show the key backend, every organisation key version and how far
    /// root-key re-wrapping has got.
    Status(ConfigArgs),
    /// Add a version to an organisation's key; older versions keep decrypting.
    Rotate {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Add a root key version and re-wrap every key under it.
    RotateRoot(ConfigArgs),
    /// Add an access-token signing key; older ones keep verifying until the
    /// tokens they signed expire.
    RotateSigning(ConfigArgs),
    /// Destroy an organisation's key for good (crypto-shredding): its data,
    /// backups included, can never be decrypted again.
    Destroy {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        /// The slug again, to confirm.
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Where the deployment is and how it is set up.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, env = "STRONGROOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory [default: ./strongroom-data].
    #[arg(long, env = "STRONGROOM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL URL; without it, the embedded SQLite database is used.
    /// Prefer the environment variable or the config file when the URL holds
    /// a password: command lines are visible to other local users.
    #[arg(long, env = "STRONGROOM_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool [default: 16].
    #[arg(long, env = "STRONGROOM_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,
    /// The address to serve on; port 0 picks a free port [default: 127.0.0.1:8443].
    #[arg(long, env = "STRONGROOM_LISTEN", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// PEM certificate chain for the listener (with --tls-key-file).
    #[arg(long, env = "STRONGROOM_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for the listener (with --tls-cert-file).
    #[arg(long, env = "STRONGROOM_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes [default: 1048576].
    #[arg(long, env = "STRONGROOM_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Largest accepted attachment, in bytes [default: 104857600].
    #[arg(long, env = "STRONGROOM_MAX_ATTACHMENT_BYTES", value_name = "BYTES")]
    pub max_attachment_bytes: Option<u64>,
    /// Longest a request may take [default: 30].
    #[arg(long, env = "STRONGROOM_REQUEST_TIMEOUT_SECS", value_name = "SECS")]
    pub request_timeout_secs: Option<u64>,
    /// How long in-flight requests may run after a shutdown signal [default: 30].
    #[arg(long, env = "STRONGROOM_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Log filter, such as info or server=debug [default: info].
    #[arg(long = "log", env = "STRONGROOM_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// The key backend: local, pkcs11, transit or aws-kms [default: local].
    #[arg(long, env = "STRONGROOM_KMS_BACKEND", value_name = "BACKEND")]
    pub kms_backend: Option<String>,
    /// The file that unseals the local keystore; keep it outside the data
    /// directory. Otherwise STRONGROOM_UNSEAL_PASSPHRASE, or a prompt.
    #[arg(long, env = "STRONGROOM_UNSEAL_KEY_FILE", value_name = "FILE")]
    pub unseal_key_file: Option<PathBuf>,
    /// Development mode: keep the local keystore's unseal key in the data
    /// directory and create the deployment on first start. Never for real data.
    #[arg(long, env = "STRONGROOM_DEV")]
    pub dev: bool,
}

impl ConfigArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            database_max_connections: self.database_max_connections,
            listen: self.listen.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            max_body_bytes: self.max_body_bytes,
            max_attachment_bytes: self.max_attachment_bytes,
            request_timeout_secs: self.request_timeout_secs,
            shutdown_grace_secs: self.shutdown_grace_secs,
            log_level: self.log_level.clone(),
            kms_backend: self.kms_backend.clone(),
            unseal_key_file: self.unseal_key_file.clone(),
            dev: self.dev,
        }
    }
}
