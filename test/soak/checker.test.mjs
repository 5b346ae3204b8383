// The soak checker must be able to fail: for each rule, a small history that
// breaks only that rule must give exactly that violation, naming the key and
// relay; histories that keep the rules (including lost answers, possible
// lapses and purges still within their bound) must give none.
//
// The histories are fed through the same Checker methods, with the same op
// records (history.mjs) and Runtime timeline (faults.mjs) as run.mjs and
// relays.mjs use; no process is started. Time is node:test's mocked Date, so
// every history runs on a fixed timeline (ms from T0).
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { ns } from "../e2e/lib/rpc.mjs";
import { CLOSE_GRACE_MS, Checker, SETTLE_MS } from "./checker.mjs";
import { Runtime } from "./faults.mjs";
import { History } from "./history.mjs";

const TTL = 6000;
const PURGE_BOUND = TTL;
const CLOSE_PURGE_BOUND = TTL / 2;
const T0 = Date.UTC(2026, 0, 1);
const A = "soak-a";
const B = "soak-b";
const N = "room-1/cam";
const url = (name) => `https://${name}.soak.test:4443/`;
/** Scoped answers name a relay by its relay link (SECURITY.md "Relay links"). */
const link = (name, scope) => `${url(name)}_relay/${scope}/bWFj`;

/** Each write method: the model's kind, the key it writes, its request body (as relays.mjs sends them). */
const WRITES = {
  RegisterNamespace: { kind: "ns", key: (n) => n, body: (n) => ({ namespace: ns(n) }) },
  UnregisterNamespace: { kind: "ns", key: (n) => n, body: (n) => ({ namespace: ns(n) }) },
  RegisterTrack: { kind: "track", key: (n, t) => `${n}#${t}`, body: (n, t) => ({ namespace: ns(n), track: t }) },
  UnregisterTrack: { kind: "track", key: (n, t) => `${n}#${t}`, body: (n, t) => ({ namespace: ns(n), track: t }) },
  SubscribeNamespace: { kind: "nssub", key: (n) => n, body: (n) => ({ prefix: ns(n) }) },
  UnsubscribeNamespace: { kind: "nssub", key: (n) => n, body: (n) => ({ prefix: ns(n) }) },
  SubscribeTrack: { kind: "tracksub", key: (n, t) => `${n}#${t}`, body: (n, t) => ({ namespace: ns(n), track: t }) },
  UnsubscribeTrack: { kind: "tracksub", key: (n, t) => `${n}#${t}`, body: (n, t) => ({ namespace: ns(n), track: t }) },
};

/** One soak run's model on a synthetic timeline: the calls relays.mjs makes, fed as it feeds them. */
class Timeline {
  constructor() {
    this.runtime = new Runtime({ port: 0, state: "", vars: {} });
    // Runtime.start() records a life from the workerd process's start; here it began a minute before T0.
    this.runtime.lives.push({ start: T0 - 60_000, end: Number.POSITIVE_INFINITY });
    this.history = new History();
    this.checker = new Checker({ runtime: this.runtime, ttl: TTL, purgeBound: PURGE_BOUND, closePurgeBound: CLOSE_PURGE_BOUND });
  }

  at(ms) {
    mock.timers.setTime(T0 + ms);
    return T0 + ms;
  }

  relay(name) {
    return this.checker.addRelay(url(name));
  }

  /** A recorded call from `start` to `end`, in recordedCall's shape; the clock is left at its end. */
  call(r, method, body, start, end, outcome, { answer, code } = {}) {
    const op = { id: this.history.nextId++, relay: r?.url ?? "admin", method, body, start: T0 + start, end: T0 + end, outcome };
    if (outcome === "ok") op.answer = answer ?? {};
    if (outcome === "error") Object.assign(op, { code, message: code, status: code === "not_found" ? 404 : 409 });
    if (outcome === "indeterminate") op.why = "cut";
    this.at(end);
    this.history.record(op);
    return op;
  }

  /** A heartbeat at `t`, fed to checker.beat as SimRelay.beatLoop does. */
  beat(r, t, { outcome = "ok", stateLost = false, newEpoch = false } = {}) {
    this.at(t);
    const answer = { intervalMs: TTL / 3, peers: [], ...(stateLost ? { stateLost } : {}) };
    const op = this.call(r, "Heartbeat", { epoch: "e" }, t, t + 20, outcome, { answer });
    this.checker.beat(r, op, { newEpoch });
    return op;
  }

