//! NIP-01 filters: which events a subscription asks for. Used to work out, independently of
//! the relay, which deliveries a live subscription should get.
//!
//! An event matches a filter when every condition the filter sets holds: its id is one of
//! `ids`, its pubkey one of `authors`, its kind one of `kinds`, for each `#x` one of its `x`
//! tags' values is in the list, and `since <= created_at <= until`. `limit` only bounds the
//! stored events before EOSE, so it plays no part here. A subscription with several filters
//! matches what any of them matches.

use serde_json::Value;

/// The parts of an event a filter looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub id: [u8; 32],
    pub pubkey: [u8; 32],
    pub kind: u16,
    pub created_at: u64,
    /// `(letter, value)` of every tag whose name is one letter, the only ones a filter can
    /// ask for.
    pub tags: Vec<(u8, String)>,
}

impl Keys {
    /// The keys of an event given as JSON; `None` when it is not an event object.
    pub fn of(event: &Value) -> Option<Keys> {
        let hex32 = |v: &Value| -> Option<[u8; 32]> {
            let mut out = [0u8; 32];
            hex::decode_to_slice(v.as_str()?, &mut out).ok()?;
            Some(out)
        };
        let tags = event
            .get("tags")?
            .as_array()?
            .iter()
            .filter_map(|t| {
                let t = t.as_array()?;
                let name = t.first()?.as_str()?.as_bytes();
                let value = t.get(1)?.as_str()?;
                (name.len() == 1).then(|| (name[0], value.to_owned()))
            })
            .collect();
        Some(Keys {
            id: hex32(event.get("id")?)?,
            pubkey: hex32(event.get("pubkey")?)?,
            kind: u16::try_from(event.get("kind")?.as_u64()?).ok()?,
            created_at: event.get("created_at")?.as_u64()?,
            tags,
        })
    }
}

/// One filter, parsed. Conditions absent from the JSON are `None` (no constraint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub ids: Option<Vec<[u8; 32]>>,
    pub authors: Option<Vec<[u8; 32]>>,
    pub kinds: Option<Vec<u16>>,
    /// `#x` conditions: the letter and the values any one of which must be a tag's.
    pub tags: Vec<(u8, Vec<String>)>,
    pub since: Option<u64>,
    pub until: Option<u64>,
}

impl Filter {
    /// Parses one filter object. A value of the wrong shape is an error naming the field: a
    /// filter lt cannot read is one it cannot predict deliveries for.
    pub fn parse(v: &Value) -> Result<Filter, String> {
        let obj = v.as_object().ok_or("a filter is not a JSON object")?;
        let mut f = Filter::default();
        for (key, value) in obj {
            let list = || {
                value
                    .as_array()
                    .ok_or_else(|| format!("filter field {key:?} is not a list"))
            };
            match key.as_str() {
                "ids" | "authors" => {
                    let mut keys = Vec::new();
                    for item in list()? {
                        let mut out = [0u8; 32];
                        item.as_str()
                            .and_then(|s| hex::decode_to_slice(s, &mut out).ok())
                            .ok_or_else(|| format!("filter {key:?} holds {item}, not 64 hex"))?;
                        keys.push(out);
                    }
                    if key == "ids" {
                        f.ids = Some(keys);
                    } else {
                        f.authors = Some(keys);
                    }
                }
                "kinds" => {
                    let mut kinds = Vec::new();
                    for item in list()? {
                        kinds.push(
                            item.as_u64()
                                .and_then(|k| u16::try_from(k).ok())
                                .ok_or_else(|| format!("filter kind {item} is not a kind"))?,
                        );
                    }
                    f.kinds = Some(kinds);
                }
                "since" | "until" => {
                    let t = value
                        .as_u64()
                        .ok_or_else(|| format!("filter {key:?} is not a timestamp"))?;
                    if key == "since" {
                        f.since = Some(t);
                    } else {
                        f.until = Some(t);
                    }
                }
                tag if tag.len() == 2 && tag.starts_with('#') => {
                    let mut values = Vec::new();
                    for item in list()? {
                        values.push(
                            item.as_str()
                                .ok_or_else(|| {
                                    format!("filter {key:?} holds {item}, not a string")
                                })?
                                .to_owned(),
                        );
                    }
                    f.tags.push((tag.as_bytes()[1], values));
                }
                // `limit`, `search` (NIP-50) and fields lt does not know narrow nothing
                // after EOSE that lt could check.
                _ => {}
            }
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Keys) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&e.id))
            && self
                .authors
                .as_ref()
                .is_none_or(|authors| authors.contains(&e.pubkey))
            && self.kinds.as_ref().is_none_or(|k| k.contains(&e.kind))
            && self.since.is_none_or(|s| e.created_at >= s)
            && self.until.is_none_or(|u| e.created_at <= u)
            && self.tags.iter().all(|(letter, values)| {
                e.tags
                    .iter()
                    .any(|(l, v)| l == letter && values.iter().any(|want| want == v))
            })
    }
}

