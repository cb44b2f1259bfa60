//! Reading the config text out of a ConfigMap manifest, so tools accept either the
//! manifest users `kubectl apply` or the bare text under its `config` key.

use serde_yaml::Value;

use crate::positions::Positions;
use crate::{ConfigError, ConfigErrors, ErrorKind};

/// The MetalLB config text found in a document, and how its lines map back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigText {
    /// The text under `data.config` (or the whole document when it is bare config).
    pub text: String,
    /// Add this to a 1-based line of `text` to get the line in the document;
    /// `None` when lines cannot be mapped (a quoted or folded scalar).
    pub line_offset: Option<usize>,
    /// True when the document was a ConfigMap manifest.
    pub from_manifest: bool,
}

/// Find the MetalLB config in `document`: a `kind: ConfigMap` manifest (the first
/// ConfigMap with a `data.config` key, among possibly several `---` documents) or the
/// bare config text itself.
///
/// A document that is YAML but has a `kind` other than ConfigMap is an error; a
/// ConfigMap without `data.config` is an error at path `data.config`. Text that is not
/// YAML is returned as bare config, so that the parser reports the syntax error.
pub fn config_text(document: &str) -> Result<ConfigText, ConfigErrors> {
    let bare = || ConfigText {
        text: document.to_string(),
        line_offset: Some(0),
        from_manifest: false,
    };
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(document) {
        match serde::Deserialize::deserialize(d) {
            Ok(v) => docs.push(v),
            Err(_) => return Ok(bare()),
        }
    }
    let kind_of = |v: &Value| v.get("kind").map(|k| k.as_str().unwrap_or("?").to_string());
    if docs.iter().all(|d: &Value| kind_of(d).is_none()) {
        return Ok(bare());
    }
    let pos = Positions::index(document);
    let mut first_err = None;
    for (i, d) in docs.iter().enumerate() {
        match kind_of(d).as_deref() {
            Some("ConfigMap") => {}
            Some(other) => {
                first_err.get_or_insert(ConfigError {
                    line: pos.line(i, "kind"),
                    path: "kind".into(),
                    kind: ErrorKind::NotConfigMap(other.to_string()),
                });
                continue;
            }
            None => continue,
        }
        let Some(config) = d.get("data").and_then(|data| data.get("config")) else {
            first_err = Some(ConfigError {
                line: pos.line(i, "data"),
                path: "data.config".into(),
                kind: ErrorKind::Missing,
            });
            continue;
        };
        let Some(text) = config.as_str() else {
            return Err(ConfigErrors(vec![ConfigError {
                line: pos.line(i, "data.config"),
                path: "data.config".into(),
                kind: ErrorKind::Yaml("expected a string".into()),
            }]));
        };
        // A literal block (`config: |`) keeps the lines: text line 1 is the line after.
        let line_offset = pos.line(i, "data.config").filter(|&l| {
            document
                .lines()
                .nth(l - 1)
                .and_then(|line| line.split_once("config:"))
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('|'))
        });
        return Ok(ConfigText {
            text: text.to_string(),
            line_offset,
            from_manifest: true,
        });
    }
    Err(ConfigErrors(vec![first_err.unwrap_or(ConfigError {
        line: None,
        path: String::new(),
        kind: ErrorKind::Missing,
    })]))
}
