//! `lt inspect` and `lt export` on real captures.

use crate::util::{lt, synth, text};

#[test]
fn export_writes_one_parseable_event_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(
        dir.path(),
        "e",
        &["--duration", "20", "--rate", "100", "--clients", "50"],
    );
    let out = lt().arg("export").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut n = 0;
    for line in stdout.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "id",
            "pubkey",
            "created_at",
            "kind",
            "tags",
            "content",
            "sig",
        ] {
            assert!(ev.get(key).is_some(), "{key} missing in {line}");
        }
        lt::nostr::Event::from_json(line).unwrap().verify().unwrap();
        n += 1;
    }
    let mut r = lt::capture::TraceReader::open(&path).unwrap();
    while r.next_record().unwrap().is_some() {}
    assert_eq!(n, r.trailer().unwrap().events);
    assert!(text(&out.stderr).contains(&format!("exported {n} events")));
}

#[test]
fn inspect_shows_header_counts_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(
        dir.path(),
        "i",
        &[
            "--seed",
            "9",
            "--duration",
            "20",
            "--rate",
            "100",
            "--clients",
            "50",
        ],
    );
    let out = lt()
        .arg("inspect")
        .arg(&path)
        .args(["--frames", "2", "--verify"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("seed 9 · clients 50"), "{s}");
    assert!(s.contains("trailer      verified"), "{s}");
    assert!(s.contains("signatures   verified"), "{s}");
    assert!(s.contains("view 30079"), "{s}");
    assert!(s.contains("#0 +"), "{s}");
    assert!(s.contains("#1 +"), "{s}");
    assert!(!s.contains("#2 +"), "{s}");
    assert_eq!(
        s.matches("[\"EVENT\",").count() + s.matches("[\"REQ\",").count(),
        2,
        "{s}"
    );
}

#[test]
fn inspect_verify_catches_a_bad_signature_in_a_well_formed_file() {
    use lt::capture::{TraceReader, TraceWriter};
    let dir = tempfile::tempdir().unwrap();
    let good = synth(
        dir.path(),
        "g",
        &["--duration", "5", "--rate", "50", "--clients", "10"],
    );
    let mut reader = TraceReader::open(&good).unwrap();
    let header = reader.header().clone();
    let bad = dir.path().join("bad.ltc");
    let mut w = TraceWriter::new(std::fs::File::create(&bad).unwrap(), &header).unwrap();
    let (mut n, mut flipped) = (0u64, None);
    while let Some(mut r) = reader.next_record().unwrap() {
        if flipped.is_none() && n >= 3 && r.op.is_event() {
            flipped = Some(n);
            // Flip one hex digit of the signature; the file is otherwise valid.
            let i = r.frame.rfind("\"sig\":\"").unwrap() + 7;
            let c = if &r.frame[i..i + 1] == "0" { "1" } else { "0" };
            r.frame.replace_range(i..i + 1, c);
        }
        w.push(&r).unwrap();
        n += 1;
    }
    w.finish().unwrap();
    let plain = lt().arg("inspect").arg(&bad).output().unwrap();
    assert!(plain.status.success(), "the container itself is intact");
    let out = lt()
        .arg("inspect")
        .arg(&bad)
        .arg("--verify")
        .output()
        .unwrap();
    let line = crate::util::one_line_error(&out);
    let want = format!("record {}", flipped.unwrap());
    assert!(line.contains(&want) && line.contains("signature"), "{line}");
}

/// Issue #17: a reader that closes lt's stdout early (`| head`) is not a crash: every
/// command that prints exits 0, with no panic, whatever it was printing.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(
        dir.path(),
        "p",
        &["--duration", "20", "--rate", "100", "--clients", "50"],
    );
    let lt_bin = env!("CARGO_BIN_EXE_lt");
    for args in [
        // Megabytes of frames: the reader is gone long before the last one.
        vec!["inspect", "--frames", "2000"],
        vec!["export"],
        vec!["replay", "--dry-run", "--relay", "ws://127.0.0.1:9/"],
    ] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(r#"set -o pipefail; "$0" "$1" "$3" "${@:4}" | head -c 1 >/dev/null"#)
            .arg(lt_bin)
            .arg(args[0])
            .arg("unused")
            .arg(&path)
            .args(&args[1..])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
