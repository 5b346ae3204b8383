// What moq-worker costs to run on Cloudflare (issue 26): the billed units of a
// relay's steady load and of single operations, counted by the Worker itself
// (GET /metrics, src/metrics/billing.ts), priced at the list prices in PRICES
// (docs/performance.md "Cost" names the pages and the date read).
//
// Steady load, per relay: its lease (on the lease socket, as the edge holds
// it, and with Heartbeat calls, as older edges and the fallback do, side by
// side), namespaces registered, and one watch socket per watched scope pinging
// once a second as the edge does. Run for a window; units per relay-hour are
// the counters' increase over it. Operations: one namespace publish (what the
// relay calls on PUBLISH_NAMESPACE) and one LookupTrack (a viewer join the
// edge cache could not answer), each averaged over many.
//
// Called by bench/run.mjs on bare workerd (results under `cost`); alone
// against a running Worker: npx node bench/cost.mjs --url http://127.0.0.1:8787
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { openLeaseSocket } from "../test/e2e/lib/lease-socket.mjs";
import { call, ns, relayToken } from "../test/e2e/lib/rpc.mjs";
import { openWatch } from "../test/e2e/lib/watch.mjs";
import { DEV_ADMIN_TOKEN } from "../test/e2e/lib/worker.mjs";
import { WorkerRelay } from "./lib/relay.mjs";

/** USD list prices, paid plan, beyond the included amounts (which are left out: they are per account, not per relay). */
export const PRICES = {
  read: "2026-12-06",
  sources: [
    "https://developers.cloudflare.com/workers/platform/pricing/",
    "https://developers.cloudflare.com/durable-objects/platform/pricing/",
  ],
  workerRequestsPerMillion: 0.3,
  objectRequestsPerMillion: 0.15,
  /** Incoming WebSocket messages are billed as object requests at 20:1. */
  websocketMessagesPerRequest: 20,
  rowsReadPerMillion: 0.001,
  rowsWrittenPerMillion: 1.0,
};

const HOURS_PER_MONTH = 730;
/** After relays leave: their sockets' close handling (CLOSE_GRACE_MS) is over. */
const CLOSE_SETTLE_MS = 2000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The Worker's billing counters: units billed (moq_worker_billable_units_total),
 * object calls by class (any class /metrics names), and the busiest objects by
 * name (moq_worker_object_calls_top: [{ class, object, count, error }], busiest first).
 */
