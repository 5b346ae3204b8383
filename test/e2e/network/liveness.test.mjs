// How fast a dead relay stops being routed to (issue 26), with the real edge
// on its lease socket and the default lease (LEASE_TTL_MS 10 s): a relay
// killed with SIGKILL, and one frozen with SIGSTOP (silent, its socket still
// open), each with a publisher's namespace registered, the Worker polled
// every 100 ms until the namespace is gone. Also: while the socket holds the
// lease, the relay makes no Heartbeat calls; a restart of the Worker's
// runtime (every socket closed at once) purges nothing.
//
//   node --test test/e2e/network/liveness.test.mjs     (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DEV_ADMIN_TOKEN } from "../lib/worker.mjs";
import { now, sleep, Stack, waitFor } from "./harness.mjs";

const SCOPE = "S";
const TTL_MS = 10_000; // the Worker's default lease

let stack;

before(async () => {
  stack = await Stack.start({ name: "liveness", vars: { ALLOW_UNSCOPED: "false" } });
  await stack.admin("PutPath", { path: `/${SCOPE}/pub`, scope: SCOPE, permissions: "PERMISSIONS_READ_WRITE" });
});

after(async () => {
  await stack?.close();
});

/** A relay with a registered publisher: { relay, entry } where entry is "namespace@host". */
async function publishing(name) {
  const relay = await stack.relay(name);
  const namespace = `e2e/${name}`;
  stack.publish(relay, `/${SCOPE}/pub`, { namespace, name: `pub-${name}` });
  const entry = `${namespace}@${relay.host}`;
  await waitFor(`${entry} registered`, async () => (await stack.namespaces(SCOPE)).includes(entry), { timeoutMs: 15_000 });
  return { relay, entry };
}

/** Milliseconds from now until `entry` is no longer registered, polled every 100 ms. */
async function untilWithdrawn(entry, limitMs) {
  const t0 = now();
  await waitFor(`${entry} withdrawn`, async () => !(await stack.namespaces(SCOPE)).includes(entry), {
    timeoutMs: limitMs,
    intervalMs: 100,
  });
  return now() - t0;
}

/** The Worker's count of answered Heartbeat calls (GET /metrics). */
async function heartbeatCalls() {
  const text = await (await fetch(`${stack.url}/metrics`, { headers: { authorization: `Bearer ${DEV_ADMIN_TOKEN}` } })).text();
  let n = 0;
  for (const m of text.matchAll(/^moq_worker_rpc_requests_total\{[^}]*method="Heartbeat"[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

/** Calls the Worker made to Durable Objects of one class (/metrics). */
async function objectCalls(kind) {
  const text = await (await fetch(`${stack.url}/metrics`, { headers: { authorization: `Bearer ${DEV_ADMIN_TOKEN}` } })).text();
  return Number(new RegExp(`^moq_worker_object_calls_total\\{class="${kind}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
}

test("on the lease socket a relay makes no Heartbeat calls, and stays registered", async () => {
  await stack.step(async () => {
    const { relay, entry } = await publishing("steady");
    await waitFor("the relay's lease socket open", () => /edge: lease socket open/.test(relay.proc.log()), { timeoutMs: 10_000 });
    const before = await heartbeatCalls();
    await sleep(TTL_MS + 1000);
    assert.equal(await heartbeatCalls(), before, "no Heartbeat call for longer than a lease");
    assert.ok((await stack.namespaces(SCOPE)).includes(entry), `${entry} still registered after a lease without Heartbeat calls`);
  });
});

test("a relay killed with SIGKILL is withdrawn in about a second, not a lease", async () => {
  await stack.step(async () => {
    const { relay, entry } = await publishing("killed");
    await waitFor("the relay's lease socket open", () => /edge: lease socket open/.test(relay.proc.log()), { timeoutMs: 10_000 });
    relay.proc.signal("SIGKILL");
    const ms = await untilWithdrawn(entry, TTL_MS * 3);
    console.log(`# SIGKILL: ${entry} withdrawn after ${Math.round(ms)} ms (lease ${TTL_MS} ms)`);
    assert.ok(ms < TTL_MS / 2, `withdrawn after ${Math.round(ms)} ms: by the socket's close, not the lease's end`);
  });
});

test("a relay frozen with SIGSTOP is withdrawn a lease after it was last heard, not later", async () => {
  await stack.step(async () => {
    const { relay, entry } = await publishing("frozen");
    await waitFor("the relay's lease socket open", () => /edge: lease socket open/.test(relay.proc.log()), { timeoutMs: 10_000 });
    // Past its first lease, as a relay that has run a while: its lease clock watches it now.
    const watched = await objectCalls("LeaseClockObject");
    await sleep(TTL_MS + 1000);
    assert.ok((await objectCalls("LeaseClockObject")) > watched, "the relay's lease handed to its lease clock");
    relay.proc.signal("SIGSTOP");
    try {
      const ms = await untilWithdrawn(entry, TTL_MS * 3);
      console.log(`# SIGSTOP: ${entry} withdrawn after ${Math.round(ms)} ms (lease ${TTL_MS} ms)`);
      // Last heard up to one ping (1 s) before the freeze.
      assert.ok(ms > TTL_MS - 1500, `withdrawn after ${Math.round(ms)} ms: not before the lease ran out`);
      assert.ok(ms < TTL_MS + 3000, `withdrawn after ${Math.round(ms)} ms: within the lease and a little`);
    } finally {
      relay.proc.signal("SIGCONT");
    }
  });
});

test("a restart of the Worker's runtime closes every lease socket and purges nothing", async () => {
  await stack.step(async () => {
    const held = [await publishing("reset-a"), await publishing("reset-b")];
    const opened = (relay) => relay.proc.log().match(/edge: lease socket open/g)?.length ?? 0;
    for (const { relay } of held) await waitFor("the relay's lease socket open", () => opened(relay) > 0, { timeoutMs: 10_000 });
    const before = held.map(({ relay }) => opened(relay));
    await stack.killWorker();
    const down = now();
    await stack.startWorker();
    const back = now();
    for (const [i, { relay }] of held.entries()) {
      await waitFor(`relay ${relay.name} back on a new lease socket`, () => opened(relay) > before[i], { timeoutMs: 10_000 });
    }
    console.log(`# runtime restart: down ${Math.round(back - down)} ms, every socket back ${Math.round(now() - back)} ms after`);
    // Through the restart grace (a lease TTL) and past it, every registration stays listed.
    const until = now() + TTL_MS + 1000;
    while (now() < until) {
      const listed = await stack.namespaces(SCOPE);
      for (const { entry } of held) assert.ok(listed.includes(entry), `${entry} listed ${Math.round(now() - back)} ms after the restart`);
      await sleep(250);
    }
  });
});
