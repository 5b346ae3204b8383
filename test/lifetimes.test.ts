// Relay lifetimes (docs/lifetimes.md): leases kept by heartbeats, boot epochs,
// purges on lapse, new epoch and Shutdown, rendezvous expiry. Lapses are made
// deterministic by moving the lease's expiry into the past and running the
// RelayObject's alarm by hand; no test waits for a lease to run out.
import { afterEach, describe, expect, it, vi } from "vitest";
import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ScopeObject } from "../src/objects/scope.js";
import type { RelayObject } from "../src/objects/relay.js";
import { scopeObjectName } from "../src/objects/scope-name.js";
import { relayStub as relayStubOf, scopeStub as scopeStubOf } from "../src/objects/stubs.js";
import { expireLease, lapseLease, settled, tableRows } from "./objects.js";
import { DEFAULT_LEASE_TTL_MS, leaseSettings } from "../src/lease.js";
import { billing } from "../src/metrics/billing.js";
import { adminClient, base, codeOf, freshScope, ns, relay, type Coordinator } from "./client.js";

/** LEASE_TTL_MS of vitest.config.ts. */
const TTL = 60_000;
const TABLES = ["namespaces", "tracks", "namespace_subscriptions", "track_subscriptions"] as const;

const relayStub = (url: string) => relayStubOf(env, url);
const scopeStub = (scope: string) => scopeStubOf(env, scope);

/** One row of each kind in each scope. */
async function populate(r: Coordinator, scopes: string[], tag: string): Promise<void> {
  for (const scope of scopes) {
    await r.registerNamespace({ scope, namespace: ns(`${tag}/live`) });
    await r.registerTrack({ scope, namespace: ns(`${tag}/live`), track: "video" });
    await r.subscribeNamespace({ scope, prefix: ns(`${tag}-interest`) });
    await r.subscribeTrack({ scope, namespace: ns(`${tag}/wanted`), track: "audio" });
  }
}

/** The epochs of the relay's rows in each table of the scope ("relays" = the scope's own record of it). */
async function holdings(scope: string, url: string): Promise<Record<(typeof TABLES)[number] | "relays", string[]>> {
  const stub = scopeStub(scope);
  const of = async (t: string, key: string) =>
    (await tableRows(stub, t))
      .filter((r) => r[key] === url)
      .map((r) => r.epoch as string)
      .sort();
  return {
    namespaces: await of("namespaces", "relay"),
    tracks: await of("tracks", "relay"),
    namespace_subscriptions: await of("namespace_subscriptions", "relay"),
    track_subscriptions: await of("track_subscriptions", "relay"),
    relays: await of("relays", "url"),
  };
}

const nothing = { namespaces: [], tracks: [], namespace_subscriptions: [], track_subscriptions: [], relays: [] };
const one = (epoch: string) => ({
  namespaces: [epoch],
  tracks: [epoch],
  namespace_subscriptions: [epoch],
  track_subscriptions: [epoch],
  relays: [epoch],
});

/** What another relay sees of `tag`'s rows through the coordinator calls. */
async function visible(viewer: Coordinator, scope: string, tag: string) {
  const lookup = await codeOf(viewer.lookup({ scope, namespace: ns(`${tag}/live`) }));
  const tracks = (await viewer.listTracks({ scope, namespace: ns(`${tag}/live`) })).tracks.length;
  const interested = (await viewer.lookupNamespaceSubscribers({ scope, namespace: ns(`${tag}-interest/x`) })).relays.length;
  const waiting = (await viewer.lookupTrackSubscribers({ scope, namespace: ns(`${tag}/wanted`), track: "audio" })).relays.length;
  return { lookup, tracks, interested, waiting };
}
const seen = { lookup: "ok", tracks: 1, interested: 1, waiting: 1 };
const gone = { lookup: Code.NotFound, tracks: 0, interested: 0, waiting: 0 };

const expire = expireLease;
const lapse = lapseLease;

