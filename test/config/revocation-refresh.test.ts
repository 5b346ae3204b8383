// An isolate learns of a revocation served elsewhere from the directory's list
// (src/auth/revocation.ts). This project runs with REVOCATION_REFRESH_MS = 0
// (vitest.config.ts, project "config"), so every call re-reads the list when
// its version changed; the revocation is written to the directory alone, as
// another isolate's RevokeRelayToken would have, not through this isolate.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { freshScope, ns, relay } from "../client.js";
import { errorOf } from "../hardening.js";
import { directoryStub } from "../../src/objects/stubs.js";

describe("revocation list refresh", () => {
  it("refuses a read once the directory lists the relay as revoked, and keeps serving others", async () => {
    const scope = freshScope("refresh");
    const victim = await relay("https://refresh-victim.example.com/");
    const other = await relay("https://refresh-other.example.com/");
    await other.registerNamespace({ scope, namespace: ns("live") });
    await victim.lookup({ scope, namespace: ns("live") });

    expect(await directoryStub(env).revoke("https://refresh-victim.example.com/", Date.now())).toMatchObject({ ok: true });
    const err = await errorOf(victim.lookup({ scope, namespace: ns("live") }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.rawMessage).toContain("relay token revoked: tokens of https://refresh-victim.example.com/");
    await other.lookup({ scope, namespace: ns("live") });
  });

  it("answers the list only when its version changed", async () => {
    const dir = directoryStub(env);
    const list = await dir.revocations(-1);
    expect(list).not.toBeNull();
    expect(await dir.revocations(list?.version ?? -1)).toBeNull();
    await dir.revoke("https://refresh-version.example.com/", Date.now());
    const next = await dir.revocations(list?.version ?? -1);
    expect(next?.version).toBe((list?.version ?? 0) + 1);
    expect(next?.entries.map(([url]) => url)).toContain("https://refresh-version.example.com/");
  });
});
