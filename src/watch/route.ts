// GET /v1/watch?scope=…: a relay opens the watch channel of one scope
// (schema/moqworker/v1/watch.proto). Everything is checked here, before the
// upgrade, and refused as a Connect error; the scope's ScopeObject then
// accepts the socket (watch/hub.ts), or refuses it when the scope is full.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Env } from "../env.js";
import { recordRpc } from "../metrics/record.js";
import { requireScopeAllowed } from "../auth/claims.js";
import { invalid } from "../model/validate.js";
import { scopeStub } from "../objects/stubs.js";
import { relayCaller } from "../rpc/callers.js";
import { connectErrorResponse } from "../rpc/router.js";
import { scopeOf } from "../rpc/convert.js";
import { WATCH_RELAY_HEADER } from "./hub.js";

/** The metrics labels of a watch request: counted beside the RPCs, by the code it was answered with. */
export const WATCH_METRICS = { service: "WatchChannel", method: "Watch" } as const;

export async function watchRoute(request: Request, env: Env): Promise<Response> {
  const started = performance.now();
  const record = (code: string) => recordRpc(env, WATCH_METRICS.service, WATCH_METRICS.method, code, (performance.now() - started) / 1000);
  try {
    if (request.method !== "GET") {
      // As the RPC pipeline answers a method it does not serve.
      const res = connectErrorResponse(
        new ConnectError(`HTTP ${request.method} is not supported: the watch channel is a GET upgrade`, Code.Unimplemented),
        405,
      );
      res.headers.set("allow", "GET");
      record(codeToString(Code.Unimplemented));
      return res;
    }
    const res = await upgrade(request, env);
    // The object refuses only one way: the scope is full.
    record(res.status === 101 ? "ok" : codeToString(Code.ResourceExhausted));
    return res;
  } catch (err) {
    record(codeToString(ConnectError.from(err).code));
    throw err;
  }
}

async function upgrade(request: Request, env: Env): Promise<Response> {
  // Who first: nothing about the scope is said to a caller without a token.
  const caller = await relayCaller(request, env);
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
