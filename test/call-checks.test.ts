// rpc/call-checks.ts is the one list of per-call checks: every refusal it
// makes is the same on connect-es's lane (JSON) and on the binary fast path
// (Lookup and RegisterNamespace), code and message alike. Shedding, the last
// check, is driven through both lanes in overload.test.ts.
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { adminClient, freshScope, ns } from "./client.js";
import { coordinatorAs, errorOf } from "./hardening.js";

type Format = "json" | "binary";

describe("every per-call refusal, on both lanes", () => {
  it("refuses alike: another scope, the unscoped space, and publishing with a read-only token", async () => {
    const mine = freshScope("checks-mine");
    const other = freshScope("checks-other");
    const limited = (await adminClient().createRelayToken({ relayUrl: "https://checks-lim.example.com", scopes: [mine] })).token;
    const readOnly = (await adminClient().createRelayToken({ relayUrl: "https://checks-ro.example.com", readOnly: true })).token;
    const refusals = async (format: Format) => {
      const lim = coordinatorAs(`Bearer ${limited}`, format);
      const ro = coordinatorAs(`Bearer ${readOnly}`, format);
      const calls = [
        () => lim.lookup({ scope: other, namespace: ns("a") }),
        () => lim.lookup({ namespace: ns("a") }),
        () => lim.registerNamespace({ scope: other, namespace: ns("a") }),
        () => ro.registerNamespace({ scope: mine, namespace: ns("a") }),
      ];
      const out = [];
      for (const call of calls) {
        const e = await errorOf(call());
        out.push({ code: e.code, message: e.rawMessage.replaceAll(other, "OTHER") });
      }
      return out;
    };
    const binary = await refusals("binary");
    expect(binary).toEqual(await refusals("json"));
    expect(binary.map((r) => r.code)).toEqual([Code.PermissionDenied, Code.PermissionDenied, Code.PermissionDenied, Code.PermissionDenied]);
    expect(binary[0].message).toMatch(/^scope: scope 'OTHER' is not one this relay's token may act in/);
    expect(binary[1].message).toMatch(/^scope: unscoped calls are not allowed/);
    expect(binary[3].message).toMatch(/read-only/);
  });
});
