// PathObject: one per normalised connection path, holding the scope it maps to
// and the permissions it grants. Resolving a path touches only its own object.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.js";
import { migrate } from "./migrations.js";
import { PATH_MIGRATIONS, PATH_SQL } from "./path-sql.js";

export interface PathMapping {
  scope: string;
  permissions: number;
}

export class PathObject extends DurableObject<Env> {
  private sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrate(ctx.storage, PATH_MIGRATIONS);
  }

  get(): PathMapping | null {
    const row = this.sql.exec(PATH_SQL.mappingGet).toArray()[0];
    return row ? { scope: row.scope as string, permissions: row.permissions as number } : null;
  }

  /** Sets the mapping; returns the previous one (its scope must drop the path from its list). */
  put(mapping: PathMapping): PathMapping | null {
    const previous = this.get();
    this.sql.exec(PATH_SQL.mappingPut, mapping.scope, mapping.permissions);
    return previous;
  }

  delete(): PathMapping | null {
    const previous = this.get();
    this.sql.exec(PATH_SQL.mappingDelete);
    return previous;
  }
}
