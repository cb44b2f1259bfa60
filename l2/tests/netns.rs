//! The announcer on real interfaces: network namespaces joined by veths, the announcer
//! in one, iputils `arping`, `ndisc6` and `tcpdump` in the others. The owned addresses
//! are on no interface, so only the announcer can answer for them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_l2::{Announcer, AnnouncerConfig, Interfaces, L2Observer, send_gratuitous};
use ferrolb_testlab::{Lan, Netns, Pair, Proc, require_root_or_skip, veth, wait_until};

const V4: &str = "192.0.2.10";
const V6: &str = "2001:db8::10";

#[derive(Default)]
struct Events(Mutex<Vec<(&'static str, IpAddr)>>);

impl Events {
    fn count(&self, kind: &str, ip: &str) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, i)| *k == kind && *i == ip)
            .count()
    }
}

impl L2Observer for Events {
    fn request_received(&self, ip: IpAddr) {
        self.0.lock().unwrap().push(("request", ip));
    }
    fn response_sent(&self, ip: IpAddr) {
        self.0.lock().unwrap().push(("response", ip));
    }
    fn gratuitous_sent(&self, ip: IpAddr) {
        self.0.lock().unwrap().push(("gratuitous", ip));
    }
}

fn config(events: &Arc<Events>, count: u32, interval_ms: u64) -> AnnouncerConfig {
    AnnouncerConfig {
        gratuitous_count: count,
        gratuitous_interval: Duration::from_millis(interval_ms),
        rescan_interval: Duration::from_millis(200),
        ..AnnouncerConfig::new(events.clone())
    }
}

/// Starts the announcer on a task of `rt` (whose threads live in the namespace).
fn start(rt: &tokio::runtime::Runtime, cfg: AnnouncerConfig) -> Announcer {
    rt.block_on(rt.spawn(async move { Announcer::start(cfg) }))
        .unwrap()
        .expect("announcer starts")
}

fn owned(entries: &[(&str, Interfaces)]) -> BTreeMap<IpAddr, Interfaces> {
    entries
        .iter()
        .map(|(ip, i)| (ip.parse().unwrap(), i.clone()))
        .collect()
}

/// The interface's MAC in the upper-case form arping and ndisc6 print.
fn mac_of(ns: &Netns, ifname: &str) -> String {
    let out = ns.ip(&["-o", "link", "show", ifname]).unwrap();
    let mac = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("link/ether in ip link output");
    mac.to_uppercase()
}

/// Waits until the interface has a link-local address that finished DAD (ndisc6 needs a
/// usable source; the announcer needs one to answer NDP at all).
fn wait_link_local(ns: &Netns, ifname: &str) {
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let out = ns
            .ip(&["-6", "addr", "show", "dev", ifname, "scope", "link"])
            .unwrap();
        (out.contains("fe80") && !out.contains("tentative")).then_some(())
    })
    .unwrap_or_else(|| panic!("no link-local address on {ifname} in {}", ns.name()));
}

struct Arping {
    ok: bool,
    out: String,
}

fn arping(ns: &Netns, ifname: &str, ip: &str, count: u32) -> Arping {
    let o = ns
        .exec(&[
            "arping",
            "-c",
            &count.to_string(),
            "-w",
            &(count + 1).to_string(),
            "-I",
            ifname,
            ip,
        ])
        .unwrap();
    Arping {
        ok: o.status.success(),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
    }
}

