//! The declarative responder: the speaker says which addresses this node owns; the
//! announcer answers for exactly those, on the selected interfaces, and announces new
//! ones. A thin shell: the decisions are [`crate::arp::answer`] and
//! [`crate::ndp::answer`]; this file only moves frames and keeps the tables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tracing::{debug, info, trace, warn};

use crate::eth::Mac;
use crate::socket::{self, LinkInfo, PacketSocket, Proto};
use crate::{Interfaces, L2Error, L2Observer, arp, ndp};

/// How the announcer runs. [`AnnouncerConfig::new`] gives MetalLB's timings.
#[derive(Clone)]
pub struct AnnouncerConfig {
    /// Metrics hook.
    pub observer: Arc<dyn L2Observer>,
    /// Announcements per newly owned address (MetalLB: 5, one at once and then one per
    /// tick until 5 s have passed).
    pub gratuitous_count: u32,
    /// Spacing of those announcements (MetalLB: 1.1 s, from its issue 172: longer than
    /// Linux's 1 s ARP `locktime`, so if one announcement lands while a neighbour's entry
    /// is locked against updates (kernels before ~4.11 applied the lock to gratuitous
    /// ARP too), the next one arrives after the lock expired).
    pub gratuitous_interval: Duration,
    /// How often interfaces are rediscovered (MetalLB: 10 s): new or re-enabled
    /// interfaces get responders, removed or downed ones lose them.
    pub rescan_interval: Duration,
}

impl AnnouncerConfig {
    /// MetalLB's timings: 5 announcements 1.1 s apart, rescan every 10 s.
    pub fn new(observer: Arc<dyn L2Observer>) -> AnnouncerConfig {
        AnnouncerConfig {
            observer,
            gratuitous_count: 5,
            gratuitous_interval: Duration::from_millis(1100),
            rescan_interval: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AnnouncerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnouncerConfig")
            .field("gratuitous_count", &self.gratuitous_count)
            .field("gratuitous_interval", &self.gratuitous_interval)
            .field("rescan_interval", &self.rescan_interval)
            .finish_non_exhaustive()
    }
}

/// Answers ARP and NDP for the addresses this node owns. Cheap to clone (all clones
/// share one responder); the sockets and tasks stop when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Announcer {
    shared: Arc<Shared>,
}

/// An owned address.
#[derive(Debug)]
struct Owned {
    interfaces: Interfaces,
    /// Changes when the address is (re)added or its interfaces change; a running
    /// announcement burst stops when it no longer matches.
    generation: u64,
}

/// The owned table after `set(new)` given the current one: an address keeps its
/// generation when its interfaces are unchanged; new or changed ones get the next
/// generation from `next_generation` and are returned to be announced (in address
/// order). Pure.
fn plan(
    cur: &BTreeMap<IpAddr, Owned>,
    new: BTreeMap<IpAddr, Interfaces>,
    mut next_generation: impl FnMut() -> u64,
) -> (BTreeMap<IpAddr, Owned>, Vec<(IpAddr, u64)>) {
    let mut fresh = Vec::new();
    let next = new
        .into_iter()
        .map(|(ip, interfaces)| {
            let generation = match cur.get(&ip) {
                Some(o) if o.interfaces == interfaces => o.generation,
                _ => {
                    let g = next_generation();
                    fresh.push((ip, g));
                    g
                }
            };
            (
                ip,
                Owned {
                    interfaces,
                    generation,
                },
            )
        })
        .collect();
    (next, fresh)
}

/// The solicited-node group MACs an NDP socket on interface `ifname` must join: one per
/// owned IPv6 address answered there (addresses sharing their low 24 bits share one).
/// Pure.
fn groups<'a>(
    owned: impl IntoIterator<Item = (&'a IpAddr, &'a Interfaces)>,
    ifname: &str,
) -> BTreeSet<Mac> {
    owned
        .into_iter()
        .filter_map(|(ip, ifs)| match ip {
            IpAddr::V6(v6) if ifs.matches(ifname) => {
                Some(ndp::multicast_mac(ndp::solicited_node(*v6)))
            }
            _ => None,
        })
        .collect()
}

