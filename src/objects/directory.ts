// DirectoryObject: the one list of scopes and relays, for ListScopes,
// ListRelays and the peer lists of heartbeats. A ScopeObject tells it once
// that the scope exists (in the background, DirectoryListing). A RelayObject
// notes its relay (epoch, addrs, lease expiry, scopes) when the relay appears,
// changes epoch, addresses or scopes, lapses or shuts down, and every
// peerRefreshMs on a heartbeat, which takes the peer list in the same call.
// Liveness is the noted lease expiry (plus one heartbeat interval of slack),
// so a relay whose "left" note was lost ages out by itself.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";

/** A relay that left is listed this long after, then forgotten. */
export const RELAY_RETENTION_MS = 24 * 3600 * 1000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS scopes (
  name TEXT PRIMARY KEY,
  first_seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS relays (
  url TEXT PRIMARY KEY,
  epoch TEXT NOT NULL,
  up INTEGER NOT NULL,
  first_seen_at INTEGER NOT NULL,
  changed_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS relays_left ON relays (changed_at) WHERE up = 0;
`;

// MIGRATION: what the directory needs to list relays and peers without asking
// each RelayObject. Applied once to databases made before it (guarded by the
// presence of the expires_at column).
const MIGRATION_RELAY_STATE = [
  "ALTER TABLE relays ADD COLUMN addrs TEXT NOT NULL DEFAULT '[]'",
  "ALTER TABLE relays ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0",
  "ALTER TABLE relays ADD COLUMN last_beat_at INTEGER",
  "ALTER TABLE relays ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]'",
  "ALTER TABLE relays ADD COLUMN scope_count INTEGER NOT NULL DEFAULT 0",
  "CREATE INDEX IF NOT EXISTS relays_up ON relays (expires_at) WHERE up = 1",
];

const SQL = {
  relayColumns: "PRAGMA table_info(relays)",
  noteRelay: `INSERT INTO relays (url, epoch, up, first_seen_at, changed_at, addrs, expires_at, last_beat_at, scopes, scope_count)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, up = excluded.up, changed_at = excluded.changed_at,
         addrs = excluded.addrs, expires_at = excluded.expires_at, last_beat_at = excluded.last_beat_at,
         scopes = excluded.scopes, scope_count = excluded.scope_count
       WHERE excluded.changed_at >= relays.changed_at`,
  // Live = up and its noted lease expiry (plus slack) not yet past.
  livePeers: "SELECT url, addrs FROM relays WHERE up = 1 AND expires_at > ? AND url <> ? ORDER BY url LIMIT ?",
  relayCount: "SELECT count(*) AS n FROM relays",
  scopeCount: "SELECT count(*) AS n FROM scopes",
  relaysFirst: "SELECT * FROM relays ORDER BY url LIMIT ?",
  relaysAfter: "SELECT * FROM relays WHERE url > ? ORDER BY url LIMIT ?",
  // Relays that left, or whose lease expiry passed without a "left" note, are forgotten after the retention.
  prune: "DELETE FROM relays WHERE (up = 0 AND changed_at <= ?) OR (up = 1 AND expires_at > 0 AND expires_at <= ?)",
  oldestLeft: "SELECT min(changed_at) AS t FROM relays WHERE up = 0",
  oldestExpiry: "SELECT min(expires_at) AS t FROM relays WHERE up = 1 AND expires_at > 0",
} as const;

/** At most this many peers in a heartbeat reply (ordered by URL). */
export const MAX_PEERS = 1000;

/** A relay as the directory lists it. */
export interface DirectoryRelay {
  url: string;
  epoch: string;
  /** Up and its lease (as last noted, plus slack) not expired. */
  alive: boolean;
  addrs: string[];
  /** The lease expiry as last noted (0 = never noted since the directory learned expiries). */
  expiresAt: number;
  lastBeatAt: number | null;
  /** The first SCOPES_NOTED of its scopes, by name; scopeCount is exact. */
  scopes: string[];
  scopeCount: number;
  firstSeenAt: number;
  changedAt: number;
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
}

/** A live relay, as a heartbeat reply lists it. */
export interface PeerRelay {
  url: string;
  addrs: string[];
}

export class DirectoryObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /** The prune alarm as last set or read; undefined = not read yet. */
  private pruneAt: number | null | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    const columns = this.sql.exec(SQL.relayColumns).toArray().map((c) => c.name);
    if (!columns.includes("expires_at")) for (const step of MIGRATION_RELAY_STATE) this.sql.exec(step);
  }

  /**
   * A relay's entry may be trusted this long past its noted lease expiry: a
   * relay that beats regularly notes again before then (peerRefreshMs is half
   * the TTL), one lost heartbeat included.
   */
  private liveSince(now: number): number {
    return now - leaseSettings(this.env).intervalMs;
  }

  /** `scope` is "" for the unscoped space. */
  noteScope(scope: string, at: number): void {
    this.sql.exec("INSERT OR IGNORE INTO scopes (name, first_seen_at) VALUES (?, ?)", scope, at);
  }

  /**
   * The relay's state as of `note.at`. Notes may arrive out of order (some
   * are background calls): an older note than the stored one is ignored.
   */
  async noteRelay(note: RelayNote): Promise<void> {
    this.sql.exec(
      SQL.noteRelay,
      note.url, note.epoch, note.up ? 1 : 0, note.at, note.at, JSON.stringify(note.addrs), note.expiresAt,
      note.lastBeatAt, JSON.stringify(note.scopes), note.scopeCount,
    );
    await this.schedulePrune();
  }

  /** A heartbeat's note: records it and answers the live relays other than the noting one. */
  async beat(note: RelayNote): Promise<PeerRelay[]> {
    await this.noteRelay(note);
    return this.sql
      .exec(SQL.livePeers, this.liveSince(Date.now()), note.url, MAX_PEERS)
      .toArray()
      .map((r) => ({ url: r.url as string, addrs: JSON.parse(r.addrs as string) as string[] }));
  }

  listScopes(limit: number, after: string | undefined): { names: string[]; more: boolean; total: number } {
    const cursor =
      after === undefined
        ? this.sql.exec("SELECT name FROM scopes ORDER BY name LIMIT ?", limit + 1)
        : this.sql.exec("SELECT name FROM scopes WHERE name > ? ORDER BY name LIMIT ?", after, limit + 1);
    const names = cursor.toArray().map((r) => r.name as string);
    const total = this.sql.exec(SQL.scopeCount).one().n as number;
    return { names: names.slice(0, limit), more: names.length > limit, total };
  }

  /** A page of relays by URL, and how many relays are listed in all. */
  listRelays(limit: number, after: string | undefined): { relays: DirectoryRelay[]; more: boolean; total: number } {
    const cursor = after === undefined ? this.sql.exec(SQL.relaysFirst, limit + 1) : this.sql.exec(SQL.relaysAfter, after, limit + 1);
    const liveSince = this.liveSince(Date.now());
    const relays = cursor.toArray().map((r) => ({
      url: r.url as string,
      epoch: r.epoch as string,
      alive: r.up === 1 && (r.expires_at as number) > liveSince,
      addrs: JSON.parse(r.addrs as string) as string[],
      expiresAt: r.expires_at as number,
      lastBeatAt: r.last_beat_at as number | null,
      scopes: JSON.parse(r.scopes as string) as string[],
      scopeCount: r.scope_count as number,
      firstSeenAt: r.first_seen_at as number,
      changedAt: r.changed_at as number,
    }));
    const total = this.sql.exec(SQL.relayCount).one().n as number;
    return { relays: relays.slice(0, limit), more: relays.length > limit, total };
  }

  /** Forgets relays that left, or whose lease ran out unnoted, more than RELAY_RETENTION_MS ago. */
  async alarm(): Promise<void> {
    this.pruneAt = null;
    const before = Date.now() - RELAY_RETENTION_MS;
    this.sql.exec(SQL.prune, before, before);
    await this.schedulePrune();
  }

  private async schedulePrune(): Promise<void> {
    const left = this.sql.exec(SQL.oldestLeft).one().t as number | null;
    const expired = this.sql.exec(SQL.oldestExpiry).one().t as number | null;
    const candidates = [left, expired].filter((t): t is number => t !== null);
    if (candidates.length === 0) return;
    const at = Math.min(...candidates) + RELAY_RETENTION_MS;
    // Known alarm time, so that a heartbeat's note costs no storage read.
    if (this.pruneAt === undefined) this.pruneAt = await this.ctx.storage.getAlarm();
    if (this.pruneAt === null || this.pruneAt > at) {
      await this.ctx.storage.setAlarm(at);
      this.pruneAt = at;
    }
  }
}

export function directoryStub(env: Env) {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName("directory"));
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
    sql.exec("CREATE TABLE IF NOT EXISTS directory_listing (id INTEGER PRIMARY KEY CHECK (id = 1), told TEXT NOT NULL)");
    const row = sql.exec("SELECT told FROM directory_listing WHERE id = 1").toArray()[0];
    this.told = this.wanted = (row?.told as string | undefined) ?? null;
  }

  note(state: string, tell: () => Promise<unknown>): void {
    if (state === this.wanted) return;
    this.wanted = state;
    tell().then(
      () => {
        // A newer note in flight owns the outcome.
        if (this.wanted === state) {
          this.told = state;
          this.sql.exec(
            "INSERT INTO directory_listing (id, told) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET told = excluded.told",
            state,
          );
        }
      },
      (err: unknown) => {
        console.warn(`directory not told '${state}': ${String(err)}`);
        // The next note retries.
        if (this.wanted === state) this.wanted = this.told;
      },
    ).catch((err: unknown) => console.warn(`directory listing not saved: ${String(err)}`));
  }
}
