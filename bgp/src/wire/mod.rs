//! BGP-4 wire codec: pure functions from bytes to [`Message`] and back.
//!
//! Decoding takes the session's [`Negotiated`] context (AS_PATH width,
//! maximum message size) and never panics: every malformed input yields a
//! [`DecodeError`] that maps to the NOTIFICATION RFC 4271 §6 asks for, or,
//! for attribute errors in an UPDATE, to the RFC 7606 action recorded in
//! [`Update::treat_as_withdraw`] / [`Update::discarded`].
//!
//! (Types below are the shared contract; codec functions live in the submodules.)
//!
//! Entry points: [`frame_len`] (TCP framing), [`Message::decode`] /
//! [`decode_message`], [`Message::encode`], [`Message::encoded_len`],
//! [`PathAttributes::encoded_len`], [`nlri_wire_len`], [`check_open`],
//! [`Update::end_of_rib`], [`Notification::cease`].

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

mod buf;
mod error;
mod family;
mod message;
mod notification;
mod open;
mod update;

pub use error::{DecodeError, EncodeError};
pub use message::{
    KEEPALIVE_LEN, MIN_NOTIFICATION_LEN, MIN_OPEN_LEN, MIN_UPDATE_LEN, ROUTE_REFRESH_LEN,
    decode_message, frame_len, msg_type,
};
pub use notification::{MAX_SHUTDOWN_MESSAGE_LEN, code, code_name, subcode, subcode_name};
pub use open::{PARAM_CAPABILITIES, PARAM_EXTENDED_LENGTH, cap, check_open};
pub use update::{attr, flag, nlri_wire_len};

/// BGP header length: 16-byte marker, 2-byte length, 1-byte type.
pub const HEADER_LEN: usize = 19;
/// Maximum message size without the extended message capability (RFC 4271).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Maximum message size with the extended message capability (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// AS_TRANS (RFC 6793): put in the 2-octet "My AS" field when the real ASN does not fit.
pub const AS_TRANS: u16 = 23456;

/// Address family identifier (RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4,
    Ipv6,
    /// Any other AFI value, kept as is.
    Other(u16),
}

/// Subsequent address family identifier (RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    Unicast,
    /// Any other SAFI value, kept as is.
    Other(u8),
}

/// An (AFI, SAFI) pair. ferrolb speaks IPv4 unicast and IPv6 unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: Afi,
    pub safi: Safi,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
    };
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
    };
}

/// What the two OPENs agreed on; the context every encode/decode needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-octet ASNs.
    pub four_octet_as: bool,
    /// Both sides sent the extended message capability: messages up to 65535 bytes.
    pub extended_message: bool,
    /// Families both sides announced with the multiprotocol capability
    /// (IPv4 unicast is implied when neither side sent any MP capability).
    pub families: Vec<Family>,
    /// Both sides support route refresh.
    pub route_refresh: bool,
    /// Both sides support enhanced route refresh.
    pub enhanced_route_refresh: bool,
}

impl Default for Negotiated {
    /// The context before any OPEN was exchanged: 2-octet ASNs, 4096-byte messages, IPv4 unicast.
    fn default() -> Self {
        Negotiated {
            four_octet_as: false,
            extended_message: false,
            families: vec![Family::IPV4_UNICAST],
            route_refresh: false,
            enhanced_route_refresh: false,
        }
    }
}

impl Negotiated {
    /// Largest message this session may send or receive.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // UPDATE dominates; boxing it would change the shared contract.
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN (RFC 4271 §4.2).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Always 4 when encoding; kept as received when decoding (the FSM rejects others with 2/1).
    pub version: u8,
    /// The 2-octet "My Autonomous System" field exactly as on the wire
    /// (AS_TRANS when the real ASN needs 4 octets).
    pub my_as_field: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    /// Capabilities from all Capabilities optional parameters, in wire order.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Build an OPEN for `asn`, putting AS_TRANS in the 2-octet field when needed.
    /// The caller includes [`Capability::FourOctetAs`] in `capabilities`.
    pub fn new(
        asn: u32,
        hold_time: u16,
        router_id: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Self {
        let my_as_field = u16::try_from(asn).unwrap_or(AS_TRANS);
        Open {
            version: 4,
            my_as_field,
            hold_time,
            router_id,
            capabilities,
        }
    }

    /// The speaker's real ASN: the 4-octet capability's value when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as_field))
    }
}

/// A capability (RFC 5492) carried in an OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760).
    Multiprotocol(Family),
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 6 (RFC 8654).
    ExtendedMessage,
    /// Code 64 (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    /// Code 70 (RFC 7313).
    EnhancedRouteRefresh,
    /// Anything else, kept and ignored.
    Unknown { code: u8, value: Vec<u8> },
}

/// Graceful restart capability value (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// The R (restart state) bit.
    pub restart_state: bool,
    /// The N (notification, RFC 8538) bit.
    pub notification: bool,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Per family: the F (forwarding state preserved) bit.
    pub families: Vec<(Family, bool)>,
}

/// ORIGIN attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// One AS_PATH segment. ASNs are u32 in memory; their width on the wire comes from [`Negotiated`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
    ConfedSequence(Vec<u32>),
    ConfedSet(Vec<u32>),
}

/// A large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local1: u32,
    pub local2: u32,
}

/// MP_REACH_NLRI (RFC 4760 §3). For IPv6 unicast, `next_hops` holds the
/// global address and, optionally, a link-local one (RFC 2545).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MpReach {
    pub family: Family,
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
}

/// An attribute we do not interpret, kept as received (flags, type code, value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of one UPDATE, well-known ones as fields.
/// Encoding writes them in type-code order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    /// Segments with 4-octet-capable values. When the session is not 4-octet
    /// capable, the encoder writes AS_TRANS in AS_PATH and adds AS4_PATH.
    pub as_path: Option<Vec<AsSegment>>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    /// COMMUNITIES (RFC 1997), each as the 32-bit value (ASN << 16 | value).
    pub communities: Vec<u32>,
    /// LARGE_COMMUNITY (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Other attributes, kept as received (AGGREGATOR, ORIGINATOR_ID, unknown optional transitive, ...).
    pub other: Vec<RawAttribute>,
}

/// UPDATE (RFC 4271 §4.3).
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 withdrawn routes (the classic field).
    pub withdrawn: Vec<ipnet::Ipv4Net>,
    pub attributes: PathAttributes,
    /// IPv4 NLRI (the classic field).
    pub nlri: Vec<ipnet::Ipv4Net>,
    /// Decode only (RFC 7606): an attribute error means every prefix in this
    /// UPDATE must be treated as withdrawn. Never set when encoding.
    pub treat_as_withdraw: bool,
    /// Decode only (RFC 7606): type codes of attributes that were malformed and discarded
    /// (attribute discard), or repeated and dropped after their first occurrence (§3 (g)).
    pub discarded: Vec<u8>,
}

/// NOTIFICATION (RFC 4271 §4.5). `data` holds the diagnostic bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH (RFC 2918; subtype from RFC 7313: 0 normal, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}
