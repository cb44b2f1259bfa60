//! ferrolb-config: MetalLB legacy ConfigMap format -> validated `Config`. (being written)
