// The relay network, Worker side (docs/lifetimes.md "Recovery" and "Peers"):
// a Heartbeat says when the relay's state was lost and lists the live peers;
// the DirectoryObject lists relays by the lease expiry it was told, so a lost
// "left" note ages out; a slow scope does not hold a relay's heartbeats.
// Lapses run the RelayObject's alarm by hand, as in lifetimes.test.ts.
import { describe, expect, it, vi } from "vitest";
import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { billing } from "../src/metrics/billing.js";
import { OBJECT_CALL_TIMEOUT_MS } from "../src/objects/bounded.js";
import { PEER_COPY_MAX_AGE_MS, type PeerShardObject, peerShardOf } from "../src/objects/peer-shard.js";
import { type RelayObject, stepUp } from "../src/objects/relay.js";
import type { RelayNote } from "../src/objects/directory.js";
import { DirectoryObject, directorySlackMs, RELAY_RETENTION_MS } from "../src/objects/directory.js";
import { scopeObjectName } from "../src/objects/scope-name.js";
import { directoryStub, peerShardStub, relayStub as relayStubOf } from "../src/objects/stubs.js";
import { lapseLease, tableRows } from "./objects.js";
import { adminClient, freshScope, ns, relay, type Coordinator, uniqueRelayUrl } from "./client.js";

/** LEASE_TTL_MS of vitest.config.ts; interval = TTL / 3. */
const TTL = 60_000;
const INTERVAL = TTL / 3;

const relayStub = (url: string) => relayStubOf(env, url);
const directory = () => directoryStub(env);
const unique = uniqueRelayUrl;

const lapse = lapseLease;

/** As if the last directory refresh was `ago` ms back (a heartbeat later in time). */
async function refreshedAgo(url: string, ago: number): Promise<void> {
  await runInDurableObject(relayStub(url), (o: RelayObject) => {
    (o as unknown as { refreshedAt: number }).refreshedAt = Date.now() - ago;
  });
}

const beat = async (r: Coordinator, epoch: string, addrs: string[] = []) => r.heartbeat({ epoch, addrs });
const lookupCode = async (viewer: Coordinator, scope: string, name: string) =>
  (await viewer.lookup({ scope, namespace: ns(name) }).then(
    () => "found",
    () => "missing",
  )) as string;

