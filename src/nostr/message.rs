//! NIP-01 messages in both directions, kept apart from any socket.
//!
//! Parsing borrows from the frame (`&RawValue` for events and filters), so a relay that sends
//! large stored events costs a scan, not an allocation per field.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{json, Event};

/// Why a frame is not a NIP-01 message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a JSON array: {0}")]
    Json(#[from] serde_json::Error),
    #[error("empty array")]
    Empty,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{what}: element {index} should be {expected}")]
    Field {
        what: &'static str,
        index: usize,
        expected: &'static str,
    },
}

/// What a client sends.
#[derive(Debug)]
pub enum ClientMessage<'a> {
    Event(&'a RawValue),
    Req {
        sub: Cow<'a, str>,
        filters: Vec<&'a RawValue>,
    },
    Close(Cow<'a, str>),
}

/// What a relay sends.
#[derive(Debug)]
pub enum RelayMessage<'a> {
    Event {
        sub: Cow<'a, str>,
        event: &'a RawValue,
    },
    Ok {
        id: [u8; 32],
        accepted: bool,
        message: Cow<'a, str>,
    },
    Eose(Cow<'a, str>),
    Closed {
        sub: Cow<'a, str>,
        message: Cow<'a, str>,
    },
    Notice(Cow<'a, str>),
    Auth(Cow<'a, str>),
    Count {
        sub: Cow<'a, str>,
        result: &'a RawValue,
    },
}

/// Equal when they encode to the same frame (`RawValue` has no `PartialEq` of its own).
impl PartialEq for RelayMessage<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_frame() == other.to_frame()
    }
}

impl PartialEq for ClientMessage<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Event(a), Self::Event(b)) => a.get() == b.get(),
            (Self::Req { sub: s, filters: f }, Self::Req { sub: t, filters: g }) => {
                s == t && f.iter().map(|r| r.get()).eq(g.iter().map(|r| r.get()))
            }
            (Self::Close(a), Self::Close(b)) => a == b,
            _ => false,
        }
    }
}

/// The machine-readable prefix of an `OK` or `CLOSED` message (NIP-01, NIP-42).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Prefix {
    Duplicate,
    Pow,
    Blocked,
    RateLimited,
    Invalid,
    Restricted,
    AuthRequired,
    Mute,
    Error,
    Unsupported,
    /// No prefix, or one NIP-01 does not define.
    Other,
}

impl Prefix {
    pub const ALL: [Prefix; 11] = [
        Prefix::Duplicate,
        Prefix::Pow,
        Prefix::Blocked,
        Prefix::RateLimited,
        Prefix::Invalid,
        Prefix::Restricted,
        Prefix::AuthRequired,
        Prefix::Mute,
        Prefix::Error,
        Prefix::Unsupported,
        Prefix::Other,
    ];

    pub fn of(message: &str) -> Prefix {
        let Some((head, _)) = message.split_once(':') else {
            return Prefix::Other;
        };
        match head {
            "duplicate" => Prefix::Duplicate,
            "pow" => Prefix::Pow,
            "blocked" => Prefix::Blocked,
            "rate-limited" => Prefix::RateLimited,
            "invalid" => Prefix::Invalid,
            "restricted" => Prefix::Restricted,
            "auth-required" => Prefix::AuthRequired,
            "mute" => Prefix::Mute,
            "error" => Prefix::Error,
            "unsupported" => Prefix::Unsupported,
            _ => Prefix::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Duplicate => "duplicate:",
            Prefix::Pow => "pow:",
            Prefix::Blocked => "blocked:",
            Prefix::RateLimited => "rate-limited:",
            Prefix::Invalid => "invalid:",
            Prefix::Restricted => "restricted:",
            Prefix::AuthRequired => "auth-required:",
            Prefix::Mute => "mute:",
            Prefix::Error => "error:",
            Prefix::Unsupported => "unsupported:",
            Prefix::Other => "other",
        }
    }
}

fn elements(frame: &str) -> Result<Vec<&RawValue>, CodecError> {
    let items: Vec<&RawValue> = serde_json::from_str(frame)?;
    if items.is_empty() {
        return Err(CodecError::Empty);
    }
    Ok(items)
}

