// ScopeObject: one SQLite-backed Durable Object per scope. It owns the scope's
// namespaces, tracks, namespace subscriptions, lingering track subscribers and
// config, and answers the coordinator calls for that scope.
//
// Each write first makes sure the writing relay is enlisted here (known, with
// its current epoch); only that step may await. Everything after it runs
// synchronously, so check-then-insert sequences are atomic in the object.
import { DurableObject } from "cloudflare:workers";
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { decodeTuple, encodeTupleWithPrefixes, prefixUpperBound, toBlob } from "../model/tuple.js";
import { HOT_QUERIES, SCOPE_SCHEMA, RELAY_OWNED_TABLES } from "./scope-schema.js";
import { scopeObjectName } from "./names.js";
import { limitsOf } from "../limits.js";
import { DirectoryListing, directoryStub } from "./directory.js";
import { describeRows, type DescribeCursor, type ScopeDescription } from "./scope-describe.js";
import { fail, ok, type Origin, type Outcome, type RelayRef, type ScopeSettings, type Writer } from "./types.js";

type Row = Record<string, SqlStorageValue>;

export type { ScopeDescription };

export interface NamespaceMatch {
  fields: Uint8Array[];
  relay: RelayRef;
}

export class ScopeObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /** The meta row naming this scope exists (written by remember()). */
  private remembered = false;
  private listing: DirectoryListing;
  /**
   * Until when each relay's lease is known to be open, as its RelayObject last
   * said. In memory only: a fresh instance asks again. Writes inside that time
   * skip the RelayObject; after it, they ask it once (see enlist).
   */
  private leaseUntil = new Map<string, number>();
  /**
   * Per table and relay, an upper bound of the rows the relay holds here: set
   * by a count, raised by each insert, never lowered by deletes. While it is
   * under the quota no count is needed; at the quota, overQuota counts again.
   * In memory only: a fresh instance counts once per relay.
   */
  private heldAtMost = new Map<string, number>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCOPE_SCHEMA);
    this.listing = new DirectoryListing(this.sql);
  }

  // ---- config ------------------------------------------------------------

  getConfig(): ScopeSettings {
    const row = this.sql.exec("SELECT * FROM config WHERE id = 1").toArray()[0];
    if (!row) return { lingeringSubscribe: false };
    return {
      originFallback: (row.origin_fallback as string | null) ?? undefined,
      lingeringSubscribe: row.lingering_subscribe === 1,
      rendezvousTimeoutMs: (row.rendezvous_timeout_ms as number | null) ?? undefined,
    };
  }

  async putConfig(scope: string | null, config: ScopeSettings): Promise<void> {
    this.remember(scope);
    const previousTimeout = this.getConfig().rendezvousTimeoutMs;
    this.sql.exec(
      `INSERT INTO config (id, origin_fallback, lingering_subscribe, rendezvous_timeout_ms) VALUES (1, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET origin_fallback = excluded.origin_fallback,
         lingering_subscribe = excluded.lingering_subscribe, rendezvous_timeout_ms = excluded.rendezvous_timeout_ms`,
      config.originFallback ?? null,
      config.lingeringSubscribe ? 1 : 0,
      config.rendezvousTimeoutMs ?? null,
    );
    if (config.rendezvousTimeoutMs !== previousTimeout) await this.rebaseRendezvous(config.rendezvousTimeoutMs);
  }

  // ---- namespaces --------------------------------------------------------

  async registerNamespace(scope: string | null, w: Writer, fields: Uint8Array[]): Promise<Outcome<{ id: string }>> {
    const epoch = await this.enlist(scope, w);
    if (typeof epoch !== "string") return epoch;
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const existing = this.sql.exec("SELECT relay, id FROM namespaces WHERE ns_key = ?", key).toArray()[0];
    if (existing) {
      if (existing.relay !== w.relay) {
        return fail(Code.AlreadyExists, `namespace is already registered by ${existing.relay}`);
      }
      // The same relay retrying: success, same registration, current epoch.
      this.sql.exec("UPDATE namespaces SET epoch = ? WHERE ns_key = ?", epoch, key);
      return ok({ id: existing.id as string });
    }
    const full = this.overQuota("namespaces", w.relay);
    if (full) return full;
    const id = crypto.randomUUID();
    this.sql.exec(
      "INSERT INTO namespaces (ns_key, relay, epoch, id, created_at) VALUES (?, ?, ?, ?, ?)",
      key, w.relay, epoch, id, Date.now(),
    );
    return ok({ id });
  }

  unregisterNamespace(relay: string, fields: Uint8Array[]): Outcome<object> {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const existing = this.sql.exec("SELECT relay FROM namespaces WHERE ns_key = ?", key).toArray()[0];
    if (existing && existing.relay !== relay) {
      return fail(Code.PermissionDenied, `namespace is registered by ${existing.relay}, not by the caller`);
    }
    // Unregistering what is not registered succeeds: drop handles and retries may repeat it.
    this.sql.exec("DELETE FROM namespaces WHERE ns_key = ? AND relay = ?", key, relay);
    return ok({});
  }

  /** Exact registration first, else the longest registered prefix. */
  lookup(fields: Uint8Array[]): Outcome<NamespaceMatch> {
    const { prefixes } = encodeTupleWithPrefixes(fields);
    // Registered namespaces have >= 1 field, so the empty prefix is never a candidate.
    const candidates = prefixes.slice(1).map(toBlob);
    const row = this.sql.exec(HOT_QUERIES.longestRegistered(candidates.length), ...candidates).toArray()[0];
    if (!row) return fail(Code.NotFound, "no relay has registered this namespace or a prefix of it");
    return ok({ fields: decodeTuple(new Uint8Array(row.ns_key as ArrayBuffer)), relay: this.relayRef(row.relay as string) });
  }

  // ---- tracks ------------------------------------------------------------

  async registerTrack(scope: string | null, w: Writer, fields: Uint8Array[], name: string): Promise<Outcome<{ id: string }>> {
    const epoch = await this.enlist(scope, w);
    if (typeof epoch !== "string") return epoch;
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const existing = this.sql.exec("SELECT relay, id FROM tracks WHERE ns_key = ? AND name = ?", key, name).toArray()[0];
    if (existing) {
      if (existing.relay !== w.relay) return fail(Code.AlreadyExists, `track is already registered by ${existing.relay}`);
      this.sql.exec("UPDATE tracks SET epoch = ? WHERE ns_key = ? AND name = ?", epoch, key, name);
      return ok({ id: existing.id as string });
    }
    const full = this.overQuota("tracks", w.relay);
    if (full) return full;
    const id = crypto.randomUUID();
    this.sql.exec(
      "INSERT INTO tracks (ns_key, name, relay, epoch, id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      key, name, w.relay, epoch, id, Date.now(),
    );
    return ok({ id });
  }

  unregisterTrack(relay: string, fields: Uint8Array[], name: string): Outcome<object> {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const existing = this.sql.exec("SELECT relay FROM tracks WHERE ns_key = ? AND name = ?", key, name).toArray()[0];
    if (existing && existing.relay !== relay) {
      return fail(Code.PermissionDenied, `track is registered by ${existing.relay}, not by the caller`);
    }
    this.sql.exec("DELETE FROM tracks WHERE ns_key = ? AND name = ? AND relay = ?", key, name, relay);
    return ok({});
  }

  /** Exact track registration first, else namespace routing. */
  lookupTrack(fields: Uint8Array[], name: string): Outcome<NamespaceMatch> {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const row = this.sql.exec(HOT_QUERIES.trackOwner, key, name).toArray()[0];
    if (row) return ok({ fields, relay: this.relayRef(row.relay as string) });
    return this.lookup(fields);
  }

  /** Track names under the namespace; at most `limit` of them when given. */
  listTracks(fields: Uint8Array[], limit?: number): string[] {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const cursor =
      limit === undefined ? this.sql.exec(HOT_QUERIES.tracksOf, key) : this.sql.exec(`${HOT_QUERIES.tracksOf} LIMIT ?`, key, limit);
    return cursor.toArray().map((r) => r.name as string);
  }

  // ---- namespace subscriptions ---------------------------------------------

  async subscribeNamespace(
    scope: string | null,
    w: Writer,
    prefix: Uint8Array[],
    origin: Origin,
  ): Promise<Outcome<{ id: string; upstream: RelayRef[] }>> {
    const epoch = await this.enlist(scope, w);
    if (typeof epoch !== "string") return epoch;
    const key = encodeTupleWithPrefixes(prefix).key;
    const existing = this.sql
      .exec("SELECT id FROM namespace_subscriptions WHERE prefix_key = ? AND relay = ?", toBlob(key), w.relay)
      .toArray()[0];
    if (!existing) {
      const full = this.overQuota("namespace_subscriptions", w.relay);
      if (full) return full;
    }
    const id = (existing?.id as string | undefined) ?? crypto.randomUUID();
    // Interest is recorded whatever the interface: it feeds the push path.
    this.sql.exec(
      `INSERT INTO namespace_subscriptions (prefix_key, relay, epoch, id, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (prefix_key, relay) DO UPDATE SET epoch = excluded.epoch`,
      toBlob(key), w.relay, epoch, id, Date.now(),
    );
    if (origin.internal) return ok({ id, upstream: [] });
    const hosts = this.sql
      .exec(HOT_QUERIES.hostsUnder, toBlob(key), toBlob(prefixUpperBound(key)))
      .toArray()
      .map((r) => r.relay as string);
    return ok({ id, upstream: this.excluding(hosts, w.relay, origin) });
  }

  unsubscribeNamespace(relay: string, prefix: Uint8Array[]): Outcome<object> {
    const key = toBlob(encodeTupleWithPrefixes(prefix).key);
    this.sql.exec("DELETE FROM namespace_subscriptions WHERE prefix_key = ? AND relay = ?", key, relay);
    return ok({});
  }

  /** Relays whose subscribed prefixes match the namespace, minus caller and source. */
  lookupNamespaceSubscribers(caller: string, fields: Uint8Array[], origin: Origin): RelayRef[] {
    const candidates = encodeTupleWithPrefixes(fields).prefixes.map(toBlob);
    const relays = this.sql
      .exec(HOT_QUERIES.subscribersOf(candidates.length), ...candidates)
      .toArray()
      .map((r) => r.relay as string);
    return this.excluding(relays, caller, origin);
  }

  // ---- lingering track subscriptions (rendezvous) --------------------------

  async subscribeTrack(scope: string | null, w: Writer, fields: Uint8Array[], name: string): Promise<Outcome<{ id: string }>> {
    const epoch = await this.enlist(scope, w);
    if (typeof epoch !== "string") return epoch;
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const { rendezvousTimeoutMs } = this.getConfig();
    const now = Date.now();
    const expiresAt = rendezvousTimeoutMs === undefined ? null : now + rendezvousTimeoutMs;
    const existing = this.sql
      .exec("SELECT id FROM track_subscriptions WHERE ns_key = ? AND name = ? AND relay = ?", key, name, w.relay)
      .toArray()[0];
    if (!existing) {
      const full = this.overQuota("track_subscriptions", w.relay);
      if (full) return full;
    }
    const id = (existing?.id as string | undefined) ?? crypto.randomUUID();
    // Subscribing again renews the subscription's rendezvous deadline.
    this.sql.exec(
      `INSERT INTO track_subscriptions (ns_key, name, relay, epoch, id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (ns_key, name, relay) DO UPDATE SET epoch = excluded.epoch, expires_at = excluded.expires_at`,
      key, name, w.relay, epoch, id, now, expiresAt,
    );
    if (expiresAt !== null) await this.scheduleExpiry(expiresAt);
    return ok({ id });
  }

  unsubscribeTrack(relay: string, fields: Uint8Array[], name: string): Outcome<object> {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    this.sql.exec("DELETE FROM track_subscriptions WHERE ns_key = ? AND name = ? AND relay = ?", key, name, relay);
    return ok({});
  }

  lookupTrackSubscribers(fields: Uint8Array[], name: string): RelayRef[] {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    return this.sql
      .exec(HOT_QUERIES.liveTrackSubscribers, key, name, Date.now())
      .toArray()
      .map((r) => this.relayRef(r.relay as string));
  }

  // ---- relay lifetimes -----------------------------------------------------

  /**
   * Drops the relay's rows here: all of them, or with `keep` those of every
   * epoch but `keep` (the relay's current life). Idempotent, so a late or
   * repeated purge is harmless. Returns how many rows went.
   */
  purgeRelay(relay: string, keep?: string): number {
    let removed = 0;
    for (const table of RELAY_OWNED_TABLES) {
      const cursor =
        keep === undefined
          ? this.sql.exec(HOT_QUERIES.purgeRelay(table), relay)
          : this.sql.exec(HOT_QUERIES.purgeRelayEpoch(table), relay, keep);
      removed += cursor.rowsWritten;
    }
    const row = this.sql.exec("SELECT epoch FROM relays WHERE url = ?", relay).toArray()[0];
    if (row && (keep === undefined || row.epoch !== keep)) {
      this.sql.exec("DELETE FROM relays WHERE url = ?", relay);
      this.leaseUntil.delete(relay);
    }
    return removed;
  }

  /** The relay named its epoch: rows written before, under the unknown epoch "", are that life's. */
  adoptEpoch(relay: string, epoch: string): void {
    for (const table of RELAY_OWNED_TABLES) {
      this.sql.exec(`UPDATE ${table} SET epoch = ? WHERE relay = ? AND epoch = ''`, epoch, relay);
    }
    this.sql.exec("UPDATE relays SET epoch = ? WHERE url = ? AND epoch = ''", epoch, relay);
  }

  /** New socket addresses of a relay (from its heartbeat). */
  updateRelayAddrs(relay: string, addrs: string[]): void {
    this.sql.exec("UPDATE relays SET addrs = ? WHERE url = ?", JSON.stringify(addrs), relay);
  }

  async alarm(): Promise<void> {
    const now = Date.now();
    this.sql.exec(HOT_QUERIES.expireTrackSubscriptions, now);
    const next = this.sql.exec(HOT_QUERIES.nextTrackExpiry).one().t as number | null;
    if (next !== null) await this.ctx.storage.setAlarm(next);
  }

  // ---- admin -------------------------------------------------------------

  putPath(scope: string, path: string, permissions: number): void {
    this.remember(scope);
    this.sql.exec(
      "INSERT INTO paths (path, permissions) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET permissions = excluded.permissions",
      path, permissions,
    );
  }

  deletePath(path: string): void {
    this.sql.exec("DELETE FROM paths WHERE path = ?", path);
  }

  /** One page of each list, for DescribeScope (objects/scope-describe.ts); null if never configured or written. */
  describe(limit: number, cursor: DescribeCursor): ScopeDescription | null {
    if (this.sql.exec("SELECT 1 FROM meta WHERE k = 'scope'").toArray().length === 0) return null;
    return describeRows(this.sql, this.getConfig(), limit, cursor);
  }

  // ---- internals -----------------------------------------------------------

  /**
   * Makes the relay known here with its current epoch; returns that epoch, or
   * the RelayObject's refusal. The RelayObject is asked when the relay is new
   * here, names another epoch, or its lease may have lapsed since we last
   * asked (that call reopens it): at most once per relay per lease TTL.
   */
  private async enlist(scope: string | null, w: Writer): Promise<string | Extract<Outcome<never>, { ok: false }>> {
    this.remember(scope);
    const known = this.relayRow(w.relay);
    const leaseOpen = Date.now() < (this.leaseUntil.get(w.relay) ?? 0);
    if (known && leaseOpen && (w.epoch === undefined || w.epoch === known.epoch)) return known.epoch;
    const relay = this.env.RELAYS.get(this.env.RELAYS.idFromName(w.relay));
    const lease = await relay.enlist(w.relay, scopeObjectName(scope), w.epoch);
    if (!lease.ok) return lease;
    const { epoch, addrs, expiresAt } = lease.value;
    // The RelayObject has already purged or relabelled this scope (it calls
    // every scope it knows). Rows here of another epoch are left over from a
    // call to us that failed: apply the same rule locally. Re-read, since
    // other calls ran while we awaited.
    const now = this.relayRow(w.relay);
    if (now && now.epoch !== epoch) {
      if (now.epoch === "") this.adoptEpoch(w.relay, epoch);
      else this.purgeRelay(w.relay, epoch);
    }
    this.sql.exec(
      `INSERT INTO relays (url, epoch, addrs) VALUES (?, ?, ?)
       ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, addrs = excluded.addrs`,
      w.relay, epoch, JSON.stringify(addrs),
    );
    this.leaseUntil.set(w.relay, expiresAt);
    return epoch;
  }

  /**
   * A RESOURCE_EXHAUSTED outcome if the relay already holds its quota of rows
   * in the table (src/limits.ts), else undefined. Counts over the table's
   * per-relay index, stopping at the quota, only when the in-memory bound
   * (heldAtMost) has reached the quota: a count costs about 0.1 ms per 1,000
   * rows held (docs/performance.md), a bound check nothing.
   */
  private overQuota(table: (typeof RELAY_OWNED_TABLES)[number], relay: string): Outcome<never> | undefined {
    const limits = limitsOf(this.env);
    const [max, what, field, variable] = {
      namespaces: [limits.namespacesPerRelay, "namespaces", "namespace", "MAX_NAMESPACES_PER_RELAY"],
      tracks: [limits.tracksPerRelay, "tracks", "track", "MAX_TRACKS_PER_RELAY"],
      namespace_subscriptions: [limits.subscriptionsPerRelay, "namespace subscriptions", "prefix", "MAX_SUBSCRIPTIONS_PER_RELAY"],
      track_subscriptions: [limits.subscriptionsPerRelay, "track subscriptions", "track", "MAX_SUBSCRIPTIONS_PER_RELAY"],
    }[table] as [number, string, string, string];
    // Every caller inserts one row right after a pass, so a pass raises the bound.
    const k = `${table}\u0000${relay}`;
    const bound = this.heldAtMost.get(k);
    if (bound !== undefined && bound < max) {
      this.heldAtMost.set(k, bound + 1);
      return undefined;
    }
    const held = this.sql.exec(`SELECT count(*) AS n FROM (SELECT 1 FROM ${table} WHERE relay = ? LIMIT ?)`, relay, max).one().n as number;
    this.heldAtMost.set(k, held < max ? held + 1 : held);
    if (held < max) return undefined;
    return fail(Code.ResourceExhausted, `${field}: relay ${relay} already holds ${max} ${what} in this scope, the most allowed (${variable})`);
  }

  private relayRow(url: string): { epoch: string; addrs: string[] } | undefined {
    const row = this.sql.exec("SELECT epoch, addrs FROM relays WHERE url = ?", url).toArray()[0];
    return row ? { epoch: row.epoch as string, addrs: JSON.parse(row.addrs as string) as string[] } : undefined;
  }

  private relayRef(url: string, addrs = this.relayRow(url)?.addrs ?? []): RelayRef {
    const addr = addrs[0];
    return addr === undefined ? { url } : { url, addr };
  }

  /** Deduplicates and drops the caller and the session's source peer. */
  private excluding(urls: string[], caller: string, origin: Origin): RelayRef[] {
    const sourceAuthority = origin.sourceUrl ? authority(origin.sourceUrl) : undefined;
    const out: RelayRef[] = [];
    for (const url of new Set(urls)) {
      if (url === caller || url === origin.sourceUrl) continue;
      const addrs = this.relayRow(url)?.addrs ?? [];
      if (origin.sourceAddr !== undefined && addrs.includes(origin.sourceAddr)) continue;
      // moq-rs names an internal peer https://{ip:port}: match that against addresses too.
      if (sourceAuthority !== undefined && addrs.includes(sourceAuthority)) continue;
      out.push(this.relayRef(url, addrs));
    }
    return out;
  }

  private remember(scope: string | null): void {
    // Every write calls this; the row never changes, so write it once per instance.
    if (!this.remembered) {
      this.sql.exec("INSERT OR IGNORE INTO meta (k, v) VALUES ('scope', ?)", scope === null ? "" : `=${scope}`);
      this.remembered = true;
    }
    // The admin directory hears of this scope once, in the background (a failed note is retried here).
    this.listing.note("listed", () => directoryStub(this.env).noteScope(scope ?? "", Date.now()));
  }

  /**
   * A changed rendezvous timeout restarts the clock of every lingering track
   * subscription with the new value (so lowering it takes effect now, raising
   * it expires nothing early); no timeout means they no longer expire.
   */
  private async rebaseRendezvous(timeoutMs: number | undefined): Promise<void> {
    const now = Date.now();
    this.sql.exec(HOT_QUERIES.expireTrackSubscriptions, now);
    const at = timeoutMs === undefined ? null : now + timeoutMs;
    const changed = this.sql.exec("UPDATE track_subscriptions SET expires_at = ?", at).rowsWritten;
    if (at !== null && changed > 0) await this.scheduleExpiry(at);
  }

  private async scheduleExpiry(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** For tests and the admin view: the rows of a table, raw. */
  dump(table: string): Row[] {
    if (!["namespaces", "tracks", "namespace_subscriptions", "track_subscriptions", "relays", "paths", "config"].includes(table)) {
      throw new Error(`unknown table ${table}`);
    }
    return this.sql.exec(`SELECT * FROM ${table}`).toArray();
  }

  /** EXPLAIN QUERY PLAN of a statement, for the storage tests. */
  explain(query: string, ...bindings: SqlStorageValue[]): string[] {
    return this.sql.exec(`EXPLAIN QUERY PLAN ${query}`, ...bindings).toArray().map((r) => String(r.detail));
  }
}

function authority(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}
