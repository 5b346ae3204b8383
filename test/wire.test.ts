// Malformed wire input: truncated/garbage protobuf, invalid JSON, wrong content
// types, oversized bodies (with and without Content-Length), unknown methods,
// wrong HTTP methods. Each gets the right Connect code, nothing is stored, and
// the Worker keeps serving. Ends with a seeded fuzz loop of a few thousand
// hostile requests that must leave storage exactly as it was.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, fromBinary, fromJsonString, toBinary, toJsonString, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import {
  CoordinatorService,
  Interface,
  NamespaceSchema,
  RegisterNamespaceRequestSchema,
} from "../src/gen/moqworker/v1/coordinator_pb.js";
import { AdminService } from "../src/gen/moqworker/v1/admin_pb.js";
import { MAX_REQUEST_BYTES } from "../src/rpc/router.js";
import { Code } from "@connectrpc/connect";
import { ADMIN_TOKEN, base, BASE, adminClient, freshScope, ns, relay, workerFetch, type Coordinator } from "./client.js";
import { adminPath, chunked, codeOf, coordinatorPath, jwt, raw, relayNeverWrote, snapshot, RELAY_AUDIENCE } from "./hardening.js";

const utf8 = new TextEncoder();
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const proto = (token: string) => ({ ...bearer(token), "content-type": "application/proto" });
const json = (token: string) => ({ ...bearer(token), "content-type": "application/json" });

const registerBytes = (scope: string, path: string) =>
  toBinary(RegisterNamespaceRequestSchema, create(RegisterNamespaceRequestSchema, { scope, namespace: ns(path) }));

/** A JSON body of exactly `size` bytes (padded with whitespace, still valid JSON). */
function paddedJson(value: unknown, size: number): Uint8Array {
  const text = JSON.stringify(value);
  if (text.length > size) throw new Error("value too large for the requested size");
  return utf8.encode(text.slice(0, -1) + " ".repeat(size - text.length) + "}");
}

let victimScope: string;
let victim: Coordinator;
let attacker: Coordinator;

beforeAll(async () => {
  victimScope = freshScope("wire-victim");
  victim = await relay("https://wire-victim.example.com");
  attacker = await relay("https://wire-attacker.example.com");
  await victim.registerNamespace({ scope: victimScope, namespace: ns("live/main") });
  await victim.registerTrack({ scope: victimScope, namespace: ns("live/main"), track: "video" });
  await victim.subscribeNamespace({ scope: victimScope, prefix: ns("live") });
});

describe("malformed binary protobuf", () => {
  it.each([
    ["illegal wire type", Uint8Array.of(0x0f, 0x01, 0x02)],
    ["length past the end (truncated field)", Uint8Array.of(0x12, 0x0a, 0x0a, 0x01)],
    ["unterminated varint", Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)],
    ["valid message cut inside its namespace", registerBytes("s", "live/main/cam-1").subarray(0, 8)],
    ["valid message followed by garbage", Uint8Array.of(...registerBytes("s", "a"), 0xff)],
  ])("%s → INVALID_ARGUMENT naming the body, nothing stored", async (_name, body) => {
    const before = await snapshot([victimScope, "s"], [attacker.url]);
    const r = await raw(coordinatorPath("RegisterNamespace"), { headers: proto(attacker.token), body });
    expect(r.status).toBe(400);
    expect(r.code).toBe("invalid_argument");
    expect(r.message).toMatch(/^request body: cannot decode moqworker\.v1\.RegisterNamespaceRequest from binary protobuf/);
    expect(await snapshot([victimScope, "s"], [attacker.url])).toEqual(before);
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });

  it("an empty binary body is an empty message: the handler says which field is missing", async () => {
    const r = await raw(coordinatorPath("RegisterNamespace"), { headers: proto(attacker.token), body: new Uint8Array() });
    expect(r.code).toBe("invalid_argument");
    expect(r.message).toBe("namespace: is required");
  });

  it("a well-formed binary request still works after the decode check", async () => {
    const scope = freshScope("wire-ok");
    const honest = await relay("https://wire-honest.example.com");
    const r = await raw(coordinatorPath("RegisterNamespace"), { headers: proto(honest.token), body: registerBytes(scope, "x/y") });
    expect(r.status).toBe(200);
    expect(base((await victim.lookup({ scope, namespace: ns("x/y") })).origin?.relay?.url)).toBe(honest.url);
  });
});

