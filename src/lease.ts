// Lease timing, from Worker variables. Relays beat at a third of the TTL so
// that two lost heartbeats in a row still keep the lease.
import type { Env } from "./env.js";

export const DEFAULT_LEASE_TTL_MS = 10_000;
/** Bounds of LEASE_TTL_MS; a value outside them (or not a number) means the default. */
export const MIN_LEASE_TTL_MS = 1_000;
export const MAX_LEASE_TTL_MS = 3_600_000;

export function leaseSettings(env: Pick<Env, "LEASE_TTL_MS">): { leaseTtlMs: number; intervalMs: number } {
  const configured = Number(env.LEASE_TTL_MS);
  const valid = env.LEASE_TTL_MS !== undefined && configured >= MIN_LEASE_TTL_MS && configured <= MAX_LEASE_TTL_MS;
  const leaseTtlMs = valid ? Math.floor(configured) : DEFAULT_LEASE_TTL_MS;
  return { leaseTtlMs, intervalMs: Math.floor(leaseTtlMs / 3) };
}