/// The sockets and receive tasks of one interface.
#[derive(Debug)]
struct Responder {
    info: LinkInfo,
    mac: Mac,
    arp: Option<Arc<PacketSocket>>,
    ndp: Option<Arc<PacketSocket>>,
    /// Solicited-node group MACs joined on the NDP socket.
    joined: Mutex<BTreeSet<Mac>>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    cfg: AnnouncerConfig,
    runtime: Handle,
    owned: RwLock<BTreeMap<IpAddr, Owned>>,
    links: Mutex<BTreeMap<u32, Arc<Responder>>>,
    generation: AtomicU64,
    /// The periodic rescan, stopped with the last handle.
    scanner: Mutex<Option<AbortHandle>>,
    /// Serialises membership updates: each reads the owned table under it, so the
    /// last update to run applies the latest table (a rescan's older view cannot undo
    /// a newer `set`).
    membership_lock: Mutex<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.scanner).take() {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn owns(&self, ip: IpAddr, ifname: &str) -> bool {
        self.owned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .is_some_and(|o| o.interfaces.matches(ifname))
    }

    fn owned_snapshot(&self) -> BTreeMap<IpAddr, (Interfaces, u64)> {
        self.owned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(ip, o)| (*ip, (o.interfaces.clone(), o.generation)))
            .collect()
    }

    /// Makes each NDP socket's multicast memberships the solicited-node groups of the
    /// IPv6 addresses owned on its interface.
    fn sync_memberships(&self) {
        let _serial = lock(&self.membership_lock);
        let owned = self.owned_snapshot();
        let links: Vec<Arc<Responder>> = lock(&self.links).values().cloned().collect();
        for r in links {
            let Some(sock) = &r.ndp else { continue };
            let want = groups(owned.iter().map(|(ip, (ifs, _))| (ip, ifs)), &r.info.name);
            let mut joined = lock(&r.joined);
            for m in want.difference(&joined.clone()) {
                match sock.membership(*m, true) {
                    Ok(()) => {
                        joined.insert(*m);
                    }
                    Err(e) => warn!(interface = %r.info.name, group = %m, error = %e,
                        "cannot join solicited-node group; multicast solicitations may not arrive"),
                }
            }
            for m in joined.clone().difference(&want) {
                if let Err(e) = sock.membership(*m, false) {
                    debug!(interface = %r.info.name, group = %m, error = %e, "leave group");
                }
                joined.remove(m);
            }
        }
    }

    /// Rediscovers interfaces: opens responders for new or changed usable interfaces,
    /// closes those of interfaces gone, down or changed. Returns the first socket
    /// error (responders that could be opened are kept).
    fn rescan(self: &Arc<Self>) -> Result<(), L2Error> {
        let found = socket::scan()?;
        let mut first_err = None;
        {
            let mut table = lock(&self.links);
            let mut keep = BTreeSet::new();
            for l in found {
                if !(l.arp_capable() || l.ndp_capable()) {
                    continue;
                }
                keep.insert(l.index);
                if table.get(&l.index).is_some_and(|r| r.info == l) {
                    continue;
                }
                let (name, index) = (l.name.clone(), l.index);
                match self.open_responder(l) {
                    Ok(r) => {
                        info!(interface = %name, arp = r.arp.is_some(), ndp = r.ndp.is_some(),
                            "layer 2 responder started");
                        table.insert(r.info.index, Arc::new(r));
                    }
                    Err(e) => {
                        warn!(interface = %name, error = %e, "cannot start layer 2 responder");
                        keep.remove(&index);
                        first_err.get_or_insert(e);
                    }
                }
            }
            table.retain(|index, r| {
                let k = keep.contains(index);
                if !k {
                    info!(interface = %r.info.name, "layer 2 responder stopped");
                }
                k
            });
        }
        self.sync_memberships();
        first_err.map_or(Ok(()), Err)
    }

    fn open_responder(self: &Arc<Self>, info: LinkInfo) -> Result<Responder, L2Error> {
        let mac = info.mac.unwrap_or(Mac::ZERO);
        let arp = if info.arp_capable() {
            Some(Arc::new(PacketSocket::open(info.index, Proto::Arp)?))
        } else {
            None
        };
        let ndp = if info.ndp_capable() {
            Some(Arc::new(PacketSocket::open(info.index, Proto::Ndp)?))
        } else {
            None
        };
        let mut tasks = Vec::new();
        if let Some(sock) = &arp {
            let t = self.runtime.spawn(arp_loop(
                Arc::downgrade(self),
                sock.clone(),
                info.name.clone(),
                mac,
            ));
            tasks.push(t.abort_handle());
        }
        if let Some(sock) = &ndp {
            let t = self.runtime.spawn(ndp_loop(
                Arc::downgrade(self),
                sock.clone(),
                info.name.clone(),
                mac,
            ));
            tasks.push(t.abort_handle());
        }
        Ok(Responder {
            info,
            mac,
            arp,
            ndp,
            joined: Mutex::new(BTreeSet::new()),
            tasks,
        })
    }
}

