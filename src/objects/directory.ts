// DirectoryObject: the one list of scopes and relays, for ListScopes,
// ListRelays and the peer lists of heartbeats. A ScopeObject tells it once
// that the scope exists (in the background, DirectoryListing). A RelayObject
// notes its relay (epoch, addrs, lease expiry in 5-minute steps, scopes,
// upstream links) only when that changed: when the relay appears, changes
// epoch, addresses, scopes or links, lapses or shuts down, or its expiry
// moves to the next step. So the directory takes about one note per relay
// per 5 minutes, not one per heartbeat. Peer lists are served by the
// PEER_SHARDS peer-list shards (objects/peer-shard.ts), each asking here at
// most once a second for the changes since its copy. Liveness is the noted
// lease expiry (plus TTL/2 and one heartbeat interval of slack), so a relay
// whose "left" note was lost ages out by itself (within about 5.5 minutes). It also keeps the list of
// revoked relay tokens that isolates cache (auth/revocation.ts).
import { armAlarm, countAlarm, meteredSql } from "../metrics/billing.js";
import { DurableObject } from "cloudflare:workers";
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";
import type { ActivityNote } from "../model/activity.js";
import { type PeerRelay, PeerVersions } from "../model/peer-versions.js";
import { DIRECTORY_MIGRATIONS, DIRECTORY_SQL, LISTING_SQL } from "./directory-sql.js";
import { migrate } from "./migrations.js";
import { listedScopeName, type Scope } from "./scope-name.js";
import { fail, ok, type Outcome } from "./types.js";

/** A relay that left is listed this long after, then forgotten. */
export const RELAY_RETENTION_MS = 24 * 3600 * 1000;

/** How long past its noted lease expiry the directory still counts a relay alive: half the TTL plus one heartbeat interval. */
export function directorySlackMs(leaseTtlMs: number, intervalMs: number): number {
  return Math.floor(leaseTtlMs / 2) + intervalMs;
}

/** At most this many relays with revoked tokens (each isolate holds the list in memory). */
export const MAX_REVOKED_RELAYS = 10_000;

/** The revoked relays and their cut-offs (tokens made up to before_ms are refused), at a version. */
export interface RevocationList {
  version: number;
  entries: [url: string, beforeMs: number][];
}

/** How long a peer list made for one shard is given to the others (well under the shards' copy age). */
const PEER_LIST_REUSE_MS = 250;

/** At most this many peers in a heartbeat reply (ordered by URL); past it the answer says peers_truncated. */
export const MAX_PEERS = 20_000;

/** A relay as the directory lists it. */
export interface DirectoryRelay {
  url: string;
  epoch: string;
  /** Up and its lease (as last noted, plus slack) not expired. */
  alive: boolean;
  addrs: string[];
  /** MoQT versions it speaks (empty: never said). */
  versions: string[];
  /** The lease expiry as last noted (0 = never noted since the directory learned expiries). */
  expiresAt: number;
  lastBeatAt: number | null;
  /** The first SCOPES_NOTED of its scopes, by name; scopeCount is exact. */
  scopes: string[];
  scopeCount: number;
  firstSeenAt: number;
  changedAt: number;
  /** Its reported upstream links as last noted; null when none (or not alive). */
  activity: ActivityNote | null;
}

/** What a RelayObject tells the directory about its relay: the whole entry, as of `at`. */
export interface RelayNote {
  url: string;
  epoch: string;
  /** Lease open (false: lapsed or shut down). */
  up: boolean;
  at: number;
  addrs: string[];
  expiresAt: number;
  lastBeatAt: number | null;
  scopes: string[];
  scopeCount: number;
  /** HeartbeatRequest.activity as the relay object keeps it; null once the lease ended. Optional for notes from older code. */
  activity?: ActivityNote | null;
  /** The MoQT versions it speaks (Moq-Relay-Versions); optional for notes from older code. */
  versions?: string[];
}

/** Every live relay (the first MAX_PEERS by URL), named by a version that changes with the list. */
export interface PeerList {
  version: number;
  peers: PeerRelay[];
  truncated: boolean;
}

/**
 * The list for a shard that holds version `known`: nothing ("unchanged"),
 * the changes from `known` ("delta": `peers` new or changed, `gone` left), or
 * the whole list ("list").
 */
export interface PeerListUpdate {
  kind: "unchanged" | "delta" | "list";
  version: number;
  truncated: boolean;
  peers: PeerRelay[];
  gone: string[];
}

