//! `strongroom retention`: an organisation's retention policy shown, set
//! and swept from the command line, acting with the deployment's keys.

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
