//! Where each field is: a path → line index built from saphyr's marked nodes.
//!
//! serde_yaml gives a location only for the first structural error; semantic errors
//! (an overlap, a bad CIDR) are found after deserialisation, so their lines come
//! from this separate pass over the same text.

use std::collections::HashMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// Field path (`peers[0].hold-time`) → 1-based line, for every node of every document.
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions {
    /// One map per YAML document in the stream.
    docs: Vec<HashMap<String, usize>>,
}

impl Positions {
    /// Index `text`; an unparsable text gives an empty index (serde_yaml reports the error).
    pub(crate) fn index(text: &str) -> Positions {
        let Ok(docs) = MarkedYaml::load_from_str(text) else {
            return Positions::default();
        };
        let docs = docs
            .iter()
            .map(|d| {
                let mut map = HashMap::new();
                map.insert(String::new(), d.span.start.line());
                walk(d, "", &mut map);
                map
            })
            .collect();
        Positions { docs }
    }

    /// Line of `path` in document `doc`, or of its nearest indexed ancestor.
    pub(crate) fn line(&self, doc: usize, path: &str) -> Option<usize> {
        let map = self.docs.get(doc)?;
        let mut p = path;
        loop {
            if let Some(l) = map.get(p) {
                return Some(*l);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }

    /// The path of a key named `key` somewhere under `under` (the first one by line).
    pub(crate) fn find_key_under(&self, doc: usize, under: &str, key: &str) -> Option<String> {
        let map = self.docs.get(doc)?;
        let direct = join(under, key);
        if map.contains_key(&direct) {
            return Some(direct);
        }
        let suffix = format!(".{key}");
        map.iter()
            .filter(|(p, _)| p.starts_with(under) && p.ends_with(&suffix))
            .min_by_key(|(p, l)| (**l, p.len()))
            .map(|(p, _)| p.clone())
    }
}

/// `a.b[1].c` → `a.b[1]` → `a.b` → `a` → ``.
fn parent(p: &str) -> &str {
    match p.rfind(['.', '[']) {
        Some(i) => &p[..i],
        None => "",
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn key_text(n: &MarkedYaml<'_>) -> String {
    match &n.data {
        YamlData::Value(Scalar::String(s)) => s.to_string(),
        YamlData::Value(Scalar::Integer(i)) => i.to_string(),
        YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
        YamlData::Value(Scalar::FloatingPoint(f)) => f.to_string(),
        YamlData::Value(Scalar::Null) => "null".to_string(),
        YamlData::Representation(s, _, _) => s.to_string(),
        _ => "?".to_string(),
    }
}

fn walk(n: &MarkedYaml<'_>, path: &str, map: &mut HashMap<String, usize>) {
    match &n.data {
        YamlData::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                map.entry(p.clone()).or_insert(item.span.start.line());
                walk(item, &p, map);
            }
        }
        YamlData::Mapping(m) => {
            for (k, v) in m.iter() {
                let p = join(path, &key_text(k));
                map.entry(p.clone()).or_insert(k.span.start.line());
                walk(v, &p, map);
            }
        }
        YamlData::Tagged(_, inner) => walk(inner, path, map),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_and_nested() {
        let text = "peers:\n- peer-address: 1.2.3.4\n  my-asn: 1\naddress-pools:\n- name: a\n  addresses: [10.0.0.0/24,\n    10.0.1.0/24]\n";
        let p = Positions::index(text);
        assert_eq!(p.line(0, "peers"), Some(1));
        assert_eq!(p.line(0, "peers[0]"), Some(2));
        assert_eq!(p.line(0, "peers[0].my-asn"), Some(3));
        assert_eq!(p.line(0, "address-pools[0].addresses[1]"), Some(7));
        assert_eq!(p.line(0, "address-pools[0].nothing"), Some(5));
        assert_eq!(
            p.find_key_under(0, "peers[0]", "my-asn").as_deref(),
            Some("peers[0].my-asn")
        );
    }
}
