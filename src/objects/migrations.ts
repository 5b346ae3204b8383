// Schema migrations of a Durable Object's SQLite database: an ordered list of
// numbered steps, each applied once, in its own transaction together with the
// new version number. The version lives in a one-row table `schema_version`
// (the runtime does not let objects use PRAGMA user_version).
//
// To change a schema, append a step; never edit a step that has been deployed,
// since databases that already ran it will not run it again. Step 1 of each
// object is its schema as it was before versions existed: written with
// IF NOT EXISTS so that on such a database it changes nothing.

export interface Migration {
  /** 1 for the first step, then 2, 3, …: its position in the list. */
  readonly version: number;
  /** What the step changes, for the error if it fails. */
  readonly about: string;
  /** SQL statements (no bindings), or code for changes SQL alone cannot say. */
  readonly up: string | ((sql: SqlStorage) => void);
}

const VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)";
const READ_VERSION = "SELECT version FROM schema_version WHERE id = 1";
const WRITE_VERSION = "INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version";

/** Statements of the runner itself, named for the query-plan test. */
export const MIGRATION_SQL = { READ_VERSION, WRITE_VERSION } as const;

/** Checks that the steps are numbered 1, 2, 3, … in order; returns them. */
export function migrations(steps: readonly Migration[]): readonly Migration[] {
  steps.forEach((step, i) => {
    if (step.version !== i + 1) throw new Error(`migration '${step.about}' is numbered ${step.version}, expected ${i + 1}`);
  });
  return steps;
}

/** The database's schema version: 0 before any step. */
export function schemaVersion(sql: SqlStorage): number {
  sql.exec(VERSION_TABLE);
  return (sql.exec(READ_VERSION).toArray()[0]?.version as number | undefined) ?? 0;
}

/**
 * Applies the steps the database has not run yet, in order; returns the
 * version reached. A failing step rolls back entirely (its changes and its
 * version number) and throws, so the object does not run on a half-changed
 * schema. A database newer than the steps (a rollback of the code) is left
 * as it is.
 */
export function migrate(storage: DurableObjectStorage, steps: readonly Migration[]): number {
  const sql = storage.sql;
  let version = schemaVersion(sql);
  for (const step of steps) {
    if (step.version <= version) continue;
    try {
      storage.transactionSync(() => {
        if (typeof step.up === "string") sql.exec(step.up);
        else step.up(sql);
        sql.exec(WRITE_VERSION, step.version);
      });
    } catch (err) {
      throw new Error(`schema migration ${step.version} (${step.about}) failed: ${String(err)}`);
    }
    version = step.version;
  }
  return version;
}
