//! `strongroom retention`: an organisation's retention policy shown, set
//! and swept from the command line, acting with the deployment's keys; and
//! `strongroom org offboard`: the handover, crypto-shredding and removal of
//! an organisation, with a report.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use domain::{Action, DateRule, OrgSlug, RetentionPolicy};

use crate::args::{ConfigArgs, RetentionCommand};
use crate::{block_on, load_config};

pub fn retention(cmd: RetentionCommand) -> anyhow::Result<()> {
    match cmd {
        RetentionCommand::Show { org, config } => with_org(&org, &config, Action::ViewOrg, |engine, auth| async move {
            match engine.retention(&auth).await? {
                None => println!("No retention policy: nothing expires."),
                Some(s) => {
                    println!("{}", describe(&s.policy));
                    println!("Set {} by {}", engine::rfc3339_micros(s.updated_at), s.updated_by);
                }
            }
            Ok(())
        }),
        RetentionCommand::Set { org, after_update_days, after_date, clear, config } => {
            let after_date = after_date.as_deref().map(parse_date_rule).transpose()?;
            if !clear && after_update_days.is_none() && after_date.is_none() {
                bail!("give --after-update-days, --after-date or --clear");
            }
            let policy = RetentionPolicy { after_update_days, after_date };
            with_org(&org, &config, Action::ManageSettings, |engine, auth| async move {
                engine.set_retention(&auth, &policy).await.map_err(readable)?;
                println!("{}", describe(&policy));
                Ok(())
            })
        }
        RetentionCommand::Sweep { org, dry_run, config } => {
            with_org(&org, &config, Action::ManageSettings, |engine, auth| async move {
                let r = engine.sweep_retention(&auth, dry_run).await?;
                for id in &r.profiles {
                    println!("{id}");
                }
                if r.expired > r.profiles.len() as u64 {
                    eprintln!("(only the first {} are listed)", r.profiles.len());
                }
                if dry_run {
                    eprintln!("Dry run: {} of {} profiles would be deleted; nothing was.", r.expired, r.checked);
                } else {
                    eprintln!("Deleted {} of {} profiles ({} expired).", r.deleted, r.checked, r.expired);
                }
                Ok(())
            })
        }
    }
}

/// Opens the engine, finds the organisation and runs `f` with command-line
/// authority for `action`.
fn with_org<F, Fut>(org: &str, config: &ConfigArgs, action: Action, f: F) -> anyhow::Result<()>
where
    F: FnOnce(engine::Engine, engine::Authorized) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let slug = OrgSlug::parse(org).map_err(|e| anyhow::anyhow!("--org: the slug {e}"))?;
    let config = load_config(config)?;
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let result = async {
            let org = engine.org_by_slug(&slug).await?;
            let auth = engine.authorize_local(org.id, action);
            f(engine.clone(), auth).await
        }
        .await;
        engine.shutdown().await;
        result
    })
}

fn parse_date_rule(text: &str) -> anyhow::Result<DateRule> {
    let (field, days) = text.rsplit_once(':').context("--after-date: expected FIELD:DAYS, such as leaving_date:30")?;
    let days = days.parse().with_context(|| format!("--after-date: {days:?} is not a number of days"))?;
    Ok(DateRule { field: field.to_owned(), days })
}

/// A policy's rules violations as one readable error.
fn readable(e: engine::EngineError) -> anyhow::Error {
    match e {
        engine::EngineError::Profile(engine::ProfileError::Invalid(v)) => {
            let lines: Vec<String> = v.iter().map(|v| format!("  {}: {} ({})", v.path, v.message, v.rule)).collect();
            anyhow::anyhow!("the policy was refused:\n{}", lines.join("\n"))
        }
        e => e.into(),
    }
}

fn describe(p: &RetentionPolicy) -> String {
    let mut rules = Vec::new();
    if let Some(days) = p.after_update_days {
        rules.push(format!("profiles are deleted {days} days after their last change"));
    }
    if let Some(r) = &p.after_date {
        rules.push(format!("profiles are deleted {} days after their {}", r.days, r.field));
    }
    if rules.is_empty() {
        "No retention policy: nothing expires.".to_owned()
    } else {
        format!("Retention: {}.", rules.join("; "))
    }
}

