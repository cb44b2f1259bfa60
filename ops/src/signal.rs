//! The shutdown signal.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT received after it is first polled.
///
/// If a handler cannot be installed (logged), the other signal still works.
pub async fn shutdown() {
    let mut term = install(SignalKind::terminate(), "SIGTERM");
    let mut int = install(SignalKind::interrupt(), "SIGINT");
    tokio::select! {
        () = recv(term.as_mut()) => tracing::info!("SIGTERM received"),
        () = recv(int.as_mut()) => tracing::info!("SIGINT received"),
    }
}

fn install(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .inspect_err(|e| tracing::error!(signal = name, error = %e, "cannot handle signal"))
        .ok()
}

async fn recv(s: Option<&mut Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
