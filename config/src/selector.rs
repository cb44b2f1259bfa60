//! Kubernetes label selectors as MetalLB uses them: peers' and advertisements'
//! `node-selectors`, pools' and advertisements' `serviceSelectors`.

use std::collections::BTreeMap;

/// Labels a selector can be matched against: a key's value, if the key is set.
/// Implemented for the usual map and for a compact list of pairs (what a
/// speaker keeps of a Service), so selectors need no copy of either.
pub trait LabelSet {
    /// The value of label `key`, if set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Pairs `(key, value)` in any order (a key at most once).
impl LabelSet for [(Box<str>, Box<str>)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
}

/// One entry of a peer's `node-selectors`: all of its labels and expressions must match.
/// An empty selector matches every node (as `metav1.LabelSelectorAsSelector` does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeSelector {
    /// `match-labels`: each key must be present with exactly this value.
    pub match_labels: BTreeMap<String, String>,
    /// `match-expressions`: each must hold.
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `match-expressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelRequirement {
    /// Label key.
    pub key: String,
    /// How to compare.
    pub operator: SelectorOperator,
    /// Values (non-empty for In/NotIn, empty for Exists/DoesNotExist).
    pub values: Vec<String>,
}

impl LabelRequirement {
    /// A requirement, checked as Kubernetes checks one: `In`/`NotIn` need
    /// values, `Exists`/`DoesNotExist` take none.
    pub fn new(
        key: String,
        operator: SelectorOperator,
        values: Vec<String>,
    ) -> Result<Self, crate::ErrorKind> {
        match operator {
            SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
                Err(crate::ErrorKind::ValuesRequired(operator.as_str()))
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => {
                Err(crate::ErrorKind::ValuesForbidden(operator.as_str()))
            }
            _ => Ok(LabelRequirement {
                key,
                operator,
                values,
            }),
        }
    }
}

/// Label selector operators, spelt as in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl SelectorOperator {
    /// Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        }
    }

    /// Parse the exact Kubernetes spelling.
    pub fn parse(s: &str) -> Option<SelectorOperator> {
        Some(match s {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            _ => return None,
        })
    }
}

impl LabelRequirement {
    /// Do these labels (a node's, a Service's) satisfy the requirement?
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        let v = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            SelectorOperator::In => v.is_some_and(listed),
            SelectorOperator::NotIn => !v.is_some_and(listed),
            SelectorOperator::Exists => v.is_some(),
            SelectorOperator::DoesNotExist => v.is_none(),
        }
    }
}

impl NodeSelector {
    /// Do these labels (a node's, a Service's) match (all labels and all
    /// expressions)?
    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// The label keys this selector reads (for a caller that keeps only
    /// those labels).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.match_labels
            .keys()
            .map(String::as_str)
            .chain(self.match_expressions.iter().map(|e| e.key.as_str()))
    }
}
