//! Starts real processes: fake relays made of shell commands. The two real relays are
//! started by this launcher in the integration tests (`tests/support/src/relay.rs`, `tests/test_relays.rs`),
//! where the installed binaries are found, and a missing one fails the test.

use super::error::describe;
use super::*;

/// Both relays answer in ~0.1 s here; this only bounds a broken start.
const READY: Duration = Duration::from_secs(15);

/// A run dir whose path has a space and a `'`, so every test also exercises the quoting.
fn run_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lt ab it's-")
        .tempdir()
        .expect("create temp run dir")
}

/// A run dir with a space but no quote: config templates refuse a `'` in `{dir}`.
fn plain_run_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lt ab-")
        .tempdir()
        .expect("create temp run dir")
}

fn process_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists; nothing is delivered.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn first_line(err: &StartError) -> String {
    err.to_string().lines().next().unwrap_or("").to_string()
}

#[test]
fn a_command_that_exits_at_once_is_reported_with_status_and_log() {
    let spec = BuildSpec::parse("quits=echo bye from the relay; exit 3 # {port}", None).unwrap();
    let tmp = run_dir();
    let err = start(&spec, tmp.path(), READY).unwrap_err();
    let StartError::Exited { status, port, .. } = &err else {
        panic!("expected Exited, got {err}");
    };
    assert_eq!(status.code(), Some(3));
    assert_eq!(
        first_line(&err),
        format!("relay quits exited with exit code 3 before answering on 127.0.0.1:{port}")
    );
    assert!(err.to_string().contains("\nbye from the relay"), "{err}");
}

#[test]
fn a_command_that_never_listens_times_out_and_is_killed() {
    let arg = "sleeper=echo waiting for nothing; echo $$ > {dir}/pid; exec sleep 30 # {port}";
    let spec = BuildSpec::parse(arg, None).unwrap();
    let tmp = run_dir();
    let began = Instant::now();
    let err = start(&spec, tmp.path(), Duration::from_secs(1)).unwrap_err();
    let StartError::Timeout {
        timeout,
        last_error,
        port,
        ..
    } = &err
    else {
        panic!("expected Timeout, got {err}");
    };
    assert_eq!(*timeout, Duration::from_secs(1));
    assert!(last_error.starts_with("connect:"), "{last_error}");
    let expected = format!("relay sleeper did not answer on 127.0.0.1:{port} within 1s: connect:");
    assert!(first_line(&err).starts_with(&expected), "{err}");
    assert!(err.to_string().contains("waiting for nothing"), "{err}");
    // SIGTERM ends sleep at once: no grace period was spent.
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    // The pid file sits in a path with a space and a quote: the quoting held.
    let pid_file = tmp.path().join("data/pid");
    let pid: u32 = fs::read_to_string(&pid_file)
        .expect("pid file written through the quoted {dir}")
        .trim()
        .parse()
        .expect("a pid");
    assert!(process_gone(pid), "sleep {pid} survived");
}

