// A scope's token policy (coordinator.proto ScopeAuth, admin.proto
// RotateScopeKey/RemoveScopeKey/IssueToken): what PutScopeConfig accepts and
// refuses (changing nothing), what GetScopeConfig hands relays, the Worker's
// own keys and their rotation, and tokens a verifier can check. The relay's
// own verifier checks the same tokens in edge/tests/auth_cases.
import { describe, expect, it } from "vitest";
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { Code } from "@connectrpc/connect";
import { decode } from "cborg";
import { TokenGrant } from "../src/gen/moqworker/v1/admin_pb.js";
import type { ScopeAuth } from "../src/gen/moqworker/v1/coordinator_pb.js";
import { fromBase64Url } from "../src/model/base64url.js";
import { scopeStub } from "../src/objects/stubs.js";
import { errorOf } from "./hardening.js";
import { adminClient, freshScope, ns, relay } from "./client.js";
import { inv, plain, watch } from "./watch-client.js";

const admin = adminClient();

/** A P-256 public key in SPKI PEM, and its private half. */
async function es256Pem(curve = "P-256"): Promise<{ pem: string; key: CryptoKeyPair }> {
  const key = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = (await crypto.subtle.exportKey("spki", key.publicKey)) as ArrayBuffer;
  const b64 = btoa(String.fromCharCode(...new Uint8Array(spki)));
  return { pem: `-----BEGIN PUBLIC KEY-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END PUBLIC KEY-----`, key };
}

async function pkcs8Pem(): Promise<string> {
  const { key } = await es256Pem();
  const der = (await crypto.subtle.exportKey("pkcs8", key.privateKey)) as ArrayBuffer;
  return `-----BEGIN PRIVATE KEY-----\n${btoa(String.fromCharCode(...new Uint8Array(der)))}\n-----END PRIVATE KEY-----`;
}

const configOf = async (scope: string) => (await admin.describeScope({ scope })).config;
const policyOf = async (scope: string): Promise<ScopeAuth | undefined> => {
  const viewer = await relay(`https://policy-reader-${crypto.randomUUID().slice(0, 8)}.example.com`);
  return (await viewer.getScopeConfig({ scope })).config?.auth;
};

/** A token's parts: protected header, claims, and whether `pem`'s key verifies it. */
async function open(token: string, pem: string) {
  expect(token.startsWith("1:")).toBe(true);
  const bytes = fromBase64Url(token.slice(2));
  if (!bytes) throw new Error("not base64url");
  expect(bytes[0]).toBe(0xd2); // COSE_Sign1, tag 18
  const [prot, unprot, payload, sig] = decode(bytes.subarray(1), { useMaps: true }) as [
    Uint8Array,
    Map<number, unknown>,
    Uint8Array,
    Uint8Array,
  ];
  const header = decode(prot, { useMaps: true }) as Map<number, unknown>;
  const claims = decode(payload, { useMaps: true }) as Map<number, unknown>;
  const { encode } = await import("cborg");
  const der = Uint8Array.from(atob(pem.replace(/-----[A-Z ]+-----|\s/g, "")), (c) => c.charCodeAt(0));
  const pub = await crypto.subtle.importKey("spki", der, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const signed = encode(["Signature1", prot, new Uint8Array(0), payload]);
  const valid = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, signed);
  return { header, claims, valid, unprotected: unprot, raw: bytes };
}