async fn arp_loop(shared: Weak<Shared>, sock: Arc<PacketSocket>, ifname: String, mac: Mac) {
    let mut buf = vec![0u8; 128];
    loop {
        let n = match sock.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!(interface = %ifname, error = %e, "ARP receive");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(s) = shared.upgrade() else { return };
        match arp::answer(&buf[..n], mac, |ip| s.owns(IpAddr::V4(ip), &ifname)) {
            Ok((reply, ip)) => {
                let ip = IpAddr::V4(ip);
                s.cfg.observer.request_received(ip);
                trace!(interface = %ifname, %ip, asker = %reply.tpa, "ARP request, answering");
                match sock.send(&reply.encode()).await {
                    Ok(()) => s.cfg.observer.response_sent(ip),
                    Err(e) => warn!(interface = %ifname, %ip, error = %e, "send ARP reply"),
                }
            }
            Err(why) => trace!(interface = %ifname, ?why, "ARP frame ignored"),
        }
    }
}

async fn ndp_loop(shared: Weak<Shared>, sock: Arc<PacketSocket>, ifname: String, mac: Mac) {
    let mut buf = vec![0u8; 512];
    loop {
        let n = match sock.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!(interface = %ifname, error = %e, "NDP receive");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(s) = shared.upgrade() else { return };
        match ndp::answer(&buf[..n], mac, |ip| s.owns(IpAddr::V6(ip), &ifname)) {
            Ok(na) => {
                let ip = IpAddr::V6(na.target);
                s.cfg.observer.request_received(ip);
                trace!(interface = %ifname, %ip, asker = %na.dst, "Neighbor Solicitation, answering");
                match sock.send(&na.encode()).await {
                    Ok(()) => s.cfg.observer.response_sent(ip),
                    Err(e) => {
                        warn!(interface = %ifname, %ip, error = %e, "send Neighbor Advertisement")
                    }
                }
            }
            Err(why) => trace!(interface = %ifname, ?why, "NDP frame ignored"),
        }
    }
}

