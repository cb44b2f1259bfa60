//! The gossip's wire format: foca's postcard encoding of its messages, with
//! every identity checked on the way in ([`Id::is_valid`]), and an optional
//! HMAC-SHA256 tag over each datagram ([`Key`]).

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, PostcardCodec};
use ring::hmac;

use super::identity::Id;

/// Bytes of the authentication tag appended to each datagram when a key is
/// set (HMAC-SHA256 truncated to 128 bits).
pub const TAG_LEN: usize = 16;

/// Why a datagram was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Not foca's postcard encoding (or truncated).
    #[error("malformed: {0}")]
    Postcard(#[from] postcard::Error),
    /// Decoded, but an identity in it is not a speaker's.
    #[error("invalid identity {0:?}")]
    InvalidIdentity(Id),
}

/// foca's postcard codec, refusing identities that are not a speaker's.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdCodec;

fn check(id: &Id) -> Result<(), CodecError> {
    if id.is_valid() {
        Ok(())
    } else {
        Err(CodecError::InvalidIdentity(id.clone()))
    }
}

impl Codec<Id> for IdCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<Id>, buf: impl BufMut) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<Id>, CodecError> {
        let h: Header<Id> = PostcardCodec.decode_header(buf)?;
        check(&h.src)?;
        check(&h.dst)?;
        match &h.message {
            Message::PingReq { target: id, .. }
            | Message::IndirectPing { origin: id, .. }
            | Message::IndirectAck { target: id, .. }
            | Message::ForwardedAck { origin: id, .. } => check(id)?,
            _ => {}
        }
        Ok(h)
    }

    fn encode_member(&mut self, member: &Member<Id>, buf: impl BufMut) -> Result<(), CodecError> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<Id>, CodecError> {
        let m: Member<Id> = PostcardCodec.decode_member(buf)?;
        check(m.id())?;
        Ok(m)
    }
}

/// A shared secret authenticating every datagram (MetalLB's `memberlist`
/// Secret, key `secretkey`). Datagrams carry an HMAC-SHA256 tag; without the
/// right tag they are dropped before foca sees them. Nothing is encrypted:
/// node names and addresses travel in clear, as they are in the API server.
/// The tag does not stop an attacker on the path from replaying a datagram
/// it saw (SWIM tolerates that: a replayed ping or ack carries an old
/// incarnation or probe number).
#[derive(Clone)]
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from the secret's bytes.
    pub fn new(secret: &[u8]) -> Key {
        Key(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Appends the tag of `data` to it.
    pub fn seal(&self, data: &mut Vec<u8>) {
        let tag = hmac::sign(&self.0, data);
        data.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
    }

    /// The payload of `datagram` when its tag is right.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (data, tag) = datagram.split_at(split);
        let want = hmac::sign(&self.0, data);
        // ring's verify compares the full tag; compare the truncated one in
        // constant time by hand.
        let diff = want.as_ref()[..TAG_LEN]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Id {
        Id::new(name, "10.0.0.1:7946".parse().unwrap(), 1)
    }

    #[test]
    fn round_trip_and_invalid_identity() {
        let h = Header {
            src: id("a"),
            src_incarnation: 3,
            dst: id("b"),
            message: Message::PingReq {
                target: id("c"),
                probe_number: 7,
            },
        };
        let mut buf = Vec::new();
        IdCodec.encode_header(&h, &mut buf).unwrap();
        let back = IdCodec.decode_header(&buf[..]).unwrap();
        assert_eq!(back, h);

        let mut bad = h.clone();
        bad.message = Message::PingReq {
            target: id("Not_A_Node"),
            probe_number: 7,
        };
        let mut buf = Vec::new();
        IdCodec.encode_header(&bad, &mut buf).unwrap();
        assert!(matches!(
            IdCodec.decode_header(&buf[..]),
            Err(CodecError::InvalidIdentity(_))
        ));
    }

    #[test]
    fn hmac_seal_open() {
        let k = Key::new(b"s3cret");
        let mut d = b"hello".to_vec();
        k.seal(&mut d);
        assert_eq!(d.len(), 5 + TAG_LEN);
        assert_eq!(k.open(&d), Some(&b"hello"[..]));
        assert_eq!(Key::new(b"other").open(&d), None);
        let mut flipped = d.clone();
        flipped[0] ^= 1;
        assert_eq!(k.open(&flipped), None);
        assert_eq!(k.open(&d[..TAG_LEN - 1]), None);
    }
}
