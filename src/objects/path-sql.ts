// Every SQL statement of a PathObject, named (test/storage.test.ts checks each
// one's query plan). Its one table holds at most one row.
import { migrations } from "./migrations.js";

export const PATH_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the schema before versions",
    up: "CREATE TABLE IF NOT EXISTS mapping (id INTEGER PRIMARY KEY CHECK (id = 1), scope TEXT NOT NULL, permissions INTEGER NOT NULL)",
  },
]);

export const PATH_SQL = {
  mappingGet: "SELECT scope, permissions FROM mapping WHERE id = 1",
  mappingPut: `INSERT INTO mapping (id, scope, permissions) VALUES (1, ?, ?)
    ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, permissions = excluded.permissions`,
  mappingDelete: "DELETE FROM mapping",
} as const;
