//! Self-tests of the harness against the real daemons alone (no ferrolb): gobgpd
//! announcing to FRR and BIRD on a bridged LAN, and cleanup of namespaces and PIDs.

use std::time::Duration;

use ferrolb_testlab::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn gobgpd_announces_to_frr_and_bird() -> anyhow::Result<()> {
    if !require_root_or_skip(
        "gobgpd_announces_to_frr_and_bird",
        &["gobgpd", "gobgp", "vtysh", "bird", "birdc", util::FRR_BGPD],
    ) {
        return Ok(());
    }
    let lan = Lan::new()?;
    let sp = Netns::new()?;
    let fr = Netns::new()?;
    let bi = Netns::new()?;
    lan.attach(&sp, "eth0", &["198.18.0.2/24", "2001:db8:ff::2/64"])?;
    lan.attach(&fr, "eth0", &["198.18.0.1/24", "2001:db8:ff::1/64"])?;
    lan.attach(&bi, "eth0", &["198.18.0.3/24", "2001:db8:ff::3/64"])?;

    let frr = Frr::start(
        &fr,
        FrrConfig::new(64512, "198.18.0.1").neighbor(FrrNeighbor::new("198.18.0.2", 4_200_000_001)),
    )?;
    let bird = Bird::start(
        &bi,
        BirdConfig::new(64512, "198.18.0.3")
            .neighbor(BirdNeighbor::new("198.18.0.2", 4_200_000_001)),
    )?;
    let g = Gobgpd::start(
        &sp,
        GobgpdConfig::new(4_200_000_001, "198.18.0.2")
            .neighbor(GobgpNeighbor::new("198.18.0.1", 64512))
            .neighbor(GobgpNeighbor::new("198.18.0.3", 64512)),
    )?;
    for i in 1..=3 {
        g.add_route(&RouteSpec {
            prefix: format!("172.17.254.{i}/32"),
            nexthop: "198.18.0.2".into(),
            communities: vec!["64512:100".into(), "65535:65281".into()],
            large_communities: vec!["4200000001:1:2".into()],
            med: Some(7),
            ..RouteSpec::default()
        })?;
    }
    g.add_route(&RouteSpec {
        prefix: "2001:db8:254::1/128".into(),
        nexthop: "2001:db8:ff::2".into(),
        communities: vec!["64512:6".into()],
        ..RouteSpec::default()
    })?;
    let t0 = std::time::Instant::now();
    frr.wait_established("198.18.0.2", T)?;
    bird.wait_established("198.18.0.2", T)?;
    eprintln!("both sessions up after {:?}", t0.elapsed());

    let r = frr.wait_rib_count(Family::Ipv4Unicast, 3, T)?;
    let p = r[0].best().unwrap();
    assert_eq!(r[0].prefix, "172.17.254.1/32");
    assert_eq!(p.nexthop, "198.18.0.2");
    assert_eq!(p.as_path, vec![4_200_000_001]);
    assert_eq!(p.communities, vec!["64512:100", "65535:65281"]);
    assert_eq!(p.large_communities, vec!["4200000001:1:2"]);
    assert_eq!(p.med, Some(7));
    assert_eq!(p.origin, Some(Origin::Igp));
    let r6 = frr.wait_rib_count(Family::Ipv6Unicast, 1, T)?;
    assert_eq!(r6[0].prefix, "2001:db8:254::1/128");
    assert_eq!(r6[0].best().unwrap().nexthop, "2001:db8:ff::2");

    let r = bird.wait_rib_count(Family::Ipv4Unicast, 3, T);
    eprintln!("{}", bird.birdc("show route all")?);
    eprintln!("{}", bird.birdc("show protocols all")?);
    let r = r?;
    let p = r[2].best().unwrap();
    assert_eq!(r[2].prefix, "172.17.254.3/32");
    assert_eq!(p.nexthop, "198.18.0.2");
    assert_eq!(p.as_path, vec![4_200_000_001]);
    assert_eq!(p.communities, vec!["64512:100", "65535:65281"]);
    assert_eq!(p.large_communities, vec!["4200000001:1:2"]);
    assert_eq!(p.med, Some(7));
    let r6 = bird.wait_rib_count(Family::Ipv6Unicast, 1, T)?;
    assert_eq!(r6[0].best().unwrap().nexthop, "2001:db8:ff::2");

    // Withdrawal reaches both.
    g.del_route("172.17.254.2/32")?;
    frr.wait_rib_count(Family::Ipv4Unicast, 2, T)?;
    bird.wait_rib_count(Family::Ipv4Unicast, 2, T)?;
    eprintln!("{}", frr.vtysh("show bgp ipv4 unicast json detail")?);
    Ok(())
}

