//! Flags the Kubernetes-facing subcommands share, and one naming rule for the
//! environment variables of every flag of every subcommand: `--node-name` is
//! also `FERROLB_NODE_NAME`, `--metrics-addr` is `FERROLB_METRICS_ADDR`, and
//! so on ([`env_for_every_flag`]). Spellings used before (and MetalLB's) are
//! still read, with a deprecation warning ([`DEPRECATED_ENV`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Command;

/// Flags of `ferrolb controller` and `ferrolb speaker` alike.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct KubeOpts {
    /// Kubeconfig file; without it: KUBECONFIG, ~/.kube/config, else the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the configuration ConfigMap (and of the controller's leader Lease).
    #[arg(long, default_value = "metallb-system")]
    pub namespace: String,
    /// Name of the ConfigMap holding the MetalLB configuration (key `config`).
    #[arg(long, default_value = "config")]
    pub config_name: String,
    /// Where the configuration is read from: `auto` (the metallb.io custom
    /// resources when an IPAddressPool exists, else the ConfigMap),
    /// `configmap` or `crds`.
    #[arg(long, value_enum, default_value_t = crate::config_source::SourceMode::Auto)]
    pub config_source: crate::config_source::SourceMode,
    /// Handle only Services with this `spec.loadBalancerClass` (default: only those without one).
    #[arg(long)]
    pub lb_class: Option<String>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, default_value = "0.0.0.0:7472")]
    pub metrics_addr: SocketAddr,
}

/// Environment variables read before this naming rule, by the flag they set:
/// `(flag, old variable)`. Read only when the `FERROLB_` one is not set, and
/// reported as deprecated.
pub const DEPRECATED_ENV: &[(&str, &str)] = &[
    ("node-name", "NODE_NAME"),
    ("node-name", "METALLB_NODE_NAME"),
    ("namespace", "METALLB_NAMESPACE"),
    ("config-name", "METALLB_CONFIG"),
    ("metrics-addr", "METRICS_ADDR"),
    ("password", "FERROLB_BGP_PASSWORD"),
];

/// The environment variable of flag `--long`: `FERROLB_` and the name in
/// upper case with `-` as `_`.
pub fn env_name(long: &str) -> String {
    format!("FERROLB_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// Gives every flag (an argument with a long name, not `--help`/`--version`)
/// of `cmd` and of all its subcommands its `FERROLB_<FLAG>` variable. Where
/// that variable is unset and a deprecated one of [`DEPRECATED_ENV`] is set,
/// the flag reads the deprecated one instead; `lookup` reads the environment
/// (injected for tests). Returns the command and one warning per deprecated
/// variable in use.
pub fn env_for_every_flag(
    cmd: Command,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Command, Vec<String>) {
    let mut warnings = Vec::new();
    let cmd = with_env(cmd, lookup, &mut warnings);
    warnings.sort();
    warnings.dedup();
    (cmd, warnings)
}

fn with_env(
    cmd: Command,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Command {
    let mut cmd = cmd.mut_args(|arg| {
        let Some(long) = arg.get_long().map(str::to_string) else {
            return arg;
        };
        if long == "help" || long == "version" || arg.get_env().is_some() {
            return arg;
        }
        let name = env_name(&long);
        if lookup(&name).is_none()
            && let Some((_, old)) = DEPRECATED_ENV
                .iter()
                .find(|(flag, old)| *flag == long && lookup(old).is_some())
        {
            warnings.push(format!(
                "environment variable {old} is deprecated: use {name} (or --{long})"
            ));
            return arg.env(*old);
        }
        arg.env(name)
    });
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sub| with_env(sub, lookup, warnings));
    }
    cmd
}
