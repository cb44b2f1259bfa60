//! The documents of a multi-document YAML file, for tools that take any mix
//! of manifests (`ferrolb validate`): where each starts, its `apiVersion`,
//! `kind` and name, its text; and the Secrets `BGPPeer.spec.passwordSecret`
//! refers to, read from such a document.

use crate::configmap::yaml::{self, Node};
use crate::crs::PasswordSecret;
use crate::{ConfigError, ErrorKind};

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1-based line of the file where the document's text starts.
    pub line: usize,
    /// `apiVersion`, empty if none.
    pub api_version: String,
    /// `kind`, empty if none.
    pub kind: String,
    /// `metadata.name`, empty if none.
    pub name: String,
    /// The document's text (without its `---` line): `line` is its first line.
    pub text: String,
}

impl Document {
    /// Is it a `metallb.io` object?
    pub fn is_metallb(&self) -> bool {
        self.api_version.starts_with("metallb.io/")
    }
}

/// Split `text` at its `---` (and `...`) lines into the non-empty documents.
/// A document that is not YAML is an error with its line in `text`.
#[allow(clippy::result_large_err)] // the crate's one error type
pub fn documents(text: &str) -> Result<Vec<Document>, ConfigError> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut chunk = String::new();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker =
            bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") || bare == "...";
        if marker {
            push(&mut out, start, std::mem::take(&mut chunk))?;
            start = i + 2;
        } else {
            chunk.push_str(line);
        }
    }
    push(&mut out, start, chunk)?;
    Ok(out)
}

#[allow(clippy::result_large_err)] // the crate's one error type
fn push(out: &mut Vec<Document>, line: usize, text: String) -> Result<(), ConfigError> {
    let docs = yaml::load(&text).map_err(|e| ConfigError {
        file: None,
        line: Some(line + e.line - 1),
        path: String::new(),
        kind: ErrorKind::Yaml(format!("YAML syntax error: {}", e.message)),
    })?;
    let Some(root) = docs.iter().flatten().find(|n| !n.is_null()) else {
        return Ok(());
    };
    let field = |n: &Node<'_>, k: &str| text_of(n.get(k).map(|(_, v)| v));
    let name = root
        .get("metadata")
        .map(|(_, m)| field(m, "name"))
        .unwrap_or_default();
    out.push(Document {
        line,
        api_version: field(root, "apiVersion"),
        kind: field(root, "kind"),
        name,
        text,
    });
    Ok(())
}

fn text_of(n: Option<&Node<'_>>) -> String {
    n.filter(|n| !n.is_null())
        .and_then(|n| n.scalar())
        .map(|s| s.text.to_string())
        .unwrap_or_default()
}

/// Read a `kind: Secret` document as [`PasswordSecret`]: its name, `type`,
/// and `password` from `stringData` (as written) or `data` (base64). A
/// `data.password` that is not base64 is an error at its line.
#[allow(clippy::result_large_err)] // the crate's one error type
pub fn password_secret(doc: &Document) -> Result<(String, PasswordSecret), ConfigError> {
    let docs = yaml::load(&doc.text).map_err(|e| ConfigError {
        file: None,
        line: Some(doc.line + e.line - 1),
        path: String::new(),
        kind: ErrorKind::Yaml(format!("YAML syntax error: {}", e.message)),
    })?;
    let root = docs.iter().flatten().find(|n| !n.is_null());
    let get = |section: &str| {
        root.and_then(|r| r.get(section))
            .and_then(|(_, s)| s.get("password"))
    };
    let type_ =
        Some(text_of(root.and_then(|r| r.get("type")).map(|(_, v)| v))).filter(|t| !t.is_empty());
    let password = if let Some((_, v)) = get("stringData") {
        Some(text_of(Some(v)).into_bytes())
    } else if let Some((k, v)) = get("data") {
        let encoded = text_of(Some(v));
        Some(base64(&encoded).ok_or_else(|| ConfigError {
            file: None,
            line: Some(doc.line + k.line - 1),
            path: format!("Secret/{}: data.password", doc.name),
            kind: ErrorKind::Yaml("is not base64".into()),
        })?)
    } else {
        None
    };
    Ok((
        doc.name.clone(),
        PasswordSecret {
            type_,
            password,
            resource_version: None,
        },
    ))
}

/// Standard base64 (padding optional, whitespace ignored).
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_with_lines_kinds_and_names() {
        let text = "# head\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\n---\n---\n\
                    apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: a\n...\nfoo: 1\n";
        let docs = documents(text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(
            (docs[0].line, docs[0].kind.as_str(), docs[0].name.as_str()),
            (1, "ConfigMap", "config")
        );
        assert!(!docs[0].is_metallb());
        assert_eq!(
            (docs[1].line, docs[1].kind.as_str(), docs[1].name.as_str()),
            (7, "IPAddressPool", "a")
        );
        assert!(docs[1].is_metallb());
        assert_eq!((docs[2].line, docs[2].kind.as_str()), (12, ""));
        let err = documents("a: 1\n---\nb: [\n").unwrap_err();
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn secrets_from_data_or_string_data() {
        let doc = |t: &str| documents(t).unwrap().remove(0);
        let (name, s) = password_secret(&doc(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: pw}\ntype: kubernetes.io/basic-auth\n\
             data:\n  password: c2VjcmV0IQ==\n",
        ))
        .unwrap();
        assert_eq!(name, "pw");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(s.password.as_deref(), Some(&b"secret!"[..]));
        let (_, s) = password_secret(&doc(
            "kind: Secret\nmetadata: {name: pw}\nstringData: {password: 0012}\n",
        ))
        .unwrap();
        assert_eq!((s.type_, s.password.as_deref()), (None, Some(&b"0012"[..])));
        let (_, s) = password_secret(&doc("kind: Secret\nmetadata: {name: pw}\n")).unwrap();
        assert_eq!(s.password, None);
        let err = password_secret(&doc(
            "kind: Secret\nmetadata: {name: pw}\ndata:\n  password: \"*\"\n",
        ))
        .unwrap_err();
        assert_eq!(err.line, Some(4));
        assert_eq!(err.path, "Secret/pw: data.password");
    }
}
