// Property-based tests (fast-check) of the two pure encodings every access
// decision rests on: connection path normalisation and namespace tuple keys.
// Each is checked against an independent reference written differently from
// the code under test, on generated inputs aimed at the edges (unicode, '%',
// dots, slashes, lengths around 1024; bytes 0x00/0x01/0xFF).
//
// Runs are seeded so CI is reproducible; change SEED locally to explore other
// inputs (fast-check prints the seed and a shrunk counterexample on failure).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { env, runInDurableObject } from "cloudflare:test";
import { MAX_PATH_BYTES, normalizeConnectionPath } from "../src/model/path.js";
import { decodeTuple, encodeTuple, encodeTupleWithPrefixes, fieldEnds, prefixUpperBound, toBlob } from "../src/model/tuple.js";
import { scopeStub } from "../src/objects/stubs.js";

const SEED = 0x6d6f71;
const runs = (numRuns: number) => ({ seed: SEED, numRuns });

// ---- connection paths --------------------------------------------------------

type Rule = "utf8" | "length" | "leading-slash" | "empty-segment" | "percent" | "dot-segment";
type RefResult = { kind: "none" } | { kind: "path"; path: string } | { kind: "invalid"; rule: Rule; segment?: number };

/**
 * Reference normaliser, written as a one-pass state machine over UTF-16 code
 * units (no regex, no split). It follows docs/architecture.md "Connection paths":
 * empty or "/" → none; not UTF-8 → invalid; > 1024 UTF-8 bytes → invalid; no
 * leading '/' → invalid; trailing '/'s trimmed ("///" → none); then the first
 * segment that is empty, contains '%', or is '.'/'..' decides.
 */
function referenceNormalize(raw: string | undefined): RefResult {
  if (raw === undefined || raw === "" || raw === "/") return { kind: "none" };
  // Pass 1: UTF-8 length, and well-formedness (a lone surrogate has no UTF-8 form).
  let bytes = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < raw.length ? raw.charCodeAt(i + 1) : -1;
      if (next < 0xdc00 || next > 0xdfff) return { kind: "invalid", rule: "utf8" };
      bytes += 4;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return { kind: "invalid", rule: "utf8" };
    else bytes += 3;
  }
  if (bytes > MAX_PATH_BYTES) return { kind: "invalid", rule: "length" };
  if (raw[0] !== "/") return { kind: "invalid", rule: "leading-slash" };

  // Pass 2: states. "seg" = inside a non-empty segment; "slash" = just after a
  // separator with the new segment still empty; "gap" = saw '/' with an empty
  // segment open, which is only legal if nothing but '/' follows (trailing).
  let state: "slash" | "seg" | "gap" = "slash";
  let segment = 1; // index of the segment being read
  let text = ""; // its characters
  let hasPercent = false;
  let out = "";
  const finish = (): RefResult | undefined => {
    if (hasPercent) return { kind: "invalid", rule: "percent", segment };
    if (text === "." || text === "..") return { kind: "invalid", rule: "dot-segment", segment };
    out += `/${text}`;
    segment++;
    text = "";
    hasPercent = false;
    return undefined;
  };
  for (let i = 1; i < raw.length; i++) {
    const ch = raw[i];
    if (state === "seg") {
      if (ch === "/") {
        const bad = finish();
        if (bad) return bad;
        state = "slash";
      } else {
        text += ch;
        if (ch === "%") hasPercent = true;
      }
    } else if (ch === "/") {
      state = "gap";
    } else if (state === "gap") {
      return { kind: "invalid", rule: "empty-segment", segment };
    } else {
      state = "seg";
      text = ch;
      hasPercent = ch === "%";
    }
  }
  if (state === "seg") {
    const bad = finish();
    if (bad) return bad;
  }
  return out === "" ? { kind: "none" } : { kind: "path", path: out };
}

/** The implementation's result in the reference's terms (its reason text → rule). */
function actual(raw: string | undefined): RefResult {
  const r = normalizeConnectionPath(raw);
  if (r.kind !== "invalid") return r;
  const segment = /segment (\d+)/.exec(r.reason)?.[1];
  const rule: Rule | undefined = /UTF-8/.test(r.reason)
    ? "utf8"
    : /longer than/.test(r.reason)
      ? "length"
      : /start with/.test(r.reason)
        ? "leading-slash"
        : /is empty/.test(r.reason)
          ? "empty-segment"
          : /'%'/.test(r.reason)
            ? "percent"
            : /is '\.\.?'/.test(r.reason)
              ? "dot-segment"
              : undefined;
  if (rule === undefined) throw new Error(`unclassified reason: ${r.reason}`);
  return segment === undefined ? { kind: "invalid", rule } : { kind: "invalid", rule, segment: Number(segment) };
}

