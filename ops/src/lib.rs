//! ferrolb-ops: the operations layer the controller and the speaker share, the
//! I/O glue both binaries would otherwise write twice: building a kube
//! [`Client`](kube::Client) ([`kube_client`]), the HTTP endpoints `/metrics`,
//! `/healthz`, `/livez`, `/readyz` ([`http`]) with Prometheus text rendering
//! ([`metrics`]), Event publishing ([`events`]), logging set-up ([`logging`]),
//! the shutdown signal ([`signal`]), the graceful restart marker
//! ([`restart_marker`]) and leader election on a Lease ([`lease`],
//! whose decision core is pure), and where the configuration comes from: the
//! ConfigMap or the `metallb.io` custom resources ([`config_source`]), with
//! the ConfigurationState status object ([`config_state`]).
//!
//! It makes no decisions of its own: what to allocate, what to announce and
//! what a configuration means stay in the controller's and the speaker's own
//! crates (and in `ferrolb-config`). Nothing here picks a Kubernetes version
//! feature of `k8s-openapi`; the binary does.

pub mod cli;
pub mod config_source;
pub mod config_state;
pub mod error;
pub mod events;
pub mod http;
pub mod kube_client;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod rate;
pub mod restart_marker;
pub mod service;
pub mod signal;
pub mod watch_backoff;

pub use error::Error;
pub use http::{FnProbe, Limits, Probe, Server, serve, serve_with};
pub use kube_client::client;
