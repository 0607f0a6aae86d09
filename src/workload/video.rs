//! Video bundles: the kind 30078 post (content schema v3), its kind 1063 NIP-94 mirror, the
//! optional 34235/34236 NIP-71 mirror, edits and revert tombstones — each shaped as bitvid's
//! builders shape them (`shared/reference/event-schemas.md` §3.1–3.3).

use rand::Rng;
use serde::Serialize;

use super::model::{self, SHARES, TRACKERS};
use crate::nostr::keys;
use crate::nostr::Unsigned;

pub const KIND_POST: u16 = 30078;
pub const KIND_NIP94: u16 = 1063;
pub const KIND_NIP71_LANDSCAPE: u16 = 34235;
pub const KIND_NIP71_PORTRAIT: u16 = 34236;
pub const KIND_VIEW: u16 = 30079;

/// A creator: a stable key that publishes videos from one connection.
pub struct Creator {
    pub pubkey: [u8; 32],
    pub pubkey_hex: String,
    pub npub: String,
    /// `https://pub-<32 hex>.r2.dev`, the creator's upload bucket.
    pub bucket: String,
    pub client: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// External URL, no torrent (~0.9 KB post).
    UrlOnly,
    /// Magnet only: no hosted URL, so no mirrors (~1.1 KB post).
    MagnetOnly,
    /// R2 upload with URL, magnet and one `imeta` (~3 KB post).
    Upload,
    /// Upload plus rich NIP-71 tags: variants, text tracks, segments, people, refs (~4.8 KB).
    Rich,
}

struct Rich {
    segments: Vec<[String; 3]>,
    people: Vec<String>,
    refs: Vec<String>,
}

/// Everything about one video that its events are built from.
pub struct Video {
    pub creator: u32,
    pub root: String,
    /// `30078:<creator pubkey>:<root>`, the pointer views and mirrors carry.
    pub coord: String,
    pub variant: Variant,
    title: String,
    description: String,
    hashtags: Vec<String>,
    infohash: String,
    /// URL without extension (uploads, URL-only); empty for magnet-only.
    base: String,
    slug: String,
    ext: &'static str,
    nsfw: bool,
    dim: (u32, u32),
    duration: String,
    rich: Option<Rich>,
    /// Kind of the NIP-71 mirror, when this video has one.
    pub nip71: Option<u16>,
    published_at: u64,
    pub last_created_at: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostContent<'a> {
    version: u32,
    title: &'a str,
    url: &'a str,
    magnet: &'a str,
    thumbnail: &'a str,
    description: &'a str,
    mode: &'a str,
    video_root_id: &'a str,
    deleted: bool,
    is_private: bool,
    is_nsfw: bool,
    is_for_kids: bool,
    enable_comments: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    info_hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xs: Option<&'a str>,
}

/// `buildRevertVideoPayload`'s key order differs from a post's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TombstoneContent<'a> {
    video_root_id: &'a str,
    version: u32,
    deleted: bool,
    is_private: bool,
    is_nsfw: bool,
    is_for_kids: bool,
    title: &'a str,
    url: &'a str,
    magnet: &'a str,
    thumbnail: &'a str,
    description: &'a str,
    mode: &'a str,
}

fn tag(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Plain structs of strings and booleans always serialize.
    serde_json::to_string(v).expect("content serializes")
}

