// moq-worker benchmarks: side by side with moq-api + Redis, the cost curve of
// one scope, scopes side by side, heartbeat cost, and where the time goes.
//
//   npm run bench                 full run (~10 min), writes bench/results/latest.json
//   npm run bench -- --quick      ~1 min smoke run (CI), writes bench/results/quick.json.tmp
//   options: --out FILE  --concurrency N  --duration SECONDS  --no-wrangler-dev  --max-namespaces N
//            --no-relay-seen / --relay-seen-only (the edge's cached lookups, propagation, calls per 1,000 joins)
//            --ref GIT-REF (benchmark that commit, extracted to a temp dir, instead of the working tree)
//            --patch A.diff,B.diff (with --ref: apply these to the snapshot first)
//
// Everything runs on this machine on 127.0.0.1: the load generator (Node,
// bench/lib/load.mjs) and the systems under test share its cores. No speed is
// asserted; the run fails only when the harness or a system breaks (any
// unexpected answer is an error).
// Scoped answers name a relay at the scope's relay-link path; the checks compare the relay.
import { registeredUrl } from "../test/e2e/lib/rpc.mjs";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { benchArgs, positiveNumber } from "./lib/args.mjs";
import { runLoad } from "./lib/load.mjs";
import { moqApi, moqApiKey, nsFields, worker } from "./lib/ops.mjs";
import { MoqApiRefresher, RelayPool, WorkerRelay } from "./lib/relay.mjs";
import { relaySeen } from "./lib/relay-seen.mjs";
import {
  buildBundle,
  coordinatorCall,
  cpuMs,
  sourceTree,
  startWorkerd,
  MOQ_API_BIN,
  startMiniflare,
  startMoqApi,
  startWranglerDev,
} from "./lib/systems.mjs";
import { fanOut } from "./fan-out.mjs";
import { tokenIssue } from "./token-issue.mjs";
import { cost } from "./cost.mjs";
import { resetStorm } from "./reset-storm.mjs";
import { profileWorker } from "./profile.mjs";
import { renderMarkdown } from "./report.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");

// ---- options ------------------------------------------------------------------

function options() {
  const v = benchArgs({
    quick: { type: "boolean", default: false },
    "no-wrangler-dev": { type: "boolean", default: false },
    "no-relay-seen": { type: "boolean", default: false },
    "relay-seen-only": { type: "boolean", default: false },
    out: { type: "string" },
    ref: { type: "string" },
    patch: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string" },
    "max-namespaces": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  });
  if (v.help) {
    console.log(
      readFileSync(fileURLToPath(import.meta.url), "utf8")
        .split("\n")
        .slice(3, 9)
        .join("\n"),
    );
    process.exit(0);
  }
  return {
    quick: v.quick,
    wranglerDev: !v["no-wrangler-dev"],
    skipRelaySeen: v["no-relay-seen"],
    relaySeenOnly: v["relay-seen-only"],
    out: v.out,
    ref: v.ref,
    patches: v.patch?.split(","),
    concurrency: positiveNumber(v, "concurrency"),
    duration: positiveNumber(v, "duration"),
    maxNamespaces: positiveNumber(v, "max-namespaces"),
  };
}

const args = options();
const QUICK = args.quick;
const P = {
  mode: QUICK ? "quick" : "full",
  concurrency: args.concurrency ?? 16,
  warmupMs: QUICK ? 300 : 2000,
  durationMs: (args.duration ?? (QUICK ? 1.5 : 8)) * 1000,
  headlineSeed: QUICK ? 500 : 10_000,
  unloadedLatency: !QUICK, // the concurrency-1 rows
  scaleNamespaces: QUICK ? [100, 300] : [100, 1000, 10_000, 100_000].filter((n) => n <= (args.maxNamespaces ?? 100_000)),
  scaleSubscriptions: QUICK ? [100, 300] : [100, 1000, 10_000],
  scopesSeed: QUICK ? 20 : 1000,
  profileSeed: QUICK ? 300 : 2000,
  // Namespaces a relay holds when its RegisterNamespace calls are measured (quota 10,000 per relay per scope).
  heldSteps: QUICK ? [0, 200] : [0, 4000, 8500],
  heldBatch: QUICK ? 100 : 1000,
  seedConcurrency: 32,
  // Relays the operations' requests are spread over (request i from relay i mod n).
  relays: QUICK ? 4 : 16,
  heartbeatRegistrations: QUICK ? 200 : 1000,
  heartbeatWindowMs: QUICK ? 10_000 : 60_000,
  moqApiRefreshPeriodMs: 300_000, // moq-relay-ietf 0.7 ApiCoordinator: PATCH every TTL/2 = 5 minutes
  moqApiTtlMs: 600_000, // moq-api src/server.rs: SET ... EX 600
  wranglerDev: args.wranglerDev,
};
const OUT = args.out ?? join(HERE, "results", QUICK ? "quick.json.tmp" : "latest.json");

