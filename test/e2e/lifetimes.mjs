// Relay lifetimes against a real `wrangler dev` (npm run test:lifetimes):
//  1. two relays register namespaces, tracks and subscriptions in two scopes;
//  2. wrangler dev is killed (SIGKILL) and started again on the same persisted
//     state: every registration must still be there;
//  3. one relay stops heartbeating: its state must be gone within lease TTL + 5 s
//     of its last heartbeat, while the other relay's stays. The time from the
//     last heartbeat to the purge (polled every 100 ms) is printed.
// Along the way, a watch socket on the first scope (GET /v1/watch): hello,
// one invalidation per registration, ping/pong, the socket closed by the
// kill, the same stream and seq after the restart, and the lapse pushed as
// one invalidation naming the dead relay's routes (its delay printed).
// Options: --rounds=N repeats step 3 with N fresh relays (default 1);
// --log shows wrangler's output.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { call, ns as nsOf, registeredUrl, relayToken } from "./lib/rpc.mjs";
import { openWatch } from "./lib/watch.mjs";
import { freePort, startWorker } from "./lib/worker.mjs";

const LEASE_TTL_MS = 3000;
const PURGE_LIMIT_MS = LEASE_TTL_MS + 5000;
const POLL_MS = 100;
const SCOPES = ["lifetimes-s1", "lifetimes-s2"];
const NAMESPACES_PER_SCOPE = 3;

const { values: options } = parseArgs({
  options: { rounds: { type: "string", default: "1" }, log: { type: "boolean", default: false } },
});
const rounds = Number(options.rounds);
const log = options.log;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ms = (t) => `${Math.round(t)} ms`;

function check(ok, what) {
  if (!ok) throw new Error(`FAILED: ${what}`);
}

/** A relay: its token, its boot epoch, and a heartbeat loop like the edge's. */
class Relay {
  constructor(worker, name) {
    this.worker = worker;
    this.name = name;
    this.url = `https://${name}.lifetimes.test:4443/`;
    this.epoch = `${name}-${Date.now().toString(36)}`;
    this.lastBeat = undefined; // when the last successful heartbeat was sent
  }

  async init() {
    this.token = await relayToken(this.worker.url, this.url);
    const reply = await this.beat();
    check(reply.leaseTtlMs === LEASE_TTL_MS, `Heartbeat answers lease_ttl_ms ${LEASE_TTL_MS} (got ${reply.leaseTtlMs})`);
    this.timer = setInterval(() => this.beat().catch(() => {}), reply.intervalMs);
    return this;
  }

  async beat() {
    const sent = performance.now();
    this.inflight = this.rpc("Heartbeat", { epoch: this.epoch });
    const reply = await this.inflight;
    this.lastBeat = sent;
    return reply;
  }

  /** Stops heartbeating; resolves when no heartbeat is in flight. */
  async stop() {
    clearInterval(this.timer);
    await this.inflight?.catch(() => {});
  }

  rpc(method, body) {
    return call(this.worker.url, "CoordinatorService", method, body, this.token, { "moq-relay-epoch": this.epoch });
  }

  /** Namespaces, a track, a namespace subscription and a lingering track subscription in every scope. */
  async populate() {
    for (const scope of SCOPES) {
      for (let i = 0; i < NAMESPACES_PER_SCOPE; i++) {
        await this.rpc("RegisterNamespace", { scope, namespace: nsOf(`${this.name}/ns-${i}`) });
      }
      await this.rpc("RegisterTrack", { scope, namespace: nsOf(`${this.name}/ns-0`), track: "video" });
      await this.rpc("SubscribeNamespace", { scope, prefix: nsOf(`${this.name}-interest`) });
      await this.rpc("SubscribeTrack", { scope, namespace: nsOf(`${this.name}/wanted`), track: "audio" });
    }
  }
}

