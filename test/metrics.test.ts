// /metrics (Prometheus text, admin-only), the per-RPC middleware, the
// optional Analytics Engine data points, and the dashboard page's headers.
import { describe, expect, it } from "vitest";
import { Hono } from "hono";
import { Code } from "@connectrpc/connect";
import { ADMIN_TOKEN, BASE, adminClient, freshScope, ns, relay, workerFetch } from "./client.js";
import { rpcMetricsMiddleware, rpcOf } from "../src/metrics/middleware.js";
import { RpcMetrics } from "../src/metrics/registry.js";
import type { Env } from "../src/env.js";

async function scrape(): Promise<string> {
  const res = await workerFetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  return res.text();
}

/** The value of one sample line, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.lastIndexOf("}"));
    const have = inner.split(/,(?=\w+=")/);
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

describe("/metrics", () => {
  it("needs the admin token", async () => {
    expect((await workerFetch(`${BASE}/metrics`)).status).toBe(401);
    const wrong = await workerFetch(`${BASE}/metrics`, { headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
  });

  it("counts RPCs by method and code, and times them", async () => {
    const lookup = { service: "CoordinatorService", method: "Lookup" };
    const before = await scrape();
    const r = await relay("https://metrics-relay.example.com");
    const scope = freshScope("metrics");
    await r.registerNamespace({ scope, namespace: ns("m/1") });
    await r.lookup({ scope, namespace: ns("m/1") });
    await r.lookup({ scope, namespace: ns("m/1") });
    await expect(r.lookup({ scope, namespace: ns("absent") })).rejects.toMatchObject({ code: Code.NotFound });
    await expect(r.lookup({ scope: "", namespace: ns("x") })).rejects.toMatchObject({ code: Code.InvalidArgument });
    // Rejected before the Connect handler runs: still counted, with its code.
    await expect(adminClient("json", "wrong-token").listScopes({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
    expect(delta("moq_worker_rpc_requests_total", { ...lookup, code: "ok" })).toBe(2);
    expect(delta("moq_worker_rpc_requests_total", { ...lookup, code: "not_found" })).toBe(1);
    expect(delta("moq_worker_rpc_errors_total", { ...lookup, code: "not_found" })).toBe(1);
    expect(delta("moq_worker_rpc_errors_total", { ...lookup, code: "invalid_argument" })).toBe(1);
    expect(delta("moq_worker_rpc_errors_total", { ...lookup, code: "ok" })).toBe(0);
    expect(delta("moq_worker_rpc_errors_total", { service: "AdminService", method: "ListScopes", code: "unauthenticated" })).toBe(1);
    expect(delta("moq_worker_rpc_duration_seconds_count", lookup)).toBe(4);
    expect(delta("moq_worker_rpc_duration_seconds_bucket", { ...lookup, le: "+Inf" })).toBe(4);
    expect(after).toMatch(/^# TYPE moq_worker_rpc_duration_seconds histogram$/m);
  });
});

describe("RpcMetrics", () => {
  it("renders cumulative histogram buckets and escapes label values", () => {
    const m = new RpcMetrics();
    m.record("S", 'odd"name', "ok", 0.003);
    m.record("S", 'odd"name', "ok", 0.3);
    m.record("S", 'odd"name', "internal", 20);
    const text = m.render();
    const labels = 'service="S",method="odd\\"name"';
    expect(text).toContain(`moq_worker_rpc_duration_seconds_bucket{${labels},le="0.0025"} 0`);
    expect(text).toContain(`moq_worker_rpc_duration_seconds_bucket{${labels},le="0.005"} 1`);
    expect(text).toContain(`moq_worker_rpc_duration_seconds_bucket{${labels},le="0.5"} 2`);
    expect(text).toContain(`moq_worker_rpc_duration_seconds_bucket{${labels},le="10"} 2`);
    expect(text).toContain(`moq_worker_rpc_duration_seconds_bucket{${labels},le="+Inf"} 3`);
    expect(text).toContain(`moq_worker_rpc_requests_total{${labels},code="internal"} 1`);
    expect(text).toContain(`moq_worker_rpc_errors_total{${labels},code="internal"} 1`);
    expect(text).not.toContain(`moq_worker_rpc_errors_total{${labels},code="ok"}`);
  });

  it("labels unknown services and methods as 'unknown' (callers cannot add series)", () => {
    expect(rpcOf("/moqworker.v1.CoordinatorService/Lookup")).toEqual({ service: "CoordinatorService", method: "Lookup" });
    expect(rpcOf("/moqworker.v1.CoordinatorService/Nope123")).toEqual({ service: "CoordinatorService", method: "unknown" });
    expect(rpcOf("/evil.Service/Lookup")).toEqual({ service: "unknown", method: "unknown" });
  });
});

describe("Analytics Engine", () => {
  it("writes one data point per RPC when the METRICS binding is set", async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const METRICS = { writeDataPoint: (p?: AnalyticsEngineDataPoint) => p && points.push(p) } as AnalyticsEngineDataset;
    const app = new Hono<{ Bindings: Env }>();
    app.use("*", rpcMetricsMiddleware);
    app.post("/moqworker.v1.CoordinatorService/Lookup", (c) => c.json({ code: "not_found", message: "x" }, 404));
    app.post("/moqworker.v1.AdminService/ListScopes", (c) => c.json({ scopes: [] }));
    const env = { METRICS } as unknown as Env;
    await app.request("/moqworker.v1.CoordinatorService/Lookup", { method: "POST" }, env);
    await app.request("/moqworker.v1.AdminService/ListScopes", { method: "POST" }, env);
    expect(points).toEqual([
      { indexes: ["Lookup"], blobs: ["CoordinatorService", "Lookup", "not_found"], doubles: [expect.any(Number), 1] },
      { indexes: ["ListScopes"], blobs: ["AdminService", "ListScopes", "ok"], doubles: [expect.any(Number), 0] },
    ]);
  });

  it("is optional: without the binding (as in these tests) RPCs are answered and counted in memory", async () => {
    const listScopes = { service: "AdminService", method: "ListScopes", code: "ok" };
    const before = sample(await scrape(), "moq_worker_rpc_requests_total", listScopes);
    const answer = await adminClient().listScopes({});
    expect(answer.scopes).toBeInstanceOf(Array);
    expect(sample(await scrape(), "moq_worker_rpc_requests_total", listScopes) - before).toBe(1);
  });
});

describe("dashboard page", () => {
  it("is served at / without credentials, with a nonce CSP that allows no other script", async () => {
    const res = await workerFetch(`${BASE}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const csp = res.headers.get("content-security-policy") ?? "";
    const nonce = /script-src 'nonce-([0-9a-f]+)'/.exec(csp)?.[1];
    expect(nonce).toBeDefined();
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("connect-src 'self'");
    const html = await res.text();
    expect(html).toContain(`<script nonce="${nonce}">`);
    // The CLI's formatting module is inlined into that script, as plain declarations.
    expect(html).toContain("function namespaceText(fields)");
    expect(html).not.toContain("shared formatting:");
    expect(html).not.toMatch(/^export /m);
    // A new nonce each time.
    const again = (await workerFetch(`${BASE}/`)).headers.get("content-security-policy");
    expect(again).not.toBe(csp);
  });
});