  /**
   * A HeartbeatRequest on the lease socket opened at `connectAt`, sent at `t`, as
   * SimRelay.socketSession feeds it; `heardFrom`: the last ping sent before it.
   */
  socketBeat(r, t, { connectAt, heardFrom = connectAt, outcome = "ok", stateLost = false } = {}) {
    this.at(t);
    const answer = { intervalMs: TTL / 3, peers: 0, stateLost };
    const op = this.call(r, "SocketBeat", {}, t, t + 10, outcome, { answer });
    Object.assign(op, { connectAt: T0 + connectAt, heardFrom: outcome === "ok" ? T0 + heardFrom : undefined });
    this.checker.beat(r, op);
    return op;
  }

  /** A pong received at `at` to the ping sent at `sentAt`. */
  pong(r, sentAt, at) {
    this.at(at);
    this.checker.heardOnSocket(r, T0 + sentAt, T0 + at);
  }

  /** The relay's lease socket ended at `t`; `lastRecv`: the last message it received on it. */
  socketClose(r, t, { code = 1000, byRelay = true, lastRecv = t } = {}) {
    this.at(t);
    this.checker.socketClosed(r, { code, at: T0 + t, byRelay, lastRecv: T0 + lastRecv });
  }

  /** One write at `t`, fed to beginWrite / endWrite as SimRelay.write does. */
  write(r, method, scope, t, { n = N, track = "video", outcome = "ok", code } = {}) {
    const w = WRITES[method];
    this.at(t);
    const model = this.checker.beginWrite(r, scope, w.kind, w.key(n, track));
    const op = this.call(r, method, { scope, ...w.body(n, track) }, t, t + 30, outcome, { code });
    op.scope = scope;
    this.checker.endWrite(r, model, op, method.startsWith("Un") ? "absent" : "present");
    return op;
  }

  /** A Lookup at `t` answered with `owner`'s relay link, or not_found; expectations taken at its start as relays.mjs does. */
  lookup(caller, scope, t, owner, n = N) {
    this.at(t);
    const expect = this.checker.holders(`${scope}|ns|${n}`, Date.now(), Date.now());
    const op =
      owner === undefined
        ? this.call(caller, "Lookup", { scope, namespace: ns(n) }, t, t + 10, "error", { code: "not_found" })
        : this.call(caller, "Lookup", { scope, namespace: ns(n) }, t, t + 10, "ok", {
            answer: { origin: { namespace: ns(n), relay: { url: link(owner, scope) } } },
          });
    op.scope = scope;
    this.checker.lookup(op, scope, n, undefined, expect);
    return op;
  }

  /** LookupNamespaceSubscribers at `t` for a namespace under `prefix`, answered with `names`. */
  nsSubscribers(caller, scope, t, prefix, names) {
    this.at(t);
    const expect = this.checker.holders(`${scope}|nssub|${prefix}`, Date.now(), Date.now());
    const relays = names.map((name) => ({ url: link(name, scope) }));
    const op = this.call(caller, "LookupNamespaceSubscribers", { scope, namespace: ns(`${prefix}/cam`) }, t, t + 10, "ok", {
      answer: { relays },
    });
    this.checker.listed(op, scope, "nssub", [prefix], op.answer.relays, expect, caller.url);
    return op;
  }

  /**
   * LookupTrack at `t` for N#`track`, answered with `owner`'s relay link. As relays.mjs: the
   * exact track's certain holders are expected; the namespace's only if no relay may hold the track.
   */
  lookupTrack(caller, scope, t, owner, track = "video") {
    this.at(t);
    const trackId = `${scope}|track|${N}#${track}`;
    const trackHolders = this.checker.holders(trackId, Date.now(), Date.now());
    const expect =
      trackHolders.length || this.checker.mayBeHeld(trackId, Date.now())
        ? trackHolders
        : this.checker.holders(`${scope}|ns|${N}`, Date.now(), Date.now());
    const op = this.call(caller, "LookupTrack", { scope, namespace: ns(N), track }, t, t + 10, "ok", {
      answer: { origin: { namespace: ns(N), relay: { url: link(owner, scope) } } },
    });
    op.scope = scope;
    this.checker.lookup(op, scope, N, track, expect);
    return op;
  }

