//! `lt ab` end to end against real relays it starts itself: an A/A comparison finds
//! nothing, a side made 20 ms slower is found worse by about 20 ms, and a relay killed
//! mid-run fails that run only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::relay::{self, RelayKind, RelayOptions};
use crate::util::{lt, synth, text};

fn relay_bin() -> PathBuf {
    relay::installed("nostr-rs-relay")
}

fn config_template() -> PathBuf {
    relay::config_template(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true })
}

/// A 20 s trace over 40 clients; at 4x each run takes about 5 s of traffic.
fn small_trace(dir: &Path) -> PathBuf {
    synth(
        dir,
        "ab",
        &["--seed", "7", "--duration", "20", "--clients", "40"],
    )
}

fn ab(dir: &Path, trace: &Path, a: &str, b: &str, extra: &[&str]) -> Output {
    let mut cmd = lt();
    cmd.current_dir(dir)
        .args(["ab", "--speed", "4x", "--out", "out", "--trace"])
        .arg(trace)
        .arg("--a")
        .arg(a);
    if a.contains("{config}") && !extra.contains(&"--a-config") {
        cmd.arg("--a-config").arg(config_template());
    }
    cmd.arg("--b")
        .arg(b)
        .args(extra)
        .output()
        .expect("run lt ab")
}

/// The comparison's JSON in `dir/out`.
fn comparison(dir: &Path) -> Value {
    report(dir, "comparison")
}

/// The JSON report in `dir/out` whose name starts with `stem`.
fn report(dir: &Path, stem: &str) -> Value {
    report_in(&dir.join("out"), stem)
}

/// The JSON report in `out` whose name starts with `stem`.
fn report_in(out: &Path, stem: &str) -> Value {
    let out = out.to_owned();
    let json = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name().unwrap().to_string_lossy().starts_with(stem)
        })
        .unwrap_or_else(|| panic!("no {stem} JSON in {}", out.display()));
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

fn metric<'a>(c: &'a Value, id: &str) -> &'a Value {
    c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no metric {id}"))
}

fn relay_command() -> String {
    format!("{} --config {{config}} --db {{dir}}", relay_bin().display())
}

/// Issue #12: one real A/A session, through `lt ab --aa` (B is A under another name). Its
/// comparison must be inconclusive on every metric, resources included, each verdict naming
/// its statistic, interval, threshold and detectable difference; the calibration report
/// counts it and keeps its runs' figures.
#[test]
fn ab_of_a_build_against_itself_is_inconclusive() {
    let _machine = crate::util::quiet();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let mut cmd = lt();
    cmd.current_dir(dir.path())
        .args([
            "ab", "--aa", "--runs", "3", "--speed", "4x", "--out", "out", "--trace",
        ])
        .arg(&trace)
        .arg("--a")
        .arg(format!("same={}", relay_command()))
        .arg("--a-config")
        .arg(config_template())
        // Issue #18: a build against itself passes the release gate.
        .args(["--fail-on", "worse"])
        // Issue #30: each run's relay scraped at its own port; this machine's /proc too.
        .args(["--scrape", "nostr-rs-relay=http://127.0.0.1:{port}/metrics"]);
    let out = cmd.output().expect("run lt ab --aa");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("comparison report:"), "{stdout}");
    assert!(
        stdout.contains("calibration: 0 of 1 A/A session"),
        "{stdout}"
    );
    let c = comparison(dir.path());
    assert_eq!(c["b"]["name"], "same-again");
    assert_eq!(c["run_order"].as_array().unwrap().len(), 6);
    assert!(c["run_order"][0].as_str().unwrap().starts_with("A1"));
    assert!(c["run_order"][1].as_str().unwrap().starts_with("B2"));
    assert!(c["run_order"][2].as_str().unwrap().starts_with("B3"));
    assert_eq!(c["overall"], "inconclusive", "{}", c["overall_line"]);
    let metrics = c["metrics"].as_array().unwrap();
    assert!(metrics.len() >= 15, "{}", metrics.len());
    // The relay's side is compared too: its own write time, the host's CPU per event.
    for id in ["relay_write_p99", "host_cpu_busy", "host_cpu_per_event"] {
        assert!(metrics.iter().any(|m| m["id"] == id), "{id} not compared");
    }
    for m in metrics {
        let id = m["id"].as_str().unwrap();
        assert_eq!(m["verdict"], "inconclusive", "{id}: {m}");
        // Three runs a side: the noise between repeats is measured, and said.
        assert!(m["a_noise"].is_number() && m["ci95"].is_array(), "{m}");
        assert!(
            m["detectable"].as_f64().unwrap() >= m["threshold"].as_f64().unwrap(),
            "{m}"
        );
        let why = m["reason"].as_str().unwrap();
        if m["delta"] != 0.0 {
            for part in ["95% interval", "Holm-adjusted p", "threshold", "detectable"] {
                assert!(why.contains(part), "{id}: {part} missing from {why}");
            }
        }
    }
    assert!(
        c["method"].as_str().unwrap().contains("Holm"),
        "{}",
        c["method"]
    );
    // Every run kept its results, relay log and report.
    for run in std::fs::read_dir(dir.path().join("out/runs")).unwrap() {
        let run = run.unwrap().path();
        assert!(run.join("results.ltr").is_file(), "{}", run.display());
        assert!(run.join("relay.log").is_file(), "{}", run.display());
        assert!(run.join("report").is_dir(), "{}", run.display());
    }
    crate::util::check_comparison(&c);
    let calibration = report(dir.path(), "calibration");
    crate::util::check_calibration(&calibration);
    assert_eq!(calibration["false_sessions"], 0);
    assert_eq!(calibration["figures"].as_array().unwrap().len(), 6);
    assert!(calibration["resampled"].is_object(), "{calibration}");
}