// ---- helpers ------------------------------------------------------------------

const started = Date.now();
const log = (...m) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s]`, ...m);
const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try {
      await cleanups.pop()();
    } catch (e) {
      console.error("cleanup:", e?.message ?? e);
    }
  }
}
/** Temp dirs (source snapshot, bundle): removed at the very end, or on a signal. */
const finals = [];
function runFinals() {
  while (finals.length) {
    try {
      finals.pop()();
    } catch {}
  }
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () =>
    cleanup().finally(() => {
      runFinals();
      process.exit(130);
    }),
  );
}

/** A measured run against a system ({url, pids}): warm-up, then durationMs. */
const timed = (sys, op, concurrency = P.concurrency) =>
  runLoad({ baseUrl: sys.url, op, concurrency, warmupMs: P.warmupMs, durationMs: P.durationMs, serverCpuMs: () => cpuMs(sys.pids()) });
/** Requests [from, to) of op at the seeding concurrency (real RPCs, nothing bypassed). */
const seed = (sys, op, from, to) => runLoad({ baseUrl: sys.url, op, concurrency: P.seedConcurrency, total: to - from, start: from });

function sh(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch {
    return undefined;
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model,
    cpus: cpus.length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  };
}

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return undefined;
  }
}

function versions() {
  return {
    node: process.version,
    wrangler: pkgVersion("wrangler"),
    miniflare: pkgVersion("miniflare"),
    workerd: pkgVersion("workerd"),
    moqApi: sh(MOQ_API_BIN, ["--version"]),
    redis: sh("redis-server", ["--version"])?.match(/v=(\S+)/)?.[1],
    moqWorkerCommit: sh("git", ["rev-parse", "--short", "HEAD"]),
    moqWorkerDirty: (sh("git", ["status", "--porcelain", "--", "src", "wrangler.toml", "package.json"]) ?? "") !== "",
  };
}

/**
 * Lookup of `count` namespaces of a set must all hit on moq-worker, at the
 * relay that registered each (checks seeding and leases). `relays` is a
 * RelayPool or one WorkerRelay.
 */
async function checkWorkerHits(url, relays, scope, set, n, count = 20) {
  const relayOf = (i) => (relays.relayOf ? relays.relayOf(i) : relays);
  for (let k = 0; k < count; k++) {
    const i = Math.floor((k * n) / count);
    const fields = nsFields(set, i).map((f) => Buffer.from(f).toString("base64"));
    const asker = relayOf(0);
    const { status, json } = await coordinatorCall(url, asker.token, "Lookup", { scope, namespace: { fields } }, asker.auth);
    if (status !== 200 || registeredUrl(json.origin?.relay?.url) !== relayOf(i).relayUrl) {
      throw new Error(`Lookup of seeded ${set}#${i} in ${scope}: ${status} ${JSON.stringify(json)}`);
    }
  }
}

async function checkMoqApiHits(url, scope, set, n, relayUrl, count = 20) {
  for (let k = 0; k < count; k++) {
    const i = Math.floor((k * n) / count);
    const res = await fetch(`${url}/origin/${moqApiKey(scope, nsFields(set, i))}`);
    const body = res.ok ? await res.json() : await res.text();
    if (res.status !== 200 || body.url !== relayUrl)
      throw new Error(`moq-api GET seeded ${set}#${i}: ${res.status} ${JSON.stringify(body)}`);
  }
}

