//! Nostr core against outside test vectors and an independent implementation.

use lt::nostr::{ClientMessage, Event, VerifyError};

use crate::util::independent_verify;

const VECTORS: &str = include_str!("vectors/bitvid-example-events.jsonl");

/// The platform's own builders signed these (`shared/reference/bitvid-example-events.jsonl`).
fn reference_events() -> Vec<(String, Event)> {
    let mut out = Vec::new();
    for line in VECTORS.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["name"].as_str().unwrap().to_owned();
        if v["event"].get("sig").is_none() {
            continue; // filters, keys and the serialization demo are not events
        }
        let ev =
            Event::from_json(&v["event"].to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, ev));
    }
    out
}

#[test]
fn every_reference_event_verifies_with_lt() {
    let events = reference_events();
    assert_eq!(events.len(), 20, "the vector file holds 20 signed events");
    for (name, ev) in &events {
        ev.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn tampered_reference_events_fail() {
    for (name, ev) in reference_events() {
        let mut bad = ev.clone();
        bad.created_at += 1;
        assert!(
            matches!(bad.verify(), Err(VerifyError::IdMismatch { .. })),
            "{name}"
        );
        let mut bad = ev;
        bad.sig[63] ^= 0x80;
        assert_eq!(bad.verify(), Err(VerifyError::BadSignature), "{name}");
    }
}

#[test]
fn canonical_serialization_matches_the_reference_demo() {
    let demo: serde_json::Value = VECTORS
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == "canonical_demo")
        .unwrap();
    let view = reference_events()
        .into_iter()
        .find(|(n, _)| n == "view_event_30079")
        .unwrap()
        .1;
    assert_eq!(
        view.canonical(),
        demo["event"]["serialized"].as_str().unwrap()
    );
}

#[test]
fn lt_round_trips_reference_events_byte_for_byte_in_meaning() {
    for (name, ev) in reference_events() {
        let json = ev.to_json();
        let back = Event::from_json(&json).unwrap();
        assert_eq!(back, ev, "{name}");
        let frame = lt::nostr::message::event_frame(&ev);
        match ClientMessage::parse(&frame).unwrap() {
            ClientMessage::Event(raw) => assert_eq!(raw.get(), json),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_independent_verifier_accepts_the_references_and_rejects_tampering() {
    for line in VECTORS.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event"].get("sig").is_none() {
            continue;
        }
        independent_verify(&v["event"]).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        let mut bad = v["event"].clone();
        bad["content"] = serde_json::Value::String("x".into());
        assert!(independent_verify(&bad).is_err());
    }
}
