// The runtime's floor for one Lookup: a Worker that reads a small POST body,
// makes one RPC call to a SQLite Durable Object with it, and answers a small
// body. Nothing else: no routing library, auth, protobuf or metrics. bench/ab.mjs
// serves it on bare workerd beside moq-worker (never part of the production
// bundle) to show what one Worker → Durable Object call costs by itself, and so
// how close to GET /healthz's rate any design with one such call per request can get.
//
//   POST /noop   the object's method returns its argument's length
//   POST /sql    the same, plus one SELECT by primary key on a one-row table
//   POST /insert the same, plus one INSERT of a new row (a write: what every
//                RegisterNamespace makes), instead of the SELECT
//   GET /healthz the launcher's readiness probe
import { DurableObject } from "cloudflare:workers";

export class FloorObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
    this.sql.exec("INSERT OR IGNORE INTO kv (k, v) VALUES (x'01', 'https://relay.floor.test/')");
    this.sql.exec("CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY, k BLOB NOT NULL)");
  }

  noop(arg) {
    return arg.byteLength;
  }

  select(arg) {
    const row = this.sql.exec("SELECT v FROM kv WHERE k = ?", new Uint8Array([1]).buffer).toArray()[0];
    return row.v.length + arg.byteLength;
  }

  insert(arg) {
    // A copy, as ScopeObject binds keys (toBlob): an argument's view may sit on a larger buffer.
    return this.sql.exec("INSERT INTO writes (k) VALUES (?)", arg.slice().buffer).rowsWritten + arg.byteLength;
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/healthz") return new Response("ok");
    const method = { "/noop": "noop", "/sql": "select", "/insert": "insert" }[path];
    if (method === undefined || request.method !== "POST") return new Response("not found", { status: 404 });
    const arg = new Uint8Array(await request.arrayBuffer());
    const stub = env.FLOOR.get(env.FLOOR.idFromName("floor"));
    const n = await stub[method](arg);
    return new Response(String(n));
  },
};
