//! `ferrolb`: the one binary users run (k3s-style). Thin dispatch only.

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
    /// Allocate LoadBalancer IPs to Services (not yet implemented).
    Controller,
    /// Announce this node's service IPs over BGP (not yet implemented).
    Speaker,
    /// Validate a MetalLB-format config (not yet implemented).
    Validate,
    /// Announce prefixes to one BGP peer until SIGINT/SIGTERM (not yet implemented).
    Announce,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Controller | Cmd::Speaker | Cmd::Validate | Cmd::Announce => {
            anyhow::bail!("not yet implemented")
        }
    }
}
