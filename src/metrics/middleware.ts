// Hono middleware around the Connect routes: counts each RPC by method and
// Connect code and times it, into this isolate's counters (registry.ts) and,
// when the METRICS binding is configured, one Analytics Engine data point per
// RPC. Nothing here awaits storage or another object: writeDataPoint is
// fire-and-forget, so the hot path gains no hop.
import type { MiddlewareHandler } from "hono";
import { AdminService } from "../gen/moqworker/v1/admin_pb.js";
import { CoordinatorService } from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import { rpcMetrics } from "./registry.js";

const KNOWN = new Map<string, Set<string>>(
  [CoordinatorService, AdminService].map((s) => [s.typeName, new Set(s.methods.map((m) => m.name))]),
);

/** Service and method of a Connect path; unknown ones share one label so a caller cannot grow the series. */
export function rpcOf(pathname: string): { service: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(pathname);
  const methods = m ? KNOWN.get(m[1]) : undefined;
  if (!m || !methods) return { service: "unknown", method: "unknown" };
  const service = m[1].slice(m[1].lastIndexOf(".") + 1);
  return { service, method: methods.has(m[2]) ? m[2] : "unknown" };
}

/** The Connect code of a finished response: "ok", or the code of its error body. */
async function codeOf(res: Response): Promise<string> {
  if (res.status === 200) return "ok";
  try {
    const body = (await res.clone().json()) as { code?: unknown };
    if (typeof body.code === "string" && /^[a-z_]{1,32}$/.test(body.code)) return body.code;
  } catch {
    // not a Connect error body
  }
  return "unknown";
}

export const rpcMetricsMiddleware: MiddlewareHandler<{ Bindings: Env }> = async (c, next) => {
  // Workers clocks advance only across I/O, which is what an RPC waits on here.
  const started = performance.now();
  await next();
  const seconds = (performance.now() - started) / 1000;
  const { service, method } = rpcOf(new URL(c.req.url).pathname);
  const code = await codeOf(c.res);
  rpcMetrics.record(service, method, code, seconds);
  c.env.METRICS?.writeDataPoint({
    indexes: [method],
    blobs: [service, method, code],
    doubles: [seconds * 1000, code === "ok" ? 0 : 1],
  });
};