describe("malformed JSON", () => {
  it.each([
    ["not JSON", "{"],
    ["an array", "[]"],
    ["null", "null"],
    ["unknown field", `{"scope":"s","namespace":{"fields":["YQ=="]},"owner":"https://evil.example/"}`],
    ["wrong type for scope", `{"scope":1,"namespace":{"fields":["YQ=="]}}`],
    ["bytes that are not base64", `{"scope":"s","namespace":{"fields":["!!!"]}}`],
    ["fields not a list", `{"scope":"s","namespace":{"fields":"YQ=="}}`],
    ["enum name that does not exist", `{"scope":"s","namespace":{"fields":["YQ=="]},"context":{"interface":"INTERFACE_ROOT"}}`],
    ["deeply nested", "[".repeat(20000) + "]".repeat(20000)],
  ])("%s → INVALID_ARGUMENT, nothing stored", async (_name, body) => {
    const before = await snapshot([victimScope, "s", null], [attacker.url]);
    const r = await raw(coordinatorPath("RegisterNamespace"), { headers: json(attacker.token), body });
    expect(r.status).toBe(400);
    expect(r.code).toBe("invalid_argument");
    // protobuf-es names the message, field or enum it could not decode.
    expect(r.message).toMatch(/^cannot decode (message|field|enum) moqworker\.v1\.\S+ from JSON/);
    expect(await snapshot([victimScope, "s", null], [attacker.url])).toEqual(before);
  });

  it("names the field of a decodable but invalid request", async () => {
    const cases: [string, unknown, string][] = [
      ["RegisterNamespace", { scope: "", namespace: { fields: ["YQ=="] } }, "scope: must not be empty"],
      ["RegisterNamespace", { scope: "s", namespace: { fields: [] } }, "namespace: must have at least 1 field"],
      ["RegisterTrack", { scope: "s", namespace: { fields: ["YQ=="] }, track: "" }, "track: must not be empty"],
      ["SubscribeNamespace", { scope: "s", prefix: { fields: [] }, context: { sourceUrl: "http://x.example" } }, "context.source_url: must be an https URL"],
      ["Heartbeat", { epoch: "e", addrs: ["localhost"] }, "addrs[0]: 'localhost' is not an ip:port socket address"],
    ];
    for (const [method, body, message] of cases) {
      const r = await raw(coordinatorPath(method), { headers: json(attacker.token), body: JSON.stringify(body) });
      expect(r.code, method).toBe("invalid_argument");
      expect(r.message, method).toContain(message);
    }
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });
});

