// network-e2e: once (relays of both drafts in one network)
// A network in the middle of an upgrade (issue 24), over real QUIC on
// 127.0.0.1: relay A on moq-relay-ietf 0.7 (draft-16), relays B and C on 0.8
// (draft-18), one Worker, moq-clock-ietf clients of each relay's draft
// (0.6.24, 0.6.25). Media flows between relays of one draft; a viewer on B
// asking for what only A has gets a clean, fast refusal (the Worker never
// hands B an upstream it cannot talk to), A's own viewers keep watching, and
// scope T sees nothing of scope S.
//
//   node test/e2e/network/run.mjs test/e2e/network/drafts.test.mjs   (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { acceptedFrom, now, Stack, waitFor, withTimeout } from "./harness.mjs";

/** Longest a cross-draft SUBSCRIBE may take to be refused (the client's whole run: connect, setup, refusal). */
const REFUSED_WITHIN_MS = 5_000;
const TRIES = 5;

let stack;
let A;
let B;
let C;

before(async () => {
  stack = await Stack.start({ name: "drafts", vars: { ALLOW_UNSCOPED: "false" } });
  for (const s of ["S", "T"]) {
    await stack.admin("PutPath", { path: `/${s}/pub`, scope: s, permissions: "PERMISSIONS_READ_WRITE" });
    await stack.admin("PutPath", { path: `/${s}/watch`, scope: s, permissions: "PERMISSIONS_READ_ONLY" });
  }
  A = await stack.relay("a", { draft: "draft-16" });
  B = await stack.relay("b", { draft: "draft-18" });
  C = await stack.relay("c", { draft: "draft-18" });
});

after(async () => {
  await stack?.close();
});

test("each relay's MoQT draft is on record (ListRelays)", async () => {
  await stack.step(async () => {
    const drafts = async () => {
      const { relays = [] } = await stack.admin("ListRelays", {});
      return Object.fromEntries(relays.map((r) => [new URL(r.url).host, (r.moqtVersions ?? []).join(",")]));
    };
    await waitFor("the Worker to list all three relays", async () => Object.keys(await drafts()).length === 3, { timeoutMs: 10_000 });
    assert.deepEqual(await drafts(), { [A.host]: "moqt-16", [B.host]: "moqt-18", [C.host]: "moqt-18" });
  });
});

test("a publisher on B (0.8) reaches a subscriber on C (0.8)", async () => {
  await stack.step(async () => {
    stack.publish(B, "/S/pub", { namespace: "e2e/current", name: "pub-current" });
    await stack.subscribeUntilReceived(C, "/S/watch", { namespace: "e2e/current", timeoutMs: 20_000 });
    assert.match(C.proc.log(), new RegExp(`edge: upstream link opened.*upstream=${B.url}/`), "C was handed B as its upstream");
    assert.match(B.proc.log(), acceptedFrom(C, { internal: true }), "B accepted C's session as a peer");
  });
});

test("a viewer on B asking for a namespace published on A (0.7) is refused fast; A's viewers still get it", async () => {
  await stack.step(async () => {
    stack.publish(A, "/S/pub", { namespace: "e2e/legacy", name: "pub-legacy" });
    await waitFor("A to register e2e/legacy in S", async () => (await stack.namespaces("S")).includes(`e2e/legacy@${A.host}`), {
      timeoutMs: 15_000,
    });
    const { sub: onA } = await stack.subscribeUntilReceived(A, "/S/watch", { namespace: "e2e/legacy", timeoutMs: 20_000 });
    await onA.received(3, 10_000);

    /** One subscriber on B: how long until it exits, refused, with nothing received. */
    const refusal = async (namespace) => {
      const started = now();
      const sub = stack.subscribe(B, "/S/watch", { namespace });
      const exit = await withTimeout(sub.proc.exited, REFUSED_WITHIN_MS, `the subscriber of ${namespace} on B to be refused`);
      assert.notEqual(exit.code, 0, `the subscriber of ${namespace} on B was refused`);
      assert.equal(sub.lines.length, 0, `the subscriber of ${namespace} on B received nothing`);
      return now() - started;
    };
    const crossDraft = [];
    const nowhere = [];
    for (let i = 0; i < TRIES; i++) {
      crossDraft.push(await refusal("e2e/legacy"));
      nowhere.push(await refusal(`e2e/nobody-${i}`));
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `# cross-draft SUBSCRIBE refused in ${Math.round(median(crossDraft))} ms median, ${Math.round(Math.max(...crossDraft))} ms max` +
        ` (a namespace nobody publishes: ${Math.round(median(nowhere))} ms median) over ${TRIES} tries; bound ${REFUSED_WITHIN_MS} ms`,
    );

    // B was never pointed at A, so it never dialled it.
    assert.doesNotMatch(B.proc.log(), new RegExp(`edge: upstream link opened.*upstream=${A.url}/`), "B was never handed A");
    assert.doesNotMatch(A.proc.log(), acceptedFrom(B), "A never saw a session from B");
    // A's own viewer kept receiving throughout.
    const before = onA.lines.length;
    await onA.received(before + 2, 10_000);
    for (const r of [A, B, C]) assert.ok(r.proc.running, `relay ${r.name} still runs`);
  });
});

test("scope T sees nothing of scope S's publishers, on either draft", async () => {
  await stack.step(async () => {
    for (const [relay, namespace] of [
      [A, "e2e/legacy"],
      [C, "e2e/current"],
    ]) {
      const sub = stack.subscribe(relay, "/T/watch", { namespace });
      const exit = await withTimeout(sub.proc.exited, REFUSED_WITHIN_MS, `the T subscriber of ${namespace} on ${relay.name} to be refused`);
      assert.notEqual(exit.code, 0);
      assert.equal(sub.lines.length, 0, `T's subscriber on ${relay.name} received nothing of ${namespace}`);
    }
    const t = await stack.admin("DescribeScope", { scope: "T" });
    assert.deepEqual(t.namespaces ?? [], [], "nothing was registered in T");
  });
});
