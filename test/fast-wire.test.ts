// The binary fast path of Lookup and RegisterNamespace (src/rpc/fast-wire.ts,
// rpc/router.ts serveFast): its hand-written codec gives the bytes and values
// protobuf-es gives, on generated messages; and through the Worker, connect-es's
// own client gets the same answers and errors in binary (the fast path) as in
// JSON (connect's general path), claims and validation included.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CoordinatorService,
  Interface,
  LookupRequestSchema,
  LookupResponseSchema,
  RegisterNamespaceRequestSchema,
  RegisterNamespaceResponseSchema,
} from "../src/gen/moqworker/v1/coordinator_pb.js";
import { relayCaller } from "../src/rpc/callers.js";
import { coordinatorFastPath, coordinatorService } from "../src/rpc/coordinator.js";
import { readScopedNamespaceRequest, writeLookupResponse, writeRegisterNamespaceResponse } from "../src/rpc/fast-wire.js";
import { rpcService } from "../src/rpc/router.js";
import { adminClient, expectedLink, freshScope, ns, relay, text } from "./client.js";
import { coordinatorAs, coordinatorPath, raw } from "./hardening.js";

const SEED = 0x66617374;
const runs = { seed: SEED, numRuns: 300 };

const bytesArb = fc.uint8Array({ maxLength: 40 });
const stringArb = fc.string({ unit: "grapheme", maxLength: 30 });
const namespaceArb = fc.record({ fields: fc.array(bytesArb, { maxLength: 6 }) });
const contextArb = fc.record(
  {
    interface: fc.constantFrom(Interface.UNSPECIFIED, Interface.PUBLIC, Interface.INTERNAL, 7),
    sourceUrl: stringArb,
    sourceAddr: stringArb,
  },
  { requiredKeys: ["interface"] },
);
const requestArb = fc.record({ scope: stringArb, namespace: namespaceArb, context: contextArb }, { requiredKeys: [] });

/** The fields a handler reads, from protobuf-es's message or the fast reader's object alike. */
function plain(m: {
  scope?: string;
  namespace?: { fields: Uint8Array[] };
  context?: { interface: number; sourceUrl?: string; sourceAddr?: string };
}) {
  return {
    scope: m.scope,
    namespace: m.namespace && { fields: m.namespace.fields.map((f) => [...f]) },
    context: m.context && { interface: m.context.interface, sourceUrl: m.context.sourceUrl, sourceAddr: m.context.sourceAddr },
  };
}