describe("PutScopeConfig's auth", () => {
  it("stores an operator's policy; GetScopeConfig hands it to relays with the short TTL", async () => {
    const scope = freshScope("auth-byo");
    const { pem } = await es256Pem();
    await admin.putScopeConfig({
      scope,
      config: { auth: { keys: [{ kid: "k1", pem }], issuers: ["https://issuer.example"], audiences: ["moq"], clockSkewSeconds: 30 } },
    });
    const auth = await policyOf(scope);
    expect(auth?.keys.map((k) => [k.kid, k.pem.trim(), k.workerHeld])).toEqual([["k1", pem.trim(), false]]);
    expect(auth?.issuers).toEqual(["https://issuer.example"]);
    expect(auth?.audiences).toEqual(["moq"]);
    expect(auth?.clockSkewSeconds).toBe(30);
    expect(auth?.ttlSeconds).toBe(5);
    expect(Number(auth?.keys[0].addedAtMs)).toBeGreaterThan(Date.now() - 60_000);
    // Absent auth: no policy, as before.
    await admin.putScopeConfig({ scope, config: { lingeringSubscribe: true } });
    expect(await policyOf(scope)).toBeUndefined();
  });

  it("stores keys as strict PEM (64-character lines) whatever the width they came in", async () => {
    const scope = freshScope("auth-pem");
    const { pem } = await es256Pem();
    const body = pem.replace(/-----[A-Z ]+-----|\s/g, "");
    const oneLine = `-----BEGIN PUBLIC KEY-----${body}-----END PUBLIC KEY-----`;
    const wide = `-----BEGIN PUBLIC KEY-----\n${body.replace(/.{1,76}/g, "$&\n")}-----END PUBLIC KEY-----\n`;
    await admin.putScopeConfig({
      scope,
      config: {
        auth: {
          keys: [
            { kid: "one", pem: oneLine },
            { kid: "wide", pem: wide },
          ],
        },
      },
    });
    const keys = (await policyOf(scope))?.keys ?? [];
    expect(keys.length).toBe(2);
    for (const k of keys) {
      expect(k.pem.trim()).toBe(pem.trim());
      for (const line of k.pem.trim().split("\n").slice(1, -2)) expect(line.length).toBe(64);
    }
  });

  it("refuses bad policies naming the field, and changes nothing", async () => {
    const scope = freshScope("auth-bad");
    const { pem } = await es256Pem();
    const good = { keys: [{ kid: "k1", pem }], issuers: [], audiences: [] };
    await admin.putScopeConfig({ scope, config: { auth: good } });
    const before = await configOf(scope);
    const p384 = (await es256Pem("P-384")).pem;
    const six = await Promise.all(Array.from({ length: 6 }, async (_, i) => ({ kid: `k${i}`, pem: (await es256Pem()).pem })));
    const cases: [string, unknown, RegExp][] = [
      ["no keys", { keys: [] }, /^config\.auth\.keys: must hold at least 1 key/],
      ["6 keys", { keys: six }, /^config\.auth\.keys: holds 6 keys/],
      ["duplicate kids", { keys: [good.keys[0], { kid: "k1", pem: six[0].pem }] }, /^config\.auth\.keys\[1\]\.kid: 'k1' is used/],
      ["a private key", { keys: [{ kid: "p", pem: await pkcs8Pem() }] }, /^config\.auth\.keys\[0\]\.pem: is a private key/],
      ["junk", { keys: [{ kid: "j", pem: "hello" }] }, /^config\.auth\.keys\[0\]\.pem: is not a PEM block/],
      [
        "junk in a PEM block",
        { keys: [{ kid: "j", pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }] },
        /pem: is not a P-256/,
      ],
      ["another curve", { keys: [{ kid: "c", pem: p384 }] }, /^config\.auth\.keys\[0\]\.pem: is not a P-256 \(ES256\) public key/],
      ["an empty kid", { keys: [{ kid: "", pem }] }, /^config\.auth\.keys\[0\]\.kid: must be 1 to 64/],
      ["skew over 300 s", { ...good, clockSkewSeconds: 301 }, /^config\.auth\.clock_skew_seconds: must be at most 300/],
      ["a TTL of 0", { ...good, ttlSeconds: 0 }, /^config\.auth\.ttl_seconds/],
      ["an empty issuer", { ...good, issuers: [""] }, /^config\.auth\.issuers\[0\]/],
    ];
    for (const [what, auth, message] of cases) {
      const err = await errorOf(admin.putScopeConfig({ scope, config: { lingeringSubscribe: true, auth: auth as ScopeAuth } }));
      expect(err.code, what).toBe(Code.InvalidArgument);
      expect(err.rawMessage, what).toMatch(message);
    }
    expect(await configOf(scope)).toEqual(before);
  });
});