/// Announces `ip` `gratuitous_count` times on its interfaces, stopping early when the
/// address is released or re-added (`generation` changed).
async fn burst(shared: Weak<Shared>, ip: IpAddr, generation: u64) {
    let Some(s) = shared.upgrade() else { return };
    let (count, interval) = (s.cfg.gratuitous_count, s.cfg.gratuitous_interval);
    drop(s);
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let Some(s) = shared.upgrade() else { return };
        let ifs = match s.owned.read().unwrap_or_else(|e| e.into_inner()).get(&ip) {
            Some(o) if o.generation == generation => o.interfaces.clone(),
            _ => return,
        };
        let links: Vec<Arc<Responder>> = lock(&s.links)
            .values()
            .filter(|r| ifs.matches(&r.info.name))
            .cloned()
            .collect();
        for r in links {
            let frames: Vec<Vec<u8>> = match (ip, &r.arp, &r.ndp) {
                (IpAddr::V4(v4), Some(_), _) => arp::gratuitous(r.mac, v4)
                    .iter()
                    .map(|f| f.encode().to_vec())
                    .collect(),
                (IpAddr::V6(v6), _, Some(_)) => vec![ndp::unsolicited(r.mac, v6).encode().to_vec()],
                _ => continue,
            };
            let sock = match ip {
                IpAddr::V4(_) => r.arp.as_ref(),
                IpAddr::V6(_) => r.ndp.as_ref(),
            };
            let Some(sock) = sock else { continue };
            for f in frames {
                match sock.send(&f).await {
                    Ok(()) => s.cfg.observer.gratuitous_sent(ip),
                    Err(e) => warn!(interface = %r.info.name, %ip, error = %e, "send gratuitous"),
                }
            }
        }
    }
}

impl Announcer {
    /// Discovers interfaces, opens their sockets and starts answering (for nothing yet:
    /// call [`Announcer::set`]). Must be called inside a tokio runtime, in the network
    /// namespace to serve. Fails without `CAP_NET_RAW` (or when interfaces cannot be
    /// listed); an interface whose sockets fail otherwise is logged and retried at the
    /// next rescan, which also picks up interfaces that appear later.
    pub fn start(cfg: AnnouncerConfig) -> Result<Announcer, L2Error> {
        let runtime = Handle::try_current().map_err(|_| L2Error::NoRuntime)?;
        let rescan = cfg.rescan_interval;
        let shared = Arc::new(Shared {
            cfg,
            runtime: runtime.clone(),
            owned: RwLock::new(BTreeMap::new()),
            links: Mutex::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            scanner: Mutex::new(None),
            membership_lock: Mutex::new(()),
        });
        match shared.rescan() {
            Ok(()) => {}
            // Without CAP_NET_RAW nothing can work: say so at once.
            Err(e) if e.is_permission() => return Err(e),
            // One odd interface must not stop the others; the next rescan retries it.
            Err(e) => warn!(error = %e, "layer 2: some interfaces are not served"),
        }
        let weak = Arc::downgrade(&shared);
        let scanner = runtime.spawn(async move {
            loop {
                tokio::time::sleep(rescan).await;
                let Some(s) = weak.upgrade() else { return };
                if let Err(e) = s.rescan() {
                    warn!(error = %e, "interface rescan");
                }
            }
        });
        *lock(&shared.scanner) = Some(scanner.abort_handle());
        Ok(Announcer { shared })
    }

    /// Declarative: exactly these addresses are owned by this node now, each answered on
    /// these interfaces. Addresses not in `owned` stop being answered before this
    /// returns. Addresses that are new (or whose interfaces changed) are announced: a
    /// gratuitous ARP pair / unsolicited Neighbor Advertisement at once on each selected
    /// interface, then `gratuitous_count - 1` more, `gratuitous_interval` apart.
    /// Unlike MetalLB, setting an address again does not restart its burst, and an
    /// interface picked up later by a rescan gets no burst for addresses already owned
    /// (MetalLB does not announce there either); neighbours learn it on their next
    /// request.
    pub fn set(&self, owned: BTreeMap<IpAddr, Interfaces>) {
        let s = &self.shared;
        let fresh = {
            let mut cur = s.owned.write().unwrap_or_else(|e| e.into_inner());
            let (next, fresh) = plan(&cur, owned, || {
                s.generation.fetch_add(1, Ordering::Relaxed) + 1
            });
            for ip in cur.keys().filter(|ip| !next.contains_key(ip)) {
                info!(%ip, "layer 2: no longer answering");
            }
            *cur = next;
            fresh
        };
        s.sync_memberships();
        for (ip, generation) in fresh {
            info!(%ip, "layer 2: answering and announcing");
            s.runtime.spawn(burst(Arc::downgrade(s), ip, generation));
        }
    }