fn ndisc6(ns: &Netns, ifname: &str, ip: &str) -> String {
    let o = ns
        .exec(&["ndisc6", "-1", "-r", "2", "-w", "600", ip, ifname])
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that arping got `count` answers, all from `mac`.
fn assert_answered(a: &Arping, ip: &str, mac: &str, count: u32) {
    assert!(a.ok, "arping {ip} failed:\n{}", a.out);
    assert!(
        a.out.contains(&format!("Unicast reply from {ip} [{mac}]")),
        "no reply with {mac}:\n{}",
        a.out
    );
    for l in a.out.lines().filter(|l| l.contains("reply from")) {
        assert!(l.contains(mac), "reply from another MAC: {l}");
    }
    assert!(
        a.out.contains(&format!("Received {count} response(s)")),
        "{}",
        a.out
    );
}

fn assert_silent(a: &Arping, ip: &str) {
    assert!(!a.ok, "arping {ip} got an answer:\n{}", a.out);
    assert!(a.out.contains("Received 0 response(s)"), "{}", a.out);
}

fn maddrs(ns: &Netns, ifname: &str) -> String {
    ns.ip(&["maddr", "show", "dev", ifname]).unwrap()
}

#[test]
fn answers_arp_and_ndp_only_for_owned_addresses() {
    if !require_root_or_skip(
        "answers_arp_and_ndp_only_for_owned_addresses",
        &["arping", "ndisc6"],
    ) {
        return;
    }
    // a: the announcer, no addresses at all besides its link-local; b: the asker.
    let pair = Pair::new(&[], &["192.0.2.1/24", "2001:db8::1/64"]).unwrap();
    let (a, b) = (&pair.a, &pair.b);
    wait_link_local(a, "eth0");
    wait_link_local(b, "eth0");
    let mac = mac_of(a, "eth0");
    let events = Arc::new(Events::default());
    let rt = a.tokio_runtime().unwrap();
    let ann = start(&rt, config(&events, 2, 100));
    assert_eq!(ann.interfaces(), vec!["eth0".to_string()]);

    // Nothing owned yet: nobody answers.
    assert_silent(&arping(b, "eth0", V4, 1), V4);

    ann.set(owned(&[(V4, Interfaces::All), (V6, Interfaces::All)]));
    assert_eq!(ann.owned().len(), 2);
    // The solicited-node group of 2001:db8::10 is joined on eth0.
    assert!(
        maddrs(a, "eth0").contains("33:33:ff:00:00:10"),
        "{}",
        maddrs(a, "eth0")
    );

    assert_answered(&arping(b, "eth0", V4, 3), V4, &mac, 3);
    let nd = ndisc6(b, "eth0", V6);
    assert!(
        nd.contains(&format!("Target link-layer address: {mac}")),
        "ndisc6 {V6}:\n{nd}"
    );
    assert!(events.count("request", V4) >= 3);
    assert!(events.count("response", V4) >= 3);
    assert!(events.count("request", V6) >= 1);
    assert!(events.count("response", V6) >= 1);

    // Addresses it does not own are never answered.
    assert_silent(&arping(b, "eth0", "192.0.2.11", 2), "192.0.2.11");
    let nd = ndisc6(b, "eth0", "2001:db8::11");
    assert!(!nd.contains("Target link-layer"), "{nd}");
    assert_eq!(events.count("request", "192.0.2.11"), 0);

    // Released: no answers at once, group left.
    ann.set(BTreeMap::new());
    assert!(ann.owned().is_empty());
    assert_silent(&arping(b, "eth0", V4, 2), V4);
    let nd = ndisc6(b, "eth0", V6);
    assert!(!nd.contains("Target link-layer"), "{nd}");
    assert!(!maddrs(a, "eth0").contains("33:33:ff:00:00:10"));

    // Dropping the last handle closes the sockets (the kernel drops the membership).
    ann.set(owned(&[(V6, Interfaces::All)]));
    assert!(maddrs(a, "eth0").contains("33:33:ff:00:00:10"));
    drop(ann);
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            (!maddrs(a, "eth0").contains("33:33:ff:00:00:10")).then_some(())
        })
        .is_some(),
        "group still joined after drop"
    );
    let nd = ndisc6(b, "eth0", V6);
    assert!(!nd.contains("Target link-layer"), "{nd}");
    drop(rt);
}

/// Runs tcpdump in `ns` on `ifname` until `stop` is called; returns its text output.
struct Capture {
    proc: Proc,
}

impl Capture {
    fn start(ns: &Netns, ifname: &str) -> Capture {
        let mut c = Command::new("tcpdump");
        c.args(["-i", ifname, "-l", "-nn", "-e", "-v", "arp or icmp6"]);
        let proc = ns.spawn(c).unwrap();
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            proc.stderr().contains("listening on").then_some(())
        })
        .expect("tcpdump listening");
        Capture { proc }
    }

    fn stop(mut self) -> String {
        // Let the last frames reach tcpdump's line-buffered output.
        std::thread::sleep(Duration::from_millis(200));
        self.proc.terminate(Duration::from_secs(2));
        self.proc.stdout()
    }
}

