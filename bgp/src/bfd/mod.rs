//! Bidirectional Forwarding Detection, asynchronous mode, single hop
//! (RFC 5880, RFC 5881).
//!
//! [`packet`] is the Control packet codec, [`session`] the sans-IO session
//! state machine and [`driver`] a thin tokio driver that owns the UDP sockets
//! and the clock. Not built: Echo mode, Demand mode, authentication and
//! multi-hop (RFC 5883) sessions.

pub mod driver;
pub mod packet;
pub mod session;

pub use driver::{BfdConfig, BfdCounters, BfdEndpoint, BfdError, BfdEvent, BfdSession, BfdStatus};
pub use packet::{ControlPacket, Diag, PacketError, State};
pub use session::{Negotiated, Session, SessionConfig};
