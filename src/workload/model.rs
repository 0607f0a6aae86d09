//! Fixed parameters of the traffic model and the text it writes into events.
//!
//! Shapes come from `shared/reference/event-schemas.md` (bitvid's builders at
//! `126a6135`); the shares below are lt's assumptions where the platform has no production
//! numbers, and are written down in `docs/workload.md`.

use rand::Rng;

/// Version of the workload model. Any change to what a seed produces (the order of random
/// draws, a share, an event's shape) changes every trace, so it comes with a new version here
/// and in docs/workload.md; `tests/fixtures/trace-fingerprint.txt` pins a seeded trace's
/// fingerprint to the version that made it.
pub const MODEL_VERSION: u32 = 1;

/// Where every event shape in a trace comes from; written into the trace header.
pub const SCHEMA_SOURCE: &str = "bitvid 126a613527de36942aa9ff3d16be8722c20d0a98 \
     (js/nostrEventSchemas.js, js/nostr/videoPayloadBuilder.js, js/nostr/viewEvents.js, \
     js/nostr/nip71Mirror.js) via shared/reference/event-schemas.md";

pub struct Shares {
    /// New-video variants (sum to 1).
    pub url_only: f64,
    pub magnet_only: f64,
    pub upload: f64,
    pub rich: f64,
    /// Share of edits that are revert tombstones rather than content edits.
    pub tombstone: f64,
    /// Share of NIP-71 mirrors that are portrait (34236).
    pub portrait: f64,
    pub nsfw: f64,
    /// Read queries (sum to 1).
    pub feed: f64,
    pub view_count: f64,
    pub channel: f64,
}

pub const SHARES: Shares = Shares {
    url_only: 0.25,
    magnet_only: 0.10,
    upload: 0.45,
    rich: 0.20,
    tombstone: 0.10,
    portrait: 0.15,
    nsfw: 0.03,
    feed: 0.3,
    view_count: 0.5,
    channel: 0.2,
};

/// Zipf exponent of view popularity over videos ranked by recency (newest = rank 1).
pub const ZIPF_EXPONENT: f64 = 1.1;
/// Videos the planner remembers for views and edits; older ones drop out. Bounds memory
/// whatever the trace length.
pub const CATALOGUE_MAX: usize = 4096;
/// A mirror is planned this long after the previous event of its bundle (bitvid publishes
/// it once that one is acknowledged; the record's `after` says which one).
pub const MIRROR_DELAY_US: u64 = 40_000;
/// A CLOSE is planned this long after its REQ (bitvid closes a one-shot query on EOSE; the
/// record's `after` points at the REQ).
pub const CLOSE_DELAY_US: u64 = 20_000;
/// Mean length of a viewing session, seconds (exponential): how long a live client keeps
/// its feed and one video's view counter open before moving on to another video. lt's
/// choice; the reference gives no session lengths. Two minutes is a short video watched to
/// the end with some browsing around it.
pub const SESSION_MEAN_S: f64 = 120.0;
/// Feed and channel query limits (bitvid's `DEFAULT_VIDEO_REQUEST_LIMIT` is 150).
pub const FEED_LIMIT: u32 = 150;
pub const CHANNEL_LIMIT: u32 = 50;

/// bitvid's default WSS trackers, appended to every magnet (`js/constants.js`).
pub const TRACKERS: [&str; 4] = [
    "wss://tracker.openwebtorrent.com",
    "wss://tracker.files.fm:7073/announce",
    "wss://tracker.novage.com.ua:443/announce",
    "wss://tracker.webtorrent.dev",
];

const WORDS: &[&str] = &[
    "sunset",
    "timelapse",
    "over",
    "the",
    "bay",
    "golden",
    "hour",
    "compressed",
    "from",
    "two",
    "hours",
    "of",
    "footage",
    "shot",
    "on",
    "north",
    "pier",
    "graded",
    "lightly",
    "no",
    "music",
    "feel",
    "free",
    "to",
    "reuse",
    "with",
    "credit",
    "gear",
    "mirrorless",
    "body",
    "prime",
    "lens",
    "filter",
    "weekly",
    "dev",
    "update",
    "short",
    "recap",
    "what",
    "shipped",
    "this",
    "week",
    "conference",
    "talk",
    "relays",
    "at",
    "scale",
    "recording",
    "minute",
    "tutorial",
    "how",
    "build",
    "a",
    "garden",
    "bike",
    "repair",
    "cooking",
    "bread",
    "sourdough",
    "starter",
    "city",
    "walk",
    "rain",
    "night",
    "drone",
    "mountain",
    "lake",
    "river",
    "forest",
    "trail",
    "camera",
    "review",
    "unboxing",
    "live",
    "session",
    "guitar",
    "piano",
    "cover",
    "song",
    "podcast",
    "episode",
    "interview",
    "with",
    "and",
    "in",
    "for",
    "my",
    "our",
    "first",
    "new",
    "old",
    "quick",
    "slow",
    "long",
    "easy",
    "hard",
    "tips",
    "tricks",
    "beginners",
    "advanced",
    "part",
    "one",
    "chapter",
    "behind",
    "scenes",
    "making",
    "vlog",
    "travel",
    "train",
    "station",
    "café",
    "naïve",
    "über",
    "piñata",
    "crème",
    "brûlée",
    "résumé",
    "東京",
    "夜景",
    "🎬",
    "🌅",
    "🚲",
];

