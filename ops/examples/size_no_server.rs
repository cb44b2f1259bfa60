//! Size probe baseline: `size` without the HTTP server (a kube client and a
//! registry with one gauge, rendered once to stdout, then waits for
//! SIGTERM/SIGINT).
//!
//! Usage: `size_no_server <kubeconfig>` (nothing is sent to the API server).

use std::path::PathBuf;

use ferrolb_ops::metrics::{IntGauge, Registry, render};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kubeconfig = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: size_no_server <kubeconfig>")?,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = ferrolb_ops::client(Some(&kubeconfig)).await?;
            let registry = Registry::new();
            let g = IntGauge::new("metallb_k8s_client_config_loaded_bool", "1 if loaded")?;
            g.set(1);
            registry.register(Box::new(g))?;
            print!("{}", render(&registry));
            println!("(namespace {})", client.default_namespace());
            ferrolb_ops::signal::shutdown().await;
            Ok(())
        })
}