describe("content types, methods and paths", () => {
  const valid = () => JSON.stringify({ scope: victimScope, namespace: { fields: ["YQ=="] } });

  it.each([
    ["text/plain"],
    ["application/x-www-form-urlencoded"],
    ["application/json; charset=utf-16"],
    ["application/grpc"],
    ["application/connect+json"], // streaming framing on a unary method
    [""],
  ])("content-type %j → 415 with a Connect error naming the header", async (contentType) => {
    const headers: Record<string, string> = bearer(attacker.token);
    if (contentType) headers["content-type"] = contentType;
    const r = await raw(coordinatorPath("RegisterNamespace"), { headers, body: valid() });
    expect(r.status).toBe(415);
    expect(r.code).toBe("invalid_argument");
    expect(r.message).toMatch(/^content-type: .* is not supported; send application\/proto or application\/json$/);
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });

  it("a compressed body is refused (no encodings are accepted)", async () => {
    const r = await raw(coordinatorPath("RegisterNamespace"), {
      headers: { ...json(attacker.token), "content-encoding": "gzip" },
      body: valid(),
    });
    expect(r.code).toBe("unimplemented");
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });

  it("unknown methods → UNIMPLEMENTED on both services, after authentication", async () => {
    for (const m of ["Nope", "registerNamespace", "RegisterNamespace/extra", "CreateRelayToken"]) {
      const r = await raw(coordinatorPath(m), { headers: json(attacker.token), body: "{}" });
      expect(r.status, m).toBe(501);
      expect(r.code, m).toBe("unimplemented");
    }
    const admin = await raw(adminPath("RegisterNamespace"), { headers: json(ADMIN_TOKEN), body: "{}" });
    expect(admin.code).toBe("unimplemented");
    // Without credentials the caller learns nothing about which methods exist.
    const anon = await raw(coordinatorPath("Nope"), { headers: { "content-type": "application/json" }, body: "{}" });
    expect(anon.code).toBe("unauthenticated");
    // An unknown service is not routed at all: HTTP 404, which Connect clients read as UNIMPLEMENTED.
    expect((await raw("/moqworker.v1.OtherService/Lookup", { headers: json(attacker.token), body: "{}" })).status).toBe(404);
  });

  it.each(["GET", "PUT", "DELETE", "PATCH"])("HTTP %s on an RPC path → 405, Allow: POST, Connect error", async (method) => {
    const res = await raw(coordinatorPath("Lookup"), { method, headers: bearer(attacker.token) });
    expect(res.status).toBe(405);
    expect(res.code).toBe("unimplemented");
    expect(res.message).toContain(`HTTP ${method} is not supported`);
    const admin = await raw(adminPath("PutPath"), { method, headers: bearer(ADMIN_TOKEN) });
    expect(admin.status).toBe(405);
  });

  it("a malformed epoch header refuses a valid write", async () => {
    for (const epoch of ["", "e".repeat(129)]) {
      const r = await raw(coordinatorPath("RegisterNamespace"), {
        headers: { ...json(attacker.token), "moq-relay-epoch": epoch },
        body: valid(),
      });
      expect(r.code).toBe("invalid_argument");
      expect(r.message).toContain("moq-relay-epoch");
    }
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });
});

describe(`request size limit (MAX_REQUEST_BYTES = ${MAX_REQUEST_BYTES})`, () => {
  // A body that would succeed if it were read: only its size is wrong.
  const body = (size: number) => paddedJson({ scope: victimScope, namespace: { fields: ["YQ=="] } }, size);

  it("accepts exactly the limit, with Content-Length and chunked", async () => {
    const r1 = await raw(coordinatorPath("Lookup"), { headers: json(attacker.token), body: body(MAX_REQUEST_BYTES) });
    expect(r1.code).toBe("not_found"); // parsed and answered
    const r2 = await raw(coordinatorPath("Lookup"), { headers: json(attacker.token), body: chunked(body(MAX_REQUEST_BYTES)) });
    expect(r2.code).toBe("not_found");
  });

  it("rejects one byte more before parsing: RESOURCE_EXHAUSTED, nothing stored", async () => {
    const scope = freshScope("wire-big");
    const big = paddedJson({ scope, namespace: { fields: ["YQ=="] } }, MAX_REQUEST_BYTES + 1);
    for (const b of [big, chunked(big), chunked(big, 1000)]) {
      const r = await raw(coordinatorPath("RegisterNamespace"), { headers: json(attacker.token), body: b });
      expect(r.status).toBe(429);
      expect(r.code).toBe("resource_exhausted");
      expect(r.message).toBe(`request body larger than ${MAX_REQUEST_BYTES} bytes`);
    }
    expect(await relayNeverWrote(attacker.url)).toBe(true);
    // The target scope's object holds exactly what a never-used scope's does.
    expect(Object.values(await snapshot([scope]))).toEqual(Object.values(await snapshot([freshScope("never-touched")])));
  });

  it("rejects an oversized body before authenticating, and admin bodies too", async () => {
    const big = chunked(new Uint8Array(MAX_REQUEST_BYTES + 10));
    expect((await raw(coordinatorPath("Lookup"), { headers: { "content-type": "application/proto" }, body: big })).code).toBe(
      "resource_exhausted",
    );
    const admin = await raw(adminPath("PutPath"), {
      headers: json(ADMIN_TOKEN),
      body: paddedJson({ path: "/big", scope: "big", permissions: "PERMISSIONS_READ_WRITE" }, MAX_REQUEST_BYTES + 1),
    });
    expect(admin.code).toBe("resource_exhausted");
    expect(await codeOf(attacker.resolveScope({ connectionPath: "/big" }))).toBe(Code.NotFound);
  });
});

