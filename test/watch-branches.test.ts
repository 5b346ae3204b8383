// The watch channel's fan-out tree (watch/root.ts, watch/branch.ts): relays'
// sockets are held by WATCH_BRANCHES (8 by default) branch objects per scope, and a
// change costs the scope one call per branch in use. Relays see the channel
// as before (watch.test.ts); here: each change reaches every branch once and
// in order, a restarted root keeps its branches' sockets, and a branch that
// may have missed a change closes its sockets rather than stay silent.
import { describe, expect, it } from "vitest";
import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { scopeStub, watchBranchStub } from "../src/objects/stubs.js";
import { SETTINGS } from "../src/settings.js";
import { branchIndex, watchBranchName } from "../src/watch/branches.js";
import { freshScope, ns, relay, uniqueRelayUrl } from "./client.js";
import { settled } from "./objects.js";
import { inv, plain, watching } from "./watch-client.js";

const BRANCHES = SETTINGS.WATCH_BRANCHES.default;
const unique = uniqueRelayUrl;

const attached = (scope: string) =>
  runInDurableObject(scopeStub(env, scope), (_o: unknown, state: DurableObjectState) =>
    state.storage.sql
      .exec("SELECT name FROM watch_branches ORDER BY name")
      .toArray()
      .map((r) => r.name as string),
  );

const branchRow = (name: string) =>
  runInDurableObject(watchBranchStub(env, name), (_o: unknown, state: DurableObjectState) =>
    state.storage.sql.exec("SELECT token, stream, seq FROM branch").one(),
  );

describe("watch channel: branches", () => {
  it("spreads 24 relays over their branches; each change reaches all of them once, in order; the scope knows each branch once", async () => {
    const scope = freshScope("br-spread");
    const writer = await relay(unique("writer"));
    const watchers = await Promise.all(Array.from({ length: 24 }, () => watching(scope)));
    const names = [...new Set(watchers.map((x) => watchBranchName(scope, branchIndex(x.url, BRANCHES))))].sort();
    expect(names.length).toBeGreaterThan(1);
    expect(await attached(scope)).toEqual(names);
    // Everyone was greeted on the same sequence.
    expect(new Set(watchers.map((x) => `${x.stream}@${x.seq}`)).size).toBe(1);
    const seq = watchers[0].seq;
    for (const path of ["a", "b", "c"]) await writer.registerNamespace({ scope, namespace: ns(path) });
    for (const { w } of watchers) {
      expect([plain(await w.next()), plain(await w.next()), plain(await w.next())]).toEqual([
        inv(seq + 1, { namespaces: ["a"] }),
        inv(seq + 2, { namespaces: ["b"] }),
        inv(seq + 3, { namespaces: ["c"] }),
      ]);
      await w.quiet();
    }
  });

  it("a restart of the scope's object leaves the branches' sockets open, and later changes reach them", async () => {
    const scope = freshScope("br-root-restart");
    const writer = await relay(unique("writer"));
    const { w, seq } = await watching(scope);
    await evictDurableObject(scopeStub(env, scope));
    await writer.registerNamespace({ scope, namespace: ns("after") });
    expect(plain(await w.next())).toEqual(inv(seq + 1, { namespaces: ["after"] }));
  });

  it("a change committed but never sent (the scope crashed) closes the branch's sockets when the scope starts again; reconnecting resyncs", async () => {
    const scope = freshScope("br-lost");
    const { w, seq, stream, url } = await watching(scope);
    // As if the object died between storing a change and sending it.
    await runInDurableObject(scopeStub(env, scope), (_o: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE watch SET seq = seq + 1");
    });
    await evictDurableObject(scopeStub(env, scope));
    // The next instance syncs its branches first.
    await runInDurableObject(scopeStub(env, scope), () => undefined);
    expect(await w.closed).toBe(1012);
    const again = await watching(scope, url);
    expect([again.stream, again.seq]).toEqual([stream, seq + 1]);
  });

  it("the scope's alarm syncs every branch: one behind (a frame stored, never sent, the object not restarted) closes its sockets", async () => {
    const scope = freshScope("br-recheck");
    const { w } = await watching(scope);
    await runInDurableObject(scopeStub(env, scope), (_o: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE watch SET seq = seq + 1");
      // Far enough ahead not to fire by itself before the test runs it.
      return state.storage.setAlarm(Date.now() + 60_000);
    });
    expect(await runDurableObjectAlarm(scopeStub(env, scope))).toBe(true);
    expect(await w.closed).toBe(1012);
  });

  it("a gap in what a branch is sent closes its sockets; a repeated frame is dropped", async () => {
    const scope = freshScope("br-gap");
    const writer = await relay(unique("writer"));
    const { w, seq, url } = await watching(scope);
    const name = watchBranchName(scope, branchIndex(url, BRANCHES));
    await writer.registerNamespace({ scope, namespace: ns("one") });
    expect(plain(await w.next())).toEqual(inv(seq + 1, { namespaces: ["one"] }));
    const { token } = await branchRow(name);
    const stub = () => watchBranchStub(env, name);
    // A retry of what arrived already: nothing new on the socket.
    expect(await stub().deliver(token as string, [{ kind: "frame", seq: seq + 1, frame: new Uint8Array([1]) }])).toBe("ok");
    await w.quiet();
    // One seq skipped.
    expect(await stub().deliver(token as string, [{ kind: "frame", seq: seq + 3, frame: new Uint8Array([1]) }])).toBe("ok");
    expect(await w.closed).toBe(1012);
    // Another token is not this branch's attachment.
    expect(await stub().deliver("not-the-token", [])).toBe("gone");
  });

  it("a branch whose sockets all closed is forgotten by the scope at its next change, and attaches again for a new socket", async () => {
    const scope = freshScope("br-empty");
    const writer = await relay(unique("writer"));
    const { w, url } = await watching(scope);
    const name = watchBranchName(scope, branchIndex(url, BRANCHES));
    w.ws.close(1000, "done");
    await w.closed;
    await settled();
    await writer.registerNamespace({ scope, namespace: ns("nobody") });
    for (let i = 0; (await attached(scope)).length > 0; i++) {
      expect(i, "the empty branch is forgotten").toBeLessThan(50);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await branchRow(name)).token).toBeNull();
    const again = await watching(scope, url);
    expect(await attached(scope)).toEqual([name]);
    await writer.registerNamespace({ scope, namespace: ns("back") });
    expect(plain(await again.w.next())).toEqual(inv(again.seq + 1, { namespaces: ["back"] }));
  });

  it("an evicted branch keeps its sockets (hibernation) and its sequence: later changes reach them, a new socket is greeted at the same seq", async () => {
    const scope = freshScope("br-evict");
    const writer = await relay(unique("writer"));
    const { w, seq, stream, url } = await watching(scope);
    await writer.registerNamespace({ scope, namespace: ns("before") });
    expect(plain(await w.next())).toEqual(inv(seq + 1, { namespaces: ["before"] }));
    await evictDurableObject(watchBranchStub(env, watchBranchName(scope, branchIndex(url, BRANCHES))));
    // Same relay, so the same branch: greeted from the stored sequence.
    const again = await watching(scope, url);
    expect([again.stream, again.seq]).toEqual([stream, seq + 1]);
    await writer.registerNamespace({ scope, namespace: ns("later") });
    expect(plain(await w.next())).toEqual(inv(seq + 2, { namespaces: ["later"] }));
    expect(plain(await again.w.next())).toEqual(inv(seq + 2, { namespaces: ["later"] }));
  });
});
