//! Operator commands that act on a deployment's store and keys directly:
//! `init`, `org` and `keys`. Each opens the deployment the same way `serve`
//! does (same configuration, same key backend) and prints what it did.

use anyhow::{Context, bail};
use domain::{KeyState, NewOrganisation, OrgName, OrgSlug};

use crate::args::{ConfigArgs, KeysCommand, OrgCommand};
use crate::{block_on, load_config};

pub fn init(args: &ConfigArgs) -> anyhow::Result<()> {
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
                    println!(
                        "Verified: no version of its key can be unwrapped; its data, backups included, can no longer be decrypted"
                    );
                } else {
                    bail!("a key version of {} could still be unwrapped after destruction", org.slug);
                }
                engine.shutdown().await;
                Ok(())
            })
        }
    }
}
