// GET /v1/watch?scope=…: a relay opens the watch channel of one scope
// (schema/moqworker/v1/watch.proto). Everything is checked here, before the
// upgrade, and refused as a Connect error; the scope's ScopeObject then
// accepts the socket (watch/hub.ts), or refuses it when the scope is full.
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { requireScopeAllowed } from "../auth/claims.js";
import { invalid } from "../model/validate.js";
import { scopeStub } from "../objects/stubs.js";
import { relayCaller } from "../rpc/callers.js";
import { serveSocketRoute } from "../rpc/socket-route.js";
import { scopeOf } from "../rpc/convert.js";
import { WATCH_RELAY_HEADER } from "./hub.js";

/** GET /v1/watch, counted beside the RPCs by the code it was answered with. */
export const watchRoute = (request: Request, env: Env): Promise<Response> =>
  serveSocketRoute(
    {
      service: "WatchChannel",
      method: "Watch",
      what: "the watch channel",
      upgrade,
      // The object refuses only one way: the scope is full.
      refusedAs: () => Code.ResourceExhausted,
    },
    request,
    env,
  );

async function upgrade(request: Request, env: Env): Promise<Response> {
  // Who first: nothing about the scope is said to a caller without a token.
  const caller = await relayCaller(request, env, "Watch");
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw invalid("upgrade", "GET /v1/watch must be a WebSocket upgrade (Upgrade: websocket)");
  }
  const raw = new URL(request.url).searchParams.get("scope");
  const scope = scopeOf(env, raw ?? undefined);
  if (caller.scopes !== undefined) requireScopeAllowed("scope", scope, caller.scopes);
  // The object hears only what it needs: the upgrade and who is watching (no token).
  const headers = new Headers({ upgrade: "websocket", [WATCH_RELAY_HEADER]: caller.relay });
  return scopeStub(env, scope).fetch(new Request(request.url, { headers }));
}