const unknownField = (no: number) =>
  new BinaryWriter()
    .tag(no, WireType.Varint)
    .uint32(12345)
    .tag(no + 1, WireType.LengthDelimited)
    .string("x")
    .finish();
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe("the hand-written codec against protobuf-es", () => {
  it("reads every RegisterNamespaceRequest as fromBinary does", () => {
    fc.assert(
      fc.property(requestArb, (init) => {
        const bytes = toBinary(RegisterNamespaceRequestSchema, create(RegisterNamespaceRequestSchema, init));
        expect(plain(readScopedNamespaceRequest(bytes, true))).toEqual(plain(fromBinary(RegisterNamespaceRequestSchema, bytes)));
      }),
      runs,
    );
  });

  it("reads every LookupRequest as fromBinary does, and skips a context field Lookup does not have", () => {
    fc.assert(
      fc.property(requestArb, (init) => {
        const lookup = toBinary(LookupRequestSchema, create(LookupRequestSchema, init));
        const read = readScopedNamespaceRequest(lookup, false);
        expect(plain(read)).toEqual(plain(fromBinary(LookupRequestSchema, lookup)));
        // Field 3 is unknown to LookupRequest: a RegisterNamespaceRequest's bytes read as a Lookup drop it.
        const register = toBinary(RegisterNamespaceRequestSchema, create(RegisterNamespaceRequestSchema, init));
        expect(readScopedNamespaceRequest(register, false).context).toBeUndefined();
      }),
      runs,
    );
  });

  it("merges a repeated message field, keeps the last scope and skips unknown fields, as fromBinary does", () => {
    fc.assert(
      fc.property(requestArb, requestArb, fc.integer({ min: 4, max: 1000 }), (a, b, no) => {
        const bytes = concat(
          toBinary(RegisterNamespaceRequestSchema, create(RegisterNamespaceRequestSchema, a)),
          unknownField(no),
          toBinary(RegisterNamespaceRequestSchema, create(RegisterNamespaceRequestSchema, b)),
        );
        expect(plain(readScopedNamespaceRequest(bytes, true))).toEqual(plain(fromBinary(RegisterNamespaceRequestSchema, bytes)));
      }),
      runs,
    );
  });

  it("writes every LookupResponse and RegisterNamespaceResponse byte for byte as toBinary does", () => {
    const relayArb = fc.record({ url: stringArb, addr: stringArb }, { requiredKeys: ["url"] });
    fc.assert(
      fc.property(namespaceArb, relayArb, stringArb, (namespace, relayInfo, id) => {
        const origin = { namespace, relay: relayInfo };
        expect(writeLookupResponse(origin)).toEqual(toBinary(LookupResponseSchema, create(LookupResponseSchema, { origin })));
        expect(writeRegisterNamespaceResponse({ registrationId: id })).toEqual(
          toBinary(RegisterNamespaceResponseSchema, create(RegisterNamespaceResponseSchema, { registrationId: id })),
        );
      }),
      runs,
    );
  });

  it.each([
    ["truncated", Uint8Array.of(0x0a, 0x05, 0x61)],
    ["a nested length past the end", Uint8Array.of(0x12, 0x09, 0x0a, 0x01, 0x61)],
    ["a field running past its message", Uint8Array.of(0x12, 0x02, 0x0a, 0x03, 0x61, 0x62, 0x63)],
    ["scope sent as a varint", Uint8Array.of(0x08, 0x01)],
    ["a namespace field sent as fixed32", Uint8Array.of(0x12, 0x05, 0x0d, 1, 2, 3, 4)],
    ["scope not UTF-8", Uint8Array.of(0x0a, 0x02, 0xc3, 0x28)],
    ["field number 0", Uint8Array.of(0x02, 0x00)],
  ])("refuses %s", (_name, bytes) => {
    expect(() => readScopedNamespaceRequest(bytes, true)).toThrow();
  });
});

describe("which methods may take the fast path", () => {
  const some = coordinatorFastPath.get(CoordinatorService.method.lookup.name);
  const withFast = (name: string) => () =>
    rpcService(CoordinatorService, coordinatorService, relayCaller, new Map([[name, some as NonNullable<typeof some>]]));

  it("the coordinator's are Lookup and RegisterNamespace", () => {
    expect([...coordinatorFastPath.keys()].sort()).toEqual(["Lookup", "RegisterNamespace"]);
    expect(withFast("Lookup")).not.toThrow();
  });

  it.each([
    ["a method the service does not have", "Lookups"],
    ["a method whose request names no scope (shedding and claims go by the scope)", "Heartbeat"],
  ])("refuses %s", (_why, name) => {
    expect(withFast(name)).toThrow(`moqworker.v1.CoordinatorService.${name}: a fast method must exist and name a scope`);
  });
});

describe("through the Worker: binary Lookup and RegisterNamespace take the fast path", () => {
  // Namespace (field 2, 2 bytes) holding a field that claims 3 bytes: it runs past its message.
  const overrun = Uint8Array.of(0x12, 0x02, 0x0a, 0x03, 0x61, 0x62, 0x63);

  it.each(["Lookup", "RegisterNamespace"])("%s: bytes only the fast reader refuses are INVALID_ARGUMENT", async (method) => {
    // protobuf-es reads them (as namespace "abc"): the general path would not refuse them.
    expect(fromBinary(LookupRequestSchema, overrun).namespace?.fields.map((f) => [...f])).toEqual([[0x61, 0x62, 0x63]]);
    const c = await relay(`https://fast-overrun-${method.toLowerCase()}.example.com`, "binary");
    const res = await raw(coordinatorPath(method), {
      headers: { authorization: `Bearer ${c.token}`, "content-type": "application/proto" },
      body: overrun,
    });
    expect(res.status).toBe(400);
    expect(res.code).toBe("invalid_argument");
    expect(res.message).toMatch(
      /^request body: cannot decode moqworker\.v1\.\w+Request from binary protobuf: a field runs past the end of its message$/,
    );
  });
});

