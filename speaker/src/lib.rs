//! ferrolb-speaker: the per-node half of ferrolb.
//!
//! It decides which LoadBalancer service IPs this node announces
//! ([`announce`], pure), keeps one BGP session per configured peer that selects
//! the node and tells each the routes it must hold ([`peers`]), and watches the
//! Kubernetes objects those decisions depend on ([`watch`]). It does not
//! allocate IPs (the controller does) and does not touch the node's forwarding.

pub mod announce;
pub mod metrics;
pub mod pass;
pub mod peers;
pub mod run;
pub mod sources;
pub mod watch;

pub use run::{SpeakerOpts, run};
