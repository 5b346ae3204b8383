// Connect handlers of both services, served from Hono routes. The router is
// built once per isolate; the Worker env and the caller travel per request as
// context values.
import { Code, ConnectError, createConnectRouter, createContextValues } from "@connectrpc/connect";
import {
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
  type UniversalHandler,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJson, parseContentType } from "@connectrpc/connect/protocol-connect";
import { fromBinary } from "@bufbuild/protobuf";
import { AdminService } from "../gen/moqworker/v1/admin_pb.js";
import { CoordinatorService } from "../gen/moqworker/v1/coordinator_pb.js";
import type { Env } from "../env.js";
import { adminService } from "./admin.js";
import { enforceTokenClaims } from "../auth/claims.js";
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
  // Token claims (allowed scopes, read-only) apply to every coordinator call.
  interceptors: [enforceTokenClaims],
});
router.service(CoordinatorService, coordinatorService);
router.service(AdminService, adminService);

const handlers = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));

export function connectErrorResponse(err: ConnectError, status = codeToHttpStatus(err.code)): Response {
  return new Response(JSON.stringify(errorToJson(err, undefined)), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/**
 * connect-es reports an undecodable binary body as INTERNAL ("parse binary");
 * it is the caller's mistake, so decode it here first and answer
 * INVALID_ARGUMENT like a bad JSON body. Returns the buffered request to serve.
 */
async function checkBinaryBody(request: Request, handler: UniversalHandler): Promise<Request | Response> {
  const type = parseContentType(request.headers.get("content-type"));
  // Compressed bodies are refused by connect itself (no encodings are accepted).
  if (!type?.binary || type.stream || request.headers.has("content-encoding")) return request;
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength > MAX_REQUEST_BYTES) {
    return connectErrorResponse(new ConnectError(`request body larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted));
  }
  try {
    fromBinary(handler.method.input, bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return connectErrorResponse(
      new ConnectError(`request body: cannot decode ${handler.method.input.typeName} from binary protobuf: ${why}`, Code.InvalidArgument),
    );
  }
  return new Request(request, { body: bytes });
}

export async function serveConnect(request: Request, env: Env, caller?: Caller): Promise<Response> {
  const path = new URL(request.url).pathname;
  const handler = handlers.get(path);
  if (!handler) return connectErrorResponse(new ConnectError(`no such method: ${path}`, Code.Unimplemented));
  const checked = await checkBinaryBody(request, handler);
  if (checked instanceof Response) return checked;
  const ureq = universalServerRequestFromFetch(checked, {});
  ureq.contextValues = createContextValues().set(envKey, env).set(callerKey, caller);
  const response = universalServerResponseToFetch(await handler(ureq));
  if (response.status === 415) {
    // connect answers an unsupported content type with a bare 415; say what to send.
    const sent = (request.headers.get("content-type") ?? "(none)").slice(0, 100);
    return connectErrorResponse(
      new ConnectError(`content-type: '${sent}' is not supported; send application/proto or application/json`, Code.InvalidArgument),
      415,
    );
  }
  return response;
}
