// What the pipeline (rpc/router.ts) takes for a method served by the binary
// fast path: its hand-written codec (rpc/fast-wire.ts) and its implementation.
import type { Env } from "../env.js";
import type { Caller } from "./context.js";

/**
 * A method whose binary calls skip protobuf-es's reflection and connect-es's
 * invocation. Its request names a scope (rpcService checks), it sets no
 * response headers, and the pipeline applies the interceptors' checks
 * itself (serveFast). Only CoordinatorService's methods qualify: serveFast
 * requires a calling relay, which only that service's calls have. Only for
 * the hottest calls, where the difference shows (docs/performance.md "Fast path").
 */
export interface FastMethod<Req extends { scope?: string } = { scope?: string }, Res = unknown> {
  /** The request, from binary protobuf; throws on bytes that are not one. */
  read(bytes: Uint8Array): Req;
  /** The implementation, on a caller whose token claims and scope load were checked. */
  serve(env: Env, caller: Caller, request: Req): Promise<Res>;
  /** The answer, as binary protobuf. */
  write(answer: Res): Uint8Array;
}

/** Fast methods by method name. */
export type FastPath = ReadonlyMap<string, FastMethod>;

/** A FastMethod checked as one unit (what read gives serve takes, what serve gives write takes), then stored untyped. */
export const fastMethod = <Req extends { scope?: string }, Res>(m: FastMethod<Req, Res>): FastMethod => m as unknown as FastMethod;