  /** LookupTrackSubscribers at `t` for N#in, answered with `names`. */
  trackSubscribers(caller, scope, t, names) {
    this.at(t);
    const key = `${N}#in`;
    const expect = this.checker.holders(`${scope}|tracksub|${key}`, Date.now(), Date.now());
    const relays = names.map((name) => ({ url: link(name, scope) }));
    const op = this.call(caller, "LookupTrackSubscribers", { scope, namespace: ns(N), track: "in" }, t, t + 10, "ok", {
      answer: { relays },
    });
    this.checker.listed(op, scope, "tracksub", [key], op.answer.relays, expect);
    return op;
  }

  shutdown(r, t, { outcome = "ok", took = 20 } = {}) {
    const op = this.call(r, "Shutdown", {}, t, t + took, outcome);
    this.checker.shutdown(r, op);
    return op;
  }

  silent(r, t, { socketClosedAt } = {}) {
    this.at(t);
    this.checker.silent(r, { socketClosedAt: socketClosedAt === undefined ? undefined : T0 + socketClosedAt });
  }

  /** The runtime is being SIGKILLed from `from` on (Runtime.killAndRestart, before its restart). */
  killing(from) {
    this.at(from);
    this.runtime.killedSince = T0 + from;
  }

  /** The runtime SIGKILLed at `from`, its next workerd started at `start`, healthy at `to` (Runtime.killAndRestart). */
  kill(from, start, to) {
    this.runtime.killedSince = undefined;
    this.runtime.lives.at(-1).end = T0 + from;
    this.runtime.lives.push({ start: T0 + start, end: Number.POSITIVE_INFINITY });
    this.runtime.downs.push({ from: T0 + from, to: T0 + to });
    this.at(to);
    this.checker.resumed(T0 + to);
  }

  /** A checkpoint reading `rows` ([name, scope, kind, key]) from `t` to t + 50, as run.mjs's snapshot gives them. */
  checkpoint(t, rows) {
    this.at(t + 50);
    this.checker.checkpoint(
      rows.map(([name, scope, kind, key]) => ({ scope, kind, key, relay: url(name) })),
      T0 + t,
      T0 + t + 50,
    );
  }

  get rules() {
    return this.checker.violations.map((v) => v.rule);
  }

  /** Exactly these rules were broken, and each detail names what `needles[i]` says. */
  assertViolations(rules, ...needles) {
    assert.deepEqual(this.rules, rules, JSON.stringify(this.checker.violations, null, 1));
    for (const [i, words] of needles.entries()) for (const w of words) assert.ok(this.checker.violations[i].detail.includes(w), w);
  }
}

let tl;
beforeEach(() => {
  mock.timers.enable({ apis: ["Date"], now: T0 });
  // Each violation is also printed; the tests read them from checker.violations.
  mock.method(console, "error", () => {});
  tl = new Timeline();
});
afterEach(() => {
  mock.restoreAll();
  mock.timers.reset();
});

/** r1 beating every TTL/3 from 0 to `until`, holding room-1/cam in soak-a since 130 (the timeline only goes forward). */
function owner(until = 0) {
  const r1 = tl.relay("r1");
  tl.beat(r1, 0);
  tl.write(r1, "RegisterNamespace", A, 100);
  for (let t = 2000; t <= until; t += 2000) tl.beat(r1, t);
  return r1;
}

