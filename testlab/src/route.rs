//! Daemon-independent views of sessions and routes, as parsed from gobgp/FRR/BIRD output.

use std::fmt;

/// Address family (AFI/SAFI) of a RIB query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 unicast.
    Ipv4Unicast,
    /// IPv6 unicast.
    Ipv6Unicast,
}

impl Family {
    /// Family of a prefix or address string (contains `:` → IPv6).
    pub fn of(prefix: &str) -> Family {
        if prefix.contains(':') {
            Family::Ipv6Unicast
        } else {
            Family::Ipv4Unicast
        }
    }
}

/// BGP ORIGIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// IGP (`i`).
    Igp,
    /// EGP (`e`).
    Egp,
    /// INCOMPLETE (`?`).
    Incomplete,
}

impl Origin {
    /// From the wire value 0/1/2.
    pub fn from_code(v: u64) -> Option<Origin> {
        match v {
            0 => Some(Origin::Igp),
            1 => Some(Origin::Egp),
            2 => Some(Origin::Incomplete),
            _ => None,
        }
    }

    /// From daemon text: `IGP`, `i`, `EGP`, `incomplete`, `?`, … (case-insensitive).
    pub fn parse(s: &str) -> Option<Origin> {
        match s.trim().to_ascii_lowercase().as_str() {
            "igp" | "i" => Some(Origin::Igp),
            "egp" | "e" => Some(Origin::Egp),
            "incomplete" | "?" => Some(Origin::Incomplete),
            _ => None,
        }
    }

    /// Keyword used by the gobgp CLI (`igp`, `egp`, `incomplete`).
    pub fn gobgp_keyword(self) -> &'static str {
        match self {
            Origin::Igp => "igp",
            Origin::Egp => "egp",
            Origin::Incomplete => "incomplete",
        }
    }
}

/// One path of a prefix as a peer sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePath {
    /// Next hop (for IPv6, the global one).
    pub nexthop: String,
    /// AS_PATH flattened (sets included in order), e.g. `[64522]`; empty for iBGP-originated.
    pub as_path: Vec<u32>,
    /// Standard communities as `A:B` (numeric, well-knowns too: `65535:65281`).
    pub communities: Vec<String>,
    /// Large communities as `A:B:C`.
    pub large_communities: Vec<String>,
    /// LOCAL_PREF if present.
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC if present.
    pub med: Option<u32>,
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// Address of the neighbor it was learned from, when the daemon says.
    pub from: Option<String>,
    /// Selected as best by the daemon.
    pub best: bool,
    /// Kept as stale by a graceful restart helper (gobgpd, FRR say so; BIRD
    /// does not show it).
    pub stale: bool,
}

/// A prefix with all its paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// `172.17.254.1/32`, `2001:db8:254::1/128`.
    pub prefix: String,
    /// Paths (one per announcing neighbor, or several with multipath).
    pub paths: Vec<RoutePath>,
}

impl Route {
    /// The best path, or else the first.
    pub fn best(&self) -> Option<&RoutePath> {
        self.paths.iter().find(|p| p.best).or(self.paths.first())
    }

    /// Next hops of all paths.
    pub fn next_hops(&self) -> Vec<&str> {
        self.paths.iter().map(|p| p.nexthop.as_str()).collect()
    }
}

/// BGP FSM state of a neighbor as a daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Idle (also admin-down).
    Idle,
    /// Connect.
    Connect,
    /// Active.
    Active,
    /// OpenSent.
    OpenSent,
    /// OpenConfirm.
    OpenConfirm,
    /// Established.
    Established,
    /// Anything else, verbatim.
    Other(String),
}

impl SessionState {
    /// Case-insensitive parse of `Established`, `OpenSent`, `Idle (Admin)`, `Connect`, …
    pub fn parse(s: &str) -> SessionState {
        let l = s.trim().to_ascii_lowercase();
        match l
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("")
        {
            "idle" => SessionState::Idle,
            "connect" => SessionState::Connect,
            "active" => SessionState::Active,
            "opensent" => SessionState::OpenSent,
            "openconfirm" => SessionState::OpenConfirm,
            "established" => SessionState::Established,
            _ => SessionState::Other(s.trim().to_string()),
        }
    }

    /// True for Established.
    pub fn is_established(&self) -> bool {
        *self == SessionState::Established
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionState::Other(s) => f.write_str(s),
            s => write!(f, "{s:?}"),
        }
    }
}

/// A neighbor's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborState {
    /// Neighbor address as configured.
    pub address: String,
    /// Its AS, when reported.
    pub peer_as: Option<u32>,
    /// FSM state.
    pub state: SessionState,
    /// Prefixes received (all families), when reported.
    pub received: Option<u64>,
}

/// A route to inject into a daemon (gobgp `global rib add`).
#[derive(Clone, Debug, Default)]
pub struct RouteSpec {
    /// Prefix.
    pub prefix: String,
    /// Next hop.
    pub nexthop: String,
    /// `A:B` communities.
    pub communities: Vec<String>,
    /// `A:B:C` large communities.
    pub large_communities: Vec<String>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// MED.
    pub med: Option<u32>,
    /// ORIGIN (default IGP).
    pub origin: Option<Origin>,
}

/// Formats a 32-bit community value as `hi:lo`.
pub fn community_string(v: u64) -> String {
    format!("{}:{}", (v >> 16) & 0xffff, v & 0xffff)
}
