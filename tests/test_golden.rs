//! Reports of fixed results files, byte for byte. The architecture of `analyze` may change
//! (issue #13); what it writes may not, unless on purpose: then regenerate with
//! `LT_UPDATE_GOLDEN=1 cargo test golden` and review the diff like code.
//!
//! The fixtures are real runs (`tests/fixtures/golden/`), made with lt 0.1.0 on loopback:
//! - `a1`, `a2`: `lt synth --seed 5 --clients 30 --duration 10 --rate 60`, replayed at
//!   `--speed 2x --relay-pid` into nostr-rs-relay 0.8.12; `b1`, `b2` the same into
//!   rnostr 0.4.8 (a fresh data directory per run).
//! - `over`: `lt synth --seed 12 --clients 200 --duration 20 --rate 150` at `--speed 8x
//!   --timeout 300ms --relay-pid` into nostr-rs-relay: timeouts, stored_unacked, lost and
//!   late OKs, rules fired.
//! - `partial`: a replay into the ack peer quit with a second Ctrl-C, cut inside a block.

use std::path::{Path, PathBuf};

use crate::util::{lt, text};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

/// Runs `lt COMMAND --out-dir TMP ARGS…`, then compares every file it wrote (JSON,
/// Markdown, SVG charts, `.hgrm`) with `expected/<stem>/`, with the one thing that changes
/// from day to day masked: the generation time, and the date in file names.
fn golden(stem: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let run = lt()
        .arg(args[0])
        .arg("--out-dir")
        .arg(dir.path())
        .args(&args[1..])
        .current_dir(fixture(""))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let today = format!("-{}", chrono::Utc::now().format("%Y-%m-%d"));
    let expected_dir = fixture("expected").join(stem);
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    written.sort();
    let mut names = Vec::new();
    for file in &written {
        let mut got = std::fs::read_to_string(file).unwrap();
        if let Some(at) = generated_at(&got) {
            got = got.replace(&at, "GENERATED_AT");
        }
        let got = got.replace(&today, "-DATE");
        let name = file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(&today, "-DATE");
        let expected = expected_dir.join(&name);
        if std::env::var_os("LT_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&expected_dir).unwrap();
            std::fs::write(&expected, &got).unwrap();
        }
        let want = std::fs::read_to_string(&expected).unwrap_or_default();
        assert!(
            got == want,
            "{} differs from {}: LT_UPDATE_GOLDEN=1 cargo test golden, then review the diff",
            file.display(),
            expected.display()
        );
        names.push(name);
    }
    // No file more or fewer than before.
    let mut expected_names: Vec<String> = std::fs::read_dir(&expected_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected_names.sort();
    assert_eq!(names, expected_names);
}

/// The `generated_at` value of a JSON report, however it is indented.
fn generated_at(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("generated_at")?.as_str().map(str::to_owned)
}

#[test]
fn golden_report_of_an_overloaded_run() {
    golden("report-over", &["analyze", "--hgrm", "over.ltr"]);
}

#[test]
fn golden_report_of_merged_repeats() {
    golden("report-a", &["analyze", "a1.ltr", "a2.ltr"]);
}

#[test]
fn golden_report_of_a_partial_run() {
    golden("report-partial", &["analyze", "--partial", "partial.ltr"]);
}

#[test]
fn golden_comparison_of_two_relays() {
    golden(
        "compare-ab",
        &[
            "compare",
            "--a-name",
            "nostr-rs-relay",
            "--b-name",
            "rnostr",
            "a1.ltr",
            "a2.ltr",
            "--",
            "b1.ltr",
            "b2.ltr",
        ],
    );
}
