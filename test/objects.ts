// Test access to a Durable Object's own storage, through runInDurableObject:
// the production classes carry no test-only methods.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { expect } from "vitest";
import { billing } from "../src/metrics/billing.js";
import type { RelayObject } from "../src/objects/relay.js";
import { relayStub } from "../src/objects/stubs.js";

type Row = Record<string, SqlStorageValue>;

/** The rows of one table of an object, raw. */
export function tableRows(stub: DurableObjectStub, table: string): Promise<Row[]> {
  return runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => state.storage.sql.exec(`SELECT * FROM "${table}"`).toArray());
}

/** The object's tables (not SQLite's or the runtime's own). */
export function tablesOf(sql: SqlStorage): string[] {
  return sql
    .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name")
    .toArray()
    .map((r) => r.name as string);
}

type Table = Record<string, unknown>[];

/**
 * Every row of every table of a Durable Object, blobs as hex: a snapshot that
 * does not depend on which tables the object has today.
 */
export function dumpObject(stub: DurableObjectStub): Promise<Record<string, Table>> {
  return runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => {
    const sql = state.storage.sql;
    const out: Record<string, Table> = {};
    for (const t of tablesOf(sql)) {
      out[t] = sql
        .exec(`SELECT * FROM "${t}"`)
        .toArray()
        .map((row) =>
          Object.fromEntries(
            Object.entries(row).map(([k, v]) => [
              k,
              v instanceof ArrayBuffer ? [...new Uint8Array(v)].map((b) => b.toString(16).padStart(2, "0")).join("") : v,
            ]),
          ),
        )
        .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
    }
    return out;
  });
}

/**
 * Ends a relay's lease now without waiting: its expiry on record moved into
 * the past and the heartbeats its object holds in memory forgotten;
 * `oldObject` also ends the restart grace (the object up for longer than a TTL).
 */
export async function expireLease(url: string, { oldObject = true } = {}): Promise<void> {
  await runInDurableObject(relayStub(env, url), (o: RelayObject, state) => {
    state.storage.sql.exec("UPDATE lease SET expires_at = ?", Date.now() - 1);
    const internals = o as unknown as { beatAt: number | null; startedAt: number };
    internals.beatAt = null;
    if (oldObject) internals.startedAt = 0;
  });
}

/** The lease lapses: expired, and its alarm runs. */
export async function lapseLease(url: string): Promise<void> {
  await expireLease(url);
  expect(await runDurableObjectAlarm(relayStub(env, url))).toBe(true);
}

/** Waits until no row has been written for a while (background notes to the directory are done). */
export async function settled(): Promise<void> {
  for (let last = -1; billing.get("rows_written") !== last; ) {
    last = billing.get("rows_written");
    await new Promise((r) => setTimeout(r, 50));
  }
}
