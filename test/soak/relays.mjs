// Simulated relays: each has its own token (its URL) and boot epoch, beats at
// the interval the Worker asks for, and runs a realistic mix of coordinator
// calls in its two scopes, as moq-worker-edge would: it remembers what its
// clients hold (intents) and re-registers all of it after `state_lost` or after
// heartbeats failed for longer than the lease (docs/lifetimes.md "Recovery").
import { openLeaseSocket } from "../e2e/lib/lease-socket.mjs";
import { ns } from "../e2e/lib/rpc.mjs";
import { recordedCall } from "./history.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The edge's lease-socket timings (edge/src/lease_socket.rs): reconnect jitter, longest backoff, answer deadline. */
const RECONNECT_MS = 500;
const MAX_BACKOFF_MS = 5000;
const PONG_WITHIN_MS = 3000;
/** A HeartbeatRequest on the socket at least this often (coordinator.proto SOCKET_BEAT_MS). */
const SOCKET_BEAT_MS = 30_000;
/** Close codes that refuse the relay (4000 + invalid argument, permission denied, failed precondition, unauthenticated). */
const REFUSALS = [4003, 4007, 4009, 4016];
const LAPSED = 4004;

/** Names shared by every scope on purpose: a scope answering with another's rows would show. */
export const ROOMS = 40;
const room = (rng) => `room-${Math.floor(rng() * ROOMS)}`;

/** The call mix (weights): writes, their undoing, and reads. Also the fleet benchmark's (bench/fleet.mjs). */
export const MIX = [
  ["registerNamespace", 22],
  ["unregisterNamespace", 8],
  ["registerTrack", 8],
  ["unregisterTrack", 4],
  ["subscribeNamespace", 7],
  ["unsubscribeNamespace", 3],
  ["subscribeTrack", 6],
  ["unsubscribeTrack", 3],
  ["lookup", 18],
  ["lookupTrack", 7],
  ["lookupNamespaceSubscribers", 7],
  ["lookupTrackSubscribers", 7],
];
const MIX_TOTAL = MIX.reduce((a, [, w]) => a + w, 0);

function pick(rng) {
  let x = rng() * MIX_TOTAL;
  for (const [name, w] of MIX) {
    x -= w;
    if (x < 0) return name;
  }
  return MIX[0][0];
}

/** A HeartbeatResponse as the Heartbeat call's JSON answers it (its peers counted only). */
const answerOf = (r) => ({ leaseTtlMs: r.leaseTtlMs, intervalMs: r.intervalMs, stateLost: r.stateLost, peers: r.peers.length });

export class SimRelay {
  /**
   * @param ctx {runtime, history, checker, rng, scopes, ttl, opEveryMs, cut(): cutAfterMs|undefined, gate(): Promise}
   */
  /** `socket`: the relay holds its lease on the lease socket, as the edge does, Heartbeat calls only while it is down. */
  constructor(ctx, name, { socket = false } = {}) {
    this.ctx = ctx;
    this.name = name;
    this.socket = socket;
    this.url = `https://${name}.soak.test:4443/`;
    const { rng, scopes } = ctx;
    const first = Math.floor(rng() * scopes.length);
    this.scopes = [scopes[first], scopes[(first + 1 + Math.floor(rng() * (scopes.length - 1))) % scopes.length]];
    this.life = 0;
    this.epoch = `${name}-e0`;
    this.intents = new Map();
    this.model = ctx.checker.addRelay(this.url, { socket });
    this.running = false;
    this.busy = 0;
    this.needRestore = false;
    this.lastBeatOk = 0;
    this.restoredAt = 0;
    this.sleepers = new Set();
  }

  async start(token) {
    this.token = token;
    this.running = true;
    this.loops();
  }

  loops() {
    const failed = (e) => {
      this.failure ??= e;
    };
    this.beating = this.beatLoop().catch(failed);
    this.acting = this.actLoop().catch(failed);
    this.holding = this.socket ? this.socketLoop().catch(failed) : Promise.resolve();
  }

  /** Every loop of this life, to wait for when it ends. */
  get loopsDone() {
    return Promise.allSettled([this.beating, this.acting, this.holding]);
  }

