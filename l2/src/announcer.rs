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
    /// Spacing of those announcements (MetalLB: 1.1 s, chosen in its issue 172 so that
    /// switches which rate-limit gratuitous ARP to one per second accept each one).
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
        let owned = self.owned_snapshot();
        let links: Vec<Arc<Responder>> = lock(&self.links).values().cloned().collect();
        for r in links {
            let Some(sock) = &r.ndp else { continue };
            let want: BTreeSet<Mac> = owned
                .iter()
                .filter_map(|(ip, (ifs, _))| match ip {
                    IpAddr::V6(v6) if ifs.matches(&r.info.name) => {
                        Some(ndp::multicast_mac(ndp::solicited_node(*v6)))
                    }
                    _ => None,
                })
                .collect();
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
        });
        match shared.rescan() {
            Ok(()) => {}
            // Without CAP_NET_RAW nothing can work: say so at once.
            Err(e) if e.is_permission() => return Err(e),
            // One odd interface must not stop the others; the next rescan retries it.
            Err(e) => warn!(error = %e, "layer 2: some interfaces are not served"),
        }
        let weak = Arc::downgrade(&shared);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(rescan).await;
                let Some(s) = weak.upgrade() else { return };
                if let Err(e) = s.rescan() {
                    warn!(error = %e, "interface rescan");
                }
            }
        });
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
        let mut fresh = Vec::new();
        {
            let mut cur = s.owned.write().unwrap_or_else(|e| e.into_inner());
            let mut next = BTreeMap::new();
            for (ip, interfaces) in owned {
                let generation = match cur.get(&ip) {
                    Some(o) if o.interfaces == interfaces => o.generation,
                    _ => {
                        let g = s.generation.fetch_add(1, Ordering::Relaxed) + 1;
                        fresh.push((ip, g));
                        g
                    }
                };
                next.insert(
                    ip,
                    Owned {
                        interfaces,
                        generation,
                    },
                );
            }
            for ip in cur.keys().filter(|ip| !next.contains_key(ip)) {
                info!(%ip, "layer 2: no longer answering");
            }
            *cur = next;
        }
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
