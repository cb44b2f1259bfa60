//! Decode and encode errors, and how decode errors become NOTIFICATIONs.

use super::{Notification, notification::code, notification::subcode};

/// Why a received message could not be decoded.
///
/// Every variant maps to the NOTIFICATION (code, subcode, data) RFC 4271 §6
/// (and RFC 7313, RFC 9072) asks for; see `impl From<&DecodeError> for Notification`.
/// Attribute errors that RFC 7606 downgrades to treat-as-withdraw or
/// attribute-discard are *not* returned as errors by [`super::Message::decode`];
/// [`super::decode_message`] reports them alongside the decoded UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// 1/1: the 16-byte marker is not all ones.
    #[error("message header marker is not all ones")]
    ConnectionNotSynchronized,
    /// 1/2: the header length is out of bounds for the message type or the session
    /// (data: the erroneous 2-byte length field).
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    /// 1/3: unknown message type (data: the type octet).
    #[error("bad message type {0}")]
    BadMessageType(u8),
    /// 2/0: an OPEN whose optional parameters or capabilities are malformed.
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    /// 2/4: an optional parameter other than Capabilities (type 2).
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    /// 3/1: the UPDATE's length fields do not add up, or MP_REACH_NLRI /
    /// MP_UNREACH_NLRI appears twice (RFC 7606 §3 (g)).
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    /// 3/2: a well-known (non-optional) attribute type we do not know
    /// (data: the attribute, flags through value).
    #[error("unrecognized well-known attribute type {}", attr_type(.0))]
    UnrecognizedWellKnown(Vec<u8>),
    /// 3/3: a mandatory well-known attribute is missing (data: its type code).
    #[error("missing well-known attribute type {0}")]
    MissingWellKnown(u8),
    /// 3/4: the Optional/Transitive flags conflict with the type code (data: the attribute).
    #[error("attribute flags error, type {}", attr_type(.0))]
    AttributeFlags(Vec<u8>),
    /// 3/5: an attribute length that its type does not allow (data: the attribute).
    #[error("attribute length error, type {}", attr_type(.0))]
    AttributeLength(Vec<u8>),
    /// 3/6: ORIGIN value other than 0, 1, 2 (data: the attribute).
    #[error("invalid ORIGIN attribute")]
    InvalidOrigin(Vec<u8>),
    /// 3/8: NEXT_HOP is not a usable host address (data: the attribute).
    #[error("invalid NEXT_HOP attribute")]
    InvalidNextHop(Vec<u8>),
    /// 3/9: a malformed optional attribute, e.g. MP_REACH_NLRI (data: the attribute).
    #[error("optional attribute error, type {}", attr_type(.0))]
    OptionalAttribute(Vec<u8>),
    /// 3/10: the withdrawn routes or NLRI field cannot be parsed.
    #[error("invalid network field")]
    InvalidNetworkField,
    /// 3/11: malformed AS_PATH (RFC 7606 §7.2 definition).
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// 7/1 (RFC 7313 §5): ROUTE-REFRESH of subtype 1 or 2 whose length is not 23
    /// (data: the whole message).
    #[error("ROUTE-REFRESH with invalid length")]
    RouteRefreshLength(Vec<u8>),
}

fn attr_type(attr: &[u8]) -> u8 {
    attr.get(1).copied().unwrap_or(0)
}

impl From<&DecodeError> for Notification {
    fn from(e: &DecodeError) -> Notification {
        use DecodeError::*;
        let (c, s, data) = match e {
            ConnectionNotSynchronized => (
                code::MESSAGE_HEADER,
                subcode::CONNECTION_NOT_SYNCHRONIZED,
                vec![],
            ),
            BadMessageLength(len) => (
                code::MESSAGE_HEADER,
                subcode::BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec(),
            ),
            BadMessageType(t) => (code::MESSAGE_HEADER, subcode::BAD_MESSAGE_TYPE, vec![*t]),
            MalformedOpen(_) => (code::OPEN_MESSAGE, subcode::UNSPECIFIC, vec![]),
            UnsupportedOptionalParameter(_) => (
                code::OPEN_MESSAGE,
                subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                vec![],
            ),
            MalformedAttributeList(_) => (
                code::UPDATE_MESSAGE,
                subcode::MALFORMED_ATTRIBUTE_LIST,
                vec![],
            ),
            UnrecognizedWellKnown(a) => (
                code::UPDATE_MESSAGE,
                subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                a.clone(),
            ),
            MissingWellKnown(t) => (
                code::UPDATE_MESSAGE,
                subcode::MISSING_WELL_KNOWN_ATTRIBUTE,
                vec![*t],
            ),
            AttributeFlags(a) => (
                code::UPDATE_MESSAGE,
                subcode::ATTRIBUTE_FLAGS_ERROR,
                a.clone(),
            ),
            AttributeLength(a) => (
                code::UPDATE_MESSAGE,
                subcode::ATTRIBUTE_LENGTH_ERROR,
                a.clone(),
            ),
            InvalidOrigin(a) => (
                code::UPDATE_MESSAGE,
                subcode::INVALID_ORIGIN_ATTRIBUTE,
                a.clone(),
            ),
            InvalidNextHop(a) => (
                code::UPDATE_MESSAGE,
                subcode::INVALID_NEXT_HOP_ATTRIBUTE,
                a.clone(),
            ),
            OptionalAttribute(a) => (
                code::UPDATE_MESSAGE,
                subcode::OPTIONAL_ATTRIBUTE_ERROR,
                a.clone(),
            ),
            InvalidNetworkField => (code::UPDATE_MESSAGE, subcode::INVALID_NETWORK_FIELD, vec![]),
            MalformedAsPath => (code::UPDATE_MESSAGE, subcode::MALFORMED_AS_PATH, vec![]),
            RouteRefreshLength(m) => (
                code::ROUTE_REFRESH_MESSAGE,
                subcode::INVALID_MESSAGE_LENGTH,
                m.clone(),
            ),
        };
        Notification {
            code: c,
            subcode: s,
            data,
        }
    }
}

impl From<DecodeError> for Notification {
    fn from(e: DecodeError) -> Notification {
        Notification::from(&e)
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed the session's maximum message size.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Size the message would have had.
        len: usize,
        /// [`super::Negotiated::max_message_len`].
        max: usize,
    },
    /// A field value cannot be represented on the wire (too long, wrong family, ...).
    #[error("cannot encode: {0}")]
    Invalid(&'static str),
}
