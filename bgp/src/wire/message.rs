//! Message header, TCP framing, and dispatch to the per-type codecs.

use bytes::BytesMut;

use super::buf::{Counter, Reader, Sink};
use super::open::{decode_open, encode_open};
use super::update::decode_update;
use super::{
    DecodeError, EncodeError, Family, HEADER_LEN, MAX_MESSAGE_LEN, Message, Negotiated,
    Notification, RouteRefresh,
};

/// Message type codes (RFC 4271 §4.1, RFC 2918).
pub mod msg_type {
    /// OPEN.
    pub const OPEN: u8 = 1;
    /// UPDATE.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Smallest OPEN (RFC 4271 §4.2).
pub const MIN_OPEN_LEN: usize = 29;
/// Smallest UPDATE (RFC 4271 §4.3).
pub const MIN_UPDATE_LEN: usize = 23;
/// Smallest NOTIFICATION (RFC 4271 §4.5).
pub const MIN_NOTIFICATION_LEN: usize = 21;
/// The only KEEPALIVE size (RFC 4271 §4.4).
pub const KEEPALIVE_LEN: usize = 19;
/// The only ROUTE-REFRESH size (RFC 2918 §3).
pub const ROUTE_REFRESH_LEN: usize = 23;

const MARKER: [u8; 16] = [0xff; 16];

/// TCP framing: how long the message at the front of `buf` is.
///
/// `Ok(None)` while fewer than 19 bytes (a header) are buffered. Otherwise
/// checks the marker (1/1 Connection Not Synchronized) and that the length
/// field is within 19..=`max_len` (1/2 Bad Message Length, data = the
/// length), and returns that length; the caller waits until that many bytes
/// are buffered and hands them to [`Message::decode`].
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut r = Reader::new(header);
    if r.take(16) != Some(&MARKER[..]) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let len = r.u16().unwrap_or(0);
    if usize::from(len) < HEADER_LEN || usize::from(len) > max_len {
        return Err(DecodeError::BadMessageLength(len));
    }
    Ok(Some(usize::from(len)))
}

impl Message {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Message::Open(_) => msg_type::OPEN,
            Message::Update(_) => msg_type::UPDATE,
            Message::Notification(_) => msg_type::NOTIFICATION,
            Message::Keepalive => msg_type::KEEPALIVE,
            Message::RouteRefresh(_) => msg_type::ROUTE_REFRESH,
        }
    }

    /// Decode one whole message (header included), as [`frame_len`] delimited it.
    ///
    /// Attribute errors RFC 7606 handles without a reset come back inside the
    /// UPDATE ([`super::Update::treat_as_withdraw`], [`super::Update::discarded`]);
    /// use [`decode_message`] to also see why.
    pub fn decode(msg: &[u8], neg: &Negotiated) -> Result<Message, DecodeError> {
        decode_message(msg, neg).map(|(m, _)| m)
    }

    /// Encode into `out` (appending). On error nothing is appended.
    ///
    /// Fails with [`EncodeError::TooLong`] when the message exceeds
    /// [`Negotiated::max_message_len`] (4096 for OPEN and KEEPALIVE always, RFC 8654 §3).
    pub fn encode(&self, neg: &Negotiated, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.write(neg, out);
        let len = out.len() - start;
        let max = self.max_len(neg);
        match result {
            Ok(()) if len <= max => Ok(()),
            Ok(()) => {
                out.truncate(start);
                Err(EncodeError::TooLong { len, max })
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Exact encoded size (header included) under `neg`; meaningless for a
    /// message that cannot be encoded.
    pub fn encoded_len(&self, neg: &Negotiated) -> usize {
        let mut c = Counter::default();
        let _ = self.write(neg, &mut c);
        c.0
    }

    fn max_len(&self, neg: &Negotiated) -> usize {
        match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
            _ => neg.max_message_len(),
        }
    }

    fn write<S: Sink>(&self, neg: &Negotiated, s: &mut S) -> Result<(), EncodeError> {
        let start = s.position();
        s.put_slice(&MARKER);
        s.put_u16(0);
        s.put_u8(self.type_code());
        match self {
            Message::Open(o) => encode_open(o, s)?,
            Message::Update(u) => u.write(neg, s)?,
            Message::Notification(n) => {
                s.put_u8(n.code);
                s.put_u8(n.subcode);
                s.put_slice(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                s.put_u16(rr.family.afi.to_u16());
                s.put_u8(rr.subtype);
                s.put_u8(rr.family.safi.to_u8());
            }
        }
        let len = s.position() - start;
        s.patch_u16(start + 16, u16::try_from(len).unwrap_or(u16::MAX));
        Ok(())
    }
}

/// Decode one whole message and also return the attribute errors RFC 7606
/// handled without a session reset (always empty for non-UPDATE messages),
/// so the caller can log why routes were treated as withdrawn.
pub fn decode_message(
    msg: &[u8],
    neg: &Negotiated,
) -> Result<(Message, Vec<DecodeError>), DecodeError> {
    let Some(len) = frame_len(msg, neg.max_message_len())? else {
        return Err(DecodeError::BadMessageLength(
            u16::try_from(msg.len()).unwrap_or(u16::MAX),
        ));
    };
    if len != msg.len() {
        return Err(DecodeError::BadMessageLength(len as u16));
    }
    let bad_len = DecodeError::BadMessageLength(len as u16);
    let t = msg.get(18).copied().unwrap_or(0);
    let body = msg.get(HEADER_LEN..).unwrap_or(&[]);
    let msg = match t {
        msg_type::OPEN => {
            if !(MIN_OPEN_LEN..=MAX_MESSAGE_LEN).contains(&len) {
                return Err(bad_len);
            }
            Message::Open(decode_open(body)?)
        }
        msg_type::UPDATE => {
            if len < MIN_UPDATE_LEN {
                return Err(bad_len);
            }
            let (u, problems) = decode_update(body, neg)?;
            return Ok((Message::Update(u), problems));
        }
        msg_type::NOTIFICATION => {
            let mut r = Reader::new(body);
            match (r.u8(), r.u8()) {
                (Some(code), Some(subcode)) => Message::Notification(Notification {
                    code,
                    subcode,
                    data: r.rest().to_vec(),
                }),
                _ => return Err(bad_len),
            }
        }
        msg_type::KEEPALIVE => {
            if len != KEEPALIVE_LEN {
                return Err(bad_len);
            }
            Message::Keepalive
        }
        msg_type::ROUTE_REFRESH => {
            let mut r = Reader::new(body);
            let (afi, subtype, safi) = (r.u16(), r.u8(), r.u8());
            if len != ROUTE_REFRESH_LEN {
                // RFC 7313 §5: BoRR/EoRR of the wrong length → 7/1 with the message.
                if matches!(subtype, Some(1 | 2)) {
                    return Err(DecodeError::RouteRefreshLength(msg.to_vec()));
                }
                return Err(bad_len);
            }
            match (afi, subtype, safi) {
                (Some(afi), Some(subtype), Some(safi)) => Message::RouteRefresh(RouteRefresh {
                    family: Family::from_wire(afi, safi),
                    subtype,
                }),
                _ => return Err(bad_len),
            }
        }
        t => return Err(DecodeError::BadMessageType(t)),
    };
    Ok((msg, Vec::new()))
}
