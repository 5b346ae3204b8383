// What the Worker's two WebSocket routes (the watch channel, the lease socket)
// share: GET only (anything else answered as the pipeline answers a method it
// does not serve), and each request counted in /metrics beside the RPCs, by
// the code it was answered with.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Env } from "../env.js";
import { recordRpc } from "../metrics/record.js";
import { invalid } from "../model/validate.js";
import { connectErrorResponse } from "./router.js";

export interface SocketRoute {
  /** The metrics labels. */
  service: string;
  method: string;
  /** What the socket is, for the refusal of another HTTP method ("the watch channel"). */
  what: string;
  /** Checks the caller and upgrades; a refusal is thrown as a ConnectError. */
  upgrade(request: Request, env: Env): Promise<Response>;
  /** The Connect code a non-101 answer of `upgrade` stands for. */
  refusedAs(res: Response): Code;
}

/** A route's request must be a WebSocket upgrade; INVALID_ARGUMENT naming `upgrade` otherwise (checked after the caller). */
export function requireUpgrade(request: Request, route: string): void {
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw invalid("upgrade", `GET ${route} must be a WebSocket upgrade (Upgrade: websocket)`);
  }
}

export async function serveSocketRoute(route: SocketRoute, request: Request, env: Env): Promise<Response> {
  const started = performance.now();
  const record = (code: string) => recordRpc(env, route.service, route.method, code, (performance.now() - started) / 1000);
  try {
    if (request.method !== "GET") {
      const res = connectErrorResponse(
        new ConnectError(`HTTP ${request.method} is not supported: ${route.what} is a GET upgrade`, Code.Unimplemented),
        405,
      );
      res.headers.set("allow", "GET");
      record(codeToString(Code.Unimplemented));
      return res;
    }
    const res = await route.upgrade(request, env);
    record(res.status === 101 ? "ok" : codeToString(route.refusedAs(res)));
    return res;
  } catch (err) {
    record(codeToString(ConnectError.from(err).code));
    throw err;
  }
}

/**
 * Closes `ws` with `code` (answering a relay's close completes the
 * handshake); 1005 and 1006 are reported, never sent, so they close as 1000.
 * A socket closing already is left alone.
 */
export function completeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
  } catch {
    // Closing already.
  }
}
