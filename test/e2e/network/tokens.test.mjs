// Who may publish and who may watch (issue 25), over real QUIC on 127.0.0.1:
// scope S has a token policy with a key the Worker holds; moq-clock-ietf
// clients present tokens the Worker issued (--auth-token). A publisher on A
// reaches a subscriber on B; every kind of refusal is refused by the relay
// itself; a removed key stops admitting on both relays within the bound;
// admitting viewers costs the Worker no call; scope O, with no policy, still
// works without tokens.
//
//   node test/e2e/network/run.mjs test/e2e/network/tokens.test.mjs   (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ns } from "../lib/rpc.mjs";
import { DRAFT, now, relayLinkPath, sleep, Stack, waitFor, withTimeout } from "./harness.mjs";

/** How long a removed key may go on admitting (the issue's goal). */
const REMOVED_WITHIN_MS = 10_000;
const NAMESPACE = "e2e/tok";

let stack;
let A;
let B;

const issue = async (grants, { namespace = NAMESPACE, ttlSeconds } = {}) =>
  (await stack.admin("IssueToken", { scope: "S", grants, namespacePrefix: ns(namespace), ...(ttlSeconds ? { ttlSeconds } : {}) })).token;
const PUBLISH = ["TOKEN_GRANT_PUBLISH"];
const SUBSCRIBE = ["TOKEN_GRANT_SUBSCRIBE"];

/** A subscriber that must be refused: it exits non-zero having received nothing. */
async function refused(relay, path, opts, what) {
  const sub = stack.subscribe(relay, path, { namespace: NAMESPACE, ...opts });
  const exit = await withTimeout(sub.proc.exited, 15_000, `${what} to be refused`);
  assert.notEqual(exit.code, 0, `${what} is refused`);
  assert.equal(sub.lines.length, 0, `${what} received nothing`);
}

/** CoordinatorService calls the Worker served, heartbeats excepted (its /metrics), by method. */
async function workerCalls() {
  const res = await fetch(`${stack.url}/metrics`, { headers: { authorization: "Bearer dev-admin-token" } });
  const calls = {};
  for (const line of (await res.text()).split("\n")) {
    if (line.startsWith("moq_worker_rpc_requests_total{") && line.includes("CoordinatorService") && !line.includes('method="Heartbeat"')) {
      const method = /method="([^"]+)"/.exec(line)?.[1] ?? "?";
      calls[method] = (calls[method] ?? 0) + Number(line.split(" ").at(-1));
    }
  }
  return calls;
}

/** Calls made between two workerCalls() readings, by method (none: {}). */
const callsBetween = (before, after) =>
  Object.fromEntries(Object.entries(after).flatMap(([m, n]) => (n - (before[m] ?? 0) > 0 ? [[m, n - (before[m] ?? 0)]] : [])));

before(async () => {
  stack = await Stack.start({ name: "tokens", vars: { ALLOW_UNSCOPED: "false" } });
  for (const s of ["S", "O"]) {
    await stack.admin("PutPath", { path: `/${s}/pub`, scope: s, permissions: "PERMISSIONS_READ_WRITE" });
    await stack.admin("PutPath", { path: `/${s}/watch`, scope: s, permissions: "PERMISSIONS_READ_ONLY" });
  }
  // The policy is on before any relay has seen S; no clock skew, so expiry
  // shows at once (the relay's smallest tolerance is 1 s).
  await stack.admin("RotateScopeKey", { scope: "S" });
  await stack.admin("PutScopeConfig", { scope: "S", config: { auth: { clockSkewSeconds: 0 } } });
  A = await stack.relay("a");
  B = await stack.relay("b");
});

after(async () => {
  await stack?.close();
});

test(`a publisher on A with a publish token reaches a subscriber on B with a subscribe token (${DRAFT})`, async () => {
  await stack.step(async () => {
    stack.publish(A, "/S/pub", { namespace: NAMESPACE, token: await issue(PUBLISH), name: "pub-S" });
    const { sub } = await stack.subscribeUntilReceived(B, "/S/watch", {
      namespace: NAMESPACE,
      token: await issue(SUBSCRIBE),
      timeoutMs: 20_000,
    });
    await sub.received(3, 10_000);
  });
});

