// Recovery over real QUIC on 127.0.0.1 (issue 11): a relay frozen past its
// lease, and the Worker down for twice the lease, with LEASE_TTL_MS=3000.
//
//   node --test test/e2e/network/recovery.test.mjs    (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { lapseRound, lapseStack, publishingPair, SCOPE } from "./lapse.mjs";
import { now, sleep, waitFor } from "./harness.mjs";

const LEASE_TTL_MS = 3000;
const INTERVAL_MS = LEASE_TTL_MS / 3; // the Heartbeat reply's interval_ms
// "Within one heartbeat interval plus a few seconds" (issue 11).
const RECOVERY_LIMIT_MS = INTERVAL_MS + 5000;

let stack;
let first; // the pair of the lapse test

before(async () => {
  stack = await lapseStack({ leaseTtlMs: LEASE_TTL_MS, name: "recovery" });
});

after(async () => {
  await stack?.close();
});

test("a relay frozen past its lease re-registers and B's new subscriber receives its publisher", async () => {
  await stack.step(async () => {
    first = await publishingPair(stack, ["a", "b"]);
    const r = await lapseRound(stack, first, { recoveryLimitMs: RECOVERY_LIMIT_MS });
    console.log(
      `# lapse: frozen ${Math.round(r.frozenMs)} ms (purge seen after ${Math.round(r.purgeMs)} ms); after SIGCONT: ` +
        `registered again in ${Math.round(r.reregisteredMs)} ms, first object at a new subscriber on B in ${Math.round(r.recoveryMs)} ms (${r.attempts} attempts)`,
    );
    assert.ok(r.frozenMs > LEASE_TTL_MS, "frozen longer than the lease");
  });
});

test("the Worker down for twice the lease: both relays recover with no registration missing", async () => {
  await stack.step(async () => {
    // A fresh pair, whatever the lapse test left, with a registration on each
    // relay: C's publisher and one on D.
    await Promise.all([first?.A.proc.stop(), first?.B.proc.stop()]);
    const { A: C, B: D, namespace: NS_C } = await publishingPair(stack, ["c", "d"]);
    const NS_D = "e2e/d";
    stack.publish(D, `/${SCOPE}/pub`, { namespace: NS_D, name: "pub-d" });
    const expected = [`${NS_C}@${C.host}`, `${NS_D}@${D.host}`].sort();
    const held = async () => (await stack.namespaces(SCOPE)).filter((r) => r.endsWith(`@${C.host}`) || r.endsWith(`@${D.host}`));
    await waitFor("both relays' namespaces registered", async () => same(await held(), expected), { timeoutMs: 15_000 });
    // A subscriber that D keeps serving across the outage with what it already pulls from C.
    const { sub: across } = await stack.subscribeUntilReceived(D, `/${SCOPE}/watch`, { namespace: NS_C, timeoutMs: 20_000 });

    await stack.killWorker();
    const seenAtStop = across.lines.length;
    await sleep(2 * LEASE_TTL_MS);
    assert.ok(C.proc.running && D.proc.running, "both relays keep running while the Worker is down");
    assert.ok(
      across.lines.length >= seenAtStop + 2,
      `a subscriber on D kept receiving from C during the outage (${across.lines.length - seenAtStop} objects)`,
    );

    await stack.startWorker();
    const upAt = now();
    // Past the RelayObjects' restart grace (one lease) and a heartbeat, a lapse
    // purge would have happened; what the Worker holds then must be complete.
    await sleep(LEASE_TTL_MS + INTERVAL_MS + 1000);
    let got;
    const complete = async () => {
      got = await held();
      return same(got, expected);
    };
    await waitFor(`registrations ${expected.join(", ")} after the restart`, complete, { timeoutMs: 10_000 }).catch((e) => {
      e.message += ` (has: ${got?.join(", ")})`;
      throw e;
    });
    const { relays = [] } = await stack.admin("ListRelays", {});
    for (const r of [C, D]) {
      const rec = relays.find((x) => new URL(x.url).host === r.host);
      assert.ok(rec?.alive, `relay ${r.name} is alive in ListRelays after the restart (${JSON.stringify(rec)})`);
    }
    console.log(`# outage: registrations complete ${Math.round(now() - upAt)} ms after the Worker was back`);

    // New subscribers, each pulling from the other relay.
    await stack.subscribeUntilReceived(D, `/${SCOPE}/watch`, { namespace: NS_C, timeoutMs: 15_000 });
    await stack.subscribeUntilReceived(C, `/${SCOPE}/watch`, { namespace: NS_D, timeoutMs: 15_000 });
    assert.ok(C.proc.running && D.proc.running, "both relays still running");
  });
});

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