const leaseOf = (url: string) => relayStub(url).view();
const alarmOf = (url: string) => runInDurableObject(relayStub(url), (_o: RelayObject, state) => state.storage.getAlarm());

describe("lease", () => {
  it("TTL comes from LEASE_TTL_MS (default 10 s, out-of-range values ignored); relays beat at a third of it", () => {
    // The documented default (README, wrangler.toml), stated here rather than read from the code under test.
    expect(leaseSettings({})).toEqual({ leaseTtlMs: 10_000, intervalMs: 3333 });
    expect(leaseSettings({ LEASE_TTL_MS: "3000" })).toEqual({ leaseTtlMs: 3000, intervalMs: 1000 });
    for (const bad of ["", "abc", "999", "-5", "1e12"]) {
      expect(leaseSettings({ LEASE_TTL_MS: bad }).leaseTtlMs, bad).toBe(DEFAULT_LEASE_TTL_MS);
    }
  });

  it("Heartbeat answers the TTL and interval, and keeps the lease open TTL from now with an alarm at its end", async () => {
    const a = await relay("https://lease-1.example.com", "binary", "e1");
    const before = Date.now();
    const reply = await a.heartbeat({ epoch: "e1" });
    expect(reply.leaseTtlMs).toBe(TTL);
    expect(reply.intervalMs).toBe(TTL / 3);
    const lease = await leaseOf(a.url);
    expect(lease).toMatchObject({ url: a.url, epoch: "e1", alive: true });
    expect(lease!.expiresAt).toBeGreaterThanOrEqual(before + TTL);
    expect(lease!.expiresAt).toBeLessThanOrEqual(Date.now() + TTL);
    expect(await alarmOf(a.url)).toBe(lease!.expiresAt);
  });

  it("rows carry the epoch of their writer: the header's, else the lease's", async () => {
    const scope = freshScope("epochs");
    const a = await relay("https://epochs-a.example.com", "json", "boot-7");
    await populate(a, [scope], "a");
    expect(await holdings(scope, a.url)).toEqual(one("boot-7"));
    // No header: the write joins the relay's current life, named by its heartbeat.
    const b = await relay("https://epochs-b.example.com", "json");
    await b.heartbeat({ epoch: "boot-9" });
    await populate(b, [scope], "b");
    expect(await holdings(scope, b.url)).toEqual(one("boot-9"));
  });

  it("one heartbeat costs no scope call, however much the relay holds", async () => {
    const scopes = [freshScope("cost"), freshScope("cost"), freshScope("cost")];
    const a = await relay("https://cost.example.com", "binary", "e1");
    await a.heartbeat({ epoch: "e1", addrs: ["10.0.0.1:4443"] });
    for (const scope of scopes) {
      for (let i = 0; i < 10; i++) await a.registerNamespace({ scope, namespace: ns(`cost/${i}`) });
    }
    const calls = new Map<string, number>();
    for (const name of Object.getOwnPropertyNames(ScopeObject.prototype)) {
      if (name === "constructor") continue;
      const original = (ScopeObject.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name];
      if (typeof original !== "function") continue;
      vi.spyOn(ScopeObject.prototype as unknown as Record<string, (...args: unknown[]) => unknown>, name).mockImplementation(function (
        this: unknown,
        ...args: unknown[]
      ) {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        return original.apply(this, args);
      });
    }
    for (let i = 0; i < 5; i++) await a.heartbeat({ epoch: "e1", addrs: ["10.0.0.1:4443"] });
    expect(Object.fromEntries(calls)).toEqual({});
    // The spies do see scope calls: a changed address is told once per scope, not per registration
    // (the spies also count the private helpers it runs inside the object, e.g. the watch invalidation).
    await a.heartbeat({ epoch: "e1", addrs: ["10.0.0.2:4443"] });
    expect(calls.get("updateRelay")).toBe(3);
  });

  it("answers name the relay at its newest address and epoch, after lookups have read the old ones", async () => {
    const scope = freshScope("moved-addr");
    const a = await relay("https://moved-addr.example.com", "binary", "e1");
    const viewer = await relay("https://moved-addr-viewer.example.com");
    await a.heartbeat({ epoch: "e1", addrs: ["10.0.0.1:4443"] });
    await a.registerNamespace({ scope, namespace: ns("moved/live") });
    const addrSeen = async () => (await viewer.lookup({ scope, namespace: ns("moved/live") })).origin?.relay?.addr;
    expect(await addrSeen()).toBe("10.0.0.1:4443");
    await a.heartbeat({ epoch: "e1", addrs: ["10.0.0.2:4443"] });
    expect(await addrSeen()).toBe("10.0.0.2:4443");
    // A new life re-registers from the new address: the old row and the old address are gone.
    const a2 = await relay(a.url, "binary", "e2");
    await a2.heartbeat({ epoch: "e2", addrs: ["10.0.0.3:4443"] });
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("moved/live") }))).toBe(Code.NotFound);
    await a2.registerNamespace({ scope, namespace: ns("moved/live") });
    expect(await addrSeen()).toBe("10.0.0.3:4443");
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });
});

