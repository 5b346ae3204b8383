// Schema migrations (objects/migrations.ts): the runner's rules, and every
// object's migrations applied to a database as the code before versions left
// it (commit 3864184, test/old-schemas.ts), with rows in it.
import { describe, expect, it } from "vitest";
import { env, evictDurableObject, runInDurableObject } from "cloudflare:test";
import { encodeTuple, toBlob } from "../src/model/tuple.js";
import { DIRECTORY_MIGRATIONS } from "../src/objects/directory-sql.js";
import { migrate, migrations, schemaVersion, type Migration } from "../src/objects/migrations.js";
import { PATH_MIGRATIONS } from "../src/objects/path-sql.js";
import { RELAY_MIGRATIONS } from "../src/objects/relay-sql.js";
import { FIRST_PAGE } from "../src/objects/scope-describe.js";
import { SCOPE_MIGRATIONS } from "../src/objects/scope-sql.js";
import { pathStub, relayStub, scopeStub } from "../src/objects/stubs.js";
import { DIRECTORY_3864184, LISTING_3864184, PATH_3864184, RELAY_3864184, SCOPE_3864184 } from "./old-schemas.js";
import { dumpObject, tablesOf } from "./objects.js";

const utf8 = (s: string) => new TextEncoder().encode(s);
const key = (...fields: string[]) => toBlob(encodeTuple(fields.map(utf8)));

/** Replaces the object's database with `build` (its tables dropped first), then evicts the instance. */
async function rebuild(stub: DurableObjectStub, build: (sql: SqlStorage) => void): Promise<void> {
  await runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => {
    const sql = state.storage.sql;
    for (const t of tablesOf(sql)) sql.exec(`DROP TABLE "${t}"`);
    build(sql);
  });
  // The next call starts a new instance, whose constructor migrates.
  await evictDurableObject(stub);
}

const versionOf = (stub: DurableObjectStub) =>
  runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => schemaVersion(state.storage.sql));

describe("the migration runner", () => {
  /** Runs `fn` on a database with no tables at all (a throwaway object's, emptied). */
  const onBareDatabase = (fn: (state: DurableObjectState) => void) =>
    runInDurableObject(pathStub(env, `/migration-runner/${crypto.randomUUID()}`), (_o: unknown, state: DurableObjectState) => {
      for (const t of tablesOf(state.storage.sql)) state.storage.sql.exec(`DROP TABLE "${t}"`);
      fn(state);
    });

  it("applies each step once, in order, and records the version with it", async () => {
    await onBareDatabase((state) => {
      const ran: number[] = [];
      const steps: Migration[] = [
        { version: 1, about: "table", up: "CREATE TABLE t (a INTEGER)" },
        {
          version: 2,
          about: "row",
          up: (sql) => {
            ran.push(2);
            sql.exec("INSERT INTO t (a) VALUES (2)");
          },
        },
      ];
      expect(migrate(state.storage, migrations(steps))).toBe(2);
      expect(migrate(state.storage, migrations(steps))).toBe(2);
      expect(ran).toEqual([2]);
      const more = [...steps, { version: 3, about: "another row", up: "INSERT INTO t (a) VALUES (3)" }];
      expect(migrate(state.storage, migrations(more))).toBe(3);
      expect(
        state.storage.sql
          .exec("SELECT a FROM t ORDER BY a")
          .toArray()
          .map((r) => r.a),
      ).toEqual([2, 3]);
      expect(schemaVersion(state.storage.sql)).toBe(3);
    });
  });

  it("rolls a failing step back whole, version included, and stops there", async () => {
    await onBareDatabase((state) => {
      const steps = migrations([
        { version: 1, about: "table", up: "CREATE TABLE t (a INTEGER)" },
        { version: 2, about: "half done", up: "CREATE TABLE u (b INTEGER); INSERT INTO t (a) VALUES (1); INSERT INTO missing VALUES (1)" },
        { version: 3, about: "never reached", up: "CREATE TABLE v (c INTEGER)" },
      ]);
      expect(() => migrate(state.storage, steps)).toThrow(/schema migration 2 \(half done\) failed/);
      expect(schemaVersion(state.storage.sql)).toBe(1);
      expect(tablesOf(state.storage.sql)).toEqual(["schema_version", "t"]);
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM t").one().n).toBe(0);
    });
  });

  it("leaves a database newer than its steps as it is", async () => {
    await onBareDatabase((state) => {
      migrate(state.storage, migrations([1, 2, 3].map((v) => ({ version: v, about: `step ${v}`, up: `CREATE TABLE t${v} (a)` }))));
      const older = migrations([{ version: 1, about: "step 1", up: "CREATE TABLE t1 (a)" }]);
      expect(migrate(state.storage, older)).toBe(3);
    });
  });

  it("refuses steps not numbered 1, 2, 3, … in order", () => {
    expect(() => migrations([{ version: 2, about: "gap", up: "" }])).toThrow(/numbered 2, expected 1/);
    const one = { version: 1, about: "one", up: "" };
    expect(() => migrations([one, one])).toThrow(/numbered 1, expected 2/);
  });
});

