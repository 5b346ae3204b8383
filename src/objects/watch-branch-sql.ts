// Every SQL statement of the WatchBranchObject, named (test/storage.test.ts
// checks each statement's query plan by name).
import { migrations } from "./migrations.js";

export const WATCH_BRANCH_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the branch's one row: whose branch it is, its attachment to the scope's root, and the last change it passed on",
    // scope: the ScopeObject's name; name: this object's name; token: the
    // attachment (NULL = detached); stream, seq: the sequence as last synced
    // (stream NULL = waiting for the first sync).
    up: `CREATE TABLE IF NOT EXISTS branch (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  scope TEXT NOT NULL,
  name TEXT NOT NULL,
  token TEXT,
  stream TEXT,
  seq INTEGER NOT NULL
)`,
  },
]);

export const WATCH_BRANCH_SQL = {
  get: "SELECT scope, name, token, stream, seq FROM branch WHERE id = 1",
  put: `INSERT INTO branch (id, scope, name, token, stream, seq) VALUES (1, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, name = excluded.name, token = excluded.token,
      stream = excluded.stream, seq = excluded.seq`,
} as const;
