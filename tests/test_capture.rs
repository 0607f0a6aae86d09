//! The capture format: round trips, and every kind of damage reported with its position.

use std::io::Write;

use lt::capture::container::{BlockWriter, FileKind, Tag};
use lt::capture::trace::read_all;
use lt::capture::{
    Answer, Completion, ErrorKind, Header, Op, Query, Record, Reply, Role, Source, TraceWriter,
};
use lt::workload::Options;
use proptest::prelude::*;

use crate::util::{lt, one_line_error, synth};

fn header() -> Header {
    lt::synth::header(&Options::default())
}

fn write(records: &[Record], block_target: usize) -> Vec<u8> {
    let mut w = TraceWriter::with_block_target(Vec::new(), &header(), block_target).unwrap();
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap().0
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            any::<u16>(),
            prop_oneof![
                Just(Role::View),
                Just(Role::VideoPost),
                Just(Role::Nip94Mirror),
                Just(Role::Other)
            ]
        )
            .prop_map(|(kind, role)| Op::Event { kind, role }),
        prop_oneof![
            Just(Query::Feed),
            Just(Query::ViewCount),
            Just(Query::Channel),
            Just(Query::Other)
        ]
        .prop_map(|query| Op::Req { query }),
        Just(Op::Close),
        Just(Op::Count),
        Just(Op::Auth),
        Just(Op::Other),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        any::<u32>(),
        op(),
        ".{0,300}",
        prop_oneof![
            "[0-9a-f]{64}".prop_map(|id| Completion::Ok { id }),
            ".{1,20}".prop_map(|sub| Completion::Eose { sub }),
            Just(Completion::Sent),
            ".{1,20}".prop_map(|sub| Completion::Count { sub }),
            ".{0,40}".prop_map(|reason| Completion::Skip { reason }),
        ],
        proptest::option::of(any::<u64>()),
        proptest::option::of(answer()),
    )
        .prop_map(
            |(offset_us, client, op, frame, completes, after, recorded)| Record {
                offset_us,
                client,
                op,
                frame,
                completes,
                after,
                recorded,
            },
        )
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        any::<u64>(),
        prop_oneof![
            (any::<bool>(), ".{0,200}")
                .prop_map(|(accepted, message)| Reply::Ok { accepted, message }),
            any::<u32>().prop_map(|events| Reply::Eose { events }),
            (any::<u32>(), ".{0,200}")
                .prop_map(|(events, message)| Reply::Closed { events, message }),
            any::<u64>().prop_map(|count| Reply::Count { count }),
            Just(Reply::NotExpected),
            Just(Reply::None),
        ],
    )
        .prop_map(|(after_us, reply)| Answer { after_us, reply })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_round_trip(records in proptest::collection::vec(record(), 0..200), block in 1usize..4096) {
        let bytes = write(&records, block);
        let (h, back, trailer) = read_all(&bytes).unwrap();
        prop_assert_eq!(h, header());
        prop_assert_eq!(trailer.records, records.len() as u64);
        prop_assert_eq!(back, records);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        prop_assert!(read_all(&bytes).is_err());
    }

    #[test]
    fn garbage_after_a_valid_prefix_is_an_error(records in proptest::collection::vec(record(), 1..20), cut in any::<prop::sample::Index>(), junk in proptest::collection::vec(any::<u8>(), 1..64)) {
        let mut bytes = write(&records, 256);
        let at = cut.index(bytes.len());
        bytes.truncate(at);
        bytes.extend_from_slice(&junk);
        prop_assert!(read_all(&bytes).is_err());
    }
}

/// A real trace with several blocks, small enough to damage at every byte.
fn small_trace() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(
        dir.path(),
        "s",
        &["--duration", "3", "--rate", "20", "--clients", "5"],
    );
    let (_, records, _) = read_all(&std::fs::read(path).unwrap()).unwrap();
    assert!(records.len() > 20);
    write(&records, 4096)
}

