#!/usr/bin/env node
// Overload of one scope (docs/reliability.md "Overload"): what a hot scope's
// callers get, what a quiet scope's callers see meanwhile, and how relays
// following the edge's retry policy bring the hot scope back.
//
// For each Worker setting (load shedding on: MAX_INFLIGHT_PER_SCOPE default;
// off: 0), on the built bundle under Miniflare (as `npm run bench`):
//  1. quiet alone: Lookups in scope "quiet", closed loop, --quiet connections;
//  2. hot flood: --hot connections send Lookups to scope "hot" as fast as
//     answers come back (no backoff: a misbehaving client), while (1) runs
//     again; every hot answer is counted by code, with its latency;
//  3. recovery: --burst relays each make one Lookup in "hot" at the same
//     instant (a herd after an outage) and retry exactly as the edge's
//     RetryPolicy does (edge/src/rpc.rs: 5 s per attempt, 15 s deadline, 4
//     attempts, backoff 100 ms doubling to 2 s, full jitter in [b/2, b],
//     retrying UNAVAILABLE, timeouts and transport errors), reimplemented here
//     in Node; requests per second are counted until every relay is served.
// Prints the numbers side by side. Options: --seconds=N (each measured phase,
// default 10), --hot=N (default 256), --quiet=N (default 2), --burst=N (default 400).
import { parseArgs } from "node:util";
import { ns, relayToken } from "../test/e2e/lib/rpc.mjs";
import { buildBundle, startWorker } from "../test/e2e/lib/worker.mjs";
import { percentile } from "./lib/load.mjs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    hot: { type: "string", default: "256" },
    quiet: { type: "string", default: "2" },
    burst: { type: "string", default: "400" },
  },
});
const SECONDS = Number(args.seconds);
const HOT = Number(args.hot);
const QUIET = Number(args.quiet);
const BURST = Number(args.burst);
const EDGE_POLICY = { timeoutMs: 5000, deadlineMs: 15_000, maxAttempts: 4, initialBackoffMs: 100, maxBackoffMs: 2000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One Lookup; resolves to {code, ms} ("ok", a Connect code, "http_5xx", "timeout" or "transport"). */
async function lookup(url, token, scope, timeoutMs) {
  const t = performance.now();
  try {
    const res = await fetch(`${url}/moqworker.v1.CoordinatorService/Lookup`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ scope, namespace: ns("live/cam") }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let code = "ok";
    if (!res.ok) {
      try {
        code = JSON.parse(text).code;
      } catch {
        code = `http_${res.status}`;
      }
      if (res.status >= 500 && code !== "unavailable") code = `http_${res.status} ${code}`;
    }
    return { code, ms: performance.now() - t };
  } catch (e) {
    return { code: e?.name === "TimeoutError" ? "timeout" : "transport", ms: performance.now() - t };
  }
}

/** `n` connections in a closed loop until stop(); latency and code of every answer. */
function closedLoop(n, call) {
  let running = true;
  const lat = [];
  const codes = new Map();
  const loops = Array.from({ length: n }, async () => {
    while (running) {
      const r = await call();
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      lat.push(r.ms);
    }
  });
  const started = performance.now();
  return async () => {
    running = false;
    await Promise.all(loops);
    const secs = (performance.now() - started) / 1000;
    const sorted = lat.sort((a, b) => a - b);
    const total = [...codes.values()].reduce((a, b) => a + b, 0);
    return { rps: total / secs, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1), codes, total };
  };
}

/** One call as the edge makes it: RpcError::retryable for an idempotent call. */
async function edgeCall(call, onAttempt) {
  const p = EDGE_POLICY;
  const start = performance.now();
  let backoff = p.initialBackoffMs;
  for (let attempt = 1; ; attempt++) {
    const left = p.deadlineMs - (performance.now() - start);
    if (left <= 0) return { ok: false, attempts: attempt - 1 };
    onAttempt();
    const r = await call(Math.min(p.timeoutMs, left));
    if (r.code === "ok") return { ok: true, attempts: attempt, ms: performance.now() - start };
    const retryable = r.code === "unavailable" || r.code === "timeout" || r.code === "transport";
    if (!retryable || attempt >= p.maxAttempts) return { ok: false, attempts: attempt, code: r.code };
    const wait = backoff / 2 + Math.random() * (backoff / 2);
    if (performance.now() - start + wait >= p.deadlineMs) return { ok: false, attempts: attempt, code: r.code };
    await sleep(wait);
    backoff = Math.min(backoff * 2, p.maxBackoffMs);
  }
}

/**
 * One relay's attempts, one after another, each call retried as edgeCall
 * does: every attempt is an answer to count (closedLoop counts what this returns).
 */
function edgeLoop(call) {
  return async () => {
    let last;
    await edgeCall(
      async (timeoutMs) => {
        last = await call(timeoutMs);
        return last;
      },
      () => {},
    );
    return last;
  };
}

/** The herd: BURST relays at once, each with the edge's retries; requests per second until all are done. */
async function herd(url, token) {
  const t0 = performance.now();
  const perSecond = [];
  const results = await Promise.all(
    Array.from({ length: BURST }, () =>
      edgeCall(
        (timeoutMs) => lookup(url, token, "hot", timeoutMs),
        () => {
          const s = Math.floor((performance.now() - t0) / 1000);
          perSecond[s] = (perSecond[s] ?? 0) + 1;
        },
      ),
    ),
  );
  const served = results.filter((r) => r.ok);
  return {
    served: served.length,
    failed: results.length - served.length,
    attempts: results.reduce((a, r) => a + r.attempts, 0),
    allServedMs: served.length === results.length ? Math.max(...served.map((r) => r.ms)) : undefined,
    perSecond: Array.from(perSecond, (x) => x ?? 0),
  };
}

