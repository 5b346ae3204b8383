// GET /v1/lease: a relay holds its lease on a WebSocket to its RelayObject
// instead of beating over HTTP (coordinator.proto, "The lease socket"). The
// caller is checked here as for any coordinator call, before the upgrade; the
// object accepts the socket (objects/lease-socket.ts) or refuses a revoked
// token or a retired epoch.
import { Code } from "@connectrpc/connect";
import type { Env } from "../env.js";
import { invalid } from "../model/validate.js";
import { LEASE_SOCKET_HEADERS } from "../objects/lease-socket.js";
import { relayStub } from "../objects/stubs.js";
import { relayCaller } from "./callers.js";
import { requireUpgrade, serveSocketRoute } from "./socket-route.js";

/** GET /v1/lease, counted beside the RPCs by the code it was answered with. */
export const leaseRoute = (request: Request, env: Env): Promise<Response> =>
  serveSocketRoute(
    {
      service: "LeaseSocket",
      method: "Open",
      what: "the lease socket",
      upgrade,
      // The object refuses a revoked token (401) or a retired epoch.
      refusedAs: (res) => (res.status === 401 ? Code.Unauthenticated : Code.FailedPrecondition),
    },
    request,
    env,
  );

async function upgrade(request: Request, env: Env): Promise<Response> {
  // The same rate bucket as the Heartbeat it replaces.
  const caller = await relayCaller(request, env, "Heartbeat");
  requireUpgrade(request, "/v1/lease");
  if (caller.epoch === undefined) throw invalid("Moq-Relay-Epoch", "header is required on the lease socket");
  const headers = new Headers({
    upgrade: "websocket",
    [LEASE_SOCKET_HEADERS.relay]: caller.relay,
    [LEASE_SOCKET_HEADERS.epoch]: caller.epoch,
    [LEASE_SOCKET_HEADERS.issuedAt]: String(caller.issuedAtMs),
    [LEASE_SOCKET_HEADERS.versions]: JSON.stringify(caller.versions ?? null),
  });
  return relayStub(env, caller.relay).fetch(new Request(request.url, { headers }));
}