/// A new private file, or an error naming it.
fn create_private(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    crate::create_private(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Writes a stream of bytes to a new private file; returns the byte count.
async fn save<S, E>(mut stream: S, path: &Path) -> anyhow::Result<u64>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    use futures_util::StreamExt;
    let mut out = create_private(path)?;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).with_context(|| format!("cannot write {}", path.display()))?;
        n += chunk.len() as u64;
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))?;
    out.get_ref().sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(n)
}

/// An attachment's name as a file name: only letters, digits, `.`, `-`
/// and `_`, prefixed by its position so two names never collide.
fn file_name(i: usize, name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(100).collect();
    format!("{i:03}-{}", safe.trim_start_matches('.'))
}

pub fn offboard(org: &str, dir: &Path, confirm: Option<&str>, config: &ConfigArgs) -> anyhow::Result<()> {
    let slug = OrgSlug::parse(org).map_err(|e| anyhow::anyhow!("--org: the slug {e}"))?;
    if confirm != Some(slug.as_str()) {
        bail!(
            "refusing to offboard {slug} without confirmation: its keys are destroyed and its data removed for good, backups included; pass --confirm {slug}"
        );
    }
    let config = load_config(config)?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("--export-dir: cannot create {} (it must not exist yet)", dir.display()))?;
    }
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let result = async {
            let org = engine.org_by_slug(&slug).await?;
            let platform = engine.authorize_local_admin(domain::PlatformAction::OffboardOrgs);
            // Suspended first: nothing changes after it is handed over.
            engine.suspend_for_offboarding(&platform, org.id).await?;
            let keys = engine.store().org_keys(org.id).await?;
            let resuming = !keys.is_empty() && keys.iter().all(|k| k.state == domain::KeyState::Destroyed);
            let (profiles_bytes, attachments) = if resuming {
                eprintln!(
                    "The keys of {} are already destroyed (an earlier offboarding stopped): nothing can be handed over; finishing the removal",
                    org.slug
                );
                (0, 0)
            } else {
                handover(&engine, org.id, dir).await?
            };

            let report = match engine.offboard_org(&platform, org.id).await {
                Ok(report) => report,
                Err(e) => {
                    // Past the destruction, old backups must not keep the
                    // data openable, and the operator needs the way on.
                    let destroyed = engine
                        .store()
                        .org_keys(org.id)
                        .await
                        .is_ok_and(|k| k.iter().all(|k| k.state == domain::KeyState::Destroyed));
                    if destroyed {
                        if let Ok(backups) = server::open_backups(&config, &engine).await {
                            for (target, error) in backups.forget_org(org.id.as_uuid()).await {
                                eprintln!("backup target {target}: cannot delete the escrow object: {error}");
                            }
                        }
                        eprintln!(
                            "Its keys are destroyed. Run `strongroom org offboard --org {0} --export-dir NEW_DIR --confirm {0}` again to finish removing its rows.",
                            org.slug
                        );
                    }
                    return Err(e.into());
                }
            };
            let backups = server::open_backups(&config, &engine).await?;
            let escrow_failed = backups.forget_org(org.id.as_uuid()).await;
            let json = serde_json::json!({
                "organisation": { "id": org.id.to_string(), "slug": org.slug.as_str() },
                "offboarded_at": engine::rfc3339_micros(engine::now_micros()),
                "handover": { "profiles_csv_bytes": profiles_bytes, "attachments": attachments, "skipped_keys_already_destroyed": resuming },
                "keys": { "versions_destroyed": report.versions_destroyed, "unwrappable": !report.keys_unreadable },
                "ciphertext_sample": { "records": report.sample, "no_longer_decrypt": report.sample_unreadable },
                "rows_removed": report.rows.iter().map(|(t, n)| ((*t).to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
                "attachment_blobs": { "rows_removed": report.blob_rows, "deleted": report.blobs },
                "backup_escrow_deleted_at": backups.targets().iter().map(|t| t.name.clone()).filter(|n| !escrow_failed.iter().any(|(f, _)| f == n)).collect::<Vec<_>>(),
                "backup_escrow_not_deleted_at": escrow_failed.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
                "kept": "the organisation row (suspended), its destroyed key versions, its audit chain, and user accounts (which may belong to other organisations)",
            });
            let mut out = create_private(&dir.join("offboarding-report.json"))?;
            serde_json::to_writer_pretty(&mut out, &json).context("cannot write the report")?;
            out.flush().context("cannot write the report")?;
            out.get_ref().sync_all().context("cannot write the report")?;
            let removed: u64 = report.rows.iter().map(|(_, n)| n).sum();
            println!(
                "Offboarded {} ({}): {} key versions destroyed; {} of {} sampled records no longer decrypt; {removed} rows and {} of {} attachment blobs removed",
                org.slug, org.id, report.versions_destroyed, report.sample_unreadable, report.sample, report.blobs, report.blob_rows
            );
            println!("Report: {}", dir.join("offboarding-report.json").display());
            for (target, error) in &escrow_failed {
                eprintln!("backup target {target}: cannot delete the escrow object: {error}");
            }
            if !escrow_failed.is_empty() {
                bail!(
                    "offboarded, but old backups at the targets above can still be opened until their escrow objects are deleted; run `strongroom keys destroy --org {} --confirm {}` when they are reachable",
                    org.slug,
                    org.slug
                );
            }
            if report.blobs < report.blob_rows {
                bail!("offboarded, but {} attachment blobs could not be deleted (see the log)", report.blob_rows - report.blobs);
            }
            Ok(())
        }
        .await;
        engine.shutdown().await;
        result
    })
}

