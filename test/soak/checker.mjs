// The model of the documented rules (docs/lifetimes.md, coordinator.proto) and
// the checks of every answer and of every checkpoint's state against it.
//
// Per relay and per key (scope, kind, key) the model knows one of:
//   present  the relay's write was acknowledged, and nothing since can have removed it
//   absent   it was never written, or an acknowledged unregister / epoch change /
//            shutdown / purge removed it
//   unknown  a call on it is in flight, its answer was lost (until that call can
//            no longer land: `settleAt`), or the relay's lease may have lapsed
// Lapses are modelled from the relay's acknowledged heartbeats and the runtime's
// timeline (Runtime.couldLapse): a lease renewed at time t cannot be purged
// before t + TTL, nor before TTL after the runtime (re)started. A relay on the
// lease socket is renewed by each ping the runtime answered (from when it was
// sent), and a close of its socket that the Worker may have seen makes a lapse
// possible CLOSE_GRACE_MS after it, until the relay's next answered beat; a
// close because the runtime died is no close on record (the restart grace
// applies instead).
//
// Rules checked (each failure is a violation):
//   missing    a live relay's present key is absent from a checkpoint's state,
//              or an exact lookup answers without it (or with another owner)
//   late-purge a dead relay's row is still there after its deadline
//              (last contact + TTL + PURGE_BOUND, plus time the runtime was down)
//   dead-named an answer names a relay past that deadline
//   two-owners a namespace or track acknowledged to a relay while another held it
//   isolation  a scope answers with, or holds, a row only written in another scope
//   phantom    a row or answer nobody ever wrote
//   stale-row  a row the model says is gone (unregistered, replaced epoch, shut down)
//   state-lost a heartbeat says state_lost, or the lease socket closes with 4004
//              (lapsed), although no lapse was possible
import { nsText, registeredUrl } from "../e2e/lib/rpc.mjs";

export const KINDS = {
  ns: { owners: "one" },
  track: { owners: "one" },
  nssub: { owners: "each" },
  tracksub: { owners: "each" },
};

/** How long after a lost answer its call may still land (it was queued in the runtime). */
export const SETTLE_MS = 5000;

/** src/objects/lease-socket.ts: a closed lease socket ends the lease this long after, unless the relay is back. */
export const CLOSE_GRACE_MS = 1000;
/** The lease socket's close code for a lapse (4000 + DEADLINE_EXCEEDED). */
export const LAPSED_CLOSE = 4004;
/** A socket that breaks when the runtime dies closes with this code, and the Worker records no close. */
const ABNORMAL_CLOSE = 1006;

export class Checker {
  /** `closePurgeBound`: how long a purge may take after a closed socket's lease ended (no eviction delays that alarm). */
  constructor({ runtime, ttl, purgeBound, closePurgeBound = purgeBound }) {
    this.runtime = runtime;
    this.ttl = ttl;
    this.purgeBound = purgeBound;
    this.closePurgeBound = closePurgeBound;
    this.relays = new Map();
    /** `${scope}|${kind}|${key}` → Map(relay url → key state). */
    this.byKey = new Map();
    /** Every (scope, kind, key, relay) ever written, acknowledged or not. */
    this.attempted = new Set();
    /** Keys by kind|key|relay → scopes written. */
    this.attemptedScopes = new Map();
    this.violations = [];
    this.counts = {
      lapsesModelled: 0,
      stateLost: 0,
      checkpoints: 0,
      answersChecked: 0,
      rowsChecked: 0,
      socketCloses: 0,
      resetCloses: 0,
      lapsedCloses: 0,
      backInGrace: 0,
      backLate: 0,
    };
  }

  violation(rule, detail) {
    this.violations.push({ rule, at: Date.now(), detail });
    if (this.violations.length <= 50) console.error(`VIOLATION ${rule}: ${detail}`);
  }

  // ---- relays ----------------------------------------------------------------

  /** `socket`: it holds its lease on the lease socket. */
  addRelay(url, { socket = false } = {}) {
    const r = {
      url,
      socket,
      /** A lapse is possible from then on (a socket close the Worker may have seen), until an answered beat. */
      closedFrom: undefined,
      status: "live",
      keys: new Map(),
      lastBeatStart: undefined,
      lastHeard: 0,
      lastSettle: 0,
      deadFrom: undefined,
      shutdownStart: undefined,
      epochBeats: 0,
    };
    this.relays.set(url, r);
    return r;
  }

