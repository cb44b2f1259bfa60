//! YAML text → a tree of [`Node`]s that remember their line, built from the events
//! of `saphyr-parser`; plain scalars are resolved the way MetalLB's Go decoder
//! (`gopkg.in/yaml.v2`, YAML 1.1) resolves them.
//!
//! The tree keeps what the config reader needs and a generic YAML value would lose:
//! the line of every node, the text of every scalar as written (yaml.v2 stores that
//! text in a string field even when the scalar looks like a number), the scalar's
//! style (a `|` block keeps its lines), and duplicate mapping keys (reported by the
//! reader at the mapping's path instead of failing the whole document).

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

/// One YAML node and the 1-based line where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    /// 1-based line of the node's first character (for a block mapping: its first key).
    pub(crate) line: usize,
    /// What the node holds.
    pub(crate) value: Value<'a>,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    /// A scalar, with its text as written and its YAML 1.1 resolution.
    Scalar(Scalar<'a>),
    /// A sequence, in document order.
    Seq(Vec<Node<'a>>),
    /// A mapping's `(key, value)` entries in document order; duplicate keys are kept.
    Map(Vec<(Node<'a>, Node<'a>)>),
}

/// A scalar node.
#[derive(Debug, Clone)]
pub(crate) struct Scalar<'a> {
    /// The value as written, after unquoting and block folding.
    pub(crate) text: Cow<'a, str>,
    /// How it was written (plain, quoted, `|` or `>` block).
    pub(crate) style: ScalarStyle,
    /// What yaml.v2 resolves it to.
    pub(crate) kind: Kind,
    /// For a `|` block (without anchor or tag): add this to a 1-based line of
    /// `text` to get the line in the document. `None` for other scalars, whose
    /// lines do not map one to one.
    pub(crate) line_offset: Option<usize>,
}

/// The type yaml.v2 gives a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `~`, `null`, `Null`, `NULL` or nothing at all.
    Null,
    /// `true`/`false` and YAML 1.1's `yes`/`no`, `on`/`off`, `y`/`n` in their spellings.
    Bool(bool),
    /// An integer (decimal, `0x`, `0o`, `0b`, leading-`0` octal, `_` separators).
    Int(i128),
    /// A floating-point number.
    Float,
    /// Anything else, and every quoted or block scalar.
    Str,
}

impl Node<'_> {
    /// The scalar, if this is one.
    pub(crate) fn scalar(&self) -> Option<&Scalar<'_>> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// True for a null scalar (`~`, `null`, or an empty value).
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.kind == Kind::Null)
    }

    /// How an error message names this node: `sequence`, `mapping`, `null`,
    /// ``integer `3` ``, `string "abc"`, …
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "sequence".into(),
            Value::Map(_) => "mapping".into(),
            Value::Scalar(s) => match s.kind {
                Kind::Null => "null".into(),
                Kind::Bool(_) => format!("boolean `{}`", s.text),
                Kind::Int(_) => format!("integer `{}`", s.text),
                Kind::Float => format!("float `{}`", s.text),
                Kind::Str => format!("string {:?}", s.text),
            },
        }
    }

    /// The value under `key` of a mapping node (the first, if the key repeats).
    pub(crate) fn get(&self, key: &str) -> Option<(&Node<'_>, &Node<'_>)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar().is_some_and(|s| s.text == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }
}

/// A document that is not well-formed YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based line where the parser stopped.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

/// How many nodes aliases (`*name`) may add in total: enough for any real config,
/// and a bound on "billion laughs" documents.
const ALIAS_BUDGET: usize = 10_000;

/// Parse every document of a YAML stream; `None` for an empty document.
pub(crate) fn load(text: &str) -> Result<Vec<Option<Node<'_>>>, SyntaxError> {
    let mut b = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        b.event(event, span.start.line())?;
    }
    Ok(b.docs)
}