#[test]
fn announces_new_addresses_and_stops_when_released() {
    if !require_root_or_skip(
        "announces_new_addresses_and_stops_when_released",
        &["tcpdump"],
    ) {
        return;
    }
    let pair = Pair::new(&[], &["192.0.2.1/24", "2001:db8::1/64"]).unwrap();
    let (a, b) = (&pair.a, &pair.b);
    wait_link_local(a, "eth0");
    let mac = mac_of(a, "eth0").to_lowercase();
    let events = Arc::new(Events::default());
    let rt = a.tokio_runtime().unwrap();
    let ann = start(&rt, config(&events, 3, 200));

    let cap = Capture::start(b, "eth0");
    let t0 = Instant::now();
    ann.set(owned(&[
        ("192.0.2.20", Interfaces::All),
        ("2001:db8::20", Interfaces::All),
    ]));
    // 3 steps, 200 ms apart.
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
            (events.count("gratuitous", "192.0.2.20") == 6
                && events.count("gratuitous", "2001:db8::20") == 3)
                .then_some(())
        })
        .is_some(),
        "gratuitous count: {} v4, {} v6",
        events.count("gratuitous", "192.0.2.20"),
        events.count("gratuitous", "2001:db8::20")
    );
    assert!(t0.elapsed() >= Duration::from_millis(400));
    let out = cap.stop();
    let count = |pat: &str| out.lines().filter(|l| l.contains(pat)).count();
    // Request form (RFC 5227 announcement) and reply form, broadcast, from our MAC.
    assert_eq!(
        count(&format!(
            "{mac} > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Request who-has 192.0.2.20 tell 192.0.2.20"
        )),
        3,
        "{out}"
    );
    assert_eq!(count(&format!("Reply 192.0.2.20 is-at {mac}")), 3, "{out}");
    // Unsolicited NA to all nodes, Override only, our MAC in the option.
    assert_eq!(count(&format!("{mac} > 33:33:00:00:00:01")), 3, "{out}");
    assert_eq!(
        count("neighbor advertisement, length 32, tgt is 2001:db8::20, Flags [override]"),
        3,
        "{out}"
    );
    assert_eq!(
        count(&format!(
            "destination link-address option (2), length 8 (1): {mac}"
        )),
        3,
        "{out}"
    );

    // A long burst stops as soon as the address is released.
    let ann2 = start(&rt, config(&events, 100, 50));
    drop(ann);
    ann2.set(owned(&[("192.0.2.21", Interfaces::All)]));
    std::thread::sleep(Duration::from_millis(180));
    ann2.set(BTreeMap::new());
    let sent = events.count("gratuitous", "192.0.2.21");
    assert!((2..=10).contains(&sent), "{sent}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(events.count("gratuitous", "192.0.2.21"), sent);

    // One-shot announcements for `ferrolb vip`.
    let cap = Capture::start(b, "eth0");
    rt.block_on(rt.spawn(async {
        send_gratuitous("eth0", "192.0.2.30".parse().unwrap()).await?;
        send_gratuitous("eth0", "2001:db8::30".parse().unwrap()).await?;
        let e = send_gratuitous("nosuch0", "192.0.2.30".parse().unwrap()).await;
        assert!(e.is_err(), "{e:?}");
        Ok::<_, ferrolb_l2::L2Error>(())
    }))
    .unwrap()
    .unwrap();
    let out = cap.stop();
    assert_eq!(
        count_in(&out, "Request who-has 192.0.2.30 tell 192.0.2.30"),
        1,
        "{out}"
    );
    assert_eq!(
        count_in(&out, &format!("Reply 192.0.2.30 is-at {mac}")),
        1,
        "{out}"
    );
    assert_eq!(
        count_in(&out, "tgt is 2001:db8::30, Flags [override]"),
        1,
        "{out}"
    );
    drop(ann2);
    drop(rt);
}

