// Every SQL statement of a ScopeObject, named: its schema (as numbered
// migrations), its statements, and the description of the tables relays own.
// test/storage.test.ts checks the query plan of each one by name.
//
// Namespace columns hold order-preserving tuple keys (model/tuple.ts) so prefix
// questions are index range scans or IN lists. Every relay-owned row names the
// relay that owns it and the relay's boot epoch.
import type { Limits } from "../limits.js";
import { migrations } from "./migrations.js";

export const SCOPE_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the schema before versions",
    up: `
CREATE TABLE IF NOT EXISTS meta (
  k TEXT PRIMARY KEY,
  v TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS config (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  origin_fallback TEXT,
  lingering_subscribe INTEGER NOT NULL DEFAULT 0,
  rendezvous_timeout_ms INTEGER
);

-- Relays that own rows here, with the epoch those rows belong to.
CREATE TABLE IF NOT EXISTS relays (
  url TEXT PRIMARY KEY,
  epoch TEXT NOT NULL,
  addrs TEXT NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS namespaces (
  ns_key BLOB PRIMARY KEY,
  relay TEXT NOT NULL,
  epoch TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Per relay in key order: serves purges and quotas (by relay) and makes "does
-- relay R host anything under P" one seek. It replaced (relay, epoch).
DROP INDEX IF EXISTS namespaces_by_relay;
CREATE INDEX IF NOT EXISTS namespaces_by_relay_key ON namespaces (relay, ns_key);

CREATE TABLE IF NOT EXISTS tracks (
  ns_key BLOB NOT NULL,
  name TEXT NOT NULL,
  relay TEXT NOT NULL,
  epoch TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (ns_key, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tracks_by_relay ON tracks (relay, epoch);

CREATE TABLE IF NOT EXISTS namespace_subscriptions (
  prefix_key BLOB NOT NULL,
  relay TEXT NOT NULL,
  epoch TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (prefix_key, relay)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS namespace_subscriptions_by_relay ON namespace_subscriptions (relay, epoch);

CREATE TABLE IF NOT EXISTS track_subscriptions (
  ns_key BLOB NOT NULL,
  name TEXT NOT NULL,
  relay TEXT NOT NULL,
  epoch TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  PRIMARY KEY (ns_key, name, relay)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS track_subscriptions_by_relay ON track_subscriptions (relay, epoch);
CREATE INDEX IF NOT EXISTS track_subscriptions_by_expiry ON track_subscriptions (expires_at)
  WHERE expires_at IS NOT NULL;

-- Connection paths that resolve to this scope (the admin view; PathObject is authoritative).
CREATE TABLE IF NOT EXISTS paths (
  path TEXT PRIMARY KEY,
  permissions INTEGER NOT NULL
) WITHOUT ROWID;

-- What this object last told the DirectoryObject (DirectoryListing).
CREATE TABLE IF NOT EXISTS directory_listing (id INTEGER PRIMARY KEY CHECK (id = 1), told TEXT NOT NULL);
`,
  },
  {
    version: 2,
    about: "meta 'scope' holds the scope's object name (objects/scope-name.ts), not '' or '=name'",
    up: `UPDATE meta SET v = CASE WHEN v = '' THEN 'unscoped' ELSE 'scope:' || substr(v, 2) END
      WHERE k = 'scope' AND (v = '' OR substr(v, 1, 1) = '=')`,
  },
  {
    version: 3,
    about: "the watch channel's change sequence (watch/root.ts)",
    // One row, made when the first relay watches: the stream id names this
    // sequence, seq counts the changes sent since.
    up: "CREATE TABLE IF NOT EXISTS watch (id INTEGER PRIMARY KEY CHECK (id = 1), stream TEXT NOT NULL, seq INTEGER NOT NULL)",
  },
  {
    version: 4,
    about: "the MoQT versions each relay speaks (JSON; '[]' = never said): answers leave out relays of another draft",
    up: "ALTER TABLE relays ADD COLUMN versions TEXT NOT NULL DEFAULT '[]'",
  },
  {
    version: 5,
    about: "token policy: the operator's part (config.auth, JSON; NULL = no policy) and the Worker's signing keys",
    // sealed: the PKCS#8 private key, AES-GCM encrypted (auth/scope-keys.ts).
    // signs_from: IssueToken signs with the newest key past it. replaced_at:
    // when a newer key took over; the key then leaves the policy at
    // max(max_exp, replaced_at) + the clock skew (max_exp: the latest exp it signed).
    up: `
ALTER TABLE config ADD COLUMN auth TEXT;
CREATE TABLE IF NOT EXISTS signing_keys (
  kid TEXT PRIMARY KEY,
  pem TEXT NOT NULL,
  sealed BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  signs_from INTEGER NOT NULL,
  replaced_at INTEGER,
  max_exp INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`,
  },
  {
    version: 6,
    about: "the watch channel's branches (watch/root.ts): the objects holding relays' sockets, each by its attachment token",
    up: "CREATE TABLE IF NOT EXISTS watch_branches (name TEXT PRIMARY KEY, token TEXT NOT NULL) WITHOUT ROWID",
  },
]);

