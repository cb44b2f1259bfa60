//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492) and extended optional
//! parameters length (RFC 9072).

use std::net::Ipv4Addr;

use super::buf::{Counter, Reader, Sink};
use super::notification::{code, subcode};
use super::{Capability, DecodeError, EncodeError, Family, GracefulRestart, Notification, Open};

/// Optional parameter type: Capabilities (RFC 5492).
pub const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: "Non-Ext OP Type" value marking the extended encoding.
pub const PARAM_EXTENDED_LENGTH: u8 = 255;

/// Capability codes this codec interprets.
pub mod cap {
    /// Multiprotocol extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended message (RFC 8654).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS number (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
    /// Enhanced route refresh (RFC 7313).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
}

const GR_RESTART_STATE: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0fff;
const GR_FORWARDING: u8 = 0x80;

const MALFORMED_CAP: DecodeError = DecodeError::MalformedOpen("malformed capability");

/// Decode an OPEN body (after the 19-byte header).
pub(crate) fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let short = DecodeError::MalformedOpen("OPEN shorter than its fixed fields");
    let mut r = Reader::new(body);
    let version = r.u8().ok_or(short.clone())?;
    let my_as_field = r.u16().ok_or(short.clone())?;
    let hold_time = r.u16().ok_or(short.clone())?;
    let router_id = Ipv4Addr::from(r.array::<4>().ok_or(short.clone())?);
    let opt_len = r.u8().ok_or(short)?;
    // RFC 9072 §2: Non-Ext OP Len 255 followed by Non-Ext OP Type 255 means a
    // 2-octet Extended Opt. Parm. Length and 2-octet parameter lengths.
    let extended = opt_len == 255 && r.rest().first() == Some(&PARAM_EXTENDED_LENGTH);
    let params = if extended {
        r.u8();
        let len = r
            .u16()
            .ok_or(DecodeError::MalformedOpen("truncated extended length"))?;
        r.take(usize::from(len))
    } else {
        r.take(usize::from(opt_len))
    }
    .ok_or(DecodeError::MalformedOpen(
        "optional parameters overrun the message",
    ))?;
    if !r.is_empty() {
        return Err(DecodeError::MalformedOpen(
            "bytes after the optional parameters",
        ));
    }
    let mut capabilities = Vec::new();
    let mut p = Reader::new(params);
    while !p.is_empty() {
        let bad = DecodeError::MalformedOpen("malformed optional parameter");
        let ptype = p.u8().ok_or(bad.clone())?;
        let plen = if extended {
            p.u16().map(usize::from)
        } else {
            p.u8().map(usize::from)
        }
        .ok_or(bad.clone())?;
        let value = p.take(plen).ok_or(bad)?;
        if ptype != PARAM_CAPABILITIES {
            return Err(DecodeError::UnsupportedOptionalParameter(ptype));
        }
        decode_capabilities(value, &mut capabilities)?;
    }
    Ok(Open {
        version,
        my_as_field,
        hold_time,
        router_id,
        capabilities,
    })
}

/// Decode the capabilities of one Capabilities parameter (RFC 5492 §4).
fn decode_capabilities(value: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    let mut r = Reader::new(value);
    while !r.is_empty() {
        let code = r.u8().ok_or(MALFORMED_CAP)?;
        let len = r.u8().ok_or(MALFORMED_CAP)?;
        let v = r.take(usize::from(len)).ok_or(MALFORMED_CAP)?;
        out.push(decode_capability(code, v)?);
    }
    Ok(())
}

fn decode_capability(code: u8, v: &[u8]) -> Result<Capability, DecodeError> {
    let mut r = Reader::new(v);
    let c = match code {
        cap::MULTIPROTOCOL => {
            // AFI (2), Reserved (1), SAFI (1).
            let afi = r.u16().ok_or(MALFORMED_CAP)?;
            r.u8().ok_or(MALFORMED_CAP)?;
            let safi = r.u8().ok_or(MALFORMED_CAP)?;
            Capability::Multiprotocol(Family::from_wire(afi, safi))
        }
        cap::ROUTE_REFRESH => Capability::RouteRefresh,
        cap::EXTENDED_MESSAGE => Capability::ExtendedMessage,
        cap::ENHANCED_ROUTE_REFRESH => Capability::EnhancedRouteRefresh,
        cap::FOUR_OCTET_AS => Capability::FourOctetAs(r.u32().ok_or(MALFORMED_CAP)?),
        cap::GRACEFUL_RESTART => {
            let flags_time = r.u16().ok_or(MALFORMED_CAP)?;
            if !r.remaining().is_multiple_of(4) {
                return Err(MALFORMED_CAP);
            }
            let mut families = Vec::with_capacity(r.remaining() / 4);
            while !r.is_empty() {
                let afi = r.u16().ok_or(MALFORMED_CAP)?;
                let safi = r.u8().ok_or(MALFORMED_CAP)?;
                let flags = r.u8().ok_or(MALFORMED_CAP)?;
                families.push((Family::from_wire(afi, safi), flags & GR_FORWARDING != 0));
            }
            Capability::GracefulRestart(GracefulRestart {
                restart_state: flags_time & GR_RESTART_STATE != 0,
                notification: flags_time & GR_NOTIFICATION != 0,
                restart_time: flags_time & GR_TIME_MASK,
                families,
            })
        }
        _ => {
            return Ok(Capability::Unknown {
                code,
                value: v.to_vec(),
            });
        }
    };
    if !r.is_empty() {
        return Err(MALFORMED_CAP);
    }
    Ok(c)
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => cap::MULTIPROTOCOL,
            Capability::RouteRefresh => cap::ROUTE_REFRESH,
            Capability::ExtendedMessage => cap::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => cap::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => cap::FOUR_OCTET_AS,
            Capability::EnhancedRouteRefresh => cap::ENHANCED_ROUTE_REFRESH,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn write_value<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        match self {
            Capability::Multiprotocol(f) => {
                s.put_u16(f.afi.to_u16());
                s.put_u8(0);
                s.put_u8(f.safi.to_u8());
            }
            Capability::RouteRefresh
            | Capability::ExtendedMessage
            | Capability::EnhancedRouteRefresh => {}
            Capability::FourOctetAs(asn) => s.put_u32(*asn),
            Capability::GracefulRestart(gr) => {
                if gr.restart_time > GR_TIME_MASK {
                    return Err(EncodeError::Invalid(
                        "graceful restart time exceeds 4095 seconds",
                    ));
                }
                let mut ft = gr.restart_time;
                if gr.restart_state {
                    ft |= GR_RESTART_STATE;
                }
                if gr.notification {
                    ft |= GR_NOTIFICATION;
                }
                s.put_u16(ft);
                for (f, fwd) in &gr.families {
                    s.put_u16(f.afi.to_u16());
                    s.put_u8(f.safi.to_u8());
                    s.put_u8(if *fwd { GR_FORWARDING } else { 0 });
                }
            }
            Capability::Unknown { value, .. } => s.put_slice(value),
        }
        Ok(())
    }

    /// Encoded size: code, length and value.
    fn wire_len(&self) -> Result<usize, EncodeError> {
        let mut c = Counter::default();
        self.write_value(&mut c)?;
        if c.0 > 255 {
            return Err(EncodeError::Invalid(
                "capability value longer than 255 bytes",
            ));
        }
        Ok(2 + c.0)
    }
}

