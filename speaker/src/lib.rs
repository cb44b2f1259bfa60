//! ferrolb-speaker: the per-node half of ferrolb.
//!
//! Pure parts carry the decisions:
//! - [`announce`]: does this node announce a Service's IPs, to which peers,
//!   with which attributes — or why not ([`announce::SkipReason`]);
//! - [`pass`]: one decision pass over every Service: the routes each peer
//!   must hold, the Services newly announced (for `nodeAssigned` Events) and
//!   those withdrawn, and the announced set `/metrics` shows;
//! - [`watch`]: Kubernetes objects folded into slim maps of what the
//!   decision reads (nothing is kept per Service beyond that), and this node
//!   as last seen;
//! - [`peers`] (`desired_sessions`): the BGP session each selected peer gets;
//! - [`layer2`]: which node answers ARP/NDP for each IP of a layer 2 pool
//!   (rendezvous order over the eligible nodes), and whether it is this one;
//! - [`bgp_status`]: the `ServiceBGPStatus` objects this node should hold
//!   and the writes that get there, within a write budget (its writer task is
//!   the only part that does I/O);
//! - [`members`]: which speakers are alive, for layer 2 — SWIM gossip between
//!   the speakers (`foca`, sans-IO, in a thin UDP shell) with the API
//!   server's list of ready speaker pods as seed and fallback.
//!
//! The I/O shell is thin: [`sources`] runs the watches, [`run`](mod@run) offers the
//! configuration to `ferrolb_config::ConfigGate`, runs a pass on every change
//! and hands each BGP session its routes ([`peers::PeerSessions`]); [`metrics`]
//! serves `/metrics` and `/readyz` through the shared operations layer
//! (`ferrolb-ops`). It does not allocate IPs (the controller does) and does
//! not touch the node's forwarding.

pub mod announce;
pub mod bgp_status;
pub mod layer2;
pub mod members;
pub mod metrics;
pub mod pass;
pub mod peers;
pub mod run;
pub mod sources;
pub mod watch;

pub use run::{SpeakerOpts, run};
