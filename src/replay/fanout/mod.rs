//! Live subscribers (issue #16): every EVENT a live subscription receives after its EOSE is
//! a delivery, set against the deliveries it should get. The [`ledger`] keeps that account;
//! this file runs it on a thread of its own (`lt-fanout`), off the network path, fed by the
//! feeder (the trace's events and live subscriptions), by the connections (outcomes and
//! deliveries) and stopped by the replay when the connections are done.

pub mod ledger;

use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use ledger::{Answer, Fact, Ledger};

use crate::capture::results::{DeliverySecond, FanoutRow, OutcomeRow};
use crate::capture::{Op, Record};
use crate::nostr::filter::{self, Keys};

/// How long after an event's answer the ledger waits before judging it, so that what other
/// connections saw around then (an EOSE, a CLOSE) has reached it.
const SETTLE: Duration = Duration::from_millis(200);
/// How long the ledger sleeps between rounds. It polls rather than blocks on its channel:
/// a blocked receiver costs every sender a wake-up (a futex call), and at 100k deliveries a
/// second those wake-ups were a tenth of the network thread's time.
const TICK: Duration = Duration::from_millis(10);

/// What the ledger is told.
pub enum Msg {
    Event {
        index: u64,
        keys: Keys,
        intended_ns: u64,
    },
    LiveSub {
        index: u64,
        conn: u32,
        name: String,
        query: crate::capture::Query,
        filters: Vec<filter::Filter>,
    },
    LiveClose {
        index: u64,
        req: u64,
    },
    Facts(Vec<Fact>),
    Deliveries(Vec<Delivery>),
    /// The connections are done: finish and hand over the rows.
    End,
}

/// An EVENT received on a subscription whose REQ was no longer in flight.
pub struct Delivery {
    /// The live subscription's REQ (trace record index); `None` for a read's subscription.
    pub req: Option<u64>,
    pub id: [u8; 32],
    pub at_ns: u64,
}

/// The outcome rows' facts, for the ledger.
pub fn facts<'a>(rows: impl Iterator<Item = &'a OutcomeRow>) -> Vec<Fact> {
    rows.map(|r| Fact {
        index: r.index,
        sent_ns: r.sent_ns,
        completed_ns: r.completed_ns,
        answer: Answer::of(&r.outcome),
    })
    .collect()
}

/// The subscription id and event id of an EVENT frame written the way relays write them
/// (`["EVENT","<sub>",{"id":"<64 hex>",…`), read without parsing the event: at 100k
/// deliveries a second, parsing every event twice would be most of what lt spends on them.
/// `None` for any other shape (an escaped sub id, another key first, spaces): those take
/// the parsing path.
pub fn fast_delivery(frame: &str) -> Option<(&str, [u8; 32])> {
    let rest = frame.strip_prefix("[\"EVENT\",\"")?;
    let end = rest.find('"')?;
    let sub = &rest[..end];
    if sub.contains('\\') {
        return None;
    }
    let rest = rest[end..].strip_prefix("\",{\"id\":\"")?;
    let hex = rest.get(..64)?;
    if rest.as_bytes().get(64) != Some(&b'"') {
        return None;
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex, &mut id).ok()?;
    Some((sub, id))
}

/// The feeder's part: tells the ledger what each record publishes or subscribes to.
pub struct Announcer {
    tx: Sender<Msg>,
    /// Live REQs whose CLOSE is still to come.
    open: HashSet<u64>,
}

impl Announcer {
    pub fn new(tx: Sender<Msg>) -> Announcer {
        Announcer {
            tx,
            open: HashSet::new(),
        }
    }

    /// Record `index` of the trace, going on connection `conn` at `intended_ns`. A frame
    /// lt cannot read as an event or a filter is left out of the account (it is the
    /// relay's to refuse) rather than stopping the run.
    pub fn record(&mut self, index: u64, conn: u32, r: &Record, intended_ns: u64) {
        let msg = match r.op {
            Op::Event { .. } => {
                let Some(keys) = serde_json::from_str::<serde_json::Value>(&r.frame)
                    .ok()
                    .and_then(|v| Keys::of(&v[1]))
                else {
                    return;
                };
                Msg::Event {
                    index,
                    keys,
                    intended_ns,
                }
            }
            Op::Req { query } if query.is_live() => {
                let Ok((name, filters)) = filter::of_req(&r.frame) else {
                    return;
                };
                self.open.insert(index);
                Msg::LiveSub {
                    index,
                    conn,
                    name,
                    query,
                    filters,
                }
            }
            Op::Close => match r.after {
                Some(req) if self.open.remove(&req) => Msg::LiveClose { index, req },
                _ => return,
            },
            _ => return,
        };
        let _ = self.tx.send(msg);
    }
}

