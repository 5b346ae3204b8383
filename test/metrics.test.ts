// /metrics (Prometheus text, admin-only), the per-RPC counts the request
// pipeline records, the optional Analytics Engine data points, and the
// dashboard page's headers.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { ADMIN_TOKEN, BASE, adminClient, freshScope, ns, relay, workerFetch } from "./client.js";
import { RpcMetrics } from "../src/metrics/registry.js";
import { TOP_OBJECTS, TopObjects } from "../src/metrics/billing.js";
import type { Env } from "../src/env.js";
import worker from "../src/index.js";
import { MAX_REQUEST_BYTES } from "../src/rpc/router.js";

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

describe("object calls by object", () => {
  it("names the busiest objects on /metrics: a scope's object with its calls", async () => {
    const r = await relay("https://metrics-top.example.com");
    const scope = freshScope("metrics-top");
    await r.registerNamespace({ scope, namespace: ns("t/1") });
    const object = { class: "ScopeObject", object: `scope:${scope}` };
    const before = sample(await scrape(), "moq_worker_object_calls_top", object);
    for (let i = 0; i < 20; i++) await r.lookup({ scope, namespace: ns("t/1") });
    const after = await scrape();
    expect(after).toMatch(/^# TYPE moq_worker_object_calls_top gauge$/m);
    // One call to the scope's object per Lookup (and an untracked object starts at most one entry's count high).
    expect(sample(after, "moq_worker_object_calls_top", object) - before).toBeGreaterThanOrEqual(20);
    expect(after).toMatch(/^moq_worker_object_calls_top_error\{class="ScopeObject",object="scope:metrics-top-/m);
    const listed = after.split("\n").filter((l) => l.startsWith("moq_worker_object_calls_top{"));
    expect(listed.length).toBeLessThanOrEqual(TOP_OBJECTS);
  });

  it("keeps a heavy hitter and its count through churn of many other objects (space-saving)", () => {
    // 2,500 calls: an object with more than 1/8 of them (312) is always tracked.
    const top = new TopObjects(8);
    for (let i = 0; i < 1000; i++) {
      top.add("DirectoryObject", "directory");
      top.add("RelayObject", `https://relay-${i}.example/`);
      if (i % 2 === 0) top.add("ScopeObject", "scope:popular");
    }
    const list = top.list();
    expect(list.length).toBe(8);
    const directory = list.find((e) => e.name === "directory");
    const popular = list.find((e) => e.name === "scope:popular");
    expect(list[0]).toEqual({ kind: "DirectoryObject", name: "directory", count: 1000, error: 0 });
    // Overcounted by at most its error; never undercounted.
    expect(directory?.count).toBe(1000);
    expect(popular).toBeDefined();
    expect(popular?.count).toBeGreaterThanOrEqual(500);
    expect((popular?.count ?? 0) - (popular?.error ?? 0)).toBeLessThanOrEqual(500);
    // A relay's object, called once, is never listed above the heavy hitters.
    expect(
      list
        .slice(0, 2)
        .map((e) => e.name)
        .sort(),
    ).toEqual(["directory", "scope:popular"]);
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
});

describe("Analytics Engine", () => {
  /** The Worker's own fetch handler, with a METRICS binding that keeps what it is given. */
  function withMetrics() {
    const points: AnalyticsEngineDataPoint[] = [];
    const METRICS = { writeDataPoint: (p?: AnalyticsEngineDataPoint) => p && points.push(p) } as AnalyticsEngineDataset;
    const fetch = (path: string, init: RequestInit) =>
      worker.fetch(new Request(`${BASE}${path}`, init), { ...env, METRICS } as unknown as Env, {} as ExecutionContext);
    return { points, fetch };
  }
  const point = (service: string, method: string, code: string) => ({
    indexes: [method],
    blobs: [service, method, code],
    doubles: [expect.any(Number), code === "ok" ? 0 : 1],
  });

  it("writes one data point per RPC, with the code the caller got, whichever step refused it", async () => {
    const r = await relay("https://metrics-ae.example.com");
    const { points, fetch } = withMetrics();
    const proto = { authorization: `Bearer ${r.token}`, "content-type": "application/proto" };
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
    const lookup = "/moqworker.v1.CoordinatorService/Lookup";
    const calls: [string, RequestInit, number, string][] = [
      ["/moqworker.v1.AdminService/ListScopes", { method: "POST", headers: admin, body: "{}" }, 200, "ok"],
      // Decodes, then the handler refuses it.
      [lookup, { method: "POST", headers: proto, body: new Uint8Array() }, 400, "invalid_argument"],
      // Does not decode (illegal wire type).
      [lookup, { method: "POST", headers: proto, body: Uint8Array.of(0x0f, 0x01) }, 400, "invalid_argument"],
      // Too large: refused before the token is looked at.
      [
        lookup,
        { method: "POST", headers: { "content-type": "application/proto" }, body: new Uint8Array(MAX_REQUEST_BYTES + 1) },
        429,
        "resource_exhausted",
      ],
      [lookup, { method: "POST", headers: { "content-type": "application/proto" }, body: new Uint8Array() }, 401, "unauthenticated"],
      [lookup, { method: "GET", headers: proto }, 405, "unimplemented"],
      [lookup, { method: "POST", headers: { ...proto, "content-type": "text/plain" }, body: "x" }, 415, "invalid_argument"],
      // Unknown methods share one label: a caller cannot add series.
      ["/moqworker.v1.CoordinatorService/Nope123", { method: "POST", headers: proto, body: new Uint8Array() }, 501, "unimplemented"],
      [`${lookup}/extra`, { method: "POST", headers: proto, body: new Uint8Array() }, 501, "unimplemented"],
    ];
    for (const [path, init, status, code] of calls) {
      const res = await fetch(path, init);
      expect(res.status, `${path} ${code}`).toBe(status);
      if (status !== 200) expect(((await res.json()) as { code: string }).code).toBe(code);
    }
    const expected = [
      point("AdminService", "ListScopes", "ok"),
      point("CoordinatorService", "Lookup", "invalid_argument"),
      point("CoordinatorService", "Lookup", "invalid_argument"),
      point("CoordinatorService", "Lookup", "resource_exhausted"),
      point("CoordinatorService", "Lookup", "unauthenticated"),
      point("CoordinatorService", "Lookup", "unimplemented"),
      point("CoordinatorService", "Lookup", "invalid_argument"),
      point("CoordinatorService", "unknown", "unimplemented"),
      point("CoordinatorService", "unknown", "unimplemented"),
    ];
    expect(points).toEqual(expected);
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