/// The `lt` lines of docs/ci.md's workflow, between its `lt-ci:begin` and `lt-ci:end`
/// markers, as they stand there.
fn ci_commands() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md")).unwrap();
    let lines: Vec<&str> = doc.lines().map(str::trim).collect();
    let begin = lines.iter().position(|l| *l == "# lt-ci:begin").unwrap();
    let end = lines.iter().position(|l| *l == "# lt-ci:end").unwrap();
    lines[begin + 1..end]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Issue #12: a build 20 ms slower is found worse by about 20 ms. Issue #18: through the
/// exact commands of docs/ci.md's workflow (the head behind lt-delay-proxy, which holds
/// every reply 20 ms), so the release gate fails it with exit status 1, and the comparison
/// names the metrics that failed it.
#[test]
fn the_ci_gate_fails_a_slower_build() {
    let _machine = crate::util::quiet();
    let dir = tempfile::tempdir().unwrap();
    // Head: the same relay behind lt-delay-proxy. The relay listens on a fixed free port
    // named in head's config; the proxy takes `{port}`.
    let inner = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let slow_cfg = dir.path().join("slow.toml");
    let template = std::fs::read_to_string(config_template()).unwrap();
    std::fs::write(&slow_cfg, template.replace("{port}", &inner.to_string())).unwrap();
    let proxy = env!("CARGO_BIN_EXE_lt-delay-proxy");
    let slow = format!(
        "{proxy} --listen {{port}} --to 127.0.0.1:{inner} --delay 20ms & exec {}",
        relay_command()
    );
    let commands = ci_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands[1].contains("--fail-on worse"), "{}", commands[1]);
    let mut last = None;
    for command in &commands {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .env("LT", env!("CARGO_BIN_EXE_lt"))
            .env("BASE_CMD", relay_command())
            .env("HEAD_CMD", &slow)
            .env("BASE_CONFIG", config_template())
            .env("HEAD_CONFIG", &slow_cfg)
            .output()
            .unwrap();
        last = Some(out);
    }
    let out = last.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary = std::fs::read_to_string(dir.path().join("ab-summary.txt")).unwrap();
    assert!(
        summary.contains("gate: Gate FAILED: B (head) is worse on"),
        "{summary}"
    );
    let c = report_in(&dir.path().join("ab"), "comparison");
    crate::util::check_comparison(&c);
    let p50 = metric(&c, "response_p50");
    assert_eq!(p50["verdict"], "worse", "{p50}");
    let delta = p50["delta"].as_f64().unwrap();
    assert!(
        (15.0..40.0).contains(&delta),
        "p50 delta {delta} ms, want ≈ 20"
    );
    assert_eq!(metric(&c, "service_p50")["verdict"], "worse");
    assert_ne!(c["overall"], "inconclusive");
    assert_ne!(c["overall"], "better");
    assert_eq!(c["gate"]["passed"], false, "{}", c["gate"]);
    let failed = c["gate"]["failed"].as_array().unwrap();
    assert!(failed.iter().any(|m| m == "response_p50"), "{}", c["gate"]);
    // The regression's issue draft, with its figures and the command that found it.
    let regression = std::fs::read_to_string(dir.path().join("issues/00-regression.md")).unwrap();
    assert!(
        regression.starts_with("# head is worse than base on"),
        "{regression}"
    );
    assert!(regression.contains("| Response time p50 |"), "{regression}");
    assert!(
        regression.contains("lt ab --trace 'ci.ltc' --a 'base="),
        "{regression}"
    );
}

