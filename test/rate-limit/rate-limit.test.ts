// Rate limits per relay and per admin token (src/auth/rate-limit.ts), with the
// runtime's own rate-limiting binding. This project runs with tiny limits
// (vitest.config.ts, project "rate-limit"): 20 calls per relay, 8 heartbeats
// per relay, 40 admin calls per admin token, each per 60 s window. Windows
// are aligned to the clock, so a test calls until refused and allows one
// window to roll over on the way (at most 2 × limit + 1 calls).
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { adminClient, ADMIN_TOKEN, freshScope, ns, relay, workerFetch, BASE } from "../client.js";
import { errorOf } from "../hardening.js";

const RELAY_LIMIT = 20;
const HEARTBEAT_LIMIT = 8;
const ADMIN_LIMIT = 40;

/** Calls `call` until it fails, at most 2 × limit + 1 times; returns the error. */
async function untilRefused(limit: number, call: () => Promise<unknown>) {
  for (let i = 0; i <= 2 * limit; i++) {
    try {
      await call();
    } catch (e) {
      return { error: await errorOf(Promise.reject(e)), calls: i + 1 };
    }
  }
  throw new Error(`not refused within ${2 * limit + 1} calls`);
}

async function metric(name: string): Promise<number> {
  const res = await workerFetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const m = new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\d+)$`, "m").exec(await res.text());
  return m ? Number(m[1]) : 0;
}

describe("relay rate limit", () => {
  it("refuses a relay past its limit with RESOURCE_EXHAUSTED and a retry hint, and stores nothing", async () => {
    const scope = freshScope("rl");
    const r = await relay("https://rl-flood.example.com");
    const before = await metric('moq_worker_rate_limited_total{bucket="relay"}');
    let n = 0;
    const { error } = await untilRefused(RELAY_LIMIT, () => r.registerNamespace({ scope, namespace: ns(`flood/${++n}`) }));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toBe(
      "rate limit exceeded: too many calls from relay https://rl-flood.example.com/ (relay bucket); retry after 60 s",
    );
    expect(error.metadata.get("retry-after")).toBe("60");
    expect(await metric('moq_worker_rate_limited_total{bucket="relay"}')).toBeGreaterThan(before);
    // The refused registration was not stored; the one before it was.
    const other = await relay("https://rl-other.example.com");
    expect((await errorOf(other.lookup({ scope, namespace: ns(`flood/${n}`) }))).code).toBe(Code.NotFound);
    expect((await other.lookup({ scope, namespace: ns(`flood/${n - 1}`) })).origin?.namespace).toBeDefined();
  });

  it("still serves the limited relay's heartbeats, and other relays", async () => {
    const scope = freshScope("rl");
    const r = await relay("https://rl-beats.example.com", "binary", "e1");
    await untilRefused(RELAY_LIMIT, () => r.getScopeConfig({ scope }));
    // Its other calls are refused now; its lease is not.
    expect((await errorOf(r.getScopeConfig({ scope }))).code).toBe(Code.ResourceExhausted);
    const beat = await r.heartbeat({ epoch: "e1" });
    expect(beat.leaseTtlMs).toBeGreaterThan(0);
    const other = await relay("https://rl-bystander.example.com");
    await other.registerNamespace({ scope, namespace: ns("still/served") });
  });

  it("gives heartbeats their own bucket: a heartbeat flood is limited alone", async () => {
    const scope = freshScope("rl");
    const r = await relay("https://rl-beat-flood.example.com", "binary", "e1");
    const { error } = await untilRefused(HEARTBEAT_LIMIT, () => r.heartbeat({ epoch: "e1" }));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain("too many heartbeats from relay https://rl-beat-flood.example.com/ (heartbeat bucket)");
    await r.getScopeConfig({ scope });
  });
});

describe("admin rate limit", () => {
  it("counts the current and the previous admin token apart", async () => {
    const { error } = await untilRefused(ADMIN_LIMIT, () => adminClient("json", "test-admin-token-previous").listScopes({}));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain("too many calls from the previous admin token (admin bucket)");
    expect(error.metadata.get("retry-after")).toBe("60");
    // /metrics counts in the same bucket and is refused the same way.
    const res = await workerFetch(`${BASE}/metrics`, { headers: { authorization: "Bearer test-admin-token-previous" } });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("60");
    expect(((await res.json()) as { code: string }).code).toBe("resource_exhausted");
    // The current token is not held back by the previous one's flood.
    await adminClient().listScopes({});
  });
});