export async function workerCounters(url) {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${DEV_ADMIN_TOKEN}` } });
  if (!res.ok) throw new Error(`/metrics: ${res.status}`);
  const text = await res.text();
  const units = {};
  const calls = {};
  for (const m of text.matchAll(/^moq_worker_billable_units_total\{unit="(\w+)"\} (\d+)$/gm)) units[m[1]] = Number(m[2]);
  for (const m of text.matchAll(/^moq_worker_object_calls_total\{class="(\w+)"\} (\d+)$/gm)) calls[m[1]] = Number(m[2]);
  if (Object.keys(units).length === 0) throw new Error("/metrics has no moq_worker_billable_units_total");
  const label = '"((?:[^"\\\\]|\\\\.)*)"';
  const topLine = (name) => new RegExp(`^${name}\\{class="(\\w+)",object=${label}\\} (\\d+)$`, "gm");
  const unescapeLabel = (v) => v.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  const errors = new Map();
  for (const m of text.matchAll(topLine("moq_worker_object_calls_top_error"))) errors.set(`${m[1]} ${m[2]}`, Number(m[3]));
  const top = [...text.matchAll(topLine("moq_worker_object_calls_top"))].map((m) => ({
    class: m[1],
    object: unescapeLabel(m[2]),
    count: Number(m[3]),
    error: errors.get(`${m[1]} ${m[2]}`) ?? 0,
  }));
  return { units, calls, top };
}

/** The units billed so far (workerCounters). */
export const billedUnits = async (url) => (await workerCounters(url)).units;

/** Units from `b` to `a`, less the one Worker request of reading them (GET /metrics). */
const minus = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - (b[k] ?? 0) - (k === "worker_requests" ? 1 : 0)]));
const scaled = (u, f) => Object.fromEntries(Object.entries(u).map(([k, v]) => [k, +(v * f).toFixed(3)]));

/** Dollars for units; setAlarm is priced as one row written. */
export function usd(u) {
  const p = PRICES;
  return (
    (u.worker_requests * p.workerRequestsPerMillion +
      (u.object_requests + u.websocket_messages_in / p.websocketMessagesPerRequest) * p.objectRequestsPerMillion +
      u.rows_read * p.rowsReadPerMillion +
      (u.rows_written + u.alarms_set) * p.rowsWrittenPerMillion) /
    1e6
  );
}

/** Units of `n` repetitions of `op`, per repetition. */
async function perOp(url, n, op) {
  const before = await billedUnits(url);
  for (let i = 0; i < n; i++) await op(i);
  await sleep(300); // background notes the operations started
  return scaled(minus(await billedUnits(url), before), 1 / n);
}

/** A relay as the edge runs it: its lease on the socket (`socket`) or kept by Heartbeat calls. */
async function startRelay(url, relayUrl, socket) {
  if (!socket) return new WorkerRelay(url, relayUrl).start();
  const token = await relayToken(url, relayUrl);
  const epoch = randomBytes(8).toString("hex");
  const lease = await openLeaseSocket(url, token, epoch);
  return { token, epoch, auth: { authorization: `Bearer ${token}`, "moq-relay-epoch": epoch }, lease, stop: () => lease.close() };
}

/**
 * Units per relay-hour of `relays` relays, each holding `namespaces`
 * registrations and watching `scopes` scopes (pinged once a second), over
 * `windowMs`; also the watch and lease pings sent (answered by the runtime).
 */
async function steadyLoad({ url, socket, relays, scopes, namespaces, windowMs, tag, log }) {
  const fleet = [];
  const sockets = [];
  let pings = 0;
  let pinger;
  try {
    for (let r = 0; r < relays; r++) {
      const relay = await startRelay(url, `https://cost-${tag}-${r}.example/`, socket);
      fleet.push(relay);
      for (let i = 0; i < namespaces; i++) {
        await call(
          url,
          "CoordinatorService",
          "RegisterNamespace",
          { scope: `cost-${tag}-r${r}`, namespace: ns(`live/${i}`) },
          relay.token,
          relay.auth,
        );
      }
      for (let s = 0; s < scopes; s++) {
        const w = await openWatch(url, relay.token, `cost-${tag}-w${s}`);
        await w.next(); // the hello
        sockets.push(w);
      }
    }
    // The edge's watch keepalive: "ping" once a second on each socket, answered by the runtime.
    pinger = setInterval(() => {
      for (const w of sockets) {
        w.ws.send("ping");
        pings++;
      }
    }, 1000);
    const leasePings = () => fleet.reduce((n, r) => n + (r.lease?.pings() ?? 0), 0);
    await sleep(Math.min(3000, windowMs / 4)); // setup's background work settles
    const pingsBefore = pings + leasePings();
    const before = await billedUnits(url);
    const t0 = performance.now();
    await sleep(windowMs);
    const steady = minus(await billedUnits(url), before);
    const seconds = (performance.now() - t0) / 1000;
    const perHour = 3600 / seconds / relays;
    const result = {
      lease: socket ? "lease socket" : "Heartbeat calls",
      windowSeconds: +seconds.toFixed(1),
      perRelayHour: scaled(steady, perHour),
      runtimePingsPerRelayHour: Math.round((pings + leasePings() - pingsBefore) * perHour),
    };
    result.relayMonthUsd = +(usd(result.perRelayHour) * HOURS_PER_MONTH).toFixed(4);
    log(`cost: ${result.lease}: ${JSON.stringify(result.perRelayHour)} per relay-hour → $${result.relayMonthUsd} per relay-month`);
    return { result, fleet };
  } finally {
    clearInterval(pinger);
    for (const w of sockets) w.ws.close();
  }
}

/**
 * The cost section. `callsPer1000Joins`: Worker calls the edge makes per
 * 1,000 viewer joins (measured by bench/lib/relay-seen.mjs when it ran).
 */
