// ScopeObject: one SQLite-backed Durable Object per scope. It owns the scope's
// namespaces, tracks, namespace subscriptions, lingering track subscribers and
// config, and answers the coordinator calls for that scope; relays watching
// the scope hear of every change that can alter an answer (watch/root.ts). Its
// SQL is in scope-sql.ts.
//
// A write (a claim: register or subscribe) may await one thing, the writing
// relay's RelayObject (see lease); everything after runs synchronously, so
// check-then-insert sequences are atomic in the object. A refused claim stores
// nothing and records nothing here (not the relay in `relays`, not the scope in
// meta or the directory); one refused because another relay holds the key does
// not ask the RelayObject either. (A claim refused after asking, over quota or
// losing a race, leaves the scope in that relay's list: harmless, its purges
// are idempotent.)
import { armAlarm, countAlarm, meteredSql } from "../metrics/billing.js";
import { DurableObject } from "cloudflare:workers";
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { decodeTuple, encodeTupleWithPrefixes, fieldEnds, prefixUpperBound, toBlob } from "../model/tuple.js";
import { setBounded } from "../auth/bounded-cache.js";
import { limitsOf } from "../limits.js";
import { DirectoryListing } from "./directory.js";
import { migrate } from "./migrations.js";
import type { Enlisted } from "./relay.js";
import { type Scope, scopeObjectName } from "./scope-name.js";
import { describeRows, type DescribeCursor, type ScopeDescription } from "./scope-describe.js";
import { OWNED_SQL, OWNED_TABLES, type OwnedTable, RELAY_OWNED_TABLES, SCOPE_MIGRATIONS, SCOPE_SQL } from "./scope-sql.js";
import { bounded, OBJECT_CALL_TIMEOUT_MS } from "./bounded.js";
import { directoryStub, relayStub, watchBranchStub } from "./stubs.js";
import type { Invalidation } from "../watch/frames.js";
import { type BranchPort, WATCH_RECHECK_MS, WatchRoot } from "../watch/root.js";
import { fail, ok, type Origin, type Outcome, type RelayRef, type ScopeSettings, type RelayIdentity } from "./types.js";
import { speakTogether } from "../model/moqt-version.js";
import { type OperatorPolicy, type PolicyKey, skewOf, ttlOf } from "../model/auth-policy.js";
import { AuthLimit } from "../gen/moqworker/v1/coordinator_pb.js";
import { ScopeKeys } from "./scope-keys.js";

export type { ScopeDescription };

type Refusal = Extract<Outcome<never>, { ok: false }>;

/** The writing relay's lease as this object last heard it; `asked`: just now, from its RelayObject. */
type Lease = Enlisted & { asked: boolean };

const nsKey = (fields: Uint8Array[]) => toBlob(encodeTupleWithPrefixes(fields).key);

/** heldAtMost's key of a relay's rows in a table. */
const heldKey = (table: OwnedTable, relay: string) => `${table}\u0000${relay}`;

/**
 * A namespace's encoded tuple key (model/tuple.ts), made by the Worker. The
 * hot calls (register, lookup) take it instead of the fields: one small
 * buffer is cheaper to pass through a Durable Object call than an array of
 * them, and the object needs the key anyway.
 */
export type TupleKey = Uint8Array;

/**
 * A Lookup's answer: the relay, and how many of the asked namespace's fields
 * its registration covers (the registered namespace is that prefix of the
 * asked one). Flat, with no fields, so it crosses the call as one small object.
 */
export interface RouteMatch extends RelayRef {
  depth: number;
  /**
   * Set when the host shares no MoQT version with the asking relay: the MoQT
   * versions it speaks. The route exists but cannot be used (an answer of
   * NOT_FOUND, saying why).
   */
  otherDraft?: string[];
}

interface RelayRow {
  epoch: string;
  addrs: string[];
  versions: string[];
}

/** Relay rows kept in memory per scope object (a row is ~100 bytes). */
const MAX_CACHED_RELAY_ROWS = 4096;

