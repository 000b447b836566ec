//! Logging set-up for the binary: structured JSON lines on standard error,
//! filtered by the configured level. Tests install nothing, so they stay
//! quiet unless `TEST_LOG` is set.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; a second call is a no-op.
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