  call(method, body, { cut = true, timeoutMs = 5000 } = {}) {
    return recordedCall(this.ctx.history, {
      url: this.ctx.runtime.url,
      method,
      body,
      token: this.token,
      headers: { "moq-relay-epoch": this.epoch },
      relay: this.url,
      cutAfterMs: cut ? this.ctx.cut() : undefined,
      timeoutMs,
    });
  }

  // ---- heartbeats --------------------------------------------------------------

  async beatLoop() {
    let interval = Math.floor(this.ctx.ttl / 3);
    let newEpoch = this.life > 0;
    while (this.running) {
      const began = Date.now();
      if (this.lease) {
        // The socket holds the lease: this loop stands aside (as the edge's), and beats at once when it is lost.
        this.lastBeatOk = began;
        await this.pause(interval, true);
        continue;
      }
      const op = await this.call("Heartbeat", { epoch: this.epoch });
      if (!this.running && op.outcome !== "ok") break;
      this.ctx.checker.beat(this.model, op, { newEpoch });
      if (op.outcome === "ok") {
        newEpoch = false;
        interval = op.answer.intervalMs;
        // Re-register after state_lost, or after beats failed for longer than the lease (a lost reply may have carried it).
        if (op.answer.stateLost || (this.lastBeatOk && op.start - this.lastBeatOk > this.ctx.ttl)) this.needRestore = true;
        this.lastBeatOk = op.start;
        this.lastBeatEnd = op.end;
        if (!this.needRestore && this.restoredAt < op.end) this.restoredAt = op.end;
      } else if (op.outcome === "error" && op.code === "failed_precondition") {
        throw new Error(`${this.url}: heartbeat refused: ${op.message}`);
      }
      await this.pause(began + interval - Date.now(), true);
    }
  }

