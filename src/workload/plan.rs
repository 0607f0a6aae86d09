//! The planner: every random choice of a trace, made in one fixed order from one seeded RNG.
//!
//! It yields [`Draft`]s in time order. Everything expensive and order-independent (key
//! creation, hashing, signing) is left to [`super::finish`], which can then run on any
//! number of threads without changing a byte.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Exp, Zipf};
use secp256k1::Keypair;
use sha2::{Digest, Sha256};

use super::model::{self, CATALOGUE_MAX, SESSION_MEAN_S, SHARES, ZIPF_EXPONENT};
use super::video::{Creator, Video};
use super::Options;
use crate::capture::{Query, Role};
use crate::nostr::{keys, Unsigned};

/// One record before signing.
pub struct Draft {
    pub offset_us: u64,
    pub client: u32,
    pub after: Option<u64>,
    pub body: Body,
}

pub enum Body {
    /// A view, signed by a fresh key made from `secret` (never written anywhere).
    View {
        secret: [u8; 32],
        aux: [u8; 32],
        coord: String,
        created_at: u64,
    },
    /// An event signed by creator `creator`.
    Creator {
        creator: u32,
        aux: [u8; 32],
        role: Role,
        event: Unsigned,
    },
    Req {
        query: Query,
        sub: String,
        filter: String,
    },
    Close {
        sub: String,
    },
}

/// A draft waiting for its time, and the rest of its chain (mirror after post, CLOSE after
/// REQ), each link with its delay after the previous one.
struct Pending {
    offset_us: u64,
    seq: u64,
    client: u32,
    after: Option<u64>,
    body: Body,
    rest: Vec<(u64, Body)>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so `BinaryHeap` pops the earliest; ties go to the one planned first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.offset_us, other.seq).cmp(&(self.offset_us, self.seq))
    }
}

/// Key material for creator `index`, derived from the seed alone.
fn creator_material(seed: u64, index: u32, what: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"lt/synth/v1/");
    h.update(what.as_bytes());
    h.update(seed.to_le_bytes());
    h.update(index.to_le_bytes());
    h.finalize().into()
}

/// Live subscribers (`--live-share`). Their draws come from a stream of their own, so the
/// rest of a trace is the same draws in the same order whatever the share: a trace with
/// live subscribers is the trace without them plus their REQs and CLOSEs.
struct Live {
    rng: ChaCha20Rng,
    session_len_s: Exp<f64>,
    /// Upcoming session starts, (offset µs, client), earliest first.
    starts: BinaryHeap<Reverse<(u64, u32)>>,
    /// Sessions started, for subscription ids.
    sessions: u64,
}

impl Live {
    /// `opts.live_clients()` clients drawn without replacement, each starting its first
    /// session at a uniform time within the first session length (or the trace), so the
    /// subscribers ramp up rather than all asking at once over an empty catalogue.
    fn new(opts: &Options) -> Result<Live, String> {
        let seed: [u8; 32] =
            Sha256::digest([b"lt/synth/v1/live".as_slice(), &opts.seed.to_le_bytes()].concat())
                .into();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut clients: Vec<u32> = rand::seq::index::sample(
            &mut rng,
            opts.clients as usize,
            opts.live_clients() as usize,
        )
        .into_iter()
        .map(|c| c as u32)
        .collect();
        clients.sort_unstable();
        let ramp_us = opts.duration_s.min(SESSION_MEAN_S) * 1e6;
        let starts = clients
            .into_iter()
            .map(|c| Reverse(((rng.random::<f64>() * ramp_us) as u64, c)))
            .collect();
        Ok(Live {
            rng,
            session_len_s: Exp::new(1.0 / SESSION_MEAN_S)
                .map_err(|e| format!("session length: {e}"))?,
            starts,
            sessions: 0,
        })
    }

    fn next_start_us(&self) -> Option<u64> {
        self.starts.peek().map(|Reverse((t, _))| *t)
    }
}

