//! `lt import` through the real binary: round trips with `lt export`, bad lines, zstd,
//! determinism, flat memory, and an imported dump replayed into a real relay.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use lt::capture::{Op, Record, Role, TraceReader};
use lt::nostr::Event;

use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::stored;
use crate::util::{busy, lt, one_line_error, synth, text};
use crate::util::{outcomes, replay};

const VECTORS: &str = include_str!("vectors/bitvid-example-events.jsonl");

/// A small synth trace's events as JSONL (`lt export`), in `dir/name`.
fn exported(dir: &Path, name: &str, synth_args: &[&str]) -> PathBuf {
    let trace = synth(dir, &format!("{name}-synth"), synth_args);
    let out = lt().arg("export").arg(&trace).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn small_dump(dir: &Path) -> PathBuf {
    exported(
        dir,
        "events.jsonl",
        &["--duration", "20", "--rate", "100", "--clients", "50"],
    )
}

/// Runs `lt import INPUT -o OUTPUT ARGS…`, with `stdin` on standard input when given.
fn import(input: &str, output: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = lt();
    cmd.arg("import")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(args);
    let Some(bytes) = stdin else {
        return cmd.output().unwrap();
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let bytes = bytes.to_vec();
    let feeder = std::thread::spawn(move || pipe.write_all(&bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    out
}

/// `import`, asserting success; returns stderr (the summary).
fn import_ok(input: &str, output: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = import(input, output, args, stdin);
    let err = text(&out.stderr);
    assert!(out.status.success(), "lt import failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn export(trace: &Path) -> Vec<u8> {
    let out = lt().arg("export").arg(trace).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    out.stdout
}

fn records(trace: &Path) -> Vec<Record> {
    TraceReader::open(trace)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// The summary line that starts with `label` (after the indentation).
fn summary_line<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in: {summary}"))
}

/// The summary line that counts bad lines for `reason`.
fn bad_line<'a>(summary: &'a str, reason: &str) -> &'a str {
    summary
        .lines()
        .find(|l| l.contains(&format!(" {reason}  ")))
        .unwrap_or_else(|| panic!("no {reason:?} line in: {summary}"))
}

fn peak_memory_kib(summary: &str) -> u64 {
    let line = summary_line(summary, "peak memory");
    line.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

/// Flips the first hex digit of the value of `"key":"…"` in an event object.
fn flip_hex(json: &str, key: &str) -> String {
    let i = json.find(&format!("\"{key}\":\"")).unwrap() + key.len() + 4;
    let c = if &json[i..i + 1] == "0" { "1" } else { "0" };
    let mut out = json.to_owned();
    out.replace_range(i..i + 1, c);
    out
}

#[test]
fn round_trip_through_export_keeps_every_event_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let dump = small_dump(dir.path());
    let jsonl = std::fs::read(&dump).unwrap();

    let from_file = dir.path().join("file.ltc");
    let summary = import_ok(dump.to_str().unwrap(), &from_file, &[], None);
    let from_stdin = dir.path().join("stdin.ltc");
    import_ok("-", &from_stdin, &[], Some(&jsonl));
    assert_eq!(export(&from_file), jsonl, "file input: export differs");
    assert_eq!(export(&from_stdin), jsonl, "standard input: export differs");

    let events = jsonl
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(events > 1000, "{events}");
    assert!(
        summary.contains(&format!("imported {} events", fmt_count(events as u64))),
        "{summary}"
    );
    // The events' own spacing: the span is their created_at range (no extra second for
    // each straggler), the trace starting at 0.
    let created: Vec<u64> = std::str::from_utf8(&jsonl)
        .unwrap()
        .lines()
        .map(|l| lt::nostr::Event::from_json(l).unwrap().created_at)
        .collect();
    let range_s = created.iter().max().unwrap() - created.iter().min().unwrap();
    let recs = records(&from_file);
    let span_us = recs.last().unwrap().offset_us;
    assert_eq!(recs[0].offset_us, 0);
    assert!(
        span_us.abs_diff(range_s * 1_000_000) <= 1_000_000,
        "span {span_us} µs, created_at range {range_s} s"
    );
    assert!(recs.windows(2).all(|w| w[0].offset_us <= w[1].offset_us));

    for (trace, source) in [(&from_file, "from events.jsonl"), (&from_stdin, "from -")] {
        let out = lt()
            .arg("inspect")
            .arg(trace)
            .arg("--verify")
            .output()
            .unwrap();
        let s = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            s.contains(&format!("imported by lt import {source}")),
            "{s}"
        );
        assert!(s.contains("signatures   verified"), "{s}");
        assert!(s.contains("signatures checked"), "{s}");
    }
}

fn fmt_count(n: u64) -> String {
    lt::units::count(n)
}

/// The signed events of the bitvid vectors, one compact object per line.
fn vector_events() -> Vec<String> {
    VECTORS
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"].get("sig").is_some())
        .map(|v| v["event"].to_string())
        .collect()
}

/// A dump with every kind of bad line, and what `lt import` should make of it.
struct Mixed {
    path: PathBuf,
    /// The event objects that should be imported, in order.
    good: Vec<String>,
}

fn mixed_dump(dir: &Path) -> Mixed {
    let dump = std::fs::read_to_string(small_dump(dir)).unwrap();
    let g: Vec<&str> = dump.lines().take(10).collect();
    let kind = g[6].find("\"kind\":").unwrap() + 7;
    let kind_end = kind + g[6][kind..].find(',').unwrap();
    let big_kind = format!("{}70000{}", &g[6][..kind], &g[6][kind_end..]);
    let vectors = vector_events();
    let mut lines: Vec<String> = vec![
        g[0].to_owned(),                         // 1
        String::new(),                           // 2 blank
        format!("[\"EVENT\",{}]", g[1]),         // 3
        flip_hex(g[2], "sig"),                   // 4 bad signature
        flip_hex(g[3], "id"),                    // 5 bad id
        g[4][..g[4].len() / 2].to_owned(),       // 6 truncated
        "this is not JSON".to_owned(),           // 7
        format!("[\"EVENT\",\"sub\",{}]", g[5]), // 8 a relay's EVENT message
        "   \t".to_owned(),                      // 9 blank
        "{\"kind\":1}".to_owned(),               // 10 not an event
        big_kind,                                // 11 kind out of range
        flip_hex(g[7], "sig"),                   // 12 bad signature
    ];
    lines.extend(vectors.iter().cloned()); // 13..=32
    lines.push(g[8][..30].to_owned()); // 33, truncated, no newline after it
    let path = dir.join("mixed.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut good = vec![g[0].to_owned(), g[1].to_owned(), g[5].to_owned()];
    good.extend(vectors);
    Mixed { path, good }
}

#[test]
fn bad_lines_are_counted_by_reason_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = mixed_dump(dir.path());
    let trace = dir.path().join("mixed.ltc");
    let summary = import_ok(mixed.path.to_str().unwrap(), &trace, &[], None);

    assert!(summary.contains("imported 23 events"), "{summary}");
    assert!(
        summary_line(&summary, "lines").contains("33 lines: 23 events, 2 blank, 8 bad"),
        "{summary}"
    );
    for (reason, count, lines) in [
        ("not JSON", 3, "lines 6, 7, 33"),
        ("not an event object", 1, "line 10"),
        ("kind out of range", 1, "line 11"),
        ("bad id", 1, "line 5"),
        ("bad signature", 2, "lines 4, 12"),
    ] {
        let line = bad_line(&summary, reason);
        assert!(
            line.ends_with(&format!(" {count}  {lines}")),
            "{reason}: {line:?} in {summary}"
        );
    }
    assert!(!summary.contains("bad pubkey"), "{summary}");

    let recs = records(&trace);
    let frames: Vec<String> = recs.iter().map(|r| r.frame.clone()).collect();
    let want: Vec<String> = mixed
        .good
        .iter()
        .map(|o| format!("[\"EVENT\",{o}]"))
        .collect();
    assert_eq!(frames, want);
    // Roles by kind, on the platform's own events.
    for r in &recs {
        let Op::Event { kind, role } = r.op else {
            panic!("{:?}", r.op)
        };
        let event = lt::nostr::Event::from_json(&r.frame[9..r.frame.len() - 1]).unwrap();
        let is_view = event
            .tags
            .iter()
            .any(|t| t.len() >= 2 && t[0] == "t" && t[1] == "view");
        let want = match kind {
            30079 if is_view => Role::View,
            30078 => Role::VideoPost,
            1063 => Role::Nip94Mirror,
            34235 | 34236 => Role::Nip71Mirror,
            _ => Role::Other,
        };
        assert_eq!(role, want, "kind {kind}");
        assert_eq!(
            r.completes,
            lt::capture::Completion::Ok {
                id: hex::encode(event.id)
            }
        );
    }
    let roles: std::collections::BTreeSet<Role> = recs
        .iter()
        .filter_map(|r| match r.op {
            Op::Event { role, .. } => Some(role),
            _ => None,
        })
        .collect();
    for role in [
        Role::View,
        Role::VideoPost,
        Role::Nip94Mirror,
        Role::Nip71Mirror,
        Role::Other,
    ] {
        assert!(roles.contains(&role), "no {role:?} among {roles:?}");
    }

    // Without verification the bad id and signatures go in as they are.
    let unchecked = dir.path().join("unchecked.ltc");
    let summary = import_ok(
        mixed.path.to_str().unwrap(),
        &unchecked,
        &["--no-verify"],
        None,
    );
    assert!(summary.contains("imported 26 events"), "{summary}");
    assert!(summary.contains("not checked"), "{summary}");
}

#[test]
fn strict_stops_at_the_first_bad_line_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = mixed_dump(dir.path());
    let trace = dir.path().join("strict.ltc");
    let out = import(mixed.path.to_str().unwrap(), &trace, &["--strict"], None);
    let line = one_line_error(&out);
    assert!(line.contains("mixed.jsonl:4: bad signature"), "{line}");
    assert!(!trace.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial") || n.starts_with("strict"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With --no-verify the first bad line is the truncated one.
    let out = import(
        mixed.path.to_str().unwrap(),
        &trace,
        &["--strict", "--no-verify"],
        None,
    );
    let line = one_line_error(&out);
    assert!(line.contains("mixed.jsonl:6: not JSON"), "{line}");
    assert!(!trace.exists());

    // A clean file passes --strict.
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, mixed.good.join("\n")).unwrap();
    import_ok(good.to_str().unwrap(), &trace, &["--strict"], None);
    assert!(trace.exists());
}

#[test]
fn zstd_input_imports_to_the_same_bytes_as_plain() {
    let dir = tempfile::tempdir().unwrap();
    let dump = small_dump(dir.path());
    let jsonl = std::fs::read(&dump).unwrap();
    // The same file name in another directory: the header keeps the name only.
    let zdir = dir.path().join("z");
    std::fs::create_dir(&zdir).unwrap();
    let half = jsonl.len() / 2;
    let mut packed = zstd::encode_all(&jsonl[..half], 3).unwrap();
    packed.extend(zstd::encode_all(&jsonl[half..], 19).unwrap());
    std::fs::write(zdir.join("events.jsonl"), &packed).unwrap();

    let plain = dir.path().join("plain.ltc");
    let zst = dir.path().join("zst.ltc");
    import_ok(dump.to_str().unwrap(), &plain, &[], None);
    let summary = import_ok(zdir.join("events.jsonl").to_str().unwrap(), &zst, &[], None);
    assert!(summary.contains("(zstd)"), "{summary}");
    assert_eq!(std::fs::read(&plain).unwrap(), std::fs::read(&zst).unwrap());

    let plain_stdin = dir.path().join("plain-stdin.ltc");
    let zst_stdin = dir.path().join("zst-stdin.ltc");
    import_ok("-", &plain_stdin, &[], Some(&jsonl));
    import_ok("-", &zst_stdin, &[], Some(&packed));
    assert_eq!(
        std::fs::read(&plain_stdin).unwrap(),
        std::fs::read(&zst_stdin).unwrap()
    );

    // Cut short: an error with the compressed byte, and no file.
    let cut = dir.path().join("cut.jsonl.zst");
    std::fs::write(&cut, &packed[..packed.len() * 3 / 4]).unwrap();
    let out_path = dir.path().join("cut.ltc");
    let line = one_line_error(&import(cut.to_str().unwrap(), &out_path, &[], None));
    assert!(
        line.contains("cut.jsonl.zst: zstd input at compressed byte ")
            && line.contains("incomplete frame"),
        "{line}"
    );
    assert!(!out_path.exists());

    // An input that cannot be read: an error naming it, and no file.
    let line = one_line_error(&import(
        dir.path().join("missing.jsonl").to_str().unwrap(),
        &out_path,
        &[],
        None,
    ));
    assert!(line.contains("missing.jsonl: No such file"), "{line}");
    assert!(!out_path.exists());
}

#[test]
fn the_same_input_and_options_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let dump = small_dump(dir.path());
    let input = dump.to_str().unwrap();
    let run = |name: &str, args: &[&str]| -> PathBuf {
        let path = dir.path().join(name);
        import_ok(input, &path, args, None);
        path
    };
    let bytes = |p: &Path| std::fs::read(p).unwrap();

    assert_eq!(bytes(&run("a.ltc", &[])), bytes(&run("b.ltc", &[])));
    let r1 = run(
        "r1.ltc",
        &["--rate", "200", "--seed", "1", "--clients", "7"],
    );
    let r1_again = run(
        "r1b.ltc",
        &["--rate", "200", "--seed", "1", "--clients", "7"],
    );
    let r2 = run(
        "r2.ltc",
        &["--rate", "200", "--seed", "2", "--clients", "7"],
    );
    assert_eq!(bytes(&r1), bytes(&r1_again));
    assert_ne!(bytes(&r1), bytes(&r2));

    let (a, b) = (records(&r1), records(&r2));
    assert_eq!(a.len(), b.len());
    let frames = |rs: &[Record]| rs.iter().map(|r| r.frame.clone()).collect::<Vec<_>>();
    assert_eq!(
        frames(&a),
        frames(&b),
        "the seed moves events in time, nothing else"
    );
    let clients = |rs: &[Record]| rs.iter().map(|r| r.client).collect::<Vec<_>>();
    assert_eq!(clients(&a), clients(&b));
    let offsets = |rs: &[Record]| rs.iter().map(|r| r.offset_us).collect::<Vec<_>>();
    assert_ne!(offsets(&a), offsets(&b));
    // Poisson at 200/s: the span is about events / 200 s.
    let want_s = a.len() as f64 / 200.0;
    let span_s = a.last().unwrap().offset_us as f64 / 1e6;
    assert!(
        (span_s / want_s - 1.0).abs() < 0.15,
        "{span_s} s for {want_s} s"
    );

    // One author, one connection, out of 7.
    let mut by_author = std::collections::HashMap::new();
    for r in &a {
        let event = lt::nostr::Event::from_json(&r.frame[9..r.frame.len() - 1]).unwrap();
        assert!(r.client < 7);
        let first = *by_author.entry(event.pubkey).or_insert(r.client);
        assert_eq!(first, r.client, "an author on two connections");
    }
    assert!(by_author.len() > 7, "few authors: {}", by_author.len());
}

