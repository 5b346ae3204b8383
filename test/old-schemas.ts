// The Durable Objects' schemas as they were at commit 3864184, the last before
// numbered migrations (objects/migrations.ts): frozen copies, never edit them.
// test/migrations.test.ts builds these databases, fills them and migrates them.

export const SCOPE_3864184 = `
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

/** Created by DirectoryListing in ScopeObjects and RelayObjects. */
export const LISTING_3864184 = "CREATE TABLE IF NOT EXISTS directory_listing (id INTEGER PRIMARY KEY CHECK (id = 1), told TEXT NOT NULL)";

export const RELAY_3864184 = `
CREATE TABLE IF NOT EXISTS lease (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  url TEXT NOT NULL,
  epoch TEXT NOT NULL,
  addrs TEXT NOT NULL DEFAULT '[]',
  expires_at INTEGER NOT NULL,
  last_beat_at INTEGER
);
CREATE TABLE IF NOT EXISTS scopes (name TEXT PRIMARY KEY) WITHOUT ROWID;
-- Epochs replaced by a newer one: calls still carrying them come from a dead
-- process and are refused. purged = 0 while some scope may still hold its rows.
CREATE TABLE IF NOT EXISTS retired (
  epoch TEXT PRIMARY KEY,
  retired_at INTEGER NOT NULL,
  purged INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`;

export const PATH_3864184 =
  "CREATE TABLE IF NOT EXISTS mapping (id INTEGER PRIMARY KEY CHECK (id = 1), scope TEXT NOT NULL, permissions INTEGER NOT NULL)";

export const DIRECTORY_3864184 = `
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