pub struct Planner {
    opts: Options,
    rng: ChaCha20Rng,
    arrivals: Exp<f64>,
    /// Time of the next arrival in seconds, `None` once past the duration.
    next_arrival_s: Option<f64>,
    creators: Vec<Creator>,
    keypairs: Vec<Keypair>,
    catalogue: VecDeque<Video>,
    heap: BinaryHeap<Pending>,
    seq: u64,
    emitted: u64,
    reads: u64,
    live: Option<Live>,
}

impl Planner {
    pub fn new(opts: &Options) -> Result<Planner, String> {
        opts.validate()?;
        let seed: [u8; 32] =
            Sha256::digest([b"lt/synth/v1/rng".as_slice(), &opts.seed.to_le_bytes()].concat())
                .into();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let arrivals =
            Exp::new(opts.arrivals_per_second()).map_err(|e| format!("arrival rate: {e}"))?;
        let mut keypairs = Vec::with_capacity(opts.creators as usize);
        let mut creators = Vec::with_capacity(opts.creators as usize);
        for i in 0..opts.creators {
            let kp = keys::keypair_from_material(creator_material(opts.seed, i, "creator"));
            let pubkey = keys::pubkey(&kp);
            let bucket = hex::encode(&creator_material(opts.seed, i, "bucket")[..16]);
            creators.push(Creator {
                pubkey,
                pubkey_hex: hex::encode(pubkey),
                npub: keys::npub(&pubkey),
                bucket: format!("https://pub-{bucket}.r2.dev"),
                // Spread creators over the connections so their bundles do not share one.
                client: (u64::from(i) * u64::from(opts.clients) / u64::from(opts.creators)) as u32,
            });
            keypairs.push(kp);
        }
        let first = arrivals.sample(&mut rng);
        Ok(Planner {
            next_arrival_s: (first < opts.duration_s).then_some(first),
            opts: opts.clone(),
            rng,
            arrivals,
            creators,
            keypairs,
            catalogue: VecDeque::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            emitted: 0,
            reads: 0,
            live: if opts.live_clients() > 0 {
                Some(Live::new(opts)?)
            } else {
                None
            },
        })
    }

    /// The creators' keypairs, indexed by `Body::Creator::creator`.
    pub fn keypairs(&self) -> &[Keypair] {
        &self.keypairs
    }

    fn push(
        &mut self,
        offset_us: u64,
        client: u32,
        after: Option<u64>,
        body: Body,
        rest: Vec<(u64, Body)>,
    ) {
        self.seq += 1;
        self.heap.push(Pending {
            offset_us,
            seq: self.seq,
            client,
            after,
            body,
            rest,
        });
    }

    fn aux(&mut self) -> [u8; 32] {
        let mut aux = [0u8; 32];
        self.rng.fill_bytes(&mut aux);
        aux
    }

    fn popular_video(&mut self) -> Option<usize> {
        popular(self.catalogue.len(), &mut self.rng)
    }

    fn creator_event(&mut self, creator: u32, role: Role, event: Unsigned) -> Body {
        Body::Creator {
            creator,
            aux: self.aux(),
            role,
            event,
        }
    }

    fn arrive(&mut self, t_s: f64) {
        let offset_us = (t_s * 1e6) as u64;
        let now = self.opts.epoch + offset_us / 1_000_000;
        let read = self.rng.random_bool(self.opts.read_share);
        if read {
            self.plan_read(offset_us);
            return;
        }
        let view = self.rng.random_bool(self.opts.view_share);
        // The first publish is always a video, so every view has something to point at.
        if view && !self.catalogue.is_empty() {
            self.plan_view(offset_us, now);
            return;
        }
        let edit = self.rng.random_bool(self.opts.edit_share);
        if edit && !self.catalogue.is_empty() {
            self.plan_edit(offset_us, now);
        } else {
            self.plan_new_video(offset_us, now);
        }
    }

