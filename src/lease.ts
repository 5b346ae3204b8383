// Lease timing, from Worker variables. Relays beat at a third of the TTL so
// that two lost heartbeats in a row still keep the lease.
import type { Env } from "./env.js";

export const DEFAULT_LEASE_TTL_MS = 10_000;

export function leaseSettings(env: Env): { leaseTtlMs: number; intervalMs: number } {
  const configured = Number(env.LEASE_TTL_MS);
  const leaseTtlMs = Number.isFinite(configured) && configured >= 1000 ? Math.floor(configured) : DEFAULT_LEASE_TTL_MS;
  return { leaseTtlMs, intervalMs: Math.floor(leaseTtlMs / 3) };
}
