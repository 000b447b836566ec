//! The `strongroom` command line: parses arguments, loads and validates the
//! configuration, and runs `serve`, `check-config` and the operator
//! commands. Errors print as a readable chain and exit non-zero.

mod args;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use server::config::{Config, ConfigErrors};

use crate::args::{Cli, Command, ConfigArgs};

/// Exit status for a configuration that was refused.
const EXIT_CONFIG: u8 = 2;

/// Runs the command line and returns the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::CheckConfig(args) => check_config(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigErrors>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the effective configuration: file, then environment, then flags.
fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    server::config::check_environment(
        std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()),
    )?;
    Ok(Config::load(&args.overrides())?)
}

fn check_config(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    print!("{}", config.render_redacted());
    println!("# configuration is valid");
    Ok(())
}

fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    server::telemetry::init(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let running = server::start(&config).await?;
        print_banner(&config, &running);
        let mut signals = Signals::listen()?;
        running.run_until(async move { signals.recv().await }).await
    })
}

/// Tells a person where to open the service and how to trust it.
fn print_banner(config: &Config, running: &server::Running) {
    let url = format!("https://localhost:{}/", running.local_addr().port());
    println!(
        "Strongroom is serving HTTPS on {} ({} store)",
        running.local_addr(),
        running.backend()
    );
    println!("  Open:    {url}readyz   (also /healthz and /metrics)");
    if let Some(ca) = running.ca_file() {
        println!(
            "  Trust:   {}  (the local CA that signed this server's certificate)",
            ca.display()
        );
        println!("           e.g. curl --cacert {} {url}readyz", ca.display());
    }
    println!("  Data:    {}", config.data_dir.display());
    println!(
        "  Sign in: no accounts exist in this release yet; the API has only the operations endpoints"
    );
    println!("  Stop:    Ctrl-C or SIGTERM (in-flight requests finish first)");
}

/// SIGTERM and SIGINT, registered before serving so none is missed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
