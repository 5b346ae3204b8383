// Connect handlers of both services, served from Hono routes. The router is
// built once per isolate; the Worker env and the caller travel per request as
// context values.
import { Code, ConnectError, createConnectRouter, createContextValues } from "@connectrpc/connect";
import {
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
  type UniversalHandler,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJson } from "@connectrpc/connect/protocol-connect";
import { AdminService } from "../gen/moqworker/v1/admin_pb.js";
import { CoordinatorService } from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import { adminService } from "./admin.js";
import { coordinatorService } from "./coordinator.js";
import { callerKey, envKey, type Caller } from "./context.js";

/** Largest request body accepted, checked before any parsing. */
export const MAX_REQUEST_BYTES = 64 * 1024;

const router = createConnectRouter({
  // The Connect protocol only: JSON for curl, binary protobuf for relays.
  grpc: false,
  grpcWeb: false,
  readMaxBytes: MAX_REQUEST_BYTES,
  jsonOptions: { ignoreUnknownFields: false },
});
router.service(CoordinatorService, coordinatorService);
router.service(AdminService, adminService);

const handlers = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));

export function connectErrorResponse(err: ConnectError): Response {
  return new Response(JSON.stringify(errorToJson(err, undefined)), {
    status: codeToHttpStatus(err.code),
    headers: { "content-type": "application/json" },
  });
}

export async function serveConnect(request: Request, env: Env, caller?: Caller): Promise<Response> {
  const path = new URL(request.url).pathname;
  const handler = handlers.get(path);
  if (!handler) return connectErrorResponse(new ConnectError(`no such method: ${path}`, Code.Unimplemented));
  const ureq = universalServerRequestFromFetch(request, {});
  ureq.contextValues = createContextValues().set(envKey, env).set(callerKey, caller);
  return universalServerResponseToFetch(await handler(ureq));
}
