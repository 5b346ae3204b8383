// The watch channel, Worker side (schema/moqworker/v1/watch.proto): hello
// first, then one invalidation per change that can alter a Lookup,
// LookupTrack, GetScopeConfig or ResolveScope answer, each seq one more than
// the last; the sequence survives a restart; bad requests are refused before
// the upgrade with the right code and change nothing. Lapses run the
// RelayObject's alarm by hand, as in lifetimes.test.ts.
import { lapseLease } from "./objects.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Code } from "@connectrpc/connect";
import { env, evictDurableObject, runInDurableObject } from "cloudflare:test";
import { ScopeObject } from "../src/objects/scope.js";
import { WatchBranch } from "../src/watch/branch.js";
import { scopeStub } from "../src/objects/stubs.js";
import { ADMIN_TOKEN, adminClient, BASE, freshScope, ns, relay, unshed, workerFetch, uniqueRelayUrl } from "./client.js";
import { codeOf, snapshot } from "./hardening.js";
import { inv, plain, watch, watchRequest, watching } from "./watch-client.js";

const unique = uniqueRelayUrl;

const lapse = lapseLease;

describe("watch channel: events", () => {
  it("says hello first with seq 0 on a scope never watched, then one invalidation per registration change", async () => {
    const scope = freshScope("w-reg");
    const a = await relay(unique("a"), "binary", "e1");
    const { w, seq } = await watching(scope);
    expect(seq).toBe(0);
    await a.registerNamespace({ scope, namespace: ns("live/a") });
    expect(plain(await w.next())).toEqual(inv(1, { namespaces: ["live/a"] }));
    await a.registerTrack({ scope, namespace: ns("live/a"), track: "video" });
    expect(plain(await w.next())).toEqual(inv(2, { tracks: ["live/a#video"] }));
    // The same owner again alters no answer: no event.
    await a.registerNamespace({ scope, namespace: ns("live/a") });
    await a.registerTrack({ scope, namespace: ns("live/a"), track: "video" });
    await w.quiet();
    await a.unregisterTrack({ scope, namespace: ns("live/a"), track: "video" });
    expect(plain(await w.next())).toEqual(inv(3, { tracks: ["live/a#video"] }));
    await a.unregisterNamespace({ scope, namespace: ns("live/a") });
    expect(plain(await w.next())).toEqual(inv(4, { namespaces: ["live/a"] }));
    // Releasing what is not held changes nothing.
    await a.unregisterNamespace({ scope, namespace: ns("live/a") });
    await w.quiet();
  });

  it("every watcher gets the same events; a second hello carries the current seq; other scopes stay quiet", async () => {
    const scope = freshScope("w-many");
    const other = freshScope("w-other");
    const a = await relay(unique("a"));
    const one = await watching(scope);
    const elsewhere = await watching(other);
    await a.registerNamespace({ scope, namespace: ns("x") });
    const two = await watching(scope);
    expect([two.seq, two.stream]).toEqual([1, one.stream]);
    // Operators see how many sockets are open (the other scope's watcher is not counted here).
    expect((await adminClient().describeScope({ scope })).watchers).toBe(2);
    await a.registerNamespace({ scope, namespace: ns("y") });
    expect(plain(await one.w.next())).toEqual(inv(1, { namespaces: ["x"] }));
    expect(plain(await one.w.next())).toEqual(inv(2, { namespaces: ["y"] }));
    expect(plain(await two.w.next())).toEqual(inv(2, { namespaces: ["y"] }));
    await elsewhere.w.quiet();
  });

  it("under concurrent writes by several relays, seq runs without a gap and each effective change is one event", async () => {
    const scope = freshScope("w-burst");
    const relays = await Promise.all([1, 2, 3, 4].map((i) => relay(unique(`burst${i}`))));
    const { w, seq } = await watching(scope);
    // Every relay races for the same 5 namespaces (one winner each), and registers 5 of its own.
    await Promise.all(
      relays.flatMap((r, i) => [
        ...[0, 1, 2, 3, 4].map((k) => codeOf(unshed(() => r.registerNamespace({ scope, namespace: ns(`shared/${k}`) })))),
        ...[0, 1, 2, 3, 4].map((k) => unshed(() => r.registerNamespace({ scope, namespace: ns(`own${i}/${k}`) }))),
      ]),
    );
    const events = [];
    for (let i = 0; i < 5 + 4 * 5; i++) events.push(plain(await w.next()));
    await w.quiet();
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => seq + 1 + i));
    const named = events.flatMap((e) => e.namespaces ?? []).sort();
    const want = [
      ...[0, 1, 2, 3, 4].map((k) => `shared/${k}`),
      ...[0, 1, 2, 3].flatMap((i) => [0, 1, 2, 3, 4].map((k) => `own${i}/${k}`)),
    ].sort();
    expect(named).toEqual(want);
  });

  it("the unscoped space has its own channel (scope parameter left out)", async () => {
    const a = await relay(unique("a"));
    const { w, seq } = await watching(undefined);
    await a.registerNamespace({ namespace: ns(`unscoped-${crypto.randomUUID()}`) });
    expect(plain(await w.next()).seq).toBe(seq + 1);
  });

  it("PutScopeConfig invalidates the config when it changes it", async () => {
    const scope = freshScope("w-config");
    const { w, seq } = await watching(scope);
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true } });
    expect(plain(await w.next())).toEqual(inv(seq + 1, { config: true }));
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true } });
    await w.quiet();
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true, originFallback: "https://origin.example/" } });
    expect(plain(await w.next())).toEqual(inv(seq + 2, { config: true }));
  });

  it("PutPath and DeletePath invalidate the path on the scope it joined and the one it left", async () => {
    const s1 = freshScope("w-path1");
    const s2 = freshScope("w-path2");
    const path = `/w-${crypto.randomUUID().slice(0, 8)}`;
    const one = await watching(s1);
    const two = await watching(s2);
    const admin = adminClient();
    await admin.putPath({ path, scope: s1, permissions: 1 });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 1, { paths: [path] }));
    // Permissions are part of the answer.
    await admin.putPath({ path, scope: s1, permissions: 2 });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 2, { paths: [path] }));
    // A repeat tells again: the scope cannot know whether an earlier call changed the mapping and then failed.
    await admin.putPath({ path, scope: s1, permissions: 2 });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 3, { paths: [path] }));
    await admin.putPath({ path, scope: s2, permissions: 2 });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 4, { paths: [path] }));
    expect(plain(await two.w.next())).toEqual(inv(two.seq + 1, { paths: [path] }));
    await admin.deletePath({ path });
    expect(plain(await two.w.next())).toEqual(inv(two.seq + 2, { paths: [path] }));
    await one.w.quiet();
  });
});

