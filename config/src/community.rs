//! BGP community values: `A:B` (RFC 1997) and `large:A:B:C` (RFC 8092).

use crate::ErrorKind;

/// A community value, as defined by an alias under `bgp-communities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Community {
    /// RFC 1997 community, `A:B` packed as `A << 16 | B`.
    Standard(u32),
    /// RFC 8092 large community `large:A:B:C` as (global admin, data 1, data 2).
    Large(u32, u32, u32),
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Community::Standard(v) => write!(f, "{}:{}", v >> 16, v & 0xffff),
            Community::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

impl Community {
    /// Parse `A:B` or `large:A:B:C` (no alias lookup).
    pub fn parse(s: &str) -> Result<Community, ErrorKind> {
        if let Some(rest) = s.strip_prefix("large:") {
            let parts: Vec<&str> = rest.split(':').collect();
            let bad = || ErrorKind::InvalidLargeCommunity(s.to_string());
            if parts.len() != 3 {
                return Err(bad());
            }
            let n = |p: &str| -> Result<u32, ErrorKind> {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse().map_err(|_| bad())
            };
            return Ok(Community::Large(n(parts[0])?, n(parts[1])?, n(parts[2])?));
        }
        let bad = || ErrorKind::InvalidCommunity(s.to_string());
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let n = |p: &str| -> Result<u32, ErrorKind> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u16>().map(u32::from).map_err(|_| bad())
        };
        Ok(Community::Standard(n(a)? << 16 | n(b)?))
    }
}
