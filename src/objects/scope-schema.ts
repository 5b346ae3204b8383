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
CREATE INDEX IF NOT EXISTS namespaces_by_relay ON namespaces (relay, epoch);

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
