//! NOTIFICATION (RFC 4271 §4.5): error codes and subcodes, their names, and
//! the shutdown communication of RFC 8203 / RFC 9003.

use std::fmt;

use super::Notification;

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 6608, RFC 7313, RFC 9687).
pub mod code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
    /// Send Hold Timer Expired (RFC 9687).
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;
}

/// NOTIFICATION error subcodes. Values repeat across codes; the name says which code they belong to.
pub mod subcode {
    /// Any code: Unspecific.
    pub const UNSPECIFIC: u8 = 0;

    /// Message Header Error / Connection Not Synchronized.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// Message Header Error / Bad Message Length.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// Message Header Error / Bad Message Type.
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    /// OPEN Message Error / Unsupported Version Number.
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    /// OPEN Message Error / Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// OPEN Message Error / Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// OPEN Message Error / Unsupported Optional Parameter.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// OPEN Message Error / Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// OPEN Message Error / Unsupported Capability (RFC 5492).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    /// OPEN Message Error / Role Mismatch (RFC 9234).
    pub const ROLE_MISMATCH: u8 = 11;

    /// UPDATE Message Error / Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// UPDATE Message Error / Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// UPDATE Message Error / Missing Well-known Attribute.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// UPDATE Message Error / Attribute Flags Error.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// UPDATE Message Error / Attribute Length Error.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// UPDATE Message Error / Invalid ORIGIN Attribute.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// UPDATE Message Error / Invalid NEXT_HOP Attribute.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// UPDATE Message Error / Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// UPDATE Message Error / Invalid Network Field.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// UPDATE Message Error / Malformed AS_PATH.
    pub const MALFORMED_AS_PATH: u8 = 11;

    /// FSM Error / Receive Unexpected Message in OpenSent State (RFC 6608).
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// FSM Error / Receive Unexpected Message in OpenConfirm State (RFC 6608).
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// FSM Error / Receive Unexpected Message in Established State (RFC 6608).
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;

    /// Cease / Maximum Number of Prefixes Reached (RFC 4486).
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    /// Cease / Administrative Shutdown (RFC 4486; message: RFC 9003).
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Cease / Peer De-configured (RFC 4486).
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Cease / Administrative Reset (RFC 4486; message: RFC 9003).
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    /// Cease / Connection Rejected (RFC 4486).
    pub const CONNECTION_REJECTED: u8 = 5;
    /// Cease / Other Configuration Change (RFC 4486).
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    /// Cease / Connection Collision Resolution (RFC 4486).
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    /// Cease / Out of Resources (RFC 4486).
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// Cease / Hard Reset (RFC 8538).
    pub const HARD_RESET: u8 = 9;
    /// Cease / BFD Down (RFC 9384).
    pub const BFD_DOWN: u8 = 10;

    /// ROUTE-REFRESH Message Error / Invalid Message Length (RFC 7313).
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// Longest shutdown communication (RFC 9003 §2).
pub const MAX_SHUTDOWN_MESSAGE_LEN: usize = 255;

/// The name of an error code, e.g. "OPEN Message Error".
pub fn code_name(c: u8) -> Option<&'static str> {
    Some(match c {
        code::MESSAGE_HEADER => "Message Header Error",
        code::OPEN_MESSAGE => "OPEN Message Error",
        code::UPDATE_MESSAGE => "UPDATE Message Error",
        code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        code::FSM => "Finite State Machine Error",
        code::CEASE => "Cease",
        code::ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        code::SEND_HOLD_TIMER_EXPIRED => "Send Hold Timer Expired",
        _ => return None,
    })
}