  /** Sleeps `ms`, less if the process stops meanwhile or (`onLoss`) its lease socket is lost. */
  pause(ms, onLoss = false) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      done.onLoss = onLoss;
      const t = setTimeout(done, Math.max(0, ms));
      this.sleepers.add(done);
    });
  }

  /** Ends the pauses: every one when the process stops, those waiting on the socket when it is lost. */
  wakeUp(loss) {
    for (const done of [...this.sleepers]) if (!loss || done.onLoss) done();
  }

  // ---- the lease socket ------------------------------------------------------------

  /**
   * Holds the lease on the socket as the edge does (edge/src/lease_socket.rs):
   * opened once the process's first Heartbeat call was answered, beaten on at
   * the Worker's interval (the edge's 30 s at most) and pinged every second;
   * a lost socket is opened again after a jitter of up to 500 ms, backing off
   * while the Worker is unreachable; after a lapse (4004) or a beat left
   * unanswered the relay re-registers everything.
   */
  async socketLoop() {
    let failures = 0;
    while (this.running) {
      if (!this.lastBeatOk) {
        await this.pause(100);
        continue;
      }
      const ended = await this.socketSession();
      this.wakeUp(true);
      if (ended === "refused") throw new Error(`${this.url}: lease socket refused`);
      failures = ended === "failed" ? failures + 1 : 0;
      const ceiling = ended === "failed" ? Math.min(RECONNECT_MS * 2 ** Math.min(failures, 8), MAX_BACKOFF_MS) : RECONNECT_MS;
      await this.pause(this.ctx.rng() * ceiling);
    }
  }

  /** One socket, until it ends: "lost", "lapsed", "refused", or "failed" (never answered). */
  async socketSession() {
    const { history, checker, runtime } = this.ctx;
    const record = (op) => {
      op.id = history.nextId++;
      op.relay = this.url;
      history.record(op);
      return op;
    };
    const beatOp = (b, sentAt, end) =>
      record({
        method: "SocketBeat",
        start: sentAt,
        end,
        outcome: b ? "ok" : "indeterminate",
        heardFrom: b?.heardFrom,
        connectAt: lease?.connectAt,
        ...(b ? { answer: answerOf(b.reply) } : { why: "socket ended" }),
      });
    let closed;
    const ended = new Promise((resolve) => {
      closed = resolve;
    });
    let lastRecv = 0;
    let lease;
    try {
      lease = await openLeaseSocket(runtime.url, this.token, this.epoch, {
        beatMs: 0,
        pongWithinMs: PONG_WITHIN_MS,
        onPong: (sentAt, at) => {
          lastRecv = at;
          history.pongs++;
          checker.heardOnSocket(this.model, sentAt, at);
        },
        onClose: closed,
      });
    } catch (e) {
      // Never answered: refused, unreachable, or its first HeartbeatRequest lost (which may have carried state_lost).
      const sent = e.beatSent !== undefined;
      record({
        method: "SocketBeat",
        start: e.beatSent ?? e.connectAt,
        end: e.at,
        outcome: sent ? "indeterminate" : "not-sent",
        why: `${e.code}`,
      });
      if (sent) {
        checker.beat(this.model, { start: e.beatSent, end: e.at, outcome: "indeterminate", connectAt: e.connectAt });
        this.needRestore = true;
      }
      return REFUSALS.includes(e.code) ? "refused" : "failed";
    }
    this.lease = lease;
    const first = beatOp(lease, lease.sentAt, lease.at);
    first.heardFrom = lease.connectAt;
    this.socketBeat(first);
    lastRecv = lease.at;
    this.socketUpAt = lease.at;
    // The process ended while it was opening.
    if (!this.running) lease.close();
    // Beats until the socket ends; a beat it left unanswered may have carried state_lost.
    let interval = Math.min(lease.reply.intervalMs || SOCKET_BEAT_MS, SOCKET_BEAT_MS);
    const beating = (async () => {
      for (;;) {
        const next = await Promise.race([sleep(interval).then(() => true), ended.then(() => false)]);
        if (!next) return;
        const sentAt = Date.now();
        const b = await lease.beat();
        if (b) lastRecv = b.at;
        const op = beatOp(b, sentAt, b?.at ?? Date.now());
        this.socketBeat(op);
        if (!b) return;
        interval = Math.min(b.reply.intervalMs || SOCKET_BEAT_MS, SOCKET_BEAT_MS);
      }
    })();
    const e = await ended;
    this.lease = undefined;
    await beating;
    record({
      method: "SocketClose",
      start: e.at,
      end: e.at,
      outcome: "ok",
      answer: { code: e.code, reason: e.reason, byRelay: e.byRelay },
    });
    checker.socketClosed(this.model, { ...e, lastRecv });
    if (e.code === LAPSED) {
      this.needRestore = true;
      return "lapsed";
    }
    return REFUSALS.includes(e.code) && this.running ? "refused" : "lost";
  }

  /** A HeartbeatRequest on the socket, answered (op ok) or left unanswered by its end (indeterminate). */
  socketBeat(op) {
    this.ctx.checker.beat(this.model, op);
    if (op.outcome !== "ok") {
      this.needRestore = true;
      return;
    }
    if (op.answer.stateLost) this.needRestore = true;
    this.lastBeatEnd = op.end;
    if (!this.needRestore && this.restoredAt < op.end) this.restoredAt = op.end;
  }

  // ---- calls -------------------------------------------------------------------

  async actLoop() {
    const { rng, opEveryMs } = this.ctx;
    while (this.running) {
      await this.ctx.gate();
      if (!this.running) break;
      // A process beats before anything else: its first acknowledged beat names its epoch.
      if (!this.lastBeatOk) {
        await this.pause(100);
        continue;
      }
      this.busy++;
      try {
        this.doing = this.needRestore ? "restore" : pick(rng);
        if (this.doing === "restore") await this.restore();
        else await this.act(this.doing);
      } finally {
        this.busy--;
      }
      await this.pause(opEveryMs * (0.5 + rng()));
    }
  }

  /** Re-registers every intent (what its clients still hold), as the edge does on state_lost. */
  async restore() {
    this.needRestore = false;
    this.restoring = true;
    for (const intent of [...this.intents.values()]) {
      if (!this.running) break;
      await this.write(intent.method, intent, true);
    }
    this.restoring = false;
    this.restoredAt = Date.now();
  }

  /** One write on a key, modelled; an acknowledged write or undo updates the intents. */
  async write(method, { scope, kind, key, body }, restoring = false) {
    const undo = method.startsWith("Un");
    const model = this.ctx.checker.beginWrite(this.model, scope, kind, key);
    const op = await this.call(method, { scope, ...body });
    op.scope = scope;
    this.ctx.checker.endWrite(this.model, model, op, undo ? "absent" : "present");
    const id = `${scope}|${kind}|${key}`;
    if (op.outcome === "ok") {
      if (undo) this.intents.delete(id);
      else this.intents.set(id, { method, scope, kind, key, body });
    } else if (op.outcome === "error" && !undo && op.code !== "unavailable") {
      // Refused (another relay holds it, or over a quota): the client is told, the handle dropped.
      this.intents.delete(id);
    } else if (op.outcome !== "ok" && restoring) {
      this.needRestore = true;
    }
    return op;
  }

  async act(what) {
    const { rng, checker } = this.ctx;
    const scope = this.scopes[Math.floor(rng() * 2)];
    const n = `${room(rng)}/cam`;
    const track = rng() < 0.5 ? "video" : "audio";
    // Undo something held when there is one (in this scope), else a random key.
    const held = (kind) => {
      const mine = [...this.intents.values()].filter((i) => i.kind === kind && i.scope === scope);
      return mine.length ? mine[Math.floor(rng() * mine.length)] : undefined;
    };
    switch (what) {
      case "registerNamespace":
        return this.write("RegisterNamespace", { scope, kind: "ns", key: n, body: { namespace: ns(n) } });
      case "unregisterNamespace": {
        const h = held("ns");
        return this.write("UnregisterNamespace", h ?? { scope, kind: "ns", key: n, body: { namespace: ns(n) } });
      }
      case "registerTrack":
        return this.write("RegisterTrack", { scope, kind: "track", key: `${n}#${track}`, body: { namespace: ns(n), track } });
      case "unregisterTrack": {
        const h = held("track");
        return this.write("UnregisterTrack", h ?? { scope, kind: "track", key: `${n}#${track}`, body: { namespace: ns(n), track } });
      }
      case "subscribeNamespace": {
        const prefix = n.split("/")[0];
        const op = await this.write("SubscribeNamespace", { scope, kind: "nssub", key: prefix, body: { prefix: ns(prefix) } });
        if (op.outcome === "ok") {
          // Upstream relays host a namespace under the prefix: the only one is `${prefix}/cam`.
          checker.listed(op, scope, "ns", [n], op.answer.upstreamRelays ?? []);
        }
        return op;
      }
      case "unsubscribeNamespace": {
        const h = held("nssub");
        const prefix = n.split("/")[0];
        return this.write("UnsubscribeNamespace", h ?? { scope, kind: "nssub", key: prefix, body: { prefix: ns(prefix) } });
      }
      case "subscribeTrack":
        return this.write("SubscribeTrack", { scope, kind: "tracksub", key: `${n}#in`, body: { namespace: ns(n), track: "in" } });
      case "unsubscribeTrack": {
        const h = held("tracksub");
        return this.write("UnsubscribeTrack", h ?? { scope, kind: "tracksub", key: `${n}#in`, body: { namespace: ns(n), track: "in" } });
      }
      case "lookup": {
        const expect = checker.holders(`${scope}|ns|${n}`, Date.now(), Date.now());
        const op = await this.read("Lookup", { scope, namespace: ns(n) });
        checker.lookup(op, scope, n, undefined, expect);
        return op;
      }
      case "lookupTrack": {
        // An exact track registration wins over the namespace's owner.
        // The namespace's owner is expected only if no relay may hold the track.
        const trackId = `${scope}|track|${n}#${track}`;
        const trackHolders = checker.holders(trackId, Date.now(), Date.now());
        const expect =
          trackHolders.length || checker.mayBeHeld(trackId, Date.now())
            ? trackHolders
            : checker.holders(`${scope}|ns|${n}`, Date.now(), Date.now());
        const trackVersion = checker.keyVersion(trackId);
        const op = await this.read("LookupTrack", { scope, namespace: ns(n), track });
        // A track registered or dropped meanwhile may decide either way.
        checker.lookup(op, scope, n, track, checker.keyVersion(trackId) === trackVersion ? expect : []);
        return op;
      }
      case "lookupNamespaceSubscribers": {
        const prefix = n.split("/")[0];
        const expect = checker.holders(`${scope}|nssub|${prefix}`, Date.now(), Date.now());
        const op = await this.read("LookupNamespaceSubscribers", { scope, namespace: ns(n) });
        if (op.outcome === "ok") checker.listed(op, scope, "nssub", [prefix], op.answer.relays ?? [], expect, this.url);
        return op;
      }
      case "lookupTrackSubscribers": {
        const key = `${n}#in`;
        const expect = checker.holders(`${scope}|tracksub|${key}`, Date.now(), Date.now());
        const op = await this.read("LookupTrackSubscribers", { scope, namespace: ns(n), track: "in" });
        if (op.outcome === "ok") checker.listed(op, scope, "tracksub", [key], op.answer.relays ?? [], expect);
        return op;
      }
    }
  }

  async read(method, body) {
    const op = await this.call(method, body);
    op.scope = body.scope;
    this.ctx.checker.heard(this.model, op);
    return op;
  }

  /** Waits for this relay's calls to finish (checkpoints pause new ones). */
  async idle(slow) {
    const since = Date.now();
    while (this.busy > 0) {
      if (slow && Date.now() - since > 30_000) {
        slow();
        slow = undefined;
      }
      await sleep(20);
    }
  }

  describe() {
    const socket = this.socket ? ` socket ${this.lease ? `up since ${this.socketUpAt}` : "down"}` : "";
    return `${this.url}${socket} epoch ${this.epoch} running ${this.running} busy ${this.busy} doing ${this.doing} needRestore ${this.needRestore} restoring ${this.restoring} intents ${this.intents.size} last beat answered ${this.lastBeatEnd} failure ${this.failure?.message}`;
  }

  // ---- lifecycle -----------------------------------------------------------------

  /** The relay process dies and starts again: a new epoch, nothing held. */
  async restart() {
    await this.stop();
    this.life++;
    this.epoch = `${this.name}-e${this.life}`;
    this.intents.clear();
    this.needRestore = false;
    this.lastBeatOk = 0;
    this.running = true;
    this.loops();
  }

  /** Leaves cleanly: Shutdown until acknowledged (it is safe to retry). */
  async shutdown() {
    await this.stop();
    // For up to two minutes (the runtime may be down meanwhile); never acknowledged counts as gone silent.
    const until = Date.now() + 120_000;
    for (let i = 0; Date.now() < until; i++) {
      const op = await this.call("Shutdown", {}, { cut: i === 0 });
      this.ctx.checker.shutdown(this.model, op);
      if (op.outcome === "ok") return true;
      await sleep(500);
    }
    this.ctx.checker.silent(this.model);
    return false;
  }

  /** Goes silent (a crash nobody restarts): no call ever again. */
  async silence() {
    const onSocket = this.lease !== undefined;
    await this.stop();
    this.ctx.checker.silent(this.model, { socketClosedAt: onSocket ? this.model.lastSocketClose : undefined });
  }

  /** Its lease socket breaks (the connection was lost); the relay opens another. False if it had none up. */
  dropSocket() {
    if (!this.running || !this.lease) return false;
    this.lease.close();
    return true;
  }

  /** The process ends: its loops stop, its lease socket closes. */
  async stop() {
    this.running = false;
    this.lease?.close();
    this.wakeUp(false);
    await this.loopsDone;
  }

  /** Back to normal after a fault that ended at `t`: a beat answered since, back on its socket, and nothing left to re-register. */
  whole(t) {
    return this.lastBeatEnd >= t && !this.needRestore && !this.restoring && (!this.socket || this.onSocketSince(t));
  }

  /** Holds its lease on a socket opened at or after `t`. */
  onSocketSince(t) {
    return this.lease !== undefined && this.socketUpAt >= t;
  }

  /** A namespace it may still hold (for the purge watcher). */
  sentinel() {
    return [...this.model.keys.values()].find((k) => k.kind === "ns" && k.st !== "absent");
  }
}
