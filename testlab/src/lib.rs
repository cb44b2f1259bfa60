//! ferrolb-testlab: the test harness for interop and end-to-end tests.
//!
//! It builds private network namespaces ([`Netns`], [`veth`], [`Lan`], [`RefLab`]), runs
//! processes inside them as guards killed by PID on drop ([`Proc`]), and starts the real
//! Debian routing daemons with generated configs, with typed queries of their sessions and
//! RIBs: [`Gobgpd`] (gobgpd 3.10), [`Frr`] (FRR 8.4 bgpd/zebra), [`Bird`] (BIRD 2.0), and
//! FRR's standalone BFD daemon [`Bfdd`]. [`Netns::tokio_runtime`] runs in-process code
//! (sockets included) inside a namespace.
//! [`kube`] runs a real kube-apiserver (optionally serving discovery.k8s.io/v1
//! EndpointSlices through a CRD).
//!
//! It is not a general network library: it shells out to `ip`, `gobgp`, `vtysh` and
//! `birdc`, needs root, and never adds an address or route in the root namespace: every
//! address lives in a namespace it created, so tests only reach loopback or those
//! namespaces. Every test starts with [`require_root_or_skip`], which prints
//! `SKIP <test>: <reason>` and returns `false` when the machine cannot run it (and panics
//! in CI, `CI=true`, so CI never loses these tests silently).
//!
//! Guards drop in reverse declaration order: declare namespaces first, then the daemons
//! and processes in them. `FERROLB_KEEP_TEST_DIRS=1` keeps configs and logs; they are also
//! kept (and their path printed) when a test panics.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrolb_testlab::*;
//! # fn main() -> anyhow::Result<()> {
//! if !require_root_or_skip("example", &["gobgpd", "gobgp"]) { return Ok(()); }
//! let lab = Pair::new(&["198.18.0.2/24"], &["198.18.0.1/24"])?;
//! let peer = Gobgpd::start(&lab.b, GobgpdConfig::new(64512, "198.18.0.1")
//!     .neighbor(GobgpNeighbor::new("198.18.0.2", 64522)))?;
//! let mut cmd = std::process::Command::new("some-bgp-speaker");
//! cmd.args(["--peer", "198.18.0.1"]);
//! let mut speaker = lab.a.spawn(cmd)?;
//! speaker.wait_for_line("established", Duration::from_secs(10))?;
//! peer.wait_established("198.18.0.2", Duration::from_secs(10))?;
//! let routes = peer.rib(Family::Ipv4Unicast)?;
//! # let _ = routes; Ok(()) }
//! ```

pub mod bench;
pub mod bfdd;
pub mod bird;
pub mod frr;
pub mod gobgp;
pub mod kube;
pub mod netns;
pub mod proc;
pub mod relay;
pub mod route;
pub mod util;

pub use bfdd::{BfdPeerState, Bfdd, BfddConfig, BfddPeer};
pub use bird::{Bird, BirdBfdSession, BirdConfig, BirdNeighbor};
pub use frr::{Frr, FrrConfig, FrrNeighbor};
pub use gobgp::{GobgpNeighbor, Gobgpd, GobgpdConfig};
pub use netns::{Lan, Netns, Pair, RefLab, list_netns, pid_alive, veth, veth_with_addrs};
pub use proc::Proc;
pub use route::{Family, NeighborState, Origin, Route, RoutePath, RouteSpec, SessionState};
pub use util::{TestDir, free_port, in_ci, is_root, require_root_or_skip, wait_until, which};