/// The ledger's thread.
pub struct Fanout {
    tx: Sender<Msg>,
    thread: JoinHandle<(FanoutRow, Vec<DeliverySecond>)>,
}

impl Fanout {
    /// Starts the ledger; times are taken from `t0`. `grace` is how long after an event's OK
    /// an expected delivery may come before it counts as missed.
    /// `part_only`: this process plays one part of a sharded replay.
    pub fn start(t0: Instant, grace: Duration, part_only: bool) -> anyhow::Result<Fanout> {
        let (tx, rx) = mpsc::channel();
        let ledger = Ledger::new(grace.as_nanos() as u64, SETTLE.as_nanos() as u64, part_only);
        let thread = std::thread::Builder::new()
            .name("lt-fanout".into())
            .spawn(move || run(ledger, rx, t0))
            .context("starting the fan-out ledger's thread")?;
        Ok(Fanout { tx, thread })
    }

    pub fn sender(&self) -> Sender<Msg> {
        self.tx.clone()
    }

    /// Tells the ledger the run is over and takes its rows.
    pub fn finish(self) -> anyhow::Result<(FanoutRow, Vec<DeliverySecond>)> {
        let _ = self.tx.send(Msg::End);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the fan-out ledger's thread panicked"))
    }
}

fn run(mut ledger: Ledger, rx: Receiver<Msg>, t0: Instant) -> (FanoutRow, Vec<DeliverySecond>) {
    let now_ns = || Instant::now().saturating_duration_since(t0).as_nanos() as u64;
    'rounds: loop {
        loop {
            match rx.try_recv() {
                Ok(Msg::End) | Err(TryRecvError::Disconnected) => break 'rounds,
                Ok(msg) => apply(&mut ledger, msg),
                Err(TryRecvError::Empty) => break,
            }
        }
        ledger.tick(now_ns());
        std::thread::sleep(TICK);
    }
    ledger.finish()
}

fn apply(ledger: &mut Ledger, msg: Msg) {
    match msg {
        Msg::Event {
            index,
            keys,
            intended_ns,
        } => ledger.event(index, keys, intended_ns),
        Msg::LiveSub {
            index,
            conn,
            name,
            query,
            filters,
        } => ledger.live_sub(index, conn, name, query, filters),
        Msg::LiveClose { index, req } => ledger.live_close(index, req),
        Msg::Facts(facts) => facts.into_iter().for_each(|f| ledger.fact(f)),
        Msg::Deliveries(ds) => {
            for d in ds {
                ledger.delivery(d.req, d.id, d.at_ns);
            }
        }
        Msg::End => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_reads_only_the_usual_shape() {
        let id = "ab".repeat(32);
        let frame = format!(r#"["EVENT","live-feed-1",{{"id":"{id}","kind":1}}]"#);
        assert_eq!(fast_delivery(&frame), Some(("live-feed-1", [0xab; 32])));
        let other_key = format!(r#"["EVENT","s",{{"kind":1,"id":"{id}"}}]"#);
        assert_eq!(fast_delivery(&other_key), None);
        let escaped = format!(r#"["EVENT","a"b",{{"id":"{id}"}}]"#);
        assert_eq!(fast_delivery(&escaped), None);
        let spaced = format!(r#"["EVENT", "s", {{"id":"{id}"}}]"#);
        assert_eq!(fast_delivery(&spaced), None);
        let short = format!(r#"["EVENT","s",{{"id":"{}"}}]"#, &id[..63]);
        assert_eq!(fast_delivery(&short), None);
        assert_eq!(fast_delivery(r#"["EVENT","s",{"id":"é"#), None);
        assert_eq!(fast_delivery(r#"["OK","x",true,""]"#), None);
    }
}
