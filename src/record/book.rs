//! The recording's book: client frames become trace records in the order the proxy saw
//! them, each kept until the recorded relay answers it (or its wait ends), then handed out
//! in order. No sockets and no clock of its own: times are passed in, so every path is
//! unit-tested in microseconds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::capture::trace::MESSAGE_KEPT;
use crate::capture::{Answer, Completion, Op, Query, Record, Reply, Role};
use crate::nostr::RelayMessage;

/// Why a recorded NIP-42 AUTH is not replayed; its outcome says so.
pub const AUTH_SKIPPED: &str =
    "NIP-42 AUTH is not replayed: it answers a challenge only the recorded relay issued";

/// What answers a client frame, as the book matches relay frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Id([u8; 32]),
    Sub(String),
    None,
}

/// A client frame in trace terms: what it is, what completes it on replay, and what
/// answers it here.
fn classify(text: &str) -> (Op, Completion, Key) {
    let other = (Op::Other, Completion::Sent, Key::None);
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
        return other;
    };
    let str_at = |i: usize| items.get(i).and_then(Value::as_str);
    let event_id = |v: Option<&Value>| -> Option<([u8; 32], String)> {
        let id = v?.get("id")?.as_str()?;
        let mut raw = [0u8; 32];
        hex::decode_to_slice(id, &mut raw).ok()?;
        Some((raw, id.to_ascii_lowercase()))
    };
    match str_at(0) {
        Some("EVENT") => {
            let event = items.get(1);
            let (Some((raw, id)), Some(kind)) = (
                event_id(event),
                event
                    .and_then(|e| e.get("kind"))
                    .and_then(Value::as_u64)
                    .and_then(|k| u16::try_from(k).ok()),
            ) else {
                return other;
            };
            let is_view = event
                .and_then(|e| e.get("tags"))
                .and_then(Value::as_array)
                .is_some_and(|tags| {
                    tags.iter().any(|t| {
                        t.get(0).and_then(Value::as_str) == Some("t")
                            && t.get(1).and_then(Value::as_str) == Some("view")
                    })
                });
            (
                Op::Event {
                    kind,
                    role: Role::of(kind, is_view),
                },
                Completion::Ok { id },
                Key::Id(raw),
            )
        }
        Some("REQ") => match str_at(1) {
            Some(sub) => (
                Op::Req {
                    query: items.get(2).map_or(Query::Other, Query::of),
                },
                Completion::Eose { sub: sub.into() },
                Key::Sub(sub.into()),
            ),
            None => other,
        },
        Some("COUNT") => match str_at(1) {
            Some(sub) => (
                Op::Count,
                Completion::Count { sub: sub.into() },
                Key::Sub(sub.into()),
            ),
            None => other,
        },
        Some("CLOSE") if str_at(1).is_some() => (Op::Close, Completion::Sent, Key::None),
        Some("AUTH") => (
            Op::Auth,
            Completion::Skip {
                reason: AUTH_SKIPPED.into(),
            },
            // The relay answers an AUTH with an OK for its event id: kept, not replayed.
            event_id(items.get(1)).map_or(Key::None, |(raw, _)| Key::Id(raw)),
        ),
        _ => other,
    }
}

/// A record not yet handed out.
struct Slot {
    record: Record,
    conn: u32,
    key: Key,
    sent: Instant,
    done: bool,
}

/// One client connection's records waiting for answers.
#[derive(Default)]
struct Conn {
    /// Event id → record waiting for its OK.
    ids: HashMap<[u8; 32], u64>,
    /// Subscription → record waiting for its EOSE, CLOSED or COUNT, and the events so far.
    subs: HashMap<String, (u64, u32)>,
    /// Subscription → its REQ, once answered: a CLOSE sent afterwards follows it.
    answered: HashMap<String, u64>,
}

/// Totals for the progress line and the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub records: u64,
    pub events: u64,
    pub reqs: u64,
    pub auth: u64,
    /// Frames that are no NIP-01 message lt knows (kept, replayed as they were).
    pub other: u64,
    pub client_bytes: u64,
    pub relay_frames: u64,
    pub relay_bytes: u64,
    /// Relay frames lt could not read (forwarded all the same).
    pub relay_unreadable: u64,
    pub notices: u64,
    pub challenges: u64,
    /// Records the relay answered, and those whose wait ended without an answer.
    pub answered: u64,
    pub unanswered: u64,
}

