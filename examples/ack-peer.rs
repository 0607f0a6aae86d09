//! The ack-only WebSocket peer of `cargo bench --bench replay`, on its own, for measuring
//! lt by hand: `cargo run --release --example ack-peer` prints its loopback URL and answers
//! every EVENT with OK and every REQ with EOSE until Ctrl-C.
//!
//! `LT_PEER_THREADS` (default 2) sets its worker threads.

// The fault peer is a test aid, not part of the product library: lt's dev-dependency
// `lt-testkit` (tests/support/), which examples may use.
use lt_testkit::peer::{Behavior, Peer};

fn main() -> std::io::Result<()> {
    let threads = std::env::var("LT_PEER_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let peer = Peer::start(Behavior::AckAll).await?;
        println!("{}", peer.url());
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    })
}