describe("lapse", () => {
  it("purges every row of the lapsed relay in every scope it wrote to, and nobody else's", async () => {
    const [s1, s2] = [freshScope("lapse"), freshScope("lapse")];
    const a = await relay("https://lapse-a.example.com", "binary", "a1");
    const b = await relay("https://lapse-b.example.com", "binary", "b1");
    await a.heartbeat({ epoch: "a1" });
    await b.heartbeat({ epoch: "b1" });
    await populate(a, [s1, s2], "a");
    await populate(b, [s1, s2], "b");
    const viewer = await relay("https://lapse-viewer.example.com");
    expect(await visible(viewer, s1, "a")).toEqual(seen);

    await lapse(a.url);

    for (const scope of [s1, s2]) {
      expect(await holdings(scope, a.url)).toEqual(nothing);
      expect(await holdings(scope, b.url)).toEqual(one("b1"));
      expect(await visible(viewer, scope, "a")).toEqual(gone);
      expect(await visible(viewer, scope, "b")).toEqual(seen);
    }
    expect(await leaseOf(a.url)).toMatchObject({ alive: false, scopes: [] });
    expect(await leaseOf(b.url)).toMatchObject({ alive: true });
  });

  it("an alarm that finds the lease renewed purges nothing and waits for the new expiry", async () => {
    const scope = freshScope("lapse");
    const a = await relay("https://renewed.example.com", "binary", "r1");
    await a.heartbeat({ epoch: "r1" });
    await populate(a, [scope], "a");
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await holdings(scope, a.url)).toEqual(one("r1"));
    expect(await alarmOf(a.url)).toBe((await leaseOf(a.url))!.expiresAt);
  });

  it("a heartbeat that arrives after the expiry but before the alarm purged keeps everything", async () => {
    const scope = freshScope("late-beat");
    const a = await relay("https://late-beat.example.com", "binary", "l1");
    await a.heartbeat({ epoch: "l1" });
    await populate(a, [scope], "a");
    await expire(a.url);
    await a.heartbeat({ epoch: "l1" });
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await holdings(scope, a.url)).toEqual(one("l1"));
    expect(await leaseOf(a.url)).toMatchObject({ alive: true });
  });

  it("a relay is not declared dead before its RelayObject has been up one TTL (runtime restart grace)", async () => {
    const scope = freshScope("grace");
    const a = await relay("https://grace.example.com", "binary", "g1");
    await a.heartbeat({ epoch: "g1" });
    await populate(a, [scope], "a");
    await evictDurableObject(relayStub(a.url)); // a fresh instance, as after a restart
    await expire(a.url, { oldObject: false });
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await holdings(scope, a.url)).toEqual(one("g1"));
    const lease = await leaseOf(a.url);
    expect(lease!.expiresAt).toBeGreaterThan(Date.now());
    expect(lease!.expiresAt).toBeLessThanOrEqual(Date.now() + TTL);
    expect(await alarmOf(a.url)).toBe(lease!.expiresAt);
    // Once up long enough, the same lapse purges.
    await lapse(a.url);
    expect(await holdings(scope, a.url)).toEqual(nothing);
  });

  it("a write after the lapse reopens the lease; what it writes stays, what was purged stays gone", async () => {
    const [s1, s2] = [freshScope("reopen"), freshScope("reopen")];
    const a = await relay("https://reopen.example.com", "binary", "o1");
    await a.heartbeat({ epoch: "o1" });
    await populate(a, [s1, s2], "a");
    await lapse(a.url);
    expect(await leaseOf(a.url)).toMatchObject({ alive: false });

    await a.registerNamespace({ scope: s1, namespace: ns("a/again") });
    const lease = await leaseOf(a.url);
    expect(lease).toMatchObject({ alive: true, epoch: "o1", scopes: [scopeObjectName(s1)] });
    expect(await alarmOf(a.url)).toBe(lease!.expiresAt);
    expect((await holdings(s1, a.url)).namespaces).toEqual(["o1"]);
    expect(await holdings(s2, a.url)).toEqual(nothing);
    expect(await codeOf(a.lookup({ scope: s1, namespace: ns("a/live") }))).toBe(Code.NotFound);
    // The reopened lease is a real one: it lapses in turn, taking the new row.
    await lapse(a.url);
    expect(await holdings(s1, a.url)).toEqual(nothing);
  });

  it("a write after the expiry, before the alarm ran, renews the lease instead of being purged with it", async () => {
    const scope = freshScope("expired-write");
    const a = await relay("https://expired-write.example.com", "binary", "x1");
    await a.heartbeat({ epoch: "x1" });
    await a.registerNamespace({ scope, namespace: ns("a/before") });
    await expire(a.url);
    // The scope's cached view of the lease ends no later than the lease: a fresh instance has none.
    await evictDurableObject(scopeStub(scope));
    await a.registerNamespace({ scope, namespace: ns("a/after") });
    expect(await leaseOf(a.url)).toMatchObject({ alive: true });
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect((await holdings(scope, a.url)).namespaces).toEqual(["x1", "x1"]);
  });

  it("a write racing the lapse's purge is either purged before it or reopens the lease after it, never lost", async () => {
    const scopes = [freshScope("lapse-race"), freshScope("lapse-race"), freshScope("lapse-race")];
    const a = await relay("https://lapse-race.example.com", "binary", "q1");
    await a.heartbeat({ epoch: "q1" });
    await populate(a, scopes, "a");
    await expire(a.url);
    for (const scope of scopes) await evictDurableObject(scopeStub(scope)); // no cached lease: writes ask the RelayObject
    const [ran] = await Promise.all([
      runDurableObjectAlarm(relayStub(a.url)),
      ...scopes.map((scope) => a.registerNamespace({ scope, namespace: ns("a/racing") })),
    ]);
    expect(ran).toBe(true);
    const lease = await leaseOf(a.url);
    expect(lease).toMatchObject({ alive: true, scopes: scopes.map(scopeObjectName).sort() });
    for (const scope of scopes) {
      expect(await codeOf(a.lookup({ scope, namespace: ns("a/racing") }))).toBe("ok");
    }
  });

  it("a steady heartbeat writes no row and re-arms no alarm; the alarm puts the lease the beats kept on record", async () => {
    const scope = freshScope("steady");
    const a = await relay("https://steady.example.com", "binary", "boot-1");
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4443"] });
    await populate(a, [scope], "s");
    const stored = () =>
      runInDurableObject(relayStub(a.url), async (_o: RelayObject, state) => ({
        row: state.storage.sql.exec("SELECT expires_at, last_beat_at, activity FROM lease").one(),
        alarm: await state.storage.getAlarm(),
      }));
    // The directory hears of the new scope in the background, and the next beat
    // refreshes the peer list (every TTL/2 otherwise): both done before counting.
    await settled();
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4443"] });
    await settled();
    const first = await stored();
    const written = billing.get("rows_written");
    const armed = billing.get("alarms_set");
    await new Promise((r) => setTimeout(r, 5));
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4443"] });
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4443"] });
    expect(billing.get("rows_written") - written, "rows written by two steady beats").toBe(0);
    expect(billing.get("alarms_set") - armed, "alarms set by two steady beats").toBe(0);
    expect(await stored()).toEqual(first);
    // The lease runs from the last beat all the same.
    const lease = await leaseOf(a.url);
    expect(lease!.lastBeatAt!).toBeGreaterThan(first.row.last_beat_at as number);
    expect(lease!.expiresAt).toBe(lease!.lastBeatAt! + TTL);

    // A change is written at once: new addresses.
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4444"] });
    expect(billing.get("rows_written") - written).toBeGreaterThan(0);
    await a.heartbeat({ epoch: "boot-1", addrs: ["127.0.0.1:4444"] });
    const beat = (await leaseOf(a.url))!.lastBeatAt!;

    // The alarm due at the expiry on record finds the relay beating: it writes the later expiry, nothing lapses.
    await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => {
      state.storage.sql.exec("UPDATE lease SET expires_at = ?", Date.now() - 1);
    });
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    const after = await stored();
    expect(after.row).toMatchObject({ expires_at: beat + TTL, last_beat_at: beat });
    expect(after.alarm).toBe(beat + TTL);
    expect(await holdings(scope, a.url)).toEqual(one("boot-1"));
  });

  it("a relay that never heartbeats holds its writes for one TTL from its first write", async () => {
    const scope = freshScope("no-beat");
    const a = await relay("https://no-beat.example.com");
    const before = Date.now();
    await a.registerNamespace({ scope, namespace: ns("a/curl") });
    await a.registerNamespace({ scope, namespace: ns("a/curl2") });
    const lease = await leaseOf(a.url);
    expect(lease).toMatchObject({ epoch: "", alive: true, lastBeatAt: null });
    expect(lease!.expiresAt).toBeGreaterThanOrEqual(before + TTL);
    await lapse(a.url);
    expect(await holdings(scope, a.url)).toEqual(nothing);
  });
});

