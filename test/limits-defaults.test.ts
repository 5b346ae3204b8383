// The limits a deployment gets without configuring anything (SECURITY.md
// "Limits"), and how Worker variables are read. The limits themselves are
// exercised at their edge in test/config/limits.test.ts.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { DEFAULT_LIMITS, limitsOf } from "../src/limits.js";
import { MAX_REQUEST_BYTES } from "../src/rpc/router.js";
import type { Env } from "../src/env.js";

describe("limit defaults", () => {
  it("the Worker runs with the documented defaults", () => {
    expect(DEFAULT_LIMITS).toEqual({ namespacesPerRelay: 10_000, tracksPerRelay: 10_000, subscriptionsPerRelay: 10_000, listTracks: 1_000 });
    expect(limitsOf(env)).toEqual(DEFAULT_LIMITS);
    expect(MAX_REQUEST_BYTES).toBe(64 * 1024);
  });

  it("takes positive integers from the variables and ignores anything else", () => {
    const withVars = (vars: Partial<Env>) => limitsOf({ ...env, ...vars } as Env);
    expect(withVars({ MAX_NAMESPACES_PER_RELAY: "5", MAX_LIST_TRACKS: "7" })).toMatchObject({ namespacesPerRelay: 5, listTracks: 7 });
    for (const bad of ["", "0", "-1", "1.5", "ten", "1e400", "9007199254740993"]) {
      expect(withVars({ MAX_TRACKS_PER_RELAY: bad }).tracksPerRelay, bad).toBe(DEFAULT_LIMITS.tracksPerRelay);
    }
  });
});
