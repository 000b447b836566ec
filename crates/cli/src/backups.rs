//! `strongroom backup ...`: make, list, verify, restore, prune and drill
//! encrypted backups of a deployment, with progress bars on a terminal.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, bail};
use backup::{Backups, Progress};
use uuid::Uuid;

use crate::args::BackupCommand;
use crate::{block_on, load_config};

/// Progress bars on standard error when it is a terminal; nothing otherwise.
struct Bars {
    bar: Option<indicatif::ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(indicatif::ProgressBar::hidden);
        Self { bar }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: Option<u64>) {
        let Some(bar) = &self.bar else { return };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.reset();
        match total {
            Some(total) => {
                bar.set_length(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg:12} [{bar:40}] {percent:>3}% {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
            None => {
                bar.unset_length();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg:12} {spinner} {pos} rows {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
            }
        }
        bar.set_message(name.to_owned());
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn parse_id(id: Option<&str>) -> anyhow::Result<Option<Uuid>> {
    id.map(|s| Uuid::parse_str(s).map_err(|_| anyhow::anyhow!("--id: {s:?} is not a backup id (a UUID)"))).transpose()
}

pub fn run(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Create { schedule, config } => {
            let config = load_config(&config)?;
            with_backups(&config, |backups| async move {
                let created = backups.create(&schedule, "cli", &Bars::new()).await?;
                println!(
                    "Backup {} made: {} rows, {} attachments, {} bytes, sha256 {}, in {:.1} s",
                    created.id, created.rows, created.blobs, created.bytes, created.sha256, created.seconds
                );
                println!("  Copied to and verified at: {}", created.targets.join(", "));
                Ok(())
            })
        }
        BackupCommand::List { target, json, config } => {
            let config = load_config(&config)?;
            with_backups(&config, |backups| async move {
                let listed = backups.list(target.as_deref()).await?;
                for l in &listed {
                    if json {
                        println!("{}", serde_json::to_string(l)?);
                    } else {
                        let at = l.created_at.format(&time::format_description::well_known::Rfc3339)?;
                        println!(
                            "{}\t{}\t{}\t{}\t{} bytes\tformat {}",
                            l.target, l.id, at, l.schedule, l.bytes, l.format
                        );
                    }
                }
                if listed.is_empty() && !json {
                    println!("No backups.");
                }
                Ok(())
            })
        }
        BackupCommand::Verify { target, id, config } => {
            let id = parse_id(id.as_deref())?;
            let config = load_config(&config)?;
            with_backups(&config, |backups| async move {
                let v = backups.verify(target.as_deref(), id).await?;
                println!(
                    "Backup {} verified: {} rows in {} tables, {} attachments, every section matches its manifest",
                    v.id,
                    v.rows,
                    v.tables.len(),
                    v.blobs
                );
                if !v.shredded_orgs.is_empty() {
                    println!("  Organisations whose keys were destroyed since (their data stays unreadable):");
                    for org in &v.shredded_orgs {
                        println!("    {org}");
                    }
                }
                Ok(())
            })
        }
        BackupCommand::Restore { target, id, force, config } => {
            let id = parse_id(id.as_deref())?;
            let config = load_config(&config)?;
            block_on(restore(&config, target.as_deref(), id, force))
        }
        BackupCommand::Prune { dry_run, config } => {
            let config = load_config(&config)?;
            with_backups(&config, |backups| async move {
                for (target, plan) in backups.prune("cli", dry_run).await? {
                    let verb = if dry_run { "would delete" } else { "deleted" };
                    println!("{target}: keeps {}, {verb} {}", plan.keep.len(), plan.prune.len());
                    for id in &plan.prune {
                        println!("  {verb} {id}");
                    }
                }
                Ok(())
            })
        }
        BackupCommand::Drill { target, from_scratch, config } => {
            let config = load_config(&config)?;
            let row = if from_scratch {
                block_on(drill_from_scratch(&config, target.as_deref()))?
            } else {
                with_backups(&config, |backups| async move { Ok(backups.drill("cli", target.as_deref()).await?) })?
            };
            println!(
                "Drill {} {}: backup {}, restored in {:.1} s, {:.1} s in all{}",
                row.id,
                row.outcome,
                row.backup_id.map_or_else(|| "(none)".to_owned(), |b| b.to_string()),
                row.restore_millis as f64 / 1000.0,
                row.total_millis as f64 / 1000.0,
                if row.from_scratch { ", from scratch" } else { "" }
            );
            println!("  Report: {}", row.report);
            if row.outcome != "success" {
                bail!("the drill failed; its report is kept and audited");
            }
            Ok(())
        }
    }
}

/// Opens the deployment and its backups, runs `work`, shuts down.
fn with_backups<T, F, Fut>(config: &server::config::Config, work: F) -> anyhow::Result<T>
where
    F: FnOnce(Backups) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    block_on(async {
        let engine = server::open_engine(config, false).await?;
        let backups = server::open_backups(config, &engine).await?;
        let result = work(backups).await;
        engine.shutdown().await;
        result
    })
}

async fn restore(
    config: &server::config::Config,
    target: Option<&str>,
    id: Option<Uuid>,
    force: bool,
) -> anyhow::Result<()> {
    server::prepare_data_dir(&config.data_dir)?;
    let kms = std::sync::Arc::new(server::keys::open_kms(config, false).await?);
    let targets = server::open_backup_targets(config).await?;
    let from = match target {
        None => targets.first().context("no backup target is configured")?,
        Some(name) => {
            targets.iter().find(|t| t.name == name).with_context(|| format!("no backup target named {name}"))?
        }
    };
    let store = server::open_store(config, &kms).await?;
    let blobs = server::open_blobs(config).await?;
    let id = match id {
        Some(id) => id,
        None => backup::ops::newest_at(from).await?.id,
    };
    let restored = backup::restore(&kms, from, id, &store, &blobs, force, &Bars::new()).await;
    store.close().await;
    let restored = restored?;
    // The restored deployment's own trail records the restore. It is
    // committed already: a failure here is a warning, not a failed restore.
    match server::open_engine(config, false).await {
        Ok(engine) => {
            let fields = vec![format!("target:{}", from.name), format!("rows:{}", restored.rows)];
            if let Err(e) = engine.record_operation("cli", "backup.restore", format!("backup:{id}"), true, fields).await
            {
                eprintln!("warning: restored, but the restore could not be audited: {e}");
            }
            engine.shutdown().await;
        }
        Err(e) => eprintln!("warning: restored, but the restore could not be audited: {e:#}"),
    }
    println!(
        "Restored backup {} from {}: {} rows in {} tables, {} attachments, in {:.1} s",
        restored.id,
        from.name,
        restored.rows,
        restored.tables.len(),
        restored.blobs,
        restored.seconds
    );
    for org in &restored.shredded_orgs {
        println!("  Organisation {org}: its keys were destroyed since; its records stay unreadable");
    }
    Ok(())
}

/// A full recovery rehearsal: a new, empty data directory with only the
/// key backend's material, the newest backup restored into it, and a
/// serving instance on it answering `/readyz` and decrypting a sample.
async fn drill_from_scratch(config: &server::config::Config, target: Option<&str>) -> anyhow::Result<store::DrillRow> {
    let clock = backup::ops::DrillClock::start();
    let engine = server::open_engine(config, false).await?;
    let backups = server::open_backups(config, &engine).await?;
    let work = config.data_dir.join("backup-work");
    backup::ops::create_private_dir(&work)?;
    let scratch = tempfile::Builder::new().prefix(".recovery-").tempdir_in(&work)?;
    let mut report = backup::DrillReport::default();
    let mut backup_id = None;
    let mut restore_millis = 0i64;
    let t = backups.target(target)?.clone();
    let outcome = async {
        let newest = backups.newest(&t).await?;
        backup_id = Some(newest.id);
        report.backup_created_at = Some(newest.created_at);
        let fresh = fresh_config(config, scratch.path())?;
        server::prepare_data_dir(&fresh.data_dir)?;
        copy_key_material(config, &fresh)?;
        let kms = server::keys::open_kms(&fresh, false).await?;
        let store = server::open_store(&fresh, &kms).await?;
        let blobs = server::open_blobs(&fresh).await?;
        let restored = backup::restore(&kms, &t, newest.id, &store, &blobs, false, &backup::Quiet).await;
        store.close().await;
        let restored = restored?;
        restore_millis = (restored.seconds * 1000.0).round() as i64;
        report.tables = restored.tables.clone();
        report.blobs = restored.blobs;
        report.shredded_orgs = restored.shredded_orgs.clone();
        let running = server::start(&fresh).await?;
        let ready = readyz(&running).await;
        let checked =
            backup::check_restored(running.engine().store(), running.engine().keys().kms_arc(), &restored).await;
        running.shutdown().await?;
        ready?;
        let checked = checked?;
        report.chains = checked.chains;
        report.decrypted_records = checked.records;
        report.decrypted_fields = checked.fields;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = &outcome {
        report.error = Some(format!("{e:#}"));
    }
    let row = clock.finish(&t.name, backup_id, restore_millis, true, outcome.is_ok(), &report)?;
    backups.record_drill("cli", &row).await?;
    engine.shutdown().await;
    drop(scratch);
    Ok(row)
}

/// The configuration of a new deployment in `dir`: embedded database,
/// local blobs, this host only, the same key backend.
fn fresh_config(config: &server::config::Config, dir: &Path) -> anyhow::Result<server::config::Config> {
    let mut fresh = config.clone();
    fresh.data_dir = dir.join("data");
    fresh.database = server::config::Database::Embedded;
    fresh.blobs = server::config::BlobBackend::Local;
    fresh.listen = "127.0.0.1:0".parse()?;
    fresh.tls = server::config::TlsSource::Generated { names: vec!["localhost".into()] };
    fresh.audit_sinks = Vec::new();
    // The rehearsal must not mail anyone: the restored trail may hold
    // sessions whose summaries were not yet sent.
    fresh.smtp = None;
    fresh.backup.schedules = Vec::new();
    fresh.backup.drill_every = None;
    fresh.backup.targets = Vec::new();
    Ok(fresh)
}

/// A local keystore lives in the data directory: the recovery gets a copy
/// of it (the operator keeps one apart, with its unseal secret). Other key
/// backends are reached the same way as before.
fn copy_key_material(from: &server::config::Config, to: &server::config::Config) -> anyhow::Result<()> {
    if !matches!(from.kms.backend, server::config::KmsBackend::Local { .. }) {
        return Ok(());
    }
    let src = server::keys::keystore_dir(from);
    let dst = server::keys::keystore_dir(to);
    std::fs::create_dir_all(&dst)?;
    for entry in std::fs::read_dir(&src).with_context(|| format!("cannot read {}", src.display()))? {
        let entry = entry?;
        // The database key belongs to the old database; the new one gets its own.
        if entry.file_name() == "database.key" || !entry.file_type()?.is_file() {
            continue;
        }
        std::fs::copy(entry.path(), dst.join(entry.file_name()))?;
    }
    Ok(())
}

/// Waits for the instance to answer `/readyz` with 200 over HTTPS.
async fn readyz(running: &server::Running) -> anyhow::Result<()> {
    let ca = running.ca_file().context("the recovered instance has no CA file")?;
    let pem = std::fs::read(ca)?;
    let cert = reqwest::Certificate::from_pem(&pem)?;
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .add_root_certificate(cert)
        .resolve("localhost", running.local_addr())
        .build()?;
    let url = format!("https://localhost:{}/readyz", running.local_addr().port());
    for _ in 0..50 {
        if let Ok(res) = client.get(&url).send().await
            && res.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("the recovered instance never became ready")
}
