//! deploy/kubernetes/ (issue #19): the manifests validate offline against Kubernetes' own
//! schemas (strict: an unknown field is an error), and their commands, played here as
//! Kubernetes would play them (one lt process per index with `JOB_COMPLETION_INDEX` set,
//! `$(VAR)`s expanded from the ConfigMap), make one merged run against a real relay.
//! Nothing here runs a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::util::text;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

/// The virtualenv of `scripts/install-k8s-validate`; fails loudly when it is missing.
fn venv() -> PathBuf {
    let dir = std::env::var_os("LT_K8S_VALIDATE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/k8s-validate"),
        PathBuf::from,
    );
    assert!(
        dir.join("bin/kubernetes-validate").is_file(),
        "kubernetes-validate is not installed in {}: run scripts/install-k8s-validate",
        dir.display()
    );
    dir
}

/// Every YAML document of the manifests, as JSON (parsed by PyYAML from the same venv).
fn documents() -> Vec<Value> {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml\njson.dump([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d], sys.stdout)",
        ])
        .args(manifests())
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes/"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A container's command line with `$(NAME)` expanded from `env` (as the kubelet does) and
/// the pod's mount points mapped to local folders.
fn command_line(
    container: &Value,
    env: &BTreeMap<String, String>,
    mounts: &[(&str, &Path)],
) -> Vec<String> {
    let mut line = strings(&container["command"]);
    line.extend(strings(&container["args"]));
    line.into_iter()
        .map(|mut arg| {
            for (name, value) in env {
                arg = arg.replace(&format!("$({name})"), value);
            }
            assert!(!arg.contains("$("), "unexpanded: {arg}");
            // A path under a mount point (at the start of the argument, or of a word of a
            // shell line).
            for (at, local) in mounts {
                let local = local.to_string_lossy();
                if let Some(rest) = arg.strip_prefix(&format!("{at}/")) {
                    arg = format!("{local}/{rest}");
                }
                arg = arg.replace(&format!(" {at}/"), &format!(" {local}/"));
            }
            arg
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_validate_offline_against_the_kubernetes_schemas() {
    let bin = venv().join("bin/kubernetes-validate");
    // The oldest Kubernetes the manifests are meant for (Indexed Jobs are GA since 1.24)
    // and the newest the validator knows.
    for version in ["1.27.0", "1.37.0"] {
        let out = Command::new(&bin)
            .args(["--strict", "-k", version])
            .args(manifests())
            .output()
            .expect("kubernetes-validate");
        let said = text(&out.stdout) + &text(&out.stderr);
        assert!(out.status.success(), "Kubernetes {version}: {said}");
        for resource in [
            "job/lt-replay",
            "job/lt-analyze",
            "configmap/lt-run",
            "persistentvolumeclaim/lt-results",
        ] {
            assert!(
                said.contains(&format!("passed for resource {resource}")),
                "{resource}: {said}"
            );
        }
    }
    // Strict means strict: a misspelt field fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    let job = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/replay-job.yaml"),
    )
    .expect("replay-job.yaml");
    std::fs::write(&bad, job.replace("completionMode:", "completionMod:")).expect("write");
    let out = Command::new(&bin)
        .args(["--strict", "-k", "1.37.0"])
        .arg(&bad)
        .output()
        .expect("kubernetes-validate");
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("'completionMod' was unexpected"));
}

#[test]
fn the_indexed_job_played_here_makes_one_merged_run() {
    let _machine = crate::util::busy();
    let docs = documents();
    let config = find(&docs, "ConfigMap", "lt-run");
    let replay = find(&docs, "Job", "lt-replay");
    let analyze = find(&docs, "Job", "lt-analyze");

    // The Job is Indexed, and N agrees in its three places.
    let spec = &replay["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().expect("completions");
    assert_eq!(spec["parallelism"].as_u64(), Some(n));
    let pod = &spec["template"]["spec"];
    let init = &pod["initContainers"][0];
    let main = &pod["containers"][0];
    let args = strings(&main["args"]);
    let at = args.iter().position(|a| a == "--shards").expect("--shards");
    assert_eq!(
        args[at + 1],
        n.to_string(),
        "--shards and completions differ"
    );
    // The staging relay is named by the allow-list, and only there.
    let data: BTreeMap<String, String> =
        serde_json::from_value(config["data"].clone()).expect("data");
    let host = url::Url::parse(&data["RELAY_URL"])
        .expect("RELAY_URL")
        .host_str()
        .expect("host")
        .to_owned();
    assert_eq!(data["LT_ALLOW_HOSTS"], host);

    // Played here: the ConfigMap with a local relay, a short trace and a near instant.
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let mut env = data.clone();
    for (k, v) in [
        ("RELAY_URL", relay.url.as_str()),
        ("CLIENTS", "40"),
        ("RATE_EPS", "60"),
        ("DURATION_SEC", "10"),
        ("SPEED", "2x"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert(
        "LT_START_AT".into(),
        (chrono::Utc::now() + chrono::Duration::seconds(8))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results");
    std::fs::create_dir(&results).expect("results");
    let lt_bin = env!("CARGO_BIN_EXE_lt");
    let run = |line: &[String], env: &BTreeMap<String, String>| {
        assert_eq!(line[0], "lt", "{line:?}");
        let mut cmd = Command::new(lt_bin);
        cmd.args(&line[1..])
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let mut pods: Vec<Child> = Vec::new();
    let mut traces = Vec::new();
    for i in 0..n {
        let mut env = env.clone();
        env.insert("JOB_COMPLETION_INDEX".into(), i.to_string());
        let trace_dir = dir.path().join(format!("pod-{i}"));
        std::fs::create_dir(&trace_dir).expect("pod dir");
        let mounts: [(&str, &Path); 2] = [("/trace", &trace_dir), ("/results", &results)];
        // The init container: the trace, made in the pod.
        let out = run(&command_line(init, &env, &mounts), &env)
            .output()
            .expect("synth");
        assert!(out.status.success(), "pod {i} synth: {}", text(&out.stderr));
        traces.push(std::fs::read(trace_dir.join("trace.ltc")).expect("trace"));
        pods.push(
            run(&command_line(main, &env, &mounts), &env)
                .spawn()
                .expect("replay"),
        );
    }
    // Every pod made the same trace.
    assert!(traces.windows(2).all(|w| w[0] == w[1]));
    for (i, pod) in pods.into_iter().enumerate() {
        let out = pod.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "part {i}: {}\n{}",
            text(&out.stderr),
            relay.log_tail(20)
        );
    }

    // The analyze Job's command, through a shell as in its container.
    let container = &analyze["spec"]["template"]["spec"]["containers"][0];
    let line = command_line(container, &env, &[("/results", &results)]);
    assert_eq!(line[..2], ["sh", "-c"]);
    let script = line[2].replacen("lt ", &format!("{lt_bin} "), 1);
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("# "),
        "the Markdown report is printed"
    );
    let json = crate::util::file_with_extension(&results.join("report"), "json");
    let report: Value =
        serde_json::from_slice(&std::fs::read(json).expect("report")).expect("JSON");
    let records = lt::capture::TraceReader::open(&dir.path().join("pod-0/trace.ltc"))
        .expect("trace")
        .count() as u64;
    let attempted: u64 = report["totals"]["by_outcome"]
        .as_object()
        .expect("by_outcome")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(attempted, records);
    assert_eq!(report["config"]["shards"], n);
}