  /** The relay was heard of (an answer) or may still be (a lost answer, until it settles). */
  heard(r, op) {
    if (op.outcome === "ok" || op.outcome === "error") r.lastHeard = Math.max(r.lastHeard, op.end);
    // A beat left unanswered on a socket that ended cannot land later (the Worker drops it).
    if (op.outcome === "indeterminate" && op.connectAt === undefined) r.lastSettle = Math.max(r.lastSettle, this.settleAt(op.end));
  }

  /** When a call whose answer was lost at `t` can no longer land: SETTLE_MS of the runtime running after t. */
  settleAt(t) {
    let at = t + SETTLE_MS;
    for (let i = 0; i < 3; i++) at = t + SETTLE_MS + this.runtime.unavailableMs(t, at);
    return this.runtime.frozen ? Number.POSITIVE_INFINITY : at;
  }

  /** After the runtime resumes, lost answers that were waiting on it settle from now. */
  resumed(t) {
    for (const r of this.relays.values()) {
      if (r.lastSettle === Number.POSITIVE_INFINITY) r.lastSettle = t + SETTLE_MS;
      for (const k of r.keys.values()) if (k.settleAt === Number.POSITIVE_INFINITY) k.settleAt = t + SETTLE_MS;
    }
  }

  /** The relay's lease may have lapsed between its last acknowledged heartbeat and `t`. */
  mayHaveLapsed(r, t) {
    if (r.lastBeatStart === undefined) return true;
    if (r.closedFrom !== undefined && this.runtime.ranBetween(r.closedFrom, t)) return true;
    return this.runtime.couldLapse(r.lastBeatStart, t, this.ttl);
  }

  /**
   * By when a dead relay's rows must be gone (Infinity while it is live): a
   * lease and the purge bound after its last contact, or, for a relay that died
   * on its lease socket, CLOSE_GRACE_MS and the close's purge bound after the
   * close (a lost call of it landing later re-opens a lease: a lease after that).
   */
  deadline(r) {
    if (r.status === "live") return Number.POSITIVE_INFINITY;
    const settle = r.lastSettle === Number.POSITIVE_INFINITY ? Date.now() : r.lastSettle;
    // A lost write landing after the Shutdown began re-opens a lease (lifetimes.md): then the usual deadline.
    if (r.status === "shutdown" && r.lastSettle <= r.shutdownStart) return r.deadFrom;
    const lease = this.ttl + this.purgeBound;
    if (r.diedOnSocketAt === undefined) return this.moved(Math.max(r.lastHeard, settle), lease);
    return Math.max(this.moved(r.diedOnSocketAt, CLOSE_GRACE_MS + this.closePurgeBound), this.moved(settle, lease));
  }

  /** `last + span`, moved by the restart grace (a lease lapses no sooner than TTL into a new life) and by the time the runtime was down. */
  moved(last, span) {
    let d = last + span;
    for (const life of this.runtime.lives.slice(1))
      if (life.start < d && life.start > last) d = Math.max(d, life.start + this.ttl + this.purgeBound);
    for (let i = 0; i < 3; i++) d = Math.max(d, last + span + this.runtime.unavailableMs(last, d));
    return d;
  }

  /**
   * A heartbeat's answer, from a Heartbeat call or on the lease socket.
   * `newEpoch`: the first acknowledged beat of a new life. A beat on the socket
   * renews the lease as of `op.heardFrom` (the last ping sent before it, or the
   * socket's connect): a steady beat there writes nothing, the pings keep it.
   */
  beat(r, op, { newEpoch = false } = {}) {
    this.heard(r, op);
    // A lost reply may have carried (and so cleared) state_lost.
    if (op.outcome === "indeterminate") r.lostBeat = true;
    if (op.outcome !== "not-sent") r.lastBeatSent = op.start;
    if (op.outcome !== "ok") return;
    if (op.connectAt !== undefined) r.socketConnectAt = op.connectAt;
    else r.lastHttpBeatEnd = op.end;
    if (newEpoch) {
      // The old life's rows went at once; its late calls are refused (retired epoch).
      for (const k of r.keys.values()) this.set(k, "absent");
      r.epochBeats = 0;
    } else if (this.mayHaveLapsed(r, op.end) && (op.answer.stateLost || r.lostBeat || r.epochBeats === 0)) {
      // A lapse was possible and the Worker did not rule it out: state_lost is set
      // before a purge starts and cleared only by the reply that reports it, so a
      // reply without it, with no reply lost since the last one, proves no purge.
      this.counts.lapsesModelled++;
      for (const k of r.keys.values()) if (k.st === "present") this.set(k, "unknown");
    } else if (op.answer.stateLost && r.epochBeats > 0) {
      const held = [...r.keys.values()].filter((k) => k.st === "present");
      if (held.length > 0)
        this.violation(
          "state-lost",
          `${r.url} told state_lost with ${held.length} rows held and no lapse possible since ${iso(r.lastBeatStart)}`,
        );
    }
    if (op.answer.stateLost) this.counts.stateLost++;
    if (r.closedFrom !== undefined) {
      // Back after a close: in time (no lapse from it was possible), or judged above; a new life is not back.
      if (newEpoch) r.closedFrom = undefined;
      else if (this.runtime.ranBetween(r.closedFrom, op.end)) this.counts.backLate++;
      else this.counts.backInGrace++;
      r.closedFrom = undefined;
    }
    r.lostBeat = false;
    r.epochBeats++;
    // Beats on the socket and over HTTP may overlap (the fallback): the later renewal holds.
    r.lastBeatStart = Math.max(r.lastBeatStart ?? Number.NEGATIVE_INFINITY, op.heardFrom ?? op.start);
  }

