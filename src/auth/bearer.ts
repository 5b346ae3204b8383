// Bearer credentials from request headers, compared in constant time.
import { Code, ConnectError } from "@connectrpc/connect";
import { secretSetting } from "../settings.js";

export function bearerToken(headers: Headers): string {
  const value = headers.get("authorization");
  if (!value) throw new ConnectError("missing Authorization: Bearer <token> header", Code.Unauthenticated);
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  if (!m) throw new ConnectError("Authorization header must be 'Bearer <token>'", Code.Unauthenticated);
  return m[1];
}

const utf8 = new TextEncoder();

/** Constant-time equality: both sides are hashed first so lengths do not leak either. */
export async function secretsEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([crypto.subtle.digest("SHA-256", utf8.encode(a)), crypto.subtle.digest("SHA-256", utf8.encode(b))]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}

/** Which admin token a caller presented: the current one, or the one it replaced during a rotation. */
export type AdminIdentity = "current" | "previous";

/**
 * Checks the admin bearer token against ADMIN_TOKEN and, during a rotation,
 * ADMIN_TOKEN_PREVIOUS (SECURITY.md "Rotating the admin token"); returns which
 * one matched. Both are compared every time, so timing tells nothing either.
 */
export async function requireAdmin(headers: Headers, env: { ADMIN_TOKEN?: string; ADMIN_TOKEN_PREVIOUS?: string }): Promise<AdminIdentity> {
  const current = secretSetting(env, "ADMIN_TOKEN");
  if (current === undefined) {
    throw new ConnectError("admin API disabled: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN)", Code.PermissionDenied);
  }
  const presented = bearerToken(headers);
  const previous = secretSetting(env, "ADMIN_TOKEN_PREVIOUS");
  const [isCurrent, isPrevious] = await Promise.all([
    secretsEqual(presented, current),
    previous ? secretsEqual(presented, previous) : Promise.resolve(false),
  ]);
  if (isCurrent) return "current";
  if (isPrevious) return "previous";
  throw new ConnectError("admin token rejected", Code.Unauthenticated);
}