    /// What it currently answers for.
    pub fn owned(&self) -> BTreeMap<IpAddr, Interfaces> {
        self.shared
            .owned_snapshot()
            .into_iter()
            .map(|(ip, (ifs, _))| (ip, ifs))
            .collect()
    }

    /// Names of the interfaces it currently has responders on (MetalLB's
    /// `GetInterfaces`, e.g. for status reporting).
    pub fn interfaces(&self) -> Vec<String> {
        lock(&self.shared.links)
            .values()
            .map(|r| r.info.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plan_announces_only_new_or_changed_addresses() {
        let mut g = 0;
        let mut next = || {
            g += 1;
            g
        };
        let only = |n: &str| Interfaces::Only(vec![n.to_string()]);
        let (t1, fresh) = plan(
            &BTreeMap::new(),
            BTreeMap::from([
                (ip("192.0.2.10"), Interfaces::All),
                (ip("2001:db8::10"), only("eth0")),
            ]),
            &mut next,
        );
        assert_eq!(fresh, vec![(ip("192.0.2.10"), 1), (ip("2001:db8::10"), 2)]);
        // Same set again: nothing to announce, generations kept.
        let (t2, fresh) = plan(
            &t1,
            BTreeMap::from([
                (ip("192.0.2.10"), Interfaces::All),
                (ip("2001:db8::10"), only("eth0")),
            ]),
            &mut next,
        );
        assert!(fresh.is_empty());
        assert_eq!(t2[&ip("192.0.2.10")].generation, 1);
        // One removed, one changed interfaces, one new.
        let (t3, fresh) = plan(
            &t2,
            BTreeMap::from([
                (ip("2001:db8::10"), only("eth1")),
                (ip("192.0.2.11"), Interfaces::All),
            ]),
            &mut next,
        );
        assert_eq!(fresh, vec![(ip("192.0.2.11"), 3), (ip("2001:db8::10"), 4)]);
        assert!(!t3.contains_key(&ip("192.0.2.10")));
        // Removed and re-added: a new generation, so an old burst stops and a new runs.
        let (_, fresh) = plan(
            &t3,
            BTreeMap::from([
                (ip("2001:db8::10"), only("eth1")),
                (ip("192.0.2.11"), Interfaces::All),
                (ip("192.0.2.10"), Interfaces::All),
            ]),
            &mut next,
        );
        assert_eq!(fresh, vec![(ip("192.0.2.10"), 5)]);
    }

    #[test]
    fn groups_per_interface() {
        let owned = BTreeMap::from([
            (ip("192.0.2.10"), Interfaces::All),
            (ip("2001:db8::10"), Interfaces::All),
            // Same low 24 bits as 2001:db8::10: the same group.
            (ip("2001:db8:1::10"), Interfaces::All),
            (
                ip("2001:db8::ab:cdef"),
                Interfaces::Only(vec!["eth1".into()]),
            ),
        ]);
        assert_eq!(
            groups(&owned, "eth0"),
            BTreeSet::from([Mac([0x33, 0x33, 0xff, 0, 0, 0x10])])
        );
        assert_eq!(
            groups(&owned, "eth1"),
            BTreeSet::from([
                Mac([0x33, 0x33, 0xff, 0, 0, 0x10]),
                Mac([0x33, 0x33, 0xff, 0xab, 0xcd, 0xef]),
            ])
        );
        assert!(groups(&BTreeMap::new(), "eth0").is_empty());
    }
}