  /**
   * A pong on the relay's lease socket to a ping sent at `sentAt`: the Worker
   * heard the relay then, unless a lapse was possible before (a pong cannot say
   * whether one happened: the next answered beat decides).
   */
  heardOnSocket(r, sentAt, at) {
    r.lastHeard = Math.max(r.lastHeard, at);
    if (!this.mayHaveLapsed(r, at)) r.lastBeatStart = Math.max(r.lastBeatStart, sentAt);
  }

  /**
   * The relay's lease socket ended at `at` (`byRelay`: this side gave it up;
   * `lastRecv`: when the relay last received anything on it). A Worker closes
   * no sooner than the relay's last message from it, and hears a relay's close
   * no sooner than it was sent: a lapse is possible CLOSE_GRACE_MS after that,
   * unless the relay is back by then. A socket broken because the runtime was
   * killed leaves no close on record (the restart grace applies). 4004 says the
   * lease lapsed: everything held may be gone.
   */
  socketClosed(r, { code, at, byRelay, lastRecv }) {
    this.counts.socketCloses++;
    r.lastSocketClose = at;
    if (code === LAPSED_CLOSE) {
      this.counts.lapsedCloses++;
      const held = [...r.keys.values()].filter((k) => k.st === "present");
      if (!this.mayHaveLapsed(r, at) && held.length > 0)
        this.violation(
          "state-lost",
          `${r.url}'s lease socket closed ${code} (lapsed) at ${iso(at)} with ${held.length} rows held and no lapse possible since ${iso(r.lastBeatStart)}`,
        );
      this.counts.lapsesModelled++;
      for (const k of held) this.set(k, "unknown");
      r.closedFrom = Math.min(r.closedFrom ?? at, at);
      return;
    }
    if (!byRelay && code === ABNORMAL_CLOSE && this.runtime.killedAt(at)) {
      this.counts.resetCloses++;
      return;
    }
    const from = (byRelay ? at : lastRecv) + CLOSE_GRACE_MS;
    r.closedFrom = Math.min(r.closedFrom ?? from, from);
  }

  shutdown(r, op) {
    this.heard(r, op);
    if (op.outcome !== "ok") return;
    for (const k of r.keys.values()) this.set(k, k.settleAt > op.start ? "unknown" : "absent");
    r.status = "shutdown";
    r.shutdownStart = op.start;
    r.deadFrom = op.end;
  }

  /**
   * The relay went silent for good. `socketClosedAt`: it died holding its lease
   * on the socket, which closed then; unless a Heartbeat call of it may have
   * reached the Worker after that socket opened (such a beat keeps the lease a
   * TTL), its lease ends CLOSE_GRACE_MS after the close.
   */
  silent(r, { socketClosedAt } = {}) {
    r.status = "silent";
    r.deadFrom = Date.now();
    if (socketClosedAt !== undefined && !(r.lastHttpBeatEnd >= r.socketConnectAt)) r.diedOnSocketAt = socketClosedAt;
  }

  // ---- keys --------------------------------------------------------------------

  key(r, scope, kind, key) {
    const id = `${scope}|${kind}|${key}`;
    let k = r.keys.get(id);
    if (!k) {
      k = { id, relay: r, scope, kind, key, st: "absent", ver: 0, since: 0, settleAt: 0 };
      r.keys.set(id, k);
      if (!this.byKey.has(id)) this.byKey.set(id, new Map());
      this.byKey.get(id).set(r.url, k);
    }
    return k;
  }