/// The name of a subcode of error code `c`, e.g. "Bad Peer AS" for (2, 2).
pub fn subcode_name(c: u8, s: u8) -> Option<&'static str> {
    use subcode::*;
    if s == UNSPECIFIC && code_name(c).is_some() {
        return Some("Unspecific");
    }
    Some(match (c, s) {
        (code::MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED) => "Connection Not Synchronized",
        (code::MESSAGE_HEADER, BAD_MESSAGE_LENGTH) => "Bad Message Length",
        (code::MESSAGE_HEADER, BAD_MESSAGE_TYPE) => "Bad Message Type",
        (code::OPEN_MESSAGE, UNSUPPORTED_VERSION_NUMBER) => "Unsupported Version Number",
        (code::OPEN_MESSAGE, BAD_PEER_AS) => "Bad Peer AS",
        (code::OPEN_MESSAGE, BAD_BGP_IDENTIFIER) => "Bad BGP Identifier",
        (code::OPEN_MESSAGE, UNSUPPORTED_OPTIONAL_PARAMETER) => "Unsupported Optional Parameter",
        (code::OPEN_MESSAGE, 5) => "Authentication Failure (deprecated)",
        (code::OPEN_MESSAGE, UNACCEPTABLE_HOLD_TIME) => "Unacceptable Hold Time",
        (code::OPEN_MESSAGE, UNSUPPORTED_CAPABILITY) => "Unsupported Capability",
        (code::OPEN_MESSAGE, ROLE_MISMATCH) => "Role Mismatch",
        (code::UPDATE_MESSAGE, MALFORMED_ATTRIBUTE_LIST) => "Malformed Attribute List",
        (code::UPDATE_MESSAGE, UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE) => {
            "Unrecognized Well-known Attribute"
        }
        (code::UPDATE_MESSAGE, MISSING_WELL_KNOWN_ATTRIBUTE) => "Missing Well-known Attribute",
        (code::UPDATE_MESSAGE, ATTRIBUTE_FLAGS_ERROR) => "Attribute Flags Error",
        (code::UPDATE_MESSAGE, ATTRIBUTE_LENGTH_ERROR) => "Attribute Length Error",
        (code::UPDATE_MESSAGE, INVALID_ORIGIN_ATTRIBUTE) => "Invalid ORIGIN Attribute",
        (code::UPDATE_MESSAGE, 7) => "AS Routing Loop (deprecated)",
        (code::UPDATE_MESSAGE, INVALID_NEXT_HOP_ATTRIBUTE) => "Invalid NEXT_HOP Attribute",
        (code::UPDATE_MESSAGE, OPTIONAL_ATTRIBUTE_ERROR) => "Optional Attribute Error",
        (code::UPDATE_MESSAGE, INVALID_NETWORK_FIELD) => "Invalid Network Field",
        (code::UPDATE_MESSAGE, MALFORMED_AS_PATH) => "Malformed AS_PATH",
        (code::FSM, UNEXPECTED_IN_OPEN_SENT) => "Receive Unexpected Message in OpenSent State",
        (code::FSM, UNEXPECTED_IN_OPEN_CONFIRM) => {
            "Receive Unexpected Message in OpenConfirm State"
        }
        (code::FSM, UNEXPECTED_IN_ESTABLISHED) => "Receive Unexpected Message in Established State",
        (code::CEASE, MAXIMUM_PREFIXES_REACHED) => "Maximum Number of Prefixes Reached",
        (code::CEASE, ADMINISTRATIVE_SHUTDOWN) => "Administrative Shutdown",
        (code::CEASE, PEER_DECONFIGURED) => "Peer De-configured",
        (code::CEASE, ADMINISTRATIVE_RESET) => "Administrative Reset",
        (code::CEASE, CONNECTION_REJECTED) => "Connection Rejected",
        (code::CEASE, OTHER_CONFIGURATION_CHANGE) => "Other Configuration Change",
        (code::CEASE, CONNECTION_COLLISION_RESOLUTION) => "Connection Collision Resolution",
        (code::CEASE, OUT_OF_RESOURCES) => "Out of Resources",
        (code::CEASE, HARD_RESET) => "Hard Reset",
        (code::CEASE, BFD_DOWN) => "BFD Down",
        (code::ROUTE_REFRESH_MESSAGE, INVALID_MESSAGE_LENGTH) => "Invalid Message Length",
        _ => return None,
    })
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and no data.
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// Cease with an optional shutdown communication (RFC 8203, RFC 9003).
    ///
    /// The message is only carried for Administrative Shutdown (2) and
    /// Administrative Reset (4); it is cut to 255 bytes on a UTF-8 character
    /// boundary and written as a length octet followed by the text.
    pub fn cease(subcode: u8, message: Option<&str>) -> Notification {
        let mut n = Notification::new(code::CEASE, subcode);
        let carries = matches!(
            subcode,
            subcode::ADMINISTRATIVE_SHUTDOWN | subcode::ADMINISTRATIVE_RESET
        );
        if let (true, Some(msg)) = (carries, message) {
            let mut end = msg.len().min(MAX_SHUTDOWN_MESSAGE_LEN);
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            let text = &msg.as_bytes()[..end];
            n.data.reserve(1 + text.len());
            n.data.push(text.len() as u8);
            n.data.extend_from_slice(text);
        }
        n
    }

    /// The shutdown communication of a Cease / Administrative Shutdown or
    /// Administrative Reset, when the data holds a well-formed one (RFC 9003 §2:
    /// length octet, then that many bytes of valid UTF-8). An empty message is `None`.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != code::CEASE
            || !matches!(
                self.subcode,
                subcode::ADMINISTRATIVE_SHUTDOWN | subcode::ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        if text.is_empty() {
            return None;
        }
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    /// Whether this is the given (code, subcode).
    pub fn is(&self, code: u8, subcode: u8) -> bool {
        self.code == code && self.subcode == subcode
    }

    /// Cease / Hard Reset (6/9, RFC 8538 §3) carrying `inner`: its code,
    /// its subcode, then its data. A peer that negotiated the N bit drops
    /// our routes at once on a Hard Reset, instead of keeping them as stale
    /// as it does for any other NOTIFICATION.
    pub fn hard_reset(inner: &Notification) -> Notification {
        let mut n = Notification::new(code::CEASE, subcode::HARD_RESET);
        n.data.reserve(2 + inner.data.len());
        n.data.push(inner.code);
        n.data.push(inner.subcode);
        n.data.extend_from_slice(&inner.data);
        n
    }

    /// The NOTIFICATION a Cease / Hard Reset carries (RFC 8538 §3), when
    /// this is one with at least a code and a subcode in its data.
    pub fn hard_reset_inner(&self) -> Option<Notification> {
        if !self.is(code::CEASE, subcode::HARD_RESET) {
            return None;
        }
        let [c, s, rest @ ..] = self.data.as_slice() else {
            return None;
        };
        Some(Notification {
            code: *c,
            subcode: *s,
            data: rest.to_vec(),
        })
    }

    /// Whether a speaker that negotiated the N bit sends this NOTIFICATION
    /// wrapped in a Hard Reset (RFC 8538 §5): Cease subcodes Maximum Number
    /// of Prefixes Reached (1), Administrative Shutdown (2), Peer
    /// De-configured (3) and Administrative Reset (4, whose "user control"
    /// ferrolb does not offer). Every other NOTIFICATION (Connection
    /// Rejected, Other Configuration Change, Collision Resolution, Out of
    /// Resources, BFD Down, and all errors) is sent as it is, and the peer
    /// keeps our routes as stale.
    pub fn wants_hard_reset(&self) -> bool {
        self.code == code::CEASE
            && matches!(
                self.subcode,
                subcode::MAXIMUM_PREFIXES_REACHED
                    | subcode::ADMINISTRATIVE_SHUTDOWN
                    | subcode::PEER_DECONFIGURED
                    | subcode::ADMINISTRATIVE_RESET
            )
    }
}

impl fmt::Display for Notification {
    /// E.g. `OPEN Message Error / Bad Peer AS`, or
    /// `Cease / Administrative Shutdown: "maintenance"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match code_name(self.code) {
            Some(c) => f.write_str(c)?,
            None => write!(f, "code {}", self.code)?,
        }
        match subcode_name(self.code, self.subcode) {
            Some(s) => write!(f, " / {s}")?,
            None => write!(f, " / subcode {}", self.subcode)?,
        }
        if let Some(msg) = self.shutdown_message() {
            write!(f, ": {msg:?}")?;
        }
        if let Some(inner) = self.hard_reset_inner() {
            write!(f, " ({inner})")?;
        }
        Ok(())
    }
}