/// Memory does not grow with the input: 10x the events, about the same peak.
#[test]
fn memory_is_flat_in_the_input_length() {
    let _machine = busy();
    let dir = tempfile::tempdir().unwrap();
    let dump = small_dump(dir.path());
    let lines = std::fs::read(&dump).unwrap();
    let per_copy = lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let peak = |events: usize| -> u64 {
        // Copies of the dump are valid lines too, streamed to standard input.
        let copies = events.div_ceil(per_copy);
        let out = dir.path().join(format!("m{events}.ltc"));
        let mut child = lt()
            .arg("import")
            .arg("-")
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let copy = lines.clone();
        let feeder = std::thread::spawn(move || {
            for _ in 0..copies {
                pipe.write_all(&copy)?;
            }
            Ok::<_, std::io::Error>(())
        });
        let result = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        let summary = text(&result.stderr);
        assert!(result.status.success(), "{summary}");
        let want = fmt_count((copies * per_copy) as u64);
        assert!(
            summary.contains(&format!("imported {want} events")),
            "{summary}"
        );
        std::fs::remove_file(&out).unwrap();
        peak_memory_kib(&summary)
    };
    let small = peak(20_000);
    let big = peak(200_000);
    assert!(
        big < small * 3 / 2 + 4096,
        "peak memory {big} KiB at 200k events against {small} KiB at 20k"
    );
}