    fn plan_view(&mut self, offset_us: u64, now: u64) {
        let client = self.rng.random_range(0..self.opts.clients);
        let Some(i) = self.popular_video() else {
            return;
        };
        let coord = self.catalogue[i].coord.clone();
        let mut secret = [0u8; 32];
        self.rng.fill_bytes(&mut secret);
        let aux = self.aux();
        let body = Body::View {
            secret,
            aux,
            coord,
            created_at: now,
        };
        self.push(offset_us, client, None, body, Vec::new());
    }

    fn plan_new_video(&mut self, offset_us: u64, now: u64) {
        let c = self.rng.random_range(0..self.opts.creators);
        let creator = &self.creators[c as usize];
        let video = Video::new(&mut self.rng, c, creator, now, self.opts.nip71_share);
        let (pk, client) = (creator.pubkey, creator.client);
        let post = self.creator_event(c, Role::VideoPost, video.post(pk, now));
        let mut rest = Vec::new();
        if video.hosted() {
            let m = self.creator_event(c, Role::Nip94Mirror, video.nip94(pk, now));
            rest.push((model::MIRROR_DELAY_US, m));
            if let Some(ev) = video.nip71(pk, now) {
                let m = self.creator_event(c, Role::Nip71Mirror, ev);
                rest.push((model::MIRROR_DELAY_US, m));
            }
        }
        self.push(offset_us, client, None, post, rest);
        if self.catalogue.len() == CATALOGUE_MAX {
            self.catalogue.pop_front();
        }
        self.catalogue.push_back(video);
    }

    fn plan_edit(&mut self, offset_us: u64, now: u64) {
        let i = self.rng.random_range(0..self.catalogue.len());
        let tombstone = self.rng.random_bool(SHARES.tombstone);
        let c = self.catalogue[i].creator;
        let (pk, client) = (
            self.creators[c as usize].pubkey,
            self.creators[c as usize].client,
        );
        let mut video = if tombstone {
            // A reverted video is gone from the feed: no more views or edits of it.
            self.catalogue.remove(i).expect("index in range")
        } else {
            self.catalogue.swap_remove_back(i).expect("index in range")
        };
        let created_at = video.edit(&mut self.rng, now);
        if tombstone {
            let ev = self.creator_event(c, Role::Tombstone, video.tombstone(pk, created_at));
            self.push(offset_us, client, None, ev, Vec::new());
            return;
        }
        let post = self.creator_event(c, Role::VideoEdit, video.post(pk, created_at));
        let mut rest = Vec::new();
        if let Some(ev) = video.nip71(pk, created_at) {
            let m = self.creator_event(c, Role::Nip71Mirror, ev);
            rest.push((model::MIRROR_DELAY_US, m));
        }
        self.push(offset_us, client, None, post, rest);
        // Back in place (swap_remove_back moved the newest video into slot i).
        self.catalogue.push_back(video);
        let last = self.catalogue.len() - 1;
        self.catalogue.swap(i, last);
    }

    fn plan_read(&mut self, offset_us: u64) {
        let client = self.rng.random_range(0..self.opts.clients);
        let x: f64 = self.rng.random();
        let mut query = if x < SHARES.feed {
            Query::Feed
        } else if x < SHARES.feed + SHARES.view_count {
            Query::ViewCount
        } else {
            Query::Channel
        };
        let filter = match query {
            Query::Other | Query::LiveFeed | Query::LiveViews => {
                unreachable!("a read draws only the one-shot queries it names")
            }
            Query::ViewCount => match self.popular_video() {
                Some(i) => format!(
                    r##"{{"kinds":[30079],"#t":["view"],"#a":["{}"]}}"##,
                    self.catalogue[i].coord
                ),
                None => {
                    query = Query::Feed;
                    feed_filter()
                }
            },
            Query::Feed => feed_filter(),
            Query::Channel => {
                let c = self.rng.random_range(0..self.opts.creators) as usize;
                format!(
                    r##"{{"kinds":[30078],"authors":["{}"],"#t":["video"],"limit":{}}}"##,
                    self.creators[c].pubkey_hex,
                    model::CHANNEL_LIMIT
                )
            }
        };
        self.reads += 1;
        let sub = format!("{}-{:x}", query.label(), self.reads);
        let close = Body::Close { sub: sub.clone() };
        let req = Body::Req { query, sub, filter };
        self.push(
            offset_us,
            client,
            None,
            req,
            vec![(model::CLOSE_DELAY_US, close)],
        );
    }
}

