#!/usr/bin/env node
// Which deliveries live subscriptions should have received, computed apart from lt: the
// filter semantics are nostr-tools' own `matchFilters`, the rest is NIP-01 as lt's docs
// state it (docs/reports.md, live subscriptions). For lt's integration tests.
//
// Input (stdin, one JSON object), times in ns from the run's t0:
//   {"events": [{"event": {…signed event…}, "sent": ns, "answered": ns, "accepted": bool}],
//    "subs":   [{"name": "live-feed-1", "conn": 3, "filters": [{…}], "eose": ns|null,
//                "close": ns|null}]}
// `accepted` is OK true (a `duplicate:` is not: the relay already had the event). A sub
// without an EOSE was never open. `close` null: open to the end of the run.
// Output (stdout): {"expected": N, "by_sub": {"<conn>/<name>": n, …}}
//
// An event is expected on a subscription when it matches one of its filters, the relay
// accepted it, it was sent after the subscription's EOSE arrived and its OK arrived before
// the CLOSE was sent.

import { die, importFromClient } from "./resolve.mjs";

const { matchFilters } = await importFromClient("nostr-tools/filter");

let input = "";
for await (const chunk of process.stdin) input += chunk;
let doc;
try {
  doc = JSON.parse(input);
} catch (e) {
  die(1, `stdin is not JSON: ${e.message}`);
}

let expected = 0;
const bySub = {};
for (const sub of doc.subs) {
  const key = `${sub.conn}/${sub.name}`;
  bySub[key] = 0;
  if (sub.eose === null || sub.eose === undefined) continue;
  const close = sub.close ?? Number.POSITIVE_INFINITY;
  for (const e of doc.events) {
    if (!e.accepted) continue;
    if (e.sent < sub.eose || e.answered > close) continue;
    if (!matchFilters(sub.filters, e.event)) continue;
    bySub[key] += 1;
    expected += 1;
  }
}
process.stdout.write(JSON.stringify({ expected, by_sub: bySub }) + "\n");
