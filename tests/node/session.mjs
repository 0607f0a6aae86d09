#!/usr/bin/env node
// One bitvid-shaped client session through a real Nostr client: nostr-tools' own `Relay`
// (Relay.connect, relay.publish, relay.subscribe) over `ws`, with every WebSocket text frame
// logged. For lt's integration tests (e.g. of the `lt record` proxy): what this client sent
// and received can be compared with what the proxy recorded.
//
// Setup, once (pinned versions from tests/node/package-lock.json into .cache/node-client/):
//   scripts/install-node-client
// Run (from anywhere; the packages are found relative to this file, not via NODE_PATH,
// which ES module imports ignore; $LT_NODE_CLIENT_DIR overrides the folder as for the script):
//   node tests/node/session.mjs ws://127.0.0.1:PORT/ [--seed N] [--created-at UNIX]
//        [--deterministic-sig] [--timeout-ms MS] [--allow-remote]
//
// The session, in order (modelled on /work/shared/reference/event-schemas.md §3.1, §3.2,
// §3.6 and tests/vectors/bitvid-example-events.jsonl):
//   1. the creator publishes a video post: kind 30078, tags t=video, d, s, imeta, t…,
//      content = bitvid's "Content Schema v3" JSON (R2 upload shape);
//   2. after its OK, the kind 1063 NIP-94 mirror, same created_at and signer;
//   3. a feed REQ {"kinds":[30078],"#t":["video"],"limit":150}; on EOSE the subscription is
//      closed (nostr-tools sends the CLOSE);
//   4. 5 view events, published concurrently: kind 30079, tags t=view, a=30078:<creator>:<d>,
//      d=a:<pointer>:<viewer>:<day>, session=true, content {"target":…,"created_at":…},
//      each signed by a fresh key (bitvid mints one per view);
//   5. the connection is closed (close handshake awaited).
//
// Options:
//   --seed N          secret keys are sha256(seed as u64 BE || counter as u32 BE) (counter 0 =
//                     creator, 1..5 = viewers) and the video's d-tag, infohash and storage
//                     URL derive from the seed, so two runs sign the same bodies except
//                     created_at. (A view's d-tag holds floor(created_at/86400), as bitvid's.)
//                     Without it: generateSecretKey() and bitvid's Date.now()/Math.random() d.
//   --created-at T    every event gets created_at T (default: the clock at signing). With
//                     --seed, two runs then publish the same event ids.
//   --deterministic-sig  nostr-tools' finalizeEvent signs with BIP-340 random aux data, so
//                     the sig differs on every run even for the same id. With this flag each
//                     event is re-signed with aux = sha256(id) (valid BIP-340, checked with
//                     nostr-tools' verifyEvent), so --seed + --created-at runs send
//                     byte-identical EVENT frames.
//   --timeout-ms MS   connect timeout and nostr-tools' publish/EOSE timeouts (defaults: 10000
//                     for connect; nostr-tools' own 4400 for publish and EOSE).
//   --allow-remote    allow a relay host that is not loopback (refused by default).
//
// stdout: one JSON line per text frame, {"dir":"send"|"recv","t_ms":<performance.now()>,
// "frame":<exact frame text>}, then one line {"summary":{"published":[{"id","kind","ok",
// "message","acked"}],"eose_events":N,"eose":bool,"notices":[…],"close_code":N}}. `ok`/`message` are what
// relay.publish resolved or rejected with; `acked` says an OK frame for the id arrived
// (false: nostr-tools timed out or the connection dropped). `eose` says a real EOSE frame
// arrived (nostr-tools also fires oneose on its own EOSE timeout). `close_code` is the
// WebSocket close code seen once the close handshake ends (nostr-tools closes without a code,
// so 1005 when the relay echoes the close; 1006 when the socket had to be terminated).
// Exit: 0 when every publish was acked and the EOSE arrived (OK false, e.g. a rejection, is
// still 0); 2 when some OK or the EOSE never came (summary still printed); 1 on bad
// arguments, missing packages or a failed connect (one line on stderr).

import { createHash } from "node:crypto";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

import { die, importFromClient } from "./resolve.mjs";