impl Planner {
    /// A live client's viewing session from `start_us`: a live feed and, when there is a
    /// video to watch, the watched video's view counter (Zipf popularity, as views pick
    /// videos), both CLOSEd when the session ends (at the latest when the trace does); the
    /// next session starts then.
    fn start_session(&mut self, start_us: u64, client: u32) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let duration_us = (self.opts.duration_s * 1e6) as u64;
        let len_us = (live.session_len_s.sample(&mut live.rng) * 1e6) as u64;
        let end_us = start_us.saturating_add(len_us.max(1)).min(duration_us);
        let watched = popular(self.catalogue.len(), &mut live.rng);
        live.sessions += 1;
        let n = live.sessions;
        if end_us < duration_us {
            live.starts.push(Reverse((end_us, client)));
        }
        let since = self.opts.epoch + start_us / 1_000_000;
        let mut subs = vec![(
            Query::LiveFeed,
            format!(r##"{{"kinds":[30078],"#t":["video"],"since":{since}}}"##),
        )];
        if let Some(i) = watched {
            subs.push((
                Query::LiveViews,
                format!(
                    r##"{{"kinds":[30079],"#t":["view"],"#a":["{}"],"since":{since}}}"##,
                    self.catalogue[i].coord
                ),
            ));
        }
        for (query, filter) in subs {
            let sub = format!("{}-{n:x}", query.label());
            let close = Body::Close { sub: sub.clone() };
            let req = Body::Req { query, sub, filter };
            self.push(
                start_us,
                client,
                None,
                req,
                vec![(end_us - start_us, close)],
            );
        }
    }
}

/// A catalogue index out of `n` videos, Zipf over recency: the newest video is rank 1.
fn popular(n: usize, rng: &mut ChaCha20Rng) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let zipf = Zipf::new(n as f64, ZIPF_EXPONENT).ok()?;
    let rank = (zipf.sample(rng) as usize).clamp(1, n);
    Some(n - rank)
}

fn feed_filter() -> String {
    format!(
        r##"{{"kinds":[30078],"#t":["video"],"limit":{}}}"##,
        model::FEED_LIMIT
    )
}

/// What the planner does next: the earliest of the three, and on a tie in this order (what
/// is already planned, then a session start, then a new arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    Planned,
    Session,
    Arrival,
}

impl Iterator for Planner {
    type Item = Draft;

    fn next(&mut self) -> Option<Draft> {
        loop {
            let planned = self.heap.peek().map(|p| (p.offset_us, Next::Planned));
            let session = self.live.as_ref().and_then(Live::next_start_us);
            let arrival = self
                .next_arrival_s
                .map(|a| ((a * 1e6) as u64, Next::Arrival));
            let next = [planned, session.map(|t| (t, Next::Session)), arrival]
                .into_iter()
                .flatten()
                .min()?;
            match next.1 {
                Next::Planned => {}
                Next::Session => {
                    if let Some(Reverse((t, client))) =
                        self.live.as_mut().and_then(|l| l.starts.pop())
                    {
                        self.start_session(t, client);
                    }
                    continue;
                }
                Next::Arrival => {
                    let t = self.next_arrival_s?;
                    self.arrive(t);
                    let next = t + self.arrivals.sample(&mut self.rng);
                    self.next_arrival_s = (next < self.opts.duration_s).then_some(next);
                    continue;
                }
            }
            let p = self.heap.pop()?;
            let index = self.emitted;
            self.emitted += 1;
            let mut rest = p.rest.into_iter();
            if let Some((delay, body)) = rest.next() {
                self.push(
                    p.offset_us + delay,
                    p.client,
                    Some(index),
                    body,
                    rest.collect(),
                );
            }
            return Some(Draft {
                offset_us: p.offset_us,
                client: p.client,
                after: p.after,
                body: p.body,
            });
        }
    }
}
