// The lease socket (GET /v1/lease, coordinator.proto "The lease socket"): a
// relay's lease held on one hibernatable WebSocket to its RelayObject, pinged
// and answered by the runtime; a close ends the lease after CLOSE_GRACE_MS, a
// silence after a TTL, neither delayed by an eviction.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { HeartbeatRequestSchema, type HeartbeatResponse, HeartbeatResponseSchema } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { billing } from "../src/metrics/billing.js";
import { CLOSE_GRACE_MS, type LeaseOpen } from "../src/objects/lease-socket.js";
import type { RelayObject } from "../src/objects/relay.js";
import { leaseClockOf } from "../src/objects/lease-clock.js";
import { leaseClockStub, relayStub as relayStubOf } from "../src/objects/stubs.js";
import { adminClient, BASE, codeOf, freshScope, ns, relay, workerFetch, uniqueRelayUrl } from "./client.js";
import { settled } from "./objects.js";

/** LEASE_TTL_MS of vitest.config.ts. */
const TTL = 60_000;
const unique = uniqueRelayUrl;
const relayStub = (url: string) => relayStubOf(env, url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LeaseClient {
  ws: WebSocket;
  /** Sends a HeartbeatRequest and waits for its answer. */
  beat(fields?: { epoch?: string; addrs?: string[] }): Promise<HeartbeatResponse>;
  /** The next text frame. */
  text(): Promise<string>;
  closed: Promise<{ code: number; reason: string }>;
}

async function openLease(token: string, epoch: string | undefined): Promise<Response> {
  const headers: Record<string, string> = { upgrade: "websocket", authorization: `Bearer ${token}` };
  if (epoch !== undefined) headers["moq-relay-epoch"] = epoch;
  return workerFetch(new URL("/v1/lease", BASE), { headers });
}

async function lease(token: string, epoch: string): Promise<LeaseClient> {
  const res = await openLease(token, epoch);
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`lease socket: HTTP ${res.status} ${await res.text()}`);
  ws.accept();
  const frames: (Uint8Array | string)[] = [];
  const waiting: (() => void)[] = [];
  ws.addEventListener("message", async (m) => {
    const d = m.data as string | Blob | ArrayBuffer;
    frames.push(typeof d === "string" ? d : new Uint8Array(d instanceof Blob ? await d.arrayBuffer() : d));
    for (const w of waiting.splice(0)) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((r) =>
    ws.addEventListener("close", (e) => r({ code: e.code, reason: e.reason })),
  );
  const take = async () => {
    const deadline = Date.now() + 5000;
    while (frames.length === 0) {
      if (Date.now() > deadline) throw new Error("lease socket: nothing received within 5 s");
      await new Promise<void>((r) => {
        waiting.push(r);
        setTimeout(r, 100);
      });
    }
    return frames.shift() as Uint8Array | string;
  };
  return {
    ws,
    closed,
    async beat(fields = {}) {
      ws.send(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { epoch, ...fields })));
      const frame = await take();
      if (typeof frame === "string") throw new Error(`lease socket: expected a HeartbeatResponse, got '${frame}'`);
      return fromBinary(HeartbeatResponseSchema, frame);
    },
    async text() {
      const frame = await take();
      if (typeof frame !== "string") throw new Error("lease socket: expected a text frame");
      return frame;
    },
  };
}

/** A relay holding its lease on a socket (beaten once) with a namespace in a fresh scope, and a viewer of its own. */
async function leasedRelay(name: string) {
  const scope = freshScope(name);
  const a = await relay(unique(name), "binary", "e1");
  const viewer = await relay(unique(`${name}-viewer`));
  const socket = await lease(a.token, "e1");
  await socket.beat();
  await a.registerNamespace({ scope, namespace: ns("live") });
  return { scope, a, viewer, socket };
}

