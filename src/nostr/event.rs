//! The NIP-01 event: canonical id, BIP-340 signing and verification, JSON in and out.

use secp256k1::{schnorr, Keypair, XOnlyPublicKey, SECP256K1};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::json;

/// An event before it is signed: everything that goes into the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsigned {
    pub pubkey: [u8; 32],
    pub created_at: u64,
    pub kind: u16,
    pub tags: Vec<Vec<String>>,
    pub content: String,
}

/// A signed event, as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "hex_bytes")]
    pub id: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub pubkey: [u8; 32],
    pub created_at: u64,
    pub kind: u16,
    pub tags: Vec<Vec<String>>,
    pub content: String,
    #[serde(with = "hex_bytes")]
    pub sig: [u8; 64],
}

/// Why an event does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("id {claimed} does not match the canonical serialization (sha256 {computed})")]
    IdMismatch { claimed: String, computed: String },
    #[error("pubkey is not a valid x-only secp256k1 key")]
    BadPubkey,
    #[error("BIP-340 signature does not verify for this id and pubkey")]
    BadSignature,
}

impl Unsigned {
    /// The id pre-image `[0,pubkey,created_at,kind,tags,content]`, compact, NIP-01 escaped.
    pub fn canonical(&self) -> String {
        canonical(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        )
    }

    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.canonical().as_bytes()).into()
    }

    /// Signs with BIP-340. `aux_rand` is the auxiliary randomness; passing bytes derived from
    /// the seed is what makes signatures (not only ids) reproducible.
    pub fn sign(self, keypair: &Keypair, aux_rand: &[u8; 32]) -> Event {
        debug_assert_eq!(keypair.x_only_public_key().0.serialize(), self.pubkey);
        let id = self.id();
        let sig = SECP256K1.sign_schnorr_with_aux_rand(&id, keypair, aux_rand);
        Event {
            id,
            pubkey: self.pubkey,
            created_at: self.created_at,
            kind: self.kind,
            tags: self.tags,
            content: self.content,
            sig: sig.to_byte_array(),
        }
    }
}

/// A signed event already written as its wire frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFrame {
    pub id: [u8; 32],
    /// `["EVENT",{…}]`
    pub frame: String,
}

impl Unsigned {
    /// Signs and writes the `["EVENT",…]` frame in one pass: tags and content are escaped
    /// once and shared by the id pre-image and the frame (synth's hot path; the result is
    /// the same as `message::event_frame(&self.sign(…))`).
    pub fn sign_frame(&self, keypair: &Keypair, aux_rand: &[u8; 32]) -> SignedFrame {
        let mut body = String::with_capacity(64 + self.content.len() + self.tags.len() * 64);
        json::push_tags(&mut body, &self.tags);
        let tags_end = body.len();
        json::push_str(&mut body, &self.content);
        let (tags, content) = body.split_at(tags_end);

        let mut pubkey = String::with_capacity(64);
        json::push_hex(&mut pubkey, &self.pubkey);
        let (created_at, kind) = (self.created_at.to_string(), self.kind.to_string());

        let mut pre = String::with_capacity(100 + body.len());
        for part in [
            "[0,\"",
            &pubkey,
            "\",",
            &created_at,
            ",",
            &kind,
            ",",
            tags,
            ",",
            content,
            "]",
        ] {
            pre.push_str(part);
        }
        let id: [u8; 32] = Sha256::digest(pre.as_bytes()).into();
        let sig = SECP256K1.sign_schnorr_with_aux_rand(&id, keypair, aux_rand);

        let mut frame = String::with_capacity(pre.len() + 250);
        frame.push_str("[\"EVENT\",{\"id\":\"");
        json::push_hex(&mut frame, &id);
        for part in [
            "\",\"pubkey\":\"",
            &pubkey,
            "\",\"created_at\":",
            &created_at,
            ",\"kind\":",
            &kind,
            ",\"tags\":",
            tags,
            ",\"content\":",
            content,
            ",\"sig\":\"",
        ] {
            frame.push_str(part);
        }
        json::push_hex(&mut frame, &sig.to_byte_array());
        frame.push_str("\"}]");
        SignedFrame { id, frame }
    }
}