describe("state_lost", () => {
  it("is true on the first beat of a relay never seen, then false", async () => {
    const a = await relay(unique("sl-new"), "binary", "e1");
    expect((await beat(a, "e1")).stateLost).toBe(true);
    expect((await beat(a, "e1")).stateLost).toBe(false);
  });

  it("is true once after a lapse purged the relay's rows; re-registering restores what others see", async () => {
    const scope = freshScope("sl-lapse");
    const a = await relay(unique("sl-a"), "binary", "e1");
    const viewer = await relay(unique("sl-viewer"));
    await beat(a, "e1");
    await a.registerNamespace({ scope, namespace: ns("live/cam") });
    expect((await beat(a, "e1")).stateLost).toBe(false);
    await lapse(a.url);
    expect(await lookupCode(viewer, scope, "live/cam")).toBe("missing");
    const after = await beat(a, "e1");
    expect(after.stateLost).toBe(true);
    await a.registerNamespace({ scope, namespace: ns("live/cam") });
    expect(await lookupCode(viewer, scope, "live/cam")).toBe("found");
    expect((await beat(a, "e1")).stateLost).toBe(false);
  });

  it("is not cleared by a write that re-opens the lapsed lease before the next beat", async () => {
    const scope = freshScope("sl-write");
    const a = await relay(unique("sl-w"), "binary", "e1");
    await beat(a, "e1");
    await a.registerNamespace({ scope, namespace: ns("one") });
    await lapse(a.url);
    // The relay's publisher announces something new before its heartbeat arrives.
    await a.registerNamespace({ scope, namespace: ns("two") });
    expect((await relayStub(a.url).view())?.alive).toBe(true);
    expect((await beat(a, "e1")).stateLost).toBe(true);
  });

  it("is false when the lease ran out but nothing was purged yet (the beat came first)", async () => {
    const scope = freshScope("sl-late");
    const a = await relay(unique("sl-late"), "binary", "e1");
    await beat(a, "e1");
    await a.registerNamespace({ scope, namespace: ns("kept") });
    await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => {
      state.storage.sql.exec("UPDATE lease SET expires_at = ?", Date.now() - 1);
    });
    expect((await beat(a, "e1")).stateLost).toBe(false);
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await lookupCode(await relay(unique("sl-v")), scope, "kept")).toBe("found");
  });

  it("is true after a Shutdown of the same epoch, and false for a new process (new epoch) after a lapse", async () => {
    const url = unique("sl-epochs");
    const a = await relay(url, "binary", "e1");
    await beat(a, "e1");
    await a.shutdown({});
    expect((await beat(a, "e1")).stateLost).toBe(true);
    await lapse(url);
    // A new process has registered nothing under its epoch: nothing to restore.
    const b = await relay(url, "binary", "e2");
    expect((await beat(b, "e2")).stateLost).toBe(false);
  });

  it("is true on the first beat of a relay whose first call was a write (it was unknown when it wrote)", async () => {
    const a = await relay(unique("sl-writefirst"), "binary", "e1");
    await a.registerNamespace({ scope: freshScope("sl-wf"), namespace: ns("x") });
    expect((await beat(a, "e1")).stateLost).toBe(true);
    expect((await beat(a, "e1")).stateLost).toBe(false);
  });

  it("survives the object's eviction (it is stored), and old databases gain the column", async () => {
    const a = await relay(unique("sl-evict"), "binary", "e1");
    await beat(a, "e1");
    await lapse(a.url);
    await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => {
      // A database from before the column (schema version 1): the flag is lost with it, migration 2 adds it back.
      state.storage.sql.exec("ALTER TABLE lease DROP COLUMN state_lost");
      // What later versions add goes too, so the migrations replay onto a true version-1 database.
      state.storage.sql.exec("DROP TABLE revocation");
      state.storage.sql.exec("ALTER TABLE lease DROP COLUMN activity");
      state.storage.sql.exec("ALTER TABLE lease DROP COLUMN versions");
      state.storage.sql.exec("ALTER TABLE lease DROP COLUMN closed_at");
      state.storage.sql.exec("UPDATE schema_version SET version = 1");
    });
    await evictDurableObject(relayStub(a.url));
    expect((await beat(a, "e1")).stateLost).toBe(false);
    await lapse(a.url);
    await evictDurableObject(relayStub(a.url));
    expect((await beat(a, "e1")).stateLost).toBe(true);
  });
});