// Pieces that exercise every rule; joined at random they make hostile paths.
const PIECES = [
  "/",
  "/",
  "/",
  "//",
  ".",
  "..",
  "...",
  "%",
  "%2F",
  "%2E%2E",
  "a",
  "b",
  "abc",
  "a.b",
  " ",
  "\t",
  "?",
  "#",
  "\\",
  "\u00e9",
  "\u6f14",
  "\u{1f600}",
  "\ud800",
  "\udc00",
  "\u0000",
  "\u200b",
  "\ufeff",
];
const pieceString = fc.array(fc.constantFrom(...PIECES), { maxLength: 24 }).map((p) => p.join(""));
const slashFirst = pieceString.map((s) => `/${s}`);
// Lengths around the 1024-byte limit, with multi-byte characters straddling it.
const nearLimit = fc
  .tuple(
    fc.integer({ min: MAX_PATH_BYTES - 12, max: MAX_PATH_BYTES + 4 }),
    fc.constantFrom("a", "\u00e9", "\u6f14", "\u{1f600}", "/", "a/"),
    pieceString,
  )
  .map(([n, unit, tail]) => {
    let s = "/";
    while (new TextEncoder().encode(s + unit).length <= n) s += unit;
    return s + tail.slice(0, 3);
  });
const anyPath = fc.oneof(
  { weight: 3, arbitrary: slashFirst },
  { weight: 1, arbitrary: pieceString },
  { weight: 2, arbitrary: nearLimit },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }).map((s) => `/${s}`) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

describe("connection path normalisation (property)", () => {
  it("matches the reference state machine on hostile strings", () => {
    fc.assert(
      fc.property(anyPath, (raw) => {
        expect(actual(raw)).toEqual(referenceNormalize(raw));
      }),
      runs(3000),
    );
  });

  it("is idempotent: a normalised path normalises to itself", () => {
    fc.assert(
      fc.property(anyPath, (raw) => {
        const r = normalizeConnectionPath(raw);
        if (r.kind === "path") expect(normalizeConnectionPath(r.path)).toEqual(r);
      }),
      runs(1500),
    );
  });

  it("never yields a path that is too long, has '%', dot or empty segments, or ends in '/'", () => {
    fc.assert(
      fc.property(anyPath, (raw) => {
        const r = normalizeConnectionPath(raw);
        if (r.kind !== "path") return true;
        return (
          new TextEncoder().encode(r.path).length <= MAX_PATH_BYTES &&
          r.path.startsWith("/") &&
          !r.path.endsWith("/") &&
          !r.path.includes("%") &&
          r.path
            .slice(1)
            .split("/")
            .every((seg) => seg !== "" && seg !== "." && seg !== "..")
        );
      }),
      runs(3000),
    );
  });

  it("the reference itself agrees with hand-picked cases (so it can fail)", () => {
    expect(referenceNormalize("/a//b")).toEqual({ kind: "invalid", rule: "empty-segment", segment: 2 });
    expect(referenceNormalize("/a/%2E/")).toEqual({ kind: "invalid", rule: "percent", segment: 2 });
    expect(referenceNormalize("/a/../b")).toEqual({ kind: "invalid", rule: "dot-segment", segment: 2 });
    expect(referenceNormalize("///")).toEqual({ kind: "none" });
    expect(referenceNormalize("/a/b//")).toEqual({ kind: "path", path: "/a/b" });
    expect(referenceNormalize("/".repeat(1025))).toEqual({ kind: "invalid", rule: "length" });
    expect(referenceNormalize("x")).toEqual({ kind: "invalid", rule: "leading-slash" });
    expect(referenceNormalize("/\ud800")).toEqual({ kind: "invalid", rule: "utf8" });
  });
});

// ---- namespace tuple keys ------------------------------------------------------

