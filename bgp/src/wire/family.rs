//! Numeric AFI/SAFI values.

use super::{Afi, Family, Safi};

impl Afi {
    /// The IANA AFI number (1 IPv4, 2 IPv6).
    pub fn to_u16(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Other(v) => v,
        }
    }

    /// From the IANA AFI number; values other than 1 and 2 become [`Afi::Other`].
    pub fn from_u16(v: u16) -> Afi {
        match v {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            v => Afi::Other(v),
        }
    }
}

impl Safi {
    /// The IANA SAFI number (1 unicast).
    pub fn to_u8(self) -> u8 {
        match self {
            Safi::Unicast => 1,
            Safi::Other(v) => v,
        }
    }

    /// From the IANA SAFI number; values other than 1 become [`Safi::Other`].
    pub fn from_u8(v: u8) -> Safi {
        match v {
            1 => Safi::Unicast,
            v => Safi::Other(v),
        }
    }
}

impl Family {
    /// Build a family from wire numbers.
    pub fn from_wire(afi: u16, safi: u8) -> Family {
        Family {
            afi: Afi::from_u16(afi),
            safi: Safi::from_u8(safi),
        }
    }

    /// IPv4 or IPv6 unicast: the families whose NLRI this codec parses into prefixes.
    pub fn is_ip_unicast(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.afi, self.safi) {
            (Afi::Ipv4, Safi::Unicast) => f.write_str("ipv4-unicast"),
            (Afi::Ipv6, Safi::Unicast) => f.write_str("ipv6-unicast"),
            (a, s) => write!(f, "afi {} safi {}", a.to_u16(), s.to_u8()),
        }
    }
}