/**
 * Registers a key on moq-api, waits, then refreshes it the way moq-relay-ietf
 * 0.7's ApiCoordinator does (PATCH) and the way its older `Api`/`Refresh`
 * library type does (POST again); reports the key's TTL after each.
 */
async function probeMoqApiRefresh(api, relayUrl) {
  const key = moqApiKey("/ttl-probe", ["a", "b"]);
  const body = JSON.stringify({ url: relayUrl });
  const ttl = async () => Number((await api.redis(["TTL", `origin.${key}`])).replace(/^:/, ""));
  const call = async (method) => {
    const res = await fetch(`${api.url}/origin/${key}`, { method, headers: { "content-type": "application/json" }, body });
    await res.arrayBuffer();
    return res.status;
  };
  const registered = await call("POST");
  const waitS = 3;
  await new Promise((r) => setTimeout(r, waitS * 1000));
  const beforeRefresh = await ttl();
  const postStatus = await call("POST");
  const afterPost = await ttl();
  const patchStatus = await call("PATCH");
  const afterPatch = await ttl();
  return {
    note: `TTL seconds of a key registered ${waitS}s earlier, before and after each kind of refresh`,
    registered,
    beforeRefresh,
    patch: { status: patchStatus, ttlAfter: afterPatch, renews: afterPatch > afterPost },
    post: { status: postStatus, ttlAfter: afterPost, renews: afterPost > beforeRefresh },
  };
}

// ---- phases -------------------------------------------------------------------

const RELAY_A = "https://relay-a.bench.test/";
const HEALTHZ = worker.healthz().name;
const RELAY_HB = "https://relay-heartbeat.bench.test/";

/** The moq-worker setups of the headline; the first is the one the ratios use. */
const WORKER_SETUPS = [
  { key: "moq-worker", label: "Miniflare (workerd), built bundle", start: (bundle) => startMiniflare({ bundle }) },
  {
    key: "moq-worker (bare workerd)",
    label: "bare workerd, built bundle, no Miniflare entry worker",
    start: (bundle) => startWorkerd({ bundle }),
  },
  // Registering through the dev proxy is slow: seed fewer namespaces there.
  {
    key: "moq-worker (wrangler dev)",
    label: "wrangler dev (dev proxy in front of workerd)",
    start: (bundle) => startWranglerDev({ root: bundle.root }),
    optional: "wranglerDev",
    maxSeed: 2000,
  },
];

async function measureOps(system, sys, ops, rows, concurrencies) {
  for (const c of concurrencies) {
    for (const op of ops) {
      log(`${system}: ${op.name} @ concurrency ${c}`);
      rows.push({ system, ...(await timed(sys, op, c)) });
    }
  }
}