/// Writes the handover into `dir` and checks it is whole before anything
/// is destroyed: every record in `profiles.csv`, every attachment, the
/// trail; files and folders synced. Returns the CSV's size and the
/// attachment count.
async fn handover(engine: &engine::Engine, org: domain::OrgId, dir: &Path) -> anyhow::Result<(u64, usize)> {
    let read = engine.authorize_local(org, Action::ReadSensitive);
    let csv_path = dir.join("profiles.csv");
    let profiles_bytes = save(engine.export_profiles(&read, engine::ExportFormat::Csv).await?, &csv_path).await?;
    let attachments = handover_attachments(engine, &read, dir).await?;
    let audit = engine.authorize_local(org, Action::ReadAudit);
    save(engine.export_audit(&audit, engine::ExportFormat::Jsonl).await?, &dir.join("audit.jsonl")).await?;
    // Whole, or nothing is destroyed.
    let written = csv::Reader::from_path(&csv_path)?.records().count();
    let stored = engine.store().profile_field_names(org).await?.len();
    if written != stored {
        bail!("the handover holds {written} records but the store {stored}; nothing was destroyed");
    }
    for folder in [dir.to_path_buf(), dir.join("attachments")] {
        if folder.is_dir() {
            std::fs::File::open(&folder)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", folder.display()))?;
        }
    }
    eprintln!(
        "Handed over: profiles.csv ({written} records, {profiles_bytes} bytes), {attachments} attachments, audit.jsonl, in {}",
        dir.display()
    );
    Ok((profiles_bytes, attachments))
}

/// Every attachment, decrypted, under `attachments/<profile>/`, with a
/// manifest (`attachments.csv`: profile, file, name, type, size).
async fn handover_attachments(engine: &engine::Engine, auth: &engine::Authorized, dir: &Path) -> anyhow::Result<usize> {
    let mut manifest = csv::Writer::from_writer(create_private(&dir.join("attachments.csv"))?);
    manifest.write_record(["profile_id", "file", "name", "content_type", "size"])?;
    let mut count = 0;
    let mut after = None;
    loop {
        let page = engine.store().list_profiles(auth.org(), after, 500, &[]).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for row in &page {
            let list = engine.list_attachments_as(auth, row.id).await?;
            if list.is_empty() {
                continue;
            }
            let folder = dir.join("attachments").join(row.id.to_string());
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder)?;
            }
            for (i, a) in list.iter().enumerate() {
                let (_, stream) = engine.get_attachment_as(auth, row.id, &a.name).await?;
                let file = file_name(i, &a.name);
                save(stream, &folder.join(&file)).await?;
                std::fs::File::open(&folder).and_then(|f| f.sync_all())?;
                let (id, size) = (row.id.to_string(), a.size.to_string());
                manifest.write_record([
                    id.as_str(),
                    file.as_str(),
                    engine::neutralise(&a.name).as_ref(),
                    a.content_type.as_str(),
                    size.as_str(),
                ])?;
                count += 1;
            }
        }
    }
    manifest.flush()?;
    manifest.into_inner().map_err(|e| anyhow::anyhow!("cannot write attachments.csv: {e}"))?.get_ref().sync_all()?;
    Ok(count)
}
