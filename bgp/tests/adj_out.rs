//! Adj-RIB-Out: diffing, grouping and packing, checked against the real encoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::BytesMut;
use ferrolb_bgp::adj_out::{AdjOut, OutContext, RouteAttrs, Routes};
use ferrolb_bgp::wire::{
    AsSegment, Family, LargeCommunity, Message, Negotiated, Origin, PathAttributes, Update,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

fn neg(extended: bool, families: &[Family]) -> Negotiated {
    Negotiated {
        four_octet_as: true,
        extended_message: extended,
        families: families.to_vec(),
        route_refresh: true,
        enhanced_route_refresh: false,
    }
}

fn ctx(ibgp: bool, extended: bool) -> OutContext {
    OutContext {
        local_as: 64522,
        ibgp,
        local_v4: Some(Ipv4Addr::new(198, 18, 0, 2)),
        local_v6: Some("2001:db8::2".parse().unwrap()),
        negotiated: neg(extended, &[Family::IPV4_UNICAST, Family::IPV6_UNICAST]),
    }
}

fn v4_hosts(n: u32) -> impl Iterator<Item = IpNet> {
    (0..n).map(|i| {
        IpNet::V4(
            Ipv4Net::new(
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i),
                32,
            )
            .unwrap(),
        )
    })
}

fn v6_hosts(n: u32) -> impl Iterator<Item = IpNet> {
    (0..n).map(|i| {
        let base = u128::from("2001:db8:1::".parse::<Ipv6Addr>().unwrap());
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base + u128::from(i)), 128).unwrap())
    })
}

fn routes(prefixes: impl Iterator<Item = IpNet>, attrs: &RouteAttrs) -> Routes {
    let shared = Arc::new(attrs.clone());
    prefixes.map(|p| (p, shared.clone())).collect()
}

/// Prefixes an UPDATE announces (classic NLRI and MP_REACH).
fn announced(u: &Update) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = u.nlri.iter().copied().map(IpNet::V4).collect();
    if let Some(mp) = &u.attributes.mp_reach {
        v.extend(mp.nlri.iter().copied());
    }
    v
}

/// Prefixes an UPDATE withdraws (classic field and MP_UNREACH).
fn withdrawn(u: &Update) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = u.withdrawn.iter().copied().map(IpNet::V4).collect();
    if let Some(mp) = &u.attributes.mp_unreach {
        v.extend(mp.withdrawn.iter().copied());
    }
    v
}

/// Attributes without the NLRI they carry.
fn attrs_only(u: &Update) -> PathAttributes {
    let mut a = u.attributes.clone();
    if let Some(mp) = a.mp_reach.as_mut() {
        mp.nlri.clear();
    }
    if let Some(mp) = a.mp_unreach.as_mut() {
        mp.withdrawn.clear();
    }
    a
}

/// `u` with one more prefix of the same kind (announced or withdrawn, same family).
fn with_one_more(u: &Update, p: IpNet, withdraw: bool) -> Update {
    let mut u = u.clone();
    match (p, withdraw) {
        (IpNet::V4(p), false) => u.nlri.push(p),
        (IpNet::V4(p), true) => u.withdrawn.push(p),
        (IpNet::V6(_), false) => u.attributes.mp_reach.as_mut().unwrap().nlri.push(p),
        (IpNet::V6(_), true) => u.attributes.mp_unreach.as_mut().unwrap().withdrawn.push(p),
    }
    u
}

