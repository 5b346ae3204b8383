// DescribeScope's reads inside a ScopeObject: one page of each list, each list
// paged by its own keyset cursor (the last key it returned) so that a page
// costs an index range scan whatever its position, and rows added or removed
// between pages neither shift nor repeat the others.
import { decodeTuple } from "../model/tuple.js";
import { DESCRIBE_LISTS, type DescribeList, PAGE_SQL, SCOPE_SQL } from "./scope-sql.js";
import type { RelayRef, ScopeSettings } from "./types.js";

export { DESCRIBE_LISTS, type DescribeList };

/** A list's position: its first page, or after this key (column values in key order). */
export type ListPosition = "start" | SqlStorageValue[];
/** Lists not named are finished and come back empty. */
export type DescribeCursor = Partial<Record<DescribeList, ListPosition>>;

export const FIRST_PAGE: DescribeCursor = Object.fromEntries(Object.keys(DESCRIBE_LISTS).map((k) => [k, "start"])) as DescribeCursor;

export interface ScopeDescription {
  config: ScopeSettings;
  paths: { path: string; permissions: number }[];
  namespaces: { fields: Uint8Array[]; relay: RelayRef; createdAt: number }[];
  tracks: { fields: Uint8Array[]; name: string; relay: RelayRef; createdAt: number }[];
  namespaceSubscriptions: { fields: Uint8Array[]; relay: RelayRef; createdAt: number }[];
  trackSubscriptions: { fields: Uint8Array[]; name: string; relay: RelayRef; createdAt: number; expiresAt?: number }[];
  /** Where each list with more rows goes on; empty when every list is finished. */
  next: DescribeCursor;
}

type Row = Record<string, SqlStorageValue>;

export function describeRows(sql: SqlStorage, config: ScopeSettings, limit: number, cursor: DescribeCursor): ScopeDescription {
  const next: DescribeCursor = {};
  const page = <T>(list: DescribeList, map: (r: Row) => T): T[] => {
    const from = cursor[list];
    if (from === undefined) return [];
    const args = from === "start" ? [] : from;
    const rows = sql.exec(from === "start" ? PAGE_SQL[list].first : PAGE_SQL[list].after, ...args, limit + 1).toArray();
    if (rows.length > limit) {
      rows.length = limit;
      next[list] = DESCRIBE_LISTS[list].key.map((k) => rows[limit - 1][k]);
    }
    return rows.map(map);
  };
  const addrs = new Map<string, string | undefined>();
  const relay = (v: SqlStorageValue): RelayRef => {
    const url = v as string;
    if (!addrs.has(url)) {
      const row = sql.exec(SCOPE_SQL.relayGet, url).toArray()[0];
      addrs.set(url, row ? (JSON.parse(row.addrs as string) as string[])[0] : undefined);
    }
    const addr = addrs.get(url);
    return addr === undefined ? { url } : { url, addr };
  };
  const fields = (v: SqlStorageValue) => decodeTuple(new Uint8Array(v as ArrayBuffer));
  return {
    config,
    paths: page("paths", (r) => ({ path: r.path as string, permissions: r.permissions as number })),
    namespaces: page("namespaces", (r) => ({ fields: fields(r.ns_key), relay: relay(r.relay), createdAt: r.created_at as number })),
    tracks: page("tracks", (r) => ({
      fields: fields(r.ns_key),
      name: r.name as string,
      relay: relay(r.relay),
      createdAt: r.created_at as number,
    })),
    namespaceSubscriptions: page("namespaceSubscriptions", (r) => ({
      fields: fields(r.prefix_key),
      relay: relay(r.relay),
      createdAt: r.created_at as number,
    })),
    trackSubscriptions: page("trackSubscriptions", (r) => ({
      fields: fields(r.ns_key),
      name: r.name as string,
      relay: relay(r.relay),
      createdAt: r.created_at as number,
      expiresAt: (r.expires_at as number | null) ?? undefined,
    })),
    next,
  };
}
