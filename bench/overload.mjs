#!/usr/bin/env node
// Overload of one scope (docs/reliability.md "Overload"): what a hot scope's
// callers get, what a quiet scope's callers see meanwhile, and how relays
// following the edge's retry policy bring the hot scope back.
//
// Three set-ups, side by side, each on the built bundle on bare workerd:
//  - one instance, load shedding on (MAX_INFLIGHT_PER_SCOPE default);
//  - one instance, shedding off (0);
//  - a cluster of two instances (workerd's experimental cluster mode, its
//    shared state in a local S3, bench/lib/s3.mjs), shedding on: the hot
//    scope's Durable Object is owned by instance H and the quiet scope's by
//    instance Q, as on Cloudflare where each object runs on its own thread
//    apart from the others. H and the hot callers are pinned to CPU 1, Q and
//    the quiet callers to CPU 0: two machines, one core each.
// Locally a single instance runs every object and the Worker itself on one
// thread, so there a saturated scope slows every other scope whatever the
// code does; the cluster column is the one the 2x isolation goal is read on.
//
// Phases, each scope's callers in a child process of their own
// (bench/lib/overload-load.mjs):
//  1. quiet alone: Lookups in scope "quiet", closed loop, --quiet connections;
//  2. hot saturated: --hot relays send Lookups to scope "hot", each call
//     retried as the edge does, while (1) runs again;
//  3. hot flooded: --hot connections with no backoff (a misbehaving client),
//     while (1) runs again; every hot answer is counted by code;
//  4. recovery: --burst relays each make one Lookup in "hot" at the same
//     instant (a herd after an outage), with the edge's retries; requests per
//     second are counted until every relay is served.
// Options: --seconds=N (each measured phase, default 10), --hot=N (default
// 256), --quiet=N (default 2), --burst=N (default 400), --no-cluster.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { call, ns, relayToken } from "../test/e2e/lib/rpc.mjs";
import { buildBundle, freePort, pinned, startWorker } from "../test/e2e/lib/worker.mjs";
import { startS3 } from "./lib/s3.mjs";
import { cpuMs } from "./lib/systems.mjs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    hot: { type: "string", default: "256" },
    quiet: { type: "string", default: "2" },
    burst: { type: "string", default: "400" },
    "no-cluster": { type: "boolean", default: false },
  },
});
const SECONDS = Number(args.seconds);
const HOT = Number(args.hot);
const QUIET = Number(args.quiet);
const BURST = Number(args.burst);
const CLUSTER = !args["no-cluster"];
const LOAD = fileURLToPath(new URL("./lib/overload-load.mjs", import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One role of overload-load.mjs in a child process (pinned to `cpus` when given); resolves to its result. */
function role(spec, cpus) {
  const cmd = [process.execPath, LOAD, JSON.stringify(spec)];
  const [bin, ...argv] = pinned(cpus, cmd);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, argv, { stdio: ["ignore", "pipe", "inherit"] });
    child.once("error", reject);
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.once("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`overload-load exited ${code}: ${out}`))));
  });
}

/**
 * The Worker(s) of one set-up: { hot: {url, pids, cpus}, quiet: {...}, stop() }.
 * One instance serves both scopes; a cluster has one instance per scope.
 */
