// Every SQL statement of the LeaseClockObject, named (test/storage.test.ts
// checks each statement's query plan by name).
import { migrations } from "./migrations.js";

export const LEASE_CLOCK_MIGRATIONS = migrations([
  {
    version: 1,
    about: "the relays a lease clock watches (their deadlines are kept in memory)",
    up: "CREATE TABLE IF NOT EXISTS watched (url TEXT PRIMARY KEY) WITHOUT ROWID",
  },
]);

export const LEASE_CLOCK_SQL = {
  all: "SELECT url FROM watched",
  add: "INSERT INTO watched (url) VALUES (?) ON CONFLICT (url) DO NOTHING",
  remove: "DELETE FROM watched WHERE url = ?",
} as const;