  set(k, st, at = Date.now()) {
    if (k.st !== st) k.since = at;
    k.st = st;
    k.ver++;
  }

  /** A write on a key begins: its state is unknown until the answer. Returns what endWrite needs. */
  beginWrite(r, scope, kind, key) {
    const k = this.key(r, scope, kind, key);
    const attempt = `${scope}|${kind}|${key}|${r.url}`;
    this.attempted.add(attempt);
    const other = `${kind}|${key}|${r.url}`;
    if (!this.attemptedScopes.has(other)) this.attemptedScopes.set(other, new Set());
    this.attemptedScopes.get(other).add(scope);
    const prev = k.st;
    this.set(k, "unknown");
    return { k, prev };
  }

  /** The answer of a write: `effect` is what an acknowledgement means (present / absent). */
  endWrite(r, { k, prev }, op, effect) {
    this.heard(r, op);
    if (op.outcome === "indeterminate") {
      k.settleAt = Math.max(k.settleAt, this.settleAt(op.end));
      return;
    }
    if (op.outcome !== "ok") {
      // A refused call changes nothing; one never sent was never seen.
      this.set(k, k.settleAt > op.start ? "unknown" : prev);
      return;
    }
    if (effect === "present" && KINDS[k.kind].owners === "one") {
      for (const [url, other] of this.byKey.get(k.id)) {
        if (url === r.url) continue;
        if (
          other.st === "present" &&
          other.relay.status === "live" &&
          !this.mayHaveLapsed(other.relay, op.end) &&
          other.since <= op.start
        ) {
          this.violation(
            "two-owners",
            `${k.id}: acknowledged to ${r.url} at ${iso(op.end)} while ${url} held it since ${iso(other.since)}`,
          );
        }
        // One owner: the other relay no longer holds it (unless one of its calls may still land).
        if (other.st !== "absent") this.set(other, other.settleAt > op.start ? "unknown" : "absent");
      }
    }
    this.set(k, k.settleAt > op.start ? "unknown" : effect, op.end);
  }

  /** Relays holding key `id` as present since before `t`, certainly (live, no lapse possible up to `until`). */
  holders(id, t, until) {
    const out = [];
    for (const k of this.byKey.get(id)?.values() ?? []) {
      if (k.st === "present" && k.since <= t && k.relay.status === "live" && !this.mayHaveLapsed(k.relay, until))
        out.push({ k, ver: k.ver });
    }
    return out;
  }

  /** Changes whenever any relay's state of key `id` changes. */
  keyVersion(id) {
    let v = 0;
    for (const k of this.byKey.get(id)?.values() ?? []) v += k.ver + 1;
    return v;
  }

  /** Some relay may hold key `id` (present, unknown, or a lost call on it may still land at `t`). */
  mayBeHeld(id, t) {
    for (const k of this.byKey.get(id)?.values() ?? []) if (k.st !== "absent" || k.settleAt > t) return true;
    return false;
  }

  stillHeld(h) {
    return h.k.ver === h.ver && !this.mayHaveLapsed(h.k.relay, Date.now());
  }

  // ---- answers -------------------------------------------------------------------

  /** Checks a relay URL named in an answer about (scope, kind, key) at op. */
  named(op, scope, kind, key, rawUrl) {
    const url = registeredUrl(rawUrl);
    const r = this.relays.get(url);
    if (!r) return this.violation("phantom", `${op.method} in ${scope} named ${url}, not a soak relay`);
    if (op.start > this.deadline(r)) {
      this.violation(
        "dead-named",
        `${op.method} (op ${op.id}, ${iso(op.start)}) in ${scope} named ${url}, dead since ${iso(r.deadFrom)} (deadline ${iso(this.deadline(r))})`,
      );
    }
    const keys = Array.isArray(key) ? key : [key];
    if (keys.some((kk) => this.attempted.has(`${scope}|${kind}|${kk}|${url}`))) return;
    const elsewhere = keys.some((kk) => this.attemptedScopes.has(`${kind}|${kk}|${url}`));
    this.violation(
      elsewhere ? "isolation" : "phantom",
      `${op.method} (op ${op.id}) in ${scope} named ${url} for ${kind} ${keys.join(" or ")}, never written by it in this scope`,
    );
  }

