//! Logging with `tracing`: readable text by default, JSON lines on request. Every line
//! written while serving a request carries that request's id (see `http::request_id`).

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogConfig, LogFormat};

/// Install the global subscriber. Safe to call more than once (later calls are ignored), so
/// tests that start several servers in one process do not fail.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_env("FERROACS_LOG_FILTER")
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match cfg.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_target(false).with_writer(std::io::stderr))
            .try_init(),
    };
}