impl Video {
    /// Draws a new video for `creator`, first published at `created_at`.
    pub fn new<R: Rng>(
        rng: &mut R,
        creator_index: u32,
        creator: &Creator,
        created_at: u64,
        nip71_share: f64,
    ) -> Video {
        let x: f64 = rng.random();
        let variant = if x < SHARES.url_only {
            Variant::UrlOnly
        } else if x < SHARES.url_only + SHARES.magnet_only {
            Variant::MagnetOnly
        } else if x < SHARES.url_only + SHARES.magnet_only + SHARES.upload {
            Variant::Upload
        } else {
            Variant::Rich
        };
        let root = model::root_id(rng, created_at);
        let title = model::title(rng);
        let slug = model::slug(&title);
        let description = model::description(rng);
        let ext = if rng.random_range(0..5) == 0 {
            "webm"
        } else {
            "mp4"
        };
        let infohash = match variant {
            Variant::UrlOnly => String::new(),
            _ => model::hex_string(rng, 20),
        };
        let base = match variant {
            Variant::UrlOnly => format!("https://{}/media/{slug}", model::domain(rng)),
            Variant::MagnetOnly => String::new(),
            Variant::Upload | Variant::Rich => {
                format!("{}/u/{}/{infohash}/{slug}", creator.bucket, creator.npub)
            }
        };
        let hashtags = match variant {
            Variant::Rich => model::hashtags(rng, 6),
            _ => model::hashtags(rng, 3),
        };
        let portrait = rng.random_bool(SHARES.portrait);
        let dim = match (portrait, rng.random_range(0..3)) {
            (true, _) => (1080, 1920),
            (false, 0) => (1280, 720),
            (false, 1) => (3840, 2160),
            _ => (1920, 1080),
        };
        let duration_ds: u32 = rng.random_range(50..36_000);
        let duration = format!("{}.{}", duration_ds / 10, duration_ds % 10);
        let nsfw = rng.random_bool(SHARES.nsfw);
        let rich = (variant == Variant::Rich).then(|| {
            let n = rng.random_range(3..=6);
            let step = duration_ds / n;
            let stamp = |ds: u32| {
                let ms = ds * 100;
                format!(
                    "{:02}:{:02}:{:02}.{:03}",
                    ms / 3_600_000,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000
                )
            };
            Rich {
                segments: (0..n)
                    .map(|i| {
                        let end = if i + 1 == n {
                            duration_ds
                        } else {
                            (i + 1) * step
                        };
                        [stamp(i * step), stamp(end), model::title(rng)]
                    })
                    .collect(),
                people: (0..rng.random_range(0..=2))
                    .map(|_| model::hex_string(rng, 32))
                    .collect(),
                refs: (0..rng.random_range(0..=2))
                    .map(|i| format!("https://example.org/{}/{slug}", ["blog", "gear"][i % 2]))
                    .collect(),
            }
        });
        // bitvid mirrors to NIP-71 only public, non-NSFW videos with a hosted URL.
        let hosted = variant != Variant::MagnetOnly;
        let nip71 = (hosted && !nsfw && rng.random_bool(nip71_share)).then_some(if portrait {
            KIND_NIP71_PORTRAIT
        } else {
            KIND_NIP71_LANDSCAPE
        });
        Video {
            creator: creator_index,
            coord: format!("{KIND_POST}:{}:{root}", creator.pubkey_hex),
            root,
            variant,
            title,
            description,
            hashtags,
            infohash,
            base,
            slug,
            ext,
            nsfw,
            dim,
            duration,
            rich,
            nip71,
            published_at: created_at,
            last_created_at: created_at,
        }
    }

    /// An edit re-publishes at the same `d` with `created_at = max(now, previous + 1)`.
    pub fn edit<R: Rng>(&mut self, rng: &mut R, now: u64) -> u64 {
        if rng.random_bool(0.5) {
            self.description = model::description(rng);
        }
        if rng.random_bool(0.3) {
            self.title = model::title(rng);
        }
        self.last_created_at = now.max(self.last_created_at + 1);
        self.last_created_at
    }

    /// Has a hosted URL (so it gets a NIP-94 mirror).
    pub fn hosted(&self) -> bool {
        self.variant != Variant::MagnetOnly
    }

    fn url(&self) -> String {
        match self.variant {
            Variant::MagnetOnly => String::new(),
            _ => format!("{}.{}", self.base, self.ext),
        }
    }

    fn thumbnail(&self) -> String {
        match self.variant {
            Variant::MagnetOnly => String::new(),
            Variant::UrlOnly => format!("{}.jpg", self.base),
            _ => format!("{}.thumb.jpg", self.base),
        }
    }