fn string<'a>(
    items: &[&'a RawValue],
    index: usize,
    what: &'static str,
) -> Result<Cow<'a, str>, CodecError> {
    items
        .get(index)
        .and_then(|raw| serde_json::from_str::<Cow<'a, str>>(raw.get()).ok())
        .ok_or(CodecError::Field {
            what,
            index,
            expected: "a string",
        })
}

fn raw<'a>(
    items: &[&'a RawValue],
    index: usize,
    what: &'static str,
    expected: &'static str,
) -> Result<&'a RawValue, CodecError> {
    items.get(index).copied().ok_or(CodecError::Field {
        what,
        index,
        expected,
    })
}

impl<'a> ClientMessage<'a> {
    pub fn parse(frame: &'a str) -> Result<Self, CodecError> {
        let items = elements(frame)?;
        let ty = string(&items, 0, "message type")?;
        match ty.as_ref() {
            "EVENT" => Ok(ClientMessage::Event(raw(
                &items,
                1,
                "EVENT",
                "an event object",
            )?)),
            "REQ" => Ok(ClientMessage::Req {
                sub: string(&items, 1, "REQ")?,
                filters: items[2..].to_vec(),
            }),
            "CLOSE" => Ok(ClientMessage::Close(string(&items, 1, "CLOSE")?)),
            other => Err(CodecError::UnknownType(other.to_owned())),
        }
    }
}

/// An OK written the way relays write it (`["OK","<64 hex>",true,"<message>"]`, no spaces,
/// no escapes or control characters in the message), read without a JSON parser: it is
/// the reply to nearly every record lt sends. `None` for any other shape, which takes the
/// parser; where both read a frame they read it alike (tested below).
fn plain_ok(frame: &str) -> Option<RelayMessage<'_>> {
    let rest = frame.strip_prefix("[\"OK\",\"")?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(rest.get(..64)?, &mut id).ok()?;
    let rest = rest[64..].strip_prefix("\",")?;
    let (accepted, rest) = match rest.strip_prefix("true,\"") {
        Some(r) => (true, r),
        None => (false, rest.strip_prefix("false,\"")?),
    };
    let message = rest.strip_suffix("\"]")?;
    if message.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    Some(RelayMessage::Ok {
        id,
        accepted,
        message: Cow::Borrowed(message),
    })
}

impl<'a> RelayMessage<'a> {
    pub fn parse(frame: &'a str) -> Result<Self, CodecError> {
        if let Some(ok) = plain_ok(frame) {
            return Ok(ok);
        }
        let items = elements(frame)?;
        let ty = string(&items, 0, "message type")?;
        match ty.as_ref() {
            "EVENT" => Ok(RelayMessage::Event {
                sub: string(&items, 1, "EVENT")?,
                event: raw(&items, 2, "EVENT", "an event object")?,
            }),
            "OK" => {
                let id_hex = string(&items, 1, "OK")?;
                let mut id = [0u8; 32];
                hex::decode_to_slice(id_hex.as_bytes(), &mut id).map_err(|_| {
                    CodecError::Field {
                        what: "OK",
                        index: 1,
                        expected: "a 64-character hex event id",
                    }
                })?;
                let accepted = items
                    .get(2)
                    .and_then(|r| serde_json::from_str::<bool>(r.get()).ok())
                    .ok_or(CodecError::Field {
                        what: "OK",
                        index: 2,
                        expected: "true or false",
                    })?;
                // NIP-01 requires the message, but a missing one is not worth losing the ack.
                let message = match items.get(3) {
                    Some(_) => string(&items, 3, "OK")?,
                    None => Cow::Borrowed(""),
                };
                Ok(RelayMessage::Ok {
                    id,
                    accepted,
                    message,
                })
            }
            "EOSE" => Ok(RelayMessage::Eose(string(&items, 1, "EOSE")?)),
            "CLOSED" => Ok(RelayMessage::Closed {
                sub: string(&items, 1, "CLOSED")?,
                message: match items.get(2) {
                    Some(_) => string(&items, 2, "CLOSED")?,
                    None => Cow::Borrowed(""),
                },
            }),
            "NOTICE" => Ok(RelayMessage::Notice(string(&items, 1, "NOTICE")?)),
            "AUTH" => Ok(RelayMessage::Auth(string(&items, 1, "AUTH")?)),
            "COUNT" => Ok(RelayMessage::Count {
                sub: string(&items, 1, "COUNT")?,
                result: raw(&items, 2, "COUNT", "a count object")?,
            }),
            other => Err(CodecError::UnknownType(other.to_owned())),
        }
    }

