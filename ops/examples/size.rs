//! Size probe: a kube client, a registry with one gauge, served on HTTP by
//! [`ferrolb_ops::serve`] until SIGTERM/SIGINT. Compare with
//! `size_no_server` (the same without the server) to see what hyper's server
//! side costs a binary that already talks to Kubernetes:
//!
//! ```text
//! cargo build --release -p ferrolb-ops --example size --example size_no_server
//! ```
//!
//! Usage: `size <kubeconfig> [addr]` (nothing is sent to the API server).

use std::path::PathBuf;
use std::sync::Arc;

use ferrolb_ops::metrics::{IntGauge, Registry};

struct P(Registry);

impl ferrolb_ops::Probe for P {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn registry(&self) -> &Registry {
        &self.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kubeconfig = PathBuf::from(args.next().ok_or("usage: size <kubeconfig> [addr]")?);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:7472".into())
        .parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = ferrolb_ops::client(Some(&kubeconfig)).await?;
            let registry = Registry::new();
            let g = IntGauge::new("metallb_k8s_client_config_loaded_bool", "1 if loaded")?;
            g.set(1);
            registry.register(Box::new(g))?;
            let server = ferrolb_ops::serve(addr, Arc::new(P(registry))).await?;
            println!(
                "serving on {} (namespace {})",
                server.local_addr(),
                client.default_namespace()
            );
            ferrolb_ops::signal::shutdown().await;
            Ok(())
        })
}
