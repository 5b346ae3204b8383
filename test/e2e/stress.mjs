// Concurrency stress against a real `wrangler dev` (npm run test:stress).
//
// Many relays register/unregister namespaces and tracks and subscribe/
// unsubscribe the same prefixes in the same scopes, all at once, each relay
// running its own random (seeded) sequence of calls. Each relay keeps a model
// of what it holds, built only from the answers it got. Then:
//   - no key is held by two relays (no double grant), and a relay never loses a
//     row it holds (its retries succeed, others are refused);
//   - every scope's DescribeScope equals the union of the models exactly: no
//     duplicate owners, no row nobody holds, no held row missing;
//   - LookupNamespaceSubscribers / LookupTrackSubscribers / Lookup answers are
//     exactly what the models imply;
//   - after every relay calls Shutdown in parallel, every scope is empty (no
//     orphan rows that a purge could not find).
// Bounded: a fixed number of calls (about 1000); 20-40 s with wrangler's start.
// Options: --seed=N (default fixed), --relays=N, --ops=N, --log.
import { parseArgs } from "node:util";
import { call, ns as nsJson, nsText, registeredUrl, relayToken } from "./lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, startWorker } from "./lib/worker.mjs";

const { values: args } = parseArgs({
  options: {
    seed: { type: "string", default: String(0x5eed) },
    relays: { type: "string", default: "16" },
    ops: { type: "string", default: "60" },
    log: { type: "boolean", default: false },
  },
});
const SEED = Number(args.seed);
const RELAYS = Number(args.relays);
const OPS = Number(args.ops);
const SCOPES = ["stress-a", "stress-b", "stress-c"];
// Nested on purpose: prefixes of each other, so longest-prefix and prefix
// subscriptions are exercised, and few enough that relays collide constantly.
const NAMESPACES = ["live", "live/a", "live/a/1", "live/a/2", "live/b", "live/b/1", "vod", "vod/x"];
const PREFIXES = ["", ...NAMESPACES, "other"];
const TRACKS = ["video", "audio"];

// ---- plumbing ------------------------------------------------------------------

/** mulberry32: small, seedable, good enough to pick operations. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = (rand, list) => list[Math.floor(rand() * list.length)];
const isPrefix = (p, n) => p === "" || n === p || n.startsWith(`${p}/`);

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
  return ok;
}

/** A Connect JSON call that returns {code, body} instead of throwing. */
async function rpc(base, service, method, body, token, headers = {}) {
  try {
    return { code: "ok", body: await call(base, service, method, body, token, headers) };
  } catch (e) {
    if (e.code === undefined) throw e;
    return { code: e.code, message: e.message };
  }
}

// ---- relays and their models -------------------------------------------------------

class Relay {
  constructor(base, i) {
    this.base = base;
    this.url = `https://stress-relay-${i}.example.com/`;
    this.epoch = `epoch-${i}`;
    this.rand = prng(SEED * 1000 + i);
    // What this relay holds, from the answers it got: "scope|ns", "scope|ns|track", ...
    this.namespaces = new Set();
    this.tracks = new Set();
    this.nsSubs = new Set();
    this.trackSubs = new Set();
    this.calls = 0;
  }

  async init() {
    this.token = await relayToken(this.base, this.url);
    // The edge sends its boot epoch on every call; heartbeats carry the same one.
    const beat = await this.call("Heartbeat", { epoch: this.epoch, addrs: [] });
    if (beat.code !== "ok") throw new Error(`Heartbeat: ${beat.code} ${beat.message}`);
    return this;
  }

  call(method, body) {
    this.calls++;
    return rpc(this.base, "CoordinatorService", method, body, this.token, { "moq-relay-epoch": this.epoch });
  }