/// Encode an OPEN body. All capabilities go into Capabilities parameters of
/// at most 255 bytes each (one parameter when they fit); when the parameters
/// together exceed 255 bytes the RFC 9072 extended format is used.
pub(crate) fn encode_open<S: Sink>(open: &Open, s: &mut S) -> Result<(), EncodeError> {
    s.put_u8(open.version);
    s.put_u16(open.my_as_field);
    s.put_u16(open.hold_time);
    s.put_slice(&open.router_id.octets());

    // Group capabilities into parameters of at most 255 value bytes.
    let mut groups: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, value length)
    for (i, c) in open.capabilities.iter().enumerate() {
        let l = c.wire_len()?;
        match groups.last_mut() {
            Some((_, end, len)) if *len + l <= 255 => {
                *end = i + 1;
                *len += l;
            }
            _ => groups.push((i, i + 1, l)),
        }
    }
    let short_total: usize = groups.iter().map(|g| 2 + g.2).sum();
    let extended = short_total > 255;
    if extended {
        let total: usize = groups.iter().map(|g| 3 + g.2).sum();
        let total = u16::try_from(total)
            .map_err(|_| EncodeError::Invalid("optional parameters exceed 65535 bytes"))?;
        s.put_u8(255);
        s.put_u8(PARAM_EXTENDED_LENGTH);
        s.put_u16(total);
    } else {
        s.put_u8(short_total as u8);
    }
    for &(start, end, len) in &groups {
        s.put_u8(PARAM_CAPABILITIES);
        if extended {
            s.put_u16(len as u16);
        } else {
            s.put_u8(len as u8);
        }
        for c in &open.capabilities[start..end] {
            s.put_u8(c.code());
            let at = s.position();
            s.put_u8(0);
            let before = s.position();
            c.write_value(s)?;
            let vlen = s.position() - before;
            s.patch_u8(at, vlen as u8);
        }
    }
    Ok(())
}

/// The semantic checks RFC 4271 §6.2 asks of a received OPEN; the session
/// state machine calls this after [`super::Message::decode`].
///
/// - version other than 4 → 2/1 Unsupported Version Number, data = 2-octet 4
///   (the largest version we support);
/// - ASN 0, or not `expected_peer_as` when given (compared with [`Open::asn`],
///   so a 4-octet capability wins over AS_TRANS) → 2/2 Bad Peer AS;
/// - hold time 1 or 2 seconds → 2/6 Unacceptable Hold Time;
/// - BGP Identifier 0.0.0.0, or equal to ours from an internal peer (its
///   AS is `local_as`) → 2/3 Bad BGP Identifier. RFC 6286 §2.2 asks the
///   identifier to be unique within an AS only, so an external peer may
///   share ours.
pub fn check_open(
    open: &Open,
    expected_peer_as: Option<u32>,
    local_as: u32,
    local_router_id: Ipv4Addr,
) -> Result<(), Notification> {
    if open.version != 4 {
        let mut n = Notification::new(code::OPEN_MESSAGE, subcode::UNSUPPORTED_VERSION_NUMBER);
        n.data = 4u16.to_be_bytes().to_vec();
        return Err(n);
    }
    let asn = open.asn();
    if asn == 0 || open.my_as_field == 0 || expected_peer_as.is_some_and(|want| want != asn) {
        return Err(Notification::new(code::OPEN_MESSAGE, subcode::BAD_PEER_AS));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            subcode::UNACCEPTABLE_HOLD_TIME,
        ));
    }
    if open.router_id.is_unspecified() || (open.router_id == local_router_id && asn == local_as) {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            subcode::BAD_BGP_IDENTIFIER,
        ));
    }
    Ok(())
}
