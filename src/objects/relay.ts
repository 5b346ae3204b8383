// RelayObject: one per relay URL. Holds the relay's lease, its boot epoch, its
// socket addresses and the scopes it wrote to, and tells those scopes to purge
// the relay's rows when the lease lapses, when a new epoch replaces the old one
// and on Shutdown. A Heartbeat touches this object only, whatever the relay has
// registered. The rules, and why, are in docs/lifetimes.md.
import { DurableObject } from "cloudflare:workers";
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";
import { DirectoryListing } from "./directory.js";
import { migrate } from "./migrations.js";
import { RELAY_MIGRATIONS, RELAY_SQL } from "./relay-sql.js";
import { scopeFromObjectName } from "./scope-name.js";
import { directoryStub, scopeStub } from "./stubs.js";
import { fail, ok, type Outcome } from "./types.js";

/** Replaced epochs remembered; a process older than that many restarts is not expected back. */
const RETIRED_KEPT = 16;
/** A purge a scope could not take (unreachable) is retried by the alarm this soon. */
const PURGE_RETRY_MS = 1000;

export interface LeaseView {
  url: string;
  epoch: string;
  addrs: string[];
  expiresAt: number;
  lastBeatAt: number | null;
  alive: boolean;
  scopes: string[];
}

/** What a scope learns when it enlists a relay. */
export interface Enlisted {
  epoch: string;
  addrs: string[];
  /** The lease is open until then (later heartbeats may extend it). */
  expiresAt: number;
}

interface Lease {
  url: string;
  epoch: string;
  addrs: string[];
  expiresAt: number;
}

export class RelayObject extends DurableObject<Env> {
  private sql: SqlStorage;
  private listing: DirectoryListing;
  /**
   * When this instance started. A lease never lapses before the object has
   * been up for one TTL: after a restart of the runtime (or of this object)
   * the relay must get a full TTL to reach us before it is declared dead.
   */
  private startedAt = Date.now();
  /** Calls run one at a time, so that a purge is complete before any later call is answered. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrate(ctx.storage, RELAY_MIGRATIONS);
    this.listing = new DirectoryListing(this.sql);
  }

  /**
   * A scope is about to hold rows of this relay: records the scope, and opens
   * the lease if it is not open (a write proves the relay alive). An open
   * lease is not extended: only heartbeats keep a relay alive.
   */
  enlist(url: string, scopeName: string, epoch?: string): Promise<Outcome<Enlisted>> {
    return this.serial(async () => {
      const refused = this.refuseRetired(epoch);
      if (refused) return refused;
      const lease = await this.touch(url, epoch, undefined, false);
      this.sql.exec(RELAY_SQL.scopeAdd, scopeName);
      return ok(lease);
    });
  }

  heartbeat(url: string, epoch: string, addrs: string[]): Promise<Outcome<{ leaseTtlMs: number; intervalMs: number }>> {
    return this.serial(async () => {
      const refused = this.refuseRetired(epoch);
      if (refused) return refused;
      await this.touch(url, epoch, addrs, true);
      return ok(leaseSettings(this.env));
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
      const removed = await this.purgeAll(lease.url);
      this.sql.exec(RELAY_SQL.leaseExpiresPut, Date.now());
      await this.ctx.storage.deleteAlarm();
      this.announce(lease.url, lease.epoch, false);
      return removed;
    });
  }

  view(): LeaseView | null {
    const lease = this.lease();
    if (!lease) return null;
    const lastBeatAt = this.sql.exec(RELAY_SQL.lastBeatGet).one().last_beat_at as number | null;
    return { ...lease, lastBeatAt, alive: lease.expiresAt > Date.now(), scopes: this.scopeNames() };
  }

  async alarm(): Promise<void> {
    await this.serial(async () => {
      const lease = this.lease();
      if (!lease) return;
      if (this.purgePending()) await this.purgeStale(lease.url, lease.epoch);
      const now = Date.now();
      if (lease.expiresAt > now) {
        await this.ctx.storage.setAlarm(this.purgePending() ? now + PURGE_RETRY_MS : lease.expiresAt);
        return;
      }
      const earliest = this.startedAt + leaseSettings(this.env).leaseTtlMs;
      if (now < earliest) {
        // Just started: the relay's heartbeats may have had nowhere to go.
        this.sql.exec(RELAY_SQL.leaseExpiresPut, earliest);
        await this.ctx.storage.setAlarm(earliest);
        return;
      }
      // Lapsed. A failure throws, and the runtime retries the alarm.
      await this.purgeAll(lease.url);
      this.announce(lease.url, lease.epoch, false);
    });
  }

