//! Field readers over the YAML tree: each reads one value at a known path and
//! line, records what is wrong in [`Ctx`], and returns what it could read, so that
//! one bad field never hides the problems of the others.
//!
//! Mappings with a fixed set of keys are read through a [`Schema`]: a key outside
//! it is reported (with the keys the level allows) where it is written, as MetalLB
//! (which decodes with yaml.v2's `UnmarshalStrict`) rejects it too.

use saphyr_parser::ScalarStyle;

use super::yaml::{Kind, Node, Value};
use crate::{ConfigError, ErrorKind};

/// The errors found so far.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) errors: Vec<ConfigError>,
}

/// Where a value is, or would be if it were written: its field path, its line (the
/// key's, or for an absent field the enclosing item's), and the node if present.
#[derive(Debug, Clone)]
pub(crate) struct Slot<'n, 'a> {
    pub(crate) path: String,
    pub(crate) line: usize,
    pub(crate) node: Option<&'n Node<'a>>,
}

impl<'n, 'a> Slot<'n, 'a> {
    /// The node, unless it is absent or null (which every reader takes as "not set").
    pub(crate) fn value(&self) -> Option<&'n Node<'a>> {
        self.node.filter(|n| !n.is_null())
    }

    /// Is a non-null value written here?
    pub(crate) fn is_set(&self) -> bool {
        self.value().is_some()
    }
}

/// The keys one level of the format allows.
#[derive(Debug)]
pub(crate) struct Schema {
    /// How a type error names the level, e.g. `a peer (mapping)`.
    pub(crate) what: &'static str,
    /// The keys, in the order the error message lists them.
    pub(crate) keys: &'static [&'static str],
    /// Keys of the format that ferrolb rejects as unsupported, and why.
    pub(crate) unsupported: &'static [(&'static str, &'static str)],
}

/// The fields of one mapping read through a [`Schema`].
#[derive(Debug)]
pub(crate) struct Fields<'n, 'a> {
    path: String,
    line: usize,
    schema: &'static Schema,
    /// Per schema key: the key's line and the value.
    found: Vec<Option<(usize, &'n Node<'a>)>>,
}

impl<'n, 'a> Fields<'n, 'a> {
    /// The slot of `key` (which must be one of the schema's keys).
    pub(crate) fn get(&self, key: &str) -> Slot<'n, 'a> {
        let i = self
            .schema
            .keys
            .iter()
            .position(|k| *k == key)
            .unwrap_or_else(|| panic!("{key:?} is not a key of {}", self.schema.what));
        let (line, node) = match self.found[i] {
            Some((line, node)) => (line, Some(node)),
            None => (self.line, None),
        };
        Slot {
            path: join(&self.path, key),
            line,
            node,
        }
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

impl Ctx {
    /// Record one error.
    pub(crate) fn err(&mut self, line: usize, path: impl Into<String>, kind: ErrorKind) {
        self.errors.push(ConfigError {
            file: None,
            line: Some(line),
            path: path.into(),
            kind,
        });
    }

    fn type_err(&mut self, at: &Slot<'_, '_>, node: &Node<'_>, expected: &str) {
        let msg = format!("invalid type: {}, expected {expected}", node.describe());
        self.err(at.line, at.path.clone(), ErrorKind::Yaml(msg));
    }

    /// Read a mapping whose keys `schema` lists. Absent or null reads as an empty
    /// mapping; another type is an error (`None`). Unknown keys are reported at their
    /// own path and line; a repeated key at the mapping's (the first value counts).
    pub(crate) fn fields<'n, 'a>(
        &mut self,
        at: &Slot<'n, 'a>,
        schema: &'static Schema,
    ) -> Option<Fields<'n, 'a>> {
        let mut fields = Fields {
            path: at.path.clone(),
            line: at.line,
            schema,
            found: vec![None; schema.keys.len()],
        };
        let Some(node) = at.value() else {
            return Some(fields);
        };
        let Value::Map(entries) = &node.value else {
            self.type_err(at, node, schema.what);
            return None;
        };
        for (k, v) in entries {
            let Some(key) = self.key(at, k) else { continue };
            match schema.keys.iter().position(|s| *s == key) {
                Some(i) if fields.found[i].is_some() => self.err(
                    at.line,
                    at.path.clone(),
                    ErrorKind::Yaml(format!("duplicate entry with key {key:?}")),
                ),
                Some(i) => fields.found[i] = Some((k.line, v)),
                None => {
                    let kind = match schema.unsupported.iter().find(|(u, _)| *u == key) {
                        Some((_, why)) => ErrorKind::Unsupported(key.to_string(), why),
                        None => ErrorKind::UnknownKey {
                            key: key.to_string(),
                            expected: schema.keys.join(", "),
                        },
                    };
                    self.err(k.line, join(&at.path, key), kind);
                }
            }
        }
        Some(fields)
    }

    /// A mapping key as text (yaml.v2 reads any scalar key into a string field as
    /// written); a sequence or mapping as key is an error at the mapping's path.
    fn key<'n>(&mut self, at: &Slot<'_, '_>, k: &'n Node<'_>) -> Option<&'n str> {
        match k.scalar() {
            Some(s) => Some(s.text.as_ref()),
            None => {
                self.type_err(at, k, "a string as key");
                None
            }
        }
    }

    /// Read a mapping with free keys (labels, community aliases): `(key, slot)` in
    /// document order. Absent or null reads as empty; repeated keys are reported at
    /// the mapping's path and only the first is returned.
    pub(crate) fn entries<'n, 'a>(&mut self, at: &Slot<'n, 'a>) -> Vec<(String, Slot<'n, 'a>)> {
        let Some(node) = at.value() else {
            return Vec::new();
        };
        let Value::Map(entries) = &node.value else {
            self.type_err(at, node, "a mapping");
            return Vec::new();
        };
        let mut out: Vec<(String, Slot<'n, 'a>)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Some(key) = self.key(at, k) else { continue };
            if out.iter().any(|(seen, _)| seen == key) {
                self.err(
                    at.line,
                    at.path.clone(),
                    ErrorKind::Yaml(format!("duplicate entry with key {key:?}")),
                );
                continue;
            }
            let slot = Slot {
                path: join(&at.path, key),
                line: k.line,
                node: Some(v),
            };
            out.push((key.to_string(), slot));
        }
        out
    }

    /// Read a list: one slot per item (`path[i]`, the item's line). Absent or null
    /// reads as empty; another type is an error.
    pub(crate) fn seq<'n, 'a>(&mut self, at: &Slot<'n, 'a>) -> Result<Vec<Slot<'n, 'a>>, ()> {
        let Some(node) = at.value() else {
            return Ok(Vec::new());
        };
        let Value::Seq(items) = &node.value else {
            self.type_err(at, node, "a list");
            return Err(());
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| Slot {
                path: format!("{}[{i}]", at.path),
                line: item.line,
                node: Some(item),
            })
            .collect())
    }

