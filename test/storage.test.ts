// Storage layout: tuple keys, and the query plan of every named statement of
// every Durable Object (objects/*-sql.ts).
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { decodeTuple, encodeTuple, encodeTupleWithPrefixes, prefixUpperBound } from "../src/model/tuple.js";
import { DIRECTORY_SQL, LISTING_SQL } from "../src/objects/directory-sql.js";
import { MIGRATION_SQL } from "../src/objects/migrations.js";
import { PATH_SQL } from "../src/objects/path-sql.js";
import { RELAY_SQL } from "../src/objects/relay-sql.js";
import { type DescribeList, type OwnedStatement, OWNED_SQL, PAGE_SQL, RELAY_OWNED_TABLES, SCOPE_SQL } from "../src/objects/scope-sql.js";
import { directoryStub, leaseClockStub, pathStub, relayStub, scopeStub, watchBranchStub } from "../src/objects/stubs.js";
import { LEASE_CLOCK_SQL } from "../src/objects/lease-clock-sql.js";
import { WATCH_BRANCH_SQL } from "../src/objects/watch-branch-sql.js";
import { tablesOf } from "./objects.js";

const b = (s: string) => new TextEncoder().encode(s);

describe("tuple keys", () => {
  it("round-trips fields with 0x00 and 0xFF bytes", () => {
    const fields = [Uint8Array.of(0, 0xff, 0), b(""), Uint8Array.of(0xff), b("live")];
    expect(decodeTuple(encodeTuple(fields))).toEqual(fields);
  });

  it("keeps field boundaries: [a] is a prefix of [a, b] but not of [a\\0] or [ab]", () => {
    const a = encodeTuple([b("a")]);
    const within = (k: Uint8Array) => {
      const hi = prefixUpperBound(a);
      return Buffer.compare(k, a) >= 0 && Buffer.compare(k, hi) < 0;
    };
    expect(within(encodeTuple([b("a"), b("b")]))).toBe(true);
    expect(within(encodeTuple([b("a")]))).toBe(true);
    expect(within(encodeTuple([Uint8Array.of(0x61, 0)]))).toBe(false);
    expect(within(encodeTuple([b("ab")]))).toBe(false);
  });

  it("lists the encoding of every prefix", () => {
    const { key, prefixes } = encodeTupleWithPrefixes([b("x"), b("y")]);
    expect(prefixes.map((p) => decodeTuple(p))).toEqual([[], [b("x")], [b("x"), b("y")]]);
    expect(prefixes[2]).toEqual(key);
  });
});

/**
 * What a statement's plan must be:
 * - "index": it reads through an index (SEARCH ... USING an index or the
 *   primary key) and scans no table;
 * - "write": it writes by key without reading any table (an INSERT, an upsert);
 * - { scan }: it reads a whole table, and `scan` says why that is right.
 */
type Expect = "index" | "write" | { scan: string };

const RETIRED_SMALL = "retired holds at most RETIRED_KEPT + 1 rows (a few replaced epochs)";
const FIRST_PAGE = "the first page walks the table in key order and LIMIT stops the walk: no more rows than the page are read";

// `satisfies` makes each list name every statement of its module: a new
// statement does not compile until its plan is stated here.
/** A scope's Worker keys: at most AuthLimit.MAX_KEYS in its policy, plus the few replaced ones retiring. */
const SIGNING_KEYS_SMALL = "a scope's signing keys: at most 5 in the policy and the few retiring";

const SCOPE_PLANS = {
  configGet: "index",
  configPut: "write",
  authEnable: "write",
  signingKeys: { scan: SIGNING_KEYS_SMALL },
  signingKeyPut: "write",
  signingKeysReplace: { scan: SIGNING_KEYS_SMALL },
  signingKeyCurrent: { scan: SIGNING_KEYS_SMALL },
  signingKeysUnreplace: { scan: SIGNING_KEYS_SMALL },
  signingKeysClear: "write",
  signingKeyIssued: "index",
  signingKeyDelete: "index",
  metaScopeGet: "index",
  metaScopePut: "write",
  relayGet: "index",
  relayPut: "write",
  relayDelete: "index",
  relayAdoptEpoch: "index",
  relayDetailsPut: "index",
  longestRegistered: "index",
  hostsUnder: "index",
  subscribersOf: "index",
  trackOwner: "index",
  tracksOf: "index",
  tracksOfUpTo: "index",
  liveTrackSubscribers: "index",
  expireTrackSubscriptions: "index",
  nextTrackExpiry: "index",
  rebaseTrackExpiry: { scan: "a new rendezvous timeout restarts the clock of every lingering subscription: every row is written" },
  relayNamespaces: "index",
  relayTracks: "index",
  watchGet: "index",
  watchInit: "write",
  watchBump: "index",
  branchesAll: { scan: "the scope's watch branches: at most WATCH_BRANCHES rows (and any left by a former count), all of them wanted" },
  branchPut: "write",
  branchForget: "index",
  pathGet: "index",
  pathPut: "write",
  pathDelete: "index",
} as const satisfies Record<keyof typeof SCOPE_SQL, Expect>;