#[test]
fn guards_clean_up_namespaces_and_pids() -> anyhow::Result<()> {
    if !require_root_or_skip(
        "guards_clean_up_namespaces_and_pids",
        &["gobgpd", "gobgp", util::FRR_BGPD],
    ) {
        return Ok(());
    }
    let (names, pids) = {
        let pair = Pair::new(&["198.18.0.2/24"], &["198.18.0.1/24"])?;
        let g = Gobgpd::start(&pair.a, GobgpdConfig::new(64522, "198.18.0.2"))?;
        let f = Frr::start(&pair.b, FrrConfig::new(64512, "198.18.0.1"))?;
        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("600");
        let s = pair.a.spawn(sleeper)?;
        // A process the harness did not wrap in a Proc: the Netns guard kills it by PID.
        let stray = pair
            .b
            .spawn(std::process::Command::new("sleep").tap_arg("601"))?;
        let stray_pid = stray.pid();
        std::mem::forget(stray);
        let mut pids = vec![g.pid().unwrap(), s.pid(), stray_pid];
        pids.extend(f.pids());
        let names = vec![pair.a.name().to_string(), pair.b.name().to_string()];
        assert!(list_netns().contains(&names[0]));
        assert!(pids.iter().all(|p| pid_alive(*p)));
        (names, pids)
    };
    let left: Vec<_> = list_netns()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let alive: Vec<_> = pids.iter().filter(|p| pid_alive(**p)).collect();
    assert!(alive.is_empty(), "PIDs still alive: {alive:?}");
    Ok(())
}

trait TapArg {
    fn tap_arg(&mut self, a: &str) -> std::process::Command;
}
impl TapArg for std::process::Command {
    fn tap_arg(&mut self, a: &str) -> std::process::Command {
        let mut c = std::process::Command::new(self.get_program());
        c.args(self.get_args()).arg(a);
        c
    }
}

