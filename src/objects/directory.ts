// DirectoryObject: the one list of scopes and relays, for ListScopes and
// ListRelays. It is never on a coordinator call's path: a ScopeObject tells it
// once that the scope exists, a RelayObject tells it when the relay appears,
// changes epoch or leaves. Both tell it in the background (DirectoryListing),
// so a slow or failing directory only delays the admin view.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { DIRECTORY_MIGRATIONS, DIRECTORY_SQL, LISTING_SQL } from "./directory-sql.js";
import { migrate } from "./migrations.js";
import { listedScopeName, type Scope } from "./scope-name.js";

/** A relay that left is listed this long after, then forgotten. */
export const RELAY_RETENTION_MS = 24 * 3600 * 1000;

export interface DirectoryRelay {
  url: string;
  epoch: string;
  up: boolean;
  firstSeenAt: number;
  changedAt: number;
}

export class DirectoryObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrate(ctx.storage, DIRECTORY_MIGRATIONS);
  }

  noteScope(scope: Scope, at: number): void {
    this.sql.exec(DIRECTORY_SQL.scopeNote, listedScopeName(scope), at);
  }

  /**
   * The relay is up with `epoch`, or has left. Notes may arrive out of order
   * (each is its own background call): an older note than the stored one is ignored.
   */
  async noteRelay(url: string, epoch: string, up: boolean, at: number): Promise<void> {
    this.sql.exec(
      DIRECTORY_SQL.relayNote,
      url, epoch, up ? 1 : 0, at, at,
    );
    if (!up) await this.schedulePrune();
  }

  listScopes(limit: number, after: string | undefined): { names: string[]; more: boolean } {
    const cursor =
      after === undefined
        ? this.sql.exec(DIRECTORY_SQL.scopesFirst, limit + 1)
        : this.sql.exec(DIRECTORY_SQL.scopesAfter, after, limit + 1);
    const names = cursor.toArray().map((r) => r.name as string);
    return { names: names.slice(0, limit), more: names.length > limit };
  }

  listRelays(limit: number, after: string | undefined): { relays: DirectoryRelay[]; more: boolean } {
    const cursor =
      after === undefined
        ? this.sql.exec(DIRECTORY_SQL.relaysFirst, limit + 1)
        : this.sql.exec(DIRECTORY_SQL.relaysAfter, after, limit + 1);
    const relays = cursor.toArray().map((r) => ({
      url: r.url as string,
      epoch: r.epoch as string,
      up: r.up === 1,
      firstSeenAt: r.first_seen_at as number,
      changedAt: r.changed_at as number,
    }));
    return { relays: relays.slice(0, limit), more: relays.length > limit };
  }

  /** Forgets relays that left more than RELAY_RETENTION_MS ago. */
  async alarm(): Promise<void> {
    this.sql.exec(DIRECTORY_SQL.pruneLeft, Date.now() - RELAY_RETENTION_MS);
    await this.schedulePrune();
  }

  private async schedulePrune(): Promise<void> {
    const oldest = this.sql.exec(DIRECTORY_SQL.oldestLeft).one().t as number | null;
    if (oldest === null) return;
    const at = oldest + RELAY_RETENTION_MS;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
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
    tell().then(
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
    ).catch((err: unknown) => console.warn(`directory listing not saved: ${String(err)}`));
  }
}