// ---- relay-owned tables ------------------------------------------------------

/**
 * The tables whose rows belong to a relay: what identifies a row, who may own
 * it, which quota bounds it. ScopeObject's claim/release and the purges work
 * from this description alone.
 */
export const OWNED_TABLES = {
  namespaces: {
    key: ["ns_key"],
    /** "one": one relay owns a key (another's claim is ALREADY_EXISTS, its release PERMISSION_DENIED). */
    owners: "one",
    /** Columns a repeated claim overwrites besides the epoch. */
    renewed: [],
    noun: "namespace",
    quota: { limit: "namespacesPerRelay", field: "namespace", what: "namespaces", variable: "MAX_NAMESPACES_PER_RELAY" },
  },
  tracks: {
    key: ["ns_key", "name"],
    owners: "one",
    renewed: [],
    noun: "track",
    quota: { limit: "tracksPerRelay", field: "track", what: "tracks", variable: "MAX_TRACKS_PER_RELAY" },
  },
  namespace_subscriptions: {
    key: ["prefix_key"],
    /** "each": every relay has its own row per key (relay is part of the primary key). */
    owners: "each",
    renewed: [],
    noun: "namespace subscription",
    quota: { limit: "subscriptionsPerRelay", field: "prefix", what: "namespace subscriptions", variable: "MAX_SUBSCRIPTIONS_PER_RELAY" },
  },
  track_subscriptions: {
    key: ["ns_key", "name"],
    owners: "each",
    renewed: ["expires_at"],
    noun: "track subscription",
    quota: { limit: "subscriptionsPerRelay", field: "track", what: "track subscriptions", variable: "MAX_SUBSCRIPTIONS_PER_RELAY" },
  },
} as const satisfies Record<
  string,
  {
    key: readonly string[];
    owners: "one" | "each";
    renewed: readonly string[];
    noun: string;
    quota: { limit: keyof Limits; field: string; what: string; variable: string };
  }
>;

export type OwnedTable = keyof typeof OWNED_TABLES;

/** Tables holding relay-owned rows, purged together when a relay goes away. */
export const RELAY_OWNED_TABLES = Object.keys(OWNED_TABLES) as OwnedTable[];

function ownedSql(table: OwnedTable) {
  const { key, owners, renewed } = OWNED_TABLES[table];
  const byKey = key.map((c) => `${c} = ?`).join(" AND ");
  const primary = owners === "each" ? [...key, "relay"] : key;
  const columns = [...key, "relay", "epoch", "id", "created_at", ...renewed];
  return {
    /** The row of a key (owners "one"), or of a key and relay (owners "each"): binds key columns[, relay]. */
    find: `SELECT relay, id FROM ${table} WHERE ${byKey}${owners === "each" ? " AND relay = ?" : ""}`,
    /**
     * A claim: a new row, or the relay's own row relabelled with its current
     * epoch (id and created_at kept); returns the row's id. Another relay's row
     * is left as it is and nothing is returned, so one statement both checks
     * and writes.
     */
    put: `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})
      ON CONFLICT (${primary.join(", ")}) DO UPDATE SET ${["epoch", ...renewed].map((c) => `${c} = excluded.${c}`).join(", ")}
      WHERE ${table}.relay = excluded.relay RETURNING id`,
    /** A release: the relay's row of the key, if it has one. */
    remove: `DELETE FROM ${table} WHERE ${byKey} AND relay = ?`,
    /** Rows the relay holds, counted up to the quota (the per-relay index, stopping early). */
    held: `SELECT count(*) AS n FROM (SELECT 1 FROM ${table} WHERE relay = ? LIMIT ?)`,
    purge: `DELETE FROM ${table} WHERE relay = ?`,
    /** A relay's rows of every epoch but the given one (its current life). */
    purgeOtherEpochs: `DELETE FROM ${table} WHERE relay = ? AND epoch <> ?`,
    /** Rows written under the unknown epoch "" join the epoch the relay named. */
    adoptEpoch: `UPDATE ${table} SET epoch = ? WHERE relay = ? AND epoch = ''`,
  };
}

export type OwnedStatement = keyof ReturnType<typeof ownedSql>;

