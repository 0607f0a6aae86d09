//! Predicting rejections before sending: the trace read against the limits a relay
//! advertises (NIP-11), counting the records each limit would affect.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::capture::results::{Prediction, Preflight};
use crate::capture::{Op, TraceReader};
use crate::guard::Target;
use crate::nip11::{self, Document, Limitation};

/// Fetches `target`'s NIP-11 document (over https trusting `ca_files` too) and predicts
/// what its limits do to `trace`, from now.
pub fn run(
    target: &Target,
    trace: &Path,
    ca_files: &[std::path::PathBuf],
) -> anyhow::Result<Preflight> {
    let mut p = nip11::fetch(target, ca_files);
    if let Some(doc) = p.document.as_deref().and_then(|t| Document::parse(t).ok()) {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        p.predictions = predict(trace, &doc.limitation, now)?;
    }
    Ok(p)
}

/// The preflight in lines for a terminal: the build the relay says it is, then each
/// prediction.
pub fn describe(p: &Preflight) -> Vec<String> {
    let mut out = Vec::new();
    match p.document.as_deref().and_then(|t| Document::parse(t).ok()) {
        Some(doc) => out.push(format!(
            "relay         {} (NIP-11 at {})",
            doc.build().unwrap_or_else(|| "software not named".into()),
            p.url
        )),
        None => out.push(format!(
            "relay         NIP-11 {}",
            p.note.as_deref().unwrap_or("not advertised")
        )),
    }
    for x in &p.predictions {
        out.push(format!(
            "  predicted   {} records hit {} = {}: {}",
            x.records, x.limit, x.advertised, x.what
        ));
    }
    out
}

/// `--strict-limits`: no run when an advertised limit would refuse a record.
pub fn refuse_if_strict(p: &Preflight, strict: bool) -> anyhow::Result<()> {
    match p.predictions.first() {
        Some(x) if strict => Err(anyhow::anyhow!(
            "--strict-limits: the relay advertises {} = {}, which would refuse {} records of the trace ({}); nothing sent",
            x.limit,
            x.advertised,
            x.records,
            x.what
        )),
        _ => Ok(()),
    }
}

#[derive(Default)]
struct Counts {
    message_length: u64,
    event_tags: u64,
    content_length: u64,
    too_old: u64,
    too_new: u64,
    subscriptions: u64,
    filters: u64,
    limit: u64,
    subid_length: u64,
    events: u64,
}

/// The records of `trace` each advertised limit in `l` would affect, `now_s` being the
/// run's start (unix seconds) for the `created_at` window. Limits not advertised, and those
/// no record reaches, are left out; a `*_required` flag counts every event.
pub fn predict(trace: &Path, l: &Limitation, now_s: u64) -> anyhow::Result<Vec<Prediction>> {
    let c = count(trace, l, now_s)?;
    Ok(predictions(l, &c))
}

/// Reads the trace once, counting the records each advertised limit reaches.
fn count(trace: &Path, l: &Limitation, now_s: u64) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    // Open subscriptions per connection, for `max_subscriptions`.
    let mut open: HashMap<u32, u64> = HashMap::new();
    let mut reader = TraceReader::open(trace)?;
    let needs_event_json = l.max_event_tags.is_some()
        || l.max_content_length.is_some()
        || l.created_at_lower_limit.is_some()
        || l.created_at_upper_limit.is_some();
    let needs_req_json =
        l.max_filters.is_some() || l.max_limit.is_some() || l.max_subid_length.is_some();
    while let Some(r) = reader.next_record()? {
        if l.max_message_length
            .is_some_and(|max| r.frame.len() as u64 > max)
        {
            c.message_length += 1;
        }
        match r.op {
            Op::Event { .. } => {
                c.events += 1;
                if needs_event_json {
                    count_event(&mut c, l, &r.frame, now_s);
                }
            }
            Op::Req { .. } => {
                let n = open.entry(r.client).or_insert(0);
                *n += 1;
                if l.max_subscriptions.is_some_and(|max| *n > max) {
                    c.subscriptions += 1;
                }
                if needs_req_json {
                    count_req(&mut c, l, &r.frame);
                }
            }
            Op::Close => {
                if let Some(n) = open.get_mut(&r.client) {
                    *n = n.saturating_sub(1);
                }
            }
            // A COUNT is answered once and holds no subscription open; AUTH is not
            // replayed; other frames are limited by their length only.
            Op::Count | Op::Auth | Op::Other => {}
        }
    }
    Ok(c)
}

