// ADMIN_TOKEN rotation without an outage (SECURITY.md "Rotating the admin
// token"): this project runs with ADMIN_TOKEN = the new token and
// ADMIN_TOKEN_PREVIOUS = the old one (vitest.config.ts, project "config").
// Both are accepted on every admin surface; anything else is refused.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { adminClient, ADMIN_TOKEN, BASE, workerFetch } from "../client.js";
import { errorOf } from "../hardening.js";

const PREVIOUS = "test-admin-token-previous";

describe("ADMIN_TOKEN rotation", () => {
  it("accepts the previous admin token on the admin API and /metrics", async () => {
    const old = adminClient("json", PREVIOUS);
    const { token } = await old.createRelayToken({ relayUrl: "https://adm-rot.example.com" });
    expect(token).not.toBe("");
    await old.listScopes({});
    const res = await workerFetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${PREVIOUS}` } });
    expect(res.status).toBe(200);
  });

  it("accepts the current admin token", async () => {
    await adminClient("binary", ADMIN_TOKEN).listRelays({});
  });

  it("refuses an unknown admin token, and a relay token, as UNAUTHENTICATED", async () => {
    for (const bad of ["test-admin-token-older", `${PREVIOUS}x`, PREVIOUS.slice(0, -1)]) {
      const err = await errorOf(adminClient("json", bad).listScopes({}));
      expect(err.code).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toBe("admin token rejected");
    }
    const { token } = await adminClient().createRelayToken({ relayUrl: "https://adm-rot-relay.example.com" });
    expect((await errorOf(adminClient("json", token).listScopes({}))).code).toBe(Code.Unauthenticated);
    const res = await workerFetch(`${BASE}/metrics`, { headers: { authorization: "Bearer test-admin-token-older" } });
    expect(res.status).toBe(401);
  });
});
