// The request pipeline of both Connect services: one pass per call, each step
// once: HTTP method, body size, caller, RPC method, content type, decode,
// interceptors and implementation, encode, metrics (with the code it answered).
//
// Why not connect-es's own server handler (createConnectRouter)? Every method
// of both services is unary, and for a small unary call its universal handler
// was most of the Worker's CPU (docs/performance.md "Pipeline"): the fetch body became an
// async iterable and the answer a JS ReadableStream, headers were copied, two
// AbortControllers made per call, and an undecodable binary body came back as
// INTERNAL, so the Worker decoded it a second time to answer INVALID_ARGUMENT
// (and a metrics middleware re-parsed error bodies to learn their code). The
// Connect unary protocol is small (POST, a content type, a body; errors as JSON
// with an HTTP status), so it is served here with connect-es's own parts where
// they exist: invokeUnaryImplementation (interceptors and implementation,
// exactly as connect runs them), content-type, timeout and compression
// parsing, the error JSON and status mapping; and protobuf-es to decode and
// encode. Only the handler context is built here (handlerContext, below). The
// Worker tests call the pipeline through connect-es's own client, in JSON and
// binary (test/client.ts; test/pipeline.test.ts for the pipeline's own steps).
//
// The two calls relays make most (Lookup, RegisterNamespace) have one more
// step in binary: a codec written by hand replaces protobuf-es's decode and
// encode and connect's invocation (rpc/fast-method.ts, serveFast; rpc/fast-wire.ts),
// the rest of the pipeline unchanged, because those two are where a call's
// CPU counts most (docs/performance.md "Fast path"); test/fast-wire.test.ts
// holds it to the general path.
import {
  Code,
  ConnectError,
  createContextValues,
  createServiceImplSpec,
  type HandlerContext,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import { compressionNegotiate, invokeUnaryImplementation, mergeNonProtocolHeaders } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  codeToString,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJson,
  parseContentType,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import { fromBinary, fromJsonString, toBinary, toJsonString, type DescService } from "@bufbuild/protobuf";
import { namesScope } from "../auth/claims.js";
import type { Env } from "../env.js";
import { recordRpc } from "../metrics/record.js";
import { callerKey, envKey, type Caller } from "./context.js";
import type { FastMethod, FastPath } from "./fast-method.js";
import { errorOf } from "./overload.js";
import { callChecks, checkScopedCall } from "./call-checks.js";

/** Largest request body accepted, checked once, before authentication and parsing. */
export const MAX_REQUEST_BYTES = 64 * 1024;

// Every per-call check (token claims, shedding), for both lanes: rpc/call-checks.ts.
const interceptors = [callChecks];
const jsonReadOptions = { ignoreUnknownFields: false };
/** What parseContentType answers for "application/proto". */
const UNARY_PROTO = { stream: false, binary: true } as const;

type Spec = Extract<MethodImplSpec, { kind: "unary" }>;

/** One Connect service served by the pipeline. */
export interface RpcService {
  /** Short service name, the metrics label. */
  name: string;
  /** "/moqworker.v1.CoordinatorService/": the path of a method is this and its name. */
  prefix: string;
  /** Unary methods by name. */
  methods: Map<string, Spec>;
  /**
   * The caller of a request (undefined for admin calls), or throws
   * UNAUTHENTICATED / PERMISSION_DENIED, or RESOURCE_EXHAUSTED past its rate
   * limit. `method` is the name the path asks for (it may not exist).
   */
  authenticate(request: Request, env: Env, method: string): Promise<Caller | undefined>;
  /** Methods whose binary calls take the fast path, by name. */
  fast?: FastPath;
}

export function rpcService<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  authenticate: RpcService["authenticate"],
  fast?: FastPath,
): RpcService {
  const methods = new Map<string, Spec>();
  for (const spec of Object.values(createServiceImplSpec(service, impl).methods)) {
    // A streaming method would need connect's streaming handler; the contract has none.
    if (spec.kind !== "unary") throw new Error(`${spec.method.parent.typeName}.${spec.method.name}: only unary methods are served`);
    methods.set(spec.method.name, spec as Spec);
  }
  for (const name of fast?.keys() ?? []) {
    const spec = methods.get(name);
    // serveFast sheds and checks claims by the request's scope: a method without one would be judged as unscoped.
    if (!spec || !namesScope(spec.method)) throw new Error(`${service.typeName}.${name}: a fast method must exist and name a scope`);
  }
  return { name: service.name, prefix: `/${service.typeName}/`, methods, authenticate, fast };
}