test("more viewers with tokens join on B without a Worker call", async () => {
  await stack.step(async () => {
    const token = await issue(SUBSCRIBE);
    // One viewer first, so B's answers (the path, the route, the policy) are
    // cached by the time the others join, as they are for a live stream.
    const first = stack.subscribe(B, "/S/watch", { namespace: NAMESPACE, token });
    await first.received(1, 15_000);
    const before = await workerCalls();
    const viewers = Array.from({ length: 5 }, () => stack.subscribe(B, "/S/watch", { namespace: NAMESPACE, token }));
    for (const v of viewers) await v.received(1, 15_000);
    for (const v of [first, ...viewers]) await v.proc.stop();
    assert.deepEqual(callsBetween(before, await workerCalls()), {}, "5 viewers admitted with tokens made no Worker call");
  });
});

test("refused: no token, another namespace, expired, subscribe-only publishing, a leaked relay link", async () => {
  await stack.step(async () => {
    await refused(B, "/S/watch", {}, "a subscriber with no token");
    await refused(B, "/S/watch", { token: await issue(SUBSCRIBE, { namespace: "e2e/other" }) }, "a token for another namespace");
    await refused(B, "/S/watch", { token: await issue(PUBLISH) }, "a publish token subscribing");
    // A leaked link path: a client dialling A as if it were B.
    await refused(A, relayLinkPath("S"), {}, "a client at the relay-link path");

    const pub = stack.publish(A, "/S/pub", { namespace: "e2e/tok-sneak", token: await issue(SUBSCRIBE, { namespace: "e2e/tok-sneak" }) });
    const exit = await withTimeout(pub.exited, 15_000, "a subscribe-only token publishing to be refused");
    assert.notEqual(exit.code, 0, "a subscribe-only token cannot publish");
    assert.ok(!(await stack.namespaces("S")).some((n) => n.startsWith("e2e/tok-sneak")), "nothing registered");

    const short = await issue(SUBSCRIBE, { ttlSeconds: 1 });
    await sleep(3_000);
    await refused(B, "/S/watch", { token: short }, "an expired token");
  });
});

test(`a removed key stops admitting on every relay within ${REMOVED_WITHIN_MS / 1000} s`, async () => {
  await stack.step(async () => {
    const { key } = await stack.admin("RotateScopeKey", { scope: "S" });
    const old = (await stack.admin("DescribeScope", { scope: "S" })).config.auth.keys.find((k) => k.signing).kid;
    assert.notEqual(old, key.kid);
    const token = await issue(SUBSCRIBE);
    for (const r of [A, B]) await stack.subscribeUntilReceived(r, "/S/watch", { namespace: NAMESPACE, token, timeoutMs: 20_000 });
    const removedAt = now();
    await stack.admin("RemoveScopeKey", { scope: "S", kid: old });
    const stoppedAfter = {};
    for (const r of [A, B]) {
      await waitFor(
        `relay ${r.name} to refuse the removed key's token`,
        async () => {
          const sub = stack.subscribe(r, "/S/watch", { namespace: NAMESPACE, token });
          const exit = await withTimeout(
            Promise.race([sub.proc.exited, sub.received(1, 10_000).then(() => "received")]),
            12_000,
            "a subscriber's verdict",
          );
          await sub.proc.stop();
          if (exit === "received") return false;
          stoppedAfter[r.name] = Math.round(now() - removedAt);
          return true;
        },
        { timeoutMs: REMOVED_WITHIN_MS + 15_000, intervalMs: 250 },
      );
    }
    console.log(`# removed key refused after ${JSON.stringify(stoppedAfter)} ms (bound ${REMOVED_WITHIN_MS} ms)`);
    for (const [relay, ms] of Object.entries(stoppedAfter)) assert.ok(ms <= REMOVED_WITHIN_MS, `relay ${relay}: ${ms} ms`);
  });
});

test("a scope without a policy works without tokens; once one is turned on, no relay admits a session without a token", async () => {
  await stack.step(async () => {
    stack.publish(A, "/O/pub", { namespace: "e2e/open", name: "pub-O" });
    await stack.subscribeUntilReceived(B, "/O/watch", { namespace: "e2e/open", timeoutMs: 20_000 });
    // B's relay now holds "no policy" for O for 300 s. The policy goes on:
    // B's edge refuses new sessions in O rather than let the relay admit them.
    await stack.admin("RotateScopeKey", { scope: "O" });
    await sleep(1_000);
    const sub = stack.subscribe(B, "/O/watch", { namespace: "e2e/open" });
    const exit = await withTimeout(sub.proc.exited, 15_000, "a tokenless subscriber in O to be refused");
    assert.notEqual(exit.code, 0, "refused");
    assert.equal(sub.lines.length, 0, "received nothing");
    assert.match(B.proc.log(), /edge: session refused: the scope's token policy was turned on/);
  });
});
