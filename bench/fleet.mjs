// A fleet of simulated relays against one moq-worker (issue 27): N relays on
// the built bundle on bare workerd, each as the edge runs: its lease on the
// lease socket (GET /v1/lease: a HeartbeatRequest on opening and every
// --beat-every seconds, the text frame "ping" every --ping-every seconds),
// watch sockets (GET /v1/watch) on one popular scope every relay watches and
// --own-scopes scopes of its own (each shared by about --relays-per-scope
// relays, pinged like the lease socket), and a coordinator call every
// --op-every seconds from the soak's call mix (test/soak/relays.mjs MIX):
// in its own scopes any call of the mix, in the popular scope (with
// probability --popular-share) the mix's reads only: a scope every relay
// watches is read by all and written by few, here by one publisher.
//
// Measured per relay count, over a steady window of --seconds: the Worker's
// requests per second, object calls per second by class and for the busiest
// objects by name (GET /metrics: moq_worker_object_calls_total and
// moq_worker_object_calls_top, src/metrics/billing.ts), workerd's CPU
// (/proc, one process) and RSS. Then, with the fleet still running, the fan-out
// of a change: --changes RegisterNamespace calls in the popular scope (N
// watchers), one at a time, each timed from the call to its invalidation on
// every watcher socket, and the workerd CPU above the steady rate per change;
// the same in an unwatched scope (the change without fan-out) and in one of
// the small scopes (the propagation of a change nobody queues behind).
//
// 10,000 relays do not fit on the machine this was written on (2 cores shared
// with other work; 20,000 file descriptors per process, a hard limit, and workerd
// holds 2 per socket and 3 per Durable Object: about 1,700 relays of 4 sockets).
// A relay count that cannot fit is not run (--force tries anyway), and says why.
// Figures at 10,000 are extrapolated from the two largest relay counts of the
// run: loads on the line through them (per relay with one count); the
// fan-out's CPU on the line through the unwatched scope (0 watchers) and the
// popular scope (N); its propagation as measured at N plus, per watcher more on
// a branch (WATCH_BRANCHES send in parallel), the pace at which the frames of
// one change reached the sockets; the output and the JSON say which.
//
// The simulated relays are one Node process holding plain TCP WebSockets
// (bench/lib/raw-ws.mjs), pinned to CPU 1 with workerd on CPU 0 (--no-pin:
// neither pinned). Results: bench/results/latest.json under `fleet` (rows of
// earlier runs at other relay counts are kept).
//
//   npm run bench:fleet -- --relays 100,300,1000 [--seconds 30] [--ping-every 1] [--op-every 30]
//     [--beat-every 30] [--popular-share 0.25] [--own-scopes 2] [--relays-per-scope 10] [--changes 50]
//     [--unwatched-own (2 sockets a relay: lease + popular)] [--no-pin] [--verbose] [--no-save] [--out FILE]
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { registerTypeScriptHooks } from "../bin/ts-hooks.mjs";
import { ns } from "../test/e2e/lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, startWorker } from "../test/e2e/lib/worker.mjs";
import { MIX, ROOMS } from "../test/soak/relays.mjs";
import { workerCounters } from "./cost.mjs";
import { benchArgs, positiveNumber } from "./lib/args.mjs";
import { percentile, pool, send } from "./lib/load.mjs";
import { frame, OP, openRawSocket } from "./lib/raw-ws.mjs";
import { buildBundle, cpuMs, rssMiB } from "./lib/systems.mjs";
import { renderFleet } from "./report.mjs";

registerTypeScriptHooks();
const { create, fromBinary, toBinary } = await import("@bufbuild/protobuf");
const { HeartbeatRequestSchema, HeartbeatResponseSchema } = await import("../src/gen/moqworker/v1/coordinator_pb.ts");

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
const TARGET = 10_000;
/** The Worker's default WATCH_BRANCHES (wrangler.toml): objects a scope's watch sockets are spread over. */
const { SETTINGS } = await import("../src/settings.ts");
const BRANCHES = SETTINGS.WATCH_BRANCHES.default;
const { branchIndex } = await import("../src/watch/branches.ts");

// ---- options --------------------------------------------------------------------

const v = benchArgs({
  relays: { type: "string", default: "100,300,1000" },
  seconds: { type: "string" },
  "ping-every": { type: "string" },
  "beat-every": { type: "string" },
  "op-every": { type: "string" },
  "popular-share": { type: "string" },
  "own-scopes": { type: "string" },
  "relays-per-scope": { type: "string" },
  changes: { type: "string" },
  "branch-share": { type: "string" },
  "no-pin": { type: "boolean", default: false },
  "no-save": { type: "boolean", default: false },
  "unwatched-own": { type: "boolean", default: false },
  force: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  out: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
});
if (v.help) {
  console.log(
    readFileSync(fileURLToPath(import.meta.url), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("//"))
      .join("\n"),
  );
  process.exit(0);
}
const P = {
  relayCounts: v.relays.split(",").map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 2) {
      console.error(`error: --relays takes whole numbers of at least 2, comma-separated; got '${x}'`);
      process.exit(2);
    }
    return n;
  }),
  windowSec: positiveNumber(v, "seconds", 30),
  pingEverySec: positiveNumber(v, "ping-every", 1),
  beatEverySec: positiveNumber(v, "beat-every", 30),
  opEverySec: positiveNumber(v, "op-every", 30),
  popularShare: Number(v["popular-share"] ?? 0.25),
  ownScopesPerRelay: positiveNumber(v, "own-scopes", 2),
  relaysPerOwnScope: positiveNumber(v, "relays-per-scope", 10),
  changes: positiveNumber(v, "changes", 50),
  // One branch's share of a scope watched by 10,000 relays (0: not measured).
  branchShare: v["branch-share"] === "0" ? 0 : positiveNumber(v, "branch-share", TARGET / BRANCHES),
  unwatchedChanges: 20,
  smallScopeChanges: 20,
  watchOwn: !v["unwatched-own"],
  force: v.force,
  pin: !v["no-pin"],
  workerdCpu: "0",
  loadCpu: "1",
};
if (!(P.popularShare >= 0 && P.popularShare <= 1)) {
  console.error("error: --popular-share must be between 0 and 1");
  process.exit(2);
}
const OUT = v.out ?? join(HERE, "results", "latest.json");
// The edge's lease: LEASE_TTL_MS 10 s by default; a relay on the socket is heard at each ping.
const LEASE_TTL_SEC = 10;
if (P.pingEverySec >= LEASE_TTL_SEC / 2) {
  console.error(`error: --ping-every must be well under the lease TTL (${LEASE_TTL_SEC} s): the relay is heard at its pings`);
  process.exit(2);
}

const started = Date.now();
const log = (...m) => console.error(`[fleet ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s]`, ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 1) => (x === undefined || !Number.isFinite(x) ? undefined : +x.toFixed(d));

// ---- the machine's limits ---------------------------------------------------------

/** The soft limit on open files of this process (workerd, started from it, inherits it). */
function fdLimit() {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return m ? Number(m[1]) : Infinity;
}

function ephemeralPorts() {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    return hi - lo + 1;
  } catch {
    return Infinity;
  }
}

