//! The BFD Control packet (RFC 5880 §4.1): decode with the reception checks of
//! §6.8.6 that need no session state, and encode.
//!
//! Authentication (§4.2-§4.4) is not supported: a packet with the A bit set is
//! rejected with [`PacketError::AuthenticationNotSupported`], and we never set it.

use std::fmt;

/// BFD protocol version we speak (RFC 5880 §4.1).
pub const VERSION: u8 = 1;
/// Length of a Control packet without an authentication section.
pub const CONTROL_LEN: usize = 24;
/// UDP destination port for single-hop Control packets (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// First source port a single-hop session may use (RFC 5881 §4).
pub const SOURCE_PORT_MIN: u16 = 49152;
/// TTL / hop limit single-hop packets are sent with and must arrive with (RFC 5881 §5).
pub const SINGLE_HOP_TTL: u8 = 255;

/// Session state as carried in the Sta field (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: administratively down; the session is held down on purpose.
    AdminDown,
    /// 1: down, or just created.
    Down,
    /// 2: the remote end is heard; waiting for it to hear us.
    Init,
    /// 3: both ends hear each other.
    Up,
}

impl State {
    /// The 2-bit wire value.
    pub fn to_bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the 2-bit wire value (only the low two bits are looked at).
    pub fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// Diagnostic code: why the sender's session last left Up (RFC 5880 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: No Diagnostic.
    None,
    /// 1: Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2: Echo Function Failed.
    EchoFunctionFailed,
    /// 3: Neighbor Signaled Session Down.
    NeighborSignaledSessionDown,
    /// 4: Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5: Path Down.
    PathDown,
    /// 6: Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7: Administratively Down.
    AdministrativelyDown,
    /// 8: Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9-31: reserved; kept so a decoded packet re-encodes unchanged.
    Reserved(u8),
}

impl Diag {
    /// The 5-bit wire value.
    pub fn to_bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(b) => b & 0x1f,
        }
    }

    /// From the 5-bit wire value (only the low five bits are looked at).
    pub fn from_bits(b: u8) -> Diag {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            r => Diag::Reserved(r),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diag::None => f.write_str("no diagnostic"),
            Diag::ControlDetectionTimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFunctionFailed => f.write_str("echo function failed"),
            Diag::NeighborSignaledSessionDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingPlaneReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdministrativelyDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Reserved(b) => write!(f, "reserved diagnostic {b}"),
        }
    }
}

/// Why a received datagram is not a Control packet we accept. Every variant
/// means "discard the packet" (RFC 5880 §6.8.6); none changes session state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than 24 bytes arrived.
    #[error("datagram of {0} bytes is shorter than a BFD Control packet")]
    Truncated(usize),
    /// The Vers field is not 1.
    #[error("unsupported BFD version {0}")]
    BadVersion(u8),
    /// The Length field is below the minimum (24, or 26 with the A bit) or
    /// larger than the datagram.
    #[error("bad length field {length} (datagram {datagram} bytes)")]
    BadLength {
        /// The Length field.
        length: u8,
        /// Bytes received.
        datagram: usize,
    },
    /// Detect Mult is zero.
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// The Multipoint bit is set.
    #[error("multipoint bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero while the state is Init or Up.
    #[error("your discriminator is zero in state {0}")]
    ZeroYourDiscriminator(State),
    /// The A bit is set: the peer wants authentication, which we do not implement.
    #[error("authentication is not supported (A bit set)")]
    AuthenticationNotSupported,
}

