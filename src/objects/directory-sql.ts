// Every SQL statement of the DirectoryObject, named, and of the DirectoryListing
// note that ScopeObjects and RelayObjects keep in their own databases (its
// table is created by their migrations). test/storage.test.ts checks each
// statement's query plan by name.
import { migrations } from "./migrations.js";

export const DIRECTORY_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the schema before versions",
    up: `
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
`,
  },
  {
    version: 2,
    about: "what the directory needs to list relays and peers without asking each RelayObject",
    up: `
ALTER TABLE relays ADD COLUMN addrs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE relays ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE relays ADD COLUMN last_beat_at INTEGER;
ALTER TABLE relays ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE relays ADD COLUMN scope_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS relays_up ON relays (expires_at) WHERE up = 1;
`,
  },
  {
    version: 3,
    about: "revoked relay tokens: each relay's cut-off, and a version isolates compare to re-read the list only when it changed",
    up: `
CREATE TABLE IF NOT EXISTS revoked (url TEXT PRIMARY KEY, before_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
`,
  },
  {
    version: 4,
    about: "activity: the relay's reported upstream links as last noted (JSON; NULL = none), for GetNetwork",
    up: "ALTER TABLE relays ADD COLUMN activity TEXT",
  },
  {
    version: 5,
    about: "versions: the MoQT versions the relay speaks as last noted (JSON; '[]' = never said), for ListRelays",
    up: "ALTER TABLE relays ADD COLUMN versions TEXT NOT NULL DEFAULT '[]'",
  },
]);

export const DIRECTORY_SQL = {
  /** `name` is the listed form of the scope (objects/scope-name.ts): "" for the unscoped space. */
  scopeNote: "INSERT OR IGNORE INTO scopes (name, first_seen_at) VALUES (?, ?)",
  /**
   * The whole entry as of changed_at; an older note than the stored one
   * changes nothing, and so does one that differs only in its time and last
   * beat (those are kept as of the last change): a relay's periodic note
   * writes no row while nothing changed.
   */
  relayNote: `INSERT INTO relays (url, epoch, up, first_seen_at, changed_at, addrs, expires_at, last_beat_at, scopes, scope_count, activity, versions)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (url) DO UPDATE SET epoch = excluded.epoch, up = excluded.up, changed_at = excluded.changed_at,
      addrs = excluded.addrs, expires_at = excluded.expires_at, last_beat_at = excluded.last_beat_at,
      scopes = excluded.scopes, scope_count = excluded.scope_count, activity = excluded.activity, versions = excluded.versions
    WHERE excluded.changed_at >= relays.changed_at
      AND (relays.epoch IS NOT excluded.epoch OR relays.up IS NOT excluded.up OR relays.addrs IS NOT excluded.addrs
        OR relays.expires_at IS NOT excluded.expires_at OR relays.scopes IS NOT excluded.scopes
        OR relays.scope_count IS NOT excluded.scope_count OR relays.activity IS NOT excluded.activity
        OR relays.versions IS NOT excluded.versions)`,
  /** Live = up and its noted lease expiry (plus slack) not yet past; the caller excluded. */
  livePeers: "SELECT url, addrs FROM relays WHERE up = 1 AND expires_at > ? ORDER BY url LIMIT ?",
  scopesFirst: "SELECT name FROM scopes ORDER BY name LIMIT ?",
  scopesAfter: "SELECT name FROM scopes WHERE name > ? ORDER BY name LIMIT ?",
  scopeCount: "SELECT count(*) AS n FROM scopes",
  relaysFirst: "SELECT * FROM relays ORDER BY url LIMIT ?",
  relaysAfter: "SELECT * FROM relays WHERE url > ? ORDER BY url LIMIT ?",
  relayCount: "SELECT count(*) AS n FROM relays",
  /** Relays that left, or whose lease expiry passed without a "left" note, before `?`. */
  prune: "DELETE FROM relays WHERE (up = 0 AND changed_at <= ?) OR (up = 1 AND expires_at > 0 AND expires_at <= ?)",
  oldestLeft: "SELECT min(changed_at) AS t FROM relays WHERE up = 0",
  oldestExpiry: "SELECT min(expires_at) AS t FROM relays WHERE up = 1 AND expires_at > 0",
  revokedFind: "SELECT before_ms FROM revoked WHERE url = ?",
  /** A cut-off never moves back. */
  revokedPut: `INSERT INTO revoked (url, before_ms) VALUES (?, ?)
    ON CONFLICT (url) DO UPDATE SET before_ms = max(before_ms, excluded.before_ms)`,
  revokedCount: "SELECT count(*) AS n FROM revoked",
  revokedAll: "SELECT url, before_ms FROM revoked",
  revokedVersionGet: "SELECT version FROM revoked_version WHERE id = 1",
  revokedVersionBump: `INSERT INTO revoked_version (id, version) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET version = version + 1`,
} as const;

/** The directory_listing table of a ScopeObject or RelayObject (DirectoryListing). */
export const LISTING_SQL = {
  toldGet: "SELECT told FROM directory_listing WHERE id = 1",
  toldPut: "INSERT INTO directory_listing (id, told) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET told = excluded.told",
} as const;
