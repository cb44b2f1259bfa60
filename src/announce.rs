//! `ferrolb announce`: a command-line BGP announcer on ferrolb-bgp. (being written)

/// Arguments of `ferrolb announce`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Run the announcer until SIGINT/SIGTERM.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("ferrolb announce: not yet implemented")
}
