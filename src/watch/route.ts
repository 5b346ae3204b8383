// GET /v1/watch?scope=…: a relay opens the watch channel of one scope
// (schema/moqworker/v1/watch.proto). Everything is checked here, before the
// upgrade, and refused as a Connect error; the relay's branch of the scope
// (watch/branches.ts) then accepts the socket (watch/branch.ts), or refuses it
// when the branch is full.
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { requireScopeAllowed } from "../auth/claims.js";
import { scopeObjectName } from "../objects/scope-name.js";
import { watchBranchStub } from "../objects/stubs.js";
import { relayCaller } from "../rpc/callers.js";
import { requireUpgrade, serveSocketRoute } from "../rpc/socket-route.js";
import { scopeOf } from "../rpc/convert.js";
import { WATCH_BRANCH_HEADER, WATCH_RELAY_HEADER, WATCH_SCOPE_HEADER } from "./branch.js";
import { branchOf } from "./branches.js";

/** GET /v1/watch, counted beside the RPCs by the code it was answered with. */
export const watchRoute = (request: Request, env: Env): Promise<Response> =>
  serveSocketRoute(
    {
      service: "WatchChannel",
      method: "Watch",
      what: "the watch channel",
      upgrade,
      // The object refuses only one way: the branch is full.
      refusedAs: () => Code.ResourceExhausted,
    },
    request,
    env,
  );

async function upgrade(request: Request, env: Env): Promise<Response> {
  // Who first: nothing about the scope is said to a caller without a token.
  const caller = await relayCaller(request, env, "Watch");
  requireUpgrade(request, "/v1/watch");
  const raw = new URL(request.url).searchParams.get("scope");
  const scope = scopeOf(env, raw ?? undefined);
  if (caller.scopes !== undefined) requireScopeAllowed("scope", scope, caller.scopes);
  // The branch hears only what it needs: the upgrade, who is watching (no token), and whose branch it is.
  const branch = branchOf(env, scope, caller.relay);
  const headers = new Headers({
    upgrade: "websocket",
    [WATCH_RELAY_HEADER]: caller.relay,
    [WATCH_SCOPE_HEADER]: scopeObjectName(scope),
    [WATCH_BRANCH_HEADER]: branch,
  });
  return watchBranchStub(env, branch).fetch(new Request(request.url, { headers }));
}