const OWNED_PLANS = {
  find: "index",
  put: "write",
  remove: "index",
  held: "index",
  purge: "index",
  purgeOtherEpochs: "index",
  adoptEpoch: "index",
} as const satisfies Record<OwnedStatement, Expect>;

const LISTING_PLANS = { toldGet: "index", toldPut: "write" } as const satisfies Record<keyof typeof LISTING_SQL, Expect>;

const MIGRATION_PLANS = { READ_VERSION: "index", WRITE_VERSION: "write" } as const satisfies Record<keyof typeof MIGRATION_SQL, Expect>;

const RELAY_PLANS = {
  leaseGet: "index",
  leasePut: "write",
  leaseExpiresPut: "index",
  leaseBeatPut: "index",
  leaseClosed: "index",
  activityPut: "index",
  stateLostMark: "index",
  stateLostClear: "index",
  scopeAdd: "write",
  scopeDelete: "index",
  scopeNames: { scan: "the answer is every scope the relay wrote to: the whole table" },
  scopeNamesFirst: { scan: FIRST_PAGE },
  scopeCount: { scan: "the count of the whole table, for the directory's note" },
  retiredFind: "index",
  retire: "write",
  retiredTrim: { scan: RETIRED_SMALL },
  retiredPurged: { scan: RETIRED_SMALL },
  purgePending: { scan: RETIRED_SMALL },
  revocationGet: "index",
  revocationPut: "write",
} as const satisfies Record<keyof typeof RELAY_SQL, Expect>;

const PATH_PLANS = {
  mappingGet: "index",
  mappingPut: "write",
  // SQLite empties the one-row table without reading it.
  mappingDelete: "write",
  untoldAdd: "write",
  untoldList: { scan: "the scopes a path left and not yet told: a handful at most, all of them wanted" },
  untoldDone: "index",
} as const satisfies Record<keyof typeof PATH_SQL, Expect>;

const DIRECTORY_PLANS = {
  scopeNote: "write",
  relayNote: "write",
  scopesFirst: { scan: FIRST_PAGE },
  scopesAfter: "index",
  relaysFirst: { scan: FIRST_PAGE },
  relaysAfter: "index",
  scopeCount: { scan: "the count of the whole table: ListScopes' total" },
  relayCount: { scan: "the count of the whole table: ListRelays' total" },
  livePeers: { scan: "the answer is every live relay in URL order: the table walked in key order, LIMIT stops the walk" },
  prune: "index",
  oldestLeft: "index",
  oldestExpiry: "index",
  revokedFind: "index",
  revokedPut: "write",
  revokedCount: { scan: "the count of the whole table, against MAX_REVOKED_RELAYS on a revocation" },
  revokedAll: { scan: "the answer is the whole list, which an isolate reads only when its version changed" },
  revokedVersionGet: "index",
  revokedVersionBump: "write",
} as const satisfies Record<keyof typeof DIRECTORY_SQL, Expect>;

const WATCH_BRANCH_PLANS = { get: "index", put: "write" } as const satisfies Record<keyof typeof WATCH_BRANCH_SQL, Expect>;

const LEASE_CLOCK_PLANS = {
  all: { scan: "every relay the clock watches, read once when the clock starts" },
  add: "write",
  remove: "index",
} as const satisfies Record<keyof typeof LEASE_CLOCK_SQL, Expect>;

type Case = { name: string; sql: string; expect: Expect };

/** Statements whose text depends on a namespace's prefix count (IN lists, one arm per prefix) are checked at 3. */
const text = (s: string | ((n: number) => string)) => (typeof s === "function" ? s(3) : s);

function cases(prefix: string, sql: Record<string, string | ((n: number) => string)>, plans: Record<string, Expect>): Case[] {
  // Both ways: a statement without a stated plan, or a plan for no statement, fails here too.
  expect(Object.keys(plans).sort(), prefix).toEqual(Object.keys(sql).sort());
  return Object.entries(sql).map(([name, s]) => ({ name: `${prefix}.${name}`, sql: text(s), expect: plans[name] }));
}

