//! Objects as trees: a JSON value (what the API server serves) or a YAML
//! document (a file) → the crate's own YAML tree ([`Node`]), owned, so that one
//! set of field readers serves both inputs.
//!
//! JSON nodes get line 0 (unknown); the front end drops the line of errors
//! found in objects that did not come from a file.

use std::borrow::Cow;

use saphyr_parser::ScalarStyle;

use crate::configmap::yaml::{Kind, Node, Scalar, Value};

/// An owned tree.
pub(crate) type Tree = Node<'static>;

/// A JSON value as a tree (every node at line 0). Numbers that are integers
/// become integers, others floats; strings are (quoted) strings.
pub(crate) fn from_json(v: &serde_json::Value) -> Tree {
    let scalar = |text: String, style: ScalarStyle, kind: Kind| Node {
        line: 0,
        value: Value::Scalar(Scalar {
            text: Cow::Owned(text),
            style,
            kind,
            line_offset: None,
        }),
    };
    match v {
        serde_json::Value::Null => scalar(String::new(), ScalarStyle::Plain, Kind::Null),
        serde_json::Value::Bool(b) => scalar(b.to_string(), ScalarStyle::Plain, Kind::Bool(*b)),
        serde_json::Value::Number(n) => {
            let kind = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .map_or(Kind::Float, Kind::Int);
            scalar(n.to_string(), ScalarStyle::Plain, kind)
        }
        serde_json::Value::String(s) => scalar(s.clone(), ScalarStyle::DoubleQuoted, Kind::Str),
        serde_json::Value::Array(items) => Node {
            line: 0,
            value: Value::Seq(items.iter().map(from_json).collect()),
        },
        serde_json::Value::Object(entries) => Node {
            line: 0,
            value: Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = scalar(k.clone(), ScalarStyle::DoubleQuoted, Kind::Str);
                        (key, from_json(v))
                    })
                    .collect(),
            ),
        },
    }
}

/// A copy of `node` that owns its text, every line moved down by `offset`.
pub(crate) fn to_owned(node: &Node<'_>, offset: usize) -> Tree {
    let value = match &node.value {
        Value::Scalar(s) => Value::Scalar(Scalar {
            text: Cow::Owned(s.text.to_string()),
            style: s.style,
            kind: s.kind,
            line_offset: s.line_offset.map(|o| o + offset),
        }),
        Value::Seq(items) => Value::Seq(items.iter().map(|n| to_owned(n, offset)).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (to_owned(k, offset), to_owned(v, offset)))
                .collect(),
        ),
    };
    Node {
        line: node.line + offset,
        value,
    }
}

/// The documents of a YAML stream as `(first line, text)`, split at the
/// `---` and `...` markers at the start of a line. The text of each keeps its
/// own lines; add `first line - 1` to a line of it to get the line in the file.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0; // byte offset of the current document
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '#']))
        };
        if marker("---") || marker("...") {
            if offset > start {
                docs.push((start_line, &text[start..offset]));
            }
            // A `--- {inline: doc}` keeps its content after the marker: keep the
            // line in the next document, blanking the marker itself.
            start = offset;
            start_line = i + 1;
            if marker("...") {
                start = offset + line.len();
                start_line = i + 2;
            }
        }
        offset += line.len();
    }
    if offset > start {
        docs.push((start_line, &text[start..]));
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_with_their_lines() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- # x\nd: 4\n...\ne: 5\n";
        let docs = split_documents(text);
        let firsts: Vec<usize> = docs.iter().map(|d| d.0).collect();
        assert_eq!(firsts, [1, 2, 5, 8]);
        assert_eq!(docs[1].1, "---\nb: 2\nc: 3\n");
        assert_eq!(docs[3].1, "e: 5\n");
        assert_eq!(split_documents("---a: 1\n").len(), 1);
        assert!(split_documents("").is_empty());
    }

    #[test]
    fn json_kinds() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a": 1, "b": 1.5, "c": "x", "d": true, "e": null}"#).unwrap();
        let t = from_json(&v);
        let kind = |k: &str| t.get(k).unwrap().1.scalar().unwrap().kind;
        assert_eq!(kind("a"), Kind::Int(1));
        assert_eq!(kind("b"), Kind::Float);
        assert_eq!(kind("c"), Kind::Str);
        assert_eq!(kind("d"), Kind::Bool(true));
        assert_eq!(kind("e"), Kind::Null);
    }
}