/// Every UPDATE encodes within the limit and decodes back to itself; each
/// UPDATE that is followed by one of the same kind and attributes is full
/// (the next prefix would not have fit).
fn check_packing(updates: &[Update], n: &Negotiated) {
    let max = n.max_message_len();
    for (i, u) in updates.iter().enumerate() {
        let msg = Message::Update(u.clone());
        let mut buf = BytesMut::new();
        msg.encode(n, &mut buf)
            .unwrap_or_else(|e| panic!("UPDATE {i} does not encode: {e:?}"));
        assert!(
            buf.len() <= max,
            "UPDATE {i} is {} > {max} bytes",
            buf.len()
        );
        assert_eq!(buf.len(), msg.encoded_len(n));
        assert_eq!(
            Message::decode(&buf, n).unwrap(),
            msg,
            "UPDATE {i} round trip"
        );
        let Some(next) = updates.get(i + 1) else {
            continue;
        };
        let (w, nw) = (withdrawn(u), withdrawn(next));
        let na = announced(next);
        let same_kind = if !w.is_empty() {
            !nw.is_empty() && w[0].addr().is_ipv4() == nw[0].addr().is_ipv4() && na.is_empty()
        } else {
            !na.is_empty() && nw.is_empty() && attrs_only(u) == attrs_only(next)
        };
        if same_kind {
            let p = if w.is_empty() { na[0] } else { nw[0] };
            let bigger = Message::Update(with_one_more(u, p, !w.is_empty()));
            assert!(
                bigger.encoded_len(n) > max,
                "UPDATE {i} is not full: one more prefix gives {} <= {max}",
                bigger.encoded_len(n)
            );
        }
    }
}

fn all_announced(updates: &[Update]) -> Vec<IpNet> {
    updates.iter().flat_map(announced).collect()
}

fn all_withdrawn(updates: &[Update]) -> Vec<IpNet> {
    updates.iter().flat_map(withdrawn).collect()
}

#[test]
fn packs_810_host_routes_per_4096_byte_update() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(100_000), &RouteAttrs::default()));
    let ups = a.updates(&c);
    check_packing(&ups, &c.negotiated);
    // 19 header + 2 + 2 + ORIGIN 4 + AS_PATH 9 + NEXT_HOP 7 = 43; (4096 - 43) / 5 = 810.
    assert_eq!(ups[0].nlri.len(), 810);
    assert_eq!(ups.len(), 100_000usize.div_ceil(810));
    assert_eq!(all_announced(&ups), v4_hosts(100_000).collect::<Vec<_>>());
    assert_eq!(a.announced_count(), 100_000);
    // Nothing changed: nothing to send.
    assert!(a.updates(&c).is_empty());
}

#[test]
fn packs_to_65535_with_extended_messages() {
    let c = ctx(false, true);
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(50_000), &RouteAttrs::default()));
    let ups = a.updates(&c);
    check_packing(&ups, &c.negotiated);
    assert_eq!(ups[0].nlri.len(), (65535 - 43) / 5);
    assert_eq!(all_announced(&ups).len(), 50_000);
}

#[test]
fn ipv6_goes_in_mp_reach_with_the_global_next_hop() {
    for extended in [false, true] {
        let c = ctx(false, extended);
        let mut a = AdjOut::new();
        a.set_desired(routes(v6_hosts(20_000), &RouteAttrs::default()));
        let ups = a.updates(&c);
        check_packing(&ups, &c.negotiated);
        let mp = ups[0].attributes.mp_reach.as_ref().unwrap();
        assert_eq!(mp.family, Family::IPV6_UNICAST);
        assert_eq!(
            mp.next_hops,
            vec![IpAddr::V6("2001:db8::2".parse().unwrap())]
        );
        assert!(ups[0].nlri.is_empty() && ups[0].attributes.next_hop.is_none());
        assert_eq!(all_announced(&ups), v6_hosts(20_000).collect::<Vec<_>>());
    }
}

#[test]
fn small_tables_cross_the_extended_length_boundary_exactly() {
    // MP_REACH value = 21 + 17 per /128: 13 prefixes = 242 (1-octet length), 14 = 259 (2-octet).
    let c = ctx(false, false);
    for n in [1, 13, 14, 15, 240, 241, 242] {
        let mut a = AdjOut::new();
        a.set_desired(routes(v6_hosts(n), &RouteAttrs::default()));
        let ups = a.updates(&c);
        check_packing(&ups, &c.negotiated);
        assert_eq!(all_announced(&ups).len(), n as usize);
        a.set_desired(Routes::new());
        let w = a.updates(&c);
        check_packing(&w, &c.negotiated);
        assert_eq!(all_withdrawn(&w).len(), n as usize);
    }
}

