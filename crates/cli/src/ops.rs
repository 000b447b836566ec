//! Operator commands that act on a deployment's store and keys directly:
//! `init`, `org` and `keys`. Each opens the deployment the same way `serve`
//! does (same configuration, same key backend) and prints what it did.

use std::io::BufRead;

use anyhow::{Context, bail};
use domain::{DisplayName, Email, KeyState, NewOrganisation, OrgName, OrgSlug, PlatformAction, Role};
use engine::{Engine, NewUser};
use zeroize::Zeroizing;

use crate::args::{AuditCommand, ConfigArgs, KeysCommand, MemberCommand, OrgCommand, UserCommand};
use crate::{block_on, load_config};

/// The operator a development deployment starts with.
pub const DEV_OPERATOR: &str = "operator@strongroom.local";
/// How long the first operator's setup token lives.
const SETUP_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Creates the first operator if the deployment has no account yet, and
/// returns its single-use password-setup token.
pub async fn bootstrap_operator(engine: &Engine, email: &Email) -> anyhow::Result<Option<Zeroizing<String>>> {
    if !engine.list_users().await?.is_empty() {
        return Ok(None);
    }
    let name = DisplayName::parse("Operator").map_err(|e| anyhow::anyhow!("{e}"))?;
    let user =
        engine.create_user(&NewUser { email: email.clone(), display_name: name, is_operator: true }, None).await?;
    let token = engine.issue_password_setup(user.id, store::SetupPurpose::Initial, SETUP_TTL).await?;
    Ok(Some(Zeroizing::new(token.reveal().to_owned())))
}

/// Tells a person how to set the first operator's password.
pub fn print_setup(config: &server::config::Config, port: u16, email: &Email, token: &str) {
    let ca = config.data_dir.join("tls/ca.pem");
    println!("  Operator: {email}: set its password once, within 24 hours, with this single-use token:");
    println!(
        "           curl --cacert {} -H 'content-type: application/json' -d '{{\"token\":\"{token}\",\"new_password\":\"<your passphrase>\"}}' https://localhost:{port}/v1/auth/setup-password",
        ca.display()
    );
}

pub fn init(args: &ConfigArgs, operator_email: &str) -> anyhow::Result<()> {
    let email = Email::parse(operator_email).map_err(|e| anyhow::anyhow!("--operator-email: the address {e}"))?;
    let config = load_config(args)?;
    if matches!(config.kms.backend, server::config::KmsBackend::Local { .. })
        && kms::LocalKms::exists(&server::keys::keystore_dir(&config))
    {
        bail!(
            "{} is already initialised (a keystore exists in {})",
            config.data_dir.display(),
            server::keys::keystore_dir(&config).display()
        );
    }
    block_on(async {
        let engine = server::open_engine(&config, true).await?;
        let info = engine.keys().kms().info();
        println!("Initialised the deployment in {}", config.data_dir.display());
        println!("  Key backend: {} ({})", info.backend, info.key_id);
        match &config.database {
            server::config::Database::Embedded => println!(
                "  Database:    SQLite, page-encrypted (SQLCipher), {}",
                server::keys::database_file(&config).display()
            ),
            server::config::Database::Postgres { url, .. } => {
                println!("  Database:    PostgreSQL, {}", url.redacted())
            }
        }
        if let Some(token) = bootstrap_operator(&engine, &email).await? {
            print_setup(&config, config.listen.port(), &email, &token);
        }
        engine.shutdown().await;
        Ok(())
    })
}

fn slug(s: &str) -> anyhow::Result<OrgSlug> {
    OrgSlug::parse(s).map_err(|e| anyhow::anyhow!("--slug/--org: the slug {e}"))
}

pub fn org(cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Create { slug: s, name, config } => {
            let new = NewOrganisation {
                slug: slug(&s)?,
                name: OrgName::parse(&name).map_err(|e| anyhow::anyhow!("--name: the name {e}"))?,
            };
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let org = engine.create_org(&new).await.context("cannot create the organisation")?;
                println!("Created organisation {} ({}) with key version 1", org.slug, org.id);
                engine.shutdown().await;
                Ok(())
            })
        }
        OrgCommand::Rename { org, name, config } => org_update(&org, Some(&name), None, &config),
        OrgCommand::Suspend { org, config } => org_update(&org, None, Some(domain::OrgStatus::Suspended), &config),
        OrgCommand::Resume { org, config } => org_update(&org, None, Some(domain::OrgStatus::Active), &config),
        OrgCommand::Offboard { org, export_dir, confirm, config } => {
            crate::lifecycle::offboard(&org, &export_dir, confirm.as_deref(), &config)
        }
        OrgCommand::List(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                for org in engine.list_orgs().await? {
                    println!("{}\t{}\t{}\t{}", org.slug, org.id, org.status.as_str(), org.name.as_str());
                }
                engine.shutdown().await;
                Ok(())
            })
        }
    }
}