/** Open file descriptors of processes (sockets, and each Durable Object's SQLite files in workerd). */
function openFds(pids) {
  let n = 0;
  for (const pid of pids) {
    try {
      n += readdirSync(`/proc/${pid}/fd`).length;
    } catch {}
  }
  return n;
}

/** Milliseconds the processes' threads waited on a run queue for a CPU (/proc schedstat run_delay): CPU they wanted and did not get. */
function runDelayMs(pids) {
  let ns = 0;
  for (const pid of pids) {
    try {
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        try {
          ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[1]);
        } catch {}
      }
    } catch {}
  }
  return ns / 1e6;
}

// ---- calls --------------------------------------------------------------------------

/** Connect JSON calls on a keep-alive pool (a few dozen connections for the whole fleet). */
/** The relay's HeartbeatRequest frame, holding peer list `version` and taking lists in parts, as the edge does. */
function setBeat(r, version) {
  r.peersVersion = version;
  const beat = create(HeartbeatRequestSchema, { epoch: r.epoch, peersVersion: version, peersInParts: true });
  r.beat = frame(OP.binary, Buffer.from(toBinary(HeartbeatRequestSchema, beat)));
}

class Caller {
  constructor(url, sockets = 48) {
    this.base = new URL(url);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  /** → { code: "ok" | Connect code | "http_<status>" | "network", json, ms } */
  async call(service, method, body, headers) {
    const t0 = performance.now();
    let res;
    try {
      res = await send(this.agent, this.base, {
        method: "POST",
        path: `/moqworker.v1.${service}/${method}`,
        headers: { "content-type": "application/json", ...headers },
        body: Buffer.from(JSON.stringify(body)),
      });
    } catch (e) {
      return { code: "network", json: { message: String(e?.message ?? e) }, ms: performance.now() - t0 };
    }
    const ms = performance.now() - t0;
    let json;
    try {
      json = JSON.parse(res.body.toString() || "{}");
    } catch {
      json = {};
    }
    return { code: res.status === 200 ? "ok" : (json.code ?? `http_${res.status}`), json, ms };
  }

  /**
   * call(), tried again (up to 3 times) when the connection failed (a kept-alive connection the
   * server closed as the request left) or the object shed it (unavailable): for the set-up's
   * writes and the timed changes, which must land.
   */
  async callLanding(service, method, body, headers) {
    for (let attempt = 1; ; attempt++) {
      const res = await this.call(service, method, body, headers);
      if (attempt >= 4 || (res.code !== "network" && res.code !== "unavailable")) return res;
      await sleep(100 * attempt);
    }
  }

  destroy() {
    this.agent.destroy();
  }
}

// ---- the call mix (the soak's weights) ------------------------------------------------

const READS = new Set(["lookup", "lookupTrack", "lookupNamespaceSubscribers", "lookupTrackSubscribers"]);
const weighted = (mix) => {
  const total = mix.reduce((a, [, w]) => a + w, 0);
  return () => {
    let x = Math.random() * total;
    for (const [name, w] of mix) {
      x -= w;
      if (x < 0) return name;
    }
    return mix[0][0];
  };
};
const pickAny = weighted(MIX);
const pickRead = weighted(MIX.filter(([name]) => READS.has(name)));
const room = () => `room-${Math.floor(Math.random() * ROOMS)}`;
const track = () => (Math.random() < 0.5 ? "video" : "audio");

// ---- one relay count ----------------------------------------------------------------

const POPULAR = "fleet-popular";
const UNWATCHED = "fleet-unwatched";
/** The scope whose watchers all sit on one branch (--branch-share). */
const SHARE = "fleet-branch-share";
/** Namespaces the publisher holds in the popular scope, so that its lookups hit. */
const PUBLISHED = ROOMS;

/** Whether a WatchEvent frame is the hello (field 2), after its seq (field 1, a varint; absent when 0). */
function isHello(data) {
  let i = 0;
  if (data[0] === 0x08) {
    i = 1;
    while (i < data.length && data[i] & 0x80) i++;
    i++;
  }
  return data[i] === 0x12;
}

async function runFleet(bundle, relays) {
  const watchesPerRelay = 1 + (P.watchOwn ? P.ownScopesPerRelay : 0);
  const sockets = relays * (1 + watchesPerRelay) + P.branchShare;
  const ownScopes = Math.max(1, Math.round((relays * P.ownScopesPerRelay) / P.relaysPerOwnScope));
  // Relays', scopes' (own, popular, unwatched), their watch branches, the peer shards, the lease clocks, the directory.
  const branches = (P.watchOwn ? ownScopes * Math.min(BRANCHES, P.relaysPerOwnScope) : 0) + Math.min(BRANCHES, relays);
  const objects = relays + ownScopes + 3 + branches + 1 + SETTINGS.PEER_SHARDS.default + SETTINGS.LEASE_CLOCKS.default + 1;
  const fds = fdLimit();
  const ports = ephemeralPorts();
  // Both ends of every socket are on this machine. This process holds a descriptor and an
  // ephemeral port per socket; workerd two descriptors per connection (as measured: 810 for
  // 400 sockets) and three per Durable Object it has opened (SQLite: the database, -wal, -shm).
  const workerdFds = 2 * sockets + 3 * objects + 100;
  const limit = [
    workerdFds > fds &&
      `workerd would need about ${workerdFds.toLocaleString("en-US")} file descriptors (2 per socket for ${sockets.toLocaleString("en-US")} sockets, 3 per Durable Object for ${objects.toLocaleString("en-US")} objects): the limit is ${fds.toLocaleString("en-US")} (ulimit -n, the hard limit here; raising it is not permitted)`,
    sockets + 100 > fds &&
      `${sockets.toLocaleString("en-US")} sockets need as many file descriptors in the simulator: the limit is ${fds.toLocaleString("en-US")}`,
    sockets + 100 > ports &&
      `${sockets.toLocaleString("en-US")} sockets need as many ephemeral ports on 127.0.0.1: ${ports.toLocaleString("en-US")} (ip_local_port_range)`,
  ].filter(Boolean);
  const shape = { pingEverySec: P.pingEverySec, opEverySec: P.opEverySec, watchesPerRelay };
  if (limit.length && !P.force) {
    const reason = limit.join("; ");
    log(`${relays} relays: not run: ${reason} (--force to try anyway)`);
    return { relays, ...shape, notRun: reason };
  }

  const w = await startWorker({ mode: "workerd", bundle, cpus: P.pin ? P.workerdCpu : undefined });
  const stopWorkerd = () => w.stop();
  cleanups.push(stopWorkerd);
  const caller = new Caller(w.url);
  const port = Number(new URL(w.url).port);
  const tag = randomBytes(3).toString("hex");
  const stats = {
    pongs: 0,
    beatsSent: 0,
    beatsAnswered: 0,
    beatMs: [],
    /** Bytes of beat answers and ListPeers pages: what the peer list costs on the wire. */
    peerBytes: 0,
    peerPages: 0,
    leaseCloses: {},
    watchCloses: {},
    invalidations: 0,
    openRetries: {},
    openRetriesLogged: 0,
    networkLogged: 0,
    ops: {},
    opCodes: {},
    opMs: [],
    measuring: false,
  };
  const fleet = [];
  const slots = []; // every socket to ping: { ws }
  let stopping = false;
  const timers = [];
  const tracked = new Map(); // scope → { marker: Buffer, count, last, done } for the change in flight
  let rssMax = 0;
  let sample = { at: performance.now(), cpu: cpuMs(w.pids()), client: process.cpuUsage(), n: 0 };
  const rssTimer = setInterval(() => {
    rssMax = Math.max(rssMax, rssMiB(w.pids()));
    // Every 5 s with --verbose: how busy workerd and the simulator are.
    if (!v.verbose || ++sample.n % 5 !== 0) return;
    const now = { at: performance.now(), cpu: cpuMs(w.pids()), client: process.cpuUsage(), n: sample.n };
    const c = process.cpuUsage(sample.client);
    const span = now.at - sample.at;
    log(
      `${relays} relays: workerd CPU ${((100 * (now.cpu - sample.cpu)) / span).toFixed(0)}%, simulator ${((100 * (c.user + c.system)) / 1000 / span).toFixed(0)}%, workerd RSS ${rssMiB(w.pids())} MiB, workerd open files ${openFds(w.pids())}, sockets ${slots.length}`,
    );
    sample = now;
  }, 1000);
  timers.push(rssTimer);

  /** A socket opened during set-up, tried again (up to 5 times, backing off) when the connection fails; counted. */
  const retried = async (what, open) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await open();
      } catch (e) {
        if (attempt >= 5 || e.status !== undefined) throw e;
        stats.openRetries[e.code ?? e.message] = (stats.openRetries[e.code ?? e.message] ?? 0) + 1;
        if (stats.openRetriesLogged++ < 3) log(`${relays} relays: ${what}: ${e.message}; again`);
        await sleep(200 * 2 ** attempt * Math.random());
      }
    }
  };
  /** Opens a socket again after a jitter of up to `jitterMs`, until it is open or the run ends. */
  const reopen = (open, jitterMs) =>
    setTimeout(() => {
      if (!stopping) open().catch(() => reopen(open, jitterMs));
    }, Math.random() * jitterMs);
  const closeAll = () => {
    stopping = true;
    for (const t of timers) clearInterval(t);
    for (const r of fleet) {
      clearTimeout(r.opTimer);
      r.lease?.sock.destroy();
      for (const wt of r.watches) wt.ws?.sock.destroy();
    }
  };

  try {
    // Tokens, one per relay (AdminService/CreateRelayToken, as an operator issues them).
    const admin = { authorization: `Bearer ${DEV_ADMIN_TOKEN}` };
    let t = performance.now();
    for (let i = 0; i < relays; i++) {
      const url = `https://fleet-${i}.relay.test/`;
      const own = Array.from({ length: P.ownScopesPerRelay }, (_, j) => `fleet-s${(i * P.ownScopesPerRelay + j) % ownScopes}`);
      fleet.push({ i, url, epoch: `${tag}-${i}`, own: [...new Set(own)], watches: [], held: [], opTimer: undefined });
    }
    await pool(fleet, 16, async (r) => {
      const res = await caller.callLanding("AdminService", "CreateRelayToken", { relayUrl: r.url }, admin);
      if (res.code !== "ok") throw new Error(`CreateRelayToken ${r.url}: ${res.code} ${res.json.message}`);
      r.token = res.json.token;
      r.auth = { authorization: `Bearer ${r.token}`, "moq-relay-epoch": r.epoch };
      setBeat(r, 0n);
    });
    const tokensSec = (performance.now() - t) / 1000;
    log(`${relays} relays: ${relays} relay tokens in ${tokensSec.toFixed(1)} s`);

    // Pings and beats: each socket pinged once per --ping-every and each relay beating once per
    // --beat-every, spread evenly over the period (independent relays' timers would be), from
    // the first socket on: a relay on the socket is heard at its pings.
    const TICK_MS = 20;
    const roundRobin = (list, periodMs, act) => {
      let cursor = 0;
      let carry = 0;
      let last = performance.now();
      timers.push(
        setInterval(() => {
          const items = list();
          const now = performance.now();
          carry += (items.length * (now - last)) / periodMs;
          last = now;
          for (; carry >= 1; carry--) {
            act(items[cursor % items.length]);
            cursor++;
          }
        }, TICK_MS),
      );
    };
    roundRobin(
      () => slots,
      P.pingEverySec * 1000,
      (s) => s.ws.ping(),
    );
    const beatOrder = [...fleet].sort(() => Math.random() - 0.5);
    roundRobin(
      () => beatOrder,
      P.beatEverySec * 1000,
      (r) => {
        if (!r.lease?.isOpen) return;
        r.beatSentAt = performance.now();
        r.lease.sendFrame(r.beat);
        stats.beatsSent++;
      },
    );

    // A beat answer's peer list, taken as the edge takes it: the version held is sent back with
    // the next beat; a list in pages is read with ListPeers before its version is held.
    const takePeers = async (r, data) => {
      stats.peerBytes += data.length;
      const reply = fromBinary(HeartbeatResponseSchema, data);
      if (reply.peersUnchanged || reply.peersVersion === r.peersVersion) return;
      let after = reply.peers.at(-1)?.url ?? "";
      for (let more = reply.peersMore; more; ) {
        const page = await caller.callLanding(
          "CoordinatorService",
          "ListPeers",
          { peersVersion: String(reply.peersVersion), after },
          r.auth,
        );
        if (page.code !== "ok") return;
        stats.peerPages++;
        stats.peerBytes += JSON.stringify(page.json).length;
        after = page.json.peers?.at(-1)?.url ?? after;
        more = page.json.more === true;
      }
      setBeat(r, reply.peersVersion);
    };

    // Lease sockets: the first HeartbeatRequest on opening, answered before the relay calls anything.
    const openLease = (r) =>
      new Promise((resolve, reject) => {
        let first = true;
        openRawSocket({
          port,
          path: "/v1/lease",
          headers: r.auth,
          onMessage: (_data, text) => {
            if (text) {
              stats.pongs++;
              return;
            }
            stats.beatsAnswered++;
            takePeers(r, _data).catch((e) => log(`${r.url}: peer list: ${e.message}`));
            if (r.beatSentAt !== undefined) {
              if (stats.measuring) stats.beatMs.push(performance.now() - r.beatSentAt);
              r.beatSentAt = undefined;
            }
            if (first) {
              first = false;
              resolve();
            }
          },
          onClose: (code) => {
            if (first) return reject(new Error(`lease socket of ${r.url} closed ${code} before its first answer`));
            if (stopping) return;
            stats.leaseCloses[code] = (stats.leaseCloses[code] ?? 0) + 1;
            // Back within the close grace, as the edge is (and again while refused).
            reopen(() => openLease(r), 500);
          },
        }).then((ws) => {
          r.lease = ws;
          r.leaseSlot ??= slots.push({ ws }) - 1;
          slots[r.leaseSlot].ws = ws;
          r.beatSentAt = performance.now();
          ws.sendFrame(r.beat);
          stats.beatsSent++;
        }, reject);
      });
    // Each relay opens its lease socket (the first HeartbeatRequest answered before it calls
    // anything), then, as a fleet in its steady state, holds a namespace in each of its own
    // scopes: its first write in a scope enlists it there, and the directory hears of it once.
    // Relays start 48 at a time.
    const firstWrite = async (r, scope) => {
      const body = { scope, namespace: ns(`live/r${r.i}`) };
      const res = await caller.callLanding("CoordinatorService", "RegisterNamespace", body, r.auth);
      if (res.code !== "ok") throw new Error(`RegisterNamespace in ${scope}: ${res.code} ${res.json.message}`);
      r.held.push({ kind: "ns", scope, body, keep: true });
    };
    t = performance.now();
    await pool(fleet, 48, async (r) => {
      await retried(`lease socket of ${r.url}`, () => openLease(r));
      for (const scope of r.own) await firstWrite(r, scope);
    });
    const leasesSec = (performance.now() - t) / 1000;
    log(
      `${relays} relays: ${relays} lease sockets open and answered, a namespace in each of ${P.ownScopesPerRelay} own scopes, in ${leasesSec.toFixed(1)} s`,
    );

    // The publisher (relay 0) holds namespaces in the popular scope before anyone watches it.
    const pub = fleet[0];
    for (let k = 0; k < PUBLISHED; k++) {
      const res = await caller.callLanding(
        "CoordinatorService",
        "RegisterNamespace",
        { scope: POPULAR, namespace: ns(`room-${k}/pub`) },
        pub.auth,
      );
      if (res.code !== "ok") throw new Error(`RegisterNamespace in ${POPULAR}: ${res.code} ${res.json.message}`);
    }

    // Watch sockets: the popular scope and the relay's own, each greeted with a hello.
    const openWatch = (r, wt) =>
      new Promise((resolve, reject) => {
        let greeted = false;
        openRawSocket({
          port,
          path: `/v1/watch?scope=${encodeURIComponent(wt.scope)}`,
          headers: { authorization: r.auth.authorization },
          onMessage: (data, text) => {
            if (text) {
              stats.pongs++;
              return;
            }
            if (!greeted) {
              greeted = isHello(data);
              if (greeted) resolve();
              return;
            }
            stats.invalidations++;
            const c = tracked.get(wt.scope);
            if (c && data.indexOf(c.marker) >= 0) {
              c.count++;
              c.last = performance.now();
              c.arrivals.push(c.last - c.t0);
              if (c.count === c.watchers) c.done();
            }
          },
          onClose: (code) => {
            if (!greeted) return reject(new Error(`watch socket of ${r.url} on ${wt.scope} closed ${code} before its hello`));
            if (stopping) return;
            stats.watchCloses[code] = (stats.watchCloses[code] ?? 0) + 1;
            reopen(() => openWatch(r, wt), 1000);
          },
        }).then((ws) => {
          wt.ws = ws;
          wt.slot ??= slots.push({ ws }) - 1;
          slots[wt.slot].ws = ws;
        }, reject);
      });
    const watches = [];
    for (const r of fleet) {
      for (const scope of [POPULAR, ...(P.watchOwn ? r.own : [])]) {
        const wt = { scope };
        r.watches.push(wt);
        watches.push([r, wt]);
      }
    }
    t = performance.now();
    await pool(watches, 64, ([r, wt]) => retried(`watch socket of ${r.url} on ${wt.scope}`, () => openWatch(r, wt)));
    const watchesSec = (performance.now() - t) / 1000;
    const watchersOf = (scope) => watches.filter(([, wt]) => wt.scope === scope).length;
    log(`${relays} relays: ${watches.length} watch sockets open (${ownScopes} own scopes) in ${watchesSec.toFixed(1)} s`);

    // Calls: one per --op-every per relay (jittered ±50%), from the soak's mix.
    const act = async (r) => {
      const popular = Math.random() < P.popularShare;
      const scope = popular ? POPULAR : r.own[Math.floor(Math.random() * r.own.length)];
      const what = popular ? pickRead() : pickAny();
      const mine = `${room()}/r${r.i}`;
      // Another relay of the fleet's name: reads of the popular scope hit the publisher's.
      const other = popular ? `${room()}/pub` : `${room()}/r${Math.floor(Math.random() * relays)}`;
      const heldOf = (kind) => r.held.find((h) => h.kind === kind && h.scope === scope && !h.keep);
      const hold = (kind, body) => r.held.push({ kind, scope, body });
      const drop = (h) => r.held.splice(r.held.indexOf(h), 1);
      let method;
      let body;
      let after;
      switch (what) {
        case "registerNamespace":
          [method, body] = ["RegisterNamespace", { scope, namespace: ns(mine) }];
          after = () => hold("ns", body);
          break;
        case "registerTrack":
          [method, body] = ["RegisterTrack", { scope, namespace: ns(mine), track: track() }];
          after = () => hold("track", body);
          break;
        case "subscribeNamespace":
          [method, body] = ["SubscribeNamespace", { scope, prefix: ns(room()) }];
          after = () => hold("nssub", body);
          break;
        case "subscribeTrack":
          [method, body] = ["SubscribeTrack", { scope, namespace: ns(other), track: "in" }];
          after = () => hold("tracksub", body);
          break;
        case "unregisterNamespace":
        case "unregisterTrack":
        case "unsubscribeNamespace":
        case "unsubscribeTrack": {
          const kind = { unregisterNamespace: "ns", unregisterTrack: "track", unsubscribeNamespace: "nssub", unsubscribeTrack: "tracksub" }[
            what
          ];
          const h = heldOf(kind);
          method = what[0].toUpperCase() + what.slice(1);
          body = h?.body ?? {
            scope,
            namespace: ns(mine),
            ...(kind === "track" ? { track: track() } : {}),
            ...(kind === "tracksub" ? { track: "in" } : {}),
          };
          if (kind === "nssub" && !h) body = { scope, prefix: ns(room()) };
          after = () => h && drop(h);
          break;
        }
        case "lookup":
          [method, body] = ["Lookup", { scope, namespace: ns(other) }];
          break;
        case "lookupTrack":
          [method, body] = ["LookupTrack", { scope, namespace: ns(other), track: track() }];
          break;
        case "lookupNamespaceSubscribers":
          [method, body] = ["LookupNamespaceSubscribers", { scope, namespace: ns(other) }];
          break;
        case "lookupTrackSubscribers":
          [method, body] = ["LookupTrackSubscribers", { scope, namespace: ns(other), track: "in" }];
          break;
      }
      const res = await caller.call("CoordinatorService", method, body, r.auth);
      if (res.code === "ok") after?.();
      if (res.code === "network" && stats.measuring && stats.networkLogged++ < 3) log(`${relays} relays: ${method}: ${res.json.message}`);
      if (!stats.measuring) return;
      const key = `${method}${popular ? " (popular)" : ""}`;
      stats.ops[key] = (stats.ops[key] ?? 0) + 1;
      stats.opCodes[res.code] = (stats.opCodes[res.code] ?? 0) + 1;
      stats.opMs.push(res.ms);
    };
    const schedule = (r, first) => {
      const ms = first ? Math.random() * P.opEverySec * 1000 : P.opEverySec * 1000 * (0.5 + Math.random());
      r.opTimer = setTimeout(async () => {
        if (stopping) return;
        await act(r).catch(() => {});
        if (!stopping) schedule(r, false);
      }, ms);
    };
    for (const r of fleet) schedule(r, true);

    // ---- the steady window ----
    const settleMs = Math.min(10_000, 3000 + relays);
    log(`${relays} relays: settling ${(settleMs / 1000).toFixed(0)} s, then measuring ${P.windowSec} s`);
    await sleep(settleMs);
    const c0 = await workerCounters(w.url);
    const cpu0 = cpuMs(w.pids());
    const wait0 = runDelayMs(w.pids());
    const client0 = process.cpuUsage();
    const pongs0 = stats.pongs;
    const beats0 = stats.beatsAnswered;
    const inv0 = stats.invalidations;
    const peerBytes0 = stats.peerBytes;
    const peerPages0 = stats.peerPages;
    stats.measuring = true;
    const t0 = performance.now();
    await sleep(P.windowSec * 1000);
    const c1 = await workerCounters(w.url);
    const cpu1 = cpuMs(w.pids());
    const wait1 = runDelayMs(w.pids());
    const seconds = (performance.now() - t0) / 1000;
    stats.measuring = false;
    const client = process.cpuUsage(client0);
    const perSec = (x) => round(x / seconds, 1);
    const classes = [...new Set([...Object.keys(c0.calls), ...Object.keys(c1.calls)])];
    const objectReqPerSecByClass = Object.fromEntries(classes.map((k) => [k, perSec((c1.calls[k] ?? 0) - (c0.calls[k] ?? 0))]));
    // The busiest objects by name. Listed in both scrapes with the same space-saving error: the
    // increase is its calls in the window. Replaced and listed again meanwhile (its error changed),
    // or listed only at the end: it entered during the window, and count − error is a lower bound
    // of its calls since (marked `atLeast`). An object dropped from the list by the end is not named.
    const topObjects = c1.top
      .map((e) => {
        const before = c0.top.find((x) => x.class === e.class && x.object === e.object);
        if (before && before.error === e.error) return { class: e.class, object: e.object, reqPerSec: perSec(e.count - before.count) };
        return { class: e.class, object: e.object, reqPerSec: perSec(e.count - e.error), atLeast: true };
      })
      .sort((a, b) => b.reqPerSec - a.reqPerSec)
      .slice(0, 5);
    // One scrape is inside the window (the second): not the fleet's request.
    const workerReqPerSec = perSec(c1.units.worker_requests - c0.units.worker_requests - 1);
    const cpuMsPerSec = (cpu1 - cpu0) / seconds;
    stats.beatMs.sort((a, b) => a - b);
    stats.opMs.sort((a, b) => a - b);
    const steady = {
      windowSec: round(seconds, 1),
      workerReqPerSec,
      objectReqPerSec: perSec(c1.units.object_requests - c0.units.object_requests),
      objectReqPerSecByClass,
      alarmsPerSec: perSec(c1.units.object_alarms - c0.units.object_alarms),
      wsMessagesInPerSec: perSec(c1.units.websocket_messages_in - c0.units.websocket_messages_in),
      rowsReadPerSec: perSec(c1.units.rows_read - c0.units.rows_read),
      rowsWrittenPerSec: perSec(c1.units.rows_written - c0.units.rows_written),
      hottestObject: topObjects[0],
      topObjects,
      workerdCpuPct: round(cpuMsPerSec / 10, 1),
      workerdCpuMsPerRelaySec: round(cpuMsPerSec / relays, 3),
      // Time workerd's threads were ready to run but waited for a CPU (other work on the machine shares it).
      workerdWaitedForCpuPct: round((wait1 - wait0) / seconds / 10, 1),
      clientCpuPct: round((client.user + client.system) / 1000 / seconds / 10, 1),
      pongsPerSec: perSec(stats.pongs - pongs0),
      beatsAnsweredPerSec: perSec(stats.beatsAnswered - beats0),
      beatP50Ms: round(percentile(stats.beatMs, 50), 1),
      beatP99Ms: round(percentile(stats.beatMs, 99), 1),
      callsPerSec: perSec(stats.opMs.length),
      callP50Ms: round(percentile(stats.opMs, 50), 1),
      callP99Ms: round(percentile(stats.opMs, 99), 1),
      callsByMethod: stats.ops,
      callCodes: stats.opCodes,
      invalidationsPerSec: perSec(stats.invalidations - inv0),
      peerBytesPerSec: perSec(stats.peerBytes - peerBytes0),
      peerPagesPerSec: perSec(stats.peerPages - peerPages0),
    };
    log(
      `${relays} relays: steady: Worker ${workerReqPerSec} req/s, objects ${steady.objectReqPerSec} req/s, hottest ${steady.hottestObject?.object} ${steady.hottestObject?.reqPerSec} req/s, workerd CPU ${steady.workerdCpuPct}% (waited ${steady.workerdWaitedForCpuPct}%), client CPU ${steady.clientCpuPct}%, call answers ${JSON.stringify(steady.callCodes)}, sockets closed ${JSON.stringify({ lease: stats.leaseCloses, watch: stats.watchCloses })}, load average ${os.loadavg()[0].toFixed(2)}`,
    );

    // ---- the fan-out of a change: the fleet keeps running; the steady CPU rate is taken out ----
    const changeSeries = async (scope, count, label) => {
      const watchers = scope === UNWATCHED ? 0 : watchersOf(scope);
      const all = [];
      const arrivals = [];
      const spreads = [];
      const callMs = [];
      let incomplete = 0;
      const cpuStart = cpuMs(w.pids());
      const tStart = performance.now();
      for (let k = 0; k < count; k++) {
        const name = `fleetpub-${label}-${tag}-${k}`;
        const c = { marker: Buffer.from(name), watchers, count: 0, last: 0, arrivals: [], t0: 0, done: () => {} };
        const allThere = new Promise((r) => {
          c.done = r;
        });
        tracked.set(scope, c);
        c.t0 = performance.now();
        const res = await caller.callLanding("CoordinatorService", "RegisterNamespace", { scope, namespace: ns(name) }, pub.auth);
        if (res.code !== "ok") throw new Error(`RegisterNamespace in ${scope}: ${res.code} ${res.json.message}`);
        callMs.push(res.ms);
        if (watchers > 0) {
          let timer;
          const inTime = await Promise.race([
            allThere.then(() => true),
            new Promise((r) => {
              timer = setTimeout(() => r(false), 30_000);
            }),
          ]);
          clearTimeout(timer);
          if (inTime) {
            all.push(c.last - c.t0);
            // From the first socket's frame to the last one's: the object sends them in turn.
            if (watchers > 1) spreads.push((c.last - c.t0 - Math.min(...c.arrivals)) / (watchers - 1));
          } else incomplete++;
          arrivals.push(...c.arrivals);
        }
        tracked.delete(scope);
      }
      const durationMs = performance.now() - tStart;
      const cpu = cpuMs(w.pids()) - cpuStart;
      all.sort((a, b) => a - b);
      arrivals.sort((a, b) => a - b);
      callMs.sort((a, b) => a - b);
      spreads.sort((a, b) => a - b);
      const marginal = (cpu - (cpuMsPerSec * durationMs) / 1000) / count;
      return {
        scope,
        watchers,
        changes: count,
        incomplete,
        // workerd CPU per change above the fleet's steady rate (the change, its frames, and the client's reading of them is not in it).
        cpuMsPerChange: round(Math.max(0, marginal), 2),
        cpuMsPerChangeRaw: round(cpu / count, 2),
        callP50Ms: round(percentile(callMs, 50), 1),
        propagationP50Ms: round(percentile(all, 50), 1),
        propagationP99Ms: round(percentile(all, 99), 1),
        slowestMs: all.slice(-3).map((x) => round(x, 1)),
        perSocketP50Ms: round(percentile(arrivals, 50), 1),
        perSocketP99Ms: round(percentile(arrivals, 99), 1),
        // Median over changes of (last socket's arrival − first's) / (watchers − 1).
        perSocketSpreadUs: watchers > 1 ? round(percentile(spreads, 50) * 1000, 1) : undefined,
      };
    };
    log(
      `${relays} relays: changes: ${P.unwatchedChanges} in an unwatched scope, ${P.smallScopeChanges} in a small scope, ${P.changes} in the popular scope`,
    );
    const unwatched = await changeSeries(UNWATCHED, P.unwatchedChanges, "u");
    const small = await changeSeries(pub.own[0], P.smallScopeChanges, "s");
    const popular = await changeSeries(POPULAR, P.changes, "p");
    log(
      `${relays} relays: fan-out to ${popular.watchers}: ${popular.cpuMsPerChange} ms CPU per change (unwatched ${unwatched.cpuMsPerChange}), every socket p50 ${popular.propagationP50Ms} ms p99 ${popular.propagationP99Ms} ms`,
    );
    // One branch's share of a scope watched by 10,000 relays, under the same load: watchers whose
    // URLs all hash to one branch. On Cloudflare each of a scope's branches is an object of its
    // own, and all of them do this at once; here they would share workerd's one thread.
    let branchShare;
    if (P.branchShare > 0) {
      const sharers = [];
      for (let i = 0; sharers.length < P.branchShare; i++) {
        const url = `https://fleet-share-${i}.relay.test/`;
        if (branchIndex(url, BRANCHES) === 0) sharers.push({ url, watches: [] });
      }
      await pool(sharers, 16, async (r) => {
        const res = await caller.callLanding("AdminService", "CreateRelayToken", { relayUrl: r.url }, admin);
        if (res.code !== "ok") throw new Error(`CreateRelayToken ${r.url}: ${res.code} ${res.json.message}`);
        r.auth = { authorization: `Bearer ${res.json.token}` };
        const wt = { scope: SHARE };
        r.watches.push(wt);
        fleet.push(r);
        watches.push([r, wt]);
        await retried(`watch socket of ${r.url} on ${SHARE}`, () => openWatch(r, wt));
      });
      branchShare = await changeSeries(SHARE, P.changes, "b");
      log(
        `${relays} relays: one branch of ${P.branchShare} watchers: ${branchShare.cpuMsPerChange} ms CPU per change, every socket p50 ${branchShare.propagationP50Ms} ms p99 ${branchShare.propagationP99Ms} ms`,
      );
    }
    const closes = (m) => Object.values(m).reduce((a, b) => a + b, 0);
    const loadavg = os.loadavg().map((x) => +x.toFixed(2));
    // Where this machine stops: workerd runs the Worker and every object on one thread.
    const limits = [
      steady.workerdCpuPct + steady.workerdWaitedForCpuPct >= 85 &&
        `workerd ran ${steady.workerdCpuPct}% of the time and waited for a CPU ${steady.workerdWaitedForCpuPct}% more`,
      steady.clientCpuPct >= 85 && `the simulator at ${steady.clientCpuPct}% of a core`,
      steady.beatP50Ms > 100 && `beats answered at p50 ${steady.beatP50Ms} ms, calls at ${steady.callP50Ms} ms`,
      popular.incomplete > 0 && `${popular.incomplete} changes not on every socket within 30 s`,
      closes(stats.leaseCloses) + closes(stats.watchCloses) > 0 && "sockets closed by the Worker",
    ].filter(Boolean);
    return {
      relays,
      ...shape,
      measuredAt: new Date().toISOString(),
      loadavgAtEnd: loadavg,
      ...(limits.length ? { saturated: limits.join("; ") } : {}),
      sockets: {
        lease: relays,
        watch: watches.length,
        ownScopes,
        popularWatchers: watchersOf(POPULAR),
        smallScopeWatchers: small.watchers,
      },
      setupSec: {
        tokens: round(tokensSec, 1),
        leasesAndFirstWrites: round(leasesSec, 1),
        watchSockets: round(watchesSec, 1),
      },
      steady,
      workerdRssMiB: rssMax,
      fanOut: { unwatched, small, popular, ...(branchShare ? { branchShare } : {}) },
      openRetries: stats.openRetries,
      socketCloses: { lease: stats.leaseCloses, watch: stats.watchCloses, total: closes(stats.leaseCloses) + closes(stats.watchCloses) },
    };
  } finally {
    closeAll();
    caller.destroy();
    cleanups.splice(cleanups.indexOf(stopWorkerd), 1);
    await w.stop();
  }
}

