//! Kubernetes label selectors as MetalLB's peers use them (`node-selectors`).

use std::collections::BTreeMap;

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
    /// Does a node with these labels satisfy the requirement?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => v.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => !v.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::Exists => v.is_some(),
            SelectorOperator::DoesNotExist => v.is_none(),
        }
    }
}

impl NodeSelector {
    /// Does a node with these labels match (all labels and all expressions)?
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}
