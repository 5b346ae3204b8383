// Every SQL statement of a RelayObject, named: its schema (as numbered
// migrations) and its statements. test/storage.test.ts checks each one's query
// plan by name.
import { migrations } from "./migrations.js";

export const RELAY_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the schema before versions",
    up: `
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

-- What this object last told the DirectoryObject (DirectoryListing).
CREATE TABLE IF NOT EXISTS directory_listing (id INTEGER PRIMARY KEY CHECK (id = 1), told TEXT NOT NULL);
`,
  },
  {
    version: 2,
    about: "state_lost: this epoch's rows were purged (or the relay was unknown) and no heartbeat has said so yet",
    up: "ALTER TABLE lease ADD COLUMN state_lost INTEGER NOT NULL DEFAULT 0",
  },
  {
    version: 3,
    about: "revocation: the relay's tokens made up to before_ms are refused (AdminService.RevokeRelayToken)",
    up: "CREATE TABLE IF NOT EXISTS revocation (id INTEGER PRIMARY KEY CHECK (id = 1), before_ms INTEGER NOT NULL)",
  },
  {
    version: 4,
    about: "activity: the relay's last reported upstream links (HeartbeatRequest.activity), JSON; NULL = none",
    up: "ALTER TABLE lease ADD COLUMN activity TEXT",
  },
  {
    version: 5,
    about: "versions: the MoQT versions the relay said it speaks (Moq-Relay-Versions), JSON; '[]' = never said",
    up: "ALTER TABLE lease ADD COLUMN versions TEXT NOT NULL DEFAULT '[]'",
  },
  {
    version: 6,
    about: "closed_at: when the relay's lease socket closed, the lease not renewed since (its end is then not delayed by a restart grace)",
    up: "ALTER TABLE lease ADD COLUMN closed_at INTEGER",
  },
]);

export const RELAY_SQL = {
  leaseGet: "SELECT url, epoch, addrs, versions, expires_at, last_beat_at, state_lost, activity, closed_at FROM lease WHERE id = 1",
  /** Replaced by every heartbeat; cleared when the lease ends (lapse, shutdown). */
  activityPut: "UPDATE lease SET activity = ? WHERE id = 1",
  /** A renewal keeps the last heartbeat's time unless this call is one. */
  leasePut: `INSERT INTO lease (id, url, epoch, addrs, versions, expires_at, last_beat_at, state_lost) VALUES (1, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, addrs = excluded.addrs, versions = excluded.versions,
      expires_at = excluded.expires_at, last_beat_at = coalesce(excluded.last_beat_at, lease.last_beat_at),
      state_lost = excluded.state_lost, closed_at = NULL`,
  leaseExpiresPut: "UPDATE lease SET expires_at = ? WHERE id = 1",
  /** The lease as steady heartbeats (kept in memory) extended it. */
  leaseBeatPut: "UPDATE lease SET expires_at = ?, last_beat_at = ?, closed_at = NULL WHERE id = 1",
  /** The lease socket closed: the lease ends at `?` unless renewed. */
  leaseClosed: "UPDATE lease SET expires_at = ?, closed_at = ? WHERE id = 1",
  stateLostMark: "UPDATE lease SET state_lost = 1 WHERE id = 1",
  stateLostClear: "UPDATE lease SET state_lost = 0 WHERE id = 1",
  /** `name` is the scope's object name (objects/scope-name.ts). */
  scopeAdd: "INSERT OR IGNORE INTO scopes (name) VALUES (?)",
  scopeDelete: "DELETE FROM scopes WHERE name = ?",
  scopeNames: "SELECT name FROM scopes ORDER BY name",
  scopeNamesFirst: "SELECT name FROM scopes ORDER BY name LIMIT ?",
  scopeCount: "SELECT count(*) AS n FROM scopes",
  retiredFind: "SELECT 1 FROM retired WHERE epoch = ?",
  retire: `INSERT INTO retired (epoch, retired_at, purged) VALUES (?, ?, 0)
    ON CONFLICT (epoch) DO UPDATE SET retired_at = excluded.retired_at, purged = 0`,
  /** Keeps the newest `?` retired epochs. */
  retiredTrim: "DELETE FROM retired WHERE epoch IN (SELECT epoch FROM retired ORDER BY retired_at DESC LIMIT -1 OFFSET ?)",
  retiredPurged: "UPDATE retired SET purged = 1 WHERE purged = 0",
  purgePending: "SELECT 1 FROM retired WHERE purged = 0 LIMIT 1",
  revocationGet: "SELECT before_ms FROM revocation WHERE id = 1",
  /** Never moves back: a late, older revocation does not re-admit tokens a newer one refused. */
  revocationPut: `INSERT INTO revocation (id, before_ms) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET before_ms = max(before_ms, excluded.before_ms)`,
} as const;
