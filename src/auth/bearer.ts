// Bearer credentials from request headers, compared in constant time.
import { Code, ConnectError } from "@connectrpc/connect";

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

export async function requireAdmin(headers: Headers, adminToken: string | undefined): Promise<void> {
  if (!adminToken) {
    throw new ConnectError("admin API disabled: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN)", Code.PermissionDenied);
  }
  const presented = bearerToken(headers);
  if (!(await secretsEqual(presented, adminToken))) {
    throw new ConnectError("admin token rejected", Code.Unauthenticated);
  }
}
