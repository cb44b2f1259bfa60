//! The MetalLB v0.12 ConfigMap front end: the YAML text under key `config` of
//! ConfigMap `metallb-system/config` (or the manifest holding it) → [`Config`].
//!
//! Layers, each pure:
//! - `yaml`: text → a tree of nodes with lines, from `saphyr-parser`'s events;
//!   plain scalars resolved by YAML 1.1 as MetalLB's Go decoder does.
//! - `read`: field readers (text, integer, boolean, list, mapping with a schema of
//!   allowed keys) that collect errors with path and line.
//! - `convert`: the format's levels read into the model, with MetalLB's checks.
//! - `manifest`: finding the config text in a ConfigMap manifest.

mod convert;
mod manifest;
pub(crate) mod read;
pub(crate) mod yaml;

pub use manifest::{ConfigText, config_text};

use crate::{Config, ConfigError, ConfigErrors, ErrorKind};

impl Config {
    /// Parse and validate bare MetalLB config text (what is under the ConfigMap's
    /// `config` key). Returns every error found, in line order; lines are 1-based
    /// lines of `text`. An empty text is a valid, empty config.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        match yaml::load(text) {
            Ok(docs) => from_documents(&docs),
            Err(e) => Err(syntax(e)),
        }
        .map_err(ConfigErrors)
    }

    /// Parse either a ConfigMap manifest (see [`config_text`]) or bare config text.
    /// Error lines refer to `document` (for a manifest whose config is a `|` block:
    /// the manifest's lines; otherwise lines are dropped).
    pub fn parse_document(document: &str) -> Result<Config, ConfigErrors> {
        let docs = yaml::load(document).map_err(|e| ConfigErrors(syntax(e)))?;
        let Some(found) = manifest::find(&docs) else {
            // Bare config text: already parsed.
            return from_documents(&docs).map_err(ConfigErrors);
        };
        let found = found?;
        Config::parse(&found.text).map_err(|mut errs| {
            for e in &mut errs.0 {
                e.line = match (e.line, found.line_offset) {
                    (Some(l), Some(o)) => Some(l + o),
                    _ => None,
                };
            }
            errs
        })
    }
}

/// The config of a YAML stream: empty documents are ignored (an empty stream is
/// an empty config); more than one non-empty document is an error.
fn from_documents(docs: &[Option<yaml::Node<'_>>]) -> Result<Config, Vec<ConfigError>> {
    let mut roots = docs.iter().flatten().filter(|n| !n.is_null());
    let root = roots.next();
    if let Some(extra) = roots.next() {
        return Err(vec![ConfigError {
            file: None,
            line: Some(extra.line),
            path: String::new(),
            kind: ErrorKind::Yaml(
                "a second YAML document: the config is one document (no `---` inside)".into(),
            ),
        }]);
    }
    convert::config(root)
}

fn syntax(e: yaml::SyntaxError) -> Vec<ConfigError> {
    vec![ConfigError {
        file: None,
        line: Some(e.line),
        path: String::new(),
        kind: ErrorKind::Yaml(format!("YAML syntax error: {}", e.message)),
    }]
}
