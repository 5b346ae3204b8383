// Limits at their edge, with small values set for this project only
// (vitest.config.ts, project "config"): each quota admits exactly its number
// of rows per relay per scope, refuses one more with RESOURCE_EXHAUSTED naming
// the field and the variable, stores nothing for the refused call, and frees
// up again when rows go. Retries of held rows never count twice.
import { describe, expect, it } from "vitest";
import { env, evictDurableObject, runInDurableObject } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { limitsOf } from "../../src/limits.js";
import { scopeStub } from "../../src/objects/stubs.js";
import { freshScope, ns, relay } from "../client.js";
import { codeOf, errorOf, scopeState, snapshot } from "../hardening.js";

// The values vitest.config.ts gives this project.
const Q = 3;
const LIST = 4;

describe("limits configured through Worker variables", () => {
  it("this project runs with the small limits (so the tests below test them)", () => {
    expect(limitsOf(env)).toEqual({
      namespacesPerRelay: Q,
      tracksPerRelay: Q,
      subscriptionsPerRelay: Q,
      listTracks: LIST,
      watchersPerScope: 4,
    });
  });

  it(`namespaces: ${Q} per relay per scope, then RESOURCE_EXHAUSTED; others and other scopes unaffected`, async () => {
    const scope = freshScope("lim-ns");
    const a = await relay("https://lim-a.example.com");
    const b = await relay("https://lim-b.example.com");
    for (let i = 0; i < Q; i++) await a.registerNamespace({ scope, namespace: ns(`n/${i}`) });
    // Retrying a held namespace is not a new row.
    expect(await codeOf(a.registerNamespace({ scope, namespace: ns("n/0") }))).toBe("ok");
    const before = await scopeState([scope]);
    const err = await errorOf(a.registerNamespace({ scope, namespace: ns(`n/${Q}`) }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe(
      `namespace: relay ${a.url} already holds ${Q} namespaces in this scope, the most allowed (MAX_NAMESPACES_PER_RELAY)`,
    );
    expect(await scopeState([scope])).toEqual(before);
    // The quota is the relay's own: another relay, or another scope, still has room.
    expect(await codeOf(b.registerNamespace({ scope, namespace: ns(`n/${Q}`) }))).toBe("ok");
    expect(await codeOf(a.registerNamespace({ scope: freshScope("lim-ns-2"), namespace: ns("n/x") }))).toBe("ok");
    // Room comes back when a row goes.
    await a.unregisterNamespace({ scope, namespace: ns("n/1") });
    expect(await codeOf(a.registerNamespace({ scope, namespace: ns("n/new") }))).toBe("ok");
    expect(await codeOf(a.registerNamespace({ scope, namespace: ns("n/newer") }))).toBe(Code.ResourceExhausted);
  });

  it("a claim refused over quota leaves the scope's record of the relay alone, even after asking its RelayObject", async () => {
    const scope = freshScope("lim-record");
    const a = await relay(`https://lim-record-${crypto.randomUUID().slice(0, 8)}.example.com`);
    for (let i = 0; i < Q; i++) await a.registerNamespace({ scope, namespace: ns(`n/${i}`) });
    // The scope's record of the relay differs from the RelayObject's (a missed
    // address update), and a new instance has no cached lease: the next claim
    // asks the RelayObject.
    const stub = scopeStub(env, scope);
    // The scope tells the directory of itself in the background: let that settle first.
    await expect.poll(async () => (await snapshot([scope]))[`scope scope:${scope}`]).toHaveProperty("directory_listing.length", 1);
    await runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("UPDATE relays SET addrs = '[\"198.51.100.9:4443\"]' WHERE url = ?", a.url);
    });
    await evictDurableObject(stub);
    const before = await snapshot([scope]);
    expect(await codeOf(a.registerNamespace({ scope, namespace: ns(`n/${Q}`) }))).toBe(Code.ResourceExhausted);
    // Every table, the relay list included: nothing was stored, so nothing was recorded.
    expect(await snapshot([scope])).toEqual(before);
  });

  it(`tracks: ${Q} per relay per scope`, async () => {
    const scope = freshScope("lim-tr");
    const a = await relay("https://lim-a.example.com");
    for (let i = 0; i < Q; i++) await a.registerTrack({ scope, namespace: ns(`t/${i % 2}`), track: `v${i}` });
    expect(await codeOf(a.registerTrack({ scope, namespace: ns("t/0"), track: "v0" }))).toBe("ok");
    const before = await scopeState([scope]);
    const err = await errorOf(a.registerTrack({ scope, namespace: ns("t/9"), track: "v9" }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^track: relay .* already holds 3 tracks in this scope, the most allowed \(MAX_TRACKS_PER_RELAY\)$/);
    expect(await scopeState([scope])).toEqual(before);
  });

  it(`namespace subscriptions: ${Q} per relay per scope; renewing one is free`, async () => {
    const scope = freshScope("lim-sub");
    const a = await relay("https://lim-a.example.com");
    for (let i = 0; i < Q; i++) await a.subscribeNamespace({ scope, prefix: ns(i === 0 ? "" : `p/${i}`) });
    expect(await codeOf(a.subscribeNamespace({ scope, prefix: ns("") }))).toBe("ok");
    const before = await scopeState([scope]);
    const err = await errorOf(a.subscribeNamespace({ scope, prefix: ns("p/9") }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^prefix: .* already holds 3 namespace subscriptions .*\(MAX_SUBSCRIPTIONS_PER_RELAY\)$/);
    expect(await scopeState([scope])).toEqual(before);
    await a.unsubscribeNamespace({ scope, prefix: ns("p/1") });
    expect(await codeOf(a.subscribeNamespace({ scope, prefix: ns("p/9") }))).toBe("ok");
  });

  it(`lingering track subscriptions: ${Q} per relay per scope, counted apart from namespace subscriptions`, async () => {
    const scope = freshScope("lim-tsub");
    const a = await relay("https://lim-a.example.com");
    for (let i = 0; i < Q; i++) await a.subscribeNamespace({ scope, prefix: ns(`p/${i}`) });
    for (let i = 0; i < Q; i++) await a.subscribeTrack({ scope, namespace: ns("live"), track: `t${i}` });
    expect(await codeOf(a.subscribeTrack({ scope, namespace: ns("live"), track: "t0" }))).toBe("ok");
    const before = await scopeState([scope]);
    const err = await errorOf(a.subscribeTrack({ scope, namespace: ns("live"), track: "t9" }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/^track: .* already holds 3 track subscriptions .*\(MAX_SUBSCRIPTIONS_PER_RELAY\)$/);
    expect(await scopeState([scope])).toEqual(before);
  });

  it(`ListTracks returns up to ${LIST} tracks and refuses a namespace with more`, async () => {
    const scope = freshScope("lim-list");
    const relays = await Promise.all([0, 1].map((i) => relay(`https://lim-list-${i}.example.com`)));
    // Two relays so the per-relay quota (3) is not what stops us.
    for (let i = 0; i < LIST; i++) await relays[i % 2].registerTrack({ scope, namespace: ns("big"), track: `t${i}` });
    const listed = await relays[0].listTracks({ scope, namespace: ns("big") });
    expect(listed.tracks.map((t) => t.name)).toEqual(["t0", "t1", "t2", "t3"]);
    await relays[0].registerTrack({ scope, namespace: ns("big"), track: `t${LIST}` });
    const err = await errorOf(relays[0].listTracks({ scope, namespace: ns("big") }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe(
      `namespace: more than ${LIST} tracks are registered under it; ListTracks returns at most ${LIST} (MAX_LIST_TRACKS)`,
    );
    // Other namespaces are unaffected.
    expect((await relays[0].listTracks({ scope, namespace: ns("small") })).tracks).toEqual([]);
  });

  it("the quota holds under a burst: 20 parallel registrations by one relay store exactly the quota", async () => {
    const scope = freshScope("lim-burst");
    const a = await relay("https://lim-burst.example.com");
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => codeOf(a.registerNamespace({ scope, namespace: ns(`b/${i}`) }))),
    );
    expect(results.filter((r) => r === "ok")).toHaveLength(Q);
    expect(results.filter((r) => r === Code.ResourceExhausted)).toHaveLength(20 - Q);
    const state = (await scopeState([scope]))[`scope scope:${scope}`] as { namespaces: unknown[] };
    expect(state.namespaces).toHaveLength(Q);
  });
});