fn count_in(out: &str, pat: &str) -> usize {
    out.lines().filter(|l| l.contains(pat)).count()
}

#[test]
fn rescan_picks_up_new_interfaces_and_interfaces_select() {
    if !require_root_or_skip(
        "rescan_picks_up_new_interfaces_and_interfaces_select",
        &["arping"],
    ) {
        return;
    }
    // a starts with eth0 to b only; eth1 to c appears after the announcer started.
    let pair = Pair::new(&[], &["192.0.2.1/24"]).unwrap();
    let (a, b) = (&pair.a, &pair.b);
    let c = Netns::new().unwrap();
    let events = Arc::new(Events::default());
    let rt = a.tokio_runtime().unwrap();
    let ann = start(&rt, config(&events, 1, 100));
    assert_eq!(ann.interfaces(), vec!["eth0".to_string()]);
    ann.set(owned(&[(V4, Interfaces::Only(vec!["eth1".into()]))]));

    veth(a, "eth1", &c, "eth0").unwrap();
    c.add_addr("eth0", "192.0.2.2/24").unwrap();
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        ann.interfaces().contains(&"eth1".to_string()).then_some(())
    })
    .expect("eth1 picked up by the rescan");
    let mac1 = mac_of(a, "eth1");
    // Answered on eth1 (selected), with eth1's MAC ...
    assert_answered(&arping(&c, "eth0", V4, 2), V4, &mac1, 2);
    // ... and not on eth0 (not selected).
    assert_silent(&arping(b, "eth0", V4, 2), V4);

    // An interface that goes down loses its responder at the next rescan.
    a.ip(&["link", "set", "eth1", "down"]).unwrap();
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        (!ann.interfaces().contains(&"eth1".to_string())).then_some(())
    })
    .expect("eth1 dropped after going down");
    assert_silent(&arping(&c, "eth0", V4, 1), V4);
    // Up again: picked up again, answered again.
    a.ip(&["link", "set", "eth1", "up"]).unwrap();
    wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
        ann.interfaces().contains(&"eth1".to_string()).then_some(())
    })
    .expect("eth1 picked up again after coming up");
    assert_answered(&arping(&c, "eth0", V4, 2), V4, &mac1, 2);
    drop(ann);
    drop(rt);
}

/// The MAC in `ip neigh` for `ip` on `ifname` (lower case), if there is an entry with one.
fn neigh_mac(ns: &Netns, ifname: &str, ip: &str) -> Option<String> {
    let out = ns.ip(&["neigh", "show", ip, "dev", ifname]).ok()?;
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .map(str::to_string)
}

/// Sends one UDP datagram to `ip` from `ns` (makes its kernel resolve the address).
fn poke(ns: &Netns, ip: &str) {
    let _ = ns.exec(&["bash", "-c", &format!("echo x > /dev/udp/{ip}/9")]);
}

#[test]
fn takeover_moves_a_neighbours_cache_entry() {
    if !require_root_or_skip("takeover_moves_a_neighbours_cache_entry", &["bash"]) {
        return;
    }
    // Two would-be owners and a client on one LAN.
    let lan = Lan::new().unwrap();
    let (n1, n2, client) = (
        Netns::new().unwrap(),
        Netns::new().unwrap(),
        Netns::new().unwrap(),
    );
    lan.attach(&n1, "eth0", &[]).unwrap();
    lan.attach(&n2, "eth0", &[]).unwrap();
    lan.attach(&client, "eth0", &["192.0.2.1/24", "2001:db8::1/64"])
        .unwrap();
    for ns in [&n1, &n2, &client] {
        wait_link_local(ns, "eth0");
    }
    let (mac1, mac2) = (
        mac_of(&n1, "eth0").to_lowercase(),
        mac_of(&n2, "eth0").to_lowercase(),
    );
    let events = Arc::new(Events::default());
    let (rt1, rt2) = (n1.tokio_runtime().unwrap(), n2.tokio_runtime().unwrap());
    let (a1, a2) = (
        start(&rt1, config(&events, 3, 300)),
        start(&rt2, config(&events, 3, 300)),
    );
    let both = owned(&[(V4, Interfaces::All), (V6, Interfaces::All)]);

    // n1 owns both; the client's kernel resolves them to n1.
    a1.set(both.clone());
    for ip in [V4, V6] {
        let got = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            poke(&client, ip);
            neigh_mac(&client, "eth0", ip).filter(|m| *m == mac1)
        });
        assert!(
            got.is_some(),
            "{ip} not resolved to n1: {:?}",
            neigh_mac(&client, "eth0", ip)
        );
    }

    // Takeover: n1 lets go, n2 owns. The client sends nothing; only n2's
    // announcements can move its entries.
    a1.set(BTreeMap::new());
    let t0 = Instant::now();
    a2.set(both);
    for ip in [V4, V6] {
        let got = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            neigh_mac(&client, "eth0", ip).filter(|m| *m == mac2)
        });
        assert!(
            got.is_some(),
            "{ip} still at {:?} after n2's announcements",
            neigh_mac(&client, "eth0", ip)
        );
    }
    // The first announcement does it, not a later one of the burst.
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    drop((a1, a2));
    drop((rt1, rt2));
}

