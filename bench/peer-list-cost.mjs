#!/usr/bin/env node
// Measures what the peer list costs and how stale it gets, against a real
// `wrangler dev` Worker (docs/lifetimes.md "Peers"):
//  - directory calls per heartbeat: a beat that noted the relay in the
//    directory changes ListRelays' last_heartbeat_at_ms; one that answered the
//    cached list does not (ListRelays reads only the directory);
//  - staleness: after relay B's first beat, how long until A's beats list B
//    (A beating at its interval, as an edge does).
// Usage: node bench/peer-list-cost.mjs [--ttl-ms 3000] [--beats 30] [--rounds 5]
import { parseArgs } from "node:util";
import { call } from "../test/e2e/lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, freePort, startWorker } from "../test/e2e/lib/worker.mjs";

const { values } = parseArgs({
  options: {
    "ttl-ms": { type: "string", default: "3000" },
    beats: { type: "string", default: "30" },
    rounds: { type: "string", default: "5" },
  },
});
const ttl = Number(values["ttl-ms"]);
const interval = Math.floor(ttl / 3);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const w = await startWorker({ port: await freePort(), vars: { LEASE_TTL_MS: String(ttl) } });
try {
  const relay = async (url, epoch) => {
    const { token } = await call(w.url, "AdminService", "CreateRelayToken", { relayUrl: url }, DEV_ADMIN_TOKEN);
    return { url, beat: (addrs) => call(w.url, "CoordinatorService", "Heartbeat", { epoch, addrs }, token) };
  };
  const noted = async (url) =>
    (await call(w.url, "AdminService", "ListRelays", { pageSize: 1000 }, DEV_ADMIN_TOKEN)).relays?.find((r) => r.url === url)
      ?.lastHeartbeatAtMs;

  // Directory calls per heartbeat, one relay beating at its interval.
  const a = await relay("https://cost-a.example.com/", "a1");
  let last;
  let notes = 0;
  const beats = Number(values.beats);
  for (let i = 0; i < beats; i++) {
    await a.beat(["127.0.0.1:5001"]);
    const now = await noted(a.url);
    if (now !== last) notes++;
    last = now;
    await sleep(interval);
  }
  console.log(`lease TTL ${ttl} ms, interval ${interval} ms, ${beats} beats`);
  console.log(
    `directory notes: ${notes} of ${beats} beats → ${(1 + notes / beats).toFixed(2)} Durable Object calls per heartbeat (RelayObject + directory)`,
  );

  // Staleness: B appears; A (beating at its interval) lists it after how long?
  const waits = [];
  for (let round = 0; round < Number(values.rounds); round++) {
    const b = await relay(`https://cost-b${round}.example.com/`, "b1");
    await b.beat(["127.0.0.1:5002"]);
    const t0 = Date.now();
    for (;;) {
      const peers = (await a.beat(["127.0.0.1:5001"])).peers ?? [];
      if (peers.some((p) => p.url === b.url)) break;
      await sleep(interval);
    }
    waits.push(Date.now() - t0);
    await sleep(interval * Math.random());
  }
  waits.sort((x, y) => x - y);
  console.log(
    `new peer seen by a beating relay after (ms, ${waits.length} rounds): min ${waits[0]} median ${waits[Math.floor(waits.length / 2)]} max ${waits[waits.length - 1]}` +
      ` (bound: refresh period ${Math.floor(ttl / 2)} + one interval ${interval})`,
  );
} finally {
  await w.stop();
}
