//! `ferrolb convert FILE [-o OUT] [--namespace NS]`: a MetalLB v0.12 ConfigMap
//! (manifest or bare config text) as the equivalent `metallb.io` custom
//! resources (what MetalLB's `configmaptocrs` tool does); the conversion
//! itself is `ferrolb_config::crs::configmap_to_resources`.
//!
//! Exit codes: 0 converted (the resources on stdout, or in OUT), 1 the
//! ConfigMap is invalid (every error on stderr, as `ferrolb validate` words
//! them) or cannot be converted, 2 the file could not be read or OUT written.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrolb_config::crs::{self, ConvertError};

use crate::validate::{display_name, read_input};

/// Arguments of `ferrolb convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ConfigMap: a manifest or the bare config text; `-` reads stdin.
    pub file: PathBuf,
    /// Write the resources to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Namespace of the resources [default: the ConfigMap's, else metallb-system].
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
}

/// Convert and print (or write) the resources.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = display_name(&args.file);
    let text = match read_input(&args.file) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("ferrolb convert: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    let converted = match crs::configmap_to_resources(&text, args.namespace.as_deref()) {
        Ok(c) => c,
        Err(ConvertError::Invalid(errors)) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "ferrolb convert: {name}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("ferrolb convert: {name}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for r in &converted.renamed {
        eprintln!(
            "ferrolb convert: note: pool {:?} becomes {} {:?} (not a valid Kubernetes name): \
             update Services that ask for it by name",
            r.from, r.kind, r.to
        );
    }
    match &args.output {
        None => print!("{}", converted.yaml),
        Some(out) => {
            if let Err(e) = std::fs::write(out, &converted.yaml) {
                eprintln!("ferrolb convert: cannot write {}: {e}", out.display());
                return Ok(ExitCode::from(2));
            }
            eprintln!(
                "ferrolb convert: {} object{} in namespace {} from {} written to {}",
                converted.objects,
                if converted.objects == 1 { "" } else { "s" },
                converted.namespace,
                converted.source,
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