export const OWNED_SQL = Object.fromEntries(RELAY_OWNED_TABLES.map((t) => [t, ownedSql(t)])) as Record<
  OwnedTable,
  ReturnType<typeof ownedSql>
>;

// ---- everything else -----------------------------------------------------------

const marks = (n: number) => Array.from({ length: n }, () => "?").join(",");

/**
 * A statement whose text depends on how many values it binds, each text built
 * once: built per call it was a visible share of a Lookup's CPU (docs/performance.md, "Storage").
 */
function perCount(make: (n: number) => string): (n: number) => string {
  const made: string[] = [];
  return (n) => {
    made[n] ??= make(n);
    return made[n];
  };
}

export const SCOPE_SQL = {
  configGet: "SELECT * FROM config WHERE id = 1",
  configPut: `INSERT INTO config (id, origin_fallback, lingering_subscribe, rendezvous_timeout_ms, auth) VALUES (1, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET origin_fallback = excluded.origin_fallback,
      lingering_subscribe = excluded.lingering_subscribe, rendezvous_timeout_ms = excluded.rendezvous_timeout_ms,
      auth = excluded.auth`,
  /** Turns the policy on with no operator keys, keeping the rest of the config (the first Worker key). */
  authEnable: `INSERT INTO config (id, auth) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET auth = coalesce(config.auth, excluded.auth)`,

  /** The Worker's signing keys, newest first. */
  signingKeys: "SELECT kid, pem, created_at, signs_from, replaced_at, max_exp FROM signing_keys ORDER BY created_at DESC, kid",
  signingKeyPut: "INSERT INTO signing_keys (kid, pem, sealed, created_at, signs_from) VALUES (?, ?, ?, ?, ?)",
  /** Every key still signing (no replaced_at) is replaced by the new one, from when it signs. */
  signingKeysReplace: "UPDATE signing_keys SET replaced_at = ? WHERE replaced_at IS NULL AND kid <> ?",
  /** The key IssueToken signs with at `?`: the newest whose warm-up ended and that no newer key replaced yet. */
  signingKeyCurrent: `SELECT kid, sealed FROM signing_keys WHERE signs_from <= ?1 AND (replaced_at IS NULL OR replaced_at > ?1)
    ORDER BY signs_from DESC, created_at DESC LIMIT 1`,
  /** Keys replaced by a key now removed (replaced from its signs_from) sign again. */
  signingKeysUnreplace: "UPDATE signing_keys SET replaced_at = NULL WHERE replaced_at = ?",
  signingKeysClear: "DELETE FROM signing_keys",
  /** A token signed with the key expires then: the key stays in the policy at least as long. */
  signingKeyIssued: "UPDATE signing_keys SET max_exp = max(max_exp, ?) WHERE kid = ?",
  signingKeyDelete: "DELETE FROM signing_keys WHERE kid = ?",
  /** Whether the scope was ever configured or written to. */
  metaScopeGet: "SELECT 1 FROM meta WHERE k = 'scope'",
  metaScopePut: "INSERT OR IGNORE INTO meta (k, v) VALUES ('scope', ?)",

  relayGet: "SELECT epoch, addrs, versions FROM relays WHERE url = ?",
  relayPut: `INSERT INTO relays (url, epoch, addrs, versions) VALUES (?, ?, ?, ?)
    ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, addrs = excluded.addrs, versions = excluded.versions`,
  relayDelete: "DELETE FROM relays WHERE url = ?",
  relayAdoptEpoch: "UPDATE relays SET epoch = ? WHERE url = ? AND epoch = ''",
  relayDetailsPut: "UPDATE relays SET addrs = ?, versions = ? WHERE url = ?",

  /**
   * The longest registration among a namespace's n prefixes: ?1 is the
   * namespace's key, ?2..?(n+1) where each prefix's key ends in it (1 field,
   * 2 fields, ...). One primary-key seek per prefix, longest first, and the
   * first hit ends the statement (LIMIT 1 over UNION ALL): an exact
   * registration costs one seek. Answers the depth, so no key is read back.
   * Longest first relies on SQLite running UNION ALL arms in order (how it is
   * built, not a documented promise; an ORDER BY would lose the early stop):
   * test/coordinator.test.ts's longest-prefix test fails if that changes.
   * (An IN list made SQLite build a temporary index of the keys per call, and
   * each prefix was a buffer of its own in JavaScript and a binding.)
   */
  longestRegistered: perCount((n) =>
    Array.from({ length: n }, (_, i) => n - i)
      .map((depth) => `SELECT ${depth} AS depth, relay FROM namespaces WHERE ns_key = substr(?1, 1, ?${depth + 1})`)
      .join(" UNION ALL ")
      .concat(" LIMIT 1"),
  ),
  /**
   * Relays hosting namespaces in [lo, hi), the namespaces under a prefix. It
   * walks the distinct relays (a skip scan of namespaces_by_relay_key) and asks
   * each for one row in range, so its cost follows the number of relays, not
   * the number of namespaces under the prefix (the whole scope for "").
   */
  hostsUnder: `WITH RECURSIVE hosts(relay) AS (
      SELECT min(relay) FROM namespaces
      UNION ALL
      SELECT (SELECT min(relay) FROM namespaces WHERE relay > hosts.relay) FROM hosts WHERE hosts.relay IS NOT NULL
    )
    SELECT relay FROM hosts WHERE relay IS NOT NULL AND EXISTS (
      SELECT 1 FROM namespaces n WHERE n.relay = hosts.relay AND n.ns_key >= ?1 AND n.ns_key < ?2)`,
  /** Relays subscribed to any of the given prefixes. */
  subscribersOf: perCount((n) => `SELECT DISTINCT relay FROM namespace_subscriptions WHERE prefix_key IN (${marks(n)})`),
  trackOwner: "SELECT relay FROM tracks WHERE ns_key = ? AND name = ?",
  tracksOf: "SELECT name FROM tracks WHERE ns_key = ? ORDER BY name",
  tracksOfUpTo: "SELECT name FROM tracks WHERE ns_key = ? ORDER BY name LIMIT ?",
  liveTrackSubscribers: `SELECT relay FROM track_subscriptions WHERE ns_key = ? AND name = ?
    AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at`,
  expireTrackSubscriptions: "DELETE FROM track_subscriptions WHERE expires_at IS NOT NULL AND expires_at <= ?",
  nextTrackExpiry: "SELECT min(expires_at) AS t FROM track_subscriptions WHERE expires_at IS NOT NULL",
  /** Every lingering subscription's deadline, when the scope's rendezvous timeout changes. */
  rebaseTrackExpiry: "UPDATE track_subscriptions SET expires_at = ?",

  /** The relay's namespaces (of every epoch but ?2, if given), up to ?3: what its purge or new address invalidates. */
  relayNamespaces: "SELECT ns_key FROM namespaces WHERE relay = ?1 AND (?2 IS NULL OR epoch <> ?2) LIMIT ?3",
  relayTracks: "SELECT ns_key, name FROM tracks WHERE relay = ?1 AND (?2 IS NULL OR epoch <> ?2) LIMIT ?3",

  watchGet: "SELECT stream, seq FROM watch WHERE id = 1",
  watchInit: "INSERT INTO watch (id, stream, seq) VALUES (1, ?, 0)",
  watchBump: "UPDATE watch SET seq = seq + 1 WHERE id = 1 RETURNING seq",
  branchesAll: "SELECT name, token FROM watch_branches",
  branchPut: "INSERT INTO watch_branches (name, token) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET token = excluded.token",
  branchForget: "DELETE FROM watch_branches WHERE name = ? AND token = ?",

  pathGet: "SELECT permissions FROM paths WHERE path = ?",
  pathPut: "INSERT INTO paths (path, permissions) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET permissions = excluded.permissions",
  pathDelete: "DELETE FROM paths WHERE path = ?",
} as const;