/// A collection being built.
enum Open<'a> {
    Seq(Vec<Node<'a>>),
    /// Entries so far, and a key waiting for its value.
    Map(Vec<(Node<'a>, Node<'a>)>, Option<Node<'a>>),
}

#[derive(Default)]
struct Builder<'a> {
    docs: Vec<Option<Node<'a>>>,
    root: Option<Node<'a>>,
    /// Open collections: (line, anchor id, contents).
    stack: Vec<(usize, usize, Open<'a>)>,
    /// Anchored nodes and their sizes in nodes.
    anchors: HashMap<usize, (Node<'a>, usize)>,
    aliased: usize,
}

impl<'a> Builder<'a> {
    fn event(&mut self, event: Event<'a>, line: usize) -> Result<(), SyntaxError> {
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(_) => self.root = None,
            Event::DocumentEnd => self.docs.push(self.root.take()),
            Event::SequenceStart(anchor, _) => {
                self.stack.push((line, anchor, Open::Seq(Vec::new())))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((line, anchor, Open::Map(Vec::new(), None)));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (line, anchor, open) = self.stack.pop().expect("parser balances collections");
                let value = match open {
                    Open::Seq(items) => Value::Seq(items),
                    Open::Map(entries, _) => Value::Map(entries),
                };
                self.add(Node { line, value }, anchor);
            }
            Event::Scalar(text, style, anchor, tag) => {
                let kind = resolve(&text, style, tag.as_deref()).ok_or_else(|| SyntaxError {
                    line,
                    message: format!(
                        "{text:?} is not a valid {}",
                        tag.as_deref().map(ToString::to_string).unwrap_or_default()
                    ),
                })?;
                // The parser puts a block scalar's start at its first non-blank line;
                // the blank lines before it are the leading newlines of its text.
                let line_offset = (style == ScalarStyle::Literal && anchor == 0 && tag.is_none())
                    .then(|| {
                        let blank = text.bytes().take_while(|b| *b == b'\n').count();
                        line.saturating_sub(1 + blank)
                    });
                let value = Value::Scalar(Scalar {
                    text,
                    style,
                    kind,
                    line_offset,
                });
                self.add(Node { line, value }, anchor);
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        line,
                        message: "alias of an unknown anchor".into(),
                    });
                };
                self.aliased += size;
                if self.aliased > ALIAS_BUDGET {
                    return Err(SyntaxError {
                        line,
                        message: format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                    });
                }
                let mut node = node.clone();
                node.line = line;
                self.add(node, 0);
            }
        }
        Ok(())
    }

    /// Attach a finished node to its parent (or make it the document's root).
    fn add(&mut self, node: Node<'a>, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((_, _, Open::Seq(items))) => items.push(node),
            Some((_, _, Open::Map(entries, key))) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

fn size(node: &Node<'_>) -> usize {
    1 + match &node.value {
        Value::Scalar(_) => 0,
        Value::Seq(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
    }
}

/// The kind of a scalar: quoted and block scalars are strings; a plain scalar is
/// resolved by YAML 1.1's rules as yaml.v2 applies them. An explicit core tag
/// (`!!str`, `!!int`, …) is honoured (`None` when the text does not fit it); any other
/// tag leaves the text a string, as yaml.v2 does.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Option<Kind> {
    let plain = style == ScalarStyle::Plain;
    let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) else {
        return Some(if plain && tag.is_none() {
            resolve_plain(text)
        } else {
            Kind::Str
        });
    };
    let kind = resolve_plain(text);
    match (tag.suffix.as_str(), kind) {
        ("str", _) => Some(Kind::Str),
        ("null", Kind::Null)
        | ("bool", Kind::Bool(_))
        | ("int", Kind::Int(_))
        | ("float", Kind::Float) => Some(kind),
        ("float", Kind::Int(_)) => Some(Kind::Float),
        _ => None,
    }
}

/// yaml.v2's resolution of an untagged plain scalar.
fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Kind::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Kind::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Kind::Float,
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'.') {
        return Kind::Str;
    }
    let digits: Cow<'_, str> = if text.contains('_') {
        text.replace('_', "").into()
    } else {
        text.into()
    };
    if first != b'.'
        && let Some(n) = go_int(&digits)
    {
        return Kind::Int(n);
    }
    if yaml_float(&digits) {
        return Kind::Float;
    }
    Kind::Str
}

/// Go's `strconv.ParseInt(s, 0, 64)`, or `ParseUint` for values above `i64::MAX`
/// (yaml.v2 tries both), plus the `0b` prefix.
fn go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = match body.as_bytes() {
        [b'0', b'x' | b'X', ..] => (16, &body[2..]),
        [b'0', b'o' | b'O', ..] => (8, &body[2..]),
        [b'0', b'b' | b'B', ..] => (2, &body[2..]),
        [b'0', _, ..] => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = u128::from_str_radix(digits, radix).ok()?;
    let n = i128::try_from(n).ok()?;
    let n = if neg { -n } else { n };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&n)
        .then_some(n)
}