#[test]
fn a_non_empty_data_dir_is_refused() {
    let tmp = run_dir();
    let stale = tmp.path().join("data/nostr.db");
    fs::create_dir_all(tmp.path().join("data")).unwrap();
    fs::write(&stale, b"old events").unwrap();
    let spec = BuildSpec::parse("r=exit 0 # {port}", None).unwrap();
    let err = start(&spec, tmp.path(), READY).unwrap_err();
    assert!(matches!(err, StartError::DataDirNotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("is not empty"), "{err}");
    // Nothing was started or touched.
    assert!(stale.is_file());
    assert!(!tmp.path().join("relay.log").exists());
}

#[test]
fn address_in_use_retries_on_fresh_ports_with_a_fresh_data_dir() {
    // Each attempt leaves a file in {dir}; a retry that reused it would fail as not empty.
    let arg = "busy=touch {dir}/db; echo {port} >> {dir}/../ports; \
               echo 'Error: Address already in use (os error 98)'; exit 1";
    let spec = BuildSpec::parse(arg, None).unwrap();
    let tmp = run_dir();
    let err = start(&spec, tmp.path(), READY).unwrap_err();
    let StartError::AddrInUse { attempts, .. } = &err else {
        panic!("expected AddrInUse, got {err}");
    };
    assert_eq!(*attempts, 3);
    let ports = fs::read_to_string(tmp.path().join("ports")).unwrap();
    assert_eq!(ports.lines().count(), 3, "{ports}");
}

#[test]
fn config_template_is_filled_and_keeps_its_extension() {
    let tmp = plain_run_dir();
    let template = tmp.path().join("relay.yaml");
    fs::write(&template, "port: {port}\ndata: \"{dir}\"\nmap: {a: 1}\n").unwrap();
    let run = tmp.path().join("run 1");
    let spec = BuildSpec::parse("c=cat {config}; exit 4 # {port}", Some(template)).unwrap();
    let err = start(&spec, &run, READY).unwrap_err();
    let StartError::Exited { status, port, .. } = &err else {
        panic!("expected Exited, got {err}");
    };
    assert_eq!(status.code(), Some(4));
    let written = fs::read_to_string(run.join("config.yaml")).unwrap();
    let data = run.join("data");
    assert_eq!(
        written,
        format!(
            "port: {port}\ndata: \"{}\"\nmap: {{a: 1}}\n",
            data.display()
        )
    );
    // The relay saw the file through the quoted {config}.
    assert!(err.to_string().contains(&format!("port: {port}")), "{err}");
}

#[test]
fn config_template_errors_name_the_template() {
    let tmp = plain_run_dir();
    let template = tmp.path().join("t.toml");
    fs::write(&template, "port = {prot}\n").unwrap();
    let spec = BuildSpec::parse("c=r -c {config} {port}", Some(template.clone())).unwrap();
    let err = start(&spec, &tmp.path().join("run"), READY).unwrap_err();
    assert!(matches!(err, StartError::Config { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("unknown placeholder {prot}") && msg.contains("t.toml"),
        "{msg}"
    );

    // The port has to reach the relay somewhere.
    fs::write(&template, "path = \"{dir}\"\n").unwrap();
    let spec_no_port = BuildSpec::parse("c=r -c {config}", Some(template.clone())).unwrap();
    let err = start(&spec_no_port, &tmp.path().join("run2"), READY).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither it nor the command has {port}"),
        "{err}"
    );

    // A quote in {dir} cannot go into a config unescaped.
    fs::write(&template, "path = \"{dir}\"\nport = {port}\n").unwrap();
    let quoted = run_dir();
    let err = start(&spec, quoted.path(), READY).unwrap_err();
    assert!(
        err.to_string().contains("cannot go into a config file"),
        "{err}"
    );
}

#[test]
fn read_tail_returns_the_last_lines() {
    let tmp = plain_run_dir();
    let log = tmp.path().join("relay.log");
    let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    fs::write(&log, text).unwrap();
    assert_eq!(read_tail(&log, 3).unwrap(), "line 98\nline 99\nline 100");
    assert_eq!(read_tail(&log, 0).unwrap(), "");
    // A log larger than the bytes read still ends right and starts on a whole line.
    let long: String = (0..20_000).map(|i| format!("entry {i}\n")).collect();
    fs::write(&log, long).unwrap();
    let tail = read_tail(&log, 100_000).unwrap();
    assert!(tail.ends_with("entry 19999"));
    assert!(tail.starts_with("entry "), "{}", &tail[..20]);
}

#[test]
fn describe_names_codes_and_signals() {
    assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit code 3");
    assert_eq!(
        describe(ExitStatus::from_raw(143 << 8)),
        "exit code 143 (signal 15 in the relay)"
    );
    assert_eq!(describe(ExitStatus::from_raw(9)), "signal 9");
}