  /** One random operation, checked against this relay's own model. */
  async step() {
    const scope = pick(this.rand, SCOPES);
    const ns = pick(this.rand, NAMESPACES);
    const track = pick(this.rand, TRACKS);
    const prefix = pick(this.rand, PREFIXES);
    const key = `${scope}|${ns}`;
    const tkey = `${scope}|${ns}|${track}`;
    const op = pick(this.rand, [
      "reg",
      "reg",
      "unreg",
      "regTrack",
      "unregTrack",
      "sub",
      "sub",
      "unsub",
      "subTrack",
      "unsubTrack",
      "lookup",
      "beat",
    ]);
    const where = `${this.url} ${op} ${scope} ${ns}`;
    let r;
    switch (op) {
      case "reg":
        r = await this.call("RegisterNamespace", { scope, namespace: nsJson(ns) });
        if (this.namespaces.has(key)) check(r.code === "ok", `${where}: retry of a held namespace answered ${r.code} (lost ownership?)`);
        else check(r.code === "ok" || r.code === "already_exists", `${where}: ${r.code} ${r.message}`);
        if (r.code === "ok") this.namespaces.add(key);
        break;
      case "unreg":
        r = await this.call("UnregisterNamespace", { scope, namespace: nsJson(ns) });
        if (this.namespaces.has(key)) check(r.code === "ok", `${where}: owner's unregister answered ${r.code}`);
        else check(r.code === "ok" || r.code === "permission_denied", `${where}: ${r.code} ${r.message}`);
        if (r.code === "ok") this.namespaces.delete(key);
        break;
      case "regTrack":
        r = await this.call("RegisterTrack", { scope, namespace: nsJson(ns), track });
        if (this.tracks.has(tkey)) check(r.code === "ok", `${where}/${track}: retry of a held track answered ${r.code}`);
        else check(r.code === "ok" || r.code === "already_exists", `${where}/${track}: ${r.code} ${r.message}`);
        if (r.code === "ok") this.tracks.add(tkey);
        break;
      case "unregTrack":
        r = await this.call("UnregisterTrack", { scope, namespace: nsJson(ns), track });
        if (this.tracks.has(tkey)) check(r.code === "ok", `${where}/${track}: owner's unregister answered ${r.code}`);
        else check(r.code === "ok" || r.code === "permission_denied", `${where}/${track}: ${r.code} ${r.message}`);
        if (r.code === "ok") this.tracks.delete(tkey);
        break;
      case "sub": {
        r = await this.call("SubscribeNamespace", { scope, prefix: nsJson(prefix) });
        if (check(r.code === "ok", `${where} prefix '${prefix}': ${r.code} ${r.message}`)) {
          this.nsSubs.add(`${scope}|${prefix}`);
          const urls = (r.body.upstreamRelays ?? []).map((u) => registeredUrl(u.url));
          check(new Set(urls).size === urls.length, `${where}: upstream relays not deduplicated: ${urls}`);
          check(!urls.includes(this.url), `${where}: upstream relays include the caller`);
        }
        break;
      }
      case "unsub":
        r = await this.call("UnsubscribeNamespace", { scope, prefix: nsJson(prefix) });
        if (check(r.code === "ok", `${where}: ${r.code} ${r.message}`)) this.nsSubs.delete(`${scope}|${prefix}`);
        break;
      case "subTrack":
        r = await this.call("SubscribeTrack", { scope, namespace: nsJson(ns), track });
        if (check(r.code === "ok", `${where}: ${r.code} ${r.message}`)) this.trackSubs.add(tkey);
        break;
      case "unsubTrack":
        r = await this.call("UnsubscribeTrack", { scope, namespace: nsJson(ns), track });
        if (check(r.code === "ok", `${where}: ${r.code} ${r.message}`)) this.trackSubs.delete(tkey);
        break;
      case "lookup":
        r = await this.call("Lookup", { scope, namespace: nsJson(ns) });
        check(r.code === "ok" || r.code === "not_found", `${where}: ${r.code} ${r.message}`);
        // What it found must be at least as specific as anything this relay itself holds.
        for (const held of this.namespaces) {
          const [s, n] = held.split("|");
          if (s === scope && isPrefix(n, ns)) {
            check(
              r.code === "ok" && nsText(r.body.origin.namespace).split("/").length >= n.split("/").length,
              `${where}: lookup missed held ${n}`,
            );
          }
        }
        break;
      case "beat":
        r = await this.call("Heartbeat", { epoch: this.epoch, addrs: [] });
        check(r.code === "ok", `${where}: ${r.code} ${r.message}`);
        break;
    }
  }
}

