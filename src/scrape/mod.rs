//! What the relay's side says during a run: Prometheus endpoints (`--scrape`: node_exporter,
//! the relays' own `/metrics`, any exposition) and, when the relay runs on this machine,
//! lt's own reading of its `/proc` in the same series shape. Stored with the results as
//! `series` and `scrape` rows (results format 3); the analysis reads them by preset.

pub mod exposition;
pub mod local;
pub mod sampler;
pub mod source;

pub use sampler::{RunRelay, Sampler, Scraping, Source};
pub use source::{Preset, ScrapeArg};
