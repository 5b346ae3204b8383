// Relay links across a TOKEN_SECRET rotation (SECURITY.md "Relay links"): this
// project runs with TOKEN_SECRET_PREVIOUS set (vitest.config.ts, "config").
// Links made with the previous secret keep resolving; answers use the current one.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { Permissions } from "../../src/gen/moqworker/v1/coordinator_pb.js";
import { expectedLink, freshScope, ns, relay } from "../client.js";
import { errorOf, TEST_TOKEN_SECRET } from "../hardening.js";

const PREVIOUS = "test-token-secret-previous";

describe("relay links during a secret rotation", () => {
  it("answers with links of the current secret and resolves links of the current and the previous one", async () => {
    const scope = freshScope("link-rot");
    const a = await relay("https://link-rot-a.example.com");
    await a.registerNamespace({ scope, namespace: ns("live") });
    const url = (await a.lookup({ scope, namespace: ns("live") })).origin?.relay?.url;
    expect(url).toBe(`https://link-rot-a.example.com${await expectedLink(scope, TEST_TOKEN_SECRET)}`);
    for (const secret of [TEST_TOKEN_SECRET, PREVIOUS]) {
      const res = await a.resolveScope({ connectionPath: await expectedLink(scope, secret) });
      expect([res.scope?.scopeId, res.scope?.permissions, res.relayLink]).toEqual([scope, Permissions.READ_WRITE, true]);
    }
    const other = await errorOf(a.resolveScope({ connectionPath: await expectedLink(scope, "a-third-secret") }));
    expect([other.code, other.rawMessage]).toEqual([Code.PermissionDenied, expect.stringContaining("connection_path")]);
  });
});
