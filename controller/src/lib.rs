//! ferrolb-controller: assigns LoadBalancer IPs to Services from the configured
//! address pools, and never hands one IP to two Services that may not share it.
//!
//! Pure parts (no Kubernetes client, no I/O, no clock) carry the decisions:
//! - [`allocator`]: pools, free ranges, sharing rules, planning (no Kubernetes types);
//! - [`facts`] and [`service`]: a Service object and its MetalLB annotations,
//!   read into the allocator's request ([`namespaces`]: the namespace labels
//!   it is matched with);
//! - [`core`]: the configuration in force (through `ferrolb_config::ConfigGate`),
//!   the allocator, and per Service the plan of status, annotation and Events
//!   to write.
//!
//! The I/O shell is thin: [`reconcile`] fetches nothing itself — it turns the
//! Service kube-runtime hands it into facts, asks the core and writes the
//! plan; [`pool_status`] writes `IPAddressPool` status; [`run`](mod@run)
//! wires the watches, leader election and `/metrics` ([`metrics`]) through
//! the shared operations layer (`ferrolb-ops`).
//! It is not a speaker: it never announces anything.

pub mod allocator;
pub mod core;
pub mod facts;
pub mod metrics;
pub mod namespaces;
pub mod pool_status;
pub mod reconcile;
pub mod run;
pub mod service;

pub use run::{ControllerOpts, run};
