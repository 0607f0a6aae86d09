//! One input line into a trace record, or the reason it is not one. Pure, so lines are
//! parsed and verified in parallel; never panics, whatever the line holds.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

use super::assign::{client_of, role_of};
use crate::capture::{Completion, Op, Record};
use crate::nostr::{Event, VerifyError};

/// Why a line is not imported. The summary counts lines by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Not JSON text (cut short, not UTF-8, or not JSON at all).
    NotJson,
    /// JSON, but neither an event object nor `["EVENT",{…}]` (a missing or mistyped field,
    /// upper-case hex, another message type).
    NotEvent,
    /// A `kind` above 65535.
    KindOutOfRange,
    /// The id is not the hash of the event's NIP-01 serialization.
    BadId,
    /// The pubkey is not a point on the curve.
    BadPubkey,
    /// The BIP-340 signature does not verify for the id and pubkey.
    BadSignature,
    /// Longer than `lines::MAX_LINE_BYTES`.
    TooLong,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::NotJson,
        Reason::NotEvent,
        Reason::KindOutOfRange,
        Reason::BadId,
        Reason::BadPubkey,
        Reason::BadSignature,
        Reason::TooLong,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::NotJson => "not JSON",
            Reason::NotEvent => "not an event object",
            Reason::KindOutOfRange => "kind out of range",
            Reason::BadId => "bad id",
            Reason::BadPubkey => "bad pubkey",
            Reason::BadSignature => "bad signature",
            Reason::TooLong => "line too long",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A line that is not imported: the reason, and what exactly was wrong (for `--strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub reason: Reason,
    pub detail: String,
}

impl Bad {
    fn new(reason: Reason, detail: impl Into<String>) -> Bad {
        Bad {
            reason,
            detail: detail.into(),
        }
    }
}

/// An event ready for the trace; only its offset is left to set, by the timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub created_at: u64,
    /// `offset_us` is 0.
    pub record: Record,
}

/// Parses one line: an event object, `["EVENT",{…}]`, or `["EVENT","sub",{…}]` (a relay's
/// message). The frame holds the object's text exactly as the line had it, so ids,
/// signatures and bytes survive. With `verify`, the id and signature are checked.
pub fn parse(line: &[u8], clients: u32, verify: bool) -> Result<Parsed, Bad> {
    let text = std::str::from_utf8(line)
        .map_err(|e| Bad::new(Reason::NotJson, format!("not UTF-8 text ({e})")))?;
    let object = event_object(text)?;
    let event = Event::from_json(object).map_err(|e| not_an_event(object, &e))?;
    if verify {
        event.verify().map_err(|e| {
            let reason = match e {
                VerifyError::IdMismatch { .. } => Reason::BadId,
                VerifyError::BadPubkey => Reason::BadPubkey,
                VerifyError::BadSignature => Reason::BadSignature,
            };
            Bad::new(reason, e.to_string())
        })?;
    }
    let mut frame = String::with_capacity(object.len() + 10);
    frame.push_str("[\"EVENT\",");
    frame.push_str(object);
    frame.push(']');
    Ok(Parsed {
        created_at: event.created_at,
        record: Record {
            offset_us: 0,
            client: client_of(&event.pubkey, clients),
            op: Op::Event {
                kind: event.kind,
                role: role_of(event.kind, &event.tags),
            },
            frame,
            completes: Completion::Ok {
                id: hex::encode(event.id),
            },
            after: None,
            recorded: None,
        },
    })
}

/// The first byte of a JSON object. (Named, not written as a brace literal, so that
/// brace-counting tools such as `long_fns.py` read the function right.)
const OPEN_OBJECT: u8 = b'{';

/// The event object's text within the line.
fn event_object(line: &str) -> Result<&str, Bad> {
    let t = line.trim_matches([' ', '\t', '\r', '\n']);
    match t.as_bytes().first() {
        Some(&OPEN_OBJECT) => Ok(t),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(t).map_err(|e| json_error(&e))?;
            let is_event = items.first().is_some_and(|ty| {
                serde_json::from_str::<Cow<str>>(ty.get()).is_ok_and(|ty| ty == "EVENT")
            });
            let object = match items.as_slice() {
                [_, event] if is_event => event,
                [_, sub, event] if is_event && sub.get().starts_with('"') => event,
                _ => {
                    return Err(Bad::new(
                        Reason::NotEvent,
                        "an array that is not [\"EVENT\",{…}] or [\"EVENT\",sub,{…}]",
                    ))
                }
            };
            if object.get().as_bytes().first() == Some(&OPEN_OBJECT) {
                Ok(object.get())
            } else {
                Err(Bad::new(
                    Reason::NotEvent,
                    "the EVENT message does not hold an object",
                ))
            }
        }
        _ => match serde_json::from_str::<serde_json::Value>(t) {
            Ok(v) => Err(Bad::new(
                Reason::NotEvent,
                format!("a JSON {}, not an event object", json_type(&v)),
            )),
            Err(e) => Err(json_error(&e)),
        },
    }
}

/// Why an object did not parse as an event: not JSON at all, a kind above 65535, or another
/// field missing or of the wrong type. Only bad lines come here, so parsing again is fine.
fn not_an_event(object: &str, err: &serde_json::Error) -> Bad {
    use serde_json::error::Category;
    if matches!(err.classify(), Category::Syntax | Category::Eof) {
        return json_error(err);
    }
    match serde_json::from_str::<serde_json::Value>(object) {
        Err(e) => json_error(&e),
        Ok(v) => match v.get("kind").and_then(serde_json::Value::as_u64) {
            Some(kind) if kind > u64::from(u16::MAX) => Bad::new(
                Reason::KindOutOfRange,
                format!("kind {kind} is above 65535"),
            ),
            _ => Bad::new(Reason::NotEvent, message(err)),
        },
    }
}

fn json_error(err: &serde_json::Error) -> Bad {
    Bad::new(Reason::NotJson, message(err))
}

/// serde_json's message without its "at line 1 column N": the line is the input's.
fn message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(m) => m.to_owned(),
        None => text,
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Role;
    use crate::nostr::{keys, Unsigned};

    fn signed(kind: u16, tags: Vec<Vec<String>>, content: &str) -> Event {
        let kp = keys::keypair_from_material([3u8; 32]);
        Unsigned {
            pubkey: keys::pubkey(&kp),
            created_at: 1_770_000_000,
            kind,
            tags,
            content: content.into(),
        }
        .sign(&kp, &[0u8; 32])
    }

    fn reason(line: &str) -> Reason {
        parse(line.as_bytes(), 10, true).unwrap_err().reason
    }

    #[test]
    fn an_event_line_keeps_its_bytes_in_the_frame() {
        let ev = signed(30079, vec![vec!["t".into(), "view".into()]], "é \"q\" \n");
        let json = ev.to_json();
        for line in [
            json.clone(),
            format!("  {json}\r"),
            format!("[\"EVENT\",{json}]"),
            format!("[ \"EVENT\" , {json} ]"),
            format!("[\"EVENT\",\"sub-1\",{json}]"),
        ] {
            let p = parse(line.as_bytes(), 10, true).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(p.record.frame, format!("[\"EVENT\",{json}]"), "{line}");
            assert_eq!(p.created_at, 1_770_000_000);
            assert_eq!(
                p.record.op,
                Op::Event {
                    kind: 30079,
                    role: Role::View
                }
            );
            assert_eq!(
                p.record.completes,
                Completion::Ok {
                    id: hex::encode(ev.id)
                }
            );
            assert_eq!(p.record.client, client_of(&ev.pubkey, 10));
        }
        // Whatever spacing the object itself has is kept as it is.
        let spaced = json.replace(",\"kind\":", ", \"kind\" : ");
        let p = parse(spaced.as_bytes(), 10, true).unwrap();
        assert_eq!(p.record.frame, format!("[\"EVENT\",{spaced}]"));
    }

    #[test]
    fn bad_lines_by_reason() {
        let ev = signed(1, vec![], "hello");
        let json = ev.to_json();
        let hex_sig = hex::encode(ev.sig);
        let flipped_sig = {
            let c = if hex_sig.starts_with('0') { "1" } else { "0" };
            json.replacen(&hex_sig, &format!("{c}{}", &hex_sig[1..]), 1)
        };
        let hex_id = hex::encode(ev.id);
        let flipped_id = {
            let c = if hex_id.starts_with('0') { "1" } else { "0" };
            json.replacen(&hex_id, &format!("{c}{}", &hex_id[1..]), 1)
        };
        let table: Vec<(String, Reason)> = vec![
            (json[..json.len() / 2].to_owned(), Reason::NotJson),
            ("hello world".into(), Reason::NotJson),
            ("{\"id\":".into(), Reason::NotJson),
            ("[\"EVENT\",".into(), Reason::NotJson),
            ("42".into(), Reason::NotEvent),
            ("\"text\"".into(), Reason::NotEvent),
            ("{\"a\":1}".into(), Reason::NotEvent),
            ("[]".into(), Reason::NotEvent),
            ("[\"REQ\",\"s\",{}]".into(), Reason::NotEvent),
            ("[\"EVENT\",42]".into(), Reason::NotEvent),
            ("[\"EVENT\",1,{}]".into(), Reason::NotEvent),
            (format!("[\"EVENT\",{json},{json}]"), Reason::NotEvent),
            (
                json.replace("\"kind\":1,", "\"kind\":70000,"),
                Reason::KindOutOfRange,
            ),
            (
                json.replace("\"kind\":1,", "\"kind\":-1,"),
                Reason::NotEvent,
            ),
            (
                json.replace(&hex_id, &hex_id.to_uppercase()),
                Reason::NotEvent,
            ),
            (
                json.replace("\"content\":\"hello\"", "\"content\":\"hullo\""),
                Reason::BadId,
            ),
            (flipped_id, Reason::BadId),
            (flipped_sig, Reason::BadSignature),
        ];
        for (line, want) in table {
            assert_eq!(reason(&line), want, "{line}");
        }
        assert_eq!(
            parse(&[b'{', 0xff, b'}'], 10, true).unwrap_err().reason,
            Reason::NotJson
        );
    }

    #[test]
    fn without_verify_only_the_shape_is_checked() {
        let json = signed(1, vec![], "hello").to_json();
        let tampered = json.replace("\"content\":\"hello\"", "\"content\":\"hullo\"");
        assert_eq!(reason(&tampered), Reason::BadId);
        assert!(parse(tampered.as_bytes(), 10, false).is_ok());
        assert_eq!(
            parse(b"{\"a\":1}", 10, false).unwrap_err().reason,
            Reason::NotEvent
        );
    }

    #[test]
    fn details_do_not_carry_serde_positions() {
        let bad = parse(b"{\"id\":", 10, true).unwrap_err();
        assert!(!bad.detail.contains("line 1"), "{}", bad.detail);
        assert!(bad.detail.contains("EOF"), "{}", bad.detail);
    }

    proptest::proptest! {
        /// Any bytes: a record or a reason, never a panic.
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes, 7, true);
        }

        /// A valid line cut or changed anywhere is still a record or a reason.
        #[test]
        fn never_panics_on_a_damaged_event(cut in 0usize..400, at in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let json = signed(30079, vec![vec!["t".into(), "view".into()]], "x").to_json();
            let mut bytes = json.into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.min(bytes.len()));
            let _ = parse(&bytes, 7, true);
        }
    }
}