#[test]
fn ab_reports_a_relay_killed_mid_run_and_keeps_the_other_runs() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let cfg = config_template();
    // B's first run: the relay is killed 2 s into the replay; its second run is normal.
    let marker = dir.path().join("killed-once");
    let flaky = format!(
        "flaky=if [ -e '{m}' ]; then exec {cmd}; fi; touch '{m}'; {cmd} & sleep 2; kill -9 $!; wait",
        m = marker.display(),
        cmd = relay_command()
    );
    let out = ab(
        dir.path(),
        &trace,
        &format!("steady={}", relay_command()),
        &flaky,
        &["--runs", "2", "--b-config", cfg.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("run 2/4 B flaky: FAILED"),
        "{}",
        text(&out.stdout)
    );
    let c = comparison(dir.path());
    let failed = c["failed_runs"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["run"], 2);
    assert_eq!(failed[0]["side"], "B");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("exited during the run"),
        "{}",
        failed[0]["error"]
    );
    assert!(failed[0]["log_tail"].is_string());
    // The comparison used the runs that completed: two of A, one of B.
    assert_eq!(c["a"]["runs"], 2);
    assert_eq!(c["b"]["runs"], 1);
    // The failed run's results stay readable beside the others.
    let killed = dir.path().join("out/runs/02-B-flaky/results.ltr");
    lt::capture::results::ResultsReader::open(&killed).expect("failed run's results readable");
    let md = crate::util::file_with_extension(&dir.path().join("out"), "md");
    assert!(std::fs::read_to_string(md).unwrap().contains("Failed runs"));
}

#[test]
fn ab_refuses_bad_specs_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    for (a, b, want) in [
        ("x=relay --port {prot}", "y=relay {port}", "prot"),
        ("same=relay {port}", "same=relay {port}", "different names"),
        ("noequals", "y=relay {port}", "--a"),
    ] {
        let out = ab(dir.path(), &trace, a, b, &[]);
        let line = crate::util::one_line_error(&out);
        assert!(line.contains(want), "{line}");
    }
    // A/A options: --sessions only with --aa, and --aa has no B.
    for (extra, want) in [
        (&["--sessions", "3"][..], "needs --aa"),
        (&["--aa"][..], "cannot be used with"),
    ] {
        let out = ab(
            dir.path(),
            &trace,
            "x=relay {port}",
            "y=relay {port}",
            extra,
        );
        let line = crate::util::one_line_error(&out);
        assert!(line.contains(want), "{line}");
    }
    assert!(!dir.path().join("out").exists());
}

