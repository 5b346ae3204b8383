// The limits a deployment gets without configuring anything (SECURITY.md
// "Limits"), and how Worker variables are read. The limits themselves are
// exercised at their edge in test/config/limits.test.ts.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { DEFAULT_LIMITS, limitsOf } from "../src/limits.js";
import type { Env } from "../src/env.js";
import { BASE, workerFetch } from "./client.js";
import { periodSeconds } from "../src/auth/rate-limit.js";
import { revocationRefreshMs } from "../src/auth/revocation.js";

// The documented defaults (SECURITY.md "Limits"), written out here: they are
// what this file checks the code against, not copies of the code's constants.
const DOCUMENTED = {
  namespacesPerRelay: 10_000,
  tracksPerRelay: 10_000,
  subscriptionsPerRelay: 10_000,
  listTracks: 1_000,
  watchersPerScope: 100_000,
};
const DOCUMENTED_MAX_BODY_BYTES = 64 * 1024;

describe("limit defaults", () => {
  it("a Worker with none of the variables set gets the documented quotas, and so does this deployment's wrangler.toml", () => {
    expect(limitsOf({} as Env)).toEqual(DOCUMENTED);
    expect(limitsOf(env)).toEqual(DOCUMENTED);
  });

  it("refuses a request body one byte over the documented 64 KiB, before authentication", async () => {
    const post = (bytes: number) =>
      workerFetch(`${BASE}/moqworker.v1.AdminService/ListScopes`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new Uint8Array(bytes).fill(0x20),
      });
    const over = await post(DOCUMENTED_MAX_BODY_BYTES + 1);
    expect(over.status).toBe(429);
    expect(await over.json()).toEqual({
      code: "resource_exhausted",
      message: `request body larger than ${DOCUMENTED_MAX_BODY_BYTES} bytes`,
    });
    // At the limit the body is read, and the missing token is what is refused.
    expect((await post(DOCUMENTED_MAX_BODY_BYTES)).status).toBe(401);
  });

  it("takes positive integers from the variables and ignores anything else", () => {
    const withVars = (vars: Partial<Env>) => limitsOf({ ...env, ...vars } as Env);
    expect(withVars({ MAX_NAMESPACES_PER_RELAY: "5", MAX_LIST_TRACKS: "7" })).toMatchObject({ namespacesPerRelay: 5, listTracks: 7 });
    for (const bad of ["", "0", "-1", "1.5", "ten", "1e400", "9007199254740993"]) {
      expect(withVars({ MAX_TRACKS_PER_RELAY: bad }).tracksPerRelay, bad).toBe(DEFAULT_LIMITS.tracksPerRelay);
    }
  });
});

describe("rate-limit and revocation settings", () => {
  it("wrangler.toml declares the three rate limits; the retry hint and the revocation bound default to 10 s", () => {
    for (const b of [env.RELAY_RATE_LIMIT, env.HEARTBEAT_RATE_LIMIT, env.ADMIN_RATE_LIMIT]) expect(typeof b?.limit).toBe("function");
    expect(periodSeconds(env)).toBe(10);
    expect(revocationRefreshMs(env)).toBe(10_000);
    expect(periodSeconds({})).toBe(10);
    expect(revocationRefreshMs({})).toBe(10_000);
  });

  it("takes integers from the variables and ignores anything else", () => {
    expect(periodSeconds({ RATE_LIMIT_PERIOD_SECONDS: "60" })).toBe(60);
    expect(revocationRefreshMs({ REVOCATION_REFRESH_MS: "0" })).toBe(0);
    expect(revocationRefreshMs({ REVOCATION_REFRESH_MS: "2500" })).toBe(2500);
    for (const bad of ["", "0", "-1", "1.5", "ten"]) expect(periodSeconds({ RATE_LIMIT_PERIOD_SECONDS: bad }), bad).toBe(10);
    for (const bad of ["", "-1", "1.5", "ten"]) expect(revocationRefreshMs({ REVOCATION_REFRESH_MS: bad }), bad).toBe(10_000);
  });
});
