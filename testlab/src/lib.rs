//! ferrolb-testlab: network-namespace test harness. (being written)
pub mod kube;