async function headline(results, bundle) {
  const rows = [];
  results.headline = { rows, seeded: P.headlineSeed, concurrency: P.concurrency, setups: {}, seeding: {} };
  const unloaded = P.unloadedLatency ? [P.concurrency, 1] : [P.concurrency];

  for (const [k, setup] of WORKER_SETUPS.entries()) {
    if (setup.optional && !P[setup.optional]) continue;
    const primary = k === 0;
    log(`starting ${setup.key}: ${setup.label}`);
    const w = await setup.start(bundle);
    cleanups.push(() => w.stop());
    const relay = await new RelayPool(w.url, "relay-a", P.relays).start();
    cleanups.push(() => relay.stop());
    results.headline.setups[setup.key] = setup.label;
    const scope = "headline";
    const scopeOf = () => scope;
    // Lookups spread over what was seeded; fewer seeds where registering is slow.
    const n = Math.min(P.headlineSeed, setup.maxSeed ?? Infinity, primary || !QUICK ? Infinity : 200);
    log(`${setup.key}: seeding ${n} namespaces (RegisterNamespace, concurrency ${P.seedConcurrency})`);
    const s = await seed(w, worker.register({ auth: relay.auth, scopeOf, set: "hl" }), 0, n);
    results.headline.seeding[setup.key] = { namespaces: n, rps: s.rps, seconds: s.seconds };
    await checkWorkerHits(w.url, relay, scope, "hl", n);
    const ops = [
      worker.register({ auth: relay.auth, scopeOf, set: "hlr" }),
      worker.lookupHit({ auth: relay.auth, scopeOf, set: "hl", registered: n }),
      worker.lookupMiss({ auth: relay.auth, scopeOf, set: "hl" }),
    ];
    // The runtime's own ceiling for this client and concurrency: a route that does nothing.
    await measureOps(setup.key, w, [worker.healthz()], rows, [P.concurrency]);
    await measureOps(setup.key, w, QUICK && !primary ? ops.slice(1, 2) : ops, rows, primary ? unloaded : [P.concurrency]);
    if (primary) {
      log(`${setup.key}: lookup-hit over Connect JSON`);
      const json = worker.lookupHit({ auth: relay.auth, scopeOf, set: "hl", registered: n, format: "json" });
      rows.push({ system: "moq-worker (Connect JSON)", ...(await timed(w, json)) });
    }
    await checkWorkerHits(w.url, relay, scope, "hl", n);
    relay.stop();
    await w.stop();
    cleanups.length = 0;
  }

  // moq-api + redis.
  {
    log("starting moq-api + redis-server");
    const api = await startMoqApi();
    cleanups.push(() => api.stop());
    log(`moq-api: seeding ${P.headlineSeed} namespaces (POST /origin, concurrency ${P.seedConcurrency})`);
    const scope = "/headline";
    const s = await seed(api, moqApi.register({ relayUrl: RELAY_A, scope, set: "hl" }), 0, P.headlineSeed);
    results.headline.seeding["moq-api"] = { namespaces: P.headlineSeed, rps: s.rps, seconds: s.seconds };
    await checkMoqApiHits(api.url, scope, "hl", P.headlineSeed, RELAY_A);
    await measureOps(
      "moq-api",
      api,
      [
        moqApi.register({ relayUrl: RELAY_A, scope, set: "hlr" }),
        moqApi.lookupHit({ scope, set: "hl", registered: P.headlineSeed }),
        moqApi.lookupMiss({ scope, set: "hl" }),
      ],
      rows,
      unloaded,
    );
    results.headline.redisKeys = Number((await api.redis(["DBSIZE"])).replace(/^:/, ""));
    await api.stop();
    cleanups.length = 0;
  }

  // Ratios moq-worker / moq-api per op, at each concurrency, for every moq-worker setup.
  const find = (system, op, c) => rows.find((r) => r.system === system && r.op === op && r.concurrency === c);
  // Each moq-worker RPC's req/s as a fraction of GET /healthz on the same server, same client and concurrency.
  results.headline.ceiling = [];
  for (const r of rows.filter((x) => x.system.startsWith("moq-worker") && x.concurrency === P.concurrency && x.op !== HEALTHZ)) {
    const top = find(r.system === "moq-worker (Connect JSON)" ? "moq-worker" : r.system, HEALTHZ, P.concurrency);
    if (top)
      results.headline.ceiling.push({
        system: r.system,
        op: r.op,
        healthzRps: top.rps,
        rps: r.rps,
        fraction: +(r.rps / top.rps).toFixed(3),
      });
  }
  results.headline.ratios = [];
  for (const r of rows.filter((x) => x.system.startsWith("moq-worker"))) {
    const b = find("moq-api", r.op, r.concurrency);
    if (!b) continue;
    results.headline.ratios.push({
      system: r.system,
      op: r.op,
      concurrency: r.concurrency,
      throughput: +(r.rps / b.rps).toFixed(3),
      p50: +(r.p50Ms / b.p50Ms).toFixed(3),
      p99: +(r.p99Ms / b.p99Ms).toFixed(3),
      serverCpuPerRequest: r.serverCpuUsPerReq && b.serverCpuUsPerReq ? +(r.serverCpuUsPerReq / b.serverCpuUsPerReq).toFixed(3) : undefined,
    });
  }
}

