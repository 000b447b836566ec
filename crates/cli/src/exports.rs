//! `strongroom export` and `import`: an organisation's profiles, decrypted,
//! as CSV or JSON lines, to a new private file or standard output, with
//! progress on a terminal; and profiles read back from CSV, all or nothing.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use domain::OrgSlug;
use engine::ExportFormat;
use futures_util::StreamExt;

use crate::args::ConfigArgs;
use crate::{block_on, load_config};

/// What an export writes: the real values, or a pseudonymised dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    Real,
    Pseudonymised,
    /// The organisation's audit trail.
    Audit,
}

pub fn run(org: &str, format: &str, out: Option<&Path>, config: &ConfigArgs, dataset: Dataset) -> anyhow::Result<()> {
    let slug = OrgSlug::parse(org).map_err(|e| anyhow::anyhow!("--org: the slug {e}"))?;
    let Some(format) = ExportFormat::parse(format) else { bail!("--format: {format:?} is not csv or jsonl") };
    let config = load_config(config)?;
    // The file is made before anything is decrypted, and never replaces one.
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(
            crate::create_private(path)
                .with_context(|| format!("--out: cannot create {} (it must not exist yet)", path.display()))?,
        ),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let bar = (out.is_some() && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("exporting {spinner} {bytes} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let org = engine.org_by_slug(&slug).await?;
        let result = async {
            let mut stream = match dataset {
                Dataset::Real => {
                    let auth = engine.authorize_local(org.id, domain::Action::ReadProfiles);
                    engine.export_profiles(&auth, format).await?
                }
                Dataset::Pseudonymised => {
                    let auth = engine.authorize_local(org.id, domain::Action::ReadSensitive);
                    engine.pseudonymise_profiles(&auth, format).await?
                }
                Dataset::Audit => {
                    let auth = engine.authorize_local(org.id, domain::Action::ReadAudit);
                    engine.export_audit(&auth, format).await?
                }
            };
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                sink.write_all(&chunk).context("cannot write the export")?;
                bytes += chunk.len() as u64;
                if let Some(bar) = &bar {
                    bar.set_position(bytes);
                }
            }
            sink.flush().context("cannot write the export")?;
            Ok::<_, anyhow::Error>(bytes)
        }
        .await;
        engine.shutdown().await;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                // A partial export is personal data nobody asked for.
                drop(sink);
                if let Some(path) = out {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        };
        if let Some(path) = out {
            let what = match dataset {
                Dataset::Real => "the profiles",
                Dataset::Pseudonymised => "a pseudonymised dataset of the profiles",
                Dataset::Audit => "the audit trail",
            };
            eprintln!("Exported {what} of {} to {} ({bytes} bytes)", org.slug, path.display());
        }
        Ok(())
    })
}

pub fn import(org: &str, file: &Path, skip_invalid: bool, config: &ConfigArgs) -> anyhow::Result<()> {
    let slug = OrgSlug::parse(org).map_err(|e| anyhow::anyhow!("--org: the slug {e}"))?;
    if !file.is_file() {
        bail!("{}: no such file", file.display());
    }
    let config = load_config(config)?;
    block_on(async {
        let engine = server::open_engine(&config, false).await?;
        let org = engine.org_by_slug(&slug).await?;
        let auth = engine.authorize_local(org.id, domain::Action::WriteProfiles);
        let report = engine.import_profiles(&auth, engine::ImportSource::File(file), skip_invalid).await;
        engine.shutdown().await;
        let report = report?;
        for p in &report.problems {
            let at = if p.field.is_empty() { String::new() } else { format!(" {}", p.field) };
            eprintln!("line {}{at}: {} ({})", p.line, p.message, p.rule);
        }
        if report.more_problems > 0 {
            eprintln!("... and {} more problems", report.more_problems);
        }
        let invalid = report.rows - report.valid;
        if invalid > 0 && !skip_invalid {
            bail!(
                "{invalid} of {} rows are invalid; nothing was written (fix them, or pass --skip-invalid to write the {} good rows)",
                report.rows,
                report.valid
            );
        }
        println!(
            "Imported {} of {} rows into {} ({invalid} invalid rows skipped)",
            report.written, report.rows, org.slug
        );
        Ok(())
    })
}
