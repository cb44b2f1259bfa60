//! UPDATE (RFC 4271 §4.3): path attributes, NLRI, MP_REACH/MP_UNREACH
//! (RFC 4760), 4-octet AS handling (RFC 6793), and RFC 7606 error handling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::buf::{Counter, Reader, Sink};
use super::{
    AS_TRANS, Afi, AsSegment, DecodeError, EncodeError, Family, LargeCommunity, MpReach, MpUnreach,
    Negotiated, Origin, PathAttributes, RawAttribute, Update,
};

/// Path attribute type codes.
pub mod attr {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MED: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271, RFC 6793).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// IPv6 Address Specific Extended Community (RFC 5701).
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flag {
    /// Optional (1) or well-known (0).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial.
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length: the attribute length is 2 octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

const WELL_KNOWN: u8 = flag::TRANSITIVE;
const OPT_NON_TRANSITIVE: u8 = flag::OPTIONAL;
const OPT_TRANSITIVE: u8 = flag::OPTIONAL | flag::TRANSITIVE;

const SEG_SET: u8 = 1;
const SEG_SEQUENCE: u8 = 2;
const SEG_CONFED_SEQUENCE: u8 = 3;
const SEG_CONFED_SET: u8 = 4;

/// Octets one prefix of `prefix_len` bits takes in an NLRI or withdrawn
/// routes field: a length octet and the significant address octets.
pub fn nlri_wire_len(prefix_len: u8) -> usize {
    1 + usize::from(prefix_len).div_ceil(8)
}

/// The Optional and Transitive bits an attribute we know must carry.
fn expected_flags(type_code: u8) -> Option<u8> {
    use attr::*;
    Some(match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => WELL_KNOWN,
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => OPT_NON_TRANSITIVE,
        AGGREGATOR
        | COMMUNITIES
        | EXTENDED_COMMUNITIES
        | AS4_PATH
        | AS4_AGGREGATOR
        | IPV6_EXTENDED_COMMUNITIES
        | LARGE_COMMUNITY => OPT_TRANSITIVE,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Prefixes

fn write_prefix<S: Sink>(s: &mut S, len: u8, octets: &[u8]) {
    s.put_u8(len);
    let n = usize::from(len).div_ceil(8);
    if n == 0 {
        return;
    }
    let (head, last) = (&octets[..n - 1], octets[n - 1]);
    s.put_slice(head);
    let rem = len % 8;
    let mask = if rem == 0 { 0xff } else { 0xffu8 << (8 - rem) };
    s.put_u8(last & mask);
}

#[inline]
fn write_v4<S: Sink>(s: &mut S, net: &Ipv4Net) {
    write_prefix(s, net.prefix_len(), &net.addr().octets());
}

#[inline]
fn write_ip<S: Sink>(s: &mut S, net: &IpNet) {
    match net {
        IpNet::V4(n) => write_v4(s, n),
        IpNet::V6(n) => write_prefix(s, n.prefix_len(), &n.addr().octets()),
    }
}

fn read_prefix<const N: usize>(r: &mut Reader<'_>) -> Option<(u8, [u8; N])> {
    let len = r.u8()?;
    if usize::from(len) > N * 8 {
        return None;
    }
    let bytes = r.take(usize::from(len).div_ceil(8))?;
    let mut octets = [0u8; N];
    octets.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some((len, octets))
}

fn read_v4(r: &mut Reader<'_>) -> Option<Ipv4Net> {
    let (len, o) = read_prefix::<4>(r)?;
    Ipv4Net::new(Ipv4Addr::from(o), len).ok().map(|n| n.trunc())
}

fn read_v6(r: &mut Reader<'_>) -> Option<Ipv6Net> {
    let (len, o) = read_prefix::<16>(r)?;
    Ipv6Net::new(Ipv6Addr::from(o), len).ok().map(|n| n.trunc())
}

fn read_v4_list(field: &[u8]) -> Option<Vec<Ipv4Net>> {
    let mut r = Reader::new(field);
    // At least 1 octet per prefix, usually 5 for /32s.
    let mut out = Vec::with_capacity(field.len() / 5 + 1);
    while !r.is_empty() {
        out.push(read_v4(&mut r)?);
    }
    Some(out)
}

fn read_ip_list(field: &[u8], afi: Afi) -> Option<Vec<IpNet>> {
    let mut r = Reader::new(field);
    let mut out = Vec::with_capacity(field.len() / 5 + 1);
    while !r.is_empty() {
        out.push(match afi {
            Afi::Ipv4 => IpNet::V4(read_v4(&mut r)?),
            Afi::Ipv6 => IpNet::V6(read_v6(&mut r)?),
            Afi::Other(_) => return None,
        });
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// AS_PATH

fn seg_parts(seg: &AsSegment) -> (u8, &[u32]) {
    match seg {
        AsSegment::Set(v) => (SEG_SET, v),
        AsSegment::Sequence(v) => (SEG_SEQUENCE, v),
        AsSegment::ConfedSequence(v) => (SEG_CONFED_SEQUENCE, v),
        AsSegment::ConfedSet(v) => (SEG_CONFED_SET, v),
    }
}

fn is_confed(seg: &AsSegment) -> bool {
    matches!(seg, AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_))
}

/// Write AS_PATH (or AS4_PATH) segments. Segments longer than 255 ASNs are
/// split; empty segments are skipped (RFC 7606 §7.2 deems them malformed).
fn write_as_path<S: Sink>(s: &mut S, segs: &[AsSegment], four: bool, skip_confed: bool) {
    for seg in segs {
        if skip_confed && is_confed(seg) {
            continue;
        }
        let (t, asns) = seg_parts(seg);
        for chunk in asns.chunks(255) {
            s.put_u8(t);
            s.put_u8(chunk.len() as u8);
            for &asn in chunk {
                if four {
                    s.put_u32(asn);
                } else {
                    s.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                }
            }
        }
    }
}

/// Parse AS_PATH or AS4_PATH; `None` when malformed in the sense of RFC 7606 §7.2
/// (unknown segment type, zero segment length, overrun, single trailing octet).
fn read_as_path(value: &[u8], four: bool) -> Option<Vec<AsSegment>> {
    let mut r = Reader::new(value);
    let mut segs = Vec::new();
    while !r.is_empty() {
        let t = r.u8()?;
        let n = r.u8()?;
        if n == 0 {
            return None;
        }
        let mut asns = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            asns.push(if four { r.u32()? } else { u32::from(r.u16()?) });
        }
        segs.push(match t {
            SEG_SET => AsSegment::Set(asns),
            SEG_SEQUENCE => AsSegment::Sequence(asns),
            SEG_CONFED_SEQUENCE => AsSegment::ConfedSequence(asns),
            SEG_CONFED_SET => AsSegment::ConfedSet(asns),
            _ => return None,
        });
    }
    Some(segs)
}

/// Path length as RFC 6793 §4.2.3 counts it: an AS_SET counts 1, confederation segments 0.
fn path_count(segs: &[AsSegment]) -> usize {
    segs.iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
            _ => 0,
        })
        .sum()
}

/// RFC 6793 §4.2.3: rebuild the real path from AS_PATH and AS4_PATH received
/// from a 2-octet session. `None` means AS4_PATH must be ignored (it is longer
/// than AS_PATH).
fn merge_as4_path(as_path: &[AsSegment], as4: Vec<AsSegment>) -> Option<Vec<AsSegment>> {
    let (n2, n4) = (path_count(as_path), path_count(&as4));
    if n2 < n4 {
        return None;
    }
    // Take as many ASNs from the front of AS_PATH as it has more than AS4_PATH
    // (leading confederation segments come along: they count zero).
    let mut need = n2 - n4;
    let mut out: Vec<AsSegment> = Vec::new();
    for seg in as_path {
        match seg {
            AsSegment::ConfedSequence(_) | AsSegment::ConfedSet(_) => out.push(seg.clone()),
            _ if need == 0 => break,
            AsSegment::Sequence(v) => {
                let k = need.min(v.len());
                out.push(AsSegment::Sequence(v[..k].to_vec()));
                need -= k;
            }
            AsSegment::Set(_) => {
                out.push(seg.clone());
                need -= 1;
            }
        }
    }
    let mut rest = as4.into_iter().peekable();
    if let (Some(AsSegment::Sequence(tail)), Some(AsSegment::Sequence(head))) =
        (out.last_mut(), rest.peek())
        && tail.len() + head.len() <= 255
    {
        tail.extend_from_slice(head);
        rest.next();
    }
    out.extend(rest);
    Some(out)
}

// ---------------------------------------------------------------------------
// Encoding attributes

enum Item<'a> {
    Origin(Origin),
    AsPath {
        segs: &'a [AsSegment],
        four: bool,
        skip_confed: bool,
    },
    NextHop(Ipv4Addr),
    U32(u32),
    Empty,
    Communities(&'a [u32]),
    Large(&'a [LargeCommunity]),
    MpReach(&'a MpReach),
    MpUnreach(&'a MpUnreach),
    Raw(&'a [u8]),
}

fn check_family_prefix(family: Family, net: &IpNet) -> Result<(), EncodeError> {
    match (family.afi, net) {
        (Afi::Ipv4, IpNet::V4(_)) | (Afi::Ipv6, IpNet::V6(_)) | (Afi::Other(_), _) => Ok(()),
        _ => Err(EncodeError::Invalid("prefix does not match the MP family")),
    }
}

fn write_item<S: Sink>(item: &Item<'_>, s: &mut S) -> Result<(), EncodeError> {
    match item {
        Item::Origin(o) => s.put_u8(match o {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }),
        Item::AsPath {
            segs,
            four,
            skip_confed,
        } => write_as_path(s, segs, *four, *skip_confed),
        Item::NextHop(a) => s.put_slice(&a.octets()),
        Item::U32(v) => s.put_u32(*v),
        Item::Empty => {}
        Item::Communities(c) => c.iter().for_each(|&v| s.put_u32(v)),
        Item::Large(l) => {
            for c in l.iter() {
                s.put_u32(c.global_admin);
                s.put_u32(c.local1);
                s.put_u32(c.local2);
            }
        }
        Item::MpReach(m) => {
            s.put_u16(m.family.afi.to_u16());
            s.put_u8(m.family.safi.to_u8());
            let nh_len: usize = m
                .next_hops
                .iter()
                .map(|a| if a.is_ipv4() { 4 } else { 16 })
                .sum();
            if m.family.is_ip_unicast() && !valid_next_hop_len(m.family.afi, nh_len) {
                return Err(EncodeError::Invalid(
                    "MP_REACH_NLRI next hops must be 4 (IPv4), 16 or 32 (IPv6) bytes",
                ));
            }
            s.put_u8(nh_len as u8);
            for a in &m.next_hops {
                match a {
                    IpAddr::V4(a) => s.put_slice(&a.octets()),
                    IpAddr::V6(a) => s.put_slice(&a.octets()),
                }
            }
            s.put_u8(0); // Reserved
            for n in &m.nlri {
                check_family_prefix(m.family, n)?;
                write_ip(s, n);
            }
        }
        Item::MpUnreach(m) => {
            s.put_u16(m.family.afi.to_u16());
            s.put_u8(m.family.safi.to_u8());
            for n in &m.withdrawn {
                check_family_prefix(m.family, n)?;
                write_ip(s, n);
            }
        }
        Item::Raw(v) => s.put_slice(v),
    }
    Ok(())
}

/// Next hop lengths RFC 4760 / RFC 2545 / RFC 8950 allow for IP unicast.
fn valid_next_hop_len(afi: Afi, len: usize) -> bool {
    match afi {
        Afi::Ipv4 => matches!(len, 4 | 16 | 32),
        Afi::Ipv6 => matches!(len, 16 | 32),
        Afi::Other(_) => true,
    }
}

/// Write one attribute: flags (Extended Length set when the value exceeds
/// 255 bytes), type code, length, value.
fn write_attr<S: Sink>(s: &mut S, flags: u8, code: u8, item: &Item<'_>) -> Result<(), EncodeError> {
    let mut c = Counter::default();
    write_item(item, &mut c)?;
    let len = c.0;
    if len > usize::from(u16::MAX) {
        return Err(EncodeError::Invalid(
            "attribute value longer than 65535 bytes",
        ));
    }
    let flags = flags & !(flag::EXTENDED_LENGTH | 0x0f);
    if len > 255 {
        s.put_u8(flags | flag::EXTENDED_LENGTH);
        s.put_u8(code);
        s.put_u16(len as u16);
    } else {
        s.put_u8(flags);
        s.put_u8(code);
        s.put_u8(len as u8);
    }
    write_item(item, s)
}

/// Type codes the typed fields of [`PathAttributes`] produce; `other` entries
/// with these codes are not written (MP_REACH/MP_UNREACH only when the typed field is set).
fn typed_code(pa: &PathAttributes, code: u8) -> bool {
    use attr::*;
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | MED | LOCAL_PREF | ATOMIC_AGGREGATE | COMMUNITIES
        | AS4_PATH | LARGE_COMMUNITY => true,
        MP_REACH_NLRI => pa.mp_reach.is_some(),
        MP_UNREACH_NLRI => pa.mp_unreach.is_some(),
        _ => false,
    }
}

impl PathAttributes {
    fn typed_items<'a>(&'a self, neg: &Negotiated) -> [Option<(u8, u8, Item<'a>)>; 11] {
        use attr::*;
        let four = neg.four_octet_as;
        let needs_as4 = !four
            && self.as_path.as_ref().is_some_and(|p| {
                p.iter()
                    .filter(|s| !is_confed(s))
                    .any(|s| seg_parts(s).1.iter().any(|&a| a > 0xffff))
            });
        [
            self.origin.map(|o| (WELL_KNOWN, ORIGIN, Item::Origin(o))),
            self.as_path.as_ref().map(|p| {
                (
                    WELL_KNOWN,
                    AS_PATH,
                    Item::AsPath {
                        segs: p,
                        four,
                        skip_confed: false,
                    },
                )
            }),
            self.next_hop
                .map(|a| (WELL_KNOWN, NEXT_HOP, Item::NextHop(a))),
            self.med.map(|v| (OPT_NON_TRANSITIVE, MED, Item::U32(v))),
            self.local_pref
                .map(|v| (WELL_KNOWN, LOCAL_PREF, Item::U32(v))),
            self.atomic_aggregate
                .then_some((WELL_KNOWN, ATOMIC_AGGREGATE, Item::Empty)),
            (!self.communities.is_empty()).then(|| {
                (
                    OPT_TRANSITIVE,
                    COMMUNITIES,
                    Item::Communities(&self.communities),
                )
            }),
            self.mp_reach
                .as_ref()
                .map(|m| (OPT_NON_TRANSITIVE, MP_REACH_NLRI, Item::MpReach(m))),
            self.mp_unreach
                .as_ref()
                .map(|m| (OPT_NON_TRANSITIVE, MP_UNREACH_NLRI, Item::MpUnreach(m))),
            self.as_path.as_ref().filter(|_| needs_as4).map(|p| {
                (
                    OPT_TRANSITIVE,
                    AS4_PATH,
                    Item::AsPath {
                        segs: p,
                        four: true,
                        skip_confed: true,
                    },
                )
            }),
            (!self.large_communities.is_empty()).then(|| {
                (
                    OPT_TRANSITIVE,
                    LARGE_COMMUNITY,
                    Item::Large(&self.large_communities),
                )
            }),
        ]
    }

    /// Write all attributes in type-code order.
    pub(crate) fn write<S: Sink>(&self, neg: &Negotiated, s: &mut S) -> Result<(), EncodeError> {
        let typed = self.typed_items(neg);
        let mut others: Vec<&RawAttribute> = self
            .other
            .iter()
            .filter(|a| !typed_code(self, a.type_code))
            .collect();
        others.sort_by_key(|a| a.type_code);
        let mut others = others.into_iter().peekable();
        for (flags, code, item) in typed.iter().flatten() {
            while let Some(o) = others.next_if(|o| o.type_code < *code) {
                write_attr(s, o.flags, o.type_code, &Item::Raw(&o.value))?;
            }
            write_attr(s, *flags, *code, item)?;
        }
        for o in others {
            write_attr(s, o.flags, o.type_code, &Item::Raw(&o.value))?;
        }
        Ok(())
    }

    /// Exact size of the Path Attributes field these attributes encode to
    /// under `neg` (including AS4_PATH when the session needs it). For
    /// attributes that cannot be encoded the value is meaningless.
    pub fn encoded_len(&self, neg: &Negotiated) -> usize {
        let mut c = Counter::default();
        let _ = self.write(neg, &mut c);
        c.0
    }
}

// ---------------------------------------------------------------------------
// UPDATE

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for
    /// IPv4 unicast, otherwise an UPDATE whose only attribute is an empty MP_UNREACH_NLRI.
    pub fn end_of_rib(family: Family) -> Update {
        let mut u = Update::default();
        if family != Family::IPV4_UNICAST {
            u.attributes.mp_unreach = Some(MpUnreach {
                family,
                withdrawn: Vec::new(),
            });
        }
        u
    }

    /// Which family this UPDATE marks the End-of-RIB of, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        let mut rest = self.attributes.clone();
        match rest.mp_unreach.take() {
            None if rest == PathAttributes::default() => Some(Family::IPV4_UNICAST),
            Some(m) if m.withdrawn.is_empty() && rest == PathAttributes::default() => {
                Some(m.family)
            }
            _ => None,
        }
    }

    /// Whether the UPDATE announces anything (classic NLRI or MP_REACH_NLRI).
    pub fn has_nlri(&self) -> bool {
        !self.nlri.is_empty() || self.attributes.mp_reach.is_some()
    }

    pub(crate) fn write<S: Sink>(&self, neg: &Negotiated, s: &mut S) -> Result<(), EncodeError> {
        let at = s.position();
        s.put_u16(0);
        for w in &self.withdrawn {
            write_v4(s, w);
        }
        let wlen = s.position() - at - 2;
        s.patch_u16(at, u16::try_from(wlen).unwrap_or(u16::MAX));
        let at = s.position();
        s.put_u16(0);
        self.attributes.write(neg, s)?;
        let alen = s.position() - at - 2;
        s.patch_u16(at, u16::try_from(alen).unwrap_or(u16::MAX));
        for n in &self.nlri {
            write_v4(s, n);
        }
        Ok(())
    }
}

/// What RFC 7606 says to do with a malformed attribute.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// §2 "treat-as-withdraw".
    Withdraw,
    /// §2 "attribute discard".
    Discard,
    /// §2 "session reset".
    Reset,
}

struct Ctx {
    update: Update,
    problems: Vec<DecodeError>,
}

impl Ctx {
    fn fail(&mut self, action: Action, type_code: u8, err: DecodeError) -> Result<(), DecodeError> {
        match action {
            Action::Reset => return Err(err),
            Action::Withdraw => self.update.treat_as_withdraw = true,
            Action::Discard => self.update.discarded.push(type_code),
        }
        self.problems.push(err);
        Ok(())
    }
}

/// Is `a` usable as an IPv4 NEXT_HOP (RFC 4271 §6.3 "syntactically incorrect" otherwise)?
fn valid_next_hop(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.octets()[0] >= 240)
}

