//! Logging set-up: `tracing` to stderr.

use tracing_subscriber::EnvFilter;

/// The filter directive in force: `level` when given, else `RUST_LOG` (`env`),
/// else `info`. Empty strings count as absent.
/// MetalLB's level names `all` and `none` are read as `trace` and `off`.
pub fn directive<'a>(level: Option<&'a str>, env: Option<&'a str>) -> &'a str {
    let d = [level, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("info");
    match d {
        "all" => "trace",
        "none" => "off",
        d => d,
    }
}

/// Logs to stderr, filtered by `level` (a level such as `debug`, or any
/// `tracing` `EnvFilter` directive), else by `RUST_LOG`, else at `info`.
/// An unparsable filter falls back to `info` (and says so). Calling it again,
/// or after another subscriber was installed, does nothing.
pub fn init(level: Option<&str>) {
    let env = std::env::var("RUST_LOG").ok();
    let wanted = directive(level, env.as_deref());
    let (filter, bad) = match EnvFilter::try_new(wanted) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .is_ok();
    if installed && let Some(e) = bad {
        tracing::warn!(filter = wanted, error = %e, "invalid log filter; logging at info");
    }
}