    /// A scalar as text, exactly as written (yaml.v2 stores the written text of a
    /// number or boolean in a string field: `password: 0012` is `"0012"`). Absent or
    /// null is `Ok(None)`; a list or mapping is an error.
    pub(crate) fn text(&mut self, at: &Slot<'_, '_>) -> Result<Option<String>, ()> {
        let Some(node) = at.value() else {
            return Ok(None);
        };
        match node.scalar() {
            Some(s) => Ok(Some(s.text.to_string())),
            None => {
                self.type_err(at, node, "a string");
                Err(())
            }
        }
    }

    /// A required word from a fixed set: `parse` reads it; an absent one is
    /// [`ErrorKind::Missing`], an unknown one is `unknown(text)`. `None` on error.
    pub(crate) fn one_of<T>(
        &mut self,
        at: &Slot<'_, '_>,
        parse: impl FnOnce(&str) -> Option<T>,
        unknown: impl FnOnce(String) -> ErrorKind,
    ) -> Option<T> {
        let (kind, text) = match self.text(at) {
            Err(()) => return None,
            Ok(None) => (ErrorKind::Missing, None),
            Ok(Some(t)) => match parse(&t) {
                Some(v) => return Some(v),
                None => (ErrorKind::Missing, Some(t)),
            },
        };
        let kind = text.map_or(kind, unknown);
        self.err(at.line, at.path.clone(), kind);
        None
    }

    /// A boolean: `true`/`false` and the YAML 1.1 spellings yaml.v2 reads as booleans
    /// (`yes`, `on`, `n`, …), unquoted. `None` when absent, null or wrong.
    pub(crate) fn boolean(&mut self, at: &Slot<'_, '_>) -> Option<bool> {
        let node = at.value()?;
        match node.scalar() {
            Some(s) if matches!(s.kind, Kind::Bool(_)) => {
                return Some(s.kind == Kind::Bool(true));
            }
            Some(s) if s.kind == Kind::Str => {
                let hint = if s.style == ScalarStyle::Plain {
                    "true/false, yes/no, on/off"
                } else {
                    "a quoted value is a string: write the boolean unquoted"
                };
                let msg = format!("expected a boolean, found {:?} ({hint})", s.text);
                self.err(at.line, at.path.clone(), ErrorKind::Yaml(msg));
            }
            _ => self.type_err(at, node, "a boolean"),
        }
        None
    }

    /// An integer within `min..=max`. Absent or null is `Ok(None)`; anything else
    /// (a float, a quoted number, a value out of range) is an error.
    pub(crate) fn integer(
        &mut self,
        at: &Slot<'_, '_>,
        min: i128,
        max: i128,
    ) -> Result<Option<i128>, ()> {
        let Some(node) = at.value() else {
            return Ok(None);
        };
        match node.scalar().map(|s| s.kind) {
            Some(Kind::Int(n)) if (min..=max).contains(&n) => return Ok(Some(n)),
            Some(Kind::Int(_)) => {
                let msg = format!(
                    "invalid value: {}, expected an integer in {min}..={max}",
                    node.describe()
                );
                self.err(at.line, at.path.clone(), ErrorKind::Yaml(msg));
            }
            _ => self.type_err(at, node, "an integer"),
        }
        Err(())
    }
}