#[test]
fn reference_lab_rt01_learns_one_path_per_node() -> anyhow::Result<()> {
    if !require_root_or_skip(
        "reference_lab_rt01_learns_one_path_per_node",
        &["gobgpd", "gobgp", "bash"],
    ) {
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let lab = RefLab::new()?;
    eprintln!("reference lab up in {:?}", t0.elapsed());
    let mut rt = GobgpdConfig::new(64512, "172.17.0.1");
    rt.use_multiple_paths = true;
    for a in RefLab::NODE_ADDRS {
        let mut n = GobgpNeighbor::new(a, 64522);
        n.passive = true;
        n.families = vec![Family::Ipv4Unicast];
        rt.neighbors.push(n);
    }
    let rt01 = Gobgpd::start(&lab.rt01, rt)?;
    let mut nodes = vec![];
    for (ns, a) in lab.nodes.iter().zip(RefLab::NODE_ADDRS) {
        let mut n = GobgpNeighbor::new("172.17.0.1", 64512);
        n.families = vec![Family::Ipv4Unicast];
        let g = Gobgpd::start(ns, GobgpdConfig::new(64522, a).neighbor(n))?;
        g.add_route(&RouteSpec {
            prefix: "172.17.254.1/32".into(),
            nexthop: a.into(),
            ..RouteSpec::default()
        })?;
        nodes.push(g);
    }
    for a in RefLab::NODE_ADDRS {
        rt01.wait_established(a, T)?;
    }
    let r = util::wait_until(T, Duration::from_millis(200), || {
        let r = rt01.rib(Family::Ipv4Unicast).ok()?;
        (r.len() == 1 && r[0].paths.len() == 3).then_some(r)
    })
    .ok_or_else(|| anyhow::anyhow!("rt-01 does not have 3 paths"))?;
    let mut nh: Vec<&str> = r[0].next_hops();
    nh.sort();
    assert_eq!(nh, RefLab::NODE_ADDRS);
    assert!(r[0].paths.iter().all(|p| p.as_path == vec![64522]));
    // client-01 reaches a node through rt-01 (TCP to the node's gobgpd).
    let out = lab
        .client01
        .exec(&["bash", "-c", "exec 3<>/dev/tcp/172.17.0.21/179"])?;
    assert!(out.status.success(), "client-01 -> 172.17.0.21:179 failed");
    eprintln!("rt-01 has 3 paths {:?} after start", t0.elapsed());
    Ok(())
}

/// Starts gobgpd on each lab node (AS 64522) announcing 172.17.254.1/32 to rt-01.
fn node_speakers(lab: &RefLab) -> anyhow::Result<Vec<Gobgpd>> {
    let mut nodes = vec![];
    for (ns, a) in lab.nodes.iter().zip(RefLab::NODE_ADDRS) {
        let mut n = GobgpNeighbor::new("172.17.0.1", 64512);
        n.families = vec![Family::Ipv4Unicast];
        let g = Gobgpd::start(ns, GobgpdConfig::new(64522, a).neighbor(n))?;
        g.add_route(&RouteSpec {
            prefix: "172.17.254.1/32".into(),
            nexthop: a.into(),
            ..RouteSpec::default()
        })?;
        nodes.push(g);
    }
    Ok(nodes)
}

/// Waits until rt-01's kernel has a route to 172.17.254.1 via all three nodes.
fn wait_kernel_ecmp(lab: &RefLab) -> anyhow::Result<String> {
    let mut last = String::new();
    util::wait_until(T, Duration::from_millis(200), || {
        last = lab
            .rt01
            .ip(&["route", "show", "172.17.254.1"])
            .unwrap_or_default();
        RefLab::NODE_ADDRS
            .iter()
            .all(|a| last.contains(&format!("via {a} ")))
            .then(|| last.clone())
    })
    .ok_or_else(|| anyhow::anyhow!("no 3-way ECMP route in rt-01's kernel: {last:?}"))
}

#[test]
fn reference_lab_frr_zebra_installs_ecmp() -> anyhow::Result<()> {
    if !require_root_or_skip(
        "reference_lab_frr_zebra_installs_ecmp",
        &["gobgpd", "gobgp", "vtysh", util::FRR_BGPD, util::FRR_ZEBRA],
    ) {
        return Ok(());
    }
    let lab = RefLab::new()?;
    let mut c = FrrConfig::new(64512, "172.17.0.1");
    c.zebra = true;
    c.maximum_paths = Some(8);
    for a in RefLab::NODE_ADDRS {
        let mut n = FrrNeighbor::new(a, 64522);
        n.families = vec![Family::Ipv4Unicast];
        c.neighbors.push(n);
    }
    let frr = Frr::start(&lab.rt01, c)?;
    let _nodes = node_speakers(&lab)?;
    let t0 = std::time::Instant::now();
    let route = wait_kernel_ecmp(&lab)?;
    eprintln!("FRR ECMP in kernel after {:?}:\n{route}", t0.elapsed());
    let r = frr.rib(Family::Ipv4Unicast)?;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].paths.len(), 3);
    Ok(())
}

#[test]
fn reference_lab_bird_kernel_merge_paths() -> anyhow::Result<()> {
    ferrolb_testlab::require_or_return!(
        "reference_lab_bird_kernel_merge_paths",
        "gobgpd",
        "gobgp",
        "bird",
        "birdc"
    );
    let lab = RefLab::new()?;
    let mut c = BirdConfig::new(64512, "172.17.0.1");
    c.kernel = true;
    for a in RefLab::NODE_ADDRS {
        let mut n = BirdNeighbor::new(a, 64522);
        n.families = vec![Family::Ipv4Unicast];
        c.neighbors.push(n);
    }
    let bird = Bird::start(&lab.rt01, c)?;
    let _nodes = node_speakers(&lab)?;
    let t0 = std::time::Instant::now();
    let route = wait_kernel_ecmp(&lab)?;
    eprintln!("BIRD ECMP in kernel after {:?}:\n{route}", t0.elapsed());
    let r = bird.rib(Family::Ipv4Unicast)?;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].paths.len(), 3, "{r:?}");
    Ok(())
}
