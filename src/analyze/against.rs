//! A replay set against the recording it came from: for a recorded trace, each outcome row
//! carries what the recorded relay answered, so a report can say where the build under
//! test answers differently ("the recorded relay accepted 4,180 of 4,200 events; this run
//! accepted 3,950: 230 now `rate-limited:`"). A leaf: tallied per row, reported once.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::class::Class;
use super::stats::{percentiles_scaled, Percentiles};
use crate::capture::results::{Outcome, OutcomeRow};
use crate::capture::{Op, Reply};
use crate::nostr::Prefix;

/// Example messages kept per change, and changes kept (the rest are summed as "(other)").
const CHANGES_MAX: usize = 64;

/// What one pass learns, mergeable across decoders and files.
#[derive(Clone)]
pub struct Against {
    pub records: u64,
    pub events: u64,
    pub events_recorded_accepted: u64,
    pub events_replayed_accepted: u64,
    pub reads: u64,
    pub reads_recorded_answered: u64,
    pub reads_replayed_answered: u64,
    pub same: u64,
    /// (recorded, replayed) → how many, and the first record's index and message.
    pub changes: BTreeMap<(String, String), (u64, u64, String)>,
    /// The recorded relay's response times (its answers as the proxy saw them), µs.
    pub recorded_response: Histogram<u64>,
}

impl Default for Against {
    fn default() -> Self {
        Against {
            records: 0,
            events: 0,
            events_recorded_accepted: 0,
            events_replayed_accepted: 0,
            reads: 0,
            reads_recorded_answered: 0,
            reads_replayed_answered: 0,
            same: 0,
            changes: BTreeMap::new(),
            recorded_response: crate::histogram::latency(),
        }
    }
}

/// The recorded answer in the words outcomes use: `ok`, `rejected rate-limited:`, `eose`,
/// `closed auth-required:`, `count`, `no answer`. `None` for a record nothing answers
/// (CLOSE, other frames). `duplicate:` is `ok` on both sides: whether a relay already had
/// an event says what its database held, not how its build behaves.
fn recorded_label(reply: &Reply) -> Option<String> {
    Some(match reply {
        Reply::Ok { accepted, message } => match accepted {
            true => "ok".into(),
            false => format!("rejected {}", prefix(message)),
        },
        Reply::Eose { .. } => "eose".into(),
        Reply::Closed { message, .. } => format!("closed {}", prefix(message)),
        Reply::Count { .. } => "count".into(),
        Reply::None => "no answer".into(),
        Reply::NotExpected => return None,
    })
}

/// The replay's outcome in the same words (a REQ's `ok` is its `eose`).
fn replayed_label(o: &OutcomeRow) -> String {
    match (&o.outcome, o.op) {
        (Outcome::Ok, Op::Req { .. }) => "eose".into(),
        (Outcome::Ok, Op::Count) => "count".into(),
        (Outcome::Duplicate, _) => "ok".into(),
        (Outcome::Rejected { message, .. }, _) => format!("rejected {}", prefix(message)),
        (Outcome::Closed { message, .. }, _) => format!("closed {}", prefix(message)),
        (outcome, _) => outcome.label().into_owned(),
    }
}

/// A message's machine-readable prefix as the relay wrote it (`rate-limited:`, and also
/// prefixes NIP-01 does not list, such as rnostr's `replaced:`), or `other`.
fn prefix(message: &str) -> String {
    match message.split_once(':') {
        Some((p, _)) if !p.is_empty() && p.len() <= 32 && !p.contains(char::is_whitespace) => {
            format!("{p}:")
        }
        _ => Prefix::Other.as_str().into(),
    }
}

fn accepted(reply: &Reply) -> bool {
    matches!(reply, Reply::Ok { accepted: true, .. })
}

