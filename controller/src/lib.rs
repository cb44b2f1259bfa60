//! ferrolb-controller: assigns LoadBalancer IPs to Services from the configured
//! address pools. [`allocator`] is the pure allocation logic (no Kubernetes
//! types, no I/O); [`service`] reads MetalLB's Service annotations. The
//! Kubernetes glue is [`reconcile`] (one Service in, status/annotation/Event
//! out) and [`run`] (`ferrolb controller`: watches, leader election, metrics).
//! It is not a speaker: it never announces anything.

pub mod allocator;
pub mod reconcile;
pub mod run;
pub mod service;

pub use run::{ControllerOpts, run};
