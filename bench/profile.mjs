// Profiles moq-worker under load and says where its time goes.
//
//   npm run bench:profile [-- --op lookup-hit|lookup-miss|register] [--seconds N] [--ref GIT-REF] [--no-perf]
//
// Serves the built bundle on bare workerd with its inspector on, seeds a
// scope, then runs the operation at concurrency 16 twice: once under V8's CPU
// profiler (JS, attributed to bundled modules), once under Linux perf (the
// whole workerd process, native frames by subsystem) when perf is installed.
// `npm run bench` calls profileWorker() too and stores its output.
import { fileURLToPath } from "node:url";
import { benchArgs, positiveNumber } from "./lib/args.mjs";
import { runLoad } from "./lib/load.mjs";
import { worker } from "./lib/ops.mjs";
import { attribute, cpuProfile, perfAvailable, perfProfile, readBundle, topFunctions } from "./lib/profile.mjs";
import { RelayPool } from "./lib/relay.mjs";
import { buildBundle, cpuMs, freePort, sourceTree, startWorkerd } from "./lib/systems.mjs";

const OPS = {
  "lookup-hit": (auth, scopeOf, n) => worker.lookupHit({ auth, scopeOf, set: "pf", registered: n }),
  "lookup-miss": (auth, scopeOf) => worker.lookupMiss({ auth, scopeOf, set: "pf" }),
  register: (auth, scopeOf) => worker.register({ auth, scopeOf, set: "pfr" }),
};

/**
 * @param {object} o
 * @param {object} o.bundle   from buildBundle()
 * @param {string[]} o.ops    keys of OPS
 * @param {number} o.seconds  measured seconds per pass
 * @param {boolean} [o.perf]  also run the perf pass (if perf exists)
 * @param {(...m: unknown[]) => void} [o.log]
 */
export async function profileWorker({
  bundle,
  ops,
  layers = [],
  seconds,
  warmupMs = 1000,
  perf = true,
  concurrency = 16,
  seedCount = 2000,
  log = () => {},
}) {
  const inspectorPort = await freePort();
  const w = await startWorkerd({ bundle, inspectorPort });
  const out = { server: "bare workerd, built bundle", concurrency, seconds, layers: [], ops: {} };
  let relay;
  try {
    // Requests spread over relays, as in a network (and under per-relay quotas).
    relay = await new RelayPool(w.url, "relay-profile", 16).start();
    const scopeOf = () => "profile";
    await runLoad({ baseUrl: w.url, op: worker.register({ auth: relay.auth, scopeOf, set: "pf" }), concurrency: 32, total: seedCount });
    const measure = (op, c) =>
      runLoad({ baseUrl: w.url, op, concurrency: c, warmupMs, durationMs: seconds * 1000, serverCpuMs: () => cpuMs(w.pids()) });

    // The same kind of request, stopped at successive layers (no profiler attached).
    const layerOps = [
      ["http", worker.healthz()],
      ["route", worker.noAuth({ scopeOf, set: "pf" })],
      ["auth+decode", worker.invalidNs({ auth: relay.auth, scopeOf })],
      ["lookup", worker.lookupHit({ auth: relay.auth, scopeOf, set: "pf", registered: seedCount })],
    ];
    for (const c of layers) {
      for (const [layer, op] of layerOps) out.layers.push({ layer, ...(await measure(op, c)) });
    }

    const source = readBundle(bundle);
    const usePerf = perf && perfAvailable();
    for (const name of ops) {
      const op = OPS[name](relay.auth, scopeOf, seedCount);
      const load = () => measure(op, concurrency);
      log(`profile: ${name}, V8 CPU profile`);
      const { profile, result } = await cpuProfile({ inspectorPort, target: "main", during: load });
      const entry = {
        v8: {
          load: pick(result),
          ...attribute(profile, source),
          top: topFunctions(profile, source),
          inclusive: topFunctions(profile, source, 20, { inclusive: true }),
        },
      };
      if (usePerf) {
        log(`profile: ${name}, perf`);
        const p = await perfProfile({ pid: w.pids()[0], during: load });
        entry.perf = { load: pick(p.result), samples: p.samples, areas: p.areas };
      }
      out.ops[name] = entry;
    }
  } finally {
    relay?.stop();
    await w.stop();
  }
  return out;
}