fn decode_mp_reach(value: &[u8]) -> Option<Option<MpReach>> {
    let mut r = Reader::new(value);
    let family = Family::from_wire(r.u16()?, r.u8()?);
    let nh_len = r.u8()?;
    let nh = r.take(usize::from(nh_len))?;
    r.u8()?; // Reserved
    if !family.is_ip_unicast() {
        return Some(None);
    }
    if !valid_next_hop_len(family.afi, nh.len()) {
        return None;
    }
    let next_hops = match nh.len() {
        4 => vec![IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(nh).ok()?))],
        _ => nh
            .chunks(16)
            .map(|c| <[u8; 16]>::try_from(c).ok().map(|o| IpAddr::V6(o.into())))
            .collect::<Option<Vec<_>>>()?,
    };
    let nlri = read_ip_list(r.rest(), family.afi)?;
    Some(Some(MpReach {
        family,
        next_hops,
        nlri,
    }))
}

fn decode_mp_unreach(value: &[u8]) -> Option<Option<MpUnreach>> {
    let mut r = Reader::new(value);
    let family = Family::from_wire(r.u16()?, r.u8()?);
    if !family.is_ip_unicast() {
        return Some(None);
    }
    let withdrawn = read_ip_list(r.rest(), family.afi)?;
    Some(Some(MpUnreach { family, withdrawn }))
}