/// A BFD Control packet (RFC 5880 §4.1). Intervals are in microseconds, as on the wire.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       My Discriminator                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Your Discriminator                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Desired Min TX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Required Min RX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Required Min Echo RX Interval                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    Auth Type  |   Auth Len    |    Authentication Data...     |   (optional, A bit)
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Diag: the sender's local diagnostic.
    pub diag: Diag,
    /// Sta: the sender's session state.
    pub state: State,
    /// P: Poll, the sender asks for a Final.
    pub poll: bool,
    /// F: Final, the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// A: an authentication section follows. Never set by us; rejected on decode.
    pub authentication: bool,
    /// D: Demand mode is active on the sender.
    pub demand: bool,
    /// M: Multipoint, reserved; must be zero.
    pub multipoint: bool,
    /// Detect Mult: the sender's detection time multiplier.
    pub detect_mult: u8,
    /// My Discriminator: the sender's non-zero session identifier.
    pub my_discr: u32,
    /// Your Discriminator: the receiver's discriminator as last heard, or 0.
    pub your_discr: u32,
    /// Desired Min TX Interval, µs.
    pub desired_min_tx: u32,
    /// Required Min RX Interval, µs (0: do not send me periodic packets).
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval, µs (0: no Echo).
    pub required_min_echo_rx: u32,
}