export class DirectoryObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /** The prune alarm as last set or read; undefined = not read yet. */
  private pruneAt: number | null | undefined;
  /** The last peer list made and the note count it was begun at, reused for PEER_LIST_REUSE_MS (memory only). */
  private peerList: { at: number; max: number; notes: number; list: PeerList } | null = null;
  /** Notes that changed a row, counted in memory: a list made across one is not reused. */
  private notes = 0;
  /** The lists made lately, for the changes since a shard's version (memory only). */
  private versions = new PeerVersions();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, DIRECTORY_MIGRATIONS);
  }

  /**
   * A relay's entry may be trusted this long past its noted lease expiry: a
   * relay that beats regularly notes again before then (every peerRefreshMs,
   * half the TTL, at a heartbeat), even when one refresh failed and is retried
   * a refresh period later (docs/lifetimes.md, "Peers").
   */
  private liveSince(now: number): number {
    const { leaseTtlMs, intervalMs } = leaseSettings(this.env);
    return now - directorySlackMs(leaseTtlMs, intervalMs);
  }

  noteScope(scope: Scope, at: number): void {
    this.sql.exec(DIRECTORY_SQL.scopeNote, listedScopeName(scope), at);
  }

  /**
   * The relay's state as of `note.at`. Notes may arrive out of order (some
   * are background calls): an older note than the stored one is ignored.
   */
  async noteRelay(note: RelayNote): Promise<void> {
    const written = this.sql.exec(
      DIRECTORY_SQL.relayNote,
      note.url,
      note.epoch,
      note.up ? 1 : 0,
      note.at,
      note.at,
      JSON.stringify(note.addrs),
      note.expiresAt,
      note.lastBeatAt,
      JSON.stringify(note.scopes),
      note.scopeCount,
      note.activity ? JSON.stringify(note.activity) : null,
      JSON.stringify(note.versions ?? []),
    ).rowsWritten;
    // A list begun before this note must not be given out after it (fresh peers).
    if (written > 0) this.notes++;
    await this.schedulePrune();
  }

  /**
   * The live relays, for the peer-list shards (objects/peer-shard.ts), which
   * each ask at most once a second. Made at most every PEER_LIST_REUSE_MS and
   * reused meanwhile, so that all shards asking cost one scan and one hash.
   */
  async livePeers(max = MAX_PEERS): Promise<PeerList> {
    const now = Date.now();
    const made = this.peerList;
    // Reused only if no note changed a row since it was begun (fresh peers see every note).
    if (made && made.notes === this.notes && made.max === max && now - made.at < PEER_LIST_REUSE_MS && made.at <= now) {
      return made.list;
    }
    const notes = this.notes;
    const list = await this.makePeerList(now, max);
    this.peerList = { at: now, max, notes, list };
    return list;
  }

  /**
   * The live relays for a peer-list shard holding version `known`: nothing
   * when that is current, the changes when they are fewer than half the
   * list, else the whole list. A steady network costs a shard's ask a few
   * bytes, not the list.
   */
  async peerListSince(known: number): Promise<PeerListUpdate> {
    const list = await this.livePeers();
    const update = { version: list.version, truncated: list.truncated, peers: [], gone: [] };
    if (list.version === known) return { ...update, kind: "unchanged" };
    const delta = known === 0 ? undefined : this.versions.delta(known, list.version, "");
    if (delta && delta.changed.length + delta.gone.length < list.peers.length / 2) {
      return { ...update, kind: "delta", peers: delta.changed, gone: delta.gone };
    }
    return { ...update, kind: "list", peers: list.peers };
  }

  private async makePeerList(now: number, max: number): Promise<PeerList> {
    const rows = this.sql.exec(DIRECTORY_SQL.livePeers, this.liveSince(now), max + 1).toArray();
    const peers = rows.slice(0, max).map((r) => ({ url: r.url as string, addrs: JSON.parse(r.addrs as string) as string[] }));
    const version = await listVersion(peers);
    return { version, peers: this.versions.keep(version, peers), truncated: rows.length > max };
  }

  listScopes(limit: number, after: string | undefined): { names: string[]; more: boolean; total: number } {
    const cursor =
      after === undefined
        ? this.sql.exec(DIRECTORY_SQL.scopesFirst, limit + 1)
        : this.sql.exec(DIRECTORY_SQL.scopesAfter, after, limit + 1);
    const names = cursor.toArray().map((r) => r.name as string);
    const total = this.sql.exec(DIRECTORY_SQL.scopeCount).one().n as number;
    return { names: names.slice(0, limit), more: names.length > limit, total };
  }

  /** A page of relays by URL, and how many relays are listed in all; their activity only when asked (GetNetwork). */
  listRelays(limit: number, after: string | undefined, withActivity = false): { relays: DirectoryRelay[]; more: boolean; total: number } {
    const cursor =
      after === undefined
        ? this.sql.exec(DIRECTORY_SQL.relaysFirst, limit + 1)
        : this.sql.exec(DIRECTORY_SQL.relaysAfter, after, limit + 1);
    const liveSince = this.liveSince(Date.now());
    const relays = cursor.toArray().map((r) => {
      const alive = r.up === 1 && (r.expires_at as number) > liveSince;
      return {
        url: r.url as string,
        epoch: r.epoch as string,
        alive,
        addrs: JSON.parse(r.addrs as string) as string[],
        versions: JSON.parse(r.versions as string) as string[],
        expiresAt: r.expires_at as number,
        lastBeatAt: r.last_beat_at as number | null,
        scopes: JSON.parse(r.scopes as string) as string[],
        scopeCount: r.scope_count as number,
        firstSeenAt: r.first_seen_at as number,
        changedAt: r.changed_at as number,
        // A relay that is not alive pulls nothing, whatever it last said.
        activity: withActivity && alive && r.activity !== null ? (JSON.parse(r.activity as string) as ActivityNote) : null,
      };
    });
    const total = this.sql.exec(DIRECTORY_SQL.relayCount).one().n as number;
    return { relays: relays.slice(0, limit), more: relays.length > limit, total };
  }

  /**
   * Revokes the relay's tokens made up to `beforeMs`. RESOURCE_EXHAUSTED,
   * storing nothing, if the relay is new to a list of MAX_REVOKED_RELAYS.
   */
  revoke(url: string, beforeMs: number): Outcome<{ version: number }> {
    const known = this.sql.exec(DIRECTORY_SQL.revokedFind, url).toArray().length > 0;
    if (!known && (this.sql.exec(DIRECTORY_SQL.revokedCount).one().n as number) >= MAX_REVOKED_RELAYS) {
      return fail(
        Code.ResourceExhausted,
        `relay_url: ${MAX_REVOKED_RELAYS} relays are revoked already; rotate TOKEN_SECRET to revoke every token at once (SECURITY.md)`,
      );
    }
    this.sql.exec(DIRECTORY_SQL.revokedPut, url, beforeMs);
    this.sql.exec(DIRECTORY_SQL.revokedVersionBump);
    return ok({ version: this.revokedVersion() });
  }

  /** The revocation list, unless the caller's copy is of this version already (then null). */
  revocations(known: number): RevocationList | null {
    const version = this.revokedVersion();
    if (version === known) return null;
    const entries = this.sql
      .exec(DIRECTORY_SQL.revokedAll)
      .toArray()
      .map((r) => [r.url as string, r.before_ms as number] as [string, number]);
    return { version, entries };
  }

  private revokedVersion(): number {
    return (this.sql.exec(DIRECTORY_SQL.revokedVersionGet).toArray()[0]?.version as number | undefined) ?? 0;
  }

  /** Forgets relays that left, or whose lease ran out unnoted, more than RELAY_RETENTION_MS ago. */
  async alarm(): Promise<void> {
    countAlarm();
    this.pruneAt = null;
    const before = Date.now() - RELAY_RETENTION_MS;
    this.sql.exec(DIRECTORY_SQL.prune, before, before);
    await this.schedulePrune();
  }

  private async schedulePrune(): Promise<void> {
    const left = this.sql.exec(DIRECTORY_SQL.oldestLeft).one().t as number | null;
    const expired = this.sql.exec(DIRECTORY_SQL.oldestExpiry).one().t as number | null;
    const candidates = [left, expired].filter((t): t is number => t !== null);
    if (candidates.length === 0) return;
    const at = Math.min(...candidates) + RELAY_RETENTION_MS;
    // Known alarm time, so that a heartbeat's note costs no storage read.
    if (this.pruneAt === undefined) this.pruneAt = await this.ctx.storage.getAlarm();
    if (this.pruneAt === null || this.pruneAt > at) {
      await armAlarm(this.ctx.storage, at);
      this.pruneAt = at;
    }
  }
}