/** As if the relay's socket opened two TTLs back and never pinged, and nothing else kept its lease since. */
async function silence(url: string): Promise<void> {
  await runInDurableObject(relayStub(url), (o: RelayObject, state) => {
    const [ws] = state.getWebSockets();
    ws.serializeAttachment({ ...(ws.deserializeAttachment() as LeaseOpen), openedAt: Date.now() - 2 * TTL });
    state.storage.sql.exec("UPDATE lease SET expires_at = ?", Date.now() - 1);
    (o as unknown as { beatAt: number | null }).beatAt = null;
  });
}

/** Closes the relay's socket and waits for the object to arm its alarm CLOSE_GRACE_MS after the close; that alarm's time. */
async function closeForGrace(socket: LeaseClient, url: string): Promise<number> {
  const closedAt = Date.now();
  socket.ws.close(1000, "bye");
  await socket.closed;
  // The object records the close (its handler runs after the client's close).
  let alarm: number | null = null;
  for (let i = 0; i < 50 && (alarm === null || alarm > closedAt + TTL / 2); i++) {
    await sleep(20);
    alarm = await runInDurableObject(relayStub(url), (_o: RelayObject, state) => state.storage.getAlarm());
  }
  expect(alarm!).toBeGreaterThanOrEqual(closedAt + CLOSE_GRACE_MS);
  expect(alarm!).toBeLessThan(closedAt + CLOSE_GRACE_MS + 1000);
  return alarm!;
}

