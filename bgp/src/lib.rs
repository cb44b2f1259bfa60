//! ferrolb-bgp: a BGP-4 speaker library.
//!
//! It is a wire codec ([`wire`]), a sans-IO RFC 4271 session state machine
//! ([`fsm`]), an Adj-RIB-Out that turns a desired route set into packed UPDATEs
//! ([`adj_out`]) and a thin tokio driver ([`driver`]) that carries out what the
//! state machine decides. It announces routes; it does not install received
//! routes anywhere (it parses and judges them, as RFC 7606 asks). Beside it,
//! [`bfd`]: single-hop BFD (RFC 5880/5881) in the same shape — packet codec,
//! sans-IO session, thin UDP driver — not yet tied to BGP sessions. There is no
//! Kubernetes in this crate.

pub mod adj_out;
pub mod bfd;
pub mod driver;
pub mod fsm;
mod md5;
pub mod wire;
