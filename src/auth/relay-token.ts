// Relay tokens: HS256 JWTs signed with TOKEN_SECRET, whose subject is the relay
// URL. Verifying needs no storage. Rotating TOKEN_SECRET revokes every token.
// Optional claims narrow a token (SECURITY.md): `scp` lists the only scopes it
// may act in, `ro` forbids publishing. Tokens without them are unrestricted.
// `iat_ms` is when it was made, in ms: revoking a relay's tokens refuses those
// made up to that instant (auth/revocation.ts), and a token made a moment
// later must not share a second with them. Tokens without it count from `iat`.
import { sign, verify } from "hono/jwt";
import { Code, ConnectError } from "@connectrpc/connect";
import { setBounded } from "./bounded-cache.js";
import { secretSetting } from "../settings.js";

const AUDIENCE = "moq-worker:relay";

/** The secrets relay tokens and relay links are made and checked with: the current one first. */
export function tokenSecrets(env: { TOKEN_SECRET?: string; TOKEN_SECRET_PREVIOUS?: string }): string[] {
  return [secretSetting(env, "TOKEN_SECRET"), secretSetting(env, "TOKEN_SECRET_PREVIOUS")].filter((s) => s !== undefined);
}

export interface MintedToken {
  token: string;
  expiresAtMs?: number;
}

/** What a verified token allows: the relay it speaks for, and any narrowing. */
export interface RelayClaims {
  relay: string;
  /** Only these scopes; absent = any scope. */
  scopes?: string[];
  /** May not publish (register namespaces or tracks). */
  readOnly?: boolean;
  /** When the token was made (ms since the epoch; 0 if it does not say): revocation compares it. */
  issuedAtMs: number;
}

export interface Restrictions {
  scopes?: string[];
  readOnly?: boolean;
}

export async function mintRelayToken(
  secret: string,
  relayUrl: string,
  ttlSeconds?: number,
  restrict: Restrictions = {},
): Promise<MintedToken> {
  const nowMs = Date.now();
  const now = Math.floor(nowMs / 1000);
  const exp = ttlSeconds === undefined ? undefined : now + ttlSeconds;
  const claims = {
    sub: relayUrl,
    aud: AUDIENCE,
    iat: now,
    iat_ms: nowMs,
    ...(exp === undefined ? {} : { exp }),
    ...(restrict.scopes?.length ? { scp: restrict.scopes } : {}),
    ...(restrict.readOnly ? { ro: true } : {}),
  };
  const token = await sign(claims, secret, "HS256");
  return { token, expiresAtMs: exp === undefined ? undefined : exp * 1000 };
}

/** Returns the relay URL the token is bound to, or throws UNAUTHENTICATED. */
export async function verifyRelayToken(secret: string, token: string): Promise<string> {
  return (await verifyRelayClaims(secret, token)).relay;
}

// Tokens this isolate has verified. A relay sends the same token on every
// call, and verifying it (HMAC key import and check, base64 and JSON) is a
// large share of a small request's CPU (docs/performance.md "Pipeline"). An entry goes
// when the secrets change (rotation still revokes at once), at the token's
// exp, and after MAX_CACHE_MS; the map is bounded, oldest entry out first.
const MAX_CACHED_TOKENS = 1024;
const MAX_CACHE_MS = 5 * 60 * 1000;
const verified = new Map<string, { claims: RelayClaims; untilMs: number }>();
let verifiedWith: string | undefined;

/**
 * Verifies the token and returns its claims, or throws UNAUTHENTICATED.
 * Several secrets: the current one first, then the previous one during a
 * rotation (TOKEN_SECRET_PREVIOUS, SECURITY.md); any of them may have signed it.
 */
export async function verifyRelayClaims(secrets: string | readonly string[], token: string): Promise<RelayClaims> {
  const keys = typeof secrets === "string" ? [secrets] : secrets;
  const keyring = keys.join("\u0000");
  if (keyring !== verifiedWith) {
    verified.clear();
    verifiedWith = keyring;
  }
  const now = Date.now();
  const hit = verified.get(token);
  if (hit && hit.untilMs > now) return hit.claims;
  verified.delete(token);
  const { claims, exp, nbf } = await verifyUncached(keys, token);
  // Not-before tokens are checked every time (moq-worker mints none).
  if (nbf === undefined) {
    const expMs = typeof exp === "number" ? exp * 1000 : Infinity;
    setBounded(verified, token, { claims, untilMs: Math.min(now + MAX_CACHE_MS, expMs) }, MAX_CACHED_TOKENS);
  }
  return claims;
}

async function verifyUncached(keys: readonly string[], token: string): Promise<{ claims: RelayClaims; exp: unknown; nbf: unknown }> {
  let payload: Record<string, unknown> | undefined;
  for (const [i, secret] of keys.entries()) {
    try {
      payload = await verify(token, secret, { alg: "HS256", aud: AUDIENCE });
      break;
    } catch (e) {
      // Only a signature mismatch can come out differently under the next secret.
      if (e instanceof Error && e.name === "JwtTokenSignatureMismatched" && i < keys.length - 1) continue;
      const reason = e instanceof Error ? e.name.replace(/^Jwt/, "") : "invalid";
      throw new ConnectError(`relay token rejected (${reason})`, Code.Unauthenticated);
    }
  }
  if (payload === undefined) throw new ConnectError("relay token rejected (no secret to verify it)", Code.Unauthenticated);
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new ConnectError("relay token has no relay URL", Code.Unauthenticated);
  }
  const { scp, ro, iat, iat_ms } = payload;
  // A claim we cannot read must not widen the token: refuse it outright.
  if (scp !== undefined && !(Array.isArray(scp) && scp.length > 0 && scp.every((s) => typeof s === "string"))) {
    throw new ConnectError("relay token has a malformed scope claim", Code.Unauthenticated);
  }
  if (ro !== undefined && typeof ro !== "boolean") {
    throw new ConnectError("relay token has a malformed read-only claim", Code.Unauthenticated);
  }
  if (iat_ms !== undefined && !(typeof iat_ms === "number" && Number.isSafeInteger(iat_ms) && iat_ms >= 0)) {
    throw new ConnectError("relay token has a malformed iat_ms claim", Code.Unauthenticated);
  }
  // Without iat_ms, the start of its iat second; without either, the beginning of time (any revocation covers it).
  const issuedAtMs = typeof iat_ms === "number" ? iat_ms : typeof iat === "number" && Number.isFinite(iat) ? Math.max(0, iat * 1000) : 0;
  // Shared by every call that presents this token: frozen.
  const claims: RelayClaims = Object.freeze({
    relay: payload.sub,
    issuedAtMs,
    ...(scp === undefined ? {} : { scopes: Object.freeze([...(scp as string[])]) as string[] }),
    ...(ro ? { readOnly: true } : {}),
  });
  return { claims, exp: payload.exp, nbf: payload.nbf };
}