// ---- the run ---------------------------------------------------------------------

async function describeAll(base, scope) {
  const out = { namespaces: [], tracks: [], namespaceSubscriptions: [], trackSubscriptions: [] };
  let pageToken = "";
  do {
    const r = await rpc(base, "AdminService", "DescribeScope", { scope, pageSize: 1000, pageToken }, DEV_ADMIN_TOKEN);
    if (r.code !== "ok") throw new Error(`DescribeScope ${scope}: ${r.code} ${r.message}`);
    for (const k of Object.keys(out)) out[k].push(...(r.body[k] ?? []));
    pageToken = r.body.nextPageToken ?? "";
  } while (pageToken !== "");
  return out;
}

const sorted = (xs) => [...xs].sort();
const sameSet = (a, b) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));

async function verify(base, relays, observer) {
  // 1. No key held by two relays.
  for (const kind of ["namespaces", "tracks"]) {
    const owner = new Map();
    for (const r of relays) {
      for (const k of r[kind]) {
        check(!owner.has(k), `${kind} ${k} granted to both ${owner.get(k)} and ${r.url}`);
        owner.set(k, r.url);
      }
    }
  }
  for (const scope of SCOPES) {
    const d = await describeAll(base, scope);
    // 2. Storage = union of models, exactly, with no duplicate owners.
    const rows = {
      namespaces: d.namespaces.map((n) => `${scope}|${nsText(n.namespace)}@${n.relay.url}`),
      tracks: d.tracks.map((t) => `${scope}|${nsText(t.namespace)}|${t.name}@${t.relay.url}`),
      nsSubs: d.namespaceSubscriptions.map((s) => `${scope}|${nsText(s.prefix)}@${s.relay.url}`),
      trackSubs: d.trackSubscriptions.map((s) => `${scope}|${nsText(s.namespace)}|${s.track}@${s.relay.url}`),
    };
    const keysOnly = (list) => list.map((x) => x.split("@")[0]);
    check(new Set(keysOnly(rows.namespaces)).size === rows.namespaces.length, `${scope}: a namespace has two owners`);
    check(new Set(keysOnly(rows.tracks)).size === rows.tracks.length, `${scope}: a track has two owners`);
    for (const kind of Object.keys(rows)) {
      const model = relays.flatMap((r) => [...r[kind]].filter((k) => k.startsWith(`${scope}|`)).map((k) => `${k}@${r.url}`));
      const extra = rows[kind].filter((x) => !model.includes(x));
      const missing = model.filter((x) => !rows[kind].includes(x));
      check(
        extra.length === 0 && missing.length === 0,
        `${scope} ${kind}: stored but held by nobody ${JSON.stringify(extra)}; held but not stored ${JSON.stringify(missing)}`,
      );
    }
    // 3. Answers are what the models imply.
    for (const ns of [...NAMESPACES, "live/a/1/deep"]) {
      const subs = await observer.call("LookupNamespaceSubscribers", { scope, namespace: nsJson(ns) });
      const expected = relays
        .filter((r) => [...r.nsSubs].some((k) => k.startsWith(`${scope}|`) && isPrefix(k.slice(scope.length + 1), ns)))
        .map((r) => r.url);
      check(
        subs.code === "ok" &&
          sameSet(
            (subs.body.relays ?? []).map((x) => registeredUrl(x.url)),
            expected,
          ),
        `${scope} subscribers of ${ns}: got ${JSON.stringify(subs.body?.relays)} want ${expected}`,
      );
      check(
        subs.code === "ok" && new Set((subs.body.relays ?? []).map((x) => registeredUrl(x.url))).size === (subs.body.relays ?? []).length,
        `${scope} subscribers of ${ns} not deduplicated`,
      );

      const holders = relays.flatMap((r) =>
        [...r.namespaces].filter((k) => k.startsWith(`${scope}|`)).map((k) => [k.slice(scope.length + 1), r.url]),
      );
      const best = holders.filter(([n]) => isPrefix(n, ns)).sort((a, b) => b[0].split("/").length - a[0].split("/").length)[0];
      const found = await observer.call("Lookup", { scope, namespace: nsJson(ns) });
      if (best)
        check(
          found.code === "ok" && nsText(found.body.origin.namespace) === best[0] && registeredUrl(found.body.origin.relay.url) === best[1],
          `${scope} lookup ${ns}: got ${JSON.stringify(found.body ?? found.code)} want ${best}`,
        );
      else check(found.code === "not_found", `${scope} lookup ${ns}: got ${found.code}, want not_found`);

      for (const track of TRACKS) {
        const waiting = await observer.call("LookupTrackSubscribers", { scope, namespace: nsJson(ns), track });
        const want = relays.filter((r) => r.trackSubs.has(`${scope}|${ns}|${track}`)).map((r) => r.url);
        check(
          waiting.code === "ok" &&
            sameSet(
              (waiting.body.relays ?? []).map((x) => registeredUrl(x.url)),
              want,
            ),
          `${scope} track subscribers ${ns}/${track}: got ${JSON.stringify(waiting.body?.relays)} want ${want}`,
        );
      }
    }
  }
}

