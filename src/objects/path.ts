// PathObject: one per normalised connection path, holding the scope it maps to
// and the permissions it grants. Resolving a path touches only its own object.
import { meteredSql } from "../metrics/billing.js";
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
    this.sql = meteredSql(ctx.storage.sql);
    migrate(ctx.storage, PATH_MIGRATIONS);
  }

  get(): PathMapping | null {
    const row = this.sql.exec(PATH_SQL.mappingGet).toArray()[0];
    return row ? { scope: row.scope as string, permissions: row.permissions as number } : null;
  }

  /**
   * Sets the mapping. Returns the previous one, and every scope the path left
   * that has not been told yet (this change's, and any an earlier failed call
   * left behind): the caller tells each (ScopeObject.deletePath, which also
   * invalidates its watchers' ResolveScope answers), then calls told().
   */
  put(mapping: PathMapping): { previous: PathMapping | null; untold: string[] } {
    const previous = this.get();
    this.sql.exec(PATH_SQL.mappingPut, mapping.scope, mapping.permissions);
    if (previous && previous.scope !== mapping.scope) this.sql.exec(PATH_SQL.untoldAdd, previous.scope);
    // A path moved back to a scope not yet told it left: that scope is told by putPath instead.
    this.sql.exec(PATH_SQL.untoldDone, mapping.scope);
    return { previous, untold: this.untold() };
  }

  /** Removes the mapping; as put, the scopes still to tell (the one it had included). */
  delete(): { previous: PathMapping | null; untold: string[] } {
    const previous = this.get();
    this.sql.exec(PATH_SQL.mappingDelete);
    if (previous) this.sql.exec(PATH_SQL.untoldAdd, previous.scope);
    return { previous, untold: this.untold() };
  }

  /** The scope now knows the path left it. */
  told(scope: string): void {
    this.sql.exec(PATH_SQL.untoldDone, scope);
  }

  private untold(): string[] {
    return this.sql
      .exec(PATH_SQL.untoldList)
      .toArray()
      .map((r) => r.scope as string);
  }
}