/// yaml.v2's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && all_digits(frac),
        Some((int, frac)) => !int.is_empty() && all_digits(int) && all_digits(frac),
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Kind {
        let docs = load(text).unwrap();
        let root = docs[0].as_ref().unwrap();
        root.scalar().unwrap().kind
    }

    #[test]
    fn yaml_1_1_resolution_as_yaml_v2() {
        for t in ["yes", "On", "Y", "TRUE", "true"] {
            assert_eq!(kind(t), Kind::Bool(true), "{t}");
        }
        for t in ["no", "OFF", "n", "False"] {
            assert_eq!(kind(t), Kind::Bool(false), "{t}");
        }
        for t in ["~", "null", "NULL"] {
            assert_eq!(kind(t), Kind::Null, "{t}");
        }
        assert_eq!(kind("64512"), Kind::Int(64512));
        assert_eq!(kind("-1"), Kind::Int(-1));
        assert_eq!(kind("+7"), Kind::Int(7));
        assert_eq!(kind("0x1F"), Kind::Int(31));
        assert_eq!(kind("0o17"), Kind::Int(15));
        assert_eq!(kind("017"), Kind::Int(15));
        assert_eq!(kind("0b101"), Kind::Int(5));
        assert_eq!(kind("1_000"), Kind::Int(1000));
        assert_eq!(kind("18446744073709551615"), Kind::Int(u64::MAX.into()));
        assert_eq!(kind("18446744073709551616"), Kind::Float);
        assert_eq!(kind("08"), Kind::Float);
        for t in [
            "1.5", "64522.0", ".5", "1e3", "-2.5E-3", ".inf", "-.Inf", ".NaN",
        ] {
            assert_eq!(kind(t), Kind::Float, "{t}");
        }
        for t in [
            "\"yes\"",
            "'1'",
            "maybe",
            "10.0.0.1",
            "90s",
            "1.2.3",
            "65535:65281",
            "0x",
            "1e",
            "yes please",
            "!!str 12",
            "!custom 12",
        ] {
            assert_eq!(kind(t), Kind::Str, "{t}");
        }
        assert_eq!(kind("!!int 12"), Kind::Int(12));
        assert_eq!(kind("!!float 12"), Kind::Float);
        assert!(load("!!int abc").is_err());
    }

    #[test]
    fn lines_text_and_duplicate_keys() {
        let text = "a: 1\nb:\n- x\n- 'y'\nc: |\n  l1\n  l2\na: 2\n";
        let docs = load(text).unwrap();
        let root = docs[0].as_ref().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        let keys: Vec<(&str, usize)> = entries
            .iter()
            .map(|(k, _)| (k.scalar().unwrap().text.as_ref(), k.line))
            .collect();
        assert_eq!(keys, [("a", 1), ("b", 2), ("c", 5), ("a", 8)]);
        let (_, b) = root.get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].line, 4);
        assert_eq!(items[1].scalar().unwrap().style, ScalarStyle::SingleQuoted);
        let (_, c) = root.get("c").unwrap();
        assert_eq!(c.scalar().unwrap().text, "l1\nl2\n");
        assert_eq!(c.scalar().unwrap().style, ScalarStyle::Literal);
        assert_eq!(c.scalar().unwrap().line_offset, Some(5));
        // Blank lines first, an indentation indicator, nested: still the key's line.
        for (text, key_line) in [
            ("config: |\n\n\n  a\n", 1),
            ("x: 1\nconfig: |2\n\n    a\n", 2),
            ("a:\n  config: |+\n\n    x\n\n  b: 1\n", 2),
        ] {
            let docs = load(text).unwrap();
            let mut node = docs[0].as_ref().unwrap();
            if let Some((_, inner)) = node.get("a") {
                node = inner;
            }
            let (_, config) = node.get("config").unwrap();
            assert_eq!(
                config.scalar().unwrap().line_offset,
                Some(key_line),
                "{text:?}"
            );
        }
        // Lines cannot be told with an anchor or tag in front, nor for other styles.
        for text in [
            "config: &x |\n  a\n",
            "config: !!str |\n  a\n",
            "config: >\n  a\n",
        ] {
            let docs = load(text).unwrap();
            let (_, config) = docs[0].as_ref().unwrap().get("config").unwrap();
            assert_eq!(config.scalar().unwrap().line_offset, None, "{text:?}");
        }
        assert_eq!(
            root.get("a").unwrap().1.scalar().unwrap().kind,
            Kind::Int(1)
        );
    }

    #[test]
    fn documents_aliases_and_errors() {
        assert!(load("").unwrap().is_empty());
        assert_eq!(load("a: 1\n---\n---\nb: 2\n").unwrap().len(), 3);
        let docs = load("a: &x {k: v}\nb: *x\n").unwrap();
        let (_, b) = docs[0].as_ref().unwrap().get("b").unwrap();
        assert_eq!(b.line, 2);
        assert!(b.get("k").is_some());
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        let e = load(bomb).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e:?}");
        let e = load("a: [\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
