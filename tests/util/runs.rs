//! Running `lt replay` and reading what a run left: outcomes by label, what a relay stored.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Output;

use futures_util::{SinkExt, StreamExt};
use lt::capture::results::{ResultsReader, Row};
use lt::nostr::{message, Event, RelayMessage};
use tokio_tungstenite::tungstenite::Message;

use super::lt;

/// A two-worker runtime for an in-process peer (the tests' `lt` runs in its own process).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Outcome counts by label and the set of record indices, checking each appears once.
pub fn outcomes(path: &Path) -> (BTreeMap<String, u64>, u64) {
    let mut r = ResultsReader::open(path).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut counts = BTreeMap::new();
    while let Some(row) = r.next_row().unwrap() {
        if let Row::Outcome(o) = row {
            assert!(seen.insert(o.index), "record {} has two outcomes", o.index);
            o.outcome.count_into(&mut counts);
        }
    }
    let records = r.header().trace_records;
    assert_eq!(
        seen.len() as u64,
        records,
        "every trace record has an outcome"
    );
    assert_eq!(r.trailer().unwrap().outcomes, records);
    (counts, records)
}

pub fn replay(trace: &Path, url: &str, out: &Path, extra: &[&str]) -> Output {
    lt().arg("replay")
        .arg(trace)
        .args(["--relay", url, "-o"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Which of `ids` the relay has, asked with plain REQs by id on a fresh connection.
pub fn stored(url: &str, ids: &[String]) -> HashSet<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut found = HashSet::new();
        for (n, chunk) in ids.chunks(100).enumerate() {
            let sub = format!("check-{n}");
            let filter = serde_json::json!({ "ids": chunk, "limit": 200 }).to_string();
            ws.send(Message::text(message::req_frame(&sub, &[&filter])))
                .await
                .unwrap();
            loop {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    panic!("connection ended")
                };
                match RelayMessage::parse(t.as_str()).unwrap() {
                    RelayMessage::Event { event, .. } => {
                        let ev = Event::from_json(event.get()).unwrap();
                        found.insert(hex::encode(ev.id));
                    }
                    RelayMessage::Eose(s) if s == sub => break,
                    RelayMessage::Closed { message, .. } => panic!("CLOSED: {message}"),
                    _ => {}
                }
            }
        }
        found
    })
}