/// The subscription id and the filters of a `["REQ",sub,filter…]` frame.
pub fn of_req(frame: &str) -> Result<(String, Vec<Filter>), String> {
    let v: Value = serde_json::from_str(frame).map_err(|e| format!("REQ frame: {e}"))?;
    let items = v.as_array().ok_or("REQ frame is not a JSON list")?;
    if items.first().and_then(Value::as_str) != Some("REQ") {
        return Err("not a REQ frame".into());
    }
    let sub = items
        .get(1)
        .and_then(Value::as_str)
        .ok_or("REQ frame without a subscription id")?;
    let filters = items
        .iter()
        .skip(2)
        .map(Filter::parse)
        .collect::<Result<_, _>>()?;
    Ok((sub.to_owned(), filters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex32(b: u8) -> String {
        hex::encode([b; 32])
    }

    fn event(kind: u16, created_at: u64, tags: Value) -> Keys {
        Keys::of(&json!({
            "id": hex32(1), "pubkey": hex32(2), "kind": kind, "created_at": created_at,
            "tags": tags, "content": "", "sig": hex::encode([0u8; 64]),
        }))
        .expect("an event")
    }

    fn f(v: Value) -> Filter {
        Filter::parse(&v).expect("a filter")
    }

    #[test]
    fn every_condition_must_hold() {
        let view = event(
            30079,
            1_770_000_100,
            json!([["t", "view"], ["a", "30078:pk:root"], ["session", "true"]]),
        );
        let table = [
            (json!({}), true),
            (json!({"kinds": [30079]}), true),
            (json!({"kinds": [30078, 1]}), false),
            (json!({"#t": ["view"]}), true),
            (json!({"#t": ["video", "view"]}), true),
            (json!({"#t": ["video"]}), false),
            (json!({"#a": ["30078:pk:root"], "#t": ["view"]}), true),
            (json!({"#a": ["30078:pk:other"], "#t": ["view"]}), false),
            // A multi-letter tag is not indexed: `#s` does not see `session`.
            (json!({"#s": ["true"]}), false),
            (json!({"since": 1_770_000_100u64}), true),
            (json!({"since": 1_770_000_101u64}), false),
            (json!({"until": 1_770_000_100u64}), true),
            (json!({"until": 1_770_000_099u64}), false),
            (json!({"ids": [hex32(1)]}), true),
            (json!({"ids": [hex32(3)]}), false),
            (json!({"authors": [hex32(9), hex32(2)]}), true),
            (json!({"authors": [hex32(9)]}), false),
            (json!({"kinds": [30079], "limit": 0}), true),
            (json!({"#t": []}), false),
        ];
        for (filter, want) in table {
            assert_eq!(f(filter.clone()).matches(&view), want, "{filter}");
        }
    }

    #[test]
    fn bad_filters_are_named() {
        let bad = [
            (json!([]), "not a JSON object"),
            (json!({"kinds": 1}), "\"kinds\" is not a list"),
            (json!({"kinds": [70000]}), "70000 is not a kind"),
            (json!({"ids": ["abc"]}), "not 64 hex"),
            (json!({"since": "now"}), "\"since\" is not a timestamp"),
            (json!({"#t": [1]}), "not a string"),
        ];
        for (v, want) in bad {
            let err = Filter::parse(&v).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn a_req_frame_gives_its_filters() {
        let (sub, fs) = of_req(
            r##"["REQ","live-feed-1",{"kinds":[30078],"#t":["video"],"since":5},{"ids":[]}]"##,
        )
        .expect("filters");
        assert_eq!(sub, "live-feed-1");
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[0].kinds, Some(vec![30078]));
        assert_eq!(fs[0].tags, vec![(b't', vec!["video".to_owned()])]);
        assert_eq!(fs[0].since, Some(5));
        assert!(of_req(r#"["EVENT",{}]"#).is_err());
        assert!(of_req("nope").is_err());
        assert!(of_req(r#"["REQ",7,{}]"#).is_err());
    }

    #[test]
    fn keys_of_a_non_event_are_none() {
        assert!(Keys::of(&json!({"kind": 1})).is_none());
        assert!(Keys::of(&json!([])).is_none());
    }
}
