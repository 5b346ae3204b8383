// Auth abuse: missing, malformed, expired, forged and foreign credentials;
// one relay acting on another's state; the wrong credential on each service;
// READ_ONLY paths; and the optional token claims (allowed scopes, read-only).
// Every refusal has the right Connect code and leaves state unchanged.
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Code } from "@connectrpc/connect";
import { decode as decodeJwt } from "hono/jwt";
import { encodeBase64Url } from "hono/utils/encode";
import { Permissions } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { secretsEqual } from "../src/auth/bearer.js";
import { ADMIN_TOKEN, base, adminClient, freshScope, ns, relay, type Coordinator } from "./client.js";
import { codeOf, coordinatorAs, errorOf, jwt, RELAY_AUDIENCE, relayNeverWrote, scopeState, TEST_TOKEN_SECRET } from "./hardening.js";

/** A JWT segment: unpadded base64url of the string's UTF-8. */
const b64url = (s: string) => encodeBase64Url(new TextEncoder().encode(s).buffer).replace(/=+$/, "");

let scope: string;
let owner: Coordinator;
let intruder: Coordinator;

beforeAll(async () => {
  scope = freshScope("auth");
  owner = await relay("https://auth-owner.example.com");
  intruder = await relay("https://auth-intruder.example.com");
  await adminClient().putScopeConfig({ scope, config: { lingeringSubscribe: true } });
  await owner.registerNamespace({ scope, namespace: ns("live/main") });
  await owner.registerTrack({ scope, namespace: ns("live/main"), track: "video" });
  await owner.subscribeNamespace({ scope, prefix: ns("live") });
  await owner.subscribeTrack({ scope, namespace: ns("live/other"), track: "audio" });
});

/** Every write RPC, aimed at the owner's state, made by `c` (thunks: called one at a time). */
const writesAgainstOwner = (c: ReturnType<typeof coordinatorAs>) => [
  () => c.registerNamespace({ scope, namespace: ns("live/main") }),
  () => c.registerNamespace({ scope, namespace: ns("live/new") }),
  () => c.unregisterNamespace({ scope, namespace: ns("live/main") }),
  () => c.registerTrack({ scope, namespace: ns("live/main"), track: "video" }),
  () => c.unregisterTrack({ scope, namespace: ns("live/main"), track: "video" }),
  () => c.subscribeNamespace({ scope, prefix: ns("live") }),
  () => c.unsubscribeNamespace({ scope, prefix: ns("live") }),
  () => c.subscribeTrack({ scope, namespace: ns("live/other"), track: "audio" }),
  () => c.unsubscribeTrack({ scope, namespace: ns("live/other"), track: "audio" }),
  () => c.heartbeat({ epoch: "x" }),
  () => c.shutdown({}),
];

afterEach(() => {
  vi.restoreAllMocks();
});