impl Against {
    pub fn note(&mut self, o: &OutcomeRow) {
        let Some(answer) = &o.recorded else {
            return;
        };
        let Some(recorded) = recorded_label(&answer.reply) else {
            return;
        };
        // An AUTH is recorded with its answer but never replayed: nothing to set against.
        if matches!(o.op, Op::Auth) {
            return;
        }
        self.records += 1;
        if answer.reply != Reply::None {
            crate::histogram::record_ns(&mut self.recorded_response, answer.after_us * 1_000);
        }
        match Class::of(o.op) {
            Class::Read => {
                self.reads += 1;
                self.reads_recorded_answered += u64::from(matches!(
                    answer.reply,
                    Reply::Eose { .. } | Reply::Count { .. }
                ));
                self.reads_replayed_answered += u64::from(o.outcome == Outcome::Ok);
            }
            _ if o.op.is_event() => {
                self.events += 1;
                self.events_recorded_accepted += u64::from(accepted(&answer.reply));
                self.events_replayed_accepted += u64::from(o.outcome.succeeded());
            }
            _ => {}
        }
        let replayed = replayed_label(o);
        if replayed == recorded {
            self.same += 1;
            return;
        }
        let message = match &o.outcome {
            Outcome::Rejected { message, .. } | Outcome::Closed { message, .. } => message.clone(),
            _ => String::new(),
        };
        let key = if self.changes.len() < CHANGES_MAX
            || self
                .changes
                .contains_key(&(recorded.clone(), replayed.clone()))
        {
            (recorded, replayed)
        } else {
            ("(other)".into(), "(other)".into())
        };
        let entry = self.changes.entry(key).or_insert((0, o.index, message));
        entry.0 += 1;
    }

    pub fn add(&mut self, other: &Against) {
        self.records += other.records;
        self.events += other.events;
        self.events_recorded_accepted += other.events_recorded_accepted;
        self.events_replayed_accepted += other.events_replayed_accepted;
        self.reads += other.reads;
        self.reads_recorded_answered += other.reads_recorded_answered;
        self.reads_replayed_answered += other.reads_replayed_answered;
        self.same += other.same;
        for (k, (n, index, message)) in &other.changes {
            let e = self
                .changes
                .entry(k.clone())
                .or_insert((0, *index, message.clone()));
            e.0 += n;
            // The lowest index, whichever decoder saw it first.
            if *index < e.1 {
                e.1 = *index;
                e.2 = message.clone();
            }
        }
        let _ = self.recorded_response.add(&other.recorded_response);
    }
}

/// The report's section: present only when the trace was recorded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgainstRecording {
    /// In a sentence: events accepted then and now, and the largest change.
    pub headline: String,
    /// Records with a recorded answer to compare (AUTH, CLOSE and other frames excluded).
    pub records: u64,
    /// Of them, answered the same way by this run.
    pub same: u64,
    pub events: u64,
    pub events_recorded_accepted: u64,
    pub events_replayed_accepted: u64,
    pub reads: u64,
    pub reads_recorded_answered: u64,
    pub reads_replayed_answered: u64,
    /// Where this run answered differently, most records first.
    pub changes: Vec<Change>,
    /// The recorded relay's response times, as the proxy saw them (ms).
    pub recorded_response_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// The recorded relay's answer (`ok`, `rejected rate-limited:`, `eose`, `no answer`…).
    pub recorded: String,
    /// This run's outcome in the same words (`eose` is a REQ's `ok`).
    pub replayed: String,
    pub records: u64,
    /// The first record (trace index) this happened to, and this run's message for it.
    pub example_record: u64,
    pub example_message: String,
}

