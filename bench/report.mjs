// Renders a bench results JSON as Markdown tables (what `npm run bench`
// prints, and what docs/performance.md quotes).
//   npx node bench/report.mjs [bench/results/latest.json]
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { renderLayers, renderProfile } from "./profile.mjs";

const f1 = (x) => (x === undefined || Number.isNaN(x) ? "–" : x >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(1));
const ms = (x) => (x === undefined || Number.isNaN(x) ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
const us = (x) => (x === undefined || Number.isNaN(x) ? "–" : Math.round(x).toLocaleString("en-US"));
const ratio = (x) => (x === undefined || !Number.isFinite(x) ? "–" : x >= 10 ? `${x.toFixed(0)}×` : `${x.toFixed(2)}×`);

function table(head, rows) {
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_h, i) => (i === 0 ? "---" : "---:")).join("|")}|`];
  for (const r of rows) lines.push(`| ${r.join(" | ")} |`);
  return lines.join("\n");
}

export function renderMarkdown(r) {
  const out = [];
  const m = r.machine;
  const v = r.versions;
  const p = r.parameters;
  out.push(`### moq-worker benchmarks (${r.mode} run, ${r.startedAt?.slice(0, 16).replace("T", " ")} UTC)`);
  out.push(
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, ${m.os}; load average at start ${m.loadavg.join(" ")}, at end ${m.loadavgEnd?.join(" ") ?? "?"}. ` +
      `Versions: node ${v.node}, wrangler ${v.wrangler}, miniflare ${v.miniflare}, workerd ${v.workerd}, ${v.moqApi}, redis ${v.redis}, moq-worker ${v.moqWorkerCommit}${v.moqWorkerDirty ? "+dirty" : ""}${v.moqWorkerPatches?.length ? ` + ${v.moqWorkerPatches.join(" + ")}` : ""}. ` +
      `Closed-loop load, ${p.concurrency} connections unless noted, ${p.warmupMs / 1000}s warm-up + ${p.durationMs / 1000}s measured per row; load generator and servers share the machine. ` +
      `CPU µs/req: user+system CPU of the server's processes (all threads; moq-api counts moq-api + redis-server) per request.`,
  );

  const h = r.headline;
  if (h) {
    const rows = h.rows;
    const get = (system, op, c) => rows.find((x) => x.system === system && x.op === op && x.concurrency === c);
    for (const c of [...new Set(rows.map((x) => x.concurrency))]) {
      out.push(
        `\n**moq-worker vs moq-api + Redis, concurrency ${c}** (${h.seeded.toLocaleString("en-US")} namespaces registered; lookups pick among them at random)\n`,
      );
      const body = [];
      for (const op of ["register", "lookup-hit", "lookup-miss"]) {
        const w = get("moq-worker", op, c);
        const a = get("moq-api", op, c);
        if (!w || !a) continue;
        body.push([
          op,
          f1(w.rps),
          ms(w.p50Ms),
          ms(w.p99Ms),
          us(w.serverCpuUsPerReq),
          f1(a.rps),
          ms(a.p50Ms),
          ms(a.p99Ms),
          us(a.serverCpuUsPerReq),
          ratio(w.rps / a.rps),
          ratio(w.p50Ms / a.p50Ms),
          ratio(w.p99Ms / a.p99Ms),
          ratio(w.serverCpuUsPerReq / a.serverCpuUsPerReq),
        ]);
      }
      out.push(
        table(
          [
            "operation",
            "moq-worker req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "moq-api req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "req/s worker/api",
            "p50 worker/api",
            "p99 worker/api",
            "CPU/req worker/api",
          ],
          body,
        ),
      );
      const extra = rows.filter(
        (x) => x.concurrency === c && x.system !== "moq-worker" && x.system !== "moq-api" && !x.op.startsWith("GET /healthz"),
      );
      if (extra.length) {
        out.push("");
        out.push(
          table(
            ["other moq-worker setups", "operation", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "req/s vs moq-api"],
            extra.map((x) => {
              const a = get("moq-api", x.op, c);
              return [x.system, x.op, f1(x.rps), ms(x.p50Ms), ms(x.p99Ms), us(x.serverCpuUsPerReq), a ? ratio(x.rps / a.rps) : "–"];
            }),
          ),
        );
      }
    }
  }

  if (h?.ceiling?.length) {
    out.push(`\n**Against the runtime's ceiling** (GET /healthz on the same server, same client, concurrency ${h.concurrency})\n`);
    out.push(
      table(
        ["setup", "operation", "req/s", "GET /healthz req/s", "fraction"],
        h.ceiling.map((x) => [x.system, x.op, f1(x.rps), f1(x.healthzRps), ratio(x.fraction)]),
      ),
    );
  }

  const s = r.scale;
  if (s) {
    out.push(
      `\n**Lookup in one scope vs registered namespaces** (moq-worker on ${s.server ?? "workerd"}; namespaces of 3–5 fields; concurrency ${s.concurrency}${s.lookup[0]?.hitUnloaded ? "; and concurrency 1" : ""})\n`,
    );
    const unl = !!s.lookup[0]?.hitUnloaded;
    out.push(
      table(
        [
          "namespaces",
          "hit req/s",
          "hit p50",
          "hit p99",
          "miss req/s",
          "miss p50",
          "miss p99",
          ...(unl ? ["hit p50 @1", "hit p99 @1"] : []),
        ],
        s.lookup.map((x) => [
          x.namespaces.toLocaleString("en-US"),
          f1(x.hit.rps),
          ms(x.hit.p50Ms),
          ms(x.hit.p99Ms),
          f1(x.miss.rps),
          ms(x.miss.p50Ms),
          ms(x.miss.p99Ms),
          ...(unl ? [ms(x.hitUnloaded.p50Ms), ms(x.hitUnloaded.p99Ms)] : []),
        ]),
      ),
    );
    const lr = s.lookupRatio;
    out.push(
      `\nLargest/smallest (${lr.to.toLocaleString("en-US")} / ${lr.from.toLocaleString("en-US")} namespaces): hit p50 ${ratio(lr.p50)}, p99 ${ratio(lr.p99)}, req/s ${ratio(lr.rps)}${lr.p50Unloaded ? `; at concurrency 1 p50 ${ratio(lr.p50Unloaded)}, p99 ${ratio(lr.p99Unloaded)}` : ""}.`,
    );

    out.push(`\n**LookupNamespaceSubscribers vs subscribed prefixes** (one scope; each lookup matches one prefix)\n`);
    out.push(
      table(
        ["prefixes", "req/s", "p50 ms", "p99 ms"],
        s.subscribers.map((x) => [x.prefixes.toLocaleString("en-US"), f1(x.result.rps), ms(x.result.p50Ms), ms(x.result.p99Ms)]),
      ),
    );
    const sr = s.subscribersRatio;
    out.push(
      `\nLargest/smallest (${sr.to.toLocaleString("en-US")} / ${sr.from.toLocaleString("en-US")}): p50 ${ratio(sr.p50)}, p99 ${ratio(sr.p99)}, req/s ${ratio(sr.rps)}.`,
    );

    if (s.registerVsHeld?.length) {
      out.push(
        `\n**RegisterNamespace vs namespaces the calling relay already holds in the scope** (${s.registerVsHeld[0].result.requests} calls each, concurrency ${s.registerVsHeld[0].result.concurrency})\n`,
      );
      out.push(
        table(
          ["held by the relay", "req/s", "p50 ms", "p99 ms", "workerd CPU µs/req"],
          s.registerVsHeld.map((x) => [
            x.held.toLocaleString("en-US"),
            f1(x.result.rps),
            ms(x.result.p50Ms),
            ms(x.result.p99Ms),
            us(x.result.serverCpuUsPerReq),
          ]),
        ),
      );
      const hr = s.registerVsHeldRatio;
      out.push(
        `\nLargest/smallest (${hr.to.toLocaleString("en-US")} / ${hr.from.toLocaleString("en-US")} held): CPU per call ${ratio(hr.cpu)}, p50 ${ratio(hr.p50)}, req/s ${ratio(hr.rps)}.`,
      );
    }

    out.push(`\n**1 scope vs 8 scopes** (same ${s.concurrency} connections, requests spread round-robin over the scopes)\n`);
    out.push(
      table(
        ["scopes", "Lookup req/s", "p50 ms", "p99 ms", "RegisterNamespace req/s", "p50 ms", "p99 ms"],
        s.scopes.map((x) => [
          x.scopes,
          f1(x.lookup.rps),
          ms(x.lookup.p50Ms),
          ms(x.lookup.p99Ms),
          f1(x.register.rps),
          ms(x.register.p50Ms),
          ms(x.register.p99Ms),
        ]),
      ),
    );
  }

  const hb = r.heartbeat;
  if (hb) {
    out.push(
      `\n**Keep-alive traffic of one relay holding ${hb.registrations.toLocaleString("en-US")} registrations** (measured over ${(hb.windowMs / 1000).toFixed(0)}s, per minute)\n`,
    );
    out.push(
      table(
        ["system", "pattern", "requests/min measured", "expected", "dead relay's entries expire after"],
        [
          [
            "moq-worker",
            `1 Heartbeat per ${hb.moqWorker.intervalMs} ms (lease ${hb.moqWorker.leaseTtlMs / 1000}s), any number of registrations`,
            f1(hb.moqWorker.perMinute),
            f1(hb.moqWorker.expectedPerMinute),
            `${hb.moqWorker.leaseTtlMs / 1000}s`,
          ],
          [
            "moq-api",
            `1 PATCH per key per ${hb.moqApi.refreshPeriodMs / 1000}s (key TTL ${hb.moqApi.keyTtlMs / 1000}s)`,
            f1(hb.moqApi.perMinute),
            f1(hb.moqApi.expectedPerMinute),
            `${hb.moqApi.keyTtlMs / 1000}s`,
          ],
          [
            "moq-api at moq-worker's TTL",
            `1 per key per ${hb.atEqualTtl.ttlMs / 2000}s`,
            "–",
            f1(hb.atEqualTtl.moqApiPerMinute),
            `${hb.atEqualTtl.ttlMs / 1000}s`,
          ],
        ],
      ),
    );
    const e = hb.moqApi.refreshEffectOnExpiry;
    if (e) {
      out.push(
        `\nmoq-api refresh check: a key registered 3s earlier had TTL ${e.beforeRefresh}s; after the relay's refresh (PATCH, status ${e.patch.status}) ${e.patch.ttlAfter}s` +
          ` (${e.patch.renews ? "renewed" : "NOT renewed"}). A second POST of the same origin (what the older moq-relay-ietf \`Api\`/\`Refresh\` type sends) answered ${e.post.status} and left it at ${e.post.ttlAfter}s (${e.post.renews ? "renewed" : "not renewed"}).`,
      );
    }
  }

  const fine = (v) => (v < 0.1 ? v.toFixed(4) : ms(v));
  const rs = r.relaySeen;
  if (rs?.rows) {
    out.push(`\n**Routing as the relay sees it** (${rs.method})\n`);
    out.push(
      table(
        ["system", "lookup_track ops/s", "p50 ms", "p99 ms"],
        // Cache hits take microseconds: more digits than ms() keeps.
        rs.rows.map((x) => [x.system, Math.round(x.opsPerSec).toLocaleString("en-US"), fine(x.p50Ms), fine(x.p99Ms)]),
      ),
    );
    out.push(
      `\nCached edge ÷ ApiCoordinator: ${rs.ratio.toFixed(1)}× the throughput, ${rs.p50Ratio.toFixed(3)}× the p50. ` +
        `Propagation of a move (A → C, until B's cached lookup answers C, ${rs.propagation.trials} trials): p50 ${ms(rs.propagation.p50Ms)} ms, p99 ${ms(rs.propagation.p99Ms)} ms. ` +
        `Worker calls per 1,000 viewer joins of one pulled track: ${rs.joins.per1000} (${rs.joins.workerCalls} for ${rs.joins.joins}).`,
    );
  }

  const fo = r.relaySeen?.fanOut;
  if (fo) {
    out.push(`\n**Write cost of the watch channel's fan-out** (${fo.setup})\n`);
    out.push(
      table(
        ["watch sockets", "RegisterNamespace p50 ms", "p99 ms", "workerd CPU ms per register", "on every socket p50 ms", "p99 ms"],
        fo.rows.map((x) => [
          String(x.watchers),
          ms(x.p50Ms),
          ms(x.p99Ms),
          ms(x.workerdCpuMsPerRegister),
          ms(x.deliveredP50Ms),
          ms(x.deliveredP99Ms),
        ]),
      ),
    );
  }

  const tk = r.tokens;
  if (tk) {
    out.push(`\n**Issuing tokens** (${tk.setup})\n`);
    out.push(
      table(
        ["call", "tokens/s", "workerd CPU ms per token"],
        tk.rows.map((x) => [x.method, String(x.tokensPerSecond), ms(x.workerdCpuMsPerToken)]),
      ),
    );
  }

  const c = r.cost;
  if (c) {
    const l = c.load;
    out.push(
      `\n**What a relay costs on Cloudflare** (${c.setup}; ${l.relays} relays, each with ${l.namespacesPerRelay} namespaces and ${l.scopesWatchedPerRelay} watched scopes; list prices read ${c.prices.read}; setAlarm priced as one row written)\n`,
    );
    const units = Object.keys(c.steady[0].perRelayHour);
    out.push(
      table(
        ["lease", ...units.map((u) => `${u} /relay-hour`), "runtime-answered pings /relay-hour", "USD /relay-month"],
        c.steady.map((x) => [
          x.lease,
          ...units.map((u) => f1(x.perRelayHour[u])),
          String(x.runtimePingsPerRelayHour),
          x.relayMonthUsd.toFixed(3),
        ]),
      ),
    );
    out.push(
      `\nPer namespace publish: $${c.usd.perNamespacePublish.toExponential(2)}; per 1,000 viewer joins (${c.perThousandViewerJoins.workerCallsPer1000Joins} Worker calls${c.perThousandViewerJoins.measured ? ", measured" : ", the documented figure"}): $${c.usd.perThousandViewerJoins.toExponential(2)}. ` +
        `Fleet per month on the lease socket: ${Object.entries(c.fleetMonthUsd)
          .map(([n, usd]) => `${Number(n).toLocaleString("en-US")} relays $${usd.toLocaleString("en-US")}`)
          .join(", ")}.`,
    );
    const s = c.resetStorm;
    if (s) {
      out.push(
        `\n**A runtime restart under ${s.relays} relays on the lease socket**: down ${s.runtimeDownMs} ms; every relay back on a socket ${s.everyRelayBackMs} ms after (${s.relaysBack} of ${s.relays}); ` +
          `peak ${s.peakWorkerReqPerSec} Worker requests/s, ${s.peakObjectReqPerSec} object requests/s, ${s.peakDirectoryReqPerSec}/s at the DirectoryObject (the busiest single object); ` +
          `registrations ${s.registrationsBefore} before, ${s.registrationsAfter} a lease after.`,
      );
    }
  }

  if (r.fleet) out.push(`\n${renderFleet(r.fleet)}`);

  const pr = r.profile;
  if (pr) {
    out.push(`\n**Where a Lookup's time goes** (moq-worker on ${pr.server}: the same kind of request stopped at successive layers)\n`);
    out.push(renderLayers(pr));
    if (Object.keys(pr.ops ?? {}).length) {
      out.push(`\n**CPU profiles** (${pr.server}, concurrency ${pr.concurrency}, while the operation runs)`);
      out.push(renderProfile(pr));
    }
  }
  return out.join("\n");
}

