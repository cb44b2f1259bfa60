//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong in the operations layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file given.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kube configuration could be inferred (no KUBECONFIG, ~/.kube/config, or in-cluster).
    #[error("inferring the kube configuration: {0}")]
    InferConfig(#[from] kube::config::InferConfigError),
    /// A request to the API server, or building the client, failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The HTTP address could not be bound (port in use, no permission, ...).
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A metric descriptor or registration was refused by `prometheus`.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// An Event about an object that cannot be referred to (a Service key without `/`).
    #[error("an Event must name its object: {0}")]
    Regarding(String),
    /// Leader-election timings that cannot work (see [`crate::lease::Timing::validate`]).
    #[error("leader election: {0}")]
    Timing(String),
}
