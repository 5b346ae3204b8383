// Scoped relay-to-relay routing over real QUIC on 127.0.0.1 (issue 11): a
// Worker with ALLOW_UNSCOPED=false, two moq-worker-edge relays A and B that
// nobody told about each other (no --internal-peer), moq-clock-ietf clients.
//
//   node --test test/e2e/network/scoped.test.mjs      (KEEP_LOGS=1 keeps the logs)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { randomBytes } from "node:crypto";
import { acceptedFrom, relayLinkPath, Stack, waitFor, withTimeout } from "./harness.mjs";

const NAMESPACE = "e2e/clock";
// Scope T's publisher runs under faketime from this date, so its clock values
// (the objects moq-clock publishes) tell it apart from scope S's publisher.
const T_CLOCK = "2016-06-01 00:00:00";
const T_YEAR = "2016-";
const realYear = () => `${new Date().getUTCFullYear()}-`;

let stack;
let A;
let B;

before(async () => {
  stack = await Stack.start({ name: "scoped", vars: { ALLOW_UNSCOPED: "false" } });
  for (const s of ["S", "T"]) {
    await stack.admin("PutPath", { path: `/${s}/pub`, scope: s, permissions: "PERMISSIONS_READ_WRITE" });
    await stack.admin("PutPath", { path: `/${s}/watch`, scope: s, permissions: "PERMISSIONS_READ_ONLY" });
  }
  A = await stack.relay("a");
  B = await stack.relay("b");
});

after(async () => {
  await stack?.close();
});

test("a scoped publisher on A reaches a read-only subscriber on B, and scopes S and T never see each other's publisher", async () => {
  await stack.step(async () => {
    stack.publish(A, "/S/pub", { namespace: NAMESPACE, name: "pub-S" });
    stack.publish(A, "/T/pub", { namespace: NAMESPACE, clock: T_CLOCK, name: "pub-T" });
    await waitFor(
      "both scopes' namespaces registered by relay A",
      async () =>
        (await stack.namespaces("S")).includes(`${NAMESPACE}@${A.host}`) &&
        (await stack.namespaces("T")).includes(`${NAMESPACE}@${A.host}`),
      { timeoutMs: 15_000 },
    );

    const { sub: subS } = await stack.subscribeUntilReceived(B, "/S/watch", { namespace: NAMESPACE, timeoutMs: 20_000 });
    const { sub: subT } = await stack.subscribeUntilReceived(B, "/T/watch", { namespace: NAMESPACE, timeoutMs: 20_000 });
    await subS.received(3, 10_000);
    await subT.received(3, 10_000);

    const texts = (sub) => sub.lines.map((l) => l.text);
    assert.ok(
      texts(subS).every((t) => t.startsWith(realYear())),
      `S's subscriber got only S's clock: ${texts(subS).join(", ")}`,
    );
    assert.ok(
      texts(subT).every((t) => t.startsWith(T_YEAR)),
      `T's subscriber got only T's clock: ${texts(subT).join(", ")}`,
    );

    // B reached A through each scope's relay-link URL, one connection per (scope, relay).
    const dials = (scope) => sessionsAt(A, B, relayLinkPath(scope));
    assert.equal(dials("S"), 1, "relay B dialed A once at S's relay-link URL");
    assert.equal(dials("T"), 1, "relay B dialed A once at T's relay-link URL");
    const { sub: again } = await stack.subscribeUntilReceived(B, "/S/watch", { namespace: NAMESPACE, timeoutMs: 20_000 });
    assert.ok(again.lines[0].text.startsWith(realYear()));
    assert.equal(dials("S"), 1, "a second subscriber in S reuses B's link to A");
  });
});

test("with ALLOW_UNSCOPED=false an unscoped publisher is refused and registers nothing", async () => {
  await stack.step(async () => {
    const proc = stack.publish(A, "/", { namespace: "e2e/unscoped" });
    const exit = await withTimeout(proc.exited, 15_000, "the unscoped publisher to be refused");
    assert.notEqual(exit.code, 0, "the unscoped publisher's session fails");
    const unscoped = await stack.namespaces().catch((e) => {
      if (e.code === "not_found") return []; // the unscoped space was never written
      throw e;
    });
    assert.deepEqual(unscoped, [], "nothing registered in the unscoped space");
  });
});

test("a relay-to-relay session is tagged internal without --internal-peer", async () => {
  await stack.step(async () => {
    // The first test made B pull from A: A recognised B (its advertised
    // address, or the relay-link path) as a peer.
    const tagged = acceptedFrom(B, { internal: true });
    await waitFor("relay A to log B's session as internal", () => tagged.test(A.proc.log()), { timeoutMs: 5_000 });
  });
});

