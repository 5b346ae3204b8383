// The request pipeline (src/rpc/router.ts) against connect-es's own client, in
// JSON and binary, and at each step it owns: the size limit (with and without
// Content-Length), decoding, content types, timeouts and response headers.
import { beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { LookupRequestSchema, LookupResponseSchema } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { MAX_REQUEST_BYTES } from "../src/rpc/router.js";
import { BASE, adminClient, expectedLink, freshScope, ns, relay, text, workerFetch, type Coordinator } from "./client.js";
import { chunked, coordinatorPath, errorOf, raw, relayNeverWrote } from "./hardening.js";

let scope: string;
let owner: Coordinator;

beforeAll(async () => {
  scope = freshScope("pipeline");
  owner = await relay("https://pipeline-owner.example.com");
  await owner.registerNamespace({ scope, namespace: ns("live/main") });
});

describe("connect-es's own client", () => {
  it.each(["binary", "json"] as const)("%s: answers, errors with code and message, admin calls", async (format) => {
    const scope = freshScope(`pipeline-${format}`);
    await owner.registerNamespace({ scope, namespace: ns("live/main") });
    const r = await relay(`https://pipeline-${format}.example.com`, format);
    const hit = await r.lookup({ scope, namespace: ns("live/main/cam") });
    // A scoped answer names the owner at the scope's relay-link path.
    expect(hit.origin?.relay?.url).toBe(new URL(await expectedLink(scope), owner.url).href);
    expect(text(hit.origin?.namespace)).toBe("live/main");
    const missing = await errorOf(r.lookup({ scope, namespace: ns("absent") }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toBe("no relay has registered this namespace or a prefix of it");
    const invalid = await errorOf(r.lookup({ scope, namespace: ns("") }));
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.rawMessage).toContain("namespace");
    // Writes and the interceptor-free admin service go the same way.
    const { registrationId } = await r.registerNamespace({ scope, namespace: ns(`fmt/${format}`) });
    expect(registrationId).not.toBe("");
    const described = await adminClient(format).describeScope({ scope });
    expect(described.namespaces.map((n) => text(n.namespace)).sort()).toEqual([`fmt/${format}`, "live/main"].sort());
  });

  it("a connect-timeout-ms the caller sends is accepted; a malformed one is INVALID_ARGUMENT", async () => {
    const hit = await owner.lookup({ scope, namespace: ns("live/main") }, { timeoutMs: 5000 });
    expect(hit.origin?.relay?.url).toBe(new URL(await expectedLink(scope), owner.url).href);
    const body = toBinary(LookupRequestSchema, create(LookupRequestSchema, { scope, namespace: ns("live/main") }));
    const bad = await raw(coordinatorPath("Lookup"), {
      headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/proto", "connect-timeout-ms": "soon" },
      body,
    });
    expect(bad.code).toBe("invalid_argument");
    expect(bad.message).toContain("timeout");
  });
});

describe("the answer", () => {
  const lookupBody = () => toBinary(LookupRequestSchema, create(LookupRequestSchema, { scope, namespace: ns("live/main") }));

  it("binary in, binary out; identity content-encoding is no encoding", async () => {
    const res = await workerFetch(`${BASE}${coordinatorPath("Lookup")}`, {
      method: "POST",
      headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/proto", "content-encoding": "identity" },
      body: lookupBody(),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/proto");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(fromBinary(LookupResponseSchema, bytes).origin?.relay?.url).toBe(new URL(await expectedLink(scope), owner.url).href);
  });

  it("errors are Connect JSON whatever the request's format", async () => {
    const res = await workerFetch(`${BASE}${coordinatorPath("Lookup")}`, {
      method: "POST",
      headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/proto" },
      body: Uint8Array.of(0x0f),
    });
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({
      code: "invalid_argument",
      message: expect.stringMatching(/^request body: cannot decode moqworker\.v1\.LookupRequest from binary protobuf: /),
    });
  });
});

describe(`one size limit (${MAX_REQUEST_BYTES} bytes), checked before the token and the decoder`, () => {
  const proto = (token?: string) => ({
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    "content-type": "application/proto",
  });
  // Valid protobuf of any size: a Lookup whose namespace field is padded by an unknown field.
  const lookupOfSize = (size: number) => {
    const base = toBinary(LookupRequestSchema, create(LookupRequestSchema, { scope, namespace: ns("live/main") }));
    // Field 15, wire type 2 (length-delimited), a 3-byte varint length, then padding.
    const pad = size - base.length - 4;
    const out = new Uint8Array(size);
    out.set(base);
    out.set([(15 << 3) | 2, (pad & 0x7f) | 0x80, ((pad >> 7) & 0x7f) | 0x80, pad >> 14], base.length);
    return out;
  };

  it("binary at exactly the limit is served, with Content-Length and chunked", async () => {
    const exact = lookupOfSize(MAX_REQUEST_BYTES);
    expect(exact.length).toBe(MAX_REQUEST_BYTES);
    for (const body of [exact, chunked(exact, 5000)]) {
      const r = await raw(coordinatorPath("Lookup"), { headers: proto(owner.token), body });
      expect(r.status, r.text).toBe(200);
    }
  });

  it("one byte more is RESOURCE_EXHAUSTED, with Content-Length and chunked, with or without a token", async () => {
    const over = lookupOfSize(MAX_REQUEST_BYTES + 1);
    const attacker = await relay("https://pipeline-big.example.com");
    for (const token of [attacker.token, undefined]) {
      for (const body of [over, chunked(over), chunked(over, 1000)]) {
        const r = await raw(coordinatorPath("RegisterNamespace"), { headers: proto(token), body });
        expect(r.status).toBe(429);
        expect(r.code).toBe("resource_exhausted");
        expect(r.message).toBe(`request body larger than ${MAX_REQUEST_BYTES} bytes`);
      }
    }
    expect(await relayNeverWrote(attacker.url)).toBe(true);
  });

  it("a declared Content-Length over the limit is refused without reading the body", async () => {
    // The body never ends: only the header can have decided.
    const endless = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(new Uint8Array(1024)) });
    const res = await workerFetch(`${BASE}${coordinatorPath("Lookup")}`, {
      method: "POST",
      headers: { ...proto(owner.token), "content-length": String(MAX_REQUEST_BYTES + 1) },
      body: endless,
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(429);
    expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
  });
});
