// Relay tokens: HS256 JWTs signed with TOKEN_SECRET, whose subject is the relay
// URL. Verifying needs no storage. Rotating TOKEN_SECRET revokes every token.
import { sign, verify } from "hono/jwt";
import { Code, ConnectError } from "@connectrpc/connect";

const AUDIENCE = "moq-worker:relay";

export interface MintedToken {
  token: string;
  expiresAtMs?: number;
}

export async function mintRelayToken(secret: string, relayUrl: string, ttlSeconds?: number): Promise<MintedToken> {
  const now = Math.floor(Date.now() / 1000);
  const exp = ttlSeconds === undefined ? undefined : now + ttlSeconds;
  const token = await sign({ sub: relayUrl, aud: AUDIENCE, iat: now, ...(exp === undefined ? {} : { exp }) }, secret, "HS256");
  return { token, expiresAtMs: exp === undefined ? undefined : exp * 1000 };
}

/** Returns the relay URL the token is bound to, or throws UNAUTHENTICATED. */
export async function verifyRelayToken(secret: string, token: string): Promise<string> {
  let payload: Record<string, unknown>;
  try {
    payload = await verify(token, secret, { alg: "HS256", aud: AUDIENCE });
  } catch (e) {
    const reason = e instanceof Error ? e.name.replace(/^Jwt/, "") : "invalid";
    throw new ConnectError(`relay token rejected (${reason})`, Code.Unauthenticated);
  }
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new ConnectError("relay token has no relay URL", Code.Unauthenticated);
  }
  return payload.sub;
}