test("forged, malformed and foreign relay-link paths are refused over the real stack and change nothing", async () => {
  await stack.step(async () => {
    // C may act in scope T only (its token's scopes claim).
    const C = await stack.relay("c", { scopes: ["T"] });
    const snapshot = async () => ({
      S: await stack.namespaces("S"),
      T: await stack.namespaces("T"),
      scopes: (await stack.admin("ListScopes", {})).scopes,
      paths: (await stack.admin("DescribeScope", { scope: "S" })).paths,
    });
    const before = await snapshot();

    // Control: the test computes links exactly as the Worker does, so each
    // refusal below is about the MAC or the scope, not a wrong computation.
    const { sub } = await stack.subscribeUntilReceived(A, relayLinkPath("S"), { namespace: NAMESPACE, timeoutMs: 15_000 });
    assert.ok(sub.lines[0].text.startsWith(realYear()), "a genuine S link reads S");
    const { sub: viaC } = await stack.subscribeUntilReceived(C, relayLinkPath("T"), { namespace: NAMESPACE, timeoutMs: 15_000 });
    assert.ok(viaC.lines[0].text.startsWith(T_YEAR), "C's genuine T link reads T");

    const b64 = (s) => Buffer.from(s).toString("base64url");
    const sMac = relayLinkPath("S").split("/")[3];
    const forged = "permission_denied";
    const malformed = "invalid_argument";
    const refused = [
      ["a forged MAC", A, `/_relay/${b64("S")}/${randomBytes(16).toString("base64url")}`, forged],
      ["S's MAC on scope T", A, `/_relay/${b64("T")}/${sMac}`, forged],
      ["a link for a scope nobody configured, forged", A, `/_relay/${b64("X")}/${randomBytes(16).toString("base64url")}`, forged],
      ["a MAC made with another secret", A, relayLinkPath("S", "not-the-token-secret"), forged],
      ["a malformed link (no MAC)", A, `/_relay/${b64("S")}`, malformed],
      ["a malformed link (short MAC)", A, `/_relay/${b64("S")}/${sMac.slice(0, 8)}`, malformed],
      ["a malformed link (scope not base64url)", A, `/_relay/S!/${sMac}`, malformed],
      ["a genuine link for a scope the relay's token may not use", C, relayLinkPath("S"), forged],
    ];
    for (const [what, relay, path, code] of refused) {
      for (const role of ["subscriber", "publisher"]) {
        const rejectedBefore = resolveFailures(relay, path, code);
        const proc =
          role === "publisher"
            ? stack.publish(relay, path, { namespace: `e2e/forged/${role}` })
            : stack.subscribe(relay, path, { namespace: NAMESPACE }).proc;
        const exit = await withTimeout(proc.exited, 15_000, `the ${role} with ${what} to be refused`);
        assert.notEqual(exit.code, 0, `${role} with ${what} (${path}) is refused`);
        if (role === "subscriber") assert.equal(proc.lines.length, 0, `${role} with ${what} received nothing`);
        // The relay logs before it closes the session, but its log reaches us through a pipe.
        await waitFor(
          `relay ${relay.name} to refuse the session with ${what} at scope resolution, the Worker answering ${code} naming connection_path (${path})`,
          () => resolveFailures(relay, path, code) > rejectedBefore,
          { timeoutMs: 3_000 },
        );
      }
    }

    await assert.rejects(
      stack.admin("PutPath", { path: "/_relay/x", scope: "S", permissions: "PERMISSIONS_READ_WRITE" }),
      (e) => e.code === "invalid_argument" && /path/.test(e.message),
      "PutPath refuses the reserved /_relay prefix naming `path`",
    );

    assert.deepEqual(await snapshot(), before, "no namespace, scope or path changed");
  });
});

/**
 * Sessions the relay refused at scope resolution for exactly this connection
 * path, its log quoting the Worker's error: `code` and the field `connection_path`.
 */
function resolveFailures(relay, path, code) {
  return relay.proc
    .log()
    .split("\n")
    .filter(
      (l) =>
        l.includes("edge: session refused at scope resolution") && l.includes(`path="${path}"`) && l.includes(`${code}: connection_path`),
    ).length;
}

/** How many sessions `relay` accepted from `peer`'s socket at connection path `path` (moq-relay-ietf pools one per URL and address). */
function sessionsAt(relay, peer, path) {
  const line = acceptedFrom(peer, { path, internal: true });
  return relay.proc
    .log()
    .split("\n")
    .filter((l) => line.test(l)).length;
}
