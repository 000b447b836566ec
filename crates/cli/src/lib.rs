//! The `strongroom` command line: parses arguments, loads and validates the
//! configuration, and runs `init`, `serve`, `check-config` and the operator
//! commands. Errors print as a readable chain and exit non-zero.

mod args;
mod backups;
mod exports;
mod lifecycle;
mod ops;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use server::config::{Config, ConfigErrors};

use crate::args::{Cli, Command, ConfigArgs};

/// Exit status for a configuration that was refused.
const EXIT_CONFIG: u8 = 2;

/// Runs the command line and returns the process's exit status.
pub fn main() -> ExitCode {
    // With the AWS SDK compiled in, two rustls providers exist; choose ring
    // for anything that asks for the process default. Every configuration
    // Strongroom builds names its provider explicitly anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { operator_email, config } => ops::init(&config, &operator_email),
        Command::Serve(args) => serve(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Org(cmd) => ops::org(cmd),
        Command::Keys(cmd) => ops::keys(cmd),
        Command::Audit(cmd) => ops::audit(cmd),
        Command::Backup(cmd) => backups::run(cmd),
        Command::Retention(cmd) => lifecycle::retention(cmd),
        Command::Import { org, skip_invalid, file, config } => exports::import(&org, &file, skip_invalid, &config),
        Command::Export { org, format, out, audit, config } => {
            let dataset = if audit { exports::Dataset::Audit } else { exports::Dataset::Real };
            exports::run(&org, &format, out.as_deref(), &config, dataset)
        }
        Command::Pseudonymise { org, format, out, config } => {
            exports::run(&org, &format, Some(&out), &config, exports::Dataset::Pseudonymised)
        }
        Command::User(cmd) => ops::user(cmd),
        Command::Member(cmd) => ops::member(cmd),
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
pub(crate) fn load_config(args: &ConfigArgs) -> anyhow::Result<Config> {
    server::config::check_environment(std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()))?;
    Ok(Config::load(&args.overrides())?)
}

/// Runs async work on a fresh runtime.
/// A new file only its owner reads (mode 0600), never replacing one.
pub(crate) fn create_private(path: &std::path::Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    Ok(std::io::BufWriter::new(file))
}

pub(crate) fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
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
    let first_start = config.dev && !kms::LocalKms::exists(&server::keys::keystore_dir(&config));
    block_on(async {
        // Registered first: a signal that arrives while starting is kept.
        let mut signals = Signals::listen()?;
        let running = server::start(&config).await?;
        print_banner(&config, &running);
        if first_start {
            let email = domain::Email::parse(ops::DEV_OPERATOR).map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(token) = ops::bootstrap_operator(running.engine(), &email).await? {
                ops::print_setup(&config, running.local_addr().port(), &email, &token);
            }
        }
        running.run_until(async move { signals.recv().await }).await
    })
}

/// Tells a person where to open the service and how to trust it. A closed
/// standard output (a supervisor that stopped reading) must not stop the
/// server, so write errors are ignored.
fn print_banner(config: &Config, running: &server::Running) {
    use std::io::Write;
    let url = format!("https://localhost:{}/", running.local_addr().port());
    let mut text = format!(
        "Strongroom is serving HTTPS on {} ({} store)\n  Open:    {url}readyz   (also /healthz and /metrics)\n",
        running.local_addr(),
        running.backend()
    );
    if let Some(ca) = running.ca_file() {
        text += &format!("  Trust:   {}  (the local CA that signed this server's certificate)\n", ca.display());
        text += &format!("           e.g. curl --cacert {} {url}readyz\n", ca.display());
    }
    text += &format!("  Data:    {}\n", config.data_dir.display());
    text += &format!(
        "  Keys:    {} key backend{}\n",
        config.kms.backend.name(),
        if config.dev { " (development mode: unseal key kept in the data directory)" } else { "" }
    );
    text += "  Sign in: POST /v1/auth/login with an account's e-mail and password (create accounts with `strongroom user create`)\n";
    text += "  Stop:    Ctrl-C or SIGTERM (in-flight requests finish first)\n";
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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
