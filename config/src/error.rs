//! The one error type of this crate: every problem found in a document, each with
//! where it is (field path and, when known, the 1-based line).

use std::fmt;

/// One problem in a configuration document.
///
/// Displays as `line 12: address-pools[1].addresses[0]: "10.0.0.300/24" is not a CIDR or an IP range`;
/// the `line N: ` part is left out when the line is unknown, the path part when the
/// problem concerns the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, when the input came from named files
    /// (custom resources read with `Resources::add_yaml`); `None` otherwise.
    pub file: Option<String>,
    /// 1-based line in the text given to the parser (for a ConfigMap manifest: in the manifest).
    pub line: Option<usize>,
    /// Where in the source, in the front end's own terms: `peers[0].hold-time` for
    /// ConfigMap text, `IPAddressPool/default: spec.addresses[0]` style for custom
    /// resources; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// What is wrong with one field (or the document). Messages are written to follow
/// the field path, e.g. `peers[0].my-asn: is required`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The text is not YAML, or a value has the wrong YAML type.
    #[error("{0}")]
    Yaml(String),
    /// A key that the MetalLB format does not have (MetalLB parses strictly).
    #[error("unknown key {key:?} (expected one of: {expected})")]
    UnknownKey {
        /// The offending key.
        key: String,
        /// The keys allowed at that level, comma-separated.
        expected: String,
    },
    /// A required field is missing (or empty).
    #[error("is required")]
    Missing,
    /// An AS number of 0.
    #[error("must not be 0")]
    ZeroAsn,
    /// Not an IP address.
    #[error("{0:?} is not an IP address")]
    InvalidIp(String),
    /// Not an IPv4 address (router-id).
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    /// Not a Go duration such as `90s`, `1m30s`, `500ms`.
    #[error("{0:?} is not a duration (e.g. 90s, 1m30s, 500ms)")]
    InvalidDuration(String),
    /// A negative duration.
    #[error("{0:?} must not be negative")]
    NegativeDuration(String),
    /// Hold time of 1s or 2s (after truncation to whole seconds).
    #[error("hold time {0:?} must be 0 or at least 3s")]
    HoldTime(String),
    /// Keepalive longer than the hold time.
    #[error("keepalive time {keepalive:?} must not exceed the hold time ({hold:?})")]
    KeepaliveTooLong {
        /// Keepalive as written.
        keepalive: String,
        /// Effective hold time.
        hold: std::time::Duration,
    },
    /// A peer equal in every parsed field to an earlier one (MetalLB's rule: peers
    /// that differ in anything, even only the ASN or password, are accepted). Holds
    /// the earlier peer's path.
    #[error("duplicate peer: identical to {0}")]
    DuplicatePeer(String),
    /// A node-selector operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator(String),
    /// In/NotIn without values.
    #[error("operator {0} needs at least one value")]
    ValuesRequired(&'static str),
    /// Exists/DoesNotExist with values.
    #[error("operator {0} takes no values")]
    ValuesForbidden(&'static str),
    /// A pool name used twice.
    #[error("duplicate pool name {0:?} (first defined at {1})")]
    DuplicatePool(String, String),
    /// Protocol neither `bgp` nor `layer2`.
    #[error("unknown protocol {0:?} (expected bgp or layer2)")]
    UnknownProtocol(String),
    /// An `addresses` entry that is neither a CIDR nor an `A-B` range.
    #[error("{0:?} is not a CIDR or an IP range")]
    InvalidAddresses(String),
    /// A range whose ends are of different families.
    #[error("{0:?}: both ends of a range must be IPv4 or both IPv6")]
    MixedFamilyRange(String),
    /// A range whose start is after its end.
    #[error("{0:?}: range start is after its end")]
    ReversedRange(String),
    /// Two address entries share addresses.
    #[error("{entry:?} overlaps {other:?} at {other_path} (pool {other_pool:?})")]
    Overlap {
        /// This entry as written.
        entry: String,
        /// The earlier entry as written.
        other: String,
        /// Path of the earlier entry.
        other_path: String,
        /// Pool of the earlier entry.
        other_pool: String,
    },
    /// An advertisement of a pool written exactly as an earlier one of the same pool
    /// (MetalLB compares them as written: an absent field differs from any value).
    /// Holds the earlier advertisement's path.
    #[error("duplicate advertisement: written the same as {0}")]
    DuplicateAdvertisement(String),
    /// `bgp-advertisements` on a layer2 pool.
    #[error("bgp-advertisements are not allowed in a layer2 pool")]
    AdvertisementsOnLayer2,
    /// Aggregation length beyond the family's bits.
    #[error("aggregation length {len} is out of range 0..={max}")]
    AggregationOutOfRange {
        /// As written.
        len: i64,
        /// 32 or 128.
        max: u8,
    },
    /// Aggregation length shorter than a pool entry's own prefix (MetalLB rejects this).
    #[error(
        "aggregation length {len} is shorter than prefix length {prefix} of pool entry {entry:?} \
         (it would cover addresses outside the pool)"
    )]
    AggregationTooShort {
        /// The aggregation length.
        len: u8,
        /// Shortest prefix length among the CIDRs of the entry.
        prefix: u8,
        /// The `addresses` entry as written.
        entry: String,
    },
    /// Not `A:B` with A, B ≤ 65535.
    #[error("{0:?} is not a BGP community (A:B, each 0..=65535)")]
    InvalidCommunity(String),
    /// Not `large:A:B:C` with 32-bit parts.
    #[error("{0:?} is not a large BGP community (large:A:B:C, each 0..=4294967295)")]
    InvalidLargeCommunity(String),
    /// A name that is not defined under `bgp-communities`.
    #[error("{0:?} is not a community value nor an alias defined in bgp-communities")]
    UndefinedCommunity(String),
    /// The same community string twice in one advertisement.
    #[error("duplicate community {0:?}")]
    DuplicateCommunity(String),
    /// A key of the format that ferrolb does not implement (BFD: MetalLB too rejects it
    /// outside its FRR mode).
    #[error("{0:?} is not supported by ferrolb: {1}")]
    Unsupported(String, &'static str),
    /// A value that breaks one of MetalLB's rules for custom resources, with
    /// the rule in words (e.g. `both password and passwordSecret are set`).
    #[error("{0}")]
    Invalid(String),
    /// A manifest that is not a ConfigMap.
    #[error("not a ConfigMap (kind: {0})")]
    NotConfigMap(String),
}

/// All problems found in one document (never empty), in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Iterate over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a value returned by this crate.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
