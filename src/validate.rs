//! `ferrolb validate FILE...`: check MetalLB configurations with the same
//! front ends the controller and speaker use: v0.12 ConfigMaps (manifests or
//! the bare config text) and `metallb.io` custom resources (v0.13+).
//!
//! Each ConfigMap is validated on its own; the custom resources of all files
//! form one set, validated together (with the Secrets among the files for
//! `passwordSecret`). A file holding only a ConfigMap (or bare config text, or
//! another kind) is read exactly as a v0.12 config.
//!
//! Exit codes: 0 valid (a summary line per configuration on stdout, and
//! `warning: ...` lines for fields accepted but not acted on), 1 invalid (every
//! error on stdout, one per line, with file and line when several files are
//! given or the file holds custom resources), 2 a file could not be read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferrolb_config::crs::{self, Document, PasswordSecret, Resources, Secrets};
use ferrolb_config::{Config, ConfigError};

/// Arguments of `ferrolb validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config files: ConfigMap manifests, bare config text, or YAML files of
    /// metallb.io custom resources (and Secrets); `-` reads stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// The name of a file in messages (`standard input` for `-`).
pub fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// Read a file, or stdin for `-`; the error is a message for humans.
pub fn read_input(path: &Path) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map(|_| s)
            .map_err(|e| format!("cannot read standard input: {e}"))
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// Validate and print summaries or errors; the process exit code says valid
/// (0) or not (1), or unreadable input (2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut texts = Vec::new();
    let mut unreadable = false;
    for path in &args.files {
        match read_input(path) {
            Ok(t) => texts.push((display_name(path), t)),
            Err(msg) => {
                eprintln!("ferrolb validate: {msg}");
                unreadable = true;
            }
        }
    }
    if unreadable {
        return Ok(ExitCode::from(2));
    }
    if let [(name, text)] = texts.as_slice()
        && !holds_resources(text)
    {
        return Ok(single_configmap(name, text));
    }
    Ok(many(&texts))
}

/// Does the text hold documents that are not a v0.12 config (custom resources
/// or Secrets)? Text that is not YAML does not: the ConfigMap front end
/// reports its syntax error as before.
fn holds_resources(text: &str) -> bool {
    crs::documents(text).is_ok_and(|docs| docs.iter().any(|d| d.is_metallb() || d.kind == "Secret"))
}

/// One file, one v0.12 config: the output ferrolb validate always had.
fn single_configmap(name: &str, text: &str) -> ExitCode {
    match Config::parse_document(text) {
        Ok(cfg) => {
            println!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!(
                "ferrolb validate: {name}: {} error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
    }
}

/// What one file contributes.
#[derive(Default)]
struct Collected {
    /// ConfigMaps to validate on their own: (label, text, line offset).
    configmaps: Vec<(String, String, usize)>,
    /// Secrets by name.
    secrets: BTreeMap<String, PasswordSecret>,
    /// `Kind/name` → file, to put a file name on the set's errors.
    objects: BTreeMap<String, String>,
    /// Errors found while reading the files, already formatted.
    errors: Vec<String>,
}

/// Reads the files: ConfigMaps apart, the custom resources of all files into
/// one set, Secrets by name; with the number of files holding resources.
fn collect(texts: &[(String, String)]) -> (Collected, Resources, usize) {
    let mut c = Collected::default();
    let mut resources = Resources::new();
    let mut resource_files = 0;
    for (name, text) in texts {
        if !holds_resources(text) {
            c.configmaps.push((name.clone(), text.clone(), 0));
            continue;
        }
        resource_files += 1;
        let docs = match crs::documents(text) {
            Ok(d) => d,
            Err(e) => {
                c.errors.push(located(name, &e));
                continue;
            }
        };
        // The file as the custom-resource front end sees it: only the
        // metallb.io documents, every other line blank (lines keep their numbers).
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        for d in &docs {
            if d.is_metallb() {
                c.objects
                    .insert(format!("{}/{}", d.kind, d.name), name.clone());
            } else {
                let start = d.line - 1;
                let end = (start + d.text.lines().count()).min(lines.len());
                for l in &mut lines[start..end] {
                    *l = "\n";
                }
                other_document(&mut c, name, d);
            }
        }
        let only_crs = lines.concat();
        match resources.add_yaml(name, &only_crs) {
            Ok(_) => {}
            Err(errors) => c.errors.extend(errors.iter().map(|e| located(name, e))),
        }
    }
    (c, resources, resource_files)
}

/// The one configuration that `texts` hold (`ferrolb diff`): a ConfigMap
/// (manifest or bare text) or a set of custom resources, not both. Errors are
/// formatted as `validate` prints them.
pub(crate) fn one_config(texts: &[(String, String)]) -> Result<Config, Vec<String>> {
    let (c, resources, _) = collect(texts);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    match (c.configmaps.as_slice(), resources.is_empty()) {
        ([(name, text, offset)], true) => Config::parse_document(text).map_err(|errors| {
            errors
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    e.line = e.line.map(|l| l + offset);
                    located(name, &e)
                })
                .collect()
        }),
        ([], false) => {
            let secrets = if resources
                .password_secrets()
                .iter()
                .all(|s| c.secrets.contains_key(s))
            {
                Secrets::Given(&c.secrets)
            } else {
                Secrets::Ignore
            };
            Config::from_resources(&resources, secrets)
                .map_err(|errors| errors.iter().map(|e| set_error(&c.objects, e)).collect())
        }
        ([], true) => Err(vec!["no configuration in the files".to_string()]),
        _ => Err(vec![
            "give one configuration: one ConfigMap, or custom resources (not both, not several ConfigMaps)"
                .to_string(),
        ]),
    }
}

