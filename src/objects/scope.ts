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
import { fail, ok, type Origin, type Outcome, type RelayRef, type ScopeSettings, type Writer } from "./types.js";

type Row = Record<string, SqlStorageValue>;

export interface ScopeDescription {
  config: ScopeSettings;
  paths: { path: string; permissions: number }[];
  namespaces: { fields: Uint8Array[]; relay: RelayRef; createdAt: number }[];
  tracks: { fields: Uint8Array[]; name: string; relay: RelayRef; createdAt: number }[];
  namespaceSubscriptions: { fields: Uint8Array[]; relay: RelayRef; createdAt: number }[];
  trackSubscriptions: { fields: Uint8Array[]; name: string; relay: RelayRef; createdAt: number; expiresAt?: number }[];
  /** Some list had more rows than the page. */
  more: boolean;
}

export interface NamespaceMatch {
  fields: Uint8Array[];
  relay: RelayRef;
}

export class ScopeObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCOPE_SCHEMA);
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

  putConfig(scope: string | null, config: ScopeSettings): void {
    this.remember(scope);
    this.sql.exec(
      `INSERT INTO config (id, origin_fallback, lingering_subscribe, rendezvous_timeout_ms) VALUES (1, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET origin_fallback = excluded.origin_fallback,
         lingering_subscribe = excluded.lingering_subscribe, rendezvous_timeout_ms = excluded.rendezvous_timeout_ms`,
      config.originFallback ?? null,
      config.lingeringSubscribe ? 1 : 0,
      config.rendezvousTimeoutMs ?? null,
    );
  }

  // ---- namespaces --------------------------------------------------------

  async registerNamespace(scope: string | null, w: Writer, fields: Uint8Array[]): Promise<Outcome<{ id: string }>> {
    const epoch = await this.enlist(scope, w);
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
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const existing = this.sql.exec("SELECT relay, id FROM tracks WHERE ns_key = ? AND name = ?", key, name).toArray()[0];
    if (existing) {
      if (existing.relay !== w.relay) return fail(Code.AlreadyExists, `track is already registered by ${existing.relay}`);
      this.sql.exec("UPDATE tracks SET epoch = ? WHERE ns_key = ? AND name = ?", epoch, key, name);
      return ok({ id: existing.id as string });
    }
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

  listTracks(fields: Uint8Array[]): string[] {
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    return this.sql
      .exec(HOT_QUERIES.tracksOf, key)
      .toArray()
      .map((r) => r.name as string);
  }

  // ---- namespace subscriptions ---------------------------------------------

  async subscribeNamespace(
    scope: string | null,
    w: Writer,
    prefix: Uint8Array[],
    origin: Origin,
  ): Promise<Outcome<{ id: string; upstream: RelayRef[] }>> {
    const epoch = await this.enlist(scope, w);
    const key = encodeTupleWithPrefixes(prefix).key;
    const existing = this.sql
      .exec("SELECT id FROM namespace_subscriptions WHERE prefix_key = ? AND relay = ?", toBlob(key), w.relay)
      .toArray()[0];
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
    const key = toBlob(encodeTupleWithPrefixes(fields).key);
    const { rendezvousTimeoutMs } = this.getConfig();
    const now = Date.now();
    const expiresAt = rendezvousTimeoutMs === undefined ? null : now + rendezvousTimeoutMs;
    const existing = this.sql
      .exec("SELECT id FROM track_subscriptions WHERE ns_key = ? AND name = ? AND relay = ?", key, name, w.relay)
      .toArray()[0];
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
   * Drops every row the relay owns here. With `epoch`, only rows of that epoch
   * (rows written under a newer epoch stay). Returns how many rows went.
   */
  purgeRelay(relay: string, epoch?: string): number {
    let removed = 0;
    for (const table of RELAY_OWNED_TABLES) {
      const cursor =
        epoch === undefined
          ? this.sql.exec(HOT_QUERIES.purgeRelay(table), relay)
          : this.sql.exec(HOT_QUERIES.purgeRelayEpoch(table), relay, epoch);
      removed += cursor.rowsWritten;
    }
    const row = this.sql.exec("SELECT epoch FROM relays WHERE url = ?", relay).toArray()[0];
    if (row && (epoch === undefined || row.epoch === epoch)) {
      this.sql.exec("DELETE FROM relays WHERE url = ?", relay);
    }
    return removed;
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

  /** One page of each list, for DescribeScope. Lists are ordered by key. */
  describe(limit: number, offset: number): ScopeDescription {
    const page = <T>(query: string, map: (r: Row) => T) =>
      this.sql.exec(`${query} LIMIT ? OFFSET ?`, limit + 1, offset).toArray().map(map);
    const keyFields = (v: SqlStorageValue) => decodeTuple(new Uint8Array(v as ArrayBuffer));
    const description: ScopeDescription = {
      config: this.getConfig(),
      paths: page("SELECT path, permissions FROM paths ORDER BY path", (r) => ({
        path: r.path as string,
        permissions: r.permissions as number,
      })),
      namespaces: page("SELECT ns_key, relay, created_at FROM namespaces ORDER BY ns_key", (r) => ({
        fields: keyFields(r.ns_key),
        relay: this.relayRef(r.relay as string),
        createdAt: r.created_at as number,
      })),
      tracks: page("SELECT ns_key, name, relay, created_at FROM tracks ORDER BY ns_key, name", (r) => ({
        fields: keyFields(r.ns_key),
        name: r.name as string,
        relay: this.relayRef(r.relay as string),
        createdAt: r.created_at as number,
      })),
      namespaceSubscriptions: page(
        "SELECT prefix_key, relay, created_at FROM namespace_subscriptions ORDER BY prefix_key, relay",
        (r) => ({ fields: keyFields(r.prefix_key), relay: this.relayRef(r.relay as string), createdAt: r.created_at as number }),
      ),
      trackSubscriptions: page(
        "SELECT ns_key, name, relay, created_at, expires_at FROM track_subscriptions ORDER BY ns_key, name, relay",
        (r) => ({
          fields: keyFields(r.ns_key),
          name: r.name as string,
          relay: this.relayRef(r.relay as string),
          createdAt: r.created_at as number,
          expiresAt: (r.expires_at as number | null) ?? undefined,
        }),
      ),
      more: false,
    };
    for (const list of [description.paths, description.namespaces, description.tracks,
      description.namespaceSubscriptions, description.trackSubscriptions] as unknown[][]) {
      if (list.length > limit) {
        list.length = limit;
        description.more = true;
      }
    }
    return description;
  }

  // ---- internals -----------------------------------------------------------

  /** Makes the relay known here with its current epoch; returns that epoch. */
  private async enlist(scope: string | null, w: Writer): Promise<string> {
    this.remember(scope);
    const known = this.relayRow(w.relay);
    if (known && (w.epoch === undefined || w.epoch === known.epoch)) return known.epoch;
    const relay = this.env.RELAYS.get(this.env.RELAYS.idFromName(w.relay));
    const lease = await relay.enlist(w.relay, scopeObjectName(scope), w.epoch);
    // Re-read: other calls may have run while we awaited.
    const now = this.relayRow(w.relay);
    if (now && now.epoch !== lease.epoch) this.purgeRelay(w.relay, now.epoch);
    this.sql.exec(
      `INSERT INTO relays (url, epoch, addrs) VALUES (?, ?, ?)
       ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, addrs = excluded.addrs`,
      w.relay, lease.epoch, JSON.stringify(lease.addrs),
    );
    return lease.epoch;
  }

  private relayRow(url: string): { epoch: string; addrs: string[] } | undefined {
    const row = this.sql.exec("SELECT epoch, addrs FROM relays WHERE url = ?", url).toArray()[0];
    return row ? { epoch: row.epoch as string, addrs: JSON.parse(row.addrs as string) as string[] } : undefined;
  }

  private relayRef(url: string): RelayRef {
    const addr = this.relayRow(url)?.addrs[0];
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
      out.push(this.relayRef(url));
    }
    return out;
  }

  private remember(scope: string | null): void {
    this.sql.exec("INSERT OR IGNORE INTO meta (k, v) VALUES ('scope', ?)", scope === null ? "" : `=${scope}`);
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