    fn mime(&self) -> &'static str {
        if self.ext == "webm" {
            "video/webm"
        } else {
            "video/mp4"
        }
    }

    fn magnet(&self) -> String {
        if self.variant == Variant::UrlOnly {
            return String::new();
        }
        let mut m = format!(
            "magnet:?xt=urn:btih:{}&dn={}.{}",
            self.infohash, self.slug, self.ext
        );
        if matches!(self.variant, Variant::Upload | Variant::Rich) {
            m.push_str("&ws=");
            m.push_str(&model::encode_uri_component(&self.url()));
            m.push_str("&xs=");
            m.push_str(&model::encode_uri_component(&format!(
                "{}.torrent",
                self.base
            )));
        }
        for t in TRACKERS {
            m.push_str("&tr=");
            m.push_str(t);
        }
        m
    }

    /// The kind 30078 video post (first publish or edit).
    pub fn post(&self, pubkey: [u8; 32], created_at: u64) -> Unsigned {
        let (url, magnet, thumbnail) = (self.url(), self.magnet(), self.thumbnail());
        let torrent = format!("{}.torrent", self.base);
        let uploaded = matches!(self.variant, Variant::Upload | Variant::Rich);
        let content = to_json(&PostContent {
            version: 3,
            title: &self.title,
            url: &url,
            magnet: &magnet,
            thumbnail: &thumbnail,
            description: &self.description,
            mode: "live",
            video_root_id: &self.root,
            deleted: false,
            is_private: false,
            is_nsfw: self.nsfw,
            is_for_kids: false,
            enable_comments: true,
            info_hash: (!self.infohash.is_empty()).then_some(self.infohash.as_str()),
            ws: uploaded.then_some(url.as_str()),
            xs: uploaded.then_some(torrent.as_str()),
        });
        let mut tags = vec![
            tag(&["t", "video"]),
            tag(&["d", &self.root]),
            self.storage_tag(),
        ];
        match self.variant {
            Variant::UrlOnly | Variant::MagnetOnly => {}
            Variant::Upload => tags.push(tag(&[
                "imeta",
                &format!("url {url}"),
                &format!("x {}", self.infohash),
                &format!("m {}", self.mime()),
            ])),
            Variant::Rich => self.rich_tags(&mut tags, &url, &thumbnail),
        }
        if self.variant != Variant::Rich {
            tags.extend(self.hashtags.iter().map(|h| tag(&["t", h])));
        }
        Unsigned {
            pubkey,
            created_at,
            kind: KIND_POST,
            tags,
            content,
        }
    }

    fn storage_tag(&self) -> Vec<String> {
        let pointer = match self.variant {
            Variant::UrlOnly => format!("url:{}", self.base),
            Variant::MagnetOnly => format!("btih:{}", self.infohash),
            Variant::Upload | Variant::Rich => format!("r2:{}", self.base),
        };
        vec!["s".into(), pointer]
    }

    fn rich_tags(&self, tags: &mut Vec<Vec<String>>, url: &str, thumbnail: &str) {
        let (w, h) = self.dim;
        let dim = format!("dim {w}x{h}");
        let duration = format!("duration {}", self.duration);
        tags.push(tag(&[
            "imeta",
            &dim,
            &format!("url {url}"),
            &format!("x {}", self.infohash),
            &format!("m {}", self.mime()),
            &duration,
            "bitrate 8000000",
            &format!("image {thumbnail}"),
        ]));
        tags.push(tag(&[
            "imeta",
            &format!("dim {}x{}", w * 2 / 3, h * 2 / 3),
            &format!("url {}-720p.{}", self.base, self.ext),
            &format!("m {}", self.mime()),
            &duration,
            "bitrate 3500000",
        ]));
        tags.push(tag(&[
            "imeta",
            &dim,
            &format!("url {}.m3u8", self.base),
            "m application/x-mpegurl",
            &duration,
        ]));
        tags.push(tag(&[
            "text-track",
            &format!("{}.en.vtt", self.base),
            "captions",
            "en",
        ]));
        tags.push(tag(&[
            "text-track",
            &format!("{}.es.vtt", self.base),
            "subtitles",
            "es",
        ]));
        if let Some(rich) = &self.rich {
            for [start, end, title] in &rich.segments {
                tags.push(tag(&["segment", start, end, title]));
            }
            tags.extend(self.hashtags.iter().map(|h| tag(&["t", h])));
            for (i, p) in rich.people.iter().enumerate() {
                if i == 0 {
                    tags.push(tag(&["p", p, "wss://relay.example.org"]));
                } else {
                    tags.push(tag(&["p", p]));
                }
            }
            for r in &rich.refs {
                tags.push(tag(&["r", r]));
            }
        }
    }

    /// The kind 1063 NIP-94 mirror: same signer and `created_at` as the post, only for hosted
    /// videos; the description is carried twice (alt tag and content).
    pub fn nip94(&self, pubkey: [u8; 32], created_at: u64) -> Unsigned {
        let alt = if self.description.is_empty() {
            &self.title
        } else {
            &self.description
        };
        let mut tags = vec![
            tag(&["url", &self.url()]),
            tag(&["m", self.mime()]),
            tag(&["thumb", &self.thumbnail()]),
            tag(&["alt", alt]),
        ];
        let magnet = self.magnet();
        if !magnet.is_empty() {
            tags.push(tag(&["magnet", &magnet]));
        }
        Unsigned {
            pubkey,
            created_at,
            kind: KIND_NIP94,
            tags,
            content: alt.clone(),
        }
    }

    /// The addressable NIP-71 mirror (34235 landscape / 34236 portrait), if this video has one.
    pub fn nip71(&self, pubkey: [u8; 32], created_at: u64) -> Option<Unsigned> {
        let kind = self.nip71?;
        let (w, h) = self.dim;
        let mut imeta = vec![
            "imeta".to_owned(),
            format!("dim {w}x{h}"),
            format!("url {}", self.url()),
            format!("m {}", self.mime()),
        ];
        let magnet = self.magnet();
        if !magnet.is_empty() {
            imeta.push(format!("magnet {magnet}"));
            imeta.push(format!("i {}", self.infohash));
        }
        imeta.push(format!("duration {}", self.duration));
        imeta.push(format!("image {}", self.thumbnail()));
        let mut tags = vec![
            tag(&["title", &self.title]),
            tag(&["published_at", &self.published_at.to_string()]),
            tag(&["alt", &self.title]),
            imeta,
        ];
        tags.extend(self.hashtags.iter().map(|h| tag(&["t", h])));
        tags.push(tag(&["d", &self.root]));
        tags.push(tag(&["a", &self.coord]));
        let naddr = keys::naddr(u32::from(KIND_POST), &pubkey, &self.root);
        tags.push(tag(&[
            "origin",
            "bitvid",
            &self.root,
            &format!("https://bitvid.network/?v={naddr}"),
        ]));
        tags.push(tag(&["client", "bitvid"]));
        Some(Unsigned {
            pubkey,
            created_at,
            kind,
            tags,
            content: self.description.clone(),
        })
    }

    /// A revert tombstone replacing the live version at the same `d`.
    pub fn tombstone(&self, pubkey: [u8; 32], created_at: u64) -> Unsigned {
        let content = to_json(&TombstoneContent {
            video_root_id: &self.root,
            version: 3,
            deleted: true,
            is_private: false,
            is_nsfw: self.nsfw,
            is_for_kids: false,
            title: &self.title,
            url: "",
            magnet: "",
            thumbnail: "",
            description: "This version was reverted by the creator.",
            mode: "live",
        });
        Unsigned {
            pubkey,
            created_at,
            kind: KIND_POST,
            tags: vec![
                tag(&["t", "video"]),
                tag(&["d", &self.root]),
                self.storage_tag(),
            ],
            content,
        }
    }
}

/// The kind 30079 view event, built as `buildViewEvent` + `generateViewEventDedupeTag` do,
/// signed by a fresh session key (`shared/reference/event-schemas.md` §3.6).
pub fn view(viewer: [u8; 32], coord: &str, created_at: u64) -> Unsigned {
    let viewer_hex = hex::encode(viewer);
    let day = created_at / 86_400;
    // bitvid lower-cases the pointer; lt's coordinates are lowercase already (hex key,
    // decimal kind, base-36 root), so this only matters for pointers from elsewhere.
    let d = format!("a:{}:{viewer_hex}:{day}", coord.to_ascii_lowercase());
    #[derive(Serialize)]
    struct Target<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        value: &'a str,
    }
    #[derive(Serialize)]
    struct ViewContent<'a> {
        target: Target<'a>,
        created_at: u64,
    }
    let content = to_json(&ViewContent {
        target: Target {
            kind: "a",
            value: coord,
        },
        created_at,
    });
    Unsigned {
        pubkey: viewer,
        created_at,
        kind: KIND_VIEW,
        tags: vec![
            tag(&["t", "view"]),
            tag(&["a", coord]),
            tag(&["d", &d]),
            tag(&["session", "true"]),
        ],
        content,
    }
}
