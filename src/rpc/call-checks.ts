// Every check a call passes between decoding and its handler, in one place,
// for both lanes: connect-es runs `callChecks` as its one interceptor, the
// binary fast path (rpc/router.ts serveFast) calls checkScopedCall directly.
// In order: the relay token's claims (auth/claims.ts), then the scope's
// in-flight bound (rpc/overload.ts). A new check goes here.
import type { Interceptor } from "@connectrpc/connect";
import { enforceUnscopedCallClaims, namesScope, requireScopedCallAllowed } from "../auth/claims.js";
import type { Env } from "../env.js";
import { CoordinatorService } from "../gen/moqworker/v1/coordinator_pb.js";
import { type Caller, callerKey, envKey } from "./context.js";
import { shedding } from "./overload.js";

/**
 * A call naming a scope (its `scope` field; absent = the unscoped space):
 * the caller's token claims (relay calls only), then shedding by scope.
 */
export function checkScopedCall<T>(
  env: Env | undefined,
  caller: Caller | undefined,
  method: string,
  scope: string | undefined,
  call: () => Promise<T>,
): Promise<T> {
  if (caller) requireScopedCallAllowed(caller, method, scope);
  return shedding(env, scope, call);
}

/** The checks as connect-es's interceptor, for every unary call of either service. */
export const callChecks: Interceptor = (next) => (req) => {
  if (req.stream) return next(req);
  // Token claims are a relay token's; admin calls are only shed.
  const caller = req.service.typeName === CoordinatorService.typeName ? req.contextValues.get(callerKey) : undefined;
  if (namesScope(req.method)) {
    const scope = (req.message as { scope?: string }).scope;
    return checkScopedCall(req.contextValues.get(envKey), caller, req.method.name, scope, () => next(req));
  }
  return caller ? enforceUnscopedCallClaims(caller, req, next) : next(req);
};
