// The runtime's floor for one Lookup: a Worker that reads a small POST body,
// makes one RPC call to a SQLite Durable Object with it, and answers a small
// body. Nothing else: no routing library, auth, protobuf or metrics. bench/ab.mjs
// serves it on bare workerd beside moq-worker (never part of the production
// bundle) to show what one Worker → Durable Object call costs by itself, and so
// how close to GET /healthz's rate any design with one such call per request can get.
//
//   POST /post   no object: the body is read and its length answered (what
//                any POST costs the runtime before a Durable Object is called)
//   POST /noop   the object's method returns its argument's length
//   POST /sql    the same, plus one SELECT by primary key on a one-row table
//   POST /insert the same, plus one INSERT of a new row (a write: what every
//                RegisterNamespace makes), instead of the SELECT
//   POST /claim  the same, but the write is the one RegisterNamespace makes:
//                a new row of a table shaped like ScopeObject's namespaces
//                (src/objects/scope-sql.ts: a blob key, relay, epoch, id,
//                time, and its per-relay index) by the claim's own statement
//                (OWNED_SQL.namespaces.put), a fresh key and UUID each call;
//                it is sent the namespaces a register sends, so its keys land
//                across the table as a register's do. In bench/ab.mjs its
//                cost falls round by round within a run (docs/performance.md,
//                "The runtime's floor"): the route run alone gives
//                the steady figure
//   GET /healthz the launcher's readiness probe
import { DurableObject } from "cloudflare:workers";

export class FloorObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
    this.sql.exec("INSERT OR IGNORE INTO kv (k, v) VALUES (x'01', 'https://relay.floor.test/')");
    this.sql.exec("CREATE TABLE IF NOT EXISTS writes (id INTEGER PRIMARY KEY, k BLOB NOT NULL)");
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS claims (ns_key BLOB PRIMARY KEY, relay TEXT NOT NULL, epoch TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID",
    );
    this.sql.exec("CREATE INDEX IF NOT EXISTS claims_by_relay_key ON claims (relay, ns_key)");
    this.claimed = 0;
  }

  noop(arg) {
    return arg.byteLength;
  }

  select(arg) {
    const row = this.sql.exec("SELECT v FROM kv WHERE k = ?", new Uint8Array([1]).buffer).toArray()[0];
    return row.v.length + arg.byteLength;
  }

  claim(arg) {
    // The argument and a counter: a new key each call (rounds repeat their bodies), as each benchmarked register is a new namespace.
    const key = new Uint8Array(arg.byteLength + 4);
    key.set(arg);
    new DataView(key.buffer).setUint32(arg.byteLength, ++this.claimed);
    const row = this.sql
      .exec(
        `INSERT INTO claims (ns_key, relay, epoch, id, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (ns_key) DO UPDATE SET epoch = excluded.epoch WHERE claims.relay = excluded.relay RETURNING id`,
        key.buffer,
        "https://relay-ab-0.bench.test/",
        "bench-epoch",
        crypto.randomUUID(),
        Date.now(),
      )
      .toArray()[0];
    return row.id.length;
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
    // null: the route calls no object.
    const method = { "/post": null, "/noop": "noop", "/sql": "select", "/insert": "insert", "/claim": "claim" }[path];
    if (method === undefined || request.method !== "POST") return new Response("not found", { status: 404 });
    const arg = new Uint8Array(await request.arrayBuffer());
    if (method === null) return new Response(String(arg.byteLength));
    const stub = env.FLOOR.get(env.FLOOR.idFromName("floor"));
    const n = await stub[method](arg);
    return new Response(String(n));
  },
};
