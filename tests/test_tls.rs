//! `wss://` against a real relay behind TLS: nginx terminating TLS with a test CA in front
//! of nostr-rs-relay (`tests/tls.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lt::capture::{Completion, TraceReader};

use crate::relay::{Relay, RelayKind, RelayOptions};
use crate::tls::{certs, Nginx};
use crate::util::stored;
use crate::util::{one_line_error, synth, text};
use crate::util::{outcomes, replay};

fn event_ids(trace: &Path) -> Vec<String> {
    TraceReader::open(trace)
        .unwrap()
        .filter_map(|r| match r.unwrap().completes {
            Completion::Ok { id } => Some(id),
            _ => None,
        })
        .collect()
}

fn small_trace(dir: &Path) -> std::path::PathBuf {
    synth(
        dir,
        "tls",
        &["--seed", "4", "--duration", "10", "--clients", "20"],
    )
}

/// Issue #14: the same trace over `wss://` (through nginx, the test CA given with
/// `--ca-file`) and over `ws://` straight to a fresh relay: the same outcome counts and the
/// same stored set; the connect phase records the TLS handshake apart.
#[test]
fn wss_with_the_staging_ca_matches_ws_straight_to_a_relay() {
    let _machine = crate::util::busy();
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let ids = event_ids(&trace);
    let certs = certs(dir.path(), &["localhost"]);

    let behind = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let nginx = Nginx::start(&certs, behind.port);
    let tls_out = dir.path().join("tls.ltr");
    let run = replay(
        &trace,
        &format!("wss://localhost:{}/", nginx.port),
        &tls_out,
        &["--speed", "4x", "--ca-file", certs.ca.to_str().unwrap()],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));

    let direct = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let plain_out = dir.path().join("plain.ltr");
    let run = replay(&trace, &direct.url, &plain_out, &["--speed", "4x"]);
    assert!(run.status.success(), "{}", text(&run.stderr));

    let (tls_counts, _) = outcomes(&tls_out);
    let (plain_counts, _) = outcomes(&plain_out);
    assert_eq!(tls_counts, plain_counts);
    assert!(
        tls_counts.get("ok").copied().unwrap_or(0) > 0,
        "{tls_counts:?}"
    );
    let via_tls = stored(&behind.url, &ids);
    let straight = stored(&direct.url, &ids);
    assert!(!via_tls.is_empty());
    assert_eq!(via_tls, straight);

    // The NIP-11 preflight went over https too, to the same checked address.
    let header = lt::capture::results::ResultsReader::open(&tls_out)
        .unwrap()
        .header()
        .clone();
    let preflight = header.preflight.expect("a preflight");
    assert!(
        preflight.url.starts_with("https://localhost:"),
        "{preflight:?}"
    );
    let doc = lt::nip11::Document::parse(preflight.document.as_deref().unwrap()).unwrap();
    assert_eq!(doc.build().as_deref(), Some("nostr-rs-relay 0.8.12"));

    let report = crate::util::report_of(std::slice::from_ref(&tls_out));
    let tls = report
        .measured
        .connections
        .tls_handshake_ms
        .clone()
        .unwrap();
    assert_eq!(tls.count, 20, "{tls:?}");
    drop(nginx);
}

/// Issue #14: without the CA, or with a certificate for another name, the run stops with a
/// one-line TLS error naming the host and why, exit 2, and no event reaches the relay.
#[test]
fn an_untrusted_or_misnamed_certificate_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let ids = event_ids(&trace);
    for (names, with_ca, why) in [
        (&["localhost"][..], false, "unknown issuer"),
        (
            &["other.test"][..],
            true,
            "not valid for the name localhost",
        ),
    ] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let certs = certs(sub.path(), names);
        let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions::default());
        let nginx = Nginx::start(&certs, relay.port);
        let out = sub.path().join("r.ltr");
        let mut extra = vec![];
        let ca = certs.ca.to_str().unwrap().to_owned();
        if with_ca {
            extra = vec!["--ca-file", ca.as_str()];
        }
        let run = replay(
            &trace,
            &format!("wss://localhost:{}/", nginx.port),
            &out,
            &extra,
        );
        let line = one_line_error(&run);
        assert!(
            line.contains("TLS with localhost") && line.contains(why),
            "{line}"
        );
        assert!(!out.exists(), "no results file: nothing was sent");
        assert!(
            stored(&relay.url, &ids).is_empty(),
            "an event reached the relay"
        );
        drop(nginx);
    }
}

/// Issue #14: a name on the allow-list that resolves to loopback (through the guard's
/// resolver seam: `/etc/hosts` is not the test's to change) passes the guard and TLS, with
/// the URL's name as the server name and the checked address as the socket's.
#[test]
fn an_allow_listed_staging_name_passes_the_guard_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let trace = small_trace(dir.path());
    let certs = certs(dir.path(), &["staging.test"]);
    let relay = Relay::start(RelayKind::NostrRsRelay, RelayOptions { raise_limits: true });
    let nginx = Nginx::start(&certs, relay.port);
    let url = format!("wss://staging.test:{}/", nginx.port);
    let allow = lt::guard::AllowList::parse(&["staging.test".to_owned()]).unwrap();
    let port = nginx.port;
    let resolver = move |host: &str, _: u16| -> std::io::Result<Vec<std::net::SocketAddr>> {
        assert_eq!(host, "staging.test");
        Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
    };
    let target = lt::guard::check(&url, &allow, &resolver).unwrap();
    assert!(target.loopback());
    assert_eq!(target.url().host_str(), Some("staging.test"));
    assert_eq!(
        target.addrs(),
        [std::net::SocketAddr::from(([127, 0, 0, 1], port))]
    );
    let target = target.with_tls(Some(
        lt::tls::client_config(std::slice::from_ref(&certs.ca)).unwrap(),
    ));

    let plan = lt::replay::plan::plan(&trace, lt::replay::Speed::Scaled(4.0), None, None).unwrap();
    let load = lt::replay::Load {
        speed: lt::replay::Speed::Scaled(4.0),
        clients: None,
        threads: None,
        connect_concurrency: 50,
        max_in_flight: 10_000,
        per_conn_in_flight: 100,
        overload: lt::replay::Overload::Wait,
        timeout: std::time::Duration::from_secs(10),
        duration_s: None,
        reconcile: Some(false),
        delivery_rows: false,
        start_at: None,
    };
    let cfg = lt::replay::Config::new(&load, target, None);
    let out = dir.path().join("r.ltr");
    let summary = lt::replay::run(
        &trace,
        &plan,
        &out,
        cfg,
        &lt::replay::Stop::new(),
        Arc::new(lt::replay::Quiet),
    )
    .unwrap();
    let counts: &BTreeMap<String, u64> = &summary.trailer.by_outcome;
    assert_eq!(counts.get("ok").copied(), Some(plan.records), "{counts:?}");
    drop(nginx);
}