#[test]
fn groups_by_attribute_set_with_communities_normalised() {
    let c = ctx(false, false);
    let x = RouteAttrs {
        communities: vec![64512 << 16 | 2, 64512 << 16 | 1],
        ..RouteAttrs::default()
    };
    let x_reordered = RouteAttrs {
        communities: vec![64512 << 16 | 1, 64512 << 16 | 2, 64512 << 16 | 1],
        ..RouteAttrs::default()
    };
    let y = RouteAttrs {
        med: Some(10),
        large_communities: vec![LargeCommunity {
            global_admin: 64522,
            local1: 1,
            local2: 2,
        }],
        ..RouteAttrs::default()
    };
    let mut desired = Routes::new();
    for (i, p) in v4_hosts(3000).enumerate() {
        let attrs = match i % 3 {
            0 => x.clone(),
            1 => x_reordered.clone(),
            _ => y.clone(),
        };
        desired.insert(p, attrs.into());
    }
    let mut a = AdjOut::new();
    a.set_desired(desired);
    let ups = a.updates(&c);
    check_packing(&ups, &c.negotiated);
    let mut sets: Vec<PathAttributes> = ups.iter().map(attrs_only).collect();
    sets.dedup();
    assert_eq!(
        sets.len(),
        2,
        "two attribute sets, each in consecutive UPDATEs"
    );
    assert_eq!(sets[0].communities, vec![64512 << 16 | 1, 64512 << 16 | 2]);
    assert_eq!(sets[1].med, Some(10));
    let first: usize = ups
        .iter()
        .filter(|u| u.attributes.med.is_none())
        .map(|u| u.nlri.len())
        .sum();
    assert_eq!(first, 2000);
    assert_eq!(all_announced(&ups).len(), 3000);
}

#[test]
fn withdrawals_come_first_and_are_packed() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    let mut desired = routes(v4_hosts(5000), &RouteAttrs::default());
    desired.extend(routes(v6_hosts(3000), &RouteAttrs::default()));
    a.set_desired(desired);
    a.updates(&c);
    assert_eq!(a.announced_count(), 8000);

    // Keep the odd ones, add 100 new ones.
    let mut desired = Routes::new();
    for p in v4_hosts(5100).skip(1).step_by(2) {
        desired.insert(p, RouteAttrs::default().into());
    }
    for p in v6_hosts(3000).skip(1).step_by(2) {
        desired.insert(p, RouteAttrs::default().into());
    }
    a.set_desired(desired);
    let ups = a.updates(&c);
    check_packing(&ups, &c.negotiated);
    let w = all_withdrawn(&ups);
    assert_eq!(w.len(), 2500 + 1500);
    assert!(w.iter().all(|p| match p {
        IpNet::V4(p) => u32::from(p.addr()) % 2 == 0,
        IpNet::V6(p) => u128::from(p.addr()) % 2 == 0,
    }));
    // Withdrawals before announcements; IPv4 withdrawn in the classic field.
    let first_announce = ups.iter().position(|u| !announced(u).is_empty()).unwrap();
    assert!(
        ups[..first_announce]
            .iter()
            .all(|u| announced(u).is_empty())
    );
    assert!(
        ups[first_announce..]
            .iter()
            .all(|u| withdrawn(u).is_empty())
    );
    assert_eq!(ups[0].withdrawn.len(), (4096 - 23) / 5);
    assert!(ups[0].attributes == PathAttributes::default());
    assert_eq!(all_announced(&ups).len(), 50);
    assert_eq!(a.announced_count(), 2550 + 1500);
}