/// Environment variable that makes [`child_announcer`] run (set by
/// [`needs_only_net_raw`]): comma-separated addresses to own.
const CHILD_ENV: &str = "FERROLB_L2_CHILD_OWNS";

/// Runs this test binary's [`child_announcer`] inside `ns` under `setpriv` with the
/// capability bounding set `caps` (so, as root, exactly those capabilities).
fn spawn_child(ns: &Netns, caps: &str, owns: &str) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--bounding-set", caps, "--inh-caps", "-all"])
        .arg(exe)
        .args([
            "--exact",
            "child_announcer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, owns);
    ns.spawn(c).unwrap()
}

#[test]
fn needs_only_net_raw() {
    if !require_root_or_skip("needs_only_net_raw", &["setpriv", "arping", "ndisc6"]) {
        return;
    }
    let pair = Pair::new(&[], &["192.0.2.1/24", "2001:db8::1/64"]).unwrap();
    let (a, b) = (&pair.a, &pair.b);
    wait_link_local(a, "eth0");
    wait_link_local(b, "eth0");
    let mac = mac_of(a, "eth0");

    // With CAP_NET_RAW alone it starts, joins the group and answers both protocols.
    let mut child = spawn_child(a, "-all,+net_raw", &format!("{V4},{V6}"));
    let line = child
        .wait_for_line("child:", Duration::from_secs(10))
        .unwrap();
    assert!(
        line.contains("child: CapEff=0000000000002000 ready"),
        "{line}"
    );
    assert!(maddrs(a, "eth0").contains("33:33:ff:00:00:10"));
    assert_answered(&arping(b, "eth0", V4, 2), V4, &mac, 2);
    let nd = ndisc6(b, "eth0", V6);
    assert!(
        nd.contains(&format!("Target link-layer address: {mac}")),
        "{nd}"
    );
    child.terminate(Duration::from_secs(2));

    // Without it, start fails with a permission error (and says so).
    let mut child = spawn_child(a, "-all", V4);
    let line = child
        .wait_for_line("child:", Duration::from_secs(10))
        .unwrap();
    assert!(
        line.contains("child: CapEff=0000000000000000 start failed, permission=true"),
        "{line}"
    );
}

/// Not a test of its own: the process [`needs_only_net_raw`] starts with reduced
/// capabilities. Prints its effective capabilities and whether the announcer started.
#[test]
#[ignore = "run by needs_only_net_raw"]
fn child_announcer() {
    let owns = std::env::var(CHILD_ENV).expect("started by needs_only_net_raw");
    let caps = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match Announcer::start(AnnouncerConfig::new(Arc::new(()))) {
            Ok(ann) => {
                ann.set(
                    owns.split(',')
                        .map(|ip| (ip.parse().unwrap(), Interfaces::All))
                        .collect(),
                );
                println!("child: CapEff={caps} ready");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(e) => println!(
                "child: CapEff={caps} start failed, permission={}: {e}",
                e.is_permission()
            ),
        }
    });
}