/// `lt ab` starts its relays on loopback with the TLS its specs give: replay's target flags
/// would do nothing there, so it does not accept them (it once did, silently).
#[test]
fn ab_has_no_target_flags_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    for extra in [
        &["--source-addr", "127.0.0.2"][..],
        &["--ca-file", "ca.pem"][..],
        &["--allow-host", "relay.test"][..],
    ] {
        let out = ab(
            dir.path(),
            &trace,
            "x=relay {port}",
            "y=relay {port}",
            extra,
        );
        let line = crate::util::one_line_error(&out);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(line.contains("unexpected argument"), "{extra:?}: {line}");
    }
    assert!(!dir.path().join("out").exists());
}

#[test]
fn ab_refuses_a_relay_listening_beyond_loopback() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let open_cfg = dir.path().join("open.toml");
    let template = std::fs::read_to_string(config_template()).unwrap();
    assert!(template.contains("address = \"127.0.0.1\""));
    std::fs::write(
        &open_cfg,
        template.replace("address = \"127.0.0.1\"", "address = \"0.0.0.0\""),
    )
    .unwrap();
    let out = ab(
        dir.path(),
        &trace,
        &format!("open={}", relay_command()),
        &format!("closed={}", relay_command()),
        &[
            "--runs",
            "1",
            "--a-config",
            open_cfg.to_str().unwrap(),
            "--b-config",
            config_template().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("refusing to load relay open"), "{stderr}");
    assert!(stderr.contains("no comparison"), "{stderr}");
    // Nothing was replayed into it.
    assert!(!dir.path().join("out/runs/01-A-open/results.ltr").exists());
}

/// Issue #14: a build that listens with TLS (`--b-tls-ca`): lt probes it over TLS, replays
/// into it over `wss://localhost:{port}/`, fetches its NIP-11 document over https, and the
/// run's report times the TLS handshakes. B is nostr-rs-relay behind nginx terminating TLS
/// with a test CA; nginx's config is B's config template.
#[test]
fn ab_compares_a_build_that_listens_with_tls() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let certs = crate::tls::certs(dir.path(), &["localhost"]);
    // B's relay on a fixed free port, named in its own config; nginx takes `{port}`.
    let inner = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay_cfg = dir.path().join("inner.toml");
    let template = std::fs::read_to_string(config_template()).unwrap();
    std::fs::write(&relay_cfg, template.replace("{port}", &inner.to_string())).unwrap();
    let nginx_tmpl = dir.path().join("nginx.conf");
    std::fs::write(
        &nginx_tmpl,
        format!(
            "worker_processes 1;\nerror_log {{dir}}/error.log warn;\npid {{dir}}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {{dir}}/body; proxy_temp_path {{dir}}/proxy;\n\
             fastcgi_temp_path {{dir}}/fastcgi; uwsgi_temp_path {{dir}}/uwsgi; scgi_temp_path {{dir}}/scgi;\n\
             server {{ listen 127.0.0.1:{{port}} ssl; ssl_certificate {}; ssl_certificate_key {};\n\
             location / {{ proxy_pass http://127.0.0.1:{inner}; proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";\n\
             proxy_set_header Host $host; proxy_buffering off; }} }} }}\n",
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("nginx installed by scripts/install-relays");
    let tls_build = format!(
        "tls={} --config {} --db {{dir}} & exec {nginx} -p {{dir}} -c {{config}} -g 'daemon off;'",
        relay_bin().display(),
        relay_cfg.display()
    );
    let out = ab(
        dir.path(),
        &trace,
        &format!("plain={}", relay_command()),
        &tls_build,
        &[
            "--runs",
            "1",
            "--b-config",
            nginx_tmpl.to_str().unwrap(),
            "--b-tls-ca",
            certs.ca.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let c = comparison(dir.path());
    assert_eq!(c["b"]["build"], "nostr-rs-relay 0.8.12", "{}", c["b"]);
    let b_report = report_in(&dir.path().join("out/runs/02-B-tls/report"), "load-report");
    assert_eq!(b_report["config"]["target"], c["b"]["target"]);
    assert!(
        b_report["config"]["relay"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost:"),
        "{}",
        b_report["config"]["relay"]
    );
    assert_eq!(b_report["connections"]["tls_handshake_ms"]["count"], 40);
    assert_eq!(b_report["totals"]["success_rate_pct"], 100.0);
}
