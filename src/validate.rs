//! `ferrolb validate FILE`: check a MetalLB-format config (a ConfigMap manifest or the
//! bare config text) with the same parser the controller and speaker use.
//!
//! Exit codes: 0 valid (one summary line on stdout), 1 invalid (every error on
//! stdout, one per line, with line numbers), 2 the file could not be read.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use ferrolb_config::Config;

/// Arguments of `ferrolb validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The config file: a ConfigMap manifest or bare config text; `-` reads stdin.
    pub file: PathBuf,
}

/// Validate and print a summary; the process exit code says valid (0) or not (1),
/// or unreadable input (2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map(|_| s)
            .map_err(|e| format!("cannot read standard input: {e}"))
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))
    };
    let text = match text {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("ferrolb validate: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    match Config::parse_document(&text) {
        Ok(cfg) => {
            println!("{}", cfg.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            let name = if args.file.as_os_str() == "-" {
                "standard input".to_string()
            } else {
                args.file.display().to_string()
            };
            eprintln!(
                "ferrolb validate: {name}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(1))
        }
    }
}
