// Isolation: the same namespaces, tracks and subscriptions in 50 scopes (plus
// the unscoped space), each owned by a different relay, never leak across
// scopes in any coordinator RPC or admin view. Scope names include near-twins
// (case, trailing space, NFC vs NFD, '/', '%', the unscoped object's own name)
// that must all be distinct scopes.
import { beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { Permissions } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { adminClient, expectedLink, freshScope, ns, relay, text, type Coordinator } from "./client.js";
import { codeOf } from "./hardening.js";

const TWINS = ["unscoped", "scope:unscoped", "Caf\u00e9", "Cafe\u0301", "iso", "iso ", "ISO", "iso/a", "iso%2Fa", "../iso", "x".repeat(256)];
const N = 50;

interface Tenant {
  scope: string | undefined; // undefined = unscoped
  owner: Coordinator;
  path?: string;
}

let tenants: Tenant[];

/** A relay as a scoped answer names it: at the scope's relay-link path; unscoped, as registered. */
const dialled = async (scope: string | undefined, url: string) => (scope === undefined ? url : new URL(await expectedLink(scope), url).href);
let checker: Coordinator;

beforeAll(async () => {
  // Twins get a per-run suffix only where it keeps them twins of each other.
  const run = freshScope("iso");
  const names = [...TWINS, ...Array.from({ length: N - TWINS.length }, (_, i) => `${run}-${i}`)];
  expect(new Set(names).size).toBe(N);
  checker = await relay("https://iso-checker.example.com");
  tenants = await Promise.all(
    [...names, undefined].map(async (scope, i) => ({
      scope,
      owner: await relay(`https://iso-owner-${i}.example.com`, i % 2 ? "json" : "binary"),
      path: scope === undefined ? undefined : `/iso-path-${i}`,
    })),
  );
  await Promise.all(
    tenants.map(async ({ scope, owner, path }, i) => {
      await owner.registerNamespace({ scope, namespace: ns("live/main") });
      await owner.registerTrack({ scope, namespace: ns("live/main"), track: "video" });
      await owner.subscribeNamespace({ scope, prefix: ns("live") });
      await owner.subscribeTrack({ scope, namespace: ns("live/next"), track: "audio" });
      if (scope !== undefined && path !== undefined) {
        await adminClient().putScopeConfig({ scope, config: { rendezvousTimeoutMs: 600_000 + i, lingeringSubscribe: true } });
        await adminClient().putPath({ path, scope, permissions: i % 2 ? Permissions.READ_ONLY : Permissions.READ_WRITE });
      }
    }),
  );
  // Hundreds of calls: more than the default hook timeout on a busy machine.
}, 60_000);

describe(`isolation across ${N} scopes`, () => {
  it("every coordinator RPC answers with the scope's own relay only", async () => {
    // Scopes are checked in parallel: cross-scope traffic at the same time is part of the test.
    await Promise.all(tenants.map(async ({ scope, owner, path }, i) => {
      const label = `scope #${i} ${JSON.stringify(scope)}`;
      // The owner, dialled at this scope's relay link (a twin scope's link would differ).
      const dial = await dialled(scope, owner.url);
      const lookup = await checker.lookup({ scope, namespace: ns("live/main/cam-1") });
      expect(lookup.origin?.relay?.url, label).toBe(dial);
      const track = await checker.lookupTrack({ scope, namespace: ns("live/main"), track: "video" });
      expect(track.origin?.relay?.url, label).toBe(dial);
      const tracks = await checker.listTracks({ scope, namespace: ns("live/main") });
      expect(tracks.tracks.map((t) => t.name), label).toEqual(["video"]);
      const subs = await checker.lookupNamespaceSubscribers({ scope, namespace: ns("live/main") });
      expect(subs.relays.map((r) => r.url), label).toEqual([dial]);
      const waiting = await checker.lookupTrackSubscribers({ scope, namespace: ns("live/next"), track: "audio" });
      expect(waiting.relays.map((r) => r.url), label).toEqual([dial]);
      // The checker's own subscription sees only this scope's host, and stays in this scope.
      const up = await checker.subscribeNamespace({ scope, prefix: ns("") });
      expect(up.upstreamRelays.map((r) => r.url), label).toEqual([dial]);
      await checker.unsubscribeNamespace({ scope, prefix: ns("") });
      const cfg = await checker.getScopeConfig({ scope });
      expect(cfg.config?.rendezvousTimeoutMs, label).toBe(scope === undefined ? undefined : 600_000 + i);
      if (path !== undefined) {
        const resolved = await checker.resolveScope({ connectionPath: path });
        expect(resolved.scope?.scopeId, label).toBe(scope);
        expect(resolved.scope?.permissions, label).toBe(i % 2 ? Permissions.READ_ONLY : Permissions.READ_WRITE);
      }
    }));
  });

  it("DescribeScope lists exactly the scope's own rows and paths", async () => {
    const admin = adminClient();
    for (const [i, { scope, owner, path }] of tenants.entries()) {
      if (scope === undefined) continue;
      const label = `scope #${i} ${JSON.stringify(scope)}`;
      const d = await admin.describeScope({ scope, pageSize: 1000 });
      expect(d.namespaces.map((n) => [text(n.namespace), n.relay?.url]), label).toEqual([["live/main", owner.url]]);
      expect(d.tracks.map((t) => [text(t.namespace), t.name, t.relay?.url]), label).toEqual([["live/main", "video", owner.url]]);
      expect(d.namespaceSubscriptions.map((s) => [text(s.prefix), s.relay?.url]), label).toEqual([["live", owner.url]]);
      expect(d.trackSubscriptions.map((s) => [text(s.namespace), s.track, s.relay?.url]), label).toEqual([["live/next", "audio", owner.url]]);
      expect(d.paths.map((p) => p.path), label).toEqual([path]);
      expect(d.config?.rendezvousTimeoutMs, label).toBe(600_000 + i);
    }
  });

  it("ListRelays shows each owner in its own scope only", async () => {
    const admin = adminClient();
    const listed = async () => {
      const seen = new Map<string, string[]>();
      let pageToken = "";
      do {
        const page = await admin.listRelays({ pageSize: 200, pageToken });
        for (const r of page.relays) seen.set(r.url, [...r.scopes]);
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return tenants.map(({ owner }) => [owner.url, seen.get(owner.url)]);
    };
    // Relays note their scopes to the directory in the background: poll until it has heard.
    // "" names the unscoped space in admin views.
    await expect.poll(listed, { timeout: 10_000 }).toEqual(tenants.map(({ scope, owner }) => [owner.url, [scope ?? ""]]));
  });

  it("a relay's writes in one scope cannot reach the same namespace in another", async () => {
    const [a, b] = [tenants[0], tenants[1]];
    expect(await codeOf(a.owner.unregisterNamespace({ scope: b.scope, namespace: ns("live/main") }))).toBe(Code.PermissionDenied);
    expect(await codeOf(a.owner.registerNamespace({ scope: b.scope, namespace: ns("live/main") }))).toBe(Code.AlreadyExists);
    expect(await codeOf(a.owner.unregisterTrack({ scope: b.scope, namespace: ns("live/main"), track: "video" }))).toBe(Code.PermissionDenied);
    // Unregistering its own namespace in its own scope leaves every twin alone.
    await a.owner.unregisterNamespace({ scope: a.scope, namespace: ns("live/main") });
    expect(await codeOf(checker.lookup({ scope: a.scope, namespace: ns("live/main") }))).toBe(Code.NotFound);
    for (const t of tenants.slice(1)) {
      expect((await checker.lookup({ scope: t.scope, namespace: ns("live/main") })).origin?.relay?.url).toBe(await dialled(t.scope, t.owner.url));
    }
  });

  it("one relay shutting down purges its rows in its scope only", async () => {
    const gone = tenants[2];
    await gone.owner.shutdown({});
    expect(await codeOf(checker.lookupTrack({ scope: gone.scope, namespace: ns("live/main"), track: "video" }))).toBe(Code.NotFound);
    expect((await checker.lookupNamespaceSubscribers({ scope: gone.scope, namespace: ns("live/main") })).relays).toEqual([]);
    for (const t of tenants.slice(3)) {
      const dial = await dialled(t.scope, t.owner.url);
      expect((await checker.lookupTrack({ scope: t.scope, namespace: ns("live/main"), track: "video" })).origin?.relay?.url).toBe(dial);
      expect((await checker.lookupNamespaceSubscribers({ scope: t.scope, namespace: ns("live/main") })).relays.map((r) => r.url)).toEqual([dial]);
    }
  });
});