/** The fleet benchmark (bench/fleet.mjs): a row per relay count, then the figures at 10,000 relays and how they were had. */
export function renderFleet(f) {
  const out = [];
  out.push(`**A fleet of simulated relays** (${f.setup})\n`);
  const rows = f.rows.filter((x) => x.steady);
  const classes = [...new Set(rows.flatMap((x) => Object.keys(x.steady.objectReqPerSecByClass)))].sort();
  if (rows.length) {
    out.push(
      table(
        [
          "relays",
          "pings every s",
          "watch sockets per relay",
          "Worker req/s",
          ...classes.map((c) => `${c} req/s`),
          "alarms/s",
          "hottest object",
          "its req/s",
          "workerd CPU % (waited)",
          "workerd RSS MiB",
          "simulator CPU %",
          "watchers",
          "propagation p50 ms",
          "p99 ms",
          "fan-out CPU ms/change",
          "µs per socket",
        ],
        rows.map((x) => {
          const s = x.steady;
          const p = x.fanOut.popular;
          return [
            `${x.relays.toLocaleString("en-US")}${x.earlierRun ? " †" : ""}${x.saturated ? " ‡" : ""}`,
            String(x.pingEverySec ?? 1),
            String(x.watchesPerRelay ?? 3),
            f1(s.workerReqPerSec),
            ...classes.map((c) => f1(s.objectReqPerSecByClass[c])),
            f1(s.alarmsPerSec),
            s.hottestObject ? `${s.hottestObject.class} \`${s.hottestObject.object}\`` : "–",
            `${s.hottestObject?.atLeast ? "≥ " : ""}${f1(s.hottestObject?.reqPerSec)}`,
            `${f1(s.workerdCpuPct)}${s.workerdWaitedForCpuPct === undefined ? "" : ` (${f1(s.workerdWaitedForCpuPct)})`}`,
            String(x.workerdRssMiB),
            f1(s.clientCpuPct),
            p.watchers.toLocaleString("en-US"),
            ms(p.propagationP50Ms),
            ms(p.propagationP99Ms),
            ms(p.cpuMsPerChange),
            f1(p.perSocketSpreadUs),
          ];
        }),
      ),
    );
    out.push("");
    out.push(
      table(
        [
          "relays",
          "sockets (lease + watch)",
          "set-up s (tokens / leases and first writes / watches)",
          "pongs/s",
          "beats answered/s",
          "beat p50 / p99 ms",
          "calls/s",
          "call p50 / p99 ms",
          "call answers",
          "invalidations/s",
          "peer list bytes/s (ListPeers pages/s)",
          "socket closes",
          "unwatched change CPU ms",
          "small scope (watchers): p50 / p99 ms",
        ],
        rows.map((x) => {
          const s = x.steady;
          const fo = x.fanOut;
          return [
            `${x.relays.toLocaleString("en-US")}${x.earlierRun ? " †" : ""}`,
            `${x.sockets.lease.toLocaleString("en-US")} + ${x.sockets.watch.toLocaleString("en-US")}`,
            `${x.setupSec.tokens} / ${x.setupSec.leasesAndFirstWrites} / ${x.setupSec.watchSockets}`,
            f1(s.pongsPerSec),
            f1(s.beatsAnsweredPerSec),
            `${ms(s.beatP50Ms)} / ${ms(s.beatP99Ms)}`,
            f1(s.callsPerSec),
            `${ms(s.callP50Ms)} / ${ms(s.callP99Ms)}`,
            Object.entries(s.callCodes)
              .map(([k, n]) => `${k} ${n}`)
              .join(", "),
            f1(s.invalidationsPerSec),
            s.peerBytesPerSec === undefined ? "–" : `${Math.round(s.peerBytesPerSec).toLocaleString("en-US")} (${f1(s.peerPagesPerSec)})`,
            String(x.socketCloses.total),
            ms(fo.unwatched.cpuMsPerChange),
            `(${fo.small.watchers}) ${ms(fo.small.propagationP50Ms)} / ${ms(fo.small.propagationP99Ms)}`,
          ];
        }),
      ),
    );
  }
  if (rows.some((x) => x.earlierRun))
    out.push(`\n† from an earlier run (${[...new Set(rows.filter((x) => x.earlierRun).map((x) => x.earlierRun))].join("; ")}).`);
  for (const x of rows.filter((r) => r.saturated))
    out.push(`\n‡ ${x.relays.toLocaleString("en-US")} relays (pings every ${x.pingEverySec} s): ${x.saturated}.`);
  for (const x of f.rows.filter((r) => !r.steady))
    out.push(`\n${x.relays.toLocaleString("en-US")} relays: ${x.notRun ? `not run: ${x.notRun}` : `failed: ${x.failed}`}.`);
  const a = f.at10000;
  if (a) {
    out.push(`\n**At 10,000 relays** (${a.basis} from ${a.from.toLocaleString("en-US")} relays)\n`);
    out.push(
      table(
        ["figure", "at 10,000", "how"],
        [
          [
            `hottest object${a.hottestObject ? ` (${a.hottestObject.class} \`${a.hottestObject.object}\`)` : ""} req/s`,
            f1(a.hottestObject?.reqPerSec),
            "per relay",
          ],
          ["Worker req/s", f1(a.workerReqPerSec), "per relay"],
          ["object req/s", f1(a.objectReqPerSec), "per relay"],
          ...Object.entries(a.objectReqPerSecByClass).map(([k, x]) => [`${k} req/s`, f1(x), "per relay"]),
          ["workerd CPU, cores", String(a.workerdCpuCores), "per relay"],
          ["fan-out CPU ms per change (10,000 watchers)", f1(a.fanOutCpuMsPerChange), "line in watchers"],
          ["propagation p50 ms (10,000 watchers)", f1(a.propagationP50Ms), "see below"],
          ["propagation p99 ms (10,000 watchers)", f1(a.propagationP99Ms), "see below"],
        ],
      ),
    );
    out.push(
      `\n${Object.values(a.formulas)
        .map((x) => `- ${x}`)
        .join("\n")}`,
    );
  }
  return out.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? new URL("./results/latest.json", import.meta.url);
  console.log(renderMarkdown(JSON.parse(readFileSync(file, "utf8"))));
}