/** How much of `owner`'s state `viewer` sees, per kind (each counted over every scope). */
async function seen(viewer, owner) {
  const count = { namespaces: 0, tracks: 0, namespaceSubscriptions: 0, trackSubscriptions: 0 };
  await Promise.all(
    SCOPES.flatMap((scope) => [
      ...Array.from({ length: NAMESPACES_PER_SCOPE }, async (_, i) => {
        const found = await viewer.rpc("Lookup", { scope, namespace: nsOf(`${owner.name}/ns-${i}`) }).catch((e) => {
          if (e.code !== "not_found") throw e;
        });
        if (found) {
          check(registeredUrl(found.origin.relay.url) === owner.url, `${owner.name}/ns-${i} is hosted by ${owner.url}`);
          count.namespaces++;
        }
      }),
      (async () => {
        const { tracks = [] } = await viewer.rpc("ListTracks", { scope, namespace: nsOf(`${owner.name}/ns-0`) });
        count.tracks += tracks.length;
      })(),
      (async () => {
        const { relays = [] } = await viewer.rpc("LookupNamespaceSubscribers", {
          scope,
          namespace: nsOf(`${owner.name}-interest/x`),
        });
        count.namespaceSubscriptions += relays.filter((r) => registeredUrl(r.url) === owner.url).length;
      })(),
      (async () => {
        const { relays = [] } = await viewer.rpc("LookupTrackSubscribers", {
          scope,
          namespace: nsOf(`${owner.name}/wanted`),
          track: "audio",
        });
        count.trackSubscriptions += relays.filter((r) => registeredUrl(r.url) === owner.url).length;
      })(),
    ]),
  );
  return count;
}

const everything = {
  namespaces: SCOPES.length * NAMESPACES_PER_SCOPE,
  tracks: SCOPES.length,
  namespaceSubscriptions: SCOPES.length,
  trackSubscriptions: SCOPES.length,
};
const nothing = { namespaces: 0, tracks: 0, namespaceSubscriptions: 0, trackSubscriptions: 0 };
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function expectAll(viewer, owner, when) {
  const count = await seen(viewer, owner);
  check(same(count, everything), `${when}: all of ${owner.name}'s state is there (${JSON.stringify(count)})`);
}

/** Stops `victim`'s heartbeats and measures how long until all its state is gone. */
async function measurePurge(victim, viewer) {
  await victim.stop();
  const last = victim.lastBeat;
  for (;;) {
    const elapsed = performance.now() - last;
    const count = await seen(viewer, victim);
    if (same(count, nothing)) return performance.now() - last;
    check(
      elapsed <= PURGE_LIMIT_MS,
      `${victim.name}'s state is gone within ${PURGE_LIMIT_MS} ms of its last heartbeat (left: ${JSON.stringify(count)})`,
    );
    await sleep(POLL_MS);
  }
}