fn org_update(
    org: &str,
    name: Option<&str>,
    status: Option<domain::OrgStatus>,
    config: &ConfigArgs,
) -> anyhow::Result<()> {
    let slug = slug(org)?;
    let name = name.map(OrgName::parse).transpose().map_err(|e| anyhow::anyhow!("--name: the name {e}"))?;
    let config = load_config(config)?;
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let org = engine.org_by_slug(&slug).await?;
        let auth = engine.authorize_local_admin(PlatformAction::ManageOrgs);
        let updated = engine.update_org(&auth, org.id, name.as_ref(), status).await?;
        println!("{}\t{}\t{}", updated.slug, updated.status.as_str(), updated.name.as_str());
        engine.shutdown().await;
        Ok(())
    })
}

/// `strongroom audit ...`.
pub fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { org, config } => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let org = match org {
                    Some(s) => Some(engine.org_by_slug(&slug(&s)?).await?.id),
                    None => None,
                };
                let reports = engine.verify_audit(org).await?;
                engine.shutdown().await;
                let mut bad = 0;
                for r in &reports {
                    match &r.result {
                        Ok(v) => println!("{}: ok, {} entries, {} checkpoints", r.chain, v.entries, v.checkpoints),
                        Err(e) => {
                            bad += 1;
                            println!("{}: BROKEN: {e}", r.chain);
                        }
                    }
                }
                if bad > 0 {
                    anyhow::bail!("{bad} of {} audit chains failed verification", reports.len());
                }
                println!("{} audit chains verified", reports.len());
                Ok(())
            })
        }
        AuditCommand::Checkpoint(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let signed = engine.checkpoint_chains().await?;
                engine.shutdown().await;
                println!("Signed {signed} checkpoints");
                Ok(())
            })
        }
    }
}

pub fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Status(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let status = engine.keys().status().await?;
                let slugs: std::collections::HashMap<_, _> =
                    engine.list_orgs().await?.into_iter().map(|o| (o.id, o.slug.to_string())).collect();
                println!("Key backend: {} ({})", status.kms.backend, status.kms.key_id);
                println!("Organisation keys:");
                for k in &status.keys {
                    let slug = slugs.get(&k.org_id).map_or("?", String::as_str);
                    println!("  {slug}\tv{}\t{}\twrapped by {}", k.version, k.state.as_str(), k.kms_key_id);
                }
                println!(
                    "Root re-wrap: {} of {} live key versions still wrapped by an older root key",
                    status.pending_root_rewrap,
                    status.keys.iter().filter(|k| k.state != KeyState::Destroyed).count()
                );
                engine.shutdown().await;
                Ok(())
            })
        }
        KeysCommand::Rotate { org, config } => {
            let slug = slug(&org)?;
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let org = engine.org_by_slug(&slug).await?;
                let version = engine.keys().rotate_org(org.id).await?;
                println!(
                    "Organisation {} now encrypts with key version {version}; older versions still decrypt",
                    org.slug
                );
                let rewrapped = engine.rewrap_record_keys(org.id).await?;
                println!("Re-wrapped {rewrapped} record keys under version {version}");
                engine.shutdown().await;
                Ok(())
            })
        }
        KeysCommand::RotateRoot(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let (version, rewrapped) = engine.keys().rotate_root().await?;
                let db = server::keys::rewrap_database_key(&config, engine.keys().kms()).await?;
                let info = engine.keys().kms().info();
                println!(
                    "Root key rotated: now {} ({})",
                    info.key_id,
                    if version == 0 { "versions kept by the backend".to_owned() } else { format!("version {version}") }
                );
                println!(
                    "Re-wrapped {rewrapped} organisation key versions{}",
                    if db { " and the database key" } else { "" }
                );
                engine.shutdown().await;
                Ok(())
            })
        }
        KeysCommand::RotateSigning(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let kid = engine.rotate_signing_key().await?;
                println!(
                    "New token-signing key {kid}; /.well-known/jwks.json publishes it, older keys verify until their tokens expire"
                );
                engine.shutdown().await;
                Ok(())
            })
        }
        KeysCommand::Destroy { org, confirm, config } => {
            let slug = slug(&org)?;
            if confirm.as_deref() != Some(slug.as_str()) {
                bail!(
                    "refusing to destroy the keys of {slug} without confirmation: this cannot be undone, and all of its data, backups included, becomes unreadable for good; pass --confirm {slug}"
                );
            }
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let org = engine.org_by_slug(&slug).await?;
                let report = engine.keys().destroy_org(org.id).await?;
                println!(
                    "Destroyed {} key versions of organisation {} ({})",
                    report.versions_destroyed, org.slug, org.id
                );
                if report.verified_unreadable {
                    println!("Verified: no version of its key can be unwrapped; its data can no longer be decrypted");
                } else {
                    bail!("a key version of {} could still be unwrapped after destruction", org.slug);
                }
                // Its escrow key went with its keys; deleting the escrow
                // objects makes its key versions in every archive unopenable.
                let backups = server::open_backups(&config, &engine).await?;
                let failed = backups.forget_org(org.id.as_uuid()).await;
                for (target, error) in &failed {
                    eprintln!("backup target {target}: cannot delete the escrow object of {}: {error}", org.slug);
                }
                if !failed.is_empty() {
                    bail!(
                        "the keys are destroyed, but old backups at the targets above can still be opened until their escrow objects are deleted; run `strongroom keys destroy` again when they are reachable"
                    );
                }
                println!(
                    "Backups: its escrow objects are deleted at every target; archives made before hold its data unreadably"
                );
                engine.shutdown().await;
                Ok(())
            })
        }
    }
}