/// The section, or `None` when no row carried a recorded answer.
pub fn report(a: &Against) -> Option<AgainstRecording> {
    if a.records == 0 {
        return None;
    }
    let mut changes: Vec<Change> = a
        .changes
        .iter()
        .map(|((recorded, replayed), (n, index, message))| Change {
            recorded: recorded.clone(),
            replayed: replayed.clone(),
            records: *n,
            example_record: *index,
            example_message: message.clone(),
        })
        .collect();
    changes.sort_by(|x, y| y.records.cmp(&x.records).then(x.recorded.cmp(&y.recorded)));
    let mut headline = format!(
        "the recorded relay accepted {} of {} events; this run accepted {}",
        a.events_recorded_accepted, a.events, a.events_replayed_accepted
    );
    match changes.first() {
        Some(c) => headline.push_str(&format!(
            ": {} now `{}` that were `{}`",
            c.records, c.replayed, c.recorded
        )),
        None => headline.push_str(", every record answered as recorded"),
    }
    Some(AgainstRecording {
        headline,
        records: a.records,
        same: a.same,
        events: a.events,
        events_recorded_accepted: a.events_recorded_accepted,
        events_replayed_accepted: a.events_replayed_accepted,
        reads: a.reads,
        reads_recorded_answered: a.reads_recorded_answered,
        reads_replayed_answered: a.reads_replayed_answered,
        changes,
        recorded_response_ms: percentiles_scaled(&a.recorded_response, 1_000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Answer, Query, Role};

    fn row(index: u64, op: Op, outcome: Outcome, reply: Reply) -> OutcomeRow {
        OutcomeRow {
            index,
            conn: 0,
            op,
            intended_ns: 0,
            sent_ns: Some(1),
            completed_ns: Some(2),
            outcome,
            bytes: 10,
            events_received: 0,
            held_ns: 0,
            recorded: Some(Box::new(Answer {
                after_us: 1_500,
                reply,
            })),
        }
    }

    const VIEW: Op = Op::Event {
        kind: 30079,
        role: Role::View,
    };

    fn ok(accepted: bool, message: &str) -> Reply {
        Reply::Ok {
            accepted,
            message: message.into(),
        }
    }

    #[test]
    fn a_rejection_the_recorded_relay_did_not_make_is_named() {
        let mut a = Against::default();
        a.note(&row(0, VIEW, Outcome::Ok, ok(true, "")));
        a.note(&row(
            1,
            VIEW,
            Outcome::Rejected {
                prefix: Prefix::RateLimited,
                message: "rate-limited: slow down".into(),
            },
            ok(true, ""),
        ));
        a.note(&row(
            2,
            VIEW,
            Outcome::Duplicate,
            ok(true, "duplicate: have it"),
        ));
        a.note(&row(
            3,
            Op::Req { query: Query::Feed },
            Outcome::Ok,
            Reply::Eose { events: 3 },
        ));
        a.note(&row(4, Op::Close, Outcome::Ok, Reply::NotExpected));
        let r = report(&a).expect("recorded rows");
        // The duplicate counts as answered the same way.
        assert_eq!((r.records, r.same, r.events), (4, 3, 3));
        assert_eq!(
            (r.events_recorded_accepted, r.events_replayed_accepted),
            (3, 2)
        );
        assert_eq!((r.reads, r.reads_replayed_answered), (1, 1));
        assert_eq!(r.changes.len(), 1);
        let c = &r.changes[0];
        assert_eq!(
            (c.recorded.as_str(), c.replayed.as_str()),
            ("ok", "rejected rate-limited:")
        );
        assert_eq!((c.records, c.example_record), (1, 1));
        assert_eq!(c.example_message, "rate-limited: slow down");
        assert!(
            r.headline.contains(
                "accepted 3 of 3 events; this run accepted 2: 1 now `rejected rate-limited:`"
            ),
            "{}",
            r.headline
        );
        assert_eq!(r.recorded_response_ms.map(|p| p.p50), Some(1.5));
    }

    #[test]
    fn merged_tallies_keep_the_first_example() {
        let rejected = |i| {
            row(
                i,
                VIEW,
                Outcome::Rejected {
                    prefix: Prefix::Invalid,
                    message: format!("invalid: {i}"),
                },
                ok(true, ""),
            )
        };
        let (mut x, mut y) = (Against::default(), Against::default());
        x.note(&rejected(9));
        y.note(&rejected(4));
        x.add(&y);
        let r = report(&x).expect("rows");
        assert_eq!((r.changes[0].records, r.changes[0].example_record), (2, 4));
        assert_eq!(r.changes[0].example_message, "invalid: 4");
    }

    #[test]
    fn synthesized_rows_make_no_section() {
        let mut a = Against::default();
        let mut r = row(0, VIEW, Outcome::Ok, ok(true, ""));
        r.recorded = None;
        a.note(&r);
        assert!(report(&a).is_none());
    }
}
