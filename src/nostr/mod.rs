//! Nostr core: events (canonical id, BIP-340) and the NIP-01 message codec. No I/O here.

mod event;
pub mod filter;
pub mod json;
pub mod keys;
pub mod message;

pub use event::{id_of, Event, SignedFrame, Unsigned, VerifyError};
pub use message::{ClientMessage, CodecError, Prefix, RelayMessage};