describe("migrating databases the code before versions left (commit 3864184)", () => {
  const relayUrl = "https://old-relay.example/";

  for (const scope of ["migrated-scope", null]) {
    it(`ScopeObject (${scope === null ? "unscoped" : "a scope"}): every row survives, meta names the object, version ${SCOPE_MIGRATIONS.length}`, async () => {
      // The unscoped object is this file's own: no other test here writes to it.
      const stub = scopeStub(env, scope);
      await rebuild(stub, (sql) => {
        sql.exec(SCOPE_3864184);
        sql.exec(LISTING_3864184);
        sql.exec("INSERT INTO meta (k, v) VALUES ('scope', ?)", scope === null ? "" : `=${scope}`);
        sql.exec(
          "INSERT INTO config (id, origin_fallback, lingering_subscribe, rendezvous_timeout_ms) VALUES (1, 'https://fallback.example/', 1, 5000)",
        );
        sql.exec("INSERT INTO relays (url, epoch, addrs) VALUES (?, 'e1', '[\"192.0.2.1:4443\"]')", relayUrl);
        sql.exec("INSERT INTO namespaces VALUES (?, ?, 'e1', 'ns-id', 1000)", key("live", "main"), relayUrl);
        sql.exec("INSERT INTO tracks VALUES (?, 'video', ?, 'e1', 'tr-id', 1001)", key("live", "main"), relayUrl);
        sql.exec("INSERT INTO namespace_subscriptions VALUES (?, ?, 'e1', 'ns-sub-id', 1002)", key("live"), relayUrl);
        sql.exec(
          "INSERT INTO track_subscriptions VALUES (?, 'audio', ?, 'e1', 'tr-sub-id', 1003, 99999999999999)",
          key("live", "b"),
          relayUrl,
        );
        sql.exec("INSERT INTO paths (path, permissions) VALUES ('/old', 1)");
        sql.exec("INSERT INTO directory_listing (id, told) VALUES (1, 'listed')");
      });
      // The new instance has migrated: the rows answer calls as before.
      const found = await stub.lookup(encodeTuple([utf8("live"), utf8("main"), utf8("cam")]));
      // live/main, the first 2 of the 3 fields asked.
      expect(found).toEqual({ depth: 2, url: relayUrl, addr: "192.0.2.1:4443" });
      const d = await stub.describe(10, FIRST_PAGE);
      expect(d?.config).toEqual({ originFallback: "https://fallback.example/", lingeringSubscribe: true, rendezvousTimeoutMs: 5000 });
      expect([
        d?.paths.length,
        d?.namespaces.length,
        d?.tracks.length,
        d?.namespaceSubscriptions.length,
        d?.trackSubscriptions.length,
      ]).toEqual([1, 1, 1, 1, 1]);
      expect(await stub.lookupTrackSubscribers([utf8("live"), utf8("b")], "audio")).toEqual([{ url: relayUrl, addr: "192.0.2.1:4443" }]);
      const after = await dumpObject(stub);
      expect(after.schema_version).toEqual([{ id: 1, version: SCOPE_MIGRATIONS.length }]);
      expect(after.meta).toEqual([{ k: "scope", v: scope === null ? "unscoped" : `scope:${scope}` }]);
      // Byte for byte, the other tables are what the old code stored.
      expect(after.namespaces).toEqual([{ ns_key: hex(key("live", "main")), relay: relayUrl, epoch: "e1", id: "ns-id", created_at: 1000 }]);
      expect(after.tracks).toEqual([
        { ns_key: hex(key("live", "main")), name: "video", relay: relayUrl, epoch: "e1", id: "tr-id", created_at: 1001 },
      ]);
      expect(after.namespace_subscriptions).toEqual([
        { prefix_key: hex(key("live")), relay: relayUrl, epoch: "e1", id: "ns-sub-id", created_at: 1002 },
      ]);
      expect(after.track_subscriptions).toEqual([
        {
          ns_key: hex(key("live", "b")),
          name: "audio",
          relay: relayUrl,
          epoch: "e1",
          id: "tr-sub-id",
          created_at: 1003,
          expires_at: 99999999999999,
        },
      ]);
      // Step 4: the relay has not said its MoQT versions yet.
      expect(after.relays).toEqual([{ url: relayUrl, epoch: "e1", addrs: '["192.0.2.1:4443"]', versions: "[]" }]);
      expect(after.paths).toEqual([{ path: "/old", permissions: 1 }]);
      expect(after.directory_listing).toEqual([{ id: 1, told: "listed" }]);
    });
  }

  it(`RelayObject: lease, scopes and retired epochs survive, version ${RELAY_MIGRATIONS.length}`, async () => {
    const stub = relayStub(env, relayUrl);
    const expiresAt = Date.now() + 3_600_000;
    await rebuild(stub, (sql) => {
      sql.exec(RELAY_3864184);
      sql.exec(LISTING_3864184);
      sql.exec("INSERT INTO lease VALUES (1, ?, 'e2', '[\"192.0.2.1:4443\"]', ?, 1234)", relayUrl, expiresAt);
      sql.exec("INSERT INTO scopes (name) VALUES ('scope:a'), ('unscoped')");
      sql.exec("INSERT INTO retired VALUES ('e1', 500, 1)");
      sql.exec("INSERT INTO directory_listing (id, told) VALUES (1, 'up e2')");
    });
    expect(await stub.view()).toEqual({
      url: relayUrl,
      epoch: "e2",
      addrs: ["192.0.2.1:4443"],
      // Step 5: no MoQT versions said yet.
      versions: [],
      expiresAt,
      lastBeatAt: 1234,
      alive: true,
      scopes: ["scope:a", "unscoped"],
    });
    // The retired epoch is still refused.
    expect(await stub.enlist(relayUrl, "scope:a", "e1", Date.now())).toMatchObject({ ok: false });
    expect(await versionOf(stub)).toBe(RELAY_MIGRATIONS.length);
  });

  it(`PathObject: the mapping survives, version ${PATH_MIGRATIONS.length}`, async () => {
    const stub = pathStub(env, "/old-path");
    await rebuild(stub, (sql) => {
      sql.exec(PATH_3864184);
      sql.exec("INSERT INTO mapping VALUES (1, 'tenant', 2)");
    });
    expect(await stub.get()).toEqual({ scope: "tenant", permissions: 2 });
    expect(await versionOf(stub)).toBe(PATH_MIGRATIONS.length);
  });

  it(`DirectoryObject: scopes and relays survive, version ${DIRECTORY_MIGRATIONS.length}`, async () => {
    const stub = env.DIRECTORY.get(env.DIRECTORY.idFromName(`directory-migration-${crypto.randomUUID()}`));
    await rebuild(stub, (sql) => {
      sql.exec(DIRECTORY_3864184);
      sql.exec("INSERT INTO scopes VALUES ('', 10), ('tenant', 11)");
      sql.exec("INSERT INTO relays VALUES (?, 'e2', 1, 12, 13)", relayUrl);
    });
    expect(await stub.listScopes(10, undefined)).toEqual({ names: ["", "tenant"], more: false, total: 2 });
    // Step 2 adds what a RelayObject notes; until its next note the entry has no lease expiry, so it is not alive.
    expect(await stub.listRelays(10, undefined)).toEqual({
      relays: [
        {
          url: relayUrl,
          epoch: "e2",
          alive: false,
          addrs: [],
          // Step 5: no MoQT versions noted yet.
          versions: [],
          expiresAt: 0,
          lastBeatAt: null,
          scopes: [],
          scopeCount: 0,
          firstSeenAt: 12,
          changedAt: 13,
          // Step 4: no activity reported yet.
          activity: null,
        },
      ],
      more: false,
      total: 1,
    });
    expect(await versionOf(stub)).toBe(DIRECTORY_MIGRATIONS.length);
  });
});

function hex(v: ArrayBuffer): string {
  return [...new Uint8Array(v)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