fn canonical(
    pubkey: &[u8; 32],
    created_at: u64,
    kind: u16,
    tags: &[Vec<String>],
    content: &str,
) -> String {
    let mut out = String::with_capacity(128 + content.len() + tags.len() * 64);
    out.push_str("[0,\"");
    json::push_hex(&mut out, pubkey);
    out.push_str("\",");
    out.push_str(&created_at.to_string());
    out.push(',');
    out.push_str(&kind.to_string());
    out.push(',');
    json::push_tags(&mut out, tags);
    out.push(',');
    json::push_str(&mut out, content);
    out.push(']');
    out
}

/// The id of an event given as JSON, read without building (or verifying) the event: what
/// a client needs to match a relay's EVENT to what it knows.
pub fn id_of(event_json: &str) -> Option<[u8; 32]> {
    #[derive(serde::Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let parsed: IdOnly = serde_json::from_str(event_json).ok()?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(parsed.id.as_bytes(), &mut out).ok()?;
    Some(out)
}

impl Event {
    pub fn canonical(&self) -> String {
        canonical(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        )
    }

    /// Checks the id against the canonical serialization, then the signature over the id.
    pub fn verify(&self) -> Result<(), VerifyError> {
        let computed: [u8; 32] = Sha256::digest(self.canonical().as_bytes()).into();
        if computed != self.id {
            return Err(VerifyError::IdMismatch {
                claimed: hex::encode(self.id),
                computed: hex::encode(computed),
            });
        }
        let pubkey =
            XOnlyPublicKey::from_byte_array(&self.pubkey).map_err(|_| VerifyError::BadPubkey)?;
        let sig = schnorr::Signature::from_byte_array(self.sig);
        SECP256K1
            .verify_schnorr(&sig, &self.id, &pubkey)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Compact JSON object, NIP-01 escaping, keys in the order nostr tools print them.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(300 + self.content.len() + self.tags.len() * 64);
        self.write_json(&mut out);
        out
    }

    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"id\":\"");
        json::push_hex(out, &self.id);
        out.push_str("\",\"pubkey\":\"");
        json::push_hex(out, &self.pubkey);
        out.push_str("\",\"created_at\":");
        out.push_str(&self.created_at.to_string());
        out.push_str(",\"kind\":");
        out.push_str(&self.kind.to_string());
        out.push_str(",\"tags\":");
        json::push_tags(out, &self.tags);
        out.push_str(",\"content\":");
        json::push_str(out, &self.content);
        out.push_str(",\"sig\":\"");
        json::push_hex(out, &self.sig);
        out.push_str("\"}");
    }

    /// Parses one event object. Lowercase hex is required for id, pubkey and sig (NIP-01).
    pub fn from_json(s: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// The NIP-01 address `kind:pubkey:d` of an addressable event (kind 30000–39999).
    pub fn address(&self) -> Option<String> {
        if !(30000..40000).contains(&self.kind) {
            return None;
        }
        let d = self
            .tags
            .iter()
            .find(|t| t.first().map(String::as_str) == Some("d"))
            .and_then(|t| t.get(1))
            .map(String::as_str)
            .unwrap_or("");
        Some(format!("{}:{}:{}", self.kind, hex::encode(self.pubkey), d))
    }
}

