//! The speaker's gossip flags (MetalLB's `--ml-*` flags, under our
//! `FERROLB_ML_*` variables) and the one call that starts the member, the
//! speaker-pod watch that feeds it and its metrics.

use std::net::{IpAddr, SocketAddr};

use ferrolb_ops::metrics::Metrics;
use kube::Client;
use tracing::info;

use std::collections::BTreeSet;

use tokio::sync::watch;

use super::{MemberView, Members, MembersConfig, MembersError, ViewSource, speakers};

/// Flags of the gossip between speakers (each also read from
/// `FERROLB_<FLAG>`; manifests/speaker.yaml sets `FERROLB_ML_BIND_ADDR` to
/// the pod IP and `FERROLB_ML_SECRET_KEY` from the optional `memberlist`
/// Secret).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct MembersOpts {
    /// Address the gossip listens on and other speakers send to: the pod IP
    /// (= the node's IP under hostNetwork). Without it there is no gossip
    /// and layer 2 counts every Node as having a live speaker (MetalLB
    /// without memberlist).
    #[arg(long)]
    pub ml_bind_addr: Option<IpAddr>,
    /// UDP port of the gossip (MetalLB's memberlist port).
    #[arg(long, default_value_t = super::DEFAULT_PORT)]
    pub ml_bind_port: u16,
    /// Label selector of the speaker pods, in the speaker's namespace.
    #[arg(long, default_value = speakers::DEFAULT_SELECTOR)]
    pub ml_labels: String,
    /// Shared key authenticating every gossip datagram (HMAC-SHA256; the
    /// `secretkey` of MetalLB's `memberlist` Secret). Every speaker needs
    /// the same key; without one, datagrams are not authenticated.
    #[arg(long, hide_env_values = true)]
    pub ml_secret_key: Option<String>,
}

impl MembersOpts {
    /// The member's configuration, or `None` when no bind address is set.
    pub fn config(&self, node_name: &str) -> Option<MembersConfig> {
        let ip = self.ml_bind_addr?;
        let mut c = MembersConfig::new(node_name, SocketAddr::new(ip, self.ml_bind_port));
        c.secret = self
            .ml_secret_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec());
        Some(c)
    }

    /// Starts the member (inside a tokio runtime), the watch of speaker
    /// pods in `namespace` that feeds it and its metrics. `Ok(None)` when
    /// the gossip is off (no bind address).
    pub fn start(
        &self,
        node_name: &str,
        client: Client,
        namespace: &str,
        metrics: &mut Metrics,
    ) -> Result<Option<Members>, MembersError> {
        let Some(cfg) = self.config(node_name) else {
            info!(
                "gossip between speakers off (no --ml-bind-addr): layer 2 counts every Node as alive"
            );
            return Ok(None);
        };
        let members = Members::start(cfg)?;
        super::metrics::register(metrics, &members).map_err(MembersError::Metrics)?;
        let sink = members.known_sink();
        tokio::spawn(speakers::watch(
            client,
            namespace.to_string(),
            self.ml_labels.clone(),
            self.ml_bind_port,
            move |known| sink.set_known(known),
        ));
        Ok(Some(members))
    }
}

impl MembersOpts {
    /// Without gossip (no `--ml-bind-addr`): the view is the API server's
    /// list of ready speaker pods plus this node, always
    /// [`ViewSource::ApiFallback`], fed by the same speaker-pod watch.
    /// Until the first list arrives it holds this node only.
    pub fn api_view(
        &self,
        node_name: &str,
        client: Client,
        namespace: &str,
    ) -> watch::Receiver<MemberView> {
        let me = node_name.to_string();
        let (tx, rx) = watch::channel(api_only_view(&me, std::iter::empty()));
        tokio::spawn(speakers::watch(
            client,
            namespace.to_string(),
            self.ml_labels.clone(),
            self.ml_bind_port,
            move |known| {
                let v = api_only_view(&me, known.into_keys());
                tx.send_if_modified(|old| {
                    let changed = *old != v;
                    if changed {
                        *old = v;
                    }
                    changed
                });
            },
        ));
        rx
    }
}

fn api_only_view(me: &str, known: impl Iterator<Item = String>) -> MemberView {
    let mut alive: BTreeSet<String> = known.collect();
    alive.insert(me.to_string());
    MemberView {
        alive,
        source: ViewSource::ApiFallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        m: MembersOpts,
    }

    #[test]
    fn flags() {
        let t = T::parse_from(["x"]);
        assert!(t.m.config("n1").is_none());
        assert_eq!(t.m.ml_labels, speakers::DEFAULT_SELECTOR);
        let t = T::parse_from(["x", "--ml-bind-addr", "172.17.0.21", "--ml-secret-key", "k"]);
        let c = t.m.config("n1").unwrap();
        assert_eq!(c.bind, "172.17.0.21:7946".parse::<SocketAddr>().unwrap());
        assert_eq!(c.secret.as_deref(), Some(&b"k"[..]));
        assert_eq!(c.node_name, "n1");
    }
}
