//! lt: record-and-replay load testing for Nostr relays.

pub mod nostr;
