//! `ferrolb validate`: check a MetalLB-format config. (being written)

/// Arguments of `ferrolb validate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Validate and print a summary; the process exit code says valid (0) or not (1).
pub fn run(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("ferrolb validate: not yet implemented")
}