/** A Connect error answer: its JSON body, the code's HTTP status, `headers` (if any) and the JSON content type. */
export function connectErrorResponse(err: ConnectError, status = codeToHttpStatus(err.code), headers?: Headers): Response {
  return answer(JSON.stringify(errorToJson(err, undefined)), contentTypeUnaryJson, headers, status);
}

/**
 * Every answer of the pipeline, successful or not: the body, `headers` (if
 * any), then the content type. Headers are set on the made Response: a
 * headers object in the init costs the runtime a conversion on every call
 * (docs/performance.md "Pipeline").
 */
function answer(body: Uint8Array | string, contentType: string, headers?: Headers, status?: number): Response {
  const res = status === undefined ? new Response(body) : new Response(body, { status });
  if (headers) for (const [k, v] of headers) res.headers.append(k, v);
  res.headers.set("content-type", contentType);
  return res;
}

const tooLarge = () => new ConnectError(`request body larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted);

/** The body, read once; RESOURCE_EXHAUSTED past MAX_REQUEST_BYTES (from Content-Length before reading, else while reading). */
async function readBody(request: Request): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && !request.headers.has("transfer-encoding")) {
    if (Number(declared) > MAX_REQUEST_BYTES) throw tooLarge();
    // Not through request.body: that makes a JS stream object the common case does not need.
    const bytes = new Uint8Array(await request.arrayBuffer());
    // A body longer than it declared (the runtime's HTTP parser prevents it; a forwarded Request might not).
    if (bytes.byteLength > MAX_REQUEST_BYTES) throw tooLarge();
    return bytes;
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_REQUEST_BYTES) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

/** The request, read by `read`; whatever it throws is the caller's INVALID_ARGUMENT. */
function decode<T>(spec: Spec, binary: boolean, read: () => T): T {
  try {
    return read();
  } catch (e) {
    // The caller's mistake: INVALID_ARGUMENT (connect-es says INTERNAL for binary).
    const why = e instanceof Error ? e.message : String(e);
    throw new ConnectError(
      binary ? `request body: cannot decode ${spec.method.input.typeName} from binary protobuf: ${why}` : why,
      Code.InvalidArgument,
    );
  }
}

const decodeWithProtobufEs = (spec: Spec, binary: boolean, bytes: Uint8Array) =>
  binary ? fromBinary(spec.method.input, bytes) : fromJsonString(spec.method.input, new TextDecoder().decode(bytes), jsonReadOptions);

/**
 * A binary call of a FastMethod: the same checks as handlerContext (the
 * deadline header) and the interceptors (token claims, shedding), then the
 * method's own codec around its implementation.
 */
async function serveFast(fast: FastMethod, spec: Spec, request: Request, bytes: Uint8Array, caller: Caller | undefined, env: Env) {
  deadlineOf(request.headers);
  if (!caller) throw new ConnectError("no relay identity", Code.Unauthenticated);
  const input = decode(spec, true, () => fast.read(bytes));
  const output = await checkScopedCall(env, caller, spec.method.name, input.scope, () => fast.serve(env, caller, input));
  return answer(fast.write(output), contentTypeUnaryProto);
}

/** Serves one Connect call to `path` (a URL path under `service.prefix`). */
export async function serveRpc(service: RpcService, path: string, request: Request, env: Env): Promise<Response> {
  const started = performance.now();
  const method = path.slice(service.prefix.length);
  const spec = service.methods.get(method);
  let code = "ok";
  let ctx: HandlerContext | undefined;
  try {
    if (request.method !== "POST") {
      const res = connectErrorResponse(
        new ConnectError(`HTTP ${request.method} is not supported: Connect RPCs take POST`, Code.Unimplemented),
        405,
      );
      res.headers.set("allow", "POST");
      code = "unimplemented";
      return res;
    }
    const bytes = await readBody(request);
    const caller = await service.authenticate(request, env, method);
    // After authentication: without credentials a caller learns nothing about which methods exist.
    if (!spec) throw new ConnectError(`no such method: ${path}`, Code.Unimplemented);
    const header = request.headers;
    const sentType = header.get("content-type");
    // The edge's exact content type skips connect's regular expression.
    const type = sentType === contentTypeUnaryProto ? UNARY_PROTO : parseContentType(sentType);
    if (!type || type.stream) {
      const sent = (sentType ?? "(none)").slice(0, 100);
      code = "invalid_argument";
      return connectErrorResponse(
        new ConnectError(`content-type: '${sent}' is not supported; send application/proto or application/json`, Code.InvalidArgument),
        415,
      );
    }
    // No encodings are accepted: connect's negotiation names the refused one.
    const compression = compressionNegotiate([], header.get("content-encoding"), null, "accept-encoding");
    if (compression.error) throw compression.error;
    const fast = type.binary ? service.fast?.get(method) : undefined;
    if (fast) return await serveFast(fast, spec, request, bytes, caller, env);
    ctx = handlerContext(spec, request, caller, env);
    const input = decode(spec, type.binary, () => decodeWithProtobufEs(spec, type.binary, bytes));
    const output = await invokeUnaryImplementation(spec, ctx, input, interceptors);
    const body = type.binary ? toBinary(spec.method.output, output) : toJsonString(spec.method.output, output);
    const contentType = type.binary ? contentTypeUnaryProto : contentTypeUnaryJson;
    return answer(body, contentType, responseHeaders(ctx));
  } catch (e) {
    // Runtime errors a retry may fix (an overloaded or reset object) are UNAVAILABLE, others INTERNAL.
    const err = errorOf(e);
    code = codeToString(err.code);
    let headers = ctx && responseHeaders(ctx);
    // Most errors carry no metadata (a Lookup miss): then no Headers object is made.
    if (!err.isWireError && !err.metadata.keys().next().done) {
      headers ??= new Headers();
      mergeNonProtocolHeaders(headers, err.metadata);
    }
    return connectErrorResponse(err, codeToHttpStatus(err.code), headers);
  } finally {
    // Workers clocks advance only across I/O, which is what an RPC waits on here.
    recordRpc(env, service.name, spec ? spec.method.name : "unknown", code, (performance.now() - started) / 1000);
  }
}

/**
 * The handler context connect-es would build, without its per-call abort
 * controllers (a visible cost on every call, docs/performance.md "Pipeline"):
 * the signal is the request's
 * own, which fires when the client goes away, joined with the deadline when
 * the caller sent connect-timeout-ms. Nothing here listens to it today.
 */
function handlerContext(spec: Spec, request: Request, caller: Caller | undefined, env: Env): HandlerContext {
  const header = request.headers;
  const deadline = deadlineOf(header);
  return {
    service: spec.method.parent,
    method: spec.method,
    protocolName: "connect",
    requestMethod: "POST",
    url: request.url,
    signal: deadline === undefined ? request.signal : AbortSignal.any([request.signal, AbortSignal.timeout(deadline - Date.now())]),
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    requestHeader: header,
    responseHeader: new Headers(),
    responseTrailer: new Headers(),
    values: createContextValues().set(envKey, env).set(callerKey, caller),
  };
}

/** When the call must end (ms since the epoch) if the caller sent connect-timeout-ms; INVALID_ARGUMENT if it is malformed. */
function deadlineOf(header: Headers): number | undefined {
  const timeout = parseTimeout(header.get("connect-timeout-ms"), Number.MAX_SAFE_INTEGER);
  if (timeout.error) throw timeout.error;
  return timeout.timeoutMs === undefined ? undefined : Date.now() + timeout.timeoutMs;
}

/** Headers and trailers the implementation set (unary Connect sends trailers as `trailer-` headers); undefined for none. */
function responseHeaders(ctx: HandlerContext): Headers | undefined {
  let headers: Headers | undefined;
  for (const [k, v] of ctx.responseHeader) {
    headers ??= new Headers();
    headers.set(k, v);
  }
  for (const [k, v] of ctx.responseTrailer) {
    headers ??= new Headers();
    headers.set(`trailer-${k}`, v);
  }
  return headers;
}