describe("watch channel: a path whose scope was not told of it", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("PutPath that failed after mapping the path still gets an invalidation from DeletePath", async () => {
    const s1 = freshScope("w-untold");
    const path = `/w-untold-${crypto.randomUUID().slice(0, 8)}`;
    const one = await watching(s1);
    const admin = adminClient();
    // The PathObject maps the path, then telling the scope fails: a relay may resolve it to s1 from now on.
    vi.spyOn(ScopeObject.prototype, "putPath").mockImplementationOnce(() => {
      throw new Error("scope unreachable (test)");
    });
    expect(await codeOf(admin.putPath({ path, scope: s1, permissions: 1 }))).not.toBe("ok");
    await admin.deletePath({ path });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 1, { paths: [path] }));
  });
});

describe("watch channel: a path's old scope is told even after a failed call", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("PutPath that could not tell the scope the path left tells it on the retry; DeletePath likewise", async () => {
    const s1 = freshScope("w-retry1");
    const s2 = freshScope("w-retry2");
    const path = `/w-retry-${crypto.randomUUID().slice(0, 8)}`;
    const admin = adminClient();
    await admin.putPath({ path, scope: s1, permissions: 1 });
    const one = await watching(s1);
    const two = await watching(s2);
    // The old scope is unreachable once.
    vi.spyOn(ScopeObject.prototype, "deletePath").mockImplementationOnce(() => {
      throw new Error("scope unreachable");
    });
    expect(await codeOf(admin.putPath({ path, scope: s2, permissions: 1 }))).not.toBe("ok");
    await one.w.quiet();
    // The operator retries: the PathObject already maps the path to s2, and still tells s1.
    await admin.putPath({ path, scope: s2, permissions: 1 });
    expect(plain(await one.w.next())).toEqual(inv(one.seq + 1, { paths: [path] }));
    expect(plain(await two.w.next())).toEqual(inv(two.seq + 1, { paths: [path] }));
    expect((await admin.describeScope({ scope: s1 })).paths.map((p) => p.path)).toEqual([]);
    // DeletePath: the same, the retry answering NOT_FOUND (the mapping is gone) after telling s2.
    vi.spyOn(ScopeObject.prototype, "deletePath").mockImplementationOnce(() => {
      throw new Error("scope unreachable");
    });
    expect(await codeOf(admin.deletePath({ path }))).not.toBe("ok");
    await two.w.quiet();
    expect(await codeOf(admin.deletePath({ path }))).toBe(Code.NotFound);
    expect(plain(await two.w.next())).toEqual(inv(two.seq + 2, { paths: [path] }));
    expect((await admin.describeScope({ scope: s2 })).paths).toEqual([]);
  });
});

