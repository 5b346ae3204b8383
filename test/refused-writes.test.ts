// A refused write stores nothing and records nothing: the scope does not list
// the refused relay among its relays, the relay's object does not list the
// scope, and a scope that only ever saw refused writes stays unknown.
// (Over-quota refusals are in test/config/limits.test.ts, which has small quotas.)
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { scopeStub } from "../src/objects/stubs.js";
import { adminClient, codeOf, freshScope, ns, relay } from "./client.js";
import { errorOf, relayNeverWrote, snapshot } from "./hardening.js";
import { tableRows } from "./objects.js";

const relaysOf = async (scope: string) => (await tableRows(scopeStub(env, scope), "relays")).map((r) => r.url);

describe("refused writes", () => {
  it("ALREADY_EXISTS: the scope does not enlist the refused relay, and its RelayObject is not asked", async () => {
    const scope = freshScope("taken");
    const owner = await relay("https://taken-owner.example.com");
    const other = await relay(`https://taken-other-${crypto.randomUUID().slice(0, 8)}.example.com`);
    await owner.registerNamespace({ scope, namespace: ns("live/main") });
    await owner.registerTrack({ scope, namespace: ns("live/main"), track: "video" });
    // The scope tells the directory of itself in the background: let that settle first.
    await expect.poll(async () => (await tableRows(scopeStub(env, scope), "directory_listing")).length).toBe(1);
    const before = await snapshot([scope]);

    expect(await codeOf(other.registerNamespace({ scope, namespace: ns("live/main") }))).toBe(Code.AlreadyExists);
    expect(await codeOf(other.registerTrack({ scope, namespace: ns("live/main"), track: "video" }))).toBe(Code.AlreadyExists);

    // Every table of the scope, its relay list included, is as it was.
    expect(await snapshot([scope])).toEqual(before);
    expect(await relaysOf(scope)).toEqual([owner.url]);
    // No lease was opened and no scope recorded for a relay that stored nothing.
    expect(await relayNeverWrote(other.url)).toBe(true);
  });

  it("ALREADY_EXISTS for a relay already writing in the scope (one statement, no read first): names the owner, changes nothing", async () => {
    const scope = freshScope("taken-known");
    const owner = await relay("https://taken-known-owner.example.com");
    const other = await relay("https://taken-known-other.example.com");
    await owner.registerNamespace({ scope, namespace: ns("live/main") });
    // The other relay's lease and quota room are now known to the scope: its next claim takes the one-statement path.
    const own = await other.registerNamespace({ scope, namespace: ns("live/other") });
    await expect.poll(async () => (await tableRows(scopeStub(env, scope), "directory_listing")).length).toBe(1);
    const before = await snapshot([scope]);

    const err = await errorOf(other.registerNamespace({ scope, namespace: ns("live/main") }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toBe("namespace is already registered by https://taken-known-owner.example.com/");
    expect(await snapshot([scope])).toEqual(before);
    // Its own namespace again: the same registration, renewed.
    expect((await other.registerNamespace({ scope, namespace: ns("live/other") })).registrationId).toBe(own.registrationId);
  });

  it("a retired epoch: a scope only ever written by refused calls stays unknown", async () => {
    const url = `https://retired-${crypto.randomUUID().slice(0, 8)}.example.com`;
    const old = await relay(url, "binary", "old");
    const fresh = await relay(url, "binary", "new");
    await old.heartbeat({ epoch: "old" });
    await fresh.heartbeat({ epoch: "new" }); // retires "old"
    const untouched = freshScope("retired-only");

    expect(await codeOf(old.registerNamespace({ scope: untouched, namespace: ns("zombie") }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(old.subscribeNamespace({ scope: untouched, prefix: ns("zombie") }))).toBe(Code.FailedPrecondition);

    expect(await relaysOf(untouched)).toEqual([]);
    const err = await codeOf(adminClient().describeScope({ scope: untouched }));
    expect(err).toBe(Code.NotFound);
  });
});