#[test]
fn a_cut_at_any_byte_is_reported_as_truncation_with_its_offset() {
    let _machine = crate::util::busy();
    let bytes = small_trace();
    read_all(&bytes).unwrap();
    for n in 0..bytes.len() {
        let err = read_all(&bytes[..n]).expect_err("a truncated file must not read");
        let msg = err.to_string();
        match err.kind() {
            ErrorKind::Empty { .. } => assert_eq!(n, 0),
            ErrorKind::Truncated { .. } => {
                assert!(msg.contains("byte"), "{msg}");
            }
            other => panic!("cut at {n}: expected truncation, got {other}"),
        }
    }
}

#[test]
fn a_damaged_byte_anywhere_is_detected() {
    let _machine = crate::util::busy();
    let bytes = small_trace();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            assert!(
                read_all(&bad).is_err(),
                "flip 0x{flip:02x} at byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn cli_reports_bad_files_on_one_line_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = synth(
        dir.path(),
        "good",
        &["--duration", "5", "--rate", "30", "--clients", "10"],
    );
    let bytes = std::fs::read(&good).unwrap();
    let case = |name: &str, content: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let out = lt().arg("inspect").arg(&p).output().unwrap();
        let line = one_line_error(&out);
        assert!(
            line.contains(&p.display().to_string()),
            "names the file: {line}"
        );
        line
    };

    assert!(case("empty.ltc", b"").contains("empty file"));
    assert!(case("text.ltc", b"hello, this is not a capture\n").contains("bad magic"));

    let mut future = bytes.clone();
    future[9] = 9;
    let line = case("future.ltc", &future);
    assert!(
        line.contains("format version 9") && line.contains("newer"),
        "{line}"
    );

    let mid = bytes.len() / 2;
    let line = case("cut.ltc", &bytes[..mid]);
    assert!(
        line.contains("truncated") && line.contains("byte"),
        "{line}"
    );

    let mut flipped = bytes.clone();
    flipped[mid] ^= 0x10;
    let line = case("flipped.ltc", &flipped);
    assert!(
        line.contains("corrupt") && line.contains("byte") && line.contains("block"),
        "{line}"
    );

    let mut results = Vec::new();
    let mut w = BlockWriter::new(&mut results, FileKind::Results, 1, 3).unwrap();
    w.write_block(Tag::Header, 1, &[0x80]).unwrap();
    drop(w);
    assert!(case("results.ltc", &results).contains("expected an lt trace"));

    let out = lt()
        .arg("inspect")
        .arg(dir.path().join("missing.ltc"))
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("missing.ltc"));

    // export fails the same way, and writes nothing it cannot vouch for after the error.
    let p = dir.path().join("cut2.ltc");
    std::fs::write(&p, &bytes[..mid]).unwrap();
    let out = lt().arg("export").arg(&p).output().unwrap();
    assert!(one_line_error(&out).contains("truncated"));
}

#[test]
fn cli_rejects_bad_flags_on_one_line_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--mix", "1.5"], "--mix"),
        (&["--rate", "-3"], "--rate"),
        (&["--rate", "0"], "--rate"),
        (&["--clients", "0"], "--clients"),
        (&["--duration", "0"], "--duration"),
        (&["--duration", "10 fortnights"], "--duration"),
        (&["--read-share", "1"], "--read-share"),
        (&["--threads", "0"], "--threads"),
        (&["--epoch", "yesterday"], "--epoch"),
        (&["--clients", "10", "--creators", "11"], "--creators"),
        (&["--bogus"], "--bogus"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in cases {
        let out = lt()
            .arg("synth")
            .args(*args)
            .arg("-o")
            .arg(dir.path().join("x.ltc"))
            .output()
            .unwrap();
        let line = one_line_error(&out);
        assert!(line.contains(flag), "{args:?}: {line}");
    }
    assert!(
        !dir.path().join("x.ltc").exists(),
        "nothing written for bad flags"
    );
    let out = lt()
        .arg("synth")
        .env("MIX", "2")
        .arg("-o")
        .arg(dir.path().join("y.ltc"))
        .output()
        .unwrap();
    // Issue #17: the variable the user set is named, not a flag they never typed.
    let line = one_line_error(&out);
    assert!(
        line.starts_with("lt: MIX=2 (from the environment): "),
        "{line}"
    );
}

