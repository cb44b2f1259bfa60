//! Ethernet addresses and the 14-byte Ethernet II header shared by both codecs.

use std::fmt;

/// Length of an Ethernet II header (destination, source, EtherType).
pub const HEADER_LEN: usize = 14;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: Mac = Mac([0; 6]);

    /// Group (multicast or broadcast) address: the I/G bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Reads six bytes at the start of `b` (which must hold at least six).
    pub(crate) fn read(b: &[u8]) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        Mac(m)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Writes an Ethernet II header into `out[..14]`.
pub(crate) fn write_header(out: &mut [u8], dst: Mac, src: Mac, ethertype: u16) {
    out[0..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_multicast_bit() {
        assert_eq!(
            Mac([0x02, 0, 0, 0, 0, 0x0b]).to_string(),
            "02:00:00:00:00:0b"
        );
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac([0x33, 0x33, 0xff, 0, 0, 0x10]).is_multicast());
        assert!(!Mac([0x02, 0, 0, 0, 0, 0x0b]).is_multicast());
    }
}
