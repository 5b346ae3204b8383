// SQLite schema of a ScopeObject. Namespace columns hold order-preserving
// tuple keys (model/tuple.ts) so prefix questions are index range scans or IN
// lists. Every row names the relay that owns it and the relay's boot epoch.
export const SCOPE_SCHEMA = `
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
`;

/** Tables holding relay-owned rows, purged together when a relay goes away. */
export const RELAY_OWNED_TABLES = [
  "namespaces",
  "tracks",
  "namespace_subscriptions",
  "track_subscriptions",
] as const;

const marks = (n: number) => Array.from({ length: n }, () => "?").join(",");

/**
 * The hot queries, named so that the storage test can check each one's query
 * plan (every one must be an index search, never a full scan, never LIKE/GLOB).
 */
export const HOT_QUERIES = {
  /** Registrations among the given keys (a namespace's prefixes), longest first. */
  longestRegistered: (n: number) =>
    `SELECT ns_key, relay FROM namespaces WHERE ns_key IN (${marks(n)}) ORDER BY length(ns_key) DESC LIMIT 1`,
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
  subscribersOf: (n: number) => `SELECT DISTINCT relay FROM namespace_subscriptions WHERE prefix_key IN (${marks(n)})`,
  trackOwner: "SELECT relay FROM tracks WHERE ns_key = ? AND name = ?",
  tracksOf: "SELECT name FROM tracks WHERE ns_key = ? ORDER BY name",
  liveTrackSubscribers: `SELECT relay FROM track_subscriptions WHERE ns_key = ? AND name = ?
    AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at`,
  expireTrackSubscriptions: "DELETE FROM track_subscriptions WHERE expires_at IS NOT NULL AND expires_at <= ?",
  nextTrackExpiry: "SELECT min(expires_at) AS t FROM track_subscriptions WHERE expires_at IS NOT NULL",
  purgeRelay: (table: string) => `DELETE FROM ${table} WHERE relay = ?`,
  /** A relay's rows of every epoch but the given one (its current life). */
  purgeRelayEpoch: (table: string) => `DELETE FROM ${table} WHERE relay = ? AND epoch <> ?`,
} as const;