async function main() {
  const started = Date.now();
  // Leases far longer than the run: nothing may vanish except by the relays' own calls.
  const worker = await startWorker({ vars: { LEASE_TTL_MS: "600000" }, log: args.log });
  try {
    console.log(
      `stress: seed ${SEED}, ${RELAYS} relays x ${OPS} calls, scopes ${SCOPES.join(", ")} (worker up in ${Date.now() - started} ms)`,
    );
    const relays = await Promise.all(Array.from({ length: RELAYS }, (_, i) => new Relay(worker.url, i).init()));
    const observer = await new Relay(worker.url, "observer").init();

    // A thundering herd on one key first: exactly one winner.
    const herd = await Promise.all(relays.map((r) => r.call("RegisterNamespace", { scope: SCOPES[0], namespace: nsJson("herd/x") })));
    check(herd.filter((h) => h.code === "ok").length === 1, `herd: ${herd.filter((h) => h.code === "ok").length} winners`);
    check(
      herd.every((h) => h.code === "ok" || h.code === "already_exists"),
      `herd: unexpected ${herd.map((h) => h.code)}`,
    );
    const winner = relays[herd.findIndex((h) => h.code === "ok")];
    await winner.call("UnregisterNamespace", { scope: SCOPES[0], namespace: nsJson("herd/x") });

    const t0 = Date.now();
    await Promise.all(
      relays.map(async (r) => {
        for (let i = 0; i < OPS; i++) await r.step();
      }),
    );
    const calls = relays.reduce((n, r) => n + r.calls, 0);
    const elapsed = Date.now() - t0;
    console.log(`stress: ${calls} calls in ${elapsed} ms (${Math.round((calls * 1000) / elapsed)}/s), verifying`);
    const held = relays.reduce((n, r) => n + r.namespaces.size + r.tracks.size + r.nsSubs.size + r.trackSubs.size, 0);
    await verify(worker.url, relays, observer);

    // Everyone leaves at once: nothing may be left behind.
    const bye = await Promise.all(relays.map((r) => r.call("Shutdown", {})));
    check(
      bye.every((b) => b.code === "ok"),
      `shutdown: ${bye.map((b) => b.code)}`,
    );
    for (const scope of SCOPES) {
      const d = await describeAll(worker.url, scope);
      const left = d.namespaces.length + d.tracks.length + d.namespaceSubscriptions.length + d.trackSubscriptions.length;
      check(left === 0, `${scope}: ${left} rows survive every relay's Shutdown (orphans): ${JSON.stringify(d).slice(0, 500)}`);
    }
    if (failures.length === 0) console.log(`stress: ${held} rows held at the end were all accounted for; all gone after Shutdown`);
  } finally {
    await worker.stop();
  }
  if (failures.length > 0) {
    console.error(`stress: FAILED (${failures.length}), seed ${SEED}:`);
    for (const f of failures.slice(0, 30)) console.error(`  - ${f}`);
    process.exit(1);
  }
  console.log(`stress: ok in ${Date.now() - started} ms`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