describe("epochs", () => {
  it("a Heartbeat with a new epoch purges the old epoch's rows everywhere at once; other relays keep theirs", async () => {
    const [s1, s2] = [freshScope("epoch"), freshScope("epoch")];
    const old = await relay("https://restart.example.com", "binary", "boot-1");
    const other = await relay("https://bystander.example.com", "binary", "z");
    await old.heartbeat({ epoch: "boot-1" });
    await populate(old, [s1, s2], "a");
    await populate(other, [s1, s2], "b");

    const fresh = await relay("https://restart.example.com", "binary", "boot-2");
    await fresh.heartbeat({ epoch: "boot-2" });
    for (const scope of [s1, s2]) {
      expect(await holdings(scope, old.url)).toEqual(nothing);
      expect(await holdings(scope, other.url)).toEqual(one("z"));
    }
    expect(await leaseOf(old.url)).toMatchObject({ epoch: "boot-2", alive: true });
    // The new life writes normally…
    await populate(fresh, [s1], "a");
    expect(await holdings(s1, fresh.url)).toEqual(one("boot-2"));
    // …and the old process is refused, without disturbing its successor.
    expect(await codeOf(old.heartbeat({ epoch: "boot-1" }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(old.registerNamespace({ scope: s2, namespace: ns("a/zombie") }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(old.subscribeTrack({ scope: s1, namespace: ns("a/zombie"), track: "t" }))).toBe(Code.FailedPrecondition);
    expect(await holdings(s1, fresh.url)).toEqual(one("boot-2"));
    expect(await holdings(s2, fresh.url)).toEqual(nothing);
    expect(await leaseOf(old.url)).toMatchObject({ epoch: "boot-2" });
  });

  it("a write with a new epoch does the same, including in the scope it writes to (which awaits the purge)", async () => {
    const [s1, s2] = [freshScope("epoch-write"), freshScope("epoch-write")];
    const old = await relay("https://write-restart.example.com", "json", "w1");
    await populate(old, [s1, s2], "a");
    const fresh = await relay("https://write-restart.example.com", "json", "w2");
    await fresh.registerNamespace({ scope: s1, namespace: ns("a/next") });
    expect(await holdings(s1, old.url)).toEqual({ ...nothing, namespaces: ["w2"], relays: ["w2"] });
    expect(await holdings(s2, old.url)).toEqual(nothing);
    expect(await codeOf(old.registerNamespace({ scope: s1, namespace: ns("a/zombie") }))).toBe(Code.FailedPrecondition);
  });

  it("the old epoch's state is gone whatever races the restart", async () => {
    const scopes = [freshScope("race"), freshScope("race"), freshScope("race")];
    const old = await relay("https://racing.example.com", "binary", "r1");
    await old.heartbeat({ epoch: "r1" });
    await populate(old, scopes, "a");
    const fresh = await relay("https://racing.example.com", "binary", "r2");
    const results = await Promise.all([
      ...scopes.flatMap((scope) =>
        Array.from({ length: 5 }, (_, i) => codeOf(fresh.registerNamespace({ scope, namespace: ns(`new/${i}`) }))),
      ),
      codeOf(fresh.heartbeat({ epoch: "r2" })),
      // Late calls of the old process: each either lands before the purge (and is purged) or is refused.
      ...scopes.map((scope) => codeOf(old.registerNamespace({ scope, namespace: ns("old/late") }))),
    ]);
    expect(results.slice(0, 16).every((r) => r === "ok")).toBe(true);
    expect(results.slice(16).every((r) => r === "ok" || r === Code.FailedPrecondition)).toBe(true);
    for (const scope of scopes) {
      expect(await holdings(scope, old.url)).toEqual({ ...nothing, namespaces: Array(5).fill("r2"), relays: ["r2"] });
    }
  });

  it("rows written before the relay named an epoch are adopted by its first epoch, then purged by the next", async () => {
    const [s1, s2] = [freshScope("adopt"), freshScope("adopt")];
    const curl = await relay("https://adopt.example.com");
    await populate(curl, [s1, s2], "a");
    expect(await holdings(s1, curl.url)).toEqual(one(""));
    await curl.heartbeat({ epoch: "named" });
    expect(await holdings(s1, curl.url)).toEqual(one("named"));
    expect(await holdings(s2, curl.url)).toEqual(one("named"));
    await curl.heartbeat({ epoch: "rebooted" });
    expect(await holdings(s1, curl.url)).toEqual(nothing);
    expect(await holdings(s2, curl.url)).toEqual(nothing);
  });

  it("Heartbeat's epoch must match the Moq-Relay-Epoch header when both are sent", async () => {
    const a = await relay("https://mismatch.example.com", "json", "h1");
    try {
      await a.heartbeat({ epoch: "h2" });
      expect.unreachable();
    } catch (e) {
      const err = ConnectError.from(e);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/^epoch: .*Moq-Relay-Epoch/);
    }
    expect(await leaseOf(a.url)).toBeNull();
  });
});

describe("purge failures", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** The next purge call a scope receives fails, as if the scope were unreachable. */
  const failNextPurge = () =>
    vi.spyOn(ScopeObject.prototype, "purgeRelay").mockImplementationOnce(() => {
      throw new Error("scope unreachable (test)");
    });

  it("an epoch change that could not purge a scope is retried by the alarm within a second", async () => {
    const [s1, s2] = [freshScope("retry"), freshScope("retry")];
    const old = await relay("https://retry-epoch.example.com", "binary", "p1");
    await old.heartbeat({ epoch: "p1" });
    await populate(old, [s1, s2], "a");
    const spy = failNextPurge();
    const fresh = await relay("https://retry-epoch.example.com", "binary", "p2");
    const before = Date.now();
    await fresh.heartbeat({ epoch: "p2" }); // the relay is not failed for it
    expect(spy).toHaveBeenCalledTimes(2);
    const left = [...(await holdings(s1, old.url)).namespaces, ...(await holdings(s2, old.url)).namespaces];
    expect(left).toEqual(["p1"]);
    // Another heartbeat does not push the retry back to the lease's expiry.
    await fresh.heartbeat({ epoch: "p2" });
    expect(await alarmOf(old.url)).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await alarmOf(old.url)).toBeGreaterThanOrEqual(before);
    expect(await runDurableObjectAlarm(relayStub(old.url))).toBe(true);
    expect(await holdings(s1, old.url)).toEqual(nothing);
    expect(await holdings(s2, old.url)).toEqual(nothing);
    // Done: the alarm is back at the lease's expiry.
    expect(await alarmOf(old.url)).toBe((await leaseOf(old.url))!.expiresAt);
  });

  it("a lapse purge that could not reach a scope keeps it listed and sets its own retry (not the runtime's few)", async () => {
    const [s1, s2] = [freshScope("retry-lapse"), freshScope("retry-lapse")];
    const a = await relay("https://retry-lapse.example.com", "binary", "k1");
    await a.heartbeat({ epoch: "k1" });
    await populate(a, [s1, s2], "a");
    failNextPurge();
    await expire(a.url);
    const before = Date.now();
    // The alarm does not throw: it schedules the retry itself, within a second.
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    const lease = await leaseOf(a.url);
    expect(lease!.scopes).toHaveLength(1);
    expect(await alarmOf(a.url)).toBeGreaterThanOrEqual(before);
    expect(await alarmOf(a.url)).toBeLessThanOrEqual(Date.now() + 1000);
    await runInDurableObject(relayStub(a.url), (o: RelayObject) => o.alarm());
    expect(await holdings(s1, a.url)).toEqual(nothing);
    expect(await holdings(s2, a.url)).toEqual(nothing);
    expect(await leaseOf(a.url)).toMatchObject({ alive: false, scopes: [] });
  });
});

describe("shutdown", () => {
  it("drops the relay's state in every scope at once; others keep theirs", async () => {
    const [s1, s2] = [freshScope("bye"), freshScope("bye")];
    const a = await relay("https://leaving.example.com", "binary", "s1");
    const b = await relay("https://staying.example.com", "binary", "t1");
    await a.heartbeat({ epoch: "s1" });
    await populate(a, [s1, s2], "a");
    await populate(b, [s1, s2], "b");
    await a.shutdown({});
    const viewer = await relay("https://bye-viewer.example.com");
    for (const scope of [s1, s2]) {
      expect(await holdings(scope, a.url)).toEqual(nothing);
      expect(await visible(viewer, scope, "a")).toEqual(gone);
      expect(await holdings(scope, b.url)).toEqual(one("t1"));
    }
    expect(await leaseOf(a.url)).toMatchObject({ alive: false, scopes: [] });
    expect(await alarmOf(a.url)).toBeNull();
    // Repeating it (a retry) is harmless.
    await a.shutdown({});
  });

  it("from a replaced epoch is a no-op: an old process leaving late keeps its successor's state", async () => {
    const scope = freshScope("bye-late");
    const old = await relay("https://rolling.example.com", "binary", "v1");
    await old.heartbeat({ epoch: "v1" });
    const fresh = await relay("https://rolling.example.com", "binary", "v2");
    await fresh.heartbeat({ epoch: "v2" });
    await populate(fresh, [scope], "a");
    await old.shutdown({});
    expect(await holdings(scope, fresh.url)).toEqual(one("v2"));
    await fresh.shutdown({});
    expect(await holdings(scope, fresh.url)).toEqual(nothing);
  });
});

describe("rendezvous", () => {
  async function lingering(timeoutMs?: number) {
    const scope = freshScope("rdv");
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true, rendezvousTimeoutMs: timeoutMs } });
    const [e1, e2, origin] = await Promise.all(
      ["https://rdv-e1.example.com", "https://rdv-e2.example.com", "https://rdv-origin.example.com"].map((u) => relay(u)),
    );
    const waiting = async () =>
      (await origin.lookupTrackSubscribers({ scope, namespace: ns("show"), track: "v" })).relays.map((r) => base(r.url)!).sort();
    const deadlines = async () =>
      Object.fromEntries((await tableRows(scopeStub(scope), "track_subscriptions")).map((r) => [r.relay, r.expires_at]));
    return { scope, e1, e2, waiting, deadlines };
  }

  it("a subscription expires rendezvous_timeout_ms after it was made or renewed; expired ones are never returned", async () => {
    const { scope, e1, e2, waiting, deadlines } = await lingering(30_000);
    const before = Date.now();
    await e1.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    await e2.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    const d = await deadlines();
    expect(d[e1.url]).toBeGreaterThanOrEqual(before + 30_000);
    expect(d[e1.url]).toBeLessThanOrEqual(Date.now() + 30_000);
    expect(await waiting()).toEqual([e1.url, e2.url]);

    // e1's deadline passes; the scope's alarm has not run yet: it is already not returned.
    await runInDurableObject(scopeStub(scope), (_o: ScopeObject, state) => {
      state.storage.sql.exec("UPDATE track_subscriptions SET expires_at = ? WHERE relay = ?", Date.now() - 1, e1.url);
    });
    expect(await waiting()).toEqual([e2.url]);
    expect(Object.keys(await deadlines())).toHaveLength(2);
    // The alarm deletes it.
    expect(await runDurableObjectAlarm(scopeStub(scope))).toBe(true);
    expect(Object.keys(await deadlines())).toEqual([e2.url]);

    // Subscribing again renews: a fresh deadline.
    const renewedAt = Date.now();
    await e1.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    expect((await deadlines())[e1.url]).toBeGreaterThanOrEqual(renewedAt + 30_000);
    expect(await waiting()).toEqual([e1.url, e2.url]);
  });

  it("with a short timeout, a subscription not renewed is gone once the time has passed", async () => {
    const { scope, e1, waiting } = await lingering(1);
    await e1.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    await new Promise((r) => setTimeout(r, 20));
    expect(await waiting()).toEqual([]);
  });

  it("without a timeout subscriptions linger until unsubscribed or their relay goes", async () => {
    const { scope, e1, waiting, deadlines } = await lingering(undefined);
    await e1.heartbeat({ epoch: "n1" });
    await e1.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    expect((await deadlines())[e1.url]).toBeNull();
    expect(await waiting()).toEqual([e1.url]);
    await lapse(e1.url);
    expect(await waiting()).toEqual([]);
  });

  it("changing the timeout restarts every subscription's clock with the new value; removing it stops expiry", async () => {
    const { scope, e1, e2, deadlines } = await lingering(undefined);
    await e1.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    await e2.subscribeTrack({ scope, namespace: ns("show"), track: "v" });
    const before = Date.now();
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true, rendezvousTimeoutMs: 5000 } });
    for (const t of Object.values(await deadlines())) {
      expect(t).toBeGreaterThanOrEqual(before + 5000);
      expect(t).toBeLessThanOrEqual(Date.now() + 5000);
    }
    expect(await runInDurableObject(scopeStub(scope), (_o: ScopeObject, s) => s.storage.getAlarm())).not.toBeNull();
    await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true } });
    expect(Object.values(await deadlines())).toEqual([null, null]);
  });
});
