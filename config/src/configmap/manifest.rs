//! Reading the config text out of a ConfigMap manifest, so tools accept either the
//! manifest users `kubectl apply` or the bare text under its `config` key.

use super::yaml::{self, Node};
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
    match yaml::load(document) {
        Ok(docs) => find(&docs).unwrap_or_else(|| Ok(bare())),
        Err(_) => Ok(bare()),
    }
}

/// The config of parsed `docs` if they are manifests (some document has a `kind`),
/// `None` if they are bare config.
pub(crate) fn find(docs: &[Option<Node<'_>>]) -> Option<Result<ConfigText, ConfigErrors>> {
    let kind_of = |d: &Option<Node<'_>>| {
        let (k, v) = d.as_ref()?.get("kind")?;
        let text = v.scalar().map_or("?".into(), |s| s.text.to_string());
        Some((k.line, text))
    };
    if docs.iter().all(|d| kind_of(d).is_none()) {
        return None;
    }
    let mut first_err = None;
    for d in docs {
        match kind_of(d) {
            Some((_, kind)) if kind == "ConfigMap" => {}
            Some((line, other)) => {
                first_err.get_or_insert(ConfigError {
                    file: None,
                    line: Some(line),
                    path: "kind".into(),
                    kind: ErrorKind::NotConfigMap(other),
                });
                continue;
            }
            None => continue,
        }
        let root = d.as_ref().expect("a document with a kind");
        let data = root.get("data");
        let Some((key, config)) = data.and_then(|(_, data)| data.get("config")) else {
            first_err = Some(ConfigError {
                file: None,
                line: Some(data.map_or(root.line, |(k, _)| k.line)),
                path: "data.config".into(),
                kind: ErrorKind::Missing,
            });
            continue;
        };
        let Some(scalar) = config.scalar().filter(|_| !config.is_null()) else {
            return Some(Err(ConfigErrors(vec![ConfigError {
                file: None,
                line: Some(key.line),
                path: "data.config".into(),
                kind: ErrorKind::Yaml(format!(
                    "invalid type: {}, expected a string",
                    config.describe()
                )),
            }])));
        };
        // A literal block (`config: |`) keeps the lines.
        return Some(Ok(ConfigText {
            text: scalar.text.to_string(),
            line_offset: scalar.line_offset,
            from_manifest: true,
        }));
    }
    Some(Err(ConfigErrors(vec![first_err.unwrap_or(ConfigError {
        file: None,
        line: None,
        path: String::new(),
        kind: ErrorKind::Missing,
    })])))
}
