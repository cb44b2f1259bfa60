//! `ferrolb`: the one binary users run (k3s-style). Thin dispatch only.
//!
//! Every flag of every subcommand can also be given as the environment
//! variable `FERROLB_<FLAG>` (`--node-name` → `FERROLB_NODE_NAME`); older
//! spellings (`NODE_NAME`, `METALLB_NAMESPACE`, …) are still read, with a
//! deprecation warning. `--log-level` (or `RUST_LOG`) filters the logs of all.

mod announce;
mod convert;
mod diff;
mod explain;
mod validate;
mod vip;

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// `ferrolb --version`: the version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FERROLB_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "ferrolb",
    version = VERSION,
    about = "Bare-metal LoadBalancer for Kubernetes (MetalLB-compatible config, BGP)"
)]
struct Cli {
    /// Log filter for every subcommand: a level (error, warn, info, debug,
    /// trace) or a tracing EnvFilter directive; default: RUST_LOG, else info
    /// (error for explain and diff, whose output is their report).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Allocate LoadBalancer IPs to Services from the configured address pools.
    Controller(ferrolb_controller::ControllerOpts),
    /// Announce this node's service IPs over BGP (the DaemonSet; one per node).
    Speaker(ferrolb_speaker::SpeakerOpts),
    /// Validate MetalLB configs: ConfigMap manifests, bare config text, or
    /// files of metallb.io custom resources (validated together as one set).
    Validate(validate::Args),
    /// Convert a MetalLB v0.12 ConfigMap to the equivalent metallb.io custom resources.
    Convert(convert::Args),
    /// Announce prefixes to one BGP peer until SIGINT/SIGTERM.
    Announce(announce::Args),
    /// Keep a control-plane address (the API servers' VIP) alive over BGP or
    /// layer 2 while the local API server is healthy; `vip manifest` prints
    /// its static pod.
    Vip(Box<vip::Args>),
    /// Why a Service is (not) announced: its pool and, per node and peer
    /// (BGP) or per node (layer 2), the speakers' decision and reason, from
    /// the same functions they run; compared with the status objects.
    /// Exit 0 served, 1 not served, 2 error.
    Explain(Box<explain::Args>),
    /// What applying a configuration would do, against the live cluster:
    /// rejected (and why), Services whose IPs change, routes withdrawn,
    /// added or re-advertised per node and peer, sessions reset. Writes
    /// nothing. Exit 0 nothing moves, 1 something moves, 2 invalid or rejected.
    Diff(Box<diff::Args>),
}

/// The command line, with the `FERROLB_<FLAG>` variables (and deprecated
/// ones, whose warnings are returned).
fn command() -> (clap::Command, Vec<String>) {
    ferrolb_ops::cli::env_for_every_flag(Cli::command(), &|name| std::env::var(name).ok())
}

fn main() -> Result<ExitCode> {
    let (cmd, deprecated) = command();
    let cli = Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit());
    // `explain` and `diff` print a report: the logs of the code they run
    // (the controller core warns of the rejection diff reports) only when asked.
    let default_level = (matches!(cli.cmd, Cmd::Explain(_) | Cmd::Diff(_))
        && std::env::var_os("RUST_LOG").is_none())
    .then_some("error");
    ferrolb_ops::logging::init(cli.log_level.as_deref().or(default_level));
    for warning in &deprecated {
        tracing::warn!("{warning}");
    }
    match cli.cmd {
        Cmd::Validate(args) => validate::run(args),
        Cmd::Convert(args) => convert::run(args),
        Cmd::Announce(args) => announce::run(args),
        Cmd::Vip(args) => vip::run(*args),
        Cmd::Explain(args) => Ok(explain::run(*args)),
        Cmd::Diff(args) => Ok(diff::run(*args)),
        Cmd::Controller(opts) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(ferrolb_controller::run(opts))
            .map(|()| ExitCode::SUCCESS),
        Cmd::Speaker(opts) => {
            // One thread: the speaker runs on every node, so its footprint matters.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(ferrolb_speaker::run(opts))
                .map(|()| ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of every subcommand has its `FERROLB_<FLAG>` variable.
    #[test]
    fn every_flag_has_its_environment_variable() {
        let (mut cmd, _) = ferrolb_ops::cli::env_for_every_flag(Cli::command(), &|_| None);
        cmd.build();
        let mut seen = 0;
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" || long == "version" {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert_eq!(
                    env.as_deref(),
                    Some(ferrolb_ops::cli::env_name(long).as_str()),
                    "ferrolb {} --{long}",
                    sub.get_name()
                );
                seen += 1;
            }
        }
        assert!(seen > 30, "only {seen} flags seen");
    }

    /// The variable a flag of a subcommand reads.
    fn env_of(cmd: &clap::Command, sub: &str, long: &str) -> Option<String> {
        let sub = cmd.find_subcommand(sub)?;
        let arg = sub.get_arguments().find(|a| a.get_long() == Some(long))?;
        arg.get_env().map(|e| e.to_string_lossy().into_owned())
    }

    /// A deprecated variable feeds its flag when the new one is unset, with
    /// a warning; when both are set, the new one wins.
    #[test]
    fn deprecated_variables_still_work_and_warn() {
        let old_only = |name: &str| (name == "NODE_NAME").then(|| "n1".to_string());
        let (cmd, warnings) = ferrolb_ops::cli::env_for_every_flag(Cli::command(), &old_only);
        assert_eq!(
            env_of(&cmd, "speaker", "node-name").as_deref(),
            Some("NODE_NAME")
        );
        assert_eq!(
            warnings,
            [
                "environment variable NODE_NAME is deprecated: use FERROLB_NODE_NAME (or --node-name)"
            ]
        );
        // Other flags keep their own names.
        assert_eq!(
            env_of(&cmd, "speaker", "namespace").as_deref(),
            Some("FERROLB_NAMESPACE")
        );

        let both = |name: &str| {
            matches!(name, "NODE_NAME" | "FERROLB_NODE_NAME").then(|| "n1".to_string())
        };
        let (cmd, warnings) = ferrolb_ops::cli::env_for_every_flag(Cli::command(), &both);
        assert_eq!(
            env_of(&cmd, "speaker", "node-name").as_deref(),
            Some("FERROLB_NODE_NAME")
        );
        assert!(warnings.is_empty(), "{warnings:?}");

        let all_old = |name: &str| {
            matches!(
                name,
                "METALLB_NAMESPACE" | "METALLB_CONFIG" | "METRICS_ADDR" | "FERROLB_BGP_PASSWORD"
            )
            .then(|| "x".to_string())
        };
        let (cmd, warnings) = ferrolb_ops::cli::env_for_every_flag(Cli::command(), &all_old);
        for (sub, flag, var) in [
            ("speaker", "namespace", "METALLB_NAMESPACE"),
            ("controller", "namespace", "METALLB_NAMESPACE"),
            ("speaker", "config-name", "METALLB_CONFIG"),
            ("controller", "metrics-addr", "METRICS_ADDR"),
            ("announce", "password", "FERROLB_BGP_PASSWORD"),
        ] {
            assert_eq!(
                env_of(&cmd, sub, flag).as_deref(),
                Some(var),
                "{sub} --{flag}"
            );
        }
        assert_eq!(warnings.len(), 4, "one warning per variable: {warnings:?}");
    }
}
