// RelayObject: one per relay URL. Holds the relay's lease, its boot epoch, its
// socket addresses and the scopes it wrote to, and tells those scopes to purge
// the relay's rows when the lease lapses, when a new epoch replaces the old one
// and on Shutdown. A Heartbeat touches this object only, whatever the relay has
// registered. The rules, and why, are in docs/lifetimes.md.
import { completeClose } from "../rpc/socket-route.js";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { DurableObject } from "cloudflare:workers";
import { Code, ConnectError } from "@connectrpc/connect";
import { HeartbeatRequestSchema, HeartbeatResponseSchema } from "../gen/moqworker/v1/coordinator_pb.js";
import { armAlarm, billing, countAlarm, meteredSql } from "../metrics/billing.js";
import { checkBeat } from "../rpc/heartbeat-check.js";
import { CLOSE_GRACE_MS, closeCodeOf, closeReason, LeaseSockets, leaseOpenOf, MAX_SOCKET_AGE_MS, SOCKET_BEAT_MS } from "./lease-socket.js";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";
import type { ActivityNote } from "../model/activity.js";
import type { RelayNote } from "./directory.js";
import { LISTING_SQL } from "./directory-sql.js";
import { migrate } from "./migrations.js";
import { RELAY_MIGRATIONS, RELAY_SQL } from "./relay-sql.js";
import type { ScopeObject } from "./scope.js";
import { scopeFromObjectName } from "./scope-name.js";
import { bounded, OBJECT_CALL_TIMEOUT_MS } from "./bounded.js";
import { bucketOf } from "../model/hash.js";
import { leaseClockOf } from "./lease-clock.js";
import { type PeerAnswer, type PeerAsk, peerShardOf } from "./peer-shard.js";
import { directoryStub, leaseClockStub, peerShardStub, scopeStub } from "./stubs.js";
import { fail, ok, type Outcome } from "./types.js";
import { revokedMessage } from "../auth/revocation.js";

/** Replaced epochs remembered; a process older than that many restarts is not expected back. */
const RETIRED_KEPT = 16;
/** A purge a scope could not take (unreachable) is retried by the alarm this soon. */
const PURGE_RETRY_MS = 1000;
/** A lease-socket relay's expiry in the directory moves in steps this long (see note()). */
const DIRECTORY_EXPIRY_STEP_MS = 5 * 60_000;
/**
 * `t` rounded up to the relay's own grid of `step`: offset by a hash of its
 * URL, so that a fleet's relays do not all reach a step (and note the
 * directory) in the same beat.
 */
export function stepUp(t: number, step: number, relay: string): number {
  const offset = bucketOf(relay, step);
  return Math.ceil((t - offset) / step) * step + offset;
}
/** Scope names sent to the directory with each note (ListRelays shows them; the count is exact). */
const SCOPES_NOTED = 100;

/**
 * How often a heartbeat also refreshes the relay's entry in the directory and
 * asks its shard for the peer list (between refreshes a relay holding the
 * last version heard is told it is unchanged). Less
 * than the lease TTL, so the directory's lease expiry stays ahead while the
 * relay beats; half of it means every other heartbeat at the default pace.
 */
export function peerRefreshMs(leaseTtlMs: number): number {
  return Math.floor(leaseTtlMs / 2);
}

/** What a heartbeat answers: every field of the HeartbeatResponse, as plain data. */
export type BeatReply = Required<Omit<MessageInitShape<typeof HeartbeatResponseSchema>, "$typeName">>;

/** What a relay is told of the peer list, from its shard's answer. */
function peersReply(answer: PeerAnswer): Omit<BeatReply, "leaseTtlMs" | "intervalMs" | "stateLost"> {
  return {
    peers: answer.peers,
    peersVersion: BigInt(answer.version),
    peersUnchanged: answer.kind === "unchanged",
    peersTruncated: answer.truncated,
    peersDelta: answer.kind === "delta",
    peersGone: answer.gone,
    peersMore: answer.more,
  };
}

export interface LeaseView {
  url: string;
  epoch: string;
  addrs: string[];
  versions: string[];
  expiresAt: number;
  lastBeatAt: number | null;
  alive: boolean;
  scopes: string[];
}

/** What a revocation did: rows removed now, and whether some scope is still to purge (the alarm retries). */
export interface Revoked {
  removed: number;
  purgePending: boolean;
}

