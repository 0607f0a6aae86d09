//! `lt inspect`: what a capture holds, checked end to end.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

use crate::capture::trace::{ImportTiming, Reply, Source};
use crate::capture::{Op, Record, Role, TraceReader};
use crate::cli::InspectArgs;
use crate::nostr::{ClientMessage, Event, Prefix};
use crate::units;

struct KindStats {
    sizes: Histogram<u64>,
    bytes: u64,
}

impl KindStats {
    fn new() -> KindStats {
        KindStats {
            // Frames up to 16 MiB at 3 significant digits.
            sizes: Histogram::new_with_bounds(1, 16 << 20, 3).expect("valid histogram bounds"),
            bytes: 0,
        }
    }
}

/// What one pass over the records gathers.
#[derive(Default)]
struct Tally {
    by_op: BTreeMap<Op, KindStats>,
    /// Records in the current second, the busiest second's count and which second it was.
    per_second: u64,
    second: Option<u64>,
    peak: u64,
    peak_second: u64,
    clients: u32,
    answers: BTreeMap<String, u64>,
    verified: u64,
}

impl Tally {
    fn add(&mut self, r: &Record) {
        let s = r.offset_us / 1_000_000;
        if self.second != Some(s) {
            self.second = Some(s);
            self.per_second = 0;
        }
        self.per_second += 1;
        if self.per_second > self.peak {
            self.peak = self.per_second;
            self.peak_second = s;
        }
        self.clients = self.clients.max(r.client.saturating_add(1));
        if let Some(a) = &r.recorded {
            *self.answers.entry(answer_label(&a.reply)).or_default() += 1;
        }
        let st = self.by_op.entry(r.op).or_insert_with(KindStats::new);
        st.sizes.saturating_record(r.frame.len() as u64);
        st.bytes += r.frame.len() as u64;
    }

    /// Records whose op `f` selects.
    fn count(&self, f: impl Fn(&Op) -> bool) -> u64 {
        self.by_op
            .iter()
            .filter(|(op, _)| f(op))
            .map(|(_, s)| s.sizes.len())
            .sum()
    }
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let path = &args.file;
    let size = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    let mut reader = TraceReader::open(path)?;
    let h = reader.header().clone();
    outln!("file         {} ({})", path.display(), units::bytes(size));
    outln!(
        "format       lt trace v{}, written by lt {}",
        h.format_version,
        h.lt_version
    );
    outln!("generator    {}", h.generator);
    outln!("schemas      {}", h.schema_source);
    print_source(&h.source);

    let mut tally = Tally::default();
    let mut shown = 0u64;
    while let Some(r) = reader.next_record()? {
        let index = reader.records_read() - 1;
        if shown < args.frames {
            print_frame(index, &r);
            shown += 1;
        }
        tally.add(&r);
        if args.verify && r.op.is_event() {
            verify(&r).with_context(|| format!("{}: record {index}", path.display()))?;
            tally.verified += 1;
        }
    }
    let t = reader
        .trailer()
        .cloned()
        .ok_or_else(|| anyhow!("{}: no trailer", path.display()))?;
    print_totals(&tally, &t, args.verify);
    print_kinds(&tally, t.records);
    print_mix(&tally, &h);
    Ok(ExitCode::SUCCESS)
}

fn print_totals(tally: &Tally, t: &crate::capture::trace::Trailer, verify: bool) {
    let span = t.last_offset_us as f64 / 1e6;
    outln!(
        "records      {} ({} events) over {span:.1} s; peak {} records in second {}",
        units::count(t.records),
        units::count(t.events),
        units::count(tally.peak),
        tally.peak_second
    );
    outln!(
        "connections  {} (clients that sent a record)",
        units::count(u64::from(tally.clients))
    );
    outln!(
        "trailer      verified: record count and fingerprint sha256:{}",
        t.fingerprint
    );
    if !tally.answers.is_empty() {
        let list: Vec<String> = tally
            .answers
            .iter()
            .map(|(label, n)| format!("{label} {}", units::count(*n)))
            .collect();
        outln!(
            "recorded     the recorded relay answered: {}",
            list.join(" · ")
        );
    }
    if verify {
        outln!(
            "signatures   verified: every event's id and BIP-340 signature ({})",
            units::count(tally.verified)
        );
    }
}

