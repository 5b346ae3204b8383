// A/B comparison of two builds of moq-worker on this machine: a git ref, and
// the same ref with a patch applied (or another ref). Both bundles run on bare
// workerd; operations alternate between A and B for several rounds so that
// background load hits both alike. Reports medians of req/s, p50 and workerd
// CPU per request (the least noise-sensitive number on a shared machine, with
// its spread over the rounds), and each operation's req/s as a fraction of
// GET /healthz on the same build (the runtime's ceiling, always measured).
// Each round also measures the runtime's floor for one Durable Object call
// (bench/floor/worker.js on its own bare workerd: a POST read and answered
// with no object; a POST whose body goes to a SQLite Durable Object's no-op
// method; the same plus one SQL SELECT; plus one
// SQL INSERT instead; plus RegisterNamespace's own INSERT into a table of its
// shape instead), shown as "floor:" rows against B's ceiling: no design
// making one such call per request can beat them.
//
//   npx node bench/ab.mjs --base HEAD~1 --other HEAD [--rounds 5] [--seconds 4] [--ops lookup-hit,register]
//   npx node bench/ab.mjs --base HEAD --patch my-change.diff
// --ops: lookup-hit, lookup-miss, register, auth+decode, register-held
// (a relay already holding 8,000 namespaces in the scope registers 300 more a round).
// --patch may be given several times, comma-separated.
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { benchArgs, positiveNumber } from "./lib/args.mjs";
import { runLoad } from "./lib/load.mjs";
import { floor, worker } from "./lib/ops.mjs";
import { RelayPool, WorkerRelay } from "./lib/relay.mjs";
import { buildBundle, cpuMs, floorBundle, sourceTree, startWorkerd } from "./lib/systems.mjs";

const opts = benchArgs({
  base: { type: "string", default: "HEAD" },
  patch: { type: "string" },
  other: { type: "string" },
  rounds: { type: "string" },
  seconds: { type: "string" },
  concurrency: { type: "string" },
  ops: { type: "string", default: "lookup-hit,register" },
});
const { base, patch, other } = opts;
const rounds = positiveNumber(opts, "rounds", 5);
const seconds = positiveNumber(opts, "seconds", 4);
const concurrency = positiveNumber(opts, "concurrency", 16);
// GET /healthz is always measured: the runtime's own ceiling for this client and concurrency.
const opNames = ["healthz", ...opts.ops.split(",").filter((n) => n !== "healthz")];
// register-held: RegisterNamespace by a relay that already holds HELD namespaces in the scope, HELD_BATCH calls a round.
const HELD = 8000;
const HELD_BATCH = 300;
if (!patch && !other) throw new Error("give --patch FILE or --other REF");

const OPS = {
  "lookup-hit": (auth, n) => worker.lookupHit({ auth, scopeOf: () => "ab", set: "ab", registered: n }),
  "lookup-miss": (auth) => worker.lookupMiss({ auth, scopeOf: () => "ab", set: "ab" }),
  register: (auth) => worker.register({ auth, scopeOf: () => "ab", set: `abr${Math.random().toString(36).slice(2, 8)}` }),
  "auth+decode": (auth) => worker.invalidNs({ auth, scopeOf: () => "ab" }),
  "register-held": () => undefined, // count-based, see below
  healthz: () => worker.healthz(),
};

const srcA = sourceTree(base);
const srcB = sourceTree(other ?? base);
if (patch) for (const p of patch.split(",")) execFileSync("git", ["apply", resolve(p)], { cwd: srcB.root, stdio: "inherit" });
const label = { A: base, B: other ?? `${base} + ${patch}` };
const FLOOR_OPS = [floor.post(), floor.noop(), floor.sql(), floor.insert(), floor.claim()];
const results = { A: {}, B: {}, floor: {} };
const systems = {};
const bundles = {};
/** `op` on `w` for `seconds` after a short warm-up, with w's CPU per request. */
const timed = (w, op) =>
  runLoad({ baseUrl: w.url, op, concurrency, warmupMs: 500, durationMs: seconds * 1000, serverCpuMs: () => cpuMs(w.pids()) });
