//! Issue #29: `lt capacity` against real relays — a relay of known capacity (nostr-rs-relay
//! behind lt-delay-proxy's OK limiter), lt as the limit, a trace split across steps, Ctrl-C
//! mid-search, and the guard.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lt_testkit::relay::{self, Relay, RelayKind, RelayOptions};

use crate::util::{file_with_extension, lt, one_line_error, read_against_schema, synth, text};

/// Every search here holds the machine alone (`quiet`): a search ramps until something
/// gives, and would make timing tests running beside it fail.
///
/// Steps short enough for the suite: p99 from 5 s at 250/s is over 1,000 replies.
const QUICK: [&str; 8] = [
    "--step",
    "5s",
    "--confirm",
    "15s",
    "--warmup",
    "2s",
    "--cooldown",
    "1s",
];

/// The capacity JSON in `dir`, checked against the committed schema, and its Markdown.
fn capacity_report(dir: &Path) -> (serde_json::Value, String) {
    let value = read_against_schema(
        &file_with_extension(dir, "json"),
        include_str!("../docs/capacity.schema.json"),
    );
    let md = std::fs::read_to_string(file_with_extension(dir, "md")).unwrap();
    (value, md)
}

/// nostr-rs-relay behind a front that lets `n` OKs a second through, as a `--spec` whose
/// relay listens on a fixed inner port (written into the config) and the front on `{port}`.
fn front_spec(dir: &Path, n: u32) -> (String, PathBuf) {
    let inner = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let template =
        relay::config_template(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let config = dir.join(format!("front-{n}.toml"));
    let text = std::fs::read_to_string(template).unwrap();
    std::fs::write(&config, text.replace("{port}", &inner.to_string())).unwrap();
    let proxy = env!("CARGO_BIN_EXE_lt-delay-proxy");
    let spec = format!(
        "front-{n}={proxy} --listen {{port}} --to 127.0.0.1:{inner} --max-oks-per-s {n} & {}",
        relay::command(RelayKind::NostrRsRelay)
    );
    (spec, config)
}

/// Acceptance: in front of nostr-rs-relay, a front that answers at most N events a second
/// (queueing the rest): the capacity found under `response.p99 < 200ms` and 99.9% success
/// is within ±10% of N. Single-event publishes (views only, no reads) make the arrivals
/// Poisson, whose queue at a hard limit N stays under 200 ms p99 to about 0.95 N.
#[test]
fn a_relay_of_known_capacity_is_found_within_ten_percent() {
    let _machine = crate::util::quiet();
    for n in [250u32, 500] {
        let dir = tempfile::tempdir().unwrap();
        let (spec, config) = front_spec(dir.path(), n);
        let out_dir = dir.path().join("search");
        let out = lt()
            .arg("capacity")
            .args(["--spec", &spec, "--config"])
            .arg(&config)
            .args(["--slo", "response.p99 < 200ms", "--slo", "success >= 99.9%"])
            .args(["--mix", "1", "--read-share", "0", "--start", "100"])
            .args(QUICK)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
        let (r, md) = capacity_report(&out_dir);
        let capacity = r["capacity_eps"].as_f64().unwrap();
        let want = f64::from(n);
        assert!(
            (capacity - want).abs() <= 0.10 * want,
            "N = {n}: found {capacity}\n{stdout}"
        );
        assert_eq!(r["ending"], "found", "{stdout}");
        assert_eq!(r["partial"], false);
        assert_eq!(r["upper_is_lt"], false);
        let upper = r["upper_eps"].as_f64().unwrap();
        assert!(upper <= capacity * 1.05 + 1e-9, "{capacity}..{upper}");
        assert_eq!(r["failed_first"], "response.p99 < 200ms", "{stdout}");
        // Every step is a real replay with its results and report on disk; the warm-up,
        // a ramp, a bisection and a confirmation are all there.
        let steps = r["steps"].as_array().unwrap();
        for phase in ["warmup", "ramp", "bisect", "confirm"] {
            assert!(
                steps.iter().any(|s| s["phase"] == phase),
                "no {phase}: {stdout}"
            );
        }
        for s in steps {
            assert!(out_dir.join(s["results"].as_str().unwrap()).exists());
            assert!(out_dir.join(s["report"].as_str().unwrap()).exists(), "{s}");
            assert_eq!(s["stored_before"], 0, "a fresh relay per step");
            assert!(s["data_bytes"].as_u64().unwrap() > 0);
        }
        // The last line says it in one sentence; the Markdown has it, the charts and steps.
        let last = stdout.lines().last().unwrap();
        assert_eq!(last, r["sentence"].as_str().unwrap());
        assert!(last.starts_with(&format!("front-{n} sustains ")), "{last}");
        assert!(md.contains(last), "{md}");
        for chart in r["charts"].as_array().unwrap() {
            let svg = std::fs::read_to_string(out_dir.join(chart.as_str().unwrap())).unwrap();
            assert!(svg.contains("capacity") && svg.contains("<svg"), "{chart}");
            assert!(md.contains(chart.as_str().unwrap()));
        }
        assert!(md.contains("## Steps") && md.contains("| confirm"), "{md}");
    }
}

/// Acceptance (honest): with `--max-in-flight 1` lt cannot offer an open-loop rate; the
/// steps that fail are lt's, the search says lt was the limit and gives no relay capacity
/// above it.
#[test]
fn lt_as_the_limit_is_said_and_never_the_relays_capacity() {
    let _machine = crate::util::quiet();
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("search");
    let out = lt()
        .arg("capacity")
        .args(["--relay", &relay.url, "--max-in-flight", "1"])
        .args([
            "--step",
            "3s",
            "--warmup",
            "0",
            "--cooldown",
            "0.2s",
            "--confirm",
            "4s",
        ])
        .args(["--precision", "20%", "--start", "200", "--clients", "20"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let (r, md) = capacity_report(&out_dir);
    assert_eq!(r["upper_is_lt"], true, "{stdout}");
    assert_eq!(r["ending"], "lt_limit", "{stdout}");
    assert!(
        r["lt_limit"]
            .as_str()
            .unwrap()
            .contains("--max-in-flight 1"),
        "{}",
        r["lt_limit"]
    );
    let steps = r["steps"].as_array().unwrap();
    // No step failed as the relay's result: every failure was lt's.
    assert!(
        steps.iter().all(|s| s["judged"]["verdict"] != "fail"),
        "{stdout}"
    );
    assert!(steps.iter().any(|s| s["judged"]["verdict"] == "lt_limited"));
    let sentence = r["sentence"].as_str().unwrap();
    assert!(sentence.contains("lt could not offer"), "{sentence}");
    assert!(md.contains("lt_limited"));
    // The running relay's database grows from step to step, and each step says how much.
    assert!(steps.last().unwrap()["stored_before"].as_u64().unwrap() > 0);
}

/// A trace's records are split across the steps, so no event reaches the relay twice;
/// each step plays its slice at the speed its rate needs.
#[test]
fn a_trace_is_split_across_steps_and_no_event_is_sent_twice() {
    let _machine = crate::util::quiet();
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let dir = tempfile::tempdir().unwrap();
    let trace = synth(
        dir.path(),
        "t",
        &[
            "--seed",
            "3",
            "--rate",
            "50",
            "--duration",
            "60",
            "--clients",
            "20",
        ],
    );
    let out_dir = dir.path().join("search");
    let out = lt()
        .arg("capacity")
        .arg(&trace)
        .args(["--relay", &relay.url, "--start", "50", "--max-rate", "200"])
        .args(["--step", "3s", "--warmup", "2s", "--cooldown", "0.2s"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let (r, _) = capacity_report(&out_dir);
    assert_eq!(r["ending"], "max_rate", "{stdout}");
    assert_eq!(r["capacity_eps"], 200.0);
    let steps = r["steps"].as_array().unwrap();
    // Warm-up 50, ramp 50, 100, 200.
    assert_eq!(steps.len(), 4, "{stdout}");
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for s in steps {
        let step_trace = out_dir
            .join(s["results"].as_str().unwrap())
            .with_file_name("trace.ltc");
        let export = lt().arg("export").arg(&step_trace).output().unwrap();
        assert!(export.status.success(), "{}", text(&export.stderr));
        for line in text(&export.stdout).lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = event["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "event {id} in two steps");
            total += 1;
        }
        // The slice at the step's rate: its events over its length, within Poisson noise.
        let rate = s["scheduled_eps"].as_f64().unwrap() / s["offered_eps"].as_f64().unwrap();
        assert!((0.7..1.3).contains(&rate), "{s}");
    }
    // 2 s at 50/s, then 3 s at 50, 100 and 200: ~1,150 of the trace's ~3,000 events.
    assert!((800..1500).contains(&total), "{total}");
}

/// Ctrl-C mid-search: the step under way stops, the search ends, and the report of the
/// steps so far is written, marked partial; exit status 130; the results stay readable.
#[test]
fn ctrl_c_mid_search_writes_the_partial_report() {
    let _machine = crate::util::quiet();
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("search");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .arg("capacity")
        .args(["--relay", &relay.url, "--start", "50", "--clients", "20"])
        .args(["--step", "4s", "--warmup", "0", "--cooldown", "0.2s"])
        .arg("--out")
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut shown = Vec::new();
    // Wait for the second step to start, then interrupt it.
    while let Some(Ok(line)) = lines.next() {
        shown.push(line.clone());
        if line.starts_with("step  2 ") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    // SAFETY: a signal to the child process we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    shown.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let stdout = shown.join("\n");
    assert_eq!(status.code(), Some(130), "{stdout}");
    let (r, md) = capacity_report(&out_dir);
    assert_eq!(r["partial"], true);
    assert_eq!(r["ending"], "interrupted");
    assert_eq!(r["capacity_eps"], 50.0, "the first step passed: {stdout}");
    assert!(md.contains("PARTIAL"), "{md}");
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{stdout}");
    assert!(steps[1]["judged"].is_null());
    assert!(steps[1]["error"].as_str().unwrap().contains("interrupted"));
    // The interrupted step's results are readable as any interrupted replay's.
    let results = out_dir.join(steps[1]["results"].as_str().unwrap());
    let analyze = lt()
        .arg("analyze")
        .arg(&results)
        .arg("--out-dir")
        .arg(dir.path().join("step2"))
        .output()
        .unwrap();
    assert!(analyze.status.success(), "{}", text(&analyze.stderr));
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .contains("partial: interrupted"),
        "{stdout}"
    );
}

/// The guard applies as everywhere: a host not named is refused, one named (not loopback)
/// also needs --max-rate, and a relay must be given; nothing is sent in any of these.
#[test]
fn the_guard_and_the_relay_flags_refuse_before_any_load() {
    let refused = lt()
        .args(["capacity", "--relay", "ws://192.0.2.10:7000/"])
        .output()
        .unwrap();
    let line = one_line_error(&refused);
    assert!(line.contains("192.0.2.10"), "{line}");
    let unbounded = lt()
        .args([
            "capacity",
            "--relay",
            "ws://192.0.2.10:7000/",
            "--allow-host",
            "192.0.2.10",
        ])
        .output()
        .unwrap();
    let line = one_line_error(&unbounded);
    assert!(line.contains("--max-rate"), "{line}");
    // A dry run checks and prints, and sends nothing: nothing listens on port 1.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("search");
    let dry = lt()
        .args([
            "capacity",
            "--relay",
            "ws://127.0.0.1:1/",
            "--dry-run",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let shown = text(&dry.stdout);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(shown.starts_with("dry run: nothing sent"), "{shown}");
    assert!(
        shown.contains("response.p99 < 200ms AND success >= 99.9%"),
        "{shown}"
    );
    assert!(!out.exists());
    let none = lt().arg("capacity").output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        text(&none.stderr).contains("--relay"),
        "{}",
        text(&none.stderr)
    );
}

/// Acceptance: `lt ab --capacity` of a relay against itself (A and B the same build under
/// two names) runs the search for each, alternating, and comes out inconclusive; `lt
/// compare` given the same capacity reports says the same.
#[test]
fn capacity_of_a_relay_against_itself_is_inconclusive() {
    let _machine = crate::util::quiet();
    let dir = tempfile::tempdir().unwrap();
    let trace = synth(
        dir.path(),
        "t",
        &[
            "--seed",
            "8",
            "--rate",
            "100",
            "--duration",
            "300",
            "--clients",
            "50",
        ],
    );
    let template =
        relay::config_template(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let command = relay::command(RelayKind::NostrRsRelay);
    let out_dir = dir.path().join("ab");
    let out = lt()
        .args(["ab", "--capacity", "--runs", "2", "--trace"])
        .arg(&trace)
        .args([
            "--a",
            &format!("base={command}"),
            "--b",
            &format!("again={command}"),
        ])
        .arg("--a-config")
        .arg(&template)
        .arg("--b-config")
        .arg(&template)
        .args([
            "--step",
            "3s",
            "--confirm",
            "5s",
            "--warmup",
            "0",
            "--cooldown",
            "0.2s",
        ])
        .args(["--precision", "20%", "--start", "200"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let c = read_against_schema(
        &file_with_extension(&out_dir, "json"),
        include_str!("../docs/capacity-comparison.schema.json"),
    );
    assert_eq!(c["verdict"], "inconclusive", "{c}");
    let order: Vec<String> = std::fs::read_dir(out_dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        order,
        ["01-A-base", "02-B-again", "03-B-again", "04-A-base"]
    );
    for side in ["a", "b"] {
        let found = c[side]["capacities_eps"].as_array().unwrap().len();
        let left = c[side]["left_out"].as_array().unwrap().len();
        assert_eq!(found + left, 2, "{}", c[side]);
        assert!(found >= 1, "{}", c[side]);
    }
    let sentence = c["sentence"].as_str().unwrap();
    assert_eq!(stdout.lines().last().unwrap(), sentence);
    assert!(
        sentence.starts_with("again sustains ") && sentence.ends_with("inconclusive."),
        "{sentence}"
    );
    // `lt compare` reads the four searches' capacity reports and comes to the same.
    let report = |run: &str| {
        let dir = out_dir.join("runs").join(run);
        file_with_extension(&dir, "json")
    };
    let compared = lt()
        .arg("compare")
        .arg("--out-dir")
        .arg(dir.path().join("compare"))
        .arg(report("01-A-base"))
        .arg(report("04-A-base"))
        .arg("--")
        .arg(report("02-B-again"))
        .arg(report("03-B-again"))
        .output()
        .unwrap();
    assert!(compared.status.success(), "{}", text(&compared.stderr));
    assert!(
        text(&compared.stdout).contains("inconclusive"),
        "{}",
        text(&compared.stdout)
    );
}