/// Reads a password from standard input or a file: the first line, without
/// its line ending.
fn read_password(stdin: bool, file: Option<&std::path::Path>) -> anyhow::Result<Option<Zeroizing<String>>> {
    let mut line = Zeroizing::new(String::new());
    if stdin {
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    } else if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--password-file: cannot read {}", path.display()))?,
        );
        line.push_str(text.lines().next().unwrap_or(""));
    } else {
        return Ok(None);
    }
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    Ok(Some(trimmed))
}

fn email(s: &str) -> anyhow::Result<Email> {
    Email::parse(s).map_err(|e| anyhow::anyhow!("--email: the address {e}"))
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create { email: e, name, operator, password_stdin, password_file, config } => {
            let new = NewUser {
                email: email(&e)?,
                display_name: DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("--name: the name {e}"))?,
                is_operator: operator,
            };
            let password = read_password(password_stdin, password_file.as_deref())?;
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                let user = engine
                    .create_user(&new, password.as_deref().map(|p| p.as_str()))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("Created {} {} ({})", if operator { "operator" } else { "user" }, user.email, user.id);
                if password.is_none() {
                    let token = engine.issue_password_setup(user.id, store::SetupPurpose::Initial, SETUP_TTL).await?;
                    println!("Single-use password-setup token (24 hours): {}", token.reveal());
                }
                engine.shutdown().await;
                Ok(())
            })
        }
        UserCommand::List(config) => {
            let config = load_config(&config)?;
            block_on(async {
                let engine = server::open_engine(&config, false).await?;
                for u in engine.list_users().await? {
                    let kind = if u.is_operator { "operator" } else { "user" };
                    println!("{}\t{}\t{kind}\t{}", u.email, u.id, u.status.as_str());
                }
                engine.shutdown().await;
                Ok(())
            })
        }
    }
}

pub fn member(cmd: MemberCommand) -> anyhow::Result<()> {
    let (org_slug, config) = match &cmd {
        MemberCommand::Add { org, config, .. }
        | MemberCommand::List { org, config }
        | MemberCommand::Remove { org, config, .. } => (slug(org)?, load_config(config)?),
    };
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let org = engine.org_by_slug(&org_slug).await?;
        let auth = engine.authorize_local_admin(PlatformAction::ManageUsers);
        match &cmd {
            MemberCommand::Add { email: e, role, .. } => {
                let role = Role::parse(role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
                let user = engine
                    .user_by_email(&email(e)?)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no account with that e-mail address"))?;
                engine.put_member_as_operator(&auth, org.id, user.id, role).await?;
                println!("{} is now {} of {}", user.email, role.as_str(), org.slug);
            }
            MemberCommand::List { .. } => {
                for m in engine.members_as_operator(&auth, org.id).await? {
                    println!("{}\t{}\t{}", m.email, m.user_id, m.role.as_str());
                }
            }
            MemberCommand::Remove { email: e, .. } => {
                let user = engine
                    .user_by_email(&email(e)?)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no account with that e-mail address"))?;
                if !engine.remove_member_as_operator(&auth, org.id, user.id).await? {
                    bail!("{} is not a member of {}", user.email, org.slug);
                }
                println!("Removed {} from {}", user.email, org.slug);
            }
        }
        engine.shutdown().await;
        Ok(())
    })
}
