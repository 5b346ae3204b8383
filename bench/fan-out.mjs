// The write cost of the watch channel's fan-out (issues 12, 27):
// RegisterNamespace latency in a scope watched by 0, 1, WATCH_BRANCHES and 100
// relays (one socket each), one call at a time, and how long until every
// socket has the invalidation. A change is one call from the scope's object to
// each branch in use (watch/root.ts) and one frame per socket from the branch.
// The WATCH_BRANCHES row puts one relay on each branch: the most the scope's
// object ever does for a change, whatever the number of watchers.
//
// With --one-branch N (issue 27), N relays all on one branch: what one branch
// of a scope watched by N × WATCH_BRANCHES relays does for every change, in
// parallel with the others on Cloudflare (here all objects share one thread).
//
// Called by bench/run.mjs on its bare-workerd setup (results under
// relaySeen.fanOut); alone: npx node bench/fan-out.mjs [--quick]
// [--one-branch N] (run it as `taskset -c 1 ...`: workerd is pinned to CPU 0).
import { registerTypeScriptHooks } from "../bin/ts-hooks.mjs";
import { openWatch } from "../test/e2e/lib/watch.mjs";
import { startWorker } from "../test/e2e/lib/worker.mjs";
import { pool } from "./lib/load.mjs";
import { buildBundle, coordinatorCall, cpuMs, relayToken } from "./lib/systems.mjs";

registerTypeScriptHooks();
const { branchIndex } = await import("../src/watch/branches.ts");
const { SETTINGS } = await import("../src/settings.ts");

/** The Worker's default WATCH_BRANCHES (wrangler.toml). */
const BRANCHES = SETTINGS.WATCH_BRANCHES.default;

/** `n` watching relays' URLs: the first covering every branch once, or (oneBranch) all on branch 0. */
function watcherUrls(n, tag, oneBranch) {
  const urls = [];
  const used = new Set();
  for (let i = 0; urls.length < n; i++) {
    const url = `https://fan-out-${tag}-${i}.bench.example/`;
    const branch = branchIndex(url, BRANCHES);
    if (oneBranch ? branch !== 0 : used.has(branch) && used.size < BRANCHES) continue;
    used.add(branch);
    urls.push(url);
  }
  return { urls, branches: used.size };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const round = (x) => +x.toFixed(3);

/**
 * Rows { watchers, registers, p50Ms, p99Ms, deliveredP50Ms, deliveredP99Ms }:
 * the call's latency, and the time from sending it to the invalidation on
 * every socket (undefined with no watchers); with `pids` (the server's
 * processes) also the server's CPU per register, frames included. The
 * sockets' client runs in this process: with 100 sockets, reading their
 * frames delays this process's reading of the call's answer, so p50Ms
 * includes client time; workerdCpuMsPerRegister does not.
 */
export async function fanOut({ url, pids, watcherCounts = [0, 1, BRANCHES, 100], registers = 200, warmup = 20, log = () => {} }) {
  const relayUrl = "https://fan-out.bench.example/";
  const token = await relayToken(url, relayUrl);
  const rows = [];
  let warmed = false;
  // One throwaway pass first: the Worker's and the load generator's code warm, the relay enlisted.
  for (const count of [watcherCounts[0], ...watcherCounts]) {
    const { watchers, oneBranch = false } = typeof count === "number" ? { watchers: count } : count;
    const scope = `fan-out-${watchers}-${Math.random().toString(36).slice(2, 8)}`;
    // Per seq: how many sockets saw it, when the last did, and who waits for all of them.
    const arrivals = new Map();
    const arrival = (seq) => {
      if (!arrivals.has(seq)) arrivals.set(seq, { count: 0, last: 0, done: undefined });
      return arrivals.get(seq);
    };
    const { urls, branches } = watcherUrls(watchers, scope, oneBranch);
    const sockets = [];
    await pool(urls, 50, async (u, i) => {
      sockets[i] = await openWatch(url, await relayToken(url, u), scope, {
        onEvent: (e, at) => {
          const a = arrival(e.seq);
          a.count++;
          a.last = at;
          if (a.count === watchers) a.done?.();
        },
      });
    });
    for (const s of sockets) await s.next();
    const latencies = [];
    const delivered = [];
    let cpu0;
    for (let i = 0; i < warmup + registers; i++) {
      if (i === warmup) cpu0 = pids ? cpuMs(pids()) : undefined;
      const seq = i + 1; // one event per new registration
      const a = arrival(seq);
      const all =
        watchers === 0
          ? undefined
          : new Promise((r) => {
              a.done = r;
            });
      if (a.count === watchers) a.done?.();
      const t0 = performance.now();
      const { status, json } = await coordinatorCall(url, token, "RegisterNamespace", {
        scope,
        namespace: { fields: [Buffer.from(`n${i}`).toString("base64")] },
      });
      const t1 = performance.now();
      if (status !== 200) throw new Error(`fan-out RegisterNamespace: ${status} ${JSON.stringify(json)}`);
      if (all) {
        let timer;
        await Promise.race([
          all,
          new Promise(
            (_, no) => (timer = setTimeout(() => no(new Error(`fan-out: seq ${seq} not on all ${watchers} sockets in 10 s`)), 10_000)),
          ),
        ]);
        clearTimeout(timer);
      }
      if (i < warmup) continue;
      latencies.push(t1 - t0);
      if (all) delivered.push(a.last - t0);
    }
    const cpu = cpu0 === undefined ? undefined : cpuMs(pids()) - cpu0;
    for (const s of sockets) s.close();
    latencies.sort((a, b) => a - b);
    delivered.sort((a, b) => a - b);
    const row = {
      watchers,
      branches,
      ...(oneBranch ? { oneBranch } : {}),
      registers,
      p50Ms: round(pct(latencies, 50)),
      p99Ms: round(pct(latencies, 99)),
      ...(cpu === undefined ? {} : { workerdCpuMsPerRegister: round(cpu / registers) }),
      ...(watchers > 0 ? { deliveredP50Ms: round(pct(delivered, 50)), deliveredP99Ms: round(pct(delivered, 99)) } : {}),
    };
    log(
      `fan-out: ${watchers} watchers on ${branches} branches: register p50 ${row.p50Ms} ms p99 ${row.p99Ms} ms, workerd CPU ${row.workerdCpuMsPerRegister ?? "-"} ms; on every socket p50 ${row.deliveredP50Ms ?? "-"} ms p99 ${row.deliveredP99Ms ?? "-"} ms`,
    );
    if (warmed) rows.push(row);
    warmed = true;
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes("--quick");
  const at = process.argv.indexOf("--one-branch");
  const oneBranch = at < 0 ? undefined : Number(process.argv[at + 1]);
  const bundle = buildBundle();
  const w = await startWorker({ mode: "workerd", bundle, cpus: oneBranch ? "0" : undefined });
  try {
    const watcherCounts = oneBranch ? [0, { watchers: oneBranch, oneBranch: true }] : undefined;
    const rows = await fanOut({ url: w.url, pids: w.pids, watcherCounts, registers: quick ? 50 : 200, log: console.error });
    console.log(JSON.stringify(rows, null, 2));
  } finally {
    await w.stop();
    bundle.remove();
  }
}