export async function cost({
  url,
  relays = 10,
  scopes = 100,
  namespaces = 10,
  windowMs = 60_000,
  ops = 50,
  callsPer1000Joins,
  log = () => {},
}) {
  const tag = Math.random().toString(36).slice(2, 8);
  log(`cost: ${relays} relays, each with ${namespaces} namespaces and ${scopes} watched scopes, ${windowMs / 1000} s per lease mode`);
  const load = { relays, scopesWatchedPerRelay: scopes, namespacesPerRelay: namespaces };
  const http = await steadyLoad({ url, socket: false, relays, scopes, namespaces, windowMs, tag: `${tag}h`, log });
  await leave(url, http.fleet);
  const socket = await steadyLoad({ url, socket: true, relays, scopes, namespaces, windowMs, tag: `${tag}s`, log });
  const fleet = socket.fleet;
  try {
    log(`cost: ${ops} namespace publishes and ${ops} LookupTrack misses`);
    const [r0] = fleet;
    const scope = `cost-${tag}s-r0`;
    const publish = await perOp(url, ops, async (i) => {
      await call(url, "CoordinatorService", "RegisterNamespace", { scope, namespace: ns(`pub/${i}`) }, r0.token, r0.auth);
      await call(url, "CoordinatorService", "LookupNamespaceSubscribers", { scope, namespace: ns(`pub/${i}`) }, r0.token, r0.auth);
    });
    await call(url, "CoordinatorService", "RegisterTrack", { scope, namespace: ns("live/0"), track: "video" }, r0.token, r0.auth);
    const viewer = fleet[1] ?? r0;
    const lookupTrack = await perOp(url, ops, () =>
      call(url, "CoordinatorService", "LookupTrack", { scope, namespace: ns("live/0"), track: "video" }, viewer.token, viewer.auth),
    );
    const calls = callsPer1000Joins ?? 2;
    const perThousandJoins = scaled(lookupTrack, calls);
    const relayMonthUsd = socket.result.relayMonthUsd;
    // Runtime-answered pings are not billed (pricing page: auto-responses run no handler); if they were, at 20:1:
    const pingsMonthUsdIfBilled =
      ((socket.result.runtimePingsPerRelayHour * HOURS_PER_MONTH) / PRICES.websocketMessagesPerRequest) *
      (PRICES.objectRequestsPerMillion / 1e6);
    const result = {
      setup:
        "bare workerd, built bundle, default lease (LEASE_TTL_MS 10 s); simulated relays as the edge behaves (bench/lib/relay.mjs heartbeats, test/e2e/lib/lease-socket.mjs), Connect JSON writes, watch sockets pinging once a second; units from the Worker's own counters (GET /metrics)",
      load,
      prices: PRICES,
      steady: [socket.result, http.result],
      perNamespacePublish: publish,
      perThousandViewerJoins: { workerCallsPer1000Joins: calls, measured: callsPer1000Joins !== undefined, units: perThousandJoins },
      usd: {
        perNamespacePublish: +usd(publish).toFixed(9),
        perThousandViewerJoins: +usd(perThousandJoins).toFixed(9),
        pingsMonthUsdIfBilled: +pingsMonthUsdIfBilled.toFixed(4),
      },
      relayMonthUsd,
      relayMonthUsdHeartbeatCalls: http.result.relayMonthUsd,
      fleetMonthUsd: Object.fromEntries([100, 1000, 10_000].map((n) => [n, Math.round(relayMonthUsd * n)])),
    };
    log(`cost: $${relayMonthUsd} per relay-month on the lease socket, $${http.result.relayMonthUsd} with Heartbeat calls`);
    return result;
  } finally {
    await leave(url, fleet);
  }
}

/** The relays leave (Shutdown), so that their rows are gone before anything else is counted. */
async function leave(url, fleet) {
  for (const r of fleet) {
    r.stop();
    await call(url, "CoordinatorService", "Shutdown", {}, r.token, r.auth);
  }
  await sleep(CLOSE_SETTLE_MS);
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: "http://127.0.0.1:8787" },
      relays: { type: "string", default: "5" },
      scopes: { type: "string", default: "100" },
      seconds: { type: "string", default: "60" },
    },
  });
  const result = await cost({
    url: values.url,
    relays: Number(values.relays),
    scopes: Number(values.scopes),
    windowMs: Number(values.seconds) * 1000,
    log: console.log,
  });
  console.log(JSON.stringify(result, null, 2));
}
