//! The client transport lt opens toward a relay, for `replay` and `record` alike: TCP to an
//! address the guard checked (from a chosen source address when there are some), TLS for
//! `wss://`, the WebSocket upgrade (`connect.rs`, `upgrade.rs`, over `stream.rs`), and the
//! [`Stop`] handle a caller sets to end what runs on it. It depends only on the guard's
//! [`crate::guard::Target`] and on TLS.

mod connect;
mod stop;
mod stream;
mod upgrade;

pub use connect::{connect, ConnectError, Phases, Ws};
pub use stop::Stop;
pub use stream::Stream;