/** Scale curve, scopes side by side, the layer profile; the heartbeat window runs alongside. */
async function scaleAndHeartbeat(results, bundle) {
  // Bare workerd: the fewest layers that are not moq-worker's, and the fastest seeding.
  const setup = WORKER_SETUPS[1];
  log(`starting ${setup.key} (${setup.label}) for the scale curve`);
  const w = await setup.start(bundle);
  cleanups.push(() => w.stop());
  const a = await new RelayPool(w.url, "relay-a", P.relays).start();
  const b = await new RelayPool(w.url, "relay-b", P.relays).start();
  cleanups.push(
    () => a.stop(),
    () => b.stop(),
  );

  // Heartbeat cost, measured over a wall-clock window while the rest runs.
  log(`heartbeat: relay with ${P.heartbeatRegistrations} registrations on each system, ${P.heartbeatWindowMs / 1000}s window`);
  const hb = await new WorkerRelay(w.url, RELAY_HB).start();
  cleanups.push(() => hb.stop());
  await seed(w, worker.register({ auth: hb.auth, scopeOf: () => "heartbeat", set: "hb" }), 0, P.heartbeatRegistrations);
  const api = await startMoqApi();
  cleanups.push(() => api.stop());
  await seed(api, moqApi.register({ relayUrl: RELAY_HB, scope: "/heartbeat", set: "hb" }), 0, P.heartbeatRegistrations);
  // moq-api: what the relay's refresh (PATCH) does to a key's expiry, vs a second POST (src/server.rs).
  const refreshOp = moqApi.refresh({ relayUrl: RELAY_HB, scope: "/heartbeat", set: "hb", keys: P.heartbeatRegistrations });
  const ttlProbe = probeMoqApiRefresh(api, RELAY_HB);
  const refresher = new MoqApiRefresher({
    keys: P.heartbeatRegistrations,
    periodMs: P.moqApiRefreshPeriodMs,
    send: async (i) => {
      const req = refreshOp.request(i);
      const res = await fetch(`${api.url}${req.path}`, { method: req.method, headers: req.headers, body: req.body });
      await res.arrayBuffer();
      return res.status === 200;
    },
  });
  const hbWindowStart = Date.now();
  const beatsBefore = hb.heartbeats;
  refresher.start();
  const windowDone = new Promise((r) => setTimeout(r, P.heartbeatWindowMs));

  const scopeOf1 = (s) => () => s;
  const scale = { server: setup.label, concurrency: P.concurrency, lookup: [], subscribers: [], scopes: [] };
  results.scale = scale;

  // Lookup vs registered namespaces in one scope.
  let have = 0;
  for (const n of P.scaleNamespaces) {
    log(`scale: seeding scope to ${n} namespaces`);
    const s = await seed(w, worker.register({ auth: a.auth, scopeOf: scopeOf1("scale"), set: "sc" }), have, n);
    have = n;
    await checkWorkerHits(w.url, a, "scale", "sc", n);
    log(`scale: Lookup with ${n} namespaces`);
    const hit = await timed(w, worker.lookupHit({ auth: a.auth, scopeOf: scopeOf1("scale"), set: "sc", registered: n }));
    const miss = await timed(w, worker.lookupMiss({ auth: a.auth, scopeOf: scopeOf1("scale"), set: "sc" }));
    const hit1 = P.unloadedLatency
      ? await timed(w, worker.lookupHit({ auth: a.auth, scopeOf: scopeOf1("scale"), set: "sc", registered: n }), 1)
      : undefined;
    scale.lookup.push({ namespaces: n, seedRps: s.rps, hit, miss, ...(hit1 ? { hitUnloaded: hit1 } : {}) });
  }

  // LookupNamespaceSubscribers vs subscribed prefixes (relay B subscribes, relay A asks).
  have = 0;
  for (const n of P.scaleSubscriptions) {
    log(`scale: seeding ${n} subscribed prefixes`);
    await seed(w, worker.subscribe({ auth: b.auth, scopeOf: scopeOf1("subs"), set: "sub" }), have, n);
    have = n;
    const asker = a.relayOf(0);
    const probe = await coordinatorCall(
      w.url,
      asker.token,
      "LookupNamespaceSubscribers",
      {
        scope: "subs",
        namespace: { fields: ["sub", "p0", "x", "y", "leaf"].map((f) => Buffer.from(f).toString("base64")) },
      },
      asker.auth,
    );
    if (probe.status !== 200 || probe.json.relays?.length !== 1 || registeredUrl(probe.json.relays[0].url) !== b.relayOf(0).relayUrl) {
      throw new Error(`LookupNamespaceSubscribers probe: ${probe.status} ${JSON.stringify(probe.json)}`);
    }
    log(`scale: LookupNamespaceSubscribers with ${n} prefixes`);
    const r = await timed(w, worker.lookupSubscribers({ auth: a.auth, scopeOf: scopeOf1("subs"), set: "sub", subscribed: n }));
    scale.subscribers.push({ prefixes: n, result: r });
  }

  // RegisterNamespace vs rows the calling relay already holds in the scope
  // (the per-relay quota check counts them: src/objects/scope.ts overQuota).
  const q = await new WorkerRelay(w.url, "https://relay-quota.bench.test/").start();
  cleanups.push(() => q.stop());
  const quotaOp = worker.register({ auth: q.auth, scopeOf: scopeOf1("quota"), set: "qt" });
  scale.registerVsHeld = [];
  let held = 0;
  for (const at of P.heldSteps) {
    if (at > held) await seed(w, quotaOp, held, at);
    log(`scale: RegisterNamespace by a relay holding ${at} namespaces (${P.heldBatch} calls)`);
    const r = await runLoad({
      baseUrl: w.url,
      op: quotaOp,
      concurrency: P.concurrency,
      total: P.heldBatch,
      start: at,
      serverCpuMs: () => cpuMs(w.pids()),
    });
    held = at + P.heldBatch;
    scale.registerVsHeld.push({ held: at, result: r });
  }
  q.stop();

  const ratio = (list, get) => {
    const first = get(list[0]);
    const last = get(list[list.length - 1]);
    return +(last / first).toFixed(3);
  };
  scale.lookupRatio = {
    from: P.scaleNamespaces[0],
    to: P.scaleNamespaces.at(-1),
    p50: ratio(scale.lookup, (x) => x.hit.p50Ms),
    p99: ratio(scale.lookup, (x) => x.hit.p99Ms),
    rps: ratio(scale.lookup, (x) => x.hit.rps),
    ...(P.unloadedLatency
      ? { p50Unloaded: ratio(scale.lookup, (x) => x.hitUnloaded.p50Ms), p99Unloaded: ratio(scale.lookup, (x) => x.hitUnloaded.p99Ms) }
      : {}),
  };
  scale.registerVsHeldRatio = {
    from: P.heldSteps[0],
    to: P.heldSteps.at(-1),
    cpu: ratio(scale.registerVsHeld, (x) => x.result.serverCpuUsPerReq),
    p50: ratio(scale.registerVsHeld, (x) => x.result.p50Ms),
    rps: ratio(scale.registerVsHeld, (x) => x.result.rps),
  };
  scale.subscribersRatio = {
    from: P.scaleSubscriptions[0],
    to: P.scaleSubscriptions.at(-1),
    p50: ratio(scale.subscribers, (x) => x.result.p50Ms),
    p99: ratio(scale.subscribers, (x) => x.result.p99Ms),
    rps: ratio(scale.subscribers, (x) => x.result.rps),
  };

  // 1 scope vs 8 scopes, same total concurrency.
  log(`scopes: seeding 8 scopes with ${P.scopesSeed} namespaces each`);
  for (let k = 0; k < 8; k++) {
    await seed(w, worker.register({ auth: a.auth, scopeOf: scopeOf1(`multi-${k}`), set: "ms" }), 0, P.scopesSeed);
  }
  for (const scopes of [1, 8]) {
    const scopeOf = (i) => `multi-${i % scopes}`;
    log(`scopes: Lookup and RegisterNamespace over ${scopes} scope(s)`);
    const lookup = await timed(w, worker.lookupHit({ auth: a.auth, scopeOf, set: "ms", registered: P.scopesSeed }));
    const register = await timed(w, worker.register({ auth: a.auth, scopeOf, set: `msr${scopes}` }));
    scale.scopes.push({ scopes, lookup, register });
  }

  // Close the heartbeat window.
  log("heartbeat: waiting for the window to close");
  await windowDone;
  refresher.stop();
  const windowMs = Date.now() - hbWindowStart;
  const beats = hb.heartbeats - beatsBefore;
  // The relay sent nothing but heartbeats, yet all its registrations are alive.
  await checkWorkerHits(w.url, hb, "heartbeat", "hb", P.heartbeatRegistrations, 50);
  if (refresher.failures > 0) throw new Error(`moq-api refresh: ${refresher.failures} failed`);
  const perMin = (x) => +((x * 60_000) / windowMs).toFixed(1);
  results.heartbeat = {
    registrations: P.heartbeatRegistrations,
    windowMs,
    moqWorker: {
      requests: beats,
      perMinute: perMin(beats),
      intervalMs: hb.intervalMs,
      leaseTtlMs: hb.leaseTtlMs,
      expectedPerMinute: +(60_000 / hb.intervalMs).toFixed(1),
      allRegistrationsAliveAfterWindow: true,
    },
    moqApi: {
      requests: refresher.requests,
      perMinute: perMin(refresher.requests),
      refreshPeriodMs: P.moqApiRefreshPeriodMs,
      keyTtlMs: P.moqApiTtlMs,
      expectedPerMinute: +((P.heartbeatRegistrations * 60_000) / P.moqApiRefreshPeriodMs).toFixed(1),
      refreshEffectOnExpiry: await ttlProbe,
    },
    // Same failure-detection time for both: a TTL of moq-worker's lease.
    atEqualTtl: {
      ttlMs: hb.leaseTtlMs,
      moqWorkerPerMinute: +(60_000 / hb.intervalMs).toFixed(1),
      moqApiPerMinute: +((P.heartbeatRegistrations * 60_000) / (hb.leaseTtlMs / 2)).toFixed(1),
    },
  };
  await api.stop();
  hb.stop();
  a.stop();
  b.stop();
  await w.stop();
  cleanups.length = 0;

  // Where the time goes, on bare workerd: the same request stopped at
  // successive layers; in full runs also CPU profiles (JS by module, native by subsystem).
  log(`profile: layers${QUICK ? "" : " and CPU profiles"}`);
  results.profile = await profileWorker({
    bundle,
    ops: QUICK ? [] : ["lookup-hit", "register"],
    layers: P.unloadedLatency ? [P.concurrency, 1] : [P.concurrency],
    seconds: P.durationMs / 1000,
    warmupMs: P.warmupMs,
    seedCount: P.profileSeed,
    log,
  });
}