describe("through the Worker: the fast path (binary) answers as connect's general path (JSON)", () => {
  type Format = "binary" | "json";
  const FORMATS: Format[] = ["binary", "json"];

  /** The answer or the error of a call, as data to compare across formats. */
  const outcome = async (p: Promise<unknown>) => {
    try {
      const res = (await p) as { origin?: { namespace?: { fields: Uint8Array[] }; relay?: { url: string; addr?: string } } };
      const origin = res.origin;
      return { ok: origin ? { namespace: text(origin.namespace), relay: origin.relay?.url, addr: origin.relay?.addr } : "ok" };
    } catch (e) {
      const err = ConnectError.from(e);
      return { code: err.code, message: err.rawMessage };
    }
  };

  it("Lookup hits (at the scope's relay-link URL), misses, and refuses bad input alike", async () => {
    const s = freshScope("fast");
    const owner = await relay("https://fast-owner.example.com", "binary");
    // An address, so that the answers carry the optional addr field too.
    await owner.heartbeat({ epoch: "fast-1", addrs: ["127.0.0.1:4443"] });
    await owner.registerNamespace({ scope: s, namespace: ns("live/a") });
    const seen: Record<Format, unknown[]> = { binary: [], json: [] };
    for (const format of FORMATS) {
      const c = await relay(`https://fast-reader-${format}.example.com`, format);
      for (const call of [
        () => c.lookup({ scope: s, namespace: ns("live/a/b") }),
        () => c.lookup({ scope: s, namespace: ns("live/b") }),
        () => c.lookup({ scope: s, namespace: ns("") }),
        () => c.lookup({ scope: s }),
        () => c.lookup({ scope: "x".repeat(300), namespace: ns("live/a") }), // longer than MAX_SCOPE_BYTES
      ]) {
        seen[format].push(await outcome(call()));
      }
    }
    expect(seen.binary).toEqual(seen.json);
    expect(seen.binary[0]).toEqual({
      ok: { namespace: "live/a", relay: new URL(await expectedLink(s), owner.url).href, addr: "127.0.0.1:4443" },
    });
    expect(seen.binary.slice(1).map((o) => (o as { code: Code }).code)).toEqual([
      Code.NotFound,
      Code.InvalidArgument,
      Code.InvalidArgument,
      Code.InvalidArgument,
    ]);
  });

  it("RegisterNamespace stores, renews, refuses another relay's namespace and honours token claims alike", async () => {
    const seen: Record<Format, unknown[]> = { binary: [], json: [] };
    for (const format of FORMATS) {
      const s = freshScope(`fast-reg-${format}`);
      const other = freshScope(`fast-other-${format}`);
      const a = await relay("https://fast-a.example.com", format);
      const b = await relay("https://fast-b.example.com", format);
      const first = await a.registerNamespace({ scope: s, namespace: ns("x") });
      const again = await a.registerNamespace({ scope: s, namespace: ns("x"), context: { interface: Interface.PUBLIC } });
      seen[format].push(first.registrationId === again.registrationId && first.registrationId.length > 0);
      seen[format].push(await outcome(b.registerNamespace({ scope: s, namespace: ns("x") })));
      const ro = (await adminClient().createRelayToken({ relayUrl: "https://fast-ro.example.com", readOnly: true })).token;
      seen[format].push(await outcome(coordinatorAs(`Bearer ${ro}`, format).registerNamespace({ scope: s, namespace: ns("y") })));
      const limited = (await adminClient().createRelayToken({ relayUrl: "https://fast-lim.example.com", scopes: [s] })).token;
      const denied = await outcome(coordinatorAs(`Bearer ${limited}`, format).registerNamespace({ scope: other, namespace: ns("y") }));
      seen[format].push({ ...denied, message: (denied as { message: string }).message.replace(other, "OTHER") });
      seen[format].push(
        await outcome(
          a.registerNamespace({ scope: s, namespace: ns("z"), context: { interface: Interface.INTERNAL, sourceUrl: "not a url" } }),
        ),
      );
      seen[format].push(await outcome(a.lookup({ scope: s, namespace: ns("z") })));
    }
    expect(seen.binary).toEqual(seen.json);
    expect(seen.binary[0]).toBe(true);
    expect(seen.binary.slice(1).map((o) => (o as { code: Code }).code)).toEqual([
      Code.AlreadyExists,
      Code.PermissionDenied,
      Code.PermissionDenied,
      Code.InvalidArgument,
      Code.NotFound, // the refused registration stored nothing
    ]);
  });
});
