// The cap on revoked relays (MAX_REVOKED_RELAYS, SECURITY.md "Limits"): each
// isolate holds the list in memory, so it is bounded. Its own file: the list
// is filled to the cap directly in the directory's storage, then emptied.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { adminClient } from "./client.js";
import { errorOf } from "./hardening.js";
import { MAX_REVOKED_RELAYS } from "../src/objects/directory.js";
import { directoryStub } from "../src/objects/stubs.js";

describe("revoked relays cap", () => {
  it("refuses a new relay once 10000 are revoked, naming relay_url and the remedy; an already revoked one may be revoked again", async () => {
    expect(MAX_REVOKED_RELAYS).toBe(10_000);
    const dir = directoryStub(env);
    await dir.revoke("https://cap-0.example.com/", 1);
    await runInDurableObject(dir, (_o: unknown, state: DurableObjectState) => {
      for (let i = 1; i < MAX_REVOKED_RELAYS; i++) {
        state.storage.sql.exec("INSERT INTO revoked (url, before_ms) VALUES (?, 1)", `https://cap-${i}.example.com/`);
      }
    });
    const version = (await dir.revocations(-1))?.version;
    const err = await errorOf(adminClient().revokeRelayToken({ relayUrl: "https://cap-new.example.com/" }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe(
      "relay_url: 10000 relays are revoked already; rotate TOKEN_SECRET to revoke every token at once (SECURITY.md)",
    );
    // Nothing stored: the list and its version are as before.
    const after = await dir.revocations(-1);
    expect(after?.version).toBe(version);
    expect(after?.entries.length).toBe(MAX_REVOKED_RELAYS);
    expect(after?.entries.some(([url]) => url === "https://cap-new.example.com/")).toBe(false);
    // Moving an existing cut-off is not a new entry.
    const again = await adminClient().revokeRelayToken({ relayUrl: "https://cap-0.example.com/" });
    expect(Number(again.revokedBeforeMs)).toBeGreaterThan(1);
    await runInDurableObject(dir, (_o: unknown, state: DurableObjectState) => {
      state.storage.sql.exec("DELETE FROM revoked");
      state.storage.sql.exec("UPDATE revoked_version SET version = version + 1");
    });
  });
});