/** What a scope learns when it enlists a relay. */
export interface Enlisted {
  epoch: string;
  addrs: string[];
  /** The MoQT versions it speaks (empty: never said). */
  versions: string[];
  /** The lease is open until then (later heartbeats may extend it). */
  expiresAt: number;
}

interface Lease {
  url: string;
  epoch: string;
  addrs: string[];
  versions: string[];
  expiresAt: number;
  lastBeatAt: number | null;
  stateLost: boolean;
  activity: ActivityNote | null;
  /** The activity as stored (compared, not parsed, to tell a change). */
  activityJson: string | null;
  /** The expiry on record; `expiresAt` also counts the heartbeats since (beatAt) and the open socket. */
  storedExpiresAt: number;
  /** When the relay's lease socket closed, if the lease has not been renewed since. */
  closedAt: number | null;
}

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

type ScopeStub = DurableObjectStub<ScopeObject>;

export class RelayObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /**
   * When this instance started. A lease never lapses before the object has
   * been up for one TTL: after a restart of the runtime (or of this object)
   * the relay must get a full TTL to reach us before it is declared dead.
   */
  private startedAt = Date.now();
  /**
   * The last heartbeat this instance answered. A steady heartbeat (same
   * epoch, addresses and versions, lease open) is kept here only: the lease's
   * stored expiry catches up when its alarm fires (at most one write and one
   * alarm per TTL, not three writes per beat). Lost with the instance, which
   * then falls back on the stored expiry and the restart grace (alarm()).
   */
  private beatAt: number | null = null;
  /** Calls run one at a time, so that a purge is complete before any later call is answered. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The peer list's version as the relay's shard last answered (0: none yet; memory only: after an eviction the next beat asks), and whether it was cut at MAX_PEERS. */
  private peersVersion = 0;
  private peersTruncated = false;
  /** The last whole list the shard gave, for an edge that does not take parts (answered if the shard cannot be asked). */
  private wholeList: PeerAnswer | null = null;
  /** When the shard last failed to answer: a relay behind on its list waits a refresh period before asking again. */
  private askFailedAt = 0;
  /** When the peers were last refreshed; 0 = must refresh. */
  private refreshedAt = 0;
  /** What the directory last heard of this relay (noteKey), so that only a change is told; stored, so an eviction does not tell it again. */
  private notedKey: string | null;
  /** Background notes to the directory are coalesced: one in flight, at most one more queued. */
  private noting: Promise<void> | null = null;
  private noteAgain = false;

  /** Tokens of this relay made up to this instant (ms) are refused; null = none revoked. */
  private revokedBefore: number | null;

  /** The relay's lease socket, when it holds its lease on one (objects/lease-socket.ts). */
  private sockets: LeaseSockets;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sockets = new LeaseSockets(ctx);
    this.sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, RELAY_MIGRATIONS);
    this.revokedBefore = (this.sql.exec(RELAY_SQL.revocationGet).toArray()[0]?.before_ms as number | undefined) ?? null;
    this.notedKey = (this.sql.exec(LISTING_SQL.toldGet).toArray()[0]?.told as string | undefined) ?? null;
  }

  /**
   * A scope is about to hold rows of this relay: records the scope, and opens
   * the lease if it is not open (a write proves the relay alive). An open
   * lease is not extended: only heartbeats keep a relay alive.
   */
  enlist(url: string, scopeName: string, epoch: string | undefined, issuedAtMs: number, versions?: string[]): Promise<Outcome<Enlisted>> {
    return this.serial(async () => {
      const refused = this.refuseRevoked(url, issuedAtMs) ?? this.refuseRetired(epoch);
      if (refused) return refused;
      const { lease, changed } = await this.touch(url, epoch, { versions }, false);
      const added = this.sql.exec(RELAY_SQL.scopeAdd, scopeName).rowsWritten > 0;
      // The directory lists the relay with its scopes; it hears of changes in the background.
      if (changed || added) this.noteInBackground();
      return ok(lease);
    });
  }

  /**
   * Renews the lease; answers whether the relay's state was lost (once) and
   * the live peers. The relay's peer-list shard is asked at most every
   * peerRefreshMs (or at once when the relay appears, changes epoch or
   * addresses, or asks for fresh peers), and whenever the relay holds
   * (`knownPeers`) another version than the shard last answered; otherwise
   * the list is unchanged. A relay taking the list in parts (`inParts`) gets
   * the changes since its version, or the list's first page.
   */
  heartbeat(
    url: string,
    epoch: string,
    addrs: string[],
    issuedAtMs: number,
    activity?: ActivityNote,
    versions?: string[],
    freshPeers = false,
    knownPeers = 0n,
    inParts = false,
  ): Promise<Outcome<BeatReply>> {
    return this.renew(url, epoch, addrs, issuedAtMs, activity, versions, { fresh: freshPeers, known: knownPeers, inParts }, null);
  }

  /**
   * A heartbeat, over HTTP (`via` null: kept in memory, beatAt) or on the
   * lease socket `via` (the socket keeps the relay heard; a beat arriving on a
   * socket closed meanwhile is dropped, so a state_lost is never answered
   * into a closed socket).
   */
  private async renew(
    url: string,
    epoch: string,
    addrs: string[],
    issuedAtMs: number,
    activity: ActivityNote | undefined,
    versions: string[] | undefined,
    peers: { fresh: boolean; known: bigint; inParts: boolean },
    via: WebSocket | null,
  ): Promise<Outcome<BeatReply>> {
    const beat = await this.serial(async () => {
      const refused = this.refuseRevoked(url, issuedAtMs) ?? this.refuseRetired(epoch);
      if (refused) return refused;
      if (via && via.readyState !== WebSocket.OPEN) return fail(Code.Aborted, "the lease socket closed");
      const before = this.lease();
      const now = Date.now();
      const steady =
        before !== undefined &&
        !before.stateLost &&
        before.closedAt === null &&
        before.expiresAt > now &&
        before.epoch === epoch &&
        sameList(before.addrs, addrs) &&
        (versions === undefined || sameList(before.versions, versions));
      let changed = false;
      if (!steady) ({ changed } = await this.touch(url, epoch, { addrs, versions }, true));
      // An HTTP beat keeps the lease, but not one that only asks for fresh peers while the socket holds it.
      if (!via && !(peers.fresh && this.sockets.open().length > 0)) this.beatAt = now;
      // Kept with the lease, written only when it changed; the directory hears of it with the next periodic note.
      const reported = activity === undefined ? null : JSON.stringify(activity);
      if (reported !== before?.activityJson) this.sql.exec(RELAY_SQL.activityPut, reported);
      // No record at all, or this epoch's rows purged since its last beat.
      const stateLost = before === undefined || (!steady && this.lease()?.stateLost === true);
      if (stateLost) this.sql.exec(RELAY_SQL.stateLostClear);
      return ok({ stateLost, changed });
    });
    if (!beat.ok) return beat;
    const settings = leaseSettings(this.env);
    const now = Date.now();
    const period = peerRefreshMs(settings.leaseTtlMs);
    const due = peers.fresh || beat.value.changed || now - this.refreshedAt >= period;
    const known = Number(peers.known);
    const behind = known !== this.peersVersion && now - this.askFailedAt >= period;
    const answer: PeerAnswer =
      due || behind
        ? await this.askPeers(url, now, due, { self: url, known, fresh: peers.fresh, inParts: peers.inParts })
        : this.keepYours(known, peers.inParts);
    return ok({ ...settings, stateLost: beat.value.stateLost, ...peersReply(answer) });
  }

  // ---- the lease socket (GET /v1/lease) ----------------------------------------

  /** The relay opens its lease socket; its first HeartbeatRequest on it opens or renews the lease. */
  fetch(request: Request): Promise<Response> {
    const open = { ...leaseOpenOf(request), openedAt: Date.now() };
    return this.serial(async () =>
      this.sockets.accept(open, this.refuseRevoked(open.relay, open.issuedAtMs) ?? this.refuseRetired(open.epoch)),
    );
  }

  /** A HeartbeatRequest on the socket: answered with a HeartbeatResponse, or the socket closed with the refusal. */
  async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    billing.add("websocket_messages_in");
    if (typeof data === "string") {
      ws.close(1003, "the lease socket takes binary HeartbeatRequest messages and the text frame 'ping'");
      return;
    }
    const open = this.sockets.of(ws);
    let reply: Outcome<BeatReply>;
    try {
      const beat = checkBeat(fromBinary(HeartbeatRequestSchema, new Uint8Array(data)), open.epoch);
      reply = await this.renew(
        open.relay,
        beat.epoch,
        beat.addrs,
        open.issuedAtMs,
        beat.activity,
        open.versions,
        { fresh: beat.freshPeers, known: beat.peersVersion, inParts: beat.peersInParts },
        ws,
      );
      if (!reply.ok && reply.code === Code.Aborted) return;
    } catch (err) {
      const e = ConnectError.from(err);
      reply = fail(e.code === Code.Unknown ? Code.InvalidArgument : e.code, e.rawMessage);
    }
    if (!reply.ok) {
      ws.close(closeCodeOf(reply.code), closeReason(reply.message));
      return;
    }
    ws.send(toBinary(HeartbeatResponseSchema, create(HeartbeatResponseSchema, reply.value)));
    // The token was checked when the socket opened: an old socket is closed so that it is checked again.
    if (Date.now() - open.openedAt > MAX_SOCKET_AGE_MS) ws.close(1000, "reopen: the relay token is checked again");
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    completeClose(ws, code, reason);
    await this.socketEnded(ws);
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    await this.socketEnded(ws);
  }

  /**
   * The relay's socket is gone: unless another is open or the relay is back
   * within CLOSE_GRACE_MS, the lease ends then (a relay that crashed is
   * withdrawn in about a second). Kept on record, so an eviction meanwhile
   * neither forgets nor delays it.
   */
  private socketEnded(ws: WebSocket): Promise<void> {
    return this.serial(async () => {
      if (this.sockets.open(ws).length > 0) return;
      // HTTP beats from before the socket opened (the edge's first) were superseded by it;
      // only those since (the edge fell back) keep the lease now.
      if (this.beatAt !== null && this.beatAt <= this.sockets.of(ws).openedAt) this.beatAt = null;
      const lease = this.lease(ws);
      const now = Date.now();
      // The stored expiry is behind for a socket held longer than a TTL (its pings are not
      // written): the closing socket's last ping kept the lease until now, unless it lapsed.
      const heard = lease?.stateLost ? 0 : this.heardUntil(this.sockets.heardAt(ws));
      if (!lease) return;
      if (Math.max(lease.expiresAt, heard) <= now) {
        // Silent past its deadline, the check not run yet (its clock may be late): lapse now,
        // with the close on record so that the restart grace does not apply.
        if (!lease.stateLost) {
          this.sql.exec(RELAY_SQL.leaseClosed, now, now);
          await armAlarm(this.ctx.storage, now);
        }
        return;
      }
      // Heartbeats over HTTP (an edge falling back) keep it as usual: they are in beatAt.
      this.sql.exec(RELAY_SQL.leaseClosed, now + CLOSE_GRACE_MS, now);
      await armAlarm(this.ctx.storage, Math.max(now + CLOSE_GRACE_MS, this.heardUntil(this.beatAt)));
    });
  }

  /**
   * The relay leaves: its rows go from every scope at once. `epoch` (the
   * caller's header) must be the current one if given: an old process shutting
   * down after its successor started must not drop the successor's state.
   */
  shutdown(epoch?: string): Promise<number> {
    return this.serial(async () => {
      const lease = this.lease();
      if (!lease || (epoch !== undefined && epoch !== lease.epoch)) return 0;
      // A later heartbeat of the same epoch (the process did not exit) must re-register.
      this.sql.exec(RELAY_SQL.stateLostMark);
      this.beatAt = null;
      const removed = await this.purgeAll(lease.url);
      this.sql.exec(RELAY_SQL.leaseExpiresPut, Date.now());
      this.sql.exec(RELAY_SQL.activityPut, null);
      await this.ctx.storage.deleteAlarm();
      this.sockets.closeAll(1000, "the relay shut down");
      await this.noteNow();
      return removed;
    });
  }

  /**
   * An operator revoked this relay's tokens made up to `beforeMs`: from now on
   * they open no lease here (heartbeats and first writes in a scope are
   * refused), and the relay's rows go from every scope, as on Shutdown. A
   * scope that cannot be reached now is purged by the alarm, as on a lapse.
   */
  revoke(beforeMs: number): Promise<Revoked> {
    return this.serial(async () => {
      this.sql.exec(RELAY_SQL.revocationPut, beforeMs);
      this.revokedBefore = Math.max(this.revokedBefore ?? beforeMs, beforeMs);
      this.sockets.closeAll(closeCodeOf(Code.Unauthenticated), "the relay's token was revoked");
      const lease = this.lease();
      if (!lease) return { removed: 0, purgePending: false };
      // A relay back with a new token must re-register (its heartbeat answers state_lost).
      this.sql.exec(RELAY_SQL.stateLostMark);
      const now = Date.now();
      this.beatAt = null;
      this.sql.exec(RELAY_SQL.leaseExpiresPut, Math.min(lease.expiresAt, now));
      let removed = 0;
      let purgePending = false;
      try {
        removed = await this.purgeAll(lease.url);
        await this.ctx.storage.deleteAlarm();
      } catch (err) {
        // The lease has ended: the alarm's lapse path purges what is left.
        console.warn(`relay object: revocation purge incomplete, retried in ${PURGE_RETRY_MS} ms: ${String(err)}`);
        purgePending = true;
        await armAlarm(this.ctx.storage, now + PURGE_RETRY_MS);
      }
      await this.noteNow();
      return { removed, purgePending };
    });
  }

  view(): LeaseView | null {
    const lease = this.lease();
    if (!lease) return null;
    const { url, epoch, addrs, versions, expiresAt, lastBeatAt } = lease;
    return { url, epoch, addrs, versions, expiresAt, lastBeatAt, alive: expiresAt > Date.now(), scopes: this.scopeNames() };
  }

  async alarm(): Promise<void> {
    countAlarm();
    await this.serial(() => this.review("alarm"));
  }

  /**
   * The relay's lease clock (objects/lease-clock.ts) looks in: what the alarm
   * does. Answers when to look again while the socket holds the lease, or null
   * when this object's own alarm takes over or the lease ended.
   */
  checkLease(): Promise<number | null> {
    return this.serial(() => this.review("clock"));
  }

  /** Keeps an open lease, lapses an expired one; when `by` is to look again (null: not). */
  private async review(by: "alarm" | "clock"): Promise<number | null> {
    const lease = this.lease();
    if (!lease) return null;
    if (this.purgePending()) await this.purgeStale(lease.url, lease.epoch);
    const now = Date.now();
    if (lease.expiresAt > now) {
      // Heartbeats since the last write extended the lease: put it on record once, here
      // (the socket's pings need not be: the runtime keeps their time).
      const beatExpiry = this.heardUntil(this.beatAt);
      if (beatExpiry > lease.storedExpiresAt) this.sql.exec(RELAY_SQL.leaseBeatPut, beatExpiry, this.beatAt);
      return this.lookAgain(lease.url, this.purgePending() ? now + PURGE_RETRY_MS : lease.expiresAt, by);
    }
    const earliest = this.startedAt + leaseSettings(this.env).leaseTtlMs;
    // The grace is for a runtime that restarted (relays could not reach it),
    // not for a relay whose socket closed or went silent while it ran.
    if (now < earliest && lease.closedAt === null && !lease.stateLost && this.sockets.open().length === 0) {
      // Just started: the relay's heartbeats may have had nowhere to go.
      this.sql.exec(RELAY_SQL.leaseExpiresPut, earliest);
      await armAlarm(this.ctx.storage, earliest);
      return null;
    }
    // Lapsed. Marked first: even a partial purge loses state the relay must re-register.
    this.sql.exec(RELAY_SQL.stateLostMark);
    this.beatAt = null;
    this.sockets.closeAll(closeCodeOf(Code.DeadlineExceeded), "lease lapsed: the relay was not heard for a lease TTL");
    // What it reported pulling ends with the lease.
    this.sql.exec(RELAY_SQL.activityPut, null);
    try {
      await this.purgeAll(lease.url);
    } catch (err) {
      // The runtime retries a throwing alarm only a few times: retry here until every scope is purged.
      console.warn(`relay object: lapse purge incomplete, retried in ${PURGE_RETRY_MS} ms: ${String(err)}`);
      await armAlarm(this.ctx.storage, Date.now() + PURGE_RETRY_MS);
      return null;
    }
    await this.noteNow();
    return null;
  }

  /**
   * The next look at an open lease, at `at`: by the relay's lease clock while
   * an open socket holds the lease and nothing is to retry (one clock alarm
   * serves many relays), otherwise by this object's own alarm. Null when the
   * clock is not to look again.
   */
  private async lookAgain(url: string, at: number, by: "alarm" | "clock"): Promise<number | null> {
    if (this.sockets.open().length > 0 && !this.purgePending()) {
      if (by === "clock") return at;
      try {
        await bounded(leaseClockStub(this.env, leaseClockOf(this.env, url)).watch(url, at), OBJECT_CALL_TIMEOUT_MS, "lease clock");
        return null;
      } catch (err) {
        console.warn(`relay object: lease clock not reached, watching by alarm: ${String(err)}`);
      }
    }
    await armAlarm(this.ctx.storage, at);
    return null;
  }

  // ---- internals -----------------------------------------------------------

  /**
   * Renews the lease (a heartbeat always; any call when the lease is not open
   * or a new epoch starts) and applies an epoch change: from "" (unknown) it
   * is adopted, rows kept; otherwise the old epoch is retired and its rows go.
   * Addresses and versions the call did not name stay as they were.
   */
  private async touch(
    url: string,
    epoch: string | undefined,
    said: { addrs?: string[]; versions?: string[] },
    beat: boolean,
  ): Promise<{ lease: Enlisted; changed: boolean }> {
    const now = Date.now();
    const { leaseTtlMs } = leaseSettings(this.env);
    const current = this.lease();
    const { addrs, versions } = said;
    const next = {
      epoch: epoch ?? current?.epoch ?? "",
      addrs: addrs ?? current?.addrs ?? [],
      versions: versions ?? current?.versions ?? [],
    };
    const newEpoch = current !== undefined && current.epoch !== next.epoch;
    const renew = beat || newEpoch || current === undefined || current.expiresAt <= now;
    const expiresAt = renew ? now + leaseTtlMs : current.expiresAt;
    // Lost state belongs to an epoch: a new process starts with nothing to re-register
    // (an unknown relay is told once, see heartbeat). A write never clears it.
    const stateLost = current === undefined ? !beat : newEpoch && current.epoch !== "" ? false : current.stateLost;
    this.sql.exec(
      RELAY_SQL.leasePut,
      url,
      next.epoch,
      JSON.stringify(next.addrs),
      JSON.stringify(next.versions),
      expiresAt,
      beat ? now : null,
      stateLost ? 1 : 0,
    );
    const addrsChanged = current !== undefined && addrs !== undefined && JSON.stringify(current.addrs) !== JSON.stringify(addrs);
    const versionsChanged =
      current !== undefined && versions !== undefined && JSON.stringify(current.versions) !== JSON.stringify(versions);
    // What the directory must hear of at once: the relay (re)appeared, or changed epoch, addresses or versions.
    const changed = current === undefined || current.expiresAt <= now || newEpoch || addrsChanged || versionsChanged;
    // A purge still to retry keeps its earlier alarm.
    if (renew) await armAlarm(this.ctx.storage, this.purgePending() ? Math.min(expiresAt, now + PURGE_RETRY_MS) : expiresAt);
    if (current && newEpoch && current.epoch === "") {
      // Rows written before the relay named its epoch belong to this life.
      await this.eachScope((s) => s.adoptEpoch(url, next.epoch));
    } else if (current && newEpoch) {
      this.retire(current.epoch);
      // An old process still pinging must not keep the new life's lease.
      this.sockets.closeAll(closeCodeOf(Code.FailedPrecondition), "this relay restarted: a newer epoch holds the lease", next.epoch);
      await this.purgeStale(url, next.epoch);
    } else if (addrsChanged || versionsChanged) {
      await this.eachScope((s) => s.updateRelay(url, next.addrs, next.versions));
    }
    return { lease: { ...next, expiresAt }, changed };
  }

  /** Every scope drops the relay's rows of any epoch but `keep`; a failure is retried by the alarm. */
  private async purgeStale(url: string, keep: string): Promise<void> {
    const failed = await this.eachScope((s) => s.purgeRelay(url, keep));
    if (failed === 0) this.sql.exec(RELAY_SQL.retiredPurged);
    else await armAlarm(this.ctx.storage, Date.now() + PURGE_RETRY_MS);
  }

  /** Every scope drops all the relay's rows; scopes are forgotten once purged. Throws if one failed. */
  private async purgeAll(url: string): Promise<number> {
    const names = this.scopeNames();
    const results = await Promise.allSettled(names.map((s) => this.scopeCall(s, "purge", (o) => o.purgeRelay(url))));
    let removed = 0;
    const failures: unknown[] = [];
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        failures.push(r.reason);
      } else {
        removed += r.value;
        this.sql.exec(RELAY_SQL.scopeDelete, names[i]);
      }
    });
    if (failures.length > 0) {
      throw new Error(`relay ${url}: ${failures.length} of ${names.length} scopes not purged: ${String(failures[0])}`);
    }
    this.sql.exec(RELAY_SQL.retiredPurged);
    return removed;
  }

  /** Calls every scope the relay wrote to; returns how many calls failed (logged). */
  private async eachScope(call: (scope: ScopeStub) => Promise<unknown>): Promise<number> {
    const names = this.scopeNames();
    const results = await Promise.allSettled(names.map((s) => this.scopeCall(s, "call", call)));
    const failed = results.filter((r) => r.status === "rejected");
    for (const f of failed) console.warn(`relay object: a scope call failed: ${String((f as PromiseRejectedResult).reason)}`);
    return failed.length;
  }

  private refuseRevoked(url: string, issuedAtMs: number): Outcome<never> | null {
    if (this.revokedBefore === null || issuedAtMs > this.revokedBefore) return null;
    return fail(Code.Unauthenticated, revokedMessage(url, this.revokedBefore));
  }

  private refuseRetired(epoch: string | undefined): Outcome<never> | null {
    if (epoch === undefined || this.sql.exec(RELAY_SQL.retiredFind, epoch).toArray().length === 0) return null;
    return fail(
      Code.FailedPrecondition,
      `epoch ${epoch} of this relay was replaced by a newer one (the relay restarted); calls from the old process are refused`,
    );
  }

  private retire(epoch: string): void {
    this.sql.exec(RELAY_SQL.retire, epoch, Date.now());
    this.sql.exec(RELAY_SQL.retiredTrim, RETIRED_KEPT);
  }

  private purgePending(): boolean {
    return this.sql.exec(RELAY_SQL.purgePending).toArray().length > 0;
  }

  /** Serialises the object's calls (they await other objects, so they would interleave). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Until when a relay last heard at `at` keeps its lease (0: never heard). */
  private heardUntil(at: number | null): number {
    return at === null ? 0 : at + leaseSettings(this.env).leaseTtlMs;
  }

  /** The lease as on record, extended by the beats held in memory and the open socket (but `except`). */
  private lease(except?: WebSocket): Lease | undefined {
    const row = this.sql.exec(RELAY_SQL.leaseGet).toArray()[0];
    if (!row) return undefined;
    const heard = Math.max(this.beatAt ?? 0, this.sockets.seenAt(except) ?? 0);
    const beatExpiry = this.heardUntil(heard || null);
    return {
      url: row.url as string,
      epoch: row.epoch as string,
      addrs: JSON.parse(row.addrs as string) as string[],
      versions: JSON.parse(row.versions as string) as string[],
      expiresAt: Math.max(row.expires_at as number, beatExpiry),
      storedExpiresAt: row.expires_at as number,
      lastBeatAt: heard === 0 ? (row.last_beat_at as number | null) : Math.max(heard, (row.last_beat_at as number | null) ?? 0),
      closedAt: row.closed_at as number | null,
      activityJson: row.activity as string | null,
      stateLost: row.state_lost === 1,
      activity: row.activity === null ? null : (JSON.parse(row.activity as string) as ActivityNote),
    };
  }

  // ---- the directory ---------------------------------------------------------

  /** This relay as the directory lists it, now. */
  private note(): RelayNote | undefined {
    const lease = this.lease();
    if (!lease) return undefined;
    const now = Date.now();
    const up = lease.expiresAt > now;
    return {
      url: lease.url,
      epoch: lease.epoch,
      up,
      at: now,
      addrs: lease.addrs,
      versions: lease.versions,
      // While up, in steps, so that the note changes rarely (it is told only
      // when it changed); a close, a lapse or a Shutdown tells the directory
      // at once, with the expiry as it is. On the socket the lease is renewed
      // by a beat every SOCKET_BEAT_MS.
      expiresAt: !up
        ? lease.expiresAt
        : stepUp(lease.expiresAt + (this.sockets.open().length > 0 ? SOCKET_BEAT_MS : 0), DIRECTORY_EXPIRY_STEP_MS, lease.url),
      lastBeatAt: lease.lastBeatAt,
      scopes: this.sql
        .exec(RELAY_SQL.scopeNamesFirst, SCOPES_NOTED)
        .toArray()
        .map((r) => r.name as string),
      scopeCount: this.sql.exec(RELAY_SQL.scopeCount).one().n as number,
      activity: lease.expiresAt > now ? lease.activity : null,
    };
  }

  /**
   * Asks the relay's shard for the peer list. On a refresh that is `due`,
   * first tells the directory of this relay if that changed (awaited: a relay
   * that just appeared is in the next copy its peers ask for). If the shard
   * cannot answer, the relay keeps the list it holds.
   */
  private async askPeers(url: string, now: number, due: boolean, ask: PeerAsk): Promise<PeerAnswer> {
    if (due) {
      const note = this.note();
      if (note && noteKey(note) !== this.notedKey) await this.noteNow();
      // Retried after a refresh period, not on every beat: a down shard delays at most one beat in that time.
      this.refreshedAt = now;
    }
    try {
      const shard = peerShardStub(this.env, peerShardOf(this.env, url));
      const answer = await bounded(shard.peers(ask), OBJECT_CALL_TIMEOUT_MS, "peer shard");
      this.peersVersion = answer.version;
      this.peersTruncated = answer.truncated;
      if (!ask.inParts) this.wholeList = answer.kind === "list" ? answer : this.wholeList;
      return answer;
    } catch (err) {
      this.askFailedAt = now;
      console.warn(`relay object: peers not refreshed, the relay keeps its list: ${String(err)}`);
      return this.keepYours(ask.known, ask.inParts);
    }
  }

  /**
   * The answer when the shard is not asked: keep the list you hold. An edge
   * that does not take parts may be older than peers_unchanged, so it gets
   * the last whole list instead, unless it holds that one.
   */
  private keepYours(known: number, inParts: boolean): PeerAnswer {
    if (!inParts && this.wholeList && known !== this.wholeList.version) return this.wholeList;
    return { kind: "unchanged", version: known, truncated: this.peersTruncated, peers: [], gone: [], more: false };
  }

  /**
   * Tells the directory the relay's state; failures are logged (the next
   * heartbeat refreshes, and the directory's own expiry ages a lapsed entry
   * out). Bounded when a caller waits on it (lapse, shutdown run in the queue).
   */
  private async noteNow(bound = true): Promise<void> {
    const note = this.note();
    if (!note) return;
    this.refreshedAt = 0;
    try {
      const call = directoryStub(this.env).noteRelay(note);
      await (bound ? bounded(call, OBJECT_CALL_TIMEOUT_MS, "directory") : call);
      const key = noteKey(note);
      if (key !== this.notedKey) this.sql.exec(LISTING_SQL.toldPut, key);
      this.notedKey = key;
    } catch (err) {
      console.warn(`relay object: directory not told of ${note.up ? "up" : "left"}: ${String(err)}`);
    }
  }

  /** noteNow, in the background, coalesced: a burst of new scopes costs at most two notes. */
  private noteInBackground(): void {
    if (this.noting) {
      this.noteAgain = true;
      return;
    }
    this.noting = (async () => {
      do {
        this.noteAgain = false;
        await this.noteNow(false);
      } while (this.noteAgain);
      this.noting = null;
    })();
  }

  private scopeNames(): string[] {
    return this.sql
      .exec(RELAY_SQL.scopeNames)
      .toArray()
      .map((r) => r.name as string);
  }

  /** A call to one scope object, bounded by OBJECT_CALL_TIMEOUT_MS. */
  private scopeCall<T>(name: string, what: string, call: (scope: ScopeStub) => Promise<T>): Promise<T> {
    return bounded(call(scopeStub(this.env, scopeFromObjectName(name))), OBJECT_CALL_TIMEOUT_MS, `scope ${name} ${what}`);
  }
}

/**
 * What of a note the directory must hear when it changes: all but its time
 * and the link counters (a link's appearing or going is heard at once, its
 * numbers with the next change).
 */
function noteKey(note: RelayNote): string {
  const links = note.activity?.upstreams.map((u) => [u.to, u.scope]) ?? null;
  return JSON.stringify([note.epoch, note.up, note.addrs, note.versions, note.expiresAt, note.scopes, note.scopeCount, links]);
}
