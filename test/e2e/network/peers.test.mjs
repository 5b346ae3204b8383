// Peers recognised without a static list, over real QUIC on 127.0.0.1
// (issue 11): two moq-worker-edge relays with no --internal-peer learn each
// other's addresses from the Worker's Heartbeat replies. Unscoped traffic, so
// no relay-link path is involved: the address is the only way A can tell that
// B's session is a relay's.
//
//   node --test test/e2e/network/peers.test.mjs      (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { acceptedFrom, sleep, Stack, waitFor } from "./harness.mjs";

const LEASE_TTL_MS = 3000;
const PREFIX = "e2e/peers";

let stack;
let A;
let B;

before(async () => {
  stack = await Stack.start({ name: "peers", vars: { ALLOW_UNSCOPED: "true", LEASE_TTL_MS: String(LEASE_TTL_MS) } });
  // On the lease socket the peer list refreshes with each HeartbeatRequest
  // (every 30 s by default): every second here, so the test stays short.
  const quick = { args: ["--lease-socket-beat-ms", "1000"] };
  A = await stack.relay("a", quick);
  B = await stack.relay("b", quick);
  // Each relay learns the other from a Heartbeat reply sent after both were up,
  // and logs the change.
  for (const [me, peer] of [
    [A, B],
    [B, A],
  ]) {
    await stack.step(() =>
      waitFor(
        `relay ${me.name} to learn ${peer.host} from its Heartbeat replies`,
        () =>
          me.proc
            .log()
            .split("\n")
            .some((l) => l.includes("live relay peers changed") && l.includes(peer.host)),
        { timeoutMs: LEASE_TTL_MS * 3 },
      ),
    );
  }
});

after(async () => {
  await stack?.close();
});

test("a relay-to-relay session is internal without --internal-peer, and its source is excluded from SubscribeNamespace", async () => {
  await stack.step(async () => {
    // A namespace under the prefix on each relay.
    stack.publish(A, "/", { namespace: `${PREFIX}/a`, name: "pub-a" });
    stack.publish(B, "/", { namespace: `${PREFIX}/b`, name: "pub-b" });
    const expected = [`${PREFIX}/a@${A.host}`, `${PREFIX}/b@${B.host}`];
    await waitFor("both namespaces registered", async () => JSON.stringify(await stack.namespaces()) === JSON.stringify(expected), {
      timeoutMs: 15_000,
    });

    // SUBSCRIBE_NAMESPACE on B: B asks the Worker, which names A (hosting
    // e2e/peers/a), and B forwards the SUBSCRIBE_NAMESPACE to A.
    const watcher = stack.announced(B, "/", { prefix: PREFIX });
    await waitFor(
      "the watcher on B to see both relays' namespaces",
      () => {
        if (!watcher.running) throw new Error(`announced exited: ${JSON.stringify(watcher.exit)}`);
        // moq-transport writes namespaces as paths with a leading "/".
        const texts = watcher.lines.map((l) => l.text.replace("added /", "added "));
        return texts.includes(`added ${PREFIX}/a`) && texts.includes(`added ${PREFIX}/b`);
      },
      { timeoutMs: 20_000 },
    );
    assert.match(
      B.proc.log(),
      new RegExp(`edge: SUBSCRIBE_NAMESPACE routed upstream.*upstream=${escapeRegExp(A.url)}/`),
      "B's SUBSCRIBE_NAMESPACE was routed to A",
    );

    // A recognised B's session as a relay peer from B's advertised address.
    assert.match(A.proc.log(), acceptedFrom(B, { internal: true }), "relay A tagged B's session internal");

    // A subscribed on the peer session's behalf (its row in the Worker) ...
    await waitFor(
      "namespace subscriptions of B (the client's) and A (the peer session's)",
      async () => {
        const rows = await stack.namespaceSubscriptions();
        return rows.includes(`${PREFIX}@${A.host}`) && rows.includes(`${PREFIX}@${B.host}`);
      },
      { timeoutMs: 10_000 },
    );
    // ... and the Worker's answer to it excluded the source B: had the session
    // counted as public, B (hosting e2e/peers/b) would have been A's upstream
    // and A would forward the SUBSCRIBE_NAMESPACE back to B.
    await sleep(2000);
    assert.doesNotMatch(A.proc.log(), /edge: SUBSCRIBE_NAMESPACE routed upstream/, "A was routed nowhere, so forwarded nothing back to B");

    // The network still delivers across relays.
    await stack.subscribeUntilReceived(B, "/", { namespace: `${PREFIX}/a`, timeoutMs: 15_000 });
  });
});

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