describe("soak checker: histories that keep the rules", () => {
  it("acknowledged writes, answers and checkpoints that agree give no violation", () => {
    const r1 = tl.relay("r1");
    const r2 = tl.relay("r2");
    tl.beat(r1, 0);
    tl.beat(r2, 10);
    tl.write(r1, "RegisterNamespace", A, 100);
    tl.write(r1, "RegisterTrack", A, 150);
    tl.write(r2, "SubscribeNamespace", A, 200, { n: "room-1" });
    tl.write(r2, "SubscribeTrack", A, 250, { track: "in" });
    // Another relay's register of a held namespace is refused: it changes nothing.
    tl.write(r2, "RegisterNamespace", A, 300, { outcome: "error", code: "already_exists" });
    tl.lookup(r2, A, 400, "r1");
    tl.lookup(r2, B, 420, undefined);
    tl.nsSubscribers(r1, A, 450, "room-1", ["r2"]);
    tl.beat(r1, 2000);
    tl.beat(r2, 2010);
    tl.checkpoint(2100, [
      ["r1", A, "ns", N],
      ["r1", A, "track", `${N}#video`],
      ["r2", A, "nssub", "room-1"],
      ["r2", A, "tracksub", `${N}#in`],
    ]);
    tl.write(r1, "UnregisterNamespace", A, 2200);
    tl.write(r1, "UnregisterTrack", A, 2250);
    tl.lookup(r2, A, 2300, undefined);
    tl.checkpoint(2400, [
      ["r2", A, "nssub", "room-1"],
      ["r2", A, "tracksub", `${N}#in`],
    ]);
    tl.assertViolations([]);
    assert.equal(tl.checker.counts.answersChecked, 4);
    assert.equal(tl.checker.counts.rowsChecked, 6);
  });

  it("LookupTrack: the exact track's owner wins; without a track, the namespace's owner answers", () => {
    owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.write(r2, "RegisterTrack", A, 300);
    tl.lookupTrack(r2, A, 400, "r2");
    tl.lookupTrack(r2, A, 500, "r1", "audio");
    tl.write(r2, "SubscribeTrack", A, 600, { track: "in" });
    tl.trackSubscribers(r2, A, 700, ["r2"]);
    tl.assertViolations([]);
  });

  it("a subscription is held by every relay that subscribed (no one-owner rule)", () => {
    const r1 = tl.relay("r1");
    const r2 = tl.relay("r2");
    tl.beat(r1, 0);
    tl.beat(r2, 10);
    tl.write(r1, "SubscribeNamespace", A, 100, { n: "room-1" });
    tl.write(r2, "SubscribeNamespace", A, 200, { n: "room-1" });
    tl.nsSubscribers(tl.relay("r3"), A, 300, "room-1", ["r1", "r2"]);
    tl.checkpoint(400, [
      ["r1", A, "nssub", "room-1"],
      ["r2", A, "nssub", "room-1"],
    ]);
    tl.assertViolations([]);
  });

  it("a lost answer: the key may or may not be there, before and after the call can no longer land", () => {
    const r1 = owner(4000);
    tl.write(r1, "RegisterTrack", A, 4100, { outcome: "indeterminate" });
    tl.write(r1, "UnregisterNamespace", A, 4200, { outcome: "indeterminate" });
    tl.lookup(r1, A, 4300, undefined);
    tl.lookup(r1, A, 4400, "r1");
    // Before and after 5 s of the runtime running since the loss (the lease, renewed at 4000, holds until 10000).
    for (const t of [4500, 4230 + SETTLE_MS + 100]) {
      tl.checkpoint(t, [
        ["r1", A, "ns", N],
        ["r1", A, "track", `${N}#video`],
      ]);
      tl.checkpoint(t + 100, []);
    }
    tl.assertViolations([]);
  });

  it("a relay whose lease could have lapsed: its rows may go, another may take its namespace, state_lost is allowed", () => {
    const r1 = owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.beat(r1, 2000);
    for (let t = 2200; t <= 8200; t += 2000) tl.beat(r2, t);
    // r1's last acknowledged beat started at 2000: from 8000 on its lease may have lapsed.
    tl.checkpoint(8300, []);
    tl.lookup(r2, A, 8400, undefined);
    tl.write(r2, "RegisterNamespace", A, 8500);
    tl.beat(r1, 9000, { stateLost: true });
    tl.checkpoint(9100, [["r2", A, "ns", N]]);
    tl.assertViolations([]);
    // Each relay's first beat (nothing held yet) and r1's state_lost.
    assert.equal(tl.checker.counts.lapsesModelled, 3);
  });

  it("a lost heartbeat reply may have carried state_lost: after a possible lapse its relay's rows are not required", () => {
    const r1 = owner(2000);
    tl.beat(r1, 4000, { outcome: "indeterminate" });
    tl.beat(r1, 8500);
    tl.checkpoint(8600, []);
    tl.assertViolations([]);
  });

  it("a silent relay's rows may stay until its deadline (last contact + TTL + purge bound)", () => {
    const r1 = owner(2000);
    tl.silent(r1, 2100);
    // Last answer 2020: deadline 2020 + 6000 + 6000 = 14020.
    assert.equal(tl.checker.deadline(r1), T0 + 14_020);
    tl.checkpoint(13_900, [["r1", A, "ns", N]]);
    tl.lookup(tl.relay("r2"), A, 14_000, "r1");
    tl.checkpoint(14_100, []);
    tl.assertViolations([]);
  });

  it("a kill moves a silent relay's deadline by the restart grace and the time the runtime was down", () => {
    const r1 = owner(2000);
    tl.silent(r1, 2100);
    tl.kill(5000, 8500, 9000);
    // The new life began at 8500: no lapse before 8500 + TTL, so no purge due before 8500 + TTL + bound.
    assert.equal(tl.checker.deadline(r1), T0 + 20_500);
    tl.checkpoint(20_400, [["r1", A, "ns", N]]);
    tl.assertViolations([]);
  });

  it("a lost write that could land while a slow Shutdown ran: it re-opens a lease, so its row may stay until the usual deadline", () => {
    const r1 = owner(2000);
    tl.write(r1, "RegisterTrack", A, 2100, { outcome: "indeterminate" });
    // The lost write may land until 7130, after the Shutdown (7100 to 7200) has purged.
    tl.shutdown(r1, 7100, { took: 100 });
    // From the last contact, the Shutdown's answer.
    assert.equal(tl.checker.deadline(r1), T0 + 7200 + TTL + PURGE_BOUND);
    tl.checkpoint(7300, [["r1", A, "track", `${N}#video`]]);
    tl.assertViolations([]);
  });

  it("an acknowledged Shutdown: every row gone at once, none required", () => {
    const r1 = owner(2000);
    tl.write(r1, "SubscribeTrack", A, 2050, { track: "in" });
    tl.shutdown(r1, 2100);
    tl.checkpoint(2200, []);
    tl.assertViolations([]);
  });

  it("a Shutdown while a lost write may still land: that key may stay until the usual deadline", () => {
    const r1 = owner(2000);
    tl.write(r1, "RegisterTrack", A, 2100, { outcome: "indeterminate" });
    tl.shutdown(r1, 2200);
    tl.checkpoint(3000, [["r1", A, "track", `${N}#video`]]);
    tl.assertViolations([]);
  });
});