/** One round's result of `name` on system `k`, kept and printed. */
function keep(k, name, res, line) {
  results[k][name] ??= [];
  results[k][name].push(res);
  console.error(`${line}: ${res.rps} req/s, p50 ${res.p50Ms} ms, ${res.serverCpuUsPerReq} µs CPU/req`);
}
// A relay whose heartbeat failed throws on stop: rethrown after everything is stopped.
const failures = [];
try {
  // Both bundles first: building blocks this process (execFileSync), and a
  // relay that cannot heartbeat meanwhile would lose its lease and its rows.
  bundles.A = buildBundle(srcA.root);
  bundles.B = buildBundle(srcB.root);
  for (const k of ["A", "B"]) {
    const bundle = bundles[k];
    const w = await startWorkerd({ bundle });
    const relay = await new RelayPool(w.url, "relay-ab", 16).start();
    await runLoad({
      baseUrl: w.url,
      op: worker.register({ auth: relay.auth, scopeOf: () => "ab", set: "ab" }),
      concurrency: 32,
      total: 2000,
    });
    let held;
    if (opNames.includes("register-held")) {
      // One relay already holding HELD namespaces in its scope (quota 10,000).
      held = { relay: await new WorkerRelay(w.url, "https://relay-held.bench.test/").start(), next: HELD };
      held.op = worker.register({ auth: held.relay.auth, scopeOf: () => "abq", set: "abq" });
      await runLoad({ baseUrl: w.url, op: held.op, concurrency: 32, total: HELD });
    }
    systems[k] = { bundle, w, relay, held };
  }
  bundles.floor = floorBundle();
  const floorWorkerd = await startWorkerd({ bundle: bundles.floor });
  systems.floor = { w: floorWorkerd };
  for (let r = 0; r < rounds; r++) {
    for (const name of opNames) {
      for (const k of r % 2 === 0 ? ["A", "B"] : ["B", "A"]) {
        const { w, relay, held } = systems[k];
        const res =
          name === "register-held"
            ? await runLoad({
                baseUrl: w.url,
                op: held.op,
                concurrency,
                total: HELD_BATCH,
                start: held.next,
                serverCpuMs: () => cpuMs(w.pids()),
              })
            : await timed(w, OPS[name](relay.auth, 2000));
        if (name === "register-held") held.next += HELD_BATCH;
        keep(k, name, res, `round ${r + 1} ${name} ${k}`);
      }
    }
    for (const op of FLOOR_OPS) keep("floor", op.name, await timed(systems.floor.w, op), `round ${r + 1} ${op.name}`);
  }
} finally {
  for (const s of Object.values(systems)) {
    for (const r of [s.relay, s.held?.relay]) {
      try {
        r?.stop();
      } catch (e) {
        failures.push(e);
      }
    }
    await s.w.stop();
  }
  for (const b of Object.values(bundles)) b.remove();
  srcA.remove();
  srcB.remove();
}
if (failures.length) throw failures[0];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
console.log(
  `A = ${label.A}\nB = ${label.B}\n${rounds} rounds × ${seconds}s, concurrency ${concurrency}, bare workerd; medians, CPU min–max over rounds\n`,
);
console.log(
  "| operation | A req/s | B req/s | B/A | A ×ceiling | B ×ceiling | A p50 ms | B p50 ms | A CPU µs/req | B CPU µs/req | B/A CPU | B/A CPU per round |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
const m = (k, name, f) => median(results[k][name].map(f));
const range = (k, name) => {
  const xs = results[k][name].map((x) => x.serverCpuUsPerReq);
  return `${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))}`;
};
// The rounds ran A and B back to back: the ratio within each round cancels most background load. Median (min–max).
const paired = (name) => {
  const xs = results.A[name].map((a, i) => results.B[name][i].serverCpuUsPerReq / a.serverCpuUsPerReq);
  return `${median(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
};
// ×ceiling: the operation's req/s over the same build's GET /healthz req/s (both medians).
const ceiling = { A: m("A", "healthz", (x) => x.rps), B: m("B", "healthz", (x) => x.rps) };
for (const name of opNames) {
  const [ar, br] = [m("A", name, (x) => x.rps), m("B", name, (x) => x.rps)];
  const [ac, bc] = [m("A", name, (x) => x.serverCpuUsPerReq), m("B", name, (x) => x.serverCpuUsPerReq)];
  console.log(
    `| ${name} | ${ar} | ${br} | ${(br / ar).toFixed(2)}× | ${(ar / ceiling.A).toFixed(2)}× | ${(br / ceiling.B).toFixed(2)}× | ` +
      `${m("A", name, (x) => x.p50Ms)} | ${m("B", name, (x) => x.p50Ms)} | ${ac} (${range("A", name)}) | ${bc} (${range("B", name)}) | ${(bc / ac).toFixed(2)}× | ${paired(name)} |`,
  );
}
// The floor: measured once per round, shown in the B columns against B's ceiling.
for (const op of FLOOR_OPS) {
  const br = m("floor", op.name, (x) => x.rps);
  const bc = m("floor", op.name, (x) => x.serverCpuUsPerReq);
  console.log(
    `| ${op.name} | — | ${br} | — | — | ${(br / ceiling.B).toFixed(2)}× | — | ${m("floor", op.name, (x) => x.p50Ms)} | — | ${bc} (${range("floor", op.name)}) | — | — |`,
  );
}