/**
 * What a Durable Object last told the directory about itself, kept in its own
 * SQLite so that it tells again only when that changes: a ScopeObject once in
 * its life, a RelayObject once per epoch and once per leaving. Telling runs in
 * the background and is retried on the next change attempt if it failed.
 */
export class DirectoryListing {
  private told: string | null;
  /** What is told or being told; a note equal to it costs nothing. */
  private wanted: string | null;

  constructor(private readonly sql: SqlStorage) {
    // Its table is created by the owner's migrations (scope-sql.ts, relay-sql.ts).
    const row = sql.exec(LISTING_SQL.toldGet).toArray()[0];
    this.told = this.wanted = (row?.told as string | undefined) ?? null;
  }

  note(state: string, tell: () => Promise<unknown>): void {
    if (state === this.wanted) return;
    this.wanted = state;
    tell()
      .then(
        () => {
          // A newer note in flight owns the outcome.
          if (this.wanted === state) {
            this.told = state;
            this.sql.exec(LISTING_SQL.toldPut, state);
          }
        },
        (err: unknown) => {
          console.warn(`directory not told '${state}': ${String(err)}`);
          // The next note retries.
          if (this.wanted === state) this.wanted = this.told;
        },
      )
      .catch((err: unknown) => console.warn(`directory listing not saved: ${String(err)}`));
  }
}

/** A version naming a peer list: 48 bits of its SHA-256, never 0 (0 is "no list"). */
async function listVersion(peers: PeerRelay[]): Promise<number> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(peers))));
  let v = 0;
  for (let i = 0; i < 6; i++) v = v * 256 + digest[i];
  return v === 0 ? 1 : v;
}