const sha256 = (...parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const u32be = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

// ---- event builders (bitvid's shapes; exported for checks against the reference vectors) ----

export const TRACKERS = [
  "wss://tracker.openwebtorrent.com",
  "wss://tracker.files.fm:7073/announce",
  "wss://tracker.novage.com.ua:443/announce",
  "wss://tracker.webtorrent.dev",
];
export const TITLE = "Sunset timelapse over the bay (4K, 5 min)";
export const DESCRIPTION =
  "Five minutes of golden hour compressed from two hours of footage shot on the north pier. Shot at 4K/30, graded lightly, no music. Feel free to reuse with credit. Gear: mirrorless body, 24mm prime, ND filter, intervalometer every 2s.";

/** The R2 upload's URLs: <r2 base>/u/<npub>/<infohash>/<slug>{.mp4,.torrent,.thumb.jpg}. */
export function uploadUrls({ r2Host, npub, infoHash, slug }) {
  const prefix = `https://${r2Host}/u/${npub}/${infoHash}/${slug}`;
  const url = `${prefix}.mp4`;
  const torrent = `${prefix}.torrent`;
  const magnet =
    `magnet:?xt=urn:btih:${infoHash}&dn=${slug}.mp4&ws=${encodeURIComponent(url)}` +
    `&xs=${encodeURIComponent(torrent)}` +
    TRACKERS.map((t) => `&tr=${t}`).join("");
  return { prefix, url, torrent, magnet, thumbnail: `${prefix}.thumb.jpg` };
}

/** Kind 30078 video post (bitvid buildVideoPostEvent, R2 upload; §3.1). */
export function videoPostTemplate({ d, createdAt, infoHash, urls }) {
  const content = {
    version: 3,
    title: TITLE,
    url: urls.url,
    magnet: urls.magnet,
    thumbnail: urls.thumbnail,
    description: DESCRIPTION,
    mode: "live",
    videoRootId: d,
    deleted: false,
    isPrivate: false,
    isNsfw: false,
    isForKids: false,
    enableComments: true,
    infoHash,
    ws: urls.url,
    xs: urls.torrent,
  };
  return {
    kind: 30078,
    created_at: createdAt,
    tags: [
      ["t", "video"],
      ["d", d],
      ["s", `r2:${urls.prefix}`],
      ["imeta", `url ${urls.url}`, `x ${infoHash}`, "m video/mp4"],
      ["t", "timelapse"],
      ["t", "sunset"],
      ["t", "nature"],
    ],
    content: JSON.stringify(content),
  };
}

/** Kind 1063 NIP-94 mirror of the post (bitvid buildVideoMirrorEvent; §3.2). */
export function mirrorTemplate({ createdAt, urls }) {
  return {
    kind: 1063,
    created_at: createdAt,
    tags: [
      ["url", urls.url],
      ["m", "video/mp4"],
      ["thumb", urls.thumbnail],
      ["alt", DESCRIPTION],
      ["magnet", urls.magnet],
    ],
    content: DESCRIPTION,
  };
}

/** Kind 30079 session view event (bitvid buildViewEvent + generateViewEventDedupeTag; §3.6). */
export function viewTemplate({ pointer, viewerPubkey, createdAt }) {
  const d = `a:${pointer.toLowerCase()}:${viewerPubkey}:${Math.floor(createdAt / 86400)}`;
  return {
    kind: 30079,
    created_at: createdAt,
    tags: [
      ["t", "view"],
      ["a", pointer],
      ["d", d],
      ["session", "true"],
    ],
    content: JSON.stringify({ target: { type: "a", value: pointer }, created_at: createdAt }),
  };
}

// ---- arguments ----

function parseArgs(argv) {
  const o = { url: null, seed: null, createdAt: null, detSig: false, timeoutMs: null, allowRemote: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(1, `${a} needs a value`);
      return argv[++i];
    };
    if (a === "--seed") {
      const v = val();
      if (!/^\d+$/.test(v) || BigInt(v) >= 1n << 64n) die(1, `--seed wants an integer in 0..2^64-1, got ${v}`);
      o.seed = BigInt(v);
    } else if (a === "--created-at") {
      const v = val();
      if (!/^\d+$/.test(v)) die(1, `--created-at wants a unix time in seconds, got ${v}`);
      o.createdAt = Number(v);
    } else if (a === "--timeout-ms") {
      const v = val();
      if (!/^\d+$/.test(v) || Number(v) === 0) die(1, `--timeout-ms wants a positive integer, got ${v}`);
      o.timeoutMs = Number(v);
    } else if (a === "--deterministic-sig") o.detSig = true;
    else if (a === "--allow-remote") o.allowRemote = true;
    else if (a === "-h" || a === "--help") {
      process.stdout.write(
        "usage: node tests/node/session.mjs ws://127.0.0.1:PORT/ [--seed N] [--created-at UNIX] [--deterministic-sig] [--timeout-ms MS] [--allow-remote]\n",
      );
      process.exit(0);
    } else if (a.startsWith("-")) die(1, `unknown option ${a}`);
    else if (o.url === null) o.url = a;
    else die(1, `unexpected argument ${a}`);
  }
  if (!o.url) die(1, "usage: node tests/node/session.mjs ws://127.0.0.1:PORT/ [--seed N] [--created-at UNIX]");
  let u;
  try {
    u = new URL(o.url);
  } catch {
    die(1, `not a URL: ${o.url}`);
  }
  if (u.protocol !== "ws:" && u.protocol !== "wss:") die(1, `want a ws:// or wss:// URL, got ${o.url}`);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const loopback = host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (!loopback && !o.allowRemote) die(1, `refusing non-loopback relay host ${host} (pass --allow-remote to override)`);
  return o;
}

