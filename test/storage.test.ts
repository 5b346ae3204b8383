// Storage layout: tuple keys, and every hot query answered from an index.
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { decodeTuple, encodeTuple, encodeTupleWithPrefixes, prefixUpperBound, toBlob } from "../src/model/tuple.js";
import type { ScopeObject } from "../src/objects/scope.js";
import { HOT_QUERIES, RELAY_OWNED_TABLES } from "../src/objects/scope-schema.js";

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

describe("query plans", () => {
  it("answers every hot query from an index: no full scan, no LIKE/GLOB", async () => {
    const stub = env.SCOPES.get(env.SCOPES.idFromName("scope:plans"));
    const key = toBlob(encodeTuple([b("a"), b("b")]));
    // Bindings shaped like the real calls; the plan does not depend on their values.
    const cases: [string, string, SqlStorageValue[]][] = [
      ["longestRegistered", HOT_QUERIES.longestRegistered(3), [key, key, key]],
      ["hostsUnder", HOT_QUERIES.hostsUnder, [key, key]],
      ["subscribersOf", HOT_QUERIES.subscribersOf(3), [key, key, key]],
      ["trackOwner", HOT_QUERIES.trackOwner, [key, "t"]],
      ["tracksOf", HOT_QUERIES.tracksOf, [key]],
      ["liveTrackSubscribers", HOT_QUERIES.liveTrackSubscribers, [key, "t", 0]],
      ["expireTrackSubscriptions", HOT_QUERIES.expireTrackSubscriptions, [0]],
      ["nextTrackExpiry", HOT_QUERIES.nextTrackExpiry, []],
      ...RELAY_OWNED_TABLES.flatMap((t): [string, string, SqlStorageValue[]][] => [
        [`purgeRelay(${t})`, HOT_QUERIES.purgeRelay(t), ["r"]],
        [`purgeRelayEpoch(${t})`, HOT_QUERIES.purgeRelayEpoch(t), ["r", "e"]],
      ]),
    ];
    const checked = new Set(cases.map(([name]) => name.replace(/\(.*/, "")));
    expect([...checked].sort()).toEqual(Object.keys(HOT_QUERIES).sort());
    const plans = await runInDurableObject(stub, (o: ScopeObject) =>
      cases.map(([name, sql, args]) => [name, sql, o.explain(sql, ...args).join(" | ")] as const),
    );
    for (const [name, sql, plan] of plans) {
      expect(sql, name).not.toMatch(/\b(LIKE|GLOB)\b/i);
      // "SEARCH <table> USING ..." is an index lookup; "SCAN <table>" without USING is a full scan.
      expect(plan, `${name}: ${plan}`).toMatch(/SEARCH \w+ USING (COVERING )?(INDEX|PRIMARY KEY)/);
      // A full scan of a table reads "SCAN <table>" with no "USING" (a CTE's own rows may be scanned).
      expect(plan, `${name}: ${plan}`).not.toMatch(/SCAN (namespaces|tracks|namespace_subscriptions|track_subscriptions|relays|n)( |$)(?!USING)/);
    }
  });
});