/// Serde helpers for fixed-size byte arrays written as lowercase hex strings.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(D::Error::custom(format!(
                "expected {} lowercase hex characters, got {:?}",
                2 * N,
                s
            )));
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_id_is_read_from_its_json() {
        let id = "ab".repeat(32);
        let ev = format!(r#"{{"content":"{{\"id\":\"x\"}}","id":"{id}","kind":1}}"#);
        assert_eq!(id_of(&ev), Some([0xab; 32]));
        assert_eq!(id_of(r#"{"id":"xyz"}"#), None);
        assert_eq!(id_of("[]"), None);
    }

    const DEMO_PREIMAGE: &str = r#"[0,"c67bfd4fdf7059ed54e77568646efc19d4f5f0de46b544e7a673816d1cd63ad9",1770000900,30079,[["t","view"],["a","30078:b6caad2daae51f6b6385657dda592d5199f5bf3b45734337c9cfc1853434a336:1770000000123-k3j9x2m4qplw"],["d","a:30078:b6caad2daae51f6b6385657dda592d5199f5bf3b45734337c9cfc1853434a336:1770000000123-k3j9x2m4qplw:c67bfd4fdf7059ed54e77568646efc19d4f5f0de46b544e7a673816d1cd63ad9:20486"],["session","true"]],"{\"target\":{\"type\":\"a\",\"value\":\"30078:b6caad2daae51f6b6385657dda592d5199f5bf3b45734337c9cfc1853434a336:1770000000123-k3j9x2m4qplw\"},\"created_at\":1770000900}"]"#;

    fn demo() -> Unsigned {
        let coord = "30078:b6caad2daae51f6b6385657dda592d5199f5bf3b45734337c9cfc1853434a336:1770000000123-k3j9x2m4qplw";
        let viewer = "c67bfd4fdf7059ed54e77568646efc19d4f5f0de46b544e7a673816d1cd63ad9";
        let mut pubkey = [0u8; 32];
        hex::decode_to_slice(viewer, &mut pubkey).unwrap();
        Unsigned {
            pubkey,
            created_at: 1770000900,
            kind: 30079,
            tags: vec![
                vec!["t".into(), "view".into()],
                vec!["a".into(), coord.into()],
                vec!["d".into(), format!("a:{coord}:{viewer}:20486")],
                vec!["session".into(), "true".into()],
            ],
            content: format!(
                r#"{{"target":{{"type":"a","value":"{coord}"}},"created_at":1770000900}}"#
            ),
        }
    }

    #[test]
    fn canonical_matches_the_reference_worked_example() {
        let ev = demo();
        assert_eq!(ev.canonical(), DEMO_PREIMAGE);
        assert_eq!(
            hex::encode(ev.id()),
            "1368316c3146408ad8cd57c794b5168bf976d0d83b1aa4f2c6d63f4cbe2173d2"
        );
    }

    #[test]
    fn sign_then_verify_and_tamper_fails() {
        let kp = Keypair::from_seckey_slice(SECP256K1, &[7u8; 32]).unwrap();
        let mut unsigned = demo();
        unsigned.pubkey = kp.x_only_public_key().0.serialize();
        let ev = unsigned.sign(&kp, &[1u8; 32]);
        ev.verify().unwrap();
        let back = Event::from_json(&ev.to_json()).unwrap();
        assert_eq!(back, ev);

        let mut bad = ev.clone();
        bad.content.push(' ');
        assert!(matches!(bad.verify(), Err(VerifyError::IdMismatch { .. })));
        let mut bad = ev.clone();
        bad.sig[10] ^= 1;
        assert_eq!(bad.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn sign_frame_equals_sign_then_frame() {
        let kp = Keypair::from_seckey_slice(SECP256K1, &[5u8; 32]).unwrap();
        let mut u = demo();
        u.pubkey = kp.x_only_public_key().0.serialize();
        u.content.push_str("\n\"quoted\" ünï \\ tab\t");
        let fast = u.sign_frame(&kp, &[2u8; 32]);
        let ev = u.sign(&kp, &[2u8; 32]);
        assert_eq!(fast.id, ev.id);
        assert_eq!(fast.frame, crate::nostr::message::event_frame(&ev));
    }

    #[test]
    fn aux_rand_makes_signatures_reproducible() {
        let kp = Keypair::from_seckey_slice(SECP256K1, &[9u8; 32]).unwrap();
        let mut u = demo();
        u.pubkey = kp.x_only_public_key().0.serialize();
        let a = u.clone().sign(&kp, &[3u8; 32]);
        let b = u.clone().sign(&kp, &[3u8; 32]);
        let c = u.sign(&kp, &[4u8; 32]);
        assert_eq!(a.sig, b.sig);
        assert_ne!(a.sig, c.sig);
        c.verify().unwrap();
    }

    #[test]
    fn uppercase_hex_is_rejected() {
        let kp = Keypair::from_seckey_slice(SECP256K1, &[7u8; 32]).unwrap();
        let mut u = demo();
        u.pubkey = kp.x_only_public_key().0.serialize();
        let mut json = u.sign(&kp, &[0; 32]).to_json();
        let idx = json.find("\"id\":\"").unwrap() + 6;
        json.replace_range(idx..idx + 1, "F");
        assert!(Event::from_json(&json).is_err());
    }
}
