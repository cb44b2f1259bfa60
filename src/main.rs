//! `ferrolb`: the one binary users run (k3s-style). Thin dispatch only.

mod announce;
mod validate;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferrolb",
    version,
    about = "Bare-metal LoadBalancer for Kubernetes (MetalLB-compatible config, BGP)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Allocate LoadBalancer IPs to Services from the configured address pools.
    Controller(ferrolb_controller::ControllerOpts),
    /// Announce this node's service IPs over BGP (the DaemonSet; one per node).
    Speaker(ferrolb_speaker::SpeakerOpts),
    /// Validate a MetalLB-format config: a ConfigMap manifest or the bare config text.
    Validate(validate::Args),
    /// Announce prefixes to one BGP peer until SIGINT/SIGTERM.
    Announce(announce::Args),
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Validate(args) => validate::run(args),
        Cmd::Announce(args) => announce::run(args).map(|()| ExitCode::SUCCESS),
        Cmd::Controller(opts) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(ferrolb_controller::run(opts))
            .map(|()| ExitCode::SUCCESS),
        Cmd::Speaker(opts) => {
            init_logging();
            // One thread: the speaker runs on every node, so its footprint matters.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ferrolb_speaker::run(opts))
                .map(|()| ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