    /// The wire frame, as a relay sends it (tests and fault-injection peers play relays).
    /// Strings are escaped as JSON requires, control characters included.
    pub fn to_frame(&self) -> String {
        let mut out = String::from("[");
        let push = |out: &mut String, s: &str| {
            out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()))
        };
        match self {
            RelayMessage::Event { sub, event } => {
                out.push_str("\"EVENT\",");
                push(&mut out, sub);
                out.push(',');
                out.push_str(event.get());
            }
            RelayMessage::Ok {
                id,
                accepted,
                message,
            } => {
                out.push_str("\"OK\",\"");
                out.push_str(&hex::encode(id));
                out.push_str(if *accepted { "\",true," } else { "\",false," });
                push(&mut out, message);
            }
            RelayMessage::Eose(sub) => {
                out.push_str("\"EOSE\",");
                push(&mut out, sub);
            }
            RelayMessage::Closed { sub, message } => {
                out.push_str("\"CLOSED\",");
                push(&mut out, sub);
                out.push(',');
                push(&mut out, message);
            }
            RelayMessage::Notice(m) => {
                out.push_str("\"NOTICE\",");
                push(&mut out, m);
            }
            RelayMessage::Auth(c) => {
                out.push_str("\"AUTH\",");
                push(&mut out, c);
            }
            RelayMessage::Count { sub, result } => {
                out.push_str("\"COUNT\",");
                push(&mut out, sub);
                out.push(',');
                out.push_str(result.get());
            }
        }
        out.push(']');
        out
    }
}

/// `["EVENT",{…}]`
pub fn event_frame(event: &Event) -> String {
    let mut out = String::with_capacity(320 + event.content.len() + event.tags.len() * 64);
    out.push_str("[\"EVENT\",");
    event.write_json(&mut out);
    out.push(']');
    out
}

/// `["REQ",sub,filter…]`; each filter is already compact JSON.
pub fn req_frame(sub: &str, filters: &[&str]) -> String {
    let mut out = String::from("[\"REQ\",");
    json::push_str(&mut out, sub);
    for f in filters {
        out.push(',');
        out.push_str(f);
    }
    out.push(']');
    out
}