async function main() {
  const state = mkdtempSync(join(tmpdir(), "moq-worker-lifetimes-"));
  const port = await freePort();
  const vars = { LEASE_TTL_MS: String(LEASE_TTL_MS) };
  let worker = await startWorker({ port, persistTo: state, vars, log });
  const relays = [];
  try {
    console.log(`wrangler dev on ${worker.url}, state in ${state}, LEASE_TTL_MS=${LEASE_TTL_MS}`);
    const a = await new Relay(worker, "relay-a").init();
    const b = await new Relay(worker, "relay-b").init();
    relays.push(a, b);
    const watched = SCOPES[0];
    let watcher = await openWatch(worker.url, b.token, watched);
    const hello = await watcher.next();
    check(hello.hello !== undefined && hello.seq === 0, `the first watch event is hello with seq 0 (got ${JSON.stringify(hello)})`);
    await a.populate();
    await b.populate();
    // Per relay: its namespaces, then its track; subscriptions alter no cached answer.
    const expected = [a, b].flatMap((r) => [
      ...Array.from({ length: NAMESPACES_PER_SCOPE }, (_, i) => `ns ${r.name}/ns-${i}`),
      `track ${r.name}/ns-0#video`,
    ]);
    for (const [i, want] of expected.entries()) {
      const e = await watcher.next();
      const got = [...e.namespaces.map((n) => `ns ${n}`), ...e.tracks.map((t) => `track ${t}`)].join(",");
      check(e.seq === i + 1 && got === want, `watch event ${i + 1} is seq ${i + 1}, ${want} (got seq ${e.seq}, ${got})`);
    }
    watcher.ws.send("ping");
    check((await watcher.text()) === "pong", "the watch channel answers ping with pong");
    console.log(`watch ${watched}: hello, then ${expected.length} invalidations with seq 1..${expected.length}; ping answered`);
    await expectAll(b, a, "before restart");
    await expectAll(a, b, "before restart");
    console.log(
      `registered: 2 relays × ${SCOPES.length} scopes × (${NAMESPACES_PER_SCOPE} namespaces, 1 track, 1 namespace and 1 track subscription)`,
    );

    // The relays keep heartbeating (and failing) while the runtime is down, as real ones would.
    const down = performance.now();
    await worker.stop("SIGKILL");
    await watcher.closed();
    worker = await startWorker({ port, persistTo: state, vars, log });
    console.log(`wrangler dev killed and restarted on the same state (down ${ms(performance.now() - down)})`);
    let pushedAt;
    watcher = await openWatch(worker.url, b.token, watched, {
      onEvent: (e, at) => {
        if (e.hello === undefined) pushedAt ??= at;
      },
    });
    const again = await watcher.next();
    check(
      again.hello === hello.hello && again.seq === expected.length,
      `after the restart the watch stream and seq carry on (${hello.hello} seq ${expected.length}; got ${JSON.stringify(again)})`,
    );
    await expectAll(b, a, "after restart");
    await expectAll(a, b, "after restart");
    console.log("after restart: every registration of both relays is there");

    // Past the restart grace (a RelayObject does not declare a relay dead before it has been up one TTL).
    await sleep(LEASE_TTL_MS);
    const times = [];
    for (let round = 0; round < rounds; round++) {
      const victim = round === 0 ? a : await new Relay(worker, `relay-v${round}`).init();
      if (round > 0) {
        relays.push(victim);
        await victim.populate();
        await sleep(LEASE_TTL_MS / 2);
      }
      await expectAll(b, victim, `round ${round + 1}, before the heartbeats stop`);
      const t = await measurePurge(victim, b);
      times.push(t);
      if (round === 0) {
        const e = await watcher.next();
        const routes = [...e.namespaces.sort(), ...e.tracks].join(",");
        const want = [...Array.from({ length: NAMESPACES_PER_SCOPE }, (_, i) => `${a.name}/ns-${i}`), `${a.name}/ns-0#video`].join(",");
        check(
          e.seq === expected.length + 1 && routes === want,
          `the lapse is pushed as one invalidation of ${want} (got ${JSON.stringify(e)})`,
        );
        console.log(
          `watch: the lapse was pushed ${ms(pushedAt - victim.lastBeat)} after the last heartbeat, naming its ${want.split(",").length} routes`,
        );
        watcher.close();
      }
      console.log(
        `round ${round + 1}: ${victim.name}'s state purged ${ms(t)} after its last heartbeat (lease TTL ${LEASE_TTL_MS} ms, limit ${PURGE_LIMIT_MS} ms)`,
      );
      // a reads only (reads never touch a lease), so it can watch b even after its own purge.
      await expectAll(a, b, `round ${round + 1}, after the purge`);
    }
    await expectAll(a, b, "at the end");
    console.log("relay-b, still heartbeating, kept all its state");
    if (times.length > 1) {
      const sorted = [...times].sort((x, y) => x - y);
      console.log(
        `purge after last heartbeat over ${times.length} rounds: min ${ms(sorted[0])}, median ${ms(sorted[Math.floor(sorted.length / 2)])}, max ${ms(sorted.at(-1))}`,
      );
    }
    console.log("lifetimes e2e: ok");
  } finally {
    for (const r of relays) await r.stop();
    await worker.stop();
    rmSync(state, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err.message ?? err);
  process.exit(1);
});