#[test]
fn attribute_change_is_an_implicit_withdraw() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(10), &RouteAttrs::default()));
    a.updates(&c);
    let changed = RouteAttrs {
        med: Some(5),
        ..RouteAttrs::default()
    };
    let mut desired = routes(v4_hosts(10), &RouteAttrs::default());
    desired.insert("10.0.0.3/32".parse().unwrap(), changed.clone().into());
    a.set_desired(desired);
    let ups = a.updates(&c);
    assert_eq!(ups.len(), 1);
    assert!(ups[0].withdrawn.is_empty());
    assert_eq!(ups[0].nlri, vec!["10.0.0.3/32".parse::<Ipv4Net>().unwrap()]);
    assert_eq!(ups[0].attributes.med, Some(5));
    assert_eq!(a.announced_count(), 10);

    // An explicit next hop equal to the resolved default is no change.
    let mut desired = routes(v4_hosts(10), &RouteAttrs::default());
    desired.insert("10.0.0.3/32".parse().unwrap(), changed.into());
    desired.insert(
        "10.0.0.4/32".parse().unwrap(),
        Arc::new(RouteAttrs {
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))),
            ..RouteAttrs::default()
        }),
    );
    a.set_desired(desired);
    assert!(a.updates(&c).is_empty());
}

#[test]
fn reset_sends_the_full_table_again() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(2000), &RouteAttrs::default()));
    let first = a.updates(&c);
    assert!(a.updates(&c).is_empty());
    a.reset();
    assert_eq!(a.announced_count(), 0);
    assert_eq!(a.updates(&c), first);
    assert_eq!(a.announced_count(), 2000);
}

#[test]
fn ebgp_and_ibgp_attributes() {
    let attrs = RouteAttrs {
        origin: Origin::Incomplete,
        med: Some(7),
        communities: vec![0xFFFF_FF01],
        ..RouteAttrs::default()
    };
    let p: IpNet = "172.17.254.1/32".parse().unwrap();

    let mut a = AdjOut::new();
    a.set_desired(routes([p].into_iter(), &attrs));
    let e = a.updates(&ctx(false, false));
    let ea = &e[0].attributes;
    assert_eq!(ea.origin, Some(Origin::Incomplete));
    assert_eq!(ea.as_path, Some(vec![AsSegment::Sequence(vec![64522])]));
    assert_eq!(ea.next_hop, Some(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(ea.med, Some(7));
    assert_eq!(ea.local_pref, None, "no LOCAL_PREF on eBGP");
    assert_eq!(ea.communities, vec![0xFFFF_FF01]);

    let mut a = AdjOut::new();
    a.set_desired(routes([p].into_iter(), &attrs));
    let i = a.updates(&ctx(true, false));
    let ia = &i[0].attributes;
    assert_eq!(ia.as_path, Some(vec![]), "empty AS_PATH on iBGP");
    assert_eq!(ia.local_pref, Some(100), "default LOCAL_PREF on iBGP");

    let mut a = AdjOut::new();
    a.set_desired(routes(
        [p].into_iter(),
        &RouteAttrs {
            local_pref: Some(250),
            ..attrs
        },
    ));
    assert_eq!(
        a.updates(&ctx(true, false))[0].attributes.local_pref,
        Some(250)
    );
}

#[test]
fn four_octet_asn_on_a_two_octet_session_still_fits() {
    let mut c = ctx(false, false);
    c.local_as = 4_200_000_000;
    c.negotiated.four_octet_as = false;
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(5000), &RouteAttrs::default()));
    let ups = a.updates(&c);
    check_packing(&ups, &c.negotiated);
    assert_eq!(all_announced(&ups).len(), 5000);
}

