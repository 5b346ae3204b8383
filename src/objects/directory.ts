// DirectoryObject: the one list of scopes and relays, for ListScopes and
// ListRelays. It is never on a coordinator call's path: a ScopeObject tells it
// once that the scope exists, a RelayObject tells it when the relay appears,
// changes epoch or leaves. Both tell it in the background (DirectoryListing),
// so a slow or failing directory only delays the admin view.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";

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
    this.sql.exec(SCHEMA);
  }

  /** `scope` is "" for the unscoped space. */
  noteScope(scope: string, at: number): void {
    this.sql.exec("INSERT OR IGNORE INTO scopes (name, first_seen_at) VALUES (?, ?)", scope, at);
  }

  /**
   * The relay is up with `epoch`, or has left. Notes may arrive out of order
   * (each is its own background call): an older note than the stored one is ignored.
   */
  async noteRelay(url: string, epoch: string, up: boolean, at: number): Promise<void> {
    this.sql.exec(
      `INSERT INTO relays (url, epoch, up, first_seen_at, changed_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, up = excluded.up, changed_at = excluded.changed_at
       WHERE excluded.changed_at >= relays.changed_at`,
      url, epoch, up ? 1 : 0, at, at,
    );
    if (!up) await this.schedulePrune();
  }

  listScopes(limit: number, after: string | undefined): { names: string[]; more: boolean } {
    const cursor =
      after === undefined
        ? this.sql.exec("SELECT name FROM scopes ORDER BY name LIMIT ?", limit + 1)
        : this.sql.exec("SELECT name FROM scopes WHERE name > ? ORDER BY name LIMIT ?", after, limit + 1);
    const names = cursor.toArray().map((r) => r.name as string);
    return { names: names.slice(0, limit), more: names.length > limit };
  }

  listRelays(limit: number, after: string | undefined): { relays: DirectoryRelay[]; more: boolean } {
    const cursor =
      after === undefined
        ? this.sql.exec("SELECT * FROM relays ORDER BY url LIMIT ?", limit + 1)
        : this.sql.exec("SELECT * FROM relays WHERE url > ? ORDER BY url LIMIT ?", after, limit + 1);
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
    this.sql.exec("DELETE FROM relays WHERE up = 0 AND changed_at <= ?", Date.now() - RELAY_RETENTION_MS);
    await this.schedulePrune();
  }

  private async schedulePrune(): Promise<void> {
    const oldest = this.sql.exec("SELECT min(changed_at) AS t FROM relays WHERE up = 0").one().t as number | null;
    if (oldest === null) return;
    const at = oldest + RELAY_RETENTION_MS;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
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
