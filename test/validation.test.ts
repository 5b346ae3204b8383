// Bad input: INVALID_ARGUMENT naming the field, and nothing stored.
import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { NamespaceSchema, Permissions } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { ADMIN_TOKEN, BASE, adminClient, freshScope, ns, relay, workerFetch } from "./client.js";

async function rejection(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = ConnectError.from(e);
    return { code: err.code, message: err.rawMessage };
  }
  throw new Error("expected the call to fail");
}

const fields = (n: number, size = 1) => create(NamespaceSchema, { fields: Array.from({ length: n }, () => new Uint8Array(size)) });

describe("malformed coordinator requests", () => {
  it("rejects each with INVALID_ARGUMENT naming the field, and stores nothing", async () => {
    const scope = freshScope("bad-input");
    const r = await relay("https://relay-a.example.com");
    const admin = adminClient();
    await r.registerNamespace({ scope, namespace: ns("keep/me") });
    const before = await admin.describeScope({ scope });

    const cases: [string, () => Promise<unknown>, string][] = [
      ["no namespace", () => r.registerNamespace({ scope }), "namespace"],
      ["empty namespace", () => r.registerNamespace({ scope, namespace: ns("") }), "namespace"],
      ["33 fields", () => r.registerNamespace({ scope, namespace: fields(33) }), "namespace: has 33 fields"],
      ["4097 bytes", () => r.registerNamespace({ scope, namespace: fields(1, 4097) }), "namespace: is 4097 bytes"],
      ["4097 bytes over fields", () => r.registerNamespace({ scope, namespace: fields(17, 241) }), "namespace: is 4097 bytes"],
      ["empty scope", () => r.registerNamespace({ scope: "", namespace: ns("a") }), "scope"],
      ["control char scope", () => r.registerNamespace({ scope: "a\nb", namespace: ns("a") }), "scope"],
      ["empty track", () => r.registerTrack({ scope, namespace: ns("a"), track: "" }), "track: must not be empty"],
      ["huge track", () => r.registerTrack({ scope, namespace: ns("a"), track: "x".repeat(4097) }), "track"],
      ["empty track sub", () => r.subscribeTrack({ scope, namespace: ns("a"), track: "" }), "track"],
      ["33-field prefix", () => r.subscribeNamespace({ scope, prefix: fields(33) }), "prefix"],
      ["bad source url", () => r.subscribeNamespace({ scope, prefix: ns("a"), context: { sourceUrl: "not a url" } }), "context.source_url"],
      [
        "bad source addr",
        () => r.lookupNamespaceSubscribers({ scope, namespace: ns("a"), context: { sourceAddr: "localhost" } }),
        "context.source_addr",
      ],
      ["invalid path", () => r.resolveScope({ connectionPath: "/a/../b" }), "connection_path"],
      ["empty epoch", () => r.heartbeat({ epoch: "" }), "epoch"],
      ["bad addr", () => r.heartbeat({ epoch: "e", addrs: ["nope"] }), "addrs[0]"],
    ];
    for (const [name, call, field] of cases) {
      const { code, message } = await rejection(call());
      expect(code, name).toBe(Code.InvalidArgument);
      expect(message, name).toContain(field);
    }
    // 32 fields and 4096 bytes are fine.
    await r.registerNamespace({ scope, namespace: fields(32, 128) });
    await r.unregisterNamespace({ scope, namespace: fields(32, 128) });
    expect(await admin.describeScope({ scope })).toEqual(before);
  });

  it("rejects malformed admin requests, storing nothing", async () => {
    const scope = freshScope("bad-admin");
    const admin = adminClient();
    await admin.putScopeConfig({ scope, config: { lingeringSubscribe: true } });
    const before = await admin.describeScope({ scope });
    const cases: [string, () => Promise<unknown>, string][] = [
      ["token for ftp url", () => admin.createRelayToken({ relayUrl: "ftp://relay" }), "relay_url"],
      ["token for no url", () => admin.createRelayToken({ relayUrl: "" }), "relay_url"],
      ["token for junk", () => admin.createRelayToken({ relayUrl: "relay-a" }), "relay_url"],
      ["token ttl 0", () => admin.createRelayToken({ relayUrl: "https://a.example", ttlSeconds: 0 }), "ttl_seconds"],
      ["bad fallback", () => admin.putScopeConfig({ scope, config: { originFallback: "nope" } }), "config.origin_fallback"],
      ["zero rendezvous", () => admin.putScopeConfig({ scope, config: { rendezvousTimeoutMs: 0 } }), "config.rendezvous_timeout_ms"],
      ["empty scope", () => admin.putScopeConfig({ scope: "", config: {} }), "scope"],
      ["path no perms", () => admin.putPath({ path: "/x", scope }), "permissions"],
      ["path root", () => admin.putPath({ path: "/", scope, permissions: Permissions.READ_ONLY }), "path"],
      ["path dots", () => admin.putPath({ path: "/a/./b", scope, permissions: Permissions.READ_ONLY }), "path"],
      ["path empty scope", () => admin.putPath({ path: "/x", scope: "", permissions: Permissions.READ_ONLY }), "scope"],
      ["delete invalid path", () => admin.deletePath({ path: "x" }), "path"],
      ["page too big", () => admin.describeScope({ scope, pageSize: 5000 }), "page_size"],
      ["bad page token", () => admin.describeScope({ scope, pageToken: "garbage" }), "page_token"],
    ];
    for (const [name, call, field] of cases) {
      const { code, message } = await rejection(call());
      expect(code, name).toBe(Code.InvalidArgument);
      expect(message, name).toContain(field);
    }
    expect(await admin.describeScope({ scope })).toEqual(before);
  });

  it("rejects JSON with wrong types or unknown fields (e.g. a misspelt config field)", async () => {
    const scope = freshScope("json");
    const post = (method: string, body: string) =>
      workerFetch(`${BASE}/moqworker.v1.AdminService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` },
        body,
      });
    const unknown = await post("PutScopeConfig", JSON.stringify({ scope, config: { lingeringSubscribes: true } }));
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toEqual({ code: "invalid_argument", message: expect.stringContaining("lingeringSubscribes") });
    const wrongType = await post("PutScopeConfig", JSON.stringify({ scope, config: { rendezvousTimeoutMs: "soon" } }));
    expect(wrongType.status).toBe(400);
    expect(((await wrongType.json()) as { code: string }).code).toBe("invalid_argument");
    // Nothing was stored: the scope was never configured (DescribeScope says NOT_FOUND).
    await expect(adminClient().describeScope({ scope })).rejects.toMatchObject({ code: Code.NotFound });
  });
});