#[test]
fn families_not_negotiated_are_not_sent() {
    let mut c = ctx(false, false);
    c.negotiated.families = vec![Family::IPV4_UNICAST];
    let mut a = AdjOut::new();
    let mut desired = routes(v4_hosts(10), &RouteAttrs::default());
    desired.extend(routes(v6_hosts(10), &RouteAttrs::default()));
    a.set_desired(desired);
    let ups = a.updates(&c);
    assert!(ups.iter().all(|u| u.attributes.mp_reach.is_none()));
    assert_eq!(all_announced(&ups).len(), 10);
    assert_eq!(a.announced_count(), 10);
    assert_eq!(
        AdjOut::end_of_rib(&c),
        vec![Update::end_of_rib(Family::IPV4_UNICAST)]
    );

    // The next session negotiates both.
    a.reset();
    let c = ctx(false, false);
    assert_eq!(all_announced(&a.updates(&c)).len(), 20);
    assert_eq!(
        AdjOut::end_of_rib(&c),
        vec![
            Update::end_of_rib(Family::IPV4_UNICAST),
            Update::end_of_rib(Family::IPV6_UNICAST)
        ]
    );
}

#[test]
fn routes_without_a_next_hop_of_their_family_are_skipped_or_withdrawn() {
    let mut c = ctx(false, false);
    let mut a = AdjOut::new();
    let mut desired = routes(v4_hosts(3), &RouteAttrs::default());
    desired.extend(routes(v6_hosts(3), &RouteAttrs::default()));
    // An IPv6 route with an IPv4 next hop can never be sent.
    desired.insert(
        "2001:db8:9::/48".parse().unwrap(),
        Arc::new(RouteAttrs {
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            ..RouteAttrs::default()
        }),
    );
    a.set_desired(desired);
    assert_eq!(all_announced(&a.updates(&c)).len(), 6);
    assert_eq!(a.announced_count(), 6);

    // The local IPv6 address goes away: its routes are withdrawn.
    c.local_v6 = None;
    let ups = a.updates(&c);
    assert_eq!(all_withdrawn(&ups), v6_hosts(3).collect::<Vec<_>>());
    assert!(all_announced(&ups).is_empty());
    assert_eq!(a.announced_count(), 3);
}

#[test]
fn host_bits_are_cleared() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    let mut desired = Routes::new();
    desired.insert("10.0.0.5/24".parse().unwrap(), RouteAttrs::default().into());
    desired.insert("10.0.0.3/32".parse().unwrap(), RouteAttrs::default().into());
    a.set_desired(desired);
    let ups = a.updates(&c);
    assert_eq!(
        all_announced(&ups),
        vec![
            "10.0.0.0/24".parse::<IpNet>().unwrap(),
            "10.0.0.3/32".parse().unwrap()
        ]
    );
}

/// Encoded length of UPDATEs.
fn encoded_len(updates: &[Update], n: &Negotiated) -> usize {
    let mut buf = BytesMut::new();
    for u in updates {
        Message::Update(u.clone()).encode(n, &mut buf).unwrap();
    }
    buf.len()
}

/// Run a paced sync to its end; returns the slices.
fn paced_sync(a: &mut AdjOut, c: &OutContext, budget: usize) -> Vec<Vec<Update>> {
    let mut slices = Vec::new();
    let mut from = None;
    loop {
        let (ups, next) = a.updates_paced(c, from, budget);
        slices.push(ups);
        match next {
            Some(n) => {
                assert!(from.is_none_or(|f| n > f), "no progress at {n}");
                from = Some(n);
            }
            None => return slices,
        }
    }
}

#[test]
fn paced_slices_stay_near_their_budget_and_add_up_to_the_full_diff() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    let mut table = routes(v4_hosts(100_000), &RouteAttrs::default());
    table.extend(routes(v6_hosts(20_000), &RouteAttrs::default()));
    a.set_desired(table.clone());
    let slices = paced_sync(&mut a, &c, 64 * 1024);
    assert!(slices.len() > 5, "{} slices", slices.len());
    for s in &slices {
        check_packing(s, &c.negotiated);
        // At most one message beyond the budget.
        assert!(encoded_len(s, &c.negotiated) <= 64 * 1024 + 4096);
    }
    let all: Vec<Update> = slices.into_iter().flatten().collect();
    let mut want: Vec<IpNet> = table.keys().copied().collect();
    want.sort();
    let mut got = all_announced(&all);
    got.sort();
    assert_eq!(got, want);
    assert_eq!(a.announced_count(), 120_000);
    // In sync: a new paced sync produces nothing, in one slice.
    assert_eq!(
        paced_sync(&mut a, &c, 64 * 1024),
        vec![Vec::<Update>::new()]
    );

    // Withdraw everything but the first 1000 IPv4 routes, paced: the withdrawals
    // also come in slices and add up.
    a.set_desired(routes(v4_hosts(1000), &RouteAttrs::default()));
    let slices = paced_sync(&mut a, &c, 16 * 1024);
    assert!(slices.len() > 5);
    let all: Vec<Update> = slices.into_iter().flatten().collect();
    assert_eq!(all_withdrawn(&all).len(), 119_000);
    assert!(all_announced(&all).is_empty());
    assert_eq!(a.announced_count(), 1000);
}