describe("peers", () => {
  it("lists live relays other than the caller with their advertised addrs", async () => {
    const a = await relay(unique("peer-a"), "binary", "a1");
    const b = await relay(unique("peer-b"), "binary", "b1");
    await beat(a, "a1", ["127.0.0.1:4001"]);
    // b's shard may answer from a copy taken just before a's note: within a second it has a.
    const seenByB = async () => {
      await refreshedAgo(b.url, TTL / 2);
      return beat(b, "b1", ["127.0.0.1:4002", "[::1]:4002"]);
    };
    await expect
      .poll(async () => (await seenByB()).peers.find((p) => p.url === a.url)?.addrs, { timeout: 3 * PEER_COPY_MAX_AGE_MS })
      .toEqual(["127.0.0.1:4001"]);
    expect((await seenByB()).peers.some((p) => p.url === b.url)).toBe(false);
  });

  it("are cached between refreshes (one shard call per TTL / 2) and refreshed after, from a copy at most a second old", async () => {
    const a = await relay(unique("peer-cache-a"), "binary", "a1");
    await beat(a, "a1", ["127.0.0.1:4101"]);
    const b = await relay(unique("peer-cache-b"), "binary", "b1");
    await beat(b, "b1", ["127.0.0.1:4102"]);
    // a's next beat is within its refresh period: it answers its cached list, without b.
    expect((await beat(a, "a1", ["127.0.0.1:4101"])).peers.some((p) => p.url === b.url)).toBe(false);
    const seen = async () => {
      await refreshedAgo(a.url, TTL / 2);
      return (await beat(a, "a1", ["127.0.0.1:4101"])).peers.find((p) => p.url === b.url)?.addrs;
    };
    await expect.poll(seen, { timeout: 3 * PEER_COPY_MAX_AGE_MS, interval: 100 }).toEqual(["127.0.0.1:4102"]);
  });

  it("a new address is told to the directory at once, and peers refreshing see it within the copy's age", async () => {
    const a = await relay(unique("peer-addr-a"), "binary", "a1");
    const b = await relay(unique("peer-addr-b"), "binary", "b1");
    await beat(a, "a1", ["127.0.0.1:4201"]);
    await beat(b, "b1", ["127.0.0.1:4202"]);
    await beat(a, "a1", ["127.0.0.1:4299"]);
    const started = Date.now();
    const seen = async () => {
      await refreshedAgo(b.url, TTL / 2);
      return (await beat(b, "b1", ["127.0.0.1:4202"])).peers.find((p) => p.url === a.url)?.addrs;
    };
    await expect.poll(seen, { timeout: 3 * PEER_COPY_MAX_AGE_MS, interval: 100 }).toEqual(["127.0.0.1:4299"]);
    expect(Date.now() - started).toBeLessThan(3 * PEER_COPY_MAX_AGE_MS);
  });

  it("steady relays tell the directory nothing, an eviction between beats included: refreshes read the relay's peer-list shard, and a change is told at once", async () => {
    const a = await relay(unique("peer-steady-a"), "binary", "a1");
    await beat(a, "a1", ["127.0.0.1:4111"]);
    const directoryCalls = billing.calls("DirectoryObject");
    const shardCalls = billing.calls("PeerShardObject");
    const noted = vi.spyOn(DirectoryObject.prototype, "noteRelay");
    for (let i = 0; i < 3; i++) {
      // An evicted object (as between a socket's beats) remembers what the directory heard.
      if (i === 1) await evictDurableObject(relayStub(a.url));
      await refreshedAgo(a.url, TTL / 2);
      await beat(a, "a1", ["127.0.0.1:4111"]);
    }
    expect(billing.calls("PeerShardObject") - shardCalls, "one shard call per refresh").toBe(3);
    expect(
      noted.mock.calls.filter(([n]) => n.url === a.url),
      "notes of a steady relay",
    ).toEqual([]);
    // The shard asks the directory at most once a second (one ask if the beats straddled it), the relays never.
    expect(billing.calls("DirectoryObject") - directoryCalls, "directory calls in three refreshes").toBeLessThanOrEqual(1);
    const before = billing.calls("DirectoryObject");
    await beat(a, "a1", ["127.0.0.1:4112"]);
    expect(billing.calls("DirectoryObject") - before, "a new address is told to the directory").toBeGreaterThanOrEqual(1);
    expect(noted.mock.calls.filter(([n]) => n.url === a.url).map(([n]) => n.addrs)).toEqual([["127.0.0.1:4112"]]);
    noted.mockRestore();
  });

  it("a live relay's noted expiry is rounded up to a 5-minute grid of its own, so a fleet's notes do not come at once", () => {
    const step = 5 * 60_000;
    const t = 1_800_000_000_123;
    const marks = Array.from({ length: 1000 }, (_, i) => stepUp(t, step, `https://r${i}.example/`));
    for (const m of marks) expect(m - t).toBeGreaterThanOrEqual(0);
    for (const m of marks) expect(m - t).toBeLessThan(step);
    // Spread over the step: no minute of it holds more than a third of the relays' next notes.
    const perMinute = new Map<number, number>();
    for (const m of marks) perMinute.set(Math.floor((m - t) / 60_000), (perMinute.get(Math.floor((m - t) / 60_000)) ?? 0) + 1);
    expect(Math.max(...perMinute.values())).toBeLessThan(1000 / 3);
    // The same relay, the same grid.
    expect(stepUp(t + 1, step, "https://r1.example/")).toBe(stepUp(t, step, "https://r1.example/"));
  });

  it("leave the list out when the relay holds its version, and send it again when it changed", async () => {
    const a = await relay(unique("peer-version-a"), "binary", "a1");
    const b = await relay(unique("peer-version-b"), "binary", "b1");
    await beat(b, "b1", ["127.0.0.1:4121"]);
    const first = await a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4122"], freshPeers: true });
    expect(first.peersVersion).not.toBe(0n);
    expect([first.peersUnchanged, first.peers.some((p) => p.url === b.url)]).toEqual([false, true]);
    const same = await a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4122"], peersVersion: first.peersVersion });
    expect([same.peersUnchanged, same.peers, same.peersVersion]).toEqual([true, [], first.peersVersion]);
    // An older edge (no version) gets the list every time.
    expect((await a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4122"] })).peers).toEqual(first.peers);
    const c = await relay(unique("peer-version-c"), "binary", "c1");
    await beat(c, "c1", ["127.0.0.1:4123"]);
    const after = await a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4122"], freshPeers: true, peersVersion: first.peersVersion });
    expect(after.peersUnchanged).toBe(false);
    expect(after.peersVersion).not.toBe(first.peersVersion);
    expect(after.peers.find((p) => p.url === c.url)?.addrs).toEqual(["127.0.0.1:4123"]);
  });

  it("a relay whose shard cannot answer is told to keep the list it holds, and asks again only a refresh period later", async () => {
    const a = await relay(unique("peer-keep-a"), "binary", "a1");
    const b = await relay(unique("peer-keep-b"), "binary", "b1");
    await beat(b, "b1", ["127.0.0.1:4131"]);
    const beatA = (o: { peersVersion?: bigint; peersInParts?: boolean }) =>
      a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4132"], freshPeers: true, ...o });
    const held = await beatA({ peersInParts: true });
    const whole = await beatA({});
    expect(held.peers.some((p) => p.url === b.url)).toBe(true);
    // The list changes: a working shard would send it.
    const c = await relay(unique("peer-keep-c"), "binary", "c1");
    await beat(c, "c1", ["127.0.0.1:4133"]);
    const shard = peerShardStub(env, peerShardOf(env, a.url));
    let asked = 0;
    // RPC calls reach methods of the class, so the class's method is replaced (and put back).
    const proto = await runInDurableObject(shard, (o: PeerShardObject) => Object.getPrototypeOf(o) as PeerShardObject);
    const peers = proto.peers;
    proto.peers = () => {
      asked++;
      return Promise.reject(new Error("shard down (test)"));
    };
    try {
      const kept = await beatA({ peersVersion: held.peersVersion, peersInParts: true });
      expect([kept.peersUnchanged, kept.peersVersion, kept.peers]).toEqual([true, held.peersVersion, []]);
      // Nothing held yet: still told to keep it (no empty list to take as the network's).
      const none = await beatA({ peersInParts: true });
      expect([none.peersUnchanged, none.peers]).toEqual([true, []]);
      // An edge that does not take parts (it may not know peers_unchanged) gets the last whole list.
      const old = await a.heartbeat({ epoch: "a1", addrs: ["127.0.0.1:4132"] });
      expect([old.peersUnchanged, old.peers]).toEqual([false, whole.peers]);
      expect(asked).toBe(2);
    } finally {
      proto.peers = peers;
    }
    const back = await beatA({ peersVersion: held.peersVersion, peersInParts: true });
    expect(back.peersDelta).toBe(true);
    expect(back.peers.map((p) => p.url)).toContain(c.url);
  });

  it("drop a relay that shut down or lapsed", async () => {
    const a = await relay(unique("peer-gone-a"), "binary", "a1");
    const b = await relay(unique("peer-gone-b"), "binary", "b1");
    const c = await relay(unique("peer-gone-c"), "binary", "c1");
    await beat(a, "a1", ["127.0.0.1:4301"]);
    await beat(b, "b1", ["127.0.0.1:4302"]);
    await beat(c, "c1", ["127.0.0.1:4303"]);
    const seenByA = async () => {
      await refreshedAgo(a.url, TTL / 2);
      const urls = (await beat(a, "a1", ["127.0.0.1:4301"])).peers.map((p) => p.url);
      return [urls.includes(b.url), urls.includes(c.url)];
    };
    await expect.poll(seenByA, { timeout: 3 * PEER_COPY_MAX_AGE_MS }).toEqual([true, true]);
    await b.shutdown({});
    await lapse(c.url);
    await expect.poll(seenByA, { timeout: 3 * PEER_COPY_MAX_AGE_MS }).toEqual([false, false]);
  });
});

/** A note as a RelayObject sends it. */
const note = (url: string, over: Partial<RelayNote>): RelayNote => ({
  url,
  epoch: "e",
  up: true,
  at: Date.now(),
  addrs: ["127.0.0.1:4400"],
  expiresAt: Date.now() + TTL,
  lastBeatAt: Date.now(),
  scopes: [],
  scopeCount: 0,
  ...over,
});

describe("directory liveness: a lost 'left' note ages out", () => {
  it("a relay whose lease expiry passed (plus TTL/2 and one interval) without a 'left' note is listed down and is no peer", async () => {
    const d = env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-test-${crypto.randomUUID()}`));
    const now = Date.now();
    await d.noteRelay(note("https://silent.example/", { at: now - 2 * TTL, expiresAt: now - directorySlackMs(TTL, INTERVAL) - 1 }));
    // One failed refresh later (the next attempt a refresh period on): still within the slack.
    await d.noteRelay(note("https://late.example/", { at: now - TTL, expiresAt: now - INTERVAL - 1 }));
    const { relays } = await d.listRelays(10, undefined);
    expect(relays.map((r) => [r.url, r.alive])).toEqual([
      ["https://late.example/", true], // within the slack: a beat may still come
      ["https://silent.example/", false],
    ]);
    const { peers } = await d.livePeers();
    expect(peers.map((p) => p.url)).toEqual(["https://late.example/"]);
  });

  it("a list cut short says so (peers_truncated), never silently", async () => {
    const d = env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-test-${crypto.randomUUID()}`));
    for (const name of ["x", "y", "z"]) await d.noteRelay(note(`https://${name}.example/`, {}));
    const cut = await d.livePeers(2);
    expect([cut.peers.map((p) => p.url), cut.truncated]).toEqual([["https://x.example/", "https://y.example/"], true]);
    const whole = await d.livePeers(3);
    expect([whole.peers.length, whole.truncated]).toEqual([3, false]);
    expect(whole.version).not.toBe(cut.version);
  });

  it("answers a shard holding a version with nothing, the changes, or the whole list", async () => {
    const d = env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-test-${crypto.randomUUID()}`));
    for (const name of ["x", "y", "z"]) await d.noteRelay(note(`https://${name}.example/`, {}));
    const first = await d.peerListSince(0);
    expect([first.kind, first.peers.map((p) => p.url)]).toEqual([
      "list",
      ["https://x.example/", "https://y.example/", "https://z.example/"],
    ]);
    expect((await d.peerListSince(first.version)).kind).toBe("unchanged");
    await d.noteRelay(note("https://w.example/", {}));
    const next = await d.peerListSince(first.version);
    expect([next.kind, next.peers.map((p) => p.url), next.gone]).toEqual(["delta", ["https://w.example/"], []]);
    expect(next.version).toBe((await d.livePeers()).version);
    // A version the directory never made: the whole list.
    expect((await d.peerListSince(12345)).kind).toBe("list");
  });

  it("a shard's copy, built from the directory's changes, is the directory's list, in its order", async () => {
    const shard = peerShardStub(env, `peers-test-${crypto.randomUUID()}`);
    const ask = () => shard.peers({ self: "", known: 0, fresh: true, inParts: false });
    for (const name of ["ccc", "ddd", "eee", "fff"]) await beat(await relay(unique(`${name}-shard-copy`), "binary", "e1"), "e1");
    const before = await ask();
    // One change, sorting first: the copy is the one before, changed (a delta from the directory).
    await beat(await relay(unique("aaa-shard-copy"), "binary", "e1"), "e1", ["127.0.0.1:4141"]);
    const after = await ask();
    expect(after.version).not.toBe(before.version);
    const list = await directory().livePeers();
    expect(after.version).toBe(list.version);
    expect(after.peers).toEqual(list.peers);
    expect(after.peers[0].url).toMatch(/^https:\/\/aaa-shard-copy/);
  });

  it("and is forgotten a day after its expiry, like a relay that left", async () => {
    const d = env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-test-${crypto.randomUUID()}`));
    const now = Date.now();
    await d.noteRelay(note("https://vanished.example/", { at: now - RELAY_RETENTION_MS - TTL, expiresAt: now - RELAY_RETENTION_MS - 1 }));
    await d.noteRelay(note("https://alive.example/", {}));
    await runDurableObjectAlarm(d);
    await expect.poll(async () => (await d.listRelays(10, undefined)).relays.map((r) => r.url)).toEqual(["https://alive.example/"]);
  });
});

describe("ListRelays reads the directory only", () => {
  it("lists lease, addrs and scopes without calling any RelayObject (their storage wiped), with a total", async () => {
    const scope = freshScope("lr");
    const a = await relay(unique("lr-a"), "binary", "a1");
    await beat(a, "a1", ["127.0.0.1:4501"]);
    await a.registerNamespace({ scope, namespace: ns("x") });
    // The scope reaches the directory in the background.
    await expect
      .poll(async () => (await adminClient().listRelays({ pageSize: 1000 })).relays.find((r) => r.url === a.url)?.scopeCount)
      .toBe(1);
    await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => state.storage.sql.exec("DELETE FROM lease"));
    const page = await adminClient().listRelays({ pageSize: 1000 });
    const rec = page.relays.find((r) => r.url === a.url);
    expect([rec?.alive, rec?.epoch, rec?.addrs, rec?.scopes, rec?.scopeCount]).toEqual([true, "a1", ["127.0.0.1:4501"], [scope], 1]);
    expect(page.total).toBeGreaterThanOrEqual(page.relays.length);
    const small = await adminClient().listRelays({ pageSize: 1 });
    expect([small.relays.length, small.total]).toEqual([1, page.total]);
    expect(small.nextPageToken).not.toBe("");
  });

  it("ListScopes says how many scopes there are in all", async () => {
    const scope = freshScope("ls");
    await adminClient().putScopeConfig({ scope, config: {} });
    const one = await adminClient().listScopes({ pageSize: 1 });
    const all = await adminClient().listScopes({ pageSize: 1000 });
    expect(all.scopes).toContain(scope);
    expect(one.total).toBe(all.total);
    expect(all.total).toBeGreaterThanOrEqual(all.scopes.length);
    expect([one.scopes.length, one.nextPageToken !== ""]).toEqual([1, all.total > 1]);
  });
});

describe("a slow scope does not hold the relay's heartbeats", () => {
  it("a heartbeat whose purge waits on a blocked scope is answered while the scope is still blocked; the alarm retries the purge", async () => {
    const scope = freshScope("slow");
    const url = unique("slow");
    const a1 = await relay(url, "binary", "old");
    await beat(a1, "old");
    await a1.registerNamespace({ scope, namespace: ns("stale") });
    const scopeStub = env.SCOPES.get(env.SCOPES.idFromName(scopeObjectName(scope)));
    let blocked = false;
    let unblocked = false;
    // The scope object takes no call for a while (4 times the relay's call timeout).
    // Not awaited: this call itself is answered only when the block ends.
    const blocking = runInDurableObject(scopeStub, (_o, state) =>
      state.blockConcurrencyWhile(async () => {
        blocked = true;
        await new Promise((r) => setTimeout(r, 4 * OBJECT_CALL_TIMEOUT_MS));
        unblocked = true;
      }),
    );
    await expect.poll(() => blocked).toBe(true);
    // A new process: its first beat retires "old" and purges it from every scope.
    const a2 = await relay(url, "binary", "new");
    const reply = await beat(a2, "new");
    expect(unblocked).toBe(false);
    expect(reply.leaseTtlMs).toBe(TTL);
    // The purge that timed out is retried by the alarm, well before the lease's end.
    const alarm = await runInDurableObject(relayStub(url), (_o: RelayObject, state) => state.storage.getAlarm());
    expect(alarm).toBeLessThan((await relayStub(url).view())!.expiresAt);
    await blocking;
    await runDurableObjectAlarm(relayStub(url)); // it may have run by itself meanwhile
    await expect.poll(async () => (await tableRows(scopeStub, "namespaces")).filter((r) => r.relay === url)).toEqual([]);
  });
});

describe("a slow directory does not hold heartbeats", () => {
  it("a beat due for a refresh answers its last peer list while the directory is blocked; the next beats do not wait again", async () => {
    const a = await relay(unique("dir-slow-a"), "binary", "a1");
    const b = await relay(unique("dir-slow-b"), "binary", "b1");
    await beat(b, "b1", ["127.0.0.1:4601"]);
    const first = await beat(a, "a1", ["127.0.0.1:4602"]);
    expect(first.peers.some((p) => p.url === b.url)).toBe(true);
    let blocked = false;
    let unblocked = false;
    const blocking = runInDurableObject(directory(), (_o, state) =>
      state.blockConcurrencyWhile(async () => {
        blocked = true;
        await new Promise((r) => setTimeout(r, 4 * OBJECT_CALL_TIMEOUT_MS));
        unblocked = true;
      }),
    );
    await expect.poll(() => blocked).toBe(true);
    await refreshedAgo(a.url, TTL / 2);
    const during = await beat(a, "a1", ["127.0.0.1:4602"]);
    // The failed refresh counts as one: the next beats answer from memory without trying.
    const retryAt = await runInDurableObject(relayStub(a.url), (o: RelayObject) => (o as unknown as { refreshedAt: number }).refreshedAt);
    expect(retryAt).toBeGreaterThan(Date.now() - TTL / 2);
    const again = await beat(a, "a1", ["127.0.0.1:4602"]);
    expect(unblocked).toBe(false);
    expect([during.peers, again.peers]).toEqual([first.peers, first.peers]);
    await blocking;
  });
});
