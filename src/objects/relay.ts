// RelayObject: one per relay URL. Holds the relay's lease, its boot epoch, its
// socket addresses and the scopes it wrote to. When the lease lapses (alarm),
// when a new epoch appears, or on Shutdown, it tells those scopes to purge the
// relay's rows. Heartbeats cost one call per relay, whatever it has registered.
//
// Lease rule: any Heartbeat or write (enlist) renews the lease to now + TTL; a
// write after the lease lapsed reopens it, and only rows written after the
// purge survive. A different epoch replaces the current one at once (the relay
// restarted) and the old epoch's rows are purged everywhere.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { leaseSettings } from "../lease.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS lease (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  url TEXT NOT NULL,
  epoch TEXT NOT NULL,
  addrs TEXT NOT NULL DEFAULT '[]',
  expires_at INTEGER NOT NULL,
  last_beat_at INTEGER
);
CREATE TABLE IF NOT EXISTS scopes (name TEXT PRIMARY KEY) WITHOUT ROWID;
`;

export interface LeaseView {
  url: string;
  epoch: string;
  addrs: string[];
  expiresAt: number;
  lastBeatAt: number | null;
  alive: boolean;
  scopes: string[];
}

export class RelayObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  /** A scope is about to hold rows of this relay: record it, renew the lease. */
  async enlist(url: string, scopeName: string, epoch?: string): Promise<{ epoch: string; addrs: string[] }> {
    this.sql.exec("INSERT OR IGNORE INTO scopes (name) VALUES (?)", scopeName);
    const lease = await this.renew(url, epoch, undefined, scopeName);
    return { epoch: lease.epoch, addrs: lease.addrs };
  }

  async heartbeat(url: string, epoch: string, addrs: string[]): Promise<{ leaseTtlMs: number; intervalMs: number }> {
    await this.renew(url, epoch, addrs, undefined, true);
    return leaseSettings(this.env);
  }

  /** The relay leaves: its rows go from every scope at once. */
  async shutdown(): Promise<number> {
    const removed = await this.purgeEverywhere(undefined);
    this.sql.exec("UPDATE lease SET expires_at = ?", Date.now());
    await this.ctx.storage.deleteAlarm();
    return removed;
  }

  view(): LeaseView | null {
    const row = this.sql.exec("SELECT * FROM lease WHERE id = 1").toArray()[0];
    if (!row) return null;
    return {
      url: row.url as string,
      epoch: row.epoch as string,
      addrs: JSON.parse(row.addrs as string) as string[],
      expiresAt: row.expires_at as number,
      lastBeatAt: row.last_beat_at as number | null,
      alive: (row.expires_at as number) > Date.now(),
      scopes: this.scopeNames(),
    };
  }

  async alarm(): Promise<void> {
    const row = this.sql.exec("SELECT expires_at FROM lease WHERE id = 1").toArray()[0];
    if (!row) return;
    const expiresAt = row.expires_at as number;
    if (expiresAt > Date.now()) {
      await this.ctx.storage.setAlarm(expiresAt);
      return;
    }
    await this.purgeEverywhere(undefined);
  }

  private async renew(
    url: string,
    epoch: string | undefined,
    addrs: string[] | undefined,
    exceptScope: string | undefined,
    beat = false,
  ): Promise<{ epoch: string; addrs: string[] }> {
    const now = Date.now();
    const { leaseTtlMs } = leaseSettings(this.env);
    const row = this.sql.exec("SELECT epoch, addrs FROM lease WHERE id = 1").toArray()[0];
    const current = row ? { epoch: row.epoch as string, addrs: JSON.parse(row.addrs as string) as string[] } : undefined;
    const next = { epoch: epoch ?? current?.epoch ?? "", addrs: addrs ?? current?.addrs ?? [] };
    this.sql.exec(
      `INSERT INTO lease (id, url, epoch, addrs, expires_at, last_beat_at) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, addrs = excluded.addrs,
         expires_at = excluded.expires_at, last_beat_at = coalesce(excluded.last_beat_at, lease.last_beat_at)`,
      url, next.epoch, JSON.stringify(next.addrs), now + leaseTtlMs, beat ? now : null,
    );
    await this.ctx.storage.setAlarm(now + leaseTtlMs);
    if (current && current.epoch !== next.epoch) {
      // A restarted relay: its previous life's rows go everywhere except in the
      // scope asking (it purges its own copy before writing).
      await this.purgeEverywhere(current.epoch, exceptScope, false);
    } else if (current && addrs && JSON.stringify(current.addrs) !== JSON.stringify(addrs)) {
      await Promise.all(this.scopeNames().map((s) => this.scope(s).updateRelayAddrs(url, addrs)));
    }
    return next;
  }

  /** Purges this relay's rows (of one epoch, or all) in every scope it touched. */
  private async purgeEverywhere(epoch: string | undefined, exceptScope?: string, forget = true): Promise<number> {
    const url = this.sql.exec("SELECT url FROM lease WHERE id = 1").toArray()[0]?.url as string | undefined;
    if (url === undefined) return 0;
    const names = this.scopeNames().filter((s) => s !== exceptScope);
    const counts = await Promise.all(names.map((s) => this.scope(s).purgeRelay(url, epoch)));
    // Scopes are forgotten only once purged; a write racing this re-adds its scope.
    if (forget) for (const s of names) this.sql.exec("DELETE FROM scopes WHERE name = ?", s);
    return counts.reduce((a, b) => a + b, 0);
  }

  private scopeNames(): string[] {
    return this.sql.exec("SELECT name FROM scopes ORDER BY name").toArray().map((r) => r.name as string);
  }

  private scope(name: string) {
    return this.env.SCOPES.get(this.env.SCOPES.idFromName(name));
  }
}