describe("the Worker's keys and IssueToken", () => {
  it("RotateScopeKey turns the policy on with a key the Worker signs with at once; tokens verify and carry the grant", async () => {
    const scope = freshScope("auth-issue");
    expect((await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] }))).code).toBe(Code.FailedPrecondition);
    const rotated = await admin.rotateScopeKey({ scope });
    expect(rotated.key?.workerHeld).toBe(true);
    expect(rotated.key?.signing).toBe(true);
    expect(rotated.replacesKid).toBeUndefined();
    expect(Number(rotated.signsFromMs)).toBeLessThanOrEqual(Date.now());
    const auth = await policyOf(scope);
    expect(auth?.keys.map((k) => k.kid)).toEqual([rotated.key?.kid]);
    // The private half is never shown.
    expect(JSON.stringify(await admin.describeScope({ scope }), (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toMatch(
      /PRIVATE|sealed/,
    );

    const issued = await admin.issueToken({
      scope,
      grants: [TokenGrant.PUBLISH],
      namespacePrefix: ns("acme/live"),
      track: "video",
      ttlSeconds: 120,
    });
    expect(issued.kid).toBe(rotated.key?.kid);
    const t = await open(issued.token, rotated.key?.pem ?? "");
    expect(t.valid).toBe(true);
    expect(t.header.get(1)).toBe(-7);
    expect(new TextDecoder().decode(t.header.get(4) as Uint8Array)).toBe(issued.kid);
    const exp = t.claims.get(4) as number;
    expect(exp * 1000).toBe(Number(issued.expiresAtMs));
    expect(exp - (t.claims.get(6) as number)).toBe(120);
    expect((t.claims.get(7) as Uint8Array).length).toBe(16);
    expect([...t.claims.keys()]).toEqual([4, 6, 7, 327]); // no issuer or audience listed: none claimed
    const [[actions, namespaces, track]] = t.claims.get(327) as [[number[], Uint8Array[], Uint8Array]];
    expect(actions).toEqual([0, 2, 6]);
    expect(namespaces.map((f) => new TextDecoder().decode(f))).toEqual(["acme", "live"]);
    expect(new TextDecoder().decode(track)).toBe("video");
    // A subscribe token for any namespace: no namespace or track match.
    const sub = await open((await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] })).token, rotated.key?.pem ?? "");
    expect(sub.valid).toBe(true);
    expect(sub.claims.get(327)).toEqual([[[0, 3, 4, 7, 8], []]]);
  });

  it("claims the policy's issuer and audience, and refuses others", async () => {
    const scope = freshScope("auth-iss");
    await admin.rotateScopeKey({ scope });
    const { pem } = await es256Pem();
    await admin.putScopeConfig({
      scope,
      config: { auth: { keys: [{ kid: "byo", pem }], issuers: ["https://a.example", "https://b.example"], audiences: ["moq"] } },
    });
    const t = await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], issuer: "https://b.example" });
    const worker = (await policyOf(scope))?.keys.find((k) => k.workerHeld);
    const opened = await open(t.token, worker?.pem ?? "");
    expect(opened.claims.get(1)).toBe("https://b.example");
    expect(opened.claims.get(3)).toBe("moq");
    const err = await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], audience: "other" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^audience: 'other' is not one/);
  });

  it("a refused token records nothing: a retiring key is not kept longer", async () => {
    const scope = freshScope("auth-refused-keeps");
    const a = await admin.rotateScopeKey({ scope });
    await admin.putScopeConfig({ scope, config: { auth: { audiences: ["moq"] } } });
    await admin.rotateScopeKey({ scope });
    const retiresAt = async () => (await policyOf(scope))?.keys.find((k) => k.kid === a.key?.kid)?.retiresAtMs;
    const before = await retiresAt();
    expect(before).toBeDefined();
    const err = await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], audience: "other", ttlSeconds: 600_000 }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(await retiresAt()).toBe(before);
    // A token it does sign (during the new key's warm-up) keeps it as long as that token lives.
    await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], ttlSeconds: 600_000 });
    expect(Number(await retiresAt())).toBeGreaterThan(Date.now() + 599_000_000);
  });

  it("refuses bad requests naming the field", async () => {
    const scope = freshScope("auth-issue-bad");
    await admin.rotateScopeKey({ scope });
    const cases: [string, Parameters<typeof admin.issueToken>[0], RegExp][] = [
      ["no grant", { scope, grants: [] }, /^grants:/],
      ["an unknown grant", { scope, grants: [9 as TokenGrant] }, /^grants: 9 is not a grant/],
      ["a lifetime over 7 days", { scope, grants: [TokenGrant.SUBSCRIBE], ttlSeconds: 604_501 }, /^ttl_seconds:/],
      ["a lifetime of 0", { scope, grants: [TokenGrant.SUBSCRIBE], ttlSeconds: 0 }, /^ttl_seconds:/],
      ["an empty track", { scope, grants: [TokenGrant.SUBSCRIBE], track: "" }, /^track:/],
      ["an empty scope", { scope: "", grants: [TokenGrant.SUBSCRIBE] }, /^scope:/],
    ];
    for (const [what, req, message] of cases) {
      const err = await errorOf(admin.issueToken(req));
      expect(err.code, what).toBe(Code.InvalidArgument);
      expect(err.rawMessage, what).toMatch(message);
    }
  });

  it("rotation: the new key joins at once, signs after the warm-up; the old one retires after its last token expires", async () => {
    const scope = freshScope("auth-rotate");
    const first = await admin.rotateScopeKey({ scope });
    const old = first.key?.kid ?? "";
    await admin.putScopeConfig({
      scope,
      config: {
        auth: { keys: [{ kid: "byo", pem: (await es256Pem()).pem }], issuers: [], audiences: [], clockSkewSeconds: 0, ttlSeconds: 2 },
      },
    });
    const t1 = await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], ttlSeconds: 30 });
    const second = await admin.rotateScopeKey({ scope });
    expect(second.replacesKid).toBe(old);
    // TTL 2 s + 5 s margin.
    const warmup = Number(second.signsFromMs) - Date.now();
    expect(warmup).toBeGreaterThan(5_000);
    expect(warmup).toBeLessThanOrEqual(7_000);
    let keys = (await policyOf(scope))?.keys ?? [];
    expect(keys.map((k) => k.kid)).toEqual([second.key?.kid, "byo", old]);
    // Until the new key has reached every relay, the old one signs.
    expect((await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] })).kid).toBe(old);
    // Later (moved in time): the new key signs, the old one is retiring at its last token's exp (+ skew 0).
    await runInDurableObject(scopeStub(env, scope), (_o, state) => {
      state.storage.sql.exec("UPDATE signing_keys SET signs_from = signs_from - 10000, replaced_at = replaced_at - 10000");
    });
    expect((await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE], ttlSeconds: 60 })).kid).toBe(second.key?.kid);
    keys = (await policyOf(scope))?.keys ?? [];
    const retiring = keys.find((k) => k.kid === old);
    // The later of its last token's expiry (30 s) and the default-lifetime token issued during the warm-up (600 s).
    expect(Number(retiring?.retiresAtMs)).toBeGreaterThanOrEqual(Number(t1.expiresAtMs));
    expect(retiring?.signing).toBe(false);
    // Its tokens all expired: the alarm takes it out of the policy, and tells the relays.
    const r = await relay(`https://auth-rotate-watcher-${crypto.randomUUID().slice(0, 8)}.example.com`);
    const w = await watch(r.token, scope);
    const hello = Number((await w.next()).seq);
    await runInDurableObject(scopeStub(env, scope), (_o, state) => {
      state.storage.sql.exec("UPDATE signing_keys SET max_exp = 0 WHERE kid = ?", old);
    });
    expect(await runDurableObjectAlarm(scopeStub(env, scope))).toBe(true);
    expect(plain(await w.next())).toEqual(inv(hello + 1, { config: true }));
    w.ws.close();
    expect((await policyOf(scope))?.keys.map((k) => k.kid)).toEqual([second.key?.kid, "byo"]);
  });

  it("RemoveScopeKey takes a Worker key out at once; never the last key, nor another's", async () => {
    const scope = freshScope("auth-remove");
    const a = await admin.rotateScopeKey({ scope });
    const kid = a.key?.kid ?? "";
    expect((await errorOf(admin.removeScopeKey({ scope, kid }))).code).toBe(Code.FailedPrecondition);
    const { pem } = await es256Pem();
    await admin.putScopeConfig({ scope, config: { auth: { keys: [{ kid: "byo", pem }], issuers: [], audiences: [] } } });
    expect((await errorOf(admin.removeScopeKey({ scope, kid: "byo" }))).code).toBe(Code.NotFound);
    await admin.removeScopeKey({ scope, kid });
    expect((await policyOf(scope))?.keys.map((k) => k.kid)).toEqual(["byo"]);
    expect((await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] }))).code).toBe(Code.FailedPrecondition);
  });

  it("turning the policy off drops the Worker's keys: none comes back with the next one", async () => {
    const scope = freshScope("auth-off");
    const a = await admin.rotateScopeKey({ scope });
    await admin.putScopeConfig({ scope, config: {} });
    const b = await admin.rotateScopeKey({ scope });
    expect((await policyOf(scope))?.keys.map((k) => k.kid)).toEqual([b.key?.kid]);
    expect((await errorOf(admin.removeScopeKey({ scope, kid: a.key?.kid ?? "" }))).code).toBe(Code.NotFound);
    // b signs at once: relays held no policy at all.
    expect((await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] })).kid).toBe(b.key?.kid);
  });

  it("never leaves a policy with only retiring keys; removing the newest key puts the one it replaced back", async () => {
    const scope = freshScope("auth-retiring");
    const a = await admin.rotateScopeKey({ scope });
    const b = await admin.rotateScopeKey({ scope });
    // a is retiring now: b is the only key that stays.
    expect((await errorOf(admin.removeScopeKey({ scope, kid: b.key?.kid ?? "" }))).code).toBe(Code.FailedPrecondition);
    await admin.putScopeConfig({ scope, config: { auth: { keys: [{ kid: "byo", pem: (await es256Pem()).pem }] } } });
    await admin.removeScopeKey({ scope, kid: b.key?.kid ?? "" });
    const keys = (await policyOf(scope))?.keys ?? [];
    const kept = keys.find((k) => k.kid === a.key?.kid);
    expect(kept?.signing).toBe(true);
    expect(kept?.retiresAtMs).toBeUndefined();
    expect((await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] })).kid).toBe(a.key?.kid);
  });

  it("the first Worker key of a scope whose relays hold an operator's policy warms up before it signs", async () => {
    const scope = freshScope("auth-warm-first");
    await admin.putScopeConfig({ scope, config: { auth: { keys: [{ kid: "byo", pem: (await es256Pem()).pem }] } } });
    const a = await admin.rotateScopeKey({ scope });
    expect(Number(a.signsFromMs) - Date.now()).toBeGreaterThan(5_000);
    expect((await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] }))).code).toBe(Code.FailedPrecondition);
  });

  it("a policy holds at most 5 keys, the Worker's counted", async () => {
    const scope = freshScope("auth-budget");
    const keys = await Promise.all(Array.from({ length: 4 }, async (_, i) => ({ kid: `k${i}`, pem: (await es256Pem()).pem })));
    await admin.putScopeConfig({ scope, config: { auth: { keys, issuers: [], audiences: [] } } });
    await admin.rotateScopeKey({ scope });
    const err = await errorOf(admin.rotateScopeKey({ scope }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect((await policyOf(scope))?.keys.length).toBe(5);
    const more = await errorOf(
      admin.putScopeConfig({
        scope,
        config: { auth: { keys: [...keys, { kid: "k9", pem: (await es256Pem()).pem }], issuers: [], audiences: [] } },
      }),
    );
    expect(more.code).toBe(Code.InvalidArgument);
    expect(more.rawMessage).toMatch(/holds 6 keys with the Worker's 1/);
  });

  it("every change of policy reaches the scope's watchers (the edge's cache): on, rotation, removal, off", async () => {
    const scope = freshScope("auth-watch");
    const r = await relay(`https://auth-watcher-${crypto.randomUUID().slice(0, 8)}.example.com`);
    const w = await watch(r.token, scope);
    const hello = Number((await w.next()).seq);
    const a = await admin.rotateScopeKey({ scope });
    expect(plain(await w.next())).toEqual(inv(hello + 1, { config: true }));
    // Issuing a token changes no answer.
    await admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] });
    await w.quiet();
    const b = await admin.rotateScopeKey({ scope });
    expect(plain(await w.next())).toEqual(inv(hello + 2, { config: true }));
    await admin.removeScopeKey({ scope, kid: a.key?.kid ?? "" });
    expect(plain(await w.next())).toEqual(inv(hello + 3, { config: true }));
    // The signing key is gone and the new one is still warming up: nothing signs until it is out to relays.
    const err = await errorOf(admin.issueToken({ scope, grants: [TokenGrant.SUBSCRIBE] }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toContain(`${b.key?.kid} signs from`);
    await admin.putScopeConfig({ scope, config: {} });
    expect(plain(await w.next())).toEqual(inv(hello + 4, { config: true }));
    expect(await policyOf(scope)).toBeUndefined();
    w.ws.close();
  });
});