// ---- the session ----

async function main() {
  const opts = parseArgs(process.argv.slice(2));

  const { default: WebSocket } = await importFromClient("ws");
  const { Relay, useWebSocketImplementation } = await importFromClient("nostr-tools/relay");
  const { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent, verifiedSymbol } =
    await importFromClient("nostr-tools/pure");
  const { npubEncode } = await importFromClient("nostr-tools/nip19");

  const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  const acked = new Set();
  let eoseFrames = 0;
  let sock = null;
  let sockError = null;

  // ws's WebSocket, logging every text frame; nostr-tools drives it through onopen/onmessage/
  // send/close like a browser WebSocket.
  class LoggingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sock = this;
      this.on("error", (e) => (sockError = e));
      // Registered before nostr-tools sets onmessage, so each frame is logged before handled.
      this.on("message", (data, isBinary) => {
        const frame = isBinary ? Buffer.from(data).toString("base64") : data.toString();
        out({ dir: "recv", t_ms: performance.now(), frame });
        try {
          const m = JSON.parse(frame);
          if (m[0] === "OK") acked.add(m[1]);
          else if (m[0] === "EOSE") eoseFrames++;
        } catch {}
      });
    }
    send(data, ...rest) {
      // Stamped once ws has framed the message and handed it to the socket (the first
      // sends run ws's framing cold, ~1-2 ms), and before the log line is written: the
      // time the frame left, as a proxy or relay would see it.
      const r = super.send(data, ...rest);
      const t_ms = performance.now();
      out({ dir: "send", t_ms, frame: String(data) });
      return r;
    }
  }
  // Node 20 has no global WebSocket: without this, new Relay() throws a ReferenceError.
  useWebSocketImplementation(LoggingWebSocket);

  // Keys and seeded values.
  const seed8 = opts.seed === null ? null : Buffer.alloc(8);
  if (seed8) seed8.writeBigUInt64BE(opts.seed);
  const derive = (label) => sha256(seed8, Buffer.from(label, "utf8"));
  const secretKey = (counter) => {
    if (!seed8) return generateSecretKey();
    for (let retry = 0; ; retry++) {
      const sk = new Uint8Array(sha256(seed8, u32be(counter), retry ? u32be(retry) : Buffer.alloc(0)));
      try {
        getPublicKey(sk); // throws if not a valid secp256k1 scalar (probability ~2^-128)
        return sk;
      } catch {}
    }
  };
  const now = () => opts.createdAt ?? Math.floor(Date.now() / 1000);

  let schnorr = null;
  if (opts.detSig) ({ schnorr } = await importFromClient("@noble/curves/secp256k1.js"));
  const sign = (template, sk) => {
    const ev = finalizeEvent(template, sk); // nostr-tools' own signing (random BIP-340 aux)
    if (opts.detSig) {
      const id = Buffer.from(ev.id, "hex");
      ev.sig = Buffer.from(schnorr.sign(id, sk, sha256(id))).toString("hex");
      delete ev[verifiedSymbol];
      if (!verifyEvent(ev)) die(1, `deterministic re-signature of ${ev.id} does not verify`);
    }
    return ev;
  };

  const creatorSk = secretKey(0);
  const creatorPk = getPublicKey(creatorSk);
  let d, infoHash, r2Host;
  if (seed8) {
    const h = derive("video");
    // bitvid: `${Date.now()}-${Math.random().toString(36).slice(2)}`
    const ms = 1770000000000n + (h.readBigUInt64BE(0) % 1000000000n);
    const rand = (h.readBigUInt64BE(8) % 36n ** 12n).toString(36).padStart(12, "0");
    d = `${ms}-${rand}`;
    infoHash = derive("infohash").subarray(0, 20).toString("hex");
    r2Host = `pub-${derive("r2").subarray(0, 16).toString("hex")}.r2.dev`;
  } else {
    d = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
    infoHash = createHash("sha1").update(String(Math.random())).digest("hex");
    r2Host = `pub-${createHash("md5").update(String(Math.random())).digest("hex")}.r2.dev`;
  }
  const urls = uploadUrls({ r2Host, npub: npubEncode(creatorPk), infoHash, slug: "sunset-timelapse-over-the-bay" });
  const pointer = `30078:${creatorPk}:${d}`;

  // Connect.
  let relay;
  try {
    relay = await Relay.connect(opts.url, { timeout: opts.timeoutMs ?? 10000 });
  } catch (e) {
    const why = sockError ? sockError.message : e instanceof Error ? e.message : String(e);
    die(1, `cannot connect to ${opts.url}: ${why}`);
  }
  const notices = [];
  relay.onnotice = (msg) => notices.push(msg); // default is console.debug, i.e. stdout
  if (opts.timeoutMs) {
    relay.publishTimeout = opts.timeoutMs;
    relay.baseEoseTimeout = opts.timeoutMs;
  }

  const published = [];
  const publish = async (ev) => {
    const rec = { id: ev.id, kind: ev.kind, ok: false, message: null };
    published.push(rec);
    try {
      const reason = await relay.publish(ev);
      rec.ok = true;
      rec.message = reason ?? "";
    } catch (e) {
      rec.ok = false;
      rec.message = e instanceof Error ? e.message : String(e);
    }
    return rec;
  };

  // 1-2. The video post, then (after its OK, as bitvid's publishVideo does) its NIP-94 mirror.
  const postCreatedAt = now();
  await publish(sign(videoPostTemplate({ d, createdAt: postCreatedAt, infoHash, urls }), creatorSk));
  await publish(sign(mirrorTemplate({ createdAt: postCreatedAt, urls }), creatorSk));

  // 3. The feed: bitvid's video list subscription, closed at EOSE.
  let eoseEvents = 0;
  await new Promise((resolve) => {
    const sub = relay.subscribe([{ kinds: [30078], "#t": ["video"], limit: 150 }], {
      onevent() {
        eoseEvents++;
      },
      oneose() {
        sub.close(); // nostr-tools sends ["CLOSE", id]
        resolve();
      },
      onclose() {
        resolve(); // a CLOSED from the relay, or the connection dropped
      },
    });
  });

  // 4. Five viewers, one fresh key each, publishing concurrently.
  await Promise.all(
    [1, 2, 3, 4, 5].map((i) => {
      const sk = secretKey(i);
      return publish(sign(viewTemplate({ pointer, viewerPubkey: getPublicKey(sk), createdAt: now() }), sk));
    }),
  );

  // 5. Close cleanly: let the CLOSE/EVENT sends queued on promises go out, close, await the
  // close handshake (terminate after 2 s).
  await new Promise((r) => setImmediate(r));
  const ws = sock;
  let closeCode = null;
  const closed = new Promise((r) => {
    if (!ws || ws.readyState === WebSocket.CLOSED) return r();
    ws.once("close", (code) => {
      closeCode = code;
      r();
    });
    setTimeout(() => ws.terminate(), 2000).unref();
  });
  relay.close();
  await closed;

  for (const p of published) p.acked = acked.has(p.id);
  out({ summary: { published, eose_events: eoseEvents, eose: eoseFrames > 0, notices, close_code: closeCode } });

  const missing = published.filter((p) => !p.acked).length;
  if (missing || eoseFrames === 0) {
    process.stderr.write(
      `session.mjs: incomplete session: ${missing} publish(es) without an OK, ${eoseFrames === 0 ? "no EOSE" : "EOSE received"}\n`,
    );
    process.exitCode = 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((e) => die(1, e instanceof Error ? e.message : String(e)));
}