#[test]
fn a_paced_sync_restarted_after_a_change_ends_with_the_new_set() {
    let c = ctx(false, false);
    let mut a = AdjOut::new();
    a.set_desired(routes(v4_hosts(50_000), &RouteAttrs::default()));
    // Half-way through, the desired set changes: 20,000 routes with other attributes.
    let (first, next) = a.updates_paced(&c, None, 32 * 1024);
    assert!(next.is_some());
    let mut sent = first;
    let med = RouteAttrs {
        med: Some(7),
        ..RouteAttrs::default()
    };
    a.set_desired(routes(v4_hosts(20_000), &med));
    for s in paced_sync(&mut a, &c, 32 * 1024) {
        sent.extend(s);
    }
    // Replaying the UPDATEs in order leaves the peer with exactly the new set.
    let mut peer: std::collections::BTreeMap<IpNet, Option<u32>> = Default::default();
    for u in &sent {
        for p in withdrawn(u) {
            peer.remove(&p);
        }
        for p in announced(u) {
            peer.insert(p, u.attributes.med);
        }
    }
    assert_eq!(peer.len(), 20_000);
    assert!(peer.values().all(|m| *m == Some(7)));
    assert_eq!(a.announced_count(), 20_000);
}

#[test]
fn a_paced_sync_cuts_its_slices_on_message_boundaries() {
    // Slicing must not change the packing: the UPDATEs of a paced sync, taken
    // together, are as full and as few as those of one `updates` call (a
    // receiver pays per UPDATE, and a half-empty one at every slice's end
    // costed ~6% more UPDATEs for a /32 table).
    for extended in [false, true] {
        let c = ctx(false, extended);
        let max = c.negotiated.max_message_len();
        let mut table = routes(v4_hosts(100_000), &RouteAttrs::default());
        table.extend(routes(v6_hosts(20_000), &RouteAttrs::default()));
        let mut whole = AdjOut::new();
        whole.set_desired(table.clone());
        let one = whole.updates(&c);

        let mut a = AdjOut::new();
        a.set_desired(table);
        let slices = paced_sync(&mut a, &c, 64 * 1024);
        assert!(slices.len() > 5, "{} slices", slices.len());
        for s in &slices {
            // Still at most one message beyond the budget.
            assert!(encoded_len(s, &c.negotiated) <= 64 * 1024 + max);
        }
        let all: Vec<Update> = slices.into_iter().flatten().collect();
        check_packing(&all, &c.negotiated);
        assert_eq!(all.len(), one.len(), "extended {extended}");
        assert_eq!(all_announced(&all), all_announced(&one));

        // Withdrawals, paced, pack the same way.
        whole.set_desired(routes(v4_hosts(1000), &RouteAttrs::default()));
        let one = whole.updates(&c);
        a.set_desired(routes(v4_hosts(1000), &RouteAttrs::default()));
        let all: Vec<Update> = paced_sync(&mut a, &c, 16 * 1024)
            .into_iter()
            .flatten()
            .collect();
        check_packing(&all, &c.negotiated);
        assert_eq!(all.len(), one.len(), "extended {extended}");
        assert_eq!(all_withdrawn(&all), all_withdrawn(&one));
    }
}