export class ScopeObject extends DurableObject<Env> {
  private sql: SqlStorage;
  /** The meta row naming this scope exists (written by remember()). */
  private remembered = false;
  private listing: DirectoryListing;
  /**
   * Until when each relay's lease is known to be open, as its RelayObject last
   * said. In memory only: a fresh instance asks again. Writes inside that time
   * skip the RelayObject; after it, they ask it once (see lease).
   */
  private leaseUntil = new Map<string, number>();
  /**
   * Per table and relay, an upper bound of the rows the relay holds here: set
   * by a count, raised by each claim that may insert (renewals too), never
   * lowered by deletes. While it is under the quota no count is needed; at
   * the quota, overQuota counts again. In memory only: a fresh instance
   * counts once per relay.
   */
  private heldAtMost = new Map<string, number>();
  /**
   * The relays rows as last read (null: no row), so a lookup answer does not
   * read and parse its relay's row each time. Every write to the table drops
   * the relay's entry; only reads fill it. Bounded.
   */
  private relayRows = new Map<string, RelayRow | null>();
  /** The root of the scope's watch channel: its sequence, and the branches holding relays' sockets. */
  private watch: WatchRoot;
  /** The Worker's signing keys of the scope's token policy. */
  private keys: ScopeKeys;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, SCOPE_MIGRATIONS);
    this.listing = new DirectoryListing(this.sql);
    this.watch = new WatchRoot(this.sql, branchPort(env), () => {
      this.scheduleExpiry(Date.now() + WATCH_RECHECK_MS).catch((err: unknown) =>
        console.warn(`scope: watch recheck not armed: ${String(err)}`),
      );
    });
    this.keys = new ScopeKeys(this.sql);
  }

  // ---- watch channel -------------------------------------------------------

  /** A branch of the watch channel (watch/branch.ts) asks for every change from now on. */
  attachWatchBranch(name: string, token: string): void {
    this.watch.attach(name, token);
  }

  // ---- config ------------------------------------------------------------

  /** The config as relays get it: the token policy with the Worker's keys joined, newest first. */
  getConfig(): ScopeSettings {
    const row = this.sql.exec(SCOPE_SQL.configGet).toArray()[0];
    if (!row) return { lingeringSubscribe: false };
    const operator = this.operatorPolicy(row);
    return {
      originFallback: (row.origin_fallback as string | null) ?? undefined,
      lingeringSubscribe: row.lingering_subscribe === 1,
      rendezvousTimeoutMs: (row.rendezvous_timeout_ms as number | null) ?? undefined,
      auth: operator && {
        ...operator,
        keys: [...this.workerKeys(operator), ...operator.keys].sort((a, b) => b.addedAtMs - a.addedAtMs),
      },
    };
  }

  /**
   * Replaces the config; `config.auth` is the operator's part of the policy,
   * checked by the caller (model/auth-policy.ts) against workerKids(). Refused
   * if a key made since breaks the budget or a kid.
   */
  async putConfig(scope: Scope, config: ScopeSettings): Promise<Outcome<object>> {
    if (config.auth) {
      const workers = this.workerKids();
      const total = config.auth.keys.length + workers.length;
      if (total > AuthLimit.MAX_KEYS) {
        return fail(Code.FailedPrecondition, `config.auth.keys: the policy would hold ${total} keys; at most ${AuthLimit.MAX_KEYS}`);
      }
      // Retiring keys leave by themselves: the policy keeps one that stays.
      if (config.auth.keys.length + this.keys.active().length === 0) {
        return fail(
          Code.InvalidArgument,
          "config.auth.keys: must hold at least 1 key that is not retiring (or make one held by the Worker with RotateScopeKey first)",
        );
      }
      const clash = config.auth.keys.find((k) => workers.includes(k.kid));
      if (clash) return fail(Code.InvalidArgument, `config.auth.keys: kid '${clash.kid}' is a Worker key of the scope`);
    }
    this.remember(scope);
    const previous = this.getConfig();
    const previousTimeout = previous.rendezvousTimeoutMs;
    const auth = config.auth && { ...config.auth, enabledAtMs: previous.auth?.enabledAtMs ?? Date.now() };
    // Off: the Worker's keys go with the policy, so none comes back with a later one.
    if (!auth) this.keys.clear();
    this.sql.exec(
      SCOPE_SQL.configPut,
      config.originFallback ?? null,
      config.lingeringSubscribe ? 1 : 0,
      config.rendezvousTimeoutMs ?? null,
      auth ? JSON.stringify(auth) : null,
    );
    this.configChanged(previous);
    if (config.rendezvousTimeoutMs !== previousTimeout) await this.rebaseRendezvous(config.rendezvousTimeoutMs);
    return ok({});
  }

  /** The operator's policy as stored (PutScopeConfig), for checking a new one against. */
  operatorAuth(): OperatorPolicy | undefined {
    return this.operatorPolicy(this.sql.exec(SCOPE_SQL.configGet).toArray()[0]);
  }

  /** Kids of the Worker's keys in the policy now. */
  workerKids(): string[] {
    return this.keys.inPolicy(Date.now(), this.skewMs()).map((k) => k.kid);
  }

  // ---- token policy: the Worker's signing keys (objects/scope-keys.ts) -------

  /**
   * Adds a Worker key (made and sealed by the caller) and rotates to it. It
   * signs at once if no key signed before; else once every relay can verify
   * it: the policy TTL plus KEY_WARMUP_MARGIN_MS. Turns the policy on.
   */
  async addSigningKey(
    scope: Scope,
    key: { kid: string; pem: string; sealed: Uint8Array },
  ): Promise<Outcome<{ key: PolicyKey; signsFrom: number; replaces?: string }>> {
    const now = Date.now();
    const before = this.getConfig();
    const inPolicy = before.auth?.keys.length ?? this.workerKids().length;
    if (inPolicy >= AuthLimit.MAX_KEYS) {
      return fail(
        Code.FailedPrecondition,
        `scope: its policy already holds ${AuthLimit.MAX_KEYS} keys, the most a relay takes; remove one (PutScopeConfig, RemoveScopeKey) or wait for a replaced key to retire`,
      );
    }
    this.remember(scope);
    // Relays holding a policy without this key must get it before tokens it signs reach them.
    const signsFrom = before.auth ? now + ttlOf(before.auth) * 1000 + KEY_WARMUP_MARGIN_MS : now;
    const replaces = this.keys.add(key, now, signsFrom);
    this.sql.exec(
      SCOPE_SQL.authEnable,
      JSON.stringify({ keys: [], issuers: [], audiences: [], enabledAtMs: now } satisfies OperatorPolicy),
    );
    this.configChanged(before);
    await this.scheduleAlarm();
    const added = this.getConfig().auth?.keys.find((k) => k.kid === key.kid) as PolicyKey;
    return ok({ key: added, signsFrom, ...(replaces ? { replaces } : {}) });
  }

  /**
   * The key to sign a token expiring at `expSeconds` with, and its `iss` and
   * `aud`: those asked if the policy lists them (or lists none), else its
   * first. Nothing is recorded for a refused request.
   */
  async signingKey(
    expSeconds: number,
    asked: { issuer?: string; audience?: string },
  ): Promise<Outcome<{ kid: string; sealed: Uint8Array; issuer?: string; audience?: string }>> {
    const auth = this.operatorAuth();
    if (!auth) return fail(Code.FailedPrecondition, "scope: has no token policy (RotateScopeKey makes one with a Worker key)");
    const issuer = pickListed("issuer", asked.issuer, auth.issuers);
    if (typeof issuer === "object") return issuer;
    const audience = pickListed("audience", asked.audience, auth.audiences);
    if (typeof audience === "object") return audience;
    const key = this.keys.signWith(Date.now(), expSeconds);
    if (!key) return fail(Code.FailedPrecondition, "scope: has no Worker signing key (make one with RotateScopeKey)");
    if ("signsFrom" in key) {
      return fail(
        Code.FailedPrecondition,
        `scope: no Worker key signs yet: ${key.kid} signs from ${new Date(key.signsFrom).toISOString()}, once every relay has it`,
      );
    }
    // The key now stays in the policy at least until this token expires.
    await this.scheduleAlarm();
    return ok({ ...key, issuer, audience });
  }

  /** Takes a Worker key out of the policy at once. */
  removeSigningKey(kid: string): Outcome<object> {
    const before = this.getConfig();
    if (!before.auth?.keys.some((k) => k.kid === kid && k.worker)) {
      return fail(Code.NotFound, `kid: '${kid}' is not a Worker key of this scope's policy`);
    }
    const stays = (before.auth?.keys ?? []).filter((k) => k.kid !== kid && !k.worker?.retiresAtMs);
    if (stays.length === 0) {
      return fail(
        Code.FailedPrecondition,
        `kid: '${kid}' is the policy's last key that is not retiring; make another first (RotateScopeKey), or turn the policy off (PutScopeConfig without auth), which drops the Worker's keys`,
      );
    }
    this.keys.remove(kid);
    this.configChanged(before);
    return ok({});
  }

  private operatorPolicy(row: Record<string, SqlStorageValue> | undefined): OperatorPolicy | undefined {
    const auth = row?.auth as string | null | undefined;
    return auth ? (JSON.parse(auth) as OperatorPolicy) : undefined;
  }

  private workerKeys(operator: OperatorPolicy): PolicyKey[] {
    return this.keys.inPolicy(Date.now(), skewOf(operator) * 1000);
  }

  private skewMs(): number {
    return skewOf(this.operatorAuth() ?? {}) * 1000;
  }

  /** Relays hear of a config that answers differently now. */
  private configChanged(previous: ScopeSettings): void {
    if (!sameSettings(previous, this.getConfig())) this.watch.changed({ config: true });
  }

  // ---- namespaces --------------------------------------------------------

  registerNamespace(scope: Scope, w: RelayIdentity, key: TupleKey): Promise<Outcome<{ id: string }>> {
    return this.claim("namespaces", scope, w, [toBlob(key)]);
  }

  unregisterNamespace(relay: string, key: TupleKey): Outcome<object> {
    return this.release("namespaces", relay, [toBlob(key)]);
  }

  /**
   * Exact registration first, else the longest registered prefix; null if
   * none. `versions`: the asking relay's MoQT versions (a host sharing none
   * is named in otherDraft).
   */
  lookup(key: TupleKey, versions?: string[]): RouteMatch | null {
    // Registered namespaces have >= 1 field, so the empty prefix is never a candidate.
    const ends = fieldEnds(key);
    if (ends.length === 0) return null;
    const hit = this.sql
      .exec<{ depth: number; relay: string }>(SCOPE_SQL.longestRegistered(ends.length), toBlob(key), ...ends)
      .toArray()[0];
    if (!hit) return null;
    return this.routeTo(hit.relay, hit.depth, versions);
  }

  // ---- tracks ------------------------------------------------------------

  registerTrack(scope: Scope, w: RelayIdentity, fields: Uint8Array[], name: string): Promise<Outcome<{ id: string }>> {
    return this.claim("tracks", scope, w, [nsKey(fields), name]);
  }

  unregisterTrack(relay: string, fields: Uint8Array[], name: string): Outcome<object> {
    return this.release("tracks", relay, [nsKey(fields), name]);
  }

  /** Exact track registration first, else namespace routing (lookup); null if neither. */
  lookupTrack(key: TupleKey, name: string, versions?: string[]): RouteMatch | null {
    const row = this.sql.exec(SCOPE_SQL.trackOwner, toBlob(key), name).toArray()[0];
    if (row) return this.routeTo(row.relay as string, fieldEnds(key).length, versions);
    return this.lookup(key, versions);
  }

  /** Track names under the namespace; at most `limit` of them when given. */
  listTracks(fields: Uint8Array[], limit?: number): string[] {
    const key = nsKey(fields);
    const cursor = limit === undefined ? this.sql.exec(SCOPE_SQL.tracksOf, key) : this.sql.exec(SCOPE_SQL.tracksOfUpTo, key, limit);
    return cursor.toArray().map((r) => r.name as string);
  }

  // ---- namespace subscriptions ---------------------------------------------

  async subscribeNamespace(
    scope: Scope,
    w: RelayIdentity,
    prefix: Uint8Array[],
    origin: Origin,
  ): Promise<Outcome<{ id: string; upstream: RelayRef[] }>> {
    const key = encodeTupleWithPrefixes(prefix).key;
    // Interest is recorded whatever the interface: it feeds the push path.
    const claimed = await this.claim("namespace_subscriptions", scope, w, [toBlob(key)]);
    if (!claimed.ok) return claimed;
    const { id } = claimed.value;
    if (origin.internal) return ok({ id, upstream: [] });
    const hosts = this.sql
      .exec(SCOPE_SQL.hostsUnder, toBlob(key), toBlob(prefixUpperBound(key)))
      .toArray()
      .map((r) => r.relay as string);
    return ok({ id, upstream: this.excluding(hosts, w.relay, origin, w.versions) });
  }

  unsubscribeNamespace(relay: string, prefix: Uint8Array[]): Outcome<object> {
    return this.release("namespace_subscriptions", relay, [nsKey(prefix)]);
  }

  /** Relays whose subscribed prefixes match the namespace, minus caller, source and relays of another draft. */
  lookupNamespaceSubscribers(caller: string, fields: Uint8Array[], origin: Origin, versions?: string[]): RelayRef[] {
    const candidates = encodeTupleWithPrefixes(fields).prefixes.map(toBlob);
    const relays = this.sql
      .exec(SCOPE_SQL.subscribersOf(candidates.length), ...candidates)
      .toArray()
      .map((r) => r.relay as string);
    return this.excluding(relays, caller, origin, versions);
  }

  // ---- lingering track subscriptions (rendezvous) --------------------------

  async subscribeTrack(scope: Scope, w: RelayIdentity, fields: Uint8Array[], name: string): Promise<Outcome<{ id: string }>> {
    // Subscribing again renews the subscription's rendezvous deadline.
    const deadline: { at: number | null } = { at: null };
    const claimed = await this.claim("track_subscriptions", scope, w, [nsKey(fields), name], (now) => {
      const { rendezvousTimeoutMs } = this.getConfig();
      deadline.at = rendezvousTimeoutMs === undefined ? null : now + rendezvousTimeoutMs;
      return [deadline.at];
    });
    if (claimed.ok && deadline.at !== null) await this.scheduleExpiry(deadline.at);
    return claimed;
  }

  unsubscribeTrack(relay: string, fields: Uint8Array[], name: string): Outcome<object> {
    return this.release("track_subscriptions", relay, [nsKey(fields), name]);
  }

  /** Relays with lingering subscribers of the track, minus relays of another draft than `versions`. */
  lookupTrackSubscribers(fields: Uint8Array[], name: string, versions?: string[]): RelayRef[] {
    return this.sql
      .exec(SCOPE_SQL.liveTrackSubscribers, nsKey(fields), name, Date.now())
      .toArray()
      .map((r) => ({ url: r.relay as string, row: this.relayRow(r.relay as string) }))
      .filter(({ row }) => speakTogether(row?.versions, versions))
      .map(({ url, row }) => this.relayRef(url, row?.addrs));
  }

  // ---- relay lifetimes -----------------------------------------------------

  /**
   * Drops the relay's rows here: all of them, or with `keep` those of every
   * epoch but `keep` (the relay's current life). Idempotent, so a late or
   * repeated purge is harmless. Returns how many rows went.
   */
  purgeRelay(relay: string, keep?: string): number {
    const routes = this.routesOf(relay, keep);
    let removed = 0;
    for (const table of RELAY_OWNED_TABLES) {
      const cursor =
        keep === undefined ? this.sql.exec(OWNED_SQL[table].purge, relay) : this.sql.exec(OWNED_SQL[table].purgeOtherEpochs, relay, keep);
      removed += cursor.rowsWritten;
    }
    const row = this.relayRow(relay);
    if (row && (keep === undefined || row.epoch !== keep)) {
      this.sql.exec(SCOPE_SQL.relayDelete, relay);
      this.relayRows.delete(relay);
      this.leaseUntil.delete(relay);
    }
    if (routes) this.watch.changed(routes);
    return removed;
  }

  /** The relay named its epoch: rows written before, under the unknown epoch "", are that life's. */
  adoptEpoch(relay: string, epoch: string): void {
    for (const table of RELAY_OWNED_TABLES) {
      this.sql.exec(OWNED_SQL[table].adoptEpoch, epoch, relay);
    }
    this.sql.exec(SCOPE_SQL.relayAdoptEpoch, epoch, relay);
    this.relayRows.delete(relay);
  }

  /** New socket addresses or MoQT versions of a relay (from its heartbeat). */
  updateRelay(relay: string, addrs: string[], versions: string[]): void {
    const before = this.relayRow(relay);
    this.sql.exec(SCOPE_SQL.relayDetailsPut, JSON.stringify(addrs), JSON.stringify(versions), relay);
    this.relayRows.delete(relay);
    if (before) this.relayMoved(relay, before, addrs, versions);
  }

  async alarm(): Promise<void> {
    countAlarm();
    const now = Date.now();
    this.sql.exec(SCOPE_SQL.expireTrackSubscriptions, now);
    // The retired keys already left getConfig's answer by their time: say so to the relays now.
    if (this.keys.retire(now, this.skewMs()) > 0) this.watch.changed({ config: true });
    // Frames may have waited or failed (WatchRoot's recheck): every branch checks its seq.
    this.watch.syncAll();
    await this.scheduleAlarm(true);
  }

  /** The alarm at the next lingering subscription's expiry or replaced key's retirement, whichever is first. */
  private async scheduleAlarm(replace = false): Promise<void> {
    const track = this.sql.exec(SCOPE_SQL.nextTrackExpiry).one().t as number | null;
    const key = this.keys.nextRetirement(this.skewMs());
    const next = [track, key].filter((t): t is number => t !== null).sort((a, b) => a - b)[0];
    if (next === undefined) return;
    if (replace) await armAlarm(this.ctx.storage, next);
    else await this.scheduleExpiry(next);
  }

  // ---- admin -------------------------------------------------------------

  putPath(scope: Scope, path: string, permissions: number): void {
    this.remember(scope);
    this.sql.exec(SCOPE_SQL.pathPut, path, permissions);
    // Told even when this list already says so: ResolveScope answers come from
    // the PathObject, which an earlier call may have changed before failing here.
    this.watch.changed({ paths: [path] });
  }

  deletePath(path: string): void {
    this.sql.exec(SCOPE_SQL.pathDelete, path);
    this.watch.changed({ paths: [path] });
  }

  /** The relay's tokens were revoked: its watch sockets on this scope are closed (it may not reopen them). */
  closeWatchers(relay: string): Promise<number> {
    return this.watch.closeRelay(relay, "relay token revoked");
  }

  /** One page of each list, for DescribeScope (objects/scope-describe.ts), and the open watch sockets; null if never configured or written. */
  async describe(limit: number, cursor: DescribeCursor): Promise<(ScopeDescription & { watchers: number }) | null> {
    if (this.sql.exec(SCOPE_SQL.metaScopeGet).toArray().length === 0) return null;
    const rows = describeRows(this.sql, this.getConfig(), limit, cursor);
    return { ...rows, watchers: await this.watch.watchers() };
  }

  // ---- internals -----------------------------------------------------------

  /**
   * A relay claims a row of a relay-owned table (OWNED_TABLES): registers a
   * namespace or track, or subscribes. A new row needs room in the relay's
   * quota; the relay's own row is renewed (current epoch, `renewed` columns)
   * and keeps its id. A refusal stores nothing and records nothing here.
   */
  private async claim(
    table: OwnedTable,
    scope: Scope,
    w: RelayIdentity,
    key: SqlStorageValue[],
    renewed: (now: number) => SqlStorageValue[] = () => [],
  ): Promise<Outcome<{ id: string }>> {
    // The common case, a relay whose lease is known open and that is far from
    // its quota, is one statement: store() writes unless another relay holds the key.
    const known = this.knownLease(w);
    if (known && this.quotaRoomKnown(table, w.relay)) {
      return this.store(table, scope, w.relay, known.epoch, key, renewed);
    }
    // Another relay's row is refused before its RelayObject is asked: asking
    // records this scope there and may open its lease, for a write not made.
    let existing = this.find(table, key, w.relay);
    if (existing && existing.relay !== w.relay) return this.alreadyHeld(table, existing.relay);
    const lease = known ?? (await this.askRelay(scope, w));
    if ("ok" in lease) return lease;
    if (lease.asked) {
      // Other calls ran while we awaited the RelayObject: read again. From here on all is synchronous.
      existing = this.find(table, key, w.relay);
      if (existing && existing.relay !== w.relay) return this.alreadyHeld(table, existing.relay);
    }
    if (!existing) {
      const full = this.overQuota(table, w.relay);
      if (full) return full;
    }
    this.recordRelay(w.relay, lease);
    // The key is free or the relay's own (checked above, nothing ran since), so store() writes.
    return this.store(table, scope, w.relay, lease.epoch, key, renewed);
  }

  /**
   * Writes the relay's row of the key in one statement (OWNED_SQL put): a new
   * row, or the relay's own renewed, keeping its id. A row of another relay
   * is left as it is and the claim refused, naming that relay. A stored claim
   * remembers the scope; a new owner changes answers (the same owner again,
   * any epoch, does not).
   */
  private store(
    table: OwnedTable,
    scope: Scope,
    relay: string,
    epoch: string,
    key: SqlStorageValue[],
    renewed: (now: number) => SqlStorageValue[],
  ): Outcome<{ id: string }> {
    const now = Date.now();
    const fresh = crypto.randomUUID();
    const row = this.sql.exec<{ id: string }>(OWNED_SQL[table].put, ...key, relay, epoch, fresh, now, ...renewed(now)).toArray()[0];
    if (!row) return this.alreadyHeld(table, this.find(table, key, relay)?.relay ?? "another relay");
    this.remember(scope);
    // Only a new row has the id just made.
    if (row.id === fresh) this.routeChanged(table, key);
    return ok({ id: row.id });
  }

  /** Drops the relay's row of the key; another relay's is PERMISSION_DENIED (tables with one owner per key). */
  private release(table: OwnedTable, relay: string, key: SqlStorageValue[]): Outcome<object> {
    const { owners, noun } = OWNED_TABLES[table];
    if (owners === "one") {
      const existing = this.find(table, key, relay);
      if (existing && existing.relay !== relay) {
        return fail(Code.PermissionDenied, `${noun} is registered by ${existing.relay}, not by the caller`);
      }
    }
    // Releasing what is not held succeeds: drop handles and retries may repeat it.
    if (this.sql.exec(OWNED_SQL[table].remove, ...key, relay).rowsWritten > 0) this.routeChanged(table, key);
    return ok({});
  }

  /** The row a claim of `relay` would meet: the key's (one owner) or the relay's own for the key (each its own). */
  private find(table: OwnedTable, key: SqlStorageValue[], relay: string): { relay: string; id: string } | undefined {
    const mine = OWNED_TABLES[table].owners === "each" ? [relay] : [];
    const row = this.sql.exec(OWNED_SQL[table].find, ...key, ...mine).toArray()[0];
    return row ? { relay: row.relay as string, id: row.id as string } : undefined;
  }

  private alreadyHeld(table: OwnedTable, owner: string): Refusal {
    return fail(Code.AlreadyExists, `${OWNED_TABLES[table].noun} is already registered by ${owner}`) as Refusal;
  }

  /** The writing relay's lease, if this object knows it open and of the epoch the writer names (no need to ask). */
  private knownLease(w: RelayIdentity): Lease | undefined {
    const known = this.relayRow(w.relay);
    const until = this.leaseUntil.get(w.relay) ?? 0;
    if (known && Date.now() < until && (w.epoch === undefined || w.epoch === known.epoch)) {
      return { epoch: known.epoch, addrs: known.addrs, versions: known.versions, expiresAt: until, asked: false };
    }
    return undefined;
  }

  /**
   * The writing relay's current epoch from its RelayObject, or its refusal.
   * Asked when the relay is new here, names another epoch, or its lease may
   * have lapsed since we last asked (that call reopens it): at most once per
   * relay per lease TTL (knownLease otherwise).
   */
  private async askRelay(scope: Scope, w: RelayIdentity): Promise<Lease | Refusal> {
    const answer = await relayStub(this.env, w.relay).enlist(w.relay, scopeObjectName(scope), w.epoch, w.issuedAtMs, w.versions);
    if (!answer.ok) return answer as Refusal;
    const { epoch } = answer.value;
    // The RelayObject has already purged or relabelled this scope (it calls
    // every scope it knows). Rows here of another epoch are left over from a
    // call to us that failed: apply the same rule locally. Re-read, since
    // other calls ran while we awaited.
    const now = this.relayRow(w.relay);
    if (now && now.epoch !== epoch) {
      if (now.epoch === "") this.adoptEpoch(w.relay, epoch);
      else this.purgeRelay(w.relay, epoch);
    }
    return { ...answer.value, asked: true };
  }

  /** A claim is being stored: the relay with the lease its RelayObject just gave (nothing to do for a known lease). */
  private recordRelay(relay: string, lease: Lease): void {
    if (!lease.asked) return;
    const before = this.relayRow(relay);
    this.sql.exec(SCOPE_SQL.relayPut, relay, lease.epoch, JSON.stringify(lease.addrs), JSON.stringify(lease.versions));
    this.relayRows.delete(relay);
    this.leaseUntil.set(relay, lease.expiresAt);
    if (before) this.relayMoved(relay, before, lease.addrs, lease.versions);
  }

  // ---- what a change invalidates (watch/root.ts) ----------------------------

  /** A namespace or track gained or lost its owner: Lookup/LookupTrack answers for it. */
  private routeChanged(table: OwnedTable, key: SqlStorageValue[]): void {
    // Checked first: with nobody watching, the key is not decoded for nothing.
    if ((table !== "namespaces" && table !== "tracks") || !this.watch.watched) return;
    const fields = decodeTuple(new Uint8Array(key[0] as ArrayBuffer));
    this.watch.changed(table === "namespaces" ? { namespaces: [fields] } : { tracks: [{ fields, name: key[1] as string }] });
  }

  /**
   * Answers name a relay with its first address, and depend on its MoQT
   * versions: when either changes, every route to the relay.
   */
  private relayMoved(relay: string, before: RelayRow, addrs: string[], versions: string[]): void {
    if (before.addrs[0] === addrs[0] && JSON.stringify(before.versions) === JSON.stringify(versions)) return;
    const routes = this.routesOf(relay);
    if (routes) this.watch.changed(routes);
  }

  /**
   * The routes through a relay (of every epoch but `keep`), for a purge or an
   * address change: its namespaces and tracks by name, or "everything" past
   * ROUTES_LISTED of them. Undefined if it has none, or nobody watches.
   */
  private routesOf(relay: string, keep?: string): Invalidation | undefined {
    if (!this.watch.watched) return undefined;
    const namespaces = this.sql
      .exec(SCOPE_SQL.relayNamespaces, relay, keep ?? null, ROUTES_LISTED + 1)
      .toArray()
      .map((r) => decodeTuple(new Uint8Array(r.ns_key as ArrayBuffer)));
    const tracks = this.sql
      .exec(SCOPE_SQL.relayTracks, relay, keep ?? null, ROUTES_LISTED + 1)
      .toArray()
      .map((r) => ({ fields: decodeTuple(new Uint8Array(r.ns_key as ArrayBuffer)), name: r.name as string }));
    if (namespaces.length + tracks.length === 0) return undefined;
    if (namespaces.length + tracks.length > ROUTES_LISTED) return { all: true };
    return { namespaces, tracks };
  }

  /**
   * A RESOURCE_EXHAUSTED outcome if the relay already holds its quota of rows
   * in the table (src/limits.ts), else undefined. Counts over the table's
   * per-relay index, stopping at the quota, only when the in-memory bound
   * (heldAtMost) has reached the quota: a count grows with the rows held
   * (docs/performance.md, "Storage"), a bound check costs nothing.
   */
  private overQuota(table: OwnedTable, relay: string): Refusal | undefined {
    if (this.quotaRoomKnown(table, relay)) return undefined;
    const { limit, field, what, variable } = OWNED_TABLES[table].quota;
    const max = limitsOf(this.env)[limit];
    const k = heldKey(table, relay);
    const held = this.sql.exec(OWNED_SQL[table].held, relay, max).one().n as number;
    this.heldAtMost.set(k, held < max ? held + 1 : held);
    if (held < max) return undefined;
    return fail(
      Code.ResourceExhausted,
      `${field}: relay ${relay} already holds ${max} ${what} in this scope, the most allowed (${variable})`,
    ) as Refusal;
  }

  /**
   * Whether the in-memory bound (heldAtMost) alone shows room for one more row
   * of the relay, raising it for that row. A pass is followed by at most one
   * insert, so the bound stays an upper bound (a renewal or a refusal after a
   * pass only loosens it).
   */
  private quotaRoomKnown(table: OwnedTable, relay: string): boolean {
    const max = limitsOf(this.env)[OWNED_TABLES[table].quota.limit];
    const k = heldKey(table, relay);
    const bound = this.heldAtMost.get(k);
    if (bound === undefined || bound >= max) return false;
    this.heldAtMost.set(k, bound + 1);
    return true;
  }

  private relayRow(url: string): RelayRow | undefined {
    const cached = this.relayRows.get(url);
    if (cached !== undefined) return cached ?? undefined;
    const row = this.sql.exec(SCOPE_SQL.relayGet, url).toArray()[0];
    const read = row
      ? {
          epoch: row.epoch as string,
          addrs: JSON.parse(row.addrs as string) as string[],
          versions: JSON.parse(row.versions as string) as string[],
        }
      : null;
    setBounded(this.relayRows, url, read, MAX_CACHED_RELAY_ROWS);
    return read ?? undefined;
  }

  private relayRef(url: string, addrs = this.relayRow(url)?.addrs ?? []): RelayRef {
    const addr = addrs[0];
    return addr === undefined ? { url } : { url, addr };
  }

  /** A route to `relay` at `depth`, as the asking relay (speaking `versions`) may use it. */
  private routeTo(relay: string, depth: number, versions: string[] | undefined): RouteMatch {
    const row = this.relayRow(relay);
    const match: RouteMatch = { depth, ...this.relayRef(relay, row?.addrs) };
    if (row && !speakTogether(row.versions, versions)) match.otherDraft = row.versions;
    return match;
  }

  /** Deduplicates and drops the caller, the session's source peer and relays sharing no MoQT version with `versions`. */
  private excluding(urls: string[], caller: string, origin: Origin, versions: string[] | undefined): RelayRef[] {
    const sourceAuthority = origin.sourceUrl ? authority(origin.sourceUrl) : undefined;
    const out: RelayRef[] = [];
    for (const url of new Set(urls)) {
      if (url === caller || url === origin.sourceUrl) continue;
      const row = this.relayRow(url);
      if (!speakTogether(row?.versions, versions)) continue;
      const addrs = row?.addrs ?? [];
      if (origin.sourceAddr !== undefined && addrs.includes(origin.sourceAddr)) continue;
      // moq-rs names an internal peer https://{ip:port}: match that against addresses too.
      if (sourceAuthority !== undefined && addrs.includes(sourceAuthority)) continue;
      out.push(this.relayRef(url, addrs));
    }
    return out;
  }

  private remember(scope: Scope): void {
    // Every write calls this; the row never changes, so write it once per instance.
    if (!this.remembered) {
      this.sql.exec(SCOPE_SQL.metaScopePut, scopeObjectName(scope));
      this.remembered = true;
    }
    // The admin directory hears of this scope once, in the background (a failed note is retried here).
    this.listing.note("listed", () => directoryStub(this.env).noteScope(scope, Date.now()));
  }

  /**
   * A changed rendezvous timeout restarts the clock of every lingering track
   * subscription with the new value (so lowering it takes effect now, raising
   * it expires nothing early); no timeout means they no longer expire.
   */
  private async rebaseRendezvous(timeoutMs: number | undefined): Promise<void> {
    const now = Date.now();
    this.sql.exec(SCOPE_SQL.expireTrackSubscriptions, now);
    const at = timeoutMs === undefined ? null : now + timeoutMs;
    const changed = this.sql.exec(SCOPE_SQL.rebaseTrackExpiry, at).rowsWritten;
    if (at !== null && changed > 0) await this.scheduleExpiry(at);
  }

  private async scheduleExpiry(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await armAlarm(this.ctx.storage, at);
  }
}