// ---- extrapolation ------------------------------------------------------------------

/**
 * Figures at 10,000 relays from the largest count of this run: per relay for
 * loads that grow with the fleet; the fan-out's CPU on a line in watchers;
 * the propagation three ways, the largest the headline (see `formulas`).
 * `earlier`: rows of earlier runs (bench/results), for a second point of the
 * same shape.
 */
function extrapolate(rows, earlier = []) {
  const ok = rows.filter((r) => r.steady);
  if (ok.length === 0) return undefined;
  const base = ok.reduce((a, b) => (b.relays > a.relays ? b : a));
  const n = base.relays;
  const measured = n >= TARGET;
  const f = base.fanOut;
  const w = f.popular.watchers;
  // Loads: on the line through the two largest relay counts of this run (of the same shape),
  // so that what does not grow with the fleet (the directory's shard asks, a clock's alarms) is
  // not multiplied; per relay when there is one count. Never below the largest measured.
  const shape = (r) => r.steady && r.pingEverySec === base.pingEverySec && r.watchesPerRelay === base.watchesPerRelay;
  const prev = ok.filter((r) => shape(r) && r.relays < n).reduce((a, b) => (a && a.relays > b.relays ? a : b), undefined);
  const grow = (x, x1) => {
    if (x === undefined) return undefined;
    if (x1 === undefined) return (x / n) * TARGET;
    return Math.max(x, x + ((x - x1) / (n - prev.relays)) * (TARGET - n));
  };
  const per = (x, pick) => grow(x, prev && pick ? pick(prev) : undefined);
  // CPU: a line through 0 watchers and w (never falling: a socket costs something).
  const perWatcherMs = Math.max(0, (f.popular.cpuMsPerChange - f.unwatched.cpuMsPerChange) / w);
  const cpuAt = f.unwatched.cpuMsPerChange + perWatcherMs * TARGET;
  // Propagation, (a) the branches' pace: what was measured at w watchers, plus a frame's turn
  // for each watcher more on a branch (the BRANCHES branches send in parallel on Cloudflare; here
  // they share workerd's one thread, so the measured spacing is already every branch's frames).
  const spreadMs = (f.popular.perSocketSpreadUs ?? 0) / 1000;
  const more = (TARGET - w) / BRANCHES;
  const pace = { p50: f.popular.propagationP50Ms + spreadMs * more, p99: f.popular.propagationP99Ms + spreadMs * more };
  // (c) what one branch must spend before its last frame is out: its share of the per-watcher CPU.
  const branchCpuAt = f.unwatched.cpuMsPerChange + (perWatcherMs * TARGET) / BRANCHES;
  // (d) a change to a small scope under the same fleet load (this machine's queueing, the hop to
  // a branch), plus one branch's share of 10,000 watchers' frames at the measured pace.
  const share =
    f.small?.propagationP99Ms === undefined
      ? undefined
      : {
          p50: f.small.propagationP50Ms + spreadMs * (TARGET / BRANCHES),
          p99: f.small.propagationP99Ms + spreadMs * (TARGET / BRANCHES),
        };
  // (b) the trend on this machine: the line through the two largest watcher counts of the same shape.
  const same = (r) => r.steady && r.pingEverySec === base.pingEverySec && r.watchesPerRelay === base.watchesPerRelay;
  const second = [...ok, ...earlier]
    .filter((r) => same(r) && r.fanOut.popular.watchers < w)
    .reduce((a, b) => (a && a.fanOut.popular.watchers > b.fanOut.popular.watchers ? a : b), undefined)?.fanOut.popular;
  const line = (key) => f.popular[key] + ((f.popular[key] - second[key]) / (w - second.watchers)) * (TARGET - w);
  const trend = second && { p50: line("propagationP50Ms"), p99: line("propagationP99Ms"), from: second.watchers };
  // (e) one branch's share measured: TARGET / BRANCHES watchers on one branch, under this fleet's
  // load. On Cloudflare the scope's branches are objects of their own, each doing its share at once.
  const b = f.branchShare;
  const measuredShare =
    b && b.watchers * BRANCHES >= TARGET && b.incomplete === 0 ? { p50: b.propagationP50Ms, p99: b.propagationP99Ms } : undefined;
  // The headline: (e) when measured, else (a); never below (c). (b) is kept beside it: a line
  // through two noisy tails, 600-odd watchers apart, carried 8,000 further, with this machine's queueing in it.
  const base2 = measuredShare ?? pace;
  const head = { p50: Math.max(base2.p50, branchCpuAt), p99: Math.max(base2.p99, branchCpuAt) };
  // The hottest object at 10,000: each busiest object named at both counts on its own line, the others per relay.
  const named = (r, o) => r?.steady.topObjects?.find((t) => t.class === o.class && t.object === o.object && !t.atLeast);
  const hot = (base.steady.topObjects ?? [base.steady.hottestObject])
    .filter((o) => o && !o.atLeast)
    .map((o) => ({ ...o, at: grow(o.reqPerSec, named(prev, o)?.reqPerSec ?? (prev ? 0 : undefined)) }))
    .reduce((a, b) => (a && a.at >= b.at ? a : b), undefined);
  return {
    from: n,
    basis: measured ? "measured" : "extrapolated",
    formulas: {
      perRelay: prev
        ? `x(10,000) on the line through ${prev.relays} and ${n} relays (requests per second, workerd CPU), never below x(${n}): what grows with the fleet grows on it, what does not (the directory's shard asks, a lease clock's alarms) stays`
        : `x(10,000) = x(${n}) / ${n} × 10,000, for loads that grow with the number of relays (requests per second, workerd CPU): every relay beats, pings and calls at the same rate`,
      fanOutCpu: `cpu(10,000) = a + b × 10,000 on the line through the unwatched scope (0 watchers: a = ${f.unwatched.cpuMsPerChange} ms per change) and the popular scope (${w} watchers: ${f.popular.cpuMsPerChange} ms); b = ${round(perWatcherMs * 1000, 1)} µs per watcher`,
      propagationPace: `(a) p(10,000) = p(${w}) + s × (10,000 − ${w}) / ${BRANCHES}, s = ${f.popular.perSocketSpreadUs} µs the median time between one socket's frame and the next within a change (last arrival − first, over ${w - 1}), each of the ${BRANCHES} branches sending its share of the watchers in parallel, as objects do on Cloudflare: p50 ${round(pace.p50, 0)} ms, p99 ${round(pace.p99, 0)} ms`,
      ...(trend
        ? {
            propagationTrend: `(b) the line through ${trend.from} and ${w} watchers (same fleet shape, this machine, earlier runs included): p50 ${round(trend.p50, 0)} ms, p99 ${round(trend.p99, 0)} ms; it carries the rise of everything else on workerd's one thread with the fleet (alarms, beats, pings of every relay), which the scope's object does not share on Cloudflare`,
          }
        : {}),
      ...(share
        ? {
            propagationBranchShare: `(d) p(10,000) = p(small scope, ${f.small.watchers} watchers, same fleet) + s × 10,000 / ${BRANCHES}: the delivery every scope gets under this load, plus one branch's frames: p50 ${round(share.p50, 0)} ms, p99 ${round(share.p99, 0)} ms`,
          }
        : {}),
      ...(measuredShare
        ? {
            propagationBranchMeasured: `(e) p(10,000) = p(one branch of ${b.watchers} watchers, measured under this fleet's load): each of the ${BRANCHES} branches holds 10,000 / ${BRANCHES} sockets and, on Cloudflare, sends its frames in parallel with the others: p50 ${round(measuredShare.p50, 0)} ms, p99 ${round(measuredShare.p99, 0)} ms`,
          }
        : {}),
      propagationCpu: `(c) a lower bound: one branch's share of the fan-out's CPU at 10,000 (${round(branchCpuAt, 0)} ms of ${round(cpuAt, 0)} ms in all) is spent before its last frame can be out`,
      propagationHeadline: measuredShare
        ? "the headline propagation is (e), at least (c): one branch's share measured whole (the root's call, the branch's frames, this machine's queueing under the fleet), the branches running side by side as objects do on Cloudflare; (a) puts every branch's frames on one thread, as here; (d) estimates (e) from a small scope; (b) is this machine's trend"
        : "the headline propagation is (a), at least (c): it keeps this machine's queueing at the measured count, where every branch and the whole fleet share workerd's one thread; (d) takes only one branch's frames on top of what every scope sees here; (b) is this machine's trend",
    },
    hottestObject: hot && { class: hot.class, object: hot.object, reqPerSec: round(hot.at, 0) },
    workerReqPerSec: round(
      per(base.steady.workerReqPerSec, (r) => r.steady.workerReqPerSec),
      0,
    ),
    objectReqPerSec: round(
      per(base.steady.objectReqPerSec, (r) => r.steady.objectReqPerSec),
      0,
    ),
    objectReqPerSecByClass: Object.fromEntries(
      Object.entries(base.steady.objectReqPerSecByClass).map(([k, x]) => [
        k,
        round(
          per(x, (r) => r.steady.objectReqPerSecByClass[k] ?? 0),
          0,
        ),
      ]),
    ),
    workerdCpuCores: round(per(base.steady.workerdCpuPct, (r) => r.steady.workerdCpuPct) / 100, 2),
    fanOutCpuMsPerChange: round(cpuAt, 1),
    propagationP50Ms: round(head.p50, 0),
    propagationP99Ms: round(head.p99, 0),
    propagation: {
      objectPace: { p50Ms: round(pace.p50, 0), p99Ms: round(pace.p99, 0) },
      ...(trend ? { trendOnThisMachine: { fromWatchers: trend.from, p50Ms: round(trend.p50, 0), p99Ms: round(trend.p99, 0) } } : {}),
      ...(share ? { branchShare: { p50Ms: round(share.p50, 0), p99Ms: round(share.p99, 0) } } : {}),
      ...(measuredShare
        ? { branchMeasured: { watchers: b.watchers, p50Ms: round(measuredShare.p50, 0), p99Ms: round(measuredShare.p99, 0) } }
        : {}),
      headline: measuredShare ? "(e) one branch measured" : "(a) object pace",
      cpuLowerBoundMs: round(branchCpuAt, 0),
    },
  };
}

