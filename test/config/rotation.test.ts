// TOKEN_SECRET rotation without an outage (SECURITY.md): this project runs with
// TOKEN_SECRET = the new secret and TOKEN_SECRET_PREVIOUS = the old one
// (vitest.config.ts, project "config"). Tokens of either verify; new tokens
// are signed with the new one; anything else is still refused.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { verify } from "hono/jwt";
import { adminClient, base, freshScope, ns } from "../client.js";
import { codeOf, coordinatorAs, errorOf, jwt, RELAY_AUDIENCE, TEST_TOKEN_SECRET } from "../hardening.js";

const PREVIOUS = "test-token-secret-previous";

describe("TOKEN_SECRET rotation", () => {
  it("accepts tokens signed with the previous secret, as the relay they name", async () => {
    const scope = freshScope("rot");
    const old = coordinatorAs(`Bearer ${await jwt({ sub: "https://rot-old.example.com/", aud: RELAY_AUDIENCE }, PREVIOUS)}`);
    await old.registerNamespace({ scope, namespace: ns("live") });
    expect(base((await old.lookup({ scope, namespace: ns("live/x") })).origin?.relay?.url)).toBe("https://rot-old.example.com/");
  });

  it("signs new tokens with the current secret only", async () => {
    const { token } = await adminClient().createRelayToken({ relayUrl: "https://rot-new.example.com" });
    await expect(verify(token, TEST_TOKEN_SECRET, { alg: "HS256", aud: RELAY_AUDIENCE })).resolves.toMatchObject({ sub: "https://rot-new.example.com/" });
    await expect(verify(token, PREVIOUS, { alg: "HS256", aud: RELAY_AUDIENCE })).rejects.toThrow();
    expect(await codeOf(coordinatorAs(`Bearer ${token}`).heartbeat({ epoch: "e" }))).toBe("ok");
  });

  it("still refuses other secrets, and expired tokens of the previous one", async () => {
    const other = await errorOf(
      coordinatorAs(`Bearer ${await jwt({ sub: "https://x.example.com/", aud: RELAY_AUDIENCE }, "a-third-secret")}`).heartbeat({ epoch: "e" }),
    );
    expect(other.code).toBe(Code.Unauthenticated);
    expect(other.rawMessage).toBe("relay token rejected (TokenSignatureMismatched)");
    const expired = await errorOf(
      coordinatorAs(`Bearer ${await jwt({ sub: "https://x.example.com/", aud: RELAY_AUDIENCE, exp: 1000 }, PREVIOUS)}`).heartbeat({ epoch: "e" }),
    );
    expect(expired.code).toBe(Code.Unauthenticated);
    expect(expired.rawMessage).toBe("relay token rejected (TokenExpired)");
  });
});