describe("watch channel: relay lifetimes", () => {
  it("a lease-lapse purge invalidates every route to the dead relay, and nothing of others", async () => {
    const scope = freshScope("w-lapse");
    const a = await relay(unique("dead"), "binary", "e1");
    const b = await relay(unique("alive"), "binary", "e1");
    await a.heartbeat({ epoch: "e1", addrs: [] });
    await a.registerNamespace({ scope, namespace: ns("a/1") });
    await a.registerNamespace({ scope, namespace: ns("a/2") });
    await a.registerTrack({ scope, namespace: ns("a/1"), track: "t" });
    await b.registerNamespace({ scope, namespace: ns("b/1") });
    const { w, seq } = await watching(scope);
    await lapse(a.url);
    const e = plain(await w.next());
    expect({ ...e, namespaces: [...(e.namespaces ?? [])].sort() }).toEqual(inv(seq + 1, { namespaces: ["a/1", "a/2"], tracks: ["a/1#t"] }));
    await w.quiet();
  });

  it("Shutdown invalidates the relay's routes; a relay with none sends nothing", async () => {
    const scope = freshScope("w-shutdown");
    const a = await relay(unique("leaving"), "binary", "e1");
    const idle = await relay(unique("idle"), "binary", "e1");
    await a.registerTrack({ scope, namespace: ns("s"), track: "x" });
    await idle.subscribeNamespace({ scope, prefix: ns("") });
    const { w, seq } = await watching(scope);
    await idle.shutdown({});
    await a.shutdown({});
    expect(plain(await w.next())).toEqual(inv(seq + 1, { tracks: ["s#x"] }));
    await w.quiet();
  });

  it("a new epoch purges the old life's routes; a new address invalidates the relay's routes", async () => {
    const scope = freshScope("w-epoch");
    const url = unique("restarting");
    const old = await relay(url, "binary", "e1");
    await old.heartbeat({ epoch: "e1", addrs: ["192.0.2.1:4443"] });
    await old.registerNamespace({ scope, namespace: ns("r/1") });
    const { w, seq } = await watching(scope);
    await old.heartbeat({ epoch: "e1", addrs: ["192.0.2.2:4443"] });
    expect(plain(await w.next())).toEqual(inv(seq + 1, { namespaces: ["r/1"] }));
    const next = await relay(url, "binary", "e2");
    await next.heartbeat({ epoch: "e2", addrs: ["192.0.2.2:4443"] });
    expect(plain(await w.next())).toEqual(inv(seq + 2, { namespaces: ["r/1"] }));
    await w.quiet();
  });

  it("past 256 routes a purge invalidates the whole scope", async () => {
    const scope = freshScope("w-big");
    const a = await relay(unique("big"), "binary", "e1");
    for (let i = 0; i < 257; i += 32) {
      await Promise.all(
        Array.from({ length: Math.min(32, 257 - i) }, (_, k) => a.registerNamespace({ scope, namespace: ns(`n/${i + k}`) })),
      );
    }
    const { w, seq } = await watching(scope);
    await a.shutdown({});
    expect(plain(await w.next())).toEqual(inv(seq + 1, { all: true }));
  });

  it("the stream and seq survive a restart of the scope's object; sockets closed by it reconnect to the same sequence", async () => {
    const scope = freshScope("w-restart");
    const a = await relay(unique("a"));
    const { w, seq, stream } = await watching(scope);
    await a.registerNamespace({ scope, namespace: ns("before") });
    expect(plain(await w.next()).seq).toBe(seq + 1);
    await evictDurableObject(scopeStub(env, scope));
    const again = await watching(scope);
    expect([again.stream, again.seq]).toEqual([stream, seq + 1]);
    await a.registerNamespace({ scope, namespace: ns("after") });
    expect(plain(await again.w.next())).toEqual(inv(seq + 2, { namespaces: ["after"] }));
    const row = await runInDurableObject(scopeStub(env, scope), (_o: unknown, state: DurableObjectState) =>
      state.storage.sql.exec("SELECT stream, seq FROM watch").toArray(),
    );
    expect(row).toEqual([{ stream, seq: seq + 2 }]);
  });

  it("answers ping with pong from the runtime, never running the object's handler; anything else closes the socket", async () => {
    const { w } = await watching(freshScope("w-ping"));
    const handler = vi.spyOn(WatchBranch.prototype, "message");
    w.ws.send("ping");
    expect(await w.text()).toBe("pong");
    w.ws.send("ping");
    expect(await w.text()).toBe("pong");
    expect(handler).not.toHaveBeenCalled();
    handler.mockRestore();
    w.ws.send("hello?");
    expect(await w.closed).toBe(1003);
  });
});