/// Several files, or custom resources: every error and summary names its file.
fn many(texts: &[(String, String)]) -> ExitCode {
    let (mut c, resources, resource_files) = collect(texts);

    let mut valid = Vec::new();
    let labelled = c.configmaps.len() + usize::from(resource_files > 0) > 1;
    for (name, text, offset) in &c.configmaps {
        match Config::parse_document(text) {
            Ok(cfg) => valid.push(labelled_summary(labelled, name, &cfg)),
            Err(errors) => c.errors.extend(errors.iter().map(|e| {
                let mut e = e.clone();
                e.line = e.line.map(|l| l + offset);
                located(name, &e)
            })),
        }
    }
    if !resources.is_empty() {
        let wanted = resources.password_secrets();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|s| !c.secrets.contains_key(*s))
            .collect();
        let secrets = if missing.is_empty() {
            Secrets::Given(&c.secrets)
        } else {
            for s in &missing {
                println!(
                    "note: Secret {s:?} (a BGPPeer's passwordSecret) is not among the files: \
                     passwordSecret references are not checked"
                );
            }
            Secrets::Ignore
        };
        match Config::from_resources(&resources, secrets) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    println!("warning: {w}");
                }
                let label = if resource_files == 1 {
                    "custom resources".to_string()
                } else {
                    format!("custom resources ({resource_files} files)")
                };
                valid.push(labelled_summary(labelled, &label, &cfg));
            }
            Err(errors) => c
                .errors
                .extend(errors.iter().map(|e| set_error(&c.objects, e))),
        }
    }
    if c.errors.is_empty() {
        for line in valid {
            println!("{line}");
        }
        return ExitCode::SUCCESS;
    }
    for e in &c.errors {
        println!("{e}");
    }
    eprintln!(
        "ferrolb validate: {} error{}",
        c.errors.len(),
        if c.errors.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(1)
}

/// A document of a custom-resource file that is not a `metallb.io` object.
fn other_document(c: &mut Collected, file: &str, d: &Document) {
    match d.kind.as_str() {
        "ConfigMap" => {
            c.configmaps
                .push((format!("{file}:{}", d.line), d.text.clone(), d.line - 1))
        }
        "Secret" => match crs::password_secret(d) {
            Ok((name, secret)) => {
                c.secrets.insert(name, secret);
            }
            Err(e) => c.errors.push(located(file, &e)),
        },
        other => c.errors.push(format!(
            "{file}:{}: {}unknown kind {other:?} (expected a metallb.io kind, ConfigMap or Secret)",
            d.line,
            if d.name.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.name)
            }
        )),
    }
}

fn labelled_summary(labelled: bool, label: &str, cfg: &Config) -> String {
    if labelled {
        format!("{label}: {}", cfg.summary())
    } else {
        cfg.summary()
    }
}

/// `file:line: path: message` (parts left out when unknown).
fn located(file: &str, e: &ConfigError) -> String {
    let mut s = e.file.as_deref().unwrap_or(file).to_string();
    if let Some(line) = e.line {
        s.push_str(&format!(":{line}"));
    }
    if !e.path.is_empty() {
        s.push_str(&format!(": {}", e.path));
    }
    format!("{s}: {}", e.kind)
}

/// An error of the custom-resource set, with the file of the object it names
/// (`IPAddressPool/default: spec...`).
fn set_error(objects: &BTreeMap<String, String>, e: &ConfigError) -> String {
    let object = e.path.split(':').next().unwrap_or("");
    match objects.get(object) {
        Some(file) => located(file, e),
        None => located("custom resources", e),
    }
}