/**
 * Past this many namespaces and tracks, a relay's purge invalidates the whole
 * scope: one small frame instead of a large one, at the price of the watchers
 * refetching routes that did not change.
 */
const ROUTES_LISTED = 256;

/** The policy's name for a token claim: the one asked, if listed (or nothing is listed); else the first listed. */
function pickListed(field: string, asked: string | undefined, listed: string[]): string | undefined | Refusal {
  if (asked === undefined) return listed[0];
  if (listed.length > 0 && !listed.includes(asked)) {
    return fail(Code.InvalidArgument, `${field}: '${asked}' is not one the scope's policy accepts (${listed.join(", ")})`) as Refusal;
  }
  return asked;
}

/** After a rotation, how long past the policy TTL before the new key signs: the edge's watch staleness bound, rounded up. */
const KEY_WARMUP_MARGIN_MS = 5_000;

function sameSettings(a: ScopeSettings, b: ScopeSettings): boolean {
  return (
    a.originFallback === b.originFallback &&
    a.lingeringSubscribe === b.lingeringSubscribe &&
    a.rendezvousTimeoutMs === b.rendezvousTimeoutMs &&
    JSON.stringify(a.auth) === JSON.stringify(b.auth)
  );
}

function authority(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}

/** How the watch root reaches its branches: each call bounded, so one slow branch holds only its own queue. */
function branchPort(env: Env): BranchPort {
  return {
    deliver: (name, token, items) =>
      bounded(watchBranchStub(env, name).deliver(token, items), OBJECT_CALL_TIMEOUT_MS, `watch branch ${name}`),
    count: (name) => bounded(watchBranchStub(env, name).count(), OBJECT_CALL_TIMEOUT_MS, `watch branch ${name}`),
    closeRelay: (name, relay, reason) =>
      bounded(watchBranchStub(env, name).closeRelay(relay, reason), OBJECT_CALL_TIMEOUT_MS, `watch branch ${name}`),
  };
}
