// A restart of the Worker's runtime under relays holding their leases on the
// lease socket (issue 26): `relays` simulated relays (test/e2e/lib/lease-socket.mjs
// LeaseHolder, reconnecting as the edge does), each with one registered
// namespace; workerd SIGKILLed and started again on the same state. Measured:
// how long until every relay is back on a socket, the peak requests per second
// at the Worker and at the busiest single object (the DirectoryObject, one
// object; a RelayObject takes its own relay's reconnect only), from the
// Worker's counters sampled every 100 ms; and whether any registration was lost.
//
// Called by bench/run.mjs (results under cost.resetStorm); alone: npx node bench/reset-storm.mjs [--relays 100]
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LeaseHolder } from "../test/e2e/lib/lease-socket.mjs";
import { call, ns, nsText, relayToken } from "../test/e2e/lib/rpc.mjs";
import { DEV_ADMIN_TOKEN, freePort, startWorker } from "../test/e2e/lib/worker.mjs";
import { workerCounters } from "./cost.mjs";
import { buildBundle } from "./lib/systems.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function counters(url) {
  const { units, calls } = await workerCounters(url);
  return { at: performance.now(), worker: units.worker_requests, objects: units.object_requests, directory: calls.DirectoryObject };
}

/** The largest increase of `key` over any window of one second in `samples`. */
function peakPerSecond(samples, key) {
  let peak = 0;
  for (let i = 0; i < samples.length; i++) {
    let j = i;
    while (j + 1 < samples.length && samples[j + 1].at - samples[i].at <= 1000) j++;
    peak = Math.max(peak, samples[j][key] - samples[i][key]);
  }
  return peak;
}

export async function resetStorm({ bundle, relays = 100, leaseTtlMs = 10_000, log = () => {} }) {
  const state = mkdtempSync(join(tmpdir(), "moq-worker-reset-"));
  const port = await freePort();
  const start = () => startWorker({ mode: "workerd", bundle, port, persistTo: state, vars: { LEASE_TTL_MS: String(leaseTtlMs) } });
  let w = await start();
  const holders = [];
  const scope = `reset-${randomBytes(3).toString("hex")}`;
  try {
    log(`reset storm: ${relays} relays on lease sockets, one namespace each`);
    for (let i = 0; i < relays; i++) {
      const token = await relayToken(w.url, `https://reset-${i}.example/`);
      const epoch = randomBytes(8).toString("hex");
      const holder = await new LeaseHolder(w.url, token, epoch).start();
      await call(w.url, "CoordinatorService", "RegisterNamespace", { scope, namespace: ns(`live/${i}`) }, token, {
        "moq-relay-epoch": epoch,
      });
      holders.push(holder);
    }
    const registered = async () =>
      new Set(
        ((await call(w.url, "AdminService", "DescribeScope", { scope, pageSize: 1000 }, DEV_ADMIN_TOKEN)).namespaces ?? []).map((r) =>
          nsText(r.namespace),
        ),
      ).size;
    const before = await registered();
    const opens = holders.map((h) => h.opens);
    const down = performance.now();
    await w.stop("SIGKILL");
    w = await start();
    const back = performance.now();
    // The counters start at 0 with the new isolate; the sampler's own requests are taken out.
    let reads = 0;
    const sample = async () => {
      const c = await counters(w.url);
      reads++;
      return { ...c, worker: c.worker - reads };
    };
    const samples = [{ at: back, worker: 0, objects: 0, directory: 0 }, await sample()];
    while (holders.some((h, i) => h.opens === opens[i]) && performance.now() - back < 30_000) {
      await sleep(100);
      samples.push(await sample());
    }
    const allBackMs = Math.max(...holders.map((h) => h.openedAt)) - back;
    for (let t = 0; t < 10; t++) {
      await sleep(100);
      samples.push(await sample());
    }
    // Past the restart grace (a lease TTL): a purge would have happened by now.
    await sleep(leaseTtlMs + 1000);
    const after = await registered();
    const result = {
      relays,
      leaseTtlMs,
      runtimeDownMs: Math.round(back - down),
      everyRelayBackMs: Math.round(allBackMs),
      relaysBack: holders.filter((h, i) => h.opens > opens[i]).length,
      peakWorkerReqPerSec: peakPerSecond(samples, "worker"),
      peakObjectReqPerSec: peakPerSecond(samples, "objects"),
      peakDirectoryReqPerSec: peakPerSecond(samples, "directory"),
      registrationsBefore: before,
      registrationsAfter: after,
    };
    log(`reset storm: ${JSON.stringify(result)}`);
    return result;
  } finally {
    for (const h of holders) h.stop();
    await w.stop();
    rmSync(state, { recursive: true, force: true });
  }
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { values } = parseArgs({ options: { relays: { type: "string", default: "100" } } });
  const bundle = buildBundle();
  try {
    console.log(await resetStorm({ bundle, relays: Number(values.relays), log: console.log }));
  } finally {
    bundle.remove();
  }
}