describe("soak checker: each rule fires", () => {
  it("missing: a checkpoint without a live relay's acknowledged row", () => {
    owner(2000);
    tl.checkpoint(2100, []);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("missing: a Lookup answering not_found while a relay certainly holds the namespace", () => {
    const r1 = owner();
    tl.lookup(r1, A, 1000, undefined);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1"), "not_found"]);
  });

  it("missing: a Lookup naming another relay, one whose register of it was refused", () => {
    owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.write(r2, "RegisterNamespace", A, 300, { outcome: "error", code: "already_exists" });
    tl.lookup(r2, A, 1000, "r2");
    tl.assertViolations(["missing"], [url("r2"), url("r1"), `${A}|ns|${N}`]);
  });

  it("missing: LookupNamespaceSubscribers leaving out a subscriber", () => {
    const r1 = tl.relay("r1");
    tl.beat(r1, 0);
    tl.write(r1, "SubscribeNamespace", A, 100, { n: "room-1" });
    tl.nsSubscribers(tl.relay("r2"), A, 500, "room-1", []);
    tl.assertViolations(["missing"], [url("r1"), `${A}|nssub|room-1`]);
  });

  it("missing: LookupTrack answering the namespace's owner while another relay certainly holds the exact track", () => {
    owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.write(r2, "RegisterTrack", A, 300);
    tl.lookupTrack(r2, A, 400, "r1");
    tl.assertViolations(["missing"], [url("r1"), url("r2"), `${A}|track|${N}#video`]);
  });

  it("missing: LookupTrack answering another relay while no track is registered and one relay holds the namespace", () => {
    owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.write(r2, "RegisterTrack", A, 300, { outcome: "error", code: "already_exists" });
    tl.lookupTrack(r2, A, 400, "r2");
    tl.assertViolations(["missing"], [url("r2"), url("r1"), `${A}|ns|${N}`]);
  });

  it("missing: LookupTrackSubscribers leaving out a subscriber", () => {
    const r1 = tl.relay("r1");
    tl.beat(r1, 0);
    tl.write(r1, "SubscribeTrack", A, 100, { track: "in" });
    tl.trackSubscribers(r1, A, 200, []);
    tl.assertViolations(["missing"], [url("r1"), `${A}|tracksub|${N}#in`]);
  });

  it("missing: state_lost = false after a gap, with no reply lost, proves no purge, so the row stays required", () => {
    const r1 = owner(2000);
    tl.beat(r1, 8500);
    tl.checkpoint(8600, []);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("late-purge: a silent relay's row still there after its deadline", () => {
    const r1 = owner(2000);
    tl.silent(r1, 2100);
    tl.checkpoint(14_100, [["r1", A, "ns", N]]);
    tl.assertViolations(["late-purge"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("late-purge: past the deadline a kill moved", () => {
    const r1 = owner(2000);
    tl.silent(r1, 2100);
    tl.kill(5000, 8500, 9000);
    tl.checkpoint(20_600, [["r1", A, "ns", N]]);
    tl.assertViolations(["late-purge"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("late-purge: a shut-down relay's row that a lost write of it may have put back, past the usual deadline", () => {
    const r1 = owner(2000);
    tl.write(r1, "RegisterTrack", A, 2100, { outcome: "indeterminate" });
    tl.shutdown(r1, 2200);
    // The lost write could land until 2130 + 5000: the deadline runs from there (7130 + TTL + bound).
    assert.equal(tl.checker.deadline(r1), T0 + 19_130);
    tl.checkpoint(19_200, [["r1", A, "track", `${N}#video`]]);
    tl.assertViolations(["late-purge"], [`${A}|track|${N}#video`, url("r1")]);
  });

  it("dead-named: a Lookup naming a silent relay after its deadline", () => {
    const r1 = owner(2000);
    tl.silent(r1, 2100);
    tl.lookup(tl.relay("r2"), A, 14_100, "r1");
    tl.assertViolations(["dead-named"], [url("r1"), A]);
  });

  it("dead-named: an answer naming a relay after its acknowledged Shutdown", () => {
    const r1 = tl.relay("r1");
    tl.beat(r1, 0);
    tl.write(r1, "SubscribeNamespace", A, 100, { n: "room-1" });
    tl.shutdown(r1, 1000);
    tl.nsSubscribers(tl.relay("r2"), A, 1100, "room-1", ["r1"]);
    tl.assertViolations(["dead-named"], [url("r1"), A]);
  });

  it("two-owners: a namespace acknowledged to a second relay while the first certainly holds it", () => {
    owner();
    const r2 = tl.relay("r2");
    tl.beat(r2, 200);
    tl.write(r2, "RegisterNamespace", A, 1000);
    tl.assertViolations(["two-owners"], [`${A}|ns|${N}`, url("r1"), url("r2")]);
  });

  it("two-owners: a track too", () => {
    const r1 = owner();
    tl.write(r1, "RegisterTrack", A, 200);
    const r2 = tl.relay("r2");
    tl.beat(r2, 300);
    tl.write(r2, "RegisterTrack", A, 1000);
    tl.assertViolations(["two-owners"], [`${A}|track|${N}#video`, url("r1"), url("r2")]);
  });

  it("isolation: a checkpoint row in a scope its relay never wrote it in", () => {
    owner();
    tl.checkpoint(1000, [
      ["r1", A, "ns", N],
      ["r1", B, "ns", N],
    ]);
    tl.assertViolations(["isolation"], [`${B}|ns|${N}`, url("r1")]);
  });

  it("isolation: a Lookup in one scope answering with a relay that registered the name only in another", () => {
    owner();
    tl.lookup(tl.relay("r2"), B, 1000, "r1");
    tl.assertViolations(["isolation"], [url("r1"), B, N]);
  });

  it("phantom: a row of a relay the soak never ran", () => {
    owner();
    tl.checkpoint(1000, [
      ["r1", A, "ns", N],
      ["ghost", A, "ns", N],
    ]);
    tl.assertViolations(["phantom"], [url("ghost"), `${A}|ns|${N}`]);
  });

  it("phantom: a row no relay ever wrote, in any scope", () => {
    owner();
    tl.checkpoint(1000, [
      ["r1", A, "ns", N],
      ["r1", A, "ns", "room-2/cam"],
    ]);
    tl.assertViolations(["phantom"], [url("r1"), `${A}|ns|room-2/cam`]);
  });

  it("phantom: an answer naming a relay the soak never ran", () => {
    tl.lookup(tl.relay("r2"), A, 1000, "ghost");
    tl.assertViolations(["phantom"], [url("ghost"), A]);
  });

  it("stale-row: a row after its acknowledged unregister", () => {
    const r1 = owner();
    tl.write(r1, "UnregisterNamespace", A, 500);
    tl.checkpoint(1000, [["r1", A, "ns", N]]);
    tl.assertViolations(["stale-row"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("stale-row: a row of the relay's previous life after its new epoch's first beat", () => {
    const r1 = owner(2000);
    tl.beat(r1, 3000, { newEpoch: true });
    tl.checkpoint(3500, [["r1", A, "ns", N]]);
    tl.assertViolations(["stale-row"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("stale-row: a row after its relay's acknowledged Shutdown", () => {
    const r1 = owner(2000);
    tl.shutdown(r1, 2100);
    tl.checkpoint(2200, [["r1", A, "ns", N]]);
    tl.assertViolations(["stale-row"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("state-lost: a heartbeat saying state_lost when no lapse was possible", () => {
    const r1 = owner(2000);
    tl.beat(r1, 4000, { stateLost: true });
    tl.assertViolations(["state-lost"], [url("r1"), "1 rows held"]);
  });
});

/**
 * r1 on the lease socket, as the edge starts: a Heartbeat call at 0, room-1/cam in
 * soak-a at 100, the socket connected at 150 and answered at 210, then a ping every
 * second (sent at 1150, 2150, …, answered 5 ms later) up to `until`. No beat on the
 * socket after the first: the pings alone keep the lease.
 */
function onSocket(until = 0) {
  const r1 = tl.relay("r1");
  tl.beat(r1, 0);
  tl.write(r1, "RegisterNamespace", A, 100);
  tl.socketBeat(r1, 200, { connectAt: 150 });
  for (let t = 1150; t <= until; t += 1000) tl.pong(r1, t, t + 5);
  return r1;
}

describe("soak checker: the lease socket", () => {
  it("missing: pings keep a socket relay's lease past a TTL without beats, so its row stays required", () => {
    onSocket(9150);
    tl.checkpoint(9200, []);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("a steady beat on the socket renews nothing (the pings do): with no ping answered, its lease may end a TTL after the connect", () => {
    const r1 = onSocket();
    for (const t of [2200, 4200]) tl.socketBeat(r1, t, { connectAt: 150 });
    tl.socketBeat(r1, 6200, { connectAt: 150, stateLost: true });
    tl.assertViolations([]);
  });

  it("state-lost: told after a close the relay was back from within CLOSE_GRACE_MS", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300);
    // Reconnected: its first beat answered at 3710, before 3300 + grace.
    tl.socketBeat(r1, 3700, { connectAt: 3600, stateLost: true });
    tl.assertViolations(["state-lost"], [url("r1"), "1 rows held"]);
  });

  it("a close the relay was back from later than CLOSE_GRACE_MS may have ended the lease: state_lost allowed, the row not required", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300);
    tl.checkpoint(3300 + CLOSE_GRACE_MS + 10, []);
    tl.socketBeat(r1, 4400, { connectAt: 4350, stateLost: true });
    tl.checkpoint(4500, []);
    tl.assertViolations([]);
    assert.equal(tl.checker.counts.backLate, 1);
  });

  it("a close the Worker made is no earlier than the relay's last message from it: the grace counts from that", () => {
    const r1 = onSocket(3150);
    // Seen by the relay at 3900, but the Worker may have closed it right after the pong at 3155.
    tl.socketClose(r1, 3900, { byRelay: false, lastRecv: 3155 });
    tl.socketBeat(r1, 4200, { connectAt: 4100, stateLost: true });
    tl.assertViolations([]);
  });

  it("a Heartbeat call answered within the grace brings the relay back too", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300);
    tl.beat(r1, 3400, { stateLost: true });
    tl.assertViolations(["state-lost"], [url("r1")]);
  });

  it("state-lost: a runtime reset breaks the socket with no close on record, so a relay back within the restart grace keeps everything", () => {
    const r1 = onSocket(4150);
    tl.killing(5000);
    tl.socketClose(r1, 5005, { code: 1006, byRelay: false, lastRecv: 4155 });
    tl.kill(5000, 7000, 7500);
    tl.socketBeat(r1, 9000, { connectAt: 8900, stateLost: true });
    tl.assertViolations(["state-lost"], [url("r1")]);
    assert.equal(tl.checker.counts.resetCloses, 1);
  });

  it("missing: after a reset the relay back within the restart grace still holds its row", () => {
    const r1 = onSocket(4150);
    tl.killing(5000);
    tl.socketClose(r1, 5005, { code: 1006, byRelay: false, lastRecv: 4155 });
    tl.kill(5000, 7000, 7500);
    tl.socketBeat(r1, 9000, { connectAt: 8900 });
    tl.checkpoint(9100, []);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("after a reset a relay back later than the restart grace may have lapsed", () => {
    const r1 = onSocket(4150);
    tl.killing(5000);
    tl.socketClose(r1, 5005, { code: 1006, byRelay: false, lastRecv: 4155 });
    tl.kill(5000, 7000, 7500);
    tl.socketBeat(r1, 13_100, { connectAt: 13_050, stateLost: true });
    tl.assertViolations([]);
  });

  it("a close on record before a kill ends the lease at the restart (no restart grace)", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300);
    tl.kill(3500, 5000, 5500);
    tl.socketBeat(r1, 5600, { connectAt: 5550, stateLost: true });
    tl.assertViolations([]);
  });

  it("a pong after a possible lapse (a freeze) vouches for nothing: the next beat's state_lost decides", () => {
    const r1 = onSocket(3150);
    // Frozen from 3200 to 11_200: the pings sent meanwhile are answered at once after.
    for (let t = 4150; t <= 11_150; t += 1000) tl.pong(r1, t, 11_210);
    tl.socketBeat(r1, 11_300, { connectAt: 150, heardFrom: 11_150, stateLost: true });
    tl.assertViolations([]);
  });

  it("missing: after a freeze, a beat answering state_lost = false proves the row was kept", () => {
    const r1 = onSocket(3150);
    for (let t = 4150; t <= 11_150; t += 1000) tl.pong(r1, t, 11_210);
    tl.socketBeat(r1, 11_300, { connectAt: 150, heardFrom: 11_150 });
    tl.checkpoint(11_400, []);
    tl.assertViolations(["missing"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("state-lost: the socket closed 4004 (lapsed) while the relay was heard within a TTL", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300, { code: 4004, byRelay: false, lastRecv: 3155 });
    tl.assertViolations(["state-lost"], [url("r1"), "4004"]);
  });

  it("a 4004 close after a silence past the lease, its rows then not required", () => {
    const r1 = onSocket(2150);
    tl.socketClose(r1, 8300, { code: 4004, byRelay: false, lastRecv: 2155 });
    tl.checkpoint(8400, []);
    tl.assertViolations([]);
  });

  it("late-purge: a relay that died on its socket, its row past CLOSE_GRACE_MS and the close's purge bound", () => {
    const r1 = onSocket(3150);
    tl.socketClose(r1, 3300);
    tl.silent(r1, 3300, { socketClosedAt: 3300 });
    assert.equal(tl.checker.deadline(r1), T0 + 3300 + CLOSE_GRACE_MS + CLOSE_PURGE_BOUND);
    tl.checkpoint(3300 + CLOSE_GRACE_MS + CLOSE_PURGE_BOUND - 100, [["r1", A, "ns", N]]);
    tl.assertViolations([]);
    tl.checkpoint(3300 + CLOSE_GRACE_MS + CLOSE_PURGE_BOUND + 100, [["r1", A, "ns", N]]);
    tl.assertViolations(["late-purge"], [`${A}|ns|${N}`, url("r1")]);
  });

  it("a Heartbeat call answered after the socket opened keeps the lease a TTL past the close", () => {
    const r1 = tl.relay("r1");
    tl.beat(r1, 0);
    tl.write(r1, "RegisterNamespace", A, 100);
    tl.socketBeat(r1, 200, { connectAt: 150 });
    // The HTTP loop's beat in flight as the socket came up (answered at 320, after the connect).
    tl.beat(r1, 300);
    tl.socketClose(r1, 1000);
    tl.silent(r1, 1000, { socketClosedAt: 1000 });
    // From its last contact, that beat's answer.
    assert.equal(tl.checker.deadline(r1), T0 + 320 + TTL + PURGE_BOUND);
    tl.assertViolations([]);
  });
});
