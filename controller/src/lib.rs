//! ferrolb-controller: address allocation (pure) and the Kubernetes reconciler. (being written)