  // ---- internals -----------------------------------------------------------

  /**
   * Renews the lease (a heartbeat always; any call when the lease is not open
   * or a new epoch starts) and applies an epoch change: from "" (unknown) it
   * is adopted, rows kept; otherwise the old epoch is retired and its rows go.
   */
  private async touch(url: string, epoch: string | undefined, addrs: string[] | undefined, beat: boolean): Promise<Enlisted> {
    const now = Date.now();
    const { leaseTtlMs } = leaseSettings(this.env);
    const current = this.lease();
    const next = { epoch: epoch ?? current?.epoch ?? "", addrs: addrs ?? current?.addrs ?? [] };
    const newEpoch = current !== undefined && current.epoch !== next.epoch;
    const renew = beat || newEpoch || current === undefined || current.expiresAt <= now;
    const expiresAt = renew ? now + leaseTtlMs : current.expiresAt;
    this.sql.exec(
      RELAY_SQL.leasePut,
      url, next.epoch, JSON.stringify(next.addrs), expiresAt, beat ? now : null,
    );
    this.announce(url, next.epoch, true);
    // A purge still to retry keeps its earlier alarm.
    if (renew) await this.ctx.storage.setAlarm(this.purgePending() ? Math.min(expiresAt, now + PURGE_RETRY_MS) : expiresAt);
    if (current && newEpoch && current.epoch === "") {
      // Rows written before the relay named its epoch belong to this life.
      await this.eachScope((s) => s.adoptEpoch(url, next.epoch));
    } else if (current && newEpoch) {
      this.retire(current.epoch);
      await this.purgeStale(url, next.epoch);
    } else if (current && addrs && JSON.stringify(current.addrs) !== JSON.stringify(addrs)) {
      await this.eachScope((s) => s.updateRelayAddrs(url, addrs));
    }
    return { ...next, expiresAt };
  }

  /** Every scope drops the relay's rows of any epoch but `keep`; a failure is retried by the alarm. */
  private async purgeStale(url: string, keep: string): Promise<void> {
    const failed = await this.eachScope((s) => s.purgeRelay(url, keep));
    if (failed === 0) this.sql.exec(RELAY_SQL.retiredPurged);
    else await this.ctx.storage.setAlarm(Date.now() + PURGE_RETRY_MS);
  }

  /** Every scope drops all the relay's rows; scopes are forgotten once purged. Throws if one failed. */
  private async purgeAll(url: string): Promise<number> {
    const names = this.scopeNames();
    const results = await Promise.allSettled(names.map((s) => this.scope(s).purgeRelay(url)));
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
  private async eachScope(call: (scope: ReturnType<RelayObject["scope"]>) => Promise<unknown>): Promise<number> {
    const names = this.scopeNames();
    const results = await Promise.allSettled(names.map((s) => call(this.scope(s))));
    const failed = results.filter((r) => r.status === "rejected");
    for (const f of failed) console.warn(`relay object: a scope call failed: ${String((f as PromiseRejectedResult).reason)}`);
    return failed.length;
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

  private lease(): Lease | undefined {
    const row = this.sql.exec(RELAY_SQL.leaseGet).toArray()[0];
    if (!row) return undefined;
    return {
      url: row.url as string,
      epoch: row.epoch as string,
      addrs: JSON.parse(row.addrs as string) as string[],
      expiresAt: row.expires_at as number,
    };
  }

  /** The admin directory hears when this relay appears, changes epoch or leaves (in the background). */
  private announce(url: string, epoch: string, up: boolean): void {
    this.listing.note(up ? `up ${epoch}` : "left", () => directoryStub(this.env).noteRelay(url, epoch, up, Date.now()));
  }

  private scopeNames(): string[] {
    return this.sql.exec(RELAY_SQL.scopeNames).toArray().map((r) => r.name as string);
  }

  private scope(name: string) {
    return scopeStub(this.env, scopeFromObjectName(name));
  }
}
