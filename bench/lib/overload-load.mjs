// The client side of bench/overload.mjs, run as a child process per role so
// that a quiet scope's latencies are never measured on the event loop of the
// process flooding the hot scope (and so each role can be pinned to a CPU).
//
//   node bench/lib/overload-load.mjs '{"kind":"closed","url":...,"token":...,"scope":"quiet","connections":2,"seconds":10}'
// prints one JSON result line. Kinds:
//   closed  `connections` callers in a closed loop (next call when the answer comes)
//   flood   the same on the hot scope: a misbehaving client, no backoff
//   edge    the same, each call retried as the edge does (edgeCall)
//   herd    `burst` relays calling at the same instant, each with the edge's
//           retries; requests per second until every one is served
import http from "node:http";
import { ns } from "../../test/e2e/lib/rpc.mjs";
import { percentile, send } from "./load.mjs";

/** edge/src/rpc.rs RetryPolicy: 5 s per attempt, 15 s per call, 4 attempts, backoff 100 ms doubling to 2 s. */
const EDGE_POLICY = { timeoutMs: 5000, deadlineMs: 15_000, maxAttempts: 4, initialBackoffMs: 100, maxBackoffMs: 2000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Lookups in one scope over keep-alive connections (bench/lib/load.mjs's
 * client, lighter than fetch, so a caller pinned beside a Worker takes less of
 * its CPU); each call resolves to {code, ms}: "ok", a Connect code,
 * "http_5xx", "timeout" or "transport".
 */
function lookups(url, token, scope, connections) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const base = new URL(url);
  const req = {
    method: "POST",
    path: "/moqworker.v1.CoordinatorService/Lookup",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: Buffer.from(JSON.stringify({ scope, namespace: ns("live/cam") })),
  };
  return async (timeoutMs) => {
    const t = performance.now();
    try {
      const { status, body } = await send(agent, base, req, AbortSignal.timeout(timeoutMs));
      let code = "ok";
      if (status !== 200) {
        try {
          code = JSON.parse(body.toString()).code;
        } catch {
          code = `http_${status}`;
        }
        if (status >= 500 && code !== "unavailable") code = `http_${status} ${code}`;
      }
      return { code, ms: performance.now() - t };
    } catch (e) {
      return { code: e?.name === "AbortError" || e?.name === "TimeoutError" ? "timeout" : "transport", ms: performance.now() - t };
    }
  };
}

/** `n` callers in a closed loop for `seconds`; latency and code of every answer. */
async function closedLoop(n, seconds, call) {
  const until = performance.now() + seconds * 1000;
  const lat = [];
  const codes = {};
  const started = performance.now();
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (performance.now() < until) {
        const r = await call();
        codes[r.code] = (codes[r.code] ?? 0) + 1;
        lat.push(r.ms);
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  const sorted = lat.sort((a, b) => a - b);
  const total = Object.values(codes).reduce((a, b) => a + b, 0);
  return { rps: total / secs, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1), codes, total };
}

/** One call as the edge makes it: RpcError::retryable for an idempotent call. */
async function edgeCall(call, onAttempt = () => {}) {
  const p = EDGE_POLICY;
  const start = performance.now();
  let backoff = p.initialBackoffMs;
  let last;
  for (let attempt = 1; ; attempt++) {
    const left = p.deadlineMs - (performance.now() - start);
    if (left <= 0) return { ok: false, attempts: attempt - 1, last };
    onAttempt();
    last = await call(Math.min(p.timeoutMs, left));
    if (last.code === "ok") return { ok: true, attempts: attempt, ms: performance.now() - start, last };
    const retryable = last.code === "unavailable" || last.code === "timeout" || last.code === "transport";
    if (!retryable || attempt >= p.maxAttempts) return { ok: false, attempts: attempt, last };
    const wait = backoff / 2 + Math.random() * (backoff / 2);
    if (performance.now() - start + wait >= p.deadlineMs) return { ok: false, attempts: attempt, last };
    await sleep(wait);
    backoff = Math.min(backoff * 2, p.maxBackoffMs);
  }
}

/** The herd: `burst` relays at once, each with the edge's retries; requests per second until all are done. */
async function herd(burst, call) {
  const t0 = performance.now();
  const perSecond = [];
  const results = await Promise.all(
    Array.from({ length: burst }, () =>
      edgeCall(call, () => {
        const s = Math.floor((performance.now() - t0) / 1000);
        perSecond[s] = (perSecond[s] ?? 0) + 1;
      }),
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

/** Runs one role (see the top of this file). */
export function runRole({ kind, url, token, scope, connections, seconds, burst }) {
  const once = lookups(url, token, scope, connections ?? burst);
  switch (kind) {
    case "closed":
    case "flood":
      return closedLoop(connections, seconds, () => once(30_000));
    case "edge":
      // A relay's calls one after another, each counted by its last attempt's
      // answer and timed from its first attempt (retries and backoff included).
      return closedLoop(connections, seconds, async () => {
        const t = performance.now();
        const { last } = await edgeCall(once);
        return { code: last.code, ms: performance.now() - t };
      });
    case "herd":
      return herd(burst, once);
    default:
      throw new Error(`overload-load: unknown kind ${kind}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runRole(JSON.parse(process.argv[2]));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