// Bytes biased towards the encoding's special values (0x00 escape/terminator,
// 0x01 field marker, 0xFF escape/upper bound).
const byte = fc.oneof(fc.constantFrom(0x00, 0x01, 0x02, 0xfe, 0xff), fc.integer({ min: 0, max: 255 }));
const field = fc.array(byte, { maxLength: 6 }).map((b) => Uint8Array.from(b));
const tuple = fc.array(field, { maxLength: 5 });

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
/** Tuple order: field by field, a shorter tuple first when one is a prefix of the other. */
function compareTuples(a: Uint8Array[], b: Uint8Array[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = compareBytes(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}
const isFieldPrefix = (p: Uint8Array[], n: Uint8Array[]) => p.length <= n.length && p.every((f, i) => compareBytes(f, n[i]) === 0);
const inRange = (key: Uint8Array, prefixKey: Uint8Array) =>
  compareBytes(key, prefixKey) >= 0 && compareBytes(key, prefixUpperBound(prefixKey)) < 0;

describe("namespace key encoding (property)", () => {
  it("round-trips any tuple of arbitrary bytes", () => {
    fc.assert(
      fc.property(tuple, (t) => {
        expect(decodeTuple(encodeTuple(t))).toEqual(t);
      }),
      runs(3000),
    );
  });

  it("preserves order: byte order of keys is tuple order", () => {
    fc.assert(
      fc.property(tuple, tuple, (a, b) => {
        expect(Math.sign(compareBytes(encodeTuple(a), encodeTuple(b)))).toBe(Math.sign(compareTuples(a, b)));
      }),
      runs(5000),
    );
  });

  it("preserves the prefix relation: P is a field prefix of N iff key(N) is in P's range", () => {
    // Half the pairs are built as real prefixes so both sides of the iff are exercised.
    const pair = fc.oneof(
      fc.tuple(tuple, tuple),
      fc.tuple(tuple, fc.nat(5)).map(([n, k]) => [n.slice(0, Math.min(k, n.length)), n] as [Uint8Array[], Uint8Array[]]),
    );
    fc.assert(
      fc.property(pair, ([p, n]) => {
        expect(inRange(encodeTuple(n), encodeTuple(p))).toBe(isFieldPrefix(p, n));
      }),
      runs(5000),
    );
  });

  it("lists each prefix's key: prefixes[k] = key(first k fields)", () => {
    fc.assert(
      fc.property(tuple, (t) => {
        const { key, prefixes } = encodeTupleWithPrefixes(t);
        expect(prefixes).toHaveLength(t.length + 1);
        prefixes.forEach((p, k) => {
          expect(p).toEqual(encodeTuple(t.slice(0, k)));
        });
        expect(prefixes[t.length]).toEqual(key);
        // A Durable Object sent the key alone finds the same prefixes.
        expect(fieldEnds(key)).toEqual(prefixes.slice(1).map((p) => p.length));
      }),
      runs(1000),
    );
  });

  it("finds field ends exactly where decoding succeeds", () => {
    const raw = fc.array(byte, { maxLength: 24 }).map((b) => Uint8Array.from(b));
    fc.assert(
      fc.property(raw, (bytes) => {
        let fields: number | undefined;
        try {
          fields = decodeTuple(bytes).length;
        } catch {}
        if (fields === undefined) expect(() => fieldEnds(bytes)).toThrow(/bad tuple key/);
        else expect(fieldEnds(bytes)).toHaveLength(fields);
      }),
      runs(5000),
    );
  });

  it("decodes only canonical keys: any byte string either fails or re-encodes to itself", () => {
    const raw = fc.array(byte, { maxLength: 24 }).map((b) => Uint8Array.from(b));
    fc.assert(
      fc.property(raw, (bytes) => {
        let decoded: Uint8Array[];
        try {
          decoded = decodeTuple(bytes);
        } catch {
          return;
        }
        expect(encodeTuple(decoded)).toEqual(bytes);
      }),
      runs(5000),
    );
  });

  it("holds inside SQLite: ORDER BY and the prefix range scan agree with tuple order and prefixes", async () => {
    // BLOB comparison in SQLite is memcmp; this checks the storage really behaves like compareBytes.
    const stub = scopeStub(env, "properties-sqlite");
    const keyed = fc.uniqueArray(tuple, { minLength: 1, maxLength: 60, selector: (t) => encodeTuple(t).join(",") });
    // The prefix is usually a prefix of a stored tuple (so the scan finds rows), sometimes random.
    const samples = fc.sample(
      fc.tuple(keyed, fc.nat(), fc.nat(5), tuple, fc.boolean()).map(([tuples, i, k, random, useRandom]) => {
        const base = tuples[i % tuples.length];
        return [tuples, useRandom ? random : base.slice(0, Math.min(k, base.length))] as const;
      }),
      { seed: SEED, numRuns: 30 },
    );
    await runInDurableObject(stub, async (_o, state: DurableObjectState) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS prop_keys (k BLOB PRIMARY KEY) WITHOUT ROWID");
      for (const [tuples, prefix] of samples) {
        sql.exec("DELETE FROM prop_keys");
        for (const t of tuples) sql.exec("INSERT INTO prop_keys (k) VALUES (?)", toBlob(encodeTuple(t)));
        const ordered = sql
          .exec("SELECT k FROM prop_keys ORDER BY k")
          .toArray()
          .map((r) => decodeTuple(new Uint8Array(r.k as ArrayBuffer)));
        expect(ordered).toEqual([...tuples].sort(compareTuples));
        const pk = encodeTuple(prefix);
        const under = sql
          .exec("SELECT k FROM prop_keys WHERE k >= ? AND k < ? ORDER BY k", toBlob(pk), toBlob(prefixUpperBound(pk)))
          .toArray()
          .map((r) => decodeTuple(new Uint8Array(r.k as ArrayBuffer)));
        expect(under).toEqual(tuples.filter((t) => isFieldPrefix(prefix, t)).sort(compareTuples));
      }
      sql.exec("DROP TABLE prop_keys");
    });
  });
});
