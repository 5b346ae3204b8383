// AdminService: relay tokens (and their revocation), scope config and connection paths.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "../gen/moqworker/v1/admin_pb.js";
import { Permissions, ScopeConfigSchema } from "../gen/moqworker/v1/coordinator_pb.js";
import { isRelayLinkPath, RELAY_LINK_PREFIX } from "../auth/relay-link.js";
import { mintRelayToken } from "../auth/relay-token.js";
import { noteRevoked } from "../auth/revocation.js";
import { normalizeConnectionPath } from "../model/path.js";
import { checkRelayUrl, checkScopeName, invalid } from "../model/validate.js";
import type { Env } from "../env.js";
import { envOf, unwrap } from "./convert.js";
import { describeScope } from "./describe.js";
import { checkPolicy } from "../model/auth-policy.js";
import { scopeTokenHandlers } from "./scope-tokens.js";
import { getNetwork } from "./network.js";
import { listRelays, listScopes } from "./relays.js";
import { scopeFromListedName } from "../objects/scope-name.js";
import { secretSetting } from "../settings.js";
import { directoryStub, pathStub, relayStub, scopeStub } from "../objects/stubs.js";

const MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600;
const MAX_TOKEN_SCOPES = 32;
const MAX_RENDEZVOUS_MS = 24 * 3600 * 1000;

/** A path for PutPath/DeletePath: must normalise to a real path outside the reserved relay-link prefix. */
function mappedPath(raw: string): string {
  const normalized = normalizeConnectionPath(raw);
  if (normalized.kind === "invalid") throw invalid("path", normalized.reason);
  if (normalized.kind === "none") throw invalid("path", `'${raw}' is no path (unscoped); map a path like /tenant`);
  if (isRelayLinkPath(normalized.path)) {
    throw invalid("path", `paths under ${RELAY_LINK_PREFIX} are reserved for relay links and cannot be mapped`);
  }
  return normalized.path;
}

/**
 * Tells each scope a path left (its path list, its watchers), then the
 * PathObject that it was told. A failure throws: the scope stays on the
 * PathObject's list and the next PutPath or DeletePath of the path tells it.
 */
async function tellLeft(env: Env, path: string, scopes: string[]): Promise<void> {
  for (const left of scopes) {
    await scopeStub(env, left).deletePath(path);
    await pathStub(env, path).told(left);
  }
}

