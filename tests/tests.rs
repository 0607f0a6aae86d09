//! One integration-test binary (as ripgrep does): the real `lt` binary and the library,
//! no mocks. What they share with the benches is the `lt-testkit` crate (`tests/support/`).

use lt_testkit::{exporter, peer, relay, tls};

mod test_ab;
mod test_analyze;
mod test_architecture;
mod test_capacity;
mod test_capture;
mod test_deploy;
mod test_golden;
mod test_import;
mod test_inspect_export;
mod test_live;
mod test_many_connections;
mod test_metrics_listen;
mod test_nostr;
mod test_peer;
mod test_record;
mod test_relays;
mod test_replay;
mod test_replay_relays;
mod test_scrape;
mod test_shards;
mod test_synth;
mod test_tls;
mod test_verdicts;
mod util;