/// `["CLOSE",sub]`
pub fn close_frame(sub: &str) -> String {
    let mut out = String::from("[\"CLOSE\",");
    json::push_str(&mut out, sub);
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages_parse() {
        let id = "b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30";
        let ok = format!(r#"["OK","{id}",true,"duplicate: already have this event"]"#);
        match RelayMessage::parse(&ok).unwrap() {
            RelayMessage::Ok {
                accepted, message, ..
            } => {
                assert!(accepted);
                assert_eq!(Prefix::of(&message), Prefix::Duplicate);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            RelayMessage::parse(r#"["EOSE","s1"]"#).unwrap(),
            RelayMessage::Eose("s1".into())
        );
        assert_eq!(
            RelayMessage::parse(r#"["NOTICE","could not parse command"]"#).unwrap(),
            RelayMessage::Notice("could not parse command".into())
        );
        assert!(matches!(
            RelayMessage::parse(r#"["CLOSED","s","auth-required: x"]"#).unwrap(),
            RelayMessage::Closed { .. }
        ));
        assert!(matches!(
            RelayMessage::parse(r#"["EVENT","s",{"id":"x"}]"#).unwrap(),
            RelayMessage::Event { .. }
        ));
    }

    #[test]
    fn malformed_relay_frames_are_errors_not_panics() {
        for bad in [
            "",
            "{}",
            "[]",
            "[1]",
            r#"["OK"]"#,
            r#"["OK","zz",true,""]"#,
            r#"["OK","b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30","yes",""]"#,
            r#"["EOSE",5]"#,
            r#"["WHAT","x"]"#,
            "\u{0}\u{1}garbage",
        ] {
            assert!(RelayMessage::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_classify_per_nip01() {
        assert_eq!(Prefix::of("rate-limited: slow down"), Prefix::RateLimited);
        assert_eq!(Prefix::of("invalid: bad sig"), Prefix::Invalid);
        assert_eq!(Prefix::of("auth-required: hi"), Prefix::AuthRequired);
        assert_eq!(Prefix::of(""), Prefix::Other);
        assert_eq!(Prefix::of("saved"), Prefix::Other);
        assert_eq!(Prefix::of("weird: thing"), Prefix::Other);
    }

    #[test]
    fn relay_frames_round_trip() {
        let raw = RawValue::from_string(r#"{"count":3}"#.into()).unwrap();
        let msgs = [
            RelayMessage::Ok {
                id: [0xab; 32],
                accepted: false,
                message: "blocked: \"no\"".into(),
            },
            RelayMessage::Eose("sub\n1".into()),
            RelayMessage::Closed {
                sub: "s".into(),
                message: "error: x".into(),
            },
            RelayMessage::Notice("hi".into()),
            RelayMessage::Auth("chal".into()),
            RelayMessage::Count {
                sub: "q".into(),
                result: &raw,
            },
        ];
        for m in msgs {
            let frame = m.to_frame();
            assert_eq!(RelayMessage::parse(&frame).unwrap(), m, "{frame}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_relay_text_round_trips(sub in ".*", message in ".*", accepted: bool, id: [u8; 32]) {
            let msgs = [
                RelayMessage::Ok { id, accepted, message: message.as_str().into() },
                RelayMessage::Closed { sub: sub.as_str().into(), message: message.as_str().into() },
                RelayMessage::Eose(sub.as_str().into()),
                RelayMessage::Notice(message.as_str().into()),
            ];
            for m in msgs {
                let frame = m.to_frame();
                proptest::prop_assert_eq!(RelayMessage::parse(&frame).unwrap(), m);
            }
        }

        /// The OK fast path reads every frame it takes as the parser does, whatever the
        /// frame: OK-shaped text with arbitrary ids, flags, messages and tails.
        #[test]
        fn the_plain_ok_path_agrees_with_the_parser(
            id in proptest::prop_oneof![3 => "[0-9a-fA-F]{64}", 1 => "[0-9a-fA-Fg ]{62,66}"],
            flag in "true|false|1|tru",
            message in r#"[a-z: "\\\u{1}\u{e9}]{0,12}"#,
            tail in r#"|\]|"\]|"\] | "\]|"\]x|",1\]"#,
        ) {
            let frame = format!(r#"["OK","{id}",{flag},"{message}{tail}"#);
            if let Some(fast) = plain_ok(&frame) {
                // A space the fast path does not take: the same frame through the parser.
                let spaced = frame.replacen("[\"OK\"", "[ \"OK\"", 1);
                proptest::prop_assert!(plain_ok(&spaced).is_none());
                proptest::prop_assert_eq!(Some(fast), RelayMessage::parse(&spaced).ok(), "{}", frame);
            }
        }
    }

    #[test]
    fn plain_oks_take_the_fast_path_and_others_the_parser() {
        let id = "b1a649ebe8b435ec71d3784793f3bbf4b93e64e17568a741aecd4c7ddeafce30";
        for taken in [
            format!(r#"["OK","{id}",true,""]"#),
            format!(r#"["OK","{id}",false,"duplicate: already have this event"]"#),
        ] {
            assert!(plain_ok(&taken).is_some(), "{taken}");
        }
        for (frame, parses) in [
            (format!(r#"["OK", "{id}",true,""]"#), true),
            (format!(r#"["OK","{id}",true,"a \"quoted\" word"]"#), true),
            (format!(r#"["OK","{id}",true]"#), true),
            (format!(r#"["OK","{id}",true,"x",1]"#), true),
            (format!(r#"["OK","{id}",yes,""]"#), false),
            (format!(r#"["OK","{id}",true,"x"] trailing"#), false),
        ] {
            assert!(plain_ok(&frame).is_none(), "{frame}");
            assert_eq!(RelayMessage::parse(&frame).is_ok(), parses, "{frame}");
        }
    }

    #[test]
    fn client_frames_round_trip() {
        let f = r##"{"kinds":[30078],"#t":["video"],"limit":150}"##;
        let req = req_frame("feed-1", &[f]);
        assert_eq!(req, format!(r#"["REQ","feed-1",{f}]"#));
        match ClientMessage::parse(&req).unwrap() {
            ClientMessage::Req { sub, filters } => {
                assert_eq!(sub, "feed-1");
                assert_eq!(filters[0].get(), f);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ClientMessage::parse(&close_frame("feed-1")).unwrap(),
            ClientMessage::Close("feed-1".into())
        );
    }
}