// The write cost of the watch channel's fan-out (bench/fan-out.mjs), on bare workerd.
async function watchFanOut(results, bundle) {
  log("fan-out: RegisterNamespace in a scope watched by 0, 1, 10 and 100 sockets");
  const w = await startWorkerd({ bundle });
  cleanups.push(() => w.stop());
  const rows = await fanOut({ url: w.url, pids: w.pids, registers: QUICK ? 30 : 300, log });
  // relaySeen holds the relay-side benchmarks of issue 12; fanOut is one key of it.
  results.relaySeen = { ...results.relaySeen };
  results.relaySeen.fanOut = {
    setup: "bare workerd, built bundle; one RegisterNamespace at a time (Connect JSON) in a scope with N open watch sockets",
    rows,
  };
  await w.stop();
  cleanups.pop();
}

// What a relay costs on Cloudflare (bench/cost.mjs), on bare workerd.
async function costSection(results, bundle) {
  log("cost: billed units of a relay's steady load and of single operations");
  const w = await startWorkerd({ bundle });
  cleanups.push(() => w.stop());
  results.cost = await cost({
    url: w.url,
    relays: QUICK ? 2 : 10,
    scopes: QUICK ? 10 : 100,
    windowMs: QUICK ? 8_000 : 60_000,
    ops: QUICK ? 10 : 50,
    callsPer1000Joins: results.relaySeen?.joins?.per1000,
    log,
  });
  await w.stop();
  cleanups.pop();
  results.cost.resetStorm = await resetStorm({ bundle, relays: QUICK ? 20 : 100, log });
}