  /**
   * Lookup / LookupTrack. `expect`: holders captured at the start for the exact
   * key; if one still certainly holds it, the answer must name it.
   */
  lookup(op, scope, ns, track, expect) {
    this.counts.answersChecked++;
    let named;
    if (op.outcome === "ok") {
      const found = nsText(op.answer.origin?.namespace);
      named = registeredUrl(op.answer.origin?.relay?.url);
      // LookupTrack: an exact track, else the namespace route.
      const keys = track !== undefined && found === ns ? [`${ns}#${track}`] : [];
      if (keys.length) {
        const tracked = this.attempted.has(`${scope}|track|${keys[0]}|${named}`);
        if (!tracked) this.named(op, scope, "ns", found, op.answer.origin?.relay?.url);
        else this.named(op, scope, "track", keys[0], op.answer.origin?.relay?.url);
      } else this.named(op, scope, "ns", found, op.answer.origin?.relay?.url);
    } else if (op.outcome !== "error" || op.code !== "not_found") return;
    for (const h of expect) {
      if (!this.stillHeld(h)) continue;
      if (named !== h.k.relay.url) {
        this.violation(
          "missing",
          `${op.method} (op ${op.id}) in ${scope} for ${ns}${track ? `#${track}` : ""} answered ${named ?? "not_found"}, but ${h.k.relay.url} holds ${h.k.id} since ${iso(h.k.since)}`,
        );
      }
    }
  }

  /** An answer listing relays (subscribers, upstream relays): each must have written a matching key here. */
  listed(op, scope, kind, keys, relays, expect = [], caller) {
    this.counts.answersChecked++;
    const urls = new Set((relays ?? []).map((x) => registeredUrl(x.url)));
    for (const x of relays ?? []) this.named(op, scope, kind, keys, x.url);
    for (const h of expect) {
      if (h.k.relay.url === caller || !this.stillHeld(h)) continue;
      if (!urls.has(h.k.relay.url))
        this.violation(
          "missing",
          `${op.method} (op ${op.id}) in ${scope} left out ${h.k.relay.url}, which holds ${h.k.id} since ${iso(h.k.since)}`,
        );
    }
  }

  // ---- checkpoints -------------------------------------------------------------

  /**
   * Compares a state read between `from` and `to` (rows: {scope, kind, key,
   * relay}) with the model. Relay calls are paused around it, so only lost
   * answers can still be landing (those keys are unknown).
   */
  checkpoint(rows, from, to) {
    this.counts.checkpoints++;
    const seen = new Set();
    for (const row of rows) {
      this.counts.rowsChecked++;
      const id = `${row.scope}|${row.kind}|${row.key}`;
      seen.add(`${id}|${row.relay}`);
      const r = this.relays.get(row.relay);
      if (!r) {
        this.violation("phantom", `${id} held by ${row.relay}, not a soak relay`);
        continue;
      }
      const k = r.keys.get(id);
      const deadline = this.deadline(r);
      if (k && r.status === "shutdown" && deadline === r.deadFrom && from > deadline) {
        // An acknowledged Shutdown removed every row at once (no lost call of it could land after): no purge is due.
        this.violation("stale-row", `${id} of ${r.url} still there at ${iso(from)} though shut down at ${iso(r.deadFrom)}`);
      } else if (r.status !== "live" && from > deadline) {
        this.violation(
          "late-purge",
          `${id} of ${r.url} still there at ${iso(from)}; dead since ${iso(r.deadFrom)}, deadline ${iso(this.deadline(r))}`,
        );
      } else if (k && (k.st !== "absent" || k.settleAt > from || k.since > from)) {
        // Held, maybe landing, or changed while the state was read (a Shutdown or new epoch goes on meanwhile).
      } else if (!this.attempted.has(`${id}|${r.url}`)) {
        const elsewhere = this.attemptedScopes.has(`${row.kind}|${row.key}|${r.url}`);
        this.violation(elsewhere ? "isolation" : "phantom", `${id} held by ${r.url}, which never wrote it in ${row.scope}`);
      } else {
        this.violation("stale-row", `${id} of ${r.url} still there at ${iso(from)} though gone since ${iso(k.since)}`);
      }
    }
    for (const r of this.relays.values()) {
      if (r.status !== "live" || this.mayHaveLapsed(r, to)) continue;
      for (const k of r.keys.values()) {
        if (k.st === "present" && k.since <= from && !seen.has(`${k.id}|${r.url}`)) {
          this.violation("missing", `${k.id} of live ${r.url}, acknowledged at ${iso(k.since)}, missing at ${iso(from)}`);
        }
      }
    }
  }
}

export const iso = (t) => (Number.isFinite(t) ? new Date(t).toISOString().slice(11, 23) : String(t));
