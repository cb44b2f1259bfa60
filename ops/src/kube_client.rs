//! Building the kube [`Client`] both binaries use.

use std::path::Path;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

/// A client from the kubeconfig file `kubeconfig` (its current context) when
/// given; otherwise from [`kube::Config::infer`]: `KUBECONFIG`, then
/// `~/.kube/config`, then the in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let with_path = |source| Error::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(with_path)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(with_path)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}
