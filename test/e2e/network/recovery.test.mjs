// Recovery over real QUIC on 127.0.0.1 (issue 11): a relay frozen past its
// lease, and the Worker down for twice the lease, with LEASE_TTL_MS=3000.
//
//   node --test test/e2e/network/recovery.test.mjs    (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { lapseRound, lapseStack, NAMESPACE, SCOPE } from "./lapse.mjs";
import { now, sleep, waitFor } from "./harness.mjs";

const LEASE_TTL_MS = 3000;
const INTERVAL_MS = LEASE_TTL_MS / 3; // the Heartbeat reply's interval_ms
// "Within one heartbeat interval plus a few seconds" (issue 11).
const RECOVERY_LIMIT_MS = INTERVAL_MS + 5000;

let stack;

before(async () => {
  stack = await lapseStack({ leaseTtlMs: LEASE_TTL_MS, name: "recovery" });
});

after(async () => {
  await stack?.close();
});

test("a relay frozen past its lease re-registers and B's new subscriber receives its publisher", async () => {
  await stack.step(async () => {
    const r = await lapseRound(stack, { recoveryLimitMs: RECOVERY_LIMIT_MS });
    console.log(
      `# lapse: frozen ${Math.round(r.frozenMs)} ms (purge seen after ${Math.round(r.purgeMs)} ms); after SIGCONT: ` +
        `registered again in ${Math.round(r.reregisteredMs)} ms, first object at a new subscriber on B in ${Math.round(r.recoveryMs)} ms (${r.attempts} attempts)`,
    );
    assert.ok(r.frozenMs > LEASE_TTL_MS, "frozen longer than the lease");
  });
});

test("the Worker down for twice the lease: both relays recover with no registration missing", async () => {
  await stack.step(async () => {
    const { A, B } = stack;
    // A registration on each relay: A's publisher (from the setup) and one on B.
    const NS_B = `${NAMESPACE}-b`;
    stack.publish(B, `/${SCOPE}/pub`, { namespace: NS_B, name: "pub-b" });
    const expected = [`${NAMESPACE}@${A.host}`, `${NS_B}@${B.host}`].sort();
    await waitFor("both relays' namespaces registered", async () => same(await stack.namespaces(SCOPE), expected), { timeoutMs: 15_000 });
    // A subscriber that is served across the outage by what B already has.
    const { sub: across } = await stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace: NAMESPACE, timeoutMs: 20_000 });

    await stack.killWorker();
    const seenAtStop = across.lines.length;
    await sleep(2 * LEASE_TTL_MS);
    assert.ok(A.proc.running && B.proc.running, "both relays keep running while the Worker is down");
    assert.ok(across.lines.length >= seenAtStop + 2, `a subscriber on B kept receiving during the outage (${across.lines.length - seenAtStop} objects)`);

    await stack.startWorker();
    const upAt = now();
    // Past the RelayObjects' restart grace (one lease) and a heartbeat, a lapse
    // purge would have happened; what the Worker holds then must be complete.
    await sleep(LEASE_TTL_MS + INTERVAL_MS + 1000);
    let got;
    await waitFor(`registrations ${expected.join(", ")} after the restart`, async () => same((got = await stack.namespaces(SCOPE)), expected), {
      timeoutMs: 10_000,
    }).catch((e) => {
      e.message += ` (has: ${got?.join(", ")})`;
      throw e;
    });
    const { relays = [] } = await stack.admin("ListRelays", {});
    for (const r of [A, B]) {
      const rec = relays.find((x) => new URL(x.url).host === r.host);
      assert.ok(rec?.alive, `relay ${r.name} is alive in ListRelays after the restart (${JSON.stringify(rec)})`);
    }
    console.log(`# outage: registrations complete ${Math.round(now() - upAt)} ms after the Worker was back`);

    // New subscribers, each pulling from the other relay.
    await stack.subscribeUntilReceived(B, `/${SCOPE}/watch`, { namespace: NAMESPACE, timeoutMs: 15_000 });
    await stack.subscribeUntilReceived(A, `/${SCOPE}/watch`, { namespace: NS_B, timeoutMs: 15_000 });
    assert.ok(A.proc.running && B.proc.running, "both relays still running");
  });
});

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