// ---- main ---------------------------------------------------------------------------

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    return undefined;
  }
}

/** What to stop if the run is interrupted (workerd, the bundle's temp dir). */
const cleanups = [];
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch {}
    }
    process.exit(130);
  });
}

async function main() {
  log(`building the Worker bundle; relay counts ${P.relayCounts.join(", ")}`);
  const bundle = buildBundle();
  cleanups.push(() => bundle.remove());
  const pinned = P.pin && os.cpus().length >= 2 && sh("taskset", ["-a", "-p", "-c", P.loadCpu, String(process.pid)]) !== undefined;
  if (P.pin && !pinned) log("not pinned (taskset unavailable or one CPU): workerd and the simulator share the CPUs");
  P.pin = pinned;
  const rows = [];
  try {
    for (const relays of P.relayCounts) {
      try {
        rows.push(await runFleet(bundle, relays));
      } catch (e) {
        log(`${relays} relays: failed: ${e?.stack ?? e}`);
        rows.push({ relays, pingEverySec: P.pingEverySec, opEverySec: P.opEverySec, failed: String(e?.message ?? e).split("\n")[0] });
      }
    }
  } finally {
    bundle.remove();
  }
  const earlier = existsSync(OUT) ? (JSON.parse(readFileSync(OUT, "utf8")).fleet?.rows ?? []) : [];
  const at = extrapolate(rows, earlier);
  const largest = rows.filter((r) => r.steady).reduce((a, b) => (a && a.relays > b.relays ? a : b), undefined);
  const stopped = rows.find((r) => r.notRun || r.failed);
  const fleet = {
    command: `npm run bench:fleet${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    startedAt: new Date(started).toISOString(),
    commit: sh("git", ["rev-parse", "--short", "HEAD"]),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      loadavg: os.loadavg().map((x) => +x.toFixed(2)),
      fdLimit: fdLimit(),
    },
    setup:
      `bare workerd, built bundle, default settings (LEASE_TTL_MS 10 s); ${P.pin ? `workerd pinned to CPU ${P.workerdCpu}, the simulated relays (one Node process, plain TCP WebSockets) to CPU ${P.loadCpu}` : "not pinned"}; ` +
      `each relay: a lease socket (HeartbeatRequest every ${P.beatEverySec} s, "ping" every ${P.pingEverySec} s), ${P.watchOwn ? `watch sockets on the popular scope and ${P.ownScopesPerRelay} own scopes of about ${P.relaysPerOwnScope} relays each` : `a watch socket on the popular scope only (its ${P.ownScopesPerRelay} own scopes of about ${P.relaysPerOwnScope} relays each unwatched)`} (pinged every ${P.pingEverySec} s), ` +
      `a Connect JSON call every ${P.opEverySec} s on average from the soak's mix (test/soak/relays.mjs MIX), ${Math.round(P.popularShare * 100)}% of them reads in the popular scope`,
    parameters: P,
    rows,
    largestMeasured: largest?.relays,
    stoppedAt: stopped ? { relays: stopped.relays, reason: stopped.notRun ?? stopped.failed } : undefined,
    at10000: at,
    // The headline figures, at 10,000 relays / watchers.
    relays: largest?.relays,
    hottestObject: at?.hottestObject ? `${at.hottestObject.class} ${at.hottestObject.object}` : undefined,
    hottestObjectReqPerSec: at?.hottestObject?.reqPerSec,
    hottestObjectReqPerSecIs: at && `${at.basis} at 10,000 relays from ${at.from} relays (${at.formulas.perRelay})`,
    fanOutCpuMsPerChange: at?.fanOutCpuMsPerChange,
    fanOutCpuMsPerChangeIs: at && `${at.basis} for 10,000 watchers from ${at.from} (line through 0 and ${at.from} watchers)`,
    propagationP99Ms: at?.propagationP99Ms,
    propagationP50Ms: at?.propagationP50Ms,
    propagationP99MsIs:
      at &&
      (at.propagation.branchMeasured
        ? `projected for 10,000 watchers from one branch's share (${at.propagation.branchMeasured.watchers} watchers on one branch) measured under the fleet of ${at.from} relays, the ${BRANCHES} branches side by side as on Cloudflare; at least the fan-out's CPU for one branch (at10000.formulas (e), (c); (a) puts every branch on this machine's one thread: at10000.propagation.objectPace)`
        : `${at.basis} for 10,000 watchers from ${at.from} watchers: the measured propagation plus the object's per-socket pace for each watcher more, at least the fan-out's CPU (at10000.formulas; this machine's own trend is at10000.propagation.trendOnThisMachine)`),
  };
  console.log(renderFleet(fleet));
  if (!v["no-save"] && rows.some((r) => r.steady)) save(fleet);
}

/** Merges `fleet` into the results file: other keys stay; rows of other relay counts from earlier runs stay, marked as such. */
function save(fleet) {
  const results = existsSync(OUT) ? JSON.parse(readFileSync(OUT, "utf8")) : {};
  const key = (r) => `${r.relays}@${r.pingEverySec}/${r.watchesPerRelay}`;
  const earlier = (results.fleet?.rows ?? [])
    .filter((r) => r.steady && !fleet.rows.some((x) => key(x) === key(r)))
    .map((r) => ({ ...r, earlierRun: r.earlierRun ?? results.fleet.command }));
  fleet.rows = [...fleet.rows, ...earlier].sort(
    (a, b) => a.relays - b.relays || a.pingEverySec - b.pingEverySec || a.watchesPerRelay - b.watchesPerRelay,
  );
  results.fleet = fleet;
  writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
  log(`wrote ${relative(process.cwd(), OUT)} (key fleet)`);
}

await main();