describe("watch channel: refused before the upgrade, nothing changed", () => {
  const refusal = async (res: Response) => ({
    status: res.status,
    webSocket: res.webSocket !== null,
    body: (await res.json()) as { code: string; message: string },
  });

  it("no token, a bad token, a token not for the scope, a bad scope name, not an upgrade", async () => {
    const scope = freshScope("w-refused");
    const allowed = freshScope("w-allowed");
    const { token } = await adminClient().createRelayToken({ relayUrl: unique("narrow"), scopes: [allowed] });
    const wide = await relay(unique("wide"));
    const before = await snapshot([scope, allowed]);
    expect(await refusal(await watchRequest(undefined, scope))).toMatchObject({
      status: 401,
      webSocket: false,
      body: { code: "unauthenticated" },
    });
    expect(await refusal(await watchRequest("not-a-token", scope))).toMatchObject({ status: 401, body: { code: "unauthenticated" } });
    const denied = await refusal(await watchRequest(token, scope));
    expect(denied).toMatchObject({ status: 403, body: { code: "permission_denied" } });
    expect(denied.body.message).toMatch(/^scope: /);
    const unscoped = await refusal(await watchRequest(token, undefined));
    expect(unscoped).toMatchObject({ status: 403, body: { code: "permission_denied" } });
    for (const bad of ["", "a\u0001b", "x".repeat(257)]) {
      const r = await refusal(await watchRequest(wide.token, bad));
      expect(r, JSON.stringify(bad)).toMatchObject({ status: 400, body: { code: "invalid_argument" } });
      expect(r.body.message).toMatch(/^scope: /);
    }
    const plainGet = await refusal(await watchRequest(wide.token, scope, { upgrade: "" }));
    expect(plainGet).toMatchObject({ status: 400, body: { code: "invalid_argument" } });
    expect(plainGet.body.message).toMatch(/^upgrade: /);
    const post = await workerFetch(`${BASE}/v1/watch?scope=${scope}`, {
      method: "POST",
      headers: { authorization: `Bearer ${wide.token}` },
    });
    expect([post.status, post.headers.get("allow"), ((await post.json()) as { code: string }).code]).toEqual([405, "GET", "unimplemented"]);
    expect(await snapshot([scope, allowed])).toEqual(before);
    // The narrow token may watch its own scope.
    const w = await watch(token, allowed);
    expect((await w.next()).event.case).toBe("hello");
  });

  it("counts each watch request in /metrics by the code it was answered with", async () => {
    const metric = async (code: string) => {
      const text = await (await workerFetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`moq_worker_rpc_requests_total{service="WatchChannel",method="Watch",code="${code}"}`));
      return Number(line?.split(" ").at(-1) ?? 0);
    };
    const [ok, denied] = [await metric("ok"), await metric("unauthenticated")];
    await watching(freshScope("w-metrics"));
    await watchRequest(undefined, "w-metrics");
    expect([await metric("ok"), await metric("unauthenticated")]).toEqual([ok + 1, denied + 1]);
  });
});