/// Records and frame sizes by kind.
fn print_kinds(tally: &Tally, records: u64) {
    outln!(
        "\n  {:<22} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "kind",
        "records",
        "share",
        "min B",
        "p50 B",
        "p90 B",
        "max B",
        "total"
    );
    for (op, st) in &tally.by_op {
        let n = st.sizes.len();
        outln!(
            "  {:<22} {:>10} {:>6.1}% {:>8} {:>8} {:>8} {:>8} {:>10}",
            op.label(),
            units::count(n),
            100.0 * n as f64 / records.max(1) as f64,
            st.sizes.min(),
            st.sizes.value_at_quantile(0.5),
            st.sizes.value_at_quantile(0.9),
            st.sizes.max(),
            units::bytes(st.bytes)
        );
    }
}

/// The share of views among views and video posts, beside what synth was asked for.
fn print_mix(tally: &Tally, h: &crate::capture::trace::Header) {
    let views = tally.count(|op| {
        matches!(
            op,
            Op::Event {
                role: Role::View,
                ..
            }
        )
    });
    let posts = tally.count(|op| matches!(op, Op::Event { kind: 30078, .. }));
    if views + posts > 0 {
        let asked = h.synth_options().map_or(String::new(), |o| {
            format!(" (asked {:.2}%)", 100.0 * o.view_share)
        });
        outln!(
            "\nmix          {:.2}% views among views + video posts{asked}",
            100.0 * views as f64 / (views + posts) as f64,
        );
    }
}

fn print_source(source: &Source) {
    match source {
        Source::Synth(o) => {
            let epoch_text = chrono::DateTime::from_timestamp(o.epoch as i64, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            outln!(
                "options      seed {} · clients {} · creators {} · duration {} s · rate {} events/s",
                o.seed,
                o.clients,
                o.creators,
                o.duration_s,
                o.rate_eps
            );
            outln!(
                "             mix {} views · read share {} · edit share {} · nip71 share {} · epoch {} ({epoch_text})",
                o.view_share, o.read_share, o.edit_share, o.nip71_share, o.epoch
            );
            if o.live_share > 0.0 {
                outln!(
                    "             live share {} ({} clients hold live subscriptions)",
                    o.live_share,
                    o.live_clients()
                );
            }
        }
        Source::Recorded(r) => outln!(
            "source       recorded by lt record from {}, starting {}",
            r.upstream,
            r.started_at
        ),
        Source::Imported(i) => {
            let timing = match &i.timing {
                ImportTiming::CreatedAt { max_gap_us } => format!(
                    "created_at spacing, gaps at most {} s",
                    *max_gap_us as f64 / 1e6
                ),
                ImportTiming::Rate { rate_eps, seed } => {
                    format!("Poisson arrivals at {rate_eps} events/s, seed {seed}")
                }
            };
            outln!(
                "source       imported by lt import from {} · {timing} · {} clients · signatures {}",
                i.input,
                i.clients,
                if i.verified { "checked" } else { "not checked" }
            );
        }
    }
}

/// How a recorded answer is counted in the summary: `ok`, `rejected rate-limited:`, `eose`…
fn answer_label(reply: &Reply) -> String {
    match reply {
        Reply::Ok { accepted, message } => {
            let prefix = Prefix::of(message);
            match (accepted, prefix) {
                (true, Prefix::Duplicate) => "duplicate".into(),
                (true, _) => "ok".into(),
                (false, p) => format!("rejected {}", p.as_str()),
            }
        }
        Reply::Eose { .. } => "eose".into(),
        Reply::Closed { message, .. } => format!("closed {}", Prefix::of(message).as_str()),
        Reply::Count { .. } => "count".into(),
        Reply::NotExpected => "not expected".into(),
        Reply::None => "no answer".into(),
    }
}

fn print_frame(index: u64, r: &Record) {
    let after = r.after.map_or(String::new(), |a| format!(" after #{a}"));
    let answer = r.recorded.as_ref().map_or(String::new(), |a| {
        format!(
            " · recorded: {} after {:.3} ms",
            answer_label(&a.reply),
            a.after_us as f64 / 1e3
        )
    });
    outln!(
        "#{index} +{:.6}s client {} {}{after}{answer}\n{}",
        r.offset_us as f64 / 1e6,
        r.client,
        r.op.label(),
        r.frame
    );
}

fn verify(r: &Record) -> anyhow::Result<()> {
    let ClientMessage::Event(raw) = ClientMessage::parse(&r.frame)? else {
        return Err(anyhow!("an event record whose frame is not an EVENT"));
    };
    let event = Event::from_json(raw.get())?;
    event.verify()?;
    Ok(())
}
