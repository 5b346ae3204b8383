// Records one finished RPC: into this isolate's counters (registry.ts) and,
// when the METRICS binding is configured, as one Analytics Engine data point.
// Called by the request pipeline (rpc/router.ts), which knows the Connect code
// it answered with. Nothing here awaits storage or another object:
// writeDataPoint is fire-and-forget, so the hot path gains no hop.
import type { Env } from "../env.js";
import { rpcMetrics } from "./registry.js";

/**
 * `service` and `method` are the short names of a served method ("unknown" for
 * a method the service does not have, so a caller cannot grow the series);
 * `code` is the Connect code ("ok" for success).
 */
export function recordRpc(env: Env, service: string, method: string, code: string, seconds: number): void {
  rpcMetrics.record(service, method, code, seconds);
  env.METRICS?.writeDataPoint({
    indexes: [method],
    blobs: [service, method, code],
    doubles: [seconds * 1000, code === "ok" ? 0 : 1],
  });
}
