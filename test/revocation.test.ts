// Revoking one relay's tokens (AdminService.RevokeRelayToken; SECURITY.md
// "Revoking one relay's token"): the relay is refused on its next call of any
// kind, its rows go from every scope, other relays are untouched, and a token
// minted afterwards works. The isolate that serves the revocation refuses at
// once (these tests run in it); the RelayObject refuses heartbeats and writes
// on its own, which is checked by calling it directly.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { adminClient, base, freshScope, ns, relay } from "./client.js";
import { coordinatorAs, errorOf, jwt, RELAY_AUDIENCE, scopeState, snapshot } from "./hardening.js";
import { scopeFromField } from "../src/objects/scope-name.js";
import { watch, watchRequest } from "./watch-client.js";
import { directoryStub, relayStub } from "../src/objects/stubs.js";

const admin = adminClient();

async function expectRevoked(p: Promise<unknown>, url: string) {
  const err = await errorOf(p);
  expect(err.code).toBe(Code.Unauthenticated);
  expect(err.rawMessage).toMatch(
    new RegExp(`^relay token revoked: tokens of ${url.replace(/[./]/g, "\\$&")} made up to \\S+ were revoked`),
  );
}

describe("RevokeRelayToken", () => {
  it("refuses the relay's next call of any kind, purges its rows from every scope, leaves other relays alone", async () => {
    const [s1, s2] = [freshScope("rev"), freshScope("rev")];
    const url = "https://rev-victim.example.com/";
    const victim = await relay(url, "binary", "v1");
    const bystander = await relay("https://rev-bystander.example.com/", "binary", "b1");
    await victim.heartbeat({ epoch: "v1" });
    await bystander.heartbeat({ epoch: "b1" });
    for (const scope of [s1, s2]) {
      await victim.registerNamespace({ scope, namespace: ns("victim/live") });
      await victim.registerTrack({ scope, namespace: ns("victim/live"), track: "video" });
      await victim.subscribeNamespace({ scope, prefix: ns("bystander") });
      await victim.subscribeTrack({ scope, namespace: ns("bystander/live"), track: "audio" });
      await bystander.registerNamespace({ scope, namespace: ns("bystander/live") });
      await bystander.subscribeNamespace({ scope, prefix: ns("victim") });
    }

    const res = await admin.revokeRelayToken({ relayUrl: "https://rev-victim.example.com" });
    expect(res.rowsRemoved).toBe(8n);
    expect(res.purgePending).toBe(false);
    expect(Number(res.revokedBeforeMs)).toBeLessThanOrEqual(Date.now());

    // Every kind of call is refused, reads as well as writes and the lease.
    await expectRevoked(victim.lookup({ scope: s1, namespace: ns("bystander/live") }), url);
    await expectRevoked(victim.heartbeat({ epoch: "v1" }), url);
    await expectRevoked(victim.registerNamespace({ scope: s1, namespace: ns("victim/again") }), url);
    await expectRevoked(victim.getScopeConfig({ scope: s2 }), url);
    await expectRevoked(victim.resolveScope({ connectionPath: "" }), url);
    await expectRevoked(victim.shutdown({}), url);

    // Its rows are gone from both scopes; the bystander's are all there.
    for (const scope of [s1, s2]) {
      expect((await errorOf(bystander.lookup({ scope, namespace: ns("victim/live") }))).code).toBe(Code.NotFound);
      const d = await admin.describeScope({ scope });
      const owners = [...d.namespaces, ...d.tracks, ...d.namespaceSubscriptions, ...d.trackSubscriptions].map((r) => r.relay?.url);
      expect(owners.sort()).toEqual(["https://rev-bystander.example.com/", "https://rev-bystander.example.com/"]);
      expect(base((await bystander.lookup({ scope, namespace: ns("bystander/live") })).origin?.relay?.url)).toBe(
        "https://rev-bystander.example.com/",
      );
    }
    expect((await bystander.heartbeat({ epoch: "b1" })).stateLost).toBe(false);
  });

  it("closes the relay's watch sockets, also in scopes it only read", async () => {
    const scope = freshScope("rev-watch");
    const url = "https://rev-watcher.example.com/";
    const victim = await relay(url, "binary", "v1");
    const bystander = await relay("https://rev-watch-bystander.example.com/", "binary", "b1");
    await bystander.registerNamespace({ scope, namespace: ns("bystander/live") });
    const mine = await watch(victim.token, scope);
    const theirs = await watch(bystander.token, scope);
    await mine.next();
    await theirs.next();
    await admin.revokeRelayToken({ relayUrl: url });
    expect(await mine.closed).toBe(1008);
    // The bystander's socket still hears changes.
    await bystander.registerNamespace({ scope, namespace: ns("bystander/other") });
    expect((await theirs.next()).event.case).toBe("invalidate");
    expect((await watchRequest(victim.token, scope)).status).toBe(401);
  });

  it("lets a token minted afterwards for the same relay work; the relay is told to re-register", async () => {
    const scope = freshScope("rev");
    const url = "https://rev-again.example.com/";
    const old = await relay(url, "binary", "a1");
    await old.heartbeat({ epoch: "a1" });
    await old.registerNamespace({ scope, namespace: ns("again") });
    await admin.revokeRelayToken({ relayUrl: url });
    await expectRevoked(old.heartbeat({ epoch: "a1" }), url);

    const fresh = await relay(url, "binary", "a1");
    expect((await fresh.heartbeat({ epoch: "a1" })).stateLost).toBe(true);
    await fresh.registerNamespace({ scope, namespace: ns("again") });
    expect(base((await fresh.lookup({ scope, namespace: ns("again") })).origin?.relay?.url)).toBe(url);
    // The old token stays revoked.
    await expectRevoked(old.lookup({ scope, namespace: ns("again") }), url);
  });

  it("refuses tokens without iat_ms (older tokens) and without any iat", async () => {
    const url = "https://rev-old-tokens.example.com/";
    const iat = Math.floor(Date.now() / 1000);
    const withIat = coordinatorAs(`Bearer ${await jwt({ sub: url, aud: RELAY_AUDIENCE, iat })}`);
    const noIat = coordinatorAs(`Bearer ${await jwt({ sub: url, aud: RELAY_AUDIENCE })}`);
    await withIat.heartbeat({ epoch: "o1" });
    await admin.revokeRelayToken({ relayUrl: url });
    await expectRevoked(withIat.heartbeat({ epoch: "o1" }), url);
    await expectRevoked(noIat.getScopeConfig({}), url);
  });

  it("is enforced by the relay's own object too: heartbeats and lease-opening writes of a revoked token are refused there", async () => {
    const url = "https://rev-object.example.com/";
    const stub = relayStub(env, url);
    const issuedAtMs = Date.now() - 1000;
    expect(await stub.heartbeat(url, "x1", [], issuedAtMs)).toMatchObject({ ok: true });
    // Recorded in the object alone (not in this isolate's copy): the object refuses by itself.
    await stub.revoke(Date.now());
    expect(await stub.heartbeat(url, "x1", [], issuedAtMs)).toMatchObject({ ok: false, code: Code.Unauthenticated });
    expect(await stub.enlist(url, "scope:x", "x1", issuedAtMs)).toMatchObject({ ok: false, code: Code.Unauthenticated });
    expect(await stub.heartbeat(url, "x1", [], Date.now() + 1)).toMatchObject({ ok: true, value: { stateLost: true } });
  });

  it("revokes a relay that never called: its tokens are refused from the first call", async () => {
    const url = "https://rev-never.example.com/";
    const r = await relay(url);
    const res = await admin.revokeRelayToken({ relayUrl: url });
    expect(res.rowsRemoved).toBe(0n);
    await expectRevoked(r.heartbeat({ epoch: "n1" }), url);
  });

  it("refuses a bad relay_url with INVALID_ARGUMENT naming it, and changes nothing", async () => {
    const scope = freshScope("rev");
    const r = await relay("https://rev-bad-input.example.com/", "binary", "e1");
    await r.registerNamespace({ scope, namespace: ns("kept") });
    const state = async () => ({
      ...(await scopeState([scopeFromField(scope)])),
      ...(await snapshot([], ["https://rev-bad-input.example.com/"])),
    });
    const before = await state();
    const version = (await directoryStub(env).revocations(-1))?.version;
    for (const relayUrl of [
      "",
      "not a url",
      "http://rev-bad-input.example.com/",
      "https://user:pw@rev-bad-input.example.com/",
      "x".repeat(3000),
    ]) {
      const err = await errorOf(admin.revokeRelayToken({ relayUrl }));
      expect(err.code, relayUrl).toBe(Code.InvalidArgument);
      expect(err.rawMessage, relayUrl).toMatch(/^relay_url/);
    }
    expect(await state()).toEqual(before);
    expect((await directoryStub(env).revocations(-1))?.version).toBe(version);
    await r.registerNamespace({ scope, namespace: ns("still-works") });
  });

  it("is refused without the admin token", async () => {
    const r = await relay("https://rev-no-admin.example.com/");
    const err = await errorOf(adminClient("json", r.token).revokeRelayToken({ relayUrl: "https://rev-no-admin.example.com/" }));
    expect(err.code).toBe(Code.Unauthenticated);
    await r.heartbeat({ epoch: "e1" });
  });
});

describe("relay token claims", () => {
  it("refuses a malformed iat_ms claim as UNAUTHENTICATED naming it", async () => {
    for (const iat_ms of ["1", -1, 1.5, null, {}]) {
      const c = coordinatorAs(`Bearer ${await jwt({ sub: "https://iat-ms.example.com/", aud: RELAY_AUDIENCE, iat_ms })}`);
      const err = await errorOf(c.heartbeat({ epoch: "e" }));
      expect(err.code, JSON.stringify(iat_ms)).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toBe("relay token has a malformed iat_ms claim");
    }
  });
});
