//! Reconciliation: an event without an OK is not necessarily lost (nostr-rs-relay drops
//! acks under pipelining while storing every event). After the run, ask the relay by id for
//! every event that timed out, and mark it `stored_unacked` or `lost`.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::capture::results::{Outcome, OutcomeRow};
use crate::guard::Target;
use crate::nostr::{message, RelayMessage};
use crate::transport::connect;

/// Ids per query: under rnostr's clamp of 300 results per filter.
const CHUNK: usize = 200;
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A relay that fell behind may still be writing its backlog when the run ends: ask again
/// for what is missing, a second apart, until a round finds nothing new (at most this many).
const ROUNDS: usize = 15;
const ROUND_PAUSE: Duration = Duration::from_secs(1);

/// Decides the held rows' outcomes. On any failure to ask, the rows stay `timeout` and the
/// error is returned beside them, so nothing is lost.
pub async fn reconcile(
    target: &Target,
    held: Vec<([u8; 32], OutcomeRow)>,
) -> (Vec<OutcomeRow>, Option<String>) {
    match stored(target, &held).await {
        Ok(found) => {
            let rows = held
                .into_iter()
                .map(|(id, mut row)| {
                    row.outcome = if found.contains(&id) {
                        Outcome::StoredUnacked
                    } else {
                        Outcome::Lost
                    };
                    row
                })
                .collect();
            (rows, None)
        }
        Err(e) => (held.into_iter().map(|(_, r)| r).collect(), Some(e)),
    }
}

async fn stored(
    target: &Target,
    held: &[([u8; 32], OutcomeRow)],
) -> Result<HashSet<[u8; 32]>, String> {
    let mut found = HashSet::new();
    let mut missing: Vec<[u8; 32]> = held.iter().map(|(id, _)| *id).collect();
    for round in 0..ROUNDS {
        if missing.is_empty() {
            break;
        }
        if round > 0 {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        let got = query(target, &missing, round).await?;
        let before = found.len();
        found.extend(got);
        missing.retain(|id| !found.contains(id));
        if round > 0 && found.len() == before {
            break;
        }
    }
    Ok(found)
}

/// One pass: which of `ids` the relay returns, asked by id in chunks on a fresh connection.
async fn query(
    target: &Target,
    ids: &[[u8; 32]],
    round: usize,
) -> Result<HashSet<[u8; 32]>, String> {
    let mut found = HashSet::new();
    let ws = connect(target, 0).await.0.map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    for (n, chunk) in ids.chunks(CHUNK).enumerate() {
        let ids: Vec<String> = chunk.iter().map(hex::encode).collect();
        let filter = serde_json::json!({ "ids": ids, "limit": CHUNK }).to_string();
        let sub = format!("lt-reconcile-{round}-{n}");
        sink.send(Message::text(message::req_frame(&sub, &[&filter])))
            .await
            .map_err(|e| format!("sending reconciliation query: {e}"))?;
        let answer = async {
            while let Some(frame) = stream.next().await {
                let frame = frame.map_err(|e| format!("reading reconciliation answers: {e}"))?;
                let Message::Text(text) = frame else { continue };
                match RelayMessage::parse(text.as_str()) {
                    Ok(RelayMessage::Event { sub: s, event }) if s == sub => {
                        if let Some(id) = crate::nostr::id_of(event.get()) {
                            found.insert(id);
                        }
                    }
                    Ok(RelayMessage::Eose(s)) if s == sub => return Ok(()),
                    Ok(RelayMessage::Closed { sub: s, message }) if s == sub => {
                        return Err(format!("relay closed the reconciliation query: {message}"))
                    }
                    _ => {}
                }
            }
            Err("connection closed during reconciliation".to_owned())
        };
        tokio::time::timeout(QUERY_TIMEOUT, answer)
            .await
            .map_err(|_| "reconciliation query timed out".to_owned())??;
        let _ = sink.send(Message::text(message::close_frame(&sub))).await;
    }
    let _ = sink.close().await;
    Ok(found)
}
