// GET /v1/lease: a relay holds its lease on a WebSocket to its RelayObject
// instead of beating over HTTP (coordinator.proto, "The lease socket"). The
// caller is checked here as for any coordinator call, before the upgrade; the
// object accepts the socket (objects/lease-socket.ts) or refuses a revoked
// token or a retired epoch.
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import type { Env } from "../env.js";
import { recordRpc } from "../metrics/record.js";
import { invalid } from "../model/validate.js";
import { LEASE_SOCKET_HEADERS } from "../objects/lease-socket.js";
import { relayStub } from "../objects/stubs.js";
import { relayCaller } from "./callers.js";
import { connectErrorResponse } from "./router.js";

/** The metrics labels of a lease-socket request, counted beside the RPCs. */
export const LEASE_METRICS = { service: "LeaseSocket", method: "Open" } as const;

export async function leaseRoute(request: Request, env: Env): Promise<Response> {
  const started = performance.now();
  const record = (code: string) => recordRpc(env, LEASE_METRICS.service, LEASE_METRICS.method, code, (performance.now() - started) / 1000);
  try {
    if (request.method !== "GET") {
      const res = connectErrorResponse(
        new ConnectError(`HTTP ${request.method} is not supported: the lease socket is a GET upgrade`, Code.Unimplemented),
        405,
      );
      res.headers.set("allow", "GET");
      record(codeToString(Code.Unimplemented));
      return res;
    }
    // The same rate bucket as the Heartbeat it replaces.
    const caller = await relayCaller(request, env, "Heartbeat");
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw invalid("upgrade", "GET /v1/lease must be a WebSocket upgrade (Upgrade: websocket)");
    }
    if (caller.epoch === undefined) throw invalid("Moq-Relay-Epoch", "header is required on the lease socket");
    const headers = new Headers({
      upgrade: "websocket",
      [LEASE_SOCKET_HEADERS.relay]: caller.relay,
      [LEASE_SOCKET_HEADERS.epoch]: caller.epoch,
      [LEASE_SOCKET_HEADERS.issuedAt]: String(caller.issuedAtMs),
      [LEASE_SOCKET_HEADERS.versions]: JSON.stringify(caller.versions ?? null),
    });
    const res = await relayStub(env, caller.relay).fetch(new Request(request.url, { headers }));
    record(res.status === 101 ? "ok" : codeToString(res.status === 401 ? Code.Unauthenticated : Code.FailedPrecondition));
    return res;
  } catch (err) {
    record(codeToString(ConnectError.from(err).code));
    throw err;
  }
}
