//! lt: record-and-replay load testing for Nostr relays.
//!
//! Stages joined by files: `synth`, `record` (real clients through a proxy) or `import` (an
//! event dump) writes a trace (see [`capture`]), `replay` plays it to a relay, `analyze`
//! turns results into reports.

pub mod ab;
pub mod analyze;
pub mod capacity;
pub mod capture;
pub mod cli;
pub mod cmd;
pub mod guard;
pub mod histogram;
pub mod http;
pub mod import;
pub mod live;
pub mod nip11;
pub mod nostr;
pub mod profile;
pub mod record;
pub mod replay;
pub mod scrape;
pub mod synth;
pub mod target;
pub mod terminal;
pub mod tls;
pub mod transport;
pub mod units;
pub mod workload;
