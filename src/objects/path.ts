// PathObject: one per normalised connection path, holding the scope it maps to
// and the permissions it grants. Resolving a path touches only its own object.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";

export interface PathMapping {
  scope: string;
  permissions: number;
}

export class PathObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS mapping (id INTEGER PRIMARY KEY CHECK (id = 1), scope TEXT NOT NULL, permissions INTEGER NOT NULL)",
    );
  }

  get(): PathMapping | null {
    const row = this.sql.exec("SELECT scope, permissions FROM mapping WHERE id = 1").toArray()[0];
    return row ? { scope: row.scope as string, permissions: row.permissions as number } : null;
  }

  /** Sets the mapping; returns the previous one (its scope must drop the path from its list). */
  put(mapping: PathMapping): PathMapping | null {
    const previous = this.get();
    this.sql.exec(
      `INSERT INTO mapping (id, scope, permissions) VALUES (1, ?, ?)
       ON CONFLICT (id) DO UPDATE SET scope = excluded.scope, permissions = excluded.permissions`,
      mapping.scope, mapping.permissions,
    );
    return previous;
  }

  delete(): PathMapping | null {
    const previous = this.get();
    this.sql.exec("DELETE FROM mapping");
    return previous;
  }
}