const HASHTAGS: &[&str] = &[
    "timelapse",
    "sunset",
    "nature",
    "4k",
    "bay",
    "photography",
    "music",
    "tutorial",
    "nostr",
    "bitcoin",
    "cooking",
    "travel",
    "vlog",
    "diy",
    "gaming",
    "science",
    "art",
    "news",
    "sports",
    "comedy",
    "education",
    "tech",
    "review",
    "podcast",
    "live",
];

const DOMAINS: &[&str] = &[
    "cdn.example.org",
    "media.example.net",
    "videos.example.com",
    "static.example.com",
];

fn pick<'a, R: Rng>(rng: &mut R, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// A title of 3–8 words, capitalised, sometimes with a quality or length suffix or quotes.
pub fn title<R: Rng>(rng: &mut R) -> String {
    let n = rng.random_range(3..=8);
    let mut t = String::new();
    for i in 0..n {
        if i > 0 {
            t.push(' ');
        }
        let w = pick(rng, WORDS);
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                t.extend(f.to_uppercase());
                t.push_str(c.as_str());
            }
        } else {
            t.push_str(w);
        }
    }
    match rng.random_range(0..10) {
        0 => t.push_str(" (4K, 5 min)"),
        1 => t.push_str(&format!(" #{}", rng.random_range(1..200))),
        2 => t = format!("\"{t}\""),
        _ => {}
    }
    t
}

/// A description whose length follows a spread from empty to ~5,000 characters, with
/// paragraphs, quotes and non-ASCII text (all of which the id serialization must get right).
pub fn description<R: Rng>(rng: &mut R) -> String {
    let target = match rng.random_range(0..100) {
        0..10 => return String::new(),
        10..40 => rng.random_range(20..120),
        40..80 => rng.random_range(120..600),
        80..95 => rng.random_range(600..2000),
        _ => rng.random_range(2000..5000),
    };
    let mut d = String::with_capacity(target + 16);
    let mut sentence_len = 0;
    while d.len() < target {
        if sentence_len == 0 && !d.is_empty() {
            d.push_str(if rng.random_range(0..8) == 0 {
                "\n\n"
            } else {
                " "
            });
        }
        let w = pick(rng, WORDS);
        if sentence_len == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                d.extend(f.to_uppercase());
                d.push_str(c.as_str());
            }
        } else {
            d.push(' ');
            if rng.random_range(0..40) == 0 {
                d.push('"');
                d.push_str(w);
                d.push('"');
            } else {
                d.push_str(w);
            }
        }
        sentence_len += 1;
        if sentence_len >= 6 && rng.random_range(0..5) == 0 {
            d.push(if rng.random_range(0..6) == 0 {
                '!'
            } else {
                '.'
            });
            sentence_len = 0;
        }
    }
    if sentence_len > 0 {
        d.push('.');
    }
    d
}

pub fn hashtags<R: Rng>(rng: &mut R, max: usize) -> Vec<String> {
    let n = rng.random_range(0..=max);
    let mut tags: Vec<String> = Vec::with_capacity(n);
    while tags.len() < n {
        let t = pick(rng, HASHTAGS);
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    tags
}

pub fn domain<R: Rng>(rng: &mut R) -> &'static str {
    pick(rng, DOMAINS)
}

/// URL slug from a title: lowercase ASCII words joined by `-`.
pub fn slug(title: &str) -> String {
    let mut s = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !s.is_empty() {
            s.push('-');
        }
        s.push_str(&word.to_ascii_lowercase());
        if s.len() > 60 {
            break;
        }
    }
    if s.is_empty() {
        s.push_str("video");
    }
    s
}

/// `n` random bytes as lowercase hex.
pub fn hex_string<R: Rng>(rng: &mut R, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// bitvid's `videoRootId`: `<Date.now()>-<Math.random().toString(36).slice(2)>`.
pub fn root_id<R: Rng>(rng: &mut R, created_at: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let ms = created_at * 1000 + rng.random_range(0..1000);
    let len = rng.random_range(10..=12);
    let tail: String = (0..len)
        .map(|_| DIGITS[rng.random_range(0..DIGITS.len())] as char)
        .collect();
    format!("{ms}-{tail}")
}

/// JavaScript's `encodeURIComponent`, which bitvid applies to the magnet's `ws`/`xs` URLs.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shares_sum_to_one() {
        let s = &SHARES;
        assert!((s.url_only + s.magnet_only + s.upload + s.rich - 1.0).abs() < 1e-9);
        assert!((s.feed + s.view_count + s.channel - 1.0).abs() < 1e-9);
    }

    #[test]
    fn encode_uri_component_matches_js() {
        assert_eq!(
            encode_uri_component("https://pub-8f.r2.dev/u/x.mp4"),
            "https%3A%2F%2Fpub-8f.r2.dev%2Fu%2Fx.mp4"
        );
    }

    #[test]
    fn descriptions_spread_from_empty_to_thousands() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let lens: Vec<usize> = (0..2000).map(|_| description(&mut rng).len()).collect();
        assert!(lens.contains(&0));
        assert!(lens.iter().any(|&l| l > 2000));
        let mid = lens.iter().filter(|&&l| (120..600).contains(&l)).count();
        assert!(mid > 500, "{mid}");
    }

    #[test]
    fn slug_is_ascii_kebab() {
        assert_eq!(
            slug("Sunset timelapse over the bay (4K, 5 min)"),
            "sunset-timelapse-over-the-bay-4k-5-min"
        );
        assert_eq!(slug("🎬 東京"), "video");
    }
}