// ---- the fuzz loop -------------------------------------------------------------

/** One hostile request and the answers it may get. */
interface Shot {
  kind: string;
  path: string;
  method?: string;
  headers: Record<string, string>;
  body?: Uint8Array | string | ReadableStream<Uint8Array>;
  /** Acceptable [HTTP status, Connect code] pairs. */
  expect: [number, string | undefined][];
}

// Typed loosely: the fuzzer treats every method alike.
const coordinatorMethods: DescMethod[] = Object.values(CoordinatorService.method);
const adminMethods: DescMethod[] = Object.values(AdminService.method);

describe("fuzz loop", () => {
  it("3000 seeded hostile requests: every one refused with the right code, storage unchanged, Worker serving", async () => {
    const scopeA = freshScope("fuzz-a");
    const scopeB = freshScope("fuzz-b");
    const owner = await relay("https://fuzz-owner.example.com");
    const other = await relay("https://fuzz-other-owner.example.com", "json");
    await owner.registerNamespace({ scope: scopeA, namespace: ns("room/alice") });
    await owner.registerTrack({ scope: scopeA, namespace: ns("room/alice"), track: "video" });
    await owner.subscribeNamespace({ scope: scopeA, prefix: ns("room") });
    await owner.subscribeTrack({ scope: scopeA, namespace: ns("room/bob"), track: "audio" });
    await other.registerNamespace({ scope: scopeB, namespace: ns("room/alice") });
    await other.registerNamespace({ namespace: ns("fuzz/unscoped") });
    await adminClient().putPath({ path: `/fuzz/${scopeA}`, scope: scopeA, permissions: 1 });
    const fuzzer = await relay("https://fuzzer.example.com");
    const scopes = [scopeA, scopeB, null, "fuzz-never"];
    const before = await snapshot(scopes, [owner.url, other.url, fuzzer.url]);

    const scopeArb = fc.constantFrom<string | undefined>(scopeA, scopeB, undefined, "fuzz-never");
    const nsArb = fc.constantFrom("room/alice", "room", "fuzz/unscoped", "x").map(ns);
    // A request that would be valid (and for writes, would change state) if it were accepted.
    const validInit = fc.record({
      scope: scopeArb,
      namespace: nsArb,
      prefix: nsArb,
      track: fc.constantFrom("video", "audio"),
      context: fc.constantFrom(undefined, { interface: Interface.INTERNAL, sourceUrl: "https://x.example/" }),
      epoch: fc.constantFrom("e1", "e2"),
      addrs: fc.constant(["127.0.0.1:4443"]),
      connectionPath: fc.constant(`/fuzz/${scopeA}`),
    });
    const pick = (m: DescMessage, init: Record<string, unknown>) => {
      const names = new Set(m.fields.map((f) => f.localName));
      return create(m, Object.fromEntries(Object.entries(init).filter(([k, v]) => names.has(k) && v !== undefined)));
    };
    const validShot = fc.tuple(fc.constantFrom(...coordinatorMethods), validInit).map(([m, init]) => ({ m, msg: pick(m.input, init) }));

    const badToken = fc.constantFrom(
      async () => ({}) as Record<string, string>,
      async () => ({ authorization: "Basic dXNlcjpwdw==" }),
      async () => ({ authorization: "Bearer" }),
      async () => ({ authorization: "Bearer not.a.jwt" }),
      async () => bearer(ADMIN_TOKEN), // the admin token is not a relay token
      async () => bearer(await jwt({ sub: owner.url, aud: RELAY_AUDIENCE }, "another-secret")),
      async () => bearer(await jwt({ sub: owner.url, aud: RELAY_AUDIENCE, exp: 1_000_000 })),
      async () => bearer(await jwt({ sub: owner.url, aud: "someone-else" })),
      async () => bearer(await jwt({ sub: owner.url, aud: RELAY_AUDIENCE }, undefined, "HS512")),
      async () => {
        // The fuzzer's own token with its subject swapped for the owner's: signature no longer matches.
        const [h, , s] = fuzzer.token.split(".");
        const body = btoa(JSON.stringify({ sub: owner.url, aud: RELAY_AUDIENCE })).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
        return bearer(`${h}.${body}.${s}`);
      },
    );
    const unauthenticated: Shot["expect"] = [[401, "unauthenticated"]];
    const invalidArg: Shot["expect"] = [[400, "invalid_argument"]];
    const unsupportedType: Shot["expect"] = [[415, "invalid_argument"]];
    const unknownMethod: Shot["expect"] = [[501, "unimplemented"], [404, undefined]];
    const notPost: Shot["expect"] = [[405, "unimplemented"]];
    const tooBig: Shot["expect"] = [[429, "resource_exhausted"]];

    // Undecodable binary: mutations of a valid encoding, forced undecodable when needed.
    const garbleBinary = fc.tuple(validShot, fc.nat(), fc.uint8Array({ maxLength: 40 }), fc.constantFrom("cut", "flip", "append", "random"))
      .map(([{ m, msg }, n, noise, how]) => {
        const good = toBinary(m.input, msg);
        let bytes: Uint8Array;
        if (how === "cut") bytes = good.subarray(0, good.length === 0 ? 0 : n % good.length);
        else if (how === "flip") bytes = good.map((b, i) => (i === n % Math.max(good.length, 1) ? b ^ (1 << n % 8) : b));
        else if (how === "append") bytes = Uint8Array.of(...good, ...noise);
        else bytes = noise;
        try {
          fromBinary(m.input, bytes);
          bytes = Uint8Array.of(...bytes, 0x0f); // decodes: make it not (wire type 7 is illegal)
        } catch {
          // already undecodable
        }
        return { m, bytes };
      });
    // Undecodable JSON: text mutations, forced invalid when needed.
    const garbleJson = fc.tuple(validShot, fc.nat(), fc.string({ maxLength: 6 }), fc.constantFrom("cut", "insert", "field", "type"))
      .map(([{ m, msg }, n, noise, how]) => {
        const good = toJsonString(m.input, msg);
        let text: string;
        if (how === "cut") text = good.slice(0, n % Math.max(good.length, 1));
        else if (how === "insert") text = good.slice(0, n % (good.length + 1)) + noise + good.slice(n % (good.length + 1));
        else if (how === "field") text = good.replace(/^\{/, `{"x${n}":1${good === "{}" ? "" : ","}`);
        else text = JSON.stringify({ ...JSON.parse(good), [m.input.fields[0]?.jsonName ?? "x"]: [n] });
        try {
          fromJsonString(m.input, text);
          text += "}"; // still decodes: make it not
        } catch {
          // already undecodable
        }
        return { m, text };
      });
    // Decodable, but each has one invalid field.
    const semantic = fc.tuple(validShot, fc.nat()).map(([{ m, msg }, n]) => {
      const names = new Set(m.input.fields.map((f) => f.localName));
      const broken: [string, unknown][] = [];
      if (names.has("scope")) broken.push(["scope", ""], ["scope", "a\u0001b"], ["scope", "s".repeat(257)]);
      if (names.has("namespace")) {
        broken.push(["namespace", create(NamespaceSchema, { fields: Array.from({ length: 33 }, () => utf8.encode("f")) })]);
        broken.push(["namespace", create(NamespaceSchema, { fields: [new Uint8Array(4097)] })]);
        broken.push(["namespace", create(NamespaceSchema, { fields: [] })]);
      }
      if (names.has("prefix")) broken.push(["prefix", create(NamespaceSchema, { fields: [new Uint8Array(2049), new Uint8Array(2048)] })]);
      if (names.has("track")) broken.push(["track", ""], ["track", "t".repeat(4097)]);
      if (names.has("context")) {
        broken.push(["context", { interface: Interface.INTERNAL, sourceUrl: "http://plain.example" }]);
        broken.push(["context", { interface: Interface.INTERNAL, sourceUrl: "not a url" }]);
        broken.push(["context", { interface: Interface.INTERNAL, sourceAddr: "1.2.3.4:99999" }]);
      }
      if (names.has("epoch")) broken.push(["epoch", ""], ["epoch", "e".repeat(129)]);
      if (names.has("addrs")) broken.push(["addrs", ["nope"]], ["addrs", Array.from({ length: 17 }, (_, i) => `10.0.0.${i}:1`)]);
      if (names.has("connectionPath")) broken.push(["connectionPath", "relative"], ["connectionPath", "/a//b"], ["connectionPath", "/%2e%2e"], ["connectionPath", "/a/.."], ["connectionPath", "/" + "p".repeat(1024)]);
      if (broken.length === 0) return undefined;
      const [field, value] = broken[n % broken.length];
      const { $typeName: _, ...fields } = msg as unknown as Record<string, unknown>;
      return { m, msg: create(m.input, { ...fields, [field]: value } as never) };
    });

    const shot: fc.Arbitrary<() => Promise<Shot>> = fc.oneof(
      // Valid requests, hostile credentials: writes included, none may land.
      fc.tuple(validShot, badToken, fc.boolean()).map(([{ m, msg }, token, bin]) => async () => ({
        kind: "bad-token",
        path: coordinatorPath(m.name),
        headers: { ...(await token()), "content-type": bin ? "application/proto" : "application/json" },
        body: bin ? toBinary(m.input, msg) : toJsonString(m.input, msg),
        expect: unauthenticated,
      })),
      // Admin calls with a relay token, or with no token.
      fc.tuple(fc.constantFrom(...adminMethods), fc.boolean()).map(([m, anon]) => async () => ({
        kind: "admin-bad-token",
        path: adminPath(m.name),
        headers: { ...(anon ? {} : bearer(fuzzer.token)), "content-type": "application/json" },
        body: JSON.stringify({ scope: scopeA, path: `/fuzz/${scopeA}`, relayUrl: "https://evil.example", permissions: "PERMISSIONS_READ_WRITE" }),
        expect: unauthenticated,
      })),
      garbleBinary.map(({ m, bytes }) => async () => ({
        kind: "binary",
        path: coordinatorPath(m.name),
        headers: proto(fuzzer.token),
        body: bytes,
        expect: invalidArg,
      })),
      garbleJson.map(({ m, text }) => async () => ({
        kind: "json",
        path: coordinatorPath(m.name),
        headers: json(fuzzer.token),
        body: text,
        expect: invalidArg,
      })),
      fc.tuple(semantic, fc.boolean())
        .filter(([s]) => s !== undefined)
        .map(([s, bin]) => async () => ({
          kind: "semantic",
          path: coordinatorPath(s!.m.name),
          headers: bin ? proto(fuzzer.token) : json(fuzzer.token),
          body: bin ? toBinary(s!.m.input, s!.msg) : toJsonString(s!.m.input, s!.msg),
          expect: invalidArg,
        })),
      fc.tuple(validShot, fc.constantFrom("text/plain", "application/xml", "application/json; charset=latin1", "application/grpc+proto", "application/connect+proto", "multipart/form-data"))
        .map(([{ m, msg }, type]) => async () => ({
          kind: "content-type",
          path: coordinatorPath(m.name),
          headers: { ...bearer(fuzzer.token), "content-type": type },
          body: toJsonString(m.input, msg),
          expect: unsupportedType,
        })),
      fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom("CoordinatorService", "AdminService"))
        .filter(([name]) => !/^[A-Z]/.test(name) || ![...coordinatorMethods, ...adminMethods].some((m) => m.name === name))
        .map(([name, service]) => async () => ({
          kind: "unknown-method",
          path: `/moqworker.v1.${service}/${encodeURIComponent(name)}`,
          headers: json(service === "AdminService" ? ADMIN_TOKEN : fuzzer.token),
          body: "{}",
          expect: unknownMethod,
        })),
      fc.tuple(validShot, fc.constantFrom("GET", "PUT", "DELETE", "PATCH", "OPTIONS")).map(([{ m }, method]) => async () => ({
        kind: "http-method",
        path: coordinatorPath(m.name),
        method,
        headers: bearer(fuzzer.token),
        expect: notPost,
      })),
      fc.tuple(validShot, fc.boolean(), fc.integer({ min: 1, max: 4096 })).map(([{ m, msg }, stream, extra]) => async () => {
        const body = paddedJson(JSON.parse(toJsonString(m.input, msg)), MAX_REQUEST_BYTES + extra);
        return {
          kind: "oversized",
          path: coordinatorPath(m.name),
          headers: json(fuzzer.token),
          body: stream ? chunked(body, 7000) : body,
          expect: tooBig,
        };
      }),
      fc.tuple(validShot, fc.constantFrom("", "x".repeat(129))).map(([{ m, msg }, epoch]) => async () => ({
        kind: "epoch-header",
        path: coordinatorPath(m.name),
        headers: { ...json(fuzzer.token), "moq-relay-epoch": epoch },
        body: toJsonString(m.input, msg),
        expect: invalidArg,
      })),
      fc.constantFrom(
        ["PutPath", { path: "relative", scope: scopeA, permissions: "PERMISSIONS_READ_WRITE" }],
        ["PutPath", { path: `/fuzz/${scopeA}`, scope: "", permissions: "PERMISSIONS_READ_ONLY" }],
        ["PutPath", { path: `/fuzz/${scopeA}`, scope: scopeB, permissions: "PERMISSIONS_UNSPECIFIED" }],
        ["DeletePath", { path: "/a//b" }],
        ["PutScopeConfig", { scope: scopeA, config: { originFallback: "http://insecure.example" } }],
        ["PutScopeConfig", { scope: scopeA, config: { rendezvousTimeoutMs: 0 } }],
        ["PutScopeConfig", { scope: "\u0000", config: {} }],
        ["CreateRelayToken", { relayUrl: "http://plain.example" }],
        ["CreateRelayToken", { relayUrl: "https://x.example", ttlSeconds: 0 }],
      ).map(([method, body]) => async () => ({
        kind: "admin-invalid",
        path: adminPath(method as string),
        headers: json(ADMIN_TOKEN),
        body: JSON.stringify(body),
        expect: invalidArg,
      })),
    );

    const seen = new Map<string, number>();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(shot, async (make) => {
        const s = await make();
        const r = await raw(s.path, { method: s.method, headers: s.headers, body: s.body });
        seen.set(s.kind, (seen.get(s.kind) ?? 0) + 1);
        const ok = s.expect.some(([status, code]) => r.status === status && (code === undefined || r.code === code));
        if (!ok) throw new Error(`${s.kind} ${s.path}: got ${r.status} ${r.code} ${r.message ?? r.text.slice(0, 200)}`);
        // Every Connect error says something.
        if (r.code !== undefined) expect(r.message ?? "").not.toBe("");
        if (++n % 500 === 0) expect((await workerFetch(`${BASE}/healthz`)).status).toBe(200);
      }),
      { seed: 20251125, numRuns: 3000, endOnFailure: true },
    );

    // Every class of hostile input was actually exercised.
    expect([...seen.keys()].sort()).toEqual(
      ["admin-bad-token", "admin-invalid", "bad-token", "binary", "content-type", "epoch-header", "http-method", "json", "oversized", "semantic", "unknown-method"],
    );
    expect(await snapshot(scopes, [owner.url, other.url, fuzzer.url])).toEqual(before);
    expect(await relayNeverWrote(fuzzer.url)).toBe(true);
    // Still serving, with the state intact.
    expect(base((await fuzzer.lookup({ scope: scopeA, namespace: ns("room/alice/cam") })).origin?.relay?.url)).toBe(owner.url);
    expect((await fuzzer.resolveScope({ connectionPath: `/fuzz/${scopeA}` })).scope?.scopeId).toBe(scopeA);
  });
});