export const adminService: ServiceImpl<typeof AdminService> = {
  ...scopeTokenHandlers,

  async createRelayToken(req, ctx) {
    const env = envOf(ctx);
    const relayUrl = checkRelayUrl("relay_url", req.relayUrl);
    if (req.ttlSeconds !== undefined && (req.ttlSeconds < 1 || req.ttlSeconds > MAX_TOKEN_TTL_SECONDS)) {
      throw invalid("ttl_seconds", `must be between 1 and ${MAX_TOKEN_TTL_SECONDS}`);
    }
    // Scope claims ride in every request header: keep the token small.
    if (req.scopes.length > MAX_TOKEN_SCOPES) throw invalid("scopes", `has ${req.scopes.length} entries, more than ${MAX_TOKEN_SCOPES}`);
    const scopes = [...new Set(req.scopes.map((s, i) => checkScopeName(`scopes[${i}]`, s)))];
    const secret = secretSetting(env, "TOKEN_SECRET");
    if (secret === undefined) {
      throw new ConnectError("TOKEN_SECRET is not set (wrangler secret put TOKEN_SECRET)", Code.FailedPrecondition);
    }
    const minted = await mintRelayToken(secret, relayUrl, req.ttlSeconds, { scopes, readOnly: req.readOnly });
    return { token: minted.token, expiresAtMs: minted.expiresAtMs === undefined ? undefined : BigInt(minted.expiresAtMs) };
  },

  async revokeRelayToken(req, ctx) {
    const env = envOf(ctx);
    const relayUrl = checkRelayUrl("relay_url", req.relayUrl);
    const beforeMs = Date.now();
    // The directory first: isolates learn of it from there; then this isolate; then the relay's own object, which purges.
    unwrap(await directoryStub(env).revoke(relayUrl, beforeMs));
    noteRevoked(relayUrl, beforeMs);
    const { removed, purgePending } = await relayStub(env, relayUrl).revoke(beforeMs);
    await closeWatchers(env, relayUrl);
    // A token minted after this answer must be newer than the cut-off (the runtime's clock moves across I/O).
    if (Date.now() <= beforeMs) await scheduler.wait(1);
    return { revokedBeforeMs: BigInt(beforeMs), rowsRemoved: BigInt(removed), purgePending };
  },

  async putScopeConfig(req, ctx) {
    const env = envOf(ctx);
    const scope = checkScopeName("scope", req.scope);
    const config = req.config ?? create(ScopeConfigSchema);
    const originFallback = config.originFallback === undefined ? undefined : checkRelayUrl("config.origin_fallback", config.originFallback);
    const timeout = config.rendezvousTimeoutMs;
    if (timeout !== undefined && (timeout < 1 || timeout > MAX_RENDEZVOUS_MS)) {
      throw invalid("config.rendezvous_timeout_ms", `must be between 1 and ${MAX_RENDEZVOUS_MS}`);
    }
    const object = () => scopeStub(env, scope);
    // The policy is checked against the scope's Worker keys, which share its kids and key budget.
    const auth = config.auth && (await checkPolicy(config.auth, await object().workerKids(), await object().operatorAuth(), Date.now()));
    unwrap(
      await object().putConfig(scope, {
        originFallback,
        lingeringSubscribe: config.lingeringSubscribe,
        rendezvousTimeoutMs: timeout,
        auth,
      }),
    );
    await directoryStub(env).noteScope(scope, Date.now());
    return {};
  },

  async putPath(req, ctx) {
    const env = envOf(ctx);
    const path = mappedPath(req.path);
    const scope = checkScopeName("scope", req.scope);
    if (req.permissions !== Permissions.READ_WRITE && req.permissions !== Permissions.READ_ONLY) {
      throw invalid("permissions", "must be PERMISSIONS_READ_WRITE or PERMISSIONS_READ_ONLY");
    }
    const { untold } = await pathStub(env, path).put({ scope, permissions: req.permissions });
    await tellLeft(env, path, untold);
    await scopeStub(env, scope).putPath(scope, path, req.permissions);
    // The scope object also tells the directory, in the background; awaiting here
    // makes an operator's new scope show in ListScopes as soon as this returns.
    await directoryStub(env).noteScope(scope, Date.now());
    return { path };
  },

  async deletePath(req, ctx) {
    const env = envOf(ctx);
    const path = mappedPath(req.path);
    const { previous, untold } = await pathStub(env, path).delete();
    // A retry after a failed call finds no mapping but still tells the scope it had.
    await tellLeft(env, path, untold);
    if (!previous) throw new ConnectError(`path: ${path} is not mapped`, Code.NotFound);
    return {};
  },

  async describeScope(req, ctx) {
    return describeScope(envOf(ctx), req);
  },

  async listRelays(req, ctx) {
    return listRelays(envOf(ctx), req);
  },

  async listScopes(req, ctx) {
    return listScopes(envOf(ctx), req);
  },

  async getNetwork(req, ctx) {
    return getNetwork(envOf(ctx), req);
  },
};

/**
 * Closes the revoked relay's watch sockets in every scope the directory lists
 * (a relay may watch scopes it never wrote to, so its own scope list is not
 * enough), a batch of scopes at a time. A scope nobody ever wrote to or
 * configured has nothing to tell the socket.
 */
async function closeWatchers(env: Env, relay: string): Promise<void> {
  const BATCH = 25;
  let after: string | undefined;
  for (;;) {
    const { names, more } = await directoryStub(env).listScopes(1000, after);
    for (let i = 0; i < names.length; i += BATCH) {
      await Promise.all(names.slice(i, i + BATCH).map((name) => scopeStub(env, scopeFromListedName(name)).closeWatchers(relay)));
    }
    if (!more || names.length === 0) return;
    after = names[names.length - 1];
  }
}
