//! ferrolb-controller: assigns LoadBalancer IPs to Services from the configured
//! address pools. [`allocator`] is the pure allocation logic (no Kubernetes
//! types, no I/O); [`service`] reads MetalLB's Service annotations. The
//! Kubernetes reconciler that feeds them lives elsewhere in this crate.

pub mod allocator;
pub mod service;