/// An imported dump is a trace like any other: replayed into a real relay, every good line's
/// event is answered, and what the relay stored (asked by id, independently of lt's counts)
/// is every event but the ones NIP-01 lets an addressable event replace; the bad lines never
/// reach the relay.
#[test]
fn an_imported_dump_replays_into_a_real_relay_which_stores_the_good_events() {
    let _machine = busy();
    let dir = tempfile::tempdir().unwrap();
    let mixed = mixed_dump(dir.path());
    let trace = dir.path().join("mixed.ltc");
    import_ok(
        mixed.path.to_str().unwrap(),
        &trace,
        &["--rate", "50", "--seed", "3", "--clients", "5"],
        None,
    );
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let results = dir.path().join("mixed.ltr");
    let run = replay(&trace, &relay.url, &results, &["--speed", "4x"]);
    assert!(
        run.status.success(),
        "{}\n{}",
        text(&run.stderr),
        relay.log_tail(20)
    );
    // The bitvid vectors hold addressable events that repeat an earlier one's kind, author,
    // `d` and created_at (three of the four watch-history months, the second torrent post):
    // nostr-rs-relay answers those `duplicate:`.
    let (counts, _) = outcomes(&results);
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [("duplicate".to_owned(), 4), ("ok".to_owned(), 19)]
    );

    let events: Vec<Event> = mixed
        .good
        .iter()
        .map(|e| Event::from_json(e).unwrap())
        .collect();
    let ids: Vec<String> = events.iter().map(|e| hex::encode(e.id)).collect();
    let have = stored(&relay.url, &ids);
    // Addressable events (30000–39999) by kind, author and `d`: one of each address stays,
    // the newest. Every other event stays.
    let mut addresses: HashMap<(u16, [u8; 32], String), Vec<&Event>> = HashMap::new();
    for e in &events {
        if (30000..40000).contains(&e.kind) {
            let d = e.tags.iter().find(|t| t[0] == "d").map(|t| t[1].clone());
            addresses
                .entry((e.kind, e.pubkey, d.unwrap_or_default()))
                .or_default()
                .push(e);
        } else {
            assert!(
                have.contains(&hex::encode(e.id)),
                "kind {} not stored",
                e.kind
            );
        }
    }
    for (address, group) in &addresses {
        let kept: Vec<&&Event> = group
            .iter()
            .filter(|e| have.contains(&hex::encode(e.id)))
            .collect();
        let newest = group.iter().map(|e| e.created_at).max();
        assert_eq!(kept.len(), 1, "{address:?}: {} kept", kept.len());
        assert_eq!(Some(kept[0].created_at), newest, "{address:?}");
    }
    assert_eq!(have.len(), events.len() - 5, "{} stored", have.len());
}
