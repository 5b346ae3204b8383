// Lease timing. Relays beat at a third of the TTL so that two lost heartbeats
// in a row still keep the lease.
import type { Env } from "./env.js";
import { integerSetting, SETTINGS } from "./settings.js";

export const DEFAULT_LEASE_TTL_MS = SETTINGS.LEASE_TTL_MS.default;

export function leaseSettings(env: Pick<Env, "LEASE_TTL_MS">): { leaseTtlMs: number; intervalMs: number } {
  const leaseTtlMs = integerSetting(env, "LEASE_TTL_MS");
  return { leaseTtlMs, intervalMs: Math.floor(leaseTtlMs / 3) };
}