/// Decode an UPDATE body (after the header). Returns the UPDATE and the
/// attribute errors that RFC 7606 handled without a session reset.
pub(crate) fn decode_update(
    body: &[u8],
    neg: &Negotiated,
) -> Result<(Update, Vec<DecodeError>), DecodeError> {
    use attr::*;
    // RFC 4271 §6.3 (unchanged by RFC 7606 §4): the length fields must add up.
    let mut r = Reader::new(body);
    let wlen = r
        .u16()
        .ok_or(DecodeError::MalformedAttributeList("truncated UPDATE"))?;
    let wfield = r
        .take(usize::from(wlen))
        .ok_or(DecodeError::MalformedAttributeList(
            "withdrawn routes length overruns the message",
        ))?;
    let alen = r
        .u16()
        .ok_or(DecodeError::MalformedAttributeList("truncated UPDATE"))?;
    let afield = r
        .take(usize::from(alen))
        .ok_or(DecodeError::MalformedAttributeList(
            "total path attribute length overruns the message",
        ))?;
    // RFC 7606 §5.3: NLRI that cannot be parsed means session reset.
    let withdrawn = read_v4_list(wfield).ok_or(DecodeError::InvalidNetworkField)?;
    let nlri = read_v4_list(r.rest()).ok_or(DecodeError::InvalidNetworkField)?;

    let mut cx = Ctx {
        update: Update {
            withdrawn,
            nlri,
            ..Update::default()
        },
        problems: Vec::new(),
    };
    let four = neg.four_octet_as;
    let mut seen = [false; 256];
    let mut as4_path: Option<Vec<AsSegment>> = None;
    let mut aggregator_as: Option<u32> = None;
    let mut has_as4_aggregator = false;

    let mut ar = Reader::new(afield);
    while !ar.is_empty() {
        let start = ar.rest();
        // RFC 7606 §4: fewer than 3 (4 with Extended Length) octets left, or
        // an attribute overrunning the field: treat-as-withdraw, and the NLRI
        // is found through Total Path Attribute Length (done above).
        let header = (|| {
            let flags = ar.u8()?;
            let code = ar.u8()?;
            let len = if flags & flag::EXTENDED_LENGTH != 0 {
                usize::from(ar.u16()?)
            } else {
                usize::from(ar.u8()?)
            };
            Some((flags, code, len))
        })();
        let Some((flags, code, len)) = header else {
            cx.fail(
                Action::Withdraw,
                0,
                DecodeError::MalformedAttributeList("truncated attribute header"),
            )?;
            break;
        };
        let Some(value) = ar.take(len) else {
            let err = DecodeError::AttributeLength(start.to_vec());
            // RFC 7606 §3 (h): treat-as-withdraw needs MP_REACH_NLRI /
            // MP_UNREACH_NLRI parsed; when they are the overrunning attribute we cannot.
            let action = if matches!(code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                Action::Reset
            } else {
                Action::Withdraw
            };
            cx.fail(action, code, err)?;
            break;
        };
        let raw = start.get(..start.len() - ar.remaining()).unwrap_or(start);

        // RFC 7606 §3 (g): a second MP_REACH/MP_UNREACH is a session reset
        // (Malformed Attribute List); other repeats are discarded.
        if seen[usize::from(code)] {
            if matches!(code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                return Err(DecodeError::MalformedAttributeList(
                    "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                ));
            }
            cx.update.discarded.push(code);
            continue;
        }
        seen[usize::from(code)] = true;

        match expected_flags(code) {
            // RFC 4271 §6.3: unrecognized well-known attribute (RFC 7606 keeps the reset).
            None if flags & flag::OPTIONAL == 0 => {
                return Err(DecodeError::UnrecognizedWellKnown(raw.to_vec()));
            }
            None => {}
            Some(want) if flags & (flag::OPTIONAL | flag::TRANSITIVE) != want => {
                // RFC 7606 §3 (c): flag conflict → treat-as-withdraw unless the
                // attribute's own spec says otherwise (RFC 6793 §6: AS4_* → discard).
                let err = DecodeError::AttributeFlags(raw.to_vec());
                if matches!(code, AS4_PATH | AS4_AGGREGATOR) {
                    cx.fail(Action::Discard, code, err)?;
                    continue;
                }
                cx.fail(Action::Withdraw, code, err)?;
                // MP attributes are still parsed so the caller knows what is withdrawn.
                if !matches!(code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                    continue;
                }
            }
            Some(_) => {}
        }

        let len_err = || DecodeError::AttributeLength(raw.to_vec());
        let pa = &mut cx.update.attributes;
        match code {
            // RFC 7606 §7.1: bad ORIGIN length or value → treat-as-withdraw.
            ORIGIN => match value {
                [0] => pa.origin = Some(Origin::Igp),
                [1] => pa.origin = Some(Origin::Egp),
                [2] => pa.origin = Some(Origin::Incomplete),
                [_] => cx.fail(
                    Action::Withdraw,
                    code,
                    DecodeError::InvalidOrigin(raw.to_vec()),
                )?,
                _ => cx.fail(Action::Withdraw, code, len_err())?,
            },
            // RFC 7606 §7.2: malformed AS_PATH → treat-as-withdraw.
            AS_PATH => match read_as_path(value, four) {
                Some(p) => pa.as_path = Some(p),
                None => cx.fail(Action::Withdraw, code, DecodeError::MalformedAsPath)?,
            },
            // RFC 7606 §7.3: NEXT_HOP length other than 4 → treat-as-withdraw;
            // RFC 4271 §6.3 invalid next hop, downgraded the same way.
            NEXT_HOP => match <[u8; 4]>::try_from(value) {
                Ok(o) if valid_next_hop(o.into()) => pa.next_hop = Some(o.into()),
                Ok(_) => cx.fail(
                    Action::Withdraw,
                    code,
                    DecodeError::InvalidNextHop(raw.to_vec()),
                )?,
                Err(_) => cx.fail(Action::Withdraw, code, len_err())?,
            },
            // RFC 7606 §7.4 and §7.5: length other than 4 → treat-as-withdraw.
            MED | LOCAL_PREF => match <[u8; 4]>::try_from(value) {
                Ok(o) if code == MED => pa.med = Some(u32::from_be_bytes(o)),
                Ok(o) => pa.local_pref = Some(u32::from_be_bytes(o)),
                Err(_) => cx.fail(Action::Withdraw, code, len_err())?,
            },
            // RFC 7606 §7.6: length other than 0 → attribute discard.
            ATOMIC_AGGREGATE => {
                if value.is_empty() {
                    pa.atomic_aggregate = true;
                } else {
                    cx.fail(Action::Discard, code, len_err())?;
                }
            }
            // RFC 7606 §7.7: AGGREGATOR of the wrong length → attribute discard.
            AGGREGATOR => {
                if value.len() == if four { 8 } else { 6 } {
                    aggregator_as = Reader::new(value).u16().map(u32::from);
                    keep_raw(pa, flags, code, value);
                } else {
                    cx.fail(Action::Discard, code, len_err())?;
                }
            }
            // RFC 7606 §7.8: COMMUNITIES not a non-zero multiple of 4 → treat-as-withdraw.
            COMMUNITIES => {
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    cx.fail(Action::Withdraw, code, len_err())?;
                } else {
                    pa.communities = value
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            // RFC 8092 §6: LARGE_COMMUNITY not a non-zero multiple of 12 → treat-as-withdraw.
            LARGE_COMMUNITY => {
                if value.is_empty() || !value.len().is_multiple_of(12) {
                    cx.fail(Action::Withdraw, code, len_err())?;
                } else {
                    pa.large_communities = value
                        .chunks_exact(12)
                        .map(|c| {
                            let w =
                                |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                            LargeCommunity {
                                global_admin: w(0),
                                local1: w(4),
                                local2: w(8),
                            }
                        })
                        .collect();
                }
            }
            // RFC 7606 §7.9: ORIGINATOR_ID length other than 4 → treat-as-withdraw.
            ORIGINATOR_ID => {
                if value.len() == 4 {
                    keep_raw(pa, flags, code, value);
                } else {
                    cx.fail(Action::Withdraw, code, len_err())?;
                }
            }
            // RFC 7606 §7.10 (CLUSTER_LIST, 4), §7.14 (extended communities, 8),
            // §7.15 (IPv6 address specific extended communities, 20): length not a
            // non-zero multiple → treat-as-withdraw.
            CLUSTER_LIST | EXTENDED_COMMUNITIES | IPV6_EXTENDED_COMMUNITIES => {
                let unit = match code {
                    CLUSTER_LIST => 4,
                    EXTENDED_COMMUNITIES => 8,
                    _ => 20,
                };
                if value.is_empty() || !value.len().is_multiple_of(unit) {
                    cx.fail(Action::Withdraw, code, len_err())?;
                } else {
                    keep_raw(pa, flags, code, value);
                }
            }
            // RFC 7606 §7.11 / RFC 4760 §7: a malformed MP_REACH_NLRI (next hop
            // length, NLRI) cannot be used for treat-as-withdraw: session reset
            // with Optional Attribute Error.
            MP_REACH_NLRI => match decode_mp_reach(value) {
                Some(Some(m)) => pa.mp_reach = Some(m),
                Some(None) => keep_raw(pa, flags, code, value),
                None => return Err(DecodeError::OptionalAttribute(raw.to_vec())),
            },
            // RFC 7606 §7.12 / §5.3: same for MP_UNREACH_NLRI.
            MP_UNREACH_NLRI => match decode_mp_unreach(value) {
                Some(Some(m)) => pa.mp_unreach = Some(m),
                Some(None) => keep_raw(pa, flags, code, value),
                None => return Err(DecodeError::OptionalAttribute(raw.to_vec())),
            },
            // RFC 6793 §4.1: a NEW speaker drops AS4_PATH/AS4_AGGREGATOR from a
            // NEW speaker. From an OLD speaker, §6: malformed → attribute discard.
            AS4_PATH if four => {}
            AS4_PATH => match read_as_path(value, true) {
                Some(p) if !p.iter().any(is_confed) => as4_path = Some(p),
                _ => cx.fail(Action::Discard, code, DecodeError::MalformedAsPath)?,
            },
            AS4_AGGREGATOR if four => {}
            AS4_AGGREGATOR => {
                if value.len() == 8 {
                    has_as4_aggregator = true;
                    keep_raw(pa, flags, code, value);
                } else {
                    cx.fail(Action::Discard, code, len_err())?;
                }
            }
            _ => keep_raw(pa, flags, code, value),
        }
    }

    // RFC 6793 §4.2.3: merge AS4_PATH into AS_PATH for a 2-octet session,
    // unless AGGREGATOR carries a real ASN while AS4_AGGREGATOR is present
    // (then both AS4 attributes are ignored).
    let aggregator_says_ignore =
        has_as4_aggregator && aggregator_as.is_some_and(|a| a != u32::from(AS_TRANS));
    if aggregator_says_ignore {
        cx.update
            .attributes
            .other
            .retain(|a| a.type_code != AS4_AGGREGATOR);
    } else if let (Some(as4), Some(path)) = (as4_path, cx.update.attributes.as_path.as_ref())
        && let Some(merged) = merge_as4_path(path, as4)
    {
        cx.update.attributes.as_path = Some(merged);
    }

    // RFC 7606 §3 (d): missing well-known mandatory attributes → treat-as-withdraw,
    // only when the UPDATE announces something. NEXT_HOP is mandatory only for
    // classic IPv4 NLRI (RFC 4760 §3).
    let mp_nlri = seen[usize::from(MP_REACH_NLRI)];
    let classic = !cx.update.nlri.is_empty();
    if classic || mp_nlri {
        for code in [ORIGIN, AS_PATH, NEXT_HOP] {
            if code == NEXT_HOP && !classic {
                continue;
            }
            if !seen[usize::from(code)] {
                cx.fail(Action::Withdraw, code, DecodeError::MissingWellKnown(code))?;
            }
        }
    }
    Ok((cx.update, cx.problems))
}

/// Keep an attribute we do not interpret. The Extended Length bit and the
/// unused low bits are cleared: the encoder recomputes Extended Length.
fn keep_raw(pa: &mut PathAttributes, flags: u8, code: u8, value: &[u8]) {
    pa.other.push(RawAttribute {
        flags: flags & (flag::OPTIONAL | flag::TRANSITIVE | flag::PARTIAL),
        type_code: code,
        value: value.to_vec(),
    });
}