impl ControlPacket {
    /// Decodes one UDP payload and applies the codec-level checks of RFC 5880
    /// §6.8.6: version, length, detect multiplier, multipoint, discriminators
    /// and (unsupported) authentication, in the order the RFC lists them.
    /// Bytes after the Length field's end are ignored.
    pub fn decode(buf: &[u8]) -> Result<ControlPacket, PacketError> {
        if buf.len() < CONTROL_LEN {
            return Err(PacketError::Truncated(buf.len()));
        }
        let version = buf[0] >> 5;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let flags = buf[1];
        let authentication = flags & 0x04 != 0;
        let length = buf[3];
        let min = if authentication {
            CONTROL_LEN + 2
        } else {
            CONTROL_LEN
        };
        if (length as usize) < min || length as usize > buf.len() {
            return Err(PacketError::BadLength {
                length,
                datagram: buf.len(),
            });
        }
        let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let p = ControlPacket {
            diag: Diag::from_bits(buf[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            authentication,
            demand: flags & 0x02 != 0,
            multipoint: flags & 0x01 != 0,
            detect_mult: buf[2],
            my_discr: word(4),
            your_discr: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        };
        if p.detect_mult == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        if p.multipoint {
            return Err(PacketError::Multipoint);
        }
        if p.my_discr == 0 {
            return Err(PacketError::ZeroMyDiscriminator);
        }
        if p.your_discr == 0 && matches!(p.state, State::Init | State::Up) {
            return Err(PacketError::ZeroYourDiscriminator(p.state));
        }
        if p.authentication {
            return Err(PacketError::AuthenticationNotSupported);
        }
        Ok(p)
    }

    /// Encodes the packet (24 bytes, Length 24: we never send an authentication section).
    pub fn encode(&self) -> [u8; CONTROL_LEN] {
        let mut b = [0u8; CONTROL_LEN];
        b[0] = (VERSION << 5) | self.diag.to_bits();
        b[1] = (self.state.to_bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.authentication) << 2)
            | (u8::from(self.demand) << 1)
            | u8::from(self.multipoint);
        b[2] = self.detect_mult;
        b[3] = CONTROL_LEN as u8;
        for (i, w) in [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ]
        .into_iter()
        .enumerate()
        {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            authentication: false,
            demand: false,
            multipoint: false,
            detect_mult: 3,
            my_discr: 1,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Vectors checked in both directions: (bytes, packet).
    fn vectors() -> Vec<(&'static str, Vec<u8>, ControlPacket)> {
        vec![
            (
                "hand-built: Down, no remote yet, 1 s / 300 ms x3",
                hex("20 40 03 18 00000001 00000000 000f4240 000493e0 00000000"),
                base(),
            ),
            (
                "hand-built: Up with Poll, diag 3, every flag but A and M",
                hex("23 ea 05 18 deadbeef 01020304 000186a0 0000c350 00000001"),
                ControlPacket {
                    diag: Diag::NeighborSignaledSessionDown,
                    state: State::Up,
                    poll: true,
                    final_: false,
                    control_plane_independent: true,
                    demand: true,
                    detect_mult: 5,
                    my_discr: 0xdead_beef,
                    your_discr: 0x0102_0304,
                    desired_min_tx: 100_000,
                    required_min_rx: 50_000,
                    required_min_echo_rx: 1,
                    ..base()
                },
            ),
            (
                "hand-built: AdminDown diag 7 with Final",
                hex("27 10 01 18 00000007 00000009 000f4240 000f4240 00000000"),
                ControlPacket {
                    diag: Diag::AdministrativelyDown,
                    state: State::AdminDown,
                    final_: true,
                    detect_mult: 1,
                    my_discr: 7,
                    your_discr: 9,
                    desired_min_tx: 1_000_000,
                    required_min_rx: 1_000_000,
                    ..base()
                },
            ),
        ]
    }

    /// Captured with tcpdump on a veth between FRR 8.4 bfdd (198.18.9.2, tx 250 ms,
    /// rx 300 ms, x4) and BIRD 2.0.12 (198.18.9.1, tx 150 ms, rx 200 ms, x5), in
    /// namespaces: (who sent it, UDP payload, what it says).
    fn captured() -> Vec<(&'static str, Vec<u8>, ControlPacket)> {
        let frr = |b1: u8, your: u32, tx: u32, rx: u32| ControlPacket {
            state: State::from_bits(b1 >> 6),
            poll: b1 & 0x20 != 0,
            final_: b1 & 0x10 != 0,
            detect_mult: 4,
            my_discr: 0x1eed_0e79,
            your_discr: your,
            desired_min_tx: tx,
            required_min_rx: rx,
            required_min_echo_rx: 50_000,
            ..base()
        };
        let bird = |diag: Diag, b1: u8, your: u32, tx: u32| ControlPacket {
            diag,
            state: State::from_bits(b1 >> 6),
            poll: b1 & 0x20 != 0,
            final_: b1 & 0x10 != 0,
            detect_mult: 5,
            my_discr: 0xbf06_5cb8,
            your_discr: your,
            desired_min_tx: tx,
            required_min_rx: 200_000,
            required_min_echo_rx: 0,
            ..base()
        };
        vec![
            (
                "FRR bfdd: Down, peer not heard yet (slow 1 s both ways, echo 50 ms)",
                hex("204004181eed0e7900000000000f4240000f42400000c350"),
                frr(0x40, 0, 1_000_000, 1_000_000),
            ),
            (
                "FRR bfdd: Init",
                hex("208004181eed0e79bf065cb8000f4240000f42400000c350"),
                frr(0x80, 0xbf06_5cb8, 1_000_000, 1_000_000),
            ),
            (
                "FRR bfdd: Up with Poll, configured 250/300 ms",
                hex("20e004181eed0e79bf065cb80003d090000493e00000c350"),
                frr(0xe0, 0xbf06_5cb8, 250_000, 300_000),
            ),
            (
                "FRR bfdd: Up with Final",
                hex("20d004181eed0e79bf065cb80003d090000493e00000c350"),
                frr(0xd0, 0xbf06_5cb8, 250_000, 300_000),
            ),
            (
                "FRR bfdd: AdminDown after `shutdown` (FRR sends diag 0, not 7)",
                hex("200004181eed0e79bf065cb80003d090000493e00000c350"),
                frr(0x00, 0xbf06_5cb8, 250_000, 300_000),
            ),
            (
                "BIRD: Down, peer not heard yet (slow 1 s TX, rx 200 ms)",
                hex("20400518bf065cb800000000000f424000030d4000000000"),
                bird(Diag::None, 0x40, 0, 1_000_000),
            ),
            (
                "BIRD: Up with Poll, configured 150 ms",
                hex("20e00518bf065cb81eed0e79000249f000030d4000000000"),
                bird(Diag::None, 0xe0, 0x1eed_0e79, 150_000),
            ),
            (
                "BIRD: Down with diag 3 after FRR's AdminDown, Poll for the slow rate",
                hex("23600518bf065cb81eed0e79000f424000030d4000000000"),
                bird(
                    Diag::NeighborSignaledSessionDown,
                    0x60,
                    0x1eed_0e79,
                    1_000_000,
                ),
            ),
        ]
    }

    #[test]
    fn captured_frr_and_bird_vectors_both_directions() {
        for (name, bytes, pkt) in captured() {
            assert_eq!(ControlPacket::decode(&bytes), Ok(pkt), "decode {name}");
            assert_eq!(pkt.encode().to_vec(), bytes, "encode {name}");
        }
    }

    #[test]
    fn vectors_both_directions() {
        for (name, bytes, pkt) in vectors() {
            assert_eq!(ControlPacket::decode(&bytes), Ok(pkt), "decode {name}");
            assert_eq!(pkt.encode().to_vec(), bytes, "encode {name}");
        }
    }

    #[test]
    fn trailing_bytes_beyond_length_are_ignored() {
        let mut b = base().encode().to_vec();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(ControlPacket::decode(&b), Ok(base()));
    }

    #[test]
    fn diag_and_state_bits_round_trip() {
        for d in 0..32u8 {
            assert_eq!(Diag::from_bits(d).to_bits(), d);
        }
        for s in 0..4u8 {
            assert_eq!(State::from_bits(s).to_bits(), s);
        }
    }

    fn mutate(f: impl FnOnce(&mut [u8])) -> Result<ControlPacket, PacketError> {
        let mut b = base().encode();
        f(&mut b);
        ControlPacket::decode(&b)
    }

    #[test]
    fn reception_checks() {
        assert_eq!(
            ControlPacket::decode(&base().encode()[..23]),
            Err(PacketError::Truncated(23))
        );
        assert_eq!(
            mutate(|b| b[0] = (2 << 5) | (b[0] & 0x1f)),
            Err(PacketError::BadVersion(2))
        );
        assert_eq!(mutate(|b| b[0] &= 0x1f), Err(PacketError::BadVersion(0)));
        assert_eq!(
            mutate(|b| b[3] = 23),
            Err(PacketError::BadLength {
                length: 23,
                datagram: 24
            })
        );
        assert_eq!(
            mutate(|b| b[3] = 25),
            Err(PacketError::BadLength {
                length: 25,
                datagram: 24
            })
        );
        assert_eq!(mutate(|b| b[2] = 0), Err(PacketError::ZeroDetectMult));
        assert_eq!(mutate(|b| b[1] |= 0x01), Err(PacketError::Multipoint));
        assert_eq!(
            mutate(|b| b[4..8].copy_from_slice(&[0; 4])),
            Err(PacketError::ZeroMyDiscriminator)
        );
        // Your Discriminator 0 is fine in Down and AdminDown, not in Init or Up.
        assert!(mutate(|b| b[1] = State::AdminDown.to_bits() << 6).is_ok());
        assert_eq!(
            mutate(|b| b[1] = State::Init.to_bits() << 6),
            Err(PacketError::ZeroYourDiscriminator(State::Init))
        );
        assert_eq!(
            mutate(|b| b[1] = State::Up.to_bits() << 6),
            Err(PacketError::ZeroYourDiscriminator(State::Up))
        );
    }

    #[test]
    fn authentication_is_refused() {
        // A bit set with a Simple Password section (type 1, len 5, key id 1, "x"): length 29.
        let mut b = base().encode().to_vec();
        b[1] |= 0x04;
        b[3] = 29;
        b.extend_from_slice(&[1, 5, 1, b'x', 0]);
        assert_eq!(
            ControlPacket::decode(&b),
            Err(PacketError::AuthenticationNotSupported)
        );
        // With the A bit the minimum length is 26.
        let mut b = base().encode().to_vec();
        b[1] |= 0x04;
        b.extend_from_slice(&[1, 2]);
        assert_eq!(
            ControlPacket::decode(&b),
            Err(PacketError::BadLength {
                length: 24,
                datagram: 26
            })
        );
    }
}