async function tokensSection(results, bundle) {
  log("tokens: IssueToken (ES256 CAT) and CreateRelayToken (HS256 JWT), closed loop at concurrency 8");
  const w = await startWorkerd({ bundle });
  cleanups.push(() => w.stop());
  const rows = await tokenIssue({ url: w.url, pids: w.pids, durationMs: QUICK ? 1_000 : 10_000, log });
  results.tokens = {
    setup: "bare workerd, built bundle; AdminService over Connect JSON, 8 loops; the load generator shares the machine",
    rows,
  };
  await w.stop();
  cleanups.pop();
}

// ---- main ---------------------------------------------------------------------

/** The relay-side numbers (bench/lib/relay-seen.mjs) on the primary setup and moq-api + Redis. */
async function relaySeenSection(results, bundle) {
  if (args.skipRelaySeen) return;
  log(`starting ${WORKER_SETUPS[0].key} and moq-api + redis-server for relay-seen`);
  const w = await WORKER_SETUPS[0].start(bundle);
  cleanups.push(() => w.stop());
  const api = await startMoqApi();
  cleanups.push(() => api.stop());
  await relaySeen({ results, quick: QUICK, log, worker: { ...w, kind: WORKER_SETUPS[0].label }, moqApi: api });
  await api.stop();
  await w.stop();
  cleanups.length = 0;
}