#[test]
fn an_interrupted_synth_leaves_no_file_under_the_final_name() {
    // Writing to a path inside a missing, uncreatable place fails cleanly.
    let out = lt()
        .args([
            "synth",
            "--duration",
            "2",
            "-o",
            "/proc/lt-cannot-write-here/x.ltc",
        ])
        .output()
        .unwrap();
    let line = one_line_error(&out);
    assert!(line.contains("/proc/lt-cannot-write-here"), "{line}");
}

#[test]
fn synth_to_stdout_is_a_valid_trace() {
    let out = lt()
        .args([
            "synth",
            "--duration",
            "3",
            "--rate",
            "20",
            "--clients",
            "5",
            "-o",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, records, trailer) = read_all(&out.stdout).unwrap();
    assert_eq!(records.len() as u64, trailer.records);
    assert!(crate::util::text(&out.stderr).contains("fingerprint"));
    let _ = std::io::stdout().flush();
}

#[test]
fn a_second_pass_with_a_verified_fingerprint_reads_the_same_and_refuses_another_file() {
    use lt::capture::TraceReader;
    let bytes = small_trace();
    let (_, records, trailer) = read_all(&bytes).unwrap();
    let second: Vec<Record> = TraceReader::new(&bytes[..])
        .unwrap()
        .with_verified_fingerprint(&trailer.fingerprint)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(second, records);
    // The file changed since the fingerprint was verified: its trailer says so.
    let other = "0".repeat(64);
    let err = TraceReader::new(&bytes[..])
        .unwrap()
        .with_verified_fingerprint(&other)
        .find_map(|r| r.err())
        .expect("a different fingerprint must be refused");
    assert!(
        matches!(err.kind(), ErrorKind::FingerprintMismatch { .. }),
        "{err}"
    );
}

/// A trace written by lt before recorded traces (format 1: synth's options in the header,
/// records without a recorded answer) reads as a synthesized trace.
#[test]
fn a_version_1_trace_reads_as_synthesized() {
    use serde::Serialize;
    use sha2::{Digest, Sha256};

    #[derive(Serialize)]
    struct HeaderV1 {
        format_version: u16,
        lt_version: String,
        generator: String,
        schema_source: String,
        options: Options,
    }
    #[derive(Serialize)]
    struct RecordV1 {
        offset_us: u64,
        client: u32,
        op: Op,
        frame: String,
        completes: Completion,
        after: Option<u64>,
    }
    let options = Options::default();
    let header = HeaderV1 {
        format_version: 1,
        lt_version: "0.1.0".into(),
        generator: "lt synth (workload model v1)".into(),
        schema_source: "reference".into(),
        options: options.clone(),
    };
    let frame = r#"["CLOSE","s1"]"#.to_owned();
    let record = RecordV1 {
        offset_us: 5,
        client: 2,
        op: Op::Close,
        frame: frame.clone(),
        completes: Completion::Sent,
        after: None,
    };
    let mut w = lt::capture::stream::Writer::new(Vec::new(), FileKind::Trace, 1, &header).unwrap();
    w.push(&record).unwrap();
    let trailer = lt::capture::Trailer {
        records: 1,
        events: 0,
        frame_bytes: frame.len() as u64,
        last_offset_us: 5,
        fingerprint: hex::encode(Sha256::digest(frame.as_bytes())),
    };
    let (bytes, _) = w.finish(&trailer).unwrap();
    let (h, records, _) = read_all(&bytes).unwrap();
    assert_eq!(h.source, Source::Synth(options));
    assert_eq!(h.declared_clients(), Some(Options::default().clients));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].recorded, None);
    assert_eq!(records[0].frame, frame);
}
