// Who is calling: a relay (CoordinatorService, relay token) or an operator
// (AdminService, admin token). Runs in the request pipeline after the size
// check and before the body is decoded.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { bearerToken, requireAdmin } from "../auth/bearer.js";
import { tokenSecrets, verifyRelayClaims } from "../auth/relay-token.js";
import { enforceRateLimit, relayBucket } from "../auth/rate-limit.js";
import { requireNotRevoked } from "../auth/revocation.js";
import { MAX_EPOCH_CHARS } from "../model/validate.js";
import { secretSetting } from "../settings.js";
import { parseVersions, VERSIONS_HEADER } from "../model/moqt-version.js";
import type { Caller } from "./context.js";

const EPOCH_HEADER = "moq-relay-epoch";

/** `method` is the method name the path asks for (rate limits count Heartbeat apart). */
export async function relayCaller(request: Request, env: Env, method: string): Promise<Caller> {
  if (!secretSetting(env, "TOKEN_SECRET")) {
    throw new ConnectError("relay tokens cannot be verified: TOKEN_SECRET is not set", Code.Unavailable);
  }
  const { relay, scopes, readOnly, issuedAtMs } = await verifyRelayClaims(tokenSecrets(env), bearerToken(request.headers));
  const epoch = request.headers.get(EPOCH_HEADER) ?? undefined;
  if (epoch !== undefined && (epoch === "" || epoch.length > MAX_EPOCH_CHARS)) {
    throw new ConnectError(`${EPOCH_HEADER} header must be 1 to ${MAX_EPOCH_CHARS} characters`, Code.InvalidArgument);
  }
  const versions = parseVersions(request.headers.get(VERSIONS_HEADER));
  await requireNotRevoked(env, relay, issuedAtMs);
  await enforceRateLimit(env, relayBucket(method), relay, `relay ${relay}`);
  return { relay, epoch, versions, scopes, readOnly, issuedAtMs };
}

export async function adminCaller(request: Request, env: Env): Promise<undefined> {
  const who = await requireAdmin(request.headers, env);
  await enforceRateLimit(env, "admin", who, `the ${who} admin token`);
  return undefined;
}
