// Simulated relays: each has its own token (its URL) and boot epoch, beats at
// the interval the Worker asks for, and runs a realistic mix of coordinator
// calls in its two scopes, as moq-worker-edge would: it remembers what its
// clients hold (intents) and re-registers all of it after `state_lost` or after
// heartbeats failed for longer than the lease (docs/lifetimes.md "Recovery").
import { ns } from "../e2e/lib/rpc.mjs";
import { recordedCall } from "./history.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

export class SimRelay {
  /**
   * @param ctx {runtime, history, checker, rng, scopes, ttl, opEveryMs, cut(): cutAfterMs|undefined, gate(): Promise}
   */
  constructor(ctx, name) {
    this.ctx = ctx;
    this.name = name;
    this.url = `https://${name}.soak.test:4443/`;
    const { rng, scopes } = ctx;
    const first = Math.floor(rng() * scopes.length);
    this.scopes = [scopes[first], scopes[(first + 1 + Math.floor(rng() * (scopes.length - 1))) % scopes.length]];
    this.life = 0;
    this.epoch = `${name}-e0`;
    this.intents = new Map();
    this.model = ctx.checker.addRelay(this.url);
    this.running = false;
    this.busy = 0;
    this.needRestore = false;
    this.lastBeatOk = 0;
    this.restoredAt = 0;
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
      await sleep(Math.max(0, began + interval - Date.now()));
    }
  }

  // ---- calls -------------------------------------------------------------------

  async actLoop() {
    const { rng, opEveryMs } = this.ctx;
    while (this.running) {
      await this.ctx.gate();
      if (!this.running) break;
      // A process beats before anything else: its first acknowledged beat names its epoch.
      if (!this.lastBeatOk) {
        await sleep(100);
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
      await sleep(opEveryMs * (0.5 + rng()));
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
    return `${this.url} epoch ${this.epoch} running ${this.running} busy ${this.busy} doing ${this.doing} needRestore ${this.needRestore} restoring ${this.restoring} intents ${this.intents.size} last beat answered ${this.lastBeatEnd} failure ${this.failure?.message}`;
  }

  // ---- lifecycle -----------------------------------------------------------------

  /** The relay process dies and starts again: a new epoch, nothing held. */
  async restart() {
    this.running = false;
    await Promise.allSettled([this.beating, this.acting]);
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
    this.running = false;
    await Promise.allSettled([this.beating, this.acting]);
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
    this.running = false;
    await Promise.allSettled([this.beating, this.acting]);
    this.ctx.checker.silent(this.model);
  }

  /** Back to normal after a fault that ended at `t`: a beat answered since, and nothing left to re-register. */
  whole(t) {
    return this.lastBeatEnd >= t && !this.needRestore && !this.restoring;
  }

  /** A namespace it may still hold (for the purge watcher). */
  sentinel() {
    return [...this.model.keys.values()].find((k) => k.kind === "ns" && k.st !== "absent");
  }
}