const SCOPE_CASES = (): Case[] => [
  ...cases("SCOPE_SQL", SCOPE_SQL, SCOPE_PLANS),
  ...RELAY_OWNED_TABLES.flatMap((t) => cases(`OWNED_SQL.${t}`, OWNED_SQL[t], OWNED_PLANS)),
  ...(Object.keys(PAGE_SQL) as DescribeList[]).flatMap((list) =>
    cases(`PAGE_SQL.${list}`, PAGE_SQL[list], { first: { scan: FIRST_PAGE }, after: "index" }),
  ),
  ...cases("LISTING_SQL", LISTING_SQL, LISTING_PLANS),
  ...cases("MIGRATION_SQL", MIGRATION_SQL, MIGRATION_PLANS),
];

/** Binds one null per parameter (?, or ?N numbered): plans are made before values are bound. */
function parameters(sql: string): null[] {
  const numbered = [...sql.matchAll(/\?(\d+)/g)].map((m) => Number(m[1]));
  const n = numbered.length > 0 ? Math.max(...numbered) : (sql.match(/\?/g) ?? []).length;
  return Array.from({ length: n }, () => null);
}

/** EXPLAIN QUERY PLAN of each case inside the object, with the object's table names. */
async function plans(stub: DurableObjectStub, list: Case[]) {
  return runInDurableObject(stub, (_o: unknown, state: DurableObjectState) => {
    const sql = state.storage.sql;
    const tables = new Set(tablesOf(sql));
    return list.map((c) => ({
      ...c,
      plan: sql
        .exec(`EXPLAIN QUERY PLAN ${c.sql}`, ...parameters(c.sql))
        .toArray()
        .map((r) => String(r.detail)),
      tables,
    }));
  });
}

function check(results: Awaited<ReturnType<typeof plans>>): void {
  for (const { name, sql, expect: want, plan, tables } of results) {
    const shown = `${name}: ${plan.join(" | ") || "(no plan)"}`;
    expect(sql, name).not.toMatch(/\b(LIKE|GLOB)\b/i);
    // "SCAN t" reads all of table t, through an index or not ("SCAN" of a CTE or subquery is not a table).
    const scanned = plan.filter((d) => /^SCAN /.test(d) && tables.has(d.split(" ")[1]));
    if (want === "index") {
      expect(
        plan.some((d) => /^SEARCH \w+ USING (COVERING )?(INDEX|PRIMARY KEY|INTEGER PRIMARY KEY)/.test(d)),
        shown,
      ).toBe(true);
      expect(scanned, shown).toEqual([]);
    } else if (want === "write") {
      expect(plan, shown).toEqual([]);
    } else {
      // A full scan stated as correct must be one, and say why.
      expect(scanned.length, shown).toBeGreaterThan(0);
      expect(want.scan.length, name).toBeGreaterThan(20);
    }
  }
}

describe("query plans: every named statement of every Durable Object", () => {
  it("ScopeObject (and its directory note, and the migration runner): indexes, writes by key, scans only where stated", async () => {
    const results = await plans(scopeStub(env, "plans"), SCOPE_CASES());
    check(results);
    // DescribeScope's pages come in key order from the primary key, and a Lookup's longest match from one seek per prefix: never sorted apart.
    for (const r of results.filter((r) => r.name.startsWith("PAGE_SQL.") || r.name === "SCOPE_SQL.longestRegistered")) {
      expect(r.plan.join(" | "), r.name).not.toMatch(/TEMP B-TREE/);
    }
  });

  it("RelayObject", async () => {
    check(
      await plans(relayStub(env, "https://plans.example/"), [
        ...cases("RELAY_SQL", RELAY_SQL, RELAY_PLANS),
        ...cases("LISTING_SQL", LISTING_SQL, LISTING_PLANS),
      ]),
    );
  });

  it("PathObject", async () => {
    check(await plans(pathStub(env, "/plans"), cases("PATH_SQL", PATH_SQL, PATH_PLANS)));
  });

  it("WatchBranchObject", async () => {
    check(await plans(watchBranchStub(env, "plans"), cases("WATCH_BRANCH_SQL", WATCH_BRANCH_SQL, WATCH_BRANCH_PLANS)));
  });

  it("LeaseClockObject", async () => {
    check(await plans(leaseClockStub(env, "plans"), cases("LEASE_CLOCK_SQL", LEASE_CLOCK_SQL, LEASE_CLOCK_PLANS)));
  });

  it("DirectoryObject: pages in key order, never sorted apart", async () => {
    const results = await plans(directoryStub(env), cases("DIRECTORY_SQL", DIRECTORY_SQL, DIRECTORY_PLANS));
    check(results);
    for (const r of results.filter((r) => /First|After/.test(r.name))) expect(r.plan.join(" | "), r.name).not.toMatch(/TEMP B-TREE/);
  });
});
