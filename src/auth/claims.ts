// The narrowing claims of a relay token (auth/relay-token.ts) on a
// CoordinatorService call, after decoding and before the handler (run by
// rpc/call-checks.ts on both lanes). Tokens without claims pass untouched, so
// existing relays see no change.
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { CoordinatorService, type ResolveScopeResponse } from "../gen/moqworker/v1/coordinator_pb.js";
import { type Scope, scopeFromField, UNSCOPED } from "../objects/scope-name.js";
import type { Caller } from "../rpc/context.js";

/** The calls that make the caller a publisher. */
const PUBLISH = new Set<string>([CoordinatorService.method.registerNamespace.name, CoordinatorService.method.registerTrack.name]);

/** Refuses a scope the token's scopes claim does not list (and the unscoped space, if it lists any). */
export function requireScopeAllowed(field: string, scope: Scope, allowed: readonly string[]): void {
  if (scope === UNSCOPED) {
    throw new ConnectError(
      `${field}: unscoped calls are not allowed with this relay's token (it is limited to named scopes)`,
      Code.PermissionDenied,
    );
  }
  if (!allowed.includes(scope)) {
    throw new ConnectError(`${field}: scope '${scope.slice(0, 256)}' is not one this relay's token may act in`, Code.PermissionDenied);
  }
}

/**
 * The claims that apply to a call naming a scope (its `scope` field, absent
 * for the unscoped space): a read-only token may not publish, and a token
 * listing scopes may act only in those.
 */
export function requireScopedCallAllowed(caller: Caller, method: string, scope: string | undefined): void {
  requireWritable(caller, method);
  if (caller.scopes !== undefined) requireScopeAllowed("scope", scopeFromField(scope), caller.scopes);
}

function requireWritable(caller: Caller, method: string): void {
  if (caller.readOnly && PUBLISH.has(method)) {
    throw new ConnectError(`this relay's token is read-only: it may not call ${method}`, Code.PermissionDenied);
  }
}

/** Whether a method's request names a scope (its `scope` field). */
export const namesScope = (method: DescMethod): boolean => method.input.fields.some((f) => f.localName === "scope");

/** The claims of a call that names no scope (ResolveScope, Heartbeat, Shutdown): checked on the call, and ResolveScope's on its answer. */
export async function enforceUnscopedCallClaims(
  caller: Caller,
  req: UnaryRequest,
  next: (req: UnaryRequest) => Promise<UnaryResponse | StreamResponse>,
): Promise<UnaryResponse | StreamResponse> {
  requireWritable(caller, req.method.name);
  const allowed = caller.scopes;
  if (allowed === undefined) return next(req);
  const res = await next(req);
  // ResolveScope carries no scope, its answer does: a session on another tenant's path is refused.
  if (req.method.name === CoordinatorService.method.resolveScope.name && !res.stream) {
    requireScopeAllowed("connection_path", scopeFromField((res.message as ResolveScopeResponse).scope?.scopeId), allowed);
  }
  return res;
}