describe("the lease socket", () => {
  it("holds the lease: its first HeartbeatRequest answers as Heartbeat does, pings are answered by the runtime and keep the relay heard", async () => {
    const scope = freshScope("sock");
    const a = await relay(unique("sock"), "binary", "e1");
    const socket = await lease(a.token, "e1");
    const first = await socket.beat({ addrs: ["127.0.0.1:4443"] });
    expect(first).toMatchObject({ leaseTtlMs: TTL, stateLost: true });
    await a.registerNamespace({ scope, namespace: ns("live") });
    const before = (await relayStub(a.url).view())!;
    expect(before).toMatchObject({ epoch: "e1", addrs: ["127.0.0.1:4443"], alive: true });
    await sleep(5);
    socket.ws.send("ping");
    expect(await socket.text()).toBe("pong");
    const after = (await relayStub(a.url).view())!;
    expect(after.lastBeatAt!).toBeGreaterThan(before.lastBeatAt!);
    expect(after.expiresAt).toBe(after.lastBeatAt! + TTL);
    // A later beat on the socket is steady: no state lost, no row written, no alarm set.
    expect((await socket.beat({ addrs: ["127.0.0.1:4443"] })).stateLost).toBe(false);
    await settled();
    const written = billing.get("rows_written");
    const armed = billing.get("alarms_set");
    expect((await socket.beat({ addrs: ["127.0.0.1:4443"] })).stateLost).toBe(false);
    await settled();
    expect(billing.get("rows_written") - written, "rows written by a steady beat on the socket").toBe(0);
    expect(billing.get("alarms_set") - armed, "alarms set by a steady beat on the socket").toBe(0);
    socket.ws.close(1000);
  });

  it("a closed socket ends the lease CLOSE_GRACE_MS later and withdraws the relay's routes, an eviction meanwhile changing nothing", async () => {
    const scope = freshScope("sock-close");
    const a = await relay(unique("sock-close"), "binary", "e1");
    const viewer = await relay(unique("sock-viewer"));
    // As the edge starts: one Heartbeat call, then the socket (which supersedes it).
    await a.heartbeat({ epoch: "e1" });
    await sleep(5);
    const socket = await lease(a.token, "e1");
    await socket.beat();
    await a.registerNamespace({ scope, namespace: ns("live") });
    const alarm = await closeForGrace(socket, a.url);
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe("ok");
    await evictDurableObject(relayStub(a.url));
    await sleep(Math.max(0, alarm - Date.now()) + 10);
    // Due now: the runtime may have run it already.
    await runDurableObjectAlarm(relayStub(a.url));
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe(Code.NotFound);
    expect((await relayStub(a.url).view())!.alive).toBe(false);
  });

  it("a socket that has held the lease past its stored expiry still ends it CLOSE_GRACE_MS after its close", async () => {
    const { scope, a, viewer, socket } = await leasedRelay("sock-long");
    // More than a TTL on the socket: steady beats and pings write nothing, so the stored
    // expiry is behind, and the alarm has re-armed itself from the socket's last ping.
    await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => {
      state.storage.sql.exec("UPDATE lease SET expires_at = ?", Date.now() - 1);
    });
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    await sleep(5);
    socket.ws.send("ping");
    expect(await socket.text()).toBe("pong");
    expect((await relayStub(a.url).view())!.alive).toBe(true);
    const alarm = await closeForGrace(socket, a.url);
    await sleep(Math.max(0, alarm - Date.now()) + 10);
    await runDurableObjectAlarm(relayStub(a.url));
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe(Code.NotFound);
  });

  it("a relay back on a new socket within the grace keeps its lease; a new socket replaces the old one", async () => {
    const scope = freshScope("sock-back");
    const a = await relay(unique("sock-back"), "binary", "e1");
    const viewer = await relay(unique("sock-viewer"));
    const first = await lease(a.token, "e1");
    await first.beat();
    await a.registerNamespace({ scope, namespace: ns("live") });
    const second = await lease(a.token, "e1");
    expect((await first.closed).code).toBe(1000);
    expect((await second.beat()).stateLost).toBe(false);
    // The replaced socket's close did not start the grace: the alarm is still a TTL away
    // (once the object has handled that close).
    await sleep(200);
    const alarm = await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => state.storage.getAlarm());
    expect(alarm!).toBeGreaterThan(Date.now() + TTL / 2);
    second.ws.close(1000);
    await second.closed;
    await sleep(50);
    const third = await lease(a.token, "e1");
    expect((await third.beat()).stateLost).toBe(false);
    await sleep(CLOSE_GRACE_MS + 50);
    await runDurableObjectAlarm(relayStub(a.url));
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe("ok");
    third.ws.close(1000);
  });

  it("a relay beating over HTTP keeps its lease when its socket closes; a new epoch closes the old process's socket (4009)", async () => {
    const { scope, a, viewer, socket } = await leasedRelay("sock-http");
    // The edge falls back to Heartbeat calls; the old socket's close reaches the object later.
    await a.heartbeat({ epoch: "e1" });
    socket.ws.close(1000);
    await socket.closed;
    await sleep(CLOSE_GRACE_MS + 200);
    await runDurableObjectAlarm(relayStub(a.url));
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe("ok");
    expect((await relayStub(a.url).view())!.alive).toBe(true);

    const old = await lease(a.token, "e1");
    await old.beat();
    const next = await relay(a.url, "binary", "e2");
    await next.heartbeat({ epoch: "e2" });
    const closed = await old.closed;
    expect(closed.code).toBe(4000 + Code.FailedPrecondition);
    expect(closed.reason).toContain("epoch");
  });

  it("a relay not heard for a TTL lapses and its socket is closed (4004), even after an eviction", async () => {
    const { scope, a, viewer, socket } = await leasedRelay("sock-silent");
    // Silent since long ago: the socket opened 2 TTL back and never pinged.
    await silence(a.url);
    await evictDurableObject(relayStub(a.url));
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe(Code.NotFound);
    expect((await socket.closed).code).toBe(4000 + Code.DeadlineExceeded);
  });

  it("a lease held by a socket is watched by the shared lease clock, not by an alarm of its own; the clock's check lapses a silent relay", async () => {
    const { scope, a, viewer, socket } = await leasedRelay("sock-clock");
    const clock = () => leaseClockStub(env, leaseClockOf(env, a.url));
    type Clock = { deadlines: Map<string, number> };
    const deadline = () => runInDurableObject(clock(), (o) => (o as unknown as Clock).deadlines.get(a.url));
    // The alarm the lease opened with fires: the clock takes over, and no alarm of the relay's own is set.
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    expect(await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => state.storage.getAlarm())).toBeNull();
    expect(await deadline()).toBeGreaterThan(Date.now());
    // Checked while heard: the next deadline, still no alarm of the relay's own, nothing written.
    const written = billing.get("rows_written");
    await runInDurableObject(clock(), (o) => (o as unknown as Clock).deadlines.set(a.url, 0));
    expect(await runDurableObjectAlarm(clock())).toBe(true);
    expect(await deadline()).toBeGreaterThan(Date.now());
    expect(await runInDurableObject(relayStub(a.url), (_o: RelayObject, state) => state.storage.getAlarm())).toBeNull();
    expect(billing.get("rows_written") - written, "rows written by a check of a steady relay").toBe(0);
    // Silent since long ago: the clock's next check ends the lease.
    await silence(a.url);
    await runInDurableObject(clock(), (o) => (o as unknown as Clock).deadlines.set(a.url, 0));
    expect(await runDurableObjectAlarm(clock())).toBe(true);
    expect((await socket.closed).code).toBe(4000 + Code.DeadlineExceeded);
    expect(await codeOf(viewer.lookup({ scope, namespace: ns("live") }))).toBe(Code.NotFound);
    expect(await deadline(), "the clock forgets a relay whose lease ended").toBeUndefined();
  });

  it("a socket that closes after its relay went silent past its deadline (its clock not there yet) lapses at once, without the restart grace", async () => {
    const { scope, a, viewer, socket } = await leasedRelay("sock-late-close");
    // Its clock watches it; then silence, and a fresh instance (as after an eviction) whose restart grace would apply.
    expect(await runDurableObjectAlarm(relayStub(a.url))).toBe(true);
    await silence(a.url);
    await evictDurableObject(relayStub(a.url));
    socket.ws.close(1000, "bye");
    await socket.closed;
    // The close arms an alarm due at once (the runtime may run it before this does); its
    // clock would have looked a TTL after handing over, and the restart grace a TTL later.
    const lapsed = async () => {
      await runDurableObjectAlarm(relayStub(a.url));
      return codeOf(viewer.lookup({ scope, namespace: ns("live") }));
    };
    await expect.poll(lapsed, { timeout: 5000, interval: 100 }).toBe(Code.NotFound);
    expect((await relayStub(a.url).view())!.alive).toBe(false);
  });

  it("refuses: no epoch header, a revoked token, a retired epoch; a bad HeartbeatRequest closes the socket naming the field", async () => {
    const a = await relay(unique("sock-bad"), "binary", "e1");
    await a.heartbeat({ epoch: "e1" });
    const noEpoch = await openLease(a.token, undefined);
    expect(noEpoch.status).toBe(400);
    expect(await noEpoch.text()).toContain("Moq-Relay-Epoch");

    const socket = await lease(a.token, "e1");
    socket.ws.send(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { epoch: "e2" })));
    const bad = await socket.closed;
    expect(bad.code).toBe(4000 + Code.InvalidArgument);
    expect(bad.reason).toContain("epoch");
    const text = await lease(a.token, "e1");
    text.ws.send("hello");
    expect((await text.closed).code).toBe(1003);

    // e2 replaces e1: a socket of e1 is refused.
    const e2 = await relay(a.url, "binary", "e2");
    await e2.heartbeat({ epoch: "e2" });
    const retired = await openLease(a.token, "e1");
    expect(retired.status).toBe(400);
    expect(await retired.text()).toContain("replaced");

    const live = await lease(e2.token, "e2");
    await live.beat();
    await adminClient().revokeRelayToken({ relayUrl: a.url });
    expect((await live.closed).code).toBe(4000 + Code.Unauthenticated);
    expect((await openLease(e2.token, "e2")).status).toBe(401);
  });
});
