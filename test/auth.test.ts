// Caller identity: relay tokens bind a call to one relay URL; admin token gates the admin API.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import app from "../src/index.js";
import { BASE, base, adminClient, expectedLink, freshScope, ns, relay, workerFetch } from "./client.js";

const body = (res: Response) => res.json() as Promise<Record<string, unknown>>;
const lookupBody = JSON.stringify({ namespace: { fields: [btoa("a")] } });
const post = (path: string, headers: Record<string, string>, body = lookupBody) =>
  workerFetch(`${BASE}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });

describe("relay tokens", () => {
  it("refuses coordinator calls without a valid token (UNAUTHENTICATED)", async () => {
    for (const headers of [
      {} as Record<string, string>,
      { authorization: "Basic abc" },
      { authorization: "Bearer not-a-jwt" },
      { authorization: "Bearer dev-admin-token" },
    ]) {
      const res = await post("/moqworker.v1.CoordinatorService/Lookup", headers);
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect((await body(res)).code).toBe("unauthenticated");
    }
  });

  it("makes the token's relay URL the caller, whatever the request says", async () => {
    const scope = freshScope("identity");
    const a = await relay("https://relay-a.example.com:4443");
    await a.registerNamespace({ scope, namespace: ns("x"), context: { sourceUrl: "https://relay-b.example.com" } });
    const found = await a.lookup({ scope, namespace: ns("x") });
    expect(base(found.origin?.relay?.url)).toBe("https://relay-a.example.com:4443/");
  });

  it("mints tokens that verify with no storage and carry an optional expiry", async () => {
    const admin = adminClient();
    const forever = await admin.createRelayToken({ relayUrl: "https://relay-a.example.com" });
    expect(forever.expiresAtMs).toBeUndefined();
    const hour = await admin.createRelayToken({ relayUrl: "https://relay-a.example.com", ttlSeconds: 3600 });
    expect(Number(hour.expiresAtMs)).toBeGreaterThan(Date.now() + 3590_000);
    const res = await post("/moqworker.v1.CoordinatorService/GetScopeConfig", { authorization: `Bearer ${hour.token}` }, "{}");
    expect(res.status).toBe(200);
  });
});

describe("admin token", () => {
  it("refuses admin calls with no token, a wrong token or a relay token", async () => {
    const r = await relay("https://relay-a.example.com");
    for (const headers of [{} as Record<string, string>, { authorization: "Bearer wrong" }, { authorization: `Bearer ${r.token}` }]) {
      const res = await post("/moqworker.v1.AdminService/ListScopes", headers, "{}");
      expect(res.status).toBe(401);
      expect((await body(res)).code).toBe("unauthenticated");
    }
  });

  it("refuses every admin call when ADMIN_TOKEN is not set (a deployment without the secret)", async () => {
    const req = new Request(`${BASE}/moqworker.v1.AdminService/CreateRelayToken`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer dev-admin-token" },
      body: JSON.stringify({ relayUrl: "https://relay-a.example.com" }),
    });
    const res = await app.fetch(req, { ...env, ADMIN_TOKEN: undefined });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ code: "permission_denied", message: expect.stringContaining("ADMIN_TOKEN") });
  });
});

describe("unscoped calls", () => {
  it("are refused with PERMISSION_DENIED unless ALLOW_UNSCOPED is true", async () => {
    const r = await relay("https://relay-a.example.com");
    const req = () =>
      new Request(`${BASE}/moqworker.v1.CoordinatorService/RegisterNamespace`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${r.token}` },
        body: JSON.stringify({ namespace: { fields: [btoa("unscoped-denied")] } }),
      });
    const denied = await app.fetch(req(), { ...env, ALLOW_UNSCOPED: "false" });
    expect(denied.status).toBe(403);
    expect((await body(denied)).message).toContain("scope");
    const lookup = await r.lookup({ namespace: ns("unscoped-denied") }).catch((e) => e);
    expect(lookup).toBeInstanceOf(Error); // nothing was stored
    const allowed = await app.fetch(req(), env);
    expect(allowed.status).toBe(200);
  });
});

describe("curl-style JSON", () => {
  it("serves Lookup as plain JSON with base64 fields", async () => {
    const scope = freshScope("curl");
    const r = await relay("https://relay-a.example.com");
    await r.registerNamespace({ scope, namespace: ns("live/cam") });
    const res = await post(
      "/moqworker.v1.CoordinatorService/Lookup",
      { authorization: `Bearer ${r.token}` },
      JSON.stringify({ scope, namespace: { fields: [btoa("live"), btoa("cam"), btoa("1")] } }),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      // A scoped answer: the relay at the scope's relay-link path.
      origin: { namespace: { fields: [btoa("live"), btoa("cam")] }, relay: { url: `https://relay-a.example.com${await expectedLink(scope)}` } },
    });
  });
});
