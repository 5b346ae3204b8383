// Every SQL statement of a PathObject, named (test/storage.test.ts checks each
// one's query plan). `mapping` holds at most one row; `untold` the scopes the
// path left that have not yet been told so (a handful at most).
import { migrations } from "./migrations.js";

export const PATH_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the schema before versions",
    up: "CREATE TABLE IF NOT EXISTS mapping (id INTEGER PRIMARY KEY CHECK (id = 1), scope TEXT NOT NULL, permissions INTEGER NOT NULL)",
  },
  {
    version: 2,
    about: "scopes the path left, until they are told (their path list and watchers)",
    up: "CREATE TABLE IF NOT EXISTS untold (scope TEXT PRIMARY KEY) WITHOUT ROWID",
  },
]);

export const PATH_SQL = {
  mappingGet: "SELECT scope, permissions FROM mapping WHERE id = 1",
  mappingPut: `INSERT INTO mapping (id, scope, permissions) VALUES (1, ?, ?)
    ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, permissions = excluded.permissions`,
  mappingDelete: "DELETE FROM mapping",
  untoldAdd: "INSERT OR IGNORE INTO untold (scope) VALUES (?)",
  untoldList: "SELECT scope FROM untold",
  untoldDone: "DELETE FROM untold WHERE scope = ?",
} as const;