pub struct Book {
    start: Instant,
    answer_timeout: Duration,
    last_offset_us: u64,
    /// Index of `queue[0]`.
    first: u64,
    queue: VecDeque<Slot>,
    conns: HashMap<u32, Conn>,
    pub counts: Counts,
}

impl Book {
    pub fn new(start: Instant, answer_timeout: Duration) -> Book {
        Book {
            start,
            answer_timeout,
            last_offset_us: 0,
            first: 0,
            queue: VecDeque::new(),
            conns: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// A frame client `conn` sent at `at`.
    pub fn client_frame(&mut self, conn: u32, at: Instant, text: String) {
        let (op, completes, key) = classify(&text);
        let index = self.first + self.queue.len() as u64;
        let c = self.conns.entry(conn).or_default();
        let mut after = None;
        match (&op, &key) {
            (Op::Close, _) => {
                // A CLOSE after its REQ's EOSE waits for it on replay too, as in synth's traces.
                if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) {
                    if let Some(sub) = items.get(1).and_then(Value::as_str) {
                        after = c.answered.remove(sub);
                    }
                }
            }
            (_, Key::Id(id)) => {
                c.ids.insert(*id, index);
            }
            (_, Key::Sub(sub)) => {
                c.answered.remove(sub);
                c.subs.insert(sub.clone(), (index, 0));
            }
            (_, Key::None) => {}
        }
        self.counts.records += 1;
        self.counts.client_bytes += text.len() as u64;
        match op {
            Op::Event { .. } => self.counts.events += 1,
            Op::Req { .. } | Op::Count => self.counts.reqs += 1,
            Op::Auth => self.counts.auth += 1,
            Op::Other => self.counts.other += 1,
            Op::Close => {}
        }
        // Frames of different connections reach the book in the order they were sent, to
        // within the channel's hand-over; offsets never go back.
        let offset_us =
            (at.saturating_duration_since(self.start).as_micros() as u64).max(self.last_offset_us);
        self.last_offset_us = offset_us;
        let expects = key != Key::None;
        self.queue.push_back(Slot {
            record: Record {
                offset_us,
                client: conn,
                op,
                frame: text,
                completes,
                after,
                recorded: (!expects).then_some(Answer {
                    after_us: 0,
                    reply: Reply::NotExpected,
                }),
            },
            conn,
            key,
            sent: at,
            done: !expects,
        });
    }

    /// A frame the relay sent to client `conn` at `at`.
    pub fn relay_frame(&mut self, conn: u32, at: Instant, text: &str) {
        self.counts.relay_frames += 1;
        self.counts.relay_bytes += text.len() as u64;
        let Ok(message) = RelayMessage::parse(text) else {
            self.counts.relay_unreadable += 1;
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let (index, reply) = match message {
            RelayMessage::Ok {
                id,
                accepted,
                message,
            } => match c.ids.remove(&id) {
                Some(index) => (
                    index,
                    Reply::Ok {
                        accepted,
                        message: kept(&message),
                    },
                ),
                None => return,
            },
            RelayMessage::Event { sub, .. } => {
                if let Some((_, events)) = c.subs.get_mut(sub.as_ref()) {
                    *events += 1;
                }
                return;
            }
            RelayMessage::Eose(sub) => match c.subs.remove(sub.as_ref()) {
                Some((index, events)) => {
                    c.answered.insert(sub.into_owned(), index);
                    (index, Reply::Eose { events })
                }
                None => return,
            },
            RelayMessage::Closed { sub, message } => match c.subs.remove(sub.as_ref()) {
                Some((index, events)) => (
                    index,
                    Reply::Closed {
                        events,
                        message: kept(&message),
                    },
                ),
                None => return,
            },
            RelayMessage::Count { sub, result } => match c.subs.remove(sub.as_ref()) {
                Some((index, _)) => {
                    let count = serde_json::from_str::<Value>(result.get())
                        .ok()
                        .and_then(|v| v.get("count").and_then(Value::as_u64))
                        .unwrap_or(0);
                    (index, Reply::Count { count })
                }
                None => return,
            },
            RelayMessage::Notice(_) => {
                self.counts.notices += 1;
                return;
            }
            RelayMessage::Auth(_) => {
                self.counts.challenges += 1;
                return;
            }
        };
        self.resolve(index, at, reply);
    }

    /// Client `conn`'s connection ended: what it still waits for has no answer.
    pub fn closed(&mut self, conn: u32, at: Instant) {
        if let Some(c) = self.conns.remove(&conn) {
            let waiting: Vec<u64> = c
                .ids
                .values()
                .copied()
                .chain(c.subs.values().map(|(i, _)| *i))
                .collect();
            for index in waiting {
                self.resolve(index, at, Reply::None);
            }
        }
    }

    /// Records that waited longer than the answer timeout by `now` end without an answer.
    pub fn expire(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .queue
            .iter()
            .enumerate()
            .take_while(|(_, s)| s.sent + self.answer_timeout <= now)
            .filter(|(_, s)| !s.done)
            .map(|(i, _)| self.first + i as u64)
            .collect();
        for index in due {
            self.resolve(index, now, Reply::None);
        }
    }

    /// The next record in order, once it is complete.
    pub fn pop_ready(&mut self) -> Option<Record> {
        if !self.queue.front()?.done {
            return None;
        }
        let slot = self.queue.pop_front()?;
        self.first += 1;
        Some(slot.record)
    }

    /// The recording ends: whatever still waits has no answer. Returns every record left, in
    /// order.
    pub fn finish(&mut self, at: Instant) -> Vec<Record> {
        let conns: Vec<u32> = self.conns.keys().copied().collect();
        for conn in conns {
            self.closed(conn, at);
        }
        let mut out = Vec::with_capacity(self.queue.len());
        while let Some(r) = self.pop_ready() {
            out.push(r);
        }
        out
    }

    /// Records waiting to be handed out (answered or not).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    fn resolve(&mut self, index: u64, at: Instant, reply: Reply) {
        let Some(slot) = index
            .checked_sub(self.first)
            .and_then(|i| self.queue.get_mut(i as usize))
        else {
            return;
        };
        if slot.done {
            return;
        }
        if reply == Reply::None {
            self.counts.unanswered += 1;
            // Forget it, so a late answer cannot be taken for another record's.
            if let Some(c) = self.conns.get_mut(&slot.conn) {
                match &slot.key {
                    Key::Id(id) => {
                        c.ids.remove(id);
                    }
                    Key::Sub(sub) => {
                        c.subs.remove(sub);
                    }
                    Key::None => {}
                }
            }
        } else {
            self.counts.answered += 1;
        }
        slot.done = true;
        slot.record.recorded = Some(Answer {
            after_us: if reply == Reply::None {
                0
            } else {
                at.saturating_duration_since(slot.sent).as_micros() as u64
            },
            reply,
        });
    }
}

/// A relay message as a recording keeps it: at most [`MESSAGE_KEPT`] bytes, cut at a
/// character boundary.
fn kept(message: &str) -> String {
    let mut end = message.len().min(MESSAGE_KEPT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const ID2: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    fn event(id: &str, kind: u16, tags: &str) -> String {
        format!(r#"["EVENT",{{"id":"{id}","kind":{kind},"tags":{tags},"content":""}}]"#)
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn drain(b: &mut Book) -> Vec<Record> {
        std::iter::from_fn(|| b.pop_ready()).collect()
    }

    #[test]
    fn an_event_waits_for_its_ok_and_keeps_the_answer() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, ms(t0, 5), event(ID, 30079, r#"[["t","view"]]"#));
        assert!(b.pop_ready().is_none(), "written only once answered");
        b.relay_frame(
            0,
            ms(t0, 8),
            &format!(r#"["OK","{ID}",false,"rate-limited: slow down"]"#),
        );
        let r = b.pop_ready().expect("answered");
        assert_eq!(r.offset_us, 5_000);
        assert_eq!(
            r.op,
            Op::Event {
                kind: 30079,
                role: Role::View
            }
        );
        assert_eq!(r.completes, Completion::Ok { id: ID.into() });
        assert_eq!(
            r.recorded,
            Some(Answer {
                after_us: 3_000,
                reply: Reply::Ok {
                    accepted: false,
                    message: "rate-limited: slow down".into()
                }
            })
        );
        assert_eq!(b.counts.answered, 1);
    }

    #[test]
    fn records_are_handed_out_in_the_order_they_were_sent() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, ms(t0, 1), event(ID, 1, "[]"));
        b.client_frame(1, ms(t0, 2), event(ID2, 1, "[]"));
        // The second is answered first; it still waits for the first.
        b.relay_frame(1, ms(t0, 3), &format!(r#"["OK","{ID2}",true,""]"#));
        assert!(b.pop_ready().is_none());
        b.relay_frame(0, ms(t0, 4), &format!(r#"["OK","{ID}",true,""]"#));
        let out = drain(&mut b);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].client, out[1].client), (0, 1));
        assert_eq!(out[0].recorded.as_ref().map(|a| a.after_us), Some(3_000));
        assert_eq!(out[1].recorded.as_ref().map(|a| a.after_us), Some(1_000));
    }

    #[test]
    fn an_answer_on_another_connection_does_not_count() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, t0, event(ID, 1, "[]"));
        b.relay_frame(1, t0, &format!(r#"["OK","{ID}",true,""]"#));
        assert!(b.pop_ready().is_none());
    }

    #[test]
    fn a_req_counts_its_events_and_a_close_after_eose_follows_it() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(
            2,
            ms(t0, 1),
            r##"["REQ","feed",{"kinds":[30078],"#t":["video"],"limit":150}]"##.into(),
        );
        b.relay_frame(2, ms(t0, 2), r#"["EVENT","feed",{"id":"x"}]"#);
        b.relay_frame(2, ms(t0, 2), r#"["EVENT","other",{"id":"x"}]"#);
        b.relay_frame(2, ms(t0, 3), r#"["EVENT","feed",{"id":"y"}]"#);
        b.relay_frame(2, ms(t0, 4), r#"["EOSE","feed"]"#);
        b.client_frame(2, ms(t0, 5), r#"["CLOSE","feed"]"#.into());
        let out = drain(&mut b);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].op, Op::Req { query: Query::Feed });
        assert_eq!(out[0].completes, Completion::Eose { sub: "feed".into() });
        assert_eq!(
            out[0].recorded.as_ref().map(|a| &a.reply),
            Some(&Reply::Eose { events: 2 })
        );
        assert_eq!(out[1].op, Op::Close);
        assert_eq!(out[1].after, Some(0));
        assert_eq!(
            out[1].recorded.as_ref().map(|a| &a.reply),
            Some(&Reply::NotExpected)
        );
    }

    #[test]
    fn a_close_before_eose_has_no_dependency() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, t0, r#"["REQ","s",{"kinds":[1]}]"#.into());
        b.client_frame(0, t0, r#"["CLOSE","s"]"#.into());
        let out = b.finish(ms(t0, 1));
        assert_eq!(out[1].after, None);
        assert_eq!(
            out[0].recorded.as_ref().map(|a| &a.reply),
            Some(&Reply::None)
        );
    }

    #[test]
    fn count_closed_auth_and_other_frames() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, t0, r#"["COUNT","c",{"kinds":[1]}]"#.into());
        b.client_frame(0, t0, r#"["REQ","r",{"kinds":[1]}]"#.into());
        b.client_frame(0, t0, format!(r#"["AUTH",{{"id":"{ID}","kind":22242}}]"#));
        b.client_frame(0, t0, "not json".into());
        b.client_frame(0, t0, r#"["HELLO"]"#.into());
        b.relay_frame(0, ms(t0, 1), r#"["COUNT","c",{"count":42}]"#);
        b.relay_frame(0, ms(t0, 1), r#"["CLOSED","r","auth-required: sign in"]"#);
        b.relay_frame(0, ms(t0, 1), &format!(r#"["OK","{ID}",true,""]"#));
        b.relay_frame(0, ms(t0, 1), r#"["NOTICE","hi"]"#);
        b.relay_frame(0, ms(t0, 1), "garbage");
        let out = drain(&mut b);
        let ops: Vec<Op> = out.iter().map(|r| r.op).collect();
        assert_eq!(
            ops,
            [
                Op::Count,
                Op::Req {
                    query: Query::Other
                },
                Op::Auth,
                Op::Other,
                Op::Other
            ]
        );
        let replies: Vec<&Reply> = out
            .iter()
            .map(|r| &r.recorded.as_ref().expect("answered").reply)
            .collect();
        assert_eq!(replies[0], &Reply::Count { count: 42 });
        assert_eq!(
            replies[1],
            &Reply::Closed {
                events: 0,
                message: "auth-required: sign in".into()
            }
        );
        assert!(matches!(replies[2], Reply::Ok { accepted: true, .. }));
        assert_eq!(
            out[2].completes,
            Completion::Skip {
                reason: AUTH_SKIPPED.into()
            }
        );
        assert_eq!(replies[3], &Reply::NotExpected);
        assert_eq!(out[3].completes, Completion::Sent);
        assert_eq!(b.counts.notices, 1);
        assert_eq!(b.counts.relay_unreadable, 1);
        assert_eq!(b.counts.other, 2);
    }

    #[test]
    fn a_wait_ends_at_the_timeout_and_a_late_answer_is_ignored() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_millis(100));
        b.client_frame(0, t0, event(ID, 1, "[]"));
        b.client_frame(0, ms(t0, 50), event(ID2, 1, "[]"));
        b.expire(ms(t0, 99));
        assert!(b.pop_ready().is_none());
        b.expire(ms(t0, 100));
        let first = b.pop_ready().expect("expired");
        assert_eq!(first.recorded.map(|a| a.reply), Some(Reply::None));
        assert!(b.pop_ready().is_none(), "the second still has time");
        b.relay_frame(0, ms(t0, 120), &format!(r#"["OK","{ID}",true,""]"#));
        assert_eq!(b.counts.answered, 0, "the late OK is not taken");
        b.relay_frame(0, ms(t0, 130), &format!(r#"["OK","{ID2}",true,""]"#));
        assert!(b.pop_ready().is_some());
        assert_eq!((b.counts.answered, b.counts.unanswered), (1, 1));
    }

    #[test]
    fn a_closed_connection_ends_its_waits_only() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, t0, event(ID, 1, "[]"));
        b.client_frame(1, t0, event(ID2, 1, "[]"));
        b.closed(0, ms(t0, 1));
        assert!(b.pop_ready().is_some());
        assert!(b.pop_ready().is_none());
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn offsets_never_go_back_and_messages_are_cut_at_a_character() {
        let t0 = Instant::now();
        let mut b = Book::new(t0, Duration::from_secs(10));
        b.client_frame(0, ms(t0, 10), r#"["CLOSE","a"]"#.into());
        b.client_frame(1, ms(t0, 9), r#"["CLOSE","b"]"#.into());
        let out = drain(&mut b);
        assert_eq!((out[0].offset_us, out[1].offset_us), (10_000, 10_000));
        let long = "é".repeat(MESSAGE_KEPT);
        let k = kept(&long);
        assert!(k.len() <= MESSAGE_KEPT && k.len() >= MESSAGE_KEPT - 1);
    }

    #[test]
    fn the_platform_reads_are_told_apart() {
        let q = |f: &str| Query::of(&serde_json::from_str(f).expect("json"));
        assert_eq!(
            q(r##"{"kinds":[30078],"#t":["video"],"limit":150}"##),
            Query::Feed
        );
        assert_eq!(
            q(r##"{"kinds":[30079],"#t":["view"],"#a":["x"]}"##),
            Query::ViewCount
        );
        assert_eq!(
            q(r##"{"kinds":[30078],"authors":["p"],"#t":["video"]}"##),
            Query::Channel
        );
        assert_eq!(q(r#"{"kinds":[1]}"#), Query::Other);
    }
}