async function setUp(bundle, { shedding, cluster }) {
  const vars = { LEASE_TTL_MS: "600000", ...(shedding ? {} : { MAX_INFLIGHT_PER_SCOPE: "0" }) };
  if (!cluster) {
    const w = await startWorker({ mode: "workerd", bundle, vars });
    const side = { url: w.url, pids: w.pids };
    return { hot: side, quiet: side, stop: () => w.stop() };
  }
  const s3 = await startS3();
  const shared = {
    bucket: `s3://${s3.bucket}/${randomBytes(4).toString("hex")}`,
    bucketOptions: s3.bucketOptions,
    key: randomBytes(32).toString("hex"),
  };
  const started = [];
  const stop = async () => {
    for (const w of started) await w.stop();
    await s3.stop();
  };
  try {
    for (const cpus of ["0", "1"]) {
      const cl = { ...shared, address: `127.0.0.1:${await freePort()}` };
      started.push(await startWorker({ mode: "workerd", bundle, vars, cluster: cl, cpus }));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const [q, h] = started;
  return { quiet: { url: q.url, pids: q.pids, cpus: "0" }, hot: { url: h.url, pids: h.pids, cpus: "1" }, stop };
}

async function measure(bundle, setup) {
  const sys = await setUp(bundle, setup);
  try {
    const token = await relayToken(sys.quiet.url, "https://overload.bench:4443/");
    const coordinator = (url, method, body) => call(url, "CoordinatorService", method, body, token);
    // In a cluster an object is owned by the first instance that calls it:
    // each scope's first call goes to its own instance.
    await coordinator(sys.quiet.url, "Heartbeat", { epoch: "bench" });
    await coordinator(sys.hot.url, "RegisterNamespace", { scope: "hot", namespace: ns("live/cam") });
    await coordinator(sys.quiet.url, "RegisterNamespace", { scope: "quiet", namespace: ns("live/cam") });
    const hotSpec = (kind) => ({ kind, url: sys.hot.url, token, scope: "hot", connections: HOT, seconds: SECONDS + 2 });
    /** The quiet callers for SECONDS, with the CPU share each instance used meanwhile (one instance: both the same). */
    const quiet = async () => {
      const cpu = [cpuMs(sys.hot.pids()), cpuMs(sys.quiet.pids())];
      const t0 = performance.now();
      const r = await role(
        { kind: "closed", url: sys.quiet.url, token, scope: "quiet", connections: QUIET, seconds: SECONDS },
        sys.quiet.cpus,
      );
      const ms = performance.now() - t0;
      return { ...r, hotBusy: (cpuMs(sys.hot.pids()) - cpu[0]) / ms, quietBusy: (cpuMs(sys.quiet.pids()) - cpu[1]) / ms };
    };
    /** The quiet callers while `kind` runs on the hot scope (started 1 s before, ended after). */
    const beside = async (kind) => {
      const [q, hot] = await Promise.all([sleep(1000).then(quiet), role(hotSpec(kind), sys.hot.cpus)]);
      return { quiet: q, hot };
    };

    const alone = await quiet();
    const saturated = await beside("edge");
    const flooded = await beside("flood");
    await sleep(1000);
    const recovery = await role({ kind: "herd", url: sys.hot.url, token, scope: "hot", burst: BURST }, sys.hot.cpus);
    return { alone, saturated, flooded, recovery };
  } finally {
    await sys.stop();
  }
}

const fmt = (x) => (x === undefined || Number.isNaN(x) ? "n/a" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const pct = (x) => `${(x * 100).toFixed(0)} %`;
const codes = (m) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

const SETUPS = [
  { label: "one instance, shedding on", shedding: true, cluster: false },
  { label: "one instance, shedding off", shedding: false, cluster: false },
  ...(CLUSTER && availableParallelism() >= 2 ? [{ label: "cluster: hot and quiet apart", shedding: true, cluster: true }] : []),
];
if (CLUSTER && SETUPS.length < 3) console.log("overload: fewer than 2 CPUs, the cluster set-up is skipped");

const bundle = buildBundle();
try {
  console.log(
    `overload: ${HOT} hot relays, ${QUIET} quiet connections, ${SECONDS} s per phase, herd of ${BURST} relays with the edge's retry policy; bare workerd, built bundle`,
  );
  const runs = [];
  for (const s of SETUPS) runs.push(await measure(bundle, s));
  const rows = [
    ["quiet scope alone: req/s", (r) => r.alone.rps],
    ["quiet scope alone: p50 ms", (r) => r.alone.p50],
    ["quiet scope alone: p99 ms", (r) => r.alone.p99],
    ["quiet, hot saturated: p50 ms", (r) => r.saturated.quiet.p50],
    ["quiet, hot saturated: p99 ms", (r) => r.saturated.quiet.p99],
    ["quiet p99 saturated / alone", (r) => `${fmt(r.saturated.quiet.p99 / r.alone.p99)}×`],
    ["hot's workerd: CPU share", (r) => pct(r.saturated.quiet.hotBusy)],
    ["quiet's workerd: CPU share alone / beside", (r) => `${pct(r.alone.quietBusy)} / ${pct(r.saturated.quiet.quietBusy)}`],
    ["hot (edge backoff): calls/s", (r) => r.saturated.hot.rps],
    ["hot (edge backoff): p99 ms", (r) => r.saturated.hot.p99],
    ["hot (edge backoff): slowest ms", (r) => r.saturated.hot.max],
    ["quiet, hot flooded: p99 ms", (r) => r.flooded.quiet.p99],
    ["quiet p99 flooded / alone", (r) => `${fmt(r.flooded.quiet.p99 / r.alone.p99)}×`],
    ["flood (no backoff): answers/s", (r) => r.flooded.hot.rps],
    ["flood (no backoff): slowest ms", (r) => r.flooded.hot.max],
    ["herd: attempts in all", (r) => r.recovery.attempts],
    ["herd: served / failed", (r) => `${r.recovery.served} / ${r.recovery.failed}`],
    ["herd: all served after ms", (r) => r.recovery.allServedMs],
  ];
  const cell = (v) => (typeof v === "number" ? fmt(v) : (v ?? "n/a"));
  console.log(`\n| | ${SETUPS.map((s) => s.label).join(" | ")} |`);
  console.log(`|---|${SETUPS.map(() => "---:").join("|")}|`);
  for (const [k, f] of rows) console.log(`| ${k} | ${runs.map((r) => cell(f(r))).join(" | ")} |`);
  console.log();
  SETUPS.forEach((s, i) => {
    const r = runs[i];
    console.log(`${s.label}: hot (edge backoff) answers by code: ${codes(r.saturated.hot.codes)}`);
    console.log(`${s.label}: flood (no backoff) answers by code: ${codes(r.flooded.hot.codes)}`);
    console.log(`${s.label}: herd requests per second: ${r.recovery.perSecond.join(" ")}`);
  });
} finally {
  bundle.remove();
}