const pick = (r) => ({
  rps: r.rps,
  p50Ms: r.p50Ms,
  p99Ms: r.p99Ms,
  serverCpuUsPerReq: r.serverCpuUsPerReq,
  requests: r.requests,
  errors: r.errors,
});

export function renderLayers(p) {
  if (!p.layers?.length) return "";
  const names = {
    http: "GET /healthz: HTTP + Hono",
    route: "Lookup, no token: + Connect route, error path",
    "auth+decode": "Lookup, empty namespace: + JWT verify, protobuf decode, validation",
    lookup: "Lookup hit: + Durable Object call + SQL",
  };
  const cs = [...new Set(p.layers.map((x) => x.concurrency))];
  const f = (x) => (x === undefined ? "–" : x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(x < 10 ? 2 : 1));
  const lines = [
    `| layer (${p.server}) | req/s @${cs[0]} | p50 ms @${cs[0]} | workerd CPU µs/req | CPU added by the layer |${cs
      .slice(1)
      .map((c) => ` p50 ms @${c} |`)
      .join("")}`,
  ];
  lines.push(
    `|---|---:|---:|---:|---:|${cs
      .slice(1)
      .map(() => "---:|")
      .join("")}`,
  );
  let prev;
  for (const layer of [...new Set(p.layers.map((x) => x.layer))]) {
    const at = (c) => p.layers.find((y) => y.layer === layer && y.concurrency === c);
    const m = at(cs[0]);
    const added = prev === undefined ? m.serverCpuUsPerReq : m.serverCpuUsPerReq - prev;
    prev = m.serverCpuUsPerReq;
    lines.push(
      `| ${names[layer] ?? layer} | ${f(m.rps)} | ${f(m.p50Ms)} | ${f(m.serverCpuUsPerReq)} | ${added >= 0 ? "+" : ""}${f(added)} |${cs
        .slice(1)
        .map((c) => ` ${f(at(c).p50Ms)} |`)
        .join("")}`,
    );
  }
  return lines.join("\n");
}

export function renderProfile(p) {
  const lines = [];
  for (const [name, e] of Object.entries(p.ops)) {
    lines.push(
      `\n**${name}**: ${e.v8.load.rps} req/s, ${e.v8.load.serverCpuUsPerReq} µs workerd CPU per request (under the profiler); isolate busy ${(e.v8.busyShare * 100).toFixed(0)}% of samples\n`,
    );
    lines.push("| JS profile: area (share of busy isolate time) | share |");
    lines.push("|---|---:|");
    for (const a of e.v8.areas) lines.push(`| ${a.area} | ${(a.share * 100).toFixed(1)}% |`);
    if (e.perf) {
      lines.push("");
      lines.push("| perf: workerd process, native subsystem (all threads) | share |");
      lines.push("|---|---:|");
      for (const a of e.perf.areas) lines.push(`| ${a.area} | ${(a.share * 100).toFixed(1)}% |`);
    }
    lines.push("");
    lines.push("| top self-time functions (JS profile) | share |");
    lines.push("|---|---:|");
    for (const f of e.v8.top.slice(0, 12)) lines.push(`| \`${f.fn}\` | ${(f.share * 100).toFixed(1)}% |`);
    if (e.v8.inclusive) {
      lines.push("");
      lines.push("| functions with what they call (JS profile, inclusive) | share |");
      lines.push("|---|---:|");
      for (const f of e.v8.inclusive) lines.push(`| \`${f.fn}\` | ${(f.share * 100).toFixed(1)}% |`);
    }
  }
  return lines.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const opts = benchArgs({
    op: { type: "string" },
    ref: { type: "string" },
    seconds: { type: "string" },
    "no-perf": { type: "boolean", default: false },
  });
  const ops = opts.op ? [opts.op] : ["lookup-hit", "register"];
  for (const o of ops) if (!OPS[o]) throw new Error(`unknown --op ${o} (${Object.keys(OPS).join(", ")})`);
  const src = sourceTree(opts.ref);
  const bundle = buildBundle(src.root);
  try {
    const p = await profileWorker({
      bundle,
      ops,
      layers: [16],
      seconds: positiveNumber(opts, "seconds", 8),
      perf: !opts["no-perf"],
      log: (...m) => console.error(...m),
    });
    console.log(renderLayers(p));
    console.log(renderProfile(p));
  } finally {
    bundle.remove();
    src.remove();
  }
}