// ---- DescribeScope pages ---------------------------------------------------------

/** The lists DescribeScope pages through, each by its own primary key. */
export const DESCRIBE_LISTS = {
  paths: { table: "paths", key: ["path"], blob: [false] },
  namespaces: { table: "namespaces", key: ["ns_key"], blob: [true] },
  tracks: { table: "tracks", key: ["ns_key", "name"], blob: [true, false] },
  namespaceSubscriptions: { table: "namespace_subscriptions", key: ["prefix_key", "relay"], blob: [true, false] },
  trackSubscriptions: { table: "track_subscriptions", key: ["ns_key", "name", "relay"], blob: [true, false, false] },
} as const;

export type DescribeList = keyof typeof DESCRIBE_LISTS;

function pageSql(list: DescribeList) {
  const { table, key } = DESCRIBE_LISTS[list];
  const order = key.join(", ");
  return {
    /** The first page: binds the limit. */
    first: `SELECT * FROM ${table} ORDER BY ${order} LIMIT ?`,
    /** The page after a key: binds the key's columns, then the limit. */
    after: `SELECT * FROM ${table} WHERE (${order}) > (${key.map(() => "?").join(", ")}) ORDER BY ${order} LIMIT ?`,
  };
}

export const PAGE_SQL = Object.fromEntries((Object.keys(DESCRIBE_LISTS) as DescribeList[]).map((l) => [l, pageSql(l)])) as Record<
  DescribeList,
  ReturnType<typeof pageSql>
>;