async function main() {
  const results = {
    schema: 1,
    mode: P.mode,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    startedAt: new Date(started).toISOString(),
    machine: machine(),
    versions: versions(),
    parameters: P,
    setup: {
      loadGenerator: "bench/lib/load.mjs: Node http.Agent keep-alive, closed loop, fixed concurrency, same process for every system",
      moqWorker:
        "built bundle (wrangler deploy --dry-run) served by Miniflare/workerd on 127.0.0.1, SQLite Durable Objects persisted to a temp dir; Connect binary protobuf over HTTP/1.1 with a relay JWT, as the edge calls it",
      moqWorkerBareWorkerd:
        "same bundle on `workerd serve` with a generated config (no Miniflare entry worker); also used for the scale curve and the profile",
      moqWorkerWranglerDev: "same Worker under `wrangler dev` (dev proxy in front of workerd)",
      moqApi:
        "moq-api (crates.io) on 127.0.0.1 with its own redis-server (no persistence: --save '' --appendonly no), HTTP/1.1 JSON with keys and PATCH refreshes as moq-relay-ietf 0.7's ApiCoordinator sends them",
    },
  };
  log(
    `mode ${P.mode}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} on ${os.cpus().length} cpus`,
  );
  const src = sourceTree(args.ref, args.patches ?? []);
  finals.push(() => src.remove());
  if (src.commit) {
    results.versions.moqWorkerCommit = src.commit.slice(0, 7);
    results.versions.moqWorkerDirty = false;
    results.versions.moqWorkerPatches = src.patches;
  }
  log(
    `building the Worker bundle${src.commit ? ` of ${src.commit.slice(0, 7)}${src.patches.length ? ` + ${src.patches.join(", ")}` : ""}` : " (working tree)"}`,
  );
  let bundle;
  try {
    bundle = buildBundle(src.root);
    finals.push(() => bundle.remove());
    if (!args.relaySeenOnly) {
      await headline(results, bundle);
      await scaleAndHeartbeat(results, bundle);
      await watchFanOut(results, bundle);
      await tokensSection(results, bundle);
    }
    await relaySeenSection(results, bundle);
    if (!args.relaySeenOnly) await costSection(results, bundle);
  } finally {
    await cleanup();
    runFinals();
  }
  results.machine.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));
  results.finishedAt = new Date().toISOString();
  results.elapsedSeconds = Math.round((Date.now() - started) / 1000);
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);
  console.log(renderMarkdown(results));
  log(`wrote ${relative(process.cwd(), OUT)} in ${results.elapsedSeconds}s`);
  if (!QUICK && !args.out) {
    // The scale-curve PNG next to latest.json (needs python3; the numbers are already saved).
    try {
      execFileSync("bash", [join(ROOT, "scripts", "bench-plot.sh"), OUT, join(dirname(OUT), "scale.png")], { stdio: "inherit" });
    } catch (e) {
      log(`plot not rendered (${e.message}); run npm run bench:plot`);
    }
  }
}

main().catch(async (e) => {
  console.error(e?.stack ?? e);
  await cleanup();
  runFinals();
  process.exit(1);
});