describe("credentials", () => {
  it.each([
    ["no Authorization header", undefined, /missing Authorization/],
    ["Basic credentials", "Basic dXNlcjpwYXNz", /must be 'Bearer <token>'/],
    ["Bearer without a token", "Bearer", /must be 'Bearer <token>'/],
    ["two tokens", "Bearer a b", /must be 'Bearer <token>'/],
    ["not a JWT", "Bearer abc", /relay token rejected/],
    ["the admin token", `Bearer ${ADMIN_TOKEN}`, /relay token rejected/],
  ])("%s → UNAUTHENTICATED on every write, nothing stored", async (_name, authorization, message) => {
    const before = await scopeState([scope]);
    const c = coordinatorAs(authorization);
    for (const call of writesAgainstOwner(c)) {
      const err = await errorOf(call());
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toMatch(message);
    }
    expect(await scopeState([scope])).toEqual(before);
  });

  it.each([
    [
      "signed with another secret (or before TOKEN_SECRET was rotated)",
      () => jwt({ sub: "https://auth-owner.example.com/", aud: RELAY_AUDIENCE }, "old-secret"),
      "SignatureMismatched",
    ],
    [
      "expired",
      () => jwt({ sub: "https://auth-owner.example.com/", aud: RELAY_AUDIENCE, exp: Math.floor(Date.now() / 1000) - 1 }),
      "TokenExpired",
    ],
    [
      "not yet valid",
      () => jwt({ sub: "https://auth-owner.example.com/", aud: RELAY_AUDIENCE, nbf: Math.floor(Date.now() / 1000) + 3600 }),
      "TokenNotBefore",
    ],
    ["for another audience", () => jwt({ sub: "https://auth-owner.example.com/", aud: "moq-worker:admin" }), "TokenAudience"],
    ["without an audience", () => jwt({ sub: "https://auth-owner.example.com/" }), "PayloadRequiresAud"],
    [
      "HS512 instead of HS256",
      () => jwt({ sub: "https://auth-owner.example.com/", aud: RELAY_AUDIENCE }, TEST_TOKEN_SECRET, "HS512"),
      "AlgorithmMismatch",
    ],
    [
      "alg none",
      async () =>
        `${b64url('{"alg":"none","typ":"JWT"}')}.${b64url(JSON.stringify({ sub: "https://auth-owner.example.com/", aud: RELAY_AUDIENCE }))}.`,
      "",
    ],
    ["without a subject", () => jwt({ aud: RELAY_AUDIENCE }), "no relay URL"],
    ["with an empty subject", () => jwt({ sub: "", aud: RELAY_AUDIENCE }), "no relay URL"],
  ])("a token %s → UNAUTHENTICATED, nothing stored", async (_name, make, reason) => {
    const before = await scopeState([scope]);
    const c = coordinatorAs(`Bearer ${await make()}`);
    for (const call of writesAgainstOwner(c)) {
      const err = await errorOf(call());
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toContain(reason);
    }
    expect(await codeOf(c.lookup({ scope, namespace: ns("live/main") }))).toBe(Code.Unauthenticated);
    expect(await scopeState([scope])).toEqual(before);
  });

  it("a real token with its subject edited (claiming to be another relay) → UNAUTHENTICATED", async () => {
    const [header, , signature] = intruder.token.split(".");
    const forged = `${header}.${b64url(JSON.stringify({ sub: owner.url, aud: RELAY_AUDIENCE, iat: 1 }))}.${signature}`;
    const before = await scopeState([scope]);
    const c = coordinatorAs(`Bearer ${forged}`);
    expect(await codeOf(c.unregisterNamespace({ scope, namespace: ns("live/main") }))).toBe(Code.Unauthenticated);
    expect(await codeOf(c.shutdown({}))).toBe(Code.Unauthenticated);
    expect(await scopeState([scope])).toEqual(before);
  });

  it("admin calls with a relay token, or none, or a near-miss → UNAUTHENTICATED; nothing changes", async () => {
    const before = await scopeState([scope]);
    for (const token of [owner.token, `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), ADMIN_TOKEN.toUpperCase()]) {
      const a = adminClient("json", token);
      expect(await codeOf(a.putPath({ path: "/stolen", scope, permissions: Permissions.READ_WRITE }))).toBe(Code.Unauthenticated);
      expect(await codeOf(a.putScopeConfig({ scope, config: {} }))).toBe(Code.Unauthenticated);
      expect(await codeOf(a.createRelayToken({ relayUrl: "https://evil.example.com" }))).toBe(Code.Unauthenticated);
      expect(await codeOf(a.describeScope({ scope }))).toBe(Code.Unauthenticated);
    }
    expect(await codeOf(intruder.resolveScope({ connectionPath: "/stolen" }))).toBe(Code.NotFound);
    expect(await scopeState([scope])).toEqual(before);
  });

  it("compares the admin token with the runtime's timing-safe comparison of fixed-length digests: no length or prefix shortcut", async () => {
    // Timing itself is not measured (no timed assertions); what makes the time
    // independent of the inputs is checked: every comparison, whatever the
    // lengths or the first differing byte, is one crypto.subtle.timingSafeEqual
    // over two SHA-256 digests (32 bytes each).
    const timingSafe = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const pairs: [string, string][] = [
      ["same-secret", "same-secret"],
      ["same-secret", "xame-secret"],
      ["same-secret", "same-secreT"],
      ["same", "same-secret"],
      ["", "x"],
    ];
    for (const [a, b] of pairs) await secretsEqual(a, b);
    expect(timingSafe).toHaveBeenCalledTimes(pairs.length);
    for (const [x, y] of timingSafe.mock.calls) {
      expect([(x as ArrayBuffer).byteLength, (y as ArrayBuffer).byteLength]).toEqual([32, 32]);
    }
    // The admin route compares through secretsEqual too.
    timingSafe.mockClear();
    expect(await codeOf(adminClient("json", `${ADMIN_TOKEN}x`).listScopes({}))).toBe(Code.Unauthenticated);
    expect(timingSafe).toHaveBeenCalledTimes(1);
  });

  it("compares tokens exactly: case, length and non-ASCII bytes all count", async () => {
    expect(await secretsEqual("same-secret", "same-secret")).toBe(true);
    expect(await secretsEqual("same-secret", "same-secreT")).toBe(false);
    expect(await secretsEqual("same-secret", "same-secret-and-more")).toBe(false);
    expect(await secretsEqual("same", "same-secret")).toBe(false);
    expect(await secretsEqual("", "x")).toBe(false);
    // Non-ASCII tokens compare by their UTF-8 bytes.
    expect(await secretsEqual("s\u00e9cret", "s\u00e9cret")).toBe(true);
    expect(await secretsEqual("s\u00e9cret", "secret")).toBe(false);
  });
});

describe("one relay against another's state", () => {
  it("a relay cannot take, drop or overwrite another relay's namespaces, tracks or subscriptions", async () => {
    const before = await scopeState([scope]);
    expect(await codeOf(intruder.registerNamespace({ scope, namespace: ns("live/main") }))).toBe(Code.AlreadyExists);
    expect(await codeOf(intruder.unregisterNamespace({ scope, namespace: ns("live/main") }))).toBe(Code.PermissionDenied);
    expect(await codeOf(intruder.registerTrack({ scope, namespace: ns("live/main"), track: "video" }))).toBe(Code.AlreadyExists);
    expect(await codeOf(intruder.unregisterTrack({ scope, namespace: ns("live/main"), track: "video" }))).toBe(Code.PermissionDenied);
    // Unsubscribing drops only the caller's own interest: a no-op here.
    expect(await codeOf(intruder.unsubscribeNamespace({ scope, prefix: ns("live") }))).toBe("ok");
    expect(await codeOf(intruder.unsubscribeTrack({ scope, namespace: ns("live/other"), track: "audio" }))).toBe("ok");
    // The intruder's own lifetime calls touch only the intruder.
    expect(await codeOf(intruder.heartbeat({ epoch: "intruder-2", addrs: ["10.9.9.9:4443"] }))).toBe("ok");
    expect(await codeOf(intruder.shutdown({}))).toBe("ok");
    expect(await scopeState([scope])).toEqual(before);
    // And the owner still answers for everything it had.
    expect(base((await intruder.lookup({ scope, namespace: ns("live/main") })).origin?.relay?.url)).toBe(owner.url);
    const subs = await intruder.lookupNamespaceSubscribers({ scope, namespace: ns("live/x") });
    expect(subs.relays.map((r) => base(r.url))).toEqual([owner.url]);
    const waiting = await intruder.lookupTrackSubscribers({ scope, namespace: ns("live/other"), track: "audio" });
    expect(waiting.relays.map((r) => base(r.url))).toEqual([owner.url]);
  });
});

describe("READ_ONLY connection paths", () => {
  it("ResolveScope reports READ_ONLY for a watch path and READ_WRITE for a publish path", async () => {
    const tenant = freshScope("ro");
    await adminClient().putPath({ path: `/${tenant}/watch`, scope: tenant, permissions: Permissions.READ_ONLY });
    await adminClient().putPath({ path: `/${tenant}/ingest`, scope: tenant, permissions: Permissions.READ_WRITE });
    const watch = await intruder.resolveScope({ connectionPath: `/${tenant}/watch/` });
    expect(watch.scope?.scopeId).toBe(tenant);
    expect(watch.scope?.permissions).toBe(Permissions.READ_ONLY);
    const ingest = await intruder.resolveScope({ connectionPath: `/${tenant}/ingest` });
    expect(ingest.scope?.permissions).toBe(Permissions.READ_WRITE);
    // The split of duties (SECURITY.md): RegisterNamespace carries the scope, not the
    // session's path, so the coordinator cannot tell a watch session's publish from an
    // ingest session's. moq-relay-ietf never creates the publish side of a READ_ONLY
    // session; the coordinator's own guard is the read-only token (below).
  });
});

describe("token claims: allowed scopes and read-only", () => {
  const mint = async (url: string, restrict: { scopes?: string[]; readOnly?: boolean }) => {
    const { token } = await adminClient().createRelayToken({ relayUrl: url, ...restrict });
    return { token, c: coordinatorAs(`Bearer ${token}`) };
  };

  it("a scope-limited token acts only in its scopes: others, unscoped and foreign paths are PERMISSION_DENIED", async () => {
    const mine = freshScope("claims-mine");
    const theirs = freshScope("claims-theirs");
    await adminClient().putPath({ path: `/${mine}`, scope: mine, permissions: Permissions.READ_WRITE });
    await adminClient().putPath({ path: `/${theirs}`, scope: theirs, permissions: Permissions.READ_WRITE });
    const { c } = await mint("https://tenant-relay.example.com", { scopes: [mine] });
    const before = await scopeState([theirs, null]);

    await c.registerNamespace({ scope: mine, namespace: ns("a") });
    expect((await c.resolveScope({ connectionPath: `/${mine}` })).scope?.scopeId).toBe(mine);

    const denied = [
      () => c.registerNamespace({ scope: theirs, namespace: ns("a") }),
      () => c.lookup({ scope: theirs, namespace: ns("a") }),
      () => c.subscribeNamespace({ scope: theirs, prefix: ns("") }),
      () => c.getScopeConfig({ scope: theirs }),
      () => c.registerNamespace({ namespace: ns("a") }), // unscoped
      () => c.listTracks({ namespace: ns("a") }),
      () => c.resolveScope({ connectionPath: `/${theirs}` }),
      () => c.resolveScope({}), // no path = an unscoped session
    ];
    for (const call of denied) expect(await codeOf(call())).toBe(Code.PermissionDenied);
    const err = await errorOf(c.registerNamespace({ scope: theirs, namespace: ns("a") }));
    expect(err.rawMessage).toBe(`scope: scope '${theirs}' is not one this relay's token may act in`);
    // Its own lifetime calls are not scoped.
    expect(await codeOf(c.heartbeat({ epoch: "t-1" }))).toBe("ok");
    expect(await scopeState([theirs, null])).toEqual(before);
  });

  it("a read-only token may subscribe and look up but not publish", async () => {
    const s = freshScope("claims-ro");
    const { c } = await mint("https://viewer-edge.example.com", { readOnly: true });
    const before = await scopeState([s]);
    for (const call of [
      () => c.registerNamespace({ scope: s, namespace: ns("x") }),
      () => c.registerTrack({ scope: s, namespace: ns("x"), track: "t" }),
    ]) {
      const err = await errorOf(call());
      expect(err.code).toBe(Code.PermissionDenied);
      expect(err.rawMessage).toMatch(/^this relay's token is read-only: it may not call Register(Namespace|Track)$/);
    }
    expect(await scopeState([s])).toEqual(before);
    await owner.registerNamespace({ scope: s, namespace: ns("x") });
    expect((await c.subscribeNamespace({ scope: s, prefix: ns("") })).upstreamRelays.map((r) => base(r.url))).toEqual([owner.url]);
    expect(base((await c.lookup({ scope: s, namespace: ns("x/y") })).origin?.relay?.url)).toBe(owner.url);
  });

  it("claims are signed: widening a limited token by editing it is UNAUTHENTICATED", async () => {
    const s = freshScope("claims-edit");
    const { token } = await mint("https://tenant-relay-2.example.com", { scopes: [s], readOnly: true });
    const [header, , signature] = token.split(".");
    const claims = decodeJwt(token).payload as Record<string, unknown>;
    expect(claims.scp).toEqual([s]);
    expect(claims.ro).toBe(true);
    const { scp: _s, ro: _r, ...widened } = claims;
    const c = coordinatorAs(`Bearer ${header}.${b64url(JSON.stringify(widened))}.${signature}`);
    expect(await codeOf(c.registerNamespace({ scope: freshScope("elsewhere"), namespace: ns("a") }))).toBe(Code.Unauthenticated);
  });

  it.each([
    ["scp a string", { scp: "s" }, "malformed scope claim"],
    ["scp empty", { scp: [] }, "malformed scope claim"],
    ["scp with a number", { scp: ["s", 1] }, "malformed scope claim"],
    ["ro a string", { ro: "yes" }, "malformed read-only claim"],
  ])("a correctly signed token with %s is refused rather than read as unrestricted", async (_n, extra, reason) => {
    const token = await jwt({ sub: "https://odd-claims.example.com/", aud: RELAY_AUDIENCE, ...extra });
    const err = await errorOf(coordinatorAs(`Bearer ${token}`).registerNamespace({ scope: freshScope("odd"), namespace: ns("a") }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain(reason);
    expect(await relayNeverWrote("https://odd-claims.example.com/")).toBe(true);
  });

  it("CreateRelayToken validates the scopes it is asked to bind", async () => {
    const a = adminClient();
    expect((await errorOf(a.createRelayToken({ relayUrl: "https://r.example.com", scopes: ["ok", ""] }))).rawMessage).toBe(
      "scopes[1]: must not be empty (leave it out for unscoped)",
    );
    const many = Array.from({ length: 33 }, (_, i) => `s${i}`);
    const err = await errorOf(a.createRelayToken({ relayUrl: "https://r.example.com", scopes: many }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("scopes: has 33 entries, more than 32");
    // A token minted without claims stays unrestricted (backward compatible); iat_ms only dates it (revocation).
    const { token } = await a.createRelayToken({ relayUrl: "https://plain.example.com" });
    const claims = decodeJwt(token).payload;
    expect(Object.keys(claims).sort()).toEqual(["aud", "iat", "iat_ms", "sub"]);
  });
});
