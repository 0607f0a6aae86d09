//! What lt's integration tests, benches and the `ack-peer` example share, in one place:
//!
//! - [`peer`]: a minimal in-process WebSocket peer that plays a relay (faults, and the
//!   cheapest possible relay for the benches);
//! - [`relay`]: the real relays (nostr-rs-relay, rnostr) started on loopback with fresh data
//!   directories;
//! - [`exporter`]: a real node_exporter on loopback, and a plain HTTP GET;
//! - [`tls`]: a test CA, certificates and nginx terminating TLS in front of a relay;
//! - [`bench`]: running a command for its own resource usage, roles, a timerfd and a raw
//!   epoll reader (lt's mechanisms without lt);
//! - [`stats`]: the median and range the benches report rounds by.

pub mod bench;
pub mod exporter;
pub mod peer;
pub mod relay;
pub mod stats;
pub mod tls;