async function measure(bundle, shedding) {
  const vars = { LEASE_TTL_MS: "600000", ...(shedding ? {} : { MAX_INFLIGHT_PER_SCOPE: "0" }) };
  const w = await startWorker({ mode: "miniflare", bundle, vars });
  try {
    const token = await relayToken(w.url, "https://overload.bench:4443/");
    const call = (method, body) =>
      fetch(`${w.url}/moqworker.v1.CoordinatorService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    await call("Heartbeat", { epoch: "bench" });
    for (const scope of ["hot", "quiet"]) await call("RegisterNamespace", { scope, namespace: ns("live/cam") });
    const quietCall = () => lookup(w.url, token, "quiet", 30_000);

    let stop = closedLoop(QUIET, quietCall);
    await sleep(SECONDS * 1000);
    const alone = await stop();

    // Relays that back off as the edge does: shedding turns into fewer calls.
    const hotStop = closedLoop(
      HOT,
      edgeLoop((timeoutMs) => lookup(w.url, token, "hot", timeoutMs)),
    );
    await sleep(1000);
    stop = closedLoop(QUIET, quietCall);
    await sleep(SECONDS * 1000);
    const loaded = await stop();
    const hot = await hotStop();

    // A client that never backs off (what per-token rate limits are for).
    const floodStop = closedLoop(HOT, () => lookup(w.url, token, "hot", 30_000));
    await sleep(1000);
    stop = closedLoop(QUIET, quietCall);
    await sleep(SECONDS * 1000);
    const flooded = await stop();
    const flood = await floodStop();
    await sleep(1000);
    const recovery = await herd(w.url, token);
    return { alone, loaded, hot, flooded, flood, recovery };
  } finally {
    await w.stop();
  }
}

const fmt = (x) => (x === undefined || Number.isNaN(x) ? "n/a" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const codes = (m) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

const bundle = buildBundle();
try {
  console.log(
    `overload: ${HOT} hot connections (no backoff), ${QUIET} quiet connections, ${SECONDS} s per phase, herd of ${BURST} relays with the edge's retry policy`,
  );
  const on = await measure(bundle, true);
  const off = await measure(bundle, false);
  const rows = [
    ["quiet scope alone: req/s", on.alone.rps, off.alone.rps],
    ["quiet scope alone: p50 ms", on.alone.p50, off.alone.p50],
    ["quiet scope alone: p99 ms", on.alone.p99, off.alone.p99],
    ["quiet, hot saturated: req/s", on.loaded.rps, off.loaded.rps],
    ["quiet, hot saturated: p50 ms", on.loaded.p50, off.loaded.p50],
    ["quiet, hot saturated: p99 ms", on.loaded.p99, off.loaded.p99],
    ["quiet p99 loaded / alone", on.loaded.p99 / on.alone.p99, off.loaded.p99 / off.alone.p99],
    ["hot (edge backoff): calls/s", on.hot.rps, off.hot.rps],
    ["hot (edge backoff): p99 ms", on.hot.p99, off.hot.p99],
    ["hot (edge backoff): slowest ms", on.hot.max, off.hot.max],
    ["quiet, hot flooded: p99 ms", on.flooded.p99, off.flooded.p99],
    ["quiet p99 flooded / alone", on.flooded.p99 / on.alone.p99, off.flooded.p99 / off.alone.p99],
    ["flood (no backoff): answers/s", on.flood.rps, off.flood.rps],
    ["flood (no backoff): slowest ms", on.flood.max, off.flood.max],
    ["herd: attempts in all", on.recovery.attempts, off.recovery.attempts],
    ["herd: served / failed", `${on.recovery.served} / ${on.recovery.failed}`, `${off.recovery.served} / ${off.recovery.failed}`],
    ["herd: all served after ms", on.recovery.allServedMs, off.recovery.allServedMs],
  ];
  console.log(`\n| ${"".padEnd(30)} | shedding on (default) | shedding off (MAX_INFLIGHT_PER_SCOPE=0) |`);
  console.log(`|${"-".repeat(32)}|----------------------:|----------------------------------------:|`);
  for (const [k, a, b] of rows)
    console.log(
      `| ${k.padEnd(30)} | ${(typeof a === "number" ? fmt(a) : (a ?? "n/a")).padStart(21)} | ${(typeof b === "number" ? fmt(b) : (b ?? "n/a")).padStart(39)} |`,
    );
  console.log(`\nhot (edge backoff) answers by code, shedding on:  ${codes(on.hot.codes)}`);
  console.log(`hot (edge backoff) answers by code, shedding off: ${codes(off.hot.codes)}`);
  console.log(`flood (no backoff) answers by code, shedding on:  ${codes(on.flood.codes)}`);
  console.log(`flood (no backoff) answers by code, shedding off: ${codes(off.flood.codes)}`);
  console.log(`herd requests per second, shedding on:  ${on.recovery.perSecond.join(" ")}`);
  console.log(`herd requests per second, shedding off: ${off.recovery.perSecond.join(" ")}`);
} finally {
  bundle.remove();
}
