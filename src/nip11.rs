//! The relay information document (NIP-11): fetched before a run from the address the guard
//! checked, kept in the results header, and read for the relay's name, software, version
//! and advertised limits. A relay without one, or with an invalid one, is a note, never an
//! error: the document is optional in NIP-11.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::capture::results::Preflight;
use crate::guard::Target;

/// How long the document may take: a relay that does not answer HTTP at once is noted.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Larger documents are not read (a relay information document is a few KB).
const MAX_BYTES: u64 = 1 << 20;

/// The fields lt reads; anything missing or of another type is `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub name: Option<String>,
    pub software: Option<String>,
    pub version: Option<String>,
    pub limitation: Limitation,
}

/// NIP-11's `limitation` object, the fields that decide what a relay refuses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limitation {
    pub max_message_length: Option<u64>,
    pub max_subscriptions: Option<u64>,
    pub max_filters: Option<u64>,
    pub max_limit: Option<u64>,
    pub max_subid_length: Option<u64>,
    pub max_event_tags: Option<u64>,
    pub max_content_length: Option<u64>,
    pub created_at_lower_limit: Option<u64>,
    pub created_at_upper_limit: Option<u64>,
    pub auth_required: Option<bool>,
    pub payment_required: Option<bool>,
    pub restricted_writes: Option<bool>,
}

impl Document {
    /// Reads a document leniently: fields lt does not know, or of the wrong type, are left
    /// out rather than failing the whole document. Not a JSON object is an error.
    pub fn parse(text: &str) -> Result<Document, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        if !v.is_object() {
            return Err("not a JSON object".into());
        }
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let l = v.get("limitation").cloned().unwrap_or(Value::Null);
        let n = |k: &str| l.get(k).and_then(Value::as_u64);
        let b = |k: &str| l.get(k).and_then(Value::as_bool);
        Ok(Document {
            name: s("name"),
            software: s("software"),
            version: s("version"),
            limitation: Limitation {
                max_message_length: n("max_message_length"),
                max_subscriptions: n("max_subscriptions"),
                max_filters: n("max_filters"),
                max_limit: n("max_limit"),
                max_subid_length: n("max_subid_length"),
                max_event_tags: n("max_event_tags"),
                max_content_length: n("max_content_length"),
                created_at_lower_limit: n("created_at_lower_limit"),
                created_at_upper_limit: n("created_at_upper_limit"),
                auth_required: b("auth_required"),
                payment_required: b("payment_required"),
                restricted_writes: b("restricted_writes"),
            },
        })
    }

    /// "nostr-rs-relay 0.8.12": the software's last path segment (NIP-11 gives a URL) and
    /// the version, or whichever of them there is.
    pub fn build(&self) -> Option<String> {
        let software = self.software.as_deref().map(|s| {
            s.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(s)
                .trim_end_matches(".git")
                .to_owned()
        });
        match (software, &self.version) {
            (Some(s), Some(v)) => Some(format!("{s} {v}")),
            (Some(s), None) => Some(s),
            (None, Some(v)) => Some(format!("version {v}")),
            (None, None) => None,
        }
    }
}

/// The document's URL for `target`: http for ws, https for wss, same host and path.
pub fn url(target: &Target) -> String {
    let mut u = target.url().clone();
    let scheme = if u.scheme() == "wss" { "https" } else { "http" };
    // Only ws/wss pass the guard, and both map to a special scheme: cannot fail.
    let _ = u.set_scheme(scheme);
    u.to_string()
}

/// Fetches the document from the addresses the guard checked (no second DNS lookup), over
/// https for a `wss://` relay, trusting the roots of `ca_files` besides the system's. Never
/// fails: a missing or invalid document is a note.
pub fn fetch(target: &Target, ca_files: &[PathBuf]) -> Preflight {
    let url = url(target);
    let note = |why: String| Preflight {
        url: url.clone(),
        document: None,
        note: Some(format!("not advertised: {why}")),
        predictions: Vec::new(),
    };
    let client = match crate::http::Client::new(target, ca_files, TIMEOUT) {
        Ok(c) => c,
        Err(e) => return note(format!("{e:#}")),
    };
    let text = match client.get_text(&url, "application/nostr+json", MAX_BYTES) {
        Ok(t) => t,
        Err(why) => return note(why),
    };
    match Document::parse(&text) {
        Ok(_) => Preflight {
            url,
            document: Some(text),
            note: None,
            predictions: Vec::new(),
        },
        Err(why) => note(format!("invalid document: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_leniently() {
        let d = Document::parse(
            r#"{"name":"","software":"https://git.sr.ht/~gheartsfield/nostr-rs-relay","version":"0.8.12",
                "limitation":{"payment_required":false,"max_message_length":"big","max_event_tags":5000}}"#,
        )
        .unwrap();
        assert_eq!(d.name, None);
        assert_eq!(d.build().as_deref(), Some("nostr-rs-relay 0.8.12"));
        assert_eq!(d.limitation.payment_required, Some(false));
        assert_eq!(
            d.limitation.max_message_length, None,
            "a string is not a length"
        );
        assert_eq!(d.limitation.max_event_tags, Some(5000));
        let empty = Document::parse(r#"{"software":"","version":"0.4.8"}"#).unwrap();
        assert_eq!(empty.build().as_deref(), Some("version 0.4.8"));
        assert!(Document::parse("[1,2]").is_err());
        assert!(Document::parse("<html>").is_err());
    }
}