/// The event limits one EVENT frame reaches.
fn count_event(c: &mut Counts, l: &Limitation, frame: &str, now_s: u64) {
    let frame: Value = serde_json::from_str(frame).unwrap_or(Value::Null);
    let ev = &frame[1];
    let tags = ev["tags"].as_array().map_or(0, Vec::len) as u64;
    if l.max_event_tags.is_some_and(|max| tags > max) {
        c.event_tags += 1;
    }
    let content = ev["content"].as_str().map_or(0, str::len) as u64;
    if l.max_content_length.is_some_and(|max| content > max) {
        c.content_length += 1;
    }
    let at = ev["created_at"].as_u64().unwrap_or(now_s);
    if l.created_at_lower_limit
        .is_some_and(|lower| at < now_s.saturating_sub(lower))
    {
        c.too_old += 1;
    }
    if l.created_at_upper_limit
        .is_some_and(|upper| at > now_s + upper)
    {
        c.too_new += 1;
    }
}

/// The REQ limits one REQ frame reaches.
fn count_req(c: &mut Counts, l: &Limitation, frame: &str) {
    let frame: Value = serde_json::from_str(frame).unwrap_or(Value::Null);
    let parts = frame.as_array().map_or(&[][..], Vec::as_slice);
    let sub = parts.get(1).and_then(Value::as_str).unwrap_or("");
    if l.max_subid_length.is_some_and(|max| sub.len() as u64 > max) {
        c.subid_length += 1;
    }
    let filters = parts.len().saturating_sub(2) as u64;
    if l.max_filters.is_some_and(|max| filters > max) {
        c.filters += 1;
    }
    let over_limit = parts.iter().skip(2).any(|f| {
        let asked = f["limit"].as_u64();
        l.max_limit.is_some_and(|max| asked.is_none_or(|a| a > max))
    });
    if over_limit {
        c.limit += 1;
    }
}

/// The `*_required` flags (each, when set, reaches every event) with what they do.
fn required_flags(l: &Limitation) -> [(&'static str, Option<bool>, &'static str); 3] {
    [
        (
            "auth_required",
            l.auth_required,
            "every event: refused until the client authenticates (NIP-42)",
        ),
        (
            "payment_required",
            l.payment_required,
            "every event: refused unless the key has paid",
        ),
        (
            "restricted_writes",
            l.restricted_writes,
            "every event: refused unless the relay allows its author",
        ),
    ]
}

/// The numeric limits with the records each reaches and what they do to those records.
fn numeric_limits<'a>(
    l: &Limitation,
    c: &Counts,
    too_long: &'a str,
) -> [(&'static str, Option<u64>, u64, &'a str); 9] {
    [
        (
            "max_message_length",
            l.max_message_length,
            c.message_length,
            too_long,
        ),
        (
            "max_event_tags",
            l.max_event_tags,
            c.event_tags,
            "events with more tags: refused",
        ),
        (
            "max_content_length",
            l.max_content_length,
            c.content_length,
            "events with longer content: refused",
        ),
        (
            "created_at_lower_limit",
            l.created_at_lower_limit,
            c.too_old,
            "events older than the window at the run's start: refused",
        ),
        (
            "created_at_upper_limit",
            l.created_at_upper_limit,
            c.too_new,
            "events newer than the window at the run's start: refused",
        ),
        (
            "max_subscriptions",
            l.max_subscriptions,
            c.subscriptions,
            "REQs past the open subscriptions a connection may hold: CLOSED",
        ),
        (
            "max_filters",
            l.max_filters,
            c.filters,
            "REQs with more filters: refused",
        ),
        (
            "max_limit",
            l.max_limit,
            c.limit,
            "REQs asking for more events (or no limit): answered with at most this many",
        ),
        (
            "max_subid_length",
            l.max_subid_length,
            c.subid_length,
            "REQs with longer subscription ids: refused",
        ),
    ]
}

/// One prediction per advertised limit some record reaches, in the order NIP-11 lists them.
fn predictions(l: &Limitation, c: &Counts) -> Vec<Prediction> {
    let too_long = format!(
        "frames longer than {} bytes: refused",
        l.max_message_length.unwrap_or(0)
    );
    let numeric = numeric_limits(l, c, &too_long);
    let flags = required_flags(l);
    let numeric = numeric
        .into_iter()
        .filter_map(|(limit, value, records, what)| {
            Some((limit, value?.to_string(), records, what))
        });
    let flags = flags
        .into_iter()
        .filter(|(_, flag, _)| *flag == Some(true))
        .map(|(limit, _, what)| (limit, "true".to_owned(), c.events, what));
    numeric
        .chain(flags)
        .filter(|(_, _, records, _)| *records > 0)
        .map(|(limit, advertised, records, what)| Prediction {
            limit: limit.into(),
            advertised,
            records,
            what: what.into(),
        })
        .collect()
}
